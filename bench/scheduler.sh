#!/bin/bash
# bench/scheduler.sh - the cost of one scheduler pick, for every algorithm of
# dispatch::scheduler, with 3 and 8 candidates: runs `cargo bench --bench scheduler_pick`
# (divan; benches/scheduler_pick.rs) and prints divan's own report, then a markdown table of
# median and mean ns per pick for docs/BENCHMARKS.md. The target is under 200 ns per pick.
# Env: BENCH_LOG (where divan's raw output is kept; default a temp file).
set -u
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$ROOT" || die "cannot cd to $ROOT"

raw=${BENCH_LOG:-$(mktemp)}
log "machine: $(nproc) cores, load $(loadavg)"
log "cargo bench --bench scheduler_pick (raw output: $raw)"
cargo bench --bench scheduler_pick >"$raw" || die "cargo bench failed"
cat "$raw" >&2
log "done, load $(loadavg)"

# divan prints a tree: a benchmark (`pick`, `pick_after_a_weight_change`), one branch per
# candidate count, then one row per scheduler with fastest │ slowest │ median │ mean │
# samples │ iters. Strip the tree drawing, remember the benchmark and the count, and collect
# median and mean per (benchmark and scheduler, count).
awk '
  function trim(s) { gsub(/^ +| +$/, "", s); return s }
  {
    line = $0
    sub(/^[ \342\224\202\234\225\260\200]*/, "", line)   # tree drawing: │ ├ ╰ ─ and spaces
    split(line, field, "\342\224\202")                 # columns, split at │
    first = trim(field[1])
    if (first ~ /^pick[a-z_]*$/) { bench = first; count = ""; next }
    if (first ~ /^[0-9]+$/) {
      count = first
      if (!(count in seen)) { seen[count] = 1; counts[++ncounts] = count }
      next
    }
    if (count == "" || first !~ /^[a-z]+ /) next
    name = first; sub(/ .*/, "", name)
    name = "`" name "`"
    if (bench != "pick") { label = bench; gsub(/_/, " ", label); sub(/^pick /, "", label); name = name " " label }
    names[name] = 1
    median[name, count] = trim(field[3])
    mean[name, count] = trim(field[4])
  }
  END {
    printf "| scheduler |"
    for (i = 1; i <= ncounts; i++) printf " %s candidates: median | mean |", counts[i]
    printf "\n|---|"
    for (i = 1; i <= ncounts; i++) printf "---:|---:|"
    printf "\n"
    for (n in names) {
      printf "| %s |", n
      for (i = 1; i <= ncounts; i++) printf " %s | %s |", median[n, counts[i]], mean[n, counts[i]]
      printf "\n"
    }
  }
' "$raw" | {
  read -r header
  read -r rule
  echo "$header"
  echo "$rule"
  rows=$(sort)
  grep -v ' after ' <<<"$rows"
  grep ' after ' <<<"$rows"
}
