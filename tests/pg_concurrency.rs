//! Concurrent explicit transactions over the PostgreSQL protocol, against real node processes:
//! transactions interleave on the leader and wait only for the rows they share, as under
//! PostgreSQL's row locks; a cycle of waits is a deadlock (40P01); rows inserted under SQLite's
//! hidden rowid never collide; a transaction whose changes no longer apply is rolled back whole.

mod common;

use std::time::Duration;

use common::Cluster;
use common::pg::{code, connect, follower, rows};
use tokio_postgres::Client;

/// A bound for steps that must not wait for another open transaction.
const PROMPTLY: Duration = Duration::from_secs(10);

async fn one_value(client: &Client, sql: &str) -> String {
    let messages = client.simple_query(sql).await.expect(sql);
    rows(&messages)
        .first()
        .and_then(|row| row.first().cloned().flatten())
        .unwrap_or_else(|| panic!("no value from {sql}"))
}

async fn promptly(client: &Client, sql: &str) {
    tokio::time::timeout(PROMPTLY, client.batch_execute(sql))
        .await
        .unwrap_or_else(|_| panic!("{sql} waited for another transaction"))
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactions_interleave_and_wait_only_for_the_rows_they_share() {
    let cluster = Cluster::start(3, &["--txn-idle-timeout-ms", "60000"]).await;
    let leader = cluster
        .wait_for_leader(&cluster.all(), Duration::from_secs(30))
        .await;
    let other = follower(&cluster).await;
    let (a, _a) = connect(&cluster, leader).await.expect("connect a");
    let (b, _b) = connect(&cluster, leader).await.expect("connect b");
    let (c, _c) = connect(&cluster, other).await.expect("connect c");
    a.batch_execute(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER NOT NULL);
         CREATE TABLE h(x INTEGER);
         INSERT INTO t VALUES (1, 0), (2, 0);",
    )
    .await
    .expect("setup");

    // Different rows: a transaction open on `a` holds nobody else up, and `a` then reads what
    // committed meanwhile (read committed) besides its own row.
    promptly(&a, "BEGIN; INSERT INTO t VALUES (10, 0)").await;
    promptly(&b, "BEGIN; INSERT INTO t VALUES (11, 0); COMMIT").await;
    assert_eq!(
        one_value(&a, "SELECT count(*) FROM t WHERE id >= 10").await,
        "2"
    );
    // An autocommit write to other rows goes through at once while `a` holds row 10 (each such
    // request is recorded on its own, to check its rows against `a`'s), and `a` sees it.
    promptly(
        &b,
        "INSERT INTO t VALUES (12, 5); UPDATE t SET v = v + 1 WHERE id = 12",
    )
    .await;
    assert_eq!(one_value(&a, "SELECT v FROM t WHERE id = 12").await, "6");

    // Inserts into a table without a primary key pick the same hidden rowid while `a` is set
    // aside for `c` (a follower's session, forwarded); `a` resumes with its row renumbered.
    promptly(&a, "INSERT INTO h VALUES (1)").await;
    promptly(&c, "BEGIN; INSERT INTO h VALUES (2); COMMIT").await;
    promptly(&a, "INSERT INTO h VALUES (3); COMMIT").await;
    assert_eq!(
        one_value(&b, "SELECT count(*) || ':' || sum(x) FROM h").await,
        "3:6"
    );

    // The same row: the second writer waits until the first commits, then adds to its value
    // (no lost update).
    promptly(&a, "BEGIN; UPDATE t SET v = v + 1 WHERE id = 1").await;
    let waiter = tokio::spawn(async move {
        b.batch_execute("BEGIN; UPDATE t SET v = v + 10 WHERE id = 1")
            .await
            .expect("update after waiting");
        let seen = one_value(&b, "SELECT v FROM t WHERE id = 1").await;
        b.batch_execute("COMMIT").await.expect("commit b");
        (b, seen)
    });
    assert_eq!(one_value(&a, "SELECT v FROM t WHERE id = 1").await, "1");
    assert!(
        !waiter.is_finished(),
        "the second writer must wait for the row while the first transaction is open"
    );
    promptly(&a, "COMMIT").await;
    let (b, seen) = waiter.await.expect("waiter");
    assert_eq!(seen, "11", "the waiter updated the committed value");

    // A cycle of waits: exactly one of the two transactions is rolled back with 40P01, the
    // other goes on and commits.
    promptly(&a, "BEGIN; UPDATE t SET v = v + 100 WHERE id = 1").await;
    promptly(&b, "BEGIN; UPDATE t SET v = v + 1000 WHERE id = 2").await;
    let crossing = tokio::spawn(async move {
        let result = a
            .batch_execute("UPDATE t SET v = v + 100 WHERE id = 2")
            .await;
        (a, result)
    });
    let b_result = b
        .batch_execute("UPDATE t SET v = v + 1000 WHERE id = 1")
        .await;
    if b_result.is_err() {
        // `b` closed the cycle: `a` gets the rows once `b` is gone.
        b.batch_execute("ROLLBACK").await.expect("rollback b");
    }
    let (a, a_result) = crossing.await.expect("crossing");
    let outcomes = [&a_result, &b_result].map(|r| r.as_ref().err().map(code));
    assert!(
        matches!(
            outcomes,
            [None, Some(ref c)] | [Some(ref c), None] if c == "40P01"
        ),
        "exactly one side of the deadlock fails with 40P01: {outcomes:?}"
    );
    let expected = if a_result.is_ok() {
        promptly(&a, "COMMIT").await;
        "111:100"
    } else {
        a.batch_execute("ROLLBACK").await.expect("rollback a");
        promptly(&b, "COMMIT").await;
        "1011:1000"
    };
    assert_eq!(
        one_value(
            &c,
            "SELECT (SELECT v FROM t WHERE id = 1) || ':' || (SELECT v FROM t WHERE id = 2)"
        )
        .await,
        expected
    );
    cluster.assert_identical().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_that_no_longer_apply_roll_back_and_ddl_holds_the_writer() {
    let cluster = Cluster::start(3, &["--txn-idle-timeout-ms", "60000"]).await;
    let leader = cluster
        .wait_for_leader(&cluster.all(), Duration::from_secs(30))
        .await;
    let (a, _a) = connect(&cluster, leader).await.expect("connect a");
    let (b, _b) = connect(&cluster, leader).await.expect("connect b");
    // Foreign keys in the schema: resuming a transaction takes SQLite's own changeset apply
    // (which keeps cascades from running twice) instead of the row-by-row replay.
    a.batch_execute(
        "CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT UNIQUE);
         CREATE TABLE p(id INTEGER PRIMARY KEY);
         CREATE TABLE ch(id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id) ON DELETE CASCADE)",
    )
    .await
    .expect("setup");
    promptly(&a, "BEGIN; INSERT INTO p VALUES (1)").await;
    promptly(
        &b,
        "INSERT INTO p VALUES (2); INSERT INTO ch VALUES (20, 2)",
    )
    .await;
    promptly(
        &a,
        "INSERT INTO ch VALUES (10, 1); DELETE FROM p WHERE id = 2",
    )
    .await;
    promptly(&b, "INSERT INTO p VALUES (3)").await;
    promptly(&a, "COMMIT").await;
    assert_eq!(
        one_value(
            &b,
            "SELECT (SELECT count(*) FROM p) || ':' || (SELECT sum(id) FROM ch)"
        )
        .await,
        "2:10",
        "a's insert and its cascading delete apply once"
    );

    // A UNIQUE index other than the key is not a row lock: the autocommit insert wins, and
    // `a`, whose insert no longer applies, is rolled back whole (40001).
    promptly(&a, "BEGIN; INSERT INTO u VALUES (1, 'x')").await;
    promptly(&b, "INSERT INTO u VALUES (2, 'x')").await;
    let error = a
        .batch_execute("INSERT INTO u VALUES (3, 'y')")
        .await
        .expect_err("a's changes no longer apply");
    assert_eq!(code(&error), "40001", "{error}");
    a.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(
        one_value(&b, "SELECT count(*) || ':' || min(id) || min(email) FROM u").await,
        "1:2x"
    );

    // DDL in a transaction holds the writer until it ends, as SQLite's one writer would.
    promptly(&a, "BEGIN; CREATE TABLE z(id INTEGER PRIMARY KEY)").await;
    let writer = tokio::spawn(async move {
        b.batch_execute("INSERT INTO u VALUES (5, 'q')")
            .await
            .expect("insert after the DDL transaction");
        b
    });
    promptly(&a, "INSERT INTO z VALUES (1)").await;
    assert!(
        !writer.is_finished(),
        "a write must wait while a transaction holding DDL is open"
    );
    promptly(&a, "COMMIT").await;
    let b = writer.await.expect("writer");
    assert_eq!(
        one_value(
            &b,
            "SELECT (SELECT count(*) FROM z) || ':' || (SELECT count(*) FROM u)"
        )
        .await,
        "1:2"
    );
    cluster.assert_identical().await;
}

/// A follower's session waiting (through the leader) for another transaction's row past the
/// write timeout is told its transaction is lost (40001) — and the leader rolls that transaction
/// back at once, so it does not keep its own rows until the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_given_up_by_its_follower_frees_its_rows() {
    let cluster = Cluster::start(
        3,
        &[
            "--txn-idle-timeout-ms",
            "60000",
            "--write-timeout-ms",
            "1500",
        ],
    )
    .await;
    let leader = cluster
        .wait_for_leader(&cluster.all(), Duration::from_secs(30))
        .await;
    let other = follower(&cluster).await;
    let (holder, _h) = connect(&cluster, leader).await.expect("connect holder");
    let (waiter, _w) = connect(&cluster, other).await.expect("connect waiter");
    holder
        .batch_execute(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER NOT NULL);
             INSERT INTO t VALUES (1, 0), (2, 0);",
        )
        .await
        .expect("setup");
    promptly(&holder, "BEGIN; UPDATE t SET v = 1 WHERE id = 1").await;
    promptly(&waiter, "BEGIN; UPDATE t SET v = 2 WHERE id = 2").await;
    let error = waiter
        .batch_execute("UPDATE t SET v = 2 WHERE id = 1")
        .await
        .expect_err("the wait outlasts the write timeout");
    assert_eq!(code(&error), "40001", "{error}");
    // Row 2 is free again well before the 60 s idle timeout: an autocommit write to it (which
    // waits for the row, without taking part in deadlock detection) goes through.
    promptly(&waiter, "ROLLBACK").await;
    promptly(&waiter, "UPDATE t SET v = 3 WHERE id = 2").await;
    promptly(&holder, "COMMIT").await;
    assert_eq!(
        one_value(
            &waiter,
            "SELECT group_concat(v, ',') FROM (SELECT v FROM t ORDER BY id)"
        )
        .await,
        "1,3",
        "the holder's change and the later write exist, nothing of the abandoned transaction"
    );
}

/// REPEATABLE READ / SERIALIZABLE and `SELECT ... FOR UPDATE` hold the leader's writer until
/// the transaction ends: its reads see no other write meanwhile, and a read-modify-write
/// through `FOR UPDATE` loses no update.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serializable_and_for_update_transactions_hold_the_writer() {
    let cluster = Cluster::start(3, &["--txn-idle-timeout-ms", "60000"]).await;
    let leader = cluster
        .wait_for_leader(&cluster.all(), Duration::from_secs(30))
        .await;
    let other = follower(&cluster).await;
    let (a, _a) = connect(&cluster, other).await.expect("connect a");
    let (b, _b) = connect(&cluster, leader).await.expect("connect b");
    a.batch_execute(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER NOT NULL); INSERT INTO t VALUES (1, 0)",
    )
    .await
    .expect("setup");

    // A serializable transaction reads the same value twice while another write waits.
    promptly(&a, "BEGIN ISOLATION LEVEL SERIALIZABLE").await;
    assert_eq!(one_value(&a, "SELECT v FROM t WHERE id = 1").await, "0");
    let writer = tokio::spawn(async move {
        b.batch_execute("UPDATE t SET v = 5 WHERE id = 1")
            .await
            .expect("write after the serializable transaction");
        b
    });
    assert_eq!(one_value(&a, "SELECT v FROM t WHERE id = 1").await, "0");
    promptly(&a, "COMMIT").await;
    let b = writer.await.expect("writer");
    assert_eq!(one_value(&b, "SELECT v FROM t WHERE id = 1").await, "5");

    // Two read-modify-writes through FOR UPDATE: the second reads after the first commits.
    promptly(&a, "BEGIN").await;
    let read = one_value(&a, "SELECT v FROM t WHERE id = 1 FOR UPDATE").await;
    assert_eq!(read, "5");
    let second = tokio::spawn(async move {
        b.batch_execute("BEGIN").await.expect("begin b");
        let seen: i64 = one_value(&b, "SELECT v FROM t WHERE id = 1 FOR UPDATE")
            .await
            .parse()
            .expect("number");
        b.batch_execute(&format!(
            "UPDATE t SET v = {} WHERE id = 1; COMMIT",
            seen + 1
        ))
        .await
        .expect("b's read-modify-write");
        b
    });
    promptly(&a, "UPDATE t SET v = 6 WHERE id = 1; COMMIT").await;
    let b = second.await.expect("second");
    assert_eq!(
        one_value(&b, "SELECT v FROM t WHERE id = 1").await,
        "7",
        "both increments survive"
    );
    cluster.assert_identical().await;
}
