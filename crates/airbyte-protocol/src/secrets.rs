//! Finding the secret values of a config so they can be scrubbed from anything we print.
//!
//! The connector's spec marks secret fields with `"airbyte_secret": true`. [`Secrets::from_spec`]
//! walks the spec's `connectionSpecification` alongside the config (through `properties`,
//! `oneOf`/`anyOf`/`allOf` alternatives and array `items`) and collects the config's values at
//! those places. [`Secrets::redact`] replaces every occurrence of any of them in a text. The error
//! mapper of [`crate::cli`] scrubs every message it prints with it; connectors can use it for
//! their own LOG and CONNECTION_STATUS messages.

use std::borrow::Cow;
use std::fmt;

use serde_json::Value;

/// What a secret is replaced with.
pub const REDACTED: &str = "**********";

/// The secret values of one config. Its `Debug` output shows only how many there are.
#[derive(Clone, Default)]
pub struct Secrets {
    /// Longest first, so a secret that contains another is replaced whole.
    values: Vec<String>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} values, redacted)", self.values.len())
    }
}

impl Secrets {
    /// Collects the values of `config` that `connection_specification` marks `airbyte_secret`.
    pub fn from_spec(connection_specification: &Value, config: &Value) -> Self {
        let mut values = Vec::new();
        collect(connection_specification, config, &mut values);
        Self::from_values(values)
    }

    /// Secrets from explicit values (empty strings are ignored).
    pub fn from_values(values: impl IntoIterator<Item = String>) -> Self {
        let mut values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Self { values }
    }

    /// Adds one more secret value (e.g. an access token obtained at run time).
    pub fn add(&mut self, value: impl Into<String>) {
        let mut values = std::mem::take(&mut self.values);
        values.push(value.into());
        *self = Self::from_values(values);
    }

    /// The secret values, longest first.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether there are no secrets.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every secret value replaced by [`REDACTED`].
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.values {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
        out
    }
}

/// Walks `schema` and `value` together, pushing the values under `airbyte_secret` schemas.
fn collect(schema: &Value, value: &Value, out: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    if schema.get("airbyte_secret").and_then(Value::as_bool) == Some(true) {
        leaves(value, out);
        return;
    }
    if let (Some(properties), Some(object)) = (
        schema.get("properties").and_then(Value::as_object),
        value.as_object(),
    ) {
        for (key, sub_schema) in properties {
            if let Some(sub_value) = object.get(key) {
                collect(sub_schema, sub_value, out);
            }
        }
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema.get(combinator).and_then(Value::as_array) {
            for option in options {
                collect(option, value, out);
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for item in array {
            collect(items, item, out);
        }
    }
}

/// Every scalar inside a secret value, as text.
fn leaves(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Null => {}
        Value::String(s) => out.push(s.clone()),
        Value::Bool(b) => out.push(b.to_string()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|v| leaves(v, out)),
        Value::Object(map) => map.values().for_each(|v| leaves(v, out)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> Value {
        json!({
            "type": "object",
            "properties": {
                "client_id": {"type": "string"},
                "client_secret": {"type": "string", "airbyte_secret": true},
                "refresh_token": {"type": "string", "airbyte_secret": true},
                "storage": {
                    "oneOf": [
                        {"properties": {"storage_type": {"const": "None"}}},
                        {"properties": {
                            "storage_type": {"const": "S3"},
                            "secret_access_key": {"type": "string", "airbyte_secret": true}
                        }}
                    ]
                },
                "keys": {"type": "array", "items": {"type": "string", "airbyte_secret": true}}
            }
        })
    }

    #[test]
    fn finds_secrets_at_every_depth() {
        let config = json!({
            "client_id": "public-id",
            "client_secret": "s3cr3t",
            "refresh_token": "tok-123",
            "storage": {"storage_type": "S3", "secret_access_key": "AKIA-SECRET"},
            "keys": ["k1", "k2"],
            "unrelated": "tok-123-not-in-spec-but-contains-it"
        });
        let secrets = Secrets::from_spec(&spec(), &config);
        let mut values = secrets.values().to_vec();
        values.sort();
        assert_eq!(values, ["AKIA-SECRET", "k1", "k2", "s3cr3t", "tok-123"]);
        assert_eq!(
            secrets.redact("login with public-id/s3cr3t failed; token tok-123 AKIA-SECRET"),
            format!("login with public-id/{REDACTED} failed; token {REDACTED} {REDACTED}")
        );
    }

    #[test]
    fn missing_or_non_object_config_yields_nothing() {
        assert!(Secrets::from_spec(&spec(), &json!({})).is_empty());
        assert!(Secrets::from_spec(&spec(), &json!([1, 2])).is_empty());
        assert!(Secrets::from_spec(&json!(true), &json!({"a": "b"})).is_empty());
    }

    #[test]
    fn longer_secrets_are_replaced_first_and_debug_hides_values() {
        let mut secrets = Secrets::from_values(["abc".to_string(), String::new()]);
        secrets.add("abcdef");
        assert_eq!(
            secrets.redact("xabcdefx abc"),
            format!("x{REDACTED}x {REDACTED}")
        );
        assert!(matches!(secrets.redact("nothing here"), Cow::Borrowed(_)));
        let debug = format!("{secrets:?}");
        assert!(!debug.contains("abc"), "{debug}");
    }
}
