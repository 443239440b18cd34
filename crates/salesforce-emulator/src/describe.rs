//! Describe bodies: describe global (§2.2) and sObject describe (§2.3) with every listed property.

use crate::schema::{FieldDef, FieldType, ObjectDef, Schema};
use serde_json::{Map, Value as Json, json};

fn urls(o: &ObjectDef, v: &str) -> Json {
    let base = format!("/services/data/{v}/sobjects/{}", o.name);
    json!({
        "compactLayouts": format!("{base}/describe/compactLayouts"),
        "rowTemplate": format!("{base}/{{ID}}"),
        "approvalLayouts": format!("{base}/describe/approvalLayouts"),
        "defaultValues": format!("{base}/defaultValues?recordTypeId&fields"),
        "listviews": format!("{base}/listviews"),
        "describe": format!("{base}/describe"),
        "quickActions": format!("{base}/quickActions"),
        "layouts": format!("{base}/describe/layouts"),
        "sobject": base,
    })
}

/// One `sobjects[]` entry of describe global (DescribeGlobalSObjectResult, §2.2).
pub fn global_entry(o: &ObjectDef, v: &str) -> Json {
    json!({
        "activateable": false,
        "associateEntityType": null,
        "associateParentEntity": null,
        "createable": o.createable,
        "custom": o.custom,
        "customSetting": false,
        "deepCloneable": false,
        "deletable": o.deletable,
        "deprecatedAndHidden": false,
        "feedEnabled": o.feed_enabled,
        "hasSubtypes": false,
        "isInterface": false,
        "isSubtype": false,
        "keyPrefix": o.key_prefix,
        "label": o.label,
        "labelPlural": o.label_plural,
        "layoutable": o.layoutable,
        "mergeable": o.mergeable,
        "mruEnabled": o.mru_enabled,
        "name": o.name,
        "queryable": o.queryable,
        "replicateable": o.replicateable,
        "retrieveable": o.retrieveable,
        "searchable": o.searchable,
        "triggerable": o.triggerable,
        "undeletable": o.undeletable,
        "updateable": o.updateable,
        "idEnabled": true,
        "urls": urls(o, v),
    })
}

/// Describe global body (§2.2).
pub fn global(schema: &Schema, v: &str) -> Json {
    json!({
        "encoding": "UTF-8",
        "maxBatchSize": 200,
        "sobjects": schema.objects.iter().map(|o| global_entry(o, v)).collect::<Vec<_>>(),
    })
}

/// Basic information of `GET /sobjects/{name}`.
pub fn basic(o: &ObjectDef, v: &str) -> Json {
    json!({"objectDescribe": global_entry(o, v), "recentItems": []})
}

/// One `fields[]` entry (§2.3 Field properties).
pub fn field(f: &FieldDef) -> Json {
    let byte_length = match f.ty {
        FieldType::Id | FieldType::Reference => 18,
        t if t.is_text() => f.length * 3,
        _ => 0,
    };
    let picklist: Vec<Json> = f
        .picklist
        .iter()
        .map(|p| json!({"active": true, "defaultValue": false, "label": p, "validFor": null, "value": p}))
        .collect();
    let extra_type_info = match (f.ty, f.name.as_str()) {
        (FieldType::Textarea, _) if f.length > 255 => Json::from("plaintextarea"),
        (FieldType::Url, _) => Json::Null,
        _ => Json::Null,
    };
    let mut m = Map::new();
    let mut put = |k: &str, v: Json| {
        m.insert(k.to_string(), v);
    };
    put("aggregatable", Json::Bool(f.sortable));
    put("aiPredictionField", Json::Bool(false));
    put("autoNumber", Json::Bool(f.auto_number));
    put("byteLength", Json::from(byte_length));
    put("calculated", Json::Bool(f.calculated()));
    put(
        "calculatedFormula",
        f.calculated_formula
            .clone()
            .map(Json::from)
            .unwrap_or(Json::Null),
    );
    put("cascadeDelete", Json::Bool(f.cascade_delete));
    put("caseSensitive", Json::Bool(false));
    put(
        "compoundFieldName",
        f.compound_field_name
            .clone()
            .map(Json::from)
            .unwrap_or(Json::Null),
    );
    put(
        "controllerName",
        f.controller_name
            .clone()
            .map(Json::from)
            .unwrap_or(Json::Null),
    );
    put("createable", Json::Bool(f.createable));
    put("custom", Json::Bool(f.custom));
    put("dataTranslationEnabled", Json::Null);
    put("defaultValue", Json::Null);
    put("defaultValueFormula", Json::Null);
    put("defaultedOnCreate", Json::Bool(f.defaulted_on_create));
    put("dependentPicklist", Json::Bool(f.controller_name.is_some()));
    put("deprecatedAndHidden", Json::Bool(false));
    put("digits", Json::from(f.digits));
    put("displayLocationInDecimal", Json::Bool(false));
    put("encrypted", Json::Bool(f.ty == FieldType::EncryptedString));
    put("externalId", Json::Bool(f.external_id));
    put("extraTypeInfo", extra_type_info);
    put("filterable", Json::Bool(f.filterable));
    put("filteredLookupInfo", Json::Null);
    put("formulaTreatNullNumberAsZero", Json::Bool(f.calculated()));
    put("groupable", Json::Bool(f.groupable));
    put("highScaleNumber", Json::Bool(false));
    put("htmlFormatted", Json::Bool(false));
    put("idLookup", Json::Bool(f.id_lookup));
    put("inlineHelpText", Json::Null);
    put("label", Json::from(f.label.clone()));
    put("length", Json::from(f.length));
    put("mask", Json::Null);
    put("maskType", Json::Null);
    put("name", Json::from(f.name.clone()));
    put("nameField", Json::Bool(f.name_field));
    put("namePointing", Json::Bool(f.reference_to.len() > 1));
    put("nillable", Json::Bool(f.nillable));
    put(
        "permissionable",
        Json::Bool(f.nillable && f.createable && f.custom),
    );
    put("picklistValues", Json::Array(picklist));
    put(
        "polymorphicForeignKey",
        Json::Bool(f.reference_to.len() > 1),
    );
    put("precision", Json::from(f.precision));
    put("queryByDistance", Json::Bool(false));
    put("referenceTargetField", Json::Null);
    put("referenceTo", Json::from(f.reference_to.clone()));
    put(
        "relationshipName",
        f.relationship_name
            .clone()
            .map(Json::from)
            .unwrap_or(Json::Null),
    );
    put("relationshipOrder", Json::Null);
    put("restrictedDelete", Json::Bool(false));
    put("restrictedPicklist", Json::Bool(f.restricted_picklist));
    put("scale", Json::from(f.scale));
    put("searchPrefilterable", Json::Bool(false));
    put("soapType", Json::from(f.soap_type()));
    put("sortable", Json::Bool(f.sortable));
    put("type", Json::from(f.ty.wire()));
    put("unique", Json::Bool(f.unique));
    put("updateable", Json::Bool(f.updateable));
    put("writeRequiresMasterRead", Json::Bool(false));
    Json::Object(m)
}

/// Full sObject describe (§2.3), without the fields gated by the §9.9 switch.
pub fn sobject(schema: &Schema, o: &ObjectDef, v: &str) -> Json {
    sobject_with(schema, o, v, false)
}

/// Full sObject describe (§2.3); `gated`: include the fields that exist only under the §9.9
/// switch `describe_json_masterrecord` (types `json` / `masterrecord`).
pub fn sobject_with(schema: &Schema, o: &ObjectDef, v: &str, gated: bool) -> Json {
    let mut m = match global_entry(o, v) {
        Json::Object(m) => m,
        _ => Map::new(),
    };
    let children: Vec<Json> = schema
        .objects
        .iter()
        .flat_map(|child| {
            child.fields.iter().filter_map(move |f| {
                if f.gated && !gated {
                    return None;
                }
                let rel = f.child_relationship.as_ref()?;
                f.reference_to.iter().any(|t| t == &o.name).then(|| {
                    json!({
                        "cascadeDelete": f.cascade_delete,
                        "childSObject": child.name,
                        "deprecatedAndHidden": false,
                        "field": f.name,
                        "junctionIdListNames": [],
                        "junctionReferenceTo": [],
                        "relationshipName": rel,
                        "restrictedDelete": false,
                    })
                })
            })
        })
        .collect();
    m.insert("actionOverrides".into(), json!([]));
    m.insert("childRelationships".into(), Json::Array(children));
    m.insert("compactLayoutable".into(), Json::Bool(o.layoutable));
    m.insert(
        "fields".into(),
        Json::Array(
            o.fields
                .iter()
                .filter(|f| gated || !f.gated)
                .map(field)
                .collect(),
        ),
    );
    m.insert("listviewable".into(), Json::Null);
    m.insert("lookupLayoutable".into(), Json::Null);
    m.insert("namedLayoutInfos".into(), json!([]));
    m.insert("networkScopeFieldName".into(), Json::Null);
    m.insert(
        "recordTypeInfos".into(),
        json!([{
            "active": true, "available": true, "defaultRecordTypeMapping": true,
            "developerName": "Master", "master": true, "name": "Master",
            "recordTypeId": "012000000000000AAA",
            "urls": {"layout": format!("/services/data/{v}/sobjects/{}/describe/layouts/012000000000000AAA", o.name)}
        }]),
    );
    m.insert("searchLayoutable".into(), Json::Bool(o.searchable));
    m.insert(
        "supportedScopes".into(),
        json!([{"label": "All", "name": "everything"}]),
    );
    Json::Object(m)
}
