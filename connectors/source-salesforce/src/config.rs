//! The connector configuration: Airbyte's keys (so existing configs work unchanged) plus ours.
//!
//! [`RawConfig`] is what serde reads from `--config`; [`Config::try_from`] checks every value and
//! returns a [`ConfigError`] whose message names the field to fix. Defaults equal the ones in
//! `schemas/source-salesforce.spec.json`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Months, NaiveDate, TimeDelta, Utc};
use salesforce_client::{ApiVersion, Secret};
use serde::Deserialize;
use serde_json::Value;

use crate::formula::Schedule;

/// Default `stream_slice_step`.
pub const DEFAULT_STREAM_SLICE_STEP: &str = "P30D";
/// Default `lookback_window`.
pub const DEFAULT_LOOKBACK_WINDOW: &str = "PT10M";
/// Default `api_version`.
pub const DEFAULT_API_VERSION: &str = "62.0";
/// Default `num_workers`.
pub const DEFAULT_NUM_WORKERS: u32 = 8;
/// Largest accepted `num_workers`.
pub const MAX_NUM_WORKERS: u32 = 50;
/// Default `api_budget_percent`.
pub const DEFAULT_API_BUDGET_PERCENT: u32 = 90;

/// A configuration value that cannot be used; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The JSON does not have the expected shape (wrong type of a value).
    #[error("config field `{field}`: {problem}")]
    Shape {
        /// Path of the field, e.g. `streams_criteria[0].value`.
        field: String,
        /// What serde said.
        problem: String,
    },
    /// A required field is missing or empty.
    #[error("config field `{field}` is required and must not be empty")]
    Missing {
        /// The field.
        field: &'static str,
    },
    /// A field has a value that is not accepted.
    #[error("config field `{field}`: {problem}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong and what is expected.
        problem: String,
    },
}

fn invalid(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        problem: problem.into(),
    }
}

/// One `streams_criteria` entry as written in the config.
#[derive(Debug, Clone, Deserialize)]
pub struct RawCriterion {
    /// One of the eight operators; `contains` when absent.
    #[serde(default)]
    pub criteria: Option<String>,
    /// The text to compare object names with.
    pub value: String,
}

/// The config as serde reads it: every key optional, types as loose as Airbyte accepts.
#[derive(Deserialize, Default)]
pub struct RawConfig {
    /// `true`, `false`, `"true"` or `"false"`.
    #[serde(default)]
    pub is_sandbox: Option<Value>,
    /// `"Client"` (Airbyte's OAuth predicate); anything else is refused.
    #[serde(default)]
    pub auth_type: Option<String>,
    /// Connected-app consumer key.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Connected-app consumer secret.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// OAuth refresh token.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// `YYYY-MM-DD` or `YYYY-MM-DDTHH:mm:ssZ`.
    #[serde(default)]
    pub start_date: Option<String>,
    /// Same forms as `start_date`; empty means none.
    #[serde(default)]
    pub end_date: Option<String>,
    /// Use Bulk API even where REST would be chosen.
    #[serde(default)]
    pub force_use_bulk_api: Option<bool>,
    /// ISO 8601 duration.
    #[serde(default)]
    pub stream_slice_step: Option<String>,
    /// ISO 8601 duration.
    #[serde(default)]
    pub lookback_window: Option<String>,
    /// Discovery filters.
    #[serde(default)]
    pub streams_criteria: Option<Vec<RawCriterion>>,
    /// Keep `NA`-like strings in Bulk results.
    #[serde(default)]
    pub preserve_na_values: Option<bool>,
    /// Login host override (My Domain or a local emulator).
    #[serde(default)]
    pub login_url: Option<String>,
    /// REST / Bulk API version.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Streams read at the same time.
    #[serde(default)]
    pub num_workers: Option<i64>,
    /// Share of the daily API quota the connector may use up to, in percent.
    #[serde(default)]
    pub api_budget_percent: Option<i64>,
    /// Cron expression (UTC) of the formula-field refresh; empty or absent means none.
    #[serde(default)]
    pub formula_refresh_schedule: Option<String>,
}

impl fmt::Debug for RawConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "[redacted]");
        f.debug_struct("RawConfig")
            .field("is_sandbox", &self.is_sandbox)
            .field("auth_type", &self.auth_type)
            .field("client_id", &self.client_id)
            .field("client_secret", &redact(&self.client_secret))
            .field("refresh_token", &redact(&self.refresh_token))
            .field("start_date", &self.start_date)
            .field("end_date", &self.end_date)
            .field("force_use_bulk_api", &self.force_use_bulk_api)
            .field("stream_slice_step", &self.stream_slice_step)
            .field("lookback_window", &self.lookback_window)
            .field("streams_criteria", &self.streams_criteria)
            .field("preserve_na_values", &self.preserve_na_values)
            .field("login_url", &self.login_url)
            .field("api_version", &self.api_version)
            .field("num_workers", &self.num_workers)
            .field("api_budget_percent", &self.api_budget_percent)
            .field("formula_refresh_schedule", &self.formula_refresh_schedule)
            .finish()
    }
}

impl RawConfig {
    /// Reads the config object; a wrong value type names its path.
    pub fn from_json(config: &serde_json::Map<String, Value>) -> Result<Self, ConfigError> {
        serde_path_to_error::deserialize(Value::Object(config.clone())).map_err(|err| {
            let field = err.path().to_string();
            ConfigError::Shape {
                field,
                problem: err.into_inner().to_string(),
            }
        })
    }
}

/// An ISO 8601 duration split into calendar months and exact time, so `P1M` moves a date by
/// one calendar month as Airbyte's Python (isodate) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsoDuration {
    /// Whole months (`Y` × 12 + `M`).
    pub months: u32,
    /// Exact part (`W`, `D`, `H`, `M`, `S`).
    pub exact: TimeDelta,
}

impl IsoDuration {
    /// Parses `P30D`, `PT12H`, `P1M`, `P1Y`, `PT0.5S`, ... Fractional years or months are refused
    /// because they have no exact length.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parsed = iso8601_duration::Duration::from_str(text.trim()).map_err(|_| {
            format!("{text:?} is not an ISO 8601 duration such as P30D, PT12H or P1M")
        })?;
        let months = f64::from(parsed.year) * 12.0 + f64::from(parsed.month);
        if months.fract() != 0.0 || months < 0.0 || months > f64::from(u16::MAX) {
            return Err(format!("{text:?}: years and months must be whole numbers"));
        }
        let secs = f64::from(parsed.day) * 86_400.0
            + f64::from(parsed.hour) * 3_600.0
            + f64::from(parsed.minute) * 60.0
            + f64::from(parsed.second);
        if !secs.is_finite() || !(0.0..=1e12).contains(&secs) {
            return Err(format!("{text:?} is out of range"));
        }
        let millis = (secs * 1000.0).round() as i64;
        Ok(Self {
            months: months as u32,
            exact: TimeDelta::milliseconds(millis),
        })
    }

    /// Whether the duration is zero.
    pub fn is_zero(&self) -> bool {
        self.months == 0 && self.exact.is_zero()
    }

    /// `ts` plus this duration (saturating at the end of time).
    pub fn add_to(&self, ts: DateTime<Utc>) -> DateTime<Utc> {
        let moved = ts
            .checked_add_months(Months::new(self.months))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        moved
            .checked_add_signed(self.exact)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// `ts` minus this duration (saturating at the start of time).
    pub fn sub_from(&self, ts: DateTime<Utc>) -> DateTime<Utc> {
        let moved = ts
            .checked_sub_months(Months::new(self.months))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        moved
            .checked_sub_signed(self.exact)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

/// The eight `streams_criteria` operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CriterionKind {
    /// `starts with`
    StartsWith,
    /// `ends with`
    EndsWith,
    /// `contains`
    Contains,
    /// `exacts`
    Exacts,
    /// `starts not with`
    StartsNotWith,
    /// `ends not with`
    EndsNotWith,
    /// `not contains`
    NotContains,
    /// `not exacts`
    NotExacts,
}

impl CriterionKind {
    fn parse(text: &str) -> Option<Self> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "starts with" => Self::StartsWith,
            "ends with" => Self::EndsWith,
            "contains" => Self::Contains,
            "exacts" => Self::Exacts,
            "starts not with" => Self::StartsNotWith,
            "ends not with" => Self::EndsNotWith,
            "not contains" => Self::NotContains,
            "not exacts" => Self::NotExacts,
            _ => return None,
        })
    }
}

/// One validated discovery filter; `value` is lower-cased (matching is case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Criterion {
    /// The operator.
    pub kind: CriterionKind,
    /// Lower-cased comparison text.
    pub value: String,
}

impl Criterion {
    /// Whether `name` passes this filter (case-insensitively).
    pub fn matches(&self, name: &str) -> bool {
        let name = name.to_lowercase();
        let v = self.value.as_str();
        match self.kind {
            CriterionKind::StartsWith => name.starts_with(v),
            CriterionKind::EndsWith => name.ends_with(v),
            CriterionKind::Contains => name.contains(v),
            CriterionKind::Exacts => name == v,
            CriterionKind::StartsNotWith => !name.starts_with(v),
            CriterionKind::EndsNotWith => !name.ends_with(v),
            CriterionKind::NotContains => !name.contains(v),
            CriterionKind::NotExacts => name != v,
        }
    }
}

/// The validated configuration.
#[derive(Clone)]
pub struct Config {
    /// Log in at test.salesforce.com.
    pub is_sandbox: bool,
    /// Connected-app consumer key.
    pub client_id: String,
    /// Connected-app consumer secret.
    pub client_secret: Secret,
    /// OAuth refresh token.
    pub refresh_token: Secret,
    /// Lower bound of incremental reads (inclusive).
    pub start_date: DateTime<Utc>,
    /// Upper bound of incremental reads (exclusive), if set; the read caps it at "now".
    pub end_date: Option<DateTime<Utc>>,
    /// Prefer Bulk API wherever Bulk supports the object.
    pub force_use_bulk_api: bool,
    /// Largest time window one query covers.
    pub stream_slice_step: IsoDuration,
    /// How far each incremental read reaches back before the saved cursor.
    pub lookback_window: IsoDuration,
    /// Discovery filters (OR-combined); empty means every object.
    pub streams_criteria: Vec<Criterion>,
    /// Keep `NA`-like Bulk values as strings.
    pub preserve_na_values: bool,
    /// Login host override.
    pub login_url: Option<String>,
    /// API version.
    pub api_version: ApiVersion,
    /// Streams read at once.
    pub num_workers: u32,
    /// API budget, percent of the daily allocation.
    pub api_budget_percent: u32,
    /// When formula fields are re-read (see `crate::formula`); `None`: never.
    pub formula_refresh_schedule: Option<Schedule>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("is_sandbox", &self.is_sandbox)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("refresh_token", &self.refresh_token)
            .field("start_date", &self.start_date)
            .field("end_date", &self.end_date)
            .field("force_use_bulk_api", &self.force_use_bulk_api)
            .field("stream_slice_step", &self.stream_slice_step)
            .field("lookback_window", &self.lookback_window)
            .field("streams_criteria", &self.streams_criteria)
            .field("preserve_na_values", &self.preserve_na_values)
            .field("login_url", &self.login_url)
            .field("api_version", &self.api_version)
            .field("num_workers", &self.num_workers)
            .field("api_budget_percent", &self.api_budget_percent)
            .field("formula_refresh_schedule", &self.formula_refresh_schedule)
            .finish()
    }
}

/// Parses `YYYY-MM-DD` (midnight UTC) or an RFC 3339 date-time such as `YYYY-MM-DDTHH:mm:ssZ`.
pub fn parse_date_or_datetime(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return date.and_hms_opt(0, 0, 0).map(|d| d.and_utc());
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

fn required(value: Option<String>, field: &'static str) -> Result<String, ConfigError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ConfigError::Missing { field }),
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

impl Config {
    /// Validates `raw` against `now` (the default start date is two years before it; the end
    /// date must be after the start date).
    pub fn from_raw(raw: RawConfig, now: DateTime<Utc>) -> Result<Self, ConfigError> {
        let is_sandbox = match raw.is_sandbox {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") || s.is_empty() => false,
            Some(other) => {
                return Err(invalid(
                    "is_sandbox",
                    format!("expected true or false, found {other}"),
                ));
            }
        };
        match raw.auth_type.as_deref() {
            None | Some("Client") | Some("") => {}
            Some(other) => {
                return Err(invalid(
                    "auth_type",
                    format!("{other:?} is not supported; use \"Client\" (OAuth refresh token)"),
                ));
            }
        }
        let client_id = required(raw.client_id, "client_id")?;
        let client_secret = Secret::new(required(raw.client_secret, "client_secret")?);
        let refresh_token = Secret::new(required(raw.refresh_token, "refresh_token")?);

        let start_date = match non_empty(raw.start_date) {
            Some(s) => parse_date_or_datetime(&s).ok_or_else(|| {
                invalid(
                    "start_date",
                    format!("{s:?} is not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:mm:ssZ"),
                )
            })?,
            None => now
                .checked_sub_months(Months::new(24))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        };
        let end_date = match non_empty(raw.end_date) {
            Some(s) => {
                let end = parse_date_or_datetime(&s).ok_or_else(|| {
                    invalid(
                        "end_date",
                        format!("{s:?} is not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:mm:ssZ"),
                    )
                })?;
                if end <= start_date {
                    return Err(invalid(
                        "end_date",
                        format!(
                            "{s:?} must be after start_date ({})",
                            start_date.format("%Y-%m-%dT%H:%M:%SZ")
                        ),
                    ));
                }
                Some(end)
            }
            None => None,
        };

        let step_text = non_empty(raw.stream_slice_step)
            .unwrap_or_else(|| DEFAULT_STREAM_SLICE_STEP.to_owned());
        let stream_slice_step =
            IsoDuration::parse(&step_text).map_err(|p| invalid("stream_slice_step", p))?;
        if stream_slice_step.months == 0 && stream_slice_step.exact < TimeDelta::seconds(1) {
            return Err(invalid(
                "stream_slice_step",
                format!("{step_text:?} is shorter than the minimum of one second (PT1S)"),
            ));
        }
        let lookback_text =
            non_empty(raw.lookback_window).unwrap_or_else(|| DEFAULT_LOOKBACK_WINDOW.to_owned());
        let lookback_window =
            IsoDuration::parse(&lookback_text).map_err(|p| invalid("lookback_window", p))?;

        let mut streams_criteria = Vec::new();
        for (i, c) in raw
            .streams_criteria
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let kind_text = c.criteria.unwrap_or_else(|| "contains".to_owned());
            let kind = CriterionKind::parse(&kind_text).ok_or_else(|| {
                invalid(
                    "streams_criteria",
                    format!(
                        "entry {i}: criteria {kind_text:?} is not one of: starts with, ends with, contains, exacts, starts not with, ends not with, not contains, not exacts"
                    ),
                )
            })?;
            streams_criteria.push(Criterion {
                kind,
                value: c.value.to_lowercase(),
            });
        }

        let login_url = match non_empty(raw.login_url) {
            Some(url) => {
                salesforce_client::config::validate_base_url("login_url", &url)
                    .map_err(|e| invalid("login_url", e.to_string()))?;
                Some(url.trim().to_owned())
            }
            None => None,
        };
        let version_text =
            non_empty(raw.api_version).unwrap_or_else(|| DEFAULT_API_VERSION.to_owned());
        let api_version = ApiVersion::from_str(&version_text).map_err(|_| {
            invalid(
                "api_version",
                format!("{version_text:?} is not a Salesforce API version such as \"62.0\""),
            )
        })?;

        let num_workers = match raw.num_workers {
            None => DEFAULT_NUM_WORKERS,
            Some(n) if (1..=i64::from(MAX_NUM_WORKERS)).contains(&n) => n as u32,
            Some(n) => {
                return Err(invalid(
                    "num_workers",
                    format!("{n} is out of range; use 1 to {MAX_NUM_WORKERS}"),
                ));
            }
        };
        let api_budget_percent = match raw.api_budget_percent {
            None => DEFAULT_API_BUDGET_PERCENT,
            Some(n) if (1..=100).contains(&n) => n as u32,
            Some(n) => {
                return Err(invalid(
                    "api_budget_percent",
                    format!("{n} is out of range; use 1 to 100"),
                ));
            }
        };

        let formula_refresh_schedule = match non_empty(raw.formula_refresh_schedule) {
            Some(text) => {
                Some(Schedule::parse(&text).map_err(|p| invalid("formula_refresh_schedule", p))?)
            }
            None => None,
        };

        Ok(Self {
            is_sandbox,
            client_id,
            client_secret,
            refresh_token,
            start_date,
            end_date,
            force_use_bulk_api: raw.force_use_bulk_api.unwrap_or(false),
            stream_slice_step,
            lookback_window,
            streams_criteria,
            preserve_na_values: raw.preserve_na_values.unwrap_or(false),
            login_url,
            api_version,
            num_workers,
            api_budget_percent,
            formula_refresh_schedule,
        })
    }

    /// Reads and validates a `--config` object against the current time.
    pub fn from_json(config: &serde_json::Map<String, Value>) -> Result<Self, ConfigError> {
        Self::from_raw(RawConfig::from_json(config)?, Utc::now())
    }

    /// Whether `name` passes the discovery filters (no filters: everything passes).
    pub fn stream_selected(&self, name: &str) -> bool {
        self.streams_criteria.is_empty() || self.streams_criteria.iter().any(|c| c.matches(name))
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, Self::Error> {
        Self::from_raw(raw, Utc::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
    }

    fn raw(v: Value) -> Result<RawConfig, ConfigError> {
        RawConfig::from_json(v.as_object().unwrap())
    }

    fn base() -> Value {
        json!({"client_id": "cid", "client_secret": "s3cr3t-value", "refresh_token": "r3fr3sh-value"})
    }

    fn with(extra: Value) -> Result<Config, ConfigError> {
        let mut v = base();
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        Config::from_raw(raw(v)?, now())
    }

    fn field_of(err: ConfigError) -> String {
        match err {
            ConfigError::Shape { field, .. } => field,
            ConfigError::Missing { field } | ConfigError::Invalid { field, .. } => field.to_owned(),
        }
    }

    fn c_schedule(extra: Value) -> Option<crate::formula::Schedule> {
        with(extra).unwrap().formula_refresh_schedule
    }

    #[test]
    fn defaults_match_the_spec_file() {
        let spec: Value =
            serde_json::from_str(include_str!("../../../schemas/source-salesforce.spec.json"))
                .unwrap();
        let props = &spec["connectionSpecification"]["properties"];
        let c = with(json!({})).unwrap();
        assert_eq!(props["is_sandbox"]["default"], json!(c.is_sandbox));
        assert_eq!(
            props["force_use_bulk_api"]["default"],
            json!(c.force_use_bulk_api)
        );
        assert_eq!(
            props["preserve_na_values"]["default"],
            json!(c.preserve_na_values)
        );
        assert_eq!(
            props["stream_slice_step"]["default"],
            json!(DEFAULT_STREAM_SLICE_STEP)
        );
        assert_eq!(
            props["lookback_window"]["default"],
            json!(DEFAULT_LOOKBACK_WINDOW)
        );
        assert_eq!(
            props["api_version"]["default"],
            json!(c.api_version.to_string())
        );
        assert_eq!(props["num_workers"]["default"], json!(c.num_workers));
        assert_eq!(props["num_workers"]["maximum"], json!(MAX_NUM_WORKERS));
        assert_eq!(
            props["api_budget_percent"]["default"],
            json!(c.api_budget_percent)
        );
        assert_eq!(
            c.stream_slice_step,
            IsoDuration {
                months: 0,
                exact: TimeDelta::days(30)
            }
        );
        assert_eq!(c.lookback_window.exact, TimeDelta::minutes(10));
        assert_eq!(
            c.start_date,
            Utc.with_ymd_and_hms(2024, 11, 24, 12, 0, 0).unwrap()
        );
        assert_eq!(c.end_date, None);
        assert!(c.streams_criteria.is_empty());
        assert_eq!(c.login_url, None);
    }

    #[test]
    fn required_fields_are_named() {
        for field in ["client_id", "client_secret", "refresh_token"] {
            let mut v = base();
            v.as_object_mut().unwrap().remove(field);
            let err = Config::from_raw(raw(v).unwrap(), now()).unwrap_err();
            assert_eq!(err, ConfigError::Missing { field });
            assert!(err.to_string().contains(field));
            let err = with(json!({field: "  "})).unwrap_err();
            assert_eq!(field_of(err), field);
        }
    }

    #[test]
    fn is_sandbox_accepts_bool_and_string() {
        assert!(with(json!({"is_sandbox": true})).unwrap().is_sandbox);
        assert!(with(json!({"is_sandbox": "true"})).unwrap().is_sandbox);
        assert!(with(json!({"is_sandbox": "True"})).unwrap().is_sandbox);
        assert!(!with(json!({"is_sandbox": "false"})).unwrap().is_sandbox);
        assert!(!with(json!({"is_sandbox": null})).unwrap().is_sandbox);
        assert_eq!(
            field_of(with(json!({"is_sandbox": "yes"})).unwrap_err()),
            "is_sandbox"
        );
        assert_eq!(
            field_of(with(json!({"is_sandbox": 1})).unwrap_err()),
            "is_sandbox"
        );
    }

    #[test]
    fn dates_in_both_forms() {
        let c = with(json!({"start_date": "2010-01-18"})).unwrap();
        assert_eq!(
            c.start_date,
            Utc.with_ymd_and_hms(2010, 1, 18, 0, 0, 0).unwrap()
        );
        let c =
            with(json!({"start_date": "2021-07-25T10:11:12Z", "end_date": "2021-07-26"})).unwrap();
        assert_eq!(
            c.start_date,
            Utc.with_ymd_and_hms(2021, 7, 25, 10, 11, 12).unwrap()
        );
        assert_eq!(
            c.end_date,
            Some(Utc.with_ymd_and_hms(2021, 7, 26, 0, 0, 0).unwrap())
        );
        let c = with(json!({"start_date": "", "end_date": ""})).unwrap();
        assert_eq!(c.end_date, None);
        assert_eq!(
            field_of(with(json!({"start_date": "25/07/2021"})).unwrap_err()),
            "start_date"
        );
        assert_eq!(
            field_of(with(json!({"end_date": "tomorrow"})).unwrap_err()),
            "end_date"
        );
    }

    #[test]
    fn end_date_must_follow_start_date() {
        let err = with(json!({"start_date": "2021-07-25", "end_date": "2021-07-25"})).unwrap_err();
        assert_eq!(field_of(err.clone()), "end_date");
        assert!(err.to_string().contains("after start_date"), "{err}");
        assert!(with(json!({"start_date": "2021-07-25", "end_date": "2020-01-01"})).is_err());
    }

    #[test]
    fn slice_step_validation_matches_airbyte_cases() {
        for bad in ["2023", "PT0.1S", "PT1D", "P221S", "", "P0.5M"] {
            if bad.is_empty() {
                continue; // empty means default
            }
            let err = with(json!({"stream_slice_step": bad})).unwrap_err();
            assert_eq!(field_of(err), "stream_slice_step", "{bad}");
        }
        let c = with(json!({"stream_slice_step": "PT12H"})).unwrap();
        assert_eq!(c.stream_slice_step.exact, TimeDelta::hours(12));
        let c = with(json!({"stream_slice_step": "P1M"})).unwrap();
        assert_eq!(c.stream_slice_step.months, 1);
        let c = with(json!({"stream_slice_step": "P1Y"})).unwrap();
        assert_eq!(c.stream_slice_step.months, 12);
        assert!(with(json!({"stream_slice_step": "PT1S"})).is_ok());
    }

    #[test]
    fn lookback_may_be_zero_but_must_parse() {
        assert!(
            with(json!({"lookback_window": "PT0S"}))
                .unwrap()
                .lookback_window
                .is_zero()
        );
        let c = with(json!({"lookback_window": "PT1H"})).unwrap();
        assert_eq!(c.lookback_window.exact, TimeDelta::hours(1));
        assert_eq!(
            field_of(with(json!({"lookback_window": "-PT1H"})).unwrap_err()),
            "lookback_window"
        );
        assert_eq!(
            field_of(with(json!({"lookback_window": "10m"})).unwrap_err()),
            "lookback_window"
        );
    }

    #[test]
    fn months_are_calendar_months() {
        let one_month = IsoDuration::parse("P1M").unwrap();
        let jan31 = Utc.with_ymd_and_hms(2024, 1, 31, 0, 0, 0).unwrap();
        assert_eq!(
            one_month.add_to(jan31),
            Utc.with_ymd_and_hms(2024, 2, 29, 0, 0, 0).unwrap()
        );
        let mar = Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap();
        assert_eq!(
            one_month.sub_from(mar),
            Utc.with_ymd_and_hms(2024, 2, 1, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn ours_are_range_checked() {
        assert_eq!(
            field_of(with(json!({"num_workers": 0})).unwrap_err()),
            "num_workers"
        );
        assert_eq!(
            field_of(with(json!({"num_workers": 51})).unwrap_err()),
            "num_workers"
        );
        assert_eq!(with(json!({"num_workers": 50})).unwrap().num_workers, 50);
        assert_eq!(
            field_of(with(json!({"num_workers": "8"})).unwrap_err()),
            "num_workers"
        );
        assert_eq!(
            field_of(with(json!({"api_budget_percent": 101})).unwrap_err()),
            "api_budget_percent"
        );
        assert_eq!(
            field_of(with(json!({"api_version": "latest"})).unwrap_err()),
            "api_version"
        );
        assert!(c_schedule(json!({})).is_none(), "off by default");
        assert!(c_schedule(json!({"formula_refresh_schedule": " "})).is_none());
        assert_eq!(
            c_schedule(json!({"formula_refresh_schedule": "0 3 * * *"}))
                .unwrap()
                .as_str(),
            "0 3 * * *"
        );
        let err = with(json!({"formula_refresh_schedule": "daily"})).unwrap_err();
        assert!(err.to_string().contains("not a cron expression"), "{err}");
        assert_eq!(field_of(err), "formula_refresh_schedule");
        assert_eq!(
            with(json!({"api_version": "60.0"}))
                .unwrap()
                .api_version
                .to_string(),
            "60.0"
        );
        assert_eq!(
            field_of(with(json!({"login_url": "http://example.com"})).unwrap_err()),
            "login_url"
        );
        assert_eq!(
            with(json!({"login_url": "http://127.0.0.1:8111"}))
                .unwrap()
                .login_url
                .as_deref(),
            Some("http://127.0.0.1:8111")
        );
        assert_eq!(
            field_of(with(json!({"auth_type": "JWT"})).unwrap_err()),
            "auth_type"
        );
        assert!(with(json!({"auth_type": "Client"})).is_ok());
    }

    #[test]
    fn criteria_all_eight_operators_case_insensitive() {
        let c = with(json!({"streams_criteria": [
            {"criteria": "starts with", "value": "ACC"},
        ]}))
        .unwrap();
        assert!(c.stream_selected("Account") && c.stream_selected("AccountHistory"));
        assert!(!c.stream_selected("Contact"));
        let cases: [(&str, &str, &[&str], &[&str]); 8] = [
            ("starts with", "acc", &["Account"], &["MyAccount"]),
            (
                "ends with",
                "HISTORY",
                &["AccountHistory"],
                &["HistoryItem"],
            ),
            (
                "contains",
                "count",
                &["Account", "AccountHistory"],
                &["Lead"],
            ),
            ("exacts", "account", &["Account"], &["AccountHistory"]),
            ("starts not with", "acc", &["Lead"], &["Account"]),
            ("ends not with", "history", &["Account"], &["LeadHistory"]),
            ("not contains", "lead", &["Account"], &["LeadHistory"]),
            ("not exacts", "lead", &["LeadHistory"], &["Lead", "LEAD"]),
        ];
        for (op, value, yes, no) in cases {
            let c = with(json!({"streams_criteria": [{"criteria": op, "value": value}]})).unwrap();
            for n in yes {
                assert!(c.stream_selected(n), "{op} {value} should keep {n}");
            }
            for n in no {
                assert!(!c.stream_selected(n), "{op} {value} should drop {n}");
            }
        }
        // OR-combined, default operator is contains.
        let c = with(json!({"streams_criteria": [
            {"value": "lead"}, {"criteria": "exacts", "value": "Account"}
        ]}))
        .unwrap();
        assert!(c.stream_selected("Lead") && c.stream_selected("Account"));
        assert!(!c.stream_selected("Contact"));
        let err =
            with(json!({"streams_criteria": [{"criteria": "like", "value": "x"}]})).unwrap_err();
        assert_eq!(field_of(err), "streams_criteria");
        let err = with(json!({"streams_criteria": [{"criteria": "contains"}]})).unwrap_err();
        assert!(field_of(err).starts_with("streams_criteria"));
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = with(json!({})).unwrap();
        let text = format!("{c:?}");
        assert!(
            !text.contains("s3cr3t-value") && !text.contains("r3fr3sh-value"),
            "{text}"
        );
        let r = raw(base()).unwrap();
        let text = format!("{r:?}");
        assert!(
            !text.contains("s3cr3t-value") && !text.contains("r3fr3sh-value"),
            "{text}"
        );
        assert!(text.contains("cid"));
    }
}
