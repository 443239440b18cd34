//! The command-line edge of the destination-salesforce binary, run as a black box: what reaches stdout,
//! what reaches stderr, and the exit codes. The cases both connectors share live in `testkit::cli_edge`.

use std::path::Path;

use serde_json::{Value, json};
use testkit::cli_edge::{
    Edge, account_catalog as catalog, assert_no_secrets, path, single_error, user_config,
};
use testkit::{json_file, run_connector};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_destination-salesforce"))
}

/// A users' config pointed at a loopback port nothing listens on, so no test reaches the internet.
fn config() -> Value {
    let mut config = user_config();
    config["login_url"] = json!("http://127.0.0.1:9");
    config
}

fn edge() -> Edge {
    Edge {
        bin: bin(),
        spec_json: include_str!("../../../schemas/destination-salesforce.spec.json"),
        data_command: "write",
        other_command: "read",
        config: config(),
    }
}

testkit::cli_edge_tests!(edge());

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
