//! NDJSON framing: reading Airbyte messages one line at a time.
//!
//! [`MessageReader`] wraps any [`BufRead`] (a destination's stdin, a file) and yields one
//! [`AirbyteMessage`] per non-blank line. It holds one line in memory at a time, whatever its
//! size, and never the whole input. Errors carry the 1-based line number:
//!
//! - [`CodecError::InvalidJson`]: a complete line (ending in `\n`) that is not a valid message;
//! - [`CodecError::PartialLastLine`]: the input ended in the middle of a line that does not parse,
//!   which usually means the producer died mid-write. A final line without `\n` that does parse is
//!   accepted.
//!
//! Writing is the other half: [`crate::writer::MessageWriter`].

use std::io::{self, BufRead};

use crate::message::AirbyteMessage;
use crate::serde_util::serde_message;

/// Lines longer than this keep their buffer only until the next line; see [`MessageReader`].
const SHRINK_ABOVE: usize = 8 * 1024 * 1024;

/// Errors from [`MessageReader`].
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Reading the input failed.
    #[error("failed to read input line {line}: {source}")]
    Io {
        /// 1-based line being read.
        line: u64,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A complete line that is not a valid Airbyte message.
    #[error("input line {line} is not a valid Airbyte message: {problem} (column {column})")]
    InvalidJson {
        /// 1-based line number.
        line: u64,
        /// 1-based column where parsing failed.
        column: usize,
        /// What serde found wrong (without any position), prefixed with the JSON path if known.
        problem: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The input ended inside a line that does not parse.
    #[error(
        "input ended with a partial last line {line} (no trailing newline) that is not a valid \
         Airbyte message: {problem} (column {column})"
    )]
    PartialLastLine {
        /// 1-based line number.
        line: u64,
        /// 1-based column where parsing failed.
        column: usize,
        /// What serde found wrong.
        problem: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

impl CodecError {
    /// The 1-based line the error is about.
    pub fn line(&self) -> u64 {
        match self {
            Self::Io { line, .. }
            | Self::InvalidJson { line, .. }
            | Self::PartialLastLine { line, .. } => *line,
        }
    }
}

/// Reads newline-delimited Airbyte messages; an [`Iterator`] of `Result<AirbyteMessage, _>`.
///
/// Blank and whitespace-only lines are skipped (they still count for line numbers). After an
/// error the reader continues with the next line, so a caller may choose to skip bad lines; after
/// an I/O error it stops.
#[derive(Debug)]
pub struct MessageReader<R> {
    input: R,
    buf: Vec<u8>,
    line: u64,
    done: bool,
}

impl<R: BufRead> MessageReader<R> {
    /// A reader over `input`.
    pub fn new(input: R) -> Self {
        Self {
            input,
            buf: Vec::with_capacity(64 * 1024),
            line: 0,
            done: false,
        }
    }

    /// Number of lines consumed so far (the line number of the last message or error).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The next message, `None` at end of input.
    pub fn next_message(&mut self) -> Option<Result<AirbyteMessage, CodecError>> {
        loop {
            if self.done {
                return None;
            }
            if self.buf.capacity() > SHRINK_ABOVE {
                self.buf = Vec::with_capacity(64 * 1024);
            }
            self.buf.clear();
            let read = match self.input.read_until(b'\n', &mut self.buf) {
                Ok(n) => n,
                Err(source) if source.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    self.done = true;
                    return Some(Err(CodecError::Io {
                        line: self.line + 1,
                        source,
                    }));
                }
            };
            if read == 0 {
                self.done = true;
                return None;
            }
            self.line += 1;
            let complete = self.buf.last() == Some(&b'\n');
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(self.parse(complete));
        }
    }

    fn parse(&self, complete: bool) -> Result<AirbyteMessage, CodecError> {
        serde_json::from_slice(&self.buf).map_err(|source| {
            let problem = describe(&self.buf, &source);
            let (line, column) = (self.line, source.column());
            if complete {
                CodecError::InvalidJson {
                    line,
                    column,
                    problem,
                    source,
                }
            } else {
                CodecError::PartialLastLine {
                    line,
                    column,
                    problem,
                    source,
                }
            }
        })
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.input
    }
}

/// Describes a parse failure; for data errors (valid JSON, wrong shape), re-parses the line
/// tracking the path so the message says where (`record.emitted_at: invalid type ...`). This
/// slow path only runs on failure.
fn describe(line: &[u8], err: &serde_json::Error) -> String {
    let problem = serde_message(err);
    if !err.is_data() {
        return problem;
    }
    let mut de = serde_json::Deserializer::from_slice(line);
    match serde_path_to_error::deserialize::<_, AirbyteMessage>(&mut de) {
        Err(e) if e.path().iter().next().is_some() => {
            format!("{}: {}", e.path(), serde_message(e.inner()))
        }
        _ => problem,
    }
}

impl<R: BufRead> Iterator for MessageReader<R> {
    type Item = Result<AirbyteMessage, CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_message()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JsonObject;
    use crate::clock::FixedClock;
    use crate::types::LogLevel;
    use crate::writer::MessageWriter;
    use proptest::prelude::*;
    use std::io::Cursor;

    fn read_all(input: &str) -> Vec<Result<AirbyteMessage, CodecError>> {
        MessageReader::new(Cursor::new(input.as_bytes().to_vec())).collect()
    }

    const LOG: &str = r#"{"type":"LOG","log":{"level":"INFO","message":"hi"}}"#;

    #[test]
    fn skips_blank_lines_and_counts_them() {
        let input = format!("\n   \n{LOG}\n\t\r\n{LOG}\r\n\n");
        let mut reader = MessageReader::new(Cursor::new(input.into_bytes()));
        assert!(reader.next().unwrap().is_ok());
        assert_eq!(reader.line(), 3);
        assert!(reader.next().unwrap().is_ok());
        assert_eq!(reader.line(), 5);
        assert!(reader.next().is_none());
        assert!(reader.next().is_none());
    }

    #[test]
    fn complete_last_line_without_newline_parses() {
        let out = read_all(&format!("{LOG}\n{LOG}"));
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(Result::is_ok));
    }

    #[test]
    fn invalid_json_names_line_and_problem() {
        let out = read_all(&format!("{LOG}\n\n{{\"type\": \n{LOG}\n"));
        assert_eq!(out.len(), 3);
        let err = out[1].as_ref().unwrap_err();
        assert!(
            matches!(err, CodecError::InvalidJson { line: 3, .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("input line 3"), "{text}");
        assert!(text.contains("EOF while parsing a value"), "{text}");
        // The reader goes on after a bad line.
        assert!(out[2].is_ok());
    }

    #[test]
    fn data_errors_name_the_json_path() {
        let out = read_all(
            "{\"type\":\"RECORD\",\"record\":{\"stream\":\"a\",\"data\":{},\"emitted_at\":\"x\"}}\n",
        );
        let text = out[0].as_ref().unwrap_err().to_string();
        assert!(text.contains("input line 1"), "{text}");
        assert!(text.contains("record.emitted_at"), "{text}");
        assert!(text.contains("expected epoch milliseconds"), "{text}");
        let out = read_all("{\"type\":\"RECORD\"}\n");
        let text = out[0].as_ref().unwrap_err().to_string();
        assert!(
            text.contains("a RECORD message needs a `record` object"),
            "{text}"
        );
    }

    #[test]
    fn partial_last_line_is_its_own_error() {
        let out = read_all(&format!("{LOG}\n{}", &LOG[..20]));
        assert_eq!(out.len(), 2);
        match out[1].as_ref().unwrap_err() {
            CodecError::PartialLastLine { line, .. } => assert_eq!(*line, 2),
            other => panic!("expected PartialLastLine, got {other:?}"),
        }
        let text = out[1].as_ref().unwrap_err().to_string();
        assert!(text.contains("partial last line 2"), "{text}");
    }

    #[test]
    fn very_long_line_is_read_whole() {
        let big = "x".repeat(3 * SHRINK_ABOVE);
        let line = format!(r#"{{"type":"LOG","log":{{"level":"INFO","message":"{big}"}}}}"#);
        let input = format!("{line}\n{LOG}\n");
        let mut reader = MessageReader::new(io::BufReader::with_capacity(
            1024,
            Cursor::new(input.into_bytes()),
        ));
        match reader.next().unwrap().unwrap() {
            AirbyteMessage::Log { log, .. } => assert_eq!(log.message.len(), big.len()),
            other => panic!("{other:?}"),
        }
        assert!(reader.next().unwrap().is_ok());
        assert!(reader.buf.capacity() <= SHRINK_ABOVE);
    }

    #[test]
    fn io_error_is_reported_with_line_and_ends_iteration() {
        struct Failing(usize);
        impl io::Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk on fire"));
                }
                let data = format!("{LOG}\n");
                self.0 -= 1;
                buf[..data.len()].copy_from_slice(data.as_bytes());
                Ok(data.len())
            }
        }
        let reader = MessageReader::new(io::BufReader::new(Failing(1)));
        let out: Vec<_> = reader.collect();
        assert_eq!(out.len(), 2);
        let err = out[1].as_ref().unwrap_err();
        assert_eq!(err.line(), 2);
        assert!(err.to_string().contains("disk on fire"));
    }

    fn arb_message() -> impl Strategy<Value = AirbyteMessage> {
        // Any characters, including newlines, quotes, control characters and non-ASCII.
        let text = "(?s).{0,24}";
        prop_oneof![
            text.prop_map(|m| AirbyteMessage::log(LogLevel::Warn, m)),
            (text, text, any::<i64>(), 0i64..i64::MAX).prop_map(|(stream, value, n, at)| {
                let mut data = JsonObject::new();
                data.insert(value.clone(), serde_json::json!({"v": value, "n": n}));
                AirbyteMessage::record(stream, None, data, &FixedClock(at))
            }),
            (text, 0u32..1_000_000).prop_map(|(name, count)| AirbyteMessage::state_stream(
                crate::types::StreamDescriptor::new(name, Some("ns".into())),
                serde_json::json!({"cursor": count}),
                u64::from(count),
            )),
        ]
    }

    proptest! {
        /// Whatever the messages contain (newlines, unicode, quotes), writing then reading gives
        /// them back, with blank lines anywhere and with or without a final newline.
        #[test]
        fn framing_round_trips(
            messages in proptest::collection::vec(arb_message(), 0..20),
            blanks in proptest::collection::vec(0usize..3, 0..21),
            final_newline in any::<bool>(),
        ) {
            let mut bytes = Vec::new();
            for (i, m) in messages.iter().enumerate() {
                for _ in 0..blanks.get(i).copied().unwrap_or(0) {
                    bytes.extend_from_slice(b"  \n");
                }
                let mut writer = MessageWriter::new(Vec::new());
                writer.write(m).unwrap();
                bytes.extend(writer.into_inner().unwrap());
            }
            if !final_newline && bytes.last() == Some(&b'\n') {
                bytes.pop();
            }
            let back: Vec<AirbyteMessage> = MessageReader::new(Cursor::new(bytes))
                .collect::<Result<_, _>>()
                .unwrap();
            prop_assert_eq!(back, messages);
        }

        /// Cutting the input anywhere inside its last message gives a partial-last-line error
        /// naming that line, never a wrong message.
        #[test]
        fn truncation_is_detected(message in arb_message(), cut in 1usize..1000) {
            let mut bytes = serde_json::to_vec(&AirbyteMessage::log(LogLevel::Info, "first")).unwrap();
            bytes.push(b'\n');
            let start = bytes.len();
            bytes.extend(serde_json::to_vec(&message).unwrap());
            let end = bytes.len();
            let cut_at = start + (cut % (end - start));
            bytes.truncate(cut_at.max(start + 1));
            let out: Vec<_> = MessageReader::new(Cursor::new(bytes)).collect();
            prop_assert_eq!(out.len(), 2);
            prop_assert!(out[0].is_ok());
            prop_assert!(
                matches!(out[1], Err(CodecError::PartialLastLine { line: 2, .. })),
                "{:?}", out[1]
            );
        }
    }
}
