"""Train loss vs step of a bench/train_small.py result as a small hand-made SVG (no matplotlib).

Usage: python3 bench/train_plot.py RESULT.json OUT.svg [--smooth N]

One polyline per (optimizer, backend): colour by optimizer and backend, ours solid, naive dashed,
naive-noise dotted; validation losses as dots on the same colour. --smooth N plots the running
mean of the last N steps (default 1: raw).
"""
import argparse
import json
import math
from xml.sax.saxutils import escape

W, H = 760, 440
LEFT, RIGHT, TOP, BOTTOM = 64, 190, 30, 46  # margins; the legend lives in the right one
COLOURS = {("adamw", "ours"): "#1f77b4", ("adamw", "naive"): "#ff7f0e", ("adamw", "naive-noise"): "#7f7f7f",
           ("muon", "ours"): "#2ca02c", ("muon", "naive"): "#d62728", ("muon", "naive-noise"): "#9467bd"}
DASH = {"ours": "", "naive": "6 4", "naive-noise": "2 3"}


def ticks(lo, hi, n=6):
    """About n round tick values covering [lo, hi]."""
    span = hi - lo or 1.0
    step = 10 ** math.floor(math.log10(span / n))
    for m in (1, 2, 2.5, 5, 10):
        if span / (m * step) <= n:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def smooth(ys, n):
    return [sum(ys[max(0, i - n + 1):i + 1]) / (i + 1 - max(0, i - n + 1)) for i in range(len(ys))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("result")
    ap.add_argument("out")
    ap.add_argument("--smooth", type=int, default=1)
    a = ap.parse_args()
    with open(a.result) as f:
        res = json.load(f)
    runs = [r for r in res["runs"] if r["curve"]]
    series = []
    for r in runs:
        steps = [s for s, _ in r["curve"]]
        losses = smooth([v for _, v in r["curve"]], max(1, a.smooth))
        pts = [(s, v) for s, v in zip(steps, losses) if math.isfinite(v)]
        val = [(s, v) for s, v in r.get("val", []) if math.isfinite(v)]
        series.append((r["optimizer"], r["backend"], pts, val))
    xs = [s for *_, pts, val in series for s, _ in pts + val] or [0, 1]
    ys = [v for *_, pts, val in series for _, v in pts + val] or [0, 1]
    x0, x1 = 0, max(xs) or 1
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.04 or 0.1
    y0, y1 = y0 - pad, y1 + pad
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def X(s):
        return LEFT + (s - x0) / (x1 - x0) * pw

    def Y(v):
        return TOP + (y1 - v) / (y1 - y0) * ph

    cfg = res.get("config", {})
    title = (f"train loss, {cfg.get('layers', '?')} layers d{cfg.get('d_model', '?')}, batch {cfg.get('batch', '?')}x"
             f"{cfg.get('seq_len', '?')}, {res.get('device', '')}")
    title += f" (running mean of {a.smooth})" if a.smooth > 1 else ""
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{LEFT}" y="18" font-size="13">{escape(title)}</text>',
           f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>']
    for t in ticks(x0, x1):
        out.append(f'<line x1="{X(t):.1f}" y1="{TOP + ph}" x2="{X(t):.1f}" y2="{TOP + ph + 4}" stroke="#333"/>')
        out.append(f'<text x="{X(t):.1f}" y="{TOP + ph + 16}" text-anchor="middle">{t:g}</text>')
    for t in ticks(y0, y1):
        out.append(f'<line x1="{LEFT}" y1="{Y(t):.1f}" x2="{LEFT + pw}" y2="{Y(t):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{Y(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    out.append(f'<text x="{LEFT + pw / 2}" y="{H - 10}" text-anchor="middle">step</text>')
    out.append(f'<text transform="translate(16 {TOP + ph / 2}) rotate(-90)" text-anchor="middle">'
               'loss (nats/byte)</text>')
    for i, (opt, backend, pts, val) in enumerate(series):
        colour = COLOURS.get((opt, backend), "#000")
        dash = f' stroke-dasharray="{DASH[backend]}"' if DASH.get(backend) else ""
        line = " ".join(f"{X(s):.1f},{Y(v):.1f}" for s, v in pts)
        out.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="1.2"{dash}/>')
        out += [f'<circle cx="{X(s):.1f}" cy="{Y(v):.1f}" r="3" fill="{colour}"/>' for s, v in val]
        ly = TOP + 10 + 18 * i
        out.append(f'<line x1="{LEFT + pw + 12}" y1="{ly}" x2="{LEFT + pw + 40}" y2="{ly}" stroke="{colour}" '
                   f'stroke-width="2"{dash}/>')
        out.append(f'<text x="{LEFT + pw + 46}" y="{ly + 4}">{escape(f"{opt} {backend}")}</text>')
    ly = TOP + 10 + 18 * len(series)
    out.append(f'<circle cx="{LEFT + pw + 26}" cy="{ly}" r="3" fill="#555"/>')
    out.append(f'<text x="{LEFT + pw + 46}" y="{ly + 4}">validation</text>')
    out.append("</svg>")
    with open(a.out, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"wrote {a.out}: {len(series)} curves")


if __name__ == "__main__":
    main()
