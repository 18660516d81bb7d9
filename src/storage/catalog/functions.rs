//! SQL functions that catalog queries call, registered on every connection with the catalog
//! attached. Names are PostgreSQL's (the translator drops the `pg_catalog.` qualifier).
//!
//! | function | answer here |
//! |---|---|
//! | `format_type(oid, typmod)` | the type's SQL name with modifiers (`numeric(10,2)`) |
//! | `pg_get_userbyid(oid)` | `postgres` for the one role |
//! | `pg_table_is_visible(oid)` | true but for `information_schema` tables (not on the search path) |
//! | the other `*_is_visible` | true: `public` and `pg_catalog` are always on the path |
//! | `pg_get_expr(text, oid [, pretty])` | the stored expression text itself |
//! | `pg_encoding_to_char(n)` | `UTF8` |
//! | `array_to_string(array, sep [, null])` | joins a JSON array (how the catalog stores arrays) |
//! | `array_upper(array, 1)`, `array_length(array, 1)` | from the JSON array |
//! | `has_*_privilege(...)` | true: every user may do everything |
//! | `obj_description`, `col_description`, `shobj_description`, `pg_get_triggerdef`, `pg_get_statisticsobjdef_columns`, `pg_get_serial_sequence` | NULL: no comments, triggers, statistics objects or sequences |
//! | `pg_relation_is_publishable(oid)` | false: no publications |
//! | `phx_regclass(x)`, `phx_regclass_name(x)` | `x::regclass` as an OID (a name is looked up in `pg_class`) and as the name it shows |
//! | `phx_regtype(x)`, `phx_regtype_name(x)`, `phx_regnamespace_name(x)` | the same for `regtype` and `regnamespace` |
//! | `pg_get_constraintdef`, `pg_get_indexdef`, `pg_get_viewdef` | the definition text the catalog build stored |
//! | `current_setting(name)` | the few settings catalog queries ask for |
//! | `pg_regex(text, pattern, case_insensitive)` | PostgreSQL's `~` / `~*` (the `regex` crate's syntax, which covers the patterns psql and drivers send) |

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, Error};

use super::types;

/// Registers every catalog function on `conn`.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("format_type", 2, flags, |ctx| {
        let oid: Option<i64> = ctx.get(0)?;
        let typmod: Option<i64> = ctx.get(1)?;
        Ok(oid.map(|oid| types::format_type(oid, typmod.unwrap_or(-1))))
    })?;
    conn.create_scalar_function("pg_get_userbyid", 1, flags, |ctx| {
        let oid: Option<i64> = ctx.get(0)?;
        Ok(oid.map(|oid| {
            if oid == super::build::SUPERUSER {
                "postgres".to_owned()
            } else {
                format!("unknown (OID={oid})")
            }
        }))
    })?;
    // Visible means on the search path: `public` and `pg_catalog`, not `information_schema`
    // (whose tables have OIDs 13100 and up, `storage::catalog::tables`).
    conn.create_scalar_function("pg_table_is_visible", 1, flags, |ctx| {
        Ok(ctx
            .get::<Option<i64>>(0)?
            .map(|oid| !(13100..13200).contains(&oid)))
    })?;
    for name in [
        "pg_type_is_visible",
        "pg_function_is_visible",
        "pg_collation_is_visible",
        "pg_opclass_is_visible",
        "pg_conversion_is_visible",
        "pg_ts_config_is_visible",
    ] {
        conn.create_scalar_function(name, 1, flags, |_| Ok(true))?;
    }
    for arguments in [2, 3] {
        conn.create_scalar_function("pg_get_expr", arguments, flags, |ctx| {
            ctx.get::<Option<String>>(0)
        })?;
    }
    conn.create_scalar_function("pg_encoding_to_char", 1, flags, |ctx| {
        Ok(match ctx.get::<Option<i64>>(0)? {
            Some(6) => "UTF8",
            Some(0) => "SQL_ASCII",
            _ => "",
        })
    })?;
    for arguments in [2, 3] {
        conn.create_scalar_function("array_to_string", arguments, flags, array_to_string)?;
    }
    conn.create_scalar_function("array_upper", 2, flags, |ctx| {
        Ok(json_array_len(ctx)?.filter(|n| *n > 0))
    })?;
    conn.create_scalar_function("array_length", 2, flags, |ctx| {
        Ok(json_array_len(ctx)?.filter(|n| *n > 0))
    })?;
    for name in [
        "has_table_privilege",
        "has_schema_privilege",
        "has_database_privilege",
        "has_column_privilege",
        "has_function_privilege",
        "has_sequence_privilege",
        "has_any_column_privilege",
        "pg_has_role",
    ] {
        conn.create_scalar_function(name, -1, flags, |_| Ok(true))?;
    }
    for name in [
        "obj_description",
        "col_description",
        "shobj_description",
        "pg_get_triggerdef",
        "pg_get_statisticsobjdef_columns",
        "pg_get_serial_sequence",
        "pg_get_function_result",
        "pg_get_function_arguments",
    ] {
        conn.create_scalar_function(name, -1, flags, |_| Ok(Value::Null))?;
    }
    conn.create_scalar_function("pg_relation_is_publishable", 1, flags, |_| Ok(false))?;
    conn.create_scalar_function("pg_regex", 3, flags, regex_match)?;
    register_lookups(conn)
}

fn json_array_len(ctx: &Context<'_>) -> rusqlite::Result<Option<i64>> {
    let Some(text) = ctx.get::<Option<String>>(0)? else {
        return Ok(None);
    };
    Ok(serde_json::from_str::<Vec<serde_json::Value>>(&text)
        .ok()
        .map(|items| items.len() as i64))
}

fn array_to_string(ctx: &Context<'_>) -> rusqlite::Result<Option<String>> {
    let Some(text) = ctx.get::<Option<String>>(0)? else {
        return Ok(None);
    };
    let separator: String = ctx.get::<Option<String>>(1)?.unwrap_or_default();
    let null_text: Option<String> = if ctx.len() > 2 { ctx.get(2)? } else { None };
    let items: Vec<serde_json::Value> = serde_json::from_str(&text)
        .map_err(|e| Error::UserFunctionError(format!("malformed array literal: {e}").into()))?;
    let parts: Vec<String> = items
        .into_iter()
        .filter_map(|item| match item {
            serde_json::Value::Null => null_text.clone(),
            serde_json::Value::String(s) => Some(s),
            other => Some(other.to_string()),
        })
        .collect();
    Ok(Some(parts.join(&separator)))
}

fn regex_match(ctx: &Context<'_>) -> rusqlite::Result<Option<bool>> {
    let subject = match ctx.get_raw(0) {
        ValueRef::Null => return Ok(None),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Blob(b) => String::from_utf8_lossy(b).into_owned(),
    };
    let Some(pattern) = ctx.get::<Option<String>>(1)? else {
        return Ok(None);
    };
    let case_insensitive: bool = ctx.get(2)?;
    // Compiled once per statement for a constant pattern (SQLite keeps auxiliary data).
    let regex = ctx.get_or_create_aux(1, |_| -> Result<regex::Regex, String> {
        regex::RegexBuilder::new(&pattern)
            .case_insensitive(case_insensitive)
            .build()
            .map_err(|e| format!("invalid regular expression: {e}"))
    })?;
    Ok(Some(regex.is_match(&subject)))
}

/// Runs `query` with one parameter on the connection the function was called on.
fn lookup<T: rusqlite::types::FromSql>(
    ctx: &Context<'_>,
    query: &str,
    parameter: Value,
) -> rusqlite::Result<Option<T>> {
    // SAFETY: the reference lives only during this call, on the thread SQLite called the
    // function on; it is never stored or sent elsewhere (rusqlite's reason for `unsafe`).
    let conn = unsafe { ctx.get_connection()? };
    let mut statement = conn.prepare_cached(query)?;
    let mut rows = statement.query([parameter])?;
    match rows.next()? {
        Some(row) => row.get(0),
        None => Ok(None),
    }
}

fn user_error(code: &'static str, message: String) -> Error {
    Error::UserFunctionError(Box::new(crate::storage::pg_functions::PgValueError {
        code,
        message,
    }))
}

/// `x::regclass`: an OID stays itself; a name (`t`, `public.t`, `"T"`) is looked up.
fn regclass_oid(ctx: &Context<'_>) -> rusqlite::Result<Option<i64>> {
    let trimmed = match oid_or_name(ctx) {
        None => return Ok(None),
        Some(Ok(oid)) => return Ok(Some(oid)),
        Some(Err(name)) => name,
    };
    let trimmed = trimmed.as_str();
    // Every relation is in `public` or a catalog schema, so a schema part only qualifies.
    let relation = match trimmed.rsplit_once('.') {
        Some((_, relation)) => unquote(relation),
        None => unquote(trimmed),
    };
    let found: Option<i64> = lookup(
        ctx,
        "SELECT c.oid FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n \
         ON n.oid = c.relnamespace WHERE c.relname = ?1 \
         ORDER BY n.nspname = 'pg_catalog' DESC LIMIT 1",
        Value::Text(relation.clone()),
    )?;
    found
        .map(Some)
        .ok_or_else(|| user_error("42P01", format!("relation \"{trimmed}\" does not exist")))
}

/// A `reg*` cast's input: an OID (`Ok`), or a name to look up (`Err`); `None` for NULL.
fn oid_or_name(ctx: &Context<'_>) -> Option<Result<i64, String>> {
    let name = match ctx.get_raw(0) {
        ValueRef::Null => return None,
        ValueRef::Integer(oid) => return Some(Ok(oid)),
        ValueRef::Real(f) => return Some(Ok(f as i64)),
        ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
    };
    Some(
        name.trim()
            .parse::<i64>()
            .map_err(|_| name.trim().to_owned()),
    )
}

/// `x::regtype`: an OID stays itself; a type name is looked up.
fn regtype_oid(ctx: &Context<'_>) -> rusqlite::Result<Option<i64>> {
    match oid_or_name(ctx) {
        None => Ok(None),
        Some(Ok(oid)) => Ok(Some(oid)),
        Some(Err(name)) => match types::by_name(&name) {
            Some(ty) => Ok(Some(i64::from(ty.oid))),
            None => Err(user_error(
                "42704",
                format!("type \"{name}\" does not exist"),
            )),
        },
    }
}

/// `x::regnamespace`: an OID stays itself; a schema name is looked up.
fn regnamespace_oid(ctx: &Context<'_>) -> rusqlite::Result<Option<i64>> {
    let name = match oid_or_name(ctx) {
        None => return Ok(None),
        Some(Ok(oid)) => return Ok(Some(oid)),
        Some(Err(name)) => name,
    };
    let found: Option<i64> = lookup(
        ctx,
        "SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = ?1",
        Value::Text(unquote(&name)),
    )?;
    found
        .map(Some)
        .ok_or_else(|| user_error("3F000", format!("schema \"{name}\" does not exist")))
}

/// An identifier as PostgreSQL reads it: quoted keeps its case, unquoted folds to lower.
fn unquote(name: &str) -> String {
    let name = name.trim();
    match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => name.to_ascii_lowercase(),
    }
}

/// Registers the functions that look rows up in the catalog (not deterministic: the answer
/// depends on the schema).
pub fn register_lookups(conn: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8;
    conn.create_scalar_function("phx_regclass", 1, flags, regclass_oid)?;
    conn.create_scalar_function("phx_regclass_name", 1, flags, |ctx| {
        let Some(oid) = regclass_oid(ctx)? else {
            return Ok(None);
        };
        let name: Option<String> = lookup(
            ctx,
            "SELECT relname FROM pg_catalog.pg_class WHERE oid = ?1",
            Value::Integer(oid),
        )?;
        Ok(Some(name.unwrap_or_else(|| oid.to_string())))
    })?;
    conn.create_scalar_function("phx_regtype", 1, flags, regtype_oid)?;
    conn.create_scalar_function("phx_regtype_name", 1, flags, |ctx| {
        Ok(ctx
            .get::<Option<i64>>(0)?
            .map(|oid| types::format_type(oid, -1)))
    })?;
    conn.create_scalar_function("phx_regnamespace", 1, flags, regnamespace_oid)?;
    // `to_regclass(name)` and kin: NULL where the cast would fail.
    for (name, strict) in [
        (
            "phx_to_regclass",
            regclass_oid as fn(&Context<'_>) -> rusqlite::Result<Option<i64>>,
        ),
        ("phx_to_regtype", regtype_oid),
        ("phx_to_regnamespace", regnamespace_oid),
    ] {
        conn.create_scalar_function(name, 1, flags, move |ctx| match strict(ctx) {
            Err(Error::UserFunctionError(_)) => Ok(None),
            other => other,
        })?;
    }
    conn.create_scalar_function("phx_regnamespace_name", 1, flags, |ctx| {
        let Some(oid) = ctx.get::<Option<i64>>(0)? else {
            return Ok(None);
        };
        let name: Option<String> = lookup(
            ctx,
            "SELECT nspname FROM pg_catalog.pg_namespace WHERE oid = ?1",
            Value::Integer(oid),
        )?;
        Ok(Some(name.unwrap_or_else(|| oid.to_string())))
    })?;
    for arguments in [1, 2] {
        conn.create_scalar_function("pg_get_constraintdef", arguments, flags, |ctx| {
            let Some(oid) = ctx.get::<Option<i64>>(0)? else {
                return Ok(None);
            };
            lookup::<String>(
                ctx,
                "SELECT phx_condef FROM pg_catalog.pg_constraint WHERE oid = ?1",
                Value::Integer(oid),
            )
        })?;
        conn.create_scalar_function("pg_get_viewdef", arguments, flags, |ctx| {
            let Some(oid) = ctx.get::<Option<i64>>(0)? else {
                return Ok(None);
            };
            lookup::<String>(
                ctx,
                "SELECT v.definition FROM pg_catalog.pg_views AS v \
                 JOIN pg_catalog.pg_class AS c ON c.relname = v.viewname WHERE c.oid = ?1",
                Value::Integer(oid),
            )
        })?;
    }
    for arguments in [1, 3] {
        conn.create_scalar_function("pg_get_indexdef", arguments, flags, |ctx| {
            let Some(oid) = ctx.get::<Option<i64>>(0)? else {
                return Ok(None);
            };
            let column: i64 = if ctx.len() > 1 {
                ctx.get::<Option<i64>>(1)?.unwrap_or(0)
            } else {
                0
            };
            let (definition, columns): (Option<String>, Option<String>) = {
                // SAFETY: as in `lookup`.
                let conn = unsafe { ctx.get_connection()? };
                let mut statement = conn.prepare_cached(
                    "SELECT phx_indexdef, phx_indexcols FROM pg_catalog.pg_index \
                     WHERE indexrelid = ?1",
                )?;
                let mut rows = statement.query([oid])?;
                match rows.next()? {
                    Some(row) => (row.get(0)?, row.get(1)?),
                    None => (None, None),
                }
            };
            if column == 0 {
                return Ok(definition);
            }
            let columns: Vec<String> = columns
                .and_then(|c| serde_json::from_str(&c).ok())
                .unwrap_or_default();
            Ok(usize::try_from(column - 1)
                .ok()
                .and_then(|i| columns.get(i).cloned()))
        })?;
    }
    conn.create_scalar_function("current_setting", -1, flags, |ctx| {
        let name: String = ctx.get(0)?;
        let missing_ok = ctx.len() > 1 && ctx.get::<Option<bool>>(1)?.unwrap_or(false);
        match name.to_ascii_lowercase().as_str() {
            "default_table_access_method" => Ok(Some("heap".to_owned())),
            "server_version_num" => Ok(Some("150000".to_owned())),
            "server_encoding" | "client_encoding" => Ok(Some("UTF8".to_owned())),
            "search_path" => Ok(Some("\"$user\", public".to_owned())),
            "standard_conforming_strings" => Ok(Some("on".to_owned())),
            _ if missing_ok => Ok(None),
            other => Err(user_error(
                "42704",
                format!("unrecognized configuration parameter \"{other}\""),
            )),
        }
    })?;
    Ok(())
}
