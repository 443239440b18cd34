//! Running batches as Bulk API 2.0 ingest jobs and reconciling their results.
//!
//! One *lane* per object runs that object's batches one after another, in order (two jobs on one
//! object could lock the same parent rows and lose ordering); lanes of different objects run in
//! parallel, at most `job_concurrency` jobs at a time (a semaphore).
//!
//! A job is create → upload (streamed from the batch file) → `UploadComplete` → wait until
//! `JobComplete`, `Failed` or `Aborted`, checking the status at the pace of the job's own
//! progress (`Client::bulk_ingest_wait_rows`), the first check timed from the previous job's
//! rows per second. Then every row of the batch gets a fate:
//!
//! - rows in `failedResults` are rejected with Salesforce's `CODE:message:fields`, except
//!   `UNABLE_TO_LOCK_ROW` (lock contention), which is retried once;
//! - rows in `unprocessedrecords` (Failed / Aborted jobs) are retried once, in a new job, then
//!   rejected naming the job's state and `errorMessage`;
//! - the remaining rows are written. `successfulResults` is read only when the job's counts do not
//!   prove it (`numberRecordsProcessed - numberRecordsFailed` equal to the remaining rows, with
//!   every failed row linked): a clean job costs no call for its successes. This is sound
//!   because Salesforce processes every row of a `JobComplete` job exactly once and lists each
//!   failure in `failedResults`; if every failure was linked to one of our rows and the
//!   processed count minus the failures equals the rows not yet given a fate, no row can be
//!   anything but written. Any mismatch (a count missing, a failure not linked, a job not
//!   complete) falls back to reading `successfulResults`, and a row still without a result is
//!   rejected as `RESULT_NOT_LINKED`, so no row is ever silently counted as written;
//! - a row no result can be linked to is rejected as `RESULT_NOT_LINKED` (it may or may not have
//!   been written; the reject file shows it for a human to check) — never dropped silently.
//!
//! Linking result rows needs the batch's row hashes, computed from its CSV file only when a
//! result file has a row to link; a batch with no rejected row settles its counts from the
//! in-memory windows without reading its sidecar.
//!
//! Errors the job cannot turn into row fates (authentication, network after retries, a refused
//! job creation) fail the lane; the sync then stops without echoing states past those rows.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use airbyte_protocol::StreamDescriptor;
use salesforce_client::{
    Client, ColumnDelimiter, IngestJobRequest, IngestResultKind, JobInfo, JobState, PollConfig,
};
use tokio::sync::{Semaphore, mpsc};
use tracing::{info, warn};

use crate::batch::{
    BatchError, Linker, OpenBatch, ReadyBatch, Windows, read_origins, result_columns, result_hash,
    subset,
};
use crate::encode::RowError;
use crate::rejects::{RejectStore, RejectStoreError, RejectWriter, RejectedBy};
use crate::route::Operation;

/// Why a batch could not be reconciled.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A Salesforce call failed.
    #[error("{object}: {action}: {source}")]
    Salesforce {
        /// Object.
        object: String,
        /// What we were doing.
        action: &'static str,
        /// The client error.
        #[source]
        source: salesforce_client::Error,
    },
    /// A batch file failed.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// Storing rejects failed.
    #[error(transparent)]
    Rejects(#[from] RejectStoreError),
    /// Writing a reject file failed.
    #[error("{object}: writing rejected records: {source}")]
    RejectFile {
        /// Object.
        object: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A blocking task died.
    #[error("{object}: internal task failed: {detail}")]
    Task {
        /// Object.
        object: String,
        /// What happened.
        detail: String,
    },
}

impl JobError {
    /// The Salesforce error class, when this is a Salesforce error.
    pub fn class(&self) -> Option<salesforce_client::ErrorClass> {
        match self {
            Self::Salesforce { source, .. } => Some(source.class()),
            _ => None,
        }
    }
}

/// Where a route's batches go.
#[derive(Debug)]
pub struct Target {
    /// The stream (for reject files).
    pub stream: StreamDescriptor,
    /// Object API name (canonical).
    pub object: String,
    /// Operation.
    pub operation: Operation,
    /// Canonical matching key field (upsert).
    pub key: Option<String>,
}

/// Shared by every lane.
#[derive(Debug)]
pub struct JobContext {
    /// Salesforce.
    pub client: Client,
    /// Reject files go here.
    pub store: Arc<dyn RejectStore>,
    /// Spool directory.
    pub dir: PathBuf,
    /// At most `job_concurrency` jobs at once.
    pub slots: Arc<Semaphore>,
    /// Polling policy.
    pub poll: PollConfig,
    /// Ids for retry batches.
    pub next_batch_id: AtomicU64,
    /// Nanoseconds per row the last finished job took from close to its end (0: none yet), to
    /// time the first status check of the next job (see [`first_check`]).
    pub ns_per_row: AtomicU64,
}

/// When to check a job of `rows` rows first: at 80 % of the time the last job's pace says it
/// takes (none before the first job finished).
fn first_check(ctx: &JobContext, rows: usize) -> Option<std::time::Duration> {
    let ns = ctx.ns_per_row.load(Ordering::Relaxed);
    (ns > 0).then(|| std::time::Duration::from_nanos(ns.saturating_mul(rows as u64) / 10 * 8))
}

/// A batch to run.
#[derive(Debug)]
pub struct Work {
    /// The rows.
    pub batch: OpenBatch,
    /// Where they go.
    pub target: Arc<Target>,
}

/// What became of one batch.
#[derive(Debug)]
pub struct Outcome {
    /// The lane (lower-case object name) that ran the batch.
    pub lane: String,
    /// The batch's first `seq` (what the state tracker holds).
    pub first_seq: u64,
    /// Per window: (written, rejected).
    pub settled: Vec<(Windows, u64, u64)>,
    /// Set when the batch could not be reconciled.
    pub error: Option<JobError>,
}

/// Per-row fate in one job (small: a batch may hold millions of rows).
#[derive(Debug, Clone, Copy, PartialEq)]
enum RowFate {
    Pending,
    Written,
    /// Index into the run's [`ErrorTable`].
    Failed(u32),
    Unprocessed,
}

/// Distinct row errors, stored once however many rows share them.
#[derive(Debug, Default)]
struct ErrorTable {
    list: Vec<RowError>,
    index: HashMap<(String, String, Vec<String>), u32>,
}

impl ErrorTable {
    fn intern(&mut self, e: RowError) -> u32 {
        let key = (e.code.clone(), e.message.clone(), e.fields.clone());
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        self.list.push(e);
        let i = (self.list.len() - 1) as u32;
        self.index.insert(key, i);
        i
    }

    fn get(&self, i: u32) -> &RowError {
        &self.list[i as usize]
    }
}

/// Final fate of a row of the original batch.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    Pending,
    Written,
    Rejected { error: u32, job: u32 },
}

/// What to do with a row after one job.
#[derive(Debug, PartialEq)]
enum Verdict {
    Written,
    Retry,
    Reject(RowError),
}

/// The rules of the module doc: lock contention and unprocessed rows get one more attempt;
/// everything else is final.
fn verdict(
    fate: RowFate,
    errors: &ErrorTable,
    attempt: u32,
    job_id: &str,
    state: &str,
    why: &str,
) -> Verdict {
    match fate {
        RowFate::Written => Verdict::Written,
        RowFate::Failed(e) if attempt == 0 && errors.get(e).code == "UNABLE_TO_LOCK_ROW" => {
            Verdict::Retry
        }
        RowFate::Failed(e) => Verdict::Reject(errors.get(e).clone()),
        RowFate::Unprocessed if attempt == 0 => Verdict::Retry,
        RowFate::Unprocessed => Verdict::Reject(RowError {
            code: if state == "Aborted" {
                "JOB_ABORTED"
            } else {
                "JOB_FAILED"
            }
            .to_owned(),
            message: format!(
                "ingest job {job_id} ended {state} ({why}); the row was not processed in 2 attempts"
            ),
            fields: Vec::new(),
        }),
        RowFate::Pending => Verdict::Reject(RowError {
            code: "RESULT_NOT_LINKED".to_owned(),
            message: format!(
                "ingest job {job_id} ({state}) returned no result row matching this record; it \
                 may or may not have been written"
            ),
            fields: Vec::new(),
        }),
    }
}

/// How many rows the job's counts say succeeded, when that can be trusted: every failed row was
/// found in `failedResults` (`numberRecordsProcessed` counts failures too).
fn implied_successes(
    processed: Option<u64>,
    failed: Option<u64>,
    failed_linked: u64,
) -> Option<u64> {
    match (processed, failed) {
        (Some(p), Some(f)) if f == failed_linked && p >= f => Some(p - f),
        (Some(p), None) if failed_linked == 0 => Some(p),
        _ => None,
    }
}

struct JobRun {
    id: String,
    info: JobInfo,
    fates: Vec<RowFate>,
    errors: ErrorTable,
}

/// Runs one object's batches in order until its queue closes.
pub async fn lane(
    ctx: Arc<JobContext>,
    mut queue: mpsc::Receiver<Work>,
    outcomes: mpsc::UnboundedSender<Outcome>,
) {
    while let Some(work) = queue.recv().await {
        let first_seq = work.batch.first_seq;
        let lane = work.target.object.to_lowercase();
        let (settled, error) = match run_batch(&ctx, work).await {
            Ok(settled) => (settled, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        let failed = error.is_some();
        if outcomes
            .send(Outcome {
                lane,
                first_seq,
                settled,
                error,
            })
            .is_err()
            || failed
        {
            break;
        }
    }
}

async fn blocking<T: Send + 'static>(
    object: &str,
    f: impl FnOnce() -> Result<T, JobError> + Send + 'static,
) -> Result<T, JobError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| JobError::Task {
            object: object.to_owned(),
            detail: e.to_string(),
        })?
}

/// Runs one batch (and its retry) and stores its rejects; returns the counts per window.
async fn run_batch(ctx: &JobContext, work: Work) -> Result<Vec<(Windows, u64, u64)>, JobError> {
    let target = work.target;
    let object = target.object.clone();
    let dir = ctx.dir.clone();
    let batch = work.batch;
    let ready = blocking(&object, move || Ok(batch.finish(&dir)?)).await?;
    let ready = Arc::new(ready);
    let rows = ready.rows();
    let mut fates = vec![Fate::Pending; rows];
    let mut errors = ErrorTable::default();
    let mut jobs: Vec<String> = Vec::new();
    let mut current = ready.clone();
    let mut index: Vec<usize> = (0..rows).collect();
    for attempt in 0..2u32 {
        let run = {
            let _slot = ctx.slots.acquire().await.map_err(|e| JobError::Task {
                object: object.clone(),
                detail: e.to_string(),
            })?;
            run_job(ctx, &target, &current).await?
        };
        let job = jobs.len() as u32;
        jobs.push(run.id.clone());
        let state = run.info.state.as_str().to_owned();
        let why = run
            .info
            .error_message
            .clone()
            .unwrap_or_else(|| "Salesforce gave no reason".to_owned());
        let mut retry = Vec::new();
        for (i, fate) in run.fates.into_iter().enumerate() {
            match verdict(fate, &run.errors, attempt, &run.id, &state, &why) {
                Verdict::Written => fates[index[i]] = Fate::Written,
                Verdict::Retry => retry.push(i),
                Verdict::Reject(error) => {
                    fates[index[i]] = Fate::Rejected {
                        error: errors.intern(error),
                        job,
                    };
                }
            }
        }
        if retry.is_empty() {
            break;
        }
        info!(
            object = %object,
            job_id = %run.id,
            rows = retry.len(),
            "retrying rows once in a new job"
        );
        let keep: std::collections::HashSet<usize> = retry.iter().copied().collect();
        let new_id = ctx.next_batch_id.fetch_add(1, Ordering::Relaxed);
        let dir = ctx.dir.clone();
        let from = current.clone();
        let next = blocking(&object, move || {
            Ok(subset(&from, new_id, &|i| keep.contains(&i), &dir)?)
        })
        .await?;
        index = retry.iter().map(|&i| index[i]).collect();
        current = Arc::new(next);
    }

    // Rejects, linked to their original records through the sidecar.
    let format = ctx.store.format();
    let dir = ctx.dir.clone();
    let target2 = target.clone();
    let ready2 = ready.clone();
    let (file, settled) = blocking(&object, move || {
        let err = |source| JobError::RejectFile {
            object: target2.object.clone(),
            source,
        };
        let mut writer: Option<RejectWriter> = None;
        let mut counts: HashMap<Windows, (u64, u64)> = HashMap::new();
        if fates.len() == ready2.rows() && fates.iter().all(|f| *f == Fate::Written) {
            // Nothing rejected: the counts need no origin, so the sidecar is not read.
            for w in &ready2.windows {
                counts.entry(*w).or_default().0 += 1;
            }
            return Ok((None, counts));
        }
        let origins = read_origins(&ready2.sidecar).map_err(err)?;
        for (row, origin) in origins.enumerate() {
            let origin = origin.map_err(err)?;
            let Some(&windows) = ready2.windows.get(row) else {
                return Err(JobError::Task {
                    object: target2.object.clone(),
                    detail: format!(
                        "the sidecar of batch {} has more rows than the batch",
                        ready2.id
                    ),
                });
            };
            let entry = counts.entry(windows).or_default();
            match fates.get(row).copied().unwrap_or(Fate::Pending) {
                Fate::Written => entry.0 += 1,
                Fate::Rejected { error, job } => {
                    entry.1 += 1;
                    if writer.is_none() {
                        writer = Some(
                            RejectWriter::new(target2.stream.clone(), format, &dir).map_err(err)?,
                        );
                    }
                    if let Some(w) = writer.as_mut() {
                        w.write_error(
                            origin.position,
                            &target2.object,
                            target2.operation.name(),
                            jobs.get(job as usize).map(String::as_str),
                            RejectedBy::Salesforce,
                            errors.get(error),
                            &origin.record,
                        )
                        .map_err(err)?;
                    }
                }
                Fate::Pending => {
                    return Err(JobError::Task {
                        object: target2.object.clone(),
                        detail: format!("row {row} of batch {} has no fate", ready2.id),
                    });
                }
            }
        }
        let seen: u64 = counts.values().map(|(w, r)| w + r).sum();
        if seen != ready2.rows() as u64 {
            return Err(JobError::Task {
                object: target2.object.clone(),
                detail: format!(
                    "the sidecar of batch {} has {seen} rows, the batch {}",
                    ready2.id,
                    ready2.rows()
                ),
            });
        }
        let file = writer.map(RejectWriter::finish).transpose().map_err(err)?;
        Ok((file, counts))
    })
    .await?;
    let (written, rejected) = settled
        .values()
        .fold((0, 0), |(w, r), (a, b)| (w + a, r + b));
    if let Some(file) = file {
        let at = ctx.store.put(file).await?;
        warn!(object = %object, rejected, location = %at, "rejected records stored");
    }
    info!(object = %object, batch = ready.id, rows, written, rejected, "batch reconciled");
    Ok(settled.into_iter().map(|(w, (a, b))| (w, a, b)).collect())
}

/// Create, upload, close, wait, and read the results of one job.
async fn run_job(
    ctx: &JobContext,
    target: &Target,
    batch: &Arc<ReadyBatch>,
) -> Result<JobRun, JobError> {
    let client = &ctx.client;
    let sf = |action: &'static str| {
        let object = target.object.clone();
        move |source| JobError::Salesforce {
            object,
            action,
            source,
        }
    };
    let mut request = IngestJobRequest::new(&target.object, target.operation.ingest());
    if let (Operation::Upsert { .. }, Some(key)) = (&target.operation, &target.key) {
        request = request.with_external_id_field(key);
    }
    let created = client
        .bulk_ingest_create(&request)
        .await
        .map_err(sf("creating the ingest job"))?;
    let id = created.id.clone();
    let abort = |e: JobError| async {
        if let Err(abort_err) = client.bulk_ingest_abort(&id).await {
            warn!(job_id = %id, "could not abort the ingest job: {abort_err}");
        }
        e
    };
    if let Err(e) = client.bulk_ingest_upload(&id, &batch.csv).await {
        return Err(abort(sf("uploading the batch")(e)).await);
    }
    if let Err(e) = client.bulk_ingest_close(&id).await {
        return Err(abort(sf("closing the ingest job")(e)).await);
    }
    let closed = std::time::Instant::now();
    let info = match client
        .bulk_ingest_wait_rows(
            &id,
            batch.rows() as u64,
            first_check(ctx, batch.rows()),
            &ctx.poll,
        )
        .await
    {
        Ok(info) => {
            if info.state == JobState::JobComplete && batch.rows() > 0 {
                let ns = closed.elapsed().as_nanos() / batch.rows() as u128;
                ctx.ns_per_row
                    .store(u64::try_from(ns).unwrap_or(u64::MAX), Ordering::Relaxed);
            }
            info
        }
        Err(e) => return Err(abort(sf("waiting for the ingest job")(e)).await),
    };
    info!(
        object = %target.object,
        job_id = %id,
        state = info.state.as_str(),
        processed = info.number_records_processed,
        failed = info.number_records_failed,
        rows = batch.rows(),
        bytes = batch.bytes,
        "ingest job finished"
    );

    let mut fates = vec![RowFate::Pending; batch.rows()];
    let mut errors = ErrorTable::default();
    // Built on the first result row to link (a clean job's failedResults has none).
    let mut linker: Option<Linker> = None;
    let mut unlinked = 0u64;
    let failed_linked = read_results(
        ctx,
        target,
        &id,
        batch,
        IngestResultKind::Failed,
        &mut linker,
        &mut fates,
        &mut errors,
        &mut unlinked,
    )
    .await?;
    let complete = info.state == JobState::JobComplete;
    if !complete {
        read_results(
            ctx,
            target,
            &id,
            batch,
            IngestResultKind::Unprocessed,
            &mut linker,
            &mut fates,
            &mut errors,
            &mut unlinked,
        )
        .await?;
    }
    let pending = fates.iter().filter(|f| **f == RowFate::Pending).count() as u64;
    let implied = implied_successes(
        info.number_records_processed,
        info.number_records_failed,
        failed_linked,
    );
    if pending > 0 {
        if implied == Some(pending) {
            // The counts prove every remaining row succeeded: no need to download them.
            for f in fates.iter_mut().filter(|f| **f == RowFate::Pending) {
                *f = RowFate::Written;
            }
        } else {
            read_results(
                ctx,
                target,
                &id,
                batch,
                IngestResultKind::Successful,
                &mut linker,
                &mut fates,
                &mut errors,
                &mut unlinked,
            )
            .await?;
            if !complete && info.number_records_processed == Some(0) {
                // Nothing was processed: whatever is left is safe to send again.
                for f in fates.iter_mut().filter(|f| **f == RowFate::Pending) {
                    *f = RowFate::Unprocessed;
                }
            }
        }
    }
    if unlinked > 0 {
        warn!(job_id = %id, unlinked, "result rows that match no submitted row were ignored");
    }
    Ok(JobRun {
        id,
        info,
        fates,
        errors,
    })
}

#[allow(clippy::too_many_arguments)]
async fn read_results(
    ctx: &JobContext,
    target: &Target,
    job_id: &str,
    batch: &Arc<ReadyBatch>,
    kind: IngestResultKind,
    linker: &mut Option<Linker>,
    fates: &mut [RowFate],
    errors: &mut ErrorTable,
    unlinked: &mut u64,
) -> Result<u64, JobError> {
    let action = match kind {
        IngestResultKind::Failed => "reading failedResults",
        IngestResultKind::Unprocessed => "reading unprocessedrecords",
        IngestResultKind::Successful => "reading successfulResults",
    };
    let sf = |source| JobError::Salesforce {
        object: target.object.clone(),
        action,
        source,
    };
    let mut results = ctx
        .client
        .bulk_ingest_results(job_id, kind, ColumnDelimiter::Comma)
        .await
        .map_err(sf)?;
    let header = results.header().clone();
    let map = result_columns(&batch.columns, &header);
    let error_col = header.iter().position(|h| h == b"sf__Error");
    let mut record = csv::ByteRecord::new();
    let mut linked = 0u64;
    while results.read_record(&mut record).await.map_err(sf)? {
        if linker.is_none() {
            let b = batch.clone();
            let hashes = blocking(&target.object, move || {
                b.hashes().map_err(|e| JobError::Task {
                    object: b.object.clone(),
                    detail: format!("reading the batch file to link result rows: {e}"),
                })
            })
            .await?;
            *linker = Some(Linker::new(&hashes));
        }
        let Some(row) = linker
            .as_mut()
            .and_then(|l| l.take(result_hash(&map, &record)))
        else {
            *unlinked += 1;
            continue;
        };
        linked += 1;
        fates[row] = match kind {
            IngestResultKind::Successful => RowFate::Written,
            IngestResultKind::Unprocessed => RowFate::Unprocessed,
            IngestResultKind::Failed => {
                let text = error_col
                    .and_then(|c| record.get(c))
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                RowFate::Failed(errors.intern(RowError::from_sf_error(&text)))
            }
        };
    }
    Ok(linked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: &str) -> RowError {
        RowError {
            code: code.into(),
            message: "m".into(),
            fields: vec![],
        }
    }

    #[test]
    fn lock_contention_and_unprocessed_rows_get_exactly_one_retry() {
        let mut table = ErrorTable::default();
        let lock = table.intern(error("UNABLE_TO_LOCK_ROW"));
        let dup = table.intern(error("DUPLICATE_VALUE"));
        assert_eq!(
            table.intern(error("UNABLE_TO_LOCK_ROW")),
            lock,
            "stored once"
        );
        assert_eq!(table.list.len(), 2);
        let v = |fate, attempt| {
            verdict(
                fate,
                &table,
                attempt,
                "750A",
                "Failed",
                "InternalServerError",
            )
        };
        assert_eq!(v(RowFate::Written, 0), Verdict::Written);
        assert_eq!(v(RowFate::Failed(lock), 0), Verdict::Retry);
        assert_eq!(
            v(RowFate::Failed(lock), 1),
            Verdict::Reject(error("UNABLE_TO_LOCK_ROW"))
        );
        assert_eq!(
            v(RowFate::Failed(dup), 0),
            Verdict::Reject(error("DUPLICATE_VALUE"))
        );
        assert_eq!(v(RowFate::Unprocessed, 0), Verdict::Retry);
        let Verdict::Reject(e) = v(RowFate::Unprocessed, 1) else {
            panic!("rejected after 2 attempts")
        };
        assert_eq!(e.code, "JOB_FAILED");
        assert!(
            e.message
                .contains("750A ended Failed (InternalServerError)"),
            "{}",
            e.message
        );
        let Verdict::Reject(e) = verdict(RowFate::Unprocessed, &table, 1, "750B", "Aborted", "x")
        else {
            panic!("rejected")
        };
        assert_eq!(e.code, "JOB_ABORTED");
        let Verdict::Reject(e) = v(RowFate::Pending, 0) else {
            panic!("never retried: may be written")
        };
        assert_eq!(e.code, "RESULT_NOT_LINKED");
    }

    #[test]
    fn successes_are_implied_only_when_every_failure_was_linked() {
        assert_eq!(implied_successes(Some(10), Some(2), 2), Some(8));
        assert_eq!(
            implied_successes(Some(10), Some(2), 1),
            None,
            "a failure not found: download successes"
        );
        assert_eq!(implied_successes(Some(10), None, 0), Some(10));
        assert_eq!(implied_successes(None, Some(0), 0), None);
        assert_eq!(implied_successes(Some(1), Some(2), 2), None);
    }
}
