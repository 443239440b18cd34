//! OAuth grants and errors (§1), 401 handling (§1.6), versions (§2.1), limits and call counting
//! (§2.9–2.10), faults.

use crate::util::*;
use base64::Engine;
use hmac::{KeyInit, Mac};
use reqwest::{Client, Method};
use serde_json::{Value, json};

async fn token_req(base: &str, form: &[(&str, &str)]) -> (u16, Option<String>, Value) {
    let r = Client::new()
        .post(format!("{base}/services/oauth2/token"))
        .form(form)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    let cc = r
        .headers()
        .get("cache-control")
        .map(|h| h.to_str().unwrap().to_string());
    (s, cc, r.json().await.unwrap())
}

#[tokio::test]
async fn refresh_grant_returns_the_documented_fields() {
    let o = org(config(&[])).await;
    let base = &o.h.base_url;
    let (s, cc, b) = token_req(
        base,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "emulator-client-id"),
            ("client_secret", "emulator-client-secret"),
            ("refresh_token", "emulator-refresh-token"),
        ],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(cc.as_deref(), Some("no-store"));
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["instance_url"], base.as_str());
    assert!(b["access_token"].as_str().unwrap().starts_with("00D"));
    assert!(b["access_token"].as_str().unwrap().contains('!'));
    let issued = b["issued_at"].as_str().unwrap();
    assert_eq!(issued.len(), 13, "issued_at is a millisecond string");
    assert!(b.get("refresh_token").is_none(), "no rotation by default");
    assert!(b.get("expires_in").is_none());
    let id = b["id"].as_str().unwrap();
    assert!(id.starts_with(&format!("{base}/id/00D")), "{id}");
    // signature = base64(HMAC-SHA256(client_secret, id + issued_at))
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"emulator-client-secret").unwrap();
    mac.update(id.as_bytes());
    mac.update(issued.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(b["signature"], expected.as_str());
}

#[tokio::test]
async fn basic_auth_client_credentials_and_jwt_grants() {
    let o = org(config(&[])).await;
    let base = &o.h.base_url;
    let r = Client::new()
        .post(format!("{base}/services/oauth2/token"))
        .basic_auth("emulator-client-id", Some("emulator-client-secret"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "emulator-refresh-token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (s, _, b) = token_req(
        base,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "emulator-client-id"),
            ("client_secret", "emulator-client-secret"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["scope"], "api");
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let exp = chrono::Utc::now().timestamp() + 180;
    let jwt = |iss: &str| {
        format!(
            "{}.{}.{}",
            b64(json!({"alg": "RS256", "typ": "JWT"})),
            b64(
                json!({"iss": iss, "sub": "integration@emulator.example.com", "aud": "https://login.salesforce.com", "exp": exp})
            ),
            "c2ln"
        )
    };
    let good = jwt("emulator-client-id");
    let (s, _, b) = token_req(
        base,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &good),
        ],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let bad = jwt("someone-else");
    let (s, _, b) = token_req(
        base,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &bad),
        ],
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str().unwrap()),
        (400, "invalid_client_id")
    );
}

#[tokio::test]
async fn oauth_errors_are_400_with_error_and_description() {
    let o = org(config(&[])).await;
    let base = &o.h.base_url;
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case<'_>; 4] = [
        (
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "nope"),
                ("client_secret", "emulator-client-secret"),
                ("refresh_token", "emulator-refresh-token"),
            ],
            "invalid_client_id",
            "client identifier invalid",
        ),
        (
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "emulator-client-id"),
                ("client_secret", "wrong"),
                ("refresh_token", "emulator-refresh-token"),
            ],
            "invalid_client",
            "invalid client credentials",
        ),
        (
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "emulator-client-id"),
                ("client_secret", "emulator-client-secret"),
                ("refresh_token", "stale"),
            ],
            "invalid_grant",
            "expired access/refresh token",
        ),
        (
            &[("grant_type", "password")],
            "unsupported_grant_type",
            "grant type not supported",
        ),
    ];
    for (form, err, desc) in cases {
        let (s, cc, b) = token_req(base, form).await;
        assert_eq!(s, 400);
        assert_eq!(cc.as_deref(), Some("no-store"));
        assert_eq!(b, json!({"error": err, "error_description": desc}));
    }
    assert_eq!(
        o.calls().await["total"],
        0,
        "token requests are not API calls"
    );
}

#[tokio::test]
async fn refresh_token_rotation_revokes_the_family_on_replay() {
    let mut c = config(&[]);
    c.switches.refresh_token_rotation = true;
    // Not `org()`: its helper would already spend the initial refresh token.
    let h = salesforce_emulator::spawn(c).await.unwrap();
    let base = &h.base_url;
    let form = |rt: &str| {
        vec![
            ("grant_type", "refresh_token".to_string()),
            ("client_id", "emulator-client-id".to_string()),
            ("client_secret", "emulator-client-secret".to_string()),
            ("refresh_token", rt.to_string()),
        ]
    };
    let send = |f: Vec<(&'static str, String)>| {
        let url = format!("{base}/services/oauth2/token");
        async move {
            Client::new()
                .post(url)
                .form(&f)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let first = send(form("emulator-refresh-token")).await;
    let rt2 = first["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt2, "emulator-refresh-token");
    let replay = send(form("emulator-refresh-token")).await;
    assert_eq!(replay["error"], "invalid_grant");
    let after = send(form(&rt2)).await;
    assert_eq!(
        after["error"], "invalid_grant",
        "replay revoked the whole family"
    );
}

#[tokio::test]
async fn bad_or_expired_tokens_get_401_invalid_session_id_on_rest_and_bulk() {
    let o = org(config(&[])).await;
    let expected =
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]);
    for path in [
        "/query?q=SELECT+Id+FROM+Account",
        "/jobs/query",
        "/sobjects/",
    ] {
        let r = o
            .http
            .get(o.url(path))
            .bearer_auth("00Dbogus!token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path}");
        assert_eq!(r.json::<Value>().await.unwrap(), expected);
        let r = o.http.get(o.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "missing header on {path}");
    }
    assert_eq!(o.get("/limits").await.status().as_u16(), 200);
    o.admin(Method::POST, "/tokens/expire", json!({})).await;
    let (s, b) = o.get_json("/limits").await;
    assert_eq!((s, b), (401, expected.clone()));
    let mut c = config(&[]);
    c.token_lifetime_secs = 0;
    let short = org(c).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(short.get("/limits").await.status().as_u16(), 401);
    // The lifetime can also be shortened at run time.
    let o2 = org(config(&[])).await;
    assert_eq!(o2.get("/limits").await.status().as_u16(), 200);
    o2.admin(Method::PUT, "/faults", json!({"token_lifetime_secs": 0}))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(o2.get("/limits").await.status().as_u16(), 401);
    assert_eq!(o.calls().await["total"], 1, "401s are not counted");
}

#[tokio::test]
async fn versions_are_public_and_retired_versions_are_gone() {
    let o = org(config(&[])).await;
    let r = o
        .http
        .get(format!("{}/services/data/", o.h.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().get("sforce-limit-info").is_none());
    let list: Value = r.json().await.unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list[0]["version"], "31.0");
    let v62 = list.iter().find(|v| v["version"] == "62.0").unwrap();
    assert_eq!(
        v62,
        &json!({"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"})
    );
    let r = o
        .http
        .get(format!("{}/services/data/v20.0/limits", o.h.base_url))
        .bearer_auth(&o.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 410);
    let r = o
        .http
        .get(format!("{}/services/data/v99.0/limits", o.h.base_url))
        .bearer_auth(&o.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(
        o.calls().await["total"],
        2,
        "failed version calls are still API calls"
    );
}

#[tokio::test]
async fn limit_header_counts_calls_and_daily_limit_gives_403() {
    let mut c = config(&[]);
    c.daily_api_limit = 3;
    let o = org(c).await;
    let r = o.get("/limits").await;
    assert_eq!(r.headers()["sforce-limit-info"], "api-usage=1/3");
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["DailyApiRequests"], json!({"Max": 3, "Remaining": 3}));
    assert!(b["DailyBulkV2QueryJobs"]["Max"].is_u64());
    o.get("/sobjects/").await;
    let r = o.get("/sobjects/Account/describe").await;
    assert_eq!(r.headers()["sforce-limit-info"], "api-usage=3/3");
    let r = o.get("/limits").await;
    assert_eq!(r.status().as_u16(), 403);
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        b,
        json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    );
    let calls = o.calls().await;
    assert_eq!(calls["total"], 3);
    assert_eq!(
        calls["by_endpoint"]["GET /services/data/{version}/sobjects/{object}/describe"],
        1
    );
    o.http
        .post(format!("{}/__emulator/reset", o.h.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(o.get("/limits").await.status().as_u16(), 200);
}

#[tokio::test]
async fn scripted_faults_return_the_injected_statuses_in_order() {
    let o = org(config(&[])).await;
    o.admin(
        Method::PUT,
        "/faults",
        json!({"script": [503, 200, 500], "html_errors": false}),
    )
    .await;
    let (s, b) = o.get_json("/limits").await;
    assert_eq!((s, error_code(&b)), (503, "SERVER_UNAVAILABLE"));
    assert_eq!(o.get("/limits").await.status().as_u16(), 200);
    assert_eq!(o.get("/limits").await.status().as_u16(), 500);
    assert_eq!(o.get("/limits").await.status().as_u16(), 200);
    o.admin(
        Method::PUT,
        "/faults",
        json!({"script": [502], "html_errors": true}),
    )
    .await;
    let r = o.get("/limits").await;
    assert_eq!(r.status().as_u16(), 502);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(
        o.calls().await["total"],
        2,
        "only the two successful calls counted"
    );
}
