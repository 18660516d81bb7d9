//! Table-driven tests of the translation: PostgreSQL in, SQLite text out (and every output is
//! checked to be accepted by a real SQLite with Phalanx's functions), refusals by SQLSTATE.

use rusqlite::Connection;

use super::*;
use crate::storage::pg_functions;

fn translated(sql: &str) -> Result<Vec<String>, TranslateError> {
    translate(&SqlText::new(sql)).map(|t| t.statements)
}

fn one(sql: &str) -> String {
    match translated(sql) {
        Ok(mut statements) if statements.len() == 1 => statements.remove(0),
        other => panic!("{sql}: {other:?}"),
    }
}

const NOW_SQL: &str = "rtrim(rtrim(strftime('%Y-%m-%d %H:%M:%f', 'now'), '0'), '.')";

#[test]
fn expressions_translate() {
    let cases: &[(&str, &str)] = &[
        (
            "SELECT $2, $1",
            "SELECT ?2 AS \"?column?\", ?1 AS \"?column?\"",
        ),
        ("SELECT 'a' || 'b'", "SELECT 'a' || 'b' AS \"?column?\""),
        ("select ID from Public.T", "SELECT id FROM t"),
        ("SELECT \"ID\" FROM t", "SELECT \"ID\" FROM t"),
        (
            "SELECT true, false, NULL",
            "SELECT true AS \"bool\", false AS \"bool\", NULL AS \"?column?\"",
        ),
        ("SELECT E'a\\nb'", "SELECT 'a\nb' AS \"?column?\""),
        ("SELECT $$it's$$", "SELECT 'it''s' AS \"?column?\""),
        ("SELECT '5'::int + 1", "SELECT 5 + 1 AS \"?column?\""),
        ("SELECT CAST('2.5' AS float8)", "SELECT 2.5 AS \"float8\""),
        ("SELECT 3.7::integer", "SELECT 4 AS \"int4\""),
        ("SELECT 'yes'::boolean", "SELECT 1 AS \"bool\""),
        (
            "SELECT 1.50::text, true::text, 'abcd'::varchar(2)",
            "SELECT '1.50' AS \"text\", 'true' AS \"text\", 'ab' AS \"varchar\"",
        ),
        (
            "SELECT x::int FROM t",
            "SELECT pg_cast(x, 'int4') AS \"x\" FROM t",
        ),
        (
            "SELECT x::text FROM t",
            "SELECT CAST(x AS TEXT) AS \"x\" FROM t",
        ),
        (
            "SELECT x::varchar(3) FROM t",
            "SELECT substr(CAST(x AS TEXT), 1, 3) AS \"x\" FROM t",
        ),
        (
            "SELECT $1::bigint",
            "SELECT pg_cast(?1, 'int8') AS \"int8\"",
        ),
        (
            "SELECT x::numeric(10,2) FROM t",
            "SELECT round(pg_cast(x, 'numeric'), 2) AS \"x\" FROM t",
        ),
        (
            "SELECT '2024-01-02 03:04:05+01'::timestamptz",
            "SELECT '2024-01-02 02:04:05' AS \"timestamptz\"",
        ),
        (
            "SELECT DATE '2024-01-02'",
            "SELECT '2024-01-02' AS \"date\"",
        ),
        (
            "SELECT '{\"a\":1}'::jsonb",
            "SELECT '{\"a\":1}' AS \"jsonb\"",
        ),
        ("SELECT '\\x0aff'::bytea", "SELECT X'0AFF' AS \"bytea\""),
        ("SELECT now()", &format!("SELECT {NOW_SQL} AS \"now\"")),
        (
            "SELECT CURRENT_TIMESTAMP",
            &format!("SELECT {NOW_SQL} AS \"current_timestamp\""),
        ),
        (
            "SELECT pg_catalog.now()",
            &format!("SELECT {NOW_SQL} AS \"now\""),
        ),
        (
            "SELECT LOCALTIMESTAMP",
            &format!("SELECT {NOW_SQL} AS \"localtimestamp\""),
        ),
        (
            "SELECT CURRENT_DATE",
            "SELECT date('now') AS \"current_date\"",
        ),
        (
            "SELECT a FROM t WHERE a LIKE 'x%'",
            "SELECT a FROM t WHERE pg_like(a, 'x%')",
        ),
        (
            "SELECT a FROM t WHERE a NOT ILIKE $1",
            "SELECT a FROM t WHERE NOT pg_ilike(a, ?1)",
        ),
        (
            "SELECT a FROM t WHERE a LIKE 'x#%' ESCAPE '#'",
            "SELECT a FROM t WHERE pg_like(a, 'x#%', '#')",
        ),
        (
            "SELECT a FROM t WHERE a IS DISTINCT FROM b",
            "SELECT a FROM t WHERE (a IS NOT b)",
        ),
        (
            "SELECT substring(a FROM 2 FOR 3) FROM t",
            "SELECT substr(a, 2, 3) AS \"substring\" FROM t",
        ),
        (
            "SELECT position('b' IN a) FROM t",
            "SELECT instr(a, 'b') AS \"position\" FROM t",
        ),
        (
            "SELECT trim(LEADING 'x' FROM a) FROM t",
            "SELECT ltrim(a, 'x') AS \"ltrim\" FROM t",
        ),
        (
            "SELECT char_length(a) FROM t",
            "SELECT length(a) AS \"char_length\" FROM t",
        ),
        ("SELECT 2 ^ 3", "SELECT power(2, 3) AS \"?column?\""),
        (
            "SELECT a FROM t ORDER BY a, b DESC, c NULLS FIRST",
            "SELECT a FROM t ORDER BY a NULLS LAST, b DESC NULLS FIRST, c NULLS FIRST",
        ),
        (
            "SELECT a FROM t LIMIT 10 OFFSET 5",
            "SELECT a FROM t LIMIT 10 OFFSET 5",
        ),
        (
            "SELECT a FROM t OFFSET 5",
            "SELECT a FROM t LIMIT -1 OFFSET 5",
        ),
        ("SELECT a FROM t LIMIT ALL", "SELECT a FROM t"),
        (
            "SELECT a FROM t OFFSET 2 ROWS FETCH FIRST 3 ROWS ONLY",
            "SELECT a FROM t LIMIT 3 OFFSET 2",
        ),
        (
            "SELECT a FROM t WHERE a = 1 FOR UPDATE",
            "SELECT a FROM t WHERE a = 1",
        ),
        (
            "SELECT * FROM generate_series(1, 3)",
            "SELECT * FROM (SELECT value AS \"generate_series\" FROM generate_series(1, 3)) AS generate_series",
        ),
        (
            "SELECT x FROM generate_series(1, 10, 2) AS s(x)",
            "SELECT x FROM (SELECT value AS \"x\" FROM generate_series(1, 10, 2)) AS s",
        ),
    ];
    for (postgres, sqlite) in cases {
        assert_eq!(one(postgres), *sqlite, "{postgres}");
    }
}

#[test]
fn result_columns_get_postgres_names_and_types() {
    let columns = |sql: &str| {
        let translation = translate(&SqlText::new(sql)).expect("translates");
        translation.column_decltypes
    };
    let known = |types: &[Option<&str>]| -> Vec<Option<String>> {
        types.iter().map(|t| t.map(str::to_owned)).collect()
    };
    assert_eq!(
        columns("SELECT count(*), a = 1, x::date, now(), 'a' || b, a, 7, 1.5 FROM t"),
        known(&[
            Some("BIGINT"),
            Some("BOOLEAN"),
            Some("DATE"),
            Some("TIMESTAMPTZ"),
            Some("TEXT"),
            None,
            Some("INTEGER"),
            Some("NUMERIC")
        ])
    );
    assert_eq!(
        columns("SELECT count(*) AS n, a IS NULL AS missing FROM t"),
        known(&[Some("BIGINT"), Some("BOOLEAN")])
    );
    assert!(
        columns("SELECT *, count(*) FROM t").is_empty(),
        "a * hides positions"
    );
    assert_eq!(
        one("SELECT count(*), max(a), t.b, (SELECT max(c) FROM u), a + 1, 'x'::text FROM t"),
        "SELECT count(*) AS \"count\", max(a) AS \"max\", t.b, (SELECT max(c) FROM u) AS \"max\", \
         a + 1 AS \"?column?\", 'x' AS \"text\" FROM t"
    );
    assert_eq!(
        one("SELECT count(*) FROM t UNION SELECT 1"),
        "SELECT count(*) AS \"count\" FROM t UNION SELECT 1"
    );
}

#[test]
fn dml_translates() {
    let cases: &[(&str, &str)] = &[
        (
            "INSERT INTO public.t (a, b) VALUES ($1, now()) RETURNING id",
            &format!("INSERT INTO t (a, b) VALUES (?1, {NOW_SQL}) RETURNING id"),
        ),
        (
            "INSERT INTO t (id, v) VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v",
            "INSERT INTO t (id, v) VALUES (1, 'a') ON CONFLICT(id) DO UPDATE SET v = excluded.v",
        ),
        (
            "INSERT INTO t (id) VALUES (1) ON CONFLICT DO NOTHING",
            "INSERT INTO t (id) VALUES (1) ON CONFLICT DO NOTHING",
        ),
        (
            "INSERT INTO t (id) SELECT id FROM u ON CONFLICT (id) DO NOTHING",
            "INSERT INTO t (id) SELECT id FROM u WHERE true ON CONFLICT(id) DO NOTHING",
        ),
        (
            "UPDATE t SET v = v || 'x' WHERE id = $1 RETURNING *",
            "UPDATE t SET v = v || 'x' WHERE id = ?1 RETURNING *",
        ),
        ("DELETE FROM t WHERE id = $1", "DELETE FROM t WHERE id = ?1"),
        (
            "INSERT INTO t DEFAULT VALUES",
            "INSERT INTO t DEFAULT VALUES",
        ),
        (
            "UPDATE t SET v = u.v FROM u WHERE t.id = u.id",
            "UPDATE t SET v = u.v FROM u WHERE t.id = u.id",
        ),
        (
            "INSERT INTO t (v) VALUES ('a\\b') RETURNING t.id",
            "INSERT INTO t (v) VALUES ('a\\b') RETURNING t.id",
        ),
    ];
    for (postgres, sqlite) in cases {
        assert_eq!(one(postgres), *sqlite, "{postgres}");
    }
}

#[test]
fn ddl_translates() {
    let cases: &[(&str, &[&str])] = &[
        (
            "CREATE TABLE t (id SERIAL PRIMARY KEY, name varchar(20) NOT NULL, at timestamptz DEFAULT now())",
            &[&format!(
                "CREATE TABLE t (id INTEGER /* phalanx:int4 serial */ PRIMARY KEY, name VARCHAR(20) NOT NULL, at TIMESTAMPTZ DEFAULT ({NOW_SQL}))"
            )],
        ),
        (
            "CREATE TABLE t (id bigint GENERATED BY DEFAULT AS IDENTITY, v jsonb, PRIMARY KEY (id))",
            &["CREATE TABLE t (id INTEGER /* phalanx:int8 */ PRIMARY KEY, v JSONB)"],
        ),
        (
            "CREATE TABLE t (id smallserial PRIMARY KEY)",
            &["CREATE TABLE t (id INTEGER /* phalanx:int2 serial */ PRIMARY KEY)"],
        ),
        (
            "CREATE TABLE t (id int8, v text, PRIMARY KEY (id))",
            &["CREATE TABLE t (id INTEGER /* phalanx:int8 */ PRIMARY KEY NOT NULL, v TEXT)"],
        ),
        (
            "CREATE TABLE t (a int, b text, PRIMARY KEY (a, b), UNIQUE (b))",
            &[
                "CREATE TABLE t (a INTEGER NOT NULL, b TEXT NOT NULL, PRIMARY KEY (a, b), UNIQUE (b))",
            ],
        ),
        (
            "CREATE TABLE t (k bigint PRIMARY KEY, f double precision, d date, u uuid, b bytea, ok bool DEFAULT true)",
            &[
                "CREATE TABLE t (k INTEGER /* phalanx:int8 */ PRIMARY KEY NOT NULL, f DOUBLE PRECISION, d DATE, u UUID, b BLOB, ok BOOLEAN DEFAULT true)",
            ],
        ),
        (
            "CREATE UNIQUE INDEX IF NOT EXISTS i ON public.t USING btree (a DESC, b)",
            &["CREATE UNIQUE INDEX IF NOT EXISTS i ON t(a DESC, b)"],
        ),
        (
            "CREATE INDEX ON t (a)",
            &["CREATE INDEX \"t_a_idx\" ON t(a)"],
        ),
        (
            "DROP TABLE IF EXISTS a, public.b CASCADE",
            &["DROP TABLE IF EXISTS a", "DROP TABLE IF EXISTS b"],
        ),
        ("DROP INDEX i", &["DROP INDEX i"]),
        ("TRUNCATE TABLE a, b", &["DELETE FROM a", "DELETE FROM b"]),
        ("truncate t restart identity", &["DELETE FROM t"]),
        (
            "ALTER TABLE t ADD COLUMN c int4 DEFAULT 0, DROP COLUMN d",
            &[
                "ALTER TABLE t ADD COLUMN c INTEGER DEFAULT 0",
                "ALTER TABLE t DROP COLUMN d",
            ],
        ),
        (
            "alter table pgbench_branches add primary key (bid)",
            &[
                "CREATE UNIQUE INDEX \"pgbench_branches_pkey\" ON pgbench_branches (\"bid\")",
                "CREATE INDEX \"pgbench_branches_pkey_not_null\" ON pgbench_branches (\"bid\") WHERE pg_not_null('pgbench_branches', 'bid', \"bid\")",
            ],
        ),
        (
            "ALTER TABLE ONLY public.t ADD CONSTRAINT t_k UNIQUE (a, b)",
            &["CREATE UNIQUE INDEX \"t_k\" ON t (\"a\", \"b\")"],
        ),
        (
            "ALTER TABLE t ADD CHECK (a > 0)",
            &["CREATE INDEX \"t_a_check\" ON t (\"a\") WHERE pg_check(a > 0, 't_a_check', 't')"],
        ),
        ("ALTER TABLE t OWNER TO someone", &[]),
        (
            "CREATE OR REPLACE VIEW v AS SELECT a FROM t",
            &["DROP VIEW IF EXISTS v", "CREATE VIEW v AS SELECT a FROM t"],
        ),
    ];
    for (postgres, sqlite) in cases {
        let expected: Vec<String> = sqlite.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(translated(postgres), Ok(expected), "{postgres}");
    }
}

#[test]
fn utility_statements_translate() {
    let vacuum = translate(&SqlText::new("vacuum analyze pgbench_branches")).expect("vacuum");
    assert!(vacuum.statements.is_empty());
    assert_eq!(vacuum.tag, Some(TagKind::Fixed("VACUUM".into())));
    let analyze = translate(&SqlText::new("ANALYSE t")).expect("analyze");
    assert_eq!(analyze.tag, Some(TagKind::Fixed("ANALYZE".into())));
    let truncate = translate(&SqlText::new("truncate pgbench_history")).expect("truncate");
    assert_eq!(truncate.tag, Some(TagKind::Fixed("TRUNCATE TABLE".into())));
    assert_eq!(one("BEGIN"), "BEGIN");
    assert_eq!(
        one("EXPLAIN SELECT a FROM t"),
        "EXPLAIN QUERY PLAN SELECT a FROM t"
    );
}

#[test]
fn refusals_name_the_construct() {
    let unsupported: &[(&str, &str)] = &[
        ("SELECT a FROM t WHERE a @> b", "operator"),
        ("SELECT a FROM t WHERE a = ANY(b)", "ANY/ALL over an array"),
        ("SELECT array_agg(a) FROM t", "arrays"),
        ("SELECT a FROM t WHERE a SIMILAR TO 'x'", "SIMILAR TO"),
        ("SELECT ARRAY[1, 2]", "arrays"),
        ("SELECT now() + interval '1 day'", "interval"),
        ("SELECT DISTINCT ON (a) a FROM t", "DISTINCT ON"),
        ("SELECT nextval('s')", "sequences"),
        ("SELECT 1 FROM t, LATERAL (SELECT 1) x", "LATERAL"),
        ("SELECT * FROM unnest(ARRAY[1])", "UNNEST"),
        ("SELECT * FROM unnest($1)", "UNNEST"),
        (
            "SELECT * FROM generate_series(1, 3) WITH ORDINALITY",
            "WITH ORDINALITY",
        ),
        ("SELECT x::interval FROM t", "type"),
        ("CREATE TABLE t (id serial, v int)", "SERIAL"),
        ("CREATE TABLE t (a int[])", "type"),
        ("CREATE SEQUENCE s", "CREATE SEQUENCE"),
        (
            "ALTER TABLE t ADD FOREIGN KEY (a) REFERENCES u",
            "FOREIGN KEY",
        ),
        ("ALTER TABLE t ALTER COLUMN a SET NOT NULL", "ALTER TABLE"),
        ("CREATE INDEX i ON t USING gin (a)", "GIN"),
        ("TRUNCATE t CASCADE", "CASCADE"),
        ("SELECT * FROM other.t", "schema public"),
        ("INSERT INTO t VALUES (DEFAULT)", "DEFAULT"),
        (
            "INSERT INTO t VALUES (1) ON CONFLICT ON CONSTRAINT c DO NOTHING",
            "ON CONSTRAINT",
        ),
        ("SELECT clock_timestamp()", "clock_timestamp"),
        ("SELECT current_user, 1", "current_user"),
    ];
    for (sql, named) in unsupported {
        match translated(sql) {
            Err(TranslateError::Unsupported(what)) => {
                assert!(what.contains(named), "{sql}: {what} should name {named}")
            }
            other => panic!("{sql}: expected a refusal, got {other:?}"),
        }
    }
    assert!(matches!(
        translated("SELEC 1"),
        Err(TranslateError::Syntax(_))
    ));
    assert!(matches!(
        translated("SELECT (1"),
        Err(TranslateError::Syntax(_))
    ));
    assert_eq!(
        translated("SELECT 'abc'::int"),
        Err(TranslateError::InvalidValue {
            code: "22P02",
            message: "invalid input syntax for type integer: \"abc\"".into()
        })
    );
    let deep = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
    assert!(
        translated(&deep).is_err(),
        "deep nesting is refused, not a stack overflow"
    );
}

/// The statements pgbench (15) sends, with the values it substitutes, and sysbench's
/// oltp_read_write for PostgreSQL.
const PGBENCH: &[&str] = &[
    "drop table if exists pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers",
    "create table pgbench_history(tid int,bid int,aid    int,delta int,mtime timestamp,filler char(22))",
    "create table pgbench_tellers(tid int not null,bid int,tbalance int,filler char(84)) with (fillfactor=100)",
    "create table pgbench_accounts(aid    int not null,bid int,abalance int,filler char(84)) with (fillfactor=100)",
    "create table pgbench_branches(bid int not null,bbalance int,filler char(88)) with (fillfactor=100)",
    "truncate table pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers",
    "insert into pgbench_branches(bid,bbalance) select bid, 0 from generate_series(1, 2) as bid",
    "insert into pgbench_tellers(tid,bid,tbalance) select tid, (tid - 1) / 10 + 1, 0 from generate_series(1, 20) as tid",
    "insert into pgbench_accounts(aid,bid,abalance,filler) select aid, (aid - 1) / 100000 + 1, 0, '' from generate_series(1, 2000) as aid",
    "insert into pgbench_branches(bid,bbalance) values(3,0)",
    "insert into pgbench_tellers(tid,bid,tbalance) values (21,3,0)",
    "vacuum analyze pgbench_branches",
    "alter table pgbench_branches add primary key (bid)",
    "alter table pgbench_tellers add primary key (tid)",
    "alter table pgbench_accounts add primary key (aid)",
    "select count(*) from pgbench_branches",
    "vacuum pgbench_branches",
    "truncate pgbench_history",
    "UPDATE pgbench_accounts SET abalance = abalance + -4321 WHERE aid = 1234",
    "SELECT abalance FROM pgbench_accounts WHERE aid = 1234",
    "UPDATE pgbench_tellers SET tbalance = tbalance + -4321 WHERE tid = 7",
    "UPDATE pgbench_branches SET bbalance = bbalance + -4321 WHERE bid = 1",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 1234, -4321, CURRENT_TIMESTAMP)",
    "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
    "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)",
];

const SYSBENCH: &[&str] = &[
    "CREATE TABLE sbtest1(id SERIAL, k INTEGER DEFAULT '0' NOT NULL, c CHAR(120) DEFAULT '' NOT NULL, pad CHAR(60) DEFAULT '' NOT NULL, PRIMARY KEY (id))",
    "INSERT INTO sbtest1(k, c, pad) VALUES(49929, '83868641912-28773972837', '67847967377-48000963322'),(50000, 'x', 'y')",
    "CREATE INDEX k_1 ON sbtest1(k)",
    "SELECT c FROM sbtest1 WHERE id=$1",
    "SELECT c FROM sbtest1 WHERE id BETWEEN $1 AND $2",
    "SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN $1 AND $2",
    "SELECT c FROM sbtest1 WHERE id BETWEEN $1 AND $2 ORDER BY c",
    "SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN $1 AND $2 ORDER BY c",
    "UPDATE sbtest1 SET k=k+1 WHERE id=$1",
    "UPDATE sbtest1 SET c=$1 WHERE id=$2",
    "DELETE FROM sbtest1 WHERE id=$1",
    "INSERT INTO sbtest1 (id, k, c, pad) VALUES ($1, $2, $3, $4)",
    "DROP TABLE IF EXISTS sbtest1",
];

/// Runs every translation on a real SQLite (with Phalanx's functions): the output must be
/// SQL SQLite accepts, and pgbench's data must come out right.
#[test]
fn pgbench_and_sysbench_statements_run_on_sqlite() {
    let conn = Connection::open_in_memory().expect("sqlite");
    pg_functions::register(&conn).expect("functions");
    let run = |sql: &str, params: &[i64]| {
        for statement in translated(sql).unwrap_or_else(|e| panic!("{sql}: {e}")) {
            let mut prepared = conn
                .prepare(&statement)
                .unwrap_or_else(|e| panic!("{sql}\n→ {statement}\n{e}"));
            let count = prepared.parameter_count();
            let params: Vec<i64> = params.iter().copied().take(count).collect();
            let mut rows = prepared
                .query(rusqlite::params_from_iter(params))
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
            while rows.next().expect("step").is_some() {}
        }
    };
    for sql in PGBENCH {
        run(sql, &[5, 10, 100, -5]);
    }
    let count: i64 = conn
        .query_row("SELECT count(*), sum(bid) FROM pgbench_accounts", [], |r| {
            r.get(0)
        })
        .expect("count");
    assert_eq!(count, 2000);
    let duplicate = conn.execute("INSERT INTO pgbench_branches (bid) VALUES (1)", []);
    assert!(
        duplicate.is_err(),
        "the added primary key refuses duplicates"
    );
    let null = conn.execute("INSERT INTO pgbench_branches (bid) VALUES (NULL)", []);
    assert!(null.is_err(), "a primary key column refuses NULL");
    for sql in SYSBENCH {
        run(sql, &[1, 100, 3, 4]);
    }
}

/// Regular expressions and `= ANY(ARRAY[...])` work in every statement; arrays as JSON only
/// in catalog queries.
#[test]
fn regular_expressions_and_any_lists() {
    assert_eq!(
        one("SELECT a FROM t WHERE a ~ '^x' AND b !~* 'y'"),
        "SELECT a FROM t WHERE pg_regex(a, '^x', 0) AND NOT pg_regex(b, 'y', 1)"
    );
    assert_eq!(
        one("SELECT a FROM t WHERE a = ANY(ARRAY[$1, $2])"),
        "SELECT a FROM t WHERE a IN (?1, ?2)"
    );
    assert_eq!(
        one("SELECT relname FROM pg_class WHERE relkind = ANY(ARRAY['r', 'p'])"),
        "SELECT relname FROM pg_catalog.pg_class WHERE relkind IN ('r', 'p')"
    );
    assert_eq!(
        one("SELECT 'd' = ANY(stxkind) FROM pg_catalog.pg_statistic_ext"),
        "SELECT ('d' IN (SELECT value FROM json_each(stxkind))) AS \"?column?\" \
         FROM pg_catalog.pg_statistic_ext"
    );
    assert_eq!(
        one("SELECT c.oid::pg_catalog.regclass, 't'::regclass::oid FROM pg_catalog.pg_class c"),
        "SELECT phx_regclass_name(c.oid) AS \"oid\", pg_cast(phx_regclass('t'), 'int8') AS \"oid\" \
         FROM pg_catalog.pg_class c"
    );
}

/// SQLAlchemy's bulk ORM insert selects from `(VALUES ...) AS t(a, b)`: the column aliases
/// become names of SQLite's column1, column2, ... and the rows come out in order.
#[test]
fn values_with_column_aliases_run_on_sqlite() {
    let conn = Connection::open_in_memory().expect("sqlite");
    pg_functions::register(&conn).expect("functions");
    conn.execute_batch("CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT)")
        .expect("create");
    let sql = "INSERT INTO p (name) SELECT p0::VARCHAR FROM (VALUES ($1::VARCHAR, 0), ($2::VARCHAR, 1)) \
               AS imp_sen(p0, sen_counter) ORDER BY sen_counter RETURNING p.id, p.name";
    let [statement] = translated(sql)
        .expect("translates")
        .try_into()
        .expect("one statement");
    let mut prepared = conn.prepare(&statement).expect("prepares");
    let names: Vec<String> = prepared
        .query_map(["ada", "grace"], |row| row.get(1))
        .expect("runs")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(names, ["ada", "grace"]);
    let refused = translated("SELECT a FROM (SELECT 1) AS t(a)").map_err(|e| e.to_string());
    assert!(
        refused.is_err_and(|e| e.contains("derived table")),
        "a SELECT cannot be renamed by position in SQLite"
    );
}
