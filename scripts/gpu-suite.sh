#!/usr/bin/env bash
# Everything that needs the GPU, in one call: device facts, the gpu-labelled correctness
# suites (with a compute-sanitizer subset), then the benchmarks. Runs on the GPU host over a
# build made here (carried with .carry/lib holding the Debian libraries it lacks).
# Usage: scripts/gpu-suite.sh [BUILD_DIR] [test|bench|python|torch|all|tune|tune-tests|tune-run|tune-prefill|prefill-anchors|extend|backward|decode-sm90]
# `tune` (not part of `all`: it takes ~8 minutes of budget) = tune-tests (the gpu-labelled
# search tests: real worker, faulting/hanging variants, a prefill run the runtime serves) +
# tune-run (`parallax tune` over the qwen3-0.6b grid, then `parallax db show --json`).
# TUNE_BUDGET (minutes, default 8) shortens it. `tune-prefill`: `parallax tune --mode prefill`
# over llama3-8b full prefills at 4k and 8k (TUNE_BUDGET, default 4), then `bench prefill`
# with the DB (choice exact) and without (default) at B=4, L=4096. `prefill-anchors` (not part
# of `all`; ~4 minutes): bench/prefill_anchors.py, causal prefill in one process: ours (default
# choice and forced mma.sync) vs the authors' Triton forward (carried in
# .carry/anchors/authors-parallax) vs SDPA flash/cuDNN; prints its table. `extend` (not part
# of `all`; ~3 minutes): extend over pages (16, 64, 1) vs contiguous prefill of the same tokens,
# each through the runtime's default (bench/extend_table.py prints the table). `backward` (not
# part of `all`; ~4 minutes): the backward GPU test, bench/backward_schedules.py (every backward
# schedule alone, next to the SDPA softmax backward) and, where ncu reads the counters, an ncu
# report of plx_bwd_main for BWD_PROFILE_KEYS (schedule suffixes, default the family's).
# `decode-sm90` (not part of `all`; ~8 minutes on an H200): the decode_sm90 suite in 4 shards
# (one-token, paged and multi-token cases), compute-sanitizer racecheck/synccheck/memcheck on
# its paged and multi-token subset, then bench/multitoken_decode.py (Tq 1-16: decode_sm90 by
# key and as routed, against extend) and bench/decode_grid.py (issue #16's grid with SDPA).
# Benchmarks need torch: PYTHON (default python3).
set -uo pipefail
build=${1:-build}
what=${2:-all}
# Everything is written under $work; the device tool returns at most 8 files, so $OUT gets
# one archive of it (results.tgz) plus the printed summary.
final=${OUT:-/tmp/parallax-out}
out=$(mktemp -d /tmp/parallax-suite.XXXXXX)
mkdir -p "$final"
trap 'tar czf "$final/results.tgz" -C "$out" . 2>/dev/null' EXIT
export LD_LIBRARY_PATH="$PWD/.carry/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export PARALLAX_CACHE_DIR=/tmp/parallax-cache
# Applications read the shared tuning database by default (docs/tuning-database.md): the
# suites must not depend on one a host may have, so none unless the caller names one.
export PARALLAX_DB=${PARALLAX_DB:-none}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv | tee "$out/device.txt"
status=0
if [ "$what" = test ] || [ "$what" = all ]; then
  for t in runtime_decode_gpu_test runtime_prefill_gpu_test runtime_stats_gpu_test runtime_sm90_probe_gpu_test runtime_backward_gpu_test; do
    bin=$(find "$build" -name "$t" -type f | head -1)
    [ -x "$bin" ] || { echo "missing $t"; status=1; continue; }
    timeout 240 "$bin" --gtest_output=json:"$out/$t.json" > "$out/$t.log" 2>&1 || { status=1; echo "$t exited with $?"; }
    grep -E '^\[case\]' "$out/$t.log" | awk '{for(i=1;i<=NF;i++) if ($i ~ /^rel_fro=/) {split($i,a,"="); if (a[2]>m) m=a[2]}} END {print "worst rel_fro:", m}'
    grep -E '^\[  (PASSED|FAILED|SKIPPED) \]|tests? ran' "$out/$t.log" | tail -4
    grep -E '^\[  FAILED  \] ' "$out/$t.log" | head -20
  done
  ex=$(find "$build" -name parallax_decode_example -type f | head -1)
  if [ -x "$ex" ]; then  # the C example links libparallax.so (carried in .carry/lib)
    timeout 120 "$ex" > "$out/decode_example.log" 2>&1; rc=$?
    echo "C example (plx_decode from C): exit $rc"; tail -3 "$out/decode_example.log"
    [ $rc = 0 ] || status=1
  fi
  if command -v compute-sanitizer >/dev/null; then
    bin=$(find "$build" -name runtime_decode_gpu_test -type f | head -1)
    timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 "$bin" \
      --gtest_filter='*Identity*:*DecodeGpu*/1_*:*DecodeGpu*/6_*:*DecodeGpu*/31_*:*DecodeGpu*/77_*:*DecodeGpu*/180_*:*DecodeGpu*/185_*' > "$out/sanitizer_decode.log" 2>&1
    echo "compute-sanitizer decode subset: exit $? ($(grep -c 'OK \]' "$out/sanitizer_decode.log") tests ok)"
    bin=$(find "$build" -name runtime_prefill_gpu_test -type f | head -1)
    timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 "$bin" --gtest_filter='*PrefillGpu*/1_*:*PrefillGpu*/2_*:*PrefillGpu*/3_*:*PrefillGpu*/40_*:*PrefillGpu*/41_*' \
      > "$out/sanitizer_prefill.log" 2>&1
    echo "compute-sanitizer prefill subset: exit $? ($(grep -c 'OK \]' "$out/sanitizer_prefill.log") tests ok)"
    # Extend over a paged cache: block-table gathers, page size 1, shared pages, NaN past lengths.
    timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 "$bin" \
      --gtest_filter='*PrefillGpu*_page16*:*PrefillGpu*_stats_page1:*NanInsideTheKeys*' > "$out/sanitizer_extend.log" 2>&1
    echo "compute-sanitizer extend subset: exit $? ($(grep -c 'OK \]' "$out/sanitizer_extend.log") tests ok)"
    # The portable family streams K/V with one barrier per tile: its shared memory under racecheck.
    timeout 250 compute-sanitizer --tool racecheck --error-exitcode 9 "$bin" \
      --gtest_filter='*PrefillGpu*/4_*:*PrefillGpu*_page16_shared4*' > "$out/sanitizer_mma_race.log" 2>&1
    echo "compute-sanitizer racecheck mma.sync subset: exit $? ($(grep -c 'OK \]' "$out/sanitizer_mma_race.log") tests ok)"
    # The sm_90a family (the default on an H200): TMA, mbarriers and named barriers under racecheck.
    timeout 200 compute-sanitizer --tool racecheck --error-exitcode 9 "$bin" --gtest_filter='*PrefillGpu*/1_*:*PrefillGpu*/2_*:*PrefillGpu*/4_*' \
      > "$out/sanitizer_prefill_race.log" 2>&1
    echo "compute-sanitizer racecheck prefill subset: exit $? ($(grep -c 'OK \]' "$out/sanitizer_prefill_race.log") tests ok)"
    grep -h "ERROR SUMMARY\|RACECHECK SUMMARY" "$out"/sanitizer_*.log
  fi
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  bin=$(find "$build" -name plx_decode_bench -type f | head -1)
  # Hq/Hkv 32/8 contiguous (with the split sweep), 32/8 paged (page 16), 16/8 contiguous.
  for cfg in "32 8 0" "32 8 16" "16 8 0"; do
    set -- $cfg
    tag="h$1x$2$([ "$3" != 0 ] && echo "-paged$3")"
    if [ -x "$bin" ]; then
      timeout 240 "$bin" --hq "$1" --hkv "$2" --paged "$3" > "$out/decode_ours_$tag.jsonl" 2> "$out/decode_ours_$tag.err" ||
        { status=1; tail -3 "$out/decode_ours_$tag.err"; }
    fi
    if [ "$3" = 0 ]; then
      PYTHONUNBUFFERED=1 timeout 240 python3 bench/sdpa_decode.py "$1" "$2" > "$out/decode_sdpa_h$1x$2.jsonl" 2> /dev/null ||
        { status=1; echo "sdpa $1/$2 failed"; }
    fi
    echo "== decode $tag (SDPA columns: contiguous h$1x$2)"
    python3 bench/decode_table.py "$out/decode_ours_$tag.jsonl" "$out/decode_sdpa_h$1x$2.jsonl" || true
  done
  # Host time of a planned decode step's C API calls (links libparallax.so, like the example).
  plan_bin=$(find "$build" -name plx_plan_host_cost -type f | head -1)
  if [ -x "$plan_bin" ]; then
    echo "== decode plan host cost"
    timeout 300 "$plan_bin" > "$out/plan_host_cost.log" 2>&1 || status=1
    cat "$out/plan_host_cost.log"
  fi
fi
if [ "$what" = python ] || [ "$what" = all ]; then
  # The Python binding in one process with torch SDPA (the issue's one-process comparison).
  export PARALLAX_LIBRARY="$PWD/.carry/lib/libparallax.so"
  PYTHONUNBUFFERED=1 timeout 150 python3 -m unittest discover -s python/tests -p 'test_binding_gpu.py' \
    > "$out/python_gpu_tests.log" 2>&1 && echo "python binding GPU tests: ok" ||
    { status=1; echo "python binding GPU tests: FAILED"; tail -15 "$out/python_gpu_tests.log"; }
  grep -E "^Ran |^OK|FAILED" "$out/python_gpu_tests.log" | tail -2
  PYTHONUNBUFFERED=1 timeout 300 python3 bench/bench_parallax.py --out "$out/bench_parallax.jsonl" ||
    { status=1; echo "bench_parallax failed"; }
fi
if [ "$what" = torch ] || [ "$what" = all ]; then
  # The eager fast path, the custom ops under torch.compile and CUDA graphs, the authors' call
  # shape; then the host cost of one eager call against SDPA's, in one process.
  export PARALLAX_LIBRARY="$PWD/.carry/lib/libparallax.so"
  # The C++ fast path (python/parallax_tuner/torch_ext.py) built against this torch first, so
  # the tests and the first bench run use it.
  export PARALLAX_TORCH_EXT_DIR="${PARALLAX_TORCH_EXT_DIR:-/tmp/plx-torch-ext}"
  t0=$(date +%s)
  (cd python && PYTHONUNBUFFERED=1 timeout 300 python3 -m parallax_tuner.torch_ext build) > "$out/torch_ext_build.log" 2>&1 &&
    echo "C++ fast path built in $(( $(date +%s) - t0 )) s" ||
    { status=1; echo "C++ fast path build FAILED"; tail -20 "$out/torch_ext_build.log"; }
  (cd python/tests && PYTHONUNBUFFERED=1 timeout 400 python3 -m unittest -v test_torch_ops_gpu test_autograd_gpu) \
    > "$out/torch_ops_gpu_tests.log" 2>&1 && echo "torch ops GPU tests: ok" ||
    { status=1; echo "torch ops GPU tests: FAILED"; grep -E "^(FAIL|ERROR):" "$out/torch_ops_gpu_tests.log" | head;
      tail -25 "$out/torch_ops_gpu_tests.log"; }
  grep -E "^Ran |^OK|FAILED" "$out/torch_ops_gpu_tests.log" | tail -2
  grep -E "^\[grad\]" "$out/torch_ops_gpu_tests.log" | sort -t= -k2 -g | tail -4  # the worst gradients
  PYTHONUNBUFFERED=1 timeout 300 python3 bench/python_host_cost.py --out "$out/python_host_cost.json" \
    > "$out/python_host_cost.log" 2>&1 || { status=1; echo "python_host_cost failed"; }
  sed -n '/^| call/,$p' "$out/python_host_cost.log"; tail -3 "$out/python_host_cost.log"
  # The same without the C++ fast path, and without the eager one-launch twin: the rows that move.
  for off in PARALLAX_TORCH_EXT PARALLAX_EAGER_ONE_LAUNCH; do
    env "$off=0" PYTHONUNBUFFERED=1 timeout 300 python3 bench/python_host_cost.py --trials 21 \
      --out "$out/python_host_cost-no-${off#PARALLAX_}.json" > "$out/python_host_cost-no-${off#PARALLAX_}.log" 2>&1 ||
      { status=1; echo "python_host_cost with $off=0 failed"; }
    echo "-- $off=0:"; grep -E "^\| ours (parallax_decode|DecodePlan)|^default variant" "$out/python_host_cost-no-${off#PARALLAX_}.log"
  done
fi
if [ "$what" = prefill-anchors ]; then
  # Our library through the Python binding, the authors' package and torch SDPA in one process.
  export PARALLAX_LIBRARY="$PWD/.carry/lib/libparallax.so"
  anchors=.carry/anchors/authors-parallax
  [ -d "$anchors/parallax" ] || echo "note: $anchors is missing; the authors' column will hold the import error"
  PYTHONUNBUFFERED=1 timeout 420 python3 bench/prefill_anchors.py --out "$out/prefill_anchors.jsonl" \
    --anchors "$anchors" > "$out/prefill_anchors.log" 2> "$out/prefill_anchors.err"
  rc=$?
  [ $rc -eq 0 ] || { status=1; echo "prefill_anchors exited with $rc"; tail -8 "$out/prefill_anchors.err"; }
  # Its table (from the header on); without one (killed by the timeout), the progress so far.
  if grep -q '^== prefill anchors table' "$out/prefill_anchors.log"; then
    sed -n '/^== prefill anchors table/,$p' "$out/prefill_anchors.log"
  else
    tail -25 "$out/prefill_anchors.log"
  fi
  grep -E "^authors' configs precompiled|^    [a-z_]+_error: " "$out/prefill_anchors.log" | awk '!seen[$0]++' | head -12
fi
# The tuner: the `parallax` CLI (or plx_search_cli, the same commands built without the
# gRPC service) and the search GPU tests, found anywhere under the build dir.
if [ "$what" = tune ] || [ "$what" = tune-tests ] || [ "$what" = tune-run ] || [ "$what" = tune-prefill ]; then
  cli=$(find "$build" -name parallax -type f -perm -u+x | head -1)
  [ -x "$cli" ] || cli=$(find "$build" -name plx_search_cli -type f -perm -u+x | head -1)
  [ -x "$cli" ] || { echo "missing the parallax CLI (or plx_search_cli) under $build"; exit 1; }
  echo "tune: CLI $cli"
fi
if [ "$what" = tune ] || [ "$what" = tune-tests ]; then
  bin=$(find "$build" -name search_worker_gpu_test -type f | head -1)
  if [ -x "$bin" ]; then
    PARALLAX_WORKER_BIN="$cli" timeout 570 "$bin" --gtest_output=json:"$out/search_worker_gpu_test.json" \
      > "$out/search_worker_gpu_test.log" 2>&1 || { status=1; echo "search_worker_gpu_test exited with $?"; }
    grep -E '^\[(worker|tune|bench)\]' "$out/search_worker_gpu_test.log"
    grep -E '^\[  (PASSED|FAILED|SKIPPED) \]|tests? ran' "$out/search_worker_gpu_test.log" | tail -4
    grep -E '^\[  FAILED  \] ' "$out/search_worker_gpu_test.log" | head -20
  else
    echo "missing search_worker_gpu_test"; status=1
  fi
fi
if [ "$what" = tune ] || [ "$what" = tune-run ]; then
  budget=${TUNE_BUDGET:-8}
  db="$out/tuner.db"
  rm -f "$db" "$db"-wal "$db"-shm "$db".lock
  # Plain progress lines (stderr is not a tty) go to tune.log; the summary JSON to tune.json.
  timeout $(( (budget + 3) * 60 )) "$cli" tune --preset qwen3-0.6b --batch 1,8,32,128 \
    --seqlen 1024,4096,16384,65536 --budget "${budget}m" --db "$db" --json > "$out/tune.json" 2> "$out/tune.log"
  rc=$?
  [ $rc -eq 0 ] || { status=1; echo "parallax tune exited with $rc"; }
  tail -5 "$out/tune.log"
  "$cli" db show --json --db "$db" > "$out/db_show.json" || status=1
  "$cli" db show --db "$db" | head -40
  "$cli" db verify --db "$db" | head -3
  # The runtime serving the tuned config vs its untuned default, at one bucket.
  "$cli" bench decode --shape 8,4096,16,8,128 --db "$db" --json > "$out/bench_tuned.json" 2>> "$out/bench_tune.err" || status=1
  "$cli" bench decode --shape 8,4096,16,8,128 --json > "$out/bench_default.json" 2>> "$out/bench_tune.err" || status=1
  python3 - "$out/bench_tuned.json" "$out/bench_default.json" <<'PY' || true
import json, sys
for path in sys.argv[1:]:
    j = json.load(open(path))
    print(f"bench b8-l4096: {j['median_us']:.2f} us {j['gbps']:.0f} GB/s ({j['choice']}) {j['variant']}")
PY
fi
if [ "$what" = tune-prefill ]; then
  budget=${TUNE_BUDGET:-4}
  db="$out/tuner-prefill.db"
  rm -f "$db" "$db"-wal "$db"-shm "$db".lock
  timeout $(( (budget + 3) * 60 )) "$cli" tune --mode prefill --preset llama3-8b --batch 1,4 --seqlen 4096,8192 \
    --budget "${budget}m" --db "$db" --json > "$out/tune_prefill.json" 2> "$out/tune_prefill.log"
  rc=$?
  [ $rc -eq 0 ] || { status=1; echo "parallax tune --mode prefill exited with $rc"; }
  tail -6 "$out/tune_prefill.log"
  "$cli" db show --db "$db" | head -20
  "$cli" bench prefill --shape 4,4096,32,8,128 --db "$db" --json > "$out/bench_prefill_tuned.json" \
    2>> "$out/bench_prefill.err" || status=1
  "$cli" bench prefill --shape 4,4096,32,8,128 --json > "$out/bench_prefill_default.json" \
    2>> "$out/bench_prefill.err" || status=1
  python3 - "$out/bench_prefill_tuned.json" "$out/bench_prefill_default.json" <<'PY' || true
import json, sys
for path in sys.argv[1:]:
    j = json.load(open(path))
    print(f"bench prefill t16384-l4096: {j['median_us']:.2f} us ({j['choice']}) {j['variant']}")
PY
fi
if [ "$what" = extend ]; then
  cli=$(find "$build" -name parallax -type f -perm -u+x | head -1)
  # B L Lq probe: a full prefill, a 512-token chunk, speculative verification of 8, softmax.
  for shape in "4 4096 4096 learned" "4 4096 512 learned" "16 2048 8 learned" "4 4096 512 none"; do
    set -- $shape
    for paged in 0 16 64 1; do
      timeout 120 "$cli" bench prefill --shape "$1,$2,32,8,128" --q-len "$3" --probe "$4" --paged "$paged" \
        --reps 10 --json > "$out/extend_b$1_l$2_q$3_$4_p$paged.json" 2>> "$out/extend.err" ||
        { status=1; echo "bench $shape paged $paged failed"; }
    done
  done
  # Multi-token decode (speculative verification of Tq drafts) as one extend launch over pages of
  # 16, against Tq one-token decodes of the same cache.
  for shape in "32 4096" "8 8192" "64 2048"; do
    set -- $shape
    timeout 120 "$cli" bench decode --shape "$1,$2,32,8,128" --paged 16 --reps 10 --json \
      > "$out/multitoken_b$1_l$2_decode.json" 2>> "$out/extend.err" || { status=1; echo "decode $shape failed"; }
    for tq in 4 8; do
      timeout 120 "$cli" bench prefill --shape "$1,$2,32,8,128" --q-len "$tq" --paged 16 --reps 10 --json \
        > "$out/multitoken_b$1_l$2_q$tq.json" 2>> "$out/extend.err" || { status=1; echo "extend $shape q$tq failed"; }
    done
  done
  python3 bench/extend_table.py "$out" | tee "$out/extend_table.md" || status=1
fi
if [ "$what" = decode-sm90 ]; then
  bin=$(find "$build" -name runtime_decode_sm90_gpu_test -type f | head -1)
  py=${PYTHON:-python3}
  export PARALLAX_LIBRARY="$PWD/.carry/lib/libparallax.so" PYTHONUNBUFFERED=1
  if [ -x "$bin" ]; then
    for i in 0 1 2 3; do  # the NVRTC compiles dominate: four processes share the GPU
      GTEST_TOTAL_SHARDS=4 GTEST_SHARD_INDEX=$i timeout 300 "$bin" > "$out/decode_sm90_$i.log" 2>&1 &
    done
    wait
    echo "decode_sm90 suite: $(cat "$out"/decode_sm90_*.log | grep -cE '^\[       OK \]') ok, $(cat "$out"/decode_sm90_*.log | grep -cE '^\[  FAILED  \] .*MatchesFloat64|^\[  FAILED  \] DecodeSm90GpuIdentity') failed"
    grep -hE '^\[  FAILED  \] ' "$out"/decode_sm90_*.log | sort -u | head -10
    cat "$out"/decode_sm90_*.log | grep -cE '^\[  FAILED  \] ' > /dev/null && status=1
    if command -v compute-sanitizer >/dev/null; then
      f='*MatchesFloat64Reference/*_tq3_*:*MatchesFloat64Reference/*_tq16_*:*MatchesFloat64Reference/*_paged8_*'
      for tool in racecheck synccheck memcheck; do
        timeout 300 compute-sanitizer --tool $tool --error-exitcode 9 "$bin" --gtest_filter="$f" \
          > "$out/sanitizer_decode_sm90_$tool.log" 2>&1 &
      done
      wait
      for tool in racecheck synccheck memcheck; do
        echo "compute-sanitizer $tool decode_sm90 subset: $(grep -hE 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/sanitizer_decode_sm90_$tool.log")"
      done
    fi
  else
    echo "missing runtime_decode_sm90_gpu_test"; status=1
  fi
  (cd bench && timeout 300 "$py" multitoken_decode.py --out "$out/multitoken-decode.json" > "$out/multitoken.log" 2>&1) ||
    { status=1; echo "multitoken_decode.py failed"; }
  sed -n '/^config/,$p' "$out/multitoken.log" | head -130
  timeout 400 "$py" bench/decode_grid.py --out "$out/decode-grid.json" > "$out/decode_grid.log" 2>&1 ||
    { status=1; echo "decode_grid.py failed"; }
  tail -40 "$out/decode_grid.log"
fi
if [ "$what" = backward ]; then
  export PARALLAX_LIBRARY="$PWD/.carry/lib/libparallax.so"
  # BWD_TEST=0 / BWD_SWEEP=0 leave out the test / the schedule sweep (to fit one device call).
  bin=$(find "$build" -name runtime_backward_gpu_test -type f | head -1)
  if [ "${BWD_TEST:-1}" = 1 ]; then
    timeout 240 "$bin" > "$out/backward_gpu_test.log" 2>&1 || { status=1; echo "runtime_backward_gpu_test failed"; }
    grep -E '^\[  (PASSED|FAILED) \]|^\[  FAILED  \] |^\[deterministic\]' "$out/backward_gpu_test.log" | head -14
    grep -oE 'rel frob dq [0-9.e-]+ dr [0-9.e-]+ dk [0-9.e-]+ dv [0-9.e-]+' "$out/backward_gpu_test.log" |
      awk '{for (i = 4; i <= 10; i += 2) if ($i > m) m = $i} END {print "backward worst rel frob:", m}'
  fi
  if [ "${BWD_SWEEP:-1}" = 1 ]; then
    PYTHONUNBUFFERED=1 timeout "${BWD_SWEEP_S:-360}" python3 bench/backward_schedules.py --stages "${BWD_STAGES:-1,2}" \
      --shapes "${BWD_SHAPES:-all}" --out "$out/backward_schedules.json" > "$out/backward_schedules.log" 2>&1 ||
      { status=1; echo "backward_schedules failed"; tail -5 "$out/backward_schedules.log"; }
    sed -n '/^| B, Hq/,$p' "$out/backward_schedules.log"
    [ -s "$out/backward_schedules.json" ] || grep '^{' "$out/backward_schedules.log" | grep -v error | cut -c1-200 | tail -40
  fi
  if command -v ncu >/dev/null && [ -n "${BWD_PROFILE_KEYS:-}" ]; then
    PYTHONUNBUFFERED=1 timeout 300 ncu --clock-control none -k plx_bwd_main -c 8 --set full -o "$out/bwd" \
      python3 bench/backward_schedules.py --shapes quick --keys "$BWD_PROFILE_KEYS" --reps 1 --warmup 0 \
      > "$out/ncu.log" 2>&1 || { echo "ncu exited with $?"; tail -3 "$out/ncu.log"; }
    ncu -i "$out/bwd.ncu-rep" --page details > "$out/ncu_details.txt" 2>&1
    grep -E "^  plx_bwd_main|Duration|Compute \(SM\) Throughput|Memory Throughput|L2 Cache Throughput|Registers Per|Achieved Occupancy|Theoretical Occupancy|Issue Slots Busy|Warp Cycles Per Issued|No Eligible|Shared Memory Configuration Size|Block Limit" \
      "$out/ncu_details.txt" | head -80
    ncu -i "$out/bwd.ncu-rep" --page raw --csv --metrics smsp__pcsamp_warps_issue_stalled_barrier,smsp__pcsamp_warps_issue_stalled_long_scoreboard,smsp__pcsamp_warps_issue_stalled_short_scoreboard,smsp__pcsamp_warps_issue_stalled_mio_throttle,smsp__pcsamp_warps_issue_stalled_lg_throttle,smsp__pcsamp_warps_issue_stalled_math_pipe_throttle,smsp__pcsamp_warps_issue_stalled_wait,smsp__pcsamp_warps_issue_stalled_selected,smsp__pcsamp_warps_issue_stalled_not_selected,smsp__pcsamp_warps_issue_stalled_drain,smsp__pcsamp_warps_issue_stalled_dispatch_stall,smsp__pcsamp_warps_issue_stalled_tex_throttle,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,lts__t_sectors_op_red.sum,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active \
      > "$out/ncu_stalls.csv" 2>&1
    cat "$out/ncu_stalls.csv" | cut -c1-1500 | head -12
  fi
fi
exit $status
