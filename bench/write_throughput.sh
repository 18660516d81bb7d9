#!/bin/bash
# bench/write_throughput.sh - Phalanx write throughput and leader failover on a local 3-node
# cluster, next to the disk's physical flush rate; prints the raw results, then a markdown table.
#
# 1. cargo build --release (once);
# 2. target/release/phalanx local --nodes 3 in a temp dir, on the first free block of 9 ports
#    from BASE_PORT (default 26000), waits until it names a leader;
# 3. phalanx bench write at each of BENCH_CLIENTS against the leader, then at the largest count
#    spread over all nodes (followers forward: the forwarding cost); while each leader run is
#    in its window, `perf stat` counts the leader's fdatasync/fsync calls (if perf works), which
#    gives inserts per flush, the group-commit factor;
# 4. phalanx bench failover --rounds FAILOVER_ROUNDS (kill -9 the leader, outage, lost rows,
#    restart and catch-up);
# 5. pg_test_fsync (PostgreSQL 15) on the same disk: fdatasync/s of one 8 kB write, the ceiling
#    for serial durable commits of one log;
# 6. stops the cluster (SIGTERM; nodes that bench failover restarted are stopped by the pid it
#    recorded in cluster.json) and removes the temp dir.
# Every wait is bounded. The machine is shared and noisy: compare ratios from one run.
# Env: BENCH_SECONDS (10), BENCH_CLIENTS ("1 8 64"), FAILOVER_ROUNDS (5), FSYNC_SECS (2),
#      BASE_PORT (26000), KEEP=1 (keep the temp dir and node logs), SKIP_BUILD=1.
set -u
BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_CLIENTS=${BENCH_CLIENTS:-1 8 64}
FAILOVER_ROUNDS=${FAILOVER_ROUNDS:-5}
FSYNC_SECS=${FSYNC_SECS:-2}
BASE_PORT=${BASE_PORT:-26000}
PG_TEST_FSYNC=${PG_TEST_FSYNC:-/usr/lib/postgresql/15/bin/pg_test_fsync}

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
command -v jq >/dev/null || die "jq is needed (apt-get install jq)"
command -v curl >/dev/null || die "curl is needed (apt-get install curl)"

build_release

RUN_DIR=$(mktemp -d /tmp/phalanx-bench-XXXXXX) || die "mktemp failed"
DATA="$RUN_DIR/cluster"
CLUSTER_FILE="$DATA/cluster.json"
LOCAL_PID=""

# Pids of node processes still alive that are ours (the command line names this binary).
live_node_pids() {
  [ -f "$CLUSTER_FILE" ] || return 0
  for pid in $(jq -r '.nodes[].pid' "$CLUSTER_FILE" 2>/dev/null); do
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "^$BIN start"; then
      echo "$pid"
    fi
  done
}

stop_cluster() {
  if [ -n "$LOCAL_PID" ] && kill -0 "$LOCAL_PID" 2>/dev/null; then
    kill -TERM "$LOCAL_PID" 2>/dev/null
    for _ in $(seq 1 150); do kill -0 "$LOCAL_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$LOCAL_PID" 2>/dev/null && kill -KILL "$LOCAL_PID" 2>/dev/null
    wait "$LOCAL_PID" 2>/dev/null
  fi
  LOCAL_PID=""
  # Nodes restarted by `bench failover` are not children of `phalanx local`.
  local pids
  pids=$(live_node_pids)
  if [ -n "$pids" ]; then
    log "stopping restarted nodes: $pids"
    kill -TERM $pids 2>/dev/null
    for _ in $(seq 1 150); do [ -z "$(live_node_pids)" ] && break; sleep 0.1; done
    pids=$(live_node_pids)
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
  fi
}

cleanup() {
  local rc=$?
  stop_cluster
  if [ -n "${KEEP:-}" ]; then log "KEEP=1: leaving $RUN_DIR"; else rm -rf "$RUN_DIR"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_block_free() {
  local first=$1
  ! ss -Htan "( sport >= :$first and sport <= :$((first + 8)) )" 2>/dev/null | grep -q .
}
port=$BASE_PORT
while ! port_block_free "$port"; do
  port=$((port + 9))
  [ "$port" -lt $((BASE_PORT + 900)) ] || die "no 9 free ports from $BASE_PORT"
done

echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ) cpus=$(nproc) mem_total_gib=$(free -g | awk '/^Mem:/{print $2}') loadavg_start=$(loadavg | tr ' ' '/') base_port=$port commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"

log "phalanx local --nodes 3 --base-port $port (data $DATA)"
"$BIN" local --nodes 3 --data "$DATA" --base-port "$port" >"$RUN_DIR/local.log" 2>&1 &
LOCAL_PID=$!
for _ in $(seq 1 600); do
  grep -q "nodes up" "$RUN_DIR/local.log" 2>/dev/null && break
  kill -0 "$LOCAL_PID" 2>/dev/null || { cat "$RUN_DIR/local.log" >&2; die "phalanx local exited"; }
  sleep 0.1
done
grep -q "nodes up" "$RUN_DIR/local.log" || { cat "$RUN_DIR/local.log" >&2; die "cluster did not come up in 60 s"; }

leader_pid() {
  local http leader
  http=$(jq -r '.nodes[0].http' "$CLUSTER_FILE")
  leader=$(curl -s --max-time 2 "http://$http/v1/status?local=1" | jq -r '.leader // empty')
  [ -n "$leader" ] && jq -r --argjson id "$leader" '.nodes[] | select(.id == $id) | .pid' "$CLUSTER_FILE"
}

PERF_OK=""
if command -v perf >/dev/null && perf stat -e syscalls:sys_enter_fdatasync -a -- true >/dev/null 2>&1; then
  PERF_OK=1
fi

# run_write NAME ARGS...: one `bench write` run; JSON to $RUN_DIR/NAME.json. With a leader
# target and perf available, counts the leader's flush calls inside the measurement window
# (from 1 s after the 1 s warm-up to 1 s before its end).
run_write() {
  local name=$1; shift
  local perf_pid="" lpid=""
  if [ -n "$PERF_OK" ] && [[ " $* " == *" --target leader "* ]] && [ "$BENCH_SECONDS" -ge 4 ]; then
    lpid=$(leader_pid)
    if [ -n "$lpid" ]; then
      ( sleep 2; exec perf stat -x, -e syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync \
          -p "$lpid" -- sleep $((BENCH_SECONDS - 2)) ) 2>"$RUN_DIR/$name.perf" &
      perf_pid=$!
    fi
  fi
  log "bench write $* (load $(loadavg))"
  timeout $((BENCH_SECONDS + 120)) "$BIN" bench write --cluster-file "$CLUSTER_FILE" \
    --seconds "$BENCH_SECONDS" --json "$@" >"$RUN_DIR/$name.json" \
    || { log "bench write $* failed"; cat "$RUN_DIR/$name.json" >&2; }
  if [ -n "$perf_pid" ]; then
    wait "$perf_pid" 2>/dev/null
    local flushes
    flushes=$(awk -F, '/sys_enter_fdatasync|sys_enter_fsync/ {s += $1} END {print s + 0}' "$RUN_DIR/$name.perf")
    # Flush calls per second over the perf window (BENCH_SECONDS - 2 s).
    jq --argjson f "$flushes" --argjson s "$((BENCH_SECONDS - 2))" \
      '. + {leader_flushes_per_s: ($f / $s), inserts_per_flush: (if $f > 0 then (.inserts_per_s / ($f / $s)) else null end)}' \
      "$RUN_DIR/$name.json" >"$RUN_DIR/$name.json.tmp" && mv "$RUN_DIR/$name.json.tmp" "$RUN_DIR/$name.json"
  fi
  cat "$RUN_DIR/$name.json"
}

max_clients=1
for c in $BENCH_CLIENTS; do
  run_write "write-leader-$c" --target leader --clients "$c"
  [ "$c" -gt "$max_clients" ] && max_clients=$c
done
run_write "write-all-$max_clients" --target all --clients "$max_clients"

log "bench failover --rounds $FAILOVER_ROUNDS (load $(loadavg))"
timeout $((FAILOVER_ROUNDS * 150 + 60)) "$BIN" bench failover --cluster-file "$CLUSTER_FILE" \
  --rounds "$FAILOVER_ROUNDS" --json >"$RUN_DIR/failover.json" \
  || log "bench failover failed (see above)"
cat "$RUN_DIR/failover.json"

log "stopping the cluster"
stop_cluster

fdatasync_ops=""
if [ -x "$PG_TEST_FSYNC" ]; then
  log "pg_test_fsync -s $FSYNC_SECS in $RUN_DIR"
  timeout $((FSYNC_SECS * 40 + 60)) "$PG_TEST_FSYNC" -f "$RUN_DIR/fsync.test" -s "$FSYNC_SECS" \
    >"$RUN_DIR/pg_test_fsync.log" 2>&1
  # The fdatasync line of the first block ("Compare file sync methods using one 8kB write").
  fdatasync_ops=$(awk '/using one 8kB write/ {b = 1} b && $1 == "fdatasync" && $3 == "ops/sec" {print $2; exit}' "$RUN_DIR/pg_test_fsync.log")
  echo "pg_test_fsync_one_8kB_fdatasync_ops_per_s=${fdatasync_ops:-unknown}"
else
  log "no pg_test_fsync at $PG_TEST_FSYNC: skipping the flush-rate line"
fi
echo "loadavg_end=$(loadavg | tr ' ' '/')"

# --- the markdown table ---
echo
echo "| run | clients | inserts/s | p50 ms | p99 ms | max ms | errors | leader flushes/s | inserts per flush | CPU cores busy (nodes; bench; machine of $(nproc)) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
for f in $(for c in $BENCH_CLIENTS; do echo "$RUN_DIR/write-leader-$c.json"; done) "$RUN_DIR/write-all-$max_clients.json"; do
  [ -s "$f" ] || continue
  jq -r '
    def r(n): if . == null then "–" else (. * n | round / n | tostring) end;
    "| write → \(.target) (leader node \(.leader)) | \(.clients) | \(.inserts_per_s | r(1)) | \(.latency_ms.p50 | r(100)) | \(.latency_ms.p99 | r(100)) | \(.latency_ms.max | r(100)) | \(.errors) | \(.leader_flushes_per_s | r(1)) | \(.inserts_per_flush | r(10)) | "
    + ([.cpu_cores // {} | to_entries[] | select(.key | startswith("node")) | "\(.key) \(.value)"] | join(", "))
    + "; bench \(.cpu_cores.bench // "?"); machine \(.cpu_cores.machine_busy // "?") |"' "$f" 2>/dev/null
done
[ -n "$fdatasync_ops" ] && echo "| disk: pg_test_fsync, one 8 kB write + fdatasync (serial) | 1 | $fdatasync_ops | | | | | | | |"
if [ -s "$RUN_DIR/failover.json" ]; then
  echo
  echo "| failover round | killed node | new leader seen (ms) | outage: kill → first acknowledged write (ms) | acked writes | failed writes | acked rows lost | restarted node caught up (ms) |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
  jq -r '.rounds[] | "| \(.round) | \(.killed_node) | \(.new_leader_seen_ms // "?" | if type == "number" then round else . end) | \(.outage_ms | round) | \(.writes_acknowledged) | \(.writes_failed) | \(.acked_missing) | \(.catch_up_ms | round) |"' \
    "$RUN_DIR/failover.json" 2>/dev/null
  jq -r '"| median / max | | | \(.outage_ms_median | round) / \(.outage_ms_max | round) | | | \(.acked_missing_total) | |"' \
    "$RUN_DIR/failover.json" 2>/dev/null
fi
exit 0
