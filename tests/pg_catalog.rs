//! psql against a follower of a real 3-node cluster: the script `tests/psql/describe.sql`
//! (run with `psql -v ON_ERROR_STOP=1 -f`) creates tables, commits a transaction, hits errors
//! whose SQLSTATEs `\set VERBOSITY verbose` prints, and describes the schema with `\dt`,
//! `\d TABLE`, `\di`, `\dv`, `\l`, `\du` and `\conninfo`, which read `pg_catalog`.

mod common;

use std::process::Command;

use common::Cluster;
use common::pg::follower;

/// Asserts that `expected` lines appear in `output`, in order (other lines may come between).
fn assert_lines_in_order(output: &str, expected: &[&str]) {
    let mut lines = output.lines();
    for want in expected {
        assert!(
            lines.any(|line| line.trim_end() == *want),
            "missing (or out of order) line {want:?} in:\n{output}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psql_describes_the_schema_through_a_follower() {
    let cluster = Cluster::start(3, &[]).await;
    let node = follower(&cluster).await;
    let (host, port) = cluster.nodes[node].pg.split_once(':').expect("host:port");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/psql/describe.sql");
    let output = Command::new("psql")
        .args(["-X", "-A", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", port])
        .args(["-U", "tester", "-d", "phalanx", "-f", script])
        .output()
        .expect("run psql (installed by test.sh)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "psql stopped on an error:\n{stdout}\n{stderr}"
    );

    // The errors the script provokes, with PostgreSQL's SQLSTATEs.
    for (line, code) in [(17, "23505"), (19, "23503"), (20, "25P02"), (22, "42P01")] {
        let prefix = format!("describe.sql:{line}: ERROR:  {code}:");
        assert!(
            stderr.lines().any(|l| l.contains(&prefix)),
            "expected {prefix} in:\n{stderr}"
        );
    }

    assert_lines_in_order(
        &stdout,
        &[
            "==dt",
            "Schema|Name|Type|Owner",
            "public|accounts|table|postgres",
            "public|orders|table|postgres",
            "(2 rows)",
            "==d accounts",
            "Table \"public.accounts\"",
            "Column|Type|Collation|Nullable|Default",
            "id|integer||not null|nextval('accounts_id_seq'::regclass)",
            "name|text||not null|",
            "balance|numeric(10,2)|||0",
            "created|timestamp with time zone|||now()",
            "Indexes:",
            "    \"accounts_pkey\" PRIMARY KEY, btree (id)",
            "    \"accounts_name_key\" UNIQUE CONSTRAINT, btree (name)",
            "Referenced by:",
            "    TABLE \"orders\" CONSTRAINT \"orders_account_id_fkey\" FOREIGN KEY (account_id) REFERENCES accounts(id)",
            "==d orders",
            "id|bigint||not null|",
            "account_id|integer|||",
            "total|double precision|||",
            "note|character varying(20)|||",
            "    \"orders_pkey\" PRIMARY KEY, btree (id)",
            "    \"orders_account\" btree (account_id)",
            "Check constraints:",
            "    \"orders_total_check\" CHECK (total >= 0)",
            "Foreign-key constraints:",
            "    \"orders_account_id_fkey\" FOREIGN KEY (account_id) REFERENCES accounts(id)",
            "==di",
            "public|accounts_name_key|index|postgres|accounts",
            "public|accounts_pkey|index|postgres|accounts",
            "public|orders_account|index|postgres|orders",
            "public|orders_pkey|index|postgres|orders",
            "==dv",
            "public|big_orders|view|postgres",
            "==l",
            "postgres|postgres|UTF8|C|C||libc|",
            "==du",
            "postgres|Superuser, Create role, Create DB, Replication, Bypass RLS|{}",
            "==conninfo",
            &format!(
                "You are connected to database \"phalanx\" as user \"tester\" on host \"{host}\" at port \"{port}\"."
            ),
            "==count",
            "2",
        ],
    );

    // What the script committed is on every node, and nothing the failed statements tried.
    let reference = cluster.assert_identical().await;
    assert_eq!(reference["orders"].as_array().map(Vec::len), Some(2));
    assert_eq!(reference["accounts"].as_array().map(Vec::len), Some(2));
}
