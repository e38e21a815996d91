"""Causal prefill (forward) in ONE process on one GPU: ours (the runtime's default choice, and
forced onto the portable mma.sync family by an explicit key), the Parallax authors' Triton
forward, and torch SDPA flash / cuDNN softmax attention. bf16, q/r/k/v [B, L, H, D].
CUDA-graph replay timed with events (bench/graph_timing.py: median of 7 trials of --reps replays).

Usage: PARALLAX_LIBRARY=path/libparallax.so python3 bench/prefill_anchors.py
           [--out FILE.jsonl] [--anchors PATH] [--shapes all|quick] [--reps N] [--budget-s S]
           [--precompile-procs N]

Ours imports as `parallax_tuner` (python/ on sys.path), the authors' as `parallax`: theirs is
imported with their folder first on sys.path and taken out of sys.modules again afterwards, so
nothing else named `parallax` is picked up by later imports.

The authors' forward autotunes 36 configs on its first call per (L, D, n_rep); their compilation
is done up front in --precompile-procs spawned processes (Triton's disk cache), the benchmarking
of every config at the real shape stays in this process, outside the timed region.

Effective TFLOP/s: Parallax 8*D FLOPs per visible (query, key) pair per query head, softmax 4*D;
causal with Q == L has L*(L+1)/2 visible pairs per head.
"""
import argparse
import importlib
import json
import math
import os
import sys
import time
import types

import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "python"))
import parallax_tuner as plx  # noqa: E402  (ours)

from graph_timing import BACKENDS, graph_time as _graph_time  # noqa: E402 (bench/ is on sys.path)

try:
    import triton
    TRITON_VERSION = triton.__version__
except Exception as e:  # noqa: BLE001
    TRITON_VERSION = f"unavailable: {e}"

# (B, Hq, Hkv, L, D). The first four are the geometric-mean set.
SHAPES = [
    (4, 16, 16, 4096, 128),
    (2, 16, 16, 8192, 128),
    (1, 16, 16, 16384, 128),
    (8, 32, 32, 2048, 128),
    (4, 32, 8, 4096, 128),
    (1, 32, 8, 16384, 128),
    (4, 16, 16, 4096, 64),
    (4, 16, 16, 4096, 256),
]
GEOMEAN_SHAPES = 4
SDPA_COLUMNS = ("flash", "cudnn")


def err(e):
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:240]


def graph_time(fn, reps):
    return round(_graph_time(fn, reps), 2)


def sync_quietly():
    try:
        torch.cuda.synchronize()
    except Exception:  # noqa: BLE001  (a sticky CUDA error shows in the next column's error)
        pass


def timed(row, col, fn, flops, reps):
    """Times fn into row[col_us], row[col_tflops]; on failure records row[col_error]."""
    try:
        us = graph_time(fn, reps)
        row[col + "_us"] = us
        row[col + "_tflops"] = round(flops / (us * 1e-6) / 1e12, 1)
    except Exception as e:  # noqa: BLE001
        row[col + "_us"] = None
        row[col + "_tflops"] = None
        row[col + "_error"] = err(e)
        sync_quietly()


def rel_fro(x, ref):
    """||x - ref|| / ||ref|| in float32 (None when either is missing)."""
    if x is None or ref is None:
        return None
    a, b = x.float(), ref.float()
    return float((a - b).norm() / b.norm())


def mma_key(d, hq, hkv, learned):
    # Mirrors prefill::Family::Default() in codegen/families/prefill/schedule.cc (the mma.sync
    # family's default schedule): 8 warps at D >= 256 else 4; 64-key tiles two stages deep;
    # block_m = warps x UnitsPerMTile (8 query units per MMA row tile with a learned probe, 16
    # without), doubled (two row tiles per warp) at D <= 64, or D <= 128 with a learned probe.
    # Keep in step with that function if it changes.
    w = 8 if d >= 256 else 4
    units = 8 if learned else 16
    two_tiles = d <= 64 or (learned and d <= 128)
    m = w * units * (2 if two_tiles else 1)
    algo = "learned-plain" if learned else "none-plain"
    return f"prefill-bf16-d{d}-h{hq}x{hkv}-contig-nowin.{algo}.mma-m{m}-n64-w{w}-s2"


def load_authors(path):
    """The authors' parallax.triton.parallax_train module and package version, loaded while our
    `parallax` is stashed; our modules are back in sys.modules afterwards either way."""
    if not os.path.isdir(os.path.join(path, "parallax")):
        raise ImportError(f"no authors' package at {path}")
    ours = {n: m for n, m in sys.modules.items() if n == "parallax" or n.startswith("parallax.")}
    for n in ours:
        del sys.modules[n]
    sys.path.insert(0, path)
    try:
        try:
            train = importlib.import_module("parallax.triton.parallax_train")
            version = str(getattr(sys.modules["parallax"], "__version__", "?"))
        except Exception as e:  # noqa: BLE001
            # Their package __init__ also imports the varlen/decode/cute modules; if one of those
            # fails here, load the training module alone under bare package stubs.
            for n in [n for n in sys.modules if n == "parallax" or n.startswith("parallax.")]:
                del sys.modules[n]
            for name in ("parallax", "parallax.triton"):
                stub = types.ModuleType(name)
                stub.__path__ = [os.path.join(path, *name.split("."))]
                sys.modules[name] = stub
            train = importlib.import_module("parallax.triton.parallax_train")
            version = f"? (package __init__ failed: {err(e)})"
        where = os.path.abspath(getattr(train, "__file__", "") or "")
        if not where.startswith(os.path.abspath(path) + os.sep):
            raise ImportError(f"parallax.triton.parallax_train resolved to {where}, not the authors' copy")
    finally:
        for n in [n for n in sys.modules if n == "parallax" or n.startswith("parallax.")]:
            del sys.modules[n]
        sys.modules.update(ours)
        sys.path.remove(path)
    return train, version


_WORKER = {}


def _precompile_task(task):
    """Pool worker (spawned process): compiles one autotune config of the authors' forward for one
    (D, n_rep) on tiny tensors, filling Triton's on-disk cache. The specialisation matches the
    benchmark's (bf16, L and every stride a multiple of 16, unit inner strides), so the main
    process's autotuning then loads these binaries instead of compiling its 36 configs one by one.
    Only compilation is shared: the main process still benchmarks every config at the real shape."""
    anchors, d, n_rep, idx = task
    try:
        if "train" not in _WORKER:
            _WORKER["train"] = load_authors(anchors)[0]
            _WORKER["configs"] = list(_WORKER["train"]._fwd_kernel.configs)
        train = _WORKER["train"]
        train._fwd_kernel.configs = [_WORKER["configs"][idx]]  # one config: compile and run, no bench
        q = torch.randn(n_rep, 64, d, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(1, 64, d, device="cuda", dtype=torch.bfloat16)
        train.parallax_fwd(q, q, k, k, d ** -0.5, n_rep, -1)
        torch.cuda.synchronize()
        return None
    except Exception as e:  # noqa: BLE001  (e.g. out of shared memory: the main autotuner skips it too)
        return f"d{d} n_rep{n_rep} config {idx}: {err(e)}"


def precompile_authors(anchors, train, families, procs, timeout_s):
    """Compiles every (family, config) in `procs` spawned processes; returns a summary dict."""
    import multiprocessing
    tasks = [(anchors, d, n_rep, i) for d, n_rep in families for i in range(len(train._fwd_kernel.configs))]
    t = time.time()
    pool = multiprocessing.get_context("spawn").Pool(processes=max(1, min(procs, len(tasks))))
    try:
        failures = [x for x in pool.map_async(_precompile_task, tasks, chunksize=1).get(timeout=timeout_s) if x]
        pool.close()
        summary = {"tasks": len(tasks), "failed": len(failures), "first_failures": failures[:3]}
    except Exception as e:  # noqa: BLE001  (timeout: the main process compiles what is missing)
        pool.terminate()
        summary = {"tasks": len(tasks), "error": err(e)}
    pool.join()
    summary["seconds"] = round(time.time() - t, 1)
    summary["procs"] = max(1, min(procs, len(tasks)))
    return summary


def rms_norm(x):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype)


def ours_columns(row, q, r, k, v, out, flops, reps, learned, prefix):
    """Our default choice and the forced mma.sync key; returns both outputs (for the errors)."""
    b, l, hq, d = q.shape
    hkv = k.shape[2]
    rr = r if learned else None
    res = {}
    # 1. The runtime's default choice (qk_scale default = 1/sqrt(D), parallax.h).
    col = prefix
    try:
        plan = plx.prefill_plan(q, rr, k, v, out=out)
        row[col + "_variant"], row[col + "_choice"] = plan.variant, plan.choice
    except Exception as e:  # noqa: BLE001
        row[col + "_plan_error"] = err(e)
    timed(row, col, lambda: plx.parallax_prefill(q, rr, k, v, out=out), flops, reps)
    if row.get(col + "_us") is not None:
        try:
            o = torch.full_like(q, float("nan"))  # poisoned: unwritten elements show
            plx.parallax_prefill(q, rr, k, v, out=o)
            res[col] = o
        except Exception as e:  # noqa: BLE001
            row[col + "_out_error"] = err(e)
    # 2. Forced onto the portable mma.sync family.
    col = prefix + "_mma"
    key = mma_key(d, hq, hkv, learned)
    row[col + "_variant"] = key
    try:
        plan = plx.prefill_plan(q, rr, k, v, out=out, variant=key)
        row[col + "_variant"], row[col + "_choice"] = plan.variant, plan.choice
    except Exception as e:  # noqa: BLE001
        row[col + "_us"], row[col + "_tflops"] = None, None
        row[col + "_error"] = err(e)
        return res
    timed(row, col, lambda: plx.parallax_prefill(q, rr, k, v, out=out, variant=key), flops, reps)
    if row.get(col + "_us") is not None:
        try:
            o = torch.full_like(q, float("nan"))
            plx.parallax_prefill(q, rr, k, v, out=o, variant=key)
            res[col] = o
        except Exception as e:  # noqa: BLE001
            row[col + "_out_error"] = err(e)
    return res


def sdpa_columns(row, q, k, v, flops, reps):
    """SDPA flash / cuDNN, causal, on [B, H, L, D] transposed views. GQA: enable_gqa=True where
    the backend takes it, else k/v repeated to Hq heads outside the timed region; the mode used is
    row[<backend>_gqa]. Returns one SDPA output ([B, L, Hq, D]) for the softmax check."""
    hq, hkv = q.shape[2], k.shape[2]
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    modes = ["mha"] if hq == hkv else ["enable_gqa", "repeat_kv"]
    ref = None
    for name in SDPA_COLUMNS:
        be = BACKENDS[name]
        last = None
        for mode in modes:
            if mode == "repeat_kv":
                kk = k.repeat_interleave(hq // hkv, dim=2).transpose(1, 2)
                vv = v.repeat_interleave(hq // hkv, dim=2).transpose(1, 2)
                fn = lambda kk=kk, vv=vv: F.scaled_dot_product_attention(qt, kk, vv, is_causal=True)  # noqa: E731
            elif mode == "enable_gqa":
                fn = lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=True)  # noqa: E731
            else:
                fn = lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=True)  # noqa: E731
            try:
                with sdpa_kernel(be):
                    o = fn()  # eager trial: an unsupported backend/mode raises here, not in capture
                    torch.cuda.synchronize()
                    us = graph_time(fn, reps)
                row[name + "_us"] = us
                row[name + "_tflops"] = round(flops / (us * 1e-6) / 1e12, 1)
                row[name + "_gqa"] = mode
                row.pop(name + "_error", None)
                if ref is None:
                    ref = o.transpose(1, 2)
                break
            except Exception as e:  # noqa: BLE001
                last = f"{mode}: {err(e)}"
                sync_quietly()
        else:
            row[name + "_us"], row[name + "_tflops"] = None, None
            row[name + "_error"] = last
    return ref


def authors_column(row, train, q, r, k, v, flops, reps, scale):
    """The authors' Triton forward: q, r [B*Hq, L, D], k, v [B*Hkv, L, D] contiguous (copied
    before timing), n_rep = Hq/Hkv, window -1. Returns o as [B, L, Hq, D]."""
    b, l, hq, d = q.shape
    hkv = k.shape[2]
    n_rep = hq // hkv
    qa, ra = (x.transpose(1, 2).contiguous().view(b * hq, l, d) for x in (q, r))
    ka, va = (x.transpose(1, 2).contiguous().view(b * hkv, l, d) for x in (k, v))
    fwd = train.parallax_fwd
    fn = lambda: fwd(qa, ra, ka, va, scale, n_rep, -1)  # noqa: E731
    try:
        t = time.time()
        fn()  # first call per (L, D, n_rep) autotunes over 36 configs: outside the timed region
        torch.cuda.synchronize()
        row["authors_warmup_s"] = round(time.time() - t, 1)
        try:
            row["authors_config"] = str(train._fwd_kernel.best_config)
        except Exception:  # noqa: BLE001
            pass
    except Exception as e:  # noqa: BLE001
        row["authors_us"], row["authors_tflops"] = None, None
        row["authors_error"] = err(e)
        sync_quietly()
        return None
    timed(row, "authors", fn, flops, reps)
    try:
        o = fn()[0]
        return o.view(b, hq, l, d).transpose(1, 2)
    except Exception as e:  # noqa: BLE001
        row["authors_out_error"] = err(e)
        return None


def run_shape(shape, args, meta, authors, t0):
    b, hq, hkv, l, d = shape
    pairs = l * (l + 1) // 2
    plx_flops = 8 * d * pairs * b * hq
    sm_flops = 4 * d * pairs * b * hq
    row = {"kind": "prefill", "B": b, "Hq": hq, "Hkv": hkv, "L": l, "D": d, "causal": True, "dtype": "bf16",
           "parallax_flops": plx_flops, "softmax_flops": sm_flops, "reps": args.reps}
    row.update(meta)
    scale = 1.0 / math.sqrt(d)
    row["qk_scale"] = scale
    gen = torch.Generator(device="cuda").manual_seed(1234)
    rnd = lambda h: torch.randn(b, l, h, d, device="cuda", dtype=torch.bfloat16, generator=gen)  # noqa: E731
    q, r, k = rms_norm(rnd(hq)), rms_norm(rnd(hq)), rms_norm(rnd(hkv))
    v = rnd(hkv)
    out = torch.empty_like(q)

    outs = ours_columns(row, q, r, k, v, out, plx_flops, args.reps, True, "ours")
    outs.update(ours_columns(row, q, r, k, v, out, sm_flops, args.reps, False, "ours_softmax"))
    sdpa_ref = sdpa_columns(row, q, k, v, sm_flops, args.reps)
    row["rel_mma_vs_ours"] = rel_fro(outs.get("ours_mma"), outs.get("ours"))
    row["rel_softmax_vs_sdpa"] = rel_fro(outs.get("ours_softmax"), sdpa_ref)
    row["rel_softmax_mma_vs_sdpa"] = rel_fro(outs.get("ours_softmax_mma"), sdpa_ref)
    del sdpa_ref

    theirs = None
    if isinstance(authors, str):
        row["authors_us"], row["authors_tflops"], row["authors_error"] = None, None, authors
    elif time.time() - t0 > args.budget_s - 60:
        row["authors_us"], row["authors_tflops"] = None, None
        row["authors_error"] = f"skipped: past the time budget ({args.budget_s - 60} s) for autotuning"
    else:
        theirs = authors_column(row, authors, q, r, k, v, plx_flops, args.reps, scale)
    row["rel_vs_authors"] = rel_fro(outs.get("ours"), theirs)
    row["rel_mma_vs_authors"] = rel_fro(outs.get("ours_mma"), theirs)
    if row.get("authors_us") and row.get("ours_us"):
        row["ratio_authors_over_ours"] = round(row["authors_us"] / row["ours_us"], 3)
    row["elapsed_s"] = round(time.time() - t0, 1)
    del q, r, k, v, out, outs, theirs
    torch.cuda.empty_cache()
    return row


def fmt(row, col):
    us = row.get(col + "_us")
    if us is None:
        return f"{'err' if row.get(col + '_error') else '-':>14}"
    return f"{us:>8.0f}/{row[col + '_tflops']:>4.0f}T"


def fmt_rel(x):
    return "-" if x is None else f"{x:.1e}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="prefill_anchors.jsonl")
    ap.add_argument("--anchors", default=".carry/anchors/authors-parallax",
                    help="the authors' package folder (relative paths: to the repo root)")
    ap.add_argument("--shapes", choices=("all", "quick"), default="all")
    ap.add_argument("--reps", type=int, default=5, help="graph replays per timing sample")
    ap.add_argument("--precompile-procs", type=int, default=min(16, os.cpu_count() or 1),
                    help="processes compiling the authors' autotune configs up front (0: none, the "
                         "first call of each shape compiles them one by one)")
    ap.add_argument("--budget-s", type=float, default=330,
                    help="no new shape starts after this many seconds; the authors' (autotuning) "
                         "column is skipped after budget - 60")
    args = ap.parse_args()
    t0 = time.time()
    anchors = args.anchors if os.path.isabs(args.anchors) else os.path.join(REPO, args.anchors)

    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": TRITON_VERSION}
    try:
        meta["parallax_lib"] = plx.library_version()
    except Exception as e:  # noqa: BLE001
        meta["parallax_lib"] = f"unavailable: {err(e)}"
    try:
        authors, meta["authors_version"] = load_authors(os.path.abspath(anchors))
    except Exception as e:  # noqa: BLE001  (recorded in every row's authors_error)
        authors = f"import: {err(e)}"
        meta["authors_version"] = None
    print(f"prefill anchors on {meta['device']}: torch {meta['torch']}, triton {meta['triton']}, "
          f"libparallax {meta['parallax_lib']}, authors {meta['authors_version'] or authors}", flush=True)

    shapes = SHAPES if args.shapes == "all" else SHAPES[:1]
    if not isinstance(authors, str) and args.precompile_procs > 0:
        families = sorted({(d, hq // hkv) for _, hq, hkv, _, d in shapes})
        meta["authors_precompile"] = precompile_authors(os.path.abspath(anchors), authors, families,
                                                        args.precompile_procs, timeout_s=150)
        print(f"authors' configs precompiled for (D, n_rep) {families}: {meta['authors_precompile']}", flush=True)
    rows = []
    with open(args.out, "w") as f:
        for shape in shapes:
            if time.time() - t0 > args.budget_s:
                b, hq, hkv, l, d = shape
                row = {"kind": "prefill", "B": b, "Hq": hq, "Hkv": hkv, "L": l, "D": d,
                       "skipped": f"past the time budget ({args.budget_s} s)"}
                row.update(meta)
            else:
                row = run_shape(shape, args, meta, authors, t0)
            rows.append(row)
            f.write(json.dumps(row) + "\n")
            f.flush()
            if "skipped" not in row:
                print(f"[{row['elapsed_s']:>5.0f}s] B{row['B']} H{row['Hq']}/{row['Hkv']} L{row['L']} D{row['D']}: "
                      f"ours {row.get('ours_us')} us ({row.get('ours_choice')} {row.get('ours_variant')}), "
                      f"mma {row.get('ours_mma_us')}, authors {row.get('authors_us')} "
                      f"(warm-up {row.get('authors_warmup_s')} s), rel vs authors {fmt_rel(row['rel_vs_authors'])} / "
                      f"mma {fmt_rel(row['rel_mma_vs_authors'])}", flush=True)
                for key, val in row.items():
                    if key.endswith("_error"):
                        print(f"    {key}: {val}", flush=True)

        ratios = [r["ratio_authors_over_ours"] for r in rows[:GEOMEAN_SHAPES] if r.get("ratio_authors_over_ours")]
        geo = math.exp(sum(math.log(x) for x in ratios) / len(ratios)) if ratios else None
        f.write(json.dumps({"kind": "summary", "geomean_authors_over_ours_first4": geo,
                            "n_shapes_in_geomean": len(ratios), "elapsed_s": round(time.time() - t0, 1),
                            **meta}) + "\n")
    print_table(rows, meta, geo, len(ratios))


def print_table(rows, meta, geo, n_geo):
    print(f"== prefill anchors table: us/effective TFLOP/s (Parallax 8D, softmax 4D per visible pair), "
          f"{meta['device']}")
    print(f"{'B  Hq/Hkv L     D':<22} {'ours':>14} {'ours_mma':>14} {'authors':>14} {'a/o':>5}  "
          f"{'ours_softmax':>14} {'cudnn':>14} {'flash':>14}  rel(ours,authors)")
    for r in rows:
        label = f"{r['B']:<2} {r['Hq']:>2}/{r['Hkv']:<3} {r['L']:<5} {r['D']:<3}"
        if "skipped" in r:
            print(f"{label:<22} skipped ({r['skipped']})")
            continue
        ratio = r.get("ratio_authors_over_ours")
        print(f"{label:<22} {fmt(r, 'ours')} {fmt(r, 'ours_mma')} {fmt(r, 'authors')} "
              f"{(f'{ratio:.2f}' if ratio else '-'):>5}  {fmt(r, 'ours_softmax')} {fmt(r, 'cudnn')} "
              f"{fmt(r, 'flash')}  {fmt_rel(r.get('rel_vs_authors'))}")
    print(f"geomean authors/ours over the first {GEOMEAN_SHAPES} shapes: "
          f"{f'{geo:.3f}' if geo else '-'} ({n_geo} shapes)", flush=True)


if __name__ == "__main__":
    main()
