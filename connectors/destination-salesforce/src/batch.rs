//! Batches: encoded rows spooled to disk until a size, row or age threshold closes them, then
//! turned into the CSV file one ingest job uploads.
//!
//! Memory stays flat whatever the batch size: rows go to a spool file as they come, and beside it
//! a *sidecar* file holds, per row, its input position and the original record (JSON lines, same
//! order). In memory a batch keeps only 8 bytes of state-window ids per row.
//!
//! Columns are discovered as rows arrive (a record only sends the keys it has), so a spooled row
//! holds its cells up to the last column it uses; [`OpenBatch::finish`] writes the final CSV with
//! the header and pads every row to the full width with empty cells (empty = "not sent"); when
//! every row already has the full width (the usual case) the spool is copied as it is. The size
//! limit is checked against the exact size of that final file before a row is added. Rows are
//! rendered by hand with the `csv` crate's quoting rules (quotes only around a cell holding a
//! comma, a quote or a line break), once per row.
//!
//! **Linking results to rows.** Salesforce's result files repeat the submitted columns but do not
//! keep the upload order, and we add no column of our own (Salesforce would reject an unknown
//! one). Each row is identified by a hash of its submitted `(column, value)` pairs (empty cells
//! skipped, so padding does not matter); a result row is linked to the first not-yet-linked input
//! row with the same hash ([`Linker`]). Rows with identical submitted content are
//! interchangeable: whichever of them a result is linked to, the data Salesforce saw was the same.
//! The hashes are computed from the batch's CSV file only when a result file has rows to link
//! ([`ReadyBatch::hashes`]), so a clean job never pays for them.

use std::collections::HashMap;
use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tempfile::{NamedTempFile, TempPath};

use crate::config::BatchLimits;
use crate::encode::Cells;

/// A batch file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("batch {batch} of {object}: {action}: {source}")]
pub struct BatchError {
    batch: u64,
    object: String,
    action: &'static str,
    #[source]
    source: io::Error,
}

/// Which state windows a row counts in: its stream's and the global one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Windows {
    /// Window of the row's stream.
    pub stream: u32,
    /// Window of global states.
    pub global: u32,
}

/// One sidecar line: where a row came from.
#[derive(Debug, Serialize, Deserialize)]
pub struct Origin<R> {
    /// 1-based input line of the RECORD message.
    pub position: u64,
    /// The record's `data`, unchanged.
    pub record: R,
}

/// Hash of a row's non-empty cells by column index.
pub fn row_hash<'a>(cells: impl Iterator<Item = (usize, &'a [u8])>) -> u64 {
    let mut h = DefaultHasher::new();
    for (col, value) in cells {
        if !value.is_empty() {
            col.hash(&mut h);
            value.hash(&mut h);
        }
    }
    h.finish()
}

fn csv_writer<W: Write>(w: W) -> csv::Writer<W> {
    csv::WriterBuilder::new()
        .flexible(true)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(w)
}

/// Reads CSV the way [`csv_writer`] writes it.
pub fn csv_reader<R: io::Read>(r: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_reader(r)
}

/// A batch still receiving rows.
#[derive(Debug)]
pub struct OpenBatch {
    /// Sequence number (unique in the run).
    pub id: u64,
    /// The object (canonical API name).
    pub object: String,
    columns: Vec<String>,
    col_index: HashMap<String, usize>,
    spool: BufWriter<File>,
    spool_path: TempPath,
    sidecar: BufWriter<File>,
    sidecar_path: TempPath,
    row: Vec<u8>,
    /// Scratch: the cell index at each column position of the row being rendered.
    slots: Vec<Option<usize>>,
    /// Column names of the last staged row without new columns, and their positions.
    last_names: Vec<crate::encode::Column>,
    last_positions: Vec<usize>,
    /// Length of the CSV header line for `columns`.
    header_len: u64,
    row_bytes: u64,
    row_cells: u64,
    /// Per-row windows (one entry per row).
    windows: Vec<Windows>,
    /// Input sequence number of the first row.
    pub first_seq: u64,
    /// When the first row arrived.
    pub started: Instant,
}

/// A batch whose CSV file is complete.
#[derive(Debug)]
pub struct ReadyBatch {
    /// Sequence number (unique in the run).
    pub id: u64,
    /// The object.
    pub object: String,
    /// The header.
    pub columns: Vec<String>,
    /// The CSV file (header + rows), deleted on drop.
    pub csv: TempPath,
    /// The sidecar (one [`Origin`] line per row), deleted on drop.
    pub sidecar: TempPath,
    /// Per-row windows.
    pub windows: Vec<Windows>,
    /// Size of the CSV file.
    pub bytes: u64,
}

impl ReadyBatch {
    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.windows.len()
    }

    /// Per-row content hashes ([`row_hash`] of each row's cells by column), read back from the
    /// CSV file. Blocking file I/O.
    pub fn hashes(&self) -> io::Result<Vec<u64>> {
        let file = File::open(&self.csv)?;
        let mut r = csv_reader(BufReader::with_capacity(256 * 1024, file));
        let mut record = csv::ByteRecord::new();
        let mut out = Vec::with_capacity(self.rows());
        // The header.
        r.read_byte_record(&mut record).map_err(io::Error::other)?;
        while r.read_byte_record(&mut record).map_err(io::Error::other)? {
            out.push(row_hash(record.iter().enumerate()));
        }
        if out.len() != self.rows() {
            return Err(io::Error::other(format!(
                "batch {} has {} rows but its CSV file {}",
                self.id,
                self.rows(),
                out.len()
            )));
        }
        Ok(out)
    }
}

fn temp(dir: &Path, what: &str) -> io::Result<(BufWriter<File>, TempPath)> {
    let file = tempfile::Builder::new()
        .prefix(&format!("sf-{what}-"))
        .tempfile_in(dir)?;
    let (file, path) = file.into_parts();
    Ok((BufWriter::with_capacity(256 * 1024, file), path))
}

impl OpenBatch {
    /// An empty batch spooling into `dir`.
    pub fn new(id: u64, object: &str, first_seq: u64, dir: &Path) -> Result<Self, BatchError> {
        let err = |action, source| BatchError {
            batch: id,
            object: object.to_owned(),
            action,
            source,
        };
        let (spool, spool_path) =
            temp(dir, "rows").map_err(|e| err("creating the spool file", e))?;
        let (sidecar, sidecar_path) =
            temp(dir, "origin").map_err(|e| err("creating the sidecar file", e))?;
        Ok(Self {
            id,
            object: object.to_owned(),
            columns: Vec::new(),
            col_index: HashMap::new(),
            spool,
            spool_path,
            sidecar,
            sidecar_path,
            row: Vec::with_capacity(1024),
            slots: Vec::new(),
            last_names: Vec::new(),
            last_positions: Vec::new(),
            header_len: 0,
            row_bytes: 0,
            row_cells: 0,
            windows: Vec::new(),
            first_seq,
            started: Instant::now(),
        })
    }

    fn err(&self, action: &'static str, source: io::Error) -> BatchError {
        BatchError {
            batch: self.id,
            object: self.object.clone(),
            action,
            source,
        }
    }

    /// Rows so far.
    pub fn rows(&self) -> u64 {
        self.windows.len() as u64
    }

    /// Exact size the final CSV would have now.
    pub fn size(&self) -> u64 {
        Self::final_size(
            self.header_len,
            self.columns.len() as u64,
            self.rows(),
            self.row_bytes,
            self.row_cells,
        )
    }

    /// Length of the CSV header line for `columns`.
    fn header_len(columns: &[&str]) -> u64 {
        let mut header = Vec::new();
        {
            let mut w = csv_writer(&mut header);
            let _ = w.write_record(columns);
            let _ = w.flush();
        }
        header.len() as u64
    }

    /// Exact size of the final CSV with `columns` columns whose header line is `header_len`.
    fn final_size(header_len: u64, columns: u64, rows: u64, row_bytes: u64, row_cells: u64) -> u64 {
        header_len + row_bytes + (rows * columns).saturating_sub(row_cells)
    }

    /// The column position of each of `cells` and the columns they add to the batch.
    fn stage(&mut self, cells: &Cells) -> (Vec<usize>, Vec<String>) {
        // Rows of one stream usually name the same columns in the same order as the row before.
        if cells.len() == self.last_names.len()
            && cells
                .iter()
                .zip(&self.last_names)
                .all(|((c, _), last)| std::sync::Arc::ptr_eq(c, last) || c == last)
        {
            return (self.last_positions.clone(), Vec::new());
        }
        let staged = self.stage_lookup(cells);
        if staged.1.is_empty() {
            self.last_names = cells.iter().map(|(c, _)| c.clone()).collect();
            self.last_positions = staged.0.clone();
        }
        staged
    }

    fn stage_lookup(&mut self, cells: &Cells) -> (Vec<usize>, Vec<String>) {
        let mut new_columns: Vec<String> = Vec::new();
        let mut positions = Vec::with_capacity(cells.len());
        for (column, _) in cells {
            let idx = match self.col_index.get(&**column) {
                Some(&i) => i,
                None => match new_columns.iter().position(|c| *c == **column) {
                    Some(p) => self.columns.len() + p,
                    None => {
                        new_columns.push(column.to_string());
                        self.columns.len() + new_columns.len() - 1
                    }
                },
            };
            positions.push(idx);
        }
        (positions, new_columns)
    }

    /// Whether adding `cells` would push the final CSV over `limits` (never true for an empty
    /// batch: one row always fits).
    pub fn would_overflow(&mut self, cells: &Cells, limits: &BatchLimits) -> bool {
        if self.windows.is_empty() {
            return false;
        }
        if limits.max_rows.is_some_and(|max| self.rows() >= max) {
            return true;
        }
        let (positions, new_columns) = self.stage(cells);
        let width = positions.iter().max().map_or(1, |m| m + 1);
        let row = render_row(&mut self.row, &mut self.slots, &positions, cells, width);
        let header_len = if new_columns.is_empty() {
            self.header_len
        } else {
            let mut columns: Vec<&str> = self.columns.iter().map(String::as_str).collect();
            columns.extend(new_columns.iter().map(String::as_str));
            Self::header_len(&columns)
        };
        let size = Self::final_size(
            header_len,
            (self.columns.len() + new_columns.len()) as u64,
            self.rows() + 1,
            self.row_bytes + row as u64,
            self.row_cells + width as u64,
        );
        size > limits.max_bytes
    }

    /// Whether the batch reached its row limit or age.
    pub fn is_due(&self, limits: &BatchLimits, now: Instant) -> bool {
        !self.windows.is_empty()
            && (limits.max_rows.is_some_and(|max| self.rows() >= max)
                || now.duration_since(self.started) >= limits.max_age)
    }

    /// Appends one row with its origin.
    pub fn push(
        &mut self,
        cells: &Cells,
        position: u64,
        record: &RawValue,
        windows: Windows,
    ) -> Result<(), BatchError> {
        if self.windows.is_empty() {
            self.started = Instant::now();
        }
        let (positions, new_columns) = self.stage(cells);
        if !new_columns.is_empty() {
            for c in new_columns {
                self.col_index.insert(c.clone(), self.columns.len());
                self.columns.push(c);
            }
            let columns: Vec<&str> = self.columns.iter().map(String::as_str).collect();
            self.header_len = Self::header_len(&columns);
        }
        let width = positions.iter().max().map_or(1, |m| m + 1);
        let bytes = render_row(&mut self.row, &mut self.slots, &positions, cells, width);
        self.spool
            .write_all(&self.row[..bytes])
            .map_err(|e| self.err("writing the spool file", e))?;
        self.row_bytes += bytes as u64;
        self.row_cells += width as u64;
        self.windows.push(windows);
        // The same line `serde_json` writes for an `Origin`, without re-serialising the record.
        let side = &mut self.sidecar;
        let written = write!(side, "{{\"position\":{position},\"record\":")
            .and_then(|()| side.write_all(record.get().as_bytes()))
            .and_then(|()| side.write_all(b"}\n"));
        written.map_err(|e| self.err("writing the sidecar file", e))?;
        Ok(())
    }

    /// Writes the final CSV (header, rows padded to full width). Blocking file I/O.
    pub fn finish(mut self, dir: &Path) -> Result<ReadyBatch, BatchError> {
        self.spool
            .flush()
            .map_err(|e| self.err("flushing the spool file", e))?;
        self.sidecar
            .flush()
            .map_err(|e| self.err("flushing the sidecar file", e))?;
        let (out, csv_path) =
            temp(dir, "upload").map_err(|e| self.err("creating the CSV file", e))?;
        if self.row_cells == self.rows() * self.columns.len() as u64 {
            // Every row has the full width already: header, then the spool as it is.
            let mut header = Vec::new();
            {
                let mut w = csv_writer(&mut header);
                w.write_record(&self.columns)
                    .and_then(|()| w.flush().map_err(Into::into))
                    .map_err(|e| self.err("writing the CSV header", e.into()))?;
            }
            let mut file = out
                .into_inner()
                .map_err(|e| self.err("writing the CSV file", io::Error::other(e.to_string())))?;
            file.write_all(&header)
                .map_err(|e| self.err("writing the CSV file", e))?;
            let mut spool =
                File::open(&self.spool_path).map_err(|e| self.err("reading the spool file", e))?;
            io::copy(&mut spool, &mut file).map_err(|e| self.err("writing the CSV file", e))?;
            let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
            return Ok(ReadyBatch {
                id: self.id,
                object: self.object,
                columns: self.columns,
                csv: csv_path,
                sidecar: self.sidecar_path,
                windows: self.windows,
                bytes,
            });
        }
        let mut w = csv_writer(out);
        w.write_record(&self.columns)
            .map_err(|e| self.err("writing the CSV header", e.into()))?;
        let spool =
            File::open(&self.spool_path).map_err(|e| self.err("reading the spool file", e))?;
        let mut r = csv_reader(BufReader::with_capacity(256 * 1024, spool));
        let mut record = csv::ByteRecord::new();
        let width = self.columns.len();
        while r
            .read_byte_record(&mut record)
            .map_err(|e| self.err("reading the spool file", e.into()))?
        {
            for i in 0..width {
                w.write_field(record.get(i).unwrap_or(b""))
                    .map_err(|e| self.err("writing the CSV file", e.into()))?;
            }
            w.write_record(None::<&[u8]>)
                .map_err(|e| self.err("writing the CSV file", e.into()))?;
        }
        let file = w
            .into_inner()
            .map_err(|e| self.err("writing the CSV file", io::Error::other(e.to_string())))?;
        let bytes = file
            .into_inner()
            .map_err(|e| self.err("writing the CSV file", io::Error::other(e.to_string())))?
            .metadata()
            .map(|m| m.len())
            .unwrap_or(0);
        Ok(ReadyBatch {
            id: self.id,
            object: self.object,
            columns: self.columns,
            csv: csv_path,
            sidecar: self.sidecar_path,
            windows: self.windows,
            bytes,
        })
    }
}

/// Renders one spool row into `buf` (cells at their column positions, gaps empty), exactly as
/// [`csv_writer`] would; returns its length. `slots` is scratch space.
fn render_row(
    buf: &mut Vec<u8>,
    slots: &mut Vec<Option<usize>>,
    positions: &[usize],
    cells: &Cells,
    width: usize,
) -> usize {
    slots.clear();
    slots.resize(width, None);
    for (k, &p) in positions.iter().enumerate() {
        slots[p] = Some(k);
    }
    buf.clear();
    for (i, slot) in slots.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        let cell = slot.map_or(&b""[..], |k| cells[k].1.as_bytes());
        if width == 1 && cell.is_empty() {
            // A record of one empty field is quoted, or it would read as a blank line.
            buf.extend_from_slice(b"\"\"");
        } else {
            push_cell(buf, cell);
        }
    }
    buf.push(b'\n');
    buf.len()
}

/// One CSV cell, quoted (quotes doubled) only when it holds a comma, a quote or a line break.
fn push_cell(buf: &mut Vec<u8>, cell: &[u8]) {
    if cell
        .iter()
        .any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        buf.push(b'"');
        for &b in cell {
            if b == b'"' {
                buf.push(b'"');
            }
            buf.push(b);
        }
        buf.push(b'"');
    } else {
        buf.extend_from_slice(cell);
    }
}

/// Links result rows to input rows by content hash.
#[derive(Debug)]
pub struct Linker {
    sorted: Vec<(u64, u32)>,
    taken: Vec<bool>,
}

impl Linker {
    /// A linker over per-row hashes.
    pub fn new(hashes: &[u64]) -> Self {
        let mut sorted: Vec<(u64, u32)> = hashes
            .iter()
            .enumerate()
            .map(|(i, &h)| (h, i as u32))
            .collect();
        sorted.sort_unstable();
        Self {
            sorted,
            taken: vec![false; hashes.len()],
        }
    }

    /// The first not-yet-linked row with hash `h`.
    pub fn take(&mut self, h: u64) -> Option<usize> {
        let start = self.sorted.partition_point(|&(x, _)| x < h);
        for &(x, row) in &self.sorted[start..] {
            if x != h {
                break;
            }
            if !self.taken[row as usize] {
                self.taken[row as usize] = true;
                return Some(row as usize);
            }
        }
        None
    }
}

/// Maps a result file's header to our columns: for each of our columns, its position in the
/// result rows (by name, any case).
pub fn result_columns(ours: &[String], header: &csv::ByteRecord) -> Vec<Option<usize>> {
    ours.iter()
        .map(|c| {
            header
                .iter()
                .position(|h| std::str::from_utf8(h).is_ok_and(|h| h.eq_ignore_ascii_case(c)))
        })
        .collect()
}

/// The hash of a result row, given [`result_columns`].
pub fn result_hash(map: &[Option<usize>], record: &csv::ByteRecord) -> u64 {
    row_hash(
        map.iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i, record.get((*p)?)?))),
    )
}

/// Copies the rows whose index `keep` accepts into a new batch (same header), for a retry.
/// Blocking file I/O.
pub fn subset(
    batch: &ReadyBatch,
    new_id: u64,
    keep: &dyn Fn(usize) -> bool,
    dir: &Path,
) -> Result<ReadyBatch, BatchError> {
    let err = |action, source| BatchError {
        batch: batch.id,
        object: batch.object.clone(),
        action,
        source,
    };
    let (out, csv_path) = temp(dir, "upload").map_err(|e| err("creating the retry CSV", e))?;
    let (mut side_out, side_path) =
        temp(dir, "origin").map_err(|e| err("creating the retry sidecar", e))?;
    let mut w = csv_writer(out);
    w.write_record(&batch.columns)
        .map_err(|e| err("writing the retry CSV", e.into()))?;
    let input = File::open(&batch.csv).map_err(|e| err("reading the CSV file", e))?;
    let mut r = csv_reader(BufReader::new(input));
    let side_in = File::open(&batch.sidecar).map_err(|e| err("reading the sidecar", e))?;
    let mut side_lines = BufReader::new(side_in).split(b'\n');
    let mut record = csv::ByteRecord::new();
    r.read_byte_record(&mut record)
        .map_err(|e| err("reading the CSV file", e.into()))?; // header
    let mut windows = Vec::new();
    let mut row = 0usize;
    while r
        .read_byte_record(&mut record)
        .map_err(|e| err("reading the CSV file", e.into()))?
    {
        let line = side_lines
            .next()
            .ok_or_else(|| err("reading the sidecar", io::ErrorKind::UnexpectedEof.into()))?
            .map_err(|e| err("reading the sidecar", e))?;
        if keep(row) {
            w.write_byte_record(&record)
                .map_err(|e| err("writing the retry CSV", e.into()))?;
            side_out
                .write_all(&line)
                .and_then(|()| side_out.write_all(b"\n"))
                .map_err(|e| err("writing the retry sidecar", e))?;
            windows.push(batch.windows[row]);
        }
        row += 1;
    }
    let file = w
        .into_inner()
        .map_err(|e| err("writing the retry CSV", io::Error::other(e.to_string())))?;
    let bytes = file
        .into_inner()
        .map_err(|e| err("writing the retry CSV", io::Error::other(e.to_string())))?
        .metadata()
        .map(|m| m.len())
        .unwrap_or(0);
    side_out
        .flush()
        .map_err(|e| err("writing the retry sidecar", e))?;
    Ok(ReadyBatch {
        id: new_id,
        object: batch.object.clone(),
        columns: batch.columns.clone(),
        csv: csv_path,
        sidecar: side_path,
        windows,
        bytes,
    })
}

/// Reads a sidecar line by line.
pub fn read_origins(
    path: &Path,
) -> io::Result<impl Iterator<Item = io::Result<Origin<Box<serde_json::value::RawValue>>>>> {
    let file = File::open(path)?;
    Ok(BufReader::new(file).split(b'\n').map(|line| {
        let line = line?;
        serde_json::from_slice(&line).map_err(io::Error::other)
    }))
}

/// A temp file that is kept as a plain path (helper for tests and reject spooling).
pub fn temp_file(dir: &Path, what: &str) -> io::Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(&format!("sf-{what}-"))
        .tempfile_in(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn cells(pairs: &[(&str, &str)]) -> Cells {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).to_owned()))
            .collect()
    }

    fn rec(v: serde_json::Value) -> Box<RawValue> {
        assert!(v.is_object());
        RawValue::from_string(v.to_string()).unwrap()
    }

    #[test]
    fn rows_are_padded_and_the_size_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = OpenBatch::new(1, "Contact", 10, dir.path()).unwrap();
        let w = Windows::default();
        b.push(
            &cells(&[("LastName", "Jones")]),
            1,
            &rec(json!({"LastName": "Jones"})),
            w,
        )
        .unwrap();
        b.push(
            &cells(&[("Email", "a,b@x"), ("LastName", "Dury")]),
            2,
            &rec(json!({"Email": "a,b@x", "LastName": "Dury"})),
            w,
        )
        .unwrap();
        b.push(
            &cells(&[("Description", "line one\nline \"two\"")]),
            3,
            &rec(json!({"Description": "x"})),
            w,
        )
        .unwrap();
        let limits = BatchLimits {
            max_bytes: u64::MAX,
            max_rows: None,
            max_age: Duration::from_secs(60),
        };
        // The size the batch predicts for a 4th row equals the file it then writes.
        let fourth = cells(&[("Phone", "1")]);
        let mut limits_exact = limits;
        b.push(&fourth, 4, &rec(json!({})), w).unwrap();
        let ready = b.finish(dir.path()).unwrap();
        let text = std::fs::read_to_string(&ready.csv).unwrap();
        assert_eq!(
            text,
            "LastName,Email,Description,Phone\nJones,,,\nDury,\"a,b@x\",,\n,,\"line one\nline \"\"two\"\"\",\n,,,1\n"
        );
        assert_eq!(ready.bytes, text.len() as u64);
        assert_eq!(ready.rows(), 4);

        // Rebuild the first three rows and ask whether the fourth fits in exactly that size.
        let mut b = OpenBatch::new(2, "Contact", 10, dir.path()).unwrap();
        b.push(&cells(&[("LastName", "Jones")]), 1, &rec(json!({})), w)
            .unwrap();
        b.push(
            &cells(&[("Email", "a,b@x"), ("LastName", "Dury")]),
            2,
            &rec(json!({})),
            w,
        )
        .unwrap();
        b.push(
            &cells(&[("Description", "line one\nline \"two\"")]),
            3,
            &rec(json!({})),
            w,
        )
        .unwrap();
        limits_exact.max_bytes = text.len() as u64;
        assert!(!b.would_overflow(&fourth, &limits_exact));
        limits_exact.max_bytes = text.len() as u64 - 1;
        assert!(b.would_overflow(&fourth, &limits_exact));
    }

    #[test]
    fn hand_rendered_rows_match_the_csv_writer() {
        let tricky = [
            "plain",
            "a,b",
            "say \"hi\"",
            "line\nbreak",
            "cr\rhere",
            "",
            " spaced ",
            "#N/A",
            "\"",
        ];
        let mut buf = Vec::new();
        let mut slots = Vec::new();
        for a in tricky {
            for b in tricky {
                for (positions, width) in [(vec![0, 1], 2), (vec![1, 0], 2), (vec![0, 2], 3)] {
                    let cells: Cells = vec![("A".into(), a.into()), ("B".into(), b.into())];
                    let n = render_row(&mut buf, &mut slots, &positions, &cells, width);
                    let mut expected_slots = vec![""; width];
                    for (&p, (_, v)) in positions.iter().zip(&cells) {
                        expected_slots[p] = v;
                    }
                    let mut expected = Vec::new();
                    {
                        let mut w = csv_writer(&mut expected);
                        w.write_record(&expected_slots).unwrap();
                        w.flush().unwrap();
                    }
                    assert_eq!(&buf[..n], &expected[..], "{a:?} {b:?} {positions:?}");
                }
            }
            // One column: an empty cell must not read back as a blank line.
            let cells: Cells = vec![("A".into(), a.into())];
            let n = render_row(&mut buf, &mut slots, &[0], &cells, 1);
            let mut expected = Vec::new();
            {
                let mut w = csv_writer(&mut expected);
                w.write_record([a]).unwrap();
                w.flush().unwrap();
            }
            assert_eq!(&buf[..n], &expected[..], "{a:?}");
        }
    }

    #[test]
    fn row_limit_and_age() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = OpenBatch::new(1, "Contact", 0, dir.path()).unwrap();
        let limits = BatchLimits {
            max_bytes: 1000,
            max_rows: Some(2),
            max_age: Duration::from_secs(5),
        };
        let c = cells(&[("A", "1")]);
        assert!(
            !b.would_overflow(&c, &limits),
            "an empty batch takes any row"
        );
        assert!(
            !b.is_due(&limits, Instant::now()),
            "an empty batch is never due"
        );
        b.push(&c, 1, &rec(json!({})), Windows::default()).unwrap();
        assert!(!b.would_overflow(&c, &limits));
        assert!(b.is_due(&limits, Instant::now() + Duration::from_secs(6)));
        b.push(&c, 2, &rec(json!({})), Windows::default()).unwrap();
        assert!(b.would_overflow(&c, &limits));
        assert!(b.is_due(&limits, Instant::now()));
        let big = cells(&[("A", &"x".repeat(2000))]);
        let mut b = OpenBatch::new(2, "Contact", 0, dir.path()).unwrap();
        assert!(!b.would_overflow(&big, &limits), "one row always fits");
    }

    #[test]
    fn results_link_back_whatever_their_order_and_header_case() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = OpenBatch::new(1, "Contact", 0, dir.path()).unwrap();
        let w = Windows {
            stream: 3,
            global: 4,
        };
        for (i, name) in ["A", "B", "A", "C"].iter().enumerate() {
            b.push(
                &cells(&[("LastName", name), ("Email", "#N/A")]),
                i as u64 + 1,
                &rec(json!({"LastName": name, "n": i})),
                w,
            )
            .unwrap();
        }
        let ready = b.finish(dir.path()).unwrap();
        let mut linker = Linker::new(&ready.hashes().unwrap());
        let header = csv::ByteRecord::from(vec!["sf__Id", "sf__Error", "EMAIL", "lastname"]);
        let map = result_columns(&ready.columns, &header);
        let row = |name: &str| csv::ByteRecord::from(vec!["", "E", "#N/A", name]);
        assert_eq!(linker.take(result_hash(&map, &row("C"))), Some(3));
        assert_eq!(linker.take(result_hash(&map, &row("A"))), Some(0));
        assert_eq!(linker.take(result_hash(&map, &row("A"))), Some(2));
        assert_eq!(
            linker.take(result_hash(&map, &row("A"))),
            None,
            "each row links once"
        );
        assert_eq!(linker.take(result_hash(&map, &row("Z"))), None);
        assert_eq!(linker.take(result_hash(&map, &row("B"))), Some(1));

        // A retry subset keeps rows, origins, hashes and windows in step.
        let retry = subset(&ready, 9, &|i| i % 2 == 1, dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&retry.csv).unwrap(),
            "LastName,Email\nB,#N/A\nC,#N/A\n"
        );
        let h = ready.hashes().unwrap();
        assert_eq!(retry.hashes().unwrap(), vec![h[1], h[3]]);
        assert_eq!(retry.windows, vec![w, w]);
        let origins: Vec<_> = read_origins(&retry.sidecar)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(origins.len(), 2);
        assert_eq!(origins[0].position, 2);
        assert_eq!(origins[1].record.get(), r#"{"LastName":"C","n":3}"#);
    }

    #[test]
    fn a_row_whose_cells_come_in_another_order_than_the_columns_still_links() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = OpenBatch::new(1, "Contact", 0, dir.path()).unwrap();
        let w = Windows::default();
        b.push(
            &cells(&[("LastName", "A"), ("Phone", "#N/A")]),
            1,
            &rec(json!({})),
            w,
        )
        .unwrap();
        // Ext_Id__c is new (column 2) but comes before Phone (column 1) in this row.
        b.push(
            &cells(&[("LastName", "B"), ("Ext_Id__c", "K-1"), ("Phone", "#N/A")]),
            2,
            &rec(json!({})),
            w,
        )
        .unwrap();
        let ready = b.finish(dir.path()).unwrap();
        assert_eq!(ready.columns, ["LastName", "Phone", "Ext_Id__c"]);
        let mut linker = Linker::new(&ready.hashes().unwrap());
        let header = csv::ByteRecord::from(vec![
            "sf__Id",
            "sf__Error",
            "LastName",
            "Phone",
            "Ext_Id__c",
        ]);
        let map = result_columns(&ready.columns, &header);
        let row = csv::ByteRecord::from(vec![
            "",
            "DUPLICATE_VALUE:x:Ext_Id__c --",
            "B",
            "#N/A",
            "K-1",
        ]);
        assert_eq!(linker.take(result_hash(&map, &row)), Some(1));
    }
}
