//! The [`Connector`] trait the connector binaries implement, and the [`ConnectorError`] they
//! return.
//!
//! The CLI edge ([`crate::cli`]) parses arguments, loads and validates the files, then calls one
//! method. A connector writes its messages through the [`Output`] it is given and returns a
//! [`ConnectorError`] on failure; the edge turns that into exactly one TRACE error (or, for a
//! `config_error` during `check`, a FAILED connection status) and the exit code.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io::BufRead;

use crate::JsonObject;
use crate::codec::MessageReader;
use crate::files::{FileError, InputState};
use crate::types::{
    AirbyteConnectionStatus, ConfiguredAirbyteCatalog, ConnectorSpecification, FailureType,
    StreamDescriptor,
};
use crate::writer::{Output, WriteError};

/// The messages a destination's `write` reads (stdin in production).
pub type Input = MessageReader<Box<dyn BufRead + Send>>;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A failure to report to the platform, classified by who has to act.
///
/// `message` is what the user sees; [`ConnectorError::internal_message`] (the message followed by
/// the chain of causes) goes to `internal_message`. The edge scrubs secrets from both.
#[derive(Debug)]
pub struct ConnectorError {
    failure_type: FailureType,
    message: String,
    stream: Option<StreamDescriptor>,
    source: Option<BoxError>,
}

impl ConnectorError {
    /// An error with an explicit classification.
    pub fn new(failure_type: FailureType, message: impl Into<String>) -> Self {
        Self {
            failure_type,
            message: message.into(),
            stream: None,
            source: None,
        }
    }

    /// The user must fix the configuration (bad credentials, missing permission, bad option).
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(FailureType::ConfigError, message)
    }

    /// Retrying later may succeed (rate limit, outage).
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(FailureType::TransientError, message)
    }

    /// A bug or unexpected condition on our side.
    pub fn system(message: impl Into<String>) -> Self {
        Self::new(FailureType::SystemError, message)
    }

    /// `<command> is not implemented yet in this build` (a system error).
    pub fn not_implemented(command: &str) -> Self {
        Self::system(format!("{command} is not implemented yet in this build"))
    }

    /// `this connector does not support the <command> command` (a system error).
    pub fn unsupported(command: &str) -> Self {
        Self::system(format!(
            "this connector does not support the `{command}` command"
        ))
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Attaches the stream the error concerns.
    pub fn with_stream(mut self, stream: StreamDescriptor) -> Self {
        self.stream = Some(stream);
        self
    }

    /// Who has to act.
    pub fn failure_type(&self) -> FailureType {
        self.failure_type
    }

    /// The user-facing message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The stream concerned, if any.
    pub fn stream(&self) -> Option<&StreamDescriptor> {
        self.stream.as_ref()
    }

    /// The message followed by every cause, `": "`-separated (repeated texts are skipped).
    pub fn internal_message(&self) -> String {
        let mut out = self.message.clone();
        let mut last = self.message.clone();
        let mut cause: Option<&(dyn StdError + 'static)> = self
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static));
        while let Some(err) = cause {
            let text = err.to_string();
            if text != last && !last.ends_with(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            last = text;
            cause = err.source();
        }
        out
    }

    /// Whether the cause is a closed stdout, which the edge reports by exiting quietly.
    pub fn is_broken_pipe(&self) -> bool {
        let mut cause: Option<&(dyn StdError + 'static)> = self
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static));
        while let Some(err) = cause {
            if err
                .downcast_ref::<WriteError>()
                .is_some_and(WriteError::is_broken_pipe)
            {
                return true;
            }
            cause = err.source();
        }
        false
    }
}

impl fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for ConnectorError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

impl From<WriteError> for ConnectorError {
    fn from(err: WriteError) -> Self {
        Self::system("failed to write protocol messages to stdout").with_source(err)
    }
}

impl From<FileError> for ConnectorError {
    fn from(err: FileError) -> Self {
        Self::config(err.to_string())
    }
}

/// An `anyhow` error becomes a system error whose message is the top-level context.
impl From<anyhow::Error> for ConnectorError {
    fn from(err: anyhow::Error) -> Self {
        let message = err.to_string();
        let source: BoxError = err.into();
        Self::system(message).with_source(source)
    }
}

/// Classifies any error while adding a user-facing message: `call().config_error("...")?`.
pub trait ResultExt<T> {
    /// The user must fix the configuration.
    fn config_error(self, message: impl Into<String>) -> Result<T, ConnectorError>;
    /// Retrying later may succeed.
    fn transient_error(self, message: impl Into<String>) -> Result<T, ConnectorError>;
    /// A bug or unexpected condition on our side.
    fn system_error(self, message: impl Into<String>) -> Result<T, ConnectorError>;
}

impl<T, E: Into<BoxError>> ResultExt<T> for Result<T, E> {
    fn config_error(self, message: impl Into<String>) -> Result<T, ConnectorError> {
        self.map_err(|e| ConnectorError::config(message).with_source(e))
    }
    fn transient_error(self, message: impl Into<String>) -> Result<T, ConnectorError> {
        self.map_err(|e| ConnectorError::transient(message).with_source(e))
    }
    fn system_error(self, message: impl Into<String>) -> Result<T, ConnectorError> {
        self.map_err(|e| ConnectorError::system(message).with_source(e))
    }
}

/// What a connector binary implements; [`crate::cli::run`] does the rest.
///
/// Every command receives the validated `--config` object. Commands a connector does not offer
/// keep the default body, which fails with [`ConnectorError::unsupported`].
pub trait Connector {
    /// The specification printed by `spec` (also used to find the config's secrets).
    fn spec(&self) -> Result<ConnectorSpecification, ConnectorError>;

    /// `check --config`: can we connect? A [`FailureType::ConfigError`] error is reported as a
    /// FAILED connection status with exit code 0 (the platform's convention); any other error as
    /// a TRACE error.
    fn check(
        &self,
        out: &mut Output,
        config: JsonObject,
    ) -> impl Future<Output = Result<AirbyteConnectionStatus, ConnectorError>>;

    /// `discover --config`: write one CATALOG (source) or DESTINATION_CATALOG (destination).
    fn discover(
        &self,
        out: &mut Output,
        config: JsonObject,
    ) -> impl Future<Output = Result<(), ConnectorError>> {
        let _ = (out, config);
        async { Err(ConnectorError::unsupported("discover")) }
    }

    /// `read --config --catalog [--state]` (sources).
    fn read(
        &self,
        out: &mut Output,
        config: JsonObject,
        catalog: ConfiguredAirbyteCatalog,
        state: InputState,
    ) -> impl Future<Output = Result<(), ConnectorError>> {
        let _ = (out, config, catalog, state);
        async { Err(ConnectorError::unsupported("read")) }
    }

    /// `write --config --catalog` with messages on stdin (destinations).
    fn write(
        &self,
        out: &mut Output,
        config: JsonObject,
        catalog: ConfiguredAirbyteCatalog,
        input: Input,
    ) -> impl Future<Output = Result<(), ConnectorError>> {
        let _ = (out, config, catalog, input);
        async { Err(ConnectorError::unsupported("write")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connection refused")]
    struct Refused;

    #[derive(Debug, thiserror::Error)]
    #[error("token request failed")]
    struct TokenError(#[source] Refused);

    #[test]
    fn internal_message_is_the_whole_chain() {
        let err: Result<(), _> = Err(TokenError(Refused));
        let err = err
            .transient_error("could not log in to Salesforce")
            .unwrap_err();
        assert_eq!(err.failure_type(), FailureType::TransientError);
        assert_eq!(err.message(), "could not log in to Salesforce");
        assert_eq!(
            err.internal_message(),
            "could not log in to Salesforce: token request failed: connection refused"
        );
    }

    #[test]
    fn anyhow_errors_keep_their_chain_without_repeating() {
        let err = anyhow::Error::new(Refused).context("describe Account");
        let err = ConnectorError::from(err);
        assert_eq!(err.failure_type(), FailureType::SystemError);
        assert_eq!(err.message(), "describe Account");
        assert_eq!(
            err.internal_message(),
            "describe Account: connection refused"
        );
    }

    #[test]
    fn broken_pipe_is_found_in_the_chain() {
        assert!(ConnectorError::from(WriteError::BrokenPipe).is_broken_pipe());
        let io = WriteError::Io(std::io::Error::other("disk full"));
        assert!(!ConnectorError::from(io).is_broken_pipe());
        assert!(!ConnectorError::system("x").is_broken_pipe());
    }
}
