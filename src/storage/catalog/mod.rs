//! PostgreSQL's system catalogs (`pg_catalog`) and `information_schema`, derived live from
//! the SQLite schema, so that `psql`'s `\d` family and drivers' and ORMs' introspection work.
//!
//! Every connection the engine opens attaches two private in-memory databases named
//! `pg_catalog` and `information_schema` holding PostgreSQL-shaped tables ([`tables`]), so a
//! query naming `pg_catalog.pg_class` (or `pg_catalog.pg_class.relname`) resolves in SQLite
//! as written. Their rows ([`build`]) are rebuilt on that connection when a statement that
//! names a catalog runs and the main schema changed since the last build (SQLite's
//! `schema_version`); a rebuild costs about a millisecond per few tables, and only catalog
//! queries pay it.
//!
//! The functions catalog queries call (`format_type`, `pg_get_userbyid`, ...) are in
//! [`functions`]; the query rewriting (regclass casts, arrays as JSON, ...) is the dialect's
//! (`frontend::pg::dialect::catalog`).

pub mod build;
pub mod facts;
pub mod functions;
pub mod tables;
pub mod types;

use rusqlite::Connection;
use rusqlite::types::Value;

/// The attached schemas.
pub const SCHEMAS: [&str; 2] = ["pg_catalog", "information_schema"];

/// Attaches the catalog databases to `conn` and creates their (empty) tables. Called once
/// per connection, before any authorizer is installed.
pub fn attach(conn: &Connection) -> rusqlite::Result<()> {
    let mut sql = String::new();
    for schema in SCHEMAS {
        sql.push_str(&format!("ATTACH DATABASE ':memory:' AS {schema};\n"));
    }
    for table in tables::TABLES {
        let columns: Vec<String> = table
            .columns
            .iter()
            .map(|(name, ty)| format!("\"{name}\" {ty}"))
            .collect();
        sql.push_str(&format!(
            "CREATE TABLE {}.{} ({});\n",
            table.schema,
            table.name,
            columns.join(", ")
        ));
    }
    sql.push_str("CREATE TABLE pg_catalog.phx_catalog_state (schema_version INTEGER NOT NULL);\n");
    conn.execute_batch(&sql)?;
    functions::register(conn)
}

/// Whether `sql` may read the catalog: it names one of the attached schemas or calls a
/// function that looks into it (`phx_reg*`, `pg_get_*def`). The translator qualifies every
/// catalog table it sees, so this is a substring test.
pub fn mentions_catalog(sql: &str) -> bool {
    const MARKERS: [&[u8]; 4] = [
        b"pg_catalog.",
        b"information_schema.",
        b"phx_reg",
        b"pg_get_",
    ];
    let bytes = sql.as_bytes();
    MARKERS.iter().any(|marker| {
        bytes
            .windows(marker.len())
            .any(|w| w.eq_ignore_ascii_case(marker))
    })
}

/// Rebuilds the catalog's rows on `conn` if the main schema changed since they were built.
/// Writes only the attached in-memory databases. `atomic` wraps the rebuild in a savepoint
/// (on the writer, which may be inside a transaction); read connections may not open
/// transactions, and a half-done rebuild there is simply redone by the next query (the
/// version row is written last).
pub fn refresh(conn: &Connection, atomic: bool) -> rusqlite::Result<()> {
    let current: i64 = conn.query_row("PRAGMA main.schema_version", [], |row| row.get(0))?;
    let built: Option<i64> = conn
        .query_row(
            "SELECT schema_version FROM pg_catalog.phx_catalog_state",
            [],
            |row| row.get(0),
        )
        .ok();
    if built == Some(current) {
        return Ok(());
    }
    let rows = build::build(conn)?;
    if !atomic {
        return write_rows(conn, &rows, current);
    }
    conn.execute_batch("SAVEPOINT phx_catalog")?;
    match write_rows(conn, &rows, current) {
        Ok(()) => conn.execute_batch("RELEASE phx_catalog"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO phx_catalog; RELEASE phx_catalog");
            Err(e)
        }
    }
}

fn write_rows(conn: &Connection, rows: &build::CatalogRows, version: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM pg_catalog.phx_catalog_state", [])?;
    for table in tables::TABLES {
        conn.execute(&format!("DELETE FROM {}.{}", table.schema, table.name), [])?;
        let Some(table_rows) = rows.tables.get(&(table.schema, table.name)) else {
            continue;
        };
        let placeholders = vec!["?"; table.columns.len()].join(", ");
        let mut insert = conn.prepare(&format!(
            "INSERT INTO {}.{} VALUES ({placeholders})",
            table.schema, table.name
        ))?;
        for row in table_rows {
            let values: Vec<Value> = table
                .columns
                .iter()
                .map(|(name, ty)| {
                    row.iter()
                        .find(|(column, _)| column == name)
                        .map(|(_, value)| value.clone())
                        .unwrap_or_else(|| tables::default_value(ty))
                })
                .collect();
            insert.execute(rusqlite::params_from_iter(values))?;
        }
    }
    conn.execute(
        "INSERT INTO pg_catalog.phx_catalog_state VALUES (?1)",
        [version],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;
