"""CPU tests of the ctypes binding: no torch, no GPU needed.

Run: PYTHONPATH=python PARALLAX_LIBRARY=build/runtime/libparallax.so python3 -m unittest -v test_binding_cpu
(from python/tests). Tests that need libparallax.so skip when it cannot be found.

Tensors are duck-typed fakes (shape, stride(), dtype, data_ptr(), is_cuda, device): argument
validation happens in the library on the host before anything touches a device.
"""

import ctypes
import os
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.dirname(HERE)
if PYTHON_DIR not in sys.path:
    sys.path.insert(0, PYTHON_DIR)

import parallax_tuner as plx  # noqa: E402
from parallax_tuner import _lib  # noqa: E402


def _library_available():
    try:
        _lib.lib()
        return True
    except plx.LibraryNotFoundError:
        return False


HAVE_LIB = _library_available()
needs_lib = unittest.skipUnless(HAVE_LIB, "libparallax.so not found (set PARALLAX_LIBRARY)")


class FakeDType:
    def __init__(self, name):
        self.name = name

    def __str__(self):
        return "torch." + self.name


class FakeDevice:
    def __init__(self, kind="cpu", index=None):
        self.type, self.index = kind, index

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"


class FakeTensor:
    """Just enough of torch.Tensor for the binding; the pointer is fake and never read."""
    _next = 1

    def __init__(self, shape, dtype="bfloat16", strides=None, ptr=None, cuda=False):
        self.shape = tuple(shape)
        self.dtype = FakeDType(dtype)
        if strides is None:
            strides, s = [], 1
            for n in reversed(self.shape):
                strides.insert(0, s)
                s *= max(n, 1)
        self._strides = tuple(strides)
        if ptr is None:
            ptr = 0x100000 * FakeTensor._next
            FakeTensor._next += 1
        self._ptr = ptr
        self.is_cuda = cuda
        self.device = FakeDevice("cuda", 0) if cuda else FakeDevice()

    def stride(self):
        return self._strides

    def data_ptr(self):
        return self._ptr

    def dim(self):
        return len(self.shape)

    def numel(self):
        n = 1
        for s in self.shape:
            n *= s
        return n

    def element_size(self):
        return 4 if str(self.dtype) == "torch.int32" else 2

    def tolist(self):
        raise AssertionError("the test passes max_seqlen_* explicitly")


B, HQ, HKV, D, L = 2, 8, 2, 128, 64


def decode_inputs(dtype="bfloat16", **over):
    t = dict(
        q=FakeTensor((B, 1, HQ, D), dtype),
        r=FakeTensor((B, 1, HQ, D), dtype),
        k=FakeTensor((B, L, HKV, D), dtype),
        v=FakeTensor((B, L, HKV, D), dtype),
    )
    t.update(over)
    return t


class ImportTest(unittest.TestCase):
    def test_import_needs_no_torch(self):
        code = ("import sys, parallax_tuner as plx; assert 'torch' not in sys.modules, 'torch imported'; "
                "print(plx.__version__)")
        env = dict(os.environ, PYTHONPATH=PYTHON_DIR, PARALLAX_LIBRARY="/nonexistent/libparallax.so")
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), plx.__version__)

    def test_public_names(self):
        for name in ("parallax_decode", "parallax_prefill", "decode_plan", "prefill_plan", "get_context",
                     "configure", "ParallaxError", "Context", "PlanInfo", "plan_decode", "plan_prefill",
                     "DecodePlan", "PrefillPlan", "merge_states", "AttentionStats"):
            self.assertTrue(hasattr(plx, name), name)
        self.assertTrue(issubclass(plx.ParallaxError, RuntimeError))
        self.assertTrue(issubclass(plx.LibraryNotFoundError, plx.ParallaxError))

    def test_missing_library_is_a_parallax_error(self):
        code = ("import parallax_tuner as plx\n"
                "try:\n    plx.library_version()\n"
                "except plx.LibraryNotFoundError as e:\n    print('missing:', e)\n")
        env = dict(os.environ, PYTHONPATH=PYTHON_DIR, PARALLAX_LIBRARY="/nonexistent/libparallax.so")
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("missing:", r.stdout)
        self.assertIn("/nonexistent/libparallax.so", r.stdout)
        self.assertIn("PARALLAX_LIBRARY", r.stdout)

    def test_struct_layouts_match_the_c_header(self):
        # Sizes and offsets printed by a C compiler for x86-64 / aarch64 (LP64).
        if ctypes.sizeof(ctypes.c_void_p) != 8:
            self.skipTest("layout table is for LP64")
        self.assertEqual(ctypes.sizeof(_lib.Tensor), 80)
        # 0.2.0: every argument struct starts with size_t struct_size (docs/abi.md).
        self.assertEqual(ctypes.sizeof(_lib.DecodeArgs), 872)
        self.assertEqual(_lib.DecodeArgs.qk_scale.offset, 568)
        self.assertEqual(_lib.DecodeArgs.variant.offset, 584)
        self.assertEqual(_lib.DecodeArgs.workspace_bytes.offset, 608)
        self.assertEqual(_lib.DecodeArgs.window_left.offset, 616)
        self.assertEqual(_lib.DecodeArgs.window_right.offset, 620)
        self.assertEqual(_lib.DecodeArgs.max_seqlen_k.offset, 624)
        self.assertEqual(_lib.DecodeArgs.lse.offset, 632)
        self.assertEqual(_lib.DecodeArgs.tbar.offset, 712)
        self.assertEqual(_lib.DecodeArgs.vbar.offset, 792)
        self.assertEqual(ctypes.sizeof(_lib.PrefillArgs), 1016)
        self.assertEqual(_lib.PrefillArgs.max_seqlen_q.offset, 568)
        self.assertEqual(_lib.PrefillArgs.variant.offset, 592)
        self.assertEqual(_lib.PrefillArgs.lse.offset, 600)
        self.assertEqual(_lib.PrefillArgs.tbar.offset, 680)
        self.assertEqual(_lib.PrefillArgs.window_left.offset, 760)
        self.assertEqual(_lib.PrefillArgs.window_right.offset, 764)
        self.assertEqual(_lib.PrefillArgs.block_table.offset, 768)
        self.assertEqual(_lib.PrefillArgs.seqused_k.offset, 848)
        self.assertEqual(_lib.PrefillArgs.vbar.offset, 928)
        self.assertEqual(_lib.PrefillArgs.causal.offset, 1008)
        for cls in (_lib.DecodeArgs, _lib.PrefillArgs, _lib.MergeArgs, _lib.PlanInfo, _lib.DeviceInfo,
                    _lib.ContextOptions):
            self.assertEqual(cls.struct_size.offset, 0, cls.__name__)
        self.assertEqual(ctypes.sizeof(_lib.MergeArgs), 1144)
        self.assertEqual(_lib.MergeArgs.out_b.offset, 328)
        self.assertEqual(_lib.MergeArgs.out.offset, 648)
        self.assertEqual(_lib.MergeArgs.q.offset, 968)
        self.assertEqual(_lib.MergeArgs.probe.offset, 1128)
        self.assertEqual(_lib.MergeArgs.affine.offset, 1132)
        self.assertEqual(_lib.MergeArgs.eps.offset, 1136)
        self.assertEqual(_lib.MergeArgs.packed.offset, 1140)
        self.assertEqual(ctypes.sizeof(_lib.PlanInfo), 280)
        self.assertEqual(_lib.PlanInfo.workspace_bytes.offset, 272)
        self.assertEqual(ctypes.sizeof(_lib.DeviceInfo), 288)
        self.assertEqual(_lib.DeviceInfo.mem_bytes.offset, 280)
        self.assertEqual(ctypes.sizeof(_lib.ContextOptions), 32)


@needs_lib
class LibraryTest(unittest.TestCase):
    def test_version(self):
        self.assertEqual(plx.library_version(), plx.__version__)
        self.assertTrue(os.path.exists(plx.library_path()) or plx.library_path().startswith("lib"))

    def test_args_init_defaults(self):
        a = _lib.DecodeArgs()
        ctypes.memset(ctypes.byref(a), 0x5a, ctypes.sizeof(a))
        _lib.lib().plx_decode_args_init(ctypes.byref(a))
        self.assertEqual(a.qk_scale, -1.0)
        self.assertAlmostEqual(a.eps, 1e-6)
        self.assertEqual((a.window_left, a.window_right), (_lib.WINDOW_SIZE_UNSET,) * 2)
        self.assertEqual(a.max_seqlen_k, -1)
        p = _lib.PrefillArgs()
        ctypes.memset(ctypes.byref(p), 0x5a, ctypes.sizeof(p))
        _lib.lib().plx_prefill_args_init(ctypes.byref(p))
        self.assertEqual(p.max_seqlen_q, -1)
        self.assertIsNone(p.lse.data)
        self.assertIsNone(p.tbar.data)
        self.assertIsNone(p.vbar.data)
        self.assertEqual(p.causal, 1)
        self.assertEqual((p.window_left, p.window_right), (_lib.WINDOW_SIZE_UNSET,) * 2)
        for name in ("lse", "tbar", "vbar"):
            self.assertIsNone(getattr(a, name).data)
        m = _lib.MergeArgs()
        ctypes.memset(ctypes.byref(m), 0x5a, ctypes.sizeof(m))
        _lib.lib().plx_merge_args_init(ctypes.byref(m))
        self.assertIsNone(m.out.data)
        self.assertEqual(m.probe, _lib.PROBES["learned"])
        self.assertEqual(m.affine, _lib.AFFINES["plain"])
        self.assertAlmostEqual(m.eps, 1e-6)
        self.assertEqual(m.packed, 0)

    def test_context_without_gpu(self):
        try:
            ctx = plx.Context(0)
        except plx.ParallaxError as e:
            self.assertEqual(e.status, _lib.ERROR_NO_DEVICE, str(e))
            self.assertEqual(e.status_name, "PLX_ERROR_NO_DEVICE")
            self.assertIn("plx_context_create", str(e))
            return
        info = ctx.device_info()  # a GPU host
        self.assertGreater(info["sm_count"], 0)
        ctx.close()


@needs_lib
class DecodeValidationTest(unittest.TestCase):
    def expect(self, status, needle, **kwargs):
        t = decode_inputs()
        call = dict(q=t["q"], r=t["r"], k=t["k"], v=t["v"])
        call.update(kwargs)
        with self.assertRaises(plx.ParallaxError) as cm:
            plx.parallax_decode(call.pop("q"), call.pop("r"), call.pop("k"), call.pop("v"), **call)
        self.assertEqual(cm.exception.status, status, str(cm.exception))
        self.assertIn(needle, str(cm.exception))
        return cm.exception

    def test_valid_arguments_pass_validation(self):
        # Host-valid fakes get past the library's checks and stop at "not a CUDA tensor".
        e = self.expect(_lib.ERROR_INVALID_ARGUMENT, "q: must be a CUDA tensor")
        self.assertNotIn("plx_decode", str(e))

    def test_head_dim(self):
        e = self.expect(_lib.ERROR_UNSUPPORTED, "q: head_dim=96", q=FakeTensor((B, 1, HQ, 96)))
        self.assertIn("plx_decode_validate", str(e))

    def test_dtypes(self):
        self.expect(_lib.ERROR_INVALID_ARGUMENT, "k: dtype=fp16 does not match q's bf16",
                    k=FakeTensor((B, L, HKV, D), "float16"))
        self.expect(_lib.ERROR_UNSUPPORTED, "q: dtype=torch.float32", q=FakeTensor((B, 1, HQ, D), "float32"))
        self.expect(_lib.ERROR_INVALID_ARGUMENT, "out: dtype=fp16", out=FakeTensor((B, 1, HQ, D), "float16"))

    def test_shapes(self):
        self.expect(_lib.ERROR_INVALID_ARGUMENT, "v: shape", v=FakeTensor((B, L + 1, HKV, D)))
        self.expect(_lib.ERROR_INVALID_ARGUMENT, "r: shape", r=FakeTensor((B, 1, HQ // 2, D)))
        self.expect(_lib.ERROR_INVALID_ARGUMENT, "k: num_kv_heads=3",
                    k=FakeTensor((B, L, 3, D)), v=FakeTensor((B, L, 3, D)))
        # Two tokens per sequence are multi-token decode: r and out must have them too.
        self.expect(_lib.ERROR_INVALID_ARGUMENT, "does not match", q=FakeTensor((B, 2, HQ, D)))

    def test_strides(self):
        self.expect(_lib.ERROR_INVALID_ARGUMENT, "k: strides[3]=2",
                    k=FakeTensor((B, L, HKV, D), strides=(L * HKV * D * 2, HKV * D * 2, D * 2, 2)))
        self.expect(_lib.ERROR_INVALID_ARGUMENT, "fully broadcast",
                    r=FakeTensor((B, 1, HQ, D), strides=(0, 0, 0, 0)))

    def test_paged(self):
        k = FakeTensor((16, 16, HKV, D))
        v = FakeTensor((16, 16, HKV, D))
        bt = FakeTensor((B, 4), "int32")
        self.expect(_lib.ERROR_INVALID_ARGUMENT, "cache_seqlens: required with block_table",
                    k=k, v=v, block_table=bt)
        self.expect(_lib.ERROR_INVALID_ARGUMENT, "block_table: dtype=bf16",
                    k=k, v=v, block_table=FakeTensor((B, 4)), cache_seqlens=FakeTensor((B,), "int32"))
        # Valid paged arguments reach the device check.
        self.expect(_lib.ERROR_INVALID_ARGUMENT, "must be a CUDA tensor",
                    k=k, v=v, block_table=bt, cache_seqlens=FakeTensor((B,), "int32"))

    def test_options(self):
        self.expect(_lib.ERROR_INVALID_ARGUMENT, "window=-1", window=-1)
        self.expect(_lib.ERROR_INVALID_ARGUMENT, "window=4294967296", window=2**32)
        self.expect(_lib.ERROR_INVALID_ARGUMENT, "affine='cubic'", affine="cubic")
        self.expect(_lib.ERROR_INVALID_ARGUMENT, "eps=0", affine="amplified", eps=0.0)
        self.expect(_lib.ERROR_INVALID_ARGUMENT, "num_splits=-1", num_splits=-1)
        self.expect(_lib.ERROR_INVALID_ARGUMENT, "variant: bad variant key 'nope'", variant="nope")

    def test_errors_from_other_threads_stay_there(self):
        import threading
        seen = {}

        def worker(w):
            try:
                plx.parallax_decode(*decode_inputs().values(), window=-w)
            except plx.ParallaxError as e:
                seen[w] = str(e)

        threads = [threading.Thread(target=worker, args=(w,)) for w in (3, 4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertIn("window=-3", seen[3])
        self.assertIn("window=-4", seen[4])


@needs_lib
class PrefillValidationTest(unittest.TestCase):
    def test_batched(self):
        q = FakeTensor((B, 40, HQ, D), "float16")
        k = FakeTensor((B, 50, HKV, D), "float16")
        with self.assertRaises(plx.ParallaxError) as cm:
            plx.parallax_prefill(q, None, k, FakeTensor((B, 50, HKV, D), "float16"))
        self.assertIn("q: must be a CUDA tensor", str(cm.exception))
        with self.assertRaises(plx.ParallaxError) as cm:
            plx.parallax_prefill(q, None, k, FakeTensor((B, 51, HKV, D), "float16"))
        self.assertIn("v: shape", str(cm.exception))

    def test_packed(self):
        q = FakeTensor((90, HQ, D))
        k = FakeTensor((120, HKV, D))
        v = FakeTensor((120, HKV, D))
        cu = FakeTensor((3,), "int32")
        with self.assertRaises(plx.ParallaxError) as cm:
            plx.parallax_prefill(q, q, k, v, cu_seqlens_q=cu)
        self.assertEqual(cm.exception.status, _lib.ERROR_INVALID_ARGUMENT)
        self.assertIn("cu_seqlens_q", str(cm.exception))
        with self.assertRaises(plx.ParallaxError) as cm:
            plx.parallax_prefill(q, q, k, v, cu_seqlens_q=cu, cu_seqlens_k=FakeTensor((3,), "int32"),
                                      max_seqlen_q=500, max_seqlen_k=60)
        self.assertIn("max_seqlen_q=500", str(cm.exception))
        with self.assertRaises(plx.ParallaxError) as cm:
            plx.parallax_prefill(q, q, k, v, cu_seqlens_q=cu, cu_seqlens_k=FakeTensor((3,), "int32"),
                                      max_seqlen_q=50, max_seqlen_k=60)
        self.assertIn("must be a CUDA tensor", str(cm.exception))
        with self.assertRaises(plx.ParallaxError) as cm:
            plx.parallax_prefill(FakeTensor((B, 45, HQ, D)), None, k, v)
        self.assertIn("k: ndim=3", str(cm.exception))

    def test_return_stats_validates_first(self):
        # The lse / tbar buffers are allocated after the arguments pass (no torch needed here).
        q = FakeTensor((B, 40, HQ, D))
        k = FakeTensor((B, 50, HKV, D))
        with self.assertRaises(plx.ParallaxError) as cm:
            plx.parallax_prefill(q, None, k, FakeTensor((B, 50, HKV, D)), return_stats=True)
        self.assertIn("q: must be a CUDA tensor", str(cm.exception))
        with self.assertRaises(plx.ParallaxError) as cm:
            plx.parallax_prefill(q, None, k, FakeTensor((B, 51, HKV, D)), return_stats=True)
        self.assertIn("v: shape", str(cm.exception))

    def test_stats_in_the_struct_reach_the_library(self):
        # Field offsets in sync with the C header: the library sees and checks lse / tbar.
        def validate(lse=None, tbar=None, packed=False):
            a = _lib.PrefillArgs()
            _lib.lib().plx_prefill_args_init(ctypes.byref(a))
            if packed:
                a.q = a.out = plx._describe(FakeTensor((90, HQ, D)), "q")
                a.k = a.v = plx._describe(FakeTensor((120, HKV, D)), "k")
                a.cu_seqlens_q = plx._describe(FakeTensor((3,), "int32"), "cu_seqlens_q")
                a.cu_seqlens_k = plx._describe(FakeTensor((3,), "int32"), "cu_seqlens_k")
                a.max_seqlen_q, a.max_seqlen_k = 60, 70
            else:
                a.q = a.out = plx._describe(FakeTensor((B, 40, HQ, D)), "q")
                a.k = a.v = plx._describe(FakeTensor((B, 50, HKV, D)), "k")
            a.lse = plx._describe(lse, "lse", plx._STATS_DTYPES) if lse else _lib.Tensor()
            a.tbar = plx._describe(tbar, "tbar", plx._STATS_DTYPES) if tbar else _lib.Tensor()
            status = _lib.lib().plx_prefill_validate(ctypes.byref(a))
            return status, _lib.last_error()

        f32 = "float32"
        self.assertEqual(validate(FakeTensor((B, HQ, 40), f32), FakeTensor((B, HQ, 40), f32))[0], _lib.OK)
        self.assertEqual(validate(None, FakeTensor((HQ, 90), f32), packed=True)[0], _lib.OK)
        status, msg = validate(FakeTensor((B, HQ, 41), f32))
        self.assertEqual(status, _lib.ERROR_INVALID_ARGUMENT)
        self.assertIn("lse: shape [2, 8, 41] does not match [B, Hq, Lq] = [2, 8, 40]", msg)
        status, msg = validate(None, FakeTensor((B, HQ, 40), f32), packed=True)
        self.assertIn("tbar: ndim=3: must be 2 ([Hq, Tq])", msg)
        status, msg = validate(None, FakeTensor((B, HQ, 40), f32, strides=(HQ * 80, 80, 2)))
        self.assertIn("tbar: strides[2]=2: rows must be contiguous", msg)
        a = plx._describe(FakeTensor((B, HQ, 40), f32), "lse", plx._STATS_DTYPES)
        a.dtype = _lib.BF16  # what a caller building the struct by hand might get wrong
        args = _lib.PrefillArgs()
        _lib.lib().plx_prefill_args_init(ctypes.byref(args))
        args.q = args.out = plx._describe(FakeTensor((B, 40, HQ, D)), "q")
        args.k = args.v = plx._describe(FakeTensor((B, 50, HKV, D)), "k")
        args.lse = a
        self.assertEqual(_lib.lib().plx_prefill_validate(ctypes.byref(args)), _lib.ERROR_INVALID_ARGUMENT)
        self.assertIn("lse: dtype=bf16: must be float32", _lib.last_error())



def prefill_inputs():
    return dict(q=FakeTensor((B, 40, HQ, D)), r=FakeTensor((B, 40, HQ, D)), k=FakeTensor((B, 50, HKV, D)),
                v=FakeTensor((B, 50, HKV, D)))


@needs_lib
class WindowSizeTest(unittest.TestCase):
    """FlashAttention's window_size=(left, right) next to window=W (parallax.h, "Windows")."""
    ENTRY_POINTS = {
        "parallax_decode": (plx.parallax_decode, decode_inputs),
        "decode_plan": (plx.decode_plan, decode_inputs),
        "decode_workspace_size": (plx.decode_workspace_size, decode_inputs),
        "parallax_prefill": (plx.parallax_prefill, prefill_inputs),
        "prefill_plan": (plx.prefill_plan, prefill_inputs),
    }

    def call(self, name, **kwargs):
        fn, inputs = self.ENTRY_POINTS[name]
        return fn(*inputs().values(), **kwargs)

    def test_the_struct_carries_the_library_defaults_or_the_pair(self):
        def args(**kw):
            t = decode_inputs()
            return plx._decode_args(t["q"], t["r"], t["k"], t["v"], None, None, None, kw.get("window", 0),
                                         kw.get("window_size"), "plain", 1e-6, None, 0, None, None)
        a = args()
        self.assertEqual((a.window, a.window_left, a.window_right), (0, _lib.WINDOW_SIZE_UNSET, _lib.WINDOW_SIZE_UNSET))
        a = args(window_size=(15, -1))
        self.assertEqual((a.window, a.window_left, a.window_right), (0, 15, -1))
        a = args(window=16, window_size=[15, 0])
        self.assertEqual((a.window, a.window_left, a.window_right), (16, 15, 0))

    def test_every_spelling_passes_validation(self):
        # Host-valid arguments stop at "not a CUDA tensor", past the library's checks.
        spellings = [dict(window=16), dict(window_size=(15, 0)), dict(window_size=(15, -1)),
                     dict(window=16, window_size=(15, 0)), dict(window_size=[-1, 0]), dict(window_size=(-1, -1)),
                     dict(window_size=(0, 0)), dict(window_size=(2**31 - 2, 0))]
        for name in self.ENTRY_POINTS:
            for kw in spellings:
                with self.subTest(name, **kw), self.assertRaises(plx.ParallaxError) as cm:
                    self.call(name, **kw)
                self.assertIn("q: must be a CUDA tensor", str(cm.exception))

    def test_the_library_refuses_bad_values(self):
        cases = [
            (dict(window_size=(-2, 0)), _lib.ERROR_INVALID_ARGUMENT, "window_left=-2: must be >= -1"),
            (dict(window_size=(2**31 - 1, 0)), _lib.ERROR_UNSUPPORTED, "window_left=2147483647"),
            (dict(window_size=(15, 1)), _lib.ERROR_UNSUPPORTED, "window_right=1: must be 0 or -1"),
            (dict(window_size=(15, -2)), _lib.ERROR_INVALID_ARGUMENT, "window_right=-2: must be 0 or -1"),
            (dict(window=32, window_size=(15, 0)), _lib.ERROR_INVALID_ARGUMENT,
             "window=32 and window_size (window_left=15, window_right=0) disagree"),
            (dict(window=32, window_size=(-1, 0)), _lib.ERROR_INVALID_ARGUMENT, "no window (window=0)"),
            (dict(window_size=(2**31, 0)), _lib.ERROR_INVALID_ARGUMENT, "window_size[0]=2147483648: out of the int32"),
            (dict(window_size=(15, -2**31)), _lib.ERROR_INVALID_ARGUMENT, "left must be >= -1 and right 0 or -1"),
            (dict(window_size=(-2**31, -2**31)), _lib.ERROR_INVALID_ARGUMENT, "window_size=(-2147483648, -2147483648)"),
        ]
        for name in self.ENTRY_POINTS:
            for kw, status, needle in cases:
                with self.subTest(name, **kw), self.assertRaises(plx.ParallaxError) as cm:
                    self.call(name, **kw)
                self.assertEqual(cm.exception.status, status, str(cm.exception))
                self.assertIn(needle, str(cm.exception))

    def test_malformed_window_size(self):
        cases = [(5, TypeError, "must be a (left, right) tuple"), ("15,0", TypeError, "must be a (left, right) tuple"),
                 ((15,), ValueError, "two entries"), ((15, 0, 0), ValueError, "two entries"),
                 ((15.0, 0), TypeError, "window_size[0]=15.0: must be an int"),
                 ((15, None), TypeError, "window_size[1]=None: must be an int"),
                 ((True, 0), TypeError, "window_size[0]=True: must be an int")]
        for name in self.ENTRY_POINTS:
            for value, exc, needle in cases:
                with self.subTest(name, window_size=value), self.assertRaises(exc) as cm:
                    self.call(name, window_size=value)
                self.assertIn(needle, str(cm.exception))


@needs_lib
class LiveLengthAndPlanTest(unittest.TestCase):
    """decode's max_seqlen_k hint and the plan objects (parallax.h, "Plans"), host side."""
    DECODE_ENTRY_POINTS = ("parallax_decode", "decode_plan", "decode_workspace_size", "plan_decode")

    def paged(self, **kwargs):  # capacity 4 x 16 = 64 keys
        t = decode_inputs(k=FakeTensor((16, 16, HKV, D)), v=FakeTensor((16, 16, HKV, D)))
        t.update(block_table=FakeTensor((B, 4), "int32"), cache_seqlens=FakeTensor((B,), "int32"))
        t.update(kwargs)
        return t

    def call(self, name, inputs, **kwargs):
        fn = getattr(plx, name)
        q, r, k, v = (inputs.pop(x) for x in ("q", "r", "k", "v"))
        with self.assertRaises(plx.ParallaxError) as cm:
            fn(q, r, k, v, **inputs, **kwargs)
        return cm.exception

    def test_the_hint_reaches_the_struct(self):
        # Field offsets in sync with the C header: the library sees and checks the hint.
        t = decode_inputs()
        a = _lib.DecodeArgs()
        _lib.lib().plx_decode_args_init(ctypes.byref(a))
        a.q = a.out = plx._describe(t["q"], "q")
        a.k = a.v = plx._describe(t["k"], "k")
        a.cache_seqlens = plx._describe(FakeTensor((B,), "int32"), "cache_seqlens")
        a.max_seqlen_k = L + 1
        self.assertEqual(_lib.lib().plx_decode_validate(ctypes.byref(a)), _lib.ERROR_INVALID_ARGUMENT)
        self.assertIn(f"max_seqlen_k={L + 1}: exceeds the cache's length {L}", _lib.last_error())
        a.max_seqlen_k = L // 2
        self.assertEqual(_lib.lib().plx_decode_validate(ctypes.byref(a)), _lib.OK, _lib.last_error())

    def test_valid_hints_pass_validation(self):
        for name in self.DECODE_ENTRY_POINTS:
            for hint in (None, -1, 0, 1, 40, 64):
                with self.subTest(name, hint=hint):
                    e = self.call(name, self.paged(), max_seqlen_k=hint)
                    self.assertIn("q: must be a CUDA tensor", str(e))

    def test_bad_hints(self):
        cases = [
            (self.paged, dict(max_seqlen_k=-2), _lib.ERROR_INVALID_ARGUMENT, "max_seqlen_k=-2: must be -1"),
            (self.paged, dict(max_seqlen_k=65), _lib.ERROR_INVALID_ARGUMENT,
             "max_seqlen_k=65: exceeds the block table's capacity 64"),
            (decode_inputs, dict(max_seqlen_k=L // 2), _lib.ERROR_INVALID_ARGUMENT,
             "without cache_seqlens every sequence has the cache's 64 keys"),
            (self.paged, dict(max_seqlen_k=2**31), _lib.ERROR_INVALID_ARGUMENT, "max_seqlen_k=2147483648: out of"),
        ]
        for name in self.DECODE_ENTRY_POINTS:
            for inputs, kw, status, needle in cases:
                with self.subTest(name, **kw):
                    e = self.call(name, inputs(), **kw)
                    self.assertEqual(e.status, status, str(e))
                    self.assertIn(needle, str(e))

    def test_plan_prefill_validates_first(self):
        t = prefill_inputs()
        with self.assertRaises(plx.ParallaxError) as cm:
            plx.plan_prefill(t["q"], t["r"], t["k"], FakeTensor((B, 51, HKV, D)))
        self.assertIn("v: shape", str(cm.exception))
        for stats in (False, True):
            with self.assertRaises(plx.ParallaxError) as cm:
                plx.plan_prefill(*prefill_inputs().values(), return_stats=stats)
            self.assertIn("q: must be a CUDA tensor", str(cm.exception))

    def test_null_handles(self):
        L_ = _lib.lib()
        info = _lib.sized(_lib.PlanInfo)
        a = _lib.DecodeArgs()
        L_.plx_decode_args_init(ctypes.byref(a))
        p = _lib.PrefillArgs()
        L_.plx_prefill_args_init(ctypes.byref(p))
        for kind, args in (("decode", a), ("prefill", p)):
            run = getattr(L_, f"plx_{kind}_plan_run")
            self.assertEqual(run(None, None, ctypes.byref(args), None), _lib.ERROR_INVALID_ARGUMENT)
            self.assertIn(f"plx_{kind}_plan_run: plan is NULL", _lib.last_error())
            self.assertEqual(getattr(L_, f"plx_{kind}_plan_get_info")(None, ctypes.byref(info)),
                             _lib.ERROR_INVALID_ARGUMENT)
            self.assertIn("plan is NULL", _lib.last_error())
            getattr(L_, f"plx_{kind}_plan_destroy")(None)  # a no-op
            handle = ctypes.c_void_p(0x1234)
            create = getattr(L_, f"plx_{kind}_plan_create")
            self.assertEqual(create(None, ctypes.byref(args), None), _lib.ERROR_INVALID_ARGUMENT)
            self.assertIn("plan: output pointer is NULL", _lib.last_error())
            self.assertEqual(create(None, ctypes.byref(args), ctypes.byref(handle)), _lib.ERROR_INVALID_ARGUMENT)
            self.assertIsNone(handle.value)  # NULL on failure

    def test_valid_arguments_without_a_context(self):
        t = self.paged()
        a = plx._decode_args(t["q"], t["r"], t["k"], t["v"], None, t["block_table"], t["cache_seqlens"], 0,
                                  None, "plain", 1e-6, None, 0, None, None)
        a.max_seqlen_k = 40
        handle = ctypes.c_void_p()
        self.assertEqual(_lib.lib().plx_decode_plan_create(None, ctypes.byref(a), ctypes.byref(handle)),
                         _lib.ERROR_INVALID_ARGUMENT)
        self.assertEqual(_lib.last_error(), "plx_decode_plan_create: ctx is NULL")


def stats_of(q, packed=False, prefix="", lse_dtype="float32"):
    """Fake AttentionStats for q's rows (as parallax_prefill / parallax_decode return them)."""
    if packed:
        shape = (q.shape[1], q.shape[0])
    elif len(q.shape) == 3:
        shape = (q.shape[0], q.shape[1])
    else:
        shape = (q.shape[0], q.shape[2], q.shape[1])
    return plx.AttentionStats(FakeTensor(shape, lse_dtype), FakeTensor(shape, "float32"),
                                   FakeTensor(q.shape, str(q.dtype).split(".")[1]), packed)


@needs_lib
class StatsAndMergeTest(unittest.TestCase):
    """return_lse (lse, tbar, vbar), causal=False and merge_states, host side."""

    def raises(self, fn, *args, **kwargs):
        with self.assertRaises(plx.ParallaxError) as cm:
            fn(*args, **kwargs)
        return str(cm.exception)

    def test_prefill_with_vbar_and_causal_reach_the_library(self):
        t = prefill_inputs()
        # Valid: past the library's checks (the statistics included), stopped at "not CUDA".
        self.assertIn("q: must be a CUDA tensor", self.raises(plx.parallax_prefill, *t.values(), return_lse=True))
        self.assertIn("q: must be a CUDA tensor", self.raises(plx.parallax_prefill, *t.values(), causal=False))
        self.assertIn("q: must be a CUDA tensor",
                      self.raises(plx.parallax_prefill, *t.values(), causal=False, window_size=(-1, -1)))
        msg = self.raises(plx.parallax_prefill, *t.values(), causal=False, window=16)
        self.assertIn("plx_prefill_validate: causal=0", msg)
        msg = self.raises(plx.parallax_prefill, *t.values(), causal=False, window_size=(-1, 0))
        self.assertIn("window_right=0", msg)
        with self.assertRaises(TypeError):
            plx.parallax_prefill(*t.values(), causal="yes")
        with self.assertRaises(ValueError):
            plx.parallax_prefill(*t.values(), return_lse=True, return_stats=True)
        # The struct's vbar and causal fields reach the library.
        a = _lib.PrefillArgs()
        _lib.lib().plx_prefill_args_init(ctypes.byref(a))
        a.q = a.out = plx._describe(t["q"], "q")
        a.k = a.v = plx._describe(t["k"], "k")
        a.vbar = plx._describe(FakeTensor((B, 40, HQ, D), "float16"), "vbar")
        self.assertEqual(_lib.lib().plx_prefill_validate(ctypes.byref(a)), _lib.ERROR_INVALID_ARGUMENT)
        self.assertIn("vbar: dtype=fp16 does not match out's bf16", _lib.last_error())
        a.vbar = _lib.Tensor()
        a.causal = 5
        self.assertEqual(_lib.lib().plx_prefill_validate(ctypes.byref(a)), _lib.ERROR_INVALID_ARGUMENT)
        self.assertIn("causal=5", _lib.last_error())

    def test_decode_with_statistics_runs_as_extend(self):
        for q_shape in ((B, 1, HQ, D), (B, HQ, D)):
            q = FakeTensor(q_shape)
            t = decode_inputs(q=q, r=FakeTensor(q_shape))
            self.assertIn("q: must be a CUDA tensor",
                          self.raises(plx.parallax_decode, *t.values(), return_lse=True))
            # Validated as the extend it runs as: split-KV is refused with the statistics.
            msg = self.raises(plx.parallax_decode, *t.values(), return_lse=True, num_splits=2)
            self.assertIn("num_splits=2", msg)
            self.assertIn("decode with lse/tbar/vbar", msg)

    def merge_inputs(self, packed=False, **over):
        q = FakeTensor((90, HQ, D)) if packed else FakeTensor((B, 40, HQ, D))
        t = dict(out_a=FakeTensor(q.shape), stats_a=stats_of(q, packed), out_b=FakeTensor(q.shape),
                 stats_b=stats_of(q, packed), out=FakeTensor(q.shape), out_stats=stats_of(q, packed))
        t.update(over)
        return t

    def merge(self, **kwargs):
        t = self.merge_inputs(packed=kwargs.pop("packed_inputs", False))
        t.update(kwargs)
        return self.raises(plx.merge_states, t.pop("out_a"), t.pop("stats_a"), t.pop("out_b"), t.pop("stats_b"),
                           **t)

    def test_merge_states_validates_in_the_library(self):
        self.assertIn("out_a: must be a CUDA tensor", self.merge())
        self.assertIn("out_a: must be a CUDA tensor", self.merge(packed_inputs=True))  # stats_a.packed says so
        self.assertIn("out_a: must be a CUDA tensor", self.merge(probe="none"))
        t = self.merge_inputs()
        self.assertIn("out_a: must be a CUDA tensor", self.merge(out=t["out_a"], out_stats=t["stats_a"],
                                                                  out_a=t["out_a"], stats_a=t["stats_a"]))
        self.assertIn("plx_merge_validate: q: required with amplified affine", self.merge(affine="amplified"))
        self.assertIn("out_a: must be a CUDA tensor",
                      self.merge(affine="amplified", q=FakeTensor((B, 40, HQ, D)), r=FakeTensor((B, 40, HQ, D))))
        q = FakeTensor((B, 40, HQ, D))
        self.assertIn("lse_b: dtype=torch.bfloat16: must be torch.float32",
                      self.merge(stats_b=stats_of(q, lse_dtype="bfloat16")))
        self.assertIn("out_b: shape", self.merge(out_b=FakeTensor((B, 41, HQ, D))))
        self.assertIn("probe='softmax'", self.merge(probe="softmax"))
        self.assertIn("affine=", self.merge(affine="odd"))
        self.assertIn("lse_a: shape [8, 90] does not match", self.merge(packed_inputs=True, packed=False))
        t = self.merge_inputs()
        msg = self.merge(out_a=t["out_a"], out=FakeTensor((B, 40, HQ, D), ptr=t["out_a"].data_ptr() + 64))
        self.assertIn("out: overlaps out_a without being the same tensor", msg)



class PackageTest(unittest.TestCase):
    """The package's own pieces: struct layouts shared with the library, the authors' call
    shape's refusals, the fast path's fallbacks for objects that are not torch tensors."""

    @needs_lib
    def test_ctypes_structs_match_the_library(self):
        # Each _init writes the library's sizeof: the ctypes layout must have the same size.
        L = _lib.lib()
        for cls, init in ((_lib.DecodeArgs, L.plx_decode_args_init), (_lib.PrefillArgs, L.plx_prefill_args_init),
                          (_lib.PrefillBackwardArgs, L.plx_prefill_backward_args_init),
                          (_lib.MergeArgs, L.plx_merge_args_init),
                          (_lib.ContextOptions, L.plx_context_options_init),
                          (_lib.DeviceInfo, L.plx_device_info_init), (_lib.PlanInfo, L.plx_plan_info_init)):
            a = cls()
            init(ctypes.byref(a))
            self.assertEqual(a.struct_size, ctypes.sizeof(cls), cls.__name__)

    @needs_lib
    def test_a_wrong_struct_size_is_refused(self):
        a = _lib.DecodeArgs()
        _lib.lib().plx_decode_args_init(ctypes.byref(a))
        a.struct_size = 0
        self.assertEqual(_lib.lib().plx_decode_validate(ctypes.byref(a)), _lib.ERROR_INVALID_ARGUMENT)
        self.assertIn("struct_size", _lib.last_error())

    def test_version_has_one_source(self):
        from parallax_tuner import _version
        header = os.path.join(PYTHON_DIR, os.pardir, "runtime", "include", "parallax", "parallax.h")
        self.assertEqual(plx.__version__, _version.version_from_header(header))

    def test_compat_refusals_come_first(self):
        from parallax_tuner.compat import parallax_decode
        t = decode_inputs()
        with self.assertRaises(ValueError):
            parallax_decode(t["q"], t["r"], t["k"], t["v"], window_size_left=0)
        with self.assertRaises(ValueError):
            parallax_decode(t["q"], t["r"], t["k"], t["v"], window_size_left=-2)
        with self.assertRaises(NotImplementedError):
            parallax_decode(t["q"], t["r"], t["k"], t["v"], cache_start=object())

    @needs_lib
    def test_objects_without_a_signature_take_the_checked_way(self):
        from parallax_tuner import _fast
        _fast.invalidate()
        t = decode_inputs(dtype="float32")  # refused by the checked way, never cached
        with self.assertRaises(plx.ParallaxError):
            plx.parallax_decode(t["q"], t["r"], t["k"], t["v"])
        with self.assertRaises(plx.ParallaxError):
            plx.parallax_decode(t["q"], t["r"], t["k"], t["v"], window_size=[3, 0])  # unhashable option
        self.assertEqual(len(_fast.cache()), 0)

    def test_thread_caches_are_reached_and_released(self):
        import gc
        import threading
        from parallax_tuner import _fast
        seen = []

        def work():
            c = _fast.cache()
            c["key"] = "entry"
            seen.append(c)
        t = threading.Thread(target=work)
        t.start()
        t.join()
        self.assertIn(seen[0], list(_fast._caches))  # invalidate() reaches another thread's cache
        _fast.invalidate()
        self.assertEqual(len(seen[0]), 0)
        seen.clear()
        gc.collect()
        self.assertEqual([c for c in _fast._caches if c is not _fast.cache()], [])  # gone with its thread

    def test_ops_module_needs_torch(self):
        code = ("import sys\nsys.modules['torch'] = None\nimport parallax_tuner\n"
                "try:\n    import parallax_tuner.ops\nexcept ImportError as e:\n    print('no torch:', e)\n")
        env = dict(os.environ, PYTHONPATH=PYTHON_DIR)
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("no torch", r.stdout)


class TorchExtLoaderTest(unittest.TestCase):
    """The C++ fast path's loader (parallax_tuner.torch_ext) with a stand-in torch: it finds
    builds by torch, Python and source, never compiles unasked, and a bad build never breaks
    a call (the ctypes path serves)."""

    def setUp(self):
        import tempfile
        import types
        from parallax_tuner import torch_ext
        self.ext = torch_ext
        self.dir = tempfile.mkdtemp()
        self.env = {k: os.environ.get(k) for k in ("PARALLAX_TORCH_EXT_DIR", "PARALLAX_TORCH_EXT")}
        os.environ["PARALLAX_TORCH_EXT_DIR"] = self.dir
        os.environ.pop("PARALLAX_TORCH_EXT", None)
        self.torch = types.SimpleNamespace(__version__="2.11.0+cu130", version=types.SimpleNamespace(cuda="13.0"),
                                           cuda=types.SimpleNamespace(is_available=lambda: True))

    def tearDown(self):
        import shutil
        for k, v in self.env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_build_dir_names_torch_python_and_source(self):
        d = self.ext.build_dir(self.torch)
        self.assertTrue(d.startswith(self.dir), d)
        name = os.path.basename(d)
        self.assertIn("torch2.11.0_cu130", name)
        self.assertIn(f"py{sys.version_info[0]}{sys.version_info[1]}", name)
        other = types_ns(self.torch, __version__="2.12.0")
        self.assertNotEqual(self.ext.build_dir(other), d, "a torch upgrade would load a stale build")

    def test_nothing_built_nothing_compiled(self):
        self.assertIsNone(self.ext.load(self.torch))
        self.assertFalse(os.path.exists(self.ext.build_dir(self.torch)), "load() compiled or created something")

    def test_a_broken_build_is_reported_and_skipped(self):
        d = self.ext.build_dir(self.torch)
        os.makedirs(d)
        with open(os.path.join(d, "parallax_tuner_fast_ext.so"), "w") as f:
            f.write("not a shared object")
        import io
        from contextlib import redirect_stderr
        err = io.StringIO()
        with redirect_stderr(err):
            self.assertIsNone(self.ext.load(self.torch))
        self.assertIn("did not load", err.getvalue())
        os.environ["PARALLAX_TORCH_EXT"] = "0"
        err = io.StringIO()
        with redirect_stderr(err):
            self.assertIsNone(self.ext.load(self.torch))
        self.assertEqual(err.getvalue(), "", "turned off, yet it tried")

    def test_the_source_ships_with_the_package(self):
        self.assertTrue(os.path.isfile(self.ext._SOURCE), self.ext._SOURCE)


def types_ns(ns, **changes):
    import types
    d = dict(vars(ns))
    d.update(changes)
    return types.SimpleNamespace(**d)


if __name__ == "__main__":
    unittest.main()
