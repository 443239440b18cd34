//! Query execution over a snapshot, and record rendering (REST JSON §2.5/§2.7, Bulk CSV §5.5).
//!
//! Rows are streamed, never materialised, when the requested order is the generation order:
//! no ORDER BY or `ORDER BY <stamp> [ASC][, Id ASC]` scans in stamp order (with the stamp range of
//! the WHERE clause pushed down to a binary search), and `ORDER BY Id [ASC]` scans in row order.
//! Other orders collect the matching row indices and sort them (fine for test-sized data).

use crate::ids;
use crate::schema::{FieldDef, FieldType, Source};
use crate::soql::{FieldRef, Op, Operand, Pred, Query};
use crate::store::{RowRef, Snapshot};
use crate::value::{self, Value, compare};
use base64::Engine;
use serde_json::{Map, Value as Json, json};
use std::cmp::Ordering;
use std::collections::btree_set;
use std::ops::Bound;
use std::sync::Arc;

/// How rows are enumerated.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Stamp order (generation order).
    Stamp,
    /// Id (row index) order.
    Id,
    /// Pre-sorted row indices.
    Sorted(Arc<Vec<u64>>),
}

/// A resume position: everything up to and including it has been consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pos {
    /// Nothing consumed.
    Start,
    /// After this (stamp, index) key.
    Stamp(i64, u64),
    /// After this row index.
    Id(u64),
    /// After this many sorted entries.
    Sorted(usize),
}

/// A query bound to a snapshot.
#[derive(Debug, Clone)]
pub struct Exec {
    /// The query.
    pub query: Arc<Query>,
    /// The snapshot it reads.
    pub snap: Arc<Snapshot>,
    /// queryAll semantics (§2.5, §4.5).
    pub include_deleted: bool,
    /// Enumeration mode.
    pub mode: Mode,
    /// Inclusive stamp bounds pushed down from WHERE.
    pub bounds: (i64, i64),
    /// First row index an `Id > / >= / =` conjunct allows (Id-order scans start there).
    pub id_floor: u64,
}

impl Exec {
    /// Plans the query: picks a scan when the order allows it, otherwise sorts.
    pub fn new(query: Arc<Query>, snap: Arc<Snapshot>, include_deleted: bool) -> Exec {
        let schema = snap.schema.clone();
        let def = &schema.objects[query.object];
        let is = |o: &crate::soql::OrderItem, f: usize| {
            o.field.parent.is_none() && o.field.field == f && !o.desc
        };
        let id_field = def.index("Id").unwrap_or(0);
        let mode = match query.order.as_slice() {
            [] => Mode::Stamp,
            [a] if is(a, def.stamp) => Mode::Stamp,
            [a, b] if is(a, def.stamp) && is(b, id_field) => Mode::Stamp,
            [a] if is(a, id_field) => Mode::Id,
            _ => Mode::Stamp,
        };
        let bounds = query
            .filter
            .as_ref()
            .map(|f| stamp_bounds(f, def.stamp))
            .unwrap_or((i64::MIN, i64::MAX));
        let id_floor = query
            .filter
            .as_ref()
            .map(|f| id_floor(f, id_field, &def.key_prefix))
            .unwrap_or(0);
        let mut exec = Exec {
            query,
            snap,
            include_deleted,
            mode,
            bounds,
            id_floor,
        };
        let scan_order = exec.query.order.is_empty()
            || matches!(exec.mode, Mode::Id)
            || (exec.query.order.len() <= 2
                && is(&exec.query.order[0], def.stamp)
                && exec.query.order.get(1).is_none_or(|b| is(b, id_field)));
        let needs_sort = !scan_order;
        if needs_sort {
            let mut keyed: Vec<(Vec<Value>, u64)> = exec
                .rows(&Pos::Start)
                .map(|(r, _)| {
                    let keys = exec
                        .query
                        .order
                        .iter()
                        .map(|o| field_value(&o.field, &r))
                        .collect();
                    (keys, r.idx)
                })
                .collect();
            let order = exec.query.order.clone();
            keyed.sort_by(|a, b| {
                for (k, o) in order.iter().enumerate() {
                    let (x, y) = (&a.0[k], &b.0[k]);
                    let c = match (x.is_null(), y.is_null()) {
                        (true, true) => Ordering::Equal,
                        (true, false) => {
                            if o.nulls_first {
                                Ordering::Less
                            } else {
                                Ordering::Greater
                            }
                        }
                        (false, true) => {
                            if o.nulls_first {
                                Ordering::Greater
                            } else {
                                Ordering::Less
                            }
                        }
                        _ if o.desc => cmp_typed(o.field.ty, y, x),
                        _ => cmp_typed(o.field.ty, x, y),
                    };
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                Ordering::Equal
            });
            exec.mode = Mode::Sorted(Arc::new(keyed.into_iter().map(|(_, i)| i).collect()));
        }
        exec
    }

    /// Matching, visible rows after `pos`, each with the position just after it.
    pub fn rows<'a>(&'a self, pos: &Pos) -> Box<dyn Iterator<Item = (RowRef<'a>, Pos)> + 'a> {
        let inc = self.include_deleted;
        let filter = self.query.filter.as_ref();
        let keep = move |r: &RowRef<'_>| r.visible(inc) && filter.is_none_or(|f| eval(f, r));
        match &self.mode {
            Mode::Stamp => Box::new(
                StampScan::new(&self.snap, self.query.object, pos, self.bounds)
                    .filter(move |r| keep(r))
                    .map(|r| {
                        let (s, i) = r.key();
                        (r, Pos::Stamp(s, i))
                    }),
            ),
            Mode::Id => {
                let od = &self.snap.objs[self.query.object];
                let start = match pos {
                    Pos::Id(i) => i + 1,
                    _ => 0,
                }
                .max(self.id_floor);
                let obj = self.query.object;
                Box::new(
                    (start..od.overlay.next_idx)
                        .filter_map(move |i| self.snap.row(obj, i))
                        .filter(move |r| keep(r))
                        .map(|r| {
                            let i = r.idx;
                            (r, Pos::Id(i))
                        }),
                )
            }
            Mode::Sorted(list) => {
                let start = match pos {
                    Pos::Sorted(n) => *n,
                    _ => 0,
                };
                let obj = self.query.object;
                Box::new(
                    list.iter()
                        .enumerate()
                        .skip(start)
                        .filter_map(move |(k, &i)| {
                            self.snap.row(obj, i).map(|r| (r, Pos::Sorted(k + 1)))
                        }),
                )
            }
        }
    }

    /// Rows examined by a full pass (for the QUERY_TIMEOUT fault) and rows matched.
    pub fn count(&self) -> (u64, u64) {
        (self.examined(), self.matched(u64::MAX))
    }

    /// Rows a full pass examines (the stamp range pushed down, every row otherwise).
    pub fn examined(&self) -> u64 {
        match &self.mode {
            Mode::Stamp => StampScan::new(&self.snap, self.query.object, &Pos::Start, self.bounds)
                .count() as u64,
            _ => self.snap.objs[self.query.object].overlay.next_idx,
        }
    }

    /// Matching rows, counting stops at `cap`.
    pub fn matched(&self, cap: u64) -> u64 {
        self.rows(&Pos::Start)
            .take(usize::try_from(cap).unwrap_or(usize::MAX))
            .count() as u64
    }
}

/// Lowest row index allowed by top-level `Id >`, `Id >=` or `Id =` conjuncts (ids sort in row
/// order within an object, see [`crate::ids`]).
fn id_floor(p: &Pred, id_field: usize, prefix: &str) -> u64 {
    let one = |p: &Pred| -> u64 {
        match p {
            Pred::Cmp(f, op @ (Op::Gt | Op::Ge | Op::Eq), Operand::Value(Value::Str(id)))
                if f.parent.is_none() && f.field == id_field =>
            {
                match ids::parse(id) {
                    Some((pre, idx)) if pre == prefix => {
                        if *op == Op::Gt {
                            idx + 1
                        } else {
                            idx
                        }
                    }
                    _ => 0,
                }
            }
            _ => 0,
        }
    };
    match p {
        Pred::And(items) => items.iter().map(one).max().unwrap_or(0),
        other => one(other),
    }
}

/// Inclusive stamp bounds implied by top-level conjuncts on the stamp field.
fn stamp_bounds(p: &Pred, stamp: usize) -> (i64, i64) {
    let mut lo = i64::MIN;
    let mut hi = i64::MAX;
    let mut one = |p: &Pred| {
        if let Pred::Cmp(f, op, operand) = p
            && f.parent.is_none()
            && f.field == stamp
        {
            let (a, b) = match operand {
                Operand::Value(Value::DateTime(ms)) => (*ms, *ms + 1),
                Operand::Range(a, b) => (*a, *b),
                _ => return,
            };
            match op {
                Op::Eq => {
                    lo = lo.max(a);
                    hi = hi.min(b - 1);
                }
                Op::Ge => lo = lo.max(a),
                Op::Gt => lo = lo.max(b),
                Op::Lt => hi = hi.min(a - 1),
                Op::Le => hi = hi.min(b - 1),
                Op::Ne => {}
            }
        }
    };
    match p {
        Pred::And(items) => items.iter().for_each(&mut one),
        other => one(other),
    }
    (lo, hi)
}

/// Merges generated rows (stamp order by construction) with written rows (kept sorted by stamp).
struct StampScan<'a> {
    snap: &'a Snapshot,
    obj: usize,
    base_i: u64,
    base_end: u64,
    hi: i64,
    ov: btree_set::Range<'a, (i64, u64)>,
    ov_next: Option<(i64, u64)>,
}

impl<'a> StampScan<'a> {
    fn new(snap: &'a Snapshot, obj: usize, pos: &Pos, (lo, hi): (i64, i64)) -> StampScan<'a> {
        let od = &snap.objs[obj];
        let g = &snap.generator;
        let after = match pos {
            Pos::Stamp(s, i) => Some((*s, *i)),
            _ => None,
        };
        // First generated row with stamp >= lo and key > after (keys increase with the index).
        let first = partition(od.base_rows, |i| {
            let k = (g.stamp(obj, i), i);
            k.0 < lo || after.is_some_and(|a| k <= a)
        });
        let start = match after {
            Some(a) if (a.0, a.1) >= (lo, 0) => Bound::Excluded(a),
            _ => Bound::Included((lo, 0)),
        };
        let mut ov = od.overlay.by_stamp.range((start, Bound::Unbounded));
        let ov_next = ov.next().copied();
        StampScan {
            snap,
            obj,
            base_i: first,
            base_end: od.base_rows,
            hi,
            ov,
            ov_next,
        }
    }
}

fn partition(n: u64, pred: impl Fn(u64) -> bool) -> u64 {
    let (mut lo, mut hi) = (0u64, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

impl<'a> Iterator for StampScan<'a> {
    type Item = RowRef<'a>;

    fn next(&mut self) -> Option<RowRef<'a>> {
        let od = &self.snap.objs[self.obj];
        let overlay_rows = &od.overlay.rows;
        while self.base_i < self.base_end
            && !overlay_rows.is_empty()
            && overlay_rows.contains_key(&self.base_i)
        {
            self.base_i += 1;
        }
        let base = if self.base_i < self.base_end {
            let st = self.snap.generator.stamp(self.obj, self.base_i);
            if st > self.hi {
                self.base_end = self.base_i;
                None
            } else {
                Some((st, self.base_i))
            }
        } else {
            None
        };
        let ov = self.ov_next.filter(|k| k.0 <= self.hi);
        let take_base = match (base, ov) {
            (None, None) => return None,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(b), Some(o)) => b < o,
        };
        let idx = if take_base {
            self.base_i += 1;
            base?.1
        } else {
            self.ov_next = self.ov.next().copied();
            ov?.1
        };
        Some(RowRef {
            snap: self.snap,
            obj: self.obj,
            idx,
            stored: overlay_rows.get(&idx).map(|r| r.as_ref()),
        })
    }
}

/// Rows whose stamp lies in `[lo, hi]` (queryAll visibility), plus, when `deleted_too`, written
/// rows deleted at any stamp (their deletion time may differ from the stamp when deletes do not bump
/// it, §9.5). Used by getDeleted / getUpdated.
pub fn scan_range(
    snap: &Snapshot,
    obj: usize,
    lo: i64,
    hi: i64,
    deleted_too: bool,
) -> Vec<RowRef<'_>> {
    let mut out: Vec<RowRef<'_>> = StampScan::new(snap, obj, &Pos::Start, (lo, hi))
        .filter(|r| r.visible(true))
        .collect();
    if deleted_too {
        for (&idx, row) in &snap.objs[obj].overlay.rows {
            let r = RowRef {
                snap,
                obj,
                idx,
                stored: Some(row.as_ref()),
            };
            let st = r.stamp();
            if row.deleted && !row.purged && (st < lo || st > hi) {
                out.push(r);
            }
        }
    }
    out
}

/// Value of a (possibly parent) field of a row.
pub fn field_value(f: &FieldRef, r: &RowRef<'_>) -> Value {
    match f.parent {
        None => r.get(f.field),
        Some((po, pf)) => match r
            .get(f.field)
            .as_str()
            .and_then(|id| r.snap.row_by_id(po, id))
        {
            Some(p) if p.visible(false) => p.get(pf),
            _ => Value::Null,
        },
    }
}

fn eval(p: &Pred, r: &RowRef<'_>) -> bool {
    match p {
        Pred::And(items) => items.iter().all(|p| eval(p, r)),
        Pred::Or(items) => items.iter().any(|p| eval(p, r)),
        Pred::Not(p) => !eval(p, r),
        Pred::Cmp(f, op, operand) => {
            let v = field_value(f, r);
            match operand {
                Operand::Value(Value::Null) => match op {
                    Op::Eq => v.is_null(),
                    _ => !v.is_null(),
                },
                Operand::Value(lit) => {
                    if v.is_null() {
                        // SOQL `!=` keeps nulls.
                        return *op == Op::Ne;
                    }
                    let c = cmp_typed(f.ty, &v, lit);
                    match op {
                        Op::Eq => c == Ordering::Equal,
                        Op::Ne => c != Ordering::Equal,
                        Op::Lt => c == Ordering::Less,
                        Op::Le => c != Ordering::Greater,
                        Op::Gt => c == Ordering::Greater,
                        Op::Ge => c != Ordering::Less,
                    }
                }
                Operand::Range(lo, hi) => {
                    let x = match v {
                        Value::Date(d) => i64::from(d),
                        Value::DateTime(ms) => ms,
                        _ => return *op == Op::Ne,
                    };
                    match op {
                        Op::Eq => *lo <= x && x < *hi,
                        Op::Ne => !(*lo <= x && x < *hi),
                        Op::Lt => x < *lo,
                        Op::Le => x < *hi,
                        Op::Gt => x >= *hi,
                        Op::Ge => x >= *lo,
                    }
                }
            }
        }
        Pred::In(f, neg, list) => {
            let v = field_value(f, r);
            let hit = list.iter().any(|l| {
                if l.is_null() || v.is_null() {
                    l.is_null() && v.is_null()
                } else {
                    cmp_typed(f.ty, &v, l) == Ordering::Equal
                }
            });
            hit != *neg
        }
        Pred::Like(f, pat) => match field_value(f, r) {
            v @ (Value::Str(_) | Value::Lit(_)) => like(v.as_str().unwrap_or(""), pat),
            _ => false,
        },
    }
}

fn cmp_typed(ty: FieldType, v: &Value, lit: &Value) -> Ordering {
    match (ty, v, lit) {
        (FieldType::Id | FieldType::Reference, Value::Str(a), Value::Str(b)) => {
            a.as_str().cmp(b.as_str())
        }
        _ => compare(v, lit),
    }
}

/// Case-insensitive LIKE with `%`, `_` and backslash escapes.
fn like(s: &str, pat: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum P {
        Any,
        One,
        Ch(char),
    }
    let mut ps = Vec::new();
    let mut it = pat.chars();
    while let Some(c) = it.next() {
        ps.push(match c {
            '%' => P::Any,
            '_' => P::One,
            '\\' => P::Ch(it.next().unwrap_or('\\')),
            c => P::Ch(c),
        });
    }
    let s: Vec<char> = s.chars().flat_map(char::to_lowercase).collect();
    let ps: Vec<P> = ps
        .into_iter()
        .map(|p| match p {
            P::Ch(c) => P::Ch(c.to_lowercase().next().unwrap_or(c)),
            o => o,
        })
        .collect();
    // Iterative wildcard matching.
    let (mut si, mut pi) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while si < s.len() {
        if pi < ps.len() && (ps[pi] == P::One || ps[pi] == P::Ch(s[si])) {
            si += 1;
            pi += 1;
        } else if pi < ps.len() && ps[pi] == P::Any {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < ps.len() && ps[pi] == P::Any {
        pi += 1;
    }
    pi == ps.len()
}

/// How REST renders `base64` fields in query results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Base64Rest {
    /// The blob's relative URL (`/services/data/vXX.X/sobjects/Attachment/<id>/Body`), as
    /// Salesforce does for blob fields in query results.
    BlobUrl,
    /// The base64 text itself.
    Inline,
}

/// Renders one record as REST JSON (§2.5: `attributes` first, canonical field names, §2.7 values).
pub fn record_json(r: &RowRef<'_>, select: &[FieldRef], version: &str, b64: Base64Rest) -> Json {
    let schema = &r.snap.schema;
    let def = &schema.objects[r.obj];
    let id = r.id();
    let mut m = Map::new();
    m.insert("attributes".into(), attributes(&def.name, &id, version));
    for f in select {
        match f.parent {
            None => {
                let fd = &def.fields[f.field];
                m.insert(
                    fd.name.clone(),
                    field_json(r, f.field, fd, version, b64, &def.name, &id),
                );
            }
            Some((po, pf)) => {
                let rel = def.fields[f.field]
                    .relationship_name
                    .clone()
                    .unwrap_or_default();
                let parent = r
                    .get(f.field)
                    .as_str()
                    .and_then(|pid| r.snap.row_by_id(po, pid))
                    .filter(|p| p.visible(false));
                let Some(p) = parent else {
                    m.insert(rel, Json::Null);
                    continue;
                };
                let pdef = &schema.objects[po];
                let pid = p.id();
                let entry = m.entry(rel).or_insert_with(
                    || json!({"attributes": attributes(&pdef.name, &pid, version)}),
                );
                if let Json::Object(pm) = entry {
                    let pfd = &pdef.fields[pf];
                    pm.insert(
                        pfd.name.clone(),
                        field_json(&p, pf, pfd, version, b64, &pdef.name, &pid),
                    );
                }
            }
        }
    }
    Json::Object(m)
}

fn attributes(object: &str, id: &str, version: &str) -> Json {
    json!({"type": object, "url": format!("/services/data/{version}/sobjects/{object}/{id}")})
}

/// JSON value of one field (§2.7).
pub fn field_json(
    r: &RowRef<'_>,
    f: usize,
    fd: &FieldDef,
    version: &str,
    b64: Base64Rest,
    object: &str,
    id: &str,
) -> Json {
    match &fd.source {
        Source::Address(p) => {
            let parts: Vec<Value> = p.iter().map(|&i| r.get(i)).collect();
            if parts.iter().all(Value::is_null) {
                return Json::Null;
            }
            let j = |k: usize| value_json(&parts[k], FieldType::String);
            let n = |k: usize| value_json(&parts[k], FieldType::Double);
            let def = &r.snap.schema.objects[r.obj];
            let coded = def.fields[p[2]].name.ends_with("StateCode__s");
            if coded {
                // §2.7: custom address fields always use state/country picklists, so the value
                // carries the codes and their labels.
                let label = |k: usize, f: fn(&str) -> Option<&'static str>| {
                    parts[k]
                        .as_str()
                        .map(|c| Json::from(f(c).unwrap_or(c)))
                        .unwrap_or(Json::Null)
                };
                return json!({
                    "city": j(1), "country": label(4, crate::schema::country_label),
                    "countryCode": j(4), "geocodeAccuracy": j(7), "latitude": n(5),
                    "longitude": n(6), "postalCode": j(3),
                    "state": label(2, crate::schema::state_label), "stateCode": j(2),
                    "street": j(0)
                });
            }
            json!({
                "city": j(1), "country": j(4), "geocodeAccuracy": j(7), "latitude": n(5),
                "longitude": n(6), "postalCode": j(3), "state": j(2), "street": j(0)
            })
        }
        Source::Location([lat, lon]) => {
            let (a, b) = (r.get(*lat), r.get(*lon));
            if a.is_null() && b.is_null() {
                return Json::Null;
            }
            json!({"latitude": value_json(&a, FieldType::Double), "longitude": value_json(&b, FieldType::Double)})
        }
        _ => {
            let v = r.get(f);
            if fd.masked
                && let Some(text) = v.as_str()
            {
                return Json::String(mask_encrypted(text));
            }
            match (&v, fd.ty, b64) {
                (Value::Blob(_), _, Base64Rest::BlobUrl) => Json::String(format!(
                    "/services/data/{version}/sobjects/{object}/{id}/{}",
                    fd.name
                )),
                _ => value_json(&v, fd.ty),
            }
        }
    }
}

/// An `encryptedstring` value as a user without "View Encrypted Data" sees it: every character
/// replaced by the mask character `*` (mask type "all"); see [`crate::Config::view_encrypted_data`].
pub fn mask_encrypted(text: &str) -> String {
    "*".repeat(text.chars().count())
}

/// JSON spelling of a value (§2.7): `+0000` datetimes, numbers as numbers, null as null; a
/// `complexvalue` (§2.4) is its structured JSON value, not a string.
pub fn value_json(v: &Value, ty: FieldType) -> Json {
    match v {
        Value::Str(s) if ty == FieldType::ComplexValue => {
            serde_json::from_str(s).unwrap_or_else(|_| Json::String(s.to_string()))
        }
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Double(d) if ty == FieldType::Int => Json::from(*d as i64),
        Value::Double(d) => value::json_double(*d),
        Value::Str(s) => Json::String(s.to_string()),
        Value::Lit(s) => Json::String(s.to_string()),
        Value::Date(d) => Json::String(value::fmt_date(*d)),
        Value::DateTime(ms) => Json::String(value::fmt_datetime_rest(*ms)),
        Value::Time(t) => Json::String(value::fmt_time(*t)),
        Value::Blob(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
    }
}

/// Bulk CSV rendering options (§5.1, §5.5 and the §9.1/§9.2 switches).
#[derive(Debug, Clone, Copy)]
pub struct CsvStyle {
    /// Column delimiter byte.
    pub delimiter: u8,
    /// CRLF line endings.
    pub crlf: bool,
    /// Nulls as `""` (true) or as nothing between delimiters (false).
    pub null_quoted: bool,
    /// Datetimes as `...000Z` (true) or `...000+0000` (false).
    pub datetime_zulu: bool,
    /// Booleans as `true`/`false` (true) or `True`/`False` (false).
    pub bool_lower: bool,
    /// Header names as written in the SELECT (true) or canonical API names (false), §9.3.
    pub header_as_written: bool,
}

/// Appends a quoted cell (every value quoted, inner quotes doubled, §5.5).
pub fn csv_quoted(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'"');
    if memchr_quote(text) {
        for &c in text {
            if c == b'"' {
                out.push(b'"');
            }
            out.push(c);
        }
    } else {
        out.extend_from_slice(text);
    }
    out.push(b'"');
}

fn memchr_quote(t: &[u8]) -> bool {
    t.contains(&b'"')
}

/// Appends the header row.
pub fn csv_header(out: &mut Vec<u8>, select: &[FieldRef], style: &CsvStyle) {
    for (k, f) in select.iter().enumerate() {
        if k > 0 {
            out.push(style.delimiter);
        }
        let name = if style.header_as_written {
            &f.written
        } else {
            &f.name
        };
        csv_quoted(out, name.as_bytes());
    }
    end_line(out, style);
}

fn end_line(out: &mut Vec<u8>, style: &CsvStyle) {
    if style.crlf {
        out.extend_from_slice(b"\r\n");
    } else {
        out.push(b'\n');
    }
}

/// Appends one data row.
pub fn csv_row(out: &mut Vec<u8>, r: &RowRef<'_>, select: &[FieldRef], style: &CsvStyle) {
    use std::io::Write;
    for (k, f) in select.iter().enumerate() {
        if k > 0 {
            out.push(style.delimiter);
        }
        let v = field_value(f, r);
        if f.ty == FieldType::EncryptedString
            && let Some(text) = v.as_str()
        {
            let schema = &r.snap.schema;
            let fd = match f.parent {
                None => &schema.objects[r.obj].fields[f.field],
                Some((po, pf)) => &schema.objects[po].fields[pf],
            };
            if fd.masked {
                csv_quoted(out, mask_encrypted(text).as_bytes());
                continue;
            }
        }
        match &v {
            Value::Null => {
                if style.null_quoted {
                    out.extend_from_slice(b"\"\"");
                }
            }
            Value::Str(s) => csv_quoted(out, s.as_bytes()),
            Value::Lit(s) => csv_quoted(out, s.as_bytes()),
            Value::Bool(b) => out.extend_from_slice(match (b, style.bool_lower) {
                (true, true) => b"\"true\"",
                (false, true) => b"\"false\"",
                (true, false) => b"\"True\"",
                (false, false) => b"\"False\"",
            }),
            Value::Int(i) => {
                out.push(b'"');
                value::push_int(out, *i);
                out.push(b'"');
            }
            Value::Double(d) => {
                if f.ty == FieldType::Int {
                    out.push(b'"');
                    value::push_int(out, *d as i64);
                    out.push(b'"');
                } else if d.fract() == 0.0 && d.abs() < 1e15 {
                    let _ = write!(out, "\"{d:.1}\"");
                } else {
                    let _ = write!(out, "\"{d}\"");
                }
            }
            Value::Date(d) => {
                out.push(b'"');
                value::push_date(out, i64::from(*d));
                out.push(b'"');
            }
            Value::DateTime(ms) => {
                out.push(b'"');
                value::push_datetime(out, *ms, style.datetime_zulu);
                out.push(b'"');
            }
            Value::Time(t) => csv_quoted(out, value::fmt_time(*t).as_bytes()),
            Value::Blob(b) => csv_quoted(
                out,
                base64::engine::general_purpose::STANDARD
                    .encode(b)
                    .as_bytes(),
            ),
        }
    }
    end_line(out, style);
}

/// The id of row `idx` of object `obj`.
pub fn id_of(snap: &Snapshot, obj: usize, idx: u64) -> String {
    ids::make(&snap.schema.objects[obj].key_prefix, idx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datagen::GenCtx;
    use crate::schema::Schema;
    use crate::soql::{SoqlOptions, parse};
    use crate::store::Store;

    fn store(n: u64) -> Store {
        let schema = Arc::new(Schema::standard());
        let generator = Arc::new(GenCtx {
            seed: 9,
            rows: vec![n; schema.objects.len()],
            start_ms: 1_577_836_800_000,
            end_ms: 1_700_000_000_000,
            tie: 3,
            deleted_per_mille: 100,
        });
        Store::new(schema, generator)
    }

    fn run(st: &Store, q: &str, all: bool) -> Vec<String> {
        let snap = st.snapshot(1_800_000_000_000);
        let q = parse(
            q,
            &snap.schema,
            SoqlOptions {
                fractional_seconds: true,
                now_ms: snap.now,
                gated_fields: false,
            },
        )
        .unwrap();
        let e = Exec::new(Arc::new(q), snap, all);
        e.rows(&Pos::Start).map(|(r, _)| r.id()).collect()
    }

    #[test]
    fn stamp_scan_with_pushdown_equals_full_filter() {
        let st = store(500);
        let all = run(&st, "SELECT Id FROM Account", true);
        assert_eq!(all.len(), 500);
        let live = run(&st, "SELECT Id FROM Account", false);
        assert!(live.len() < 500 && live.len() > 350, "{}", live.len());
        let w = run(
            &st,
            "SELECT Id FROM Account WHERE SystemModstamp >= 2021-01-01T00:00:00Z AND SystemModstamp < 2022-01-01T00:00:00Z",
            true,
        );
        let snap = st.snapshot(0);
        let acc = snap.schema.index("Account").unwrap();
        let expected: Vec<String> = (0..500)
            .filter(|&i| {
                let s = snap.generator.stamp(acc, i);
                (1_609_459_200_000..1_640_995_200_000).contains(&s)
            })
            .map(|i| ids::make("001", i))
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(w, expected);
    }

    #[test]
    fn id_paging_starts_after_the_given_id() {
        let st = store(60);
        let all = run(&st, "SELECT Id FROM Account ORDER BY Id", true);
        let q = format!(
            "SELECT Id FROM Account WHERE Id > '{}' ORDER BY Id",
            all[10]
        );
        assert_eq!(run(&st, &q, true), all[11..].to_vec());
        let q = format!(
            "SELECT Id FROM Account WHERE Id >= '{}' AND Id < '{}' ORDER BY Id",
            all[10], all[20]
        );
        assert_eq!(run(&st, &q, true), all[10..20].to_vec());
    }

    #[test]
    fn sorted_orders_and_like() {
        let st = store(50);
        let desc = run(&st, "SELECT Id FROM Account ORDER BY Id DESC", true);
        let mut asc = run(&st, "SELECT Id FROM Account ORDER BY Id", true);
        asc.reverse();
        assert_eq!(desc, asc);
        assert!(like("Acme Inc.", "acme%"));
        assert!(like("Acme", "A_me"));
        assert!(!like("Acme", "A_e"));
        assert!(like("100%", "100\\%"));
    }
}
