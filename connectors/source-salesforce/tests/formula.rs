//! `formula_refresh_schedule` against the emulator: `Invoice__c.Account_Name__c` is the
//! cross-object formula `Account__r.Name`, so renaming an Account changes invoices without
//! moving their `SystemModstamp`, as in a real org.

use std::collections::BTreeMap;

use salesforce_emulator::{Config, state::lock};
use serde_json::{Value, json};
use testkit::{Run, json_file, run_connector};

use crate::emulator::{
    Org, bin, configured, cursor_values, discover, emulator_rows, patch_records, path, read_with,
    records_of, states_of, statuses,
};

/// Never due within a test run once the key is recent: every 1 January at 00:00 UTC.
const YEARLY: &str = "0 0 1 1 *";

/// A refresh time the yearly schedule has fired after many times since.
const LONG_AGO: &str = "2020-06-01T00:00:00.000Z";

fn org(invoices: u64) -> Org {
    Org::start(Config {
        default_rows: 2,
        rows: [
            ("Account".to_owned(), 6),
            ("Invoice__c".to_owned(), invoices),
        ]
        .into(),
        ..Config::default()
    })
}

fn with_schedule(org: &Org, schedule: Option<&str>) -> Value {
    let mut config = org.config();
    if let Some(s) = schedule {
        config["formula_refresh_schedule"] = json!(s);
    }
    config
}

/// The stream state of the run's last STATE for `stream`.
fn last_state(run: &Run, stream: &str) -> Value {
    states_of(run, stream)
        .last()
        .unwrap_or_else(|| panic!("no STATE for {stream}"))["state"]["stream"]["stream_state"]
        .clone()
}

/// An input state (one STREAM state) for `Invoice__c` holding `stream_state`.
fn input(stream_state: &Value) -> Value {
    json!([{"type": "STREAM", "stream": {
        "stream_descriptor": {"name": "Invoice__c"},
        "stream_state": stream_state
    }}])
}

/// Renames every Account; returns the new name by Account Id.
fn rename_accounts(org: &Org, run: &Run) -> BTreeMap<String, String> {
    let mut ids: Vec<String> = records_of(run, "Invoice__c")
        .iter()
        .filter_map(|r| {
            r["record"]["data"]["Account__c"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert!(!ids.is_empty(), "the invoices reference accounts");
    let names: BTreeMap<String, String> = ids
        .iter()
        .map(|id| (id.clone(), format!("Renamed {id}")))
        .collect();
    let rows = names
        .iter()
        .map(|(id, name)| json!({"Id": id, "Name": name}))
        .collect();
    patch_records(org, "Account", rows);
    names
}

/// Invoices of the run that show the new Account name.
fn renamed_invoices(run: &Run, names: &BTreeMap<String, String>) -> usize {
    records_of(run, "Invoice__c")
        .iter()
        .filter(|r| {
            let d = &r["record"]["data"];
            d["Account__c"]
                .as_str()
                .and_then(|id| names.get(id))
                .is_some_and(|n| d["Account_Name__c"] == json!(n))
        })
        .count()
}

fn cursors(run: &Run) -> Vec<String> {
    cursor_values(run, "Invoice__c")
}

/// A first sync, then a run with its state that is not due. Returns that state, the same state
/// made due (`formula_refreshed_at` long ago) and the API calls of the run that was not due.
fn recent_and_due_states(org: &Org, config: &Value, catalog: &Value) -> (Value, Value, u64) {
    let (first, _) = read_counted(org, config, catalog, None);
    let recent = last_state(&first, "Invoice__c");
    let (_, calls_not_due) = read_counted(org, config, catalog, Some(&input(&recent)));
    let mut due = recent.clone();
    due["formula_refreshed_at"] = json!(LONG_AGO);
    (recent, due, calls_not_due)
}

fn read_counted(org: &Org, config: &Value, catalog: &Value, state: Option<&Value>) -> (Run, u64) {
    org.reset_calls();
    let run = read_with(config, catalog, state);
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    (run, org.calls())
}

#[test]
fn discover_marks_formula_fields() {
    let org = org(5);
    let catalog = discover(&org);
    let invoice = catalog["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "Invoice__c")
        .unwrap();
    let p = &invoice["json_schema"]["properties"];
    assert_eq!(p["Account_Name__c"]["x-salesforce-calculated"], true);
    assert_eq!(p["Total__c"]["x-salesforce-calculated"], true);
    assert!(p["Amount__c"].get("x-salesforce-calculated").is_none());
}

#[test]
fn without_a_schedule_nothing_changes_and_formula_changes_are_missed() {
    let org = org(40);
    let catalog = configured(&discover(&org), &["Invoice__c"], "incremental");
    let off = with_schedule(&org, None);
    let (first, _) = read_counted(&org, &off, &catalog, None);
    assert_eq!(
        records_of(&first, "Invoice__c").len() as u64,
        emulator_rows(&org, "Invoice__c")
    );
    for s in states_of(&first, "Invoice__c") {
        let state = &s["state"]["stream"]["stream_state"];
        assert!(state.get("formula_refreshed_at").is_none(), "{state}");
    }
    let names = rename_accounts(&org, &first);
    let state = input(&last_state(&first, "Invoice__c"));
    let (second, calls_off) = read_counted(&org, &off, &catalog, Some(&state));
    assert_eq!(
        renamed_invoices(&second, &names),
        0,
        "the incremental read cannot see a formula change (the reason for the schedule)"
    );
    assert!(
        last_state(&second, "Invoice__c")
            .get("formula_refreshed_at")
            .is_none()
    );
    // An empty schedule is off too, at the same cost.
    let empty = with_schedule(&org, Some(""));
    let (third, calls_empty) = read_counted(&org, &empty, &catalog, Some(&state));
    assert_eq!(calls_empty, calls_off);
    assert_eq!(
        records_of(&third, "Invoice__c").len(),
        records_of(&second, "Invoice__c").len()
    );
}

#[test]
fn the_first_run_with_a_schedule_only_records_the_time() {
    let org = org(40);
    let catalog = configured(&discover(&org), &["Invoice__c"], "incremental");
    let before = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    let (off_run, off_calls) = read_counted(&org, &with_schedule(&org, None), &catalog, None);
    let (run, calls) = read_counted(&org, &with_schedule(&org, Some(YEARLY)), &catalog, None);
    let after = chrono::Utc::now();
    assert_eq!(calls, off_calls, "no refresh: no extra call");
    assert_eq!(
        records_of(&run, "Invoice__c").len(),
        records_of(&off_run, "Invoice__c").len(),
        "every row once, none twice"
    );
    assert_eq!(
        statuses(&run, "Invoice__c"),
        ["STARTED", "RUNNING", "COMPLETE"]
    );
    for s in states_of(&run, "Invoice__c") {
        let at = s["state"]["stream"]["stream_state"]["formula_refreshed_at"]
            .as_str()
            .unwrap_or_else(|| panic!("every STATE carries the key: {s}"));
        let at = chrono::DateTime::parse_from_rfc3339(at).unwrap();
        assert!(at >= before && at <= after, "{at} not within the run");
    }

    // An existing state without the key (ours before, or Airbyte's) is treated the same.
    let airbyte = input(&json!({"state_type": "date-range", "slices": [
        {"start": "2015-01-01T00:00:00.000Z", "end": "2015-02-01T00:00:00.000Z"}]}));
    let (migrated, _) = read_counted(
        &org,
        &with_schedule(&org, Some(YEARLY)),
        &catalog,
        Some(&airbyte),
    );
    assert_eq!(
        records_of(&migrated, "Invoice__c").len(),
        records_of(&off_run, "Invoice__c").len()
    );
    assert!(
        last_state(&migrated, "Invoice__c")["formula_refreshed_at"].is_string(),
        "the key is set from the first run on"
    );
}

#[test]
fn a_due_refresh_re_emits_every_row_with_the_new_formula_values() {
    let org = org(40);
    let catalog = configured(&discover(&org), &["Invoice__c"], "incremental");
    let config = with_schedule(&org, Some(YEARLY));
    let (first, _) = read_counted(&org, &config, &catalog, None);
    let rows = emulator_rows(&org, "Invoice__c");
    let names = rename_accounts(&org, &first);

    // Not due (refreshed at the first run): the new names stay unseen.
    let recent = last_state(&first, "Invoice__c");
    let (not_due, calls_not_due) = read_counted(&org, &config, &catalog, Some(&input(&recent)));
    assert_eq!(renamed_invoices(&not_due, &names), 0);
    assert_eq!(
        last_state(&not_due, "Invoice__c")["formula_refreshed_at"],
        recent["formula_refreshed_at"],
        "the key is carried over"
    );

    // Due: the same state, last refreshed long ago.
    let mut old = recent.clone();
    old["formula_refreshed_at"] = json!(LONG_AGO);
    let started = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    let (due, calls_due) = read_counted(&org, &config, &catalog, Some(&input(&old)));
    let emitted = records_of(&due, "Invoice__c");
    assert_eq!(emitted.len() as u64, rows, "every invoice, once");
    let with_account = emitted
        .iter()
        .filter(|r| r["record"]["data"]["Account__c"].is_string())
        .count();
    assert!(with_account > 0);
    assert_eq!(renamed_invoices(&due, &names), with_account);
    // Full records: apart from the formula, each equals the row's first read (null values are
    // left out of records).
    let before: BTreeMap<&str, &Value> = records_of(&first, "Invoice__c")
        .into_iter()
        .map(|r| {
            (
                r["record"]["data"]["Id"].as_str().unwrap(),
                &r["record"]["data"],
            )
        })
        .collect();
    for r in &emitted {
        let d = &r["record"]["data"];
        let was = before[d["Id"].as_str().unwrap()].as_object().unwrap();
        for (k, v) in was.iter().filter(|(k, _)| *k != "Account_Name__c") {
            assert_eq!(&d[k], v, "{k} of {d}");
        }
    }
    assert_eq!(
        statuses(&due, "Invoice__c"),
        ["STARTED", "RUNNING", "COMPLETE"]
    );
    // The cursor never goes back and never passes the stream's checkpoint; every STATE carries
    // the key, the old one until the refresh is complete.
    let cs = cursors(&due);
    assert!(cs.windows(2).all(|w| w[0] <= w[1]), "{cs:?}");
    assert!(cs[0].as_str() >= old["SystemModstamp"].as_str().unwrap());
    let states = states_of(&due, "Invoice__c");
    let keys: Vec<&str> = states
        .iter()
        .map(|s| {
            s["state"]["stream"]["stream_state"]["formula_refreshed_at"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert!(
        keys[..keys.len() - 1].iter().all(|k| *k == LONG_AGO),
        "{keys:?}"
    );
    let new_key = chrono::DateTime::parse_from_rfc3339(keys[keys.len() - 1]).unwrap();
    assert!(new_key >= started, "{new_key}");
    // The final STATE comes after the last record.
    let last_record = due
        .messages
        .iter()
        .rposition(|m| m["type"] == "RECORD")
        .unwrap();
    let last_state_at = due
        .messages
        .iter()
        .rposition(|m| m["type"] == "STATE")
        .unwrap();
    assert!(last_state_at > last_record);
    // A small object: the refresh costs one REST query page.
    assert_eq!(calls_due, calls_not_due + 1, "refresh cost");

    // The next run is not due again.
    let next = input(&last_state(&due, "Invoice__c"));
    let (again, _) = read_counted(&org, &config, &catalog, Some(&next));
    assert_eq!(renamed_invoices(&again, &names), 0);
}

#[test]
fn a_refresh_of_more_rows_costs_one_call_per_rest_page() {
    let org = org(4_500);
    let catalog = configured(&discover(&org), &["Invoice__c"], "incremental");
    let config = with_schedule(&org, Some(YEARLY));
    let (_, old, calls_not_due) = recent_and_due_states(&org, &config, &catalog);
    let (due, calls_due) = read_counted(&org, &config, &catalog, Some(&input(&old)));
    assert_eq!(
        records_of(&due, "Invoice__c").len() as u64,
        emulator_rows(&org, "Invoice__c")
    );
    // 4,500 rows: pages of 2,000 rows.
    assert_eq!(calls_due - calls_not_due, 3, "refresh cost");
}

#[test]
fn a_refresh_of_many_rows_reads_through_one_bulk_job() {
    let org = org(12_500);
    let catalog = configured(&discover(&org), &["Invoice__c"], "incremental");
    let config = with_schedule(&org, Some(YEARLY));
    let (_, old, calls_not_due) = recent_and_due_states(&org, &config, &catalog);
    let (due, calls_due) = read_counted(&org, &config, &catalog, Some(&input(&old)));
    let mut ids: Vec<&str> = records_of(&due, "Invoice__c")
        .iter()
        .map(|r| r["record"]["data"]["Id"].as_str().unwrap())
        .collect();
    let emitted = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), emitted, "no row twice");
    assert_eq!(emitted as u64, emulator_rows(&org, "Invoice__c"));
    let by_endpoint = org.calls_by_endpoint();
    // The first page (2,000 rows) announces 10,500 more: one Bulk job (create, poll, results,
    // delete) rather than six REST pages.
    assert_eq!(
        by_endpoint.get("POST /services/data/{version}/jobs/query"),
        Some(&1),
        "{by_endpoint:?}"
    );
    // First page, create, results, delete, and the polls the job's run takes (one or two).
    let refresh = calls_due - calls_not_due;
    assert!(
        (5..=6).contains(&refresh),
        "refresh cost {refresh}: {by_endpoint:?}"
    );
}

#[test]
fn a_catalog_without_annotations_learns_formula_fields_from_the_describe() {
    let org = org(40);
    let mut catalog = configured(&discover(&org), &["Invoice__c"], "incremental");
    for prop in catalog["streams"][0]["stream"]["json_schema"]["properties"]
        .as_object_mut()
        .unwrap()
        .values_mut()
    {
        prop.as_object_mut()
            .unwrap()
            .retain(|k, _| !k.starts_with("x-salesforce-"));
    }
    let config = with_schedule(&org, Some(YEARLY));
    let (first, _) = read_counted(&org, &config, &catalog, None);
    let names = rename_accounts(&org, &first);
    let mut old = last_state(&first, "Invoice__c");
    assert!(old["formula_refreshed_at"].is_string());
    old["formula_refreshed_at"] = json!(LONG_AGO);
    let (due, _) = read_counted(&org, &config, &catalog, Some(&input(&old)));
    assert!(renamed_invoices(&due, &names) > 0);
}

#[test]
fn a_refresh_stopped_by_the_daily_limit_keeps_the_old_key_and_is_retried() {
    let org = org(4_500);
    let catalog = configured(&discover(&org), &["Invoice__c"], "incremental");
    let config = with_schedule(&org, Some(YEARLY));
    let (recent, old, calls_not_due) = recent_and_due_states(&org, &config, &catalog);
    // The normal read and the refresh's first page succeed; its second page hits the limit.
    let mut script = vec![200; calls_not_due as usize + 1];
    script.push(403);
    lock(&org.handle.state.faults).script = script;
    let (stopped, _) = read_counted(&org, &config, &catalog, Some(&input(&old)));
    let partial = records_of(&stopped, "Invoice__c").len();
    assert_eq!(partial, 2_000, "the refresh's first page is out");
    assert_eq!(
        statuses(&stopped, "Invoice__c"),
        ["STARTED", "RUNNING", "INCOMPLETE"]
    );
    let saved = last_state(&stopped, "Invoice__c");
    assert_eq!(saved["formula_refreshed_at"], LONG_AGO, "not refreshed yet");
    let cs = cursors(&stopped);
    assert!(cs.windows(2).all(|w| w[0] <= w[1]), "{cs:?}");
    assert!(
        saved["SystemModstamp"].as_str().unwrap() >= recent["SystemModstamp"].as_str().unwrap(),
        "the cursor never moves back"
    );

    // The next run refreshes again, completely.
    let (retried, _) = read_counted(&org, &config, &catalog, Some(&input(&saved)));
    assert_eq!(
        records_of(&retried, "Invoice__c").len() as u64,
        emulator_rows(&org, "Invoice__c")
    );
    assert_ne!(
        last_state(&retried, "Invoice__c")["formula_refreshed_at"],
        LONG_AGO
    );
}

#[test]
fn a_catalog_from_before_formula_annotations_is_described_when_the_schedule_is_on() {
    let org = org(40);
    let mut catalog = configured(&discover(&org), &["Invoice__c"], "incremental");
    let schema = &mut catalog["streams"][0]["stream"]["json_schema"];
    schema
        .as_object_mut()
        .unwrap()
        .remove("x-salesforce-formulas-marked");
    for prop in schema["properties"].as_object_mut().unwrap().values_mut() {
        prop.as_object_mut()
            .unwrap()
            .remove("x-salesforce-calculated");
    }
    let config = with_schedule(&org, Some(YEARLY));
    let (_, calls_off) = read_counted(&org, &with_schedule(&org, None), &catalog, None);
    let (first, calls_on) = read_counted(&org, &config, &catalog, None);
    assert_eq!(calls_on, calls_off + 1, "one describe (a /composite call)");
    let names = rename_accounts(&org, &first);
    let mut old = last_state(&first, "Invoice__c");
    old["formula_refreshed_at"] = json!(LONG_AGO);
    let (due, _) = read_counted(&org, &config, &catalog, Some(&input(&old)));
    assert!(renamed_invoices(&due, &names) > 0);
}

#[test]
fn an_invalid_schedule_is_a_config_error_naming_the_key() {
    let org = org(5);
    let mut config = org.config();
    config["formula_refresh_schedule"] = json!("every night");
    let config = json_file(&config);
    let run = run_connector(bin(), &["check", "--config", path(&config)], None);
    assert_eq!(run.code(), Some(0));
    let status = &run.of_type("CONNECTION_STATUS")[0]["connectionStatus"];
    assert_eq!(status["status"], "FAILED");
    let message = status["message"].as_str().unwrap();
    assert!(message.contains("formula_refresh_schedule"), "{message}");
    assert_eq!(org.calls(), 0);
}
