//! The command-line edge of the source-salesforce binary, run as a black box: what reaches stdout, what
//! reaches stderr, and the exit codes.

use std::path::Path;

use serde_json::{Value, json};
use testkit::{Run, json_file, run_connector, run_connector_with_env};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_source-salesforce"))
}

fn path(file: &tempfile::NamedTempFile) -> &str {
    file.path().to_str().expect("temp paths are UTF-8")
}

/// A config in the shape users already have (secrets included, to check they never leak),
/// pointed at a loopback port nothing listens on so no test reaches the internet.
fn config() -> Value {
    json!({
        "client_id": "3MVG9-test-client-id",
        "client_secret": "very-secret-client-secret-0001",
        "refresh_token": "5Aep861-very-secret-refresh-token",
        "is_sandbox": false,
        "auth_type": "Client",
        "login_url": UNREACHABLE
    })
}

/// A loopback address that refuses connections (port 9, discard, is not served here).
const UNREACHABLE: &str = "http://127.0.0.1:9";

fn catalog() -> Value {
    json!({"streams": [{
        "stream": {"name": "Account", "json_schema": {"type": "object", "properties": {"Id": {"type": "string"}}},
                   "supported_sync_modes": ["full_refresh", "incremental"]},
        "sync_mode": "full_refresh", "destination_sync_mode": "append",
        "destination_object_name": "Account", "primary_key": [["Id"]]
    }]})
}

/// Asserts the run printed exactly one TRACE error of `failure_type` and exited 1; returns it.
fn single_error<'a>(run: &'a Run, failure_type: &str) -> &'a Value {
    assert_eq!(
        run.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert_eq!(
        run.messages.len(),
        1,
        "exactly one message expected: {:#?}",
        run.messages
    );
    let trace = &run.of_type("TRACE")[0]["trace"];
    assert_eq!(trace["type"], "ERROR");
    assert!(
        trace["emitted_at"].as_f64().is_some_and(|t| t > 1e12),
        "{trace}"
    );
    let error = &trace["error"];
    assert_eq!(error["failure_type"], failure_type, "{error}");
    error
}

/// Asserts a file error names the argument, the path and the problem.
fn assert_names_file(error: &Value, arg: &str, file: &str, problem: &str) {
    let message = error["message"].as_str().expect("message is a string");
    assert!(message.contains(arg), "{message}");
    assert!(message.contains(file), "{message}");
    assert!(message.contains(problem), "{message}");
}

fn assert_no_secrets(run: &Run) {
    for secret in [
        "very-secret-client-secret-0001",
        "5Aep861-very-secret-refresh-token",
    ] {
        assert!(
            !run.stdout.contains(secret),
            "secret on stdout: {}",
            run.stdout
        );
        assert!(
            !run.stderr.contains(secret),
            "secret on stderr: {}",
            run.stderr
        );
    }
}

#[test]
fn spec_prints_exactly_one_spec() {
    let run = run_connector(bin(), &["spec"], None);
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.messages.len(), 1, "{:#?}", run.messages);
    let spec = &run.of_type("SPEC")[0]["spec"];
    let expected: Value =
        serde_json::from_str(include_str!("../../../schemas/source-salesforce.spec.json")).unwrap();
    assert_eq!(spec, &expected, "spec must be the schemas/ file, unchanged");
    assert_eq!(spec["connectionSpecification"]["type"], "object");
}

#[test]
fn spec_accepts_debug_flag() {
    let run = run_connector(bin(), &["spec", "--debug"], None);
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.of_type("SPEC").len(), 1);
}

#[test]
fn missing_config_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("config.json");
    let missing = missing.to_str().unwrap();
    let run = run_connector(bin(), &["check", "--config", missing], None);
    assert_names_file(
        single_error(&run, "config_error"),
        "--config",
        missing,
        "not found",
    );
}

#[test]
fn invalid_json_config_is_a_config_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        "{\n  \"client_id\": \"x\",\n  \"client_secret\": \n}\n",
    )
    .unwrap();
    let run = run_connector(bin(), &["discover", "--config", path(&file)], None);
    let error = single_error(&run, "config_error");
    assert_names_file(
        error,
        "--config",
        path(&file),
        "line 4 column 1: expected value",
    );
}

#[test]
fn non_object_config_is_a_config_error() {
    let file = json_file(&json!(["client_id", "x"]));
    let run = run_connector(bin(), &["check", "--config", path(&file)], None);
    let error = single_error(&run, "config_error");
    assert_names_file(
        error,
        "--config",
        path(&file),
        "must be a JSON object, found an array",
    );
}

#[test]
fn bad_catalog_is_a_config_error() {
    let config = json_file(&config());
    let catalog = json_file(
        &json!({"streams": [{"stream": {"name": "Account"}, "sync_mode": "full_refresh"}]}),
    );
    let run = run_connector(
        bin(),
        &[
            "read",
            "--config",
            path(&config),
            "--catalog",
            path(&catalog),
        ],
        Some(b""),
    );
    let error = single_error(&run, "config_error");
    assert_names_file(
        error,
        "--catalog",
        path(&catalog),
        "streams[0].stream: missing field",
    );
    assert_no_secrets(&run);
}

#[test]
fn missing_catalog_is_a_config_error() {
    let config = json_file(&config());
    let run = run_connector(
        bin(),
        &[
            "read",
            "--config",
            path(&config),
            "--catalog",
            "/nonexistent/catalog.txt",
        ],
        Some(b""),
    );
    let error = single_error(&run, "config_error");
    assert_names_file(error, "--catalog", "/nonexistent/catalog.txt", "not found");
}

#[test]
fn missing_arguments_are_reported_not_ignored() {
    let run = run_connector(bin(), &["check"], None);
    assert_eq!(run.code(), Some(2), "stderr: {}", run.stderr);
    assert_eq!(run.messages.len(), 1, "{:#?}", run.messages);
    let message = run.of_type("TRACE")[0]["trace"]["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("--config"), "{message}");
    assert!(
        run.stderr.contains("Usage"),
        "clap's usage goes to stderr: {}",
        run.stderr
    );
}

/// With the login host unreachable, `check` reports a FAILED status naming the settings to look
/// at (exit 0), while `discover` and `read` fail with one transient TRACE error (exit 1).
#[test]
fn unreachable_login_host_fails_cleanly() {
    let config = json_file(&config());
    let run = run_connector(bin(), &["check", "--config", path(&config)], None);
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.messages.len(), 1, "{:#?}", run.messages);
    let status = &run.of_type("CONNECTION_STATUS")[0]["connectionStatus"];
    assert_eq!(status["status"], "FAILED");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("login_url") && message.contains(UNREACHABLE),
        "{message}"
    );
    assert_no_secrets(&run);

    let catalog = json_file(&catalog());
    let commands: [&[&str]; 2] = [
        &["discover", "--config", path(&config)],
        &[
            "read",
            "--config",
            path(&config),
            "--catalog",
            path(&catalog),
        ],
    ];
    for args in commands {
        let run = run_connector(bin(), args, Some(b""));
        let error = single_error(&run, "transient_error");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(UNREACHABLE), "{args:?}: {message}");
        assert_no_secrets(&run);
    }
}

#[test]
fn invalid_config_values_name_the_field() {
    let mut bad = config();
    bad["start_date"] = json!("25/07/2021");
    let bad = json_file(&bad);
    let run = run_connector(bin(), &["check", "--config", path(&bad)], None);
    assert_eq!(run.code(), Some(0));
    let status = &run.of_type("CONNECTION_STATUS")[0]["connectionStatus"];
    assert_eq!(status["status"], "FAILED");
    assert!(
        status["message"].as_str().unwrap().contains("start_date"),
        "{status}"
    );

    let run = run_connector(bin(), &["discover", "--config", path(&bad)], None);
    let error = single_error(&run, "config_error");
    assert!(
        error["message"].as_str().unwrap().contains("start_date"),
        "{error}"
    );
}

#[test]
fn the_other_direction_is_unsupported() {
    let config = json_file(&config());
    let catalog = json_file(&catalog());
    let run = run_connector(
        bin(),
        &[
            "write",
            "--config",
            path(&config),
            "--catalog",
            path(&catalog),
        ],
        Some(b""),
    );
    let error = single_error(&run, "system_error");
    assert_eq!(
        error["message"],
        "this connector does not support the `write` command"
    );
}

#[test]
fn logs_go_to_stderr_only() {
    let config = json_file(&config());
    let run = run_connector_with_env(
        bin(),
        &["check", "--config", path(&config)],
        None,
        &[("RUST_LOG", "debug")],
    );
    // testkit has already checked every stdout line is a protocol message.
    assert_eq!(run.messages.len(), 1, "{}", run.stdout);
    assert!(
        run.stderr.contains("starting"),
        "log lines expected on stderr: {}",
        run.stderr
    );
    assert!(!run.stdout.contains("starting"), "{}", run.stdout);
    assert_no_secrets(&run);

    let quiet = run_connector_with_env(
        bin(),
        &["check", "--config", path(&config)],
        None,
        &[("RUST_LOG", "off")],
    );
    assert!(
        quiet.stderr.is_empty(),
        "RUST_LOG=off silences logs: {}",
        quiet.stderr
    );
    assert_eq!(quiet.messages.len(), 1);
}

#[test]
fn bad_state_is_a_config_error() {
    let config = json_file(&config());
    let catalog = json_file(&catalog());
    let state = json_file(&json!([{"type": "STREAM", "stream": {"stream_state": {}}}]));
    let run = run_connector(
        bin(),
        &[
            "read",
            "--config",
            path(&config),
            "--catalog",
            path(&catalog),
            "--state",
            path(&state),
        ],
        None,
    );
    let error = single_error(&run, "config_error");
    assert_names_file(
        error,
        "--state",
        path(&state),
        "[0].stream: missing field `stream_descriptor`",
    );

    let state = json_file(&json!("2024-01-01"));
    let run = run_connector(
        bin(),
        &[
            "read",
            "--config",
            path(&config),
            "--catalog",
            path(&catalog),
            "--state",
            path(&state),
        ],
        None,
    );
    let error = single_error(&run, "config_error");
    assert_names_file(error, "--state", path(&state), "found a string");
}

/// PyAirbyte's first run passes `[]`, later runs a list with explicit nulls and `global_`: both
/// are accepted (the run then stops at the unreachable login host, not at the state).
#[test]
fn pyairbyte_states_are_accepted() {
    let config = json_file(&config());
    let catalog = json_file(&catalog());
    let states = [
        json!([]),
        json!([{"type": "STREAM", "stream": {"stream_descriptor": {"name": "Account", "namespace": null},
                "stream_state": {"SystemModstamp": "2024-01-01T00:00:00.000Z"}},
                "global_": null, "data": null, "sourceStats": {"recordCount": 3.0}, "destinationStats": null}]),
    ];
    for state in states {
        let state = json_file(&state);
        let run = run_connector(
            bin(),
            &[
                "read",
                "--config",
                path(&config),
                "--catalog",
                path(&catalog),
                "--state",
                path(&state),
            ],
            None,
        );
        let error = single_error(&run, "transient_error");
        assert!(
            error["message"].as_str().unwrap().contains("describing"),
            "{error}"
        );
    }
}
