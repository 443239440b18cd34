//! Bulk API 2.0 ingest jobs: create, upload a CSV file, close, wait, read results, delete.
//!
//! The upload streams the file from disk (at most [`MAX_UPLOAD_BYTES`] per job, Salesforce's
//! 150 MB-after-base64 limit); result files stream through the same incremental CSV parser as
//! query results.
//!
//! Waiting ([`Client::bulk_ingest_wait_rows`]) is paced by the job's own progress: once
//! `numberRecordsProcessed` moves, the next status check is timed for when the remaining rows
//! should be done at the rate seen so far, but never later than the time already waited (an
//! early, slow start must not make us sleep through the end), so a job costs a few checks
//! (about log2 of its duration over the first delay at worst) and is noticed soon after it
//! finishes; before any progress the checks back off from a short first delay.

use std::path::Path;
use std::time::{Duration, Instant};

use csv::ByteRecord;
use reqwest::header::{ACCEPT, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use tracing::info;

use crate::bulk::{
    ColumnDelimiter, JobInfo, LineEnding, PollConfig, job_id_path, poll_until_terminal,
};
use crate::client::{Call, CallBody, Client};
use crate::csv_stream::CsvBody;
use crate::error::{Error, Result};
use crate::retry::Backoff;

/// Largest CSV accepted for one upload (100 MB of raw CSV).
pub const MAX_UPLOAD_BYTES: u64 = 100 * 1024 * 1024;

/// Ingest operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum IngestOperation {
    /// Create records.
    Insert,
    /// Update by `Id`.
    Update,
    /// Upsert by an external id field.
    Upsert,
    /// Soft delete by `Id`.
    Delete,
    /// Delete bypassing the recycle bin.
    HardDelete,
}

/// An ingest job to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestJobRequest {
    /// The sObject.
    pub object: String,
    /// The operation.
    pub operation: IngestOperation,
    /// External id field (upsert only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id_field_name: Option<String>,
    content_type: &'static str,
    /// Column delimiter of the uploaded CSV.
    pub column_delimiter: ColumnDelimiter,
    /// Line ending of the uploaded CSV.
    pub line_ending: LineEnding,
}

impl IngestJobRequest {
    /// A CSV job (comma, LF).
    pub fn new(object: impl Into<String>, operation: IngestOperation) -> Self {
        Self {
            object: object.into(),
            operation,
            external_id_field_name: None,
            content_type: "CSV",
            column_delimiter: ColumnDelimiter::Comma,
            line_ending: LineEnding::Lf,
        }
    }

    /// Sets the external id field (upsert).
    pub fn with_external_id_field(mut self, field: impl Into<String>) -> Self {
        self.external_id_field_name = Some(field.into());
        self
    }
}

/// Which result file of a finished ingest job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestResultKind {
    /// `sf__Id`, `sf__Created`, then the uploaded columns.
    Successful,
    /// `sf__Id`, `sf__Error`, then the uploaded columns.
    Failed,
    /// The uploaded columns of rows never processed (failed or aborted jobs).
    Unprocessed,
}

impl IngestResultKind {
    fn path(self) -> &'static str {
        match self {
            Self::Successful => "successfulResults/",
            Self::Failed => "failedResults/",
            Self::Unprocessed => "unprocessedrecords/",
        }
    }
}

#[derive(Serialize)]
struct StateChange {
    state: &'static str,
}

/// A streamed CSV result file with its header.
#[derive(Debug)]
pub struct CsvResults {
    header: ByteRecord,
    body: CsvBody,
    records: u64,
}

impl CsvResults {
    /// The header row (empty for an empty file).
    pub fn header(&self) -> &ByteRecord {
        &self.header
    }

    /// Reads the next row; `false` at the end.
    pub async fn read_record(&mut self, record: &mut ByteRecord) -> Result<bool> {
        let more = self.body.read_or_fail(record).await?;
        if more {
            self.records += 1;
        }
        Ok(more)
    }

    /// Rows read so far.
    pub fn records_read(&self) -> u64 {
        self.records
    }
}

impl Client {
    /// `POST /jobs/ingest`: creates an ingest job (state `Open`).
    pub async fn bulk_ingest_create(&self, request: &IngestJobRequest) -> Result<JobInfo> {
        let call = Call::new(Method::POST, "jobs/ingest").json(request)?;
        let info: JobInfo = self.send_json(&call).await?;
        info!(job_id = %info.id, object = %request.object, "created Bulk API ingest job");
        Ok(info)
    }

    /// `PUT /jobs/ingest/{id}/batches`: streams the CSV file at `path` (≤ [`MAX_UPLOAD_BYTES`]).
    pub async fn bulk_ingest_upload(&self, job_id: &str, path: &Path) -> Result<()> {
        let meta = tokio::fs::metadata(path).await.map_err(|e| Error::Io {
            context: format!("reading the size of {}", path.display()),
            source: e,
        })?;
        if meta.len() > MAX_UPLOAD_BYTES {
            return Err(Error::UploadTooLarge {
                size: meta.len(),
                max: MAX_UPLOAD_BYTES,
            });
        }
        let mut call = Call::new(
            Method::PUT,
            format!("jobs/ingest/{}/batches", job_id_path(job_id)?),
        )
        .streaming()
        .expect(StatusCode::CREATED);
        call.body = CallBody::File(path.to_path_buf(), "text/csv", meta.len());
        self.send_empty(&call).await
    }

    /// `PATCH /jobs/ingest/{id}` with `UploadComplete`: processing starts.
    pub async fn bulk_ingest_close(&self, job_id: &str) -> Result<JobInfo> {
        self.ingest_state(job_id, "UploadComplete").await
    }

    /// `PATCH /jobs/ingest/{id}` with `Aborted`.
    pub async fn bulk_ingest_abort(&self, job_id: &str) -> Result<JobInfo> {
        self.ingest_state(job_id, "Aborted").await
    }

    async fn ingest_state(&self, job_id: &str, state: &'static str) -> Result<JobInfo> {
        let call = Call::new(
            Method::PATCH,
            format!("jobs/ingest/{}", job_id_path(job_id)?),
        )
        .json(&StateChange { state })?
        .idempotent(true);
        self.send_json(&call).await
    }

    /// `GET /jobs/ingest/{id}`.
    pub async fn bulk_ingest_status(&self, job_id: &str) -> Result<JobInfo> {
        self.send_json(&Call::get(format!("jobs/ingest/{}", job_id_path(job_id)?)))
            .await
    }

    /// Polls until the job is `JobComplete`, `Failed` or `Aborted` and returns its info (all three
    /// are answers: a failed job still has failed / unprocessed results to read). Errs only when
    /// `poll.timeout` passes.
    pub async fn bulk_ingest_wait(&self, job_id: &str, poll: &PollConfig) -> Result<JobInfo> {
        poll_until_terminal(job_id, poll, || self.bulk_ingest_status(job_id)).await
    }

    /// Waits like [`Client::bulk_ingest_wait`] for a job of `rows` uploaded rows, timing each
    /// status check from the job's progress (see the module doc): with `p` of `rows` processed
    /// after `t` since the wait began, the next check comes after `(rows - p) * t / p` plus a
    /// tenth, at least `poll.backoff.init / 2` and at most `t` (and `poll.backoff.max`); while
    /// nothing is processed the checks follow `poll.backoff`. `first_check`, when the caller
    /// knows how long such a job takes (an earlier job of the same kind), delays the first check
    /// (bounded by `poll.backoff.max`), saving the checks of a job surely still running.
    pub async fn bulk_ingest_wait_rows(
        &self,
        job_id: &str,
        rows: u64,
        first_check: Option<Duration>,
        poll: &PollConfig,
    ) -> Result<JobInfo> {
        let started = Instant::now();
        if let Some(d) = first_check {
            tokio::time::sleep(d.min(poll.backoff.max).min(poll.timeout)).await;
        }
        let mut backoff = Backoff::new(&poll.backoff);
        let mut before: Option<(u64, Duration)> = None;
        loop {
            let info = self.bulk_ingest_status(job_id).await?;
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
            let done = info.number_records_processed.unwrap_or(0);
            let delay = match paced_delay(done, rows, elapsed, before, poll) {
                Some(d) => d,
                None => backoff.next_delay(),
            }
            .min(poll.timeout - elapsed);
            before = Some((done, elapsed));
            tracing::debug!(
                job_id,
                state = info.state.as_str(),
                processed = info.number_records_processed,
                rows,
                ?delay,
                "ingest job not finished yet"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// Streams one result file of an ingest job.
    pub async fn bulk_ingest_results(
        &self,
        job_id: &str,
        kind: IngestResultKind,
        delimiter: ColumnDelimiter,
    ) -> Result<CsvResults> {
        let call = Call::get(format!(
            "jobs/ingest/{}/{}",
            job_id_path(job_id)?,
            kind.path()
        ))
        .header(ACCEPT, HeaderValue::from_static("text/csv"))
        .streaming();
        let context = self.context_of(&call);
        let resp = self.send(&call).await?;
        let mut body = CsvBody::new(resp, delimiter.byte(), context);
        let mut header = ByteRecord::new();
        body.read_or_fail(&mut header).await?;
        Ok(CsvResults {
            header,
            body,
            records: 0,
        })
    }

    /// `DELETE /jobs/ingest/{id}`.
    pub async fn bulk_ingest_delete(&self, job_id: &str) -> Result<()> {
        self.send_empty(&Call::new(
            Method::DELETE,
            format!("jobs/ingest/{}", job_id_path(job_id)?),
        ))
        .await
    }
}

/// The delay before the next status check of a job that processed `done` of `rows` rows in
/// `elapsed`: the time the rest should take at the rate seen since the previous check `before`
/// (`(done, elapsed)` then; the average since the start when there is none or no progress since),
/// plus a tenth, but no more than `elapsed` itself (the rate seen early may be far below the
/// real one); `None` before progress.
fn paced_delay(
    done: u64,
    rows: u64,
    elapsed: Duration,
    before: Option<(u64, Duration)>,
    poll: &PollConfig,
) -> Option<Duration> {
    if done == 0 || elapsed.is_zero() {
        return None;
    }
    let left = rows.saturating_sub(done).max(1) as f64;
    let t = elapsed.as_secs_f64();
    let per_row = match before {
        Some((d0, t0)) if done > d0 && elapsed > t0 => {
            (elapsed - t0).as_secs_f64() / (done - d0) as f64
        }
        _ => t / done as f64,
    };
    let secs = left * per_row * 1.1;
    let min = poll.backoff.init.as_secs_f64() / 2.0;
    let max = poll.backoff.max.as_secs_f64().min(t).max(min);
    Some(Duration::from_secs_f64(secs.clamp(min, max)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_paced_by_progress() {
        let poll = PollConfig {
            backoff: crate::retry::BackoffConfig {
                init: Duration::from_millis(100),
                max: Duration::from_secs(30),
                base: 2.0,
            },
            timeout: Duration::from_secs(3600),
        };
        assert_eq!(
            paced_delay(0, 1000, Duration::from_secs(1), None, &poll),
            None
        );
        // Half done in 4 s: the rest takes 4 s, plus a tenth, capped at the 4 s waited so far.
        let d = paced_delay(500, 1000, Duration::from_secs(4), None, &poll).unwrap();
        assert_eq!(d, Duration::from_secs(4));
        // 80 % done in 4 s: the rest takes 1 s, plus a tenth.
        let d = paced_delay(800, 1000, Duration::from_secs(4), None, &poll).unwrap();
        assert!((d.as_secs_f64() - 1.1).abs() < 1e-9, "{d:?}");
        // A slow start never makes the next check later than the time waited so far.
        let d = paced_delay(10_000, 500_000, Duration::from_millis(300), None, &poll).unwrap();
        assert_eq!(d, Duration::from_millis(300));
        // Nearly done: never less than half the first backoff delay.
        let d = paced_delay(999_999, 1_000_000, Duration::from_secs(2), None, &poll).unwrap();
        assert_eq!(d, Duration::from_millis(50));
        // The rate since the previous check wins over the average: 100 rows in the last second
        // after a slow start (100 in 3 s) leave 800 rows = 8 s, capped at the 4 s waited.
        let d = paced_delay(
            200,
            1000,
            Duration::from_secs(4),
            Some((100, Duration::from_secs(3))),
            &poll,
        )
        .unwrap();
        assert_eq!(d, Duration::from_secs(4));
        let d = paced_delay(
            500_000,
            1_000_000,
            Duration::from_secs(4),
            Some((100_000, Duration::from_secs(3))),
            &poll,
        )
        .unwrap();
        // 400,000 rows in the last second: the remaining 500,000 take 1.25 s, plus a tenth.
        assert!((d.as_secs_f64() - 1.375).abs() < 1e-9, "{d:?}");
        // Slow jobs are still checked at least every `max`.
        let d = paced_delay(1, 1_000_000, Duration::from_secs(600), None, &poll).unwrap();
        assert_eq!(d, Duration::from_secs(30));
        // More processed than uploaded (a count we cannot explain): a short check.
        let d = paced_delay(2000, 1000, Duration::from_secs(1), None, &poll).unwrap();
        assert_eq!(d, Duration::from_millis(50));
    }

    #[test]
    fn ingest_request_serializes_like_the_docs() {
        let r = IngestJobRequest::new("Contact", IngestOperation::Upsert)
            .with_external_id_field("Ext_Id__c");
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"object":"Contact","operation":"upsert","externalIdFieldName":"Ext_Id__c",
                "contentType":"CSV","columnDelimiter":"COMMA","lineEnding":"LF"})
        );
        let r = IngestJobRequest::new("Contact", IngestOperation::HardDelete);
        assert_eq!(serde_json::to_value(&r).unwrap()["operation"], "hardDelete");
    }
}

#[cfg(test)]
mod flow_tests {
    use std::io::Write;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::bulk::JobState;
    use crate::mock_server::{MockServer, Scripted};
    use crate::retry::BackoffConfig;

    #[tokio::test]
    async fn create_upload_close_wait_and_read_results() {
        let mock = MockServer::start().await;
        let client = mock.client();
        mock.push(Scripted::json(200, json!({"id":"750I","state":"Open","contentUrl":"services/data/v62.0/jobs/ingest/750I/batches"})));
        let job = client
            .bulk_ingest_create(&IngestJobRequest::new("Contact", IngestOperation::Insert))
            .await
            .unwrap();
        assert_eq!(job.state, JobState::Open);

        let mut file = tempfile::NamedTempFile::new().unwrap();
        let csv = "LastName,Email\nJones,\"a,b\"\nDury,#N/A\n";
        file.write_all(csv.as_bytes()).unwrap();
        mock.push(Scripted::new(201, ""));
        client
            .bulk_ingest_upload("750I", file.path())
            .await
            .unwrap();

        mock.push(Scripted::json(
            200,
            json!({"id":"750I","state":"UploadComplete"}),
        ));
        client.bulk_ingest_close("750I").await.unwrap();
        mock.push(Scripted::json(
            200,
            json!({"id":"750I","state":"InProgress"}),
        ));
        mock.push(Scripted::json(200, json!({"id":"750I","state":"JobComplete","numberRecordsProcessed":2,"numberRecordsFailed":1})));
        let poll = PollConfig {
            backoff: BackoffConfig {
                init: Duration::from_millis(1),
                max: Duration::from_millis(2),
                base: 2.0,
            },
            timeout: Duration::from_secs(5),
        };
        let done = client.bulk_ingest_wait("750I", &poll).await.unwrap();
        assert_eq!(done.number_records_failed, Some(1));

        mock.push(Scripted::new(200, "\"sf__Id\",\"sf__Error\",LastName,Email\n\"\",\"REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --\",Dury,#N/A\n"));
        let mut failed = client
            .bulk_ingest_results("750I", IngestResultKind::Failed, ColumnDelimiter::Comma)
            .await
            .unwrap();
        assert_eq!(&failed.header()[1], b"sf__Error");
        let mut rec = ByteRecord::new();
        assert!(failed.read_record(&mut rec).await.unwrap());
        assert!(rec[1].starts_with(b"REQUIRED_FIELD_MISSING:"));
        assert!(!failed.read_record(&mut rec).await.unwrap());
        assert_eq!(failed.records_read(), 1);

        let reqs = mock.requests();
        assert_eq!(reqs[0].path, "/services/data/v62.0/jobs/ingest");
        assert_eq!(reqs[1].method, "PUT");
        assert_eq!(
            reqs[1].path,
            "/services/data/v62.0/jobs/ingest/750I/batches"
        );
        assert_eq!(reqs[1].header("content-type"), Some("text/csv"));
        assert_eq!(
            reqs[1].header("content-length"),
            Some(csv.len().to_string().as_str())
        );
        assert_eq!(&reqs[1].body[..], csv.as_bytes());
        assert_eq!(reqs[2].method, "PATCH");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&reqs[2].body).unwrap(),
            json!({"state":"UploadComplete"})
        );
        assert_eq!(
            reqs[5].path,
            "/services/data/v62.0/jobs/ingest/750I/failedResults/"
        );
    }

    #[tokio::test]
    async fn upload_checks_size_and_status() {
        let mock = MockServer::start().await;
        let client = mock.client();
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(MAX_UPLOAD_BYTES + 1).unwrap();
        let err = client
            .bulk_ingest_upload("750I", file.path())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::UploadTooLarge { .. }), "{err}");
        assert!(mock.requests().is_empty());

        file.as_file().set_len(10).unwrap();
        mock.push(Scripted::new(200, ""));
        let err = client
            .bulk_ingest_upload("750I", file.path())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::UnexpectedResponse { .. }), "{err}");

        mock.push(Scripted::new(503, ""));
        mock.push(Scripted::new(201, ""));
        client
            .bulk_ingest_upload("750I", file.path())
            .await
            .unwrap();
        let reqs = mock.requests();
        assert_eq!(reqs.len(), 3);
        assert_eq!(reqs[2].body.len(), 10, "the retry re-sent the whole file");
        let err = client
            .bulk_ingest_upload("750I", std::path::Path::new("/nonexistent/file.csv"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }
}
