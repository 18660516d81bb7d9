#!/usr/bin/env bash
# Runs every test of Phalanx: formatting, lints, unit tests, openraft's storage suite, and the
# multi-process cluster tests (real node processes on 127.0.0.1, real kill -9 / SIGSTOP).
# Usage: ./test.sh            (CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")"

# The PostgreSQL tests drive real clients: psql, pgbench (from the PostgreSQL server package)
# and sysbench, and the Python drivers psycopg and SQLAlchemy. Install them when missing.
if ! command -v psql >/dev/null || [ ! -x /usr/lib/postgresql/15/bin/pgbench ] \
    || ! command -v sysbench >/dev/null; then
    echo "== installing PostgreSQL client tools and sysbench"
    apt-get update -qq && apt-get install -y -qq postgresql-client postgresql-15 sysbench >/dev/null
fi

if ! python3 -c "import psycopg, sqlalchemy" 2>/dev/null; then
    echo "== installing psycopg and SQLAlchemy"
    python3 -m pip install -q "psycopg[binary]" sqlalchemy
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -D warnings"
cargo clippy --all-targets --locked -- -D warnings

echo "== cargo test"
# Cluster tests start 3-4 node processes each; two at a time keep a 2-core machine responsive.
cargo test --locked -- --test-threads=2
