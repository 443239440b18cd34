//! Objects that need more than one plain query, read through the binary: a wide object whose
//! field list does not fit one REST query URL (`Wide__c`, 800 text fields), and
//! `ContentDocumentLink`, which Salesforce answers only with a filter on its parent ids.

use std::collections::{BTreeMap, BTreeSet};

use salesforce_emulator::config::JobOutcome;
use salesforce_emulator::{Config, state::lock};
use serde_json::{Value, json};
use testkit::Run;

use crate::emulator::{
    Org, block_on, configured, cursor_values, discover, emulator_rows, patch_records, read,
    records_of, states_of, statuses,
};

const WIDE: &str = "Wide__c";
const WIDE_FIELDS: u32 = 800;
const WIDE_ROWS: u64 = 450;

fn wide_org() -> Org {
    Org::start(Config {
        default_rows: 2,
        rows: [(WIDE.to_owned(), WIDE_ROWS)].into(),
        wide_object_fields: WIDE_FIELDS,
        ..Config::default()
    })
}

/// Every field of a row as the emulator holds it (REST JSON through the admin read-back).
fn read_back(org: &Org, object: &str, id: &str) -> Value {
    let url = format!("{}/__emulator/records/{object}/{id}", org.handle.base_url);
    block_on(async {
        let resp = reqwest::get(&url).await.unwrap();
        assert!(resp.status().is_success(), "{url}: {}", resp.status());
        resp.json().await.unwrap()
    })
}

/// The records of `stream` by Id, failing on a duplicate.
fn by_id<'a>(run: &'a Run, stream: &str) -> BTreeMap<&'a str, &'a Value> {
    let mut out = BTreeMap::new();
    for r in records_of(run, stream) {
        let data = &r["record"]["data"];
        let id = data["Id"].as_str().expect("every record has an Id");
        assert!(
            out.insert(id, data).is_none(),
            "{stream}: {id} emitted twice"
        );
    }
    out
}

/// Checks a wide read: the emulator's row count, no duplicates, and on every record every
/// catalog field the emulator's row has a value for (nulls are left out, as Airbyte's connector
/// does), text values equal to the emulator's.
fn check_wide_records(org: &Org, run: &Run, catalog_fields: &BTreeSet<String>) {
    let records = by_id(run, WIDE);
    assert_eq!(records.len() as u64, emulator_rows(org, WIDE));
    for (id, data) in &records {
        check_wide_record(org, id, data, catalog_fields);
    }
}

/// One record against the emulator's row: every catalog field with a value, text values equal.
fn check_wide_record(org: &Org, id: &str, data: &Value, catalog_fields: &BTreeSet<String>) {
    let truth = read_back(org, WIDE, id);
    let want: BTreeSet<&str> = catalog_fields
        .iter()
        .filter(|f| !truth[f.as_str()].is_null())
        .map(String::as_str)
        .collect();
    let got: BTreeSet<&str> = data
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let missing: Vec<&&str> = want.difference(&got).collect();
    let extra: Vec<&&str> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{id}: missing {missing:?}, unexpected {extra:?}"
    );
    for f in want
        .iter()
        .filter(|f| f.starts_with("Wide_Text_Field_") || **f == "Name")
    {
        assert_eq!(data[*f], truth[*f], "{id}.{f}");
    }
}

fn wide_catalog(org: &Org, mode: &str) -> (Value, BTreeSet<String>) {
    let catalog = discover(org);
    let configured = configured(&catalog, &[WIDE], mode);
    let fields: BTreeSet<String> = configured["streams"][0]["stream"]["json_schema"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert!(
        fields.len() > WIDE_FIELDS as usize,
        "{} fields discovered",
        fields.len()
    );
    (configured, fields)
}

/// Final STATE of a full refresh: the no-cursor marker; the per-state counts add up.
fn check_full_refresh_states(run: &Run, stream: &str) {
    let states = states_of(run, stream);
    let last = states.last().expect("a final STATE");
    assert_eq!(
        last["state"]["stream"]["stream_state"],
        json!({"__ab_no_cursor_state_message": true})
    );
    let counted: f64 = states
        .iter()
        .map(|s| s["state"]["sourceStats"]["recordCount"].as_f64().unwrap())
        .sum();
    assert_eq!(counted as usize, records_of(run, stream).len());
}

/// The cursor values of a run's STATEs: never going back; the last at least every record's.
fn check_incremental_states(run: &Run, stream: &str) -> Value {
    let states = states_of(run, stream);
    let cursors = cursor_values(run, stream);
    assert!(cursors.windows(2).all(|w| w[0] <= w[1]), "{cursors:?}");
    let last = cursors.last().unwrap().as_str();
    let newest = records_of(run, stream)
        .iter()
        .map(|r| r["record"]["data"]["SystemModstamp"].as_str().unwrap())
        .max()
        .unwrap_or("");
    assert!(
        newest < last,
        "final state {last} covers every record ({newest})"
    );
    let counted: f64 = states
        .iter()
        .map(|s| s["state"]["sourceStats"]["recordCount"].as_f64().unwrap())
        .sum();
    assert_eq!(counted as usize, records_of(run, stream).len());
    states.last().unwrap()["state"].clone()
}

/// The default read of a wide object: one Bulk job (no URI limit on a POST body).
#[test]
fn wide_object_full_refresh_and_incremental() {
    let org = wide_org();
    let (full, fields) = wide_catalog(&org, "full_refresh");
    org.reset_calls();
    let run = read(&org, &full, None);
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    // Bulk carries the SOQL in a POST body, so one job reads every field at once.
    assert_eq!(
        org.calls_by_endpoint()
            .get("POST /services/data/{version}/jobs/query"),
        Some(&1),
        "{:?}",
        org.calls_by_endpoint()
    );
    assert_eq!(statuses(&run, WIDE), ["STARTED", "RUNNING", "COMPLETE"]);
    check_wide_records(&org, &run, &fields);
    check_full_refresh_states(&run, WIDE);

    let (incremental, _) = wide_catalog(&org, "incremental");
    let first = read(&org, &incremental, None);
    assert_eq!(first.code(), Some(0), "stderr: {}", first.stderr);
    assert_eq!(statuses(&first, WIDE), ["STARTED", "RUNNING", "COMPLETE"]);
    check_wide_records(&org, &first, &fields);
    let state = check_incremental_states(&first, WIDE);

    // Nothing changed: the next run emits nothing and keeps its place.
    let second = read(&org, &incremental, Some(&json!([state])));
    assert_eq!(second.code(), Some(0), "stderr: {}", second.stderr);
    assert_eq!(records_of(&second, WIDE).len(), 0);
    assert_eq!(statuses(&second, WIDE), ["STARTED", "COMPLETE"]);
}

/// With Bulk API unavailable for the object (its job fails), the wide object is read through
/// REST as column-chunk queries joined by Id, with the same result.
#[test]
fn wide_object_through_rest_column_chunks() {
    let org = wide_org();
    let (full, fields) = wide_catalog(&org, "full_refresh");
    lock(&org.handle.state.faults).next_job = Some(JobOutcome::Failed);
    org.reset_calls();
    let run = read(&org, &full, None);
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert!(
        run.stderr.contains("joining them by Id"),
        "read in column chunks: {}",
        run.stderr
    );
    assert_eq!(statuses(&run, WIDE), ["STARTED", "RUNNING", "COMPLETE"]);
    check_wide_records(&org, &run, &fields);
    check_full_refresh_states(&run, WIDE);

    let (incremental, _) = wide_catalog(&org, "incremental");
    lock(&org.handle.state.faults).next_job = Some(JobOutcome::Failed);
    let first = read(&org, &incremental, None);
    assert_eq!(first.code(), Some(0), "stderr: {}", first.stderr);
    assert!(
        first.stderr.contains("joining them by Id"),
        "{}",
        first.stderr
    );
    assert_eq!(statuses(&first, WIDE), ["STARTED", "RUNNING", "COMPLETE"]);
    check_wide_records(&org, &first, &fields);
    let state = check_incremental_states(&first, WIDE);

    // Two rows change: the next run (REST again) returns exactly them, every field joined.
    let ids: Vec<String> = by_id(&first, WIDE)
        .keys()
        .take(2)
        .map(|s| (*s).to_owned())
        .collect();
    let rows: Vec<Value> = ids
        .iter()
        .map(|id| json!({"Id": id, "Wide_Text_Field_0800__c": format!("changed {id}")}))
        .collect();
    patch_records(&org, WIDE, rows);
    lock(&org.handle.state.faults).next_job = Some(JobOutcome::Failed);
    let second = read(&org, &incremental, Some(&json!([state])));
    assert_eq!(second.code(), Some(0), "stderr: {}", second.stderr);
    let changed = by_id(&second, WIDE);
    assert_eq!(
        changed.keys().copied().collect::<Vec<_>>(),
        ids.iter().map(String::as_str).collect::<Vec<_>>()
    );
    for (id, data) in &changed {
        assert_eq!(
            data["Wide_Text_Field_0800__c"],
            json!(format!("changed {id}"))
        );
        check_wide_record(&org, id, data, &fields);
    }
    check_incremental_states(&second, WIDE);
}

const LINK: &str = "ContentDocumentLink";

/// The Ids of every row of `object` the emulator holds (soft-deleted ones too, as queryAll
/// returns them), straight from its store.
fn emulator_ids(org: &Org, object: &str) -> BTreeSet<String> {
    let snap = org.handle.state.snapshot();
    let obj = snap.schema.index(object).expect("object exists");
    (0..)
        .map_while(|idx| snap.row(obj, idx))
        .filter(|r| r.visible(true))
        .map(|r| r.id())
        .collect()
}

fn link_org(documents: u64, links: u64) -> Org {
    Org::start(Config {
        default_rows: 2,
        rows: [
            ("ContentDocument".to_owned(), documents),
            (LINK.to_owned(), links),
        ]
        .into(),
        content_document_link: true,
        ..Config::default()
    })
}

#[test]
fn content_document_links_are_read_by_parent_batches() {
    const DOCUMENTS: u64 = 1_100;
    // About 2,700 links per query: their results come in several pages.
    const LINKS: u64 = 6_000;
    let org = link_org(DOCUMENTS, LINKS);
    let catalog = discover(&org);
    let stream = catalog["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == LINK)
        .expect("ContentDocumentLink is discovered");
    // Salesforce cannot filter it by a cursor: full refresh only, as in Airbyte's connector.
    assert_eq!(stream["supported_sync_modes"], json!(["full_refresh"]));
    let configured = configured(&catalog, &[LINK], "full_refresh");
    org.reset_calls();
    let run = read(&org, &configured, None);
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert_eq!(statuses(&run, LINK), ["STARTED", "RUNNING", "COMPLETE"]);
    let records = by_id(&run, LINK);
    let got: BTreeSet<String> = records.keys().map(|s| (*s).to_owned()).collect();
    let want = emulator_ids(&org, LINK);
    assert_eq!(want.len() as u64, LINKS);
    assert_eq!(got, want, "exactly the emulator's links");
    // Values: the parent reference and the picklists as the emulator holds them.
    for (id, data) in records.iter().step_by(97) {
        let truth = read_back(&org, LINK, id);
        for f in [
            "ContentDocumentId",
            "LinkedEntityId",
            "ShareType",
            "Visibility",
        ] {
            assert_eq!(data[f], truth[f], "{id}.{f}");
        }
    }
    check_full_refresh_states(&run, LINK);
    // One call lists the parents (2,000 ids a page); each link query carries as many parent ids
    // as its URI holds (over 400 of 18 characters, where Airbyte's connector sends 200), plus
    // the result pages beyond the first of each query.
    let calls = org.calls();
    let bound = DOCUMENTS.div_ceil(2_000) + DOCUMENTS.div_ceil(400) + LINKS.div_ceil(2_000);
    assert!(
        calls <= bound,
        "{calls} calls (at most {bound}): {:?}",
        org.calls_by_endpoint()
    );
}

/// An org without files: the stream is empty and complete, after one call.
#[test]
fn content_document_links_without_documents() {
    let org = link_org(0, 0);
    let configured = configured(&discover(&org), &[LINK], "full_refresh");
    org.reset_calls();
    let run = read(&org, &configured, None);
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert_eq!(statuses(&run, LINK), ["STARTED", "COMPLETE"]);
    assert!(records_of(&run, LINK).is_empty());
    check_full_refresh_states(&run, LINK);
    assert_eq!(org.calls(), 1, "{:?}", org.calls_by_endpoint());
}
