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
pub fn name_result_columns(query: &mut Query, catalog: bool) -> Vec<Option<String>> {
    let known = KnownColumns::of(query, catalog);
    let Some(items) = first_select_items(&mut query.body) else {
        return Vec::new();
    };
    let mut decltypes = Vec::with_capacity(items.len());
    let mut wildcard = false;
    for item in items.iter_mut() {
        match item {
            SelectItem::UnnamedExpr(expr) => {
                decltypes.push(known.decltype(expr));
                if !matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
                    let name = column_name(expr).unwrap_or_else(|| "?column?".into());
                    let expr = std::mem::replace(expr, Expr::value(Value::Null));
                    *item = SelectItem::ExprWithAlias {
                        expr,
                        alias: Ident::with_quote('"', name),
                    };
                }
            }
            SelectItem::ExprWithAlias { expr, .. } => decltypes.push(known.decltype(expr)),
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
        } => strong_name(expr).or_else(|| type_name(data_type)),
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

/// A name that beats a cast's type name: not one that itself comes from a type or a literal
/// (`1::int::text` is named `text`, `a::int::text` is named `a`).
fn strong_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(_) | Expr::TypedString(_) => None,
        Expr::Cast { expr, .. } => strong_name(expr),
        other => column_name(other),
    }
}

/// PostgreSQL's internal name of a type, as it names a cast column (`int4`, `text`, ...).
fn type_name(data_type: &sqlparser::ast::DataType) -> Option<String> {
    let declared = match pg_type(data_type) {
        Ok(declared) => declared,
        // A type only the catalog knows (`regclass`, `oid`): its own name.
        Err(_) => {
            return match data_type {
                sqlparser::ast::DataType::Custom(name, _) => match name.0.last()? {
                    ObjectNamePart::Identifier(ident) => Some(ident.value.to_ascii_lowercase()),
                    _ => None,
                },
                sqlparser::ast::DataType::Regclass => Some("regclass".into()),
                _ => None,
            };
        }
    };
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

/// What the query itself says about the columns an expression may name: the expressions
/// behind aliases defined anywhere in it (`x = 0 AS is_expr` in a derived table), and, in a
/// catalog query, the catalog tables' declared column types.
struct KnownColumns {
    aliases: std::collections::HashMap<String, Expr>,
    catalog: bool,
}

impl KnownColumns {
    fn of(query: &Query, catalog: bool) -> KnownColumns {
        use sqlparser::ast::{Visit, Visitor};
        struct Collect(std::collections::HashMap<String, Expr>);
        impl Visitor for Collect {
            type Break = ();
            fn pre_visit_query(&mut self, query: &Query) -> std::ops::ControlFlow<()> {
                let mut body = query.body.clone();
                if let Some(items) = first_select_items(&mut body) {
                    for item in items.iter() {
                        if let SelectItem::ExprWithAlias { expr, alias } = item {
                            self.0
                                .entry(alias.value.to_ascii_lowercase())
                                .or_insert_with(|| expr.clone());
                        }
                    }
                }
                std::ops::ControlFlow::Continue(())
            }
        }
        let mut collect = Collect(std::collections::HashMap::new());
        let _ = query.visit(&mut collect);
        KnownColumns {
            aliases: collect.0,
            catalog,
        }
    }

    /// The declared type of a column reference, from an alias or the catalog.
    fn column(&self, name: &Ident, depth: usize) -> Option<String> {
        let lower = name.value.to_ascii_lowercase();
        if depth < 4
            && let Some(expr) = self.aliases.get(&lower)
            && !matches!(expr, Expr::Identifier(i) if i.value.eq_ignore_ascii_case(&lower))
            && let Some(found) = self.decltype_at(expr, depth + 1)
        {
            return Some(found);
        }
        if !self.catalog {
            return None;
        }
        let declared = crate::storage::catalog::tables::TABLES
            .iter()
            .flat_map(|t| t.columns.iter())
            .find(|(column, _)| *column == lower)
            .map(|(_, ty)| *ty)?;
        Some(
            match declared {
                "BOOL" => "BOOLEAN",
                "INT2" => "SMALLINT",
                "INT4" => "INTEGER",
                "INT8" => "BIGINT",
                "FLOAT4" => "REAL",
                other => other,
            }
            .to_owned(),
        )
    }

    fn decltype(&self, expr: &Expr) -> Option<String> {
        self.decltype_at(expr, 0)
    }

    /// The declared type an expression's value has, where PostgreSQL would know it.
    fn decltype_at(&self, expr: &Expr, depth: usize) -> Option<String> {
        let decltype = |e: &Expr| self.decltype_at(e, depth);
        match expr {
            Expr::Identifier(ident) => return self.column(ident, depth),
            Expr::CompoundIdentifier(parts) => return self.column(parts.last()?, depth),
            Expr::Function(function)
                if matches!(
                    function_name(function).as_deref(),
                    Some("min" | "max" | "bool_and" | "bool_or" | "every" | "coalesce")
                ) =>
            {
                return first_argument(function).and_then(decltype);
            }
            _ => {}
        }
        shape_decltype(expr, &decltype)
    }
}

/// The declared type an expression's value has by its shape, where PostgreSQL would know it;
/// `decltype` types sub-expressions.
fn shape_decltype(expr: &Expr, decltype: &dyn Fn(&Expr) -> Option<String>) -> Option<String> {
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
            | BinaryOperator::Or
            | BinaryOperator::PGRegexMatch
            | BinaryOperator::PGRegexIMatch
            | BinaryOperator::PGRegexNotMatch
            | BinaryOperator::PGRegexNotIMatch => known("BOOLEAN"),
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
                // Arrays (catalog queries only): the element's type, as an array.
                "array_agg" => Some(array_of(first_argument(function).and_then(decltype))),
                "array" => {
                    let FunctionArguments::Subquery(query) = &function.args else {
                        return None;
                    };
                    let mut query = query.clone();
                    let element = match first_select_items(&mut query.body)?.first()? {
                        SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
                            decltype(expr)
                        }
                        _ => None,
                    };
                    Some(array_of(element))
                }
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
        Expr::Array(array) => Some(array_of(array.elem.first().and_then(decltype))),
        _ => None,
    }
}

fn first_argument(function: &Function) -> Option<&Expr> {
    match &function.args {
        FunctionArguments::List(list) => match list.args.first()? {
            sqlparser::ast::FunctionArg::Unnamed(sqlparser::ast::FunctionArgExpr::Expr(e)) => {
                Some(e)
            }
            _ => None,
        },
        _ => None,
    }
}

/// The array type of elements declared `element` (text when unknown).
fn array_of(element: Option<String>) -> String {
    match element.as_deref() {
        Some("BOOLEAN") => "BOOL[]",
        Some("SMALLINT") => "INT2[]",
        Some("INTEGER") => "INT4[]",
        Some("BIGINT") => "INT8[]",
        _ => "TEXT[]",
    }
    .to_owned()
}
