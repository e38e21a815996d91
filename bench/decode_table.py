"""Joins plx_decode_bench and sdpa_decode.py output into one table (microseconds)."""
import json
import sys


def rows(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip().startswith("{")]


ours, sdpa = rows(sys.argv[1]), rows(sys.argv[2])
copy = next((r["copy_gbps"] for r in ours if "copy_gbps" in r), None)
print(f"copy bandwidth (read+write): {copy} GB/s")
by = {}
for r in ours:
    if "B" in r:
        by.setdefault((r["B"], r["L"]), {})[r["probe"]] = r
print(f"{'B':>4} {'L':>6} {'parallax':>9} {'softmax':>9} {'flash':>8} {'cudnn':>8} {'effic':>8} {'naive':>8} {'best/ours':>9} {'BW%':>5}")
for s in sdpa:
    if "B" not in s:
        continue
    o = by.get((s["B"], s["L"]), {})
    p, n = o.get("learned", {}), o.get("none", {})
    best = min([x for x in (s.get("flash"), s.get("cudnn"), s.get("efficient")) if x] or [float("nan")])
    us = p.get("us", float("nan"))
    bw = 100 * p.get("kv_gbps", 0) / copy if copy else float("nan")
    print(f"{s['B']:>4} {s['L']:>6} {us:>9.1f} {n.get('us', float('nan')):>9.1f} {s.get('flash') or float('nan'):>8.1f} "
          f"{s.get('cudnn') or float('nan'):>8.1f} {s.get('efficient') or float('nan'):>8.1f} "
          f"{s.get('naive_parallax') or float('nan'):>8.1f} {us / best:>9.2f} {bw:>5.0f}")
