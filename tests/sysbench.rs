//! sysbench's oltp_read_write (PostgreSQL driver, prepared statements, BEGIN/COMMIT) against a
//! follower of a real 3-node cluster: prepare, run and cleanup with zero errors, and every
//! node holding the same rows after the run.

mod common;

use std::process::Command;

use common::Cluster;
use common::pg::follower;

fn sysbench(address: &str, action: &str, extra: &[&str]) -> String {
    let (host, port) = address.split_once(':').expect("host:port");
    let output = Command::new("sysbench")
        .args(["oltp_read_write", "--db-driver=pgsql"])
        .arg(format!("--pgsql-host={host}"))
        .arg(format!("--pgsql-port={port}"))
        .args(["--pgsql-user=sb", "--pgsql-db=phalanx"])
        .args(["--tables=1", "--table-size=2000", "--threads=4"])
        .args(extra)
        .arg(action)
        .output()
        .unwrap_or_else(|e| panic!("run sysbench (installed by test.sh): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "sysbench {action} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

/// The first number after `label` in sysbench's report.
fn count(report: &str, label: &str) -> u64 {
    report
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no '{label}' in sysbench's report:\n{report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sysbench_oltp_read_write_on_a_follower() {
    let cluster = Cluster::start(3, &[]).await;
    let node = follower(&cluster).await;
    let address = cluster.nodes[node].pg.clone();

    sysbench(&address, "prepare", &[]);
    let report = sysbench(&address, "run", &["--time=5"]);
    assert!(count(&report, "transactions:") > 0, "{report}");
    assert_eq!(count(&report, "ignored errors:"), 0, "{report}");
    assert_eq!(count(&report, "reconnects:"), 0, "{report}");

    // Every node holds the same rows (sysbench deletes and re-inserts rows in each transaction).
    let reference = cluster.assert_identical().await;
    assert_eq!(
        reference["sbtest1"].as_array().map(Vec::len),
        Some(2000),
        "sysbench keeps the table size"
    );
    sysbench(&address, "cleanup", &[]);
    let (status, tables) = cluster
        .query(
            node,
            "SELECT count(*) FROM sqlite_master WHERE name = 'sbtest1'",
            "linearizable",
        )
        .await;
    assert_eq!(status, 200, "{tables}");
    assert_eq!(tables["rows"][0][0], 0, "cleanup dropped the table");
}
