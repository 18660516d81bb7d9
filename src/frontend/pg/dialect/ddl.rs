//! DDL and the utility statements SQLite spells differently. Each function takes a statement
//! the expression pass ([`super::expr::Rewriter`]) already rewrote and returns the SQLite
//! statements that do the same, in order (they run as one transaction).
//!
//! - `CREATE TABLE`: PostgreSQL types become declared types ([`super::types`]); a
//!   `SERIAL`/`BIGSERIAL`/`SMALLSERIAL` or `GENERATED ... AS IDENTITY` column must be the
//!   table's only primary-key column and becomes `INTEGER PRIMARY KEY` (SQLite's rowid alias,
//!   which generates max(rowid)+1); anywhere else it is refused, since SQLite has no sequences.
//!   A `bigint` sole primary key becomes the rowid alias too. A bigint or smallint alias keeps
//!   its PostgreSQL type in a comment after `INTEGER` (`crate::storage::rowid_alias`).
//!   Primary-key columns get `NOT NULL` (SQLite would accept NULL in them); `DEFAULT f()` gets
//!   the parentheses SQLite wants; storage parameters (`WITH (fillfactor=…)`), `UNLOGGED` and
//!   `USING INDEX TABLESPACE` are ignored.
//! - `CREATE [UNIQUE] INDEX`: `USING btree|hash`, `CONCURRENTLY`, `INCLUDE`, operator classes
//!   and storage parameters dropped; a missing name gets PostgreSQL's (`t_a_idx`).
//! - `DROP TABLE|VIEW|INDEX a, b [CASCADE|RESTRICT]`: one `DROP` per name.
//! - `TRUNCATE [TABLE] a, b`: one `DELETE FROM` per table (tag `TRUNCATE TABLE`).
//! - `ALTER TABLE`: `ADD COLUMN`, `DROP COLUMN`, `RENAME`; `ADD PRIMARY KEY` / `ADD UNIQUE`
//!   become a unique index (`t_pkey`, `t_a_key`), and the primary key's NOT NULL a partial
//!   index whose condition `pg_not_null(...)` fails on a NULL (so creating it checks the
//!   existing rows, and it holds no entries); `ADD CHECK` likewise (`pg_check`). SQLite cannot
//!   add a foreign key to an existing table: refused.

use sqlparser::ast::{
    AlterTable, AlterTableOperation, CascadeOption, ColumnDef, ColumnOption, ColumnOptionDef,
    CreateIndex, CreateTable, CreateTableOptions, Expr, Ident, IndexColumn, IndexType, ObjectName,
    ObjectNamePart, ObjectType, RenameTableNameKind, TableConstraint, Truncate,
};

use super::TranslateError;
use super::expr::quoted;
use super::types::{PgType, declared_data_type, pg_type};
use crate::storage::rowid_alias;

fn unsupported(what: impl Into<String>) -> TranslateError {
    TranslateError::Unsupported(what.into())
}

/// The last part of a name, unquoted (for messages and generated names).
fn base_name(name: &ObjectName) -> String {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(ident)) => ident.value.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// The column an index column names, if it is a plain column.
fn column_name(column: &IndexColumn) -> Option<&Ident> {
    match &column.column.expr {
        Expr::Identifier(ident) => Some(ident),
        _ => None,
    }
}

/// Index columns as SQLite takes them: no NULLS FIRST/LAST, no operator class.
fn plain_index_columns(columns: &mut [IndexColumn]) {
    for column in columns {
        column.column.options.nulls_first = None;
        column.operator_class = None;
    }
}

fn simple_columns(columns: &[IndexColumn], what: &str) -> Result<Vec<Ident>, TranslateError> {
    columns
        .iter()
        .map(|c| {
            column_name(c)
                .cloned()
                .ok_or_else(|| unsupported(format!("{what} on an expression")))
        })
        .collect()
}

/// PostgreSQL's generated constraint and index names: `t_a_b_key`.
fn generated_name(table: &str, columns: &[Ident], suffix: &str) -> Ident {
    let mut name = table.to_owned();
    for column in columns {
        name.push('_');
        name.push_str(&column.value);
    }
    name.push('_');
    name.push_str(suffix);
    // PostgreSQL truncates names to 63 bytes.
    while name.len() > 63 {
        name.pop();
    }
    Ident::with_quote('"', name)
}

/// `DEFAULT x` for SQLite: anything but a literal needs parentheses.
fn parenthesize_default(expr: &mut Expr) {
    let is_literal = |e: &Expr| matches!(e, Expr::Value(v) if !matches!(v.value, sqlparser::ast::Value::Placeholder(_)));
    let literal = match &*expr {
        Expr::UnaryOp { expr: inner, .. } => is_literal(inner),
        other => is_literal(other),
    };
    if !literal && !matches!(expr, Expr::Nested(_)) {
        let inner = std::mem::replace(expr, Expr::value(sqlparser::ast::Value::Null));
        *expr = Expr::Nested(Box::new(inner));
    }
}

fn is_identity(option: &ColumnOption) -> bool {
    matches!(
        option,
        ColumnOption::Generated {
            generation_expr: None,
            ..
        }
    )
}

/// Options every column definition gets the same way (CREATE TABLE and ADD COLUMN).
fn translate_column_options(column: &mut ColumnDef) -> Result<(), TranslateError> {
    for option in &mut column.options {
        match &mut option.option {
            ColumnOption::Default(expr) => parenthesize_default(expr),
            ColumnOption::Null
            | ColumnOption::NotNull
            | ColumnOption::Check(_)
            | ColumnOption::ForeignKey(_) => {}
            ColumnOption::PrimaryKey(key) => {
                if key.characteristics.is_some() {
                    return Err(unsupported("DEFERRABLE primary keys"));
                }
            }
            ColumnOption::Unique(unique) => {
                if unique.characteristics.is_some() {
                    return Err(unsupported("DEFERRABLE unique constraints"));
                }
                if unique.nulls_distinct == sqlparser::ast::NullsDistinctOption::NotDistinct {
                    return Err(unsupported("UNIQUE NULLS NOT DISTINCT"));
                }
            }
            ColumnOption::Generated {
                generation_expr: Some(_),
                ..
            } => {}
            ColumnOption::Generated { .. } => {}
            ColumnOption::Collation(name) => {
                let collation = name.to_string().trim_matches('"').to_ascii_lowercase();
                if !matches!(collation.as_str(), "c" | "posix" | "default" | "ucs_basic") {
                    return Err(unsupported(format!("the collation {name}")));
                }
                *name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new("BINARY"))]);
            }
            other => return Err(unsupported(format!("the column option {other}"))),
        }
    }
    Ok(())
}

pub fn create_table(mut table: CreateTable) -> Result<Vec<String>, TranslateError> {
    if table.like.is_some() || table.clone.is_some() {
        return Err(unsupported("CREATE TABLE ... LIKE"));
    }
    if table.inherits.is_some() || table.partition_by.is_some() || table.partition_of.is_some() {
        return Err(unsupported("table inheritance and partitioning"));
    }
    if table.on_commit.is_some() {
        return Err(unsupported("ON COMMIT"));
    }
    if table.or_replace {
        return Err(unsupported("CREATE OR REPLACE TABLE"));
    }
    // Storage parameters (fillfactor, autovacuum_*) and UNLOGGED only tune PostgreSQL's storage.
    table.unlogged = false;
    table.table_options = CreateTableOptions::None;

    let name = base_name(&table.name);
    // A table-level PRIMARY KEY (a, ...): its columns, if plain.
    let mut table_key: Option<Vec<String>> = None;
    for constraint in &mut table.constraints {
        match constraint {
            TableConstraint::PrimaryKey(key) => {
                if key.characteristics.is_some() {
                    return Err(unsupported("DEFERRABLE primary keys"));
                }
                key.index_name = None;
                key.index_type = None;
                key.include.clear();
                key.index_options.clear();
                plain_index_columns(&mut key.columns);
                table_key = Some(
                    simple_columns(&key.columns, "a primary key")?
                        .into_iter()
                        .map(|c| c.value.to_ascii_lowercase())
                        .collect(),
                );
            }
            TableConstraint::Unique(unique) => {
                if unique.characteristics.is_some() {
                    return Err(unsupported("DEFERRABLE unique constraints"));
                }
                if unique.nulls_distinct == sqlparser::ast::NullsDistinctOption::NotDistinct {
                    return Err(unsupported("UNIQUE NULLS NOT DISTINCT"));
                }
                unique.index_type = None;
                unique.include.clear();
                unique.index_options.clear();
                plain_index_columns(&mut unique.columns);
            }
            TableConstraint::ForeignKey(_) | TableConstraint::Check(_) => {}
            other => return Err(unsupported(format!("the table constraint {other}"))),
        }
    }

    let mut key_moved_to_column = false;
    for column in &mut table.columns {
        let pg = pg_type(&column.data_type)?;
        let lower = column.name.value.to_ascii_lowercase();
        let column_key = column
            .options
            .iter()
            .any(|o| matches!(o.option, ColumnOption::PrimaryKey(_)));
        let in_table_key = table_key.as_ref().is_some_and(|k| k.contains(&lower));
        let sole_key = column_key || table_key.as_deref() == Some(std::slice::from_ref(&lower));
        let generated = matches!(pg, PgType::Serial { .. })
            || column.options.iter().any(|o| is_identity(&o.option));
        // A bigint key is a rowid alias too, like an integer one: no hidden rowid beside it.
        let bigint_key = sole_key && pg.declared() == "BIGINT";
        translate_column_options(column)?;
        if generated && !sole_key {
            return Err(unsupported(format!(
                "SERIAL or IDENTITY column \"{}\" that is not the table's only primary-key \
                 column (SQLite generates values only for an INTEGER PRIMARY KEY)",
                column.name.value
            )));
        }
        if generated || bigint_key {
            // SQLite's rowid alias: exactly `INTEGER PRIMARY KEY`, the PostgreSQL type kept
            // in a comment (`storage::rowid_alias`).
            let serial = matches!(pg, PgType::Serial { .. });
            column.data_type = declared_data_type(&rowid_alias::declaration(pg.declared(), serial));
            column.options.retain(|o| !is_identity(&o.option));
            if !column_key {
                column.options.push(ColumnOptionDef {
                    name: None,
                    option: ColumnOption::PrimaryKey(empty_primary_key()),
                });
                key_moved_to_column = true;
            }
        } else {
            column.data_type = declared_data_type(pg.declared());
        }
        let not_null = column
            .options
            .iter()
            .any(|o| matches!(o.option, ColumnOption::NotNull));
        if !generated && (column_key || in_table_key) && !not_null {
            column.options.push(ColumnOptionDef {
                name: None,
                option: ColumnOption::NotNull,
            });
        }
    }
    if key_moved_to_column {
        table
            .constraints
            .retain(|c| !matches!(c, TableConstraint::PrimaryKey(_)));
    }
    if table.columns.is_empty() && table.query.is_none() {
        return Err(unsupported(format!("a table without columns (\"{name}\")")));
    }
    Ok(vec![table.to_string()])
}

fn empty_primary_key() -> sqlparser::ast::PrimaryKeyConstraint {
    sqlparser::ast::PrimaryKeyConstraint {
        name: None,
        index_name: None,
        index_type: None,
        columns: Vec::new(),
        include: Vec::new(),
        index_options: Vec::new(),
        characteristics: None,
    }
}

pub fn create_index(mut index: CreateIndex) -> Result<Vec<String>, TranslateError> {
    match &index.using {
        None | Some(IndexType::BTree) | Some(IndexType::Hash) => index.using = None,
        Some(other) => return Err(unsupported(format!("{other} indexes"))),
    }
    if index.nulls_distinct == Some(false) {
        return Err(unsupported("UNIQUE NULLS NOT DISTINCT"));
    }
    index.concurrently = false;
    index.include.clear();
    index.with.clear();
    index.index_options.clear();
    index.alter_options.clear();
    index.nulls_distinct = None;
    plain_index_columns(&mut index.columns);
    if let Some(name) = &mut index.name {
        super::expr::strip_schema_of(name)?;
    } else {
        let table = base_name(&index.table_name);
        let columns: Vec<Ident> = index
            .columns
            .iter()
            .map(|c| {
                column_name(c)
                    .cloned()
                    .unwrap_or_else(|| Ident::new("expr"))
            })
            .collect();
        index.name = Some(ObjectName(vec![ObjectNamePart::Identifier(
            generated_name(&table, &columns, "idx"),
        )]));
    }
    Ok(vec![index.to_string()])
}

pub fn drop(
    object_type: ObjectType,
    if_exists: bool,
    mut names: Vec<ObjectName>,
) -> Result<Vec<String>, TranslateError> {
    let keyword = match object_type {
        ObjectType::Table => "TABLE",
        ObjectType::View => "VIEW",
        ObjectType::Index => "INDEX",
        other => return Err(unsupported(format!("DROP {other}"))),
    };
    let if_exists = if if_exists { " IF EXISTS" } else { "" };
    names
        .iter_mut()
        .map(|name| {
            super::expr::strip_schema_of(name)?;
            Ok(format!("DROP {keyword}{if_exists} {name}"))
        })
        .collect()
}

pub fn truncate(truncate: Truncate) -> Result<Vec<String>, TranslateError> {
    if matches!(truncate.cascade, Some(CascadeOption::Cascade)) {
        return Err(unsupported("TRUNCATE ... CASCADE"));
    }
    if truncate.partitions.is_some() {
        return Err(unsupported("TRUNCATE ... PARTITION"));
    }
    truncate
        .table_names
        .into_iter()
        .map(|mut target| {
            super::expr::strip_schema_of(&mut target.name)?;
            Ok(format!("DELETE FROM {}", target.name))
        })
        .collect()
}

pub fn alter_table(alter: AlterTable) -> Result<Vec<String>, TranslateError> {
    if alter.if_exists {
        return Err(unsupported("ALTER TABLE IF EXISTS"));
    }
    let table = alter.name.to_string();
    let table_name = base_name(&alter.name);
    let mut statements = Vec::new();
    for operation in alter.operations {
        match operation {
            AlterTableOperation::AddColumn {
                if_not_exists,
                mut column_def,
                ..
            } => {
                if if_not_exists {
                    return Err(unsupported("ADD COLUMN IF NOT EXISTS"));
                }
                let pg = pg_type(&column_def.data_type)?;
                if matches!(pg, PgType::Serial { .. })
                    || column_def.options.iter().any(|o| is_identity(&o.option))
                {
                    return Err(unsupported("adding a SERIAL or IDENTITY column"));
                }
                column_def.data_type = declared_data_type(pg.declared());
                translate_column_options(&mut column_def)?;
                statements.push(format!("ALTER TABLE {table} ADD COLUMN {column_def}"));
            }
            AlterTableOperation::AddConstraint { constraint, .. } => {
                statements.extend(add_constraint(&table, &table_name, constraint)?);
            }
            AlterTableOperation::DropColumn {
                column_names,
                if_exists,
                ..
            } => {
                if if_exists {
                    return Err(unsupported("DROP COLUMN IF EXISTS"));
                }
                for column in column_names {
                    statements.push(format!("ALTER TABLE {table} DROP COLUMN {column}"));
                }
            }
            AlterTableOperation::DropConstraint {
                if_exists, name, ..
            } => {
                // Constraints added with ALTER TABLE are indexes of the same name.
                let if_exists = if if_exists { " IF EXISTS" } else { "" };
                statements.push(format!("DROP INDEX{if_exists} {}", quoted(&name)));
                let not_null = Ident::with_quote('"', format!("{}_not_null", name.value));
                statements.push(format!("DROP INDEX IF EXISTS {}", quoted(&not_null)));
            }
            AlterTableOperation::RenameColumn {
                old_column_name,
                new_column_name,
            } => statements.push(format!(
                "ALTER TABLE {table} RENAME COLUMN {old_column_name} TO {new_column_name}"
            )),
            AlterTableOperation::RenameTable { table_name } => {
                let (RenameTableNameKind::To(mut new_name) | RenameTableNameKind::As(mut new_name)) =
                    table_name;
                super::expr::strip_schema_of(&mut new_name)?;
                statements.push(format!("ALTER TABLE {table} RENAME TO {new_name}"));
            }
            // Ownership means nothing here: every user may do everything.
            AlterTableOperation::OwnerTo { .. } => {}
            other => return Err(unsupported(format!("ALTER TABLE ... {other}"))),
        }
    }
    Ok(statements)
}

/// A constraint added to an existing table, as indexes (see the module doc).
fn add_constraint(
    table: &str,
    table_name: &str,
    constraint: TableConstraint,
) -> Result<Vec<String>, TranslateError> {
    let literal = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let column_list = |columns: &[Ident]| columns.iter().map(quoted).collect::<Vec<_>>().join(", ");
    match constraint {
        TableConstraint::PrimaryKey(key) => {
            if key.characteristics.is_some() {
                return Err(unsupported("DEFERRABLE primary keys"));
            }
            let columns = simple_columns(&key.columns, "a primary key")?;
            let name = key
                .name
                .map(|n| Ident::with_quote('"', n.value))
                .unwrap_or_else(|| generated_name(table_name, &[], "pkey"));
            let not_null_name = Ident::with_quote('"', format!("{}_not_null", name.value));
            let checked: Vec<String> = columns
                .iter()
                .map(|c| format!("{}, {}", literal(&c.value), quoted(c)))
                .collect();
            Ok(vec![
                format!(
                    "CREATE UNIQUE INDEX {} ON {table} ({})",
                    quoted(&name),
                    column_list(&columns)
                ),
                format!(
                    "CREATE INDEX {} ON {table} ({}) WHERE pg_not_null({}, {})",
                    quoted(&not_null_name),
                    quoted(&columns[0]),
                    literal(table_name),
                    checked.join(", ")
                ),
            ])
        }
        TableConstraint::Unique(unique) => {
            if unique.characteristics.is_some() {
                return Err(unsupported("DEFERRABLE unique constraints"));
            }
            if unique.nulls_distinct == sqlparser::ast::NullsDistinctOption::NotDistinct {
                return Err(unsupported("UNIQUE NULLS NOT DISTINCT"));
            }
            let columns = simple_columns(&unique.columns, "a unique constraint")?;
            let name = unique
                .name
                .map(|n| Ident::with_quote('"', n.value))
                .unwrap_or_else(|| generated_name(table_name, &columns, "key"));
            Ok(vec![format!(
                "CREATE UNIQUE INDEX {} ON {table} ({})",
                quoted(&name),
                column_list(&columns)
            )])
        }
        TableConstraint::Check(check) => {
            let mut columns = Vec::new();
            first_column(&check.expr, &mut columns);
            let Some(first) = columns.into_iter().next() else {
                return Err(unsupported("a CHECK constraint that names no column"));
            };
            let name = check
                .name
                .map(|n| Ident::with_quote('"', n.value))
                .unwrap_or_else(|| {
                    generated_name(table_name, std::slice::from_ref(&first), "check")
                });
            Ok(vec![format!(
                "CREATE INDEX {} ON {table} ({}) WHERE pg_check({}, {}, {})",
                quoted(&name),
                quoted(&first),
                check.expr,
                literal(&name.value),
                literal(table_name)
            )])
        }
        TableConstraint::ForeignKey(_) => Err(unsupported(
            "ALTER TABLE ... ADD FOREIGN KEY (SQLite cannot add a foreign key to an existing \
             table; declare it in CREATE TABLE)",
        )),
        other => Err(unsupported(format!("ALTER TABLE ... ADD {other}"))),
    }
}

/// The first plain column an expression names.
fn first_column(expr: &Expr, found: &mut Vec<Ident>) {
    use sqlparser::ast::Visit;
    struct Finder<'a>(&'a mut Vec<Ident>);
    impl sqlparser::ast::Visitor for Finder<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> std::ops::ControlFlow<()> {
            if let Expr::Identifier(ident) = expr {
                self.0.push(ident.clone());
                return std::ops::ControlFlow::Break(());
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = expr.visit(&mut Finder(found));
}
