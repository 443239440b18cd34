//! The [`Client`] and its one request loop.
//!
//! Every call goes through `Client::send`: it checks the API budget, attaches the bearer token,
//! applies the right timeout, records `Sforce-Limit-Info`, parses error bodies into
//! [`ApiError`], refreshes the token once on a 401, and retries what
//! [`classify_status`] / [`classify_transport`] call retryable with jittered backoff.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use tracing::{debug, info};
use url::Url;

use crate::auth::{Authenticator, Token};
use crate::config::{ApiVersion, ClientBuilder, ConfigError};
use crate::error::{ApiError, Error, Result};
use crate::retry::{Backoff, Retry, RetryConfig, classify_status, classify_transport};
use crate::secret::Secret;
use crate::usage::{ApiUsage, Budget, UsageTracker};

/// Salesforce rejects a URI (plus headers) over 16,384 bytes with 414/431.
pub const MAX_URI_BYTES: usize = 16_384;

/// A Salesforce API client. Cheap to clone; clones share the token cache and usage tracker.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    auth: Authenticator,
    api_version: ApiVersion,
    retry: RetryConfig,
    request_timeout: Duration,
    stream_timeout: Duration,
    usage: UsageTracker,
    budget: Option<Budget>,
    jitter_seed: Option<u64>,
    backoffs: std::sync::atomic::AtomicU64,
}

/// The body of a call, re-creatable for every attempt.
#[derive(Debug, Clone)]
pub(crate) enum CallBody {
    None,
    Json(Bytes),
    /// A file streamed from disk (`Content-Type`, length).
    File(PathBuf, &'static str, u64),
}

/// One logical API call.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub method: Method,
    /// Absolute path on the instance (`/services/...`), or a path under `/services/data/vXX.X/`.
    pub path: String,
    pub query: Vec<(&'static str, String)>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: CallBody,
    pub idempotent: bool,
    /// The resource answers once (a query locator's page): a body that breaks off is not
    /// fetched again but reported as [`Error::PageLost`].
    pub single_use: bool,
    pub counted: bool,
    pub streaming: bool,
    pub expect: Option<StatusCode>,
}

impl Call {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        let idempotent = matches!(method, Method::GET | Method::DELETE | Method::HEAD);
        Self {
            method,
            path: path.into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: CallBody::None,
            idempotent,
            single_use: false,
            counted: true,
            streaming: false,
            expect: None,
        }
    }
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }
    pub fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
    pub fn json<T: serde::Serialize + ?Sized>(mut self, body: &T) -> Result<Self> {
        let bytes = serde_json::to_vec(body).map_err(|e| Error::Decode {
            context: format!("encoding the body of {} {}", self.method, self.path),
            source: e,
        })?;
        self.body = CallBody::Json(Bytes::from(bytes));
        Ok(self)
    }
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }
    pub fn single_use(mut self) -> Self {
        self.single_use = true;
        self
    }
    pub fn not_counted(mut self) -> Self {
        self.counted = false;
        self
    }
    pub fn streaming(mut self) -> Self {
        self.streaming = true;
        self
    }
    pub fn expect(mut self, status: StatusCode) -> Self {
        self.expect = Some(status);
        self
    }
    fn context(&self, api_version: ApiVersion) -> String {
        if self.path.starts_with('/') {
            format!("{} {}", self.method, self.path)
        } else {
            format!(
                "{} /services/data/{}/{}",
                self.method,
                api_version.path_segment(),
                self.path
            )
        }
    }
}

impl Client {
    /// A builder (same as [`ClientBuilder::new`]).
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    pub(crate) fn from_builder(b: ClientBuilder) -> Result<Self, ConfigError> {
        let login_url = b.resolved_login_url()?;
        let api_version = b.resolved_api_version()?;
        let credentials = b
            .credentials
            .clone()
            .ok_or(ConfigError::MissingCredentials)?;
        for (field, d) in [
            ("connect_timeout", b.connect_timeout),
            ("request_timeout", b.request_timeout),
            ("stream_timeout", b.stream_timeout),
            ("read_timeout", b.read_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::OutOfRange {
                    field,
                    value: format!("{d:?}"),
                    expected: "greater than zero",
                });
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(b.connect_timeout)
            .read_timeout(b.read_timeout)
            .user_agent(b.user_agent.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(ConfigError::HttpClient)?;
        let auth = Authenticator::new(
            credentials,
            &login_url,
            b.is_sandbox,
            http.clone(),
            b.request_timeout,
            b.retry,
            b.on_refresh_token.clone(),
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                auth,
                api_version,
                retry: b.retry,
                request_timeout: b.request_timeout,
                stream_timeout: b.stream_timeout,
                usage: UsageTracker::default(),
                budget: b.budget,
                jitter_seed: b.jitter_seed,
                backoffs: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// The API version in use.
    pub fn api_version(&self) -> ApiVersion {
        self.inner.api_version
    }

    /// API usage seen so far (org-wide from `Sforce-Limit-Info`, and this client's own calls).
    pub fn usage(&self) -> ApiUsage {
        self.inner.usage.snapshot()
    }

    /// Whether the configured budget (if any) allows another counted call.
    pub fn within_budget(&self) -> bool {
        self.inner
            .budget
            .is_none_or(|b| b.allows(&self.inner.usage.snapshot()))
    }

    /// The refresh token in use: after a rotation, the new one. Persist it.
    pub fn current_refresh_token(&self) -> Option<Secret> {
        self.inner.auth.current_refresh_token()
    }

    /// Gets an access token now (normally done lazily) and returns the instance URL it came with.
    /// Useful as a connection check.
    pub async fn authenticate(&self) -> Result<Url> {
        Ok(self.inner.auth.token().await?.instance_url.clone())
    }

    /// A backoff for one request: seeded per request when a jitter seed is configured.
    fn new_backoff(&self) -> Backoff {
        match self.inner.jitter_seed {
            Some(seed) => {
                use rand::SeedableRng;
                let n = self
                    .inner
                    .backoffs
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Backoff::with_rng(
                    &self.inner.retry.backoff,
                    Box::new(rand::rngs::StdRng::seed_from_u64(seed.wrapping_add(n))),
                )
            }
            None => Backoff::new(&self.inner.retry.backoff),
        }
    }

    /// The URL a call targets on `instance`.
    fn url_for(&self, instance: &Url, call: &Call) -> Url {
        let mut url = instance.clone();
        let base = instance.path().trim_end_matches('/');
        let path = if call.path.starts_with('/') {
            format!("{base}{}", call.path)
        } else {
            format!(
                "{base}/services/data/{}/{}",
                self.inner.api_version.path_segment(),
                call.path
            )
        };
        // nextRecordsUrl-style paths may carry their own query string.
        match path.split_once('?') {
            Some((p, q)) => {
                url.set_path(p);
                url.set_query(Some(q));
            }
            None => {
                url.set_path(&path);
                url.set_query(None);
            }
        }
        if !call.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &call.query {
                pairs.append_pair(k, v);
            }
        }
        url
    }

    /// The exact URI length a call would have; used by the query-splitting helpers.
    pub(crate) async fn uri_len(&self, call: &Call) -> Result<usize> {
        let token = self.inner.auth.token().await?;
        Ok(self.url_for(&token.instance_url, call).as_str().len())
    }

    async fn build_request(
        &self,
        call: &Call,
        token: &Token,
        context: &str,
    ) -> Result<reqwest::Request> {
        let url = self.url_for(&token.instance_url, call);
        if url.as_str().len() > MAX_URI_BYTES {
            return Err(Error::UriTooLong {
                context: context.to_owned(),
                len: url.as_str().len(),
                max: MAX_URI_BYTES,
            });
        }
        let timeout = if call.streaming {
            self.inner.stream_timeout
        } else {
            self.inner.request_timeout
        };
        let mut rb = self
            .inner
            .http
            .request(call.method.clone(), url)
            .timeout(timeout)
            .bearer_auth(token.access_token.expose());
        for (k, v) in &call.headers {
            rb = rb.header(k, v);
        }
        rb = match &call.body {
            CallBody::None => rb,
            CallBody::Json(b) => rb
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.clone()),
            CallBody::File(path, content_type, len) => {
                let file = tokio::fs::File::open(path).await.map_err(|e| Error::Io {
                    context: format!("opening {} for upload", path.display()),
                    source: e,
                })?;
                let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
                rb.header(reqwest::header::CONTENT_TYPE, *content_type)
                    .header(reqwest::header::CONTENT_LENGTH, *len)
                    .body(reqwest::Body::wrap_stream(stream))
            }
        };
        rb.build().map_err(|e| Error::Http {
            context: context.to_owned(),
            attempts: 0,
            source: e,
        })
    }

    /// Sends a call with budget check, auth, retries and usage tracking; returns the successful
    /// response with its body unread.
    pub(crate) async fn send(&self, call: &Call) -> Result<reqwest::Response> {
        let inner = &*self.inner;
        let context = call.context(inner.api_version);
        let started = Instant::now();
        let mut backoff = self.new_backoff();
        let mut retries = 0usize;
        let mut refreshed = false;
        loop {
            if call.counted
                && let Some(budget) = inner.budget
            {
                let usage = inner.usage.snapshot();
                if !budget.allows(&usage) {
                    return Err(Error::BudgetExhausted {
                        used: usage.org_used.unwrap_or_default(),
                        max: usage.org_max.unwrap_or_default(),
                        share_percent: budget.max_share() * 100.0,
                    });
                }
            }
            let token = inner.auth.token().await?;
            let request = self.build_request(call, &token, &context).await?;
            if call.counted {
                inner.usage.record_call();
            }
            debug!(%context, attempt = retries + 1, "sending Salesforce request");
            let (decision, failure, retry_after) = match inner.http.execute(request).await {
                Ok(resp) => {
                    if let Some(v) = resp
                        .headers()
                        .get("sforce-limit-info")
                        .and_then(|v| v.to_str().ok())
                    {
                        inner.usage.record_header(v);
                    }
                    let status = resp.status();
                    if status.is_success() {
                        if let Some(expected) = call.expect
                            && status != expected
                        {
                            return Err(Error::UnexpectedResponse {
                                context,
                                detail: format!("HTTP {status}, expected {expected}"),
                            });
                        }
                        return Ok(resp);
                    }
                    let retry_after = retry_after(resp.headers());
                    let body = resp.bytes().await.unwrap_or_default();
                    let api = ApiError::from_response(status.as_u16(), &body);
                    (classify_status(&api), Failure::Api(api), retry_after)
                }
                Err(e) => (
                    classify_transport(&e, call.idempotent),
                    Failure::Http(e),
                    None,
                ),
            };
            match decision {
                Retry::RefreshToken if !refreshed => {
                    refreshed = true;
                    inner.auth.invalidate(&token).await?;
                    info!(%context, "access token rejected (401); refreshing it and retrying once");
                    continue;
                }
                Retry::After(reason)
                    if retries < inner.retry.max_retries
                        && started.elapsed() < inner.retry.retry_timeout =>
                {
                    retries += 1;
                    let mut delay = backoff.next_delay();
                    if let Some(ra) = retry_after {
                        delay = delay.max(ra.min(inner.retry.backoff.max));
                    }
                    info!(
                        %context,
                        ?delay,
                        "{reason}; retrying: attempt {} of {}",
                        retries + 1,
                        inner.retry.max_retries + 1
                    );
                    tokio::time::sleep(delay).await;
                }
                _ => {
                    return Err(match failure {
                        Failure::Api(api) => Error::Api {
                            context,
                            source: Box::new(api),
                        },
                        Failure::Http(source) => Error::Http {
                            context,
                            attempts: retries + 1,
                            source,
                        },
                    });
                }
            }
        }
    }

    /// Sends a call and reads its whole (small) body. A body that breaks off is fetched again
    /// for idempotent calls, within the retry limit, except for a single-use resource (a query
    /// locator's page, which Salesforce serves once): that is [`Error::PageLost`] at once.
    pub(crate) async fn send_bytes(&self, call: &Call) -> Result<Bytes> {
        let context = call.context(self.inner.api_version);
        let mut attempt = 0usize;
        loop {
            attempt += 1;
            let resp = self.send(call).await?;
            match resp.bytes().await {
                Ok(body) => return Ok(body),
                Err(source) if call.single_use => {
                    return Err(Error::PageLost { context, source });
                }
                Err(e) if call.idempotent && attempt <= self.inner.retry.max_retries => {
                    info!(
                        %context,
                        error = %e,
                        "response body broke off; sending again: attempt {} of {}",
                        attempt + 1,
                        self.inner.retry.max_retries + 1
                    );
                }
                Err(source) => {
                    return Err(Error::Http {
                        context,
                        attempts: attempt,
                        source,
                    });
                }
            }
        }
    }

    /// Sends a call and decodes a JSON response.
    pub(crate) async fn send_json<T: DeserializeOwned>(&self, call: &Call) -> Result<T> {
        let body = self.send_bytes(call).await?;
        serde_json::from_slice(&body).map_err(|e| Error::Decode {
            context: call.context(self.inner.api_version),
            source: e,
        })
    }

    /// Sends a call and discards the body.
    pub(crate) async fn send_empty(&self, call: &Call) -> Result<()> {
        let resp = self.send(call).await?;
        let _ = resp.bytes().await;
        Ok(())
    }

    /// The context string for a call (for errors raised by callers).
    pub(crate) fn context_of(&self, call: &Call) -> String {
        call.context(self.inner.api_version)
    }
}

enum Failure {
    Api(ApiError),
    Http(reqwest::Error),
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

impl ClientBuilder {
    /// Validates the configuration and builds the client. No network call is made; the first
    /// request (or [`Client::authenticate`]) gets a token.
    pub fn build(self) -> Result<Client, ConfigError> {
        Client::from_builder(self)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::ErrorClass;
    use crate::mock_server::{MockServer, Scripted};

    fn ok() -> Scripted {
        Scripted::json(200, json!({"ok": true}))
    }

    fn sf_error(status: u16, code: &str, message: &str) -> Scripted {
        Scripted::json(status, json!([{ "errorCode": code, "message": message }]))
    }

    async fn get(client: &Client) -> Result<serde_json::Value> {
        client.send_json(&Call::get("limits/")).await
    }

    #[tokio::test]
    async fn retries_503_503_then_200() {
        let mock = MockServer::start().await;
        mock.push(Scripted::new(503, "<html>busy</html>"));
        mock.push(Scripted::new(503, ""));
        mock.push(ok());
        let client = mock.client();
        assert_eq!(get(&client).await.unwrap(), json!({"ok": true}));
        let reqs = mock.requests();
        assert_eq!(reqs.len(), 3);
        assert!(
            reqs.iter()
                .all(|r| r.path == "/services/data/v62.0/limits/")
        );
        assert_eq!(reqs[0].header("authorization"), Some("Bearer tok-1"));
        assert_eq!(client.usage().calls_made, 3);
        assert_eq!(mock.token_requests().len(), 1);
    }

    #[tokio::test]
    async fn gives_up_after_max_retries_with_the_last_error() {
        let mock = MockServer::start().await;
        for _ in 0..10 {
            mock.push(sf_error(503, "SERVER_UNAVAILABLE", "maintenance"));
        }
        let err = get(&mock.client()).await.unwrap_err();
        assert_eq!(mock.requests().len(), 4, "1 attempt + 3 retries");
        let api = err.api_error().unwrap();
        assert_eq!(
            (api.status, api.error_code.as_str()),
            (503, "SERVER_UNAVAILABLE")
        );
        assert_eq!(err.class(), ErrorClass::Transient);
        assert!(
            err.to_string().contains("GET /services/data/v62.0/limits/"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn retry_timeout_stops_retrying() {
        let mock = MockServer::start().await;
        for _ in 0..10 {
            mock.push(Scripted::new(500, ""));
        }
        let mut retry = mock.builder().retry;
        retry.retry_timeout = Duration::ZERO;
        let client = mock.builder().with_retry(retry).build().unwrap();
        assert!(get(&client).await.is_err());
        assert_eq!(mock.requests().len(), 1);
    }

    #[tokio::test]
    async fn retries_429_lock_row_and_concurrent_limit() {
        let mock = MockServer::start().await;
        mock.push(Scripted::new(429, "").header("retry-after", "0"));
        mock.push(sf_error(
            400,
            "UNABLE_TO_LOCK_ROW",
            "unable to obtain exclusive access",
        ));
        mock.push(sf_error(
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
        ));
        mock.push(ok());
        get(&mock.client()).await.unwrap();
        assert_eq!(mock.requests().len(), 4);
    }

    #[tokio::test]
    async fn daily_limit_is_not_retried_and_is_distinguishable() {
        let mock = MockServer::start().await;
        mock.push(sf_error(
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        ));
        mock.push(ok());
        let err = get(&mock.client()).await.unwrap_err();
        assert_eq!(mock.requests().len(), 1);
        assert!(err.is_daily_limit());
        assert_eq!(err.class(), ErrorClass::RateLimited);
    }

    #[tokio::test]
    async fn config_errors_are_not_retried() {
        let mock = MockServer::start().await;
        mock.push(sf_error(400, "MALFORMED_QUERY", "unexpected token: FORM"));
        let err = get(&mock.client()).await.unwrap_err();
        assert_eq!(mock.requests().len(), 1);
        assert_eq!(err.class(), ErrorClass::Config);
        assert_eq!(err.api_error().unwrap().error_code, "MALFORMED_QUERY");
        mock.push(sf_error(
            404,
            "NOT_FOUND",
            "The requested resource does not exist",
        ));
        let err = get(&mock.client()).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::System);
    }

    #[tokio::test]
    async fn refreshes_once_on_401_and_retries() {
        let mock = MockServer::start().await;
        mock.push(sf_error(
            401,
            "INVALID_SESSION_ID",
            "Session expired or invalid",
        ));
        mock.push(ok());
        let client = mock.client();
        get(&client).await.unwrap();
        let reqs = mock.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].header("authorization"), Some("Bearer tok-1"));
        assert_eq!(reqs[1].header("authorization"), Some("Bearer tok-2"));
        assert_eq!(mock.token_requests().len(), 2);
    }

    #[tokio::test]
    async fn a_second_401_is_final() {
        let mock = MockServer::start().await;
        for _ in 0..3 {
            mock.push(sf_error(
                401,
                "INVALID_SESSION_ID",
                "Session expired or invalid",
            ));
        }
        let err = get(&mock.client()).await.unwrap_err();
        assert_eq!(mock.requests().len(), 2);
        assert_eq!(mock.token_requests().len(), 2);
        assert_eq!(err.class(), ErrorClass::Config);
        assert_eq!(err.api_error().unwrap().error_code, "INVALID_SESSION_ID");
    }

    #[tokio::test]
    async fn non_refreshable_401_is_not_refreshed() {
        let mock = MockServer::start().await;
        mock.push(sf_error(
            401,
            "INVALID_SESSION_ID",
            "This session is not valid for use with the REST API",
        ));
        let err = get(&mock.client()).await.unwrap_err();
        assert_eq!(mock.token_requests().len(), 1);
        assert_eq!(err.class(), ErrorClass::Config);
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_grant() {
        let mock = MockServer::start().await;
        let base = mock.base_url.clone();
        mock.push_token(
            Scripted::json(
                200,
                json!({"access_token":"slow","instance_url":base,"token_type":"Bearer"}),
            )
            .delay(Duration::from_millis(100)),
        );
        for _ in 0..20 {
            mock.push(ok());
        }
        let client = mock.client();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let c = client.clone();
                tokio::spawn(async move { get(&c).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(mock.token_requests().len(), 1);
        assert!(
            mock.requests()
                .iter()
                .all(|r| r.header("authorization") == Some("Bearer slow"))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_401s_cause_a_single_refresh() {
        let mock = MockServer::start().await;
        for _ in 0..10 {
            mock.push(ok());
        }
        let client = mock.client();
        client.authenticate().await.unwrap();
        mock.reject_token("tok-1");
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let c = client.clone();
                tokio::spawn(async move { get(&c).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(
            mock.token_requests().len(),
            2,
            "one initial grant, one refresh"
        );
        // Each request is sent once with the rejected token at most (fewer if it started after
        // the refresh), then once more.
        let n = mock.requests().len();
        assert!((11..=20).contains(&n), "{n} requests");
    }

    #[tokio::test]
    async fn timeouts_are_retried_only_for_idempotent_requests() {
        let mock = MockServer::start().await;
        mock.push(ok().delay(Duration::from_secs(4)));
        mock.push(ok());
        let client = mock
            .builder()
            .with_request_timeout(Duration::from_millis(800))
            .build()
            .unwrap();
        get(&client).await.unwrap();
        assert_eq!(mock.requests().len(), 2);

        mock.push(ok().delay(Duration::from_secs(4)));
        mock.push(ok());
        let post = Call::new(Method::POST, "jobs/query")
            .json(&json!({}))
            .unwrap();
        let err = client.send_empty(&post).await.unwrap_err();
        assert!(
            matches!(&err, Error::Http { source, .. } if source.is_timeout()),
            "{err}"
        );
        assert_eq!(err.class(), ErrorClass::Transient);
        assert_eq!(mock.requests().len(), 3, "the POST was not retried");
    }

    #[tokio::test]
    async fn connection_errors_are_retried_then_reported() {
        let mock = MockServer::start().await;
        // A port with nothing listening: bind, note it, drop.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        mock.push_token(Scripted::json(
            200,
            json!({"access_token":"t","instance_url":dead,"token_type":"Bearer"}),
        ));
        let client = mock.client();
        let err = get(&client).await.unwrap_err();
        assert!(
            matches!(&err, Error::Http { attempts: 4, source, .. } if source.is_connect()),
            "{err:?}"
        );
        assert_eq!(err.class(), ErrorClass::Transient);
        assert_eq!(client.usage().calls_made, 4);
    }

    #[tokio::test]
    async fn records_limit_info_and_enforces_the_budget() {
        let mock = MockServer::start().await;
        mock.push(ok().header("sforce-limit-info", "api-usage=79/100"));
        mock.push(ok().header(
            "sforce-limit-info",
            "api-usage=80/100; per-app-api-usage=3/50(appName=x)",
        ));
        mock.push(ok());
        let client = mock
            .builder()
            .with_budget(crate::Budget::share(0.8))
            .build()
            .unwrap();
        assert!(client.within_budget());
        get(&client).await.unwrap();
        get(&client).await.unwrap();
        let usage = client.usage();
        assert_eq!((usage.org_used, usage.org_max), (Some(80), Some(100)));
        assert!(!client.within_budget());
        let err = get(&client).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::BudgetExhausted {
                    used: 80,
                    max: 100,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.class(), ErrorClass::RateLimited);
        assert!(
            !err.is_daily_limit(),
            "our budget is not Salesforce's daily limit"
        );
        assert_eq!(
            mock.requests().len(),
            2,
            "no request sent once the budget is spent"
        );
    }

    #[tokio::test]
    async fn a_broken_json_body_is_fetched_again() {
        let mock = MockServer::start().await;
        mock.push(Scripted::new(200, "{\"ok\": tr").truncated());
        mock.push(ok());
        assert_eq!(get(&mock.client()).await.unwrap(), json!({"ok": true}));
        assert_eq!(mock.requests().len(), 2);
    }

    #[tokio::test]
    async fn uri_too_long_is_caught_before_sending() {
        let mock = MockServer::start().await;
        let client = mock.client();
        let call = Call::get("query/").query("q", "x".repeat(MAX_URI_BYTES));
        let err = client.send_empty(&call).await.unwrap_err();
        assert!(matches!(err, Error::UriTooLong { .. }), "{err}");
        assert!(mock.requests().is_empty());
    }

    #[tokio::test]
    async fn secrets_stay_out_of_debug_and_errors() {
        let mock = MockServer::start().await;
        mock.push_token(Scripted::json(
            400,
            json!({"error":"invalid_grant","error_description":"expired access/refresh token"}),
        ));
        let client = mock.client();
        let err = get(&client).await.unwrap_err();
        let shown = format!("{err} {err:?} {client:?}");
        for secret in ["rtoken", "csecret"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert_eq!(err.class(), ErrorClass::Config);
        assert!(err.to_string().contains("re-authenticate"), "{err}");
        let _ = Arc::new(());
    }
}
