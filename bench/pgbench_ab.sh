#!/bin/bash
# bench/pgbench_ab.sh - same-run A/B of two phalanx binaries under pgbench write workloads.
#
#   bench/pgbench_ab.sh OLD_BINARY NEW_BINARY
#
# For ROUNDS rounds (default 3), alternately for OLD then NEW: a fresh 3-node cluster
# (`phalanx local --no-tls`), `pgbench -i -s PGB_SCALE` on the leader, then pgbench for
# DURATION seconds each with the clients on the leader: TPC-B (-c 8), simple-update (-N -c 8:
# no branch or teller rows shared between clients) and TPC-B with one client. Prints one line per
# binary and round, with the leader's CPU time per TPC-B c8 transaction (user + system, from
# /proc/PID/stat): steadier than TPS when other tenants load the machine. The machine is shared
# and noisy: compare the two binaries within a round.
# Env: ROUNDS (3), DURATION (10), PGB_SCALE (10), BASE_PORT (27300). Every wait is bounded.
set -u
OLD=${1:?usage: bench/pgbench_ab.sh OLD_BINARY NEW_BINARY}
NEW=${2:?usage: bench/pgbench_ab.sh OLD_BINARY NEW_BINARY}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
PGB_SCALE=${PGB_SCALE:-10}
BASE_PORT=${BASE_PORT:-27300}
PGBENCH=${PGBENCH:-/usr/lib/postgresql/15/bin/pgbench}
export PGSSLMODE=disable
WORK=$(mktemp -d /tmp/phalanx-pgbench-ab.XXXXXX)
trap 'pkill -f "$WORK/" 2>/dev/null; rm -rf "$WORK"' EXIT

tps() { sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1; }
# CPU ticks (user + system) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null; }

run_one() {
    local label=$1 binary=$2 dir="$WORK/$1" leader="" pg
    mkdir -p "$dir"
    cp "$binary" "$dir/phalanx"
    setsid "$dir/phalanx" local --nodes 3 --data "$dir/cluster" --base-port "$BASE_PORT" \
        --no-tls > "$dir/local.log" 2>&1 &
    local local_pid=$!
    for _ in $(seq 1 150); do
        for n in 0 1 2; do
            local http=$((BASE_PORT + 3 * n + 1))
            local role
            role=$(curl -s --max-time 1 "127.0.0.1:$http/v1/status?local=1" | jq -r .role 2>/dev/null)
            [ "$role" = leader ] && leader=$n
        done
        [ -n "$leader" ] && break
        sleep 0.2
    done
    if [ -z "$leader" ]; then
        echo "$label: no leader" >&2
    else
        pg=$((BASE_PORT + 3 * leader))
        if timeout 300 "$PGBENCH" -i -q -s "$PGB_SCALE" -h 127.0.0.1 -p "$pg" -U bench phalanx \
            > "$dir/init.log" 2>&1; then
            local b="timeout $((DURATION + 60)) $PGBENCH -n -j 1 -T $DURATION -h 127.0.0.1 -p $pg -U bench"
            # Followers applying the initial load would compete for the CPU: wait (bounded)
            # until every node has applied the same index.
            for _ in $(seq 1 300); do
                local applied
                applied=$(for n in 0 1 2; do
                    curl -s --max-time 1 "127.0.0.1:$((BASE_PORT + 3 * n + 1))/v1/status?local=1" |
                        jq -r .applied_index 2>/dev/null
                done | sort -u | wc -l)
                [ "$applied" = 1 ] && break
                sleep 0.2
            done
            local tpcb8 simple8 tpcb1 leader_pid ticks_before ticks_after out8 txns8 cpu8=failed
            leader_pid=$(jq -r ".nodes[$leader].pid" "$dir/cluster/cluster.json")
            ticks_before=$(cpu_ticks "$leader_pid")
            out8=$($b -c 8 phalanx 2>&1)
            ticks_after=$(cpu_ticks "$leader_pid")
            tpcb8=$(echo "$out8" | tps)
            txns8=$(echo "$out8" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
            if [ -n "$ticks_before" ] && [ -n "$ticks_after" ] && [ "${txns8:-0}" -gt 0 ]; then
                cpu8=$(awk -v t=$((ticks_after - ticks_before)) -v n="$txns8" \
                    -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t * 1000 / hz / n }')
            fi
            simple8=$($b -N -c 8 phalanx 2>&1 | tps)
            tpcb1=$($b -c 1 phalanx 2>&1 | tps)
            echo "$label tpcb_c8=${tpcb8:-failed} leader_cpu_ms_per_txn_c8=$cpu8" \
                "simple_update_c8=${simple8:-failed} tpcb_c1=${tpcb1:-failed}"
        else
            echo "$label: pgbench -i failed: $(tail -1 "$dir/init.log")" >&2
        fi
    fi
    kill -TERM "$local_pid" 2>/dev/null
    timeout 30 tail --pid="$local_pid" -f /dev/null 2>/dev/null
    rm -rf "$dir"
}

for round in $(seq 1 "$ROUNDS"); do
    run_one "old-round$round" "$OLD"
    run_one "new-round$round" "$NEW"
done
