#!/usr/bin/env python3
"""Stands in for bench/sdpa_decode.py in decode_grid_test.py: the same arguments and JSON lines."""
import argparse
import json

ap = argparse.ArgumentParser()
ap.add_argument("hq", type=int)
ap.add_argument("hkv", type=int)
ap.add_argument("--shapes")
a = ap.parse_args()
print(json.dumps({"device": "Fake H200", "torch": "0.0", "hq": a.hq, "hkv": a.hkv}))
for bl in a.shapes.split(","):
    B, L = map(int, bl.split("x"))
    t = 2 * B * L * a.hkv * 128 * 2 / 3.3e12 * 1e6 + 8
    row = {"B": B, "L": L, "flash": round(t * 1.1, 2), "cudnn": round(t, 2), "efficient": round(t * 1.3, 2)}
    if B == 128:  # a backend that refuses a shape
        row["cudnn"], row["cudnn_error"] = None, "No available kernel"
    print(json.dumps(row), flush=True)
