//! A scripted HTTP server for unit tests: replays a list of responses and records requests.
//!
//! The token endpoint (`POST /services/oauth2/token`) is answered separately (from its own
//! script if one is queued, else with a fresh token `tok-N`), so tests script only API responses.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;

/// One scripted response.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub delay: Option<Duration>,
    /// Send the body, then break the connection (chunked body that never ends cleanly).
    pub truncated: bool,
    /// Instead of `body`, stream a generated CSV of this many rows (`"Id","Name"` header).
    pub generated_rows: Option<u64>,
}

impl Scripted {
    pub fn new(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
            delay: None,
            truncated: false,
            generated_rows: None,
        }
    }
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self::new(status, serde_json::to_vec(&body).unwrap())
            .header("content-type", "application/json")
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }
    pub fn generated_csv(rows: u64) -> Self {
        let mut s = Self::new(200, "");
        s.generated_rows = Some(rows);
        s
    }
    pub fn truncated(mut self) -> Self {
        self.truncated = true;
        self
    }
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = Some(d);
        self
    }
}

/// A request the server saw.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(&self.body)
            .into_owned()
            .collect()
    }
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Scripted>>,
    token_script: Mutex<VecDeque<Scripted>>,
    requests: Mutex<Vec<Recorded>>,
    token_requests: Mutex<Vec<Recorded>>,
    tokens_issued: Mutex<u64>,
    rejected_tokens: Mutex<Vec<String>>,
    base_url: Mutex<String>,
}

pub struct MockServer {
    pub base_url: String,
    shared: Arc<Shared>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl MockServer {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        *shared.base_url.lock().unwrap() = base_url.clone();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            base_url,
            shared,
            _shutdown: tx,
        }
    }

    pub fn push(&self, r: Scripted) {
        self.shared.script.lock().unwrap().push_back(r);
    }
    pub fn push_token(&self, r: Scripted) {
        self.shared.token_script.lock().unwrap().push_back(r);
    }
    /// Answers 401 `INVALID_SESSION_ID` to any request bearing this token (script untouched).
    pub fn reject_token(&self, token: &str) {
        self.shared
            .rejected_tokens
            .lock()
            .unwrap()
            .push(format!("Bearer {token}"));
    }
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }
    pub fn token_requests(&self) -> Vec<Recorded> {
        self.shared.token_requests.lock().unwrap().clone()
    }

    /// A builder pointed at this server with refresh-token credentials and fast retries.
    pub fn builder(&self) -> crate::ClientBuilder {
        crate::ClientBuilder::new()
            .with_login_url(self.base_url.clone())
            .with_credentials(crate::Credentials::refresh_token(
                "cid",
                Some("csecret"),
                "rtoken",
            ))
            .with_retry(crate::RetryConfig {
                backoff: crate::BackoffConfig {
                    init: Duration::from_millis(1),
                    max: Duration::from_millis(5),
                    base: 2.0,
                },
                max_retries: 3,
                retry_timeout: Duration::from_secs(10),
            })
    }

    pub fn client(&self) -> crate::Client {
        self.builder().build().unwrap()
    }
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let rec = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers.clone(),
        body,
    };
    let is_token = rec.path == "/services/oauth2/token";
    let scripted = if is_token {
        shared.token_requests.lock().unwrap().push(rec);
        let next = shared.token_script.lock().unwrap().pop_front();
        next.unwrap_or_else(|| {
            let mut n = shared.tokens_issued.lock().unwrap();
            *n += 1;
            let base = shared.base_url.lock().unwrap().clone();
            Scripted::json(
                200,
                serde_json::json!({
                    "access_token": format!("tok-{n}"),
                    "instance_url": base,
                    "token_type": "Bearer",
                    "issued_at": "1717171717171",
                    "id": "https://login.salesforce.com/id/00D/005",
                }),
            )
        })
    } else if rec.header("authorization").is_some_and(|a| {
        shared
            .rejected_tokens
            .lock()
            .unwrap()
            .iter()
            .any(|r| r == a)
    }) {
        shared.requests.lock().unwrap().push(rec);
        Scripted::json(
            401,
            serde_json::json!([{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}]),
        )
    } else {
        shared.requests.lock().unwrap().push(rec);
        let next = shared.script.lock().unwrap().pop_front();
        next.unwrap_or_else(|| Scripted::new(599, "mock script exhausted"))
    };
    if let Some(d) = scripted.delay {
        tokio::time::sleep(d).await;
    }
    let mut resp = Response::builder().status(scripted.status);
    for (k, v) in &scripted.headers {
        resp = resp.header(k, v);
    }
    if let Some(rows) = scripted.generated_rows {
        const PER_CHUNK: u64 = 1000;
        let chunks = (0..rows.div_ceil(PER_CHUNK) + 1).map(move |c| {
            let mut buf = Vec::with_capacity(64 * 1024);
            if c == 0 {
                buf.extend_from_slice(b"\"Id\",\"Name\"\n");
            } else {
                let first = (c - 1) * PER_CHUNK;
                for i in first..(first + PER_CHUNK).min(rows) {
                    buf.extend_from_slice(
                        format!("\"001{i:015}\",\"Account number {i}, \"\"quoted\"\"\"\n")
                            .as_bytes(),
                    );
                }
            }
            Ok::<Bytes, std::io::Error>(Bytes::from(buf))
        });
        return resp
            .body(Body::from_stream(futures::stream::iter(chunks)))
            .unwrap();
    }
    if scripted.truncated {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(scripted.body),
            Err(std::io::Error::other("scripted connection break")),
        ];
        return resp
            .body(Body::from_stream(futures::stream::iter(chunks)))
            .unwrap();
    }
    resp.body(Body::from(scripted.body)).unwrap()
}
