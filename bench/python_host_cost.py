"""Host time of one eager call from Python: ours against torch SDPA, in one process.

Each variant runs in loops of --calls calls, synchronized between loops (untimed) and short
enough that the launch queue never fills, so a loop's wall time is the host's even where the
GPU is slower than the launches; median over --trials loops after a warm-up. Then the pieces of our fast path, each timed the same way, so
the total can be accounted for.

Usage: PARALLAX_LIBRARY=.../libparallax.so python3 bench/python_host_cost.py [--out FILE.json]
Run it with and without the C++ fast path (PARALLAX_TORCH_EXT=0) and the eager one-launch twin
(PARALLAX_EAGER_ONE_LAUNCH=0) to compare; the JSON records which were on.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "python"))
import parallax_tuner as plx  # noqa: E402
from parallax_tuner import _fast  # noqa: E402
from parallax_tuner.compat import parallax_decode as compat_decode  # noqa: E402


def per_call_us(fn, calls, trials):
    for _ in range(50):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(trials):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        times.append((t1 - t0) / calls * 1e6)
    return {"median_us": statistics.median(times), "min_us": min(times), "max_us": max(times)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--trials", type=int, default=41)
    args = ap.parse_args()
    torch.manual_seed(0)
    dt = torch.bfloat16
    b, lk, hq, hkv, d = 1, 1024, 32, 8, 128
    q = torch.randn(b, 1, hq, d, dtype=dt, device="cuda")
    r = torch.randn_like(q)
    k = torch.randn(b, lk, hkv, d, dtype=dt, device="cuda")
    v = torch.randn_like(k)
    out = torch.empty_like(q)
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, L, D] views
    kr, vr = kt.repeat_interleave(hq // hkv, 1).contiguous(), vt.repeat_interleave(hq // hkv, 1).contiguous()
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "parallax": plx.library_version(),
           "shape": {"B": b, "L": lk, "hq": hq, "hkv": hkv, "d": d, "dtype": "bf16"},
           "calls": args.calls, "trials": args.trials, "variants": {}, "pieces": {}}
    V = res["variants"]
    V["ours parallax_decode"] = per_call_us(lambda: plx.parallax_decode(q, r, k, v), args.calls, args.trials)
    res["cpp_fast_path"] = _fast.ext[0] is not None
    res["eager_one_launch"] = os.environ.get("PARALLAX_EAGER_ONE_LAUNCH", "1") != "0"
    V["ours parallax_decode out="] = per_call_us(lambda: plx.parallax_decode(q, r, k, v, out=out), args.calls,
                                                 args.trials)
    V["ours softmax (r=None)"] = per_call_us(lambda: plx.parallax_decode(q, None, k, v), args.calls, args.trials)
    V["ours compat (authors' call shape)"] = per_call_us(lambda: compat_decode(q, r, k, v), args.calls, args.trials)
    unset = plx._lib.WINDOW_SIZE_UNSET
    V["torch.ops.parallax_tuner.decode (dispatcher)"] = per_call_us(
        lambda: torch.ops.parallax_tuner.decode(q, r, k, v, None, None, -1.0, 0, unset, unset, "plain", 1e-6, "", 0,
                                                -1), args.calls, 9)
    ws = torch.empty(plx.decode_workspace_size(q, r, k, v), dtype=torch.uint8, device="cuda")
    V["ours checked way (workspace=, no cache)"] = per_call_us(
        lambda: plx.parallax_decode(q, r, k, v, workspace=ws), args.calls, 9)
    with plx.plan_decode(q, r, k, v) as plan:
        V["ours DecodePlan.run out="] = per_call_us(lambda: plan.run(q, r, k, v, out=out), args.calls, args.trials)
    shape = tuple(q.shape)
    V["ours parallax_decode out=q.new_empty()"] = per_call_us(
        lambda: plx.parallax_decode(q, r, k, v, out=q.new_empty(shape)), args.calls, args.trials)
    V["q.new_empty() alone"] = per_call_us(lambda: q.new_empty(shape), args.calls, args.trials)
    # One launch instead of split + merge: the fused merge (last CTA merges) and no split.
    default = plx.decode_plan(q, r, k, v)
    res["default_variant"] = default.variant + f" (splits {default.num_splits})"
    fused = default.variant + "-fused" if default.num_splits > 1 else default.variant
    V["ours fused-merge variant out="] = per_call_us(lambda: plx.parallax_decode(q, r, k, v, out=out, variant=fused),
                                                    args.calls, args.trials)
    V["ours fused-merge variant"] = per_call_us(lambda: plx.parallax_decode(q, r, k, v, variant=fused), args.calls,
                                               args.trials)
    V["ours num_splits=1 out="] = per_call_us(lambda: plx.parallax_decode(q, r, k, v, out=out, num_splits=1),
                                             args.calls, args.trials)
    # GPU time per call (events around back-to-back calls): is a loop host- or GPU-bound?
    G = res["gpu_us"] = {}
    for name, fn in (("default", lambda: plx.parallax_decode(q, r, k, v, out=out)),
                     ("fused", lambda: plx.parallax_decode(q, r, k, v, out=out, variant=fused)),
                     ("num_splits=1", lambda: plx.parallax_decode(q, r, k, v, out=out, num_splits=1))):
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for _ in range(20):
                fn()
        g.replay()
        torch.cuda.synchronize()
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        ts = []
        for _ in range(9):
            e0.record()
            g.replay()
            e1.record()
            e1.synchronize()
            ts.append(e0.elapsed_time(e1) * 1000 / 20)
        G[name] = statistics.median(ts)
    for name, backend in (("flash", "FLASH_ATTENTION"), ("efficient", "EFFICIENT_ATTENTION"),
                          ("cudnn", "CUDNN_ATTENTION"), ("math", "MATH")):
        from torch.nn.attention import SDPBackend, sdpa_kernel
        try:
            with sdpa_kernel(getattr(SDPBackend, backend)):
                F.scaled_dot_product_attention(qt, kr, vr)
                V[f"sdpa {name}"] = per_call_us(lambda: F.scaled_dot_product_attention(qt, kr, vr), args.calls,
                                                args.trials)
        except Exception as e:  # noqa: BLE001
            V[f"sdpa {name}"] = {"error": str(e).splitlines()[0][:200]}
    V["sdpa default (GQA, enable_gqa)"] = per_call_us(
        lambda: F.scaled_dot_product_attention(qt, kt, vt, enable_gqa=True), args.calls, args.trials)

    # Pieces of the fast path.
    P = res["pieces"]
    entry = next(iter(_fast.cache().values()))
    n = 20000
    raw = _fast._torch[0][1]

    def loop(fn):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n * 1e6
    P["call + signature (7 tensors, options)"] = loop(
        lambda: ("decode", q.shape, q.stride(), q.dtype, q.get_device(), _fast.sig(r), k.shape, k.stride(), k.dtype,
                 k.get_device(), v.shape, v.stride(), v.dtype, v.get_device(), _fast.sig(None), _fast.sig(None),
                 _fast.sig(None), None, 0, None, "plain", 1e-6, None, 0, None, False))
    key = next(iter(_fast.cache().keys()))
    P["cache lookup"] = loop(lambda: _fast.cache().get(key))
    P["q.new_empty(shape)"] = loop(lambda: q.new_empty(entry.out_shape))
    P["torch.empty_like(q)"] = loop(lambda: torch.empty_like(q))
    P["raw stream"] = loop(lambda: raw(0))
    P["torch.cuda.current_stream().cuda_stream"] = loop(lambda: torch.cuda.current_stream(0).cuda_stream)
    P["5 data_ptr()"] = loop(lambda: (q.data_ptr(), r.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr()))
    P["torch.compiler.is_compiling()"] = loop(torch.compiler.is_compiling)
    if _fast.ext[0] is not None:
        x, opts = _fast.ext[0], ("decode", None, 0, None, "plain", 1e-6, None, 0, None)
        torch.cuda.synchronize()
        P["C++ ext.run alone (signature, lookup, out, plan run, launch)"] = per_call_us(
            lambda: x.run(opts, q, r, k, v, None, None, None), args.calls, args.trials)["median_us"]
    torch.cuda.synchronize()
    P["Entry.launch (pointers + C plan run + launch)"] = per_call_us(
        lambda: entry.launch((q, r, k, v, out, None, None)), args.calls, args.trials)["median_us"]
    print(json.dumps(res, indent=1))
    print("\n| call | host us/call (median) |\n|---|---|")
    for name, row in V.items():
        print(f"| {name} | {row.get('median_us', float('nan')):.2f} |" if "median_us" in row else
              f"| {name} | {row['error']} |")
    for name, us in P.items():
        print(f"| piece: {name} | {us:.2f} |")
    for name, us in res["gpu_us"].items():
        print(f"| GPU time per call (graph replay): {name} | {us:.2f} |")
    print("default variant:", res["default_variant"], "| C++ fast path:", res["cpp_fast_path"],
          "| eager one-launch twin:", res["eager_one_launch"])
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
