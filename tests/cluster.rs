//! The replicated core, end to end: real node processes on loopback, real kills.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Cluster;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

/// Rows of every user table, sorted, so replicas can be compared whatever their physical order.
async fn content(cluster: &Cluster, i: usize) -> Value {
    let mut dump = cluster.dump(i).await;
    if let Some(tables) = dump.as_object_mut() {
        for rows in tables.values_mut() {
            if let Some(list) = rows.as_array_mut() {
                list.sort_by_key(|r| r.to_string());
            }
        }
    }
    dump
}

/// The voters listed in a `/v1/status` answer.
fn voter_ids(status: &Value) -> Vec<u64> {
    status["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["voter"] == json!(true))
        .map(|m| m["id"].as_u64().expect("id"))
        .collect()
}

/// Waits until every node in `which` has applied everything the cluster committed, then
/// asserts they hold identical data.
async fn assert_converged(cluster: &Cluster, which: &[usize]) {
    let target = cluster.max_applied(which).await;
    for &i in which {
        cluster
            .wait_applied(i, target, Duration::from_secs(30))
            .await;
    }
    let reference = content(cluster, which[0]).await;
    for &i in &which[1..] {
        assert_eq!(
            content(cluster, i).await,
            reference,
            "node {} differs from node {}",
            i + 1,
            which[0] + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_leader_kill() {
    let cluster = Cluster::start(3, &[]).await;
    cluster
        .execute_ok(1, "CREATE TABLE t(id INTEGER PRIMARY KEY, writer INTEGER, seq INTEGER, UNIQUE(writer, seq))", json!([]))
        .await;

    let cluster = Arc::new(cluster);
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let stop_at = Instant::now() + Duration::from_secs(8);
    let mut writers = Vec::new();
    for writer in 0..6u64 {
        let cluster = cluster.clone();
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            let mut seq = 0u64;
            while Instant::now() < stop_at && seq < 2000 {
                let node = (writer as usize) % 3;
                let (status, _) = cluster
                    .execute(
                        node,
                        &[(
                            "INSERT INTO t(writer, seq) VALUES (?, ?)",
                            json!([writer, seq]),
                        )],
                    )
                    .await;
                if status == 200 {
                    acknowledged.lock().expect("lock").insert((writer, seq));
                }
                seq += 1;
            }
        }));
    }

    // Let writes flow, then kill the leader.
    common::eventually(
        Duration::from_secs(10),
        "200 acknowledged writes",
        || async {
            let acked = acknowledged.lock().expect("lock").len();
            if acked >= 200 { Ok(()) } else { Err(acked) }
        },
    )
    .await;
    let leader = cluster
        .wait_for_leader(&cluster.all(), Duration::from_secs(5))
        .await;
    let acked_before_kill = acknowledged.lock().expect("lock").len();
    cluster.signal(leader, Signal::SIGKILL);
    let killed_at = Instant::now();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();

    // A new leader is elected and a write through a survivor succeeds again.
    let first_write_after = loop {
        let (status, body) = cluster
            .execute(
                survivors[0],
                &[("INSERT INTO t(writer, seq) VALUES (?, ?)", json!([100, 0]))],
            )
            .await;
        if status == 200 {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(15),
            "no write succeeded after the kill: {status} {body}"
        );
    };
    acknowledged.lock().expect("lock").insert((100, 0));
    eprintln!("first write after kill -9 of the leader: {first_write_after:?}");

    for w in writers {
        w.await.expect("writer task");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(
        acknowledged.len() > acked_before_kill,
        "writes continued after the kill"
    );

    let mut cluster = Arc::try_unwrap(cluster).ok().expect("sole owner");
    cluster.kill9(leader); // reap the process killed above
    // Every acknowledged write is on every survivor.
    for &i in &survivors {
        let applied_target = cluster.max_applied(&survivors).await;
        cluster
            .wait_applied(i, applied_target, Duration::from_secs(20))
            .await;
        let (status, rows) = cluster.query(i, "SELECT writer, seq FROM t", "any").await;
        assert_eq!(status, 200, "{rows}");
        let present: BTreeSet<(u64, u64)> = rows["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| (r[0].as_u64().expect("writer"), r[1].as_u64().expect("seq")))
            .collect();
        let missing: Vec<_> = acknowledged.difference(&present).collect();
        assert!(
            missing.is_empty(),
            "node {} lost acknowledged writes: {missing:?}",
            i + 1
        );
    }

    // The killed node, restarted with its command, catches up and holds identical data.
    cluster.start_node(leader);
    assert_converged(&cluster, &[0, 1, 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nondeterministic_functions_are_evaluated_once() {
    let cluster = Cluster::start(3, &[]).await;
    cluster
        .execute_ok(
            0,
            "CREATE TABLE d(id INTEGER PRIMARY KEY, r INTEGER DEFAULT (random()), t TEXT DEFAULT CURRENT_TIMESTAMP, \
             n TEXT DEFAULT (strftime('%Y-%m-%d %H:%M:%f','now')), b BLOB DEFAULT (randomblob(16)), v REAL)",
            json!([]),
        )
        .await;
    for node in 0..3 {
        for _ in 0..5 {
            cluster
                .execute_ok(node, "INSERT INTO d(v) VALUES (random() / 3.0)", json!([]))
                .await;
        }
        cluster
            .execute_ok(node, "UPDATE d SET n = datetime('now', '+' || (abs(random()) % 1000) || ' seconds') WHERE id % 2 = 0", json!([]))
            .await;
    }
    let (status, rows) = cluster
        .query(2, "SELECT count(DISTINCT r) FROM d", "linearizable")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        rows["rows"][0][0],
        json!(15),
        "random() values are distinct per row"
    );
    assert_converged(&cluster, &[0, 1, 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_refuses_writes_and_recovers() {
    let cluster = Cluster::start(3, &[]).await;
    cluster
        .execute_ok(0, "CREATE TABLE m(v TEXT)", json!([]))
        .await;
    let leader = cluster
        .wait_for_leader(&cluster.all(), Duration::from_secs(5))
        .await;
    let survivor = (leader + 1) % 3;
    let others: Vec<usize> = (0..3).filter(|&i| i != survivor).collect();
    for &i in &others {
        cluster.signal(i, Signal::SIGSTOP);
    }
    let (status, body) = cluster
        .execute(survivor, &[("INSERT INTO m VALUES ('lost?')", json!([]))])
        .await;
    assert_eq!(status, 503, "a minority must refuse writes: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "clear message: {body}"
    );
    // Linearizable reads are refused too; `any` still answers from local data.
    let (status, _) = cluster
        .query(survivor, "SELECT count(*) FROM m", "linearizable")
        .await;
    assert!(
        status == 503 || status == 504,
        "linearizable read on a minority: {status}"
    );
    let (status, _) = cluster
        .query(survivor, "SELECT count(*) FROM m", "any")
        .await;
    assert_eq!(status, 200);

    for &i in &others {
        cluster.signal(i, Signal::SIGCONT);
    }
    cluster
        .wait_for_leader(&cluster.all(), Duration::from_secs(20))
        .await;
    cluster
        .execute_ok(survivor, "INSERT INTO m VALUES ('after')", json!([]))
        .await;
    let (status, rows) = cluster
        .query(survivor, "SELECT v FROM m", "linearizable")
        .await;
    assert_eq!(status, 200);
    // The refused write was never applied anywhere.
    assert_eq!(rows["rows"], json!([["after"]]));
    assert_converged(&cluster, &[0, 1, 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_and_new_nodes_catch_up_through_snapshots() {
    let mut cluster = Cluster::start(
        3,
        &[
            "--snapshot-every-entries",
            "50",
            "--log-entries-kept-after-snapshot",
            "10",
        ],
    )
    .await;
    cluster
        .execute_ok(
            0,
            "CREATE TABLE s(id INTEGER PRIMARY KEY, payload TEXT)",
            json!([]),
        )
        .await;
    let leader = cluster
        .wait_for_leader(&cluster.all(), Duration::from_secs(5))
        .await;
    let lagging = (leader + 1) % 3;
    cluster.kill9(lagging);
    let live: Vec<usize> = (0..3).filter(|&i| i != lagging).collect();
    for n in 0..300 {
        cluster
            .execute_ok(
                live[n % 2],
                "INSERT INTO s(payload) VALUES (hex(randomblob(32)))",
                json!([]),
            )
            .await;
    }
    // The leader's log has been purged past what the lagging node has.
    let status = cluster.status(leader).await.expect("leader status");
    assert!(
        status["purged_index"].as_u64().unwrap_or(0) > 100,
        "log purged behind a snapshot: {status}"
    );

    cluster.start_node(lagging);
    assert_converged(&cluster, &[0, 1, 2]).await;
    let status = cluster.status(lagging).await.expect("status");
    assert!(
        status["snapshot_index"].as_u64().unwrap_or(0) > 0,
        "caught up through a snapshot: {status}"
    );

    // A brand-new node, added with `phalanx node add`, catches up the same way.
    let newcomer =
        cluster.spawn_extra_node(4, &["--no-bootstrap", "--snapshot-every-entries", "50"]);
    let node = &cluster.nodes[newcomer];
    let output = tokio::process::Command::new(common::BIN)
        .args([
            "node",
            "add",
            "--cluster",
            &cluster.nodes[live[0]].http,
            "--id",
            "4",
            "--raft",
            &node.raft,
            "--http",
            &node.http,
            "--pg",
            &node.pg,
        ])
        .output()
        .await
        .expect("run phalanx node add");
    assert!(
        output.status.success(),
        "node add: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_converged(&cluster, &[0, 1, 2, newcomer]).await;
    let status = cluster.get(leader, "/v1/status").await.expect("status");
    let voters = voter_ids(&status);
    assert_eq!(
        voters,
        vec![1, 2, 3, 4],
        "the new node was promoted to voter"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_log_tail_is_repaired_at_start() {
    let mut cluster = Cluster::start(3, &[]).await;
    cluster
        .execute_ok(0, "CREATE TABLE w(v INTEGER)", json!([]))
        .await;
    for v in 0..20 {
        cluster
            .execute_ok(v % 3, "INSERT INTO w VALUES (?)", json!([v]))
            .await;
    }
    let leader = cluster
        .wait_for_leader(&cluster.all(), Duration::from_secs(5))
        .await;
    let victim = (leader + 1) % 3;
    cluster.stop(victim);
    // Chop the last record of the newest segment mid-record, as a crash during a write would.
    let log_dir = cluster.nodes[victim].data.join("raft-log");
    let mut segments: Vec<_> = std::fs::read_dir(&log_dir)
        .expect("log dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    let last = segments.last().expect("a segment");
    let len = std::fs::metadata(last).expect("metadata").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .expect("open segment");
    file.set_len(len - 3).expect("truncate");
    drop(file);

    cluster.start_node(victim);
    let status = common::eventually(
        Duration::from_secs(20),
        "the restarted node answering",
        || async { cluster.status(victim).await.ok_or("no answer") },
    )
    .await;
    assert!(
        status["log_repair"].is_string(),
        "the repair is reported: {status}"
    );
    cluster
        .execute_ok(victim, "INSERT INTO w VALUES (100)", json!([]))
        .await;
    assert_converged(&cluster, &[0, 1, 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_documented_errors() {
    let cluster = Cluster::start(3, &["--max-request-bytes", "4096"]).await;
    cluster
        .execute_ok(
            0,
            "CREATE TABLE b(id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE)",
            json!([]),
        )
        .await;
    cluster
        .execute_ok(1, "INSERT INTO b(v) VALUES ('x')", json!([]))
        .await;

    let (status, body) = cluster
        .post_raw(1, "/v1/execute", b"{not json".to_vec())
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("malformed_json")),
        "{body}"
    );
    let (status, body) = cluster
        .post(1, "/v1/execute", &json!({"statements": [], "extra": 1}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("malformed_json")),
        "unknown field: {body}"
    );
    let (status, body) = cluster
        .post(2, "/v1/query", &json!({"sql": "SELECT 1", "colour": "red"}))
        .await;
    assert_eq!(status, 400, "unknown field in a query: {body}");
    let (status, body) = cluster.execute(2, &[("SELEC nonsense", json!([]))]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("sql_error")),
        "{body}"
    );
    let (status, body) = cluster
        .execute(0, &[("INSERT INTO b(v) VALUES (?)", json!([1, 2]))])
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "param count: {body}"
    );
    let (status, body) = cluster
        .execute(2, &[("INSERT INTO b(v) VALUES ('x')", json!([]))])
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("constraint_violation")),
        "{body}"
    );
    let (status, body) = cluster.execute(2, &[("BEGIN", json!([]))]).await;
    assert_eq!(status, 400, "transaction control inside a request: {body}");
    // The client SQL policy: no bookkeeping tampering, no TEMP objects, no PRAGMA or ATTACH.
    for sql in [
        "DELETE FROM _phalanx_meta",
        "CREATE TEMP TABLE tmp(x)",
        "PRAGMA foreign_keys=OFF",
        "ATTACH DATABASE '/tmp/x.db' AS x",
    ] {
        let (status, body) = cluster.execute(0, &[(sql, json!([]))]).await;
        assert_eq!(status, 400, "{sql}: {body}");
    }
    for sql in [
        "PRAGMA query_only=0",
        "PRAGMA journal_mode=DELETE",
        "INSERT INTO b(v) VALUES ('q')",
    ] {
        let (status, body) = cluster.query(1, sql, "any").await;
        assert_eq!(status, 400, "{sql} as a query: {body}");
    }
    let (status, body) = cluster.query(1, "PRAGMA table_info(b)", "any").await;
    assert_eq!(status, 200, "schema introspection is a read: {body}");
    let big = "y".repeat(10_000);
    let (status, body) = cluster
        .execute(1, &[("INSERT INTO b(v) VALUES (?)", json!([big]))])
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );
    let (status, body) = cluster.query(1, "DELETE FROM b", "any").await;
    assert_eq!(status, 400, "a write sent as a query is refused: {body}");

    // A failing statement rolls back its whole request: the first insert is not kept.
    let (status, _) = cluster
        .execute(
            0,
            &[
                ("INSERT INTO b(v) VALUES ('kept?')", json!([])),
                ("INSERT INTO b(v) VALUES (NULL)", json!([])),
            ],
        )
        .await;
    assert_eq!(status, 409);

    // The cluster keeps serving.
    cluster
        .execute_ok(2, "INSERT INTO b(v) VALUES ('z')", json!([]))
        .await;
    let (status, rows) = cluster
        .query(0, "SELECT v FROM b ORDER BY v", "linearizable")
        .await;
    assert_eq!(status, 200);
    assert_eq!(rows["rows"], json!([["x"], ["z"]]));
    assert_converged(&cluster, &[0, 1, 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_reads_see_acknowledged_writes() {
    let cluster = Cluster::start(3, &[]).await;
    cluster
        .execute_ok(
            0,
            "CREATE TABLE r(id INTEGER PRIMARY KEY, v INTEGER)",
            json!([]),
        )
        .await;
    for v in 0..40u64 {
        let writer = (v % 3) as usize;
        let reader = ((v + 1) % 3) as usize;
        let body = cluster
            .execute_ok(writer, "INSERT INTO r(v) VALUES (?)", json!([v]))
            .await;
        let index = body["index"].as_u64().expect("index");
        // Linearizable (the default): a read that starts after the acknowledgement sees it.
        let (status, rows) = cluster
            .post(reader, "/v1/query", &json!({"sql": "SELECT max(v) FROM r"}))
            .await;
        assert_eq!(status, 200, "{rows}");
        assert_eq!(
            rows["rows"][0][0],
            json!(v),
            "linearizable read on node {} missed write {v}",
            reader + 1
        );
        assert!(rows["index"].as_u64().expect("index") >= index);
        // Session: the serving node waits until it has applied the write's index.
        let other = ((v + 2) % 3) as usize;
        let (status, rows) = cluster
            .post(
                other,
                "/v1/query",
                &json!({"sql": "SELECT count(*) FROM r WHERE v = ?", "params": [v], "consistency": "session", "min_index": index}),
            )
            .await;
        assert_eq!(status, 200, "{rows}");
        assert_eq!(
            rows["rows"][0][0],
            json!(1),
            "session read on node {} missed write {v}",
            other + 1
        );
    }
    // RETURNING rows come back from an execute.
    let body = cluster
        .execute_ok(
            1,
            "INSERT INTO r(v) VALUES (?) RETURNING id, v * 2",
            json!([7]),
        )
        .await;
    assert_eq!(body["results"][0]["rows"], json!([[41, 14]]), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_join_remove_and_leader_transfer() {
    let mut cluster = Cluster::start(3, &[]).await;
    cluster
        .execute_ok(0, "CREATE TABLE j(v TEXT)", json!([]))
        .await;
    cluster
        .execute_ok(1, "INSERT INTO j VALUES ('before join')", json!([]))
        .await;

    // A node started with --join asks the cluster to add it, and catches up.
    let join_through = cluster.nodes[2].http.clone();
    let newcomer = cluster.spawn_extra_node(4, &["--join", &join_through]);
    common::eventually(
        Duration::from_secs(30),
        "node 4 a healthy voter",
        || async {
            let status = cluster.get(0, "/v1/status").await.expect("status");
            let voter = status["members"]
                .as_array()
                .expect("members")
                .iter()
                .any(|m| {
                    m["id"] == json!(4) && m["voter"] == json!(true) && m["health"] == json!("up")
                });
            if voter { Ok(()) } else { Err(status) }
        },
    )
    .await;
    assert_converged(&cluster, &[0, 1, 2, newcomer]).await;

    // Leadership transfer through the CLI, sent to a non-leader.
    let leader = cluster
        .wait_for_leader(&[0, 1, 2, newcomer], Duration::from_secs(5))
        .await;
    let target = if leader == newcomer { 0 } else { newcomer };
    let via = (0..3).find(|&i| i != leader).expect("a follower");
    let output = tokio::process::Command::new(common::BIN)
        .args([
            "leader",
            "transfer",
            "--cluster",
            &cluster.nodes[via].http,
            "--to",
            &cluster.nodes[target].id.to_string(),
        ])
        .output()
        .await
        .expect("run phalanx leader transfer");
    assert!(
        output.status.success(),
        "transfer: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let what = format!("leadership moving to node {}", target + 1);
    common::eventually(Duration::from_secs(10), &what, || async {
        let now = cluster
            .wait_for_leader(&[0, 1, 2, newcomer], Duration::from_secs(5))
            .await;
        if now == target { Ok(()) } else { Err(now) }
    })
    .await;
    cluster
        .execute_ok(via, "INSERT INTO j VALUES ('after transfer')", json!([]))
        .await;

    // Remove node 4 through the CLI; the remaining three keep serving.
    let output = tokio::process::Command::new(common::BIN)
        .args(["node", "remove", "--cluster", &cluster.nodes[0].http, "4"])
        .output()
        .await
        .expect("run phalanx node remove");
    assert!(
        output.status.success(),
        "remove: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let leader = cluster
        .wait_for_leader(&[0, 1, 2], Duration::from_secs(10))
        .await;
    let status = cluster.get(leader, "/v1/status").await.expect("status");
    let voters = voter_ids(&status);
    assert_eq!(voters, vec![1, 2, 3], "{status}");
    cluster.stop(newcomer);
    cluster
        .execute_ok(1, "INSERT INTO j VALUES ('after remove')", json!([]))
        .await;
    assert_converged(&cluster, &[0, 1, 2]).await;

    // Unknown nodes are refused clearly.
    let (status, body) = cluster
        .post(0, "/v1/leader/transfer", &json!({"to": 99}))
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_restart_keeps_data_and_config_sources_apply() {
    let mut cluster = Cluster::start(3, &[]).await;
    cluster
        .execute_ok(
            0,
            "CREATE TABLE k(id INTEGER PRIMARY KEY, v TEXT)",
            json!([]),
        )
        .await;
    for i in 0..30 {
        cluster
            .execute_ok(
                i % 3,
                "INSERT INTO k(v) VALUES (?)",
                json!([format!("row {i}")]),
            )
            .await;
    }
    // Every node has applied the last write before the content is taken.
    assert_converged(&cluster, &[0, 1, 2]).await;
    let before = content(&cluster, 0).await;
    for i in 0..3 {
        cluster.stop(i); // SIGTERM: each must exit cleanly (asserted by `stop`)
    }
    // Node 3 comes back with a setting from the environment: a tiny body limit.
    for i in 0..2 {
        cluster.start_node(i);
    }
    cluster.start_node_with_env(2, &[("PHALANX_MAX_REQUEST_BYTES", "300")]);
    cluster
        .wait_for_leader(&cluster.all(), Duration::from_secs(30))
        .await;
    assert_converged(&cluster, &[0, 1, 2]).await;
    assert_eq!(
        content(&cluster, 1).await,
        before,
        "data survived a full restart"
    );
    cluster
        .execute_ok(1, "INSERT INTO k(v) VALUES ('after restart')", json!([]))
        .await;
    let long = "x".repeat(400);
    let (status, _) = cluster
        .execute(2, &[("INSERT INTO k(v) VALUES (?)", json!([long.clone()]))])
        .await;
    assert_eq!(status, 413, "PHALANX_MAX_REQUEST_BYTES applies to node 3");
    let (status, _) = cluster
        .execute(0, &[("INSERT INTO k(v) VALUES (?)", json!([long]))])
        .await;
    assert_eq!(status, 200, "and only to node 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_without_cluster_flags_runs_a_single_node_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = common::free_ports(3);
    let http = format!("127.0.0.1:{}", ports[1]);
    /// Kills the node when the test ends, whether it passed or failed.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _node = KillOnDrop(
        std::process::Command::new(common::BIN)
            .current_dir(dir.path())
            .args([
                "start",
                "--listen-pg",
                &format!("127.0.0.1:{}", ports[0]),
                "--listen-http",
                &http,
                "--listen-raft",
                &format!("127.0.0.1:{}", ports[2]),
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let url = format!("http://{http}/v1/execute");
    let body = json!({"statements": [{"sql": "CREATE TABLE solo(v)"}, {"sql": "INSERT INTO solo VALUES (1)"}]});
    common::eventually(
        Duration::from_secs(20),
        "the single node accepting a write",
        || async {
            match client.post(&url).json(&body).send().await {
                Ok(r) if r.status() == 200 => Ok(()),
                Ok(r) => Err(r.status().to_string()),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
    // The scenario: the node idles for longer than the leader lease, then writes again (a sole
    // voter has nobody to acknowledge its leadership and must still accept writes).
    let status_url = format!("http://{http}/v1/status?local=1");
    common::eventually(
        Duration::from_secs(10),
        "the lease to age past election_timeout_max_ms (400 ms by default)",
        || async {
            let status: serde_json::Value = client
                .get(&status_url)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            match status["quorum_ack_age_ms"].as_u64() {
                Some(age) if age > 400 => Ok(()),
                other => Err(format!("quorum_ack_age_ms {other:?}")),
            }
        },
    )
    .await;
    let later = json!({"statements": [{"sql": "INSERT INTO solo VALUES (2)"}]});
    let after_idle = client
        .post(&url)
        .json(&later)
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert_eq!(
        after_idle.ok(),
        Some(200),
        "a single node still writes after idling"
    );
    assert!(
        dir.path().join("phalanx-data/db.sqlite").exists(),
        "default data directory ./phalanx-data"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_share_log_flushes() {
    let cluster = Arc::new(Cluster::start(3, &[]).await);
    cluster
        .execute_ok(
            0,
            "CREATE TABLE g(id INTEGER PRIMARY KEY, v INTEGER)",
            json!([]),
        )
        .await;
    let leader = cluster
        .wait_for_leader(&cluster.all(), Duration::from_secs(5))
        .await;
    let fsyncs = |s: Value| s["raft_log"]["fsyncs"].as_u64().expect("fsync counter");
    let before = fsyncs(cluster.status(leader).await.expect("status"));
    let (clients, per_client) = (32u64, 20u64);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let cluster = cluster.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_client {
                cluster
                    .execute_ok(leader, "INSERT INTO g(v) VALUES (?)", json!([c * 1000 + i]))
                    .await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let after = cluster.status(leader).await.expect("status");
    let flushes = fsyncs(after.clone()) - before;
    let writes = clients * per_client;
    let pipeline = &after["write_pipeline"];
    eprintln!(
        "{writes} acknowledged writes took {flushes} leader log flushes; pipeline {pipeline}"
    );
    assert!(
        flushes * 2 < writes,
        "writes must share flushes: {writes} writes, {flushes} fsyncs"
    );
    // And share Raft entries: concurrent writes are batched into one entry each.
    let entries = pipeline["entries"].as_u64().expect("entries");
    assert!(
        entries * 2 < writes,
        "writes must be batched into entries: {writes} writes, {pipeline}"
    );
    let (status, rows) = cluster
        .query(0, "SELECT count(*) FROM g", "linearizable")
        .await;
    assert_eq!((status, rows["rows"][0][0].as_u64()), (200, Some(writes)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_mid_write_refuses_and_recovers_consistently() {
    let cluster = Cluster::start(3, &["--write-timeout-ms", "1500"]).await;
    cluster
        .execute_ok(0, "CREATE TABLE cut(v TEXT)", json!([]))
        .await;
    let leader = cluster
        .wait_for_leader(&cluster.all(), Duration::from_secs(5))
        .await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for &i in &followers {
        cluster.signal(i, Signal::SIGSTOP);
    }
    // Proposed before the leader notices it is alone: it cannot commit, and the client is told
    // the outcome is unknown (or, if the lease already ran out, that there is no leader).
    let (first, body) = cluster
        .execute(leader, &[("INSERT INTO cut VALUES ('maybe')", json!([]))])
        .await;
    assert_eq!(first, 503, "{body}");
    let (second, body) = cluster
        .execute(leader, &[("INSERT INTO cut VALUES ('refused')", json!([]))])
        .await;
    assert_eq!(second, 503, "a leader without a majority refuses: {body}");
    for &i in &followers {
        cluster.signal(i, Signal::SIGCONT);
    }
    cluster
        .wait_for_leader(&cluster.all(), Duration::from_secs(20))
        .await;
    cluster
        .execute_ok(leader, "INSERT INTO cut VALUES ('after')", json!([]))
        .await;
    assert_converged(&cluster, &[0, 1, 2]).await;
    let (status, rows) = cluster
        .query(0, "SELECT v FROM cut WHERE v = 'refused'", "linearizable")
        .await;
    assert_eq!(
        (status, rows["rows"].as_array().map(Vec::len)),
        (200, Some(0)),
        "a refused write never appears"
    );
}
