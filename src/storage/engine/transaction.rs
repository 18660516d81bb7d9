//! The leader's interactive transactions: client transactions whose statements arrive one at a
//! time (PostgreSQL `BEGIN ... COMMIT`), each answered before the next is sent — several open at
//! once, interleaved on the one writer connection.
//!
//! # Parking and resuming
//!
//! At most one transaction is *live*: its changes are applied in a `SAVEPOINT txn` on top of the
//! leader's open batch, so its statements see its own changes and nobody else's uncommitted
//! ones. Every statement is recorded by its own session, so a transaction's effects are always
//! also held as [`WritePart`]s. When another transaction's step (or a batch of autocommit
//! writes, or the batch's commit) needs the writer, the live one is *parked*: `ROLLBACK TO txn`
//! undoes its changes in SQLite, its parts keep them. Its next step *resumes* it: its parts are
//! merged and applied again under a session, whose changeset becomes its parts. A transaction
//! therefore holds the writer only while one of its steps runs, never across its client's round
//! trips.
//!
//! # Row locks
//!
//! Like PostgreSQL's row locks, each open transaction owns the rows it changed (primary keys
//! from its changesets, [`changeset::row_keys`]) until it ends. A statement — of a transaction,
//! or an autocommit request — whose changes touch a row another open transaction owns is undone
//! and answered [`TxnAnswer::Blocked`]: its caller sends it again when a transaction ends
//! ([`super::Engine::transaction_ends`]). Run again after the owner committed, it sees the
//! owner's change (an `UPDATE ... SET x = x + 1` adds to it, an `INSERT` of the same key fails
//! as a duplicate), just as PostgreSQL re-checks a row after waiting for its lock. A wait that
//! would close a cycle is a deadlock: the transaction whose step closes it is rolled back
//! ([`TxnError::Deadlock`]).
//!
//! Rows a transaction inserts into a table keyed by its hidden rowid lock nothing: that rowid is
//! SQLite's pick, and if another transaction took the same one meanwhile, resuming inserts the
//! row under a fresh rowid ([`changeset::apply_changeset_renumbering`]).
//!
//! # What stays exclusive
//!
//! A transaction that ran DDL cannot be parked (schema changes are not changesets), nor can one
//! whose effects grew past [`PARKABLE_BYTES`] (resuming would cost their size each time): until
//! it ends every other step is blocked behind it, as with SQLite's one writer. A transaction
//! that changed more than [`ROW_LOCKS_PER_TABLE`] rows of a table owns the whole table. Resuming fails —
//! and the transaction is lost, as after a serialization failure — when a concurrent change
//! makes its changes impossible to re-apply: a UNIQUE index other than the key, a foreign key,
//! or a schema change of a table it touched.
//!
//! If the batch is rolled back underneath (another leader's entry arrived: leadership moved),
//! every open transaction is gone and its next step answers [`TxnError::Lost`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::replay::{self, Replayed};
use super::{
    ExecutedBatch, RequestFailure, Writer, changeset_bytes, deferred_foreign_key_violations,
    push_bytes, push_changeset, run_recorded,
};
use crate::raft::types::WritePart;
use crate::storage::capture::{CaptureError, RowCapture, Shapes};
use crate::storage::changeset::{self, ChangeRecorder, ResumeSchema, RowKey};
use crate::storage::error::{EngineError, SqlError};
use crate::storage::request::{Statement, StatementResult};

/// Rows one transaction locks one by one in a table; past it, it locks the whole table (a bulk
/// load must not keep a lock entry per row).
const ROW_LOCKS_PER_TABLE: usize = 10_000;
/// Effects past which a transaction is no longer parked (resuming costs their size): it then
/// holds the writer until it ends.
const PARKABLE_BYTES: usize = 8 * 1024 * 1024;

/// Names an interactive transaction on the leader (chosen by the caller, unique while open).
pub type TxnId = u64;

/// One step of an interactive transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TxnStep {
    /// Opens the transaction.
    Begin,
    Execute(Statement),
    /// `SAVEPOINT name` (names as the client's session normalized them).
    Savepoint(String),
    /// `RELEASE SAVEPOINT name`: forgets it and every later savepoint, keeping their changes.
    Release(String),
    /// `ROLLBACK TO SAVEPOINT name`: undoes everything after it; the savepoint stays.
    RollbackTo(String),
    /// From now on the transaction holds the writer until it ends (REPEATABLE READ or
    /// SERIALIZABLE, `SELECT ... FOR UPDATE`): nobody else writes while it reads.
    Exclusive,
    Commit,
    Rollback,
}

/// What a step produced.
#[derive(Debug)]
pub enum TxnAnswer {
    Begun,
    Executed(StatementResult),
    /// A savepoint step or a rollback.
    Done,
    /// The transaction's effects, queued as the batch's pending proposal (no proposal if it
    /// changed nothing); the caller proposes them to Raft.
    Committed(ExecutedBatch),
    /// The step touched rows another open transaction owns (or that transaction cannot be set
    /// aside): nothing of it ran. Send it again once a transaction ended.
    Blocked,
}

#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    /// The statement failed and changed nothing. The transaction stays open — except after
    /// `Commit`, where a failure (a deferred constraint) means it was rolled back.
    #[error(transparent)]
    Sql(SqlError),
    /// No transaction is open: it was rolled back (by a statement such as `INSERT OR ROLLBACK`,
    /// because leadership moved, or because its changes could not be resumed), or never begun.
    #[error("{0}")]
    Lost(String),
    /// Waiting for the rows the step needs would wait forever: the transaction was rolled back.
    #[error("{0}")]
    Deadlock(String),
    #[error(transparent)]
    Engine(EngineError),
}

impl From<rusqlite::Error> for TxnError {
    fn from(e: rusqlite::Error) -> Self {
        TxnError::Engine(e.into())
    }
}

/// Every open interactive transaction, and who owns which row.
pub(super) struct Transactions {
    open: HashMap<TxnId, OpenTxn>,
    /// The transaction whose changes are applied in `SAVEPOINT txn`.
    live: Option<TxnId>,
    /// Row → the open transaction that changed it.
    locks: HashMap<RowKey, TxnId>,
    /// Table → the open transaction that changed too many of its rows to lock them one by one.
    table_locks: HashMap<String, TxnId>,
    /// Transaction → the transaction whose rows its last step waits for.
    waiting: HashMap<TxnId, TxnId>,
    /// Bumped whenever a transaction ends (its rows are free).
    ends: watch::Sender<u64>,
}

/// One open transaction's bookkeeping.
#[derive(Debug, Default)]
struct OpenTxn {
    /// Effects so far, in execution order.
    parts: Vec<WritePart>,
    /// Client savepoints, oldest first, each with the effects as of when it was set.
    savepoints: Vec<(String, Vec<WritePart>)>,
    /// The rows it owns.
    keys: Vec<RowKey>,
    /// How many rows it owns per table.
    rows_per_table: HashMap<String, usize>,
    /// Tables it owns whole.
    tables: Vec<String>,
    /// It ran DDL, grew too large or asked to: it stays live until it ends.
    exclusive: bool,
    /// It asked to hold the writer ([`TxnStep::Exclusive`]).
    asked_exclusive: bool,
}

impl OpenTxn {
    fn savepoint(&self, name: &str) -> Result<usize, TxnError> {
        self.savepoints
            .iter()
            .rposition(|(n, _)| n == name)
            .ok_or_else(|| {
                TxnError::Sql(SqlError::InvalidRequest(format!(
                    "savepoint \"{name}\" does not exist"
                )))
            })
    }
}

impl Transactions {
    pub(super) fn new() -> (Transactions, watch::Receiver<u64>) {
        let (ends, ends_rx) = watch::channel(0);
        let transactions = Transactions {
            open: HashMap::new(),
            live: None,
            locks: HashMap::new(),
            table_locks: HashMap::new(),
            waiting: HashMap::new(),
            ends,
        };
        (transactions, ends_rx)
    }

    /// Whether any open transaction owns rows (then autocommit requests are checked too).
    pub(super) fn hold_rows(&self) -> bool {
        !self.locks.is_empty() || !self.table_locks.is_empty()
    }

    /// The open transaction, other than `me`, owning one of `keys`.
    pub(super) fn owner_of(&self, keys: &[RowKey], me: Option<TxnId>) -> Option<TxnId> {
        let other = |owner: Option<&TxnId>| owner.copied().filter(|o| Some(*o) != me);
        keys.iter().find_map(|k| {
            other(self.locks.get(k)).or_else(|| other(self.table_locks.get(&k.table)))
        })
    }

    /// Makes `keys` rows of `id`, escalating to a table lock past [`ROW_LOCKS_PER_TABLE`].
    fn acquire(&mut self, id: TxnId, keys: Vec<RowKey>) {
        let Some(txn) = self.open.get_mut(&id) else {
            return;
        };
        for key in keys {
            if self.table_locks.get(&key.table) == Some(&id) {
                continue;
            }
            let count = txn.rows_per_table.entry(key.table.clone()).or_insert(0);
            if *count >= ROW_LOCKS_PER_TABLE {
                self.table_locks.insert(key.table.clone(), id);
                txn.tables.push(key.table);
                continue;
            }
            if self.locks.insert(key.clone(), id).is_none() {
                *count += 1;
                txn.keys.push(key);
            }
        }
    }

    /// The live transaction, if it cannot be parked.
    pub(super) fn exclusive_live(&self) -> Option<TxnId> {
        self.live
            .filter(|id| self.open.get(id).is_some_and(|t| t.exclusive))
    }

    /// Forgets every transaction (the batch under them is gone); the SQLite side is the
    /// caller's.
    pub(super) fn clear(&mut self) {
        let had_any = !self.open.is_empty();
        self.open.clear();
        self.live = None;
        self.locks.clear();
        self.table_locks.clear();
        self.waiting.clear();
        if had_any {
            self.ends.send_modify(|n| *n += 1);
        }
    }

    /// Removes a transaction and frees its rows.
    fn remove(&mut self, id: TxnId) -> Option<OpenTxn> {
        let txn = self.open.remove(&id)?;
        for key in &txn.keys {
            self.locks.remove(key);
        }
        for table in &txn.tables {
            self.table_locks.remove(table);
        }
        self.waiting.remove(&id);
        self.waiting.retain(|_, owner| *owner != id);
        if self.live == Some(id) {
            self.live = None;
        }
        self.ends.send_modify(|n| *n += 1);
        Some(txn)
    }

    /// Whether `id` waiting for `owner` closes a cycle of waits.
    fn would_deadlock(&self, id: TxnId, owner: TxnId) -> bool {
        let mut at = owner;
        for _ in 0..=self.waiting.len() {
            if at == id {
                return true;
            }
            match self.waiting.get(&at) {
                Some(next) => at = *next,
                None => return false,
            }
        }
        false
    }
}

fn not_open() -> TxnError {
    TxnError::Lost(
        "the transaction no longer exists: it was rolled back (leadership moved or a statement \
         rolled it back)"
            .into(),
    )
}

fn has_ddl(parts: &[WritePart]) -> bool {
    parts.iter().any(|p| matches!(p, WritePart::Ddl(_)))
}

fn effects_bytes(parts: &[WritePart]) -> usize {
    parts
        .iter()
        .map(|p| match p {
            WritePart::Ddl(sql) => sql.len(),
            WritePart::Changeset(bytes) | WritePart::CompressedChangeset(bytes) => bytes.len(),
        })
        .sum()
}

impl Writer {
    pub(super) fn transaction_step(
        &mut self,
        id: TxnId,
        step: TxnStep,
    ) -> Result<TxnAnswer, TxnError> {
        let Some(txn) = self.txns.open.get_mut(&id) else {
            if step != TxnStep::Begin {
                return Err(not_open());
            }
            self.txns.open.insert(id, OpenTxn::default());
            return Ok(TxnAnswer::Begun);
        };
        match step {
            TxnStep::Begin => Err(TxnError::Engine(EngineError::Corrupt(format!(
                "transaction {id} is already open"
            )))),
            TxnStep::Execute(statement) => self.execute_in_transaction(id, &statement),
            TxnStep::Savepoint(name) => {
                let effects = txn.parts.clone();
                txn.savepoints.push((name, effects));
                Ok(TxnAnswer::Done)
            }
            TxnStep::Release(name) => {
                let at = txn.savepoint(&name)?;
                txn.savepoints.truncate(at);
                Ok(TxnAnswer::Done)
            }
            TxnStep::RollbackTo(name) => {
                let at = txn.savepoint(&name)?;
                txn.parts = txn.savepoints[at].1.clone();
                txn.savepoints.truncate(at + 1);
                txn.exclusive = txn.asked_exclusive
                    || has_ddl(&txn.parts)
                    || effects_bytes(&txn.parts) > PARKABLE_BYTES;
                // Rows changed after the savepoint stay owned until the end: simpler, and
                // never wrong (only more waiting). The SQLite side is rebuilt from the parts.
                if self.txns.live == Some(id) {
                    // May undo DDL.
                    self.resume_schema = None;
                    self.park().map_err(|e| self.poison(e))?;
                }
                if self.txns.open.get(&id).is_some_and(|t| t.exclusive) {
                    // An exclusive transaction is always live.
                    if let Some(owner) = self.make_live(id)? {
                        return self.block(id, owner);
                    }
                }
                Ok(TxnAnswer::Done)
            }
            TxnStep::Exclusive => {
                txn.asked_exclusive = true;
                self.txns.waiting.remove(&id);
                if let Some(owner) = self.make_live(id)? {
                    return self.block(id, owner);
                }
                if let Some(txn) = self.txns.open.get_mut(&id) {
                    txn.exclusive = true;
                }
                Ok(TxnAnswer::Done)
            }
            TxnStep::Commit => self.commit_transaction(id),
            TxnStep::Rollback => {
                self.end_transaction(id)?;
                Ok(TxnAnswer::Done)
            }
        }
    }

    /// Makes `id` the live transaction, parking the live one; answers the live transaction
    /// instead if that one cannot be parked.
    fn make_live(&mut self, id: TxnId) -> Result<Option<TxnId>, TxnError> {
        match self.txns.live {
            Some(live) if live == id => return Ok(None),
            Some(live) if self.txns.exclusive_live() == Some(live) => return Ok(Some(live)),
            Some(_) => self.park().map_err(|e| self.poison(e))?,
            None => {}
        }
        self.open_batch().map_err(TxnError::Engine)?;
        self.conn.prepare_cached("SAVEPOINT txn")?.execute([])?;
        self.txns.live = Some(id);
        let Some(txn) = self.txns.open.get_mut(&id) else {
            return Err(not_open());
        };
        if txn.parts.is_empty() {
            return Ok(None);
        }
        let parts = std::mem::take(&mut txn.parts);
        let exclusive = txn.exclusive;
        match self.resume(&parts, exclusive) {
            Ok(resumed) => {
                if let Some(txn) = self.txns.open.get_mut(&id) {
                    txn.parts = resumed;
                }
                Ok(None)
            }
            Err(e) => {
                tracing::info!(
                    txn = id,
                    "an interactive transaction could not be resumed: {e}"
                );
                self.end_transaction(id)?;
                Err(TxnError::Lost(format!(
                    "could not serialize access due to a concurrent update: the transaction's \
                     changes no longer apply ({e}); it was rolled back"
                )))
            }
        }
    }

    /// Applies a parked transaction's effects again; returns its effects as recorded now.
    fn resume(
        &mut self,
        parts: &[WritePart],
        exclusive: bool,
    ) -> Result<Vec<WritePart>, EngineError> {
        if exclusive {
            // DDL in between: replay in order, as a follower would (no renumbering needed:
            // nothing else ran since, see `RollbackTo`).
            for part in parts {
                match part {
                    WritePart::Ddl(sql) => self.conn.execute_batch(sql)?,
                    other => changeset::apply_changeset(&self.conn, &changeset_bytes(other)?)?,
                }
            }
            return Ok(parts.to_vec());
        }
        let changesets = parts
            .iter()
            .map(changeset_bytes)
            .collect::<Result<Vec<_>, _>>()?;
        let merged = if changesets.len() == 1 {
            changesets.into_iter().next().unwrap_or_default()
        } else {
            changeset::merge(&changesets)?
        };
        let schema = self.resume_schema()?;
        let changes = changeset::changes(&merged)?;
        match replay::replay(&self.conn, &changes, &schema, false)? {
            Replayed::Done => {
                let mut resumed = Vec::new();
                push_bytes(&mut resumed, merged);
                return Ok(resumed);
            }
            Replayed::Fallback(why) => {
                tracing::debug!("resuming a transaction again, recorded: {why}");
                self.conn.prepare_cached("ROLLBACK TO txn")?.execute([])?;
            }
        }
        {
            // Renumbered rows make new changes: recorded as they are replayed.
            let capture = RowCapture::start(&self.conn, schema.shapes.clone())
                .map_err(|e| EngineError::Corrupt(e.to_string()))?;
            if replay::replay(&self.conn, &changes, &schema, true)? == Replayed::Done {
                match capture.finish() {
                    Ok(changeset) => {
                        let mut resumed = Vec::new();
                        push_bytes(&mut resumed, changeset);
                        return Ok(resumed);
                    }
                    Err(CaptureError::Unsupported(table)) => {
                        tracing::debug!("resuming again under a session: {table}");
                    }
                    Err(e) => return Err(EngineError::Corrupt(e.to_string())),
                }
            }
        }
        self.conn.prepare_cached("ROLLBACK TO txn")?.execute([])?;
        let recorder = ChangeRecorder::start(&self.conn)?;
        changeset::apply_changeset_renumbering(&self.conn, &merged, &schema)?;
        let mut resumed = Vec::new();
        push_changeset(&mut resumed, recorder).map_err(RequestFailure::into_engine)?;
        Ok(resumed)
    }

    /// What resuming needs to know of the schema, read again after anything that may have
    /// changed the schema (DDL run, applied or undone) or when its version moved.
    pub(super) fn resume_schema(&mut self) -> Result<Arc<ResumeSchema>, EngineError> {
        let version = schema_version(&self.conn)?;
        match &self.resume_schema {
            Some((at, schema)) if *at == version => Ok(schema.clone()),
            _ => {
                let schema = Arc::new(read_resume_schema(&self.conn)?);
                self.resume_schema = Some((version, schema.clone()));
                Ok(schema)
            }
        }
    }

    /// Undoes the live transaction's changes in SQLite (its parts keep them).
    pub(super) fn park(&mut self) -> Result<(), EngineError> {
        if self.txns.exclusive_live().is_some() {
            // Its DDL is undone with it.
            self.resume_schema = None;
        }
        if self.txns.live.take().is_some() {
            self.conn.prepare_cached("ROLLBACK TO txn")?.execute([])?;
            self.conn.prepare_cached("RELEASE txn")?.execute([])?;
        }
        Ok(())
    }

    /// `id` must wait for `owner`: answers `Blocked`, or rolls `id` back if that would never end.
    fn block(&mut self, id: TxnId, owner: TxnId) -> Result<TxnAnswer, TxnError> {
        if self.txns.would_deadlock(id, owner) {
            self.end_transaction(id)?;
            return Err(TxnError::Deadlock(
                "deadlock detected: this transaction and another one each wait for rows the \
                 other changed; this one was rolled back"
                    .into(),
            ));
        }
        self.txns.waiting.insert(id, owner);
        Ok(TxnAnswer::Blocked)
    }

    fn execute_in_transaction(
        &mut self,
        id: TxnId,
        statement: &Statement,
    ) -> Result<TxnAnswer, TxnError> {
        self.txns.waiting.remove(&id);
        if let Some(owner) = self.make_live(id)? {
            return self.block(id, owner);
        }
        let shapes = match super::classify(&statement.sql) {
            super::StatementClass::Ddl => {
                self.resume_schema = None;
                None
            }
            _ => Some(
                self.resume_schema()
                    .map_err(TxnError::Engine)?
                    .shapes
                    .clone(),
            ),
        };
        self.conn.prepare_cached("SAVEPOINT step")?.execute([])?;
        let mut parts = Vec::new();
        let ran = run_recorded(
            &self.conn,
            &self.guard,
            std::slice::from_ref(statement),
            shapes,
            "step",
            &mut parts,
        )
        .and_then(|mut results| {
            results.pop().ok_or_else(|| {
                RequestFailure::Engine(EngineError::Corrupt("a statement without a result".into()))
            })
        });
        if self.conn.is_autocommit() {
            // SQLite rolled the whole transaction back (`INSERT OR ROLLBACK`, `RAISE(ROLLBACK)`,
            // a full disk): the batch is gone, and every transaction with it.
            self.discard_batch().map_err(|e| self.poison(e))?;
            return Err(TxnError::Lost(
                "a statement rolled back the whole transaction (e.g. INSERT OR ROLLBACK or \
                 RAISE(ROLLBACK)); nothing of it was applied"
                    .into(),
            ));
        }
        let result = match ran {
            Ok(result) => result,
            Err(RequestFailure::Client(e)) => {
                self.undo_step()?;
                return Err(TxnError::Sql(e));
            }
            Err(RequestFailure::Engine(e)) => {
                self.undo_step()?;
                self.end_transaction(id)?;
                return Err(TxnError::Engine(e));
            }
        };
        let keys = self
            .resume_schema()
            .and_then(|schema| row_keys(&parts, &schema.renumbered))
            .map_err(TxnError::Engine)?;
        if let Some(owner) = self.txns.owner_of(&keys, Some(id)) {
            self.undo_step()?;
            return self.block(id, owner);
        }
        self.conn.prepare_cached("RELEASE step")?.execute([])?;
        self.txns.acquire(id, keys);
        let Some(txn) = self.txns.open.get_mut(&id) else {
            return Err(not_open());
        };
        txn.parts.extend(parts);
        txn.exclusive = txn.asked_exclusive
            || has_ddl(&txn.parts)
            || effects_bytes(&txn.parts) > PARKABLE_BYTES;
        Ok(TxnAnswer::Executed(result))
    }

    fn undo_step(&mut self) -> Result<(), TxnError> {
        self.conn
            .execute_batch("ROLLBACK TO step; RELEASE step")
            .map_err(|e| self.poison(e.into()))
    }

    fn commit_transaction(&mut self, id: TxnId) -> Result<TxnAnswer, TxnError> {
        self.txns.waiting.remove(&id);
        if let Some(owner) = self.make_live(id)? {
            return self.block(id, owner);
        }
        if deferred_foreign_key_violations(&self.conn) > 0 {
            self.end_transaction(id)?;
            return Err(TxnError::Sql(SqlError::Constraint {
                code: rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY,
                message: "FOREIGN KEY constraint failed (deferred constraint checked at COMMIT)"
                    .into(),
                names: Default::default(),
            }));
        }
        self.conn.prepare_cached("RELEASE txn")?.execute([])?;
        self.txns.live = None;
        let parts = self.txns.remove(id).map(|t| t.parts).unwrap_or_default();
        let proposal = self.propose_parts(&parts);
        let batch_id = self.batch.as_ref().map(|b| b.id).unwrap_or(0);
        self.maybe_commit_batch().map_err(TxnError::Engine)?;
        Ok(TxnAnswer::Committed(ExecutedBatch {
            batch_id,
            proposal,
            parts,
            results: Vec::new(),
            blocked: Vec::new(),
        }))
    }

    /// Rolls `id` back (if still open) and frees its rows; the batch commits if nothing else
    /// of it is pending.
    fn end_transaction(&mut self, id: TxnId) -> Result<(), TxnError> {
        if self.txns.live == Some(id) {
            self.park().map_err(|e| self.poison(e))?;
        }
        if self.txns.remove(id).is_none() {
            return Ok(());
        }
        self.maybe_commit_batch().map_err(|e| self.poison(e))
    }

    /// A failure that leaves the open batch in an unknown state: nothing more may build on it.
    pub(super) fn poison(&mut self, e: EngineError) -> TxnError {
        tracing::error!("an interactive transaction left the batch broken; the engine stops: {e}");
        self.poisoned = true;
        TxnError::Engine(e)
    }
}

/// The rows `parts` change, as owned by a transaction (see the module doc); `keyed_by_rowid`
/// names the tables whose inserted rows lock nothing.
pub(super) fn row_keys(
    parts: &[WritePart],
    keyed_by_rowid: &BTreeSet<String>,
) -> Result<Vec<RowKey>, EngineError> {
    let mut keys = Vec::new();
    for part in parts {
        if matches!(part, WritePart::Ddl(_)) {
            continue;
        }
        let changes = changeset::changes(&changeset_bytes(part)?)?;
        keys.extend(changeset::row_keys(&changes, &|table| {
            keyed_by_rowid.contains(table)
        }));
    }
    Ok(keys)
}

/// Reads what resuming needs to know of the schema.
fn read_resume_schema(conn: &rusqlite::Connection) -> Result<ResumeSchema, rusqlite::Error> {
    let mut statement = conn.prepare_cached(
        // `m.name`, qualified: inside the subquery a bare `name` is pragma_table_info's own
        // column, and every table would count as keyed by rowid.
        "SELECT m.name FROM main.sqlite_schema AS m WHERE m.type = 'table' \
         AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
         AND NOT EXISTS (SELECT 1 FROM pragma_table_info(m.name, 'main') AS p WHERE p.pk > 0)",
    )?;
    let renumbered = statement
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<BTreeSet<_>, _>>()?;
    let triggers = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM main.sqlite_schema WHERE type = 'trigger')")?
        .query_row([], |row| row.get(0))?;
    let foreign_keys = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM main.sqlite_schema s, \
             pragma_foreign_key_list(s.name, 'main') WHERE s.type = 'table')",
        )?
        .query_row([], |row| row.get(0))?;
    let mut columns: HashMap<String, Vec<String>> = HashMap::new();
    let mut statement = conn.prepare_cached(
        "SELECT m.name, p.name FROM main.sqlite_schema m, pragma_table_info(m.name, 'main') p \
         WHERE m.type = 'table' ORDER BY m.name, p.cid",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        columns
            .entry(row.get::<_, String>(0)?)
            .or_default()
            .push(row.get(1)?);
    }
    Ok(ResumeSchema {
        renumbered,
        triggers,
        foreign_keys,
        columns,
        shapes: Arc::new(Shapes::read(conn)?),
    })
}

/// The schema's version (changes with every schema change).
fn schema_version(conn: &rusqlite::Connection) -> Result<i64, rusqlite::Error> {
    conn.prepare_cached("PRAGMA main.schema_version")?
        .query_row([], |row| row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only tables without a declared primary key are keyed by their hidden rowid: inserts into
    /// the others lock their keys, and resuming replays them row by row.
    #[test]
    fn only_tables_without_a_key_are_renumbered() {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        conn.execute_batch(
            "CREATE TABLE keyed(id INTEGER PRIMARY KEY, v TEXT);
             CREATE TABLE composite(a TEXT, b INTEGER, PRIMARY KEY (a, b));
             CREATE TABLE bare(x INTEGER, y TEXT);",
        )
        .expect("schema");
        let schema = read_resume_schema(&conn).expect("read");
        assert_eq!(
            schema.renumbered.into_iter().collect::<Vec<_>>(),
            vec!["bare".to_string()]
        );
    }
}
