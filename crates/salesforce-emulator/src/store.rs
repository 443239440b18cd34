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
use crate::schema::{FieldDef, FieldType, Formula, Schema, Source};
use crate::value::{self, Value};
use base64::Engine;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock};

/// A written (inserted, updated or deleted) row: every stored field materialised.
#[derive(Debug, Clone)]
pub struct StoredRow {
    /// One value per field of the object (computed fields hold `Null`).
    pub values: Vec<Value>,
    /// Soft-deleted (in the recycle bin).
    pub deleted: bool,
    /// Hard-deleted: invisible everywhere.
    pub purged: bool,
    /// When it was deleted (ms).
    pub deleted_at: Option<i64>,
    /// Invisible to reads before this instant (late-visible records fault).
    pub visible_from: i64,
}

/// Written rows of one object.
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    /// Row index → written row.
    pub rows: HashMap<u64, Arc<StoredRow>>,
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
            Some(s) => s.values.get(f).cloned().unwrap_or(Value::Null),
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
            Some(s) => match s.values.get(def.stamp) {
                Some(Value::DateTime(ms)) => *ms,
                _ => 0,
            },
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
        let obj = self
            .schema
            .index(object)
            .ok_or_else(|| StoreError::UnknownObject {
                object: object.to_string(),
            })?;
        let def = &self.schema.objects[obj];
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
        let mut data = match self.data.write() {
            Ok(d) => d,
            Err(p) => p.into_inner(),
        };
        let mut history: Vec<(String, String, Value, Value, String)> = Vec::new();
        let mut out = Vec::with_capacity(ops.len());
        {
            let mut w = Writer {
                schema: &self.schema,
                generator: &self.generator,
                obj,
                od: &mut data[obj],
                opts,
                history: &mut history,
            };
            for op in ops {
                out.push(match w.op(op) {
                    Ok((id, created)) => RowOutcome::Ok { id, created },
                    Err(e) => RowOutcome::Err(e),
                });
            }
        }
        if !history.is_empty() {
            self.append_history(&mut data, obj, history, opts);
        }
        Ok(out)
    }

    /// Appends field-history rows (§4.6) for changes of tracked fields.
    fn append_history(
        &self,
        data: &mut [ObjData],
        obj: usize,
        entries: Vec<(String, String, Value, Value, String)>,
        opts: &WriteOptions,
    ) {
        let name = &self.schema.objects[obj].name;
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
        for (parent_id, field, old, new, dtype) in entries {
            let idx = ov.next_idx;
            ov.next_idx += 1;
            let mut values = vec![Value::Null; hdef.fields.len()];
            for (k, f) in hdef.fields.iter().enumerate() {
                values[k] = match (&f.source, f.name.as_str()) {
                    (Source::Id, _) => Value::str(ids::make(&hdef.key_prefix, idx)),
                    (Source::IsDeleted, _) => Value::Bool(false),
                    (Source::Stamp | Source::CreatedDate, _) => Value::DateTime(now),
                    (Source::UserRef, _) => Value::str(opts.user_id.as_str()),
                    (_, "Field") => Value::str(field.as_str()),
                    (_, "DataType") => Value::str(dtype.as_str()),
                    (_, "OldValue") => old.clone(),
                    (_, "NewValue") => new.clone(),
                    (_, n) if f.ty == FieldType::Reference && n.ends_with("Id") => {
                        Value::str(parent_id.as_str())
                    }
                    _ => Value::Null,
                };
            }
            ov.by_stamp.insert((now, idx));
            ov.rows.insert(
                idx,
                Arc::new(StoredRow {
                    values,
                    deleted: false,
                    purged: false,
                    deleted_at: None,
                    visible_from: now,
                }),
            );
        }
    }
}

/// Fields whose changes are recorded in the history object.
fn tracked(field: &str) -> bool {
    matches!(
        field,
        "Name" | "Status__c" | "Amount__c" | "Industry" | "Type"
    )
}

struct Writer<'a> {
    schema: &'a Schema,
    generator: &'a GenCtx,
    obj: usize,
    od: &'a mut ObjData,
    opts: &'a WriteOptions,
    history: &'a mut Vec<(String, String, Value, Value, String)>,
}

impl<'a> Writer<'a> {
    fn def(&self) -> &'a crate::schema::ObjectDef {
        &self.schema.objects[self.obj]
    }

    fn now(&self) -> i64 {
        self.opts.now_ms - self.opts.now_ms.rem_euclid(1000)
    }

    /// The current row `idx` with all stored fields materialised.
    fn current(&self, idx: u64) -> Option<StoredRow> {
        if let Some(r) = self.od.overlay.rows.get(&idx) {
            return Some(r.as_ref().clone());
        }
        if idx >= self.od.base_rows {
            return None;
        }
        let def = self.def();
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
        Some(StoredRow {
            values,
            deleted,
            purged: false,
            deleted_at: deleted.then(|| self.generator.stamp(self.obj, idx)),
            visible_from: i64::MIN,
        })
    }

    fn put(&mut self, idx: u64, row: StoredRow) {
        let def = &self.schema.objects[self.obj];
        let new_stamp = match row.values.get(def.stamp) {
            Some(Value::DateTime(ms)) => *ms,
            _ => 0,
        };
        let old_stamp = match self.od.overlay.rows.get(&idx) {
            Some(r) => match r.values.get(def.stamp) {
                Some(Value::DateTime(ms)) => Some(*ms),
                _ => Some(0),
            },
            None => None,
        };
        let ov = Arc::make_mut(&mut self.od.overlay);
        if let Some(old) = old_stamp {
            ov.by_stamp.remove(&(old, idx));
        }
        for (f, fd) in def.fields.iter().enumerate() {
            if fd.unique
                && let Some(s) = row.values[f].as_str()
            {
                ov.unique.insert((f, s.to_ascii_lowercase()), idx);
            }
        }
        ov.by_stamp.insert((new_stamp, idx));
        ov.rows.insert(idx, Arc::new(row));
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

    fn existing(&self, id: &str) -> Result<(u64, StoredRow), RowError> {
        let idx = self.id_of(id)?;
        match self.current(idx) {
            Some(r) if !r.purged => Ok((idx, r)),
            _ => Err(RowError::new(
                "INVALID_CROSS_REFERENCE_KEY",
                "invalid cross reference id",
                &[],
            )),
        }
    }

    fn op(&mut self, op: &WriteOp) -> Result<(String, bool), RowError> {
        let prefix = self.def().key_prefix.clone();
        match op {
            WriteOp::Insert(values) => self
                .insert(values)
                .map(|idx| (ids::make(&prefix, idx), true)),
            WriteOp::Update { id, values } => {
                if id.is_empty() {
                    return Err(RowError::new(
                        "MISSING_ARGUMENT",
                        "Id not specified in an update call",
                        &["Id"],
                    ));
                }
                let (idx, row) = self.existing(id)?;
                if row.deleted {
                    return Err(RowError::new("ENTITY_IS_DELETED", "entity is deleted", &[]));
                }
                self.update(idx, row, values)?;
                Ok((ids::make(&prefix, idx), false))
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
                        Ok((ids::make(&prefix, idx), false))
                    }
                    None => self
                        .insert(values)
                        .map(|idx| (ids::make(&prefix, idx), true)),
                }
            }
            WriteOp::Delete { id } => {
                let (idx, mut row) = self.existing(id)?;
                if row.deleted {
                    return Err(RowError::new("ENTITY_IS_DELETED", "entity is deleted", &[]));
                }
                row.deleted = true;
                row.deleted_at = Some(self.now());
                self.set_bool(&mut row, "IsDeleted", true);
                if self.opts.bump_stamp_on_delete {
                    self.touch(&mut row);
                }
                self.put(idx, row);
                Ok((ids::make(&prefix, idx), false))
            }
            WriteOp::HardDelete { id } => {
                let (idx, mut row) = self.existing(id)?;
                row.purged = true;
                row.deleted = true;
                row.deleted_at = Some(self.now());
                self.set_bool(&mut row, "IsDeleted", true);
                self.put(idx, row);
                Ok((ids::make(&prefix, idx), false))
            }
            WriteOp::Undelete { id } => {
                let (idx, mut row) = self.existing(id)?;
                if !row.deleted {
                    return Err(RowError::new(
                        "UNDELETE_FAILED",
                        "Entity is not in the recycle bin",
                        &[],
                    ));
                }
                row.deleted = false;
                row.deleted_at = None;
                self.set_bool(&mut row, "IsDeleted", false);
                if self.opts.bump_stamp_on_delete {
                    self.touch(&mut row);
                }
                self.put(idx, row);
                Ok((ids::make(&prefix, idx), false))
            }
        }
    }

    fn set_bool(&self, row: &mut StoredRow, name: &str, v: bool) {
        if let Some(f) = self.def().index(name) {
            row.values[f] = Value::Bool(v);
        }
    }

    /// Stamps the row as modified now by the API user (§4.4).
    fn touch(&self, row: &mut StoredRow) {
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
        row.visible_from = self.opts.now_ms + self.opts.visible_after_ms;
    }

    fn lookup_unique(&self, field: usize, key: &str) -> Option<u64> {
        self.od.unique_match(field, key, |idx| {
            self.current(idx).is_some_and(|r| {
                !r.purged
                    && r.values[field]
                        .as_str()
                        .is_some_and(|v| v.eq_ignore_ascii_case(key))
            })
        })
    }

    fn insert(&mut self, values: &FieldValues) -> Result<u64, RowError> {
        let def = self.def();
        let mut row = StoredRow {
            values: vec![Value::Null; def.fields.len()],
            deleted: false,
            purged: false,
            deleted_at: None,
            visible_from: i64::MIN,
        };
        let parsed = self.parse_values(values, true)?;
        let given: Vec<usize> = parsed.iter().map(|(f, _)| *f).collect();
        let missing: Vec<&str> = def
            .fields
            .iter()
            .enumerate()
            .filter(|(f, fd)| {
                !fd.nillable
                    && fd.createable
                    && !fd.defaulted_on_create
                    && fd.ty != FieldType::Boolean
                    && !given.contains(f)
            })
            .map(|(_, fd)| fd.name.as_str())
            .collect();
        let nulls: Vec<&str> = parsed
            .iter()
            .filter(|(f, v)| {
                v.is_null() && !def.fields[*f].nillable && def.fields[*f].ty != FieldType::Boolean
            })
            .map(|(f, _)| def.fields[*f].name.as_str())
            .collect();
        let missing: Vec<&str> = missing.into_iter().chain(nulls).collect();
        if !missing.is_empty() {
            return Err(RowError::new(
                "REQUIRED_FIELD_MISSING",
                format!("Required fields are missing: [{}]", missing.join(", ")),
                &missing,
            ));
        }
        let idx = self.od.overlay.next_idx;
        let now = self.now();
        for (f, fd) in def.fields.iter().enumerate() {
            row.values[f] = match &fd.source {
                Source::Id => Value::str(ids::make(&def.key_prefix, idx)),
                Source::IsDeleted => Value::Bool(false),
                Source::Stamp | Source::CreatedDate | Source::LastModifiedDate => {
                    Value::DateTime(now)
                }
                Source::UserRef => Value::str(self.opts.user_id.as_str()),
                Source::Gen(crate::schema::Gen::Key(p)) if fd.auto_number => {
                    Value::str(format!("{p}-{idx}"))
                }
                Source::Gen(_) if fd.ty == FieldType::Boolean => Value::Bool(false),
                _ => Value::Null,
            };
        }
        for (f, v) in parsed {
            row.values[f] = v;
        }
        self.check_unique(&row, None)?;
        row.visible_from = self.opts.now_ms + self.opts.visible_after_ms;
        Arc::make_mut(&mut self.od.overlay).next_idx += 1;
        let id = ids::make(&def.key_prefix, idx);
        if def.name == "Account" || def.name == "Invoice__c" {
            self.history.push((
                id,
                "created".into(),
                Value::Null,
                Value::Null,
                "Text".into(),
            ));
        }
        self.put(idx, row);
        Ok(idx)
    }

    fn update(
        &mut self,
        idx: u64,
        mut row: StoredRow,
        values: &FieldValues,
    ) -> Result<(), RowError> {
        let parsed = self.parse_values(values, false)?;
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
        let id = ids::make(&def.key_prefix, idx);
        let mut changes = Vec::new();
        for (f, v) in parsed {
            let fd = &def.fields[f];
            if tracked(&fd.name) && row.values[f] != v {
                let dtype = match fd.ty {
                    FieldType::Currency => "Currency",
                    FieldType::Picklist => "DynamicEnum",
                    _ => "Text",
                };
                changes.push((
                    id.clone(),
                    fd.name.clone(),
                    row.values[f].clone(),
                    v.clone(),
                    dtype.to_string(),
                ));
            }
            row.values[f] = v;
        }
        self.check_unique(&row, Some(idx))?;
        self.touch(&mut row);
        self.history.extend(changes);
        self.put(idx, row);
        Ok(())
    }

    fn check_unique(&self, row: &StoredRow, me: Option<u64>) -> Result<(), RowError> {
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
    fn parse_values(
        &self,
        values: &FieldValues,
        insert: bool,
    ) -> Result<Vec<(usize, Value)>, RowError> {
        let def = self.def();
        let mut out = Vec::with_capacity(values.len());
        let mut read_only = Vec::new();
        for (name, input) in values {
            if name.eq_ignore_ascii_case("Id") && !insert {
                continue;
            }
            let Some(f) = def.index(name) else {
                return Err(RowError::new(
                    "INVALID_FIELD",
                    format!("No such column '{name}' on sobject of type {}", def.name),
                    &[name.as_str()],
                ));
            };
            let fd = &def.fields[f];
            if matches!(input, FieldInput::Text(s) if s.is_empty()) {
                continue;
            }
            if (insert && !fd.createable) || (!insert && !fd.updateable) {
                read_only.push(fd.name.as_str());
                continue;
            }
            out.push((f, parse_input(fd, input)?));
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
    let wrong = |v: &str| {
        RowError::new(
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
            format!("{}: value not of required type: {v}", fd.label),
            &[fd.name.as_str()],
        )
    };
    let text: String = match input {
        FieldInput::Null => return Ok(Value::Null),
        FieldInput::Json(serde_json::Value::Null) => return Ok(Value::Null),
        FieldInput::Json(serde_json::Value::String(s)) | FieldInput::Text(s) => s.clone(),
        FieldInput::Json(j) => j.to_string(),
    };
    use FieldType as T;
    Ok(match fd.ty {
        T::Boolean => match text.to_ascii_lowercase().as_str() {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => return Err(wrong(&text)),
        },
        T::Int => Value::Int(text.trim().parse::<i64>().map_err(|_| wrong(&text))?),
        T::Double | T::Currency | T::Percent => {
            let d: f64 = text.trim().parse().map_err(|_| wrong(&text))?;
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
        T::Date => Value::Date(value::parse_date(text.trim()).ok_or_else(|| wrong(&text))?),
        T::DateTime => {
            Value::DateTime(value::parse_datetime(text.trim()).ok_or_else(|| wrong(&text))?)
        }
        T::Time => Value::Time(value::parse_time(text.trim()).ok_or_else(|| wrong(&text))?),
        T::Base64 => Value::Blob(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| wrong("(base64)"))?
                .into(),
        ),
        T::Reference | T::Id => match ids::to18(&text) {
            Some(id) => Value::str(id),
            None => {
                return Err(RowError::new(
                    "MALFORMED_ID",
                    format!("{}: id value of incorrect type: {text}", fd.label),
                    &[fd.name.as_str()],
                ));
            }
        },
        T::Location | T::Address | T::AnyType => return Err(wrong(&text)),
        _ => {
            if fd.length > 0 && text.chars().count() > fd.length as usize {
                return Err(RowError::new(
                    "STRING_TOO_LONG",
                    format!(
                        "{}: data value too large: {} (max length={})",
                        fd.label, text, fd.length
                    ),
                    &[fd.name.as_str()],
                ));
            }
            if fd.ty == T::Picklist
                && fd.restricted_picklist
                && !fd.picklist.iter().any(|p| *p == text)
            {
                return Err(RowError::new(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    format!(
                        "{}: bad value for restricted picklist field: {text}",
                        fd.label
                    ),
                    &[fd.name.as_str()],
                ));
            }
            if fd.ty == T::Email && (!text.contains('@') || text.contains(' ')) {
                return Err(RowError::new(
                    "INVALID_EMAIL_ADDRESS",
                    format!("{}: invalid email address: {text}", fd.label),
                    &[fd.name.as_str()],
                ));
            }
            Value::str(text)
        }
    })
}

#[cfg(test)]
mod tests {
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
