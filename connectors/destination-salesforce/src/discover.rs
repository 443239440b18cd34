//! `discover`: the DESTINATION_CATALOG of data activation — per object, the operations it allows
//! and the JSON schema of the fields each operation can set.
//!
//! | sync_mode      | Salesforce            | offered when              | fields                          | matching keys                |
//! |----------------|-----------------------|---------------------------|---------------------------------|------------------------------|
//! | `append`       | insert                | object createable         | createable                      | none                         |
//! | `append_dedup` | upsert                | createable and updateable | createable ∧ updateable + keys  | each external-id field, `Id` |
//! | `update`       | update                | updateable                | updateable + `Id`               | `Id`                         |
//! | `soft_delete`  | delete                | deletable                 | `Id`                            | `Id`                         |
//!
//! Schemas carry what pre-validation checks: types (nullable when the field is nillable), `required`
//! fields of an insert (not nillable, not defaulted, not a checkbox), `maxLength` of text, and
//! the `enum` of restricted picklists. Base64 fields are left out (Bulk API 2.0 CSV cannot carry
//! them). Objects are listed by one describe-global call and described 25 per `/composite` call
//! (one API call each); an object that cannot be described is skipped with a warning.

use std::collections::HashMap;

use airbyte_protocol::{DestinationCatalog, DestinationOperation, DestinationSyncMode, JsonObject};
use salesforce_client::Client;
use salesforce_client::rest::{FieldDescribe, SObjectDescribe};
use serde_json::{Map, Value, json};

use crate::encode::{FieldInfo, Kind};

/// The JSON schema of one field.
pub fn field_schema(f: &FieldDescribe) -> Value {
    let info = FieldInfo::from_describe(f);
    let mut s = Map::new();
    let base = match info.kind {
        Kind::Boolean => "boolean",
        Kind::Int | Kind::Long => "integer",
        Kind::Decimal => "number",
        _ => "string",
    };
    s.insert(
        "type".into(),
        if f.nillable {
            json!(["null", base])
        } else {
            json!(base)
        },
    );
    match info.kind {
        Kind::Date => {
            s.insert("format".into(), json!("date"));
        }
        Kind::DateTime => {
            s.insert("format".into(), json!("date-time"));
            s.insert("airbyte_type".into(), json!("timestamp_with_timezone"));
        }
        Kind::Time => {
            s.insert("format".into(), json!("time"));
            s.insert("airbyte_type".into(), json!("time_with_timezone"));
        }
        Kind::Picklist if info.restricted_picklist => {
            let mut values: Vec<Value> = f
                .picklist_values
                .iter()
                .filter(|p| p.active)
                .map(|p| json!(p.value))
                .collect();
            if f.nillable {
                values.push(Value::Null);
            }
            s.insert("enum".into(), Value::Array(values));
        }
        Kind::Text | Kind::Email | Kind::Picklist | Kind::MultiPicklist | Kind::Id
            if f.length > 0 =>
        {
            s.insert("maxLength".into(), json!(f.length));
        }
        _ => {}
    }
    if !f.label.is_empty() {
        s.insert("title".into(), json!(f.label));
    }
    Value::Object(s)
}

/// External-id fields per object: what a relationship column `Rel.ExtField` can point at.
pub type ParentKeys = HashMap<String, Vec<String>>;

fn schema(fields: &[&FieldDescribe], required: Vec<String>, parents: &ParentKeys) -> Value {
    let mut properties: Map<String, Value> = fields
        .iter()
        .map(|f| (f.name.clone(), field_schema(f)))
        .collect();
    // A lookup can also be set through the parent's external id (`Account.Ext_Id__c`), so the
    // source does not need Salesforce ids. Polymorphic lookups are left out (their column syntax
    // is not documented).
    for f in fields {
        let (Some(rel), [target]) = (f.relationship_name.as_deref(), f.reference_to.as_slice())
        else {
            continue;
        };
        for key in parents.get(target).into_iter().flatten() {
            properties.insert(
                format!("{rel}.{key}"),
                json!({
                    "type": ["null", "string"],
                    "description": format!("Sets {} to the {target} whose {key} is this value", f.name),
                }),
            );
        }
    }
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": properties,
        "required": required,
    })
}

fn operation(
    object: &str,
    sync_mode: DestinationSyncMode,
    json_schema: Value,
    keys: Option<Vec<Vec<String>>>,
) -> DestinationOperation {
    DestinationOperation {
        object_name: object.to_owned(),
        sync_mode,
        json_schema,
        matching_keys: keys,
        extra: JsonObject::new(),
    }
}

/// The operations one described object allows.
pub fn operations_for(d: &SObjectDescribe, parents: &ParentKeys) -> Vec<DestinationOperation> {
    let usable: Vec<&FieldDescribe> = d
        .fields
        .iter()
        .filter(|f| Kind::of(&f.field_type) != Kind::Base64)
        .collect();
    let id = d.fields.iter().find(|f| f.name == "Id");
    let required = |fields: &[&FieldDescribe], skip: &[&str]| -> Vec<String> {
        fields
            .iter()
            .filter(|f| FieldInfo::from_describe(f).required_on_insert())
            .map(|f| f.name.clone())
            .filter(|n| !skip.contains(&n.as_str()))
            .collect()
    };
    let mut ops = Vec::new();
    if d.createable {
        let fields: Vec<&FieldDescribe> = usable.iter().copied().filter(|f| f.createable).collect();
        if !fields.is_empty() {
            let req = required(&fields, &[]);
            ops.push(operation(
                &d.name,
                DestinationSyncMode::Append,
                schema(&fields, req, parents),
                None,
            ));
        }
    }
    if d.createable && d.updateable {
        let ext: Vec<&FieldDescribe> = usable.iter().copied().filter(|f| f.external_id).collect();
        let mut fields: Vec<&FieldDescribe> = usable
            .iter()
            .copied()
            .filter(|f| (f.createable && f.updateable) || f.external_id || f.name == "Id")
            .collect();
        if id.is_none() {
            fields.retain(|f| f.name != "Id");
        }
        let mut keys: Vec<Vec<String>> = ext.iter().map(|f| vec![f.name.clone()]).collect();
        if id.is_some() {
            keys.push(vec!["Id".to_owned()]);
        }
        if !keys.is_empty() && !fields.is_empty() {
            let key_names: Vec<&str> = keys.iter().map(|k| k[0].as_str()).collect();
            let req = required(&fields, &key_names);
            ops.push(operation(
                &d.name,
                DestinationSyncMode::AppendDedup,
                schema(&fields, req, parents),
                Some(keys),
            ));
        }
    }
    if let Some(id) = id {
        if d.updateable {
            let mut fields: Vec<&FieldDescribe> = vec![id];
            fields.extend(
                usable
                    .iter()
                    .copied()
                    .filter(|f| f.updateable && f.name != "Id"),
            );
            if fields.len() > 1 {
                ops.push(operation(
                    &d.name,
                    DestinationSyncMode::Update,
                    schema(&fields, vec!["Id".to_owned()], parents),
                    Some(vec![vec!["Id".to_owned()]]),
                ));
            }
        }
        if d.deletable {
            ops.push(operation(
                &d.name,
                DestinationSyncMode::SoftDelete,
                schema(&[id], vec!["Id".to_owned()], &ParentKeys::new()),
                Some(vec![vec!["Id".to_owned()]]),
            ));
        }
    }
    ops
}

/// Lists and describes every writable object.
pub async fn discover(client: &Client) -> Result<DestinationCatalog, salesforce_client::Error> {
    let global = client.describe_global().await?;
    let names: Vec<&str> = global
        .sobjects
        .iter()
        .filter(|o| o.createable || o.updateable || o.deletable)
        .map(|o| o.name.as_str())
        .collect();
    tracing::info!(
        objects = names.len(),
        "describing writable objects, 25 per composite call"
    );
    let described = client.describe_many(&names).await?;
    let mut objects = Vec::new();
    for (name, d) in names.iter().zip(described) {
        match d {
            Ok(d) => objects.push(d),
            Err(e) => tracing::warn!(object = name, "skipped: cannot be described: {e}"),
        }
    }
    let parents: ParentKeys = objects
        .iter()
        .map(|d| {
            let keys = d
                .fields
                .iter()
                .filter(|f| f.external_id)
                .map(|f| f.name.clone());
            (d.name.clone(), keys.collect::<Vec<_>>())
        })
        .filter(|(_, keys)| !keys.is_empty())
        .collect();
    let operations = objects
        .iter()
        .flat_map(|d| operations_for(d, &parents))
        .collect();
    Ok(DestinationCatalog {
        operations,
        extra: JsonObject::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(v: Value) -> SObjectDescribe {
        serde_json::from_value(v).unwrap()
    }

    fn contact() -> SObjectDescribe {
        describe(json!({
            "name": "Contact", "createable": true, "updateable": true, "deletable": true,
            "fields": [
                {"name": "Id", "type": "id", "nillable": false, "createable": false, "updateable": false,
                 "defaultedOnCreate": true, "length": 18, "label": "Contact ID"},
                {"name": "LastName", "type": "string", "nillable": false, "createable": true,
                 "updateable": true, "length": 80, "label": "Last Name"},
                {"name": "Ext_Id__c", "type": "string", "nillable": true, "createable": true,
                 "updateable": true, "externalId": true, "length": 20},
                {"name": "Level__c", "type": "picklist", "nillable": true, "createable": true,
                 "updateable": true, "restrictedPicklist": true, "length": 255,
                 "picklistValues": [{"value": "Primary", "active": true}, {"value": "Old", "active": false}]},
                {"name": "Birthdate", "type": "date", "nillable": true, "createable": true, "updateable": true},
                {"name": "LastModifiedDate", "type": "datetime", "nillable": false, "createable": false,
                 "updateable": false, "defaultedOnCreate": true},
                {"name": "Amount__c", "type": "currency", "nillable": true, "createable": true, "updateable": true},
                {"name": "Count__c", "type": "int", "nillable": true, "createable": true, "updateable": false},
                {"name": "DoNotCall", "type": "boolean", "nillable": false, "createable": true,
                 "updateable": true, "defaultedOnCreate": true},
                {"name": "Photo__c", "type": "base64", "nillable": true, "createable": true, "updateable": true}
            ]
        }))
    }

    fn by_mode(ops: &[DestinationOperation], mode: DestinationSyncMode) -> &DestinationOperation {
        ops.iter().find(|o| o.sync_mode == mode).unwrap()
    }

    fn props(op: &DestinationOperation) -> Vec<&str> {
        op.json_schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn every_operation_with_its_fields_and_keys() {
        let ops = operations_for(&contact(), &ParentKeys::new());
        assert_eq!(ops.len(), 4);
        let insert = by_mode(&ops, DestinationSyncMode::Append);
        assert_eq!(
            props(insert),
            [
                "LastName",
                "Ext_Id__c",
                "Level__c",
                "Birthdate",
                "Amount__c",
                "Count__c",
                "DoNotCall"
            ]
        );
        assert_eq!(insert.json_schema["required"], json!(["LastName"]));
        assert_eq!(insert.json_schema["additionalProperties"], false);
        assert_eq!(insert.matching_keys, None);
        let upsert = by_mode(&ops, DestinationSyncMode::AppendDedup);
        assert_eq!(
            upsert.matching_keys,
            Some(vec![vec!["Ext_Id__c".to_owned()], vec!["Id".to_owned()]])
        );
        assert_eq!(
            props(upsert),
            [
                "Id",
                "LastName",
                "Ext_Id__c",
                "Level__c",
                "Birthdate",
                "Amount__c",
                "DoNotCall"
            ]
        );
        let update = by_mode(&ops, DestinationSyncMode::Update);
        assert_eq!(update.json_schema["required"], json!(["Id"]));
        assert!(!props(update).contains(&"Count__c"), "not updateable");
        let delete = by_mode(&ops, DestinationSyncMode::SoftDelete);
        assert_eq!(props(delete), ["Id"]);
    }

    #[test]
    fn field_types_lengths_and_picklists() {
        let d = contact();
        let f = |name: &str| field_schema(d.fields.iter().find(|f| f.name == name).unwrap());
        assert_eq!(
            f("LastName"),
            json!({"type": "string", "maxLength": 80, "title": "Last Name"})
        );
        assert_eq!(
            f("Level__c"),
            json!({"type": ["null", "string"], "enum": ["Primary", null]})
        );
        assert_eq!(
            f("Birthdate"),
            json!({"type": ["null", "string"], "format": "date"})
        );
        assert_eq!(
            f("LastModifiedDate"),
            json!({"type": "string", "format": "date-time", "airbyte_type": "timestamp_with_timezone"})
        );
        assert_eq!(f("Amount__c"), json!({"type": ["null", "number"]}));
        assert_eq!(f("Count__c"), json!({"type": ["null", "integer"]}));
        assert_eq!(f("DoNotCall"), json!({"type": "boolean"}));
    }

    #[test]
    fn read_only_objects_offer_nothing() {
        let d = describe(
            json!({"name": "AuditLog", "createable": false, "updateable": false,
            "deletable": false, "fields": [{"name": "Id", "type": "id"}]}),
        );
        assert!(operations_for(&d, &ParentKeys::new()).is_empty());
        let d = describe(
            json!({"name": "Tag", "createable": true, "updateable": true, "deletable": true,
            "fields": [{"name": "Id", "type": "id"}, {"name": "Name", "type": "string", "createable": true,
            "updateable": false}]}),
        );
        let ops = operations_for(&d, &ParentKeys::new());
        let modes: Vec<_> = ops.iter().map(|o| o.sync_mode).collect();
        assert_eq!(
            modes,
            [
                DestinationSyncMode::Append,
                DestinationSyncMode::AppendDedup,
                DestinationSyncMode::SoftDelete
            ],
            "update needs an updateable field"
        );
    }

    #[test]
    fn lookups_can_be_set_through_the_parents_external_id() {
        let mut d = contact();
        d.fields.push(
            serde_json::from_value(
                json!({"name": "AccountId", "type": "reference", "nillable": true,
                "createable": true, "updateable": true, "relationshipName": "Account",
                "referenceTo": ["Account"]}),
            )
            .unwrap(),
        );
        d.fields.push(
            serde_json::from_value(
                json!({"name": "WhoId", "type": "reference", "nillable": true,
                "createable": true, "updateable": true, "relationshipName": "Who",
                "referenceTo": ["Contact", "Lead"]}),
            )
            .unwrap(),
        );
        let parents: ParentKeys =
            [("Account".to_owned(), vec!["External_Id__c".to_owned()])].into();
        let ops = operations_for(&d, &parents);
        for mode in [
            DestinationSyncMode::Append,
            DestinationSyncMode::AppendDedup,
            DestinationSyncMode::Update,
        ] {
            let p = props(by_mode(&ops, mode));
            assert!(p.contains(&"Account.External_Id__c"), "{mode:?}: {p:?}");
            assert!(
                !p.iter().any(|k| k.starts_with("Who.")),
                "polymorphic left out"
            );
        }
        assert_eq!(
            props(by_mode(&ops, DestinationSyncMode::SoftDelete)),
            ["Id"]
        );
    }
}
