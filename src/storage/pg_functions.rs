//! SQL functions (and the `generate_series` table) that the PostgreSQL dialect translation
//! (`frontend::pg::dialect`) emits, registered on every connection the engine opens: the
//! writer (which also replays DDL and applies changesets, so index expressions that use these
//! functions work on every node), the read pool and the describe connection.
//!
//! | function | PostgreSQL meaning it carries |
//! |---|---|
//! | `pg_like(text, pattern [, escape])` | `LIKE`: case-sensitive, `\` escapes by default |
//! | `pg_ilike(text, pattern [, escape])` | `ILIKE`: `LIKE` after Unicode lower-casing |
//! | `pg_cast(value, type)` | `value::type` with PostgreSQL's input rules and errors ([`cast_value`]) |
//! | `pg_not_null(table, column, value, ...)` | a NOT NULL constraint added by `ALTER TABLE ... ADD PRIMARY KEY` |
//! | `pg_check(ok, constraint, table)` | a CHECK constraint added by `ALTER TABLE ... ADD CONSTRAINT` |
//! | `generate_series(start, stop [, step])` | rusqlite's port of SQLite's series table |
//!
//! Every function is deterministic: the constraint ones sit in partial-index `WHERE` clauses,
//! which SQLite evaluates whenever a row's indexed columns change (and over every row when the
//! index is created) — an error there fails the statement, which is how a constraint added
//! after the fact is enforced. Errors carry PostgreSQL's message texts, which
//! `frontend::pg::error` maps to SQLSTATEs.

use std::fmt;

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, Error};

use super::datetime;

/// Registers every function and the series table on `conn`.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    rusqlite::vtab::series::load_module(conn)?;
    let flags = FunctionFlags::SQLITE_UTF8
        | FunctionFlags::SQLITE_DETERMINISTIC
        | FunctionFlags::SQLITE_INNOCUOUS;
    for arguments in [2, 3] {
        conn.create_scalar_function("pg_like", arguments, flags, |ctx| like(ctx, false))?;
        conn.create_scalar_function("pg_ilike", arguments, flags, |ctx| like(ctx, true))?;
    }
    conn.create_scalar_function("pg_cast", 2, flags, |ctx| {
        let ty = ctx.get::<String>(1)?;
        cast_value(ctx.get_raw(0), &ty).map_err(|e| Error::UserFunctionError(Box::new(e)))
    })?;
    conn.create_scalar_function("pg_not_null", -1, flags, not_null)?;
    conn.create_scalar_function("pg_check", 3, flags, check)?;
    Ok(())
}

/// An error with PostgreSQL's SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PgValueError {
    pub code: &'static str,
    pub message: String,
}

fn value_error(code: &'static str, message: impl Into<String>) -> PgValueError {
    PgValueError {
        code,
        message: message.into(),
    }
}

fn user_error(code: &'static str, message: String) -> Error {
    Error::UserFunctionError(Box::new(value_error(code, message)))
}

// ---- LIKE / ILIKE ----------------------------------------------------------------------------

/// One element of a compiled LIKE pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternItem {
    Literal(char),
    /// `_`
    AnyChar,
    /// `%`
    AnyRun,
}

/// A compiled pattern (kept by SQLite per statement while the pattern argument is constant).
#[derive(Debug)]
struct Pattern(Vec<PatternItem>);

fn like(ctx: &Context<'_>, fold_case: bool) -> rusqlite::Result<Option<bool>> {
    if (0..ctx.len()).any(|i| ctx.get_raw(i) == ValueRef::Null) {
        return Ok(None);
    }
    let escape = if ctx.len() > 2 {
        let escape = text_of(ctx.get_raw(2));
        let mut chars = escape.chars();
        match (chars.next(), chars.next()) {
            (None, _) => None,
            (Some(c), None) => Some(c),
            _ => {
                return Err(user_error(
                    "22019",
                    "invalid escape string: it must be empty or one character".into(),
                ));
            }
        }
    } else {
        Some('\\')
    };
    let pattern = ctx.get_or_create_aux(1, |raw| -> Result<Pattern, PgValueError> {
        let text = text_of(raw);
        let text = if fold_case { text.to_lowercase() } else { text };
        compile_pattern(&text, escape).map(Pattern)
    })?;
    let subject = text_of(ctx.get_raw(0));
    let subject: Vec<char> = if fold_case {
        subject.to_lowercase().chars().collect()
    } else {
        subject.chars().collect()
    };
    Ok(Some(matches_pattern(&subject, &pattern.0)))
}

/// A value as text, the way SQLite's own LIKE sees it.
fn text_of(value: ValueRef<'_>) -> String {
    match value {
        ValueRef::Null => String::new(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
    }
}

fn compile_pattern(pattern: &str, escape: Option<char>) -> Result<Vec<PatternItem>, PgValueError> {
    let mut items = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            match chars.next() {
                Some(escaped) => items.push(PatternItem::Literal(escaped)),
                None => {
                    return Err(value_error(
                        "22025",
                        "LIKE pattern must not end with escape character",
                    ));
                }
            }
        } else if c == '%' {
            if items.last() != Some(&PatternItem::AnyRun) {
                items.push(PatternItem::AnyRun);
            }
        } else if c == '_' {
            items.push(PatternItem::AnyChar);
        } else {
            items.push(PatternItem::Literal(c));
        }
    }
    Ok(items)
}

/// Wildcard matching with one backtrack point (the last `%`): linear for most patterns,
/// O(text × pattern) at worst.
fn matches_pattern(text: &[char], pattern: &[PatternItem]) -> bool {
    let (mut t, mut p) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(PatternItem::AnyRun) => {
                backtrack = Some((p + 1, t));
                p += 1;
            }
            Some(PatternItem::AnyChar) => {
                t += 1;
                p += 1;
            }
            Some(PatternItem::Literal(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            _ => match backtrack {
                Some((after_run, start)) => {
                    p = after_run;
                    t = start + 1;
                    backtrack = Some((after_run, start + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|i| *i == PatternItem::AnyRun)
}

// ---- constraints added after the fact ---------------------------------------------------------

/// `pg_not_null(table, column, value, column, value, ...)`: 0, or an error naming the first
/// column whose value is NULL.
fn not_null(ctx: &Context<'_>) -> rusqlite::Result<i64> {
    let table = text_of(ctx.get_raw(0));
    let mut i = 1;
    while i + 1 < ctx.len() {
        if ctx.get_raw(i + 1) == ValueRef::Null {
            let column = text_of(ctx.get_raw(i));
            return Err(user_error(
                "23502",
                format!(
                    "null value in column \"{column}\" of relation \"{table}\" violates not-null constraint"
                ),
            ));
        }
        i += 2;
    }
    Ok(0)
}

/// `pg_check(ok, constraint, table)`: 0 unless `ok` is false (NULL passes, as in a CHECK).
fn check(ctx: &Context<'_>) -> rusqlite::Result<i64> {
    let failed = match ctx.get_raw(0) {
        ValueRef::Integer(i) => i == 0,
        ValueRef::Real(f) => f == 0.0,
        _ => false,
    };
    if failed {
        return Err(user_error(
            "23514",
            format!(
                "new row for relation \"{}\" violates check constraint \"{}\"",
                text_of(ctx.get_raw(2)),
                text_of(ctx.get_raw(1))
            ),
        ));
    }
    Ok(0)
}

// ---- casts -----------------------------------------------------------------------------------

/// The PostgreSQL types `pg_cast` converts to, by the name the translation passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CastType {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    Bool,
    Date,
    Time,
    Timestamp,
    Timestamptz,
    Json,
    Uuid,
    Bytea,
}

impl CastType {
    pub fn from_name(name: &str) -> Option<CastType> {
        Some(match name {
            "int2" => CastType::Int2,
            "int4" => CastType::Int4,
            "int8" => CastType::Int8,
            "float4" => CastType::Float4,
            "float8" => CastType::Float8,
            "numeric" => CastType::Numeric,
            "bool" => CastType::Bool,
            "date" => CastType::Date,
            "time" => CastType::Time,
            "timestamp" => CastType::Timestamp,
            "timestamptz" => CastType::Timestamptz,
            "json" => CastType::Json,
            "uuid" => CastType::Uuid,
            "bytea" => CastType::Bytea,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            CastType::Int2 => "int2",
            CastType::Int4 => "int4",
            CastType::Int8 => "int8",
            CastType::Float4 => "float4",
            CastType::Float8 => "float8",
            CastType::Numeric => "numeric",
            CastType::Bool => "bool",
            CastType::Date => "date",
            CastType::Time => "time",
            CastType::Timestamp => "timestamp",
            CastType::Timestamptz => "timestamptz",
            CastType::Json => "json",
            CastType::Uuid => "uuid",
            CastType::Bytea => "bytea",
        }
    }

    /// The name PostgreSQL uses in its messages.
    fn sql_name(self) -> &'static str {
        match self {
            CastType::Int2 => "smallint",
            CastType::Int4 => "integer",
            CastType::Int8 => "bigint",
            CastType::Float4 => "real",
            CastType::Float8 => "double precision",
            CastType::Numeric => "numeric",
            CastType::Bool => "boolean",
            CastType::Date => "date",
            CastType::Time => "time without time zone",
            CastType::Timestamp => "timestamp without time zone",
            CastType::Timestamptz => "timestamp with time zone",
            CastType::Json => "json",
            CastType::Uuid => "uuid",
            CastType::Bytea => "bytea",
        }
    }
}

impl fmt::Display for CastType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql_name())
    }
}

/// `value::ty` with PostgreSQL's rules: integers round half away from zero and are range
/// checked, text must be a valid literal of the type (else 22P02 / 22007), dates and
/// timestamps come out in PostgreSQL's ISO text form (timestamps with a zone are converted to
/// UTC and stored without one: the session time zone is always UTC). NULL stays NULL.
pub fn cast_value(value: ValueRef<'_>, ty: &str) -> Result<Value, PgValueError> {
    let Some(ty) = CastType::from_name(ty) else {
        return Err(value_error(
            "42704",
            format!("type \"{ty}\" does not exist"),
        ));
    };
    if value == ValueRef::Null {
        return Ok(Value::Null);
    }
    let invalid = |text: &str| {
        let code = match ty {
            CastType::Date | CastType::Time | CastType::Timestamp | CastType::Timestamptz => {
                "22007"
            }
            _ => "22P02",
        };
        value_error(
            code,
            format!("invalid input syntax for type {ty}: \"{text}\""),
        )
    };
    let cannot = |from: &str| value_error("42846", format!("cannot cast type {from} to {ty}"));
    match ty {
        CastType::Int2 | CastType::Int4 | CastType::Int8 => {
            let (low, high) = match ty {
                CastType::Int2 => (i16::MIN as i64, i16::MAX as i64),
                CastType::Int4 => (i32::MIN as i64, i32::MAX as i64),
                _ => (i64::MIN, i64::MAX),
            };
            let out_of_range = || value_error("22003", format!("{ty} out of range"));
            let n = match value {
                ValueRef::Integer(i) => i,
                ValueRef::Real(f) => {
                    // i64's range as f64: [-2^63, 2^63).
                    let rounded = f.round();
                    if !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&rounded) {
                        return Err(out_of_range());
                    }
                    rounded as i64
                }
                ValueRef::Text(t) => {
                    let text = String::from_utf8_lossy(t);
                    let trimmed = text.trim();
                    let digits = trimmed.strip_prefix(['+', '-']).unwrap_or(trimmed);
                    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(invalid(&text));
                    }
                    trimmed
                        .trim_start_matches('+')
                        .parse::<i64>()
                        .map_err(|_| out_of_range())?
                }
                ValueRef::Blob(_) => return Err(cannot("bytea")),
                ValueRef::Null => unreachable_null(),
            };
            if n < low || n > high {
                return Err(out_of_range());
            }
            Ok(Value::Integer(n))
        }
        CastType::Float4 | CastType::Float8 | CastType::Numeric => {
            let f = match value {
                ValueRef::Integer(i) if ty == CastType::Numeric => return Ok(Value::Integer(i)),
                ValueRef::Integer(i) => i as f64,
                ValueRef::Real(f) => f,
                ValueRef::Text(t) => {
                    let text = String::from_utf8_lossy(t);
                    let trimmed = text.trim();
                    if ty == CastType::Numeric
                        && let Ok(i) = trimmed.trim_start_matches('+').parse::<i64>()
                    {
                        return Ok(Value::Integer(i));
                    }
                    parse_float(trimmed).ok_or_else(|| invalid(&text))?
                }
                ValueRef::Blob(_) => return Err(cannot("bytea")),
                ValueRef::Null => unreachable_null(),
            };
            Ok(Value::Real(if ty == CastType::Float4 {
                f as f32 as f64
            } else {
                f
            }))
        }
        CastType::Bool => match value {
            ValueRef::Integer(i) => Ok(Value::Integer((i != 0) as i64)),
            ValueRef::Real(_) => Err(cannot("double precision")),
            ValueRef::Text(t) => {
                let text = String::from_utf8_lossy(t);
                parse_bool(&text)
                    .map(|b| Value::Integer(b as i64))
                    .ok_or_else(|| invalid(&text))
            }
            ValueRef::Blob(_) => Err(cannot("bytea")),
            ValueRef::Null => unreachable_null(),
        },
        CastType::Date | CastType::Time | CastType::Timestamp | CastType::Timestamptz => {
            let text = match value {
                ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                ValueRef::Integer(_) => return Err(cannot("integer")),
                ValueRef::Real(_) => return Err(cannot("double precision")),
                ValueRef::Blob(_) => return Err(cannot("bytea")),
                ValueRef::Null => unreachable_null(),
            };
            let kind = match ty {
                CastType::Date => datetime::Kind::Date,
                CastType::Time => datetime::Kind::Time,
                CastType::Timestamp => datetime::Kind::Timestamp,
                _ => datetime::Kind::Timestamptz,
            };
            datetime::stored_form(&text, kind)
                .map(Value::Text)
                .map_err(|e| match e {
                    datetime::Invalid::Syntax => invalid(&text),
                    datetime::Invalid::Range => value_error(
                        "22008",
                        format!("date/time field value out of range: \"{text}\""),
                    ),
                })
        }
        CastType::Json => match value {
            ValueRef::Text(t) => {
                let text = String::from_utf8_lossy(t);
                serde_json::from_str::<serde::de::IgnoredAny>(&text)
                    .map(|_| Value::Text(text.clone().into_owned()))
                    .map_err(|_| invalid(&text))
            }
            ValueRef::Integer(_) => Err(cannot("integer")),
            ValueRef::Real(_) => Err(cannot("double precision")),
            ValueRef::Blob(_) => Err(cannot("bytea")),
            ValueRef::Null => unreachable_null(),
        },
        CastType::Uuid => match value {
            ValueRef::Text(t) => {
                let text = String::from_utf8_lossy(t);
                parse_uuid(&text)
                    .map(Value::Text)
                    .ok_or_else(|| invalid(&text))
            }
            ValueRef::Integer(_) => Err(cannot("integer")),
            ValueRef::Real(_) => Err(cannot("double precision")),
            ValueRef::Blob(_) => Err(cannot("bytea")),
            ValueRef::Null => unreachable_null(),
        },
        CastType::Bytea => match value {
            ValueRef::Blob(b) => Ok(Value::Blob(b.to_vec())),
            ValueRef::Text(t) => {
                let text = String::from_utf8_lossy(t);
                parse_bytea(&text)
                    .map(Value::Blob)
                    .ok_or_else(|| invalid(&text))
            }
            ValueRef::Integer(_) => Err(cannot("integer")),
            ValueRef::Real(_) => Err(cannot("double precision")),
            ValueRef::Null => unreachable_null(),
        },
    }
}

/// NULL returned early in [`cast_value`]; the match arms above still have to name it.
fn unreachable_null() -> ! {
    unreachable!("NULL is handled before the conversion")
}

fn parse_float(text: &str) -> Option<f64> {
    match text.to_ascii_lowercase().as_str() {
        "infinity" | "+infinity" | "inf" | "+inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        // SQLite cannot store NaN (it becomes NULL): refuse it rather than lose it.
        "nan" => None,
        lower => {
            let plain = lower
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'+' | b'-'));
            if plain {
                lower.parse::<f64>().ok()
            } else {
                None
            }
        }
    }
}

/// PostgreSQL's boolean input: any unique prefix of true/false/yes/no, on/off, 1/0.
pub fn parse_bool(text: &str) -> Option<bool> {
    let lower = text.trim().to_ascii_lowercase();
    if lower.is_empty() {
        return None;
    }
    let is_prefix = |word: &str, min: usize| lower.len() >= min && word.starts_with(&lower);
    if is_prefix("true", 1) || is_prefix("yes", 1) || is_prefix("on", 2) || lower == "1" {
        Some(true)
    } else if is_prefix("false", 1) || is_prefix("no", 1) || is_prefix("off", 2) || lower == "0" {
        Some(false)
    } else {
        None
    }
}

/// A UUID in any of PostgreSQL's accepted spellings, as lower-case 8-4-4-4-12.
fn parse_uuid(text: &str) -> Option<String> {
    let trimmed = text.trim();
    let inner = trimmed
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(trimmed);
    let hex: String = inner.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// bytea input: `\x` followed by hex digits, or the escape format (`\\` and `\ooo`).
fn parse_bytea(text: &str) -> Option<Vec<u8>> {
    if let Some(hex) = text
        .strip_prefix("\\x")
        .or_else(|| text.strip_prefix("\\X"))
    {
        let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !digits.len().is_multiple_of(2) {
            return None;
        }
        return digits
            .chunks(2)
            .map(|pair| {
                let s = std::str::from_utf8(pair).ok()?;
                u8::from_str_radix(s, 16).ok()
            })
            .collect();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let octal = bytes.get(i + 1..i + 4)?;
            if !octal.iter().all(|b| (b'0'..=b'7').contains(b)) || octal[0] > b'3' {
                return None;
            }
            out.push(octal.iter().fold(0u8, |acc, b| acc * 8 + (b - b'0')));
            i += 4;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cast(value: Value, ty: &str) -> Result<Value, String> {
        let raw = ValueRef::from(&value);
        cast_value(raw, ty).map_err(|e| format!("{} {}", e.code, e.message))
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn casts_follow_postgres_rules() {
        assert_eq!(cast(text(" 42 "), "int4"), Ok(Value::Integer(42)));
        assert_eq!(cast(Value::Real(3.5), "int4"), Ok(Value::Integer(4)));
        assert_eq!(cast(Value::Real(-3.5), "int8"), Ok(Value::Integer(-4)));
        assert_eq!(
            cast(text("12abc"), "int4"),
            Err("22P02 invalid input syntax for type integer: \"12abc\"".into())
        );
        assert_eq!(
            cast(Value::Integer(70000), "int2"),
            Err("22003 smallint out of range".into())
        );
        assert_eq!(cast(text("1.50"), "numeric"), Ok(Value::Real(1.5)));
        assert_eq!(cast(text("7"), "numeric"), Ok(Value::Integer(7)));
        assert_eq!(cast(text("yes"), "bool"), Ok(Value::Integer(1)));
        assert_eq!(cast(text("of"), "bool"), Ok(Value::Integer(0)));
        assert!(cast(text("o"), "bool").is_err());
        assert_eq!(cast(Value::Null, "int4"), Ok(Value::Null));
        assert_eq!(cast(text("2024-02-29"), "date"), Ok(text("2024-02-29")));
        assert_eq!(
            cast(text("2023-02-29"), "date"),
            Err("22008 date/time field value out of range: \"2023-02-29\"".into())
        );
        assert_eq!(
            cast(text("2024-01-01 01:30:00.250+02"), "timestamptz"),
            Ok(text("2023-12-31 23:30:00.25"))
        );
        assert_eq!(
            cast(text("2024-01-01T01:30+02:00"), "timestamp"),
            Ok(text("2024-01-01 01:30:00"))
        );
        assert_eq!(
            cast(text("2024-3-5"), "timestamp"),
            Ok(text("2024-03-05 00:00:00"))
        );
        assert!(cast(text("yesterday"), "date").is_err());
        assert_eq!(
            cast(text("23:59:59.9999999"), "time"),
            Err("22008 date/time field value out of range: \"23:59:59.9999999\"".into())
        );
        assert_eq!(
            cast(text("{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}"), "uuid"),
            Ok(text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"))
        );
        assert_eq!(
            cast(text("\\x00ff"), "bytea"),
            Ok(Value::Blob(vec![0, 255]))
        );
        assert_eq!(
            cast(text("a\\\\b\\001"), "bytea"),
            Ok(Value::Blob(b"a\\b\x01".to_vec()))
        );
        assert_eq!(cast(text("{\"a\": [1]}"), "json"), Ok(text("{\"a\": [1]}")));
        assert!(cast(text("{a}"), "json").is_err());
    }

    fn like(text: &str, pattern: &str) -> bool {
        let compiled = compile_pattern(pattern, Some('\\')).expect("pattern");
        matches_pattern(&text.chars().collect::<Vec<_>>(), &compiled)
    }

    #[test]
    fn like_matches_like_postgres() {
        assert!(like("abc", "abc"));
        assert!(!like("abc", "ABC"));
        assert!(like("abc", "a%"));
        assert!(like("abc", "%c"));
        assert!(like("abc", "_b_"));
        assert!(!like("abc", "_b"));
        assert!(like("a%c", "a\\%c"));
        assert!(!like("abc", "a\\%c"));
        assert!(like("mississippi", "%iss%ppi"));
        assert!(like("", "%"));
        assert!(!like("", "_"));
        assert!(like("aaa", "%a%a%a%"));
        assert!(!like("aa", "%a%a%a%"));
        assert!(compile_pattern("abc\\", Some('\\')).is_err());
    }

    #[test]
    fn functions_work_in_sqlite() {
        let conn = Connection::open_in_memory().expect("open");
        register(&conn).expect("register");
        let one = |sql: &str| -> rusqlite::Result<Value> { conn.query_row(sql, [], |r| r.get(0)) };
        assert_eq!(
            one("SELECT pg_like('Abc', 'a%')").ok(),
            Some(Value::Integer(0))
        );
        assert_eq!(
            one("SELECT pg_ilike('Äbc', 'ä%')").ok(),
            Some(Value::Integer(1))
        );
        assert_eq!(
            one("SELECT pg_like('a_c', 'a#_c', '#')").ok(),
            Some(Value::Integer(1))
        );
        assert_eq!(one("SELECT pg_like(NULL, 'a')").ok(), Some(Value::Null));
        assert_eq!(
            one("SELECT sum(value) FROM generate_series(1, 100)").ok(),
            Some(Value::Integer(5050))
        );
        let error = one("SELECT pg_cast('x', 'int4')").expect_err("invalid");
        assert!(
            error
                .to_string()
                .contains("invalid input syntax for type integer")
        );
        conn.execute_batch(
            "CREATE TABLE t(a INT, b INT); INSERT INTO t VALUES (1, 2);
             CREATE INDEX t_a_not_null ON t(a) WHERE pg_not_null('t', 'a', a);",
        )
        .expect("constraint index");
        let error = conn
            .execute("INSERT INTO t VALUES (NULL, 1)", [])
            .expect_err("null refused");
        assert!(
            error.to_string().contains("null value in column \"a\""),
            "{error}"
        );
        conn.execute("UPDATE t SET b = NULL", [])
            .expect("other column may be null");
        let error = conn
            .execute_batch("CREATE INDEX t_b_not_null ON t(b) WHERE pg_not_null('t', 'b', b)")
            .expect_err("existing NULL refused");
        assert!(
            error.to_string().contains("null value in column \"b\""),
            "{error}"
        );
        conn.execute_batch("CREATE INDEX t_check ON t(a) WHERE pg_check(a > 0, 't_a_check', 't')")
            .expect("check index");
        let error = conn
            .execute("INSERT INTO t VALUES (-1, 1)", [])
            .expect_err("check refused");
        assert!(
            error
                .to_string()
                .contains("violates check constraint \"t_a_check\"")
        );
    }
}
