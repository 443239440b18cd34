//! API quota pinned per scenario with the emulator's call counter (token requests are not API
//! calls). Each bound is what the connector spends today: a change that spends more fails here.

use salesforce_emulator::Config;
use serde_json::{Value, json};
use testkit::Run;

use crate::emulator::{
    Org, block_on, configured, cursor_values, discover, emulator_rows, final_states, query_count,
    read_with, records_of, states_of,
};

/// Updates `Name` of `ids` of `object` through the emulator's admin API.
fn touch(org: &Org, object: &str, ids: &[String]) {
    let url = format!("{}/__emulator/records/{object}", org.handle.base_url);
    let rows: Vec<Value> = ids
        .iter()
        .map(|id| json!({"Id": id, "Name": format!("changed {id}")}))
        .collect();
    block_on(async {
        let resp = reqwest::Client::new()
            .patch(&url)
            .json(&json!({"records": rows}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    });
}

fn report(org: &Org, what: &str) -> u64 {
    let calls = org.calls();
    eprintln!("{what}: {calls} calls {:?}", org.calls_by_endpoint());
    calls
}

/// The first sync: five objects (a custom one and one with a base64 field) of 2,000 rows
/// each since 2020-01-01, default config. Airbyte's connector spent 1,087 calls.
#[test]
fn first_sync_of_five_objects() {
    let objects = [
        "Account",
        "Contact",
        "Opportunity",
        "Invoice__c",
        "Attachment",
    ];
    let org = Org::start(Config {
        default_rows: 3,
        rows: objects.iter().map(|o| ((*o).to_owned(), 2_000)).collect(),
        ..Config::default()
    });
    let catalog = discover(&org);
    let configured = configured(&catalog, &objects, "incremental");
    let mut config = org.config();
    config["start_date"] = json!("2020-01-01T00:00:00Z");
    org.reset_calls();
    let run = read_with(&config, &configured, None);
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let calls = report(&org, "first sync");
    for o in objects {
        assert_eq!(
            records_of(&run, o).len() as u64,
            emulator_rows(&org, o),
            "{o}"
        );
    }
    // The target is 40; one `/composite` call fetches all five first (and only) pages.
    assert!(calls <= 1, "{calls} calls");
    for o in objects {
        assert!(
            run.stderr
                .lines()
                .any(|l| l.contains(&format!("stream={o}"))
                    && l.contains("expected_rows=2000")
                    && l.contains("api=\"REST\"")),
            "the API choice is logged with the expected row count: {}",
            run.stderr
        );
    }
}

/// getUpdated/getDeleted ignore the seconds of their bounds (a minute by default in the
/// emulator, as in Salesforce): a change is reported once its minute is over. These orgs use a
/// one-second granularity so a test waits [`REPLICATION_WAIT`] after changing rows, not a minute.
fn bench_org(objects: u32, rows: u64) -> Org {
    let mut config = Config {
        default_rows: rows,
        extra_custom_objects: objects,
        ..Config::default()
    };
    config.switches.replication_granularity_ms = 1_000;
    Org::start(config)
}

/// How long after a change getUpdated/getDeleted of a [`bench_org`] report it.
const REPLICATION_WAIT: std::time::Duration = std::time::Duration::from_millis(1_100);

fn bench_names(n: u32) -> Vec<String> {
    (1..=n).map(|i| format!("Bench{i:02}__c")).collect()
}

/// Repeat incremental syncs of 50 objects: nothing new, then ~10 changed rows in each.
#[test]
fn repeat_syncs_of_fifty_objects() {
    let org = bench_org(50, 40);
    let catalog = discover(&org);
    let names = bench_names(50);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let configured = configured(&catalog, &refs, "incremental");
    let config = org.config();
    let first = read_with(&config, &configured, None);
    assert_eq!(first.code(), Some(0), "stderr: {}", first.stderr);
    let mut ids: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for n in &refs {
        let records = records_of(&first, n);
        assert_eq!(records.len() as u64, emulator_rows(&org, n), "{n}");
        ids.insert(
            n,
            records
                .iter()
                .filter(|r| r["record"]["data"]["IsDeleted"] != json!(true))
                .take(10)
                .map(|r| r["record"]["data"]["Id"].as_str().unwrap().to_owned())
                .collect(),
        );
    }

    org.reset_calls();
    let second = read_with(&config, &configured, Some(&final_states(&first)));
    assert_eq!(second.code(), Some(0), "stderr: {}", second.stderr);
    let calls = report(&org, "repeat sync, nothing new");
    assert_eq!(second.of_type("RECORD").len(), 0);
    for n in &refs {
        assert!(!states_of(&second, n).is_empty(), "{n} has a state");
    }
    // Target 6: 4 `/composite` calls, each asking 10 objects (getUpdated + getDeleted) and
    // querying 5 more outright.
    assert!(calls <= 4, "{calls} calls");

    for (n, ids) in &ids {
        touch(&org, n, ids);
    }
    std::thread::sleep(REPLICATION_WAIT);
    org.reset_calls();
    let third = read_with(&config, &configured, Some(&final_states(&second)));
    assert_eq!(third.code(), Some(0), "stderr: {}", third.stderr);
    let calls = report(&org, "repeat sync, 10 changed rows in each");
    for (n, want) in &ids {
        let mut got: Vec<String> = records_of(&third, n)
            .iter()
            .map(|r| r["record"]["data"]["Id"].as_str().unwrap().to_owned())
            .collect();
        got.sort();
        got.dedup();
        let mut want = want.clone();
        want.sort();
        assert_eq!(got, want, "{n}");
    }
    // Target 10: 50 objects need 50 queries, 5 per `/composite` call.
    assert!(calls <= 10, "{calls} calls");
}

fn ids_of(run: &Run, stream: &str) -> Vec<String> {
    records_of(run, stream)
        .iter()
        .map(|r| r["record"]["data"]["Id"].as_str().unwrap().to_owned())
        .collect()
}

/// getUpdated leaves deleted rows out: a sync after deletions only must still return them.
/// Eight objects: the first five are queried outright, the last three asked through
/// getUpdated + getDeleted; the deletion is in one of those.
#[test]
fn deletions_alone_are_not_missed_by_the_change_check() {
    let org = bench_org(8, 20);
    let catalog = discover(&org);
    let names = bench_names(8);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let configured = configured(&catalog, &refs, "incremental");
    let first = read_with(&org.config(), &configured, None);
    assert_eq!(first.code(), Some(0), "stderr: {}", first.stderr);
    let victim = records_of(&first, "Bench08__c")
        .iter()
        .find(|r| r["record"]["data"]["IsDeleted"] == json!(false))
        .map(|r| r["record"]["data"]["Id"].as_str().unwrap().to_owned())
        .unwrap();
    block_on(async {
        let resp = reqwest::Client::new()
            .post(format!(
                "{}/__emulator/records/Bench08__c/delete",
                org.handle.base_url
            ))
            .json(&json!({"ids": [victim]}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    });
    std::thread::sleep(REPLICATION_WAIT);
    org.reset_calls();
    let second = read_with(&org.config(), &configured, Some(&final_states(&first)));
    assert_eq!(second.code(), Some(0), "stderr: {}", second.stderr);
    let calls = report(&org, "sync after one deletion");
    let deleted = records_of(&second, "Bench08__c");
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(deleted[0]["record"]["data"]["Id"], json!(victim));
    assert_eq!(deleted[0]["record"]["data"]["IsDeleted"], json!(true));
    assert_eq!(second.of_type("RECORD").len(), 1);
    assert!(
        second.stderr.contains("unchanged=2") && second.stderr.contains("changed=1"),
        "{}",
        second.stderr
    );
    // One call queries five objects and checks three; one more queries the changed one.
    assert!(calls <= 2, "{calls} calls");
}

/// A state older than getUpdated/getDeleted can answer for is read with a query: every row
/// changed since it comes back.
#[test]
fn an_old_state_is_queried_not_checked() {
    let org = Org::start(Config {
        default_rows: 3,
        rows: [("Account".to_owned(), 400)].into(),
        ..Config::default()
    });
    let catalog = discover(&org);
    let configured = configured(&catalog, &["Account"], "incremental");
    let since = (chrono::Utc::now() - chrono::TimeDelta::days(60))
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let state = json!([{"type": "STREAM", "stream": {
        "stream_descriptor": {"name": "Account"},
        "stream_state": {"SystemModstamp": since}}}]);
    let mut config = org.config();
    config["lookback_window"] = json!("PT0S");
    let run = read_with(&config, &configured, Some(&state));
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let want = query_count(
        &org,
        &format!("SELECT COUNT() FROM Account WHERE SystemModstamp >= {since}"),
    );
    assert!(want > 0);
    assert_eq!(records_of(&run, "Account").len() as u64, want);
}

/// A large delta starts with one REST page (which announces the row count) and reads the rest
/// with one Bulk job from the page's last cursor value: no row is lost and none repeats.
#[test]
fn a_large_delta_switches_to_bulk_after_the_first_page() {
    let org = Org::start(Config {
        default_rows: 3,
        rows: [("Invoice__c".to_owned(), 30_000)].into(),
        ..Config::default()
    });
    let catalog = discover(&org);
    let configured = configured(&catalog, &["Invoice__c"], "incremental");
    org.reset_calls();
    let run = read_with(&org.config(), &configured, None);
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let calls = report(&org, "30,000-row first sync");
    let ids = ids_of(&run, "Invoice__c");
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len() as u64, emulator_rows(&org, "Invoice__c"));
    // The page's last cursor value is held back and read by the Bulk job: no row repeats.
    assert_eq!(ids.len(), unique.len(), "no row is emitted twice");
    assert!(run.stderr.contains("expected_rows=30000"), "{}", run.stderr);
    let by = org.calls_by_endpoint();
    assert_eq!(by.get("POST /services/data/{version}/jobs/query"), Some(&1));
    // composite (first page), create, poll(s), one result page, delete.
    assert!(calls <= 6, "{calls} calls");
}

/// A catalog from Airbyte's own connector (no type annotations): read describes only the
/// configured objects, 25 per `/composite` call, never the whole org.
#[test]
fn a_catalog_without_annotations_describes_only_its_objects() {
    let org = Org::start(Config {
        default_rows: 3,
        ..Config::default()
    });
    let mut catalog = discover(&org);
    for stream in catalog["streams"].as_array_mut().unwrap() {
        if let Some(props) = stream["json_schema"]["properties"].as_object_mut() {
            for p in props.values_mut() {
                if let Some(o) = p.as_object_mut() {
                    o.retain(|k, _| !k.starts_with("x-salesforce-"));
                }
            }
        }
    }
    let configured = configured(&catalog, &["Account", "Contact", "Lead"], "incremental");
    org.reset_calls();
    let run = read_with(&org.config(), &configured, None);
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let calls = report(&org, "read of an Airbyte catalog");
    // One composite describes the three objects, one fetches their pages.
    assert_eq!(
        org.calls_by_endpoint().keys().collect::<Vec<_>>(),
        ["POST /services/data/{version}/composite"]
    );
    assert!(calls <= 2, "{calls} calls");
    for o in ["Account", "Contact", "Lead"] {
        assert_eq!(
            records_of(&run, o).len() as u64,
            emulator_rows(&org, o),
            "{o}"
        );
    }
}

/// Discovery of N objects: describe global, then 25 describes per `/composite` call.
#[test]
fn discovery_of_many_objects_costs_one_call_per_25() {
    let org = bench_org(60, 1);
    let catalog = discover(&org);
    let objects = catalog["streams"].as_array().unwrap().len() as u64 - 1;
    assert!(objects >= 60, "{objects}");
    assert_eq!(
        org.calls(),
        1 + objects.div_ceil(25),
        "{:?}",
        org.calls_by_endpoint()
    );
}

/// Every run ends by logging its API calls and the org's remaining daily quota.
#[test]
fn a_run_logs_its_calls_and_the_quota_left() {
    let org = Org::start(Config {
        default_rows: 3,
        ..Config::default()
    });
    let catalog = discover(&org);
    let configured = configured(&catalog, &["Account"], "incremental");
    let run = read_with(&org.config(), &configured, None);
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert!(
        run.stderr.contains("API calls used by this run: 1;") && run.stderr.contains("remaining"),
        "{}",
        run.stderr
    );
}

/// A field deleted in Salesforce after discovery: read describes that one object (one call),
/// drops the field with a warning and reads the stream in full.
#[test]
fn a_field_gone_since_discovery_costs_one_describe_not_the_stream() {
    let org = Org::start(Config {
        default_rows: 3,
        rows: [("Account".to_owned(), 30)].into(),
        ..Config::default()
    });
    let catalog = discover(&org);
    let mut configured = configured(&catalog, &["Account", "Contact"], "incremental");
    configured["streams"][0]["stream"]["json_schema"]["properties"]["Ghost__c"] =
        json!({"type": ["string", "null"], "x-salesforce-type": "string"});
    org.reset_calls();
    let run = read_with(&org.config(), &configured, None);
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let calls = report(&org, "read with a stale catalog field");
    let by = org.calls_by_endpoint();
    assert_eq!(
        by.get("GET /services/data/{version}/sobjects/{object}/describe"),
        Some(&1)
    );
    // composite (both first pages; Account's fails), describe, Account's query.
    assert!(calls <= 3, "{calls} calls");
    assert!(run.stderr.contains("Ghost__c"), "{}", run.stderr);
    let accounts = records_of(&run, "Account");
    assert_eq!(accounts.len() as u64, emulator_rows(&org, "Account"));
    assert!(
        accounts
            .iter()
            .all(|r| r["record"]["data"].get("Ghost__c").is_none())
    );
    assert_eq!(
        records_of(&run, "Contact").len() as u64,
        emulator_rows(&org, "Contact")
    );

    // The same for a full refresh.
    let mut full = crate::emulator::configured(&catalog, &["Account"], "full_refresh");
    full["streams"][0]["stream"]["json_schema"]["properties"]["Ghost__c"] =
        json!({"type": ["string", "null"], "x-salesforce-type": "string"});
    org.reset_calls();
    let run = read_with(&org.config(), &full, None);
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let calls = report(&org, "full refresh with a stale catalog field");
    assert!(calls <= 3, "{calls} calls");
    assert_eq!(
        records_of(&run, "Account").len() as u64,
        emulator_rows(&org, "Account")
    );
}

/// A delta above one page but below the Bulk threshold continues through REST from the
/// batched first page's `nextRecordsUrl`: 5,000 rows cost 3 calls, no Bulk job.
#[test]
fn a_mid_sized_delta_pages_through_rest() {
    let org = Org::start(Config {
        default_rows: 3,
        rows: [("Opportunity".to_owned(), 5_000)].into(),
        ..Config::default()
    });
    let catalog = discover(&org);
    let configured = configured(&catalog, &["Opportunity"], "incremental");
    org.reset_calls();
    let run = read_with(&org.config(), &configured, None);
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let calls = report(&org, "5,000-row first sync");
    let by = org.calls_by_endpoint();
    assert_eq!(by.get("POST /services/data/{version}/jobs/query"), None);
    assert!(calls <= 3, "{calls} calls");
    let ids = ids_of(&run, "Opportunity");
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), unique.len(), "no duplicates");
    assert_eq!(ids.len() as u64, emulator_rows(&org, "Opportunity"));
    // A STATE after every page, never going backwards.
    let cursors = cursor_values(&run, "Opportunity");
    assert!(cursors.len() >= 3, "{cursors:?}");
    assert!(cursors.windows(2).all(|w| w[0] <= w[1]), "{cursors:?}");
}

/// A change made in the minute a sync runs is not yet reported by getUpdated (it ignores seconds):
/// that sync may leave it out, but its checkpoint stays before the change, so the next sync reads
/// it. Deferred, never lost.
#[test]
fn a_change_in_the_current_minute_is_read_by_the_next_sync() {
    let mut config = Config {
        default_rows: 20,
        extra_custom_objects: 8,
        ..Config::default()
    };
    // Two-second "minutes", so the test waits two seconds rather than one minute.
    config.switches.replication_granularity_ms = 2_000;
    let org = Org::start(config);
    let names = bench_names(8);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let configured = configured(&discover(&org), &refs, "incremental");
    // Eight objects: the first five are queried outright, the last three (the changed one among
    // them) asked through getUpdated/getDeleted.
    let first = read_with(&org.config(), &configured, None);
    assert_eq!(first.code(), Some(0), "stderr: {}", first.stderr);
    let changed: Vec<String> = ids_of(&first, &names[7]).into_iter().take(3).collect();
    touch(&org, &names[7], &changed);
    let second = read_with(&org.config(), &configured, Some(&final_states(&first)));
    assert_eq!(second.code(), Some(0), "stderr: {}", second.stderr);
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    let third = read_with(&org.config(), &configured, Some(&final_states(&second)));
    assert_eq!(third.code(), Some(0), "stderr: {}", third.stderr);
    let mut seen: Vec<String> = ids_of(&second, &names[7]);
    seen.extend(ids_of(&third, &names[7]));
    for id in &changed {
        assert!(seen.contains(id), "change to {id} lost");
    }
}
