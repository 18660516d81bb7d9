//! The read balancer end to end, real node processes: reads over one PostgreSQL connection
//! are spread over the nodes by the configured scheduler (counted in `/v1/status`); a node
//! stopped with SIGSTOP leaves the read pool within a second without one read failing, and
//! returns after SIGCONT; reads served by followers are linearizable.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use serde_json::Value;

/// Reads each node served for clients of node `i`, by node id, from its `/v1/status`.
async fn served(cluster: &Cluster, i: usize) -> Vec<(u64, u64)> {
    let status = cluster.status(i).await.expect("status");
    status["dispatcher"]["nodes"]
        .as_array()
        .expect("dispatcher nodes")
        .iter()
        .map(|n| {
            (
                n["node"].as_u64().expect("node"),
                n["requests"].as_u64().expect("requests"),
            )
        })
        .collect()
}

async fn healthy(cluster: &Cluster, i: usize, node: u64) -> bool {
    let status: Value = cluster.status(i).await.expect("status");
    status["dispatcher"]["health"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| h["node"].as_u64() == Some(node))
        .is_none_or(|h| h["healthy"].as_bool() == Some(true))
}

fn count_for(counts: &[(u64, u64)], node: u64) -> u64 {
    counts
        .iter()
        .find(|(n, _)| *n == node)
        .map_or(0, |(_, c)| *c)
}

/// Runs `n` reads of one row over `client` and returns how many each node served for node
/// `i`'s clients meanwhile, by node id 1..=3.
async fn reads_served(
    cluster: &Cluster,
    i: usize,
    client: &tokio_postgres::Client,
    n: usize,
) -> Vec<u64> {
    let read = client
        .prepare("SELECT v FROM kv WHERE k = $1")
        .await
        .expect("prepare");
    let before = served(cluster, i).await;
    for _ in 0..n {
        let row = client.query_one(&read, &[&1i32]).await.expect("read");
        assert_eq!(row.get::<_, String>(0), "one");
    }
    let after = served(cluster, i).await;
    [1, 2, 3]
        .iter()
        .map(|&n| count_for(&after, n) - count_for(&before, n))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn weights_set_through_the_api_split_reads_and_drain_stops_them() {
    let cluster = Cluster::start(3, &[]).await;
    // An invalid change is refused whole.
    let (status, body) = cluster
        .put(
            1,
            "/v1/dispatcher",
            &serde_json::json!({"scheduler": "wrr", "weights": {"9": 1}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("unknown node"), "{body}");
    let (status, body) = cluster
        .put(
            1,
            "/v1/dispatcher",
            &serde_json::json!({"scheduler": "fastest"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        cluster.get(0, "/v1/dispatcher").await.expect("get")["scheduler"],
        "wlc"
    );

    // Set on node 2, replicated: node 1 dispatches by it.
    let (status, body) = cluster
        .put(
            1,
            "/v1/dispatcher",
            &serde_json::json!({"scheduler": "wrr", "weights": {"1": 3, "2": 2, "3": 1}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    common::eventually(Duration::from_secs(10), "node 1 to install wrr", || async {
        let view = cluster.get(0, "/v1/dispatcher").await.expect("get");
        (view["scheduler"] == "wrr" && view["weights"]["1"] == 3)
            .then_some(())
            .ok_or(view)
    })
    .await;

    let client = cluster.pg_client(0).await;
    client
        .batch_execute(
            "CREATE TABLE kv (k INT PRIMARY KEY, v TEXT); INSERT INTO kv VALUES (1, 'one')",
        )
        .await
        .expect("setup");
    let split = reads_served(&cluster, 0, &client, 1200).await;
    for (got, want) in split.iter().zip([600u64, 400, 200]) {
        assert!(
            got.abs_diff(want) * 100 <= want * 3,
            "wrr 3:2:1 over 1200 reads: {split:?}, expected 600/400/200 ±3%"
        );
    }

    // Drained: node 3 gets no new reads; undrained: it does again.
    let drain = std::process::Command::new(env!("CARGO_BIN_EXE_phalanx"))
        .args(["node", "drain", "3", "--cluster", &cluster.nodes[0].http])
        .output()
        .expect("phalanx node drain");
    assert!(drain.status.success(), "{drain:?}");
    let view = cluster.get(0, "/v1/dispatcher").await.expect("get");
    assert_eq!(view["nodes"][2]["effective_weight"], 0, "{view}");
    assert_eq!(view["nodes"][2]["configured_weight"], 1, "{view}");
    let drained = reads_served(&cluster, 0, &client, 300).await;
    assert_eq!(drained[2], 0, "a drained node served reads: {drained:?}");
    let (status, _) = cluster
        .put(0, "/v1/dispatcher", &serde_json::json!({"undrain": [3]}))
        .await;
    assert_eq!(status, 200);
    let back = reads_served(&cluster, 0, &client, 300).await;
    assert!(back[2] >= 40, "undrained node 3 served {back:?}");

    // The same counters in Prometheus' format and in `phalanx status`.
    let counts = served(&cluster, 0).await;
    let metrics = reqwest::get(format!("http://{}/metrics", cluster.nodes[0].http))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    for (node, requests) in &counts {
        let line = format!("phalanx_dispatch_requests_total{{node=\"{node}\"}} {requests}");
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    assert!(metrics.contains("# TYPE phalanx_dispatch_latency_seconds summary"));

    // Dynamic weights: every node's reported load is shown and scales its weight (in
    // hundredths of the configured weight), the configured one staying as set.
    let (status, body) = cluster
        .put(
            0,
            "/v1/dispatcher",
            &serde_json::json!({"dynamic_weights": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    common::eventually(Duration::from_secs(10), "loads reported", || async {
        let view = cluster.get(0, "/v1/dispatcher").await.expect("get");
        let nodes = view["nodes"].as_array().cloned().unwrap_or_default();
        let ok = nodes.len() == 3
            && nodes.iter().all(|n| n["load"]["in_flight"].is_u64())
            && nodes.iter().zip([3u64, 2, 1]).all(|(n, configured)| {
                n["configured_weight"] == configured
                    && n["effective_weight"]
                        .as_u64()
                        .is_some_and(|w| (1..=configured * 100).contains(&w))
            });
        ok.then_some(()).ok_or(view)
    })
    .await;
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_phalanx"))
        .args(["status", "--cluster", &cluster.nodes[0].http])
        .output()
        .expect("phalanx status");
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(table.contains("scheduler wrr"), "{table}");
    for (node, requests) in &counts {
        assert!(
            table.lines().any(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                words.first() == Some(&node.to_string().as_str())
                    && words.get(3) == Some(&requests.to_string().as_str())
            }),
            "node {node} with {requests} requests in:\n{table}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_node_leaves_the_pool_and_no_read_fails() {
    let cluster = Cluster::start(3, &[]).await;
    let leader = cluster
        .wait_for_leader(&cluster.all(), Duration::from_secs(30))
        .await;
    // Stop a follower; read through the other follower (or the leader).
    let stopped = (0..3).find(|&i| i != leader).expect("a follower");
    let reader = (0..3).find(|&i| i != stopped).expect("a reader");
    let stopped_id = stopped as u64 + 1;
    let client = cluster.pg_client(reader).await;
    client
        .batch_execute("CREATE TABLE kv (k INT PRIMARY KEY, v INT); INSERT INTO kv VALUES (1, 7)")
        .await
        .expect("setup");

    let reads = {
        let client = cluster.pg_client(reader).await;
        tokio::spawn(async move {
            let mut done = 0u32;
            let started = Instant::now();
            // Bounded in count and time.
            while done < 3000 && started.elapsed() < Duration::from_secs(20) {
                let row = client
                    .query_one("SELECT v FROM kv WHERE k = 1", &[])
                    .await
                    .unwrap_or_else(|e| panic!("read {done} failed: {e:?}"));
                assert_eq!(row.get::<_, i32>(0), 7);
                done += 1;
            }
            done
        })
    };
    common::eventually(
        Duration::from_secs(10),
        "the node to serve reads",
        || async {
            (count_for(&served(&cluster, reader).await, stopped_id) > 20)
                .then_some(())
                .ok_or("not yet")
        },
    )
    .await;

    cluster.signal(stopped, nix::sys::signal::Signal::SIGSTOP);
    let stopped_at = Instant::now();
    common::eventually(
        Duration::from_secs(5),
        "the stopped node to leave",
        || async {
            (!healthy(&cluster, reader, stopped_id).await)
                .then_some(())
                .ok_or("not yet")
        },
    )
    .await;
    let ejected_after = stopped_at.elapsed();
    assert!(
        ejected_after < Duration::from_millis(1000),
        "left the read pool after {ejected_after:?}"
    );
    let while_stopped = count_for(&served(&cluster, reader).await, stopped_id);

    cluster.signal(stopped, nix::sys::signal::Signal::SIGCONT);
    common::eventually(Duration::from_secs(10), "the node to return", || async {
        healthy(&cluster, reader, stopped_id)
            .await
            .then_some(())
            .ok_or("not yet")
    })
    .await;
    common::eventually(
        Duration::from_secs(10),
        "reads on the returned node",
        || async {
            (count_for(&served(&cluster, reader).await, stopped_id) > while_stopped)
                .then_some(())
                .ok_or("not yet")
        },
    )
    .await;
    let done = reads.await.expect("reader task");
    assert!(done > 100, "only {done} reads ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_on_any_node_see_every_acknowledged_write() {
    let cluster = Cluster::start(3, &["--dispatcher-scheduler", "rr"]).await;
    let writer = cluster.pg_client(0).await;
    writer
        .batch_execute(
            "CREATE TABLE counter (id INT PRIMARY KEY, n INT); INSERT INTO counter VALUES (1, 0)",
        )
        .await
        .expect("setup");
    let readers = [cluster.pg_client(1).await, cluster.pg_client(2).await];
    for n in 1..=150i32 {
        writer
            .execute("UPDATE counter SET n = $1 WHERE id = 1", &[&n])
            .await
            .expect("write");
        // Started after the write was acknowledged: must see it, wherever it is served.
        for reader in &readers {
            let row = reader
                .query_one("SELECT n FROM counter WHERE id = 1", &[])
                .await
                .expect("read");
            assert_eq!(row.get::<_, i32>(0), n, "a stale read");
        }
    }
    // The reads really were spread: every node served some for node 2's clients.
    let counts = served(&cluster, 1).await;
    for node in [1, 2, 3] {
        assert!(count_for(&counts, node) > 20, "{counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_routing_rule_sends_matching_reads_only_to_the_tagged_node() {
    let cluster = Cluster::start(3, &[]).await;
    let (status, body) = cluster
        .put(
            0,
            "/v1/dispatcher",
            &serde_json::json!({
                "scheduler": "rr",
                "tags": {"3": ["reporting"]},
                "rules": [{"name": "reports", "tables": ["report_daily"], "target": {"tag": "reporting"}}],
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let client = cluster.pg_client(0).await;
    client
        .batch_execute(
            "CREATE TABLE report_daily (day INT PRIMARY KEY, total INT); \
             INSERT INTO report_daily VALUES (1, 10); \
             CREATE TABLE kv (k INT PRIMARY KEY, v TEXT); INSERT INTO kv VALUES (1, 'one')",
        )
        .await
        .expect("setup");
    let before = served(&cluster, 0).await;
    for _ in 0..100 {
        let row = client
            .query_one("SELECT total FROM report_daily WHERE day = 1", &[])
            .await
            .expect("report read");
        assert_eq!(row.get::<_, i32>(0), 10);
    }
    let after = served(&cluster, 0).await;
    let delta: Vec<u64> = [1, 2, 3]
        .iter()
        .map(|&n| count_for(&after, n) - count_for(&before, n))
        .collect();
    assert_eq!(delta, [0, 0, 100], "matching reads went elsewhere");
    // Other reads still spread over every node.
    let others = reads_served(&cluster, 0, &client, 90).await;
    assert!(others.iter().all(|&n| n >= 20), "{others:?}");
    let status = cluster.status(0).await.expect("status");
    let rule = &status["dispatcher"]["rules"][0];
    assert_eq!(rule["hits"], 100, "{}", status["dispatcher"]);
    // The rule's own traffic: its 100 reads, none in flight or failed, each request's bytes
    // (the SQL text) and each one-row result's (one 8-byte integer).
    assert_eq!(rule["requests"], 100, "{rule}");
    assert_eq!(rule["in_flight"], 0, "{rule}");
    assert_eq!(rule["errors"], 0, "{rule}");
    let sql_len = "SELECT total FROM report_daily WHERE day = 1".len() as u64;
    assert_eq!(rule["bytes_in"].as_u64(), Some(100 * sql_len), "{rule}");
    assert_eq!(rule["bytes_out"].as_u64(), Some(100 * 8), "{rule}");
    assert!(rule["latency_p50_us"].as_u64().is_some(), "{rule}");
    let metrics = reqwest::get(format!("http://{}/metrics", cluster.nodes[0].http))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let name = rule["name"].as_str().expect("rule name");
    let line = format!("phalanx_dispatch_rule_requests_total{{rule=\"{name}\"}} 100");
    assert!(
        metrics.lines().any(|l| l == line),
        "{line} missing in:\n{metrics}"
    );
    // A rule naming a tag no node has is refused.
    let (status, body) = cluster
        .put(
            0,
            "/v1/dispatcher",
            &serde_json::json!({"rules": [{"name": "x", "target": {"tag": "nowhere"}}]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drained_leader_hands_leadership_away_and_keeps_it_away() {
    let cluster = Cluster::start(3, &[]).await;
    let leader = cluster
        .wait_for_leader(&cluster.all(), Duration::from_secs(30))
        .await;
    let leader_id = leader as u64 + 1;
    // Drained through the API (not the CLI): the node itself gives leadership up.
    let (status, body) = cluster
        .put(
            leader,
            "/v1/dispatcher",
            &serde_json::json!({"drain": [leader_id]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let next = cluster
        .wait_for_leader_other_than(leader, Duration::from_secs(10))
        .await;
    // Leadership pushed back onto the drained node is handed away again: the transfer to it
    // starts one term, its hand-off another, and the leader is then someone else.
    let term_before = cluster.status(next).await.expect("status")["term"]
        .as_u64()
        .expect("term");
    let (status, body) = cluster
        .post(
            next,
            "/v1/leader/transfer",
            &serde_json::json!({"to": leader_id}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    common::eventually(
        Duration::from_secs(10),
        "the drained node to take leadership and give it up",
        || async {
            let status = cluster.status(leader).await.ok_or("no status")?;
            let term = status["term"].as_u64().unwrap_or(0);
            let leading = status["leader"].as_u64();
            (term >= term_before + 2 && leading.is_some() && leading != Some(leader_id))
                .then_some(())
                .ok_or(format!("term {term}, leader {leading:?}"))
        },
    )
    .await;
    let settled = cluster
        .wait_for_leader_other_than(leader, Duration::from_secs(10))
        .await;
    // Undrained, it may lead again: a transfer to it sticks.
    let (status, body) = cluster
        .put(
            settled,
            "/v1/dispatcher",
            &serde_json::json!({"undrain": [leader_id]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    common::eventually(
        Duration::from_secs(10),
        "node undrained everywhere",
        || async {
            let view = cluster
                .get(leader, "/v1/dispatcher")
                .await
                .ok_or("no view")?;
            let drained = view["drained"].as_array().map(Vec::len);
            (drained == Some(0)).then_some(()).ok_or("still drained")
        },
    )
    .await;
    let (status, body) = cluster
        .post(
            settled,
            "/v1/leader/transfer",
            &serde_json::json!({"to": leader_id}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The transfer takes effect asynchronously: wait for the node to lead, then check it
    // keeps leading past the one-second hand-off period.
    common::eventually(
        Duration::from_secs(10),
        "the undrained node to lead",
        || async {
            let status = cluster.status(leader).await.ok_or("no status")?;
            (status["leader"].as_u64() == Some(leader_id))
                .then_some(())
                .ok_or("not yet")
        },
    )
    .await;
    let term = cluster.status(leader).await.expect("status")["term"].as_u64();
    tokio::time::sleep(2 * Duration::from_secs(1)).await;
    let status = cluster.status(leader).await.expect("status");
    assert_eq!(
        (status["leader"].as_u64(), status["term"].as_u64()),
        (Some(leader_id), term),
        "an undrained node keeps the leadership it is given"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bounded_reads_skip_nodes_staler_than_the_bound() {
    let cluster = Cluster::start(3, &["--dispatcher-scheduler", "rr"]).await;
    let leader = cluster
        .wait_for_leader(&cluster.all(), Duration::from_secs(30))
        .await;
    let leader_id = leader as u64 + 1;
    let reader = (0..3).find(|&i| i != leader).expect("a follower");
    let client = cluster.pg_client(reader).await;
    client
        .batch_execute(
            "CREATE TABLE kv (k INT PRIMARY KEY, v TEXT); INSERT INTO kv VALUES (1, 'one')",
        )
        .await
        .expect("setup");
    // The follower's staleness figures need a probe round that reached every node.
    common::eventually(Duration::from_secs(10), "probes of every node", || async {
        let status = cluster.status(reader).await.ok_or("no status")?;
        let probed = status["dispatcher"]["health"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|h| h["applied_index"].as_u64().is_some())
            .count();
        (probed >= 2).then_some(()).ok_or("not yet")
    })
    .await;

    // A 0 ms bound: only the leader, which holds every committed write, is fresh enough.
    client
        .batch_execute("SET phalanx.read_consistency = 'bounded'; SET phalanx.max_lag_ms = 0")
        .await
        .expect("set bounded");
    let strict = reads_served(&cluster, reader, &client, 60).await;
    let expected: Vec<u64> = (1..=3)
        .map(|n| if n == leader_id { 60 } else { 0 })
        .collect();
    assert_eq!(strict, expected, "a 0 ms bound served by a follower");

    // A generous bound: every node qualifies and rr spreads the reads evenly.
    client
        .batch_execute("SET phalanx.max_lag_ms = 60000")
        .await
        .expect("set bound");
    let loose = reads_served(&cluster, reader, &client, 60).await;
    assert_eq!(loose, [20, 20, 20], "rr over three fresh nodes");

    // Over HTTP the same: with a 0 ms bound the leader answers.
    for _ in 0..5 {
        let (status, body) = cluster
            .post(
                reader,
                "/v1/query",
                &serde_json::json!({"sql": "SELECT v FROM kv", "consistency": "bounded", "max_lag_ms": 0}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["node"].as_u64(), Some(leader_id), "{body}");
    }
    // An invalid bound is refused with PostgreSQL's invalid_parameter_value.
    let bad = client
        .batch_execute("SET phalanx.max_lag_ms = 'soon'")
        .await
        .expect_err("invalid bound");
    assert_eq!(bad.code().map(|c| c.code()), Some("22023"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn source_hashing_keeps_one_client_address_on_one_node() {
    // `sh` hashes the client's address by default: every connection from this host (all on
    // 127.0.0.1), whatever its session, reads from the same node.
    let cluster = Cluster::start(3, &["--dispatcher-scheduler", "sh"]).await;
    let setup = cluster.pg_client(0).await;
    setup
        .batch_execute(
            "CREATE TABLE kv (k INT PRIMARY KEY, v TEXT); INSERT INTO kv VALUES (1, 'one')",
        )
        .await
        .expect("setup");
    let before = served(&cluster, 0).await;
    for _ in 0..6 {
        let client = cluster.pg_client(0).await;
        for _ in 0..10 {
            let row = client
                .query_one("SELECT v FROM kv WHERE k = 1", &[])
                .await
                .expect("read");
            assert_eq!(row.get::<_, String>(0), "one");
        }
    }
    let after = served(&cluster, 0).await;
    let delta: Vec<u64> = [1, 2, 3]
        .iter()
        .map(|&n| count_for(&after, n) - count_for(&before, n))
        .collect();
    assert_eq!(delta.iter().sum::<u64>(), 60, "{delta:?}");
    assert!(
        delta.contains(&60),
        "six connections from one address spread over nodes: {delta:?}"
    );
}
