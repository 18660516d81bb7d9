//! Records the row changes of one short piece of work (a statement of an interactive
//! transaction) through SQLite's pre-update hook, and writes them as a changeset in the session
//! extension's format, so that everything downstream (row keys, merging, followers' apply)
//! handles it like a session's.
//!
//! Why not a session object: a session learns each table's columns with a freshly prepared
//! `PRAGMA table_xinfo` when the table is first changed, and again when the changeset is
//! generated, and then reads every changed row back with another freshly prepared `SELECT`.
//! For one statement touching a few rows that is most of the work (a third of the leader's
//! writer thread under pgbench's TPC-B). Here the columns come from a [`Shapes`] cache kept per
//! schema version, and the values come straight from the hook.
//!
//! What a changeset holds is the same as a session's: per row, the difference between its
//! values when first touched and its values at the end; an UPDATE carries the key and the
//! changed columns; a row inserted and deleted again leaves nothing; deleted and inserted again
//! under the same key, an UPDATE. A changed primary key is a DELETE plus an INSERT. Tables
//! without a declared primary key are keyed by rowid as column 0 (the session's
//! `SQLITE_SESSION_OBJCONFIG_ROWID`).
//!
//! Limits: only the "main" database is recorded; a table with hidden or generated columns, or
//! one missing from the shapes (created after them), makes [`RowCapture::finish`] answer
//! [`CaptureError::Unsupported`], and the caller records the work again with a session.
//! The connection must have no session object while a capture runs, and no session may be
//! started before it finishes: both use the connection's one pre-update hook, and a session
//! created over a capture would take the capture's context for a session of its own (SQLite
//! chains sessions through that pointer). The engine records one piece of work at a time, with
//! one or the other.

use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::Arc;

use rusqlite::{Connection, ffi};

use crate::storage::session_ffi as hook;

/// What a capture needs to know of each table of the main database.
#[derive(Debug, Default)]
pub struct Shapes {
    tables: HashMap<String, Shape>,
}

#[derive(Debug)]
struct Shape {
    /// Per changeset column: 0, or its position in the primary key (1-based).
    primary_key: Vec<u8>,
    /// Keyed by the hidden rowid, shipped as column 0.
    by_rowid: bool,
    /// Has hidden or generated columns: not recorded here.
    unsupported: bool,
}

impl Shapes {
    /// Reads every table's columns and key.
    pub fn read(conn: &Connection) -> rusqlite::Result<Shapes> {
        // One query over every table's columns (key position, hidden), in column order.
        let mut statement = conn.prepare(
            "SELECT m.name, p.pk, p.hidden \
             FROM main.sqlite_schema AS m, pragma_table_xinfo(m.name, 'main') AS p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
             ORDER BY m.name, p.cid",
        )?;
        let mut columns: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            columns
                .entry(row.get(0)?)
                .or_default()
                .push((row.get(1)?, row.get(2)?));
        }
        let tables = columns
            .into_iter()
            .map(|(name, columns)| {
                let unsupported = columns.iter().any(|&(_, hidden)| hidden != 0);
                let by_rowid = columns.iter().all(|&(pk, _)| pk == 0);
                let mut primary_key = Vec::with_capacity(columns.len() + 1);
                if by_rowid {
                    primary_key.push(1);
                }
                primary_key.extend(
                    columns
                        .iter()
                        .map(|&(pk, _)| u8::try_from(pk).unwrap_or(u8::MAX)),
                );
                let shape = Shape {
                    primary_key,
                    by_rowid,
                    unsupported,
                };
                (name, shape)
            })
            .collect();
        Ok(Shapes { tables })
    }
}

/// Why a capture produced no changeset.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The work touched a table this capture cannot record: record it with a session.
    #[error("cannot record changes to table {0} without a session")]
    Unsupported(String),
    #[error("reading a changed row's values failed (SQLite code {0})")]
    Sqlite(c_int),
    #[error("another pre-update hook (a session) is active on the connection")]
    HookInUse,
}

/// One column value, as SQLite stored it (text kept as bytes: SQLite does not check UTF-8).
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

/// A row's net change so far.
#[derive(Debug)]
enum RowChange {
    Insert { new: Vec<Cell> },
    Update { old: Vec<Cell>, new: Vec<Cell> },
    Delete { old: Vec<Cell> },
}

#[derive(Default)]
struct TableChanges {
    /// Row key (encoded key cells) -> position in `rows`.
    index: HashMap<Vec<u8>, usize>,
    /// In first-touch order; `None` once a row's changes cancelled out.
    rows: Vec<Option<(RowChange, bool)>>,
}

struct State {
    shapes: Arc<Shapes>,
    /// Tables in first-touch order.
    tables: Vec<(String, TableChanges)>,
    failure: Option<CaptureError>,
}

/// Records changes while alive; see the module docs.
pub struct RowCapture<'c> {
    conn: &'c Connection,
    state: Box<State>,
    installed: bool,
}

impl<'c> RowCapture<'c> {
    /// Starts recording the main database's row changes made through `conn`.
    pub fn start(conn: &'c Connection, shapes: Arc<Shapes>) -> Result<Self, CaptureError> {
        let mut capture = RowCapture {
            conn,
            state: Box::new(State {
                shapes,
                tables: Vec::new(),
                failure: None,
            }),
            installed: false,
        };
        let context: *mut State = &mut *capture.state;
        // SAFETY: a live connection used on its own thread; `context` points into the Box,
        // which stays put and outlives the hook (removed in `finish` or `Drop`).
        let previous =
            unsafe { hook::sqlite3_preupdate_hook(conn.handle(), Some(on_change), context.cast()) };
        capture.installed = true;
        if !previous.is_null() {
            return Err(CaptureError::HookInUse);
        }
        Ok(capture)
    }

    /// Stops recording; returns the changeset (empty when nothing differs).
    pub fn finish(mut self) -> Result<Vec<u8>, CaptureError> {
        self.remove_hook();
        let state = &mut *self.state;
        if let Some(failure) = state.failure.take() {
            return Err(failure);
        }
        let mut out = Vec::new();
        for (name, changes) in &state.tables {
            let Some(shape) = state.shapes.tables.get(name) else {
                return Err(CaptureError::Unsupported(name.clone()));
            };
            let header_at = out.len();
            out.push(b'T');
            put_varint(&mut out, shape.primary_key.len() as u64);
            out.extend_from_slice(&shape.primary_key);
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            let body_at = out.len();
            for (change, indirect) in changes.rows.iter().flatten() {
                encode_change(&mut out, change, *indirect, &shape.primary_key);
            }
            if out.len() == body_at {
                out.truncate(header_at);
            }
        }
        Ok(out)
    }

    fn remove_hook(&mut self) {
        if self.installed {
            // SAFETY: live connection; removing the hook this capture installed.
            unsafe {
                hook::sqlite3_preupdate_hook(self.conn.handle(), None, std::ptr::null_mut());
            }
            self.installed = false;
        }
    }
}

impl Drop for RowCapture<'_> {
    fn drop(&mut self) {
        self.remove_hook();
    }
}

/// The pre-update hook: records one row change into the [`State`] behind `context`.
unsafe extern "C" fn on_change(
    context: *mut c_void,
    db: *mut ffi::sqlite3,
    op: c_int,
    database: *const c_char,
    table: *const c_char,
    old_rowid: i64,
    new_rowid: i64,
) {
    // SAFETY: `context` is the capture's State, alive while the hook is installed; SQLite calls
    // the hook synchronously on the thread running the statement, while the capture's owner
    // is blocked in that statement, so this is the only reference.
    let state = unsafe { &mut *context.cast::<State>() };
    if state.failure.is_some() {
        return;
    }
    // SAFETY: SQLite passes NUL-terminated names valid for the call.
    let (database, table) = unsafe { (CStr::from_ptr(database), CStr::from_ptr(table)) };
    if database.to_bytes() != b"main" {
        return;
    }
    let table = String::from_utf8_lossy(table.to_bytes()).into_owned();
    // SAFETY: inside the hook, on its connection.
    let result = unsafe { record(state, db, op, &table, old_rowid, new_rowid) };
    if let Err(e) = result {
        state.failure = Some(e);
    }
}

/// # Safety
/// Only from inside the pre-update hook of `db`.
unsafe fn record(
    state: &mut State,
    db: *mut ffi::sqlite3,
    op: c_int,
    table: &str,
    old_rowid: i64,
    new_rowid: i64,
) -> Result<(), CaptureError> {
    let Some(shape) = state.shapes.tables.get(table) else {
        return Err(CaptureError::Unsupported(table.to_string()));
    };
    if shape.unsupported {
        return Err(CaptureError::Unsupported(table.to_string()));
    }
    // SAFETY: inside the hook.
    let count = unsafe { hook::sqlite3_preupdate_count(db) };
    let width = shape.primary_key.len();
    if usize::try_from(count)
        .ok()
        .map(|c| c + usize::from(shape.by_rowid))
        != Some(width)
    {
        return Err(CaptureError::Unsupported(table.to_string()));
    }
    // SAFETY: inside the hook.
    let indirect = unsafe { hook::sqlite3_preupdate_depth(db) } > 0;
    let read = |new: bool, rowid: i64| -> Result<Vec<Cell>, CaptureError> {
        let mut row = Vec::with_capacity(width);
        if shape.by_rowid {
            row.push(Cell::Integer(rowid));
        }
        for i in 0..count {
            let mut value = std::ptr::null_mut();
            // SAFETY: inside the hook, column index in range, valid out pointer.
            let code = unsafe {
                if new {
                    hook::sqlite3_preupdate_new(db, i, &mut value)
                } else {
                    hook::sqlite3_preupdate_old(db, i, &mut value)
                }
            };
            if code != ffi::SQLITE_OK {
                return Err(CaptureError::Sqlite(code));
            }
            // SAFETY: a protected value SQLite returned, valid until the hook returns.
            row.push(unsafe { cell(value) });
        }
        Ok(row)
    };
    let primary_key = &shape.primary_key;
    let position = state.tables.iter().position(|(name, _)| name == table);
    let position = position.unwrap_or_else(|| {
        state
            .tables
            .push((table.to_string(), TableChanges::default()));
        state.tables.len() - 1
    });
    let changes = &mut state.tables[position].1;
    match op {
        ffi::SQLITE_INSERT => {
            let new = read(true, new_rowid)?;
            changes.add(
                row_key(&new, primary_key),
                RowChange::Insert { new },
                indirect,
            );
        }
        ffi::SQLITE_DELETE => {
            let old = read(false, old_rowid)?;
            changes.add(
                row_key(&old, primary_key),
                RowChange::Delete { old },
                indirect,
            );
        }
        ffi::SQLITE_UPDATE => {
            let old = read(false, old_rowid)?;
            let new = read(true, new_rowid)?;
            let (old_key, new_key) = (row_key(&old, primary_key), row_key(&new, primary_key));
            if old_key == new_key {
                changes.add(old_key, RowChange::Update { old, new }, indirect);
            } else {
                changes.add(old_key, RowChange::Delete { old }, indirect);
                changes.add(new_key, RowChange::Insert { new }, indirect);
            }
        }
        _ => {}
    }
    Ok(())
}

impl TableChanges {
    /// Folds a change into the row's net change.
    fn add(&mut self, key: Vec<u8>, change: RowChange, indirect: bool) {
        use RowChange::{Delete, Insert, Update};
        let Some(&at) = self.index.get(&key) else {
            self.index.insert(key, self.rows.len());
            self.rows.push(Some((change, indirect)));
            return;
        };
        let slot = &mut self.rows[at];
        // A row is changed indirectly (by triggers only) if every change to it was.
        let (previous, indirect) = match slot.take() {
            Some((previous, was_indirect)) => (Some(previous), was_indirect && indirect),
            None => (None, indirect),
        };
        let merged = match (previous, change) {
            (None, change) => Some(change),
            (Some(Insert { .. }), Update { new, .. }) => Some(Insert { new }),
            (Some(Insert { .. }), Delete { .. }) => None,
            (Some(Update { old, .. }), Update { new, .. }) => Some(Update { old, new }),
            (Some(Update { old, .. }), Delete { .. }) => Some(Delete { old }),
            (Some(Delete { old }), Insert { new }) => Some(Update { old, new }),
            // Not possible for one key in SQLite (an insert over a live row, a change to a
            // deleted one); the latest change stands.
            (Some(_), change) => Some(change),
        };
        *slot = merged.map(|change| (change, indirect));
    }
}

/// A value the pre-update hook handed over, copied.
///
/// # Safety
/// `value` must be a valid `sqlite3_value` pointer.
unsafe fn cell(value: *mut ffi::sqlite3_value) -> Cell {
    // SAFETY: per the contract, a valid value; text and blob pointers are read with their
    // byte counts before anything else touches the value.
    unsafe {
        match ffi::sqlite3_value_type(value) {
            ffi::SQLITE_INTEGER => Cell::Integer(ffi::sqlite3_value_int64(value)),
            ffi::SQLITE_FLOAT => Cell::Real(ffi::sqlite3_value_double(value)),
            ffi::SQLITE_TEXT => {
                let data = ffi::sqlite3_value_text(value);
                let len = usize::try_from(ffi::sqlite3_value_bytes(value)).unwrap_or(0);
                Cell::Text(bytes(data, len))
            }
            ffi::SQLITE_BLOB => {
                let data = ffi::sqlite3_value_blob(value).cast::<u8>();
                let len = usize::try_from(ffi::sqlite3_value_bytes(value)).unwrap_or(0);
                Cell::Blob(bytes(data, len))
            }
            _ => Cell::Null,
        }
    }
}

/// # Safety
/// `data` points at `len` readable bytes, or is null.
unsafe fn bytes(data: *const u8, len: usize) -> Vec<u8> {
    if data.is_null() || len == 0 {
        return Vec::new();
    }
    // SAFETY: per the contract.
    unsafe { std::slice::from_raw_parts(data, len) }.to_vec()
}

/// The row's identity: its key columns, serialized.
fn row_key(row: &[Cell], primary_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::new();
    for (cell, pk) in row.iter().zip(primary_key) {
        if *pk != 0 {
            put_cell(&mut key, cell);
        }
    }
    key
}

fn encode_change(out: &mut Vec<u8>, change: &RowChange, indirect: bool, primary_key: &[u8]) {
    match change {
        RowChange::Insert { new } => {
            out.push(ffi::SQLITE_INSERT as u8);
            out.push(u8::from(indirect));
            new.iter().for_each(|cell| put_cell(out, cell));
        }
        RowChange::Delete { old } => {
            out.push(ffi::SQLITE_DELETE as u8);
            out.push(u8::from(indirect));
            old.iter().for_each(|cell| put_cell(out, cell));
        }
        RowChange::Update { old, new } => {
            let changed: Vec<bool> = old.iter().zip(new).map(|(o, n)| differs(o, n)).collect();
            if !changed.contains(&true) {
                return;
            }
            out.push(ffi::SQLITE_UPDATE as u8);
            out.push(u8::from(indirect));
            for ((cell, changed), pk) in old.iter().zip(&changed).zip(primary_key) {
                if *changed || *pk != 0 {
                    put_cell(out, cell);
                } else {
                    out.push(0);
                }
            }
            for (cell, changed) in new.iter().zip(&changed) {
                if *changed {
                    put_cell(out, cell);
                } else {
                    out.push(0);
                }
            }
        }
    }
}

/// Whether a column's value changed, as the session extension decides it (type and value;
/// reals compared numerically).
fn differs(old: &Cell, new: &Cell) -> bool {
    match (old, new) {
        (Cell::Real(a), Cell::Real(b)) => a != b,
        (a, b) => a != b,
    }
}

/// A value in the changeset record format: type byte, then the value.
fn put_cell(out: &mut Vec<u8>, cell: &Cell) {
    match cell {
        Cell::Null => out.push(ffi::SQLITE_NULL as u8),
        Cell::Integer(i) => {
            out.push(ffi::SQLITE_INTEGER as u8);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Cell::Real(f) => {
            out.push(ffi::SQLITE_FLOAT as u8);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Cell::Text(bytes) => {
            out.push(ffi::SQLITE_TEXT as u8);
            put_varint(out, bytes.len() as u64);
            out.extend_from_slice(bytes);
        }
        Cell::Blob(bytes) => {
            out.push(ffi::SQLITE_BLOB as u8);
            put_varint(out, bytes.len() as u64);
            out.extend_from_slice(bytes);
        }
    }
}

/// SQLite's varint for values below 2^56 (all this format stores: counts and lengths): 7 bits
/// per byte, most significant group first, the high bit set on every byte but the last.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    let mut groups = [0u8; 9];
    let mut n = 0;
    loop {
        groups[n] = (value & 0x7f) as u8 | 0x80;
        n += 1;
        value >>= 7;
        if value == 0 || n == groups.len() {
            break;
        }
    }
    groups[0] &= 0x7f;
    out.extend(groups[..n].iter().rev());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::changeset::{self, ChangeRecorder};
    use rusqlite::types::Value;

    const SCHEMA: &str = "
        CREATE TABLE ipk(id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB);
        CREATE TABLE composite(a TEXT, b INTEGER, v TEXT, PRIMARY KEY (b, a));
        CREATE TABLE nokey(x INTEGER, y TEXT);
        CREATE TABLE wr(k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID;
        CREATE TABLE uniq(id INTEGER PRIMARY KEY, email TEXT UNIQUE, n INTEGER);
        CREATE TABLE audit(id INTEGER PRIMARY KEY, what TEXT);
        CREATE TABLE textkey(k TEXT PRIMARY KEY, v TEXT);
        CREATE TRIGGER ipk_audit AFTER UPDATE OF name ON ipk BEGIN
            INSERT INTO audit(what) VALUES ('renamed ' || new.id);
        END;
        CREATE TRIGGER uniq_churn AFTER INSERT ON uniq WHEN new.n = 99 BEGIN
            DELETE FROM uniq WHERE id = new.id;
        END;
    ";

    /// Every kind of change a statement can make, in order (each builds on the last).
    const STATEMENTS: &[&str] = &[
        "INSERT INTO ipk VALUES (1, 'a', 1.5, x'00'), (2, 'b', NULL, NULL), (3, 'c', 2.0, x'ff')",
        "INSERT INTO composite VALUES ('x', 1, 'one'), ('y', 1, 'two'), ('x', 2, 'three')",
        "INSERT INTO nokey VALUES (1, 'p'), (2, 'q'), (2, 'r')",
        "INSERT INTO wr VALUES ('k1', 1), ('k2', 2)",
        "INSERT INTO textkey VALUES ('héllo', 'wörld'), ('', NULL)",
        "INSERT INTO uniq(email, n) VALUES ('a@x', 1), ('b@x', 2)",
        "UPDATE ipk SET score = score + 1 WHERE id = 1",
        "UPDATE ipk SET score = 3 WHERE id = 3",
        "UPDATE ipk SET name = name WHERE id = 2",
        "UPDATE ipk SET name = 'renamed', data = x'0102' WHERE id >= 2",
        "UPDATE ipk SET id = id + 10 WHERE id = 1",
        "UPDATE composite SET v = upper(v)",
        "UPDATE composite SET a = 'z' WHERE b = 2",
        "UPDATE nokey SET y = y || '!' WHERE x = 2",
        "DELETE FROM nokey WHERE y = 'p'",
        "UPDATE wr SET v = v * 10",
        "UPDATE wr SET k = 'k3' WHERE k = 'k1'",
        "REPLACE INTO ipk VALUES (11, 'replaced', 0.5, NULL)",
        "INSERT OR REPLACE INTO uniq(id, email, n) VALUES (7, 'a@x', 3)",
        "INSERT INTO uniq(email, n) VALUES ('c@x', 4) ON CONFLICT(email) DO UPDATE SET n = n + 1",
        "INSERT INTO uniq(email, n) VALUES ('c@x', 4) ON CONFLICT(email) DO UPDATE SET n = n + 1",
        "INSERT INTO uniq(email, n) VALUES ('gone@x', 99)",
        "UPDATE textkey SET v = 'x' || coalesce(v, '')",
        "DELETE FROM ipk WHERE id = 3",
        "DELETE FROM composite",
        "SELECT count(*) FROM ipk",
        "UPDATE ipk SET score = score WHERE 0",
    ];

    fn open() -> Connection {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(SCHEMA).expect("schema");
        conn
    }

    fn dump(conn: &Connection) -> Vec<(String, Vec<Vec<Value>>)> {
        let mut out = Vec::new();
        for table in [
            "ipk",
            "composite",
            "nokey",
            "wr",
            "uniq",
            "audit",
            "textkey",
        ] {
            let sql = if table == "wr" || table == "composite" || table == "textkey" {
                format!("SELECT * FROM {table} ORDER BY 1, 2")
            } else {
                format!("SELECT rowid, * FROM {table} ORDER BY rowid")
            };
            let mut statement = conn.prepare(&sql).expect("prepare");
            let width = statement.column_count();
            let rows = statement
                .query_map([], |row| {
                    (0..width)
                        .map(|i| row.get::<_, Value>(i))
                        .collect::<Result<Vec<_>, _>>()
                })
                .expect("query")
                .collect::<Result<Vec<_>, _>>()
                .expect("rows");
            out.push((table.to_string(), rows));
        }
        out
    }

    fn keys(changeset: &[u8]) -> Vec<(String, Vec<u8>)> {
        let changes = changeset::changes(changeset).expect("parse");
        let mut keys: Vec<_> = changeset::row_keys(&changes, &|t| t == "nokey")
            .into_iter()
            .map(|k| (k.table, k.key))
            .collect();
        keys.sort();
        keys
    }

    fn run(conn: &Connection, sql: &str) {
        let mut statement = conn.prepare(sql).expect("prepare");
        let mut rows = statement.query([]).expect("run");
        while rows.next().expect("step").is_some() {}
    }

    /// The capture and a session record each statement; each changeset, applied to a replica
    /// of the state before it, yields exactly the state after it, and both name the same rows.
    #[test]
    fn a_capture_replicates_like_a_session() {
        let captured = open();
        let recorded = open();
        let capture_replica = open();
        let session_replica = open();
        let shapes = Arc::new(Shapes::read(&captured).expect("shapes"));
        for sql in STATEMENTS {
            let capture = RowCapture::start(&captured, shapes.clone()).expect("start capture");
            run(&captured, sql);
            let ours = capture.finish().expect("capture");
            let session = ChangeRecorder::start(&recorded).expect("start session");
            run(&recorded, sql);
            let theirs = session.finish().expect("session");
            assert_eq!(dump(&captured), dump(&recorded), "{sql}");
            changeset::apply_changeset(&capture_replica, &ours).expect("apply capture");
            changeset::apply_changeset(&session_replica, &theirs).expect("apply session");
            assert_eq!(dump(&capture_replica), dump(&captured), "capture of {sql}");
            assert_eq!(dump(&session_replica), dump(&recorded), "session of {sql}");
            assert_eq!(keys(&ours), keys(&theirs), "rows named by {sql}");
            assert_eq!(ours.is_empty(), theirs.is_empty(), "{sql}");
        }
    }

    #[test]
    fn a_table_it_cannot_record_is_refused() {
        let conn = open();
        conn.execute_batch("CREATE TABLE gen(a INTEGER, b INTEGER AS (a * 2))")
            .expect("generated column");
        let shapes = Arc::new(Shapes::read(&conn).expect("shapes"));
        let capture = RowCapture::start(&conn, shapes.clone()).expect("start");
        run(&conn, "INSERT INTO gen(a) VALUES (1)");
        assert!(matches!(capture.finish(), Err(CaptureError::Unsupported(t)) if t == "gen"));
        conn.execute_batch("CREATE TABLE later(a)").expect("create");
        let capture = RowCapture::start(&conn, shapes).expect("start");
        run(&conn, "INSERT INTO later VALUES (1)");
        assert!(matches!(capture.finish(), Err(CaptureError::Unsupported(t)) if t == "later"));
        // The hook is gone: a session records again.
        let session = ChangeRecorder::start(&conn).expect("session");
        run(&conn, "INSERT INTO later VALUES (2)");
        assert!(!session.finish().expect("finish").is_empty());
    }

    #[test]
    fn varints_match_sqlites() {
        for (value, bytes) in [
            (0u64, vec![0u8]),
            (127, vec![0x7f]),
            (128, vec![0x81, 0x00]),
            (300, vec![0x82, 0x2c]),
            (16_384, vec![0x81, 0x80, 0x00]),
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out, bytes, "{value}");
        }
    }
}
