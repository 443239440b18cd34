//! The crate's public error type, Salesforce error bodies, and error classification.
//!
//! Salesforce answers a failed REST or Bulk 2.0 call with a JSON array
//! `[{"errorCode": "...", "message": "...", "fields": [...]}]`; [`ApiError::from_response`] parses it
//! (and copes with HTML or empty bodies). Callers match on [`ApiError::error_code`], never on
//! message text; the few cases where Salesforce encodes meaning only in the message (daily vs
//! concurrent `REQUEST_LIMIT_EXCEEDED`) have named predicates here.
//!
//! Every [`Error`] has an [`ErrorClass`] that connectors map to their own failure types.

use std::fmt;
use std::time::Duration;

use crate::auth::AuthError;
use crate::config::ConfigError;

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a caller should treat an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The user must change something (credentials, login host, SOQL, permissions).
    Config,
    /// Likely to succeed if tried again later (5xx, network, lock contention, timeouts).
    Transient,
    /// The org's daily API quota, or the caller's own budget of it, is used up. Retrying before
    /// the rolling 24 h window frees calls is pointless.
    RateLimited,
    /// Anything else: an unexpected answer or a bug.
    System,
}

/// One error from a Salesforce error body, plus the HTTP status it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// Salesforce `errorCode`, e.g. `INVALID_FIELD`. `UNKNOWN` when the body had none.
    pub error_code: String,
    /// Salesforce `message` (or the start of a non-JSON body).
    pub message: String,
    /// Salesforce `fields` (record and field errors only).
    pub fields: Vec<String>,
}

/// Error code used when a response carried no parsable Salesforce error.
pub const UNKNOWN_ERROR_CODE: &str = "UNKNOWN";

/// How much of a non-JSON error body is kept in [`ApiError::message`].
const MAX_RAW_MESSAGE: usize = 512;

#[derive(serde::Deserialize)]
struct RawApiError {
    #[serde(rename = "errorCode", default)]
    error_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    fields: Option<Vec<String>>,
}

impl ApiError {
    /// Parses a Salesforce error body. Accepts the documented array form, a single object, the
    /// OAuth form `{"error","error_description"}`, and anything else (kept as a truncated message).
    pub fn from_response(status: u16, body: &[u8]) -> Self {
        if let Ok(items) = serde_json::from_slice::<Vec<RawApiError>>(body)
            && let Some(first) = items.into_iter().next()
        {
            return Self::from_raw(status, first);
        }
        if let Ok(one) = serde_json::from_slice::<RawApiError>(body)
            && (one.error_code.is_some() || one.message.is_some())
        {
            return Self::from_raw(status, one);
        }
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body)
            && let Some(code) = map.get("error").and_then(|v| v.as_str())
        {
            let message = map
                .get("error_description")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            return Self {
                status,
                error_code: code.to_owned(),
                message: message.to_owned(),
                fields: Vec::new(),
            };
        }
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let mut end = text.len().min(MAX_RAW_MESSAGE);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            status,
            error_code: UNKNOWN_ERROR_CODE.to_owned(),
            message: text[..end].to_owned(),
            fields: Vec::new(),
        }
    }

    fn from_raw(status: u16, raw: RawApiError) -> Self {
        Self {
            status,
            error_code: raw
                .error_code
                .unwrap_or_else(|| UNKNOWN_ERROR_CODE.to_owned()),
            message: raw.message.unwrap_or_default(),
            fields: raw.fields.unwrap_or_default(),
        }
    }

    /// `REQUEST_LIMIT_EXCEEDED` for too many concurrent long-running requests
    /// (`ConcurrentRequests` / `ConcurrentPerOrgLongTxn`): worth retrying after a pause.
    pub fn is_concurrent_limit(&self) -> bool {
        self.error_code == "REQUEST_LIMIT_EXCEEDED" && self.message.contains("Concurrent")
    }

    /// `REQUEST_LIMIT_EXCEEDED` for the org's daily API quota (`TotalRequests Limit exceeded.`).
    /// Any `REQUEST_LIMIT_EXCEEDED` that is not recognisably the concurrent kind counts as daily,
    /// so an unknown wording is never retried.
    pub fn is_daily_limit(&self) -> bool {
        self.error_code == "REQUEST_LIMIT_EXCEEDED" && !self.is_concurrent_limit()
    }

    /// `INVALID_SESSION_ID` (or any 401) for a token that a refresh could fix. A token that lacks
    /// the `api` scope ("not valid for use with the REST API") is not refreshable.
    pub fn is_refreshable_session_error(&self) -> bool {
        self.status == 401 && !self.message.contains("not valid for use with the REST API")
    }

    /// The class of this error (see [`ErrorClass`]).
    pub fn class(&self) -> ErrorClass {
        match (self.status, self.error_code.as_str()) {
            (_, "REQUEST_LIMIT_EXCEEDED") if self.is_daily_limit() => ErrorClass::RateLimited,
            (_, "REQUEST_LIMIT_EXCEEDED") => ErrorClass::Transient,
            (_, "UNABLE_TO_LOCK_ROW" | "QUERY_TIMEOUT" | "SERVER_UNAVAILABLE") => {
                ErrorClass::Transient
            }
            (401 | 403, _) => ErrorClass::Config,
            (
                _,
                "MALFORMED_QUERY"
                | "INVALID_FIELD"
                | "INVALID_TYPE"
                | "INVALID_TYPE_FOR_OPERATION"
                | "INSUFFICIENT_ACCESS"
                | "INSUFFICIENT_ACCESS_OR_READONLY"
                | "API_DISABLED_FOR_ORG"
                | "API_CURRENTLY_DISABLED"
                | "INVALIDENTITY"
                | "TXN_SECURITY_METERING_ERROR",
            ) => ErrorClass::Config,
            (410, _) => ErrorClass::Config,
            (408 | 420 | 429, _) => ErrorClass::Transient,
            (s, _) if s >= 500 => ErrorClass::Transient,
            _ => ErrorClass::System,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HTTP {} {}: {}",
            self.status, self.error_code, self.message
        )?;
        if !self.fields.is_empty() {
            write!(f, " (fields: {})", self.fields.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// A Bulk API 2.0 job that did not end as expected.
#[derive(Debug, thiserror::Error)]
pub enum BulkJobError {
    /// The job ended in state `Failed`.
    #[error("Bulk API job {job_id} failed: {}", error_message.as_deref().unwrap_or("Salesforce gave no error message"))]
    Failed {
        /// Job id.
        job_id: String,
        /// The job's `errorMessage`, when Salesforce sent one.
        error_message: Option<String>,
    },
    /// The job ended in state `Aborted`.
    #[error("Bulk API job {job_id} was aborted")]
    Aborted {
        /// Job id.
        job_id: String,
    },
    /// The job did not finish within the polling timeout.
    #[error("Bulk API job {job_id} did not finish within {waited:?} (last state {last_state})")]
    Timeout {
        /// Job id.
        job_id: String,
        /// How long we polled.
        waited: Duration,
        /// The last state seen.
        last_state: String,
    },
}

/// The crate's error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client configuration is invalid.
    #[error("invalid Salesforce client configuration: {0}")]
    Config(#[from] ConfigError),
    /// Getting an access token failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Salesforce answered with an error status.
    #[error("{context}: {source}")]
    Api {
        /// What we were doing (method and path).
        context: String,
        /// The parsed error.
        source: Box<ApiError>,
    },
    /// The request could not be sent or its response not read.
    #[error("{context}: HTTP transport error after {attempts} attempt(s): {source}")]
    Http {
        /// What we were doing.
        context: String,
        /// Attempts made.
        attempts: usize,
        /// The transport error.
        source: reqwest::Error,
    },
    /// The body of a single-use page (a query locator's `nextRecordsUrl`) broke off. Salesforce
    /// serves a locator once, so the page cannot be fetched again: re-run the query from the
    /// last row received (see [`Error::is_query_locator_lost`]).
    #[error("{context}: the query page broke off mid-transfer: {source}")]
    PageLost {
        /// What we were doing.
        context: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// A response body did not have the documented shape.
    #[error("{context}: unexpected response body: {source}")]
    Decode {
        /// What we were doing.
        context: String,
        /// The decoding error.
        source: serde_json::Error,
    },
    /// A response was well-formed but not what Salesforce documents.
    #[error("{context}: unexpected response: {detail}")]
    UnexpectedResponse {
        /// What we were doing.
        context: String,
        /// What was wrong.
        detail: String,
    },
    /// A CSV body could not be parsed.
    #[error("{context}: malformed CSV: {detail}")]
    Csv {
        /// What we were reading.
        context: String,
        /// What was wrong.
        detail: String,
    },
    /// The caller's API budget (a share of the daily quota) is used up.
    #[error(
        "API budget exhausted: {used} of {max} daily API calls used, budget stops at {share_percent:.1}%"
    )]
    BudgetExhausted {
        /// Calls used in the org's rolling 24 h window, per the last `Sforce-Limit-Info`.
        used: u64,
        /// The org's daily allocation.
        max: u64,
        /// The configured stop point, in percent of `max`.
        share_percent: f64,
    },
    /// A Bulk job failed, was aborted or timed out.
    #[error(transparent)]
    BulkJob(#[from] BulkJobError),
    /// A local file could not be read.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An ingest upload exceeds the per-request size limit.
    #[error(
        "upload of {size} bytes exceeds the Bulk API 2.0 limit of {max} bytes per upload; split the data into several jobs"
    )]
    UploadTooLarge {
        /// File size in bytes.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A request URL would exceed Salesforce's URI length limit.
    #[error(
        "{context}: request URI is {len} bytes, over the {max}-byte limit; select fewer fields per query"
    )]
    UriTooLong {
        /// What we were doing.
        context: String,
        /// URI length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl Error {
    /// The class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Config(_) => ErrorClass::Config,
            Error::Auth(e) => e.class(),
            Error::Api { source, .. } => source.class(),
            Error::Http { .. } | Error::PageLost { .. } => ErrorClass::Transient,
            Error::Decode { .. } | Error::UnexpectedResponse { .. } | Error::Csv { .. } => {
                ErrorClass::System
            }
            Error::BudgetExhausted { .. } => ErrorClass::RateLimited,
            Error::BulkJob(BulkJobError::Timeout { .. }) => ErrorClass::Transient,
            Error::BulkJob(_) => ErrorClass::System,
            Error::Io { .. } => ErrorClass::System,
            Error::UploadTooLarge { .. } | Error::UriTooLong { .. } => ErrorClass::System,
        }
    }

    /// The Salesforce error, when this is one.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            Error::Api { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Whether the rest of a query can no longer be fetched through its locator: a
    /// `nextRecordsUrl` page broke off ([`Error::PageLost`]; locators are single-use), or
    /// Salesforce answered `INVALID_QUERY_LOCATOR` (used already, expired, or too many open).
    /// Salesforce's remedy is to run the query again; a reader that knows where it stands
    /// re-runs it from the last row it received.
    pub fn is_query_locator_lost(&self) -> bool {
        matches!(self, Error::PageLost { .. })
            || self
                .api_error()
                .is_some_and(|a| a.error_code == "INVALID_QUERY_LOCATOR")
    }

    /// Whether this is the org's daily API limit (`REQUEST_LIMIT_EXCEEDED` with
    /// `TotalRequests`), as opposed to the concurrent-request limit or our own budget.
    pub fn is_daily_limit(&self) -> bool {
        self.api_error().is_some_and(ApiError::is_daily_limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_array_body() {
        let e = ApiError::from_response(
            400,
            br#"[{"message":"No such column","errorCode":"INVALID_FIELD","fields":["Nope__c"]}]"#,
        );
        assert_eq!(e.status, 400);
        assert_eq!(e.error_code, "INVALID_FIELD");
        assert_eq!(e.message, "No such column");
        assert_eq!(e.fields, vec!["Nope__c".to_owned()]);
        assert_eq!(e.class(), ErrorClass::Config);
    }

    #[test]
    fn parses_html_and_empty_bodies() {
        let e = ApiError::from_response(503, b"<html>down for maintenance</html>");
        assert_eq!(e.error_code, UNKNOWN_ERROR_CODE);
        assert!(e.message.contains("maintenance"));
        assert_eq!(e.class(), ErrorClass::Transient);
        let e = ApiError::from_response(420, b"");
        assert_eq!(e.message, "");
        assert_eq!(e.class(), ErrorClass::Transient);
        let long = "x".repeat(5000);
        let e = ApiError::from_response(500, long.as_bytes());
        assert_eq!(e.message.len(), MAX_RAW_MESSAGE);
    }

    #[test]
    fn parses_oauth_shape() {
        let e = ApiError::from_response(
            400,
            br#"{"error":"invalid_grant","error_description":"expired access/refresh token"}"#,
        );
        assert_eq!(e.error_code, "invalid_grant");
        assert_eq!(e.message, "expired access/refresh token");
    }

    #[test]
    fn distinguishes_daily_and_concurrent_limits() {
        let daily = ApiError::from_response(
            403,
            br#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        );
        assert!(daily.is_daily_limit());
        assert!(!daily.is_concurrent_limit());
        assert_eq!(daily.class(), ErrorClass::RateLimited);
        let conc = ApiError::from_response(
            403,
            br#"[{"message":"ConcurrentRequests (Concurrent API Requests) Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        );
        assert!(conc.is_concurrent_limit());
        assert!(!conc.is_daily_limit());
        assert_eq!(conc.class(), ErrorClass::Transient);
        let err = Error::Api {
            context: "GET /x".into(),
            source: Box::new(daily),
        };
        assert!(err.is_daily_limit());
        assert_eq!(err.class(), ErrorClass::RateLimited);
    }

    #[test]
    fn classifies_common_codes() {
        let c = |status, code: &str| {
            ApiError {
                status,
                error_code: code.into(),
                message: String::new(),
                fields: vec![],
            }
            .class()
        };
        assert_eq!(c(400, "UNABLE_TO_LOCK_ROW"), ErrorClass::Transient);
        assert_eq!(c(400, "QUERY_TIMEOUT"), ErrorClass::Transient);
        assert_eq!(c(401, "INVALID_SESSION_ID"), ErrorClass::Config);
        assert_eq!(c(403, "INSUFFICIENT_ACCESS"), ErrorClass::Config);
        assert_eq!(c(404, "NOT_FOUND"), ErrorClass::System);
        assert_eq!(c(410, "UNKNOWN"), ErrorClass::Config);
        assert_eq!(c(429, "UNKNOWN"), ErrorClass::Transient);
        assert_eq!(c(502, "UNKNOWN"), ErrorClass::Transient);
    }
}
