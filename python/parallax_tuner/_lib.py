"""ctypes declarations for libparallax.so (the C API in parallax/parallax.h).

Importing this module needs neither torch nor a GPU nor the library itself: the library is
loaded on first use by :func:`lib`. Search order:

1. ``$PARALLAX_LIBRARY`` (a path to libparallax.so),
2. next to this package (``parallax/libparallax.so*``),
3. the source tree's build directories (``<repo>/build*/runtime/libparallax.so``, newest first),
4. the system loader (``libparallax.so.0``).
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from ctypes import (POINTER, Structure, byref, c_char, c_char_p, c_float, c_int, c_int32, c_int64, c_size_t,
                    c_void_p)

__all__ = [
    "ParallaxError", "LibraryNotFoundError", "lib", "library_path", "check",
    "Tensor", "DecodeArgs", "PrefillArgs", "PrefillBackwardArgs", "MergeArgs", "PlanInfo", "DeviceInfo", "ContextOptions",
]

MAX_DIMS = 4
VARIANT_KEY_MAX = 256
DEVICE_NAME_MAX = 256

# plx_status
OK = 0
ERROR_INVALID_ARGUMENT = 1
ERROR_UNSUPPORTED = 2
ERROR_NO_DEVICE = 3
ERROR_COMPILE = 4
ERROR_CUDA = 5
ERROR_OUT_OF_MEMORY = 6
ERROR_INTERNAL = 7
STATUS_NAMES = {
    OK: "PLX_OK",
    ERROR_INVALID_ARGUMENT: "PLX_ERROR_INVALID_ARGUMENT",
    ERROR_UNSUPPORTED: "PLX_ERROR_UNSUPPORTED",
    ERROR_NO_DEVICE: "PLX_ERROR_NO_DEVICE",
    ERROR_COMPILE: "PLX_ERROR_COMPILE",
    ERROR_CUDA: "PLX_ERROR_CUDA",
    ERROR_OUT_OF_MEMORY: "PLX_ERROR_OUT_OF_MEMORY",
    ERROR_INTERNAL: "PLX_ERROR_INTERNAL",
}

# plx_dtype
DTYPE_UNSET = 0
BF16 = 1
FP16 = 2
INT32 = 3
FLOAT32 = 4  # the lse / tbar statistics only

# PLX_WINDOW_SIZE_UNSET: window_left / window_right not given
WINDOW_SIZE_UNSET = -2**31

# plx_affine
AFFINES = {"plain": 0, "amplified": 1}

# plx_probe (plx_merge_args.probe)
PROBES = {"none": 0, "learned": 1}

# plx_choice
CHOICE_NAMES = {0: "explicit", 1: "exact", 2: "nearest", 3: "default"}


class ParallaxError(RuntimeError):
    """A failed Parallax call: ``status`` is the plx_status code, ``status_name`` its name."""

    def __init__(self, status: int, message: str):
        self.status = int(status)
        self.status_name = STATUS_NAMES.get(self.status, f"PLX_STATUS_{self.status}")
        self.message = message
        super().__init__(f"{self.status_name}: {message}")


class LibraryNotFoundError(ParallaxError):
    """libparallax.so could not be located or loaded."""

    def __init__(self, message: str):
        super().__init__(ERROR_INTERNAL, message)


class Tensor(Structure):
    _fields_ = [
        ("data", c_void_p),
        ("dtype", c_int),
        ("ndim", c_int32),
        ("shape", c_int64 * MAX_DIMS),
        ("strides", c_int64 * MAX_DIMS),
    ]


class ContextOptions(Structure):
    _fields_ = [("struct_size", c_size_t), ("device", c_int32), ("db_path", c_char_p), ("cache_dir", c_char_p)]


class DeviceInfo(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("ordinal", c_int32),
        ("name", c_char * DEVICE_NAME_MAX),
        ("cc_major", c_int32),
        ("cc_minor", c_int32),
        ("sm_count", c_int32),
        ("mem_bytes", c_int64),
    ]


class DecodeArgs(Structure):
    _fields_ = [
        ("struct_size", c_size_t),  # set by plx_*_args_init
        ("q", Tensor), ("r", Tensor), ("k", Tensor), ("v", Tensor), ("out", Tensor),
        ("block_table", Tensor), ("cache_seqlens", Tensor),
        ("qk_scale", c_float),
        ("window", c_int32),
        ("affine", c_int),
        ("eps", c_float),
        ("variant", c_char_p),
        ("num_splits", c_int32),
        ("workspace", c_void_p),
        ("workspace_bytes", c_size_t),
        ("window_left", c_int32),
        ("window_right", c_int32),
        ("max_seqlen_k", c_int32),
        ("lse", Tensor), ("tbar", Tensor), ("vbar", Tensor),
    ]


class PrefillArgs(Structure):
    _fields_ = [
        ("struct_size", c_size_t),  # set by plx_*_args_init
        ("q", Tensor), ("r", Tensor), ("k", Tensor), ("v", Tensor), ("out", Tensor),
        ("cu_seqlens_q", Tensor), ("cu_seqlens_k", Tensor),
        ("max_seqlen_q", c_int32),
        ("max_seqlen_k", c_int32),
        ("qk_scale", c_float),
        ("window", c_int32),
        ("affine", c_int),
        ("eps", c_float),
        ("variant", c_char_p),
        ("lse", Tensor), ("tbar", Tensor),
        ("window_left", c_int32),
        ("window_right", c_int32),
        ("block_table", Tensor), ("seqused_k", Tensor),
        ("vbar", Tensor),
        ("causal", c_int32),
    ]


class PrefillBackwardArgs(Structure):
    _fields_ = [
        ("struct_size", c_size_t),  # set by plx_prefill_backward_args_init
        ("q", Tensor), ("r", Tensor), ("k", Tensor), ("v", Tensor), ("out", Tensor), ("dout", Tensor),
        ("vbar", Tensor), ("lse", Tensor), ("tbar", Tensor),
        ("dq", Tensor), ("dr", Tensor), ("dk", Tensor), ("dv", Tensor),
        ("cu_seqlens_q", Tensor), ("cu_seqlens_k", Tensor),
        ("max_seqlen_q", c_int32),
        ("max_seqlen_k", c_int32),
        ("qk_scale", c_float),
        ("window", c_int32),
        ("affine", c_int),
        ("eps", c_float),
        ("causal", c_int32),
        ("variant", c_char_p),
        ("workspace", c_void_p),
        ("workspace_bytes", c_size_t),
    ]


class MergeArgs(Structure):
    _fields_ = [
        ("struct_size", c_size_t),  # set by plx_*_args_init
        ("out_a", Tensor), ("vbar_a", Tensor), ("lse_a", Tensor), ("tbar_a", Tensor),
        ("out_b", Tensor), ("vbar_b", Tensor), ("lse_b", Tensor), ("tbar_b", Tensor),
        ("out", Tensor), ("vbar", Tensor), ("lse", Tensor), ("tbar", Tensor),
        ("q", Tensor), ("r", Tensor),
        ("probe", c_int),
        ("affine", c_int),
        ("eps", c_float),
        ("packed", c_int32),
    ]


class PlanInfo(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("variant", c_char * VARIANT_KEY_MAX),
        ("choice", c_int),
        ("num_splits", c_int32),
        ("workspace_bytes", c_size_t),
    ]


_SIGNATURES = {
    "plx_version": (c_char_p, []),
    "plx_status_string": (c_char_p, [c_int]),
    "plx_choice_string": (c_char_p, [c_int]),
    "plx_last_error": (c_char_p, []),
    "plx_context_options_init": (None, [POINTER(ContextOptions)]),
    "plx_context_create": (c_int, [POINTER(ContextOptions), POINTER(c_void_p)]),
    "plx_context_destroy": (None, [c_void_p]),
    "plx_device_info_init": (None, [POINTER(DeviceInfo)]),
    "plx_plan_info_init": (None, [POINTER(PlanInfo)]),
    "plx_context_get_device_info": (c_int, [c_void_p, POINTER(DeviceInfo)]),
    "plx_decode_args_init": (None, [POINTER(DecodeArgs)]),
    "plx_decode_validate": (c_int, [POINTER(DecodeArgs)]),
    "plx_decode_workspace_size": (c_int, [c_void_p, POINTER(DecodeArgs), POINTER(c_size_t)]),
    "plx_decode_plan_info": (c_int, [c_void_p, POINTER(DecodeArgs), POINTER(PlanInfo)]),
    "plx_decode": (c_int, [c_void_p, POINTER(DecodeArgs), c_void_p]),
    "plx_prefill_args_init": (None, [POINTER(PrefillArgs)]),
    "plx_prefill_validate": (c_int, [POINTER(PrefillArgs)]),
    "plx_prefill_plan_info": (c_int, [c_void_p, POINTER(PrefillArgs), POINTER(PlanInfo)]),
    "plx_prefill": (c_int, [c_void_p, POINTER(PrefillArgs), c_void_p]),
    "plx_decode_plan_create": (c_int, [c_void_p, POINTER(DecodeArgs), POINTER(c_void_p)]),
    "plx_decode_plan_run": (c_int, [c_void_p, c_void_p, POINTER(DecodeArgs), c_void_p]),
    "plx_decode_plan_get_info": (c_int, [c_void_p, POINTER(PlanInfo)]),
    "plx_decode_plan_destroy": (None, [c_void_p]),
    "plx_prefill_plan_create": (c_int, [c_void_p, POINTER(PrefillArgs), POINTER(c_void_p)]),
    "plx_prefill_plan_run": (c_int, [c_void_p, c_void_p, POINTER(PrefillArgs), c_void_p]),
    "plx_prefill_plan_get_info": (c_int, [c_void_p, POINTER(PlanInfo)]),
    "plx_prefill_plan_destroy": (None, [c_void_p]),
    "plx_prefill_backward_args_init": (None, [POINTER(PrefillBackwardArgs)]),
    "plx_prefill_backward_workspace_size": (c_int, [POINTER(PrefillBackwardArgs), POINTER(c_size_t)]),
    "plx_prefill_backward_plan_info": (c_int, [c_void_p, POINTER(PrefillBackwardArgs), POINTER(PlanInfo)]),
    "plx_prefill_backward": (c_int, [c_void_p, POINTER(PrefillBackwardArgs), c_void_p]),
    "plx_merge_args_init": (None, [POINTER(MergeArgs)]),
    "plx_merge_validate": (c_int, [POINTER(MergeArgs)]),
    "plx_merge_states": (c_int, [c_void_p, POINTER(MergeArgs), c_void_p]),
}

_lock = threading.Lock()
plan_run_raw = None  # {"decode"|"prefill": plx_*_plan_run taking addresses}, set by lib()
_lib = None
_lib_path = None


def _candidates():
    env = os.environ.get("PARALLAX_LIBRARY")
    if env:
        yield env
        return  # an explicit choice is not second-guessed
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("libparallax.so", "libparallax.so.0"):
        p = os.path.join(here, name)
        if os.path.exists(p):
            yield p
    repo = os.path.dirname(os.path.dirname(here))  # <repo>/python/parallax_tuner -> <repo>
    builds = glob.glob(os.path.join(repo, "build*", "runtime", "libparallax.so"))
    builds.sort(key=lambda p: os.path.getmtime(p), reverse=True)
    yield from builds
    yield "libparallax.so.0"  # the system loader (LD_LIBRARY_PATH, ldconfig)


def lib():
    """The loaded library (loaded once, thread-safe). Raises LibraryNotFoundError."""
    global _lib, _lib_path
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        tried = []
        for path in _candidates():
            try:
                handle = ctypes.CDLL(path)
            except OSError as e:
                tried.append(f"{path} ({e})")
                continue
            for name, (restype, argtypes) in _SIGNATURES.items():
                fn = getattr(handle, name)
                fn.restype = restype
                fn.argtypes = argtypes
            run = ctypes.CFUNCTYPE(c_int, c_void_p, c_void_p, c_void_p, c_void_p)
            global plan_run_raw
            # The eager fast path's entry points: plain addresses in, no per-call conversions.
            plan_run_raw = {"decode": run(("plx_decode_plan_run", handle)),
                            "prefill": run(("plx_prefill_plan_run", handle))}
            _lib_path = path
            _lib = handle
            return _lib
        raise LibraryNotFoundError(
            "libparallax.so not found; set PARALLAX_LIBRARY to its path or build the `parallax_shared` "
            "target. Tried: " + "; ".join(tried))


def library_path():
    """Path of the loaded library (loads it if needed)."""
    lib()
    return _lib_path


def last_error() -> str:
    msg = lib().plx_last_error()
    return msg.decode("utf-8", "replace") if msg else ""


def check(status: int) -> None:
    """Raises ParallaxError(status, plx_last_error()) unless status is PLX_OK."""
    if status != OK:
        raise ParallaxError(status, last_error())


def version() -> str:
    return lib().plx_version().decode()


def sized(struct_type):
    """An output struct with its struct_size set, as the library requires."""
    s = struct_type()
    s.struct_size = ctypes.sizeof(struct_type)
    return s


def create_context(device: int, db_path=None, cache_dir=None) -> int:
    opts = ContextOptions()
    lib().plx_context_options_init(byref(opts))
    opts.device = device
    opts.db_path = db_path.encode() if db_path else None
    opts.cache_dir = cache_dir.encode() if cache_dir else None
    handle = c_void_p()
    check(lib().plx_context_create(byref(opts), byref(handle)))
    return handle.value


def destroy_context(handle) -> None:
    if handle:
        lib().plx_context_destroy(handle)


def device_info(handle) -> DeviceInfo:
    info = sized(DeviceInfo)
    check(lib().plx_context_get_device_info(handle, byref(info)))
    return info
