#!/usr/bin/python3
"""Fleet-scale synthetic tuning databases, merged and read through the real `parallax` CLI.

What a fleet's tuning produces is one `db export`-format file per shard: a SQLite file with
the exact schema of this build (copied from a real export, see below) holding one device,
one problem, the variants measured, one tuning run (params carry "shard": "I/N" and the
shard's buckets, as `parallax tune --shard` writes them), the measurements and one best
config per bucket. This script writes such files at a chosen scale and then times, with the
real binary:

  * `parallax db import` of every shard file into one database per GPU model (the merge a
    fleet runs), per file, with rows/s and the destination's size as it grows;
  * `parallax db import` of the per-model databases into one all-models database;
  * `parallax db verify`, `db show --json` and `db export` on the merged databases;
  * point lookups through the service's read path: `parallax serve --no-gpu --db MERGED`
    and `parallax remote get --device-name ...` (checked against the best config the
    generator wrote), and optionally a short paced `plx_service_loadgen` run.

The export format is not re-implemented: the script makes a real database offline
(`plx_service_loadgen --seed-db`, which writes through cache::Store), exports it with
`parallax db export`, empties a copy of that export and fills it. `db import` then checks
every file as untrusted input (schema text object by object, every row, every key through
the variant-key parser), so a file it accepts is a valid export. Variant keys come from
`parallax space --json` for the shape, mode and the GPU's arch: real, statically valid keys.

Standard library only. Example (the figures in docs/fleet.md):

    /usr/bin/python3 bench/fleet_synthetic.py --work /tmp/fleet-run \\
        --out bench/results/fleet-synthetic-cpu-2026-11-30.json --machine "..."
"""

import argparse
import datetime
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import time

GENERATOR_VERSION = 5  # `parallax --version`: generator v5
NVRTC_VERSION = 13000  # NVRTC 13.0, as the tuner stores it

# Six GPU models, fingerprints as `parallax remote get --list-devices` gives them (v3 form:
# name|arch|sms|mem GiB|nvrtc). The H100 is the one the service e2e run and the load
# generator report (81559 MiB: mem=80GiB), so the load generator's H100 lookups hit it.
GPUS = [
    # name, cc, sms, mem MiB, clock kHz, L2 bytes
    ("NVIDIA H200", (9, 0), 132, 143155, 1980000, 60 << 20),
    ("NVIDIA H100 80GB HBM3", (9, 0), 132, 81559, 1980000, 50 << 20),
    ("NVIDIA A100-SXM4-80GB", (8, 0), 108, 81050, 1410000, 40 << 20),
    ("NVIDIA L40S", (8, 9), 142, 45373, 2520000, 96 << 20),
    ("NVIDIA L4", (8, 9), 58, 22491, 2040000, 48 << 20),
    ("NVIDIA A10", (8, 6), 72, 22515, 1695000, 6 << 20),
]

DECODE_BATCHES = [1, 8, 32, 128]  # `parallax tune` defaults: 4 x 4 = 16 decode buckets
DECODE_SEQLENS = [1024, 4096, 16384, 65536]
PREFILL_TOKENS = [1024, 4096, 16384, 65536]  # x 2 contexts = 8 prefill buckets
PREFILL_CONTEXTS = [4096, 16384]


def arch_of(cc):
    return "sm_%d%d" % cc


def fingerprint(gpu):
    name, cc, sms, mem_mib = gpu[:4]
    gib = int(mem_mib / 1024 + 0.5)
    return "%s|%s|sms=%d|mem=%dGiB|nvrtc=13.0" % (name, arch_of(cc), sms, gib)


def decode_buckets(n):
    all_b = ["b%d-l%d" % (b, l) for b in DECODE_BATCHES for l in DECODE_SEQLENS]
    return all_b[:n]


def prefill_buckets(n):
    all_b = ["t%d-l%d" % (t, c) for t in PREFILL_TOKENS for c in PREFILL_CONTEXTS]
    return all_b[:n]


def run(cmd, check=True, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if check and p.returncode != 0:
        sys.exit("failed (%d): %s\n%s%s" % (p.returncode, " ".join(cmd), p.stdout[-2000:], p.stderr[-2000:]))
    return p


def timed(cmd):
    t0 = time.perf_counter()
    p = run(cmd)
    return time.perf_counter() - t0, p.stdout


def file_bytes(path):
    total = 0
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            total += os.path.getsize(path + suffix)
    return total


# ---------------------------------------------------------------- the template export


def make_template(args, work):
    """A real export, emptied: schema, user_version and page size exactly as this build writes."""
    src, ref, tmpl = (os.path.join(work, n) for n in ("ref-src.db", "ref-export.db", "template.db"))
    for p in (src, ref, tmpl):
        for s in ("", "-wal", "-shm"):
            if os.path.exists(p + s):
                os.remove(p + s)
    run([args.loadgen, "--seed-db", src])
    run([args.parallax, "db", "export", ref, "--db", src])
    shutil.copyfile(ref, tmpl)
    c = sqlite3.connect(tmpl)
    tables = [r[0] for r in c.execute("SELECT name FROM sqlite_schema WHERE type='table'")]
    for t in tables:
        c.execute("DELETE FROM %s" % t)
    c.commit()
    c.execute("VACUUM")
    info = {
        "user_version": c.execute("PRAGMA user_version").fetchone()[0],
        "page_size": c.execute("PRAGMA page_size").fetchone()[0],
        "journal_mode": c.execute("PRAGMA journal_mode").fetchone()[0],
        "tables": tables,
    }
    c.close()
    return tmpl, info


# ---------------------------------------------------------------- shapes and variant keys


def shape_candidates():
    """Distinct attention shapes (dtype, head_dim, q heads, kv heads), loadgen's first."""
    yield ("bf16", 128, 32, 8)
    for hd in (128, 64, 256):
        for hkv in (8, 4, 2, 1, 16):
            for group in (1, 2, 4, 8):
                for dtype in ("bf16", "fp16"):
                    yield (dtype, hd, hkv * group, hkv)


def space_keys(args, cache, mode, arch, shape):
    ck = "%s|%s|%s" % (mode, arch, ",".join(map(str, shape)))
    if ck in cache:
        return cache[ck]
    dtype, hd, hq, hkv = shape
    cmd = [args.parallax, "space", "--mode", mode, "--dtype", dtype, "--head-dim", str(hd),
           "--q-heads", str(hq), "--kv-heads", str(hkv), "--arch", arch, "--json", "--limit", "0"]
    if mode == "decode":
        cmd += ["--splits", "0", "1", "2", "4", "8", "16", "32"]
    p = run(cmd, check=False)
    keys = []
    if p.returncode == 0:
        keys = [v["key"] for v in json.loads(p.stdout).get("variants", [])]
    cache[ck] = keys
    return keys


def pick_shapes(args, cache, archs, n):
    shapes, seen = [], set()
    for s in shape_candidates():
        if s in seen:
            continue
        seen.add(s)
        if all(space_keys(args, cache, m, a, s) for m in ("decode", "prefill") for a in archs):
            shapes.append(s)
        if len(shapes) == n:
            break
    return shapes


def problem_json(mode, shape):
    dtype, hd, hq, hkv = shape
    return json.dumps({"algorithm": {"affine": "plain", "probe": "learned"},
                       "problem": {"dtype": dtype, "head_dim": hd, "kv_layout": "contiguous",
                                   "mode": mode, "num_kv_heads": hkv, "num_q_heads": hq,
                                   "page_size": 0, "window": False}},
                      separators=(",", ":"), sort_keys=True)


# ---------------------------------------------------------------- one shard's export file


def write_shard(path, template, gpu, mode, shape, keys, buckets, shard, nshards, meas_per_bucket, rng, now_ms):
    """One `parallax tune --shard I/N` result, in export form. Returns rows written and the winners."""
    shutil.copyfile(template, path)
    problem_key = keys[0].rsplit(".", 1)[0]
    c = sqlite3.connect(path)
    name, cc, sms, mem_mib, clock, l2 = gpu
    c.execute("INSERT INTO devices (id, fingerprint, name, sm_count, cc_major, cc_minor, clock_khz, "
              "mem_bytes, l2_bytes, driver_version, nvrtc_version, created_at) VALUES (1,?,?,?,?,?,?,?,?,?,?,?)",
              (fingerprint(gpu), name, sms, cc[0], cc[1], clock, mem_mib << 20, l2, 13000, NVRTC_VERSION, now_ms))
    c.execute("INSERT INTO problems (id, key, json) VALUES (1, ?, ?)", (problem_key, problem_json(mode, shape)))
    params = {"buckets": buckets, "budget_s": 1800.0, "device_ordinal": 0, "generator_version": GENERATOR_VERSION,
              "mode": mode, "problem_key": problem_key, "seed": 1, "strategy": "guided",
              "shard": "%d/%d" % (shard, nshards)}
    progress = {"buckets": {}, "units_done": len(buckets), "units_total": len(buckets)}
    t = now_ms
    variant_ids, meas, best = {}, [], {}
    for b in buckets:
        base_us = rng.uniform(8.0, 5000.0)
        chosen = rng.sample(keys, min(meas_per_bucket, len(keys)))
        for k in chosen:
            vid = variant_ids.setdefault(k, len(variant_ids) + 1)
            t += rng.randint(80, 400)
            if rng.random() < 0.1:  # the real H200 prefill run: 20 of 176 rows failed
                meas.append((None, 1, 1, 1, vid, b, "failed", None, None, None, 0,
                             "launch failed: too many resources requested", None, t))
                continue
            med = base_us * rng.uniform(1.0, 3.0)
            meas.append((None, 1, 1, 1, vid, b, "ok", med, med * 0.995, med * 1.01, rng.choice((3, 8, 20)),
                         "", rng.uniform(1e-3, 3e-3), t))
            if b not in best or med < best[b][1]:
                best[b] = (k, med, t)
        progress["buckets"][b] = {"best": best.get(b, ("", 0, 0))[0], "best_us": best.get(b, ("", 0.0, 0))[1],
                                  "cached": 0, "error": "", "measured": len(chosen)}
    c.execute("INSERT INTO tuning_runs (id, device_id, started_at, finished_at, status, params_json, progress_json) "
              "VALUES (1, 1, ?, ?, 'done', ?, ?)",
              (now_ms, t + 1, json.dumps(params, sort_keys=True), json.dumps(progress, sort_keys=True)))
    c.executemany("INSERT INTO variants (id, key, generator_version) VALUES (?, ?, ?)",
                  [(vid, k, GENERATOR_VERSION) for k, vid in variant_ids.items()])
    c.executemany("INSERT INTO measurements (id, run_id, device_id, problem_id, variant_id, bucket, status, "
                  "median_us, min_us, max_us, reps, error_text, rel_error, measured_at, generator_version, "
                  "nvrtc_version) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,%d,%d)" % (GENERATOR_VERSION, NVRTC_VERSION),
                  meas)
    c.executemany("INSERT INTO best_configs (device_id, problem_key, bucket, variant_key, median_us, "
                  "generator_version, nvrtc_version, updated_at) VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
                  [(problem_key, b, k, med, GENERATOR_VERSION, NVRTC_VERSION, ts) for b, (k, med, ts) in best.items()])
    c.commit()
    c.close()
    rows = 1 + 1 + 1 + len(variant_ids) + len(meas) + len(best)
    return {"rows": rows, "measurements": len(meas), "variants": len(variant_ids), "best_configs": len(best),
            "bytes": os.path.getsize(path)}, {(fingerprint(gpu), problem_key, b): k for b, (k, _, _) in best.items()}


# ---------------------------------------------------------------- the run


def split(items, n):
    """Contiguous slices; the real planner balances by cost (search::PlanShards), sizes match."""
    q, r = divmod(len(items), n)
    out, i = [], 0
    for s in range(n):
        j = i + q + (1 if s < r else 0)
        out.append(items[i:j])
        i = j
    return out


def generate(args, work, template, cache):
    gpus = GPUS[: args.models]
    archs = sorted({arch_of(g[1]) for g in gpus})
    t0 = time.perf_counter()
    shapes = pick_shapes(args, cache, archs, args.shapes)
    if len(shapes) < args.shapes:
        sys.exit("only %d valid shapes" % len(shapes))
    space_s = time.perf_counter() - t0
    rng = random.Random(args.seed)
    now_ms = int(time.time() * 1000)
    files, winners = [], {}
    t0 = time.perf_counter()
    for g in gpus:
        arch = arch_of(g[1])
        for si, shape in enumerate(shapes):
            for mode, nb, nshards in (("decode", args.decode_buckets, args.decode_shards),
                                      ("prefill", args.prefill_buckets, args.prefill_shards)):
                if nb == 0:
                    continue
                buckets = decode_buckets(nb) if mode == "decode" else prefill_buckets(nb)
                keys = space_keys(args, cache, mode, arch, shape)
                for s, part in enumerate(split(buckets, nshards), 1):
                    if not part:
                        continue
                    path = os.path.join(work, "shards", "%s-%s-s%02d-%d.db" % (
                        g[0].replace(" ", "_"), mode, si, s))
                    info, w = write_shard(path, template, g, mode, shape, keys, part, s, nshards,
                                          args.measurements, rng, now_ms)
                    info.update(path=path, gpu=g[0], mode=mode, shape=list(shape), shard="%d/%d" % (s, nshards))
                    files.append(info)
                    winners.update(w)
    return shapes, files, winners, {"space_s": space_s, "write_s": time.perf_counter() - t0}


def import_all(args, files, dest, label):
    per = []
    for f in files:
        secs, out = timed([args.parallax, "db", "import", f["path"], "--db", dest, "--json"])
        per.append({"file": os.path.basename(f["path"]), "rows": f["rows"], "s": round(secs, 4),
                    "dest_bytes_after": file_bytes(dest)})
    total_s = sum(p["s"] for p in per)
    rows = sum(p["rows"] for p in per)
    n = len(per)
    half = per[n // 2:] if n > 1 else per
    return {"label": label, "files": n, "rows": rows, "total_s": round(total_s, 3),
            "rows_per_s": round(rows / total_s, 1) if total_s else None,
            "per_file_s_first10_mean": round(sum(p["s"] for p in per[:10]) / min(10, n), 4),
            "per_file_s_last10_mean": round(sum(p["s"] for p in per[-10:]) / min(10, n), 4),
            "per_file_s_mean": round(total_s / n, 4),
            "per_file_s_max": max(p["s"] for p in per),
            "dest_bytes": file_bytes(dest), "per_file": per if args.keep_per_file else per[:: max(1, n // 50)]}


def read_checks(args, db):
    out = {}
    secs, v = timed([args.parallax, "db", "verify", "--db", db, "--json"])
    out["verify_s"] = round(secs, 3)
    try:
        out["verify"] = json.loads(v)
    except ValueError:
        out["verify"] = v[-500:]
    secs, show = timed([args.parallax, "db", "show", "--db", db, "--json"])
    out["show_json_s"] = round(secs, 3)
    out["show_json_bytes"] = len(show)
    exp = db + ".export"
    if os.path.exists(exp):
        os.remove(exp)
    secs, _ = timed([args.parallax, "db", "export", exp, "--db", db])
    out["export_s"] = round(secs, 3)
    out["export_bytes"] = os.path.getsize(exp)
    os.remove(exp)
    return out


def free_port_file(work):
    p = os.path.join(work, "port")
    if os.path.exists(p):
        os.remove(p)
    return p


def lookups(args, work, db, winners, n):
    """serve --no-gpu on the merged DB; `remote get` for n tuned buckets, checked; loadgen optional."""
    port_file = free_port_file(work)
    srv = subprocess.Popen([args.parallax, "serve", "--no-gpu", "--listen", "127.0.0.1:0", "--db", db,
                            "--port-file", port_file, "--log-level", "warn"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    res = {}
    try:
        for _ in range(400):
            if os.path.exists(port_file) and os.path.getsize(port_file) > 0:
                break
            time.sleep(0.05)
        addr = "127.0.0.1:" + open(port_file).read().strip()
        rng = random.Random(args.seed + 1)
        items = rng.sample(sorted(winners.items()), min(n, len(winners)))
        gpu_of = {fingerprint(g): g for g in GPUS}
        times, exact, agree = [], 0, 0
        for (fp, problem_key, bucket), variant in items:
            mode = problem_key.split("-", 1)[0]
            parts = problem_key.split(".")[0].split("-")  # decode-bf16-d128-h32x8-contig-nowin
            dtype, hd = parts[1], parts[2][1:]
            hq, hkv = parts[3][1:].split("x")
            b, l = bucket.split("-")
            cmd = [args.parallax, "remote", "--server", addr, "--json", "get", "--device-name", gpu_of[fp][0],
                   "--cc", "%d.%d" % gpu_of[fp][1], "--sms", str(gpu_of[fp][2]), "--mem-mib", str(gpu_of[fp][3]),
                   "--mode", mode, "--dtype", dtype, "--head-dim", hd, "--q-heads", hq, "--kv-heads", hkv]
            if mode == "decode":
                cmd += ["--batch", b[1:], "--seqlen", l[1:]]
            else:
                tokens, ctx = int(b[1:]), int(l[1:])
                q = min(tokens, ctx)
                cmd += ["--batch", str(tokens // q), "--seqlen", str(q), "--context-len", str(ctx)]
            secs, out = timed(cmd)
            times.append(secs)
            j = json.loads(out)
            text = json.dumps(j)
            exact += "EXACT" in text
            agree += variant in text
        times.sort()
        res["remote_get"] = {"calls": len(times), "exact": exact, "variant_matches_generator": agree,
                             "process_wall_s_p50": round(times[len(times) // 2], 4),
                             "process_wall_s_max": round(times[-1], 4),
                             "note": "one `parallax remote get` process per call: wall includes process start "
                                     "and channel setup, not only the lookup"}
        if args.loadgen_seconds > 0:
            out_json = os.path.join(work, "loadgen.json")
            run([args.loadgen, "--server", addr, "--duration", str(args.loadgen_seconds), "--warmup", "2",
                 "--rate", str(args.loadgen_rate), "--out", out_json, "--machine", args.machine])
            res["loadgen_paced"] = json.load(open(out_json))
    finally:
        srv.terminate()
        srv.wait(timeout=30)
    return res


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parallax", default=os.path.join(root, "build/service/parallax"))
    ap.add_argument("--loadgen", default=os.path.join(root, "build/service/plx_service_loadgen"))
    ap.add_argument("--work", required=True, help="scratch directory (emptied)")
    ap.add_argument("--out", help="JSON report")
    ap.add_argument("--machine", default="")
    ap.add_argument("--models", type=int, default=6, help="GPU models (at most %d)" % len(GPUS))
    ap.add_argument("--shapes", type=int, default=50, help="attention shapes (a decode + a prefill problem each)")
    ap.add_argument("--decode-buckets", type=int, default=16)
    ap.add_argument("--prefill-buckets", type=int, default=8)
    ap.add_argument("--measurements", type=int, default=60, help="measurement rows per bucket")
    ap.add_argument("--decode-shards", type=int, default=1, help="shards per decode tune")
    ap.add_argument("--prefill-shards", type=int, default=2, help="shards per prefill tune")
    ap.add_argument("--lookups", type=int, default=30, help="`remote get` calls on the merged DB (0: none)")
    ap.add_argument("--loadgen-seconds", type=float, default=0, help="paced loadgen on the merged DB (0: none)")
    ap.add_argument("--loadgen-rate", type=float, default=5000)
    ap.add_argument("--all-models-db", action="store_true", help="also merge the per-model DBs into one")
    ap.add_argument("--keep-per-file", action="store_true")
    ap.add_argument("--seed", type=int, default=17)
    args = ap.parse_args()

    work = os.path.abspath(args.work)
    if os.path.exists(work):
        shutil.rmtree(work)
    os.makedirs(os.path.join(work, "shards"))
    os.makedirs(os.path.join(work, "merged"))
    version = run([args.parallax, "--version"]).stdout.strip()
    template, tinfo = make_template(args, work)
    cache = {}
    shapes, files, winners, gen = generate(args, work, template, cache)
    report = {
        "benchmark": "fleet_synthetic", "date": datetime.date.today().isoformat(), "machine": args.machine,
        "parallax_version": version, "template": tinfo,
        "knobs": {k: getattr(args, k) for k in ("models", "shapes", "decode_buckets", "prefill_buckets",
                                                "measurements", "decode_shards", "prefill_shards", "seed")},
        "gpus": [fingerprint(g) for g in GPUS[: args.models]], "shapes": [list(s) for s in shapes],
        "generate": dict(gen, files=len(files), rows=sum(f["rows"] for f in files),
                         measurements=sum(f["measurements"] for f in files),
                         best_configs=sum(f["best_configs"] for f in files),
                         shard_bytes_total=sum(f["bytes"] for f in files),
                         shard_bytes_mean=round(sum(f["bytes"] for f in files) / len(files)),
                         shard_bytes_by_mode={m: round(sum(f["bytes"] for f in files if f["mode"] == m) /
                                                       max(1, sum(1 for f in files if f["mode"] == m)))
                                              for m in ("decode", "prefill")}),
        "imports": [], "reads": {},
    }
    merged = []
    for g in GPUS[: args.models]:
        dest = os.path.join(work, "merged", g[0].replace(" ", "_") + ".db")
        mine = [f for f in files if f["gpu"] == g[0]]
        r = import_all(args, mine, dest, "shards -> per-model DB (%s)" % g[0])
        print("%s: %d files, %d rows, %.1f s, %.0f rows/s, %.1f MiB" % (
            g[0], r["files"], r["rows"], r["total_s"], r["rows_per_s"], r["dest_bytes"] / 2**20), file=sys.stderr)
        report["imports"].append(r)
        merged.append((dest, r))
    first = merged[0][0]
    report["reads"]["per_model_db"] = read_checks(args, first)
    lookup_db = first
    if args.all_models_db and len(merged) > 1:
        dest = os.path.join(work, "merged", "all-models.db")
        r = import_all(args, [{"path": p, "rows": mr["rows"]} for p, mr in merged], dest,
                       "per-model DBs -> all-models DB")
        print("all models: %d files, %.1f s, %.1f MiB" % (r["files"], r["total_s"], r["dest_bytes"] / 2**20),
              file=sys.stderr)
        report["imports"].append(r)
        report["reads"]["all_models_db"] = read_checks(args, dest)
        lookup_db = dest
    if args.lookups > 0:
        w = winners if lookup_db != first else {k: v for k, v in winners.items() if k[0] == fingerprint(GPUS[0])}
        report["lookups"] = dict(db=os.path.basename(lookup_db), **lookups(args, work, lookup_db, w, args.lookups))
    text = json.dumps(report, indent=1, sort_keys=True) + "\n"
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    print(text if not args.out else "wrote " + args.out)


if __name__ == "__main__":
    main()
