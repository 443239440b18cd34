//! Bulk API 2.0 ingest jobs (§6): create, upload, close/abort, background processing through
//! [`Store::apply`](crate::store::Store::apply), job info and list, delete, and the three result
//! CSVs.
//!
//! Life cycle (§6.4): `Open` → (`PUT .../batches`, once) → `UploadComplete` (PATCH) → `InProgress`
//! → `JobComplete` | `Failed`; `Aborted` any time before completion. Latencies come from the
//! switches `ingest_queued_ms` / `ingest_processing_ms` (unset: the Bulk query ones), the fault
//! `next_job` (taken when the job is closed) forces `Failed` or `Aborted`, and the fault
//! `ingest_row_lock_every` fails rows with `UNABLE_TO_LOCK_ROW` after their internal batch used
//! its retries (switch `ingest_batch_retries`, reported in `retries`, §6.7 / §9.13).
//!
//! Memory stays flat with upload size: the upload is streamed to a temporary file, processed in
//! internal batches of 10,000 records (§6.7), and the result CSVs are appended to temporary files
//! and streamed back from them (gzip-compressed on `Accept-Encoding: gzip`); gzip/deflate upload
//! bodies are decompressed on the way in. Processing is sequential, so the processed rows are
//! always a prefix of the upload and `unprocessedrecords` is the rest of it.
//!
//! Row outcomes come from the org store; this module adds what the Bulk CSV layer itself checks
//! before the DML: value deserialization per field type, relationship columns (§6.6), duplicate
//! keys within an internal batch, and the `#N/A` / empty-cell rules. Errors are rendered in the
//! Bulk form `CODE:message:Field1 Field2 --` (`:--` without fields).

use crate::api::{ApiError, json_response, version};
use crate::bulk::{Sink, delimiter_byte};
use crate::config::{JobOutcome, PolymorphicColumns, Switches};
use crate::engine::csv_quoted;
use crate::ids;
use crate::schema::{FieldType, ObjectDef, Schema};
use crate::state::{EmulatorState, lock, now_ms};
use crate::store::{
    CellInput, FieldInput, FieldValues, RowError, Snapshot, StoreError, WriteOp, parse_text_value,
};
use crate::value;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Router, routing::post};
use futures::StreamExt;
use serde_json::{Value as Json, json};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;

/// Records per internal batch (§6.7).
pub const BATCH_RECORDS: usize = 10_000;
/// Largest accepted upload, counted after base64 encoding (§6.2: "150 MB of base64 encoded
/// content"). Decimal megabytes, the stricter reading, so a client that fits here fits Salesforce.
pub const MAX_BASE64_BYTES: u64 = 150_000_000;
/// An oversized chunked upload is drained up to this many raw bytes so the client can read the
/// 413 instead of a broken pipe; beyond it the connection is dropped.
const DRAIN_LIMIT: u64 = 2 * MAX_BASE64_BYTES;
/// Lowest API version serving ingest jobs (§6.1).
const MIN_VERSION: u32 = 41;
/// Jobs per page of `GET /jobs/ingest` (§6.7 "same paging shape as §5.7").
const LIST_PAGE: usize = 1000;
const CHUNK: usize = 256 * 1024;

type St = State<Arc<EmulatorState>>;
type Book = Extension<Arc<IngestBook>>;

/// Job-level failures while processing; the text becomes the job's `errorMessage` (§6.4).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A failure with Salesforce's own message, e.g. `InvalidBatch : Field name not found : X`.
    #[error("{0}")]
    Job(String),
    /// Temporary-file I/O.
    #[error("InternalServerError : {0}")]
    Io(#[from] std::io::Error),
    /// Malformed CSV data.
    #[error("ClientInputError : {0}")]
    Csv(#[from] csv::Error),
    /// The store refused the whole batch.
    #[error("InternalServerError : {0}")]
    Store(#[from] StoreError),
}

/// The ingest operations of §6.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `insert`
    Insert,
    /// `update`
    Update,
    /// `upsert` (with `externalIdFieldName`)
    Upsert,
    /// `delete` (soft, to the recycle bin)
    Delete,
    /// `hardDelete` (bypasses the recycle bin)
    HardDelete,
    /// `refresh` (§6.1 / §9.12, only with `Switches::ingest_extra_operations`). Scope unknown; the
    /// emulator checks each row's `Id` names a live record and writes nothing.
    Refresh,
    /// `consentImport` (§6.1 / §9.12, only with `Switches::ingest_extra_operations`); handled as
    /// [`Operation::Refresh`].
    ConsentImport,
}

impl Operation {
    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Operation> {
        Some(match s {
            "insert" => Operation::Insert,
            "update" => Operation::Update,
            "upsert" => Operation::Upsert,
            "delete" => Operation::Delete,
            "hardDelete" => Operation::HardDelete,
            "refresh" => Operation::Refresh,
            "consentImport" => Operation::ConsentImport,
            _ => return None,
        })
    }

    /// The wire name.
    pub fn wire(self) -> &'static str {
        match self {
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Upsert => "upsert",
            Operation::Delete => "delete",
            Operation::HardDelete => "hardDelete",
            Operation::Refresh => "refresh",
            Operation::ConsentImport => "consentImport",
        }
    }

    /// The newest operations, accepted only under the §9.12 switch.
    pub fn is_extra(self) -> bool {
        matches!(self, Operation::Refresh | Operation::ConsentImport)
    }

    /// Operations whose files only use the `Id` column (§6.6).
    fn id_only(self) -> bool {
        matches!(
            self,
            Operation::Delete
                | Operation::HardDelete
                | Operation::Refresh
                | Operation::ConsentImport
        )
    }
}

/// A temporary file removed when the job is dropped (and by the next process's sweep if this one
/// exits first).
#[derive(Debug)]
struct TempPath(PathBuf);

impl TempPath {
    fn new(tag: &str) -> TempPath {
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(sweep_stale_files);
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        TempPath(std::env::temp_dir().join(format!("{TEMP_PREFIX}{pid}-{n}-{tag}.csv")))
    }
}

const TEMP_PREFIX: &str = "salesforce-emulator-";

/// Removes spool files left by emulator processes that exited without dropping their jobs (a
/// test binary exits without running destructors). A file belongs to the process whose id
/// follows the prefix; it is stale when `/proc/<pid>` is gone. Only where `/proc` exists.
fn sweep_stale_files() {
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let me = std::process::id();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(TEMP_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != me && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upload {
    None,
    InFlight,
    Done(u64),
}

/// Mutable part of a job.
#[derive(Debug)]
struct Rt {
    upload: Upload,
    closed_ms: Option<i64>,
    aborted_ms: Option<i64>,
    queued_ms: u64,
    processing_ms: u64,
    started_ms: Option<i64>,
    finished_ms: Option<i64>,
    processed: u64,
    failed: u64,
    /// Internal-batch retries spent on lock contention (§6.4 `retries`, §9.13).
    retries: u64,
    /// Per processed row, in upload order: `row index << 1 | created` for a written row,
    /// [`FAILED_ROW`] otherwise. The successful results are rendered from it and the upload when
    /// asked for (nothing is written for them while processing).
    outcomes: Vec<u64>,
    /// Committed bytes of the failed result file (0: not written yet).
    failed_len: u64,
    error: Option<String>,
    modstamp_ms: i64,
}

/// One Bulk 2.0 ingest job.
#[derive(Debug)]
pub struct IngestJob {
    /// `750...` id.
    pub id: String,
    /// Operation.
    pub operation: Operation,
    /// Object API name (canonical spelling).
    pub object: String,
    /// `externalIdFieldName` (upsert).
    pub external_id_field: Option<String>,
    /// `assignmentRuleId`, echoed.
    pub assignment_rule_id: Option<String>,
    /// Creation instant (ms).
    pub created_ms: i64,
    /// API version number of the create call (e.g. 62).
    pub api_version: u32,
    /// `COMMA`, `TAB`, ...
    pub column_delimiter: String,
    /// `LF` or `CRLF`.
    pub line_ending: String,
    upload: TempPath,
    failed: TempPath,
    rt: Mutex<Rt>,
}

impl IngestJob {
    fn delimiter(&self) -> u8 {
        delimiter_byte(&self.column_delimiter).unwrap_or(b',')
    }

    fn eol(&self) -> &'static [u8] {
        if self.line_ending == "CRLF" {
            b"\r\n"
        } else {
            b"\n"
        }
    }

    /// Current state and error message (§6.4).
    pub fn state(&self, now: i64) -> (&'static str, Option<String>) {
        state_of(&lock(&self.rt), now)
    }

    /// Job info (§6.1 create shape; `full` adds the §6.4 counters); `forced` overrides the state
    /// shown (the close response always says `UploadComplete`).
    pub fn info(&self, state: &EmulatorState, full: bool, forced: Option<&'static str>) -> Json {
        let now = now_ms();
        let rt = lock(&self.rt);
        let (st, err) = state_of(&rt, now);
        let st = forced.unwrap_or(st);
        let mut j = json!({
            "id": self.id,
            "operation": self.operation.wire(),
            "object": self.object,
            "createdById": state.user_id(),
            "createdDate": value::fmt_datetime_rest(self.created_ms),
            "systemModstamp": value::fmt_datetime_rest(rt.modstamp_ms),
            "state": st,
        });
        if let Some(f) = &self.external_id_field {
            j["externalIdFieldName"] = json!(f);
        }
        if let Some(a) = &self.assignment_rule_id {
            j["assignmentRuleId"] = json!(a);
        }
        j["concurrencyMode"] = json!("Parallel");
        j["contentType"] = json!("CSV");
        j["apiVersion"] = json!(f64::from(self.api_version));
        j["contentUrl"] = json!(format!(
            "services/data/v{}.0/jobs/ingest/{}/batches",
            self.api_version, self.id
        ));
        j["lineEnding"] = json!(self.line_ending);
        j["columnDelimiter"] = json!(self.column_delimiter);
        j["jobType"] = json!("V2Ingest");
        if full {
            let total = match (rt.started_ms, rt.finished_ms) {
                (Some(s), Some(f)) => ((f - s).max(0) as u64).max(rt.processing_ms),
                (Some(s), None) => (now - s).max(0) as u64,
                _ => 0,
            };
            j["numberRecordsProcessed"] = json!(rt.processed);
            j["numberRecordsFailed"] = json!(rt.failed);
            j["retries"] = json!(rt.retries);
            j["totalProcessingTime"] = json!(total);
            j["apiActiveProcessingTime"] = json!(total);
            j["apexProcessingTime"] = json!(0);
            if let Some(e) = err {
                j["errorMessage"] = json!(e);
            }
        }
        j
    }
}

fn state_of(rt: &Rt, now: i64) -> (&'static str, Option<String>) {
    if rt.aborted_ms.is_some() {
        return ("Aborted", None);
    }
    let Some(closed) = rt.closed_ms else {
        return ("Open", None);
    };
    let elapsed = (now - closed).max(0) as u64;
    if elapsed < rt.queued_ms && rt.started_ms.is_none() {
        return ("UploadComplete", None);
    }
    if rt.finished_ms.is_none() || elapsed < rt.queued_ms + rt.processing_ms {
        return ("InProgress", None);
    }
    match &rt.error {
        Some(e) => ("Failed", Some(e.clone())),
        None => ("JobComplete", None),
    }
}

/// The ingest jobs of one server (held by the router, see [`routes`]).
#[derive(Debug, Default)]
pub struct IngestBook {
    jobs: Mutex<BTreeMap<String, Arc<IngestJob>>>,
}

impl IngestBook {
    fn find(&self, id: &str) -> Result<Arc<IngestJob>, ApiError> {
        lock(&self.jobs)
            .get(id)
            .cloned()
            .ok_or_else(ApiError::not_found)
    }
}

/// The ingest routes (§6), to be merged into the API router inside its middleware.
pub fn routes() -> Router<Arc<EmulatorState>> {
    let d = "/services/data/{version}/jobs/ingest";
    let j = format!("{d}/{{job}}");
    let book = Arc::new(IngestBook::default());
    Router::new()
        .route(d, post(create).get(list))
        .route(&format!("{d}/"), post(create).get(list))
        .route(&j, get(info).patch(patch).delete(delete))
        .route(&format!("{j}/batches"), put(upload))
        .route(&format!("{j}/batches/"), put(upload))
        .route(&format!("{j}/successfulResults"), get(successful_results))
        .route(&format!("{j}/successfulResults/"), get(successful_results))
        .route(&format!("{j}/failedResults"), get(failed_results))
        .route(&format!("{j}/failedResults/"), get(failed_results))
        .route(&format!("{j}/unprocessedrecords"), get(unprocessed_records))
        .route(
            &format!("{j}/unprocessedrecords/"),
            get(unprocessed_records),
        )
        .layer(Extension(book))
}

/// Resolves the `{version}` segment; ingest needs v41.0+ (§6.1), older versions are 404.
fn ingest_version(state: &EmulatorState, raw: &str) -> Result<u32, ApiError> {
    let v = version(state, raw)?;
    let n = crate::bulk::job_version(&v);
    if n < MIN_VERSION {
        return Err(ApiError::not_found());
    }
    Ok(n)
}

fn invalid_job(msg: impl std::fmt::Display) -> ApiError {
    ApiError::new(400, "INVALIDJOB", format!("InvalidJob : {msg}"))
}

fn invalid_state(msg: impl std::fmt::Display) -> ApiError {
    ApiError::new(400, "INVALIDJOBSTATE", format!("InvalidJobState : {msg}"))
}

fn respond(r: Result<Response, ApiError>) -> Response {
    match r {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// `POST /jobs/ingest` (§6.1): validates the body and answers 200 with the `Open` job info.
async fn create(
    State(state): St,
    Extension(book): Book,
    Path(v): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.trim()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
        .map(str::to_string);
    respond(match multipart {
        None => create_inner(&state, &book, &v, &body)
            .map(|job| json_response(StatusCode::OK, &job.info(&state, false, None))),
        Some(ct) => create_multipart(&state, &book, &v, &ct, &body),
    })
}

/// Most characters of CSV a multipart create may carry (§6.2 "small data (<100,000 chars)").
pub const MULTIPART_MAX_CHARS: usize = 100_000;

/// `POST /jobs/ingest` as `multipart/form-data` (§6.2): a `job` part (the JSON body) and a
/// `content` part (the CSV); the job is created, loaded and closed at once, so the response shows
/// `UploadComplete`.
fn create_multipart(
    state: &Arc<EmulatorState>,
    book: &IngestBook,
    v: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let bad = |m: &str| ApiError::new(400, "INVALIDJOB", format!("InvalidJob : {m}"));
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"').to_string())
        .next()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| bad("multipart request without a boundary"))?;
    let parts = multipart_parts(body, &boundary);
    let part = |name: &str| parts.iter().find(|(n, _)| n == name).map(|(_, data)| *data);
    let job_json = part("job").ok_or_else(|| bad("multipart request without a 'job' part"))?;
    let content =
        part("content").ok_or_else(|| bad("multipart request without a 'content' part"))?;
    let chars = String::from_utf8_lossy(content).chars().count();
    if chars > MULTIPART_MAX_CHARS {
        return Err(bad(&format!(
            "Multipart job data is limited to {MULTIPART_MAX_CHARS} characters ({chars} sent); upload larger data with PUT .../batches"
        )));
    }
    let job = create_inner(state, book, v, job_json)?;
    let stored = std::fs::write(&job.upload.0, content);
    if let Err(e) = stored {
        lock(&book.jobs).remove(&job.id);
        return Err(ApiError::new(
            500,
            "UNKNOWN_EXCEPTION",
            format!("job data could not be stored: {e}"),
        ));
    }
    lock(&job.rt).upload = Upload::Done(content.len() as u64);
    close_job(state, &job, now_ms())?;
    Ok(json_response(
        StatusCode::OK,
        &job.info(state, false, Some("UploadComplete")),
    ))
}

/// Splits a `multipart/form-data` body into (name, data) parts; accepts CRLF or bare LF line
/// breaks (the documentation's own example file uses LF).
fn multipart_parts<'a>(body: &'a [u8], boundary: &str) -> Vec<(String, &'a [u8])> {
    let delim = format!("--{boundary}");
    let d = delim.as_bytes();
    let mut starts = Vec::new();
    let mut i = 0;
    while i + d.len() <= body.len() {
        if &body[i..i + d.len()] == d && (i == 0 || body[i - 1] == b'\n') {
            starts.push(i);
            i += d.len();
        } else {
            i += 1;
        }
    }
    let mut out = Vec::new();
    for w in starts.windows(2) {
        let mut part = &body[w[0] + d.len()..w[1]];
        // The line break before the next delimiter belongs to the delimiter.
        part = part.strip_suffix(b"\n").unwrap_or(part);
        part = part.strip_suffix(b"\r").unwrap_or(part);
        // Skip the rest of the delimiter line.
        let Some(nl) = part.iter().position(|&c| c == b'\n') else {
            continue;
        };
        let part = &part[nl + 1..];
        let (head, data) = match find(part, b"\r\n\r\n") {
            Some(k) => (&part[..k], &part[k + 4..]),
            None => match find(part, b"\n\n") {
                Some(k) => (&part[..k], &part[k + 2..]),
                None => continue,
            },
        };
        let head = String::from_utf8_lossy(head);
        let name = head
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .flat_map(|l| l.split(';').map(str::trim).collect::<Vec<_>>())
            .find_map(|p| {
                p.strip_prefix("name=")
                    .map(|n| n.trim_matches('"').to_string())
            });
        if let Some(name) = name {
            out.push((name, data));
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn create_inner(
    state: &EmulatorState,
    book: &IngestBook,
    v: &str,
    body: &[u8],
) -> Result<Arc<IngestJob>, ApiError> {
    let api_version = ingest_version(state, v)?;
    let req: Json = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            400,
            "JSON_PARSER_ERROR",
            format!("Cannot deserialize request: {e}"),
        )
    })?;
    let s = |k: &str| req.get(k).and_then(Json::as_str).map(str::to_string);
    let op_name = s("operation").unwrap_or_default();
    let extra_ok = state.switches().ingest_extra_operations;
    let operation = Operation::parse(&op_name)
        .filter(|o| extra_ok || !o.is_extra())
        .ok_or_else(|| invalid_job(format!("Invalid operation: {op_name}")))?;
    let object = s("object")
        .filter(|o| !o.is_empty())
        .ok_or_else(|| invalid_job("Object is required"))?;
    let content = s("contentType").unwrap_or_else(|| "CSV".into());
    if content != "CSV" {
        return Err(invalid_job(format!("Invalid content type: {content}")));
    }
    let delimiter = s("columnDelimiter").unwrap_or_else(|| "COMMA".into());
    if delimiter_byte(&delimiter).is_none() {
        return Err(invalid_job(format!(
            "Invalid column delimiter: {delimiter}"
        )));
    }
    let line_ending = s("lineEnding").unwrap_or_else(|| "LF".into());
    if line_ending != "LF" && line_ending != "CRLF" {
        return Err(invalid_job(format!("Invalid line ending: {line_ending}")));
    }
    let schema = state.store.schema();
    let def = schema
        .object(&object)
        .ok_or_else(|| invalid_job(format!("Unable to find object: {object}")))?;
    if !def.bulk_supported {
        return Err(ApiError::new(
            400,
            "INVALIDENTITY",
            format!("Entity '{}' is not supported by the Bulk API.", def.name),
        ));
    }
    let allowed = match operation {
        Operation::Insert => def.createable,
        Operation::Update => def.updateable,
        Operation::Upsert => def.createable && def.updateable,
        Operation::Delete | Operation::HardDelete => def.deletable,
        Operation::Refresh | Operation::ConsentImport => true,
    };
    if !allowed {
        return Err(invalid_job(format!(
            "Entity type {} does not support {}",
            def.name,
            operation.wire()
        )));
    }
    let external_id_field =
        if operation == Operation::Upsert {
            let f = s("externalIdFieldName").filter(|f| !f.is_empty()).ok_or_else(|| {
            invalid_job(format!(
                "External ID was blank for {}. An External ID must be specified for upsert.",
                def.name
            ))
        })?;
            let fd = def
                .field(&f)
                .filter(|fd| fd.external_id || fd.ty == FieldType::Id)
                .ok_or_else(|| {
                    invalid_job(format!(
                        "Field name provided, {f} is not an External ID or indexed field for {}",
                        def.name
                    ))
                })?;
            Some(fd.name.clone())
        } else {
            None
        };
    let now = now_ms();
    let job = Arc::new(IngestJob {
        id: ids::make("750", state.next_seq()),
        operation,
        object: def.name.clone(),
        external_id_field,
        assignment_rule_id: s("assignmentRuleId"),
        created_ms: now,
        api_version,
        column_delimiter: delimiter,
        line_ending,
        upload: TempPath::new("upload"),
        failed: TempPath::new("failed"),
        rt: Mutex::new(Rt {
            upload: Upload::None,
            closed_ms: None,
            aborted_ms: None,
            queued_ms: 0,
            processing_ms: 0,
            started_ms: None,
            finished_ms: None,
            processed: 0,
            failed: 0,
            retries: 0,
            outcomes: Vec::new(),
            failed_len: 0,
            error: None,
            modstamp_ms: now,
        }),
    });
    lock(&book.jobs).insert(job.id.clone(), job.clone());
    Ok(job)
}

/// `GET /jobs/ingest/{id}` (§6.4).
async fn info(
    State(state): St,
    Extension(book): Book,
    Path((v, id)): Path<(String, String)>,
) -> Response {
    respond((|| {
        ingest_version(&state, &v)?;
        let job = book.find(&id)?;
        Ok(json_response(StatusCode::OK, &job.info(&state, true, None)))
    })())
}

/// `GET /jobs/ingest[?queryLocator=N][&jobType=]` (§6.7, paging as §5.7, ≤1,000 per page).
async fn list(
    State(state): St,
    Extension(book): Book,
    Path(v): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    respond((|| {
        let n = ingest_version(&state, &v)?;
        let params: HashMap<String, String> = q
            .as_deref()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let jobs: Vec<Arc<IngestJob>> = match params.get("jobType").map(String::as_str) {
            Some(t) if t != "V2Ingest" => Vec::new(),
            _ => lock(&book.jobs).values().cloned().collect(),
        };
        let start = match params.get("queryLocator") {
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|&s| s <= jobs.len())
                .ok_or_else(|| {
                    ApiError::new(
                        400,
                        "INVALID_QUERY_LOCATOR",
                        format!("Invalid locator: {l}"),
                    )
                })?,
            None => 0,
        };
        let end = (start + LIST_PAGE).min(jobs.len());
        let records: Vec<Json> = jobs[start..end]
            .iter()
            .map(|j| j.info(&state, false, None))
            .collect();
        let done = end >= jobs.len();
        let next = if done {
            Json::Null
        } else {
            json!(format!(
                "/services/data/v{n}.0/jobs/ingest?queryLocator={end}"
            ))
        };
        Ok(json_response(
            StatusCode::OK,
            &json!({"done": done, "records": records, "nextRecordsUrl": next}),
        ))
    })())
}

/// `PUT /jobs/ingest/{id}/batches` (§6.2): `text/csv`, once per job, only while `Open`; streamed
/// to a temporary file (flat memory); 201 with an empty body. Over 150 MB after base64 → 413.
/// `Content-Encoding: gzip | deflate` bodies are decompressed first (REST "Compression Headers").
/// A second upload is refused with Salesforce's "Found multiple contents for job" error (observed
/// behaviour, not in the reference).
async fn upload(
    State(state): St,
    Extension(book): Book,
    Path((v, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(upload_inner(&state, &book, &v, &id, &headers, body).await)
}

fn base64_len(raw: u64) -> u64 {
    raw.div_ceil(3) * 4
}

fn too_large() -> ApiError {
    ApiError::new(
        413,
        "EXCEEDED_MAX_SIZE_REQUEST",
        format!(
            "Exceeded max size limit of {MAX_BASE64_BYTES} bytes of base64 encoded content for job data; upload at most 100 MB of CSV per job"
        ),
    )
}

async fn upload_inner(
    state: &EmulatorState,
    book: &IngestBook,
    v: &str,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    ingest_version(state, v)?;
    let job = book.find(id)?;
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").trim().to_ascii_lowercase();
        if !ct.starts_with("text/csv") {
            return Err(ApiError::new(
                415,
                "INVALIDCONTENTTYPE",
                format!("Content-Type '{ct}' is not supported for job data; use text/csv"),
            ));
        }
    }
    {
        let mut rt = lock(&job.rt);
        let (st, _) = state_of(&rt, now_ms());
        if st != "Open" {
            return Err(invalid_state(format!(
                "Uploading data to a {st} Job not allowed"
            )));
        }
        if rt.upload != Upload::None {
            return Err(ApiError::new(
                400,
                "BULK_API_ERROR",
                format!(
                    "Found multiple contents for job: <{id}>, please 'Close' / 'Abort' / 'Delete' the current Job then create a new Job and make sure you only do 'PUT' once on a given Job."
                ),
            ));
        }
        rt.upload = Upload::InFlight;
    }
    let result = stream_to_file(&job, headers, body).await;
    let mut rt = lock(&job.rt);
    match result {
        Ok(n) => {
            rt.upload = Upload::Done(n);
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::CREATED;
            Ok(r)
        }
        Err(e) => {
            rt.upload = Upload::None;
            let _ = std::fs::remove_file(&job.upload.0);
            Err(e)
        }
    }
}

/// Request-body decoding: REST decompresses `Content-Encoding: gzip | deflate` requests before
/// processing (REST "Compression Headers"); the size limit counts decompressed bytes.
enum Decoder {
    Identity,
    Gzip(flate2::write::GzDecoder<Vec<u8>>),
    Deflate(flate2::write::ZlibDecoder<Vec<u8>>),
}

impl Decoder {
    fn from_headers(headers: &HeaderMap) -> Result<Decoder, ApiError> {
        let enc = headers
            .get(header::CONTENT_ENCODING)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("identity")
            .trim()
            .to_ascii_lowercase();
        Ok(match enc.as_str() {
            "" | "identity" => Decoder::Identity,
            "gzip" | "x-gzip" => Decoder::Gzip(flate2::write::GzDecoder::new(Vec::new())),
            "deflate" => Decoder::Deflate(flate2::write::ZlibDecoder::new(Vec::new())),
            other => {
                return Err(ApiError::new(
                    415,
                    "UNSUPPORTED_MEDIA_TYPE",
                    format!("Content-Encoding '{other}' is not supported; use gzip or deflate"),
                ));
            }
        })
    }

    /// Decodes one chunk; the output may be empty.
    fn feed(&mut self, chunk: Bytes) -> std::io::Result<Bytes> {
        Ok(match self {
            Decoder::Identity => chunk,
            Decoder::Gzip(d) => {
                d.write_all(&chunk)?;
                Bytes::from(std::mem::take(d.get_mut()))
            }
            Decoder::Deflate(d) => {
                d.write_all(&chunk)?;
                Bytes::from(std::mem::take(d.get_mut()))
            }
        })
    }

    fn finish(self) -> std::io::Result<Bytes> {
        Ok(Bytes::from(match self {
            Decoder::Identity => Vec::new(),
            Decoder::Gzip(d) => d.finish()?,
            Decoder::Deflate(d) => d.finish()?,
        }))
    }
}

async fn stream_to_file(job: &IngestJob, headers: &HeaderMap, body: Body) -> Result<u64, ApiError> {
    let mut dec = Decoder::from_headers(headers)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<u64>().ok());
    if declared.is_some_and(|n| base64_len(n) > MAX_BASE64_BYTES) {
        return Err(too_large());
    }
    let io = |e: std::io::Error| {
        ApiError::new(
            500,
            "UNKNOWN_EXCEPTION",
            format!("job data could not be stored: {e}"),
        )
    };
    let bad_encoding = |e: std::io::Error| {
        ApiError::new(
            400,
            "INVALID_CONTENT_ENCODING",
            format!("The request body could not be decompressed: {e}"),
        )
    };
    let file = tokio::fs::File::create(&job.upload.0).await.map_err(io)?;
    let mut w = tokio::io::BufWriter::with_capacity(CHUNK, file);
    let mut stream = body.into_data_stream();
    let (mut received, mut total) = (0u64, 0u64);
    let mut oversize = false;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                400,
                "INVALIDBATCH",
                format!("InvalidBatch : upload interrupted: {e}"),
            )
        })?;
        received += chunk.len() as u64;
        if oversize {
            if received > DRAIN_LIMIT {
                break;
            }
            continue;
        }
        let data = dec.feed(chunk).map_err(bad_encoding)?;
        total += data.len() as u64;
        if base64_len(total) > MAX_BASE64_BYTES {
            oversize = true;
            continue;
        }
        w.write_all(&data).await.map_err(io)?;
    }
    if oversize {
        return Err(too_large());
    }
    let rest = dec.finish().map_err(bad_encoding)?;
    total += rest.len() as u64;
    if base64_len(total) > MAX_BASE64_BYTES {
        return Err(too_large());
    }
    w.write_all(&rest).await.map_err(io)?;
    w.flush().await.map_err(io)?;
    Ok(total)
}

/// `PATCH /jobs/ingest/{id}` (§6.3): `{"state":"UploadComplete"}` from `Open` starts processing;
/// `{"state":"Aborted"}` before completion stops it (§6.4). 200 with the job info.
async fn patch(
    State(state): St,
    Extension(book): Book,
    Path((v, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    respond(patch_inner(&state, &book, &v, &id, &body))
}

fn patch_inner(
    state: &Arc<EmulatorState>,
    book: &IngestBook,
    v: &str,
    id: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    ingest_version(state, v)?;
    let job = book.find(id)?;
    let req: Json = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            400,
            "JSON_PARSER_ERROR",
            format!("Cannot deserialize request: {e}"),
        )
    })?;
    let target = req.get("state").and_then(Json::as_str).unwrap_or("");
    let now = now_ms();
    match target {
        "UploadComplete" => {
            close_job(state, &job, now)?;
            Ok(json_response(
                StatusCode::OK,
                &job.info(state, false, Some("UploadComplete")),
            ))
        }
        "Aborted" => {
            {
                let mut rt = lock(&job.rt);
                let (st, _) = state_of(&rt, now);
                if !matches!(st, "Open" | "UploadComplete" | "InProgress") {
                    return Err(invalid_state(format!(
                        "Aborting already {st} Job not allowed"
                    )));
                }
                rt.aborted_ms = Some(now);
                rt.modstamp_ms = now;
            }
            Ok(json_response(StatusCode::OK, &job.info(state, false, None)))
        }
        other => Err(invalid_state(format!(
            "Invalid state: {other}; an ingest job can only be set to UploadComplete or Aborted"
        ))),
    }
}

/// Closes an `Open` job (§6.3) and starts its processing after the queue latency.
fn close_job(state: &Arc<EmulatorState>, job: &Arc<IngestJob>, now: i64) -> Result<(), ApiError> {
    let sw = state.switches();
    let queued = sw.ingest_queued_ms.unwrap_or(sw.bulk_queued_ms);
    let forced = {
        let mut rt = lock(&job.rt);
        let (st, _) = state_of(&rt, now);
        if st != "Open" {
            return Err(invalid_state(format!(
                "Closing already {st} Job not allowed"
            )));
        }
        if rt.upload == Upload::InFlight {
            return Err(invalid_state(
                "Closing a Job while its data is being uploaded not allowed",
            ));
        }
        rt.closed_ms = Some(now);
        rt.modstamp_ms = now;
        rt.queued_ms = queued;
        rt.processing_ms = sw.ingest_processing_ms.unwrap_or(sw.bulk_processing_ms);
        lock(&state.faults).next_job.take()
    };
    let (st, bg) = (state.clone(), job.clone());
    tokio::spawn(async move {
        if queued > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(queued)).await;
        }
        let _ = tokio::task::spawn_blocking(move || process(&st, &bg, forced)).await;
    });
    Ok(())
}

/// `DELETE /jobs/ingest/{id}` (§6.7): 204 in `UploadComplete`, `JobComplete`, `Aborted` or
/// `Failed`; otherwise 400 `API_ERROR`. Deleting a queued job stops it.
async fn delete(
    State(state): St,
    Extension(book): Book,
    Path((v, id)): Path<(String, String)>,
) -> Response {
    respond((|| {
        ingest_version(&state, &v)?;
        let job = book.find(&id)?;
        {
            let mut rt = lock(&job.rt);
            let now = now_ms();
            let (st, _) = state_of(&rt, now);
            if !matches!(st, "UploadComplete" | "JobComplete" | "Aborted" | "Failed") {
                return Err(ApiError::new(
                    400,
                    "API_ERROR",
                    format!("Unable to delete job {id} because the job is not terminated"),
                ));
            }
            if st == "UploadComplete" {
                rt.aborted_ms = Some(now);
            }
        }
        lock(&book.jobs).remove(&id);
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        Ok(r)
    })())
}

// ---------------------------------------------------------------------------------------------
// Processing
// ---------------------------------------------------------------------------------------------

fn process(state: &EmulatorState, job: &IngestJob, forced: Option<JobOutcome>) {
    {
        let mut rt = lock(&job.rt);
        if rt.aborted_ms.is_some() {
            return;
        }
        let now = now_ms();
        rt.started_ms = Some(now);
        if forced == Some(JobOutcome::Aborted) {
            rt.aborted_ms = Some(now);
            rt.modstamp_ms = now;
            return;
        }
    }
    let result = run(state, job, forced);
    let mut rt = lock(&job.rt);
    let now = now_ms();
    rt.finished_ms = Some(now);
    if rt.aborted_ms.is_none() {
        rt.modstamp_ms = now;
    }
    if let Err(e) = result {
        tracing::debug!(job = %job.id, error = %e, "ingest job failed");
        rt.error = Some(e.to_string());
    }
}

/// How one uploaded column is written (§6.6).
#[derive(Debug, Clone)]
enum Column {
    /// A field of the object.
    Field(usize),
    /// `RelationshipName.IndexedField`: the lookup field, the parent object and its field.
    Rel {
        lookup: usize,
        parent: usize,
        parent_field: usize,
    },
    /// Present but not used by this operation (non-`Id` columns of a delete job).
    Ignored,
    /// Not a field (switch `ingest_unknown_column_fails_job` off): every row fails.
    Unknown(String),
}

/// Checks the first line terminator against the job's `lineEnding` (§6.1 "must match the file").
fn check_line_ending(job: &IngestJob) -> Result<(), IngestError> {
    let f = std::fs::File::open(&job.upload.0)?;
    let mut r = BufReader::new(f);
    let mut in_quotes = false;
    let mut prev = 0u8;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        let n = buf.len();
        for &c in buf {
            if c == b'"' {
                in_quotes = !in_quotes;
            } else if c == b'\n' && !in_quotes {
                let crlf = prev == b'\r';
                if crlf != (job.line_ending == "CRLF") {
                    return Err(IngestError::Job(format!(
                        "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is {}",
                        job.line_ending
                    )));
                }
                return Ok(());
            }
            prev = c;
        }
        r.consume(n);
    }
}

fn reader(job: &IngestJob) -> Result<csv::Reader<BufReader<std::fs::File>>, IngestError> {
    let f = std::fs::File::open(&job.upload.0)?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(job.delimiter())
        .from_reader(BufReader::with_capacity(CHUNK, f)))
}

fn cells(rec: &csv::ByteRecord) -> Vec<String> {
    rec.iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

fn header_of(rec: &csv::ByteRecord) -> Vec<String> {
    let mut h = cells(rec);
    if let Some(first) = h.first_mut()
        && let Some(rest) = first.strip_prefix('\u{feff}')
    {
        *first = rest.to_string();
    }
    h
}

/// The uploaded header row, if any data was uploaded.
fn uploaded_header(job: &IngestJob) -> Option<Vec<String>> {
    if !matches!(lock(&job.rt).upload, Upload::Done(n) if n > 0) {
        return None;
    }
    let mut r = reader(job).ok()?;
    let mut rec = csv::ByteRecord::new();
    match r.read_byte_record(&mut rec) {
        Ok(true) => Some(header_of(&rec)),
        _ => None,
    }
}

/// Maps header names to columns (§6.6). A name that is neither a field nor a relationship column
/// fails the whole job with `InvalidBatch : Field name not found : X` ("Treat an unknown column as
/// a whole-job failure"), or, with the switch `ingest_unknown_column_fails_job` off, becomes
/// [`Column::Unknown`] and fails every row. Relationship columns are
/// `RelationshipName.IndexedField` for single-target lookups; polymorphic lookups need the target
/// type in the syntax chosen by `ingest_polymorphic_columns` (§9.11), e.g. `Lead:Who.Email`.
fn resolve_columns(
    schema: &Schema,
    def: &ObjectDef,
    header: &[String],
    op: Operation,
    sw: &Switches,
) -> Result<Vec<Column>, IngestError> {
    header
        .iter()
        .map(|name| {
            if let Some(f) = def.index(name).filter(|&f| !def.fields[f].gated) {
                return Ok(if op.id_only() && def.fields[f].name != "Id" {
                    Column::Ignored
                } else {
                    Column::Field(f)
                });
            }
            match relationship_column(schema, def, name, sw.ingest_polymorphic_columns) {
                Some(_) if op.id_only() => Ok(Column::Ignored),
                Some(c) => Ok(c),
                None if sw.ingest_unknown_column_fails_job => Err(IngestError::Job(format!(
                    "InvalidBatch : Field name not found : {name}"
                ))),
                None => Ok(Column::Unknown(name.clone())),
            }
        })
        .collect()
}

/// Resolves `Rel.Field`, `Type:Rel.Field` or `Rel:Type.Field` (§6.6, §9.11) to a
/// [`Column::Rel`]; the parent field must be unique (external id or `idLookup` name).
fn relationship_column(
    schema: &Schema,
    def: &ObjectDef,
    name: &str,
    poly: PolymorphicColumns,
) -> Option<Column> {
    let (path, pf) = name.split_once('.')?;
    let (rel, ty) = match path.split_once(':') {
        None => (path, None),
        Some((a, b)) => match poly {
            PolymorphicColumns::TypeFirst => (b, Some(a)),
            PolymorphicColumns::RelationshipFirst => (a, Some(b)),
            PolymorphicColumns::Rejected => return None,
        },
    };
    let lookup = def.fields.iter().position(|fd| {
        matches!(fd.ty, FieldType::Reference | FieldType::MasterRecord)
            && !fd.gated
            && fd
                .relationship_name
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(rel))
    })?;
    let targets = &def.fields[lookup].reference_to;
    let target = match ty {
        // The plain form names a single-target lookup only.
        None if targets.len() == 1 => &targets[0],
        None => return None,
        Some(t) => targets.iter().find(|x| x.eq_ignore_ascii_case(t))?,
    };
    let parent = schema.index(target)?;
    let pdef = &schema.objects[parent];
    let parent_field = pdef.index(pf).filter(|&i| pdef.fields[i].unique)?;
    Some(Column::Rel {
        lookup,
        parent,
        parent_field,
    })
}

/// `sf__Error` text (§6.5): `CODE:message:` then each field followed by a space, then `--`
/// (e.g. `REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --`).
pub fn bulk_error(e: &RowError) -> String {
    let mut s = format!("{}:{}:", e.code, e.message);
    for f in &e.fields {
        s.push_str(f);
        s.push(' ');
    }
    s.push_str("--");
    s
}

fn row_error(code: &str, message: impl Into<String>, fields: &[&str]) -> RowError {
    RowError {
        code: code.to_string(),
        message: message.into(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
    }
}

/// Types the Bulk layer deserializes from CSV text before the DML.
fn typed(ty: FieldType) -> bool {
    use FieldType as T;
    matches!(
        ty,
        T::Boolean
            | T::Int
            | T::Double
            | T::Currency
            | T::Percent
            | T::Date
            | T::DateTime
            | T::Time
    )
}

/// A row's entry in [`Rt::outcomes`] when it failed.
const FAILED_ROW: u64 = u64::MAX;

enum Outcome {
    /// Written: the row index of the record.
    Ok {
        idx: u64,
        created: bool,
    },
    Err {
        id: String,
        error: String,
    },
}

struct Writers {
    bad: BufWriter<std::fs::File>,
    bad_len: u64,
    /// Outcomes of the rows of the current internal batch (see [`Rt::outcomes`]).
    outcomes: Vec<u64>,
}

fn run(
    state: &EmulatorState,
    job: &IngestJob,
    forced: Option<JobOutcome>,
) -> Result<(), IngestError> {
    let uploaded = matches!(lock(&job.rt).upload, Upload::Done(n) if n > 0);
    let schema = state.store.schema().clone();
    let obj = schema.index(&job.object).ok_or_else(|| {
        IngestError::Job(format!(
            "InvalidJob : Unable to find object: {}",
            job.object
        ))
    })?;
    let def = &schema.objects[obj];
    let mut header = Vec::new();
    let mut rdr = None;
    if uploaded {
        check_line_ending(job)?;
        let mut r = reader(job)?;
        let mut rec = csv::ByteRecord::new();
        if r.read_byte_record(&mut rec)? {
            header = header_of(&rec);
            rdr = Some(r);
        }
    }
    let sw = state.switches();
    let cols = resolve_columns(&schema, def, &header, job.operation, &sw)?;
    let lock_every = lock(&state.faults).ingest_row_lock_every.filter(|&n| n > 0);
    let mut faults = RowFaults {
        lock_every,
        retries: sw.ingest_batch_retries,
        seen: 0,
    };
    let mut w = Writers {
        bad: BufWriter::with_capacity(CHUNK, std::fs::File::create(&job.failed.0)?),
        bad_len: 0,
        outcomes: Vec::with_capacity(BATCH_RECORDS),
    };
    let (d, eol) = (job.delimiter(), job.eol());
    let mut buf = Vec::new();
    result_header(&mut buf, "sf__Error", &header, d, eol);
    w.bad.write_all(&buf)?;
    w.bad_len += buf.len() as u64;
    commit(job, &mut w, 0, 0)?;
    let Some(mut rdr) = rdr else {
        return Ok(());
    };
    // Records are read into reused buffers, one internal batch ahead of the one processed.
    let mut next = csv::ByteRecord::new();
    let mut have_next = rdr.read_byte_record(&mut next)?;
    let mut batch: Vec<csv::ByteRecord> = Vec::with_capacity(BATCH_RECORDS);
    let mut k = 0usize;
    while have_next {
        let mut n = 0usize;
        while have_next && n < BATCH_RECORDS {
            if n == batch.len() {
                batch.push(csv::ByteRecord::new());
            }
            std::mem::swap(&mut batch[n], &mut next);
            n += 1;
            have_next = rdr.read_byte_record(&mut next)?;
        }
        let batch = &batch[..n];
        if lock(&job.rt).aborted_ms.is_some() {
            return Ok(());
        }
        // Injected failure: after the first internal batch when there are several, else before
        // any row is processed.
        if forced == Some(JobOutcome::Failed) && (k == 1 || (k == 0 && !have_next)) {
            return Err(IngestError::Job(
                "InternalServerError : Ingest job failed (injected fault)".into(),
            ));
        }
        let (n, failed, retries) = process_batch(
            state,
            job,
            &schema,
            obj,
            &header,
            &cols,
            batch,
            &mut w,
            &mut faults,
        )?;
        lock(&job.rt).retries += retries;
        commit(job, &mut w, n, failed)?;
        k += 1;
    }
    Ok(())
}

fn commit(job: &IngestJob, w: &mut Writers, n: u64, failed: u64) -> Result<(), IngestError> {
    w.bad.flush()?;
    let mut rt = lock(&job.rt);
    rt.processed += n;
    rt.failed += failed;
    rt.outcomes.append(&mut w.outcomes);
    rt.failed_len = w.bad_len;
    Ok(())
}

/// `"sf__Id","sf__<second>",<uploaded header>` (§6.5: `sf__` names quoted, uploaded names as
/// uploaded).
fn result_header(out: &mut Vec<u8>, second: &str, header: &[String], d: u8, eol: &[u8]) {
    csv_quoted(out, b"sf__Id");
    out.push(d);
    csv_quoted(out, second.as_bytes());
    for h in header {
        out.push(d);
        push_plain(out, h, d);
    }
    out.extend_from_slice(eol);
}

/// A cell quoted only when it must be (delimiter, quote or line break inside).
fn push_plain(out: &mut Vec<u8>, text: &str, d: u8) {
    if text
        .bytes()
        .any(|c| c == d || c == b'"' || c == b'\n' || c == b'\r')
    {
        csv_quoted(out, text.as_bytes());
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

/// Row-level faults of one job: `UNABLE_TO_LOCK_ROW` on every `lock_every`-th row (§3.3, §6.5).
struct RowFaults {
    lock_every: Option<u64>,
    /// Retries an internal batch spends before its locked rows fail (§6.7, §9.13).
    retries: u64,
    /// Rows of the job seen so far.
    seen: u64,
}

/// The record a lock error names: the row's own id, else the first record id among its cells (a
/// parent's), else the object's first record.
fn locked_id(schema: &Schema, def: &ObjectDef, row: &[Cell<'_>], id_col: Option<usize>) -> String {
    id_col
        .and_then(|c| row.get(c))
        .and_then(|v| ids::to18(v.trim()))
        .or_else(|| {
            row.iter().find_map(|c| {
                let id = ids::to18(c.trim())?;
                let (prefix, _) = ids::parse(&id)?;
                schema.by_prefix(&prefix).map(|_| id)
            })
        })
        .unwrap_or_else(|| ids::make(&def.key_prefix, 0))
}

/// One uploaded cell, borrowed from the parsed record unless it was not valid UTF-8.
type Cell<'a> = Cow<'a, str>;

fn row_cells(rec: &csv::ByteRecord) -> Vec<Cell<'_>> {
    rec.iter().map(String::from_utf8_lossy).collect()
}

#[allow(clippy::too_many_arguments)]
fn process_batch(
    state: &EmulatorState,
    job: &IngestJob,
    schema: &Schema,
    obj: usize,
    header: &[String],
    cols: &[Column],
    batch: &[csv::ByteRecord],
    w: &mut Writers,
    faults: &mut RowFaults,
) -> Result<(u64, u64, u64), IngestError> {
    let def = &schema.objects[obj];
    let has_rel = cols.iter().any(|c| matches!(c, Column::Rel { .. }));
    let snap = has_rel.then(|| state.snapshot());
    let rows: Vec<Vec<Cell<'_>>> = batch.iter().map(row_cells).collect();
    let mut outcomes: Vec<Option<Outcome>> = (0..rows.len()).map(|_| None).collect();
    let mut target: Vec<String> = vec![String::new(); rows.len()];
    let id_col = cols
        .iter()
        .position(|c| matches!(c, Column::Field(f) if def.fields[*f].name == "Id"));
    let key_col = job.external_id_field.as_deref().and_then(|k| {
        cols.iter()
            .position(|c| matches!(c, Column::Field(f) if def.fields[*f].name == k))
    });
    let keyed_by_id = match job.operation {
        Operation::Upsert => job.external_id_field.as_deref() == Some("Id"),
        Operation::Refresh | Operation::ConsentImport => true,
        Operation::Insert => false,
        _ => true,
    };
    // Duplicate keys within one internal batch: every row sharing an external id fails; a repeated
    // record id fails on its later occurrences.
    let mut dup_rows: HashMap<usize, RowError> = HashMap::new();
    if keyed_by_id {
        if let Some(c) = id_col.or(key_col) {
            let mut seen = HashSet::new();
            for (i, r) in rows.iter().enumerate() {
                let Some(id) = r.get(c).and_then(|v| ids::to18(v)) else {
                    continue;
                };
                if !seen.insert(id) {
                    dup_rows.insert(
                        i,
                        row_error(
                            "DUPLICATE_VALUE",
                            "duplicate value found: <unknown> duplicates value on record with id: <unknown>",
                            &[],
                        ),
                    );
                }
            }
        }
    } else if let Some(c) = key_col {
        let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in rows.iter().enumerate() {
            if let Some(v) = r.get(c).filter(|v| !v.is_empty() && v.as_ref() != "#N/A") {
                by_key.entry(v.to_ascii_lowercase()).or_default().push(i);
            }
        }
        for group in by_key.values().filter(|g| g.len() > 1) {
            for &i in group {
                let v = rows[i].get(c).map(|v| v.as_ref()).unwrap_or("");
                dup_rows.insert(
                    i,
                    row_error(
                        "DUPLICATE_VALUE",
                        format!("Duplicate external id specified: {v}"),
                        &[],
                    ),
                );
            }
        }
    }
    // Injected lock contention: the batch is retried `retries` times, then its locked rows fail.
    let mut retries = 0;
    if let Some(n) = faults.lock_every {
        for (i, r) in rows.iter().enumerate() {
            if (faults.seen + i as u64 + 1).is_multiple_of(n) {
                let id = locked_id(schema, def, r, id_col);
                dup_rows.insert(
                    i,
                    row_error(
                        "UNABLE_TO_LOCK_ROW",
                        format!(
                            "unable to obtain exclusive access to this record or 1 records: {id}"
                        ),
                        &[],
                    ),
                );
                retries = faults.retries;
            }
        }
    }
    faults.seen += rows.len() as u64;
    let read_snap = job.operation.is_extra().then(|| state.snapshot());
    // Switch `ingest_unknown_column_fails_job` off: an unknown column fails every row (§6.6).
    let unknown = cols.iter().find_map(|c| match c {
        Column::Unknown(n) => Some(n.as_str()),
        _ => None,
    });
    // Inserts without relationship columns take the store's index-keyed fast path.
    let fast = job.operation == Operation::Insert && !has_rel;
    let mut ops = Vec::new();
    let mut cell_rows = Vec::new();
    let mut op_rows = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if keyed_by_id
            && job.api_version >= 53
            && let Some(id) = id_col
                .or(key_col)
                .and_then(|c| r.get(c))
                .and_then(|v| ids::to18(v))
        {
            target[i] = id;
        }
        let failed = match dup_rows.remove(&i) {
            Some(e) => Some(e),
            None => match (unknown, read_snap.as_deref()) {
                (Some(name), _) => Some(row_error(
                    "INVALID_FIELD",
                    format!("Field name not found : {name}"),
                    &[],
                )),
                (None, Some(rs)) => {
                    outcomes[i] = Some(match check_live(rs, obj, id_col, r) {
                        Ok(idx) => Outcome::Ok {
                            idx,
                            created: false,
                        },
                        Err(e) => Outcome::Err {
                            id: target[i].clone(),
                            error: bulk_error(&e),
                        },
                    });
                    continue;
                }
                (None, None) if fast => match insert_cells(def, header, cols, id_col, r) {
                    Ok(cells) => {
                        cell_rows.push(cells);
                        op_rows.push(i);
                        None
                    }
                    Err(e) => Some(e),
                },
                (None, None) => {
                    match build_op(job, def, snap.as_deref(), header, cols, id_col, r) {
                        Ok(op) => {
                            ops.push(op);
                            op_rows.push(i);
                            None
                        }
                        Err(e) => Some(e),
                    }
                }
            },
        };
        if let Some(e) = failed {
            outcomes[i] = Some(Outcome::Err {
                id: target[i].clone(),
                error: bulk_error(&e),
            });
        }
    }
    // Relationship lookups are done: a snapshot held across the write would make the store copy
    // its written rows.
    drop(snap);
    drop(read_snap);
    let written: Vec<Result<(u64, bool), RowError>> = if fast {
        if cell_rows.is_empty() {
            Vec::new()
        } else {
            state
                .store
                .insert_cells(obj, &cell_rows, &state.write_options())?
                .into_iter()
                .map(|r| r.map(|idx| (idx, true)))
                .collect()
        }
    } else if ops.is_empty() {
        Vec::new()
    } else {
        state.store.apply_at(obj, &ops, &state.write_options())?
    };
    for (out, &i) in written.into_iter().zip(&op_rows) {
        outcomes[i] = Some(match out {
            Ok((idx, created)) => Outcome::Ok { idx, created },
            Err(e) => Outcome::Err {
                id: target[i].clone(),
                error: bulk_error(&e),
            },
        });
    }
    let (d, eol) = (job.delimiter(), job.eol());
    let mut failed = 0u64;
    let mut line = Vec::with_capacity(512);
    for (r, out) in rows.iter().zip(outcomes) {
        let (id, error) = match out {
            Some(Outcome::Ok { idx, created }) => {
                w.outcomes.push(idx << 1 | u64::from(created));
                continue;
            }
            Some(Outcome::Err { id, error }) => (id, error),
            None => (
                String::new(),
                bulk_error(&row_error(
                    "UNKNOWN_EXCEPTION",
                    "row was not processed",
                    &[],
                )),
            ),
        };
        w.outcomes.push(FAILED_ROW);
        failed += 1;
        line.clear();
        csv_quoted(&mut line, id.as_bytes());
        line.push(d);
        csv_quoted(&mut line, error.as_bytes());
        for c in r {
            line.push(d);
            csv_quoted(&mut line, c.as_bytes());
        }
        line.extend_from_slice(eol);
        w.bad.write_all(&line)?;
        w.bad_len += line.len() as u64;
    }
    Ok((rows.len() as u64, failed, retries))
}

/// `refresh` / `consentImport` rows (§9.12): the `Id` must name a live record; nothing is written.
/// Returns the record's row index.
fn check_live(
    snap: &Snapshot,
    obj: usize,
    id_col: Option<usize>,
    row: &[Cell<'_>],
) -> Result<u64, RowError> {
    let id = id_col
        .and_then(|c| row.get(c))
        .map(|v| v.trim())
        .unwrap_or("");
    if id.is_empty() {
        return Err(row_error(
            "MISSING_ARGUMENT",
            "Id not specified in an update call",
            &["Id"],
        ));
    }
    match snap.row_by_id(obj, id).filter(|r| r.visible(false)) {
        Some(r) => Ok(r.idx),
        None => Err(row_error(
            "INVALID_CROSS_REFERENCE_KEY",
            "invalid cross reference id",
            &[],
        )),
    }
}

/// The checks every row makes before the DML: its width, and no `Id` on insert (§6.6).
fn check_shape(
    op: Operation,
    header: &[String],
    id_col: Option<usize>,
    row: &[Cell<'_>],
) -> Result<String, RowError> {
    if row.len() != header.len() {
        return Err(row_error(
            "INVALID_FIELD",
            format!(
                "Record has {} fields but the header row has {}",
                row.len(),
                header.len()
            ),
            &[],
        ));
    }
    let id = id_col
        .map(|c| row[c].trim().to_string())
        .unwrap_or_default();
    if op == Operation::Insert && !id.is_empty() {
        return Err(row_error(
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            "cannot specify Id in an insert call",
            &["Id"],
        ));
    }
    Ok(id)
}

/// The Bulk layer's deserialization of a typed cell (§6.6): a value the field type cannot hold
/// fails the row with `INVALID_FIELD` before the DML.
fn check_typed(def: &ObjectDef, f: usize, c: usize, cell: &str) -> Result<(), RowError> {
    let fd = &def.fields[f];
    if typed(fd.ty)
        && !cell.is_empty()
        && cell != "#N/A"
        && let Err(e) = parse_text_value(fd, cell)
        && e.code == "INVALID_TYPE_ON_FIELD_IN_RECORD"
    {
        return Err(row_error(
            "INVALID_FIELD",
            format!(
                "Failed to deserialize field at col {c}. Due to, '{cell}' is not a valid value for the type {}",
                fd.ty.soap()
            ),
            &[fd.name.as_str()],
        ));
    }
    Ok(())
}

/// The cells of one insert row for [`Store::insert_cells`](crate::store::Store::insert_cells)
/// (the fast path of [`build_op`] for inserts without relationship columns; same checks).
fn insert_cells<'r>(
    def: &ObjectDef,
    header: &[String],
    cols: &[Column],
    id_col: Option<usize>,
    row: &'r [Cell<'_>],
) -> Result<Vec<(usize, CellInput<'r>)>, RowError> {
    check_shape(Operation::Insert, header, id_col, row)?;
    let mut cells = Vec::with_capacity(cols.len());
    for (c, (col, cell)) in cols.iter().zip(row).enumerate() {
        if let Column::Field(f) = col {
            check_typed(def, *f, c, cell)?;
            cells.push((
                *f,
                if cell == "#N/A" {
                    CellInput::Null
                } else {
                    CellInput::Text(cell.as_ref())
                },
            ));
        }
    }
    Ok(cells)
}

/// Builds the store operation of one CSV row (§6.6 value rules).
fn build_op(
    job: &IngestJob,
    def: &ObjectDef,
    snap: Option<&Snapshot>,
    header: &[String],
    cols: &[Column],
    id_col: Option<usize>,
    row: &[Cell<'_>],
) -> Result<WriteOp, RowError> {
    let id = check_shape(job.operation, header, id_col, row)?;
    match job.operation {
        Operation::Delete => return Ok(WriteOp::Delete { id }),
        Operation::HardDelete => return Ok(WriteOp::HardDelete { id }),
        _ => {}
    }
    let mut values: FieldValues = Vec::with_capacity(cols.len());
    for (c, (col, cell)) in cols.iter().zip(row).enumerate() {
        match col {
            Column::Ignored | Column::Unknown(_) => {}
            Column::Field(f) => {
                let fd = &def.fields[*f];
                if fd.name == "Id" && job.operation == Operation::Update {
                    continue;
                }
                check_typed(def, *f, c, cell)?;
                let input = if cell == "#N/A" {
                    FieldInput::Null
                } else {
                    FieldInput::Text(cell.to_string())
                };
                values.push((fd.name.clone(), input));
            }
            Column::Rel {
                lookup,
                parent,
                parent_field,
            } => {
                let lname = def.fields[*lookup].name.clone();
                if cell.is_empty() {
                    continue;
                }
                if cell == "#N/A" {
                    values.push((lname, FieldInput::Null));
                    continue;
                }
                let found = snap.and_then(|s| {
                    let idx = s.find_by_unique(*parent, *parent_field, cell)?;
                    Some(ids::make(&s.schema.objects[*parent].key_prefix, idx))
                });
                match found {
                    Some(pid) => values.push((lname, FieldInput::Text(pid))),
                    None => {
                        let (pname, pfield) = snap
                            .map(|s| {
                                let p = &s.schema.objects[*parent];
                                (p.name.clone(), p.fields[*parent_field].name.clone())
                            })
                            .unwrap_or_default();
                        return Err(row_error(
                            "INVALID_FIELD",
                            format!(
                                "Foreign key external ID: {cell} not found for field {pfield} in entity {pname}"
                            ),
                            &[],
                        ));
                    }
                }
            }
        }
    }
    Ok(match job.operation {
        Operation::Insert => WriteOp::Insert(values),
        Operation::Update => WriteOp::Update { id, values },
        _ => WriteOp::Upsert {
            key_field: job.external_id_field.clone().unwrap_or_else(|| "Id".into()),
            values,
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Successful,
    Failed,
    Unprocessed,
}

/// `GET /jobs/ingest/{id}/successfulResults/` (§6.5): `sf__Id`, `sf__Created`, then the uploaded
/// columns; the rows processed so far.
async fn successful_results(
    State(state): St,
    Extension(book): Book,
    Path((v, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    respond(results(&state, &book, &v, &id, &headers, Kind::Successful))
}

/// `GET /jobs/ingest/{id}/failedResults/` (§6.5): `sf__Id` (v53+, may be empty), `sf__Error`,
/// then the uploaded columns.
async fn failed_results(
    State(state): St,
    Extension(book): Book,
    Path((v, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    respond(results(&state, &book, &v, &id, &headers, Kind::Failed))
}

/// `GET /jobs/ingest/{id}/unprocessedrecords/` (§6.5): the uploaded header and every uploaded row
/// not processed (all of them after an abort before processing or a job-level failure, none
/// after `JobComplete`).
async fn unprocessed_records(
    State(state): St,
    Extension(book): Book,
    Path((v, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    respond(results(&state, &book, &v, &id, &headers, Kind::Unprocessed))
}

/// Streams one result CSV from a blocking producer (flat memory), gzip-compressed when the
/// request accepts it (Bulk 2.0 "Use Compression for Ingest Responses").
fn results(
    state: &EmulatorState,
    book: &IngestBook,
    v: &str,
    id: &str,
    headers: &HeaderMap,
    kind: Kind,
) -> Result<Response, ApiError> {
    ingest_version(state, v)?;
    let job = book.find(id)?;
    let (st, len, processed, outcomes) = {
        let rt = lock(&job.rt);
        let (st, _) = state_of(&rt, now_ms());
        let len = match kind {
            Kind::Failed => rt.failed_len,
            _ => 0,
        };
        let outcomes = match kind {
            Kind::Successful => rt.outcomes.clone(),
            _ => Vec::new(),
        };
        (st, len, rt.processed, outcomes)
    };
    let prefix = state
        .store
        .schema()
        .object(&job.object)
        .map(|d| d.key_prefix.clone())
        .unwrap_or_default();
    if st == "Open" {
        return Err(invalid_state("Results are not available for an Open Job"));
    }
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h.split(',').any(|e| e.trim().starts_with("gzip")));
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut sink = Sink::new(tx, gzip, None);
        let r = match kind {
            Kind::Unprocessed => produce_unprocessed(&job, processed, &mut sink),
            Kind::Successful => produce_successes(&job, &outcomes, &prefix, &mut sink),
            Kind::Failed => produce_results(&job, kind, len, &mut sink),
        };
        match r {
            Ok(()) => sink.finish(),
            Err(e) => sink.fail(e),
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv"));
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(r)
}

/// Successful or failed results: the committed prefix of the result file, or the header alone
/// when nothing was processed yet.
fn produce_results(
    job: &IngestJob,
    kind: Kind,
    len: u64,
    sink: &mut Sink,
) -> Result<(), IngestError> {
    let mut buf = Vec::with_capacity(CHUNK);
    if len == 0 {
        let header = uploaded_header(job).unwrap_or_default();
        let second = if kind == Kind::Successful {
            "sf__Created"
        } else {
            "sf__Error"
        };
        result_header(&mut buf, second, &header, job.delimiter(), job.eol());
        sink.send(&mut buf);
        return Ok(());
    }
    let mut r = std::fs::File::open(&job.failed.0)?.take(len);
    loop {
        buf.resize(CHUNK, 0);
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        buf.truncate(n);
        if !sink.send(&mut buf) {
            return Ok(());
        }
    }
}

/// Successful results, rendered now from the upload and the recorded outcomes: `sf__Id`,
/// `sf__Created`, then the row's uploaded cells, for each written row of the processed prefix.
fn produce_successes(
    job: &IngestJob,
    outcomes: &[u64],
    prefix: &str,
    sink: &mut Sink,
) -> Result<(), IngestError> {
    let (d, eol) = (job.delimiter(), job.eol());
    let mut buf = Vec::with_capacity(CHUNK + 4096);
    let header = uploaded_header(job).unwrap_or_default();
    result_header(&mut buf, "sf__Created", &header, d, eol);
    if outcomes.iter().all(|&o| o == FAILED_ROW) {
        sink.send(&mut buf);
        return Ok(());
    }
    let mut rdr = reader(job)?;
    let mut rec = csv::ByteRecord::new();
    // The header row.
    rdr.read_byte_record(&mut rec)?;
    for &o in outcomes {
        if !rdr.read_byte_record(&mut rec)? {
            break;
        }
        if o == FAILED_ROW {
            continue;
        }
        csv_quoted(&mut buf, ids::make(prefix, o >> 1).as_bytes());
        buf.push(d);
        csv_quoted(
            &mut buf,
            if o & 1 == 1 {
                &b"true"[..]
            } else {
                &b"false"[..]
            },
        );
        for c in rec.iter() {
            buf.push(d);
            match std::str::from_utf8(c) {
                Ok(_) => csv_quoted(&mut buf, c),
                Err(_) => csv_quoted(&mut buf, String::from_utf8_lossy(c).as_bytes()),
            }
        }
        buf.extend_from_slice(eol);
        if buf.len() >= CHUNK && !sink.send(&mut buf) {
            return Ok(());
        }
    }
    sink.send(&mut buf);
    Ok(())
}

/// Unprocessed records: the uploaded header, then the uploaded rows after the processed prefix.
fn produce_unprocessed(job: &IngestJob, skip: u64, sink: &mut Sink) -> Result<(), IngestError> {
    if !matches!(lock(&job.rt).upload, Upload::Done(n) if n > 0) {
        return Ok(());
    }
    let (d, eol) = (job.delimiter(), job.eol());
    let mut rdr = reader(job)?;
    let mut rec = csv::ByteRecord::new();
    let mut buf = Vec::with_capacity(CHUNK + 4096);
    let mut first = true;
    let mut n = 0u64;
    while rdr.read_byte_record(&mut rec)? {
        let row = if first {
            first = false;
            header_of(&rec)
        } else {
            n += 1;
            if n <= skip {
                continue;
            }
            cells(&rec)
        };
        for (k, c) in row.iter().enumerate() {
            if k > 0 {
                buf.push(d);
            }
            push_plain(&mut buf, c, d);
        }
        buf.extend_from_slice(eol);
        if buf.len() >= CHUNK && !sink.send(&mut buf) {
            return Ok(());
        }
    }
    sink.send(&mut buf);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_render_in_the_bulk_form() {
        let e = row_error(
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [Name]",
            &["Name"],
        );
        assert_eq!(
            bulk_error(&e),
            "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --"
        );
        let e = row_error(
            "INVALID_CROSS_REFERENCE_KEY",
            "invalid cross reference id",
            &[],
        );
        assert_eq!(
            bulk_error(&e),
            "INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--"
        );
        let e = row_error("X", "m", &["A", "B"]);
        assert_eq!(bulk_error(&e), "X:m:A B --");
    }

    #[test]
    fn upload_limit_counts_base64_bytes() {
        assert_eq!(base64_len(3), 4);
        assert_eq!(base64_len(4), 8);
        assert!(base64_len(100_000_000) <= MAX_BASE64_BYTES);
        assert!(base64_len(112_500_001) > MAX_BASE64_BYTES);
    }

    #[test]
    fn spool_files_of_dead_processes_are_swept() {
        let dir = std::env::temp_dir();
        let dead = dir.join(format!("{TEMP_PREFIX}999999999-0-upload.csv"));
        let mine = TempPath::new("sweep-test");
        std::fs::write(&dead, b"x").unwrap();
        std::fs::write(&mine.0, b"x").unwrap();
        sweep_stale_files();
        if std::path::Path::new("/proc/self").exists() {
            assert!(!dead.exists());
        }
        assert!(mine.0.exists());
        let path = mine.0.clone();
        drop(mine);
        assert!(!path.exists());
        let _ = std::fs::remove_file(&dead);
    }

    #[test]
    fn plain_cells_are_quoted_only_when_needed() {
        let mut out = Vec::new();
        push_plain(&mut out, "Id", b',');
        out.push(b',');
        push_plain(&mut out, "a,b", b',');
        out.push(b',');
        push_plain(&mut out, "say \"hi\"", b'|');
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Id,\"a,b\",\"say \"\"hi\"\"\""
        );
    }
}
