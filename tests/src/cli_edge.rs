//! The command-line edge both connectors share (argument and file errors, spec, log routing, the
//! unsupported direction), written once and run against each binary.
//!
//! A connector's `tests/cli.rs` builds an [`Edge`] and expands [`cli_edge_tests!`](crate::cli_edge_tests)
//! with it; its own cases (check failures, state files) use the helpers here.

use std::path::Path;

use serde_json::{Value, json};

use crate::{Run, json_file, run_connector, run_connector_with_env};

/// The secrets in [`user_config`]; no stdout or stderr line may contain them.
pub const SECRETS: [&str; 2] = [
    "very-secret-client-secret-0001",
    "5Aep861-very-secret-refresh-token",
];

/// A config in the shape users already have (secrets included, to check they never leak).
pub fn user_config() -> Value {
    json!({
        "client_id": "3MVG9-test-client-id",
        "client_secret": SECRETS[0],
        "refresh_token": SECRETS[1],
        "is_sandbox": false,
        "auth_type": "Client"
    })
}

/// A one-stream catalog (`Account`, full refresh, append).
pub fn account_catalog() -> Value {
    json!({"streams": [{
        "stream": {"name": "Account", "json_schema": {"type": "object", "properties": {"Id": {"type": "string"}}},
                   "supported_sync_modes": ["full_refresh", "incremental"]},
        "sync_mode": "full_refresh", "destination_sync_mode": "append",
        "destination_object_name": "Account", "primary_key": [["Id"]]
    }]})
}

/// The path of a temp file as `&str`.
pub fn path(file: &tempfile::NamedTempFile) -> &str {
    file.path().to_str().expect("temp paths are UTF-8")
}

/// Asserts the run printed exactly one TRACE error of `failure_type` and exited 1; returns the
/// trace's `error` object.
pub fn single_error<'a>(run: &'a Run, failure_type: &str) -> &'a Value {
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
pub fn assert_names_file(error: &Value, arg: &str, file: &str, problem: &str) {
    let message = error["message"].as_str().expect("message is a string");
    assert!(message.contains(arg), "{message}");
    assert!(message.contains(file), "{message}");
    assert!(message.contains(problem), "{message}");
}

/// Asserts none of [`SECRETS`] reached stdout or stderr.
pub fn assert_no_secrets(run: &Run) {
    for secret in SECRETS {
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

/// One connector binary and what its edge cases need.
#[derive(Debug)]
pub struct Edge {
    /// The binary (`env!("CARGO_BIN_EXE_...")`).
    pub bin: &'static Path,
    /// The spec file's text, as embedded in the binary (`include_str!` of `schemas/...spec.json`).
    pub spec_json: &'static str,
    /// The data command this connector runs: `read` or `write`.
    pub data_command: &'static str,
    /// The data command of the other direction, which this connector must refuse.
    pub other_command: &'static str,
    /// A config that parses and never reaches the internet (its `check` fails without a network
    /// call or at a loopback port nothing listens on) and logs `starting` at debug level.
    pub config: Value,
}

impl Edge {
    fn run_data(&self, config: &str, catalog: &str) -> Run {
        run_connector(
            self.bin,
            &[self.data_command, "--config", config, "--catalog", catalog],
            Some(b""),
        )
    }

    /// `spec` prints the schemas/ file unchanged, as the only message.
    pub fn spec_prints_exactly_one_spec(&self) {
        let run = run_connector(self.bin, &["spec"], None);
        assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
        assert_eq!(run.messages.len(), 1, "{:#?}", run.messages);
        let spec = &run.of_type("SPEC")[0]["spec"];
        let expected: Value = serde_json::from_str(self.spec_json).expect("spec file is JSON");
        assert_eq!(spec, &expected, "spec must be the schemas/ file, unchanged");
        assert_eq!(spec["connectionSpecification"]["type"], "object");
    }

    /// `--debug` (which platforms pass) is accepted.
    pub fn spec_accepts_debug_flag(&self) {
        let run = run_connector(self.bin, &["spec", "--debug"], None);
        assert_eq!(run.code(), Some(0), "stderr: {}", run.stderr);
        assert_eq!(run.of_type("SPEC").len(), 1);
    }

    /// A config path that does not exist is a config error naming the argument and the path.
    pub fn missing_config_file_is_a_config_error(&self) {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("config.json");
        let missing = missing.to_str().expect("temp paths are UTF-8");
        let run = run_connector(self.bin, &["check", "--config", missing], None);
        assert_names_file(
            single_error(&run, "config_error"),
            "--config",
            missing,
            "not found",
        );
    }

    /// A config that is not JSON is a config error naming line and column.
    pub fn invalid_json_config_is_a_config_error(&self) {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(
            file.path(),
            "{\n  \"client_id\": \"x\",\n  \"client_secret\": \n}\n",
        )
        .expect("write temp file");
        let run = run_connector(self.bin, &["discover", "--config", path(&file)], None);
        let error = single_error(&run, "config_error");
        assert_names_file(
            error,
            "--config",
            path(&file),
            "line 4 column 1: expected value",
        );
    }

    /// A config that is JSON but not an object is a config error saying what was found.
    pub fn non_object_config_is_a_config_error(&self) {
        let file = json_file(&json!(["client_id", "x"]));
        let run = run_connector(self.bin, &["check", "--config", path(&file)], None);
        let error = single_error(&run, "config_error");
        assert_names_file(
            error,
            "--config",
            path(&file),
            "must be a JSON object, found an array",
        );
    }

    /// A catalog missing a required key is a config error naming the JSON path.
    pub fn bad_catalog_is_a_config_error(&self) {
        let config = json_file(&self.config);
        let catalog = json_file(
            &json!({"streams": [{"stream": {"name": "Account"}, "sync_mode": "full_refresh"}]}),
        );
        let run = self.run_data(path(&config), path(&catalog));
        let error = single_error(&run, "config_error");
        assert_names_file(
            error,
            "--catalog",
            path(&catalog),
            "streams[0].stream: missing field",
        );
        assert_no_secrets(&run);
    }

    /// A catalog path that does not exist is a config error.
    pub fn missing_catalog_is_a_config_error(&self) {
        let config = json_file(&self.config);
        let run = self.run_data(path(&config), "/nonexistent/catalog.txt");
        let error = single_error(&run, "config_error");
        assert_names_file(error, "--catalog", "/nonexistent/catalog.txt", "not found");
    }

    /// A missing required argument exits 2 with a TRACE naming it and clap's usage on stderr.
    pub fn missing_arguments_are_reported_not_ignored(&self) {
        let run = run_connector(self.bin, &["check"], None);
        assert_eq!(run.code(), Some(2), "stderr: {}", run.stderr);
        assert_eq!(run.messages.len(), 1, "{:#?}", run.messages);
        let message = run.of_type("TRACE")[0]["trace"]["error"]["message"]
            .as_str()
            .expect("message is a string")
            .to_owned();
        assert!(message.contains("--config"), "{message}");
        assert!(
            run.stderr.contains("Usage"),
            "clap's usage goes to stderr: {}",
            run.stderr
        );
    }

    /// The other direction's data command is a system error saying it is not supported.
    pub fn the_other_direction_is_unsupported(&self) {
        let config = json_file(&self.config);
        let catalog = json_file(&account_catalog());
        let run = run_connector(
            self.bin,
            &[
                self.other_command,
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
            format!(
                "this connector does not support the `{}` command",
                self.other_command
            )
        );
    }

    /// Logs reach stderr only, follow `RUST_LOG`, and never carry secrets.
    pub fn logs_go_to_stderr_only(&self) {
        let config = json_file(&self.config);
        let run = run_connector_with_env(
            self.bin,
            &["check", "--config", path(&config)],
            None,
            &[("RUST_LOG", "debug")],
        );
        // run_connector has already checked every stdout line is a protocol message.
        assert_eq!(run.messages.len(), 1, "{}", run.stdout);
        assert!(
            run.stderr.contains("starting"),
            "log lines expected on stderr: {}",
            run.stderr
        );
        assert!(!run.stdout.contains("starting"), "{}", run.stdout);
        assert_no_secrets(&run);

        let quiet = run_connector_with_env(
            self.bin,
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
}

/// Expands to one `#[test]` per shared edge case of [`Edge`], each calling the method of the same
/// name on the given expression (evaluated afresh in every test).
#[macro_export]
macro_rules! cli_edge_tests {
    ($edge:expr) => {
        $crate::cli_edge_tests!(@each $edge;
            spec_prints_exactly_one_spec,
            spec_accepts_debug_flag,
            missing_config_file_is_a_config_error,
            invalid_json_config_is_a_config_error,
            non_object_config_is_a_config_error,
            bad_catalog_is_a_config_error,
            missing_catalog_is_a_config_error,
            missing_arguments_are_reported_not_ignored,
            the_other_direction_is_unsupported,
            logs_go_to_stderr_only);
    };
    (@each $edge:expr; $($case:ident),*) => {
        $(
            #[test]
            fn $case() {
                $edge.$case();
            }
        )*
    };
}
