"""Causal attention forward + backward in ONE process on one GPU (issue #15's benchmark): ours
(parallax_tuner.parallax_prefill with autograd), the Parallax authors' Triton `parallax_func`,
and torch SDPA flash / cuDNN softmax attention. bf16, causal; each timed with CUDA events around
forward + backward of sum(out * dout) (the gradients of q, r, k, v), median of --reps after
--warmup runs (the authors' kernels autotune on their first calls). Every column's gradients
are also compared with ours (relative Frobenius error), so a fast but wrong column shows.

Usage: PARALLAX_LIBRARY=path/libparallax.so python3 bench/backward_bench.py
           [--out FILE.json] [--anchors PATH] [--shapes all|quick] [--only I,J] [--reps N] [--warmup N]
           [--columns C,..] [--prewarm [--prewarm-procs N] [--prewarm-timeout-s S]]

--prewarm compiles the authors' autotune configs for the selected shapes first, in parallel
processes (bench/authors_prewarm.py), into TRITON_CACHE_DIR (default /tmp/plx-triton-cache,
set here when unset), so that their autotuning in this process only benchmarks.
"""
import argparse
import json
import os
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "python"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import median_ms  # noqa: E402 (bench/ is on sys.path; torch is imported in main, after the arguments)
from authors_prewarm import DEFAULT_ANCHORS, default_procs, triton_cache_dir  # noqa: E402 (imports no torch)

# (B, Hq, Hkv, L, D): the table, GQA 32/8 and D 64.
SHAPES = [(4, 16, 16, 4096, 128), (1, 16, 16, 16384, 128), (4, 32, 8, 4096, 128), (4, 16, 16, 4096, 64)]


def select_shapes(which="all", only=None):
    """[(index, shape)] of SHAPES: `only` (comma-separated indices) else all or the first."""
    if only:
        idx = [int(i) for i in only.split(",")]
        bad = [i for i in idx if not 0 <= i < len(SHAPES)]
        if bad:
            raise SystemExit(f"--only {only}: indices must be 0-{len(SHAPES) - 1}")
        return [(i, SHAPES[i]) for i in idx]
    return list(enumerate(SHAPES if which == "all" else SHAPES[:1]))


def fwd_bwd_ms(fn, inputs, dout, reps, warmup):
    """Median ms of fn(*inputs) forward + backward; returns (ms, grads of the last run)."""
    def once():
        for t in inputs:
            t.grad = None
        out = fn(*inputs)
        out.backward(dout)
    return median_ms(once, reps, warmup), [t.grad for t in inputs]


def rel(a, b):
    if a is None or b is None:
        return None
    return float((a.float() - b.float()).norm() / b.float().norm())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--anchors", default=DEFAULT_ANCHORS)
    ap.add_argument("--shapes", choices=("all", "quick"), default="all")
    ap.add_argument("--only", default=None,
                    help="comma-separated indices into the shape list (0-3), e.g. 2,3 for GQA and D 64")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--columns", default="ours,authors,sdpa_flash,sdpa_cudnn",
                    help="comma-separated subset (the authors' first calls autotune for minutes)")
    ap.add_argument("--prewarm", action="store_true",
                    help="with the authors' column: compile their autotune configs for the selected "
                         "shapes in parallel processes first (bench/authors_prewarm.py)")
    ap.add_argument("--prewarm-procs", type=int, default=default_procs())
    ap.add_argument("--prewarm-timeout-s", type=float, default=300,
                    help="the prewarm stops after this; what it did not compile compiles in this process")
    args = ap.parse_args()
    # Before torch and triton are imported: the prewarm's workers and this process share it.
    cache_dir = triton_cache_dir()
    print(f"TRITON_CACHE_DIR={cache_dir}", flush=True)
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    import parallax_tuner as plx
    from parallax_tuner.compat import parallax_func
    from prefill_anchors import err, load_authors
    columns = set(args.columns.split(","))
    shapes = select_shapes(args.shapes, args.only)
    prewarm_summary = None
    if "authors" in columns and args.prewarm:
        from authors_prewarm import prewarm
        try:
            prewarm_summary = prewarm(shapes, args.anchors, args.prewarm_procs, args.prewarm_timeout_s)
        except Exception as e:  # noqa: BLE001  (the column still runs, compiling as it goes)
            prewarm_summary = {"error": err(e)}
            print("authors' prewarm failed:", err(e), flush=True)
    torch.manual_seed(0)
    authors = None
    if "authors" in columns:
        try:
            authors = load_authors(args.anchors)[0].parallax_func
        except Exception as e:  # noqa: BLE001
            print("authors' package unavailable:", err(e), flush=True)
    rows = []
    for _, (b, hq, hkv, length, d) in shapes:
        t0 = time.time()
        row = {"B": b, "Hq": hq, "Hkv": hkv, "L": length, "D": d}
        mk = lambda h, s=1.0: (torch.randn(b, h, length, d, device="cuda", dtype=torch.bfloat16) * s).requires_grad_()
        q, r, k, v = mk(hq), mk(hq, 0.1), mk(hkv), mk(hkv)  # the authors' layout [B, H, L, D]
        dout = torch.randn(b, hq, length, d, device="cuda", dtype=torch.bfloat16)
        cols = {"ours": lambda q, r, k, v: parallax_func(q, r, k, v)} if "ours" in columns else {}
        if authors is not None:
            cols["authors"] = lambda q, r, k, v: authors(q, r, k, v)
        grads = {}
        for name, fn in cols.items():
            print(f"  {name} B={b} Hq={hq} Hkv={hkv} L={length} D={d} ...", flush=True)
            try:
                row[name + "_ms"], grads[name] = fwd_bwd_ms(fn, (q, r, k, v), dout, args.reps, args.warmup)
            except Exception as e:  # noqa: BLE001
                row[name + "_ms"], row[name + "_error"] = None, err(e)
                torch.cuda.synchronize()
        if "ours" in grads and "authors" in grads:
            row["authors_vs_ours_rel"] = [rel(a, o) for a, o in zip(grads["authors"], grads["ours"])]
        for name, backend in (("sdpa_flash", SDPBackend.FLASH_ATTENTION), ("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION)):
            if name not in columns:
                continue
            try:
                with sdpa_kernel(backend):
                    row[name + "_ms"], _ = fwd_bwd_ms(
                        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=hq != hkv),
                        (q, k, v), dout, args.reps, args.warmup)
            except Exception as e:  # noqa: BLE001
                row[name + "_ms"], row[name + "_error"] = None, err(e)
                torch.cuda.synchronize()
        if row.get("ours_ms") and row.get("authors_ms"):
            row["speedup_vs_authors"] = round(row["authors_ms"] / row["ours_ms"], 3)
        if row.get("ours_ms") and row.get("sdpa_cudnn_ms"):
            row["ours_over_cudnn"] = round(row["ours_ms"] / row["sdpa_cudnn_ms"], 3)
        row["wall_s"] = round(time.time() - t0, 1)
        print(json.dumps(row), flush=True)
        rows.append(row)
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "parallax": plx.library_version(),
            "date": time.strftime("%Y-%m-%d"), "what": "causal fwd+bwd, bf16, events, median", "reps": args.reps,
            "triton_cache_dir": cache_dir}
    try:
        import triton
        meta["triton"] = triton.__version__
    except Exception as e:  # noqa: BLE001
        meta["triton"] = f"unavailable: {err(e)}"
    if prewarm_summary is not None:
        meta["authors_prewarm"] = prewarm_summary
    print("\n| B, Hq/Hkv, L, D | ours ms | authors ms | SDPA flash ms | SDPA cuDNN ms | vs authors | / cuDNN |")
    print("|---|---|---|---|---|---|---|")
    for x in rows:
        f = lambda key: f"{x[key]:.2f}" if x.get(key) else "-"
        print(f"| {x['B']}, {x['Hq']}/{x['Hkv']}, {x['L']}, {x['D']} | {f('ours_ms')} | {f('authors_ms')} | "
              f"{f('sdpa_flash_ms')} | {f('sdpa_cudnn_ms')} | {x.get('speedup_vs_authors', '-')} | "
              f"{x.get('ours_over_cudnn', '-')} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"meta": meta, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
