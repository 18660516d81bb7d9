#!/bin/bash
# bench/pgbench.sh - pgbench TPC-B-like and select-only (-S) against a local 3-node Phalanx, and
# in the same run against PostgreSQL 15 with two synchronous standbys ('ANY 1 (s1,s2)', the
# durability of a 3-node Raft group) and a single PostgreSQL (../shared/peers/). Prints every
# "LABEL tps=.. latency_avg_ms=.." line, then a markdown table for docs/BENCHMARKS.md.
#
# Phalanx: target/release/phalanx local --nodes 3 on BASE_PORT (default 26100); pgbench -i -s
# PGB_SCALE through a follower; then for DURATION seconds each, -c PGB_CLIENTS -j PGB_THREADS:
#   phalanx_tpcb_leader / phalanx_tpcb_follower   (clients connected to the leader / a follower)
#   phalanx_select_leader / phalanx_select_follower (-S; reads are linearizable, the default)
#   phalanx_select_leader_local (-S on the leader with the dispatcher weights set to serve
#     every read there: leader 1, others 0 — what an operator sets when the nodes share a host)
# Every connection runs without TLS (PGSSLMODE=disable), as the peers' servers do (initdb's
# default ssl=off): a TLS session would charge Phalanx alone for encryption.
# Every wait is bounded. The machine is shared and noisy: compare ratios from one run.
# Env: DURATION (30), PGB_SCALE (10), PGB_CLIENTS (8), PGB_THREADS (2), BASE_PORT (26100),
#      SKIP_BUILD=1, SKIP_PEERS=1 (Phalanx only), KEEP=1 (keep the temp dir).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-30}
PGB_SCALE=${PGB_SCALE:-10}
PGB_CLIENTS=${PGB_CLIENTS:-8}
PGB_THREADS=${PGB_THREADS:-2}
BASE_PORT=${BASE_PORT:-26100}
PGBENCH=${PGBENCH:-/usr/lib/postgresql/15/bin/pgbench}
PEERS="$ROOT/../shared/peers"

export PGSSLMODE=disable
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ -x "$PGBENCH" ] || die "$PGBENCH missing (apt-get install postgresql-15)"
command -v jq >/dev/null || die "jq is needed (apt-get install jq)"

cd "$ROOT" || die "cannot cd to $ROOT"
if [ -z "${SKIP_BUILD:-}" ]; then
  log "cargo build --release"
  cargo build --release >&2 || die "cargo build --release failed"
fi
BIN="$ROOT/target/release/phalanx"
RUN_DIR=$(mktemp -d /tmp/phalanx-pgbench-XXXXXX) || die "mktemp failed"
LOCAL_PID=""
RESULTS="$RUN_DIR/results.txt"

cleanup() {
  if [ -n "$LOCAL_PID" ] && kill -0 "$LOCAL_PID" 2>/dev/null; then
    kill -TERM "$LOCAL_PID"
    for _ in $(seq 1 100); do kill -0 "$LOCAL_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$LOCAL_PID" 2>/dev/null
  fi
  [ -n "${KEEP:-}" ] && log "kept $RUN_DIR" || rm -rf "$RUN_DIR"
}
trap cleanup EXIT

# One pgbench run: prints "LABEL tps=.. latency_avg_ms=.. failed=..".
run() {
  local label=$1 port=$2; shift 2
  local out="$RUN_DIR/$label.log"
  log "$label: pgbench -c $PGB_CLIENTS -j $PGB_THREADS -T $DURATION $* (port $port)"
  timeout $((DURATION + 120)) "$PGBENCH" -h 127.0.0.1 -p "$port" -U bench -n \
    -c "$PGB_CLIENTS" -j "$PGB_THREADS" -T "$DURATION" "$@" phalanx >"$out" 2>&1 \
    || { tail -5 "$out" >&2; log "$label failed"; }
  local tps lat failed
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out" | head -1)
  lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$out" | head -1)
  failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out" | head -1)
  echo "$label tps=${tps:-?} latency_avg_ms=${lat:-?} failed=${failed:-?}" | tee -a "$RESULTS"
}

log "phalanx local --nodes 3 (base port $BASE_PORT)"
"$BIN" local --nodes 3 --data "$RUN_DIR/cluster" --base-port "$BASE_PORT" >"$RUN_DIR/local.log" 2>&1 &
LOCAL_PID=$!
for _ in $(seq 1 300); do [ -f "$RUN_DIR/cluster/cluster.json" ] && break; sleep 0.1; done
[ -f "$RUN_DIR/cluster/cluster.json" ] || die "cluster did not start: $(tail -5 "$RUN_DIR/local.log")"
leader_of() {
  curl -s "http://$(jq -r '.nodes[0].http' "$RUN_DIR/cluster/cluster.json")/v1/status" | jq -r '.leader'
}
# cluster.json is written once the nodes run; a leader may be elected a moment later.
LEADER=null
for _ in $(seq 1 100); do
  LEADER=$(leader_of)
  [ -n "$LEADER" ] && [ "$LEADER" != null ] && break
  sleep 0.1
done
[ -n "$LEADER" ] && [ "$LEADER" != null ] || die "no leader within 10 s"
pg_port() { jq -r ".nodes[] | select(.id == $1) | .pg" "$RUN_DIR/cluster/cluster.json" | cut -d: -f2; }
LEADER_PORT=$(pg_port "$LEADER")
FOLLOWER=$(jq -r ".nodes[] | select(.id != $LEADER) | .id" "$RUN_DIR/cluster/cluster.json" | head -1)
FOLLOWER_PORT=$(pg_port "$FOLLOWER")
log "leader node $LEADER (pg $LEADER_PORT), follower node $FOLLOWER (pg $FOLLOWER_PORT)"

log "pgbench -i -s $PGB_SCALE through the follower"
start=$(date +%s.%N)
timeout 900 "$PGBENCH" -h 127.0.0.1 -p "$FOLLOWER_PORT" -U bench -i -s "$PGB_SCALE" -q phalanx \
  >"$RUN_DIR/init.log" 2>&1 || die "pgbench -i failed: $(tail -5 "$RUN_DIR/init.log")"
echo "phalanx_init_s=$(echo "$(date +%s.%N) - $start" | bc)" | tee -a "$RESULTS"

run phalanx_tpcb_leader "$LEADER_PORT"
run phalanx_tpcb_follower "$FOLLOWER_PORT"
run phalanx_select_leader "$LEADER_PORT" -S
run phalanx_select_follower "$FOLLOWER_PORT" -S
LEADER_HTTP=$(jq -r ".nodes[] | select(.id == $LEADER) | .http" "$RUN_DIR/cluster/cluster.json")
jq -c --argjson leader "$LEADER" \
  '{weights: (.nodes | map({key: (.id | tostring), value: (if .id == $leader then 1 else 0 end)}) | from_entries)}' \
  "$RUN_DIR/cluster/cluster.json" \
  | curl -s --max-time 10 -XPUT "http://$LEADER_HTTP/v1/dispatcher" -d @- >/dev/null \
  || die "PUT /v1/dispatcher failed"
run phalanx_select_leader_local "$LEADER_PORT" -S

# The invariant of TPC-B on every node: every delta is in all three balances.
for port in $(jq -r '.nodes[].pg' "$RUN_DIR/cluster/cluster.json" | cut -d: -f2); do
  sums=$(PGOPTIONS="-c phalanx.read_consistency=linearizable" psql -X -At -h 127.0.0.1 -p "$port" -U bench -d phalanx -c \
    "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers), (SELECT sum(bbalance) FROM pgbench_branches), (SELECT sum(delta) FROM pgbench_history)")
  echo "phalanx_sums port=$port $sums" | tee -a "$RESULTS"
done
kill -TERM "$LOCAL_PID"; wait "$LOCAL_PID" 2>/dev/null; LOCAL_PID=""

if [ -z "${SKIP_PEERS:-}" ]; then
  for peer in pg_sync_replica pg_single; do
    log "peer: $peer.sh $DURATION"
    PGB_SCALE=$PGB_SCALE PGB_CLIENTS=$PGB_CLIENTS PGB_THREADS=$PGB_THREADS \
      bash "$PEERS/$peer.sh" "$DURATION" 2>"$RUN_DIR/$peer.err" | tee -a "$RESULTS" \
      || log "$peer failed: $(tail -5 "$RUN_DIR/$peer.err")"
  done
fi

echo
echo "| run | TPS | avg latency (ms) |"
echo "|---|---|---|"
grep "tps=" "$RESULTS" | while read -r label rest; do
  tps=$(echo "$rest" | sed -n 's/.*tps=\([^ ]*\).*/\1/p')
  lat=$(echo "$rest" | sed -n 's/.*latency_avg_ms=\([^ ]*\).*/\1/p')
  echo "| $label | $tps | $lat |"
done
