"""A small training run that proves Parallax gradients (issue #15 part 5): a Qwen3-like byte-level LM
trained on the repository's own text, once with ours (parallax_tuner.parallax_prefill, bf16, its
autograd) and once with a naive float32 einsum Parallax (torch autograd), same seed, same batches.

Usage: PARALLAX_LIBRARY=path/libparallax.so python3 bench/train_small.py
           [--backend both|ours|naive] [--optimizer adamw|muon|both] [--control] [--steps 300]
           [--out FILE.json]      (all flags: --help; plot: bench/train_plot.py FILE.json OUT.svg)

Model: byte embedding, --layers blocks of pre-RMSNorm Parallax attention + pre-RMSNorm SwiGLU MLP,
final RMSNorm, tied (default) or --untied LM head. Attention: q = RoPE(RMSNorm_q(x Wq)),
k = RoPE(RMSNorm_k(x Wk)), r = RoPE(RMSNorm_r(x Wr)) (per-head norms, Qwen3-style), v = x Wv; causal.
fp32 master weights, bf16 autocast. q, r, k, v are rounded to bf16 for BOTH backends, so the runs
differ only in the attention itself (ours: bf16 forward and backward kernels, or the float32 torch
backward under PARALLAX_TORCH_BACKWARD=1; naive: float32). The JSON's "backward" says which.

Corpus: the repository's *.md/*.py/*.cc/*.h (git ls-files, tracked + untracked-not-ignored; os.walk
without git) concatenated in sorted path order, bytes; the last --val-frac is validation.
Before training (two backends): every parameter's step-0 gradient through ours vs naive on the
first batch (relative Frobenius error). Loss curves of two runs drift apart through chaos however
small the difference; --control adds naive-noise (naive, its output times 1 + N(0, 2^-9)) to show
how far rounding-sized noise alone moves them.
Exit 2: no torch / CUDA / libparallax (ours); exit 3: --optimizer muon without torch.optim.Muon.
"""
import argparse
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "python"))


def fail(code, msg):
    print(f"train_small: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:
    fail(2, f"needs torch ({e})")
import parallax_tuner as plx  # noqa: E402  (after torch: its custom ops register now; the library loads on use)


# ---- corpus ---------------------------------------------------------------------------------

def corpus(exts):
    try:
        out = subprocess.run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             check=True, capture_output=True).stdout
        paths, how = [p for p in out.decode().split("\0") if p], "git ls-files"
    except (OSError, subprocess.CalledProcessError):
        paths, how = [], "os.walk"
        for root, dirs, files in os.walk(REPO):
            dirs[:] = [d for d in dirs if not d.startswith((".", "build", "cache", "__pycache__"))]
            paths += [os.path.relpath(os.path.join(root, f), REPO) for f in files]
    paths = sorted(p for p in paths if p.rsplit(".", 1)[-1] in exts and os.path.isfile(os.path.join(REPO, p)))
    blob = b"".join(open(os.path.join(REPO, p), "rb").read() for p in paths)
    return blob, len(paths), how


CONTROL_NOISE = 2.0 ** -9  # about the relative error of rounding to bf16 (8 significant bits)


# ---- model ----------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, dim, init=1.0, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.full((dim,), float(init)))
        self.eps = eps

    def forward(self, x):  # float32 out, whatever comes in
        x = x.float()
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x, cos, sin):  # x [B, L, H, D] float32; cos, sin [L, D/2] (rotate-half, as Qwen3)
    x1, x2 = x.chunk(2, -1)
    c, s = cos[:, None, :], sin[:, None, :]
    return torch.cat((x1 * c - x2 * s, x1 * s + x2 * c), -1)


def naive_parallax(q, r, k, v, tau):
    """Parallax in float32 einsums, causal, GQA by repeat_interleave; autograd through it."""
    with torch.autocast(device_type="cuda", enabled=False):
        q, r, k, v = (t.float() for t in (q, r, k, v))
        g = q.shape[2] // k.shape[2]
        k, v = k.repeat_interleave(g, dim=2), v.repeat_interleave(g, dim=2)
        n = q.shape[1]
        causal = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
        s1 = (tau * torch.einsum("bqhd,bkhd->bhqk", q, k)).masked_fill(~causal, float("-inf"))
        s2 = torch.einsum("bqhd,bkhd->bhqk", r, k)
        w = torch.softmax(s1, dim=-1)
        tbar = (w * s2).sum(-1, keepdim=True)
        return torch.einsum("bhqk,bkhd->bqhd", w * (1 - (s2 - tbar)), v)


class Attention(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.hq, self.hkv, self.d, self.tau = a.heads, a.kv_heads, a.head_dim, a.qk_scale
        self.wq = nn.Linear(a.d_model, a.heads * a.head_dim, bias=False)
        self.wr = nn.Linear(a.d_model, a.heads * a.head_dim, bias=False)
        self.wk = nn.Linear(a.d_model, a.kv_heads * a.head_dim, bias=False)
        self.wv = nn.Linear(a.d_model, a.kv_heads * a.head_dim, bias=False)
        self.wo = nn.Linear(a.heads * a.head_dim, a.d_model, bias=False)
        self.q_norm, self.k_norm = RMSNorm(a.head_dim), RMSNorm(a.head_dim)
        self.r_norm = RMSNorm(a.head_dim, init=a.r_gain_init)

    def forward(self, x, cos, sin, backend):
        b, n, _ = x.shape
        bf16 = torch.bfloat16
        q = rope(self.q_norm(self.wq(x).view(b, n, self.hq, self.d)), cos, sin).to(bf16)
        r = rope(self.r_norm(self.wr(x).view(b, n, self.hq, self.d)), cos, sin).to(bf16)
        k = rope(self.k_norm(self.wk(x).view(b, n, self.hkv, self.d)), cos, sin).to(bf16)
        v = self.wv(x).view(b, n, self.hkv, self.d).to(bf16)
        if backend == "ours":
            o = plx.parallax_prefill(q, r, k, v, self.tau)  # [B, L, Hq, D] bf16, causal
        else:  # naive; naive-noise (--control) multiplies its output by 1 + N(0, 2^-9): rounding-sized noise
            o = naive_parallax(q, r, k, v, self.tau)
            if backend == "naive-noise":
                o = o * (1 + CONTROL_NOISE * torch.randn_like(o))
        return self.wo(o.reshape(b, n, self.hq * self.d))


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.attn_norm, self.mlp_norm = RMSNorm(a.d_model), RMSNorm(a.d_model)
        self.attn = Attention(a)
        self.w_gate = nn.Linear(a.d_model, a.d_ff, bias=False)
        self.w_up = nn.Linear(a.d_model, a.d_ff, bias=False)
        self.w_down = nn.Linear(a.d_ff, a.d_model, bias=False)

    def forward(self, x, cos, sin, backend):
        x = x + self.attn(self.attn_norm(x), cos, sin, backend)
        h = self.mlp_norm(x)
        return x + self.w_down(F.silu(self.w_gate(h)) * self.w_up(h))


class LM(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.emb = nn.Embedding(256, a.d_model)
        self.blocks = nn.ModuleList(Block(a) for _ in range(a.layers))
        self.norm = RMSNorm(a.d_model)
        self.head = None if not a.untied else nn.Linear(a.d_model, 256, bias=False)
        inv = 1.0 / a.rope_theta ** (torch.arange(0, a.head_dim, 2, dtype=torch.float64) / a.head_dim)
        ang = torch.outer(torch.arange(a.seq_len, dtype=torch.float64), inv)
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:  # output projections scaled down by depth (GPT-2 style)
                std = 0.02 / math.sqrt(2 * a.layers) if name.endswith(("wo.weight", "w_down.weight")) else 0.02
                nn.init.normal_(p, std=std)

    def forward(self, idx, targets, backend):
        x = self.emb(idx)
        cos, sin = self.cos[:idx.shape[1]], self.sin[:idx.shape[1]]
        for blk in self.blocks:
            x = blk(x, cos, sin, backend)
        h = self.norm(x)
        logits = F.linear(h, self.emb.weight if self.head is None else self.head.weight)
        return F.cross_entropy(logits.float().view(-1, 256), targets.reshape(-1))


# ---- training -------------------------------------------------------------------------------

def optimizers(model, name, a):
    """(optimizer, [base lr per group]) pairs. muon: 2-D weights inside the blocks to torch.optim.Muon,
    embedding / LM head / norms to AdamW (the usual split). Norm gains get no weight decay."""
    muon_p = [p for n, p in model.named_parameters() if name == "muon" and n.startswith("blocks.") and p.dim() == 2]
    ids = {id(p) for p in muon_p}
    rest = [p for p in model.parameters() if id(p) not in ids]
    groups = [{"params": [p for p in rest if p.dim() >= 2], "weight_decay": a.weight_decay},
              {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0}]
    opts = [torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)]
    if muon_p:
        opts.append(torch.optim.Muon(muon_p, lr=a.muon_lr or a.lr, weight_decay=a.weight_decay,
                                     adjust_lr_fn=a.muon_adjust))
    return [(o, [g["lr"] for g in o.param_groups]) for o in opts]


def lr_factor(step, a):
    if step < a.warmup:
        return (step + 1) / a.warmup
    t = (step - a.warmup) / max(1, a.steps - a.warmup)
    return a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t))


def batch(data, starts, n):
    idx = starts.to(data.device)[:, None] + torch.arange(n + 1, device=data.device)
    tok = data[idx]
    return tok[:, :-1], tok[:, 1:]


@torch.no_grad()
def evaluate(model, data, val_starts, a, backend):
    model.eval()
    losses = []
    for s in val_starts:
        x, y = batch(data, s, a.seq_len)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            losses.append(model(x, y, backend).item())
    model.train()
    return sum(losses) / len(losses)


def train(a, backend, opt_name, train_data, val_data, plan):
    torch.manual_seed(a.seed)  # same init for every backend
    model = LM(a).cuda()
    fwd = torch.compile(model) if a.compile else model
    opts = optimizers(model, opt_name, a)
    curve, val, times = [], [], []
    res = {"backend": backend, "optimizer": opt_name, "curve": curve, "val": val, "diverged_at": None}
    tag = f"[{opt_name} {backend}]"
    for step in range(a.steps):
        if step % a.val_every == 0:
            val.append([step, evaluate(model, val_data, plan["val"], a, backend)])
            print(f"{tag} step {step:4d} val {val[-1][1]:.4f}", flush=True)
        f = lr_factor(step, a)
        for o, base in opts:
            for g, lr in zip(o.param_groups, base):
                g["lr"] = lr * f
        x, y = batch(train_data, plan["train"][step], a.seq_len)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            loss = fwd(x, y, backend)
        loss.backward()
        if a.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
        for o, _ in opts:
            o.step()
            o.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
        lv = loss.item()
        curve.append([step, lv])
        if not math.isfinite(lv):
            res["diverged_at"] = step
            print(f"{tag} step {step}: loss {lv}, stopping this run", flush=True)
            break
        if (step + 1) % a.log_every == 0:
            win = [t for i, t in enumerate(times) if i >= max(a.timing_skip, step + 1 - a.log_every)]
            ms = f"{statistics.median(win):7.2f} ms" if win else "  warm-up"
            print(f"{tag} step {step:4d} loss {lv:.4f} lr {a.lr * f:.2e} {ms}", flush=True)
    if res["diverged_at"] is None:
        val.append([a.steps, evaluate(model, val_data, plan["val"], a, backend)])
        print(f"{tag} step {a.steps:4d} val {val[-1][1]:.4f}", flush=True)
    timed = times[a.timing_skip:]
    tail = [lv for _, lv in curve[-a.log_every:]]
    res.update(median_step_ms=statistics.median(timed) if timed else None,
               final_train=sum(tail) / len(tail), final_val=val[-1][1] if val else None)
    return res


def grad_check(a, train_data, plan, backends):
    """Step 0, one model, the first training batch: every parameter's gradient through each backend
    against naive's (relative Frobenius error per parameter)."""
    torch.manual_seed(a.seed)
    model = LM(a).cuda()
    x, y = batch(train_data, plan["train"][0], a.seq_len)
    grads, out = {}, {}
    for backend in ["naive"] + [b for b in backends if b != "naive"]:
        model.zero_grad(set_to_none=True)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            loss = model(x, y, backend)
        loss.backward()
        grads[backend] = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
        out[backend] = {"loss": loss.item()}
        if backend != "naive":
            rel = {n: ((g - grads["naive"][n]).norm() / grads["naive"][n].norm().clamp_min(1e-30)).item()
                   for n, g in grads[backend].items()}
            worst = max(rel, key=rel.get)
            out[backend].update(max_rel_fro=rel[worst], worst_param=worst,
                                median_rel_fro=statistics.median(rel.values()), rel_fro=rel)
    return out


def curve_diff(ra, rb):
    pairs = list(zip(ra["curve"], rb["curve"]))
    if not pairs:
        return None
    d = [(abs(x[1] - y[1]), abs(x[1] - y[1]) / max(abs(y[1]), 1e-12), x[0]) for x, y in pairs]
    i = max(range(len(d)), key=lambda j: d[j][0])
    dv = [abs(x[1] - y[1]) for x, y in zip(ra["val"], rb["val"]) if x[0] == y[0]]
    return {"max_abs": d[i][0], "at_step": d[i][2], "max_rel": max(t[1] for t in d),
            "mean_abs": sum(t[0] for t in d) / len(d), "steps_compared": len(d),
            "val_max_abs": max(dv) if dv else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=("both", "ours", "naive"), default="both")
    ap.add_argument("--compare", dest="backend", action="store_const", const="both",
                    help="both backends, one after the other (the default)")
    ap.add_argument("--control", action="store_true",
                    help="with both backends, a third run: naive-noise, naive with rounding-sized relative noise "
                         "on its output (exact gradients of a perturbed forward): how far rounding alone drifts")
    ap.add_argument("--optimizer", choices=("adamw", "muon", "both"), default="adamw")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--d-ff", type=int, default=768, help="SwiGLU hidden size")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--qk-scale", type=float, default=None, help="tau (default 1/sqrt(head-dim))")
    ap.add_argument("--r-gain-init", type=float, default=1.0, help="initial gain of RMSNorm_r")
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--untied", action="store_true", help="separate LM head (default: tied to the embedding)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--muon-lr", type=float, default=None, help="default: --lr")
    ap.add_argument("--muon-adjust", choices=("match_rms_adamw", "original"), default="match_rms_adamw",
                    help="torch.optim.Muon adjust_lr_fn (match_rms_adamw: AdamW's lr and weight decay carry over)")
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--min-lr-frac", type=float, default=0.1, help="cosine floor, a fraction of the peak lr")
    ap.add_argument("--grad-clip", type=float, default=1.0, help="0: none")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-frac", type=float, default=0.1)
    ap.add_argument("--val-batches", type=int, default=4)
    ap.add_argument("--val-every", type=int, default=50)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--timing-skip", type=int, default=10, help="first steps left out of step times")
    ap.add_argument("--corpus-ext", default="md,py,cc,h")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (default: eager)")
    ap.add_argument("--out", default="train_small.json")
    a = ap.parse_args()
    a.qk_scale = a.qk_scale if a.qk_scale is not None else 1.0 / math.sqrt(a.head_dim)
    if a.heads % a.kv_heads or a.head_dim % 2 or a.steps < 1 or min(a.log_every, a.val_every, a.val_batches) < 1:
        fail(2, "--heads must be a multiple of --kv-heads, --head-dim even, --steps / --log-every / --val-every / "
                "--val-batches positive")

    if not torch.cuda.is_available():
        fail(2, "needs CUDA (torch.cuda.is_available() is False)")
    opt_names = ["adamw", "muon"] if a.optimizer == "both" else [a.optimizer]
    if "muon" in opt_names and not hasattr(torch.optim, "Muon"):
        fail(3, f"torch {torch.__version__} has no torch.optim.Muon (torch >= 2.9 has it)")
    backends = ["ours", "naive"] + (["naive-noise"] if a.control else []) if a.backend == "both" else [a.backend]
    lib = None
    if "ours" in backends:
        try:
            lib = f"{plx.library_version()} ({plx.library_path()})"
        except Exception as e:  # noqa: BLE001  (LibraryNotFoundError and friends)
            fail(2, f"libparallax not found: {e}; set PARALLAX_LIBRARY or build it (see docs/python.md)")

    blob, nfiles, how = corpus(set(a.corpus_ext.split(",")))
    digest = hashlib.sha256(blob).hexdigest()
    n_val = int(len(blob) * a.val_frac)
    if len(blob) - n_val <= a.seq_len + 1 or n_val <= a.seq_len + 1:
        fail(2, f"corpus too small ({len(blob)} bytes) for --seq-len {a.seq_len}")
    data = torch.frombuffer(bytearray(blob), dtype=torch.uint8).long().cuda()
    train_data, val_data = data[:-n_val], data[-n_val:]
    gen = torch.Generator().manual_seed(a.seed + 1)  # same batches for every backend and optimizer
    plan = {"train": torch.randint(0, len(train_data) - a.seq_len - 1, (a.steps, a.batch), generator=gen),
            "val": torch.randint(0, len(val_data) - a.seq_len - 1, (a.val_batches, a.batch), generator=gen)}
    device = torch.cuda.get_device_name()
    print(f"train_small on {device}: torch {torch.__version__}, libparallax {lib}; corpus {nfiles} files, "
          f"{len(blob)} bytes, sha256 {digest[:16]} (train {len(train_data)}, val {n_val}, listed by {how})",
          flush=True)

    n_params = sum(p.numel() for p in LM(a).parameters())
    print(f"model: {n_params / 1e6:.2f} M parameters; backends {', '.join(backends)}; "
          f"optimizers {', '.join(opt_names)}", flush=True)
    result = {"config": vars(a), "n_params": n_params,
              "corpus": {"files": nfiles, "listed_by": how, "bytes": len(blob), "sha256": digest,
                         "train_bytes": len(train_data), "val_bytes": n_val},
              "device": device, "torch": torch.__version__, "parallax_lib": lib,
              "backward": "torch" if os.environ.get("PARALLAX_TORCH_BACKWARD") == "1" else "kernels",
              "runs": [], "diffs": {}}
    if len(backends) > 1:
        gc = result["grad_check"] = grad_check(a, train_data, plan, backends)
        for b in [b for b in backends if b not in ("ours", "naive")] + ["ours"]:
            print(f"step-0 gradients {b} vs naive: max rel_fro {gc[b]['max_rel_fro']:.2e} ({gc[b]['worst_param']}), "
                  f"median {gc[b]['median_rel_fro']:.2e}; loss {gc[b]['loss']:.6f} vs {gc['naive']['loss']:.6f}",
                  flush=True)
    for opt in opt_names:
        runs = {b: train(a, b, opt, train_data, val_data, plan) for b in backends}
        result["runs"] += list(runs.values())
        if len(runs) > 1:
            result["diffs"][opt] = curve_diff(runs["ours"], runs["naive"]) or {}
            if "naive-noise" in runs:
                result["diffs"][opt]["control"] = curve_diff(runs["naive-noise"], runs["naive"])
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")

    print(f"== train_small: {a.steps} steps, batch {a.batch} x {a.seq_len}, {a.layers} layers, d {a.d_model}, "
          f"heads {a.heads}/{a.kv_heads}x{a.head_dim}; final train = mean of the last {a.log_every} steps")
    print(f"{'optimizer':<8} {'backend':<11} {'final train':>11} {'final val':>10} {'median ms':>10}  diverged")
    for r in result["runs"]:
        fv, ms = r["final_val"], r["median_step_ms"]
        print(f"{r['optimizer']:<8} {r['backend']:<11} {r['final_train']:>11.4f} "
              f"{(f'{fv:.4f}' if fv is not None else '-'):>10} {(f'{ms:.2f}' if ms else '-'):>10}  "
              f"{r['diverged_at'] if r['diverged_at'] is not None else 'no'}")
    for opt, d in result["diffs"].items():
        for label, e in (("ours", d), ("naive-noise", d.get("control"))):
            if e:
                dv = "-" if e["val_max_abs"] is None else f"{e['val_max_abs']:.4f}"
                print(f"{opt}: {label} vs naive: max |d train loss| {e['max_abs']:.4f} at step {e['at_step']} "
                      f"(max rel {e['max_rel']:.2%}, mean |d| {e['mean_abs']:.4f} over {e['steps_compared']} steps; "
                      f"max |d val loss| {dv})")
    if a.out:
        print(f"wrote {a.out}", flush=True)


if __name__ == "__main__":
    main()
