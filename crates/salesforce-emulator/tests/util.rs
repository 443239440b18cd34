//! Shared helpers.

use reqwest::{Client, Response};
use salesforce_emulator::{Config, Handle, spawn};
use serde_json::Value;

pub const V: &str = "v62.0";

pub struct Org {
    pub h: Handle,
    pub http: Client,
    pub token: String,
}

pub fn config(rows: &[(&str, u64)]) -> Config {
    let mut c = Config {
        default_rows: 20,
        data_end_ms: Some(1_767_225_600_000), // 2026-01-01
        ..Config::default()
    };
    for (k, v) in rows {
        c.rows.insert(k.to_string(), *v);
    }
    c
}

pub async fn token(http: &Client, base: &str) -> String {
    let r: Value = http
        .post(format!("{base}/services/oauth2/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "emulator-client-id"),
            ("client_secret", "emulator-client-secret"),
            ("refresh_token", "emulator-refresh-token"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["access_token"].as_str().unwrap().to_string()
}

pub async fn org(c: Config) -> Org {
    let h = spawn(c).await.unwrap();
    let http = Client::new();
    let token = token(&http, &h.base_url).await;
    Org { h, http, token }
}

impl Org {
    pub fn url(&self, path: &str) -> String {
        format!("{}/services/data/{V}{path}", self.h.base_url)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.get(path).await;
        let s = r.status().as_u16();
        (s, r.json().await.unwrap())
    }

    pub async fn query(&self, soql: &str) -> (u16, Value) {
        self.query_with(soql, "query", None).await
    }

    pub async fn query_with(&self, soql: &str, resource: &str, batch: Option<u32>) -> (u16, Value) {
        let mut req = self
            .http
            .get(self.url(&format!("/{resource}")))
            .query(&[("q", soql)])
            .bearer_auth(&self.token);
        if let Some(b) = batch {
            req = req.header("Sforce-Query-Options", format!("batchSize={b}"));
        }
        let r = req.send().await.unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap())
    }

    /// Every record of a query, following nextRecordsUrl.
    pub async fn query_all_pages(&self, soql: &str, resource: &str) -> Vec<Value> {
        let (s, mut page) = self.query_with(soql, resource, None).await;
        assert_eq!(s, 200, "{page}");
        let mut out = Vec::new();
        loop {
            out.extend(page["records"].as_array().unwrap().iter().cloned());
            if page["done"].as_bool().unwrap() {
                return out;
            }
            let next = page["nextRecordsUrl"].as_str().unwrap().to_string();
            page = self
                .http
                .get(format!("{}{next}", self.h.base_url))
                .bearer_auth(&self.token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        }
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        self.http
            .request(method, format!("{}/__emulator{path}", self.h.base_url))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn calls(&self) -> Value {
        self.http
            .get(format!("{}/__emulator/calls", self.h.base_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

pub fn error_code(body: &Value) -> &str {
    body[0]["errorCode"].as_str().unwrap_or("")
}
