//! The org's schema: objects, fields and their describe attributes (§2.2–§2.4).
//!
//! Each field also says where its value comes from ([`Source`]): a system column (id, stamps),
//! a deterministic generator, a compound parent assembled from its components (§2.3), or a
//! formula computed at read time (§4.7).

use std::collections::HashMap;

/// Every describe `type` value of the Partner WSDL `fieldType` enum (salesforce-api.md §2.4); the
/// org has a field of each.
pub const WSDL_FIELD_TYPES: &[&str] = &[
    "string",
    "picklist",
    "multipicklist",
    "combobox",
    "reference",
    "base64",
    "boolean",
    "currency",
    "textarea",
    "int",
    "double",
    "percent",
    "phone",
    "id",
    "date",
    "datetime",
    "time",
    "url",
    "email",
    "encryptedstring",
    "datacategorygroupreference",
    "location",
    "address",
    "anyType",
    "complexvalue",
    "long",
];

/// Describe `type` values (§2.4, Partner WSDL `fieldType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// `id`
    Id,
    /// `string`
    String,
    /// `picklist`
    Picklist,
    /// `multipicklist`
    MultiPicklist,
    /// `combobox`
    Combobox,
    /// `reference`
    Reference,
    /// `base64`
    Base64,
    /// `boolean`
    Boolean,
    /// `currency`
    Currency,
    /// `textarea`
    Textarea,
    /// `int`
    Int,
    /// `double`
    Double,
    /// `percent`
    Percent,
    /// `phone`
    Phone,
    /// `date`
    Date,
    /// `datetime`
    DateTime,
    /// `time`
    Time,
    /// `url`
    Url,
    /// `email`
    Email,
    /// `encryptedstring`
    EncryptedString,
    /// `location` (compound)
    Location,
    /// `address` (compound)
    Address,
    /// `anyType` (history OldValue/NewValue)
    AnyType,
    /// `json` (§2.4 "extra values seen in the wild"; only with the §9.9 switch)
    Json,
    /// `masterrecord` (§2.4 "extra values seen in the wild"; only with the §9.9 switch)
    MasterRecord,
    /// `long` (§2.4 WSDL `fieldType`): a 64-bit integer, a JSON number in REST (§2.7).
    Long,
    /// `complexvalue` (§2.4 WSDL `fieldType`): a structured (JSON object) value; Bulk cannot
    /// serialize it to CSV (§5.1 "Unsupported-in-CSV fields"), and it cannot be filtered or sorted.
    ComplexValue,
    /// `datacategorygroupreference` (§2.4 WSDL `fieldType`): the API name of a data category
    /// group, text on the wire; not sortable (§4.2 "data-category fields").
    DataCategoryGroupReference,
}

impl FieldType {
    /// The describe `type` spelling.
    pub fn wire(self) -> &'static str {
        use FieldType::*;
        match self {
            Id => "id",
            String => "string",
            Picklist => "picklist",
            MultiPicklist => "multipicklist",
            Combobox => "combobox",
            Reference => "reference",
            Base64 => "base64",
            Boolean => "boolean",
            Currency => "currency",
            Textarea => "textarea",
            Int => "int",
            Double => "double",
            Percent => "percent",
            Phone => "phone",
            Date => "date",
            DateTime => "datetime",
            Time => "time",
            Url => "url",
            Email => "email",
            EncryptedString => "encryptedstring",
            Location => "location",
            Address => "address",
            AnyType => "anyType",
            Json => "json",
            MasterRecord => "masterrecord",
            Long => "long",
            ComplexValue => "complexvalue",
            DataCategoryGroupReference => "datacategorygroupreference",
        }
    }

    /// The describe `soapType` (§2.4 WSDL `soapType` enum). `long` maps to `xsd:long` (XML Schema's
    /// 64-bit integer; the reference's enum list is not exhaustive) and `complexvalue` to the
    /// `urn:` metadata type of its field (see [`FieldDef::soap_type`]); `datacategorygroupreference`
    /// is text (`xsd:string`).
    pub fn soap(self) -> &'static str {
        use FieldType::*;
        match self {
            Long => "xsd:long",
            ComplexValue => "xsd:anyType",
            Id | Reference | MasterRecord => "tns:ID",
            Base64 => "xsd:base64Binary",
            Boolean => "xsd:boolean",
            Currency | Double | Percent => "xsd:double",
            Int => "xsd:int",
            Date => "xsd:date",
            DateTime => "xsd:dateTime",
            Time => "xsd:time",
            Location => "tns:location",
            Address => "tns:address",
            AnyType => "xsd:anyType",
            Json => "tns:json",
            _ => "xsd:string",
        }
    }

    /// Text-like types whose values are [`crate::value::Value::Str`].
    pub fn is_text(self) -> bool {
        use FieldType::*;
        matches!(
            self,
            Id | String
                | Picklist
                | MultiPicklist
                | Combobox
                | Reference
                | Textarea
                | Phone
                | Url
                | Email
                | EncryptedString
                | Json
                | MasterRecord
                | DataCategoryGroupReference
        )
    }

    /// Types Bulk API 2.0 cannot write into a CSV cell: `complexvalue` always (§5.1
    /// "Unsupported-in-CSV fields: `FeatureNotEnabled : Cannot serialize value for 'F' in CSV
    /// format`"); `base64` is the separate §9.10 switch.
    pub fn csv_serializable(self) -> bool {
        !matches!(self, FieldType::ComplexValue)
    }

    /// Compound types (cannot be selected in Bulk queries, §5.1).
    pub fn is_compound(self) -> bool {
        matches!(self, FieldType::Address | FieldType::Location)
    }
}

/// Deterministic value generators (see [`crate::datagen`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Gen {
    /// `"<prefix> <n>"` (unique name per row).
    Name(&'static str),
    /// A first name.
    FirstName,
    /// A last name.
    LastName,
    /// A company name.
    Company,
    /// A few words of text.
    Words(u8),
    /// One of the field's picklist values.
    Pick,
    /// Some of the field's picklist values joined by `;`.
    Multi,
    /// Boolean, true with the given percent chance.
    Bool(u8),
    /// Integer in a range.
    Int(i64, i64),
    /// Number in a range, rounded to the field's scale.
    Num(f64, f64),
    /// Date within the data range.
    Date,
    /// Datetime within the data range.
    DateTime,
    /// Time of day.
    Time,
    /// E-mail address.
    Email,
    /// Phone number.
    Phone,
    /// Web address.
    Url,
    /// Id of a row of (one of) the field's `referenceTo` objects.
    Ref,
    /// Street line.
    Street,
    /// City.
    City,
    /// State.
    State,
    /// Postal code.
    Postal,
    /// Country.
    Country,
    /// Latitude.
    Lat,
    /// Longitude.
    Lon,
    /// Binary content.
    Blob,
    /// Length in bytes of the row's [`Gen::Blob`] value.
    BlobLen,
    /// `"<prefix>-<row>"`, unique (external ids, auto numbers).
    Key(&'static str),
    /// Unique user name.
    Username,
    /// History: name of the changed field.
    HistField,
    /// History: data type of the changed field.
    HistDataType,
    /// History: old value.
    HistOld,
    /// History: new value.
    HistNew,
    /// A small JSON document (text).
    Json,
    /// An ISO country code of [`COUNTRY_CODES`] (custom address `CountryCode`).
    CountryCode,
    /// A state code of [`STATE_CODES`] valid for the row's country code (sibling field
    /// `..CountryCode__s`), null when that country has no states listed.
    StateCode,
    /// A value the row's `StageName` decides (the standard opportunity stage picklist).
    Stage(StageAttr),
    /// A data category group API name (`datacategorygroupreference`).
    CategoryGroup,
    /// A `complexvalue` record-type list, JSON text shaped like describe's `recordTypeInfos`.
    RecordTypes,
}

/// What an opportunity stage decides (see [`stage_info`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageAttr {
    /// `IsClosed`.
    IsClosed,
    /// `IsWon`.
    IsWon,
    /// `Probability` (percent).
    Probability,
}

impl StageAttr {
    /// The value `stage` gives this field (see [`stage_info`]); `None` for a stage outside the
    /// standard picklist.
    pub fn of_stage(self, stage: &str) -> Option<crate::value::Value> {
        use crate::value::Value;
        let (closed, won, probability) = stage_info(stage)?;
        Some(match self {
            StageAttr::IsClosed => Value::Bool(closed),
            StageAttr::IsWon => Value::Bool(won),
            StageAttr::Probability => Value::Double(probability),
        })
    }
}

/// (IsClosed, IsWon, default Probability) of a stage of the standard opportunity stage picklist
/// (Salesforce's default `OpportunityStage` values: "Closed Won" is closed and won at 100 %,
/// "Closed Lost" closed and lost at 0 %, open stages carry their default probability).
pub fn stage_info(stage: &str) -> Option<(bool, bool, f64)> {
    Some(match stage {
        "Prospecting" => (false, false, 10.0),
        "Qualification" => (false, false, 10.0),
        "Needs Analysis" => (false, false, 20.0),
        "Value Proposition" => (false, false, 50.0),
        "Id. Decision Makers" => (false, false, 60.0),
        "Perception Analysis" => (false, false, 70.0),
        "Proposal/Price Quote" => (false, false, 75.0),
        "Negotiation/Review" => (false, false, 90.0),
        "Closed Won" => (true, true, 100.0),
        "Closed Lost" => (true, false, 0.0),
        _ => return None,
    })
}

/// Formulas computed at read time (§4.7: never stored, never bump stamps).
#[derive(Debug, Clone, PartialEq)]
pub enum Formula {
    /// `a * (1 + b / 100)`, null if `a` is null, `b` null treated as zero.
    TimesOnePlusPercent {
        /// Field index of the amount.
        amount: usize,
        /// Field index of the percent.
        percent: usize,
    },
    /// A parent's field through a lookup (cross-object formula).
    ParentField {
        /// Field index of the lookup on this object.
        lookup: usize,
        /// Parent object name.
        parent: String,
        /// Field name on the parent.
        field: String,
    },
}

/// Where a field's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The record id.
    Id,
    /// `IsDeleted`.
    IsDeleted,
    /// `SystemModstamp` (or the object's scan-order stamp).
    Stamp,
    /// `CreatedDate`.
    CreatedDate,
    /// `LastModifiedDate`.
    LastModifiedDate,
    /// A user id (CreatedById, LastModifiedById, OwnerId).
    UserRef,
    /// A generated value.
    Gen(Gen),
    /// Compound address parent; indices of street, city, state, postalCode, country, latitude,
    /// longitude, geocodeAccuracy components.
    Address([usize; 8]),
    /// Compound location parent; indices of latitude and longitude components.
    Location([usize; 2]),
    /// A formula.
    Formula(Formula),
    /// Placeholder resolved by [`ObjectDef::finish`].
    Pending(String),
}

/// One field with its describe attributes (§2.3).
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct FieldDef {
    pub name: String,
    pub label: String,
    pub ty: FieldType,
    pub length: u32,
    pub precision: u32,
    pub scale: u32,
    pub digits: u32,
    pub nillable: bool,
    pub createable: bool,
    pub updateable: bool,
    pub custom: bool,
    pub external_id: bool,
    pub id_lookup: bool,
    pub unique: bool,
    pub filterable: bool,
    pub sortable: bool,
    pub groupable: bool,
    pub name_field: bool,
    pub auto_number: bool,
    pub defaulted_on_create: bool,
    pub restricted_picklist: bool,
    pub calculated_formula: Option<String>,
    pub compound_field_name: Option<String>,
    pub reference_to: Vec<String>,
    pub relationship_name: Option<String>,
    pub child_relationship: Option<String>,
    pub cascade_delete: bool,
    pub picklist: Vec<&'static str>,
    pub source: Source,
    /// Percent chance that a generated value is null.
    pub null_pct: u8,
    /// Exists only while the §9.9 switch `describe_json_masterrecord` is on (describe, SOQL and
    /// ingest columns treat it as absent otherwise).
    pub gated: bool,
    /// `soapType` override (the `urn:` metadata type of a `complexvalue` field, §2.4).
    pub soap_type: Option<&'static str>,
    /// `controllerName` / `dependentPicklist`: the picklist this one depends on (a custom address's
    /// state code depends on its country code).
    pub controller_name: Option<String>,
    /// Query output masks the value (an `encryptedstring` seen without "View Encrypted Data";
    /// see [`crate::Config::view_encrypted_data`]).
    pub masked: bool,
}

impl FieldDef {
    /// A field with the defaults Salesforce uses for its type.
    pub fn new(name: &str, ty: FieldType) -> FieldDef {
        use FieldType::*;
        let (length, precision, scale, digits) = match ty {
            Id | Reference | MasterRecord => (18, 0, 0, 0),
            String | Combobox | Picklist | Phone | Email | Url | EncryptedString => (255, 0, 0, 0),
            MultiPicklist => (4099, 0, 0, 0),
            Textarea => (32000, 0, 0, 0),
            Currency => (0, 18, 2, 0),
            Percent => (0, 5, 2, 0),
            Double => (0, 18, 2, 0),
            Int => (0, 0, 0, 9),
            Long => (0, 0, 0, 18),
            DataCategoryGroupReference => (80, 0, 0, 0),
            _ => (0, 0, 0, 0),
        };
        let custom = name.ends_with("__c") || name.ends_with("__s");
        let label = name
            .trim_end_matches("__c")
            .trim_end_matches("__s")
            .replace('_', " ");
        let sortable = !matches!(
            ty,
            Textarea
                | MultiPicklist
                | EncryptedString
                | Base64
                | Location
                | Address
                | AnyType
                | Json
                | ComplexValue
                | DataCategoryGroupReference
        );
        FieldDef {
            name: name.to_string(),
            label,
            ty,
            length,
            precision,
            scale,
            digits,
            nillable: !matches!(ty, Id | Boolean),
            createable: !matches!(ty, Id | Address | Location),
            updateable: !matches!(ty, Id | Address | Location),
            custom,
            external_id: false,
            id_lookup: matches!(ty, Id),
            unique: false,
            filterable: !matches!(
                ty,
                Textarea | Base64 | Location | Address | AnyType | Json | ComplexValue
            ),
            sortable,
            groupable: sortable && !matches!(ty, Currency | Double | Percent | DateTime | Time),
            name_field: false,
            auto_number: false,
            defaulted_on_create: matches!(ty, Id | Boolean),
            restricted_picklist: false,
            calculated_formula: None,
            compound_field_name: None,
            reference_to: Vec::new(),
            relationship_name: None,
            child_relationship: None,
            cascade_delete: false,
            picklist: Vec::new(),
            source: Source::Pending(std::string::String::new()),
            null_pct: 0,
            gated: false,
            soap_type: None,
            controller_name: None,
            masked: ty == EncryptedString,
        }
    }

    /// The describe `soapType`: the field's override, else its type's (§2.4).
    pub fn soap_type(&self) -> &'static str {
        self.soap_type.unwrap_or(self.ty.soap())
    }

    /// Sets the generator.
    pub fn gen_(mut self, g: Gen) -> Self {
        self.source = Source::Gen(g);
        self
    }
    /// Sets the source.
    pub fn src(mut self, s: Source) -> Self {
        self.source = s;
        self
    }
    /// Sets the null chance.
    pub fn nulls(mut self, pct: u8) -> Self {
        self.null_pct = pct;
        self
    }
    /// Required on create (`nillable: false`).
    pub fn required(mut self) -> Self {
        self.nillable = false;
        self
    }
    /// Read-only (system or formula).
    pub fn read_only(mut self) -> Self {
        self.createable = false;
        self.updateable = false;
        self
    }
    /// Sets text length.
    pub fn len(mut self, n: u32) -> Self {
        self.length = n;
        self
    }
    /// Sets numeric precision and scale.
    pub fn num(mut self, precision: u32, scale: u32) -> Self {
        self.precision = precision;
        self.scale = scale;
        self
    }
    /// Marks the object's name field.
    pub fn name_field(mut self) -> Self {
        self.name_field = true;
        self.id_lookup = true;
        self
    }
    /// External id: `externalId`, `unique`, `idLookup` (§2.3).
    pub fn ext_id(mut self) -> Self {
        self.external_id = true;
        self.unique = true;
        self.id_lookup = true;
        self
    }
    /// Lookup with relationship names.
    pub fn refs(mut self, to: &[&str], rel: &str, child: Option<&str>) -> Self {
        self.reference_to = to.iter().map(|s| s.to_string()).collect();
        self.relationship_name = Some(rel.to_string());
        self.child_relationship = child.map(str::to_string);
        self
    }
    /// Picklist values.
    pub fn picks(mut self, values: &[&'static str]) -> Self {
        self.picklist = values.to_vec();
        self
    }
    /// Component of a compound field (§2.3 `compoundFieldName`).
    pub fn part_of(mut self, parent: &str) -> Self {
        self.compound_field_name = Some(parent.to_string());
        self
    }
    /// Formula: read-only, `calculated: true`, `calculatedFormula` text (§2.3).
    pub fn formula(mut self, text: &str, f: Formula) -> Self {
        self.calculated_formula = Some(text.to_string());
        self.source = Source::Formula(f);
        self.createable = false;
        self.updateable = false;
        self
    }
    /// True for fields computed on read (formula or compound parent).
    pub fn is_computed(&self) -> bool {
        matches!(
            self.source,
            Source::Formula(_) | Source::Address(_) | Source::Location(_)
        )
    }
    /// `calculated` describe flag.
    pub fn calculated(&self) -> bool {
        matches!(self.source, Source::Formula(_))
    }
}

/// One sObject.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct ObjectDef {
    pub name: String,
    pub label: String,
    pub label_plural: String,
    pub key_prefix: String,
    pub custom: bool,
    pub queryable: bool,
    pub retrieveable: bool,
    pub replicateable: bool,
    pub createable: bool,
    pub updateable: bool,
    pub deletable: bool,
    pub undeletable: bool,
    pub searchable: bool,
    pub triggerable: bool,
    pub layoutable: bool,
    pub mergeable: bool,
    pub feed_enabled: bool,
    pub mru_enabled: bool,
    /// Supported by Bulk API 2.0 query (§5.1 "objects known not to work in Bulk").
    pub bulk_supported: bool,
    pub fields: Vec<FieldDef>,
    /// Index of the field rows are generated in order of (SystemModstamp, else the last
    /// modification or creation stamp).
    pub stamp: usize,
    by_lower: HashMap<String, usize>,
}

impl ObjectDef {
    /// A new object with the system fields of §4.4.
    pub fn new(name: &str, prefix: &str, label: &str, plural: &str) -> ObjectDef {
        let custom = name.ends_with("__c");
        let mut o = ObjectDef {
            name: name.to_string(),
            label: label.to_string(),
            label_plural: plural.to_string(),
            key_prefix: prefix.to_string(),
            custom,
            queryable: true,
            retrieveable: true,
            replicateable: true,
            createable: true,
            updateable: true,
            deletable: true,
            undeletable: true,
            searchable: true,
            triggerable: true,
            layoutable: true,
            mergeable: false,
            feed_enabled: false,
            mru_enabled: true,
            bulk_supported: true,
            fields: Vec::new(),
            stamp: 0,
            by_lower: HashMap::new(),
        };
        o.fields.push(
            FieldDef::new("Id", FieldType::Id)
                .src(Source::Id)
                .read_only()
                .label_as("Record ID"),
        );
        o.fields.push(
            FieldDef::new("IsDeleted", FieldType::Boolean)
                .src(Source::IsDeleted)
                .read_only()
                .label_as("Deleted"),
        );
        o
    }

    /// Adds `CreatedById`, `CreatedDate`, `LastModifiedById`, `LastModifiedDate`, `SystemModstamp`.
    pub fn audit(mut self, with_modstamp: bool) -> Self {
        let user = |n: &str| {
            FieldDef::new(n, FieldType::Reference)
                .src(Source::UserRef)
                .read_only()
                .defaulted()
                .refs(&["User"], &n.replace("Id", ""), None)
        };
        self.fields.push(user("CreatedById").required());
        self.fields.push(
            FieldDef::new("CreatedDate", FieldType::DateTime)
                .src(Source::CreatedDate)
                .read_only()
                .defaulted()
                .required(),
        );
        self.fields.push(user("LastModifiedById").required());
        self.fields.push(
            FieldDef::new("LastModifiedDate", FieldType::DateTime)
                .src(Source::LastModifiedDate)
                .read_only()
                .defaulted()
                .required(),
        );
        if with_modstamp {
            self.fields.push(
                FieldDef::new("SystemModstamp", FieldType::DateTime)
                    .src(Source::Stamp)
                    .read_only()
                    .defaulted()
                    .required(),
            );
        }
        self
    }

    /// Adds a field.
    pub fn f(mut self, f: FieldDef) -> Self {
        self.fields.push(f);
        self
    }

    /// Adds an address compound field `<P>Address` with its components `<P>Street`... (§2.3).
    pub fn address(mut self, prefix: &str) -> Self {
        let parent = format!("{prefix}Address");
        let parts: [(&str, FieldType, Gen); 8] = [
            ("Street", FieldType::Textarea, Gen::Street),
            ("City", FieldType::String, Gen::City),
            ("State", FieldType::String, Gen::State),
            ("PostalCode", FieldType::String, Gen::Postal),
            ("Country", FieldType::String, Gen::Country),
            ("Latitude", FieldType::Double, Gen::Lat),
            ("Longitude", FieldType::Double, Gen::Lon),
            ("GeocodeAccuracy", FieldType::Picklist, Gen::Pick),
        ];
        for (suffix, ty, g) in parts {
            let mut f = FieldDef::new(&format!("{prefix}{suffix}"), ty)
                .gen_(g)
                .nulls(10)
                .part_of(&parent);
            match suffix {
                "Street" => f = f.len(255),
                "City" | "State" | "Country" => f = f.len(80),
                "PostalCode" => f = f.len(20),
                "Latitude" | "Longitude" => f = f.num(18, 15),
                _ => {
                    f = f
                        .picks(&["Address", "NearAddress", "Block", "Street", "City", "Zip"])
                        .nulls(60);
                }
            }
            self.fields.push(f);
        }
        self.fields.push(
            FieldDef::new(&parent, FieldType::Address)
                .src(Source::Pending(prefix.to_string()))
                .read_only(),
        );
        self
    }

    /// Adds a custom location field `<P>__c` with `<P>__Latitude__s` / `<P>__Longitude__s`.
    pub fn location(mut self, base: &str) -> Self {
        let parent = format!("{base}__c");
        for part in ["Latitude", "Longitude"] {
            let g = if part == "Latitude" {
                Gen::Lat
            } else {
                Gen::Lon
            };
            self.fields.push(
                FieldDef::new(&format!("{base}__{part}__s"), FieldType::Double)
                    .gen_(g)
                    .num(18, 15)
                    .nulls(10)
                    .part_of(&parent),
            );
        }
        self.fields.push(
            FieldDef::new(&parent, FieldType::Location)
                .src(Source::Pending(format!("{base}__")))
                .read_only(),
        );
        self
    }

    /// Adds a custom address compound field `<B>__c` with its components `<B>__Street__s`,
    /// `__City__s`, `__PostalCode__s`, `__StateCode__s`, `__CountryCode__s`, `__Latitude__s`,
    /// `__Longitude__s`, `__GeocodeAccuracy__s` (§2.3 compound fields: each component names the
    /// parent in `compoundFieldName`). Custom address fields always use state and country
    /// picklists (§2.7), so the components are codes and the REST value carries `stateCode` and
    /// `countryCode` beside the `state` / `country` labels; the state code depends on the country
    /// code (`controllerName`).
    pub fn custom_address(mut self, base: &str, label: &str) -> Self {
        let parent = format!("{base}__c");
        let parts: [(&str, &str, FieldType, Gen); 8] = [
            ("Street", "Street", FieldType::Textarea, Gen::Street),
            ("City", "City", FieldType::String, Gen::City),
            (
                "PostalCode",
                "Zip/Postal Code",
                FieldType::String,
                Gen::Postal,
            ),
            (
                "StateCode",
                "State/Province Code",
                FieldType::Picklist,
                Gen::StateCode,
            ),
            (
                "CountryCode",
                "Country Code",
                FieldType::Picklist,
                Gen::CountryCode,
            ),
            ("Latitude", "Latitude", FieldType::Double, Gen::Lat),
            ("Longitude", "Longitude", FieldType::Double, Gen::Lon),
            (
                "GeocodeAccuracy",
                "Geocode Accuracy",
                FieldType::Picklist,
                Gen::Pick,
            ),
        ];
        for (suffix, part_label, ty, g) in parts {
            let mut f = FieldDef::new(&format!("{base}__{suffix}__s"), ty)
                .gen_(g)
                .nulls(10)
                .part_of(&parent)
                .label_as(&format!("{label} ({part_label})"));
            match suffix {
                "Street" => f = f.len(255),
                "City" => f = f.len(40),
                "PostalCode" => f = f.len(20),
                "StateCode" => {
                    f = f
                        .picks(&STATE_CODES.iter().map(|(c, _, _)| *c).collect::<Vec<_>>())
                        .len(255);
                    f.controller_name = Some(format!("{base}__CountryCode__s"));
                }
                "CountryCode" => {
                    f = f
                        .picks(&COUNTRY_CODES.iter().map(|(c, _)| *c).collect::<Vec<_>>())
                        .len(255)
                }
                "Latitude" | "Longitude" => f = f.num(18, 15),
                _ => {
                    f = f
                        .picks(&["Address", "NearAddress", "Block", "Street", "City", "Zip"])
                        .nulls(60);
                }
            }
            self.fields.push(f);
        }
        self.fields.push(
            FieldDef::new(&parent, FieldType::Address)
                .src(Source::Pending(format!("{base}__")))
                .read_only()
                .label_as(label),
        );
        self
    }

    /// Sets object-level flags through a closure.
    pub fn flags(mut self, f: impl FnOnce(&mut ObjectDef)) -> Self {
        f(&mut self);
        self
    }

    /// Resolves compound placeholders and indexes names. Called once per object.
    pub fn finish(mut self) -> ObjectDef {
        self.by_lower = self
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.to_ascii_lowercase(), i))
            .collect();
        for i in 0..self.fields.len() {
            let Source::Pending(prefix) = &self.fields[i].source else {
                continue;
            };
            let prefix = prefix.clone();
            let idx = |s: &str| {
                self.by_lower
                    .get(&format!("{prefix}{s}").to_ascii_lowercase())
                    .copied()
                    .unwrap_or(0)
            };
            let custom_address = self.fields[i].ty == FieldType::Address
                && self
                    .by_lower
                    .contains_key(&format!("{prefix}street__s").to_ascii_lowercase());
            self.fields[i].source = if custom_address {
                Source::Address([
                    idx("Street__s"),
                    idx("City__s"),
                    idx("StateCode__s"),
                    idx("PostalCode__s"),
                    idx("CountryCode__s"),
                    idx("Latitude__s"),
                    idx("Longitude__s"),
                    idx("GeocodeAccuracy__s"),
                ])
            } else if self.fields[i].ty == FieldType::Address {
                Source::Address([
                    idx("Street"),
                    idx("City"),
                    idx("State"),
                    idx("PostalCode"),
                    idx("Country"),
                    idx("Latitude"),
                    idx("Longitude"),
                    idx("GeocodeAccuracy"),
                ])
            } else {
                Source::Location([idx("Latitude__s"), idx("Longitude__s")])
            };
        }
        self.stamp = self
            .index("SystemModstamp")
            .or_else(|| self.index("LastModifiedDate"))
            .or_else(|| self.index("CreatedDate"))
            .unwrap_or(0);
        if self.index("SystemModstamp").is_none() {
            // Without SystemModstamp the scan-order stamp is the last modification (or creation)
            // time itself.
            let stamp = self.stamp;
            self.fields[stamp].source = Source::Stamp;
        }
        self
    }

    /// Field index by case-insensitive name.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.by_lower.get(&name.to_ascii_lowercase()).copied()
    }

    /// Field by case-insensitive name.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.index(name).map(|i| &self.fields[i])
    }

    /// The field with an `idLookup` external id flag, if any, by name.
    pub fn has_field(&self, name: &str) -> bool {
        self.index(name).is_some()
    }
}

impl FieldDef {
    fn label_as(mut self, l: &str) -> Self {
        self.label = l.to_string();
        self
    }
    fn defaulted(mut self) -> Self {
        self.defaulted_on_create = true;
        self
    }
}

/// The whole org schema.
#[derive(Debug, Clone)]
pub struct Schema {
    /// Objects in describe-global order.
    pub objects: Vec<ObjectDef>,
    by_lower: HashMap<String, usize>,
    by_prefix: HashMap<String, usize>,
}

impl Schema {
    /// Builds a schema from object definitions.
    pub fn new(objects: Vec<ObjectDef>) -> Schema {
        let objects: Vec<ObjectDef> = objects.into_iter().map(ObjectDef::finish).collect();
        let by_lower = objects
            .iter()
            .enumerate()
            .map(|(i, o)| (o.name.to_ascii_lowercase(), i))
            .collect();
        let by_prefix = objects
            .iter()
            .enumerate()
            .map(|(i, o)| (o.key_prefix.clone(), i))
            .collect();
        Schema {
            objects,
            by_lower,
            by_prefix,
        }
    }

    /// Object index by case-insensitive name (a scan: the object list is short and this sits in
    /// the row generator's hot path).
    pub fn index(&self, name: &str) -> Option<usize> {
        if self.objects.len() <= 64 {
            return self
                .objects
                .iter()
                .position(|o| o.name.eq_ignore_ascii_case(name));
        }
        self.by_lower.get(&name.to_ascii_lowercase()).copied()
    }

    /// Object by case-insensitive name.
    pub fn object(&self, name: &str) -> Option<&ObjectDef> {
        self.index(name).map(|i| &self.objects[i])
    }

    /// Object index by id key prefix.
    pub fn by_prefix(&self, prefix: &str) -> Option<usize> {
        self.by_prefix.get(prefix).copied()
    }

    /// The standard org: the objects listed in the task plus custom `Invoice__c`.
    pub fn standard() -> Schema {
        Schema::new(catalog())
    }

    /// The standard org plus `extra` generated custom objects `Bench01__c`, `Bench02__c`, ...
    /// (see [`bench_object`]), appended after the standard objects in describe-global order.
    /// At most [`MAX_EXTRA_OBJECTS`] are added.
    pub fn with_extra_objects(extra: u32) -> Schema {
        let mut objects = catalog();
        objects.extend((1..=extra.min(MAX_EXTRA_OBJECTS)).map(bench_object));
        Schema::new(objects)
    }
}

/// Most generated custom objects [`Schema::with_extra_objects`] adds (key prefixes `b01`..`bZZ`).
pub const MAX_EXTRA_OBJECTS: u32 = 36 * 36 - 1;

/// Generated custom object number `n` (1-based): `Bench01__c` (`Bench100__c` from 100 on), key
/// prefix `b` + two base-36 digits of `n`, audit fields with `SystemModstamp`, and a handful of
/// typed custom fields (name, currency, double, boolean, picklist, date, datetime, textarea and a
/// lookup to `Account`).
pub fn bench_object(n: u32) -> ObjectDef {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let hi = DIGITS[((n / 36) % 36) as usize] as char;
    let lo = DIGITS[(n % 36) as usize] as char;
    let prefix = format!("b{hi}{lo}");
    let name = format!("Bench{n:02}__c");
    let label = format!("Bench {n:02}");
    ObjectDef::new(&name, &prefix, &label, &format!("{label}s"))
        .audit(true)
        .f(owner())
        .f(s("Name").gen_(Gen::Name("Bench")).name_field().len(80))
        .f(FieldDef::new("Account__c", FieldType::Reference)
            .gen_(Gen::Ref)
            .nulls(10)
            .refs(
                &["Account"],
                "Account__r",
                Some(&format!("{}s__r", &name[..name.len() - 3])),
            ))
        .f(FieldDef::new("Amount__c", FieldType::Currency)
            .gen_(Gen::Num(1.0, 50_000.0))
            .nulls(5)
            .num(16, 2))
        .f(FieldDef::new("Quantity__c", FieldType::Double)
            .gen_(Gen::Num(0.0, 1000.0))
            .nulls(10)
            .num(18, 2))
        .f(FieldDef::new("Active__c", FieldType::Boolean).gen_(Gen::Bool(60)))
        .f(FieldDef::new("Stage__c", FieldType::Picklist)
            .gen_(Gen::Pick)
            .nulls(10)
            .picks(&["New", "Working", "Done"]))
        .f(FieldDef::new("Due_Date__c", FieldType::Date)
            .gen_(Gen::Date)
            .nulls(20))
        .f(FieldDef::new("Checked_At__c", FieldType::DateTime)
            .gen_(Gen::DateTime)
            .nulls(30))
        .f(FieldDef::new("Notes__c", FieldType::Textarea)
            .gen_(Gen::Words(8))
            .nulls(30)
            .len(32768))
}

/// Marks a field as existing only under the §9.9 switch.
fn gated(mut f: FieldDef) -> FieldDef {
    f.gated = true;
    f
}

/// Optional parts of the org (see [`crate::Config`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchemaOptions {
    /// Generated custom objects `Bench01__c`.. ([`bench_object`]).
    pub extra_custom_objects: u32,
    /// Add [`content_document_link`].
    pub content_document_link: bool,
    /// Fields of [`wide_object`] (0: no such object).
    pub wide_object_fields: u32,
    /// The API user has "View Encrypted Data": `encryptedstring` fields are not masked.
    pub view_encrypted_data: bool,
}

impl Schema {
    /// The standard org plus the optional objects, appended after the standard ones in
    /// describe-global order: `ContentDocumentLink`, `Wide__c`, then the bench objects.
    pub fn with_options(o: &SchemaOptions) -> Schema {
        let mut objects = catalog();
        if o.content_document_link {
            objects.push(content_document_link());
        }
        if o.wide_object_fields > 0 {
            objects.push(wide_object(o.wide_object_fields));
        }
        objects.extend((1..=o.extra_custom_objects.min(MAX_EXTRA_OBJECTS)).map(bench_object));
        if o.view_encrypted_data {
            for f in objects.iter_mut().flat_map(|ob| ob.fields.iter_mut()) {
                f.masked = false;
            }
        }
        Schema::new(objects)
    }
}

/// `ContentDocumentLink` (key prefix `06A`): the link between a file and where it is shared.
/// Fields follow the object reference (`ContentDocumentId`, polymorphic `LinkedEntityId`,
/// `ShareType`, `Visibility`, `IsDeleted`, `SystemModstamp`; no created/modified audit fields).
/// Queries must filter it by `ContentDocumentId` or `LinkedEntityId` (`=` or `IN`); see
/// [`crate::soql`] (object reference "You can't run a query without filters against
/// ContentDocumentLink"; §3.3 `MALFORMED_QUERY` "Implementation restriction ...").
pub fn content_document_link() -> ObjectDef {
    ObjectDef::new(
        "ContentDocumentLink",
        "06A",
        "Content Document Link",
        "Content Document Links",
    )
    .flags(|o| {
        o.undeletable = false;
        o.searchable = false;
        o.layoutable = false;
        o.mru_enabled = false;
        o.triggerable = true;
    })
    .f(FieldDef::new("ContentDocumentId", FieldType::Reference)
        .gen_(Gen::Ref)
        .required()
        .refs(
            &["ContentDocument"],
            "ContentDocument",
            Some("ContentDocumentLinks"),
        ))
    .f(FieldDef::new("LinkedEntityId", FieldType::Reference)
        .gen_(Gen::Ref)
        .required()
        .refs(
            &["Account", "Contact", "Case", "User"],
            "LinkedEntity",
            None,
        ))
    .f(FieldDef::new("ShareType", FieldType::Picklist)
        .gen_(Gen::Pick)
        .picks(&["V", "C", "I"]))
    .f(FieldDef::new("Visibility", FieldType::Picklist)
        .gen_(Gen::Pick)
        .picks(&["AllUsers", "InternalUsers", "SharedUsers"]))
    .f(FieldDef::new("SystemModstamp", FieldType::DateTime)
        .src(Source::Stamp)
        .read_only()
        .defaulted()
        .required())
}

/// `Wide__c` (key prefix `a0W`): audit fields, a name and `fields` custom text fields
/// `Wide_Text_Field_0001__c`.. (23 characters each, so 800 of them make a SELECT list of about
/// 19,000 bytes, over the 16,384-byte URI limit of §2.8).
pub fn wide_object(fields: u32) -> ObjectDef {
    let mut o = ObjectDef::new("Wide__c", "a0W", "Wide", "Wides")
        .audit(true)
        .f(owner())
        .f(s("Name").gen_(Gen::Name("Wide")).name_field().len(80));
    for k in 1..=fields.min(9_999) {
        o = o.f(s(&format!("Wide_Text_Field_{k:04}__c"))
            .gen_(Gen::Words(2))
            .nulls(20)
            .len(40));
    }
    o
}

fn s(name: &str) -> FieldDef {
    FieldDef::new(name, FieldType::String)
}

fn owner() -> FieldDef {
    FieldDef::new("OwnerId", FieldType::Reference)
        .src(Source::UserRef)
        .refs(&["User"], "Owner", None)
        .required()
        .defaulted()
}

fn history(name: &str, prefix: &str, parent: &str, parent_field: &str, child: &str) -> ObjectDef {
    ObjectDef::new(
        name,
        prefix,
        &format!("{parent} History"),
        &format!("{parent} History"),
    )
    .flags(|o| {
        o.createable = false;
        o.updateable = false;
        o.deletable = false;
        o.undeletable = false;
        o.searchable = false;
        o.triggerable = false;
        o.layoutable = false;
        o.mru_enabled = false;
    })
    .f(FieldDef::new(parent_field, FieldType::Reference)
        .gen_(Gen::Ref)
        .read_only()
        .required()
        .refs(&[parent], parent_field.trim_end_matches("Id"), Some(child)))
    .f(FieldDef::new("CreatedById", FieldType::Reference)
        .src(Source::UserRef)
        .read_only()
        .refs(&["User"], "CreatedBy", None))
    .f(FieldDef::new("CreatedDate", FieldType::DateTime)
        .src(Source::CreatedDate)
        .read_only()
        .required())
    .f(FieldDef::new("Field", FieldType::Picklist)
        .gen_(Gen::HistField)
        .read_only()
        .required()
        .picks(&[
            "created",
            "Name",
            "Status__c",
            "Amount__c",
            "Industry",
            "Type",
        ]))
    .f(FieldDef::new("DataType", FieldType::Picklist)
        .gen_(Gen::HistDataType)
        .read_only()
        .picks(&["Text", "Picklist", "Currency", "DynamicEnum"]))
    .f(FieldDef::new("OldValue", FieldType::AnyType)
        .gen_(Gen::HistOld)
        .read_only())
    .f(FieldDef::new("NewValue", FieldType::AnyType)
        .gen_(Gen::HistNew)
        .read_only())
}

/// Country codes of the custom address picklist with their labels (§2.7 `countryCode`).
pub const COUNTRY_CODES: &[(&str, &str)] = &[
    ("US", "United States"),
    ("FR", "France"),
    ("DE", "Germany"),
    ("JP", "Japan"),
    ("BR", "Brazil"),
];

/// State codes of the custom address picklist: (code, label, country code) (§2.7 `stateCode`).
pub const STATE_CODES: &[(&str, &str, &str)] = &[
    ("CA", "California", "US"),
    ("NY", "New York", "US"),
    ("TX", "Texas", "US"),
    ("BY", "Bavaria", "DE"),
    ("BE", "Berlin", "DE"),
    ("13", "Tokyo", "JP"),
    ("SP", "São Paulo", "BR"),
];

/// Label of a country code (`None` if unknown).
pub fn country_label(code: &str) -> Option<&'static str> {
    COUNTRY_CODES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, l)| *l)
}

/// Label of a state code (`None` if unknown).
pub fn state_label(code: &str) -> Option<&'static str> {
    STATE_CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, l, _)| *l)
}

/// `Shipment__c` (key prefix `a03`): the object that carries the field types no other object of
/// the org has, so the org holds every describe `type` of §2.4's WSDL enum: a custom address
/// compound `Shipping_Address__c` (§2.3, §2.7), a `long` (`Weight_Grams__c`), a `complexvalue`
/// (`Record_Types__c`, metadata type `urn:RecordTypesSupported` as on
/// `EntityDefinition.RecordTypesSupported`, §5.1) and a `datacategorygroupreference`
/// (`Category_Group__c`). In a real org the last three are system fields of standard objects (a
/// custom field cannot have these types); they are read-only here as they are there.
pub fn shipment() -> ObjectDef {
    let mut record_types = FieldDef::new("Record_Types__c", FieldType::ComplexValue)
        .gen_(Gen::RecordTypes)
        .nulls(20)
        .read_only();
    record_types.soap_type = Some("urn:RecordTypesSupported");
    ObjectDef::new("Shipment__c", "a03", "Shipment", "Shipments")
        .audit(true)
        .f(owner())
        .f(s("Name").gen_(Gen::Key("SHP")).name_field().len(80))
        .f(FieldDef::new("Account__c", FieldType::Reference)
            .gen_(Gen::Ref)
            .nulls(10)
            .refs(&["Account"], "Account__r", Some("Shipments__r")))
        .f(FieldDef::new("Weight_Grams__c", FieldType::Long)
            .gen_(Gen::Int(1, 9_000_000_000_000))
            .nulls(10)
            .read_only())
        .f(record_types)
        .f(
            FieldDef::new("Category_Group__c", FieldType::DataCategoryGroupReference)
                .gen_(Gen::CategoryGroup)
                .nulls(30)
                .read_only(),
        )
        .custom_address("Shipping_Address", "Shipping Address")
}

const STAGES: &[&str] = &[
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Proposal/Price Quote",
    "Closed Won",
    "Closed Lost",
];

fn catalog() -> Vec<ObjectDef> {
    use FieldType as T;
    use Gen as G;
    let user = ObjectDef::new("User", "005", "User", "Users")
        .audit(true)
        .flags(|o| {
            o.deletable = false;
            o.undeletable = false;
        })
        .f(s("Username").gen_(G::Username).required().ext_id().len(80))
        .f(s("FirstName").gen_(G::FirstName).len(40))
        .f(s("LastName").gen_(G::LastName).required().len(80))
        .f(s("Name")
            .gen_(G::Name("User"))
            .read_only()
            .name_field()
            .len(121))
        .f(FieldDef::new("Email", T::Email)
            .gen_(G::Email)
            .required()
            .len(128))
        .f(s("Alias").gen_(G::Key("u")).required().len(8))
        .f(FieldDef::new("IsActive", T::Boolean).gen_(G::Bool(90)))
        .f(FieldDef::new("TimeZoneSidKey", T::Picklist)
            .gen_(G::Pick)
            .required()
            .picks(&["America/Los_Angeles", "Europe/Paris", "Asia/Tokyo", "GMT"]));
    let account = ObjectDef::new("Account", "001", "Account", "Accounts")
        .audit(true)
        .flags(|o| {
            o.mergeable = true;
            o.feed_enabled = true;
        })
        .f(s("Name").gen_(G::Company).required().name_field())
        .f(FieldDef::new("Type", T::Picklist)
            .gen_(G::Pick)
            .nulls(20)
            .picks(&[
                "Prospect",
                "Customer - Direct",
                "Customer - Channel",
                "Partner",
                "Other",
            ]))
        .f(FieldDef::new("Industry", T::Picklist)
            .gen_(G::Pick)
            .nulls(20)
            .picks(&[
                "Agriculture",
                "Banking",
                "Chemicals",
                "Energy",
                "Retail",
                "Technology",
            ]))
        .f(FieldDef::new("AnnualRevenue", T::Currency)
            .gen_(G::Num(0.0, 5.0e8))
            .nulls(30))
        .f(FieldDef::new("NumberOfEmployees", T::Int)
            .gen_(G::Int(1, 200_000))
            .nulls(30)
            .num(8, 0))
        .f(FieldDef::new("Phone", T::Phone)
            .gen_(G::Phone)
            .nulls(15)
            .len(40))
        .f(FieldDef::new("Website", T::Url).gen_(G::Url).nulls(25))
        .f(FieldDef::new("Description", T::Textarea)
            .gen_(G::Words(12))
            .nulls(40))
        .f(FieldDef::new("ParentId", T::Reference)
            .gen_(G::Ref)
            .nulls(90)
            .refs(&["Account"], "Parent", Some("ChildAccounts")))
        .f(owner())
        .f(FieldDef::new("Rating", T::Picklist)
            .gen_(G::Pick)
            .nulls(50)
            .picks(&["Hot", "Warm", "Cold"]))
        .f(s("AccountNumber").gen_(G::Key("AC")).nulls(20).len(40))
        .f(FieldDef::new("LastActivityDate", T::Date)
            .gen_(G::Date)
            .read_only()
            .nulls(40))
        .address("Billing")
        .address("Shipping")
        .f(s("External_Id__c").gen_(G::Key("ACC")).ext_id().len(40))
        .f(gated(
            FieldDef::new("MasterRecordId", T::MasterRecord)
                .gen_(G::Ref)
                .nulls(95)
                .read_only()
                .refs(&["Account"], "MasterRecord", None),
        ));
    let contact = ObjectDef::new("Contact", "003", "Contact", "Contacts")
        .audit(true)
        .flags(|o| o.mergeable = true)
        .f(FieldDef::new("AccountId", T::Reference)
            .gen_(G::Ref)
            .nulls(5)
            .refs(&["Account"], "Account", Some("Contacts")))
        .f(s("FirstName").gen_(G::FirstName).nulls(5).len(40))
        .f(s("LastName").gen_(G::LastName).required().len(80))
        .f(s("Name")
            .gen_(G::Name("Contact"))
            .read_only()
            .name_field()
            .len(121))
        .f(FieldDef::new("Email", T::Email)
            .gen_(G::Email)
            .nulls(10)
            .len(80))
        .f(FieldDef::new("Phone", T::Phone)
            .gen_(G::Phone)
            .nulls(20)
            .len(40))
        .f(s("Title").gen_(G::Words(2)).nulls(30).len(128))
        .f(FieldDef::new("Birthdate", T::Date).gen_(G::Date).nulls(50))
        .f(FieldDef::new("LeadSource", T::Picklist)
            .gen_(G::Pick)
            .nulls(30)
            .picks(&[
                "Web",
                "Phone Inquiry",
                "Partner Referral",
                "Purchased List",
                "Other",
            ]))
        .f(FieldDef::new("DoNotCall", T::Boolean).gen_(G::Bool(10)))
        .f(owner())
        .address("Mailing")
        .f(s("Ext_Id__c").gen_(G::Key("CON")).ext_id().len(40));
    let lead = ObjectDef::new("Lead", "00Q", "Lead", "Leads")
        .audit(true)
        .flags(|o| o.mergeable = true)
        .f(s("FirstName").gen_(G::FirstName).nulls(5).len(40))
        .f(s("LastName").gen_(G::LastName).required().len(80))
        .f(s("Name")
            .gen_(G::Name("Lead"))
            .read_only()
            .name_field()
            .len(121))
        .f(s("Company").gen_(G::Company).required())
        .f(FieldDef::new("Status", T::Picklist)
            .gen_(G::Pick)
            .required()
            .picks(&[
                "Open - Not Contacted",
                "Working - Contacted",
                "Closed - Converted",
                "Closed - Not Converted",
            ]))
        .f(FieldDef::new("Email", T::Email)
            .gen_(G::Email)
            .nulls(10)
            .len(80))
        .f(FieldDef::new("AnnualRevenue", T::Currency)
            .gen_(G::Num(0.0, 1.0e7))
            .nulls(40))
        .f(FieldDef::new("IsConverted", T::Boolean)
            .gen_(G::Bool(20))
            .read_only())
        .f(owner())
        .address("");
    let opportunity = ObjectDef::new("Opportunity", "006", "Opportunity", "Opportunities")
        .audit(true)
        .f(s("Name")
            .gen_(G::Name("Opportunity"))
            .required()
            .name_field()
            .len(120))
        .f(FieldDef::new("AccountId", T::Reference)
            .gen_(G::Ref)
            .nulls(5)
            .refs(&["Account"], "Account", Some("Opportunities")))
        .f(FieldDef::new("StageName", T::Picklist)
            .gen_(G::Pick)
            .required()
            .picks(STAGES))
        .f(FieldDef::new("Amount", T::Currency)
            .gen_(G::Num(100.0, 1.0e6))
            .nulls(10))
        .f(FieldDef::new("Probability", T::Percent)
            .gen_(G::Stage(StageAttr::Probability))
            .num(3, 0))
        .f(FieldDef::new("CloseDate", T::Date).gen_(G::Date).required())
        .f(FieldDef::new("IsClosed", T::Boolean)
            .gen_(G::Stage(StageAttr::IsClosed))
            .read_only())
        .f(FieldDef::new("IsWon", T::Boolean)
            .gen_(G::Stage(StageAttr::IsWon))
            .read_only())
        .f(owner());
    let case = ObjectDef::new("Case", "500", "Case", "Cases")
        .audit(true)
        .f({
            let mut f = s("CaseNumber")
                .gen_(G::Key("C"))
                .read_only()
                .name_field()
                .len(30);
            f.auto_number = true;
            f.defaulted_on_create = true;
            f.nillable = false;
            f
        })
        .f(s("Subject").gen_(G::Words(5)).nulls(5))
        .f(FieldDef::new("Status", T::Picklist).gen_(G::Pick).picks(&[
            "New",
            "Working",
            "Escalated",
            "Closed",
        ]))
        .f(FieldDef::new("Priority", T::Picklist)
            .gen_(G::Pick)
            .picks(&["High", "Medium", "Low"]))
        .f(FieldDef::new("Origin", T::Picklist)
            .gen_(G::Pick)
            .picks(&["Phone", "Email", "Web"]))
        .f(FieldDef::new("AccountId", T::Reference)
            .gen_(G::Ref)
            .nulls(10)
            .refs(&["Account"], "Account", Some("Cases")))
        .f(FieldDef::new("ContactId", T::Reference)
            .gen_(G::Ref)
            .nulls(10)
            .refs(&["Contact"], "Contact", Some("Cases")))
        .f(FieldDef::new("Description", T::Textarea)
            .gen_(G::Words(20))
            .nulls(30))
        .f(FieldDef::new("IsClosed", T::Boolean)
            .gen_(G::Bool(50))
            .read_only())
        .f(FieldDef::new("ClosedDate", T::DateTime)
            .gen_(G::DateTime)
            .read_only()
            .nulls(50))
        .f(owner());
    let activity = |name: &str, prefix: &str, plural: &str| {
        ObjectDef::new(name, prefix, name, plural)
            .audit(true)
            .f(FieldDef::new("Subject", T::Combobox).gen_(G::Pick).picks(&[
                "Call",
                "Send Letter",
                "Send Quote",
                "Other",
            ]))
            .f(FieldDef::new("ActivityDate", T::Date)
                .gen_(G::Date)
                .nulls(20))
            .f(FieldDef::new("WhoId", T::Reference)
                .gen_(G::Ref)
                .nulls(30)
                .refs(&["Contact", "Lead"], "Who", None))
            .f(FieldDef::new("WhatId", T::Reference)
                .gen_(G::Ref)
                .nulls(30)
                .refs(&["Account", "Opportunity"], "What", None))
            .f(FieldDef::new("Description", T::Textarea)
                .gen_(G::Words(10))
                .nulls(50))
            .f(owner())
    };
    let task = activity("Task", "00T", "Tasks")
        .f(FieldDef::new("Status", T::Picklist)
            .gen_(G::Pick)
            .required()
            .picks(&["Not Started", "In Progress", "Completed"]))
        .f(FieldDef::new("Priority", T::Picklist)
            .gen_(G::Pick)
            .required()
            .picks(&["High", "Normal", "Low"]))
        .f(FieldDef::new("IsClosed", T::Boolean)
            .gen_(G::Bool(50))
            .read_only());
    let event = activity("Event", "00U", "Events")
        .f(FieldDef::new("StartDateTime", T::DateTime).gen_(G::DateTime))
        .f(FieldDef::new("EndDateTime", T::DateTime).gen_(G::DateTime))
        .f(FieldDef::new("DurationInMinutes", T::Int)
            .gen_(G::Int(15, 480))
            .num(8, 0))
        .f(FieldDef::new("IsAllDayEvent", T::Boolean).gen_(G::Bool(10)))
        .f(s("Location").gen_(G::City).nulls(40));
    let attachment = ObjectDef::new("Attachment", "00P", "Attachment", "Attachments")
        .audit(true)
        .flags(|o| {
            o.bulk_supported = false;
            o.undeletable = true;
        })
        .f(s("Name").gen_(G::Name("file")).required().name_field())
        .f(FieldDef::new("ParentId", T::Reference)
            .gen_(G::Ref)
            .required()
            .refs(&["Account", "Contact", "Case"], "Parent", None))
        .f(FieldDef::new("Body", T::Base64)
            .gen_(G::Blob)
            .required()
            .len(26_214_400))
        .f(FieldDef::new("BodyLength", T::Int)
            .gen_(G::BlobLen)
            .read_only())
        .f(s("ContentType")
            .gen_(G::Pick)
            .picks(&["text/plain", "application/pdf"])
            .len(120))
        .f(FieldDef::new("IsPrivate", T::Boolean).gen_(G::Bool(5)))
        .f(FieldDef::new("Description", T::Textarea)
            .gen_(G::Words(6))
            .nulls(70)
            .len(500))
        .f(owner());
    let content_document = ObjectDef::new(
        "ContentDocument",
        "069",
        "Content Document",
        "Content Documents",
    )
    .audit(true)
    .flags(|o| o.createable = false)
    .f(s("Title").gen_(G::Name("Document")).required().name_field())
    .f(s("FileType")
        .gen_(G::Pick)
        .picks(&["PDF", "WORD_X", "EXCEL_X", "PNG"])
        .len(20))
    .f(s("FileExtension")
        .gen_(G::Pick)
        .picks(&["pdf", "docx", "xlsx", "png"])
        .len(40))
    .f(FieldDef::new("ContentSize", T::Int)
        .gen_(G::Int(1_000, 50_000_000))
        .read_only())
    .f(FieldDef::new("PublishStatus", T::Picklist)
        .gen_(G::Pick)
        .read_only()
        .picks(&["U", "P", "R"]))
    .f(owner());
    let metric = |name: &str, prefix: &str, who: &str, who_obj: &'static str| {
        ObjectDef::new(name, prefix, name, name)
            .audit(false)
            .flags(|o| {
                o.createable = false;
                o.updateable = false;
                o.deletable = false;
                o.undeletable = false;
                o.searchable = false;
                o.layoutable = false;
                o.mru_enabled = false;
                o.triggerable = false;
            })
            .f(FieldDef::new("MetricsDate", T::DateTime)
                .gen_(G::DateTime)
                .read_only()
                .required())
            .f(s(who).gen_(G::Key(who_obj)).read_only().len(18))
            .f(FieldDef::new("AssignedUserCount", T::Int)
                .gen_(G::Int(0, 500))
                .read_only())
    };
    let perm_metric = metric(
        "ActivePermSetLicenseMetric",
        "0Pm",
        "PermissionSetLicenseId",
        "0PL",
    )
    .f(FieldDef::new("TotalLicenses", T::Int)
        .gen_(G::Int(1, 1000))
        .read_only());
    let profile_metric =
        metric("ActiveProfileMetric", "0Po", "ProfileId", "00e")
            .f(s("UserLicenseId").gen_(G::Key("100")).read_only().len(18));
    let invoice = ObjectDef::new("Invoice__c", "a01", "Invoice", "Invoices")
        .audit(true)
        .f({
            let mut f = s("Name").gen_(G::Key("INV")).name_field().len(80);
            f.label = "Invoice Number".into();
            f
        })
        .f(FieldDef::new("Account__c", T::Reference)
            .gen_(G::Ref)
            .nulls(5)
            .refs(&["Account"], "Account__r", Some("Invoices__r")))
        .f(FieldDef::new("Amount__c", T::Currency)
            .gen_(G::Num(10.0, 100_000.0))
            .nulls(5)
            .num(16, 2))
        .f(FieldDef::new("Tax_Rate__c", T::Percent)
            .gen_(G::Num(0.0, 25.0))
            .nulls(10)
            .num(5, 2))
        .f(FieldDef::new("Total__c", T::Currency).num(18, 2).formula(
            "Amount__c * (1 + Tax_Rate__c / 100)",
            Formula::TimesOnePlusPercent {
                amount: 0,
                percent: 0,
            },
        ))
        .f(FieldDef::new("Account_Name__c", T::String)
            .len(1300)
            .formula(
                "Account__r.Name",
                Formula::ParentField {
                    lookup: 0,
                    parent: "Account".into(),
                    field: "Name".into(),
                },
            ))
        .f(s("External_Id__c").gen_(G::Key("EXT")).ext_id().len(40))
        .f({
            let mut f = FieldDef::new("Status__c", T::Picklist)
                .gen_(G::Pick)
                .picks(&["Draft", "Sent", "Paid", "Void"]);
            f.restricted_picklist = true;
            f
        })
        .f(FieldDef::new("Tags__c", T::MultiPicklist)
            .gen_(G::Multi)
            .nulls(30)
            .picks(&["Urgent", "Recurring", "Disputed", "Export"]))
        .f(FieldDef::new("Channel__c", T::Combobox)
            .gen_(G::Pick)
            .nulls(20)
            .picks(&["Email", "Post", "Portal"]))
        .f(FieldDef::new("Is_Paid__c", T::Boolean).gen_(G::Bool(40)))
        .f(FieldDef::new("Quantity__c", T::Double)
            .gen_(G::Num(1.0, 500.0))
            .num(18, 0)
            .nulls(5))
        .f(FieldDef::new("Discount__c", T::Double)
            .gen_(G::Num(0.0, 0.5))
            .num(4, 3)
            .nulls(50))
        .f(FieldDef::new("Due_Date__c", T::Date)
            .gen_(G::Date)
            .nulls(10))
        .f(FieldDef::new("Sent_At__c", T::DateTime)
            .gen_(G::DateTime)
            .nulls(30))
        .f(FieldDef::new("Cutoff_Time__c", T::Time)
            .gen_(G::Time)
            .nulls(30))
        .f(FieldDef::new("Contact_Email__c", T::Email)
            .gen_(G::Email)
            .nulls(20))
        .f(FieldDef::new("Contact_Phone__c", T::Phone)
            .gen_(G::Phone)
            .nulls(20)
            .len(40))
        .f(FieldDef::new("Portal_Url__c", T::Url)
            .gen_(G::Url)
            .nulls(40))
        .f(FieldDef::new("Notes__c", T::Textarea)
            .gen_(G::Words(15))
            .nulls(30)
            .len(32768))
        .f(FieldDef::new("Secret_Code__c", T::EncryptedString)
            .gen_(G::Key("S"))
            .nulls(50)
            .len(175))
        .location("Geo")
        .f(gated(
            FieldDef::new("Payload__c", T::Json)
                .gen_(G::Json)
                .nulls(30)
                .len(131_072),
        ));
    let invoice = fix_invoice_formulas(invoice);
    vec![
        user,
        account,
        contact,
        lead,
        opportunity,
        case,
        task,
        event,
        attachment,
        content_document,
        perm_metric,
        profile_metric,
        invoice,
        history("AccountHistory", "017", "Account", "AccountId", "Histories"),
        history(
            "Invoice__History",
            "a02",
            "Invoice__c",
            "ParentId",
            "Histories",
        ),
        shipment(),
    ]
}

/// Points the invoice formulas at their input fields' indices.
fn fix_invoice_formulas(mut o: ObjectDef) -> ObjectDef {
    let pos = |o: &ObjectDef, n: &str| o.fields.iter().position(|f| f.name == n).unwrap_or(0);
    let amount = pos(&o, "Amount__c");
    let percent = pos(&o, "Tax_Rate__c");
    let lookup = pos(&o, "Account__c");
    for f in &mut o.fields {
        match &mut f.source {
            Source::Formula(Formula::TimesOnePlusPercent {
                amount: a,
                percent: p,
            }) => {
                *a = amount;
                *p = percent;
            }
            Source::Formula(Formula::ParentField { lookup: l, .. }) => *l = lookup,
            _ => {}
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_resolves_compounds_and_stamps() {
        let s = Schema::standard();
        let acc = s.object("account").unwrap();
        let billing = acc.field("BillingAddress").unwrap();
        assert!(matches!(billing.source, Source::Address(_)));
        assert_eq!(
            acc.field("BillingCity")
                .unwrap()
                .compound_field_name
                .as_deref(),
            Some("BillingAddress")
        );
        assert_eq!(acc.fields[acc.stamp].name, "SystemModstamp");
        let hist = s.object("AccountHistory").unwrap();
        assert_eq!(hist.fields[hist.stamp].name, "CreatedDate");
        let metric = s.object("ActiveProfileMetric").unwrap();
        assert!(metric.field("SystemModstamp").is_none());
        let inv = s.object("Invoice__c").unwrap();
        assert!(inv.field("Total__c").unwrap().calculated());
        assert!(matches!(
            inv.field("Geo__c").unwrap().source,
            Source::Location(_)
        ));
        let mut prefixes: Vec<_> = s.objects.iter().map(|o| o.key_prefix.clone()).collect();
        prefixes.sort();
        prefixes.dedup();
        assert_eq!(
            prefixes.len(),
            s.objects.len(),
            "key prefixes must be unique"
        );
    }

    #[test]
    fn custom_address_resolves_to_code_components() {
        let s = Schema::standard();
        let o = s.object("Shipment__c").unwrap();
        let Source::Address(p) = &o.field("Shipping_Address__c").unwrap().source else {
            panic!("not an address");
        };
        let names: Vec<&str> = p.iter().map(|&i| o.fields[i].name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Shipping_Address__Street__s",
                "Shipping_Address__City__s",
                "Shipping_Address__StateCode__s",
                "Shipping_Address__PostalCode__s",
                "Shipping_Address__CountryCode__s",
                "Shipping_Address__Latitude__s",
                "Shipping_Address__Longitude__s",
                "Shipping_Address__GeocodeAccuracy__s",
            ]
        );
        assert!(
            STATE_CODES
                .iter()
                .all(|(_, _, c)| country_label(c).is_some())
        );
        assert_eq!(stage_info("Closed Won"), Some((true, true, 100.0)));
        assert_eq!(stage_info("Closed Lost"), Some((true, false, 0.0)));
        assert!(STAGES.iter().all(|st| stage_info(st).is_some()));
    }

    #[test]
    fn extra_objects_have_unique_prefixes_and_stamps() {
        let base = Schema::standard().objects.len();
        let s = Schema::with_extra_objects(120);
        assert_eq!(s.objects.len(), base + 120);
        let b1 = s.object("bench01__c").unwrap();
        assert!(b1.custom);
        assert_eq!(b1.key_prefix, "b01");
        assert_eq!(b1.fields[b1.stamp].name, "SystemModstamp");
        assert!(s.object("Bench100__c").is_some());
        assert!(s.object("Bench121__c").is_none());
        let mut prefixes: Vec<_> = s.objects.iter().map(|o| o.key_prefix.clone()).collect();
        prefixes.sort();
        prefixes.dedup();
        assert_eq!(prefixes.len(), s.objects.len());
        let capped = Schema::with_extra_objects(u32::MAX);
        assert_eq!(capped.objects.len(), base + MAX_EXTRA_OBJECTS as usize);
    }
}
