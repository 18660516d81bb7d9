//! The leader's interactive transaction: a client transaction whose statements arrive one at a
//! time (PostgreSQL `BEGIN ... COMMIT`), each answered before the next is sent.
//!
//! It runs in a `SAVEPOINT txn` inside the leader's open batch transaction, on the writer
//! connection, so its statements see its own changes and nobody else's uncommitted ones.
//! While it is open the batch cannot commit and no other batch executes: the write pipeline
//! (`dispatch::write`) serializes it with every other write, exactly as SQLite's single writer
//! would. Each statement is recorded by its own session, so its effects become one or more
//! [`WritePart`]s kept in order; client savepoints mark positions in that list, and
//! `ROLLBACK TO` a savepoint truncates it there (every part after the mark was recorded after
//! the savepoint, so nothing from before it is lost). `COMMIT` releases the savepoint and hands
//! the parts out as one proposal, which commits like any batch once Raft has it.
//!
//! If the batch is rolled back underneath (another leader's entry arrived: leadership moved),
//! the transaction is gone and its next step answers [`TxnError::Lost`].

use serde::{Deserialize, Serialize};

use super::{
    ExecutedBatch, RequestFailure, Writer, deferred_foreign_key_violations, push_changeset,
    run_client_statement, start_recorder,
};
use crate::raft::types::WritePart;
use crate::storage::error::{EngineError, SqlError};
use crate::storage::request::{Statement, StatementResult};

/// One step of an interactive transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TxnStep {
    /// Opens the transaction (the write pipeline sends it when the transaction's turn comes).
    Begin,
    Execute(Statement),
    /// `SAVEPOINT name` (names as the client's session normalized them).
    Savepoint(String),
    /// `RELEASE SAVEPOINT name`: forgets it and every later savepoint, keeping their changes.
    Release(String),
    /// `ROLLBACK TO SAVEPOINT name`: undoes everything after it; the savepoint stays.
    RollbackTo(String),
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
}

#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    /// The statement failed and changed nothing. The transaction stays open — except after
    /// `Commit`, where a failure (a deferred constraint) means it was rolled back.
    #[error(transparent)]
    Sql(SqlError),
    /// No transaction is open: it was rolled back (by a statement such as `INSERT OR ROLLBACK`,
    /// or because leadership moved), or never begun.
    #[error("{0}")]
    Lost(String),
    #[error(transparent)]
    Engine(EngineError),
}

impl From<rusqlite::Error> for TxnError {
    fn from(e: rusqlite::Error) -> Self {
        TxnError::Engine(e.into())
    }
}

/// The open interactive transaction's bookkeeping.
#[derive(Debug, Default)]
pub(super) struct OpenTxn {
    /// Effects so far, in execution order.
    parts: Vec<WritePart>,
    /// Client savepoints, oldest first, each with `parts.len()` when it was set.
    savepoints: Vec<(String, usize)>,
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

/// The SQLite name of a client savepoint, quoted (and apart from the engine's own names).
fn sqlite_savepoint(name: &str) -> String {
    format!("\"sp_{}\"", name.replace('"', "\"\""))
}

fn not_open() -> TxnError {
    TxnError::Lost(
        "the transaction no longer exists: it was rolled back (leadership moved or a statement \
         rolled it back)"
            .into(),
    )
}

impl Writer {
    pub(super) fn transaction_step(&mut self, step: TxnStep) -> Result<TxnAnswer, TxnError> {
        if step != TxnStep::Begin && self.txn.is_none() {
            return Err(not_open());
        }
        match step {
            TxnStep::Begin => self.begin_transaction(),
            TxnStep::Execute(statement) => self.execute_in_transaction(&statement),
            TxnStep::Savepoint(name) => {
                self.conn
                    .execute_batch(&format!("SAVEPOINT {}", sqlite_savepoint(&name)))?;
                if let Some(txn) = self.txn.as_mut() {
                    let mark = txn.parts.len();
                    txn.savepoints.push((name, mark));
                }
                Ok(TxnAnswer::Done)
            }
            TxnStep::Release(name) => {
                let txn = self.txn.as_mut().ok_or_else(not_open)?;
                let at = txn.savepoint(&name)?;
                self.conn
                    .execute_batch(&format!("RELEASE {}", sqlite_savepoint(&name)))?;
                txn.savepoints.truncate(at);
                Ok(TxnAnswer::Done)
            }
            TxnStep::RollbackTo(name) => {
                let txn = self.txn.as_mut().ok_or_else(not_open)?;
                let at = txn.savepoint(&name)?;
                self.conn
                    .execute_batch(&format!("ROLLBACK TO {}", sqlite_savepoint(&name)))?;
                let mark = txn.savepoints[at].1;
                txn.parts.truncate(mark);
                txn.savepoints.truncate(at + 1);
                Ok(TxnAnswer::Done)
            }
            TxnStep::Commit => self.commit_transaction(),
            TxnStep::Rollback => {
                self.rollback_transaction()?;
                Ok(TxnAnswer::Done)
            }
        }
    }

    fn begin_transaction(&mut self) -> Result<TxnAnswer, TxnError> {
        if self.txn.is_some() || self.tx_open {
            return Err(TxnError::Engine(EngineError::Corrupt(
                "a transaction is already open on the writer".into(),
            )));
        }
        self.open_batch().map_err(TxnError::Engine)?;
        self.conn.execute_batch("SAVEPOINT txn")?;
        self.txn = Some(OpenTxn::default());
        Ok(TxnAnswer::Begun)
    }

    fn execute_in_transaction(&mut self, statement: &Statement) -> Result<TxnAnswer, TxnError> {
        let mut parts = Vec::new();
        let ran = {
            let conn = &self.conn;
            let mut recorder = Some(start_recorder(conn).map_err(into_txn_error)?);
            match run_client_statement(conn, &self.guard, statement, &mut recorder, &mut parts) {
                Ok(result) => match recorder.take() {
                    Some(r) => push_changeset(&mut parts, r).map(|()| result),
                    None => Ok(result),
                },
                Err(e) => Err(e),
            }
        };
        if self.conn.is_autocommit() {
            // SQLite rolled the whole transaction back (`INSERT OR ROLLBACK`, `RAISE(ROLLBACK)`,
            // a full disk): the batch is gone, and the transaction with it.
            self.discard_batch().map_err(|e| self.poison(e))?;
            return Err(TxnError::Lost(
                "a statement rolled back the whole transaction (e.g. INSERT OR ROLLBACK or \
                 RAISE(ROLLBACK)); nothing of it was applied"
                    .into(),
            ));
        }
        match ran {
            Ok(result) => {
                if let Some(txn) = self.txn.as_mut() {
                    txn.parts.extend(parts);
                }
                Ok(TxnAnswer::Executed(result))
            }
            // The failed statement changed nothing (SQLite undid it); the client decides.
            Err(RequestFailure::Client(e)) => Err(TxnError::Sql(e)),
            Err(RequestFailure::Engine(e)) => {
                self.rollback_transaction()?;
                Err(TxnError::Engine(e))
            }
        }
    }

    fn commit_transaction(&mut self) -> Result<TxnAnswer, TxnError> {
        if deferred_foreign_key_violations(&self.conn) > 0 {
            self.rollback_transaction()?;
            return Err(TxnError::Sql(SqlError::Constraint {
                code: rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY,
                message: "FOREIGN KEY constraint failed (deferred constraint checked at COMMIT)"
                    .into(),
                names: Default::default(),
            }));
        }
        self.conn.execute_batch("RELEASE txn")?;
        let parts = self.txn.take().map(|t| t.parts).unwrap_or_default();
        let proposal = self.propose_parts(&parts);
        let batch_id = self.batch.as_ref().map(|b| b.id).unwrap_or(0);
        self.maybe_commit_batch().map_err(TxnError::Engine)?;
        Ok(TxnAnswer::Committed(ExecutedBatch {
            batch_id,
            proposal,
            parts,
            results: Vec::new(),
        }))
    }

    /// Undoes the open transaction; the batch commits if nothing else of it is pending.
    fn rollback_transaction(&mut self) -> Result<(), TxnError> {
        if self.txn.take().is_none() {
            return Ok(());
        }
        let undone = self
            .conn
            .execute_batch("ROLLBACK TO txn; RELEASE txn")
            .map_err(EngineError::from)
            .and_then(|()| self.maybe_commit_batch());
        undone.map_err(|e| self.poison(e))
    }

    /// A failure that leaves the open batch in an unknown state: nothing more may build on it.
    fn poison(&mut self, e: EngineError) -> TxnError {
        tracing::error!("an interactive transaction left the batch broken; the engine stops: {e}");
        self.poisoned = true;
        TxnError::Engine(e)
    }
}

fn into_txn_error(failure: RequestFailure) -> TxnError {
    match failure {
        RequestFailure::Client(e) => TxnError::Sql(e),
        RequestFailure::Engine(e) => TxnError::Engine(e),
    }
}
