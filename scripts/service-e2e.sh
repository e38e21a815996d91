#!/usr/bin/env bash
# The tuning service end to end on a GPU host, in one call:
#   1. `parallax serve` on loopback (ephemeral port) over a fresh database;
#   2. the Python client (grpcio, stubs generated from our proto) submits a decode tuning job
#      for two qwen3-0.6b buckets, watches its progress to the end and lists the configs;
#   3. the C++ client (`parallax remote get`) asks for the tuned config of this GPU;
#   4. the runtime launches the tuned kernel (`parallax bench decode`): from the server's
#      database file, and with no database asking the server (--server); both must report
#      choice "exact"; the untuned default is timed alongside;
#   5. SIGTERM: the server must exit 0.
# Usage: scripts/service-e2e.sh CLI [STUBS_DIR] [OUT_DIR]   (E2E_BUDGET seconds, default 120)
set -uo pipefail
cli=${1:?usage: scripts/service-e2e.sh CLI [STUBS_DIR] [OUT_DIR]}
stubs=${2:-}
out=${3:-${OUT:-/tmp/parallax-out}}
budget=${E2E_BUDGET:-120}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/.carry/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
# bench reads the shared tuning database by default; the "default" and "--server" runs below
# must not find one this host may have.
export PARALLAX_DB=${PARALLAX_DB:-none}
[ -n "$stubs" ] && export PARALLAX_STUBS_DIR="$stubs"
work=$(mktemp -d /tmp/parallax-e2e.XXXXXX)
status=0
fail() { echo "e2e FAIL: $*"; status=1; }

"$cli" serve --listen 127.0.0.1:0 --port-file "$work/port" --db "$work/tuner.db" --cache-dir "$work/kernels" \
  > "$out/e2e_serve.log" 2>&1 &
server=$!
trap 'kill -9 $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || { fail "server did not start"; tail -5 "$out/e2e_serve.log"; exit 1; }
addr="127.0.0.1:$(cat "$work/port")"
echo "e2e: server on $addr ($(grep -m1 -o 'GPU 0: .*' "$out/e2e_serve.log"))"

# Stubs generated here by Debian's protoc 3.21 may be too old for the host's protobuf
# runtime: then let the client generate its own (grpc_tools), else use the pure-Python
# protobuf implementation with ours. Whichever worked is printed.
export PYTHONPATH="$PWD/python"
if ! python3 -c 'import parallax_client' 2> /dev/null; then
  if PARALLAX_STUBS_DIR= python3 -c 'import parallax_client' 2> /dev/null; then
    unset PARALLAX_STUBS_DIR; echo "e2e: python stubs generated on the host (grpc_tools)"
  else
    export PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python; echo "e2e: python stubs from the build, pure-Python protobuf"
  fi
fi
python3 -c 'import grpc, google.protobuf as p; print(f"e2e: python grpcio {grpc.__version__}, protobuf {p.__version__}")'
PYTHONUNBUFFERED=1 timeout $((budget + 120)) python3 - "$addr" "$budget" "$out/e2e_job.json" <<'PY' || fail "python client"
import json, sys, time
from parallax_client.client import Client
addr, budget, path = sys.argv[1], float(sys.argv[2]), sys.argv[3]
base = {"mode": "MODE_DECODE", "dtype": "DTYPE_BF16", "head_dim": 128, "num_q_heads": 16, "num_kv_heads": 8,
        "kv_layout": "KV_LAYOUT_CONTIGUOUS", "probe": "PROBE_LEARNED", "affine": "AFFINE_PLAIN"}
problems = [dict(base, batch=8, seqlen=4096), dict(base, batch=1, seqlen=16384)]
with Client(addr) as c:
    assert c.health(), "not SERVING"
    job = c.submit(problems, budget_seconds=budget)
    print(f"python client: job {job.job_id} {job.state and 'queued'}")
    t0, last, snapshots = time.time(), 0, []
    for p in c.watch(job.job_id):
        snapshots.append({"t": round(time.time() - t0, 2), "tried": p.variants_tried, "total": p.variants_total,
                          "eta_s": round(p.eta_seconds, 1), "message": p.message})
        if time.time() - last > 10 or p.state > 2:
            best = "; ".join(f"{b.bucket} {b.median_us:.2f} us" for b in p.best_so_far)
            print(f"  t={time.time() - t0:5.1f}s {p.variants_tried}/{p.variants_total} tried, eta {p.eta_seconds:.0f} s, "
                  f"best: {best or '-'} [{p.message}]")
            last = time.time()
        final = p
    from parallax_client.client import pb2
    state = pb2.JobState.Name(final.state)
    print(f"python client: job {job.job_id} {state} in {time.time() - t0:.1f} s, {final.variants_tried} variants")
    for r in final.results:
        print(f"  result {r.problem_key} {r.bucket}: {r.variant_key} {r.median_us:.2f} us")
    configs = c.list_configs()
    print(f"python client: {len(configs)} config(s) listed")
    json.dump({"job_id": job.job_id, "state": state, "wall_s": time.time() - t0,
               "variants_tried": final.variants_tried, "snapshots": len(snapshots), "progress": snapshots[-40:],
               "results": [{"problem_key": r.problem_key, "bucket": r.bucket, "variant_key": r.variant_key,
                            "median_us": r.median_us} for r in final.results],
               "configs": [{"device": e.device_fingerprint, "bucket": e.bucket, "variant_key": e.variant_key,
                            "median_us": e.median_us} for e in configs]}, open(path, "w"), indent=1)
    sys.exit(0 if state == "JOB_STATE_DONE" and len(final.results) == 2 else 1)
PY

echo "e2e: C++ client (remote get, this GPU):"
"$cli" remote get --server "$addr" --mode decode --q-heads 16 --kv-heads 8 --head-dim 128 --batch 8 --seqlen 4096 \
  --json > "$out/e2e_remote_get.json" 2> "$work/get.err" || { fail "remote get"; cat "$work/get.err"; }
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("  ", j.get("match"), j.get("bucket"), j.get("variant_key"))' \
  "$out/e2e_remote_get.json" 2>/dev/null

shape=8,4096,16,8,128
"$cli" bench decode --shape $shape --db "$work/tuner.db" --json > "$out/e2e_bench_db.json" 2> "$work/b1.err" || { fail "bench --db"; tail -3 "$work/b1.err"; }
"$cli" bench decode --shape $shape --server "$addr" --json > "$out/e2e_bench_server.json" 2> "$work/b2.err" || { fail "bench --server"; tail -3 "$work/b2.err"; }
"$cli" bench decode --shape $shape --json > "$out/e2e_bench_default.json" 2> "$work/b3.err" || { fail "bench default"; tail -3 "$work/b3.err"; }
python3 - "$out" <<'PY' || fail "the runtime did not launch the tuned config"
import json, sys
out = sys.argv[1]
rows = {k: json.load(open(f"{out}/e2e_bench_{k}.json")) for k in ("db", "server", "default")}
for k, j in rows.items():
    print(f"e2e: runtime via {k:<7} {j['choice']:<8} {j['median_us']:7.2f} us {j['gbps']:5.0f} GB/s  ok={j['ok']}  {j['variant']}")
assert rows["db"]["choice"] == "exact" and rows["server"]["choice"] == "exact", "expected exact tuned configs"
assert rows["db"]["variant"] == rows["server"]["variant"]
assert all(j["ok"] for j in rows.values())
PY

kill -TERM $server
for _ in $(seq 100); do kill -0 $server 2>/dev/null || break; sleep 0.1; done
wait $server; rc=$?
echo "e2e: server exit after SIGTERM: $rc"
[ $rc = 0 ] || fail "server exit $rc"
cp "$work/tuner.db" "$out/e2e_tuner.db" 2>/dev/null
echo "e2e: $([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status
