#!/bin/bash
# bench/ids.sh - Snowflake ID generator throughput of one node: `phalanx id bench` with one
# thread, then with one thread per core, all threads sharing the node's one generator (one
# worker id). Prints each run's result and a markdown table row per run for docs/BENCHMARKS.md.
#
# The layout's physical limit is 2^sequence_bits IDs per tick per worker: 4,096,000 IDs/s with
# the default layout (4096 per millisecond). The generator's lease file lives in a temp dir, so
# its (rare) fsyncs are real.
# Env: SECONDS_PER_RUN (5), ROUNDS (3 per thread count, each printed), SKIP_BUILD=1.
set -u
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
ROUNDS=${ROUNDS:-3}
CORES=$(nproc)
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
build_release

log "machine: $CORES cores, load $(loadavg)"
rows=()
for threads in 1 "$CORES"; do
  for round in $(seq 1 "$ROUNDS"); do
    cmd="phalanx id bench --threads $threads --seconds $SECONDS_PER_RUN"
    out=$("$BIN" id bench --threads "$threads" --seconds "$SECONDS_PER_RUN") || die "$cmd failed"
    log "round $round: $cmd: $out (load $(loadavg))"
    rows+=("| $(date -u +%Y-%m-%d) | \`$cmd\` | $round | $out |")
  done
done
echo "| date (UTC) | command | round | result |"
echo "|---|---|---:|---|"
printf '%s\n' "${rows[@]}"
