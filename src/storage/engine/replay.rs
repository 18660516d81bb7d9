//! Resuming a parked interactive transaction cheaply: its changes applied again row by row with
//! the writer's cached statements. SQLite's own changeset apply prepares its statements afresh
//! on every call, and a transaction interleaved with others is resumed at nearly every step.
//!
//! Only the common case is handled here; anything else answers [`Replayed::Fallback`] and the
//! caller undoes what was replayed and takes a slower path: a database with triggers or foreign
//! keys (their effects are already in the changes and must not run again; SQLite's apply, which
//! knows how, is used instead), a table whose columns differ from the change, a row not found
//! or a constraint failing. An insert whose hidden rowid another transaction took meanwhile is
//! replayed again under a session with `renumber` (a fresh rowid, recorded).
//!
//! Old values are not compared: the transaction owns every row it changed (row locks), so no one
//! else changed them since.

use rusqlite::Connection;
use rusqlite::types::Value;

use crate::storage::changeset::{Change, ChangeKind, ResumeSchema};

/// How a replay ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Replayed {
    Done,
    /// Not replayed, for this reason: take the full path.
    Fallback(String),
}

/// Applies `changes` in order; on `Fallback` some of them may be applied (the caller undoes).
/// With `renumber`, a row inserted into a table keyed by rowid whose rowid is taken goes in under
/// a fresh one (the caller then records the changes anew, since they no longer match).
pub(super) fn replay(
    conn: &Connection,
    changes: &[Change],
    schema: &ResumeSchema,
    renumber: bool,
) -> Result<Replayed, rusqlite::Error> {
    if schema.triggers || schema.foreign_keys {
        return Ok(Replayed::Fallback(
            "the database has triggers or foreign keys".into(),
        ));
    }
    for change in changes {
        let Some(columns) = schema.columns.get(&change.table) else {
            return Ok(Replayed::Fallback(format!("no table {}", change.table)));
        };
        let by_rowid = schema.renumbered.contains(&change.table);
        let mut names: Vec<String> = Vec::with_capacity(columns.len() + 1);
        if by_rowid {
            names.push("rowid".into());
        }
        names.extend(columns.iter().map(|c| quote(c)));
        let width = match change.kind {
            ChangeKind::Insert => change.new.len(),
            _ => change.old.len(),
        };
        if names.len() != width || change.primary_key.len() != width {
            return Ok(Replayed::Fallback(format!(
                "table {} has other columns",
                change.table
            )));
        }
        let table = quote(&change.table);
        let done = match change.kind {
            ChangeKind::Insert => {
                let values: Option<Vec<&Value>> = change.new.iter().map(Option::as_ref).collect();
                let Some(values) = values else {
                    return Ok(Replayed::Fallback("an insert without every value".into()));
                };
                let inserted = insert(conn, &table, &names, &values)?;
                if !inserted && renumber && by_rowid {
                    insert(conn, &table, &names[1..], &values[1..])?
                } else {
                    inserted
                }
            }
            ChangeKind::Update => {
                let mut assignments = Vec::new();
                let mut values = Vec::new();
                for ((name, value), is_key) in
                    names.iter().zip(&change.new).zip(&change.primary_key)
                {
                    if let (Some(value), false) = (value, is_key) {
                        assignments.push(format!("{name} = ?"));
                        values.push(value);
                    }
                }
                if assignments.is_empty() {
                    continue;
                }
                let Some((condition, keys)) = key_condition(&names, change) else {
                    return Ok(Replayed::Fallback("an update without its key".into()));
                };
                values.extend(keys);
                let sql = format!(
                    "UPDATE main.{table} SET {} WHERE {condition}",
                    assignments.join(", ")
                );
                run(conn, &sql, values)?
            }
            ChangeKind::Delete => {
                let Some((condition, keys)) = key_condition(&names, change) else {
                    return Ok(Replayed::Fallback("a delete without its key".into()));
                };
                run(
                    conn,
                    &format!("DELETE FROM main.{table} WHERE {condition}"),
                    keys,
                )?
            }
        };
        if !done {
            return Ok(Replayed::Fallback(format!(
                "a change to {} no longer applies",
                change.table
            )));
        }
    }
    Ok(Replayed::Done)
}

fn insert(
    conn: &Connection,
    table: &str,
    names: &[String],
    values: &[&Value],
) -> Result<bool, rusqlite::Error> {
    let placeholders = vec!["?"; values.len()].join(", ");
    let sql = format!(
        "INSERT INTO main.{table} ({}) VALUES ({placeholders})",
        names.join(", ")
    );
    run(conn, &sql, values.to_vec())
}

/// `"k1" = ? AND ...` over the key columns, with the old row's key values.
fn key_condition<'c>(names: &[String], change: &'c Change) -> Option<(String, Vec<&'c Value>)> {
    let mut terms = Vec::new();
    let mut values = Vec::new();
    for ((name, value), is_key) in names.iter().zip(&change.old).zip(&change.primary_key) {
        if *is_key {
            terms.push(format!("{name} = ?"));
            values.push(value.as_ref()?);
        }
    }
    (!terms.is_empty()).then(|| (terms.join(" AND "), values))
}

/// Runs one change; whether it changed exactly one row. A constraint failure is `false`.
fn run(conn: &Connection, sql: &str, values: Vec<&Value>) -> Result<bool, rusqlite::Error> {
    let mut statement = conn.prepare_cached(sql)?;
    match statement.execute(rusqlite::params_from_iter(values)) {
        Ok(rows) => Ok(rows == 1),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
