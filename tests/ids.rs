//! Snowflake IDs end to end: real node processes, IDs from `GET /v1/ids` and from
//! `snowflake_id()` over the PostgreSQL protocol, a `DEFAULT (snowflake_id())` column written
//! through followers, and restarts (crash and clean stop) that must not reissue an ID.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::Cluster;
use serde_json::{Value, json};

/// The default layout: 41 bits of ms since 2024-01-01T00:00:00Z, 5 + 5 + 12.
const EPOCH_MS: u64 = 1_704_067_200_000;
const DATACENTER: u64 = 3;
const CLIENTS_PER_NODE: usize = 8;
const IDS_PER_CLIENT: usize = 100_000;
const BATCH: usize = 10_000;

/// The first test saturates three generators on a 2-core machine; run alone, so the other's
/// writes do not compete with it for the CPU (and time out instead of testing IDs).
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn worker(id: u64) -> u64 {
    (id >> 12) & 31
}
fn datacenter(id: u64) -> u64 {
    (id >> 17) & 31
}
fn timestamp_ms(id: u64) -> u64 {
    (id >> 22) + EPOCH_MS
}
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// One `GET /v1/ids?query` from node `i`: the status and body (0 if the node is unreachable).
async fn get_ids(cluster: &Cluster, i: usize, query: &str) -> (u16, Value) {
    let url = format!("http://{}/v1/ids{query}", cluster.nodes[i].http);
    match cluster.http.get(url).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.expect("JSON body"))
        }
        Err(e) => (0, json!({"transport_error": e.to_string()})),
    }
}

/// `count` IDs from node `i` in one request, checked to be strictly increasing.
async fn batch(cluster: &Cluster, i: usize, count: usize) -> Vec<u64> {
    let (status, body) = get_ids(cluster, i, &format!("?count={count}")).await;
    assert_eq!(status, 200, "node {}: {body}", i + 1);
    let ids: Vec<u64> = serde_json::from_value(body).expect("an array of IDs");
    assert_eq!(ids.len(), count);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "a batch increases");
    ids
}

/// `IDS_PER_CLIENT` IDs from one PostgreSQL query on node `i` (one row each).
async fn ids_over_pg(cluster: &Cluster, i: usize) -> Vec<u64> {
    let client = cluster.pg_client(i).await;
    let sql = format!(
        "SELECT snowflake_id() FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {IDS_PER_CLIENT}) SELECT x FROM c)"
    );
    let rows = client
        .query(sql.as_str(), &[])
        .await
        .expect("SELECT snowflake_id()");
    assert_eq!(rows.len(), IDS_PER_CLIENT);
    // `get::<i64>` only accepts int8: the column is typed as PostgreSQL's bigint.
    rows.iter()
        .map(|row| u64::try_from(row.get::<_, i64>(0)).expect("non-negative"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ids_are_unique_across_the_cluster_and_carry_each_nodes_worker() {
    let _alone = ONE_CLUSTER_AT_A_TIME.lock().await;
    let started_ms = now_ms();
    let cluster = Arc::new(Cluster::start(3, &["--datacenter-id", "3"]).await);

    // 3 nodes × 8 concurrent clients × 100,000 IDs through /v1/ids, then the same through
    // PostgreSQL (one query per client).
    let mut all = Vec::with_capacity(2 * 3 * CLIENTS_PER_NODE * IDS_PER_CLIENT);
    let mut max_by_node = [0u64; 3];
    for surface in ["http", "pg"] {
        let mut clients = Vec::new();
        for i in 0..3 {
            for _ in 0..CLIENTS_PER_NODE {
                let c = cluster.clone();
                clients.push(tokio::spawn(async move {
                    if surface == "pg" {
                        return (i, ids_over_pg(&c, i).await);
                    }
                    let mut ids = Vec::with_capacity(IDS_PER_CLIENT);
                    for _ in 0..IDS_PER_CLIENT / BATCH {
                        ids.extend(batch(&c, i, BATCH).await);
                    }
                    (i, ids)
                }));
            }
        }
        for client in clients {
            let (i, ids) = client.await.expect("client task");
            assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "one client's IDs increase"
            );
            for &id in &ids {
                assert_eq!(
                    (worker(id), datacenter(id)),
                    (i as u64 + 1, DATACENTER),
                    "ID {id} from node {} over {surface}",
                    i + 1
                );
            }
            max_by_node[i] = max_by_node[i].max(ids[ids.len() - 1]);
            all.extend(ids);
        }
    }
    let finished_ms = now_ms();
    let total = all.len();
    assert_eq!(total, 2 * 3 * CLIENTS_PER_NODE * IDS_PER_CLIENT);
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), total, "duplicate IDs across the cluster");
    let (first, last) = (timestamp_ms(all[0]), timestamp_ms(all[total - 1]));
    assert!(
        first + 1_000 >= started_ms && last <= finished_ms + 2_000,
        "timestamps {first}..{last} outside the run {started_ms}..{finished_ms}"
    );
    for i in 0..3 {
        let status = cluster.status(i).await.expect("status");
        let issued = status["ids"]["issued"].as_u64().expect("issued");
        assert!(
            issued >= 2 * (CLIENTS_PER_NODE * IDS_PER_CLIENT) as u64,
            "{status}"
        );
        assert_eq!(status["ids"]["worker"], json!(i + 1));
        assert_eq!(status["ids"]["clock_rollback_refusals"], json!(0));
    }

    // Bad counts are refused with the API's error shape; no count means one ID.
    for query in [
        "?count=0",
        "?count=10001",
        "?count=ten",
        "?count=5&colour=red",
    ] {
        let (status, body) = get_ids(&cluster, 0, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{query}: {body}");
    }
    let (status, body) = get_ids(&cluster, 0, "").await;
    assert_eq!((status, body.as_array().map(Vec::len)), (200, Some(1)));

    // Restarts never reissue: node 2 after a clean stop, node 3 after kill -9 (its lease,
    // not its last ID, is on disk). Each resumes above everything it issued.
    let mut cluster = Arc::into_inner(cluster).expect("no client holds the cluster");
    cluster.stop(1);
    cluster.kill9(2);
    for i in [1, 2] {
        cluster.start_node(i);
        let c = &cluster;
        let resumed = common::eventually(
            Duration::from_secs(30),
            &format!("node {} serving IDs after its restart", i + 1),
            || async move {
                match get_ids(c, i, "?count=10000").await {
                    (200, body) => Ok(serde_json::from_value::<Vec<u64>>(body).expect("IDs")),
                    other => Err(other),
                }
            },
        )
        .await;
        assert!(
            resumed[0] > max_by_node[i],
            "node {} resumed at {} below its last ID {}",
            i + 1,
            resumed[0],
            max_by_node[i]
        );
        assert_eq!(worker(resumed[0]), i as u64 + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snowflake_default_column_holds_the_same_ids_on_every_node() {
    let _alone = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = Cluster::start(3, &[]).await;
    let leader = cluster
        .wait_for_leader(&cluster.all(), Duration::from_secs(30))
        .await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let leader_id = leader as u64 + 1;

    // The column, created and written through followers: over HTTP (SQLite dialect,
    // which wants the parentheses) and over PostgreSQL.
    cluster
        .execute_ok(
            followers[0],
            "CREATE TABLE t(id BIGINT PRIMARY KEY NOT NULL DEFAULT (snowflake_id()), v TEXT)",
            json!([]),
        )
        .await;
    let mut returned = Vec::new();
    for n in 0..20 {
        let body = cluster
            .execute_ok(
                followers[0],
                "INSERT INTO t(v) VALUES (?) RETURNING id",
                json!([format!("http {n}")]),
            )
            .await;
        returned.push(body["results"][0]["rows"][0][0].as_u64().expect("id"));
    }
    let pg = cluster.pg_client(followers[1]).await;
    for n in 0..20 {
        let row = pg
            .query_one(
                "INSERT INTO t(v) VALUES ($1) RETURNING id",
                &[&format!("pg {n}")],
            )
            .await
            .expect("insert over pg");
        returned.push(u64::try_from(row.get::<_, i64>(0)).expect("non-negative"));
    }
    let (status, body) = cluster
        .execute(
            followers[1],
            &[
                ("INSERT INTO t(v) SELECT 'bulk ' || x FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 500) SELECT x FROM c)", json!([])),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Every node holds the same 540 rows with the same IDs, all issued by the leader.
    let index = cluster.max_applied(&cluster.all()).await;
    let mut contents = Vec::new();
    for i in 0..3 {
        cluster
            .wait_applied(i, index, Duration::from_secs(30))
            .await;
        let (status, rows) = cluster
            .query(i, "SELECT id, v FROM t ORDER BY id", "any")
            .await;
        assert_eq!(status, 200, "{rows}");
        contents.push(rows["rows"].clone());
    }
    assert_eq!(contents[0], contents[1], "node 1 and node 2 differ");
    assert_eq!(contents[0], contents[2], "node 1 and node 3 differ");
    let ids: Vec<u64> = contents[0]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| row[0].as_u64().expect("id"))
        .collect();
    assert_eq!(ids.len(), 540);
    for id in &returned {
        assert!(ids.contains(id), "RETURNING gave {id}, which no node holds");
    }
    assert!(ids.iter().all(|&id| worker(id) == leader_id), "{ids:?}");
    let still_leader = cluster
        .wait_for_leader(&cluster.all(), Duration::from_secs(5))
        .await;
    assert_eq!(still_leader, leader, "leadership moved during the test");

    // snowflake_decode through a follower's read path.
    let (status, body) = cluster
        .query(
            followers[0],
            "SELECT snowflake_decode(min(id)) ->> 'worker', snowflake_decode(min(id)) ->> 'datacenter' FROM t",
            "linearizable",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0], json!([leader_id, 0]));
}
