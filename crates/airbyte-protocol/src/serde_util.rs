//! Small serde helpers shared by the wire types.
//!
//! The protocol's optional fields are never `null` on output but may be `null` on input (PyAirbyte
//! serialises every absent field as `null`). `Option<T>` already maps `null` to `None`; these helpers
//! cover the remaining cases: unknown-field maps and non-`Option` fields that have a default.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::JsonObject;

/// Deserialises the `#[serde(flatten)] extra` map of unknown fields, dropping `null` values.
///
/// A `null` unknown field carries no information, and keeping it would make us print `null` on
/// output (PyAirbyte sends `"global_": null` and every unused envelope key as `null`).
pub(crate) fn extra_fields<'de, D>(deserializer: D) -> Result<JsonObject, D::Error>
where
    D: Deserializer<'de>,
{
    let mut map = JsonObject::deserialize(deserializer)?;
    map.retain(|_, value| !value.is_null());
    Ok(map)
}

/// Deserialises a field that has a default, treating `null` like an absent field.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Deserialises a RECORD's `emitted_at`: an integer on the wire, but tolerate a float (truncated to
/// whole milliseconds), because some producers (PyAirbyte's cache replay) do not follow the schema
/// and a destination must not reject a record for a timestamp it never uses.
pub(crate) fn lenient_millis<'de, D>(deserializer: D) -> Result<i64, D::Error>
where
    D: Deserializer<'de>,
{
    match Value::deserialize(deserializer)? {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else if let Some(f) = n.as_f64().filter(|f| f.is_finite()) {
                // `as` saturates at the i64 bounds, which is the behaviour we want here.
                Ok(f.trunc() as i64)
            } else {
                Err(serde::de::Error::custom(format!(
                    "emitted_at {n} does not fit in 64 bits"
                )))
            }
        }
        other => Err(serde::de::Error::custom(format!(
            "invalid type: {}, expected epoch milliseconds as a number",
            json_kind(&other)
        ))),
    }
}

/// A short name for the JSON type of `value`, for error messages that must not echo the value.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The message of a `serde_json` error without its " at line L column C" suffix, so callers can
/// report the position in their own terms (a line of stdin, a file name).
pub(crate) fn serde_message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    match text.strip_suffix(&suffix) {
        Some(stripped) => stripped.to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_message_strips_the_position() {
        let err = serde_json::from_str::<Value>("{\n  \"a\": ,\n}").unwrap_err();
        assert_eq!((err.line(), err.column()), (2, 8));
        assert_eq!(serde_message(&err), "expected value");
    }

    #[test]
    fn lenient_millis_accepts_integers_and_floats_only() {
        #[derive(Deserialize)]
        struct T {
            #[serde(deserialize_with = "lenient_millis")]
            t: i64,
        }
        let parse = |s: &str| serde_json::from_str::<T>(s).map(|t| t.t);
        assert_eq!(parse(r#"{"t": 1700000000123}"#).unwrap(), 1_700_000_000_123);
        assert_eq!(parse(r#"{"t": 1700000000.75}"#).unwrap(), 1_700_000_000);
        let err = parse(r#"{"t": "soon"}"#).unwrap_err().to_string();
        assert!(err.contains("invalid type: a string"), "{err}");
        assert!(!err.contains("soon"), "value must not be echoed: {err}");
    }
}
