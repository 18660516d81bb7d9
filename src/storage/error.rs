//! Errors at the storage boundary, split by what the caller must do.
//!
//! [`SqlError`] is deterministic: the request was bad (or violated a constraint) and would fail
//! the same way on every node. It goes back to the client and nothing is replicated.
//! [`EngineError`] is everything else — I/O, corruption, replicas diverging — and is never shown
//! to a client as its own fault; a node that hits one on the apply path stops rather than diverge.

use serde::{Deserialize, Serialize};

/// A client's request failed; nothing of it was applied or replicated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum SqlError {
    /// The request is malformed: wrong parameter count, a forbidden statement, a read sent as a
    /// write or the other way round.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A constraint (UNIQUE, NOT NULL, CHECK, FOREIGN KEY) refused the change. `code` is
    /// SQLite's extended result code (`SQLITE_CONSTRAINT_UNIQUE`, ...), which tells which kind.
    /// `message` is SQLite's, or PostgreSQL's wording when the engine could name the parts
    /// (`storage::constraint_error`), which `names` then holds.
    #[error("constraint violation: {message}")]
    Constraint {
        code: i32,
        message: String,
        names: crate::storage::constraint_error::ConstraintNames,
    },
    /// SQLite refused the statement (syntax error, unknown table or column, ...). `code` is
    /// SQLite's extended result code, or 0 when the error did not come from SQLite itself.
    #[error("{message}")]
    Statement { code: i32, message: String },
}

impl SqlError {
    /// Classifies a rusqlite error raised while running a client's statement.
    pub fn from_sqlite(error: &rusqlite::Error) -> Self {
        match error {
            rusqlite::Error::SqliteFailure(e, message) => {
                let message = message.clone().unwrap_or_else(|| e.to_string());
                let code = e.extended_code;
                if e.code == rusqlite::ErrorCode::ConstraintViolation {
                    SqlError::Constraint {
                        code,
                        message,
                        names: Default::default(),
                    }
                } else {
                    SqlError::Statement { code, message }
                }
            }
            rusqlite::Error::InvalidParameterCount(given, expected) => SqlError::InvalidRequest(
                format!("statement takes {expected} parameters, {given} given"),
            ),
            rusqlite::Error::MultipleStatement => SqlError::InvalidRequest(
                "one statement per entry: split the SQL into separate statements".into(),
            ),
            other => SqlError::Statement {
                code: 0,
                message: other.to_string(),
            },
        }
    }
}

/// The engine itself failed; the node cannot serve (or must stop).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("changeset: {0}")]
    Changeset(#[from] crate::storage::changeset::ChangesetError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    #[error("the storage engine has stopped")]
    Closed,
    /// An earlier failure left the database in a state that must not be built on.
    #[error("the storage engine stopped after an unrecoverable failure; restart the node")]
    Poisoned,
    /// A statement rolled back the whole batch transaction (e.g. `INSERT OR ROLLBACK`); the
    /// batch was discarded and nothing of it applied.
    #[error(
        "a statement rolled back the whole transaction batch (e.g. INSERT OR ROLLBACK or RAISE(ROLLBACK)); nothing was applied, retry"
    )]
    BatchRolledBack,
}

impl From<EngineError> for std::io::Error {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Io(io) => io,
            other => std::io::Error::other(other.to_string()),
        }
    }
}
