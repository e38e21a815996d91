"""Torch SDPA decode baselines (flash, cuDNN, efficient) and a naive torch Parallax on the
grid plx_decode_bench uses, timed the same way: CUDA-graph replay, median of trials.
The GQA group is packed as query rows (q viewed as [B, Hkv, G, D] against [B, Hkv, L, D]),
as the reference points in shared/perf-anchors.md were measured: every backend accepts it and
K/V are read once. Prints JSON lines.
Usage: sdpa_decode.py [HQ [HKV [BxL,BxL,...]]] [--shapes BxL,...] (default 32 8, the 4 x 4 grid
below; bench/decode_grid.py passes the issue's shapes)."""
import argparse
import json
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel

from graph_timing import BACKENDS, graph_time  # bench/ is on sys.path


def parse_shapes(text):
    try:
        shapes = [tuple(int(x) for x in bl.split("x")) for bl in text.split(",") if bl]
        if any(len(bl) != 2 for bl in shapes):
            raise ValueError
        return shapes
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected BxL,BxL,..., got '{text}'")


_ap = argparse.ArgumentParser(description="Torch SDPA decode baselines, JSON lines")
_ap.add_argument("hq", nargs="?", type=int, default=32)
_ap.add_argument("hkv", nargs="?", type=int, default=8)
_ap.add_argument("shapes_pos", nargs="?", type=parse_shapes, metavar="shapes")
_ap.add_argument("--shapes", type=parse_shapes)
_args = _ap.parse_args()
HQ, HKV, D = _args.hq, _args.hkv, 128
SHAPES = _args.shapes or _args.shapes_pos or [(B, L) for B in (1, 8, 32, 128) for L in (1024, 4096, 16384, 65536)]


def naive_parallax(q, r, k, v, scale):
    # q, r: [B, Hq, 1, D]; k, v: [B, Hkv, L, D]
    k = k.repeat_interleave(HQ // HKV, dim=1)
    v = v.repeat_interleave(HQ // HKV, dim=1)
    w = torch.softmax((q @ k.transpose(-1, -2)).float() * scale, dim=-1)
    s2 = (r @ k.transpose(-1, -2)).float()
    tbar = (w * s2).sum(-1, keepdim=True)
    return ((w * (1 - (s2 - tbar))).to(v.dtype) @ v)


def main():
    torch.manual_seed(0)
    print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "hq": HQ, "hkv": HKV}))
    for B, L in SHAPES:
        if B * L * HKV * D * 2 * 2 > 40 << 30:
            continue
        q = torch.randn(B, HQ, 1, D, device="cuda", dtype=torch.bfloat16)
        r = torch.randn_like(q)
        k = torch.randn(B, HKV, L, D, device="cuda", dtype=torch.bfloat16)
        v = torch.randn_like(k)
        reps = 10 if B * L >= (1 << 20) else 50
        qg = q.view(B, HKV, HQ // HKV, D)  # group packed as query rows (no mask: decode)
        row = {"B": B, "L": L}
        for name, be in BACKENDS.items():
            try:
                with sdpa_kernel(be):
                    row[name] = round(graph_time(lambda: F.scaled_dot_product_attention(qg, k, v), reps), 2)
            except Exception as e:  # backend does not support this shape
                row[name] = None
                row[name + "_error"] = str(e).splitlines()[0][:120]
        if B * L <= 32 * 16384:
            try:
                row["naive_parallax"] = round(graph_time(lambda: naive_parallax(q, r, k, v, D ** -0.5), reps), 2)
            except Exception as e:
                row["naive_parallax"] = None
        print(json.dumps(row))
        sys.stdout.flush()
        del q, r, k, v
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
