//! The PostgreSQL dialect on SQLite: one PostgreSQL statement in, the SQLite statements that
//! do the same out — or a refusal naming what cannot be done faithfully. Nothing runs with a
//! meaning different from PostgreSQL's.
//!
//! # Life of a statement
//!
//! 1. [`translate`] gets one statement as the front end's lexer split it ([`SqlText`]).
//!    `VACUUM` and `ANALYZE` translate to nothing (SQLite cannot VACUUM inside a transaction
//!    and keeps its own statistics; PostgreSQL's tag is still sent). Transaction control is
//!    the session's business and passes through with only `$N` → `?N`.
//! 2. sqlparser parses it with its PostgreSQL dialect (a syntax error is 42601, with
//!    sqlparser's words). Text sqlparser cannot parse is refused, never passed through: if
//!    SQLite happened to accept it, it might not mean what PostgreSQL means.
//! 3. [`expr::Rewriter`] walks the AST once, bottom up, rewriting expressions, names and
//!    clauses (casts, `now()`, `LIKE`/`ILIKE`, `$N`, `generate_series`, `public.`, ...).
//! 4. DDL and utility statements get their own translation ([`ddl`]): types, SERIAL, indexes,
//!    `TRUNCATE`, `DROP` lists, `ALTER TABLE ... ADD PRIMARY KEY`.
//! 5. The AST prints back as SQL (sqlparser's `Display`), which SQLite reads.
//!
//! A [`Translation`] may hold several statements (`TRUNCATE a, b`, `ALTER TABLE ... ADD
//! PRIMARY KEY`): the session runs them as one transaction and answers with one tag.
//!
//! # Cost
//!
//! Parsing and printing a statement costs about 10–15 µs (`cargo run --release
//! --example translation_cost`); the extended protocol pays it once per prepared statement.
//! A statement whose shape was seen before — the same text but for its small integer
//! literals, as pgbench and clients that write values into SQL send — is filled in from the
//! earlier translation instead ([`cache`]); for a simple query, its literals in value positions
//! then become bound parameters ([`lift`]), so that SQLite prepares the shape only once.

mod cache;
mod catalog;
mod columns;
mod ddl;
mod expr;
mod lift;
mod types;

use sqlparser::ast::{
    ConflictTarget, Expr, OnConflict, OnInsert, SetExpr, Statement, Value, VisitMut,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::frontend::pg::sql::{self, SqlText};
use crate::frontend::pg::tags::TagKind;

pub use expr::NOW;

/// How deep expressions may nest before the parser refuses (a hostile client cannot overflow
/// the stack).
const RECURSION_LIMIT: usize = 64;

/// What one PostgreSQL statement becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    /// SQLite statements to run in order, as one transaction; empty for a statement that has
    /// nothing to do here (`VACUUM`).
    pub statements: Vec<String>,
    /// The CommandComplete tag when the statement's first words do not give PostgreSQL's
    /// (`TRUNCATE` → `TRUNCATE TABLE`).
    pub tag: Option<TagKind>,
    /// For a query, each result column's declared type where PostgreSQL would know it and
    /// SQLite does not (`count(*)` → `BIGINT`, `a = b` → `BOOLEAN`); empty if unknown.
    pub column_decltypes: Vec<Option<String>>,
}

impl Translation {
    fn one(sql: String) -> Translation {
        Translation {
            statements: vec![sql],
            tag: None,
            column_decltypes: Vec::new(),
        }
    }
}

/// Why a statement was not translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The statement is not valid PostgreSQL as far as the parser knows (42601).
    #[error("syntax error: {0}")]
    Syntax(String),
    /// Valid PostgreSQL that SQLite cannot do with the same meaning (0A000).
    #[error("{0} is not supported")]
    Unsupported(String),
    /// A literal that is not a valid value of its type (`'x'::int`): PostgreSQL's SQLSTATE.
    #[error("{message}")]
    InvalidValue { code: &'static str, message: String },
}

/// Translates one PostgreSQL statement into SQLite statements — from the template of a
/// statement of the same shape when one was seen before ([`cache`]).
pub fn translate(statement: &SqlText) -> Result<Translation, TranslateError> {
    cache::translate(statement, translate_uncached).0
}

/// Translates one statement of a simple query as [`translate`] does, with the integer literals
/// in its value positions lifted into parameters: the SQLite text is the same for every
/// statement of its shape (one prepared statement), run with the returned values bound.
pub fn translate_lifting(statement: &SqlText) -> Result<(Translation, Vec<i64>), TranslateError> {
    cache::translate_lifting(statement, translate_uncached).0
}

/// Translates one PostgreSQL statement into SQLite statements, without the cache.
pub fn translate_uncached(statement: &SqlText) -> Result<Translation, TranslateError> {
    match statement.word(0).as_deref() {
        Some(word @ ("VACUUM" | "ANALYZE" | "ANALYSE")) => {
            let tag = if word == "VACUUM" {
                "VACUUM"
            } else {
                "ANALYZE"
            };
            return Ok(Translation {
                statements: Vec::new(),
                tag: Some(TagKind::Fixed(tag.into())),
                column_decltypes: Vec::new(),
            });
        }
        Some(
            "BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "ABORT" | "SAVEPOINT" | "RELEASE",
        ) => return Ok(Translation::one(sql::to_sqlite(statement).0)),
        None => return Err(TranslateError::Syntax("empty statement".into())),
        _ => {}
    }
    let mut parsed = Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(RECURSION_LIMIT)
        .try_with_sql(&statement.sql)
        .and_then(|mut parser| parser.parse_statements())
        .map_err(|e| TranslateError::Syntax(syntax_message(&e.to_string())))?;
    let ast = match (parsed.pop(), parsed.is_empty()) {
        (Some(ast), true) => ast,
        _ => {
            return Err(TranslateError::Syntax(
                "expected exactly one statement".into(),
            ));
        }
    };
    translate_statement(ast)
}

/// sqlparser's message, without its prefix.
fn syntax_message(message: &str) -> String {
    message.trim_start_matches("sql parser error: ").to_owned()
}

/// Runs the expression pass over a statement.
fn rewrite<T: VisitMut + sqlparser::ast::Visit>(node: &mut T) -> Result<(), TranslateError> {
    let catalog = catalog::is_catalog_query(node);
    if let std::ops::ControlFlow::Break(e) = node.visit(&mut expr::Rewriter { catalog }) {
        return Err(e);
    }
    if catalog {
        Ok(())
    } else {
        catalog::leftover_array(node)
    }
}

fn unsupported(what: impl Into<String>) -> TranslateError {
    TranslateError::Unsupported(what.into())
}

fn translate_statement(mut ast: Statement) -> Result<Translation, TranslateError> {
    let mut column_decltypes = Vec::new();
    match &mut ast {
        Statement::Query(query) => {
            let catalog = catalog::is_catalog_query(query);
            column_decltypes = columns::name_result_columns(query, catalog)
        }
        Statement::Update(_) => {}
        Statement::Insert(insert) => {
            if let Some(OnInsert::OnConflict(OnConflict {
                conflict_target, ..
            })) = &insert.on
            {
                if matches!(conflict_target, Some(ConflictTarget::OnConstraint(_))) {
                    return Err(unsupported("ON CONFLICT ON CONSTRAINT (name the columns)"));
                }
                // SQLite reads `INSERT ... SELECT ... ON CONFLICT` as a join's ON unless the
                // SELECT has a WHERE clause.
                if let Some(source) = &mut insert.source
                    && let SetExpr::Select(select) = source.body.as_mut()
                    && select.selection.is_none()
                {
                    select.selection = Some(Expr::value(Value::Boolean(true)));
                }
            }
            if let Some(source) = &insert.source
                && let SetExpr::Values(values) = source.body.as_ref()
                && values
                    .rows
                    .iter()
                    .flat_map(|row| row.content.iter())
                    .any(is_default_keyword)
            {
                return Err(unsupported("DEFAULT in VALUES"));
            }
        }
        Statement::Delete(delete) => {
            if delete.using.is_some() {
                return Err(unsupported("DELETE ... USING (use a subquery)"));
            }
        }
        Statement::CreateTable(_)
        | Statement::CreateIndex(_)
        | Statement::AlterTable(_)
        | Statement::Drop { .. }
        | Statement::Truncate(_) => {}
        Statement::CreateView(view) => {
            if view.materialized {
                return Err(unsupported("materialized views"));
            }
        }
        Statement::Explain {
            analyze, statement, ..
        } => {
            if *analyze {
                return Err(unsupported("EXPLAIN ANALYZE"));
            }
            let inner = translate_statement(std::mem::replace(
                statement.as_mut(),
                Statement::Commit {
                    chain: false,
                    end: false,
                    modifier: None,
                },
            ))?;
            return match inner.statements.as_slice() {
                [one] => Ok(Translation::one(format!("EXPLAIN QUERY PLAN {one}"))),
                _ => Err(unsupported("EXPLAIN of this statement")),
            };
        }
        other => return Err(unsupported(statement_name(other))),
    }
    rewrite(&mut ast)?;
    let statements = match ast {
        Statement::CreateTable(table) => ddl::create_table(table)?,
        Statement::CreateIndex(index) => ddl::create_index(index)?,
        Statement::AlterTable(alter) => ddl::alter_table(alter)?,
        Statement::Drop {
            object_type,
            if_exists,
            names,
            ..
        } => ddl::drop(object_type, if_exists, names)?,
        Statement::Truncate(truncate) => {
            return Ok(Translation {
                statements: ddl::truncate(truncate)?,
                tag: Some(TagKind::Fixed("TRUNCATE TABLE".into())),
                column_decltypes,
            });
        }
        Statement::CreateView(mut view) if view.or_replace => {
            view.or_replace = false;
            vec![
                format!("DROP VIEW IF EXISTS {}", view.name),
                view.to_string(),
            ]
        }
        other => vec![other.to_string()],
    };
    Ok(Translation {
        statements,
        tag: None,
        column_decltypes,
    })
}

/// `DEFAULT` standing for a value (sqlparser reads it as an identifier).
fn is_default_keyword(expr: &Expr) -> bool {
    matches!(expr, Expr::Identifier(ident) if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("default"))
}

/// The statement's leading keywords, for a refusal: `CREATE SEQUENCE`, `GRANT`, ...
fn statement_name(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text
        .split_whitespace()
        .take_while(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .take(3)
        .collect();
    if words.is_empty() {
        "this statement".into()
    } else {
        words.join(" ")
    }
}

#[cfg(test)]
mod tests;
