//! Scheduled refresh of formula fields.
//!
//! Salesforce computes a formula field (describe `calculated: true`) when it is read, so a
//! change of its inputs, e.g. the `Name` of the Account a cross-object formula
//! `Account__r.Name` points at, does not move the row's `SystemModstamp`: incremental reads never
//! see the new value. With `formula_refresh_schedule` set (a cron expression, UTC), an
//! incremental stream that selects a formula field re-emits, once the schedule has fired since
//! its last refresh, every row of its object up to its checkpoint, after its normal incremental
//! read and in the same stream run (full records, so dedup destinations replace whole rows).
//!
//! The stream's state keeps the time of its last refresh next to the cursor
//! ([`crate::state::REFRESHED_KEY`]); Airbyte's connector reads only the cursor key, so the state
//! stays interchangeable. Every STATE of a concerned stream carries the key: the last refresh
//! until a refresh completes, then that refresh's start time. The first run with the schedule on
//! and no key in the state sets the key to the run's start without refreshing.
//!
//! The refresh is a second `run_stream` over `[start_date, checkpoint)` whose first REST page
//! decides REST or Bulk exactly as a normal read does; `run` stitches its messages into the
//! stream's run (one `STARTED`, one `RUNNING`, one `COMPLETE`) and adds the key to every STATE.
//! Its checkpoint starts at the stream's, so the cursor in state never goes backwards, and the
//! new key is written only after the last refreshed row.

use std::str::FromStr;

use airbyte_protocol::{AirbyteMessage, StreamStatus};
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::changes;
use crate::convert::parse_timestamp;
use crate::plan::{Incremental, StreamPlan};
use crate::state;
use crate::stream::{Ctx, Out, Outcome, run_stream};

/// Messages buffered between a wrapped stream run and the forwarding loop.
const INNER_CAPACITY: usize = 4;

/// A parsed `formula_refresh_schedule`: a cron expression evaluated in UTC.
#[derive(Clone)]
pub struct Schedule {
    text: String,
    cron: croner::Cron,
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Schedule").field(&self.text).finish()
    }
}

impl Schedule {
    /// Parses a cron expression of 5 fields (minute hour day-of-month month day-of-week) or 6
    /// (with seconds first); the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let cron = croner::Cron::from_str(trimmed).map_err(|e| {
            format!(
                "{text:?} is not a cron expression ({e}); use five fields, minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\" for 03:00 UTC every day"
            )
        })?;
        Ok(Self {
            text: trimmed.to_owned(),
            cron,
        })
    }

    /// The expression as configured.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first time the schedule fires strictly after `after`, if any.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }

    /// The first firing in `(after, now]`: the schedule is due.
    pub fn fired_between(&self, after: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next_after(after).filter(|fired| *fired <= now)
    }
}

/// What a stream does about formula fields this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The first run with the schedule on (no key in the state): the key is set to `at` (the
    /// run's start), nothing is refreshed.
    Baseline {
        /// The value the key takes.
        at: DateTime<Utc>,
    },
    /// The schedule has not fired since the last refresh: the key is carried over.
    NotDue {
        /// The last refresh.
        last: DateTime<Utc>,
        /// When the schedule fires next.
        next: Option<DateTime<Utc>>,
    },
    /// The schedule fired since the last refresh: refresh after the incremental read.
    Due {
        /// The last refresh (carried until the refresh completes).
        last: DateTime<Utc>,
        /// The firing that made it due.
        fired: DateTime<Utc>,
        /// The lower bound of the refresh (the configured start date).
        from: DateTime<Utc>,
    },
}

impl Decision {
    /// The key value every STATE carries until a refresh completes.
    pub fn carried(&self) -> DateTime<Utc> {
        match self {
            Self::Baseline { at } => *at,
            Self::NotDue { last, .. } | Self::Due { last, .. } => *last,
        }
    }
}

/// Decides for one planned stream: `None` when the feature does not concern it (no schedule,
/// full refresh, or no selected formula field). Logs the decision.
pub fn decide(
    schedule: Option<&Schedule>,
    plan: &StreamPlan,
    state: Option<&Value>,
    start_date: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<Decision> {
    let schedule = schedule?;
    plan.incremental.as_ref()?;
    let formulas: Vec<&str> = plan
        .emit
        .iter()
        .filter(|(name, _)| plan.info.field(name).is_some_and(|f| f.calculated))
        .map(|(name, _)| name.as_str())
        .collect();
    if formulas.is_empty() {
        tracing::debug!(stream = %plan.name, "formula refresh: the stream selects no formula field");
        return None;
    }
    let decision = match state.and_then(state::refreshed_at) {
        None => Decision::Baseline { at: now },
        Some(last) => match schedule.fired_between(last, now) {
            Some(fired) => Decision::Due {
                last,
                fired,
                from: start_date,
            },
            None => Decision::NotDue {
                last,
                next: schedule.next_after(last),
            },
        },
    };
    match &decision {
        Decision::Baseline { at } => tracing::info!(
            stream = %plan.name, ?formulas, schedule = schedule.as_str(), %at,
            "formula refresh: first run with the schedule; recording it as the last refresh, nothing re-read"
        ),
        Decision::NotDue { last, next } => tracing::info!(
            stream = %plan.name, ?formulas, schedule = schedule.as_str(), %last, next = ?next,
            "formula refresh: not due (the schedule has not fired since the last refresh)"
        ),
        Decision::Due { last, fired, .. } => tracing::info!(
            stream = %plan.name, ?formulas, schedule = schedule.as_str(), %last, %fired,
            "formula refresh: due; every row up to the checkpoint is re-read after the incremental read"
        ),
    }
    Some(decision)
}

/// How the forwarding loop treats a wrapped run's messages.
struct Forward<'a> {
    tx: &'a mpsc::Sender<Out>,
    /// The key value STATEs get.
    key: DateTime<Utc>,
    /// Drop `STARTED` (the refresh run: the stream has started already).
    drop_started: bool,
    /// Hold `COMPLETE` back (the normal read when a refresh follows).
    hold_complete: bool,
    /// A `RUNNING` went out already.
    running_sent: bool,
    /// The cursor value of the last STATE forwarded.
    checkpoint: Option<DateTime<Utc>>,
    /// A `COMPLETE` was held back.
    completed: bool,
}

impl Forward<'_> {
    /// Forwards everything `rx` yields until the run drops its sender; `false` if the writer is
    /// gone.
    async fn pump(&mut self, rx: &mut mpsc::Receiver<Out>, cursor: &str) -> bool {
        while let Some(out) = rx.recv().await {
            let out = match out {
                Out::Message(mut message) => {
                    match status_of(&message) {
                        Some(StreamStatus::Started) if self.drop_started => continue,
                        Some(StreamStatus::Running) if self.running_sent => continue,
                        Some(StreamStatus::Running) => self.running_sent = true,
                        Some(StreamStatus::Complete) if self.hold_complete => {
                            self.completed = true;
                            continue;
                        }
                        _ => {}
                    }
                    if let Some(value) = stream_state_mut(&mut message) {
                        if let Some(at) = value
                            .get(cursor)
                            .and_then(Value::as_str)
                            .and_then(parse_timestamp)
                        {
                            self.checkpoint = Some(at);
                        }
                        state::set_refreshed_at(value, self.key);
                    }
                    Out::Message(message)
                }
                records => records,
            };
            if self.tx.send(out).await.is_err() {
                return false;
            }
        }
        true
    }
}

fn status_of(message: &AirbyteMessage) -> Option<StreamStatus> {
    match message {
        AirbyteMessage::Trace { trace, .. } => trace.stream_status.as_ref().map(|s| s.status),
        _ => None,
    }
}

fn stream_state_mut(message: &mut AirbyteMessage) -> Option<&mut Value> {
    match message {
        AirbyteMessage::State { state, .. } => state.stream.as_mut()?.stream_state.as_mut(),
        _ => None,
    }
}

/// Runs `plan` through `inner`'s channel while `forward` passes its messages on.
async fn wrapped(
    ctx: &Ctx,
    plan: StreamPlan,
    head: changes::Head,
    forward: &mut Forward<'_>,
    cursor: &str,
) -> (Outcome, bool) {
    let (inner_tx, mut inner_rx) = mpsc::channel::<Out>(INNER_CAPACITY);
    let run = async move {
        let outcome = run_stream(ctx, plan, head, &inner_tx).await;
        drop(inner_tx);
        outcome
    };
    let pump = forward.pump(&mut inner_rx, cursor);
    tokio::join!(run, pump)
}

/// Reads one stream the feature concerns: the normal read with the key added to every STATE,
/// then, when `decision` is due and the read completed, the refresh.
pub(crate) async fn run(
    ctx: &Ctx,
    plan: StreamPlan,
    head: changes::Head,
    tx: &mpsc::Sender<Out>,
    decision: Decision,
) -> Outcome {
    let Some(cursor) = plan.incremental.as_ref().map(|i| i.cursor.clone()) else {
        return run_stream(ctx, plan, head, tx).await;
    };
    let due = matches!(decision, Decision::Due { .. });
    let mut forward = Forward {
        tx,
        key: decision.carried(),
        drop_started: false,
        hold_complete: due,
        running_sent: false,
        checkpoint: None,
        completed: false,
    };
    let refresh_plan = plan.clone();
    let (outcome, open) = wrapped(ctx, plan, head, &mut forward, &cursor).await;
    if !open {
        return Outcome::Failed(airbyte_protocol::ConnectorError::system(
            "the output was closed",
        ));
    }
    let Decision::Due { from, .. } = decision else {
        return outcome;
    };
    if !forward.completed {
        // The read did not complete (its INCOMPLETE went out): the refresh waits for a run
        // that does; the state still names the last refresh.
        tracing::info!(stream = %refresh_plan.name, "formula refresh: skipped, the incremental read did not complete");
        return outcome;
    }
    let Some(checkpoint) = forward.checkpoint else {
        tracing::warn!(stream = %refresh_plan.name, "formula refresh: skipped, the read reported no checkpoint");
        return release_complete(tx, &refresh_plan, outcome).await;
    };
    let started = Utc::now();
    let mut plan = refresh_plan;
    plan.incremental = Some(Incremental {
        cursor: cursor.clone(),
        lower: from,
        upper: checkpoint,
        initial: checkpoint,
    });
    tracing::info!(stream = %plan.name, %from, until = %checkpoint, "formula refresh: re-reading every row up to the checkpoint");
    let head = if from < checkpoint {
        changes::first_page(&ctx.client, &plan).await
    } else {
        changes::Head::Read
    };
    forward.drop_started = true;
    forward.hold_complete = true;
    forward.completed = false;
    let name = plan.name.clone();
    let descriptor = plan.descriptor.clone();
    let (outcome, open) = wrapped(ctx, plan, head, &mut forward, &cursor).await;
    if !open {
        return Outcome::Failed(airbyte_protocol::ConnectorError::system(
            "the output was closed",
        ));
    }
    if !forward.completed {
        tracing::warn!(stream = %name, "formula refresh: did not complete; the next run tries again");
        return outcome;
    }
    // Every refreshed row is out: the key moves to the refresh's start.
    let mut value = state::cursor_state(&cursor, checkpoint);
    state::set_refreshed_at(&mut value, started);
    let messages = [
        AirbyteMessage::state_stream(descriptor.clone(), value, 0),
        AirbyteMessage::stream_status(
            descriptor,
            StreamStatus::Complete,
            &airbyte_protocol::SystemClock,
        ),
    ];
    for message in messages {
        if tx.send(Out::Message(message)).await.is_err() {
            return Outcome::Failed(airbyte_protocol::ConnectorError::system(
                "the output was closed",
            ));
        }
    }
    tracing::info!(stream = %name, refreshed_at = %started, "formula refresh: complete");
    outcome
}

/// Sends the `COMPLETE` held back for a refresh that is not happening.
async fn release_complete(tx: &mpsc::Sender<Out>, plan: &StreamPlan, outcome: Outcome) -> Outcome {
    let message = AirbyteMessage::stream_status(
        plan.descriptor.clone(),
        StreamStatus::Complete,
        &airbyte_protocol::SystemClock,
    );
    if tx.send(Out::Message(message)).await.is_err() {
        return Outcome::Failed(airbyte_protocol::ConnectorError::system(
            "the output was closed",
        ));
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> DateTime<Utc> {
        parse_timestamp(s).unwrap()
    }

    fn plan(mode: &str, props: Value) -> StreamPlan {
        let schema = serde_json::json!({"type": "object", "properties": props});
        let configured: airbyte_protocol::ConfiguredAirbyteStream =
            serde_json::from_value(serde_json::json!({
                "stream": {"name": "Invoice__c", "json_schema": schema,
                           "supported_sync_modes": ["full_refresh", "incremental"]},
                "sync_mode": mode, "destination_sync_mode": "append"
            }))
            .unwrap();
        let info = crate::discovery::ObjectInfo::from_catalog(
            "Invoice__c",
            &configured.stream.json_schema,
        )
        .unwrap();
        let raw = serde_json::json!({"client_id": "c", "client_secret": "s", "refresh_token": "r"});
        let config = crate::config::Config::from_raw(
            crate::config::RawConfig::from_json(raw.as_object().unwrap()).unwrap(),
            now(),
        )
        .unwrap();
        crate::plan::plan_object(&configured, info, &config, None, now()).unwrap()
    }

    fn now() -> DateTime<Utc> {
        ts("2026-11-24T12:00:00Z")
    }

    fn invoice(mode: &str, with_formula: bool) -> StreamPlan {
        let mut props = serde_json::json!({
            "Id": {"x-salesforce-type": "id"},
            "Amount__c": {"x-salesforce-type": "currency"},
            "SystemModstamp": {"x-salesforce-type": "datetime"}
        });
        if with_formula {
            props["Total__c"] = serde_json::json!({"x-salesforce-type": "currency", "x-salesforce-calculated": true});
        }
        plan(mode, props)
    }

    #[test]
    fn decisions() {
        let daily = Schedule::parse("0 3 * * *").unwrap();
        let start = ts("2024-01-01T00:00:00Z");
        let inc = invoice("incremental", true);
        let state = |key: &str| serde_json::json!({"SystemModstamp": "2026-11-24T11:00:00.000Z", "formula_refreshed_at": key});
        assert_eq!(decide(None, &inc, None, start, now()), None, "no schedule");
        assert_eq!(
            decide(
                Some(&daily),
                &invoice("full_refresh", true),
                None,
                start,
                now()
            ),
            None,
            "a full refresh re-reads everything anyway"
        );
        assert_eq!(
            decide(
                Some(&daily),
                &invoice("incremental", false),
                None,
                start,
                now()
            ),
            None,
            "no formula field selected"
        );
        assert_eq!(
            decide(Some(&daily), &inc, None, start, now()),
            Some(Decision::Baseline { at: now() })
        );
        let no_key = serde_json::json!({"SystemModstamp": "2026-11-24T11:00:00.000Z"});
        assert_eq!(
            decide(Some(&daily), &inc, Some(&no_key), start, now()),
            Some(Decision::Baseline { at: now() })
        );
        assert_eq!(
            decide(
                Some(&daily),
                &inc,
                Some(&state("2026-11-24T03:00:00.000Z")),
                start,
                now()
            ),
            Some(Decision::NotDue {
                last: ts("2026-11-24T03:00:00Z"),
                next: Some(ts("2026-11-25T03:00:00Z"))
            })
        );
        assert_eq!(
            decide(
                Some(&daily),
                &inc,
                Some(&state("2026-11-24T02:59:59.999Z")),
                start,
                now()
            ),
            Some(Decision::Due {
                last: ts("2026-11-24T02:59:59.999Z"),
                fired: ts("2026-11-24T03:00:00Z"),
                from: start
            })
        );
    }

    #[test]
    fn schedules_parse_and_fire_in_utc() {
        let daily = Schedule::parse(" 0 3 * * * ").unwrap();
        assert_eq!(daily.as_str(), "0 3 * * *");
        assert_eq!(
            daily.next_after(ts("2026-11-24T03:00:00Z")),
            Some(ts("2026-11-25T03:00:00Z")),
            "strictly after"
        );
        assert_eq!(
            daily.fired_between(ts("2026-11-24T02:59:00Z"), ts("2026-11-24T03:00:00Z")),
            Some(ts("2026-11-24T03:00:00Z"))
        );
        assert_eq!(
            daily.fired_between(ts("2026-11-24T03:00:00Z"), ts("2026-11-25T02:59:59Z")),
            None
        );
        let with_seconds = Schedule::parse("30 0 * * * *").unwrap();
        assert_eq!(
            with_seconds.next_after(ts("2026-11-24T03:00:00Z")),
            Some(ts("2026-11-24T03:00:30Z"))
        );
        for bad in ["", "every day", "61 * * * *", "* * * *"] {
            let err = Schedule::parse(bad).unwrap_err();
            assert!(err.contains("not a cron expression"), "{bad}: {err}");
        }
    }
}
