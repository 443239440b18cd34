//! SOQL over REST: operators, ordering, paging, errors, queryAll/IsDeleted, formulas (§2.5–2.8, §4).

use crate::util::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;

const FIELDS: &str =
    "Id, Name, Industry, AnnualRevenue, NumberOfEmployees, CreatedDate, SystemModstamp, IsDeleted";

async fn ids(o: &Org, soql: &str) -> Vec<String> {
    o.query_all_pages(soql, "query")
        .await
        .iter()
        .map(|r| r["Id"].as_str().unwrap().to_string())
        .collect()
}

fn set(v: Vec<String>) -> BTreeSet<String> {
    v.into_iter().collect()
}

#[tokio::test]
async fn records_have_attributes_and_documented_value_formats() {
    let o = org(config(&[("Account", 50)])).await;
    let (s, b) = o.query("SELECT Id, Name, AnnualRevenue, NumberOfEmployees, SystemModstamp, BillingAddress, IsDeleted, LastActivityDate FROM Account LIMIT 5").await;
    assert_eq!(s, 200);
    assert_eq!(
        (b["totalSize"].as_u64(), b["done"].as_bool()),
        (Some(5), Some(true))
    );
    assert!(b.get("nextRecordsUrl").is_none());
    let r = &b["records"][0];
    let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
    assert_eq!(keys[0], "attributes");
    let id = r["Id"].as_str().unwrap();
    assert_eq!(id.len(), 18);
    assert!(id.starts_with("001"));
    assert_eq!(
        r["attributes"],
        json!({"type": "Account", "url": format!("/services/data/v62.0/sobjects/Account/{id}")})
    );
    let stamp = r["SystemModstamp"].as_str().unwrap();
    assert!(stamp.ends_with(".000+0000") && stamp.len() == 28, "{stamp}");
    assert_eq!(r["IsDeleted"], false);
    for rec in b["records"].as_array().unwrap() {
        assert!(rec["AnnualRevenue"].is_null() || rec["AnnualRevenue"].is_f64());
        assert!(rec["NumberOfEmployees"].is_null() || rec["NumberOfEmployees"].is_u64());
        if let Some(d) = rec["LastActivityDate"].as_str() {
            assert_eq!(d.len(), 10);
        }
        if !rec["BillingAddress"].is_null() {
            let k: Vec<&String> = rec["BillingAddress"].as_object().unwrap().keys().collect();
            assert_eq!(
                k,
                [
                    "city",
                    "country",
                    "geocodeAccuracy",
                    "latitude",
                    "longitude",
                    "postalCode",
                    "state",
                    "street"
                ]
            );
        }
    }
    let (_, b) = o.query("SELECT COUNT() FROM Account").await;
    assert_eq!(b["records"], json!([]));
    let live = b["totalSize"].as_u64().unwrap();
    let (_, b) = o
        .query_with("SELECT COUNT() FROM Account", "queryAll", None)
        .await;
    assert!(b["totalSize"].as_u64().unwrap() >= live);
}

#[tokio::test]
async fn each_operator_matches_a_client_side_filter() {
    let o = org(config(&[("Account", 400)])).await;
    let all = o
        .query_all_pages(&format!("SELECT {FIELDS} FROM Account"), "query")
        .await;
    assert!(all.len() > 350);
    let pick = |f: &dyn Fn(&Value) -> bool| -> BTreeSet<String> {
        all.iter()
            .filter(|r| f(r))
            .map(|r| r["Id"].as_str().unwrap().to_string())
            .collect()
    };
    let rev = |r: &Value| r["AnnualRevenue"].as_f64();
    let ind = |r: &Value| r["Industry"].as_str().map(str::to_string);
    let stamp = |r: &Value| r["SystemModstamp"].as_str().unwrap().to_string();
    let mid = stamp(&all[all.len() / 2]);
    let mid_lit = format!("{}Z", &mid[..19]);
    let cases: Vec<(String, BTreeSet<String>)> = vec![
        (
            "Industry = 'Banking'".into(),
            pick(&|r| ind(r).as_deref() == Some("Banking")),
        ),
        (
            "Industry = 'BANKING'".into(),
            pick(&|r| ind(r).as_deref() == Some("Banking")),
        ),
        (
            "Industry != 'Banking'".into(),
            pick(&|r| ind(r).as_deref() != Some("Banking")),
        ),
        ("Industry = null".into(), pick(&|r| ind(r).is_none())),
        ("Industry != null".into(), pick(&|r| ind(r).is_some())),
        (
            "AnnualRevenue > 100000000".into(),
            pick(&|r| rev(r).is_some_and(|v| v > 1e8)),
        ),
        (
            "AnnualRevenue <= 100000000.5".into(),
            pick(&|r| rev(r).is_some_and(|v| v <= 100000000.5)),
        ),
        (
            "NumberOfEmployees < 50000".into(),
            pick(&|r| r["NumberOfEmployees"].as_i64().is_some_and(|v| v < 50000)),
        ),
        (
            "Industry IN ('Banking', 'Retail')".into(),
            pick(&|r| matches!(ind(r).as_deref(), Some("Banking" | "Retail"))),
        ),
        (
            "Industry NOT IN ('Banking', 'Retail')".into(),
            pick(&|r| !matches!(ind(r).as_deref(), Some("Banking" | "Retail"))),
        ),
        (
            "Name LIKE 'acme%'".into(),
            pick(&|r| {
                r["Name"]
                    .as_str()
                    .unwrap()
                    .to_lowercase()
                    .starts_with("acme")
            }),
        ),
        (
            format!("SystemModstamp >= {mid_lit}"),
            pick(&|r| stamp(r) >= mid),
        ),
        (
            format!("SystemModstamp < {}", mid_lit.replace('Z', ".000+00:00")),
            pick(&|r| stamp(r) < mid),
        ),
        (
            format!("SystemModstamp > {}", mid_lit.replace('Z', "-01:00")),
            pick(&|r| stamp(r) > mid),
        ), // one hour later
        (
            "(Industry = 'Banking' OR Industry = 'Retail') AND NOT AnnualRevenue = null".into(),
            pick(&|r| matches!(ind(r).as_deref(), Some("Banking" | "Retail")) && rev(r).is_some()),
        ),
        ("CreatedDate = LAST_N_DAYS:36500".into(), pick(&|_| true)),
    ];
    for (filter, expected) in cases {
        let got = set(ids(&o, &format!("SELECT Id FROM Account WHERE {filter}")).await);
        if filter.contains("-01:00") {
            // `> mid - (-1h)` = strictly after mid + 1h: a subset of "after mid".
            assert!(got.is_subset(&expected), "{filter}");
            continue;
        }
        assert_eq!(got, expected, "{filter}");
    }
}

#[tokio::test]
async fn ordering_nulls_and_multi_key_sorts() {
    let o = org(config(&[("Account", 120)])).await;
    let recs = o.query_all_pages("SELECT Id, Industry, AnnualRevenue FROM Account ORDER BY Industry DESC NULLS LAST, Id ASC", "query").await;
    let keys: Vec<(Option<String>, String)> = recs
        .iter()
        .map(|r| {
            (
                r["Industry"].as_str().map(str::to_string),
                r["Id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut expected = keys.clone();
    expected.sort_by(|a, b| match (&a.0, &b.0) {
        (None, None) => a.1.cmp(&b.1),
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (Some(x), Some(y)) => y.cmp(x).then(a.1.cmp(&b.1)),
    });
    assert_eq!(keys, expected);
    let recs = o
        .query_all_pages(
            "SELECT Id, AnnualRevenue FROM Account ORDER BY AnnualRevenue",
            "query",
        )
        .await;
    let first_non_null = recs
        .iter()
        .position(|r| !r["AnnualRevenue"].is_null())
        .unwrap();
    assert!(
        recs[..first_non_null]
            .iter()
            .all(|r| r["AnnualRevenue"].is_null()),
        "nulls first by default"
    );
    let vals: Vec<f64> = recs[first_non_null..]
        .iter()
        .map(|r| r["AnnualRevenue"].as_f64().unwrap())
        .collect();
    assert!(vals.windows(2).all(|w| w[0] <= w[1]));
    let stamps: Vec<String> = o
        .query_all_pages(
            "SELECT Id, SystemModstamp FROM Account ORDER BY SystemModstamp ASC",
            "query",
        )
        .await
        .iter()
        .map(|r| r["SystemModstamp"].as_str().unwrap().to_string())
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]));
    assert!(
        stamps.windows(2).any(|w| w[0] == w[1]),
        "tie clusters exist"
    );
}

#[tokio::test]
async fn paging_follows_next_records_url_with_batch_size() {
    let o = org(config(&[("Contact", 1000)])).await;
    let (s, p1) = o
        .query_with("SELECT Id FROM Contact ORDER BY Id", "queryAll", Some(250))
        .await;
    assert_eq!(s, 200);
    assert_eq!(p1["totalSize"], 1000);
    assert_eq!(p1["done"], false);
    assert_eq!(p1["records"].as_array().unwrap().len(), 250);
    let next = p1["nextRecordsUrl"].as_str().unwrap();
    assert!(
        next.starts_with("/services/data/v62.0/query/01g") && next.ends_with("-250"),
        "{next}"
    );
    let (_, small) = o
        .query_with("SELECT Id FROM Contact", "query", Some(10))
        .await;
    assert_eq!(
        small["records"].as_array().unwrap().len(),
        200,
        "batchSize is at least 200"
    );
    let all = o
        .query_all_pages("SELECT Id FROM Contact ORDER BY Id", "queryAll")
        .await;
    assert_eq!(all.len(), 1000);
    let uniq: BTreeSet<&str> = all.iter().map(|r| r["Id"].as_str().unwrap()).collect();
    assert_eq!(uniq.len(), 1000);
    let limited = o
        .query_all_pages("SELECT Id FROM Contact ORDER BY Id LIMIT 2100", "queryAll")
        .await;
    assert_eq!(limited.len(), 1000);
    let (s, b) = o.get_json("/query/01gBOGUS-2000").await;
    assert_eq!((s, error_code(&b)), (400, "INVALID_QUERY_LOCATOR"));
}

#[tokio::test]
async fn soql_errors_are_shaped_like_salesforce() {
    let o = org(config(&[])).await;
    let (s, b) = o.query("SELECT Nope__c FROM Account").await;
    assert_eq!(s, 400);
    assert_eq!(error_code(&b), "INVALID_FIELD");
    assert!(b[0]["message"].as_str().unwrap().starts_with("\nSELECT Nope__c FROM Account\n       ^\nERROR at Row:1:Column:8\nNo such column 'Nope__c' on entity 'Account'."));
    let (s, b) = o.query("SELECT Id FROM Nope").await;
    assert_eq!((s, error_code(&b)), (400, "INVALID_TYPE"));
    assert!(
        b[0]["message"]
            .as_str()
            .unwrap()
            .contains("sObject type 'Nope' is not supported.")
    );
    let (s, b) = o.query("SELECT Id FROM Account WHERE Name = ").await;
    assert_eq!((s, error_code(&b)), (400, "MALFORMED_QUERY"));
    let (s, b) = o
        .query("SELECT Id FROM Account WHERE CreatedDate > 2024-01-01")
        .await;
    assert_eq!((s, error_code(&b)), (400, "INVALID_FIELD"));
    // A raw '+' in the query string decodes to a space (§2.5 pitfall).
    let url = format!(
        "{}?q=SELECT+Id+FROM+Account+WHERE+SystemModstamp+>+2024-01-01T00:00:00+00:00",
        o.url("/query")
    );
    let r = o.http.get(url).bearer_auth(&o.token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let b: Value = r.json().await.unwrap();
    assert_eq!(error_code(&b), "MALFORMED_QUERY");
    let long = format!(
        "SELECT Id FROM Account WHERE Name IN ({})",
        vec!["'xxxxxxxxxx'"; 1500].join(",")
    );
    let r = o
        .http
        .get(o.url("/query"))
        .query(&[("q", long)])
        .bearer_auth(&o.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 414);
}

#[tokio::test]
async fn deleted_rows_only_through_query_all_and_get_deleted() {
    let o = org(config(&[("Account", 30)])).await;
    let (_, b) = o
        .query("SELECT Id, SystemModstamp FROM Account WHERE IsDeleted = false ORDER BY Id LIMIT 1")
        .await;
    let id = b["records"][0]["Id"].as_str().unwrap().to_string();
    let before = b["records"][0]["SystemModstamp"]
        .as_str()
        .unwrap()
        .to_string();
    let res = o
        .admin(
            Method::POST,
            "/records/Account/delete",
            json!({"ids": [id]}),
        )
        .await;
    assert_eq!(res["results"][0]["success"], true, "{res}");
    let q = format!("SELECT Id, IsDeleted, SystemModstamp FROM Account WHERE Id = '{id}'");
    let (_, live) = o.query(&q).await;
    assert_eq!(live["totalSize"], 0);
    let (_, all) = o.query_with(&q, "queryAll", None).await;
    assert_eq!(all["totalSize"], 1);
    assert_eq!(all["records"][0]["IsDeleted"], true);
    assert!(
        all["records"][0]["SystemModstamp"].as_str().unwrap() > before.as_str(),
        "delete bumps SystemModstamp"
    );
    let now = chrono::Utc::now();
    let start = (now - chrono::Duration::days(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let end = (now + chrono::Duration::minutes(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let r = o
        .http
        .get(o.url("/sobjects/Account/deleted/"))
        .query(&[("start", &start), ("end", &end)])
        .bearer_auth(&o.token)
        .send()
        .await
        .unwrap();
    let d: Value = r.json().await.unwrap();
    let listed: Vec<&str> = d["deletedRecords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&id.as_str()), "{d}");
    assert!(d["earliestDateAvailable"].is_string() && d["latestDateCovered"].is_string());
    let read = o
        .http
        .get(format!("{}/__emulator/records/Account/{id}", o.h.base_url))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(read["IsDeleted"], true);
}

#[tokio::test]
async fn formulas_recompute_on_read_without_touching_stamps() {
    let o = org(config(&[("Account", 10), ("Invoice__c", 10)])).await;
    let (_, b) = o.query("SELECT Id, Account__c, Account_Name__c, Amount__c, Tax_Rate__c, Total__c, SystemModstamp FROM Invoice__c WHERE Account__c != null AND Amount__c != null LIMIT 1").await;
    let inv = &b["records"][0];
    let amount = inv["Amount__c"].as_f64().unwrap();
    let rate = inv["Tax_Rate__c"].as_f64().unwrap_or(0.0);
    let total = inv["Total__c"].as_f64().unwrap();
    assert!((total - (amount * (1.0 + rate / 100.0) * 100.0).round() / 100.0).abs() < 1e-9);
    let acc = inv["Account__c"].as_str().unwrap();
    let res = o
        .admin(
            Method::PATCH,
            "/records/Account",
            json!({"records": [{"Id": acc, "Name": "Renamed Co"}]}),
        )
        .await;
    assert_eq!(res["results"][0]["success"], true, "{res}");
    let inv_id = inv["Id"].as_str().unwrap();
    let (_, after) = o.query(&format!("SELECT Account_Name__c, SystemModstamp, Account__r.Name FROM Invoice__c WHERE Id = '{inv_id}'")).await;
    let r = &after["records"][0];
    assert_eq!(r["Account_Name__c"], "Renamed Co");
    assert_eq!(
        r["SystemModstamp"], inv["SystemModstamp"],
        "cross-object formula drift does not bump the stamp"
    );
    assert_eq!(r["Account__r"]["Name"], "Renamed Co");
    assert_eq!(r["Account__r"]["attributes"]["type"], "Account");
    let (_, hist) = o.query(&format!("SELECT Id, Field, OldValue, NewValue FROM AccountHistory WHERE AccountId = '{acc}' AND Field = 'Name'")).await;
    let renamed: Vec<&Value> = hist["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["NewValue"] == "Renamed Co")
        .collect();
    assert_eq!(renamed.len(), 1, "{hist}");
    assert!(renamed[0]["OldValue"].is_string());
    let (s, b) = o
        .query("SELECT Id FROM AccountHistory WHERE NewValue = 'x'")
        .await;
    assert_eq!(
        (s, error_code(&b)),
        (400, "INVALID_FIELD"),
        "anyType is not filterable"
    );
}

#[tokio::test]
async fn written_rows_can_be_late_visible() {
    let o = org(config(&[("Lead", 5)])).await;
    o.admin(Method::PUT, "/faults", json!({"late_visible_ms": 400}))
        .await;
    let res = o.admin(Method::POST, "/records/Lead", json!({"records": [{"LastName": "Late", "Company": "L", "Status": "Open - Not Contacted"}]})).await;
    let id = res["results"][0]["id"].as_str().unwrap().to_string();
    let q = format!("SELECT Id FROM Lead WHERE Id = '{id}'");
    assert_eq!(o.query(&q).await.1["totalSize"], 0);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(o.query(&q).await.1["totalSize"], 1);
    let bad = o
        .admin(
            Method::POST,
            "/records/Lead",
            json!({"records": [{"Company": "X"}]}),
        )
        .await;
    assert_eq!(
        bad["results"][0]["error"],
        "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName, Status]:LastName,Status"
    );
}

#[tokio::test]
async fn query_timeout_fault_applies_to_wide_windows_only() {
    let o = org(config(&[("Account", 500)])).await;
    o.admin(Method::PUT, "/faults", json!({"query_timeout_rows": 100}))
        .await;
    let (s, b) = o.query("SELECT Id FROM Account").await;
    assert_eq!((s, error_code(&b)), (400, "QUERY_TIMEOUT"));
    assert_eq!(
        b[0]["message"],
        "Your query request was running for too long."
    );
    let (_, all) = o
        .query_with(
            "SELECT Id, SystemModstamp FROM Account ORDER BY SystemModstamp LIMIT 1",
            "query",
            None,
        )
        .await;
    assert_eq!(error_code(&all), "QUERY_TIMEOUT");
    let (s, _) = o.query("SELECT Id FROM Account WHERE SystemModstamp >= 2020-01-01T00:00:00Z AND SystemModstamp < 2020-02-01T00:00:00Z").await;
    assert_eq!(s, 200, "a narrow window examines few rows");
}

#[tokio::test]
async fn injected_401_mid_pagination_then_refresh_and_continue() {
    let o = org(config(&[("Contact", 600)])).await;
    let (_, p1) = o
        .query_with("SELECT Id FROM Contact ORDER BY Id", "queryAll", Some(200))
        .await;
    let next = p1["nextRecordsUrl"].as_str().unwrap().to_string();
    o.admin(Method::PUT, "/faults", json!({"script": [401]}))
        .await;
    let url = format!("{}{next}", o.h.base_url);
    let r = o.http.get(&url).bearer_auth(&o.token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        error_code(&r.json::<Value>().await.unwrap()),
        "INVALID_SESSION_ID"
    );
    let r = o.http.get(&url).bearer_auth(&o.token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "the token stays dead");
    let fresh = token(&o.http, &o.h.base_url).await;
    let p2: Value = o
        .http
        .get(&url)
        .bearer_auth(&fresh)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(p2["records"].as_array().unwrap().len(), 200);
    assert_ne!(p2["records"][0]["Id"], p1["records"][0]["Id"]);
    let r = o
        .http
        .get(o.url("/limits"))
        .header("Authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        error_code(&r.json::<Value>().await.unwrap()),
        "INVALID_AUTH_HEADER"
    );
}

/// Fault `rest_reset_after_bytes`: the next REST query page is cut mid-body, once; the same
/// request then answers whole.
#[tokio::test]
async fn rest_query_body_reset_mid_stream_fires_once() {
    let o = org(config(&[("Account", 300)])).await;
    o.admin(
        Method::PUT,
        "/faults",
        json!({"rest_reset_after_bytes": 2000}),
    )
    .await;
    let url = o.url("/queryAll/?q=SELECT+Id,+Name+FROM+Account");
    let cut = o.http.get(&url).bearer_auth(&o.token).send().await.unwrap();
    assert_eq!(cut.status().as_u16(), 200);
    assert!(cut.text().await.is_err(), "body cut mid-stream");
    let whole: Value = o
        .http
        .get(&url)
        .bearer_auth(&o.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(whole["totalSize"], 300);
    assert_eq!(whole["records"].as_array().unwrap().len(), 300);
}
