//! Salesforce values → typed JSON, the same whichever API delivered them.
//!
//! REST gives JSON (datetimes as `2024-01-02T03:04:05.000+0000`); Bulk gives CSV text where
//! every value is a string and null is an empty cell (datetimes as `...000Z`). Both go through a
//! per-stream plan built once ([`RestPlan`], [`CsvPlan`]) that knows each column's
//! [`FieldKind`], so the per-row work is a table walk:
//!
//! - datetimes → `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, milliseconds) from either API;
//! - numbers and integers → JSON numbers, booleans → JSON booleans;
//! - text stays text exactly: `"01234"`, `"  "` and (with `preserve_na_values`) `"NA"` are kept;
//! - address / location values are objects; from Bulk they are rebuilt from their component
//!   columns (`BillingCity` → `BillingAddress.city`), every component present (null when
//!   empty) as REST returns them;
//! - null values are left out of the record, as Airbyte's connector does.
//!
//! A value that does not parse as its declared type (a number column holding `abc`) is kept as
//! its text rather than dropped.
//!
//! The Bulk path is the hot loop: [`CsvPlan::write_data`] writes a row's data object straight
//! into an output buffer as JSON, with every key pre-serialised when the plan is built and no
//! `serde_json::Value` per row. It prints exactly what serialising [`CsvPlan::convert`] prints
//! (a test pins that), which stays the reference implementation. REST pages take the same
//! shortcut: [`RestWriter`] reads each record's JSON text (kept raw by the client, see
//! [`RawRecord`]) and writes its data object directly, matching [`RestPlan::convert`] byte for
//! byte; only the first page of a stream (fetched in a batch) and the column chunks of a wide
//! object still go through maps.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use csv::ByteRecord;
use serde_json::{Map, Number, Value};

use airbyte_protocol::writer::{write_i64, write_json_str};

use crate::discovery::{FieldKind, component_key};

/// Text values Airbyte's Bulk path (pandas' default NA list) turns into null unless
/// `preserve_na_values` is set.
pub const NA_TOKENS: &[&str] = &[
    "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
    "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
];

/// The length of the longest [`NA_TOKENS`] entry (longer text is never one).
const NA_TOKEN_MAX_LEN: usize = 8;

/// Parses a Salesforce timestamp: RFC 3339 (`Z` or `+00:00`), Salesforce's `+0000` form, with or
/// without fractional seconds, or a bare date (midnight UTC).
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(ts) = DateTime::parse_from_rfc3339(text) {
        return Some(ts.with_timezone(&Utc));
    }
    if let Ok(ts) = DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(ts.with_timezone(&Utc));
    }
    if let Ok(ts) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(ts.and_utc());
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
}

/// Formats a timestamp the one way this connector writes them: `2024-01-02T03:04:05.000Z`.
pub fn format_timestamp(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn number_from_text(text: &str) -> Option<Number> {
    let t = text.trim();
    if let Ok(i) = t.parse::<i64>() {
        return Some(Number::from(i));
    }
    t.parse::<f64>().ok().and_then(Number::from_f64)
}

fn integer_from_text(text: &str) -> Option<Number> {
    let t = text.trim();
    if let Ok(i) = t.parse::<i64>() {
        return Some(Number::from(i));
    }
    let f = t.parse::<f64>().ok()?;
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Some(Number::from(f as i64))
    } else {
        Number::from_f64(f)
    }
}

fn bool_from_text(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Converts one text value (a Bulk CSV cell, or a REST string) to its typed JSON value.
pub fn typed_from_text(text: &str, kind: FieldKind) -> Value {
    match kind {
        FieldKind::DateTime => match parse_timestamp(text) {
            Some(ts) => Value::String(format_timestamp(ts)),
            None => Value::String(text.to_owned()),
        },
        FieldKind::Number => number_from_text(text)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(text.to_owned())),
        FieldKind::Integer => integer_from_text(text)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(text.to_owned())),
        FieldKind::Boolean => bool_from_text(text)
            .map(Value::Bool)
            .unwrap_or_else(|| Value::String(text.to_owned())),
        FieldKind::String
        | FieldKind::Date
        | FieldKind::Base64
        | FieldKind::Address
        | FieldKind::Location => Value::String(text.to_owned()),
    }
}

/// Converts one REST JSON value; `None` for null.
pub fn typed_from_json(value: Value, kind: FieldKind) -> Option<Value> {
    match (value, kind) {
        (Value::Null, _) => None,
        (Value::String(s), k) => Some(typed_from_text(&s, k)),
        (Value::Number(n), FieldKind::Integer) => Some(match n.as_i64() {
            Some(_) => Value::Number(n),
            None => n
                .as_f64()
                .and_then(|f| integer_from_text(&f.to_string()))
                .map(Value::Number)
                .unwrap_or(Value::Number(n)),
        }),
        (v @ (Value::Number(_) | Value::Bool(_)), FieldKind::Number | FieldKind::Boolean) => {
            Some(v)
        }
        // anyType / text fields delivered as native JSON (e.g. history OldValue): text.
        (Value::Number(n), _) => Some(Value::String(n.to_string())),
        (Value::Bool(b), _) => Some(Value::String(b.to_string())),
        (v @ Value::Object(_), FieldKind::Address | FieldKind::Location) => Some(v),
        (v @ (Value::Object(_) | Value::Array(_)), _) => Some(Value::String(v.to_string())),
    }
}

/// How one REST record is turned into a RECORD's data: the selected fields and their kinds.
#[derive(Debug, Clone)]
pub struct RestPlan {
    fields: Vec<(String, FieldKind)>,
}

impl RestPlan {
    /// A plan emitting `fields` (in this order).
    pub fn new(fields: Vec<(String, FieldKind)>) -> Self {
        Self { fields }
    }

    /// Converts a REST record (its `attributes` and unselected keys are dropped).
    pub fn convert(&self, mut record: Map<String, Value>) -> Map<String, Value> {
        let mut out = Map::with_capacity(self.fields.len());
        for (name, kind) in &self.fields {
            if let Some(v) = record.remove(name).and_then(|v| typed_from_json(v, *kind)) {
                out.insert(name.clone(), v);
            }
        }
        out
    }
}

/// A REST record kept as the JSON text Salesforce sent, for [`RestWriter`].
pub type RawRecord = Box<serde_json::value::RawValue>;

/// What a REST record's key feeds.
#[derive(Debug, Clone, Copy)]
struct RestKey {
    /// Position in the plan, when the field is emitted.
    emit: Option<usize>,
    /// The field is the cursor, whose raw text is handed back.
    cursor: bool,
    /// The field is the key, whose text is kept ([`RestWriter::key`]).
    key: bool,
}

/// The REST twin of [`CsvPlan::write_data`]: converts a record straight from its JSON text into
/// the bytes serialising [`RestPlan::convert`]'s map prints (a test pins that), with no `Map`
/// or `Value` per row for text values. [`RestWriter::parse`] reads a record into a scratch
/// buffer (and hands back its cursor text); [`RestWriter::write_data`] then writes the data
/// object in plan order.
#[derive(Debug, Clone)]
pub struct RestWriter {
    fields: Vec<(String, FieldKind)>,
    /// `"Name":` per field, in plan order.
    keys: Vec<Box<[u8]>>,
    index: std::collections::HashMap<String, RestKey>,
    /// The parsed record: converted values back to back, and each field's span in it.
    scratch: Vec<u8>,
    spans: Vec<Option<(usize, usize)>>,
    cursor: String,
    has_cursor: bool,
    key: String,
    has_key: bool,
}

impl RestWriter {
    /// A writer emitting `fields` (in this order), handing back the raw text of `cursor`.
    pub fn new(fields: Vec<(String, FieldKind)>, cursor: Option<&str>) -> Self {
        let mut index: std::collections::HashMap<String, RestKey> = fields
            .iter()
            .enumerate()
            .map(|(at, (name, _))| {
                let key = RestKey {
                    emit: Some(at),
                    cursor: Some(name.as_str()) == cursor,
                    key: false,
                };
                (name.clone(), key)
            })
            .collect();
        if let Some(c) = cursor {
            index.entry(c.to_owned()).or_insert(RestKey {
                emit: None,
                cursor: true,
                key: false,
            });
        }
        let keys = fields
            .iter()
            .map(|(name, _)| {
                let mut k = Vec::with_capacity(name.len() + 3);
                write_json_str(&mut k, name);
                k.push(b':');
                k.into_boxed_slice()
            })
            .collect();
        Self {
            spans: vec![None; fields.len()],
            fields,
            keys,
            index,
            scratch: Vec::with_capacity(1024),
            cursor: String::new(),
            has_cursor: false,
            key: String::new(),
            has_key: false,
        }
    }

    /// Also keeps the text of the `key` field of every record parsed (see [`RestWriter::key`]).
    pub fn with_key(mut self, key: &str) -> Self {
        self.index
            .entry(key.to_owned())
            .or_insert(RestKey {
                emit: None,
                cursor: false,
                key: false,
            })
            .key = true;
        self
    }

    /// The cursor field's text of the last parsed record, when it is a string.
    pub fn cursor(&self) -> Option<&str> {
        self.has_cursor.then_some(self.cursor.as_str())
    }

    /// The key field's text of the last parsed record, when the writer keeps one
    /// ([`RestWriter::with_key`]) and the record has it as a string.
    pub fn key(&self) -> Option<&str> {
        self.has_key.then_some(self.key.as_str())
    }

    /// Reads one record (a JSON object; `attributes` and unselected keys are skipped) and
    /// returns the cursor field's text, when it is a string.
    pub fn parse(&mut self, raw: &str) -> Result<Option<&str>, serde_json::Error> {
        self.scratch.clear();
        self.spans.iter_mut().for_each(|s| *s = None);
        self.has_cursor = false;
        self.has_key = false;
        let mut de = serde_json::Deserializer::from_str(raw);
        serde::de::DeserializeSeed::deserialize(RecordSeed { w: self }, &mut de)?;
        de.end()?;
        Ok(self.has_cursor.then_some(self.cursor.as_str()))
    }

    /// Writes the last parsed record's data object to `out`.
    pub fn write_data(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first = true;
        for (key, span) in self.keys.iter().zip(&self.spans) {
            let Some((from, to)) = *span else { continue };
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            out.extend_from_slice(key);
            out.extend_from_slice(&self.scratch[from..to]);
        }
        out.push(b'}');
    }
}

/// Visits one record object for [`RestWriter::parse`].
struct RecordSeed<'w> {
    w: &'w mut RestWriter,
}

impl<'de> serde::de::DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for RecordSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a record object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let w = self.w;
        while let Some(key) = map.next_key_seed(KeySeed { index: &w.index })? {
            let Some(key) = key else {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            };
            if key.cursor {
                w.has_cursor = false;
            }
            if key.key {
                w.has_key = false;
            }
            let kind = key
                .emit
                .and_then(|at| w.fields.get(at))
                .map(|(_, k)| *k)
                .unwrap_or(FieldKind::String);
            let start = w.scratch.len();
            let present = map.next_value_seed(ValueSeed {
                kind,
                out: &mut w.scratch,
                cursor: key.cursor.then_some((&mut w.cursor, &mut w.has_cursor)),
                key: key.key.then_some((&mut w.key, &mut w.has_key)),
            })?;
            match key.emit.and_then(|at| w.spans.get_mut(at)) {
                Some(span) => *span = present.then_some((start, w.scratch.len())),
                None => w.scratch.truncate(start),
            }
        }
        Ok(())
    }
}

/// Looks a record key up without allocating; `None` for keys not emitted nor the cursor.
struct KeySeed<'a> {
    index: &'a std::collections::HashMap<String, RestKey>,
}

impl<'de> serde::de::DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<RestKey>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for KeySeed<'_> {
    type Value = Option<RestKey>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.index.get(v).copied())
    }
}

/// Converts one value as [`typed_from_json`] does, writing it to `out`; `false` for null.
struct ValueSeed<'a> {
    kind: FieldKind,
    out: &'a mut Vec<u8>,
    cursor: Option<(&'a mut String, &'a mut bool)>,
    key: Option<(&'a mut String, &'a mut bool)>,
}

impl ValueSeed<'_> {
    fn write_value(self, value: Value) -> bool {
        match typed_from_json(value, self.kind) {
            Some(v) => {
                // `Value`'s Display is its compact JSON, which cannot fail.
                self.out.extend_from_slice(v.to_string().as_bytes());
                true
            }
            None => false,
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ValueSeed<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<bool, E> {
        for (text, has) in [self.cursor, self.key].into_iter().flatten() {
            text.clear();
            text.push_str(v);
            *has = true;
        }
        write_typed(self.out, v, self.kind);
        Ok(true)
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(self.write_value(Value::Bool(v)))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<bool, E> {
        Ok(self.write_value(Value::Number(v.into())))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<bool, E> {
        Ok(self.write_value(Value::Number(v.into())))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<bool, E> {
        Ok(self.write_value(Number::from_f64(v).map_or(Value::Null, Value::Number)))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        use serde::Deserialize;
        let value = Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(self.write_value(value))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        use serde::Deserialize;
        let value = Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        Ok(self.write_value(value))
    }
}

/// What a Bulk CSV column feeds.
#[derive(Debug, Clone, PartialEq)]
struct Column {
    /// Emitted as this field, of this kind.
    emit: Option<(String, FieldKind)>,
    /// Also a component of compound `compounds[index]`, under `key`.
    component: Option<(usize, &'static str, FieldKind)>,
}

/// How one Bulk CSV row is turned into a RECORD's data, built once from the header row.
#[derive(Debug, Clone)]
pub struct CsvPlan {
    columns: Vec<Column>,
    compounds: Vec<String>,
    preserve_na: bool,
    fast: FastPlan,
}

/// What [`CsvPlan::write_data`] needs, serialised once: `"Key":` prefixes and which columns
/// make up each compound.
#[derive(Debug, Clone)]
struct FastPlan {
    /// Whether the direct writer applies. It does not when a key would repeat in one object
    /// (a header naming a column twice): a map keeps the last value at the first position, which
    /// the writer leaves to [`CsvPlan::convert`].
    exact: bool,
    /// Per column: `"Name":` when the column is emitted.
    keys: Vec<Option<Box<[u8]>>>,
    /// Per column: `"key":` inside its compound, when it is a component.
    component_keys: Vec<Option<Box<[u8]>>>,
    /// Per compound: `"Name":` and its component columns in header order.
    compounds: Vec<(Box<[u8]>, Vec<usize>)>,
}

impl FastPlan {
    fn new(columns: &[Column], compounds: &[String]) -> Self {
        fn key(name: &str) -> Box<[u8]> {
            let mut k = Vec::with_capacity(name.len() + 3);
            write_json_str(&mut k, name);
            k.push(b':');
            k.into_boxed_slice()
        }
        let mut names: Vec<&str> = columns
            .iter()
            .filter_map(|c| c.emit.as_ref().map(|(n, _)| n.as_str()))
            .chain(compounds.iter().map(String::as_str))
            .collect();
        let top_level = names.len();
        names.sort_unstable();
        names.dedup();
        let mut parts: Vec<(usize, &str)> = columns
            .iter()
            .filter_map(|c| c.component.map(|(i, k, _)| (i, k)))
            .collect();
        let component_count = parts.len();
        parts.sort_unstable();
        parts.dedup();
        Self {
            exact: names.len() == top_level && parts.len() == component_count,
            keys: columns
                .iter()
                .map(|c| c.emit.as_ref().map(|(n, _)| key(n)))
                .collect(),
            component_keys: columns
                .iter()
                .map(|c| c.component.map(|(_, k, _)| key(k)))
                .collect(),
            compounds: compounds
                .iter()
                .enumerate()
                .map(|(index, name)| {
                    let members = columns
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| c.component.is_some_and(|(i, _, _)| i == index))
                        .map(|(at, _)| at)
                        .collect();
                    (key(name), members)
                })
                .collect(),
        }
    }
}

impl CsvPlan {
    /// Builds the plan for a result `header`.
    ///
    /// `emit` lists the fields to output with their kinds; `components` maps a component column
    /// (e.g. `BillingCity`) to its compound field (`BillingAddress`), for compounds that are in
    /// `emit`. Header columns in neither are ignored.
    pub fn new(
        header: &ByteRecord,
        emit: &[(String, FieldKind)],
        components: &[(String, String, FieldKind)],
        preserve_na: bool,
    ) -> Self {
        let mut compounds: Vec<String> = Vec::new();
        let columns: Vec<Column> = header
            .iter()
            .map(|raw| {
                let name = String::from_utf8_lossy(raw);
                let name = name.trim();
                let emit_entry = emit
                    .iter()
                    .find(|(n, k)| n == name && !k.is_compound())
                    .cloned();
                let component = components.iter().find(|(c, _, _)| c == name).and_then(
                    |(c, compound, kind)| {
                        let key = component_key(c)?;
                        let index = match compounds.iter().position(|x| x == compound) {
                            Some(i) => i,
                            None => {
                                compounds.push(compound.clone());
                                compounds.len() - 1
                            }
                        };
                        Some((index, key, *kind))
                    },
                );
                Column {
                    emit: emit_entry,
                    component,
                }
            })
            .collect();
        let fast = FastPlan::new(&columns, &compounds);
        Self {
            columns,
            compounds,
            preserve_na,
            fast,
        }
    }

    /// Writes one row's data object as JSON to `out`: the same bytes as serialising
    /// [`CsvPlan::convert`]'s map, without building it.
    pub fn write_data(&self, row: &ByteRecord, out: &mut Vec<u8>) {
        if !self.fast.exact {
            let data = Value::Object(self.convert(row));
            // `Value`'s Display is its compact JSON, which cannot fail.
            out.extend_from_slice(data.to_string().as_bytes());
            return;
        }
        let texts = RowText::new(row);
        out.push(b'{');
        let mut first = true;
        for ((column, key), raw) in self.columns.iter().zip(&self.fast.keys).zip(row.iter()) {
            let (Some((_, kind)), Some(key)) = (&column.emit, key) else {
                continue;
            };
            let text = texts.cell(raw);
            if self.is_null(&text) {
                continue;
            }
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            out.extend_from_slice(key);
            write_typed(out, &text, *kind);
        }
        for (key, members) in &self.fast.compounds {
            // Like `convert`: the present components in header order, then the null ones; no
            // compound at all when every component is null. The opening is written on the
            // chance that one is present and taken back otherwise.
            let mark = out.len();
            if !first {
                out.push(b',');
            }
            out.extend_from_slice(key);
            out.push(b'{');
            let mut inner_first = true;
            let mut nulls = 0usize;
            for &at in members {
                let (Some(Some((_, _, kind))), Some(Some(part))) = (
                    self.columns.get(at).map(|c| c.component),
                    self.fast.component_keys.get(at),
                ) else {
                    continue;
                };
                let text = row.get(at).map(|raw| texts.cell(raw)).unwrap_or_default();
                if self.is_null(&text) {
                    nulls += 1;
                    continue;
                }
                if !std::mem::take(&mut inner_first) {
                    out.push(b',');
                }
                out.extend_from_slice(part);
                write_typed(out, &text, kind);
            }
            if inner_first {
                out.truncate(mark);
                continue;
            }
            first = false;
            if nulls > 0 {
                for &at in members {
                    let Some(Some(part)) = self.fast.component_keys.get(at) else {
                        continue;
                    };
                    if row
                        .get(at)
                        .is_some_and(|raw| !self.is_null(&texts.cell(raw)))
                    {
                        continue;
                    }
                    out.push(b',');
                    out.extend_from_slice(part);
                    out.extend_from_slice(b"null");
                }
            }
            out.push(b'}');
        }
        out.push(b'}');
    }

    /// Whether a cell is null: empty, or an NA token when NA values are not preserved.
    fn is_null(&self, text: &str) -> bool {
        text.is_empty()
            || (!self.preserve_na && text.len() <= NA_TOKEN_MAX_LEN && NA_TOKENS.contains(&text))
    }

    /// Converts one row.
    pub fn convert(&self, row: &ByteRecord) -> Map<String, Value> {
        let mut out = Map::with_capacity(self.columns.len());
        let mut compounds: Vec<Option<Map<String, Value>>> = vec![None; self.compounds.len()];
        for (column, raw) in self.columns.iter().zip(row.iter()) {
            if column.emit.is_none() && column.component.is_none() {
                continue;
            }
            let text = cell_text(raw);
            if self.is_null(&text) {
                continue;
            }
            if let Some((name, kind)) = &column.emit {
                out.insert(name.clone(), typed_from_text(&text, *kind));
            }
            if let Some((index, key, kind)) = column.component
                && let Some(slot) = compounds.get_mut(index)
            {
                slot.get_or_insert_with(Map::new)
                    .insert(key.to_owned(), typed_from_text(&text, kind));
            }
        }
        for (index, (name, value)) in self.compounds.iter().zip(compounds).enumerate() {
            if let Some(mut value) = value {
                // Like REST, a compound value lists every component, null when empty.
                for column in &self.columns {
                    if let Some((i, key, _)) = column.component
                        && i == index
                        && !value.contains_key(key)
                    {
                        value.insert(key.to_owned(), Value::Null);
                    }
                }
                out.insert(name.clone(), Value::Object(value));
            }
        }
        out
    }
}

/// Writes [`typed_from_text`]'s value as JSON.
fn write_typed(out: &mut Vec<u8>, text: &str, kind: FieldKind) {
    match kind {
        FieldKind::DateTime => {
            if is_canonical_timestamp(text.as_bytes()) {
                // Already `YYYY-MM-DDTHH:MM:SS.mmmZ` and a real instant: it formats to itself,
                // and holds nothing to escape.
                out.push(b'"');
                out.extend_from_slice(text.as_bytes());
                out.push(b'"');
            } else {
                match parse_timestamp(text) {
                    Some(ts) => write_json_str(out, &format_timestamp(ts)),
                    None => write_json_str(out, text),
                }
            }
        }
        FieldKind::Number => write_number(out, number_from_text(text), text),
        FieldKind::Integer => write_number(out, integer_from_text(text), text),
        FieldKind::Boolean => match bool_from_text(text) {
            Some(true) => out.extend_from_slice(b"true"),
            Some(false) => out.extend_from_slice(b"false"),
            None => write_json_str(out, text),
        },
        FieldKind::String
        | FieldKind::Date
        | FieldKind::Base64
        | FieldKind::Address
        | FieldKind::Location => write_json_str(out, text),
    }
}

/// Writes a parsed number as serde_json prints it, or the text when it did not parse.
fn write_number(out: &mut Vec<u8>, number: Option<Number>, text: &str) {
    match number {
        Some(n) => match n.as_i64() {
            Some(i) => write_i64(out, i),
            // A finite float (or a u64): `Number`'s Display is its JSON form.
            None => out.extend_from_slice(n.to_string().as_bytes()),
        },
        None => write_json_str(out, text),
    }
}

/// Whether `t` is `YYYY-MM-DDTHH:MM:SS.mmmZ` naming a valid instant (years 1-9999, no leap
/// second), i.e. text that [`parse_timestamp`] + [`format_timestamp`] return unchanged.
fn is_canonical_timestamp(t: &[u8]) -> bool {
    const SHAPE: &[u8; 24] = b"0000-00-00T00:00:00.000Z";
    if t.len() != SHAPE.len() {
        return false;
    }
    for (&c, &s) in t.iter().zip(SHAPE) {
        let ok = if s == b'0' {
            c.is_ascii_digit()
        } else {
            c == s
        };
        if !ok {
            return false;
        }
    }
    let num = |a: usize, b: usize| {
        t[a..b]
            .iter()
            .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))
    };
    let (year, month, day) = (num(0, 4), num(5, 7), num(8, 10));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    year >= 1
        && (1..=days).contains(&day)
        && num(11, 13) < 24
        && num(14, 16) < 60
        && num(17, 19) < 60
}

/// A row's cells as text, UTF-8-checked once for the whole row rather than cell by cell.
struct RowText<'r> {
    bytes: &'r [u8],
    /// The whole row when it is valid UTF-8 without NUL bytes (the usual case).
    text: Option<&'r str>,
}

impl<'r> RowText<'r> {
    fn new(row: &'r ByteRecord) -> Self {
        let bytes = row.as_slice();
        let text = if bytes.contains(&0) {
            None
        } else {
            std::str::from_utf8(bytes).ok()
        };
        Self { bytes, text }
    }

    /// [`cell_text`] of `raw`, a field of this row.
    fn cell(&self, raw: &'r [u8]) -> std::borrow::Cow<'r, str> {
        // The fields are stored back to back; a field's offset is its distance from the start.
        let start = (raw.as_ptr() as usize).wrapping_sub(self.bytes.as_ptr() as usize);
        // `str::get` also checks that both ends fall on character boundaries, so each field on
        // its own is valid UTF-8 exactly when the slice succeeds.
        match self
            .text
            .and_then(|t| t.get(start..start.checked_add(raw.len())?))
        {
            Some(text) => std::borrow::Cow::Borrowed(text),
            None => cell_text(raw),
        }
    }
}

/// A CSV cell as text: invalid UTF-8 replaced, NUL bytes removed (Airbyte issue 8300).
fn cell_text(raw: &[u8]) -> std::borrow::Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(raw)
        && !raw.contains(&0)
    {
        return std::borrow::Cow::Borrowed(text);
    }
    let text = String::from_utf8_lossy(raw);
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', ""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn csv_row(cells: &[&str]) -> ByteRecord {
        ByteRecord::from(cells.to_vec())
    }

    fn emit() -> Vec<(String, FieldKind)> {
        [
            ("Id", FieldKind::String),
            ("Name", FieldKind::String),
            ("Code__c", FieldKind::String),
            ("IsDeleted", FieldKind::Boolean),
            ("AnnualRevenue", FieldKind::Number),
            ("NumberOfEmployees", FieldKind::Integer),
            ("Founded__c", FieldKind::Date),
            ("SystemModstamp", FieldKind::DateTime),
            ("BillingCity", FieldKind::String),
            ("BillingAddress", FieldKind::Address),
        ]
        .into_iter()
        .map(|(n, k)| (n.to_owned(), k))
        .collect()
    }

    fn components() -> Vec<(String, String, FieldKind)> {
        [
            ("BillingCity", FieldKind::String),
            ("BillingPostalCode", FieldKind::String),
            ("BillingLatitude", FieldKind::Number),
        ]
        .into_iter()
        .map(|(c, k)| (c.to_owned(), "BillingAddress".to_owned(), k))
        .collect()
    }

    const HEADER: &[&str] = &[
        "Id",
        "Name",
        "Code__c",
        "IsDeleted",
        "AnnualRevenue",
        "NumberOfEmployees",
        "Founded__c",
        "SystemModstamp",
        "BillingCity",
        "BillingPostalCode",
        "BillingLatitude",
        "Unknown",
    ];

    #[test]
    fn bulk_row_is_typed_faithfully() {
        let plan = CsvPlan::new(&csv_row(HEADER), &emit(), &components(), false);
        let row = csv_row(&[
            "001A",
            "  ",
            "01234",
            "false",
            "1250000.50",
            "42",
            "2020-02-29",
            "2024-01-02T03:04:05.000Z",
            "Paris",
            "75001",
            "48.85",
            "x",
        ]);
        let data = plan.convert(&row);
        assert_eq!(
            Value::Object(data),
            json!({
                "Id": "001A", "Name": "  ", "Code__c": "01234", "IsDeleted": false,
                "AnnualRevenue": 1250000.5, "NumberOfEmployees": 42, "Founded__c": "2020-02-29",
                "SystemModstamp": "2024-01-02T03:04:05.000Z", "BillingCity": "Paris",
                "BillingAddress": {"city": "Paris", "postalCode": "75001", "latitude": 48.85}
            })
        );
    }

    #[test]
    fn nulls_and_na_values() {
        let row = csv_row(&["001A", "NA", "N/A", "", "", "", "", "", "", "", "", ""]);
        let dropped = CsvPlan::new(&csv_row(HEADER), &emit(), &components(), false).convert(&row);
        assert_eq!(
            Value::Object(dropped),
            json!({"Id": "001A"}),
            "no compound when all parts are null"
        );
        let kept = CsvPlan::new(&csv_row(HEADER), &emit(), &components(), true).convert(&row);
        assert_eq!(
            Value::Object(kept),
            json!({"Id": "001A", "Name": "NA", "Code__c": "N/A"})
        );
    }

    #[test]
    fn compound_values_list_every_component() {
        let plan = CsvPlan::new(&csv_row(HEADER), &emit(), &components(), false);
        let row = csv_row(&["001A", "", "", "", "", "", "", "", "Paris", "", "", ""]);
        assert_eq!(
            plan.convert(&row)["BillingAddress"],
            json!({"city": "Paris", "postalCode": null, "latitude": null})
        );
    }

    #[test]
    fn nul_bytes_are_stripped() {
        let plan = CsvPlan::new(&csv_row(&["Name"]), &emit(), &[], true);
        let data = plan.convert(&ByteRecord::from(vec![&b"a\0b"[..]]));
        assert_eq!(data["Name"], "ab");
    }

    #[test]
    fn rest_record_matches_bulk_output() {
        let rest = json!({
            "attributes": {"type": "Account", "url": "/services/data/v62.0/sobjects/Account/001A"},
            "Id": "001A", "Name": "  ", "Code__c": "01234", "IsDeleted": false,
            "AnnualRevenue": 1250000.5, "NumberOfEmployees": 42.0, "Founded__c": "2020-02-29",
            "SystemModstamp": "2024-01-02T03:04:05.000+0000", "BillingCity": "Paris",
            "BillingAddress": {"city": "Paris", "postalCode": "75001", "latitude": 48.85},
            "Other": "not selected", "Description": null
        });
        let plan = RestPlan::new(emit());
        let data = plan.convert(rest.as_object().unwrap().clone());
        let bulk_plan = CsvPlan::new(&csv_row(HEADER), &emit(), &components(), false);
        let bulk = bulk_plan.convert(&csv_row(&[
            "001A",
            "  ",
            "01234",
            "false",
            "1250000.5",
            "42",
            "2020-02-29",
            "2024-01-02T03:04:05.000Z",
            "Paris",
            "75001",
            "48.85",
            "",
        ]));
        assert_eq!(data, bulk);
        assert!(!data.contains_key("attributes"));
    }

    #[test]
    fn any_type_values_become_text() {
        assert_eq!(
            typed_from_json(json!(5), FieldKind::String),
            Some(json!("5"))
        );
        assert_eq!(
            typed_from_json(json!(true), FieldKind::String),
            Some(json!("true"))
        );
        assert_eq!(
            typed_from_json(json!({"a": 1}), FieldKind::String),
            Some(json!("{\"a\":1}"))
        );
        assert_eq!(typed_from_json(Value::Null, FieldKind::String), None);
        assert_eq!(
            typed_from_json(json!("12"), FieldKind::Integer),
            Some(json!(12))
        );
        assert_eq!(
            typed_from_json(json!("abc"), FieldKind::Number),
            Some(json!("abc"))
        );
        assert_eq!(
            typed_from_json(json!("TRUE"), FieldKind::Boolean),
            Some(json!(true))
        );
    }

    #[test]
    fn timestamps_in_every_spelling() {
        let want = "2024-01-02T03:04:05.678Z";
        for t in [
            "2024-01-02T03:04:05.678Z",
            "2024-01-02T03:04:05.678+0000",
            "2024-01-02T03:04:05.678+00:00",
            "2024-01-02T04:04:05.678+0100",
        ] {
            assert_eq!(format_timestamp(parse_timestamp(t).unwrap()), want, "{t}");
        }
        assert_eq!(
            format_timestamp(parse_timestamp("2024-01-02").unwrap()),
            "2024-01-02T00:00:00.000Z"
        );
        assert_eq!(
            format_timestamp(parse_timestamp("2024-01-02T03:04:05Z").unwrap()),
            "2024-01-02T03:04:05.000Z"
        );
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    /// What `write_data` must print: the reference conversion, serialised.
    fn reference(plan: &CsvPlan, row: &ByteRecord) -> String {
        serde_json::to_string(&Value::Object(plan.convert(row))).unwrap()
    }

    fn direct(plan: &CsvPlan, row: &ByteRecord) -> String {
        let mut out = Vec::new();
        plan.write_data(row, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn direct_writer_matches_the_reference_on_awkward_rows() {
        let rows: &[&[&str]] = &[
            &[
                "001A",
                "  ",
                "01234",
                "false",
                "1250000.50",
                "42",
                "2020-02-29",
                "2024-01-02T03:04:05.000Z",
                "Paris",
                "75001",
                "48.85",
                "x",
            ],
            &[
                "001B",
                "say \"hi\"\\ \u{1}\t\n\r\u{8}\u{c}\u{7f}",
                "NA",
                "TRUE",
                "-0.0",
                "1e3",
                "",
                "2024-02-30T03:04:05.000Z",
                "",
                "",
                "",
                "",
            ],
            &[
                "001C",
                "héllo wörld ✓ 😀",
                "null",
                "yes",
                "abc",
                "4.5",
                "x",
                "2024-01-02T03:04:05.678+0100",
                "",
                "75001",
                "1E400",
                "",
            ],
            &[
                "001D",
                "",
                "",
                "",
                " 12 ",
                "9007199254740993",
                "",
                "2024-01-02",
                "Zürich",
                "",
                "-33.5",
                "",
            ],
            &[
                "001E",
                "a",
                "b",
                "False",
                "1e-7",
                "-9223372036854775808",
                "",
                "2024-12-31T23:59:60.000Z",
                "",
                "",
                "",
                "",
            ],
            &["001F", "short row"],
            &[],
            &[
                "", "", "", "", "", "", "", "", "", "", "", "", "extra", "cells",
            ],
            &[
                "001G",
                "x",
                "y",
                "true",
                "NaN",
                "inf",
                "",
                "0000-01-01T00:00:00.000Z",
                "",
                "",
                "48",
                "",
            ],
        ];
        for preserve_na in [false, true] {
            let plan = CsvPlan::new(&csv_row(HEADER), &emit(), &components(), preserve_na);
            for row in rows {
                let row = csv_row(row);
                assert_eq!(direct(&plan, &row), reference(&plan, &row), "{row:?}");
            }
        }
        let plan = CsvPlan::new(&csv_row(&["Id", "Name"]), &emit(), &[], false);
        for cells in [
            vec![&b"001"[..], &b"a\xffb\0c"[..]],
            // Valid as a whole row, not cell by cell: "é" split across two fields.
            vec![&b"x\xc3"[..], &b"\xa9y"[..]],
            vec![&b"\xc3"[..], &b"\xa9"[..]],
            vec![&b"\xc3\xa9"[..], &b"\0"[..]],
        ] {
            let row = ByteRecord::from(cells);
            assert_eq!(direct(&plan, &row), reference(&plan, &row), "{row:?}");
        }
    }

    #[test]
    fn a_repeated_column_falls_back_to_the_reference() {
        let plan = CsvPlan::new(&csv_row(&["Id", "Name", "Id"]), &emit(), &[], false);
        assert!(!plan.fast.exact);
        let row = csv_row(&["1", "n", "2"]);
        assert_eq!(direct(&plan, &row), r#"{"Id":"2","Name":"n"}"#);
        assert_eq!(direct(&plan, &row), reference(&plan, &row));
    }

    #[test]
    fn na_token_max_len_is_the_longest_token() {
        assert_eq!(
            NA_TOKENS.iter().map(|t| t.len()).max(),
            Some(NA_TOKEN_MAX_LEN)
        );
    }

    #[test]
    fn canonical_timestamps_are_recognised_exactly() {
        for t in [
            "2024-01-02T03:04:05.000Z",
            "2024-02-29T23:59:59.999Z",
            "2000-02-29T00:00:00.000Z",
            "0001-01-01T00:00:00.000Z",
            "9999-12-31T23:59:59.999Z",
        ] {
            assert!(is_canonical_timestamp(t.as_bytes()), "{t}");
            assert_eq!(format_timestamp(parse_timestamp(t).unwrap()), t);
        }
        for t in [
            "2023-02-29T00:00:00.000Z",
            "1900-02-29T00:00:00.000Z",
            "2024-13-01T00:00:00.000Z",
            "2024-01-00T00:00:00.000Z",
            "2024-01-01T24:00:00.000Z",
            "2024-01-01T00:60:00.000Z",
            "2024-01-01T00:00:60.000Z",
            "2024-01-01T00:00:00.000+0000",
            "2024-01-01 00:00:00.000Z",
            "0000-01-01T00:00:00.000Z",
        ] {
            assert!(!is_canonical_timestamp(t.as_bytes()), "{t}");
        }
    }

    /// One CSV cell for the equivalence property: text of every awkward kind.
    fn cell() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            prop::sample::select(NA_TOKENS).prop_map(str::to_owned),
            prop::sample::select(vec![
                "true", "FALSE", "True", "no", " 1 ", "-0", "1e5", "inf"
            ])
            .prop_map(str::to_owned),
            any::<i64>().prop_map(|i| i.to_string()),
            any::<f64>().prop_map(|f| f.to_string()),
            (0i64..300_000_000_000, 0u32..1000).prop_map(|(s, ms)| {
                DateTime::from_timestamp(s, ms * 1_000_000)
                    .unwrap()
                    .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                    .to_string()
            }),
            "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}(Z|\\+0000)",
            "\\PC{0,12}",
            "[\\x00-\\x7f]{0,12}",
        ]
    }

    /// The REST direct writer's output and cursor text for one record.
    fn rest_direct(writer: &mut RestWriter, record: &Value) -> (String, Option<String>) {
        let cursor = writer
            .parse(&record.to_string())
            .unwrap()
            .map(str::to_owned);
        let mut out = Vec::new();
        writer.write_data(&mut out);
        (String::from_utf8(out).unwrap(), cursor)
    }

    /// The reference: serialising [`RestPlan::convert`]'s map, and the raw cursor string. The
    /// map is parsed from the same text the writer reads (as the client parses a page).
    fn rest_reference(fields: &[(String, FieldKind)], record: &Value) -> (String, Option<String>) {
        let map: Map<String, Value> = serde_json::from_str(&record.to_string()).unwrap();
        let cursor = map
            .get("SystemModstamp")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let data = RestPlan::new(fields.to_vec()).convert(map);
        (Value::Object(data).to_string(), cursor)
    }

    #[test]
    fn rest_writer_matches_the_reference_on_awkward_records() {
        let mut fields = emit();
        fields.push(("Blob__c".to_owned(), FieldKind::Base64));
        let mut writer = RestWriter::new(fields.clone(), Some("SystemModstamp"));
        let records = [
            json!({
                "attributes": {"type": "Account", "url": "/services/data/v62.0/sobjects/Account/001A"},
                "Id": "001A", "Name": "  ", "Code__c": "01234", "IsDeleted": false,
                "AnnualRevenue": 1250000.5, "NumberOfEmployees": 42.0, "Founded__c": "2020-02-29",
                "SystemModstamp": "2024-01-02T03:04:05.000+0000", "BillingCity": "Paris",
                "BillingAddress": {"city": "Paris", "postalCode": "75001", "latitude": 48.85},
                "Other": "not selected", "Description": null
            }),
            // Keys in another order, escapes, numbers as text, text as numbers, nested values.
            json!({
                "SystemModstamp": "2024-01-02T04:04:05.6+0100", "Name": "a \"q\" \\ \n é 😀",
                "Id": "001B", "NumberOfEmployees": "17", "AnnualRevenue": "abc",
                "IsDeleted": "TRUE", "Code__c": 12, "Founded__c": true,
                "Description": {"nested": [1, "x", null]}, "Blob__c": [1, 2],
                "BillingAddress": null, "attributes": {"type": "Account"}
            }),
            json!({"Id": "001C", "NumberOfEmployees": 1.0e20, "AnnualRevenue": -0.0,
                   "IsDeleted": 1, "SystemModstamp": 5, "Name": null}),
            json!({"Id": "001D", "Name": "first", "Name": "second"}),
            json!({}),
        ];
        for record in &records {
            assert_eq!(
                rest_direct(&mut writer, record),
                rest_reference(&fields, record),
                "{record}"
            );
        }
        // A key repeated in the JSON text: the map keeps the last value, and so does the writer.
        let raw = r#"{"Name":"first","Id":"001D","Name":"second","SystemModstamp":"x"}"#;
        let cursor = writer.parse(raw).unwrap().map(str::to_owned);
        let mut out = Vec::new();
        writer.write_data(&mut out);
        let map: Map<String, Value> = serde_json::from_str(raw).unwrap();
        let reference = Value::Object(RestPlan::new(fields.clone()).convert(map)).to_string();
        assert_eq!(
            (String::from_utf8(out).unwrap(), cursor),
            (reference, Some("x".to_owned()))
        );
        assert!(writer.parse("[1, 2]").is_err(), "a record is an object");
        // The key's text is kept on request, emitted or not; the output does not change.
        let mut keyed = RestWriter::new(fields.clone(), Some("SystemModstamp")).with_key("Id");
        for record in &records {
            assert_eq!(
                rest_direct(&mut keyed, record),
                rest_reference(&fields, record)
            );
            assert_eq!(keyed.key(), record["Id"].as_str(), "{record}");
            assert_eq!(keyed.cursor(), record["SystemModstamp"].as_str());
        }
        assert_eq!(writer.key(), None, "a writer without with_key keeps no key");
        let mut unselected = RestWriter::new(fields.clone(), None).with_key("Other");
        unselected.parse(&records[0].to_string()).unwrap();
        assert_eq!(unselected.key(), Some("not selected"));
        let mut out = Vec::new();
        unselected.write_data(&mut out);
        assert!(!String::from_utf8(out).unwrap().contains("not selected"));
        assert!(writer.parse("{\"Id\": \"001E\"} x").is_err());
    }

    /// One REST value for the equivalence property.
    fn rest_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<u64>().prop_map(|u| json!(u)),
            (-1.0e18f64..1.0e18).prop_map(|f| json!(f)),
            cell().prop_map(Value::String),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,6}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The REST direct writer prints exactly what serialising [`RestPlan::convert`] prints.
        #[test]
        fn rest_writer_matches_the_reference(
            values in prop::collection::vec(rest_value(), 14),
            present in prop::collection::vec(any::<bool>(), 14),
        ) {
            let fields = emit();
            let mut names: Vec<String> = fields.iter().map(|(n, _)| n.clone()).collect();
            names.push("attributes".to_owned());
            names.push("Unselected".to_owned());
            let record: Map<String, Value> = names
                .into_iter()
                .zip(values)
                .zip(present)
                .filter(|(_, p)| *p)
                .map(|(kv, _)| kv)
                .collect();
            let record = Value::Object(record);
            let mut writer = RestWriter::new(fields.clone(), Some("SystemModstamp"));
            prop_assert_eq!(rest_direct(&mut writer, &record), rest_reference(&fields, &record));
        }
    }

    proptest! {
        /// The direct writer prints exactly what serialising the reference conversion prints.
        #[test]
        fn direct_writer_matches_the_reference(
            cells in prop::collection::vec(cell(), 0..14),
            preserve_na in any::<bool>(),
        ) {
            let plan = CsvPlan::new(&csv_row(HEADER), &emit(), &components(), preserve_na);
            let refs: Vec<&str> = cells.iter().map(String::as_str).collect();
            let row = csv_row(&refs);
            prop_assert_eq!(direct(&plan, &row), reference(&plan, &row));
        }

        /// Text fields survive CSV → JSON unchanged (apart from empty = null).
        #[test]
        fn text_is_kept_exactly(text in "[^\\x00]{1,40}") {
            let plan = CsvPlan::new(&csv_row(&["Name"]), &emit(), &[], true);
            let data = plan.convert(&csv_row(&[text.as_str()]));
            prop_assert_eq!(data.get("Name"), Some(&Value::String(text.clone())));
        }

        /// Integers round-trip exactly; numbers keep their value.
        #[test]
        fn numbers_round_trip(i in any::<i64>(), f in -1.0e12f64..1.0e12) {
            prop_assert_eq!(typed_from_text(&i.to_string(), FieldKind::Integer), json!(i));
            prop_assert_eq!(typed_from_text(&i.to_string(), FieldKind::Number), json!(i));
            let v = typed_from_text(&f.to_string(), FieldKind::Number);
            prop_assert_eq!(v.as_f64(), Some(f));
        }

        /// Any datetime formatted by Salesforce (REST or Bulk) normalises to the same text.
        #[test]
        fn datetimes_normalise(secs in 0i64..4_000_000_000, ms in 0u32..1000) {
            let ts = DateTime::from_timestamp(secs, ms * 1_000_000).unwrap();
            let rest = ts.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
            let bulk = ts.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            prop_assert_eq!(typed_from_text(&rest, FieldKind::DateTime), typed_from_text(&bulk, FieldKind::DateTime));
            prop_assert_eq!(typed_from_text(&bulk, FieldKind::DateTime), Value::String(bulk.clone()));
        }
    }
}
