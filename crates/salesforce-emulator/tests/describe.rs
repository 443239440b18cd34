//! Describe global and sObject describe shapes (§2.2–2.4).

use crate::util::*;
use serde_json::{Value, json};

#[tokio::test]
async fn describe_global_lists_objects_with_the_documented_keys() {
    let o = org(config(&[])).await;
    let (s, b) = o.get_json("/sobjects/").await;
    assert_eq!(s, 200);
    assert_eq!(b["encoding"], "UTF-8");
    assert_eq!(b["maxBatchSize"], 200);
    let objs = b["sobjects"].as_array().unwrap();
    let acc = objs.iter().find(|o| o["name"] == "Account").unwrap();
    for k in [
        "activateable",
        "createable",
        "custom",
        "customSetting",
        "deepCloneable",
        "deletable",
        "deprecatedAndHidden",
        "feedEnabled",
        "hasSubtypes",
        "idEnabled",
        "isInterface",
        "isSubtype",
        "keyPrefix",
        "label",
        "labelPlural",
        "layoutable",
        "mergeable",
        "mruEnabled",
        "name",
        "queryable",
        "replicateable",
        "retrieveable",
        "searchable",
        "triggerable",
        "undeletable",
        "updateable",
        "urls",
    ] {
        assert!(acc.get(k).is_some(), "missing {k}");
    }
    assert_eq!(acc["keyPrefix"], "001");
    assert_eq!(
        acc["urls"]["describe"],
        "/services/data/v62.0/sobjects/Account/describe"
    );
    let inv = objs.iter().find(|o| o["name"] == "Invoice__c").unwrap();
    assert_eq!(inv["custom"], true);
    for name in [
        "Contact",
        "Lead",
        "Opportunity",
        "Case",
        "User",
        "Task",
        "Event",
        "Attachment",
        "ContentDocument",
        "ActivePermSetLicenseMetric",
        "ActiveProfileMetric",
        "Invoice__History",
        "AccountHistory",
    ] {
        assert!(objs.iter().any(|o| o["name"] == name), "{name}");
    }
}

fn field<'a>(d: &'a Value, name: &str) -> &'a Value {
    d["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("{name}"))
}

#[tokio::test]
async fn sobject_describe_has_field_attributes_compounds_and_formulas() {
    let o = org(config(&[])).await;
    let (s, acc) = o.get_json("/sobjects/Account/describe").await;
    assert_eq!(s, 200);
    assert!(
        acc["childRelationships"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["childSObject"] == "Contact" && c["field"] == "AccountId")
    );
    let city = field(&acc, "BillingCity");
    assert_eq!(city["compoundFieldName"], "BillingAddress");
    let addr = field(&acc, "BillingAddress");
    assert_eq!(
        (addr["type"].as_str(), addr["soapType"].as_str()),
        (Some("address"), Some("tns:address"))
    );
    let rev = field(&acc, "AnnualRevenue");
    assert_eq!(rev["type"], "currency");
    assert_eq!(rev["soapType"], "xsd:double");
    let id = field(&acc, "Id");
    assert_eq!(
        (
            id["type"].as_str(),
            id["soapType"].as_str(),
            id["nillable"].as_bool()
        ),
        (Some("id"), Some("tns:ID"), Some(false))
    );
    let stamp = field(&acc, "SystemModstamp");
    assert_eq!(
        (stamp["type"].as_str(), stamp["createable"].as_bool()),
        (Some("datetime"), Some(false))
    );
    let ext = field(&acc, "External_Id__c");
    assert_eq!(
        (
            ext["externalId"].as_bool(),
            ext["idLookup"].as_bool(),
            ext["unique"].as_bool(),
            ext["custom"].as_bool()
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );

    let (_, inv) = o.get_json("/sobjects/Invoice__c/describe").await;
    let total = field(&inv, "Total__c");
    assert_eq!(total["calculated"], true);
    assert_eq!(total["type"], "currency", "formula type is the result type");
    assert_eq!(
        total["calculatedFormula"],
        "Amount__c * (1 + Tax_Rate__c / 100)"
    );
    let status = field(&inv, "Status__c");
    assert_eq!(status["restrictedPicklist"], true);
    assert_eq!(
        status["picklistValues"][0],
        json!({"active": true, "defaultValue": false, "label": "Draft", "validFor": null, "value": "Draft"})
    );
    assert_eq!(
        field(&inv, "Geo__Latitude__s")["compoundFieldName"],
        "Geo__c"
    );
    assert_eq!(field(&inv, "Account__c")["referenceTo"], json!(["Account"]));
    assert_eq!(field(&inv, "Account__c")["relationshipName"], "Account__r");
    let types: Vec<&str> = inv["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect();
    for t in [
        "id",
        "string",
        "picklist",
        "multipicklist",
        "combobox",
        "reference",
        "boolean",
        "currency",
        "textarea",
        "double",
        "percent",
        "phone",
        "date",
        "datetime",
        "time",
        "url",
        "email",
        "encryptedstring",
        "location",
    ] {
        assert!(types.contains(&t), "Invoice__c lacks a {t} field");
    }
    let (_, hist) = o.get_json("/sobjects/Invoice__History/describe").await;
    assert_eq!(
        field(&hist, "ParentId")["referenceTo"],
        json!(["Invoice__c"])
    );
    assert_eq!(field(&hist, "OldValue")["type"], "anyType");
    let (_, metric) = o.get_json("/sobjects/ActiveProfileMetric/describe").await;
    assert!(
        metric["fields"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["name"] != "SystemModstamp")
    );
    let (_, att) = o.get_json("/sobjects/Attachment/describe").await;
    assert_eq!(field(&att, "Body")["type"], "base64");
}

#[tokio::test]
async fn unknown_objects_are_404_not_found() {
    let o = org(config(&[])).await;
    let (s, b) = o.get_json("/sobjects/Nope__c/describe").await;
    assert_eq!(s, 404);
    assert_eq!(
        b,
        json!([{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}])
    );
    let (s, b) = o.get_json("/no/such/resource").await;
    assert_eq!((s, error_code(&b)), (404, "NOT_FOUND"));
}
