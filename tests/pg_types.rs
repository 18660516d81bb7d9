//! PostgreSQL types end to end, through a follower: dates and timestamps as chrono values in
//! tokio-postgres's binary format and as PostgreSQL's exact text, bigint keys that are SQLite
//! rowid aliases reported as int8, and the scalar types `pg_protocol` does not cover.

mod common;

use std::error::Error;

use bytes::BytesMut;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use common::Cluster;
use common::pg::{code, connect, follower, rows};
use tokio_postgres::Client;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

/// A result value's raw binary bytes, whatever its type.
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A parameter sent as raw binary bytes, refused unless the server asks for `.0`.
#[derive(Debug)]
struct RawParam(Type, Vec<u8>);

impl ToSql for RawParam {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        if *ty != self.0 {
            return Err(format!("the server asks for {ty}, not {}", self.0).into());
        }
        out.extend_from_slice(&self.1);
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

async fn text_rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    rows(&client.simple_query(sql).await.expect(sql))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dates_and_timestamps_round_trip_and_print_as_postgres() {
    let cluster = Cluster::start(3, &[]).await;
    let node = follower(&cluster).await;
    let (client, _connection) = connect(&cluster, node).await.expect("connect");
    client
        .batch_execute(
            "CREATE TABLE events (id int PRIMARY KEY, day date, clock time, local timestamp, \
             at timestamptz)",
        )
        .await
        .expect("create");

    // Parameters in binary: chrono values, one row after PostgreSQL's epoch and one before.
    let insert = "INSERT INTO events (id, day, clock, local, at) VALUES ($1, $2, $3, $4, $5)";
    let day = NaiveDate::from_ymd_opt(2026, 11, 22).expect("date");
    let clock = NaiveTime::from_hms_micro_opt(8, 15, 30, 123_456).expect("time");
    let local: NaiveDateTime = day.and_time(clock);
    let at: DateTime<Utc> = Utc.from_utc_datetime(&local);
    client
        .execute(insert, &[&1i32, &day, &clock, &local, &at])
        .await
        .expect("insert 2026");
    let old_day = NaiveDate::from_ymd_opt(1999, 12, 31).expect("date");
    let old_clock = NaiveTime::from_hms_opt(23, 59, 59).expect("time");
    let old_local = old_day.and_time(old_clock);
    let old_at = Utc.from_utc_datetime(&old_local);
    client
        .execute(insert, &[&2i32, &old_day, &old_clock, &old_local, &old_at])
        .await
        .expect("insert 1999");

    // Results in binary, with the types' OIDs in RowDescription.
    let select = client
        .prepare("SELECT day, clock, local, at FROM events WHERE id = $1")
        .await
        .expect("prepare");
    let types: Vec<Type> = select.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(
        types,
        [Type::DATE, Type::TIME, Type::TIMESTAMP, Type::TIMESTAMPTZ]
    );
    for (id, expected) in [
        (1i32, (day, clock, local, at)),
        (2, (old_day, old_clock, old_local, old_at)),
    ] {
        let row = client.query_one(&select, &[&id]).await.expect("select");
        let got: (NaiveDate, NaiveTime, NaiveDateTime, DateTime<Utc>) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        assert_eq!(got, expected, "row {id}");
    }

    // Parameters compare with stored values: both are in the one stored form.
    let cutoff = Utc
        .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .expect("cutoff");
    let ids = |rows: Vec<tokio_postgres::Row>| rows.iter().map(|r| r.get(0)).collect::<Vec<i32>>();
    let later = client
        .query(
            "SELECT id FROM events WHERE at > $1 ORDER BY id",
            &[&cutoff],
        )
        .await
        .expect("timestamptz comparison");
    assert_eq!(ids(later), [1]);
    let same_day = client
        .query("SELECT id FROM events WHERE day = $1", &[&old_day])
        .await
        .expect("date comparison");
    assert_eq!(ids(same_day), [2]);
    let between = client
        .query(
            "SELECT id FROM events WHERE local BETWEEN $1 AND $2 ORDER BY id",
            &[&old_local, &local],
        )
        .await
        .expect("timestamp range");
    assert_eq!(ids(between), [1, 2]);

    // Text, exactly as PostgreSQL prints it with DateStyle ISO and TimeZone UTC.
    assert_eq!(
        text_rows(
            &client,
            "SELECT day, clock, local, at FROM events ORDER BY id"
        )
        .await,
        [
            [
                "2026-11-22",
                "08:15:30.123456",
                "2026-11-22 08:15:30.123456",
                "2026-11-22 08:15:30.123456+00"
            ]
            .map(|s| Some(s.to_owned())),
            [
                "1999-12-31",
                "23:59:59",
                "1999-12-31 23:59:59",
                "1999-12-31 23:59:59+00"
            ]
            .map(|s| Some(s.to_owned())),
        ]
    );

    // Literals with a `T` and a zone: read back in UTC, in text and in binary.
    client
        .batch_execute(
            "INSERT INTO events VALUES (3, '2026-01-02', '07:00', '2026-01-02T07:00:00.500', \
             '2026-01-02T09:00:00+02:00'), (4, '2026-01-02'::date, '07:00'::time, \
             TIMESTAMP '2026-01-02 07:00:00.25', '2026-01-02 09:00:00+02'::timestamptz)",
        )
        .await
        .expect("literals");
    assert_eq!(
        text_rows(
            &client,
            "SELECT local, at FROM events WHERE id >= 3 ORDER BY id"
        )
        .await,
        [
            ["2026-01-02 07:00:00.5", "2026-01-02 07:00:00+00"].map(|s| Some(s.to_owned())),
            ["2026-01-02 07:00:00.25", "2026-01-02 07:00:00+00"].map(|s| Some(s.to_owned())),
        ]
    );
    let row = client
        .query_one("SELECT at FROM events WHERE id = 3", &[])
        .await
        .expect("select 3");
    assert_eq!(
        row.get::<_, DateTime<Utc>>(0),
        Utc.with_ymd_and_hms(2026, 1, 2, 7, 0, 0)
            .single()
            .expect("at")
    );

    // A stored value that is not a date is an error, in either format, never a wrong answer.
    client
        .batch_execute("INSERT INTO events (id, day) VALUES (5, 'someday')")
        .await
        .expect("insert text into a date column");
    let error = client
        .query("SELECT day FROM events WHERE id = 5", &[])
        .await
        .expect_err("binary");
    assert_eq!(code(&error), "22007");
    let error = client
        .simple_query("SELECT day FROM events WHERE id = 5")
        .await
        .expect_err("text");
    assert_eq!(code(&error), "22007");

    // now() is a timestamptz, CURRENT_DATE a date, a cast its type.
    let row = client
        .query_one(
            "SELECT now(), CURRENT_DATE, now()::date, '12:30'::time",
            &[],
        )
        .await
        .expect("now");
    let now: DateTime<Utc> = row.get(0);
    let skew = (Utc::now() - now).num_seconds().abs();
    assert!(skew < 60, "now() is the time: {now}");
    assert_eq!(row.get::<_, NaiveDate>(1), now.date_naive());
    assert_eq!(row.get::<_, NaiveDate>(2), now.date_naive());
    assert_eq!(
        row.get::<_, NaiveTime>(3),
        NaiveTime::from_hms_opt(12, 30, 0).expect("time")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bigint_keys_are_int8_rowid_aliases() {
    let cluster = Cluster::start(3, &[]).await;
    let node = follower(&cluster).await;
    let (client, _connection) = connect(&cluster, node).await.expect("connect");
    client
        .batch_execute(
            "CREATE TABLE serial8 (id BIGSERIAL PRIMARY KEY, v text); \
             CREATE TABLE identity8 (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text); \
             CREATE TABLE serial2 (id smallserial, v text, PRIMARY KEY (id)); \
             CREATE TABLE serial4 (id serial PRIMARY KEY, v text); \
             CREATE TABLE keyed8 (id bigint PRIMARY KEY, v text)",
        )
        .await
        .expect("create");

    // SQLite numbers the rows (the rowid alias), and the key is reported as PostgreSQL's type.
    for (table, ty) in [
        ("serial8", Type::INT8),
        ("identity8", Type::INT8),
        ("serial2", Type::INT2),
        ("serial4", Type::INT4),
    ] {
        let insert = client
            .prepare(&format!("INSERT INTO {table} (v) VALUES ($1) RETURNING id"))
            .await
            .expect("prepare insert");
        assert_eq!(insert.columns()[0].type_(), &ty, "{table}");
        let mut ids = Vec::new();
        for v in ["a", "b"] {
            let row = client.query_one(&insert, &[&v]).await.expect("insert");
            ids.push(match ty {
                Type::INT8 => row.get::<_, i64>(0),
                Type::INT2 => row.get::<_, i16>(0).into(),
                _ => row.get::<_, i32>(0).into(),
            });
        }
        assert_eq!(ids, [1, 2], "{table}");
    }

    // A bigint parameter compared with the key is int8 too.
    client
        .execute(
            "INSERT INTO keyed8 (id, v) VALUES ($1, $2)",
            &[&5_000_000_000i64, &"big"],
        )
        .await
        .expect("insert keyed8");
    let row = client
        .query_one(
            "SELECT id, v FROM keyed8 WHERE id = $1",
            &[&5_000_000_000i64],
        )
        .await
        .expect("select keyed8");
    assert_eq!(row.columns()[0].type_(), &Type::INT8);
    assert_eq!(row.get::<_, i64>(0), 5_000_000_000);
    let row = client
        .query_one("SELECT id FROM serial8 WHERE id = $1", &[&2i64])
        .await
        .expect("select serial8");
    assert_eq!(row.get::<_, i64>(0), 2);

    // The catalog agrees (psql's \d, drivers' introspection).
    assert_eq!(
        text_rows(
            &client,
            "SELECT c.relname, format_type(a.atttypid, a.atttypmod) \
             FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             WHERE a.attname = 'id' AND c.relkind = 'r' ORDER BY c.relname"
        )
        .await,
        [
            ["identity8", "bigint"],
            ["keyed8", "bigint"],
            ["serial2", "smallint"],
            ["serial4", "integer"],
            ["serial8", "bigint"],
        ]
        .map(|r| r.map(|s| Some(s.to_owned())))
    );
    // A SERIAL's default is its sequence's next value, as PostgreSQL shows it (what psql's \d
    // prints and ORMs take as "autoincrement"); an identity or plain key has none.
    assert_eq!(
        text_rows(
            &client,
            "SELECT c.relname, pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) \
             FROM pg_catalog.pg_attrdef d JOIN pg_catalog.pg_class c ON c.oid = d.adrelid \
             ORDER BY c.relname"
        )
        .await,
        [
            ["serial2", "nextval('serial2_id_seq'::regclass)"],
            ["serial4", "nextval('serial4_id_seq'::regclass)"],
            ["serial8", "nextval('serial8_id_seq'::regclass)"],
        ]
        .map(|r| r.map(|s| Some(s.to_owned())))
    );
    assert_eq!(
        text_rows(
            &client,
            "SELECT table_name, column_default FROM information_schema.columns \
             WHERE column_name = 'id' AND table_name IN ('serial4', 'identity8') \
             ORDER BY table_name"
        )
        .await,
        [
            [Some("identity8".to_owned()), None],
            [
                Some("serial4".to_owned()),
                Some("nextval('serial4_id_seq'::regclass)".to_owned())
            ],
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn other_scalar_types_in_binary_and_text() {
    let cluster = Cluster::start(3, &[]).await;
    let node = follower(&cluster).await;
    let (client, _connection) = connect(&cluster, node).await.expect("connect");
    client
        .batch_execute(
            "CREATE TABLE misc (id int PRIMARY KEY, s smallint, r real, n numeric(10,3), \
             name varchar(20), doc json, u uuid)",
        )
        .await
        .expect("create");
    // numeric 12345.678: 3 base-10000 digits [1, 2345, 6780], weight 1, scale 3.
    let numeric = vec![0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c];
    let uuid: Vec<u8> = (0u8..16).collect();
    let doc = br#"{"a": [1, 2]}"#.to_vec();
    client
        .execute(
            "INSERT INTO misc (id, s, r, n, name, doc, u) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &1i32,
                &-7i16,
                &1.25f32,
                &RawParam(Type::NUMERIC, numeric.clone()),
                &"pear",
                &RawParam(Type::JSON, doc.clone()),
                &RawParam(Type::UUID, uuid.clone()),
            ],
        )
        .await
        .expect("insert");
    let row = client
        .query_one(
            "SELECT s, r, n, name, doc, u FROM misc WHERE id = $1",
            &[&1i32],
        )
        .await
        .expect("select");
    let types: Vec<Type> = row.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(
        types,
        [
            Type::INT2,
            Type::FLOAT4,
            Type::NUMERIC,
            Type::VARCHAR,
            Type::JSON,
            Type::UUID
        ]
    );
    assert_eq!(row.get::<_, i16>(0), -7);
    assert_eq!(row.get::<_, f32>(1), 1.25);
    assert_eq!(row.get::<_, Raw>(2).0, numeric);
    assert_eq!(row.get::<_, String>(3), "pear");
    assert_eq!(row.get::<_, Raw>(4).0, doc);
    assert_eq!(row.get::<_, Raw>(5).0, uuid);
    assert_eq!(
        text_rows(&client, "SELECT s, r, n, name, doc, u FROM misc").await,
        [[
            "-7",
            "1.25",
            "12345.678",
            "pear",
            r#"{"a": [1, 2]}"#,
            "00010203-0405-0607-0809-0a0b0c0d0e0f"
        ]
        .map(|s| Some(s.to_owned()))]
    );
}
