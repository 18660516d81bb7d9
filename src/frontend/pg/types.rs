//! SQLite values ⇄ PostgreSQL types.
//!
//! A result column's PostgreSQL type comes, in order, from its declared type in the schema
//! ([`type_for_decltype`], PostgreSQL's names first: `INTEGER` is int4, `BIGINT` int8, `REAL`
//! float4, then SQLite's affinity rules), from the first non-NULL value's runtime type when the
//! rows are at hand (simple query), from the expression's shape ([`type_for_expression`]:
//! `count(*)` is int8), and else `text`. Every value of the column is then converted to that
//! type when encoded ([`encode`]); a value that cannot be (`'abc'` in an int8 column) is an
//! error with PostgreSQL's SQLSTATE (22P02, 22003), never a silently wrong answer.
//!
//! Parameters arrive in text or binary format and become SQLite values by their type
//! ([`decode_parameter`]).
//!
//! Dates, times and timestamps are SQLite text in one stored form
//! ([`crate::storage::datetime`]): results are parsed from it (any ISO-8601 text is read; one
//! that is not a value of the column's type is 22007/22008) and printed as PostgreSQL prints
//! them with `DateStyle = ISO` and `TimeZone = UTC`, or sent as PostgreSQL's binary
//! quantities; parameters, text or binary, become the stored form, so that they compare with
//! stored values as text.

use bytes::{BufMut, BytesMut};
use pgwire::api::Type;

use crate::storage::datetime::{self, Kind};
use crate::storage::request::SqlValue;

/// A value that does not fit its PostgreSQL type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    pub code: &'static str,
    pub message: String,
}

impl ValueError {
    fn invalid(ty: &Type, text: &str) -> ValueError {
        ValueError {
            code: "22P02",
            message: format!(
                "invalid input syntax for type {}: \"{}\"",
                display_name(ty),
                text.chars().take(64).collect::<String>()
            ),
        }
    }

    fn out_of_range(ty: &Type) -> ValueError {
        ValueError {
            code: "22003",
            message: format!("{} out of range", display_name(ty)),
        }
    }

    fn datetime(ty: &Type, text: &str, why: datetime::Invalid) -> ValueError {
        let text = text.chars().take(64).collect::<String>();
        ValueError {
            code: why.sqlstate(),
            message: match why {
                datetime::Invalid::Syntax => format!(
                    "invalid input syntax for type {}: \"{text}\"",
                    display_name(ty)
                ),
                datetime::Invalid::Range => {
                    format!("date/time field value out of range: \"{text}\"")
                }
            },
        }
    }

    fn unsupported(ty: &Type) -> ValueError {
        ValueError {
            code: "0A000",
            message: format!(
                "binary format for type {} is not supported yet; use text format",
                ty.name()
            ),
        }
    }
}

fn display_name(ty: &Type) -> &'static str {
    match *ty {
        Type::INT2 => "smallint",
        Type::INT4 => "integer",
        Type::INT8 => "bigint",
        Type::FLOAT4 => "real",
        Type::FLOAT8 => "double precision",
        Type::BOOL => "boolean",
        Type::NUMERIC => "numeric",
        Type::UUID => "uuid",
        Type::BYTEA => "bytea",
        Type::JSON => "json",
        Type::JSONB => "jsonb",
        Type::DATE => "date",
        Type::TIME => "time without time zone",
        Type::TIMESTAMP => "timestamp without time zone",
        Type::TIMESTAMPTZ => "timestamp with time zone",
        _ => "text",
    }
}

/// The date/time kind of `ty`, if it is one.
fn datetime_kind(ty: &Type) -> Option<Kind> {
    match *ty {
        Type::DATE => Some(Kind::Date),
        Type::TIME => Some(Kind::Time),
        Type::TIMESTAMP => Some(Kind::Timestamp),
        Type::TIMESTAMPTZ => Some(Kind::Timestamptz),
        _ => None,
    }
}

/// The PostgreSQL type of a column declared as `decltype`; `None` when the declaration does
/// not decide it (no type, or NUMERIC affinity like `DATETIME`), so the values do.
pub fn type_for_decltype(decltype: &str) -> Option<Type> {
    let upper = decltype.trim().to_ascii_uppercase();
    let base = upper.split('(').next().unwrap_or("").trim();
    let exact = match base {
        "" => return None,
        // The catalog's own declared types (`crate::storage::catalog::tables`).
        "OID" => Type::OID,
        "NAMETEXT" => Type::NAME,
        "PGCHAR" => Type::CHAR,
        "INT2VECTOR" => Type::INT2_VECTOR,
        "OIDVECTOR" => Type::OID_VECTOR,
        "BOOL[]" => Type::BOOL_ARRAY,
        "INT2[]" => Type::INT2_ARRAY,
        "INT4[]" => Type::INT4_ARRAY,
        "INT8[]" => Type::INT8_ARRAY,
        "OID[]" => Type::OID_ARRAY,
        "TEXT[]" => Type::TEXT_ARRAY,
        "NAMETEXT[]" => Type::NAME_ARRAY,
        "PGCHAR[]" => Type::CHAR_ARRAY,
        "BOOL" | "BOOLEAN" => Type::BOOL,
        "SMALLINT" | "INT2" | "SMALLSERIAL" | "SERIAL2" => Type::INT2,
        "INT" | "INTEGER" | "INT4" | "SERIAL" | "SERIAL4" | "MEDIUMINT" => Type::INT4,
        "BIGINT" | "INT8" | "BIGSERIAL" | "SERIAL8" => Type::INT8,
        "REAL" | "FLOAT4" => Type::FLOAT4,
        "DOUBLE" | "DOUBLE PRECISION" | "FLOAT" | "FLOAT8" => Type::FLOAT8,
        "NUMERIC" | "DECIMAL" => Type::NUMERIC,
        "TEXT" | "CLOB" => Type::TEXT,
        "VARCHAR" | "CHARACTER VARYING" | "VARYING CHARACTER" | "NVARCHAR" | "CHAR"
        | "CHARACTER" | "NCHAR" | "NATIVE CHARACTER" => Type::VARCHAR,
        "BYTEA" | "BLOB" => Type::BYTEA,
        "JSON" => Type::JSON,
        "JSONB" => Type::JSONB,
        "UUID" => Type::UUID,
        // As the translator declares them (`dialect::types`), and PostgreSQL's long names.
        "DATE" => Type::DATE,
        "TIME" | "TIME WITHOUT TIME ZONE" => Type::TIME,
        "TIMESTAMP" | "TIMESTAMP WITHOUT TIME ZONE" => Type::TIMESTAMP,
        "TIMESTAMPTZ" | "TIMESTAMP WITH TIME ZONE" => Type::TIMESTAMPTZ,
        // SQLite's affinity rules, in its order.
        other if other.contains("INT") => Type::INT8,
        other if other.contains("CHAR") || other.contains("CLOB") || other.contains("TEXT") => {
            Type::TEXT
        }
        other if other.contains("BLOB") => Type::BYTEA,
        other if other.contains("REAL") || other.contains("FLOA") || other.contains("DOUB") => {
            Type::FLOAT8
        }
        _ => return None,
    };
    Some(exact)
}

/// The PostgreSQL type of a value by its SQLite storage class.
pub fn type_for_value(value: &SqlValue) -> Option<Type> {
    match value {
        SqlValue::Null => None,
        SqlValue::Integer(_) => Some(Type::INT8),
        SqlValue::Real(_) => Some(Type::FLOAT8),
        SqlValue::Text(_) => Some(Type::TEXT),
        SqlValue::Blob(_) => Some(Type::BYTEA),
    }
}

/// The type of an expression column, judged from its text (SQLite names such a column after
/// the expression): `count(...)` is int8, literals are what they look like. `None` if unsure.
pub fn type_for_expression(name: &str) -> Option<Type> {
    let lower = name.trim().to_ascii_lowercase();
    const INTEGER_FUNCTIONS: [&str; 9] = [
        "snowflake_id(",
        "count(",
        "length(",
        "instr(",
        "changes(",
        "total_changes(",
        "last_insert_rowid(",
        "random(",
        "unicode(",
    ];
    if INTEGER_FUNCTIONS.iter().any(|f| lower.starts_with(f)) {
        return Some(Type::INT8);
    }
    if lower.starts_with("avg(") || lower.starts_with("total(") {
        return Some(Type::FLOAT8);
    }
    if lower == "true" || lower == "false" {
        return Some(Type::BOOL);
    }
    if lower.starts_with('\'') {
        return Some(Type::TEXT);
    }
    if let Ok(i) = lower.parse::<i64>() {
        return Some(if i32::try_from(i).is_ok() {
            Type::INT4
        } else {
            Type::INT8
        });
    }
    if lower.starts_with(|c: char| c.is_ascii_digit() || c == '.') && lower.parse::<f64>().is_ok() {
        return Some(Type::FLOAT8);
    }
    None
}

/// Result column types when the rows are known (simple query): declared type, else the first
/// non-NULL value's, else the expression's shape, else text.
pub fn result_types(
    columns: &[String],
    decltypes: &[Option<String>],
    rows: &[Vec<SqlValue>],
) -> Vec<Type> {
    columns
        .iter()
        .enumerate()
        .map(|(i, name)| {
            decltypes
                .get(i)
                .and_then(|d| d.as_deref())
                .and_then(type_for_decltype)
                .or_else(|| {
                    rows.iter()
                        .filter_map(|row| row.get(i))
                        .find_map(type_for_value)
                })
                .or_else(|| type_for_expression(name))
                .unwrap_or(Type::TEXT)
        })
        .collect()
}

/// Result column types before execution (Describe): declared type, else the expression's
/// shape, else text.
pub fn described_types(columns: &[String], decltypes: &[Option<String>]) -> Vec<Type> {
    columns
        .iter()
        .enumerate()
        .map(|(i, name)| {
            decltypes
                .get(i)
                .and_then(|d| d.as_deref())
                .and_then(type_for_decltype)
                .or_else(|| type_for_expression(name))
                .unwrap_or(Type::TEXT)
        })
        .collect()
}

/// Appends one DataRow field (length word and bytes; length -1 for NULL).
pub fn encode(
    out: &mut BytesMut,
    value: &SqlValue,
    ty: &Type,
    binary: bool,
) -> Result<(), ValueError> {
    if matches!(value, SqlValue::Null) {
        out.put_i32(-1);
        return Ok(());
    }
    let length_at = out.len();
    out.put_i32(0);
    encode_body(out, value, ty, binary)?;
    let length = out.len() - length_at - 4;
    let length = i32::try_from(length).map_err(|_| ValueError {
        code: "54000",
        message: format!("a value of {length} bytes does not fit in a message"),
    })?;
    out[length_at..length_at + 4].copy_from_slice(&length.to_be_bytes());
    Ok(())
}

/// A value in PostgreSQL's text format (`None` for NULL), as COPY TO writes it.
pub fn encode_text(value: &SqlValue, ty: &Type) -> Result<Option<String>, ValueError> {
    if matches!(value, SqlValue::Null) {
        return Ok(None);
    }
    let mut out = BytesMut::new();
    encode_body(&mut out, value, ty, false)?;
    Ok(Some(String::from_utf8_lossy(&out).into_owned()))
}

fn encode_body(
    out: &mut BytesMut,
    value: &SqlValue,
    ty: &Type,
    binary: bool,
) -> Result<(), ValueError> {
    if let Some(kind) = datetime_kind(ty) {
        return encode_datetime(out, value, ty, kind, binary);
    }
    match *ty {
        Type::BOOL => {
            let b = to_bool(value, ty)?;
            if binary {
                out.put_u8(u8::from(b));
            } else {
                out.put_u8(if b { b't' } else { b'f' });
            }
        }
        Type::INT2 => {
            let i = i16::try_from(to_i64(value, ty)?).map_err(|_| ValueError::out_of_range(ty))?;
            put_int(out, binary, i.to_be_bytes().as_slice(), i.into());
        }
        Type::INT4 => {
            let i = i32::try_from(to_i64(value, ty)?).map_err(|_| ValueError::out_of_range(ty))?;
            put_int(out, binary, i.to_be_bytes().as_slice(), i.into());
        }
        Type::INT8 => {
            let i = to_i64(value, ty)?;
            put_int(out, binary, i.to_be_bytes().as_slice(), i);
        }
        Type::FLOAT4 => {
            let f = to_f64(value, ty)? as f32;
            if binary {
                out.put_f32(f);
            } else {
                out.put_slice(format_float(f64::from(f), true).as_bytes());
            }
        }
        Type::FLOAT8 => {
            let f = to_f64(value, ty)?;
            if binary {
                out.put_f64(f);
            } else {
                out.put_slice(format_float(f, false).as_bytes());
            }
        }
        Type::NUMERIC => {
            let text = match value {
                SqlValue::Integer(i) => i.to_string(),
                SqlValue::Real(f) if f.is_nan() => "NaN".to_owned(),
                SqlValue::Real(f) if f.is_infinite() => {
                    if *f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
                }
                SqlValue::Real(f) => format!("{f}"),
                SqlValue::Text(s) => s.trim().to_owned(),
                SqlValue::Blob(b) => String::from_utf8_lossy(b).into_owned(),
                SqlValue::Null => String::new(),
            };
            let numeric = Numeric::parse(&text).ok_or_else(|| ValueError::invalid(ty, &text))?;
            if binary {
                numeric.write_binary(out);
            } else {
                out.put_slice(numeric.to_text().as_bytes());
            }
        }
        Type::BYTEA => {
            let bytes: Vec<u8> = match value {
                SqlValue::Blob(b) => b.clone(),
                other => text_of(other).into_bytes(),
            };
            if binary {
                out.put_slice(&bytes);
            } else {
                out.put_slice(b"\\x");
                out.put_slice(hex(&bytes).as_bytes());
            }
        }
        Type::UUID => {
            let uuid = match value {
                SqlValue::Blob(b) if b.len() == 16 => {
                    let mut u = [0u8; 16];
                    u.copy_from_slice(b);
                    u
                }
                other => {
                    let text = text_of(other);
                    parse_uuid(&text).ok_or_else(|| ValueError::invalid(ty, &text))?
                }
            };
            if binary {
                out.put_slice(&uuid);
            } else {
                out.put_slice(format_uuid(&uuid).as_bytes());
            }
        }
        Type::JSONB if binary => {
            out.put_u8(1);
            out.put_slice(text_of(value).as_bytes());
        }
        Type::OID => {
            let oid =
                u32::try_from(to_i64(value, ty)?).map_err(|_| ValueError::out_of_range(ty))?;
            put_int(out, binary, oid.to_be_bytes().as_slice(), oid.into());
        }
        Type::INT2_VECTOR | Type::OID_VECTOR => {
            if binary {
                return Err(ValueError::unsupported(ty));
            }
            let items = json_items(value, ty)?;
            let words: Vec<String> = items.iter().map(json_item_text).collect();
            out.put_slice(words.join(" ").as_bytes());
        }
        Type::BOOL_ARRAY
        | Type::INT2_ARRAY
        | Type::INT4_ARRAY
        | Type::INT8_ARRAY
        | Type::OID_ARRAY
        | Type::TEXT_ARRAY
        | Type::NAME_ARRAY
        | Type::CHAR_ARRAY => {
            if binary {
                return Err(ValueError::unsupported(ty));
            }
            let boolean = *ty == Type::BOOL_ARRAY;
            out.put_slice(array_literal(&json_items(value, ty)?, boolean).as_bytes());
        }
        _ => out.put_slice(text_of(value).as_bytes()),
    }
    Ok(())
}

/// A date, time or timestamp, from its stored text.
fn encode_datetime(
    out: &mut BytesMut,
    value: &SqlValue,
    ty: &Type,
    kind: Kind,
    binary: bool,
) -> Result<(), ValueError> {
    // Only text is the translator's form; a number could be a julian day or a unix time, and
    // guessing would risk a wrong answer.
    let SqlValue::Text(text) = value else {
        return Err(ValueError::datetime(
            ty,
            &text_of(value),
            datetime::Invalid::Syntax,
        ));
    };
    let failed = |why| ValueError::datetime(ty, text, why);
    if !binary {
        let printed = datetime::output_text(text, kind).map_err(failed)?;
        out.put_slice(printed.as_bytes());
        return Ok(());
    }
    let quantity = datetime::parse(text, kind).map_err(failed)?;
    match kind {
        Kind::Date => {
            let days = i32::try_from(quantity).map_err(|_| failed(datetime::Invalid::Range))?;
            out.put_i32(days);
        }
        _ => out.put_i64(quantity),
    }
    Ok(())
}

/// The elements of an array value: the catalog stores arrays as JSON arrays.
fn json_items(value: &SqlValue, ty: &Type) -> Result<Vec<serde_json::Value>, ValueError> {
    let text = text_of(value);
    serde_json::from_str(&text).map_err(|_| ValueError::invalid(ty, &text))
}

fn json_item_text(item: &serde_json::Value) -> String {
    match item {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// PostgreSQL's text form of a one-dimensional array: `{a,"b c",NULL}`.
fn array_literal(items: &[serde_json::Value], boolean: bool) -> String {
    let elements: Vec<String> = items
        .iter()
        .map(|item| match item {
            serde_json::Value::Null => "NULL".to_owned(),
            serde_json::Value::Bool(b) => if *b { "t" } else { "f" }.to_owned(),
            serde_json::Value::Number(n) if boolean => if n.as_f64().is_some_and(|f| f != 0.0) {
                "t"
            } else {
                "f"
            }
            .to_owned(),
            other => {
                let text = json_item_text(other);
                let plain = !text.is_empty()
                    && !text.eq_ignore_ascii_case("null")
                    && !text
                        .chars()
                        .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_whitespace());
                if plain {
                    text
                } else {
                    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
                }
            }
        })
        .collect();
    format!("{{{}}}", elements.join(","))
}

fn put_int(out: &mut BytesMut, binary: bool, be_bytes: &[u8], value: i64) {
    if binary {
        out.put_slice(be_bytes);
    } else {
        out.put_slice(value.to_string().as_bytes());
    }
}

/// A value as PostgreSQL text (what a `text` column shows).
fn text_of(value: &SqlValue) -> String {
    match value {
        SqlValue::Null => String::new(),
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Real(f) => format_float(*f, false),
        SqlValue::Text(s) => s.clone(),
        SqlValue::Blob(b) => match std::str::from_utf8(b) {
            Ok(s) => s.to_owned(),
            Err(_) => format!("\\x{}", hex(b)),
        },
    }
}

fn to_bool(value: &SqlValue, ty: &Type) -> Result<bool, ValueError> {
    match value {
        SqlValue::Integer(i) => Ok(*i != 0),
        SqlValue::Real(f) => Ok(*f != 0.0),
        SqlValue::Text(s) => parse_bool(s).ok_or_else(|| ValueError::invalid(ty, s)),
        other => Err(ValueError::invalid(ty, &text_of(other))),
    }
}

fn to_i64(value: &SqlValue, ty: &Type) -> Result<i64, ValueError> {
    match value {
        SqlValue::Integer(i) => Ok(*i),
        SqlValue::Real(f) => {
            let rounded = f.round_ties_even();
            if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&rounded) {
                Ok(rounded as i64)
            } else {
                Err(ValueError::out_of_range(ty))
            }
        }
        SqlValue::Text(s) => s.trim().parse().map_err(|_| ValueError::invalid(ty, s)),
        other => Err(ValueError::invalid(ty, &text_of(other))),
    }
}

fn to_f64(value: &SqlValue, ty: &Type) -> Result<f64, ValueError> {
    match value {
        SqlValue::Integer(i) => Ok(*i as f64),
        SqlValue::Real(f) => Ok(*f),
        SqlValue::Text(s) => parse_float(s).ok_or_else(|| ValueError::invalid(ty, s)),
        other => Err(ValueError::invalid(ty, &text_of(other))),
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn parse_float(text: &str) -> Option<f64> {
    match text.trim().to_ascii_lowercase().as_str() {
        "infinity" | "+infinity" | "inf" | "+inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

/// PostgreSQL's float output (`extra_float_digits` = 1, the default since PostgreSQL 12): the
/// shortest text that reads back exactly, exponent form when the decimal exponent is below -4
/// or at least 15 (6 for float4), `Infinity`, `NaN`.
pub fn format_float(value: f64, single: bool) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let scientific = if single {
        format!("{:e}", value as f32)
    } else {
        format!("{value:e}")
    };
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let limit = if single { 6 } else { 15 };
    let sign = if negative { "-" } else { "" };
    if digits.chars().all(|c| c == '0') {
        return format!("{sign}0");
    }
    if exponent < -4 || exponent >= limit {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{first}{fraction}e{exp_sign}{:02}", exponent.abs());
    }
    let point = exponent + 1; // digits before the decimal point
    if point <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!(
            "{sign}{digits}{}",
            "0".repeat(point as usize - digits.len())
        )
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{sign}{int}.{frac}")
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let high = (pair[0] as char).to_digit(16)?;
            let low = (pair[1] as char).to_digit(16)?;
            Some((high * 16 + low) as u8)
        })
        .collect()
}

fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let trimmed = text.trim().trim_start_matches('{').trim_end_matches('}');
    let digits: String = trimmed.chars().filter(|c| *c != '-').collect();
    if digits.len() != 32 {
        return None;
    }
    let bytes = unhex(&digits)?;
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&bytes);
    Some(uuid)
}

fn format_uuid(uuid: &[u8; 16]) -> String {
    let h = hex(uuid);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The SQLite value for a parameter of type `ty` sent in text or binary format (`None` is
/// SQL NULL).
pub fn decode_parameter(
    raw: Option<&[u8]>,
    ty: &Type,
    binary: bool,
) -> Result<SqlValue, ValueError> {
    let Some(raw) = raw else {
        return Ok(SqlValue::Null);
    };
    let wrong_size = || ValueError {
        code: "08P01",
        message: format!(
            "incorrect binary data format in a parameter of type {}",
            ty.name()
        ),
    };
    if let Some(kind) = datetime_kind(ty) {
        // The stored form, so that the value compares with stored values as text.
        let stored = if binary {
            let quantity = match kind {
                Kind::Date => i32::from_be_bytes(raw.try_into().map_err(|_| wrong_size())?).into(),
                _ => i64::from_be_bytes(raw.try_into().map_err(|_| wrong_size())?),
            };
            datetime::from_binary(quantity, kind)
                .map_err(|why| ValueError::datetime(ty, &quantity.to_string(), why))?
        } else {
            let text = utf8(raw, ty)?;
            datetime::stored_form(&text, kind)
                .map_err(|why| ValueError::datetime(ty, &text, why))?
        };
        return Ok(SqlValue::Text(stored));
    }
    if binary {
        return Ok(match *ty {
            Type::BOOL => match raw {
                [b] => SqlValue::Integer(i64::from(*b != 0)),
                _ => return Err(wrong_size()),
            },
            Type::INT2 => SqlValue::Integer(
                i16::from_be_bytes(raw.try_into().map_err(|_| wrong_size())?).into(),
            ),
            Type::INT4 => SqlValue::Integer(
                i32::from_be_bytes(raw.try_into().map_err(|_| wrong_size())?).into(),
            ),
            Type::INT8 => SqlValue::Integer(i64::from_be_bytes(
                raw.try_into().map_err(|_| wrong_size())?,
            )),
            Type::FLOAT4 => {
                SqlValue::Real(f32::from_be_bytes(raw.try_into().map_err(|_| wrong_size())?).into())
            }
            Type::FLOAT8 => SqlValue::Real(f64::from_be_bytes(
                raw.try_into().map_err(|_| wrong_size())?,
            )),
            Type::NUMERIC => {
                let text = Numeric::read_binary(raw).ok_or_else(wrong_size)?.to_text();
                numeric_value(&text)
            }
            Type::BYTEA => SqlValue::Blob(raw.to_vec()),
            Type::UUID => {
                let uuid: [u8; 16] = raw.try_into().map_err(|_| wrong_size())?;
                SqlValue::Text(format_uuid(&uuid))
            }
            Type::JSONB => match raw.split_first() {
                Some((1, rest)) => SqlValue::Text(utf8(rest, ty)?),
                _ => return Err(wrong_size()),
            },
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::JSON => {
                SqlValue::Text(utf8(raw, ty)?)
            }
            _ => return Err(ValueError::unsupported(ty)),
        });
    }
    let text = utf8(raw, ty)?;
    Ok(match *ty {
        Type::BOOL => SqlValue::Integer(i64::from(
            parse_bool(&text).ok_or_else(|| ValueError::invalid(ty, &text))?,
        )),
        Type::INT2 | Type::INT4 | Type::INT8 => SqlValue::Integer(
            text.trim()
                .parse()
                .map_err(|_| ValueError::invalid(ty, &text))?,
        ),
        Type::FLOAT4 | Type::FLOAT8 => {
            SqlValue::Real(parse_float(&text).ok_or_else(|| ValueError::invalid(ty, &text))?)
        }
        Type::NUMERIC => {
            Numeric::parse(&text).ok_or_else(|| ValueError::invalid(ty, &text))?;
            numeric_value(&text)
        }
        Type::BYTEA => SqlValue::Blob(match text.strip_prefix("\\x") {
            Some(digits) => unhex(digits).ok_or_else(|| ValueError::invalid(ty, &text))?,
            None => text.into_bytes(),
        }),
        _ => SqlValue::Text(text),
    })
}

/// A numeric parameter becomes an integer when it is one, else a real (SQLite's NUMERIC).
fn numeric_value(text: &str) -> SqlValue {
    let trimmed = text.trim();
    match trimmed.parse::<i64>() {
        Ok(i) => SqlValue::Integer(i),
        Err(_) => parse_float(trimmed)
            .map(SqlValue::Real)
            .unwrap_or_else(|| SqlValue::Text(trimmed.to_owned())),
    }
}

fn utf8(raw: &[u8], ty: &Type) -> Result<String, ValueError> {
    String::from_utf8(raw.to_vec()).map_err(|_| ValueError {
        code: "22021",
        message: format!(
            "invalid byte sequence for encoding \"UTF8\" in a parameter of type {}",
            ty.name()
        ),
    })
}

/// A decimal number as PostgreSQL's `numeric` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Numeric {
    NaN,
    Infinity {
        negative: bool,
    },
    Finite {
        negative: bool,
        /// Digits before the point, without leading zeros.
        int: String,
        /// Digits after the point (their count is the display scale).
        frac: String,
    },
}

impl Numeric {
    fn parse(text: &str) -> Option<Numeric> {
        let t = text.trim();
        match t.to_ascii_lowercase().as_str() {
            "nan" => return Some(Numeric::NaN),
            "infinity" | "+infinity" | "inf" => return Some(Numeric::Infinity { negative: false }),
            "-infinity" | "-inf" => return Some(Numeric::Infinity { negative: true }),
            _ => {}
        }
        let (negative, unsigned) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        // Exponent notation: shift the point.
        let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
            Some(at) => (&unsigned[..at], unsigned[at + 1..].parse::<i32>().ok()?),
            None => (unsigned, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || exponent.abs() > 1000
        {
            return None;
        }
        let mut digits = format!("{int}{frac}");
        let mut point = int.len() as i32 + exponent;
        if point < 0 {
            digits = format!("{}{digits}", "0".repeat((-point) as usize));
            point = 0;
        }
        if point as usize > digits.len() {
            digits.push_str(&"0".repeat(point as usize - digits.len()));
        }
        let (int, frac) = digits.split_at(point as usize);
        let int = int.trim_start_matches('0').to_owned();
        Some(Numeric::Finite {
            negative: negative && (int.bytes().chain(frac.bytes()).any(|b| b != b'0')),
            int,
            frac: frac.to_owned(),
        })
    }

    fn to_text(&self) -> String {
        match self {
            Numeric::NaN => "NaN".into(),
            Numeric::Infinity { negative } => {
                if *negative { "-Infinity" } else { "Infinity" }.into()
            }
            Numeric::Finite {
                negative,
                int,
                frac,
            } => {
                let sign = if *negative { "-" } else { "" };
                let int = if int.is_empty() { "0" } else { int };
                if frac.is_empty() {
                    format!("{sign}{int}")
                } else {
                    format!("{sign}{int}.{frac}")
                }
            }
        }
    }

    /// PostgreSQL's binary numeric: ndigits, weight, sign, dscale, then base-10000 digits.
    fn write_binary(&self, out: &mut BytesMut) {
        let (negative, int, frac) = match self {
            Numeric::NaN => {
                out.put_slice(&[0, 0, 0, 0, 0xC0, 0, 0, 0]);
                return;
            }
            Numeric::Infinity { negative } => {
                let sign: u16 = if *negative { 0xF000 } else { 0xD000 };
                out.put_i16(0);
                out.put_i16(0);
                out.put_u16(sign);
                out.put_u16(0);
                return;
            }
            Numeric::Finite {
                negative,
                int,
                frac,
            } => (*negative, int, frac),
        };
        let int_pad = (4 - int.len() % 4) % 4;
        let frac_pad = (4 - frac.len() % 4) % 4;
        let padded = format!("{}{int}{frac}{}", "0".repeat(int_pad), "0".repeat(frac_pad));
        let mut groups: Vec<i16> = padded
            .as_bytes()
            .chunks(4)
            .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + i16::from(d - b'0')))
            .collect();
        let mut weight = ((int.len() + int_pad) / 4) as i16 - 1;
        while groups.first() == Some(&0) {
            groups.remove(0);
            weight -= 1;
        }
        while groups.last() == Some(&0) {
            groups.pop();
        }
        if groups.is_empty() {
            weight = 0;
        }
        out.put_i16(groups.len() as i16);
        out.put_i16(weight);
        out.put_u16(if negative { 0x4000 } else { 0 });
        out.put_u16(frac.len() as u16);
        for g in groups {
            out.put_i16(g);
        }
    }

    fn read_binary(raw: &[u8]) -> Option<Numeric> {
        let word = |i: usize| -> Option<u16> {
            Some(u16::from_be_bytes([*raw.get(2 * i)?, *raw.get(2 * i + 1)?]))
        };
        let ndigits = word(0)? as usize;
        let weight = word(1)? as i16 as i32;
        let sign = word(2)?;
        let dscale = word(3)? as usize;
        match sign {
            0xC000 => return Some(Numeric::NaN),
            0xD000 => return Some(Numeric::Infinity { negative: false }),
            0xF000 => return Some(Numeric::Infinity { negative: true }),
            0 | 0x4000 => {}
            _ => return None,
        }
        if raw.len() != 8 + 2 * ndigits || dscale > 16_383 {
            return None;
        }
        let mut digits = String::new();
        for i in 0..ndigits {
            let d = word(4 + i)?;
            if d > 9999 {
                return None;
            }
            digits.push_str(&format!("{d:04}"));
        }
        // The point sits after (weight + 1) groups.
        let point = (weight + 1) * 4;
        let text = if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}", "0".repeat(point as usize - digits.len()))
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        let Numeric::Finite { int, frac, .. } = Numeric::parse(&text)? else {
            return None;
        };
        let mut frac = frac;
        frac.truncate(dscale);
        while frac.len() < dscale {
            frac.push('0');
        }
        Some(Numeric::Finite {
            negative: sign == 0x4000,
            int,
            frac,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: SqlValue, ty: Type) -> Result<Option<String>, ValueError> {
        let mut out = BytesMut::new();
        encode(&mut out, &value, &ty, false)?;
        let len = i32::from_be_bytes([out[0], out[1], out[2], out[3]]);
        Ok((len >= 0).then(|| String::from_utf8(out[4..].to_vec()).expect("utf8")))
    }

    #[test]
    fn declared_types_follow_postgres_names_then_sqlite_affinity() {
        assert_eq!(type_for_decltype("integer"), Some(Type::INT4));
        assert_eq!(type_for_decltype("BIGINT"), Some(Type::INT8));
        assert_eq!(type_for_decltype("unsigned big int"), Some(Type::INT8));
        assert_eq!(type_for_decltype("varchar(20)"), Some(Type::VARCHAR));
        assert_eq!(type_for_decltype("double precision"), Some(Type::FLOAT8));
        assert_eq!(type_for_decltype("boolean"), Some(Type::BOOL));
        assert_eq!(type_for_decltype("numeric(10,2)"), Some(Type::NUMERIC));
        assert_eq!(type_for_decltype("blob"), Some(Type::BYTEA));
        assert_eq!(type_for_decltype("date"), Some(Type::DATE));
        assert_eq!(type_for_decltype("TIMESTAMPTZ"), Some(Type::TIMESTAMPTZ));
        assert_eq!(type_for_decltype("TIMESTAMP"), Some(Type::TIMESTAMP));
        assert_eq!(type_for_decltype("TIME"), Some(Type::TIME));
        assert_eq!(type_for_decltype("datetime"), None);
        assert_eq!(type_for_expression("count(*)"), Some(Type::INT8));
        assert_eq!(type_for_expression("snowflake_id()"), Some(Type::INT8));
        assert_eq!(type_for_expression("1"), Some(Type::INT4));
        assert_eq!(type_for_expression("x"), None);
    }

    #[test]
    fn text_encoding_matches_postgres() {
        assert_eq!(text(SqlValue::Integer(1), Type::BOOL), Ok(Some("t".into())));
        assert_eq!(text(SqlValue::Null, Type::INT8), Ok(None));
        assert_eq!(
            text(SqlValue::Blob(vec![0xde, 0xad]), Type::BYTEA),
            Ok(Some("\\xdead".into()))
        );
        assert_eq!(
            text(SqlValue::Real(0.1), Type::FLOAT8),
            Ok(Some("0.1".into()))
        );
        assert_eq!(
            text(SqlValue::Real(1.0), Type::FLOAT8),
            Ok(Some("1".into()))
        );
        assert_eq!(
            text(SqlValue::Real(1e15), Type::FLOAT8),
            Ok(Some("1e+15".into()))
        );
        assert_eq!(
            text(SqlValue::Real(123456789012345.0), Type::FLOAT8),
            Ok(Some("123456789012345".into()))
        );
        assert_eq!(
            text(SqlValue::Real(1e-5), Type::FLOAT8),
            Ok(Some("1e-05".into()))
        );
        assert_eq!(
            text(SqlValue::Real(0.0001), Type::FLOAT8),
            Ok(Some("0.0001".into()))
        );
        assert_eq!(
            text(SqlValue::Real(-2.5), Type::FLOAT8),
            Ok(Some("-2.5".into()))
        );
        assert_eq!(
            text(SqlValue::Real(f64::INFINITY), Type::FLOAT8),
            Ok(Some("Infinity".into()))
        );
        assert_eq!(text(SqlValue::Integer(5), Type::TEXT), Ok(Some("5".into())));
        assert_eq!(
            text(SqlValue::Text("1.50".into()), Type::NUMERIC),
            Ok(Some("1.50".into()))
        );
        assert_eq!(
            text(SqlValue::Text("abc".into()), Type::INT8).map_err(|e| e.code),
            Err("22P02")
        );
        assert_eq!(
            text(SqlValue::Integer(1 << 40), Type::INT4).map_err(|e| e.code),
            Err("22003")
        );
    }

    #[test]
    fn dates_and_timestamps_print_as_postgres_iso_in_utc() {
        let stored = |s: &str| SqlValue::Text(s.into());
        assert_eq!(
            text(stored("2026-11-22 08:15:30.123456"), Type::TIMESTAMPTZ),
            Ok(Some("2026-11-22 08:15:30.123456+00".into()))
        );
        assert_eq!(
            text(stored("2026-11-22T10:15:30.5+02:00"), Type::TIMESTAMPTZ),
            Ok(Some("2026-11-22 08:15:30.5+00".into()))
        );
        assert_eq!(
            text(stored("2026-11-22 08:15:30.120"), Type::TIMESTAMP),
            Ok(Some("2026-11-22 08:15:30.12".into()))
        );
        assert_eq!(
            text(stored("2026-11-22"), Type::DATE),
            Ok(Some("2026-11-22".into()))
        );
        assert_eq!(
            text(stored("08:15"), Type::TIME),
            Ok(Some("08:15:00".into()))
        );
        // A stored value that is not one of the type is an error, never a wrong answer.
        assert_eq!(
            text(stored("next tuesday"), Type::DATE).map_err(|e| e.code),
            Err("22007")
        );
        assert_eq!(
            text(stored("2026-02-30"), Type::DATE).map_err(|e| e.code),
            Err("22008")
        );
        assert_eq!(
            text(SqlValue::Real(2_460_000.5), Type::TIMESTAMP).map_err(|e| e.code),
            Err("22007")
        );
    }

    #[test]
    fn dates_and_timestamps_encode_postgres_binary() {
        let binary = |value: &str, ty: Type| {
            let mut out = BytesMut::new();
            encode(&mut out, &SqlValue::Text(value.into()), &ty, true).expect("encodes");
            out[4..].to_vec()
        };
        // 2000-01-02 is day 1 of PostgreSQL's epoch.
        assert_eq!(binary("2000-01-02", Type::DATE), 1i32.to_be_bytes());
        assert_eq!(
            binary("2000-01-01 00:00:01.5+01", Type::TIMESTAMPTZ),
            (1_500_000i64 - 3_600_000_000).to_be_bytes()
        );
        assert_eq!(
            binary("2000-01-01 00:00:01.5+01", Type::TIMESTAMP),
            1_500_000i64.to_be_bytes()
        );
        assert_eq!(binary("00:01", Type::TIME), 60_000_000i64.to_be_bytes());
    }

    #[test]
    fn date_and_timestamp_parameters_become_the_stored_form() {
        let micros = (86_400_000_000i64 + 1).to_be_bytes();
        assert_eq!(
            decode_parameter(Some(&micros), &Type::TIMESTAMPTZ, true),
            Ok(SqlValue::Text("2000-01-02 00:00:00.000001".into()))
        );
        assert_eq!(
            decode_parameter(Some(&(-1i32).to_be_bytes()), &Type::DATE, true),
            Ok(SqlValue::Text("1999-12-31".into()))
        );
        assert_eq!(
            decode_parameter(Some(b"2026-11-22T10:15:30+02"), &Type::TIMESTAMPTZ, false),
            Ok(SqlValue::Text("2026-11-22 08:15:30".into()))
        );
        assert_eq!(
            decode_parameter(Some(b"2026-11-22 10:15:30+02"), &Type::TIMESTAMP, false),
            Ok(SqlValue::Text("2026-11-22 10:15:30".into()))
        );
        assert_eq!(
            decode_parameter(Some(&[0, 0, 0, 1]), &Type::TIMESTAMP, true).map_err(|e| e.code),
            Err("08P01")
        );
        assert_eq!(
            decode_parameter(Some(b"soon"), &Type::DATE, false).map_err(|e| e.code),
            Err("22007")
        );
        assert_eq!(
            decode_parameter(Some(&(i64::MAX - 1).to_be_bytes()), &Type::TIMESTAMP, true)
                .map_err(|e| e.code),
            Err("22008")
        );
    }

    #[test]
    fn numeric_binary_round_trips() {
        for text in [
            "0",
            "1",
            "-1.5",
            "12345.678",
            "0.0001",
            "100000000",
            "-0.00",
            "NaN",
        ] {
            let n = Numeric::parse(text).expect("parses");
            let mut out = BytesMut::new();
            n.write_binary(&mut out);
            let back = Numeric::read_binary(&out).expect("reads");
            assert_eq!(back.to_text(), n.to_text(), "{text}");
        }
        // 12345.678 = [1, 2345, 6780], weight 1, dscale 3
        let mut out = BytesMut::new();
        Numeric::parse("12345.678")
            .expect("parses")
            .write_binary(&mut out);
        assert_eq!(
            out.as_ref(),
            &[0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c]
        );
    }

    #[test]
    fn parameters_decode_by_type_and_format() {
        assert_eq!(
            decode_parameter(Some(&7i64.to_be_bytes()), &Type::INT8, true),
            Ok(SqlValue::Integer(7))
        );
        assert_eq!(
            decode_parameter(Some(b"42"), &Type::INT4, false),
            Ok(SqlValue::Integer(42))
        );
        assert_eq!(
            decode_parameter(Some(b"\\x0102"), &Type::BYTEA, false),
            Ok(SqlValue::Blob(vec![1, 2]))
        );
        assert_eq!(
            decode_parameter(Some(b"true"), &Type::BOOL, false),
            Ok(SqlValue::Integer(1))
        );
        assert_eq!(
            decode_parameter(None, &Type::TEXT, true),
            Ok(SqlValue::Null)
        );
        assert_eq!(
            decode_parameter(Some(&[1, 2, 3]), &Type::INT8, true).map_err(|e| e.code),
            Err("08P01")
        );
        assert_eq!(
            decode_parameter(Some(b"x"), &Type::INT8, false).map_err(|e| e.code),
            Err("22P02")
        );
    }
}
