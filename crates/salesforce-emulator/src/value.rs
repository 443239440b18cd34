//! Field values and their wire spellings (REST JSON, Bulk CSV, SOQL literals).
//!
//! One [`Value`] type carries every field value of the org. Salesforce stores datetimes with second
//! precision and renders them in UTC; dates are calendar days; times are milliseconds after midnight.

use chrono::{Datelike, NaiveDate};
use std::cmp::Ordering;
use std::sync::Arc;

/// A field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL-style null (JSON `null`, empty in CSV).
    Null,
    /// `boolean`.
    Bool(bool),
    /// `int`.
    Int(i64),
    /// `double`, `currency`, `percent`, latitude/longitude.
    Double(f64),
    /// Any text-like type (string, id, reference, picklist, email, ...).
    Str(String),
    /// Text from a static list (generated picklist values, names): no allocation.
    Lit(&'static str),
    /// `date`: days since 1970-01-01.
    Date(i32),
    /// `datetime`: milliseconds since the Unix epoch, UTC.
    DateTime(i64),
    /// `time`: milliseconds after midnight.
    Time(u32),
    /// `base64`: raw bytes.
    Blob(Arc<[u8]>),
}

impl Value {
    /// Builds a text value.
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Text content, if any.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Lit(s) => Some(s),
            _ => None,
        }
    }

    /// Numeric view used by comparisons and formulas.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Double(d) => Some(*d),
            _ => None,
        }
    }
}

/// Total order used by ORDER BY and comparisons of two non-null values of one field.
/// Text compares case-insensitively, as SOQL does for text fields.
pub fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        // Exact for 64-bit `long` values beyond f64's 53-bit mantissa.
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Str(_) | Value::Lit(_), Value::Str(_) | Value::Lit(_)) => {
            cmp_ci(a.as_str().unwrap_or(""), b.as_str().unwrap_or(""))
        }
        (Value::Date(x), Value::Date(y)) => x.cmp(y),
        (Value::DateTime(x), Value::DateTime(y)) => x.cmp(y),
        (Value::Time(x), Value::Time(y)) => x.cmp(y),
        (Value::Blob(x), Value::Blob(y)) => x.cmp(y),
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
            _ => Ordering::Equal,
        },
    }
}

/// ASCII case-insensitive comparison without allocating.
pub fn cmp_ci(a: &str, b: &str) -> Ordering {
    let mut ai = a.bytes().map(|c| c.to_ascii_lowercase());
    let mut bi = b.bytes().map(|c| c.to_ascii_lowercase());
    loop {
        match (ai.next(), bi.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => match x.cmp(&y) {
                Ordering::Equal => {}
                o => return o,
            },
        }
    }
}

/// Days since the epoch for a calendar date.
pub fn days_from_ymd(y: i32, m: u32, d: u32) -> Option<i32> {
    let date = NaiveDate::from_ymd_opt(y, m, d)?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    i32::try_from((date - epoch).num_days()).ok()
}

/// Calendar date of a day number.
pub fn ymd_from_days(days: i32) -> (i32, u32, u32) {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let d = epoch + chrono::Duration::days(i64::from(days));
    (d.year(), d.month(), d.day())
}

/// Calendar date (year, month, day) of a day number (days since 1970-01-01), proleptic Gregorian.
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn push_digits(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = buf.len() - i;
    for _ in len..width {
        out.push(b'0');
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends a decimal integer.
pub fn push_int(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_digits(out, n.unsigned_abs(), 1);
}

/// Appends `YYYY-MM-DD`.
pub fn push_date(out: &mut Vec<u8>, days: i64) {
    let (y, m, d) = civil(days);
    push_digits(out, y.clamp(0, 9999) as u64, 4);
    out.push(b'-');
    push_digits(out, u64::from(m), 2);
    out.push(b'-');
    push_digits(out, u64::from(d), 2);
}

/// Appends `YYYY-MM-DDThh:mm:ss.SSS` followed by `Z` (`zulu`) or `+0000`.
pub fn push_datetime(out: &mut Vec<u8>, ms: i64, zulu: bool) {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000) as u64;
    push_date(out, days);
    out.push(b'T');
    push_digits(out, rem / 3_600_000, 2);
    out.push(b':');
    push_digits(out, rem / 60_000 % 60, 2);
    out.push(b':');
    push_digits(out, rem / 1000 % 60, 2);
    out.push(b'.');
    push_digits(out, rem % 1000, 3);
    out.extend_from_slice(if zulu { b"Z" } else { b"+0000" });
}

fn ascii(v: Vec<u8>) -> String {
    String::from_utf8(v).unwrap_or_default()
}

/// `YYYY-MM-DD` (§2.7 `date`).
pub fn fmt_date(days: i32) -> String {
    let mut v = Vec::with_capacity(10);
    push_date(&mut v, i64::from(days));
    ascii(v)
}

/// `YYYY-MM-DDThh:mm:ss.SSS+0000`: REST JSON and Bulk job-info datetimes (§2.7).
pub fn fmt_datetime_rest(ms: i64) -> String {
    let mut v = Vec::with_capacity(28);
    push_datetime(&mut v, ms, false);
    ascii(v)
}

/// `YYYY-MM-DDThh:mm:ss.SSSZ`: the Bulk 2.0 CSV spelling expected by default (§5.5, §9.1).
pub fn fmt_datetime_zulu(ms: i64) -> String {
    let mut v = Vec::with_capacity(24);
    push_datetime(&mut v, ms, true);
    ascii(v)
}

/// `HH:mm:ss.SSSZ` (§2.7 `time`).
pub fn fmt_time(ms: u32) -> String {
    let h = ms / 3_600_000;
    let m = ms / 60_000 % 60;
    let s = ms / 1000 % 60;
    let f = ms % 1000;
    format!("{h:02}:{m:02}:{s:02}.{f:03}Z")
}

/// Renders a double the way Salesforce's JSON does: integral values keep one decimal (`1250000.0`).
pub fn json_double(d: f64) -> serde_json::Value {
    serde_json::Number::from_f64(d)
        .map(serde_json::Value::Number)
        .unwrap_or(serde_json::Value::Null)
}

/// Plain text of a double for CSV (`1250000.0` style is Java's; we print shortest round-trip).
pub fn text_double(d: f64) -> String {
    if d.fract() == 0.0 && d.abs() < 1e15 {
        format!("{d:.1}")
    } else {
        format!("{d}")
    }
}

/// Parses the datetime spellings Salesforce accepts on input (§2.7, §6.6):
/// `yyyy-MM-ddTHH:mm:ss(.SSS)?(Z|±HH:mm|±HHmm)`. Returns epoch milliseconds.
pub fn parse_datetime(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[10] != b'T' && b[10] != b't' {
        return None;
    }
    let days = parse_date(&s[..10])?;
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut pos = 19;
    let mut millis = 0i64;
    if b.get(pos) == Some(&b'.') {
        let start = pos + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == start {
            return None;
        }
        let frac = &s[start..end.min(start + 3)];
        millis = frac.parse::<i64>().ok()? * 10i64.pow(3 - frac.len() as u32);
        pos = end;
    }
    let offset_min = match b.get(pos)? {
        b'Z' | b'z' if pos + 1 == b.len() => 0,
        c @ (b'+' | b'-') => {
            let rest = &s[pos + 1..];
            let (oh, om) = match rest.len() {
                5 if rest.as_bytes()[2] == b':' => (num(pos + 1..pos + 3)?, num(pos + 4..pos + 6)?),
                4 => (num(pos + 1..pos + 3)?, num(pos + 3..pos + 5)?),
                _ => return None,
            };
            let sign = if *c == b'+' { 1 } else { -1 };
            sign * (oh * 60 + om)
        }
        _ => return None,
    };
    Some(
        i64::from(days) * 86_400_000 + h * 3_600_000 + mi * 60_000 + se * 1000 + millis
            - offset_min * 60_000,
    )
}

/// Parses `YYYY-MM-DD` into days since the epoch.
pub fn parse_date(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    if !s
        .bytes()
        .enumerate()
        .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
    {
        return None;
    }
    days_from_ymd(
        s[..4].parse().ok()?,
        s[5..7].parse().ok()?,
        s[8..].parse().ok()?,
    )
}

/// Parses `HH:mm:ss(.SSS)?Z?` into milliseconds after midnight.
pub fn parse_time(s: &str) -> Option<u32> {
    let t = s.strip_suffix('Z').unwrap_or(s);
    let (hms, frac) = t.split_once('.').unwrap_or((t, "0"));
    let mut it = hms.split(':');
    let h: u32 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let sec: u32 = it.next()?.parse().ok()?;
    if it.next().is_some() || h > 23 || m > 59 || sec > 59 {
        return None;
    }
    let f = frac.get(..frac.len().min(3))?;
    let ms: u32 = f.parse::<u32>().ok()? * 10u32.pow(3 - f.len() as u32);
    Some(((h * 60 + m) * 60 + sec) * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_spellings_parse_to_the_same_instant() {
        let z = parse_datetime("2024-01-02T03:04:05Z").unwrap();
        assert_eq!(parse_datetime("2024-01-02T03:04:05.000Z"), Some(z));
        assert_eq!(parse_datetime("2024-01-02T04:04:05+01:00"), Some(z));
        assert_eq!(parse_datetime("2024-01-02T02:04:05-0100"), Some(z));
        assert_eq!(fmt_datetime_rest(z), "2024-01-02T03:04:05.000+0000");
        assert_eq!(fmt_datetime_zulu(z), "2024-01-02T03:04:05.000Z");
        assert_eq!(parse_datetime("2024-01-02 03:04:05Z"), None);
        assert_eq!(parse_datetime("2024-01-02T03:04:05"), None);
    }

    #[test]
    fn dates_and_times_round_trip() {
        let d = parse_date("2024-02-29").unwrap();
        assert_eq!(fmt_date(d), "2024-02-29");
        assert_eq!(parse_date("2024-02-30"), None);
        assert_eq!(
            fmt_time(parse_time("13:05:09.250Z").unwrap()),
            "13:05:09.250Z"
        );
    }

    #[test]
    fn civil_matches_chrono() {
        for days in [-1000i32, 0, 59, 365, 10_957, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = ymd_from_days(days);
            assert_eq!(civil(i64::from(days)), (i64::from(y), m, d), "{days}");
        }
    }

    #[test]
    fn text_compares_case_insensitively() {
        assert_eq!(cmp_ci("abc", "ABC"), Ordering::Equal);
        assert_eq!(cmp_ci("abc", "abd"), Ordering::Less);
        assert_eq!(text_double(2.0), "2.0");
        assert_eq!(text_double(2.5), "2.5");
    }
}
