"""Parallax attention for PyTorch, through libparallax.so (ctypes; no compiled extension).

    import parallax_tuner as plx
    out = plx.parallax_decode(q, r, k_cache, v_cache)                 # q, r: [B, 1, Hq, D]
    out = plx.parallax_decode(q, r, k_pages, v_pages,
                              block_table=bt, cache_seqlens=lens)       # paged KV
    out = plx.parallax_prefill(q, r, k, v)                              # [B, L, H, D], causal
    out = plx.parallax_prefill(q, r, k, v, cu_seqlens_q=cu_q,           # packed [T, H, D]
                               cu_seqlens_k=cu_k, max_seqlen_q=mq, max_seqlen_k=mk)
    out = plx.parallax_prefill(q, r, k_pages, v_pages,                  # extend a paged cache
                               block_table=bt, seqused_k=lens)
    out, lse, tbar = plx.parallax_prefill(q, r, k, v, return_stats=True)  # for a backward
    out, st = plx.parallax_prefill(q, r, k, v, return_lse=True)         # st: AttentionStats
    out, st = plx.merge_states(out_a, st_a, out_b, st_b)                # partials -> whole

``r=None`` gives plain softmax attention. Kernels run on ``torch.cuda.current_stream()``;
nothing synchronizes. One context per device is created lazily (``get_context``), reading
the tuning database ``parallax tune`` writes. Every failure raises :class:`ParallaxError`
carrying the library's status and message.

Eager calls are cheap after the first: a call repeating an earlier call's signature (shapes,
strides, dtypes, device, options) reuses its validated arguments and plan and only passes the
new data pointers (the library still checks them). Such calls are also safe inside CUDA graph
capture. Under ``torch.compile`` the calls become the custom ops of
:mod:`parallax_tuner.ops` (``torch.ops.parallax_tuner.*``), so ``fullgraph=True`` traces
through them; import torch before this package, or import ``parallax_tuner.ops``, before
compiling.

Importing this package needs neither torch nor a GPU; the library is located on first use
(``$PARALLAX_LIBRARY``, next to this package, the source tree's build directories, then the
system loader). :mod:`parallax_tuner.compat` has the Parallax authors' ``parallax_decode``
call shape.
"""

from __future__ import annotations

import numbers
import sys
import threading
from collections import namedtuple
from ctypes import byref, c_size_t, c_void_p

from . import _fast, _lib
from ._fast import sig as _sig
from ._lib import LibraryNotFoundError, ParallaxError
from ._version import __version__
__all__ = [
    "parallax_decode", "parallax_prefill", "merge_states", "AttentionStats", "decode_plan", "prefill_plan",
    "decode_workspace_size",
    "plan_decode", "plan_prefill", "DecodePlan", "PrefillPlan",
    "get_context", "configure", "Context", "PlanInfo", "ParallaxError", "LibraryNotFoundError",
    "library_version", "library_path",
]

PlanInfo = namedtuple("PlanInfo", "variant choice num_splits workspace_bytes")
PlanInfo.__doc__ = """The kernel a call would use: its variant key, how it was chosen
('explicit', 'exact', 'nearest' or 'default'), the split-KV count and the workspace bytes."""

AttentionStats = namedtuple("AttentionStats", "lse tbar vbar packed", defaults=(False,))
AttentionStats.__doc__ = """Per-row statistics of an attention call, what merging partial attentions
needs (:func:`merge_states`): ``lse`` (natural log-sum-exp of the scaled scores, FlashAttention's
softmax_lse) and ``tbar`` (the softmax-weighted mean probe score r.k, 0 for softmax) as float32
[B, Hq, Lq] (packed: [Hq, Tq]; one-token decode with q [B, Hq, D]: [B, Hq]), and ``vbar`` (the
softmax output, like ``out``). ``packed`` says the statistics are [Hq, Tq] over packed rows."""

_DTYPES = {"torch.bfloat16": _lib.BF16, "torch.float16": _lib.FP16, "torch.int32": _lib.INT32}
_STATS_DTYPES = {"torch.float32": _lib.FLOAT32}  # the lse / tbar buffers this module allocates
_INT32_MAX = 2**31 - 1


def library_version() -> str:
    """Version of the loaded libparallax ("MAJOR.MINOR.PATCH")."""
    return _lib.version()


def library_path() -> str:
    """Path of the loaded libparallax."""
    return _lib.library_path()


# ---- contexts ----------------------------------------------------------------------------

class Context:
    """Owns one plx_context (a device, its compiled-kernel cache and tuned configs).

    db_path None reads the default tuning database: $PARALLAX_DB, else
    $XDG_DATA_HOME/parallax/tuner.db (~/.local/share/parallax/tuner.db), where `parallax tune`
    writes; "none" reads none. It is opened read-only; a missing file means no tuned configs."""

    def __init__(self, device: int = 0, db_path: str | None = None, cache_dir: str | None = None):
        self.device = int(device)
        self._handle = _lib.create_context(self.device, db_path, cache_dir)

    @property
    def handle(self):
        if not self._handle:
            raise ParallaxError(_lib.ERROR_INVALID_ARGUMENT, "context is closed")
        return self._handle

    def device_info(self) -> dict:
        info = _lib.device_info(self.handle)
        return {"ordinal": info.ordinal, "name": info.name.decode(errors="replace"),
                "compute_capability": (info.cc_major, info.cc_minor), "sm_count": info.sm_count,
                "mem_bytes": info.mem_bytes}

    def close(self) -> None:
        """Destroys the context; finish the work launched with it first."""
        handle, self._handle = self._handle, None
        if handle:
            _lib.destroy_context(handle)

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone
            pass


_contexts: dict[int, Context] = {}
_retired: list[Context] = []  # replaced by configure(); kept alive, work may be in flight
_options = {"db_path": None, "cache_dir": None}
_ctx_lock = threading.Lock()


def configure(db_path: str | None = None, cache_dir: str | None = None) -> None:
    """Options for the module's contexts: the tuning database (None: the default location, see
    Context; "none": no database) and the binary cache directory. Contexts created before keep
    running but are no longer handed out."""
    with _ctx_lock:
        _options["db_path"] = db_path
        _options["cache_dir"] = cache_dir
        _retired.extend(_contexts.values())
        _contexts.clear()
        _fast.invalidate()


def get_context(device: int | None = None) -> Context:
    """The module's context for a CUDA device (default: torch's current device), created lazily.
    Module contexts live until the process exits."""
    if device is None:
        import torch
        device = torch.cuda.current_device()
    device = int(device)
    ctx = _contexts.get(device)
    if ctx is not None:
        return ctx
    with _ctx_lock:
        ctx = _contexts.get(device)
        if ctx is None:
            ctx = Context(device, _options["db_path"], _options["cache_dir"])
            _contexts[device] = ctx
        return ctx


# ---- tensors -----------------------------------------------------------------------------

def _invalid(msg: str) -> ParallaxError:
    return ParallaxError(_lib.ERROR_INVALID_ARGUMENT, msg)


def _describe(t, name: str, dtypes=None) -> _lib.Tensor:
    """A plx_tensor for a torch tensor (None: absent)."""
    desc = _lib.Tensor()
    if t is None:
        return desc
    dtype = (dtypes or _DTYPES).get(str(t.dtype))
    if dtype is None:
        if dtypes is _STATS_DTYPES:
            raise ParallaxError(_lib.ERROR_UNSUPPORTED, f"{name}: dtype={t.dtype}: must be torch.float32")
        raise ParallaxError(_lib.ERROR_UNSUPPORTED,
                            f"{name}: dtype={t.dtype}: must be torch.bfloat16 or torch.float16 "
                            "(torch.int32 for index tensors)")
    shape = tuple(int(s) for s in t.shape)
    strides = tuple(int(s) for s in t.stride())
    if not 1 <= len(shape) <= _lib.MAX_DIMS:
        raise _invalid(f"{name}: ndim={len(shape)}: must be in 1..{_lib.MAX_DIMS}")
    numel = 1
    for s in shape:
        numel *= s
    if numel > 1 and all(s == 0 for s in strides):
        # The C API reads all-zero strides as "contiguous"; a fully broadcast tensor is not.
        raise _invalid(f"{name}: fully broadcast tensor (all strides 0) is not supported")
    desc.data = int(t.data_ptr()) or None
    desc.dtype = dtype
    desc.ndim = len(shape)
    for i, (s, st) in enumerate(zip(shape, strides)):
        desc.shape[i] = s
        desc.strides[i] = st
    return desc


def _int32(name: str, value) -> int:
    value = int(value)
    if not -_INT32_MAX - 1 <= value <= _INT32_MAX:
        raise _invalid(f"{name}={value}: out of the int32 range")
    return value


def _set_window(a, window, window_size) -> None:
    """``window`` and FlashAttention's ``window_size=(left, right)`` into the args; the library
    checks the values (window_size's as ``window_left`` / ``window_right``) and that both agree."""
    a.window = _int32("window", window)
    if window_size is None:
        return  # window_left / window_right stay PLX_WINDOW_SIZE_UNSET: not given
    if not isinstance(window_size, (tuple, list)):
        raise TypeError(f"window_size={window_size!r}: must be a (left, right) tuple of two ints")
    if len(window_size) != 2:
        raise ValueError(f"window_size={window_size!r}: must have two entries, (left, right)")
    for i, x in enumerate(window_size):
        if isinstance(x, bool) or not isinstance(x, numbers.Integral):
            raise TypeError(f"window_size[{i}]={x!r}: must be an int")
    left, right = (_int32(f"window_size[{i}]", x) for i, x in enumerate(window_size))
    if _lib.WINDOW_SIZE_UNSET in (left, right):  # the C API would read it as "not given"
        raise _invalid(f"window_size=({left}, {right}): left must be >= -1 and right 0 or -1")
    a.window_left, a.window_right = left, right


def _affine(affine) -> int:
    code = _lib.AFFINES.get(affine)
    if code is None:
        raise _invalid(f"affine={affine!r}: must be 'plain' or 'amplified'")
    return code


def _variant(variant):
    if variant is None or variant == "":
        return None
    if isinstance(variant, bytes):
        return variant
    return str(variant).encode()


def _cuda_device(named) -> int:
    """The one CUDA device all given tensors live on."""
    device = None
    first = None
    for name, t in named:
        if t is None:
            continue
        if not getattr(t, "is_cuda", False):
            raise _invalid(f"{name}: must be a CUDA tensor (got device {t.device})")
        idx = t.device.index
        if device is None:
            device, first = idx, name
        elif idx != device:
            raise _invalid(f"{name}: on cuda:{idx}, but {first} is on cuda:{device}")
    return device


def _stream(device: int) -> int:
    import torch
    return torch.cuda.current_stream(device).cuda_stream


_ops_module = None  # parallax_tuner.ops once imported (it sets this)


def _bind_torch() -> None:
    """First call with torch tensors: the fast path's stream getter, and the custom ops
    registered so a later torch.compile finds them without importing anything mid-trace."""
    if _fast._torch[0] is None:
        import torch
        _fast.bind_torch(torch)
        try:
            from . import ops  # noqa: F401  (registers torch.ops.parallax_tuner.*)
        except (ImportError, AttributeError):  # a torch without torch.library.custom_op: eager only
            pass


def _compiling() -> bool:
    t = _fast._torch[0]
    return t is not None and t[0].compiler.is_compiling()


def _wants_grad(*tensors) -> bool:
    """A tensor requiring grad (with grad mode on): torch is imported, the ops are registered."""
    if not any(getattr(t, "requires_grad", False) for t in tensors):
        return False
    _bind_torch()
    return _fast._torch[0][0].is_grad_enabled()


def _ops():
    if _ops_module is None:
        raise RuntimeError("parallax_tuner: torch.compile reached a call before the custom ops were registered; "
                           "import parallax_tuner.ops (or torch before parallax_tuner) first")
    return _ops_module


def _empty_like_q(q):
    import torch
    return torch.empty(q.shape, dtype=q.dtype, device=q.device)


def _zeros(q, out):
    """Output of a call without visible keys (zeros, as the kernels define it)."""
    if out is None:
        import torch
        return torch.zeros(q.shape, dtype=q.dtype, device=q.device)
    return out.zero_()


def _stats_shape(q, packed: bool):
    """lse / tbar shape for q: [B, Hq, Lq]; packed [Hq, Tq]; one-token decode q [B, Hq, D]: [B, Hq]."""
    if packed:
        return (q.shape[1], q.shape[0])
    if len(q.shape) == 3:
        return (q.shape[0], q.shape[1])
    return (q.shape[0], q.shape[2], q.shape[1])


def _placeholder(shape, dtype, ptr) -> _lib.Tensor:
    """A contiguous descriptor the library validates but, planning or validating, never reads."""
    t = _lib.Tensor()
    t.data = int(ptr) or None
    t.dtype = dtype
    t.ndim = len(shape)
    for i, n in enumerate(shape):
        t.shape[i] = int(n)
    return t


def _bytes_end(desc: _lib.Tensor) -> int:
    """One past the last byte a 16-bit descriptor addresses (contiguous when its strides are 0)."""
    shape = [desc.shape[i] for i in range(desc.ndim)]
    strides = [desc.strides[i] for i in range(desc.ndim)]
    if all(st == 0 for st in strides):
        n = 1
        for x in shape:
            n *= x
        return (desc.data or 0) + 2 * n
    return (desc.data or 0) + 2 * (sum((x - 1) * st for x, st in zip(shape, strides)) + 1)


def _set_stats_placeholders(a, q, packed: bool) -> None:
    """lse / tbar / vbar descriptors for validation and plans, before the real buffers exist:
    float32 statistics at q's (aligned) address, vbar like q right past out's bytes (apart
    from out, as the library requires). Nothing behind them is read."""
    shape = _stats_shape(q, packed)
    a.lse = _placeholder(shape, _lib.FLOAT32, q.data_ptr())
    a.tbar = _placeholder(shape, _lib.FLOAT32, q.data_ptr())
    a.vbar = _placeholder(q.shape, a.out.dtype, (_bytes_end(a.out) + 15) // 16 * 16)


def _alloc_stats(q, packed: bool, no_keys: bool = False) -> AttentionStats:
    """AttentionStats buffers for q's rows; no_keys: filled as rows without visible keys read."""
    import torch
    shape = _stats_shape(q, packed)
    if no_keys:
        return AttentionStats(torch.full(shape, float("-inf"), dtype=torch.float32, device=q.device),
                              torch.zeros(shape, dtype=torch.float32, device=q.device),
                              torch.zeros(q.shape, dtype=q.dtype, device=q.device), packed)
    return AttentionStats(torch.empty(shape, dtype=torch.float32, device=q.device),
                          torch.empty(shape, dtype=torch.float32, device=q.device),
                          torch.empty(q.shape, dtype=q.dtype, device=q.device), packed)


def _describe_stats(a, st: AttentionStats) -> None:
    a.lse = _describe(st.lse, "lse", _STATS_DTYPES)
    a.tbar = _describe(st.tbar, "tbar", _STATS_DTYPES)
    a.vbar = _describe(st.vbar, "vbar")


def _plan(info: _lib.PlanInfo) -> PlanInfo:
    return PlanInfo(info.variant.decode(), _lib.CHOICE_NAMES.get(info.choice, str(info.choice)),
                    int(info.num_splits), int(info.workspace_bytes))


# ---- decode ------------------------------------------------------------------------------

def _decode_args(q, r, k, v, qk_scale, block_table, cache_seqlens, window, window_size, affine, eps, variant,
                 num_splits, out, workspace) -> _lib.DecodeArgs:
    a = _lib.DecodeArgs()
    _lib.lib().plx_decode_args_init(byref(a))
    a.q = _describe(q, "q")
    a.r = _describe(r, "r")
    a.k = _describe(k, "k")
    a.v = _describe(v, "v")
    # Without `out`, validate against q's descriptor; the real buffer is allocated afterwards.
    a.out = _describe(out, "out") if out is not None else _describe(q, "q")
    a.block_table = _describe(block_table, "block_table")
    a.cache_seqlens = _describe(cache_seqlens, "cache_seqlens")
    a.qk_scale = -1.0 if qk_scale is None else float(qk_scale)
    _set_window(a, window, window_size)
    a.affine = _affine(affine)
    a.eps = float(eps)
    a.variant = _variant(variant)
    a.num_splits = _int32("num_splits", num_splits)
    if workspace is not None:
        a.workspace = int(workspace.data_ptr()) or None
        a.workspace_bytes = int(workspace.numel()) * int(workspace.element_size())
    return a


def _decode_prepare(q, r, k, v, qk_scale, block_table, cache_seqlens, window, window_size, affine, eps, variant,
                    num_splits, out, workspace, max_seqlen_k=None, stats=False):
    a = _decode_args(q, r, k, v, qk_scale, block_table, cache_seqlens, window, window_size, affine, eps, variant,
                     num_splits, out, workspace)
    if max_seqlen_k is not None:  # else the library's -1: plan for the cache's capacity
        a.max_seqlen_k = _int32("max_seqlen_k", max_seqlen_k)
    if stats:  # validated as the launch will be (decode with statistics runs as extend)
        _set_stats_placeholders(a, q, packed=False)
    L = _lib.lib()
    _lib.check(L.plx_decode_validate(byref(a)))
    device = _cuda_device([("q", q), ("r", r), ("k", k), ("v", v), ("out", out), ("block_table", block_table),
                           ("cache_seqlens", cache_seqlens), ("workspace", workspace)])
    return a, device


def parallax_decode(q, r, k, v, qk_scale=None, *, block_table=None, cache_seqlens=None, window=0,
                    window_size=None, affine="plain", eps=1e-6, variant=None, num_splits=0, out=None,
                    workspace=None, max_seqlen_k=None, return_lse=False):
    """One decode step of Parallax attention (softmax attention when ``r`` is None).

    q, r: [B, 1, Hq, D] (or [B, Hq, D]), bf16 or fp16, D in {64, 128, 256}; or [B, Tq, Hq, D]
          with Tq > 1 (speculative verification): the cache already holds the Tq new tokens and
          query t sees keys up to cache_seqlens[b] - Tq + t. On sm_90 with Tq <= 16 (8 at D 256),
          a contiguous cache or pages of >= 8 keys, the split-KV decode kernel runs it (every
          K/V tile read once for all Tq tokens) where it is expected to be faster (Tq x Hq/Hkv
          <= 32 or B = 1; MHA below B x Hkv = 256), or whenever a ``decode-...-qTq`` variant is
          named. Otherwise it runs as extend (one prefill kernel over the cache, no split-KV, no
          workspace); a contiguous cache then takes no ``cache_seqlens``.
    k, v: contiguous cache [B, L, Hkv, D] (any strides with a contiguous last dimension, so a
          [B, Hkv, L, D] cache passed as ``k.transpose(1, 2)`` works), or paged
          [num_pages, page_size, Hkv, D] with ``block_table`` [B, max_pages] int32 and
          ``cache_seqlens`` [B] int32. With a contiguous cache, ``cache_seqlens`` is optional.
    qk_scale: the bandwidth tau (default 1/sqrt(D)); ``window``: sliding window of W keys, the
    query's own included (0 = none); ``window_size=(left, right)``: the same in FlashAttention's
    spelling (see :func:`parallax_prefill`);
    ``affine``: 'plain' (Parallax) or 'amplified' (LLA boundary factor, guarded by ``eps``);
    ``variant``: an explicit kernel variant key; ``num_splits``: split-KV count (0 = auto);
    ``workspace``: a CUDA byte buffer for split partials, sized by :func:`decode_workspace_size`
    (else the library's own, reserved by the first call of each signature: make that call
    before capturing a CUDA graph, then calls of the same signature capture);
    ``max_seqlen_k``: the longest ``cache_seqlens`` as the host knows it, so the kernel and split
    count follow the live batch, not the cache's capacity (see :func:`plan_decode`).
    Returns ``out`` (allocated like q when not given).

    ``return_lse=True`` returns ``(out, stats)``, an :class:`AttentionStats` of each query row
    (lse and tbar float32 [B, Hq] for q [B, Hq, D], [B, Hq, Tq] for q [B, Tq, Hq, D]; vbar like
    out), so partial decodes merge with :func:`merge_states`. Such a decode runs as extend (the
    prefill kernels, like multi-token decode elsewhere): slower than the split-KV decode kernel;
    ``num_splits`` must be 0 and a contiguous cache takes no ``cache_seqlens``.
    """
    if _compiling():  # torch.compile: the custom op (parallax_tuner.ops)
        return _ops().call_decode(q, r, k, v, qk_scale, block_table, cache_seqlens, window, window_size, affine, eps,
                                  variant, num_splits, out, workspace, max_seqlen_k, return_lse)
    x = _fast.ext[0]
    # The C++ fast path's key (torch_ext): the options; the tensors are its arguments.
    opts = ("decode", qk_scale, window, window_size, affine, eps, variant, num_splits, max_seqlen_k)
    if x is not None and workspace is None and not return_lse:
        res = x.run(opts, q, r, k, v, block_table, cache_seqlens, out)
        if res is not None:
            if res.__class__ is int:
                _lib.check(res)
            return res
    key = None
    if workspace is None:
        try:
            # q, k, v inline (never None here): this line is most of a repeated call's Python time.
            key = ("decode", q.shape, q.stride(), q.dtype, q.get_device(), _sig(r), k.shape, k.stride(), k.dtype,
                   k.get_device(), v.shape, v.stride(), v.dtype, v.get_device(), _sig(block_table),
                   _sig(cache_seqlens), _sig(out), qk_scale, window, window_size, affine, eps, variant, num_splits,
                   max_seqlen_k, return_lse)
            entry = _fast.cache().get(key)
        except (AttributeError, TypeError):  # not torch tensors, or an unhashable option: checked way
            key = entry = None
        if entry is not None:
            if x is not None and not return_lse:  # made before the extension loaded: hand it over
                _fast.ext_remember(opts, (q, r, k, v, block_table, cache_seqlens, out), _DECODE_EXT_FIELDS, entry)
            return _run_decode(entry, q, r, k, v, block_table, cache_seqlens, out, return_lse)
    if q is not None and hasattr(q, "numel") and q.numel() == 0:
        out = out if out is not None else _empty_like_q(q)
        return (out, _alloc_stats(q, False, no_keys=True)) if return_lse else out
    if block_table is None and k is not None and hasattr(k, "numel") and k.numel() == 0:
        out = _zeros(q, out)  # an empty cache (Lmax == 0): every sequence has no keys
        return (out, _alloc_stats(q, False, no_keys=True)) if return_lse else out
    a, device = _decode_prepare(q, r, k, v, qk_scale, block_table, cache_seqlens, window, window_size, affine, eps,
                                variant, num_splits, out, workspace, max_seqlen_k, stats=return_lse)
    given_out = out
    if out is None:
        out = _empty_like_q(q)
        a.out = _describe(out, "out")
    stats = None
    if return_lse:
        stats = _alloc_stats(q, False)
        _describe_stats(a, stats)
    ctx = get_context(device)
    if key is None:
        _lib.check(_lib.lib().plx_decode(ctx.handle, byref(a), _stream(device)))
        return (out, stats) if return_lse else out
    # A plan for this signature; later calls with it only rewrite the data pointers.
    _bind_torch()
    entry = _fast.make("decode", a, ctx, device, _DECODE_FIELDS, tuple(q.shape),
                       _stats_shape(q, False) if return_lse else None)
    entry.contiguous = q.is_contiguous()
    _fast.remember(key, entry)
    if not return_lse:
        _fast.ext_remember(opts, (q, r, k, v, block_table, cache_seqlens, given_out), _DECODE_EXT_FIELDS, entry)
    entry.launch((q, r, k, v, out, block_table, cache_seqlens) + ((stats.lse, stats.tbar, stats.vbar) if stats else ()))
    return (out, stats) if return_lse else out


_DECODE_FIELDS = ("q", "r", "k", "v", "out", "block_table", "cache_seqlens", "lse", "tbar", "vbar")
_DECODE_EXT_FIELDS = ("q", "r", "k", "v", "block_table", "cache_seqlens", "out")  # ext.run's order


def _run_decode(entry, q, r, k, v, block_table, cache_seqlens, out, return_lse):
    """A decode of a known signature: its plan over these tensors."""
    if out is None:
        out = _fast.alloc_out(entry, q)
    if not return_lse:
        entry.launch((q, r, k, v, out, block_table, cache_seqlens))
        return out
    f32 = _fast._torch[0][0].float32
    st = AttentionStats(q.new_empty(entry.stats_shape, dtype=f32), q.new_empty(entry.stats_shape, dtype=f32),
                        _fast.alloc_out(entry, q), False)
    entry.launch((q, r, k, v, out, block_table, cache_seqlens, st.lse, st.tbar, st.vbar))
    return out, st


def decode_plan(q, r, k, v, qk_scale=None, *, block_table=None, cache_seqlens=None, window=0, window_size=None,
                affine="plain", eps=1e-6, variant=None, num_splits=0, out=None, workspace=None,
                max_seqlen_k=None) -> PlanInfo:
    """The kernel :func:`parallax_decode` would use for these arguments (may JIT-compile it).
    To keep a plan and run it, see :func:`plan_decode`."""
    a, device = _decode_prepare(q, r, k, v, qk_scale, block_table, cache_seqlens, window, window_size, affine, eps,
                                variant, num_splits, out, workspace, max_seqlen_k)
    info = _lib.sized(_lib.PlanInfo)
    _lib.check(_lib.lib().plx_decode_plan_info(get_context(device).handle, byref(a), byref(info)))
    return _plan(info)


def decode_workspace_size(q, r, k, v, qk_scale=None, **kwargs) -> int:
    """Bytes of ``workspace`` :func:`parallax_decode` needs for these arguments."""
    kwargs.pop("workspace", None)
    a, device = _decode_prepare(q, r, k, v, qk_scale, kwargs.pop("block_table", None),
                                kwargs.pop("cache_seqlens", None), kwargs.pop("window", 0),
                                kwargs.pop("window_size", None), kwargs.pop("affine", "plain"), kwargs.pop("eps", 1e-6),
                                kwargs.pop("variant", None), kwargs.pop("num_splits", 0), kwargs.pop("out", None), None,
                                kwargs.pop("max_seqlen_k", None))
    if kwargs:
        raise TypeError(f"unexpected keyword arguments: {sorted(kwargs)}")
    n = c_size_t()
    _lib.check(_lib.lib().plx_decode_workspace_size(get_context(device).handle, byref(a), byref(n)))
    return int(n.value)


# ---- prefill -----------------------------------------------------------------------------

def _max_seqlen(cu) -> int:
    offsets = [int(x) for x in cu.tolist()]  # host sync; pass max_seqlen_* to avoid it
    return max((b - a for a, b in zip(offsets, offsets[1:])), default=0)


def _prefill_prepare(q, r, k, v, qk_scale, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, window,
                     window_size, affine, eps, variant, out, block_table=None, seqused_k=None, causal=True,
                     stats=False):
    a = _lib.PrefillArgs()
    L = _lib.lib()
    L.plx_prefill_args_init(byref(a))
    a.q = _describe(q, "q")
    a.r = _describe(r, "r")
    a.k = _describe(k, "k")
    a.v = _describe(v, "v")
    a.out = _describe(out, "out") if out is not None else _describe(q, "q")
    a.cu_seqlens_q = _describe(cu_seqlens_q, "cu_seqlens_q")
    a.cu_seqlens_k = _describe(cu_seqlens_k, "cu_seqlens_k")
    a.block_table = _describe(block_table, "block_table")
    a.seqused_k = _describe(seqused_k, "seqused_k")
    if cu_seqlens_q is not None and (cu_seqlens_k is not None or block_table is not None):
        a.max_seqlen_q = _int32("max_seqlen_q", _max_seqlen(cu_seqlens_q) if max_seqlen_q is None else max_seqlen_q)
    if cu_seqlens_k is not None:
        a.max_seqlen_k = _int32("max_seqlen_k", _max_seqlen(cu_seqlens_k) if max_seqlen_k is None else max_seqlen_k)
    elif block_table is not None and max_seqlen_k is not None:  # a paged cache's live bound
        a.max_seqlen_k = _int32("max_seqlen_k", max_seqlen_k)
    a.qk_scale = -1.0 if qk_scale is None else float(qk_scale)
    _set_window(a, window, window_size)
    a.affine = _affine(affine)
    a.eps = float(eps)
    a.variant = _variant(variant)
    if not isinstance(causal, (bool, int)) or causal not in (0, 1):
        raise TypeError(f"causal={causal!r}: must be True or False")
    a.causal = 1 if causal else 0
    if stats:  # validated as the launch will be
        _set_stats_placeholders(a, q, packed=cu_seqlens_q is not None)
    _lib.check(L.plx_prefill_validate(byref(a)))
    device = _cuda_device([("q", q), ("r", r), ("k", k), ("v", v), ("out", out), ("cu_seqlens_q", cu_seqlens_q),
                           ("cu_seqlens_k", cu_seqlens_k), ("block_table", block_table), ("seqused_k", seqused_k)])
    return a, device


def _stats_buffers(q, packed: bool, no_keys: bool = False):
    """lse and tbar, float32 [B, Hq, Lq] or, packed, [Hq, Tq]; with no_keys filled as rows
    without visible keys read (-inf and 0), else left for the kernel to write."""
    import torch
    shape = _stats_shape(q, packed)
    if no_keys:
        return (torch.full(shape, float("-inf"), dtype=torch.float32, device=q.device),
                torch.zeros(shape, dtype=torch.float32, device=q.device))
    return (torch.empty(shape, dtype=torch.float32, device=q.device),
            torch.empty(shape, dtype=torch.float32, device=q.device))


def parallax_prefill(q, r, k, v, qk_scale=None, *, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=None,
                     max_seqlen_k=None, window=0, window_size=None, affine="plain", eps=1e-6, variant=None,
                     out=None, return_stats=False, block_table=None, seqused_k=None, return_lse=False, causal=True):
    """Causal Parallax attention over whole sequences (softmax attention when ``r`` is None).

    Batched: q, r [B, Lq, Hq, D], k, v [B, Lk, Hkv, D]; the causal mask is aligned to the end of
    the keys (query row i sees keys j <= Lk - Lq + i). Packed (varlen): q, r [Tq, Hq, D],
    k, v [Tk, Hkv, D] with ``cu_seqlens_q`` / ``cu_seqlens_k`` int32 [B + 1]; ``max_seqlen_*``
    default to the longest sequence (computed on the host, which synchronizes).
    Returns ``out`` (allocated like q when not given).

    Extend over a paged cache (chunked prefill, prefix-cache hits, speculative verification):
    k, v [num_pages, page_size, Hkv, D] with ``block_table`` int32 [B, max_pages] and
    ``seqused_k`` int32 [B] (each sequence's keys, the new ones included); q stays batched or
    packed with ``cu_seqlens_q`` alone, and each sequence's queries are its last keys.
    ``max_seqlen_k`` (optional) bounds seqused_k so the kernel follows the live lengths
    rather than the table's capacity. No host synchronization: graph-safe.

    Windows, two spellings of one thing: ``window=W`` (0 = none) lets row i see only the W
    keys ending at its own, Lk - Lq + i - W < j <= Lk - Lq + i. FlashAttention's
    ``window_size=(left, right)`` (query position i' = Lk - Lq + i sees keys i' - left through
    i' + right) is accepted too: ``left=-1`` is no window, ``left >= 0`` is ``window=left + 1``;
    the kernels are causal, so ``right`` must be 0 (FlashAttention's causal=True) or -1 (read
    the same here). Given both, ``window`` must be 0 or the same window. A ``window_size`` that
    is not a pair of ints raises TypeError / ValueError; values the library refuses raise
    :class:`ParallaxError` naming ``window_left`` / ``window_right``.

    ``return_stats=True`` returns ``(out, lse, tbar)``, float32 [B, Hq, Lq] (packed: [Hq, Tq]),
    what a backward pass needs: per query row, over its visible keys j,
    ``lse = ln(sum_j exp(tau q.k_j))`` (natural log, FlashAttention's softmax_lse) and
    ``tbar = sum_j w_j (r.k_j)`` with ``w_j = exp(tau q.k_j - lse)`` (0 when ``r`` is None).
    The output is ``sum_j w_j (1 - (r.k_j - tbar)) v_j`` (amplified: ``(r.k_j - tbar) / delta``,
    ``delta = 1 - (tbar - r.q)``). Rows without visible keys get ``-inf`` and 0.

    ``return_lse=True`` returns ``(out, stats)`` with ``stats`` an :class:`AttentionStats`: lse
    and tbar as above plus ``vbar``, each row's softmax output (like out), which merging
    partial Parallax attentions needs besides lse (:func:`merge_states`).
    ``causal=False``: every query row sees all keys of its sequence (no window then), e.g. the
    shared prefix of a cascade, merged afterwards with each sequence's own causal part.
    """
    if return_stats and return_lse:
        raise ValueError("return_stats and return_lse: ask for one (return_lse's stats include lse and tbar)")
    if _compiling():  # torch.compile: the custom ops (parallax_tuner.ops)
        return _ops().call_prefill(q, r, k, v, qk_scale, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                                   window, window_size, affine, eps, variant, out, return_stats, block_table,
                                   seqused_k, return_lse, causal)
    x = _fast.ext[0]
    plain = not (return_stats or return_lse)
    opts = ("prefill", qk_scale, max_seqlen_q, max_seqlen_k, window, window_size, affine, eps, variant, causal)
    if x is not None and plain:  # the C++ fast path (torch_ext); it declines autograd
        res = x.run(opts, q, r, k, v, cu_seqlens_q, cu_seqlens_k, block_table, seqused_k, out)
        if res is not None:
            if res.__class__ is int:
                _lib.check(res)
            return res
    if _wants_grad(q, r, k, v):  # differentiable: through the custom op and its autograd formula
        return _ops().call_prefill(q, r, k, v, qk_scale, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                                   window, window_size, affine, eps, variant, out, return_stats, block_table,
                                   seqused_k, return_lse, causal)
    packed = cu_seqlens_q is not None
    key = None
    # Lengths read from cu_seqlens on the host change from call to call: not a signature.
    if not ((packed and max_seqlen_q is None and (cu_seqlens_k is not None or block_table is not None))
            or (cu_seqlens_k is not None and max_seqlen_k is None)):
        try:
            key = ("prefill", q.shape, q.stride(), q.dtype, q.get_device(), _sig(r), k.shape, k.stride(), k.dtype,
                   k.get_device(), v.shape, v.stride(), v.dtype, v.get_device(), _sig(out), _sig(cu_seqlens_q),
                   _sig(cu_seqlens_k),
                   _sig(block_table), _sig(seqused_k), qk_scale, max_seqlen_q, max_seqlen_k, window, window_size,
                   affine, eps, variant, return_stats, return_lse, causal)
            entry = _fast.cache().get(key)
        except (AttributeError, TypeError):  # not torch tensors, or an unhashable option: checked way
            key = entry = None
        if entry is not None:
            if x is not None and plain:  # made before the extension loaded: hand it over
                _fast.ext_remember(opts, (q, r, k, v, cu_seqlens_q, cu_seqlens_k, block_table, seqused_k, out),
                                   _PREFILL_EXT_FIELDS, entry)
            return _run_prefill(entry, q, r, k, v, out, cu_seqlens_q, cu_seqlens_k, block_table, seqused_k,
                                return_stats, return_lse, packed)
    if q is not None and hasattr(q, "numel") and q.numel() == 0:
        out = out if out is not None else _empty_like_q(q)
        if return_lse:
            return out, _alloc_stats(q, packed, no_keys=True)
        return (out, *_stats_buffers(q, packed, no_keys=True)) if return_stats else out
    if block_table is None and k is not None and hasattr(k, "numel") and k.numel() == 0:
        out = _zeros(q, out)  # no keys at all: every row sees none
        if return_lse:
            return out, _alloc_stats(q, packed, no_keys=True)
        return (out, *_stats_buffers(q, packed, no_keys=True)) if return_stats else out
    a, device = _prefill_prepare(q, r, k, v, qk_scale, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                                 window, window_size, affine, eps, variant, out, block_table, seqused_k, causal,
                                 stats=return_lse)
    given_out = out
    if out is None:
        out = _empty_like_q(q)
        a.out = _describe(out, "out")
    stats = None
    if return_stats:  # the library validates them with the launch
        stats = _stats_buffers(q, packed)
        a.lse = _describe(stats[0], "lse", _STATS_DTYPES)
        a.tbar = _describe(stats[1], "tbar", _STATS_DTYPES)
    if return_lse:
        stats = _alloc_stats(q, packed)
        _describe_stats(a, stats)
    ctx = get_context(device)
    if key is None:
        _lib.check(_lib.lib().plx_prefill(ctx.handle, byref(a), _stream(device)))
    else:  # a plan for this signature; later calls with it only rewrite the data pointers
        _bind_torch()
        entry = _fast.make("prefill", a, ctx, device, _PREFILL_FIELDS, tuple(q.shape),
                           _stats_shape(q, packed) if (return_lse or return_stats) else None)
        entry.contiguous = q.is_contiguous()
        _fast.remember(key, entry)
        if plain:
            _fast.ext_remember(opts, (q, r, k, v, cu_seqlens_q, cu_seqlens_k, block_table, seqused_k, given_out),
                               _PREFILL_EXT_FIELDS, entry)
        outs = () if stats is None else tuple(stats)[:3]
        entry.launch((q, r, k, v, out, cu_seqlens_q, cu_seqlens_k, block_table, seqused_k) + outs)
    if return_lse:
        return out, stats
    return (out, *stats) if return_stats else out


_PREFILL_FIELDS = ("q", "r", "k", "v", "out", "cu_seqlens_q", "cu_seqlens_k", "block_table", "seqused_k", "lse",
                   "tbar", "vbar")
_PREFILL_EXT_FIELDS = ("q", "r", "k", "v", "cu_seqlens_q", "cu_seqlens_k", "block_table", "seqused_k", "out")


def _run_prefill(entry, q, r, k, v, out, cu_seqlens_q, cu_seqlens_k, block_table, seqused_k, return_stats,
                 return_lse, packed):
    """A prefill of a known signature: its plan over these tensors."""
    if out is None:
        out = _fast.alloc_out(entry, q)
    tensors = (q, r, k, v, out, cu_seqlens_q, cu_seqlens_k, block_table, seqused_k)
    if not (return_lse or return_stats):
        entry.launch(tensors)
        return out
    f32 = _fast._torch[0][0].float32
    lse, tbar = q.new_empty(entry.stats_shape, dtype=f32), q.new_empty(entry.stats_shape, dtype=f32)
    if return_stats:
        entry.launch(tensors + (lse, tbar))
        return out, lse, tbar
    st = AttentionStats(lse, tbar, _fast.alloc_out(entry, q), packed)
    entry.launch(tensors + (lse, tbar, st.vbar))
    return out, st


def prefill_plan(q, r, k, v, qk_scale=None, *, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=None,
                 max_seqlen_k=None, window=0, window_size=None, affine="plain", eps=1e-6, variant=None,
                 out=None, block_table=None, seqused_k=None, causal=True, return_lse=False) -> PlanInfo:
    """The kernel :func:`parallax_prefill` would use for these arguments."""
    a, device = _prefill_prepare(q, r, k, v, qk_scale, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                                 window, window_size, affine, eps, variant, out, block_table, seqused_k, causal,
                                 stats=return_lse)
    info = _lib.sized(_lib.PlanInfo)
    _lib.check(_lib.lib().plx_prefill_plan_info(get_context(device).handle, byref(a), byref(info)))
    return _plan(info)


# ---- merging partial attentions ------------------------------------------------------------

def merge_states(out_a, stats_a, out_b, stats_b, *, q=None, r=None, probe="learned", affine="plain", eps=1e-6,
                 out=None, out_stats=None, packed=None):
    """The exact merge of two partial attentions of the same query rows over disjoint key sets
    (a shared prefix attended with ``causal=False`` and each sequence's own keys, say): each
    part as ``parallax_prefill`` / ``parallax_decode`` return it with ``return_lse=True``.
    Returns ``(out, stats)``, attention over the union and its :class:`AttentionStats`, so
    merges chain. Per row, with l_A = exp(lse_A - lse), lse = ln(sum_A exp(lse_A)):
    softmax ``out = sum_A l_A out_A``; plain Parallax ``out = sum_A l_A (out_A + (tbar -
    tbar_A) vbar_A)``; amplified recovers each part's covariance term from out_A, vbar_A and
    r.q, so it needs ``q`` and ``r`` (like out). A row's part with lse = -inf counts for
    nothing. ``probe`` 'learned' (Parallax; also right for softmax parts, whose tbar is 0) or
    'none' (softmax: vbar and tbar are not read); ``affine`` and ``eps`` as the parts were
    made with. ``out`` / ``out_stats`` (an AttentionStats of buffers) may be part a's own
    tensors: the merge runs in place. ``packed`` (default: ``stats_a.packed``) says 3-D
    outputs are packed rows [Tq, Hq, D] with stats [Hq, Tq] rather than decode's [B, Hq, D]
    with [B, Hq]. Runs on the current stream; no host synchronization."""
    if packed is None:
        packed = bool(getattr(stats_a, "packed", False))
    code = _lib.PROBES.get(probe)
    if code is None:
        raise _invalid(f"probe={probe!r}: must be 'learned' or 'none'")
    if out_a is not None and hasattr(out_a, "numel") and out_a.numel() == 0:
        out = out if out is not None else _empty_like_q(out_a)
        return out, (out_stats if out_stats is not None else _alloc_stats_like(stats_a, out_a, packed))
    if out is None:
        out = _empty_like_q(out_a)
    if out_stats is None:
        out_stats = _alloc_stats_like(stats_a, out_a, packed)
    L = _lib.lib()
    a = _lib.MergeArgs()
    L.plx_merge_args_init(byref(a))
    a.out_a = _describe(out_a, "out_a")
    a.out_b = _describe(out_b, "out_b")
    for side, st in (("a", stats_a), ("b", stats_b)):
        setattr(a, f"lse_{side}", _describe(st.lse, f"lse_{side}", _STATS_DTYPES))
        setattr(a, f"tbar_{side}", _describe(st.tbar, f"tbar_{side}", _STATS_DTYPES))
        setattr(a, f"vbar_{side}", _describe(st.vbar, f"vbar_{side}"))
    a.out = _describe(out, "out")
    a.lse = _describe(out_stats.lse, "lse", _STATS_DTYPES)
    a.tbar = _describe(out_stats.tbar, "tbar", _STATS_DTYPES)
    a.vbar = _describe(out_stats.vbar, "vbar")
    a.q = _describe(q, "q")
    a.r = _describe(r, "r")
    a.probe = code
    a.affine = _affine(affine)
    a.eps = float(eps)
    a.packed = 1 if packed else 0
    _lib.check(L.plx_merge_validate(byref(a)))
    device = _cuda_device([("out_a", out_a), ("out_b", out_b), ("out", out), ("q", q), ("r", r)])
    _lib.check(L.plx_merge_states(get_context(device).handle, byref(a), _stream(device)))
    return out, AttentionStats(out_stats.lse, out_stats.tbar, out_stats.vbar, packed)


def _alloc_stats_like(stats, out, packed: bool) -> AttentionStats:
    import torch
    return AttentionStats(torch.empty(stats.lse.shape, dtype=torch.float32, device=stats.lse.device),
                          torch.empty(stats.lse.shape, dtype=torch.float32, device=stats.lse.device),
                          torch.empty(out.shape, dtype=out.dtype, device=out.device), packed)


# ---- plans: plan once per step, run per layer --------------------------------------------

class _Plan:
    """A plx_*_plan handle (parallax.h, "Plans"): the kernel, split count and workspace chosen
    once from host-side shapes and options; runs launch it over each call's own tensors, which
    must have the plan's shapes and dtypes. A run neither compiles nor allocates (given the
    workspace the plan was made with, or none in both), so it may be captured in a CUDA graph.
    Freed by :meth:`close` (or ``with``, or garbage collection)."""

    _kind = ""  # "decode" or "prefill": the C functions' infix

    def __init__(self, ctx, device, handle, options, info):
        self._ctx = ctx  # kept alive for the runs
        self._device = device
        self._handle = handle
        self._empty = handle is None  # an empty batch or cache: runs launch nothing
        self._options = options
        self.info = info
        self._tls = threading.local()  # per thread: run signature -> _fast.Entry on this plan

    def _runs(self) -> dict:
        d = getattr(self._tls, "d", None)
        if d is None:
            d = self._tls.d = {}
        return d

    def _remember(self, key, a, device, fields, q, stats_shape):
        """The checked run's struct, kept for later runs of the same signature (the C API still
        checks each run against the plan)."""
        _bind_torch()
        entry = _fast.Entry(self._kind, a, self._run_handle(), self._ctx, device, fields, tuple(q.shape),
                            stats_shape, owns=False)
        entry.contiguous = q.is_contiguous()
        runs = self._runs()
        if len(runs) >= _fast.MAX_ENTRIES:
            runs.clear()
        runs[key] = entry
        return entry

    def _run_handle(self):
        if self._handle is None:
            raise _invalid(f"{type(self).__name__} is closed")
        return self._handle

    def _launch(self, a):
        run = getattr(_lib.lib(), f"plx_{self._kind}_plan_run")
        _lib.check(run(self._ctx.handle, self._run_handle(), byref(a), _stream(self._device)))

    def close(self) -> None:
        """Frees the plan (host memory only; work launched with it may still be running)."""
        handle, self._handle = self._handle, None
        if handle:
            getattr(_lib.lib(), f"plx_{self._kind}_plan_destroy")(handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone
            pass


def _empty_plan(cls, device, options):
    """The plan of an empty batch or cache: its runs answer as the one-shot call does, with no
    kernel, so its info names none."""
    return cls(get_context(device), device, None, options, PlanInfo("", "default", 0, 0))


def _make_plan(cls, a, device, options):
    """A plan of the prepared arguments `a`."""
    ctx = get_context(device)
    L = _lib.lib()
    handle = c_void_p()
    _lib.check(getattr(L, f"plx_{cls._kind}_plan_create")(ctx.handle, byref(a), byref(handle)))
    plan = cls(ctx, device, handle.value, options, None)
    info = _lib.sized(_lib.PlanInfo)
    _lib.check(getattr(L, f"plx_{cls._kind}_plan_get_info")(handle.value, byref(info)))
    plan.info = _plan(info)
    return plan


def _nothing_to_decode(q, k, block_table) -> bool:
    """What parallax_decode answers without a kernel: an empty batch or an empty cache."""
    return q.numel() == 0 or (block_table is None and k.numel() == 0)


class DecodePlan(_Plan):
    """A decode plan made by :func:`plan_decode`; ``info`` is its :class:`PlanInfo`."""

    _kind = "decode"

    def run(self, q, r, k, v, *, block_table=None, cache_seqlens=None, out=None, workspace=None):
        """:func:`parallax_decode` over these tensors with the plan's kernel and options; the
        tensors must have the plan's shapes and dtypes (pointers and strides may differ).
        Returns ``out`` (allocated like q when not given)."""
        key = None
        if workspace is None and not self._empty:
            try:
                key = (_sig(q), _sig(r), _sig(k), _sig(v), _sig(block_table), _sig(cache_seqlens), _sig(out))
                entry = self._runs().get(key)
            except (AttributeError, TypeError):  # not torch tensors: the checked way
                key = entry = None
            if entry is not None:
                self._run_handle()  # refuses a closed plan
                return _run_decode(entry, q, r, k, v, block_table, cache_seqlens, out, False)
        if self._empty:  # as parallax_decode answers it
            if q.numel() == 0:
                return out if out is not None else _empty_like_q(q)
            return _zeros(q, out)
        a, device = _decode_prepare(q, r, k, v, block_table=block_table, cache_seqlens=cache_seqlens, out=out,
                                    workspace=workspace, **self._options)
        if device != self._device:
            raise _invalid(f"q: on cuda:{device}, but the plan was made on cuda:{self._device}")
        if out is None:
            out = _empty_like_q(q)
            a.out = _describe(out, "out")
        if key is None:
            self._launch(a)
        else:
            self._remember(key, a, device, _DECODE_FIELDS, q, None).launch((q, r, k, v, out, block_table,
                                                                            cache_seqlens))
        return out


def plan_decode(q, r, k, v, qk_scale=None, *, block_table=None, cache_seqlens=None, max_seqlen_k=None, window=0,
                window_size=None, affine="plain", eps=1e-6, variant=None, num_splits=0, out=None,
                workspace=None) -> DecodePlan:
    """A :class:`DecodePlan` for these arguments (those of :func:`parallax_decode`): plan once
    per step, then ``plan.run(q, r, k, v, block_table=, cache_seqlens=, out=, workspace=)``
    per layer. ``max_seqlen_k`` is the longest ``cache_seqlens`` as the host knows it: the
    kernel, split count and workspace then follow the live batch instead of the cache's
    capacity (max_pages x page_size, or L). It must not exceed the capacity; below a live
    length the results stay right (every key is read), the plan is only made for shorter
    sequences. Creating a plan may compile the kernel and allocate (the runtime's workspace
    when ``workspace`` is None): do it outside CUDA graph capture, and capture the runs."""
    options = dict(qk_scale=qk_scale, window=window, window_size=window_size, affine=affine, eps=eps,
                   variant=variant, num_splits=num_splits, max_seqlen_k=max_seqlen_k)
    if _nothing_to_decode(q, k, block_table):
        return _empty_plan(DecodePlan, _cuda_device([("q", q), ("k", k), ("out", out)]), options)
    a, device = _decode_prepare(q, r, k, v, block_table=block_table, cache_seqlens=cache_seqlens, out=out,
                                workspace=workspace, **options)
    return _make_plan(DecodePlan, a, device, options)


def _stats_placeholders(a, q, packed: bool) -> None:
    """lse / tbar descriptors for a plan: float32 of the stats shape at q's (aligned) address.
    A plan reads no pointer; the run gets real buffers."""
    shape = _stats_shape(q, packed)
    for name in ("lse", "tbar"):
        t = _lib.Tensor()
        t.data = int(q.data_ptr()) or None
        t.dtype = _lib.FLOAT32
        t.ndim = len(shape)
        for i, s in enumerate(shape):
            t.shape[i] = int(s)
        setattr(a, name, t)


class PrefillPlan(_Plan):
    """A prefill plan made by :func:`plan_prefill`; ``info`` is its :class:`PlanInfo`."""

    _kind = "prefill"

    def run(self, q, r, k, v, *, cu_seqlens_q=None, cu_seqlens_k=None, block_table=None, seqused_k=None, out=None):
        """:func:`parallax_prefill` over these tensors with the plan's kernel and options
        (``max_seqlen_*``, ``causal``, ``return_stats`` and ``return_lse`` included). Returns
        ``out``, ``(out, lse, tbar)`` or ``(out, AttentionStats)``."""
        stats = self._options["return_stats"]
        lse = self._options["return_lse"]
        packed = cu_seqlens_q is not None
        if self._empty:  # as parallax_prefill answers it
            out = out if out is not None else _empty_like_q(q)
            if q.numel() != 0:
                out = _zeros(q, out)
            if lse:
                return out, _alloc_stats(q, packed, no_keys=True)
            return (out, *_stats_buffers(q, packed, no_keys=True)) if stats else out
        key = None
        try:
            key = (_sig(q), _sig(r), _sig(k), _sig(v), _sig(out), _sig(cu_seqlens_q), _sig(cu_seqlens_k),
                   _sig(block_table), _sig(seqused_k))
            entry = self._runs().get(key)
        except (AttributeError, TypeError):  # not torch tensors: the checked way
            key = entry = None
        if entry is not None:
            self._run_handle()  # refuses a closed plan
            return _run_prefill(entry, q, r, k, v, out, cu_seqlens_q, cu_seqlens_k, block_table, seqused_k, stats,
                                lse, packed)
        options = {n: value for n, value in self._options.items() if n not in ("return_stats", "return_lse")}
        a, device = _prefill_prepare(q, r, k, v, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k, out=out,
                                     block_table=block_table, seqused_k=seqused_k, **options)
        if device != self._device:
            raise _invalid(f"q: on cuda:{device}, but the plan was made on cuda:{self._device}")
        if out is None:
            out = _empty_like_q(q)
            a.out = _describe(out, "out")
        buffers = None
        if stats:
            buffers = _stats_buffers(q, packed)
            a.lse = _describe(buffers[0], "lse", _STATS_DTYPES)
            a.tbar = _describe(buffers[1], "tbar", _STATS_DTYPES)
        if lse:
            buffers = _alloc_stats(q, packed)
            _describe_stats(a, buffers)
        if key is None:
            self._launch(a)
        else:
            entry = self._remember(key, a, device, _PREFILL_FIELDS, q,
                                   _stats_shape(q, packed) if (stats or lse) else None)
            entry.launch((q, r, k, v, out, cu_seqlens_q, cu_seqlens_k, block_table, seqused_k)
                         + (() if buffers is None else tuple(buffers)[:3]))
        if lse:
            return out, buffers
        return (out, *buffers) if stats else out


def plan_prefill(q, r, k, v, qk_scale=None, *, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=None,
                 max_seqlen_k=None, window=0, window_size=None, affine="plain", eps=1e-6, variant=None, out=None,
                 return_stats=False, block_table=None, seqused_k=None, return_lse=False,
                 causal=True) -> PrefillPlan:
    """A :class:`PrefillPlan` for these arguments (those of :func:`parallax_prefill`); runs
    take the tensors only, the plan's ``max_seqlen_*`` (computed here when not given),
    ``causal``, ``return_stats`` and ``return_lse`` apply to each."""
    if return_stats and return_lse:
        raise ValueError("return_stats and return_lse: ask for one (return_lse's stats include lse and tbar)")
    options = dict(qk_scale=qk_scale, max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k, window=window,
                   window_size=window_size, affine=affine, eps=eps, variant=variant, return_stats=return_stats,
                   return_lse=return_lse, causal=causal)
    if q.numel() == 0 or (block_table is None and k.numel() == 0):
        return _empty_plan(PrefillPlan, _cuda_device([("q", q), ("k", k), ("out", out)]), options)
    a, device = _prefill_prepare(q, r, k, v, qk_scale, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                                 window, window_size, affine, eps, variant, out, block_table, seqused_k, causal,
                                 stats=return_lse)
    # The lengths as planned (computed from cu_seqlens when not given), so runs never sync.
    options.update(max_seqlen_q=a.max_seqlen_q if a.max_seqlen_q >= 0 else None,
                   max_seqlen_k=a.max_seqlen_k if a.max_seqlen_k >= 0 else None)
    if return_stats:
        _stats_placeholders(a, q, cu_seqlens_q is not None)
    return _make_plan(PrefillPlan, a, device, options)


if sys.modules.get("torch") is not None:  # torch came first: register the ops now, so compiling finds them
    _bind_torch()
