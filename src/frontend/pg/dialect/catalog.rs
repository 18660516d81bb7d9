//! What catalog queries need beyond the rest of the dialect: PostgreSQL's system catalogs
//! live in SQLite databases attached as `pg_catalog` and `information_schema`
//! (`crate::storage::catalog`), where arrays are stored as JSON arrays. A statement that names
//! a catalog table is a *catalog query*, and gets these rewrites besides the usual ones:
//!
//! | PostgreSQL | SQLite |
//! |---|---|
//! | `pg_class` (unqualified) | `pg_catalog.pg_class` |
//! | `ARRAY[a, b]` | `json_array(a, b)` |
//! | `ARRAY(SELECT x ...)` | `(SELECT json_group_array(x) FROM (SELECT x ...))` |
//! | `x = ANY(array)`, `x <> ALL(array)` | `x IN (SELECT value FROM json_each(array))`, `NOT IN` |
//! | `array_agg(x ORDER BY y)` | `json_group_array(x ORDER BY y)` |
//! | `SELECT unnest(a), generate_subscripts(a, 1)` | a `json_each(a)` joined in, its `value` and `key + 1` |
//! | `FROM unnest(a) [WITH ORDINALITY] AS t(x, n)` | a subquery over `json_each(a)` |
//! | `a[i]` | `json_extract(a, '$[i-1]')` |
//! | `bool_and`, `bool_or`, `json_build_object` | `min`, `max`, `json_object` |
//! | `pg_partition_ancestors(r)` | `r` itself (no partitions here) |
//! | `x::int2[]` and other array casts | `x` |
//!
//! In every statement: `x::regclass` / `regtype` / `regnamespace` look the name up
//! (`phx_regclass(x)`) or, where the value is shown (a select list item, or cast on to text),
//! give the name (`phx_regclass_name(x)`); `= ANY(ARRAY[...])` is an `IN` list. Outside
//! catalog queries arrays stay refused: user tables hold no arrays.

use sqlparser::ast::{
    BinaryOperator, DataType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
    Ident, ObjectName, ObjectNamePart, Query, Select, SelectItem, TableAlias, TableFactor,
    TableWithJoins, UnaryOperator, Visit, Visitor,
};
use std::ops::ControlFlow;

use super::TranslateError;
use super::expr::{call, quoted, raw};
use crate::storage::catalog::tables;

/// Whether `statement` names a catalog table: then it is a catalog query.
pub fn is_catalog_query<T: Visit>(statement: &T) -> bool {
    struct Finder;
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
            if catalog_table(relation).is_some() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }
    statement.visit(&mut Finder).is_break()
}

fn part_name(part: &ObjectNamePart) -> String {
    match part {
        ObjectNamePart::Identifier(ident) if ident.quote_style.is_some() => ident.value.clone(),
        ObjectNamePart::Identifier(ident) => ident.value.to_ascii_lowercase(),
        other => other.to_string(),
    }
}

/// The catalog table a relation name means: `pg_catalog.x`, `information_schema.x`, or an
/// unqualified `pg_*` catalog name (pg_catalog is always first on PostgreSQL's search path).
fn catalog_table(relation: &ObjectName) -> Option<&'static tables::CatalogTable> {
    match relation.0.as_slice() {
        [schema, name] => tables::find(&part_name(schema), &part_name(name)),
        [name] => tables::find("pg_catalog", &part_name(name)),
        _ => None,
    }
}

/// `pg_class` → `pg_catalog.pg_class`, so SQLite finds the attached table and the engine
/// knows the statement reads the catalog.
pub fn qualify_relation(relation: &mut ObjectName) {
    if relation.0.len() == 1
        && let Some(table) = catalog_table(relation)
    {
        relation
            .0
            .insert(0, ObjectNamePart::Identifier(Ident::new(table.schema)));
    }
}

fn unsupported(what: impl Into<String>) -> TranslateError {
    TranslateError::Unsupported(what.into())
}

/// The lower-case last part of a type or function name, if it is one of PostgreSQL's.
fn simple_name(name: &ObjectName) -> Option<String> {
    match name.0.as_slice() {
        [one] => Some(part_name(one)),
        [schema, one] if part_name(schema) == "pg_catalog" => Some(part_name(one)),
        _ => None,
    }
}

/// The lookup functions a `::regclass`-like cast becomes: (as an OID, as the name shown).
fn reg_functions(data_type: &DataType) -> Option<(&'static str, &'static str)> {
    let name = match data_type {
        DataType::Regclass => return Some(("phx_regclass", "phx_regclass_name")),
        DataType::Custom(name, _) => name,
        _ => return None,
    };
    match simple_name(name)?.as_str() {
        "regclass" => Some(("phx_regclass", "phx_regclass_name")),
        "regtype" => Some(("phx_regtype", "phx_regtype_name")),
        "regnamespace" => Some(("phx_regnamespace", "phx_regnamespace_name")),
        _ => None,
    }
}

fn is_text_type(data_type: &DataType) -> bool {
    match data_type {
        DataType::Text | DataType::Varchar(_) | DataType::CharacterVarying(_) => true,
        DataType::Custom(name, _) => {
            matches!(
                simple_name(name).as_deref(),
                Some("text" | "name" | "varchar")
            )
        }
        _ => false,
    }
}

fn function_named<'a>(expr: &'a Expr, names: &[&str]) -> Option<&'a Function> {
    match expr {
        Expr::Function(function)
            if simple_name(&function.name).is_some_and(|n| names.contains(&n.as_str())) =>
        {
            Some(function)
        }
        _ => None,
    }
}

fn arguments(function: &Function) -> Vec<Expr> {
    match &function.args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .filter_map(|arg| match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn rename(function: &mut Function, name: &str) {
    function.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]);
}

/// Casts: the `reg*` lookups (any statement), `oid`, and array casts (catalog queries).
/// `None` leaves the cast to the general translation.
pub fn rewrite_cast(
    inner: &Expr,
    data_type: &DataType,
    catalog: bool,
) -> Option<Result<Expr, TranslateError>> {
    if let Some((as_oid, _)) = reg_functions(data_type) {
        return Some(Ok(call(as_oid, vec![inner.clone()])));
    }
    // `x::regclass::text`: the name.
    if is_text_type(data_type)
        && let Expr::Function(function) = inner
        && let Some(name) = simple_name(&function.name)
        && let Some(shown) = match name.as_str() {
            "phx_regclass" => Some("phx_regclass_name"),
            "phx_regtype" => Some("phx_regtype_name"),
            "phx_regnamespace" => Some("phx_regnamespace_name"),
            _ => None,
        }
    {
        let mut shown_call = function.clone();
        rename(&mut shown_call, shown);
        return Some(Ok(Expr::Function(shown_call)));
    }
    if let DataType::Custom(name, _) = data_type
        && matches!(
            simple_name(name).as_deref(),
            Some("oid" | "regproc" | "xid")
        )
    {
        return Some(Ok(call("pg_cast", vec![inner.clone(), raw("'int8'")])));
    }
    if matches!(data_type, DataType::Array(_)) {
        return Some(if catalog {
            Ok(inner.clone())
        } else {
            Err(unsupported("arrays"))
        });
    }
    None
}

/// `x op ANY(...)` / `x op ALL(...)`.
pub fn rewrite_any_all(expr: &Expr, catalog: bool) -> Option<Result<Expr, TranslateError>> {
    let (left, op, right, any) = match expr {
        Expr::AnyOp {
            left,
            compare_op,
            right,
            ..
        } => (left, compare_op, right, true),
        Expr::AllOp {
            left,
            compare_op,
            right,
        } => (left, compare_op, right, false),
        _ => return None,
    };
    let negated = match (op, any) {
        (BinaryOperator::Eq, true) => false,
        (BinaryOperator::NotEq, false) => true,
        _ => {
            return Some(Err(unsupported(format!(
                "{op} {}",
                if any { "ANY" } else { "ALL" }
            ))));
        }
    };
    let mut right = right.as_ref();
    while let Expr::Nested(inner) = right {
        right = inner;
    }
    // An array literal (already `json_array(...)`): a plain IN list.
    if let Some(function) = function_named(right, &["json_array"]) {
        return Some(Ok(Expr::InList {
            expr: left.clone(),
            list: arguments(function),
            negated,
        }));
    }
    if let Expr::Array(array) = right {
        return Some(Ok(Expr::InList {
            expr: left.clone(),
            list: array.elem.clone(),
            negated,
        }));
    }
    if !catalog {
        return Some(Err(unsupported("ANY/ALL over an array")));
    }
    Some(Ok(raw(format!(
        "({left} {}IN (SELECT value FROM json_each({right})))",
        if negated { "NOT " } else { "" }
    ))))
}

/// Array constructs of a catalog query; `None` if `expr` is none.
pub fn rewrite_array(expr: &Expr, catalog: bool) -> Option<Result<Expr, TranslateError>> {
    let rewritten = match expr {
        // Outside a catalog query an array literal may only feed `= ANY(...)`, which the parent
        // turns into an IN list; [`leftover_array`] refuses any other.
        Expr::Array(_) if !catalog => return None,
        Expr::Array(array) => call("json_array", array.elem.clone()),
        Expr::CompoundFieldAccess { root, access_chain } => {
            let [sqlparser::ast::AccessExpr::Subscript(sqlparser::ast::Subscript::Index { index })] =
                access_chain.as_slice()
            else {
                return Some(Err(unsupported("array slices and nested subscripts")));
            };
            raw(format!(
                "json_extract({root}, '$[' || (({index}) - 1) || ']')"
            ))
        }
        _ => return None,
    };
    Some(if catalog {
        Ok(rewritten)
    } else {
        Err(unsupported("arrays"))
    })
}

/// An array literal left after the rewrite of a statement that is not a catalog query.
pub fn leftover_array<T: Visit>(statement: &T) -> Result<(), TranslateError> {
    struct Finder;
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if matches!(expr, Expr::Array(_)) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }
    if statement.visit(&mut Finder).is_break() {
        Err(unsupported("arrays"))
    } else {
        Ok(())
    }
}

/// Functions of catalog queries: `Ok(None)` when `function` is not one of them.
pub fn rewrite_function(
    function: &mut Function,
    name: &str,
    catalog: bool,
) -> Result<Option<Expr>, TranslateError> {
    let renamed = match name {
        "array_agg" => "json_group_array",
        "bool_and" | "every" => "min",
        "bool_or" => "max",
        "json_build_object" | "jsonb_build_object" => "json_object",
        "array" => {
            // ARRAY(SELECT x ...): the subquery's single column, aggregated.
            if !catalog {
                return Err(unsupported("arrays"));
            }
            let FunctionArguments::Subquery(query) = &function.args else {
                return Ok(None);
            };
            let mut query = query.clone();
            alias_first_column(&mut query, "phx_element");
            return Ok(Some(raw(format!(
                "(SELECT json_group_array(phx_element) FROM ({query}))"
            ))));
        }
        "to_regclass" => "phx_to_regclass",
        "to_regtype" => "phx_to_regtype",
        "to_regnamespace" => "phx_to_regnamespace",
        "pg_partition_ancestors" => {
            return Ok(arguments(function).into_iter().next());
        }
        "unnest" | "generate_subscripts" if !catalog => return Err(unsupported("arrays")),
        _ => return Ok(None),
    };
    if !catalog && !renamed.starts_with("phx_") {
        return Err(unsupported("arrays"));
    }
    rename(function, renamed);
    Ok(None)
}

fn alias_first_column(query: &mut Query, alias: &str) {
    if let sqlparser::ast::SetExpr::Select(select) = query.body.as_mut()
        && let Some(first) = select.projection.first_mut()
    {
        let expr = match first {
            SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr.clone(),
            _ => return,
        };
        *first = SelectItem::ExprWithAlias {
            expr,
            alias: Ident::new(alias),
        };
    }
}

/// A select list item that shows a `reg*` value gives its name; `unnest(a)` and
/// `generate_subscripts(a, 1)` in a catalog query's select list become a `json_each(a)`
/// joined into the FROM clause (arrays of one row unnested together, by position).
pub fn rewrite_select(select: &mut Select, catalog: bool) -> Result<(), TranslateError> {
    let mut unnested: Vec<String> = Vec::new();
    for item in &mut select.projection {
        let expr = match item {
            SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr,
            _ => continue,
        };
        if let Expr::Function(function) = expr
            && let Some(name) = simple_name(&function.name)
        {
            match name.as_str() {
                "phx_regclass" => rename(function, "phx_regclass_name"),
                "phx_regtype" => rename(function, "phx_regtype_name"),
                "phx_regnamespace" => rename(function, "phx_regnamespace_name"),
                "unnest" | "generate_subscripts" if catalog => {
                    let Some(array) = arguments(function).into_iter().next() else {
                        return Err(unsupported(format!("{name} without an argument")));
                    };
                    let key = array.to_string();
                    let position = match unnested.iter().position(|k| *k == key) {
                        Some(position) => position,
                        None => {
                            unnested.push(key);
                            unnested.len() - 1
                        }
                    };
                    *expr = raw(if name == "unnest" {
                        format!("phx_srf{position}.value")
                    } else {
                        format!("(phx_srf{position}.key + 1)")
                    });
                }
                _ => {}
            }
        }
    }
    for (position, array) in unnested.iter().enumerate() {
        select.from.push(TableWithJoins {
            relation: plain_table(
                format!("json_each({array})"),
                Some(format!("phx_srf{position}")),
            ),
            joins: Vec::new(),
        });
        if position > 0 {
            let same_position = raw(format!("phx_srf{position}.key = phx_srf0.key"));
            select.selection = Some(match select.selection.take() {
                Some(existing) => Expr::BinaryOp {
                    left: Box::new(Expr::Nested(Box::new(existing))),
                    op: BinaryOperator::And,
                    right: Box::new(same_position),
                },
                None => same_position,
            });
        }
    }
    Ok(())
}

fn plain_table(sql: String, alias: Option<String>) -> TableFactor {
    super::expr::plain_table(
        ObjectName(vec![ObjectNamePart::Identifier(Ident::new(sql))]),
        alias.map(|a| TableAlias {
            explicit: true,
            name: Ident::new(a),
            columns: Vec::new(),
            at: None,
        }),
    )
}

/// Table functions of catalog queries in FROM: `unnest(a)` and `pg_partition_ancestors(r)`,
/// with their column aliases and `WITH ORDINALITY`. `None` for other functions.
pub fn rewrite_table_function(
    function: &str,
    arguments: &[String],
    alias: &Option<TableAlias>,
    with_ordinality: bool,
    catalog: bool,
) -> Option<Result<TableFactor, TranslateError>> {
    let (value, ordinal, source) = match function {
        "unnest" if catalog => (
            "value",
            "key + 1",
            format!("json_each({})", arguments.first()?),
        ),
        "pg_partition_ancestors" => (
            "relid",
            "1",
            format!("(SELECT {} AS relid)", arguments.first()?),
        ),
        _ => return None,
    };
    let alias_name = alias
        .as_ref()
        .map(|a| a.name.clone())
        .unwrap_or_else(|| Ident::new(function));
    let column = |i: usize, default: &str| {
        alias
            .as_ref()
            .and_then(|a| a.columns.get(i))
            .map(|c| quoted(&c.name))
            .unwrap_or_else(|| default.to_owned())
    };
    let mut columns = vec![format!("{value} AS {}", column(0, function))];
    if with_ordinality {
        columns.push(format!("{ordinal} AS {}", column(1, "ordinality")));
    }
    let sql = format!("(SELECT {} FROM {source})", columns.join(", "));
    Some(Ok(plain_table(sql, Some(alias_name.value))))
}

/// `NOT`, for callers building negated matches.
pub fn not(expr: Expr) -> Expr {
    Expr::UnaryOp {
        op: UnaryOperator::Not,
        expr: Box::new(expr),
    }
}
