"""Multi-token decode (speculative verification, q [B, Tq, Hq, D]) in one process: ours through
the decode API -- on sm_90 the decode_sm90 family's split-KV kernel, every K/V tile read once
for all Tq tokens -- against the same tokens run as extend (the prefill kernels over the same
cache: what the decode API ran before, and still runs on other GPUs) and against one-token
decode (Tq = 1), with the K/V copy bandwidth measured in the same run; decode_sm90
schedules are also timed by key at every Tq > 1, whichever path the API's routing picks.
bf16, D 128, probe learned, CUDA-graph replay (bench/graph_timing.py), medians, us.

Usage: PARALLAX_LIBRARY=path/libparallax.so python3 bench/multitoken_decode.py [--out FILE.json]
       [--quick]
"""
import argparse
import datetime
import json
import os
import sys

import torch

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "python"))
import parallax_tuner as plx  # noqa: E402

from graph_timing import graph_time  # noqa: E402

D, PAGE = 128, 16
CONFIGS = {"gqa32": (32, 8), "mha8": (8, 8)}
SHAPES = [(1, 4096), (1, 16384), (1, 65536), (8, 4096), (8, 16384), (32, 4096)]
TQS = (1, 2, 4, 8, 16)
# decode_sm90 schedules timed by key at every Tq > 1 (the family default first); gG is the
# most heads of a GQA group per CTA with heads x Tq <= 16.
SCHEDULES = ["wgmma-n64-w4-s4-splitauto-gG", "wgmma-n128-w8-s3-splitauto-gG", "wgmma-n128-w4-s3-splitauto-gG",
             "wgmma-n64-w4-s4-split8-gG-cluster", "wgmma-n64-w2-s6-splitauto-gG"]


def decode_key(hq, hkv, layout, tq, schedule):
    group = hq // hkv
    g = max(d for d in range(1, group + 1) if group % d == 0 and d * tq <= 16)
    return (f"decode-bf16-d{D}-h{hq}x{hkv}-{layout}-nowin-q{tq}.learned-plain."
            f"{schedule.replace('gG', f'g{g}')}")


def copy_gbps(nbytes, reps):
    """A device-to-device copy of nbytes: bytes read per second (what the decode's K/V stream
    is compared with; the copy also writes as many)."""
    src = torch.empty(nbytes // 2, dtype=torch.bfloat16, device="cuda")
    dst = torch.empty_like(src)
    us = graph_time(lambda: dst.copy_(src), reps)
    return nbytes / (us * 1e-6) / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="B=1 and B=8 at L=16k only")
    args = ap.parse_args()
    torch.manual_seed(0)
    shapes = [(1, 16384), (8, 16384)] if args.quick else SHAPES
    copy = copy_gbps(512 << 20, args.reps)
    print(json.dumps({"copy_gbps": round(copy, 1)}), flush=True)
    rows = []
    for name, (hq, hkv) in CONFIGS.items():
        for b, L in shapes:
            kv_bytes = 2 * b * L * hkv * D * 2
            k = torch.randn(b, L, hkv, D, dtype=torch.bfloat16, device="cuda")
            v = torch.randn_like(k)
            pages = b * L // PAGE
            table = torch.randperm(pages, device="cuda", dtype=torch.int32).view(b, L // PAGE)
            kc = torch.empty(pages, PAGE, hkv, D, dtype=torch.bfloat16, device="cuda")
            vc = torch.empty_like(kc)
            kc[table.long()] = k.view(b, L // PAGE, PAGE, hkv, D)
            vc[table.long()] = v.view(b, L // PAGE, PAGE, hkv, D)
            lens = torch.full((b,), L, dtype=torch.int32, device="cuda")
            for layout in ("contig", "paged16"):
                paged = layout == "paged16"
                kk, vv = (kc, vc) if paged else (k, v)
                extra = {"block_table": table, "cache_seqlens": lens} if paged else {}
                for tq in TQS:
                    shape = (b, tq, hq, D) if tq > 1 else (b, hq, D)
                    q = torch.randn(*shape, dtype=torch.bfloat16, device="cuda")
                    r = torch.randn_like(q)
                    out = torch.empty_like(q)
                    row = {"config": name, "hq": hq, "hkv": hkv, "B": b, "L": L, "layout": layout, "Tq": tq,
                           "kv_bytes": kv_bytes}
                    try:
                        row["ours_variant"] = plx.decode_plan(q, r, kk, vv, **extra).variant
                        row["ours_us"] = graph_time(lambda: plx.parallax_decode(q, r, kk, vv, out=out, **extra),
                                                    args.reps)
                        row["kv_gbps"] = round(kv_bytes / (row["ours_us"] * 1e-6) / 1e9, 1)
                    except Exception as e:  # noqa: BLE001  (recorded, the run goes on)
                        row["ours_error"] = str(e).splitlines()[0][:200]
                    if tq > 1:  # decode_sm90 by key, whatever the API's routing picks
                        for sched in SCHEDULES[:1] if args.quick else SCHEDULES:
                            key = decode_key(hq, hkv, layout, tq, sched)
                            try:
                                row[f"decode_{sched}_us"] = graph_time(
                                    lambda: plx.parallax_decode(q, r, kk, vv, out=out, variant=key, **extra),
                                    args.reps)
                            except Exception as e:  # noqa: BLE001
                                row[f"decode_{sched}_error"] = str(e).splitlines()[0][:200]
                        times = [row[f"decode_{x}_us"] for x in SCHEDULES if row.get(f"decode_{x}_us")]
                        row["decode_best_us"] = min(times) if times else None
                    if tq > 1:  # the same tokens as extend (prefill kernels over the same cache)
                        pextra = {"block_table": table, "seqused_k": lens} if paged else {}
                        try:
                            row["extend_variant"] = plx.prefill_plan(q, r, kk, vv, **pextra).variant
                            row["extend_us"] = graph_time(
                                lambda: plx.parallax_prefill(q, r, kk, vv, out=out, **pextra), args.reps)
                        except Exception as e:  # noqa: BLE001
                            row["extend_error"] = str(e).splitlines()[0][:200]
                        if row.get("ours_us") and row.get("extend_us"):
                            row["extend_over_ours"] = round(row["extend_us"] / row["ours_us"], 2)
                        if row.get("decode_best_us") and row.get("extend_us"):
                            row["extend_over_decode_best"] = round(row["extend_us"] / row["decode_best_us"], 2)
                    rows.append(row)
                    print(json.dumps({k2: (round(x, 2) if isinstance(x, float) else x) for k2, x in row.items()}),
                          flush=True)
            del k, v, kc, vc
    one = {(r["config"], r["B"], r["L"], r["layout"]): r.get("ours_us") for r in rows if r["Tq"] == 1}
    for r in rows:
        base = one.get((r["config"], r["B"], r["L"], r["layout"]))
        if r["Tq"] > 1 and base and r.get("ours_us"):
            r["ours_over_one_token"] = round(r["ours_us"] / base, 2)
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "date": datetime.date.today().isoformat(), "copy_gbps": copy, "rows": rows}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    print(f"{'config':6} {'B':>3} {'L':>6} {'layout':7} {'Tq':>3} {'ours us':>8} {'extend us':>9} "
          f"{'ext/ours':>8} {'vs Tq=1':>7} {'GB/s':>6} {'dec best':>8} {'ext/best':>8}")
    for r in rows:
        f = lambda k, spec: format(r[k], spec) if r.get(k) is not None else "-"  # noqa: E731
        print(f"{r['config']:6} {r['B']:>3} {r['L']:>6} {r['layout']:7} {r['Tq']:>3} {f('ours_us', '8.1f'):>8} "
              f"{f('extend_us', '9.1f'):>9} {f('extend_over_ours', '8.2f'):>8} {f('ours_over_one_token', '7.2f'):>7} "
              f"{f('kv_gbps', '6.0f'):>6} {f('decode_best_us', '8.1f'):>8} {f('extend_over_decode_best', '8.2f'):>8}")


if __name__ == "__main__":
    main()
