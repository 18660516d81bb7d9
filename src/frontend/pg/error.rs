//! PostgreSQL errors: the one mapping from [`RequestError`] to SQLSTATE codes ([`sqlstate`]),
//! and constructors for the front end's own errors.
//!
//! | cause | SQLSTATE |
//! |---|---|
//! | UNIQUE / PRIMARY KEY constraint | 23505 unique_violation |
//! | NOT NULL constraint | 23502 not_null_violation |
//! | FOREIGN KEY constraint | 23503 foreign_key_violation |
//! | CHECK constraint | 23514 check_violation |
//! | other constraint (trigger `RAISE`) | 23000 integrity_constraint_violation |
//! | `no such table` | 42P01 undefined_table |
//! | `no such column` | 42703 undefined_column |
//! | `no such function` | 42883 undefined_function |
//! | `... already exists` | 42P07 duplicate_table |
//! | syntax error, incomplete input, unrecognized token | 42601 syntax_error |
//! | ambiguous column | 42702 ambiguous_column |
//! | misuse of aggregate | 42803 grouping_error |
//! | `not authorized` (client SQL policy) | 42501 insufficient_privilege |
//! | datatype mismatch | 42804 datatype_mismatch |
//! | integer overflow, `... out of range` from a cast | 22003 numeric_value_out_of_range |
//! | `invalid input syntax for type ...` (`pg_cast`) | 22P02 (22007 for dates and times) |
//! | `null value in column ...` (`pg_not_null`) | 23502 not_null_violation |
//! | `... violates check constraint ...` (`pg_check`) | 23514 check_violation |
//! | a statement the dialect translation refuses | 0A000, 42601 for a syntax error |
//! | result or value too big | 54000 program_limit_exceeded |
//! | wrong parameter count | 08P01 protocol_violation |
//! | a forbidden statement (`PRAGMA`, `ATTACH`, ...) | 0A000 feature_not_supported |
//! | other SQL error | 42000 syntax_error_or_access_rule_violation |
//! | no leader reachable (minority side) | 55000 object_not_in_prerequisite_state |
//! | write outcome unknown (leadership lost mid-write) | 08006 connection_failure |
//! | transaction rolled back (leader change, idle timeout) | 40001 serialization_failure |
//! | deadline passed | 57014 query_canceled |
//! | node cannot serve (stopping, storage failed); no node fresh enough for a `bounded` read, or none a routing rule allows | 57P03 cannot_connect_now |
//!
//! The server adds 57P01 admin_shutdown (node stopping), 53300 too_many_connections,
//! 54000 for an oversized message and 08P01 for a malformed one.

use pgwire::error::{ErrorInfo, PgWireError};

use crate::dispatch::error::RequestError;
use crate::frontend::pg::dialect::TranslateError;
use crate::frontend::pg::sql::SqlText;
use crate::storage::error::SqlError;

// SQLite's extended constraint codes (sqlite3.h).
const SQLITE_AUTH: i32 = 23;
const SQLITE_MISMATCH: i32 = 20;
const SQLITE_TOOBIG: i32 = 18;
const SQLITE_CONSTRAINT_CHECK: i32 = 275;
const SQLITE_CONSTRAINT_FOREIGNKEY: i32 = 787;
const SQLITE_CONSTRAINT_NOTNULL: i32 = 1299;
const SQLITE_CONSTRAINT_PRIMARYKEY: i32 = 1555;
const SQLITE_CONSTRAINT_UNIQUE: i32 = 2067;

/// The SQLSTATE for a request error.
pub fn sqlstate(error: &RequestError) -> &'static str {
    match error {
        RequestError::Sql(SqlError::Constraint { code, .. }) => match *code {
            SQLITE_CONSTRAINT_UNIQUE | SQLITE_CONSTRAINT_PRIMARYKEY => "23505",
            SQLITE_CONSTRAINT_NOTNULL => "23502",
            SQLITE_CONSTRAINT_FOREIGNKEY => "23503",
            SQLITE_CONSTRAINT_CHECK => "23514",
            _ => "23000",
        },
        RequestError::Sql(SqlError::Statement { code, message }) => {
            statement_sqlstate(*code, message)
        }
        RequestError::Sql(SqlError::InvalidRequest(message)) => {
            if message.contains("parameters") {
                "08P01"
            } else if message.contains("not allowed") {
                "0A000"
            } else if message.contains("exceeds") {
                "54000"
            } else {
                "42000"
            }
        }
        RequestError::NotLeader { .. } | RequestError::NoLeader(_) => "55000",
        RequestError::OutcomeUnknown(_) => "08006",
        RequestError::TransactionLost(_) => "40001",
        RequestError::Deadlock(_) => "40P01",
        RequestError::Timeout(_) => "57014",
        RequestError::Unavailable(_) => "57P03",
    }
}

fn statement_sqlstate(code: i32, message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.starts_with("no such table") {
        "42P01"
    } else if m.starts_with("no such column") {
        "42703"
    } else if m.starts_with("no such function") {
        "42883"
    } else if m.contains("already exists") {
        "42P07"
    } else if m.contains("syntax error")
        || m.contains("incomplete input")
        || m.contains("unrecognized token")
    {
        "42601"
    } else if m.starts_with("ambiguous column") {
        "42702"
    } else if m.starts_with("misuse of aggregate") {
        "42803"
    } else if m.contains("integer overflow") || m.ends_with(" out of range") {
        "22003"
    } else if m.starts_with("date/time field value out of range") {
        "22008"
    } else if m.starts_with("invalid input syntax for type date")
        || m.starts_with("invalid input syntax for type time")
    {
        "22007"
    } else if m.starts_with("invalid input syntax for type") {
        "22P02"
    } else if m.starts_with("null value in column") {
        "23502"
    } else if m.contains("violates check constraint") {
        "23514"
    } else if m.starts_with("cannot cast type") {
        "42846"
    } else if m.starts_with("like pattern must not end with escape") {
        "22025"
    } else if code & 0xff == SQLITE_AUTH {
        "42501"
    } else if code & 0xff == SQLITE_MISMATCH {
        "42804"
    } else if code & 0xff == SQLITE_TOOBIG || m.contains("too big") {
        "54000"
    } else {
        "42000"
    }
}

/// The ErrorResponse for a statement the dialect translation refused.
pub fn translate_error(error: &TranslateError) -> PgError {
    match error {
        TranslateError::Syntax(message) => self::error("42601", format!("syntax error: {message}")),
        TranslateError::Unsupported(what) => not_supported(what),
        TranslateError::InvalidValue { code, message } => self::error(code, message.clone()),
    }
}

/// An ErrorResponse to send, boxed: pgwire's `ErrorInfo` is large and `Response::Error`
/// carries it boxed anyway.
pub type PgError = Box<ErrorInfo>;

/// The ErrorResponse for a request error (severity ERROR: the session goes on).
pub fn request_error(error: &RequestError) -> PgError {
    if let RequestError::Sql(SqlError::Constraint { message, names, .. }) = error {
        // PostgreSQL's own words (`storage::constraint_error`), and the parts it names.
        let mut info = ErrorInfo::new("ERROR".into(), sqlstate(error).into(), message.clone());
        info.schema = names.table.as_ref().map(|_| "public".to_owned());
        info.table = names.table.clone();
        info.column = names.column.clone();
        info.constraint = names.constraint.clone();
        return Box::new(info);
    }
    let mut info = ErrorInfo::new("ERROR".into(), sqlstate(error).into(), error.to_string());
    info.hint = match error {
        RequestError::NoLeader(_) | RequestError::NotLeader { .. } => {
            Some("this node cannot reach a majority of the cluster; connect to another node".into())
        }
        RequestError::OutcomeUnknown(_) => {
            Some("the write may or may not have been applied; check before retrying".into())
        }
        _ => None,
    };
    Box::new(info)
}

/// An ERROR with the given SQLSTATE.
pub fn error(code: &str, message: impl Into<String>) -> PgError {
    Box::new(ErrorInfo::new("ERROR".into(), code.into(), message.into()))
}

/// A FATAL error: the server closes the connection after sending it.
pub fn fatal(code: &str, message: impl Into<String>) -> PgError {
    Box::new(ErrorInfo::new("FATAL".into(), code.into(), message.into()))
}

/// 42601 pointing at token `at` of `statement` (or at its end), as PostgreSQL words it.
pub fn syntax_error_at(statement: &SqlText, at: usize) -> PgError {
    let near = statement
        .tokens
        .get(at)
        .map(|t| format!("at or near \"{}\"", t.text(&statement.sql)))
        .unwrap_or_else(|| "at end of input".into());
    error("42601", format!("syntax error {near}"))
}

/// A construct this front end does not support yet (0A000), named.
pub fn not_supported(what: impl std::fmt::Display) -> PgError {
    error("0A000", format!("{what} is not supported yet"))
}

/// Wraps an ErrorResponse for pgwire's handlers.
pub fn into_pgwire(info: PgError) -> PgWireError {
    PgWireError::UserError(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(code: i32, message: &str) -> RequestError {
        RequestError::Sql(SqlError::Statement {
            code,
            message: message.into(),
        })
    }

    #[test]
    fn sqlite_errors_map_to_postgres_sqlstates() {
        let constraint = |code| {
            sqlstate(&RequestError::Sql(SqlError::Constraint {
                names: Default::default(),
                code,
                message: String::new(),
            }))
        };
        assert_eq!(constraint(2067), "23505");
        assert_eq!(constraint(1555), "23505");
        assert_eq!(constraint(1299), "23502");
        assert_eq!(constraint(787), "23503");
        assert_eq!(constraint(275), "23514");
        assert_eq!(constraint(19), "23000");
        assert_eq!(sqlstate(&statement(1, "no such table: t")), "42P01");
        assert_eq!(sqlstate(&statement(1, "no such column: x")), "42703");
        assert_eq!(
            sqlstate(&statement(1, "near \"SELEC\": syntax error")),
            "42601"
        );
        assert_eq!(sqlstate(&statement(1, "table t already exists")), "42P07");
        assert_eq!(sqlstate(&statement(23, "not authorized")), "42501");
        assert_eq!(
            sqlstate(&RequestError::Sql(SqlError::InvalidRequest(
                "statement takes 2 parameters, 1 given".into()
            ))),
            "08P01"
        );
        assert_eq!(sqlstate(&RequestError::NoLeader(String::new())), "55000");
        assert_eq!(
            sqlstate(&RequestError::OutcomeUnknown(String::new())),
            "08006"
        );
        assert_eq!(sqlstate(&RequestError::Timeout(String::new())), "57014");
    }
}
