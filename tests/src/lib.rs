//! `testkit`: shared helpers for tests that run the connector binaries as black boxes.
//!
//! The major pieces:
//!
//! - [`run_connector`] / [`run_connector_with_env`] spawn a connector binary, feed it stdin, wait for
//!   it (with a watchdog), and return a [`Run`] holding the exit status, the raw stdout/stderr and
//!   every stdout line parsed as JSON. Every stdout line must be an Airbyte message envelope (a JSON
//!   object with a string `"type"`); anything else fails the calling test, because the Airbyte
//!   platform would silently treat such a line as a log line and hide the bug.
//! - Capture: every stdout line of every run is also appended to a file in the capture directory
//!   (`AIRBYTE_PROTOCOL_CAPTURE_DIR`, default `<workspace>/target/protocol-capture/`), one file per
//!   run. `scripts/test` validates those files against the Airbyte protocol JSON schema afterwards
//!   (`tools/protocol/validate_messages.py`), so every test that runs a connector also checks the
//!   wire format of what it printed.
//! - [`workspace_bin`] finds a workspace binary (`target/<profile>/<name>`) from the path of the
//!   running test executable, for tests in packages that cannot use `CARGO_BIN_EXE_<name>`.
//! - [`json_file`] writes a JSON value to a temp file (configs, catalogs, states).
//! - [`cli_edge`]: the command-line edge cases both connectors share, expanded into each connector's
//!   tests by [`cli_edge_tests!`].

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod cli_edge;

/// Environment variable naming the directory that receives a copy of every connector stdout line.
pub const CAPTURE_DIR_ENV: &str = "AIRBYTE_PROTOCOL_CAPTURE_DIR";

/// Environment variable overriding how long [`run_connector`] waits before killing a connector
/// (whole seconds; default [`DEFAULT_TIMEOUT`]).
pub const TIMEOUT_ENV: &str = "TESTKIT_CONNECTOR_TIMEOUT_SECS";

/// How long a connector run may take before the watchdog kills it and fails the test.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The outcome of one connector run.
#[derive(Debug)]
pub struct Run {
    /// Exit status of the connector process.
    pub status: ExitStatus,
    /// Everything the connector wrote to stdout (lossily decoded as UTF-8).
    pub stdout: String,
    /// Everything the connector wrote to stderr (lossily decoded as UTF-8).
    pub stderr: String,
    /// Every stdout line, parsed; each is a JSON object with a string `"type"`.
    pub messages: Vec<Value>,
}

impl Run {
    /// The messages whose envelope `"type"` equals `t` (e.g. `"RECORD"`, `"STATE"`, `"TRACE"`), in
    /// output order.
    pub fn of_type(&self, t: &str) -> Vec<&Value> {
        self.messages
            .iter()
            .filter(|m| m.get("type").and_then(Value::as_str) == Some(t))
            .collect()
    }

    /// The exit code, or `None` when the process was ended by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs a connector binary with `args` and optional stdin bytes, and waits for it.
///
/// Panics (failing the test) when the binary cannot be started, when it runs longer than the
/// watchdog allows, or when any stdout line is not a JSON object with a string `"type"`, or when
/// non-empty stdout does not end with a newline. Before those checks, every stdout line is appended
/// to a new file in the capture directory (see the crate docs).
pub fn run_connector(bin: &Path, args: &[&str], stdin: Option<&[u8]>) -> Run {
    run_connector_with_env(bin, args, stdin, &[])
}

/// Like [`run_connector`], with extra environment variables set for the child process.
pub fn run_connector_with_env(
    bin: &Path,
    args: &[&str],
    stdin: Option<&[u8]>,
    env: &[(&str, &str)],
) -> Run {
    run_inner(bin, args, stdin, env, &capture_dir())
}

fn run_inner(
    bin: &Path,
    args: &[&str],
    stdin: Option<&[u8]>,
    env: &[(&str, &str)],
    capture_to: &Path,
) -> Run {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (OsStr::new(k), OsStr::new(v))))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start connector {}: {e}", bin.display()));

    // Feed stdin and drain stdout/stderr on threads so a chatty child never blocks on a full pipe.
    let stdin_thread = match (stdin, child.stdin.take()) {
        (Some(bytes), Some(mut pipe)) => {
            let bytes = bytes.to_vec();
            Some(thread::spawn(move || {
                // A connector may exit before reading all input (e.g. after a fatal error);
                // a broken pipe here is its business, not the test harness's.
                let _ = pipe.write_all(&bytes);
            }))
        }
        _ => None,
    };
    let stdout_thread = drain(child.stdout.take());
    let stderr_thread = drain(child.stderr.take());

    let timeout = std::env::var(TIMEOUT_ENV)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "connector {} {:?} still running after {:?}; killed it",
                    bin.display(),
                    args,
                    timeout
                );
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("waiting for connector {}: {e}", bin.display()),
        }
    };
    if let Some(t) = stdin_thread {
        let _ = t.join();
    }
    let stdout_bytes = stdout_thread.join().expect("stdout reader thread panicked");
    let stderr_bytes = stderr_thread.join().expect("stderr reader thread panicked");
    let stdout = String::from_utf8_lossy(&stdout_bytes).into_owned();
    let stderr = String::from_utf8_lossy(&stderr_bytes).into_owned();

    capture(capture_to, &stdout);
    let messages = parse_messages(&stdout).unwrap_or_else(|problem| {
        panic!(
            "connector {} {:?} broke the stdout protocol: {problem}\n--- stderr ---\n{stderr}",
            bin.display(),
            args
        )
    });
    Run {
        status,
        stdout,
        stderr,
        messages,
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// Parses connector stdout into messages, or describes the first line that is not an Airbyte
/// message envelope.
fn parse_messages(stdout: &str) -> Result<Vec<Value>, String> {
    if !stdout.is_empty() && !stdout.ends_with('\n') {
        let last = stdout.rsplit('\n').next().unwrap_or_default();
        return Err(format!(
            "last stdout line is not newline-terminated: {}",
            preview(last)
        ));
    }
    let mut messages = Vec::new();
    for (i, line) in stdout.lines().enumerate() {
        let n = i + 1;
        let value: Value = serde_json::from_str(line)
            .map_err(|e| format!("stdout line {n} is not JSON ({e}): {}", preview(line)))?;
        match value.get("type") {
            Some(Value::String(_)) if value.is_object() => messages.push(value),
            _ => {
                return Err(format!(
                    "stdout line {n} is not a JSON object with a string \"type\": {}",
                    preview(line)
                ));
            }
        }
    }
    Ok(messages)
}

fn preview(line: &str) -> String {
    const MAX: usize = 200;
    if line.len() <= MAX {
        return format!("{line:?}");
    }
    let mut end = MAX;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &line[..end], line.len())
}

/// The directory that receives captured stdout lines.
pub fn capture_dir() -> PathBuf {
    match std::env::var_os(CAPTURE_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("target").join("protocol-capture"),
    }
}

/// The workspace root (the parent of this package's directory).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Appends the stdout of one run to a new capture file. Runs with no stdout produce no file.
fn capture(dir: &Path, stdout: &str) {
    if stdout.is_empty() {
        return;
    }
    fs::create_dir_all(dir)
        .unwrap_or_else(|e| panic!("cannot create capture dir {}: {e}", dir.display()));
    let path = dir.join(capture_file_name(
        thread::current().name(),
        std::process::id(),
        RUN_COUNTER.fetch_add(1, Ordering::Relaxed),
    ));
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open capture file {}: {e}", path.display()));
    file.write_all(stdout.as_bytes())
        .unwrap_or_else(|e| panic!("cannot write capture file {}: {e}", path.display()));
    // Keep the file line-oriented even when the connector forgot the final newline.
    if !stdout.ends_with('\n') {
        file.write_all(b"\n")
            .unwrap_or_else(|e| panic!("cannot write capture file {}: {e}", path.display()));
    }
}

/// `<sanitized thread name>-<pid>-<counter>.jsonl`; the thread name is the test's name under the
/// standard test harness.
fn capture_file_name(thread_name: Option<&str>, pid: u32, counter: u64) -> String {
    let name: String = thread_name
        .unwrap_or("unnamed")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(120)
        .collect();
    format!("{name}-{pid}-{counter}.jsonl")
}

/// Path of a workspace binary, `target/<profile>/<name>`, found from the running test executable
/// (which lives in `target/<profile>/deps/`).
///
/// Panics with a hint when the binary has not been built: tests in a package that does not own
/// the binary rely on a workspace-wide build (`cargo nextest run --workspace`, as `scripts/test`
/// does) having produced it.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("path of the running test executable");
    let profile_dir = exe
        .parent()
        .filter(|p| p.file_name() == Some(OsStr::new("deps")))
        .and_then(Path::parent)
        .or_else(|| exe.parent())
        .expect("test executable has a parent directory");
    let bin = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "workspace binary `{name}` not found at {}; build it first \
         (`cargo build -p <its package>`, or run the whole workspace: `cargo nextest run --workspace`)",
        bin.display()
    );
    bin
}

/// Writes `v` to a new temp file and returns it; the file is deleted when the guard drops.
pub fn json_file(v: &Value) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .prefix("testkit-")
        .suffix(".json")
        .tempfile()
        .expect("create temp file");
    serde_json::to_writer(&mut file, v).expect("write JSON to temp file");
    file.flush().expect("flush temp file");
    file
}

/// The value of an environment variable that a test's external component (an S3 API server, a
/// Python venv) provides. `scripts/test` sets these up; when one is missing the test fails with
/// `how` (the command that provides it) instead of skipping, in CI (`CI=true`) and locally alike.
pub fn require_env(var: &str, how: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            panic!(
                "{var} is not set: {how}{}",
                if ci {
                    " (CI=true: scripts/test must provide it)"
                } else {
                    " (scripts/test does this for you)"
                }
            )
        }
    }
}

/// A stand-in for the workspace binary `name` that runs it unchanged (same arguments, stdin,
/// stderr and exit code) while copying every stdout line into the capture dir, so a connector
/// run driven by another program (PyAirbyte's `local_executable`) is schema-checked like the
/// runs of [`run_connector`]. The script lives in a per-process temp dir.
pub fn capturing_bin(name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = workspace_bin(name);
    let dir = std::env::temp_dir().join(format!("testkit-wrappers-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let capture = capture_dir();
    fs::create_dir_all(&capture)
        .unwrap_or_else(|e| panic!("cannot create capture dir {}: {e}", capture.display()));
    let script = format!(
        "#!/usr/bin/env bash\n\
         # Runs {name}, copying its stdout into the protocol capture dir.\n\
         set -o pipefail\n\
         out={capture}/{name}-wrapped-$$-$RANDOM.jsonl\n\
         {bin} \"$@\" | tee -a \"$out\"\n\
         exit ${{PIPESTATUS[0]}}\n",
        capture = shell_quote(&capture.display().to_string()),
        bin = shell_quote(&bin.display().to_string()),
    );
    // Written aside and renamed into place: another test of this process may be executing the
    // script right now, and writing into a running executable fails (ETXTBSY).
    let path = dir.join(name);
    let staged = dir.join(format!(
        ".{name}-{}",
        RUN_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::write(&staged, script).unwrap_or_else(|e| panic!("cannot write {}: {e}", staged.display()));
    fs::set_permissions(&staged, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", staged.display()));
    fs::rename(&staged, &path)
        .unwrap_or_else(|e| panic!("cannot move {} into place: {e}", path.display()));
    path
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_envelopes_line_by_line() {
        let out = "{\"type\":\"LOG\",\"log\":{\"level\":\"INFO\",\"message\":\"hi\"}}\n{\"type\":\"SPEC\",\"spec\":{}}\n";
        let msgs = parse_messages(out).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1]["type"], "SPEC");
    }

    #[test]
    fn empty_stdout_is_no_messages() {
        assert!(parse_messages("").unwrap().is_empty());
    }

    #[test]
    fn rejects_non_json_line() {
        let err = parse_messages("{\"type\":\"LOG\"}\nstarting up...\n").unwrap_err();
        assert!(err.contains("line 2 is not JSON"), "{err}");
    }

    #[test]
    fn rejects_blank_line() {
        let err = parse_messages("{\"type\":\"LOG\"}\n\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn rejects_object_without_string_type() {
        assert!(parse_messages("{\"record\":{}}\n").is_err());
        assert!(parse_messages("{\"type\":1}\n").is_err());
        assert!(parse_messages("[\"type\"]\n").is_err());
        assert!(parse_messages("\"type\"\n").is_err());
    }

    #[test]
    fn rejects_unterminated_last_line() {
        let err = parse_messages("{\"type\":\"LOG\"}").unwrap_err();
        assert!(err.contains("not newline-terminated"), "{err}");
    }

    #[test]
    fn capture_file_names_are_sanitized_and_unique_per_counter() {
        let a = capture_file_name(Some("spec::source_prints_spec"), 42, 0);
        let b = capture_file_name(Some("spec::source_prints_spec"), 42, 1);
        assert_eq!(a, "spec__source_prints_spec-42-0.jsonl");
        assert_ne!(a, b);
        assert_eq!(capture_file_name(None, 1, 2), "unnamed-1-2.jsonl");
    }

    #[test]
    fn json_file_round_trips() {
        let v = serde_json::json!({"client_id": "x", "n": 7});
        let f = json_file(&v);
        let back: Value = serde_json::from_str(&fs::read_to_string(f.path()).unwrap()).unwrap();
        assert_eq!(back, v);
    }

    fn sh(script: &str, stdin: Option<&[u8]>, dir: &Path) -> Run {
        run_inner(Path::new("/bin/sh"), &["-c", script], stdin, &[], dir)
    }

    #[test]
    fn runs_a_process_and_captures_its_stdout() {
        let dir = tempfile::tempdir().unwrap();
        let run = sh(
            "cat; echo oops >&2; exit 3",
            Some(b"{\"type\":\"LOG\",\"log\":{\"level\":\"INFO\",\"message\":\"a\"}}\n{\"type\":\"STATE\"}\n"),
            dir.path(),
        );
        assert_eq!(run.code(), Some(3));
        assert_eq!(run.stderr, "oops\n");
        assert_eq!(run.messages.len(), 2);
        assert_eq!(run.of_type("STATE").len(), 1);
        assert!(run.of_type("RECORD").is_empty());
        let files: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1);
        let path = files[0].as_ref().unwrap().path();
        assert_eq!(path.extension(), Some(OsStr::new("jsonl")));
        assert_eq!(fs::read_to_string(path).unwrap(), run.stdout);
    }

    #[test]
    fn large_output_and_input_do_not_deadlock() {
        let dir = tempfile::tempdir().unwrap();
        let line = "{\"type\":\"LOG\",\"log\":{\"level\":\"INFO\",\"message\":\"x\"}}\n";
        let input = line.repeat(20_000);
        let run = sh("cat; cat /dev/null >&2", Some(input.as_bytes()), dir.path());
        assert!(run.status.success());
        assert_eq!(run.messages.len(), 20_000);
    }

    #[test]
    fn no_stdout_means_no_capture_file() {
        let dir = tempfile::tempdir().unwrap();
        let run = sh("exit 0", None, dir.path());
        assert!(run.messages.is_empty());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    #[should_panic(expected = "broke the stdout protocol")]
    fn panics_on_non_protocol_stdout() {
        let dir = tempfile::tempdir().unwrap();
        sh("echo hello", None, dir.path());
    }

    #[test]
    fn preview_truncates_on_char_boundary() {
        let long = "é".repeat(300);
        let p = preview(&long);
        assert!(p.contains("(600 bytes)"), "{p}");
    }
}
