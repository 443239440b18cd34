//! Proof of fidelity: Airbyte's own Python `source-salesforce` 2.10.3 (code nobody here wrote) run
//! against our emulator must check, discover and read exactly what the emulator holds.
//!
//! The reference connector lives in a venv made by `tools/reference-source/setup.sh` (default
//! `<repo>/.venv-reference`, override with env `REFERENCE_VENV`). `tools/reference-source/launch.py`
//! runs its normal entry point with every argument, after pointing its hard-coded login hosts at the
//! emulator URL in env `SALESFORCE_EMULATOR_URL`; everything after login follows the `instance_url`
//! the emulator returns. The launcher also writes every HTTP exchange to a JSON-lines traffic log
//! (`REFERENCE_TRAFFIC_LOG`), which these tests read to (a) know what the emulator answered and
//! (b) print a precise request/answer trail when an assertion fails.
//!
//! How `scripts/test` must call the setup (before `cargo nextest run`):
//!
//! ```text
//! tools/reference-source/setup.sh      # creates or reuses .venv-reference (~35 s cold, 0 s warm)
//! ```
//!
//! No silent skips: when the venv is missing every test here fails with the setup command to run
//! (the message also says so when `CI=true`).
//!
//! What the tests cover (anchors §2–§6 describe the reference's behaviour):
//! - `check` succeeds (token + describe global only); a wrong secret is a 400 OAuth error that the
//!   reference reports as a config error.
//! - `discover` lists exactly the emulator's queryable objects (minus the reference's deny-lists)
//!   plus `Describe`; every property's type follows from the emulator's describe per anchors §2.3,
//!   PK/cursor per §2.4, plus real-Salesforce spot checks (Account.AnnualRevenue is a number…).
//! - Bulk path (Opportunity; Account and Invoice__c with `force_use_bulk_api`): job lifecycle with
//!   queued/in-progress polling, `Sforce-Locator` paging, delete; no fallback to REST.
//! - REST path (Attachment with base64 Body, never Bulk; Account with address fields): `/queryAll`
//!   with `nextRecordsUrl` paging, soft-deleted rows, blob URLs that serve the stored bytes.
//! - Every stream at once (full refresh), and every incremental stream in yearly windows followed
//!   by a second run after updates and a soft delete made through the emulator's admin API.
//! - Refresh-token rotation: CONTROL message with the new token, replay of the old one rejected.
//! - Faults: Bulk job `Failed` → REST fallback; 401 → re-login; 503 → retry; 403
//!   `REQUEST_LIMIT_EXCEEDED` on Bulk create → REST, on a REST query → transient error.
//! - Counts equal the rows the emulator was configured with (queryAll includes soft-deleted rows);
//!   values equal the emulator's stored rows (`/__emulator/records/...`); Bulk and REST agree row for
//!   row on a custom object with every scalar field type.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};
use testkit::Run;

/// Seed for the emulator's deterministic data.
const SEED: u64 = 42;
/// Rows per object the emulator is configured with; every count assertion uses these.
/// Account > 2000 so its REST read needs a second `nextRecordsUrl` page (salesforce-api.md §2.6).
const ROWS: &[(&str, u64)] = &[("Account", 2_050), ("Opportunity", 300), ("Attachment", 40)];
/// A start date before any generated row, so every row is inside the incremental range.
const START_DATE: &str = "2000-01-01T00:00:00Z";
/// One incremental window from START_DATE to now (keeps Bulk to one job per stream).
const ONE_WINDOW: &str = "P10000D";

// ---------------------------------------------------------------------------------------------
// Locating the reference connector
// ---------------------------------------------------------------------------------------------

fn repo_root() -> PathBuf {
    testkit::workspace_root()
}

fn setup_command() -> String {
    format!("{}/tools/reference-source/setup.sh", repo_root().display())
}

/// The venv's python, or a test failure naming the setup command.
fn reference_python() -> PathBuf {
    let venv = std::env::var_os("REFERENCE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv-reference"));
    let python = venv.join("bin").join("python");
    let stamp = venv.join(".reference-stamp");
    if !python.is_file() || !stamp.is_file() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        panic!(
            "the reference source-salesforce venv is missing at {}.\n\
             Run `{}` first (it installs airbyte-source-salesforce==2.10.3 from PyPI).{}",
            venv.display(),
            setup_command(),
            if ci {
                "\nCI=true: scripts/test must run that setup script before `cargo nextest run`."
            } else {
                ""
            }
        );
    }
    python
}

fn launcher() -> PathBuf {
    repo_root().join("tools/reference-source/launch.py")
}

// ---------------------------------------------------------------------------------------------
// Emulator
// ---------------------------------------------------------------------------------------------

fn rows_of(object: &str) -> u64 {
    ROWS.iter()
        .find(|(o, _)| *o == object)
        .map(|(_, n)| *n)
        .unwrap_or_else(|| panic!("no configured row count for {object}"))
}

fn emulator_config() -> salesforce_emulator::Config {
    salesforce_emulator::Config {
        seed: SEED,
        rows: ROWS.iter().map(|(o, n)| ((*o).to_string(), *n)).collect(),
        ..Default::default()
    }
}

async fn start_emulator() -> salesforce_emulator::Handle {
    start_emulator_with(|_| {}).await
}

/// Starts the emulator with [`emulator_config`] adjusted by `tweak` (switches, faults).
async fn start_emulator_with(
    tweak: impl FnOnce(&mut salesforce_emulator::Config),
) -> salesforce_emulator::Handle {
    let mut config = emulator_config();
    tweak(&mut config);
    salesforce_emulator::spawn(config)
        .await
        .expect("spawn the emulator")
}

// ---------------------------------------------------------------------------------------------
// Running the reference connector
// ---------------------------------------------------------------------------------------------

/// One HTTP exchange recorded by launch.py.
#[derive(Debug, Clone)]
struct Exchange(Value);

impl Exchange {
    fn method(&self) -> &str {
        self.0["method"].as_str().unwrap_or("")
    }
    fn url(&self) -> &str {
        self.0["url"].as_str().unwrap_or("")
    }
    /// Path and query, without scheme and host.
    fn target(&self) -> String {
        let url = self.url();
        match url
            .find("://")
            .and_then(|i| url[i + 3..].find('/').map(|j| i + 3 + j))
        {
            Some(p) => url[p..].to_string(),
            None => url.to_string(),
        }
    }
    fn path(&self) -> String {
        let t = self.target();
        t.split('?').next().unwrap_or("").to_string()
    }
    fn status(&self) -> Option<u64> {
        self.0["status"].as_u64()
    }
    fn body(&self) -> &str {
        self.0["response_body"].as_str().unwrap_or("")
    }
    fn json(&self) -> Option<Value> {
        serde_json::from_str(self.body()).ok()
    }
    fn describe(&self) -> String {
        let mut s = format!(
            "{} {} -> {}",
            self.method(),
            percent_decode(&self.target()),
            self.status()
                .map_or_else(|| format!("error {}", self.0["error"]), |c| c.to_string())
        );
        if let Some(b) = self.0["request_body"].as_str() {
            let _ = write!(s, "\n      request body: {}", clip(b, 400));
        }
        if self.status().is_some_and(|c| c >= 300) || self.status().is_none() {
            let _ = write!(s, "\n      answer: {}", clip(self.body(), 600));
        }
        s
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The outcome of one reference-connector run plus its HTTP trail.
struct RefRun {
    run: Run,
    traffic: Vec<Exchange>,
    label: String,
    /// Files the reference left in its working directory (the Bulk path spools result CSVs there
    /// and deletes them after parsing; a leftover means it choked on a result file).
    leftovers: Vec<String>,
}

impl RefRun {
    /// A failure report: the command, non-2xx exchanges, the last exchanges, error traces and the
    /// tail of stderr. Appended to every assertion message.
    fn report(&self) -> String {
        let mut s = format!(
            "\n===== reference run: {} (exit {:?})\n",
            self.label,
            self.run.code()
        );
        let bad: Vec<_> = self
            .traffic
            .iter()
            .filter(|e| e.status().is_none_or(|c| c >= 300))
            .collect();
        let _ = writeln!(
            s,
            "-- {} exchanges, {} not 2xx:",
            self.traffic.len(),
            bad.len()
        );
        for e in bad.iter().take(12) {
            let _ = writeln!(s, "   {}", e.describe());
        }
        let _ = writeln!(s, "-- last exchanges:");
        let skip = self.traffic.len().saturating_sub(8);
        for e in self.traffic.iter().skip(skip) {
            let _ = writeln!(s, "   {}", e.describe());
        }
        for t in self.run.of_type("TRACE") {
            if t["trace"]["type"] == "ERROR" {
                let _ = writeln!(
                    s,
                    "-- TRACE ERROR: {} | internal: {}",
                    t["trace"]["error"]["message"],
                    clip(
                        t["trace"]["error"]["internal_message"]
                            .as_str()
                            .unwrap_or(""),
                        800
                    )
                );
            }
        }
        for l in self.run.of_type("LOG") {
            let level = l["log"]["level"].as_str().unwrap_or("");
            if level == "ERROR" || level == "WARN" || level == "FATAL" {
                let _ = writeln!(
                    s,
                    "-- LOG {level}: {}",
                    clip(l["log"]["message"].as_str().unwrap_or(""), 600)
                );
            }
        }
        let lines: Vec<&str> = self.run.stderr.lines().collect();
        if !lines.is_empty() {
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            let _ = writeln!(s, "-- stderr tail:\n{tail}");
        }
        s
    }

    fn records(&self, stream: &str) -> Vec<&Value> {
        self.run
            .of_type("RECORD")
            .into_iter()
            .filter(|m| m["record"]["stream"] == stream)
            .map(|m| &m["record"]["data"])
            .collect()
    }

    /// Asserts the reference emitted exactly as many records of `stream` as the emulator holds.
    fn assert_read_all(&self, stream: &str) {
        assert_eq!(
            self.records(stream).len() as u64,
            rows_of(stream),
            "{}",
            self.report()
        );
    }

    /// Asserts `exchange` answered with a Salesforce error list whose first `errorCode` is `code`.
    fn assert_error_code(&self, exchange: &Exchange, code: &str) {
        let body = exchange.json().unwrap_or(Value::Null);
        assert_eq!(body[0]["errorCode"], code, "{}", self.report());
    }

    /// Asserts the reference asked for a token more than once (it logged in again).
    fn assert_logged_in_again(&self) {
        assert!(
            self.exchanges("POST", "/services/oauth2/token").len() >= 2,
            "no second login{}",
            self.report()
        );
    }

    /// The exchanges answered with `status`.
    fn answered(&self, status: u64) -> Vec<&Exchange> {
        self.traffic
            .iter()
            .filter(|e| e.status() == Some(status))
            .collect()
    }

    fn exchanges(&self, method: &str, path_contains: &str) -> Vec<&Exchange> {
        self.traffic
            .iter()
            .filter(|e| e.method() == method && e.path().contains(path_contains))
            .collect()
    }

    /// Asserts exit 0, no TRACE ERROR and every HTTP exchange answered 2xx.
    fn assert_clean(&self) {
        self.assert_clean_except(|_| false);
    }

    /// Like [`RefRun::assert_clean`], but non-2xx exchanges matching `allowed` are accepted (for
    /// calls the reference makes knowing they may fail, e.g. aborting an already failed job).
    fn assert_clean_except(&self, allowed: impl Fn(&Exchange) -> bool) {
        self.assert_results_header_case();
        let errors: Vec<_> = self
            .run
            .of_type("TRACE")
            .into_iter()
            .filter(|t| t["trace"]["type"] == "ERROR")
            .collect();
        assert!(
            self.run.code() == Some(0) && errors.is_empty(),
            "reference connector failed{}",
            self.report()
        );
        let bad = self
            .traffic
            .iter()
            .filter(|e| e.status().is_none_or(|c| c >= 300) && !allowed(e))
            .count();
        assert_eq!(
            bad,
            0,
            "emulator answered {bad} request(s) with non-2xx{}",
            self.report()
        );
        assert!(
            self.leftovers.is_empty(),
            "reference left files in its workdir: {:?}{}",
            self.leftovers,
            self.report()
        );
    }

    /// Bulk result downloads must name their headers as Salesforce does on HTTP/1.1
    /// (`Content-Type`, not `content-type`): the reference's CDK reads the charset with a
    /// case-sensitive lookup, `dict(response.headers).get("content-type")`, which only matches a
    /// lowercase wire name and then crashes (`ValueError: not enough values to unpack`) parsing it.
    fn assert_results_header_case(&self) {
        for e in self
            .traffic
            .iter()
            .filter(|e| e.path().ends_with("/results"))
        {
            let names: Vec<&String> = e.0["response_headers"]
                .as_object()
                .map(|h| h.keys().collect())
                .unwrap_or_default();
            assert!(
                names.iter().any(|n| n.as_str() == "Content-Type"),
                "emulator answered {} {} with header names {names:?}; Salesforce sends \
                 `Content-Type` (title case) and the reference's Bulk CSV extractor fails on a \
                 lowercase `content-type`{}",
                e.method(),
                e.path(),
                self.report()
            );
        }
    }

    /// Final stream status of `stream` (COMPLETE / INCOMPLETE / …).
    fn final_status(&self, stream: &str) -> Option<String> {
        self.run
            .of_type("TRACE")
            .into_iter()
            .filter(|t| {
                t["trace"]["type"] == "STREAM_STATUS"
                    && t["trace"]["stream_status"]["stream_descriptor"]["name"] == stream
            })
            .filter_map(|t| {
                t["trace"]["stream_status"]["status"]
                    .as_str()
                    .map(str::to_string)
            })
            .next_back()
    }
}

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Runs `launch.py <args>` against the emulator at `base_url` and returns output + traffic.
async fn reference(base_url: &str, args: Vec<String>) -> RefRun {
    let python = reference_python();
    let workdir = tempfile::tempdir().expect("workdir");
    let traffic_path = workdir.path().join(format!(
        "traffic-{}.jsonl",
        RUN_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let label = format!("launch.py {}", args.first().cloned().unwrap_or_default());
    let url = base_url.to_string();
    let traffic_for_child = traffic_path.clone();
    let workdir_path = workdir.path().to_path_buf();
    let run = tokio::task::spawn_blocking(move || {
        let mut full: Vec<String> = vec![launcher().display().to_string()];
        full.extend(args);
        let argv: Vec<&str> = full.iter().map(String::as_str).collect();
        let traffic = traffic_for_child.display().to_string();
        let wd = workdir_path.display().to_string();
        testkit::run_connector_with_env(
            &python,
            &argv,
            None,
            &[
                ("SALESFORCE_EMULATOR_URL", url.as_str()),
                ("REFERENCE_TRAFFIC_LOG", traffic.as_str()),
                ("REFERENCE_TRAFFIC_BODY_LIMIT", "8000000"),
                ("REFERENCE_WORKDIR", wd.as_str()),
                ("PYTHONDONTWRITEBYTECODE", "1"),
            ],
        )
    })
    .await
    .expect("reference run thread");
    let traffic = std::fs::read_to_string(&traffic_path)
        .unwrap_or_default()
        .lines()
        .map(|l| Exchange(serde_json::from_str(l).expect("traffic log line is JSON")))
        .collect();
    let leftovers: Vec<_> = std::fs::read_dir(workdir.path())
        .expect("read workdir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("traffic-"))
        .collect();
    RefRun {
        run,
        traffic,
        label,
        leftovers,
    }
}

fn reference_config(extra: Value) -> Value {
    let mut config = json!({
        "auth_type": "Client",
        "is_sandbox": false,
        "client_id": "emulator-client-id",
        "client_secret": "emulator-client-secret",
        "refresh_token": "emulator-refresh-token",
        "start_date": START_DATE,
        "stream_slice_step": ONE_WINDOW,
    });
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    config
}

async fn check(base_url: &str, config: &Value) -> RefRun {
    let cfg = testkit::json_file(config);
    reference(
        base_url,
        vec!["check".into(), "--config".into(), path_str(cfg.path())],
    )
    .await
}

async fn discover(base_url: &str, config: &Value) -> RefRun {
    let cfg = testkit::json_file(config);
    reference(
        base_url,
        vec!["discover".into(), "--config".into(), path_str(cfg.path())],
    )
    .await
}

async fn read(base_url: &str, config: &Value, catalog: &Value, state: Option<&Value>) -> RefRun {
    let cfg = testkit::json_file(config);
    let cat = testkit::json_file(catalog);
    let mut args = vec![
        "read".into(),
        "--config".into(),
        path_str(cfg.path()),
        "--catalog".into(),
        path_str(cat.path()),
    ];
    let st = state.map(testkit::json_file);
    if let Some(st) = &st {
        args.push("--state".into());
        args.push(path_str(st.path()));
    }
    reference(base_url, args).await
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// The catalog of a successful discover run.
fn catalog_streams(run: &RefRun) -> Vec<Value> {
    let catalogs = run.run.of_type("CATALOG");
    assert_eq!(
        catalogs.len(),
        1,
        "discover must print one CATALOG{}",
        run.report()
    );
    catalogs[0]["catalog"]["streams"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A configured-catalog entry for a discovered `stream`.
fn configured_entry(stream: &Value, incremental: bool) -> Value {
    let pk = stream["source_defined_primary_key"].clone();
    let mut c = json!({
        "stream": stream,
        "sync_mode": if incremental { "incremental" } else { "full_refresh" },
        "destination_sync_mode": if incremental { "append_dedup" } else { "overwrite" },
    });
    if incremental {
        c["cursor_field"] = stream["default_cursor_field"].clone();
    }
    if pk.is_array() {
        c["primary_key"] = pk;
    }
    c
}

/// A configured catalog for one discovered `stream`.
fn configured(stream: &Value, incremental: bool) -> Value {
    json!({ "streams": [configured_entry(stream, incremental)] })
}

/// Discovers with `config` and returns the named stream's catalog entry.
async fn discovered_stream(base_url: &str, config: &Value, name: &str) -> Value {
    let run = discover(base_url, config).await;
    run.assert_clean();
    catalog_streams(&run)
        .into_iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("discover did not list {name}{}", run.report()))
}

// ---------------------------------------------------------------------------------------------
// Asking the emulator directly (its own REST API, independent of the reference connector)
// ---------------------------------------------------------------------------------------------

/// A minimal HTTP/1.1 client for loopback calls (Connection: close; chunked bodies decoded).
async fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (authority, target) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .expect("connect to emulator");
    let mut req =
        format!("{method} {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (k, v) in headers {
        let _ = write!(req, "{k}: {v}\r\n");
    }
    let _ = write!(req, "Content-Length: {}\r\n\r\n", body.len());
    stream
        .write_all(req.as_bytes())
        .await
        .expect("write request");
    stream.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response has a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut payload = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        payload = dechunk(&payload);
    }
    (status, payload)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_line = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

/// Direct client for the emulator's public API.
struct Direct {
    base: String,
    token: String,
}

impl Direct {
    async fn login(base: &str) -> Direct {
        let (status, body) = http(
            "POST",
            &format!("{base}/services/oauth2/token"),
            &[("Content-Type", "application/x-www-form-urlencoded")],
            b"grant_type=refresh_token&client_id=emulator-client-id&client_secret=emulator-client-secret&refresh_token=emulator-refresh-token",
        )
        .await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "direct token request failed: {body}");
        let v: Value = serde_json::from_str(&body).expect("token JSON");
        Direct {
            base: v["instance_url"]
                .as_str()
                .unwrap_or(base)
                .trim_end_matches('/')
                .to_string(),
            token: v["access_token"]
                .as_str()
                .expect("access_token")
                .to_string(),
        }
    }

    /// GET `path` (relative to the instance URL); the raw body of a 200 answer.
    async fn get_bytes(&self, path: &str) -> Vec<u8> {
        let auth = format!("Bearer {}", self.token);
        let (status, body) = http(
            "GET",
            &format!("{}{path}", self.base),
            &[("Authorization", &auth)],
            b"",
        )
        .await;
        assert_eq!(
            status,
            200,
            "direct GET {path} failed: {}",
            String::from_utf8_lossy(&body)
        );
        body
    }

    async fn get(&self, path: &str) -> Value {
        let body = String::from_utf8_lossy(&self.get_bytes(path).await).into_owned();
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("direct GET {path}: not JSON ({e}): {body}"))
    }

    /// Every row of `soql` through queryAll, following nextRecordsUrl.
    async fn query_all(&self, soql: &str) -> Vec<Value> {
        let mut page = self
            .get(&format!(
                "/services/data/v62.0/queryAll?q={}",
                encode_query(soql)
            ))
            .await;
        let mut rows = Vec::new();
        loop {
            rows.extend(page["records"].as_array().cloned().unwrap_or_default());
            match page["nextRecordsUrl"].as_str() {
                Some(next) => page = self.get(next).await,
                None => break,
            }
        }
        rows
    }
}

fn encode_query(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Standard base64 with padding (RFC 4648), to compare blob bytes with stored base64 values.
fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Calls the emulator's admin API (`/__emulator/...`, no auth) and returns its JSON answer.
async fn admin(base: &str, method: &str, path: &str, body: &Value) -> Value {
    let payload = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let (status, text) = http(
        method,
        &format!("{base}/__emulator{path}"),
        &[("Content-Type", "application/json")],
        &payload,
    )
    .await;
    let text = String::from_utf8_lossy(&text);
    assert_eq!(status, 200, "admin {method} {path} failed: {text}");
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("admin {method} {path}: not JSON ({e}): {text}"))
}

/// The emulator's stored row (REST JSON shape, deleted rows included).
async fn read_back(base: &str, object: &str, id: &str) -> Value {
    admin(
        base,
        "GET",
        &format!("/records/{object}/{id}"),
        &Value::Null,
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Expectations independent of the reference's code
// ---------------------------------------------------------------------------------------------

/// Objects the reference drops at discovery by name (anchors §2.2, steps 2 and 5).
const DENIED: &[&str] = &[
    "ActivityMetric",
    "ActivityMetricRollup",
    // QUERY_RESTRICTED_SALESFORCE_OBJECTS
    "Announcement",
    "AppTabMember",
    "CollaborationGroupRecord",
    "ColorDefinition",
    "ContentFolderItem",
    "ContentFolderMember",
    "DataStatistics",
    "DatacloudDandBCompany",
    "EntityParticle",
    "FieldDefinition",
    "FieldHistoryArchive",
    "FlexQueueItem",
    "FlowVariableView",
    "FlowVersionView",
    "IconDefinition",
    "IdeaComment",
    "NetworkUserHistoryRecent",
    "OwnerChangeOptionInfo",
    "PicklistValueInfo",
    "PlatformAction",
    "RelationshipDomain",
    "RelationshipInfo",
    "SearchLayout",
    "SiteDetail",
    "UserEntityAccess",
    "UserFieldAccess",
    "Vote",
    // QUERY_INCOMPATIBLE_SALESFORCE_OBJECTS
    "AIPredictionEvent",
    "ActivityHistory",
    "AggregateResult",
    "ApiAnomalyEvent",
    "ApiEventStream",
    "AssetTokenEvent",
    "AsyncOperationEvent",
    "AsyncOperationStatus",
    "AttachedContentDocument",
    "AttachedContentNote",
    "BatchApexErrorEvent",
    "BulkApiResultEvent",
    "CombinedAttachment",
    "ConcurLongRunApexErrEvent",
    "ContentBody",
    "CredentialStuffingEvent",
    "DataType",
    "DatacloudAddress",
    "EmailStatus",
    "FeedLike",
    "FeedSignal",
    "FeedTrackedChange",
    "FlowExecutionErrorEvent",
    "FolderedContentDocument",
    "LightningUriEventStream",
    "ListViewChartInstance",
    "ListViewEventStream",
    "LoginAsEventStream",
    "LoginEventStream",
    "LogoutEventStream",
    "LookedUpFromActivity",
    "Name",
    "NoteAndAttachment",
    "OpenActivity",
    "OrgLifecycleNotification",
    "OutgoingEmail",
    "OutgoingEmailRelation",
    "OwnedContentDocument",
    "PlatformStatusAlertEvent",
    "ProcessExceptionEvent",
    "ProcessInstanceHistory",
    "QuoteTemplateRichTextData",
    "RemoteKeyCalloutEvent",
    "ReportAnomalyEvent",
    "ReportEventStream",
    "SessionHijackingEvent",
    "UriEventStream",
    "UserRecordAccess",
];

/// Describe `type` → (JSON type, format, object property names) per anchors §2.3. `None` for a
/// type the reference does not know (its discover would crash on it).
fn expected_property(
    sf_type: &str,
) -> Option<(&'static str, Option<&'static str>, Vec<&'static str>)> {
    let strings = [
        "string",
        "textarea",
        "picklist",
        "multipicklist",
        "combobox",
        "email",
        "phone",
        "url",
        "id",
        "reference",
        "masterrecord",
        "encryptedstring",
        "datacategorygroupreference",
        "byte",
        "json",
        "complexvalue",
        "time",
        "anyType",
        "calculated",
    ];
    Some(match sf_type {
        t if strings.contains(&t) => ("string", None, vec![]),
        "date" => ("string", Some("date"), vec![]),
        "datetime" => ("string", Some("date-time"), vec![]),
        "double" | "currency" | "percent" | "long" => ("number", None, vec![]),
        "int" => ("integer", None, vec![]),
        "boolean" => ("boolean", None, vec![]),
        "base64" => ("string", Some("base64"), vec![]),
        "address" => (
            "object",
            None,
            vec![
                "city",
                "country",
                "geocodeAccuracy",
                "latitude",
                "longitude",
                "postalCode",
                "state",
                "street",
            ],
        ),
        "location" => ("object", None, vec!["latitude", "longitude"]),
        _ => return None,
    })
}

/// (JSON type without "null", format, sorted object property names) of a catalog property.
fn actual_property(p: &Value) -> (String, Option<String>, Vec<String>) {
    let ty = match &p["type"] {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join("|"),
        _ => String::new(),
    };
    let mut props: Vec<String> = p["properties"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    props.sort();
    (ty, p["format"].as_str().map(str::to_string), props)
}

/// Cursor field per anchors §2.4.
fn expected_cursor(field_names: &BTreeSet<String>) -> Option<&'static str> {
    [
        "SystemModstamp",
        "LastModifiedDate",
        "CreatedDate",
        "LoginTime",
    ]
    .into_iter()
    .find(|c| field_names.contains(*c))
}

/// Parses Salesforce datetimes in any of the spellings REST (`+0000`), Bulk CSV (`Z`) and the
/// CDK (`+00:00`) produce, to epoch milliseconds.
fn instant_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (clock, offset_min) = if let Some(c) = rest.strip_suffix('Z') {
        (c, 0)
    } else {
        let i = rest.rfind(['+', '-'])?;
        let (c, off) = rest.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let digits: String = off[1..].chars().filter(char::is_ascii_digit).collect();
        if digits.len() != 4 {
            return None;
        }
        let h: i64 = digits[..2].parse().ok()?;
        let mi: i64 = digits[2..].parse().ok()?;
        (c, sign * (h * 60 + mi))
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let ms: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000 + ms) - offset_min * 60_000)
}

/// Compares one emitted record to the emulator's REST row for the same Id, field by field over
/// `fields` (values typed per the stream schema; datetimes compared as instants; a key missing
/// from the record equals null, because the reference omits null-valued keys, anchors §3.5).
fn compare_record(
    stream: &str,
    record: &Value,
    truth: &Value,
    fields: &[&str],
    schema: &Value,
) -> Vec<String> {
    let mut diffs = Vec::new();
    for f in fields {
        let got = record.get(*f).cloned().unwrap_or(Value::Null);
        let want = truth.get(*f).cloned().unwrap_or(Value::Null);
        let format = schema["properties"][*f]["format"].as_str().unwrap_or("");
        let same = match (&got, &want) {
            (Value::String(a), Value::String(b)) if format == "date-time" => {
                instant_ms(a).is_some() && instant_ms(a) == instant_ms(b)
            }
            (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
            (a, b) => a == b,
        };
        if !same {
            diffs.push(format!(
                "{stream} {} field {f}: reference emitted {got}, emulator holds {want}",
                record["Id"]
            ));
        }
    }
    diffs
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_check_succeeds() {
    let emu = start_emulator().await;
    let run = check(&emu.base_url, &reference_config(json!({}))).await;
    let statuses = run.run.of_type("CONNECTION_STATUS");
    assert_eq!(
        statuses.len(),
        1,
        "check must print one CONNECTION_STATUS{}",
        run.report()
    );
    assert_eq!(
        statuses[0]["connectionStatus"]["status"],
        "SUCCEEDED",
        "check failed: {}{}",
        statuses[0]["connectionStatus"]["message"],
        run.report()
    );
    run.assert_clean();
    // anchors §2.1: token (redirected to the emulator) then describe global, nothing else.
    let targets: Vec<String> = run
        .traffic
        .iter()
        .map(|e| format!("{} {}", e.method(), e.path()))
        .collect();
    assert_eq!(
        targets,
        vec![
            "POST /services/oauth2/token",
            "GET /services/data/v62.0/sobjects"
        ],
        "{}",
        run.report()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_check_fails_with_wrong_secret() {
    // The emulator must reject bad client credentials the way Salesforce does (400 OAuth error,
    // salesforce-api.md §1.4), which the reference maps to a config error (anchors §3.1).
    let emu = start_emulator().await;
    let run = check(
        &emu.base_url,
        &reference_config(json!({"client_secret": "wrong"})),
    )
    .await;
    let token = run.exchanges("POST", "/services/oauth2/token");
    assert!(!token.is_empty(), "no token request{}", run.report());
    assert_eq!(
        token[0].status(),
        Some(400),
        "bad secret must be a 400{}",
        run.report()
    );
    let body = token[0].json().unwrap_or(Value::Null);
    assert_eq!(
        body["error"],
        "invalid_client",
        "OAuth error body{}",
        run.report()
    );
    let statuses = run.run.of_type("CONNECTION_STATUS");
    let failed = statuses
        .iter()
        .any(|s| s["connectionStatus"]["status"] == "FAILED");
    let traced = run
        .run
        .of_type("TRACE")
        .iter()
        .any(|t| t["trace"]["error"]["failure_type"] == "config_error");
    assert!(
        failed || traced,
        "check must fail with a config error{}",
        run.report()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_discover_lists_queryable_objects_with_expected_types() {
    let emu = start_emulator().await;
    let run = discover(&emu.base_url, &reference_config(json!({}))).await;
    run.assert_clean();
    let streams = catalog_streams(&run);
    let by_name: BTreeMap<String, &Value> = streams
        .iter()
        .map(|s| (s["name"].as_str().unwrap_or("").to_string(), s))
        .collect();

    // 1. Stream names = the emulator's queryable objects (as it answered describe global) minus the
    //    reference's deny-lists, plus the synthetic Describe stream.
    let global = run
        .exchanges("GET", "/sobjects")
        .into_iter()
        .find(|e| e.path().ends_with("/sobjects"))
        .and_then(Exchange::json)
        .unwrap_or_else(|| panic!("no describe-global answer in traffic{}", run.report()));
    let sobjects = global["sobjects"].as_array().cloned().unwrap_or_default();
    assert!(
        !sobjects.is_empty(),
        "emulator describe global lists no sobjects{}",
        run.report()
    );
    let mut expected: BTreeSet<String> = sobjects
        .iter()
        .filter(|o| o["queryable"] == true)
        .filter_map(|o| o["name"].as_str())
        .filter(|n| !n.ends_with("ChangeEvent") && !DENIED.contains(n))
        .map(str::to_string)
        .collect();
    expected.insert("Describe".into());
    let got: BTreeSet<String> = by_name.keys().cloned().collect();
    assert_eq!(
        got,
        expected,
        "catalog streams vs emulator's queryable objects{}",
        run.report()
    );
    for object in ["Account", "Contact", "Opportunity", "Attachment", "User"] {
        assert!(
            got.contains(object),
            "standard object {object} missing from the catalog{}",
            run.report()
        );
    }

    // 2. Every property's type follows from the emulator's describe (anchors §2.3), PK and cursor
    //    from its field names (anchors §2.4).
    let mut problems = Vec::new();
    for (name, stream) in &by_name {
        if name == "Describe" {
            continue;
        }
        let describe = run
            .exchanges("GET", &format!("/sobjects/{name}/describe"))
            .first()
            .and_then(|e| e.json())
            .unwrap_or_else(|| panic!("no describe answer for {name} in traffic{}", run.report()));
        let fields = describe["fields"].as_array().cloned().unwrap_or_default();
        let names: BTreeSet<String> = fields
            .iter()
            .filter_map(|f| f["name"].as_str().map(str::to_string))
            .collect();
        let props = &stream["json_schema"]["properties"];
        for f in &fields {
            let fname = f["name"].as_str().unwrap_or("");
            let ftype = f["type"].as_str().unwrap_or("");
            let Some((ty, format, obj)) = expected_property(ftype) else {
                problems.push(format!(
                    "{name}.{fname}: describe type {ftype:?} is unknown to the reference"
                ));
                continue;
            };
            let (aty, aformat, aobj) = actual_property(&props[fname]);
            if aty != ty || aformat.as_deref() != format || aobj != obj {
                problems.push(format!(
                    "{name}.{fname} ({ftype}): catalog has {aty}/{aformat:?}/{aobj:?}, expected {ty}/{format:?}/{obj:?}"
                ));
            }
        }
        let pk = if names.contains("Id") {
            json!([["Id"]])
        } else {
            Value::Null
        };
        if stream["source_defined_primary_key"] != pk
            && !(pk.is_null() && stream.get("source_defined_primary_key").is_none())
        {
            problems.push(format!(
                "{name}: primary key {} (expected {pk})",
                stream["source_defined_primary_key"]
            ));
        }
        let cursor = expected_cursor(&names);
        let modes = stream["supported_sync_modes"].clone();
        match cursor {
            Some(c) => {
                if stream["default_cursor_field"] != json!([c])
                    || modes != json!(["full_refresh", "incremental"])
                {
                    problems.push(format!(
                        "{name}: cursor {} modes {modes} (expected [{c}] and incremental)",
                        stream["default_cursor_field"]
                    ));
                }
            }
            None => {
                if modes != json!(["full_refresh"]) {
                    problems.push(format!("{name}: no cursor field but sync modes {modes}"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "schema mismatches:\n  {}{}",
        problems.join("\n  "),
        run.report()
    );

    // 3. Real-Salesforce spot checks: standard fields carry their documented types.
    let spot = [
        ("Account", "Id", "string", None),
        ("Account", "Name", "string", None),
        ("Account", "AnnualRevenue", "number", None),
        ("Account", "NumberOfEmployees", "integer", None),
        ("Account", "IsDeleted", "boolean", None),
        ("Account", "SystemModstamp", "string", Some("date-time")),
        ("Account", "CreatedDate", "string", Some("date-time")),
        ("Account", "BillingAddress", "object", None),
        ("Account", "BillingCity", "string", None),
        ("Opportunity", "Amount", "number", None),
        ("Opportunity", "CloseDate", "string", Some("date")),
        ("Opportunity", "Probability", "number", None),
        ("Attachment", "Body", "string", Some("base64")),
        ("Attachment", "BodyLength", "integer", None),
    ];
    for (object, field, ty, format) in spot {
        let p = &by_name[object]["json_schema"]["properties"][field];
        let (aty, aformat, _) = actual_property(p);
        assert!(
            aty == ty && aformat.as_deref() == format,
            "{object}.{field}: {p} (expected {ty} {format:?}){}",
            run.report()
        );
    }
    assert_eq!(
        by_name["Account"]["default_cursor_field"],
        json!(["SystemModstamp"]),
        "{}",
        run.report()
    );
}

/// Full refresh of `stream` through the path the reference picks; returns the run.
async fn full_refresh(base: &str, config: &Value, stream: &str) -> (RefRun, Value) {
    let discovered = discovered_stream(base, config, stream).await;
    let run = read(base, config, &configured(&discovered, false), None).await;
    (run, discovered)
}

/// Asserts the Bulk 2.0 lifecycle happened for `object` and the reference never fell back to REST.
fn assert_bulk_path(run: &RefRun, object: &str) {
    let creates: Vec<_> = run
        .exchanges("POST", "/jobs/query")
        .into_iter()
        .filter(|e| {
            e.0["request_body"]
                .as_str()
                .is_some_and(|b| b.contains(&format!("FROM {object}")))
        })
        .collect();
    assert!(
        !creates.is_empty(),
        "no Bulk job was created for {object}{}",
        run.report()
    );
    let rest = run
        .exchanges("GET", "/queryAll")
        .into_iter()
        .filter(|e| percent_decode(&e.target()).contains(&format!("FROM {object}")))
        .count();
    assert_eq!(
        rest,
        0,
        "{object} fell back from Bulk to REST{}",
        run.report()
    );
    assert!(
        !run.exchanges("GET", "/results").is_empty(),
        "no Bulk results download{}",
        run.report()
    );
    assert!(
        !run.exchanges("DELETE", "/jobs/query/").is_empty(),
        "no Bulk job delete (anchors §3.4 step 4){}",
        run.report()
    );
}

fn assert_rest_path(run: &RefRun, object: &str) {
    let rest = run
        .exchanges("GET", "/queryAll")
        .into_iter()
        .filter(|e| percent_decode(&e.target()).contains(&format!("FROM {object}")))
        .count();
    assert!(
        rest > 0,
        "{object} was not read through REST queryAll{}",
        run.report()
    );
    assert!(
        run.exchanges("POST", "/jobs/query").is_empty(),
        "{object} unexpectedly used Bulk{}",
        run.report()
    );
}

/// Count, uniqueness and a few field values against the emulator's REST API.
async fn assert_records_match_emulator(
    run: &RefRun,
    base: &str,
    stream: &str,
    schema: &Value,
    fields: &[&str],
) {
    let records = run.records(stream);
    assert_eq!(
        records.len() as u64,
        rows_of(stream),
        "{stream}: record count vs emulator rows{}",
        run.report()
    );
    let ids: BTreeSet<&str> = records.iter().filter_map(|r| r["Id"].as_str()).collect();
    assert_eq!(
        ids.len(),
        records.len(),
        "{stream}: duplicate or missing Ids{}",
        run.report()
    );
    assert_eq!(
        run.final_status(stream).as_deref(),
        Some("COMPLETE"),
        "{stream} status{}",
        run.report()
    );

    // A few rows (first, middle, last by Id) compared with the emulator's stored row.
    let mut sorted: Vec<&str> = ids.iter().copied().collect();
    sorted.sort_unstable();
    let picks = [
        sorted[0],
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
    ];
    let mut diffs = Vec::new();
    for id in picks {
        let truth = read_back(base, stream, id).await;
        let rec = records
            .iter()
            .find(|r| r["Id"] == id)
            .expect("picked id was emitted");
        diffs.extend(compare_record(stream, rec, &truth, fields, schema));
    }
    assert!(
        diffs.is_empty(),
        "value mismatches:\n  {}{}",
        diffs.join("\n  "),
        run.report()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_bulk_full_refresh_matches_emulator() {
    let emu = start_emulator().await;
    let config = reference_config(json!({}));
    let (run, stream) = full_refresh(&emu.base_url, &config, "Opportunity").await;
    run.assert_clean();
    assert_bulk_path(&run, "Opportunity");
    let fields = [
        "Name",
        "Amount",
        "Probability",
        "CloseDate",
        "StageName",
        "IsClosed",
        "IsDeleted",
        "SystemModstamp",
    ];
    assert_records_match_emulator(
        &run,
        &emu.base_url,
        "Opportunity",
        &stream["json_schema"],
        &fields,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_forced_bulk_reads_account_without_compound_fields() {
    // Small result pages, so the reference must follow `Sforce-Locator` (salesforce-api.md §5.4).
    let emu = start_emulator_with(|c| c.switches.bulk_default_page_rows = 700).await;
    let config = reference_config(json!({"force_use_bulk_api": true}));
    let (run, stream) = full_refresh(&emu.base_url, &config, "Account").await;
    run.assert_clean();
    assert_bulk_path(&run, "Account");
    // anchors §5: with force_use_bulk_api the compound fields are left out of the SELECT.
    let create = run.exchanges("POST", "/jobs/query")[0].0["request_body"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        !create.contains("BillingAddress") && create.contains("BillingCity"),
        "{create}{}",
        run.report()
    );
    assert!(
        run.records("Account")
            .iter()
            .all(|r| r.get("BillingAddress").is_none()),
        "{}",
        run.report()
    );
    let pages: Vec<String> = run
        .exchanges("GET", "/results")
        .iter()
        .map(|e| e.target())
        .collect();
    assert!(
        pages.len() == 3 && pages[1..].iter().all(|p| p.contains("locator=")),
        "2050 rows at 700 per page need 3 result pages, the later ones by locator: {pages:?}{}",
        run.report()
    );
    let fields = [
        "Name",
        "AnnualRevenue",
        "NumberOfEmployees",
        "BillingCity",
        "IsDeleted",
        "SystemModstamp",
        "LastActivityDate",
    ];
    assert_records_match_emulator(
        &run,
        &emu.base_url,
        "Account",
        &stream["json_schema"],
        &fields,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_rest_full_refresh_of_base64_object_matches_emulator() {
    let emu = start_emulator().await;
    let config = reference_config(json!({}));
    let (run, stream) = full_refresh(&emu.base_url, &config, "Attachment").await;
    run.assert_clean();
    assert_rest_path(&run, "Attachment");
    let fields = [
        "Name",
        "ParentId",
        "BodyLength",
        "ContentType",
        "IsPrivate",
        "SystemModstamp",
    ];
    assert_records_match_emulator(
        &run,
        &emu.base_url,
        "Attachment",
        &stream["json_schema"],
        &fields,
    )
    .await;
    // REST records are emitted as returned, with Salesforce's `attributes` (anchors §3.3).
    let r = run.records("Attachment")[0];
    assert_eq!(r["attributes"]["type"], "Attachment", "{}", run.report());
    // A base64 field in a REST query answer is the URL of the blob (the reference passes it on
    // untouched); that URL must serve exactly the stored bytes, BodyLength of them.
    let direct = Direct::login(&emu.base_url).await;
    for rec in run.records("Attachment").iter().take(3) {
        let id = rec["Id"].as_str().unwrap_or("");
        let url = format!("/services/data/v62.0/sobjects/Attachment/{id}/Body");
        assert_eq!(rec["Body"], json!(url), "Body of {id}{}", run.report());
        let bytes = direct.get_bytes(&url).await;
        let truth = read_back(&emu.base_url, "Attachment", id).await;
        assert_eq!(
            json!(bytes.len()),
            truth["BodyLength"],
            "blob length of {id}"
        );
        assert_eq!(
            json!(base64_encode(&bytes)),
            truth["Body"],
            "blob bytes of {id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_rest_full_refresh_pages_through_account() {
    // Account has address fields, so without force_use_bulk_api it is read through REST; 2050 rows
    // need a second page via nextRecordsUrl.
    let emu = start_emulator().await;
    let config = reference_config(json!({}));
    let (run, stream) = full_refresh(&emu.base_url, &config, "Account").await;
    run.assert_clean();
    assert_rest_path(&run, "Account");
    let pages = run.exchanges("GET", "/query/").len();
    assert!(
        pages >= 1,
        "expected nextRecordsUrl pages for 2050 rows{}",
        run.report()
    );
    let fields = [
        "Name",
        "AnnualRevenue",
        "NumberOfEmployees",
        "BillingAddress",
        "IsDeleted",
        "SystemModstamp",
    ];
    assert_records_match_emulator(
        &run,
        &emu.base_url,
        "Account",
        &stream["json_schema"],
        &fields,
    )
    .await;
    // queryAll includes soft-deleted rows (salesforce-api.md §2.5, §4.5): the reference must see
    // exactly the rows the emulator's own queryAll reports as deleted.
    let direct = Direct::login(&emu.base_url).await;
    let deleted: BTreeSet<String> = direct
        .query_all("SELECT Id FROM Account WHERE IsDeleted = true")
        .await
        .iter()
        .filter_map(|r| r["Id"].as_str().map(str::to_string))
        .collect();
    let emitted_deleted: BTreeSet<String> = run
        .records("Account")
        .iter()
        .filter(|r| r["IsDeleted"] == true)
        .filter_map(|r| r["Id"].as_str().map(str::to_string))
        .collect();
    assert!(
        !deleted.is_empty(),
        "the emulator should hold some soft-deleted Accounts (deleted_per_mille)"
    );
    assert_eq!(
        emitted_deleted,
        deleted,
        "soft-deleted Accounts{}",
        run.report()
    );
}

/// Runs incremental twice (second run from the first run's final state) and checks counts,
/// state shape (anchors §4.1) and the lookback re-read (anchors §4.2).
async fn incremental_twice(
    base: &str,
    config: &Value,
    stream_name: &str,
    bulk: bool,
) -> (RefRun, RefRun) {
    let discovered = discovered_stream(base, config, stream_name).await;
    let catalog = configured(&discovered, true);
    let first = read(base, config, &catalog, None).await;
    first.assert_clean();
    if bulk {
        assert_bulk_path(&first, stream_name);
    } else {
        assert_rest_path(&first, stream_name);
    }
    let cursor = discovered["default_cursor_field"][0]
        .as_str()
        .unwrap_or("SystemModstamp")
        .to_string();
    let records = first.records(stream_name);
    assert_eq!(
        records.len() as u64,
        rows_of(stream_name),
        "{stream_name}: incremental record count vs emulator rows{}",
        first.report()
    );
    let states: Vec<_> = first
        .run
        .of_type("STATE")
        .into_iter()
        .filter(|s| s["state"]["stream"]["stream_descriptor"]["name"] == stream_name)
        .collect();
    let last = states
        .last()
        .unwrap_or_else(|| panic!("no STATE for {stream_name}{}", first.report()));
    let st = &last["state"]["stream"]["stream_state"];
    assert_eq!(st["state_type"], "date-range", "{st}{}", first.report());
    let end = st["slices"][0]["end"]
        .as_str()
        .and_then(instant_ms)
        .expect("state slice end");
    let max_cursor = records
        .iter()
        .filter_map(|r| r[&cursor].as_str())
        .filter_map(instant_ms)
        .max();
    assert!(
        max_cursor.is_some_and(|m| m < end),
        "cursor values must be below the state end{}",
        first.report()
    );

    // Second run from that state: only rows at or after end - lookback (10 min) come back.
    let lookback_from = end - 600_000;
    let expect_again = records
        .iter()
        .filter(|r| {
            r[&cursor]
                .as_str()
                .and_then(instant_ms)
                .is_some_and(|c| c >= lookback_from)
        })
        .count();
    let state = json!([{"type": "STREAM", "stream": last["state"]["stream"].clone()}]);
    let second = read(base, config, &catalog, Some(&state)).await;
    second.assert_clean();
    assert_eq!(
        second.records(stream_name).len(),
        expect_again,
        "{stream_name}: second incremental run should re-read only the lookback window{}",
        second.report()
    );
    (first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_bulk_incremental_matches_emulator() {
    // Jobs stay queued/in progress for a while, as real ones do (salesforce-api.md §5.2), so the
    // reference polls through UploadComplete/InProgress.
    let emu = start_emulator_with(|c| {
        c.switches.bulk_queued_ms = 1_000;
        c.switches.bulk_processing_ms = 2_000;
    })
    .await;
    let (first, _) = incremental_twice(
        &emu.base_url,
        &reference_config(json!({})),
        "Opportunity",
        true,
    )
    .await;
    let states: Vec<String> = first
        .exchanges("GET", "/jobs/query/")
        .iter()
        .filter_map(|e| e.json())
        .filter_map(|j| j["state"].as_str().map(str::to_string))
        .collect();
    assert!(
        states
            .iter()
            .any(|s| s == "UploadComplete" || s == "InProgress")
            && states.last().map(String::as_str) == Some("JobComplete"),
        "job states polled: {states:?}{}",
        first.report()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_forced_bulk_incremental_account() {
    let emu = start_emulator().await;
    incremental_twice(
        &emu.base_url,
        &reference_config(json!({"force_use_bulk_api": true})),
        "Account",
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_rest_incremental_attachment() {
    let emu = start_emulator().await;
    incremental_twice(
        &emu.base_url,
        &reference_config(json!({})),
        "Attachment",
        false,
    )
    .await;
}

/// Objects the reference always reads through REST (anchors §5, rule 1).
const REST_ONLY: &[&str] = &[
    "AcceptedEventRelation",
    "AccountBrandShare",
    "AccountFeed",
    "AggregateResult",
    "AssetFeed",
    "AssetTokenEvent",
    "AttachedContentDocument",
    "AttachedContentNote",
    "Attachment",
    "CaseStatus",
    "CaseTeamMember",
    "CaseTeamRole",
    "CaseTeamTemplate",
    "CaseTeamTemplateMember",
    "CaseTeamTemplateRecord",
    "ChannelProgramLevelShare",
    "CombinedAttachment",
    "ContentFolderItem",
    "ContractStatus",
    "DeclinedEventRelation",
    "EventWhoRelation",
    "FieldSecurityClassification",
    "FolderedContentDocument",
    "KnowledgeArticle",
    "KnowledgeArticleVersion",
    "KnowledgeArticleVersionHistory",
    "KnowledgeArticleViewStat",
    "KnowledgeArticleVoteStat",
    "LookedUpFromActivity",
    "Name",
    "NoteAndAttachment",
    "OpenActivity",
    "OrderStatus",
    "OwnedContentDocument",
    "PartnerRole",
    "QuoteTemplateRichTextData",
    "RecentlyViewed",
    "ServiceAppointmentStatus",
    "ShiftStatus",
    "SolutionStatus",
    "TaskPriority",
    "TaskStatus",
    "TaskWhoRelation",
    "UndecidedEventRelation",
    "UserRecordAccess",
    "WorkOrderLineItemStatus",
    "WorkOrderStatus",
];

/// Whether the reference reads `stream` through Bulk (anchors §5) given its catalog schema.
fn reads_through_bulk(stream: &Value, force_bulk: bool) -> bool {
    let name = stream["name"].as_str().unwrap_or("");
    if REST_ONLY.contains(&name) {
        return false;
    }
    let props = stream["json_schema"]["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let incompatible = props.values().any(|p| {
        let (ty, format, _) = actual_property(p);
        ty == "object" || format.as_deref() == Some("base64")
    });
    force_bulk || !incompatible
}

/// Rows the emulator generates for `object` under [`emulator_config`].
fn configured_rows(object: &str) -> u64 {
    let config = emulator_config();
    config
        .rows
        .get(object)
        .copied()
        .unwrap_or(config.default_rows)
}

/// Checks every stream of a multi-stream run: count equals the emulator's rows, status COMPLETE,
/// and the expected API path (Bulk job vs REST queryAll) without fallback.
fn assert_every_stream(run: &RefRun, streams: &[Value], force_bulk: bool) {
    let mut problems = Vec::new();
    for s in streams {
        let name = s["name"].as_str().unwrap_or("");
        let got = run.records(name).len() as u64;
        if name == "Describe" {
            // One describe record per other stream in the catalog (anchors §2.2 step 8).
            if got != streams.len() as u64 - 1 {
                problems.push(format!(
                    "Describe: {got} records for {} streams",
                    streams.len() - 1
                ));
            }
            continue;
        }
        let want = configured_rows(name);
        if got != want {
            problems.push(format!("{name}: {got} records, emulator holds {want}"));
        }
        if run.final_status(name).as_deref() != Some("COMPLETE") {
            problems.push(format!("{name}: final status {:?}", run.final_status(name)));
        }
        let from = format!("FROM {name}");
        let bulk_jobs = run
            .exchanges("POST", "/jobs/query")
            .iter()
            .filter(|e| {
                e.0["request_body"].as_str().is_some_and(|b| {
                    b.contains(&format!("{from}\"")) || b.contains(&format!("{from} "))
                })
            })
            .count();
        let rest = run
            .exchanges("GET", "/queryAll")
            .iter()
            .filter(|e| {
                let q = percent_decode(&e.target());
                q.ends_with(&from) || q.contains(&format!("{from} "))
            })
            .count();
        let bulk = reads_through_bulk(s, force_bulk);
        if bulk && (bulk_jobs == 0 || rest > 0) {
            problems.push(format!(
                "{name}: expected Bulk, saw {bulk_jobs} Bulk jobs and {rest} REST queries"
            ));
        }
        if !bulk && (bulk_jobs > 0 || rest == 0) {
            problems.push(format!(
                "{name}: expected REST, saw {bulk_jobs} Bulk jobs and {rest} REST queries"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "per-stream mismatches:\n  {}{}",
        problems.join("\n  "),
        run.report()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_reads_every_stream_full_refresh() {
    let emu = start_emulator().await;
    let config = reference_config(json!({}));
    let disc = discover(&emu.base_url, &config).await;
    disc.assert_clean();
    let streams = catalog_streams(&disc);
    let catalog =
        json!({"streams": streams.iter().map(|s| configured_entry(s, false)).collect::<Vec<_>>()});
    let run = read(&emu.base_url, &config, &catalog, None).await;
    run.assert_clean();
    assert_every_stream(&run, &streams, false);

    // The emulator's API-call counter (what the benchmarks report as quota spent) must equal the
    // API requests the reference really sent (token requests are not API calls), per endpoint.
    let mut sent: BTreeMap<String, u64> = BTreeMap::new();
    for e in disc.traffic.iter().chain(&run.traffic) {
        if e.path().starts_with("/services/data/v") {
            *sent.entry(e.method().to_string()).or_default() += 1;
        }
    }
    let calls = admin(&emu.base_url, "GET", "/calls", &Value::Null).await;
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    for (endpoint, n) in calls["by_endpoint"].as_object().into_iter().flatten() {
        let method = endpoint.split(' ').next().unwrap_or("").to_string();
        *counted.entry(method).or_default() += n.as_u64().unwrap_or(0);
    }
    assert_eq!(
        counted, sent,
        "emulator call counter vs requests sent, by method: {calls}"
    );
    assert_eq!(calls["total"], json!(sent.values().sum::<u64>()), "{calls}");
}

/// Every incremental-capable stream in yearly windows (many Bulk jobs and REST slices at once,
/// SOQL datetime literals with `+00:00` and milliseconds at every window edge), then a second run
/// after the emulator's data changed: updates and a soft delete must come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_incremental_every_stream_in_yearly_windows_then_changes() {
    let emu = start_emulator().await;
    let config = reference_config(
        json!({"start_date": "2019-06-01T00:00:00Z", "stream_slice_step": "P365D"}),
    );
    let disc = discover(&emu.base_url, &config).await;
    disc.assert_clean();
    let streams: Vec<Value> = catalog_streams(&disc)
        .into_iter()
        .filter(|s| {
            s["supported_sync_modes"]
                .as_array()
                .is_some_and(|m| m.contains(&json!("incremental")))
        })
        .collect();
    assert!(
        streams.len() >= 5,
        "expected several incremental streams, got {}",
        streams.len()
    );
    let catalog =
        json!({"streams": streams.iter().map(|s| configured_entry(s, true)).collect::<Vec<_>>()});
    let first = read(&emu.base_url, &config, &catalog, None).await;
    first.assert_clean();
    assert_every_stream(&first, &streams, false);
    let windows = first.exchanges("POST", "/jobs/query").len();
    assert!(
        windows > streams.len(),
        "expected several windows per Bulk stream, saw {windows} jobs{}",
        first.report()
    );

    // Change data: update one Opportunity (Bulk) and one Attachment (REST), soft-delete one Account.
    let opp = first.records("Opportunity")[0]["Id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let att = first.records("Attachment")[0]["Id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let acc = first
        .records("Account")
        .iter()
        .find(|r| r["IsDeleted"] != true)
        .and_then(|r| r["Id"].as_str())
        .unwrap_or("")
        .to_string();
    let up = admin(
        &emu.base_url,
        "PATCH",
        "/records/Opportunity",
        &json!({"records": [{"Id": opp, "Name": "Changed by fidelity test"}]}),
    )
    .await;
    assert_eq!(up["results"][0]["success"], true, "{up}");
    let up = admin(
        &emu.base_url,
        "PATCH",
        "/records/Attachment",
        &json!({"records": [{"Id": att, "Description": "changed"}]}),
    )
    .await;
    assert_eq!(up["results"][0]["success"], true, "{up}");
    let del = admin(
        &emu.base_url,
        "POST",
        "/records/Account/delete",
        &json!({"ids": [acc]}),
    )
    .await;
    assert_eq!(del["results"][0]["success"], true, "{del}");

    let state: Vec<Value> = streams
        .iter()
        .filter_map(|s| {
            let name = s["name"].as_str()?;
            let last = first
                .run
                .of_type("STATE")
                .into_iter()
                .rfind(|m| m["state"]["stream"]["stream_descriptor"]["name"] == name)?;
            Some(json!({"type": "STREAM", "stream": last["state"]["stream"].clone()}))
        })
        .collect();
    assert_eq!(
        state.len(),
        streams.len(),
        "every stream must end with a STATE{}",
        first.report()
    );
    let second = read(&emu.base_url, &config, &catalog, Some(&json!(state))).await;
    second.assert_clean();
    let find = |stream: &str, id: &str| {
        second
            .records(stream)
            .into_iter()
            .find(|r| r["Id"] == id)
            .cloned()
    };
    let o = find("Opportunity", &opp)
        .unwrap_or_else(|| panic!("updated Opportunity not re-read{}", second.report()));
    assert_eq!(o["Name"], "Changed by fidelity test", "{}", second.report());
    let a = find("Attachment", &att)
        .unwrap_or_else(|| panic!("updated Attachment not re-read{}", second.report()));
    assert_eq!(a["Description"], "changed", "{}", second.report());
    let d = find("Account", &acc)
        .unwrap_or_else(|| panic!("soft-deleted Account not re-read{}", second.report()));
    assert_eq!(d["IsDeleted"], true, "{}", second.report());
    // Besides the changed rows, only rows inside the lookback window (10 min before the first
    // run's state end, anchors §4.2) come back.
    let changed = [
        ("Opportunity", &opp),
        ("Attachment", &att),
        ("Account", &acc),
    ];
    for (s, st) in streams.iter().zip(&state) {
        let name = s["name"].as_str().unwrap_or("");
        let cursor = s["default_cursor_field"][0].as_str().unwrap_or("");
        let end = st["stream"]["stream_state"]["slices"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .filter_map(|x| x["end"].as_str().and_then(instant_ms))
                    .max()
            })
            .unwrap_or_else(|| panic!("{name}: no slice end in state {st}"));
        let mut want: BTreeSet<String> = first
            .records(name)
            .iter()
            .filter(|r| {
                r[cursor]
                    .as_str()
                    .and_then(instant_ms)
                    .is_some_and(|c| c >= end - 600_000)
            })
            .filter_map(|r| r["Id"].as_str().map(str::to_string))
            .collect();
        want.extend(
            changed
                .iter()
                .filter(|(o, _)| *o == name)
                .map(|(_, id)| (*id).clone()),
        );
        let got: BTreeSet<String> = second
            .records(name)
            .iter()
            .filter_map(|r| r["Id"].as_str().map(str::to_string))
            .collect();
        assert_eq!(got, want, "{name}: second run records{}", second.report());
    }
}

/// A Bulk job that ends `Failed` makes the reference fall back to REST for that stream (anchors
/// §5); the emulator's failed-job info, abort and REST answers must carry it through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_falls_back_to_rest_when_bulk_job_fails() {
    let emu = start_emulator().await;
    let config = reference_config(json!({}));
    let stream = discovered_stream(&emu.base_url, &config, "Opportunity").await;
    admin(
        &emu.base_url,
        "PUT",
        "/faults",
        &json!({"next_job": "failed"}),
    )
    .await;
    let run = read(&emu.base_url, &config, &configured(&stream, false), None).await;
    // The reference aborts every running job when it switches to REST, including the one that
    // already ended Failed; Salesforce only aborts UploadComplete/InProgress jobs
    // (salesforce-api.md §5.7), so a 400 there is correct and tolerated by the reference.
    run.assert_clean_except(|e| e.method() == "PATCH" && e.status() == Some(400));
    let states: Vec<String> = run
        .exchanges("GET", "/jobs/query/")
        .iter()
        .filter_map(|e| e.json())
        .filter_map(|j| j["state"].as_str().map(str::to_string))
        .collect();
    assert!(
        states.iter().any(|s| s == "Failed"),
        "job states seen: {states:?}{}",
        run.report()
    );
    assert!(
        !run.exchanges("GET", "/queryAll").is_empty(),
        "no REST fallback{}",
        run.report()
    );
    run.assert_read_all("Opportunity");
}

/// Reads `stream` (full refresh) with `faults` injected after discovery; returns the run.
async fn read_with_faults(base: &str, stream_name: &str, faults: Value) -> RefRun {
    let config = reference_config(json!({}));
    let stream = discovered_stream(base, &config, stream_name).await;
    admin(base, "PUT", "/faults", &faults).await;
    read(base, &config, &configured(&stream, false), None).await
}

/// A 401 `INVALID_SESSION_ID` (salesforce-api.md §1.6) makes the reference log in again and
/// retry (anchors §6); the read then completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_logs_in_again_after_invalid_session() {
    let emu = start_emulator().await;
    // API calls of the read: describe global, describe Attachment, queryAll (401).
    let run = read_with_faults(
        &emu.base_url,
        "Attachment",
        json!({"script": [200, 200, 401]}),
    )
    .await;
    run.assert_clean_except(|e| e.status() == Some(401));
    let expired: Vec<_> = run.answered(401);
    assert!(
        !expired.is_empty(),
        "the injected 401 never reached the reference{}",
        run.report()
    );
    run.assert_error_code(expired[0], "INVALID_SESSION_ID");
    run.assert_logged_in_again();
    run.assert_read_all("Attachment");
}

/// The Bulk requesters refresh the token on their own path (anchors §3.1, §6): a 401 on a job
/// status poll must be survived the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_bulk_logs_in_again_after_invalid_session() {
    let emu = start_emulator().await;
    // API calls: describe global, describe Opportunity, job create, first status poll (401).
    let run = read_with_faults(
        &emu.base_url,
        "Opportunity",
        json!({"script": [200, 200, 200, 401]}),
    )
    .await;
    run.assert_clean_except(|e| e.status() == Some(401));
    let expired: Vec<_> = run.answered(401);
    // The 401 expires the token for good, so every retry before the reference's next allowed
    // login (it skips logins within 10 s of the last one) is a 401 too.
    assert!(
        !expired.is_empty() && expired.iter().all(|e| e.path().contains("/jobs/query/")),
        "{}",
        run.report()
    );
    run.assert_error_code(expired[0], "INVALID_SESSION_ID");
    run.assert_logged_in_again();
    assert_bulk_path(&run, "Opportunity");
    run.assert_read_all("Opportunity");
}

/// 503s are retried (anchors §6) and the Bulk read completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_retries_server_unavailable() {
    let emu = start_emulator().await;
    // API calls: describe global, describe Opportunity, job create (503, then 429 with an empty
    // body, salesforce-api.md §3.4), then fine.
    let run = read_with_faults(
        &emu.base_url,
        "Opportunity",
        json!({"script": [200, 200, 503, 429]}),
    )
    .await;
    run.assert_clean_except(|e| matches!(e.status(), Some(503 | 429)));
    let retried: Vec<Option<u64>> = run
        .traffic
        .iter()
        .filter(|e| e.status().is_some_and(|c| c >= 300))
        .map(Exchange::status)
        .collect();
    assert_eq!(retried, vec![Some(503), Some(429)], "{}", run.report());
    assert_bulk_path(&run, "Opportunity");
    run.assert_read_all("Opportunity");
}

/// A 403 `REQUEST_LIMIT_EXCEEDED` on Bulk job creation sends the reference to REST (anchors §4.6,
/// §5); the stream still completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_switches_to_rest_when_bulk_creation_hits_the_limit() {
    let emu = start_emulator().await;
    let run = read_with_faults(
        &emu.base_url,
        "Opportunity",
        json!({"script": [200, 200, 403]}),
    )
    .await;
    run.assert_clean_except(|e| e.status() == Some(403) && e.method() == "POST");
    let limited = run.exchanges("POST", "/jobs/query");
    assert_eq!(
        limited.first().and_then(|e| e.status()),
        Some(403),
        "{}",
        run.report()
    );
    run.assert_error_code(limited[0], "REQUEST_LIMIT_EXCEEDED");
    assert!(
        !run.exchanges("GET", "/queryAll").is_empty(),
        "no REST fallback{}",
        run.report()
    );
    run.assert_read_all("Opportunity");
}

/// A 403 `REQUEST_LIMIT_EXCEEDED` on a REST query fails that stream as a transient error without
/// retry (anchors §4.6): the emulator's body must be recognised as the daily limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_reports_rest_daily_limit_as_transient() {
    let emu = start_emulator().await;
    let run = read_with_faults(
        &emu.base_url,
        "Attachment",
        json!({"script": [200, 200, 403]}),
    )
    .await;
    let limited = run.exchanges("GET", "/queryAll");
    assert_eq!(limited.len(), 1, "403 must not be retried{}", run.report());
    assert_eq!(limited[0].status(), Some(403), "{}", run.report());
    let traced = run.run.of_type("TRACE").into_iter().any(|t| {
        t["trace"]["type"] == "ERROR"
            && t["trace"]["error"]["failure_type"] == "transient_error"
            && t["trace"]["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("Request limit reached"))
    });
    assert!(
        traced,
        "expected a transient 'Request limit reached' error{}",
        run.report()
    );
    assert_eq!(
        run.final_status("Attachment").as_deref(),
        Some("INCOMPLETE"),
        "{}",
        run.report()
    );
    assert_ne!(run.run.code(), Some(0), "{}", run.report());
}

/// The same custom object (every scalar field type: formula, time, multipicklist, percent,
/// encrypted string, location components…) read through Bulk (forced) and through REST must give
/// the same values row for row, and both must equal the emulator's stored rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_bulk_and_rest_agree_on_every_invoice_value() {
    let emu = start_emulator().await;
    let rest_config = reference_config(json!({}));
    let bulk_config = reference_config(json!({"force_use_bulk_api": true}));
    let (rest, stream) = full_refresh(&emu.base_url, &rest_config, "Invoice__c").await;
    rest.assert_clean();
    assert_rest_path(&rest, "Invoice__c");
    let (bulk, _) = full_refresh(&emu.base_url, &bulk_config, "Invoice__c").await;
    bulk.assert_clean();
    assert_bulk_path(&bulk, "Invoice__c");
    let schema = &stream["json_schema"];
    let fields: Vec<String> = schema["properties"]
        .as_object()
        .map(|p| {
            p.iter()
                .filter(|(_, v)| actual_property(v).0 != "object")
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    let field_refs: Vec<&str> = fields.iter().map(String::as_str).collect();
    let bulk_by_id: BTreeMap<&str, &Value> = bulk
        .records("Invoice__c")
        .into_iter()
        .filter_map(|r| Some((r["Id"].as_str()?, r)))
        .collect();
    let rest_records = rest.records("Invoice__c");
    assert_eq!(
        rest_records.len() as u64,
        configured_rows("Invoice__c"),
        "{}",
        rest.report()
    );
    assert_eq!(bulk_by_id.len(), rest_records.len(), "{}", bulk.report());
    let mut diffs = Vec::new();
    for r in &rest_records {
        let id = r["Id"].as_str().unwrap_or("");
        match bulk_by_id.get(id) {
            Some(b) => diffs.extend(
                compare_record("Invoice__c", b, r, &field_refs, schema)
                    .into_iter()
                    .map(|d| {
                        d.replace("reference emitted", "Bulk gave")
                            .replace("emulator holds", "REST gave")
                    }),
            ),
            None => diffs.push(format!("Invoice__c {id}: in REST, missing from Bulk")),
        }
    }
    for r in rest_records.iter().take(3) {
        let id = r["Id"].as_str().unwrap_or("");
        let truth = read_back(&emu.base_url, "Invoice__c", id).await;
        diffs.extend(compare_record("Invoice__c", r, &truth, &field_refs, schema));
    }
    diffs.truncate(40);
    assert!(
        diffs.is_empty(),
        "Bulk vs REST vs stored values:\n  {}{}",
        diffs.join("\n  "),
        bulk.report()
    );
}

/// Refresh-token rotation (salesforce-api.md §1.5): each login returns a new refresh token, which
/// the reference persists through a CONTROL message (anchors §3.1); the rotated token works, and
/// replaying the rotated-out one is `invalid_grant` "expired access/refresh token", which the
/// reference maps to its re-authenticate config error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_persists_rotated_refresh_tokens() {
    let emu = start_emulator_with(|c| c.switches.refresh_token_rotation = true).await;
    let original = reference_config(json!({}));
    let rotated_config = |run: &RefRun| -> Value {
        let controls = run.run.of_type("CONTROL");
        assert_eq!(
            controls.len(),
            1,
            "one CONTROL per rotation{}",
            run.report()
        );
        controls[0]["control"]["connectorConfig"]["config"].clone()
    };
    let first = check(&emu.base_url, &original).await;
    first.assert_clean();
    let second_config = rotated_config(&first);
    assert_ne!(
        second_config["refresh_token"],
        original["refresh_token"],
        "{}",
        first.report()
    );
    assert_eq!(
        second_config["client_id"],
        original["client_id"],
        "{}",
        first.report()
    );

    let second = check(&emu.base_url, &second_config).await;
    second.assert_clean();
    let statuses = second.run.of_type("CONNECTION_STATUS");
    assert_eq!(
        statuses[0]["connectionStatus"]["status"],
        "SUCCEEDED",
        "{}",
        second.report()
    );
    assert_ne!(
        rotated_config(&second)["refresh_token"],
        second_config["refresh_token"]
    );

    let replay = check(&emu.base_url, &original).await;
    let token = replay.exchanges("POST", "/services/oauth2/token");
    assert_eq!(
        token.first().and_then(|e| e.status()),
        Some(400),
        "{}",
        replay.report()
    );
    let body = token[0].json().unwrap_or(Value::Null);
    assert_eq!(body["error"], "invalid_grant", "{}", replay.report());
    assert_eq!(
        body["error_description"],
        "expired access/refresh token",
        "{}",
        replay.report()
    );
    let expired = replay.run.of_type("TRACE").into_iter().any(|t| {
        t["trace"]["error"]["failure_type"] == "config_error"
            && t["trace"]["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("authentication to SalesForce has expired"))
    });
    assert!(
        expired,
        "expected the re-authenticate config error{}",
        replay.report()
    );
}

/// Runs launch.py with `emulator_url` (None: unset) and returns (exit code, stdout, stderr).
fn launch_raw(emulator_url: Option<&str>) -> (Option<i32>, String, String) {
    let mut cmd = std::process::Command::new(reference_python());
    cmd.arg(launcher())
        .arg("spec")
        .env_remove("SALESFORCE_EMULATOR_URL");
    if let Some(url) = emulator_url {
        cmd.env("SALESFORCE_EMULATOR_URL", url);
    }
    let out = cmd.output().expect("run launch.py");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn launcher_requires_a_loopback_emulator_url() {
    let (code, stdout, stderr) = launch_raw(None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stdout.is_empty() && stderr.contains("SALESFORCE_EMULATOR_URL"),
        "{stderr}"
    );
    // Never a real host: the launcher must refuse before the connector can send anything.
    let (code, stdout, stderr) = launch_raw(Some("https://login.salesforce.com"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty() && stderr.contains("loopback"), "{stderr}");
}

#[test]
fn launcher_runs_the_connector_entry_point() {
    // `spec` needs no network: it proves the venv's connector starts through the launcher and
    // speaks the protocol on stdout.
    let (code, stdout, stderr) = launch_raw(Some("http://127.0.0.1:9"));
    assert_eq!(code, Some(0), "{stderr}");
    let spec = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|m| m["type"] == "SPEC")
        .unwrap_or_else(|| panic!("no SPEC message in {stdout}"));
    let required = &spec["spec"]["connectionSpecification"]["required"];
    assert_eq!(
        required,
        &json!(["client_id", "client_secret", "refresh_token"]),
        "{spec}"
    );
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn instants_parse_in_every_salesforce_spelling() {
        let a = instant_ms("2024-01-02T03:04:05.000+0000").unwrap();
        assert_eq!(instant_ms("2024-01-02T03:04:05.000Z"), Some(a));
        assert_eq!(instant_ms("2024-01-02T03:04:05Z"), Some(a));
        assert_eq!(instant_ms("2024-01-02T05:04:05.000+02:00"), Some(a));
        assert_eq!(instant_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(a, 1_704_164_645_000);
        assert_eq!(instant_ms("yesterday"), None);
    }

    #[test]
    fn percent_decoding_and_encoding_round_trip() {
        let q = "SELECT Id FROM Account WHERE SystemModstamp >= 2024-01-01T00:00:00.000+00:00";
        assert_eq!(percent_decode(&encode_query(q)), q);
        assert_eq!(percent_decode("a+b%2Cc"), "a b,c");
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(raw.as_bytes()), enc);
        }
        assert_eq!(base64_encode(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn dechunks_http_bodies() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
    }

    #[test]
    fn type_mapping_covers_every_wsdl_field_type() {
        // salesforce-api.md §2.4: every describe type the emulator may emit must be known here.
        for t in salesforce_emulator::schema::WSDL_FIELD_TYPES {
            assert!(expected_property(t).is_some(), "{t}");
        }
        assert!(expected_property("floatarray").is_none());
    }
}
