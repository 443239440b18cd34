//! Airbyte protocol 0.18.0 for Rust connectors: wire types, NDJSON framing, the stdout writer and
//! the command-line edge shared by every connector binary.
//!
//! The major components are:
//!
//! - [`types`]: the payload of every message type (RECORD, STATE, LOG, SPEC, CONNECTION_STATUS,
//!   CATALOG, TRACE, CONTROL, DESTINATION_CATALOG) and the configured catalog, mirroring the wire:
//!   optional fields omitted on output and `null`-tolerant on input, unknown fields kept;
//! - [`message`]: the [`AirbyteMessage`] envelope tagged by `type`, with constructors that stamp
//!   `emitted_at` from a [`Clock`] ([`clock`]);
//! - [`codec`]: [`MessageReader`], NDJSON framing of an input stream with line-numbered errors;
//! - [`writer`]: [`MessageWriter`], the one buffered stdout writer (flushed at checkpoints and on
//!   every non-RECORD message), with broken pipes as their own error, and [`RecordFrame`] for
//!   sources that serialise RECORD lines themselves in their hot loop;
//! - [`files`]: loading `--config`, `--catalog` and `--state` with errors that name the file;
//! - [`secrets`]: the config values marked `airbyte_secret`, to scrub them from output;
//! - [`connector`]: the [`Connector`] trait the binaries implement and [`ConnectorError`];
//! - [`cli`]: argument parsing, dispatch, and the one place errors become TRACE messages and
//!   exit codes ([`cli::run`]).

pub mod cli;
pub mod clock;
pub mod codec;
pub mod connector;
pub mod files;
pub mod message;
pub mod secrets;
pub mod types;
pub mod writer;

mod serde_util;

/// A JSON object (keys keep their input order).
pub type JsonObject = serde_json::Map<String, serde_json::Value>;

pub use clock::{Clock, FixedClock, SystemClock};
pub use codec::{CodecError, MessageReader};
pub use connector::{Connector, ConnectorError, Input, ResultExt};
pub use files::{FileArg, FileError, InputState};
pub use message::AirbyteMessage;
pub use secrets::Secrets;
pub use types::*;
pub use writer::{MessageWriter, Output, RecordFrame, WriteError};

/// Any error of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading messages failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Writing messages failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A file argument could not be used.
    #[error(transparent)]
    File(#[from] FileError),
}
