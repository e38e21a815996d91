#!/usr/bin/env bash
# One GPU against two on the same tune (issue #17 part 1): `parallax tune --preset qwen3-0.6b
# --splits 0,2,8,32 --budget 0` (16 decode buckets, guided, no budget) once on GPU 0 alone and
# once on GPUs 0 and 1, each into a fresh database and a fresh, empty kernel cache (both runs
# start cold: every candidate is NVRTC-compiled in the run). Records each run's wall time and
# its "timing" object (where the time went, per GPU), compares the winners per bucket (the
# same key? the largest relative difference of the best times) and prints a short table last.
# About 2-3 minutes on two H200s; each run is cut off after 200 s, so the whole script ends
# within 8 minutes.
# Usage: scripts/multi-gpu-scaling.sh BIN_DIR   (holds the `parallax` binary, e.g. .carry/bin;
#        plx_search_cli is taken when there is no `parallax`)
# Writes $OUT/multi-gpu-scaling.json and the two runs' progress logs (default OUT: /tmp/parallax-out).
set -uo pipefail
bin=${1:?usage: scripts/multi-gpu-scaling.sh BIN_DIR}
out=${OUT:-/tmp/parallax-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/.carry/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
# Nothing read from or written to a database of this host's: each run names its own.
export PARALLAX_DB=none
cli=$(find -L "$bin" -name parallax -type f -perm -u+x | head -1)
[ -x "$cli" ] || cli=$(find -L "$bin" -name plx_search_cli -type f -perm -u+x | head -1)
[ -x "$cli" ] || { echo "missing the parallax CLI under $bin"; exit 1; }
"$cli" --version
nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader | tee "$out/gpus.txt"
gpus=$(wc -l < "$out/gpus.txt")
echo "cores: $(nproc)"
work=$(mktemp -d /tmp/plx-scaling.XXXXXX)
tune_args=(tune --preset qwen3-0.6b --splits 0,2,8,32 --budget 0 --json)

run() {  # run NAME CUDA_VISIBLE_DEVICES
  local name=$1 devices=$2
  local db="$work/$name.db" cache="$work/kernels-$name"
  rm -rf "$db" "$cache"
  mkdir -p "$cache"  # empty: a cold binary cache, so both runs compile everything
  local t0 t1 rc
  t0=$(date +%s.%N)
  CUDA_VISIBLE_DEVICES=$devices PARALLAX_CACHE_DIR="$cache" timeout 200 "$cli" "${tune_args[@]}" \
    --db "$db" --cache-dir "$cache" > "$work/$name.json" 2> "$out/tune-$name.log"
  rc=$?
  t1=$(date +%s.%N)
  local wall
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  echo "$name: exit $rc, $wall s wall (CUDA_VISIBLE_DEVICES=$devices)"
  echo "{\"rc\": $rc, \"wall_s\": $wall, \"devices\": \"$devices\"}" > "$work/$name.meta"
  grep -E '^tune: .*done:' "$out/tune-$name.log" | tail -2
}

run 1gpu 0
if [ "$gpus" -ge 2 ]; then run 2gpu 0,1; else echo "only $gpus GPU(s): no two-GPU run"; fi

python3 - "$work" "$out/multi-gpu-scaling.json" <<'PY'
import json, os, sys
work, dest = sys.argv[1], sys.argv[2]
runs = {}
for name in ("1gpu", "2gpu"):
    meta = os.path.join(work, name + ".meta")
    if not os.path.exists(meta):
        continue
    r = json.load(open(meta))
    try:
        r["report"] = json.load(open(os.path.join(work, name + ".json")))
    except Exception as e:  # a failed run prints no JSON
        r["report"] = None
        r["error"] = str(e)
    runs[name] = r
result = {"command": "parallax tune --preset qwen3-0.6b --splits 0,2,8,32 --budget 0",
          "cache": "cold: each run starts from an empty kernel cache and an empty database",
          "runs": runs}
one, two = runs.get("1gpu", {}).get("report"), runs.get("2gpu", {}).get("report")
if one and two:
    a = {u["bucket"]: u for u in one["buckets"]}
    b = {u["bucket"]: u for u in two["buckets"]}
    rows, max_rel, same = [], 0.0, 0
    for k in a:
        x, y = a[k], b.get(k, {})
        rel = None
        if x.get("best_us") and y.get("best_us"):
            rel = abs(x["best_us"] - y["best_us"]) / min(x["best_us"], y["best_us"])
            max_rel = max(max_rel, rel)
        same += x.get("best") == y.get("best")
        rows.append({"bucket": k, "best_us_1gpu": x.get("best_us"), "best_us_2gpu": y.get("best_us"),
                     "rel_diff": rel, "same_key": x.get("best") == y.get("best"), "device_2gpu": y.get("device")})
    result["compare"] = {
        "speedup_wall": runs["1gpu"]["wall_s"] / runs["2gpu"]["wall_s"],
        "speedup_tune": one["wall_s"] / two["wall_s"],
        "max_rel_best_us_diff": max_rel,
        "same_keys": same, "buckets": len(a),
        "buckets_detail": rows}
json.dump(result, open(dest, "w"), indent=2)

def line(name, r):
    rep = r.get("report") or {}
    t = rep.get("timing", {})
    c = t.get("compile", {})
    print(f"{name}: wall {r['wall_s']:.1f} s (tune {rep.get('wall_s', float('nan')):.1f} s, exit {r['rc']}); "
          f"compile {c.get('cpu_s', 0):.0f} CPU-s in {c.get('wall_s', 0):.1f} s on {c.get('threads', 0)} threads "
          f"({c.get('inline', 0)} inline); db {t.get('db_s', 0):.2f} s")
    print(f"  {'gpu':>4} {'units':>5} {'meas':>5} {'wall':>6} {'measure':>8} {'cwait':>6} {'prepare':>8} "
          f"{'start':>6} {'db':>5} {'other':>6} {'idle_end':>8}")
    for w in t.get("workers", []):
        print(f"  {w['device']:>4} {w['units']:>5} {w['measurements']:>5} {w['wall_s']:>6.1f} {w['measure_s']:>8.1f} "
              f"{w['compile_wait_s']:>6.1f} {w['prepare_s']:>8.1f} {w['start_s']:>6.1f} {w['db_s']:>5.2f} "
              f"{w['other_s']:>6.1f} {w['idle_end_s']:>8.1f}")
for name, r in runs.items():
    line(name, r)
if "compare" in result:
    c = result["compare"]
    print(f"speedup {c['speedup_wall']:.2f}x wall ({c['speedup_tune']:.2f}x tune); winners: {c['same_keys']}/"
          f"{c['buckets']} same key, best times within {100 * c['max_rel_best_us_diff']:.2f}%")
PY
rm -rf "$work"
