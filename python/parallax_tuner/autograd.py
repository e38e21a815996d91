"""Gradients of Parallax prefill: what makes ``parallax_prefill`` differentiable.

``parallax_prefill`` with any of q, r, k, v requiring grad (and grad mode on) runs the forward
through ``torch.ops.parallax_tuner.prefill_lse``, whose autograd formula
(``torch.library.register_autograd``) calls ``torch.ops.parallax_tuner.prefill_backward``.
Both are custom ops with fake implementations, so training steps compile with torch.compile.
The math is docs/backward.md: the forward saves lse, tbar and vbar per row; the backward
recomputes the weights from them.

The backward runs the generated backward kernels (``plx_prefill_backward``: a preprocess per
query row, one CTA per key block accumulating dk/dv and adding dq/dr into float32 accumulators,
a cast) for CUDA bf16/fp16 tensors with D 64, 128 or 256. Their schedule is the library's
choice: the tuned ``bwd`` config of the call's prefill bucket (``parallax tune --mode bwd``;
exact, else nearest), else the default; the choice is kept a second per shape, so a training
loop reads the database at most once a second. Anything else takes a float32 torch
evaluation of the same formulas, a block of query rows at a time (``PARALLAX_TORCH_BACKWARD=1``
forces it, for comparison). Gradients flow through ``out`` only: lse, tbar and vbar are
returned as constants. Not differentiable: extend over a paged cache, decode. Importing this
module imports torch.
"""

import ctypes
import math
import os
from typing import Optional, Tuple

import torch
from torch import Tensor

from . import _lib
from . import ops as _ops  # noqa: F401  (registers prefill_lse, which this module differentiates)

__all__ = ["prefill_backward"]

_UNSET = _lib.WINDOW_SIZE_UNSET
_BLOCK_BYTES = 1 << 30  # float32 temporaries of one block of query rows, about


def _window(window: int, left: int, right: int) -> int:
    """Our window W from the forward's window / window_size spellings (the library checked them)."""
    if window > 0:
        return window
    return left + 1 if left != _UNSET and left >= 0 else 0


def _bwd_dense(q, r, k, v, out, dout, lse, tbar, vbar, tau, window, causal, amplified, eps):
    """One batch of sequences, [B, Lq, H, D] layouts; lse/tbar [B, Hq, Lq]. float32 grads."""
    b, lq, hq, d = q.shape
    lk, hkv = k.shape[1], k.shape[2]
    g = hq // hkv
    f32 = torch.float32

    def rows(t):  # [B, Lq, Hq, D] -> [B, Hkv, G, Lq, D]
        return t.to(f32).permute(0, 2, 1, 3).reshape(b, hkv, g, lq, d)

    qf, do, of, vb = rows(q), rows(dout), rows(out), rows(vbar)
    rf = rows(r) if r is not None else None
    kf = k.to(f32).permute(0, 2, 1, 3).unsqueeze(2)  # [B, Hkv, 1, Lk, D]
    vf = v.to(f32).permute(0, 2, 1, 3).unsqueeze(2)
    lse_ = lse.to(f32).reshape(b, hkv, g, lq)
    tb = tbar.to(f32).reshape(b, hkv, g, lq) if rf is not None else torch.zeros_like(lse_)
    dsum = (do * of).sum(-1)
    gs = (do * vb).sum(-1)
    if amplified and rf is not None:
        delta = 1 - (tb - (rf * qf).sum(-1))
        guarded = delta.abs() < eps
        dg = torch.where(guarded, torch.where(delta >= 0, eps, -eps), delta)
        u = 1 / dg
        kappa = torch.where(guarded, u * gs, u * dsum)
        rho = torch.where(guarded, torch.zeros_like(u), u * (gs - dsum))
    else:
        u, kappa, rho = torch.ones_like(gs), gs, None
    dd = dsum + kappa * tb

    dq, dr = torch.empty_like(qf), (torch.empty_like(rf) if rf is not None else None)
    dk = torch.zeros(b, hkv, lk, d, dtype=f32, device=q.device)
    dv = torch.zeros_like(dk)
    block = max(1, min(lq, _BLOCK_BYTES // max(1, 8 * 4 * b * hq * lk)))
    j = torch.arange(lk, device=q.device)
    for i0 in range(0, lq, block):
        i1 = min(lq, i0 + block)
        sl = slice(i0, i1)
        qc, doc = qf[..., sl, :], do[..., sl, :]
        i = torch.arange(i0, i1, device=q.device)[:, None]
        last = (lk - lq + i) if causal else torch.full_like(i, lk - 1)
        vis = j[None, :] <= last
        if window > 0:
            vis = vis & (j[None, :] > last - window)
        lc = lse_[..., sl, None]
        vis = vis & torch.isfinite(lc)  # a row without keys has lse -inf and no weights
        s1 = tau * (qc @ kf.transpose(-1, -2))
        w = torch.where(vis, torch.exp(s1 - torch.where(torch.isfinite(lc), lc, 0)), 0)
        gg = doc @ vf.transpose(-1, -2)
        uc, kc, tc = u[..., sl, None], kappa[..., sl, None], tb[..., sl, None]
        if rf is not None:
            rc = rf[..., sl, :]
            s2 = rc @ kf.transpose(-1, -2)
            c = w * (1 - uc * (s2 - tc))
            a = gg * (1 - uc * (s2 - tc)) + kc * s2
            ds2 = w * (kc - uc * gg)
        else:
            c, a, ds2 = w, gg, None
        ds1 = w * (a - dd[..., sl, None])
        dv += (c.transpose(-1, -2) @ doc).sum(2)
        dkc = tau * (ds1.transpose(-1, -2) @ qc)
        dq[..., sl, :] = tau * (ds1 @ kf)
        if ds2 is not None:
            dkc = dkc + ds2.transpose(-1, -2) @ rc
            dr[..., sl, :] = ds2 @ kf
        dk += dkc.sum(2)
    if rho is not None:
        dq += rho[..., None] * rf
        dr += rho[..., None] * qf

    def back(t):  # [B, Hkv, G, Lq, D] -> [B, Lq, Hq, D]
        return t.reshape(b, hq, lq, d).permute(0, 2, 1, 3)

    return (back(dq), back(dr) if dr is not None else None, dk.permute(0, 2, 1, 3), dv.permute(0, 2, 1, 3))


def _kernel_serves(q, r, k, v) -> bool:
    return (os.environ.get("PARALLAX_TORCH_BACKWARD", "") in ("", "0") and q.is_cuda
            and q.dtype in (torch.bfloat16, torch.float16) and q.shape[-1] in (64, 128, 256)
            and all(t is None or (t.dtype == q.dtype and t.device == q.device) for t in (r, k, v)))


def _last_dim_dense(t):
    return t if t is None or t.stride(-1) == 1 else t.contiguous()


def _bwd_kernel(dout, q, r, k, v, out, lse, tbar, vbar, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, tau,
                window, causal, affine, eps, variant=None, workspace=None):
    """plx_prefill_backward: the generated kernels (the caller checked _kernel_serves). ``variant``
    (a "bwd-..." key) and a reused ``workspace`` are for benchmarks."""
    from . import _describe, _STATS_DTYPES, get_context  # the package's tensor descriptions
    q, r, k, v, out, dout, vbar = (_last_dim_dense(t) for t in (q, r, k, v, out, dout, vbar))
    c = torch.contiguous_format
    dq, dk, dv = (torch.empty_like(t, memory_format=c) for t in (q, k, v))
    dr = torch.empty_like(r, memory_format=c) if r is not None else None
    L = _lib.lib()
    a = _lib.PrefillBackwardArgs()
    L.plx_prefill_backward_args_init(ctypes.byref(a))
    for name, t in (("q", q), ("r", r), ("k", k), ("v", v), ("out", out), ("dout", dout), ("vbar", vbar),
                    ("dq", dq), ("dr", dr), ("dk", dk), ("dv", dv), ("cu_seqlens_q", cu_seqlens_q),
                    ("cu_seqlens_k", cu_seqlens_k)):
        setattr(a, name, _describe(t, name))
    a.lse = _describe(lse, "lse", _STATS_DTYPES)
    if r is not None:
        a.tbar = _describe(tbar, "tbar", _STATS_DTYPES)
    if cu_seqlens_q is not None:
        if max_seqlen_q < 0 or max_seqlen_k < 0:  # not given to the forward: read on the host
            max_seqlen_q = int((cu_seqlens_q[1:] - cu_seqlens_q[:-1]).max().item()) if cu_seqlens_q.numel() > 1 else 0
            max_seqlen_k = int((cu_seqlens_k[1:] - cu_seqlens_k[:-1]).max().item()) if cu_seqlens_k.numel() > 1 else 0
        a.max_seqlen_q, a.max_seqlen_k = max_seqlen_q, max_seqlen_k
    a.qk_scale = tau
    a.window = window
    a.affine = _lib.AFFINES[affine]
    a.eps = eps
    a.causal = 1 if causal else 0
    n = ctypes.c_size_t()
    _lib.check(L.plx_prefill_backward_workspace_size(ctypes.byref(a), ctypes.byref(n)))
    if variant:
        a.variant = variant.encode()
    ws = workspace if workspace is not None and workspace.numel() >= n.value else \
        torch.empty(max(n.value, 16), dtype=torch.uint8, device=q.device)
    a.workspace, a.workspace_bytes = ws.data_ptr(), n.value
    device = q.get_device()
    stream = torch.cuda.current_stream(device).cuda_stream
    _lib.check(L.plx_prefill_backward(get_context(device).handle, ctypes.byref(a), stream))
    return dq, dr if dr is not None else q.new_empty(0), dk, dv


def _bwd(dout, q, r, k, v, out, lse, tbar, vbar, cu_seqlens_q, cu_seqlens_k, tau, window, causal, amplified, eps):
    if tau < 0:
        tau = 1.0 / math.sqrt(q.shape[-1])
    if cu_seqlens_q is None:
        grads = _bwd_dense(q, r, k, v, out, dout, lse, tbar, vbar, tau, window, causal, amplified, eps)
    else:  # packed rows, one sequence at a time (the offsets are read on the host)
        cq, ck = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
        dq, dk, dv = (torch.zeros(t.shape, dtype=torch.float32, device=t.device) for t in (q, k, v))
        dr = torch.zeros(r.shape, dtype=torch.float32, device=r.device) if r is not None else None
        for s in range(len(cq) - 1):
            qs, ks = slice(cq[s], cq[s + 1]), slice(ck[s], ck[s + 1])
            if cq[s + 1] == cq[s] or ck[s + 1] == ck[s]:
                continue  # no rows, or rows without keys: nothing flows
            one = _bwd_dense(q[qs][None], r[qs][None] if r is not None else None, k[ks][None], v[ks][None],
                             out[qs][None], dout[qs][None], lse[:, qs][None], tbar[:, qs][None], vbar[qs][None],
                             tau, window, causal, amplified, eps)
            dq[qs] = one[0][0]
            if dr is not None:
                dr[qs] = one[1][0]
            dk[ks] += one[2][0]
            dv[ks] += one[3][0]
        grads = (dq, dr, dk, dv)
    dq, dr, dk, dv = grads
    c = torch.contiguous_format  # what the fake implementation promises

    def cast(g, like):
        return g.to(like.dtype, memory_format=c)
    return (cast(dq, q), cast(dr, r) if dr is not None else q.new_empty(0), cast(dk, k), cast(dv, v))


@torch.library.custom_op("parallax_tuner::prefill_backward", mutates_args=(), device_types="cuda")
def prefill_backward(dout: Tensor, q: Tensor, r: Optional[Tensor], k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                     tbar: Tensor, vbar: Tensor, cu_seqlens_q: Optional[Tensor], cu_seqlens_k: Optional[Tensor],
                     qk_scale: float, window: int, causal: bool, affine: str, eps: float, max_seqlen_q: int = -1,
                     max_seqlen_k: int = -1) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """dq, dr (empty when r is None), dk, dv of sum(dout * out) for a prefill's saved tensors."""
    if _kernel_serves(q, r, k, v):
        tau = qk_scale if qk_scale >= 0 else 1.0 / math.sqrt(q.shape[-1])
        return _bwd_kernel(dout.contiguous(), q, r, k, v, out, lse, tbar, vbar, cu_seqlens_q, cu_seqlens_k,
                           max_seqlen_q, max_seqlen_k, tau, window, causal, affine, eps)
    return _bwd(dout.contiguous(), q, r, k, v, out, lse, tbar, vbar, cu_seqlens_q, cu_seqlens_k, qk_scale, window,
                causal, affine == "amplified", eps)


@prefill_backward.register_fake
def _(dout, q, r, k, v, out, lse, tbar, vbar, cu_seqlens_q, cu_seqlens_k, qk_scale, window, causal, affine, eps,
      max_seqlen_q=-1, max_seqlen_k=-1):
    return (q.new_empty(q.shape), r.new_empty(r.shape) if r is not None else q.new_empty(0), k.new_empty(k.shape),
            v.new_empty(v.shape))  # contiguous, whatever the inputs' strides


def _setup(ctx, inputs, output):
    (q, r, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, qk_scale, window, window_left,
     window_right, affine, eps, variant, causal) = inputs
    out, lse, tbar, vbar = output
    ctx.save_for_backward(q, r, k, v, out, lse, tbar, vbar, cu_seqlens_q, cu_seqlens_k)
    ctx.options = (qk_scale, _window(window, window_left, window_right), causal, affine, eps,
                   -1 if max_seqlen_q is None else max_seqlen_q, -1 if max_seqlen_k is None else max_seqlen_k)
    ctx.mark_non_differentiable(lse, tbar, vbar)


def _backward(ctx, dout, dlse, dtbar, dvbar):
    q, r, k, v, out, lse, tbar, vbar, cu_seqlens_q, cu_seqlens_k = ctx.saved_tensors
    qk_scale, window, causal, affine, eps, max_q, max_k = ctx.options
    dq, dr, dk, dv = torch.ops.parallax_tuner.prefill_backward(dout, q, r, k, v, out, lse, tbar, vbar, cu_seqlens_q,
                                                               cu_seqlens_k, qk_scale, window, causal, affine, eps,
                                                               max_q, max_k)
    return (dq, dr if r is not None else None, dk, dv) + (None,) * 12


torch.library.register_autograd("parallax_tuner::prefill_lse", _backward, setup_context=_setup)


def needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
