//! JSON ⇄ SQLite values. Parameters: `null`, booleans (stored as 0/1), integers, floats,
//! strings, and `{"base64":"..."}` for blobs. Results use the same forms.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::storage::request::SqlValue;

/// Converts one JSON parameter, or says why it cannot be one.
pub fn to_sql(value: &Value) -> Result<SqlValue, String> {
    Ok(match value {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(
                n.as_f64()
                    .ok_or_else(|| format!("number {n} out of range"))?,
            ),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        Value::Object(map) if map.len() == 1 && map.contains_key("base64") => {
            let text = map
                .get("base64")
                .and_then(Value::as_str)
                .ok_or("base64 parameter must be a string")?;
            SqlValue::Blob(
                STANDARD
                    .decode(text)
                    .map_err(|e| format!("invalid base64: {e}"))?,
            )
        }
        other => {
            return Err(format!(
                "unsupported parameter {other}: use null, bool, number, string or {{\"base64\":...}}"
            ));
        }
    })
}

pub fn from_sql(value: SqlValue) -> Value {
    match value {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => json!(i),
        SqlValue::Real(f) => json!(f),
        SqlValue::Text(s) => Value::String(s),
        SqlValue::Blob(b) => json!({"base64": STANDARD.encode(b)}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for v in [
            json!(null),
            json!(5),
            json!(1.5),
            json!("x"),
            json!({"base64": "AAE="}),
        ] {
            let sql = to_sql(&v).expect("convertible");
            assert_eq!(from_sql(sql), v);
        }
        assert_eq!(to_sql(&json!(true)), Ok(SqlValue::Integer(1)));
        assert!(to_sql(&json!([1])).is_err());
        assert!(to_sql(&json!({"x": 1})).is_err());
    }
}
