//! The command-line edge of the source-salesforce binary, run as a black box: what reaches stdout, what
//! reaches stderr, and the exit codes. The cases both connectors share live in `testkit::cli_edge`.

use std::path::Path;

use serde_json::{Value, json};
use testkit::cli_edge::{
    Edge, account_catalog as catalog, assert_names_file, assert_no_secrets, path, single_error,
    user_config,
};
use testkit::{json_file, run_connector};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_source-salesforce"))
}

/// A loopback address that refuses connections (port 9, discard, is not served here).
const UNREACHABLE: &str = "http://127.0.0.1:9";

/// A users' config pointed at a loopback port nothing listens on, so no test reaches the internet.
fn config() -> Value {
    let mut config = user_config();
    config["login_url"] = json!(UNREACHABLE);
    config
}

fn edge() -> Edge {
    Edge {
        bin: bin(),
        spec_json: include_str!("../../../schemas/source-salesforce.spec.json"),
        data_command: "read",
        other_command: "write",
        config: config(),
    }
}

testkit::cli_edge_tests!(edge());

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
