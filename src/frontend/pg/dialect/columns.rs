//! Result columns as PostgreSQL names and types them. SQLite names an expression column after
//! its text (`count(*)`), PostgreSQL after its function or cast (`count`, `int4`) or
//! `?column?`; clients that read columns by name need PostgreSQL's. And SQLite knows no
//! declared type for an expression, where PostgreSQL knows `count(*)` is bigint, `a = b`
//! boolean and `x::date` a date: the type is given here as the declared type the same column
//! of a table would have, which the session uses when SQLite reports none.
//!
//! Only the top-level SELECT list is named (the first SELECT of a UNION names the columns, as
//! in PostgreSQL); a plain column keeps SQLite's name, which is the column's.

use sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArguments, Ident, ObjectNamePart, Query, SelectItem,
    SetExpr, TrimWhereField, UnaryOperator, Value, ValueWithSpan,
};

use super::types::{PgType, pg_type};

/// Names the unaliased expression columns of `query` (before the rewrite, which changes their
/// text) and returns each result column's declared type where it is known; empty when the
/// list has a `*` (positions are then unknown).
pub fn name_result_columns(query: &mut Query) -> Vec<Option<String>> {
    let Some(items) = first_select_items(&mut query.body) else {
        return Vec::new();
    };
    let mut decltypes = Vec::with_capacity(items.len());
    let mut wildcard = false;
    for item in items.iter_mut() {
        match item {
            SelectItem::UnnamedExpr(expr) => {
                decltypes.push(decltype(expr));
                if !matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
                    let name = column_name(expr).unwrap_or_else(|| "?column?".into());
                    let expr = std::mem::replace(expr, Expr::value(Value::Null));
                    *item = SelectItem::ExprWithAlias {
                        expr,
                        alias: Ident::with_quote('"', name),
                    };
                }
            }
            SelectItem::ExprWithAlias { expr, .. } => decltypes.push(decltype(expr)),
            _ => wildcard = true,
        }
    }
    if wildcard { Vec::new() } else { decltypes }
}

fn first_select_items(body: &mut SetExpr) -> Option<&mut Vec<SelectItem>> {
    match body {
        SetExpr::Select(select) => Some(&mut select.projection),
        SetExpr::Query(query) => first_select_items(&mut query.body),
        SetExpr::SetOperation { left, .. } => first_select_items(left),
        _ => None,
    }
}

fn function_name(function: &Function) -> Option<String> {
    match function.name.0.last() {
        Some(ObjectNamePart::Identifier(ident)) => Some(ident.value.to_ascii_lowercase()),
        _ => None,
    }
}

/// PostgreSQL's name for an expression column, `None` for `?column?`.
fn column_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(ident) => Some(ident.value.clone()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.clone()),
        Expr::Function(function) => function_name(function),
        Expr::Nested(inner) => column_name(inner),
        // A cast is named after what it casts if that has a name, else after its type.
        Expr::Cast {
            expr, data_type, ..
        } => match expr.as_ref() {
            Expr::Value(_) => type_name(data_type),
            inner => column_name(inner).or_else(|| type_name(data_type)),
        },
        Expr::TypedString(typed) => type_name(&typed.data_type),
        Expr::Value(ValueWithSpan {
            value: Value::Boolean(_),
            ..
        }) => Some("bool".into()),
        Expr::Case { .. } => Some("case".into()),
        Expr::Exists { .. } => Some("exists".into()),
        Expr::Substring { .. } => Some("substring".into()),
        Expr::Position { .. } => Some("position".into()),
        Expr::Extract { .. } => Some("extract".into()),
        Expr::Trim { trim_where, .. } => Some(
            match trim_where {
                Some(TrimWhereField::Leading) => "ltrim",
                Some(TrimWhereField::Trailing) => "rtrim",
                _ => "btrim",
            }
            .into(),
        ),
        Expr::Ceil { .. } => Some("ceil".into()),
        Expr::Floor { .. } => Some("floor".into()),
        Expr::Subquery(query) => {
            let mut query = query.clone();
            let items = first_select_items(&mut query.body)?;
            match items.first()? {
                SelectItem::UnnamedExpr(expr) => column_name(expr),
                SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// PostgreSQL's internal name of a type, as it names a cast column (`int4`, `text`, ...).
fn type_name(data_type: &sqlparser::ast::DataType) -> Option<String> {
    let declared = pg_type(data_type).ok()?;
    Some(
        match declared.declared() {
            "SMALLINT" => "int2",
            "INTEGER" => "int4",
            "BIGINT" => "int8",
            "REAL" => "float4",
            "DOUBLE PRECISION" => "float8",
            "BOOLEAN" => "bool",
            "BLOB" => "bytea",
            d if d.starts_with("NUMERIC") => "numeric",
            d if d.starts_with("VARCHAR") => "varchar",
            d if d.starts_with("CHAR") => "bpchar",
            other => return Some(other.to_ascii_lowercase()),
        }
        .to_owned(),
    )
}

/// The declared type an expression's value has, where PostgreSQL would know it.
fn decltype(expr: &Expr) -> Option<String> {
    let known = |t: &str| Some(t.to_owned());
    match expr {
        Expr::Cast { data_type, .. } => match pg_type(data_type).ok()? {
            PgType::Serial { .. } => None,
            other => Some(other.declared().to_owned()),
        },
        Expr::TypedString(typed) => Some(pg_type(&typed.data_type).ok()?.declared().to_owned()),
        Expr::Nested(inner) => decltype(inner),
        Expr::Value(ValueWithSpan { value, .. }) => match value {
            Value::Boolean(_) => known("BOOLEAN"),
            Value::Number(n, _) => match n.parse::<i64>() {
                Ok(i) if i32::try_from(i).is_ok() => known("INTEGER"),
                Ok(_) => known("BIGINT"),
                Err(_) => known("NUMERIC"),
            },
            Value::SingleQuotedString(_)
            | Value::EscapedStringLiteral(_)
            | Value::DollarQuotedString(_) => known("TEXT"),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            ..
        } => known("BOOLEAN"),
        Expr::UnaryOp { expr, .. } => decltype(expr),
        Expr::BinaryOp { op, .. } => match op {
            BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq
            | BinaryOperator::And
            | BinaryOperator::Or => known("BOOLEAN"),
            BinaryOperator::StringConcat => known("TEXT"),
            _ => None,
        },
        Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsNotTrue(_)
        | Expr::IsNotFalse(_)
        | Expr::IsDistinctFrom(..)
        | Expr::IsNotDistinctFrom(..)
        | Expr::Like { .. }
        | Expr::ILike { .. }
        | Expr::InList { .. }
        | Expr::InSubquery { .. }
        | Expr::Between { .. }
        | Expr::Exists { .. } => known("BOOLEAN"),
        Expr::Function(function) => {
            let no_arguments = match &function.args {
                FunctionArguments::None => true,
                FunctionArguments::List(list) => list.args.is_empty(),
                FunctionArguments::Subquery(_) => false,
            };
            match function_name(function)?.as_str() {
                "count" | "snowflake_id" => known("BIGINT"),
                "snowflake_decode" => known("JSON"),
                "now" | "current_timestamp" | "transaction_timestamp" | "statement_timestamp" => {
                    known("TIMESTAMPTZ")
                }
                "localtimestamp" => known("TIMESTAMP"),
                "current_date" => known("DATE"),
                "current_time" | "localtime" => known("TIME"),
                "random" if no_arguments => known("DOUBLE PRECISION"),
                "length" | "char_length" | "character_length" | "octet_length" | "strpos"
                | "position" => known("INTEGER"),
                "avg" => known("DOUBLE PRECISION"),
                "lower" | "upper" | "concat" | "concat_ws" | "replace" | "substr" | "btrim"
                | "ltrim" | "rtrim" | "string_agg" => known("TEXT"),
                "gen_random_uuid" | "uuid_generate_v4" => known("UUID"),
                _ => None,
            }
        }
        Expr::Position { .. } => known("INTEGER"),
        Expr::Substring { .. } | Expr::Trim { .. } => known("TEXT"),
        _ => None,
    }
}
