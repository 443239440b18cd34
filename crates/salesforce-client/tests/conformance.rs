//! One conformance suite, many backends: every behaviour is an `async fn(&Backend)`, run against
//! the emulator always and against a real org when credentials are set.

use std::collections::HashSet;
use std::io::Write;

use chrono::{Duration as ChronoDuration, Utc};
use csv::ByteRecord;
use futures::TryStreamExt;
use salesforce_client::bulk::ColumnDelimiter;
use salesforce_client::rest::CompositeGet;
use salesforce_client::{
    Error, IngestJobRequest, IngestOperation, IngestResultKind, JobState, QueryJobRequest,
    QueryOperation, QueryOptions, QueryPage,
};
use serde_json::Value;

use crate::backend::{Backend, fast_poll};

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod emulator {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let backend = crate::backend::Backend::emulator().await;
                    super::$name(&backend).await;
                }
            )*
        }
        mod real_org {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(backend) = crate::backend::Backend::real_org() else {
                        eprintln!("real org not configured (SALESFORCE_CLIENT_ID / SALESFORCE_REFRESH_TOKEN unset); skipped");
                        return;
                    };
                    super::$name(&backend).await;
                }
            )*
        }
    };
}

conformance!(
    authenticates_and_lists_versions,
    reads_limits_and_tracks_usage,
    describes_global_and_single,
    describes_many_in_one_call,
    query_paginates_with_batch_size,
    query_all_includes_deleted_rows,
    count_matches_records,
    updated_and_deleted_windows,
    split_select_queries_run,
    rest_errors_are_typed,
    bulk_query_streams_all_rows_in_pages,
    bulk_query_bad_soql_is_typed,
    bulk_query_abort_and_delete,
    bulk_ingest_roundtrip,
    bulk_ingest_abort,
    bulk_query_pages_one_at_a_time,
    composite_mixes_queries_and_replication_in_one_call,
    composite_refuses_a_sixth_query,
);

async fn authenticates_and_lists_versions(b: &Backend) {
    let instance = b.client.authenticate().await.unwrap();
    assert!(instance.scheme() == "https" || instance.host_str() == Some("127.0.0.1"));
    let versions = b.client.versions().await.unwrap();
    assert!(!versions.is_empty());
    let want = b.client.api_version().to_string();
    assert!(
        versions.iter().any(|v| v.version == want),
        "version {want} not served: {versions:?}"
    );
    assert!(
        versions
            .iter()
            .all(|v| v.url.starts_with("/services/data/v"))
    );
}

async fn reads_limits_and_tracks_usage(b: &Backend) {
    let limits = b.client.limits().await.unwrap();
    let daily = limits.get("DailyApiRequests").expect("DailyApiRequests");
    assert!(daily.max > 0 && daily.remaining <= daily.max);
    let usage = b.client.usage();
    assert!(usage.calls_made >= 1);
    assert!(
        usage.org_max.is_some(),
        "Sforce-Limit-Info was recorded: {usage:?}"
    );
    assert_eq!(usage.org_max, Some(daily.max as u64));
}

async fn describes_global_and_single(b: &Backend) {
    let global = b.client.describe_global().await.unwrap();
    let account = global
        .sobjects
        .iter()
        .find(|o| o.name == "Account")
        .expect("Account listed");
    assert!(account.queryable);
    assert_eq!(account.key_prefix.as_deref(), Some("001"));
    let d = b.client.describe("Account").await.unwrap();
    assert_eq!(d.name, "Account");
    let field = |n: &str| d.fields.iter().find(|f| f.name == n);
    assert_eq!(field("Id").unwrap().field_type, "id");
    assert_eq!(field("SystemModstamp").unwrap().field_type, "datetime");
    let city = field("BillingCity").expect("BillingCity");
    assert_eq!(city.compound_field_name.as_deref(), Some("BillingAddress"));
}

async fn describes_many_in_one_call(b: &Backend) {
    let before = b.emulator_calls().await;
    let used_before = b.client.usage().calls_made;
    let out = b
        .client
        .describe_many(&["Account", "Contact", "NoSuchObject__c"])
        .await
        .unwrap();
    assert_eq!(b.client.usage().calls_made - used_before, 1);
    if let (Some(before), Some(after)) = (before, b.emulator_calls().await) {
        assert_eq!(after - before, 1, "a /composite request counts as one call");
    }
    assert_eq!(out[0].as_ref().unwrap().name, "Account");
    assert_eq!(out[1].as_ref().unwrap().name, "Contact");
    let err = out[2].as_ref().unwrap_err();
    assert_eq!(err.status, 404);
    assert_eq!(err.error_code, "NOT_FOUND");
}

async fn query_paginates_with_batch_size(b: &Backend) {
    let pages: Vec<QueryPage<Value>> = b
        .client
        .query_pages(
            "SELECT Id, Name FROM Account ORDER BY Id",
            QueryOptions::default().with_batch_size(200),
        )
        .try_collect()
        .await
        .unwrap();
    let total = pages[0].total_size as usize;
    let records: Vec<&Value> = pages.iter().flat_map(|p| &p.records).collect();
    assert_eq!(records.len(), total);
    assert!(pages.iter().all(|p| p.records.len() <= 200));
    if total > 200 {
        assert!(pages.len() >= total.div_ceil(200));
    }
    assert!(pages.last().unwrap().done);
    let ids: HashSet<&str> = records.iter().map(|r| r["Id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), total, "no duplicates across pages");
    assert_eq!(records[0]["attributes"]["type"], "Account");
}

async fn query_all_includes_deleted_rows(b: &Backend) {
    let live = b.client.count("Account", None, false).await.unwrap();
    let all = b.client.count("Account", None, true).await.unwrap();
    assert!(all >= live);
    let deleted: Vec<Value> = b
        .client
        .query_records(
            "SELECT Id, IsDeleted FROM Account WHERE IsDeleted = true",
            QueryOptions::query_all(),
        )
        .try_collect()
        .await
        .unwrap();
    assert_eq!(deleted.len() as u64, all - live);
    assert!(deleted.iter().all(|r| r["IsDeleted"] == true));
    let hidden: Vec<Value> = b
        .client
        .query_records(
            "SELECT Id FROM Account WHERE IsDeleted = true",
            QueryOptions::default(),
        )
        .try_collect()
        .await
        .unwrap();
    assert!(hidden.is_empty(), "query never returns deleted rows");
}

async fn count_matches_records(b: &Backend) {
    let since = salesforce_client::soql::datetime_literal(Utc::now() - ChronoDuration::days(3650));
    let where_clause = format!("SystemModstamp >= {since}");
    let n = b
        .client
        .count("Account", Some(&where_clause), false)
        .await
        .unwrap();
    let rows: Vec<Value> = b
        .client
        .query_records(
            &format!("SELECT Id FROM Account WHERE {where_clause}"),
            QueryOptions::default(),
        )
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rows.len() as u64, n);
}

async fn updated_and_deleted_windows(b: &Backend) {
    let end = Utc::now();
    let start = end - ChronoDuration::days(10);
    let updated = b.client.get_updated("Account", start, end).await.unwrap();
    assert!(updated.latest_date_covered.is_some());
    let deleted = b.client.get_deleted("Account", start, end).await.unwrap();
    assert!(deleted.latest_date_covered.is_some());
    for d in &deleted.deleted_records {
        assert!(!d.id.is_empty() && !d.deleted_date.is_empty());
    }

    let calls = b.client.usage().calls_made;
    let many = b
        .client
        .get_updated_many(&["Account", "Contact"], start, end)
        .await
        .unwrap();
    assert_eq!(many[0].as_ref().unwrap().ids, updated.ids);
    assert!(many[1].is_ok());
    let many = b
        .client
        .get_deleted_many(&["Account", "Contact"], start, end)
        .await
        .unwrap();
    assert_eq!(
        many[0].as_ref().unwrap().deleted_records.len(),
        deleted.deleted_records.len()
    );
    assert_eq!(
        b.client.usage().calls_made - calls,
        2,
        "one call per composite request"
    );
}

async fn split_select_queries_run(b: &Backend) {
    let d = b.client.describe("Account").await.unwrap();
    let fields: Vec<&str> = d
        .fields
        .iter()
        .filter(|f| !matches!(f.field_type.as_str(), "address" | "location" | "base64"))
        .map(|f| f.name.as_str())
        .collect();
    let stmts = b
        .client
        .split_select("Account", &fields, "Id", " ORDER BY Id LIMIT 5", false)
        .await
        .unwrap();
    assert!(!stmts.is_empty());
    for s in &stmts {
        let page: QueryPage<Value> = b
            .client
            .query_page(s, QueryOptions::default())
            .await
            .unwrap();
        assert!(page.records.len() <= 5);
    }
}

async fn rest_errors_are_typed(b: &Backend) {
    let err = b
        .client
        .query_page::<Value>("SELECT Nope__c FROM Account", QueryOptions::default())
        .await
        .unwrap_err();
    let api = err.api_error().expect("an ApiError");
    assert_eq!(api.status, 400);
    assert_eq!(api.error_code, "INVALID_FIELD");
    assert_eq!(err.class(), salesforce_client::ErrorClass::Config);
    let err = b.client.describe("NoSuchObject__c").await.unwrap_err();
    assert_eq!(err.api_error().unwrap().error_code, "NOT_FOUND");
}

async fn bulk_query_streams_all_rows_in_pages(b: &Backend) {
    let expected = b.client.count("Account", None, true).await.unwrap();
    let req = QueryJobRequest::new(
        QueryOperation::QueryAll,
        "SELECT Id, Name, IsDeleted FROM Account",
    );
    let mut results = b
        .client
        .bulk_query(&req, &fast_poll(), Some(100))
        .await
        .unwrap();
    let mut row = ByteRecord::new();
    let mut ids = HashSet::new();
    while results.next_record(&mut row).await.unwrap() {
        assert_eq!(row.len(), 3);
        ids.insert(row[0].to_vec());
    }
    assert_eq!(
        results.header().iter().collect::<Vec<_>>(),
        vec![&b"Id"[..], &b"Name"[..], &b"IsDeleted"[..]]
    );
    assert_eq!(ids.len() as u64, expected);
    assert_eq!(results.records_read(), expected);
    if expected > 100 {
        assert!(results.pages_read() >= expected.div_ceil(100));
    }
    b.client.bulk_query_delete(results.job_id()).await.unwrap();
    let err = b
        .client
        .bulk_query_status(results.job_id())
        .await
        .unwrap_err();
    assert_eq!(err.api_error().unwrap().status, 404);
}

async fn bulk_query_bad_soql_is_typed(b: &Backend) {
    let req = QueryJobRequest::new(QueryOperation::Query, "SELECT Nope__c FROM Account");
    let err = match b.client.bulk_query_create(&req).await {
        Err(e) => e,
        Ok(job) => b
            .client
            .bulk_query_wait(&job.id, &fast_poll())
            .await
            .unwrap_err(),
    };
    match &err {
        Error::Api { source, .. } => assert_eq!(source.error_code, "INVALID_FIELD"),
        Error::BulkJob(salesforce_client::BulkJobError::Failed { error_message, .. }) => {
            assert!(
                error_message
                    .as_deref()
                    .unwrap_or_default()
                    .contains("Nope__c")
            )
        }
        other => panic!("unexpected error {other:?}"),
    }
}

async fn bulk_query_abort_and_delete(b: &Backend) {
    let req = QueryJobRequest::new(QueryOperation::Query, "SELECT Id FROM Account");
    let job = b.client.bulk_query_create(&req).await.unwrap();
    match b.client.bulk_query_abort(&job.id).await {
        Ok(info) => {
            assert_eq!(info.state, JobState::Aborted);
            let err = b
                .client
                .bulk_query_wait(&job.id, &fast_poll())
                .await
                .unwrap_err();
            assert!(matches!(
                err,
                Error::BulkJob(salesforce_client::BulkJobError::Aborted { .. })
            ));
        }
        // The job may already have completed; aborting a finished job is refused.
        Err(e) => assert_eq!(e.api_error().map(|a| a.status), Some(400), "{e}"),
    }
    b.client.bulk_query_wait(&job.id, &fast_poll()).await.ok();
    b.client.bulk_query_delete(&job.id).await.unwrap();
}

async fn bulk_ingest_roundtrip(b: &Backend) {
    let tag = format!("ConfTest{}", Utc::now().timestamp_millis());
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "LastName,Email").unwrap();
    writeln!(file, "{tag}A,a@example.com").unwrap();
    writeln!(file, "{tag}B,\"b@example.com\"").unwrap();
    writeln!(file, ",missing-last-name@example.com").unwrap();
    file.flush().unwrap();

    let job = b
        .client
        .bulk_ingest_create(&IngestJobRequest::new("Contact", IngestOperation::Insert))
        .await
        .unwrap();
    assert_eq!(job.state, JobState::Open);
    b.client
        .bulk_ingest_upload(&job.id, file.path())
        .await
        .unwrap();
    let closed = b.client.bulk_ingest_close(&job.id).await.unwrap();
    assert_eq!(closed.state, JobState::UploadComplete);
    let done = b
        .client
        .bulk_ingest_wait(&job.id, &fast_poll())
        .await
        .unwrap();
    assert_eq!(done.state, JobState::JobComplete);
    assert_eq!(done.number_records_processed, Some(3));
    assert_eq!(done.number_records_failed, Some(1));

    let mut ok = b
        .client
        .bulk_ingest_results(
            &job.id,
            IngestResultKind::Successful,
            ColumnDelimiter::Comma,
        )
        .await
        .unwrap();
    assert_eq!(&ok.header()[0], b"sf__Id");
    assert_eq!(&ok.header()[1], b"sf__Created");
    let mut row = ByteRecord::new();
    let mut created = Vec::new();
    while ok.read_record(&mut row).await.unwrap() {
        assert_eq!(&row[1], b"true");
        created.push(String::from_utf8(row[0].to_vec()).unwrap());
    }
    assert_eq!(created.len(), 2);

    let mut failed = b
        .client
        .bulk_ingest_results(&job.id, IngestResultKind::Failed, ColumnDelimiter::Comma)
        .await
        .unwrap();
    assert_eq!(&failed.header()[1], b"sf__Error");
    assert!(failed.read_record(&mut row).await.unwrap());
    assert!(row[1].starts_with(b"REQUIRED_FIELD_MISSING"), "{:?}", row);
    assert!(!failed.read_record(&mut row).await.unwrap());

    let rows: Vec<Value> = b
        .client
        .query_records(
            &format!("SELECT Id FROM Contact WHERE LastName LIKE '{tag}%'"),
            QueryOptions::default(),
        )
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "the source side sees what ingest wrote");
    b.client.bulk_ingest_delete(&job.id).await.unwrap();

    // Clean up with a delete job (also exercises the delete operation).
    let mut del = tempfile::NamedTempFile::new().unwrap();
    writeln!(del, "Id").unwrap();
    for id in &created {
        writeln!(del, "{id}").unwrap();
    }
    del.flush().unwrap();
    let job = b
        .client
        .bulk_ingest_create(&IngestJobRequest::new("Contact", IngestOperation::Delete))
        .await
        .unwrap();
    b.client
        .bulk_ingest_upload(&job.id, del.path())
        .await
        .unwrap();
    b.client.bulk_ingest_close(&job.id).await.unwrap();
    let done = b
        .client
        .bulk_ingest_wait(&job.id, &fast_poll())
        .await
        .unwrap();
    assert_eq!(done.number_records_failed, Some(0));
    let mut unprocessed = b
        .client
        .bulk_ingest_results(
            &job.id,
            IngestResultKind::Unprocessed,
            ColumnDelimiter::Comma,
        )
        .await
        .unwrap();
    assert!(!unprocessed.read_record(&mut row).await.unwrap());
    b.client.bulk_ingest_delete(&job.id).await.unwrap();
}

async fn bulk_ingest_abort(b: &Backend) {
    let job = b
        .client
        .bulk_ingest_create(&IngestJobRequest::new("Contact", IngestOperation::Insert))
        .await
        .unwrap();
    let aborted = b.client.bulk_ingest_abort(&job.id).await.unwrap();
    assert_eq!(aborted.state, JobState::Aborted);
    let status = b.client.bulk_ingest_status(&job.id).await.unwrap();
    assert_eq!(status.state, JobState::Aborted);
    b.client.bulk_ingest_delete(&job.id).await.unwrap();
}

async fn bulk_query_pages_one_at_a_time(b: &Backend) {
    let total = b.client.count("Account", None, false).await.unwrap();
    let req = QueryJobRequest::new(QueryOperation::Query, "SELECT Id FROM Account");
    let job = b.client.bulk_query_create(&req).await.unwrap();
    b.client
        .bulk_query_wait(&job.id, &fast_poll())
        .await
        .unwrap();
    let page_size = 100;
    let mut results = b
        .client
        .bulk_query_results(&job.id, ColumnDelimiter::Comma, Some(page_size))
        .unwrap();
    let mut row = ByteRecord::new();
    let mut seen = 0;
    while results.next_page().await.unwrap() {
        assert_eq!(&results.header()[0], b"Id");
        let mut in_page = 0;
        while results.read_record(&mut row).await.unwrap() {
            in_page += 1;
        }
        assert!(in_page <= page_size);
        seen += in_page;
        if seen < total {
            assert!(
                results.next_locator().is_some(),
                "a locator leads to the rest"
            );
        } else {
            assert!(results.next_locator().is_none());
        }
    }
    assert_eq!(seen, total);
    assert_eq!(results.pages_read(), total.div_ceil(page_size).max(1));
    results.delete_job().await.unwrap();
}

async fn composite_mixes_queries_and_replication_in_one_call(b: &Backend) {
    let end = Utc::now();
    let start = end - ChronoDuration::days(10);
    let calls = b.client.usage().calls_made;
    let before = b.emulator_calls().await;
    let requests = vec![
        CompositeGet::Query {
            soql: "SELECT Id, Name FROM Account WHERE Name != 'a+b' ORDER BY Id".into(),
            include_deleted: true,
        },
        CompositeGet::Updated {
            object: "Account".into(),
            start,
            end,
        },
        CompositeGet::Deleted {
            object: "Account".into(),
            start,
            end,
        },
        CompositeGet::Query {
            soql: "SELECT Id FROM NoSuchObject__c".into(),
            include_deleted: false,
        },
    ];
    let out = b.client.composite(&requests).await.unwrap();
    assert_eq!(b.client.usage().calls_made - calls, 1);
    if let (Some(before), Some(after)) = (before, b.emulator_calls().await) {
        assert_eq!(after - before, 1, "a /composite request counts as one call");
    }
    assert_eq!(out.len(), 4);
    let page: QueryPage<Value> = serde_json::from_value(out[0].clone().unwrap()).unwrap();
    let direct: QueryPage<Value> = b
        .client
        .query_page(
            "SELECT Id, Name FROM Account WHERE Name != 'a+b' ORDER BY Id",
            QueryOptions::query_all(),
        )
        .await
        .unwrap();
    assert_eq!(page.total_size, direct.total_size);
    assert_eq!(page.records, direct.records);
    let updated = b.client.get_updated("Account", start, end).await.unwrap();
    assert_eq!(
        out[1].as_ref().unwrap()["ids"],
        serde_json::json!(updated.ids)
    );
    assert!(out[2].as_ref().unwrap()["latestDateCovered"].is_string());
    let err = out[3].as_ref().unwrap_err();
    assert_eq!(err.status, 400);
    assert_eq!(err.error_code, "INVALID_TYPE");
}

async fn composite_refuses_a_sixth_query(b: &Backend) {
    let q = CompositeGet::Query {
        soql: "SELECT Id FROM Account".into(),
        include_deleted: false,
    };
    let calls = b.client.usage().calls_made;
    let err = b.client.composite(&vec![q; 6]).await.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert_eq!(
        b.client.usage().calls_made,
        calls,
        "refused before any call"
    );
}
