//! A constraint violation in PostgreSQL's words: SQLite says `UNIQUE constraint failed: t.a`,
//! PostgreSQL `duplicate key value violates unique constraint "t_a_key"` — and names the
//! constraint, table and column in fields of their own, which drivers and ORMs read. The names
//! are the ones the catalog shows (`storage::catalog::build`), looked up on the connection that
//! ran the statement, right after it failed.
//!
//! | SQLite | PostgreSQL |
//! |---|---|
//! | `UNIQUE constraint failed: t.a, t.b` | `duplicate key value violates unique constraint "NAME"` |
//! | `NOT NULL constraint failed: t.c` | `null value in column "c" of relation "t" violates not-null constraint` |
//! | `CHECK constraint failed: NAME-OR-EXPRESSION` | `new row for relation "t" violates check constraint "NAME"` |
//! | `FOREIGN KEY constraint failed` (writing the referencing table) | `insert or update on table "t" violates foreign key constraint "NAME"` |
//! | `FOREIGN KEY constraint failed` (deleting a referenced row) | `update or delete on table "t" violates foreign key constraint "NAME" on table "child"` |
//!
//! PostgreSQL's DETAIL (`Key (a)=(1) already exists.`) is left out: SQLite does not say which
//! row failed. A name that cannot be told for sure (a table with several foreign keys) is left
//! out rather than guessed; the message then keeps SQLite's text.

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::storage::catalog::build;
use crate::storage::error::SqlError;

const UNIQUE: i32 = rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE;
const PRIMARY_KEY: i32 = rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY;
const NOT_NULL: i32 = rusqlite::ffi::SQLITE_CONSTRAINT_NOTNULL;
const CHECK: i32 = rusqlite::ffi::SQLITE_CONSTRAINT_CHECK;
const FOREIGN_KEY: i32 = rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY;

/// What a violation names, as PostgreSQL's ErrorResponse fields `n`, `t` and `c` carry them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConstraintNames {
    pub constraint: Option<String>,
    pub table: Option<String>,
    pub column: Option<String>,
}

/// Rewrites a constraint violation raised by `sql` on `conn` in PostgreSQL's words; any other
/// error is returned as it is. A lookup that fails leaves SQLite's text.
pub fn in_postgres_terms(conn: &Connection, sql: &str, error: SqlError) -> SqlError {
    let SqlError::Constraint { code, message, .. } = &error else {
        return error;
    };
    match describe(conn, sql, *code, message) {
        Some((message, names)) => SqlError::Constraint {
            code: *code,
            message,
            names,
        },
        None => error,
    }
}

fn describe(
    conn: &Connection,
    sql: &str,
    code: i32,
    sqlite: &str,
) -> Option<(String, ConstraintNames)> {
    let subject = sqlite.split_once(": ").map(|(_, rest)| rest.trim());
    match code {
        UNIQUE | PRIMARY_KEY => {
            let subject = subject?;
            if let Some(index) = subject
                .strip_prefix("index '")
                .and_then(|s| s.strip_suffix('\''))
            {
                return Some(unique_message(index, None));
            }
            let (table, columns) = table_and_columns(subject)?;
            let name = build::unique_key_name(conn, &table, &columns).ok()??;
            Some(unique_message(&name, Some(table)))
        }
        NOT_NULL => {
            let (table, mut columns) = table_and_columns(subject?)?;
            let column = columns.pop()?;
            Some((
                format!(
                    "null value in column \"{column}\" of relation \"{table}\" violates \
                     not-null constraint"
                ),
                ConstraintNames {
                    constraint: None,
                    table: Some(table),
                    column: Some(column),
                },
            ))
        }
        CHECK => {
            let table = written_table(sql)?;
            let name = build::check_name(conn, &table, subject?).ok()??;
            Some((
                format!("new row for relation \"{table}\" violates check constraint \"{name}\""),
                ConstraintNames {
                    constraint: Some(name),
                    table: Some(table),
                    column: None,
                },
            ))
        }
        FOREIGN_KEY if subject.is_none() => foreign_key(conn, sql),
        _ => None,
    }
}

fn unique_message(name: &str, table: Option<String>) -> (String, ConstraintNames) {
    (
        format!("duplicate key value violates unique constraint \"{name}\""),
        ConstraintNames {
            constraint: Some(name.to_owned()),
            table,
            column: None,
        },
    )
}

/// An INSERT or UPDATE on a table with one foreign key broke it; a DELETE or UPDATE of a table
/// one foreign key references left rows pointing nowhere.
fn foreign_key(conn: &Connection, sql: &str) -> Option<(String, ConstraintNames)> {
    let table = written_table(sql)?;
    let deleting = first_word(sql).eq_ignore_ascii_case("DELETE");
    let own = build::foreign_key_names(conn, &table).ok()?;
    if !deleting && let [(name, _)] = own.as_slice() {
        return Some((
            format!(
                "insert or update on table \"{table}\" violates foreign key constraint \"{name}\""
            ),
            ConstraintNames {
                constraint: Some(name.clone()),
                table: Some(table),
                column: None,
            },
        ));
    }
    if !deleting && !own.is_empty() {
        return None;
    }
    let referencing = build::foreign_keys_referencing(conn, &table).ok()?;
    let [(child, name)] = referencing.as_slice() else {
        return None;
    };
    Some((
        format!(
            "update or delete on table \"{table}\" violates foreign key constraint \"{name}\" \
             on table \"{child}\""
        ),
        ConstraintNames {
            constraint: Some(name.clone()),
            table: Some(child.clone()),
            column: None,
        },
    ))
}

/// `t.a, t.b` → (`t`, [`a`, `b`]); every column must be of the same table.
fn table_and_columns(subject: &str) -> Option<(String, Vec<String>)> {
    let mut table = None;
    let mut columns = Vec::new();
    for item in subject.split(", ") {
        let (t, column) = item.split_once('.')?;
        if table.get_or_insert(t) != &t {
            return None;
        }
        columns.push(column.to_owned());
    }
    Some((table?.to_owned(), columns))
}

fn first_word(sql: &str) -> &str {
    sql.split_whitespace().next().unwrap_or("")
}

/// The table an INSERT, UPDATE or DELETE writes (unquoted, without a schema).
fn written_table(sql: &str) -> Option<String> {
    let words: Vec<&str> = sql.split_whitespace().collect();
    let first = words.first()?.to_ascii_uppercase();
    let after = |keyword: &str| {
        words
            .iter()
            .position(|w| w.eq_ignore_ascii_case(keyword))
            .and_then(|i| words.get(i + 1))
    };
    let word = match first.as_str() {
        "INSERT" | "REPLACE" => after("INTO")?,
        "DELETE" => after("FROM")?,
        "UPDATE" => {
            // UPDATE [OR action] table
            let skip = if words.get(1)?.eq_ignore_ascii_case("OR") {
                3
            } else {
                1
            };
            words.get(skip)?
        }
        _ => return None,
    };
    let name = word.split('(').next()?;
    let name = name.rsplit('.').next()?;
    let name = name.trim_matches('"');
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_tables_are_found_in_each_statement_form() {
        assert_eq!(
            written_table("INSERT INTO t (a) VALUES (1)").as_deref(),
            Some("t")
        );
        assert_eq!(
            written_table("INSERT INTO \"Orders\"(a) VALUES (1)").as_deref(),
            Some("Orders")
        );
        assert_eq!(
            written_table("UPDATE OR ROLLBACK main.t SET a = 1").as_deref(),
            Some("t")
        );
        assert_eq!(written_table("update t set a = 1").as_deref(), Some("t"));
        assert_eq!(
            written_table("DELETE FROM t WHERE a = 1").as_deref(),
            Some("t")
        );
        assert_eq!(written_table("SELECT 1"), None);
    }

    #[test]
    fn sqlite_subjects_split_into_table_and_columns() {
        assert_eq!(
            table_and_columns("t.a, t.b"),
            Some(("t".into(), vec!["a".into(), "b".into()]))
        );
        assert_eq!(table_and_columns("t.a, u.b"), None);
        assert_eq!(table_and_columns("index 'x'"), None);
    }

    fn db() -> Connection {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE accounts (id INTEGER PRIMARY KEY, email TEXT UNIQUE NOT NULL,
                 balance INT CHECK (balance >= 0), CONSTRAINT named_pair UNIQUE (email, balance));
             CREATE TABLE orders (id INTEGER PRIMARY KEY, account_id INT REFERENCES accounts(id));
             CREATE TABLE tags (name TEXT);
             CREATE UNIQUE INDEX by_lower ON tags (lower(name));
             INSERT INTO tags VALUES ('x');
             INSERT INTO accounts VALUES (1, 'a@b.c', 5);
             INSERT INTO orders VALUES (1, 1);",
        )
        .expect("schema");
        conn
    }

    fn failing(conn: &Connection, sql: &str) -> SqlError {
        let error = conn.execute(sql, []).expect_err(sql);
        in_postgres_terms(conn, sql, SqlError::from_sqlite(&error))
    }

    fn message(error: &SqlError) -> &str {
        match error {
            SqlError::Constraint { message, .. } => message,
            other => panic!("not a constraint violation: {other:?}"),
        }
    }

    #[test]
    fn each_violation_reads_as_postgresql_writes_it() {
        let conn = db();
        let duplicate = failing(&conn, "INSERT INTO accounts VALUES (2, 'a@b.c', 1)");
        assert_eq!(
            message(&duplicate),
            "duplicate key value violates unique constraint \"accounts_email_key\""
        );
        let SqlError::Constraint { names, .. } = &duplicate else {
            unreachable!()
        };
        assert_eq!(names.constraint.as_deref(), Some("accounts_email_key"));
        assert_eq!(names.table.as_deref(), Some("accounts"));
        assert_eq!(
            message(&failing(
                &conn,
                "INSERT INTO accounts VALUES (1, 'x@y.z', 1)"
            )),
            "duplicate key value violates unique constraint \"accounts_pkey\""
        );
        assert_eq!(
            message(&failing(&conn, "INSERT INTO tags VALUES ('X')")),
            "duplicate key value violates unique constraint \"by_lower\""
        );
        assert_eq!(
            message(&failing(
                &conn,
                "INSERT INTO accounts (id, balance) VALUES (4, 1)"
            )),
            "null value in column \"email\" of relation \"accounts\" violates not-null constraint"
        );
        assert_eq!(
            message(&failing(&conn, "UPDATE accounts SET balance = -1")),
            "new row for relation \"accounts\" violates check constraint \"accounts_balance_check\""
        );
        assert_eq!(
            message(&failing(&conn, "INSERT INTO orders VALUES (2, 99)")),
            "insert or update on table \"orders\" violates foreign key constraint \
             \"orders_account_id_fkey\""
        );
        assert_eq!(
            message(&failing(&conn, "DELETE FROM accounts")),
            "update or delete on table \"accounts\" violates foreign key constraint \
             \"orders_account_id_fkey\" on table \"orders\""
        );
    }
}
