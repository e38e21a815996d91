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
    if "B" in r and "sweep" not in r:
        by.setdefault((r["B"], r["L"]), {})[r["probe"] + ("_fused" if r.get("fused") else "")] = r
print(f"{'B':>4} {'L':>6} {'parallax':>9} {'+fused':>7} {'softmax':>8} {'+fused':>7} {'flash':>7} {'cudnn':>7} {'effic':>7} {'naive':>8} {'ours/best':>9} {'BW%':>4}")
for s in sdpa:
    if "B" not in s:
        continue
    o = by.get((s["B"], s["L"]), {})
    nan = float("nan")
    p, pf, n, nf = (o.get(k, {}) for k in ("learned", "learned_fused", "none", "none_fused"))
    best = min([x for x in (s.get("flash"), s.get("cudnn"), s.get("efficient")) if x] or [nan])
    us = min(p.get("us", nan), pf.get("us", nan))
    gb = max(p.get("kv_gbps", 0), pf.get("kv_gbps", 0))
    bw = 100 * gb / copy if copy else nan
    print(f"{s['B']:>4} {s['L']:>6} {p.get('us', nan):>9.1f} {pf.get('us', nan):>7.1f} {n.get('us', nan):>8.1f} "
          f"{nf.get('us', nan):>7.1f} {s.get('flash') or nan:>7.1f} {s.get('cudnn') or nan:>7.1f} "
          f"{s.get('efficient') or nan:>7.1f} {s.get('naive_parallax') or nan:>8.1f} {us / best:>9.2f} {bw:>4.0f}")

sweep = [r for r in ours if r.get("sweep")]
if sweep:
    print("split sweep (parallax, merge kernel), us:")
    for (b, l) in sorted({(r["B"], r["L"]) for r in sweep}):
        cells = " ".join(f"{r['splits']}:{r['us']:.1f}" for r in sweep if (r["B"], r["L"]) == (b, l))
        auto = by.get((b, l), {}).get("learned", {})
        print(f"  B={b:<3} L={l:<6} auto({auto.get('splits')}):{auto.get('us', float('nan')):.1f}  {cells}")
