//! PostgreSQL `bigint` and `smallint` keys that are SQLite rowid aliases.
//!
//! SQLite generates a key (max + 1) only for a rowid alias, a column declared exactly
//! `INTEGER PRIMARY KEY`: `BIGINT PRIMARY KEY` is an ordinary column beside a hidden rowid.
//! So the translator declares a `BIGSERIAL`, a `bigint GENERATED ... AS IDENTITY` and a plain
//! `bigint PRIMARY KEY` as `INTEGER`, and keeps the PostgreSQL type in a comment right after
//! the type, which SQLite preserves in `sqlite_schema.sql` but leaves out of the declared type:
//!
//! ```sql
//! CREATE TABLE t ("id" INTEGER /* phalanx:int8 */ PRIMARY KEY NOT NULL, ...)
//! ```
//!
//! ([`declaration`]; `int2` likewise for `SMALLSERIAL`). The comment names no column, so
//! `RENAME COLUMN` cannot make it stale, and `ADD`/`DROP COLUMN` leave it in place. Readers
//! that see SQLite's declared type `INTEGER` for a primary-key column ask
//! [`postgres_declared`] (the engine, for each result column through SQLite's column origin,
//! and for the tables it describes; the catalog, for `pg_attribute`), which answers the
//! declared type the column would have had — `BIGINT` or `SMALLINT` — so
//! `frontend::pg::types::type_for_decltype` and `catalog::types::of_declared` report int8 or
//! int2 unchanged. Only a comment token counts (the text is tokenized), so a string literal
//! that happens to contain the marker does not.

use rusqlite::{Connection, OptionalExtension};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

const MARKER: &str = "phalanx:";

/// How a rowid alias of PostgreSQL type `declared` (the translator's `BIGINT`, `SMALLINT`,
/// `INTEGER`) is declared in SQLite; `serial` for a `SERIAL`-family column, whose catalog
/// default is then `nextval('<table>_<column>_seq'::regclass)` as in PostgreSQL.
pub fn declaration(declared: &str, serial: bool) -> String {
    let ty = match declared {
        "BIGINT" => "int8",
        "SMALLINT" => "int2",
        _ if serial => "int4",
        // A plain integer key needs no marker: SQLite's declared type already says it.
        _ => return "INTEGER".to_owned(),
    };
    let suffix = if serial { " serial" } else { "" };
    format!("INTEGER /* {MARKER}{ty}{suffix} */")
}

/// A marked rowid alias read back from its table's `CREATE TABLE` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marked {
    pub column: String,
    /// The PostgreSQL declared type: `BIGINT`, `SMALLINT` or `INTEGER`.
    pub declared: &'static str,
    /// Declared `SERIAL`, `BIGSERIAL` or `SMALLSERIAL`.
    pub serial: bool,
}

/// The marked column of a `CREATE TABLE` text, if the text has a marker.
pub fn marked_column(create_sql: &str) -> Option<Marked> {
    // Most tables have none: skip the tokenizer for them.
    if !create_sql.contains(MARKER) {
        return None;
    }
    let tokens = Tokenizer::new(&SQLiteDialect {}, create_sql)
        .tokenize()
        .ok()?;
    let mut depth = 0usize;
    // The first word of the current column definition (at depth 1).
    let mut column: Option<String> = None;
    let mut at_definition_start = false;
    for token in tokens {
        match token {
            Token::LParen => {
                depth += 1;
                at_definition_start = depth == 1;
            }
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Comma if depth == 1 => at_definition_start = true,
            Token::Whitespace(Whitespace::MultiLineComment(comment)) if depth == 1 => {
                let Some(marker) = comment.trim().strip_prefix(MARKER) else {
                    continue;
                };
                let mut words = marker.split_whitespace();
                let declared = match words.next() {
                    Some("int8") => "BIGINT",
                    Some("int2") => "SMALLINT",
                    Some("int4") => "INTEGER",
                    _ => continue,
                };
                let serial = words.next() == Some("serial");
                return Some(Marked {
                    column: column?,
                    declared,
                    serial,
                });
            }
            Token::Whitespace(_) => {}
            Token::Word(word) if at_definition_start => {
                column = Some(word.value);
                at_definition_start = false;
            }
            _ => at_definition_start = false,
        }
    }
    None
}

/// The PostgreSQL declared type of `schema.table.column` if it is a marked rowid alias.
/// Callers ask only for a primary-key column SQLite declares `INTEGER`; any failure to read
/// the schema answers `None` (the column then reads as SQLite declares it).
pub fn postgres_declared(
    conn: &Connection,
    schema: &str,
    table: &str,
    column: &str,
) -> Option<&'static str> {
    let sql = format!(
        "SELECT sql FROM \"{}\".sqlite_schema WHERE type = 'table' AND name = ?1",
        schema.replace('"', "\"\"")
    );
    // `sql` is NULL only for SQLite's internal tables; none of them is asked about.
    let create: String = conn
        .prepare_cached(&sql)
        .ok()?
        .query_row([table], |row| row.get::<_, Option<String>>(0))
        .optional()
        .ok()
        .flatten()
        .flatten()?;
    let marked = marked_column(&create)?;
    marked
        .column
        .eq_ignore_ascii_case(column)
        .then_some(marked.declared)
}

/// Each result column's declared type as PostgreSQL readers should see it (`None` for an
/// expression): SQLite's, except for a marked rowid alias (see the module doc).
pub fn result_decltypes(
    conn: &Connection,
    prepared: &rusqlite::Statement<'_>,
) -> Vec<Option<String>> {
    prepared
        .columns()
        .enumerate()
        .map(|(i, column)| {
            let declared = column.decl_type()?;
            if declared.eq_ignore_ascii_case("INTEGER")
                && let Ok(Some((schema, table, origin, _, _, _, primary_key, _))) =
                    prepared.column_metadata(i)
                && primary_key
                && let (Ok(schema), Ok(table), Ok(origin)) =
                    (schema.to_str(), table.to_str(), origin.to_str())
                && let Some(postgres) = postgres_declared(conn, schema, table, origin)
            {
                return Some(postgres.to_owned());
            }
            Some(declared.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_names_its_column_and_type() {
        let marked = |column: &str, declared, serial| {
            Some(Marked {
                column: column.to_owned(),
                declared,
                serial,
            })
        };
        assert_eq!(
            marked_column(
                "CREATE TABLE t (\"Id\" INTEGER /* phalanx:int8 */ PRIMARY KEY NOT NULL, b TEXT)"
            ),
            marked("Id", "BIGINT", false)
        );
        assert_eq!(
            marked_column(
                "CREATE TABLE t (a NUMERIC(10, 2), n INTEGER /* phalanx:int2 */ PRIMARY KEY)"
            ),
            marked("n", "SMALLINT", false)
        );
        for (declared, serial) in [("BIGINT", true), ("INTEGER", true), ("SMALLINT", false)] {
            let create = format!(
                "CREATE TABLE t (k {} PRIMARY KEY, v TEXT)",
                declaration(declared, serial)
            );
            assert_eq!(
                marked_column(&create),
                marked("k", declared, serial),
                "{create}"
            );
        }
        assert_eq!(declaration("INTEGER", false), "INTEGER");
        // A string that looks like the marker is not one.
        assert_eq!(
            marked_column(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, b TEXT DEFAULT '/* phalanx:int8 */')"
            ),
            None
        );
        assert_eq!(
            marked_column("CREATE TABLE t (id INTEGER PRIMARY KEY)"),
            None
        );
    }

    #[test]
    fn sqlite_keeps_the_marker_and_the_rowid_alias() {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(&format!(
            "CREATE TABLE t (\"id\" {} PRIMARY KEY NOT NULL, v TEXT); \
             ALTER TABLE t RENAME COLUMN id TO key; \
             ALTER TABLE t ADD COLUMN w INTEGER; \
             CREATE VIEW v AS SELECT key, w FROM t; \
             INSERT INTO t (v) VALUES ('a'), ('b');",
            declaration("BIGINT", false)
        ))
        .expect("schema");
        let (declared, key): (String, i64) = conn
            .query_row(
                "SELECT type, (SELECT max(rowid) FROM t) FROM pragma_table_info('t') WHERE name = 'key'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .expect("column");
        assert_eq!(declared, "INTEGER", "still SQLite's rowid alias");
        assert_eq!(key, 2, "numbered by SQLite");
        assert_eq!(postgres_declared(&conn, "main", "t", "key"), Some("BIGINT"));
        assert_eq!(postgres_declared(&conn, "main", "t", "w"), None);
        let prepared = conn
            .prepare("SELECT key, w, key + 1 FROM v")
            .expect("prepare");
        assert_eq!(
            result_decltypes(&conn, &prepared),
            vec![Some("BIGINT".to_owned()), Some("INTEGER".to_owned()), None]
        );
    }
}
