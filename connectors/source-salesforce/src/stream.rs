//! Reading one stream: the task that runs its queries (Bulk API 2.0 jobs, REST pages, column
//! chunks of wide objects, `ContentDocumentLink` batches), converts rows, tracks the checkpoint
//! and sends RECORD, STATE, STREAM_STATUS, ESTIMATE and TRACE messages in order to the writer.

use std::collections::HashMap;

use airbyte_protocol::{
    AirbyteMessage, Clock, ConnectorError, RecordFrame, StreamDescriptor, StreamStatus, SystemClock,
};
use chrono::{DateTime, Utc};
use csv::ByteRecord;
use futures::StreamExt;
use salesforce_client::bulk::ColumnDelimiter;
use salesforce_client::rest::QueryPage;
use salesforce_client::{
    BulkJobError, Client, ErrorClass, PollConfig, QueryJobRequest, QueryOperation, QueryOptions,
};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::changes::{FirstPage, Head};
use crate::checkpoint::CheckpointTracker;
use crate::config::IsoDuration;
use crate::convert::{CsvPlan, RawRecord, RestPlan, RestWriter, parse_timestamp};
use crate::merge::{ChunkSource, DEFAULT_LOOKAHEAD, Merger, Record};
use crate::plan::{Api, StreamPlan, split_window};
use crate::rerun::RestPosition;
use crate::source::client_error;
use crate::state::{cursor_state, full_refresh_state};

/// How often a stream waiting on a Bulk job repeats its STATE (the platform's heartbeat).
pub(crate) const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// RECORD lines are handed to the writer in batches of about this many bytes (and at every
/// other message of the stream, so order is kept).
const BATCH_BYTES: usize = 128 * 1024;

/// What a stream task sends to the writer loop.
#[derive(Debug)]
pub(crate) enum Out {
    /// A message other than a RECORD (or a RECORD built as a message).
    Message(AirbyteMessage),
    /// `count` RECORD lines framed with [`RecordFrame`], each ending in a newline.
    Records { lines: Vec<u8>, count: u64 },
}

/// How a stream ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Complete,
    RateLimited,
    Failed(ConnectorError),
}

/// Shared by all stream tasks.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) client: Client,
    pub(crate) preserve_na: bool,
    pub(crate) step: IsoDuration,
    /// STATE repeat interval while a Bulk job runs ([`HEARTBEAT`]).
    pub(crate) heartbeat: std::time::Duration,
}
pub(crate) fn stream_error(err: &ConnectorError, descriptor: &StreamDescriptor) -> AirbyteMessage {
    AirbyteMessage::trace_error(
        err.failure_type(),
        err.message(),
        Some(err.internal_message()),
        Some(descriptor.clone()),
        &SystemClock,
    )
}

/// How long Salesforce counts an API call against the daily allocation: a rolling 24-hour
/// window. Salesforce does not say when the calls in it leave it.
pub(crate) const QUOTA_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// `INCOMPLETE` with the `RATE_LIMITED` reason, its `quota_reset` set to when the allocation
/// has certainly recovered from every call counted now (one rolling window later; Salesforce
/// gives no earlier instant, and calls other integrations make meanwhile are not foreseeable).
pub(crate) fn incomplete_rate_limited(
    descriptor: StreamDescriptor,
    clock: &dyn Clock,
) -> AirbyteMessage {
    let reset = clock.now_millis().saturating_add(QUOTA_WINDOW_MS);
    let mut message = AirbyteMessage::stream_rate_limited(descriptor, Some(reset), clock);
    if let AirbyteMessage::Trace { trace, .. } = &mut message
        && let Some(status) = trace.stream_status.as_mut()
    {
        status.status = StreamStatus::Incomplete;
    }
    message
}

/// Per-stream progress: counts and the checkpoint.
struct Progress<'a> {
    descriptor: StreamDescriptor,
    tx: &'a mpsc::Sender<Out>,
    /// This stream's RECORD line prefix, serialised once.
    frame: RecordFrame,
    /// RECORD lines not yet sent, and how many.
    batch: Vec<u8>,
    batched: u64,
    since_state: u64,
    total: u64,
    running: bool,
    /// Incremental: cursor field and the checkpoint reached so far.
    checkpoint: Option<(String, DateTime<Utc>)>,
    tracker: CheckpointTracker<DateTime<Utc>>,
    bad_cursor_logged: bool,
    /// Do not advance the checkpoint mid-query (rows below it may still come).
    hold: bool,
    /// The checkpoint the finished stream may claim when it is not the planned upper bound
    /// (a change check proved less).
    finish_at: Option<DateTime<Utc>>,
}

/// The writer went away (stdout closed or the run is ending): stop quietly.
#[derive(Debug)]
struct Closed;

impl<'a> Progress<'a> {
    /// Progress of the stream `descriptor` sending to `tx`, from the incremental checkpoint
    /// `(cursor field, initial value)` if any.
    fn new(
        descriptor: StreamDescriptor,
        tx: &'a mpsc::Sender<Out>,
        checkpoint: Option<(String, DateTime<Utc>)>,
    ) -> Self {
        Self {
            frame: RecordFrame::new(&descriptor.name, descriptor.namespace.as_deref()),
            descriptor,
            tx,
            batch: Vec::with_capacity(BATCH_BYTES + 4096),
            batched: 0,
            since_state: 0,
            total: 0,
            running: false,
            checkpoint,
            tracker: CheckpointTracker::new(),
            bad_cursor_logged: false,
            hold: false,
            finish_at: None,
        }
    }

    /// Starts a new ordered query: its rows are tracked afresh (the checkpoint is kept).
    fn new_query(&mut self) {
        self.tracker = CheckpointTracker::new();
    }

    /// Sends a message after the RECORD lines batched before it.
    async fn send(&mut self, message: AirbyteMessage) -> Result<(), Closed> {
        self.send_batch().await?;
        self.tx
            .send(Out::Message(message))
            .await
            .map_err(|_| Closed)
    }

    /// Hands the batched RECORD lines to the writer.
    async fn send_batch(&mut self) -> Result<(), Closed> {
        if self.batched == 0 {
            return Ok(());
        }
        let lines = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_BYTES + 4096));
        let count = std::mem::take(&mut self.batched);
        self.tx
            .send(Out::Records { lines, count })
            .await
            .map_err(|_| Closed)
    }

    /// Emits one REST row (a converted map).
    async fn record(
        &mut self,
        data: Map<String, Value>,
        cursor: Option<&str>,
    ) -> Result<(), Closed> {
        self.before_record(cursor).await?;
        self.frame.begin(&mut self.batch);
        // A map of JSON values always serialises.
        self.batch
            .extend_from_slice(Value::Object(data).to_string().as_bytes());
        self.after_record().await
    }

    /// Emits one REST record from its JSON text, converted by `writer` straight into the batch,
    /// unless `position` knows it is out already (a re-run query sends the rows at its first
    /// cursor value again).
    async fn raw_record(
        &mut self,
        writer: &mut RestWriter,
        position: &mut RestPosition,
        raw: &str,
    ) -> Result<(), StreamFailure> {
        writer.parse(raw).map_err(|e| {
            StreamFailure::Failed(ConnectorError::system(format!(
                "stream {}: Salesforce sent a query record that is not a JSON object: {e}",
                self.descriptor.name
            )))
        })?;
        let cursor = writer.cursor();
        if position.emitted(cursor, writer.key()) {
            return Ok(());
        }
        position.observe(cursor, writer.key());
        self.before_record(cursor).await?;
        self.frame.begin(&mut self.batch);
        writer.write_data(&mut self.batch);
        Ok(self.after_record().await?)
    }

    /// Emits one Bulk CSV row, converted by `plan` straight into the batch.
    async fn csv_record(
        &mut self,
        plan: &CsvPlan,
        row: &ByteRecord,
        cursor: Option<&str>,
    ) -> Result<(), Closed> {
        self.before_record(cursor).await?;
        self.frame.begin(&mut self.batch);
        plan.write_data(row, &mut self.batch);
        self.after_record().await
    }

    /// Ends the line started by a record method and sends the batch once it is full.
    async fn after_record(&mut self) -> Result<(), Closed> {
        self.frame.finish(&mut self.batch, SystemClock.now_millis());
        self.batched += 1;
        if self.batch.len() >= BATCH_BYTES {
            self.send_batch().await?;
        }
        Ok(())
    }

    /// The bookkeeping before a row: the RUNNING status, cursor tracking and counts.
    async fn before_record(&mut self, cursor: Option<&str>) -> Result<(), Closed> {
        if !self.running {
            self.running = true;
            self.send(AirbyteMessage::stream_status(
                self.descriptor.clone(),
                StreamStatus::Running,
                &SystemClock,
            ))
            .await?;
        }
        if self.checkpoint.is_some() {
            match cursor.and_then(parse_timestamp) {
                Some(ts) if !self.tracker.observe(&ts) && !self.bad_cursor_logged => {
                    self.bad_cursor_logged = true;
                    tracing::warn!(stream = %self.descriptor.name, "rows arrived out of cursor order; checkpoints wait for the end of the query");
                }
                Some(_) => {}
                // The row is emitted either way, so an unreadable cursor cannot make a
                // checkpoint unsafe; it only goes unused.
                None if !self.bad_cursor_logged => {
                    self.bad_cursor_logged = true;
                    tracing::warn!(stream = %self.descriptor.name, "a row has no readable cursor value");
                }
                None => {}
            }
        }
        self.since_state += 1;
        self.total += 1;
        Ok(())
    }

    /// Emits a STATE for what is safe now (after a page), or `finished_at` when the query is done.
    async fn state(&mut self, finished_at: Option<DateTime<Utc>>) -> Result<(), Closed> {
        let value = match &mut self.checkpoint {
            None => full_refresh_state(),
            Some((cursor, at)) => {
                let candidate = match finished_at {
                    Some(end) => Some(end),
                    None if self.hold => None,
                    None => self.tracker.safe().copied(),
                };
                if let Some(c) = candidate
                    && c > *at
                {
                    *at = c;
                }
                cursor_state(cursor, *at)
            }
        };
        let count = std::mem::take(&mut self.since_state);
        self.send(AirbyteMessage::state_stream(
            self.descriptor.clone(),
            value,
            count,
        ))
        .await
    }
}

/// Reads one stream and reports its status; returns how it ended.
pub(crate) async fn run_stream(
    ctx: &Ctx,
    plan: StreamPlan,
    head: Head,
    tx: &mpsc::Sender<Out>,
) -> Outcome {
    let descriptor = plan.descriptor.clone();
    let mut progress = Progress::new(
        descriptor.clone(),
        tx,
        plan.incremental
            .as_ref()
            .map(|i| (i.cursor.clone(), i.initial)),
    );
    let started =
        AirbyteMessage::stream_status(descriptor.clone(), StreamStatus::Started, &SystemClock);
    if progress.send(started).await.is_err() {
        return Outcome::Failed(ConnectorError::system("output closed"));
    }
    let mut plan = plan;
    let mut result = read_stream(ctx, &plan, head, &mut progress).await;
    if plan.from_catalog
        && let Err(StreamFailure::InvalidField(err)) = &result
    {
        // The catalog predates a field's removal: describe the object (one call) and go on
        // from the checkpoint reached with the fields that still exist.
        tracing::warn!(stream = %plan.name, error = %err, "a catalog field is gone from Salesforce; describing the object and reading again");
        result = match ctx.client.describe(&plan.info.name).await {
            Ok(describe) => {
                plan = plan.replanned(&describe);
                // Rows up to the tie-safe point of the failed query are out already.
                if let (Some(inc), Some(safe)) =
                    (plan.incremental.as_mut(), progress.tracker.safe())
                {
                    inc.lower = inc.lower.max(*safe);
                }
                progress.new_query();
                let head = crate::changes::first_page(&ctx.client, &plan).await;
                read_stream(ctx, &plan, head, &mut progress).await
            }
            Err(e) => Err(failure(e, &plan.name, "describing the object failed")),
        };
    }
    let closing = async {
        match result {
            Ok(()) => {
                let end = progress
                    .finish_at
                    .or(plan.incremental.as_ref().map(|i| i.upper));
                progress.state(end).await?;
                tracing::info!(stream = %plan.name, records = progress.total, "stream complete");
                progress
                    .send(AirbyteMessage::stream_status(
                        descriptor.clone(),
                        StreamStatus::Complete,
                        &SystemClock,
                    ))
                    .await?;
                Ok(Outcome::Complete)
            }
            Err(StreamFailure::RateLimited(err)) => {
                progress.state(None).await?;
                tracing::warn!(stream = %plan.name, records = progress.total, error = %err, "stream stopped by the daily API limit or the API budget");
                progress
                    .send(incomplete_rate_limited(descriptor.clone(), &SystemClock))
                    .await?;
                Ok(Outcome::RateLimited)
            }
            Err(StreamFailure::Failed(err)) => report_failure(&mut progress, err).await,
            Err(StreamFailure::InvalidField(err)) => {
                report_failure(&mut progress, invalid_field(err, &plan.name)).await
            }
            Err(StreamFailure::Timeout(err)) => {
                let what = format!("stream {}: the query timed out", plan.name);
                report_failure(&mut progress, client_error(err, &what)).await
            }
            Err(StreamFailure::Closed) => Err(Closed),
        }
    };
    match closing.await {
        Ok(outcome) => outcome,
        Err(Closed) => Outcome::Failed(ConnectorError::system("the output was closed")),
    }
}

/// Ends a failed stream: its TRACE error, then `INCOMPLETE`.
async fn report_failure(
    progress: &mut Progress<'_>,
    err: ConnectorError,
) -> Result<Outcome, Closed> {
    let descriptor = progress.descriptor.clone();
    let err = err.with_stream(descriptor.clone());
    progress.send(stream_error(&err, &descriptor)).await?;
    progress
        .send(AirbyteMessage::stream_status(
            descriptor,
            StreamStatus::Incomplete,
            &SystemClock,
        ))
        .await?;
    Ok(Outcome::Failed(err))
}

/// Why a stream stopped early.
#[derive(Debug)]
enum StreamFailure {
    RateLimited(salesforce_client::Error),
    /// Salesforce gave up on the query (`QUERY_TIMEOUT`, or a Bulk job failing for time).
    Timeout(salesforce_client::Error),
    Failed(ConnectorError),
    /// Salesforce does not know a selected field (`INVALID_FIELD`).
    InvalidField(salesforce_client::Error),
    Closed,
}

impl From<Closed> for StreamFailure {
    fn from(_: Closed) -> Self {
        Self::Closed
    }
}

fn failure(err: salesforce_client::Error, stream: &str, what: &str) -> StreamFailure {
    if err.class() == ErrorClass::RateLimited {
        StreamFailure::RateLimited(err)
    } else if is_query_timeout(&err) {
        StreamFailure::Timeout(err)
    } else if err
        .api_error()
        .is_some_and(|a| a.error_code == "INVALID_FIELD")
    {
        StreamFailure::InvalidField(err)
    } else if let Some(fix) = permission_fix(&err) {
        StreamFailure::Failed(
            ConnectorError::config(format!("stream {stream}: {what}: {err}. {fix}"))
                .with_source(err),
        )
    } else {
        StreamFailure::Failed(client_error(err, &format!("stream {stream}: {what}")))
    }
}

/// The error for a field Salesforce does not know (after a fresh describe did not help).
fn invalid_field(err: salesforce_client::Error, stream: &str) -> ConnectorError {
    let fix = permission_fix(&err).unwrap_or("Refresh the source schema");
    ConnectorError::config(format!("stream {stream}: the query failed: {err}. {fix}"))
        .with_source(err)
}

/// What the user must change for the Salesforce errors that are settings, not faults
/// (the cases Airbyte's connector names too).
fn permission_fix(err: &salesforce_client::Error) -> Option<&'static str> {
    let api = err.api_error()?;
    if api.error_code == "TXN_SECURITY_METERING_ERROR" {
        Some(
            "A Transaction Security policy blocked the query: assign the integration user the \"Exempt from Transaction Security\" permission",
        )
    } else if api.error_code == "API_ERROR" && api.message.contains("Implementation restriction") {
        Some(
            "Salesforce restricts this query for the integration user: grant it the \"View All Data\" permission, or deselect the stream",
        )
    } else if api.error_code == "INVALID_FIELD" || api.error_code == "INSUFFICIENT_ACCESS" {
        Some(
            "Grant the integration user read access to the object and its fields, then refresh the source schema",
        )
    } else {
        None
    }
}

/// Whether Salesforce stopped a query for running too long: REST `QUERY_TIMEOUT`, or a Bulk job
/// that failed with a time-out message.
fn is_query_timeout(err: &salesforce_client::Error) -> bool {
    match err {
        salesforce_client::Error::BulkJob(BulkJobError::Failed {
            error_message: Some(m),
            ..
        }) => {
            let m = m.to_ascii_lowercase();
            m.contains("query_timeout") || m.contains("too long") || m.contains("timed out")
        }
        _ => err
            .api_error()
            .is_some_and(|a| a.error_code == "QUERY_TIMEOUT"),
    }
}

/// Whether a Bulk job creation or run error means "use REST for this object" (Airbyte's list).
fn bulk_unsupported(err: &salesforce_client::Error) -> bool {
    if is_query_timeout(err) {
        return false;
    }
    if let salesforce_client::Error::BulkJob(BulkJobError::Failed { .. }) = err {
        return true;
    }
    let Some(api) = err.api_error() else {
        return false;
    };
    (api.error_code == "INVALIDENTITY" && api.message.contains("not supported by the Bulk API"))
        || api
            .message
            .contains("Selecting compound data not supported in Bulk Query")
        // A field Bulk cannot put in a CSV cell (`complexvalue`; salesforce-api.md §5.1): REST
        // returns it, where Airbyte's source fails the stream.
        || api.message.contains("Cannot serialize value for")
        || (api.status == 400
            && api
                .message
                .trim_end_matches('.')
                .ends_with("does not support query"))
}

async fn read_stream(
    ctx: &Ctx,
    plan: &StreamPlan,
    head: Head,
    progress: &mut Progress<'_>,
) -> Result<(), StreamFailure> {
    if plan.info.name == CONTENT_DOCUMENT_LINK {
        tracing::info!(stream = %plan.name, "reading through REST, as many parent ContentDocument ids per query as its URI carries");
        return read_content_document_links(ctx, plan, progress).await;
    }
    let head = match head {
        Head::QueryFailed(err) if err.error_code == "INVALID_FIELD" => {
            return Err(StreamFailure::InvalidField(salesforce_client::Error::Api {
                context: "queryAll (in /composite)".to_owned(),
                source: Box::new(err),
            }));
        }
        other => other,
    };
    let mut api = plan.api;
    if !matches!(head, Head::FirstPage(_)) {
        tracing::info!(stream = %plan.name, api = ?plan.api, reason = %plan.api_reason, "reading stream");
    }
    let Some(inc) = &plan.incremental else {
        let result = match head {
            Head::FirstPage(first) => {
                let key = plan.info.primary_key.as_deref().unwrap_or("Id");
                let last = first
                    .page
                    .records
                    .last()
                    .and_then(|r| r.get(key))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                match (
                    continue_rest(ctx, plan, first, progress, &mut None).await?,
                    last,
                ) {
                    (false, _) => Ok(()),
                    (true, Some(last)) => {
                        read_full_refresh_after(ctx, plan, key, &last, progress).await
                    }
                    (true, None) => Err(StreamFailure::Failed(ConnectorError::system(format!(
                        "stream {}: a query page came without {key} values",
                        plan.name
                    )))),
                }
            }
            _ => read_range(ctx, plan, &mut api, None, progress).await,
        };
        return match result {
            Err(StreamFailure::Timeout(err)) => Err(StreamFailure::Failed(client_error(
                err,
                &format!("stream {}: the full-refresh query timed out", plan.name),
            ))),
            other => other,
        };
    };
    if inc.lower >= inc.upper {
        tracing::info!(stream = %plan.name, "nothing to read: the range is empty");
        return Ok(());
    }
    // One query for the whole range; only a query Salesforce gives up on is split (see
    // `split_window`), resuming from the checkpoint reached.
    let mut windows = std::collections::VecDeque::from([(inc.lower, inc.upper)]);
    match head {
        // Anything else is worth the stream's own attempt (with the client's retries).
        Head::Read | Head::QueryFailed(_) => {}
        Head::Unchanged { covered } => {
            tracing::info!(stream = %plan.name, %covered, "Salesforce reports no row changed or deleted since the last sync; nothing to query");
            progress.finish_at = Some(covered);
            return Ok(());
        }
        Head::FirstPage(first) => {
            let mut held_back = None;
            if !continue_rest(ctx, plan, first, progress, &mut held_back).await? {
                return Ok(());
            }
            // Every row below the page's held-back last cursor value is out and none at or above
            // it, so Bulk reads from that value on: nothing is emitted twice. Without one (no
            // cursor values on the page), every row up to the tie-safe point is out.
            let from = match held_back {
                Some(value) => value.max(inc.lower),
                None => progress
                    .tracker
                    .safe()
                    .map_or(inc.lower, |safe| (*safe).max(inc.lower)),
            };
            windows = std::collections::VecDeque::from([(from, inc.upper)]);
            api = Api::Bulk;
        }
    }
    while let Some((lower, upper)) = windows.pop_front() {
        progress.new_query();
        match read_range(ctx, plan, &mut api, Some((lower, upper)), progress).await {
            Ok(()) => {
                if !windows.is_empty() {
                    progress.state(Some(upper)).await?;
                }
            }
            Err(StreamFailure::Timeout(err)) => {
                // Resume where this query's rows are safely out: the tie-safe point, not the
                // stream checkpoint (that may sit above `lower` by the lookback window).
                let from = progress
                    .tracker
                    .safe()
                    .map_or(lower, |safe| (*safe).max(lower));
                let pieces = split_window(from, upper, ctx.step);
                if pieces.is_empty() {
                    return Err(StreamFailure::Failed(client_error(
                        err,
                        &format!(
                            "stream {}: the query timed out even for a window of {}",
                            plan.name,
                            upper - from
                        ),
                    )));
                }
                tracing::warn!(
                    stream = %plan.name,
                    error = %err,
                    windows = pieces.len(),
                    "Salesforce timed out the query; reading the rest of the range in smaller windows"
                );
                for piece in pieces.into_iter().rev() {
                    windows.push_front(piece);
                }
            }
            Err(other) => return Err(other),
        }
    }
    Ok(())
}

/// Above this many rows still to read, a Bulk job (create, a few polls, one result page per
/// [`BULK_PAGE_ROWS`]) costs fewer API calls than REST pages of 2,000 rows.
const REST_MAX_ROWS: u64 = 10_000;

/// Rows per Bulk result page asked for (`maxRecords`): few, large pages.
const BULK_PAGE_ROWS: u64 = 250_000;

/// Emits an incremental stream's first REST page (fetched in a batch before the stream started)
/// and chooses, from the row count Salesforce announced with it, how to read the rest: more
/// REST pages for a small delta (returns `false` once done), or Bulk for a large one (returns
/// `true`; the caller reads the range above the tie-safe checkpoint reached).
async fn continue_rest(
    ctx: &Ctx,
    plan: &StreamPlan,
    first: FirstPage,
    progress: &mut Progress<'_>,
    held_back: &mut Option<DateTime<Utc>>,
) -> Result<bool, StreamFailure> {
    let FirstPage { page, slot } = first;
    let mut slot = slot;
    let remaining = page.total_size.saturating_sub(page.records.len() as u64);
    let bulk_rest = !page.done && plan.api == Api::Bulk && remaining > REST_MAX_ROWS;
    tracing::info!(
        stream = %plan.name,
        expected_rows = page.total_size,
        api = if bulk_rest { "Bulk" } else { "REST" },
        reason = if bulk_rest {
            "many rows: a Bulk job costs fewer API calls than REST pages"
        } else if plan.api == Api::Rest {
            plan.api_reason.as_str()
        } else {
            "few rows: REST pages cost fewer API calls than a Bulk job"
        },
        "reading stream"
    );
    let rest_plan = RestPlan::new(plan.emit.clone());
    let cursor = plan.incremental.as_ref().map(|i| i.cursor.clone());
    let mut page = page;
    if bulk_rest && let Some(c) = cursor.as_deref() {
        // The page's last cursor value may go on past the page. Before handing the rest to a
        // Bulk job, hold its rows back (the page is ordered by the cursor, so they end it): the
        // job reads from that value on and emits them once.
        let value = |r: &Record| r.get(c).and_then(Value::as_str).and_then(parse_timestamp);
        if let Some(last) = page.records.last().and_then(value) {
            page.records.retain(|r| value(r).is_none_or(|v| v < last));
            *held_back = Some(last);
        }
    }
    let next = next_page_url(plan, &mut page)?;
    // The page came from the stream's one REST statement over its whole range (`head_query`).
    let mut position = rest_position(plan, &plan.soql(Api::Rest), plan_window(plan));
    for record in std::mem::take(&mut page.records) {
        position.observe_record(&record);
        emit_rest(progress, &rest_plan, cursor.as_deref(), record).await?;
    }
    // The batch may fetch another first page in its place.
    drop(slot.take());
    progress.state(None).await?;
    if bulk_rest {
        return Ok(true);
    }
    if let Some(url) = next {
        read_rest_from(ctx, plan, RestRequest::More(url), &mut position, progress).await?;
    }
    Ok(false)
}

/// The planned window of an incremental stream.
fn plan_window(plan: &StreamPlan) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    plan.incremental.as_ref().map(|i| (i.lower, i.upper))
}

/// Where a REST statement `soql` of the stream (over `window` for an incremental one) stands
/// before its first row: ordered by cursor then key, by key, or (no key) not re-runnable.
fn rest_position(
    plan: &StreamPlan,
    soql: &str,
    window: Option<(DateTime<Utc>, DateTime<Utc>)>,
) -> RestPosition {
    let object = &plan.info.name;
    match (&plan.info.primary_key, &plan.incremental, window) {
        (Some(key), Some(inc), Some((_, upper))) => {
            RestPosition::by_cursor(soql, object, &inc.cursor, key, upper)
        }
        (Some(key), None, _) => RestPosition::by_key(soql, object, key, None),
        _ => RestPosition::unordered(soql, object),
    }
}

/// The next REST call of a query.
enum RestRequest {
    /// Run a statement (its first page).
    Query(String),
    /// Follow a `nextRecordsUrl`.
    More(String),
}

/// Reads a REST query's pages from `request` to its end, each record converted straight from
/// its JSON text, with a STATE after every page. When Salesforce loses the query's locator (a
/// page broke off mid-transfer, or `INVALID_QUERY_LOCATOR`), the query runs again for the
/// rows `position` has not seen emitted: no row lost, none emitted twice.
async fn read_rest_from(
    ctx: &Ctx,
    plan: &StreamPlan,
    request: RestRequest,
    position: &mut RestPosition,
    progress: &mut Progress<'_>,
) -> Result<(), StreamFailure> {
    let cursor = plan.incremental.as_ref().map(|i| i.cursor.as_str());
    let key = plan.info.primary_key.as_deref().unwrap_or("Id");
    let mut writer = RestWriter::new(plan.emit.clone(), cursor).with_key(key);
    let mut next = Some(request);
    while let Some(request) = next.take() {
        let answer = match &request {
            RestRequest::Query(soql) => {
                tracing::debug!(stream = %plan.name, %soql, "REST queryAll");
                ctx.client
                    .query_page::<RawRecord>(soql, QueryOptions::query_all())
                    .await
            }
            RestRequest::More(url) => {
                ctx.client
                    .query_more::<RawRecord>(url, QueryOptions::query_all())
                    .await
            }
        };
        let mut page = match answer {
            Ok(page) => page,
            Err(err) if err.is_query_locator_lost() => match position.rerun() {
                Ok(soql) => {
                    tracing::warn!(stream = %plan.name, error = %err, "Salesforce lost the query's locator; running the query again from the last row received");
                    next = Some(RestRequest::Query(soql));
                    continue;
                }
                Err(why) => {
                    let what = format!(
                        "stream {}: Salesforce lost the REST query's locator and the query cannot be run again for the rest of its rows ({why})",
                        plan.name
                    );
                    return Err(StreamFailure::Failed(client_error(err, &what)));
                }
            },
            Err(err) => return Err(failure(err, &plan.name, "REST query failed")),
        };
        next = next_page_url(plan, &mut page)?.map(RestRequest::More);
        for record in &page.records {
            progress
                .raw_record(&mut writer, position, record.get())
                .await?;
        }
        progress.state(None).await?;
    }
    Ok(())
}

/// The `nextRecordsUrl` of a page that is not the last (taken from it); `None` after the last.
fn next_page_url<T>(
    plan: &StreamPlan,
    page: &mut QueryPage<T>,
) -> Result<Option<String>, StreamFailure> {
    if page.done {
        return Ok(None);
    }
    match page.next_records_url.take() {
        Some(url) => Ok(Some(url)),
        None => Err(StreamFailure::Failed(ConnectorError::system(format!(
            "stream {}: Salesforce answered a query page with done=false but no nextRecordsUrl",
            plan.name
        )))),
    }
}

/// Reads the rest of a full refresh whose first REST page (ordered by `key`, ending at `last`)
/// is out: one Bulk job over `key > last`, or REST pages when Bulk cannot serve the object.
async fn read_full_refresh_after(
    ctx: &Ctx,
    plan: &StreamPlan,
    key: &str,
    last: &str,
    progress: &mut Progress<'_>,
) -> Result<(), StreamFailure> {
    let soql = plan.soql_after_key(Api::Bulk, key, last);
    match read_bulk(ctx, plan, soql, progress).await {
        Ok(()) => Ok(()),
        Err(BulkFailure::Other(f)) => Err(f),
        Err(BulkFailure::Unsupported(err)) => {
            tracing::warn!(stream = %plan.name, error = %err, "Bulk API cannot read this object; reading the rest through REST instead");
            let soql = plan.soql_after_key(Api::Rest, key, last);
            read_rest_pages(ctx, plan, &soql, None, progress).await
        }
    }
}

/// Reads one query (the whole stream, or one window of an incremental stream) with `api`,
/// switching `api` to REST for good when Bulk API cannot serve the object.
async fn read_range(
    ctx: &Ctx,
    plan: &StreamPlan,
    api: &mut Api,
    window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    progress: &mut Progress<'_>,
) -> Result<(), StreamFailure> {
    match *api {
        Api::Rest => read_rest(ctx, plan, window, progress).await,
        Api::Bulk => {
            match read_bulk(ctx, plan, plan.soql_window(Api::Bulk, window), progress).await {
                Err(BulkFailure::Unsupported(err)) => {
                    tracing::warn!(stream = %plan.name, error = %err, "Bulk API cannot read this object; reading it through REST instead");
                    *api = Api::Rest;
                    read_rest(ctx, plan, window, progress).await
                }
                Err(BulkFailure::Other(f)) => Err(f),
                Ok(()) => Ok(()),
            }
        }
    }
}

enum BulkFailure {
    Unsupported(salesforce_client::Error),
    Other(StreamFailure),
}

impl From<StreamFailure> for BulkFailure {
    fn from(f: StreamFailure) -> Self {
        Self::Other(f)
    }
}

impl From<Closed> for BulkFailure {
    fn from(_: Closed) -> Self {
        Self::Other(StreamFailure::Closed)
    }
}

async fn read_bulk(
    ctx: &Ctx,
    plan: &StreamPlan,
    soql: String,
    progress: &mut Progress<'_>,
) -> Result<(), BulkFailure> {
    let client = &ctx.client;
    tracing::debug!(stream = %plan.name, %soql, "Bulk API query");
    let request = QueryJobRequest::new(QueryOperation::QueryAll, soql);
    let job = match client.bulk_query_create(&request).await {
        Ok(job) => job,
        Err(err) if bulk_unsupported(&err) => return Err(BulkFailure::Unsupported(err)),
        Err(err) => {
            return Err(failure(err, &plan.name, "creating the Bulk API query job failed").into());
        }
    };
    // While Salesforce works on the job nothing flows; the platform counts only RECORD and
    // STATE as heartbeats, so the current checkpoint is repeated every few minutes.
    let poll = PollConfig::default();
    let wait = client.bulk_query_wait(&job.id, &poll);
    futures::pin_mut!(wait);
    let mut heartbeat = tokio::time::interval(ctx.heartbeat);
    heartbeat.tick().await;
    let waited = loop {
        tokio::select! {
            done = &mut wait => break done,
            _ = heartbeat.tick() => progress.state(None).await?,
        }
    };
    let info = match waited {
        Ok(info) => info,
        // A failed job stores no results: deleting it would only spend a call.
        Err(err) if bulk_unsupported(&err) => return Err(BulkFailure::Unsupported(err)),
        Err(err) => {
            return Err(failure(err, &plan.name, "the Bulk API query job did not complete").into());
        }
    };
    if let Some(rows) = info.number_records_processed {
        let rows = i64::try_from(rows).unwrap_or(i64::MAX);
        progress
            .send(AirbyteMessage::estimate(
                progress.descriptor.clone(),
                Some(rows.saturating_add(i64::try_from(progress.total).unwrap_or(i64::MAX))),
                None,
                &SystemClock,
            ))
            .await?;
    }
    let outcome = read_bulk_results(ctx, plan, &job.id, progress).await;
    // A DELETE is an API call too, so it is spent only where it buys something: a job that
    // produced rows holds a copy of the org's data on Salesforce's side (readable by job id for
    // up to 7 days), which we remove once read (a resumed run queries again anyway). A job that
    // matched no rows stores nothing and is left to Salesforce's 7-day cleanup. A stopped output
    // is the other exception: the process is going away.
    let produced_rows = info.number_records_processed.is_none_or(|n| n > 0);
    if produced_rows && !matches!(outcome, Err(StreamFailure::Closed)) {
        delete_job(client, &job.id).await;
    }
    outcome.map_err(BulkFailure::Other)
}

/// Streams a completed job's result pages into records, with a STATE after every page.
async fn read_bulk_results(
    ctx: &Ctx,
    plan: &StreamPlan,
    job_id: &str,
    progress: &mut Progress<'_>,
) -> Result<(), StreamFailure> {
    let mut results = ctx
        .client
        .bulk_query_results(job_id, ColumnDelimiter::Comma, Some(BULK_PAGE_ROWS))
        .map_err(|e| failure(e, &plan.name, "reading Bulk API results failed"))?;
    let components = plan.components();
    let cursor = plan.incremental.as_ref().map(|i| i.cursor.as_str());
    let mut row = ByteRecord::new();
    loop {
        let more = results
            .next_page()
            .await
            .map_err(|e| failure(e, &plan.name, "reading Bulk API results failed"))?;
        if !more {
            break;
        }
        let header = results.header().clone();
        let csv_plan = CsvPlan::new(&header, &plan.emit, &components, ctx.preserve_na);
        let cursor_index = cursor.and_then(|c| header.iter().position(|h| h == c.as_bytes()));
        loop {
            let got = results
                .read_record(&mut row)
                .await
                .map_err(|e| failure(e, &plan.name, "reading Bulk API results failed"))?;
            if !got {
                break;
            }
            let cursor_text = cursor_index
                .and_then(|i| row.get(i))
                .and_then(|b| std::str::from_utf8(b).ok());
            progress.csv_record(&csv_plan, &row, cursor_text).await?;
        }
        progress.state(None).await?;
    }
    Ok(())
}

async fn delete_job(client: &Client, job_id: &str) {
    if let Err(err) = client.bulk_query_delete(job_id).await {
        tracing::debug!(job_id, error = %err, "could not delete the Bulk API job (Salesforce removes it after 7 days)");
    }
}

async fn read_rest(
    ctx: &Ctx,
    plan: &StreamPlan,
    window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    progress: &mut Progress<'_>,
) -> Result<(), StreamFailure> {
    let client = &ctx.client;
    let fields = plan.select_fields(Api::Rest);
    let field_refs: Vec<&str> = fields.iter().map(String::as_str).collect();
    let key = plan.info.primary_key.as_deref().unwrap_or("Id");
    let soql = plan.soql_window(Api::Rest, window);
    let tail = soql
        .find(&format!(" FROM {}", plan.info.name))
        .map(|i| soql[i + " FROM ".len() + plan.info.name.len()..].to_owned())
        .unwrap_or_default();
    let statements = client
        .split_select(&plan.info.name, &field_refs, key, &tail, true)
        .await
        .map_err(|e| failure(e, &plan.name, "preparing the REST query failed"))?;
    if statements.len() > 1 {
        if plan.info.primary_key.is_none() {
            return Err(StreamFailure::Failed(ConnectorError::system(format!(
                "stream {}: the selected fields do not fit in one REST query URL and the object has no Id to join several queries on; deselect fields in the catalog",
                plan.name
            ))));
        }
        return read_rest_chunked(ctx, plan, window, key, statements, progress).await;
    }
    read_rest_pages(ctx, plan, &soql, window, progress).await
}

/// Reads every page of one REST `queryAll` statement of the stream (over `window` for an
/// incremental one); see [`read_rest_from`].
async fn read_rest_pages(
    ctx: &Ctx,
    plan: &StreamPlan,
    soql: &str,
    window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    progress: &mut Progress<'_>,
) -> Result<(), StreamFailure> {
    let mut position = rest_position(plan, soql, window);
    read_rest_from(
        ctx,
        plan,
        RestRequest::Query(soql.to_owned()),
        &mut position,
        progress,
    )
    .await
}

async fn emit_rest(
    progress: &mut Progress<'_>,
    rest_plan: &RestPlan,
    cursor: Option<&str>,
    record: Record,
) -> Result<(), Closed> {
    let cursor_text = cursor
        .and_then(|c| record.get(c))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let data = rest_plan.convert(record);
    progress.record(data, cursor_text.as_deref()).await
}

/// One REST query's records (a column chunk's, a list of parents, ...) as a [`ChunkSource`]:
/// a query whose locator Salesforce loses runs again for the rows `position` has not seen
/// (when its order allows; else the error is returned).
struct PageSource {
    client: Client,
    pages: std::pin::Pin<
        Box<dyn futures::Stream<Item = salesforce_client::Result<QueryPage<Record>>> + Send>,
    >,
    buffered: std::vec::IntoIter<Record>,
    position: RestPosition,
}

impl PageSource {
    fn new(client: &Client, soql: &str, position: RestPosition) -> Self {
        Self {
            client: client.clone(),
            pages: Box::pin(client.query_pages::<Record>(soql, QueryOptions::query_all())),
            buffered: Vec::new().into_iter(),
            position,
        }
    }
}

impl ChunkSource for PageSource {
    type Error = salesforce_client::Error;

    async fn next_record(&mut self) -> Result<Option<Record>, Self::Error> {
        loop {
            if let Some(record) = self.buffered.next() {
                if self.position.emitted_record(&record) {
                    continue;
                }
                self.position.observe_record(&record);
                return Ok(Some(record));
            }
            match self.pages.next().await {
                Some(Ok(page)) => self.buffered = page.records.into_iter(),
                Some(Err(err)) if err.is_query_locator_lost() => match self.position.rerun() {
                    Ok(soql) => {
                        tracing::warn!(error = %err, "Salesforce lost the query's locator; running the query again from the last row received");
                        self.pages = Box::pin(
                            self.client
                                .query_pages::<Record>(&soql, QueryOptions::query_all()),
                        );
                    }
                    Err(why) => {
                        tracing::warn!(error = %err, "the query cannot be run again for the rest of its rows: {why}");
                        return Err(err);
                    }
                },
                Some(Err(err)) => return Err(err),
                None => return Ok(None),
            }
        }
    }
}

/// Rows between STATE messages when a wide object is read in column chunks.
const CHUNKED_STATE_EVERY: u64 = 2_000;

/// Reads a wide object through REST as several column-chunk queries joined by `key`.
async fn read_rest_chunked(
    ctx: &Ctx,
    plan: &StreamPlan,
    window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    key: &str,
    statements: Vec<String>,
    progress: &mut Progress<'_>,
) -> Result<(), StreamFailure> {
    tracing::info!(stream = %plan.name, queries = statements.len(), "the selected fields need several REST queries; joining them by {key}");
    let rest_plan = RestPlan::new(plan.emit.clone());
    let cursor = plan.incremental.as_ref().map(|i| i.cursor.clone());
    let sources = statements
        .iter()
        .map(|soql| PageSource::new(&ctx.client, soql, rest_position(plan, soql, window)))
        .collect();
    let mut merger = Merger::new(sources, key, DEFAULT_LOOKAHEAD);
    let mut since_state = 0u64;
    loop {
        let next = merger
            .next()
            .await
            .map_err(|e| failure(e, &plan.name, "REST query failed"))?;
        let Some(record) = next else { break };
        emit_rest(progress, &rest_plan, cursor.as_deref(), record).await?;
        since_state += 1;
        if since_state >= CHUNKED_STATE_EVERY {
            since_state = 0;
            // A row still to be fetched again may lie below the checkpoint: hold it.
            progress.hold = merger.has_leftovers();
            progress.state(None).await?;
        }
    }
    progress.hold = merger.has_leftovers();
    progress.state(None).await?;
    let leftovers = merger.leftovers();
    if leftovers.is_empty() {
        return Ok(());
    }
    tracing::info!(stream = %plan.name, rows = leftovers.len(), "rows changed while the column chunks were read; fetching them again by {key}");
    progress.new_query();
    let ids: Vec<String> = leftovers.into_iter().collect();
    let fields = plan.select_fields(Api::Rest);
    let field_refs: Vec<&str> = fields.iter().map(String::as_str).collect();
    let mut found = 0usize;
    for batch in ids.chunks(REFETCH_BATCH) {
        let list: Vec<String> = batch
            .iter()
            .map(|id| salesforce_client::soql::quote(id))
            .collect();
        let mut condition = format!("{key} IN ({})", list.join(","));
        if let (Some(inc), Some((lower, upper))) = (&plan.incremental, window) {
            let c = &inc.cursor;
            condition = format!(
                "{c} >= {} AND {c} < {} AND {condition}",
                salesforce_client::soql::datetime_literal(lower),
                salesforce_client::soql::datetime_literal(upper)
            );
        }
        let tail = format!(" WHERE {condition}");
        let statements = ctx
            .client
            .split_select(&plan.info.name, &field_refs, key, &tail, true)
            .await
            .map_err(|e| failure(e, &plan.name, "preparing the REST query failed"))?;
        let mut parts: HashMap<String, (usize, Record)> = HashMap::new();
        for soql in &statements {
            // A few rows by key: one page, no locator to lose.
            let position = RestPosition::unordered(soql, &plan.info.name);
            let mut source = PageSource::new(&ctx.client, soql, position);
            while let Some(part) = source
                .next_record()
                .await
                .map_err(|e| failure(e, &plan.name, "REST query failed"))?
            {
                let Some(id) = part.get(key).and_then(Value::as_str).map(str::to_owned) else {
                    continue;
                };
                let entry = parts.entry(id).or_insert_with(|| (0, Record::new()));
                entry.0 += 1;
                for (k, v) in part {
                    entry.1.entry(k).or_insert(v);
                }
            }
        }
        for id in batch {
            if let Some((n, record)) = parts.remove(id)
                && n == statements.len()
            {
                found += 1;
                emit_rest(progress, &rest_plan, cursor.as_deref(), record).await?;
            }
        }
    }
    progress.hold = false;
    progress.state(None).await?;
    tracing::info!(
        stream = %plan.name,
        fetched = found,
        gone = ids.len() - found,
        "re-fetched rows; the others left the range (they are read where they moved to) or were deleted"
    );
    Ok(())
}

/// Salesforce answers a query on this object only with a filter on one parent id or a list of
/// them, so it is read per batch of `ContentDocument` ids, as Airbyte's connector does.
const CONTENT_DOCUMENT_LINK: &str = "ContentDocumentLink";

/// Most parent ids per `ContentDocumentLink` query. Airbyte's connector sends 200; we send as
/// many as fit in one query URI (about 500 18-character ids), so a run spends about 2.5 times
/// fewer calls on the link queries. The cap only bounds the id buffer.
const PARENT_BATCH_MAX: usize = 1_000;

/// The `ContentDocumentLink` query for one batch of parent document ids.
pub fn content_document_link_soql(fields: &[String], parents: &[String]) -> String {
    format!(
        "SELECT {} FROM {CONTENT_DOCUMENT_LINK}{}",
        fields.join(","),
        content_document_link_filter(parents)
    )
}

/// ` WHERE ContentDocumentId IN (...)` for `parents`.
fn content_document_link_filter(parents: &[String]) -> String {
    let ids: Vec<String> = parents
        .iter()
        .map(|id| salesforce_client::soql::quote(id))
        .collect();
    format!(" WHERE ContentDocumentId IN ({})", ids.join(","))
}

/// How many of `parents` (at least one) one `ContentDocumentLink` query can carry within the
/// query URI limit: the largest prefix whose statement fits.
async fn parents_that_fit(
    client: &Client,
    fields: &[&str],
    parents: &[String],
) -> salesforce_client::Result<usize> {
    let fits = |n: usize| {
        let tail = content_document_link_filter(&parents[..n]);
        async move {
            match client
                .split_select(CONTENT_DOCUMENT_LINK, fields, "Id", &tail, true)
                .await
            {
                Ok(statements) => Ok(statements.len() == 1),
                Err(salesforce_client::Error::UriTooLong { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        }
    };
    if fits(parents.len()).await? {
        return Ok(parents.len());
    }
    // fits(lo) holds (or lo == 1, which is tried as it is), fits(hi) does not.
    let (mut lo, mut hi) = (1usize, parents.len());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid).await? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// Reads `ContentDocumentLink` (full refresh): every `ContentDocument` id (deleted ones too),
/// then the links of as many parents as one query URI carries, query after query.
async fn read_content_document_links(
    ctx: &Ctx,
    plan: &StreamPlan,
    progress: &mut Progress<'_>,
) -> Result<(), StreamFailure> {
    let fields = plan.select_fields(Api::Rest);
    let field_refs: Vec<&str> = fields.iter().map(String::as_str).collect();
    let rest_plan = RestPlan::new(plan.emit.clone());
    let parents_soql = "SELECT Id FROM ContentDocument ORDER BY Id ASC";
    let mut parents = PageSource::new(
        &ctx.client,
        parents_soql,
        RestPosition::by_key(parents_soql, "ContentDocument", "Id", None),
    );
    let mut pending: Vec<String> = Vec::with_capacity(PARENT_BATCH_MAX);
    let mut done = false;
    while !done || !pending.is_empty() {
        while !done && pending.len() < PARENT_BATCH_MAX {
            let parent = parents
                .next_record()
                .await
                .map_err(|e| failure(e, &plan.name, "listing ContentDocument ids failed"))?;
            match parent {
                Some(p) => {
                    if let Some(id) = p.get("Id").and_then(Value::as_str) {
                        pending.push(id.to_owned());
                    }
                }
                None => done = true,
            }
        }
        if pending.is_empty() {
            break;
        }
        let n = parents_that_fit(&ctx.client, &field_refs, &pending)
            .await
            .map_err(|e| failure(e, &plan.name, "preparing the REST query failed"))?;
        let batch: Vec<String> = pending.drain(..n).collect();
        let soql = content_document_link_soql(&fields, &batch);
        tracing::debug!(stream = %plan.name, parents = batch.len(), "ContentDocumentLink query");
        // Not re-runnable (ContentDocumentLink takes only an `=` / `IN` filter on its parents;
        // an `ORDER BY Id` with `Id >` is not known to be accepted): a lost locator fails the
        // stream, and the next run reads it again.
        let position = RestPosition::unordered(&soql, CONTENT_DOCUMENT_LINK);
        let mut links = PageSource::new(&ctx.client, &soql, position);
        while let Some(link) = links
            .next_record()
            .await
            .map_err(|e| failure(e, &plan.name, "REST query failed"))?
        {
            emit_rest(progress, &rest_plan, None, link).await?;
        }
        progress.state(None).await?;
    }
    Ok(())
}

/// Keys per `IN (...)` list when re-fetching rows.
const REFETCH_BATCH: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;
    use salesforce_client::ApiError;

    #[test]
    fn rate_limited_status_names_the_quota_reset() {
        let descriptor = StreamDescriptor {
            name: "Account".into(),
            namespace: None,
        };
        let message = incomplete_rate_limited(descriptor, &airbyte_protocol::FixedClock(1_000));
        let json = serde_json::to_value(&message).unwrap();
        let status = &json["trace"]["stream_status"];
        assert_eq!(status["status"], "INCOMPLETE");
        assert_eq!(status["reasons"][0]["type"], "RATE_LIMITED");
        assert_eq!(
            status["reasons"][0]["rate_limited"]["quota_reset"],
            serde_json::json!(1_000 + 86_400_000)
        );
    }

    #[test]
    fn timeouts_are_recognised() {
        let failed = |m: &str| {
            salesforce_client::Error::BulkJob(BulkJobError::Failed {
                job_id: "750".into(),
                error_message: Some(m.into()),
            })
        };
        assert!(is_query_timeout(&failed(
            "Your query request was running for too long."
        )));
        assert!(!bulk_unsupported(&failed(
            "Your query request was running for too long."
        )));
        assert!(!is_query_timeout(&failed(
            "InvalidBatch : Entity is not supported"
        )));
    }

    #[test]
    fn content_document_links_are_queried_by_parent_batch() {
        let fields = vec!["Id".to_owned(), "LinkedEntityId".to_owned()];
        let soql = content_document_link_soql(&fields, &["069A".to_owned(), "069'B".to_owned()]);
        assert_eq!(
            soql,
            r"SELECT Id,LinkedEntityId FROM ContentDocumentLink WHERE ContentDocumentId IN ('069A','069\'B')"
        );
    }

    #[test]
    fn settings_errors_name_the_fix() {
        let api = |code: &str, message: &str| salesforce_client::Error::Api {
            context: "POST jobs/query".into(),
            source: Box::new(ApiError {
                status: 400,
                error_code: code.into(),
                message: message.into(),
                fields: vec![],
            }),
        };
        let cases = [
            (
                api("TXN_SECURITY_METERING_ERROR", "blocked"),
                "Exempt from Transaction Security",
            ),
            (
                api(
                    "API_ERROR",
                    "Implementation restriction: Foo requires a filter",
                ),
                "View All Data",
            ),
            (api("INVALID_FIELD", "No such column 'X__c'"), "read access"),
        ];
        for (err, fix) in cases {
            match failure(err, "Foo", "query failed") {
                StreamFailure::Failed(e) => {
                    assert_eq!(e.failure_type(), airbyte_protocol::FailureType::ConfigError);
                    assert!(e.message().contains(fix), "{}", e.message());
                }
                StreamFailure::InvalidField(err) => {
                    let e = invalid_field(err, "Foo");
                    assert_eq!(e.failure_type(), airbyte_protocol::FailureType::ConfigError);
                    assert!(e.message().contains(fix), "{}", e.message());
                }
                other => panic!("{other:?}"),
            }
        }
        // Other errors keep the client's classification and carry no permission hint.
        match failure(api("MALFORMED_QUERY", "bad"), "Foo", "query failed") {
            StreamFailure::Failed(e) => {
                assert!(!e.message().contains("Grant") && !e.message().contains("assign"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bulk_fallback_errors() {
        let api = |status: u16, code: &str, message: &str| salesforce_client::Error::Api {
            context: "POST jobs/query".into(),
            source: Box::new(ApiError {
                status,
                error_code: code.into(),
                message: message.into(),
                fields: vec![],
            }),
        };
        assert!(bulk_unsupported(&api(
            400,
            "INVALIDENTITY",
            "Entity 'X' is not supported by the Bulk API."
        )));
        assert!(bulk_unsupported(&api(
            400,
            "API_ERROR",
            "Selecting compound data not supported in Bulk Query"
        )));
        assert!(bulk_unsupported(&api(
            400,
            "INVALIDJOB",
            "Entity X does not support query"
        )));
        assert!(!bulk_unsupported(&api(
            400,
            "INVALID_FIELD",
            "No such column 'Foo'"
        )));
        assert!(!bulk_unsupported(&api(
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded."
        )));
        let failed = salesforce_client::Error::BulkJob(BulkJobError::Failed {
            job_id: "750".into(),
            error_message: None,
        });
        assert!(bulk_unsupported(&failed));
    }
}

/// The REST column-chunk join against the emulator, in process (the emulator has no object wide
/// enough to need it through the binary).
#[cfg(test)]
mod chunk_tests {
    use super::*;
    use crate::config::Config;
    use crate::config::RawConfig;
    use crate::plan::plan_stream;
    use crate::source::{Rotation, build_client};
    use airbyte_protocol::{ConfiguredAirbyteStream, JsonObject};
    use serde_json::json;
    use std::collections::BTreeMap;

    async fn collect(mut rx: mpsc::Receiver<Out>) -> Vec<AirbyteMessage> {
        let mut out = Vec::new();
        while let Some(m) = rx.recv().await {
            match m {
                Out::Message(m) => out.push(m),
                Out::Records { lines, count } => {
                    let before = out.len();
                    for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                        out.push(serde_json::from_slice(line).unwrap());
                    }
                    assert_eq!(out.len() - before, count as usize);
                }
            }
        }
        out
    }

    fn records(messages: &[AirbyteMessage]) -> BTreeMap<String, JsonObject> {
        messages
            .iter()
            .filter_map(|m| match m {
                AirbyteMessage::Record { record, .. } => Some((
                    record.data["Id"].as_str().unwrap_or_default().to_owned(),
                    record.data.clone(),
                )),
                _ => None,
            })
            .collect()
    }

    /// A stream of an emulator org, described and planned the way `read` plans it, with a client
    /// and the read context (default heartbeat).
    struct Planned {
        client: Client,
        plan: StreamPlan,
        ctx: Ctx,
    }

    async fn planned(
        org: &salesforce_emulator::Handle,
        object: &str,
        sync_mode: &str,
        destination_sync_mode: &str,
    ) -> Planned {
        let raw = json!({"client_id": "emulator-client-id", "client_secret": "emulator-client-secret",
                         "refresh_token": "emulator-refresh-token", "login_url": org.base_url,
                         "start_date": "2015-01-01"});
        let config = Config::from_raw(
            RawConfig::from_json(raw.as_object().unwrap()).unwrap(),
            Utc::now(),
        )
        .unwrap();
        let client = build_client(&config, &Rotation::new(JsonObject::new())).unwrap();
        let describe = client.describe(object).await.unwrap();
        let configured: ConfiguredAirbyteStream = serde_json::from_value(json!({
            "stream": {"name": object, "json_schema": {"type": "object", "properties": {}},
                       "supported_sync_modes": ["full_refresh", "incremental"]},
            "sync_mode": sync_mode, "destination_sync_mode": destination_sync_mode
        }))
        .unwrap();
        let plan = plan_stream(&configured, &describe, &config, None, Utc::now()).unwrap();
        let ctx = Ctx {
            client: client.clone(),
            preserve_na: false,
            step: config.stream_slice_step,
            heartbeat: HEARTBEAT,
        };
        Planned { client, plan, ctx }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunked_rest_read_equals_one_query() {
        let org = salesforce_emulator::spawn(salesforce_emulator::Config {
            default_rows: 3,
            rows: [("Account".to_owned(), 150)].into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let Planned { plan, ctx, .. } = planned(&org, "Account", "incremental", "append").await;
        let window = plan.incremental.as_ref().map(|i| (i.lower, i.upper));

        let read = |chunked: bool| {
            let (ctx, plan) = (&ctx, &plan);
            async move {
                let (tx, rx) = mpsc::channel(100_000);
                let mut progress = Progress::new(
                    plan.descriptor.clone(),
                    &tx,
                    plan.incremental
                        .as_ref()
                        .map(|i| (i.cursor.clone(), i.initial)),
                );
                progress.running = true;
                let result = if chunked {
                    // Split the SELECT list in three, each with Id first, as split_select would.
                    let soql = plan.soql_window(Api::Rest, window);
                    let (head, tail) = soql.split_once(" FROM Account").unwrap();
                    let fields: Vec<&str> = head["SELECT ".len()..]
                        .split(',')
                        .filter(|f| *f != "Id")
                        .collect();
                    let statements: Vec<String> = fields
                        .chunks(fields.len().div_ceil(3))
                        .map(|c| format!("SELECT Id,{} FROM Account{tail}", c.join(",")))
                        .collect();
                    assert_eq!(statements.len(), 3);
                    read_rest_chunked(ctx, plan, window, "Id", statements, &mut progress).await
                } else {
                    read_rest(ctx, plan, window, &mut progress).await
                };
                assert!(result.is_ok(), "{result:?}");
                drop(progress);
                drop(tx);
                collect(rx).await
            }
        };
        let one = read(false).await;
        let chunked = read(true).await;
        let (a, b) = (records(&one), records(&chunked));
        assert_eq!(a.len(), 150);
        assert_eq!(a, b, "joined chunks give the same records");
        let states = chunked
            .iter()
            .filter(|m| matches!(m, AirbyteMessage::State { .. }))
            .count();
        assert!(states >= 1);
    }

    /// `INVALID_QUERY_LOCATOR` on a `nextRecordsUrl` (a locator used already, expired or
    /// evicted): the query runs again from the last cursor value emitted, skipping the rows at
    /// that value already out; with the first page, every row of the window once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_invalid_query_locator_reruns_the_query_from_the_last_row() {
        let org = salesforce_emulator::spawn(salesforce_emulator::Config {
            default_rows: 3,
            rows: [("Contact".to_owned(), 5_000)].into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let Planned { client, plan, ctx } = planned(&org, "Contact", "incremental", "append").await;
        let soql = plan.soql(Api::Rest);
        let mut position = rest_position(&plan, &soql, plan_window(&plan));
        // The first page, as the batch or a first query would fetch it.
        let first: QueryPage<Record> = client
            .query_page(&soql, QueryOptions::query_all())
            .await
            .unwrap();
        let mut seen: Vec<String> = Vec::new();
        for record in &first.records {
            position.observe_record(record);
            seen.push(record["Id"].as_str().unwrap().to_owned());
        }
        let next = first.next_records_url.unwrap();
        let (_, at) = next.rsplit_once('-').unwrap();
        let lost = format!("/services/data/v62.0/query/01gLOST000000000AAA-{at}");

        let (tx, rx) = mpsc::channel(100_000);
        let mut progress = Progress::new(
            plan.descriptor.clone(),
            &tx,
            plan.incremental
                .as_ref()
                .map(|i| (i.cursor.clone(), i.initial)),
        );
        progress.running = true;
        let before = salesforce_emulator::state::lock(&org.state.counters).clone();
        let result = read_rest_from(
            &ctx,
            &plan,
            RestRequest::More(lost),
            &mut position,
            &mut progress,
        )
        .await;
        assert!(result.is_ok(), "{result:?}");
        drop(progress);
        drop(tx);
        // Every RECORD, not the map by Id `records` builds: a duplicate must show.
        for m in collect(rx).await {
            if let AirbyteMessage::Record { record, .. } = m {
                seen.push(record.data["Id"].as_str().unwrap().to_owned());
            }
        }
        let distinct: std::collections::BTreeSet<&String> = seen.iter().collect();
        assert_eq!(distinct.len(), seen.len(), "a row emitted twice");
        assert_eq!(
            seen.len() as u64,
            first.total_size,
            "every row of the window"
        );
        let after = salesforce_emulator::state::lock(&org.state.counters).clone();
        let statements = after
            .by_endpoint
            .get("GET /services/data/{version}/queryAll/")
            .copied()
            .unwrap_or(0)
            - before
                .by_endpoint
                .get("GET /services/data/{version}/queryAll/")
                .copied()
                .unwrap_or(0);
        assert_eq!(statements, 1, "one re-run: {:?}", after.by_endpoint);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_running_bulk_job_repeats_the_state() {
        let mut emulator = salesforce_emulator::Config {
            default_rows: 3,
            ..Default::default()
        };
        emulator.switches.bulk_processing_ms = 1_200;
        let org = salesforce_emulator::spawn(emulator).await.unwrap();
        let Planned { plan, mut ctx, .. } = planned(&org, "Contact", "incremental", "append").await;
        assert_eq!(plan.api, Api::Bulk);
        ctx.heartbeat = std::time::Duration::from_millis(250);
        let (tx, rx) = mpsc::channel(10_000);
        let outcome = run_stream(&ctx, plan, Head::Read, &tx).await;
        assert!(matches!(outcome, Outcome::Complete), "{outcome:?}");
        drop(tx);
        let messages = collect(rx).await;
        // Before the first record, the job ran ~1.2 s: several heartbeat STATEs with no records.
        let first_record = messages
            .iter()
            .position(|m| matches!(m, AirbyteMessage::Record { .. }))
            .unwrap();
        let beats = messages[..first_record]
            .iter()
            .filter(|m| matches!(m, AirbyteMessage::State { .. }))
            .count();
        assert!(beats >= 2, "{beats} heartbeat states");
    }

    /// A full read of a large object costs a handful of calls: one REST page (its row count
    /// picks Bulk), then one Bulk job for the rest (create, backed-off polls, one result page
    /// per 250,000 rows, delete). 1 M rows: 4 pages.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_full_read_is_one_bulk_job_with_large_pages() {
        const ROWS: u64 = 1_000_000;
        let org = salesforce_emulator::spawn(salesforce_emulator::Config {
            default_rows: 1,
            extra_custom_objects: 1,
            deleted_per_mille: 0,
            rows: [("Bench01__c".to_owned(), ROWS)].into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let Planned { plan, ctx, .. } =
            planned(&org, "Bench01__c", "full_refresh", "overwrite").await;
        let before = salesforce_emulator::state::lock(&org.state.counters).total;
        let (tx, mut rx) = mpsc::channel(10_000);
        let counter = tokio::spawn(async move {
            let mut records = 0u64;
            while let Some(m) = rx.recv().await {
                match m {
                    Out::Records { count, .. } => records += count,
                    Out::Message(AirbyteMessage::Record { .. }) => records += 1,
                    Out::Message(_) => {}
                }
            }
            records
        });
        // As `read` does: the first page in a batch, then the rest by the count it announces.
        let head =
            crate::changes::prepare_all(&ctx.client, std::slice::from_ref(&plan), Utc::now())
                .await
                .pop()
                .unwrap();
        assert!(matches!(head, Head::FirstPage(_)), "{head:?}");
        let outcome = run_stream(&ctx, plan, head, &tx).await;
        assert!(matches!(outcome, Outcome::Complete), "{outcome:?}");
        drop(tx);
        assert_eq!(counter.await.unwrap(), ROWS);
        let counters = salesforce_emulator::state::lock(&org.state.counters).clone();
        let calls = counters.total - before;
        let pages = counters
            .by_endpoint
            .get("GET /services/data/{version}/jobs/query/{job}/results")
            .copied();
        assert_eq!(
            pages,
            Some((ROWS - 2_000).div_ceil(BULK_PAGE_ROWS)),
            "{counters:?}"
        );
        eprintln!(
            "full read of {ROWS} rows: {calls} calls {:?}",
            counters.by_endpoint
        );
        // composite (first page), create, polls (backed off; their number follows the machine's
        // speed), 4 result pages, delete. The issue's target is 30.
        assert!(calls <= 14, "{calls} calls: {counters:?}");
    }
}
