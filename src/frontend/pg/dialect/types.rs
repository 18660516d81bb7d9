//! PostgreSQL types on SQLite: the declared type a column gets (which keeps the PostgreSQL
//! identity — `types::type_for_decltype` turns it back into a type OID — while SQLite's
//! affinity rules, applied to the same text, give the storage the right affinity), and what a
//! cast to each type becomes.
//!
//! | PostgreSQL | declared in SQLite | affinity |
//! |---|---|---|
//! | `smallint`, `int2` | `SMALLINT` | INTEGER |
//! | `integer`, `int`, `int4` | `INTEGER` | INTEGER |
//! | `bigint`, `int8` | `BIGINT` | INTEGER |
//! | `real`, `float4`, `float(1..24)` | `REAL` | REAL |
//! | `double precision`, `float8`, `float` | `DOUBLE PRECISION` | REAL |
//! | `numeric(p,s)`, `decimal` | `NUMERIC(p,s)` | NUMERIC |
//! | `text`, `varchar(n)`, `char(n)`, `name` | `TEXT`, `VARCHAR(n)`, `CHAR(n)` | TEXT |
//! | `boolean`, `bool` | `BOOLEAN` | NUMERIC (stores 1/0) |
//! | `bytea` | `BLOB` | BLOB |
//! | `date`, `time`, `timestamp`, `timestamptz` | `DATE`, `TIME`, `TIMESTAMP`, `TIMESTAMPTZ` | NUMERIC (ISO text) |
//! | `json`, `jsonb`, `uuid` | `JSON`, `JSONB`, `UUID` | NUMERIC (text) |
//!
//! Lengths (`varchar(n)`) and precisions are kept in the declaration but not enforced by
//! SQLite; `char(n)` is not blank-padded. Arrays, `interval`, enums and the other types
//! SQLite has no way to hold faithfully are refused.

use sqlparser::ast::{
    CharacterLength, DataType, ExactNumberInfo, ObjectName, ObjectNamePart, TimezoneInfo,
};

use super::TranslateError;
use crate::storage::pg_functions::CastType;

/// What a PostgreSQL type is, for declarations and casts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgType {
    /// A text type; `length` is `varchar(n)`'s or `char(n)`'s n.
    Text {
        declared: String,
        length: Option<u64>,
    },
    /// A type `pg_cast` converts to, with its SQLite declaration.
    Converted {
        declared: String,
        cast: CastType,
        /// `numeric(p, s)`'s s.
        scale: Option<i64>,
    },
    /// `serial`, `bigserial`, `smallserial`: an integer the table generates.
    Serial { declared: &'static str },
}

impl PgType {
    /// The type as declared in SQLite.
    pub fn declared(&self) -> &str {
        match self {
            PgType::Text { declared, .. } | PgType::Converted { declared, .. } => declared,
            PgType::Serial { declared } => declared,
        }
    }
}

fn char_length(length: &Option<CharacterLength>) -> Option<u64> {
    match length {
        Some(CharacterLength::IntegerLength { length, .. }) => Some(*length),
        _ => None,
    }
}

fn converted(declared: impl Into<String>, cast: CastType) -> PgType {
    PgType::Converted {
        declared: declared.into(),
        cast,
        scale: None,
    }
}

fn with_length(base: &str, length: Option<u64>) -> String {
    match length {
        Some(n) => format!("{base}({n})"),
        None => base.to_owned(),
    }
}

/// The PostgreSQL type `data_type` names.
pub fn pg_type(data_type: &DataType) -> Result<PgType, TranslateError> {
    let text = |declared: String, length: Option<u64>| PgType::Text { declared, length };
    Ok(match data_type {
        DataType::SmallInt(_) | DataType::Int2(_) => converted("SMALLINT", CastType::Int2),
        DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => {
            converted("INTEGER", CastType::Int4)
        }
        DataType::BigInt(_) | DataType::Int8(_) => converted("BIGINT", CastType::Int8),
        DataType::Real | DataType::Float4 => converted("REAL", CastType::Float4),
        DataType::Float(ExactNumberInfo::Precision(p)) if *p <= 24 => {
            converted("REAL", CastType::Float4)
        }
        DataType::Float(_) | DataType::Double(_) | DataType::DoublePrecision | DataType::Float8 => {
            converted("DOUBLE PRECISION", CastType::Float8)
        }
        DataType::Numeric(info) | DataType::Decimal(info) | DataType::Dec(info) => {
            let (declared, scale) = match info {
                ExactNumberInfo::None => ("NUMERIC".to_owned(), None),
                ExactNumberInfo::Precision(p) => (format!("NUMERIC({p})"), Some(0)),
                ExactNumberInfo::PrecisionAndScale(p, s) => (format!("NUMERIC({p},{s})"), Some(*s)),
            };
            PgType::Converted {
                declared,
                cast: CastType::Numeric,
                scale,
            }
        }
        DataType::Text => text("TEXT".into(), None),
        DataType::Varchar(length)
        | DataType::CharacterVarying(length)
        | DataType::CharVarying(length) => {
            let length = char_length(length);
            text(with_length("VARCHAR", length), length)
        }
        DataType::Char(length) | DataType::Character(length) => {
            // `char` alone is char(1).
            let length = char_length(length).or(Some(1));
            text(with_length("CHAR", length), length)
        }
        DataType::Bool | DataType::Boolean => converted("BOOLEAN", CastType::Bool),
        DataType::Bytea => converted("BLOB", CastType::Bytea),
        DataType::Date => converted("DATE", CastType::Date),
        DataType::Time(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
            converted("TIME", CastType::Time)
        }
        DataType::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
            converted("TIMESTAMP", CastType::Timestamp)
        }
        DataType::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => {
            converted("TIMESTAMPTZ", CastType::Timestamptz)
        }
        DataType::JSON => converted("JSON", CastType::Json),
        DataType::JSONB => converted("JSONB", CastType::Json),
        DataType::Uuid => converted("UUID", CastType::Uuid),
        DataType::Custom(name, modifiers) => custom(name, modifiers)?,
        other => return Err(unsupported_type(other)),
    })
}

/// Types sqlparser does not know by name: the serials, `name`, `bpchar`, `timestamptz`, ...
fn custom(name: &ObjectName, modifiers: &[String]) -> Result<PgType, TranslateError> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => ident.value.to_ascii_lowercase(),
            other => other.to_string().to_ascii_lowercase(),
        })
        .collect();
    let base = match parts.as_slice() {
        [base] => base.as_str(),
        [schema, base] if schema == "pg_catalog" || schema == "public" => base.as_str(),
        _ => {
            return Err(unsupported_type(&DataType::Custom(
                name.clone(),
                modifiers.to_vec(),
            )));
        }
    };
    let length = modifiers.first().and_then(|m| m.parse::<u64>().ok());
    Ok(match base {
        "serial" | "serial4" => PgType::Serial {
            declared: "INTEGER",
        },
        "bigserial" | "serial8" => PgType::Serial { declared: "BIGINT" },
        "smallserial" | "serial2" => PgType::Serial {
            declared: "SMALLINT",
        },
        "name" => PgType::Text {
            declared: "TEXT".into(),
            length: None,
        },
        "bpchar" => PgType::Text {
            declared: with_length("CHAR", length),
            length,
        },
        "int2" => converted("SMALLINT", CastType::Int2),
        "int4" => converted("INTEGER", CastType::Int4),
        "int8" => converted("BIGINT", CastType::Int8),
        "float4" => converted("REAL", CastType::Float4),
        "float8" => converted("DOUBLE PRECISION", CastType::Float8),
        "bool" => converted("BOOLEAN", CastType::Bool),
        "timestamptz" => converted("TIMESTAMPTZ", CastType::Timestamptz),
        "jsonb" => converted("JSONB", CastType::Json),
        _ => {
            return Err(unsupported_type(&DataType::Custom(
                name.clone(),
                modifiers.to_vec(),
            )));
        }
    })
}

fn unsupported_type(data_type: &DataType) -> TranslateError {
    TranslateError::Unsupported(format!("type {data_type}"))
}

/// A declared type for SQLite: a custom type name prints verbatim.
pub fn declared_data_type(declared: &str) -> DataType {
    DataType::Custom(
        ObjectName(vec![ObjectNamePart::Identifier(
            sqlparser::ast::Ident::new(declared),
        )]),
        Vec::new(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn declared(sql_type: &str) -> Result<String, TranslateError> {
        let data_type = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql_type)
            .and_then(|mut p| p.parse_data_type())
            .expect("a type");
        pg_type(&data_type).map(|t| t.declared().to_owned())
    }

    #[test]
    fn declared_types_keep_postgres_identity_and_sqlite_affinity() {
        let cases = [
            ("int", "INTEGER"),
            ("int4", "INTEGER"),
            ("integer", "INTEGER"),
            ("int8", "BIGINT"),
            ("bigint", "BIGINT"),
            ("smallint", "SMALLINT"),
            ("int2", "SMALLINT"),
            ("varchar(20)", "VARCHAR(20)"),
            ("character varying(5)", "VARCHAR(5)"),
            ("character varying", "VARCHAR"),
            ("char(84)", "CHAR(84)"),
            ("character", "CHAR(1)"),
            ("text", "TEXT"),
            ("bool", "BOOLEAN"),
            ("boolean", "BOOLEAN"),
            ("real", "REAL"),
            ("float4", "REAL"),
            ("double precision", "DOUBLE PRECISION"),
            ("float8", "DOUBLE PRECISION"),
            ("float", "DOUBLE PRECISION"),
            ("numeric(10,2)", "NUMERIC(10,2)"),
            ("decimal", "NUMERIC"),
            ("bytea", "BLOB"),
            ("date", "DATE"),
            ("timestamp", "TIMESTAMP"),
            ("timestamp without time zone", "TIMESTAMP"),
            ("timestamp with time zone", "TIMESTAMPTZ"),
            ("timestamptz", "TIMESTAMPTZ"),
            ("json", "JSON"),
            ("jsonb", "JSONB"),
            ("uuid", "UUID"),
            ("serial", "INTEGER"),
            ("bigserial", "BIGINT"),
        ];
        for (postgres, sqlite) in cases {
            assert_eq!(declared(postgres).as_deref(), Ok(sqlite), "{postgres}");
        }
        for refused in ["interval", "int[]", "money", "inet", "regclass"] {
            assert!(
                matches!(declared(refused), Err(TranslateError::Unsupported(_))),
                "{refused}"
            );
        }
    }
}
