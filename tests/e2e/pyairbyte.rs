//! Our connectors driven by PyAirbyte (`airbyte==0.71.3`), the way data engineers run them:
//! `ab.get_source(..., local_executable=...)` / `ab.get_destination(..., local_executable=...)`
//! against the local Salesforce emulator.
//!
//! The drivers are our own small scripts in `tools/pyairbyte/` (`source_read.py`,
//! `destination_write.py`, plus `fixture_source.py`, a tiny source that feeds the destination).
//! They run with the python of the PyAirbyte venv named by env `PYAIRBYTE_PYTHON`, which
//! `scripts/test` creates (step `setup_pyairbyte_venv`, `.venv-pyairbyte`) and exports. No silent
//! skips: without it every test here fails with the command to run.
//!
//! What is checked:
//! - source: `check` succeeds; the first read puts exactly the emulator's rows of each stream into
//!   PyAirbyte's DuckDB cache, with the emulator's values; after rows are updated, inserted and
//!   soft-deleted through the emulator's admin API, a second run on the same cache (PyAirbyte
//!   passes the state it saved) returns exactly those rows with their new values, and a third read
//!   right after it returns nothing outside them.
//! - destination: records from a PyAirbyte source, piped straight through (`--via stream`) or
//!   replayed from a cache (`--via cache`), upsert on `External_Id__c` (PyAirbyte's default for a
//!   stream with a primary key is `append_dedup`): new keys become new rows, existing keys update
//!   their row, the echoed states count every record, and everything reads back from the emulator.
//! - check: a wrong client secret makes PyAirbyte's `check()` fail with its check-failed error and
//!   the connector's reason, without the secret in it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Seed for the emulator's deterministic data.
const SEED: u64 = 42;
/// Rows per object for the source test; the count assertions use these.
const SOURCE_ROWS: &[(&str, u64)] = &[("Account", 500), ("Contact", 120)];
/// Before every generated row, so the first read covers all of them (the connector's default
/// start date, like Airbyte's, is two years back).
const START_DATE: &str = "2000-01-01T00:00:00Z";
/// Generated rows end here (2025-01-01T00:00:00Z): far from "now", so no generated row falls in
/// the connector's lookback window and the second read holds only the changes made by the test.
const DATA_END_MS: i64 = 1_735_689_600_000;
/// How long one driver run may take.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(600);

// ---------------------------------------------------------------------------------------------
// The PyAirbyte venv and the drivers
// ---------------------------------------------------------------------------------------------

/// The PyAirbyte venv's python from `PYAIRBYTE_PYTHON`, or a test failure saying how to get it.
fn pyairbyte_python() -> PathBuf {
    let root = testkit::workspace_root();
    let setup = format!(
        "{}/scripts/test setup_pyairbyte_venv && export PYAIRBYTE_PYTHON={}/.venv-pyairbyte/bin/python",
        root.display(),
        root.display()
    );
    match std::env::var_os("PYAIRBYTE_PYTHON").filter(|v| !v.is_empty()) {
        Some(p) => {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "PYAIRBYTE_PYTHON={} does not exist; recreate the venv: {setup}",
                p.display()
            );
            p
        }
        None if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "CI=true but PYAIRBYTE_PYTHON is not set: scripts/test must run its step \
             `setup_pyairbyte_venv` (which installs airbyte==0.71.3 into .venv-pyairbyte and exports \
             PYAIRBYTE_PYTHON) before `cargo nextest run`"
        ),
        None => panic!(
            "PYAIRBYTE_PYTHON is not set; these tests run the PyAirbyte drivers in tools/pyairbyte/ \
             with the PyAirbyte venv's python. Run:\n  {setup}\n(or run everything with scripts/test)"
        ),
    }
}

/// Runs `tools/pyairbyte/<script>` with `args` plus `--output <file>` and returns the JSON it
/// wrote. Fails the test with the command, PyAirbyte's error and the end of stderr when the driver
/// reports an error or exits non-zero.
async fn run_driver(script: &str, args: &[String]) -> Value {
    match run_driver_outcome(script, args).await {
        Ok(v) => v,
        Err(failure) => panic!("{failure}"),
    }
}

/// What a failed driver run said.
#[derive(Debug)]
struct DriverFailure {
    /// The `error` object the driver wrote (`type`, `message`, `details`), if it wrote one.
    error: Option<Value>,
    /// The whole report: command, exit status, PyAirbyte's error, the end of stderr.
    report: String,
}

impl std::fmt::Display for DriverFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.report)
    }
}

/// Like [`run_driver`], but a driver that reports an error is an `Err`, not a test failure.
async fn run_driver_outcome(script: &str, args: &[String]) -> Result<Value, DriverFailure> {
    let python = pyairbyte_python();
    let driver = testkit::workspace_root()
        .join("tools/pyairbyte")
        .join(script);
    let work = tempfile::tempdir().expect("driver work dir");
    let output = work.path().join("result.json");
    let mut cmd = tokio::process::Command::new(&python);
    cmd.arg(&driver)
        .args(args)
        .arg("--output")
        .arg(&output)
        .current_dir(work.path())
        .kill_on_drop(true);
    let shown = format!(
        "{} {} {}",
        python.display(),
        driver.display(),
        args.join(" ")
    );
    let out = match tokio::time::timeout(DRIVER_TIMEOUT, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("cannot run `{shown}`: {e}"),
        Err(_) => panic!("`{shown}` still running after {DRIVER_TIMEOUT:?}; killed it"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let result: Option<Value> = std::fs::read_to_string(&output)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    match result {
        Some(v) if out.status.success() && v.get("error").is_none() => Ok(v),
        other => {
            let error = other.and_then(|mut v| v.get_mut("error").map(Value::take));
            let said = error
                .as_ref()
                .and_then(|e| e["details"].as_str())
                .unwrap_or("(the driver wrote no result)");
            let report = format!(
                "PyAirbyte driver failed ({}):\n  command: {shown}\n--- what PyAirbyte said ---\n{said}\n\
                 --- driver stderr (end) ---\n{}",
                out.status,
                tail(&stderr, 6000)
            );
            Err(DriverFailure { error, report })
        }
    }
}

fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut start = s.len() - n;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

// ---------------------------------------------------------------------------------------------
// The emulator: start, admin API, REST queries (a minimal HTTP/1.1 client: no extra dependency)
// ---------------------------------------------------------------------------------------------

async fn start_emulator(rows: &[(&str, u64)]) -> salesforce_emulator::Handle {
    salesforce_emulator::spawn(salesforce_emulator::Config {
        seed: SEED,
        rows: rows.iter().map(|(o, n)| ((*o).to_string(), *n)).collect(),
        data_end_ms: Some(DATA_END_MS),
        ..Default::default()
    })
    .await
    .expect("spawn the emulator")
}

/// One HTTP/1.1 exchange with `Connection: close`; returns the status and the (de-chunked) body.
async fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<u8>) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http URL: {url}"));
    let (authority, target) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .unwrap_or_else(|e| panic!("connect {authority}: {e}"));
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {url}: no HTTP header end in the answer"));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut payload = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {url}: bad status line in {head:?}"));
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        payload = dechunk(&payload);
    }
    (status, payload)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
    out
}

fn as_json(method: &str, url: &str, status: u16, body: &[u8]) -> Value {
    assert!(
        (200..300).contains(&status),
        "{method} {url} -> {status}: {}",
        String::from_utf8_lossy(body)
    );
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{method} {url}: answer is not JSON ({e})"))
}

/// Calls the emulator's admin API (`/__emulator/...`, no auth) and returns its JSON answer.
async fn admin(base: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    let url = format!("{base}/__emulator{path}");
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let (status, answer) = http(
        method,
        &url,
        &[("Content-Type", "application/json")],
        &bytes,
    )
    .await;
    as_json(method, &url, status, &answer)
}

/// Every row written through the admin API must have succeeded; returns the ids.
fn admin_ids(answer: &Value) -> Vec<String> {
    let results = answer["results"].as_array().expect("admin results");
    results
        .iter()
        .map(|r| {
            assert_eq!(r["success"], true, "admin write failed: {r}");
            r["id"].as_str().expect("id").to_string()
        })
        .collect()
}

/// A row as the emulator stores it (`GET /__emulator/records/{object}/{id}`).
async fn stored(base: &str, object: &str, id: &str) -> Value {
    admin(base, "GET", &format!("/records/{object}/{id}"), None).await
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An access token for the emulator's REST API (refresh-token grant, default credentials).
async fn access_token(base: &str) -> String {
    let url = format!("{base}/services/oauth2/token");
    let form = "grant_type=refresh_token&client_id=emulator-client-id\
                &client_secret=emulator-client-secret&refresh_token=emulator-refresh-token";
    let (status, body) = http(
        "POST",
        &url,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
    .await;
    as_json("POST", &url, status, &body)["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

/// Runs a SOQL query through the REST API and returns the whole answer (one page; the queries
/// here stay far below the page size, which the assertion on `done` checks).
async fn soql(base: &str, token: &str, query: &str) -> Value {
    let url = format!(
        "{base}/services/data/v62.0/query?q={}",
        percent_encode(query)
    );
    let auth = format!("Bearer {token}");
    let (status, body) = http("GET", &url, &[("Authorization", &auth)], &[]).await;
    let answer = as_json("GET", query, status, &body);
    assert_eq!(answer["done"], true, "{query}: more than one page");
    answer
}

// ---------------------------------------------------------------------------------------------
// Source
// ---------------------------------------------------------------------------------------------

fn source_args(base: &str, cache_dir: &std::path::Path, reads: u32) -> Vec<String> {
    let source = testkit::capturing_bin("source-salesforce");
    let streams: Vec<&str> = SOURCE_ROWS.iter().map(|(o, _)| *o).collect();
    vec![
        "--emulator-url".into(),
        base.into(),
        "--source".into(),
        source.display().to_string(),
        "--streams".into(),
        streams.join(","),
        "--cache-dir".into(),
        cache_dir.display().to_string(),
        "--reads".into(),
        reads.to_string(),
        "--config-extra".into(),
        json!({ "start_date": START_DATE }).to_string(),
    ]
}

/// The ids of the rows one read wrote into the cache, per stream.
fn new_ids(read: &Value, stream: &str) -> BTreeSet<String> {
    read["new_rows"][stream]["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no new_rows for {stream} in {read}"))
        .iter()
        .map(|r| r["id"].as_str().expect("row id").to_string())
        .collect()
}

fn new_row<'a>(read: &'a Value, stream: &str, id: &str) -> &'a Value {
    read["new_rows"][stream]["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == id))
        .unwrap_or_else(|| panic!("{stream} row {id} is not among the rows this read wrote"))
}

/// `2020-01-01T00:00:00.000+0000` (REST) and `2020-01-01T00:00:00` (DuckDB cache) name the same
/// second; compare the first 19 characters.
fn same_second(a: &Value, b: &Value) -> bool {
    match (a.as_str(), b.as_str()) {
        (Some(a), Some(b)) if a.len() >= 19 && b.len() >= 19 => a[..19] == b[..19],
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_reads_everything_then_only_changes() {
    let emu = start_emulator(SOURCE_ROWS).await;
    let base = emu.base_url.clone();
    let cache_dir = tempfile::tempdir().expect("cache dir");

    // Run 1: check + full first read.
    let first = run_driver("source_read.py", &source_args(&base, cache_dir.path(), 1)).await;
    assert_eq!(first["check"], "succeeded", "{first}");
    let available: BTreeSet<&str> = first["available_streams"]
        .as_array()
        .expect("available_streams")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let read1 = &first["reads"][0];
    for (stream, rows) in SOURCE_ROWS {
        assert!(
            available.contains(stream),
            "{stream} not discovered: {available:?}"
        );
        assert_eq!(
            read1["records_read"][stream], *rows,
            "first read: RECORD messages for {stream} (emulator has {rows} rows)"
        );
        assert_eq!(
            read1["cache_rows"][stream], *rows,
            "first read: cache rows of {stream}"
        );
        assert_eq!(read1["new_rows"][stream]["count"], *rows, "{stream}");
        assert_eq!(
            read1["new_rows"][stream]["distinct_ids"], *rows,
            "first read: {stream} ids are not unique"
        );
        let state = read1["state"]
            .as_array()
            .expect("state list")
            .iter()
            .find(|s| s["stream"]["stream_descriptor"]["name"] == *stream)
            .unwrap_or_else(|| panic!("PyAirbyte saved no state for {stream}: {}", read1["state"]));
        assert!(
            state["stream"]["stream_state"]
                .as_object()
                .is_some_and(|o| !o.is_empty()),
            "empty stream_state for {stream}: {state}"
        );
    }
    // A few values, compared with what the emulator stores.
    let accounts: Vec<Value> = read1["new_rows"]["Account"]["rows"]
        .as_array()
        .expect("rows")
        .clone();
    let contacts: Vec<Value> = read1["new_rows"]["Contact"]["rows"]
        .as_array()
        .expect("rows")
        .clone();
    for row in accounts.iter().take(3).chain(contacts.iter().take(2)) {
        let id = row["id"].as_str().expect("id");
        let object = if id.starts_with("001") {
            "Account"
        } else {
            "Contact"
        };
        let truth = stored(&base, object, id).await;
        assert_eq!(row["name"], truth["Name"], "{object} {id} Name");
        assert!(
            same_second(&row["systemmodstamp"], &truth["SystemModstamp"]),
            "{object} {id} SystemModstamp: cache {} vs emulator {}",
            row["systemmodstamp"],
            truth["SystemModstamp"]
        );
        if object == "Contact" {
            assert_eq!(row["lastname"], truth["LastName"], "Contact {id} LastName");
        }
    }

    // Changes between the runs: 3 Account renames, 1 new Account, 1 Account soft delete,
    // 2 Contact last-name changes.
    let renamed: Vec<String> = accounts[10..13]
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let mut names = BTreeMap::new();
    let mut patch = Vec::new();
    for (i, id) in renamed.iter().enumerate() {
        let name = format!("Renamed through PyAirbyte test {i}");
        patch.push(json!({"Id": id, "Name": name}));
        names.insert(id.clone(), name);
    }
    admin_ids(
        &admin(
            &base,
            "PATCH",
            "/records/Account",
            Some(&json!({"records": patch})),
        )
        .await,
    );
    let inserted = admin_ids(
        &admin(
            &base,
            "POST",
            "/records/Account",
            Some(&json!({"records": [{"Name": "Inserted between PyAirbyte runs"}]})),
        )
        .await,
    );
    names.insert(
        inserted[0].clone(),
        "Inserted between PyAirbyte runs".to_string(),
    );
    let deleted = accounts[20]["id"].as_str().unwrap().to_string();
    admin_ids(
        &admin(
            &base,
            "POST",
            "/records/Account/delete",
            Some(&json!({"ids": [deleted]})),
        )
        .await,
    );
    let mut last_names = BTreeMap::new();
    let mut patch = Vec::new();
    for (i, row) in contacts[5..7].iter().enumerate() {
        let id = row["id"].as_str().unwrap().to_string();
        let last = format!("Changedlast{i}");
        patch.push(json!({"Id": id, "LastName": last}));
        last_names.insert(id, last);
    }
    admin_ids(
        &admin(
            &base,
            "PATCH",
            "/records/Contact",
            Some(&json!({"records": patch})),
        )
        .await,
    );

    // Run 2 on the same cache: PyAirbyte passes the saved state; then a third read right away.
    let second = run_driver("source_read.py", &source_args(&base, cache_dir.path(), 2)).await;
    let read2 = &second["reads"][0];
    let mut want_accounts: BTreeSet<String> = names.keys().cloned().collect();
    want_accounts.insert(deleted.clone());
    let want_contacts: BTreeSet<String> = last_names.keys().cloned().collect();
    assert_eq!(
        new_ids(read2, "Account"),
        want_accounts,
        "second read: Account rows should be exactly the renamed, inserted and deleted ones"
    );
    assert_eq!(
        new_ids(read2, "Contact"),
        want_contacts,
        "second read: Contact rows should be exactly the changed ones"
    );
    assert_eq!(
        read2["records_read"]["Account"],
        want_accounts.len(),
        "{read2}"
    );
    assert_eq!(
        read2["records_read"]["Contact"],
        want_contacts.len(),
        "{read2}"
    );
    for (id, name) in &names {
        assert_eq!(
            new_row(read2, "Account", id)["name"],
            name.as_str(),
            "Account {id}"
        );
        assert_eq!(
            new_row(read2, "Account", id)["isdeleted"],
            false,
            "Account {id}"
        );
    }
    assert_eq!(
        new_row(read2, "Account", &deleted)["isdeleted"],
        true,
        "the soft-deleted Account {deleted} should come back with IsDeleted = true"
    );
    for (id, last) in &last_names {
        assert_eq!(
            new_row(read2, "Contact", id)["lastname"],
            last.as_str(),
            "Contact {id}"
        );
    }
    // PyAirbyte merges on the primary key: one more Account row (the insert), no duplicates.
    let account_rows = SOURCE_ROWS[0].1;
    assert_eq!(read2["cache_rows"]["Account"], account_rows + 1, "{read2}");
    assert_eq!(read2["cache_rows"]["Contact"], SOURCE_ROWS[1].1, "{read2}");

    // Run 3 (same process, right after): nothing outside the rows changed before run 2.
    let read3 = &second["reads"][1];
    for (stream, changed) in [("Account", &want_accounts), ("Contact", &want_contacts)] {
        let again = new_ids(read3, stream);
        assert!(
            again.is_subset(changed),
            "third read returned {stream} rows that did not change: {:?}",
            again.difference(changed).collect::<Vec<_>>()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Destination
// ---------------------------------------------------------------------------------------------

/// Rows per object for the destination tests.
const DESTINATION_ROWS: &[(&str, u64)] = &[("Account", 50)];
/// New records per destination test.
const INSERTS: usize = 20;
/// Existing Accounts each destination test updates through their external id.
const UPDATES: usize = 3;

/// Upserts 20 new and 3 existing Accounts (matched on `External_Id__c`) through PyAirbyte and
/// reads them back from the emulator.
async fn destination_upserts(via: &str) {
    let emu = start_emulator(DESTINATION_ROWS).await;
    let base = emu.base_url.clone();
    let token = access_token(&base).await;

    let existing = soql(
        &base,
        &token,
        &format!("SELECT Id, External_Id__c, Name, Phone FROM Account ORDER BY Id LIMIT {UPDATES}"),
    )
    .await["records"]
        .as_array()
        .expect("records")
        .clone();
    assert_eq!(existing.len(), UPDATES);
    let count_before = soql(&base, &token, "SELECT COUNT() FROM Account").await["totalSize"]
        .as_u64()
        .expect("totalSize");

    let industries = ["Energy", "Retail", "Banking", "Technology"];
    let mut records: Vec<Value> = (0..INSERTS)
        .map(|i| {
            json!({
                "External_Id__c": format!("PYA-{via}-{i}"),
                "Name": format!("PyAirbyte {via} {i}"),
                "Industry": industries[i % industries.len()],
                "NumberOfEmployees": i * 10 + 1,
                "AnnualRevenue": if i % 5 == 4 { Value::Null } else { json!(i as f64 * 1000.25) },
                "Description": format!("line one, \"quoted\"\nline two é {i}"),
            })
        })
        .collect();
    for (i, row) in existing.iter().enumerate() {
        records.push(json!({
            "External_Id__c": row["External_Id__c"],
            "Name": format!("Updated by PyAirbyte {via} {i}"),
        }));
    }
    let work = tempfile::tempdir().expect("work dir");
    let fixture = testkit::json_file(&json!({"streams": [{
        "name": "Account",
        "primary_key": [["External_Id__c"]],
        "records": records,
    }]}));

    let destination = testkit::capturing_bin("destination-salesforce");
    let out = run_driver(
        "destination_write.py",
        &[
            "--emulator-url".into(),
            base.clone(),
            "--destination".into(),
            destination.display().to_string(),
            "--records".into(),
            fixture.path().display().to_string(),
            "--via".into(),
            via.into(),
            "--work-dir".into(),
            work.path().display().to_string(),
        ],
    )
    .await;

    let total = INSERTS + UPDATES;
    assert_eq!(out["check"]["destination"], "succeeded", "{out}");
    assert_eq!(
        out["catalog"],
        json!([{"stream": "Account", "destination_sync_mode": "append_dedup",
                "primary_key": [["External_Id__c"]]}]),
        "what PyAirbyte configured"
    );
    assert_eq!(out["records_delivered"]["Account"], total, "{out}");
    assert_eq!(
        out["records_confirmed"]["Account"], total,
        "sum of destinationStats.recordCount over the destination's echoed states: {out}"
    );
    let states = out["states"].as_array().expect("states");
    assert!(!states.is_empty(), "the destination echoed no state: {out}");
    for s in states {
        assert_eq!(
            s["destinationStats"]["rejectedRecordCount"].as_f64(),
            Some(0.0),
            "rejected records: {s}"
        );
    }

    // New rows: one per new external id, with the values sent.
    let keys: Vec<String> = (0..INSERTS).map(|i| format!("'PYA-{via}-{i}'")).collect();
    let written = soql(
        &base,
        &token,
        &format!(
            "SELECT Id, External_Id__c, Name, Industry, NumberOfEmployees, AnnualRevenue, Description \
             FROM Account WHERE External_Id__c IN ({})",
            keys.join(", ")
        ),
    )
    .await;
    let written = written["records"].as_array().expect("records");
    assert_eq!(written.len(), INSERTS, "new Accounts in the emulator");
    for row in written {
        let key = row["External_Id__c"].as_str().expect("key");
        let sent = records
            .iter()
            .find(|r| r["External_Id__c"] == key)
            .unwrap_or_else(|| panic!("unexpected row {row}"));
        for field in ["Name", "Industry", "NumberOfEmployees", "Description"] {
            assert_eq!(row[field], sent[field], "{key} {field}");
        }
        match sent["AnnualRevenue"].as_f64() {
            Some(v) => assert_eq!(
                row["AnnualRevenue"].as_f64(),
                Some(v),
                "{key} AnnualRevenue"
            ),
            None => assert!(row["AnnualRevenue"].is_null(), "{key} AnnualRevenue: {row}"),
        }
    }

    // Existing rows: updated in place (same Id), fields not sent left as they were when the
    // records came straight from the source (the cache adds every column, absent ones as null).
    for (i, before) in existing.iter().enumerate() {
        let id = before["Id"].as_str().expect("Id");
        let now = stored(&base, "Account", id).await;
        assert_eq!(
            now["Name"],
            format!("Updated by PyAirbyte {via} {i}").as_str(),
            "Account {id}"
        );
        if via == "stream" {
            assert_eq!(
                now["Phone"], before["Phone"],
                "Account {id} Phone was not sent"
            );
        }
    }

    let count_after = soql(&base, &token, "SELECT COUNT() FROM Account").await["totalSize"]
        .as_u64()
        .expect("totalSize");
    assert_eq!(
        count_after,
        count_before + INSERTS as u64,
        "Accounts before {count_before}, after {count_after}: only the new external ids add rows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_upserts_records_piped_from_a_source() {
    destination_upserts("stream").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_upserts_records_replayed_from_a_cache() {
    destination_upserts("cache").await;
}

// ---------------------------------------------------------------------------------------------
// check through PyAirbyte
// ---------------------------------------------------------------------------------------------

/// A wrong client secret: PyAirbyte's `check()` raises its check-failed error carrying the
/// connector's reason (from CONNECTION_STATUS FAILED, not a crash), and the secret is not echoed.
async fn wrong_secret_fails_check(script: &str, binary_flag: &str, binary: &str) {
    const WRONG_SECRET: &str = "not-the-secret-5f1c9e";
    let emu = start_emulator(&[("Account", 5)]).await;
    let bin = testkit::capturing_bin(binary);
    let failure = run_driver_outcome(
        script,
        &[
            "--emulator-url".into(),
            emu.base_url.clone(),
            binary_flag.into(),
            bin.display().to_string(),
            "--check-only".into(),
            "--config-extra".into(),
            json!({ "client_secret": WRONG_SECRET }).to_string(),
        ],
    )
    .await
    .expect_err("check with a wrong client_secret must fail");
    let error = failure
        .error
        .as_ref()
        .unwrap_or_else(|| panic!("the driver reported no error object:\n{failure}"));
    assert_eq!(
        error["type"], "AirbyteConnectorCheckFailedError",
        "PyAirbyte should see a failed check (CONNECTION_STATUS FAILED), not a connector crash:\n{failure}"
    );
    let details = error["details"].as_str().unwrap_or_default();
    assert!(
        details.contains("client_secret"),
        "the failure reason should name the problem (client_secret):\n{failure}"
    );
    assert!(
        !details.contains(WRONG_SECRET) && !details.contains("emulator-refresh-token"),
        "a secret from the config leaked into the check failure:\n{failure}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_check_with_wrong_secret_fails_in_pyairbyte() {
    wrong_secret_fails_check("source_read.py", "--source", "source-salesforce").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_check_with_wrong_secret_fails_in_pyairbyte() {
    wrong_secret_fails_check(
        "destination_write.py",
        "--destination",
        "destination-salesforce",
    )
    .await;
}
