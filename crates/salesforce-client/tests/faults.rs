//! Emulator-only tests: injected failures and what the client does about them, and the grants a
//! real-org run cannot cover from `SALESFORCE_*` variables (JWT bearer, client credentials).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use csv::ByteRecord;
use futures::TryStreamExt;
use salesforce_client::{
    Budget, BulkJobError, Error, ErrorClass, QueryJobRequest, QueryOperation, QueryOptions,
    QueryPage, Secret,
};
use serde_json::{Value, json};

use crate::backend::{Backend, EMULATOR_ACCOUNTS, fast_poll};

async fn expire_tokens(b: &Backend) {
    let resp = reqwest::Client::new()
        .post(format!("{}/__emulator/tokens/expire", b.emu().base_url))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_503s_are_retried() {
    let b = Backend::emulator().await;
    b.client.authenticate().await.unwrap();
    b.set_faults(json!({"script": [503, 503]})).await;
    b.client.limits().await.unwrap();
    assert_eq!(b.client.usage().calls_made, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_5xx_bodies_become_transient_api_errors() {
    let b = Backend::emulator().await;
    b.client.authenticate().await.unwrap();
    b.set_faults(json!({"error_rate": 1.0, "error_status": 503, "html_errors": true}))
        .await;
    let err = b.client.limits().await.unwrap_err();
    let api = err.api_error().expect("ApiError");
    assert_eq!(api.status, 503);
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_eq!(b.client.usage().calls_made, 5, "1 attempt + 4 retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_limit_is_retried_daily_limit_is_not() {
    let b = Backend::emulator().await;
    b.client.authenticate().await.unwrap();
    b.set_faults(json!({"concurrent_limit_rate": 1.0})).await;
    let err = b.client.limits().await.unwrap_err();
    assert!(err.api_error().unwrap().is_concurrent_limit(), "{err}");
    assert!(!err.is_daily_limit());
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_eq!(b.client.usage().calls_made, 5);

    b.set_faults(json!({"script": [403]})).await;
    let before = b.client.usage().calls_made;
    let err = b.client.limits().await.unwrap_err();
    assert!(err.is_daily_limit(), "{err}");
    assert_eq!(err.class(), ErrorClass::RateLimited);
    assert_eq!(b.client.usage().calls_made - before, 1, "never retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_mid_pagination_is_refreshed_once() {
    let b = Backend::emulator().await;
    let stream = b.client.query_pages::<Value>(
        "SELECT Id FROM Account ORDER BY Id",
        QueryOptions::default().with_batch_size(200),
    );
    futures::pin_mut!(stream);
    let first = stream.try_next().await.unwrap().unwrap();
    let mut ids: HashSet<String> = first
        .records
        .iter()
        .map(|r| r["Id"].as_str().unwrap().to_owned())
        .collect();
    expire_tokens(&b).await;
    while let Some(page) = stream.try_next().await.unwrap() {
        ids.extend(
            page.records
                .iter()
                .map(|r| r["Id"].as_str().unwrap().to_owned()),
        );
    }
    assert_eq!(ids.len() as u64, first.total_size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_refresh_tokens_are_used_and_reported() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let b = Backend::emulator_with(
        |c| c.switches.refresh_token_rotation = true,
        move |builder| {
            builder.with_refresh_token_listener(Arc::new(move |s: &Secret| {
                sink.lock().unwrap().push(s.expose().to_owned())
            }))
        },
    )
    .await;
    b.client.limits().await.unwrap();
    expire_tokens(&b).await;
    b.client.limits().await.unwrap();
    expire_tokens(&b).await;
    b.client.limits().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "one rotation per grant: {seen:?}");
    assert_ne!(seen[0], seen[1]);
    assert_eq!(
        b.client.current_refresh_token().unwrap().expose(),
        seen[2].as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_refresh_token_is_a_config_error() {
    let b = Backend::emulator_with(
        |_| {},
        |builder| {
            builder.with_credentials(salesforce_client::Credentials::refresh_token(
                "emulator-client-id",
                Some("emulator-client-secret"),
                "revoked-token",
            ))
        },
    )
    .await;
    let err = b.client.limits().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Config);
    assert!(err.to_string().contains("invalid_grant"), "{err}");
    assert!(!err.to_string().contains("revoked-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_stops_before_the_share_is_exceeded() {
    let b = Backend::emulator_with(
        |c| c.faults.daily_limit = Some(40),
        |builder| builder.with_budget(Budget::share(0.5)),
    )
    .await;
    let mut ok = 0;
    let err = loop {
        match b.client.limits().await {
            Ok(_) => ok += 1,
            Err(e) => break e,
        }
        assert!(ok < 40, "the budget never stopped the client");
    };
    assert!(matches!(err, Error::BudgetExhausted { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::RateLimited);
    let usage = b.client.usage();
    assert_eq!(usage.org_max, Some(40));
    assert!(usage.org_used.unwrap() >= 20);
    let calls = b.emulator_calls().await.unwrap();
    assert!(b.client.limits().await.is_err());
    assert_eq!(
        b.emulator_calls().await.unwrap(),
        calls,
        "no call sent past the budget"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_results_survive_a_connection_reset() {
    let b = Backend::emulator().await;
    b.set_faults(json!({"reset_after_bytes": 700})).await;
    let req = QueryJobRequest::new(QueryOperation::Query, "SELECT Id, Name FROM Account");
    let mut results = b
        .client
        .bulk_query(&req, &fast_poll(), Some(200))
        .await
        .unwrap();
    let mut row = ByteRecord::new();
    let mut ids = HashSet::new();
    let mut n = 0u64;
    while results.next_record(&mut row).await.unwrap() {
        ids.insert(row[0].to_vec());
        n += 1;
    }
    assert_eq!(n, ids.len() as u64, "no duplicates after the re-fetch");
    let live = b.client.count("Account", None, false).await.unwrap();
    assert_eq!(n, live);
    assert!(live <= EMULATOR_ACCOUNTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_bulk_job_carries_its_message() {
    let b = Backend::emulator().await;
    b.set_faults(json!({"next_job": "failed"})).await;
    let req = QueryJobRequest::new(QueryOperation::Query, "SELECT Id FROM Account");
    let err = b
        .client
        .bulk_query(&req, &fast_poll(), None)
        .await
        .unwrap_err();
    match err {
        Error::BulkJob(BulkJobError::Failed { error_message, .. }) => {
            assert!(error_message.is_some_and(|m| !m.is_empty()))
        }
        other => panic!("{other:?}"),
    }
    b.set_faults(json!({"next_job": "aborted"})).await;
    let err = b
        .client
        .bulk_query(&req, &fast_poll(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::BulkJob(BulkJobError::Aborted { .. })),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_timeout_is_transient_and_typed() {
    let b = Backend::emulator().await;
    b.set_faults(json!({"query_timeout_rows": 10})).await;
    let err = b
        .client
        .query_page::<Value>("SELECT Id FROM Account", QueryOptions::default())
        .await
        .map(|_: QueryPage<Value>| ())
        .unwrap_err();
    assert_eq!(err.api_error().unwrap().error_code, "QUERY_TIMEOUT");
    assert_eq!(err.class(), ErrorClass::Transient);
}

const TEST_KEY: &str = include_str!("../src/testdata/jwt_test_key.pem");
const TEST_PUB: &str = include_str!("../src/testdata/jwt_test_key.pub.pem");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_bearer_grant_against_the_emulator() {
    let jwt = |username: &str| salesforce_client::Credentials::JwtBearer {
        client_id: "emulator-client-id".into(),
        username: username.into(),
        private_key_pem: Secret::new(TEST_KEY),
    };
    let good = jwt("integration@emulator.example.com");
    let b = Backend::emulator_with(
        |c| c.credentials.jwt_public_key_pem = Some(TEST_PUB.to_owned()),
        move |builder| builder.with_credentials(good),
    )
    .await;
    b.client.limits().await.unwrap();

    let bad = jwt("someone-else@example.com");
    let b = Backend::emulator_with(
        |c| c.credentials.jwt_public_key_pem = Some(TEST_PUB.to_owned()),
        move |builder| builder.with_credentials(bad),
    )
    .await;
    let err = b.client.limits().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Config);
    assert!(err.to_string().contains("invalid_grant"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_grant_against_the_emulator() {
    let b = Backend::emulator_with(
        |_| {},
        |builder| {
            builder.with_credentials(salesforce_client::Credentials::ClientCredentials {
                client_id: "emulator-client-id".into(),
                client_secret: Secret::new("emulator-client-secret"),
            })
        },
    )
    .await;
    b.client.limits().await.unwrap();
    let b = Backend::emulator_with(
        |_| {},
        |builder| {
            builder.with_credentials(salesforce_client::Credentials::ClientCredentials {
                client_id: "emulator-client-id".into(),
                client_secret: Secret::new("wrong"),
            })
        },
    )
    .await;
    let err = b.client.limits().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Config);
    assert!(err.to_string().contains("invalid_client"), "{err}");
    assert!(!err.to_string().contains("wrong"));
}
