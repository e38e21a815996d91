#!/usr/bin/env bash
# Load test of the tuning service: seeds a cache, starts `parallax serve` on an ephemeral
# loopback port, runs plx_service_loadgen (GetBestConfig from N concurrent clients) and
# writes the JSON report to bench/results/service-load-<date>.json.
#
#   scripts/service-loadgen.sh [build-dir]     (env: DURATION=60 CLIENTS=32 OUT=path)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-svc}
duration=${DURATION:-60}
clients=${CLIENTS:-32}
out=${OUT:-bench/results/service-load-$(date -u +%F).json}
loadgen="$build/service/plx_service_loadgen"
parallax="$build/service/parallax"

tmp=$(mktemp -d)
server=
cleanup() {
  if [[ -n "$server" ]] && kill -0 "$server" 2>/dev/null; then kill -TERM "$server"; wait "$server" || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

"$loadgen" --seed-db "$tmp/tuner.db"
"$parallax" serve --listen 127.0.0.1:0 --db "$tmp/tuner.db" --port-file "$tmp/port" --log-level warn &
server=$!
for _ in $(seq 200); do [[ -s "$tmp/port" ]] && break; sleep 0.05; done
[[ -s "$tmp/port" ]] || { echo "server did not start" >&2; exit 1; }

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
mem=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
machine="$(nproc) cores ($cpu), $mem RAM; server and load generator share these cores over loopback"
# 1) closed loop: every client keeps one call in flight, so the box saturates and latency
#    is queueing (mean = clients / QPS); 2) the same clients paced to the target rate.
addr="127.0.0.1:$(cat "$tmp/port")"
# The server's CPU per run (ticks over the whole invocation, warmup included) goes in the
# report next to the machine-wide figure, so other load on the box is visible.
server_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
run() {  # name, extra loadgen args...
  local name=$1 t0 s0
  shift
  t0=$(date +%s.%N); s0=$(server_ticks)
  "$loadgen" --server "$addr" --clients "$clients" --duration "$duration" --machine "$machine" \
    --out "$tmp/$name.json" "$@"
  echo "$(( $(server_ticks) - s0 )) $(getconf CLK_TCK) $t0 $(date +%s.%N)" > "$tmp/$name.server"
}
run closed
run paced --rate "${RATE:-5000}"
mkdir -p "$(dirname "$out")"
/usr/bin/python3 - "$tmp/closed.json" "$tmp/paced.json" "$out" <<'PY'
import json, sys
closed, paced = (json.load(open(p)) for p in sys.argv[1:3])
for run, path in ((closed, sys.argv[1]), (paced, sys.argv[2])):
    ticks, hz, t0, t1 = (float(x) for x in open(path.replace(".json", ".server")).read().split())
    run["cpu_cores_busy"]["server"] = ticks / hz / (t1 - t0)
report = {"benchmark": closed["benchmark"], "date": closed["date"], "machine": closed["machine"],
          "closed_loop": closed, "paced": paced}
for run in (closed, paced):
    for k in ("benchmark", "date", "machine"):
        run.pop(k)
json.dump(report, open(sys.argv[3], "w"), indent=2)
PY
echo "report: $out" >&2
