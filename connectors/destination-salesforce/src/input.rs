//! Reading stdin fast: raw blocks split into lines, RECORD lines parsed without building a JSON
//! map, everything else through the protocol crate's reader.
//!
//! The reader thread reads whatever the pipe holds (up to [`BLOCK`] bytes), handles every
//! complete line in it and hands the results over as one chunk (`Vec` of items), so a slow producer's messages
//! are never held back waiting for more input, and a fast one costs one channel send per block
//! instead of one per message.
//!
//! A RECORD line takes the fast path when it has exactly the common shape
//! (`{"type":"RECORD","record":{"stream":..,"namespace":..,"data":{..},"emitted_at":<number>}}`,
//! no other keys): `data` stays as its raw JSON text (kept for the sidecar and reject files) and
//! its `(key, value)` pairs are parsed once, in order, with a repeated key keeping its first place
//! and last value as a JSON map would. Every other line, and any line the fast path does not
//! accept, goes through [`airbyte_protocol::MessageReader`], so messages, errors and line numbers
//! are exactly what the protocol crate gives.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Cursor, Read};

use airbyte_protocol::{AirbyteMessage, CodecError, MessageReader};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

/// Bytes asked for per read.
pub const BLOCK: usize = 1 << 20;

/// A RECORD line in the common shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FastEnvelope<'a> {
    #[serde(rename = "type", borrow)]
    message_type: Cow<'a, str>,
    #[serde(borrow)]
    record: FastRecord<'a>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FastRecord<'a> {
    #[serde(borrow)]
    stream: Cow<'a, str>,
    #[serde(default, borrow)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: &'a RawValue,
    emitted_at: serde_json::Number,
}

/// A RECORD parsed by the fast path.
#[derive(Debug)]
pub struct RawRecord<'a> {
    /// Stream name.
    pub stream: Cow<'a, str>,
    /// Stream namespace.
    pub namespace: Option<Cow<'a, str>>,
    /// The `data` object's JSON text, as received.
    pub data: &'a RawValue,
    /// Its `(key, value)` pairs in input order.
    pub fields: Fields<'a>,
}

/// A JSON object's `(key, value)` pairs in input order; a repeated key keeps its first position
/// and its last value (what a JSON map would hold).
#[derive(Debug, Default)]
pub struct Fields<'a>(pub Vec<(Cow<'a, str>, Value)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut out: Vec<(Cow<'de, str>, Value)> =
                    Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let value: Value = map.next_value()?;
                    match out.iter_mut().find(|(k, _)| *k == key) {
                        Some(slot) => slot.1 = value,
                        None => out.push((key, value)),
                    }
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The fast path: `Some` only for a RECORD line of the common shape whose `emitted_at` the
/// protocol crate would accept.
pub fn fast_record(line: &[u8]) -> Option<RawRecord<'_>> {
    let env: FastEnvelope<'_> = serde_json::from_slice(line).ok()?;
    if env.message_type != "RECORD" {
        return None;
    }
    let n = &env.record.emitted_at;
    if !(n.is_i64() || n.as_f64().is_some_and(f64::is_finite)) {
        return None;
    }
    let text = env.record.data.get();
    if !text.starts_with('{') {
        return None;
    }
    let fields: Fields<'_> = serde_json::from_str(text).ok()?;
    Some(RawRecord {
        stream: env.record.stream,
        namespace: env.record.namespace,
        data: env.record.data,
        fields,
    })
}

/// Any line through the protocol crate's reader, reporting errors at input line `line`.
pub fn slow_message(line: &[u8], number: u64) -> Result<AirbyteMessage, CodecError> {
    let mut reader = MessageReader::new(Cursor::new(line));
    match reader.next_message() {
        Some(Ok(m)) => Ok(m),
        Some(Err(e)) => Err(at_line(e, number)),
        // Not reached for a line with content; kept total.
        None => Err(at_line(
            CodecError::Io {
                line: 1,
                source: io::Error::other("empty line"),
            },
            number,
        )),
    }
}

fn at_line(e: CodecError, number: u64) -> CodecError {
    match e {
        CodecError::Io { source, .. } => CodecError::Io {
            line: number,
            source,
        },
        CodecError::InvalidJson {
            column,
            problem,
            source,
            ..
        } => CodecError::InvalidJson {
            line: number,
            column,
            problem,
            source,
        },
        CodecError::PartialLastLine {
            column,
            problem,
            source,
            ..
        } => CodecError::PartialLastLine {
            line: number,
            column,
            problem,
            source,
        },
    }
}

/// Splits a byte stream into lines, block by block.
pub struct Lines<R> {
    input: R,
    buf: Vec<u8>,
    /// Start of the unconsumed part of `buf`.
    start: usize,
    /// 1-based number of the last line handed out.
    line: u64,
    eof: bool,
}

impl<R: Read> Lines<R> {
    /// Lines of `input`.
    pub fn new(input: R) -> Self {
        Self {
            input,
            buf: Vec::with_capacity(BLOCK),
            start: 0,
            line: 0,
            eof: false,
        }
    }

    /// Reads one more block; `false` at the end of input (after which [`Lines::next_line`] still
    /// hands out a last line without a line break).
    pub fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let have = self.buf.len();
        self.buf.resize(have + BLOCK, 0);
        let n = loop {
            match self.input.read(&mut self.buf[have..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(have);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(have + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(n > 0)
    }

    /// The next complete line (with its `\n`), or at the end of input the last partial line;
    /// `None` when a new block is needed. Returns the line's 1-based number too.
    pub fn next_line(&mut self) -> Option<(u64, &[u8])> {
        let rest = &self.buf[self.start..];
        if rest.is_empty() {
            return None;
        }
        let end = match memchr(b'\n', rest) {
            Some(i) => i + 1,
            None if self.eof => rest.len(),
            None => return None,
        };
        let from = self.start;
        self.start += end;
        self.line += 1;
        Some((self.line, &self.buf[from..from + end]))
    }

    /// The number of the last line handed out.
    pub fn line(&self) -> u64 {
        self.line
    }
}

/// The first `needle` in `hay`, eight bytes at a time (the classic zero-byte test on
/// `word ^ needle`: the lowest flagged byte is always a real match).
fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * u64::from(needle);
    let mut chunks = hay.chunks_exact(8);
    let mut at = 0usize;
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word) ^ pattern;
        let found = w.wrapping_sub(LO) & !w & HI;
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|p| at + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_takes_only_the_common_shape() {
        let r = fast_record(
            br#"{"type":"RECORD","record":{"stream":"s","data":{"a":1,"b":"x","a":2},"emitted_at":1.5}}"#,
        )
        .unwrap();
        assert_eq!(r.stream, "s");
        assert_eq!(r.data.get(), r#"{"a":1,"b":"x","a":2}"#);
        let pairs: Vec<(&str, &Value)> = r.fields.0.iter().map(|(k, v)| (k.as_ref(), v)).collect();
        assert_eq!(
            pairs,
            vec![("a", &serde_json::json!(2)), ("b", &serde_json::json!("x"))]
        );
        for line in [
            &br#"{"type":"STATE","state":{}}"#[..],
            br#"{"type":"RECORD","record":{"stream":"s","data":{},"emitted_at":"1"}}"#,
            br#"{"type":"RECORD","record":{"stream":"s","data":[],"emitted_at":1}}"#,
            br#"{"type":"RECORD","record":{"stream":"s","data":{},"emitted_at":1,"meta":{}}}"#,
            br#"{"type":"RECORD","x":1,"record":{"stream":"s","data":{},"emitted_at":1}}"#,
            br#"{"type":"RECORD","record":{"stream":"s","data":{},"emitted_at":1}"#,
        ] {
            assert!(
                fast_record(line).is_none(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn slow_errors_carry_the_real_line_number() {
        let e = slow_message(b"{nope}\n", 42).unwrap_err();
        assert_eq!(e.line(), 42);
        assert!(matches!(e, CodecError::InvalidJson { .. }));
        let e = slow_message(b"{\"type\":", 7).unwrap_err();
        assert!(matches!(e, CodecError::PartialLastLine { line: 7, .. }));
        assert!(
            slow_message(
                b"{\"type\":\"LOG\",\"log\":{\"level\":\"INFO\",\"message\":\"m\"}}\n",
                1
            )
            .is_ok()
        );
    }

    #[test]
    fn memchr_finds_the_first_match_anywhere() {
        for len in 0..40 {
            for at in 0..=len {
                let mut hay = vec![b'x'; len];
                hay.extend_from_slice(b"\n\n");
                hay[at] = b'\n';
                assert_eq!(memchr(b'\n', &hay), Some(at), "{len} {at}");
            }
            // Bytes that differ from the needle only in the high bit are no match.
            let hay = vec![b'\n' | 0x80; len];
            assert_eq!(memchr(b'\n', &hay), None);
        }
    }

    #[test]
    fn lines_come_out_whole_across_blocks() {
        struct Trickle(Vec<u8>, usize);
        impl Read for Trickle {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = 3.min(self.0.len() - self.1).min(out.len());
                out[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
                self.1 += n;
                Ok(n)
            }
        }
        let mut lines = Lines::new(Trickle(b"ab\n\ncdefg\nxyz".to_vec(), 0));
        let mut got = Vec::new();
        loop {
            while let Some((n, l)) = lines.next_line() {
                got.push((n, String::from_utf8_lossy(l).into_owned()));
            }
            if !lines.fill().unwrap() {
                while let Some((n, l)) = lines.next_line() {
                    got.push((n, String::from_utf8_lossy(l).into_owned()));
                }
                break;
            }
        }
        assert_eq!(
            got,
            vec![
                (1, "ab\n".to_owned()),
                (2, "\n".to_owned()),
                (3, "cdefg\n".to_owned()),
                (4, "xyz".to_owned())
            ]
        );
        assert_eq!(lines.line(), 4);
    }
}
