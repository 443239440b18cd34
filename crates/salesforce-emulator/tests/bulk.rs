//! Bulk API 2.0 query jobs (§5): life cycle, result paging, CSV exactness, gzip, errors, faults.

use crate::util::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::io::Read;

async fn create(o: &Org, body: Value) -> (u16, Value) {
    let r = o
        .http
        .post(o.url("/jobs/query"))
        .bearer_auth(&o.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap())
}

async fn wait_complete(o: &Org, id: &str) -> Value {
    for _ in 0..200 {
        let (_, info) = o.get_json(&format!("/jobs/query/{id}")).await;
        if info["state"] != "UploadComplete" && info["state"] != "InProgress" {
            return info;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("job {id} never finished");
}

struct Page {
    status: u16,
    records: Option<String>,
    locator: Option<String>,
    body: String,
}

async fn page(o: &Org, id: &str, query: &str) -> Page {
    let r = o.get(&format!("/jobs/query/{id}/results{query}")).await;
    let h = |k: &str| r.headers().get(k).map(|v| v.to_str().unwrap().to_string());
    Page {
        status: r.status().as_u16(),
        records: h("sforce-numberofrecords"),
        locator: h("sforce-locator"),
        body: "".into(),
    }
    .with_body(r)
    .await
}

impl Page {
    async fn with_body(mut self, r: reqwest::Response) -> Page {
        self.body = r.text().await.unwrap();
        self
    }
}

fn csv_expected(recs: &[Value], fields: &[&str]) -> String {
    let mut out = fields
        .iter()
        .map(|f| format!("\"{f}\""))
        .collect::<Vec<_>>()
        .join(",")
        + "\n";
    for r in recs {
        let cells: Vec<String> = fields
            .iter()
            .map(|f| match &r[*f] {
                Value::Null => "\"\"".to_string(),
                Value::String(s) if s.ends_with("+0000") => format!("\"{}Z\"", &s[..s.len() - 5]),
                Value::String(s) => format!("\"{}\"", s.replace('"', "\"\"")),
                Value::Number(n) if n.is_f64() => {
                    let d = n.as_f64().unwrap();
                    if d.fract() == 0.0 {
                        format!("\"{d:.1}\"")
                    } else {
                        format!("\"{d}\"")
                    }
                }
                other => format!("\"{other}\""),
            })
            .collect();
        out += &(cells.join(",") + "\n");
    }
    out
}

#[tokio::test]
async fn life_cycle_paging_and_csv_exactness() {
    let o = org(config(&[("Account", 2500)])).await;
    let soql = "SELECT Id, Name, IsDeleted, SystemModstamp, AnnualRevenue, Description, NumberOfEmployees FROM Account";
    let (s, job) = create(&o, json!({"operation": "queryAll", "query": soql, "contentType": "CSV", "columnDelimiter": "COMMA", "lineEnding": "LF"})).await;
    assert_eq!(s, 200, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("750") && id.len() == 18);
    assert_eq!(job["state"], "UploadComplete");
    assert_eq!(
        (
            job["operation"].as_str(),
            job["object"].as_str(),
            job["apiVersion"].as_f64()
        ),
        (Some("queryAll"), Some("Account"), Some(62.0))
    );
    assert!(job["createdDate"].as_str().unwrap().ends_with("+0000"));
    let info = wait_complete(&o, &id).await;
    assert_eq!(info["state"], "JobComplete");
    assert_eq!(info["jobType"], "V2Query");
    assert_eq!(info["numberRecordsProcessed"], 2500);

    let mut locator = String::new();
    let mut pages = Vec::new();
    loop {
        let q = if locator.is_empty() {
            "?maxRecords=1000".to_string()
        } else {
            format!("?locator={locator}&maxRecords=1000")
        };
        let p = page(&o, &id, &q).await;
        assert_eq!(p.status, 200);
        let l = p.locator.clone().unwrap();
        pages.push(p);
        if l == "null" {
            break;
        }
        locator = l;
    }
    assert_eq!(pages.len(), 3);
    assert_eq!(
        pages
            .iter()
            .map(|p| p.records.clone().unwrap())
            .collect::<Vec<_>>(),
        ["1000", "1000", "500"]
    );
    for p in &pages {
        assert!(p.body.starts_with("\"Id\",\"Name\",\"IsDeleted\",\"SystemModstamp\",\"AnnualRevenue\",\"Description\",\"NumberOfEmployees\"\n"), "header on every page");
    }
    // Same rows through REST queryAll (stamp order), rendered per §5.5, must match byte for byte.
    let recs = o.query_all_pages(soql, "queryAll").await;
    let fields = [
        "Id",
        "Name",
        "IsDeleted",
        "SystemModstamp",
        "AnnualRevenue",
        "Description",
        "NumberOfEmployees",
    ];
    for (k, p) in pages.iter().enumerate() {
        let chunk = &recs[k * 1000..((k + 1) * 1000).min(recs.len())];
        assert_eq!(p.body, csv_expected(chunk, &fields), "page {k}");
    }
    assert!(
        pages.iter().any(|p| p.body.contains("\"true\"")),
        "deleted rows present in queryAll"
    );
    assert!(
        pages.iter().any(|p| p.body.contains("\"\"\""))
            || pages.iter().any(|p| p.body.contains("\"\"")),
        "quotes doubled / nulls empty"
    );
    // Re-fetching a locator gives the same page.
    let again = page(
        &o,
        &id,
        &format!(
            "?locator={}&maxRecords=1000",
            pages[0].locator.as_ref().unwrap()
        ),
    )
    .await;
    assert_eq!(again.body, pages[1].body);
    // Deleting a finished job: 204, then 404.
    let r = o
        .http
        .delete(o.url(&format!("/jobs/query/{id}")))
        .bearer_auth(&o.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(
        o.get(&format!("/jobs/query/{id}")).await.status().as_u16(),
        404
    );
}

#[tokio::test]
async fn gzip_delimiters_and_line_endings() {
    let o = org(config(&[("Contact", 300)])).await;
    let (_, job) = create(&o, json!({"operation": "query", "query": "SELECT Id, LastName, Birthdate FROM Contact", "columnDelimiter": "PIPE", "lineEnding": "CRLF"})).await;
    let id = job["id"].as_str().unwrap().to_string();
    wait_complete(&o, &id).await;
    let plain = page(&o, &id, "").await.body;
    assert!(plain.starts_with("\"Id\"|\"LastName\"|\"Birthdate\"\r\n"));
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let r = raw
        .get(o.url(&format!("/jobs/query/{id}/results")))
        .bearer_auth(&o.token)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.headers()["content-type"], "text/csv");
    let bytes = r.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, plain);
}

#[tokio::test]
async fn creation_errors_follow_salesforce() {
    let o = org(config(&[])).await;
    let (s, b) = create(
        &o,
        json!({"operation": "query", "query": "SELECT Id, BillingAddress FROM Account"}),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        b[0]["message"],
        "Selecting compound data not supported in Bulk Query"
    );
    let (s, b) = create(
        &o,
        json!({"operation": "query", "query": "SELECT Id, Name FROM Attachment"}),
    )
    .await;
    assert_eq!((s, error_code(&b)), (400, "INVALIDENTITY"));
    assert_eq!(
        b[0]["message"],
        "Entity 'Attachment' is not supported by the Bulk API."
    );
    let (s, _) = create(
        &o,
        json!({"operation": "query", "query": "SELECT Id, Body FROM Attachment"}),
    )
    .await;
    assert_eq!(s, 400);
    // §5.1: a complexvalue field cannot be written into a CSV cell.
    let (s, b) = create(
        &o,
        json!({"operation": "query", "query": "SELECT Id, Record_Types__c FROM Shipment__c"}),
    )
    .await;
    assert_eq!((s, error_code(&b)), (400, "API_ERROR"));
    assert_eq!(
        b[0]["message"],
        "FeatureNotEnabled : Cannot serialize value for 'Record_Types__c' in CSV format"
    );
    let (s, _) = create(
        &o,
        json!({"operation": "query", "query": "SELECT Id, Weight_Grams__c FROM Shipment__c"}),
    )
    .await;
    assert_eq!(s, 200, "the other new field types serialize");
    let (s, b) = create(
        &o,
        json!({"operation": "query", "query": "SELECT Nope FROM Account"}),
    )
    .await;
    assert_eq!((s, error_code(&b)), (400, "INVALID_FIELD"));
    let (s, b) = create(
        &o,
        json!({"operation": "upsert", "query": "SELECT Id FROM Account"}),
    )
    .await;
    assert_eq!((s, error_code(&b)), (400, "INVALIDJOB"));
}

#[tokio::test]
async fn states_advance_with_latency_and_results_wait_for_completion() {
    let mut c = config(&[("Lead", 50)]);
    c.switches.bulk_queued_ms = 150;
    c.switches.bulk_processing_ms = 150;
    let o = org(c).await;
    let (_, job) = create(
        &o,
        json!({"operation": "query", "query": "SELECT Id FROM Lead"}),
    )
    .await;
    let id = job["id"].as_str().unwrap().to_string();
    let (_, info) = o.get_json(&format!("/jobs/query/{id}")).await;
    assert_eq!(info["state"], "UploadComplete");
    let early = page(&o, &id, "").await;
    assert_eq!(early.status, 412);
    assert!(early.body.contains("JOB_NOT_COMPLETE"));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        o.get_json(&format!("/jobs/query/{id}")).await.1["state"],
        "InProgress"
    );
    let r = o
        .http
        .delete(o.url(&format!("/jobs/query/{id}")))
        .bearer_auth(&o.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400, "cannot delete a running job");
    let info = wait_complete(&o, &id).await;
    assert_eq!(info["state"], "JobComplete");
    let p = page(&o, &id, "").await;
    let n = info["numberRecordsProcessed"].as_u64().unwrap().to_string();
    assert_eq!(
        (p.status, p.records.as_deref(), p.locator.as_deref()),
        (200, Some(n.as_str()), Some("null"))
    );
    assert_eq!(
        p.body.lines().count(),
        info["numberRecordsProcessed"].as_u64().unwrap() as usize + 1
    );
    let other = o
        .http
        .get(format!(
            "{}/services/data/v61.0/jobs/query/{id}/results",
            o.h.base_url
        ))
        .bearer_auth(&o.token)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 409);
    let r = o
        .http
        .patch(o.url(&format!("/jobs/query/{id}")))
        .bearer_auth(&o.token)
        .json(&json!({"state": "Aborted"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400, "finished jobs cannot be aborted");
}

#[tokio::test]
async fn abort_failed_fault_list_and_result_pages() {
    let mut c = config(&[("Case", 120)]);
    c.switches.bulk_queued_ms = 5_000;
    let o = org(c).await;
    let (_, job) = create(
        &o,
        json!({"operation": "query", "query": "SELECT Id FROM Case"}),
    )
    .await;
    let id = job["id"].as_str().unwrap().to_string();
    let r = o
        .http
        .patch(o.url(&format!("/jobs/query/{id}")))
        .bearer_auth(&o.token)
        .json(&json!({"state": "Aborted"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["state"], "Aborted");
    let (_, list) = o.get_json("/jobs/query").await;
    assert_eq!(list["done"], true);
    assert!(
        list["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == id.as_str())
    );

    let o = org(config(&[("Case", 120)])).await;
    o.admin(Method::PUT, "/faults", json!({"next_job": "failed"}))
        .await;
    let (_, job) = create(
        &o,
        json!({"operation": "query", "query": "SELECT Id FROM Case"}),
    )
    .await;
    let info = wait_complete(&o, job["id"].as_str().unwrap()).await;
    assert_eq!(info["state"], "Failed");
    assert!(info["errorMessage"].is_string());

    let (_, job) = create(
        &o,
        json!({"operation": "query", "query": "SELECT Id FROM Case"}),
    )
    .await;
    let id = job["id"].as_str().unwrap().to_string();
    wait_complete(&o, &id).await;
    let (s, pages) = o
        .get_json(&format!("/jobs/query/{id}/resultPages?maxRecords=50"))
        .await;
    assert_eq!(s, 200, "{pages}");
    let urls: Vec<&str> = pages["resultPages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["resultUrl"].as_str().unwrap())
        .collect();
    assert_eq!(urls.len(), 3);
    assert_eq!(pages["done"], true);
    let mut total = 0;
    for u in urls {
        let r = o
            .http
            .get(format!("{}{u}", o.h.base_url))
            .bearer_auth(&o.token)
            .send()
            .await
            .unwrap();
        total += r.headers()["sforce-numberofrecords"]
            .to_str()
            .unwrap()
            .parse::<u32>()
            .unwrap();
    }
    let (_, count) = o.query("SELECT COUNT() FROM Case").await;
    assert_eq!(u64::from(total), count["totalSize"].as_u64().unwrap());
}

#[tokio::test]
async fn connection_reset_mid_body() {
    let o = org(config(&[("Account", 3000)])).await;
    let (_, job) = create(
        &o,
        json!({"operation": "query", "query": "SELECT Id, Name FROM Account"}),
    )
    .await;
    let id = job["id"].as_str().unwrap().to_string();
    wait_complete(&o, &id).await;
    o.admin(Method::PUT, "/faults", json!({"reset_after_bytes": 1000}))
        .await;
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let r = raw
        .get(o.url(&format!("/jobs/query/{id}/results")))
        .bearer_auth(&o.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().await.is_err(), "body cut mid-stream");
    let ok = raw
        .get(o.url(&format!("/jobs/query/{id}/results")))
        .bearer_auth(&o.token)
        .send()
        .await
        .unwrap();
    let n: usize = ok.headers()["sforce-numberofrecords"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(n > 2900);
    assert_eq!(
        ok.text().await.unwrap().lines().count(),
        n + 1,
        "fault fires once"
    );
}

async fn run_job(o: &Org, soql: &str) -> String {
    let (_, job) = create(o, json!({"operation": "query", "query": soql})).await;
    let id = job["id"].as_str().unwrap().to_string();
    wait_complete(o, &id).await;
    page(o, &id, "").await.body
}

#[tokio::test]
async fn csv_switches_cover_the_open_points() {
    let o = org(config(&[("Contact", 40), ("Account", 10)])).await;
    let soql = "SELECT Id, account.name, Birthdate, DoNotCall, CreatedDate FROM Contact WHERE Birthdate = null LIMIT 3";
    let default = run_job(&o, soql).await;
    let mut lines = default.lines();
    assert_eq!(
        lines.next().unwrap(),
        "\"Id\",\"Account.Name\",\"Birthdate\",\"DoNotCall\",\"CreatedDate\""
    );
    let row = lines.next().unwrap();
    assert!(
        row.contains(",\"\",\"false\",") || row.contains(",\"\",\"true\","),
        "{row}"
    );
    assert!(row.ends_with(".000Z\""), "{row}");
    o.admin(
        Method::PUT,
        "/switches",
        json!({"bulk_csv_header_as_written": true, "bulk_csv_null_quoted": false, "bulk_csv_datetime_zulu": false, "bulk_csv_bool_lower": false}),
    )
    .await;
    let switched = run_job(&o, soql).await;
    let mut lines = switched.lines();
    assert_eq!(
        lines.next().unwrap(),
        "\"Id\",\"account.name\",\"Birthdate\",\"DoNotCall\",\"CreatedDate\""
    );
    let row = lines.next().unwrap();
    assert!(
        row.contains(",,\"False\",") || row.contains(",,\"True\","),
        "{row}"
    );
    assert!(row.ends_with(".000+0000\""), "{row}");
}

#[tokio::test]
async fn large_pages_render_in_parallel_identically() {
    let o = org(config(&[("Account", 25_000)])).await;
    let (_, job) = create(&o, json!({"operation": "queryAll", "query": "SELECT Id, Name, SystemModstamp, AnnualRevenue FROM Account"})).await;
    let id = job["id"].as_str().unwrap().to_string();
    wait_complete(&o, &id).await;
    let whole = page(&o, &id, "?maxRecords=25000").await;
    assert_eq!(whole.records.as_deref(), Some("25000"));
    let mut seq = String::new();
    let mut locator = String::new();
    loop {
        let q = if locator.is_empty() {
            "?maxRecords=4000".to_string()
        } else {
            format!("?maxRecords=4000&locator={locator}")
        };
        let p = page(&o, &id, &q).await;
        let body = if seq.is_empty() {
            p.body.as_str()
        } else {
            p.body.split_once('\n').unwrap().1
        };
        seq.push_str(body);
        match p.locator.as_deref() {
            Some("null") => break,
            Some(l) => locator = l.to_string(),
            None => panic!("no locator"),
        }
    }
    assert_eq!(whole.body, seq);
    // An unaligned start: rows 5,000..25,000 in one parallel page.
    let tail = page(&o, &id, "?maxRecords=20000&locator=NTAwMA").await;
    assert_eq!(tail.records.as_deref(), Some("20000"));
    let expected: String = whole
        .body
        .lines()
        .skip(5001)
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(tail.body.split_once('\n').unwrap().1, expected);
}
