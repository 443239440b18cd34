//! The binary under the emulator's injected faults (salesforce-api.md §6; emulator `Faults`): each
//! read ends with every row emitted exactly once, either within the run (retries, a new login, a
//! fallback) or, where the fault ends the run, in a second run resumed from the state it saved.

use std::collections::BTreeSet;

use salesforce_emulator::config::JobOutcome;
use salesforce_emulator::{Config, state::lock};
use serde_json::{Value, json};
use testkit::Run;

use crate::emulator::{
    Org, configured, discover, emulator_rows, final_states, read, records_of, statuses,
};

/// Account is large enough for Bulk (over the 10,000 rows the source reads through REST); Contact
/// and Attachment (base64 `Body`) go through REST.
fn org() -> Org {
    Org::start(Config {
        default_rows: 3,
        rows: [
            ("Account".to_owned(), 20_000),
            ("Contact".to_owned(), 300),
            ("Attachment".to_owned(), 2_500),
        ]
        .into(),
        ..Config::default()
    })
}

fn ids(run: &Run, stream: &str) -> Vec<String> {
    records_of(run, stream)
        .iter()
        .map(|m| {
            m["record"]["data"]["Id"]
                .as_str()
                .unwrap_or_else(|| panic!("record without Id: {m}"))
                .to_owned()
        })
        .collect()
}

/// Asserts `ids` holds every row of `stream` in the emulator, each once.
fn assert_exactly_once(org: &Org, stream: &str, ids: &[String], context: &str) {
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        distinct.len(),
        ids.len(),
        "{stream}: duplicates ({context})"
    );
    assert_eq!(
        ids.len() as u64,
        emulator_rows(org, stream),
        "{stream}: rows emitted vs rows in the org ({context})"
    );
}

/// Asserts the run exited 0 and every stream in `streams` read all its rows once and is COMPLETE.
fn assert_complete(org: &Org, run: &Run, streams: &[&str]) {
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    for stream in streams {
        assert_exactly_once(org, stream, &ids(run, stream), "one run");
        assert_eq!(
            statuses(run, stream).last().map(String::as_str),
            Some("COMPLETE"),
            "{stream}: {:?}",
            statuses(run, stream)
        );
    }
}

const STREAMS: [&str; 3] = ["Account", "Contact", "Attachment"];

/// 503s on a quarter of all calls (§6.1: retry with backoff) cost retries, not rows.
#[test]
fn server_unavailable_responses_are_retried() {
    let org = org();
    let catalog = configured(&discover(&org), &STREAMS, "full_refresh");
    {
        let mut faults = lock(&org.handle.state.faults);
        faults.error_rate = 0.25;
        faults.error_status = 503;
    }
    let run = read(&org, &catalog, None);
    lock(&org.handle.state.faults).error_rate = 0.0;
    assert_complete(&org, &run, &STREAMS);
}

/// `REQUEST_LIMIT_EXCEEDED` for concurrent requests (§6.3) is a pause-and-retry, never the daily
/// limit: no stream ends RATE_LIMITED and nothing is skipped.
#[test]
fn concurrent_request_limit_is_retried_not_mistaken_for_the_daily_limit() {
    let org = org();
    let catalog = configured(&discover(&org), &STREAMS, "incremental");
    lock(&org.handle.state.faults).concurrent_limit_rate = 0.25;
    let run = read(&org, &catalog, None);
    lock(&org.handle.state.faults).concurrent_limit_rate = 0.0;
    assert_complete(&org, &run, &STREAMS);
    let rate_limited = run
        .of_type("TRACE")
        .into_iter()
        .filter(|m| {
            m["trace"]["stream_status"]["reasons"]
                .to_string()
                .contains("RATE_LIMITED")
        })
        .count();
    assert_eq!(rate_limited, 0, "{:#?}", run.of_type("TRACE"));
}

/// Access tokens that expire after three seconds (§1.6: 401 `INVALID_SESSION_ID`; real orgs allow
/// 15 minutes at the least) with slow responses, plus one 401 for certain: the source logs in
/// again as often as needed and finishes.
#[test]
fn access_tokens_expiring_mid_read_mean_a_new_login() {
    let org = org();
    let catalog = configured(&discover(&org), &STREAMS, "incremental");
    {
        let mut faults = lock(&org.handle.state.faults);
        faults.token_lifetime_secs = Some(3);
        faults.latency_ms = 150;
        // The second call answered 401 INVALID_SESSION_ID for certain, whatever the timing.
        faults.script = vec![200, 401];
    }
    let run = read(&org, &catalog, None);
    let unused_script = {
        let mut faults = lock(&org.handle.state.faults);
        faults.token_lifetime_secs = None;
        faults.latency_ms = 0;
        std::mem::take(&mut faults.script)
    };
    assert!(
        unused_script.is_empty(),
        "the 401s never fired: {unused_script:?}"
    );
    assert_complete(&org, &run, &STREAMS);
}

/// A Bulk job that ends `Failed` (§5.3) sends that object to REST (as Airbyte's source does); the
/// stream still reads every row once.
#[test]
fn a_failed_bulk_job_falls_back_to_rest() {
    let org = org();
    let catalog = configured(&discover(&org), &["Account"], "full_refresh");
    lock(&org.handle.state.faults).next_job = Some(JobOutcome::Failed);
    let run = read(&org, &catalog, None);
    assert!(
        lock(&org.handle.state.faults).next_job.is_none(),
        "no Bulk job was created: the fault never fired"
    );
    assert_complete(&org, &run, &["Account"]);
    let rest_queries: u64 = org
        .calls_by_endpoint()
        .iter()
        .filter(|(endpoint, _)| endpoint.contains("/queryAll") && !endpoint.contains("jobs"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        rest_queries > 0,
        "no REST fallback: {:?}",
        org.calls_by_endpoint()
    );
}

/// A Bulk job `Aborted` by someone else (§5.3) fails that stream (INCOMPLETE, exit non-zero) while
/// the others finish; the next incremental run, given the saved state, reads what is missing.
#[test]
fn an_aborted_bulk_job_is_resumed_by_the_next_run() {
    let org = org();
    let catalog = configured(&discover(&org), &STREAMS, "incremental");
    lock(&org.handle.state.faults).next_job = Some(JobOutcome::Aborted);
    let first = read(&org, &catalog, None);
    assert_ne!(
        first.code(),
        Some(0),
        "an aborted job must not end the run as a success"
    );
    let incomplete: Vec<&str> = STREAMS
        .into_iter()
        .filter(|s| statuses(&first, s).last().map(String::as_str) == Some("INCOMPLETE"))
        .collect();
    assert_eq!(
        incomplete.len(),
        1,
        "exactly the aborted stream fails: {incomplete:?}"
    );
    let second = read(&org, &catalog, Some(&final_states(&first)));
    assert_eq!(second.code(), Some(0), "stderr: {}", second.stderr);
    for stream in STREAMS {
        let mut all = ids(&first, stream);
        all.extend(ids(&second, stream));
        let distinct: BTreeSet<String> = all.into_iter().collect();
        assert_eq!(
            distinct.len() as u64,
            emulator_rows(&org, stream),
            "{stream}: rows of both runs together"
        );
        assert_eq!(
            statuses(&second, stream).last().map(String::as_str),
            Some("COMPLETE")
        );
    }
}

/// Rows written with a SystemModstamp that becomes visible only later (§4.2, late-visible
/// records) are not lost: a row stamped before the cursor of a run that could not yet see it
/// is read by the next run, through `lookback_window` (default 10 minutes).
#[test]
fn late_visible_rows_are_found_by_the_next_run() {
    let org = org();
    let catalog = configured(&discover(&org), &["Contact"], "incremental");
    let first = read(&org, &catalog, None);
    assert_complete(&org, &first, &["Contact"]);

    lock(&org.handle.state.faults).late_visible_ms = 1_500;
    let late = insert_contacts(&org, "Late", 5);
    lock(&org.handle.state.faults).late_visible_ms = 0;
    std::thread::sleep(std::time::Duration::from_millis(20));
    let visible = insert_contacts(&org, "Visible", 3);

    let second = read(&org, &catalog, Some(&final_states(&first)));
    assert_eq!(second.code(), Some(0), "stderr: {}", second.stderr);
    let second_ids: BTreeSet<String> = ids(&second, "Contact").into_iter().collect();
    assert!(
        visible.is_subset(&second_ids),
        "visible rows missing from the second run"
    );
    assert!(
        late.is_disjoint(&second_ids),
        "late rows were already visible: the fault did not hold them back"
    );

    std::thread::sleep(std::time::Duration::from_millis(1_600));
    let third = read(&org, &catalog, Some(&final_states(&second)));
    assert_eq!(third.code(), Some(0), "stderr: {}", third.stderr);
    let third_ids: BTreeSet<String> = ids(&third, "Contact").into_iter().collect();
    assert!(
        late.is_subset(&third_ids),
        "late-visible rows lost: {:?} not in the third run",
        late.difference(&third_ids).collect::<Vec<_>>()
    );
}

/// Inserts `n` Contacts through the emulator's admin API; returns their Ids.
fn insert_contacts(org: &Org, prefix: &str, n: usize) -> BTreeSet<String> {
    let records: Vec<Value> = (0..n)
        .map(|i| json!({"LastName": format!("{prefix} {i}")}))
        .collect();
    let url = format!("{}/__emulator/records/Contact", org.handle.base_url);
    let body: Value = crate::emulator::block_on(async move {
        reqwest::Client::new()
            .post(url)
            .json(&json!({ "records": records }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let ids: BTreeSet<String> = body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("unexpected admin answer: {body}"))
        .iter()
        .map(|r| {
            r["id"]
                .as_str()
                .unwrap_or_else(|| panic!("not inserted: {r}"))
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), n, "{body}");
    ids
}

/// A field Bulk API cannot write into CSV (`complexvalue`, salesforce-api.md §5.1: job creation
/// answers `FeatureNotEnabled : Cannot serialize value for ...`) sends that object to REST, which
/// returns the field; Airbyte's source fails such a stream instead.
#[test]
fn an_object_with_a_complexvalue_field_is_read_through_rest() {
    let org = Org::start(Config {
        default_rows: 3,
        rows: [("Shipment__c".to_owned(), 20_000)].into(),
        ..Config::default()
    });
    let catalog = configured(&discover(&org), &["Shipment__c"], "full_refresh");
    org.reset_calls();
    let run = read(&org, &catalog, None);
    assert_complete(&org, &run, &["Shipment__c"]);
    let by = org.calls_by_endpoint();
    assert_eq!(
        by.get("POST /services/data/{version}/jobs/query"),
        Some(&1),
        "one refused Bulk job: {by:?}"
    );
    let records = records_of(&run, "Shipment__c");
    let with_value = records
        .iter()
        .filter(|m| m["record"]["data"]["Record_Types__c"].is_string())
        .count();
    assert!(
        with_value > 0,
        "the complexvalue field never arrived as text"
    );
}

/// Every Id of `object` in the emulator (queryAll semantics), read through its REST API page by
/// page; call it while no fault is armed.
fn org_ids(org: &Org, object: &str) -> BTreeSet<String> {
    let base = org.handle.base_url.clone();
    let soql = format!("SELECT Id FROM {object}");
    crate::emulator::block_on(async move {
        let http = reqwest::Client::new();
        let token: Value = http
            .post(format!("{base}/services/oauth2/token"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", "emulator-client-id"),
                ("client_secret", "emulator-client-secret"),
                ("refresh_token", "emulator-refresh-token"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let access = token["access_token"].as_str().unwrap().to_owned();
        let mut ids = BTreeSet::new();
        let mut request = http
            .get(format!("{base}/services/data/v62.0/queryAll/"))
            .query(&[("q", soql)]);
        loop {
            let page: Value = request
                .bearer_auth(&access)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for r in page["records"].as_array().unwrap() {
                ids.insert(r["Id"].as_str().unwrap().to_owned());
            }
            match page["nextRecordsUrl"].as_str() {
                Some(next) => request = http.get(format!("{base}{next}")),
                None => break,
            }
        }
        ids
    })
}

/// Asserts the run exited 0, and emitted each Id of `stream` in the org exactly once, ending
/// COMPLETE.
fn assert_exact_ids(run: &Run, stream: &str, expected: &BTreeSet<String>) {
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let emitted = ids(run, stream);
    let distinct: BTreeSet<String> = emitted.iter().cloned().collect();
    assert_eq!(distinct.len(), emitted.len(), "{stream}: duplicates");
    assert_eq!(
        distinct.difference(expected).count() + expected.difference(&distinct).count(),
        0,
        "{stream}: missing {:?}, unexpected {:?}",
        expected.difference(&distinct).take(5).collect::<Vec<_>>(),
        distinct.difference(expected).take(5).collect::<Vec<_>>()
    );
    assert_eq!(
        statuses(run, stream).last().map(String::as_str),
        Some("COMPLETE"),
        "{stream}: {:?}",
        statuses(run, stream)
    );
}

/// Arms `rest_reset_after_bytes`, reads `streams` in `mode`, and checks the fault fired.
fn read_with_a_broken_page(org: &Org, streams: &[&str], mode: &str, setup: impl FnOnce()) -> Run {
    let catalog = configured(&discover(org), streams, mode);
    org.reset_calls();
    setup();
    lock(&org.handle.state.faults).rest_reset_after_bytes = Some(4_000);
    let run = read(org, &catalog, None);
    assert!(
        lock(&org.handle.state.faults)
            .rest_reset_after_bytes
            .is_none(),
        "no REST query page was served: the fault never fired"
    );
    run
}

/// REST query calls of the run by kind: (`queryAll` statements, `nextRecordsUrl` pages).
fn rest_query_calls(org: &Org) -> (u64, u64) {
    let by = org.calls_by_endpoint();
    eprintln!("{by:?}");
    let count =
        |f: &dyn Fn(&str) -> bool| -> u64 { by.iter().filter(|(e, _)| f(e)).map(|(_, n)| n).sum() };
    (
        count(&|e| e.ends_with("/queryAll") || e.ends_with("/queryAll/")),
        count(&|e| e.contains("/query/{")),
    )
}

/// Incremental: a `nextRecordsUrl` page cut mid-body cannot be fetched again (Salesforce
/// serves a query locator once; the emulator drops it after its last page, so a second GET
/// answers INVALID_QUERY_LOCATOR). The source runs the stream's query again from the last
/// cursor value it emitted and skips the rows at that value it already sent: every row once.
#[test]
fn a_broken_rest_page_is_read_again_from_the_last_cursor_value() {
    let org = org();
    let expected = [
        ("Attachment", org_ids(&org, "Attachment")),
        ("Contact", org_ids(&org, "Contact")),
    ];
    let run = read_with_a_broken_page(&org, &["Attachment", "Contact"], "incremental", || {});
    for (stream, ids) in &expected {
        assert_exact_ids(&run, stream, ids);
    }
    let (statements, pages) = rest_query_calls(&org);
    assert_eq!(
        (statements, pages),
        (1, 1),
        "one re-run statement, the broken page fetched once"
    );
}

/// Full refresh (REST ordered by Id): the re-run reads the rows after the last Id emitted.
#[test]
fn a_broken_rest_page_is_read_again_after_the_last_id() {
    let org = org();
    let expected = org_ids(&org, "Attachment");
    let run = read_with_a_broken_page(&org, &["Attachment"], "full_refresh", || {});
    assert_exact_ids(&run, "Attachment", &expected);
    let (statements, pages) = rest_query_calls(&org);
    assert_eq!(
        (statements, pages),
        (1, 1),
        "one re-run statement, the broken page fetched once"
    );
}

/// A statement's first page cut mid-body (here the REST read of Account after its Bulk job
/// failed; first pages fetched in `/composite` calls are not cut) is asked for again: the
/// statement, unlike a locator, can run twice.
#[test]
fn a_broken_first_page_of_a_rest_query_is_fetched_again() {
    let org = org();
    let expected = org_ids(&org, "Account");
    let run = read_with_a_broken_page(&org, &["Account"], "full_refresh", || {
        lock(&org.handle.state.faults).next_job = Some(JobOutcome::Failed);
    });
    assert!(
        lock(&org.handle.state.faults).next_job.is_none(),
        "no Bulk job was created: the fault never fired"
    );
    assert_exact_ids(&run, "Account", &expected);
    let (statements, _) = rest_query_calls(&org);
    assert_eq!(statements, 2, "the cut first page, and once more");
}
