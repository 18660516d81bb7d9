//! The PostgreSQL front end, driven by real clients (tokio-postgres, psql) against real node
//! processes — always through a follower, so every write is forwarded to the leader.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::Cluster;
use common::pg::{RawPg, code, connect, follower, rows};
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::error::SqlState;

fn completions(messages: &[SimpleQueryMessage]) -> Vec<u64> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect()
}

/// Connects to node `i`, retrying while it refuses with 53300 (too many connections: sessions
/// that just closed may still be winding down); any other error fails the test.
async fn connect_within_limit(
    cluster: &Cluster,
    i: usize,
    what: &str,
) -> (
    tokio_postgres::Client,
    tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
) {
    common::eventually(Duration::from_secs(20), what, || async {
        match connect(cluster, i).await {
            Ok(connected) => Ok(connected),
            Err(e) if code(&e) == "53300" => Err(e.to_string()),
            Err(e) => panic!("connect: {e}"),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokio_postgres_on_a_follower() {
    let cluster = Cluster::start(3, &[]).await;
    let node = follower(&cluster).await;
    let (client, _connection) = connect(&cluster, node).await.expect("connect");

    // DDL through the simple protocol, then writes with parameters through the extended one:
    // parameter types come from the columns they are inserted into.
    client
        .batch_execute(
            "CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE, \
             price DOUBLE PRECISION, data BYTEA, active BOOLEAN, qty INTEGER)",
        )
        .await
        .expect("create table");
    let insert =
        "INSERT INTO items (id, name, price, data, active, qty) VALUES ($1, $2, $3, $4, $5, $6)";
    let inserted = client
        .execute(
            insert,
            &[&1i64, &"apple", &1.5f64, &vec![0u8, 1, 255], &true, &7i32],
        )
        .await
        .expect("insert apple");
    assert_eq!(inserted, 1);
    let nothing: (Option<f64>, Option<Vec<u8>>, Option<bool>, Option<i32>) =
        (None, None, None, None);
    client
        .execute(
            insert,
            &[
                &2i64, &"pear", &nothing.0, &nothing.1, &nothing.2, &nothing.3,
            ],
        )
        .await
        .expect("insert pear");

    // Binary results (tokio-postgres asks for binary), through a statement prepared once and
    // used twice.
    let select = client
        .prepare("SELECT id, name, price, data, active, qty FROM items WHERE id = $1")
        .await
        .expect("prepare");
    let row = client.query_one(&select, &[&1i64]).await.expect("select 1");
    assert_eq!(row.get::<_, i64>(0), 1);
    assert_eq!(row.get::<_, String>(1), "apple");
    assert_eq!(row.get::<_, f64>(2), 1.5);
    assert_eq!(row.get::<_, Vec<u8>>(3), vec![0u8, 1, 255]);
    assert!(row.get::<_, bool>(4));
    assert_eq!(row.get::<_, i32>(5), 7);
    let row = client.query_one(&select, &[&2i64]).await.expect("select 2");
    assert_eq!(row.get::<_, String>(1), "pear");
    assert_eq!(row.get::<_, Option<f64>>(2), None);
    assert_eq!(row.get::<_, Option<Vec<u8>>>(3), None);
    assert_eq!(row.get::<_, Option<bool>>(4), None);
    assert_eq!(row.get::<_, Option<i32>>(5), None);
    let count: i64 = client
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 2);

    // DEALLOCATE ALL drops every statement this connection prepared.
    let messages = client
        .simple_query("DEALLOCATE ALL")
        .await
        .expect("deallocate all");
    assert!(
        messages
            .iter()
            .any(|m| matches!(m, SimpleQueryMessage::CommandComplete(_))),
        "{messages:?}"
    );
    let gone = client
        .query_one(&select, &[&1i64])
        .await
        .expect_err("a deallocated statement must not run");
    assert_eq!(
        gone.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_SQL_STATEMENT_NAME),
        "{gone:?}"
    );

    // Text results through the simple protocol.
    let messages = client
        .simple_query("SELECT id, name, price, data, active, qty FROM items ORDER BY id")
        .await
        .expect("simple select");
    assert_eq!(
        rows(&messages),
        vec![
            vec![
                Some("1".into()),
                Some("apple".into()),
                Some("1.5".into()),
                Some("\\x0001ff".into()),
                Some("t".into()),
                Some("7".into())
            ],
            vec![
                Some("2".into()),
                Some("pear".into()),
                None,
                None,
                None,
                None
            ],
        ]
    );
    assert_eq!(completions(&messages), vec![2], "SELECT 2");

    // Row counts of UPDATE and DELETE.
    let updated = client
        .execute(
            "UPDATE items SET price = $1 WHERE id >= $2",
            &[&2.5f64, &1i64],
        )
        .await
        .expect("update");
    assert_eq!(updated, 2);
    assert_eq!(
        client
            .execute("DELETE FROM items WHERE id = $1", &[&2i64])
            .await
            .expect("delete"),
        1
    );
    assert_eq!(
        client
            .execute("DELETE FROM items WHERE id = $1", &[&2i64])
            .await
            .expect("delete again"),
        0
    );

    // A multi-statement string: each statement answers in order...
    let messages = client
        .simple_query(
            "INSERT INTO items (id, name) VALUES (10, 'ten'); \
             INSERT INTO items (id, name) VALUES (11, 'eleven'), (12, 'twelve'); \
             SELECT name FROM items WHERE id >= 10 ORDER BY id",
        )
        .await
        .expect("multi-statement");
    assert_eq!(completions(&messages), vec![1, 2, 3]);
    assert_eq!(
        rows(&messages),
        vec![
            vec![Some("ten".into())],
            vec![Some("eleven".into())],
            vec![Some("twelve".into())]
        ]
    );
    // ...and is one implicit transaction, as in PostgreSQL: a failing statement takes the
    // earlier ones with it.
    let failed = client
        .simple_query(
            "INSERT INTO items (id, name) VALUES (20, 'twenty'); \
             INSERT INTO items (id, name) VALUES (21, 'apple')",
        )
        .await
        .expect_err("duplicate name");
    assert_eq!(code(&failed), SqlState::UNIQUE_VIOLATION.code());
    let twenty = client
        .query("SELECT id FROM items WHERE id = 20", &[])
        .await
        .expect("select 20");
    assert!(
        twenty.is_empty(),
        "the implicit transaction was rolled back"
    );

    // Errors carry PostgreSQL's SQLSTATEs.
    let duplicate = client
        .execute(
            insert,
            &[&1i64, &"again", &0.0f64, &nothing.1, &nothing.2, &nothing.3],
        )
        .await
        .expect_err("duplicate key");
    assert_eq!(code(&duplicate), "23505");
    // In PostgreSQL's words, with the constraint, table and column named in their fields, as
    // the catalog names them (this connection is on a follower; the leader ran the statement).
    let db = duplicate.as_db_error().expect("a server error");
    assert_eq!(
        db.message(),
        "duplicate key value violates unique constraint \"items_pkey\""
    );
    assert_eq!(db.constraint(), Some("items_pkey"));
    assert_eq!(db.table(), Some("items"));
    let same_name = client
        .execute(
            insert,
            &[
                &99i64, &"apple", &0.0f64, &nothing.1, &nothing.2, &nothing.3,
            ],
        )
        .await
        .expect_err("duplicate name");
    let db = same_name.as_db_error().expect("a server error");
    assert_eq!(
        db.message(),
        "duplicate key value violates unique constraint \"items_name_key\""
    );
    assert_eq!(db.constraint(), Some("items_name_key"));
    let null = client
        .execute("INSERT INTO items (id) VALUES ($1)", &[&30i64])
        .await
        .expect_err("null name");
    assert_eq!(code(&null), "23502");
    let db = null.as_db_error().expect("a server error");
    assert_eq!(
        db.message(),
        "null value in column \"name\" of relation \"items\" violates not-null constraint"
    );
    assert_eq!(db.column(), Some("name"));
    let syntax = client.batch_execute("SELEC 1").await.expect_err("syntax");
    assert_eq!(code(&syntax), "42601");
    let parsed = client.query("SELEC 1", &[]).await.expect_err("syntax");
    assert_eq!(code(&parsed), "42601");
    let missing = client
        .query("SELECT * FROM no_such_table", &[])
        .await
        .expect_err("missing table");
    assert_eq!(code(&missing), "42P01");
    let column = client
        .query("SELECT no_such_column FROM items", &[])
        .await
        .expect_err("missing column");
    assert_eq!(code(&column), "42703");
    let listen = client
        .batch_execute("LISTEN news")
        .await
        .expect_err("listen");
    assert_eq!(code(&listen), "0A000");
    let message = listen
        .as_db_error()
        .map(|e| e.message())
        .unwrap_or_default();
    assert!(message.contains("LISTEN"), "{message}");
    // The session is still usable after errors.
    assert_eq!(
        client
            .query_one("SELECT name FROM items WHERE id = $1", &[&1i64])
            .await
            .expect("after errors")
            .get::<_, String>(0),
        "apple"
    );

    // Session settings.
    let version = client
        .query_one("SHOW server_version", &[])
        .await
        .expect("show")
        .get::<_, String>(0);
    assert!(version.contains("Phalanx"), "{version}");
    let version: String = client
        .query_one("SELECT version()", &[])
        .await
        .expect("version()")
        .get(0);
    assert!(version.starts_with("PostgreSQL 15"), "{version}");
    client
        .batch_execute("SET application_name = 'pg_protocol'; SET search_path TO public")
        .await
        .expect("harmless settings");
    let timezone = client
        .batch_execute("SET TimeZone = 'Europe/Paris'")
        .await
        .expect_err("only UTC");
    assert_eq!(code(&timezone), "0A000");

    // Read-your-writes on a follower with session consistency: every read sees the write
    // just acknowledged, without a linearizable round trip.
    client
        .batch_execute("SET phalanx.read_consistency = 'session'")
        .await
        .expect("set consistency");
    let level: String = client
        .query_one("SHOW phalanx.read_consistency", &[])
        .await
        .expect("show consistency")
        .get(0);
    assert_eq!(level, "session");
    let bump = client
        .prepare("UPDATE items SET qty = $1 WHERE id = 1")
        .await
        .expect("prepare bump");
    for qty in 100..120i32 {
        client.execute(&bump, &[&qty]).await.expect("bump");
        let seen: i32 = client
            .query_one("SELECT qty FROM items WHERE id = 1", &[])
            .await
            .expect("read back")
            .get(0);
        assert_eq!(
            seen,
            qty,
            "session read on node {} missed its write",
            node + 1
        );
    }
}

/// Runs psql against `port` with `args`; returns (success, stdout, stderr).
fn psql(port: &str, args: &[&str]) -> (bool, String, String) {
    psql_with(port, args, &[])
}

fn psql_with(port: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let output = std::process::Command::new("psql")
        .envs(env.iter().copied())
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            port,
            "-U",
            "tester",
            "-d",
            "phalanx",
        ])
        .args(args)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql (postgresql-client)");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psql_script_on_a_follower() {
    let cluster = Cluster::start(3, &[]).await;
    let node = follower(&cluster).await;
    let port = cluster.nodes[node]
        .pg
        .rsplit(':')
        .next()
        .expect("port")
        .to_owned();
    let script = cluster.dir.path().join("script.sql");
    std::fs::write(
        &script,
        "CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT NOT NULL, stars INTEGER);\n\
         INSERT INTO notes VALUES (1, 'one', 5), (2, 'two', 3);\n\
         UPDATE notes SET body = 'uno' WHERE id = 1;\n\
         DELETE FROM notes WHERE id = 2;\n\
         SELECT id, body, stars FROM notes ORDER BY id;\n\
         SHOW server_version;\n\
         DROP TABLE IF EXISTS gone;\n",
    )
    .expect("write script");
    let script = script.to_string_lossy().into_owned();
    let (ok, out, err) = psql(&port, &["-v", "ON_ERROR_STOP=1", "-f", &script]);
    assert!(ok, "psql failed: {err}\n{out}");
    for expected in [
        "CREATE TABLE",
        "INSERT 0 2",
        "UPDATE 1",
        "DELETE 1",
        "  1 | uno  |     5",
        "(1 row)",
        "15.0 (Phalanx",
        "DROP TABLE",
    ] {
        assert!(
            out.contains(expected),
            "missing {expected:?} in psql output:\n{out}"
        );
    }

    // -c with an error: ON_ERROR_STOP makes psql fail, and the SQLSTATE is PostgreSQL's.
    let (ok, _, err) = psql(
        &port,
        &[
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
            "-c",
            "INSERT INTO notes VALUES (1, 'dup', 0)",
        ],
    );
    assert!(!ok, "a duplicate key must fail");
    assert!(err.contains("23505"), "{err}");
    let (ok, _, err) = psql(
        &port,
        &[
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
            "-c",
            "LISTEN news",
        ],
    );
    assert!(!ok && err.contains("0A000"), "{err}");
    let (ok, out, err) = psql(&port, &["-At", "-c", "SELECT body FROM notes"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "uno");

    // Startup options are honoured or refused, never ignored.
    let (ok, out, err) = psql_with(
        &port,
        &["-At", "-c", "SHOW phalanx.read_consistency"],
        &[("PGOPTIONS", "-c phalanx.read_consistency=any")],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "any");
    let (ok, _, err) = psql_with(
        &port,
        &["-At", "-c", "SELECT 1"],
        &[("PGOPTIONS", "-c TimeZone=Europe/Paris")],
    );
    assert!(!ok && err.contains("TimeZone"), "{err}");
}

/// A connected raw socket past startup (ReadyForQuery received).
fn raw_session(addr: &str) -> std::net::TcpStream {
    RawPg::connect(addr).socket
}

/// Reads messages until one of type `kind` (or EOF); returns every type byte seen.
fn read_until(socket: &mut std::net::TcpStream, kind: u8) -> Vec<u8> {
    let mut seen = Vec::new();
    loop {
        let mut header = [0u8; 5];
        if socket.read_exact(&mut header).is_err() {
            return seen;
        }
        let length = i32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0u8; length.saturating_sub(4)];
        if socket.read_exact(&mut body).is_err() {
            return seen;
        }
        seen.push(header[0]);
        if header[0] == b'E' {
            seen.extend_from_slice(&body);
        }
        if header[0] == kind {
            return seen;
        }
    }
}

/// True once the server has closed the socket.
fn closed(socket: &mut std::net::TcpStream) -> bool {
    let mut rest = Vec::new();
    socket.read_to_end(&mut rest).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_clients_get_clean_errors() {
    let cluster = Cluster::start(
        3,
        &["--max-pg-connections", "3", "--max-message-bytes", "65536"],
    )
    .await;
    let node = follower(&cluster).await;
    let addr = cluster.nodes[node].pg.clone();

    // An unknown message type: FATAL 08P01, then the server hangs up.
    let mut socket = raw_session(&addr);
    socket.write_all(&[b'?', 0, 0, 0, 4]).expect("send");
    let reply = read_until(&mut socket, b'E');
    assert!(
        reply.windows(5).any(|w| w == b"08P01"),
        "expected 08P01: {:?}",
        String::from_utf8_lossy(&reply)
    );
    assert!(closed(&mut socket));

    // A message announcing 1 GiB: refused at its header, before the body arrives.
    let mut socket = raw_session(&addr);
    socket
        .write_all(&[b'Q', 0x40, 0, 0, 0])
        .expect("send header");
    let reply = read_until(&mut socket, b'E');
    assert!(
        reply.windows(5).any(|w| w == b"54000"),
        "expected 54000: {:?}",
        String::from_utf8_lossy(&reply)
    );

    // A truncated message and a hang-up, and garbage instead of a startup packet: the node
    // shrugs both off.
    let mut socket = raw_session(&addr);
    socket.write_all(&[b'Q', 0, 0, 0, 100, b'S']).expect("send");
    drop(socket);
    let mut socket = std::net::TcpStream::connect(&addr).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    socket.write_all(&[0xff; 64]).expect("garbage");
    assert!(closed(&mut socket));

    // A query over max_message_bytes through a real client: SQLSTATE 54000.
    let (client, _connection) = connect(&cluster, node).await.expect("connect");
    let huge = format!("SELECT '{}'", "x".repeat(100_000));
    let error = client.simple_query(&huge).await.expect_err("too large");
    assert_eq!(code(&error), "54000", "{error}");

    // The connection limit: 3 sessions, the 4th gets 53300; once one leaves, a new one fits.
    let mut held = Vec::new();
    while held.len() < 3 {
        // Earlier sessions may still be winding down: a refusal is retried until they have.
        held.push(connect_within_limit(&cluster, node, "a session within the limit").await);
    }
    let Err(refused) = connect(&cluster, node).await else {
        panic!("a 4th session must be refused");
    };
    assert_eq!(code(&refused), "53300", "{refused}");
    held.pop();
    let (client, connection) =
        connect_within_limit(&cluster, node, "a session once one left").await;
    client
        .simple_query("SELECT 1")
        .await
        .expect("still serving");

    // Stopping the node ends idle sessions with 57P01, and the node exits cleanly.
    drop(held);
    let mut cluster = cluster;
    cluster.stop(node);
    let ended = connection.await.expect("connection task");
    let error = ended.expect_err("the server ended the session");
    assert_eq!(code(&error), "57P01", "{error}");
}
