//! Bulk API 2.0 query jobs: create, wait, read results page by page, abort, delete.
//!
//! Results come as CSV pages linked by the `Sforce-Locator` header (the literal `null` ends
//! them). [`QueryResults`] streams each page through an incremental CSV parser into a
//! caller-owned [`csv::ByteRecord`]: no page, let alone a whole result, is held in memory. A
//! page whose body breaks off mid-way is fetched again by its locator and the rows already
//! delivered are skipped, and each page's row count is checked against
//! `Sforce-NumberOfRecords`.

use csv::ByteRecord;
use reqwest::Method;
use reqwest::header::{ACCEPT, HeaderValue};
use serde::Serialize;
use tracing::{debug, info};

use crate::bulk::{
    ColumnDelimiter, JobInfo, JobState, LineEnding, PollConfig, job_id_path, poll_until_terminal,
};
use crate::client::{Call, Client};
use crate::csv_stream::{CsvBody, ReadError};
use crate::error::{BulkJobError, Error, Result};

/// How many times a page whose body broke off is fetched again.
const PAGE_REFETCHES: usize = 3;

/// `query` (live rows) or `queryAll` (also soft-deleted and archived rows).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum QueryOperation {
    /// Live rows only.
    #[default]
    #[serde(rename = "query")]
    Query,
    /// Also deleted and archived rows.
    #[serde(rename = "queryAll")]
    QueryAll,
}

/// A query job to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryJobRequest {
    /// `query` or `queryAll`.
    pub operation: QueryOperation,
    /// The SOQL statement.
    pub query: String,
    /// Always `CSV`.
    content_type: &'static str,
    /// Column delimiter.
    pub column_delimiter: ColumnDelimiter,
    /// Line ending.
    pub line_ending: LineEnding,
}

impl QueryJobRequest {
    /// A CSV job with the default delimiter (comma) and line ending (LF).
    pub fn new(operation: QueryOperation, query: impl Into<String>) -> Self {
        Self {
            operation,
            query: query.into(),
            content_type: "CSV",
            column_delimiter: ColumnDelimiter::Comma,
            line_ending: LineEnding::Lf,
        }
    }
}

#[derive(Serialize)]
struct StateChange {
    state: &'static str,
}

impl Client {
    /// `POST /jobs/query`: creates a query job.
    pub async fn bulk_query_create(&self, request: &QueryJobRequest) -> Result<JobInfo> {
        let call = Call::new(Method::POST, "jobs/query").json(request)?;
        let info: JobInfo = self.send_json(&call).await?;
        info!(job_id = %info.id, "created Bulk API query job");
        Ok(info)
    }

    /// `GET /jobs/query/{id}`.
    pub async fn bulk_query_status(&self, job_id: &str) -> Result<JobInfo> {
        let path = format!("jobs/query/{}", job_id_path(job_id)?);
        self.send_json(&Call::get(path)).await
    }

    /// Polls until the job completes. `Failed` (with its `errorMessage`) and `Aborted` become
    /// [`BulkJobError`]s; so does running past `poll.timeout`.
    pub async fn bulk_query_wait(&self, job_id: &str, poll: &PollConfig) -> Result<JobInfo> {
        let info = poll_until_terminal(job_id, poll, || self.bulk_query_status(job_id)).await?;
        job_outcome(info)
    }

    /// `PATCH /jobs/query/{id}` with `{"state":"Aborted"}`.
    pub async fn bulk_query_abort(&self, job_id: &str) -> Result<JobInfo> {
        let path = format!("jobs/query/{}", job_id_path(job_id)?);
        let call = Call::new(Method::PATCH, path)
            .json(&StateChange { state: "Aborted" })?
            .idempotent(true);
        self.send_json(&call).await
    }

    /// `DELETE /jobs/query/{id}` (only for terminal jobs; deletes the stored results).
    pub async fn bulk_query_delete(&self, job_id: &str) -> Result<()> {
        let path = format!("jobs/query/{}", job_id_path(job_id)?);
        self.send_empty(&Call::new(Method::DELETE, path)).await
    }

    /// A reader over the results of a completed job. `max_records` caps rows per page.
    pub fn bulk_query_results(
        &self,
        job_id: &str,
        delimiter: ColumnDelimiter,
        max_records: Option<u64>,
    ) -> Result<QueryResults> {
        job_id_path(job_id)?;
        Ok(QueryResults {
            client: self.clone(),
            job_id: job_id.to_owned(),
            delimiter: delimiter.byte(),
            max_records,
            next: Next::First,
            page: None,
            header: ByteRecord::new(),
            first_header: None,
            pages: 0,
            records: 0,
        })
    }

    /// Creates a job, waits for it, and returns its results reader. On a wait error the job is
    /// aborted if it may still be running.
    pub async fn bulk_query(
        &self,
        request: &QueryJobRequest,
        poll: &PollConfig,
        max_records: Option<u64>,
    ) -> Result<QueryResults> {
        let job = self.bulk_query_create(request).await?;
        match self.bulk_query_wait(&job.id, poll).await {
            Ok(_) => self.bulk_query_results(&job.id, request.column_delimiter, max_records),
            Err(e) => {
                if matches!(e, Error::BulkJob(BulkJobError::Timeout { .. }))
                    && let Err(abort) = self.bulk_query_abort(&job.id).await
                {
                    debug!(job_id = %job.id, error = %abort, "could not abort timed-out job");
                }
                Err(e)
            }
        }
    }
}

fn job_outcome(info: JobInfo) -> Result<JobInfo> {
    match info.state {
        JobState::JobComplete => Ok(info),
        JobState::Failed => Err(BulkJobError::Failed {
            job_id: info.id,
            error_message: info.error_message,
        }
        .into()),
        JobState::Aborted => Err(BulkJobError::Aborted { job_id: info.id }.into()),
        _ => Err(Error::UnexpectedResponse {
            context: format!("waiting for Bulk job {}", info.id),
            detail: format!("non-terminal state {}", info.state.as_str()),
        }),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Next {
    First,
    Locator(String),
    Done,
}

#[derive(Debug)]
struct Page {
    body: CsvBody,
    /// The locator this page was fetched with (`None` for the first page).
    locator: Option<String>,
    /// `Sforce-NumberOfRecords`.
    expected: Option<u64>,
    /// Data rows delivered from this page.
    delivered: u64,
    refetches: usize,
}

/// Streaming reader over a Bulk query job's result pages.
///
/// ```no_run
/// # async fn demo(client: &salesforce_client::Client) -> salesforce_client::Result<()> {
/// use salesforce_client::bulk::ColumnDelimiter;
/// let mut results = client.bulk_query_results("750XX000000ABCdYAO", ColumnDelimiter::Comma, None)?;
/// let mut row = csv::ByteRecord::new();
/// while results.next_page().await? {
///     let header = results.header().clone(); // build converters once per page
///     while results.read_record(&mut row).await? {
///         let _id = row.get(0);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct QueryResults {
    client: Client,
    job_id: String,
    delimiter: u8,
    max_records: Option<u64>,
    next: Next,
    page: Option<Page>,
    header: ByteRecord,
    first_header: Option<ByteRecord>,
    pages: u64,
    records: u64,
}

impl QueryResults {
    /// The job id.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// The current page's header row (empty before the first page or for an empty result).
    pub fn header(&self) -> &ByteRecord {
        &self.header
    }

    /// Pages opened so far.
    pub fn pages_read(&self) -> u64 {
        self.pages
    }

    /// Data rows delivered so far.
    pub fn records_read(&self) -> u64 {
        self.records
    }

    /// The locator of the next page (`None` once the last page was opened or before the first).
    pub fn next_locator(&self) -> Option<&str> {
        match &self.next {
            Next::Locator(l) => Some(l),
            _ => None,
        }
    }

    /// Deletes the job (and its stored results) once the caller is done with it.
    pub async fn delete_job(self) -> Result<()> {
        self.client.bulk_query_delete(&self.job_id).await
    }

    /// Opens the next page and reads its header. Returns `false` when no page is left. Rows of
    /// the previous page that were not read are skipped.
    pub async fn next_page(&mut self) -> Result<bool> {
        let locator = match std::mem::replace(&mut self.next, Next::Done) {
            Next::Done => {
                self.page = None;
                return Ok(false);
            }
            Next::First => None,
            Next::Locator(l) => Some(l),
        };
        let page = self.open(locator, 0).await?;
        self.page = Some(page);
        self.pages += 1;
        Ok(true)
    }

    /// Fetches a page and reads its header, fetching it again if the body breaks off before the
    /// header is complete.
    async fn open(&mut self, locator: Option<String>, mut refetches: usize) -> Result<Page> {
        loop {
            match self.open_once(locator.clone(), refetches).await {
                Ok(page) => return Ok(page),
                Err(ReadError::Transport(e)) if refetches < PAGE_REFETCHES => {
                    refetches += 1;
                    info!(
                        job_id = %self.job_id,
                        error = %e,
                        "result page broke off in its header; fetching it again (attempt {} of {})",
                        refetches + 1,
                        PAGE_REFETCHES + 1
                    );
                }
                Err(ReadError::Transport(source)) => {
                    return Err(Error::Http {
                        context: format!("reading results of Bulk job {}", self.job_id),
                        attempts: refetches + 1,
                        source,
                    });
                }
                Err(ReadError::Other(e)) => return Err(e),
            }
        }
    }

    async fn open_once(
        &mut self,
        locator: Option<String>,
        refetches: usize,
    ) -> Result<Page, ReadError> {
        let mut call = Call::get(format!("jobs/query/{}/results", self.job_id))
            .header(ACCEPT, HeaderValue::from_static("text/csv"))
            .streaming();
        if let Some(l) = &locator {
            call = call.query("locator", l.clone());
        }
        if let Some(n) = self.max_records {
            call = call.query("maxRecords", n.to_string());
        }
        let context = self.client.context_of(&call);
        let resp = self.client.send(&call).await.map_err(ReadError::Other)?;
        let header_str = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.trim().to_owned())
        };
        let next_locator = header_str("sforce-locator");
        let expected = match header_str("sforce-numberofrecords") {
            Some(n) => Some(n.parse::<u64>().map_err(|_| {
                ReadError::Other(Error::UnexpectedResponse {
                    context: context.clone(),
                    detail: format!("Sforce-NumberOfRecords {n:?} is not a number"),
                })
            })?),
            None => None,
        };
        // The locator is re-read on a re-fetch too; it does not change for the same page.
        self.next = match next_locator.as_deref() {
            None | Some("") | Some("null") => Next::Done,
            Some(l) => Next::Locator(l.to_owned()),
        };
        let mut body = CsvBody::new(resp, self.delimiter, context.clone());
        let mut header = ByteRecord::new();
        let has_header = body.read(&mut header).await?;
        if has_header {
            match &self.first_header {
                None => self.first_header = Some(header.clone()),
                Some(first) if *first != header => {
                    return Err(ReadError::Other(Error::UnexpectedResponse {
                        context,
                        detail: "result page header differs from the first page's".into(),
                    }));
                }
                Some(_) => {}
            }
        }
        self.header = header;
        Ok(Page {
            body,
            locator,
            expected,
            delivered: 0,
            refetches,
        })
    }

    /// Reads the next row of the current page into `record`; `false` at the end of the page.
    pub async fn read_record(&mut self, record: &mut ByteRecord) -> Result<bool> {
        loop {
            let Some(page) = self.page.as_mut() else {
                return Ok(false);
            };
            match page.body.read(record).await {
                Ok(true) => {
                    page.delivered += 1;
                    self.records += 1;
                    return Ok(true);
                }
                Ok(false) => {
                    if let Some(expected) = page.expected
                        && expected != page.delivered
                    {
                        return Err(Error::UnexpectedResponse {
                            context: format!("reading results of Bulk job {}", self.job_id),
                            detail: format!(
                                "page had {} rows but Sforce-NumberOfRecords said {expected}",
                                page.delivered
                            ),
                        });
                    }
                    self.page = None;
                    return Ok(false);
                }
                Err(ReadError::Other(e)) => return Err(e),
                Err(ReadError::Transport(e)) => {
                    if page.refetches >= PAGE_REFETCHES {
                        return Err(Error::Http {
                            context: format!("reading results of Bulk job {}", self.job_id),
                            attempts: page.refetches + 1,
                            source: e,
                        });
                    }
                    let (locator, skip, refetches) =
                        (page.locator.clone(), page.delivered, page.refetches + 1);
                    info!(
                        job_id = %self.job_id,
                        error = %e,
                        "result page broke off after {skip} rows; fetching it again (attempt {} of {})",
                        refetches + 1,
                        PAGE_REFETCHES + 1
                    );
                    let saved_next = self.next.clone();
                    let mut fresh = self.open(locator, refetches).await?;
                    self.next = saved_next;
                    let mut scratch = ByteRecord::new();
                    for _ in 0..skip {
                        if !fresh.body.read_or_fail(&mut scratch).await? {
                            return Err(Error::UnexpectedResponse {
                                context: format!("re-reading results of Bulk job {}", self.job_id),
                                detail: "re-fetched page is shorter than what was already read"
                                    .into(),
                            });
                        }
                    }
                    fresh.delivered = skip;
                    self.page = Some(fresh);
                }
            }
        }
    }

    /// Reads the next row across pages; `false` when every page is exhausted.
    pub async fn next_record(&mut self, record: &mut ByteRecord) -> Result<bool> {
        loop {
            if self.page.is_some() && self.read_record(record).await? {
                return Ok(true);
            }
            if !self.next_page().await? {
                return Ok(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(state: &str, error_message: Option<&str>) -> JobInfo {
        serde_json::from_value(serde_json::json!({
            "id": "750A", "state": state, "errorMessage": error_message
        }))
        .unwrap()
    }

    #[test]
    fn outcomes_map_failed_and_aborted_to_errors() {
        assert!(job_outcome(info("JobComplete", None)).is_ok());
        let e = job_outcome(info("Failed", Some("INVALID_FIELD: nope"))).unwrap_err();
        assert!(e.to_string().contains("INVALID_FIELD: nope"), "{e}");
        let e = job_outcome(info("Aborted", None)).unwrap_err();
        assert!(matches!(e, Error::BulkJob(BulkJobError::Aborted { .. })));
    }

    #[test]
    fn request_serializes_like_the_docs() {
        let r = QueryJobRequest::new(QueryOperation::QueryAll, "SELECT Id FROM Account");
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"operation":"queryAll","query":"SELECT Id FROM Account",
                "contentType":"CSV","columnDelimiter":"COMMA","lineEnding":"LF"})
        );
    }
}

#[cfg(test)]
mod flow_tests {
    use std::io::Write;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::mock_server::{MockServer, Scripted};
    use crate::retry::BackoffConfig;

    fn fast_poll() -> PollConfig {
        PollConfig {
            backoff: BackoffConfig {
                init: Duration::from_millis(1),
                max: Duration::from_millis(2),
                base: 2.0,
            },
            timeout: Duration::from_secs(5),
        }
    }

    fn job(state: &str) -> Scripted {
        Scripted::json(
            200,
            json!({"id": "750J", "state": state, "operation": "queryAll", "object": "Account"}),
        )
    }

    fn page(body: &str, locator: &str, n: usize) -> Scripted {
        Scripted::new(200, body.to_owned())
            .header("content-type", "text/csv")
            .header("sforce-locator", locator)
            .header("sforce-numberofrecords", &n.to_string())
    }

    fn gzip(data: &str) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    async fn collect(results: &mut QueryResults) -> Vec<Vec<String>> {
        let mut rec = ByteRecord::new();
        let mut rows = Vec::new();
        while results.next_record(&mut rec).await.unwrap() {
            rows.push(
                rec.iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect(),
            );
        }
        rows
    }

    #[tokio::test]
    async fn create_wait_and_stream_pages_following_locators() {
        let mock = MockServer::start().await;
        mock.push(job("UploadComplete"));
        mock.push(job("InProgress"));
        mock.push(job("JobComplete"));
        mock.push(page(
            "\"Id\",\"Name\"\n\"001\",\"Acme, Inc.\"\n\"002\",\"\"\n",
            "MTAw",
            2,
        ));
        let second = gzip("\"Id\",\"Name\"\n\"003\",\"multi\nline\"\n");
        mock.push(
            Scripted::new(200, second)
                .header("content-encoding", "gzip")
                .header("sforce-locator", "null")
                .header("sforce-numberofrecords", "1"),
        );
        let client = mock.client();
        let req = QueryJobRequest::new(QueryOperation::QueryAll, "SELECT Id, Name FROM Account");
        let mut results = client
            .bulk_query(&req, &fast_poll(), Some(2))
            .await
            .unwrap();
        assert_eq!(results.job_id(), "750J");
        let rows = collect(&mut results).await;
        assert_eq!(
            rows,
            vec![
                vec!["001", "Acme, Inc."],
                vec!["002", ""],
                vec!["003", "multi\nline"]
            ]
        );
        assert_eq!(
            results.header().iter().collect::<Vec<_>>(),
            vec![&b"Id"[..], &b"Name"[..]]
        );
        assert_eq!((results.pages_read(), results.records_read()), (2, 3));

        let reqs = mock.requests();
        assert_eq!(reqs[0].method, "POST");
        assert_eq!(reqs[0].path, "/services/data/v62.0/jobs/query");
        let body: serde_json::Value = serde_json::from_slice(&reqs[0].body).unwrap();
        assert_eq!(body["operation"], "queryAll");
        assert_eq!(reqs[1].path, "/services/data/v62.0/jobs/query/750J");
        assert_eq!(reqs[3].path, "/services/data/v62.0/jobs/query/750J/results");
        assert_eq!(reqs[3].query.as_deref(), Some("maxRecords=2"));
        assert_eq!(reqs[3].header("accept"), Some("text/csv"));
        assert!(
            reqs[3]
                .header("accept-encoding")
                .unwrap_or_default()
                .contains("gzip")
        );
        assert_eq!(reqs[4].query.as_deref(), Some("locator=MTAw&maxRecords=2"));
        assert_eq!(reqs.len(), 5);

        mock.push(Scripted::new(204, ""));
        client.bulk_query_delete("750J").await.unwrap();
        let del = mock.requests().pop().unwrap();
        assert_eq!(
            (del.method.as_str(), del.path.as_str()),
            ("DELETE", "/services/data/v62.0/jobs/query/750J")
        );
    }

    #[tokio::test]
    async fn a_broken_page_is_refetched_without_duplicates() {
        let mock = MockServer::start().await;
        mock.push(page("\"Id\"\n\"1\"\n\"2\"\n", "L2", 4).truncated());
        mock.push(page("\"Id\"\n\"1\"\n\"2\"\n\"3\"\n\"4\"\n", "L2", 4));
        mock.push(page("\"Id\"\n\"5\"\n", "null", 1));
        let client = mock.client();
        let mut results = client
            .bulk_query_results("750J", ColumnDelimiter::Comma, None)
            .unwrap();
        let rows = collect(&mut results).await;
        let ids: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(ids, vec!["1", "2", "3", "4", "5"]);
        let reqs = mock.requests();
        assert_eq!(reqs.len(), 3);
        assert_eq!(
            reqs[1].query, None,
            "the first page is re-fetched without a locator"
        );
        assert_eq!(reqs[2].query.as_deref(), Some("locator=L2"));
    }

    #[tokio::test]
    async fn row_count_mismatch_is_an_error() {
        let mock = MockServer::start().await;
        mock.push(page("\"Id\"\n\"1\"\n", "null", 2));
        let client = mock.client();
        let mut results = client
            .bulk_query_results("750J", ColumnDelimiter::Comma, None)
            .unwrap();
        let mut rec = ByteRecord::new();
        assert!(results.next_record(&mut rec).await.unwrap());
        let err = results.next_record(&mut rec).await.unwrap_err();
        assert!(err.to_string().contains("Sforce-NumberOfRecords"), "{err}");
    }

    #[tokio::test]
    async fn empty_result_and_other_delimiters() {
        let mock = MockServer::start().await;
        mock.push(page("", "null", 0));
        let client = mock.client();
        let mut results = client
            .bulk_query_results("750J", ColumnDelimiter::Comma, None)
            .unwrap();
        assert!(collect(&mut results).await.is_empty());
        mock.push(page("\"Id\"|\"N\"\n\"1\"|\"a|b\"\n", "null", 1));
        let mut results = client
            .bulk_query_results("750J", ColumnDelimiter::Pipe, None)
            .unwrap();
        assert_eq!(collect(&mut results).await, vec![vec!["1", "a|b"]]);
    }

    #[tokio::test]
    async fn failed_and_aborted_jobs_are_errors() {
        let mock = MockServer::start().await;
        mock.push(job("UploadComplete"));
        mock.push(Scripted::json(
            200,
            json!({"id":"750J","state":"Failed","errorMessage":"INVALID_FIELD: No such column"}),
        ));
        let client = mock.client();
        let req = QueryJobRequest::new(QueryOperation::Query, "SELECT Nope FROM Account");
        let err = client
            .bulk_query(&req, &fast_poll(), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::BulkJob(BulkJobError::Failed { error_message: Some(m), .. }) if m.contains("No such column")),
            "{err}"
        );
        mock.push(job("Aborted"));
        let err = client
            .bulk_query_wait("750J", &fast_poll())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::BulkJob(BulkJobError::Aborted { .. })),
            "{err}"
        );
    }

    #[tokio::test]
    async fn abort_sends_the_state_change() {
        let mock = MockServer::start().await;
        mock.push(job("Aborted"));
        let info = mock.client().bulk_query_abort("750J").await.unwrap();
        assert_eq!(info.state, JobState::Aborted);
        let r = &mock.requests()[0];
        assert_eq!(r.method, "PATCH");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap(),
            json!({"state":"Aborted"})
        );
    }
}

#[cfg(test)]
mod memory_tests {
    use super::*;
    use crate::mock_server::{MockServer, Scripted};

    /// Peak resident set size of this process in KiB (nextest runs each test in its own process).
    fn peak_rss_kib() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    #[tokio::test]
    async fn a_large_result_streams_in_flat_memory() {
        const ROWS: u64 = 1_500_000; // about 75 MB of CSV
        let mock = MockServer::start().await;
        mock.push(
            Scripted::generated_csv(ROWS)
                .header("sforce-locator", "null")
                .header("sforce-numberofrecords", &ROWS.to_string()),
        );
        let client = mock.client();
        client.authenticate().await.unwrap();
        let before = peak_rss_kib();
        let mut results = client
            .bulk_query_results("750BIG", ColumnDelimiter::Comma, None)
            .unwrap();
        let mut row = ByteRecord::new();
        let mut n = 0u64;
        let mut bytes = 0usize;
        while results.next_record(&mut row).await.unwrap() {
            n += 1;
            bytes += row.as_slice().len();
        }
        assert_eq!(n, ROWS);
        assert!(bytes > 60_000_000, "{bytes}");
        if let (Some(before), Some(after)) = (before, peak_rss_kib()) {
            let grown_mib = (after.saturating_sub(before)) / 1024;
            assert!(
                grown_mib < 40,
                "peak memory grew by {grown_mib} MiB while streaming"
            );
        }
    }
}
