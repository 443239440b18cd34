//! The connector binary against the local Salesforce emulator: check, discover, full refresh and
//! incremental reads, counted in API calls and rows.

use std::path::Path;

use salesforce_emulator::{Config, Handle, state::lock};
use serde_json::{Value, json};
use testkit::{Run, json_file, run_connector};

pub(crate) fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_source-salesforce"))
}

pub(crate) fn path(file: &tempfile::NamedTempFile) -> &str {
    file.path().to_str().expect("temp paths are UTF-8")
}

/// An emulator running on its own runtime for the duration of a test.
pub(crate) struct Org {
    pub(crate) handle: Handle,
    _rt: tokio::runtime::Runtime,
}

impl Org {
    pub(crate) fn start(config: Config) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let handle = rt.block_on(salesforce_emulator::spawn(config)).unwrap();
        Self { handle, _rt: rt }
    }

    pub(crate) fn config(&self) -> Value {
        json!({
            "client_id": "emulator-client-id",
            "client_secret": "emulator-client-secret",
            "refresh_token": "emulator-refresh-token",
            "is_sandbox": false,
            "auth_type": "Client",
            "login_url": self.handle.base_url,
            "start_date": "2015-01-01",
        })
    }

    pub(crate) fn calls(&self) -> u64 {
        lock(&self.handle.state.counters).total
    }

    pub(crate) fn calls_by_endpoint(&self) -> std::collections::BTreeMap<String, u64> {
        lock(&self.handle.state.counters).by_endpoint.clone()
    }

    pub(crate) fn reset_calls(&self) {
        let mut c = lock(&self.handle.state.counters);
        c.total = 0;
        c.by_endpoint.clear();
    }
}

fn small_org() -> Org {
    Org::start(Config {
        default_rows: 3,
        rows: [("Account".to_owned(), 250), ("Contact".to_owned(), 120)].into(),
        ..Config::default()
    })
}

pub(crate) fn discover(org: &Org) -> Value {
    let config = json_file(&org.config());
    let run = run_connector(bin(), &["discover", "--config", path(&config)], None);
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let catalogs = run.of_type("CATALOG");
    assert_eq!(catalogs.len(), 1, "{:#?}", run.messages);
    catalogs[0]["catalog"].clone()
}

pub(crate) fn configured(catalog: &Value, names: &[&str], sync_mode: &str) -> Value {
    let streams: Vec<Value> = names
        .iter()
        .map(|n| {
            let stream = catalog["streams"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == *n)
                .unwrap_or_else(|| panic!("{n} not discovered"))
                .clone();
            json!({"stream": stream, "sync_mode": sync_mode, "destination_sync_mode": "append"})
        })
        .collect();
    json!({ "streams": streams })
}

pub(crate) fn read(org: &Org, catalog: &Value, state: Option<&Value>) -> Run {
    read_with(&org.config(), catalog, state)
}

/// Runs `read` with `config` (not the default test config).
pub(crate) fn read_with(config: &Value, catalog: &Value, state: Option<&Value>) -> Run {
    let config = json_file(config);
    let catalog = json_file(catalog);
    let state_file = state.map(json_file);
    let mut args = vec![
        "read",
        "--config",
        path(&config),
        "--catalog",
        path(&catalog),
    ];
    if let Some(s) = &state_file {
        args.extend(["--state", path(s)]);
    }
    run_connector(bin(), &args, None)
}

/// The last STATE of every stream of a run, as the next run's input state.
pub(crate) fn final_states(run: &Run) -> Value {
    let mut last: std::collections::BTreeMap<String, Value> = Default::default();
    for s in run.of_type("STATE") {
        let name = s["state"]["stream"]["stream_descriptor"]["name"]
            .as_str()
            .unwrap()
            .to_owned();
        last.insert(name, s["state"].clone());
    }
    Value::Array(last.into_values().collect())
}

pub(crate) fn records_of<'a>(run: &'a Run, stream: &str) -> Vec<&'a Value> {
    run.of_type("RECORD")
        .into_iter()
        .filter(|m| m["record"]["stream"] == stream)
        .collect()
}

pub(crate) fn statuses(run: &Run, stream: &str) -> Vec<String> {
    run.of_type("TRACE")
        .into_iter()
        .filter(|m| m["trace"]["type"] == "STREAM_STATUS")
        .filter(|m| m["trace"]["stream_status"]["stream_descriptor"]["name"] == stream)
        .map(|m| {
            m["trace"]["stream_status"]["status"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

pub(crate) fn states_of<'a>(run: &'a Run, stream: &str) -> Vec<&'a Value> {
    run.of_type("STATE")
        .into_iter()
        .filter(|m| m["state"]["stream"]["stream_descriptor"]["name"] == stream)
        .collect()
}

/// The `SystemModstamp` cursor of each STATE of `stream`, in output order.
pub(crate) fn cursor_values(run: &Run, stream: &str) -> Vec<String> {
    states_of(run, stream)
        .iter()
        .map(|s| {
            s["state"]["stream"]["stream_state"]["SystemModstamp"]
                .as_str()
                .unwrap_or_else(|| panic!("STATE without a cursor: {s}"))
                .to_owned()
        })
        .collect()
}

/// Rows the emulator holds for an object, counted through its REST API with queryAll semantics
/// (soft-deleted rows included), as a real org would answer.
pub(crate) fn emulator_rows(org: &Org, object: &str) -> u64 {
    query_count(org, &format!("SELECT COUNT() FROM {object}"))
}

/// The `totalSize` of a SOQL query through the emulator's REST API (queryAll semantics).
pub(crate) fn query_count(org: &Org, soql: &str) -> u64 {
    let base = org.handle.base_url.clone();
    let soql = soql.to_owned();
    block_on(async move {
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
        let page: Value = http
            .get(format!("{base}/services/data/v62.0/queryAll/"))
            .query(&[("q", soql)])
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["totalSize"]
            .as_u64()
            .unwrap_or_else(|| panic!("no totalSize: {page}"))
    })
}

pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn check_succeeds_with_good_credentials() {
    let org = small_org();
    let config = json_file(&org.config());
    let run = run_connector(bin(), &["check", "--config", path(&config)], None);
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let status = &run.of_type("CONNECTION_STATUS")[0]["connectionStatus"];
    assert_eq!(status["status"], "SUCCEEDED", "{status}");
    assert_eq!(
        org.calls(),
        1,
        "check makes one API call: {:?}",
        org.calls_by_endpoint()
    );
}

#[test]
fn check_fails_with_bad_credentials_naming_the_setting() {
    let org = small_org();
    let mut config = org.config();
    config["client_secret"] = json!("wrong-secret-value-123");
    let config = json_file(&config);
    let run = run_connector(bin(), &["check", "--config", path(&config)], None);
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.messages.len(), 1, "{:#?}", run.messages);
    let status = &run.of_type("CONNECTION_STATUS")[0]["connectionStatus"];
    assert_eq!(status["status"], "FAILED");
    let message = status["message"].as_str().unwrap();
    assert!(message.contains("client_secret"), "{message}");
    assert!(
        !run.stdout.contains("wrong-secret-value-123")
            && !run.stderr.contains("wrong-secret-value-123")
    );
}

#[test]
fn check_fails_on_invalid_config_naming_the_field() {
    let org = small_org();
    let mut config = org.config();
    config["stream_slice_step"] = json!("PT0.1S");
    let config = json_file(&config);
    let run = run_connector(bin(), &["check", "--config", path(&config)], None);
    assert_eq!(run.code(), Some(0));
    let status = &run.of_type("CONNECTION_STATUS")[0]["connectionStatus"];
    assert_eq!(status["status"], "FAILED");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("stream_slice_step"),
        "{status}"
    );
    assert_eq!(org.calls(), 0, "nothing is called for an invalid config");
}

#[test]
fn discover_uses_one_call_per_25_objects() {
    let org = small_org();
    let catalog = discover(&org);
    let streams = catalog["streams"].as_array().unwrap();
    let names: Vec<&str> = streams
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"Account") && names.contains(&"Contact"),
        "{names:?}"
    );
    assert_eq!(names.last(), Some(&"Describe"));
    let objects = (streams.len() - 1) as u64;
    assert!(objects > 0);
    let expected = 1 + objects.div_ceil(25);
    assert_eq!(org.calls(), expected, "{:?}", org.calls_by_endpoint());

    let account = streams.iter().find(|s| s["name"] == "Account").unwrap();
    assert_eq!(account["source_defined_primary_key"], json!([["Id"]]));
    assert_eq!(account["default_cursor_field"], json!(["SystemModstamp"]));
    assert_eq!(
        account["supported_sync_modes"],
        json!(["full_refresh", "incremental"])
    );
    assert_eq!(
        account["json_schema"]["properties"]["Id"]["type"],
        json!(["string", "null"])
    );
    for name in &names {
        assert!(!name.ends_with("ChangeEvent"), "{name}");
    }
}

#[test]
fn full_refresh_reads_every_row() {
    let org = small_org();
    let catalog = discover(&org);
    let configured = configured(&catalog, &["Account", "Contact"], "full_refresh");
    org.reset_calls();
    let run = read(&org, &configured, None);
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    // No describe (the catalog carries the field types); both objects fit in their first REST
    // page, fetched together in one `/composite` call.
    let calls = org.calls();
    assert!(calls <= 1, "{calls} calls: {:?}", org.calls_by_endpoint());
    for stream in ["Account", "Contact"] {
        let records = records_of(&run, stream);
        assert_eq!(
            records.len() as u64,
            emulator_rows(&org, stream),
            "{stream}"
        );
        assert_eq!(
            statuses(&run, stream),
            ["STARTED", "RUNNING", "COMPLETE"],
            "{stream}"
        );
        let states = states_of(&run, stream);
        assert!(!states.is_empty());
        let counted: f64 = states
            .iter()
            .map(|s| s["state"]["sourceStats"]["recordCount"].as_f64().unwrap())
            .sum();
        assert_eq!(
            counted as usize,
            records.len(),
            "{stream}: sourceStats add up"
        );
        assert_eq!(
            states.last().unwrap()["state"]["stream"]["stream_state"],
            json!({"__ab_no_cursor_state_message": true})
        );
        let ids: std::collections::BTreeSet<&str> = records
            .iter()
            .map(|r| r["record"]["data"]["Id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), records.len(), "{stream}: no duplicates");
    }
    // The final STATE comes before COMPLETE.
    let position = |pred: &dyn Fn(&Value) -> bool| run.messages.iter().rposition(pred).unwrap();
    let last_state = position(&|m| {
        m["type"] == "STATE" && m["state"]["stream"]["stream_descriptor"]["name"] == "Account"
    });
    let complete = position(&|m| {
        m["type"] == "TRACE"
            && m["trace"]["stream_status"]["status"] == "COMPLETE"
            && m["trace"]["stream_status"]["stream_descriptor"]["name"] == "Account"
    });
    assert!(last_state < complete);
    assert!(
        run.stderr.contains("API calls used by this run"),
        "{}",
        run.stderr
    );
}

#[test]
fn incremental_second_run_returns_only_changes() {
    let org = small_org();
    let catalog = discover(&org);
    let configured = configured(&catalog, &["Account"], "incremental");
    let first = read(&org, &configured, None);
    assert_eq!(first.code(), Some(0), "stderr: {}", first.stderr);
    let all = records_of(&first, "Account");
    assert_eq!(all.len() as u64, emulator_rows(&org, "Account"));
    assert_eq!(
        statuses(&first, "Account"),
        ["STARTED", "RUNNING", "COMPLETE"]
    );
    let final_state = states_of(&first, "Account").last().unwrap()["state"].clone();
    let cursor = final_state["stream"]["stream_state"]["SystemModstamp"]
        .as_str()
        .unwrap()
        .to_owned();
    // Checkpoints never go backwards.
    let cursors = cursor_values(&first, "Account");
    assert!(cursors.windows(2).all(|w| w[0] <= w[1]), "{cursors:?}");

    // Nothing changed: the second run reads only the lookback window and finds nothing new.
    let second = read(&org, &configured, Some(&json!([final_state])));
    assert_eq!(second.code(), Some(0), "stderr: {}", second.stderr);
    assert_eq!(
        records_of(&second, "Account").len(),
        0,
        "cursor was {cursor}"
    );
    assert_eq!(statuses(&second, "Account"), ["STARTED", "COMPLETE"]);
    let state = states_of(&second, "Account").last().unwrap()["state"].clone();

    // Change two rows: the third run returns exactly them.
    let ids: Vec<String> = all
        .iter()
        .take(2)
        .map(|r| r["record"]["data"]["Id"].as_str().unwrap().to_owned())
        .collect();
    update_names(&org, &ids);
    let third = read(&org, &configured, Some(&json!([state])));
    assert_eq!(third.code(), Some(0), "stderr: {}", third.stderr);
    let changed: Vec<&str> = records_of(&third, "Account")
        .iter()
        .map(|r| r["record"]["data"]["Id"].as_str().unwrap())
        .collect();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut got = changed.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want);
}

/// Updates `Name` of the given Account rows through the emulator's admin API.
pub(crate) fn update_names(org: &Org, ids: &[String]) {
    let rows: Vec<Value> = ids
        .iter()
        .map(|id| json!({"Id": id, "Name": format!("changed {id}")}))
        .collect();
    patch_records(org, "Account", rows);
}

/// Updates rows of `object` (each with its `Id`) through the emulator's admin API.
pub(crate) fn patch_records(org: &Org, object: &str, rows: Vec<Value>) {
    let url = format!("{}/__emulator/records/{object}", org.handle.base_url);
    block_on(async {
        let resp = reqwest::Client::new()
            .patch(&url)
            .json(&json!({"records": rows}))
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "{}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    });
}

#[test]
fn daily_limit_mid_stream_saves_progress_and_exits_zero() {
    let org = Org::start(Config {
        default_rows: 3,
        rows: [("Attachment".to_owned(), 2_500)].into(),
        ..Config::default()
    });
    let catalog = discover(&org);
    let configured = configured(&catalog, &["Attachment"], "incremental");
    let mut settings = org.config();
    settings["lookback_window"] = json!("PT0S");
    // The catalog needs no describe: the first query page, then the daily limit on the second.
    lock(&org.handle.state.faults).script = vec![200, 403];
    let config_file = json_file(&settings);
    let catalog_file = json_file(&configured);
    let run = run_connector(
        bin(),
        &[
            "read",
            "--config",
            path(&config_file),
            "--catalog",
            path(&catalog_file),
        ],
        None,
    );
    assert_eq!(
        run.code(),
        Some(0),
        "rate limits end the run successfully: {}",
        run.stderr
    );
    let first: Vec<&Value> = records_of(&run, "Attachment");
    assert!(
        !first.is_empty() && (first.len() as u64) < emulator_rows(&org, "Attachment"),
        "{}",
        first.len()
    );
    assert_eq!(
        statuses(&run, "Attachment"),
        ["STARTED", "RUNNING", "INCOMPLETE"]
    );
    let incomplete = run
        .of_type("TRACE")
        .into_iter()
        .find(|m| m["trace"]["stream_status"]["status"] == "INCOMPLETE")
        .unwrap();
    assert_eq!(
        incomplete["trace"]["stream_status"]["reasons"][0]["type"],
        "RATE_LIMITED"
    );
    assert!(
        run.of_type("TRACE")
            .iter()
            .all(|m| m["trace"]["type"] != "ERROR")
    );
    let state = states_of(&run, "Attachment").last().unwrap()["state"].clone();
    let cursor = state["stream"]["stream_state"]["SystemModstamp"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        cursor.as_str() > "2015-01-01",
        "progress was saved: {cursor}"
    );

    // The next run resumes from the saved state and, together with the first, misses nothing.
    let second = read(&org, &configured, Some(&json!([state])));
    assert_eq!(second.code(), Some(0), "stderr: {}", second.stderr);
    assert_eq!(
        statuses(&second, "Attachment"),
        ["STARTED", "RUNNING", "COMPLETE"]
    );
    let mut ids: std::collections::BTreeSet<String> = first
        .iter()
        .map(|r| r["record"]["data"]["Id"].as_str().unwrap().to_owned())
        .collect();
    let resumed = records_of(&second, "Attachment");
    assert!(
        resumed.len() < 2_500,
        "the second run does not start over: {}",
        resumed.len()
    );
    ids.extend(
        resumed
            .iter()
            .map(|r| r["record"]["data"]["Id"].as_str().unwrap().to_owned()),
    );
    assert_eq!(ids.len() as u64, emulator_rows(&org, "Attachment"));
}

#[test]
fn a_failing_stream_does_not_stop_the_others() {
    let org = small_org();
    let catalog = discover(&org);
    let mut configured = configured(&catalog, &["Contact"], "full_refresh");
    configured["streams"].as_array_mut().unwrap().push(json!({
        "stream": {"name": "Missing__c", "json_schema": {"type": "object", "properties": {"Id": {}}},
                   "supported_sync_modes": ["full_refresh"]},
        "sync_mode": "full_refresh", "destination_sync_mode": "append"
    }));
    let run = read(&org, &configured, None);
    assert_eq!(run.code(), Some(1), "stderr: {}", run.stderr);
    assert_eq!(
        records_of(&run, "Contact").len() as u64,
        emulator_rows(&org, "Contact")
    );
    assert_eq!(
        statuses(&run, "Contact"),
        ["STARTED", "RUNNING", "COMPLETE"]
    );
    assert_eq!(statuses(&run, "Missing__c"), ["STARTED", "INCOMPLETE"]);
    let errors: Vec<&Value> = run
        .of_type("TRACE")
        .into_iter()
        .filter(|m| m["trace"]["type"] == "ERROR")
        .collect();
    assert_eq!(
        errors.len(),
        2,
        "one per stream plus the summary: {errors:#?}"
    );
    assert_eq!(
        errors[0]["trace"]["error"]["stream_descriptor"]["name"],
        "Missing__c"
    );
    assert_eq!(errors[0]["trace"]["error"]["failure_type"], "config_error");
    let summary = errors[1]["trace"]["error"]["message"].as_str().unwrap();
    assert!(
        summary.contains("Missing__c") && !summary.contains("Contact"),
        "{summary}"
    );
}

#[test]
fn incremental_on_a_stream_without_cursor_is_refused() {
    let org = small_org();
    let catalog = discover(&org);
    let no_cursor: Vec<String> = catalog["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["supported_sync_modes"] == json!(["full_refresh"]) && s["name"] != "Describe")
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    let Some(name) = no_cursor.first() else {
        // The emulator's schema has no cursor-less object; nothing to check here.
        return;
    };
    let configured = configured(&catalog, &[name], "incremental");
    let run = read(&org, &configured, None);
    assert_eq!(run.code(), Some(1));
    assert_eq!(statuses(&run, name), ["STARTED", "INCOMPLETE"]);
}

#[test]
fn describe_stream_emits_each_catalog_object() {
    let org = small_org();
    let catalog = discover(&org);
    let configured = configured(&catalog, &["Account", "Describe"], "full_refresh");
    let run = read(&org, &configured, None);
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let describes = records_of(&run, "Describe");
    assert_eq!(describes.len(), 1);
    assert_eq!(describes[0]["record"]["data"]["name"], "Account");
    assert!(
        describes[0]["record"]["data"]["fields"]
            .as_array()
            .unwrap()
            .len()
            > 5
    );
    assert_eq!(
        statuses(&run, "Describe"),
        ["STARTED", "RUNNING", "COMPLETE"]
    );
}

#[test]
fn api_budget_stops_new_work_and_exits_zero() {
    // Small objects cost next to nothing (their only page comes in a batched `/composite`
    // call); the two large ones need Bulk jobs, more than the budget leaves.
    let org = Org::start(Config {
        default_rows: 3,
        rows: [
            ("Account".to_owned(), 30_000),
            ("Contact".to_owned(), 30_000),
        ]
        .into(),
        daily_api_limit: 40,
        ..Config::default()
    });
    let catalog = discover(&org);
    let names: Vec<String> = catalog["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .filter(|n| n != "Describe")
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let configured = configured(&catalog, &refs, "full_refresh");
    let mut settings = org.config();
    settings["api_budget_percent"] = json!(25);
    settings["num_workers"] = json!(1);
    let config_file = json_file(&settings);
    let catalog_file = json_file(&configured);
    let run = run_connector(
        bin(),
        &[
            "read",
            "--config",
            path(&config_file),
            "--catalog",
            path(&catalog_file),
        ],
        None,
    );
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert!(
        run.of_type("TRACE")
            .iter()
            .all(|m| m["trace"]["type"] != "ERROR"),
        "{}",
        run.stdout
    );
    let (mut complete, mut limited) = (0, 0);
    for name in &names {
        let s = statuses(&run, name);
        match s.last().map(String::as_str) {
            Some("COMPLETE") => complete += 1,
            Some("INCOMPLETE") => limited += 1,
            other => panic!("{name} has no terminal status: {other:?}"),
        }
    }
    assert!(
        complete >= 1 && limited >= 1,
        "complete {complete}, limited {limited}"
    );
    for m in run.of_type("TRACE") {
        if m["trace"]["stream_status"]["status"] == "INCOMPLETE" {
            assert_eq!(
                m["trace"]["stream_status"]["reasons"][0]["type"],
                "RATE_LIMITED"
            );
        }
    }
    // 25 % of 40 calls: the connector stops at 10 used (the first response tells it where it
    // stands, so at most one call beyond).
    let used = lock(&org.handle.state.counters).daily_used;
    assert!(used <= 11, "used {used} calls of a 10-call budget");
}

#[test]
fn rotated_refresh_token_is_persisted_with_a_control_message() {
    let mut config = Config::default();
    config.switches.refresh_token_rotation = true;
    let org = Org::start(config);
    let settings = org.config();
    let config_file = json_file(&settings);
    let run = run_connector(bin(), &["check", "--config", path(&config_file)], None);
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let controls = run.of_type("CONTROL");
    assert_eq!(controls.len(), 1, "{:#?}", run.messages);
    let new_config = &controls[0]["control"]["connectorConfig"]["config"];
    let token = new_config["refresh_token"].as_str().unwrap();
    assert_ne!(token, "emulator-refresh-token");
    assert_eq!(new_config["client_id"], settings["client_id"]);
    assert_eq!(new_config["login_url"], settings["login_url"]);
    assert_eq!(
        run.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"],
        "SUCCEEDED"
    );

    // The new token works (discover rotates it again), and a read persists the next rotation
    // as soon as it can, before the stream completes.
    let run = run_connector(
        bin(),
        &["discover", "--config", path(&json_file(new_config))],
        None,
    );
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let catalog = configured(
        &run.of_type("CATALOG")[0]["catalog"],
        &["Contact"],
        "full_refresh",
    );
    let mut latest = new_config.clone();
    latest["refresh_token"] =
        run.of_type("CONTROL")[0]["control"]["connectorConfig"]["config"]["refresh_token"].clone();
    let config_file = json_file(&latest);
    let catalog_file = json_file(&catalog);
    let run = run_connector(
        bin(),
        &[
            "read",
            "--config",
            path(&config_file),
            "--catalog",
            path(&catalog_file),
        ],
        None,
    );
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let position = |t: &str, status: &str| {
        run.messages.iter().position(|m| {
            m["type"] == t && (status.is_empty() || m["trace"]["stream_status"]["status"] == status)
        })
    };
    let control = position("CONTROL", "").expect("a CONTROL message");
    let complete = position("TRACE", "COMPLETE").expect("COMPLETE");
    assert!(
        control < complete,
        "the new token is persisted as soon as possible"
    );
}

#[test]
fn a_timed_out_query_is_read_in_smaller_windows() {
    let org = Org::start(Config {
        default_rows: 3,
        rows: [("Account".to_owned(), 250)].into(),
        ..Config::default()
    });
    let catalog = discover(&org);
    let configured = configured(&catalog, &["Account"], "incremental");
    lock(&org.handle.state.faults).query_timeout_rows = Some(100);
    let run = read(&org, &configured, None);
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert!(run.stderr.contains("smaller windows"), "{}", run.stderr);
    assert_eq!(
        statuses(&run, "Account"),
        ["STARTED", "RUNNING", "COMPLETE"]
    );
    let ids: std::collections::BTreeSet<&str> = records_of(&run, "Account")
        .iter()
        .map(|r| r["record"]["data"]["Id"].as_str().unwrap())
        .collect();
    lock(&org.handle.state.faults).query_timeout_rows = None;
    assert_eq!(ids.len() as u64, emulator_rows(&org, "Account"));
    // Checkpoints only move forward.
    let cursors = cursor_values(&run, "Account");
    assert!(cursors.windows(2).all(|w| w[0] <= w[1]), "{cursors:?}");
}

#[test]
fn soft_deletes_arrive_with_is_deleted_and_namespace_is_echoed() {
    let org = small_org();
    let catalog = discover(&org);
    let mut configured = configured(&catalog, &["Contact"], "incremental");
    // Only Name is selected: Id, the cursor and IsDeleted come anyway.
    configured["streams"][0]["stream"]["json_schema"]["properties"] = json!({"Name": {}});
    configured["streams"][0]["stream"]["namespace"] = json!("salesforce");
    let first = read(&org, &configured, None);
    assert_eq!(first.code(), Some(0), "stderr: {}", first.stderr);
    let records = records_of(&first, "Contact");
    let keys: std::collections::BTreeSet<&str> = records
        .iter()
        .flat_map(|r| {
            r["record"]["data"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
        })
        .collect();
    assert_eq!(
        keys,
        ["Id", "IsDeleted", "Name", "SystemModstamp"]
            .into_iter()
            .collect()
    );
    assert!(
        records
            .iter()
            .all(|r| r["record"]["namespace"] == "salesforce")
    );
    assert!(
        first
            .of_type("STATE")
            .iter()
            .all(|s| s["state"]["stream"]["stream_descriptor"]["namespace"] == "salesforce")
    );
    let live = records
        .iter()
        .find(|r| r["record"]["data"]["IsDeleted"] == false)
        .unwrap();
    let id = live["record"]["data"]["Id"].as_str().unwrap().to_owned();
    let state = states_of(&first, "Contact").last().unwrap()["state"].clone();

    let url = format!("{}/__emulator/records/Contact/delete", org.handle.base_url);
    block_on(async {
        let resp = reqwest::Client::new()
            .post(&url)
            .json(&json!({"ids": [id]}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    });
    let second = read(&org, &configured, Some(&json!([state])));
    assert_eq!(second.code(), Some(0), "stderr: {}", second.stderr);
    let deleted = records_of(&second, "Contact");
    assert_eq!(deleted.len(), 1, "{deleted:#?}");
    assert_eq!(deleted[0]["record"]["data"]["Id"], json!(id));
    assert_eq!(deleted[0]["record"]["data"]["IsDeleted"], json!(true));
}

#[test]
fn airbyte_date_range_state_is_migrated() {
    let org = small_org();
    let catalog = discover(&org);
    let configured = configured(&catalog, &["Account"], "incremental");
    let first = read(&org, &configured, None);
    assert_eq!(first.code(), Some(0), "stderr: {}", first.stderr);
    let mut stamps: Vec<String> = records_of(&first, "Account")
        .iter()
        .map(|r| {
            r["record"]["data"]["SystemModstamp"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    stamps.sort();
    // Airbyte's concurrent state, as its connector wrote it, ending in the middle of the data.
    let end = stamps[stamps.len() / 2].clone();
    let state = json!([{"type": "STREAM", "stream": {
    "stream_descriptor": {"name": "Account"},
    "stream_state": {"state_type": "date-range", "slices": [
        {"start": "2015-01-01T00:00:00.000Z", "end": end, "most_recent_cursor_value": end}
    ]}}}]);
    let second = read(&org, &configured, Some(&state));
    assert_eq!(second.code(), Some(0), "stderr: {}", second.stderr);
    // Everything from ten minutes (the default lookback) before the state's end.
    let from = chrono::DateTime::parse_from_rfc3339(&end).unwrap() - chrono::TimeDelta::minutes(10);
    let expected = stamps
        .iter()
        .filter(|s| chrono::DateTime::parse_from_rfc3339(s).unwrap() >= from)
        .count();
    assert_eq!(records_of(&second, "Account").len(), expected);
    assert!(expected < stamps.len());
    // Our state replaces Airbyte's form.
    let last = &states_of(&second, "Account").last().unwrap()["state"]["stream"]["stream_state"];
    assert!(last["SystemModstamp"].is_string(), "{last}");
}
