"""Multi-token decode in one process: ours through the decode API (q [B, Tq, Hq, D] over a
paged cache, which runs as extend) against torch SDPA softmax on the same tokens with the
cache contiguous (SDPA has no paged form), the causal mask aligned to the end of the keys.
bf16, Hq 32 / Hkv 8, D 128; CUDA-graph replay (bench/graph_timing.py), us.

Usage: PARALLAX_LIBRARY=path/libparallax.so python3 bench/multitoken_sdpa.py [--out FILE.json]
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "python"))
import parallax_tuner as plx  # noqa: E402

from graph_timing import BACKENDS, graph_time  # noqa: E402

SHAPES = [(32, 4096), (8, 8192), (64, 2048)]  # (B, L): L keys per sequence, the Tq new ones included
HQ, HKV, D, PAGE = 32, 8, 128, 16


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    for b, L in SHAPES:
        pages = b * L // PAGE
        kc = torch.randn(pages, PAGE, HKV, D, dtype=torch.bfloat16, device="cuda")
        vc = torch.randn_like(kc)
        perm = torch.randperm(pages, device="cuda", dtype=torch.int32)
        table = perm.view(b, L // PAGE)
        lens = torch.full((b,), L, dtype=torch.int32, device="cuda")
        # The same keys, contiguous and head-major for SDPA: [B, Hkv, L, D].
        kd = kc[table.long()].reshape(b, L, HKV, D).transpose(1, 2).contiguous()
        vd = vc[table.long()].reshape(b, L, HKV, D).transpose(1, 2).contiguous()
        for tq in (1, 4, 8):
            q = torch.randn(b, tq, HQ, D, dtype=torch.bfloat16, device="cuda")
            r = torch.randn_like(q)
            out = torch.empty_like(q)
            row = {"B": b, "L": L, "Tq": tq}
            for probe, rr in (("parallax", r), ("softmax", None)):
                fn = lambda rr=rr: plx.parallax_decode(q, rr, kc, vc, block_table=table, cache_seqlens=lens,
                                                            out=out, workspace=ws)
                ws = None
                if tq == 1:
                    ws = torch.empty(max(1, plx.decode_workspace_size(q, rr, kc, vc, block_table=table,
                                                                            cache_seqlens=lens)),
                                     dtype=torch.uint8, device="cuda")
                row[f"ours_{probe}_us"] = graph_time(fn, args.reps)
            qs = q.transpose(1, 2)  # [B, Hq, Tq, D]
            mask = torch.ones(tq, L, dtype=torch.bool, device="cuda").tril(diagonal=L - tq)
            for name in ("flash", "cudnn", "efficient"):
                def sdpa(name=name):
                    with sdpa_kernel(BACKENDS[name]):
                        if tq == 1 or name == "efficient":
                            return F.scaled_dot_product_attention(
                                qs, kd, vd, attn_mask=None if tq == 1 else mask, enable_gqa=True)
                        return F.scaled_dot_product_attention(qs, kd, vd, attn_mask=mask, enable_gqa=True)
                try:
                    row[f"sdpa_{name}_us"] = graph_time(sdpa, args.reps)
                except Exception as e:  # noqa: BLE001  (a backend refusing a mask or GQA)
                    row[f"sdpa_{name}_us"] = None
                    row[f"sdpa_{name}_error"] = str(e).splitlines()[0][:160]
            rows.append(row)
            print(json.dumps({k: (round(v, 1) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
