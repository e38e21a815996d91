"""The Parallax authors' call shape (package ``parallax-kernel``, imported as ``parallax``), on
this package's kernels, for code written against theirs:

    from parallax_tuner.compat import parallax_decode
    o = parallax_decode(q, r, k, v, qk_scale=None, window_size_left=-1)

Same layouts (q, r ``[B, 1, Hq, D]``, k, v ``[B, L, Hkv, D]``), same defaults (qk_scale
``1/sqrt(D)``) and the same window convention (``window_size_left = W >= 1``: the W most recent
keys, the current one included; -1: none). Differences, each an error rather than a silent
change: ``window_size_left = 0`` (no key to attend) raises ValueError; ``cache_start``
(left-padded caches) is not supported — describe valid lengths with ``cache_seqlens`` in
:func:`parallax_tuner.parallax_decode` instead. ``r=None`` gives softmax attention here.
"""

from __future__ import annotations

from . import parallax_decode as _decode

__all__ = ["parallax_decode"]


def parallax_decode(q, r, k, v, qk_scale=None, *, window_size_left=-1, cache_start=None):
    """One-token decode with the authors' signature; returns out ``[B, 1, Hq, D]``."""
    if cache_start is not None:
        raise NotImplementedError("cache_start (left padding) is not supported; keep each sequence's keys at "
                                  "the start of the cache and pass cache_seqlens to parallax_tuner.parallax_decode")
    w = -1 if window_size_left is None else int(window_size_left)
    if w == 0 or w < -1:
        raise ValueError(f"window_size_left={window_size_left}: must be -1 (no window) or >= 1 (that many keys)")
    return _decode(q, r, k, v, qk_scale, window=max(w, 0))
