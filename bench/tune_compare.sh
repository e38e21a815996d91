#!/usr/bin/env bash
# Exhaustive vs guided tuning on the same buckets and the same space: wall time (compiles
# included: each strategy gets its own kernel cache) and the best time each one found, per
# bucket, as one JSON file. GPU host; the lead runs it. Takes ~5-8 minutes on an H100.
# Usage: bench/tune_compare.sh [BUILD_DIR] [OUT_DIR]
#   COMPARE_PRESET  (qwen3-0.6b)      COMPARE_BATCH (1,32)   COMPARE_SEQLEN (4096,65536)
#   COMPARE_SPLITS  (0,2,8,32)        COMPARE_FUSED (0: no fused-merge twins, keeps exhaustive short)
#   COMPARE_MODE    (decode)          prefill: `tune --mode prefill` (no splits; buckets batch x seqlen)
set -uo pipefail
build=${1:-build}
out=${2:-${OUT:-/tmp/parallax-out}}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/.carry/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
cli=$(find "$build" -name parallax -type f -perm -u+x | head -1)
[ -x "$cli" ] || cli=$(find "$build" -name plx_search_cli -type f -perm -u+x | head -1)
[ -x "$cli" ] || { echo "tune_compare: no parallax CLI under $build" >&2; exit 1; }
preset=${COMPARE_PRESET:-qwen3-0.6b}
batch=${COMPARE_BATCH:-1,32}
seqlen=${COMPARE_SEQLEN:-4096,65536}
splits=${COMPARE_SPLITS:-0,2,8,32}
mode=${COMPARE_MODE:-decode}
fused=()
[ "${COMPARE_FUSED:-0}" = 1 ] || fused=(--no-fused)
mode_args=(--splits "$splits" "${fused[@]}")
[ "$mode" = prefill ] && mode_args=(--mode prefill)
work=$(mktemp -d /tmp/tune-compare.XXXXXX)
status=0
for strategy in exhaustive guided; do
  start=$(date +%s.%N)
  # No budget: each strategy runs to its own end (exhaustive: every candidate).
  timeout 900 "$cli" tune --preset "$preset" --batch "$batch" --seqlen "$seqlen" "${mode_args[@]}" \
    --strategy "$strategy" --budget 0 --db "$work/$strategy.db" --cache-dir "$work/kernels-$strategy" --json \
    > "$work/$strategy.json" 2> "$out/tune_compare_$strategy.log" || { status=1; echo "$strategy: exit $?" >&2; }
  end=$(date +%s.%N)
  echo "$start $end" > "$work/$strategy.time"
  tail -3 "$out/tune_compare_$strategy.log"
done
python3 - "$work" "$preset" "$splits" "${COMPARE_FUSED:-0}" "$mode" > "$out/tune_compare.json" <<'PY'
import json, sys
work, preset, splits, fused, mode = sys.argv[1:6]
runs = {}
for s in ("exhaustive", "guided"):
    try:
        report = json.load(open(f"{work}/{s}.json"))
    except Exception as e:  # a failed run still leaves a record of what happened
        report = {"error": str(e), "buckets": []}
    t0, t1 = map(float, open(f"{work}/{s}.time").read().split())
    runs[s] = {"wall_s": t1 - t0, "report": report}
buckets = []
names = sorted({b["bucket"] for r in runs.values() for b in r["report"].get("buckets", [])})
for name in names:
    row = {"bucket": name}
    for s, r in runs.items():
        b = next((x for x in r["report"].get("buckets", []) if x["bucket"] == name), {})
        row[f"{s}_best_us"] = b.get("best_us")
        row[f"{s}_best"] = b.get("best")
        row[f"{s}_measured"] = b.get("measured", 0) + b.get("cached", 0)
        row["candidates"] = b.get("candidates", row.get("candidates"))
    if row.get("exhaustive_best_us") and row.get("guided_best_us"):
        row["guided_over_exhaustive"] = row["guided_best_us"] / row["exhaustive_best_us"]
    buckets.append(row)
print(json.dumps({"mode": mode, "preset": preset, "splits": splits if mode == "decode" else None, "fused": fused == "1",
                  "exhaustive_wall_s": runs["exhaustive"]["wall_s"], "guided_wall_s": runs["guided"]["wall_s"],
                  "buckets": buckets, "reports": {s: r["report"] for s, r in runs.items()}}, indent=2))
PY
# Both winners re-timed back to back in alternation (same GPU state), so the quality ratio
# is not two runs' noise: `parallax bench decode --variant`, 2 rounds each, medians.
python3 - "$out/tune_compare.json" "$cli" <<'PY' || status=1
import json, re, subprocess, sys
path, cli = sys.argv[1:3]
j = json.load(open(path))
pk = next((r.get("problem") for r in j["reports"].values() if r.get("problem")), "")
m = re.search(r"-d(\d+)-h(\d+)x(\d+)-", pk or "")
for b in j["buckets"]:
    # Decode buckets only (b<batch>-l<seqlen>); a prefill bucket (t<tokens>-l<context>) does
    # not name its batch, and its winners are compared as tuned.
    if not (m and b.get("exhaustive_best") and b.get("guided_best") and re.match(r"b\d+-l\d+", b["bucket"])):
        continue
    batch, seqlen = re.match(r"b(\d+)-l(\d+)", b["bucket"]).groups()
    shape = f"{batch},{seqlen},{m.group(2)},{m.group(3)},{m.group(1)}"
    times = {"exhaustive": [], "guided": []}
    for _ in range(2):
        for s in ("exhaustive", "guided"):
            r = subprocess.run([cli, "bench", "decode", "--shape", shape, "--variant", b[f"{s}_best"], "--reps", "30",
                                "--no-verify", "--json"], capture_output=True, text=True, timeout=300)
            if r.returncode == 0:
                times[s].append(json.loads(r.stdout)["median_us"])
    if times["exhaustive"] and times["guided"]:
        b["retimed_exhaustive_us"] = sorted(times["exhaustive"])[len(times["exhaustive"]) // 2]
        b["retimed_guided_us"] = sorted(times["guided"])[len(times["guided"]) // 2]
        b["retimed_ratio"] = b["retimed_guided_us"] / b["retimed_exhaustive_us"]
json.dump(j, open(path, "w"), indent=2)
PY
python3 - "$out/tune_compare.json" <<'PY' || true
import json, sys
j = json.load(open(sys.argv[1]))
print(f"tune_compare {j['preset']}: exhaustive {j['exhaustive_wall_s']:.0f} s, guided {j['guided_wall_s']:.0f} s")
for b in j["buckets"]:
    print(f"  {b['bucket']:<12} exhaustive {b['exhaustive_best_us'] or 0:9.2f} us ({b['exhaustive_measured']} measured)"
          f"  guided {b['guided_best_us'] or 0:9.2f} us ({b['guided_measured']} measured)"
          f"  ratio {b.get('guided_over_exhaustive', float('nan')):.3f}"
          f"  re-timed ratio {b.get('retimed_ratio', float('nan')):.3f}")
PY
rm -rf "$work"
exit $status
