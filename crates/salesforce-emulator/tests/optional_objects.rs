//! Objects off by default (`ContentDocumentLink`, `Wide__c`) and the §9.9 switch adding fields of
//! type `json` / `masterrecord`.

use crate::util::*;
use reqwest::Method;
use salesforce_emulator::ids;
use serde_json::{Value, json};

fn names(global: &Value) -> Vec<String> {
    global["sobjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect()
}

fn field<'a>(describe: &'a Value, name: &str) -> Option<&'a Value> {
    describe["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
}

#[tokio::test]
async fn optional_objects_are_absent_by_default() {
    let o = org(config(&[])).await;
    let (_, g) = o.get_json("/sobjects").await;
    let n = names(&g);
    assert!(!n.contains(&"ContentDocumentLink".to_string()));
    assert!(!n.contains(&"Wide__c".to_string()));
    let (s, b) = o
        .query("SELECT Id FROM ContentDocumentLink WHERE LinkedEntityId = 'x'")
        .await;
    assert_eq!((s, error_code(&b)), (400, "INVALID_TYPE"));
}

#[tokio::test]
async fn content_document_link_needs_an_id_filter() {
    let mut c = config(&[("ContentDocument", 20), ("ContentDocumentLink", 60)]);
    c.content_document_link = true;
    let o = org(c).await;
    let (_, g) = o.get_json("/sobjects").await;
    assert!(names(&g).contains(&"ContentDocumentLink".to_string()));
    let (s, d) = o.get_json("/sobjects/ContentDocumentLink/describe").await;
    assert_eq!(s, 200);
    let linked = field(&d, "LinkedEntityId").unwrap();
    assert_eq!(linked["polymorphicForeignKey"], true);
    assert_eq!(linked["relationshipName"], "LinkedEntity");
    assert!(field(&d, "SystemModstamp").is_some());
    assert!(field(&d, "CreatedDate").is_none());

    let restriction = "Implementation restriction: ContentDocumentLink requires a filter by a single Id on ContentDocumentId or LinkedEntityId using the equals operator or multiple Id's using the IN operator.";
    let doc = ids::make("069", 3);
    for soql in [
        "SELECT Id FROM ContentDocumentLink".to_string(),
        "SELECT Id FROM ContentDocumentLink WHERE ShareType = 'V'".to_string(),
        format!("SELECT Id FROM ContentDocumentLink WHERE ContentDocumentId != '{doc}'"),
        format!("SELECT Id FROM ContentDocumentLink WHERE ContentDocumentId NOT IN ('{doc}')"),
        format!(
            "SELECT Id FROM ContentDocumentLink WHERE ContentDocumentId = '{doc}' OR ShareType = 'V'"
        ),
    ] {
        for resource in ["query", "queryAll"] {
            let (s, b) = o.query_with(&soql, resource, None).await;
            assert_eq!(s, 400, "{soql}: {b}");
            assert_eq!(error_code(&b), "MALFORMED_QUERY", "{soql}");
            assert_eq!(b[0]["message"], restriction, "{soql}");
        }
    }
    // Bulk 2.0 query jobs are refused the same way.
    let r = o
        .http
        .post(o.url("/jobs/query"))
        .bearer_auth(&o.token)
        .json(&json!({"operation": "query", "query": "SELECT Id FROM ContentDocumentLink"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let b: Value = r.json().await.unwrap();
    assert_eq!(error_code(&b), "MALFORMED_QUERY");

    // Every link belongs to one of the 20 documents: an IN over all of them returns every link.
    let all_docs: Vec<String> = (0..20)
        .map(|i| format!("'{}'", ids::make("069", i)))
        .collect();
    let links = o
        .query_all_pages(
            &format!(
                "SELECT Id, ContentDocumentId, LinkedEntityId FROM ContentDocumentLink WHERE ContentDocumentId IN ({})",
                all_docs.join(",")
            ),
            "query",
        )
        .await;
    assert_eq!(links.len(), 60);
    let of_doc = links
        .iter()
        .filter(|l| l["ContentDocumentId"] == doc.as_str())
        .count();
    let (s, b) = o
        .query(&format!(
            "SELECT Id FROM ContentDocumentLink WHERE ContentDocumentId = '{doc}' AND ShareType != null"
        ))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["totalSize"], of_doc as u64);
    let entity = links[0]["LinkedEntityId"].as_str().unwrap();
    let (s, b) = o
        .query(&format!(
            "SELECT Id FROM ContentDocumentLink WHERE LinkedEntityId = '{entity}'"
        ))
        .await;
    assert_eq!(s, 200, "{b}");
    let expected = links
        .iter()
        .filter(|l| l["LinkedEntityId"] == entity)
        .count();
    assert_eq!(b["totalSize"], expected as u64);
}

#[tokio::test]
async fn wide_object_select_of_every_field_exceeds_the_uri_limit() {
    let mut c = config(&[("Wide__c", 5)]);
    c.wide_object_fields = 800;
    let o = org(c).await;
    let (s, d) = o.get_json("/sobjects/Wide__c/describe").await;
    assert_eq!(s, 200);
    let fields: Vec<String> = d["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    assert!(fields.len() > 800, "{}", fields.len());
    assert!(fields.contains(&"Wide_Text_Field_0800__c".to_string()));

    let all = format!("SELECT {} FROM Wide__c", fields.join(","));
    let r = o
        .http
        .get(o.url("/query"))
        .query(&[("q", all.as_str())])
        .bearer_auth(&o.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 414);

    // Half the fields fit; the rows carry every selected field.
    let half = &fields[..fields.len() / 2];
    let (s, b) = o
        .query(&format!("SELECT {} FROM Wide__c", half.join(",")))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["totalSize"], 5);
    let rec = b["records"][0].as_object().unwrap();
    assert_eq!(rec.len(), half.len() + 1, "fields plus attributes");
}

#[tokio::test]
async fn json_and_masterrecord_types_exist_only_under_the_switch() {
    let o = org(config(&[])).await;
    let (_, acc) = o.get_json("/sobjects/Account/describe").await;
    let (_, inv) = o.get_json("/sobjects/Invoice__c/describe").await;
    assert!(field(&acc, "MasterRecordId").is_none());
    assert!(field(&inv, "Payload__c").is_none());
    let (s, b) = o.query("SELECT Id, Payload__c FROM Invoice__c").await;
    assert_eq!((s, error_code(&b)), (400, "INVALID_FIELD"));
    let (s, b) = o.query("SELECT MasterRecord.Name FROM Account").await;
    assert_eq!((s, error_code(&b)), (400, "INVALID_FIELD"));

    o.admin(
        Method::PUT,
        "/switches",
        json!({"describe_json_masterrecord": true}),
    )
    .await;
    let (_, acc) = o.get_json("/sobjects/Account/describe").await;
    let (_, inv) = o.get_json("/sobjects/Invoice__c/describe").await;
    let master = field(&acc, "MasterRecordId").unwrap();
    assert_eq!(master["type"], "masterrecord");
    assert_eq!(master["soapType"], "tns:ID");
    assert_eq!(master["referenceTo"], json!(["Account"]));
    assert_eq!(master["relationshipName"], "MasterRecord");
    let payload = field(&inv, "Payload__c").unwrap();
    assert_eq!(payload["type"], "json");
    assert_eq!(payload["soapType"], "tns:json");

    let rows = o
        .query_all_pages("SELECT Id, Payload__c FROM Invoice__c", "query")
        .await;
    assert_eq!(rows.len(), 20);
    let mut parsed = 0;
    for r in &rows {
        if let Some(text) = r["Payload__c"].as_str() {
            let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(v["n"].is_u64(), "{v}");
            parsed += 1;
        }
    }
    assert!(parsed > 0);
    let (s, b) = o
        .query("SELECT Id, MasterRecordId, MasterRecord.Name FROM Account")
        .await;
    assert_eq!(s, 200, "{b}");
}
