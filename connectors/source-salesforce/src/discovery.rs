//! Which Salesforce objects become streams, and what each stream looks like.
//!
//! Mirrors Airbyte's `source-salesforce` 2.10.3 so catalogs stay interchangeable: the same
//! exclusion lists, the same stream names (the object's API name), primary key `Id`, the cursor
//! chosen from `SystemModstamp` > `LastModifiedDate` > `CreatedDate` > `LoginTime`, and the same
//! field-type → JSON-schema mapping, with these deliberate differences: `long` is an integer,
//! datetimes carry `airbyte_type: timestamp_with_timezone`, and an unknown field type becomes a
//! string with a WARN log instead of failing discovery.

use std::collections::BTreeSet;

use airbyte_protocol::{AirbyteStream, JsonObject, SyncMode};
use salesforce_client::rest::{FieldDescribe, GlobalSObject, SObjectDescribe};
use serde_json::{Value, json};

use crate::config::Config;

/// Objects Airbyte never offers because they need an object Id in every query.
pub const UNSUPPORTED_STREAMS: &[&str] = &["ActivityMetric", "ActivityMetricRollup"];

/// Objects that need a special WHERE clause (Airbyte's `QUERY_RESTRICTED_SALESFORCE_OBJECTS`).
pub const QUERY_RESTRICTED_OBJECTS: &[&str] = &[
    "Announcement",
    "AppTabMember",
    "CollaborationGroupRecord",
    "ColorDefinition",
    "ContentFolderItem",
    "ContentFolderMember",
    "DataStatistics",
    "DatacloudDandBCompany",
    "EntityParticle",
    "FieldDefinition",
    "FieldHistoryArchive",
    "FlexQueueItem",
    "FlowVariableView",
    "FlowVersionView",
    "IconDefinition",
    "IdeaComment",
    "NetworkUserHistoryRecent",
    "OwnerChangeOptionInfo",
    "PicklistValueInfo",
    "PlatformAction",
    "RelationshipDomain",
    "RelationshipInfo",
    "SearchLayout",
    "SiteDetail",
    "UserEntityAccess",
    "UserFieldAccess",
    "Vote",
];

/// Objects that cannot be queried in bulk at all (Airbyte's `QUERY_INCOMPATIBLE_SALESFORCE_OBJECTS`).
pub const QUERY_INCOMPATIBLE_OBJECTS: &[&str] = &[
    "AIPredictionEvent",
    "ActivityHistory",
    "AggregateResult",
    "ApiAnomalyEvent",
    "ApiEventStream",
    "AssetTokenEvent",
    "AsyncOperationEvent",
    "AsyncOperationStatus",
    "AttachedContentDocument",
    "AttachedContentNote",
    "BatchApexErrorEvent",
    "BulkApiResultEvent",
    "CombinedAttachment",
    "ConcurLongRunApexErrEvent",
    "ContentBody",
    "CredentialStuffingEvent",
    "DataType",
    "DatacloudAddress",
    "EmailStatus",
    "FeedLike",
    "FeedSignal",
    "FeedTrackedChange",
    "FlowExecutionErrorEvent",
    "FolderedContentDocument",
    "LightningUriEventStream",
    "ListViewChartInstance",
    "ListViewEventStream",
    "LoginAsEventStream",
    "LoginEventStream",
    "LogoutEventStream",
    "LookedUpFromActivity",
    "Name",
    "NoteAndAttachment",
    "OpenActivity",
    "OrgLifecycleNotification",
    "OutgoingEmail",
    "OutgoingEmailRelation",
    "OwnedContentDocument",
    "PlatformStatusAlertEvent",
    "ProcessExceptionEvent",
    "ProcessInstanceHistory",
    "QuoteTemplateRichTextData",
    "RemoteKeyCalloutEvent",
    "ReportAnomalyEvent",
    "ReportEventStream",
    "SessionHijackingEvent",
    "UriEventStream",
    "UserRecordAccess",
];

/// Objects with a cursor field that cannot be filtered on it: full refresh only
/// (Airbyte's `UNSUPPORTED_FILTERING_STREAMS`).
pub const UNSUPPORTED_FILTERING_OBJECTS: &[&str] = &[
    "ActivityFieldHistory",
    "ApiEvent",
    "BulkApiResultEventStore",
    "ContentDocumentLink",
    "EmbeddedServiceDetail",
    "EmbeddedServiceLabel",
    "FormulaFunction",
    "FormulaFunctionAllowedType",
    "FormulaFunctionCategory",
    "IdentityProviderEventStore",
    "IdentityVerificationEvent",
    "LightningUriEvent",
    "ListViewEvent",
    "LoginAsEvent",
    "LoginEvent",
    "LogoutEvent",
    "Publisher",
    "RecordActionHistory",
    "ReportEvent",
    "TabDefinition",
    "UriEvent",
];

/// Objects Bulk API 2.0 does not serve; always read through REST
/// (Airbyte's `UNSUPPORTED_BULK_API_SALESFORCE_OBJECTS`).
pub const UNSUPPORTED_BULK_OBJECTS: &[&str] = &[
    "AcceptedEventRelation",
    "AccountBrandShare",
    "AccountFeed",
    "AggregateResult",
    "AssetFeed",
    "AssetTokenEvent",
    "AttachedContentDocument",
    "AttachedContentNote",
    "Attachment",
    "CaseStatus",
    "CaseTeamMember",
    "CaseTeamRole",
    "CaseTeamTemplate",
    "CaseTeamTemplateMember",
    "CaseTeamTemplateRecord",
    "ChannelProgramLevelShare",
    "CombinedAttachment",
    "ContentFolderItem",
    "ContractStatus",
    "DeclinedEventRelation",
    "EventWhoRelation",
    "FieldSecurityClassification",
    "FolderedContentDocument",
    "KnowledgeArticle",
    "KnowledgeArticleVersion",
    "KnowledgeArticleVersionHistory",
    "KnowledgeArticleViewStat",
    "KnowledgeArticleVoteStat",
    "LookedUpFromActivity",
    "Name",
    "NoteAndAttachment",
    "OpenActivity",
    "OrderStatus",
    "OwnedContentDocument",
    "PartnerRole",
    "QuoteTemplateRichTextData",
    "RecentlyViewed",
    "ServiceAppointmentStatus",
    "ShiftStatus",
    "SolutionStatus",
    "TaskPriority",
    "TaskStatus",
    "TaskWhoRelation",
    "UndecidedEventRelation",
    "UserRecordAccess",
    "WorkOrderLineItemStatus",
    "WorkOrderStatus",
];

/// Cursor candidates, best first.
pub const CURSOR_CANDIDATES: &[&str] = &[
    "SystemModstamp",
    "LastModifiedDate",
    "CreatedDate",
    "LoginTime",
];

/// Name of the synthetic stream that emits every catalog object's describe.
pub const DESCRIBE_STREAM: &str = "Describe";

/// Why an object is not a stream (for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exclusion {
    /// `ActivityMetric` and friends.
    Unsupported,
    /// `queryable == false`.
    NotQueryable,
    /// Dropped by `streams_criteria`.
    Criteria,
    /// A `*ChangeEvent` object.
    ChangeEvent,
    /// On a query-restricted or query-incompatible list.
    Denylisted,
}

/// Whether a describe-global entry becomes a stream, applying Airbyte's rules in its order.
pub fn exclusion(object: &GlobalSObject, config: &Config) -> Option<Exclusion> {
    let name = object.name.as_str();
    if UNSUPPORTED_STREAMS.contains(&name) {
        return Some(Exclusion::Unsupported);
    }
    if !object.queryable {
        return Some(Exclusion::NotQueryable);
    }
    if !config.stream_selected(name) {
        return Some(Exclusion::Criteria);
    }
    if name.ends_with("ChangeEvent") {
        return Some(Exclusion::ChangeEvent);
    }
    if QUERY_RESTRICTED_OBJECTS.contains(&name) || QUERY_INCOMPATIBLE_OBJECTS.contains(&name) {
        return Some(Exclusion::Denylisted);
    }
    None
}

/// The objects of a describe global that become streams, in describe order. Exclusions of
/// objects Airbyte warns about are logged at WARN; the silent ones at DEBUG.
pub fn stream_objects<'a>(objects: &'a [GlobalSObject], config: &Config) -> Vec<&'a str> {
    let mut out = Vec::new();
    for object in objects {
        match exclusion(object, config) {
            None => out.push(object.name.as_str()),
            Some(why @ (Exclusion::Unsupported | Exclusion::NotQueryable)) => {
                tracing::warn!(object = %object.name, reason = ?why, "object is not offered as a stream");
            }
            Some(why) => {
                tracing::debug!(object = %object.name, reason = ?why, "object is not offered as a stream");
            }
        }
    }
    out
}

/// How a field's values are typed (drives both the JSON schema and value conversion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Text of any kind (also ids, picklists, `time`, `anyType`, unknown types).
    String,
    /// `date`: `YYYY-MM-DD`.
    Date,
    /// `datetime`: normalised to `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    DateTime,
    /// `double`, `currency`, `percent`.
    Number,
    /// `int`, `long`.
    Integer,
    /// `boolean`.
    Boolean,
    /// `base64`: text, REST only.
    Base64,
    /// `address` compound field.
    Address,
    /// `location` compound field.
    Location,
}

impl FieldKind {
    /// The kind for a describe `type`; `None` for a type this build does not know.
    pub fn of_type(sf_type: &str) -> Option<Self> {
        Some(match sf_type {
            "string"
            | "textarea"
            | "picklist"
            | "multipicklist"
            | "combobox"
            | "email"
            | "phone"
            | "url"
            | "id"
            | "reference"
            | "masterrecord"
            | "encryptedstring"
            | "datacategorygroupreference"
            | "byte"
            | "json"
            | "complexvalue"
            | "time"
            | "anyType"
            | "calculated" => Self::String,
            "date" => Self::Date,
            "datetime" => Self::DateTime,
            "double" | "currency" | "percent" => Self::Number,
            "int" | "long" => Self::Integer,
            "boolean" => Self::Boolean,
            "base64" => Self::Base64,
            "address" => Self::Address,
            "location" => Self::Location,
            _ => return None,
        })
    }

    /// The kind for a field, mapping an unknown type to [`FieldKind::String`] with a WARN log.
    pub fn of_field(object: &str, field: &FieldDescribe) -> Self {
        Self::of_type(&field.field_type).unwrap_or_else(|| {
            tracing::warn!(
                object,
                field = %field.name,
                sf_type = %field.field_type,
                "unknown Salesforce field type; the field is typed as a string"
            );
            Self::String
        })
    }

    /// Whether this is a compound (object-valued) field.
    pub fn is_compound(self) -> bool {
        matches!(self, Self::Address | Self::Location)
    }

    /// The JSON schema of a nullable value of this kind.
    pub fn json_schema(self) -> Value {
        match self {
            Self::String => json!({"type": ["string", "null"]}),
            Self::Date => json!({"type": ["string", "null"], "format": "date"}),
            Self::DateTime => json!({
                "type": ["string", "null"],
                "format": "date-time",
                "airbyte_type": "timestamp_with_timezone"
            }),
            Self::Number => json!({"type": ["number", "null"]}),
            Self::Integer => json!({"type": ["integer", "null"]}),
            Self::Boolean => json!({"type": ["boolean", "null"]}),
            Self::Base64 => json!({"type": ["string", "null"], "format": "base64"}),
            // Inside compound values the types list null first, as Airbyte's connector does.
            Self::Address => {
                let s = json!({"type": ["null", "string"]});
                let n = json!({"type": ["null", "number"]});
                json!({
                    "type": ["object", "null"],
                    "properties": {
                        "street": s, "state": s, "postalCode": s, "city": s, "country": s,
                        "longitude": n, "latitude": n, "geocodeAccuracy": s
                    }
                })
            }
            Self::Location => {
                let n = json!({"type": ["null", "number"]});
                json!({"type": ["object", "null"], "properties": {"longitude": n, "latitude": n}})
            }
        }
    }
}

/// What the connector knows about one object from its describe.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectInfo {
    /// API name (also the stream name).
    pub name: String,
    /// Fields in describe order: name, kind, and the compound field it is a component of.
    pub fields: Vec<FieldInfo>,
    /// `Id` when the object has it.
    pub primary_key: Option<String>,
    /// The cursor field when the stream can be incremental.
    pub cursor: Option<String>,
}

/// One field of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldInfo {
    /// API name.
    pub name: String,
    /// Value kind.
    pub kind: FieldKind,
    /// For address/location components (e.g. `BillingCity`): the compound field's name.
    pub compound_of: Option<String>,
    /// The Salesforce field type as the describe names it (`datetime`, `address`, ...).
    pub sf_type: String,
    /// A formula field (describe `calculated: true`): computed when read, so a change of its
    /// inputs does not move the row's cursor.
    pub calculated: bool,
}

/// JSON-schema keyword our discover adds to every property: the field's Salesforce type, so
/// `read` can plan a stream from the catalog alone, without describing the object again.
pub const TYPE_ANNOTATION: &str = "x-salesforce-type";

/// Keyword on a component property (`BillingCity`): the compound field it belongs to.
pub const COMPOUND_ANNOTATION: &str = "x-salesforce-compound";

/// Keyword on a compound property (`BillingAddress`): its components and their types, so the
/// compound value can be rebuilt from Bulk columns even when the catalog deselects them.
pub const COMPONENTS_ANNOTATION: &str = "x-salesforce-components";

/// Keyword `true` on a formula field's property (describe `calculated: true`); absent otherwise.
/// `read` uses it to know which streams a scheduled formula refresh concerns.
pub const CALCULATED_ANNOTATION: &str = "x-salesforce-calculated";

/// Keyword `true` at the top of every stream schema our discover writes since formula fields are
/// annotated: without it (a catalog from an older version) the absence of
/// [`CALCULATED_ANNOTATION`] proves nothing, so a formula refresh describes the object.
pub const FORMULAS_MARKED: &str = "x-salesforce-formulas-marked";

impl ObjectInfo {
    /// Reads an object's describe.
    pub fn from_describe(describe: &SObjectDescribe) -> Self {
        let name = describe.name.clone();
        let fields: Vec<FieldInfo> = describe
            .fields
            .iter()
            .map(|f| FieldInfo {
                name: f.name.clone(),
                kind: FieldKind::of_field(&name, f),
                compound_of: f.compound_field_name.clone().filter(|c| c != &f.name),
                sf_type: f.field_type.clone(),
                calculated: f.calculated,
            })
            .collect();
        Self::with_fields(name, fields)
    }

    /// Rebuilds the object from a catalog stream our discover wrote: every property carries
    /// [`TYPE_ANNOTATION`]. `None` when any property lacks it (e.g. a catalog discovered by
    /// Airbyte's own connector): the object must then be described.
    pub fn from_catalog(name: &str, json_schema: &Value) -> Option<Self> {
        let props = json_schema.get("properties")?.as_object()?;
        if props.is_empty() {
            return None;
        }
        let mut fields: Vec<FieldInfo> = Vec::with_capacity(props.len());
        for (field, schema) in props {
            let sf_type = schema.get(TYPE_ANNOTATION)?.as_str()?;
            fields.push(FieldInfo {
                name: field.clone(),
                kind: FieldKind::of_type(sf_type).unwrap_or(FieldKind::String),
                compound_of: schema
                    .get(COMPOUND_ANNOTATION)
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                sf_type: sf_type.to_owned(),
                calculated: schema.get(CALCULATED_ANNOTATION) == Some(&Value::Bool(true)),
            });
        }
        // Components the catalog deselected are still needed to rebuild their compound value.
        for (field, schema) in props {
            let Some(components) = schema.get(COMPONENTS_ANNOTATION).and_then(Value::as_object)
            else {
                continue;
            };
            for (component, sf_type) in components {
                if props.contains_key(component) {
                    continue;
                }
                let sf_type = sf_type.as_str()?;
                fields.push(FieldInfo {
                    name: component.clone(),
                    kind: FieldKind::of_type(sf_type).unwrap_or(FieldKind::String),
                    compound_of: Some(field.clone()),
                    sf_type: sf_type.to_owned(),
                    calculated: false,
                });
            }
        }
        Some(Self::with_fields(name.to_owned(), fields))
    }

    fn with_fields(name: String, fields: Vec<FieldInfo>) -> Self {
        let has = |n: &str| fields.iter().any(|f| f.name == n);
        let primary_key = has("Id").then(|| "Id".to_owned());
        let cursor = if UNSUPPORTED_FILTERING_OBJECTS.contains(&name.as_str()) {
            None
        } else {
            CURSOR_CANDIDATES
                .iter()
                .find(|c| has(c))
                .map(|c| (*c).to_owned())
        };
        Self {
            name,
            fields,
            primary_key,
            cursor,
        }
    }

    /// Whether a catalog stream schema marks its formula fields (see [`FORMULAS_MARKED`]).
    pub fn formulas_marked(json_schema: &Value) -> bool {
        json_schema.get(FORMULAS_MARKED) == Some(&Value::Bool(true))
    }

    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&FieldInfo> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Whether any field is base64.
    pub fn has_base64(&self) -> bool {
        self.fields.iter().any(|f| f.kind == FieldKind::Base64)
    }

    /// The stream's JSON schema: every field nullable, additional properties allowed.
    pub fn json_schema(&self) -> Value {
        let mut properties = JsonObject::new();
        for f in &self.fields {
            let mut schema = f.kind.json_schema();
            if let Value::Object(o) = &mut schema {
                o.insert(TYPE_ANNOTATION.to_owned(), Value::String(f.sf_type.clone()));
                if let Some(c) = &f.compound_of {
                    o.insert(COMPOUND_ANNOTATION.to_owned(), Value::String(c.clone()));
                }
                if f.calculated {
                    o.insert(CALCULATED_ANNOTATION.to_owned(), Value::Bool(true));
                }
                if f.kind.is_compound() {
                    let components: JsonObject = self
                        .fields
                        .iter()
                        .filter(|c| c.compound_of.as_deref() == Some(f.name.as_str()))
                        .map(|c| (c.name.clone(), Value::String(c.sf_type.clone())))
                        .collect();
                    o.insert(COMPONENTS_ANNOTATION.to_owned(), Value::Object(components));
                }
            }
            properties.insert(f.name.clone(), schema);
        }
        json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "additionalProperties": true,
            FORMULAS_MARKED: true,
            "properties": properties
        })
    }

    /// The catalog entry.
    pub fn airbyte_stream(&self) -> AirbyteStream {
        let mut modes = vec![SyncMode::FullRefresh];
        if self.cursor.is_some() {
            modes.push(SyncMode::Incremental);
        }
        AirbyteStream {
            name: self.name.clone(),
            json_schema: self.json_schema(),
            supported_sync_modes: modes,
            source_defined_cursor: self.cursor.as_ref().map(|_| true),
            default_cursor_field: self.cursor.as_ref().map(|c| vec![c.clone()]),
            source_defined_primary_key: self.primary_key.as_ref().map(|pk| vec![vec![pk.clone()]]),
            namespace: None,
            is_resumable: Some(self.cursor.is_some()),
            is_file_based: Some(false),
            extra: JsonObject::new(),
        }
    }
}

/// The synthetic `Describe` stream (full refresh, primary key `name`): one record per catalog
/// object with its raw describe.
pub fn describe_stream() -> AirbyteStream {
    let t = |kind: &str| json!({"type": ["null", kind]});
    let objects = json!({"type": ["null", "array"], "items": {"type": ["null", "object"]}});
    let mut properties = JsonObject::new();
    for flag in [
        "activateable",
        "compactLayoutable",
        "createable",
        "custom",
        "customSetting",
        "dataTranslationEnabled",
        "deepCloneable",
        "deletable",
        "deprecatedAndHidden",
        "feedEnabled",
        "isInterface",
        "layoutable",
        "mergeable",
        "mruEnabled",
        "queryable",
        "replicateable",
        "retrieveable",
        "searchable",
        "searchLayoutable",
        "triggerable",
        "undeletable",
        "updateable",
    ] {
        properties.insert(flag.to_owned(), t("boolean"));
    }
    for text in [
        "associateEntityType",
        "associateParentEntity",
        "defaultImplementation",
        "extendedBy",
        "extendsInterfaces",
        "implementedBy",
        "implementsInterfaces",
        "keyPrefix",
        "label",
        "labelPlural",
        "name",
        "networkScopeFieldName",
        "urlDetail",
        "urlEdit",
        "urlNew",
    ] {
        properties.insert(text.to_owned(), t("string"));
    }
    for list in [
        "actionOverrides",
        "childRelationships",
        "fields",
        "namedLayoutInfos",
        "supportedScopes",
    ] {
        properties.insert(list.to_owned(), objects.clone());
    }
    properties.insert("recordTypeInfos".to_owned(), t("array"));
    AirbyteStream {
        name: DESCRIBE_STREAM.to_owned(),
        json_schema: json!({"type": "object", "properties": properties}),
        supported_sync_modes: vec![SyncMode::FullRefresh],
        source_defined_cursor: None,
        default_cursor_field: None,
        source_defined_primary_key: Some(vec![vec!["name".to_owned()]]),
        namespace: None,
        is_resumable: Some(false),
        is_file_based: Some(false),
        extra: JsonObject::new(),
    }
}

/// The names a catalog's `json_schema.properties` selects (`None` when the schema lists none,
/// meaning every field).
pub fn selected_properties(json_schema: &Value) -> Option<BTreeSet<String>> {
    let props = json_schema.get("properties")?.as_object()?;
    if props.is_empty() {
        return None;
    }
    Some(props.keys().cloned().collect())
}

/// Address component suffixes and the key each has in the compound value, longest first so
/// `StateCode` wins over `State`.
const ADDRESS_PARTS: &[(&str, &str)] = &[
    ("GeocodeAccuracy", "geocodeAccuracy"),
    ("CountryCode", "countryCode"),
    ("PostalCode", "postalCode"),
    ("StateCode", "stateCode"),
    ("Longitude", "longitude"),
    ("Latitude", "latitude"),
    ("Country", "country"),
    ("Street", "street"),
    ("State", "state"),
    ("City", "city"),
];

/// The key a component field (e.g. `BillingPostalCode`, `Geo__Latitude__s`) has inside its
/// compound value (`postalCode`, `latitude`).
pub fn component_key(component: &str) -> Option<&'static str> {
    let base = component.strip_suffix("__s").unwrap_or(component);
    ADDRESS_PARTS
        .iter()
        .find(|(suffix, _)| base.ends_with(suffix))
        .map(|(_, key)| *key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;
    use chrono::Utc;

    fn config(criteria: Value) -> Config {
        let v = json!({"client_id": "c", "client_secret": "s", "refresh_token": "r",
                       "streams_criteria": criteria});
        Config::from_raw(
            RawConfig::from_json(v.as_object().unwrap()).unwrap(),
            Utc::now(),
        )
        .unwrap()
    }

    fn global(name: &str, queryable: bool) -> GlobalSObject {
        serde_json::from_value(json!({"name": name, "label": name, "queryable": queryable}))
            .unwrap()
    }

    /// A describe in the documented shape (only the keys the connector reads, plus a few).
    fn describe(name: &str, fields: &[(&str, &str)]) -> SObjectDescribe {
        let fields: Vec<Value> = fields
            .iter()
            .map(|(n, t)| {
                let compound = match *n {
                    "BillingStreet" | "BillingCity" | "BillingState" | "BillingPostalCode"
                    | "BillingCountry" | "BillingLatitude" | "BillingLongitude"
                    | "BillingGeocodeAccuracy" => json!("BillingAddress"),
                    "Geo__Latitude__s" | "Geo__Longitude__s" => json!("Geo__c"),
                    _ => Value::Null,
                };
                json!({"name": n, "label": n, "type": t, "nillable": true, "compoundFieldName": compound,
                       "soapType": "xsd:string", "length": 0, "referenceTo": [], "picklistValues": []})
            })
            .collect();
        serde_json::from_value(
            json!({"name": name, "label": name, "queryable": true, "fields": fields}),
        )
        .unwrap()
    }

    fn account() -> SObjectDescribe {
        describe(
            "Account",
            &[
                ("Id", "id"),
                ("IsDeleted", "boolean"),
                ("Name", "string"),
                ("Type", "picklist"),
                ("BillingStreet", "textarea"),
                ("BillingCity", "string"),
                ("BillingLatitude", "double"),
                ("BillingAddress", "address"),
                ("Geo__Latitude__s", "double"),
                ("Geo__Longitude__s", "double"),
                ("Geo__c", "location"),
                ("AnnualRevenue", "currency"),
                ("NumberOfEmployees", "int"),
                ("BigCount__c", "long"),
                ("Share__c", "percent"),
                ("Founded__c", "date"),
                ("OpensAt__c", "time"),
                ("Logo__c", "base64"),
                ("Payload__c", "json"),
                ("Mystery__c", "hologram"),
                ("CreatedDate", "datetime"),
                ("LastModifiedDate", "datetime"),
                ("SystemModstamp", "datetime"),
            ],
        )
    }

    #[test]
    fn account_stream_snapshot() {
        let info = ObjectInfo::from_describe(&account());
        let mut stream = serde_json::to_value(info.airbyte_stream()).unwrap();
        // The annotations are checked in `catalog_annotations_round_trip` and
        // `formula_fields_are_annotated_and_read_back`.
        let marked = stream["json_schema"]
            .as_object_mut()
            .unwrap()
            .remove(FORMULAS_MARKED);
        assert_eq!(marked, Some(Value::Bool(true)));
        for p in stream["json_schema"]["properties"]
            .as_object_mut()
            .unwrap()
            .values_mut()
        {
            let o = p.as_object_mut().unwrap();
            assert!(o.remove(TYPE_ANNOTATION).is_some());
            o.remove(COMPOUND_ANNOTATION);
            o.remove(COMPONENTS_ANNOTATION);
        }
        let s = json!({"type": ["string", "null"]});
        let n = json!({"type": ["number", "null"]});
        let (ns, nn) = (
            json!({"type": ["null", "string"]}),
            json!({"type": ["null", "number"]}),
        );
        let dt = json!({"type": ["string", "null"], "format": "date-time", "airbyte_type": "timestamp_with_timezone"});
        let expected = json!({
            "name": "Account",
            "json_schema": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "additionalProperties": true,
                "properties": {
                    "Id": s, "IsDeleted": {"type": ["boolean", "null"]}, "Name": s, "Type": s,
                    "BillingStreet": s, "BillingCity": s, "BillingLatitude": n,
                    "BillingAddress": {"type": ["object", "null"], "properties": {
                        "street": ns, "state": ns, "postalCode": ns, "city": ns, "country": ns,
                        "longitude": nn, "latitude": nn, "geocodeAccuracy": ns}},
                    "Geo__Latitude__s": n, "Geo__Longitude__s": n,
                    "Geo__c": {"type": ["object", "null"], "properties": {"longitude": nn, "latitude": nn}},
                    "AnnualRevenue": n,
                    "NumberOfEmployees": {"type": ["integer", "null"]},
                    "BigCount__c": {"type": ["integer", "null"]},
                    "Share__c": n,
                    "Founded__c": {"type": ["string", "null"], "format": "date"},
                    "OpensAt__c": s,
                    "Logo__c": {"type": ["string", "null"], "format": "base64"},
                    "Payload__c": s,
                    "Mystery__c": s,
                    "CreatedDate": dt, "LastModifiedDate": dt, "SystemModstamp": dt
                }
            },
            "supported_sync_modes": ["full_refresh", "incremental"],
            "source_defined_cursor": true,
            "default_cursor_field": ["SystemModstamp"],
            "source_defined_primary_key": [["Id"]],
            "is_resumable": true,
            "is_file_based": false
        });
        assert_eq!(stream, expected);
        assert!(info.has_base64());
        assert_eq!(
            info.field("BillingCity").unwrap().compound_of.as_deref(),
            Some("BillingAddress")
        );
        assert_eq!(
            info.field("Geo__Latitude__s")
                .unwrap()
                .compound_of
                .as_deref(),
            Some("Geo__c")
        );
        assert_eq!(info.field("BillingAddress").unwrap().compound_of, None);
    }

    #[test]
    fn catalog_annotations_round_trip() {
        let info = ObjectInfo::from_describe(&account());
        let schema = info.json_schema();
        let p = &schema["properties"];
        assert_eq!(p["SystemModstamp"][TYPE_ANNOTATION], "datetime");
        assert_eq!(p["Mystery__c"][TYPE_ANNOTATION], "hologram");
        assert_eq!(p["BillingCity"][COMPOUND_ANNOTATION], "BillingAddress");
        assert_eq!(
            p["BillingAddress"][COMPONENTS_ANNOTATION],
            json!({"BillingStreet": "textarea", "BillingCity": "string", "BillingLatitude": "double"})
        );
        assert_eq!(
            ObjectInfo::from_catalog("Account", &schema),
            Some(info.clone())
        );

        // A catalog trimmed to a few fields still knows the compound's components.
        let mut trimmed = schema.clone();
        let props = trimmed["properties"].as_object_mut().unwrap();
        props.retain(|k, _| ["Id", "BillingAddress", "SystemModstamp"].contains(&k.as_str()));
        let back = ObjectInfo::from_catalog("Account", &trimmed).unwrap();
        let names: Vec<&str> = back.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Id",
                "BillingAddress",
                "SystemModstamp",
                "BillingStreet",
                "BillingCity",
                "BillingLatitude"
            ]
        );
        assert_eq!(back.cursor.as_deref(), Some("SystemModstamp"));
        assert_eq!(
            back.field("BillingCity").unwrap().compound_of.as_deref(),
            Some("BillingAddress")
        );

        // A property without the annotation (Airbyte's own discover): describe instead.
        props_remove_annotation(&mut trimmed, "Id");
        assert_eq!(ObjectInfo::from_catalog("Account", &trimmed), None);
        assert_eq!(
            ObjectInfo::from_catalog("Account", &json!({"type": "object"})),
            None
        );
    }

    #[test]
    fn formula_fields_are_annotated_and_read_back() {
        let describe: SObjectDescribe = serde_json::from_value(json!({
            "name": "Invoice__c", "label": "Invoice", "queryable": true,
            "fields": [
                {"name": "Id", "label": "Id", "type": "id"},
                {"name": "Account_Name__c", "label": "Account", "type": "string", "calculated": true},
                {"name": "Amount__c", "label": "Amount", "type": "currency"},
                {"name": "SystemModstamp", "label": "Stamp", "type": "datetime"}
            ]
        }))
        .unwrap();
        let info = ObjectInfo::from_describe(&describe);
        assert!(info.field("Account_Name__c").unwrap().calculated);
        assert!(!info.field("Amount__c").unwrap().calculated);
        let schema = info.json_schema();
        let p = &schema["properties"];
        assert_eq!(p["Account_Name__c"][CALCULATED_ANNOTATION], true);
        assert!(
            p["Amount__c"].get(CALCULATED_ANNOTATION).is_none(),
            "only formula fields carry the keyword"
        );
        assert!(ObjectInfo::formulas_marked(&schema));
        assert!(!ObjectInfo::formulas_marked(&json!({"properties": {}})));
        assert_eq!(ObjectInfo::from_catalog("Invoice__c", &schema), Some(info));
    }

    fn props_remove_annotation(schema: &mut Value, field: &str) {
        schema["properties"][field]
            .as_object_mut()
            .unwrap()
            .remove(TYPE_ANNOTATION);
    }

    #[test]
    fn cursor_preference_and_full_refresh_only() {
        let pick = |name: &str, fields: &[(&str, &str)]| {
            ObjectInfo::from_describe(&describe(name, fields))
        };
        let h = pick(
            "AccountHistory",
            &[("Id", "id"), ("CreatedDate", "datetime")],
        );
        assert_eq!(h.cursor.as_deref(), Some("CreatedDate"));
        let l = pick("LoginHistory", &[("Id", "id"), ("LoginTime", "datetime")]);
        assert_eq!(l.cursor.as_deref(), Some("LoginTime"));
        let m = pick(
            "Foo",
            &[
                ("Id", "id"),
                ("CreatedDate", "datetime"),
                ("LastModifiedDate", "datetime"),
            ],
        );
        assert_eq!(m.cursor.as_deref(), Some("LastModifiedDate"));
        let none = pick("Setting", &[("Id", "id"), ("Name", "string")]);
        assert_eq!(none.cursor, None);
        let s = serde_json::to_value(none.airbyte_stream()).unwrap();
        assert_eq!(s["supported_sync_modes"], json!(["full_refresh"]));
        assert!(
            s.get("source_defined_cursor").is_none() && s.get("default_cursor_field").is_none()
        );
        let filtered = pick("LoginEvent", &[("Id", "id"), ("CreatedDate", "datetime")]);
        assert_eq!(
            filtered.cursor, None,
            "unsupported-filtering objects are full refresh only"
        );
        let nopk = pick(
            "Thing",
            &[("Name", "string"), ("SystemModstamp", "datetime")],
        );
        assert_eq!(nopk.primary_key, None);
        assert!(
            serde_json::to_value(nopk.airbyte_stream())
                .unwrap()
                .get("source_defined_primary_key")
                .is_none()
        );
    }

    #[test]
    fn type_mapping_covers_every_documented_type() {
        let strings = [
            "string",
            "textarea",
            "picklist",
            "multipicklist",
            "combobox",
            "email",
            "phone",
            "url",
            "id",
            "reference",
            "masterrecord",
            "encryptedstring",
            "datacategorygroupreference",
            "byte",
            "json",
            "complexvalue",
            "time",
            "anyType",
            "calculated",
        ];
        for t in strings {
            assert_eq!(FieldKind::of_type(t), Some(FieldKind::String), "{t}");
        }
        for t in ["double", "currency", "percent"] {
            assert_eq!(FieldKind::of_type(t), Some(FieldKind::Number), "{t}");
        }
        assert_eq!(FieldKind::of_type("int"), Some(FieldKind::Integer));
        assert_eq!(FieldKind::of_type("long"), Some(FieldKind::Integer));
        assert_eq!(FieldKind::of_type("boolean"), Some(FieldKind::Boolean));
        assert_eq!(FieldKind::of_type("date"), Some(FieldKind::Date));
        assert_eq!(FieldKind::of_type("datetime"), Some(FieldKind::DateTime));
        assert_eq!(FieldKind::of_type("base64"), Some(FieldKind::Base64));
        assert_eq!(FieldKind::of_type("address"), Some(FieldKind::Address));
        assert_eq!(FieldKind::of_type("location"), Some(FieldKind::Location));
        assert_eq!(FieldKind::of_type("floatarray"), None);
    }

    #[test]
    fn which_objects_are_streams() {
        let objects = vec![
            global("Account", true),
            global("Contact", true),
            global("ActivityMetric", true),
            global("NotQueryable", false),
            global("AccountChangeEvent", true),
            global("Vote", true),
            global("OpenActivity", true),
            global("AccountHistory", true),
            global("Lead", true),
        ];
        let all = config(json!([]));
        assert_eq!(
            stream_objects(&objects, &all),
            vec!["Account", "Contact", "AccountHistory", "Lead"]
        );
        let acc = config(json!([{"criteria": "starts with", "value": "account"}]));
        assert_eq!(
            stream_objects(&objects, &acc),
            vec!["Account", "AccountHistory"]
        );
        assert_eq!(exclusion(&objects[3], &all), Some(Exclusion::NotQueryable));
        assert_eq!(exclusion(&objects[4], &all), Some(Exclusion::ChangeEvent));
        assert_eq!(exclusion(&objects[5], &all), Some(Exclusion::Denylisted));
        assert_eq!(exclusion(&objects[6], &all), Some(Exclusion::Denylisted));
        assert_eq!(exclusion(&objects[2], &all), Some(Exclusion::Unsupported));
    }

    #[test]
    fn lists_have_the_documented_sizes() {
        assert_eq!(QUERY_RESTRICTED_OBJECTS.len(), 27);
        assert_eq!(QUERY_INCOMPATIBLE_OBJECTS.len(), 48);
        assert_eq!(UNSUPPORTED_FILTERING_OBJECTS.len(), 21);
        assert_eq!(UNSUPPORTED_BULK_OBJECTS.len(), 47);
    }

    #[test]
    fn component_keys() {
        assert_eq!(component_key("BillingStreet"), Some("street"));
        assert_eq!(component_key("BillingStateCode"), Some("stateCode"));
        assert_eq!(component_key("BillingState"), Some("state"));
        assert_eq!(component_key("MailingPostalCode"), Some("postalCode"));
        assert_eq!(
            component_key("BillingGeocodeAccuracy"),
            Some("geocodeAccuracy")
        );
        assert_eq!(component_key("Geo__Latitude__s"), Some("latitude"));
        assert_eq!(component_key("Geo__Longitude__s"), Some("longitude"));
        assert_eq!(component_key("City"), Some("city"));
        assert_eq!(component_key("Name"), None);
    }

    #[test]
    fn selected_properties_from_catalog_schema() {
        let schema = json!({"type": "object", "properties": {"Id": {}, "Name": {}}});
        let sel = selected_properties(&schema).unwrap();
        assert_eq!(sel.into_iter().collect::<Vec<_>>(), vec!["Id", "Name"]);
        assert_eq!(selected_properties(&json!({"type": "object"})), None);
    }
}
