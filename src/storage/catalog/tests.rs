//! The catalog built from a real SQLite schema, read back as psql and drivers read it.

use rusqlite::Connection;

use super::{attach, refresh};
use crate::storage::pg_functions;

fn database() -> Connection {
    let conn = Connection::open_in_memory().expect("sqlite");
    attach(&conn).expect("catalog");
    pg_functions::register(&conn).expect("functions");
    conn.execute_batch(
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, \
           balance NUMERIC(10,2) DEFAULT 0, note VARCHAR(20));
         CREATE TABLE orders (id BIGINT PRIMARY KEY NOT NULL, \
           account_id INTEGER REFERENCES accounts (id) ON DELETE CASCADE, \
           total DOUBLE PRECISION CONSTRAINT positive CHECK (total >= 0));
         CREATE INDEX orders_acc ON orders (account_id);
         CREATE VIEW big AS SELECT * FROM orders WHERE total > 100;",
    )
    .expect("schema");
    refresh(&conn, true).expect("refresh");
    conn
}

fn strings(conn: &Connection, sql: &str) -> Vec<String> {
    let mut statement = conn.prepare(sql).expect(sql);
    statement
        .query_map([], |row| row.get::<_, String>(0))
        .expect(sql)
        .collect::<Result<_, _>>()
        .expect(sql)
}

/// `name type not-null` of each column of `table`, as `pg_attribute` has them.
fn attributes(conn: &Connection, table: &str) -> Vec<String> {
    strings(
        conn,
        &format!(
            "SELECT a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull \
             FROM pg_catalog.pg_attribute a WHERE a.attrelid = phx_regclass('{table}') \
             ORDER BY a.attnum"
        ),
    )
}

#[test]
fn relations_columns_and_constraints_read_like_postgres() {
    let conn = database();
    assert_eq!(
        strings(
            &conn,
            "SELECT relname || ':' || relkind FROM pg_catalog.pg_class \
             WHERE relnamespace = 2200 ORDER BY relname"
        ),
        [
            "accounts:r",
            "accounts_name_key:i",
            "accounts_pkey:i",
            "big:v",
            "orders:r",
            "orders_acc:i",
            "orders_pkey:i"
        ]
    );
    assert_eq!(
        attributes(&conn, "accounts"),
        [
            "id integer 1",
            "name text 1",
            "balance numeric(10,2) 0",
            "note character varying(20) 0"
        ]
    );
    assert_eq!(
        strings(
            &conn,
            "SELECT conname || ' ' || contype || ' ' || pg_get_constraintdef(oid) \
             FROM pg_catalog.pg_constraint WHERE conrelid = phx_regclass('orders') \
             ORDER BY conname"
        ),
        [
            "orders_account_id_fkey f FOREIGN KEY (account_id) REFERENCES accounts(id) ON DELETE CASCADE",
            "orders_pkey p PRIMARY KEY (id)",
            "positive c CHECK (total >= 0)"
        ]
    );
    assert_eq!(
        strings(
            &conn,
            "SELECT pg_get_indexdef(indexrelid) FROM pg_catalog.pg_index \
             WHERE indrelid = phx_regclass('orders') ORDER BY indexrelid"
        ),
        [
            "CREATE UNIQUE INDEX orders_pkey ON public.orders USING btree (id)",
            "CREATE INDEX orders_acc ON public.orders USING btree (account_id)"
        ]
    );
    assert_eq!(
        strings(
            &conn,
            "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable \
             FROM information_schema.columns WHERE table_name = 'orders' ORDER BY ordinal_position"
        ),
        [
            "orders.id bigint NO",
            "orders.account_id integer YES",
            "orders.total double precision YES"
        ]
    );
}

#[test]
fn a_schema_change_rebuilds_the_catalog_and_names_are_looked_up() {
    let conn = database();
    let before: i64 = conn
        .query_row("SELECT count(*) FROM pg_catalog.pg_attribute", [], |r| {
            r.get(0)
        })
        .expect("count");
    conn.execute_batch("ALTER TABLE accounts ADD COLUMN email TEXT")
        .expect("alter");
    refresh(&conn, false).expect("refresh");
    let after: i64 = conn
        .query_row("SELECT count(*) FROM pg_catalog.pg_attribute", [], |r| {
            r.get(0)
        })
        .expect("count");
    assert_eq!(after, before + 1);
    let oid: i64 = conn
        .query_row("SELECT phx_regclass('public.\"accounts\"')", [], |r| {
            r.get(0)
        })
        .expect("lookup");
    let name: String = conn
        .query_row("SELECT phx_regclass_name(?1)", [oid], |r| r.get(0))
        .expect("name");
    assert_eq!(name, "accounts");
    let missing = conn
        .query_row("SELECT phx_regclass('nope')", [], |r| r.get::<_, i64>(0))
        .expect_err("no such relation");
    assert!(
        missing
            .to_string()
            .contains("relation \"nope\" does not exist")
    );
    let lenient: Option<i64> = conn
        .query_row("SELECT phx_to_regclass('nope')", [], |r| r.get(0))
        .expect("to_regclass");
    assert_eq!(lenient, None);
    // Visible: public and pg_catalog, not information_schema.
    let visible: Vec<String> = strings(
        &conn,
        "SELECT relname FROM pg_catalog.pg_class WHERE relname IN ('accounts', 'pg_class', 'tables') \
         AND pg_table_is_visible(oid) ORDER BY relname",
    );
    assert_eq!(visible, ["accounts", "pg_class"]);
}

#[test]
fn a_bigint_rowid_alias_reads_as_bigint_and_keeps_its_primary_key() {
    let conn = database();
    conn.execute_batch(&format!(
        "CREATE TABLE tickets (id {} PRIMARY KEY NOT NULL, seat INTEGER)",
        crate::storage::rowid_alias::declaration("BIGINT", false)
    ))
    .expect("create");
    refresh(&conn, false).expect("refresh");
    assert_eq!(
        attributes(&conn, "tickets"),
        ["id bigint 1", "seat integer 0"]
    );
    assert_eq!(
        strings(
            &conn,
            "SELECT pg_get_indexdef(indexrelid) FROM pg_catalog.pg_index \
             WHERE indrelid = phx_regclass('tickets')"
        ),
        ["CREATE UNIQUE INDEX tickets_pkey ON public.tickets USING btree (id)"]
    );
}
