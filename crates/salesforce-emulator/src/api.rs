//! HTTP edge: Salesforce error bodies, the API middleware (auth, limits, faults, call counting,
//! `Sforce-Limit-Info`), the router and the server loop.

use crate::state::{EmulatorState, lock, now_ms};
use crate::{admin, bulk, oauth, rest};
use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use std::sync::Arc;

/// A Salesforce REST/Bulk error, rendered as the JSON array of §3.1.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// `errorCode`.
    pub code: String,
    /// `message`.
    pub message: String,
    /// `fields`, for record/field errors.
    pub fields: Option<Vec<String>>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code: code.to_string(),
            message: message.into(),
            fields: None,
        }
    }

    /// 404 `NOT_FOUND` (§3.2).
    pub fn not_found() -> ApiError {
        ApiError::new(404, "NOT_FOUND", "The requested resource does not exist")
    }

    /// The JSON body `[{"message","errorCode"[,"fields"]}]`.
    pub fn body(&self) -> serde_json::Value {
        let mut e = json!({"message": self.message, "errorCode": self.code});
        if let Some(f) = &self.fields {
            e["fields"] = json!(f);
        }
        json!([e])
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body())
    }
}

/// A JSON response with `Content-Type: application/json;charset=UTF-8`.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    r
}

/// Response extension: the handler counted its calls itself (`/composite/batch`).
#[derive(Debug, Clone, Copy)]
pub struct SelfCounted;

/// Resolves the `{version}` path segment (`v62.0` or `latest`, §2.1) to `vNN.0`; versions older
/// than 31.0 are retired → 410 (§7); unknown versions → 404.
pub fn version(state: &EmulatorState, raw: &str) -> Result<String, ApiError> {
    if raw == "latest" {
        return Ok(format!("v{}.0", state.config.latest_api_version));
    }
    let num = raw
        .strip_prefix('v')
        .and_then(|n| n.strip_suffix(".0"))
        .and_then(|n| n.parse::<u32>().ok())
        .ok_or_else(ApiError::not_found)?;
    if num < 31 {
        return Err(ApiError::new(
            410,
            "GONE",
            format!("Version {num}.0 of the API is no longer supported"),
        ));
    }
    if num > state.config.latest_api_version {
        return Err(ApiError::not_found());
    }
    Ok(format!("v{num}.0"))
}

fn limit_info(state: &EmulatorState) -> String {
    let used = state.used();
    let max = state.daily_limit();
    if state.switches().limit_info_extended {
        format!("api-usage={used}/{max}; per-app-api-usage={used}/{max}(appName=Emulator)")
    } else {
        format!("api-usage={used}/{max}")
    }
}

fn html_error(status: StatusCode) -> Response {
    let mut r = Response::new(Body::from(format!(
        "<html><head><title>{0}</title></head><body><h1>{0}</h1><p>Service temporarily unavailable.</p></body></html>",
        status.as_u16()
    )));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}

/// Renders an injected status (§3.4 list of injectable failures).
fn injected(state: &EmulatorState, status: u16, token: Option<&str>) -> Response {
    let html = lock(&state.faults).html_errors;
    match status {
        401 => {
            if let Some(t) = token {
                lock(&state.tokens).access.remove(t);
            }
            session_invalid()
        }
        403 => ApiError::new(
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        )
        .into_response(),
        400 => ApiError::new(
            400,
            "QUERY_TIMEOUT",
            "Your query request was running for too long.",
        )
        .into_response(),
        406 | 420 | 429 => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
            r
        }
        s => {
            let st = StatusCode::from_u16(s).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            if html {
                html_error(st)
            } else if s == 503 {
                ApiError::new(
                    503,
                    "SERVER_UNAVAILABLE",
                    "Server temporarily unavailable. Please try again later.",
                )
                .into_response()
            } else {
                ApiError::new(s, "UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567890-12345 (-1234567890)").into_response()
            }
        }
    }
}

/// 401 `INVALID_SESSION_ID` (§1.6), identical on REST and Bulk.
pub fn session_invalid() -> Response {
    session_error().into_response()
}

fn session_error() -> ApiError {
    ApiError::new(401, "INVALID_SESSION_ID", "Session expired or invalid")
}

/// Checks the bearer token (§1.6): unknown or expired → 401 `INVALID_SESSION_ID`; a malformed
/// header → `INVALID_AUTH_HEADER` (status is a switch, §9.8).
fn authenticate(state: &EmulatorState, req: &Request) -> Result<String, ApiError> {
    let Some(h) = req.headers().get(header::AUTHORIZATION) else {
        return Err(session_error());
    };
    let h = h.to_str().unwrap_or("");
    let token = h
        .strip_prefix("Bearer ")
        .or_else(|| h.strip_prefix("OAuth "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        let status = state.switches().invalid_auth_header_status;
        return Err(ApiError::new(
            status,
            "INVALID_AUTH_HEADER",
            "INVALID_HEADER_TYPE",
        ));
    };
    let lifetime = lock(&state.faults)
        .token_lifetime_secs
        .unwrap_or(state.config.token_lifetime_secs) as i64
        * 1000;
    let sliding = state.switches().token_sliding_expiry;
    let now = now_ms();
    let mut tokens = lock(&state.tokens);
    let Some(t) = tokens.access.get_mut(token) else {
        return Err(session_error());
    };
    let since = if sliding { t.last_used_ms } else { t.issued_ms };
    if now - since > lifetime {
        tokens.access.remove(token);
        return Err(session_error());
    }
    t.last_used_ms = now;
    Ok(token.to_string())
}

/// The API middleware, in order: URI length (§2.8), auth (§1.6), daily limit (§2.10/§3.3),
/// injected faults, latency, the handler, call counting, `Sforce-Limit-Info` (§2.10).
async fn api_layer(State(state): State<Arc<EmulatorState>>, req: Request, next: Next) -> Response {
    let token = match authenticate(&state, &req) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let endpoint = format!(
        "{} {}",
        req.method(),
        req.extensions()
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| req.uri().path().to_string())
    );
    if state.used() >= state.daily_limit() {
        let mut r = ApiError::new(
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        )
        .into_response();
        add_limit_header(&state, &mut r);
        return r;
    }
    let (scripted, rate, status, conc, latency, long_limit) = {
        let mut f = lock(&state.faults);
        let s = if f.script.is_empty() {
            None
        } else {
            Some(f.script.remove(0))
        };
        (
            s,
            f.error_rate,
            f.error_status,
            f.concurrent_limit_rate,
            f.latency_ms,
            f.concurrent_long_requests
                .map(|n| (n, f.long_request_ms.unwrap_or(20_000))),
        )
    };
    // §3.3 REQUEST_LIMIT_EXCEEDED (concurrent): requests running ≥ 20 s count against a per-org
    // cap; past it, new requests are refused at once (the threshold is a fault setting so tests
    // stay fast).
    let in_flight = match long_limit {
        Some((n, min_age)) => {
            if state.long_running(min_age) >= n as usize {
                return concurrent_limit_error();
            }
            Some(state.begin_request())
        }
        None => None,
    };
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    if let Some(s) = scripted.filter(|&s| s >= 300) {
        return injected(&state, s, Some(&token));
    }
    if conc > 0.0 && state.roll() < conc {
        return concurrent_limit_error();
    }
    if rate > 0.0 && state.roll() < rate {
        return injected(&state, if status == 0 { 503 } else { status }, Some(&token));
    }
    let mut resp = next.run(req).await;
    if resp.extensions().get::<SelfCounted>().is_none() {
        state.count_call(&endpoint);
    }
    add_limit_header(&state, &mut resp);
    match in_flight {
        // The request stays in flight until its body has been sent (or the client hung up).
        Some(guard) => resp.map(|body| {
            use futures::StreamExt;
            Body::from_stream(body.into_data_stream().map(move |chunk| {
                let _ = &guard;
                chunk
            }))
        }),
        None => resp,
    }
}

/// 403 `REQUEST_LIMIT_EXCEEDED` for too many concurrent long-running requests (§3.3; message as
/// in the reference's sources: `ConcurrentRequests (Concurrent API Requests) Limit exceeded.`).
fn concurrent_limit_error() -> Response {
    ApiError::new(
        403,
        "REQUEST_LIMIT_EXCEEDED",
        "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
    )
    .into_response()
}

fn add_limit_header(state: &EmulatorState, resp: &mut Response) {
    if let Ok(v) = HeaderValue::from_str(&limit_info(state)) {
        resp.headers_mut().insert("Sforce-Limit-Info", v);
    }
}

/// §2.8: URI over 16,384 bytes → 414; URI plus headers over 16,384 → 431.
async fn uri_guard(req: Request, next: Next) -> Response {
    let uri_len = req.uri().to_string().len();
    if uri_len > 16_384 {
        let mut r = Response::new(Body::from("URI Too Long"));
        *r.status_mut() = StatusCode::URI_TOO_LONG;
        return r;
    }
    let headers_len: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if uri_len + headers_len > 16_384 {
        let mut r = Response::new(Body::from("Request Header Fields Too Large"));
        *r.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
        return r;
    }
    next.run(req).await
}

async fn not_found() -> Response {
    ApiError::not_found().into_response()
}

/// The complete router.
pub fn router(state: Arc<EmulatorState>) -> Router {
    let d = "/services/data/{version}";
    let api = Router::new()
        .route(d, get(rest::resources))
        .route(&format!("{d}/"), get(rest::resources))
        .route(&format!("{d}/limits"), get(rest::limits))
        .route(&format!("{d}/limits/"), get(rest::limits))
        .route(&format!("{d}/sobjects"), get(rest::describe_global))
        .route(&format!("{d}/sobjects/"), get(rest::describe_global))
        .route(
            &format!("{d}/sobjects/{{object}}"),
            get(rest::sobject_basic).post(rest::create),
        )
        .route(
            &format!("{d}/sobjects/{{object}}/describe"),
            get(rest::describe),
        )
        .route(
            &format!("{d}/sobjects/{{object}}/describe/"),
            get(rest::describe),
        )
        .route(
            &format!("{d}/sobjects/{{object}}/deleted"),
            get(rest::get_deleted),
        )
        .route(
            &format!("{d}/sobjects/{{object}}/deleted/"),
            get(rest::get_deleted),
        )
        .route(
            &format!("{d}/sobjects/{{object}}/updated"),
            get(rest::get_updated),
        )
        .route(
            &format!("{d}/sobjects/{{object}}/updated/"),
            get(rest::get_updated),
        )
        .route(
            &format!("{d}/sobjects/{{object}}/{{id}}"),
            get(rest::retrieve).patch(rest::update).delete(rest::delete),
        )
        .route(
            &format!("{d}/sobjects/{{object}}/{{id}}/{{field}}"),
            get(rest::blob),
        )
        .route(&format!("{d}/query"), get(rest::query))
        .route(&format!("{d}/query/"), get(rest::query))
        .route(&format!("{d}/queryAll"), get(rest::query_all))
        .route(&format!("{d}/queryAll/"), get(rest::query_all))
        .route(&format!("{d}/query/{{locator}}"), get(rest::query_more))
        .route(&format!("{d}/queryAll/{{locator}}"), get(rest::query_more))
        .route(&format!("{d}/composite"), post(rest::composite))
        .route(&format!("{d}/composite/"), post(rest::composite))
        .route(&format!("{d}/composite/batch"), post(rest::composite_batch))
        .route(
            &format!("{d}/composite/batch/"),
            post(rest::composite_batch),
        )
        .route(
            &format!("{d}/jobs/query"),
            post(bulk::create).get(bulk::list),
        )
        .route(
            &format!("{d}/jobs/query/"),
            post(bulk::create).get(bulk::list),
        )
        .route(
            &format!("{d}/jobs/query/{{job}}"),
            get(bulk::info).patch(bulk::abort).delete(bulk::delete),
        )
        .route(
            &format!("{d}/jobs/query/{{job}}/results"),
            get(bulk::results),
        )
        .route(
            &format!("{d}/jobs/query/{{job}}/results/"),
            get(bulk::results),
        )
        .route(
            &format!("{d}/jobs/query/{{job}}/resultPages"),
            get(bulk::result_pages),
        )
        .merge(crate::ingest::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), api_layer));
    Router::new()
        .route("/services/data", get(rest::versions))
        .route("/services/data/", get(rest::versions))
        .route("/services/oauth2/token", post(oauth::token))
        .merge(api)
        .nest("/__emulator", admin::router())
        .fallback(not_found)
        .layer(middleware::from_fn(uri_guard))
        .with_state(state)
}

/// Serves the emulator on `listener` until `shutdown` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<EmulatorState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    {
        let mut b = match state.base_url.write() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        if b.is_empty() {
            *b = format!("http://{addr}");
        }
    }
    tracing::info!(%addr, "salesforce emulator listening");
    let mutator = spawn_mutations(state.clone());
    let served = serve(listener, router(state), shutdown).await;
    if let Some(task) = mutator {
        task.abort();
    }
    served
}

/// Starts the background mutation task when [`crate::config::Mutations::interval_ms`] is set:
/// one [`EmulatorState::mutate_tick`] per interval, run off the async workers.
fn spawn_mutations(state: Arc<EmulatorState>) -> Option<tokio::task::JoinHandle<()>> {
    let ms = state.config.mutations.interval_ms;
    if ms == 0 {
        return None;
    }
    tracing::info!(
        interval_ms = ms,
        objects = ?state.mutation_objects(),
        "background mutations on"
    );
    Some(tokio::spawn(async move {
        let period = std::time::Duration::from_millis(ms);
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tick = 0u64;
        loop {
            interval.tick().await;
            let st = state.clone();
            let t = tick;
            if tokio::task::spawn_blocking(move || st.mutate_tick(t))
                .await
                .is_err()
            {
                tracing::warn!(tick, "mutation tick panicked");
            }
            tick += 1;
        }
    }))
}

/// Serves HTTP/1.1 connections until `shutdown` resolves, then lets open connections finish.
///
/// Response header names go out in canonical capitalisation (`Content-Type`, `Sforce-Locator`,
/// `Sforce-Limit-Info`), as Salesforce's servers send them. Header names are case-insensitive
/// (RFC 9110 §5.1), but clients do depend on the spelling: Airbyte's Python source copies the
/// response headers of a Bulk result download into a plain `dict` and looks up
/// `"content-type"` there, a lookup that only misses (and so takes its default path) when the
/// server capitalises the name. `axum::serve` would send lower-case names.
async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.title_case_headers(true);
        let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection ended with an error: {e}");
            }
        });
    }
    // Open keep-alive connections are told to close; give in-flight responses a moment.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown()).await;
    Ok(())
}
