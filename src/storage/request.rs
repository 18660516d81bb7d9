//! The shapes of work the engine accepts and answers: statements with parameters, and their
//! results. Values are SQLite's own (`rusqlite::types::Value`); front ends convert to and from
//! their wire formats (JSON in `frontend::http`, PostgreSQL types in the pg front end).

use rusqlite::types::Value;
use serde::{Deserialize, Serialize};

/// One SQL statement and its positional parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    pub sql: String,
    #[serde(default)]
    pub params: Vec<SqlValue>,
}

/// A SQLite value that can cross the internal RPC (rusqlite's `Value` is not serde-aware).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<Value> for SqlValue {
    fn from(value: Value) -> Self {
        match value {
            Value::Null => SqlValue::Null,
            Value::Integer(i) => SqlValue::Integer(i),
            Value::Real(f) => SqlValue::Real(f),
            Value::Text(s) => SqlValue::Text(s),
            Value::Blob(b) => SqlValue::Blob(b),
        }
    }
}

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            SqlValue::Null => ValueRef::Null,
            SqlValue::Integer(i) => ValueRef::Integer(*i),
            SqlValue::Real(f) => ValueRef::Real(*f),
            SqlValue::Text(s) => ValueRef::Text(s.as_bytes()),
            SqlValue::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// What one statement of a write request did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatementResult {
    pub rows_affected: u64,
    pub last_insert_id: i64,
    /// Column names when the statement returned rows (`RETURNING`), else empty.
    pub columns: Vec<String>,
    /// Each column's declared type (`sqlite3_column_decltype`): `None` for an expression.
    /// Front ends with typed protocols (PostgreSQL) derive result types from it.
    #[serde(default)]
    pub decltypes: Vec<Option<String>>,
    pub rows: Vec<Vec<SqlValue>>,
}

/// The rows a read returned.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryResult {
    pub columns: Vec<String>,
    /// Each column's declared type, as in [`StatementResult::decltypes`].
    #[serde(default)]
    pub decltypes: Vec<Option<String>>,
    pub rows: Vec<Vec<SqlValue>>,
}

/// What a statement would do, learned by preparing it without running it (the PostgreSQL
/// front end's Parse/Describe).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Description {
    /// Result column names (empty for a statement that returns no rows).
    pub columns: Vec<String>,
    /// Each result column's declared type; `None` for an expression.
    pub decltypes: Vec<Option<String>>,
    /// The number of parameters (the highest `?N`).
    pub parameter_count: usize,
    /// SQLite's `sqlite3_stmt_readonly`.
    pub readonly: bool,
    /// Columns (name, declared type) of each table asked about that exists, in table order.
    pub tables: Vec<(String, Vec<(String, String)>)>,
}
