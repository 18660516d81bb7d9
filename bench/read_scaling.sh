#!/bin/bash
# bench/read_scaling.sh - read throughput of the dispatcher, for two read workloads at
# linearizable consistency (the default): `select`, pgbench -S (one point lookup per read: the
# work is mostly protocol and SQL translation, which stays on the node the client is connected
# to), and `range`, a pgbench script summing 1,000 consecutive accounts per read (the work is
# mostly execution, which the dispatcher moves) — against a 3-node Phalanx with the reads
#   reads_leader_only   all served by the leader (dispatcher weights: leader 1, others 0)
#   reads_balanced      balanced over the 3 nodes by the default scheduler (wlc, weights 1)
# both with the clients connected to the leader; then
#   reads_balanced_spread  the same clients split over the three nodes (one pgbench per node)
# and, for reference, a 1-node cluster (reads_single_node). Prints "LABEL tps=.." lines and a
# markdown table. Every wait is bounded.
#
# All of that runs twice: first with the nodes sharing this machine's cores freely (the ratio
# then shows what the dispatcher costs here, where a read served elsewhere does the same work
# plus an RPC on the same cores), then with each node process held to NODE_CPU cores by its own
# cgroup (cgroup v1 `cpu` controller, cfs quota) — a stand-in for nodes on separate machines of
# equal size, which is what read balancing is for; pgbench stays outside the budgets. Labels of
# the second pass end in `_cpu<NODE_CPU>`. NODE_CPU=0 skips it (also skipped, with a message, when
# the cgroup cannot be made: not root, no cpu controller).
# Env: DURATION (20), PGB_SCALE (10), PGB_CLIENTS (8), PGB_THREADS (2), BASE_PORT (26200),
#      NODE_CPU (0.4), SKIP_BUILD=1, KEEP=1.
set -u
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-20}
PGB_SCALE=${PGB_SCALE:-10}
PGB_CLIENTS=${PGB_CLIENTS:-8}
PGB_THREADS=${PGB_THREADS:-2}
BASE_PORT=${BASE_PORT:-26200}
NODE_CPU=${NODE_CPU:-0.4}
CGROUP_ROOT=/sys/fs/cgroup/cpu
PGBENCH=${PGBENCH:-/usr/lib/postgresql/15/bin/pgbench}
[ -x "$PGBENCH" ] || die "$PGBENCH missing (apt-get install postgresql-15)"
command -v jq >/dev/null || die "jq is needed (apt-get install jq)"
build_release
RUN_DIR=$(mktemp -d /tmp/phalanx-reads-XXXXXX) || die "mktemp failed"
RESULTS="$RUN_DIR/results.txt"
LOCAL_PID=""
SUFFIX=""   # label suffix of the current pass
BUDGET=""   # cores per node in the current pass; empty = unlimited

stop_cluster() {
  if [ -n "$LOCAL_PID" ] && kill -0 "$LOCAL_PID" 2>/dev/null; then
    kill -TERM "$LOCAL_PID"
    for _ in $(seq 1 100); do kill -0 "$LOCAL_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$LOCAL_PID" 2>/dev/null
  fi
  LOCAL_PID=""
  remove_cgroups
}
# The cgroups of a budgeted pass, one per node; removable once their processes are gone.
remove_cgroups() {
  for dir in "$CGROUP_ROOT"/phalanx-bench-*; do
    [ -d "$dir" ] || continue
    for _ in $(seq 1 50); do rmdir "$dir" 2>/dev/null && break; sleep 0.1; done
  done
}
cleanup() { stop_cluster; [ -n "${KEEP:-}" ] && log "kept $RUN_DIR" || rm -rf "$RUN_DIR"; }
trap cleanup EXIT

start_cluster() { # nodes dir
  "$BIN" local --nodes "$1" --data "$RUN_DIR/$2" --base-port "$BASE_PORT" --no-tls \
    >"$RUN_DIR/$2.log" 2>&1 &
  LOCAL_PID=$!
  for _ in $(seq 1 300); do [ -f "$RUN_DIR/$2/cluster.json" ] && break; sleep 0.1; done
  [ -f "$RUN_DIR/$2/cluster.json" ] || die "cluster did not start: $(tail -5 "$RUN_DIR/$2.log")"
  CLUSTER="$RUN_DIR/$2/cluster.json"
  [ -n "$BUDGET" ] && limit_nodes
  HTTP=$(jq -r '.nodes[0].http' "$CLUSTER")
  LEADER=null
  for _ in $(seq 1 100); do
    LEADER=$(curl -s --max-time 5 "http://$HTTP/v1/status" | jq -r '.leader')
    [ "$LEADER" != null ] && [ -n "$LEADER" ] && break
    sleep 0.1
  done
  [ "$LEADER" != null ] && [ -n "$LEADER" ] || die "node 1 names no leader"
  LEADER_PORT=$(jq -r ".nodes[] | select(.id == $LEADER) | .pg" "$CLUSTER" | cut -d: -f2)
}

# Holds each node process (all its threads) to $BUDGET cores with a cgroup of its own.
limit_nodes() {
  local quota id pid dir
  quota=$(echo "$BUDGET * 100000 / 1" | bc)
  for id in $(jq -r '.nodes[].id' "$CLUSTER"); do
    pid=$(jq -r ".nodes[] | select(.id == $id) | .pid" "$CLUSTER")
    dir="$CGROUP_ROOT/phalanx-bench-$id"
    mkdir -p "$dir" && echo 100000 >"$dir/cpu.cfs_period_us" && echo "$quota" >"$dir/cpu.cfs_quota_us" \
      && echo "$pid" >"$dir/cgroup.procs" || die "could not put node $id (pid $pid) in $dir"
  done
}

RANGE_SCRIPT="$RUN_DIR/range.sql"
cat >"$RANGE_SCRIPT" <<'SQL'
\set aid random(1, 100000 * :scale - 1000)
SELECT count(*), sum(abalance) FROM pgbench_accounts WHERE aid BETWEEN :aid AND :aid + 999;
SQL

# The current workload against PORT with CLIENTS clients; prints the TPS.
select_tps() { # label port clients
  local out="$RUN_DIR/$1-$WORKLOAD-$2.log" threads=$PGB_THREADS workload=(-S)
  [ "$WORKLOAD" = range ] && workload=(-f "$RANGE_SCRIPT")
  [ "$3" -lt "$threads" ] && threads=$3
  timeout $((DURATION + 60)) "$PGBENCH" -h 127.0.0.1 -p "$2" -U bench -n "${workload[@]}" \
    -c "$3" -j "$threads" -T "$DURATION" phalanx >"$out" 2>&1 || { tail -3 "$out" >&2; }
  sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out" | head -1
}

record() { echo "$1 tps=$2 load=$(loadavg)" | tee -a "$RESULTS"; }

# One cluster's runs, for each workload.
for_each_workload() { # function
  for WORKLOAD in select range; do "$1"; done
}

init() {
  timeout 600 "$PGBENCH" -h 127.0.0.1 -p "$LEADER_PORT" -U bench -i -s "$PGB_SCALE" -q phalanx \
    >"$RUN_DIR/init.log" 2>&1 || die "pgbench -i failed: $(tail -3 "$RUN_DIR/init.log")"
}

run_pass() {
  log "1-node cluster"
  start_cluster 1 "single$SUFFIX"
  init
  for_each_workload single_node_runs
  stop_cluster

  log "3-node cluster"
  start_cluster 3 "three$SUFFIX"
  init
  for_each_workload three_node_runs
  curl -s --max-time 5 "http://$HTTP/v1/status" | jq -c '[.dispatcher.nodes[] | {node, requests}]' \
    | sed "s/^/dispatched_from_first_node$SUFFIX /" | tee -a "$RESULTS"
  stop_cluster
}

single_node_runs() {
  record "${WORKLOAD}_single_node$SUFFIX" "$(select_tps single "$LEADER_PORT" "$PGB_CLIENTS")"
}

# Sets every node's dispatcher weight: the leader's to $1, the others' to $2.
set_weights() { # leader_weight others_weight
  jq -c --argjson leader "$LEADER" --argjson mine "$1" --argjson others "$2" \
    '{weights: (.nodes | map({key: (.id | tostring),
      value: (if .id == $leader then $mine else $others end)}) | from_entries)}' "$CLUSTER" \
    | curl -s --max-time 10 -XPUT "http://$HTTP/v1/dispatcher" -d @- >/dev/null \
    || die "PUT /v1/dispatcher failed"
  sleep 1 # every node installs replicated settings after its next 200 ms probe round
}

three_node_runs() {
  set_weights 1 0
  record "${WORKLOAD}_leader_only$SUFFIX" "$(select_tps leader "$LEADER_PORT" "$PGB_CLIENTS")"
  set_weights 1 1
  record "${WORKLOAD}_balanced$SUFFIX" "$(select_tps balanced "$LEADER_PORT" "$PGB_CLIENTS")"
  local per_node=$(( (PGB_CLIENTS + 2) / 3 )) total=0 pids=() port f
  rm -f "$RUN_DIR"/spread-*.tps
  for port in $(jq -r '.nodes[].pg' "$CLUSTER" | cut -d: -f2); do
    (select_tps spread "$port" "$per_node" >"$RUN_DIR/spread-$port.tps") &
    pids+=($!)
  done
  wait "${pids[@]}"
  for f in "$RUN_DIR"/spread-*.tps; do total=$(echo "$total + $(cat "$f" || echo 0)" | bc); done
  record "${WORKLOAD}_balanced_spread$SUFFIX" "$total"
}

log "pass 1: nodes share the cores"
run_pass

if [ "$NODE_CPU" != "0" ]; then
  if [ -w "$CGROUP_ROOT" ]; then
    BUDGET=$NODE_CPU
    SUFFIX="_cpu$NODE_CPU"
    log "pass 2: each node held to $NODE_CPU cores"
    run_pass
  else
    log "pass 2 skipped: $CGROUP_ROOT is not writable (needs root and the cgroup v1 cpu controller)"
  fi
fi

echo
echo "| run | TPS |"
echo "|---|---|"
grep "tps=" "$RESULTS" | while read -r label rest; do
  echo "| $label | $(echo "$rest" | sed -n 's/.*tps=\([^ ]*\).*/\1/p') |"
done
