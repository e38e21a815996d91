#!/usr/bin/env bash
# A/B timing of two builds' kernels on one GPU in one run: the same `parallax bench` cases
# through CLI A and CLI B, interleaved A B B A per round so drift hits both sides alike.
# Prints a table (median of the per-run medians, B/A) and writes ab.jsonl and ab.json under
# $OUT (default /tmp/parallax-ab). Needs the GPU; both CLIs find their libraries through
# LD_LIBRARY_PATH (.carry/lib) as in gpu-suite.sh.
# Usage: scripts/ab-bench.sh CLI_A CLI_B [ROUNDS=2]
set -uo pipefail
if [[ $# -lt 2 || "$1" == -h || "$1" == --help ]]; then sed -n 2,8p "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
a=$1 b=$2 rounds=${3:-2}
out=${OUT:-/tmp/parallax-ab}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/.carry/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
# name | subcommand and arguments: runtime defaults (mma), the fma path, paged, fused, window.
cases=(
  "decode-b1-l16k|decode --shape 1,16384,32,8,128"
  "decode-b32-l4k|decode --shape 32,4096,32,8,128"
  "decode-b8-l4k-paged|decode --shape 8,4096,32,8,128 --paged 16"
  "decode-b8-l4k-fma|decode --shape 8,4096,32,8,128 --variant decode-bf16-d128-h32x8-contig-nowin.learned-plain.fma-n128-w4-s2-splitauto-g2"
  "decode-b8-l4k-fused|decode --shape 8,4096,32,8,128 --variant decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s3-splitauto-g4-fused"
  "decode-b8-l4k-softmax-d64|decode --shape 8,4096,16,16,64 --probe none"
  "prefill-b1-l4k|prefill --shape 1,4096,32,8,128"
  "prefill-b4-l2k-d64|prefill --shape 4,2048,32,8,64"
  "prefill-b2-l4k-window|prefill --shape 2,4096,32,8,128 --window 1024"
  "prefill-b1-l4k-amplified|prefill --shape 1,4096,32,8,128 --affine amplified"
  "prefill-b2-l2k-fma|prefill --shape 2,2048,32,8,128 --variant prefill-bf16-d128-h32x8-contig-nowin.learned-plain.fma-m8-n64-w4-s2"
)
: > "$out/ab.jsonl"
for ((r = 0; r < rounds; ++r)); do
  for c in "${cases[@]}"; do
    name=${c%%|*} args=${c#*|}
    for side in A B B A; do
      cli=$a; [[ $side == B ]] && cli=$b
      # Separate binary caches: both builds name a variant's cubin alike (key + generator
      # version), so a shared cache would time A's kernel twice. Correctness is the GPU
      # suites' job; --no-verify keeps the runs short.
      # shellcheck disable=SC2086
      j=$(PARALLAX_CACHE_DIR="$out/cache-$side" timeout 120 "$cli" bench $args --no-verify --json 2> "$out/err.txt") || { echo "$name $side failed: $(tail -2 "$out/err.txt")"; continue; }
      python3 -c 'import json,sys; j=json.loads(sys.argv[1]); j.update(case=sys.argv[2], side=sys.argv[3], round=int(sys.argv[4])); print(json.dumps(j))' \
        "$j" "$name" "$side" "$r" >> "$out/ab.jsonl"
    done
  done
done
python3 - "$out/ab.jsonl" "$out/ab.json" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cases = list(dict.fromkeys(r["case"] for r in rows))
summary = []
print(f"{'case':28s} {'A us':>9s} {'B us':>9s} {'B/A':>6s}  variant")
for c in cases:
    a = [r["median_us"] for r in rows if r["case"] == c and r["side"] == "A"]
    b = [r["median_us"] for r in rows if r["case"] == c and r["side"] == "B"]
    if not a or not b: print(f"{c:28s} missing runs"); continue
    ma, mb = statistics.median(a), statistics.median(b)
    v = next(r.get("variant", "") for r in rows if r["case"] == c)
    summary.append(dict(case=c, a_us=ma, b_us=mb, ratio=mb / ma, a_runs=a, b_runs=b, variant=v))
    print(f"{c:28s} {ma:9.2f} {mb:9.2f} {mb / ma:6.3f}  {v}")
worst = max(abs(s["ratio"] - 1) for s in summary) if summary else float("nan")
print(f"worst |B/A - 1|: {worst:.3%} over {len(summary)} cases")
json.dump(dict(cases=summary, worst_abs_delta=worst), open(sys.argv[2], "w"), indent=1)
PY
