//! Bulk API 2.0 query jobs (§5): create, info, results paging, parallel result pages, abort,
//! delete, list.
//!
//! A job snapshots the org when it is created, counts its result in the background (recording a
//! resume checkpoint every [`CHECKPOINT`] rows), and advances `UploadComplete` → `InProgress` →
//! `JobComplete` after the configured latencies (§5.2). Result pages stream a CSV body row by row
//! from a blocking producer (flat memory), gzip-compressed when asked (§5.4).

use crate::api::{ApiError, json_response, version};
use crate::config::{JobOutcome, ResultPagesKeys, Switches};
use crate::engine::{self, CsvStyle, Exec, Pos};
use crate::ids;
use crate::schema::FieldType;
use crate::soql::{self, SoqlOptions};
use crate::state::{EmulatorState, lock, now_ms};
use crate::value;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value as Json, json};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Rows between two recorded resume positions.
pub const CHECKPOINT: u64 = 10_000;
const CHUNK: usize = 256 * 1024;

type St = State<Arc<EmulatorState>>;

/// Background count result.
#[derive(Debug, Clone)]
pub struct Counted {
    /// Result rows (after LIMIT).
    pub total: u64,
    /// Position after `k * CHECKPOINT` rows, for k = 0, 1, ...
    pub checkpoints: Vec<Pos>,
    /// Failure message (QUERY_TIMEOUT fault).
    pub error: Option<String>,
}

/// Mutable job state.
#[derive(Debug, Default)]
pub struct JobRt {
    /// When it was aborted.
    pub aborted_ms: Option<i64>,
    /// Count, once done.
    pub counted: Option<Counted>,
}

/// One Bulk 2.0 query job.
#[derive(Debug)]
pub struct QueryJob {
    /// `750...` id.
    pub id: String,
    /// `query` or `queryAll`.
    pub operation: String,
    /// Object API name.
    pub object: String,
    /// Creation instant.
    pub created_ms: i64,
    /// API version number (e.g. 62).
    pub api_version: u32,
    /// `COMMA`, `TAB`, ...
    pub column_delimiter: String,
    /// `LF` or `CRLF`.
    pub line_ending: String,
    /// The query over the creation-time snapshot.
    pub exec: Arc<Exec>,
    /// Forced outcome (fault).
    pub forced: Option<JobOutcome>,
    /// Latencies at creation.
    pub queued_ms: u64,
    /// Processing latency at creation.
    pub processing_ms: u64,
    /// Mutable part.
    pub rt: Mutex<JobRt>,
}

impl QueryJob {
    /// Current state name and error message (§5.2).
    pub fn state(&self, now: i64) -> (&'static str, Option<String>) {
        let rt = lock(&self.rt);
        if rt.aborted_ms.is_some() {
            return ("Aborted", None);
        }
        let elapsed = (now - self.created_ms).max(0) as u64;
        if elapsed < self.queued_ms {
            return ("UploadComplete", None);
        }
        let Some(c) = &rt.counted else {
            return ("InProgress", None);
        };
        if elapsed < self.queued_ms + self.processing_ms {
            return ("InProgress", None);
        }
        if let Some(e) = &c.error {
            return ("Failed", Some(e.clone()));
        }
        match self.forced {
            Some(JobOutcome::Failed) => (
                "Failed",
                Some("InternalServerError : Query job failed (injected fault)".into()),
            ),
            Some(JobOutcome::Aborted) => ("Aborted", None),
            None => ("JobComplete", None),
        }
    }

    fn total(&self) -> Option<u64> {
        lock(&self.rt).counted.as_ref().map(|c| c.total)
    }

    /// Job info body (§5.3); `full: false` gives the shorter create/abort body (§5.1).
    pub fn info(&self, state: &EmulatorState, full: bool) -> Json {
        self.info_as(state, full, None)
    }

    /// Job info with the state forced (the create response is always `UploadComplete`, §5.1).
    pub fn info_as(
        &self,
        state: &EmulatorState,
        full: bool,
        forced_state: Option<&'static str>,
    ) -> Json {
        let now = now_ms();
        let (st, err) = self.state(now);
        let st = forced_state.unwrap_or(st);
        let created = value::fmt_datetime_rest(self.created_ms);
        let mut j = json!({
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": state.user_id(),
            "createdDate": created,
            "systemModstamp": created,
            "state": st,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": f64::from(self.api_version),
            "lineEnding": self.line_ending,
            "columnDelimiter": self.column_delimiter,
        });
        if full {
            let done = matches!(st, "JobComplete");
            j["jobType"] = json!("V2Query");
            j["numberRecordsProcessed"] = json!(if done { self.total().unwrap_or(0) } else { 0 });
            j["retries"] = json!(0);
            j["totalProcessingTime"] = json!(if done { self.processing_ms } else { 0 });
            j["isPkChunkingSupported"] =
                json!(self.object.ends_with("__c") || self.object == "Account");
            if let Some(e) = err {
                j["errorMessage"] = json!(e);
            }
        }
        j
    }
}

/// The byte of a Bulk `columnDelimiter` name (§5.1, §6.1).
pub(crate) fn delimiter_byte(name: &str) -> Option<u8> {
    Some(match name {
        "COMMA" => b',',
        "TAB" => b'\t',
        "PIPE" => b'|',
        "SEMICOLON" => b';',
        "CARET" => b'^',
        "BACKQUOTE" => b'`',
        _ => return None,
    })
}

/// The major number of a `vXX.X` API version segment (0 when unparsable).
pub(crate) fn job_version(v: &str) -> u32 {
    v.trim_start_matches('v')
        .trim_end_matches(".0")
        .parse()
        .unwrap_or(0)
}

/// `POST /jobs/query` (§5.1).
pub async fn create(State(state): St, Path(v): Path<String>, body: Bytes) -> Response {
    let v = match version(&state, &v) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    match create_job(&state, &v, &body) {
        Ok(job) => json_response(
            StatusCode::OK,
            &job.info_as(&state, false, Some("UploadComplete")),
        ),
        Err(e) => e.into_response(),
    }
}

fn create_job(state: &Arc<EmulatorState>, v: &str, body: &[u8]) -> Result<Arc<QueryJob>, ApiError> {
    let req: Json = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            400,
            "JSON_PARSER_ERROR",
            format!("Cannot deserialize request: {e}"),
        )
    })?;
    let s = |k: &str| req.get(k).and_then(Json::as_str).map(str::to_string);
    let operation = s("operation").unwrap_or_default();
    if operation != "query" && operation != "queryAll" {
        return Err(ApiError::new(
            400,
            "INVALIDJOB",
            format!("InvalidJob : Invalid operation: {operation}"),
        ));
    }
    let content = s("contentType").unwrap_or_else(|| "CSV".into());
    if content != "CSV" {
        return Err(ApiError::new(
            400,
            "INVALIDJOB",
            format!("InvalidJob : Invalid content type: {content}"),
        ));
    }
    let delimiter = s("columnDelimiter").unwrap_or_else(|| "COMMA".into());
    if delimiter_byte(&delimiter).is_none() {
        return Err(ApiError::new(
            400,
            "INVALIDJOB",
            format!("InvalidJob : Invalid column delimiter: {delimiter}"),
        ));
    }
    let line_ending = s("lineEnding").unwrap_or_else(|| "LF".into());
    if line_ending != "LF" && line_ending != "CRLF" {
        return Err(ApiError::new(
            400,
            "INVALIDJOB",
            format!("InvalidJob : Invalid line ending: {line_ending}"),
        ));
    }
    let q = s("query")
        .ok_or_else(|| ApiError::new(400, "INVALIDJOB", "InvalidJob : query is required"))?;
    let snap = state.snapshot();
    let sw = state.switches();
    let query = soql::parse(
        &q,
        &snap.schema,
        SoqlOptions {
            fractional_seconds: sw.soql_fractional_seconds,
            now_ms: snap.now,
            gated_fields: sw.describe_json_masterrecord,
        },
    )
    .map_err(|e| ApiError::new(400, e.code, e.message))?;
    let def = &snap.schema.objects[query.object];
    if !def.bulk_supported {
        return Err(ApiError::new(
            400,
            "INVALIDENTITY",
            format!("Entity '{}' is not supported by the Bulk API.", def.name),
        ));
    }
    if query.count {
        return Err(ApiError::new(
            400,
            "API_ERROR",
            "Aggregate queries are not supported by Bulk API 2.0 query",
        ));
    }
    if query.offset > 0 {
        return Err(ApiError::new(
            400,
            "API_ERROR",
            "OFFSET is not supported by Bulk API 2.0 query",
        ));
    }
    // §5.1: compound fields cannot be selected.
    if query.select.iter().any(|f| f.ty.is_compound()) {
        return Err(ApiError::new(
            400,
            "API_ERROR",
            "Selecting compound data not supported in Bulk Query",
        ));
    }
    // §5.1 "Unsupported-in-CSV fields": complexvalue always; base64 behind the §9.10 switch.
    if let Some(f) = query
        .select
        .iter()
        .find(|f| !f.ty.csv_serializable() || (sw.bulk_reject_base64 && f.ty == FieldType::Base64))
    {
        return Err(ApiError::new(
            400,
            "API_ERROR",
            format!(
                "FeatureNotEnabled : Cannot serialize value for '{}' in CSV format",
                f.name
            ),
        ));
    }
    let object = def.name.clone();
    let faults = {
        let mut f = lock(&state.faults);
        (f.next_job.take(), f.query_timeout_rows)
    };
    let exec = Arc::new(Exec::new(Arc::new(query), snap, operation == "queryAll"));
    let job = Arc::new(QueryJob {
        id: ids::make("750", state.next_seq()),
        operation,
        object,
        created_ms: now_ms(),
        api_version: job_version(v),
        column_delimiter: delimiter,
        line_ending,
        exec: exec.clone(),
        forced: faults.0,
        queued_ms: sw.bulk_queued_ms,
        processing_ms: sw.bulk_processing_ms,
        rt: Mutex::new(JobRt::default()),
    });
    lock(&state.jobs).insert(job.id.clone(), job.clone());
    let bg = job.clone();
    let timeout_rows = faults.1;
    tokio::task::spawn_blocking(move || {
        let counted = count(&bg.exec, timeout_rows);
        lock(&bg.rt).counted = Some(counted);
    });
    Ok(job)
}

fn count(exec: &Exec, timeout_rows: Option<u64>) -> Counted {
    let limit = exec.query.limit.unwrap_or(u64::MAX);
    let mut checkpoints = vec![Pos::Start];
    let mut n = 0u64;
    for (_, p) in exec.rows(&Pos::Start) {
        if n >= limit {
            break;
        }
        n += 1;
        if n.is_multiple_of(CHECKPOINT) {
            checkpoints.push(p);
        }
    }
    let error = timeout_rows.and_then(|t| {
        let (examined, _) = exec.count();
        (examined > t).then(|| "Your query request was running for too long.".to_string())
    });
    Counted {
        total: n,
        checkpoints,
        error,
    }
}

fn find(state: &EmulatorState, id: &str) -> Result<Arc<QueryJob>, ApiError> {
    lock(&state.jobs)
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::new(404, "NOT_FOUND", "The requested resource does not exist"))
}

/// `GET /jobs/query/{id}` (§5.3).
pub async fn info(State(state): St, Path((v, id)): Path<(String, String)>) -> Response {
    if let Err(e) = version(&state, &v) {
        return e.into_response();
    }
    match find(&state, &id) {
        Ok(job) => json_response(StatusCode::OK, &job.info(&state, true)),
        Err(e) => e.into_response(),
    }
}

/// `GET /jobs/query` (§5.7).
pub async fn list(State(state): St, Path(v): Path<String>) -> Response {
    if let Err(e) = version(&state, &v) {
        return e.into_response();
    }
    let jobs: Vec<Arc<QueryJob>> = lock(&state.jobs).values().cloned().collect();
    let records: Vec<Json> = jobs.iter().map(|j| j.info(&state, true)).collect();
    json_response(
        StatusCode::OK,
        &json!({"done": true, "records": records, "nextRecordsUrl": null}),
    )
}

/// `PATCH /jobs/query/{id}` with `{"state":"Aborted"}` (§5.7): only from UploadComplete/InProgress.
pub async fn abort(
    State(state): St,
    Path((v, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if let Err(e) = version(&state, &v) {
        return e.into_response();
    }
    let job = match find(&state, &id) {
        Ok(j) => j,
        Err(e) => return e.into_response(),
    };
    let req: Json = serde_json::from_slice(&body).unwrap_or(Json::Null);
    if req.get("state").and_then(Json::as_str) != Some("Aborted") {
        return ApiError::new(
            400,
            "INVALIDJOBSTATE",
            "InvalidJobState : the only state a query job can be set to is Aborted",
        )
        .into_response();
    }
    let (st, _) = job.state(now_ms());
    if !matches!(st, "UploadComplete" | "InProgress") {
        return ApiError::new(
            400,
            "INVALIDJOBSTATE",
            format!("InvalidJobState : Aborting already {st} Job not allowed"),
        )
        .into_response();
    }
    lock(&job.rt).aborted_ms = Some(now_ms());
    json_response(StatusCode::OK, &job.info(&state, false))
}

/// `DELETE /jobs/query/{id}` (§5.7): 204 when terminal, else 400 `API_ERROR`.
pub async fn delete(State(state): St, Path((v, id)): Path<(String, String)>) -> Response {
    if let Err(e) = version(&state, &v) {
        return e.into_response();
    }
    let job = match find(&state, &id) {
        Ok(j) => j,
        Err(e) => return e.into_response(),
    };
    let (st, _) = job.state(now_ms());
    if !matches!(st, "JobComplete" | "Aborted" | "Failed") {
        return ApiError::new(
            400,
            "API_ERROR",
            format!("Unable to delete job {id} because the job is not terminated"),
        )
        .into_response();
    }
    lock(&state.jobs).remove(&id);
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

fn locator_encode(ordinal: u64) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(ordinal.to_string())
}

fn locator_decode(s: &str) -> Option<u64> {
    let b = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()?;
    String::from_utf8(b).ok()?.parse().ok()
}

fn ready(state: &EmulatorState, job: &QueryJob, v: &str) -> Result<u64, ApiError> {
    if job_version(v) != job.api_version {
        return Err(ApiError::new(
            409,
            "API_ERROR",
            format!(
                "Job {} was created with API version {}.0; use the same version to access its results",
                job.id, job.api_version
            ),
        ));
    }
    let (st, _) = job.state(now_ms());
    let sw = state.switches();
    if st != "JobComplete" {
        return Err(ApiError::new(
            sw.job_not_complete_status,
            &sw.job_not_complete_code,
            "Can only download query results of successfully completed bulk job",
        ));
    }
    job.total()
        .ok_or_else(|| ApiError::new(500, "UNKNOWN_EXCEPTION", "job count missing"))
}

fn style(job: &QueryJob, sw: &Switches) -> CsvStyle {
    CsvStyle {
        delimiter: delimiter_byte(&job.column_delimiter).unwrap_or(b','),
        crlf: job.line_ending == "CRLF",
        null_quoted: sw.bulk_csv_null_quoted,
        datetime_zulu: sw.bulk_csv_datetime_zulu,
        bool_lower: sw.bulk_csv_bool_lower,
        header_as_written: sw.bulk_csv_header_as_written,
    }
}

/// `GET /jobs/query/{id}/results[?locator=][&maxRecords=]` (§5.4–5.5).
pub async fn results(
    State(state): St,
    Path((v, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    match results_inner(&state, &v, &id, q, &headers) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn results_inner(
    state: &Arc<EmulatorState>,
    v: &str,
    id: &str,
    q: Option<String>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let v = version(state, v)?;
    let job = find(state, id)?;
    let total = ready(state, &job, &v)?;
    let params: std::collections::HashMap<String, String> = q
        .as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let sw = state.switches();
    let start = match params.get("locator").filter(|l| !l.is_empty()) {
        Some(l) => locator_decode(l).filter(|&n| n <= total).ok_or_else(|| {
            ApiError::new(
                sw.invalid_query_locator_status,
                "INVALID_QUERY_LOCATOR",
                format!("Invalid locator: {l}"),
            )
        })?,
        None => 0,
    };
    let max = match params.get("maxRecords") {
        Some(m) => m.parse::<u64>().ok().filter(|&m| m > 0).ok_or_else(|| {
            ApiError::new(
                400,
                "INVALIDREQUEST",
                format!("maxRecords must be a positive integer: {m}"),
            )
        })?,
        None => sw.bulk_default_page_rows.max(1),
    };
    let n = max.min(total - start);
    let next = if start + n < total {
        locator_encode(start + n)
    } else {
        "null".to_string()
    };
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h.split(',').any(|e| e.trim().starts_with("gzip")));
    let style = style(&job, &sw);
    let reset = lock(&state.faults).reset_after_bytes.take();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let header_too = n > 0 || sw.bulk_empty_result_header;
    let producer_job = job.clone();
    tokio::task::spawn_blocking(move || {
        produce(&producer_job, start, n, style, gzip, header_too, reset, tx)
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv"));
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert("Sforce-NumberOfRecords", HeaderValue::from(n));
    if let Ok(l) = HeaderValue::from_str(&next) {
        h.insert("Sforce-Locator", l);
    }
    Ok(resp)
}

/// Writes one result page into the channel, row by row.
#[allow(clippy::too_many_arguments)]
fn produce(
    job: &QueryJob,
    start: u64,
    n: u64,
    style: CsvStyle,
    gzip: bool,
    header_too: bool,
    reset: Option<u64>,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let mut sink = Sink::new(tx, gzip, reset);
    let mut buf = Vec::with_capacity(CHUNK + 4096);
    if header_too {
        engine::csv_header(&mut buf, &job.exec.query.select, &style);
    }
    let cps = lock(&job.rt)
        .counted
        .as_ref()
        .map(|c| c.checkpoints.clone())
        .unwrap_or_default();
    let end = start + n;
    let last_block = end.saturating_sub(1) / CHECKPOINT;
    if n >= 2 * CHECKPOINT && (cps.len() as u64) > last_block {
        // Render checkpoint-aligned blocks on two threads, send them in order.
        sink.send(&mut buf);
        produce_parallel(job, &cps, start, end, style, &mut sink);
        sink.finish();
        return;
    }
    let (pos, skip) = match cps.get((start / CHECKPOINT) as usize) {
        Some(p) => (p.clone(), start % CHECKPOINT),
        None => (Pos::Start, start),
    };
    for (r, _) in job.exec.rows(&pos).skip(skip as usize).take(n as usize) {
        engine::csv_row(&mut buf, &r, &job.exec.query.select, &style);
        if buf.len() >= CHUNK {
            sink.send(&mut buf);
            if sink.dead {
                return;
            }
        }
    }
    sink.send(&mut buf);
    sink.finish();
}

/// Renders rows `[start, end)` as blocks aligned on the count checkpoints, alternating between two
/// worker threads, and hands the blocks to the sink in order (bounded: two blocks in flight per
/// worker).
fn produce_parallel(
    job: &QueryJob,
    cps: &[Pos],
    start: u64,
    end: u64,
    style: CsvStyle,
    sink: &mut Sink,
) {
    const WORKERS: u64 = 2;
    let first_block = start / CHECKPOINT;
    let last_block = (end - 1) / CHECKPOINT;
    std::thread::scope(|scope| {
        let mut rxs = Vec::new();
        for w in 0..WORKERS {
            let (btx, brx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
            rxs.push(brx);
            let exec = &job.exec;
            scope.spawn(move || {
                let mut b = first_block + w;
                while b <= last_block {
                    let lo = start.max(b * CHECKPOINT);
                    let hi = end.min((b + 1) * CHECKPOINT);
                    let mut out = Vec::with_capacity(((hi - lo) * 256) as usize);
                    let Some(pos) = cps.get(b as usize) else {
                        return;
                    };
                    let rows = exec
                        .rows(pos)
                        .skip((lo - b * CHECKPOINT) as usize)
                        .take((hi - lo) as usize);
                    for (r, _) in rows {
                        engine::csv_row(&mut out, &r, &exec.query.select, &style);
                    }
                    if btx.send(out).is_err() {
                        return;
                    }
                    b += WORKERS;
                }
            });
        }
        for k in 0..=(last_block - first_block) {
            match rxs[(k % WORKERS) as usize].recv() {
                Ok(block) => sink.send_block(block),
                Err(_) => break,
            }
            if sink.dead {
                break;
            }
        }
        drop(rxs);
    });
}

/// A streamed response body fed from a blocking producer: a bounded channel of chunks, an
/// optional gzip encoder (§5.4 / ingest "Use Compression for Ingest Responses") and an optional
/// byte budget after which the connection is cut (fault `reset_after_bytes`). Shared by Bulk query
/// results and ingest result CSVs.
pub(crate) struct Sink {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    gz: Option<flate2::write::GzEncoder<Vec<u8>>>,
    budget: Option<u64>,
    /// The client has gone, the connection was cut, or an error was reported.
    pub(crate) dead: bool,
}

impl Sink {
    /// A sink on `tx`, gzip-compressing when `gzip`, cutting the connection after `reset_after`
    /// body bytes (as sent, i.e. compressed when gzip).
    pub(crate) fn new(
        tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
        gzip: bool,
        reset_after: Option<u64>,
    ) -> Sink {
        Sink {
            tx,
            gz: gzip
                .then(|| flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast())),
            budget: reset_after,
            dead: false,
        }
    }

    fn emit(&mut self, bytes: Vec<u8>) {
        if self.dead || bytes.is_empty() {
            return;
        }
        if let Some(b) = self.budget {
            if (bytes.len() as u64) >= b {
                let part = Bytes::from(bytes[..b as usize].to_vec());
                let _ = self.tx.blocking_send(Ok(part));
                // Let the head and the partial body reach the socket before the cut.
                std::thread::sleep(std::time::Duration::from_millis(100));
                let _ = self.tx.blocking_send(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected connection reset",
                )));
                self.dead = true;
                return;
            }
            self.budget = Some(b - bytes.len() as u64);
        }
        if self.tx.blocking_send(Ok(Bytes::from(bytes))).is_err() {
            self.dead = true;
        }
    }

    /// Sends `buf` (left empty, capacity kept); false once the sink is dead.
    pub(crate) fn send(&mut self, buf: &mut Vec<u8>) -> bool {
        let out = match self.gz.as_mut() {
            Some(gz) => {
                let written = gz.write_all(buf);
                buf.clear();
                let out = std::mem::take(gz.get_mut());
                if let Err(e) = written {
                    self.fail(e);
                }
                out
            }
            None => std::mem::replace(buf, Vec::with_capacity(buf.capacity())),
        };
        self.emit(out);
        !self.dead
    }

    /// Sends a whole rendered block.
    pub(crate) fn send_block(&mut self, mut block: Vec<u8>) {
        if self.gz.is_some() {
            self.send(&mut block);
        } else {
            self.emit(block);
        }
    }

    /// Flushes the gzip trailer.
    pub(crate) fn finish(&mut self) {
        if let Some(gz) = self.gz.take() {
            match gz.finish() {
                Ok(rest) => self.emit(rest),
                Err(e) => self.fail(e),
            }
        }
    }

    /// Ends the body with an error (the client sees a broken transfer, not a short success).
    pub(crate) fn fail(&mut self, e: impl std::fmt::Display) {
        if !self.dead {
            let _ = self
                .tx
                .blocking_send(Err(std::io::Error::other(e.to_string())));
            self.dead = true;
        }
    }
}

/// `GET /jobs/query/{id}/resultPages` (§5.6, v58+): up to five result URLs per response.
pub async fn result_pages(
    State(state): St,
    Path((v, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let inner = || -> Result<Response, ApiError> {
        let v = version(&state, &v)?;
        if job_version(&v) < 58 {
            return Err(ApiError::not_found());
        }
        let job = find(&state, &id)?;
        let total = ready(&state, &job, &v)?;
        let params: std::collections::HashMap<String, String> = q
            .as_deref()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let sw = state.switches();
        let page = params
            .get("maxRecords")
            .and_then(|m| m.parse::<u64>().ok())
            .filter(|&m| m > 0)
            .unwrap_or(sw.bulk_default_page_rows.max(1));
        let first = match params.get("locator") {
            Some(l) => locator_decode(l).ok_or_else(|| {
                ApiError::new(
                    sw.invalid_query_locator_status,
                    "INVALID_QUERY_LOCATOR",
                    format!("Invalid locator: {l}"),
                )
            })?,
            None => 0,
        };
        let (url_key, next_key) = match sw.result_pages_keys {
            ResultPagesKeys::ResultUrl => ("resultUrl", "nextRecordsUrl"),
            ResultPagesKeys::ResultLink => ("resultLink", "nextRecordUrl"),
        };
        let base = format!("/services/data/{v}/jobs/query/{id}");
        let mut pages = Vec::new();
        let mut at = first;
        while pages.len() < 5 && (at < total || (total == 0 && pages.is_empty())) {
            let loc = if at == 0 {
                String::new()
            } else {
                format!("locator={}&", locator_encode(at))
            };
            pages.push(json!({url_key: format!("{base}/results?{loc}maxRecords={page}")}));
            at += page;
        }
        let done = at >= total;
        let mut body = json!({"resultPages": pages, "done": done});
        body[next_key] = if done {
            Json::Null
        } else {
            json!(format!(
                "{base}/resultPages?locator={}&maxRecords={page}",
                locator_encode(at)
            ))
        };
        Ok(json_response(StatusCode::OK, &body))
    };
    match inner() {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locators_are_opaque_base64_of_the_offset() {
        assert_eq!(locator_encode(10_000), "MTAwMDA");
        assert_eq!(locator_decode("MTAwMDA"), Some(10_000));
        assert_eq!(locator_decode("!!"), None);
    }
}
