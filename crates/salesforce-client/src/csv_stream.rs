//! Incremental CSV parsing of a streamed HTTP body.
//!
//! [`CsvBody`] feeds response chunks to `csv_core` as they arrive and fills a caller-owned
//! [`csv::ByteRecord`], so reading a row allocates nothing once the record's buffers have grown
//! to the widest row. NUL bytes, which Salesforce results occasionally contain, are dropped.

use std::pin::Pin;

use bytes::Bytes;
use csv::ByteRecord;
use csv_core::ReadRecordResult;
use futures::{Stream, StreamExt};

use crate::error::{Error, Result};

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// A CSV reader over a streamed body.
pub struct CsvBody {
    body: ByteStream,
    chunk: Bytes,
    pos: usize,
    eof: bool,
    core: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    context: String,
}

impl std::fmt::Debug for CsvBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvBody")
            .field("context", &self.context)
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

/// A failure while reading: a transport error (the page may be re-fetched) or malformed data.
pub(crate) enum ReadError {
    Transport(reqwest::Error),
    Other(Error),
}

impl CsvBody {
    /// Reads CSV with `delimiter` from a response body.
    pub(crate) fn new(response: reqwest::Response, delimiter: u8, context: String) -> Self {
        Self::from_stream(Box::pin(response.bytes_stream()), delimiter, context)
    }

    pub(crate) fn from_stream(body: ByteStream, delimiter: u8, context: String) -> Self {
        Self {
            body,
            chunk: Bytes::new(),
            pos: 0,
            eof: false,
            core: csv_core::ReaderBuilder::new().delimiter(delimiter).build(),
            out: vec![0; 4096],
            ends: vec![0; 64],
            context,
        }
    }

    /// Reads the next record into `record`; `false` at the end of the body.
    pub(crate) async fn read(&mut self, record: &mut ByteRecord) -> Result<bool, ReadError> {
        let mut outlen = 0;
        let mut endlen = 0;
        loop {
            if self.pos >= self.chunk.len() && !self.eof {
                match self.body.next().await {
                    Some(Ok(chunk)) => {
                        self.chunk = strip_nul(chunk);
                        self.pos = 0;
                        continue;
                    }
                    Some(Err(e)) => return Err(ReadError::Transport(e)),
                    None => self.eof = true,
                }
            }
            let input = &self.chunk[self.pos..];
            let (res, nin, nout, nend) =
                self.core
                    .read_record(input, &mut self.out[outlen..], &mut self.ends[endlen..]);
            self.pos += nin;
            outlen += nout;
            endlen += nend;
            match res {
                ReadRecordResult::InputEmpty => {
                    if self.eof {
                        return Err(ReadError::Other(Error::Csv {
                            context: self.context.clone(),
                            detail: "parser wanted more input after the end of the body".into(),
                        }));
                    }
                }
                ReadRecordResult::OutputFull => {
                    let n = self.out.len().max(1) * 2;
                    self.out.resize(n, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let n = self.ends.len().max(1) * 2;
                    self.ends.resize(n, 0);
                }
                ReadRecordResult::Record => {
                    record.clear();
                    let mut start = 0;
                    for &end in &self.ends[..endlen] {
                        record.push_field(&self.out[start..end]);
                        start = end;
                    }
                    return Ok(true);
                }
                ReadRecordResult::End => return Ok(false),
            }
        }
    }

    /// Like [`CsvBody::read`], mapping transport errors to [`Error::Http`].
    pub(crate) async fn read_or_fail(&mut self, record: &mut ByteRecord) -> Result<bool> {
        match self.read(record).await {
            Ok(b) => Ok(b),
            Err(ReadError::Transport(source)) => Err(Error::Http {
                context: self.context.clone(),
                attempts: 1,
                source,
            }),
            Err(ReadError::Other(e)) => Err(e),
        }
    }
}

fn strip_nul(chunk: Bytes) -> Bytes {
    if chunk.contains(&0) {
        Bytes::from(
            chunk
                .iter()
                .copied()
                .filter(|b| *b != 0)
                .collect::<Vec<u8>>(),
        )
    } else {
        chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(chunks: &[&'static [u8]]) -> CsvBody {
        let items: Vec<reqwest::Result<Bytes>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        CsvBody::from_stream(Box::pin(futures::stream::iter(items)), b',', "test".into())
    }

    async fn all(mut b: CsvBody) -> Vec<Vec<String>> {
        let mut rec = ByteRecord::new();
        let mut out = Vec::new();
        while b.read_or_fail(&mut rec).await.unwrap() {
            out.push(
                rec.iter()
                    .map(|f| String::from_utf8(f.to_vec()).unwrap())
                    .collect(),
            );
        }
        out
    }

    #[tokio::test]
    async fn parses_records_split_across_chunks() {
        let rows = all(body(&[
            b"\"Id\",\"Na",
            b"me\"\n\"001\",\"Acme, \"\"Inc\"\"\"\n\"002\",\"two\nlines\"",
            b"\n\"003\",\"\"\n",
        ]))
        .await;
        assert_eq!(
            rows,
            vec![
                vec!["Id", "Name"],
                vec!["001", "Acme, \"Inc\""],
                vec!["002", "two\nlines"],
                vec!["003", ""],
            ]
        );
    }

    #[tokio::test]
    async fn handles_crlf_missing_final_newline_nul_and_wide_rows() {
        let wide: &'static [u8] = Box::leak(
            format!("\"{}\",x\r\n", "y".repeat(20_000))
                .into_bytes()
                .into_boxed_slice(),
        );
        let rows = all(body(&[b"a,b\r\n", b"1,\x002\n", wide, b"\r\n3,4"])).await;
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[1], vec!["1", "2"]);
        assert_eq!(rows[2][0].len(), 20_000);
        assert_eq!(rows[3], vec!["3", "4"]);
    }

    #[tokio::test]
    async fn empty_body_has_no_records() {
        assert!(all(body(&[])).await.is_empty());
        assert!(all(body(&[b""])).await.is_empty());
    }
}
