"""GPU tests of the ctypes binding against a naive float64 torch Parallax (skipped without
torch + CUDA + libparallax.so).

Run: PYTHONPATH=python PARALLAX_LIBRARY=build/runtime/libparallax.so python -m unittest -v test_binding_gpu
(from python/tests).

Tolerances (docs: /work/shared/parallax-family.md): relative Frobenius error <= 1e-2 for bf16,
<= 2e-3 for fp16, on RMS-normalised q, r, k; outputs are poisoned with NaN before each run.
"""

import itertools
import math
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.dirname(HERE)
if PYTHON_DIR not in sys.path:
    sys.path.insert(0, PYTHON_DIR)

import parallax_tuner as plx  # noqa: E402

try:
    import torch
    HAVE_CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    torch = None
    HAVE_CUDA = False


def _have_lib():
    try:
        plx.library_version()
        return True
    except plx.LibraryNotFoundError:
        return False


TOL = {}
if torch is not None:
    TOL = {torch.bfloat16: 1e-2, torch.float16: 2e-3}


def rms_norm(x):
    return x / x.pow(2).mean(-1, keepdim=True).sqrt()


def randn(*shape, dtype, scale=1.0, norm=True):
    x = torch.randn(*shape, dtype=torch.float64, device="cuda")
    if norm:
        x = rms_norm(x)
    return (x * scale).to(dtype)


def reference(q, r, k, v, tau=None, window=0, affine="plain", eps=1e-6, causal=True):
    """One sequence: q, r [Lq, Hq, D]; k, v [Lk, Hkv, D] -> [Lq, Hq, D] float64.
    Causal aligned to the key end: row i sees keys j <= Lk - Lq + i (and j > that - W with a window);
    causal=False: every key. r None: softmax (so reference(q, None, k, v) is each row's vbar).
    Rows without visible keys are zero."""
    q, k, v = q.double(), k.double(), v.double()
    lq, hq, d = q.shape
    lk, hkv, _ = k.shape
    tau = 1.0 / math.sqrt(d) if tau is None else tau
    g = hq // hkv
    kk = k.repeat_interleave(g, dim=1)  # [Lk, Hq, D]
    vv = v.repeat_interleave(g, dim=1)
    i = torch.arange(lq, device=q.device)[:, None]
    j = torch.arange(lk, device=q.device)[None, :]
    last = lk - lq + i if causal else torch.full_like(i, lk - 1)
    visible = j <= last
    if window > 0:
        visible &= j > last - window
    s1 = tau * torch.einsum("qhd,khd->hqk", q, kk)
    s1 = s1.masked_fill(~visible[None], float("-inf"))
    m = s1.amax(-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    p1 = torch.exp(s1 - m)  # [Hq, Lq, Lk]
    d1 = p1.sum(-1, keepdim=True)
    o1 = torch.einsum("hqk,khd->hqd", p1, vv)
    safe = torch.where(d1 > 0, d1, torch.ones_like(d1))
    vbar = o1 / safe
    if r is None:
        out = vbar
    else:
        r = r.double()
        s2 = torch.einsum("qhd,khd->hqk", r, kk)
        p2 = p1 * s2
        d2 = p2.sum(-1, keepdim=True)
        o2 = torch.einsum("hqk,khd->hqd", p2, vv)
        cov_r = o2 / safe - vbar * (d2 / safe)  # Cov_w(v, k) r
        if affine == "plain":
            out = vbar - cov_r
        else:
            rq = torch.einsum("qhd,qhd->hq", r, q)[..., None]
            delta = 1 - (d2 / safe - rq)
            delta = torch.where(delta.abs() < eps, eps * torch.where(delta >= 0, 1.0, -1.0), delta)
            out = vbar - cov_r / delta
    out = torch.where(d1 > 0, out, torch.zeros_like(out))
    return out.permute(1, 0, 2)  # [Lq, Hq, D]


def reference_stats(q, r, k, tau=None, window=0, causal=True):
    """One sequence's lse and tbar [Hq, Lq] float64: torch's logsumexp of the scaled, masked
    scores, and the softmax-weighted mean of r.k (0 without r or without visible keys)."""
    q, k = q.double(), k.double()
    lq, hq, d = q.shape
    lk, hkv, _ = k.shape
    tau = 1.0 / math.sqrt(d) if tau is None else tau
    kk = k.repeat_interleave(hq // hkv, dim=1)
    i = torch.arange(lq, device=q.device)[:, None]
    j = torch.arange(lk, device=q.device)[None, :]
    visible = j <= (lk - lq + i if causal else lk - 1)
    if window > 0:
        visible &= j > lk - lq + i - window
    s1 = (tau * torch.einsum("qhd,khd->hqk", q, kk)).masked_fill(~visible[None], float("-inf"))
    lse = torch.logsumexp(s1, dim=-1)  # -inf for rows without visible keys
    if r is None:
        return lse, torch.zeros_like(lse)
    w = torch.exp(s1 - lse[..., None]).nan_to_num(0.0)
    return lse, (w * torch.einsum("qhd,khd->hqk", r.double(), kk)).sum(-1)


def cu(lens):
    """cu_seqlens (int32, on the GPU) of sequences with these lengths."""
    return torch.tensor([0] + list(itertools.accumulate(lens)), dtype=torch.int32, device="cuda")


def rel_err(got, want):
    got = got.double()
    return ((got - want).norm() / want.norm()).item()


def check_window_spellings(test, run, w):
    """run(**window kwargs) -> output. Every spelling of window w (window=w, window_size=(w - 1, 0)
    and (w - 1, -1), both) must give the same bits, likewise every spelling of no window, and the
    two must differ (else w is no narrower than the sequences and nothing was shown)."""
    groups = ([dict(window=w), dict(window_size=(w - 1, 0)), dict(window_size=(w - 1, -1)),
               dict(window=w, window_size=(w - 1, 0))],
              [dict(window=0), dict(window_size=(-1, 0)), dict(window_size=(-1, -1))])
    outs = [[(kw, run(**kw)) for kw in group] for group in groups]
    torch.cuda.synchronize()
    for group in outs:
        first_kw, first = group[0]
        test.assertFalse(torch.isnan(first).any().item(), f"{first_kw}: NaN in output (unwritten elements?)")
        for kw, o in group[1:]:
            test.assertTrue(torch.equal(o.view(torch.int16), first.view(torch.int16)), f"{kw} differs from {first_kw}")
    test.assertFalse(torch.equal(outs[0][0][1].view(torch.int16), outs[1][0][1].view(torch.int16)),
                     f"window={w} left the output unchanged")


@unittest.skipUnless(HAVE_CUDA, "needs torch with CUDA")
@unittest.skipUnless(_have_lib(), "libparallax.so not found (set PARALLAX_LIBRARY)")
class DecodeGpuTest(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)

    def check(self, got, want, dtype, what):
        self.assertFalse(torch.isnan(got).any().item(), f"{what}: NaN in output (unwritten elements?)")
        err = rel_err(got, want)
        self.assertLessEqual(err, TOL[dtype], f"{what}: relative error {err:.3e}")

    def poisoned(self, like):
        return torch.full_like(like, float("nan"))

    def contiguous_case(self, dtype, learned=True, head_major=False, window=0, affine="plain", r_scale=1.0,
                        hq=8, hkv=2, d=128, seqlens=(200, 77, 1)):
        b, lmax = len(seqlens), max(seqlens)
        q = randn(b, 1, hq, d, dtype=dtype)
        r = randn(b, 1, hq, d, dtype=dtype, scale=r_scale) if learned else None
        if head_major:  # [B, Hkv, L, D] storage viewed as [B, L, Hkv, D]
            k = randn(b, hkv, lmax, d, dtype=dtype).transpose(1, 2)
            v = randn(b, hkv, lmax, d, dtype=dtype, norm=False).transpose(1, 2)
        else:
            k = randn(b, lmax, hkv, d, dtype=dtype)
            v = randn(b, lmax, hkv, d, dtype=dtype, norm=False)
        lens = torch.tensor(seqlens, dtype=torch.int32, device="cuda")
        out = self.poisoned(q)
        res = plx.parallax_decode(q, r, k, v, cache_seqlens=lens, window=window, affine=affine, out=out)
        self.assertIs(res, out)
        torch.cuda.synchronize()
        for i, n in enumerate(seqlens):
            want = reference(q[i], None if r is None else r[i], k[i, :n], v[i, :n], window=window, affine=affine)
            self.check(out[i], want, dtype, f"{dtype} seq {i} (len {n})")

    def test_contiguous_bf16(self):
        self.contiguous_case(torch.bfloat16)

    def test_contiguous_fp16(self):
        self.contiguous_case(torch.float16)

    def test_softmax_r_none(self):
        for dtype in (torch.bfloat16, torch.float16):
            self.contiguous_case(dtype, learned=False)

    def test_head_major_cache(self):
        self.contiguous_case(torch.bfloat16, head_major=True)

    def test_window_and_heads(self):
        self.contiguous_case(torch.float16, window=50, hq=16, hkv=1, d=64, seqlens=(130, 40))

    def test_window_size_spellings_are_bit_identical(self):
        dtype = torch.bfloat16
        q = randn(2, 1, 8, 128, dtype=dtype)
        r = randn(2, 1, 8, 128, dtype=dtype)
        k = randn(2, 300, 2, 128, dtype=dtype)
        v = randn(2, 300, 2, 128, dtype=dtype, norm=False)
        lens = torch.tensor([300, 177], dtype=torch.int32, device="cuda")
        check_window_spellings(self, lambda **kw: plx.parallax_decode(
            q, r, k, v, cache_seqlens=lens, out=torch.full_like(q, float("nan")), **kw), 50)
        plan = plx.decode_plan(q, r, k, v, window=50)
        self.assertIn("-win.", plan.variant)
        self.assertEqual(plx.decode_plan(q, r, k, v, window_size=(49, -1)), plan)

    def test_amplified(self):
        self.contiguous_case(torch.float16, affine="amplified", r_scale=0.05, seqlens=(90, 33))

    def test_r_scales(self):
        for s in (0.1, 10.0):
            self.contiguous_case(torch.bfloat16, r_scale=s, seqlens=(150, 64))

    def test_uniform_length_without_seqlens_and_3d(self):
        dtype = torch.bfloat16
        q = randn(2, 8, 128, dtype=dtype)  # [B, Hq, D]
        r = randn(2, 8, 128, dtype=dtype)
        k = randn(2, 96, 2, 128, dtype=dtype)
        v = randn(2, 96, 2, 128, dtype=dtype, norm=False)
        out = plx.parallax_decode(q, r, k, v)
        self.assertEqual(out.shape, q.shape)
        torch.cuda.synchronize()
        for i in range(2):
            self.check(out[i], reference(q[i][None], r[i][None], k[i], v[i])[0], dtype, f"seq {i}")

    def paged_case(self, dtype, learned=True, page_size=16, seqlens=(64, 65, 3)):
        hq, hkv, d = 8, 2, 128
        b = len(seqlens)
        max_pages = max((n + page_size - 1) // page_size for n in seqlens)
        num_pages = b * max_pages + 3
        q = randn(b, 1, hq, d, dtype=dtype)
        r = randn(b, 1, hq, d, dtype=dtype) if learned else None
        k_pages = randn(num_pages, page_size, hkv, d, dtype=dtype)
        v_pages = randn(num_pages, page_size, hkv, d, dtype=dtype, norm=False)
        perm = torch.randperm(num_pages, device="cuda")[: b * max_pages].to(torch.int32)
        block_table = perm.view(b, max_pages).contiguous()
        lens = torch.tensor(seqlens, dtype=torch.int32, device="cuda")
        out = plx.parallax_decode(q, r, k_pages, v_pages, block_table=block_table, cache_seqlens=lens)
        torch.cuda.synchronize()
        self.assertEqual(out.shape, q.shape)
        for i, n in enumerate(seqlens):
            pages = block_table[i].long()
            k = k_pages[pages].reshape(-1, hkv, d)[:n]
            v = v_pages[pages].reshape(-1, hkv, d)[:n]
            want = reference(q[i], None if r is None else r[i], k, v)
            self.check(out[i], want, dtype, f"paged {dtype} seq {i} (len {n})")

    def test_paged_bf16(self):
        self.paged_case(torch.bfloat16)

    def test_paged_fp16(self):
        self.paged_case(torch.float16)

    def test_paged_softmax(self):
        self.paged_case(torch.bfloat16, learned=False, page_size=32, seqlens=(32, 33, 100))

    def test_split_counts_agree(self):
        dtype = torch.float16
        q = randn(2, 1, 8, 128, dtype=dtype)
        r = randn(2, 1, 8, 128, dtype=dtype)
        k = randn(2, 512, 2, 128, dtype=dtype)
        v = randn(2, 512, 2, 128, dtype=dtype, norm=False)
        outs = [plx.parallax_decode(q, r, k, v, num_splits=s) for s in (1, 3, 8)]
        torch.cuda.synchronize()
        for o in outs[1:]:
            self.assertLess(rel_err(o, outs[0].double()), 2e-3)

    def test_plan_info_and_explicit_variant(self):
        dtype = torch.bfloat16
        q = randn(2, 1, 8, 128, dtype=dtype)
        r = randn(2, 1, 8, 128, dtype=dtype)
        k = randn(2, 128, 2, 128, dtype=dtype)
        v = randn(2, 128, 2, 128, dtype=dtype, norm=False)
        plan = plx.decode_plan(q, r, k, v)
        self.assertTrue(plan.variant.startswith("decode-bf16-d128-h8x2-contig-nowin.learned-plain."), plan)
        self.assertIn(plan.choice, ("default", "exact", "nearest"))
        self.assertGreaterEqual(plan.num_splits, 1)
        explicit = plx.decode_plan(q, r, k, v, variant=plan.variant)
        self.assertEqual(explicit.choice, "explicit")
        self.assertEqual(explicit.variant, plan.variant)
        out = plx.parallax_decode(q, r, k, v, variant=plan.variant)
        torch.cuda.synchronize()
        for i in range(2):
            self.check(out[i], reference(q[i], r[i], k[i], v[i]), dtype, f"explicit seq {i}")
        with self.assertRaises(plx.ParallaxError) as cm:
            plx.parallax_decode(q, None, k, v, variant=plan.variant)  # softmax call, learned key
        self.assertIn("variant", str(cm.exception))

    def test_caller_workspace_and_side_stream(self):
        dtype = torch.bfloat16
        q = randn(1, 1, 8, 128, dtype=dtype)
        r = randn(1, 1, 8, 128, dtype=dtype)
        k = randn(1, 1024, 2, 128, dtype=dtype)
        v = randn(1, 1024, 2, 128, dtype=dtype, norm=False)
        n = plx.decode_workspace_size(q, r, k, v, num_splits=4)
        self.assertGreater(n, 0)
        ws = torch.empty(n, dtype=torch.uint8, device="cuda")
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            out = plx.parallax_decode(q, r, k, v, num_splits=4, workspace=ws)
        stream.synchronize()
        self.check(out[0], reference(q[0], r[0], k[0], v[0]), dtype, "side stream")
        with self.assertRaises(plx.ParallaxError) as cm:
            plx.parallax_decode(q, r, k, v, num_splits=4, workspace=ws[: n // 2])
        self.assertIn("workspace_bytes", str(cm.exception))

    def test_empty_cache_and_batch(self):
        q = randn(2, 1, 8, 128, dtype=torch.bfloat16)
        k = torch.empty(2, 0, 2, 128, dtype=torch.bfloat16, device="cuda")
        out = plx.parallax_decode(q, q, k, k)
        self.assertEqual(out.shape, q.shape)
        self.assertEqual(out.abs().max().item(), 0.0)
        empty = plx.parallax_decode(q[:0], q[:0], k[:0], k[:0])
        self.assertEqual(tuple(empty.shape), (0, 1, 8, 128))

    def test_cuda_graph_capture(self):
        # With a caller workspace, a warmed-up decode launches without allocating: capturable.
        dtype = torch.float16
        q = randn(2, 1, 8, 128, dtype=dtype)
        r = randn(2, 1, 8, 128, dtype=dtype)
        k = randn(2, 700, 2, 128, dtype=dtype)
        v = randn(2, 700, 2, 128, dtype=dtype, norm=False)
        lens = torch.tensor([700, 300], dtype=torch.int32, device="cuda")
        ws = torch.empty(plx.decode_workspace_size(q, r, k, v, cache_seqlens=lens, num_splits=4),
                         dtype=torch.uint8, device="cuda")
        out = torch.empty_like(q)
        kwargs = dict(cache_seqlens=lens, num_splits=4, workspace=ws, out=out)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            plx.parallax_decode(q, r, k, v, **kwargs)  # warm-up: JIT compile, module load
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            plx.parallax_decode(q, r, k, v, **kwargs)
        out.fill_(float("nan"))
        q.copy_(randn(2, 1, 8, 128, dtype=dtype))  # new inputs, same buffers
        graph.replay()
        torch.cuda.synchronize()
        for i, n in enumerate((700, 300)):
            self.check(out[i], reference(q[i], r[i], k[i, :n], v[i, :n]), dtype, f"graph replay seq {i}")

    def test_errors(self):
        q = randn(2, 1, 8, 128, dtype=torch.bfloat16)
        k = randn(2, 64, 2, 128, dtype=torch.bfloat16)
        with self.assertRaises(plx.ParallaxError) as cm:
            plx.parallax_decode(q.cpu(), None, k.cpu(), k.cpu())
        self.assertIn("CUDA tensor", str(cm.exception))
        with self.assertRaises(plx.ParallaxError) as cm:
            plx.parallax_decode(q, None, k.half(), k.half())
        self.assertEqual(cm.exception.status_name, "PLX_ERROR_INVALID_ARGUMENT")
        self.assertIn("k: dtype=fp16", str(cm.exception))
        with self.assertRaises(plx.ParallaxError) as cm:
            plx.parallax_decode(q.float(), None, k, k)
        self.assertEqual(cm.exception.status_name, "PLX_ERROR_UNSUPPORTED")

    def test_device_info(self):
        info = plx.get_context(0).device_info()
        self.assertGreater(info["sm_count"], 0)


@unittest.skipUnless(HAVE_CUDA, "needs torch with CUDA")
@unittest.skipUnless(_have_lib(), "libparallax.so not found (set PARALLAX_LIBRARY)")
class PrefillGpuTest(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(1)

    def check(self, got, want, dtype, what):
        self.assertFalse(torch.isnan(got).any().item(), f"{what}: NaN in output")
        err = rel_err(got, want)
        self.assertLessEqual(err, TOL[dtype], f"{what}: relative error {err:.3e}")

    def batched_case(self, dtype, learned=True, lq=70, lk=70, window=0):
        b, hq, hkv, d = 2, 4, 2, 128
        q = randn(b, lq, hq, d, dtype=dtype)
        r = randn(b, lq, hq, d, dtype=dtype) if learned else None
        k = randn(b, lk, hkv, d, dtype=dtype)
        v = randn(b, lk, hkv, d, dtype=dtype, norm=False)
        out = torch.full_like(q, float("nan"))
        plx.parallax_prefill(q, r, k, v, window=window, out=out)
        torch.cuda.synchronize()
        for i in range(b):
            want = reference(q[i], None if r is None else r[i], k[i], v[i], window=window)
            self.check(out[i], want, dtype, f"prefill {dtype} seq {i} (Lq {lq}, Lk {lk})")

    def test_batched_bf16(self):
        self.batched_case(torch.bfloat16)

    def test_batched_fp16(self):
        self.batched_case(torch.float16)

    def test_batched_softmax(self):
        self.batched_case(torch.bfloat16, learned=False)

    def test_chunked_and_window(self):
        self.batched_case(torch.float16, lq=33, lk=100, window=40)

    def test_window_size_spellings_are_bit_identical(self):
        dtype = torch.float16
        q = randn(2, 96, 8, 64, dtype=dtype)
        r = randn(2, 96, 8, 64, dtype=dtype)
        k = randn(2, 300, 2, 64, dtype=dtype)
        v = randn(2, 300, 2, 64, dtype=dtype, norm=False)
        check_window_spellings(self, lambda **kw: plx.parallax_prefill(
            q, r, k, v, out=torch.full_like(q, float("nan")), **kw), 40)
        plan = plx.prefill_plan(q, r, k, v, window=40)
        self.assertIn("-win.", plan.variant)
        self.assertEqual(plx.prefill_plan(q, r, k, v, window_size=(39, 0)), plan)

    def test_packed(self):
        dtype = torch.bfloat16
        hq, hkv, d = 4, 1, 64
        lens_q, lens_k = [17, 64, 1], [40, 64, 9]
        q = randn(sum(lens_q), hq, d, dtype=dtype)
        r = randn(sum(lens_q), hq, d, dtype=dtype)
        k = randn(sum(lens_k), hkv, d, dtype=dtype)
        v = randn(sum(lens_k), hkv, d, dtype=dtype, norm=False)

        out = plx.parallax_prefill(q, r, k, v, cu_seqlens_q=cu(lens_q), cu_seqlens_k=cu(lens_k))
        torch.cuda.synchronize()
        self.assertEqual(out.shape, q.shape)
        oq = ok = 0
        for i, (nq, nk) in enumerate(zip(lens_q, lens_k)):
            want = reference(q[oq:oq + nq], r[oq:oq + nq], k[ok:ok + nk], v[ok:ok + nk])
            self.check(out[oq:oq + nq], want, dtype, f"packed seq {i}")
            oq += nq
            ok += nk

    def check_stats(self, lse, tbar, want_lse, want_tbar, what):
        # Only fp32 rounding separates the kernels from float64 here (tests/runtime/gpu_harness.h,
        # kStatsTolerance: ~1e-6 measured, 2e-5 allowed).
        self.assertFalse(torch.isnan(lse).any().item() or torch.isnan(tbar).any().item(), f"{what}: NaN")
        none = torch.isinf(want_lse)
        self.assertTrue(torch.equal(torch.isinf(lse), none), f"{what}: -inf rows differ")
        self.assertTrue(bool((tbar[none] == 0).all()), f"{what}: rows without keys need tbar 0")
        ok = ~none
        lse_err = ((lse[ok].double() - want_lse[ok]).abs() / want_lse[ok].abs().clamp(min=1)).max().item()
        scale = max(1.0, want_tbar.abs().max().item())
        tbar_err = (tbar[ok].double() - want_tbar[ok]).abs().max().item() / scale
        self.assertLessEqual(lse_err, 2e-5, f"{what}: lse error {lse_err:.3e}")
        self.assertLessEqual(tbar_err, 2e-5, f"{what}: tbar error {tbar_err:.3e}")

    def test_stats_batched(self):
        for dtype, learned, window in ((torch.bfloat16, True, 0), (torch.float16, False, 24)):
            b, lq, lk, hq, hkv, d = 2, 70, 50, 8, 2, 128  # rows 0..19 see no key
            q = randn(b, lq, hq, d, dtype=dtype)
            r = randn(b, lq, hq, d, dtype=dtype, scale=3.0) if learned else None
            k = randn(b, lk, hkv, d, dtype=dtype)
            v = randn(b, lk, hkv, d, dtype=dtype, norm=False)
            out, lse, tbar = plx.parallax_prefill(q, r, k, v, window=window, return_stats=True)
            torch.cuda.synchronize()
            self.assertEqual((lse.shape, lse.dtype, tbar.shape), ((b, hq, lq), torch.float32, (b, hq, lq)))
            for i in range(b):
                what = f"stats {dtype} learned={learned} seq {i}"
                self.check(out[i], reference(q[i], None if r is None else r[i], k[i], v[i], window=window), dtype,
                           what)
                want_lse, want_tbar = reference_stats(q[i], None if r is None else r[i], k[i], window=window)
                self.check_stats(lse[i], tbar[i], want_lse, want_tbar, what)
            if not learned:
                self.assertTrue(bool((tbar == 0).all()), "probe none: tbar is zero")

    def test_stats_packed(self):
        dtype, hq, hkv, d = torch.bfloat16, 4, 1, 64
        lens_q, lens_k = [17, 64, 12], [40, 64, 5]  # the last sequence's first 7 rows see no key
        q = randn(sum(lens_q), hq, d, dtype=dtype)
        r = randn(sum(lens_q), hq, d, dtype=dtype)
        k = randn(sum(lens_k), hkv, d, dtype=dtype)
        v = randn(sum(lens_k), hkv, d, dtype=dtype, norm=False)

        out, lse, tbar = plx.parallax_prefill(q, r, k, v, cu_seqlens_q=cu(lens_q), cu_seqlens_k=cu(lens_k),
                                                   return_stats=True)
        torch.cuda.synchronize()
        self.assertEqual((lse.shape, tbar.shape), ((hq, sum(lens_q)), (hq, sum(lens_q))))
        oq = ok = 0
        for i, (nq, nk) in enumerate(zip(lens_q, lens_k)):
            want_lse, want_tbar = reference_stats(q[oq:oq + nq], r[oq:oq + nq], k[ok:ok + nk])
            self.check_stats(lse[:, oq:oq + nq], tbar[:, oq:oq + nq], want_lse, want_tbar, f"packed stats seq {i}")
            oq += nq
            ok += nk

    def test_plan(self):
        q = randn(1, 16, 4, 128, dtype=torch.float16)
        k = randn(1, 16, 2, 128, dtype=torch.float16)
        plan = plx.prefill_plan(q, None, k, k)
        self.assertTrue(plan.variant.startswith("prefill-fp16-d128-h4x2-contig-nowin.none-plain."), plan)
        self.assertEqual(plan.choice, "default")


def check_stats_close(test, lse, tbar, want_lse, want_tbar, what, tol=2e-5):
    """lse / tbar against float64 (only fp32 rounding apart, as PrefillGpuTest.check_stats)."""
    test.assertFalse(torch.isnan(lse).any().item() or torch.isnan(tbar).any().item(), f"{what}: NaN")
    none = torch.isinf(want_lse)
    test.assertTrue(torch.equal(torch.isinf(lse), none), f"{what}: -inf rows differ")
    ok = ~none
    if ok.any():
        lse_err = ((lse[ok].double() - want_lse[ok]).abs() / want_lse[ok].abs().clamp(min=1)).max().item()
        scale = max(1.0, want_tbar.abs().max().item())
        tbar_err = (tbar[ok].double() - want_tbar[ok]).abs().max().item() / scale
        test.assertLessEqual(lse_err, tol, f"{what}: lse error {lse_err:.3e}")
        test.assertLessEqual(tbar_err, tol, f"{what}: tbar error {tbar_err:.3e}")


@unittest.skipUnless(HAVE_CUDA, "needs torch with CUDA")
@unittest.skipUnless(_have_lib(), "libparallax.so not found (set PARALLAX_LIBRARY)")
class StatsMergeGpuTest(unittest.TestCase):
    """return_lse (lse, tbar, vbar), causal=False and merge_states (cascades) on the GPU."""

    MEMBERS = ((False, "plain"), (True, "plain"), (True, "amplified"))

    def setUp(self):
        torch.manual_seed(3)

    def check(self, got, want, dtype, what, tol=None):
        self.assertFalse(torch.isnan(got).any().item(), f"{what}: NaN (unwritten elements?)")
        err = rel_err(got, want)
        self.assertLessEqual(err, tol or TOL[dtype], f"{what}: relative error {err:.3e}")

    def test_prefill_return_lse_and_non_causal(self):
        for dtype in (torch.bfloat16, torch.float16):
            for learned, affine in self.MEMBERS:
                for causal in (True, False):
                    what = f"{dtype} learned={learned} {affine} causal={causal}"
                    b, lq, lk, hq, hkv, d = 2, 40, 70, 4, 2, 128
                    q = randn(b, lq, hq, d, dtype=dtype)
                    r = randn(b, lq, hq, d, dtype=dtype, scale=0.05 if affine == "amplified" else 0.5) if learned else None
                    k = randn(b, lk, hkv, d, dtype=dtype)
                    v = randn(b, lk, hkv, d, dtype=dtype, norm=False)
                    out, st = plx.parallax_prefill(q, r, k, v, affine=affine, causal=causal, return_lse=True)
                    torch.cuda.synchronize()
                    self.assertIsInstance(st, plx.AttentionStats)
                    self.assertEqual((st.lse.shape, st.vbar.shape, st.packed), ((b, hq, lq), q.shape, False))
                    for i in range(b):
                        ri = None if r is None else r[i]
                        self.check(out[i], reference(q[i], ri, k[i], v[i], affine=affine, causal=causal), dtype, what)
                        self.check(st.vbar[i], reference(q[i], None, k[i], v[i], causal=causal), dtype, what + " vbar")
                        want_lse, want_tbar = reference_stats(q[i], ri, k[i], causal=causal)
                        check_stats_close(self, st.lse[i], st.tbar[i], want_lse, want_tbar, what)
        # Packed, with rows that see no key (causal): vbar zeros there.
        dtype, hq, hkv, d = torch.bfloat16, 4, 1, 64
        lens_q, lens_k = [17, 64, 12], [40, 64, 5]
        q = randn(sum(lens_q), hq, d, dtype=dtype)
        r = randn(sum(lens_q), hq, d, dtype=dtype)
        k = randn(sum(lens_k), hkv, d, dtype=dtype)
        v = randn(sum(lens_k), hkv, d, dtype=dtype, norm=False)
        for causal in (True, False):
            out, st = plx.parallax_prefill(q, r, k, v, cu_seqlens_q=cu(lens_q), cu_seqlens_k=cu(lens_k),
                                                causal=causal, return_lse=True)
            torch.cuda.synchronize()
            self.assertEqual((st.lse.shape, st.packed), ((hq, sum(lens_q)), True))
            oq = ok = 0
            for i, (nq, nk) in enumerate(zip(lens_q, lens_k)):
                sl = slice(oq, oq + nq)
                self.check(out[sl], reference(q[sl], r[sl], k[ok:ok + nk], v[ok:ok + nk], causal=causal), dtype,
                           f"packed causal={causal} seq {i}")
                self.check(st.vbar[sl], reference(q[sl], None, k[ok:ok + nk], v[ok:ok + nk], causal=causal), dtype,
                           f"packed vbar causal={causal} seq {i}")
                want_lse, want_tbar = reference_stats(q[sl], r[sl], k[ok:ok + nk], causal=causal)
                check_stats_close(self, st.lse[:, sl], st.tbar[:, sl], want_lse, want_tbar, f"packed seq {i}")
                oq += nq
                ok += nk

    def cascade(self, dtype, learned, affine, in_place=False, page_size=16, prefix_pages=3):
        """Sequences sharing prefix pages: the prefix attended non-causally, each sequence's own
        pages causally, merged; against the one-shot extend over whole sequences."""
        hq, hkv, d = 8, 2, 128
        own, tq = [37, 20, 64], [5, 20, 9]
        b, prefix = len(own), prefix_pages * page_size
        own_pages = [(n + page_size - 1) // page_size for n in own]
        num_pages = prefix_pages + sum(own_pages) + 1
        k = randn(num_pages, page_size, hkv, d, dtype=dtype)
        v = randn(num_pages, page_size, hkv, d, dtype=dtype, norm=False)
        first = [prefix_pages + sum(own_pages[:i]) for i in range(b)]
        width = max(own_pages)
        t_own = torch.zeros(b, width, dtype=torch.int32, device="cuda")
        t_full = torch.zeros(b, prefix_pages + width, dtype=torch.int32, device="cuda")
        for i in range(b):
            t_own[i, :own_pages[i]] = torch.arange(first[i], first[i] + own_pages[i], device="cuda")
            t_full[i, :prefix_pages] = torch.arange(prefix_pages, device="cuda")
            t_full[i, prefix_pages:prefix_pages + own_pages[i]] = t_own[i, :own_pages[i]]
        t_pre = torch.arange(prefix_pages, dtype=torch.int32, device="cuda").repeat(b, 1).contiguous()
        lens = lambda xs: torch.tensor(xs, dtype=torch.int32, device="cuda")  # noqa: E731
        q = randn(sum(tq), hq, d, dtype=dtype)
        r = randn(sum(tq), hq, d, dtype=dtype, scale=0.05 if affine == "amplified" else 0.5) if learned else None
        cq = cu(tq)
        kw = dict(cu_seqlens_q=cq, max_seqlen_q=max(tq), affine=affine)
        whole = plx.parallax_prefill(q, r, k, v, block_table=t_full.contiguous(),
                                          seqused_k=lens([prefix + n for n in own]), **kw)
        out_a, st_a = plx.parallax_prefill(q, r, k, v, block_table=t_pre, seqused_k=lens([prefix] * b),
                                                causal=False, return_lse=True, **kw)
        out_b, st_b = plx.parallax_prefill(q, r, k, v, block_table=t_own.contiguous(), seqused_k=lens(own),
                                                return_lse=True, **kw)
        extra = dict(q=q, r=r) if affine == "amplified" else {}
        if in_place:
            out, st = plx.merge_states(out_a, st_a, out_b, st_b, affine=affine, out=out_a, out_stats=st_a,
                                            **extra)
            self.assertIs(out, out_a)
        else:
            out, st = plx.merge_states(out_a, st_a, out_b, st_b, affine=affine, **extra)
        torch.cuda.synchronize()
        what = f"cascade {dtype} learned={learned} {affine} in_place={in_place}"
        self.assertEqual(st.packed, True)
        self.check(out, whole.double(), dtype, what + " vs one-shot")
        oq = 0
        for i in range(b):
            sl = slice(oq, oq + tq[i])
            kk = k[t_full[i].long()].reshape(-1, hkv, d)[:prefix + own[i]]
            vv = v[t_full[i].long()].reshape(-1, hkv, d)[:prefix + own[i]]
            ri = None if r is None else r[sl]
            self.check(out[sl], reference(q[sl], ri, kk, vv, affine=affine), dtype, f"{what} seq {i}")
            self.check(st.vbar[sl], reference(q[sl], None, kk, vv), dtype, f"{what} vbar seq {i}")
            want_lse, want_tbar = reference_stats(q[sl], ri, kk)
            check_stats_close(self, st.lse[:, sl], st.tbar[:, sl], want_lse, want_tbar, f"{what} seq {i}")
            oq += tq[i]

    def test_cascade_every_member(self):
        for dtype in (torch.bfloat16, torch.float16):
            for learned, affine in self.MEMBERS:
                self.cascade(dtype, learned, affine)

    def test_cascade_in_place(self):
        self.cascade(torch.bfloat16, True, "plain", in_place=True, page_size=64, prefix_pages=1)
        self.cascade(torch.float16, True, "amplified", in_place=True)

    def test_decode_return_lse_and_decode_cascade(self):
        for dtype in (torch.bfloat16, torch.float16):
            for learned, affine in self.MEMBERS:
                what = f"decode {dtype} learned={learned} {affine}"
                hq, hkv, d, ps, prefix_pages = 8, 2, 128, 16, 2
                own = [1, 40, 100]
                b, prefix = len(own), prefix_pages * ps
                own_pages = [(n + ps - 1) // ps for n in own]
                num_pages = prefix_pages + sum(own_pages)
                k = randn(num_pages, ps, hkv, d, dtype=dtype)
                v = randn(num_pages, ps, hkv, d, dtype=dtype, norm=False)
                first = [prefix_pages + sum(own_pages[:i]) for i in range(b)]
                width = max(own_pages)
                t_own = torch.zeros(b, width, dtype=torch.int32, device="cuda")
                t_full = torch.zeros(b, prefix_pages + width, dtype=torch.int32, device="cuda")
                for i in range(b):
                    t_own[i, :own_pages[i]] = torch.arange(first[i], first[i] + own_pages[i], device="cuda")
                    t_full[i, :prefix_pages] = torch.arange(prefix_pages, device="cuda")
                    t_full[i, prefix_pages:prefix_pages + own_pages[i]] = t_own[i, :own_pages[i]]
                t_pre = torch.arange(prefix_pages, dtype=torch.int32, device="cuda").repeat(b, 1).contiguous()
                lens = lambda xs: torch.tensor(xs, dtype=torch.int32, device="cuda")  # noqa: E731
                q = randn(b, hq, d, dtype=dtype)  # [B, Hq, D]: statistics [B, Hq]
                r = randn(b, hq, d, dtype=dtype, scale=0.05 if affine == "amplified" else 0.5) if learned else None
                whole = plx.parallax_decode(q, r, k, v, block_table=t_full, cache_seqlens=lens(
                    [prefix + n for n in own]), affine=affine)
                out_a, st_a = plx.parallax_decode(q, r, k, v, block_table=t_pre, cache_seqlens=lens([prefix] * b),
                                                       affine=affine, return_lse=True)
                out_b, st_b = plx.parallax_decode(q, r, k, v, block_table=t_own.contiguous(),
                                                       cache_seqlens=lens(own), affine=affine, return_lse=True)
                extra = dict(q=q, r=r) if affine == "amplified" else {}
                out, st = plx.merge_states(out_a, st_a, out_b, st_b, affine=affine, **extra)
                torch.cuda.synchronize()
                self.assertEqual((st_b.lse.shape, st_b.vbar.shape), ((b, hq), q.shape))
                self.check(out, whole.double(), dtype, what + " merged vs one-shot decode")
                for i in range(b):
                    kk = k[t_own[i].long()].reshape(-1, hkv, d)[:own[i]]
                    vv = v[t_own[i].long()].reshape(-1, hkv, d)[:own[i]]
                    ri = None if r is None else r[i][None]
                    self.check(out_b[i], reference(q[i][None], ri, kk, vv, affine=affine)[0], dtype, what + f" part {i}")
                    self.check(st_b.vbar[i], reference(q[i][None], None, kk, vv)[0], dtype, what + f" vbar {i}")
                    want_lse, want_tbar = reference_stats(q[i][None], ri, kk)
                    check_stats_close(self, st_b.lse[i][:, None], st_b.tbar[i][:, None], want_lse, want_tbar,
                                      what + f" stats {i}")
                    kk = k[t_full[i].long()].reshape(-1, hkv, d)[:prefix + own[i]]
                    vv = v[t_full[i].long()].reshape(-1, hkv, d)[:prefix + own[i]]
                    self.check(out[i], reference(q[i][None], ri, kk, vv, affine=affine)[0], dtype, what + f" seq {i}")

    def test_merge_with_an_absent_part(self):
        # A part whose rows saw no key (lse -inf) leaves the other part as it was.
        dtype = torch.bfloat16
        q = randn(2, 16, 4, 64, dtype=dtype)
        r = randn(2, 16, 4, 64, dtype=dtype)
        k = randn(2, 30, 2, 64, dtype=dtype)
        v = randn(2, 30, 2, 64, dtype=dtype, norm=False)
        out_a, st_a = plx.parallax_prefill(q, r, k, v, return_lse=True)
        empty = plx.AttentionStats(torch.full_like(st_a.lse, float("-inf")), torch.zeros_like(st_a.tbar),
                                        torch.zeros_like(st_a.vbar))
        out, st = plx.merge_states(out_a, st_a, torch.zeros_like(out_a), empty)
        torch.cuda.synchronize()
        self.assertEqual(rel_err(out, out_a.double()), 0.0)
        self.assertTrue(torch.equal(st.lse, st_a.lse))


def paged_cache(b, max_pages, page_size=16, hkv=2, d=128, dtype=None, spare=3):
    """K/V pools of b * max_pages + spare pages and a shuffled block table [b, max_pages]."""
    num_pages = b * max_pages + spare
    k = randn(num_pages, page_size, hkv, d, dtype=dtype)
    v = randn(num_pages, page_size, hkv, d, dtype=dtype, norm=False)
    table = torch.randperm(num_pages, device="cuda")[: b * max_pages].to(torch.int32).view(b, max_pages)
    return k, v, table.contiguous()


def paged_decode(lens, max_pages, dtype, tq=1):
    """q, r [B, tq, 8, 128], a paged K/V pool and the block_table / cache_seqlens kwargs."""
    b = len(lens)
    q = randn(b, tq, 8, 128, dtype=dtype)
    r = randn(b, tq, 8, 128, dtype=dtype)
    k, v, table = paged_cache(b, max_pages, dtype=dtype)
    return q, r, k, v, dict(block_table=table, cache_seqlens=torch.tensor(lens, dtype=torch.int32, device="cuda"))


def same_bits(a, b):
    return torch.equal(a.view(torch.int16), b.view(torch.int16))


@unittest.skipUnless(HAVE_CUDA, "needs torch with CUDA")
@unittest.skipUnless(_have_lib(), "libparallax.so not found (set PARALLAX_LIBRARY)")
class PlanGpuTest(unittest.TestCase):
    """Plans (plan once per step, run per layer) and decode's live-length hint."""

    def setUp(self):
        torch.manual_seed(1)

    def test_decode_plan_runs_layers_as_parallax_decode(self):
        dtype = torch.bfloat16
        q, r, k0, v0, kw = paged_decode([100, 700, 33], 64, dtype)  # capacity 1024 keys
        layers = [(k0, v0), paged_cache(3, 64, dtype=dtype)[:2]]  # same shapes, the same table serves
        table, lens = kw["block_table"], kw["cache_seqlens"]
        with plx.plan_decode(q, r, *layers[0], max_seqlen_k=700, **kw) as plan:
            self.assertEqual(plan.info, plx.decode_plan(q, r, *layers[0], max_seqlen_k=700, **kw))
            outs = []
            for k, v in layers:
                got = plan.run(q, r, k, v, **kw)
                want = plx.parallax_decode(q, r, k, v, max_seqlen_k=700, **kw)
                torch.cuda.synchronize()
                self.assertTrue(same_bits(got, want), "plan.run differs from parallax_decode")
                outs.append(got)
            self.assertFalse(same_bits(outs[0], outs[1]), "the layers' K/V made no difference")
            for i, n in enumerate(lens.tolist()):
                pages = table[i].long()
                k, v = (t[pages].reshape(-1, 2, 128)[:n] for t in layers[1])
                DecodeGpuTest.check(self, outs[1][i], reference(q[i], r[i], k, v), dtype, f"plan seq {i}")
            with self.assertRaises(plx.ParallaxError) as cm:  # not the plan's problem
                plan.run(q, None, *layers[1], **kw)
            self.assertEqual(cm.exception.status_name, "PLX_ERROR_INVALID_ARGUMENT")
            self.assertIn("r: absent, but the plan was made with it", str(cm.exception))
        with self.assertRaises(plx.ParallaxError) as cm:
            plan.run(q, r, *layers[1], **kw)
        self.assertIn("closed", str(cm.exception))

    def test_hint_follows_the_live_batch(self):
        # A table for 32k keys with 50 and 64 live: the capacity plans many splits, the hint one.
        dtype = torch.float16
        q, r, k, v, kw = paged_decode([50, 64], 2048, dtype)
        table = kw["block_table"]
        capacity = plx.plan_decode(q, r, k, v, **kw)
        live = plx.plan_decode(q, r, k, v, max_seqlen_k=64, **kw)
        short = plx.plan_decode(q, r, k, v, max_seqlen_k=10, **kw)  # below a live length: still right
        self.assertGreater(capacity.info.num_splits, 1, capacity.info)
        self.assertEqual(live.info.num_splits, 1, live.info)
        self.assertEqual(live.info.workspace_bytes, 0)
        self.assertEqual(short.info.num_splits, 1, short.info)
        outs = [p.run(q, r, k, v, **kw) for p in (capacity, live, short)]
        torch.cuda.synchronize()
        self.assertLess(rel_err(outs[1], outs[0].double()), 4e-3)
        self.assertLess(rel_err(outs[2], outs[0].double()), 4e-3)
        for i, n in enumerate((50, 64)):
            pages = table[i].long()
            kk, vv = (t[pages].reshape(-1, 2, 128)[:n] for t in (k, v))
            DecodeGpuTest.check(self, outs[2][i], reference(q[i], r[i], kk, vv), dtype, f"short hint seq {i}")

    def test_decode_plan_under_cuda_graph_capture(self):
        # Made outside capture with a caller workspace, a plan's run launches without allocating.
        dtype = torch.float16
        q, r, k, v, kw = paged_decode([700, 300], 256, dtype)  # capacity 4096
        nbytes = plx.decode_workspace_size(q, r, k, v, max_seqlen_k=700, **kw)
        ws = torch.empty(max(nbytes, 1), dtype=torch.uint8, device="cuda")
        plan = plx.plan_decode(q, r, k, v, max_seqlen_k=700, workspace=ws, **kw)
        self.assertGreater(plan.info.num_splits, 1, plan.info)
        self.assertEqual(plan.info.workspace_bytes, nbytes)
        out = torch.empty_like(q)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            plan.run(q, r, k, v, out=out, workspace=ws, **kw)
        out.fill_(float("nan"))
        q.copy_(randn(2, 1, 8, 128, dtype=dtype))  # new inputs, same buffers
        graph.replay()
        want = plx.parallax_decode(q, r, k, v, max_seqlen_k=700, **kw)
        torch.cuda.synchronize()
        self.assertTrue(same_bits(out, want), "graph replay differs from parallax_decode")

    def test_multi_token_decode_plan(self):
        dtype = torch.bfloat16
        q, r, k, v, kw = paged_decode([40, 97], 8, dtype, tq=3)
        plan = plx.plan_decode(q, r, k, v, max_seqlen_k=97, **kw)
        info = plx.get_context(0).device_info()
        if info["compute_capability"] == (9, 0):  # decode_sm90 takes the 3 tokens (pages of 16)
            self.assertTrue(plan.info.variant.startswith("decode-") and "-q3." in plan.info.variant, plan.info)
        else:  # extend on the prefill kernels
            self.assertTrue(plan.info.variant.startswith("prefill-"), plan.info)
        got = plan.run(q, r, k, v, **kw)
        want = plx.parallax_decode(q, r, k, v, max_seqlen_k=97, **kw)
        torch.cuda.synchronize()
        self.assertTrue(same_bits(got, want), "multi-token plan.run differs from parallax_decode")

    def test_prefill_plan_runs_as_parallax_prefill(self):
        dtype = torch.bfloat16
        lens_q, lens_k = [30, 7], [90, 40]
        q = randn(sum(lens_q), 8, 128, dtype=dtype)
        r = randn(sum(lens_q), 8, 128, dtype=dtype)
        cu_q, cu_k = cu(lens_q), cu(lens_k)
        kw = dict(cu_seqlens_q=cu_q, cu_seqlens_k=cu_k)
        layers = [(randn(sum(lens_k), 2, 128, dtype=dtype), randn(sum(lens_k), 2, 128, dtype=dtype, norm=False))
                  for _ in range(2)]
        plan = plx.plan_prefill(q, r, *layers[0], max_seqlen_q=30, max_seqlen_k=90, return_stats=True, **kw)
        self.assertEqual(plan.info, plx.prefill_plan(q, r, *layers[0], max_seqlen_q=30, max_seqlen_k=90, **kw))
        for k, v in layers:
            got = plan.run(q, r, k, v, **kw)
            want = plx.parallax_prefill(q, r, k, v, max_seqlen_q=30, max_seqlen_k=90, return_stats=True, **kw)
            torch.cuda.synchronize()
            self.assertTrue(same_bits(got[0], want[0]), "plan.run differs from parallax_prefill")
            self.assertTrue(torch.equal(got[1], want[1]) and torch.equal(got[2], want[2]), "statistics differ")
        plan.close()


if __name__ == "__main__":
    unittest.main()
