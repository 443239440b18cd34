//! `/composite` (one call) and `/composite/batch` (one call per subrequest), §2.11.

use crate::util::*;
use serde_json::{Value, json};

#[tokio::test]
async fn composite_counts_once_and_resolves_references() {
    let o = org(config(&[("Account", 10)])).await;
    let mut subs: Vec<Value> = ["Account", "Contact", "Lead"]
        .iter()
        .map(|n| json!({"method": "GET", "url": format!("/services/data/v62.0/sobjects/{n}/describe"), "referenceId": format!("d{n}")}))
        .collect();
    subs.push(json!({"method": "GET", "url": "/services/data/v62.0/query?q=SELECT+Id+FROM+Account+ORDER+BY+Id+LIMIT+1", "referenceId": "q"}));
    subs.push(json!({"method": "GET", "url": "/services/data/v62.0/sobjects/Account/@{q.records[0].Id}?fields=Id,Name", "referenceId": "rec"}));
    subs.push(json!({"method": "GET", "url": "/services/data/v62.0/sobjects/Nope/describe", "referenceId": "bad"}));
    let r = o
        .http
        .post(o.url("/composite"))
        .bearer_auth(&o.token)
        .json(&json!({"allOrNone": false, "compositeRequest": subs}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["sforce-limit-info"], "api-usage=1/100000");
    let b: Value = r.json().await.unwrap();
    let resp = b["compositeResponse"].as_array().unwrap();
    assert_eq!(resp.len(), 6);
    assert_eq!(resp[0]["httpStatusCode"], 200);
    assert_eq!(resp[0]["referenceId"], "dAccount");
    assert_eq!(resp[0]["body"]["name"], "Account");
    assert!(resp[0]["httpHeaders"].is_object());
    assert_eq!(resp[4]["body"]["Id"], resp[3]["body"]["records"][0]["Id"]);
    assert_eq!(resp[5]["httpStatusCode"], 404);
    assert_eq!(resp[5]["body"][0]["errorCode"], "NOT_FOUND");
    let calls = o.calls().await;
    assert_eq!(calls["total"], 1);
    assert_eq!(
        calls["by_endpoint"]["POST /services/data/{version}/composite"],
        1
    );
}

#[tokio::test]
async fn composite_limits_are_enforced() {
    let o = org(config(&[])).await;
    let q = |i: usize| json!({"method": "GET", "url": "/services/data/v62.0/query?q=SELECT+Id+FROM+Account", "referenceId": format!("q{i}")});
    let six: Vec<Value> = (0..6).map(q).collect();
    let r = o
        .http
        .post(o.url("/composite"))
        .bearer_auth(&o.token)
        .json(&json!({"compositeRequest": six}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let many: Vec<Value> = (0..26).map(|i| json!({"method": "GET", "url": "/services/data/v62.0/limits", "referenceId": format!("l{i}")})).collect();
    let r = o
        .http
        .post(o.url("/composite"))
        .bearer_auth(&o.token)
        .json(&json!({"compositeRequest": many}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test]
async fn batch_counts_each_subrequest() {
    let o = org(config(&[])).await;
    let reqs = json!({"batchRequests": [
        {"method": "GET", "url": "v62.0/limits"},
        {"method": "GET", "url": "v62.0/sobjects/Account/describe"},
        {"method": "GET", "url": "v62.0/query?q=SELECT+Id+FROM+Contact+LIMIT+2"},
        {"method": "GET", "url": "v62.0/query?q=SELECT+Bogus+FROM+Contact"},
    ], "haltOnError": false});
    let r = o
        .http
        .post(o.url("/composite/batch"))
        .bearer_auth(&o.token)
        .json(&reqs)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["hasErrors"], true);
    let res = b["results"].as_array().unwrap();
    assert_eq!(res[0]["statusCode"], 200);
    assert_eq!(res[2]["result"]["totalSize"], 2);
    assert_eq!(res[3]["statusCode"], 400);
    assert_eq!(res[3]["result"][0]["errorCode"], "INVALID_FIELD");
    let calls = o.calls().await;
    assert_eq!(calls["total"], 4);
    assert_eq!(
        calls["by_endpoint"]["GET /services/data/{version}/query"],
        2
    );
    assert!(
        calls["by_endpoint"]
            .get("POST /services/data/{version}/composite/batch")
            .is_none()
    );
    let halted = json!({"batchRequests": [
        {"method": "GET", "url": "v62.0/sobjects/Nope/describe"},
        {"method": "GET", "url": "v62.0/limits"},
    ], "haltOnError": true});
    let b: Value = o
        .http
        .post(o.url("/composite/batch"))
        .bearer_auth(&o.token)
        .json(&halted)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b["results"][1]["statusCode"], 412);
    assert_eq!(
        b["results"][1]["result"][0]["errorCode"],
        "BATCH_PROCESSING_HALTED"
    );
}

/// Both composite resources refuse a body that is not JSON, a body without its subrequest list and
/// more than 25 subrequests (§2.11), with Salesforce's error codes.
#[tokio::test]
async fn composite_bodies_are_checked() {
    let o = org(config(&[("Account", 1)])).await;
    let sub = json!({"method": "GET", "url": "/services/data/v62.0/limits", "referenceId": "l"});
    for (path, key, label) in [
        ("/composite", "compositeRequest", "Composite"),
        ("/composite/batch", "batchRequests", "Batch"),
    ] {
        let post = |body: reqwest::Body| {
            o.http
                .post(o.url(path))
                .bearer_auth(&o.token)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
        };
        let r = post("{not json".into()).await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{path}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(error_code(&b), "JSON_PARSER_ERROR", "{path}");

        let r = post("{}".into()).await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{path}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(error_code(&b), "INVALID_INPUT", "{path}");
        assert_eq!(b[0]["message"], format!("{key} is required"), "{path}");

        let many = json!({ key: vec![sub.clone(); 26] });
        let r = post(many.to_string().into()).await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{path}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(
            b[0]["message"],
            format!("{label} request body has 26 subrequests. The maximum is 25."),
            "{path}"
        );
    }
}
