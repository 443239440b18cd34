//! Rejected records in S3, through the binary, against a real S3 API server (moto).
//!
//! Needs `S3_TEST_ENDPOINT=http://127.0.0.1:PORT` (started by the test command with
//! `moto_server -H 127.0.0.1 -p PORT`). Without it the tests fail with
//! the command that starts one; they never skip.

use std::path::Path;

use serde_json::{Value, json};
use testkit::{json_file, run_connector};

fn endpoint() -> String {
    testkit::require_env(
        "S3_TEST_ENDPOINT",
        "start `moto_server -H 127.0.0.1 -p PORT` and export S3_TEST_ENDPOINT=http://127.0.0.1:PORT",
    )
}

#[test]
fn check_probes_the_bucket_and_write_stores_rejects_as_csv_under_the_sync_id() {
    let endpoint = endpoint();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let org = runtime
        .block_on(salesforce_emulator::spawn(
            salesforce_emulator::Config::default(),
        ))
        .unwrap();
    let bucket = format!("dest-sf-{}", std::process::id());
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .endpoint_url(&endpoint)
            .force_path_style(true)
            .build(),
    );
    let config = |bucket: &str| {
        json!({
            "client_id": "emulator-client-id", "client_secret": "emulator-client-secret",
            "refresh_token": "emulator-refresh-token", "auth_type": "Client",
            "login_url": org.base_url,
            "object_storage_config": {
                "storage_type": "S3", "access_key_id": "testing", "secret_access_key": "testing",
                "s3_bucket_name": bucket, "s3_bucket_region": "us-east-1", "s3_endpoint": endpoint,
                "bucket_path": "rejected/", "format": {"format_type": "CSV", "flattening": "No flattening"}
            }
        })
    };
    let bin = Path::new(env!("CARGO_BIN_EXE_destination-salesforce"));

    // The bucket does not exist yet: check says so.
    let file = json_file(&config(&bucket));
    let cfg = file.path().to_str().unwrap();
    let run = run_connector(bin, &["check", "--config", cfg], None);
    let status = &run.of_type("CONNECTION_STATUS")[0]["connectionStatus"];
    assert_eq!(status["status"], "FAILED", "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("cannot write rejected records to s3://"),
        "{status}"
    );

    runtime
        .block_on(s3.create_bucket().bucket(&bucket).send())
        .unwrap();
    let run = run_connector(bin, &["check", "--config", cfg], None);
    assert_eq!(
        run.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"],
        "SUCCEEDED",
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("testing\""), "no secret on stdout");

    let catalog = json_file(&json!({"streams": [{
        "stream": {"name": "contacts", "json_schema": {"type": "object"}, "supported_sync_modes": ["full_refresh"]},
        "sync_mode": "full_refresh", "destination_sync_mode": "append",
        "destination_object_name": "Contact", "sync_id": 31
    }]}));
    let input = [
        json!({"type": "RECORD", "record": {"stream": "contacts", "data": {"FirstName": "NoLast"}, "emitted_at": 1}}),
        json!({"type": "STATE", "state": {"type": "STREAM", "stream": {"stream_descriptor": {"name": "contacts"}}, "id": 1}}),
    ]
    .iter()
    .map(Value::to_string)
    .collect::<Vec<_>>()
    .join("\n");
    let run = run_connector(
        bin,
        &[
            "write",
            "--config",
            cfg,
            "--catalog",
            catalog.path().to_str().unwrap(),
        ],
        Some(input.as_bytes()),
    );
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert_eq!(
        run.of_type("STATE")[0]["state"]["destinationStats"],
        json!({"recordCount": 0.0, "rejectedRecordCount": 1.0})
    );
    let listed = runtime
        .block_on(s3.list_objects_v2().bucket(&bucket).send())
        .unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0].starts_with("rejected/31/contacts/") && keys[0].ends_with(".csv"),
        "{keys:?}"
    );
    let body = runtime
        .block_on(async {
            s3.get_object()
                .bucket(&bucket)
                .key(keys[0])
                .send()
                .await
                .unwrap()
                .body
                .collect()
                .await
        })
        .unwrap()
        .into_bytes();
    let mut r = csv::Reader::from_reader(&body[..]);
    let headers = r.headers().unwrap().clone();
    let row = r.records().next().unwrap().unwrap();
    let get = |name: &str| row[headers.iter().position(|h| h == name).unwrap()].to_owned();
    assert_eq!(get("error_code"), "REQUIRED_FIELD_MISSING");
    assert_eq!(get("position"), "1");
    assert_eq!(
        serde_json::from_str::<Value>(&get("record")).unwrap(),
        json!({"FirstName": "NoLast"})
    );
}
