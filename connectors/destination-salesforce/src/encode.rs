//! Pre-validation and CSV cells: one record's data → the cells of one Bulk ingest row, or a
//! rejection saying why Salesforce would refuse it (so no API quota is spent on it).
//!
//! [`ObjectSchema`] is built once per object from its describe; [`RowEncoder`] applies it to
//! records of one route (object + operation). Checks, each reported with the code Salesforce
//! itself uses for the problem:
//!
//! - unknown columns (`INVALID_FIELD`), fields the operation cannot set
//!   (`INVALID_FIELD_FOR_INSERT_UPDATE`), missing required fields on insert and `null` in
//!   non-nillable fields (`REQUIRED_FIELD_MISSING`), a missing matching key (`MISSING_ARGUMENT`);
//! - types (`INVALID_TYPE_ON_FIELD_IN_RECORD`), ids (`MALFORMED_ID`), text lengths and the Bulk
//!   API's 32,000-character cell limit (`STRING_TOO_LONG`), numeric ranges
//!   (`NUMBER_OUTSIDE_VALID_RANGE`), restricted picklists
//!   (`INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST`) and email addresses that are malformed under any
//!   reading (`INVALID_EMAIL_ADDRESS`: no `@`, nothing before or after it, a second `@`,
//!   whitespace, a domain starting or ending with a dot); stricter rules are left to Salesforce,
//!   so a record it would accept is never refused here.
//!
//! Cells follow the Bulk API 2.0 CSV rules: an explicit `null` becomes `#N/A` (set the field to
//! null), an absent key sends nothing (an empty cell, which leaves the field unchanged); booleans
//! are `true`/`false`; numbers are plain decimals (no exponent); dates `yyyy-MM-dd`; datetimes
//! `yyyy-MM-ddTHH:mm:ss.SSSZ` in UTC; times `HH:mm:ss.SSSZ`; multi-select picklists `a;b`; nested
//! objects and arrays in text fields are compact JSON. Keys starting with `_airbyte_` (metadata
//! added by Airbyte caches) are not columns and are ignored. Key lookup is case-insensitive,
//! like Salesforce's own field names. Relationship columns (`Account.Ext_Id__c`) are accepted
//! when the part before the dot is a relationship name of a writable reference field.

use std::borrow::Cow;
use std::collections::HashMap;

use airbyte_protocol::JsonObject;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use salesforce_client::rest::{FieldDescribe, SObjectDescribe};
use serde_json::Value;

use crate::route::{Operation, is_api_name};

/// Salesforce's limit on one CSV cell in a Bulk upload.
pub const MAX_CELL_CHARS: usize = 32_000;
/// Salesforce's limit on one CSV record in a Bulk upload.
pub const MAX_ROW_CHARS: usize = 400_000;
/// What a cell holds to set a field to null.
pub const NULL_CELL: &str = "#N/A";

/// How a field's values are checked and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `boolean`.
    Boolean,
    /// `int` (32-bit).
    Int,
    /// `long`.
    Long,
    /// `double`, `currency`, `percent`.
    Decimal,
    /// `date`.
    Date,
    /// `datetime`.
    DateTime,
    /// `time`.
    Time,
    /// `id` and `reference`.
    Id,
    /// `picklist`.
    Picklist,
    /// `multipicklist`.
    MultiPicklist,
    /// `base64` (not loadable through Bulk 2.0 CSV).
    Base64,
    /// `address`, `location` (written through their component fields).
    Compound,
    /// `email`: text checked for an address shape.
    Email,
    /// Everything else: text of some kind.
    Text,
}

impl Kind {
    /// The kind of a describe `type`.
    pub fn of(field_type: &str) -> Self {
        match field_type {
            "boolean" => Self::Boolean,
            "int" => Self::Int,
            "long" => Self::Long,
            "double" | "currency" | "percent" => Self::Decimal,
            "date" => Self::Date,
            "datetime" => Self::DateTime,
            "time" => Self::Time,
            "id" | "reference" => Self::Id,
            "picklist" => Self::Picklist,
            "multipicklist" => Self::MultiPicklist,
            "base64" => Self::Base64,
            "address" | "location" => Self::Compound,
            "email" => Self::Email,
            _ => Self::Text,
        }
    }
}

/// What the encoder needs to know about one field.
#[derive(Debug, Clone)]
pub struct FieldInfo {
    /// API name, as Salesforce spells it.
    pub name: String,
    /// Value kind.
    pub kind: Kind,
    /// Settable on insert.
    pub createable: bool,
    /// Settable on update.
    pub updateable: bool,
    /// May be null.
    pub nillable: bool,
    /// Salesforce fills it when not given on insert.
    pub defaulted_on_create: bool,
    /// Text length limit (0: none known).
    pub length: u32,
    /// Total digits (decimals) or `digits` (int).
    pub precision: u32,
    /// Digits after the point.
    pub scale: u32,
    /// Only the listed picklist values are allowed.
    pub restricted_picklist: bool,
    /// Active picklist values, lower-cased.
    pub picklist: Vec<String>,
    /// External id (usable as an upsert key).
    pub external_id: bool,
    /// Relationship name of a reference field.
    pub relationship_name: Option<String>,
}

impl FieldInfo {
    /// The encoder's view of a describe field.
    pub fn from_describe(f: &FieldDescribe) -> Self {
        let kind = Kind::of(&f.field_type);
        let digits = f.extra.get("digits").and_then(Value::as_u64).unwrap_or(0) as u32;
        Self {
            name: f.name.clone(),
            kind,
            createable: f.createable,
            updateable: f.updateable,
            nillable: f.nillable,
            defaulted_on_create: f.defaulted_on_create,
            length: f.length,
            precision: if kind == Kind::Int {
                digits
            } else {
                f.precision
            },
            scale: f.scale,
            restricted_picklist: f
                .extra
                .get("restrictedPicklist")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            picklist: f
                .picklist_values
                .iter()
                .filter(|p| p.active)
                .map(|p| p.value.to_lowercase())
                .collect(),
            external_id: f.external_id,
            relationship_name: f.relationship_name.clone().filter(|r| !r.is_empty()),
        }
    }

    /// Required on insert: not nillable, not filled by Salesforce, not a checkbox (which defaults
    /// to false).
    pub fn required_on_insert(&self) -> bool {
        self.createable && !self.nillable && !self.defaulted_on_create && self.kind != Kind::Boolean
    }

    fn is_id(&self) -> bool {
        self.name.eq_ignore_ascii_case("Id")
    }
}

/// One object's fields, looked up case-insensitively.
#[derive(Debug, Clone)]
pub struct ObjectSchema {
    /// The object's API name as Salesforce spells it.
    pub name: String,
    /// Fields in describe order.
    pub fields: Vec<FieldInfo>,
    by_name: HashMap<String, usize>,
    /// Names as Salesforce spells them: the lookup that needs no allocation.
    exact: HashMap<String, usize>,
    by_relationship: HashMap<String, usize>,
    /// Each field's name as a shared [`Column`].
    columns: Vec<Column>,
}

impl ObjectSchema {
    /// The schema of a described object.
    pub fn from_describe(d: &SObjectDescribe) -> Self {
        Self::new(
            &d.name,
            d.fields.iter().map(FieldInfo::from_describe).collect(),
        )
    }

    /// A schema from explicit fields.
    pub fn new(name: &str, fields: Vec<FieldInfo>) -> Self {
        let by_name = fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.to_lowercase(), i))
            .collect();
        let exact = fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.clone(), i))
            .collect();
        let by_relationship = fields
            .iter()
            .enumerate()
            .filter_map(|(i, f)| Some((f.relationship_name.as_ref()?.to_lowercase(), i)))
            .collect();
        let columns = fields
            .iter()
            .map(|f| Column::from(f.name.as_str()))
            .collect();
        Self {
            name: name.to_owned(),
            fields,
            by_name,
            exact,
            by_relationship,
            columns,
        }
    }

    /// The index of a field by name (any case).
    pub fn index(&self, name: &str) -> Option<usize> {
        match self.exact.get(name) {
            Some(&i) => Some(i),
            None => self.by_name.get(&name.to_lowercase()).copied(),
        }
    }

    /// A field by name (any case).
    pub fn field(&self, name: &str) -> Option<&FieldInfo> {
        self.index(name).map(|i| &self.fields[i])
    }
}

/// Why a record was refused (before or by Salesforce).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Salesforce-style error code, e.g. `REQUIRED_FIELD_MISSING`.
    pub code: String,
    /// Human explanation.
    pub message: String,
    /// Fields concerned.
    pub fields: Vec<String>,
}

impl RowError {
    fn new(code: &str, message: String, field: &str) -> Self {
        Self {
            code: code.to_owned(),
            message,
            fields: vec![field.to_owned()],
        }
    }

    /// Parses Salesforce's `sf__Error` cell: `CODE:message[:fields]`.
    pub fn from_sf_error(text: &str) -> Self {
        let (code, rest) = match text.split_once(':') {
            Some((code, rest))
                if !code.is_empty()
                    && code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') =>
            {
                (code, rest)
            }
            _ => ("UNKNOWN", text),
        };
        // The fields part, when present, follows the last ':': `F1 F2 --`, `F1,F2` or `--`.
        let (message, fields) = match rest.rsplit_once(':') {
            Some((m, f)) => {
                let f = f.trim();
                let list = f.strip_suffix("--").unwrap_or(f);
                let names: Vec<&str> = list
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|x| !x.is_empty())
                    .collect();
                if (f.ends_with("--") || !names.is_empty())
                    && names.iter().all(|x| is_field_path(x))
                {
                    (m, names.into_iter().map(str::to_owned).collect())
                } else {
                    (rest, Vec::new())
                }
            }
            None => (rest, Vec::new()),
        };
        Self {
            code: code.to_owned(),
            message: message.trim().to_owned(),
            fields,
        }
    }
}

fn is_field_path(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(is_api_name)
}

/// One encoded row: `(column, cell)` pairs (columns are canonical field names or relationship
/// paths).
pub type Cells = Vec<(Column, String)>;

/// A column name, shared by every row that uses it (no allocation per cell).
pub type Column = std::sync::Arc<str>;

/// Encodes records of one route.
#[derive(Debug, Clone)]
pub struct RowEncoder {
    schema: std::sync::Arc<ObjectSchema>,
    operation: Operation,
    /// The canonical matching key field, if the operation has one.
    key: Option<String>,
}

/// A route that cannot work with the object as described.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// The upsert key is not a field of the object.
    #[error("object {object} has no field {key} to match records on")]
    NoSuchKey {
        /// Object.
        object: String,
        /// Key as configured.
        key: String,
    },
    /// The upsert key is neither `Id` nor an external id field.
    #[error(
        "field {object}.{key} cannot be used to match records: upsert needs Id or a field marked \
         External ID"
    )]
    NotExternalId {
        /// Object.
        object: String,
        /// Key.
        key: String,
    },
}

impl RowEncoder {
    /// An encoder for `operation` on `schema`; checks the matching key exists and may be used.
    pub fn new(
        schema: std::sync::Arc<ObjectSchema>,
        operation: Operation,
    ) -> Result<Self, EncoderError> {
        let key = match operation.key() {
            None => None,
            Some(k) => {
                let field = schema.field(k).ok_or_else(|| EncoderError::NoSuchKey {
                    object: schema.name.clone(),
                    key: k.to_owned(),
                })?;
                if matches!(operation, Operation::Upsert { .. })
                    && !(field.external_id || field.is_id())
                {
                    return Err(EncoderError::NotExternalId {
                        object: schema.name.clone(),
                        key: field.name.clone(),
                    });
                }
                Some(field.name.clone())
            }
        };
        Ok(Self {
            schema,
            operation,
            key,
        })
    }

    /// The matching key column, if any.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The object.
    pub fn schema(&self) -> &ObjectSchema {
        &self.schema
    }

    fn writable(&self, f: &FieldInfo) -> bool {
        let is_key = self.key.as_deref() == Some(f.name.as_str());
        match &self.operation {
            Operation::Insert => f.createable,
            Operation::Update => f.updateable || is_key,
            Operation::Upsert { .. } => (f.createable && f.updateable) || is_key,
            Operation::Delete | Operation::HardDelete => is_key,
        }
    }

    /// The cells of one record, or everything wrong with it.
    pub fn encode(&self, data: &JsonObject) -> Result<Cells, RowError> {
        self.encode_fields(
            data.iter().map(|(k, v)| (k.as_str(), Cow::Borrowed(v))),
            data.len(),
        )
    }

    /// [`RowEncoder::encode`] over a record's `(key, value)` pairs in input order (no map needed:
    /// the input reader hands them over as parsed); `len` is a capacity hint. Owned text values
    /// become their cells without a copy.
    pub fn encode_fields<'a>(
        &self,
        data: impl Iterator<Item = (&'a str, Cow<'a, Value>)>,
        len: usize,
    ) -> Result<Cells, RowError> {
        let mut cells: Cells = Vec::with_capacity(len);
        let mut errors: Vec<RowError> = Vec::new();
        let mut present: Vec<bool> = vec![false; self.schema.fields.len()];
        let mut chars = 0usize;
        for (key, value) in data {
            if key.len() >= 9 && key[..9].eq_ignore_ascii_case("_airbyte_") {
                continue;
            }
            let (column, field_index) = match self.schema.index(key) {
                Some(i) => (self.schema.columns[i].clone(), i),
                None => match self.relationship_column(key) {
                    Some(found) => found,
                    None => {
                        if self.operation.key_only() {
                            continue;
                        }
                        errors.push(RowError::new(
                            "INVALID_FIELD",
                            format!("No such column '{key}' on sobject {}", self.schema.name),
                            key,
                        ));
                        continue;
                    }
                },
            };
            let field = &self.schema.fields[field_index];
            let relationship = column.contains('.');
            if self.operation.key_only() && self.key.as_deref() != Some(&*column) {
                continue;
            }
            if present[field_index] && !relationship {
                errors.push(RowError::new(
                    "DUPLICATE_VALUE",
                    format!(
                        "field {} appears more than once (keys differ only in case)",
                        field.name
                    ),
                    &field.name,
                ));
                continue;
            }
            if !self.writable(field) {
                errors.push(RowError::new(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    format!(
                        "Unable to {} field {}: it is not writable for this operation",
                        match self.operation {
                            Operation::Insert => "create",
                            _ => "update",
                        },
                        field.name
                    ),
                    &field.name,
                ));
                continue;
            }
            let cell = if relationship {
                // The parent's indexed field: its type is unknown here, so text is sent as is.
                match value.as_ref() {
                    Value::Null => Ok(String::new()),
                    v => Ok(text_of(v)),
                }
            } else {
                match value {
                    // Text for a text field is its own cell (what `cell` makes of it, uncopied).
                    Cow::Owned(Value::String(s))
                        if matches!(field.kind, Kind::Text | Kind::Compound) =>
                    {
                        self.check_length(field, s)
                    }
                    v => self.cell(field, &v),
                }
            };
            match cell {
                Ok(cell) => {
                    if !relationship && !cell.is_empty() {
                        present[field_index] = true;
                    }
                    let n = cell.chars().count();
                    chars += n + 1;
                    if n > MAX_CELL_CHARS {
                        errors.push(RowError::new(
                            "STRING_TOO_LONG",
                            format!(
                                "{}: {n} characters, over the Bulk API limit of {MAX_CELL_CHARS} per value",
                                column
                            ),
                            &column,
                        ));
                    } else if !cell.is_empty() {
                        cells.push((column, cell));
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if let Some(key) = &self.key {
            let has_key = self.schema.index(key).is_some_and(|i| present[i]);
            if !has_key {
                errors.push(RowError::new(
                    "MISSING_ARGUMENT",
                    format!(
                        "{key} not specified: {} needs it to match the record",
                        self.operation
                    ),
                    key,
                ));
            }
        }
        if self.operation == Operation::Insert {
            let missing: Vec<&str> = self
                .schema
                .fields
                .iter()
                .enumerate()
                .filter(|(i, f)| f.required_on_insert() && !present[*i])
                .map(|(_, f)| f.name.as_str())
                .collect();
            if !missing.is_empty() {
                errors.push(RowError {
                    code: "REQUIRED_FIELD_MISSING".to_owned(),
                    message: format!("Required fields are missing: [{}]", missing.join(", ")),
                    fields: missing.iter().map(|s| (*s).to_owned()).collect(),
                });
            }
        }
        if chars > MAX_ROW_CHARS {
            errors.push(RowError {
                code: "STRING_TOO_LONG".to_owned(),
                message: format!(
                    "the record has {chars} characters, over the Bulk API limit of {MAX_ROW_CHARS}"
                ),
                fields: Vec::new(),
            });
        }
        match errors.len() {
            0 => Ok(cells),
            1 => Err(errors.remove(0)),
            _ => {
                let mut fields: Vec<String> = Vec::new();
                for e in &errors {
                    for f in &e.fields {
                        if !fields.contains(f) {
                            fields.push(f.clone());
                        }
                    }
                }
                Err(RowError {
                    code: errors[0].code.clone(),
                    message: errors
                        .iter()
                        .map(|e| format!("{}: {}", e.code, e.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                    fields,
                })
            }
        }
    }

    /// `Rel.Field` where `Rel` is a reference field's relationship name.
    fn relationship_column(&self, key: &str) -> Option<(Column, usize)> {
        let (rel, target) = key.split_once('.')?;
        let &i = self.schema.by_relationship.get(&rel.to_lowercase())?;
        if !is_api_name(target) {
            return None;
        }
        let canonical = self.schema.fields[i].relationship_name.as_deref()?;
        Some((Column::from(format!("{canonical}.{target}")), i))
    }

    fn cell(&self, f: &FieldInfo, value: &Value) -> Result<String, RowError> {
        let bad = |why: String| {
            RowError::new(
                "INVALID_TYPE_ON_FIELD_IN_RECORD",
                format!("{}: {why}", f.name),
                &f.name,
            )
        };
        if value.is_null() || (f.kind != Kind::Text && value.as_str().is_some_and(str::is_empty)) {
            if value.is_null() && self.key.as_deref() == Some(f.name.as_str()) {
                return Ok(String::new()); // reported as MISSING_ARGUMENT
            }
            if value.as_str().is_some() {
                return Ok(String::new()); // "" for a non-text field: send nothing
            }
            if f.nillable {
                return Ok(NULL_CELL.to_owned());
            }
            if f.defaulted_on_create || f.kind == Kind::Boolean {
                // Not nillable but filled by Salesforce: leave it to Salesforce.
                return Ok(String::new());
            }
            return Err(RowError::new(
                "REQUIRED_FIELD_MISSING",
                format!("Required fields are missing: [{}] (null given)", f.name),
                &f.name,
            ));
        }
        let cell = match f.kind {
            Kind::Boolean => {
                boolean(value).ok_or_else(|| bad(format!("{value} is not a boolean")))?
            }
            Kind::Int | Kind::Long => {
                let n = integer(value).ok_or_else(|| bad(format!("{value} is not an integer")))?;
                let (min, max) = if f.kind == Kind::Int {
                    (i32::MIN as i128, i32::MAX as i128)
                } else {
                    (i64::MIN as i128, i64::MAX as i128)
                };
                let digits = n.unsigned_abs().to_string().len() as u32;
                if n < min || n > max || (f.precision > 0 && digits > f.precision) {
                    return Err(RowError::new(
                        "NUMBER_OUTSIDE_VALID_RANGE",
                        format!("{}: {n} is outside the field's range", f.name),
                        &f.name,
                    ));
                }
                n.to_string()
            }
            Kind::Decimal => {
                let d = decimal(value).ok_or_else(|| bad(format!("{value} is not a number")))?;
                if f.precision > 0 {
                    let int_digits = d
                        .trim_start_matches('-')
                        .split('.')
                        .next()
                        .unwrap_or("")
                        .trim_start_matches('0')
                        .len() as u32;
                    if int_digits > f.precision.saturating_sub(f.scale) {
                        return Err(RowError::new(
                            "NUMBER_OUTSIDE_VALID_RANGE",
                            format!(
                                "{}: {d} has more than {} digits before the decimal point",
                                f.name,
                                f.precision.saturating_sub(f.scale)
                            ),
                            &f.name,
                        ));
                    }
                }
                d
            }
            Kind::Date => {
                date(value).ok_or_else(|| bad(format!("{value} is not a date (yyyy-MM-dd)")))?
            }
            Kind::DateTime => datetime(value)
                .ok_or_else(|| bad(format!("{value} is not a date-time (RFC 3339)")))?,
            Kind::Time => {
                time(value).ok_or_else(|| bad(format!("{value} is not a time (HH:mm:ss)")))?
            }
            Kind::Id => {
                let s = text_of(value).trim().to_owned();
                if !is_salesforce_id(&s) {
                    return Err(RowError::new(
                        "MALFORMED_ID",
                        format!(
                            "{}: {s:?} is not a 15- or 18-character Salesforce id",
                            f.name
                        ),
                        &f.name,
                    ));
                }
                s
            }
            Kind::Picklist => {
                let s = text_of(value);
                self.check_picklist(f, &s)?;
                self.check_length(f, s)?
            }
            Kind::MultiPicklist => {
                let items: Vec<String> = match value {
                    Value::Array(a) => a.iter().map(text_of).collect(),
                    v => text_of(v).split(';').map(str::to_owned).collect(),
                };
                for item in &items {
                    self.check_picklist(f, item)?;
                }
                items.join(";")
            }
            Kind::Base64 => {
                return Err(RowError::new(
                    "INVALID_FIELD",
                    format!(
                        "{}: base64 fields cannot be written through Bulk API 2.0",
                        f.name
                    ),
                    &f.name,
                ));
            }
            Kind::Compound | Kind::Text => self.check_length(f, text_of(value))?,
            Kind::Email => {
                let s = text_of(value);
                if !is_email_shaped(&s) {
                    return Err(RowError::new(
                        "INVALID_EMAIL_ADDRESS",
                        format!("{}: invalid email address: {s}", f.name),
                        &f.name,
                    ));
                }
                self.check_length(f, s)?
            }
        };
        Ok(cell)
    }

    fn check_picklist(&self, f: &FieldInfo, value: &str) -> Result<(), RowError> {
        if f.restricted_picklist && !f.picklist.contains(&value.to_lowercase()) {
            return Err(RowError::new(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                format!(
                    "{}: bad value for restricted picklist field: {value}",
                    f.name
                ),
                &f.name,
            ));
        }
        Ok(())
    }

    fn check_length(&self, f: &FieldInfo, s: String) -> Result<String, RowError> {
        if f.length > 0 {
            let n = s.chars().count();
            if n > f.length as usize {
                return Err(RowError::new(
                    "STRING_TOO_LONG",
                    format!(
                        "{}: data value too large: {n} characters, max length={}",
                        f.name, f.length
                    ),
                    &f.name,
                ));
            }
        }
        Ok(s)
    }
}

/// Whether `s` can be an email address under any reading: one `@` with text on both sides, no
/// whitespace, and a domain that neither starts nor ends with a dot. Salesforce refuses every
/// value this refuses (`INVALID_EMAIL_ADDRESS`); it may refuse more.
fn is_email_shaped(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
}

/// Text of any JSON value: strings as is, nested values as compact JSON.
pub fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => decimal_of_number(n),
        other => other.to_string(),
    }
}

fn decimal_of_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        n.to_string()
    } else {
        // Rust's float Display never uses an exponent and is the shortest exact round trip.
        n.as_f64()
            .map(|f| f.to_string())
            .unwrap_or_else(|| n.to_string())
    }
}

fn boolean(v: &Value) -> Option<String> {
    let b = match v {
        Value::Bool(b) => *b,
        Value::Number(n) => match n.as_f64() {
            Some(0.0) => false,
            Some(1.0) => true,
            _ => return None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => return None,
        },
        _ => return None,
    };
    Some(b.to_string())
}

/// A plain decimal string (`-12.50`), validated; exponents are expanded.
fn decimal(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => {
            if n.as_f64().is_some_and(|f| !f.is_finite()) {
                return None;
            }
            Some(decimal_of_number(n))
        }
        Value::String(s) => {
            let s = s.trim();
            let body = s.strip_prefix(['+', '-']).unwrap_or(s);
            let plain = !body.is_empty()
                && body.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                && body.bytes().filter(|&b| b == b'.').count() <= 1
                && body != ".";
            if plain {
                let unsigned = body.strip_prefix('.').map(|r| format!("0.{r}"));
                let body = unsigned.as_deref().unwrap_or(body);
                let body = body.strip_suffix('.').unwrap_or(body);
                Some(if s.starts_with('-') {
                    format!("-{body}")
                } else {
                    body.to_owned()
                })
            } else {
                let f: f64 = s.parse().ok()?;
                f.is_finite().then(|| f.to_string())
            }
        }
        _ => None,
    }
}

/// An integer from a number or a decimal string whose fraction is zero (`"12.000"`).
fn integer(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(i as i128)
            } else if let Some(u) = n.as_u64() {
                Some(u as i128)
            } else {
                let f = n.as_f64()?;
                (f.fract() == 0.0 && f.abs() < 1e20).then_some(f as i128)
            }
        }
        Value::String(_) => {
            let d = decimal(v)?;
            let (int, frac) = d.split_once('.').unwrap_or((&d, ""));
            if !frac.bytes().all(|b| b == b'0') {
                return None;
            }
            int.parse().ok()
        }
        _ => None,
    }
}

fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
    ] {
        if let Ok(dt) = DateTime::parse_from_str(s, f) {
            return Some(dt.with_timezone(&Utc));
        }
    }
    let naive = s.strip_suffix(['Z', 'z']).unwrap_or(s);
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(naive, f) {
            return Some(dt.and_utc());
        }
    }
    None
}

fn date(v: &Value) -> Option<String> {
    let s = v.as_str()?.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(d.format("%Y-%m-%d").to_string());
    }
    // A date-time: its calendar date in its own offset.
    let with_offset = DateTime::parse_from_rfc3339(s).ok().map(|d| d.date_naive());
    let naive = || {
        ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), f).ok())
            .map(|d| d.date())
    };
    with_offset
        .or_else(naive)
        .map(|d| d.format("%Y-%m-%d").to_string())
}

fn datetime(v: &Value) -> Option<String> {
    let s = v.as_str()?;
    let dt = parse_datetime(s).or_else(|| {
        NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc())
    })?;
    Some(dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

fn time(v: &Value) -> Option<String> {
    let s = v.as_str()?.trim();
    // Split off a zone: Z, or ±hh:mm / ±hhmm after the seconds.
    let (clock, offset_secs) = if let Some(c) = s.strip_suffix(['Z', 'z']) {
        (c, 0i64)
    } else if let Some(pos) = s.rfind(['+', '-']).filter(|&p| p >= 5) {
        let (c, z) = s.split_at(pos);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let digits: String = z[1..].chars().filter(char::is_ascii_digit).collect();
        if digits.len() != 4 {
            return None;
        }
        let h: i64 = digits[..2].parse().ok()?;
        let m: i64 = digits[2..].parse().ok()?;
        (c, sign * (h * 3600 + m * 60))
    } else {
        (s, 0)
    };
    let t = ["%H:%M:%S%.f", "%H:%M"]
        .iter()
        .find_map(|f| NaiveTime::parse_from_str(clock, f).ok())?;
    let (utc, _) = t.overflowing_sub_signed(chrono::TimeDelta::seconds(offset_secs));
    Some(utc.format("%H:%M:%S%.3fZ").to_string())
}

/// 15 or 18 letters and digits.
pub fn is_salesforce_id(s: &str) -> bool {
    (s.len() == 15 || s.len() == 18) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    pub(crate) fn field(name: &str, kind: Kind) -> FieldInfo {
        FieldInfo {
            name: name.to_owned(),
            kind,
            createable: true,
            updateable: true,
            nillable: true,
            defaulted_on_create: false,
            length: 0,
            precision: 0,
            scale: 0,
            restricted_picklist: false,
            picklist: Vec::new(),
            external_id: false,
            relationship_name: None,
        }
    }

    fn contact() -> Arc<ObjectSchema> {
        let mut id = field("Id", Kind::Id);
        id.createable = false;
        id.updateable = false;
        id.nillable = false;
        id.defaulted_on_create = true;
        let mut last = field("LastName", Kind::Text);
        last.nillable = false;
        last.length = 10;
        let mut ext = field("Ext_Id__c", Kind::Text);
        ext.external_id = true;
        let mut level = field("Level__c", Kind::Picklist);
        level.restricted_picklist = true;
        level.picklist = vec!["primary".into(), "secondary".into()];
        let mut tags = field("Tags__c", Kind::MultiPicklist);
        tags.restricted_picklist = true;
        tags.picklist = vec!["a".into(), "b".into()];
        let mut amount = field("Amount__c", Kind::Decimal);
        amount.precision = 5;
        amount.scale = 2;
        let mut created = field("CreatedDate", Kind::DateTime);
        created.createable = false;
        created.updateable = false;
        let mut opt_out = field("HasOptedOutOfEmail", Kind::Boolean);
        opt_out.nillable = false;
        opt_out.defaulted_on_create = true;
        let mut account = field("AccountId", Kind::Id);
        account.relationship_name = Some("Account".into());
        let mut count = field("Count__c", Kind::Int);
        count.precision = 3;
        let mut email = field("Email", Kind::Email);
        email.length = 20;
        Arc::new(ObjectSchema::new(
            "Contact",
            vec![
                id,
                last,
                ext,
                level,
                tags,
                amount,
                created,
                opt_out,
                account,
                count,
                field("Birthdate", Kind::Date),
                field("Due__c", Kind::DateTime),
                field("Alarm__c", Kind::Time),
                field("Notes__c", Kind::Text),
                field("Photo__c", Kind::Base64),
                field("Big__c", Kind::Long),
                email,
            ],
        ))
    }

    fn enc(op: Operation) -> RowEncoder {
        RowEncoder::new(contact(), op).unwrap()
    }

    fn data(v: Value) -> JsonObject {
        v.as_object().unwrap().clone()
    }

    fn cells(op: Operation, v: Value) -> Vec<(String, String)> {
        enc(op)
            .encode(&data(v))
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    fn error(op: Operation, v: Value) -> RowError {
        enc(op).encode(&data(v)).unwrap_err()
    }

    fn cell(column: &str, v: Value) -> Result<String, RowError> {
        let mut d = json!({"LastName": "X"});
        d[column] = v;
        enc(Operation::Insert).encode(&data(d)).map(|c| {
            c.into_iter()
                .find(|(k, _)| &**k == column)
                .map(|(_, v)| v)
                .unwrap_or_default()
        })
    }

    #[test]
    fn null_is_na_absent_is_nothing_and_keys_fold_case() {
        let c = cells(
            Operation::Insert,
            json!({"lastname": "Jones", "Notes__c": null, "_airbyte_raw_id": "x", "_AIRBYTE_meta": {}}),
        );
        assert_eq!(
            c,
            vec![
                ("LastName".into(), "Jones".into()),
                ("Notes__c".into(), "#N/A".into())
            ]
        );
    }

    #[test]
    fn values_take_salesforce_formats() {
        assert_eq!(cell("HasOptedOutOfEmail", json!(true)).unwrap(), "true");
        assert_eq!(cell("HasOptedOutOfEmail", json!("FALSE")).unwrap(), "false");
        assert_eq!(cell("HasOptedOutOfEmail", json!(1)).unwrap(), "true");
        assert_eq!(cell("Amount__c", json!(12.5)).unwrap(), "12.5");
        assert_eq!(
            cell("Amount__c", json!("1.500000000")).unwrap(),
            "1.500000000"
        );
        assert_eq!(cell("Amount__c", json!("1e2")).unwrap(), "100");
        assert_eq!(cell("Amount__c", json!(".5")).unwrap(), "0.5");
        assert_eq!(cell("Amount__c", json!(1e-7)).unwrap(), "0.0000001");
        assert_eq!(cell("Count__c", json!("12.000")).unwrap(), "12");
        assert_eq!(cell("Count__c", json!(7.0)).unwrap(), "7");
        assert_eq!(
            cell("Big__c", json!(9_007_199_254_740_993i64)).unwrap(),
            "9007199254740993"
        );
        assert_eq!(
            cell("Birthdate", json!("1980-06-07")).unwrap(),
            "1980-06-07"
        );
        assert_eq!(
            cell("Birthdate", json!("1980-06-07T23:00:00-05:00")).unwrap(),
            "1980-06-07"
        );
        assert_eq!(
            cell("Due__c", json!("2024-01-02T03:04:05Z")).unwrap(),
            "2024-01-02T03:04:05.000Z"
        );
        assert_eq!(
            cell("Due__c", json!("2024-01-02T03:04:05.123456+02:00")).unwrap(),
            "2024-01-02T01:04:05.123Z"
        );
        assert_eq!(
            cell("Due__c", json!("2024-01-02T03:04:05.000+0000")).unwrap(),
            "2024-01-02T03:04:05.000Z"
        );
        assert_eq!(
            cell("Due__c", json!("2024-01-02 03:04:05")).unwrap(),
            "2024-01-02T03:04:05.000Z"
        );
        assert_eq!(
            cell("Due__c", json!("2024-01-02")).unwrap(),
            "2024-01-02T00:00:00.000Z"
        );
        assert_eq!(cell("Alarm__c", json!("07:30")).unwrap(), "07:30:00.000Z");
        assert_eq!(
            cell("Alarm__c", json!("07:30:15.5Z")).unwrap(),
            "07:30:15.500Z"
        );
        assert_eq!(
            cell("Alarm__c", json!("07:30:00+02:00")).unwrap(),
            "05:30:00.000Z"
        );
        assert_eq!(
            cell("Notes__c", json!({"a": [1, 2]})).unwrap(),
            r#"{"a":[1,2]}"#
        );
        assert_eq!(cell("Notes__c", json!(42)).unwrap(), "42");
        assert_eq!(cell("Tags__c", json!(["a", "b"])).unwrap(), "a;b");
        assert_eq!(cell("Level__c", json!("Primary")).unwrap(), "Primary");
        assert_eq!(
            cell("AccountId", json!("001000000000001AAA")).unwrap(),
            "001000000000001AAA"
        );
        assert_eq!(
            cell("Amount__c", json!("")).unwrap(),
            "",
            "empty string for a number: nothing"
        );
        assert_eq!(
            cell("HasOptedOutOfEmail", json!(null)).unwrap(),
            "",
            "non-nillable default"
        );
    }

    #[test]
    fn bad_values_are_rejected_with_salesforce_codes() {
        let code = |col: &str, v: Value| cell(col, v).unwrap_err().code;
        assert_eq!(
            code("HasOptedOutOfEmail", json!("maybe")),
            "INVALID_TYPE_ON_FIELD_IN_RECORD"
        );
        assert_eq!(
            code("Amount__c", json!("12,5")),
            "INVALID_TYPE_ON_FIELD_IN_RECORD"
        );
        assert_eq!(
            code("Amount__c", json!(1234.5)),
            "NUMBER_OUTSIDE_VALID_RANGE"
        );
        assert_eq!(code("Count__c", json!(1000)), "NUMBER_OUTSIDE_VALID_RANGE");
        assert_eq!(
            code("Count__c", json!(1.5)),
            "INVALID_TYPE_ON_FIELD_IN_RECORD"
        );
        assert_eq!(
            code("Birthdate", json!("07/06/1980")),
            "INVALID_TYPE_ON_FIELD_IN_RECORD"
        );
        assert_eq!(
            code("Due__c", json!(1700000000)),
            "INVALID_TYPE_ON_FIELD_IN_RECORD"
        );
        assert_eq!(
            code("Alarm__c", json!("25:00")),
            "INVALID_TYPE_ON_FIELD_IN_RECORD"
        );
        assert_eq!(code("AccountId", json!("001-bad")), "MALFORMED_ID");
        assert_eq!(
            code("Level__c", json!("tertiary")),
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
        );
        assert_eq!(
            code("Tags__c", json!("a;z")),
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
        );
        assert_eq!(code("Photo__c", json!("aGk=")), "INVALID_FIELD");
        assert_eq!(
            code("Notes__c", json!("x".repeat(MAX_CELL_CHARS + 1))),
            "STRING_TOO_LONG"
        );
        let e = cell("LastName", json!("ElevenChars")).unwrap_err();
        assert_eq!(e.code, "STRING_TOO_LONG");
        assert_eq!(e.fields, vec!["LastName"]);
    }

    #[test]
    fn malformed_email_addresses_are_rejected_like_salesforce_does() {
        for bad in [
            "bad@",
            "@example.com",
            "not-an-email",
            "a@b@c.com",
            "still not@an.email",
            "a@.example.com",
            "a@example.com.",
            "tab\t@example.com",
        ] {
            let e = cell("Email", json!(bad)).unwrap_err();
            assert_eq!(e.code, "INVALID_EMAIL_ADDRESS", "{bad:?}");
            assert_eq!(e.message, format!("Email: invalid email address: {bad}"));
            assert_eq!(e.fields, vec!["Email"]);
        }
        for good in ["ann@example.com", "a.b+tag@x", "o'neil@sub.exa.co"] {
            assert_eq!(cell("Email", json!(good)).unwrap(), good, "{good:?}");
        }
        assert_eq!(cell("Email", json!(null)).unwrap(), NULL_CELL);
        assert_eq!(cell("Email", json!("")).unwrap(), "", "empty: nothing sent");
        assert_eq!(
            cell("Email", json!("twenty-one@example.co"))
                .unwrap_err()
                .code,
            "STRING_TOO_LONG"
        );
    }

    #[test]
    fn structure_errors_are_collected() {
        let e = error(
            Operation::Insert,
            json!({"Nope": 1, "CreatedDate": "2024-01-01"}),
        );
        assert_eq!(e.code, "INVALID_FIELD");
        assert!(
            e.message
                .contains("No such column 'Nope' on sobject Contact"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("INVALID_FIELD_FOR_INSERT_UPDATE"),
            "{}",
            e.message
        );
        assert!(
            e.message
                .contains("REQUIRED_FIELD_MISSING: Required fields are missing: [LastName]"),
            "{}",
            e.message
        );
        assert_eq!(e.fields, vec!["Nope", "CreatedDate", "LastName"]);
        let e = error(Operation::Insert, json!({"LastName": null}));
        assert_eq!(e.code, "REQUIRED_FIELD_MISSING");
        let e = error(Operation::Insert, json!({"LastName": "a", "lastname": "b"}));
        assert_eq!(e.code, "DUPLICATE_VALUE");
        let e = error(
            Operation::Insert,
            json!({"LastName": "a", "Id": "003000000000001AAA"}),
        );
        assert_eq!(e.code, "INVALID_FIELD_FOR_INSERT_UPDATE");
    }

    #[test]
    fn keys_are_required_and_deletes_send_only_the_id() {
        let e = error(Operation::Update, json!({"LastName": "a"}));
        assert_eq!(e.code, "MISSING_ARGUMENT");
        let e = error(Operation::Update, json!({"Id": null, "LastName": "a"}));
        assert_eq!(e.code, "MISSING_ARGUMENT");
        assert_eq!(
            cells(
                Operation::Update,
                json!({"Id": "003000000000001AAA", "LastName": "a"})
            ),
            vec![
                ("Id".into(), "003000000000001AAA".into()),
                ("LastName".into(), "a".into())
            ]
        );
        assert_eq!(
            cells(
                Operation::Delete,
                json!({"id": "003000000000001AAA", "LastName": "a", "Whatever": 1})
            ),
            vec![("Id".into(), "003000000000001AAA".into())]
        );
        let upsert = Operation::Upsert {
            key: "ext_id__c".into(),
        };
        assert_eq!(enc(upsert.clone()).key(), Some("Ext_Id__c"));
        let e = error(upsert.clone(), json!({"LastName": "a"}));
        assert_eq!(e.code, "MISSING_ARGUMENT");
        assert_eq!(
            cells(
                upsert,
                json!({"Ext_Id__c": "C-1", "LastName": "a", "Account.Ext_Id__c": "A-9"})
            ),
            vec![
                ("Ext_Id__c".into(), "C-1".into()),
                ("LastName".into(), "a".into()),
                ("Account.Ext_Id__c".into(), "A-9".into())
            ]
        );
        assert!(matches!(
            RowEncoder::new(
                contact(),
                Operation::Upsert {
                    key: "LastName".into()
                }
            ),
            Err(EncoderError::NotExternalId { .. })
        ));
        assert!(matches!(
            RowEncoder::new(contact(), Operation::Upsert { key: "Nope".into() }),
            Err(EncoderError::NoSuchKey { .. })
        ));
        assert!(RowEncoder::new(contact(), Operation::Upsert { key: "Id".into() }).is_ok());
    }

    #[test]
    fn sf_error_cells_parse() {
        let e = RowError::from_sf_error(
            "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --",
        );
        assert_eq!(e.code, "REQUIRED_FIELD_MISSING");
        assert_eq!(e.message, "Required fields are missing: [LastName]");
        assert_eq!(e.fields, vec!["LastName"]);
        let e = RowError::from_sf_error("DUPLICATE_VALUE:dup:A__c B__c --");
        assert_eq!(e.fields, vec!["A__c", "B__c"]);
        let e = RowError::from_sf_error(
            "UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record: 10:30",
        );
        assert_eq!(
            e.message, "unable to obtain exclusive access to this record: 10:30",
            "a number is no field"
        );
        let e =
            RowError::from_sf_error("INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--");
        assert_eq!(e.code, "INVALID_CROSS_REFERENCE_KEY");
        assert_eq!(e.message, "invalid cross reference id");
        assert!(e.fields.is_empty());
        let e = RowError::from_sf_error(
            "FIELD_CUSTOM_VALIDATION_EXCEPTION:Amount must be positive:Amount__c",
        );
        assert_eq!(e.message, "Amount must be positive");
        assert_eq!(e.fields, vec!["Amount__c"]);
        let e = RowError::from_sf_error("something odd");
        assert_eq!(e.code, "UNKNOWN");
        assert_eq!(e.message, "something odd");
    }

    #[test]
    fn describe_fields_convert() {
        let f: FieldDescribe = serde_json::from_value(json!({
            "name": "Count__c", "type": "int", "digits": 9, "nillable": true, "createable": true,
            "updateable": true, "picklistValues": [], "restrictedPicklist": false
        }))
        .unwrap();
        let info = FieldInfo::from_describe(&f);
        assert_eq!(info.kind, Kind::Int);
        assert_eq!(info.precision, 9);
        let f: FieldDescribe = serde_json::from_value(json!({
            "name": "Stage", "type": "picklist", "restrictedPicklist": true, "nillable": false,
            "createable": true, "picklistValues": [{"value": "Open", "active": true}, {"value": "Old", "active": false}]
        }))
        .unwrap();
        let info = FieldInfo::from_describe(&f);
        assert!(info.restricted_picklist && info.required_on_insert());
        assert_eq!(info.picklist, vec!["open"]);
    }
}
