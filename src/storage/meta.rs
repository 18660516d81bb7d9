//! The `_phalanx_meta` table: Raft bookkeeping stored inside the replicated database itself.
//!
//! The applied log id and the last applied membership are written in the same SQLite
//! transaction as the data they describe, so after a crash the database and its position in the
//! Raft log can never disagree: a restart resumes exactly where the last commit left off, and a
//! snapshot (a copy of the file) carries its own position.

use rusqlite::{Connection, OptionalExtension, params};

use crate::raft::types::{LogId, StoredMembership};
use crate::storage::error::EngineError;

/// Name of the bookkeeping table; user SQL never sees it replicated as data.
pub const META_TABLE: &str = "_phalanx_meta";

const APPLIED_KEY: &str = "applied";
const MEMBERSHIP_KEY: &str = "membership";

/// Creates the table if the database is new, and `_phalanx_settings` (runtime settings written
/// by ordinary replicated writes: `crate::dispatch::settings`). Every node creates both the
/// same way at open, so changesets on them apply everywhere.
pub fn ensure_table(conn: &Connection) -> Result<(), EngineError> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {META_TABLE}(key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS {}(key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        crate::dispatch::settings::SETTINGS_TABLE
    ))?;
    Ok(())
}

/// The last applied log id and membership as committed (or as seen by `conn`'s transaction).
pub fn read_applied_state(
    conn: &Connection,
) -> Result<(Option<LogId>, StoredMembership), EngineError> {
    let applied = read_value::<Option<LogId>>(conn, APPLIED_KEY)?.flatten();
    let membership = read_value::<StoredMembership>(conn, MEMBERSHIP_KEY)?.unwrap_or_default();
    Ok((applied, membership))
}

pub fn write_applied(conn: &Connection, applied: &LogId) -> Result<(), EngineError> {
    write_value(conn, APPLIED_KEY, &Some(applied))
}

pub fn write_membership(
    conn: &Connection,
    membership: &StoredMembership,
) -> Result<(), EngineError> {
    write_value(conn, MEMBERSHIP_KEY, membership)
}

fn read_value<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    key: &str,
) -> Result<Option<T>, EngineError> {
    let text: Option<String> = conn
        .prepare_cached(&format!("SELECT value FROM {META_TABLE} WHERE key = ?1"))?
        .query_row([key], |row| row.get(0))
        .optional()?;
    match text {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| EngineError::Corrupt(format!("{META_TABLE}.{key}: {e}"))),
    }
}

fn write_value<T: serde::Serialize>(
    conn: &Connection,
    key: &str,
    value: &T,
) -> Result<(), EngineError> {
    let text = serde_json::to_string(value)
        .map_err(|e| EngineError::Corrupt(format!("cannot encode {key}: {e}")))?;
    conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO {META_TABLE}(key, value) VALUES (?1, ?2)"
    ))?
    .execute(params![key, text])?;
    Ok(())
}
