//! Changesets: how a write executed once on the leader reaches every follower
//! as its *effects*, never as SQL to run again.
//!
//! This module owns three things: recording the row changes of one client
//! transaction on the leader ([`ChangeRecorder`]), applying such a changeset
//! on a follower ([`apply_changeset`]), and the zstd framing used to ship it
//! through the Raft log ([`compress`], [`decompress`]). It is built on
//! SQLite's session extension, declared in [`super::session_ffi`].
//!
//! # Life of a changeset
//!
//! 1. The leader opens its outer transaction, then a `SAVEPOINT` for one
//!    client transaction, and calls [`ChangeRecorder::start`].
//! 2. The client's statements run. Non-deterministic values (`random()`,
//!    `datetime('now')`, rowids SQLite picks) are fixed here, once.
//! 3. The savepoint is released (or rolled back to), and
//!    [`ChangeRecorder::finish`] returns the changeset: for each touched row
//!    its primary key, its values before, and its values now.
//! 4. [`compress`] frames it for the log entry.
//! 5. Each follower calls [`decompress`] and [`apply_changeset`] inside its
//!    own apply transaction. Because values, not statements, are shipped, the
//!    follower ends with byte-identical rows.
//!
//! # Invariants and findings (each one pinned by a test below)
//!
//! - **A changeset is the difference between the first touch and `finish`.**
//!   The session keeps each touched row's original values and reads the
//!   row's *current* values when [`ChangeRecorder::finish`] runs. Hence:
//!   changes undone by `ROLLBACK TO` a savepoint do not appear (an insert
//!   rolled back is absent, an update rolled back compares equal and is
//!   dropped); and `finish` must run before anything else writes, or those
//!   later writes leak into this changeset. One recorder per client
//!   transaction, finished right after its savepoint ends.
//! - **Every table is recorded.** The session attaches all tables, including
//!   ones created later, and records tables without a declared PRIMARY KEY
//!   keyed by their rowid (`SQLITE_SESSION_OBJCONFIG_ROWID`). Those rowids
//!   become replicated state: nobody may `VACUUM` (it may renumber them).
//! - **The hidden rowid of a table keyed by something else is not
//!   replicated.** A rowid table whose declared primary key is not a single
//!   `INTEGER PRIMARY KEY` (say a TEXT or composite key) still has a rowid,
//!   but changes are keyed by the declared key and the follower numbers rows
//!   in the order it applies them, which differs from the leader's. Content
//!   by key is identical; `SELECT rowid` and unordered scans of such tables
//!   are not. Use `WITHOUT ROWID` for such tables, or never expose the rowid.
//! - **A row with NULL in a declared PRIMARY KEY column is not recorded.**
//!   SQLite lets legacy rowid tables store NULL in a non-INTEGER primary
//!   key, and the session skips such rows silently. Schemas must declare
//!   primary-key columns `NOT NULL` (or use `WITHOUT ROWID` / `STRICT`
//!   tables, which enforce it).
//! - **Schema changes are not recorded.** DDL must reach followers by another
//!   path before the changesets that use it. A changeset touching a table the
//!   follower lacks (or whose columns or primary key differ) fails with
//!   [`ChangesetError::SchemaMismatch`] instead of SQLite's default of
//!   silently skipping it.
//! - **`sqlite_sequence` is not recorded** (AUTOINCREMENT updates it without
//!   the pre-update hook sessions rely on). The follower still maintains its
//!   own copy: inserting a shipped row with an explicit rowid into an
//!   AUTOINCREMENT table raises that table's sequence to at least the rowid.
//!   The copies differ only when the leader allocated a rowid that no
//!   surviving row holds (inserted then deleted in one changeset): the
//!   follower's sequence is then lower. Rows stay identical either way,
//!   because rowids are always shipped explicitly; only a follower that
//!   becomes leader could hand out such a never-surviving rowid again.
//!   Checks that compare replicas must skip `sqlite_sequence`.
//! - **Triggers do not fire on apply.** SQLite's apply runs ordinary
//!   INSERT/UPDATE/DELETE statements, so triggers *would* fire and repeat
//!   effects the changeset already carries. [`apply_changeset`] turns them
//!   off for its duration (`SQLITE_DBCONFIG_ENABLE_TRIGGER`, restored after).
//!   `TEMP` triggers still fire (SQLite ≥ 3.35 exempts them); followers must
//!   define none.
//! - **Foreign key actions do not run on apply** (`ON DELETE CASCADE`,
//!   `SET NULL`…, via `SQLITE_CHANGESETAPPLY_FKNOACTION`): the cascaded
//!   changes are already in the changeset. Foreign key *constraints* are
//!   still checked when `PRAGMA foreign_keys` is on for the follower's
//!   connection, deferred to the end of the apply (SQLite sets `PRAGMA
//!   defer_foreign_keys` on, and back off when done); a violation is a
//!   [`ConflictKind::ForeignKey`] conflict. With foreign keys off, a dangling
//!   reference goes unnoticed.
//! - **Any conflict means the replicas diverged.** The apply is aborted and
//!   [`ChangesetError::Conflict`] returned; the caller must stop the node.
//! - **On every error, `apply_changeset` leaves the database as it found it**,
//!   still inside the caller's open transaction (if any), thanks to a
//!   savepoint of its own.
//!
//! Left out: patchsets (no old values, so no divergence detection), streaming
//! APIs (a changeset is bounded by the log entry size), conflict resolution
//! and rebasing (a replica never resolves; it stops).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CStr, c_int, c_void};
use std::fmt;
use std::io::Read;
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use rusqlite::Connection;
use rusqlite::config::DbConfig;
use rusqlite::ffi;

use super::session_ffi as session;

/// zstd level for changesets: the fastest, since the leader compresses on
/// the write path and changesets are small.
pub const COMPRESSION_LEVEL: i32 = 1;

/// The largest changeset SQLite can apply: its size is a C `int`.
pub const MAX_CHANGESET_BYTES: usize = c_int::MAX as usize;

/// Name of the savepoint [`apply_changeset`] wraps each apply in.
const APPLY_SAVEPOINT: &str = "phalanx_apply_changeset";

/// What can go wrong recording, applying or (de)compressing a changeset.
///
/// Every error from [`apply_changeset`] is non-deterministic from the
/// cluster's point of view (the leader applied the same changes fine): the
/// follower has diverged or failed, and must stop rather than continue.
#[derive(Debug, thiserror::Error)]
pub enum ChangesetError {
    /// An SQLite call failed (I/O, out of memory, corrupt changeset…).
    #[error("SQLite failed while handling a changeset")]
    Sqlite(#[from] rusqlite::Error),

    /// The follower's rows do not match what the leader's changeset expects:
    /// the replicas diverged. The apply was rolled back.
    #[error(
        "changeset {kind} conflict on table {}: the replicas diverged",
        .table.as_deref().unwrap_or("<whole changeset>")
    )]
    Conflict {
        /// The table of the conflicting change; `None` for
        /// [`ConflictKind::ForeignKey`], which SQLite reports once for the
        /// whole changeset.
        table: Option<String>,
        /// Which check failed.
        kind: ConflictKind,
    },

    /// The changeset touches a table that the follower lacks, or whose
    /// column count or primary key differ: the schemas diverged. The apply
    /// was rolled back.
    #[error("changeset touches table {table}, which is missing or has another schema here")]
    SchemaMismatch {
        /// The first such table, by name.
        table: String,
    },

    /// A changeset, or a decompressed one, is larger than allowed.
    #[error("changeset exceeds the limit of {limit_bytes} bytes")]
    TooLarge {
        /// The limit that was exceeded.
        limit_bytes: usize,
    },

    /// The compressed bytes are not a valid zstd frame.
    #[error("changeset decompression failed")]
    Decompress(#[source] std::io::Error),
}

/// Why a change could not be applied, one variant per `SQLITE_CHANGESET_*`
/// conflict code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    /// A DELETE or UPDATE found its row by primary key, but other values
    /// differ from the leader's "before" values.
    Data,
    /// A DELETE or UPDATE did not find its row.
    NotFound,
    /// An INSERT found a row with the same primary key already present.
    Conflict,
    /// A change violated a UNIQUE, CHECK or NOT NULL constraint.
    Constraint,
    /// Foreign key violations remained at the end of the apply.
    ForeignKey,
    /// A conflict code this module does not know (a newer SQLite).
    Unknown(i32),
}

impl ConflictKind {
    fn from_code(code: c_int) -> Self {
        match code {
            session::SQLITE_CHANGESET_DATA => Self::Data,
            session::SQLITE_CHANGESET_NOTFOUND => Self::NotFound,
            session::SQLITE_CHANGESET_CONFLICT => Self::Conflict,
            session::SQLITE_CHANGESET_CONSTRAINT => Self::Constraint,
            session::SQLITE_CHANGESET_FOREIGN_KEY => Self::ForeignKey,
            other => Self::Unknown(other),
        }
    }
}

impl fmt::Display for ConflictKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Data => formatter.write_str("DATA"),
            Self::NotFound => formatter.write_str("NOTFOUND"),
            Self::Conflict => formatter.write_str("CONFLICT"),
            Self::Constraint => formatter.write_str("CONSTRAINT"),
            Self::ForeignKey => formatter.write_str("FOREIGN_KEY"),
            Self::Unknown(code) => write!(formatter, "unknown ({code})"),
        }
    }
}

/// Records every row change made through one connection to its "main"
/// database, from [`start`](Self::start) until [`finish`](Self::finish).
///
/// Owns one SQLite session object. The borrow of the connection guarantees
/// the session is deleted (by `finish` or by `Drop`) before the connection
/// can be closed, as SQLite requires. Not `Send`: it lives on the thread
/// that owns the connection.
pub struct ChangeRecorder<'c> {
    connection: &'c Connection,
    session: NonNull<session::sqlite3_session>,
    _not_send: PhantomData<*mut session::sqlite3_session>,
}

impl<'c> ChangeRecorder<'c> {
    /// Starts recording all tables of `connection`'s "main" database,
    /// including tables created while recording and tables without a
    /// declared primary key (keyed by rowid).
    ///
    /// The connection must not have a pre-update hook registered. Several
    /// recorders may exist on one connection; each records everything.
    pub fn start(connection: &'c Connection) -> Result<Self, ChangesetError> {
        // SAFETY: the handle is only passed to SQLite, which serialises use
        // of the connection; `connection` outlives the session (borrow 'c).
        let db = unsafe { connection.handle() };
        let mut raw_session = ptr::null_mut();
        // SAFETY: valid handle, NUL-terminated name, valid out pointer.
        let code =
            unsafe { session::sqlite3session_create(db, c"main".as_ptr(), &mut raw_session) };
        check(db, code)?;
        let session = NonNull::new(raw_session)
            .ok_or_else(|| sqlite_error(ptr::null_mut(), ffi::SQLITE_NOMEM))?;
        // From here on, Drop deletes the session on every error path.
        let recorder = Self {
            connection,
            session,
            _not_send: PhantomData,
        };

        // Must precede the first attach, or SQLite answers SQLITE_MISUSE.
        let mut record_rowid_tables: c_int = 1;
        // SAFETY: live session; the option takes a pointer to an int.
        let code = unsafe {
            session::sqlite3session_object_config(
                recorder.session.as_ptr(),
                session::SQLITE_SESSION_OBJCONFIG_ROWID,
                (&raw mut record_rowid_tables).cast::<c_void>(),
            )
        };
        check(db, code)?;
        if record_rowid_tables != 1 {
            return Err(sqlite_error(ptr::null_mut(), ffi::SQLITE_MISUSE).into());
        }

        // SAFETY: live session; NULL attaches every table, present and future.
        let code =
            unsafe { session::sqlite3session_attach(recorder.session.as_ptr(), ptr::null()) };
        check(db, code)?;
        Ok(recorder)
    }

    /// Stops recording and returns the changeset: the difference between
    /// each touched row's values when first touched and its values now.
    /// Empty when nothing differs. Deletes the session.
    pub fn finish(self) -> Result<Vec<u8>, ChangesetError> {
        // SAFETY: live session.
        if unsafe { session::sqlite3session_isempty(self.session.as_ptr()) } != 0 {
            return Ok(Vec::new());
        }
        let mut size_bytes: c_int = 0;
        let mut buffer: *mut c_void = ptr::null_mut();
        // SAFETY: live session, valid out pointers.
        let code = unsafe {
            session::sqlite3session_changeset(self.session.as_ptr(), &mut size_bytes, &mut buffer)
        };
        let buffer = SqliteBuffer(buffer);
        // SAFETY: the handle is only read for its error message.
        check(unsafe { self.connection.handle() }, code)?;
        let Ok(size_bytes) = usize::try_from(size_bytes) else {
            return Err(sqlite_error(ptr::null_mut(), ffi::SQLITE_INTERNAL).into());
        };
        if buffer.0.is_null() || size_bytes == 0 {
            return Ok(Vec::new());
        }
        // SAFETY: SQLite returned a buffer of exactly `size_bytes` bytes,
        // which `buffer` keeps alive until after the copy.
        let changeset = unsafe { std::slice::from_raw_parts(buffer.0.cast::<u8>(), size_bytes) };
        Ok(changeset.to_vec())
    }
}

impl Drop for ChangeRecorder<'_> {
    fn drop(&mut self) {
        // SAFETY: the session is live (created in `start`, deleted only here)
        // and the connection is still open (borrowed for 'c).
        unsafe { session::sqlite3session_delete(self.session.as_ptr()) };
    }
}

/// Applies a changeset recorded by [`ChangeRecorder`] to `connection`'s
/// "main" database, as a follower does.
///
/// Runs inside whatever transaction the caller has open (or its own, in
/// autocommit mode), within a savepoint: on any error the database is left
/// exactly as before the call and the caller's transaction stays open. An
/// empty changeset is a no-op.
///
/// During the apply, triggers are disabled (they ran on the leader; their
/// effects are in the changeset) and foreign key actions behave as `NO
/// ACTION` (the cascaded changes are in the changeset too); foreign key
/// constraints are still checked, at the end of the apply, when enabled.
/// Every conflict is fatal: [`ChangesetError::Conflict`].
pub fn apply_changeset(connection: &Connection, changeset: &[u8]) -> Result<(), ChangesetError> {
    apply_with(connection, changeset, None)
}

/// Like [`apply_changeset`], except that a row the changeset inserts into one of the
/// `renumbered` tables (tables keyed by their hidden rowid) whose rowid is taken is inserted
/// under a fresh rowid instead of failing. The leader uses it to resume an interactive
/// transaction on top of rows other transactions inserted meanwhile: such a rowid was SQLite's
/// pick, which nobody asked for.
///
/// Turning triggers off, or foreign-key actions into NO ACTION, makes SQLite prepare every
/// statement again afterwards; `schema` says whether the database has any of either, so that
/// the leader's frequent resumes skip what cannot matter.
pub fn apply_changeset_renumbering(
    connection: &Connection,
    changeset: &[u8],
    schema: &ResumeSchema,
) -> Result<(), ChangesetError> {
    apply_with(connection, changeset, Some(schema))
}

/// What [`apply_changeset_renumbering`] needs to know of the schema.
#[derive(Debug, Clone, Default)]
pub struct ResumeSchema {
    /// Tables keyed by their hidden rowid (no declared primary key).
    pub renumbered: BTreeSet<String>,
    /// The database has triggers.
    pub triggers: bool,
    /// The database has foreign keys.
    pub foreign_keys: bool,
    /// Every table's columns, in order (as a changeset lists them, after the rowid of a table
    /// keyed by rowid).
    pub columns: std::collections::HashMap<String, Vec<String>>,
    /// Each table's columns and key, for recording a statement without a session.
    pub shapes: std::sync::Arc<crate::storage::capture::Shapes>,
}

fn apply_with(
    connection: &Connection,
    changeset: &[u8],
    resume: Option<&ResumeSchema>,
) -> Result<(), ChangesetError> {
    if changeset.is_empty() {
        return Ok(());
    }
    let size_bytes = c_int::try_from(changeset.len()).map_err(|_| ChangesetError::TooLarge {
        limit_bytes: MAX_CHANGESET_BYTES,
    })?;
    let expected = count_changes_per_table(changeset, size_bytes)?;

    let _triggers_off = match resume {
        Some(schema) if !schema.triggers => None,
        _ => Some(TriggersDisabled::new(connection)?),
    };
    connection.execute_batch(&format!("SAVEPOINT {APPLY_SAVEPOINT}"))?;
    let applied = apply_all_or_abort(connection, changeset, size_bytes, &expected, resume);
    let end_savepoint = match applied {
        Ok(()) => format!("RELEASE {APPLY_SAVEPOINT}"),
        Err(_) => format!("ROLLBACK TO {APPLY_SAVEPOINT}; RELEASE {APPLY_SAVEPOINT}"),
    };
    let ended = connection.execute_batch(&end_savepoint);
    applied?;
    ended?;
    Ok(())
}

/// The apply proper: every conflict aborts, and every change must have
/// passed SQLite's schema compatibility check.
fn apply_all_or_abort(
    connection: &Connection,
    changeset: &[u8],
    size_bytes: c_int,
    expected: &ChangesPerTable,
    resume: Option<&ResumeSchema>,
) -> Result<(), ChangesetError> {
    let mut context = ApplyContext {
        renumbered: resume.map(|schema| &schema.renumbered),
        ..ApplyContext::default()
    };
    let foreign_keys = resume.is_none_or(|schema| schema.foreign_keys);
    // With foreign keys off nothing cascades, and asking for NO ACTION would only cost a schema
    // reload (SQLite bumps the schema cookie around such an apply).
    let apply_flags =
        if foreign_keys && connection.db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_FKEY)? {
            session::SQLITE_CHANGESETAPPLY_FKNOACTION
        } else {
            0
        };
    // SAFETY: the handle is used only for this synchronous call.
    let db = unsafe { connection.handle() };
    // SAFETY: `changeset` is valid for `size_bytes` bytes and only read by
    // SQLite despite the `*mut`; both callbacks get `context`, which outlives
    // the call; no rebase buffer is requested.
    let code = unsafe {
        session::sqlite3changeset_apply_v3(
            db,
            size_bytes,
            changeset.as_ptr().cast_mut().cast::<c_void>(),
            Some(count_attempted_change),
            Some(abort_on_conflict),
            (&raw mut context).cast::<c_void>(),
            ptr::null_mut(),
            ptr::null_mut(),
            apply_flags,
        )
    };
    if let Some((table, kind)) = context.conflict {
        return Err(ChangesetError::Conflict { table, kind });
    }
    check(db, code)?;
    // SQLite skips, without error, the changes of a table it finds missing
    // or incompatible: they never reach `count_attempted_change`.
    if let Some(table) = expected.first_difference(&context.attempted) {
        return Err(ChangesetError::SchemaMismatch { table });
    }
    for (table, values) in &context.moved {
        let placeholders = vec!["?"; values.len()].join(", ");
        let quoted = table.replace('"', "\"\"");
        connection
            .prepare_cached(&format!(
                "INSERT INTO main.\"{quoted}\" VALUES ({placeholders})"
            ))?
            .execute(rusqlite::params_from_iter(values))?;
    }
    Ok(())
}

/// What the apply callbacks learn, shared with them through `pCtx`.
#[derive(Default)]
struct ApplyContext<'r> {
    attempted: ChangesPerTable,
    conflict: Option<(Option<String>, ConflictKind)>,
    /// Tables whose colliding inserts move to a fresh rowid (see
    /// [`apply_changeset_renumbering`]).
    renumbered: Option<&'r BTreeSet<String>>,
    /// The rows to insert under a fresh rowid once the apply is done: their values without
    /// the rowid.
    moved: Vec<(String, Vec<rusqlite::types::Value>)>,
}

/// Per-change filter: counts the changes SQLite is about to attempt (it
/// calls this only after a table passed its schema check), and applies all.
unsafe extern "C" fn count_attempted_change(
    context: *mut c_void,
    iterator: *mut session::sqlite3_changeset_iter,
) -> c_int {
    // SAFETY: `context` is the `ApplyContext` passed to the apply call, not
    // otherwise accessed while SQLite runs; `iterator` is valid for this call.
    unsafe {
        let context = &mut *context.cast::<ApplyContext>();
        if let Some(table) = current_table(iterator) {
            context.attempted.record(table);
        }
    }
    1
}

/// Conflict handler: remembers the first conflict and aborts the apply.
unsafe extern "C" fn abort_on_conflict(
    context: *mut c_void,
    conflict: c_int,
    iterator: *mut session::sqlite3_changeset_iter,
) -> c_int {
    let kind = ConflictKind::from_code(conflict);
    // SAFETY: as in `count_attempted_change`. For FOREIGN_KEY the iterator
    // describes no change, so it is not asked for a table.
    unsafe {
        let context = &mut *context.cast::<ApplyContext>();
        if kind == ConflictKind::Conflict
            && let Some(values) = renumbered_insert(context.renumbered, iterator)
        {
            context.moved.push(values);
            return session::SQLITE_CHANGESET_OMIT;
        }
        let table = match kind {
            ConflictKind::ForeignKey => None,
            _ => current_table(iterator).map(|table| table.to_string_lossy().into_owned()),
        };
        context.conflict.get_or_insert((table, kind));
    }
    session::SQLITE_CHANGESET_ABORT
}

/// For an INSERT into a table of `renumbered`: the table and the row's values without its
/// rowid (column 0 of a table keyed by rowid).
///
/// # Safety
/// `iterator` must point at a change.
unsafe fn renumbered_insert(
    renumbered: Option<&BTreeSet<String>>,
    iterator: *mut session::sqlite3_changeset_iter,
) -> Option<(String, Vec<rusqlite::types::Value>)> {
    let renumbered = renumbered?;
    // SAFETY: per the caller.
    let (table, column_count, operation) = unsafe { current_change(iterator)? };
    if operation != ffi::SQLITE_INSERT {
        return None;
    }
    let table = table.to_string_lossy().into_owned();
    if !renumbered.contains(&table) {
        return None;
    }
    let mut values = Vec::with_capacity(column_count.saturating_sub(1));
    for column in 1..column_count {
        // SAFETY: an INSERT has new values for every column.
        values.push(unsafe { change_value(iterator, column, Side::New)? });
    }
    Some((table, values))
}

/// Which row image of a change to read.
#[derive(Clone, Copy)]
enum Side {
    Old,
    New,
}

/// Column `column` of the current change's old or new row, copied.
///
/// # Safety
/// `iterator` must point at a change with that side and column.
unsafe fn change_value(
    iterator: *mut session::sqlite3_changeset_iter,
    column: usize,
    side: Side,
) -> Option<rusqlite::types::Value> {
    use rusqlite::types::Value;
    let index = c_int::try_from(column).ok()?;
    let mut value = ptr::null_mut();
    // SAFETY: per the caller; `value` is a valid out pointer.
    let code = unsafe {
        match side {
            Side::Old => session::sqlite3changeset_old(iterator, index, &mut value),
            Side::New => session::sqlite3changeset_new(iterator, index, &mut value),
        }
    };
    if code != ffi::SQLITE_OK || value.is_null() {
        return None;
    }
    // SAFETY: a protected value owned by the iterator, copied before it moves on.
    unsafe {
        Some(match ffi::sqlite3_value_type(value) {
            ffi::SQLITE_INTEGER => Value::Integer(ffi::sqlite3_value_int64(value)),
            ffi::SQLITE_FLOAT => Value::Real(ffi::sqlite3_value_double(value)),
            ffi::SQLITE_TEXT => {
                let text = ffi::sqlite3_value_text(value);
                let len = usize::try_from(ffi::sqlite3_value_bytes(value)).unwrap_or(0);
                let bytes = if text.is_null() {
                    &[][..]
                } else {
                    std::slice::from_raw_parts(text, len)
                };
                Value::Text(String::from_utf8_lossy(bytes).into_owned())
            }
            ffi::SQLITE_BLOB => {
                let blob = ffi::sqlite3_value_blob(value);
                let len = usize::try_from(ffi::sqlite3_value_bytes(value)).unwrap_or(0);
                Value::Blob(if blob.is_null() {
                    Vec::new()
                } else {
                    std::slice::from_raw_parts(blob.cast::<u8>(), len).to_vec()
                })
            }
            _ => Value::Null,
        })
    }
}

/// A row a changeset touches: its table and its primary key, encoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowKey {
    pub table: String,
    pub key: Vec<u8>,
}

/// What a change does to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Insert,
    Update,
    Delete,
}

/// One row change of a changeset, decoded.
#[derive(Debug, Clone)]
pub struct Change {
    pub table: String,
    pub kind: ChangeKind,
    /// Per column: part of the primary key (for a table keyed by rowid, column 0 is the rowid).
    pub primary_key: Vec<bool>,
    /// The row before (UPDATE, DELETE; an UPDATE carries only its key and changed columns).
    pub old: Vec<Option<rusqlite::types::Value>>,
    /// The row after (INSERT, UPDATE; an UPDATE carries only its changed columns).
    pub new: Vec<Option<rusqlite::types::Value>>,
}

impl Change {
    /// The primary-key values: the new row's for an INSERT, else the old row's.
    pub fn key_values(&self) -> impl Iterator<Item = Option<&rusqlite::types::Value>> {
        let row = match self.kind {
            ChangeKind::Insert => &self.new,
            _ => &self.old,
        };
        self.primary_key
            .iter()
            .zip(row)
            .filter(|(is_key, _)| **is_key)
            .map(|(_, value)| value.as_ref())
    }
}

/// Decodes every change of a changeset, in order.
pub fn changes(changeset: &[u8]) -> Result<Vec<Change>, ChangesetError> {
    let mut changes = Vec::new();
    if changeset.is_empty() {
        return Ok(changes);
    }
    let size_bytes = c_int::try_from(changeset.len()).map_err(|_| ChangesetError::TooLarge {
        limit_bytes: MAX_CHANGESET_BYTES,
    })?;
    // SAFETY: `changeset` outlives the iterator (finalized before returning).
    let iterator = unsafe { ChangesetIterator::start(changeset, size_bytes)? };
    loop {
        // SAFETY: live iterator.
        match unsafe { session::sqlite3changeset_next(iterator.0) } {
            ffi::SQLITE_ROW => {}
            ffi::SQLITE_DONE => break,
            code => return Err(sqlite_error(ptr::null_mut(), code).into()),
        }
        // SAFETY: the iterator points at a change.
        let Some((table, column_count, operation)) = (unsafe { current_change(iterator.0) }) else {
            return Err(sqlite_error(ptr::null_mut(), ffi::SQLITE_CORRUPT).into());
        };
        let kind = match operation {
            ffi::SQLITE_INSERT => ChangeKind::Insert,
            ffi::SQLITE_UPDATE => ChangeKind::Update,
            ffi::SQLITE_DELETE => ChangeKind::Delete,
            _ => return Err(sqlite_error(ptr::null_mut(), ffi::SQLITE_CORRUPT).into()),
        };
        let mut flags = ptr::null_mut();
        let mut flag_count: c_int = 0;
        // SAFETY: live iterator at a change; valid out pointers.
        let code = unsafe { session::sqlite3changeset_pk(iterator.0, &mut flags, &mut flag_count) };
        check(ptr::null_mut(), code)?;
        let flag_count = usize::try_from(flag_count).unwrap_or(0).min(column_count);
        // SAFETY: SQLite returned `flag_count` flags, valid until the iterator moves.
        let flags = unsafe { std::slice::from_raw_parts(flags, flag_count) };
        let side = |side: Side| -> Vec<Option<rusqlite::types::Value>> {
            (0..column_count)
                // SAFETY: the iterator points at a change with this side.
                .map(|column| unsafe { change_value(iterator.0, column, side) })
                .collect()
        };
        changes.push(Change {
            table: table.to_string_lossy().into_owned(),
            kind,
            primary_key: flags.iter().map(|flag| *flag != 0).collect(),
            old: if kind == ChangeKind::Insert {
                Vec::new()
            } else {
                side(Side::Old)
            },
            new: if kind == ChangeKind::Delete {
                Vec::new()
            } else {
                side(Side::New)
            },
        });
    }
    check(ptr::null_mut(), iterator.finalize())?;
    Ok(changes)
}

/// The rows changes touch, by primary key — except the rows they insert into tables keyed by
/// their hidden rowid (`keyed_by_rowid` answers per table): such a rowid is SQLite's pick, not
/// the client's, and moves if it collides (see [`apply_changeset_renumbering`]).
pub fn row_keys(changes: &[Change], keyed_by_rowid: &dyn Fn(&str) -> bool) -> Vec<RowKey> {
    changes
        .iter()
        .filter(|c| !(c.kind == ChangeKind::Insert && keyed_by_rowid(&c.table)))
        .map(|c| {
            let mut key = Vec::new();
            for value in c.key_values() {
                encode_key_value(&mut key, value);
            }
            RowKey {
                table: c.table.clone(),
                key,
            }
        })
        .collect()
}

fn encode_key_value(out: &mut Vec<u8>, value: Option<&rusqlite::types::Value>) {
    use rusqlite::types::Value;
    match value {
        None | Some(Value::Null) => out.push(0),
        Some(Value::Integer(i)) => {
            out.push(1);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Some(Value::Real(f)) => {
            out.push(2);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Some(Value::Text(t)) => {
            out.push(3);
            out.extend_from_slice(&(t.len() as u64).to_be_bytes());
            out.extend_from_slice(t.as_bytes());
        }
        Some(Value::Blob(b)) => {
            out.push(4);
            out.extend_from_slice(&(b.len() as u64).to_be_bytes());
            out.extend_from_slice(b);
        }
    }
}

/// Table, column count and operation of the iterator's current change.
///
/// # Safety
/// `iterator` must point at a change; the name is valid until it moves.
unsafe fn current_change<'i>(
    iterator: *mut session::sqlite3_changeset_iter,
) -> Option<(&'i CStr, usize, c_int)> {
    let mut table = ptr::null();
    let mut column_count: c_int = 0;
    let mut operation: c_int = 0;
    // SAFETY: valid iterator per the caller; all out pointers valid.
    let code = unsafe {
        session::sqlite3changeset_op(
            iterator,
            &mut table,
            &mut column_count,
            &mut operation,
            ptr::null_mut(),
        )
    };
    if code != ffi::SQLITE_OK || table.is_null() {
        return None;
    }
    // SAFETY: SQLite returned a NUL-terminated name.
    Some((
        unsafe { CStr::from_ptr(table) },
        usize::try_from(column_count).unwrap_or(0),
        operation,
    ))
}

/// The table name of the iterator's current change.
///
/// # Safety
/// `iterator` must point at a change; the name is valid until it moves.
unsafe fn current_table<'i>(iterator: *mut session::sqlite3_changeset_iter) -> Option<&'i CStr> {
    // SAFETY: per the caller.
    unsafe { current_change(iterator) }.map(|(table, _, _)| table)
}

/// Counts the changes of a changeset per table, reading it once; also
/// rejects a corrupt changeset before anything is applied.
fn count_changes_per_table(
    changeset: &[u8],
    size_bytes: c_int,
) -> Result<ChangesPerTable, ChangesetError> {
    // SAFETY: `changeset` outlives the iterator (finalized before returning).
    let iterator = unsafe { ChangesetIterator::start(changeset, size_bytes)? };
    let mut counts = ChangesPerTable::default();
    loop {
        // SAFETY: live iterator.
        match unsafe { session::sqlite3changeset_next(iterator.0) } {
            ffi::SQLITE_ROW => {
                // SAFETY: the iterator points at a change.
                if let Some(table) = unsafe { current_table(iterator.0) } {
                    counts.record(table);
                }
            }
            ffi::SQLITE_DONE => break,
            code => return Err(sqlite_error(ptr::null_mut(), code).into()),
        }
    }
    check(ptr::null_mut(), iterator.finalize())?;
    Ok(counts)
}

/// Number of changes per table name, in a changeset or in an apply.
#[derive(Debug, Default, PartialEq, Eq)]
struct ChangesPerTable(BTreeMap<String, u64>);

impl ChangesPerTable {
    fn record(&mut self, table: &CStr) {
        let table = table.to_string_lossy();
        match self.0.get_mut(table.as_ref()) {
            Some(count) => *count += 1,
            None => {
                self.0.insert(table.into_owned(), 1);
            }
        }
    }

    /// The first table (by name) whose count differs in `other`.
    fn first_difference(&self, other: &Self) -> Option<String> {
        self.0
            .iter()
            .find(|(table, count)| other.0.get(*table) != Some(count))
            .map(|(table, _)| table.clone())
            .or_else(|| {
                other
                    .0
                    .keys()
                    .find(|table| !self.0.contains_key(*table))
                    .cloned()
            })
    }
}

/// Owns a `sqlite3changeset_start` iterator; finalizes it on drop.
struct ChangesetIterator(*mut session::sqlite3_changeset_iter);

impl ChangesetIterator {
    /// Starts iterating `changeset` (`size_bytes` long), which SQLite only reads.
    ///
    /// # Safety
    /// `changeset` must outlive the iterator.
    unsafe fn start(changeset: &[u8], size_bytes: c_int) -> Result<Self, rusqlite::Error> {
        let mut raw_iterator = ptr::null_mut();
        // SAFETY: `changeset` is valid for `size_bytes` bytes and only read;
        // it outlives the iterator per the caller.
        let code = unsafe {
            session::sqlite3changeset_start(
                &mut raw_iterator,
                size_bytes,
                changeset.as_ptr().cast_mut().cast::<c_void>(),
            )
        };
        check(ptr::null_mut(), code)?;
        Ok(ChangesetIterator(raw_iterator))
    }

    /// Finalizes now, returning the first error the iteration met.
    fn finalize(mut self) -> c_int {
        let iterator = std::mem::replace(&mut self.0, ptr::null_mut());
        // SAFETY: live iterator, never used again (the field is now null).
        unsafe { session::sqlite3changeset_finalize(iterator) }
    }
}

impl Drop for ChangesetIterator {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: live iterator, finalized once.
            unsafe { session::sqlite3changeset_finalize(self.0) };
        }
    }
}

/// Owns a buffer allocated by SQLite; frees it with `sqlite3_free` on drop.
struct SqliteBuffer(*mut c_void);

impl Drop for SqliteBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated by SQLite (or null, which sqlite3_free accepts).
        unsafe { ffi::sqlite3_free(self.0) };
    }
}

/// Turns the connection's (non-TEMP) triggers off while alive and restores
/// the previous setting on drop.
struct TriggersDisabled<'c> {
    connection: &'c Connection,
    were_enabled: bool,
}

impl<'c> TriggersDisabled<'c> {
    fn new(connection: &'c Connection) -> Result<Self, ChangesetError> {
        let were_enabled = connection.db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER)?;
        if were_enabled {
            connection.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false)?;
        }
        Ok(Self {
            connection,
            were_enabled,
        })
    }
}

impl Drop for TriggersDisabled<'_> {
    fn drop(&mut self) {
        if self.were_enabled {
            // Fails only for an unknown option, which this is not.
            if let Err(error) = self
                .connection
                .set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, true)
            {
                tracing::error!(%error, "could not re-enable triggers after a changeset apply");
            }
        }
    }
}

/// `Ok` for `SQLITE_OK`, else the error with SQLite's message when the
/// connection holds one for this code.
fn check(db: *mut ffi::sqlite3, code: c_int) -> Result<(), rusqlite::Error> {
    if code == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(sqlite_error(db, code))
    }
}

fn sqlite_error(db: *mut ffi::sqlite3, code: c_int) -> rusqlite::Error {
    let message = if db.is_null() {
        None
    } else {
        // SAFETY: a live connection handle; the message is copied at once.
        unsafe {
            (ffi::sqlite3_errcode(db) & 0xff == code & 0xff).then(|| {
                CStr::from_ptr(ffi::sqlite3_errmsg(db))
                    .to_string_lossy()
                    .into_owned()
            })
        }
    };
    rusqlite::Error::SqliteFailure(ffi::Error::new(code), message)
}

/// Merges changesets recorded one after another into one equivalent changeset (later changes to
/// a row are folded into earlier ones), so a follower applies a whole batch with one apply call
/// instead of one per transaction.
pub fn merge(changesets: &[Vec<u8>]) -> Result<Vec<u8>, ChangesetError> {
    let mut group: *mut session::sqlite3_changegroup = ptr::null_mut();
    // SAFETY: `group` receives a new changegroup or stays null on failure.
    let code = unsafe { session::sqlite3changegroup_new(&raw mut group) };
    check(ptr::null_mut(), code)?;
    let merged = merge_into(group, changesets);
    // SAFETY: created above, deleted exactly once, not used afterwards.
    unsafe { session::sqlite3changegroup_delete(group) };
    merged
}

fn merge_into(
    group: *mut session::sqlite3_changegroup,
    changesets: &[Vec<u8>],
) -> Result<Vec<u8>, ChangesetError> {
    for changeset in changesets.iter().filter(|c| !c.is_empty()) {
        let size = c_int::try_from(changeset.len()).map_err(|_| ChangesetError::TooLarge {
            limit_bytes: MAX_CHANGESET_BYTES,
        })?;
        // SAFETY: the buffer is valid for `size` bytes and only read by SQLite.
        let code = unsafe {
            session::sqlite3changegroup_add(
                group,
                size,
                changeset.as_ptr().cast_mut().cast::<c_void>(),
            )
        };
        check(ptr::null_mut(), code)?;
    }
    let mut size: c_int = 0;
    let mut buffer: *mut c_void = ptr::null_mut();
    // SAFETY: on success `buffer` is an sqlite3_malloc'ed block of `size` bytes (or null).
    let code = unsafe { session::sqlite3changegroup_output(group, &raw mut size, &raw mut buffer) };
    check(ptr::null_mut(), code)?;
    if buffer.is_null() {
        return Ok(Vec::new());
    }
    let len = usize::try_from(size).unwrap_or(0);
    // SAFETY: `buffer` holds `len` initialised bytes; copied, then freed once.
    let merged = unsafe { std::slice::from_raw_parts(buffer.cast::<u8>(), len) }.to_vec();
    unsafe { ffi::sqlite3_free(buffer) };
    Ok(merged)
}

/// Compresses a changeset with zstd at [`COMPRESSION_LEVEL`].
///
/// # Panics
/// Only if zstd cannot allocate its context: compressing a byte slice at a
/// valid level into a buffer of `compress_bound` size cannot otherwise fail.
pub fn compress(changeset: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(changeset, COMPRESSION_LEVEL)
        .expect("zstd compression at a valid level fails only when out of memory")
}

/// Decompresses a changeset from [`compress`], refusing to produce more than
/// `max_bytes` bytes (a corrupt or hostile frame cannot exhaust memory).
pub fn decompress(compressed: &[u8], max_bytes: usize) -> Result<Vec<u8>, ChangesetError> {
    let decoder =
        zstd::stream::read::Decoder::with_buffer(compressed).map_err(ChangesetError::Decompress)?;
    let mut changeset = Vec::new();
    // Read one byte past the limit to tell "exactly max" from "more".
    let read_limit = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    decoder
        .take(read_limit)
        .read_to_end(&mut changeset)
        .map_err(ChangesetError::Decompress)?;
    if changeset.len() > max_bytes {
        return Err(ChangesetError::TooLarge {
            limit_bytes: max_bytes,
        });
    }
    Ok(changeset)
}

#[cfg(test)]
mod tests {
    //! Scenarios run on two real database files: A plays the leader (records
    //! changesets) and B the follower (applies them). Each test says what it
    //! proves; the findings in the module doc are pinned here.

    use std::collections::BTreeMap;
    use std::path::Path;

    use rusqlite::types::Value;

    use super::*;

    const SCHEMA: &str = "
        CREATE TABLE accounts (
            id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
            balance REAL, avatar BLOB, note TEXT);
        CREATE TABLE tags (
            namespace TEXT NOT NULL, name TEXT NOT NULL, value TEXT,
            PRIMARY KEY (namespace, name));
        CREATE TABLE events (kind TEXT, payload BLOB, at TEXT);
        CREATE TABLE settings (key TEXT NOT NULL PRIMARY KEY, value) WITHOUT ROWID;
        CREATE TABLE tickets (
            id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL,
            token INTEGER, created_at TEXT);
        CREATE TABLE audit (id INTEGER PRIMARY KEY, account_id INTEGER, action TEXT);
        CREATE TRIGGER accounts_audit AFTER INSERT ON accounts BEGIN
            INSERT INTO audit (account_id, action) VALUES (new.id, 'created');
        END;
        CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
        CREATE TABLE books (
            id INTEGER PRIMARY KEY,
            author_id INTEGER NOT NULL REFERENCES authors (id) ON DELETE CASCADE,
            title TEXT);
    ";

    /// Rows every scenario starts from, replicated from A to B.
    const SEED: &str = "
        INSERT INTO accounts (id, name, balance) VALUES (1, 'ada', 10.5), (2, 'bob', NULL);
        INSERT INTO tags VALUES ('color', 'sky', 'blue'), ('color', 'grass', 'green');
        INSERT INTO settings VALUES ('mode', 'fast');
        INSERT INTO authors VALUES (1, 'Le Guin'), (2, 'Lem');
        INSERT INTO books VALUES (1, 1, 'Earthsea'), (2, 1, 'Lathe'), (3, 2, 'Solaris');
    ";

    struct Cluster {
        _directory: tempfile::TempDir,
        leader: Connection,
        follower: Connection,
    }

    /// A and B: two files with the same schema and the seed replicated.
    fn cluster() -> Cluster {
        let directory = tempfile::tempdir().expect("temp dir");
        let leader = open(&directory.path().join("a.db"));
        let follower = open(&directory.path().join("b.db"));
        leader.execute_batch(SCHEMA).expect("schema on A");
        follower.execute_batch(SCHEMA).expect("schema on B");
        let cluster = Cluster {
            _directory: directory,
            leader,
            follower,
        };
        cluster.replicate(SEED);
        cluster.assert_identical();
        cluster
    }

    fn open(path: &Path) -> Connection {
        let connection = Connection::open(path).expect("open");
        connection
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;")
            .expect("pragmas");
        connection
    }

    impl Cluster {
        /// Runs `sql` on A in a recorded transaction, applies the changeset
        /// on B in a transaction, and returns the changeset.
        fn replicate(&self, sql: &str) -> Vec<u8> {
            let changeset = record(&self.leader, sql);
            self.follower.execute_batch("BEGIN").expect("begin on B");
            apply_changeset(&self.follower, &changeset).expect("apply on B");
            self.follower.execute_batch("COMMIT").expect("commit on B");
            changeset
        }

        fn assert_identical(&self) {
            assert_eq!(dump(&self.leader), dump(&self.follower));
        }
    }

    /// `row_keys` names each touched row by table and key: the inserted row's key, the old key
    /// of an update or delete, both keys of an update that changes the key (the session records
    /// it as a delete and an insert); an insert into a table keyed by its hidden rowid names
    /// nothing (its rowid is SQLite's pick).
    #[test]
    fn row_keys_name_the_rows_a_changeset_touches() {
        let cluster = cluster();
        let changeset = record(
            &cluster.leader,
            "INSERT INTO tags VALUES ('size', 'big', 'L');
             UPDATE accounts SET balance = 1 WHERE id = 2;
             UPDATE accounts SET id = 7 WHERE id = 1;
             DELETE FROM settings WHERE key = 'mode';
             INSERT INTO events VALUES ('k', NULL, NULL);",
        );
        let decoded = changes(&changeset).expect("decode");
        let keys = row_keys(&decoded, &|table| table == "events");
        let key = |table: &str, values: &[Value]| {
            let mut key = Vec::new();
            for value in values {
                encode_key_value(&mut key, Some(value));
            }
            RowKey {
                table: table.into(),
                key,
            }
        };
        let mut expected = vec![
            key(
                "tags",
                &[Value::Text("size".into()), Value::Text("big".into())],
            ),
            key("accounts", &[Value::Integer(2)]),
            key("accounts", &[Value::Integer(1)]),
            key("accounts", &[Value::Integer(7)]),
            key("settings", &[Value::Text("mode".into())]),
        ];
        let mut got = keys.clone();
        let order = |k: &RowKey| (k.table.clone(), k.key.clone());
        expected.sort_by_key(order);
        got.sort_by_key(order);
        assert_eq!(got, expected);
        assert!(
            decoded
                .iter()
                .any(|c| c.table == "events" && c.kind == ChangeKind::Insert),
            "the skipped insert is in the changeset"
        );
    }

    /// Runs `sql` on `connection` in a transaction recorded by one recorder.
    fn record(connection: &Connection, sql: &str) -> Vec<u8> {
        connection.execute_batch("BEGIN").expect("begin");
        let recorder = ChangeRecorder::start(connection).expect("start recorder");
        connection.execute_batch(sql).expect("leader SQL");
        let changeset = recorder.finish().expect("finish recorder");
        connection.execute_batch("COMMIT").expect("commit");
        changeset
    }

    /// Every row of every table (sqlite_sequence included), sorted: equal
    /// dumps mean equal content. The rowid is included where it is
    /// replicated state (rowid alias or no primary key), left out where it
    /// is not (WITHOUT ROWID, or a declared non-INTEGER primary key).
    fn dump(connection: &Connection) -> BTreeMap<String, Vec<String>> {
        let mut tables = connection
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")
            .expect("list tables");
        let tables: Vec<String> = tables
            .query_map([], |row| row.get(0))
            .expect("list tables")
            .collect::<Result<_, _>>()
            .expect("list tables");
        tables
            .into_iter()
            .map(|table| {
                let select = if rowid_is_replicated(connection, &table) {
                    format!("SELECT _rowid_, * FROM \"{table}\"")
                } else {
                    format!("SELECT * FROM \"{table}\"")
                };
                let mut statement = connection.prepare(&select).expect("select");
                let columns = statement.column_count();
                let mut rows: Vec<String> = statement
                    .query_map([], |row| {
                        (0..columns)
                            .map(|index| row.get::<_, Value>(index))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .expect("rows")
                    .map(|row| format!("{:?}", row.expect("row")))
                    .collect();
                rows.sort();
                (table, rows)
            })
            .collect()
    }

    /// True for rowid tables whose rowid a changeset carries: those with an
    /// INTEGER PRIMARY KEY (the rowid itself) or with no primary key.
    fn rowid_is_replicated(connection: &Connection, table: &str) -> bool {
        let without_rowid: bool = connection
            .query_row(
                "SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1",
                [table],
                |row| row.get(0),
            )
            .expect("table list");
        let key_types: Vec<String> = connection
            .prepare("SELECT upper(type) FROM pragma_table_info(?1) WHERE pk > 0")
            .expect("table info")
            .query_map([table], |row| row.get(0))
            .expect("table info")
            .collect::<Result<_, _>>()
            .expect("table info");
        !without_rowid && (key_types.is_empty() || key_types == ["INTEGER"])
    }

    fn tables_in(changeset: &[u8]) -> BTreeMap<String, u64> {
        let size = c_int::try_from(changeset.len()).expect("small changeset");
        count_changes_per_table(changeset, size)
            .expect("valid changeset")
            .0
    }

    fn count(connection: &Connection, sql: &str) -> i64 {
        connection
            .query_row(sql, [], |row| row.get(0))
            .expect("count")
    }

    /// SQLite's own apply with its defaults (triggers and FK actions on),
    /// omitting conflicts and counting them: what we would get without the
    /// precautions of `apply_changeset`.
    fn apply_with_sqlite_defaults(connection: &Connection, changeset: &[u8]) -> Vec<ConflictKind> {
        unsafe extern "C" fn omit(
            context: *mut c_void,
            conflict: c_int,
            _iterator: *mut session::sqlite3_changeset_iter,
        ) -> c_int {
            unsafe {
                (*context.cast::<Vec<ConflictKind>>()).push(ConflictKind::from_code(conflict))
            };
            0 // SQLITE_CHANGESET_OMIT
        }
        let mut conflicts: Vec<ConflictKind> = Vec::new();
        let code = unsafe {
            session::sqlite3changeset_apply_v3(
                connection.handle(),
                c_int::try_from(changeset.len()).expect("small"),
                changeset.as_ptr().cast_mut().cast(),
                None,
                Some(omit),
                (&raw mut conflicts).cast(),
                ptr::null_mut(),
                ptr::null_mut(),
                0,
            )
        };
        assert_eq!(code, ffi::SQLITE_OK);
        conflicts
    }

    /// The session extension is compiled in (LIBSQLITE3_FLAGS reached the C
    /// build) and our declarations link and run.
    #[test]
    fn session_symbols_link() {
        let connection = Connection::open_in_memory().expect("open");
        let enabled: i64 = connection
            .query_row(
                "SELECT sqlite_compileoption_used('ENABLE_SESSION')",
                [],
                |row| row.get(0),
            )
            .expect("compile option");
        assert_eq!(enabled, 1);
        connection
            .execute_batch("CREATE TABLE t (x)")
            .expect("schema");
        let recorder = ChangeRecorder::start(&connection).expect("start");
        connection
            .execute_batch("INSERT INTO t VALUES (1)")
            .expect("insert");
        let changeset = recorder.finish().expect("finish");
        assert_eq!(tables_in(&changeset), BTreeMap::from([("t".to_owned(), 1)]));
    }

    /// Every kind of table replicates byte-identically: INTEGER PRIMARY KEY,
    /// composite TEXT key, no key (rowid), WITHOUT ROWID, AUTOINCREMENT; with
    /// NULLs, blobs, floats, and non-deterministic values fixed on A.
    #[test]
    fn replicates_every_kind_of_table() {
        let cluster = cluster();
        let changeset = cluster.replicate(
            "INSERT INTO accounts (id, name, balance, avatar, note)
                 VALUES (3, 'cy', -0.1, x'00ff10', NULL),
                        (NULL, 'dee', 1e300, zeroblob(3), 'auto id');
             INSERT INTO tags VALUES ('size', 'big', NULL);
             INSERT INTO events VALUES ('login', randomblob(8), datetime('now')),
                                       ('login', NULL, strftime('%f', 'now')),
                                       (NULL, NULL, NULL);
             INSERT INTO settings VALUES ('seed', random()), ('pi', 3.141592653589793);
             INSERT INTO tickets (title, token, created_at)
                 VALUES ('first', random(), datetime('now')), ('second', random(), NULL);",
        );
        cluster.assert_identical();
        assert_eq!(
            tables_in(&changeset),
            BTreeMap::from([
                ("accounts".to_owned(), 2),
                ("audit".to_owned(), 2),
                ("events".to_owned(), 3),
                ("settings".to_owned(), 2),
                ("tags".to_owned(), 1),
                ("tickets".to_owned(), 2),
            ])
        );

        cluster.replicate(
            "UPDATE accounts SET balance = balance * 2, avatar = NULL WHERE id = 1;
             UPDATE accounts SET note = 'was null' WHERE note IS NULL;
             DELETE FROM accounts WHERE name = 'bob';
             UPDATE tags SET value = 'azure' WHERE namespace = 'color' AND name = 'sky';
             DELETE FROM tags WHERE name = 'grass';
             UPDATE events SET payload = randomblob(4) WHERE kind IS NULL;
             DELETE FROM events WHERE _rowid_ = 1;
             UPDATE settings SET value = random() WHERE key = 'seed';
             DELETE FROM settings WHERE key = 'mode';
             UPDATE tickets SET token = random();
             DELETE FROM tickets WHERE title = 'first';",
        );
        cluster.assert_identical();
    }

    /// A rowid table whose declared primary key is not INTEGER keeps a hidden
    /// rowid that the changeset does not carry: B numbers such rows in the
    /// order it applies them, which is not A's. Content by key is identical;
    /// `rowid` and unordered scans of such tables may differ between nodes.
    /// Several transactions' changesets merged into one apply give the same content as applying
    /// them one by one, including a row inserted, updated and deleted across them.
    #[test]
    fn merged_changesets_apply_like_the_sequence() {
        let cluster = cluster();
        let steps = [
            "INSERT INTO settings VALUES ('a', 1), ('b', 2)",
            "UPDATE settings SET value = value + 10 WHERE key = 'a'; INSERT INTO events VALUES ('x', NULL, 1)",
            "DELETE FROM settings WHERE key = 'b'; INSERT INTO settings VALUES ('c', random())",
            "UPDATE settings SET value = 0 WHERE key = 'c'; DELETE FROM events WHERE kind = 'x'",
        ];
        let changesets: Vec<Vec<u8>> = steps
            .iter()
            .map(|sql| record(&cluster.leader, sql))
            .collect();
        let merged = merge(&changesets).expect("merge");
        cluster.follower.execute_batch("BEGIN").expect("begin on B");
        apply_changeset(&cluster.follower, &merged).expect("apply merged on B");
        cluster
            .follower
            .execute_batch("COMMIT")
            .expect("commit on B");
        cluster.assert_identical();
        assert!(merge(&[]).expect("empty merge").is_empty());
    }

    #[test]
    fn hidden_rowid_of_a_text_keyed_table_is_not_replicated() {
        let cluster = cluster();
        let inserts: String = (0..20)
            .map(|index| format!("INSERT INTO tags VALUES ('n', 'k{index}', NULL);"))
            .collect();
        cluster.replicate(&inserts);
        cluster.assert_identical();
        let rowids = "SELECT group_concat(name, ',') FROM (SELECT name FROM tags ORDER BY rowid)";
        let on_leader: String = cluster
            .leader
            .query_row(rowids, [], |row| row.get(0))
            .expect("A");
        let on_follower: String = cluster
            .follower
            .query_row(rowids, [], |row| row.get(0))
            .expect("B");
        assert_ne!(on_leader, on_follower);
    }

    /// AUTOINCREMENT: sqlite_sequence is never in a changeset. B keeps its
    /// own copy, raised by the explicit rowids it applies; it lags A's only
    /// when A allocated a rowid that no surviving row holds, and catches up
    /// with A's next insert (whose rowid is shipped explicitly).
    #[test]
    fn sqlite_sequence_is_maintained_by_the_follower_not_replicated() {
        let cluster = cluster();
        let sequence = "SELECT seq FROM sqlite_sequence WHERE name = 'tickets'";

        let changeset = cluster.replicate(
            "INSERT INTO tickets (title) VALUES ('a'), ('b'), ('c');
             DELETE FROM tickets WHERE title = 'c';",
        );
        assert!(!tables_in(&changeset).contains_key("sqlite_sequence"));
        assert_eq!(count(&cluster.leader, sequence), 3);
        assert_eq!(count(&cluster.follower, sequence), 2);
        let without_sequence = |connection| {
            let mut tables = dump(connection);
            tables.remove("sqlite_sequence");
            tables
        };
        assert_eq!(
            without_sequence(&cluster.leader),
            without_sequence(&cluster.follower)
        );

        cluster.replicate("INSERT INTO tickets (title) VALUES ('d')");
        assert_eq!(count(&cluster.leader, "SELECT max(id) FROM tickets"), 4);
        assert_eq!(count(&cluster.follower, sequence), 4);
        cluster.assert_identical();
    }

    /// A trigger's effects are in the changeset; the follower must not run
    /// the trigger again. SQLite's own apply would (shown with a trigger that
    /// only B has); `apply_changeset` does not, and re-enables triggers after.
    #[test]
    fn trigger_effects_arrive_exactly_once() {
        let cluster = cluster();
        cluster
            .follower
            .execute_batch(
                "CREATE TABLE fired (at INTEGER);
                 CREATE TRIGGER follower_only AFTER INSERT ON accounts BEGIN
                     INSERT INTO fired VALUES (1);
                 END;",
            )
            .expect("follower-only trigger");

        let changeset = cluster.replicate("INSERT INTO accounts (id, name) VALUES (7, 'eve')");
        assert_eq!(tables_in(&changeset).get("audit"), Some(&1));
        assert_eq!(
            count(
                &cluster.follower,
                "SELECT count(*) FROM audit WHERE account_id = 7"
            ),
            1
        );
        assert_eq!(count(&cluster.follower, "SELECT count(*) FROM fired"), 0);

        assert!(
            cluster
                .follower
                .db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER)
                .expect("db config")
        );
        cluster
            .follower
            .execute_batch("DROP TABLE fired; DROP TRIGGER follower_only")
            .expect("drop");
        cluster.assert_identical();

        // The same kind of changeset through SQLite's defaults: the trigger
        // runs on B, and its audit row collides with the shipped one.
        let changeset = record(
            &cluster.leader,
            "INSERT INTO accounts (id, name) VALUES (8, 'fay')",
        );
        assert_eq!(
            apply_with_sqlite_defaults(&cluster.follower, &changeset),
            [ConflictKind::Conflict]
        );
    }

    /// ON DELETE CASCADE runs once, on A; its deletions travel in the
    /// changeset, and B applies them with foreign key actions off.
    #[test]
    fn cascaded_deletes_arrive_exactly_once() {
        let cluster = cluster();
        let changeset = cluster.replicate("DELETE FROM authors WHERE id = 1");
        assert_eq!(
            tables_in(&changeset),
            BTreeMap::from([("authors".to_owned(), 1), ("books".to_owned(), 2)])
        );
        assert_eq!(count(&cluster.follower, "SELECT count(*) FROM books"), 1);
        cluster.assert_identical();

        // SQLite's defaults would cascade on B too, and then not find the
        // shipped child rows.
        let changeset = record(&cluster.leader, "DELETE FROM authors WHERE id = 2");
        assert_eq!(
            apply_with_sqlite_defaults(&cluster.follower, &changeset),
            [ConflictKind::NotFound]
        );
    }

    /// Each way B can have diverged from A is reported as a conflict; the
    /// apply leaves B as it was, inside the caller's still-open transaction.
    #[test]
    fn diverged_follower_is_a_conflict() {
        struct Case {
            proves: &'static str,
            diverge_follower: &'static str,
            leader: &'static str,
            table: Option<&'static str>,
            kind: ConflictKind,
        }
        let cases = [
            Case {
                proves: "an UPDATE whose before-values differ on B",
                diverge_follower: "UPDATE accounts SET balance = 0 WHERE id = 1",
                leader: "UPDATE accounts SET balance = balance + 1 WHERE id = 1",
                table: Some("accounts"),
                kind: ConflictKind::Data,
            },
            Case {
                proves: "a DELETE whose row differs on B",
                diverge_follower: "UPDATE settings SET value = 'slow'",
                leader: "DELETE FROM settings WHERE key = 'mode'",
                table: Some("settings"),
                kind: ConflictKind::Data,
            },
            Case {
                proves: "an UPDATE whose row B lacks",
                diverge_follower: "DELETE FROM tags WHERE name = 'sky'",
                leader: "UPDATE tags SET value = 'azure' WHERE name = 'sky'",
                table: Some("tags"),
                kind: ConflictKind::NotFound,
            },
            Case {
                proves: "an INSERT whose key B already holds",
                diverge_follower: "INSERT INTO settings VALUES ('theme', 'dark')",
                leader: "INSERT INTO settings VALUES ('theme', 'light')",
                table: Some("settings"),
                kind: ConflictKind::Conflict,
            },
            Case {
                proves: "an INSERT breaking a UNIQUE constraint on B only",
                diverge_follower: "INSERT INTO accounts (id, name) VALUES (99, 'zed')",
                leader: "INSERT INTO accounts (id, name) VALUES (5, 'zed')",
                table: Some("accounts"),
                kind: ConflictKind::Constraint,
            },
            Case {
                proves: "a DELETE leaving a dangling reference on B only",
                diverge_follower: "INSERT INTO books VALUES (9, 2, 'Only on B')",
                leader: "DELETE FROM authors WHERE id = 2",
                table: None,
                kind: ConflictKind::ForeignKey,
            },
        ];
        for case in cases {
            let cluster = cluster();
            cluster
                .follower
                .execute_batch(case.diverge_follower)
                .expect(case.proves);
            let before = dump(&cluster.follower);
            let changeset = record(&cluster.leader, case.leader);

            cluster.follower.execute_batch("BEGIN").expect("begin");
            let result = apply_changeset(&cluster.follower, &changeset);
            match result {
                Err(ChangesetError::Conflict { table, kind }) => {
                    assert_eq!(
                        (table.as_deref(), kind),
                        (case.table, case.kind),
                        "{}",
                        case.proves
                    );
                }
                other => panic!("{}: expected a conflict, got {other:?}", case.proves),
            }
            assert!(!cluster.follower.is_autocommit(), "{}", case.proves);
            assert_eq!(dump(&cluster.follower), before, "{}", case.proves);
            cluster
                .follower
                .execute_batch("ROLLBACK")
                .expect("rollback");
        }
    }

    /// Changes undone by ROLLBACK TO are not in the changeset, whether the
    /// whole client savepoint or a nested one is rolled back; two client
    /// transactions in one outer transaction, each with its own recorder
    /// finished at its end, replicate in order.
    #[test]
    fn savepoint_rollback_removes_changes_from_the_changeset() {
        let cluster = cluster();
        let leader = &cluster.leader;
        leader.execute_batch("BEGIN").expect("outer transaction");

        leader.execute_batch("SAVEPOINT client").expect("savepoint");
        let recorder = ChangeRecorder::start(leader).expect("start");
        leader
            .execute_batch(
                "INSERT INTO accounts (id, name) VALUES (10, 'gus');
                 UPDATE accounts SET balance = 99 WHERE id = 1;
                 DELETE FROM books WHERE id = 3;
                 INSERT INTO events VALUES ('gone', NULL, NULL);
                 INSERT INTO tickets (title) VALUES ('gone');",
            )
            .expect("client 1");
        leader
            .execute_batch("ROLLBACK TO client; RELEASE client")
            .expect("rollback");
        let rolled_back = recorder.finish().expect("finish");
        assert_eq!(rolled_back, Vec::<u8>::new());

        leader.execute_batch("SAVEPOINT client").expect("savepoint");
        let recorder = ChangeRecorder::start(leader).expect("start");
        leader
            .execute_batch(
                "UPDATE accounts SET balance = 1 WHERE id = 1;
                 SAVEPOINT nested;
                 UPDATE accounts SET balance = 2 WHERE id = 1;
                 INSERT INTO settings VALUES ('nested', 1);
                 ROLLBACK TO nested; RELEASE nested;
                 INSERT INTO events VALUES ('kept', NULL, NULL);",
            )
            .expect("client 2");
        leader.execute_batch("RELEASE client").expect("release");
        let second = recorder.finish().expect("finish");
        assert_eq!(
            tables_in(&second),
            BTreeMap::from([("accounts".to_owned(), 1), ("events".to_owned(), 1)])
        );

        leader.execute_batch("SAVEPOINT client").expect("savepoint");
        let recorder = ChangeRecorder::start(leader).expect("start");
        leader
            .execute_batch("UPDATE accounts SET balance = balance + 1 WHERE id = 1")
            .expect("client 3");
        leader.execute_batch("RELEASE client").expect("release");
        let third = recorder.finish().expect("finish");
        leader.execute_batch("COMMIT").expect("commit");

        let follower = &cluster.follower;
        follower.execute_batch("BEGIN").expect("begin");
        for changeset in [&rolled_back, &second, &third] {
            apply_changeset(follower, changeset).expect("apply");
        }
        follower.execute_batch("COMMIT").expect("commit");
        cluster.assert_identical();
        assert_eq!(
            count(
                follower,
                "SELECT CAST(balance AS INTEGER) FROM accounts WHERE id = 1"
            ),
            2
        );
    }

    /// Tables created while recording are recorded too (a table without a
    /// primary key included); their DDL is not, so B creates the table
    /// before applying, as the caller must.
    #[test]
    fn tables_created_while_recording_are_recorded() {
        let cluster = cluster();
        let create = "CREATE TABLE late (v)";
        let changeset = record(
            &cluster.leader,
            &format!("{create}; INSERT INTO late VALUES ('x'), (NULL)"),
        );
        assert_eq!(
            tables_in(&changeset),
            BTreeMap::from([("late".to_owned(), 2)])
        );
        assert!(matches!(
            apply_changeset(&cluster.follower, &changeset),
            Err(ChangesetError::SchemaMismatch { table }) if table == "late"
        ));
        cluster.follower.execute_batch(create).expect("DDL on B");
        apply_changeset(&cluster.follower, &changeset).expect("apply");
        cluster.assert_identical();
    }

    /// No change, or changes that cancel out, give an empty changeset, and
    /// an empty changeset applies as a no-op.
    #[test]
    fn empty_changesets() {
        let cluster = cluster();
        assert_eq!(record(&cluster.leader, "SELECT 1"), Vec::<u8>::new());
        let cancelled = record(
            &cluster.leader,
            "UPDATE accounts SET name = 'tmp' WHERE id = 1;
             UPDATE accounts SET name = 'ada' WHERE id = 1;
             INSERT INTO events VALUES (1, 2, 3);
             DELETE FROM events;",
        );
        assert_eq!(cancelled, Vec::<u8>::new());
        apply_changeset(&cluster.follower, &[]).expect("empty apply");
        cluster.assert_identical();
    }

    /// A changeset touching a table B lacks, or whose primary key differs on
    /// B, is refused as a schema mismatch, leaving B untouched (SQLite alone
    /// would skip that table's changes silently).
    #[test]
    fn missing_or_different_table_is_a_schema_mismatch() {
        for follower_schema in [
            "DROP TABLE events",
            "DROP TABLE settings; CREATE TABLE settings (key TEXT, value PRIMARY KEY)",
        ] {
            let cluster = cluster();
            cluster
                .follower
                .execute_batch(follower_schema)
                .expect("diverge schema");
            let before = dump(&cluster.follower);
            let changeset = record(
                &cluster.leader,
                "INSERT INTO accounts (id, name) VALUES (20, 'hal');
                 INSERT INTO events VALUES ('x', NULL, NULL);
                 INSERT INTO settings VALUES ('y', 'z');",
            );
            match apply_changeset(&cluster.follower, &changeset) {
                Err(ChangesetError::SchemaMismatch { table }) => {
                    assert!(["events", "settings"].contains(&table.as_str()), "{table}");
                }
                other => panic!("{follower_schema}: expected a schema mismatch, got {other:?}"),
            }
            assert_eq!(dump(&cluster.follower), before, "{follower_schema}");
        }
    }

    /// The apply is part of the caller's transaction: rolling that back
    /// undoes it. Without a transaction, the apply commits on its own.
    #[test]
    fn apply_joins_the_callers_transaction() {
        let cluster = cluster();
        let changeset = record(&cluster.leader, "DELETE FROM books");
        let before = dump(&cluster.follower);
        cluster.follower.execute_batch("BEGIN").expect("begin");
        apply_changeset(&cluster.follower, &changeset).expect("apply");
        assert_eq!(count(&cluster.follower, "SELECT count(*) FROM books"), 0);
        cluster
            .follower
            .execute_batch("ROLLBACK")
            .expect("rollback");
        assert_eq!(dump(&cluster.follower), before);

        apply_changeset(&cluster.follower, &changeset).expect("autocommit apply");
        assert!(cluster.follower.is_autocommit());
        cluster.assert_identical();
    }

    /// SQLite rule, pinned: a row with NULL in a declared (non-INTEGER)
    /// primary key of a rowid table is not recorded at all, so schemas must
    /// declare key columns NOT NULL. STRICT tables refuse such rows.
    #[test]
    fn rows_with_a_null_primary_key_are_not_recorded() {
        let directory = tempfile::tempdir().expect("temp dir");
        let leader = open(&directory.path().join("a.db"));
        leader
            .execute_batch(
                "CREATE TABLE legacy (code TEXT PRIMARY KEY, value);
                 CREATE TABLE strict_table (code TEXT PRIMARY KEY, value ANY) STRICT;",
            )
            .expect("schema");
        let changeset = record(&leader, "INSERT INTO legacy VALUES (NULL, 'lost')");
        assert_eq!(count(&leader, "SELECT count(*) FROM legacy"), 1);
        assert_eq!(changeset, Vec::<u8>::new());
        assert!(
            leader
                .execute_batch("INSERT INTO strict_table VALUES (NULL, 1)")
                .is_err()
        );
    }

    /// Dropping a recorder without finishing it deletes its session: nothing
    /// more is recorded, and the connection closes cleanly.
    #[test]
    fn dropped_recorder_deletes_its_session() {
        let directory = tempfile::tempdir().expect("temp dir");
        let connection = open(&directory.path().join("a.db"));
        connection
            .execute_batch("CREATE TABLE t (x)")
            .expect("schema");
        let recorder = ChangeRecorder::start(&connection).expect("start");
        connection
            .execute_batch("INSERT INTO t VALUES (1)")
            .expect("insert");
        drop(recorder);
        let recorder = ChangeRecorder::start(&connection).expect("start again");
        connection
            .execute_batch("INSERT INTO t VALUES (2)")
            .expect("insert");
        assert_eq!(
            tables_in(&recorder.finish().expect("finish")).get("t"),
            Some(&1)
        );
        connection
            .close()
            .map_err(|(_, error)| error)
            .expect("close");
    }

    /// A truncated changeset is rejected before anything is applied.
    #[test]
    fn corrupt_changeset_is_rejected() {
        let cluster = cluster();
        let changeset = record(&cluster.leader, "DELETE FROM books; DELETE FROM tags");
        let before = dump(&cluster.follower);
        let truncated = &changeset[..changeset.len() - 3];
        assert!(matches!(
            apply_changeset(&cluster.follower, truncated),
            Err(ChangesetError::Sqlite(_))
        ));
        assert_eq!(dump(&cluster.follower), before);
    }

    #[test]
    fn compression_round_trips_within_the_limit() {
        let changeset: Vec<u8> = (0..10_000u32)
            .flat_map(|value| (value % 251).to_le_bytes())
            .collect();
        let compressed = compress(&changeset);
        assert!(compressed.len() < changeset.len());
        assert_eq!(
            decompress(&compressed, changeset.len()).expect("exact limit"),
            changeset
        );
        assert!(matches!(
            decompress(&compressed, changeset.len() - 1),
            Err(ChangesetError::TooLarge { limit_bytes }) if limit_bytes == changeset.len() - 1
        ));
        assert_eq!(
            decompress(&compress(&[]), 0).expect("empty"),
            Vec::<u8>::new()
        );
        assert!(matches!(
            decompress(b"not zstd at all", 1 << 20),
            Err(ChangesetError::Decompress(_))
        ));
    }
}
