#!/usr/bin/env bash
# A single-node SLURM cluster under one scratch folder, for dq's SLURM tests and for trying
# `launcher=slurm` on one machine (Debian: apt-get install slurm-wlm munge; run as root).
#
#   scripts/slurm_cluster.sh up DIR       # start munged, slurmctld, slurmd; print the export line
#   scripts/slurm_cluster.sh status DIR   # the daemons' pids and sinfo; exit 1 when not up
#   scripts/slurm_cluster.sh down DIR     # cancel its jobs, stop its daemons by their pid files
#
# Everything (config, munge key and socket, state, spool, logs, pid files) lives under DIR,
# and the cluster listens on two ports free when it starts, so two clusters on one machine
# never collide. Nothing touches systemd or /etc. Every client needs the line `up` prints:
#   export SLURM_CONF=DIR/slurm.conf
# Whatever starts a cluster tears it down with a trap, e.g.
#   trap 'scripts/slurm_cluster.sh down /tmp/c' EXIT; eval "$(scripts/slurm_cluster.sh up /tmp/c)"
# A failed `up` tears down what it started itself (one line on stderr, exit 1).
set -Eeuo pipefail  # -E: the ERR trap of `up` covers the functions it calls

usage() { echo "usage: $0 up|down|status DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
ACTION=$1
mkdir -p "$2"
DIR=$(cd "$2" && pwd)
CONF=$DIR/slurm.conf
SOCKET=$DIR/munge/munge.socket
DAEMONS="slurmd slurmctld munged"  # stopped in this order

say() { echo "slurm_cluster: $*" >&2; }

free_port() {  # a TCP port nothing listens on now (the kernel's pick)
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pid_of() {  # the live pid recorded for daemon $1, or nothing
  local file=$DIR/run/$1.pid pid
  [ -s "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

write_conf() {
  local host ctld_port slurmd_port node
  host=$(hostname -s)
  ctld_port=$(free_port)
  slurmd_port=$(free_port)
  while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port=$(free_port); done
  # CPUs, sockets, cores and RealMemory as slurmd sees this machine (its first line).
  node=$(slurmd -C | head -1)
  cat >"$CONF" <<EOF
# Written by scripts/slurm_cluster.sh: a one-node cluster under $DIR.
ClusterName=dq$(printf %s "$DIR" | cksum | cut -d' ' -f1)
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job may start again once its credential expired: 10 s, not the default 120 s.
AuthInfo=socket=$SOCKET,cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/slurmd-%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# No cgroups, no accounting database: what runs in a container or on a bare VM.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
# Schedule every 2 s (prompt starts and requeues); signals 5 s before SIGKILL at a time limit.
SchedulerParameters=sched_interval=2,bf_interval=2
KillWait=5
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  mkdir -p "$DIR/munge"
  # munged refuses a socket folder that not everyone may enter, and a key others can read.
  chmod 755 "$DIR" "$DIR/munge"
  [ -s "$DIR/munge/munge.key" ] || mungekey --create --keyfile="$DIR/munge/munge.key" 2>/dev/null \
    || dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
  chmod 600 "$DIR/munge/munge.key"
  munged --force --socket="$SOCKET" --key-file="$DIR/munge/munge.key" \
    --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" \
    --seed-file="$DIR/munge/munged.seed"
}

wait_idle() {  # until the node is idle (30 s at most)
  local state
  for _ in $(seq 60); do
    state=$(SLURM_CONF=$CONF sinfo -h -o %T 2>/dev/null || true)
    if [ "$state" = idle ]; then return 0; fi
    sleep 0.5
  done
  say "the node did not become idle within 30 s (state: ${state:-none}); see $DIR/log/"
  return 1
}

up() {
  for daemon in slurmctld slurmd munged; do
    command -v "$daemon" >/dev/null || { say "$daemon not found: apt-get install slurm-wlm munge (as root)"; exit 1; }
  done
  [ "$(id -u)" = 0 ] || { say "needs root (slurmd runs jobs as their users)"; exit 1; }
  if [ -n "$(pid_of slurmctld)" ]; then say "already up in $DIR"; echo "export SLURM_CONF=$CONF"; return; fi
  trap 'say "up failed; tearing down"; down >/dev/null 2>&1 || true' ERR
  mkdir -p "$DIR/run" "$DIR/log" "$DIR/state" "$DIR/spool"
  write_conf
  start_munge
  slurmctld -f "$CONF" -i  # -i: ignore state a previous cluster in DIR left
  slurmd -f "$CONF"
  wait_idle
  trap - ERR
  say "up: $(sed -n 's/^SlurmctldPort=//p' "$CONF") (slurmctld), $(sed -n 's/^SlurmdPort=//p' "$CONF") (slurmd); logs in $DIR/log/"
  echo "export SLURM_CONF=$CONF"
}

stop() {  # daemon $1: TERM, then KILL after 10 s
  local pid
  pid=$(pid_of "$1")
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  say "$1 (pid $pid) ignored SIGTERM for 10 s; SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

down() {
  if [ -n "$(pid_of slurmctld)" ] && [ -n "$(pid_of slurmd)" ]; then
    # Its jobs go first: a job's processes would outlive slurmd.
    SLURM_CONF=$CONF scancel --quiet --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 20); do
      [ -z "$(SLURM_CONF=$CONF squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
  for daemon in $DAEMONS; do stop "$daemon"; done
  say "down: $DIR"
}

status() {
  local missing=0 pid
  for daemon in $DAEMONS; do
    pid=$(pid_of "$daemon")
    echo "$daemon: ${pid:-not running}"
    [ -n "$pid" ] || missing=1
  done
  [ $missing = 0 ] || return 1
  SLURM_CONF=$CONF sinfo
}

case $ACTION in
  up) up ;;
  down) down ;;
  status) status ;;
  *) usage ;;
esac
