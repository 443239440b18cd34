//! SOQL helpers: literal quoting, datetime literals, and keeping query URIs under the limit.
//!
//! A REST query travels in the URI, which Salesforce caps at 16,384 bytes (URI plus headers).
//! An object with hundreds of fields can exceed that; [`split_select`] (and
//! [`Client::split_select`]) cut the field list into several SELECTs that each fit, every one
//! starting with the key field so the caller can join the rows back together.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::client::{Call, Client, MAX_URI_BYTES};
use crate::error::{Error, Result};

/// Headroom left for request headers when sizing a query URI (Salesforce counts URI + headers).
pub const HEADER_HEADROOM_BYTES: usize = 2_000;

/// The URI budget used by [`Client::split_select`].
pub const MAX_QUERY_URI_BYTES: usize = MAX_URI_BYTES - HEADER_HEADROOM_BYTES;

/// Quotes a string as a SOQL literal: `O'Brien` → `'O\'Brien'`.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A SOQL datetime literal in UTC with milliseconds: `2024-01-02T03:04:05.000Z`. Uses `Z`
/// rather than `+00:00`, whose `+` would need URL-encoding.
pub fn datetime_literal(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn encoded_len(s: &str) -> usize {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .map(str::len)
        .sum()
}

/// Splits `fields` into `SELECT ... FROM {object}{tail}` statements whose URL-encoded length
/// plus `fixed_uri_len` (the URI without the statement) stays within `max_uri_len`. Every
/// statement selects `key_field` first; `key_field` is not repeated if it is in `fields`.
/// Returns one statement when everything fits.
pub fn split_select(
    fields: &[&str],
    key_field: &str,
    object: &str,
    tail: &str,
    fixed_uri_len: usize,
    max_uri_len: usize,
) -> Result<Vec<String>, usize> {
    let prefix = "SELECT ";
    let suffix = format!(" FROM {object}{tail}");
    let comma = encoded_len(",");
    let base = fixed_uri_len + encoded_len(prefix) + encoded_len(&suffix) + encoded_len(key_field);
    if base > max_uri_len {
        return Err(base);
    }
    let mut statements = Vec::new();
    let mut current: Vec<&str> = vec![key_field];
    let mut len = base;
    for field in fields.iter().copied().filter(|f| *f != key_field) {
        let add = comma + encoded_len(field);
        if base + add > max_uri_len {
            return Err(base + add);
        }
        if len + add > max_uri_len {
            statements.push(format!("{prefix}{}{suffix}", current.join(",")));
            current.truncate(1);
            len = base;
        }
        current.push(field);
        len += add;
    }
    statements.push(format!("{prefix}{}{suffix}", current.join(",")));
    Ok(statements)
}

impl Client {
    /// Builds REST query statements for `fields` of `object` (with `tail`, e.g.
    /// `" WHERE SystemModstamp >= ... ORDER BY Id"`) that each fit [`MAX_QUERY_URI_BYTES`] on
    /// this client's instance; each selects `key_field` (normally `Id`) first.
    pub async fn split_select(
        &self,
        object: &str,
        fields: &[&str],
        key_field: &str,
        tail: &str,
        include_deleted: bool,
    ) -> Result<Vec<String>> {
        let resource = if include_deleted {
            "queryAll/"
        } else {
            "query/"
        };
        let fixed = self.uri_len(&Call::get(resource).query("q", "")).await?;
        split_select(fields, key_field, object, tail, fixed, MAX_QUERY_URI_BYTES).map_err(|len| {
            Error::UriTooLong {
                context: format!("splitting the SELECT list of {object}"),
                len,
                max: MAX_QUERY_URI_BYTES,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn quotes_literals() {
        assert_eq!(quote("plain"), "'plain'");
        assert_eq!(quote("O'Brien"), r"'O\'Brien'");
        assert_eq!(quote("a\\b\n\"c\""), r#"'a\\b\n\"c\"'"#);
    }

    /// Reads a quoted SOQL literal back (test-only inverse of `quote`).
    fn unquote(lit: &str) -> Option<String> {
        let inner = lit.strip_prefix('\'')?.strip_suffix('\'')?;
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(match chars.next()? {
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    c @ ('\\' | '\'' | '"') => c,
                    _ => return None,
                }),
                '\'' => return None,
                c => out.push(c),
            }
        }
        Some(out)
    }

    proptest::proptest! {
        #[test]
        fn quote_roundtrips_and_never_ends_early(s in ".*") {
            let lit = quote(&s);
            proptest::prop_assert_eq!(unquote(&lit), Some(s));
        }
    }

    #[test]
    fn datetime_literals_use_z() {
        let ts = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(datetime_literal(ts), "2024-01-02T03:04:05.000Z");
    }

    #[test]
    fn splits_select_lists_to_fit() {
        let names: Vec<String> = (0..400).map(|i| format!("Field_{i:03}__c")).collect();
        let fields: Vec<&str> = names.iter().map(String::as_str).collect();
        let fixed = 60;
        let max = 2_000;
        let stmts = split_select(&fields, "Id", "Thing__c", " WHERE X > 1", fixed, max).unwrap();
        assert!(stmts.len() > 1);
        let mut seen = Vec::new();
        for s in &stmts {
            assert!(fixed + encoded_len(s) <= max, "{} too long", s.len());
            assert!(s.starts_with("SELECT Id,"), "{s}");
            assert!(s.ends_with(" FROM Thing__c WHERE X > 1"), "{s}");
            let list = &s["SELECT ".len()..s.find(" FROM").unwrap()];
            seen.extend(list.split(',').skip(1).map(str::to_owned));
        }
        assert_eq!(seen, names, "every field exactly once, in order");
        let one = split_select(&["Id", "Name"], "Id", "Account", "", 10, 16_000).unwrap();
        assert_eq!(one, vec!["SELECT Id,Name FROM Account".to_owned()]);
        assert!(split_select(&["Name"], "Id", "Account", "", 5_000, 100).is_err());
    }
}
