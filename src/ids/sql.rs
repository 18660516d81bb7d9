//! The Snowflake SQL functions, registered on every SQLite connection of a node (the writer, the
//! read pool and the describer):
//!
//! - `snowflake_id()` → `INTEGER`: a new ID from this node's generator. Not deterministic, so
//!   SQLite calls it once per row, and it is allowed in a column default:
//!   `CREATE TABLE t(id BIGINT PRIMARY KEY NOT NULL DEFAULT (snowflake_id()), ...)` (SQLite wants
//!   the parentheses). Not `INTEGER PRIMARY KEY`: SQLite numbers such a rowid alias itself and
//!   ignores its default (unless the table is `WITHOUT ROWID`). In a write it runs on the leader, and the changeset carries the value to the
//!   replicas, which never call it; in a read it runs on the node serving the read.
//! - `snowflake_decode(id)` → `TEXT`, a JSON object
//!   `{"timestamp":"2026-01-01T00:00:00.000Z","timestamp_ms":…,"datacenter":…,"worker":…,"sequence":…}`
//!   (use `->>` or `json_extract` for one field: `snowflake_decode(id) ->> 'worker'`). A SQLite
//!   scalar function returns one value, and JSON keeps the fields named. `NULL` gives `NULL`; an
//!   integer written as text (as JavaScript clients must, IDs exceeding 2^53) is accepted.
//!
//! Errors (a clock moved back beyond the bound, the lease not writable) fail the statement
//! with the generator's message.

use std::sync::Arc;

use rusqlite::Connection;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;

use crate::ids::{Clock, Generator, HighWaterMark, Layout};

/// Registers `snowflake_id()` and `snowflake_decode(id)` on `conn`.
pub fn register<C, H>(conn: &Connection, ids: &Arc<Generator<C, H>>) -> rusqlite::Result<()>
where
    C: Clock + 'static,
    H: HighWaterMark + 'static,
{
    let generator = ids.clone();
    conn.create_scalar_function("snowflake_id", 0, FunctionFlags::SQLITE_UTF8, move |_| {
        generator
            .next_id()
            // Always below 2^63: the layout keeps the sign bit 0.
            .map(|id| id as i64)
            .map_err(|e| rusqlite::Error::UserFunctionError(Box::new(e)))
    })?;
    let layout = ids.settings().layout;
    conn.create_scalar_function(
        "snowflake_decode",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        move |ctx| decode(&layout, ctx.get_raw(0)),
    )
}

fn decode(layout: &Layout, value: ValueRef<'_>) -> rusqlite::Result<Option<String>> {
    let id = match value {
        ValueRef::Null => return Ok(None),
        ValueRef::Integer(id) => Some(id),
        ValueRef::Text(text) => std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok()),
        ValueRef::Real(_) | ValueRef::Blob(_) => None,
    };
    id.and_then(|id| layout.decode_json(id))
        .map(|json| Some(json.to_string()))
        .ok_or_else(|| {
            rusqlite::Error::UserFunctionError(
                "snowflake_decode takes a non-negative integer ID".into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::high_water::FileHighWaterMark;
    use crate::ids::{GeneratorSettings, SystemClock};

    #[test]
    fn functions_issue_decode_and_serve_as_a_column_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = SystemClock.now_unix_ms();
        let layout = Layout::new("2024-01-01T00:00:00Z", 1, [41, 5, 5, 12], now).expect("layout");
        let settings = GeneratorSettings {
            layout,
            datacenter: 2,
            worker: 9,
            max_clock_rollback_ms: 10,
        };
        let ids = Arc::new(
            Generator::new(settings, SystemClock, FileHighWaterMark::new(dir.path()))
                .expect("generator"),
        );
        let conn = Connection::open_in_memory().expect("sqlite");
        register(&conn, &ids).expect("register");

        conn.execute_batch(
            "CREATE TABLE t(id BIGINT PRIMARY KEY NOT NULL DEFAULT (snowflake_id()), v TEXT);
             INSERT INTO t(v) VALUES ('a'), ('b'), ('c');",
        )
        .expect("default column");
        let stored: Vec<i64> = conn
            .prepare("SELECT id FROM t ORDER BY v")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert!(stored.windows(2).all(|w| w[0] < w[1]), "{stored:?}");

        // Called once per row, not once per statement.
        let distinct: i64 = conn
            .query_row(
                "SELECT count(DISTINCT x) FROM (WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 5000) SELECT snowflake_id() AS x FROM c)",
                [],
                |r| r.get(0),
            )
            .expect("many ids");
        assert_eq!(distinct, 5000);

        let (worker, datacenter, when): (i64, i64, String) = conn
            .query_row(
                "SELECT d ->> 'worker', d ->> 'datacenter', d ->> 'timestamp' FROM (SELECT snowflake_decode(?1) AS d)",
                [stored[0]],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("decode");
        assert_eq!((worker, datacenter), (9, 2));
        assert!(when.starts_with("20") && when.ends_with('Z'), "{when}");
        let as_text: String = conn
            .query_row(
                "SELECT snowflake_decode(?1)",
                [stored[0].to_string()],
                |r| r.get(0),
            )
            .expect("text id");
        assert_eq!(
            Some(serde_json::from_str(&as_text).expect("json")),
            layout.decode_json(stored[0])
        );
        let null: Option<String> = conn
            .query_row("SELECT snowflake_decode(NULL)", [], |r| r.get(0))
            .expect("null");
        assert_eq!(null, None);
        for bad in [
            "SELECT snowflake_decode(-1)",
            "SELECT snowflake_decode('x')",
        ] {
            let error = conn
                .query_row(bad, [], |r| r.get::<_, Option<String>>(0))
                .expect_err("refused");
            assert!(
                error.to_string().contains("non-negative integer"),
                "{error}"
            );
        }
    }
}
