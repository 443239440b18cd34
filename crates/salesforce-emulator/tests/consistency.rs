//! Concurrent long-running request limit (§3.3) and data consistency: opportunity stages and
//! masked encrypted strings.

use crate::util::*;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn long_running_requests_over_the_limit_refuse_new_ones() {
    let o = org(config(&[])).await;
    let set = json!({"concurrent_long_requests": 2, "long_request_ms": 100, "latency_ms": 2000});
    o.admin(Method::PUT, "/faults", set).await;
    let slow = |o: &Org| {
        let req = o.http.get(o.url("/limits")).bearer_auth(&o.token);
        tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
    };
    let a = slow(&o);
    let b = slow(&o);
    // Wait until both are in flight (sleeping in the latency fault) past the 100 ms threshold.
    for _ in 0..150 {
        if o.h.state.long_running(100) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(o.h.state.long_running(100), 2);
    let (s, body) = {
        let r = o
            .http
            .get(o.url("/limits"))
            .bearer_auth(&o.token)
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    };
    assert_eq!(s, 403, "{body}");
    assert_eq!(error_code(&body), "REQUEST_LIMIT_EXCEEDED");
    assert_eq!(
        body[0]["message"],
        "ConcurrentRequests (Concurrent API Requests) Limit exceeded."
    );
    assert_eq!(a.await.unwrap(), 200);
    assert_eq!(b.await.unwrap(), 200);
    // The long requests are done: new requests pass again (the latency fault lifted, the limit
    // still on).
    let set = json!({"concurrent_long_requests": 2, "long_request_ms": 100});
    o.admin(Method::PUT, "/faults", set).await;
    let r = o.get("/limits").await;
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn short_requests_never_count_and_the_limit_is_off_by_default() {
    let o = org(config(&[])).await;
    let set = json!({"concurrent_long_requests": 1, "long_request_ms": 5_000});
    o.admin(Method::PUT, "/faults", set).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let req = o.http.get(o.url("/limits")).bearer_auth(&o.token);
        tasks.push(tokio::spawn(async move {
            req.send().await.unwrap().status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let o = org(config(&[])).await;
    o.admin(Method::PUT, "/faults", json!({"latency_ms": 300}))
        .await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let req = o.http.get(o.url("/limits")).bearer_auth(&o.token);
        tasks.push(tokio::spawn(async move {
            req.send().await.unwrap().status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
}

#[tokio::test]
async fn opportunity_stage_decides_closed_won_and_probability() {
    let o = org(config(&[("Opportunity", 400)])).await;
    let recs = o
        .query_all_pages(
            "SELECT Id, StageName, IsClosed, IsWon, Probability FROM Opportunity",
            "queryAll",
        )
        .await;
    assert_eq!(recs.len(), 400);
    let mut seen = std::collections::BTreeSet::new();
    for r in &recs {
        let stage = r["StageName"].as_str().unwrap();
        seen.insert(stage.to_string());
        let (closed, won, p) = match stage {
            "Closed Won" => (true, true, 100.0),
            "Closed Lost" => (true, false, 0.0),
            _ => (false, false, r["Probability"].as_f64().unwrap()),
        };
        assert_eq!(r["IsClosed"], closed, "{r}");
        assert_eq!(r["IsWon"], won, "{r}");
        assert_eq!(r["Probability"].as_f64().unwrap(), p, "{r}");
        if !closed {
            assert!(p > 0.0 && p < 100.0, "{r}");
        }
    }
    assert!(seen.contains("Closed Won") && seen.contains("Closed Lost"));
    let (_, won) = o
        .query("SELECT COUNT() FROM Opportunity WHERE IsWon = true AND StageName != 'Closed Won'")
        .await;
    assert_eq!(won["totalSize"], 0);
}

async fn secret_codes(o: &Org) -> Vec<String> {
    o.query_all_pages(
        "SELECT Id, Secret_Code__c FROM Invoice__c WHERE Secret_Code__c != null ORDER BY Id",
        "queryAll",
    )
    .await
    .iter()
    .map(|r| r["Secret_Code__c"].as_str().unwrap().to_string())
    .collect()
}

#[tokio::test]
async fn encrypted_strings_are_masked_unless_the_user_may_view_them() {
    let masked = org(config(&[("Invoice__c", 60)])).await;
    let mut c = config(&[("Invoice__c", 60)]);
    c.view_encrypted_data = true;
    let clear = org(c).await;
    let m = secret_codes(&masked).await;
    let c = secret_codes(&clear).await;
    assert!(!m.is_empty());
    assert_eq!(m.len(), c.len());
    for (m, c) in m.iter().zip(&c) {
        assert!(c.starts_with("S-"), "{c}");
        assert_eq!(*m, "*".repeat(c.chars().count()));
    }
    // Bulk CSV masks the same way.
    let (_, job) = {
        let r = masked
            .http
            .post(masked.url("/jobs/query"))
            .bearer_auth(&masked.token)
            .json(&json!({"operation": "queryAll", "query":
                "SELECT Secret_Code__c FROM Invoice__c WHERE Secret_Code__c != null ORDER BY Id"}))
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<serde_json::Value>().await.unwrap())
    };
    let id = job["id"].as_str().unwrap().to_string();
    for _ in 0..200 {
        let (_, info) = masked.get_json(&format!("/jobs/query/{id}")).await;
        if info["state"] == "JobComplete" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = masked
        .get(&format!("/jobs/query/{id}/results"))
        .await
        .text()
        .await
        .unwrap();
    let cells: Vec<String> = body
        .lines()
        .skip(1)
        .map(|l| l.trim_matches('"').to_string())
        .collect();
    assert_eq!(cells, m);
}

/// Written opportunities follow their stage as generated ones do: `IsClosed` and `IsWon` come
/// from `StageName` on every write, `Probability` defaults to the stage's when not given.
#[tokio::test]
async fn written_opportunities_follow_their_stage() {
    let o = org(config(&[("Opportunity", 0)])).await;
    let made = o
        .admin(
            Method::POST,
            "/records/Opportunity",
            json!({"records": [{"Name": "Deal", "StageName": "Closed Won", "CloseDate": "2026-11-30"}]}),
        )
        .await;
    let id = made["results"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{made}"))
        .to_owned();
    let row = stage_row(&o, &id).await;
    assert_eq!(
        (&row["IsClosed"], &row["IsWon"], &row["Probability"]),
        (&json!(true), &json!(true), &json!(100.0)),
        "{row}"
    );
    o.admin(
        Method::PATCH,
        "/records/Opportunity",
        json!({"records": [{"Id": id, "StageName": "Closed Lost"}]}),
    )
    .await;
    let row = stage_row(&o, &id).await;
    assert_eq!(
        (&row["IsClosed"], &row["IsWon"]),
        (&json!(true), &json!(false)),
        "{row}"
    );
}

async fn stage_row(o: &Org, id: &str) -> serde_json::Value {
    let soql = format!("SELECT IsClosed, IsWon, Probability FROM Opportunity WHERE Id = '{id}'");
    o.query(&soql).await.1["records"][0].clone()
}
