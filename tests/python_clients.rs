//! psycopg (3) and SQLAlchemy, unmodified, against a follower of a real 3-node cluster: the
//! script `tests/clients/python_clients.py` creates tables, inserts, queries, rolls a
//! transaction back and round-trips an ORM model; then every node holds the same rows.

mod common;

use std::process::Command;

use common::Cluster;
use common::pg::follower;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psycopg_and_sqlalchemy_on_a_follower() {
    let cluster = Cluster::start(3, &[]).await;
    let node = follower(&cluster).await;
    let (host, port) = cluster.nodes[node].pg.split_once(':').expect("host:port");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/python_clients.py"
    );
    let output = Command::new("python3")
        .args([script, host, port])
        .output()
        .expect("run python3 (psycopg and SQLAlchemy are installed by test.sh)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("python clients ok"),
        "the Python clients failed:\n{stdout}\n{stderr}"
    );

    let reference = cluster.assert_identical().await;
    assert_eq!(
        reference["py_people"].as_array().map(Vec::len),
        Some(2),
        "two people committed, one rolled back: {reference}"
    );
    assert_eq!(reference["py_items"].as_array().map(Vec::len), Some(2));
}
