//! The command-line edge of the destination-salesforce binary, run as a black box: what reaches stdout, what
//! reaches stderr, and the exit codes.

use std::path::Path;

use serde_json::{Value, json};
use testkit::{Run, json_file, run_connector, run_connector_with_env};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_destination-salesforce"))
}

fn path(file: &tempfile::NamedTempFile) -> &str {
    file.path().to_str().expect("temp paths are UTF-8")
}

/// A config in the shape users already have (secrets included, to check they never leak).
fn config() -> Value {
    json!({
        "client_id": "3MVG9-test-client-id",
        "client_secret": "very-secret-client-secret-0001",
        "refresh_token": "5Aep861-very-secret-refresh-token",
        "is_sandbox": false,
        "auth_type": "Client"
    })
}

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
    let expected: Value = serde_json::from_str(include_str!(
        "../../../schemas/destination-salesforce.spec.json"
    ))
    .unwrap();
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
            "write",
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
            "write",
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

/// A config that cannot work is reported naming the key, before any network call: a FAILED
/// status for `check`, a config error for the other commands.
#[test]
fn invalid_config_values_are_reported_before_any_network_call() {
    let mut bad = config();
    bad["batch_max_bytes"] = json!(0);
    let config = json_file(&bad);
    let catalog = json_file(&catalog());
    let run = run_connector(bin(), &["check", "--config", path(&config)], None);
    assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
    let status = &run.of_type("CONNECTION_STATUS")[0]["connectionStatus"];
    assert_eq!(status["status"], "FAILED");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("batch_max_bytes"),
        "{status}"
    );
    assert_no_secrets(&run);
    let commands: [&[&str]; 2] = [
        &["discover", "--config", path(&config)],
        &[
            "write",
            "--config",
            path(&config),
            "--catalog",
            path(&catalog),
        ],
    ];
    for args in commands {
        let run = run_connector(bin(), args, Some(b""));
        let error = single_error(&run, "config_error");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("batch_max_bytes"),
            "{args:?}: {error}"
        );
        assert_no_secrets(&run);
    }
}

#[test]
fn the_other_direction_is_unsupported() {
    let config = json_file(&config());
    let catalog = json_file(&catalog());
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
    let error = single_error(&run, "system_error");
    assert_eq!(
        error["message"],
        "this connector does not support the `read` command"
    );
}

#[test]
fn logs_go_to_stderr_only() {
    let mut bad = config();
    bad["job_concurrency"] = json!(0);
    let config = json_file(&bad);
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
