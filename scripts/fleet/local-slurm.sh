#!/usr/bin/env bash
# A throwaway single-node Slurm on 127.0.0.1, for tests and for trying `parallax fleet`:
# munged (its own key and socket), slurmctld and slurmd (Debian's slurm-wlm 22.05, munge),
# with everything (config, state, spool, logs, pids) under one directory and two free
# loopback ports. The node has GPUS fake GPUs as gres (device files are links to /dev/null;
# Slurm gives each task CUDA_VISIBLE_DEVICES as for real ones). Nothing system-wide is read or
# written: clients find this cluster through $SLURM_CONF only.
#
#   scripts/fleet/local-slurm.sh start DIR [GPUS [CPUS]]   # GPUS default 4, CPUS default 8
#   export SLURM_CONF=DIR/etc/slurm.conf                    # then sbatch, squeue, parallax fleet ...
#   scripts/fleet/local-slurm.sh stop DIR                   # cancels every job, stops the daemons
#
# Needs root (SlurmUser=root; slurmd starts jobs) and the packages slurm-wlm and munge
# (scripts/install-deps.sh). The daemons stop by themselves after $LOCAL_SLURM_LIFETIME
# seconds (default 1800) should nobody call stop. Exit status of start: 0 when the node is
# idle, 3 when a needed program is missing, 1 when a daemon would not start (its log's tail is
# printed).
set -euo pipefail

usage() { echo "usage: $0 start DIR [GPUS [CPUS]] | stop DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1
dir=$(realpath -m "$2")
conf="$dir/etc/slurm.conf"
self=$(realpath "$0")

log_tail() {  # the last lines of each daemon log, for a failed start
  local f
  for f in "$dir"/log/*; do
    [ -s "$f" ] || continue
    echo "---- $f" >&2
    tail -n 15 "$f" >&2
  done
}

kill_pidfile() {  # TERM, then KILL after 5 s, the process whose pid is in $1
  local f=$1 pid i
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

stop() {
  export SLURM_CONF="$conf"
  if [ -s "$dir/run/slurmctld.pid" ] && kill -0 "$(cat "$dir/run/slurmctld.pid")" 2>/dev/null; then
    # Every job of this cluster (its controller knows no other), then wait for them to end.
    scancel --quiet --user="$(id -un)" 2>/dev/null || true
    local i
    for i in $(seq 100); do
      [ -z "$(squeue --noheader --states=all --format=%T 2>/dev/null | grep -v -E 'COMPLETED|CANCELLED|FAILED|TIMEOUT|OUT_OF_MEMORY|NODE_FAIL|PREEMPTED|BOOT_FAIL|DEADLINE')" ] && break
      sleep 0.2
    done
  fi
  kill_pidfile "$dir/run/slurmd.pid"
  kill_pidfile "$dir/run/slurmctld.pid"
  kill_pidfile "$dir/run/munged.pid"
  if [ -z "${LOCAL_SLURM_WATCHDOG:-}" ] && [ -s "$dir/run/watchdog.pid" ]; then
    kill -TERM -- "-$(cat "$dir/run/watchdog.pid")" 2>/dev/null || true
  fi
  rm -f "$dir/run/watchdog.pid"
}

free_port() {  # a TCP port on 127.0.0.1 that nothing listens on now
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds
  local secs=$1 what=$2 i
  shift 2
  for i in $(seq $((secs * 5))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "local-slurm: $what did not come up within $secs s" >&2
  log_tail
  stop
  exit 1
}

start() {
  local gpus=${1:-4} cpus=${2:-8} p missing=()
  [ "$(id -u)" -eq 0 ] || { echo "local-slurm: needs root (SlurmUser=root, slurmd starts the jobs)" >&2; exit 3; }
  for p in munged munge slurmctld slurmd sbatch squeue scancel sinfo scontrol python3; do
    command -v "$p" >/dev/null || missing+=("$p")
  done
  if ((${#missing[@]} > 0)); then
    echo "local-slurm: missing ${missing[*]}: install slurm-wlm and munge (scripts/install-deps.sh)" >&2
    exit 3
  fi
  if [ -s "$dir/run/slurmctld.pid" ] && kill -0 "$(cat "$dir/run/slurmctld.pid")" 2>/dev/null; then
    echo "local-slurm: $dir already runs a cluster (stop it first)" >&2
    exit 1
  fi
  # munged wants its socket's directory and every one above it searchable by all.
  mkdir -p "$dir"
  chmod 755 "$dir"
  mkdir -p "$dir/etc" "$dir/state" "$dir/spool" "$dir/log" "$dir/run" "$dir/munge-socket" "$dir/dev"
  chmod 755 "$dir/munge-socket"
  mkdir -p -m 700 "$dir/munge"
  rm -f "$dir/log/"*
  [ -s "$dir/munge/munge.key" ] || { head -c 1024 /dev/urandom > "$dir/munge/munge.key"; chmod 400 "$dir/munge/munge.key"; }
  local i
  for ((i = 0; i < gpus; i++)); do ln -sfn /dev/null "$dir/dev/fakegpu$i"; done
  local ctld_port slurmd_port
  ctld_port=$(free_port)
  slurmd_port=$(free_port)
  while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port=$(free_port); done

  cat > "$conf" <<EOF
# Written by scripts/fleet/local-slurm.sh: a single-node cluster on 127.0.0.1 for tests.
ClusterName=plxlocal
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
# Listen on 127.0.0.1 only, never on every address.
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge-socket/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pidfile
SlurmdPidFile=$dir/run/slurmd.pidfile
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups, no accounting: nothing outside this directory is touched.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=5
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=1024 Gres=gpu:$gpus State=UNKNOWN
PartitionName=local Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  if ((gpus > 0)); then
    echo "Name=gpu File=$dir/dev/fakegpu[0-$((gpus - 1))]" > "$dir/etc/gres.conf"
  else
    : > "$dir/etc/gres.conf"
  fi
  export SLURM_CONF="$conf"

  munged --foreground --key-file="$dir/munge/munge.key" --socket="$dir/munge-socket/munge.socket" \
    --pid-file="$dir/run/munged.pidfile" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed" \
    < /dev/null > "$dir/log/munged.out" 2>&1 &
  echo $! > "$dir/run/munged.pid"
  wait_for 10 munged munge --socket="$dir/munge-socket/munge.socket" --no-input

  slurmctld -D -f "$conf" < /dev/null > "$dir/log/slurmctld.out" 2>&1 &
  echo $! > "$dir/run/slurmctld.pid"
  wait_for 30 slurmctld scontrol ping

  slurmd -D -f "$conf" -N localhost < /dev/null > "$dir/log/slurmd.out" 2>&1 &
  echo $! > "$dir/run/slurmd.pid"
  node_idle() { [ "$(sinfo --noheader --nodes=localhost --format=%t)" = idle ]; }
  wait_for 30 "slurmd (node idle)" node_idle

  # Should nobody call stop (a test killed by its timeout), the daemons go by themselves. Its
  # own session, so that stop ends the sleep with it.
  setsid bash -c 'sleep "$1" && LOCAL_SLURM_WATCHDOG=1 bash "$2" stop "$3"' watchdog "${LOCAL_SLURM_LIFETIME:-1800}" \
    "$self" "$dir" < /dev/null > /dev/null 2>&1 &
  echo $! > "$dir/run/watchdog.pid"
  echo "local-slurm: up (slurmctld 127.0.0.1:$ctld_port, slurmd :$slurmd_port, $gpus fake GPU(s), $cpus CPUs); export SLURM_CONF=$conf"
}

case "$cmd" in
  start) shift 2; start "$@" ;;
  stop) stop ;;
  *) usage ;;
esac
