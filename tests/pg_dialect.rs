//! The PostgreSQL dialect on SQLite, end to end: PostgreSQL-only SQL sent by tokio-postgres to a
//! follower of a real 3-node cluster, and the effects checked with PostgreSQL's semantics.

mod common;

use std::time::Duration;

use common::Cluster;
use common::pg::{code, follower, rows};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, SimpleQueryMessage};

async fn connect(cluster: &Cluster, i: usize) -> Client {
    cluster.pg_client(i).await
}

fn sqlstate(error: &tokio_postgres::Error) -> String {
    code(error)
}

/// The text of every row of a simple query.
async fn text_rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    rows(
        &client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}")),
    )
}

async fn single(client: &Client, sql: &str) -> String {
    text_rows(client, sql)
        .await
        .first()
        .and_then(|row| row.first().cloned().flatten())
        .unwrap_or_else(|| panic!("{sql}: no value"))
}

async fn refused(client: &Client, sql: &str) -> String {
    match client.simple_query(sql).await {
        Ok(_) => panic!("{sql}: accepted"),
        Err(e) => sqlstate(&e),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_dialect_on_a_follower() {
    let cluster = Cluster::start(3, &[]).await;
    let node = follower(&cluster).await;
    let client = connect(&cluster, node).await;

    // SERIAL ids, PostgreSQL types, DEFAULT now(), RETURNING.
    client
        .batch_execute(
            "CREATE TABLE public.people (id SERIAL PRIMARY KEY, name varchar(40) NOT NULL, \
             born date, active boolean DEFAULT true, created timestamptz DEFAULT now())",
        )
        .await
        .expect("create people");
    let mut ids = Vec::new();
    for name in ["Alice", "bob", "ALBERT"] {
        let row = client
            .query_one(
                "INSERT INTO people (name, born) VALUES ($1, $2::date) RETURNING id",
                &[&name, &"1990-01-02"],
            )
            .await
            .expect("insert person");
        ids.push(row.get::<_, i32>(0));
    }
    assert_eq!(ids, vec![1, 2, 3], "SERIAL numbers the rows");
    let created = single(&client, "SELECT created FROM people WHERE id = 1").await;
    assert!(
        created.len() >= 19 && created.as_bytes()[10] == b' ' && created.starts_with("20"),
        "DEFAULT now() stores PostgreSQL's timestamp text: {created}"
    );
    assert_eq!(
        single(&client, "SELECT count(*) FROM people WHERE active").await,
        "3"
    );

    // Expression columns are named and typed as PostgreSQL does.
    let row = client
        .query_one(
            "SELECT count(*), name = 'Alice', born::text, 1 + 1 FROM people WHERE id = $1 GROUP BY name, born",
            &[&1i32],
        )
        .await
        .expect("typed expressions");
    let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, vec!["count", "?column?", "born", "?column?"]);
    assert_eq!(row.get::<_, i64>(0), 1);
    assert!(row.get::<_, bool>(1));
    assert_eq!(row.get::<_, String>(2), "1990-01-02");

    // Casts: literals converted with PostgreSQL's rules, column values when they run.
    assert_eq!(
        text_rows(
            &client,
            "SELECT '42'::int + 1, CAST('2.5' AS float8) * 2, 1.50::text, 3.5::integer"
        )
        .await,
        vec![vec![
            Some("43".into()),
            Some("5".into()),
            Some("1.50".into()),
            Some("4".into())
        ]]
    );
    assert_eq!(
        single(&client, "SELECT born::text FROM people WHERE id = 2").await,
        "1990-01-02"
    );
    assert_eq!(refused(&client, "SELECT 'abc'::int").await, "22P02");
    assert_eq!(
        refused(&client, "SELECT name::int FROM people").await,
        "22P02"
    );

    // LIKE is case-sensitive, ILIKE is not; NOT and parameters work.
    assert_eq!(
        single(&client, "SELECT count(*) FROM people WHERE name LIKE 'Al%'").await,
        "1"
    );
    assert_eq!(
        single(
            &client,
            "SELECT count(*) FROM people WHERE name ILIKE 'al%'"
        )
        .await,
        "2"
    );
    let not_like: i64 = client
        .query_one(
            "SELECT count(*) FROM people WHERE name NOT LIKE $1",
            &[&"%b%"],
        )
        .await
        .expect("not like")
        .get(0);
    assert_eq!(not_like, 2, "only 'bob' has a lower-case b");

    // ON CONFLICT: upsert with EXCLUDED, and DO NOTHING.
    client
        .batch_execute("CREATE TABLE kv (k text PRIMARY KEY, v int NOT NULL)")
        .await
        .expect("create kv");
    let upsert = "INSERT INTO kv (k, v) VALUES ($1, $2) \
                  ON CONFLICT (k) DO UPDATE SET v = kv.v + EXCLUDED.v RETURNING v";
    for (delta, expected) in [(5, 5), (7, 12)] {
        let v: i32 = client
            .query_one(upsert, &[&"a", &delta])
            .await
            .expect("upsert")
            .get(0);
        assert_eq!(v, expected);
    }
    let inserted = client
        .execute(
            "INSERT INTO kv (k, v) VALUES ('a', 1) ON CONFLICT DO NOTHING",
            &[],
        )
        .await
        .expect("do nothing");
    assert_eq!(inserted, 0);
    assert_eq!(
        single(&client, "SELECT v FROM kv WHERE k = 'a'").await,
        "12"
    );

    // generate_series, server-side data generation as pgbench does it.
    client
        .batch_execute("CREATE TABLE acc (aid int, bid int, filler char(84))")
        .await
        .expect("create acc");
    client
        .batch_execute(
            "INSERT INTO acc (aid, bid, filler) SELECT aid, (aid - 1) / 100 + 1, '' \
             FROM generate_series(1, 1000) AS aid",
        )
        .await
        .expect("generate rows");
    assert_eq!(
        text_rows(&client, "SELECT count(*), sum(bid), max(bid) FROM acc").await,
        vec![vec![
            Some("1000".into()),
            Some("5500".into()),
            Some("10".into())
        ]]
    );
    assert_eq!(
        single(
            &client,
            "SELECT sum(x) FROM generate_series(1, 100) AS s(x)"
        )
        .await,
        "5050"
    );

    // ALTER TABLE ADD PRIMARY KEY: refused while duplicates or NULLs exist, enforced after.
    client
        .batch_execute("INSERT INTO acc (aid, bid) VALUES (1, 1), (NULL, 1)")
        .await
        .expect("duplicate and null");
    assert_eq!(
        refused(&client, "ALTER TABLE acc ADD PRIMARY KEY (aid)").await,
        "23505"
    );
    client
        .batch_execute("DELETE FROM acc WHERE aid = 1 AND filler IS NULL")
        .await
        .expect("remove duplicate");
    assert_eq!(
        refused(&client, "ALTER TABLE acc ADD PRIMARY KEY (aid)").await,
        "23502"
    );
    client
        .batch_execute("DELETE FROM acc WHERE aid IS NULL; ALTER TABLE acc ADD PRIMARY KEY (aid)")
        .await
        .expect("add primary key");
    assert_eq!(
        refused(&client, "INSERT INTO acc (aid, bid) VALUES (5, 1)").await,
        "23505"
    );
    assert_eq!(
        refused(&client, "INSERT INTO acc (bid) VALUES (1)").await,
        "23502"
    );
    assert_eq!(
        refused(&client, "UPDATE acc SET aid = NULL WHERE aid = 7").await,
        "23502"
    );

    // now() is one value for the whole statement, in reads and in writes.
    assert_eq!(
        single(
            &client,
            "SELECT count(DISTINCT t) FROM (SELECT now() AS t, x FROM generate_series(1, 100000) AS x) AS s"
        )
        .await,
        "1"
    );
    client
        .batch_execute(
            "CREATE TABLE stamps (id int, at timestamp); \
             INSERT INTO stamps SELECT x, CURRENT_TIMESTAMP FROM generate_series(1, 20000) AS x",
        )
        .await
        .expect("stamps");
    assert_eq!(
        single(&client, "SELECT count(DISTINCT at) FROM stamps").await,
        "1"
    );

    // TRUNCATE of several tables; VACUUM and ANALYZE answer without doing anything.
    let messages = client
        .simple_query("TRUNCATE TABLE kv, stamps; VACUUM ANALYZE acc; ANALYZE")
        .await
        .expect("truncate");
    assert_eq!(
        messages
            .iter()
            .filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
            .count(),
        3
    );
    assert_eq!(single(&client, "SELECT count(*) FROM kv").await, "0");
    assert_eq!(single(&client, "SELECT count(*) FROM stamps").await, "0");

    // DROP ... IF EXISTS with several names.
    client
        .batch_execute("DROP TABLE IF EXISTS kv, stamps, never_existed CASCADE")
        .await
        .expect("drop");
    assert_eq!(refused(&client, "SELECT * FROM kv").await, "42P01");

    // Regular expressions match as PostgreSQL's do for common patterns.
    assert_eq!(
        text_rows(&client, "SELECT 'Alice' ~ '^A', 'bob' ~* '^B', 'x' !~ 'x'").await,
        vec![vec![
            Some("t".to_owned()),
            Some("t".to_owned()),
            Some("f".to_owned())
        ]]
    );
    // What cannot be translated faithfully is refused, by name; syntax errors are 42601.
    assert_eq!(
        refused(
            &client,
            "SELECT name FROM people WHERE name SIMILAR TO 'A%'"
        )
        .await,
        "0A000"
    );
    assert_eq!(refused(&client, "CREATE SEQUENCE s").await, "0A000");
    let error = client
        .prepare("SELECT DISTINCT ON (name) name FROM people")
        .await
        .expect_err("DISTINCT ON refused in Parse too");
    assert_eq!(sqlstate(&error), "0A000");
    assert!(format!("{error:?}").contains("DISTINCT ON"), "{error:?}");
    assert_eq!(refused(&client, "SELEC 1").await, "42601");

    // Every node holds the same rows (effects replicated, now() evaluated once).
    let reference = cluster.dump(node).await;
    for i in cluster.all() {
        common::eventually(Duration::from_secs(10), "replicas converge", || async {
            let dump = cluster.dump(i).await;
            if dump == reference { Ok(()) } else { Err(dump) }
        })
        .await;
    }
}

/// Statements sent again with other numbers run from their cached translation with the
/// numbers in value positions bound as parameters; numbers whose meaning a parameter would
/// change (ORDER BY / GROUP BY positions, result columns) must keep it on every send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_keep_their_meaning_when_a_statement_shape_repeats() {
    let cluster = Cluster::start(1, &[]).await;
    let client = connect(&cluster, 0).await;
    client
        .batch_execute("CREATE TABLE lit (id int PRIMARY KEY, name text, score int)")
        .await
        .expect("create");
    for (id, name, score) in [(1, "d", 40), (2, "c", 10), (3, "b", 30), (4, "a", 20)] {
        client
            .simple_query(&format!("INSERT INTO lit VALUES ({id}, '{name}', {score})"))
            .await
            .expect("insert");
    }
    for _ in 0..2 {
        // Column 2 (score) descending, then column 1 (name): positions, not constants.
        assert_eq!(
            text_rows(
                &client,
                "SELECT name, score FROM lit WHERE score > 15 ORDER BY 2 DESC LIMIT 2"
            )
            .await,
            [
                [Some("d".into()), Some("40".into())],
                [Some("b".into()), Some("30".into())]
            ]
        );
        assert_eq!(
            text_rows(
                &client,
                "SELECT name, score FROM lit WHERE score > 5 ORDER BY 1 LIMIT 3"
            )
            .await,
            [
                [Some("a".into()), Some("20".into())],
                [Some("b".into()), Some("30".into())],
                [Some("c".into()), Some("10".into())]
            ]
        );
        assert_eq!(
            text_rows(
                &client,
                "SELECT score > 25, count(*) FROM lit WHERE id < 9 GROUP BY 1 ORDER BY 1"
            )
            .await,
            [
                [Some("f".into()), Some("2".into())],
                [Some("t".into()), Some("2".into())]
            ]
        );
    }
    // A number in a result column keeps PostgreSQL's column name and its value.
    for value in [7, 8] {
        let messages = client
            .simple_query(&format!("SELECT {value}, name FROM lit WHERE id = 2"))
            .await
            .expect("select");
        let row = messages
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            })
            .expect("a row");
        assert_eq!(row.columns()[0].name(), "?column?");
        assert_eq!(row.get(0), Some(value.to_string().as_str()));
        assert_eq!(row.get(1), Some("c"));
    }
    // Updates of one shape with other numbers each do their own.
    client
        .simple_query("UPDATE lit SET score = score + 5 WHERE id = 1")
        .await
        .expect("update");
    client
        .simple_query("UPDATE lit SET score = score + 100 WHERE id = 4")
        .await
        .expect("update");
    assert_eq!(
        text_rows(
            &client,
            "SELECT id, score FROM lit WHERE id IN (1, 4) ORDER BY 1"
        )
        .await,
        [
            [Some("1".into()), Some("45".into())],
            [Some("4".into()), Some("120".into())]
        ]
    );
}

/// pgbench's initialization (server-side generation, `-I dtGvp`, without the BEGIN/COMMIT it
/// wraps around the generation) and its TPC-B transaction statements, as it sends them. Scale
/// 0.2 (20,000 accounts) keeps the debug build's one big insert well inside the election
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pgbench_statements_run_on_a_follower() {
    let cluster = Cluster::start(3, &[]).await;
    let node = follower(&cluster).await;
    let client = connect(&cluster, node).await;
    let init = [
        "drop table if exists pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers",
        "create table pgbench_history(tid int,bid int,aid    int,delta int,mtime timestamp,filler char(22))",
        "create table pgbench_tellers(tid int not null,bid int,tbalance int,filler char(84)) with (fillfactor=100)",
        "create table pgbench_accounts(aid    int not null,bid int,abalance int,filler char(84)) with (fillfactor=100)",
        "create table pgbench_branches(bid int not null,bbalance int,filler char(88)) with (fillfactor=100)",
        "truncate table pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers",
        "insert into pgbench_branches(bid,bbalance) select bid, 0 from generate_series(1, 2) as bid",
        "insert into pgbench_tellers(tid,bid,tbalance) select tid, (tid - 1) / 10 + 1, 0 from generate_series(1, 20) as tid",
        "insert into pgbench_accounts(aid,bid,abalance,filler) select aid, (aid - 1) / 100000 + 1, 0, '' from generate_series(1, 20000) as aid",
        "vacuum analyze pgbench_branches",
        "vacuum analyze pgbench_tellers",
        "vacuum analyze pgbench_accounts",
        "vacuum analyze pgbench_history",
        "alter table pgbench_branches add primary key (bid)",
        "alter table pgbench_tellers add primary key (tid)",
        "alter table pgbench_accounts add primary key (aid)",
    ];
    for sql in init {
        client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    assert_eq!(
        single(&client, "select count(*) from pgbench_accounts").await,
        "20000"
    );

    // The TPC-B statements, prepared (pgbench -M prepared) and literal (-M simple).
    // (pgbench sends untyped text parameters; tokio-postgres wants to know `$1`'s type, which
    // the server cannot infer from `abalance + $1`, so it is given.)
    let update_account = client
        .prepare_typed(
            "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
            &[Type::INT4, Type::INT4],
        )
        .await
        .expect("prepare");
    let select_account = client
        .prepare("SELECT abalance FROM pgbench_accounts WHERE aid = $1")
        .await
        .expect("prepare");
    let insert_history = client
        .prepare(
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) \
             VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)",
        )
        .await
        .expect("prepare");
    let mut total = 0i64;
    for (aid, tid, bid, delta) in [
        (1i32, 1i32, 1i32, 100i32),
        (15_000, 12, 1, -40),
        (1, 3, 1, 7),
    ] {
        client
            .execute(&update_account, &[&delta, &aid])
            .await
            .expect("update account");
        client
            .simple_query(&format!(
                "UPDATE pgbench_tellers SET tbalance = tbalance + {delta} WHERE tid = {tid};\
                 UPDATE pgbench_branches SET bbalance = bbalance + {delta} WHERE bid = {bid}"
            ))
            .await
            .expect("update teller and branch");
        client
            .execute(&insert_history, &[&tid, &bid, &aid, &delta])
            .await
            .expect("insert history");
        total += i64::from(delta);
    }
    let balance: i32 = client
        .query_one(&select_account, &[&1i32])
        .await
        .expect("select")
        .get(0);
    assert_eq!(balance, 107);
    let sums = text_rows(
        &client,
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers), \
         (SELECT sum(bbalance) FROM pgbench_branches), (SELECT sum(delta) FROM pgbench_history)",
    )
    .await;
    let expected = Some(total.to_string());
    assert_eq!(
        sums,
        vec![vec![
            expected.clone(),
            expected.clone(),
            expected.clone(),
            expected
        ]]
    );
    assert_eq!(
        single(
            &client,
            "SELECT count(*) FROM pgbench_history WHERE mtime IS NULL"
        )
        .await,
        "0"
    );
}
