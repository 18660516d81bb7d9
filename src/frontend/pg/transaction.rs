//! Transaction control as PostgreSQL spells it — `BEGIN`, `START TRANSACTION`, `COMMIT`, `END`,
//! `ROLLBACK`, `ABORT`, `SAVEPOINT`, `RELEASE`, `ROLLBACK TO`, `SET TRANSACTION` — parsed into
//! [`TxnControl`], and the session's view of its explicit transaction ([`ExplicitTxn`]).
//!
//! What the statements *do* lives in the session (`session.rs`) and, on the leader, in the
//! dispatcher's transaction path (`dispatch::transaction`).

use crate::dispatch::transaction::TxnRef;
use crate::frontend::pg::error::{PgError, error, not_supported, syntax_error_at};
use crate::frontend::pg::sql::SqlText;

/// Isolation levels PostgreSQL accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// READ COMMITTED (and READ UNCOMMITTED, which PostgreSQL treats the same): each statement
    /// sees what was committed when it began.
    #[default]
    ReadCommitted,
    /// REPEATABLE READ or SERIALIZABLE: the transaction runs entirely on the leader's single
    /// writer from its first statement and holds it until it ends (`TxnStep::Exclusive`),
    /// which makes it serializable.
    Serializable,
}

/// Modes of `BEGIN` / `START TRANSACTION` / `SET TRANSACTION`; `None` leaves a mode as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxnModes {
    pub read_only: Option<bool>,
    pub isolation: Option<Isolation>,
}

/// A transaction-control statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnControl {
    /// `BEGIN` or `START TRANSACTION` (the tag differs).
    Begin {
        modes: TxnModes,
        tag: &'static str,
    },
    /// `COMMIT` or `END`.
    Commit,
    /// `ROLLBACK` or `ABORT`.
    Rollback,
    Savepoint(String),
    Release(String),
    RollbackTo(String),
    SetTransaction(TxnModes),
}

/// The session's explicit transaction.
#[derive(Debug, Clone, Default)]
pub struct ExplicitTxn {
    pub read_only: bool,
    pub isolation: Isolation,
    /// Where its writes live, once it has any (its first write or savepoint pins it to the
    /// leader of that moment).
    pub remote: Option<TxnRef>,
    /// A statement failed: everything but ROLLBACK [TO SAVEPOINT] is refused (25P02).
    pub failed: bool,
    /// Savepoint names, oldest first.
    pub savepoints: Vec<String>,
    /// No statement has run yet (SET TRANSACTION is only allowed before the first).
    pub fresh: bool,
    /// It holds the leader's writer until it ends (`TxnStep::Exclusive` was sent).
    pub exclusive: bool,
}

impl ExplicitTxn {
    pub fn new(modes: TxnModes) -> ExplicitTxn {
        ExplicitTxn {
            read_only: modes.read_only.unwrap_or(false),
            isolation: modes.isolation.unwrap_or_default(),
            fresh: true,
            ..ExplicitTxn::default()
        }
    }
}

/// 25P02, for every statement sent to a failed transaction.
pub fn in_failed_transaction() -> PgError {
    error(
        "25P02",
        "current transaction is aborted, commands ignored until end of transaction block",
    )
}

/// Parses a transaction-control statement; `None` if `statement` is not one.
pub fn parse(statement: &SqlText) -> Option<Result<TxnControl, PgError>> {
    let first = statement.word(0)?;
    let parsed = match first.as_str() {
        "BEGIN" => {
            let at = skip_work(statement, 1);
            modes(statement, at).map(|modes| TxnControl::Begin {
                modes,
                tag: "BEGIN",
            })
        }
        "START" if statement.is_word(1, "TRANSACTION") => {
            modes(statement, 2).map(|modes| TxnControl::Begin {
                modes,
                tag: "START TRANSACTION",
            })
        }
        "COMMIT" | "END" => {
            if statement.is_word(1, "PREPARED") {
                return Some(Err(not_supported("COMMIT PREPARED (two-phase commit)")));
            }
            end_of(statement, skip_work(statement, 1)).map(|()| TxnControl::Commit)
        }
        "ABORT" => end_of(statement, skip_work(statement, 1)).map(|()| TxnControl::Rollback),
        "ROLLBACK" => {
            if statement.is_word(1, "PREPARED") {
                return Some(Err(not_supported("ROLLBACK PREPARED (two-phase commit)")));
            }
            let at = skip_work(statement, 1);
            if statement.is_word(at, "TO") {
                let at = if statement.is_word(at + 1, "SAVEPOINT") {
                    at + 2
                } else {
                    at + 1
                };
                name_at(statement, at).map(TxnControl::RollbackTo)
            } else {
                end_of(statement, at).map(|()| TxnControl::Rollback)
            }
        }
        "SAVEPOINT" => name_at(statement, 1).map(TxnControl::Savepoint),
        "RELEASE" => {
            let at = if statement.is_word(1, "SAVEPOINT") {
                2
            } else {
                1
            };
            name_at(statement, at).map(TxnControl::Release)
        }
        "SET" if statement.is_word(1, "TRANSACTION") => {
            if statement.is_word(2, "SNAPSHOT") {
                return Some(Err(not_supported("SET TRANSACTION SNAPSHOT")));
            }
            modes(statement, 2).map(TxnControl::SetTransaction)
        }
        "PREPARE" if statement.is_word(1, "TRANSACTION") => {
            return Some(Err(not_supported("PREPARE TRANSACTION (two-phase commit)")));
        }
        _ => return None,
    };
    Some(parsed)
}

/// Skips the optional `WORK` or `TRANSACTION` noise word.
fn skip_work(statement: &SqlText, at: usize) -> usize {
    if statement.is_word(at, "WORK") || statement.is_word(at, "TRANSACTION") {
        at + 1
    } else {
        at
    }
}

/// Accepts the end of the statement, or `AND NO CHAIN` (`AND CHAIN` is not supported).
fn end_of(statement: &SqlText, at: usize) -> Result<(), PgError> {
    if statement.tokens.len() == at {
        return Ok(());
    }
    if statement.is_word(at, "AND") {
        if statement.is_word(at + 1, "NO")
            && statement.is_word(at + 2, "CHAIN")
            && statement.tokens.len() == at + 3
        {
            return Ok(());
        }
        if statement.is_word(at + 1, "CHAIN") {
            return Err(not_supported("AND CHAIN"));
        }
    }
    Err(syntax_error_at(statement, at))
}

/// A savepoint name at `at`, ending the statement. Unquoted names fold to lower case.
fn name_at(statement: &SqlText, at: usize) -> Result<String, PgError> {
    let name = statement
        .folded_identifier(at)
        .ok_or_else(|| syntax_error_at(statement, at))?;
    if statement.tokens.len() != at + 1 {
        return Err(syntax_error_at(statement, at + 1));
    }
    Ok(name)
}

/// Transaction modes from `at` to the end, separated by optional commas.
fn modes(statement: &SqlText, mut at: usize) -> Result<TxnModes, PgError> {
    let mut modes = TxnModes::default();
    while at < statement.tokens.len() {
        if statement.tokens[at].is_punct(&statement.sql, ",") {
            at += 1;
            continue;
        }
        let word = statement
            .word(at)
            .ok_or_else(|| syntax_error_at(statement, at))?;
        let next = statement.word(at + 1);
        match (word.as_str(), next.as_deref()) {
            ("READ", Some("ONLY")) => modes.read_only = Some(true),
            ("READ", Some("WRITE")) => modes.read_only = Some(false),
            ("DEFERRABLE", _) => {
                at += 1;
                continue;
            }
            ("NOT", Some("DEFERRABLE")) => {}
            ("ISOLATION", Some("LEVEL")) => {
                let level = statement.word(at + 2);
                let following = statement.word(at + 3);
                let (isolation, width) = match (level.as_deref(), following.as_deref()) {
                    (Some("SERIALIZABLE"), _) => (Isolation::Serializable, 3),
                    (Some("REPEATABLE"), Some("READ")) => (Isolation::Serializable, 4),
                    (Some("READ"), Some("COMMITTED" | "UNCOMMITTED")) => {
                        (Isolation::ReadCommitted, 4)
                    }
                    _ => return Err(syntax_error_at(statement, at + 2)),
                };
                modes.isolation = Some(isolation);
                at += width;
                continue;
            }
            _ => return Err(syntax_error_at(statement, at)),
        }
        at += 2;
    }
    Ok(modes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> Option<Result<TxnControl, String>> {
        parse(&SqlText::new(sql)).map(|r| r.map_err(|e| e.code.clone()))
    }

    #[test]
    fn parses_every_spelling() {
        let begin = |read_only, isolation, tag| {
            Some(Ok(TxnControl::Begin {
                modes: TxnModes {
                    read_only,
                    isolation,
                },
                tag,
            }))
        };
        assert_eq!(parsed("begin"), begin(None, None, "BEGIN"));
        assert_eq!(parsed("BEGIN WORK;"), begin(None, None, "BEGIN"));
        assert_eq!(
            parsed("begin transaction read only"),
            begin(Some(true), None, "BEGIN")
        );
        assert_eq!(
            parsed("START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ WRITE"),
            begin(
                Some(false),
                Some(Isolation::Serializable),
                "START TRANSACTION"
            )
        );
        assert_eq!(
            parsed("begin isolation level read committed not deferrable"),
            begin(None, Some(Isolation::ReadCommitted), "BEGIN")
        );
        assert_eq!(parsed("commit"), Some(Ok(TxnControl::Commit)));
        assert_eq!(parsed("END TRANSACTION"), Some(Ok(TxnControl::Commit)));
        assert_eq!(parsed("commit and no chain"), Some(Ok(TxnControl::Commit)));
        assert_eq!(parsed("abort"), Some(Ok(TxnControl::Rollback)));
        assert_eq!(parsed("ROLLBACK WORK"), Some(Ok(TxnControl::Rollback)));
        assert_eq!(
            parsed("savepoint Sp1"),
            Some(Ok(TxnControl::Savepoint("sp1".into())))
        );
        assert_eq!(
            parsed("SAVEPOINT \"Mixed\""),
            Some(Ok(TxnControl::Savepoint("Mixed".into())))
        );
        assert_eq!(
            parsed("release savepoint a"),
            Some(Ok(TxnControl::Release("a".into())))
        );
        assert_eq!(
            parsed("RELEASE a"),
            Some(Ok(TxnControl::Release("a".into())))
        );
        assert_eq!(
            parsed("rollback to savepoint a"),
            Some(Ok(TxnControl::RollbackTo("a".into())))
        );
        assert_eq!(
            parsed("ROLLBACK TRANSACTION TO a"),
            Some(Ok(TxnControl::RollbackTo("a".into())))
        );
        assert_eq!(
            parsed("set transaction isolation level serializable"),
            Some(Ok(TxnControl::SetTransaction(TxnModes {
                read_only: None,
                isolation: Some(Isolation::Serializable)
            })))
        );
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        assert_eq!(parsed("commit and chain"), Some(Err("0A000".into())));
        assert_eq!(parsed("prepare transaction 'x'"), Some(Err("0A000".into())));
        assert_eq!(parsed("commit prepared 'x'"), Some(Err("0A000".into())));
        assert_eq!(parsed("begin read sideways"), Some(Err("42601".into())));
        assert_eq!(parsed("savepoint"), Some(Err("42601".into())));
        assert_eq!(parsed("rollback to a b"), Some(Err("42601".into())));
        assert_eq!(parsed("select 1"), None);
        assert_eq!(parsed("set search_path = public"), None);
    }
}
