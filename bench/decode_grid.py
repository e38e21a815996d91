#!/usr/bin/env python3
"""The whole decode grid of issue #16 ("Hopper decode") in one call: our Parallax decode
(plx_decode_bench, probe learned: the portable default and the decode_sm90 schedules) against
torch SDPA (bench/sdpa_decode.py), contiguous and paged, joined into one JSON with a summary
and a short table printed last.

Each subprocess's stdout/stderr is kept under <out dir>/decode-grid-logs/ and the JSON is
rewritten after every subprocess, so a call cut off by its time limit still leaves what it
measured; --from-logs DIR joins such logs again without running anything (no GPU needed).

A bench process that dies (a device fault exits it) or hangs loses only the (shape, schedule)
it was timing: the driver notes that one as failed and starts a fresh process for the rest.

Usage (repo root, on the GPU host, LD_LIBRARY_PATH / PARALLAX_LIBRARY set):
  python3 bench/decode_grid.py [--only mha,gqa32,gqa16] [--no-sdpa] [--no-paged]
  python3 bench/decode_grid.py --from-logs DIR --out grid.json
Stdlib only."""
import argparse
import datetime
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
D = 128

# The issue's grid. Paged page sizes apply to the GQA configs only (the issue asks no paged MHA).
CONFIGS = {
    "mha": {"hq": 8, "hkv": 8, "B": (1, 32), "L": (512, 1024, 4096, 16384), "pages": ()},
    "gqa32": {"hq": 32, "hkv": 8, "B": (1, 8, 32, 128), "L": (1024, 4096, 16384, 65536), "pages": (16, 64)},
    "gqa16": {"hq": 16, "hkv": 8, "B": (1, 8, 32, 128), "L": (1024, 4096, 16384, 65536), "pages": (16, 64)},
}

SM90_SCHEDULES = [
    "wgmma-n128-w4-s3-split8-gG-cluster",
    "wgmma-n64-w4-s4-split8-gG-cluster",
    "wgmma-n64-w4-s6-split8-gG-cluster",
    "wgmma-n64-w4-s4-split4-gG-cluster",
    "wgmma-n128-w4-s3-splitauto-gG",
    "wgmma-n64-w4-s6-splitauto-gG",
]

SDPA_BACKENDS = ("flash", "cudnn", "efficient")
BIG_KV = 256 << 20  # the issue's ">= 90% of copy bandwidth where KV >= 256 MB" (B=1 L=64k is exactly this)
T0 = time.time()


def log(msg):
    print(f"[grid] {msg} ({time.time() - T0:.0f} s)", file=sys.stderr, flush=True)


def kv_bytes(cfg, B, L):
    return 2 * B * L * cfg["hkv"] * D * 2  # K and V, bf16


def shapes_arg(shapes):
    return ",".join(f"{B}x{L}" for B, L in shapes)


def load_json(path):
    with open(path) as f:
        return json.load(f)


def json_lines(path, offset=0):
    """The JSON objects of a log from byte `offset` on; anything else (tables, attempt markers, a
    line cut off by a kill) is skipped."""
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        f.seek(offset)
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return out


# ---- running -----------------------------------------------------------------------------

class Job:
    """One measurement (ours at one layout, or SDPA) of one config, as an ordered list of units
    the subprocess reports one JSON line each for, so a crash can be resumed past its culprit."""

    def __init__(self, name, units, command_for, unit_of):
        self.name = name            # also the log file's stem
        self.units = units          # in the order the subprocess times them
        self.command_for = command_for  # pending units -> [(argv, its units)], one per subprocess
        self.unit_of = unit_of      # JSON line -> unit or None


def ours_job(args, name, cfg, paged):
    shapes = [(B, L) for B in cfg["B"] for L in cfg["L"]]
    # decode_sm90 serves pages of 8 keys and more by TMA boxes: paged layouts time its schedules too.
    schedules = ["default"] + args.sm90
    units = [(B, L, s) for B, L in shapes for s in schedules]

    def command_for(pending):
        # One process per distinct schedule list, shapes kept in order: after a crash the culprit
        # shape's remaining schedules form one list and the untouched shapes another.
        groups = {}
        for B, L, s in pending:
            groups.setdefault((B, L), []).append(s)
        by_list = {}
        for shape, scheds in groups.items():
            by_list.setdefault(tuple(scheds), []).append(shape)
        return [([args.bench, "--hq", str(cfg["hq"]), "--hkv", str(cfg["hkv"]), "--d", str(D),
                  "--paged", str(paged), "--probe", "learned", "--shapes", shapes_arg(sh),
                  "--schedules", ",".join(sc)],
                 [(B, L, s) for B, L in sh for s in sc]) for sc, sh in by_list.items()]

    def unit_of(r):
        if "schedule" in r and r.get("probe") == "learned":
            return (r["B"], r["L"], r["schedule"])
        return None

    return Job(name, units, command_for, unit_of)


def sdpa_job(args, name, cfg):
    units = [(B, L) for B in cfg["B"] for L in cfg["L"]]

    def command_for(pending):
        return [([sys.executable, args.sdpa, str(cfg["hq"]), str(cfg["hkv"]), "--shapes", shapes_arg(pending)], pending)]

    def unit_of(r):
        return (r["B"], r["L"]) if "B" in r and "L" in r else None

    return Job(name, units, command_for, unit_of)


def run_one(argv, log_path, err_path, timeout_s):
    """Runs argv with stdout/stderr appended to the log files as they come (a kill of the whole
    call still leaves them). Returns (rc, seconds); rc None on timeout."""
    t = time.time()
    with open(log_path, "a") as out, open(err_path, "a") as err:
        for f in (out, err):
            f.write(f"# $ {shlex.join(argv)}\n")
            f.flush()
        # Own process group: a timeout kills the subprocess and anything it started, nothing else.
        # Unbuffered: a Python child killed mid-run still leaves every line it printed.
        p = subprocess.Popen(argv, stdout=out, stderr=err, start_new_session=True,
                             env=dict(os.environ, PYTHONUNBUFFERED="1"))
        try:
            rc = p.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            rc = None
            err.write(f"# killed after {timeout_s} s\n")
    return rc, time.time() - t


def run_job(job, logs_dir, args, runs):
    """Runs job until every unit reported or was blamed for a crash; appends to runs."""
    log_path = os.path.join(logs_dir, job.name + ".log")
    err_path = os.path.join(logs_dir, job.name + ".err")
    failed = []  # units a subprocess died on
    for attempt in range(1 + args.retries):
        done = {job.unit_of(r) for r in json_lines(log_path)}
        pending = [u for u in job.units if u not in done and u not in failed]
        if not pending:
            break
        start = os.path.getsize(log_path) if os.path.exists(log_path) else 0
        died = []  # the units of the subprocesses that failed
        for argv, units in job.command_for(pending):
            log(f"{job.name}: running {len(units)} measurements" + (f" (retry {attempt})" if attempt else ""))
            rc, secs = run_one(argv, log_path, err_path, args.timeout_s)
            runs.append({"job": job.name, "command": shlex.join(argv), "rc": rc, "seconds": round(secs, 1)})
            status = "ok" if rc == 0 else ("TIMED OUT" if rc is None else f"FAILED rc={rc}")
            log(f"{job.name}: {status} after {secs:.0f} s")
            if rc != 0:
                died += units
                with open(err_path) as f:
                    tail = [l for l in f.read().splitlines() if not l.startswith("#")][-3:]
                for l in tail:
                    log(f"{job.name}:   {l[:200]}")
        if not died:  # units still missing were skipped by the program itself (e.g. too large)
            break
        done = {job.unit_of(r) for r in json_lines(log_path)}
        pending = [u for u in died if u not in done]
        if not pending:
            break
        # No line at all from this attempt (not even the bench's copy bandwidth or SDPA's device
        # line): the process cannot start here (no GPU, bad binary), so another one would not either.
        if not json_lines(log_path, start):
            log(f"{job.name}: the process never started measuring; not retrying")
            break
        # The subprocesses time units in order, so the first missing one is what it died on.
        failed.append(pending[0])
        log(f"{job.name}: {pending[0]} blamed for the failure; {len(pending) - 1} left"
            + ("" if attempt < args.retries else ", no retries left: they stay unmeasured"))
    with open(os.path.join(logs_dir, job.name + ".failed.json"), "w") as f:
        json.dump([list(u) for u in failed], f)


# ---- joining -----------------------------------------------------------------------------

def config_of(hq, hkv):
    for name, cfg in CONFIGS.items():
        if (cfg["hq"], cfg["hkv"]) == (hq, hkv):
            return name
    return None


def load_logs(logs_dir):
    """The measurements of every .log under logs_dir, keyed by what their lines say (heads,
    paged), not by file names, so logs from separate calls can be dropped into one folder."""
    ours, sdpa, meta = {}, {}, {"copy_gbps": [], "replay_floor_us": [], "device": None, "torch": None}
    failed = {}
    for fn in sorted(os.listdir(logs_dir)):
        path = os.path.join(logs_dir, fn)
        if fn.endswith(".failed.json"):
            failed[fn[: -len(".failed.json")]] = [tuple(u) for u in load_json(path)]
            continue
        if not fn.endswith(".log"):
            continue
        heads = None  # sdpa_decode.py names its heads once, in its first line
        for r in json_lines(path):
            if "copy_gbps" in r:
                meta["copy_gbps"].append(r["copy_gbps"])
            elif "replay_floor_us" in r:
                meta["replay_floor_us"].append(r["replay_floor_us"])
            elif "device" in r:
                meta["device"] = meta["device"] or r["device"]
                meta["torch"] = meta["torch"] or r.get("torch")
                heads = (r.get("hq"), r.get("hkv"))
            elif "schedule" in r and r.get("probe") == "learned":
                cfg = config_of(r["hq"], r["hkv"])
                if cfg:  # later lines win: a re-run replaces an earlier measurement
                    ours[(cfg, r["paged"], r["B"], r["L"], r["schedule"])] = r
            elif "B" in r and "flash" in r and heads:
                cfg = config_of(*heads)
                if cfg:
                    sdpa[(cfg, r["B"], r["L"])] = r
    return ours, sdpa, meta, failed


def valid(us):
    return us if us is not None and us > 0 else None


def ratio(a, b):
    return round(a / b, 3) if a and b else None


def join(ours, sdpa, meta, failed, configs, sm90, paged_on, present=None):
    copy = max(meta["copy_gbps"]) if meta["copy_gbps"] else None  # one per bench process; the best is the hardware's
    rows = []
    for name in configs:
        cfg = CONFIGS[name]
        layouts = [0] + (list(cfg["pages"]) if paged_on else [])
        if present is not None:
            layouts = [p for p in layouts if (name, p) in present]
        for paged in layouts:
            for B in cfg["B"]:
                for L in cfg["L"]:
                    d = ours.get((name, paged, B, L, "default"), {})
                    row = {"config": name, "hq": cfg["hq"], "hkv": cfg["hkv"], "d": D, "paged": paged, "B": B, "L": L,
                           "ours_default_us": valid(d.get("us")), "ours_default_variant": d.get("variant"),
                           "ours_default_splits": d.get("splits")}
                    times = {}
                    if not paged or any((name, paged, B, L, s) in ours for s in sm90):
                        for s in sm90:
                            r = ours.get((name, paged, B, L, s))
                            times[s] = valid(r["us"]) if r else None
                        row["sm90_us"] = times
                        row["sm90_variants"] = {s: ours[(name, paged, B, L, s)].get("variant") for s in sm90
                                                if (name, paged, B, L, s) in ours}
                    ok = {s: t for s, t in times.items() if t}
                    best_s = min(ok, key=ok.get) if ok else None
                    row["ours_sm90_best_us"] = ok.get(best_s)
                    row["ours_sm90_best_schedule"] = best_s
                    cands = [t for t in (row["ours_default_us"], row["ours_sm90_best_us"]) if t]
                    row["ours_best_us"] = min(cands) if cands else None
                    # SDPA is not paged: paged rows compare with the contiguous baseline, as the issue does.
                    s = sdpa.get((name, B, L), {})
                    row["sdpa"] = {k: s.get(k) for k in SDPA_BACKENDS}
                    errs = {k: s[k + "_error"] for k in SDPA_BACKENDS if s.get(k + "_error")}
                    if errs:
                        row["sdpa_errors"] = errs
                    best = [t for t in row["sdpa"].values() if t]
                    row["sdpa_best_us"] = min(best) if best else None
                    row["naive_parallax_us"] = s.get("naive_parallax")
                    row["ratio_vs_sdpa"] = ratio(row["ours_best_us"], row["sdpa_best_us"])
                    row["kv_bytes"] = kv_bytes(cfg, B, L)
                    row["pct_copy_bw"] = (round(100 * row["kv_bytes"] / (row["ours_best_us"] * 1e-6) / 1e9 / copy, 1)
                                          if row["ours_best_us"] and copy else None)
                    # Units a subprocess died on (their processes were restarted past them).
                    lost = [u[2] for u in failed.get(job_name(name, paged), []) if tuple(u[:2]) == (B, L)]
                    lost += ["sdpa"] if (B, L) in failed.get(f"sdpa-{name}", []) else []
                    if lost:
                        row["crashed"] = lost
                    rows.append(row)
    contig = {(r["config"], r["B"], r["L"]): r["ours_best_us"] for r in rows if not r["paged"]}
    for r in rows:
        if r["paged"]:
            r["ratio_vs_contiguous"] = ratio(r["ours_best_us"], contig.get((r["config"], r["B"], r["L"])))
    return rows, copy


def summarize(rows):
    out = {}
    for r in rows:
        out.setdefault(r["config"], {}).setdefault("contiguous" if not r["paged"] else f"paged{r['paged']}", []).append(r)
    summary = {}
    for cfg, layouts in out.items():
        for layout, rs in layouts.items():
            rated = [r for r in rs if r["ratio_vs_sdpa"]]
            s = {"shapes": len(rs), "shapes_with_ratio": len(rated)}
            if rated:
                s["geomean_ratio_vs_sdpa"] = round(math.exp(sum(math.log(r["ratio_vs_sdpa"]) for r in rated) / len(rated)), 3)
                worst = max(rated, key=lambda r: r["ratio_vs_sdpa"])
                s["max_ratio_vs_sdpa"] = worst["ratio_vs_sdpa"]
                s["max_ratio_vs_sdpa_at"] = f"B={worst['B']} L={worst['L']}"
            big = [r for r in rs if r["kv_bytes"] >= BIG_KV and r["pct_copy_bw"]]
            if big:
                low = min(big, key=lambda r: r["pct_copy_bw"])
                s["min_pct_copy_bw_kv_ge_256MiB"] = low["pct_copy_bw"]
                s["min_pct_copy_bw_at"] = f"B={low['B']} L={low['L']}"
            vc = [r for r in rs if r.get("ratio_vs_contiguous")]
            if vc:
                worst = max(vc, key=lambda r: r["ratio_vs_contiguous"])
                s["max_ratio_vs_contiguous"] = worst["ratio_vs_contiguous"]
                s["max_ratio_vs_contiguous_at"] = f"B={worst['B']} L={worst['L']}"
            summary.setdefault(cfg, {})[layout] = s
    return summary


def job_name(config, paged):
    return f"ours-{config}-" + (f"paged{paged}" if paged else "contig")


# ---- output ------------------------------------------------------------------------------

def fmt(x, spec=".1f"):
    return format(x, spec) if x is not None else "-"


def fmt_us(x):
    return fmt(x, ".2f" if x is not None and x < 100 else ".1f")  # B=1 targets differ by tenths of a us


def short(schedule):
    return (schedule or "").replace("wgmma-", "").replace("-gG", "")


def table(rows, summary, meta_line):
    lines = [meta_line,
             f"{'config':<6} {'paged':>5} {'B':>4} {'L':>6} {'default':>9} {'sm90 best':>9} {'(schedule)':<25} "
             f"{'SDPA best':>9} {'ours/SDPA':>9} {'%copy':>6} {'paged/contig':>12}"]
    for r in rows:
        lines.append(f"{r['config']:<6} {r['paged'] or '-':>5} {r['B']:>4} {r['L']:>6} {fmt_us(r['ours_default_us']):>9} "
                     f"{fmt_us(r['ours_sm90_best_us']):>9} {short(r['ours_sm90_best_schedule']):<25} "
                     f"{fmt_us(r['sdpa_best_us']):>9} {fmt(r['ratio_vs_sdpa'], '.2f'):>9} {fmt(r['pct_copy_bw'], '.0f'):>6} "
                     f"{fmt(r.get('ratio_vs_contiguous'), '.2f'):>12}"
                     + ("  crashed: " + ",".join(short(s) for s in r["crashed"]) if r.get("crashed") else ""))
    for cfg, layouts in summary.items():
        for layout, s in layouts.items():
            parts = [f"geomean ours/SDPA {fmt(s.get('geomean_ratio_vs_sdpa'), '.2f')}",
                     f"max {fmt(s.get('max_ratio_vs_sdpa'), '.2f')} ({s.get('max_ratio_vs_sdpa_at', '-')})"]
            if "min_pct_copy_bw_kv_ge_256MiB" in s:
                parts.append(f"min %copy (KV>=256MiB) {s['min_pct_copy_bw_kv_ge_256MiB']:.0f} ({s['min_pct_copy_bw_at']})")
            if "max_ratio_vs_contiguous" in s:
                parts.append(f"max paged/contig {s['max_ratio_vs_contiguous']:.2f} ({s['max_ratio_vs_contiguous_at']})")
            lines.append(f"{cfg} {layout}: " + "; ".join(parts) + f"  [{s['shapes_with_ratio']}/{s['shapes']} shapes]")
    return "\n".join(lines)


def write_result(args, logs_dir, configs, runs):
    ours, sdpa, meta, failed = load_logs(logs_dir)
    present = None
    if args.from_logs:  # a folder may hold any subset: keep the configs and layouts it has data for
        present = {k[:2] for k in ours} | {(k[0], 0) for k in sdpa}
    sm90 = args.sm90
    if sm90 is None:  # only --from-logs leaves it unset: the schedules the logs timed, the default list's first
        found = {k[4] for k in ours if k[4] != "default" and k[1] == 0}
        sm90 = [s for s in SM90_SCHEDULES if s in found] + sorted(found - set(SM90_SCHEDULES))
    rows, copy = join(ours, sdpa, meta, failed, configs, sm90, not args.no_paged, present)
    summary = summarize(rows)
    floors = meta["replay_floor_us"]
    result = {
        "meta": {"device": meta["device"], "torch": meta["torch"], "date": datetime.date.today().isoformat(),
                 "copy_gbps": copy, "copy_gbps_all": meta["copy_gbps"],
                 "replay_floor_us": min(floors) if floors else None,
                 "command": shlex.join([sys.executable] + sys.argv), "logs": logs_dir,
                 "what": "decode, bf16, D=128, probe learned (ours) vs torch SDPA; CUDA-graph replay, median of 7 "
                         "trials, us; ratio_vs_sdpa = ours_best / sdpa_best (paged rows: against contiguous SDPA); "
                         "pct_copy_bw = KV bytes read / ours_best time as % of the copy bandwidth (read+write)",
                 "sm90_schedules": sm90, "runs": runs},
        "rows": rows,
        "summary": summary,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(args.out + ".tmp", args.out)  # a kill mid-write leaves the previous JSON whole
    meta_line = (f"device {meta['device'] or '?'}; copy {fmt(copy)} GB/s; replay floor "
                 f"{fmt(result['meta']['replay_floor_us'], '.2f')} us; times in us")
    return table(rows, summary, meta_line)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default=".carry/bin/plx_decode_bench", help="plx_decode_bench binary (default %(default)s)")
    ap.add_argument("--sdpa", default=os.path.join(HERE, "sdpa_decode.py"), help="SDPA baseline script")
    out_default = os.path.join(os.environ["OUT"], "decode-grid.json") if os.environ.get("OUT") else "decode-grid.json"
    ap.add_argument("--out", default=out_default, help="JSON result (default %(default)s); logs go next to it")
    ap.add_argument("--only", default=",".join(CONFIGS), help="configs to run, of " + ",".join(CONFIGS))
    ap.add_argument("--sm90", type=lambda s: [x for x in s.split(",") if x],
                    help="decode_sm90 schedules timed on contiguous shapes (comma list; 'gG' filled in by the "
                         "bench; default " + ",".join(SM90_SCHEDULES) + "; with --from-logs: those in the logs)")
    ap.add_argument("--no-sdpa", action="store_true", help="skip the SDPA baseline")
    ap.add_argument("--no-paged", action="store_true", help="skip the paged layouts")
    ap.add_argument("--timeout-s", type=float, default=240, help="limit per subprocess (default %(default)s)")
    ap.add_argument("--retries", type=int, default=3,
                    help="fresh processes per job after a crash or timeout, each past the unit it died on (default %(default)s)")
    ap.add_argument("--from-logs", metavar="DIR", help="join the logs in DIR (of an earlier call) instead of running")
    args = ap.parse_args()
    configs = [c for c in args.only.split(",") if c]
    bad = [c for c in configs if c not in CONFIGS]
    if bad:
        ap.error(f"--only: unknown config(s) {','.join(bad)}; known: {','.join(CONFIGS)}")

    if args.from_logs:
        runs_path = os.path.join(args.from_logs, "runs.json")
        runs = load_json(runs_path) if os.path.exists(runs_path) else []
        print(write_result(args, args.from_logs, configs, runs))
        return 0

    args.sm90 = args.sm90 or SM90_SCHEDULES
    if not os.access(args.bench, os.X_OK):
        log(f"no executable bench at {args.bench}; running nothing of ours")
    logs_dir = os.path.join(os.path.dirname(os.path.abspath(args.out)), "decode-grid-logs")
    if os.path.isdir(logs_dir) and os.listdir(logs_dir):
        # The logs are also the resume state (measured units are not re-run), so an earlier
        # call's logs would silently stand in for this one's: keep them aside instead.
        old = logs_dir + time.strftime(".%Y%m%d-%H%M%S", time.localtime(os.path.getmtime(logs_dir)))
        os.rename(logs_dir, old)
        log(f"earlier logs moved to {old}")
    os.makedirs(logs_dir, exist_ok=True)
    jobs = []
    for name in configs:
        cfg = CONFIGS[name]
        # Contiguous first, SDPA next, paged last: a call cut short keeps the headline numbers.
        if os.access(args.bench, os.X_OK):
            jobs.append(ours_job(args, job_name(name, 0), cfg, 0))
        if not args.no_sdpa:
            jobs.append(sdpa_job(args, f"sdpa-{name}", cfg))
        if os.access(args.bench, os.X_OK) and not args.no_paged:
            jobs += [ours_job(args, job_name(name, p), cfg, p) for p in cfg["pages"]]
    runs = []
    for job in jobs:
        run_job(job, logs_dir, args, runs)
        with open(os.path.join(logs_dir, "runs.json"), "w") as f:
            json.dump(runs, f, indent=1)
        write_result(args, logs_dir, configs, runs)
    text = write_result(args, logs_dir, configs, runs)
    log(f"done: {args.out}")
    print(text)
    return 0 if all(r["rc"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
