//! Loading the files the runner passes: `--config`, `--catalog` and `--state`.
//!
//! The paths are arbitrary (PyAirbyte uses `.txt` temp files), so the extension means nothing.
//! Every failure is a [`FileError`] naming the argument, the path and the problem
//! ("not found", "line 3 column 5: expected value", "must be a JSON object, found an array"); the
//! CLI edge turns it into one `config_error` TRACE. Messages never quote file content, so a
//! malformed config cannot leak a secret through them.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::JsonObject;
use crate::serde_util::{json_kind, serde_message};
use crate::types::{AirbyteStateMessage, ConfiguredAirbyteCatalog, StreamDescriptor};

/// Which command-line argument a file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileArg {
    /// `--config`
    Config,
    /// `--catalog`
    Catalog,
    /// `--state`
    State,
}

impl fmt::Display for FileArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Config => "--config",
            Self::Catalog => "--catalog",
            Self::State => "--state",
        })
    }
}

/// A file argument that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("could not read the {arg} file `{}`: {}", path.display(), io_problem(source))]
    Read {
        /// Which argument.
        arg: FileArg,
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is not valid JSON, or not of the expected shape.
    #[error("the {arg} file `{}` is invalid: {problem}", path.display())]
    Invalid {
        /// Which argument.
        arg: FileArg,
        /// The path given.
        path: PathBuf,
        /// What is wrong, with the position or JSON path when known.
        problem: String,
    },
}

impl FileError {
    /// Which argument the file came from.
    pub fn arg(&self) -> FileArg {
        match self {
            Self::Read { arg, .. } | Self::Invalid { arg, .. } => *arg,
        }
    }

    /// The path of the file.
    pub fn path(&self) -> &Path {
        match self {
            Self::Read { path, .. } | Self::Invalid { path, .. } => path,
        }
    }
}

/// Short wording of common I/O failures.
fn io_problem(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::NotFound => "not found".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        io::ErrorKind::IsADirectory => "is a directory".to_owned(),
        _ => err.to_string(),
    }
}

/// The `--state` input of `read`.
#[derive(Debug, Clone, PartialEq)]
pub enum InputState {
    /// A list of state messages; empty when there is no state (`[]`, `null`, no `--state`).
    Messages(Vec<AirbyteStateMessage>),
    /// A pre-list state object (the deprecated LEGACY format).
    Legacy(JsonObject),
}

impl Default for InputState {
    fn default() -> Self {
        Self::Messages(Vec::new())
    }
}

impl InputState {
    /// Whether there is no state at all.
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Messages(messages) => messages.is_empty(),
            Self::Legacy(object) => object.is_empty(),
        }
    }

    /// The state messages (none for a legacy state).
    pub fn messages(&self) -> &[AirbyteStateMessage] {
        match self {
            Self::Messages(messages) => messages,
            Self::Legacy(_) => &[],
        }
    }

    /// The saved state of one stream, from a STREAM message or a GLOBAL message's per-stream
    /// states (the last one wins). An absent namespace and `""` are the same, as on the platform.
    /// `None` for a legacy state, an unknown stream, or a stream whose state was reset (`null`).
    pub fn stream_state(&self, stream: &StreamDescriptor) -> Option<&Value> {
        let same = |d: &StreamDescriptor| {
            d.name == stream.name
                && d.namespace.as_deref().unwrap_or("") == stream.namespace.as_deref().unwrap_or("")
        };
        let mut found = None;
        for message in self.messages() {
            let per_stream = message.stream.iter().chain(
                message
                    .global
                    .iter()
                    .flat_map(|global| global.stream_states.iter()),
            );
            for state in per_stream {
                if same(&state.stream_descriptor) {
                    found = state.stream_state.as_ref();
                }
            }
        }
        found
    }
}

fn read(arg: FileArg, path: &Path) -> Result<Vec<u8>, FileError> {
    std::fs::read(path).map_err(|source| FileError::Read {
        arg,
        path: path.to_owned(),
        source,
    })
}

fn invalid(arg: FileArg, path: &Path, problem: impl Into<String>) -> FileError {
    FileError::Invalid {
        arg,
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// Parses `bytes` as `T`, describing a failure as "line L column C: path: problem".
fn parse<T: DeserializeOwned>(arg: FileArg, path: &Path, bytes: &[u8]) -> Result<T, FileError> {
    let describe = |location: String, err: &serde_json::Error| {
        let problem = serde_message(err);
        // The JSON path helps for shape errors; for syntax errors the position says it all.
        let problem = if !err.is_data() || location.is_empty() || location == "." {
            problem
        } else {
            format!("{location}: {problem}")
        };
        invalid(
            arg,
            path,
            format!("line {} column {}: {problem}", err.line(), err.column()),
        )
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de)
        .map_err(|err| describe(err.path().to_string(), err.inner()))?;
    de.end().map_err(|err| describe(String::new(), &err))?;
    Ok(value)
}

/// Loads `--config`: any JSON object.
pub fn load_config(path: &Path) -> Result<JsonObject, FileError> {
    let arg = FileArg::Config;
    match parse::<Value>(arg, path, &read(arg, path)?)? {
        Value::Object(config) => Ok(config),
        other => Err(invalid(
            arg,
            path,
            format!(
                "the config must be a JSON object, found {}",
                json_kind(&other)
            ),
        )),
    }
}

/// Loads `--catalog`: a `ConfiguredAirbyteCatalog`.
pub fn load_catalog(path: &Path) -> Result<ConfiguredAirbyteCatalog, FileError> {
    let arg = FileArg::Catalog;
    let bytes = read(arg, path)?;
    // Check the top-level shape first for a clearer message than serde's "expected struct".
    let value: Value = parse(arg, path, &bytes)?;
    if !value.is_object() {
        return Err(invalid(
            arg,
            path,
            format!(
                "a configured catalog must be a JSON object with `streams`, found {}",
                json_kind(&value)
            ),
        ));
    }
    parse(arg, path, &bytes)
}

/// Loads `--state`: `[]`, a list of state objects (or of STATE envelopes), `null`, or a legacy
/// state object.
pub fn load_state(path: &Path) -> Result<InputState, FileError> {
    let arg = FileArg::State;
    let bytes = read(arg, path)?;
    match parse::<Value>(arg, path, &bytes)? {
        Value::Null => Ok(InputState::default()),
        Value::Object(object) => Ok(InputState::Legacy(object)),
        Value::Array(items) => {
            let mut messages = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                let item = unwrap_envelope(item);
                if !item.is_object() {
                    return Err(invalid(
                        arg,
                        path,
                        format!(
                            "[{index}]: a state must be a JSON object, found {}",
                            json_kind(&item)
                        ),
                    ));
                }
                let message = serde_path_to_error::deserialize::<_, AirbyteStateMessage>(item)
                    .map_err(|err| {
                        let location = err.path().to_string();
                        let problem = err.into_inner().to_string();
                        let location = if location == "." {
                            String::new()
                        } else {
                            format!(".{location}")
                        };
                        invalid(arg, path, format!("[{index}]{location}: {problem}"))
                    })?;
                messages.push(message);
            }
            Ok(InputState::Messages(messages))
        }
        other => Err(invalid(
            arg,
            path,
            format!(
                "the state must be a JSON array of state messages or a legacy state object, found {}",
                json_kind(&other)
            ),
        )),
    }
}

/// `{"type": "STATE", "state": {...}}` becomes `{...}`; anything else is returned as is.
fn unwrap_envelope(item: Value) -> Value {
    match item {
        Value::Object(mut object)
            if object.get("type").and_then(Value::as_str) == Some("STATE")
                && object.get("state").is_some_and(Value::is_object) =>
        {
            object.remove("state").unwrap_or_default()
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{StateType, SyncMode};
    use std::io::Write;

    fn file(content: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".txt").tempfile().unwrap();
        f.write_all(content.as_bytes()).unwrap();
        f
    }

    #[test]
    fn config_must_be_an_object() {
        let f = file(r#"{"client_id": "x"}"#);
        assert_eq!(load_config(f.path()).unwrap()["client_id"], "x");

        let f = file("[1, 2]");
        let err = load_config(f.path()).unwrap_err().to_string();
        assert!(err.contains("--config"), "{err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");
        assert!(
            err.contains("must be a JSON object, found an array"),
            "{err}"
        );
    }

    #[test]
    fn invalid_json_names_line_and_column() {
        let f = file("{\n  \"a\": 1,\n  \"b\": ,\n}");
        let err = load_config(f.path()).unwrap_err().to_string();
        assert!(err.contains("line 3 column 8: expected value"), "{err}");
        let f = file(r#"{"a": "secret-value" "#);
        let err = load_config(f.path()).unwrap_err().to_string();
        assert!(!err.contains("secret-value"), "{err}");
        let f = file("{} {}");
        let err = load_config(f.path()).unwrap_err().to_string();
        assert!(err.contains("trailing characters"), "{err}");
    }

    #[test]
    fn missing_file_says_not_found() {
        let err = load_config(Path::new("/nonexistent/dir/config.json")).unwrap_err();
        assert_eq!(err.arg(), FileArg::Config);
        assert_eq!(
            err.to_string(),
            "could not read the --config file `/nonexistent/dir/config.json`: not found"
        );
        let dir = tempfile::tempdir().unwrap();
        let err = load_catalog(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("--catalog") && err.contains("is a directory"),
            "{err}"
        );
    }

    #[test]
    fn catalog_errors_name_the_json_path() {
        let f = file(
            r#"{"streams": [{"stream": {"name": "Account", "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
                "sync_mode": "sideways", "destination_sync_mode": "append"}]}"#,
        );
        let err = load_catalog(f.path()).unwrap_err().to_string();
        assert!(
            err.contains("streams[0].sync_mode: unknown variant `sideways`"),
            "{err}"
        );
        assert!(err.contains("line 2 column"), "{err}");

        let f = file("[]");
        let err = load_catalog(f.path()).unwrap_err().to_string();
        assert!(err.contains("found an array"), "{err}");
    }

    #[test]
    fn catalog_accepts_nulls_and_defaults() {
        let f = file(
            r#"{"streams": [{"stream": {"name": "Account", "json_schema": {"type": "object"},
                "supported_sync_modes": ["full_refresh", "incremental"], "namespace": null,
                "source_defined_cursor": null},
                "sync_mode": null, "destination_sync_mode": null, "cursor_field": null,
                "generation_id": 1, "minimum_generation_id": null}]}"#,
        );
        let catalog = load_catalog(f.path()).unwrap();
        let stream = &catalog.streams[0];
        assert_eq!(stream.sync_mode, SyncMode::FullRefresh);
        assert_eq!(stream.generation_id, Some(1));
        assert_eq!(stream.stream.namespace, None);
    }

    #[test]
    fn state_shapes() {
        assert_eq!(
            load_state(file("[]").path()).unwrap(),
            InputState::default()
        );
        assert_eq!(
            load_state(file("null").path()).unwrap(),
            InputState::default()
        );
        let legacy = load_state(file(r#"{"Account": {"cursor": "x"}}"#).path()).unwrap();
        assert!(matches!(legacy, InputState::Legacy(ref o) if o.contains_key("Account")));

        // PyAirbyte's shape: explicit nulls and `global_` (twice).
        let f = file(
            r#"[{"type":"STREAM","stream":{"stream_descriptor":{"name":"Account","namespace":null},
                "stream_state":{"SystemModstamp":"2024-01-01T00:00:00Z"}},"global_":null,"data":null,
                "sourceStats":{"recordCount":3.0},"destinationStats":null,"global_":null},
               {"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":{"name":"Lead"}}}}]"#,
        );
        let state = load_state(f.path()).unwrap();
        let messages = state.messages();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].state_type, Some(StateType::Stream));
        assert!(messages[0].extra.is_empty(), "{:?}", messages[0].extra);
        assert_eq!(
            messages[1].stream.as_ref().unwrap().stream_descriptor.name,
            "Lead"
        );
    }

    #[test]
    fn stream_state_lookup() {
        let f = file(
            r#"[{"type":"STREAM","stream":{"stream_descriptor":{"name":"A","namespace":""},"stream_state":{"c":1}}},
               {"type":"GLOBAL","global":{"shared_state":{},"stream_states":[
                   {"stream_descriptor":{"name":"B"},"stream_state":{"c":2}}]}},
               {"type":"STREAM","stream":{"stream_descriptor":{"name":"A"},"stream_state":{"c":3}}},
               {"type":"STREAM","stream":{"stream_descriptor":{"name":"R"},"stream_state":null}}]"#,
        );
        let state = load_state(f.path()).unwrap();
        let get = |name: &str| {
            state
                .stream_state(&StreamDescriptor::new(name, None))
                .cloned()
        };
        assert_eq!(get("A"), Some(serde_json::json!({"c": 3})));
        assert_eq!(get("B"), Some(serde_json::json!({"c": 2})));
        assert_eq!(get("R"), None);
        assert_eq!(get("Z"), None);
        let other_ns = StreamDescriptor::new("A", Some("x".into()));
        assert_eq!(state.stream_state(&other_ns), None);
    }

    #[test]
    fn bad_state_is_explained() {
        let err = load_state(file(r#""yesterday""#).path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--state") && err.contains("found a string"),
            "{err}"
        );
        let err = load_state(file("[1]").path()).unwrap_err().to_string();
        assert!(
            err.contains("[0]: a state must be a JSON object, found a number"),
            "{err}"
        );
        let err = load_state(file(r#"[{"type":"STREAM","stream":{"stream_state":{}}}]"#).path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[0].stream: missing field `stream_descriptor`"),
            "{err}"
        );
    }
}
