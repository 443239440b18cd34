//! The one buffered writer for protocol output (stdout).
//!
//! [`MessageWriter`] writes one JSON line per message through a 64 KiB buffer. RECORDs stay in the
//! buffer (they are the volume); every other message (STATE, TRACE, LOG, CONTROL, ...) is rare and
//! time-sensitive, so the writer flushes right after it. [`MessageWriter::checkpoint`] flushes
//! explicitly, e.g. after a destination has echoed a STATE. Dropping the writer flushes what is
//! buffered, ignoring errors; call [`MessageWriter::flush`] at exit to see them.
//!
//! A closed stdout (the reader went away) is [`WriteError::BrokenPipe`], so the binary can exit
//! quietly instead of reporting an error nobody can read.

use std::io::{self, BufWriter, Write};

use serde::Serialize;

use crate::message::AirbyteMessage;

/// Buffer size of the writer.
const BUFFER: usize = 64 * 1024;

/// The writer every connector command writes its messages through (stdout in production).
pub type Output = MessageWriter<Box<dyn Write + Send>>;

/// Errors from [`MessageWriter`].
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The reader closed the output (EPIPE). Nothing more can be delivered.
    #[error("the output was closed by its reader (broken pipe)")]
    BrokenPipe,
    /// Any other I/O error.
    #[error("failed to write protocol output: {0}")]
    Io(#[source] io::Error),
    /// A message could not be serialised (nothing was written for it).
    #[error("failed to serialise a {message_type} message: {source}")]
    Serialize {
        /// Type of the message.
        message_type: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

impl WriteError {
    fn from_io(err: io::Error) -> Self {
        if err.kind() == io::ErrorKind::BrokenPipe {
            Self::BrokenPipe
        } else {
            Self::Io(err)
        }
    }

    /// Whether this is [`WriteError::BrokenPipe`].
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Self::BrokenPipe)
    }
}

/// Writes newline-delimited Airbyte messages to `W` through a buffer.
#[derive(Debug)]
pub struct MessageWriter<W: Write> {
    out: BufWriter<W>,
    /// One serialised line; a message is written only once it serialised completely, so a
    /// failure never leaves half a line on the output.
    line: Vec<u8>,
    records: u64,
    messages: u64,
}

impl<W: Write> MessageWriter<W> {
    /// A writer over `out`.
    pub fn new(out: W) -> Self {
        Self {
            out: BufWriter::with_capacity(BUFFER, out),
            line: Vec::with_capacity(4096),
            records: 0,
            messages: 0,
        }
    }

    /// Writes one message as one line; flushes unless it is a RECORD.
    pub fn write(&mut self, message: &AirbyteMessage) -> Result<(), WriteError> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, message).map_err(|source| WriteError::Serialize {
            message_type: message.message_type().to_owned(),
            source,
        })?;
        self.line.push(b'\n');
        self.out
            .write_all(&self.line)
            .map_err(WriteError::from_io)?;
        self.messages += 1;
        if matches!(message, AirbyteMessage::Record { .. }) {
            self.records += 1;
            // Do not keep a huge line's allocation around.
            if self.line.capacity() > 4 * BUFFER {
                self.line = Vec::with_capacity(4096);
            }
            Ok(())
        } else {
            self.flush()
        }
    }

    /// Writes a RECORD without building an [`AirbyteMessage`]: `data` is serialised in place, so a
    /// source can stream rows (a borrowed struct, a map, a `RawValue`) without an intermediate
    /// `serde_json::Value`. `data` must serialise to a JSON object. Buffered like any RECORD.
    pub fn write_record<D: Serialize + ?Sized>(
        &mut self,
        stream: &str,
        namespace: Option<&str>,
        data: &D,
        emitted_at: i64,
    ) -> Result<(), WriteError> {
        #[derive(Serialize)]
        struct Envelope<'a, D: ?Sized> {
            #[serde(rename = "type")]
            message_type: &'static str,
            record: Record<'a, D>,
        }
        #[derive(Serialize)]
        struct Record<'a, D: ?Sized> {
            stream: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            namespace: Option<&'a str>,
            data: &'a D,
            emitted_at: i64,
        }
        let envelope = Envelope {
            message_type: "RECORD",
            record: Record {
                stream,
                namespace,
                data,
                emitted_at,
            },
        };
        self.line.clear();
        serde_json::to_writer(&mut self.line, &envelope).map_err(|source| {
            WriteError::Serialize {
                message_type: "RECORD".to_owned(),
                source,
            }
        })?;
        self.line.push(b'\n');
        self.out
            .write_all(&self.line)
            .map_err(WriteError::from_io)?;
        self.messages += 1;
        self.records += 1;
        if self.line.capacity() > 4 * BUFFER {
            self.line = Vec::with_capacity(4096);
        }
        Ok(())
    }

    /// Writes RECORD lines that were framed elsewhere (with [`RecordFrame`]): `lines` holds
    /// `records` complete lines, each ending in `\n`. Buffered like any RECORD. This is how a
    /// stream task that serialises rows itself hands a batch of them to the one writer.
    pub fn write_record_lines(&mut self, lines: &[u8], records: u64) -> Result<(), WriteError> {
        self.out.write_all(lines).map_err(WriteError::from_io)?;
        self.messages += records;
        self.records += records;
        Ok(())
    }

    /// Flushes everything written so far; call after a STATE a destination has committed.
    pub fn checkpoint(&mut self) -> Result<(), WriteError> {
        self.flush()
    }

    /// Flushes the buffer and the underlying writer.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        self.out.flush().map_err(WriteError::from_io)
    }

    /// RECORD messages written so far.
    pub fn records_written(&self) -> u64 {
        self.records
    }

    /// Messages of any type written so far.
    pub fn messages_written(&self) -> u64 {
        self.messages
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(self) -> Result<W, WriteError> {
        self.out
            .into_inner()
            .map_err(|e| WriteError::from_io(e.into_error()))
    }
}

/// The fixed parts of one stream's RECORD line, serialised once so that a hot loop only writes
/// each row's `data` object and its `emitted_at`.
///
/// A line is `frame.begin(buf)`, then the data object's JSON, then `frame.finish(buf, at)`; the
/// result is byte for byte what [`MessageWriter::write`] prints for the same
/// [`AirbyteMessage::record`] (`{"type":"RECORD","record":{"stream":…,"data":…,"emitted_at":…}}`
/// and a newline). Feed batches of such lines to [`MessageWriter::write_record_lines`].
#[derive(Debug, Clone)]
pub struct RecordFrame {
    head: Vec<u8>,
}

impl RecordFrame {
    /// The frame of `stream` (in `namespace`, if any).
    pub fn new(stream: &str, namespace: Option<&str>) -> Self {
        let mut head = br#"{"type":"RECORD","record":{"stream":"#.to_vec();
        write_json_str(&mut head, stream);
        if let Some(namespace) = namespace {
            head.extend_from_slice(br#","namespace":"#);
            write_json_str(&mut head, namespace);
        }
        head.extend_from_slice(br#","data":"#);
        Self { head }
    }

    /// Starts a line: everything up to the data object.
    pub fn begin(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.head);
    }

    /// Ends a line after the data object: `emitted_at` (epoch milliseconds) and the newline.
    pub fn finish(&self, buf: &mut Vec<u8>, emitted_at: i64) {
        buf.extend_from_slice(br#","emitted_at":"#);
        write_i64(buf, emitted_at);
        buf.extend_from_slice(b"}}\n");
    }
}

/// Appends `value` in decimal.
pub fn write_i64(buf: &mut Vec<u8>, value: i64) {
    let mut digits = [0u8; 20];
    let mut n = value.unsigned_abs();
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if value < 0 {
        buf.push(b'-');
    }
    buf.extend_from_slice(&digits[at..]);
}

/// Appends `text` as a JSON string, escaped exactly as `serde_json` escapes it: `"` and `\\`,
/// the short escapes `\b \t \n \f \r`, other control characters as `\u00xx`; everything else
/// (including non-ASCII) verbatim.
pub fn write_json_str(buf: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    buf.reserve(bytes.len() + 2);
    buf.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x09 => b't',
            0x0A => b'n',
            0x0C => b'f',
            0x0D => b'r',
            0x00..=0x1F => b'u',
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        buf.push(b'\\');
        buf.push(short);
        if short == b'u' {
            buf.extend_from_slice(b"00");
            buf.push(HEX[usize::from(b >> 4)]);
            buf.push(HEX[usize::from(b & 0xF)]);
        }
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'"');
}

impl Output {
    /// The process's stdout, boxed as an [`Output`].
    pub fn stdout() -> Self {
        MessageWriter::new(Box::new(io::stdout()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JsonObject;
    use crate::clock::FixedClock;
    use crate::types::{LogLevel, StreamDescriptor};
    use std::sync::{Arc, Mutex};

    /// A writer that records what reached it and how often it was flushed.
    #[derive(Clone, Default)]
    struct Probe {
        bytes: Arc<Mutex<Vec<u8>>>,
        flushes: Arc<Mutex<u32>>,
    }

    impl Write for Probe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            *self.flushes.lock().unwrap() += 1;
            Ok(())
        }
    }

    fn record(n: i64) -> AirbyteMessage {
        let mut data = JsonObject::new();
        data.insert("n".into(), n.into());
        AirbyteMessage::record("s", None, data, &FixedClock(1))
    }

    #[test]
    fn records_are_buffered_other_messages_flush() {
        let probe = Probe::default();
        let mut w = MessageWriter::new(probe.clone());
        w.write(&record(1)).unwrap();
        w.write(&record(2)).unwrap();
        assert!(
            probe.bytes.lock().unwrap().is_empty(),
            "records must stay buffered"
        );
        w.write(&AirbyteMessage::state_stream(
            StreamDescriptor::new("s", None),
            serde_json::json!({"c": 2}),
            2,
        ))
        .unwrap();
        let text = String::from_utf8(probe.bytes.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with(r#"{"type":"RECORD""#));
        assert!(lines[2].starts_with(r#"{"type":"STATE""#));
        assert!(text.ends_with('\n'));
        assert_eq!(*probe.flushes.lock().unwrap(), 1);
        assert_eq!((w.records_written(), w.messages_written()), (2, 3));
        w.write(&record(3)).unwrap();
        w.checkpoint().unwrap();
        assert_eq!(
            probe
                .bytes
                .lock()
                .unwrap()
                .iter()
                .filter(|b| **b == b'\n')
                .count(),
            4
        );
    }

    #[test]
    fn write_record_matches_the_message_form() {
        #[derive(Serialize)]
        struct Row<'a> {
            #[serde(rename = "Id")]
            id: &'a str,
            amount: f64,
        }
        let mut direct = MessageWriter::new(Vec::new());
        direct
            .write_record(
                "Opportunity",
                Some("sf"),
                &Row {
                    id: "006",
                    amount: 1.5,
                },
                7,
            )
            .unwrap();
        direct
            .write_record("Lead", None, &serde_json::json!({}), 8)
            .unwrap();
        assert_eq!(direct.records_written(), 2);
        let direct = direct.into_inner().unwrap();

        let mut data = JsonObject::new();
        data.insert("Id".into(), "006".into());
        data.insert("amount".into(), 1.5.into());
        let mut via_message = MessageWriter::new(Vec::new());
        via_message
            .write(&AirbyteMessage::record(
                "Opportunity",
                Some("sf".into()),
                data,
                &FixedClock(7),
            ))
            .unwrap();
        via_message
            .write(&AirbyteMessage::record(
                "Lead",
                None,
                JsonObject::new(),
                &FixedClock(8),
            ))
            .unwrap();
        assert_eq!(
            String::from_utf8(direct).unwrap(),
            String::from_utf8(via_message.into_inner().unwrap()).unwrap()
        );
    }

    #[test]
    fn framed_lines_match_the_message_form() {
        let mut data = JsonObject::new();
        data.insert("Id".into(), "001".into());
        data.insert("n".into(), 1.5.into());
        for (stream, namespace) in [("Account", None), ("we\"ird\n", Some("ns\u{1}é"))] {
            let frame = RecordFrame::new(stream, namespace);
            let mut line = Vec::new();
            frame.begin(&mut line);
            serde_json::to_writer(&mut line, &data).unwrap();
            frame.finish(&mut line, -17);
            let mut framed = MessageWriter::new(Vec::new());
            framed.write_record_lines(&line, 1).unwrap();
            framed.write_record_lines(&line, 1).unwrap();
            assert_eq!(
                (framed.records_written(), framed.messages_written()),
                (2, 2)
            );

            let mut via_message = MessageWriter::new(Vec::new());
            for _ in 0..2 {
                via_message
                    .write(&AirbyteMessage::record(
                        stream,
                        namespace.map(str::to_owned),
                        data.clone(),
                        &FixedClock(-17),
                    ))
                    .unwrap();
            }
            assert_eq!(
                String::from_utf8(framed.into_inner().unwrap()).unwrap(),
                String::from_utf8(via_message.into_inner().unwrap()).unwrap()
            );
        }
    }

    #[test]
    fn raw_data_is_written_verbatim() {
        let raw =
            serde_json::value::RawValue::from_string(r#"{"a":[1,2],"b":"x"}"#.into()).unwrap();
        let mut w = MessageWriter::new(Vec::new());
        w.write_record("s", None, &*raw, 3).unwrap();
        assert_eq!(
            String::from_utf8(w.into_inner().unwrap()).unwrap(),
            "{\"type\":\"RECORD\",\"record\":{\"stream\":\"s\",\"data\":{\"a\":[1,2],\"b\":\"x\"},\"emitted_at\":3}}\n"
        );
    }

    proptest::proptest! {
        /// The hand-written escaper agrees with serde_json on any text.
        #[test]
        fn strings_escape_like_serde_json(text in "\\PC*|[\\x00-\\x7f]*") {
            let mut ours = Vec::new();
            write_json_str(&mut ours, &text);
            proptest::prop_assert_eq!(ours, serde_json::to_vec(&text).unwrap());
        }

        /// Integers print like serde_json's.
        #[test]
        fn integers_print_like_serde_json(n in proptest::prelude::any::<i64>()) {
            let mut ours = Vec::new();
            write_i64(&mut ours, n);
            proptest::prop_assert_eq!(ours, serde_json::to_vec(&n).unwrap());
        }
    }

    #[test]
    fn drop_flushes_the_buffer() {
        let probe = Probe::default();
        {
            let mut w = MessageWriter::new(probe.clone());
            w.write(&record(1)).unwrap();
        }
        assert!(!probe.bytes.lock().unwrap().is_empty());
    }

    #[test]
    fn broken_pipe_is_its_own_error() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            }
            fn flush(&mut self) -> io::Result<()> {
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            }
        }
        let mut w = MessageWriter::new(Closed);
        let err = w
            .write(&AirbyteMessage::log(LogLevel::Info, "x"))
            .unwrap_err();
        assert!(err.is_broken_pipe(), "{err:?}");

        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::StorageFull))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = MessageWriter::new(Full);
        let err = w
            .write(&AirbyteMessage::log(LogLevel::Info, "x"))
            .unwrap_err();
        assert!(matches!(err, WriteError::Io(_)), "{err:?}");
    }

    #[test]
    fn real_broken_pipe_on_a_closed_pipe() {
        // A real OS pipe whose read end is closed: writes fail with EPIPE (Rust ignores SIGPIPE).
        let (reader, writer) = io::pipe().unwrap();
        drop(reader);
        let mut w = MessageWriter::new(writer);
        let err = w
            .write(&AirbyteMessage::log(LogLevel::Info, "x"))
            .unwrap_err();
        assert!(err.is_broken_pipe(), "{err:?}");
    }
}
