#!/usr/bin/env bash
# `parallax fleet` tests (label cpu).
#
#   fleet_slurm_test.sh cli   CLI FAKE_WORKER SOURCE_DIR   # usage errors, --help, --dry-run, --script-only
#   fleet_slurm_test.sh slurm CLI FAKE_WORKER SOURCE_DIR   # end to end on a real single-node Slurm
#
# slurm: starts munged, slurmctld and slurmd on 127.0.0.1 (scripts/fleet/local-slurm.sh: own
# munge key and socket, two free ports, four fake GPUs as gres, everything under a temporary
# directory, stopped on exit whatever happens), then
#   1. tunes the grid unsharded (the reference database), with no Slurm;
#   2. `fleet submit`s it as 4 shards: a job array with --gres=gpu:1 per task and a merge job
#      after it (afterok); the tasks run the test build of the CLI on a fake GPU with the fake
#      worker (tune's test hooks, service/cli/test_hooks.h), slowed so a shard takes seconds;
#   3. once shard 2 has finished a bucket and is part way through the next, `scancel`s its task:
#      the merge job must then be cancelled (its dependency can no longer be met);
#   4. `fleet submit`s the same fleet again: only shard 2 runs, it measures nothing it had
#      measured before, and the merge job runs;
#   5. checks the merged database against the reference: the same best config (variant and
#      time) for every bucket, and every (bucket, variant) measured exactly once, as the
#      reference run measured it: nothing lost, nothing measured twice;
#   6. `fleet status` reads the shard databases without changing a byte of them, and a third
#      submission of the complete fleet runs no shard, only the (idempotent) merge.
# CI's runner and the developers' machines run as root with slurm-wlm and munge installed
# (scripts/install-deps.sh); anything missing fails the test with what to install.
set -uo pipefail
mode=${1:?usage: fleet_slurm_test.sh cli|slurm CLI FAKE_WORKER SOURCE_DIR}
cli=${2:?CLI}
worker=${3:?FAKE_WORKER}
src=${4:?SOURCE_DIR}
local_slurm="$src/scripts/fleet/local-slurm.sh"

failures=0
checks=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { checks=$((checks + 1)); }
check() {  # check DESCRIPTION COMMAND...: the command must succeed
  local what=$1
  shift
  if "$@"; then ok; else fail "$what"; fi
}
expect_exit() {  # expect_exit CODE DESCRIPTION COMMAND...: stdout+stderr in $work/out
  local want=$1 what=$2 got
  shift 2
  "$@" > "$work/out" 2>&1
  got=$?
  if [ "$got" -eq "$want" ]; then ok; else fail "$what: exit $got, wanted $want: $(head -c 600 "$work/out")"; fi
}
contains() { grep -q -F -- "$2" "$1" || { echo "  (no '$2' in $1: $(head -c 400 "$1"))"; return 1; }; }

work=$(mktemp -d /tmp/plx-fleet-test.XXXXXX)
chmod 755 "$work"  # munged needs its socket directory's parents searchable by all
cleanup() {
  [ -d "$work/slurm" ] && bash "$local_slurm" stop "$work/slurm" > /dev/null 2>&1
  if [ "$failures" -eq 0 ]; then rm -rf "$work"; else echo "kept $work for a look"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT

export PARALLAX_DB=none  # nothing here may read or write the user's database
# The tune options of every run here: 8 decode buckets, the exhaustive strategy (the winner
# depends on the measured times only), no budget.
tune_args=(--preset qwen3-0.6b --batch 1,8 --seqlen 1024,4096,16384,65536 --strategy exhaustive --splits 0
           --no-fused --reps 1,2,3 --budget 0 --compile-threads 1 --cache-dir "$work/kernels")

# ---------------------------------------------------------------- cli: no Slurm needed
if [ "$mode" = cli ]; then
  for sub in "" submit status; do
    expect_exit 0 "fleet $sub --help" "$cli" fleet $sub --help
    check "fleet $sub --help says what it does" contains "$work/out" "Usage"
  done
  check "submit --help shows the tune options slot" contains <("$cli" fleet submit --help) "TUNE-OPTIONS"
  check "parallax --help lists fleet" contains <("$cli" --help) "fleet"
  expect_exit 2 "fleet without a subcommand" "$cli" fleet
  expect_exit 2 "submit without --shards" "$cli" fleet submit --dir "$work/f" --db "$work/m.db" -- --preset qwen3-0.6b
  expect_exit 2 "submit with --shards 0" "$cli" fleet submit --shards 0 --dir "$work/f" --db "$work/m.db" -- --preset qwen3-0.6b
  expect_exit 2 "submit without tune options" "$cli" fleet submit --shards 4 --dir "$work/f" --db "$work/m.db"
  check "  ... says where they go" contains "$work/out" "after \`--\`"
  expect_exit 2 "submit without a target" "$cli" fleet submit --shards 4 --dir "$work/f" -- --preset qwen3-0.6b
  check "  ... names --db" contains "$work/out" "--db PATH"
  expect_exit 2 "submit with --db among the tune options" \
    "$cli" fleet submit --shards 4 --dir "$work/f" --db "$work/m.db" -- --preset qwen3-0.6b --db x.db
  expect_exit 2 "submit with --shard among the tune options" \
    "$cli" fleet submit --shards 4 --dir "$work/f" --db "$work/m.db" -- --preset qwen3-0.6b --shard 1/4
  expect_exit 2 "submit with bad tune options" \
    "$cli" fleet submit --shards 4 --dir "$work/f" --db "$work/m.db" -- --preset no-such-model
  check "  ... the tune command's own complaint" contains "$work/out" "--preset"
  expect_exit 2 "submit --dry-run with --script-only" \
    "$cli" fleet submit --shards 4 --dir "$work/f" --db "$work/m.db" --dry-run --script-only -- --preset qwen3-0.6b
  expect_exit 2 "submit with an --sbatch-arg fleet sets itself" \
    "$cli" fleet submit --shards 4 --dir "$work/f" --db "$work/m.db" --sbatch-arg=--array=1-2 -- --preset qwen3-0.6b
  expect_exit 2 "status without --dir" "$cli" fleet status
  expect_exit 2 "status of a directory with no fleet" "$cli" fleet status --dir "$work"
  check "  ... says so" contains "$work/out" "no fleet there"

  # --dry-run: the scripts on stdout, nothing written, no Slurm needed.
  expect_exit 0 "submit --dry-run" "$cli" fleet submit --shards 4 --dir "$work/f" --db "$work/m.db" --gpus 2 --dry-run \
    --partition gpu --time 1:00:00 --sbatch-arg=--constraint=h100 -- "${tune_args[@]}"
  for want in "#SBATCH --array=1-4" "#SBATCH --gres=gpu:2" "#SBATCH --partition=gpu" "#SBATCH --time=1:00:00" \
              "#SBATCH --constraint=h100" 'tune --shard "$shard/$shards" --db "$fleet_dir/shard-$shard.db"' \
              "--preset qwen3-0.6b" "--seqlen 1024,4096,16384,65536" 'db import "$fleet_dir/shard-$shard.db" --db "$target"' \
              "--dependency=afterok:" "--kill-on-invalid-dep=yes"; do
    check "dry-run shows $want" contains "$work/out" "$want"
  done
  check "dry-run writes nothing" test ! -e "$work/f"
  expect_exit 0 "submit --dry-run --json" "$cli" fleet submit --shards 3 --dir "$work/f" --db "$work/m.db" --dry-run \
    --json -- "${tune_args[@]}"
  check "dry-run --json: a plan of 3 shards covering the 8 buckets once each" python3 - "$work/out" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
buckets = [b for s in j["plan"] for b in s["buckets"]]
assert len(j["plan"]) == 3 and len(buckets) == 8 and len(set(buckets)) == 8, j["plan"]
assert j["tasks"] == [1, 2, 3] and "#SBATCH --array=1-3" in j["tune_script"], j
PY
  # --script-only: the scripts and the manifest written, bash-valid, nothing submitted.
  expect_exit 0 "submit --script-only" "$cli" fleet submit --shards 4 --dir "$work/f" --db "$work/m.db" --script-only \
    -- "${tune_args[@]}"
  check "script-only prints the sbatch commands" contains "$work/out" "sbatch --parsable"
  for f in tune.sbatch merge.sbatch fleet.json; do check "script-only wrote $f" test -s "$work/f/$f"; done
  check "tune.sbatch is valid bash" bash -n "$work/f/tune.sbatch"
  check "merge.sbatch is valid bash" bash -n "$work/f/merge.sbatch"
  expect_exit 0 "status of a fleet not submitted yet" "$cli" fleet status --dir "$work/f"
  check "  ... every shard waiting" test "$(grep -c ' waiting ' "$work/out")" -eq 4
  check "  ... 0/8 buckets" contains "$work/out" "0/8 bucket(s) done"
  expect_exit 2 "submit another fleet into the same directory" "$cli" fleet submit --shards 2 --dir "$work/f" \
    --db "$work/m.db" --script-only -- "${tune_args[@]}"
  check "  ... says to use another --dir" contains "$work/out" "another --dir"
  echo "fleet cli: $checks passed, $failures failed"
  [ "$failures" -eq 0 ]
  exit
fi

[ "$mode" = slurm ] || { echo "unknown mode $mode"; exit 2; }

# ---------------------------------------------------------------- slurm: end to end
py() { python3 - "$@"; }
# Every (bucket, variant, status) measured, and every best config, as sorted text.
db_dump() {
  py "$1" <<'PY'
import sqlite3, sys
c = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
for r in sorted(c.execute("SELECT m.bucket, v.key, m.status FROM measurements m JOIN variants v ON v.id = m.variant_id")):
    print("measurement", *r)
for r in sorted(c.execute("SELECT d.fingerprint, b.problem_key, b.bucket, b.variant_key, b.median_us FROM best_configs b "
                          "JOIN devices d ON d.id = b.device_id")):
    print("best", *r)
PY
}
status_json() { "$cli" fleet status --dir "$work/fleet" --json; }
# field of `fleet status --json`: a Python expression over j
status_get() {
  status_json 2> /dev/null | python3 -c 'import json, sys; j = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}
# Waits (up to $1 s) until no job of ours is pending or running.
wait_queue_empty() {
  local i
  for i in $(seq $(($1 * 4))); do
    [ -z "$(squeue --noheader --format=%T 2> /dev/null)" ] && return 0
    sleep 0.25
  done
  squeue
  return 1
}

echo "fleet slurm: starting a single-node Slurm under $work/slurm"
# Should this script be killed without its cleanup (a CTest timeout), the daemons still go
# by themselves after 10 minutes.
LOCAL_SLURM_LIFETIME=600 bash "$local_slurm" start "$work/slurm" 4 8
rc=$?
if [ $rc -ne 0 ]; then
  fail "scripts/fleet/local-slurm.sh start: exit $rc (3: not installed or not root; see above)"
  exit 1
fi
export SLURM_CONF="$work/slurm/etc/slurm.conf"

# tune's test hooks: fake GPUs (one per CUDA_VISIBLE_DEVICES entry Slurm gives a task) and the
# fake worker; sbatch passes the environment on to the tasks.
export PARALLAX_TEST_FAKE_GPU=FakeGPU PARALLAX_TEST_WORKER="$worker"

t0=$SECONDS
FAKE_DELAY_MS=0 "$cli" tune "${tune_args[@]}" --db "$work/ref.db" > "$work/ref.out" 2> "$work/ref.err" ||
  { fail "the unsharded reference tune: $(tail -3 "$work/ref.err")"; exit 1; }
echo "fleet slurm: reference tune (unsharded, no Slurm) in $((SECONDS - t0)) s"
db_dump "$work/ref.db" > "$work/ref.dump"
want_measured=$(grep -c '^measurement' "$work/ref.dump")
check "the reference tuned 8 buckets" test "$(grep -c '^best' "$work/ref.dump")" -eq 8

# Each measurement takes 50 ms: a shard (2 buckets) runs for several seconds.
export FAKE_DELAY_MS=50
submit=("$cli" fleet submit --shards 4 --dir "$work/fleet" --db "$work/merged.db" --gpus 1 --json -- "${tune_args[@]}")
"${submit[@]}" > "$work/submit1.json" 2> "$work/submit1.err" || { fail "fleet submit: $(cat "$work/submit1.err")"; exit 1; }
array1=$(py "$work/submit1.json" <<< 'import json,sys; print(json.load(open(sys.argv[1]))["array_job"])')
merge1=$(py "$work/submit1.json" <<< 'import json,sys; print(json.load(open(sys.argv[1]))["merge_job"])')
echo "fleet slurm: submitted job array $array1 and merge job $merge1"
check "submit wrote the tune script" test -s "$work/fleet/tune.sbatch"
check "the tasks asked for one GPU each" contains "$work/fleet/tune.sbatch" "#SBATCH --gres=gpu:1"

# Shard 2, once it has finished a bucket and measured part of the next: cancel its task.
victim=2
planned=$(status_get "j['shard_status'][$victim - 1]['buckets_planned']")
check "shard $victim has 2 buckets" test "$planned" = 2
killed=""
deadline=$((SECONDS + 120))
while [ $SECONDS -lt $deadline ]; do
  read -r done measured state < <(status_get \
    "' '.join(str(x) for x in (j['shard_status'][$victim - 1]['buckets_done'], j['shard_status'][$victim - 1]['measurements'], j['shard_status'][$victim - 1]['state']))")
  if [ "${done:-0}" -ge 1 ] && [ "${measured:-0}" -gt $((want_measured / 8 + 3)) ]; then
    scancel "${array1}_${victim}"
    killed="after $done bucket(s) and $measured measurement(s)"
    break
  fi
  [ "$state" = done ] && break
  sleep 0.1
done
[ -n "$killed" ] || { fail "shard $victim finished before it could be cancelled part way (state $state)"; exit 1; }
echo "fleet slurm: cancelled task ${array1}_${victim} $killed"
check "the queue drains after the cancel" wait_queue_empty 120
for i in 1 2 3 4; do  # Slurm gave every task a GPU of its gres (the task logs say which)
  check "shard $i's task got one of the node's GPUs" grep -q -E "GPUs [0-3], " "$work/fleet/logs/shard-$i.log"
done
"$cli" fleet status --dir "$work/fleet" > "$work/status1.txt" 2>&1
cat "$work/status1.txt"
status_json > "$work/status1.json"
check "after the cancel: shard $victim stopped part way, the others complete, the merge cancelled" py "$work/status1.json" "$victim" "$array1" <<'PY'
import json, sys
j, victim, array = json.load(open(sys.argv[1])), int(sys.argv[2]), sys.argv[3]
for s in j["shard_status"]:
    if s["index"] == victim:
        assert s["state"] == "stopped" and not s["complete"], s
        assert 1 <= s["buckets_done"] < s["buckets_planned"], s
        assert s["slurm"]["state"] == "CANCELLED", s
    else:
        assert s["state"] == "done" and s["complete"] and s["slurm"]["state"] == "COMPLETED", s
assert not j["complete"] and j["merge"]["state"] == "CANCELLED", j["merge"]
PY
check "no merged database yet" test ! -e "$work/merged.db"
db_dump "$work/fleet/shard-$victim.db" | grep '^measurement' > "$work/victim-before.dump"
echo "fleet slurm: shard $victim kept $(wc -l < "$work/victim-before.dump") measurement(s)"

# Resubmit the same fleet: only the stopped shard runs, then the merge.
sums_before=$(cd "$work/fleet" && sha256sum shard-1.db shard-3.db shard-4.db)
"${submit[@]}" > "$work/submit2.json" 2> "$work/submit2.err" || { fail "fleet resubmit: $(cat "$work/submit2.err")"; exit 1; }
check "the resubmission runs shard $victim only" py "$work/submit2.json" "$victim" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["tasks"] == [int(sys.argv[2])] and sorted(j["complete"]) == [i for i in (1, 2, 3, 4) if i != int(sys.argv[2])], j
assert j["array_job"] and j["merge_job"], j
PY
merge2=$(py "$work/submit2.json" <<< 'import json,sys; print(json.load(open(sys.argv[1]))["merge_job"])')
check "the second fleet's jobs end" wait_queue_empty 120
check "the merge job ran" test -s "$work/merged.db"
check "the merge job left its mark" test -s "$work/fleet/merged"
sums_after=$(cd "$work/fleet" && sha256sum shard-1.db shard-3.db shard-4.db)
check "complete shards were not touched by the resubmission" test "$sums_before" = "$sums_after"
"$cli" fleet status --dir "$work/fleet" > "$work/status2.txt" 2>&1
cat "$work/status2.txt"
check "status: all complete" contains "$work/status2.txt" "8/8 bucket(s) done, 4/4 shard(s) complete"
check "status: the merge job completed" contains "$work/status2.txt" "merge job $merge2 COMPLETED"

# The merged fleet against the reference: the same best configs, every measurement once.
db_dump "$work/merged.db" > "$work/merged.dump"
if diff <(grep '^best' "$work/ref.dump") <(grep '^best' "$work/merged.dump") > "$work/best.diff"; then ok; else
  fail "merged best configs differ from the unsharded run's: $(head -20 "$work/best.diff")"
fi
if diff <(grep '^measurement' "$work/ref.dump") <(grep '^measurement' "$work/merged.dump") > "$work/meas.diff"; then ok; else
  fail "merged measurements differ from the unsharded run's (lost or measured twice): $(head -20 "$work/meas.diff")"
fi
# What shard 2 had measured before it was killed is all still there, once.
db_dump "$work/fleet/shard-$victim.db" | grep '^measurement' > "$work/victim-after.dump"
check "shard $victim lost nothing measured before the kill" \
  test -z "$(comm -23 "$work/victim-before.dump" "$work/victim-after.dump")"
check "shard $victim measured nothing twice" test -z "$(uniq -d "$work/victim-after.dump")"

# status only reads: the shard databases' bytes are unchanged by it.
sums_before=$(cd "$work/fleet" && sha256sum shard-*.db)
"$cli" fleet status --dir "$work/fleet" --json > /dev/null 2>&1
sums_after=$(cd "$work/fleet" && sha256sum shard-*.db)
check "fleet status changes no shard database" test "$sums_before" = "$sums_after"

# A third submission of the complete fleet: no shard runs, only the merge, which adds nothing.
"${submit[@]}" > "$work/submit3.json" 2> "$work/submit3.err" || fail "fleet third submit: $(cat "$work/submit3.err")"
check "the complete fleet submits no shard" py "$work/submit3.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["tasks"] == [] and j["array_job"] is None and j["merge_job"], j
PY
check "the third merge ends" wait_queue_empty 60
db_dump "$work/merged.db" > "$work/merged3.dump"
check "merging again adds nothing" cmp -s "$work/merged.dump" "$work/merged3.dump"

echo "fleet slurm: $checks passed, $failures failed ($((SECONDS - t0)) s after the cluster was up)"
[ "$failures" -eq 0 ]
