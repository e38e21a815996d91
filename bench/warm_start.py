#!/usr/bin/python3
"""Warm start across GPU models (issue #17 part 4), measured on one GPU with the real CLI.

On the GPU in hand (an H200 for the issue's figure), over a few decode buckets of one preset:

  (a) `tune --strategy exhaustive`: every candidate with full samples -> the best per bucket;
  (b) `tune` (guided) into an empty database: the cold start;
  (c) `tune` (guided) into an empty database with `--seed-db SEED`, SEED holding configs
      tuned on ANOTHER GPU model (an H100: built from bench/results, see below);

then, for (b) and (c) per bucket, from their databases: how many measurements and how many
seconds from the unit's start until a measured config is within 2% of (a)'s best, the pick's
ratio to (a)'s best, and the whole run's wall time and measurement count. A unit's start is
the previous unit's last measurement (the run's start for the first: worker start-up
included), units running one after another on the one GPU. Then (--tight S, default 1 s) (b)
and (c) again under a budget of S seconds per bucket, for the pick a short tune ends with. All runs share one kernel cache: (a) compiles, the others find every
kernel compiled, so (b) and (c) differ only by their seeds.

The seed database. There is no H100 here, but bench/results holds what H100 tunes found:
tune-qwen3-0.6b-h100-2026-11-23.json (`db show --json` of a 16-bucket guided tune: best
configs, device row) and tune-compare-h100-2026-11-24.json (exhaustive and guided bests of 4
buckets). `parallax db export` writes SQLite (VACUUM INTO), not JSON, and `db import` reads
SQLite, so those JSON files cannot be imported as they are: this script converts them. It
makes an empty database at this build's schema with the CLI itself (`tune --shard 2/2` of
one bucket: a shard with no work creates its database and exits, no GPU needed), writes the
H100 device, the problem, the variants, one ok measurement per known (bucket, variant, time)
and the best configs with sqlite3, then checks the file the way any foreign file is checked:
`parallax db import` into a scratch database (schema and every row validated as untrusted
input; the import must succeed). The H100 results are generator v2 (this build is newer):
warm start accepts configs of older generators as seeds (only measured first, never trusted),
and the run record shows the source's generator version.

Writes OUT/warm_start.json (every report, the per-bucket figures) and the tune logs, and
prints a short table last. Standard library only. Default grid: qwen3-0.6b decode, batch
{1,8,32} x seqlen {1k,4k,16k}, splits {auto,8} with fused twins (512 candidates a bucket);
about 2 minutes on an H200, the exhaustive run most of it.

    python3 bench/warm_start.py --cli .carry/bin/parallax --out "$OUT"

With a test build of the CLI (tests/search's plx_search_cli) and its fake-GPU hooks it runs on
a CPU (the plumbing only: fake times do not depend on the GPU):

    PARALLAX_TEST_FAKE_GPU="NVIDIA H200" PARALLAX_TEST_WORKER=build/tests/search/plx_fake_worker \\
        python3 bench/warm_start.py --cli build/tests/search/plx_search_cli --out /tmp/ws
"""

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
H100_TUNE = "tune-qwen3-0.6b-h100-2026-11-23.json"
H100_COMPARE = "tune-compare-h100-2026-11-24.json"
WITHIN = 1.02


def log(*a):
    print("warm_start:", *a, file=sys.stderr, flush=True)


def run(cmd, timeout, logfile=None, check=True):
    """Runs cmd; returns (rc, stdout, seconds). stderr goes to logfile (appended) when given."""
    t0 = time.time()
    with open(logfile, "a") if logfile else open(os.devnull, "w") as err:
        if logfile:
            err.write("$ " + " ".join(cmd) + "\n")
            err.flush()
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, timeout=timeout)
            rc, out = p.returncode, p.stdout
        except subprocess.TimeoutExpired as e:
            rc, out = 124, (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
    dt = time.time() - t0
    if check and rc != 0:
        raise RuntimeError("%s: exit %d (see %s)" % (" ".join(cmd[:3]), rc, logfile or "stderr"))
    return rc, out, dt


# ---------------------------------------------------------------- the H100 seed database


def v3_fingerprint(old):
    """cache/device_key.h's DeviceKey: drop driver=, mem=<MiB>MiB -> mem=<round GiB>GiB."""
    out = []
    for i, f in enumerate(old.split("|")):
        if i > 0 and f.startswith("driver="):
            continue
        if i > 0 and f.startswith("mem=") and f.endswith("MiB"):
            f = "mem=%dGiB" % ((int(f[4:-3]) + 512) >> 10)
        out.append(f)
    return "|".join(out)


def h100_results(results):
    """(device row, problem key, {bucket: {key: median_us}}, generator version) from bench/results."""
    tune = json.load(open(os.path.join(results, H100_TUNE)))
    show = tune["db_show.json"]
    dev = dict(show["devices"][0])
    dev["fingerprint"] = v3_fingerprint(dev["fingerprint"])
    gens = {c["generator_version"] for c in show["best_configs"]}
    problem = show["best_configs"][0]["problem_key"]
    known = {}
    for c in show["best_configs"]:
        if c["problem_key"] == problem:
            known.setdefault(c["bucket"], {})[c["variant_key"]] = c["median_us"]
    try:
        cmp_ = json.load(open(os.path.join(results, H100_COMPARE)))
        for report in cmp_["reports"].values():
            if report.get("problem") != problem:
                continue
            for b in report["buckets"]:
                if b.get("best"):
                    old = known.setdefault(b["bucket"], {}).get(b["best"])
                    known[b["bucket"]][b["best"]] = min(old, b["best_us"]) if old else b["best_us"]
    except (OSError, KeyError, ValueError) as e:
        log("skipping", H100_COMPARE, e)
    return dev, problem, known, max(gens), tune.get("commit", "")


def build_seed_db(cli, path, results, work, logfile):
    """The H100's tuned configs as a tuning database of this build's schema (see the module doc)."""
    dev, problem, known, gen, commit = h100_results(results)
    for s in ("", "-wal", "-shm"):
        if os.path.exists(path + s):
            os.remove(path + s)
    # A shard with no work creates its database and exits 0 (no GPU): this build's schema.
    run([cli, "tune", "--preset", "qwen3-0.6b", "--batch", "1", "--seqlen", "1024", "--shard", "2/2", "--db", path],
        60, logfile)
    c = sqlite3.connect(path)
    now = int(time.time() * 1000)
    c.execute("INSERT INTO devices (id, fingerprint, name, sm_count, cc_major, cc_minor, clock_khz, mem_bytes, "
              "l2_bytes, driver_version, nvrtc_version, created_at) VALUES (1,?,?,?,?,?,?,?,?,?,?,?)",
              (dev["fingerprint"], dev["name"], dev["sm_count"], dev["cc_major"], dev["cc_minor"], dev["clock_khz"],
               dev["mem_bytes"], dev["l2_bytes"], dev["driver_version"], dev["nvrtc_version"], now))
    c.execute("INSERT INTO problems (id, key, json) VALUES (1, ?, '{}')", (problem,))
    vids = {}
    for bucket in sorted(known):
        for key, us in sorted(known[bucket].items(), key=lambda kv: kv[1]):
            vid = vids.setdefault(key, len(vids) + 1)
            c.execute("INSERT OR IGNORE INTO variants (id, key, generator_version) VALUES (?, ?, ?)", (vid, key, gen))
            c.execute("INSERT INTO measurements (run_id, device_id, problem_id, variant_id, bucket, status, median_us, "
                      "min_us, max_us, reps, error_text, rel_error, measured_at, generator_version, nvrtc_version) "
                      "VALUES (NULL, 1, 1, ?, ?, 'ok', ?, ?, ?, 20, '', NULL, ?, ?, ?)",
                      (vid, bucket, us, us, us, now, gen, dev["nvrtc_version"]))
        key, us = min(known[bucket].items(), key=lambda kv: kv[1])
        c.execute("INSERT INTO best_configs (device_id, problem_key, bucket, variant_key, median_us, "
                  "generator_version, nvrtc_version, updated_at) VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
                  (problem, bucket, key, us, gen, dev["nvrtc_version"], now))
    c.commit()
    c.close()
    # Checked as any foreign file is: `db import` validates its schema and every row.
    scratch = os.path.join(work, "import-check.db")
    _, out, _ = run([cli, "db", "import", path, "--db", scratch, "--json"], 120, logfile)
    stats = json.loads(out)
    return {"path": path, "device": dev["fingerprint"], "problem": problem, "generator_version": gen,
            "from": [H100_TUNE, H100_COMPARE], "commit_of_the_h100_runs": commit,
            "buckets": {b: sorted(k.items(), key=lambda kv: kv[1]) for b, k in known.items()},
            "import_check": stats}


# ---------------------------------------------------------------- tunes and their traces


def tune(cli, args, name, db, cache, work, extra, budget, timeout):
    logfile = os.path.join(args.out, "warm_start_%s.log" % name)
    cmd = [cli, "tune", "--preset", args.preset, "--batch", args.batch, "--seqlen", args.seqlen,
           "--splits", args.splits, "--budget", str(budget), "--db", db, "--cache-dir", cache, "--json"] + extra
    if args.no_fused:
        cmd.append("--no-fused")
    log("%s: %s" % (name, " ".join(cmd[1:])))
    rc, out, wall = run(cmd, timeout, logfile, check=False)
    try:
        report = json.loads(out)
    except ValueError:
        report = {"error": "exit %d, no JSON (see %s)" % (rc, os.path.basename(logfile)), "buckets": []}
    report["rc"] = rc
    report["process_wall_s"] = wall
    return report


def trace(db):
    """Per bucket, this database's measurements in order: (seconds since the unit's start, key, median or None)."""
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    start = c.execute("SELECT MIN(started_at) FROM tuning_runs").fetchone()[0]
    rows = c.execute("SELECT m.bucket, v.key, m.status, m.median_us, m.measured_at FROM measurements m "
                     "JOIN variants v ON v.id = m.variant_id ORDER BY m.id").fetchall()
    c.close()
    out, prev_end, last_bucket = {}, start, None
    for bucket, key, status, med, at in rows:
        if bucket != last_bucket:  # units run one after another on one GPU
            unit_start = prev_end
            last_bucket = bucket
        out.setdefault(bucket, []).append(((at - unit_start) / 1000.0, key, med if status == "ok" else None))
        prev_end = at
    return out


def reach(tr, best_us):
    """(measurements, seconds) until a measured median is within WITHIN of best_us; (None, None) if never."""
    for i, (t, _key, med) in enumerate(tr):
        if med is not None and med <= WITHIN * best_us:
            return i + 1, round(t, 3)
    return None, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cli", default=".carry/bin/parallax", help="the parallax CLI (default .carry/bin/parallax)")
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/parallax-out"))
    ap.add_argument("--results", default=RESULTS, help="where the H100 results are (bench/results)")
    ap.add_argument("--seed-db", help="use this seed database instead of building one from the H100 results")
    ap.add_argument("--preset", default="qwen3-0.6b")
    ap.add_argument("--batch", default="1,8,32")
    ap.add_argument("--seqlen", default="1024,4096,16384")
    ap.add_argument("--splits", default="0,8", help="split counts (0,8 keeps every H100 winner of these buckets in the space)")
    ap.add_argument("--no-fused", action="store_true")
    ap.add_argument("--exhaustive-budget", type=float, default=200, help="seconds; a bucket it does not finish is flagged")
    ap.add_argument("--tight", type=float, default=1.0,
                    help="seconds per bucket for the budget-limited pair (0: skip it)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--first", type=int, default=24, help="measurements per bucket and run listed in the JSON")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    cli = os.path.abspath(args.cli)
    lib = os.path.join(os.getcwd(), ".carry", "lib")
    if os.path.isdir(lib):
        os.environ["LD_LIBRARY_PATH"] = lib + ":/usr/local/cuda/lib64:" + os.environ.get("LD_LIBRARY_PATH", "")
    _, help_text, _ = run([cli, "tune", "--help"], 30)
    if "--seed-db" not in help_text:
        sys.exit("warm_start: %s has no `tune --seed-db` (build it from a tree with warm start)" % cli)
    work = tempfile.mkdtemp(prefix="warm-start.")
    cache = os.path.join(work, "kernels")
    t_all = time.time()
    result = {"what": "warm start across GPU models: exhaustive vs guided cold vs guided seeded from another GPU "
                      "model's tuned configs; measurements and seconds to reach within 2% of the exhaustive best",
              "cli": cli, "preset": args.preset, "batch": args.batch, "seqlen": args.seqlen, "splits": args.splits,
              "fused": not args.no_fused, "within": WITHIN}
    try:
        _, dev, _ = run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"], 30,
                        check=False) if shutil.which("nvidia-smi") else (0, "", 0)
        result["device"] = dev.strip() or os.environ.get("PARALLAX_TEST_FAKE_GPU", "?")
        if args.seed_db:
            seed = {"path": os.path.abspath(args.seed_db)}
        else:
            seed = build_seed_db(cli, os.path.join(work, "seed-h100.db"), args.results, work,
                                 os.path.join(args.out, "warm_start_seed.log"))
        result["seed_db"] = seed
        runs = {}
        runs["exhaustive"] = tune(cli, args, "exhaustive", os.path.join(work, "exhaustive.db"), cache, work,
                                  ["--strategy", "exhaustive"], args.exhaustive_budget, args.exhaustive_budget + 120)
        runs["cold"] = tune(cli, args, "cold", os.path.join(work, "cold.db"), cache, work, [], 0, 300)
        runs["seeded"] = tune(cli, args, "seeded", os.path.join(work, "seeded.db"), cache, work,
                              ["--seed-db", seed["path"]], 0, 300)
        if args.tight > 0:
            tight = args.tight * len(runs["exhaustive"].get("buckets", []))
            result["tight_budget_s"] = tight
            runs["cold_tight"] = tune(cli, args, "cold_tight", os.path.join(work, "cold_tight.db"), cache, work, [],
                                      tight, tight + 120)
            runs["seeded_tight"] = tune(cli, args, "seeded_tight", os.path.join(work, "seeded_tight.db"), cache, work,
                                        ["--seed-db", seed["path"]], tight, tight + 120)
        traces = {name: trace(os.path.join(work, name + ".db")) for name in runs if name != "exhaustive"}
        best = {b["bucket"]: b for b in runs["exhaustive"].get("buckets", []) if b.get("best_us")}
        rows = []
        for bucket in sorted(best, key=lambda s: tuple(int(x[1:]) for x in s.split("-"))):
            ex = best[bucket]
            row = {"bucket": bucket, "candidates": ex.get("candidates"), "exhaustive_best": ex["best"],
                   "exhaustive_best_us": ex["best_us"], "exhaustive_measured": ex.get("measured", 0),
                   "exhaustive_complete": not ex.get("budget_exhausted") and ex.get("measured", 0) + ex.get("cached", 0)
                   + ex.get("pruned", 0) >= ex.get("candidates", 0),
                   "default_us": ex.get("default_us")}
            for name in traces:
                u = next((b for b in runs[name].get("buckets", []) if b["bucket"] == bucket), {})
                n, s = reach(traces[name].get(bucket, []), ex["best_us"])
                row[name] = {"to_2pct_measurements": n, "to_2pct_s": s,
                             "measured": len(traces[name].get(bucket, [])),
                             "unit_s": round(traces[name][bucket][-1][0], 3) if traces[name].get(bucket) else None,
                             "best": u.get("best"), "best_us": u.get("best_us"),
                             "pick_over_exhaustive": u["best_us"] / ex["best_us"] if u.get("best_us") else None,
                             "warm_start": u.get("warm_start"),
                             # the first measurements: schedule, median (None: not ok), ratio to the exhaustive best
                             "first": [[k.rsplit(".", 1)[-1], med, round(med / ex["best_us"], 4) if med else None]
                                       for _t, k, med in traces[name].get(bucket, [])[:args.first]]}
            rows.append(row)
        result["buckets"] = rows
        result["runs"] = {name: {"wall_s": r.get("wall_s"), "process_wall_s": r.get("process_wall_s"), "rc": r.get("rc"),
                                 "measured": sum(b.get("measured", 0) for b in r.get("buckets", []))}
                          for name, r in runs.items()}
        result["reports"] = runs
    finally:
        result["total_s"] = time.time() - t_all
        with open(os.path.join(args.out, "warm_start.json"), "w") as f:
            json.dump(result, f, indent=2)
        if args.keep:
            log("work directory kept:", work)
        else:
            shutil.rmtree(work, ignore_errors=True)

    def cell(d):
        if not d:
            return "-"
        n, s = d["to_2pct_measurements"], d["to_2pct_s"]
        reached = "never" if n is None else "%3d in %5.2f s" % (n, s)
        pick = "%.3fx" % d["pick_over_exhaustive"] if d.get("pick_over_exhaustive") else "-"
        return "%-14s  %s" % (reached, pick)

    print("# warm start on %s: %s, buckets %s x %s, splits %s%s; total %.0f s" % (
        result.get("device", "?"), args.preset, args.batch, args.seqlen, args.splits,
        "" if not args.no_fused else " (no fused)", result["total_s"]))
    print("# runs: " + ", ".join("%s %.1f s / %d measured" % (n, r["wall_s"] or 0, r["measured"])
                                 for n, r in result.get("runs", {}).items()))
    print("# %-10s %10s %-4s | %-28s | %-28s | seeded from" % ("bucket", "exh. best", "done", "cold: to 2%, pick",
                                                                 "seeded: to 2%, pick"))
    for r in result.get("buckets", []):
        ws = (r.get("seeded") or {}).get("warm_start") or {}
        src = "; ".join("%s %s" % ("this GPU" if s["same_device"] else s["device"].split("|")[0], s["bucket"])
                        for s in ws.get("sources", [])) or "-"
        print("  %-10s %8.2fus %-4s | %-28s | %-28s | %s" % (
            r["bucket"], r["exhaustive_best_us"], "yes" if r["exhaustive_complete"] else "NO",
            cell(r.get("cold")), cell(r.get("seeded")), src))
    if args.tight > 0 and result.get("buckets"):
        print("# budget %.1f s for all buckets, pick / exhaustive best:" % result.get("tight_budget_s", 0))
        for r in result["buckets"]:
            f = lambda d: "%.3fx" % d["pick_over_exhaustive"] if d and d.get("pick_over_exhaustive") else "-"
            print("  %-10s cold %s  seeded %s" % (r["bucket"], f(r.get("cold_tight")), f(r.get("seeded_tight"))))


if __name__ == "__main__":
    main()
