//! Bulk API 2.0 ingest jobs (§6): life cycles, row errors, result CSVs, counters, faults,
//! call counting and large uploads.

use crate::util::*;
use futures::StreamExt;
use reqwest::Method;
use salesforce_emulator::ids;
use serde_json::{Value, json};
use std::time::Duration;

pub(crate) async fn create(o: &Org, body: Value) -> (u16, Value) {
    let r = o
        .http
        .post(o.url("/jobs/ingest"))
        .bearer_auth(&o.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap())
}

pub(crate) async fn upload(o: &Org, id: &str, csv: &str) -> (u16, String) {
    let r = o
        .http
        .put(o.url(&format!("/jobs/ingest/{id}/batches")))
        .bearer_auth(&o.token)
        .header("Content-Type", "text/csv")
        .body(csv.to_string())
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.text().await.unwrap())
}

pub(crate) async fn patch(o: &Org, id: &str, state: &str) -> (u16, Value) {
    let r = o
        .http
        .patch(o.url(&format!("/jobs/ingest/{id}")))
        .bearer_auth(&o.token)
        .json(&json!({ "state": state }))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap())
}

pub(crate) async fn wait_done(o: &Org, id: &str) -> Value {
    for _ in 0..3000 {
        let (s, info) = o.get_json(&format!("/jobs/ingest/{id}")).await;
        assert_eq!(s, 200, "{info}");
        if !matches!(
            info["state"].as_str(),
            Some("Open" | "UploadComplete" | "InProgress")
        ) {
            return info;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {id} never finished");
}

pub(crate) async fn text(o: &Org, path: &str) -> (u16, String) {
    let r = o.get(path).await;
    let s = r.status().as_u16();
    (s, r.text().await.unwrap())
}

pub(crate) struct Done {
    pub(crate) id: String,
    pub(crate) info: Value,
    pub(crate) ok: String,
    pub(crate) failed: String,
    pub(crate) unprocessed: String,
}

/// Create → upload → close → wait → the three result CSVs.
pub(crate) async fn run_job(o: &Org, body: Value, csv: &str) -> Done {
    let (s, job) = create(o, body).await;
    assert_eq!(s, 200, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let (s, b) = upload(o, &id, csv).await;
    assert_eq!((s, b.as_str()), (201, ""));
    let (s, closed) = patch(o, &id, "UploadComplete").await;
    assert_eq!(s, 200, "{closed}");
    assert_eq!(closed["state"], "UploadComplete");
    let info = wait_done(o, &id).await;
    let ok = text(o, &format!("/jobs/ingest/{id}/successfulResults/")).await;
    let failed = text(o, &format!("/jobs/ingest/{id}/failedResults/")).await;
    let unprocessed = text(o, &format!("/jobs/ingest/{id}/unprocessedrecords/")).await;
    assert_eq!((ok.0, failed.0, unprocessed.0), (200, 200, 200));
    Done {
        id,
        info,
        ok: ok.1,
        failed: failed.1,
        unprocessed: unprocessed.1,
    }
}

pub(crate) fn org_config() -> salesforce_emulator::Config {
    let mut c = config(&[]);
    c.deleted_per_mille = 0;
    c
}

/// First cell of every data row of a result CSV (the `sf__Id` column).
pub(crate) fn first_cells(csv: &str) -> Vec<String> {
    csv.lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().trim_matches('"').to_string())
        .collect()
}

fn stamp_ms(rest: &str) -> i64 {
    chrono::DateTime::parse_from_str(rest, "%Y-%m-%dT%H:%M:%S%.3f%z")
        .unwrap()
        .timestamp_millis()
}

pub(crate) async fn record(o: &Org, soql: &str) -> Value {
    let (s, b) = o.query(soql).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["totalSize"], 1, "{soql}: {b}");
    b["records"][0].clone()
}

#[tokio::test]
async fn insert_life_cycle_results_counters_and_visibility() {
    let o = org(org_config()).await;
    let start = chrono::Utc::now().timestamp_millis();
    let (s, job) = create(&o, json!({"object": "account", "operation": "insert"})).await;
    assert_eq!(s, 200, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("750") && id.len() == 18);
    for (k, v) in [
        ("operation", json!("insert")),
        ("object", json!("Account")),
        ("state", json!("Open")),
        ("concurrencyMode", json!("Parallel")),
        ("contentType", json!("CSV")),
        ("apiVersion", json!(62.0)),
        ("lineEnding", json!("LF")),
        ("columnDelimiter", json!("COMMA")),
        ("jobType", json!("V2Ingest")),
        (
            "contentUrl",
            json!(format!("services/data/v62.0/jobs/ingest/{id}/batches")),
        ),
    ] {
        assert_eq!(job[k], v, "{k}: {job}");
    }
    assert!(job.get("externalIdFieldName").is_none());
    assert!(job.get("numberRecordsProcessed").is_none());
    let (s, info) = o.get_json(&format!("/jobs/ingest/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(info["state"], "Open");
    assert_eq!(info["numberRecordsProcessed"], 0);

    let csv = "Name,NumberOfEmployees,Description\n\
               Acme One,10,\"Says \"\"hi\"\", often\"\n\
               ,5,no name\n\
               Acme Two,#N/A,\"Line one\nLine two\"\n";
    let (s, b) = upload(&o, &id, csv).await;
    assert_eq!((s, b.as_str()), (201, ""));
    let (s, closed) = patch(&o, &id, "UploadComplete").await;
    assert_eq!(s, 200);
    assert_eq!(closed["state"], "UploadComplete");
    let info = wait_done(&o, &id).await;
    assert_eq!(info["state"], "JobComplete", "{info}");
    assert_eq!(info["numberRecordsProcessed"], 3);
    assert_eq!(info["numberRecordsFailed"], 1);
    assert_eq!(info["retries"], 0);
    assert!(info["totalProcessingTime"].is_u64());
    assert!(info["apiActiveProcessingTime"].is_u64());
    assert_eq!(info["apexProcessingTime"], 0);
    assert!(info.get("errorMessage").is_none());

    let (s, ok) = text(&o, &format!("/jobs/ingest/{id}/successfulResults/")).await;
    assert_eq!(s, 200);
    let new_ids = first_cells(&ok);
    let new_ids: Vec<&String> = new_ids.iter().filter(|c| c.starts_with("001")).collect();
    assert_eq!(new_ids.len(), 2, "{ok}");
    assert_eq!(
        ok,
        format!(
            "\"sf__Id\",\"sf__Created\",Name,NumberOfEmployees,Description\n\
             \"{}\",\"true\",\"Acme One\",\"10\",\"Says \"\"hi\"\", often\"\n\
             \"{}\",\"true\",\"Acme Two\",\"#N/A\",\"Line one\nLine two\"\n",
            new_ids[0], new_ids[1]
        )
    );
    let (_, failed) = text(&o, &format!("/jobs/ingest/{id}/failedResults")).await;
    assert_eq!(
        failed,
        "\"sf__Id\",\"sf__Error\",Name,NumberOfEmployees,Description\n\
         \"\",\"REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --\",\"\",\"5\",\"no name\"\n"
    );
    let (_, un) = text(&o, &format!("/jobs/ingest/{id}/unprocessedrecords/")).await;
    assert_eq!(un, "Name,NumberOfEmployees,Description\n");

    // Written rows are visible to SOQL with fresh stamps.
    let rec = record(
        &o,
        &format!(
            "SELECT Id, Name, NumberOfEmployees, Description, SystemModstamp, CreatedDate FROM Account WHERE Id = '{}'",
            new_ids[0]
        ),
    )
    .await;
    assert_eq!(rec["Name"], "Acme One");
    assert_eq!(rec["NumberOfEmployees"], 10);
    assert_eq!(rec["Description"], "Says \"hi\", often");
    assert!(stamp_ms(rec["SystemModstamp"].as_str().unwrap()) >= start - 1000);
    let rec = record(
        &o,
        &format!(
            "SELECT NumberOfEmployees, Description FROM Account WHERE Id = '{}'",
            new_ids[1]
        ),
    )
    .await;
    assert_eq!(rec["NumberOfEmployees"], Value::Null);
    assert_eq!(rec["Description"], "Line one\nLine two");
}

#[tokio::test]
async fn update_na_clears_empty_keeps_and_id_errors() {
    let o = org(org_config()).await;
    let before = record(
        &o,
        "SELECT Id, Phone, Website, SystemModstamp FROM Account WHERE Phone != null AND Website != null ORDER BY Id LIMIT 1",
    )
    .await;
    let id = before["Id"].as_str().unwrap().to_string();
    let missing = ids::make("001", 9_999_999);
    let other = record(&o, "SELECT Id FROM Account ORDER BY Id DESC LIMIT 1").await["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let csv = format!(
        "Id,Phone,Website\n{id},#N/A,\n{missing},1,\nnot-an-id,1,\n,1,\n{other},555,\n{other},556,\n"
    );
    let d = run_job(
        &o,
        json!({"object": "Account", "operation": "update"}),
        &csv,
    )
    .await;
    assert_eq!(d.info["state"], "JobComplete");
    assert_eq!(d.info["numberRecordsProcessed"], 6);
    assert_eq!(d.info["numberRecordsFailed"], 4);
    assert_eq!(
        d.ok,
        format!(
            "\"sf__Id\",\"sf__Created\",Id,Phone,Website\n\
             \"{id}\",\"false\",\"{id}\",\"#N/A\",\"\"\n\
             \"{other}\",\"false\",\"{other}\",\"555\",\"\"\n"
        )
    );
    assert_eq!(
        d.failed,
        format!(
            "\"sf__Id\",\"sf__Error\",Id,Phone,Website\n\
             \"{missing}\",\"INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--\",\"{missing}\",\"1\",\"\"\n\
             \"\",\"MALFORMED_ID:Account ID: id value of incorrect type: not-an-id:Id --\",\"not-an-id\",\"1\",\"\"\n\
             \"\",\"MISSING_ARGUMENT:Id not specified in an update call:Id --\",\"\",\"1\",\"\"\n\
             \"{other}\",\"DUPLICATE_VALUE:duplicate value found: <unknown> duplicates value on record with id: <unknown>:--\",\"{other}\",\"556\",\"\"\n"
        )
    );
    let after = record(
        &o,
        &format!("SELECT Phone, Website, SystemModstamp FROM Account WHERE Id = '{id}'"),
    )
    .await;
    assert_eq!(after["Phone"], Value::Null, "#N/A clears");
    assert_eq!(
        after["Website"], before["Website"],
        "empty leaves unchanged"
    );
    assert!(
        stamp_ms(after["SystemModstamp"].as_str().unwrap())
            > stamp_ms(before["SystemModstamp"].as_str().unwrap())
    );
    let other_rec = record(
        &o,
        &format!("SELECT Phone FROM Account WHERE Id = '{other}'"),
    )
    .await;
    assert_eq!(other_rec["Phone"], "555");
}

#[tokio::test]
async fn upsert_matches_external_ids_and_rejects_duplicates_in_a_batch() {
    let o = org(org_config()).await;
    let csv = "External_Id__c,Name\nACC-3,Renamed\nNEW-1,Brand New\nDUP-9,A\ndup-9,B\n";
    let d = run_job(
        &o,
        json!({"object": "Account", "operation": "upsert", "externalIdFieldName": "external_id__c"}),
        csv,
    )
    .await;
    assert_eq!(d.info["externalIdFieldName"], "External_Id__c");
    assert_eq!(d.info["numberRecordsProcessed"], 4);
    assert_eq!(d.info["numberRecordsFailed"], 2);
    let row3 = ids::make("001", 3);
    let created = first_cells(&d.ok)[1].clone();
    assert_ne!(created, row3);
    assert_eq!(
        d.ok,
        format!(
            "\"sf__Id\",\"sf__Created\",External_Id__c,Name\n\
             \"{row3}\",\"false\",\"ACC-3\",\"Renamed\"\n\
             \"{created}\",\"true\",\"NEW-1\",\"Brand New\"\n"
        )
    );
    assert_eq!(
        d.failed,
        "\"sf__Id\",\"sf__Error\",External_Id__c,Name\n\
         \"\",\"DUPLICATE_VALUE:Duplicate external id specified: DUP-9:--\",\"DUP-9\",\"A\"\n\
         \"\",\"DUPLICATE_VALUE:Duplicate external id specified: dup-9:--\",\"dup-9\",\"B\"\n"
    );
    let r = record(
        &o,
        &format!("SELECT Name, External_Id__c FROM Account WHERE Id = '{row3}'"),
    )
    .await;
    assert_eq!(r["Name"], "Renamed");
    let r = record(
        &o,
        "SELECT Id, Name FROM Account WHERE External_Id__c = 'NEW-1'",
    )
    .await;
    assert_eq!(r["Id"], created.as_str());

    // Relationship columns resolve parents by external id (§6.6).
    let csv =
        "Ext_Id__c,LastName,Account.External_Id__c\nC-NEW-1,Jones,ACC-5\nC-NEW-2,Dury,ACC-NOPE\n";
    let d = run_job(
        &o,
        json!({"object": "Contact", "operation": "upsert", "externalIdFieldName": "Ext_Id__c"}),
        csv,
    )
    .await;
    assert_eq!(d.info["numberRecordsFailed"], 1);
    assert_eq!(
        d.failed,
        "\"sf__Id\",\"sf__Error\",Ext_Id__c,LastName,Account.External_Id__c\n\
         \"\",\"INVALID_FIELD:Foreign key external ID: ACC-NOPE not found for field External_Id__c in entity Account:--\",\"C-NEW-2\",\"Dury\",\"ACC-NOPE\"\n"
    );
    let r = record(
        &o,
        "SELECT AccountId, LastName FROM Contact WHERE Ext_Id__c = 'C-NEW-1'",
    )
    .await;
    assert_eq!(r["AccountId"], ids::make("001", 5).as_str());
}

#[tokio::test]
async fn delete_and_hard_delete() {
    let o = org(org_config()).await;
    let (a, b, c) = (
        ids::make("001", 1),
        ids::make("001", 2),
        ids::make("001", 4),
    );
    let csv = format!("Id\n{a}\n{b}\nnot-an-id\n");
    let d = run_job(
        &o,
        json!({"object": "Account", "operation": "delete"}),
        &csv,
    )
    .await;
    assert_eq!(d.info["numberRecordsFailed"], 1);
    assert_eq!(
        d.ok,
        format!(
            "\"sf__Id\",\"sf__Created\",Id\n\"{a}\",\"false\",\"{a}\"\n\"{b}\",\"false\",\"{b}\"\n"
        )
    );
    assert_eq!(
        d.failed,
        "\"sf__Id\",\"sf__Error\",Id\n\"\",\"MALFORMED_ID:Account ID: id value of incorrect type: not-an-id:Id --\",\"not-an-id\"\n"
    );
    let (_, q) = o
        .query(&format!("SELECT Id FROM Account WHERE Id = '{a}'"))
        .await;
    assert_eq!(q["totalSize"], 0);
    let (_, q) = o
        .query_with(
            &format!("SELECT Id, IsDeleted FROM Account WHERE Id = '{a}'"),
            "queryAll",
            None,
        )
        .await;
    assert_eq!(q["records"][0]["IsDeleted"], true);

    let csv = format!("Id\n{a}\n");
    let d = run_job(
        &o,
        json!({"object": "Account", "operation": "delete"}),
        &csv,
    )
    .await;
    assert_eq!(
        d.failed,
        format!(
            "\"sf__Id\",\"sf__Error\",Id\n\"{a}\",\"ENTITY_IS_DELETED:entity is deleted:--\",\"{a}\"\n"
        )
    );

    let csv = format!("Id\n{c}\n");
    let d = run_job(
        &o,
        json!({"object": "Account", "operation": "hardDelete"}),
        &csv,
    )
    .await;
    assert_eq!(d.info["operation"], "hardDelete");
    assert_eq!(d.info["numberRecordsFailed"], 0);
    let (_, q) = o
        .query_with(
            &format!("SELECT Id FROM Account WHERE Id = '{c}'"),
            "queryAll",
            None,
        )
        .await;
    assert_eq!(q["totalSize"], 0, "hard-deleted rows leave no tombstone");
}

#[tokio::test]
async fn row_errors_use_salesforce_codes_and_forms() {
    let o = org(org_config()).await;
    let long = "N".repeat(81);
    let csv = format!(
        "Name,Status__c,Amount__c,Due_Date__c,Account__c,Total__c\n\
         Ok 1,Paid,12.5,2024-02-03,,\n\
         Bad pick,Nope,,,,\n\
         {long},,,,,\n\
         Bad num,,abc,,,\n\
         Bad date,,,1/1/2024,,\n\
         Bad ref,,,,xyz,\n\
         Formula,,,,,3\n\
         Short,row\n"
    );
    let d = run_job(
        &o,
        json!({"object": "Invoice__c", "operation": "insert"}),
        &csv,
    )
    .await;
    assert_eq!(d.info["numberRecordsProcessed"], 8);
    assert_eq!(d.info["numberRecordsFailed"], 7);
    let errors: Vec<String> = d
        .failed
        .lines()
        .skip(1)
        .map(|l| l.split("\",\"").nth(1).unwrap().to_string())
        .collect();
    assert_eq!(
        errors,
        vec![
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST:Status: bad value for restricted picklist field: Nope:Status__c --".to_string(),
            format!("STRING_TOO_LONG:Invoice Number: data value too large: {long} (max length=80):Name --"),
            "INVALID_FIELD:Failed to deserialize field at col 2. Due to, 'abc' is not a valid value for the type xsd:double:Amount__c --".to_string(),
            "INVALID_FIELD:Failed to deserialize field at col 3. Due to, '1/1/2024' is not a valid value for the type xsd:date:Due_Date__c --".to_string(),
            "MALFORMED_ID:Account: id value of incorrect type: xyz:Account__c --".to_string(),
            "INVALID_FIELD_FOR_INSERT_UPDATE:Unable to create/update fields: Total__c. Please check the security settings of this field and verify that it is read/write for your profile or permission set.:Total__c --".to_string(),
            "INVALID_FIELD:Record has 2 fields but the header row has 6:--".to_string(),
        ]
    );
    let ok_id = &first_cells(&d.ok)[0];
    let r = record(
        &o,
        &format!("SELECT Status__c, Amount__c, Due_Date__c, Total__c FROM Invoice__c WHERE Id = '{ok_id}'"),
    )
    .await;
    assert_eq!(r["Status__c"], "Paid");
    assert_eq!(r["Due_Date__c"], "2024-02-03");

    let some_id = ids::make("003", 1);
    let csv = format!(
        "Id,LastName,Email,Birthdate\n{some_id},X,,\n,Y,bad-email,\n,Z,,2024-13-01\n,W,w@example.com,#N/A\n"
    );
    let d = run_job(
        &o,
        json!({"object": "Contact", "operation": "insert"}),
        &csv,
    )
    .await;
    let errors: Vec<String> = d
        .failed
        .lines()
        .skip(1)
        .map(|l| l.split("\",\"").nth(1).unwrap().to_string())
        .collect();
    assert_eq!(
        errors,
        vec![
            "INVALID_FIELD_FOR_INSERT_UPDATE:cannot specify Id in an insert call:Id --",
            "INVALID_EMAIL_ADDRESS:Email: invalid email address: bad-email:Email --",
            "INVALID_FIELD:Failed to deserialize field at col 3. Due to, '2024-13-01' is not a valid value for the type xsd:date:Birthdate --",
        ]
    );
    assert_eq!(d.info["numberRecordsFailed"], 3);

    // An unknown column fails the whole job (§6.6); nothing is processed.
    let csv = "Name,Bogus__c\nA,1\nB,2\n";
    let d = run_job(&o, json!({"object": "Account", "operation": "insert"}), csv).await;
    assert_eq!(d.info["state"], "Failed");
    assert_eq!(
        d.info["errorMessage"],
        "InvalidBatch : Field name not found : Bogus__c"
    );
    assert_eq!(d.info["numberRecordsProcessed"], 0);
    assert_eq!(d.unprocessed, csv);
    assert_eq!(d.ok, "\"sf__Id\",\"sf__Created\",Name,Bogus__c\n");
    let (_, q) = o.query("SELECT Id FROM Account WHERE Name = 'A'").await;
    assert_eq!(q["totalSize"], 0);

    // The file's line ending must match the job's (§6.1).
    let csv = "Name\r\nCRLF Co\r\n";
    let d = run_job(&o, json!({"object": "Account", "operation": "insert"}), csv).await;
    assert_eq!(d.info["state"], "Failed");
    assert_eq!(
        d.info["errorMessage"],
        "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is LF"
    );
    let d = run_job(
        &o,
        json!({"object": "Account", "operation": "insert", "lineEnding": "CRLF"}),
        csv,
    )
    .await;
    assert_eq!(d.info["state"], "JobComplete");
    assert!(d.ok.ends_with("\"true\",\"CRLF Co\"\r\n"), "{:?}", d.ok);
}

#[tokio::test]
async fn delimiters_shape_the_result_csvs() {
    let o = org(org_config()).await;
    let csv = "Name|Description\nPipe Co|a,b\n|\"x|y\"\n";
    let d = run_job(
        &o,
        json!({"object": "Account", "operation": "insert", "columnDelimiter": "PIPE"}),
        csv,
    )
    .await;
    assert_eq!(d.info["columnDelimiter"], "PIPE");
    let id =
        d.ok.lines()
            .nth(1)
            .unwrap()
            .split('|')
            .next()
            .unwrap()
            .trim_matches('"')
            .to_string();
    assert_eq!(
        d.ok,
        format!(
            "\"sf__Id\"|\"sf__Created\"|Name|Description\n\"{id}\"|\"true\"|\"Pipe Co\"|\"a,b\"\n"
        )
    );
    assert_eq!(
        d.failed,
        "\"sf__Id\"|\"sf__Error\"|Name|Description\n\"\"|\"REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --\"|\"\"|\"x|y\"\n"
    );
}

#[tokio::test]
async fn abort_delete_and_state_rules() {
    let o = org(org_config()).await;
    let (_, job) = create(&o, json!({"object": "Account", "operation": "insert"})).await;
    let id = job["id"].as_str().unwrap().to_string();
    // Results are not available while the job is Open; Open jobs cannot be deleted.
    let (s, _) = text(&o, &format!("/jobs/ingest/{id}/successfulResults/")).await;
    assert_eq!(s, 400);
    let r = o
        .http
        .delete(o.url(&format!("/jobs/ingest/{id}")))
        .bearer_auth(&o.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let b: Value = r.json().await.unwrap();
    assert_eq!(error_code(&b), "API_ERROR");

    let csv = "Name,Phone\nA1,1\nA2,2\n";
    assert_eq!(upload(&o, &id, csv).await.0, 201);
    let (s, b) = upload(&o, &id, csv).await;
    assert_eq!(s, 400);
    let b: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(error_code(&b), "BULK_API_ERROR");
    assert!(
        b[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("Found multiple contents for job")
    );

    let (s, b) = patch(&o, &id, "JobComplete").await;
    assert_eq!((s, error_code(&b)), (400, "INVALIDJOBSTATE"));
    let (s, b) = patch(&o, &id, "Aborted").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["state"], "Aborted");
    let (_, info) = o.get_json(&format!("/jobs/ingest/{id}")).await;
    assert_eq!(info["state"], "Aborted");
    assert_eq!(info["numberRecordsProcessed"], 0);
    let (s, b) = patch(&o, &id, "UploadComplete").await;
    assert_eq!((s, error_code(&b)), (400, "INVALIDJOBSTATE"));
    assert_eq!(
        b[0]["message"],
        "InvalidJobState : Closing already Aborted Job not allowed"
    );
    let (s, b) = patch(&o, &id, "Aborted").await;
    assert_eq!((s, error_code(&b)), (400, "INVALIDJOBSTATE"));
    let (_, un) = text(&o, &format!("/jobs/ingest/{id}/unprocessedrecords/")).await;
    assert_eq!(un, csv);
    let (_, ok) = text(&o, &format!("/jobs/ingest/{id}/successfulResults/")).await;
    assert_eq!(ok, "\"sf__Id\",\"sf__Created\",Name,Phone\n");
    let (_, q) = o.query("SELECT Id FROM Account WHERE Name = 'A1'").await;
    assert_eq!(q["totalSize"], 0, "aborted rows are not written");

    let r = o
        .http
        .delete(o.url(&format!("/jobs/ingest/{id}")))
        .bearer_auth(&o.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(r.text().await.unwrap(), "");
    let (s, b) = o.get_json(&format!("/jobs/ingest/{id}")).await;
    assert_eq!((s, error_code(&b)), (404, "NOT_FOUND"));

    // No upload after close; no upload to an unknown job.
    let (_, job) = create(&o, json!({"object": "Account", "operation": "insert"})).await;
    let id2 = job["id"].as_str().unwrap().to_string();
    assert_eq!(patch(&o, &id2, "UploadComplete").await.0, 200);
    let (s, b) = upload(&o, &id2, csv).await;
    assert_eq!(s, 400, "{b}");
    let info = wait_done(&o, &id2).await;
    assert_eq!(
        info["state"], "JobComplete",
        "a job closed without data completes empty"
    );
    assert_eq!(info["numberRecordsProcessed"], 0);
    let (s, _) = upload(&o, &ids::make("750", 99_999), csv).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn create_validation_errors() {
    let o = org(org_config()).await;
    let cases = [
        (
            json!({"object": "Account", "operation": "upsert"}),
            "INVALIDJOB",
            "InvalidJob : External ID was blank for Account. An External ID must be specified for upsert.",
        ),
        (
            json!({"object": "Account", "operation": "upsert", "externalIdFieldName": "Name"}),
            "INVALIDJOB",
            "InvalidJob : Field name provided, Name is not an External ID or indexed field for Account",
        ),
        (
            json!({"object": "Account", "operation": "merge"}),
            "INVALIDJOB",
            "InvalidJob : Invalid operation: merge",
        ),
        (
            json!({"object": "Nope__c", "operation": "insert"}),
            "INVALIDJOB",
            "InvalidJob : Unable to find object: Nope__c",
        ),
        (
            json!({"operation": "insert"}),
            "INVALIDJOB",
            "InvalidJob : Object is required",
        ),
        (
            json!({"object": "Account", "operation": "insert", "columnDelimiter": "COLON"}),
            "INVALIDJOB",
            "InvalidJob : Invalid column delimiter: COLON",
        ),
        (
            json!({"object": "Account", "operation": "insert", "lineEnding": "CR"}),
            "INVALIDJOB",
            "InvalidJob : Invalid line ending: CR",
        ),
        (
            json!({"object": "Account", "operation": "insert", "contentType": "JSON"}),
            "INVALIDJOB",
            "InvalidJob : Invalid content type: JSON",
        ),
        (
            json!({"object": "Attachment", "operation": "insert"}),
            "INVALIDENTITY",
            "Entity 'Attachment' is not supported by the Bulk API.",
        ),
        (
            json!({"object": "ActiveProfileMetric", "operation": "insert"}),
            "INVALIDJOB",
            "InvalidJob : Entity type ActiveProfileMetric does not support insert",
        ),
    ];
    for (body, code, msg) in cases {
        let (s, b) = create(&o, body.clone()).await;
        assert_eq!(s, 400, "{body}: {b}");
        assert_eq!(error_code(&b), code, "{body}: {b}");
        assert_eq!(b[0]["message"], msg, "{body}");
    }
    let r = o
        .http
        .post(o.url("/jobs/ingest"))
        .bearer_auth(&o.token)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let b: Value = r.json().await.unwrap();
    assert_eq!(error_code(&b), "JSON_PARSER_ERROR");
    // Ingest exists from v41.0 (§6.1).
    let r = o
        .http
        .post(format!("{}/services/data/v40.0/jobs/ingest", o.h.base_url))
        .bearer_auth(&o.token)
        .json(&json!({"object": "Account", "operation": "insert"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // Unauthenticated calls get the usual 401.
    let r = o
        .http
        .post(o.url("/jobs/ingest"))
        .json(&json!({"object": "Account", "operation": "insert"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn list_pages_ingest_jobs() {
    let o = org(org_config()).await;
    let mut made = Vec::new();
    for _ in 0..3 {
        let (_, j) = create(&o, json!({"object": "Contact", "operation": "insert"})).await;
        made.push(j["id"].as_str().unwrap().to_string());
    }
    let (s, l) = o.get_json("/jobs/ingest").await;
    assert_eq!(s, 200);
    assert_eq!(l["done"], true);
    assert_eq!(l["nextRecordsUrl"], Value::Null);
    let listed: Vec<&str> = l["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, made.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(l["records"][0]["jobType"], "V2Ingest");
    let (_, l) = o.get_json("/jobs/ingest?jobType=V2Query").await;
    assert_eq!(l["records"].as_array().unwrap().len(), 0);

    // Pages hold at most 1,000 jobs (§5.7 paging shape).
    for _ in 0..998 {
        let (s, _) = create(&o, json!({"object": "Contact", "operation": "delete"})).await;
        assert_eq!(s, 200);
    }
    let (_, l) = o.get_json("/jobs/ingest").await;
    assert_eq!(l["records"].as_array().unwrap().len(), 1000);
    assert_eq!(l["done"], false);
    let next = l["nextRecordsUrl"].as_str().unwrap();
    assert_eq!(next, "/services/data/v62.0/jobs/ingest?queryLocator=1000");
    let r = o
        .http
        .get(format!("{}{next}", o.h.base_url))
        .bearer_auth(&o.token)
        .send()
        .await
        .unwrap();
    let l: Value = r.json().await.unwrap();
    assert_eq!(l["done"], true);
    assert_eq!(l["records"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn failed_rows_carry_sf_id_from_v53() {
    let o = org(org_config()).await;
    let missing = ids::make("001", 9_999_999);
    for (v, expect_id) in [("v52.0", ""), ("v53.0", missing.as_str())] {
        let base = format!("{}/services/data/{v}/jobs/ingest", o.h.base_url);
        let job: Value = o
            .http
            .post(&base)
            .bearer_auth(&o.token)
            .json(&json!({"object": "Account", "operation": "update"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = job["id"].as_str().unwrap();
        assert_eq!(
            job["contentUrl"],
            format!("services/data/{v}/jobs/ingest/{id}/batches")
        );
        let r = o
            .http
            .put(format!("{base}/{id}/batches"))
            .bearer_auth(&o.token)
            .header("Content-Type", "text/csv")
            .body(format!("Id,Phone\n{missing},1\n"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        assert_eq!(patch(&o, id, "UploadComplete").await.0, 200);
        wait_done(&o, id).await;
        let (_, failed) = text(&o, &format!("/jobs/ingest/{id}/failedResults/")).await;
        assert_eq!(
            failed,
            format!(
                "\"sf__Id\",\"sf__Error\",Id,Phone\n\"{expect_id}\",\"INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--\",\"{missing}\",\"1\"\n"
            )
        );
    }
}

#[tokio::test]
async fn latency_switches_and_injected_faults() {
    let o = org(org_config()).await;
    o.admin(
        Method::PUT,
        "/switches",
        json!({"bulk_queued_ms": 1000, "bulk_processing_ms": 500}),
    )
    .await;
    let (_, job) = create(&o, json!({"object": "Account", "operation": "insert"})).await;
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(upload(&o, &id, "Name\nSlow Co\n").await.0, 201);
    assert_eq!(patch(&o, &id, "UploadComplete").await.0, 200);
    let (_, info) = o.get_json(&format!("/jobs/ingest/{id}")).await;
    assert_eq!(info["state"], "UploadComplete");
    let mut seen_in_progress = false;
    let info = loop {
        let (_, info) = o.get_json(&format!("/jobs/ingest/{id}")).await;
        match info["state"].as_str().unwrap() {
            "UploadComplete" => {}
            "InProgress" => seen_in_progress = true,
            _ => break info,
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(seen_in_progress);
    assert_eq!(info["state"], "JobComplete");
    assert!(info["totalProcessingTime"].as_u64().unwrap() >= 500);

    // Aborting while queued leaves every row unprocessed.
    let (_, job) = create(&o, json!({"object": "Account", "operation": "insert"})).await;
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(upload(&o, &id, "Name\nNever Co\n").await.0, 201);
    assert_eq!(patch(&o, &id, "UploadComplete").await.0, 200);
    assert_eq!(patch(&o, &id, "Aborted").await.0, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (_, info) = o.get_json(&format!("/jobs/ingest/{id}")).await;
    assert_eq!(info["state"], "Aborted");
    let (_, q) = o
        .query("SELECT Id FROM Account WHERE Name = 'Never Co'")
        .await;
    assert_eq!(q["totalSize"], 0);
    o.admin(Method::PUT, "/switches", json!({})).await;

    // Failed fault on a one-batch job: nothing processed, everything unprocessed.
    o.admin(Method::PUT, "/faults", json!({"next_job": "failed"}))
        .await;
    let csv = "Name\nF1\nF2\n";
    let d = run_job(&o, json!({"object": "Account", "operation": "insert"}), csv).await;
    assert_eq!(d.info["state"], "Failed");
    assert!(
        d.info["errorMessage"]
            .as_str()
            .unwrap()
            .contains("injected")
    );
    assert_eq!(d.unprocessed, csv);
    assert_eq!(d.ok, "\"sf__Id\",\"sf__Created\",Name\n");

    // Failed fault on a multi-batch job: the first internal batch (10,000 rows) is written, the
    // rest is unprocessed (§6.7).
    o.admin(Method::PUT, "/faults", json!({"next_job": "failed"}))
        .await;
    let mut csv = String::from("Name\n");
    for i in 0..12_500 {
        csv.push_str(&format!("Batch {i}\n"));
    }
    let d = run_job(
        &o,
        json!({"object": "Account", "operation": "insert"}),
        &csv,
    )
    .await;
    assert_eq!(d.info["state"], "Failed");
    assert_eq!(d.info["numberRecordsProcessed"], 10_000);
    assert_eq!(d.ok.lines().count(), 10_001);
    let un: Vec<&str> = d.unprocessed.lines().collect();
    assert_eq!(un.len(), 2_501);
    assert_eq!(un[0], "Name");
    assert_eq!(un[1], "Batch 10000");
    assert_eq!(un[2_500], "Batch 12499");
    let _ = d.id;
}

#[tokio::test]
async fn ingest_calls_are_counted_per_endpoint() {
    let o = org(org_config()).await;
    o.admin(Method::POST, "/reset", json!({})).await;
    let d = run_job(
        &o,
        json!({"object": "Account", "operation": "insert"}),
        "Name\nCounted\n",
    )
    .await;
    let (s, _) = o.get_json("/jobs/ingest").await;
    assert_eq!(s, 200);
    let r = o
        .http
        .delete(o.url(&format!("/jobs/ingest/{}", d.id)))
        .bearer_auth(&o.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let calls = o.calls().await;
    let by = &calls["by_endpoint"];
    let p = "/services/data/{version}/jobs/ingest";
    assert_eq!(by[format!("POST {p}")], 1, "{calls}");
    assert_eq!(by[format!("PUT {p}/{{job}}/batches")], 1, "{calls}");
    assert_eq!(by[format!("PATCH {p}/{{job}}")], 1, "{calls}");
    assert_eq!(by[format!("DELETE {p}/{{job}}")], 1, "{calls}");
    assert_eq!(by[format!("GET {p}")], 1, "{calls}");
    assert_eq!(
        by[format!("GET {p}/{{job}}/successfulResults/")],
        1,
        "{calls}"
    );
    assert_eq!(by[format!("GET {p}/{{job}}/failedResults/")], 1, "{calls}");
    assert_eq!(
        by[format!("GET {p}/{{job}}/unprocessedrecords/")],
        1,
        "{calls}"
    );
    let polls = by[format!("GET {p}/{{job}}")].as_u64().unwrap();
    assert!(polls >= 1);
    let sum: u64 = by
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.contains("/jobs/ingest"))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        calls["total"].as_u64().unwrap(),
        sum,
        "only API calls are counted: {calls}"
    );
    assert_eq!(sum, 8 + polls);
}

fn rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A streamed request body of `rows` CSV rows produced on the fly.
fn streamed_csv(
    rows: usize,
    row: impl Fn(usize) -> String + Send + Sync + 'static,
) -> reqwest::Body {
    let row = std::sync::Arc::new(row);
    let chunks = futures::stream::iter((0..rows).step_by(1000)).map(move |start| {
        let mut s = String::with_capacity(1000 * 300);
        if start == 0 {
            s.push_str("Name,Description\n");
        }
        for i in start..(start + 1000).min(rows) {
            s.push_str(&row(i));
        }
        Ok::<_, std::io::Error>(bytes::Bytes::from(s))
    });
    reqwest::Body::wrap_stream(chunks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_is_streamed_with_flat_memory() {
    let o = org(org_config()).await;
    let (_, job) = create(&o, json!({"object": "Account", "operation": "insert"})).await;
    let id = job["id"].as_str().unwrap().to_string();
    let rows = 200_000usize;
    let filler = "x".repeat(240);
    let body = streamed_csv(rows, move |i| {
        // One row in a thousand has a Name and is written; the rest fail REQUIRED_FIELD_MISSING.
        if i % 1000 == 0 {
            format!("Big {i},{filler}\n")
        } else {
            format!(",{filler}\n")
        }
    });
    let before = rss_kb();
    let r = o
        .http
        .put(o.url(&format!("/jobs/ingest/{id}/batches")))
        .bearer_auth(&o.token)
        .header("Content-Type", "text/csv")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let after_upload = rss_kb();
    // ~49 MB uploaded; memory must not follow it.
    assert!(
        after_upload.saturating_sub(before) < 20 * 1024,
        "RSS grew {} kB during a 49 MB upload",
        after_upload - before
    );
    assert_eq!(patch(&o, &id, "UploadComplete").await.0, 200);
    let info = wait_done(&o, &id).await;
    assert_eq!(info["state"], "JobComplete", "{info}");
    assert_eq!(info["numberRecordsProcessed"], 200_000);
    assert_eq!(info["numberRecordsFailed"], 199_800);
    // Stream the failed results without holding them.
    let r = o.get(&format!("/jobs/ingest/{id}/failedResults/")).await;
    let mut lines = 0usize;
    let mut stream = r.bytes_stream();
    while let Some(chunk) = stream.next().await {
        lines += chunk.unwrap().iter().filter(|&&c| c == b'\n').count();
    }
    assert_eq!(lines, 199_801);
    let after_all = rss_kb();
    assert!(
        after_all.saturating_sub(before) < 64 * 1024,
        "RSS grew {} kB while processing 200k rows",
        after_all - before
    );
    let (_, q) = o
        .query("SELECT COUNT() FROM Account WHERE Name LIKE 'Big %'")
        .await;
    assert_eq!(q["totalSize"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_150_mb_base64_are_refused() {
    let o = org(org_config()).await;
    let (_, job) = create(&o, json!({"object": "Account", "operation": "insert"})).await;
    let id = job["id"].as_str().unwrap().to_string();
    // 115 MB raw is ~153 MB after base64: over the limit.
    let chunk = bytes::Bytes::from(vec![b'a'; 1_000_000]);
    let body = reqwest::Body::wrap_stream(futures::stream::iter(
        (0..115).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    ));
    let r = o
        .http
        .put(o.url(&format!("/jobs/ingest/{id}/batches")))
        .bearer_auth(&o.token)
        .header("Content-Type", "text/csv")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let b: Value = r.json().await.unwrap();
    assert_eq!(error_code(&b), "EXCEEDED_MAX_SIZE_REQUEST");
    // The job stays Open and accepts a proper upload.
    assert_eq!(upload(&o, &id, "Name\nAfter Co\n").await.0, 201);

    // A declared Content-Length over the limit is refused before the body is read.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_, job) = create(&o, json!({"object": "Account", "operation": "insert"})).await;
    let id = job["id"].as_str().unwrap().to_string();
    let addr = o.h.base_url.trim_start_matches("http://").to_string();
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "PUT /services/data/v62.0/jobs/ingest/{id}/batches HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Type: text/csv\r\nContent-Length: 200000000\r\n\r\nName\n",
        o.token
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}

#[tokio::test]
async fn compressed_uploads_and_results() {
    use std::io::{Read, Write};
    let o = org(org_config()).await;
    let (_, job) = create(&o, json!({"object": "Account", "operation": "insert"})).await;
    let id = job["id"].as_str().unwrap().to_string();
    let csv = "Name,Description\nZipped Co,compressed upload\n,no name\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(csv.as_bytes()).unwrap();
    let r = o
        .http
        .put(o.url(&format!("/jobs/ingest/{id}/batches")))
        .bearer_auth(&o.token)
        .header("Content-Type", "text/csv")
        .header("Content-Encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(patch(&o, &id, "UploadComplete").await.0, 200);
    let info = wait_done(&o, &id).await;
    assert_eq!(info["numberRecordsProcessed"], 2);
    assert_eq!(info["numberRecordsFailed"], 1);
    let r = record(
        &o,
        "SELECT Description FROM Account WHERE Name = 'Zipped Co'",
    )
    .await;
    assert_eq!(r["Description"], "compressed upload");

    // Results are gzip-compressed only when asked for.
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let url = o.url(&format!("/jobs/ingest/{id}/failedResults/"));
    let plain = raw.get(&url).bearer_auth(&o.token).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(plain.headers()["content-type"], "text/csv");
    let plain = plain.text().await.unwrap();
    assert_eq!(
        plain,
        "\"sf__Id\",\"sf__Error\",Name,Description\n\"\",\"REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --\",\"\",\"no name\"\n"
    );
    let zipped = raw
        .get(&url)
        .bearer_auth(&o.token)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    let body = zipped.bytes().await.unwrap();
    let mut out = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, plain);

    // Unknown encodings and corrupt bodies are refused.
    let (_, job) = create(&o, json!({"object": "Account", "operation": "insert"})).await;
    let id = job["id"].as_str().unwrap().to_string();
    for (enc, body, status) in [("br", &b"x"[..], 415), ("gzip", &b"not gzip"[..], 400)] {
        let r = o
            .http
            .put(o.url(&format!("/jobs/ingest/{id}/batches")))
            .bearer_auth(&o.token)
            .header("Content-Type", "text/csv")
            .header("Content-Encoding", enc)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{enc}");
    }
    let r = o
        .http
        .put(o.url(&format!("/jobs/ingest/{id}/batches")))
        .bearer_auth(&o.token)
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415, "job data must be text/csv");
    assert_eq!(upload(&o, &id, "Name\nPlain Co\n").await.0, 201);
}

#[tokio::test]
async fn blank_lines_bom_and_missing_final_newline() {
    let o = org(org_config()).await;
    let csv = "\u{feff}Name,Phone\nBlank A,1\n\nBlank B,2";
    let d = run_job(&o, json!({"object": "Account", "operation": "insert"}), csv).await;
    assert_eq!(d.info["numberRecordsProcessed"], 2, "{}", d.failed);
    assert_eq!(d.info["numberRecordsFailed"], 0);
    assert!(d.ok.starts_with("\"sf__Id\",\"sf__Created\",Name,Phone\n"));
    let (_, q) = o
        .query("SELECT Name FROM Account WHERE Name IN ('Blank A', 'Blank B')")
        .await;
    assert_eq!(q["totalSize"], 2);
}

async fn post_multipart(o: &Org, content_type: &str, body: String) -> (u16, Value) {
    let r = o
        .http
        .post(o.url("/jobs/ingest/"))
        .bearer_auth(&o.token)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap())
}

#[tokio::test]
async fn multipart_create_uploads_and_closes_in_one_call() {
    let o = org(org_config()).await;
    o.admin(Method::POST, "/reset", json!({})).await;
    // The documentation's example shape, with bare LF line breaks.
    let body = "--BOUNDARY\nContent-Type: application/json\nContent-Disposition: form-data; name=\"job\"\n\n\
        {\"object\":\"Contact\",\"contentType\":\"CSV\",\"operation\":\"insert\",\"lineEnding\":\"LF\"}\n\n\
        --BOUNDARY\nContent-Type: text/csv\nContent-Disposition: form-data; name=\"content\"; filename=\"content\"\n\n\
        FirstName,LastName,MailingCity\nAstro,Nomical,San Francisco\nHootie,McOwl,San Francisco\n--BOUNDARY--\n";
    let (s, job) = post_multipart(
        &o,
        "multipart/form-data; boundary=\"BOUNDARY\"",
        body.into(),
    )
    .await;
    assert_eq!(s, 200, "{job}");
    assert_eq!(job["state"], "UploadComplete");
    assert_eq!(job["object"], "Contact");
    let id = job["id"].as_str().unwrap().to_string();
    let info = wait_done(&o, &id).await;
    assert_eq!(info["state"], "JobComplete", "{info}");
    assert_eq!(info["numberRecordsProcessed"], 2);
    assert_eq!(info["numberRecordsFailed"], 0);
    let r = record(
        &o,
        "SELECT MailingCity FROM Contact WHERE LastName = 'McOwl'",
    )
    .await;
    assert_eq!(r["MailingCity"], "San Francisco");
    let calls = o.calls().await;
    assert_eq!(
        calls["by_endpoint"]["POST /services/data/{version}/jobs/ingest/"], 1,
        "{calls}"
    );
    // Already closed: no upload, no second close.
    assert_eq!(upload(&o, &id, "LastName\nX\n").await.0, 400);
    assert_eq!(patch(&o, &id, "UploadComplete").await.0, 400);

    // CRLF framing and data.
    let body = "--b1\r\nContent-Disposition: form-data; name=\"job\"\r\nContent-Type: application/json\r\n\r\n\
        {\"object\":\"Contact\",\"operation\":\"insert\",\"lineEnding\":\"CRLF\"}\r\n\
        --b1\r\nContent-Disposition: form-data; name=\"content\"; filename=\"content\"\r\nContent-Type: text/csv\r\n\r\n\
        LastName\r\nCrlf One\r\n\r\n--b1--\r\n";
    let (s, job) = post_multipart(&o, "multipart/form-data; boundary=b1", body.into()).await;
    assert_eq!(s, 200, "{job}");
    let info = wait_done(&o, job["id"].as_str().unwrap()).await;
    assert_eq!(info["state"], "JobComplete", "{info}");
    assert_eq!(info["numberRecordsProcessed"], 1);

    // Over 100,000 characters, or a missing part: refused, no job is made.
    let big = format!(
        "--b\r\nContent-Disposition: form-data; name=\"job\"\r\n\r\n{{\"object\":\"Contact\",\"operation\":\"insert\"}}\r\n--b\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\nLastName\r\n{}\r\n--b--\r\n",
        "x".repeat(100_001)
    );
    let (s, b) = post_multipart(&o, "multipart/form-data; boundary=b", big).await;
    assert_eq!((s, error_code(&b)), (400, "INVALIDJOB"));
    let only_job = "--b\r\nContent-Disposition: form-data; name=\"job\"\r\n\r\n{\"object\":\"Contact\",\"operation\":\"insert\"}\r\n--b--\r\n";
    let (s, b) = post_multipart(&o, "multipart/form-data; boundary=b", only_job.into()).await;
    assert_eq!((s, error_code(&b)), (400, "INVALIDJOB"));
    let (_, l) = o.get_json("/jobs/ingest").await;
    assert_eq!(l["records"].as_array().unwrap().len(), 2);
}

/// Successful results are rendered from the upload and the recorded outcomes when asked for:
/// across several internal batches, exactly the written rows, in upload order, each with its own
/// id and cells; the rows read back through SOQL with every value type intact.
#[tokio::test]
async fn successful_results_span_internal_batches_in_upload_order() {
    let o = org(org_config()).await;
    let rows = 25_000usize;
    let mut csv = String::from("Name,NumberOfEmployees,AnnualRevenue,Description\n");
    for i in 0..rows {
        if i % 7 == 3 {
            // No Name: REQUIRED_FIELD_MISSING.
            csv.push_str(&format!(",{i},1.5,skipped {i}\n"));
        } else {
            csv.push_str(&format!("Lazy {i},{i},{i}.25,\"row {i}, quoted\"\n"));
        }
    }
    let done = run_job(
        &o,
        json!({"object": "Account", "operation": "insert"}),
        &csv,
    )
    .await;
    let failed_rows = (0..rows).filter(|i| i % 7 == 3).count();
    assert_eq!(done.info["numberRecordsProcessed"], rows as u64);
    assert_eq!(done.info["numberRecordsFailed"], failed_rows as u64);
    let mut lines = done.ok.lines();
    assert_eq!(
        lines.next(),
        Some("\"sf__Id\",\"sf__Created\",Name,NumberOfEmployees,AnnualRevenue,Description")
    );
    let ok: Vec<&str> = lines.collect();
    assert_eq!(ok.len(), rows - failed_rows);
    let written = (0..rows).filter(|i| i % 7 != 3);
    let mut ids = std::collections::HashSet::new();
    for (line, i) in ok.iter().zip(written) {
        let id = line.split(',').next().unwrap().trim_matches('"');
        assert!(id.starts_with("001") && id.len() == 18, "{line}");
        assert!(ids.insert(id.to_string()), "id {id} repeated");
        assert_eq!(
            &line[id.len() + 3..],
            format!("\"true\",\"Lazy {i}\",\"{i}\",\"{i}.25\",\"row {i}, quoted\""),
        );
    }
    assert_eq!(done.failed.lines().count(), failed_rows + 1);
    // Spot checks through SOQL: the packed rows keep every value.
    for k in [0usize, 9_999, ok.len() - 1] {
        let id = ok[k].split(',').next().unwrap().trim_matches('"');
        let rec = record(
            &o,
            &format!(
                "SELECT Name, NumberOfEmployees, AnnualRevenue, Description, IsDeleted, CreatedById, CreatedDate FROM Account WHERE Id = '{id}'"
            ),
        )
        .await;
        let name = rec["Name"].as_str().unwrap().to_string();
        let i: u64 = name.trim_start_matches("Lazy ").parse().unwrap();
        assert_eq!(rec["NumberOfEmployees"], i);
        assert_eq!(rec["AnnualRevenue"], i as f64 + 0.25);
        assert_eq!(rec["Description"], format!("row {i}, quoted"));
        assert_eq!(rec["IsDeleted"], false);
        assert!(rec["CreatedById"].as_str().unwrap().starts_with("005"));
        assert!(rec["CreatedDate"].is_string());
    }
}
