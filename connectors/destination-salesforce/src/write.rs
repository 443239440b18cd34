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

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use airbyte_protocol::{
    AirbyteMessage, AirbyteRecordMessage, ConfiguredAirbyteCatalog, ConnectorError, Input,
    JsonObject, Output, ResultExt,
};
use salesforce_client::{Client, ErrorClass, PollConfig};
use serde_json::value::RawValue;
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, info, warn};

use crate::batch::{OpenBatch, Windows};
use crate::config::{BatchLimits, Config};
use crate::encode::{ObjectSchema, RowEncoder};
use crate::jobs::{self, JobContext, JobError, Outcome, Target, Work};
use crate::rejects::{self, RejectFile, RejectStore, RejectWriter, RejectedBy};
use crate::route::Routes;
use crate::state::StateTracker;
use crate::{connect, salesforce_error};

/// How often open batches are checked for their age.
const TICK: Duration = Duration::from_millis(250);

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
        poll: PollConfig::default(),
        next_batch_id: AtomicU64::new(1 << 40),
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

    let (messages, mut inbox) = mpsc::channel(1024);
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut input = input;
            while let Some(message) = input.next_message() {
                let line = input.line();
                if messages.blocking_send(message.map(|m| (line, m))).is_err() {
                    break;
                }
            }
        })
        .system_error("could not start the input thread")?;

    let (outcome_tx, mut outcomes) = mpsc::unbounded_channel();
    let mut run = Run {
        limits: config.batch,
        ctx,
        routes: &routes,
        encoders: &encoders,
        targets: &targets,
        store,
        tracker: StateTracker::new(),
        open: HashMap::new(),
        rejects: HashMap::new(),
        lanes: HashMap::new(),
        outcome_tx: Some(outcome_tx),
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
            message = inbox.recv() => match message {
                Some(Ok((line, message))) => run.message(out, line, message).await,
                Some(Err(e)) => {
                    Err(ConnectorError::system(format!("invalid input: {e}")).with_source(e))
                }
                None => break,
            },
            Some(outcome) = outcomes.recv() => run.outcome(out, outcome),
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
        if let Err(e) = run.outcome(out, outcome) {
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
    outcome_tx: Option<mpsc::UnboundedSender<Outcome>>,
    next_batch: u64,
    records: u64,
    written: u64,
    rejected: u64,
}

impl Run<'_> {
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
        self.records += 1;
        let stream = &self.routes.get(route).stream;
        let (seq, windows) = self
            .tracker
            .record(&stream.name, stream.namespace.as_deref());
        match self.encoders[route].encode(&record.data) {
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
                let raw = RawValue::from_string(
                    serde_json::to_string(&record.data)
                        .system_error("could not serialise a rejected record")?,
                )
                .system_error("could not serialise a rejected record")?;
                if let Some((writer, _, counts)) = self.rejects.get_mut(&route) {
                    writer
                        .write_error(
                            line,
                            &target.object,
                            target.operation.name(),
                            None,
                            RejectedBy::Validation,
                            &error,
                            &raw,
                        )
                        .system_error("could not write a rejected record")?;
                    *counts.entry(windows).or_default() += 1;
                }
            }
            Ok(cells) => {
                if let Some(batch) = self.open.get_mut(&route)
                    && batch.would_overflow(&cells, &self.limits)
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
                        .push(&cells, line, &record.data, windows)
                        .system_error("could not spool a record")?;
                    if self.limits.max_rows.is_some_and(|m| batch.rows() >= m) {
                        self.close(route).await?;
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
        let lane = self.lanes.get(&lane_key).cloned();
        if let Some(lane) = lane
            && lane.send(Work { batch, target }).await.is_err()
        {
            // The lane stopped after an error; its outcome (already sent) carries it.
            warn!(object = %self.targets[route].object, "lane stopped; batch not submitted");
        }
        Ok(())
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

    fn outcome(&mut self, out: &mut Output, outcome: Outcome) -> Result<(), ConnectorError> {
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
