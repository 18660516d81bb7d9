//! Computes the catalog's rows from the SQLite schema: tables, views, indexes, columns,
//! defaults and constraints as PostgreSQL would describe the same schema.
//!
//! OIDs are derived from `sqlite_schema`'s rowids, so they are the same for the same schema
//! on every connection and every node (the schema is replicated statement by statement):
//! a table or index is `16384 + 2·rowid`, the primary key index of a rowid table (which SQLite
//! does not store) `16385 + 2·rowid`, and constraint `n` of a table `2^24 + 1024·rowid + n`.

use std::collections::BTreeMap;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};
use sqlparser::ast::{ColumnOption, Statement, TableConstraint};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::parser::Parser;

use super::tables;
use super::types;
use crate::storage::meta::META_TABLE;

pub const PG_CATALOG: i64 = 11;
pub const PUBLIC: i64 = 2200;
pub const INFORMATION_SCHEMA: i64 = 13000;
/// The one role: every user is a superuser here.
pub const SUPERUSER: i64 = 10;
const BTREE: i64 = 403;
const HEAP: i64 = 2;
const DEFAULT_COLLATION: i64 = 100;
const DATABASE: &str = "postgres";

/// One row: column name → value; unset columns take the type's zero value.
pub type Row = Vec<(&'static str, Value)>;

/// Rows per catalog table (`schema.name`).
#[derive(Default)]
pub struct CatalogRows {
    pub tables: BTreeMap<(&'static str, &'static str), Vec<Row>>,
}

impl CatalogRows {
    fn push(&mut self, schema: &'static str, table: &'static str, row: Row) {
        self.tables.entry((schema, table)).or_default().push(row);
    }
}

fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

fn int(i: i64) -> Value {
    Value::Integer(i)
}

fn boolean(b: bool) -> Value {
    Value::Integer(i64::from(b))
}

fn json_array<T: serde::Serialize>(items: &[T]) -> Value {
    Value::Text(serde_json::to_string(items).unwrap_or_else(|_| "[]".into()))
}

/// A column as `PRAGMA table_xinfo` gives it.
struct ColumnInfo {
    name: String,
    declared: String,
    not_null: bool,
    default: Option<String>,
    /// Position in the primary key (1-based), 0 if not part of it.
    pk: i64,
}

/// An index as `PRAGMA index_list` gives it, with its columns.
struct IndexInfo {
    name: String,
    unique: bool,
    /// `c` (CREATE INDEX), `u` (UNIQUE constraint), `pk` (PRIMARY KEY).
    origin: String,
    sql: Option<String>,
    rowid: i64,
    /// Column numbers (1-based; 0 for an expression).
    columns: Vec<i64>,
    column_names: Vec<String>,
}

/// What the table's CREATE statement says that no pragma tells: constraint names and CHECKs.
#[derive(Default)]
struct DeclaredConstraints {
    primary_key_name: Option<String>,
    /// (name, columns) of UNIQUE constraints.
    unique_names: Vec<(Option<String>, Vec<String>)>,
    /// (name, columns) of FOREIGN KEYs, in order.
    foreign_key_names: Vec<(Option<String>, Vec<String>)>,
    /// (name, column it belongs to, expression).
    checks: Vec<(Option<String>, Option<String>, String)>,
}

fn declared_constraints(sql: &str) -> DeclaredConstraints {
    let mut found = DeclaredConstraints::default();
    let Ok(mut statements) = Parser::parse_sql(&SQLiteDialect {}, sql) else {
        return found;
    };
    let Some(Statement::CreateTable(create)) = statements.pop() else {
        return found;
    };
    for column in &create.columns {
        for option in &column.options {
            let name = option.name.as_ref().map(|n| n.value.clone());
            match &option.option {
                ColumnOption::Check(check) => found.checks.push((
                    name,
                    Some(column.name.value.clone()),
                    check.expr.to_string(),
                )),
                ColumnOption::PrimaryKey(_) if name.is_some() => found.primary_key_name = name,
                ColumnOption::Unique(_) => found
                    .unique_names
                    .push((name, vec![column.name.value.clone()])),
                ColumnOption::ForeignKey(_) => found
                    .foreign_key_names
                    .push((name, vec![column.name.value.clone()])),
                _ => {}
            }
        }
    }
    for constraint in &create.constraints {
        let idents = |columns: &[sqlparser::ast::Ident]| -> Vec<String> {
            columns.iter().map(|c| c.value.clone()).collect()
        };
        match constraint {
            TableConstraint::Check(check) => found.checks.push((
                check.name.as_ref().map(|n| n.value.clone()),
                None,
                check.expr.to_string(),
            )),
            TableConstraint::PrimaryKey(key) => {
                found.primary_key_name = key.name.as_ref().map(|n| n.value.clone())
            }
            TableConstraint::Unique(unique) => found.unique_names.push((
                unique.name.as_ref().map(|n| n.value.clone()),
                unique
                    .columns
                    .iter()
                    .map(|c| c.column.expr.to_string().trim_matches('"').to_owned())
                    .collect(),
            )),
            TableConstraint::ForeignKey(key) => found.foreign_key_names.push((
                key.name.as_ref().map(|n| n.value.clone()),
                idents(&key.columns),
            )),
            _ => {}
        }
    }
    found
}

/// PostgreSQL's generated constraint name: `table_col1_col2_suffix`, at most 63 bytes.
fn generated_name(table: &str, columns: &[String], suffix: &str) -> String {
    let mut name = table.to_owned();
    for column in columns {
        name.push('_');
        name.push_str(column);
    }
    name.push('_');
    name.push_str(suffix);
    while name.len() > 63 {
        name.pop();
    }
    name
}

/// A name quoted for display when PostgreSQL would quote it.
fn display_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// The default PostgreSQL gives a `SERIAL` column: the next value of its owned sequence.
fn serial_default(table: &str, column: &str) -> String {
    let sequence = display_ident(&format!("{table}_{column}_seq"));
    format!("nextval('{}'::regclass)", sequence.replace('\'', "''"))
}

/// A default expression as PostgreSQL shows it: the translator's spelling of `now()` and
/// `CURRENT_DATE` back to theirs.
fn display_default(sqlite: &str) -> String {
    let trimmed = sqlite.trim();
    let unwrapped = trimmed
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or(trimmed);
    if unwrapped == crate::frontend::pg::dialect::NOW {
        "now()".to_owned()
    } else if unwrapped == "date('now')" {
        "CURRENT_DATE".to_owned()
    } else {
        trimmed.to_owned()
    }
}

fn table_columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<ColumnInfo>> {
    let mut statement = conn.prepare(
        "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_xinfo(?1, 'main') \
         WHERE hidden = 0 ORDER BY cid",
    )?;
    let rows = statement.query_map(params![table], |row| {
        Ok(ColumnInfo {
            name: row.get(0)?,
            declared: row.get::<_, Option<String>>(1)?.unwrap_or_default(),
            not_null: row.get::<_, i64>(2)? != 0,
            default: row.get(3)?,
            pk: row.get(4)?,
        })
    })?;
    rows.collect()
}

fn table_indexes(
    conn: &Connection,
    table: &str,
    columns: &[ColumnInfo],
) -> rusqlite::Result<Vec<IndexInfo>> {
    let mut list = conn.prepare(
        "SELECT l.name, l.\"unique\", l.origin, s.sql, s.rowid \
         FROM pragma_index_list(?1, 'main') AS l JOIN main.sqlite_schema AS s ON s.name = l.name \
         ORDER BY l.seq DESC",
    )?;
    let mut indexes: Vec<IndexInfo> = list
        .query_map(params![table], |row| {
            Ok(IndexInfo {
                name: row.get(0)?,
                unique: row.get::<_, i64>(1)? != 0,
                origin: row.get(2)?,
                sql: row.get(3)?,
                rowid: row.get(4)?,
                columns: Vec::new(),
                column_names: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut info =
        conn.prepare("SELECT cid, name FROM pragma_index_info(?1, 'main') ORDER BY seqno")?;
    for index in &mut indexes {
        let parts: Vec<(i64, Option<String>)> = info
            .query_map(params![index.name], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (cid, name) in parts {
            let number = if cid >= 0 { cid + 1 } else { 0 };
            index.columns.push(number);
            index.column_names.push(
                name.or_else(|| {
                    usize::try_from(cid)
                        .ok()
                        .and_then(|c| columns.get(c))
                        .map(|c| c.name.clone())
                })
                .unwrap_or_else(|| "expr".into()),
            );
        }
    }
    Ok(indexes)
}

/// Whether `index` carries the table's primary key: SQLite's own, or one added by `ALTER TABLE
/// ... ADD PRIMARY KEY` (a unique index with a not-null helper named after it).
fn is_primary(index: &IndexInfo, not_null_helpers: &[String]) -> bool {
    index.origin == "pk" || not_null_helpers.contains(&format!("{}_not_null", index.name))
}

/// The indexes that only enforce NOT NULL for an added primary key (not shown as indexes).
fn not_null_helpers<'a>(indexes: impl IntoIterator<Item = &'a IndexInfo>) -> Vec<String> {
    indexes
        .into_iter()
        .filter(|i| {
            i.sql
                .as_deref()
                .is_some_and(|s| s.contains("WHERE pg_not_null("))
        })
        .map(|i| i.name.clone())
        .collect()
}

/// The name PostgreSQL would give `index` of `table`: a primary key's or unique constraint's
/// declared name, else `table_pkey` / `table_col_key`; a created index keeps its own.
fn key_display_name(
    table: &str,
    declared: &DeclaredConstraints,
    index: &IndexInfo,
    primary: bool,
) -> String {
    if primary {
        declared.primary_key_name.clone().unwrap_or_else(|| {
            if index.origin == "pk" {
                generated_name(table, &[], "pkey")
            } else {
                index.name.clone()
            }
        })
    } else if index.origin == "u" {
        declared
            .unique_names
            .iter()
            .find(|(_, cols)| same_columns(cols, &index.column_names))
            .and_then(|(n, _)| n.clone())
            .unwrap_or_else(|| generated_name(table, &index.column_names, "key"))
    } else {
        index.name.clone()
    }
}

fn same_columns(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y))
}

/// The CREATE TABLE text of `table`, if it is a table.
fn table_sql(conn: &Connection, table: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT sql FROM main.sqlite_schema WHERE type = 'table' AND name = ?1 COLLATE NOCASE",
        params![table],
        |row| row.get::<_, Option<String>>(0),
    )
    .optional()
    .map(Option::flatten)
}

/// The catalog's name for `table`'s primary key or unique constraint (or unique index) on
/// exactly `columns`: what a unique violation names.
pub fn unique_key_name(
    conn: &Connection,
    table: &str,
    columns: &[String],
) -> rusqlite::Result<Option<String>> {
    let Some(sql) = table_sql(conn, table)? else {
        return Ok(None);
    };
    let declared = declared_constraints(&sql);
    let table_columns = table_columns(conn, table)?;
    let indexes = table_indexes(conn, table, &table_columns)?;
    let helpers = not_null_helpers(&indexes);
    if let Some(index) = indexes
        .iter()
        .find(|i| i.unique && !helpers.contains(&i.name) && same_columns(&i.column_names, columns))
    {
        let primary = is_primary(index, &helpers);
        return Ok(Some(key_display_name(table, &declared, index, primary)));
    }
    // A rowid primary key has no index of its own.
    let key: Vec<String> = table_columns
        .iter()
        .filter(|c| c.pk > 0)
        .map(|c| c.name.clone())
        .collect();
    Ok(same_columns(&key, columns).then(|| {
        declared
            .primary_key_name
            .clone()
            .unwrap_or_else(|| generated_name(table, &[], "pkey"))
    }))
}

/// The catalog's names of `table`'s foreign keys, with the table each references, in
/// declaration order.
pub fn foreign_key_names(
    conn: &Connection,
    table: &str,
) -> rusqlite::Result<Vec<(String, String)>> {
    let Some(sql) = table_sql(conn, table)? else {
        return Ok(Vec::new());
    };
    let declared = declared_constraints(&sql);
    Ok(table_foreign_keys(conn, table)?
        .into_iter()
        .enumerate()
        .map(|(i, key)| {
            let name = declared
                .foreign_key_names
                .get(i)
                .and_then(|(n, _)| n.clone())
                .unwrap_or_else(|| generated_name(table, &key.from, "fkey"));
            (name, key.referenced)
        })
        .collect())
}

/// The catalog's names of the foreign keys of other tables that reference `table`:
/// (referencing table, constraint name).
pub fn foreign_keys_referencing(
    conn: &Connection,
    table: &str,
) -> rusqlite::Result<Vec<(String, String)>> {
    let tables: Vec<String> = conn
        .prepare_cached(
            "SELECT name FROM main.sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut found = Vec::new();
    for child in tables {
        for (name, referenced) in foreign_key_names(conn, &child)? {
            if referenced.eq_ignore_ascii_case(table) {
                found.push((child.clone(), name));
            }
        }
    }
    Ok(found)
}

/// The catalog's name for the CHECK of `table` that SQLite's message names: by its declared
/// name, or by its expression (SQLite quotes an unnamed CHECK's expression as written).
pub fn check_name(
    conn: &Connection,
    table: &str,
    sqlite_subject: &str,
) -> rusqlite::Result<Option<String>> {
    let Some(sql) = table_sql(conn, table)? else {
        return Ok(None);
    };
    let squeezed = |text: &str| -> String {
        text.chars()
            .filter(|c| !c.is_whitespace() && *c != '(' && *c != ')')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let wanted = squeezed(sqlite_subject);
    Ok(declared_constraints(&sql)
        .checks
        .into_iter()
        .find(|(name, _, expression)| {
            name.as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(sqlite_subject))
                || squeezed(expression) == wanted
        })
        .map(|(name, column, _)| check_display_name(table, name, column.as_ref())))
}

/// A CHECK's name: declared, else `table_column_check` or `table_check`.
fn check_display_name(table: &str, name: Option<String>, column: Option<&String>) -> String {
    name.unwrap_or_else(|| match column {
        Some(column) => generated_name(table, std::slice::from_ref(column), "check"),
        None => generated_name(table, &[], "check"),
    })
}

struct ForeignKey {
    referenced: String,
    from: Vec<String>,
    to: Vec<Option<String>>,
    on_update: String,
    on_delete: String,
}

fn table_foreign_keys(conn: &Connection, table: &str) -> rusqlite::Result<Vec<ForeignKey>> {
    let mut statement = conn.prepare(
        "SELECT id, \"table\", \"from\", \"to\", on_update, on_delete \
         FROM pragma_foreign_key_list(?1, 'main') ORDER BY id DESC, seq",
    )?;
    let mut keys: Vec<(i64, ForeignKey)> = Vec::new();
    let rows = statement.query_map(params![table], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, Option<String>>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, String>(5)?,
        ))
    })?;
    for row in rows {
        let (id, referenced, from, to, on_update, on_delete) = row?;
        match keys.last_mut() {
            Some((last, key)) if *last == id => {
                key.from.push(from);
                key.to.push(to);
            }
            _ => keys.push((
                id,
                ForeignKey {
                    referenced,
                    from: vec![from],
                    to: vec![to],
                    on_update,
                    on_delete,
                },
            )),
        }
    }
    Ok(keys.into_iter().map(|(_, key)| key).collect())
}

/// PostgreSQL's one-letter referential action code.
fn action_code(action: &str) -> &'static str {
    match action.to_ascii_uppercase().as_str() {
        "CASCADE" => "c",
        "SET NULL" => "n",
        "SET DEFAULT" => "d",
        "RESTRICT" => "r",
        _ => "a",
    }
}

fn action_clause(code: &str, event: &str) -> String {
    match code {
        "c" => format!(" ON {event} CASCADE"),
        "n" => format!(" ON {event} SET NULL"),
        "d" => format!(" ON {event} SET DEFAULT"),
        "r" => format!(" ON {event} RESTRICT"),
        _ => String::new(),
    }
}

struct SchemaObject {
    rowid: i64,
    kind: String,
    name: String,
    sql: Option<String>,
}

/// Every catalog row for the current schema of `conn`'s main database.
pub fn build(conn: &Connection) -> rusqlite::Result<CatalogRows> {
    let mut rows = CatalogRows::default();
    static_rows(&mut rows);
    let objects: Vec<SchemaObject> = {
        let mut statement = conn.prepare(
            "SELECT rowid, type, name, sql FROM main.sqlite_schema \
             WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
             AND name <> ?1 AND name NOT LIKE '\\_phalanx\\_%' ESCAPE '\\' ORDER BY rowid",
        )?;
        statement
            .query_map(params![META_TABLE], |row| {
                Ok(SchemaObject {
                    rowid: row.get(0)?,
                    kind: row.get(1)?,
                    name: row.get(2)?,
                    sql: row.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?
    };
    let oids: BTreeMap<String, i64> = objects
        .iter()
        .map(|o| (o.name.clone(), 16384 + 2 * o.rowid))
        .collect();
    // PostgreSQL enforces foreign keys with triggers on both tables, and psql shows a table's
    // foreign keys and references only when it has triggers.
    let mut with_triggers = std::collections::BTreeSet::new();
    for object in objects.iter().filter(|o| o.kind == "table") {
        for key in table_foreign_keys(conn, &object.name)? {
            with_triggers.insert(object.name.clone());
            with_triggers.insert(key.referenced);
        }
    }
    for object in &objects {
        let has_triggers = with_triggers.contains(&object.name);
        relation_rows(conn, &mut rows, object, &oids, has_triggers)?;
    }
    Ok(rows)
}

fn relation_rows(
    conn: &Connection,
    rows: &mut CatalogRows,
    object: &SchemaObject,
    oids: &BTreeMap<String, i64>,
    has_triggers: bool,
) -> rusqlite::Result<()> {
    let oid = 16384 + 2 * object.rowid;
    let is_view = object.kind == "view";
    let name = object.name.as_str();
    let columns = table_columns(conn, name)?;
    let declared = object
        .sql
        .as_deref()
        .map(declared_constraints)
        .unwrap_or_default();
    let indexes = if is_view {
        Vec::new()
    } else {
        table_indexes(conn, name, &columns)?
    };
    let foreign_keys = if is_view {
        Vec::new()
    } else {
        table_foreign_keys(conn, name)?
    };
    let column_number = |column: &str| -> i64 {
        columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(column))
            .map_or(0, |i| i as i64 + 1)
    };
    let mut constraint_oid = (1 << 24) + 1024 * object.rowid;
    let mut next_constraint = || {
        constraint_oid += 1;
        constraint_oid
    };

    // Columns and defaults.
    let pk_columns: Vec<&ColumnInfo> = {
        let mut pk: Vec<&ColumnInfo> = columns.iter().filter(|c| c.pk > 0).collect();
        pk.sort_by_key(|c| c.pk);
        pk
    };
    // A bigint or smallint key that is SQLite's rowid alias is declared INTEGER with its
    // PostgreSQL type in a comment.
    let marked_alias = object
        .sql
        .as_deref()
        .and_then(crate::storage::rowid_alias::marked_column);
    for (i, column) in columns.iter().enumerate() {
        let number = i as i64 + 1;
        let marked = marked_alias.as_ref().filter(|marked| {
            column.pk > 0
                && marked.column.eq_ignore_ascii_case(&column.name)
                && column.declared.eq_ignore_ascii_case("INTEGER")
        });
        let declared_type = marked.map_or(column.declared.as_str(), |marked| marked.declared);
        // A SERIAL's default, as PostgreSQL shows it (SQLite numbers the rowid alias itself).
        let serial_default = marked
            .filter(|marked| marked.serial)
            .map(|_| serial_default(name, &column.name));
        let (type_oid, typmod) = types::of_declared(declared_type);
        let ty = types::by_oid(i64::from(type_oid));
        let not_null = column.not_null || column.pk > 0;
        rows.push(
            "pg_catalog",
            "pg_attribute",
            vec![
                ("attrelid", int(oid)),
                ("attname", text(&column.name)),
                ("atttypid", int(type_oid.into())),
                ("attstattarget", int(-1)),
                ("attlen", int(ty.map_or(-1, |t| t.len.into()))),
                ("attnum", int(number)),
                ("atttypmod", int(typmod.into())),
                ("attnotnull", boolean(not_null)),
                (
                    "atthasdef",
                    boolean(column.default.is_some() || serial_default.is_some()),
                ),
                ("attislocal", boolean(true)),
                ("attalign", text("i")),
                ("attstorage", text("x")),
                (
                    "attcollation",
                    int(if ty.is_some_and(|t| t.collatable) {
                        DEFAULT_COLLATION
                    } else {
                        0
                    }),
                ),
            ],
        );
        let shown_default =
            serial_default.or_else(|| column.default.as_deref().map(display_default));
        if let Some(default) = &shown_default {
            rows.push(
                "pg_catalog",
                "pg_attrdef",
                vec![
                    ("oid", int(next_constraint())),
                    ("adrelid", int(oid)),
                    ("adnum", int(number)),
                    ("adbin", text(default)),
                ],
            );
        }
        let (data_type, length, precision, scale) = information_type(type_oid, typmod);
        rows.push(
            "information_schema",
            "columns",
            vec![
                ("table_catalog", text(DATABASE)),
                ("table_schema", text("public")),
                ("table_name", text(name)),
                ("column_name", text(&column.name)),
                ("ordinal_position", int(number)),
                ("column_default", shown_default.map_or(Value::Null, text)),
                ("is_nullable", text(if not_null { "NO" } else { "YES" })),
                ("data_type", text(data_type)),
                ("character_maximum_length", length.map_or(Value::Null, int)),
                ("numeric_precision", precision.map_or(Value::Null, int)),
                (
                    "numeric_precision_radix",
                    precision.map_or(Value::Null, |_| {
                        int(if type_oid == types::NUMERIC { 10 } else { 2 })
                    }),
                ),
                ("numeric_scale", scale.map_or(Value::Null, int)),
                ("udt_catalog", text(DATABASE)),
                ("udt_schema", text("pg_catalog")),
                ("udt_name", text(ty.map_or("text", |t| t.name))),
                ("is_identity", text("NO")),
                ("is_generated", text("NEVER")),
                ("is_updatable", text(if is_view { "NO" } else { "YES" })),
            ],
        );
    }

    // Indexes, and the constraints they carry.
    let mut index_count = 0;
    let mut constraint_rows: Vec<(i64, Row)> = Vec::new();
    let mut check_count = 0;
    let mut key_usage: Vec<(String, &'static str, Vec<String>)> = Vec::new();
    // A rowid table's INTEGER PRIMARY KEY has no index in SQLite; PostgreSQL would have one.
    let rowid_key = pk_columns.len() == 1
        && !indexes.iter().any(|i| i.origin == "pk")
        && pk_columns[0]
            .declared
            .trim()
            .eq_ignore_ascii_case("INTEGER");
    let mut all_indexes: Vec<(i64, IndexInfo)> = Vec::new();
    if rowid_key {
        all_indexes.push((
            oid + 1,
            IndexInfo {
                name: String::new(),
                unique: true,
                origin: "pk".into(),
                sql: None,
                rowid: 0,
                columns: vec![column_number(&pk_columns[0].name)],
                column_names: vec![pk_columns[0].name.clone()],
            },
        ));
    }
    for index in indexes {
        all_indexes.push((16384 + 2 * index.rowid, index));
    }
    let not_null_helpers = not_null_helpers(all_indexes.iter().map(|(_, i)| i));
    for (index_oid, index) in &all_indexes {
        let sql = index.sql.as_deref().unwrap_or("");
        if sql.contains("WHERE pg_not_null(") {
            continue;
        }
        if sql.contains("WHERE pg_check(") {
            // A CHECK added by ALTER TABLE: shown as the constraint it is.
            let expression = sql
                .split_once("WHERE pg_check(")
                .map(|(_, rest)| {
                    rest.rsplitn(3, ',')
                        .last()
                        .unwrap_or(rest)
                        .trim()
                        .to_owned()
                })
                .unwrap_or_default();
            check_count += 1;
            constraint_rows.push((
                next_constraint(),
                vec![
                    ("conname", text(&index.name)),
                    ("contype", text("c")),
                    ("phx_condef", text(format!("CHECK ({expression})"))),
                ],
            ));
            continue;
        }
        let primary = is_primary(index, &not_null_helpers);
        let display_name = key_display_name(name, &declared, index, primary);
        let column_list = index
            .column_names
            .iter()
            .map(|c| display_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let indexdef = format!(
            "CREATE {}INDEX {} ON public.{} USING btree ({column_list})",
            if index.unique { "UNIQUE " } else { "" },
            display_ident(&display_name),
            display_ident(name),
        );
        let constraint_kind = if primary {
            Some("p")
        } else if index.origin == "u" {
            Some("u")
        } else {
            None
        };
        rows.push(
            "pg_catalog",
            "pg_class",
            vec![
                ("oid", int(*index_oid)),
                ("relname", text(&display_name)),
                ("relnamespace", int(PUBLIC)),
                ("relowner", int(SUPERUSER)),
                ("relam", int(BTREE)),
                ("relpersistence", text("p")),
                ("relkind", text("i")),
                ("relnatts", int(index.columns.len() as i64)),
                ("relispopulated", boolean(true)),
                ("relreplident", text("n")),
            ],
        );
        let count = index.columns.len();
        rows.push(
            "pg_catalog",
            "pg_index",
            vec![
                ("indexrelid", int(*index_oid)),
                ("indrelid", int(oid)),
                ("indnatts", int(count as i64)),
                ("indnkeyatts", int(count as i64)),
                ("indisunique", boolean(index.unique)),
                ("indisprimary", boolean(primary)),
                ("indimmediate", boolean(true)),
                ("indisvalid", boolean(true)),
                ("indisready", boolean(true)),
                ("indislive", boolean(true)),
                ("indkey", json_array(&index.columns)),
                ("indcollation", json_array(&vec![0; count])),
                ("indclass", json_array(&vec![0; count])),
                ("indoption", json_array(&vec![0; count])),
                ("phx_indexdef", text(indexdef.clone())),
                ("phx_indexcols", json_array(&index.column_names)),
            ],
        );
        rows.push(
            "pg_catalog",
            "pg_indexes",
            vec![
                ("schemaname", text("public")),
                ("tablename", text(name)),
                ("indexname", text(&display_name)),
                ("indexdef", text(indexdef)),
            ],
        );
        index_count += 1;
        if let Some(kind) = constraint_kind {
            let definition = format!(
                "{} ({column_list})",
                if kind == "p" { "PRIMARY KEY" } else { "UNIQUE" }
            );
            constraint_rows.push((
                next_constraint(),
                vec![
                    ("conname", text(&display_name)),
                    ("contype", text(kind)),
                    ("conindid", int(*index_oid)),
                    ("conkey", json_array(&index.columns)),
                    ("phx_condef", text(definition)),
                ],
            ));
            key_usage.push((
                display_name.clone(),
                if kind == "p" { "PRIMARY KEY" } else { "UNIQUE" },
                index.column_names.clone(),
            ));
        }
    }

    for (i, key) in foreign_keys.iter().enumerate() {
        let referenced_oid = oids.get(&key.referenced).copied().unwrap_or(0);
        let to: Vec<String> = key
            .to
            .iter()
            .zip(&key.from)
            .map(|(to, from)| to.clone().unwrap_or_else(|| from.clone()))
            .collect();
        let constraint_name = declared
            .foreign_key_names
            .get(i)
            .and_then(|(n, _)| n.clone())
            .unwrap_or_else(|| generated_name(name, &key.from, "fkey"));
        let update = action_code(&key.on_update);
        let delete = action_code(&key.on_delete);
        let list = |names: &[String]| {
            names
                .iter()
                .map(|c| display_ident(c))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let definition = format!(
            "FOREIGN KEY ({}) REFERENCES {}({}){}{}",
            list(&key.from),
            display_ident(&key.referenced),
            list(&to),
            action_clause(update, "UPDATE"),
            action_clause(delete, "DELETE"),
        );
        let referenced_numbers: Vec<i64> = to
            .iter()
            .map(|c| {
                conn.query_row(
                    "SELECT cid + 1 FROM pragma_table_xinfo(?1, 'main') WHERE name = ?2",
                    params![key.referenced, c],
                    |row| row.get(0),
                )
                .unwrap_or(0)
            })
            .collect();
        constraint_rows.push((
            next_constraint(),
            vec![
                ("conname", text(&constraint_name)),
                ("contype", text("f")),
                ("confrelid", int(referenced_oid)),
                ("confupdtype", text(update)),
                ("confdeltype", text(delete)),
                ("confmatchtype", text("s")),
                (
                    "conkey",
                    json_array(
                        &key.from
                            .iter()
                            .map(|c| column_number(c))
                            .collect::<Vec<_>>(),
                    ),
                ),
                ("confkey", json_array(&referenced_numbers)),
                ("phx_condef", text(definition)),
            ],
        ));
        key_usage.push((constraint_name.clone(), "FOREIGN KEY", key.from.clone()));
        rows.push(
            "information_schema",
            "referential_constraints",
            vec![
                ("constraint_catalog", text(DATABASE)),
                ("constraint_schema", text("public")),
                ("constraint_name", text(constraint_name)),
                ("unique_constraint_catalog", text(DATABASE)),
                ("unique_constraint_schema", text("public")),
                ("match_option", text("NONE")),
                ("update_rule", text(key.on_update.to_ascii_uppercase())),
                ("delete_rule", text(key.on_delete.to_ascii_uppercase())),
            ],
        );
    }

    for (check_name, column, expression) in &declared.checks {
        let constraint_name = check_display_name(name, check_name.clone(), column.as_ref());
        check_count += 1;
        constraint_rows.push((
            next_constraint(),
            vec![
                ("conname", text(constraint_name)),
                ("contype", text("c")),
                (
                    "conkey",
                    json_array(&column.iter().map(|c| column_number(c)).collect::<Vec<_>>()),
                ),
                ("phx_condef", text(format!("CHECK ({expression})"))),
            ],
        ));
    }

    for (constraint_oid, mut row) in constraint_rows {
        let contype = row
            .iter()
            .find(|(c, _)| *c == "contype")
            .and_then(|(_, v)| match v {
                Value::Text(t) => Some(t.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let conname = row
            .iter()
            .find(|(c, _)| *c == "conname")
            .and_then(|(_, v)| match v {
                Value::Text(t) => Some(t.clone()),
                _ => None,
            })
            .unwrap_or_default();
        row.extend([
            ("oid", int(constraint_oid)),
            ("connamespace", int(PUBLIC)),
            ("convalidated", boolean(true)),
            ("conrelid", int(oid)),
            ("conislocal", boolean(true)),
        ]);
        rows.push("pg_catalog", "pg_constraint", row);
        let constraint_type = match contype.as_str() {
            "p" => "PRIMARY KEY",
            "u" => "UNIQUE",
            "f" => "FOREIGN KEY",
            _ => "CHECK",
        };
        rows.push(
            "information_schema",
            "table_constraints",
            vec![
                ("constraint_catalog", text(DATABASE)),
                ("constraint_schema", text("public")),
                ("constraint_name", text(conname)),
                ("table_catalog", text(DATABASE)),
                ("table_schema", text("public")),
                ("table_name", text(name)),
                ("constraint_type", text(constraint_type)),
                ("is_deferrable", text("NO")),
                ("initially_deferred", text("NO")),
                ("enforced", text("YES")),
            ],
        );
    }
    for (constraint_name, _, columns) in key_usage {
        for (position, column) in columns.iter().enumerate() {
            rows.push(
                "information_schema",
                "key_column_usage",
                vec![
                    ("constraint_catalog", text(DATABASE)),
                    ("constraint_schema", text("public")),
                    ("constraint_name", text(&constraint_name)),
                    ("table_catalog", text(DATABASE)),
                    ("table_schema", text("public")),
                    ("table_name", text(name)),
                    ("column_name", text(column)),
                    ("ordinal_position", int(position as i64 + 1)),
                ],
            );
        }
    }

    rows.push(
        "pg_catalog",
        "pg_class",
        vec![
            ("oid", int(oid)),
            ("relname", text(name)),
            ("relnamespace", int(PUBLIC)),
            ("relowner", int(SUPERUSER)),
            ("relam", int(if is_view { 0 } else { HEAP })),
            ("relpersistence", text("p")),
            ("relkind", text(if is_view { "v" } else { "r" })),
            ("relnatts", int(columns.len() as i64)),
            ("relchecks", int(check_count)),
            ("relhasindex", boolean(index_count > 0)),
            ("relhasrules", boolean(is_view)),
            ("relhastriggers", boolean(has_triggers)),
            ("relispopulated", boolean(true)),
            ("relreplident", text(if is_view { "n" } else { "d" })),
        ],
    );
    rows.push(
        "information_schema",
        "tables",
        vec![
            ("table_catalog", text(DATABASE)),
            ("table_schema", text("public")),
            ("table_name", text(name)),
            (
                "table_type",
                text(if is_view { "VIEW" } else { "BASE TABLE" }),
            ),
            (
                "is_insertable_into",
                text(if is_view { "NO" } else { "YES" }),
            ),
            ("is_typed", text("NO")),
        ],
    );
    if is_view {
        let definition = object
            .sql
            .as_deref()
            .and_then(|s| {
                let upper = s.to_ascii_uppercase();
                upper.find(" AS ").map(|at| s[at + 4..].trim().to_owned())
            })
            .unwrap_or_default();
        rows.push(
            "pg_catalog",
            "pg_views",
            vec![
                ("schemaname", text("public")),
                ("viewname", text(name)),
                ("viewowner", text("postgres")),
                ("definition", text(&definition)),
            ],
        );
        rows.push(
            "information_schema",
            "views",
            vec![
                ("table_catalog", text(DATABASE)),
                ("table_schema", text("public")),
                ("table_name", text(name)),
                ("view_definition", text(definition)),
                ("check_option", text("NONE")),
                ("is_updatable", text("NO")),
                ("is_insertable_into", text("NO")),
            ],
        );
    } else {
        rows.push(
            "pg_catalog",
            "pg_tables",
            vec![
                ("schemaname", text("public")),
                ("tablename", text(name)),
                ("tableowner", text("postgres")),
                ("hasindexes", boolean(index_count > 0)),
            ],
        );
    }
    Ok(())
}

/// `information_schema.columns`' type description: data_type, character length, numeric
/// precision and scale.
fn information_type(type_oid: u32, typmod: i32) -> (String, Option<i64>, Option<i64>, Option<i64>) {
    let ty = types::by_oid(i64::from(type_oid));
    let data_type = ty.map_or("text".to_owned(), |t| t.sql_name.to_owned());
    let modifier = i64::from(typmod) - 4;
    match type_oid {
        types::VARCHAR | types::BPCHAR => {
            (data_type, (typmod >= 4).then_some(modifier), None, None)
        }
        types::NUMERIC if typmod >= 4 => (
            data_type,
            None,
            Some((modifier >> 16) & 0xffff),
            Some(modifier & 0xffff),
        ),
        types::INT2 => (data_type, None, Some(16), Some(0)),
        types::INT4 => (data_type, None, Some(32), Some(0)),
        types::INT8 => (data_type, None, Some(64), Some(0)),
        700 => (data_type, None, Some(24), None),
        types::FLOAT8 => (data_type, None, Some(53), None),
        _ => (data_type, None, None, None),
    }
}

/// Rows that do not depend on the schema: namespaces, types, the database, the role, ...
fn static_rows(rows: &mut CatalogRows) {
    for (oid, name) in [
        (PG_CATALOG, "pg_catalog"),
        (PUBLIC, "public"),
        (INFORMATION_SCHEMA, "information_schema"),
        (99, "pg_toast"),
    ] {
        rows.push(
            "pg_catalog",
            "pg_namespace",
            vec![
                ("oid", int(oid)),
                ("nspname", text(name)),
                ("nspowner", int(SUPERUSER)),
            ],
        );
        if oid != 99 {
            rows.push(
                "information_schema",
                "schemata",
                vec![
                    ("catalog_name", text(DATABASE)),
                    ("schema_name", text(name)),
                    ("schema_owner", text("postgres")),
                ],
            );
        }
    }
    for ty in types::TYPES {
        rows.push(
            "pg_catalog",
            "pg_type",
            vec![
                ("oid", int(ty.oid.into())),
                ("typname", text(ty.name)),
                ("typnamespace", int(PG_CATALOG)),
                ("typowner", int(SUPERUSER)),
                ("typlen", int(ty.len.into())),
                ("typbyval", boolean((1..=8).contains(&ty.len))),
                ("typtype", text(if ty.category == 'P' { "p" } else { "b" })),
                ("typcategory", text(ty.category.to_string())),
                ("typisdefined", boolean(true)),
                ("typdelim", text(",")),
                ("typelem", int(ty.element.into())),
                ("typarray", int(ty.array.into())),
                (
                    "typinput",
                    text(format!("{}in", ty.name.trim_start_matches('_'))),
                ),
                (
                    "typoutput",
                    text(format!("{}out", ty.name.trim_start_matches('_'))),
                ),
                ("typalign", text("i")),
                ("typstorage", text(if ty.len == -1 { "x" } else { "p" })),
                ("typtypmod", int(-1)),
                (
                    "typcollation",
                    int(if ty.collatable { DEFAULT_COLLATION } else { 0 }),
                ),
            ],
        );
    }
    for (oid, name, kind) in [(HEAP, "heap", "t"), (BTREE, "btree", "i")] {
        rows.push(
            "pg_catalog",
            "pg_am",
            vec![
                ("oid", int(oid)),
                ("amname", text(name)),
                ("amhandler", text(format!("{name}handler"))),
                ("amtype", text(kind)),
            ],
        );
    }
    rows.push(
        "pg_catalog",
        "pg_database",
        vec![
            ("oid", int(5)),
            ("datname", text(DATABASE)),
            ("datdba", int(SUPERUSER)),
            ("encoding", int(6)),
            ("datlocprovider", text("c")),
            ("datallowconn", boolean(true)),
            ("datconnlimit", int(-1)),
            ("datcollate", text("C")),
            ("datctype", text("C")),
            ("dattablespace", int(1663)),
        ],
    );
    // Every role may do everything in Phalanx, so each is shown as a superuser.
    for (oid, role) in super::facts::roles() {
        rows.push(
            "pg_catalog",
            "pg_roles",
            vec![
                ("oid", int(oid)),
                ("rolname", text(&role)),
                ("rolsuper", boolean(true)),
                ("rolinherit", boolean(true)),
                ("rolcreaterole", boolean(true)),
                ("rolcreatedb", boolean(true)),
                ("rolcanlogin", boolean(true)),
                ("rolreplication", boolean(true)),
                ("rolconnlimit", int(-1)),
                ("rolpassword", text("********")),
                ("rolbypassrls", boolean(true)),
            ],
        );
        rows.push(
            "pg_catalog",
            "pg_user",
            vec![
                ("usename", text(&role)),
                ("usesysid", int(oid)),
                ("usecreatedb", boolean(true)),
                ("usesuper", boolean(true)),
                ("userepl", boolean(true)),
                ("usebypassrls", boolean(true)),
                ("passwd", text("********")),
            ],
        );
    }
    for setting in super::facts::settings() {
        rows.push(
            "pg_catalog",
            "pg_settings",
            vec![
                ("name", text(&setting.name)),
                ("setting", text(&setting.value)),
                ("category", text(setting.category)),
                ("short_desc", text(&setting.description)),
                ("context", text(setting.context)),
                ("vartype", text(setting.vartype())),
                ("source", text("default")),
                ("boot_val", text(&setting.value)),
                ("reset_val", text(&setting.value)),
                ("pending_restart", boolean(false)),
            ],
        );
    }
    for (oid, name, provider) in [(DEFAULT_COLLATION, "default", "d"), (950, "C", "c")] {
        rows.push(
            "pg_catalog",
            "pg_collation",
            vec![
                ("oid", int(oid)),
                ("collname", text(name)),
                ("collnamespace", int(PG_CATALOG)),
                ("collowner", int(SUPERUSER)),
                ("collprovider", text(provider)),
                ("collisdeterministic", boolean(true)),
                ("collencoding", int(-1)),
            ],
        );
    }
    for (oid, name) in [(1663, "pg_default"), (1664, "pg_global")] {
        rows.push(
            "pg_catalog",
            "pg_tablespace",
            vec![
                ("oid", int(oid)),
                ("spcname", text(name)),
                ("spcowner", int(SUPERUSER)),
            ],
        );
    }
    for table in tables::TABLES {
        let namespace = if table.schema == "pg_catalog" {
            PG_CATALOG
        } else {
            INFORMATION_SCHEMA
        };
        rows.push(
            "pg_catalog",
            "pg_class",
            vec![
                ("oid", int(table.oid.into())),
                ("relname", text(table.name)),
                ("relnamespace", int(namespace)),
                ("relowner", int(SUPERUSER)),
                ("relam", int(HEAP)),
                ("relpersistence", text("p")),
                ("relkind", text("r")),
                ("relnatts", int(table.columns.len() as i64)),
                ("relispopulated", boolean(true)),
                ("relreplident", text("n")),
            ],
        );
    }
}
