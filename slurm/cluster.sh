#!/usr/bin/env bash
# A one-node Slurm test cluster (munged + slurmctld + slurmd from the Debian packages), run as plain
# background daemons without systemd, every file under one folder (the munge socket aside, see
# below). For tests and demos only.
#
#   slurm/cluster.sh start|stop|status|env [--dir DIR]
#
#   --dir DIR   state folder (default $SUSTAIN_SLURM_DIR or /tmp/sustain-slurm)
#   env         prints `export SLURM_CONF=...`: clients (sbatch, squeue, ...) find the cluster by it
# Environment: SUSTAIN_SLURM_PORT (slurmctld port, slurmd uses the next one; default 6817),
#              SUSTAIN_SLURM_CPUS (CPUs the node offers; default nproc).
# stop cancels the cluster's jobs, stops the daemons and kills any job process they left behind.
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
action=${1:-}; shift || true
DIR=${SUSTAIN_SLURM_DIR:-/tmp/sustain-slurm}
while [ $# -gt 0 ]; do
  case $1 in
    --dir) DIR=${2:?--dir needs a folder}; shift 2 ;;
    *) echo "error: unknown option $1 (fix: see slurm/cluster.sh --help)" >&2; exit 2 ;;
  esac
done
DIR=$(realpath -m "$DIR")
NODE=$(hostname -s)
PORT=${SUSTAIN_SLURM_PORT:-6817}
CPUS=${SUSTAIN_SLURM_CPUS:-$(nproc)}
# munged wants every folder above its socket open to all (pytest's tmp folders are not): the socket
# gets a short folder of its own in /tmp, named after the state folder.
SOCKET_DIR=/tmp/sustain-munge-$(echo -n "$DIR" | md5sum | cut -c1-10)
SOCKET=$SOCKET_DIR/munge.socket.2
export SLURM_CONF=$DIR/etc/slurm.conf

die() {
  echo "error: $*" >&2
  for log in "$DIR"/log/*.log; do [ -f "$log" ] && { echo "--- $log" >&2; tail -n 15 "$log" >&2; }; done
  exit 1
}

need() { command -v "$1" >/dev/null || die "$1 not found (fix: apt-get install $2)"; }

write_config() {
  local mem_mb
  mem_mb=$(awk '/MemTotal/ {print int($2 / 1100)}' /proc/meminfo)  # leave the OS some headroom
  cat > "$SLURM_CONF" <<EOF
ClusterName=sustain-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthInfo=socket=$SOCKET
SlurmUser=$(id -un)
StateSaveLocation=$DIR/state/ctld
SlurmdSpoolDir=$DIR/state/d
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MailProg=/bin/true
# A job whose dependency can never be met is cancelled instead of pending forever.
DependencyParameters=kill_invalid_depend
# No accounting database here: keep finished jobs in the controller for an hour so that
# scontrol (and compare.sh --status) can still say how they ended.
MinJobAge=3600
KillWait=10
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  # Without systemd the cgroup v2 autodetection fails; nothing here needs cgroups, v1 loads cleanly.
  echo "CgroupPlugin=cgroup/v1" > "$DIR/etc/cgroup.conf"
}

running() { [ -f "$DIR/run/$1.pid" ] && kill -0 "$(cat "$DIR/run/$1.pid")" 2>/dev/null; }

node_state() { sinfo -h -n "$NODE" -o %t 2>/dev/null || true; }

start() {
  need munged munge; need slurmctld slurmctld; need slurmd slurmd; need sbatch slurm-client
  stop >/dev/null
  mkdir -p "$DIR"/{etc,munge,log,run,state/ctld,state/d} "$SOCKET_DIR"
  chmod 755 "$SOCKET_DIR"  # munged refuses a socket folder others cannot traverse
  [ -s "$DIR/munge/munge.key" ] || mungekey --create --keyfile "$DIR/munge/munge.key"
  write_config
  # The daemons (and the slurmstepd they fork) carry a marker: `stop` finds leftovers by it.
  export SUSTAIN_SLURM_CLUSTER=$DIR
  munged --key-file="$DIR/munge/munge.key" --socket="$SOCKET" --pid-file="$DIR/run/munged.pid" \
    --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" || die "munged did not start"
  slurmctld -f "$SLURM_CONF" || die "slurmctld did not start"
  slurmd -f "$SLURM_CONF" -N "$NODE" || die "slurmd did not start"
  for _ in $(seq 60); do
    [ "$(node_state)" = idle ] && { echo "cluster up: export SLURM_CONF=$SLURM_CONF"; return 0; }
    sleep 1
  done
  die "node $NODE not idle after 60 s (state: $(node_state))"
}

# Pids of this cluster's leftovers: daemons and slurmstepd carry the marker, job processes carry
# SLURM_CONF (their submitter's) and a SLURM_JOB_ID.
marked_pids() {
  local env_file pid vars
  for env_file in /proc/[0-9]*/environ; do
    pid=${env_file#/proc/}; pid=${pid%/environ}
    vars=$(tr '\0' '\n' 2>/dev/null < "$env_file") || continue
    if grep -qxF "SUSTAIN_SLURM_CLUSTER=$DIR" <<< "$vars" \
       || { grep -qxF "SLURM_CONF=$SLURM_CONF" <<< "$vars" && grep -q '^SLURM_JOB_ID=' <<< "$vars"; }; then
      echo "$pid"
    fi
  done
}

stop() {
  if running slurmctld; then
    local jobs
    jobs=$(squeue -h -o %A 2>/dev/null | sort -u || true)
    if [ -n "$jobs" ]; then
      scancel $jobs 2>/dev/null || true
      for _ in $(seq 30); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 1; done
    fi
  fi
  local name pid
  for name in slurmd slurmctld munged; do
    running "$name" || { rm -f "$DIR/run/$name.pid"; continue; }
    pid=$(cat "$DIR/run/$name.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$DIR/run/$name.pid"
  done
  for pid in $(marked_pids); do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$SOCKET_DIR"
  echo "cluster stopped ($DIR)"
}

status() {
  for name in munged slurmctld slurmd; do
    if running "$name"; then echo "$name: running (pid $(cat "$DIR/run/$name.pid"))"; else echo "$name: stopped"; fi
  done
  running slurmctld || return 1
  sinfo
  squeue
}

case $action in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "export SLURM_CONF=$SLURM_CONF" ;;
  -h|--help|help) usage ;;
  *) echo "error: unknown action '${action}' (fix: slurm/cluster.sh start|stop|status|env [--dir DIR])" >&2; exit 2 ;;
esac
