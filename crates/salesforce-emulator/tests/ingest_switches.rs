//! Ingest switches and faults for the points the reference leaves open: unknown columns (§6.6),
//! polymorphic relationship columns (§9.11), `refresh` / `consentImport` (§9.12), lock-contention
//! retries (§9.13), row-level `UNABLE_TO_LOCK_ROW` (§3.3, §6.5) and separate ingest latencies.

use crate::ingest::{create, org_config, patch, record, run_job, upload};
use crate::util::*;
use reqwest::Method;
use salesforce_emulator::ids;
use serde_json::json;
use std::time::Duration;

fn lock_error(id: &str) -> String {
    format!(
        "UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record or 1 records: {id}:--"
    )
}

#[tokio::test]
async fn unknown_columns_fail_the_job_or_every_row() {
    let o = org(org_config()).await;
    let csv = "Name,Bogus__c\nU1,x\nU2,y\n";
    let d = run_job(&o, json!({"object": "Account", "operation": "insert"}), csv).await;
    assert_eq!(d.info["state"], "Failed");
    assert_eq!(
        d.info["errorMessage"],
        "InvalidBatch : Field name not found : Bogus__c"
    );
    assert_eq!(d.unprocessed, csv);

    o.admin(
        Method::PUT,
        "/switches",
        json!({"ingest_unknown_column_fails_job": false}),
    )
    .await;
    let d = run_job(&o, json!({"object": "Account", "operation": "insert"}), csv).await;
    assert_eq!(d.info["state"], "JobComplete", "{}", d.info);
    assert_eq!(d.info["numberRecordsProcessed"], 2);
    assert_eq!(d.info["numberRecordsFailed"], 2);
    assert_eq!(
        d.failed,
        "\"sf__Id\",\"sf__Error\",Name,Bogus__c\n\
         \"\",\"INVALID_FIELD:Field name not found : Bogus__c:--\",\"U1\",\"x\"\n\
         \"\",\"INVALID_FIELD:Field name not found : Bogus__c:--\",\"U2\",\"y\"\n"
    );
    let (_, q) = o
        .query("SELECT Id FROM Account WHERE Name IN ('U1', 'U2')")
        .await;
    assert_eq!(q["totalSize"], 0, "no row was written");
    // The same holds for jobs that only use `Id`.
    let id = ids::make("001", 2);
    let d = run_job(
        &o,
        json!({"object": "Account", "operation": "delete"}),
        &format!("Id,Bogus__c\n{id},x\n"),
    )
    .await;
    assert_eq!(d.info["numberRecordsFailed"], 1, "{}", d.failed);
    assert!(
        d.failed
            .contains("INVALID_FIELD:Field name not found : Bogus__c:--")
    );
    record(&o, &format!("SELECT Id FROM Account WHERE Id = '{id}'")).await;
}

#[tokio::test]
async fn polymorphic_columns_follow_the_syntax_switch() {
    let o = org(org_config()).await;
    let contact = record(&o, "SELECT Id FROM Contact WHERE Ext_Id__c = 'CON-3'").await;
    let contact_id = contact["Id"].as_str().unwrap().to_string();
    let task = |col: &str, subject: &str| {
        format!("Subject,Status,Priority,{col}\n{subject},Not Started,Normal,CON-3\n")
    };
    let body = json!({"object": "Task", "operation": "insert"});

    // Default: `ObjectType:RelationshipName.IndexedFieldName`.
    let d = run_job(&o, body.clone(), &task("Contact:Who.Ext_Id__c", "Poly A")).await;
    assert_eq!(d.info["state"], "JobComplete", "{}", d.info);
    assert_eq!(d.info["numberRecordsFailed"], 0, "{}", d.failed);
    let t = record(&o, "SELECT WhoId FROM Task WHERE Subject = 'Poly A'").await;
    assert_eq!(t["WhoId"], contact_id.as_str());
    // The reversed form is not a column in this mode; nor is the plain form on a polymorphic
    // lookup, nor a type the lookup cannot point to.
    for col in [
        "Who:Contact.Ext_Id__c",
        "Who.Ext_Id__c",
        "Account:Who.External_Id__c",
    ] {
        let d = run_job(&o, body.clone(), &task(col, "Poly X")).await;
        assert_eq!(d.info["state"], "Failed", "{col}");
        assert_eq!(
            d.info["errorMessage"],
            format!("InvalidBatch : Field name not found : {col}")
        );
    }

    o.admin(
        Method::PUT,
        "/switches",
        json!({"ingest_polymorphic_columns": "relationship_first"}),
    )
    .await;
    let d = run_job(&o, body.clone(), &task("Who:Contact.Ext_Id__c", "Poly B")).await;
    assert_eq!(d.info["state"], "JobComplete", "{}", d.info);
    let t = record(&o, "SELECT WhoId FROM Task WHERE Subject = 'Poly B'").await;
    assert_eq!(t["WhoId"], contact_id.as_str());
    let d = run_job(&o, body.clone(), &task("Contact:Who.Ext_Id__c", "Poly C")).await;
    assert_eq!(d.info["state"], "Failed");

    o.admin(
        Method::PUT,
        "/switches",
        json!({"ingest_polymorphic_columns": "rejected"}),
    )
    .await;
    for col in ["Contact:Who.Ext_Id__c", "Who:Contact.Ext_Id__c"] {
        let d = run_job(&o, body.clone(), &task(col, "Poly D")).await;
        assert_eq!(d.info["state"], "Failed", "{col}");
    }
    // Single-target lookups keep the plain form in every mode.
    let d = run_job(
        &o,
        json!({"object": "Contact", "operation": "insert"}),
        "LastName,Account.External_Id__c\nPlain,ACC-2\n",
    )
    .await;
    assert_eq!(d.info["numberRecordsFailed"], 0, "{}", d.failed);
}

#[tokio::test]
async fn refresh_and_consent_import_need_the_switch() {
    let o = org(org_config()).await;
    for op in ["refresh", "consentImport"] {
        let (s, b) = create(&o, json!({"object": "Account", "operation": op})).await;
        assert_eq!(s, 400, "{b}");
        assert_eq!(error_code(&b), "INVALIDJOB");
        assert_eq!(
            b[0]["message"],
            format!("InvalidJob : Invalid operation: {op}")
        );
    }
    o.admin(
        Method::PUT,
        "/switches",
        json!({"ingest_extra_operations": true}),
    )
    .await;
    let live = ids::make("001", 4);
    let missing = ids::make("001", 9_999);
    for op in ["refresh", "consentImport"] {
        let csv = format!("Id,Name\n{live},ignored\n{missing},x\n");
        let d = run_job(&o, json!({"object": "Account", "operation": op}), &csv).await;
        assert_eq!(d.info["operation"], op);
        assert_eq!(d.info["state"], "JobComplete", "{}", d.info);
        assert_eq!(d.info["numberRecordsProcessed"], 2);
        assert_eq!(d.info["numberRecordsFailed"], 1);
        assert_eq!(
            d.ok,
            format!(
                "\"sf__Id\",\"sf__Created\",Id,Name\n\"{live}\",\"false\",\"{live}\",\"ignored\"\n"
            )
        );
        assert!(
            d.failed
                .contains("INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--"),
            "{}",
            d.failed
        );
    }
    // Nothing was written.
    let a = record(&o, &format!("SELECT Name FROM Account WHERE Id = '{live}'")).await;
    assert_ne!(a["Name"], "ignored");
}

#[tokio::test]
async fn row_lock_fault_fails_every_nth_row_and_reports_retries() {
    let o = org(org_config()).await;
    // Without the fault no retries are reported.
    let d = run_job(
        &o,
        json!({"object": "Account", "operation": "insert"}),
        "Name\nCalm 1\n",
    )
    .await;
    assert_eq!(d.info["retries"], 0);

    o.admin(Method::PUT, "/faults", json!({"ingest_row_lock_every": 3}))
        .await;
    let ids: Vec<String> = (1..=7).map(|i| ids::make("001", i)).collect();
    let mut stamps = std::collections::HashMap::new();
    for k in [2usize, 5] {
        let a = record(
            &o,
            &format!("SELECT SystemModstamp FROM Account WHERE Id = '{}'", ids[k]),
        )
        .await;
        stamps.insert(k, a["SystemModstamp"].clone());
    }
    let mut csv = String::from("Id,Rating\n");
    for id in &ids {
        csv.push_str(&format!("{id},Hot\n"));
    }
    let d = run_job(
        &o,
        json!({"object": "Account", "operation": "update"}),
        &csv,
    )
    .await;
    assert_eq!(d.info["state"], "JobComplete", "{}", d.info);
    assert_eq!(d.info["numberRecordsProcessed"], 7);
    assert_eq!(d.info["numberRecordsFailed"], 2);
    assert_eq!(d.info["retries"], 20, "current docs: 20 retries (§6.7)");
    let failed: Vec<&str> = d.failed.lines().skip(1).collect();
    assert_eq!(
        failed,
        [
            format!(
                "\"{}\",\"{}\",\"{}\",\"Hot\"",
                ids[2],
                lock_error(&ids[2]),
                ids[2]
            ),
            format!(
                "\"{}\",\"{}\",\"{}\",\"Hot\"",
                ids[5],
                lock_error(&ids[5]),
                ids[5]
            ),
        ]
    );
    for (k, id) in ids.iter().enumerate() {
        let a = record(
            &o,
            &format!("SELECT Rating, SystemModstamp FROM Account WHERE Id = '{id}'"),
        )
        .await;
        if k == 2 || k == 5 {
            assert_eq!(
                a["SystemModstamp"], stamps[&k],
                "locked row {id} is not written"
            );
        } else {
            assert_eq!(a["Rating"], "Hot", "{id}");
        }
    }

    // A destination's retry of the two locked rows goes through (fewer rows than N).
    let retry = format!("Id,Rating\n{},Cold\n{},Cold\n", ids[2], ids[5]);
    let d = run_job(
        &o,
        json!({"object": "Account", "operation": "update"}),
        &retry,
    )
    .await;
    assert_eq!(d.info["numberRecordsFailed"], 0, "{}", d.failed);
    assert_eq!(d.info["retries"], 0);
    for id in [&ids[2], &ids[5]] {
        let a = record(&o, &format!("SELECT Rating FROM Account WHERE Id = '{id}'")).await;
        assert_eq!(a["Rating"], "Cold");
    }

    // §9.13: the older limits page says 10 retries.
    o.admin(
        Method::PUT,
        "/switches",
        json!({"ingest_batch_retries": 10}),
    )
    .await;
    o.admin(Method::PUT, "/faults", json!({"ingest_row_lock_every": 1}))
        .await;
    let d = run_job(
        &o,
        json!({"object": "Account", "operation": "insert"}),
        &format!("Name,ParentId\nLocked Co,{}\n", ids[0]),
    )
    .await;
    assert_eq!(d.info["retries"], 10);
    assert_eq!(d.info["numberRecordsFailed"], 1);
    // An insert has no id of its own: the error names the parent it references.
    assert!(d.failed.contains(&lock_error(&ids[0])), "{}", d.failed);
    let (_, q) = o
        .query("SELECT Id FROM Account WHERE Name = 'Locked Co'")
        .await;
    assert_eq!(q["totalSize"], 0);
}

#[tokio::test]
async fn ingest_latencies_are_separate_from_bulk_query_ones() {
    let o = org(org_config()).await;
    o.admin(
        Method::PUT,
        "/switches",
        json!({"ingest_queued_ms": 600, "ingest_processing_ms": 300}),
    )
    .await;
    let (_, job) = create(&o, json!({"object": "Account", "operation": "insert"})).await;
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(upload(&o, &id, "Name\nLate Co\n").await.0, 201);
    assert_eq!(patch(&o, &id, "UploadComplete").await.0, 200);
    let (_, info) = o.get_json(&format!("/jobs/ingest/{id}")).await;
    assert_eq!(info["state"], "UploadComplete");

    // A Bulk query job created meanwhile is not delayed (bulk_queued_ms is still 0).
    let r = o
        .http
        .post(o.url("/jobs/query"))
        .bearer_auth(&o.token)
        .json(&json!({"operation": "query", "query": "SELECT Id FROM Account"}))
        .send()
        .await
        .unwrap();
    let q: serde_json::Value = r.json().await.unwrap();
    let qid = q["id"].as_str().unwrap().to_string();
    let mut query_state = String::new();
    for _ in 0..50 {
        let (_, qi) = o.get_json(&format!("/jobs/query/{qid}")).await;
        query_state = qi["state"].as_str().unwrap().to_string();
        if query_state == "JobComplete" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(query_state, "JobComplete");
    let (_, info) = o.get_json(&format!("/jobs/ingest/{id}")).await;
    assert_eq!(
        info["state"], "UploadComplete",
        "the ingest job is still queued"
    );

    let info = crate::ingest::wait_done(&o, &id).await;
    assert_eq!(info["state"], "JobComplete");
    assert!(
        info["totalProcessingTime"].as_u64().unwrap() >= 300,
        "{info}"
    );
}
