//! Spending as few API calls as possible before the streams start: every stream's first REST
//! page (the row count it announces picks REST or Bulk for the rest), and for streams resuming from a recent state a getUpdated + getDeleted
//! "has anything changed?" question, packed into `/composite` calls (one API call each for up to
//! 25 subrequests, at most 5 of them queries).
//!
//! Each composite call carries up to 5 queries (streams read outright: first syncs first, then
//! resumable streams, since a query answers "what changed" with the rows themselves) and the
//! getUpdated/getDeleted pairs of up to 10 more resumable streams. A stream Salesforce reports
//! unchanged needs no query at all; a changed one gets its first page in a later composite call.
//! The stream task then continues from that page (REST for small deltas, Bulk for large ones;
//! see [`crate::stream`]).
//!
//! Completeness: getUpdated has minute granularity (seconds are ignored), covers at most the last
//! 30 days, and leaves deleted rows out; getDeleted covers those (at most 15 days back). A stream
//! is declared unchanged only when both answer with no ids and a `latestDateCovered`; its
//! checkpoint then moves to just before the minute of the earlier `latestDateCovered`, never
//! further. Anything else (an error, a missing date, a window too old) falls back to a query.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use salesforce_client::rest::CompositeGet;
use salesforce_client::rest::{
    COMPOSITE_MAX_QUERIES, COMPOSITE_MAX_SUBREQUESTS, DeletedRecords, UpdatedRecords,
};
use salesforce_client::{ApiError, Client, QueryPage};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::convert::parse_timestamp;
use crate::merge::Record;
use crate::plan::{Api, StreamPlan};

/// What is known of a stream before its task starts.
#[derive(Debug, Default)]
pub(crate) enum Head {
    /// Nothing: the stream reads as planned.
    #[default]
    Read,
    /// Salesforce reports no row changed or deleted up to `covered` (inclusive).
    Unchanged {
        /// The checkpoint the stream may claim.
        covered: DateTime<Utc>,
    },
    /// The first REST page of the stream's query.
    FirstPage(FirstPage),
    /// Salesforce refused the stream's query.
    QueryFailed(ApiError),
}

/// A first page, holding one of the [`HELD_PAGES`] slots until the stream has emitted it.
#[derive(Debug)]
pub(crate) struct FirstPage {
    /// The page.
    pub(crate) page: QueryPage<Record>,
    /// Released when dropped.
    pub(crate) slot: Option<OwnedSemaphorePermit>,
}

/// First pages fetched but not yet emitted, at most (up to 2,000 rows each): bounds memory
/// however many streams the catalog has, while still filling a composite call's 5 queries.
const HELD_PAGES: usize = 2 * COMPOSITE_MAX_QUERIES;

/// How far back getUpdated / getDeleted are trusted (Salesforce: 30 / 15 days; kept inside both
/// with a day of margin).
const CHANGE_CHECK_REACH: TimeDelta = TimeDelta::days(14);

/// Streams whose changes one composite call asks about (two subrequests each), next to its
/// queries.
const CHECKS_PER_CALL: usize = (COMPOSITE_MAX_SUBREQUESTS - COMPOSITE_MAX_QUERIES) / 2;
const _: () = assert!(CHECKS_PER_CALL == 10);

/// The REST statement that reads a stream (an incremental one's whole range; a full refresh
/// ordered by its key) in one query, when there is one (not for wide objects split in column
/// chunks, a full refresh without key, nor `ContentDocumentLink`).
async fn head_query(client: &Client, plan: &StreamPlan) -> Option<String> {
    if plan.info.name == "ContentDocumentLink" {
        return None;
    }
    match &plan.incremental {
        Some(inc) if inc.lower >= inc.upper => return None,
        None if plan.info.primary_key.is_none() => return None,
        _ => {}
    }
    let fields = plan.select_fields(Api::Rest);
    let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
    let key = plan.info.primary_key.as_deref().unwrap_or("Id");
    let soql = plan.soql(Api::Rest);
    let tail = soql
        .find(&format!(" FROM {}", plan.info.name))
        .map(|i| soql[i + " FROM ".len() + plan.info.name.len()..].to_owned())?;
    let statements = client
        .split_select(&plan.info.name, &refs, key, &tail, true)
        .await
        .ok()?;
    (statements.len() == 1).then_some(soql)
}

/// One stream's first REST page on its own (one call), for a stream planned after the batch:
/// the page announces the row count the REST-or-Bulk choice needs. [`Head::Read`] when the
/// stream has no single REST query or the call fails (the stream's own read reports it).
pub(crate) async fn first_page(client: &Client, plan: &StreamPlan) -> Head {
    let Some(soql) = head_query(client, plan).await else {
        return Head::Read;
    };
    match client
        .query_page::<Record>(&soql, salesforce_client::QueryOptions::query_all())
        .await
    {
        Ok(page) => Head::FirstPage(FirstPage { page, slot: None }),
        Err(err) => {
            tracing::debug!(stream = %plan.name, error = %err, "first page failed");
            Head::Read
        }
    }
}

/// Whether Salesforce can be asked cheaply if the stream changed since its state.
fn checkable(plan: &StreamPlan, now: DateTime<Utc>) -> bool {
    plan.incremental.as_ref().is_some_and(|inc| {
        inc.cursor == "SystemModstamp" && check_start(inc.lower) >= now - CHANGE_CHECK_REACH
    })
}

/// getUpdated / getDeleted ignore seconds; start a minute early so `lower` is surely covered.
fn check_start(lower: DateTime<Utc>) -> DateTime<Utc> {
    lower - TimeDelta::minutes(1)
}

/// The checkpoint a clean getUpdated + getDeleted answer proves: just before the minute of the
/// earlier `latestDateCovered` (seconds are ignored, so that minute may hold unseen changes),
/// and never past `upper`.
fn covered_until(
    updated: &UpdatedRecords,
    deleted: &DeletedRecords,
    upper: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let a = parse_timestamp(updated.latest_date_covered.as_deref()?)?;
    let b = parse_timestamp(deleted.latest_date_covered.as_deref()?)?;
    let latest = a.min(b).min(upper);
    let minute = latest.duration_trunc(TimeDelta::minutes(1)).ok()?;
    Some(minute - TimeDelta::milliseconds(1))
}

/// One subrequest's purpose.
enum Ask {
    Query(usize),
    Updated,
    Deleted(usize),
}

/// Fetches what can be known cheaply about `plans` (see the module docs) and sends each
/// stream's [`Head`] on `heads` as soon as it is known (every index exactly once). Never fails:
/// what cannot be asked or answered is left to the stream ([`Head::Read`]). At most
/// [`HELD_PAGES`] fetched pages wait for their stream at any time.
pub(crate) async fn prepare(
    client: Client,
    plans: Arc<Vec<StreamPlan>>,
    now: DateTime<Utc>,
    heads: mpsc::UnboundedSender<(usize, Head)>,
) {
    let mut sent = vec![false; plans.len()];
    let send = |i: usize, head: Head, sent: &mut [bool]| {
        if let Some(done) = sent.get_mut(i)
            && !*done
        {
            *done = true;
            // The receiver only goes away when the run is ending.
            let _ = heads.send((i, head));
        }
    };
    let mut soql: Vec<Option<String>> = Vec::with_capacity(plans.len());
    for plan in plans.iter() {
        soql.push(head_query(&client, plan).await);
    }
    // First syncs (and states too old to check) are queried; resumed streams are checked.
    let mut to_query: VecDeque<usize> = VecDeque::new();
    let mut to_check: VecDeque<usize> = VecDeque::new();
    for (i, plan) in plans.iter().enumerate() {
        if soql[i].is_none() {
            send(i, Head::Read, &mut sent);
        } else if checkable(plan, now) {
            to_check.push_back(i);
        } else {
            to_query.push_back(i);
        }
    }
    let slots = Arc::new(Semaphore::new(HELD_PAGES));
    let (mut calls, mut unchanged, mut changed, mut pages) = (0u32, 0usize, 0usize, 0usize);
    let mut later: VecDeque<usize> = VecDeque::new();
    while !to_query.is_empty() || !to_check.is_empty() || !later.is_empty() {
        let mut asks: Vec<(Ask, Option<OwnedSemaphorePermit>)> = Vec::new();
        let mut requests: Vec<CompositeGet> = Vec::new();
        // Query slots: first syncs, then changed streams, then (spare slots) streams still to
        // check, whose query answers the question with the rows themselves.
        while requests.len() < COMPOSITE_MAX_QUERIES {
            let Some(i) = to_query
                .pop_front()
                .or_else(|| later.pop_front())
                .or_else(|| to_check.pop_front())
            else {
                break;
            };
            let Some(q) = &soql[i] else { continue };
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            requests.push(CompositeGet::Query {
                soql: q.clone(),
                include_deleted: true,
            });
            asks.push((Ask::Query(i), Some(slot)));
        }
        let mut checks = 0;
        while checks < CHECKS_PER_CALL {
            let Some(i) = to_check.pop_front() else { break };
            let Some(inc) = &plans[i].incremental else {
                continue;
            };
            let (object, start, end) = (
                plans[i].info.name.clone(),
                check_start(inc.lower),
                inc.upper,
            );
            requests.push(CompositeGet::Updated {
                object: object.clone(),
                start,
                end,
            });
            requests.push(CompositeGet::Deleted { object, start, end });
            asks.push((Ask::Updated, None));
            asks.push((Ask::Deleted(i), None));
            checks += 1;
        }
        if requests.is_empty() {
            break;
        }
        calls += 1;
        let answers = match client.composite(&requests).await {
            Ok(a) => a,
            Err(err) => {
                // The streams will make their own calls and report what goes wrong.
                tracing::warn!(error = %err, "the batched change check failed; the streams read on their own");
                break;
            }
        };
        let mut updated: Option<UpdatedRecords> = None;
        for ((ask, slot), answer) in asks.into_iter().zip(answers) {
            match ask {
                Ask::Query(i) => {
                    let head = match answer.map(serde_json::from_value::<QueryPage<Record>>) {
                        Ok(Ok(page)) => {
                            pages += 1;
                            Head::FirstPage(FirstPage { page, slot })
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(stream = %plans[i].name, error = %e, "unreadable query page in the composite answer; the stream queries again");
                            Head::Read
                        }
                        Err(e) => {
                            tracing::debug!(stream = %plans[i].name, error = %e, "query in the composite call failed");
                            Head::QueryFailed(e)
                        }
                    };
                    send(i, head, &mut sent);
                }
                Ask::Updated => {
                    updated = answer
                        .ok()
                        .and_then(|v: Value| serde_json::from_value(v).ok());
                }
                Ask::Deleted(i) => {
                    let deleted: Option<DeletedRecords> =
                        answer.ok().and_then(|v| serde_json::from_value(v).ok());
                    let upper = plans[i].incremental.as_ref().map(|inc| inc.upper);
                    let verdict = match (updated.take(), deleted, upper) {
                        (Some(u), Some(d), Some(upper))
                            if u.ids.is_empty() && d.deleted_records.is_empty() =>
                        {
                            covered_until(&u, &d, upper)
                        }
                        _ => None,
                    };
                    match verdict {
                        Some(covered) => {
                            unchanged += 1;
                            send(i, Head::Unchanged { covered }, &mut sent);
                        }
                        None => {
                            changed += 1;
                            later.push_back(i);
                        }
                    }
                }
            }
        }
    }
    for i in 0..plans.len() {
        send(i, Head::Read, &mut sent);
    }
    if calls > 0 {
        tracing::info!(
            composite_calls = calls,
            unchanged,
            changed,
            first_pages = pages,
            "asked Salesforce what changed and fetched first pages in batches"
        );
    }
}

/// [`prepare`] for tests: every head, in plan order.
#[cfg(test)]
pub(crate) async fn prepare_all(
    client: &Client,
    plans: &[StreamPlan],
    now: DateTime<Utc>,
) -> Vec<Head> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    prepare(client.clone(), Arc::new(plans.to_vec()), now, tx).await;
    let mut heads: Vec<Option<Head>> = plans.iter().map(|_| None).collect();
    while let Some((i, head)) = rx.recv().await {
        heads[i] = Some(head);
    }
    heads.into_iter().map(Option::unwrap_or_default).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> DateTime<Utc> {
        parse_timestamp(s).unwrap()
    }

    #[test]
    fn coverage_stops_before_the_minute_salesforce_reports() {
        let u = UpdatedRecords {
            ids: vec![],
            latest_date_covered: Some("2026-11-24T12:34:00.000+0000".into()),
        };
        let d = DeletedRecords {
            deleted_records: vec![],
            earliest_date_available: None,
            latest_date_covered: Some("2026-11-24T12:33:00.000+0000".into()),
        };
        let upper = ts("2026-11-24T12:34:56Z");
        assert_eq!(
            covered_until(&u, &d, upper),
            Some(ts("2026-11-24T12:32:59.999Z")),
            "the earlier answer, minus its (second-less) minute"
        );
        // Never past the planned upper bound.
        assert_eq!(
            covered_until(&u, &d, ts("2026-11-24T12:30:30Z")),
            Some(ts("2026-11-24T12:29:59.999Z"))
        );
        let missing = DeletedRecords {
            latest_date_covered: None,
            ..d
        };
        assert_eq!(covered_until(&u, &missing, upper), None);
    }
}

/// The memory bound, against the emulator.
#[cfg(test)]
mod bound_tests {
    use super::*;
    use crate::config::{Config, RawConfig};
    use crate::plan::plan_stream;
    use crate::source::{Rotation, build_client};
    use airbyte_protocol::{ConfiguredAirbyteStream, JsonObject};
    use serde_json::json;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fetched_pages_wait_for_their_streams_within_the_bound() {
        let org = salesforce_emulator::spawn(salesforce_emulator::Config {
            default_rows: 5,
            extra_custom_objects: 14,
            ..Default::default()
        })
        .await
        .unwrap();
        let raw = json!({"client_id": "emulator-client-id", "client_secret": "emulator-client-secret",
                         "refresh_token": "emulator-refresh-token", "login_url": org.base_url,
                         "start_date": "2015-01-01"});
        let config = Config::from_raw(
            RawConfig::from_json(raw.as_object().unwrap()).unwrap(),
            Utc::now(),
        )
        .unwrap();
        let client = build_client(&config, &Rotation::new(JsonObject::new())).unwrap();
        let names: Vec<String> = (1..=14).map(|i| format!("Bench{i:02}__c")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let describes = client.describe_many(&refs).await.unwrap();
        let plans: Vec<StreamPlan> = names
            .iter()
            .zip(describes)
            .map(|(name, d)| {
                let configured: ConfiguredAirbyteStream = serde_json::from_value(json!({
                    "stream": {"name": name, "json_schema": {"type": "object", "properties": {}},
                               "supported_sync_modes": ["full_refresh", "incremental"]},
                    "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"
                }))
                .unwrap();
                plan_stream(&configured, &d.unwrap(), &config, None, Utc::now()).unwrap()
            })
            .collect();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let producer = tokio::spawn(prepare(client, Arc::new(plans), Utc::now(), tx));
        let mut held = Vec::new();
        while held.len() < HELD_PAGES {
            let (_, head) = rx.recv().await.unwrap();
            assert!(matches!(head, Head::FirstPage(_)), "{head:?}");
            held.push(head);
        }
        // Nothing more while ten pages wait for their streams.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(rx.try_recv().is_err());
        // Streams emit their pages: the rest follows.
        held.clear();
        let mut rest = 0;
        while let Some((_, head)) = rx.recv().await {
            assert!(matches!(head, Head::FirstPage(_)), "{head:?}");
            rest += 1;
        }
        assert_eq!(rest, 14 - HELD_PAGES);
        producer.await.unwrap();
    }
}
