//! The org store: generated rows plus an overlay of written rows, read through snapshots.
//!
//! Reads take a [`Snapshot`] (cheap: a clone of one `Arc` per object), so a query cursor or a Bulk
//! job sees the org as it was when it started while writes go on. Writes go through
//! [`Store::apply`], one batch of [`WriteOp`]s per call, and report per-row outcomes in
//! Salesforce's `CODE:message:fields` form (§6.5), which the Bulk ingest results reuse.
//!
//! Rules followed:
//! * Every write stamps `SystemModstamp`/`LastModifiedDate` with the current second (§4.4);
//!   formula inputs on other rows never do (§4.7).
//! * Delete is soft: the row stays visible to queryAll with `IsDeleted = true` (§4.5) and, unless
//!   switched off ([`WriteOptions::bump_stamp_on_delete`], §9.5), bumps `SystemModstamp`.
//!   Hard delete (purge) removes the row entirely (§4.5 "no tombstone").
//! * Changes to tracked fields append rows to the field-history object (§4.6, append-only).

use crate::datagen::GenCtx;
use crate::ids;
use crate::schema::{FieldDef, FieldType, Formula, Gen, Schema, Source, StageAttr};
use crate::value::{self, Value};
use base64::Engine;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock};

/// A written (inserted, updated or deleted) row, stored compactly: its non-null field values are
/// packed into one byte buffer (`[field u16][tag u8][payload]` entries), so a row of a wide
/// object costs one allocation and a few hundred bytes instead of one [`Value`] per field. Reads
/// decode the value asked for ([`StoredRow::get`]); writes unpack, change and repack.
#[derive(Debug, Clone)]
pub struct StoredRow {
    packed: Box<[u8]>,
    /// `base64` values, shared rather than copied (the packed entry holds the index).
    blobs: Box<[Arc<[u8]>]>,
    /// Soft-deleted (in the recycle bin).
    pub deleted: bool,
    /// Hard-deleted: invisible everywhere.
    pub purged: bool,
    /// When it was deleted (ms).
    pub deleted_at: Option<i64>,
    /// Invisible to reads before this instant (late-visible records fault).
    pub visible_from: i64,
}

const TAG_FALSE: u8 = 0;
const TAG_TRUE: u8 = 1;
const TAG_INT: u8 = 2;
const TAG_DOUBLE: u8 = 3;
const TAG_STR: u8 = 4;
const TAG_DATE: u8 = 5;
const TAG_DATETIME: u8 = 6;
const TAG_TIME: u8 = 7;
const TAG_BLOB: u8 = 8;

/// Builds the packed form of a row.
#[derive(Debug, Default)]
struct Packer {
    buf: Vec<u8>,
    blobs: Vec<Arc<[u8]>>,
}

impl Packer {
    fn with_capacity(n: usize) -> Packer {
        Packer {
            buf: Vec::with_capacity(n),
            blobs: Vec::new(),
        }
    }

    fn head(&mut self, f: usize, tag: u8) {
        self.buf
            .extend_from_slice(&u16::try_from(f).unwrap_or(u16::MAX).to_le_bytes());
        self.buf.push(tag);
    }

    fn text(&mut self, f: usize, s: &str) {
        self.head(f, TAG_STR);
        let n = u32::try_from(s.len()).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(&n.to_le_bytes());
        self.buf.extend_from_slice(&s.as_bytes()[..n as usize]);
    }

    /// Adds field `f` (nulls are not stored).
    fn value(&mut self, f: usize, v: &Value) {
        match v {
            Value::Null => {}
            Value::Bool(b) => self.head(f, if *b { TAG_TRUE } else { TAG_FALSE }),
            Value::Int(i) => {
                self.head(f, TAG_INT);
                self.buf.extend_from_slice(&i.to_le_bytes());
            }
            Value::Double(d) => {
                self.head(f, TAG_DOUBLE);
                self.buf.extend_from_slice(&d.to_le_bytes());
            }
            Value::Str(s) => self.text(f, s),
            Value::Lit(s) => self.text(f, s),
            Value::Date(d) => {
                self.head(f, TAG_DATE);
                self.buf.extend_from_slice(&d.to_le_bytes());
            }
            Value::DateTime(ms) => {
                self.head(f, TAG_DATETIME);
                self.buf.extend_from_slice(&ms.to_le_bytes());
            }
            Value::Time(t) => {
                self.head(f, TAG_TIME);
                self.buf.extend_from_slice(&t.to_le_bytes());
            }
            Value::Blob(b) => {
                self.head(f, TAG_BLOB);
                let i = u32::try_from(self.blobs.len()).unwrap_or(u32::MAX);
                self.buf.extend_from_slice(&i.to_le_bytes());
                self.blobs.push(b.clone());
            }
        }
    }

    fn parsed(&mut self, f: usize, v: &Parsed<'_>) {
        match v {
            Parsed::Text(s) => self.text(f, s),
            Parsed::Value(v) => self.value(f, v),
        }
    }

    fn finish(self, draft: RowFlags) -> StoredRow {
        StoredRow {
            packed: self.buf.into_boxed_slice(),
            blobs: self.blobs.into_boxed_slice(),
            deleted: draft.deleted,
            purged: draft.purged,
            deleted_at: draft.deleted_at,
            visible_from: draft.visible_from,
        }
    }
}

/// The flags of a row, beside its values.
#[derive(Debug, Clone, Copy)]
struct RowFlags {
    deleted: bool,
    purged: bool,
    deleted_at: Option<i64>,
    visible_from: i64,
}

fn read<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(s) = b.get(at..at + N) {
        out.copy_from_slice(s);
    }
    out
}

impl StoredRow {
    /// Walks the packed entries: `(field, tag, payload start, payload end)`.
    fn entries(&self) -> impl Iterator<Item = (usize, u8, usize, usize)> + '_ {
        let b = &self.packed;
        let mut at = 0usize;
        std::iter::from_fn(move || {
            if at + 3 > b.len() {
                return None;
            }
            let f = u16::from_le_bytes(read(b, at)) as usize;
            let tag = b[at + 2];
            let start = at + 3;
            let end = match tag {
                TAG_FALSE | TAG_TRUE => start,
                TAG_INT | TAG_DOUBLE | TAG_DATETIME => start + 8,
                TAG_DATE | TAG_TIME | TAG_BLOB => start + 4,
                _ => start + 4 + u32::from_le_bytes(read(b, start)) as usize,
            };
            at = end;
            Some((f, tag, start, end))
        })
    }

    fn decode(&self, tag: u8, start: usize, end: usize) -> Value {
        let b = &self.packed;
        match tag {
            TAG_FALSE => Value::Bool(false),
            TAG_TRUE => Value::Bool(true),
            TAG_INT => Value::Int(i64::from_le_bytes(read(b, start))),
            TAG_DOUBLE => Value::Double(f64::from_le_bytes(read(b, start))),
            TAG_DATE => Value::Date(i32::from_le_bytes(read(b, start))),
            TAG_DATETIME => Value::DateTime(i64::from_le_bytes(read(b, start))),
            TAG_TIME => Value::Time(u32::from_le_bytes(read(b, start))),
            TAG_BLOB => {
                let i = u32::from_le_bytes(read(b, start)) as usize;
                self.blobs
                    .get(i)
                    .map(|x| Value::Blob(x.clone()))
                    .unwrap_or(Value::Null)
            }
            _ => Value::Str(String::from_utf8_lossy(&b[start + 4..end]).into_owned()),
        }
    }

    /// The value of field `f` (`Null` when not stored).
    pub fn get(&self, f: usize) -> Value {
        self.entries()
            .find(|e| e.0 == f)
            .map(|(_, tag, s, e)| self.decode(tag, s, e))
            .unwrap_or(Value::Null)
    }

    /// The datetime in field `f` (0 when it holds none), without decoding anything else.
    fn datetime(&self, f: usize) -> i64 {
        match self.entries().find(|e| e.0 == f) {
            Some((_, TAG_DATETIME, s, _)) => i64::from_le_bytes(read(&self.packed, s)),
            _ => 0,
        }
    }

    /// The text in field `f`, if it holds text (borrowed: no allocation).
    fn text(&self, f: usize) -> Option<&str> {
        match self.entries().find(|e| e.0 == f) {
            Some((_, TAG_STR, s, e)) => std::str::from_utf8(&self.packed[s + 4..e]).ok(),
            _ => None,
        }
    }

    /// Every field of an object with `n` fields, unpacked for a write.
    fn unpack(&self, n: usize) -> Draft {
        let mut values = vec![Value::Null; n];
        for (f, tag, s, e) in self.entries() {
            if let Some(slot) = values.get_mut(f) {
                *slot = self.decode(tag, s, e);
            }
        }
        Draft {
            values,
            flags: self.flags(),
        }
    }

    fn flags(&self) -> RowFlags {
        RowFlags {
            deleted: self.deleted,
            purged: self.purged,
            deleted_at: self.deleted_at,
            visible_from: self.visible_from,
        }
    }
}

/// A row being written: every stored field materialised.
#[derive(Debug, Clone)]
struct Draft {
    values: Vec<Value>,
    flags: RowFlags,
}

impl Draft {
    fn pack(&self) -> StoredRow {
        let mut p = Packer::with_capacity(256);
        for (f, v) in self.values.iter().enumerate() {
            p.value(f, v);
        }
        p.finish(self.flags)
    }
}

/// A parsed input value: text stays borrowed from the input until it is packed.
#[derive(Debug, Clone)]
enum Parsed<'a> {
    Text(&'a str),
    Value(Value),
}

impl Parsed<'_> {
    fn is_null(&self) -> bool {
        matches!(self, Parsed::Value(Value::Null))
    }

    fn into_value(self) -> Value {
        match self {
            Parsed::Text(s) => Value::Str(s.to_string()),
            Parsed::Value(v) => v,
        }
    }
}

/// Hashes row indexes (`u64` keys) with one multiplication: indexes are dense and not chosen by
/// clients, so no DoS-resistant hash is needed, and a million-row overlay hashes much faster.
#[derive(Debug, Clone, Copy, Default)]
pub struct IndexHasher(u64);

impl std::hash::Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: the high bits (hashbrown's tag) and the low bits both vary.
        let h = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 32);
    }
}

/// Row index → written row.
pub type RowMap = HashMap<u64, Arc<StoredRow>, std::hash::BuildHasherDefault<IndexHasher>>;

/// Written rows of one object.
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    /// Row index → written row.
    pub rows: RowMap,
    /// (stamp, index) of every written row, for stamp-ordered scans.
    pub by_stamp: BTreeSet<(i64, u64)>,
    /// Next index for inserted rows.
    pub next_idx: u64,
    /// (field index, lower-cased value) → row index, for unique/external-id fields of written rows.
    pub unique: HashMap<(usize, String), u64>,
}

/// One object's rows.
#[derive(Debug, Clone)]
pub struct ObjData {
    /// Generated rows `0..base_rows`.
    pub base_rows: u64,
    /// Written rows.
    pub overlay: Arc<Overlay>,
}

/// A consistent read view of the org.
#[derive(Debug)]
pub struct Snapshot {
    /// Schema.
    pub schema: Arc<Schema>,
    /// Generator.
    pub generator: Arc<GenCtx>,
    /// Rows per object (schema order).
    pub objs: Vec<ObjData>,
    /// The instant of the snapshot (ms); rows not yet visible at it are hidden.
    pub now: i64,
}

/// A row of a snapshot.
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    /// Snapshot.
    pub snap: &'a Snapshot,
    /// Object index.
    pub obj: usize,
    /// Row index.
    pub idx: u64,
    /// Written row, if any.
    pub stored: Option<&'a StoredRow>,
}

impl ObjData {
    /// The first row that holds `key` in the unique field `field` and passes `accept` (each caller
    /// has its own visibility rule). Candidates: the written rows' unique index, then the
    /// generated `<prefix>-<row>` pattern of unique keys.
    pub(crate) fn unique_match(
        &self,
        field: usize,
        key: &str,
        accept: impl Fn(u64) -> bool,
    ) -> Option<u64> {
        let written = self
            .overlay
            .unique
            .get(&(field, key.to_ascii_lowercase()))
            .copied();
        let generated = key
            .rsplit_once('-')
            .and_then(|(_, n)| n.parse::<u64>().ok())
            .filter(|&n| n < self.base_rows);
        [written, generated]
            .into_iter()
            .flatten()
            .find(|&i| accept(i))
    }
}

impl Snapshot {
    /// The visible row of `obj` whose unique field `field` equals `key` (case-insensitive, as
    /// external ids match), for ingest relationship columns (§6.6).
    pub(crate) fn find_by_unique(&self, obj: usize, field: usize, key: &str) -> Option<u64> {
        self.objs.get(obj)?.unique_match(field, key, |idx| {
            self.row(obj, idx).is_some_and(|r| {
                r.visible(false)
                    && r.get(field)
                        .as_str()
                        .is_some_and(|v| v.eq_ignore_ascii_case(key))
            })
        })
    }

    /// Row `idx` of object `obj`, if it exists (visible or not).
    pub fn row(&self, obj: usize, idx: u64) -> Option<RowRef<'_>> {
        let od = self.objs.get(obj)?;
        let stored = od.overlay.rows.get(&idx).map(|r| r.as_ref());
        if stored.is_none() && idx >= od.base_rows {
            return None;
        }
        Some(RowRef {
            snap: self,
            obj,
            idx,
            stored,
        })
    }

    /// Row by record id (15 or 18 characters) within object `obj`.
    pub fn row_by_id(&self, obj: usize, id: &str) -> Option<RowRef<'_>> {
        let (prefix, idx) = ids::parse(id)?;
        if prefix != self.schema.objects[obj].key_prefix {
            return None;
        }
        self.row(obj, idx)
    }

    /// Row by id of any object (uses the key prefix).
    pub fn row_by_any_id(&self, id: &str) -> Option<RowRef<'_>> {
        let (prefix, idx) = ids::parse(id)?;
        let obj = self.schema.by_prefix(&prefix)?;
        self.row(obj, idx)
    }
}

impl<'a> RowRef<'a> {
    /// Value of field `f` (computed fields are evaluated; compound parents return `Null`, their
    /// value is assembled by the output layer from the components).
    pub fn get(&self, f: usize) -> Value {
        let def = &self.snap.schema.objects[self.obj];
        let Some(fd) = def.fields.get(f) else {
            return Value::Null;
        };
        if let Source::Formula(formula) = &fd.source {
            return self.formula(fd, formula);
        }
        if fd.is_computed() {
            return Value::Null;
        }
        match self.stored {
            Some(s) => s.get(f),
            None => self
                .snap
                .generator
                .value(&self.snap.schema, self.obj, f, self.idx),
        }
    }

    fn formula(&self, fd: &FieldDef, formula: &Formula) -> Value {
        match formula {
            Formula::TimesOnePlusPercent { amount, percent } => {
                let Some(a) = self.get(*amount).as_f64() else {
                    return Value::Null;
                };
                let p = self.get(*percent).as_f64().unwrap_or(0.0);
                let scale = 10f64.powi(fd.scale.min(15) as i32);
                Value::Double((a * (1.0 + p / 100.0) * scale).round() / scale)
            }
            Formula::ParentField {
                lookup,
                parent,
                field,
            } => {
                let id = self.get(*lookup);
                let Some(id) = id.as_str() else {
                    return Value::Null;
                };
                let Some(pi) = self.snap.schema.index(parent) else {
                    return Value::Null;
                };
                let Some(pf) = self.snap.schema.objects[pi].index(field) else {
                    return Value::Null;
                };
                match self.snap.row_by_id(pi, id) {
                    Some(r) if r.visible(false) => r.get(pf),
                    _ => Value::Null,
                }
            }
        }
    }

    /// The 18-character id.
    pub fn id(&self) -> String {
        ids::make(&self.snap.schema.objects[self.obj].key_prefix, self.idx)
    }

    /// Scan-order stamp (ms).
    pub fn stamp(&self) -> i64 {
        let def = &self.snap.schema.objects[self.obj];
        match self.stored {
            Some(s) => s.datetime(def.stamp),
            None => self.snap.generator.stamp(self.obj, self.idx),
        }
    }

    /// Scan key: (stamp, row index).
    pub fn key(&self) -> (i64, u64) {
        (self.stamp(), self.idx)
    }

    /// Soft-deleted?
    pub fn is_deleted(&self) -> bool {
        match self.stored {
            Some(s) => s.deleted,
            None => {
                self.snap
                    .generator
                    .deleted(&self.snap.schema.objects[self.obj], self.obj, self.idx)
            }
        }
    }

    /// When it was deleted, if it is.
    pub fn deleted_at(&self) -> Option<i64> {
        match self.stored {
            Some(s) => s.deleted_at,
            None if self.is_deleted() => Some(self.stamp()),
            None => None,
        }
    }

    /// Visible to `query` (or to `queryAll` when `include_deleted`) at the snapshot instant.
    pub fn visible(&self, include_deleted: bool) -> bool {
        match self.stored {
            Some(s) => {
                !s.purged && (include_deleted || !s.deleted) && s.visible_from <= self.snap.now
            }
            None => include_deleted || !self.is_deleted(),
        }
    }
}

/// A value to write into a field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldInput {
    /// Text as found in a CSV cell or a form (parsed per field type).
    Text(String),
    /// A JSON value (REST / admin API).
    Json(serde_json::Value),
    /// Set the field to null (`#N/A` in Bulk CSV, §6.6).
    Null,
}

/// Field name → value pairs of one row.
pub type FieldValues = Vec<(String, FieldInput)>;

/// One row operation (the Bulk 2.0 ingest operations of §6.1 plus undelete).
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Create a row.
    Insert(FieldValues),
    /// Update the row whose id is given.
    Update {
        /// Record id.
        id: String,
        /// Fields to change.
        values: FieldValues,
    },
    /// Update the row matching `values[key_field]`, or insert when none matches.
    Upsert {
        /// External-id field name (or `Id`).
        key_field: String,
        /// Fields, including the key.
        values: FieldValues,
    },
    /// Soft delete.
    Delete {
        /// Record id.
        id: String,
    },
    /// Hard delete (bypasses the recycle bin).
    HardDelete {
        /// Record id.
        id: String,
    },
    /// Restore a soft-deleted row.
    Undelete {
        /// Record id.
        id: String,
    },
}

/// A per-row failure, rendered `CODE:message:fields` (§6.5 `sf__Error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Salesforce status code, e.g. `REQUIRED_FIELD_MISSING`.
    pub code: String,
    /// Message.
    pub message: String,
    /// Fields involved.
    pub fields: Vec<String>,
}

impl RowError {
    fn new(code: &str, message: impl Into<String>, fields: &[&str]) -> RowError {
        RowError {
            code: code.to_string(),
            message: message.into(),
            fields: fields.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields = if self.fields.is_empty() {
            "--".to_string()
        } else {
            self.fields.join(",")
        };
        write!(f, "{}:{}:{}", self.code, self.message, fields)
    }
}

/// Outcome of one [`WriteOp`] by row index ([`Store::apply_at`]): the written row's index and
/// whether it was created, or why it failed.
pub type IndexedOutcome = Result<(u64, bool), RowError>;

/// Outcome of one [`WriteOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOutcome {
    /// Written; `created` is true for inserts (and upserts that inserted).
    Ok {
        /// Record id.
        id: String,
        /// Whether a row was created.
        created: bool,
    },
    /// Rejected.
    Err(RowError),
}

/// Options of one write batch.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// The write instant (ms); stamps use its whole second.
    pub now_ms: i64,
    /// Rows become visible this many ms after the write (late-visible records fault).
    pub visible_after_ms: i64,
    /// Bump `SystemModstamp` on delete/undelete (§9.5, default true).
    pub bump_stamp_on_delete: bool,
    /// User id written into `CreatedById` / `LastModifiedById`.
    pub user_id: String,
}

/// Whole-batch failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("sObject type '{object}' is not supported")]
    UnknownObject {
        /// Object name as given.
        object: String,
    },
    /// The object cannot be written.
    #[error("entity type {object} does not support {operation}")]
    NotWritable {
        /// Object name.
        object: String,
        /// Operation name.
        operation: &'static str,
    },
}

/// The org: schema, generator and overlay.
#[derive(Debug)]
pub struct Store {
    schema: Arc<Schema>,
    generator: Arc<GenCtx>,
    data: RwLock<Vec<ObjData>>,
}

impl Store {
    /// A store with generated rows only.
    pub fn new(schema: Arc<Schema>, generator: Arc<GenCtx>) -> Store {
        let data = generator
            .rows
            .iter()
            .map(|&n| ObjData {
                base_rows: n,
                overlay: Arc::new(Overlay {
                    next_idx: n,
                    ..Overlay::default()
                }),
            })
            .collect();
        Store {
            schema,
            generator,
            data: RwLock::new(data),
        }
    }

    /// The schema.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// The generator context.
    pub fn generator(&self) -> &Arc<GenCtx> {
        &self.generator
    }

    /// A read view at instant `now_ms`.
    pub fn snapshot(&self, now_ms: i64) -> Arc<Snapshot> {
        let objs = match self.data.read() {
            Ok(d) => d.clone(),
            Err(p) => p.into_inner().clone(),
        };
        Arc::new(Snapshot {
            schema: self.schema.clone(),
            generator: self.generator.clone(),
            objs,
            now: now_ms,
        })
    }

    /// Applies a batch of row operations to one object; each row succeeds or fails on its own.
    pub fn apply(
        &self,
        object: &str,
        ops: &[WriteOp],
        opts: &WriteOptions,
    ) -> Result<Vec<RowOutcome>, StoreError> {
        let obj = self.object_index(object)?;
        let prefix = self.schema.objects[obj].key_prefix.clone();
        Ok(self
            .apply_at(obj, ops, opts)?
            .into_iter()
            .map(|r| match r {
                Ok((idx, created)) => RowOutcome::Ok {
                    id: ids::make(&prefix, idx),
                    created,
                },
                Err(e) => RowOutcome::Err(e),
            })
            .collect())
    }

    fn object_index(&self, object: &str) -> Result<usize, StoreError> {
        self.schema
            .index(object)
            .ok_or_else(|| StoreError::UnknownObject {
                object: object.to_string(),
            })
    }

    /// [`Store::apply`] on the object with schema index `obj`, reporting each written row by its
    /// row index (its id is `ids::make(key_prefix, index)`) and whether it was created.
    pub fn apply_at(
        &self,
        obj: usize,
        ops: &[WriteOp],
        opts: &WriteOptions,
    ) -> Result<Vec<IndexedOutcome>, StoreError> {
        let def = self
            .schema
            .objects
            .get(obj)
            .ok_or_else(|| StoreError::UnknownObject {
                object: format!("#{obj}"),
            })?;
        for op in ops {
            let (allowed, name) = match op {
                WriteOp::Insert(_) => (def.createable, "insert"),
                WriteOp::Update { .. } => (def.updateable, "update"),
                WriteOp::Upsert { .. } => (def.createable && def.updateable, "upsert"),
                WriteOp::Delete { .. } | WriteOp::HardDelete { .. } => (def.deletable, "delete"),
                WriteOp::Undelete { .. } => (def.undeletable, "undelete"),
            };
            if !allowed {
                return Err(StoreError::NotWritable {
                    object: def.name.clone(),
                    operation: name,
                });
            }
        }
        Ok(self.write(obj, opts, |w| ops.iter().map(|op| w.op(op)).collect()))
    }

    /// Inserts rows given as `(field index, cell)` pairs, the Bulk ingest fast path: same rules,
    /// outcomes and error messages as [`WriteOp::Insert`] with the fields named, without building
    /// names or owned strings per cell. Returns each row's new row index, or why it failed.
    pub fn insert_cells(
        &self,
        obj: usize,
        rows: &[Vec<(usize, CellInput<'_>)>],
        opts: &WriteOptions,
    ) -> Result<Vec<Result<u64, RowError>>, StoreError> {
        let def = self
            .schema
            .objects
            .get(obj)
            .ok_or_else(|| StoreError::UnknownObject {
                object: format!("#{obj}"),
            })?;
        if !def.createable {
            return Err(StoreError::NotWritable {
                object: def.name.clone(),
                operation: "insert",
            });
        }
        Ok(self.write(obj, opts, |w| {
            rows.iter()
                .map(|row| w.insert(row.iter().map(|(f, c)| (Key::Index(*f), c.input()))))
                .collect()
        }))
    }

    /// Runs `f` with a writer on object `obj` under the write lock, then appends the field history
    /// it recorded.
    fn write<T>(&self, obj: usize, opts: &WriteOptions, f: impl FnOnce(&mut Writer<'_>) -> T) -> T {
        let mut data = match self.data.write() {
            Ok(d) => d,
            Err(p) => p.into_inner(),
        };
        let mut history: Vec<HistoryEntry> = Vec::new();
        let out = {
            let mut w = Writer {
                schema: &self.schema,
                generator: &self.generator,
                obj,
                od: &mut data[obj],
                opts,
                history: &mut history,
                required: None,
            };
            f(&mut w)
        };
        if !history.is_empty() {
            self.append_history(&mut data, obj, history, opts);
        }
        out
    }

    /// Appends field-history rows (§4.6) for changes of tracked fields.
    fn append_history(
        &self,
        data: &mut [ObjData],
        obj: usize,
        entries: Vec<HistoryEntry>,
        opts: &WriteOptions,
    ) {
        let parent_def = &self.schema.objects[obj];
        let name = &parent_def.name;
        let hist_name = match name.strip_suffix("__c") {
            Some(base) => format!("{base}__History"),
            None => format!("{name}History"),
        };
        let Some(hi) = self.schema.index(&hist_name) else {
            return;
        };
        let hdef = &self.schema.objects[hi];
        let now = opts.now_ms - opts.now_ms.rem_euclid(1000);
        let od = &mut data[hi];
        let ov = Arc::make_mut(&mut od.overlay);
        ov.rows.reserve(entries.len());
        for e in entries {
            let idx = ov.next_idx;
            ov.next_idx += 1;
            let parent_id = ids::make(&parent_def.key_prefix, e.parent);
            let mut p = Packer::with_capacity(160);
            for (k, f) in hdef.fields.iter().enumerate() {
                match (&f.source, f.name.as_str()) {
                    (Source::Id, _) => p.text(k, &ids::make(&hdef.key_prefix, idx)),
                    (Source::IsDeleted, _) => p.value(k, &Value::Bool(false)),
                    (Source::Stamp | Source::CreatedDate, _) => p.value(k, &Value::DateTime(now)),
                    (Source::UserRef, _) => p.text(k, &opts.user_id),
                    (_, "Field") => p.text(k, &e.field),
                    (_, "DataType") => p.text(k, e.dtype),
                    (_, "OldValue") => p.value(k, &e.old),
                    (_, "NewValue") => p.value(k, &e.new),
                    (_, n) if f.ty == FieldType::Reference && n.ends_with("Id") => {
                        p.text(k, &parent_id)
                    }
                    _ => {}
                }
            }
            ov.by_stamp.insert((now, idx));
            ov.rows.insert(
                idx,
                Arc::new(p.finish(RowFlags {
                    deleted: false,
                    purged: false,
                    deleted_at: None,
                    visible_from: now,
                })),
            );
        }
    }
}

/// One field-history row to append (§4.6).
#[derive(Debug)]
struct HistoryEntry {
    /// Row index of the changed record.
    parent: u64,
    /// Field name, or `created`.
    field: std::borrow::Cow<'static, str>,
    old: Value,
    new: Value,
    dtype: &'static str,
}

/// Fields whose changes are recorded in the history object.
fn tracked(field: &str) -> bool {
    matches!(
        field,
        "Name" | "Status__c" | "Amount__c" | "Industry" | "Type"
    )
}

/// A cell of a Bulk insert row ([`Store::insert_cells`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellInput<'a> {
    /// Text as uploaded (empty: leave the field unset).
    Text(&'a str),
    /// `#N/A`: set the field to null.
    Null,
}

impl<'a> CellInput<'a> {
    fn input(self) -> Input<'a> {
        match self {
            CellInput::Text(s) => Input::Text(s),
            CellInput::Null => Input::Null,
        }
    }
}

/// A borrowed [`FieldInput`].
#[derive(Debug, Clone, Copy)]
enum Input<'a> {
    Text(&'a str),
    Json(&'a serde_json::Value),
    Null,
}

impl<'a> From<&'a FieldInput> for Input<'a> {
    fn from(f: &'a FieldInput) -> Input<'a> {
        match f {
            FieldInput::Text(s) => Input::Text(s),
            FieldInput::Json(j) => Input::Json(j),
            FieldInput::Null => Input::Null,
        }
    }
}

/// How an input names its field.
#[derive(Debug, Clone, Copy)]
enum Key<'a> {
    Name(&'a str),
    Index(usize),
}

fn named(values: &FieldValues) -> impl Iterator<Item = (Key<'_>, Input<'_>)> + Clone {
    values.iter().map(|(n, v)| (Key::Name(n), Input::from(v)))
}

struct Writer<'a> {
    schema: &'a Schema,
    generator: &'a GenCtx,
    obj: usize,
    od: &'a mut ObjData,
    opts: &'a WriteOptions,
    history: &'a mut Vec<HistoryEntry>,
    /// Fields an insert must be given (computed on first use).
    required: Option<Vec<usize>>,
}

impl<'a> Writer<'a> {
    fn def(&self) -> &'a crate::schema::ObjectDef {
        &self.schema.objects[self.obj]
    }

    fn now(&self) -> i64 {
        self.opts.now_ms - self.opts.now_ms.rem_euclid(1000)
    }

    /// The current row `idx` with all stored fields materialised.
    fn current(&self, idx: u64) -> Option<Draft> {
        let def = self.def();
        if let Some(r) = self.od.overlay.rows.get(&idx) {
            return Some(r.unpack(def.fields.len()));
        }
        if idx >= self.od.base_rows {
            return None;
        }
        let values = (0..def.fields.len())
            .map(|f| {
                if def.fields[f].is_computed() {
                    Value::Null
                } else {
                    match self.generator.value(self.schema, self.obj, f, idx) {
                        Value::Lit(s) => Value::Str(s.to_string()),
                        v => v,
                    }
                }
            })
            .collect();
        let deleted = self.generator.deleted(def, self.obj, idx);
        Some(Draft {
            values,
            flags: RowFlags {
                deleted,
                purged: false,
                deleted_at: deleted.then(|| self.generator.stamp(self.obj, idx)),
                visible_from: i64::MIN,
            },
        })
    }

    /// Whether row `idx` exists and is not purged, and the text of its field `f` matches `key`
    /// (case-insensitively), without materialising the row.
    fn text_matches(&self, idx: u64, f: usize, key: &str) -> bool {
        if let Some(r) = self.od.overlay.rows.get(&idx) {
            return !r.purged && r.text(f).is_some_and(|v| v.eq_ignore_ascii_case(key));
        }
        idx < self.od.base_rows
            && self
                .generator
                .value(self.schema, self.obj, f, idx)
                .as_str()
                .is_some_and(|v| v.eq_ignore_ascii_case(key))
    }

    fn put(&mut self, idx: u64, row: StoredRow, unique: &[(usize, &str)]) {
        let def = &self.schema.objects[self.obj];
        let new_stamp = row.datetime(def.stamp);
        let old_stamp = self
            .od
            .overlay
            .rows
            .get(&idx)
            .map(|r| r.datetime(def.stamp));
        let ov = Arc::make_mut(&mut self.od.overlay);
        if let Some(old) = old_stamp {
            ov.by_stamp.remove(&(old, idx));
        }
        for (f, s) in unique {
            ov.unique.insert((*f, s.to_ascii_lowercase()), idx);
        }
        ov.by_stamp.insert((new_stamp, idx));
        ov.rows.insert(idx, Arc::new(row));
    }

    /// Stores a written draft (indexing its unique fields).
    fn put_draft(&mut self, idx: u64, row: &Draft) {
        let def = self.def();
        let unique: Vec<(usize, &str)> = def
            .fields
            .iter()
            .enumerate()
            .filter(|(_, fd)| fd.unique)
            .filter_map(|(f, _)| Some((f, row.values[f].as_str()?)))
            .collect();
        let packed = row.pack();
        self.put(idx, packed, &unique);
    }

    fn id_of(&self, id: &str) -> Result<u64, RowError> {
        let def = self.def();
        if ids::to18(id).is_none() || id.get(..3) != Some(def.key_prefix.as_str()) {
            return Err(RowError::new(
                "MALFORMED_ID",
                format!("{} ID: id value of incorrect type: {id}", def.label),
                &["Id"],
            ));
        }
        ids::parse(id).map(|(_, idx)| idx).ok_or_else(|| {
            RowError::new(
                "INVALID_CROSS_REFERENCE_KEY",
                "invalid cross reference id",
                &[],
            )
        })
    }

    fn existing(&self, id: &str) -> Result<(u64, Draft), RowError> {
        let idx = self.id_of(id)?;
        match self.current(idx) {
            Some(r) if !r.flags.purged => Ok((idx, r)),
            _ => Err(RowError::new(
                "INVALID_CROSS_REFERENCE_KEY",
                "invalid cross reference id",
                &[],
            )),
        }
    }

    fn op(&mut self, op: &WriteOp) -> Result<(u64, bool), RowError> {
        match op {
            WriteOp::Insert(values) => self.insert(named(values)).map(|idx| (idx, true)),
            WriteOp::Update { id, values } => {
                if id.is_empty() {
                    return Err(RowError::new(
                        "MISSING_ARGUMENT",
                        "Id not specified in an update call",
                        &["Id"],
                    ));
                }
                let (idx, row) = self.existing(id)?;
                if row.flags.deleted {
                    return Err(RowError::new("ENTITY_IS_DELETED", "entity is deleted", &[]));
                }
                self.update(idx, row, values)?;
                Ok((idx, false))
            }
            WriteOp::Upsert { key_field, values } => {
                let def = self.def();
                let Some(kf) = def.index(key_field) else {
                    return Err(RowError::new(
                        "INVALID_FIELD",
                        format!(
                            "Field name provided, {key_field} is not an External ID or indexed field for {}",
                            def.name
                        ),
                        &[],
                    ));
                };
                let kdef = &def.fields[kf];
                if !(kdef.external_id || kdef.ty == FieldType::Id) {
                    return Err(RowError::new(
                        "INVALID_FIELD",
                        format!(
                            "Field name provided, {} is not an External ID or indexed field for {}",
                            kdef.name, def.name
                        ),
                        &[],
                    ));
                }
                let key = values
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(&kdef.name))
                    .and_then(|(_, v)| match v {
                        FieldInput::Text(s) if !s.is_empty() => Some(s.clone()),
                        FieldInput::Json(serde_json::Value::String(s)) if !s.is_empty() => {
                            Some(s.clone())
                        }
                        FieldInput::Json(j) if !j.is_null() => Some(j.to_string()),
                        _ => None,
                    });
                let Some(key) = key else {
                    return Err(RowError::new(
                        "MISSING_ARGUMENT",
                        format!("{} not specified", kdef.name),
                        &[kdef.name.as_str()],
                    ));
                };
                let found = if kdef.ty == FieldType::Id {
                    Some(self.existing(&key)?.0)
                } else {
                    self.lookup_unique(kf, &key)
                };
                match found {
                    Some(idx) => {
                        let row = self.current(idx).ok_or_else(|| {
                            RowError::new(
                                "INVALID_CROSS_REFERENCE_KEY",
                                "invalid cross reference id",
                                &[],
                            )
                        })?;
                        let rest: FieldValues = values
                            .iter()
                            .filter(|(n, _)| {
                                kdef.ty != FieldType::Id || !n.eq_ignore_ascii_case("Id")
                            })
                            .cloned()
                            .collect();
                        self.update(idx, row, &rest)?;
                        Ok((idx, false))
                    }
                    None => self.insert(named(values)).map(|idx| (idx, true)),
                }
            }
            WriteOp::Delete { id } => {
                let (idx, mut row) = self.existing(id)?;
                if row.flags.deleted {
                    return Err(RowError::new("ENTITY_IS_DELETED", "entity is deleted", &[]));
                }
                row.flags.deleted = true;
                row.flags.deleted_at = Some(self.now());
                self.set_bool(&mut row, "IsDeleted", true);
                if self.opts.bump_stamp_on_delete {
                    self.touch(&mut row);
                }
                self.put_draft(idx, &row);
                Ok((idx, false))
            }
            WriteOp::HardDelete { id } => {
                let (idx, mut row) = self.existing(id)?;
                row.flags.purged = true;
                row.flags.deleted = true;
                row.flags.deleted_at = Some(self.now());
                self.set_bool(&mut row, "IsDeleted", true);
                self.put_draft(idx, &row);
                Ok((idx, false))
            }
            WriteOp::Undelete { id } => {
                let (idx, mut row) = self.existing(id)?;
                if !row.flags.deleted {
                    return Err(RowError::new(
                        "UNDELETE_FAILED",
                        "Entity is not in the recycle bin",
                        &[],
                    ));
                }
                row.flags.deleted = false;
                row.flags.deleted_at = None;
                self.set_bool(&mut row, "IsDeleted", false);
                if self.opts.bump_stamp_on_delete {
                    self.touch(&mut row);
                }
                self.put_draft(idx, &row);
                Ok((idx, false))
            }
        }
    }

    fn set_bool(&self, row: &mut Draft, name: &str, v: bool) {
        if let Some(f) = self.def().index(name) {
            row.values[f] = Value::Bool(v);
        }
    }

    /// Stamps the row as modified now by the API user (§4.4).
    fn touch(&self, row: &mut Draft) {
        let def = self.def();
        let now = Value::DateTime(self.now());
        for name in ["SystemModstamp", "LastModifiedDate"] {
            if let Some(f) = def.index(name) {
                row.values[f] = now.clone();
            }
        }
        if let Some(f) = def.index("LastModifiedById") {
            row.values[f] = Value::str(self.opts.user_id.as_str());
        }
        row.flags.visible_from = self.opts.now_ms + self.opts.visible_after_ms;
        self.derive_stage(row);
    }

    /// The standard opportunity stage picklist decides `IsClosed` and `IsWon` (read-only) and a
    /// default `Probability` (kept when the row has one), on every write as on generated rows.
    fn derive_stage(&self, row: &mut Draft) {
        let def = self.def();
        let Some(stage) = def
            .index("StageName")
            .and_then(|f| row.values[f].as_str())
            .map(str::to_owned)
        else {
            return;
        };
        for (f, fd) in def.fields.iter().enumerate() {
            let Source::Gen(Gen::Stage(attr)) = &fd.source else {
                continue;
            };
            if *attr == StageAttr::Probability && row.values[f] != Value::Null {
                continue;
            }
            if let Some(v) = attr.of_stage(&stage) {
                row.values[f] = v;
            }
        }
    }

    fn lookup_unique(&self, field: usize, key: &str) -> Option<u64> {
        self.od
            .unique_match(field, key, |idx| self.text_matches(idx, field, key))
    }

    /// Fields an insert must be given: not nillable, createable, not defaulted, not a checkbox
    /// (computed once per writer; hand it back with `self.required = Some(..)`).
    fn take_required(&mut self) -> Vec<usize> {
        if let Some(r) = self.required.take() {
            return r;
        }
        self.def()
            .fields
            .iter()
            .enumerate()
            .filter(|(_, fd)| {
                !fd.nillable
                    && fd.createable
                    && !fd.defaulted_on_create
                    && fd.ty != FieldType::Boolean
            })
            .map(|(f, _)| f)
            .collect()
    }

    fn insert<'v>(
        &mut self,
        values: impl Iterator<Item = (Key<'v>, Input<'v>)> + Clone,
    ) -> Result<u64, RowError> {
        let def = self.def();
        let parsed = self.parse_values(values, true)?;
        let required = self.take_required();
        let missing = required
            .iter()
            .filter(|f| !parsed.iter().any(|(g, _)| g == *f))
            .map(|&f| def.fields[f].name.as_str());
        let nulls = parsed
            .iter()
            .filter(|(f, v)| {
                v.is_null() && !def.fields[*f].nillable && def.fields[*f].ty != FieldType::Boolean
            })
            .map(|(f, _)| def.fields[*f].name.as_str());
        let missing: Vec<&str> = missing.chain(nulls).collect();
        self.required = Some(required);
        if !missing.is_empty() {
            return Err(RowError::new(
                "REQUIRED_FIELD_MISSING",
                format!("Required fields are missing: [{}]", missing.join(", ")),
                &missing,
            ));
        }
        let idx = self.od.overlay.next_idx;
        let now = self.now();
        // System values first, then the given ones; the last value of a field wins.
        let mut row: Vec<(usize, Parsed<'_>)> = Vec::with_capacity(parsed.len() + 12);
        for (f, fd) in def.fields.iter().enumerate() {
            let v = match &fd.source {
                Source::Id => Value::Str(ids::make(&def.key_prefix, idx)),
                Source::IsDeleted => Value::Bool(false),
                Source::Stamp | Source::CreatedDate | Source::LastModifiedDate => {
                    Value::DateTime(now)
                }
                Source::UserRef => {
                    row.push((f, Parsed::Text(self.opts.user_id.as_str())));
                    continue;
                }
                Source::Gen(crate::schema::Gen::Key(p)) if fd.auto_number => {
                    Value::str(format!("{p}-{idx}"))
                }
                Source::Gen(_) if fd.ty == FieldType::Boolean => Value::Bool(false),
                _ => continue,
            };
            row.push((f, Parsed::Value(v)));
        }
        row.extend(parsed);
        // Stable: for a field given twice the later entry stays last.
        row.sort_by_key(|(f, _)| *f);
        let mut k = 0;
        while k < row.len() {
            if k + 1 < row.len() && row[k].0 == row[k + 1].0 {
                row.remove(k);
            } else {
                k += 1;
            }
        }
        let text_of = |v: &Parsed<'_>| -> Option<String> {
            match v {
                Parsed::Text(s) => Some((*s).to_string()),
                Parsed::Value(v) => v.as_str().map(str::to_string),
            }
        };
        // The opportunity stage decides IsClosed / IsWon / a default Probability (as on updates).
        let stage = def
            .index("StageName")
            .and_then(|f| row.binary_search_by_key(&f, |(g, _)| *g).ok())
            .and_then(|k| text_of(&row[k].1));
        if let Some(stage) = stage {
            for (f, fd) in def.fields.iter().enumerate() {
                let Source::Gen(Gen::Stage(attr)) = &fd.source else {
                    continue;
                };
                let at = row.binary_search_by_key(&f, |(g, _)| *g);
                let given = at
                    .as_ref()
                    .is_ok_and(|&k| !matches!(&row[k].1, Parsed::Value(Value::Null)));
                if *attr == StageAttr::Probability && given {
                    continue;
                }
                let Some(v) = attr.of_stage(&stage) else {
                    continue;
                };
                match at {
                    Ok(k) => row[k].1 = Parsed::Value(v),
                    Err(k) => row.insert(k, (f, Parsed::Value(v))),
                }
            }
        }
        let unique: Vec<(usize, String)> = row
            .iter()
            .filter(|(f, _)| def.fields[*f].unique)
            .filter_map(|(f, v)| Some((*f, text_of(v)?)))
            .collect();
        for (f, v) in &unique {
            if let Some(other) = self.lookup_unique(*f, v) {
                let fd = &def.fields[*f];
                return Err(RowError::new(
                    "DUPLICATE_VALUE",
                    format!(
                        "duplicate value found: {} duplicates value on record with id: {}",
                        fd.name,
                        ids::make(&def.key_prefix, other)
                    ),
                    &[fd.name.as_str()],
                ));
            }
        }
        let mut p = Packer::with_capacity(256);
        for (f, v) in &row {
            p.parsed(*f, v);
        }
        let stored = p.finish(RowFlags {
            deleted: false,
            purged: false,
            deleted_at: None,
            visible_from: self.opts.now_ms + self.opts.visible_after_ms,
        });
        Arc::make_mut(&mut self.od.overlay).next_idx += 1;
        if def.name == "Account" || def.name == "Invoice__c" {
            self.history.push(HistoryEntry {
                parent: idx,
                field: "created".into(),
                old: Value::Null,
                new: Value::Null,
                dtype: "Text",
            });
        }
        let unique: Vec<(usize, &str)> = unique.iter().map(|(f, s)| (*f, s.as_str())).collect();
        self.put(idx, stored, &unique);
        Ok(idx)
    }

    fn update(&mut self, idx: u64, mut row: Draft, values: &FieldValues) -> Result<(), RowError> {
        let parsed = self.parse_values(named(values), false)?;
        let def = self.def();
        let nulls: Vec<&str> = parsed
            .iter()
            .filter(|(f, v)| {
                v.is_null() && !def.fields[*f].nillable && def.fields[*f].ty != FieldType::Boolean
            })
            .map(|(f, _)| def.fields[*f].name.as_str())
            .collect();
        if !nulls.is_empty() {
            return Err(RowError::new(
                "REQUIRED_FIELD_MISSING",
                format!("Required fields are missing: [{}]", nulls.join(", ")),
                &nulls,
            ));
        }
        let mut changes = Vec::new();
        for (f, v) in parsed {
            let v = v.into_value();
            let fd = &def.fields[f];
            if tracked(&fd.name) && row.values[f] != v {
                let dtype = match fd.ty {
                    FieldType::Currency => "Currency",
                    FieldType::Picklist => "DynamicEnum",
                    _ => "Text",
                };
                changes.push(HistoryEntry {
                    parent: idx,
                    field: fd.name.clone().into(),
                    old: row.values[f].clone(),
                    new: v.clone(),
                    dtype,
                });
            }
            row.values[f] = v;
        }
        self.check_unique(&row, Some(idx))?;
        self.touch(&mut row);
        self.history.extend(changes);
        self.put_draft(idx, &row);
        Ok(())
    }

    fn check_unique(&self, row: &Draft, me: Option<u64>) -> Result<(), RowError> {
        for (f, fd) in self.def().fields.iter().enumerate() {
            if !fd.unique {
                continue;
            }
            if let Some(v) = row.values[f].as_str()
                && let Some(other) = self.lookup_unique(f, v)
                && Some(other) != me
            {
                return Err(RowError::new(
                    "DUPLICATE_VALUE",
                    format!(
                        "duplicate value found: {} duplicates value on record with id: {}",
                        fd.name,
                        ids::make(&self.def().key_prefix, other)
                    ),
                    &[fd.name.as_str()],
                ));
            }
        }
        Ok(())
    }

    /// Validates and converts input values. Empty text means "leave unchanged" (§6.6) and is
    /// dropped; `FieldInput::Null` sets null.
    fn parse_values<'v>(
        &self,
        values: impl Iterator<Item = (Key<'v>, Input<'v>)>,
        insert: bool,
    ) -> Result<Vec<(usize, Parsed<'v>)>, RowError> {
        let def = self.def();
        let mut out = Vec::with_capacity(values.size_hint().0);
        let mut read_only = Vec::new();
        for (key, input) in values {
            let f = match key {
                Key::Name(name) => {
                    if name.eq_ignore_ascii_case("Id") && !insert {
                        continue;
                    }
                    let Some(f) = def.index(name) else {
                        return Err(RowError::new(
                            "INVALID_FIELD",
                            format!("No such column '{name}' on sobject of type {}", def.name),
                            &[name],
                        ));
                    };
                    f
                }
                Key::Index(f) => {
                    if !insert && def.fields[f].name.eq_ignore_ascii_case("Id") {
                        continue;
                    }
                    f
                }
            };
            let fd = &def.fields[f];
            if matches!(input, Input::Text("")) {
                continue;
            }
            if (insert && !fd.createable) || (!insert && !fd.updateable) {
                read_only.push(fd.name.as_str());
                continue;
            }
            out.push((f, parse_ref(fd, input)?));
        }
        if !read_only.is_empty() {
            return Err(RowError::new(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                format!(
                    "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                    read_only.join(", ")
                ),
                &read_only,
            ));
        }
        Ok(out)
    }
}

/// Converts one input to the field's value type, with Salesforce's per-field error codes.
pub fn parse_input(fd: &FieldDef, input: &FieldInput) -> Result<Value, RowError> {
    parse_ref(fd, Input::from(input)).map(Parsed::into_value)
}

/// Converts one text input to the field's value type (no `Json` / null handling), for the Bulk
/// layer's deserialization checks.
pub fn parse_text_value(fd: &FieldDef, text: &str) -> Result<Value, RowError> {
    parse_text(fd, text).map(Parsed::into_value)
}

fn parse_ref<'v>(fd: &FieldDef, input: Input<'v>) -> Result<Parsed<'v>, RowError> {
    match input {
        Input::Null | Input::Json(serde_json::Value::Null) => Ok(Parsed::Value(Value::Null)),
        Input::Json(serde_json::Value::String(s)) => parse_text(fd, s),
        Input::Text(s) => parse_text(fd, s),
        Input::Json(j) => parse_text(fd, &j.to_string()).map(|p| Parsed::Value(p.into_value())),
    }
}

/// Converts one text input to the field's value type; text-like fields stay borrowed.
fn parse_text<'v>(fd: &FieldDef, text: &'v str) -> Result<Parsed<'v>, RowError> {
    let wrong = |v: &str| {
        RowError::new(
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
            format!("{}: value not of required type: {v}", fd.label),
            &[fd.name.as_str()],
        )
    };
    use FieldType as T;
    Ok(Parsed::Value(match fd.ty {
        T::Boolean => {
            if text.eq_ignore_ascii_case("true") || text == "1" {
                Value::Bool(true)
            } else if text.eq_ignore_ascii_case("false") || text == "0" {
                Value::Bool(false)
            } else {
                return Err(wrong(text));
            }
        }
        T::Int | T::Long => Value::Int(text.trim().parse::<i64>().map_err(|_| wrong(text))?),
        T::Double | T::Currency | T::Percent => {
            let d: f64 = text.trim().parse().map_err(|_| wrong(text))?;
            let int_digits = fd.precision.saturating_sub(fd.scale);
            if !d.is_finite() || (int_digits > 0 && d.abs() >= 10f64.powi(int_digits as i32)) {
                return Err(RowError::new(
                    "NUMBER_OUTSIDE_VALID_RANGE",
                    format!(
                        "{}: value outside of valid range on numeric field: {text}",
                        fd.label
                    ),
                    &[fd.name.as_str()],
                ));
            }
            Value::Double(d)
        }
        T::Date => Value::Date(value::parse_date(text.trim()).ok_or_else(|| wrong(text))?),
        T::DateTime => {
            Value::DateTime(value::parse_datetime(text.trim()).ok_or_else(|| wrong(text))?)
        }
        T::Time => Value::Time(value::parse_time(text.trim()).ok_or_else(|| wrong(text))?),
        T::Base64 => Value::Blob(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| wrong("(base64)"))?
                .into(),
        ),
        T::Reference | T::Id => match ids::to18(text) {
            Some(id) => Value::str(id),
            None => {
                return Err(RowError::new(
                    "MALFORMED_ID",
                    format!("{}: id value of incorrect type: {text}", fd.label),
                    &[fd.name.as_str()],
                ));
            }
        },
        T::Location | T::Address | T::AnyType => return Err(wrong(text)),
        _ => {
            if fd.length > 0
                && text.len() > fd.length as usize
                && text.chars().count() > fd.length as usize
            {
                return Err(RowError::new(
                    "STRING_TOO_LONG",
                    format!(
                        "{}: data value too large: {} (max length={})",
                        fd.label, text, fd.length
                    ),
                    &[fd.name.as_str()],
                ));
            }
            if fd.ty == T::Picklist && fd.restricted_picklist && !fd.picklist.contains(&text) {
                return Err(RowError::new(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    format!(
                        "{}: bad value for restricted picklist field: {text}",
                        fd.label
                    ),
                    &[fd.name.as_str()],
                ));
            }
            if fd.ty == T::Email && !plausible_email(text) {
                return Err(RowError::new(
                    "INVALID_EMAIL_ADDRESS",
                    format!("{}: invalid email address: {text}", fd.label),
                    &[fd.name.as_str()],
                ));
            }
            return Ok(Parsed::Text(text));
        }
    }))
}

/// Salesforce's email check as far as the API shows it (`INVALID_EMAIL_ADDRESS`): one `@`, a
/// non-empty local part, a domain with a dot that neither starts nor ends it, no white space.
fn plausible_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    #[test]
    fn email_addresses_are_checked_like_salesforce() {
        for ok in ["a@b.co", "first.last+tag@example.org", "x_y@sub.domain.io"] {
            assert!(super::plausible_email(ok), "{ok}");
        }
        for bad in [
            "bad@",
            "@x.com",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "a@.com",
            "a@com.",
            "plain",
        ] {
            assert!(!super::plausible_email(bad), "{bad}");
        }
    }

    use super::*;

    fn store() -> Store {
        let schema = Arc::new(Schema::standard());
        let generator = Arc::new(GenCtx {
            seed: 1,
            rows: vec![10; schema.objects.len()],
            start_ms: 1_577_836_800_000,
            end_ms: 1_700_000_000_000,
            tie: 2,
            deleted_per_mille: 0,
        });
        Store::new(schema, generator)
    }

    fn opts(now: i64) -> WriteOptions {
        WriteOptions {
            now_ms: now,
            visible_after_ms: 0,
            bump_stamp_on_delete: true,
            user_id: ids::make("005", 0),
        }
    }

    fn text(pairs: &[(&str, &str)]) -> FieldValues {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), FieldInput::Text(v.to_string())))
            .collect()
    }

    #[test]
    fn insert_update_delete_round_trip_with_row_errors() {
        let st = store();
        let now = 1_800_000_000_500;
        let out = st
            .apply(
                "Account",
                &[
                    WriteOp::Insert(text(&[("Name", "New Co"), ("NumberOfEmployees", "12")])),
                    WriteOp::Insert(text(&[("Phone", "1")])),
                    WriteOp::Insert(text(&[("Name", "X"), ("Bogus__c", "1")])),
                ],
                &opts(now),
            )
            .unwrap();
        let RowOutcome::Ok { id, created: true } = &out[0] else {
            panic!("{out:?}")
        };
        let RowOutcome::Err(e) = &out[1] else {
            panic!()
        };
        assert_eq!(
            e.to_string(),
            "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name"
        );
        let RowOutcome::Err(e) = &out[2] else {
            panic!()
        };
        assert_eq!(e.code, "INVALID_FIELD");
        let snap = st.snapshot(now);
        let acc = snap.schema.index("Account").unwrap();
        let row = snap.row_by_id(acc, id).unwrap();
        let def = &snap.schema.objects[acc];
        assert_eq!(row.get(def.index("Name").unwrap()), Value::str("New Co"));
        assert_eq!(row.stamp(), 1_800_000_000_000);

        let out = st
            .apply(
                "Account",
                &[WriteOp::Delete { id: id.clone() }],
                &opts(now + 5000),
            )
            .unwrap();
        assert!(matches!(out[0], RowOutcome::Ok { .. }));
        let snap2 = st.snapshot(now + 5000);
        let row = snap2.row_by_id(acc, id).unwrap();
        assert!(!row.visible(false) && row.visible(true));
        assert_eq!(row.stamp(), 1_800_000_005_000);
        // The earlier snapshot is unaffected.
        assert!(snap.row_by_id(acc, id).unwrap().visible(false));
        let hist = snap2.schema.index("AccountHistory").unwrap();
        assert_eq!(snap2.objs[hist].overlay.rows.len(), 1);
    }

    #[test]
    fn upsert_matches_generated_external_ids_and_formulas_follow_inputs() {
        let st = store();
        let now = 1_800_000_000_000;
        let mut vals = text(&[
            ("External_Id__c", "EXT-3"),
            ("Amount__c", "100"),
            ("Tax_Rate__c", "10"),
        ]);
        vals.push(("Status__c".into(), FieldInput::Text("Paid".into())));
        let out = st
            .apply(
                "Invoice__c",
                &[WriteOp::Upsert {
                    key_field: "External_Id__c".into(),
                    values: vals,
                }],
                &opts(now),
            )
            .unwrap();
        assert_eq!(
            out[0],
            RowOutcome::Ok {
                id: ids::make("a01", 3),
                created: false
            }
        );
        let snap = st.snapshot(now);
        let inv = snap.schema.index("Invoice__c").unwrap();
        let def = &snap.schema.objects[inv];
        let row = snap.row(inv, 3).unwrap();
        assert_eq!(
            row.get(def.index("Total__c").unwrap()),
            Value::Double(110.0)
        );
        let bad = st
            .apply(
                "Invoice__c",
                &[WriteOp::Update {
                    id: ids::make("a01", 4),
                    values: text(&[("Status__c", "Nope")]),
                }],
                &opts(now),
            )
            .unwrap();
        let RowOutcome::Err(e) = &bad[0] else {
            panic!()
        };
        assert_eq!(e.code, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST");
    }
}
