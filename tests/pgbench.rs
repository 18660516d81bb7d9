//! pgbench, unmodified, against a follower of a real 3-node cluster: `pgbench -i -s 2` (client-
//! side data generation through COPY inside a transaction), the TPC-B-like script and the
//! select-only script with zero failed transactions, and afterwards on every node the TPC-B
//! invariant sum(abalance) = sum(tbalance) = sum(bbalance) = sum(delta).

mod common;

use std::process::Command;
use std::time::Duration;

use common::Cluster;
use common::pg::follower;

const PGBENCH: &str = "/usr/lib/postgresql/15/bin/pgbench";

/// The tests here saturate the machine (3 nodes + pgbench each): one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn pgbench(address: &str, args: &[&str]) -> String {
    let (host, port) = address.split_once(':').expect("host:port");
    let output = Command::new(PGBENCH)
        .args(["-h", host, "-p", port, "-U", "bench"])
        .args(args)
        .arg("phalanx")
        .output()
        .unwrap_or_else(|e| panic!("run {PGBENCH} (installed by test.sh): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "pgbench {args:?} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

/// Node `i`'s sum(abalance), sum(tbalance), sum(bbalance), sum(delta) and history row count,
/// once it has applied `index`.
async fn tpcb_totals(cluster: &Cluster, i: usize, index: u64) -> serde_json::Value {
    cluster
        .wait_applied(i, index, Duration::from_secs(30))
        .await;
    let (status, sums) = cluster
        .query(
            i,
            "SELECT (SELECT sum(abalance) FROM pgbench_accounts),
                    (SELECT sum(tbalance) FROM pgbench_tellers),
                    (SELECT sum(bbalance) FROM pgbench_branches),
                    (SELECT sum(delta) FROM pgbench_history),
                    (SELECT count(*) FROM pgbench_history)",
            "any",
        )
        .await;
    assert_eq!(status, 200, "{sums}");
    sums["rows"][0].clone()
}

/// The count after `prefix` on the line that starts with it.
fn number_after(report: &str, prefix: &str) -> u64 {
    report
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no '{prefix}' in pgbench's report:\n{report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pgbench_init_tpcb_and_select_only_on_a_follower() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::start(3, &[]).await;
    let node = follower(&cluster).await;
    let address = cluster.nodes[node].pg.clone();

    pgbench(&address, &["-i", "-s", "2", "-q"]);
    let accounts = cluster
        .query(
            node,
            "SELECT count(*) FROM pgbench_accounts",
            "linearizable",
        )
        .await;
    assert_eq!(accounts.1["rows"][0][0], 200_000, "{:?}", accounts);

    let tpcb = pgbench(&address, &["-c", "4", "-j", "2", "-T", "10"]);
    let done = number_after(&tpcb, "number of transactions actually processed: ");
    assert!(done > 0, "no TPC-B transaction ran:\n{tpcb}");
    assert_eq!(
        number_after(&tpcb, "number of failed transactions: "),
        0,
        "{tpcb}"
    );
    // -n: no VACUUM/TRUNCATE of the history before the run (the invariant below needs it).
    let select = pgbench(&address, &["-n", "-S", "-c", "4", "-j", "2", "-T", "5"]);
    assert_eq!(
        number_after(&select, "number of failed transactions: "),
        0,
        "{select}"
    );

    let index = cluster.max_applied(&cluster.all()).await;
    for i in cluster.all() {
        let row = &tpcb_totals(&cluster, i, index).await;
        // One history row per committed transaction; pgbench does not count the (at most one
        // per client) transactions still running when its time is up.
        let history = row[4].as_u64().expect("history count");
        assert!(
            (done..=done + 4).contains(&history),
            "node {}: {history} history rows for {done} transactions ({row})",
            i + 1
        );
        assert!(
            row[0] == row[1] && row[1] == row[2] && row[2] == row[3],
            "node {}: TPC-B invariant broken: {row}",
            i + 1
        );
    }
}

/// pgbench through a follower while the leader is killed (kill -9): only transactions in
/// flight at the kill fail (pgbench retries the 40001s), the run goes on with the new leader,
/// and the TPC-B invariant holds on every surviving node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pgbench_survives_a_leader_kill() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3, &[]).await;
    let leader = cluster
        .wait_for_leader(&cluster.all(), Duration::from_secs(30))
        .await;
    let node = (leader + 1) % 3;
    let address = cluster.nodes[node].pg.clone();
    pgbench(&address, &["-i", "-s", "1", "-q"]);

    let (host, port) = address.split_once(':').expect("host:port");
    let run = Command::new(PGBENCH)
        .args(["-h", host, "-p", port, "-U", "bench", "-n"])
        .args([
            "-c",
            "4",
            "-j",
            "2",
            "-T",
            "12",
            "--max-tries=50",
            "phalanx",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start pgbench");
    // Kill the leader once transactions are committing.
    let before_kill = common::eventually(
        Duration::from_secs(20),
        "50 committed transactions",
        || async {
            let (_, body) = cluster
                .query(node, "SELECT count(*) FROM pgbench_history", "any")
                .await;
            match body["rows"][0][0].as_u64() {
                Some(n) if n >= 50 => Ok(n),
                seen => Err(seen),
            }
        },
    )
    .await;
    cluster.kill9(leader);
    let output = tokio::task::spawn_blocking(move || run.wait_with_output())
        .await
        .expect("join")
        .expect("pgbench ran");
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    let errors = String::from_utf8_lossy(&output.stderr).into_owned();
    let done = number_after(&report, "number of transactions actually processed: ");
    let failed = number_after(&report, "number of failed transactions: ");
    eprintln!("pgbench across the kill:\n{report}\n{errors}");
    assert!(
        failed <= 4,
        "only the (at most 4) transactions in flight at the kill may fail:\n{report}\n{errors}"
    );
    let survivors: Vec<usize> = cluster.all().into_iter().filter(|&i| i != leader).collect();
    let index = cluster.max_applied(&survivors).await;
    let mut history_after_kill = 0;
    for &i in &survivors {
        let row = &tpcb_totals(&cluster, i, index).await;
        assert!(
            row[0] == row[1] && row[1] == row[2] && row[2] == row[3],
            "node {}: TPC-B invariant broken after the kill: {row}",
            i + 1
        );
        history_after_kill = row[4].as_u64().expect("history count");
    }
    // Every acknowledged transaction is there; an unacknowledged one (in flight at the kill or
    // at the end of the run) may be too.
    assert!(
        (done..=done + failed + 4).contains(&history_after_kill),
        "{history_after_kill} history rows for {done} acknowledged transactions:\n{report}"
    );
    assert!(
        history_after_kill >= before_kill + 50,
        "the run went on after the kill ({before_kill} transactions before it, \
         {history_after_kill} in all):\n{report}\n{errors}"
    );
}
