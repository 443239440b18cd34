//! `write`: messages from stdin → validated rows → batches → ingest jobs → STATE echoes.
//!
//! ```text
//! stdin (reader thread) ─► RECORD ─► route ─► RowEncoder ─┬─ refused ─► reject file of the stream
//!                                                         └─ cells ───► OpenBatch of the route
//!                          STATE  ─► StateTracker (held until its records have a fate)
//! OpenBatch (size / rows / age) ─► lane of its object ─► ingest job ─► Outcome ─► StateTracker
//! ```
//! Every other message type (LOG, TRACE such as the platform's synthetic STREAM_STATUS COMPLETE,
//! CONTROL, unknown types) is accepted and ignored. Objects are described once, 25 per
//! `/composite` call, before the first record is read.
//!
//! Throughput: the input thread reads stdin block by block and parses, routes and encodes
//! RECORD lines itself ([`crate::input`]), handing each block's results over in one chunk, so
//! the loop here only spools rows and moves batches along. While an object has no job running,
//! its batch is submitted early once it holds a share of `batch_max_bytes` (see
//! [`EARLY_SHARE`]): Salesforce processes it while the rest of the input is read, instead of
//! waiting for one 100 MB batch.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use airbyte_protocol::{
    AirbyteMessage, AirbyteRecordMessage, CodecError, ConfiguredAirbyteCatalog, ConnectorError,
    Input, JsonObject, Output, ResultExt,
};
use salesforce_client::{Client, ErrorClass, PollConfig};
use serde_json::value::RawValue;
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, info, warn};

use crate::batch::{OpenBatch, Windows};
use crate::config::{BatchLimits, Config};
use crate::encode::{Cells, ObjectSchema, RowEncoder, RowError};
use crate::input::{self, Lines};
use crate::jobs::{self, JobContext, JobError, Outcome, Target, Work};
use crate::rejects::{self, RejectFile, RejectStore, RejectWriter, RejectedBy};
use crate::route::Routes;
use crate::state::StateTracker;
use crate::{connect, salesforce_error};

/// How often open batches are checked for their age.
const TICK: Duration = Duration::from_millis(250);
/// An object with no job running gets its batch early, once the batch holds this share of
/// `batch_max_bytes` (1/16), so Salesforce works while the rest is read; each early batch
/// doubles the share for that object (1/16, 1/8, 1/4, ...), which bounds the extra jobs to four
/// per object. Only when that first share is at least [`EARLY_MIN_BYTES`]: splitting small
/// batches would cost calls and save no time.
const EARLY_SHARE: u64 = 16;
/// Smallest early batch (see [`EARLY_SHARE`]).
const EARLY_MIN_BYTES: u64 = 4_000_000;

/// How ingest jobs are waited for: a first status check after 50–100 ms, then paced by the job's
/// progress (`Client::bulk_ingest_wait_rows`), never more than 30 s apart; a job may take 4 h.
fn ingest_poll() -> PollConfig {
    PollConfig {
        backoff: salesforce_client::BackoffConfig {
            init: Duration::from_millis(100),
            max: Duration::from_secs(30),
            base: 2.0,
        },
        timeout: Duration::from_secs(4 * 3600),
    }
}

/// The sync id that names the reject folder: the catalog's, else the start time.
fn sync_id(catalog: &ConfiguredAirbyteCatalog) -> String {
    catalog
        .streams
        .iter()
        .find_map(|s| s.sync_id)
        .map(|id| id.to_string())
        .unwrap_or_else(|| chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string())
}

/// Describes every routed object (once each) and builds one encoder per route.
async fn encoders(client: &Client, routes: &Routes) -> Result<Vec<RowEncoder>, ConnectorError> {
    let mut names: Vec<String> = Vec::new();
    for r in routes.all() {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(&r.object)) {
            names.push(r.object.clone());
        }
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let described = client
        .describe_many(&refs)
        .await
        .map_err(|e| salesforce_error("could not describe the destination objects", e))?;
    let mut schemas: HashMap<String, Arc<ObjectSchema>> = HashMap::new();
    for (name, d) in names.iter().zip(described) {
        let d = d.map_err(|e| {
            ConnectorError::config(format!(
                "Salesforce object {name} cannot be described ({} {}): check the object name \
                 and that the integration user can see it",
                e.error_code, e.message
            ))
        })?;
        schemas.insert(
            name.to_lowercase(),
            Arc::new(ObjectSchema::from_describe(&d)),
        );
    }
    routes
        .all()
        .iter()
        .map(|r| {
            let schema = schemas
                .get(&r.object.to_lowercase())
                .cloned()
                .ok_or_else(|| ConnectorError::system(format!("{} was not described", r.object)))?;
            RowEncoder::new(schema, r.operation.clone()).map_err(|e| {
                ConnectorError::config(format!("stream {}: {e}", r.stream)).with_source(e)
            })
        })
        .collect()
}

/// The `write` command.
pub async fn write(
    out: &mut Output,
    config: JsonObject,
    catalog: ConfiguredAirbyteCatalog,
    input: Input,
) -> Result<(), ConnectorError> {
    let config = Config::try_from(&config)
        .map_err(|e| ConnectorError::config(format!("invalid configuration: {e}")))?;
    let routes = Routes::from_catalog(&catalog, config.allow_hard_delete)
        .map_err(|e| ConnectorError::config(e.to_string()))?;
    let client = connect(&config)?;
    let encoders = if routes.all().is_empty() {
        Vec::new()
    } else {
        encoders(&client, &routes).await?
    };
    let store: Arc<dyn RejectStore> =
        Arc::from(rejects::open(&config.rejects, sync_id(&catalog)).await);
    info!(rejected_records = %store.location(), "rejected records go here");
    let spool = tempfile::Builder::new()
        .prefix("destination-salesforce-")
        .tempdir()
        .system_error("could not create a spool directory in the temp directory")?;
    let ctx = Arc::new(JobContext {
        client: client.clone(),
        store: store.clone(),
        dir: spool.path().to_path_buf(),
        slots: Arc::new(Semaphore::new(config.job_concurrency)),
        poll: ingest_poll(),
        next_batch_id: AtomicU64::new(1 << 40),
        ns_per_row: AtomicU64::new(0),
    });
    let targets: Vec<Arc<Target>> = routes
        .all()
        .iter()
        .zip(&encoders)
        .map(|(r, e)| {
            Arc::new(Target {
                stream: r.stream.clone(),
                object: e.schema().name.clone(),
                operation: r.operation.clone(),
                key: e.key().map(str::to_owned),
            })
        })
        .collect();

    let routes = Arc::new(routes);
    let encoders = Arc::new(encoders);
    let (messages, mut inbox) = mpsc::channel::<Chunk>(8);
    let (spent, spent_rx) = std::sync::mpsc::channel::<Chunk>();
    {
        let routes = routes.clone();
        let encoders = encoders.clone();
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || read_input(input, &routes, &encoders, &messages, &spent_rx))
            .system_error("could not start the input thread")?;
    }

    let (outcome_tx, mut outcomes) = mpsc::unbounded_channel();
    let mut run = Run {
        limits: config.batch,
        ctx,
        routes: &routes,
        encoders: &encoders[..],
        targets: &targets,
        store,
        tracker: StateTracker::new(),
        open: HashMap::new(),
        rejects: HashMap::new(),
        lanes: HashMap::new(),
        in_flight: HashMap::new(),
        early: HashMap::new(),
        outcome_tx: Some(outcome_tx),
        spent,
        next_batch: 0,
        records: 0,
        written: 0,
        rejected: 0,
    };
    let mut tick = tokio::time::interval(TICK);
    let started = Instant::now();
    // On a failure, stop reading, let running jobs finish and echo the states they allow (fewer
    // rows to send again on the next attempt), then report the failure.
    let mut failure: Option<ConnectorError> = None;
    loop {
        let step = tokio::select! {
            chunk = inbox.recv() => match chunk {
                Some(chunk) => run.chunk(out, chunk).await,
                None => break,
            },
            Some(outcome) = outcomes.recv() => run.outcome(out, outcome).await,
            _ = tick.tick() => run.close_due().await,
        };
        if let Err(e) = step {
            failure = Some(e);
            break;
        }
    }
    drop(inbox);
    if failure.is_none() {
        // End of input: submit everything, then wait for every job.
        let submitted = match run.close_all().await {
            Ok(()) => run.flush_rejects().await,
            Err(e) => Err(e),
        };
        failure = submitted.err();
    }
    run.lanes.clear();
    run.outcome_tx = None;
    while let Some(outcome) = outcomes.recv().await {
        if let Err(e) = run.outcome(out, outcome).await {
            failure.get_or_insert(e);
        }
    }
    run.emit(out)?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    if run.tracker.waiting() > 0 {
        return Err(ConnectorError::system(format!(
            "{} state message(s) could not be confirmed: some records have no recorded fate",
            run.tracker.waiting()
        )));
    }
    let usage = client.usage();
    info!(
        records = run.records,
        written = run.written,
        rejected = run.rejected,
        rejected_records = %run.store.location(),
        api_calls = usage.calls_made,
        org_used = usage.org_used,
        org_max = usage.org_max,
        seconds = started.elapsed().as_secs_f64(),
        "write finished"
    );
    out.flush()?;
    Ok(())
}

struct Run<'a> {
    limits: BatchLimits,
    ctx: Arc<JobContext>,
    routes: &'a Routes,
    encoders: &'a [RowEncoder],
    targets: &'a [Arc<Target>],
    store: Arc<dyn RejectStore>,
    tracker: StateTracker,
    /// Open batch per route.
    open: HashMap<usize, OpenBatch>,
    /// Locally rejected records per route, with the seq they are held under.
    rejects: HashMap<usize, (RejectWriter, u64, HashMap<Windows, u64>)>,
    /// Batch queue per object (lower-case).
    lanes: HashMap<String, mpsc::Sender<Work>>,
    /// Batches submitted and not yet settled, per lane.
    in_flight: HashMap<String, usize>,
    /// Size at which the lane's next batch is submitted early when the lane is idle (see
    /// [`EARLY_SHARE`]); absent: the first share.
    early: HashMap<String, u64>,
    outcome_tx: Option<mpsc::UnboundedSender<Outcome>>,
    /// Handled chunks go back to the input thread (see [`Run::chunk`]).
    spent: std::sync::mpsc::Sender<Chunk>,
    next_batch: u64,
    records: u64,
    written: u64,
    rejected: u64,
}

/// What the input thread makes of one line.
#[derive(Debug)]
enum Item {
    /// A RECORD of a configured stream, already encoded (fast path).
    Record {
        line: u64,
        route: usize,
        encoded: Result<Cells, RowError>,
        data: Box<RawValue>,
    },
    /// Any other message, parsed by the protocol crate.
    Message { line: u64, message: AirbyteMessage },
    /// A line that is not a valid message (reading stops after it).
    Invalid(CodecError),
}

/// The items of one block of input.
type Chunk = Vec<Item>;

/// The input thread: reads stdin block by block and sends each block's items as one chunk;
/// RECORD lines are parsed, routed and encoded here, off the loop that spools and submits.
fn read_input(
    input: Input,
    routes: &Routes,
    encoders: &[RowEncoder],
    to: &mpsc::Sender<Chunk>,
    spent: &std::sync::mpsc::Receiver<Chunk>,
) {
    let mut lines = Lines::new(input.into_inner());
    let mut more = true;
    loop {
        // Chunks handled by the write loop come back to be freed here, where they were made.
        while let Ok(done) = spent.try_recv() {
            drop(done);
        }
        let mut chunk: Chunk = Vec::new();
        let mut stop = false;
        while let Some((line, text)) = lines.next_line() {
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let item = match input::fast_record(text).and_then(|r| {
                let ns = r.namespace.as_deref().map(str::to_owned);
                let route = routes.find(&r.stream, ns.as_ref())?;
                Some((route, r))
            }) {
                Some((route, mut r)) => {
                    let n = r.fields.0.len();
                    let encoded = encoders[route].encode_fields(
                        r.fields.0.iter_mut().map(|(k, v)| {
                            let k: &Cow<'_, str> = k;
                            (k.as_ref(), Cow::Owned(std::mem::take(v)))
                        }),
                        n,
                    );
                    Item::Record {
                        line,
                        route,
                        encoded,
                        data: r.data.to_owned(),
                    }
                }
                None => match input::slow_message(text, line) {
                    Ok(message) => Item::Message { line, message },
                    Err(e) => {
                        stop = true;
                        Item::Invalid(e)
                    }
                },
            };
            chunk.push(item);
            if stop {
                break;
            }
        }
        if !more || stop {
            let _ = to.blocking_send(chunk);
            return;
        }
        if !chunk.is_empty() && to.blocking_send(chunk).is_err() {
            return;
        }
        match lines.fill() {
            Ok(m) => more = m,
            Err(source) => {
                let line = lines.line() + 1;
                let _ = to.blocking_send(vec![Item::Invalid(CodecError::Io { line, source })]);
                return;
            }
        }
    }
}

impl Run<'_> {
    /// Handles one chunk, then hands it back to the input thread to be freed there (memory
    /// freed by the thread that allocated it avoids contention between the two in the allocator).
    async fn chunk(&mut self, out: &mut Output, mut chunk: Chunk) -> Result<(), ConnectorError> {
        let mut result = Ok(());
        for item in chunk.iter_mut() {
            let step = match item {
                Item::Record {
                    line,
                    route,
                    encoded,
                    data,
                } => self.encoded(*line, *route, encoded, data).await,
                Item::Message { line, message } => {
                    let message = std::mem::replace(
                        message,
                        AirbyteMessage::Other {
                            message_type: String::new(),
                            fields: JsonObject::new(),
                        },
                    );
                    self.message(out, *line, message).await
                }
                Item::Invalid(e) => {
                    let e = std::mem::replace(
                        e,
                        CodecError::Io {
                            line: 0,
                            source: std::io::Error::other("reported"),
                        },
                    );
                    Err(ConnectorError::system(format!("invalid input: {e}")).with_source(e))
                }
            };
            if let Err(e) = step {
                result = Err(e);
                break;
            }
        }
        let _ = self.spent.send(chunk);
        result
    }

    async fn message(
        &mut self,
        out: &mut Output,
        line: u64,
        message: AirbyteMessage,
    ) -> Result<(), ConnectorError> {
        match message {
            AirbyteMessage::Record { record, .. } => self.record(line, *record).await,
            AirbyteMessage::State { state, extra } => {
                self.tracker.state(*state, extra);
                // Locally rejected records must be stored before the state can pass.
                self.flush_rejects().await?;
                self.emit(out)
            }
            other => {
                debug!(
                    message_type = other.message_type(),
                    line, "ignored input message"
                );
                Ok(())
            }
        }
    }

    async fn record(
        &mut self,
        line: u64,
        record: AirbyteRecordMessage,
    ) -> Result<(), ConnectorError> {
        let Some(route) = self.routes.find(&record.stream, record.namespace.as_ref()) else {
            return Err(ConnectorError::system(format!(
                "input line {line}: RECORD for stream {:?}{} which is not in the configured catalog",
                record.stream,
                record
                    .namespace
                    .as_deref()
                    .map(|n| format!(" (namespace {n:?})"))
                    .unwrap_or_default()
            )));
        };
        let encoded = self.encoders[route].encode(&record.data);
        let data = RawValue::from_string(
            serde_json::to_string(&record.data).system_error("could not serialise a record")?,
        )
        .system_error("could not serialise a record")?;
        self.encoded(line, route, &encoded, &data).await
    }

    /// One record of `route` with its cells (or why it is refused) and its `data` as JSON.
    async fn encoded(
        &mut self,
        line: u64,
        route: usize,
        encoded: &Result<Cells, RowError>,
        raw: &RawValue,
    ) -> Result<(), ConnectorError> {
        self.records += 1;
        let stream = &self.routes.get(route).stream;
        let (seq, windows) = self
            .tracker
            .record(&stream.name, stream.namespace.as_deref());
        match encoded {
            Err(error) => {
                let target = &self.targets[route];
                if !self.rejects.contains_key(&route) {
                    let writer = RejectWriter::new(
                        target.stream.clone(),
                        self.store.format(),
                        &self.ctx.dir,
                    )
                    .system_error("could not create a rejected-records file")?;
                    self.tracker.hold(seq);
                    self.rejects.insert(route, (writer, seq, HashMap::new()));
                }
                if let Some((writer, _, counts)) = self.rejects.get_mut(&route) {
                    writer
                        .write_error(
                            line,
                            &target.object,
                            target.operation.name(),
                            None,
                            RejectedBy::Validation,
                            error,
                            raw,
                        )
                        .system_error("could not write a rejected record")?;
                    *counts.entry(windows).or_default() += 1;
                }
            }
            Ok(cells) => {
                if let Some(batch) = self.open.get_mut(&route)
                    && batch.would_overflow(cells, &self.limits)
                {
                    self.close(route).await?;
                }
                if !self.open.contains_key(&route) {
                    let batch = OpenBatch::new(
                        self.next_batch,
                        &self.targets[route].object,
                        seq,
                        &self.ctx.dir,
                    )
                    .system_error("could not start a batch")?;
                    self.next_batch += 1;
                    self.tracker.hold(seq);
                    self.open.insert(route, batch);
                }
                if let Some(batch) = self.open.get_mut(&route) {
                    batch
                        .push(cells, line, raw, windows)
                        .system_error("could not spool a record")?;
                    if self.limits.max_rows.is_some_and(|m| batch.rows() >= m) {
                        self.close(route).await?;
                    } else {
                        self.close_early(route).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Submits the open batch of `route` to its object's lane.
    async fn close(&mut self, route: usize) -> Result<(), ConnectorError> {
        let Some(batch) = self.open.remove(&route) else {
            return Ok(());
        };
        let target = self.targets[route].clone();
        let lane_key = target.object.to_lowercase();
        if !self.lanes.contains_key(&lane_key) {
            let Some(outcome_tx) = self.outcome_tx.clone() else {
                return Err(ConnectorError::system(
                    "batch submitted after the end of input",
                ));
            };
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(jobs::lane(self.ctx.clone(), rx, outcome_tx));
            self.lanes.insert(lane_key.clone(), tx);
        }
        debug!(object = %target.object, rows = batch.rows(), "batch closed");
        *self.in_flight.entry(lane_key.clone()).or_default() += 1;
        let lane = self.lanes.get(&lane_key).cloned();
        if let Some(lane) = lane
            && lane.send(Work { batch, target }).await.is_err()
        {
            // The lane stopped after an error; its outcome (already sent) carries it.
            warn!(object = %self.targets[route].object, "lane stopped; batch not submitted");
        }
        Ok(())
    }

    /// Submits the open batch of `route` early when its object has no job running and the batch
    /// reached the lane's early size ([`EARLY_SHARE`]).
    async fn close_early(&mut self, route: usize) -> Result<(), ConnectorError> {
        let first = self.limits.max_bytes / EARLY_SHARE;
        if first < EARLY_MIN_BYTES {
            return Ok(());
        }
        let Some(batch) = self.open.get(&route) else {
            return Ok(());
        };
        let lane = self.targets[route].object.to_lowercase();
        if self.in_flight.get(&lane).copied().unwrap_or(0) > 0 {
            return Ok(());
        }
        let at = self.early.get(&lane).copied().unwrap_or(first);
        if at >= self.limits.max_bytes || batch.size() < at {
            return Ok(());
        }
        self.early.insert(lane, at.saturating_mul(2));
        self.close(route).await
    }

    async fn close_due(&mut self) -> Result<(), ConnectorError> {
        let now = Instant::now();
        let due: Vec<usize> = self
            .open
            .iter()
            .filter(|(_, b)| b.is_due(&self.limits, now))
            .map(|(&r, _)| r)
            .collect();
        for route in due {
            self.close(route).await?;
        }
        Ok(())
    }

    async fn close_all(&mut self) -> Result<(), ConnectorError> {
        let mut all: Vec<usize> = self.open.keys().copied().collect();
        all.sort_unstable();
        for route in all {
            self.close(route).await?;
        }
        Ok(())
    }

    /// Stores every pending file of locally rejected records.
    async fn flush_rejects(&mut self) -> Result<(), ConnectorError> {
        let mut routes: Vec<usize> = self.rejects.keys().copied().collect();
        routes.sort_unstable();
        for route in routes {
            let Some((writer, seq, counts)) = self.rejects.remove(&route) else {
                continue;
            };
            let file: RejectFile = writer
                .finish()
                .system_error("could not write a rejected-records file")?;
            let count = file.count;
            let at = self.store.put(file).await.map_err(|e| {
                ConnectorError::system(format!("could not store rejected records: {e}"))
                    .with_source(e)
            })?;
            warn!(stream = %self.targets[route].stream, count, location = %at,
                  "records refused by validation were stored");
            for (windows, n) in counts {
                self.tracker.settle(windows, 0, n);
                self.rejected += n;
            }
            self.tracker.release(seq);
        }
        Ok(())
    }

    async fn outcome(&mut self, out: &mut Output, outcome: Outcome) -> Result<(), ConnectorError> {
        let lane = outcome.lane.clone();
        if let Some(n) = self.in_flight.get_mut(&lane) {
            *n = n.saturating_sub(1);
        }
        self.settle(out, outcome)?;
        // The lane may be idle now: a batch that grew past its early size goes at once.
        if self.outcome_tx.is_some() {
            let mut routes: Vec<usize> = self.open.keys().copied().collect();
            routes.sort_unstable();
            for route in routes {
                if self.targets[route].object.to_lowercase() == lane {
                    self.close_early(route).await?;
                }
            }
        }
        Ok(())
    }

    fn settle(&mut self, out: &mut Output, outcome: Outcome) -> Result<(), ConnectorError> {
        if let Some(error) = outcome.error {
            return Err(job_error(error));
        }
        for (windows, written, rejected) in outcome.settled {
            self.tracker.settle(windows, written, rejected);
            self.written += written;
            self.rejected += rejected;
        }
        self.tracker.release(outcome.first_seq);
        self.emit(out)
    }

    fn emit(&mut self, out: &mut Output) -> Result<(), ConnectorError> {
        let ready = self.tracker.ready();
        if ready.is_empty() {
            return Ok(());
        }
        for (state, extra) in ready {
            out.write(&AirbyteMessage::State {
                state: Box::new(state),
                extra,
            })?;
        }
        out.checkpoint()?;
        Ok(())
    }
}

fn job_error(error: JobError) -> ConnectorError {
    let message = error.to_string();
    let base = match error.class() {
        Some(ErrorClass::Config) => ConnectorError::config(message),
        Some(ErrorClass::Transient | ErrorClass::RateLimited) => ConnectorError::transient(message),
        _ => ConnectorError::system(message),
    };
    base.with_source(error)
}
