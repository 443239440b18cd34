//! The shared command-line edge of both connector binaries.
//!
//! ```text
//! <connector> spec
//! <connector> check    --config FILE
//! <connector> discover --config FILE
//! <connector> read     --config FILE --catalog FILE [--state FILE]
//! <connector> write    --config FILE --catalog FILE   < messages
//! ```
//! (`--debug` is accepted anywhere and ignored, as the Python CDK accepts it.)
//!
//! [`run`] parses the arguments, initialises `tracing` on stderr (filter from `RUST_LOG`, default
//! `info`), loads and validates the files, and calls the [`Connector`]. It is also the one place
//! that maps errors to the protocol:
//!
//! - a file that is missing, unreadable or invalid: one TRACE `config_error` naming the argument,
//!   the path and the problem; exit 1;
//! - a [`ConnectorError`]: one TRACE error with its `failure_type`, the human message and the full
//!   chain in `internal_message`, both scrubbed of the config's secrets; exit 1 (except a
//!   `config_error` from `check`, which becomes a FAILED connection status and exit 0);
//! - a panic: a TRACE `system_error`; exit 1;
//! - stdout closed by its reader: exit 1 without another word on stdout.

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::clock::{Clock, SystemClock};
use crate::codec::MessageReader;
use crate::connector::{Connector, ConnectorError, Input};
use crate::files::{self, FileError, InputState};
use crate::message::AirbyteMessage;
use crate::secrets::Secrets;
use crate::types::{ConnectionStatus, FailureType};
use crate::writer::Output;

/// Exit code of a failed command.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of an invalid command line.
pub const EXIT_USAGE: u8 = 2;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(disable_help_subcommand = true, about = "An Airbyte connector")]
pub struct Cli {
    /// Accepted for compatibility with the Python CDK; ignored (use RUST_LOG).
    #[arg(long, global = true, hide = true)]
    pub debug: bool,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// One protocol command.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Print the connector specification (one SPEC message).
    Spec,
    /// Check that the config can connect (one CONNECTION_STATUS message).
    Check {
        /// Path of the config JSON file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print the catalog of what this connector can read or write.
    Discover {
        /// Path of the config JSON file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Read the configured streams (sources).
    Read {
        /// Path of the config JSON file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Path of the configured catalog JSON file.
        #[arg(long, value_name = "FILE")]
        catalog: PathBuf,
        /// Path of the state JSON file (a list of state messages).
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
    },
    /// Write the messages on stdin (destinations).
    Write {
        /// Path of the config JSON file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Path of the configured catalog JSON file.
        #[arg(long, value_name = "FILE")]
        catalog: PathBuf,
    },
}

impl Command {
    /// The command's name as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Spec => "spec",
            Self::Check { .. } => "check",
            Self::Discover { .. } => "discover",
            Self::Read { .. } => "read",
            Self::Write { .. } => "write",
        }
    }
}

/// Initialises `tracing` to stderr (never stdout, which belongs to the protocol), with the filter
/// from `RUST_LOG` and `info` by default. Does nothing if a subscriber is already set.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_env_filter(filter)
        .with_ansi(io::stderr().is_terminal())
        .try_init();
}

/// Runs the connector with the process's arguments, stdin and stdout. Call from `main`:
/// `fn main() -> ExitCode { airbyte_protocol::cli::run(MyConnector) }`.
pub fn run<C: Connector>(connector: C) -> ExitCode {
    init_tracing();
    let stdin: Box<dyn BufRead + Send> =
        Box::new(BufReader::with_capacity(256 * 1024, io::stdin()));
    let mut out = Output::stdout();
    ExitCode::from(run_with(
        &connector,
        std::env::args_os(),
        stdin,
        &mut out,
        &SystemClock,
    ))
}

/// [`run`] with explicit arguments (the first is the program name), input, output and clock;
/// returns the exit code. Used by tests.
pub fn run_with<C, I, T>(
    connector: &C,
    args: I,
    stdin: Box<dyn BufRead + Send>,
    out: &mut Output,
    clock: &dyn Clock,
) -> u8
where
    C: Connector,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err, out, clock),
    };
    let mut edge = Edge {
        out,
        clock,
        secrets: Secrets::default(),
    };
    let code = match edge.execute(connector, cli.command, stdin) {
        Ok(code) => code,
        Err(err) => edge.report(&err),
    };
    match edge.out.flush() {
        Ok(()) => code,
        Err(err) if err.is_broken_pipe() => {
            tracing::debug!("stdout closed by its reader");
            EXIT_FAILURE
        }
        Err(err) => {
            tracing::error!("{err}");
            EXIT_FAILURE
        }
    }
}

/// `--help` prints help (the only non-protocol stdout output, asked for by a human); any other
/// argument error is a TRACE error plus clap's explanation on stderr.
fn usage_error(err: &clap::Error, out: &mut Output, clock: &dyn Clock) -> u8 {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = err.print();
        return 0;
    }
    let rendered = err.render().to_string();
    let _ = writeln!(io::stderr(), "{rendered}");
    // clap's first paragraph ("error: ...", possibly over several lines), before "Usage:".
    let summary = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("Usage:"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    let summary = if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        "no command given (expected spec, check, discover, read or write)"
    } else {
        summary.trim_start_matches("error: ")
    };
    let message = AirbyteMessage::trace_error(
        FailureType::SystemError,
        format!("invalid command line: {summary}"),
        Some(rendered),
        None,
        clock,
    );
    let _ = out.write(&message);
    let _ = out.flush();
    EXIT_USAGE
}

/// State of one command run: where messages go and what to scrub from them.
struct Edge<'a> {
    out: &'a mut Output,
    clock: &'a dyn Clock,
    secrets: Secrets,
}

impl Edge<'_> {
    fn execute<C: Connector>(
        &mut self,
        connector: &C,
        command: Command,
        stdin: Box<dyn BufRead + Send>,
    ) -> Result<u8, ConnectorError> {
        let name = command.name();
        let config_path = match &command {
            Command::Spec => {
                let spec = connector.spec()?;
                self.out.write(&AirbyteMessage::spec(spec))?;
                return Ok(0);
            }
            Command::Check { config }
            | Command::Discover { config }
            | Command::Read { config, .. }
            | Command::Write { config, .. } => config.clone(),
        };
        let config = files::load_config(&config_path).map_err(file_error)?;
        let spec = connector.spec()?;
        self.secrets = Secrets::from_spec(
            &spec.connection_specification,
            &Value::Object(config.clone()),
        );
        tracing::info!(command = name, "starting");

        match command {
            Command::Spec => Ok(0),
            Command::Check { .. } => {
                let out = &mut *self.out;
                match block_on(connector.check(out, config))? {
                    Ok(mut status) => {
                        status.message =
                            status.message.map(|m| self.secrets.redact(&m).into_owned());
                        self.out.write(&status.into())?;
                        Ok(0)
                    }
                    Err(err) if err.failure_type() == FailureType::ConfigError => {
                        tracing::warn!(
                            "check failed: {}",
                            self.secrets.redact(&err.internal_message())
                        );
                        let message = self.secrets.redact(err.message()).into_owned();
                        self.out.write(&AirbyteMessage::connection_status(
                            ConnectionStatus::Failed,
                            Some(message),
                        ))?;
                        Ok(0)
                    }
                    Err(err) => Err(err),
                }
            }
            Command::Discover { .. } => {
                block_on(connector.discover(self.out, config))??;
                Ok(0)
            }
            Command::Read { catalog, state, .. } => {
                let catalog = files::load_catalog(&catalog).map_err(file_error)?;
                let state = match state {
                    Some(path) => files::load_state(&path).map_err(file_error)?,
                    None => InputState::default(),
                };
                block_on(connector.read(self.out, config, catalog, state))??;
                Ok(0)
            }
            Command::Write { catalog, .. } => {
                let catalog = files::load_catalog(&catalog).map_err(file_error)?;
                let input: Input = MessageReader::new(stdin);
                block_on(connector.write(self.out, config, catalog, input))??;
                Ok(0)
            }
        }
    }

    /// Writes the one TRACE error for `err` and returns the exit code.
    fn report(&mut self, err: &ConnectorError) -> u8 {
        if err.is_broken_pipe() {
            tracing::debug!("stdout closed by its reader");
            return EXIT_FAILURE;
        }
        let message = self.secrets.redact(err.message()).into_owned();
        let internal = self.secrets.redact(&err.internal_message()).into_owned();
        tracing::error!(failure_type = ?err.failure_type(), "{internal}");
        let trace = AirbyteMessage::trace_error(
            err.failure_type(),
            message,
            Some(internal),
            err.stream().cloned(),
            self.clock,
        );
        if let Err(write_err) = self.out.write(&trace)
            && !write_err.is_broken_pipe()
        {
            tracing::error!("could not report the error on stdout: {write_err}");
        }
        EXIT_FAILURE
    }
}

/// A file problem is the runner's or the user's to fix: a config error.
fn file_error(err: FileError) -> ConnectorError {
    ConnectorError::from(err)
}

/// Runs `future` to completion on a multi-threaded tokio runtime; a panic inside becomes a
/// system error (the panic message itself already went to stderr through the panic hook).
fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, ConnectorError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| ConnectorError::system("could not start the async runtime").with_source(e))?;
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| runtime.block_on(future)));
    // Tasks the connector left behind are abandoned rather than waited for.
    runtime.shutdown_background();
    result.map_err(|payload| {
        let detail = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        ConnectorError::system("the connector crashed (internal error)")
            .with_source(io::Error::other(format!("panic: {detail}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JsonObject;
    use crate::clock::FixedClock;
    use crate::connector::ResultExt;
    use crate::types::{AirbyteConnectionStatus, ConfiguredAirbyteCatalog, ConnectorSpecification};
    use serde_json::json;
    use std::io::Cursor;
    use std::sync::{Arc, Mutex};

    /// A connector whose behaviour is picked by the config's `mode` key.
    struct Fake;

    const SECRET: &str = "hunter2-very-secret";

    impl Connector for Fake {
        fn spec(&self) -> Result<ConnectorSpecification, ConnectorError> {
            Ok(serde_json::from_value(json!({
                "connectionSpecification": {"type": "object", "properties": {
                    "mode": {"type": "string"},
                    "password": {"type": "string", "airbyte_secret": true}
                }}
            }))
            .unwrap())
        }

        async fn check(
            &self,
            _out: &mut Output,
            config: JsonObject,
        ) -> Result<AirbyteConnectionStatus, ConnectorError> {
            match config.get("mode").and_then(Value::as_str) {
                Some("ok") => Ok(AirbyteConnectionStatus {
                    status: ConnectionStatus::Succeeded,
                    message: Some(format!("logged in with {SECRET}")),
                    extra: JsonObject::new(),
                }),
                Some("bad-password") => Err(ConnectorError::config(format!(
                    "password {SECRET} was rejected"
                ))),
                _ => Err(ConnectorError::not_implemented("check")),
            }
        }

        async fn read(
            &self,
            out: &mut Output,
            config: JsonObject,
            catalog: ConfiguredAirbyteCatalog,
            state: InputState,
        ) -> Result<(), ConnectorError> {
            match config.get("mode").and_then(Value::as_str) {
                Some("panic") => panic!("bug in the connector"),
                Some("transient") => Err(io::Error::other(format!("503 for {SECRET}")))
                    .transient_error("Salesforce is unavailable"),
                _ => {
                    let mut data = JsonObject::new();
                    data.insert("streams".into(), json!(catalog.streams.len()));
                    data.insert("states".into(), json!(state.messages().len()));
                    out.write(&AirbyteMessage::record("echo", None, data, &FixedClock(1)))?;
                    Ok(())
                }
            }
        }

        async fn write(
            &self,
            out: &mut Output,
            _config: JsonObject,
            _catalog: ConfiguredAirbyteCatalog,
            input: Input,
        ) -> Result<(), ConnectorError> {
            for message in input {
                let message = message.config_error("bad input")?;
                if let AirbyteMessage::State { .. } = message {
                    out.write(&message)?;
                    out.checkpoint()?;
                }
            }
            Ok(())
        }
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Run {
        code: u8,
        messages: Vec<Value>,
    }

    impl Run {
        fn only(&self, message_type: &str) -> &Value {
            assert_eq!(self.messages.len(), 1, "{:#?}", self.messages);
            assert_eq!(
                self.messages[0]["type"], message_type,
                "{:#?}",
                self.messages
            );
            &self.messages[0]
        }
    }

    fn run(args: &[&str], stdin: &str) -> Run {
        let captured = Captured::default();
        let mut out: Output = MessageWriter::new(Box::new(captured.clone()));
        let args = std::iter::once("connector").chain(args.iter().copied());
        let stdin: Box<dyn BufRead + Send> = Box::new(Cursor::new(stdin.as_bytes().to_vec()));
        let code = run_with(&Fake, args, stdin, &mut out, &FixedClock(5));
        drop(out);
        let bytes = captured.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        let messages = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        Run { code, messages }
    }

    use crate::writer::MessageWriter;

    fn file(v: &Value) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), v.to_string()).unwrap();
        f
    }

    fn catalog() -> Value {
        json!({"streams": [{"stream": {"name": "A", "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
                            "sync_mode": "full_refresh", "destination_sync_mode": "append"}]})
    }

    fn path(f: &tempfile::NamedTempFile) -> &str {
        f.path().to_str().unwrap()
    }

    #[test]
    fn spec_prints_one_spec() {
        let r = run(&["spec"], "");
        assert_eq!(r.code, 0);
        let spec = r.only("SPEC");
        assert_eq!(spec["spec"]["connectionSpecification"]["type"], "object");
        // --debug is accepted before or after the command.
        assert_eq!(run(&["--debug", "spec"], "").code, 0);
        assert_eq!(run(&["spec", "--debug"], "").code, 0);
    }

    #[test]
    fn missing_config_is_one_config_error_naming_the_file() {
        let r = run(&["check", "--config", "/nonexistent/cfg.json"], "");
        assert_eq!(r.code, 1);
        let error = &r.only("TRACE")["trace"]["error"];
        assert_eq!(error["failure_type"], "config_error");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("--config") && message.contains("/nonexistent/cfg.json"));
        assert!(message.contains("not found"), "{message}");
    }

    #[test]
    fn check_success_and_config_failure_are_connection_statuses() {
        let config = file(&json!({"mode": "ok", "password": SECRET}));
        let r = run(&["check", "--config", path(&config)], "");
        assert_eq!(r.code, 0);
        let status = &r.only("CONNECTION_STATUS")["connectionStatus"];
        assert_eq!(status["status"], "SUCCEEDED");
        assert_eq!(status["message"], "logged in with **********");

        let config = file(&json!({"mode": "bad-password", "password": SECRET}));
        let r = run(&["check", "--config", path(&config)], "");
        assert_eq!(r.code, 0);
        let status = &r.only("CONNECTION_STATUS")["connectionStatus"];
        assert_eq!(status["status"], "FAILED");
        assert_eq!(status["message"], "password ********** was rejected");
    }

    #[test]
    fn not_implemented_is_a_system_error() {
        let config = file(&json!({"mode": "other"}));
        let r = run(&["check", "--config", path(&config)], "");
        assert_eq!(r.code, 1);
        let error = &r.only("TRACE")["trace"]["error"];
        assert_eq!(error["failure_type"], "system_error");
        assert_eq!(
            error["message"],
            "check is not implemented yet in this build"
        );
        // The default body of an unoffered command says so.
        let r = run(&["discover", "--config", path(&config)], "");
        assert_eq!(r.code, 1);
        assert_eq!(
            r.only("TRACE")["trace"]["error"]["message"],
            "this connector does not support the `discover` command"
        );
    }

    #[test]
    fn read_passes_catalog_and_state() {
        let config = file(&json!({"mode": "ok"}));
        let catalog = file(&catalog());
        let state =
            file(&json!([{"type": "STREAM", "stream": {"stream_descriptor": {"name": "A"}}}]));
        let r = run(
            &[
                "read",
                "--config",
                path(&config),
                "--catalog",
                path(&catalog),
                "--state",
                path(&state),
            ],
            "",
        );
        assert_eq!(r.code, 0, "{:?}", r.messages);
        let record = &r.only("RECORD")["record"];
        assert_eq!(record["data"], json!({"streams": 1, "states": 1}));
        let r = run(
            &[
                "read",
                "--config",
                path(&config),
                "--catalog",
                path(&catalog),
            ],
            "",
        );
        assert_eq!(r.only("RECORD")["record"]["data"]["states"], 0);
    }

    #[test]
    fn bad_catalog_and_state_are_config_errors() {
        let config = file(&json!({"mode": "ok"}));
        let bad = file(&json!({"streams": [{"stream": {"name": "A"}}]}));
        let r = run(
            &["read", "--config", path(&config), "--catalog", path(&bad)],
            "",
        );
        assert_eq!(r.code, 1);
        let error = &r.only("TRACE")["trace"]["error"];
        assert_eq!(error["failure_type"], "config_error");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("--catalog") && message.contains(path(&bad)),
            "{message}"
        );

        let catalog = file(&catalog());
        let state = file(&json!("x"));
        let r = run(
            &[
                "read",
                "--config",
                path(&config),
                "--catalog",
                path(&catalog),
                "--state",
                path(&state),
            ],
            "",
        );
        assert_eq!(r.code, 1);
        let message = r.only("TRACE")["trace"]["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            message.contains("--state") && message.contains(path(&state)),
            "{message}"
        );
    }

    #[test]
    fn connector_errors_become_one_scrubbed_trace() {
        let config = file(&json!({"mode": "transient", "password": SECRET}));
        let catalog = file(&catalog());
        let r = run(
            &[
                "read",
                "--config",
                path(&config),
                "--catalog",
                path(&catalog),
            ],
            "",
        );
        assert_eq!(r.code, 1);
        let trace = &r.only("TRACE")["trace"];
        assert_eq!(trace["emitted_at"], json!(5.0));
        let error = &trace["error"];
        assert_eq!(error["failure_type"], "transient_error");
        assert_eq!(error["message"], "Salesforce is unavailable");
        assert_eq!(
            error["internal_message"],
            "Salesforce is unavailable: 503 for **********"
        );
    }

    #[test]
    fn panics_become_a_system_error() {
        let config = file(&json!({"mode": "panic"}));
        let catalog = file(&catalog());
        let r = run(
            &[
                "read",
                "--config",
                path(&config),
                "--catalog",
                path(&catalog),
            ],
            "",
        );
        assert_eq!(r.code, 1);
        let error = &r.only("TRACE")["trace"]["error"];
        assert_eq!(error["failure_type"], "system_error");
        assert!(
            error["internal_message"]
                .as_str()
                .unwrap()
                .contains("bug in the connector"),
            "{error}"
        );
    }

    #[test]
    fn write_reads_stdin_messages() {
        let config = file(&json!({}));
        let catalog = file(&catalog());
        let stdin = concat!(
            r#"{"type":"RECORD","record":{"stream":"A","data":{},"emitted_at":1}}"#,
            "\n\n",
            r#"{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":{"name":"A"}},"id":3}}"#,
            "\n"
        );
        let r = run(
            &[
                "write",
                "--config",
                path(&config),
                "--catalog",
                path(&catalog),
            ],
            stdin,
        );
        assert_eq!(r.code, 0);
        assert_eq!(r.only("STATE")["state"]["id"], json!(3));

        let r = run(
            &[
                "write",
                "--config",
                path(&config),
                "--catalog",
                path(&catalog),
            ],
            "{\"type\":\"RECORD\"\n",
        );
        assert_eq!(r.code, 1);
        let error = &r.only("TRACE")["trace"]["error"];
        assert_eq!(error["message"], "bad input");
        assert!(
            error["internal_message"]
                .as_str()
                .unwrap()
                .contains("input line 1"),
            "{error}"
        );
    }

    #[test]
    fn usage_errors_are_reported() {
        let r = run(&["read", "--config", "x"], "");
        assert_eq!(r.code, EXIT_USAGE);
        let message = r.only("TRACE")["trace"]["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            message.starts_with("invalid command line:") && message.contains("--catalog"),
            "{message}"
        );
        assert_eq!(run(&["frobnicate"], "").code, EXIT_USAGE);
        let r = run(&[], "");
        assert_eq!(r.code, EXIT_USAGE);
        assert_eq!(
            r.only("TRACE")["trace"]["error"]["message"],
            "invalid command line: no command given (expected spec, check, discover, read or write)"
        );
    }

    #[test]
    fn broken_stdout_exits_quietly() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            }
            fn flush(&mut self) -> io::Result<()> {
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            }
        }
        let mut out: Output = MessageWriter::new(Box::new(Closed));
        let stdin: Box<dyn BufRead + Send> = Box::new(Cursor::new(Vec::new()));
        let code = run_with(&Fake, ["c", "spec"], stdin, &mut out, &FixedClock(1));
        assert_eq!(code, EXIT_FAILURE);
    }
}
