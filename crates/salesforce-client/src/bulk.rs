//! Bulk API 2.0 types shared by query and ingest jobs, and job polling.

use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize};

use crate::config::ConfigError;
use crate::error::{Error, Result};
use crate::retry::{Backoff, BackoffConfig};

/// A Bulk API 2.0 job state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Ingest: accepting data.
    Open,
    /// Queued (query) or closed for data (ingest).
    UploadComplete,
    /// Being processed.
    InProgress,
    /// Finished.
    JobComplete,
    /// Failed; see `errorMessage`.
    Failed,
    /// Aborted.
    Aborted,
    /// A state this client does not know.
    Other(String),
}

impl JobState {
    /// Whether the job will not change state any more.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::JobComplete | Self::Failed | Self::Aborted)
    }

    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Open => "Open",
            Self::UploadComplete => "UploadComplete",
            Self::InProgress => "InProgress",
            Self::JobComplete => "JobComplete",
            Self::Failed => "Failed",
            Self::Aborted => "Aborted",
            Self::Other(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for JobState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "Open" => Self::Open,
            "UploadComplete" => Self::UploadComplete,
            "InProgress" => Self::InProgress,
            "JobComplete" => Self::JobComplete,
            "Failed" => Self::Failed,
            "Aborted" => Self::Aborted,
            _ => Self::Other(s),
        })
    }
}

impl Serialize for JobState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Job information returned by create, status, close and abort.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobInfo {
    /// Job id.
    pub id: String,
    /// State.
    pub state: JobState,
    /// Operation (`query`, `queryAll`, `insert`, `upsert`, ...).
    #[serde(default)]
    pub operation: Option<String>,
    /// sObject.
    #[serde(default)]
    pub object: Option<String>,
    /// Why the job failed.
    #[serde(default)]
    pub error_message: Option<String>,
    /// Records processed so far.
    #[serde(default)]
    pub number_records_processed: Option<u64>,
    /// Records that failed (ingest).
    #[serde(default)]
    pub number_records_failed: Option<u64>,
    /// Internal retries.
    #[serde(default)]
    pub retries: Option<u64>,
    /// API version of the job.
    #[serde(default)]
    pub api_version: Option<f64>,
    /// Upload URL (ingest).
    #[serde(default)]
    pub content_url: Option<String>,
    /// `V2Query` / `V2Ingest`.
    #[serde(default)]
    pub job_type: Option<String>,
    /// Every other property, kept as sent.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// CSV column delimiter of a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ColumnDelimiter {
    /// `,` (default)
    #[default]
    Comma,
    /// `\t`
    Tab,
    /// `|`
    Pipe,
    /// `;`
    Semicolon,
    /// `^`
    Caret,
    /// `` ` ``
    Backquote,
}

impl ColumnDelimiter {
    /// The delimiter byte.
    pub fn byte(self) -> u8 {
        match self {
            Self::Comma => b',',
            Self::Tab => b'\t',
            Self::Pipe => b'|',
            Self::Semicolon => b';',
            Self::Caret => b'^',
            Self::Backquote => b'`',
        }
    }
}

/// CSV line ending of a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LineEnding {
    /// `\n` (default)
    #[default]
    Lf,
    /// `\r\n`
    Crlf,
}

/// How to wait for a job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollConfig {
    /// Delays between status checks (default 0.5 s growing to 30 s).
    pub backoff: BackoffConfig,
    /// Give up after this long (default 4 h).
    pub timeout: Duration,
}

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            backoff: BackoffConfig {
                init: Duration::from_millis(500),
                max: Duration::from_secs(30),
                base: 2.0,
            },
            timeout: Duration::from_secs(4 * 3600),
        }
    }
}

/// Checks that a job id is safe to put in a path (Salesforce ids are alphanumeric).
pub(crate) fn job_id_path(id: &str) -> Result<&str> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::Config(ConfigError::OutOfRange {
            field: "job_id",
            value: id.to_owned(),
            expected: "a Salesforce id (letters and digits)",
        }));
    }
    Ok(id)
}

/// Polls `status` until the job is terminal or `poll.timeout` passes.
pub(crate) async fn poll_until_terminal<F, Fut>(
    job_id: &str,
    poll: &PollConfig,
    mut status: F,
) -> Result<JobInfo>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<JobInfo>>,
{
    let started = Instant::now();
    let mut backoff = Backoff::new(&poll.backoff);
    loop {
        let info = status().await?;
        if info.state.is_terminal() {
            return Ok(info);
        }
        let elapsed = started.elapsed();
        if elapsed >= poll.timeout {
            return Err(crate::error::BulkJobError::Timeout {
                job_id: job_id.to_owned(),
                waited: elapsed,
                last_state: info.state.as_str().to_owned(),
            }
            .into());
        }
        let delay = backoff.next_delay().min(poll.timeout - elapsed);
        tracing::debug!(
            job_id,
            state = info.state.as_str(),
            ?delay,
            "Bulk job not finished yet"
        );
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_info_parses_documented_shape() {
        let j: JobInfo = serde_json::from_str(
            r#"{"id":"750XX000000ABCdYAO","operation":"queryAll","object":"Account",
                "createdById":"005","state":"UploadComplete","concurrencyMode":"Parallel",
                "contentType":"CSV","apiVersion":62.0,"lineEnding":"LF","columnDelimiter":"COMMA"}"#,
        )
        .unwrap();
        assert_eq!(j.state, JobState::UploadComplete);
        assert!(!j.state.is_terminal());
        assert_eq!(j.api_version, Some(62.0));
        assert_eq!(j.extra["concurrencyMode"], "Parallel");
        let j: JobInfo = serde_json::from_str(r#"{"id":"1","state":"Weird"}"#).unwrap();
        assert_eq!(j.state, JobState::Other("Weird".into()));
    }

    #[test]
    fn job_ids_are_checked() {
        assert!(job_id_path("750XX000000ABCdYAO").is_ok());
        assert!(job_id_path("../x").is_err());
        assert!(job_id_path("").is_err());
    }

    #[tokio::test]
    async fn polling_times_out_with_last_state() {
        let poll = PollConfig {
            backoff: BackoffConfig {
                init: Duration::from_millis(1),
                max: Duration::from_millis(2),
                base: 2.0,
            },
            timeout: Duration::from_millis(30),
        };
        let mut calls = 0;
        let err = poll_until_terminal("750", &poll, || {
            calls += 1;
            async {
                Ok(JobInfo {
                    id: "750".into(),
                    state: JobState::InProgress,
                    operation: None,
                    object: None,
                    error_message: None,
                    number_records_processed: None,
                    number_records_failed: None,
                    retries: None,
                    api_version: None,
                    content_url: None,
                    job_type: None,
                    extra: Default::default(),
                })
            }
        })
        .await
        .unwrap_err();
        assert!(calls > 1);
        assert!(
            matches!(&err, Error::BulkJob(crate::error::BulkJobError::Timeout { last_state, .. }) if last_state == "InProgress"),
            "{err}"
        );
        assert_eq!(err.class(), crate::ErrorClass::Transient);
    }
}
