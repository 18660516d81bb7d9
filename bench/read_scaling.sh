#!/bin/bash
# bench/read_scaling.sh - read throughput of the dispatcher: pgbench -S (linearizable reads,
# the default) against a 3-node Phalanx with the reads
#   reads_leader_only   all served by the leader (dispatcher weights: leader 1, others 0)
#   reads_balanced      balanced over the 3 nodes by the default scheduler (wlc, weights 1)
# both with the clients connected to the leader; then
#   reads_balanced_spread  the same clients split over the three nodes (one pgbench per node)
# and, for reference, a 1-node cluster (reads_single_node). Prints "LABEL tps=.." lines and a
# markdown table. Every wait is bounded. Note: all nodes share this machine's cores, so the
# ratio shows what the dispatcher costs or gains here, not what separate machines would give.
# Env: DURATION (20), PGB_SCALE (10), PGB_CLIENTS (8), PGB_THREADS (2), BASE_PORT (26200),
#      SKIP_BUILD=1, KEEP=1.
set -u
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-20}
PGB_SCALE=${PGB_SCALE:-10}
PGB_CLIENTS=${PGB_CLIENTS:-8}
PGB_THREADS=${PGB_THREADS:-2}
BASE_PORT=${BASE_PORT:-26200}
PGBENCH=${PGBENCH:-/usr/lib/postgresql/15/bin/pgbench}
[ -x "$PGBENCH" ] || die "$PGBENCH missing (apt-get install postgresql-15)"
command -v jq >/dev/null || die "jq is needed (apt-get install jq)"
build_release
RUN_DIR=$(mktemp -d /tmp/phalanx-reads-XXXXXX) || die "mktemp failed"
RESULTS="$RUN_DIR/results.txt"
LOCAL_PID=""

stop_cluster() {
  if [ -n "$LOCAL_PID" ] && kill -0 "$LOCAL_PID" 2>/dev/null; then
    kill -TERM "$LOCAL_PID"
    for _ in $(seq 1 100); do kill -0 "$LOCAL_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$LOCAL_PID" 2>/dev/null
  fi
  LOCAL_PID=""
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
  HTTP=$(jq -r '.nodes[0].http' "$CLUSTER")
  LEADER=$(curl -s --max-time 5 "http://$HTTP/v1/status" | jq -r '.leader')
  LEADER_PORT=$(jq -r ".nodes[] | select(.id == $LEADER) | .pg" "$CLUSTER" | cut -d: -f2)
}

# pgbench -S against PORT with CLIENTS clients; prints the TPS.
select_tps() { # label port clients
  local out="$RUN_DIR/$1-$2.log" threads=$PGB_THREADS
  [ "$3" -lt "$threads" ] && threads=$3
  timeout $((DURATION + 60)) "$PGBENCH" -h 127.0.0.1 -p "$2" -U bench -n -S \
    -c "$3" -j "$threads" -T "$DURATION" phalanx >"$out" 2>&1 || { tail -3 "$out" >&2; }
  sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out" | head -1
}

record() { echo "$1 tps=$2 load=$(loadavg)" | tee -a "$RESULTS"; }

init() {
  timeout 600 "$PGBENCH" -h 127.0.0.1 -p "$LEADER_PORT" -U bench -i -s "$PGB_SCALE" -q phalanx \
    >"$RUN_DIR/init.log" 2>&1 || die "pgbench -i failed: $(tail -3 "$RUN_DIR/init.log")"
}

log "1-node cluster"
start_cluster 1 single
init
record reads_single_node "$(select_tps single "$LEADER_PORT" "$PGB_CLIENTS")"
stop_cluster

log "3-node cluster"
start_cluster 3 three
init
others=$(jq -r ".nodes[] | select(.id != $LEADER) | \"\\\"\(.id)\\\": 0\"" "$CLUSTER" | paste -sd,)
curl -s --max-time 10 -XPUT "http://$HTTP/v1/dispatcher" \
  -d "{\"weights\": {\"$LEADER\": 1, $others}}" >/dev/null || die "PUT /v1/dispatcher failed"
sleep 1 # every node installs replicated settings after its next 200 ms probe round
record reads_leader_only "$(select_tps leader "$LEADER_PORT" "$PGB_CLIENTS")"

all=$(jq -r '.nodes[] | "\"\(.id)\": 1"' "$CLUSTER" | paste -sd,)
curl -s --max-time 10 -XPUT "http://$HTTP/v1/dispatcher" -d "{\"weights\": {$all}}" >/dev/null \
  || die "PUT /v1/dispatcher failed"
sleep 1
record reads_balanced "$(select_tps balanced "$LEADER_PORT" "$PGB_CLIENTS")"

per_node=$(( (PGB_CLIENTS + 2) / 3 ))
total=0
pids=()
for port in $(jq -r '.nodes[].pg' "$CLUSTER" | cut -d: -f2); do
  (select_tps spread "$port" "$per_node" >"$RUN_DIR/spread-$port.tps") &
  pids+=($!)
done
wait "${pids[@]}"
for f in "$RUN_DIR"/spread-*.tps; do total=$(echo "$total + $(cat "$f" || echo 0)" | bc); done
record reads_balanced_spread "$total"
curl -s --max-time 5 "http://$HTTP/v1/status" | jq -c '[.dispatcher.nodes[] | {node, requests}]' \
  | sed 's/^/dispatched_from_first_node /' | tee -a "$RESULTS"
stop_cluster

echo
echo "| run | TPS |"
echo "|---|---|"
grep "tps=" "$RESULTS" | while read -r label rest; do
  echo "| $label | $(echo "$rest" | sed -n 's/.*tps=\([^ ]*\).*/\1/p') |"
done
