//! Runs that are cut short, through the binary: the daily API limit (the RATE_LIMITED reason and
//! its `quota_reset`, then the resumed run) and a connection reset in the middle of a Bulk result
//! body (the page is fetched again within the run). Every case asserts exact Id sets.

use std::collections::BTreeSet;

use salesforce_emulator::{Config, state::lock};
use serde_json::{Value, json};
use testkit::Run;

use crate::emulator::{
    Org, configured, discover, emulator_rows, read, read_with, records_of, states_of, statuses,
};

/// A rolling window of Salesforce's daily allocation, in ms.
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The Ids a run emitted for `stream`, in order.
fn ids(run: &Run, stream: &str) -> Vec<String> {
    records_of(run, stream)
        .iter()
        .map(|m| m["record"]["data"]["Id"].as_str().unwrap().to_owned())
        .collect()
}

fn distinct(ids: &[String]) -> BTreeSet<String> {
    let set: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(set.len(), ids.len(), "no Id emitted twice");
    set
}

/// Every Id of `object` in the emulator (soft-deleted rows too, as queryAll returns them).
fn emulator_ids(org: &Org, object: &str) -> BTreeSet<String> {
    let snap = org.handle.state.snapshot();
    let obj = snap.schema.index(object).expect("object exists");
    (0..)
        .map_while(|idx| snap.row(obj, idx))
        .filter(|r| r.visible(true))
        .map(|r| r.id())
        .collect()
}

/// The daily limit reached mid-stream (emulator fault `daily_limit`): the stream saves its
/// progress and ends INCOMPLETE with the RATE_LIMITED reason, whose `quota_reset` says when the
/// rolling 24-hour allocation has recovered; the run exits 0 and the next run finishes the
/// stream with no row missing.
#[test]
fn daily_limit_reports_quota_reset_and_the_next_run_resumes() {
    const STREAM: &str = "Attachment";
    let org = Org::start(Config {
        default_rows: 2,
        rows: [(STREAM.to_owned(), 9_000)].into(),
        ..Config::default()
    });
    let catalog = configured(&discover(&org), &[STREAM], "incremental");
    let mut settings = org.config();
    settings["lookback_window"] = json!("PT0S");
    // Attachment goes through REST (base64 Body): 2,000 rows a page. Three more calls are
    // allowed: the first page (in a /composite call) and two more pages.
    let used = lock(&org.handle.state.counters).daily_used;
    lock(&org.handle.state.faults).daily_limit = Some(used + 3);
    let before = now_ms();
    let first = read_with(&settings, &catalog, None);
    let after = now_ms();
    assert_eq!(first.code(), Some(0), "stderr: {}", first.stderr);
    assert_eq!(
        statuses(&first, STREAM),
        ["STARTED", "RUNNING", "INCOMPLETE"]
    );
    let incomplete: Vec<&Value> = first
        .of_type("TRACE")
        .into_iter()
        .filter(|m| m["trace"]["stream_status"]["status"] == "INCOMPLETE")
        .collect();
    assert_eq!(incomplete.len(), 1);
    let reason = &incomplete[0]["trace"]["stream_status"]["reasons"][0];
    assert_eq!(reason["type"], "RATE_LIMITED", "{reason}");
    let reset = reason["rate_limited"]["quota_reset"]
        .as_i64()
        .unwrap_or_else(|| panic!("no quota_reset: {reason}"));
    assert!(
        (before + DAY_MS..=after + DAY_MS).contains(&reset),
        "quota_reset {reset} is one rolling window after the limit was hit ({before}..{after})"
    );
    assert!(
        first
            .of_type("TRACE")
            .iter()
            .all(|m| m["trace"]["type"] != "ERROR")
    );
    let got = ids(&first, STREAM);
    assert!(
        !got.is_empty() && got.len() < 9_000,
        "{} rows before the limit",
        got.len()
    );
    let state = states_of(&first, STREAM).last().unwrap()["state"].clone();

    // The allocation recovers; the next run resumes from the saved state.
    lock(&org.handle.state.faults).daily_limit = None;
    let second = read_with(&settings, &catalog, Some(&json!([state])));
    assert_eq!(second.code(), Some(0), "stderr: {}", second.stderr);
    assert_eq!(
        statuses(&second, STREAM),
        ["STARTED", "RUNNING", "COMPLETE"]
    );
    let resumed = ids(&second, STREAM);
    assert!(resumed.len() < 9_000, "the second run does not start over");
    let mut all = distinct(&got);
    all.extend(distinct(&resumed));
    assert_eq!(all, emulator_ids(&org, STREAM), "no row missing");
}

/// Streams the budget or the limit stops before they start carry the same reason.
#[test]
fn daily_limit_before_any_read_marks_every_stream_rate_limited() {
    let org = Org::start(Config {
        default_rows: 3,
        ..Config::default()
    });
    let catalog = discover(&org);
    let mut catalog = configured(&catalog, &["Account", "Contact"], "full_refresh");
    // Without the catalog annotations the run must describe first, and that call is refused.
    for s in catalog["streams"].as_array_mut().unwrap() {
        s["stream"]["json_schema"] = json!({"type": "object", "properties": {"Id": {}}});
    }
    let used = lock(&org.handle.state.counters).daily_used;
    lock(&org.handle.state.faults).daily_limit = Some(used);
    let before = now_ms();
    let run = read(&org, &catalog, None);
    let after = now_ms();
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    for stream in ["Account", "Contact"] {
        assert_eq!(
            statuses(&run, stream),
            ["STARTED", "INCOMPLETE"],
            "{stream}"
        );
        assert!(records_of(&run, stream).is_empty());
    }
    let resets: Vec<i64> = run
        .of_type("TRACE")
        .into_iter()
        .filter(|m| m["trace"]["stream_status"]["status"] == "INCOMPLETE")
        .map(|m| {
            let reason = &m["trace"]["stream_status"]["reasons"][0];
            assert_eq!(reason["type"], "RATE_LIMITED");
            reason["rate_limited"]["quota_reset"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(resets.len(), 2);
    assert!(
        resets
            .iter()
            .all(|r| (before + DAY_MS..=after + DAY_MS).contains(r)),
        "{resets:?}"
    );
}

const RESULTS: &str = "GET /services/data/{version}/jobs/query/{job}/results";

/// A connection reset in the middle of a Bulk result body (emulator fault `reset_after_bytes`):
/// the page is fetched again by its locator within the run and the rows already emitted are
/// skipped, so a full refresh and an incremental read both emit every row exactly once.
#[test]
fn a_reset_bulk_result_body_is_fetched_again_without_loss_or_duplicates() {
    const STREAM: &str = "Account";
    const ROWS: u64 = 25_000;
    let org = Org::start(Config {
        default_rows: 2,
        rows: [(STREAM.to_owned(), ROWS)].into(),
        ..Config::default()
    });
    let catalog = discover(&org);
    for mode in ["full_refresh", "incremental"] {
        let configured = configured(&catalog, &[STREAM], mode);
        org.reset_calls();
        lock(&org.handle.state.faults).reset_after_bytes = Some(300_000);
        let run = read(&org, &configured, None);
        assert_eq!(run.code(), Some(0), "{mode}: stderr: {}", run.stderr);
        assert!(
            lock(&org.handle.state.faults).reset_after_bytes.is_none(),
            "{mode}: no Bulk result was downloaded"
        );
        // One result page (under 250,000 rows), requested twice: the cut one and its re-fetch.
        assert_eq!(
            org.calls_by_endpoint().get(RESULTS),
            Some(&2),
            "{mode}: {:?}",
            org.calls_by_endpoint()
        );
        assert!(
            run.stderr.contains("broke off"),
            "{mode}: the body was cut: {}",
            run.stderr
        );
        assert_eq!(
            statuses(&run, STREAM),
            ["STARTED", "RUNNING", "COMPLETE"],
            "{mode}"
        );
        let got = distinct(&ids(&run, STREAM));
        assert_eq!(got.len() as u64, emulator_rows(&org, STREAM), "{mode}");
        assert_eq!(got, emulator_ids(&org, STREAM), "{mode}");
    }
}
