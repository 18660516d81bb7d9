# bench/lib.sh - shared by the bench scripts (source it): logging, and the release build.
# Sets ROOT (the repository) and BIN (the release binary); honours SKIP_BUILD=1.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="$ROOT/target/release/phalanx"

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# cd to the repository and build the release binary (unless SKIP_BUILD is set).
build_release() {
  cd "$ROOT" || die "cannot cd to $ROOT"
  if [ -z "${SKIP_BUILD:-}" ]; then
    log "cargo build --release"
    cargo build --release >&2 || die "cargo build --release failed"
  fi
  [ -x "$BIN" ] || die "$BIN missing"
}
