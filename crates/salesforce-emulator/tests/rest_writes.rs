//! REST sObject writes: `POST /sobjects/{name}` (201), `PATCH` and `DELETE /sobjects/{name}/{id}`
//! (204), errors as the §3.1 array, each call counted once.

use crate::util::*;
use reqwest::Method;
use serde_json::{Value, json};

async fn send(o: &Org, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = o.http.request(method, o.url(path)).bearer_auth(&o.token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let s = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        s,
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        },
    )
}

#[tokio::test]
async fn create_update_delete_round_trip() {
    let o = org(config(&[("Account", 10)])).await;
    let calls_before = o.calls().await["total"].as_u64().unwrap();

    let (s, b) = send(
        &o,
        Method::POST,
        "/sobjects/Account",
        Some(
            json!({"attributes": {"type": "Account"}, "Name": "Written Co", "Industry": "Energy"}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["success"], true);
    assert_eq!(b["errors"], json!([]));
    let id = b["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 18);
    assert!(id.starts_with("001"));

    let (s, rec) = o.get_json(&format!("/sobjects/Account/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(rec["Name"], "Written Co");
    assert_eq!(rec["Industry"], "Energy");
    let stamp = rec["SystemModstamp"].as_str().unwrap().to_string();

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, b) = send(
        &o,
        Method::PATCH,
        &format!("/sobjects/Account/{id}"),
        Some(json!({"Name": "Renamed Co", "Industry": null})),
    )
    .await;
    assert_eq!(s, 204, "{b}");
    assert!(b.is_null(), "204 has no body");
    let (_, rec) = o.get_json(&format!("/sobjects/Account/{id}")).await;
    assert_eq!(rec["Name"], "Renamed Co");
    assert!(rec["Industry"].is_null());
    assert!(rec["SystemModstamp"].as_str().unwrap() > stamp.as_str());

    let (s, _) = send(&o, Method::DELETE, &format!("/sobjects/Account/{id}"), None).await;
    assert_eq!(s, 204);
    let (_, q) = o
        .query(&format!("SELECT Id FROM Account WHERE Id = '{id}'"))
        .await;
    assert_eq!(q["totalSize"], 0);
    let (_, q) = o
        .query_with(
            &format!("SELECT Id, IsDeleted FROM Account WHERE Id = '{id}'"),
            "queryAll",
            None,
        )
        .await;
    assert_eq!(q["records"][0]["IsDeleted"], true);

    let (s, b) = send(&o, Method::DELETE, &format!("/sobjects/Account/{id}"), None).await;
    assert_eq!(s, 404);
    assert_eq!(error_code(&b), "ENTITY_IS_DELETED");

    // POST, GET, PATCH, GET, DELETE, query, queryAll, DELETE: eight calls.
    let calls = o.calls().await;
    assert_eq!(
        calls["total"].as_u64().unwrap() - calls_before,
        8,
        "{calls}"
    );
    assert_eq!(
        calls["by_endpoint"]["POST /services/data/{version}/sobjects/{object}"],
        1
    );
}

#[tokio::test]
async fn write_errors_follow_salesforce() {
    let o = org(config(&[("Account", 5)])).await;
    let (s, b) = send(
        &o,
        Method::POST,
        "/sobjects/Account",
        Some(json!({"Industry": "Energy"})),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(error_code(&b), "REQUIRED_FIELD_MISSING", "{b}");
    assert_eq!(b[0]["fields"], json!(["Name"]));

    let (s, b) = send(
        &o,
        Method::POST,
        "/sobjects/Account",
        Some(json!({"Name": "X", "Nope__c": 1})),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(error_code(&b), "INVALID_FIELD", "{b}");

    let (s, b) = send(
        &o,
        Method::POST,
        "/sobjects/Nope__c",
        Some(json!({"Name": "X"})),
    )
    .await;
    assert_eq!(s, 404, "{b}");
    assert_eq!(error_code(&b), "NOT_FOUND");

    let (s, b) = send(&o, Method::POST, "/sobjects/Account", Some(json!([1, 2]))).await;
    assert_eq!(s, 400);
    assert_eq!(error_code(&b), "JSON_PARSER_ERROR");

    let (s, b) = send(
        &o,
        Method::PATCH,
        "/sobjects/Account/001000000000999AAA",
        Some(json!({"Name": "Y"})),
    )
    .await;
    assert_eq!(s, 404, "{b}");
    assert_eq!(error_code(&b), "NOT_FOUND");

    let (s, b) = send(
        &o,
        Method::POST,
        "/sobjects/AccountHistory",
        Some(json!({"Field": "Name"})),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(error_code(&b), "INVALID_TYPE_FOR_OPERATION");
}
