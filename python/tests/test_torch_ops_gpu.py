"""GPU tests of the eager fast path, the torch custom ops (torch.compile, CUDA graphs) and the
authors' call shape (skipped without torch + CUDA + libparallax.so).

Run: PYTHONPATH=python PARALLAX_LIBRARY=build/runtime/libparallax.so python -m unittest -v test_torch_ops_gpu
(from python/tests).
"""

import os
import sys
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from test_binding_gpu import (HAVE_CUDA, TOL, _have_lib, cu, paged_decode, randn, reference,  # noqa: E402
                              rel_err, same_bits, torch)
import parallax_tuner as plx  # noqa: E402
from parallax_tuner import _fast  # noqa: E402

needs_gpu = unittest.skipUnless(HAVE_CUDA and _have_lib(), "needs torch with CUDA and libparallax.so")


def fresh(t):
    """New random data of t's shape, dtype and strides (a new buffer: new pointers)."""
    return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device).copy_(torch.randn_like(t))


def checked(fn):
    """fn() with every thread's fast-path cache dropped first: the checked (describe, plan) way."""
    _fast.invalidate()
    return fn()


def bits(x):
    if isinstance(x, tuple):
        return [bits(t) for t in x if t is not None and not isinstance(t, bool)]
    return x.view(torch.int16) if x.element_size() == 2 else x.view(torch.int32)


@needs_gpu
class FastPathGpuTest(unittest.TestCase):
    """A call repeating an earlier call's signature runs its plan; it must give the bits of the
    checked way on the same data, over new pointers."""

    def setUp(self):
        torch.manual_seed(7)
        _fast.invalidate()

    def same(self, a, b, what):
        torch.cuda.synchronize()
        flat_a = a if isinstance(a, (tuple, list)) else (a,)
        flat_b = b if isinstance(b, (tuple, list)) else (b,)
        for x, y in zip(flat_a, flat_b):
            if hasattr(x, "lse"):  # AttentionStats
                self.same(tuple(x[:3]), tuple(y[:3]), what)
                continue
            self.assertFalse(torch.isnan(x.float()).any().item(), f"{what}: NaN")
            self.assertTrue(torch.equal(bits(x), bits(y)), f"{what}: fast path differs from the checked way")

    def roundtrip(self, call, tensors, what):
        """call(*tensors): fills the cache, runs again over new data (fast), then the checked way."""
        call(*tensors)
        entries = len(_fast.cache())
        self.assertGreaterEqual(entries, 1, f"{what}: nothing cached")
        new = [None if t is None else fresh(t) if t.dtype != torch.int32 else t for t in tensors]
        fast = call(*new)
        self.assertEqual(len(_fast.cache()), entries, f"{what}: the repeat was not a cache hit")
        slow = checked(lambda: call(*new))
        self.same(fast, slow, what)
        return new, fast

    def test_decode_kinds(self):
        dt = torch.bfloat16
        q, r = randn(3, 1, 32, 128, dtype=dt), randn(3, 1, 32, 128, dtype=dt)
        k, v = randn(3, 300, 8, 128, dtype=dt), randn(3, 300, 8, 128, dtype=dt, norm=False)
        (q2, r2, k2, v2), out = self.roundtrip(lambda *t: plx.parallax_decode(*t), (q, r, k, v), "contiguous")
        want = reference(q2[0], r2[0], k2[0], v2[0])
        self.assertLess(rel_err(out[0], want), TOL[dt])
        self.roundtrip(lambda *t: plx.parallax_decode(*t, window=37), (q, None, k, v), "softmax window")
        self.roundtrip(lambda *t: plx.parallax_decode(*t, return_lse=True), (q, r, k, v), "return_lse")
        pq, pr, pk, pv, kw = paged_decode([100, 700, 33], 64, dt)
        self.roundtrip(lambda a, b, c, d: plx.parallax_decode(a, b, c, d, **kw), (pq, pr, pk, pv), "paged")
        mq, mr, mk, mv, mkw = paged_decode([100, 70], 16, torch.float16, tq=4)
        self.roundtrip(lambda a, b, c, d: plx.parallax_decode(a, b, c, d, **mkw), (mq, mr, mk, mv), "multi-token")

    def test_prefill_kinds(self):
        dt = torch.float16
        q, r = randn(2, 96, 8, 64, dtype=dt), randn(2, 96, 8, 64, dtype=dt)
        k, v = randn(2, 160, 2, 64, dtype=dt), randn(2, 160, 2, 64, dtype=dt, norm=False)
        self.roundtrip(lambda *t: plx.parallax_prefill(*t), (q, r, k, v), "batched")
        self.roundtrip(lambda *t: plx.parallax_prefill(*t, return_stats=True), (q, r, k, v), "return_stats")
        self.roundtrip(lambda *t: plx.parallax_prefill(*t, return_lse=True, causal=False), (q, r, k, v), "lse")
        lens = [50, 17, 90]
        pq, pr = randn(sum(lens), 8, 64, dtype=dt), randn(sum(lens), 8, 64, dtype=dt)
        pk, pv = randn(sum(lens), 2, 64, dtype=dt), randn(sum(lens), 2, 64, dtype=dt, norm=False)
        c = cu(lens)
        self.roundtrip(lambda *t: plx.parallax_prefill(*t, cu_seqlens_q=c, cu_seqlens_k=c, max_seqlen_q=90,
                                                       max_seqlen_k=90), (pq, pr, pk, pv), "packed")
        before = len(_fast.cache())
        plx.parallax_prefill(pq, pr, pk, pv, cu_seqlens_q=c, cu_seqlens_k=c)  # lengths read on the host
        self.assertEqual(len(_fast.cache()), before, "a call with host-read lengths was cached")
        eq, er, ek, ev, kw = paged_decode([100, 700], 64, torch.bfloat16, tq=24)
        kw = dict(block_table=kw["block_table"], seqused_k=kw["cache_seqlens"])
        self.roundtrip(lambda a, b, c_, d: plx.parallax_prefill(a, b, c_, d, **kw), (eq, er, ek, ev), "extend")

    def test_new_signature_and_errors(self):
        dt = torch.bfloat16
        q, r = randn(2, 1, 8, 128, dtype=dt), randn(2, 1, 8, 128, dtype=dt)
        k, v = randn(2, 8, 200, 128, dtype=dt), randn(2, 8, 200, 128, dtype=dt, norm=False)  # head-major
        plx.parallax_decode(q, r, k.transpose(1, 2), v.transpose(1, 2))
        kc, vc = k.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous()
        got = plx.parallax_decode(q, r, kc, vc)  # same shapes, other strides: a new signature
        self.assertEqual(len(_fast.cache()), 2)
        self.assertLess(rel_err(got[1], reference(q[1], r[1], kc[1], vc[1])), TOL[dt])
        with self.assertRaises(plx.ParallaxError) as cm:  # a CPU tensor: the checked way names it
            plx.parallax_decode(q, r.cpu(), kc, vc)
        self.assertIn("r", str(cm.exception))
        with self.assertRaises(plx.ParallaxError):  # misaligned data under a cached signature
            buf = torch.empty(q.numel() + 1, dtype=dt, device="cuda")[1:].view(q.shape).copy_(q)
            plx.parallax_decode(buf, r, kc, vc)

    def test_threads(self):
        dt = torch.bfloat16
        cases = [(randn(2, 1, 16, 128, dtype=dt), randn(2, 1, 16, 128, dtype=dt), randn(2, 256, 4, 128, dtype=dt),
                  randn(2, 256, 4, 128, dtype=dt, norm=False)) for _ in range(4)]
        want = [plx.parallax_decode(*c) for c in cases]
        torch.cuda.synchronize()
        errors = []

        def work(i):
            try:
                s = torch.cuda.Stream()
                with torch.cuda.stream(s):
                    for _ in range(50):
                        got = plx.parallax_decode(*cases[i])
                    s.synchronize()
                if not same_bits(got, want[i]):
                    errors.append(f"thread {i}: differs")
            except Exception as e:  # noqa: BLE001
                errors.append(f"thread {i}: {e!r}")
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])

    def test_graph_capture(self):
        dt = torch.bfloat16
        q, r = randn(2, 1, 32, 128, dtype=dt), randn(2, 1, 32, 128, dtype=dt)
        k, v = randn(2, 512, 8, 128, dtype=dt), randn(2, 512, 8, 128, dtype=dt, norm=False)
        out = torch.empty_like(q)
        plx.parallax_decode(q, r, k, v, out=out)  # the plan is made outside the capture
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            plx.parallax_decode(q, r, k, v, out=out)
        q.copy_(randn(2, 1, 32, 128, dtype=dt))
        out.fill_(float("nan"))
        g.replay()
        torch.cuda.synchronize()
        # The graph holds the planned kernels (split + merge); an eager call runs the plan's
        # one-launch twin (the fused merge): the same math, summed in another order.
        self.assertFalse(torch.isnan(out.float()).any().item())
        self.assertLess(rel_err(out, checked(lambda: plx.parallax_decode(q, r, k, v))), 4e-3)

    def test_cpp_fast_path(self):
        """With the C++ extension built (parallax_tuner.torch_ext), a repeat is served by it and
        gives the bits of the checked way; configure() forgets its records."""
        x = _fast.ext[0]
        if x is None:
            self.skipTest("the C++ fast path is not built for this torch (python3 -m parallax_tuner.torch_ext build)")
        dt = torch.bfloat16
        q, r = randn(2, 1, 32, 128, dtype=dt), randn(2, 1, 32, 128, dtype=dt)
        k, v = randn(2, 700, 8, 128, dtype=dt), randn(2, 700, 8, 128, dtype=dt, norm=False)
        plx.parallax_decode(q, r, k, v)
        self.assertEqual(x.size(), 1, "the first call did not hand its plan to the extension")
        entries = len(_fast.cache())
        q2 = fresh(q)
        fast = plx.parallax_decode(q2, r, k, v)
        out = torch.full_like(q, float("nan"))
        into = plx.parallax_decode(q2, r, k, v, out=out)  # a new signature (out given): Python, then C++
        self.assertIs(into, out)
        into = plx.parallax_decode(q2, r, k, v, out=out)
        self.assertIs(into, out)
        self.assertEqual(x.size(), 2)
        self.assertEqual(len(_fast.cache()), entries + 1)
        self.same(fast, checked(lambda: plx.parallax_decode(q2, r, k, v)), "C++ fast path")
        self.same(into, fast, "C++ fast path, out=")
        self.assertEqual(x.size(), 1, "invalidate() left records behind")  # checked() invalidated, then one call
        pq, pr = randn(2, 96, 8, 64, dtype=dt), randn(2, 96, 8, 64, dtype=dt)
        pk, pv = randn(2, 160, 2, 64, dtype=dt), randn(2, 160, 2, 64, dtype=dt, norm=False)
        plx.parallax_prefill(pq, pr, pk, pv)
        pq2 = fresh(pq)
        before = x.size()
        got = plx.parallax_prefill(pq2, pr, pk, pv)
        self.assertEqual(x.size(), before)
        self.same(got, checked(lambda: plx.parallax_prefill(pq2, pr, pk, pv)), "C++ fast path, prefill")
        pq2.requires_grad_(True)  # autograd: declined by the extension, served by the custom op
        self.assertIsNotNone(plx.parallax_prefill(pq2, pr, pk, pv).grad_fn)


class TwoLayers(torch.nn.Module if torch is not None else object):
    """A two-layer Parallax model: projections, prefill attention, output projection, residual."""

    def __init__(self, d_model=256, hq=4, hkv=2, d=64, layers=2):
        super().__init__()
        self.hq, self.hkv, self.d = hq, hkv, d
        self.qkvr = torch.nn.ModuleList(torch.nn.Linear(d_model, (2 * hq + 2 * hkv) * d, bias=False)
                                        for _ in range(layers))
        self.proj = torch.nn.ModuleList(torch.nn.Linear(hq * d, d_model, bias=False) for _ in range(layers))

    def forward(self, x):
        b, n, _ = x.shape
        hq, hkv, d = self.hq, self.hkv, self.d
        for qkvr, proj in zip(self.qkvr, self.proj):
            q, r, k, v = qkvr(x).split([hq * d, hq * d, hkv * d, hkv * d], dim=-1)
            q, r = q.reshape(b, n, hq, d), r.reshape(b, n, hq, d)
            k, v = k.reshape(b, n, hkv, d), v.reshape(b, n, hkv, d)
            o = plx.parallax_prefill(q, r, k, v)
            x = x + proj(o.reshape(b, n, hq * d))
        return x


class DecodeStep(torch.nn.Module if torch is not None else object):
    """One decode step over a contiguous cache, two layers (the same cache, other projections)."""

    def __init__(self, d_model=256, hq=8, hkv=2, d=128):
        super().__init__()
        self.hq, self.d = hq, d
        self.qr = torch.nn.ModuleList(torch.nn.Linear(d_model, 2 * hq * d, bias=False) for _ in range(2))
        self.proj = torch.nn.ModuleList(torch.nn.Linear(hq * d, d_model, bias=False) for _ in range(2))

    def forward(self, x, k, v, lens):
        b = x.shape[0]
        for qr, proj in zip(self.qr, self.proj):
            q, r = qr(x).reshape(b, 1, 2, self.hq, self.d).unbind(2)
            o = plx.parallax_decode(q, r, k, v, cache_seqlens=lens)
            x = x + proj(o.reshape(b, self.hq * self.d))
        return x


@needs_gpu
class TorchCompileGpuTest(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(3)
        torch._dynamo.reset()

    def close(self, got, want, what, tol=2e-2):
        torch.cuda.synchronize()
        err = ((got.float() - want.float()).norm() / want.float().norm()).item()
        self.assertLess(err, tol, f"{what}: compiled vs eager relative error {err}")

    def test_opcheck(self):
        dt = torch.bfloat16
        q, r = randn(2, 1, 8, 128, dtype=dt), randn(2, 1, 8, 128, dtype=dt)
        k, v = randn(2, 64, 2, 128, dtype=dt), randn(2, 64, 2, 128, dtype=dt)
        unset = plx._lib.WINDOW_SIZE_UNSET
        ops = torch.ops.parallax_tuner
        torch.library.opcheck(ops.decode.default, (q, r, k, v, None, None, -1.0, 0, unset, unset, "plain", 1e-6, "",
                                                   0, -1))
        torch.library.opcheck(ops.decode_lse.default, (q, None, k, v, None, None, -1.0, 0, unset, unset, "plain",
                                                       1e-6, "", 0, -1))
        pq, pr = randn(2, 48, 8, 128, dtype=dt), randn(2, 48, 8, 128, dtype=dt)
        tail = (-1, -1, -1.0, 0, unset, unset, "plain", 1e-6, "", True)
        torch.library.opcheck(ops.prefill.default, (pq, pr, k, v, None, None) + tail)
        torch.library.opcheck(ops.prefill_lse.default, (pq, pr, k, v, None, None) + tail)
        eq, er, ek, ev, kw = paged_decode([40, 70], 8, dt, tq=6)
        args = (eq, er, ek, ev, kw["block_table"], kw["cache_seqlens"], None) + tail
        torch.library.opcheck(ops.extend.default, args)
        torch.library.opcheck(ops.extend_lse.default, args)

    def test_two_layer_model_fullgraph(self):
        model = TwoLayers().cuda().to(torch.bfloat16)
        x = torch.randn(2, 128, 256, device="cuda", dtype=torch.bfloat16)
        with torch.no_grad():
            want = model(x)
            compiled = torch.compile(model, fullgraph=True)
            got = compiled(x)
            self.close(got, want, "two layers")
            x2 = torch.randn_like(x)
            self.close(compiled(x2), model(x2), "two layers, new input")

    def test_decode_step_cuda_graphs(self):
        model = DecodeStep().cuda().to(torch.bfloat16)
        b, lmax = 4, 1024
        k = randn(b, lmax, 2, 128, dtype=torch.bfloat16)
        v = randn(b, lmax, 2, 128, dtype=torch.bfloat16, norm=False)
        lens = torch.tensor([1000, 1, 512, 77], dtype=torch.int32, device="cuda")
        with torch.no_grad():
            compiled = torch.compile(model, fullgraph=True, mode="reduce-overhead")
            for step in range(4):  # warm-up, record, then replays
                x = torch.randn(b, 256, device="cuda", dtype=torch.bfloat16)
                got = compiled(x, k, v, lens).clone()
                self.close(got, model(x, k, v, lens), f"decode step {step}")

    def test_lse_and_extend_under_compile(self):
        dt = torch.float16
        eq, er, ek, ev, kw = paged_decode([100, 300], 32, dt, tq=16)
        bt, used = kw["block_table"], kw["cache_seqlens"]

        def f(q, r):
            out, st = plx.parallax_prefill(q, r, ek, ev, block_table=bt, seqused_k=used, return_lse=True)
            o2, lse, tbar = plx.parallax_prefill(q, None, ek, ev, block_table=bt, seqused_k=used, return_stats=True)
            d_out, d_st = plx.parallax_decode(q, r, ek, ev, block_table=bt, cache_seqlens=used, return_lse=True)
            return out, st.lse, st.tbar, st.vbar, o2, lse, tbar, d_out, d_st.lse

        with torch.no_grad():
            want = f(eq, er)
            got = torch.compile(f, fullgraph=True)(eq, er)
        torch.cuda.synchronize()
        for i, (g, w) in enumerate(zip(got, want)):
            self.assertEqual(g.shape, w.shape, f"output {i}")
            self.assertTrue(torch.equal(g, w), f"output {i}: compiled differs from eager")


@needs_gpu
class CompatGpuTest(unittest.TestCase):
    def test_authors_call_shape(self):
        from parallax_tuner.compat import parallax_decode
        dt = torch.bfloat16
        q, r = randn(2, 1, 16, 128, dtype=dt), randn(2, 1, 16, 128, dtype=dt)
        k, v = randn(2, 400, 4, 128, dtype=dt), randn(2, 400, 4, 128, dtype=dt, norm=False)
        self.assertTrue(same_bits(parallax_decode(q, r, k, v), plx.parallax_decode(q, r, k, v)))
        self.assertTrue(same_bits(parallax_decode(q, r, k, v, 0.05), plx.parallax_decode(q, r, k, v, 0.05)))
        got = parallax_decode(q, r, k, v, window_size_left=64)
        self.assertTrue(same_bits(got, plx.parallax_decode(q, r, k, v, window=64)))
        self.assertLess(rel_err(got[0], reference(q[0], r[0], k[0], v[0], window=64)), TOL[dt])
        with self.assertRaises(ValueError):
            parallax_decode(q, r, k, v, window_size_left=0)
        with self.assertRaises(NotImplementedError):
            parallax_decode(q, r, k, v, cache_start=torch.zeros(2, dtype=torch.int32, device="cuda"))


@needs_gpu
class ReadmeGpuTest(unittest.TestCase):
    def test_use_from_pytorch_runs(self):
        # The README's "Use from PyTorch" example, as written.
        with open(os.path.join(HERE, os.pardir, os.pardir, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        section = readme[readme.index("## Use from PyTorch"):]
        code = section[section.index("```python") + len("```python"):]
        code = code[:code.index("```")]
        torch._dynamo.reset()
        exec(compile(code, "README.md (Use from PyTorch)", "exec"), {})


if __name__ == "__main__":
    unittest.main()
