"""Our decode and prefill (through the Python binding) against torch SDPA and a naive torch
Parallax, in ONE process on one GPU. CUDA-graph replay timed with events, median of trials.
Usage: PARALLAX_LIBRARY=path/libparallax.so python3 bench/bench_parallax.py [--out FILE]"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import parallax_tuner as plx  # noqa: E402

from graph_timing import BACKENDS, graph_time as _graph_time  # noqa: E402 (bench/ is on sys.path)


def graph_time(fn, reps):
    return round(_graph_time(fn, reps), 2)


def sdpa(fn_by_backend, reps):
    row = {}
    for name, be in BACKENDS.items():
        try:
            with sdpa_kernel(be):
                row[name] = graph_time(fn_by_backend, reps)
        except Exception as e:  # backend cannot run this shape
            row[name] = None
            row[name + "_error"] = str(e).splitlines()[0][:100]
    return row


def decode_grid(hq, hkv, d=128):
    for B in (1, 8, 32, 128):
        for L in (1024, 4096, 16384, 65536):
            if B * L * hkv * d * 2 * 2 > 40 << 30:
                continue
            q = torch.randn(B, 1, hq, d, device="cuda", dtype=torch.bfloat16)
            r = torch.randn_like(q)
            k = torch.randn(B, L, hkv, d, device="cuda", dtype=torch.bfloat16)
            v = torch.randn_like(k)
            out = torch.empty_like(q)
            reps = 10 if B * L >= (1 << 20) else 50
            row = {"kind": "decode", "B": B, "L": L, "hq": hq, "hkv": hkv, "d": d}
            row["parallax"] = graph_time(lambda: plx.parallax_decode(q, r, k, v, out=out), reps)
            row["softmax"] = graph_time(lambda: plx.parallax_decode(q, None, k, v, out=out), reps)
            plan = plx.decode_plan(q, r, k, v)
            row["variant"], row["choice"] = str(plan.variant), str(plan.choice)
            # SDPA: GQA group packed as query rows over [B, Hkv, L, D] views of the same cache.
            qg = q.view(B, hkv, hq // hkv, d)
            kt, vt = k.transpose(1, 2), v.transpose(1, 2)
            row.update(sdpa(lambda: F.scaled_dot_product_attention(qg, kt, vt), reps))
            if B * L <= 32 * 16384:
                def naive():
                    kk = kt.repeat_interleave(hq // hkv, dim=1)
                    vv = vt.repeat_interleave(hq // hkv, dim=1)
                    qq, rr = q.transpose(1, 2), r.transpose(1, 2)
                    w = torch.softmax((qq @ kk.transpose(-1, -2)).float() * d ** -0.5, dim=-1)
                    s2 = (rr @ kk.transpose(-1, -2)).float()
                    tbar = (w * s2).sum(-1, keepdim=True)
                    return (w * (1 - (s2 - tbar))).to(vv.dtype) @ vv
                row["naive"] = graph_time(naive, reps)
            yield row
            del q, r, k, v, out
            torch.cuda.empty_cache()


def prefill_grid(h=16, d=128):
    for B, L in ((4, 4096), (2, 8192), (1, 16384)):
        q = torch.randn(B, L, h, d, device="cuda", dtype=torch.bfloat16)
        r, k, v = torch.randn_like(q), torch.randn_like(q), torch.randn_like(q)
        out = torch.empty_like(q)
        flops = 4 * B * h * L * L * d / 2  # softmax attention, causal
        row = {"kind": "prefill", "B": B, "L": L, "h": h, "d": d, "softmax_flops": flops}
        row["parallax"] = graph_time(lambda: plx.parallax_prefill(q, r, k, v, out=out), 5)
        row["softmax"] = graph_time(lambda: plx.parallax_prefill(q, None, k, v, out=out), 5)
        qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
        row.update(sdpa(lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=True), 5))
        yield row
        del q, r, k, v, out
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench_parallax.jsonl")
    args = ap.parse_args()
    torch.manual_seed(0)
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
            "parallax": plx.library_version()}
    with open(args.out, "w") as f:
        f.write(json.dumps(meta) + "\n")
        for rows in (decode_grid(32, 8), prefill_grid()):
            for row in rows:
                f.write(json.dumps(row) + "\n")
                f.flush()
                if row["kind"] == "decode":
                    best = min(x for x in (row.get("flash"), row.get("cudnn"), row.get("efficient")) if x)
                    print(f"decode B={row['B']:<4} L={row['L']:<6} parallax {row['parallax']:>9} softmax "
                          f"{row['softmax']:>9} best-sdpa {best:>9} naive {row.get('naive')}  ratio "
                          f"{row['parallax'] / best:.2f}", flush=True)
                else:
                    tf = lambda us: round(row["softmax_flops"] / (us * 1e-6) / 1e12, 1) if us else None
                    print(f"prefill B={row['B']} L={row['L']}: parallax {row['parallax']} us ({tf(row['parallax'])} "
                          f"TFLOP/s softmax-equiv; x2 real), softmax {row['softmax']} us ({tf(row['softmax'])}), "
                          f"flash {row.get('flash')} ({tf(row.get('flash'))}), cudnn {row.get('cudnn')} "
                          f"({tf(row.get('cudnn'))})", flush=True)


if __name__ == "__main__":
    main()
