//! COPY FROM STDIN / TO STDOUT through a follower, in text and CSV, with tokio-postgres
//! (extended protocol) and psql's `\copy` (simple protocol); bad data and an aborted COPY
//! insert nothing.

mod common;

use std::process::Command;

use bytes::Bytes;
use common::Cluster;
use common::pg::{code, connect, follower, rows};
use futures::{SinkExt, TryStreamExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_in_and_out_in_text_and_csv() {
    let cluster = Cluster::start(3, &[]).await;
    let node = follower(&cluster).await;
    let (client, _c) = connect(&cluster, node).await.expect("connect");
    client
        .batch_execute("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, price REAL)")
        .await
        .expect("create");

    // Text format, 2,000 rows (several INSERT chunks, one transaction), with escapes and NULLs.
    let sink = client
        .copy_in("COPY items FROM STDIN")
        .await
        .expect("copy in");
    let mut data = String::new();
    for i in 1..=2000 {
        data.push_str(&format!(
            "{i}\tname\\t{i}\t{}\n",
            if i % 2 == 0 { "\\N" } else { "1.5" }
        ));
    }
    futures::pin_mut!(sink);
    sink.send(Bytes::from(data)).await.expect("send data");
    let copied = sink.finish().await.expect("finish");
    assert_eq!(copied, 2000);
    let summary = client
        .simple_query("SELECT count(*), count(price), max(name) FROM items")
        .await
        .expect("summary");
    assert_eq!(
        rows(&summary),
        vec![vec![
            Some("2000".into()),
            Some("1000".into()),
            Some("name\t999".into())
        ]]
    );

    // CSV out with a header, then back in (into a copy of the table) unchanged.
    let out: Vec<Bytes> = client
        .copy_out("COPY (SELECT id, name, price FROM items WHERE id <= 3) TO STDOUT WITH (FORMAT csv, HEADER)")
        .await
        .expect("copy out")
        .try_collect()
        .await
        .expect("read copy data");
    let csv: String = out.iter().map(|b| String::from_utf8_lossy(b)).collect();
    assert_eq!(
        csv,
        "id,name,price\n1,name\t1,1.5\n2,name\t2,\n3,name\t3,1.5\n"
    );
    client
        .batch_execute("CREATE TABLE again(id INTEGER PRIMARY KEY, name TEXT, price REAL)")
        .await
        .expect("create again");
    let sink = client
        .copy_in("COPY again (id, name, price) FROM STDIN (FORMAT csv, HEADER true)")
        .await
        .expect("copy in csv");
    futures::pin_mut!(sink);
    sink.send(Bytes::from(csv)).await.expect("send csv");
    assert_eq!(sink.finish().await.expect("finish csv"), 3);
    let same = client
        .simple_query(
            "SELECT count(*) FROM again a JOIN items i ON i.id = a.id
             WHERE i.name = a.name AND i.price IS NOT DISTINCT FROM a.price",
        )
        .await
        .expect("compare");
    assert_eq!(rows(&same), vec![vec![Some("3".into())]]);

    // Bad data (a missing column) fails the whole COPY: nothing of it is inserted.
    let sink = client
        .copy_in("COPY again FROM STDIN")
        .await
        .expect("copy in");
    futures::pin_mut!(sink);
    sink.send(Bytes::from_static(b"10\tok\t1\n11\tshort\n"))
        .await
        .expect("send");
    let error = sink.finish().await.expect_err("a short line");
    assert_eq!(code(&error), "22P04", "{error}");
    // A duplicate key fails it too.
    let sink = client
        .copy_in("COPY again FROM STDIN")
        .await
        .expect("copy in");
    futures::pin_mut!(sink);
    sink.send(Bytes::from_static(b"20\tnew\t1\n1\tduplicate\t1\n"))
        .await
        .expect("send");
    let error = sink.finish().await.expect_err("a duplicate");
    assert_eq!(code(&error), "23505", "{error}");
    // An aborted COPY (the client sends CopyFail) inserts nothing either.
    {
        let sink = client
            .copy_in::<_, Bytes>("COPY again FROM STDIN")
            .await
            .expect("copy in");
        futures::pin_mut!(sink);
        sink.send(Bytes::from_static(b"30\tabandoned\t1\n"))
            .await
            .expect("send");
        // Dropped without finish: tokio-postgres sends CopyFail.
    }
    let count = client
        .simple_query("SELECT count(*) FROM again")
        .await
        .expect("count after failures");
    assert_eq!(rows(&count), vec![vec![Some("3".into())]]);

    // psql's \copy (simple protocol), in and out.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("in.csv");
    std::fs::write(&file, "5000,\"psql, quoted\",2.5\n5001,plain,\n").expect("write csv");
    let (host, port) = cluster.nodes[node].pg.split_once(':').expect("host:port");
    let psql = |command: &str| {
        Command::new("psql")
            .args([
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-h",
                host,
                "-p",
                port,
                "-U",
                "tester",
            ])
            .args(["-d", "phalanx", "-c", command])
            .output()
            .expect("run psql")
    };
    let loaded = psql(&format!(
        "\\copy items from '{}' with (format csv)",
        file.display()
    ));
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&loaded.stdout).trim(), "COPY 2");
    let dumped =
        psql("\\copy (select id, name, price from items where id >= 5000 order by id) to stdout");
    assert!(
        dumped.status.success(),
        "{}",
        String::from_utf8_lossy(&dumped.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&dumped.stdout),
        "5000\tpsql, quoted\t2.5\n5001\tplain\t\\N\n"
    );

    // Every node holds the same rows.
    cluster.assert_identical().await;
}

/// A large COPY, sent in 64 KiB messages as clients send it, commits in one piece, and the
/// leader stays leader while it parses and applies it (the parsing runs off the async workers,
/// which keep the node's heartbeats going).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_copy_leaves_the_leader_leading() {
    const ROWS: usize = 100_000;
    let cluster = Cluster::start(3, &[]).await;
    let leader = cluster
        .wait_for_leader(&cluster.all(), std::time::Duration::from_secs(20))
        .await;
    let term = |status: Option<serde_json::Value>| status.and_then(|s| s["term"].as_u64());
    let term_before = term(cluster.status(leader).await).expect("leader's term");
    let (client, _c) = connect(&cluster, leader).await.expect("connect");
    client
        .batch_execute(
            "CREATE TABLE accounts(aid INTEGER PRIMARY KEY, bid INTEGER, abalance INTEGER, \
             filler CHAR(84))",
        )
        .await
        .expect("create");
    let mut data = String::with_capacity(ROWS * 100);
    for aid in 1..=ROWS {
        data.push_str(&format!("{aid}\t{}\t0\t{:84}\n", aid / 1000, ""));
    }
    let sink = client
        .copy_in("COPY accounts FROM STDIN")
        .await
        .expect("copy in");
    futures::pin_mut!(sink);
    // In messages of 64 KiB, as psql and pgbench send them.
    for chunk in data.as_bytes().chunks(64 * 1024) {
        sink.send(Bytes::copy_from_slice(chunk))
            .await
            .expect("send data");
    }
    let copied = sink.finish().await.expect("the COPY commits");
    assert_eq!(copied, ROWS as u64);
    let status = cluster.status(leader).await.expect("leader status");
    assert_eq!(status["role"], "leader", "{status}");
    assert_eq!(term(Some(status)), Some(term_before), "leadership moved");
    let counted = client
        .simple_query("SELECT count(*) FROM accounts")
        .await
        .expect("count");
    assert_eq!(rows(&counted), vec![vec![Some(ROWS.to_string())]]);
}
