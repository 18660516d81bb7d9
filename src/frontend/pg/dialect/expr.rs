//! The rewrite every statement gets: one pass of sqlparser's `VisitorMut` over the AST, bottom
//! up, turning PostgreSQL expressions, names and clauses into SQLite ones of the same meaning —
//! or refusing them ([`TranslateError::Unsupported`]).
//!
//! | PostgreSQL | SQLite |
//! |---|---|
//! | `$1` | `?1` (SQLite would number `$1` by first appearance) |
//! | unquoted `Name` | `name` (PostgreSQL folds unquoted identifiers to lower case) |
//! | `public.t`, `pg_catalog.f()` | `t`, `f()` |
//! | `E'\n'`, `$$x$$` | `'…'` |
//! | `x::int`, `CAST(x AS date)` | a literal folded now, else `pg_cast(x, 'int4')` |
//! | `now()`, `CURRENT_TIMESTAMP`, `LOCALTIMESTAMP` | `strftime(… 'now')`: constant within a statement |
//! | `a LIKE b`, `a ILIKE b` | `pg_like(a, b)`, `pg_ilike(a, b)`: case-sensitive, `\` escapes |
//! | `random()` | a float in [0, 1) from SQLite's 64-bit `random()` |
//! | `a IS [NOT] DISTINCT FROM b` | `a IS [NOT] b` |
//! | `substring(s FROM a FOR b)`, `position(a IN s)`, `trim(LEADING …)` | `substr`, `instr`, `ltrim`, ... |
//! | `ORDER BY x` | `ORDER BY x NULLS LAST` (`DESC`: `NULLS FIRST`), PostgreSQL's NULL order |
//! | `OFFSET n` alone, `FETCH FIRST n ROWS ONLY` | `LIMIT -1 OFFSET n`, `LIMIT n` |
//! | `FROM generate_series(1, n) AS x` | a subquery naming the series column `x` |
//! | `FOR UPDATE` / `FOR SHARE` | dropped: SQLite transactions are serializable |
//!
//! Refused: regular expressions, `SIMILAR TO`, arrays and `ANY`/`ALL` over them, `interval`,
//! `AT TIME ZONE`, `DISTINCT ON`, `LATERAL`, `SELECT INTO`, sequences, bit strings, and the
//! PostgreSQL-only operators (`@>`, `?`, `#`, ...).

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, CeilFloorKind, DateTimeField, Distinct, DuplicateTreatment, Expr, Fetch,
    Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
    LimitClause, ObjectName, ObjectNamePart, Offset, OffsetRows, OrderByExpr, OrderBySort, Query,
    Select, TableFactor, TrimWhereField, UnaryOperator, Value, ValueWithSpan, VisitorMut,
};

use super::TranslateError;
use super::catalog;
use super::types::{PgType, pg_type};
use crate::storage::pg_functions::{CastType, cast_value};

/// PostgreSQL's `now()` as SQLite computes it: the statement's time (SQLite evaluates `'now'`
/// once per statement), in PostgreSQL's text form (fraction without trailing zeros).
pub const NOW: &str = "rtrim(rtrim(strftime('%Y-%m-%d %H:%M:%f', 'now'), '0'), '.')";
const CURRENT_TIME: &str = "rtrim(rtrim(strftime('%H:%M:%f', 'now'), '0'), '.')";
const CURRENT_DATE: &str = "date('now')";
/// A uniformly distributed float in [0, 1): 53 random bits over 2^53.
const RANDOM: &str = "(((random() >> 11) & 9007199254740991) / 9007199254740992.0)";
/// A version-4 UUID, as `gen_random_uuid()` returns.
const RANDOM_UUID: &str = "lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || \
     substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (random() & 3), 1) || \
     substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))";

/// The visitor.
pub struct Rewriter {
    /// The statement names a catalog table ([`super::catalog`]): arrays are JSON.
    pub catalog: bool,
}

fn flow(result: Result<(), TranslateError>) -> ControlFlow<TranslateError> {
    match result {
        Ok(()) => ControlFlow::Continue(()),
        Err(e) => ControlFlow::Break(e),
    }
}

fn unsupported(what: impl Into<String>) -> TranslateError {
    TranslateError::Unsupported(what.into())
}

impl VisitorMut for Rewriter {
    type Break = TranslateError;

    fn pre_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<TranslateError> {
        catalog::qualify_relation(relation);
        flow(strip_schema_of(relation))
    }

    fn post_visit_ident(&mut self, ident: &mut Ident) -> ControlFlow<TranslateError> {
        if ident.quote_style.is_none() {
            ident.value.make_ascii_lowercase();
        }
        ControlFlow::Continue(())
    }

    fn post_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<TranslateError> {
        flow(rewrite_value(&mut value.value))
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<TranslateError> {
        flow(rewrite_expr(expr, self.catalog))
    }

    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<TranslateError> {
        flow(rewrite_table_factor(factor, self.catalog))
    }

    fn post_visit_select(&mut self, select: &mut Select) -> ControlFlow<TranslateError> {
        if matches!(select.distinct, Some(Distinct::On(_))) {
            return ControlFlow::Break(unsupported("SELECT DISTINCT ON"));
        }
        if select.into.is_some() {
            return ControlFlow::Break(unsupported("SELECT INTO"));
        }
        flow(catalog::rewrite_select(select, self.catalog))
    }

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<TranslateError> {
        flow(rewrite_query(query))
    }

    fn post_visit_order_by_expr(&mut self, order: &mut OrderByExpr) -> ControlFlow<TranslateError> {
        if order.options.nulls_first.is_none() {
            order.options.nulls_first = Some(match &order.options.sort {
                Some(OrderBySort::Desc) => true,
                Some(OrderBySort::Asc) | None => false,
                Some(OrderBySort::Using(_)) => {
                    return ControlFlow::Break(unsupported("ORDER BY ... USING"));
                }
            });
        }
        ControlFlow::Continue(())
    }
}

/// `public.t` → `t`. Other schemas than `public` hold no tables here; `pg_catalog` and
/// `information_schema` names are left for the catalog.
pub fn strip_schema_of(name: &mut ObjectName) -> Result<(), TranslateError> {
    if name.0.len() < 2 {
        return Ok(());
    }
    let schema = match &name.0[0] {
        ObjectNamePart::Identifier(ident) => ident.value.to_ascii_lowercase(),
        other => other.to_string(),
    };
    match (schema.as_str(), name.0.len()) {
        ("public", 2) => {
            name.0.remove(0);
            Ok(())
        }
        ("pg_catalog" | "information_schema", 2) => Ok(()),
        _ => Err(unsupported(format!(
            "the name {name} (every table is in schema public)"
        ))),
    }
}

fn rewrite_value(value: &mut Value) -> Result<(), TranslateError> {
    match value {
        Value::Placeholder(placeholder) => {
            if let Some(number) = placeholder.strip_prefix('$')
                && !number.is_empty()
                && number.bytes().all(|b| b.is_ascii_digit())
            {
                *placeholder = format!("?{number}");
            }
        }
        Value::EscapedStringLiteral(s)
        | Value::NationalStringLiteral(s)
        | Value::UnicodeStringLiteral(s) => *value = Value::SingleQuotedString(std::mem::take(s)),
        Value::DollarQuotedString(d) => {
            *value = Value::SingleQuotedString(std::mem::take(&mut d.value))
        }
        Value::HexStringLiteral(_) | Value::SingleQuotedByteStringLiteral(_) => {
            return Err(unsupported("bit string literals"));
        }
        _ => {}
    }
    Ok(())
}

/// SQL text printed as is. sqlparser prints a placeholder's text verbatim, and the rewrite
/// never visits a node it built, so this carries SQLite-only syntax (`IS NOT`, a subquery in a
/// FROM-less spot) through the printer.
pub fn raw(sql: impl Into<String>) -> Expr {
    Expr::value(Value::Placeholder(sql.into()))
}

/// A function call `name(args)`.
pub fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None::<DuplicateTreatment>,
            args: args
                .into_iter()
                .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
                .collect(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

fn string(s: impl Into<String>) -> Expr {
    Expr::value(Value::SingleQuotedString(s.into()))
}

fn number(n: impl std::fmt::Display) -> Expr {
    Expr::value(Value::Number(n.to_string(), false))
}

fn take(expr: &mut Expr) -> Expr {
    std::mem::replace(expr, Expr::value(Value::Null))
}

fn rewrite_expr(expr: &mut Expr, catalog: bool) -> Result<(), TranslateError> {
    let case_insensitive = matches!(expr, Expr::ILike { .. });
    let ceiling = matches!(expr, Expr::Ceil { .. });
    if let Some(rewritten) =
        catalog::rewrite_any_all(expr, catalog).or_else(|| catalog::rewrite_array(expr, catalog))
    {
        *expr = rewritten?;
        return Ok(());
    }
    if let Expr::Cast {
        expr: inner,
        data_type,
        ..
    } = expr
        && let Some(rewritten) = catalog::rewrite_cast(inner, data_type, catalog)
    {
        *expr = rewritten?;
        return Ok(());
    }
    let replacement = match expr {
        Expr::Cast {
            expr: inner,
            data_type,
            ..
        } => cast(take(inner), &pg_type(data_type)?)?,
        Expr::TypedString(typed) => cast(
            Expr::Value(typed.value.clone()),
            &pg_type(&typed.data_type)?,
        )?,
        Expr::Function(function) => match rewrite_function(function, catalog)? {
            Some(replacement) => replacement,
            None => return Ok(()),
        },
        Expr::Like {
            negated,
            any,
            expr: subject,
            pattern,
            escape_char,
        }
        | Expr::ILike {
            negated,
            any,
            expr: subject,
            pattern,
            escape_char,
        } => {
            if *any {
                return Err(unsupported("LIKE ANY"));
            }
            let function = if case_insensitive {
                "pg_ilike"
            } else {
                "pg_like"
            };
            let mut args = vec![take(subject), take(pattern)];
            if let Some(escape) = escape_char {
                args.push(take(escape));
            }
            let matched = call(function, args);
            if *negated {
                Expr::UnaryOp {
                    op: UnaryOperator::Not,
                    expr: Box::new(matched),
                }
            } else {
                matched
            }
        }
        Expr::SimilarTo { .. } | Expr::RLike { .. } => {
            return Err(unsupported("SIMILAR TO"));
        }
        Expr::BinaryOp { left, op, right } => match op {
            BinaryOperator::PGExp => call("power", vec![take(left), take(right)]),
            BinaryOperator::PGRegexMatch
            | BinaryOperator::PGRegexIMatch
            | BinaryOperator::PGRegexNotMatch
            | BinaryOperator::PGRegexNotIMatch => {
                let case_insensitive = matches!(
                    op,
                    BinaryOperator::PGRegexIMatch | BinaryOperator::PGRegexNotIMatch
                );
                let negated = matches!(
                    op,
                    BinaryOperator::PGRegexNotMatch | BinaryOperator::PGRegexNotIMatch
                );
                regex_match(take(left), take(right), case_insensitive, negated)
            }
            BinaryOperator::PGCustomBinaryOperator(parts) if matches!(parts.as_slice(), [schema, op] if schema == "pg_catalog" && matches!(op.as_str(), "~" | "~*" | "!~" | "!~*")) =>
            {
                let op = parts[1].clone();
                regex_match(
                    take(left),
                    take(right),
                    op.ends_with('*'),
                    op.starts_with('!'),
                )
            }
            BinaryOperator::Plus
            | BinaryOperator::Minus
            | BinaryOperator::Multiply
            | BinaryOperator::Divide
            | BinaryOperator::Modulo
            | BinaryOperator::StringConcat
            | BinaryOperator::Gt
            | BinaryOperator::Lt
            | BinaryOperator::GtEq
            | BinaryOperator::LtEq
            | BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::And
            | BinaryOperator::Or
            | BinaryOperator::BitwiseOr
            | BinaryOperator::BitwiseAnd
            | BinaryOperator::PGBitwiseShiftLeft
            | BinaryOperator::PGBitwiseShiftRight
            | BinaryOperator::Arrow
            | BinaryOperator::LongArrow => return Ok(()),
            other => return Err(unsupported(format!("the operator {other}"))),
        },
        Expr::UnaryOp { op, expr: operand } => match op {
            UnaryOperator::Plus
            | UnaryOperator::Minus
            | UnaryOperator::Not
            | UnaryOperator::BitwiseNot => return Ok(()),
            UnaryOperator::PGAbs => call("abs", vec![take(operand)]),
            other => return Err(unsupported(format!("the operator {other}"))),
        },
        Expr::IsDistinctFrom(a, b) => raw(format!("({a} IS NOT {b})")),
        Expr::IsNotDistinctFrom(a, b) => raw(format!("({a} IS {b})")),
        Expr::Substring {
            expr: subject,
            substring_from,
            substring_for,
            ..
        } => {
            if let Some(from) = substring_from
                && matches!(
                    **from,
                    Expr::Value(ValueWithSpan {
                        value: Value::SingleQuotedString(_),
                        ..
                    })
                )
            {
                return Err(unsupported("substring with a regular expression"));
            }
            let mut args = vec![take(subject)];
            args.push(
                substring_from
                    .as_deref_mut()
                    .map(take)
                    .unwrap_or_else(|| number(1)),
            );
            if let Some(length) = substring_for {
                args.push(take(length));
            }
            call("substr", args)
        }
        Expr::Position { expr: needle, r#in } => call("instr", vec![take(r#in), take(needle)]),
        Expr::Trim {
            trim_where,
            trim_what,
            expr: subject,
            trim_characters,
        } => {
            let function = match trim_where {
                Some(TrimWhereField::Leading) => "ltrim",
                Some(TrimWhereField::Trailing) => "rtrim",
                Some(TrimWhereField::Both) | None => "trim",
            };
            let mut args = vec![take(subject)];
            if let Some(what) = trim_what {
                args.push(take(what));
            } else if let Some(characters) = trim_characters {
                match characters.as_mut_slice() {
                    [] => {}
                    [one] => args.push(take(one)),
                    _ => return Err(unsupported("trim with several character lists")),
                }
            }
            call(function, args)
        }
        Expr::Extract {
            field,
            expr: source,
            ..
        } => extract(field, take(source))?,
        Expr::Ceil {
            expr: operand,
            field,
        }
        | Expr::Floor {
            expr: operand,
            field,
        } => {
            if !matches!(
                field,
                CeilFloorKind::DateTimeField(DateTimeField::NoDateTime)
            ) {
                return Err(unsupported("ceil/floor to a field"));
            }
            let function = if ceiling { "ceil" } else { "floor" };
            call(function, vec![take(operand)])
        }
        Expr::Collate {
            expr: inner,
            collation,
        } => {
            let name = collation.to_string().trim_matches('"').to_ascii_lowercase();
            match name.as_str() {
                "c" | "posix" | "ucs_basic" | "default" | "pg_catalog.default"
                | "pg_catalog.\"c\"" => raw(format!("({inner} COLLATE BINARY)")),
                _ => return Err(unsupported(format!("the collation {collation}"))),
            }
        }
        Expr::AtTimeZone { .. } => return Err(unsupported("AT TIME ZONE")),
        Expr::Interval(_) => return Err(unsupported("interval values")),
        Expr::InUnnest { .. } => return Err(unsupported("IN UNNEST")),
        Expr::Overlay { .. } => return Err(unsupported("OVERLAY")),
        _ => return Ok(()),
    };
    *expr = replacement;
    Ok(())
}

/// `EXTRACT(field FROM x)` for the fields `strftime` can produce.
fn extract(field: &DateTimeField, source: Expr) -> Result<Expr, TranslateError> {
    let format = match field {
        DateTimeField::Year => "%Y",
        DateTimeField::Month => "%m",
        DateTimeField::Day => "%d",
        DateTimeField::Hour => "%H",
        DateTimeField::Minute => "%M",
        DateTimeField::Dow => "%w",
        DateTimeField::Doy => "%j",
        DateTimeField::Second => {
            return Ok(Expr::Cast {
                kind: sqlparser::ast::CastKind::Cast,
                expr: Box::new(call("strftime", vec![string("%f"), source])),
                data_type: sqlparser::ast::DataType::Real,
                format: None,
            });
        }
        DateTimeField::Epoch => return Ok(call("unixepoch", vec![source, string("subsec")])),
        other => return Err(unsupported(format!("EXTRACT({other} FROM ...)"))),
    };
    Ok(Expr::Cast {
        kind: sqlparser::ast::CastKind::Cast,
        expr: Box::new(call("strftime", vec![string(format), source])),
        data_type: sqlparser::ast::DataType::Integer(None),
        format: None,
    })
}

/// `subject ~ pattern` and its case-insensitive and negated forms.
fn regex_match(subject: Expr, pattern: Expr, case_insensitive: bool, negated: bool) -> Expr {
    let matched = call(
        "pg_regex",
        vec![subject, pattern, number(i32::from(case_insensitive))],
    );
    if negated {
        catalog::not(matched)
    } else {
        matched
    }
}

/// Functions PostgreSQL spells or behaves differently; `None` keeps the call as it is.
fn rewrite_function(
    function: &mut Function,
    catalog: bool,
) -> Result<Option<Expr>, TranslateError> {
    if function.name.0.len() == 2
        && let ObjectNamePart::Identifier(schema) = &function.name.0[0]
        && (schema.value.eq_ignore_ascii_case("pg_catalog")
            || schema.value.eq_ignore_ascii_case("public"))
    {
        function.name.0.remove(0);
    }
    let name = match function.name.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] => ident.value.to_ascii_lowercase(),
        _ => return Ok(None),
    };
    let no_arguments = match &function.args {
        FunctionArguments::None => true,
        FunctionArguments::List(list) => list.args.is_empty(),
        FunctionArguments::Subquery(_) => false,
    };
    let precision_only = no_arguments
        || matches!(&function.args, FunctionArguments::List(list) if list.args.len() == 1);
    if let Some(replacement) = catalog::rewrite_function(function, &name, catalog)? {
        return Ok(Some(replacement));
    }
    Ok(Some(match name.as_str() {
        "now" | "transaction_timestamp" | "statement_timestamp" if no_arguments => raw(NOW),
        "current_timestamp" | "localtimestamp" if precision_only => raw(NOW),
        "current_time" | "localtime" if precision_only => raw(CURRENT_TIME),
        "current_date" if no_arguments => raw(CURRENT_DATE),
        "random" if no_arguments => raw(RANDOM),
        "gen_random_uuid" | "uuid_generate_v4" if no_arguments => raw(RANDOM_UUID),
        "current_schema" if no_arguments => string("public"),
        "char_length" | "character_length" => {
            function.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new("length"))]);
            return Ok(None);
        }
        "clock_timestamp" | "timeofday" => {
            return Err(unsupported(format!(
                "{name}() (the time is fixed once per statement)"
            )));
        }
        "nextval" | "currval" | "setval" | "lastval" => {
            return Err(unsupported("sequences (use SERIAL or IDENTITY columns)"));
        }
        "current_user" | "session_user" | "user" | "current_role" | "current_database"
        | "current_catalog" | "version" | "pg_backend_pid" => {
            return Err(unsupported(format!(
                "{name} inside a statement (only `SELECT {name}` alone is answered)"
            )));
        }
        "array_position" => return Err(unsupported("arrays")),
        _ => return Ok(None),
    }))
}

/// A literal's value, if `expr` is one (numbers with a sign included).
fn literal(expr: &Expr) -> Option<rusqlite::types::Value> {
    use rusqlite::types::Value as Sqlite;
    match expr {
        Expr::Value(ValueWithSpan { value, .. }) => match value {
            Value::Number(n, _) => n
                .parse::<i64>()
                .map(Sqlite::Integer)
                .ok()
                .or_else(|| n.parse::<f64>().ok().map(Sqlite::Real)),
            Value::SingleQuotedString(s) => Some(Sqlite::Text(s.clone())),
            Value::Boolean(b) => Some(Sqlite::Integer(*b as i64)),
            Value::Null => Some(Sqlite::Null),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match literal(expr)? {
            Sqlite::Integer(i) => i.checked_neg().map(Sqlite::Integer),
            Sqlite::Real(f) => Some(Sqlite::Real(-f)),
            _ => None,
        },
        Expr::Nested(inner) => literal(inner),
        _ => None,
    }
}

/// A SQLite value as a literal.
fn value_literal(value: rusqlite::types::Value) -> Expr {
    use rusqlite::types::Value as Sqlite;
    match value {
        Sqlite::Null => Expr::value(Value::Null),
        Sqlite::Integer(i) => number(i),
        // `{:?}` keeps a decimal point (2.0, not 2), so SQLite reads a real.
        Sqlite::Real(f) if f.is_finite() => number(format!("{f:?}")),
        Sqlite::Real(f) if f > 0.0 => number("9e999"),
        Sqlite::Real(_) => number("-9e999"),
        Sqlite::Text(s) => string(s),
        Sqlite::Blob(b) => {
            let hex: String = b.iter().map(|byte| format!("{byte:02X}")).collect();
            raw(format!("X'{hex}'"))
        }
    }
}

/// `inner::ty`: literals are converted now (an invalid one fails the statement, as in
/// PostgreSQL); other expressions convert when they run.
pub fn cast(inner: Expr, ty: &PgType) -> Result<Expr, TranslateError> {
    match ty {
        PgType::Text { length, .. } => {
            let as_text = match (&inner, literal(&inner)) {
                // A number keeps its spelling (1.50::text is '1.50'), a boolean becomes a word.
                (
                    Expr::Value(ValueWithSpan {
                        value: Value::Number(n, _),
                        ..
                    }),
                    _,
                ) => string(n.clone()),
                (
                    Expr::Value(ValueWithSpan {
                        value: Value::Boolean(b),
                        ..
                    }),
                    _,
                ) => string(if *b { "true" } else { "false" }),
                (_, Some(rusqlite::types::Value::Text(s))) => string(s),
                (_, Some(rusqlite::types::Value::Null)) => Expr::value(Value::Null),
                _ => Expr::Cast {
                    kind: sqlparser::ast::CastKind::Cast,
                    expr: Box::new(inner),
                    data_type: sqlparser::ast::DataType::Text,
                    format: None,
                },
            };
            Ok(match length {
                Some(n) => match literal(&as_text) {
                    Some(rusqlite::types::Value::Text(s)) => {
                        string(s.chars().take(*n as usize).collect::<String>())
                    }
                    _ => call("substr", vec![as_text, number(1), number(n)]),
                },
                None => as_text,
            })
        }
        PgType::Converted { cast, scale, .. } => {
            let converted = match literal(&inner) {
                Some(value) => {
                    let converted =
                        cast_value(rusqlite::types::ValueRef::from(&value), cast.name()).map_err(
                            |e| TranslateError::InvalidValue {
                                code: e.code,
                                message: e.message,
                            },
                        )?;
                    value_literal(converted)
                }
                None => call("pg_cast", vec![inner, string(cast.name())]),
            };
            Ok(match scale {
                Some(s) if *cast == CastType::Numeric => call("round", vec![converted, number(s)]),
                _ => converted,
            })
        }
        PgType::Serial { .. } => Err(unsupported("casts to serial")),
    }
}

fn rewrite_table_factor(factor: &mut TableFactor, catalog: bool) -> Result<(), TranslateError> {
    match factor {
        TableFactor::Table {
            name,
            alias,
            args: Some(args),
            with_ordinality,
            ..
        } => {
            let mut function = name.to_string().to_ascii_lowercase();
            if let Some(unqualified) = function.strip_prefix("pg_catalog.") {
                function = unqualified.to_owned();
            }
            if function != "generate_series" {
                let arguments: Vec<String> = args.args.iter().map(ToString::to_string).collect();
                return match catalog::rewrite_table_function(
                    &function,
                    &arguments,
                    alias,
                    *with_ordinality,
                    catalog,
                ) {
                    Some(rewritten) => {
                        *factor = rewritten?;
                        Ok(())
                    }
                    None => Err(unsupported(format!("the table function {function}"))),
                };
            }
            if *with_ordinality {
                return Err(unsupported("WITH ORDINALITY"));
            }
            // PostgreSQL names the series column after the alias (`AS x` or `AS t(x)`);
            // SQLite's series table calls it `value`.
            let column = match alias {
                Some(alias) => alias
                    .columns
                    .first()
                    .map(|c| c.name.clone())
                    .unwrap_or_else(|| alias.name.clone()),
                None => Ident::new("generate_series"),
            };
            if let Some(alias) = alias {
                alias.columns.clear();
            }
            let arguments: Vec<String> = args.args.iter().map(ToString::to_string).collect();
            let subquery = format!(
                "(SELECT value AS {} FROM generate_series({}))",
                quoted(&column),
                arguments.join(", ")
            );
            *name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(subquery))]);
            if alias.is_none() {
                *alias = Some(sqlparser::ast::TableAlias {
                    explicit: true,
                    name: Ident::new("generate_series"),
                    columns: Vec::new(),
                    at: None,
                });
            }
            *factor = plain_table(name.clone(), alias.clone());
            Ok(())
        }
        TableFactor::Derived { lateral: true, .. } => Err(unsupported("LATERAL")),
        TableFactor::Derived {
            subquery,
            alias: Some(alias),
            ..
        } if !alias.columns.is_empty() => {
            // `(VALUES ...) AS t(a, b)`: SQLite takes no column list on a derived table, but
            // names a VALUES list's columns column1, column2, ...: select them under the
            // aliases. (A SELECT's columns cannot be renamed by position in SQLite.)
            let plain_values = matches!(*subquery.body, sqlparser::ast::SetExpr::Values(_))
                && subquery.with.is_none()
                && subquery.order_by.is_none()
                && subquery.limit_clause.is_none();
            if !plain_values {
                return Err(unsupported(
                    "column aliases on a derived table other than VALUES",
                ));
            }
            let columns: Vec<String> = alias
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| format!("column{} AS {}", i + 1, quoted(&c.name)))
                .collect();
            let select = format!("(SELECT {} FROM ({subquery}))", columns.join(", "));
            let mut alias = alias.clone();
            alias.columns.clear();
            *factor = plain_table(
                ObjectName(vec![ObjectNamePart::Identifier(Ident::new(select))]),
                Some(alias),
            );
            Ok(())
        }
        TableFactor::Table { .. }
        | TableFactor::Derived { .. }
        | TableFactor::NestedJoin { .. } => Ok(()),
        TableFactor::UNNEST { .. } => Err(unsupported("UNNEST")),
        _ => Err(unsupported("this kind of FROM item")),
    }
}

/// A FROM item that is just `name [AS alias]` (`name` may carry raw SQL text, printed as is).
pub fn plain_table(name: ObjectName, alias: Option<sqlparser::ast::TableAlias>) -> TableFactor {
    TableFactor::Table {
        name,
        alias,
        args: None,
        with_hints: Vec::new(),
        version: None,
        with_ordinality: false,
        partitions: Vec::new(),
        json_path: None,
        sample: None,
        index_hints: Vec::new(),
    }
}

/// An identifier, always quoted (so the name's case survives).
pub fn quoted(ident: &Ident) -> String {
    format!("\"{}\"", ident.value.replace('"', "\"\""))
}

fn rewrite_query(query: &mut Query) -> Result<(), TranslateError> {
    if let Some(Fetch {
        with_ties,
        percent,
        quantity,
    }) = query.fetch.take()
    {
        if with_ties || percent {
            return Err(unsupported("FETCH ... WITH TIES / PERCENT"));
        }
        let limit = quantity.unwrap_or_else(|| number(1));
        match &mut query.limit_clause {
            Some(LimitClause::LimitOffset { limit: slot, .. }) if slot.is_none() => {
                *slot = Some(limit)
            }
            None => {
                query.limit_clause = Some(LimitClause::LimitOffset {
                    limit: Some(limit),
                    offset: None,
                    limit_by: Vec::new(),
                })
            }
            _ => return Err(unsupported("both LIMIT and FETCH")),
        }
    }
    if let Some(LimitClause::LimitOffset { limit, offset, .. }) = &mut query.limit_clause
        && let Some(Offset { rows, .. }) = offset
    {
        *rows = OffsetRows::None;
        if limit.is_none() {
            *limit = Some(number(-1));
        }
    }
    // Row locks: SQLite runs one writer at a time and its transactions are serializable.
    query.locks.clear();
    Ok(())
}
