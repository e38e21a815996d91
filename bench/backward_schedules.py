"""Backward kernels alone, schedule by schedule (issue #15): for each shape, the forward runs
once (saving out, lse, tbar, vbar), then plx_prefill_backward is timed for every "bwd-..." key
of the family's candidates that the library accepts, next to the SDPA cuDNN / flash softmax
backward on the same q, k, v. bf16, causal, CUDA events, median of --reps after --warmup.
Achieved TFLOP/s count the backward's 8 products per (row, key) pair (docs/backward.md).

Usage: PARALLAX_LIBRARY=path/libparallax.so python3 bench/backward_schedules.py
           [--out FILE.json] [--shapes all|quick|d256] [--keys KEY,...] [--reps N]
"""
import argparse
import json
import os
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "python"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import median_ms as timed  # noqa: E402 (bench/ is on sys.path; torch is imported in main)

SHAPES = [(4, 16, 16, 4096, 128), (1, 16, 16, 16384, 128), (4, 32, 8, 4096, 128), (4, 16, 16, 4096, 64)]
SHAPE_SETS = {"all": SHAPES, "quick": SHAPES[:1], "d256": [(4, 16, 16, 4096, 256)]}


def schedules(d, stages):
    out = []
    for s in stages:
        for red in ("", "-bulk"):
            for w in (2, 4, 8):
                for m in (16, 32, 64):
                    n = 16 * w // (2 if d >= 256 else 1)
                    out.append(f"mma-m{m}-n{n}-w{w}-s{s}{red}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--shapes", choices=tuple(SHAPE_SETS), default="all")
    ap.add_argument("--stages", default="1,2", help="pipeline stages to try (comma-separated)")
    ap.add_argument("--keys", default=None, help="schedule suffixes to time instead of the sweep")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    import parallax_tuner as plx
    from parallax_tuner import autograd as ag
    from parallax_tuner._lib import WINDOW_SIZE_UNSET as U
    torch.manual_seed(0)
    rows = []
    best = {}  # head dim -> the fastest schedules of the first shape with that head dim
    for b, hq, hkv, length, d in SHAPE_SETS[args.shapes]:
        mk = lambda h, s=1.0: torch.randn(b, length, h, d, device="cuda", dtype=torch.bfloat16) * s
        q, r, k, v = mk(hq), mk(hq, 0.1), mk(hkv), mk(hkv)
        dout = torch.randn_like(q)
        tau = d ** -0.5
        out, lse, tbar, vbar = torch.ops.parallax_tuner.prefill_lse(q, r, k, v, None, None, -1, -1, tau, 0, U, U,
                                                                   "plain", 1e-6, "", True)
        ws = torch.empty(1 << 31, dtype=torch.uint8, device="cuda")
        flops = 8 * 2 * d * b * hq * length * (length + 1) / 2
        head = f"bwd-bf16-d{d}-h{hq}x{hkv}-contig-nowin.learned-plain."
        if args.keys:
            keys = args.keys.split(",")
        elif d in best:  # a later shape of a head dim already swept: its 3 fastest, and det
            keys = best[d]
        else:
            keys = schedules(d, [int(x) for x in args.stages.split(",")])
        first_row = len(rows)
        ref = None
        for sk in keys:
            row = {"B": b, "Hq": hq, "Hkv": hkv, "L": length, "D": d, "key": head + sk}
            run = lambda: ag._bwd_kernel(dout, q, r, k, v, out, lse, tbar, vbar, None, None, -1, -1, tau, 0, True,
                                         "plain", 1e-6, variant=head + sk, workspace=ws)
            try:
                g = run()
                torch.cuda.synchronize()
                if ref is None:
                    ref = [x.float() for x in g]
                row["rel_vs_first"] = [float((x.float() - y).norm() / y.norm()) for x, y in zip(g, ref)]
                row["ms"] = timed(run, args.reps, args.warmup)
                row["tflops"] = round(flops / row["ms"] / 1e9, 1)
            except Exception as e:  # noqa: BLE001  (a schedule the library refuses)
                row["error"] = str(e).splitlines()[0][:160]
                torch.cuda.synchronize()
            print(json.dumps(row), flush=True)
            rows.append(row)
        if d not in best and not args.keys:
            timed_rows = sorted((x for x in rows[first_row:] if "ms" in x), key=lambda x: x["ms"])
            best[d] = [x["key"].split(".")[-1] for x in timed_rows[:3]]
            if best[d] and "det" not in best[d][0]:
                best[d].append(best[d][0].replace("-bulk", "") + "-det")
        qt, kt, vt = (x.transpose(1, 2).detach().requires_grad_() for x in (q, k, v))
        for name, be in (("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION), ("sdpa_flash", SDPBackend.FLASH_ATTENTION)):
            try:
                with sdpa_kernel(be):
                    o = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=hq != hkv)
                    dt = dout.transpose(1, 2)
                    ms = timed(lambda: torch.autograd.grad(o, (qt, kt, vt), dt, retain_graph=True), args.reps,
                               args.warmup)
                rows.append({"B": b, "Hq": hq, "Hkv": hkv, "L": length, "D": d, "key": name + "_bwd", "ms": ms,
                             "tflops_softmax": round(5 / 8 * flops / ms / 1e9, 1)})
                print(json.dumps(rows[-1]), flush=True)
            except Exception as e:  # noqa: BLE001
                print(name, "failed:", str(e).splitlines()[0][:160], flush=True)
        del ws
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "parallax": plx.library_version(),
            "date": time.strftime("%Y-%m-%d"), "what": "backward kernels alone, bf16 causal, events, median",
            "reps": args.reps}
    print("\n| B, Hq/Hkv, L, D | schedule | ms | TFLOP/s |")
    print("|---|---|---|---|")
    for x in rows:
        if "ms" in x:
            print(f"| {x['B']}, {x['Hq']}/{x['Hkv']}, {x['L']}, {x['D']} | {x['key'].split('.')[-1]} | "
                  f"{x['ms']:.2f} | {x.get('tflops', x.get('tflops_softmax'))} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"meta": meta, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
