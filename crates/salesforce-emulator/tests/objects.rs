//! Generated custom objects (`Config::extra_custom_objects`): describe, REST and Bulk, determinism.

use crate::util::*;
use serde_json::{Value, json};

fn cfg(extra: u32) -> salesforce_emulator::Config {
    let mut c = config(&[("Account", 5)]);
    c.extra_custom_objects = extra;
    c
}

fn names(global: &Value) -> Vec<String> {
    global["sobjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn extra_objects_appear_in_describe_global_only_when_configured() {
    let plain = org(cfg(0)).await;
    let (s, g) = plain.get_json("/sobjects").await;
    assert_eq!(s, 200);
    let base = names(&g);
    assert!(!base.iter().any(|n| n.starts_with("Bench")));

    let o = org(cfg(50)).await;
    let (s, g) = o.get_json("/sobjects").await;
    assert_eq!(s, 200);
    let all = names(&g);
    assert_eq!(all.len(), base.len() + 50);
    for i in 1..=50 {
        let n = format!("Bench{i:02}__c");
        let entry = g["sobjects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == n.as_str())
            .unwrap_or_else(|| panic!("{n} missing from describe global"));
        assert_eq!(entry["custom"], true, "{n}");
        assert_eq!(entry["queryable"], true, "{n}");
    }
    assert!(!all.contains(&"Bench51__c".to_string()));

    let (s, d) = o.get_json("/sobjects/Bench07__c/describe").await;
    assert_eq!(s, 200);
    let fields: Vec<&str> = d["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for f in [
        "Id",
        "Name",
        "SystemModstamp",
        "Amount__c",
        "Active__c",
        "Due_Date__c",
        "Account__c",
    ] {
        assert!(fields.contains(&f), "Bench07__c lacks {f}: {fields:?}");
    }
    let ty = |n: &str| {
        d["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == n)
            .unwrap()["type"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(ty("Amount__c"), "currency");
    assert_eq!(ty("Active__c"), "boolean");
    assert_eq!(ty("Due_Date__c"), "date");
    assert_eq!(ty("SystemModstamp"), "datetime");
}

#[tokio::test]
async fn extra_objects_follow_row_counts_and_are_rest_queryable() {
    let mut c = cfg(3);
    c.rows.insert("Bench02__c".into(), 7);
    let o = org(c).await;
    let (s, r) = o
        .query("SELECT Id, Name, Amount__c, SystemModstamp FROM Bench02__c ORDER BY SystemModstamp")
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["totalSize"], 7);
    let recs = r["records"].as_array().unwrap();
    assert_eq!(recs.len(), 7);
    for rec in recs {
        assert!(rec["Id"].as_str().unwrap().starts_with("b02"), "{rec}");
        assert!(rec["Name"].as_str().unwrap().starts_with("Bench "), "{rec}");
        assert!(rec["SystemModstamp"].is_string(), "{rec}");
    }
    // Objects not in `rows` get `default_rows` (20 in the test config).
    let (s, r) = o.query("SELECT COUNT() FROM Bench03__c").await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["totalSize"], 20);
}

async fn bulk_csv(o: &Org, soql: &str) -> String {
    let r = o
        .http
        .post(o.url("/jobs/query"))
        .bearer_auth(&o.token)
        .json(&json!({"operation": "query", "query": soql}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let job: Value = r.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    for _ in 0..200 {
        let (_, info) = o.get_json(&format!("/jobs/query/{id}")).await;
        match info["state"].as_str().unwrap() {
            "JobComplete" => break,
            "UploadComplete" | "InProgress" => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            other => panic!("job ended {other}: {info}"),
        }
    }
    let r = o.get(&format!("/jobs/query/{id}/results")).await;
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().get("sforce-locator").is_some());
    r.text().await.unwrap()
}

#[tokio::test]
async fn extra_objects_are_bulk_queryable_and_match_rest() {
    let o = org(cfg(2)).await;
    let soql = "SELECT Id, Name, Active__c, Quantity__c FROM Bench01__c ORDER BY Id";
    let csv = bulk_csv(&o, soql).await;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "\"Id\",\"Name\",\"Active__c\",\"Quantity__c\""
    );
    let rows: Vec<&str> = lines.collect();
    let (_, rest) = o.query(soql).await;
    let recs = rest["records"].as_array().unwrap();
    assert_eq!(rows.len(), recs.len());
    assert_eq!(rows.len() as u64, rest["totalSize"].as_u64().unwrap());
    for (row, rec) in rows.iter().zip(recs) {
        let id = rec["Id"].as_str().unwrap();
        assert!(row.starts_with(&format!("\"{id}\",")), "{row} vs {rec}");
        let active = rec["Active__c"].as_bool().unwrap();
        assert!(row.contains(&format!(",\"{active}\",")), "{row} vs {rec}");
    }
}

#[tokio::test]
async fn extra_objects_are_deterministic_per_seed() {
    let soql = "SELECT Id, Name, Amount__c, Stage__c, Due_Date__c, Account__c, SystemModstamp \
                FROM Bench05__c ORDER BY Id";
    let a = org(cfg(5)).await;
    let b = org(cfg(5)).await;
    let (_, ra) = a.query(soql).await;
    let (_, rb) = b.query(soql).await;
    assert_eq!(ra["records"], rb["records"]);
    assert_eq!(ra["totalSize"], 20);
    let mut other = cfg(5);
    other.seed = 7;
    let c = org(other).await;
    let (_, rc) = c.query(soql).await;
    assert_ne!(ra["records"], rc["records"]);
}
