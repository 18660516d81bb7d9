//! Raw declarations of the SQLite session extension, the part of SQLite that
//! records a transaction's row changes as a *changeset* and applies one to
//! another database.
//!
//! Why this module exists: `libsqlite3-sys` compiles the bundled SQLite with
//! the session extension (the `LIBSQLITE3_FLAGS` set in `.cargo/config.toml`
//! add `-DSQLITE_ENABLE_SESSION -DSQLITE_ENABLE_PREUPDATE_HOOK`), but its
//! pre-generated bindings do not declare the extension's functions, and
//! rusqlite's `session` feature would regenerate them with bindgen, which
//! needs libclang at build time. So we declare exactly the functions and
//! constants that [`super::changeset`] uses, nothing more.
//!
//! Invariants:
//! - Every prototype and constant here was copied from the `sqlite3.h`
//!   shipped inside `libsqlite3-sys` 0.39.1 (SQLite 3.54.1). When that crate
//!   is upgraded, re-check them against its `sqlite3/sqlite3.h`.
//! - The symbols only exist if `LIBSQLITE3_FLAGS` reached the C build; if it
//!   did not, the crate fails to *link* (the `session_symbols_link` test in
//!   [`super::changeset`] exercises them).
//! - Nothing here is safe to call directly: [`super::changeset`] is the only
//!   user and owns every session and iterator it creates.
//!
//! Left out: patchsets, streaming (`_strm`) variants, rebasers,
//! inversion, and table filters on the recording side.

#![allow(non_camel_case_types)] // C names, so each item greps to sqlite3.h.

use std::ffi::{c_char, c_int, c_void};
use std::marker::{PhantomData, PhantomPinned};

use libsqlite3_sys::sqlite3;

/// An open session: records changes made through one database connection.
/// Opaque; only ever handled by pointer.
#[repr(C)]
pub struct sqlite3_session {
    _opaque: [u8; 0],
    _not_send_sync_or_unpin: PhantomData<(*mut u8, PhantomPinned)>,
}

/// A cursor over the changes of a changeset. Opaque; only ever handled by
/// pointer.
#[repr(C)]
pub struct sqlite3_changeset_iter {
    _opaque: [u8; 0],
    _not_send_sync_or_unpin: PhantomData<(*mut u8, PhantomPinned)>,
}

/// Merges changesets into one (changes to the same row are combined). Opaque;
/// only ever handled by pointer.
#[repr(C)]
pub struct sqlite3_changegroup {
    _opaque: [u8; 0],
    _not_send_sync_or_unpin: PhantomData<(*mut u8, PhantomPinned)>,
}

/// `xFilter` of `sqlite3changeset_apply_v3`: called once per change that is
/// about to be attempted (after the schema compatibility check); return 0 to
/// skip the change, non-zero to apply it.
pub type ApplyFilterPerChange =
    unsafe extern "C" fn(context: *mut c_void, iterator: *mut sqlite3_changeset_iter) -> c_int;

/// `xConflict` of the apply functions: called with one of the
/// `SQLITE_CHANGESET_*` conflict codes; must return one of
/// `SQLITE_CHANGESET_OMIT`, `_REPLACE` or `_ABORT`.
pub type ApplyConflictHandler = unsafe extern "C" fn(
    context: *mut c_void,
    conflict: c_int,
    iterator: *mut sqlite3_changeset_iter,
) -> c_int;

/// `sqlite3session_object_config` option: record tables without a declared
/// PRIMARY KEY, keyed by an implicit leftmost `_rowid_ INTEGER PRIMARY KEY`.
/// Must be set before the first table is attached (else `SQLITE_MISUSE`).
pub const SQLITE_SESSION_OBJCONFIG_ROWID: c_int = 2;

/// Apply flag: foreign keys behave as `ON UPDATE NO ACTION ON DELETE NO
/// ACTION` during the apply, so CASCADE / SET NULL / SET DEFAULT actions do
/// not run again on the target (their effects are already in the changeset).
pub const SQLITE_CHANGESETAPPLY_FKNOACTION: c_int = 0x0008;

/// Conflict: a DELETE or UPDATE found its row, but a non-key value differs
/// from the changeset's "before" value.
pub const SQLITE_CHANGESET_DATA: c_int = 1;
/// Conflict: a DELETE or UPDATE did not find its row.
pub const SQLITE_CHANGESET_NOTFOUND: c_int = 2;
/// Conflict: an INSERT collided with an existing primary key.
pub const SQLITE_CHANGESET_CONFLICT: c_int = 3;
/// Conflict: some other constraint (UNIQUE, CHECK, NOT NULL) failed.
pub const SQLITE_CHANGESET_CONSTRAINT: c_int = 4;
/// Conflict: foreign key violations remain at the end of the apply. Reported
/// once per apply; the iterator then carries no table or row.
pub const SQLITE_CHANGESET_FOREIGN_KEY: c_int = 5;

/// Conflict handler answer: roll back everything applied so far; the apply
/// returns `SQLITE_ABORT` (or `SQLITE_CONSTRAINT` for a foreign key conflict).
pub const SQLITE_CHANGESET_ABORT: c_int = 2;
/// Conflict handler answer: skip this change and go on.
pub const SQLITE_CHANGESET_OMIT: c_int = 0;

unsafe extern "C" {
    /// Creates an empty changegroup (free with `sqlite3changegroup_delete`).
    pub unsafe fn sqlite3changegroup_new(pp: *mut *mut sqlite3_changegroup) -> c_int;

    /// Adds a changeset's changes to the group, after those added before.
    pub unsafe fn sqlite3changegroup_add(
        pGrp: *mut sqlite3_changegroup,
        nData: c_int,
        pData: *mut c_void,
    ) -> c_int;

    /// Serialises the group as one changeset; the buffer is owned by the
    /// caller (free with `sqlite3_free`).
    pub unsafe fn sqlite3changegroup_output(
        pGrp: *mut sqlite3_changegroup,
        pnData: *mut c_int,
        ppData: *mut *mut c_void,
    ) -> c_int;

    /// Deletes a changegroup.
    pub unsafe fn sqlite3changegroup_delete(pGrp: *mut sqlite3_changegroup);

    /// Creates a session recording changes to database `zDb` ("main") of
    /// `db`. The session must be deleted before `db` is closed.
    pub unsafe fn sqlite3session_create(
        db: *mut sqlite3,
        zDb: *const c_char,
        ppSession: *mut *mut sqlite3_session,
    ) -> c_int;

    /// Deletes a session. The pointer must not be used afterwards.
    pub unsafe fn sqlite3session_delete(pSession: *mut sqlite3_session);

    /// Sets or queries a session option; `pArg` points to an `int` that is
    /// read (1 set, 0 clear, negative query) and overwritten with the result.
    pub unsafe fn sqlite3session_object_config(
        pSession: *mut sqlite3_session,
        op: c_int,
        pArg: *mut c_void,
    ) -> c_int;

    /// Attaches table `zTab`, or every table of the database (including
    /// tables created later) when `zTab` is NULL.
    pub unsafe fn sqlite3session_attach(
        pSession: *mut sqlite3_session,
        zTab: *const c_char,
    ) -> c_int;

    /// Serialises the recorded changes. On success `*ppChangeset` is a buffer
    /// of `*pnChangeset` bytes owned by the caller (free with `sqlite3_free`);
    /// it may be NULL when there are no changes.
    pub unsafe fn sqlite3session_changeset(
        pSession: *mut sqlite3_session,
        pnChangeset: *mut c_int,
        ppChangeset: *mut *mut c_void,
    ) -> c_int;

    /// Non-zero if no change has been recorded (zero does not guarantee a
    /// non-empty changeset: a row changed and changed back produces none).
    pub unsafe fn sqlite3session_isempty(pSession: *mut sqlite3_session) -> c_int;

    /// Opens an iterator over a changeset buffer, which must outlive it.
    pub unsafe fn sqlite3changeset_start(
        pp: *mut *mut sqlite3_changeset_iter,
        nChangeset: c_int,
        pChangeset: *mut c_void,
    ) -> c_int;

    /// Advances the iterator: `SQLITE_ROW` on a change, `SQLITE_DONE` at the
    /// end, or an error code (e.g. `SQLITE_CORRUPT`).
    pub unsafe fn sqlite3changeset_next(pIter: *mut sqlite3_changeset_iter) -> c_int;

    /// Describes the current change: table name (valid until the next
    /// `sqlite3changeset_next` or the conflict handler returns), column
    /// count, operation (`SQLITE_INSERT`/`_UPDATE`/`_DELETE`), indirect flag.
    /// Only `pbIndirect` may be NULL (the others are written unconditionally).
    pub unsafe fn sqlite3changeset_op(
        pIter: *mut sqlite3_changeset_iter,
        pzTab: *mut *const c_char,
        pnCol: *mut c_int,
        pOp: *mut c_int,
        pbIndirect: *mut c_int,
    ) -> c_int;

    /// The primary-key flags of the current change's table: `*pabPK` points at
    /// `*pnCol` bytes, non-zero for each primary-key column (valid like the
    /// table name).
    pub unsafe fn sqlite3changeset_pk(
        pIter: *mut sqlite3_changeset_iter,
        pabPK: *mut *mut u8,
        pnCol: *mut c_int,
    ) -> c_int;

    /// Column `iVal` of the current change's old row (UPDATE, DELETE), or NULL
    /// in `*ppValue` for a column an UPDATE left alone.
    pub unsafe fn sqlite3changeset_old(
        pIter: *mut sqlite3_changeset_iter,
        iVal: c_int,
        ppValue: *mut *mut libsqlite3_sys::sqlite3_value,
    ) -> c_int;

    /// Column `iVal` of the current change's new row (INSERT, UPDATE), or NULL
    /// in `*ppValue` for a column an UPDATE left alone.
    pub unsafe fn sqlite3changeset_new(
        pIter: *mut sqlite3_changeset_iter,
        iVal: c_int,
        ppValue: *mut *mut libsqlite3_sys::sqlite3_value,
    ) -> c_int;

    /// Frees an iterator from `sqlite3changeset_start`; returns the first
    /// error the iterator met, if any.
    pub unsafe fn sqlite3changeset_finalize(pIter: *mut sqlite3_changeset_iter) -> c_int;

    /// Applies a changeset to the "main" database of `db` inside its own
    /// `SAVEPOINT changeset_apply`. `xFilter` (may be None) is called per
    /// change that passed the schema check; `xConflict` (must be Some) on
    /// each conflict. Changes to tables that are missing or incompatible on
    /// the target are skipped silently (only `sqlite3_log` is told).
    /// `ppRebase`/`pnRebase` may be NULL.
    pub unsafe fn sqlite3changeset_apply_v3(
        db: *mut sqlite3,
        nChangeset: c_int,
        pChangeset: *mut c_void,
        xFilter: Option<ApplyFilterPerChange>,
        xConflict: Option<ApplyConflictHandler>,
        pCtx: *mut c_void,
        ppRebase: *mut *mut c_void,
        pnRebase: *mut c_int,
        flags: c_int,
    ) -> c_int;

    /// Registers (or, with `None`, removes) the connection's pre-update hook, called before
    /// each row change of a rowid or WITHOUT ROWID table; returns the previous context. A
    /// session object installs its own: only one of the two may be active at a time.
    pub unsafe fn sqlite3_preupdate_hook(
        db: *mut sqlite3,
        xPreUpdate: Option<PreUpdateHook>,
        pCtx: *mut c_void,
    ) -> *mut c_void;

    /// Column `i` of the row about to be updated or deleted (inside the hook only).
    pub unsafe fn sqlite3_preupdate_old(
        db: *mut sqlite3,
        i: c_int,
        ppValue: *mut *mut libsqlite3_sys::sqlite3_value,
    ) -> c_int;

    /// Column `i` of the row about to be inserted, or of an updated row as it will be.
    pub unsafe fn sqlite3_preupdate_new(
        db: *mut sqlite3,
        i: c_int,
        ppValue: *mut *mut libsqlite3_sys::sqlite3_value,
    ) -> c_int;

    /// Columns of the row the hook is called for.
    pub unsafe fn sqlite3_preupdate_count(db: *mut sqlite3) -> c_int;

    /// 0 for a change the statement made directly, 1 for one made by a trigger it fired, ...
    pub unsafe fn sqlite3_preupdate_depth(db: *mut sqlite3) -> c_int;
}

/// The pre-update callback: (context, connection, SQLITE_INSERT/UPDATE/DELETE, database name,
/// table name, rowid before, rowid after).
pub type PreUpdateHook = unsafe extern "C" fn(
    context: *mut c_void,
    db: *mut sqlite3,
    op: c_int,
    database: *const c_char,
    table: *const c_char,
    old_rowid: i64,
    new_rowid: i64,
);
