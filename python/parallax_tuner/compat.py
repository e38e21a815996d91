"""The Parallax authors' call shapes (package ``parallax-kernel``, imported as ``parallax``), on
this package's kernels, for code written against theirs:

    from parallax_tuner.compat import parallax_decode, parallax_func, parallax_varlen_func
    o = parallax_decode(q, r, k, v, qk_scale=None, window_size_left=-1)   # [B, 1, H, D]
    o = parallax_func(q, r, k, v, qk_scale=None, window_size_left=-1)     # [B, H, L, D], autograd
    o = parallax_varlen_func(q, r, k, v, qk_scale=None, window_size_left=-1,
                             cu_seqlens=None)                            # [B, T, H, D], autograd

Same layouts (q, r ``[B, 1, Hq, D]``, k, v ``[B, L, Hkv, D]``), same defaults (qk_scale
``1/sqrt(D)``) and the same window convention (``window_size_left = W >= 1``: the W most recent
keys, the current one included; -1: none). Differences, each an error rather than a silent
change: ``window_size_left = 0`` (no key to attend) raises ValueError; ``cache_start``
(left-padded caches) is not supported — describe valid lengths with ``cache_seqlens`` in
:func:`parallax_tuner.parallax_decode` instead. ``r=None`` gives softmax attention here.
``parallax_func`` and ``parallax_varlen_func`` are causal with gradients for q, r, k, v
(``parallax_tuner.autograd``); they take the inputs as views, without copies.
"""

from __future__ import annotations

from . import parallax_decode as _decode
from . import parallax_prefill as _prefill

__all__ = ["parallax_decode", "parallax_func", "parallax_varlen_func"]


def _window(window_size_left) -> int:
    w = -1 if window_size_left is None else int(window_size_left)
    if w == 0 or w < -1:
        raise ValueError(f"window_size_left={window_size_left}: must be -1 (no window) or >= 1 (that many keys)")
    return max(w, 0)


def parallax_decode(q, r, k, v, qk_scale=None, *, window_size_left=-1, cache_start=None):
    """One-token decode with the authors' signature; returns out ``[B, 1, Hq, D]``."""
    if cache_start is not None:
        raise NotImplementedError("cache_start (left padding) is not supported; keep each sequence's keys at "
                                  "the start of the cache and pass cache_seqlens to parallax_tuner.parallax_decode")
    return _decode(q, r, k, v, qk_scale, window=_window(window_size_left))


def parallax_func(q, r, k, v, qk_scale=None, window_size_left=-1):
    """Causal Parallax with autograd in the authors' layout: q, r ``[B, Hq, L, D]``, k, v
    ``[B, Hkv, L, D]`` (GQA when Hq is a multiple of Hkv); returns ``[B, Hq, L, D]``."""
    w = _window(window_size_left)
    out = _prefill(q.transpose(1, 2), r.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), qk_scale, window=w)
    return out.transpose(1, 2)


def parallax_varlen_func(q, r, k, v, qk_scale=None, window_size_left=-1, cu_seqlens=None):
    """Causal Parallax with autograd, heads last: q, r ``[B, T, Hq, D]``, k, v ``[B, T, Hkv, D]``;
    with ``cu_seqlens`` (``[N + 1]``, int32 or int64) B must be 1 and the T rows are N packed
    sequences. Returns ``[B, T, Hq, D]``. The sequences' longest length is read from
    ``cu_seqlens`` on the host."""
    w = _window(window_size_left)
    if cu_seqlens is None:
        return _prefill(q, r, k, v, qk_scale, window=w)
    if q.shape[0] != 1:
        raise ValueError(f"cu_seqlens needs batch size 1 (got {q.shape[0]}): pack the sequences into one row")
    import torch
    cu = cu_seqlens.to(torch.int32)
    offsets = cu.tolist()
    longest = max((b - a for a, b in zip(offsets, offsets[1:])), default=0)
    out = _prefill(q[0], r[0] if r is not None else None, k[0], v[0], qk_scale, cu_seqlens_q=cu, cu_seqlens_k=cu,
                   max_seqlen_q=longest, max_seqlen_k=longest, window=w)
    return out[None]
