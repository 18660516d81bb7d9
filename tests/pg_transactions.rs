//! Explicit transactions over the PostgreSQL protocol, against real node processes: BEGIN ...
//! COMMIT from a follower runs on the leader and is invisible until it commits; savepoints,
//! failed-transaction state and ReadyForQuery status as in PostgreSQL; a leader killed
//! mid-transaction leaves nothing of it anywhere; an idle or abandoned transaction does not
//! block the other writers for good.

mod common;

use std::time::Duration;

use common::pg::{RawPg, cancel_until_finished, code, connect, follower, rows};
use common::{Cluster, eventually};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactions_on_a_follower_commit_roll_back_and_isolate() {
    let cluster = Cluster::start(3, &[]).await;
    let node = follower(&cluster).await;
    let other = (node + 1) % 3;
    let (mut client, _c) = connect(&cluster, node).await.expect("connect");
    let (observer, _o) = connect(&cluster, other).await.expect("connect observer");
    client
        .batch_execute(
            "CREATE TABLE acct(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
             INSERT INTO acct VALUES (1, 100), (2, 100);",
        )
        .await
        .expect("setup");

    // A transfer: its reads see its own writes, nobody else sees them before COMMIT.
    let txn = client.transaction().await.expect("begin");
    txn.execute(
        "UPDATE acct SET balance = balance - 30 WHERE id = $1",
        &[&1i32],
    )
    .await
    .expect("debit");
    let own: i32 = txn
        .query_one("SELECT balance FROM acct WHERE id = 1", &[])
        .await
        .expect("own read")
        .get(0);
    assert_eq!(own, 70, "a transaction sees its own write");
    let outside: i32 = observer
        .query_one("SELECT balance FROM acct WHERE id = 1", &[])
        .await
        .expect("observer read")
        .get(0);
    assert_eq!(outside, 100, "an uncommitted write is invisible elsewhere");
    txn.execute(
        "UPDATE acct SET balance = balance + 30 WHERE id = $1",
        &[&2i32],
    )
    .await
    .expect("credit");
    txn.commit().await.expect("commit");
    let after = observer
        .simple_query("SELECT balance FROM acct ORDER BY id")
        .await
        .expect("read after commit");
    assert_eq!(
        rows(&after),
        vec![vec![Some("70".into())], vec![Some("130".into())]]
    );

    // ROLLBACK leaves nothing behind.
    let txn = client.transaction().await.expect("begin");
    txn.execute("INSERT INTO acct VALUES (3, 1)", &[])
        .await
        .expect("insert");
    txn.rollback().await.expect("rollback");
    let count: i64 = observer
        .query_one("SELECT count(*) FROM acct", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 2, "a rolled-back insert must not exist");

    // Savepoints: ROLLBACK TO undoes only what came after it.
    client
        .batch_execute(
            "BEGIN;
             INSERT INTO acct VALUES (10, 1);
             SAVEPOINT s1;
             INSERT INTO acct VALUES (11, 1);
             SAVEPOINT s2;
             DELETE FROM acct WHERE id < 10;
             ROLLBACK TO SAVEPOINT s1;
             INSERT INTO acct VALUES (12, 1);
             RELEASE s1;
             COMMIT;",
        )
        .await
        .expect("savepoint script");
    let ids = observer
        .simple_query("SELECT id FROM acct ORDER BY id")
        .await
        .expect("ids");
    let ids: Vec<String> = rows(&ids)
        .into_iter()
        .filter_map(|r| r[0].clone())
        .collect();
    assert_eq!(ids, ["1", "2", "10", "12"]);

    // Concurrent transfers from two nodes, in opposite directions: each waits for the rows the
    // other changed, as under PostgreSQL's row locks; a cycle of waits is a deadlock (40P01,
    // the transaction rolled back) which the worker retries. The total is conserved.
    let mut tasks = Vec::new();
    for (worker, at) in [node, other, node, other].into_iter().enumerate() {
        let (mut c, conn) = connect(&cluster, at).await.expect("connect worker");
        tasks.push(tokio::spawn(async move {
            for round in 0..15i64 {
                let (from, to) = if (round + worker as i64) % 2 == 0 {
                    (1i32, 2i32)
                } else {
                    (2, 1)
                };
                for attempt in 0.. {
                    assert!(attempt < 50, "a transfer kept failing");
                    let t = c.transaction().await.expect("begin");
                    let moved = async {
                        t.execute(
                            "UPDATE acct SET balance = balance - 1 WHERE id = $1",
                            &[&from],
                        )
                        .await?;
                        t.execute(
                            "UPDATE acct SET balance = balance + 1 WHERE id = $1",
                            &[&to],
                        )
                        .await?;
                        t.commit().await
                    }
                    .await;
                    match moved {
                        Ok(()) => break,
                        Err(e) if code(&e) == "40P01" => continue,
                        Err(e) => panic!("transfer: {e}"),
                    }
                }
            }
            drop(conn);
        }));
    }
    for task in tasks {
        task.await.expect("worker");
    }
    let total = observer
        .simple_query("SELECT sum(balance) FROM acct WHERE id IN (1, 2)")
        .await
        .expect("total");
    assert_eq!(
        rows(&total),
        vec![vec![Some("200".into())]],
        "transfers must conserve the total"
    );
    cluster.assert_identical().await;
}

/// The protocol-level behaviour psql and drivers rely on: status bytes, 25P02, warnings,
/// tags, and a COMMIT that fails returning the session to idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transaction_states_and_errors_match_postgres() {
    let cluster = Cluster::start(3, &[]).await;
    let node = follower(&cluster).await;
    let mut pg = RawPg::connect(&cluster.nodes[node].pg);
    let setup = pg.query(
        "CREATE TABLE parent(id INTEGER PRIMARY KEY);
         CREATE TABLE child(id INTEGER PRIMARY KEY,
                            parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);
         CREATE TABLE u(k TEXT PRIMARY KEY)",
    );
    assert!(setup.errors.is_empty(), "{setup:?}");

    let begin = pg.query("BEGIN");
    assert_eq!(
        (begin.tags.as_slice(), begin.status),
        (&["BEGIN".to_owned()][..], 'T')
    );
    let again = pg.query("BEGIN");
    assert_eq!(
        (again.notices.as_slice(), again.status),
        (&["25001".to_owned()][..], 'T')
    );
    assert_eq!(pg.query("INSERT INTO u VALUES ('a')").status, 'T');
    let duplicate = pg.query("INSERT INTO u VALUES ('a')");
    assert_eq!(
        (duplicate.errors.as_slice(), duplicate.status),
        (&["23505".to_owned()][..], 'E')
    );
    let ignored = pg.query("SELECT 1");
    assert_eq!(
        (ignored.errors.as_slice(), ignored.status),
        (&["25P02".to_owned()][..], 'E')
    );
    let commit = pg.query("COMMIT");
    assert_eq!(
        (commit.tags.as_slice(), commit.status),
        (&["ROLLBACK".to_owned()][..], 'I'),
        "COMMIT of a failed transaction rolls back"
    );
    let none = pg.query("SELECT count(*) FROM u");
    assert!(none.errors.is_empty() && none.status == 'I', "{none:?}");

    // ROLLBACK TO SAVEPOINT leaves the failed state.
    let script =
        pg.query("BEGIN; INSERT INTO u VALUES ('b'); SAVEPOINT s; INSERT INTO u VALUES ('b')");
    assert_eq!(
        (script.errors.as_slice(), script.status),
        (&["23505".to_owned()][..], 'E')
    );
    let recovered = pg.query("ROLLBACK TO SAVEPOINT s");
    assert_eq!(recovered.status, 'T', "{recovered:?}");
    let missing = pg.query("RELEASE SAVEPOINT nope");
    assert_eq!(
        (missing.errors.as_slice(), missing.status),
        (&["3B001".to_owned()][..], 'E')
    );
    assert_eq!(pg.query("ROLLBACK TO s").status, 'T');
    let done = pg.query("INSERT INTO u VALUES ('c'); COMMIT");
    assert_eq!(
        (done.tags.as_slice(), done.status),
        (&["INSERT 0 1".to_owned(), "COMMIT".to_owned()][..], 'I')
    );
    let kept = pg.query("SELECT k FROM u ORDER BY k");
    assert_eq!(kept.tags, ["SELECT 2"], "b and c committed: {kept:?}");

    // A deferred foreign key is checked at COMMIT, which fails and ends the transaction.
    let orphan = pg.query("BEGIN; INSERT INTO child VALUES (1, 42)");
    assert_eq!(orphan.status, 'T', "{orphan:?}");
    let refused = pg.query("COMMIT");
    assert_eq!(
        (refused.errors.as_slice(), refused.status),
        (&["23503".to_owned()][..], 'I')
    );
    let children = pg.query("SELECT * FROM child");
    assert_eq!(children.tags, ["SELECT 0"]);

    // Outside a transaction: warnings, and errors for savepoints.
    let stray = pg.query("COMMIT");
    assert_eq!(
        (stray.notices.as_slice(), stray.status),
        (&["25P01".to_owned()][..], 'I')
    );
    let stray = pg.query("SAVEPOINT x");
    assert_eq!(stray.errors, ["25P01"]);

    // A read-only transaction refuses writes.
    let read_only = pg.query("START TRANSACTION READ ONLY; INSERT INTO u VALUES ('z')");
    assert_eq!(
        (read_only.errors.as_slice(), read_only.status),
        (&["25006".to_owned()][..], 'E')
    );
    assert_eq!(pg.query("ROLLBACK").status, 'I');

    // A statement that rolls back the whole transaction: 40001, then only ROLLBACK.
    let rolled =
        pg.query("BEGIN; INSERT INTO u VALUES ('d'); INSERT OR ROLLBACK INTO u VALUES ('d')");
    assert_eq!(
        (rolled.errors.as_slice(), rolled.status),
        (&["40001".to_owned()][..], 'E')
    );
    assert_eq!(pg.query("ROLLBACK").status, 'I');
    let after = pg.query("SELECT k FROM u WHERE k = 'd'");
    assert_eq!(
        after.tags,
        ["SELECT 0"],
        "nothing of the rolled-back transaction"
    );
    // And writes go on.
    let (status, body) = cluster
        .execute(node, &[("INSERT INTO u VALUES ('e')", json!([]))])
        .await;
    assert_eq!(status, 200, "{body}");
}

/// A leader killed (kill -9) in the middle of a transaction: the client gets 40001, nothing of
/// the transaction exists on any node, and the session goes on with the new leader; a client
/// listing every node (`host=a,b,c`) that lost its node reconnects to a survivor and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_leader_mid_transaction_loses_it_cleanly() {
    let mut cluster = Cluster::start(3, &[]).await;
    let leader = cluster
        .wait_for_leader(&cluster.all(), Duration::from_secs(30))
        .await;
    let node = (leader + 1) % 3;
    let (mut client, _c) = connect(&cluster, node).await.expect("connect");
    client
        .batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        .await
        .expect("create");

    // A second client lists every node (`host=a,b,c`), the leader first, so it lands there.
    let mut everyone = tokio_postgres::Config::new();
    everyone
        .user("tester")
        .dbname("phalanx")
        .connect_timeout(Duration::from_secs(5));
    for i in std::iter::once(leader).chain(cluster.all().into_iter().filter(|&i| i != leader)) {
        let (host, port) = cluster.nodes[i].pg.split_once(':').expect("host:port");
        everyone.host(host).port(port.parse().expect("port"));
    }
    let (on_leader, connection) = everyone
        .connect(tokio_postgres::NoTls)
        .await
        .expect("multi-host");
    tokio::spawn(connection);
    on_leader
        .batch_execute("INSERT INTO t VALUES (10, 'via the leader')")
        .await
        .expect("write through the first host");

    let txn = client.transaction().await.expect("begin");
    txn.execute("INSERT INTO t VALUES (1, 'lost')", &[])
        .await
        .expect("insert before the kill");
    cluster.kill9(leader);
    let next = txn.execute("INSERT INTO t VALUES (2, 'lost')", &[]).await;
    let error = next.expect_err("the transaction's leader is gone");
    assert_eq!(code(&error), "40001", "{error}");
    drop(txn); // ROLLBACK

    // The session goes on: a new transaction commits on the new leader.
    let survivors: Vec<usize> = cluster.all().into_iter().filter(|&i| i != leader).collect();
    cluster
        .wait_for_leader(&survivors, Duration::from_secs(30))
        .await;
    let txn = client.transaction().await.expect("begin again");
    txn.execute("INSERT INTO t VALUES (3, 'kept')", &[])
        .await
        .expect("insert on the new leader");

    txn.commit().await.expect("commit on the new leader");
    // The multi-host client lost its node; connecting again with the same host list skips the
    // dead one and goes on.
    assert!(
        on_leader.batch_execute("SELECT 1").await.is_err(),
        "the connection to the killed node is gone"
    );
    let (again, connection) = everyone
        .connect(tokio_postgres::NoTls)
        .await
        .expect("reconnect");
    tokio::spawn(connection);
    again
        .batch_execute("INSERT INTO t VALUES (11, 'after reconnect')")
        .await
        .expect("write after reconnecting");

    // Restart the old leader: every node holds exactly the committed row.
    cluster.start_node(leader);
    let index = cluster.max_applied(&survivors).await;
    for i in cluster.all() {
        cluster
            .wait_applied(i, index, Duration::from_secs(30))
            .await;
    }
    for i in cluster.all() {
        let (status, body) = cluster
            .query(i, "SELECT id, v FROM t ORDER BY id", "any")
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["rows"],
            json!([[3, "kept"], [10, "via the leader"], [11, "after reconnect"]]),
            "node {}",
            i + 1
        );
    }
}

/// An idle transaction is rolled back after `txn_idle_timeout_ms`, releasing the writers it
/// blocked; its session then gets 40001. A client that disconnects mid-transaction releases
/// them at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_and_abandoned_transactions_release_the_writers() {
    let cluster = Cluster::start(3, &["--txn-idle-timeout-ms", "1500"]).await;
    let node = follower(&cluster).await;
    let (client, _c) = connect(&cluster, node).await.expect("connect");
    client
        .batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
        .await
        .expect("create");

    // Idle: a write to the row the transaction holds completes once the timeout rolls the
    // holder back.
    client
        .batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .expect("open a transaction");
    let (status, body) = cluster
        .execute(node, &[("INSERT INTO t VALUES (1)", json!([]))])
        .await;
    assert_eq!(
        status, 200,
        "the blocked write succeeds after the idle timeout: {body}"
    );
    let error = client
        .batch_execute("INSERT INTO t VALUES (3)")
        .await
        .expect_err("the idle transaction was rolled back");
    assert_eq!(code(&error), "40001", "{error}");
    client.batch_execute("ROLLBACK").await.expect("rollback");

    // Abandoned: a client gone mid-transaction releases its rows without waiting.
    let (holder, holder_connection) = connect(&cluster, node).await.expect("connect holder");
    holder
        .batch_execute("BEGIN; INSERT INTO t VALUES (4)")
        .await
        .expect("open a transaction");
    drop(holder);
    let _ = holder_connection.await;
    let started = std::time::Instant::now();
    let (status, body) = cluster
        .execute(node, &[("INSERT INTO t VALUES (4)", json!([]))])
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "a closed session's transaction must be rolled back at once, not after the idle \
         timeout (took {:?})",
        started.elapsed()
    );
    eventually(Duration::from_secs(10), "ids 1 and 4 only", || async {
        let (_, body) = cluster
            .query(node, "SELECT id FROM t ORDER BY id", "linearizable")
            .await;
        if body["rows"] == json!([[1], [4]]) {
            Ok(())
        } else {
            Err(body)
        }
    })
    .await;
}

/// CancelRequest: a statement waiting for a row another session's transaction holds stops at once with
/// 57014, and never runs afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canceled_statement_stops_waiting_and_never_runs() {
    let cluster = Cluster::start(3, &[]).await;
    let leader = cluster
        .wait_for_leader(&cluster.all(), Duration::from_secs(30))
        .await;
    let (holder, _h) = connect(&cluster, leader).await.expect("connect holder");
    let (waiter, _w) = connect(&cluster, leader).await.expect("connect waiter");
    holder
        .batch_execute(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER); INSERT INTO t VALUES (1, 0);
             BEGIN; UPDATE t SET v = 1 WHERE id = 1",
        )
        .await
        .expect("hold row 1");
    let cancel = waiter.cancel_token();
    let blocked = tokio::spawn(async move {
        let result = waiter
            .batch_execute("UPDATE t SET v = v + 10 WHERE id = 1")
            .await;
        (waiter, result)
    });
    // Cancel once the update is waiting (it cannot finish while the holder's transaction owns
    // the row, so repeating the cancel until the update returns is safe).
    cancel_until_finished(&cancel, &blocked).await;
    let (waiter, result) = blocked.await.expect("join");
    let error = result.expect_err("canceled");
    assert_eq!(code(&error), "57014", "{error}");
    holder.batch_execute("COMMIT").await.expect("commit");
    waiter
        .batch_execute("INSERT INTO t VALUES (3, 0)")
        .await
        .expect("the session goes on");
    let ids = waiter
        .simple_query("SELECT id || ':' || v FROM t ORDER BY id")
        .await
        .expect("ids");
    let ids: Vec<String> = rows(&ids)
        .into_iter()
        .filter_map(|r| r[0].clone())
        .collect();
    assert_eq!(ids, ["1:1", "3:0"], "the canceled update never ran");
}
