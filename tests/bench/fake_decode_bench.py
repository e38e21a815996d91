#!/usr/bin/env python3
"""Stands in for plx_decode_bench in decode_grid_test.py: the same flags and JSON lines, times
from a made-up bandwidth model. FAKE_BENCH_CRASH=BxL:schedule exits 1 (as a device fault does)
when it reaches that measurement."""
import argparse
import os
import sys
import zlib

ap = argparse.ArgumentParser()
for flag, default in (("--hq", 32), ("--hkv", 8), ("--d", 128), ("--paged", 0)):
    ap.add_argument(flag, type=int, default=default)
ap.add_argument("--probe", default="learned")
ap.add_argument("--shapes", default="1x1024")
ap.add_argument("--schedules", default="default")
a = ap.parse_args()
crash = os.environ.get("FAKE_BENCH_CRASH", "")
print('{"copy_gbps": 4000.0}')
print('{"replay_floor_us": 2.50}')
for bl in a.shapes.split(","):
    B, L = map(int, bl.split("x"))
    kv = B * L * a.hkv * a.d * 2
    for s in a.schedules.split(","):
        if crash == f"{B}x{L}:{s}":
            print(f"{s}: the decode failed on the device", file=sys.stderr)
            sys.exit(1)
        # 3.5 TB/s at best, a schedule-dependent efficiency, a fixed 5 us; one schedule invalid at B=128.
        eff = 1.0 if s == "default" else 0.8 + (zlib.crc32(f"{s}{B}{L}".encode()) % 40) / 100
        eff /= 1.04 if a.paged else 1.0
        us = -1.0 if (B == 128 and "split4" in s) else 2 * kv / 3.5e12 / eff * 1e6 + 5
        variant = "decode.fake" if s == "default" else "decode_sm90.fake." + s.replace("gG", "g4")
        print(f'{{"B": {B}, "L": {L}, "hq": {a.hq}, "hkv": {a.hkv}, "d": {a.d}, "paged": {a.paged}, '
              f'"probe": "learned", "schedule": "{s}", "variant": "{variant}", "splits": 8, "us": {us:.2f}, '
              f'"kv_gbps": {2 * kv / (us * 1e-6) / 1e9 if us > 0 else 0:.1f}}}', flush=True)
print("\nshape \\ schedule (us)  [0]  (the table, which the driver ignores)")
