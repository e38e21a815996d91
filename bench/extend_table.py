#!/usr/bin/env python3
"""Table of scripts/gpu-suite.sh's `extend` runs: extend over pages vs contiguous prefill.

Reads DIR/extend_b{B}_l{L}_q{Lq}_{probe}_p{page}.json (each `parallax bench prefill --json`)
and prints one markdown row per shape: the contiguous default and each page size in us, the
ratio contiguous / paged (the issue's target: >= 0.9 at pages of 16 and 64, >= 0.8 at 1),
and which family ran. Usage: extend_table.py DIR
"""
import glob
import json
import os
import re
import sys


def main(d):
    runs = {}
    for path in glob.glob(os.path.join(d, "extend_*.json")):
        m = re.match(r"extend_b(\d+)_l(\d+)_q(\d+)_(\w+?)_p(\d+)\.json", os.path.basename(path))
        if not m:
            continue
        try:
            j = json.load(open(path))
        except (OSError, ValueError):
            continue
        runs.setdefault(m.groups()[:4], {})[int(m.group(5))] = j
    print("| B, L, Lq, probe | contiguous us | page 16 us | page 64 us | page 1 us "
          "| contig/p16 | contig/p64 | contig/p1 | paged family (16, 64, 1) | verified |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key in sorted(runs, key=lambda k: (int(k[0]), int(k[1]), -int(k[2]))):
        r = runs[key]
        us = {p: r[p]["median_us"] for p in r if "median_us" in r[p]}
        def ratio(p):
            return f"{us[0] / us[p]:.2f}" if 0 in us and p in us else "-"
        def cell(p):
            return f"{us[p]:.1f}" if p in us else "-"
        fams = ", ".join(("wgmma" if ".wgmma-" in r[p].get("variant", "") else "mma") if p in r else "-"
                         for p in (16, 64, 1))
        print(f"| {', '.join(key)} | {cell(0)} | {cell(16)} | {cell(64)} | {cell(1)} "
              f"| {ratio(16)} | {ratio(64)} | {ratio(1)} | {fams} | {all(j.get('ok') for j in r.values())} |")


def multitoken(d):
    """Multi-token decode: one extend launch of Tq tokens vs Tq one-token decodes."""
    rows = []
    for path in glob.glob(os.path.join(d, "multitoken_b*_q*.json")):
        m = re.match(r"multitoken_b(\d+)_l(\d+)_q(\d+)\.json", os.path.basename(path))
        dec = os.path.join(d, f"multitoken_b{m.group(1)}_l{m.group(2)}_decode.json") if m else ""
        try:
            e, one = json.load(open(path)), json.load(open(dec))
        except (OSError, ValueError):
            continue
        rows.append((int(m.group(1)), int(m.group(2)), int(m.group(3)), e, one))
    if not rows:
        return
    print()
    print("| B, L, Tq (pages of 16) | extend us (one launch) | one-token decode us | Tq decodes us "
          "| Tq decodes / extend | extend family | verified |")
    print("|---|---|---|---|---|---|---|")
    for b, l, tq, e, one in sorted(rows):
        fam = "wgmma" if ".wgmma-" in e.get("variant", "") else "mma"
        print(f"| {b}, {l}, {tq} | {e['median_us']:.1f} | {one['median_us']:.1f} | {tq * one['median_us']:.1f} "
              f"| {tq * one['median_us'] / e['median_us']:.2f} | {fam} | {bool(e.get('ok')) and bool(one.get('ok', True))} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
    multitoken(sys.argv[1] if len(sys.argv) > 1 else ".")
