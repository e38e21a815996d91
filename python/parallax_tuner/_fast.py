"""The eager fast path: a call that repeats an earlier call's signature runs its plan.

A signature is everything but the data: each tensor's shape, strides, dtype and device, and
the options. The first call of a signature goes the checked way (describe every tensor,
validate, create a plan with plx_*_plan_create) and keeps the argument struct and the plan;
a later call with the same signature writes the new data pointers into that struct and calls
plx_*_plan_run, which checks the arguments again in C (so nothing unchecked is launched).
That removes what made an eager call cost ~70 us of host time: building descriptors field by
field through ctypes, the library's plan lookup, torch.cuda.current_stream().

Caches are per thread (a struct is written before each run), bounded, and dropped when
configure() changes the contexts. Calls with a caller workspace, value-dependent lengths
(cu_seqlens without max_seqlen_*) or empty tensors always take the checked way.
"""

from __future__ import annotations

import ctypes
import threading
import weakref

from . import _lib

MAX_ENTRIES = 256  # per thread; a step of a serving engine uses a handful

_tls = threading.local()
_torch = [None]  # (torch, raw-stream getter), set by bind_torch()


ext = [None]  # the C++ fast path (torch_ext, csrc/fast_ext.cpp) when built for this torch


def bind_torch(torch) -> None:
    """Called by the checked path (which has imported torch)."""
    if _torch[0] is None:
        raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
        if raw is None:  # older torch: the documented way, slower
            def raw(device, _cs=torch.cuda.current_stream):
                return _cs(device).cuda_stream
        from . import torch_ext
        ext[0] = torch_ext.load(torch)
        _torch[0] = (torch, raw)


def invalidate() -> None:
    """Forget every thread's plans (their contexts were retired by configure())."""
    with _caches_lock:
        if ext[0] is not None:
            ext[0].clear()  # its records borrow the entries about to go
        for c in list(_caches):
            c.clear()


class _Cache(dict):
    """A thread's signature -> Entry map (a dict subclass, so the registry can hold it weakly).
    Compared and hashed by identity: two threads' caches are never the same cache."""

    __hash__ = object.__hash__
    __eq__ = object.__eq__


_caches = weakref.WeakSet()  # every live thread's cache, so invalidate() reaches them all
_caches_lock = threading.Lock()


def cache() -> dict:
    try:
        return _tls.c
    except AttributeError:
        c = _tls.c = _Cache()
        with _caches_lock:
            _caches.add(c)  # dropped with its thread: the thread-local holds the only reference
        return c


def sig(t):
    """The part of a tensor's description a plan depends on (None: absent)."""
    if t is None:
        return None
    return (t.shape, t.stride(), t.dtype, t.get_device())


class Entry:
    """A validated argument struct and its plan; run() launches over new tensors of the same
    signature. `fields` name the struct's tensors in the order run() receives them."""

    __slots__ = ("kind", "args", "addr", "slots", "offsets", "plan", "ctx", "ctx_handle", "device", "out_shape",
                 "stats_shape", "destroy", "contiguous", "__weakref__")

    def __init__(self, kind, args, plan, ctx, device, fields, out_shape, stats_shape, owns=True):
        self.kind = kind
        self.args = args
        self.addr = ctypes.addressof(args)
        base = type(args)
        # One pointer view per given tensor, so a run rewrites data pointers only.
        self.offsets = {f: getattr(base, f).offset for f in fields if getattr(args, f).data}
        self.slots = tuple(None if f not in self.offsets else ctypes.c_void_p.from_buffer(args, self.offsets[f])
                           for f in fields)
        self.plan = plan
        self.ctx = ctx  # kept alive while the plan may run
        self.ctx_handle = ctx.handle
        self.device = device
        self.out_shape = out_shape
        self.stats_shape = stats_shape
        self.contiguous = True  # q contiguous: out = torch.empty_like(q) (its signature fixes q's strides)
        # A DecodePlan / PrefillPlan's runs borrow its handle; the plan frees it.
        self.destroy = getattr(_lib.lib(), f"plx_{kind}_plan_destroy") if owns else None

    def launch(self, tensors):
        for slot, t in zip(self.slots, tensors):
            if slot is not None:
                slot.value = t.data_ptr()
        status = _lib.plan_run_raw[self.kind](self.ctx_handle, self.plan, self.addr, _torch[0][1](self.device))
        if status:
            _lib.check(status)

    def __del__(self):
        try:
            if self.plan and self.destroy is not None:
                self.destroy(self.plan)
                self.plan = None
        except Exception:  # interpreter shutdown
            pass


def make(kind, args, ctx, device, fields, out_shape, stats_shape):
    """A plan for the checked arguments `args` (every tensor described, outputs included)."""
    L = _lib.lib()
    handle = ctypes.c_void_p()
    _lib.check(getattr(L, f"plx_{kind}_plan_create")(ctx.handle, ctypes.byref(args), ctypes.byref(handle)))
    return Entry(kind, args, handle.value, ctx, device, fields, out_shape, stats_shape)


def alloc_out(entry, q):
    """out for a run: like q, contiguous (what the entry's struct describes)."""
    return q.new_empty(entry.out_shape) if not entry.contiguous else _torch[0][0].empty_like(q)


def remember(key, entry) -> None:
    c = cache()
    if len(c) >= MAX_ENTRIES:
        if ext[0] is not None:
            ext[0].clear_thread()  # its records borrow these entries
        c.clear()  # a workload with this many signatures is not served from here anyway
    c[key] = entry


_run_addr = {}


def ext_remember(opts, tensors, names, entry) -> None:
    """Hands a cached entry to the C++ fast path: a later ext.run(opts, *tensors) with the
    same signature runs it. `names`: the struct field of each position of `tensors` (the last
    is out, None when run() should allocate it). The entry must stay in this thread's cache."""
    x = ext[0]
    if x is None or entry.destroy is None:
        return
    if entry.kind not in _run_addr:
        _run_addr[entry.kind] = ctypes.cast(_lib.plan_run_raw[entry.kind], ctypes.c_void_p).value
    x.remember(opts, tensors, entry.addr, tuple(entry.offsets.get(n, -1) for n in names), entry.plan,
               entry.ctx_handle, _run_addr[entry.kind], entry.device, 1 if entry.contiguous else 2, entry.out_shape)
