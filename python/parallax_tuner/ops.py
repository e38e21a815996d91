"""torch.library custom ops, so torch.compile(fullgraph=True) traces through Parallax calls.

    torch.ops.parallax_tuner.decode / decode_lse      parallax_decode
    torch.ops.parallax_tuner.prefill / prefill_lse    parallax_prefill over contiguous or packed keys
    torch.ops.parallax_tuner.extend / extend_lse      parallax_prefill over a paged cache
    torch.ops.parallax_tuner.prefill_backward         the gradients of prefill_lse (autograd.py)

Each has a fake (meta) implementation: outputs are shaped by the inputs alone. The ``_lse``
ops return ``(out, lse, tbar, vbar)``. You rarely call them yourself: under torch.compile,
``parallax_decode`` and ``parallax_prefill`` call them (eager calls skip the dispatcher, whose
cost would be most of the call's host time). Importing this module imports torch; the
package imports it on its first call with torch tensors, or when torch was imported first.

Inside a compiled region: give ``max_seqlen_q`` / ``max_seqlen_k`` with ``cu_seqlens_*`` (else
the op reads the lengths on the host, which synchronizes and cannot be captured in a CUDA
graph); ``out=`` is written by a copy after the op; a caller ``workspace`` is not taken (the
runtime's own is used, reserved on the first, uncaptured, call of each shape).
"""


import sys
from typing import Optional, Tuple

import torch
from torch import Tensor

import parallax_tuner as _api
from . import _fast, _lib

__all__ = ["call_decode", "call_prefill"]

_fast.bind_torch(torch)
_UNSET = _lib.WINDOW_SIZE_UNSET


def _window_pair(window_size):
    if window_size is None:
        return _UNSET, _UNSET
    left, right = window_size
    return int(left), int(right)


def _window_size(left: int, right: int):
    return None if left == _UNSET and right == _UNSET else (left, right)


def _opt(value, none):
    return none if value is None else value


def _fake_out(q: Tensor) -> Tensor:
    return q.new_empty(q.shape)


def _fake_stats(q: Tensor, packed: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    shape = _api._stats_shape(q, packed)  # the eager path's layout of lse / tbar
    return (q.new_empty(q.shape), q.new_empty(shape, dtype=torch.float32),
            q.new_empty(shape, dtype=torch.float32), q.new_empty(q.shape))


# ---- decode -------------------------------------------------------------------------------

def _decode_eager(q, r, k, v, block_table, cache_seqlens, qk_scale, window, window_left, window_right, affine, eps,
                  variant, num_splits, max_seqlen_k, return_lse):
    return _api.parallax_decode(q, r, k, v, None if qk_scale < 0 else qk_scale, block_table=block_table,
                                cache_seqlens=cache_seqlens, window=window,
                                window_size=_window_size(window_left, window_right), affine=affine, eps=eps,
                                variant=variant or None, num_splits=num_splits,
                                max_seqlen_k=None if max_seqlen_k < 0 else max_seqlen_k, return_lse=return_lse)


@torch.library.custom_op("parallax_tuner::decode", mutates_args=(), device_types="cuda")
def decode(q: Tensor, r: Optional[Tensor], k: Tensor, v: Tensor, block_table: Optional[Tensor],
           cache_seqlens: Optional[Tensor], qk_scale: float, window: int, window_left: int, window_right: int,
           affine: str, eps: float, variant: str, num_splits: int, max_seqlen_k: int) -> Tensor:
    return _decode_eager(q, r, k, v, block_table, cache_seqlens, qk_scale, window, window_left, window_right, affine,
                         eps, variant, num_splits, max_seqlen_k, False)


@decode.register_fake
def _(q, r, k, v, block_table, cache_seqlens, qk_scale, window, window_left, window_right, affine, eps, variant,
      num_splits, max_seqlen_k):
    return _fake_out(q)


@torch.library.custom_op("parallax_tuner::decode_lse", mutates_args=(), device_types="cuda")
def decode_lse(q: Tensor, r: Optional[Tensor], k: Tensor, v: Tensor, block_table: Optional[Tensor],
               cache_seqlens: Optional[Tensor], qk_scale: float, window: int, window_left: int, window_right: int,
               affine: str, eps: float, variant: str, num_splits: int,
               max_seqlen_k: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    out, st = _decode_eager(q, r, k, v, block_table, cache_seqlens, qk_scale, window, window_left, window_right,
                            affine, eps, variant, num_splits, max_seqlen_k, True)
    return out, st.lse, st.tbar, st.vbar


@decode_lse.register_fake
def _(q, r, k, v, block_table, cache_seqlens, qk_scale, window, window_left, window_right, affine, eps, variant,
      num_splits, max_seqlen_k):
    return _fake_stats(q, False)


def call_decode(q, r, k, v, qk_scale, block_table, cache_seqlens, window, window_size, affine, eps, variant,
                num_splits, out, workspace, max_seqlen_k, return_lse):
    """parallax_decode's arguments, through the custom op (what torch.compile traces)."""
    left, right = _window_pair(window_size)
    args = (q, r, k, v, block_table, cache_seqlens, float(_opt(qk_scale, -1.0)), int(window), left, right, affine,
            float(eps), variant or "", int(num_splits), int(_opt(max_seqlen_k, -1)))
    if return_lse:
        o, lse, tbar, vbar = torch.ops.parallax_tuner.decode_lse(*args)
        st = _api.AttentionStats(lse, tbar, vbar, False)
    else:
        o = torch.ops.parallax_tuner.decode(*args)
    if out is not None:
        out.copy_(o)
        o = out
    return (o, st) if return_lse else o


# ---- prefill and extend ---------------------------------------------------------------------

def _prefill_eager(q, r, k, v, cu_seqlens_q, cu_seqlens_k, block_table, seqused_k, max_seqlen_q, max_seqlen_k,
                   qk_scale, window, window_left, window_right, affine, eps, variant, causal, return_lse):
    return _api.parallax_prefill(q, r, k, v, None if qk_scale < 0 else qk_scale, cu_seqlens_q=cu_seqlens_q,
                                 cu_seqlens_k=cu_seqlens_k, max_seqlen_q=None if max_seqlen_q < 0 else max_seqlen_q,
                                 max_seqlen_k=None if max_seqlen_k < 0 else max_seqlen_k, window=window,
                                 window_size=_window_size(window_left, window_right), affine=affine, eps=eps,
                                 variant=variant or None, block_table=block_table, seqused_k=seqused_k,
                                 return_lse=return_lse, causal=causal)


@torch.library.custom_op("parallax_tuner::prefill", mutates_args=(), device_types="cuda")
def prefill(q: Tensor, r: Optional[Tensor], k: Tensor, v: Tensor, cu_seqlens_q: Optional[Tensor],
            cu_seqlens_k: Optional[Tensor], max_seqlen_q: int, max_seqlen_k: int, qk_scale: float, window: int,
            window_left: int, window_right: int, affine: str, eps: float, variant: str, causal: bool) -> Tensor:
    return _prefill_eager(q, r, k, v, cu_seqlens_q, cu_seqlens_k, None, None, max_seqlen_q, max_seqlen_k, qk_scale,
                          window, window_left, window_right, affine, eps, variant, causal, False)


@prefill.register_fake
def _(q, r, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, qk_scale, window, window_left,
      window_right, affine, eps, variant, causal):
    return _fake_out(q)


@torch.library.custom_op("parallax_tuner::prefill_lse", mutates_args=(), device_types="cuda")
def prefill_lse(q: Tensor, r: Optional[Tensor], k: Tensor, v: Tensor, cu_seqlens_q: Optional[Tensor],
                cu_seqlens_k: Optional[Tensor], max_seqlen_q: int, max_seqlen_k: int, qk_scale: float, window: int,
                window_left: int, window_right: int, affine: str, eps: float, variant: str,
                causal: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    out, st = _prefill_eager(q, r, k, v, cu_seqlens_q, cu_seqlens_k, None, None, max_seqlen_q, max_seqlen_k,
                             qk_scale, window, window_left, window_right, affine, eps, variant, causal, True)
    return out, st.lse, st.tbar, st.vbar


@prefill_lse.register_fake
def _(q, r, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, qk_scale, window, window_left,
      window_right, affine, eps, variant, causal):
    return _fake_stats(q, cu_seqlens_q is not None)


@torch.library.custom_op("parallax_tuner::extend", mutates_args=(), device_types="cuda")
def extend(q: Tensor, r: Optional[Tensor], k: Tensor, v: Tensor, block_table: Tensor, seqused_k: Tensor,
           cu_seqlens_q: Optional[Tensor], max_seqlen_q: int, max_seqlen_k: int, qk_scale: float, window: int,
           window_left: int, window_right: int, affine: str, eps: float, variant: str, causal: bool) -> Tensor:
    return _prefill_eager(q, r, k, v, cu_seqlens_q, None, block_table, seqused_k, max_seqlen_q, max_seqlen_k,
                          qk_scale, window, window_left, window_right, affine, eps, variant, causal, False)


@extend.register_fake
def _(q, r, k, v, block_table, seqused_k, cu_seqlens_q, max_seqlen_q, max_seqlen_k, qk_scale, window, window_left,
      window_right, affine, eps, variant, causal):
    return _fake_out(q)


@torch.library.custom_op("parallax_tuner::extend_lse", mutates_args=(), device_types="cuda")
def extend_lse(q: Tensor, r: Optional[Tensor], k: Tensor, v: Tensor, block_table: Tensor, seqused_k: Tensor,
               cu_seqlens_q: Optional[Tensor], max_seqlen_q: int, max_seqlen_k: int, qk_scale: float, window: int,
               window_left: int, window_right: int, affine: str, eps: float, variant: str,
               causal: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    out, st = _prefill_eager(q, r, k, v, cu_seqlens_q, None, block_table, seqused_k, max_seqlen_q, max_seqlen_k,
                             qk_scale, window, window_left, window_right, affine, eps, variant, causal, True)
    return out, st.lse, st.tbar, st.vbar


@extend_lse.register_fake
def _(q, r, k, v, block_table, seqused_k, cu_seqlens_q, max_seqlen_q, max_seqlen_k, qk_scale, window, window_left,
      window_right, affine, eps, variant, causal):
    return _fake_stats(q, cu_seqlens_q is not None)


def call_prefill(q, r, k, v, qk_scale, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, window, window_size,
                 affine, eps, variant, out, return_stats, block_table, seqused_k, return_lse, causal):
    """parallax_prefill's arguments, through the custom ops (what torch.compile traces)."""
    left, right = _window_pair(window_size)
    tail = (int(_opt(max_seqlen_q, -1)), int(_opt(max_seqlen_k, -1)), float(_opt(qk_scale, -1.0)), int(window),
            left, right, affine, float(eps), variant or "", bool(causal))
    grad = _autograd.needs_grad(q, r, k, v)  # the forward saves lse, tbar, vbar for the backward
    if grad and block_table is not None:
        raise NotImplementedError("parallax_prefill over a paged cache (extend) has no backward; "
                                  "detach the inputs or pass contiguous k, v")
    stats = return_lse or return_stats or grad
    if block_table is not None:
        fn = torch.ops.parallax_tuner.extend_lse if stats else torch.ops.parallax_tuner.extend
        res = fn(q, r, k, v, block_table, seqused_k, cu_seqlens_q, *tail)
    else:
        fn = torch.ops.parallax_tuner.prefill_lse if stats else torch.ops.parallax_tuner.prefill
        res = fn(q, r, k, v, cu_seqlens_q, cu_seqlens_k, *tail)
    o = res[0] if stats else res
    if out is not None:
        out.copy_(o)
        o = out
    if return_lse:
        return o, _api.AttentionStats(res[1], res[2], res[3], cu_seqlens_q is not None)
    if return_stats:
        return o, res[1], res[2]
    return o


_api._ops_module = sys.modules[__name__]
from . import autograd as _autograd  # noqa: E402  (registers the backward of prefill_lse)
