//! REST resources: versions (§2.1), limits (§2.9), describe (§2.2–2.3), query/queryAll with
//! cursors (§2.5–2.6), record and blob retrieval, getDeleted/getUpdated, and the composite
//! resources (§2.11).

use crate::api::{ApiError, SelfCounted, json_response, version};
use crate::describe;
use crate::engine::{self, Exec, Pos};
use crate::soql::{self, SoqlOptions};
use crate::state::{Cursor, EmulatorState, lock};
use crate::value::{self, Value};
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::sync::Arc;

type St = State<Arc<EmulatorState>>;

fn ok(body: Json) -> Response {
    json_response(StatusCode::OK, &body)
}

fn params(raw: &Option<String>) -> HashMap<String, String> {
    raw.as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

fn season(v: u32) -> String {
    let k = v as i64 - 62;
    let name = ["Winter", "Spring", "Summer"][k.rem_euclid(3) as usize];
    format!("{name} '{:02}", 25 + k.div_euclid(3))
}

/// `GET /services/data/`: unauthenticated, uncounted, no `Sforce-Limit-Info` (§2.1).
pub async fn versions(State(state): St) -> Response {
    let list: Vec<Json> = (31..=state.config.latest_api_version)
        .map(|v| json!({"label": season(v), "url": format!("/services/data/v{v}.0"), "version": format!("{v}.0")}))
        .collect();
    ok(Json::Array(list))
}

/// `GET /services/data/vXX.X/`: the resource directory.
pub async fn resources(State(state): St, Path(v): Path<String>) -> Response {
    let v = match version(&state, &v) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let b = format!("/services/data/{v}");
    ok(json!({
        "limits": format!("{b}/limits"), "sobjects": format!("{b}/sobjects"),
        "query": format!("{b}/query"), "queryAll": format!("{b}/queryAll"),
        "composite": format!("{b}/composite"), "jobs": format!("{b}/jobs"),
    }))
}

/// `/limits` body (§2.9).
pub fn limits_body(state: &EmulatorState) -> Json {
    let max = state.daily_limit();
    let used = state.used();
    let jobs = lock(&state.jobs).len() as u64;
    json!({
        "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200},
        "DailyApiRequests": {"Max": max, "Remaining": max.saturating_sub(used)},
        "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
        "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
        "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000u64.saturating_sub(jobs)},
        "DataStorageMB": {"Max": 1024, "Remaining": 1000},
        "FileStorageMB": {"Max": 1024, "Remaining": 1000},
    })
}

/// `GET /limits`.
pub async fn limits(State(state): St, Path(v): Path<String>) -> Response {
    match version(&state, &v) {
        Ok(_) => ok(limits_body(&state)),
        Err(e) => e.into_response(),
    }
}

/// 404 `NOT_FOUND` for an unknown sObject name (§3.2).
fn unknown_object(_name: &str) -> ApiError {
    ApiError::not_found()
}

/// `GET /sobjects/` (§2.2).
pub async fn describe_global(State(state): St, Path(v): Path<String>) -> Response {
    match version(&state, &v) {
        Ok(v) => ok(describe::global(state.store.schema(), &v)),
        Err(e) => e.into_response(),
    }
}

/// `GET /sobjects/{name}`.
pub async fn sobject_basic(
    State(state): St,
    Path((v, object)): Path<(String, String)>,
) -> Response {
    into(
        dispatch_get(
            &state,
            &v,
            &["sobjects", &object],
            &HashMap::new(),
            &HeaderMap::new(),
        )
        .await,
    )
}

/// `GET /sobjects/{name}/describe` (§2.3); unknown objects → 404 `NOT_FOUND`.
pub async fn describe(State(state): St, Path((v, object)): Path<(String, String)>) -> Response {
    into(
        dispatch_get(
            &state,
            &v,
            &["sobjects", &object, "describe"],
            &HashMap::new(),
            &HeaderMap::new(),
        )
        .await,
    )
}

/// `GET /sobjects/{name}/deleted/?start=&end=`.
pub async fn get_deleted(
    State(state): St,
    Path((v, object)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    into(
        dispatch_get(
            &state,
            &v,
            &["sobjects", &object, "deleted"],
            &params(&q),
            &HeaderMap::new(),
        )
        .await,
    )
}

/// `GET /sobjects/{name}/updated/?start=&end=`.
pub async fn get_updated(
    State(state): St,
    Path((v, object)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    into(
        dispatch_get(
            &state,
            &v,
            &["sobjects", &object, "updated"],
            &params(&q),
            &HeaderMap::new(),
        )
        .await,
    )
}

/// `GET /sobjects/{name}/{id}[?fields=]`.
pub async fn retrieve(
    State(state): St,
    Path((v, object, id)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    into(
        dispatch_get(
            &state,
            &v,
            &["sobjects", &object, &id],
            &params(&q),
            &HeaderMap::new(),
        )
        .await,
    )
}

/// `GET /sobjects/{name}/{id}/{blobField}`: raw blob bytes.
pub async fn blob(
    State(state): St,
    Path((v, object, id, field)): Path<(String, String, String, String)>,
) -> Response {
    if let Err(e) = version(&state, &v) {
        return e.into_response();
    }
    let snap = state.snapshot();
    let Some(oi) = snap.schema.index(&object) else {
        return unknown_object(&object).into_response();
    };
    let def = &snap.schema.objects[oi];
    let Some(fi) = def
        .index(&field)
        .filter(|&f| def.fields[f].ty == crate::schema::FieldType::Base64)
    else {
        return ApiError::not_found().into_response();
    };
    match snap.row_by_id(oi, &id).filter(|r| r.visible(false)) {
        Some(r) => match r.get(fi) {
            Value::Blob(b) => {
                let mut resp = Response::new(Body::from(b.to_vec()));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    "application/octetstream"
                        .parse()
                        .unwrap_or(header::HeaderValue::from_static("application/octet-stream")),
                );
                resp
            }
            _ => ApiError::not_found().into_response(),
        },
        None => ApiError::not_found().into_response(),
    }
}

/// The JSON body of a record write as field values (`attributes` ignored, `null` clears).
fn record_values(body: &[u8]) -> Result<crate::store::FieldValues, ApiError> {
    use crate::store::FieldInput;
    let j: Json = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            400,
            "JSON_PARSER_ERROR",
            format!("Unexpected character in request body: {e}"),
        )
    })?;
    let Json::Object(m) = j else {
        return Err(ApiError::new(
            400,
            "JSON_PARSER_ERROR",
            "Cannot deserialize instance of sObject from a non-object value",
        ));
    };
    Ok(m.into_iter()
        .filter(|(k, _)| k != "attributes")
        .map(|(k, v)| {
            let input = if v.is_null() {
                FieldInput::Null
            } else {
                FieldInput::Json(v)
            };
            (k, input)
        })
        .collect())
}

/// Applies one write; a row error becomes Salesforce's 400 array body with `fields` (§3.1).
fn write_one(
    state: &EmulatorState,
    object: &str,
    op: crate::store::WriteOp,
) -> Result<String, ApiError> {
    use crate::store::{RowOutcome, StoreError};
    let out = state
        .store
        .apply(object, std::slice::from_ref(&op), &state.write_options())
        .map_err(|e| match e {
            StoreError::UnknownObject { .. } => ApiError::not_found(),
            other => ApiError::new(400, "INVALID_TYPE_FOR_OPERATION", other.to_string()),
        })?;
    match out.into_iter().next() {
        Some(RowOutcome::Ok { id, .. }) => Ok(id),
        Some(RowOutcome::Err(e)) => {
            let mut err = ApiError::new(400, &e.code, e.message);
            err.fields = Some(e.fields);
            Err(err)
        }
        None => Err(ApiError::new(500, "UNKNOWN_EXCEPTION", "no write outcome")),
    }
}

/// The target of `PATCH`/`DELETE /sobjects/{name}/{id}` must exist: 404 `NOT_FOUND` for an
/// unknown object or id, 404 `ENTITY_IS_DELETED` for a row in the recycle bin (§3.2).
fn existing(state: &EmulatorState, object: &str, id: &str) -> Result<String, ApiError> {
    let snap = state.snapshot();
    let oi = snap.schema.index(object).ok_or_else(ApiError::not_found)?;
    let row = snap.row_by_id(oi, id).ok_or_else(ApiError::not_found)?;
    if !row.visible(true) {
        return Err(ApiError::not_found());
    }
    if !row.visible(false) {
        return Err(ApiError::new(404, "ENTITY_IS_DELETED", "entity is deleted"));
    }
    Ok(snap.schema.objects[oi].name.clone())
}

/// `POST /sobjects/{name}`: creates a record; 201 `{"id", "success": true, "errors": []}`
/// (REST API "Create a Record"; status table §3.2). Field errors answer 400 with the §3.1 array.
pub async fn create(
    State(state): St,
    Path((v, object)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if let Err(e) = version(&state, &v) {
        return e.into_response();
    }
    let values = match record_values(&body) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    match write_one(&state, &object, crate::store::WriteOp::Insert(values)) {
        Ok(id) => json_response(
            StatusCode::CREATED,
            &json!({"id": id, "success": true, "errors": []}),
        ),
        Err(e) => e.into_response(),
    }
}

/// `PATCH /sobjects/{name}/{id}`: updates the given fields; 204 No Content (§3.2).
pub async fn update(
    State(state): St,
    Path((v, object, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    if let Err(e) = version(&state, &v) {
        return e.into_response();
    }
    let result = existing(&state, &object, &id).and_then(|object| {
        let values = record_values(&body)?;
        write_one(
            &state,
            &object,
            crate::store::WriteOp::Update {
                id: id.clone(),
                values,
            },
        )
    });
    match result {
        Ok(_) => no_content(),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /sobjects/{name}/{id}`: soft delete into the recycle bin (§4.5); 204 No Content.
pub async fn delete(
    State(state): St,
    Path((v, object, id)): Path<(String, String, String)>,
) -> Response {
    if let Err(e) = version(&state, &v) {
        return e.into_response();
    }
    let result = existing(&state, &object, &id).and_then(|object| {
        write_one(
            &state,
            &object,
            crate::store::WriteOp::Delete { id: id.clone() },
        )
    });
    match result {
        Ok(_) => no_content(),
        Err(e) => e.into_response(),
    }
}

fn no_content() -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

fn into(r: Result<(StatusCode, Json), ApiError>) -> Response {
    match r {
        Ok((s, j)) => json_response(s, &j),
        Err(e) => e.into_response(),
    }
}

/// A query page, cut after `rest_reset_after_bytes` body bytes when that fault is armed (a
/// connection reset in the middle of a body, issue switch list; the client sees a truncated
/// chunked body).
fn query_answer(state: &EmulatorState, r: Result<(StatusCode, Json), ApiError>) -> Response {
    let cut = match &r {
        Ok((s, _)) if s.is_success() => lock(&state.faults).rest_reset_after_bytes.take(),
        _ => None,
    };
    match (r, cut) {
        (Ok((_, j)), Some(n)) => {
            let mut text = j.to_string().into_bytes();
            text.truncate(usize::try_from(n).unwrap_or(usize::MAX));
            // The cut comes a moment after the first bytes, so the status line and headers are
            // on the wire first (as with a connection dropped mid-transfer).
            let chunks = futures::stream::unfold(Some(Bytes::from(text)), |first| async move {
                match first {
                    Some(bytes) => Some((Ok(bytes), None)),
                    None => {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        Some((
                            Err(std::io::Error::new(
                                std::io::ErrorKind::ConnectionReset,
                                "injected connection reset",
                            )),
                            None,
                        ))
                    }
                }
            });
            let mut resp = Response::new(Body::from_stream(chunks));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json;charset=UTF-8"),
            );
            resp
        }
        (r, _) => into(r),
    }
}

/// `GET /query?q=`.
pub async fn query(
    State(state): St,
    Path(v): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    query_answer(
        &state,
        dispatch_get(&state, &v, &["query"], &params(&q), &headers).await,
    )
}

/// `GET /queryAll?q=`.
pub async fn query_all(
    State(state): St,
    Path(v): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    query_answer(
        &state,
        dispatch_get(&state, &v, &["queryAll"], &params(&q), &headers).await,
    )
}

/// `GET /query/{locator}` (also under `/queryAll/`).
pub async fn query_more(State(state): St, Path((v, locator)): Path<(String, String)>) -> Response {
    query_answer(
        &state,
        dispatch_get(
            &state,
            &v,
            &["query", &locator],
            &HashMap::new(),
            &HeaderMap::new(),
        )
        .await,
    )
}

/// `Sforce-Query-Options: batchSize=N`, clamped to 200..=2000, default 2000 (§2.6).
fn batch_size(headers: &HeaderMap) -> u64 {
    headers
        .get("Sforce-Query-Options")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            h.split(',')
                .filter_map(|p| p.trim().strip_prefix("batchSize="))
                .next()
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .map(|n| n.clamp(200, 2000))
        .unwrap_or(2000)
}

/// The route pattern a GET sub-path maps to (for call counting of batch subrequests).
pub fn pattern(segs: &[&str]) -> String {
    let d = "/services/data/{version}";
    match segs {
        [] => format!("GET {d}/"),
        ["limits"] => format!("GET {d}/limits"),
        ["sobjects"] => format!("GET {d}/sobjects"),
        ["sobjects", _] => format!("GET {d}/sobjects/{{object}}"),
        ["sobjects", _, "describe"] => format!("GET {d}/sobjects/{{object}}/describe"),
        ["sobjects", _, "deleted"] => format!("GET {d}/sobjects/{{object}}/deleted"),
        ["sobjects", _, "updated"] => format!("GET {d}/sobjects/{{object}}/updated"),
        ["sobjects", _, _] => format!("GET {d}/sobjects/{{object}}/{{id}}"),
        ["query"] => format!("GET {d}/query"),
        ["queryAll"] => format!("GET {d}/queryAll"),
        ["query" | "queryAll", _] => format!("GET {d}/query/{{locator}}"),
        _ => format!("GET {d}/unknown"),
    }
}

fn is_query(segs: &[&str]) -> bool {
    matches!(segs.first(), Some(&"query") | Some(&"queryAll"))
}

/// Executes one GET resource (shared by the axum handlers and the composite resources).
pub async fn dispatch_get(
    state: &Arc<EmulatorState>,
    v: &str,
    segs: &[&str],
    params: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<(StatusCode, Json), ApiError> {
    let v = version(state, v)?;
    let st = state.clone();
    let segs: Vec<String> = segs.iter().map(|s| s.to_string()).collect();
    let params = params.clone();
    let batch = batch_size(headers);
    tokio::task::spawn_blocking(move || {
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        get_blocking(&st, &v, &segs, &params, batch)
    })
    .await
    .map_err(|e| ApiError::new(500, "UNKNOWN_EXCEPTION", format!("handler failed: {e}")))?
}

fn get_blocking(
    state: &Arc<EmulatorState>,
    v: &str,
    segs: &[&str],
    params: &HashMap<String, String>,
    batch: u64,
) -> Result<(StatusCode, Json), ApiError> {
    let schema = state.store.schema().clone();
    let object = |name: &str| schema.index(name).ok_or_else(|| unknown_object(name));
    let okj = |j: Json| Ok((StatusCode::OK, j));
    match segs {
        [] => okj(json!({"sobjects": format!("/services/data/{v}/sobjects")})),
        ["limits"] => okj(limits_body(state)),
        ["sobjects"] => okj(describe::global(&schema, v)),
        ["sobjects", o] => okj(describe::basic(&schema.objects[object(o)?], v)),
        ["sobjects", o, "describe"] => {
            let oi = object(o)?;
            okj(describe::sobject_with(
                &schema,
                &schema.objects[oi],
                v,
                state.switches().describe_json_masterrecord,
            ))
        }
        ["sobjects", o, kind @ ("deleted" | "updated")] => {
            let oi = object(o)?;
            replication(state, oi, kind == &"deleted", params).map(|j| (StatusCode::OK, j))
        }
        ["sobjects", o, id] => {
            let oi = object(o)?;
            let snap = state.snapshot();
            let def = &schema.objects[oi];
            let row = snap.row_by_id(oi, id).ok_or_else(ApiError::not_found)?;
            if !row.visible(true) {
                return Err(ApiError::not_found());
            }
            if row.is_deleted() {
                return Err(ApiError::new(404, "ENTITY_IS_DELETED", "entity is deleted"));
            }
            let gated = state.switches().describe_json_masterrecord;
            let fields: Vec<soql::FieldRef> = match params.get("fields") {
                Some(list) => list
                    .split(',')
                    .map(|n| {
                        let n = n.trim();
                        def.index(n)
                            .filter(|&f| gated || !def.fields[f].gated)
                            .map(|f| soql::FieldRef {
                                field: f,
                                parent: None,
                                name: def.fields[f].name.clone(),
                                written: def.fields[f].name.clone(),
                                ty: def.fields[f].ty,
                            })
                            .ok_or_else(|| {
                                ApiError::new(
                                    400,
                                    "INVALID_FIELD",
                                    format!("No such column '{n}' on sobject of type {}", def.name),
                                )
                            })
                    })
                    .collect::<Result<_, _>>()?,
                None => def
                    .fields
                    .iter()
                    .enumerate()
                    .filter(|(_, fd)| gated || !fd.gated)
                    .map(|(f, fd)| soql::FieldRef {
                        field: f,
                        parent: None,
                        name: fd.name.clone(),
                        written: fd.name.clone(),
                        ty: fd.ty,
                    })
                    .collect(),
            };
            okj(engine::record_json(
                &row,
                &fields,
                v,
                state.switches().rest_base64,
            ))
        }
        [kind @ ("query" | "queryAll")] => {
            let q = params.get("q").ok_or_else(|| {
                ApiError::new(400, "MALFORMED_QUERY", "A query string has to be specified")
            })?;
            run_query(state, v, q, *kind == "queryAll", batch).map(|j| (StatusCode::OK, j))
        }
        ["query" | "queryAll", locator] => {
            query_page(state, v, locator).map(|j| (StatusCode::OK, j))
        }
        _ => Err(ApiError::not_found()),
    }
}

/// getDeleted / getUpdated over `[start, end]`.
fn replication(
    state: &EmulatorState,
    oi: usize,
    deleted: bool,
    params: &HashMap<String, String>,
) -> Result<Json, ApiError> {
    let parse = |k: &str| {
        params
            .get(k)
            .and_then(|s| value::parse_datetime(s.trim()))
            .ok_or_else(|| {
                ApiError::new(
                    400,
                    "MALFORMED_QUERY",
                    format!("{k}: parameter value is missing or not a valid dateTime"),
                )
            })
    };
    let (start, end) = (parse("start")?, parse("end")?);
    // The seconds of both bounds are ignored (switch `replication_granularity_ms`).
    let granularity = state.switches().replication_granularity_ms;
    let truncate = |t: i64| {
        if granularity > 0 {
            t - t.rem_euclid(granularity)
        } else {
            t
        }
    };
    let (start, end) = (truncate(start), truncate(end));
    if end < start {
        return Err(ApiError::new(
            400,
            "INVALID_REPLICATION_DATE",
            "EndDate can not be before StartDate",
        ));
    }
    let snap = state.snapshot();
    let now = snap.now;
    let days = if deleted {
        state.switches().recycle_bin_days
    } else {
        30
    };
    let earliest = now - days * 86_400_000;
    if start < earliest - 60_000 {
        return Err(ApiError::new(
            400,
            "INVALID_REPLICATION_DATE",
            "startDate before earliest date available",
        ));
    }
    let rows = engine::scan_range(&snap, oi, start, end, deleted);
    let latest = truncate(end.min(now));
    if deleted {
        let recs: Vec<Json> = rows
            .iter()
            .filter_map(|r| {
                let at = r.deleted_at()?;
                (at >= start && at <= end)
                    .then(|| json!({"id": r.id(), "deletedDate": value::fmt_datetime_rest(at)}))
            })
            .collect();
        Ok(json!({
            "deletedRecords": recs,
            "earliestDateAvailable": value::fmt_datetime_rest(earliest - earliest.rem_euclid(60_000)),
            "latestDateCovered": value::fmt_datetime_rest(latest),
        }))
    } else {
        let ids: Vec<String> = rows
            .iter()
            .filter(|r| !r.is_deleted() && r.stamp() >= start && r.stamp() <= end)
            .map(|r| r.id())
            .collect();
        Ok(json!({"ids": ids, "latestDateCovered": value::fmt_datetime_rest(latest)}))
    }
}

fn soql_err(e: soql::SoqlError) -> ApiError {
    ApiError::new(400, e.code, e.message)
}

/// Runs a query and returns its first page (§2.5).
fn run_query(
    state: &EmulatorState,
    v: &str,
    q: &str,
    all: bool,
    batch: u64,
) -> Result<Json, ApiError> {
    let snap = state.snapshot();
    let sw = state.switches();
    let opts = SoqlOptions {
        fractional_seconds: sw.soql_fractional_seconds,
        now_ms: snap.now,
        gated_fields: sw.describe_json_masterrecord,
    };
    let query = soql::parse(q, &snap.schema, opts).map_err(soql_err)?;
    let exec = Arc::new(Exec::new(Arc::new(query), snap, all));
    let timeout_rows = lock(&state.faults).query_timeout_rows;
    if let Some(n) = timeout_rows
        && exec.examined() > n
    {
        return Err(ApiError::new(
            400,
            "QUERY_TIMEOUT",
            "Your query request was running for too long.",
        ));
    }
    // totalSize: every match, or up to OFFSET + LIMIT when a LIMIT is given.
    let cap = exec
        .query
        .limit
        .map_or(u64::MAX, |l| l.saturating_add(exec.query.offset));
    let matched = exec.matched(cap);
    let after_offset = matched.saturating_sub(exec.query.offset);
    let total = exec
        .query
        .limit
        .map_or(after_offset, |l| after_offset.min(l));
    if exec.query.count {
        return Ok(json!({"totalSize": total, "done": true, "records": []}));
    }
    // Position after the OFFSET rows.
    let mut start = Pos::Start;
    if exec.query.offset > 0
        && let Some((_, p)) = exec
            .rows(&Pos::Start)
            .take(exec.query.offset as usize)
            .last()
    {
        start = p;
    }
    let cursor = Cursor {
        exec: exec.clone(),
        positions: HashMap::from([(0, start)]),
        total,
        batch,
    };
    page(state, v, cursor, 0, None)
}

/// Renders the page starting at ordinal `at` of a cursor; registers or drops the cursor.
fn page(
    state: &EmulatorState,
    v: &str,
    mut cursor: Cursor,
    at: u64,
    id: Option<&str>,
) -> Result<Json, ApiError> {
    let pos = cursor
        .positions
        .get(&at)
        .cloned()
        .ok_or_else(|| invalid_locator(state))?;
    let n = cursor.batch.min(cursor.total.saturating_sub(at));
    let b64 = state.switches().rest_base64;
    let mut records = Vec::with_capacity(n as usize);
    let mut last = pos.clone();
    for (r, p) in cursor.exec.rows(&pos).take(n as usize) {
        records.push(engine::record_json(&r, &cursor.exec.query.select, v, b64));
        last = p;
    }
    let next = at + records.len() as u64;
    let done = next >= cursor.total || records.is_empty();
    let mut body = json!({"totalSize": cursor.total, "done": done});
    if !done {
        cursor.positions.insert(next, last);
        let cid = match id {
            Some(id) => {
                if let Some(c) = state.cursor(id) {
                    lock(&c)
                        .positions
                        .insert(next, cursor.positions[&next].clone());
                }
                id.to_string()
            }
            None => state.add_cursor(cursor),
        };
        body["nextRecordsUrl"] = json!(format!("/services/data/{v}/query/{cid}-{next}"));
    } else if let Some(id) = id {
        state.drop_cursor(id);
    }
    body["records"] = Json::Array(records);
    Ok(body)
}

fn invalid_locator(state: &EmulatorState) -> ApiError {
    ApiError::new(
        state.switches().invalid_query_locator_status,
        "INVALID_QUERY_LOCATOR",
        "invalid query locator",
    )
}

/// Follows a `nextRecordsUrl` (§2.5): `/query/<cursor>-<offset>`.
fn query_page(state: &EmulatorState, v: &str, locator: &str) -> Result<Json, ApiError> {
    let (cid, at) = locator
        .rsplit_once('-')
        .and_then(|(c, n)| n.parse::<u64>().ok().map(|n| (c, n)))
        .ok_or_else(|| invalid_locator(state))?;
    let c = state.cursor(cid).ok_or_else(|| invalid_locator(state))?;
    let cursor = {
        let g = lock(&c);
        Cursor {
            exec: g.exec.clone(),
            positions: g.positions.clone(),
            total: g.total,
            batch: g.batch,
        }
    };
    page(state, v, cursor, at, Some(cid))
}

/// Substitutes `@{referenceId.path}` in a composite subrequest URL (§2.11).
fn substitute(url: &str, results: &HashMap<String, Json>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = url;
    while let Some(p) = rest.find("@{") {
        out.push_str(&rest[..p]);
        let Some(end) = rest[p..].find('}') else {
            return Err(rest.to_string());
        };
        let expr = &rest[p + 2..p + end];
        let mut parts = expr.split('.');
        let refid = parts.next().unwrap_or("");
        let mut cur = results.get(refid).ok_or_else(|| expr.to_string())?;
        for part in parts {
            let (name, idx) = match part.split_once('[') {
                Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
                None => (part, None),
            };
            if !name.is_empty() {
                cur = cur.get(name).ok_or_else(|| expr.to_string())?;
            }
            if let Some(i) = idx {
                cur = cur.get(i).ok_or_else(|| expr.to_string())?;
            }
        }
        match cur {
            Json::String(s) => out.push_str(s),
            other => out.push_str(&other.to_string()),
        }
        rest = &rest[p + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits a subrequest URL into (version, segments, params).
fn split_url(url: &str) -> Option<(String, Vec<String>, HashMap<String, String>)> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let path = path.trim_start_matches('/');
    let path = path.strip_prefix("services/data/").unwrap_or(path);
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    let v = segs.next()?.to_string();
    let segs: Vec<String> = segs.map(|s| s.to_string()).collect();
    let params = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    Some((v, segs, params))
}

fn err_json(e: &ApiError) -> (StatusCode, Json) {
    (e.status, e.body())
}

/// The body of a `/composite` or `/composite/batch` request and its subrequest list (`key`), or
/// the error Salesforce answers: unknown version, a body that is not JSON, no list, more than 25
/// subrequests (§2.11).
fn subrequests(
    state: &EmulatorState,
    v: &str,
    body: &Bytes,
    key: &str,
    label: &str,
) -> Result<(Json, Vec<Json>), ApiError> {
    version(state, v)?;
    let req: Json = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            400,
            "JSON_PARSER_ERROR",
            format!("Cannot deserialize request: {e}"),
        )
    })?;
    let Some(subs) = req.get(key).and_then(Json::as_array).cloned() else {
        return Err(ApiError::new(
            400,
            "INVALID_INPUT",
            format!("{key} is required"),
        ));
    };
    if subs.len() > 25 {
        return Err(ApiError::new(
            400,
            "INVALID_INPUT",
            format!(
                "{label} request body has {} subrequests. The maximum is 25.",
                subs.len()
            ),
        ));
    }
    Ok((req, subs))
}

/// `POST /composite` (§2.11): ≤ 25 subrequests, ≤ 5 of them queries; the whole request counts as
/// one API call.
pub async fn composite(
    State(state): St,
    Path(v): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (req, subs) = match subrequests(&state, &v, &body, "compositeRequest", "Composite") {
        Ok(parsed) => parsed,
        Err(e) => return e.into_response(),
    };
    let subs = &subs;
    let all_or_none = req
        .get("allOrNone")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let queries = subs
        .iter()
        .filter(|s| {
            let url = s.get("url").and_then(Json::as_str).unwrap_or("");
            split_url(url).is_some_and(|(_, segs, _)| {
                is_query(&segs.iter().map(String::as_str).collect::<Vec<_>>())
            })
        })
        .count();
    if queries > 5 {
        return ApiError::new(400, "INVALID_INPUT", format!("A composite request can contain at most 5 query operations; this one has {queries}.")).into_response();
    }
    let mut results: HashMap<String, Json> = HashMap::new();
    let mut out = Vec::new();
    let mut failed = false;
    for s in subs {
        let reference = s
            .get("referenceId")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string();
        let method = s.get("method").and_then(Json::as_str).unwrap_or("GET");
        let url = s.get("url").and_then(Json::as_str).unwrap_or("");
        let (status, body) = if failed && all_or_none {
            err_json(&ApiError::new(
                400,
                "PROCESSING_HALTED",
                "The transaction was rolled back since another operation in the same transaction failed.",
            ))
        } else {
            match substitute(url, &results) {
                Err(expr) => err_json(&ApiError::new(
                    400,
                    "PROCESSING_HALTED",
                    format!(
                        "Invalid reference specified. No value for {expr} found in {reference}. Provided referenceId ({reference}) must be a valid referenceId from a previous subrequest."
                    ),
                )),
                Ok(url) => sub_get(&state, method, &url, &headers).await.1,
            }
        };
        if status.as_u16() >= 400 {
            failed = true;
        } else {
            results.insert(reference.clone(), body.clone());
        }
        out.push(json!({"body": body, "httpHeaders": {}, "httpStatusCode": status.as_u16(), "referenceId": reference}));
    }
    ok(json!({"compositeResponse": out}))
}

async fn sub_get(
    state: &Arc<EmulatorState>,
    method: &str,
    url: &str,
    headers: &HeaderMap,
) -> (String, (StatusCode, Json)) {
    let Some((v, segs, params)) = split_url(url) else {
        return ("GET /unknown".into(), err_json(&ApiError::not_found()));
    };
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let pat = pattern(&segs);
    if method != "GET" {
        return (
            pat,
            err_json(&ApiError::new(
                405,
                "METHOD_NOT_ALLOWED",
                format!("HTTP Method '{method}' not allowed. Allowed are GET"),
            )),
        );
    }
    match dispatch_get(state, &v, &segs, &params, headers).await {
        Ok(r) => (pat, r),
        Err(e) => (pat, err_json(&e)),
    }
}

/// `POST /composite/batch` (§2.11): ≤ 25 independent subrequests, each counted as a call.
pub async fn composite_batch(
    State(state): St,
    Path(v): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (req, subs) = match subrequests(&state, &v, &body, "batchRequests", "Batch") {
        Ok(parsed) => parsed,
        Err(e) => return e.into_response(),
    };
    let subs = &subs;
    let halt = req
        .get("haltOnError")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let mut results = Vec::new();
    let mut has_errors = false;
    for s in subs {
        if halt && has_errors {
            results.push(json!({"statusCode": 412, "result": [{"errorCode": "BATCH_PROCESSING_HALTED", "message": "Batch processing halted per request"}]}));
            continue;
        }
        let method = s.get("method").and_then(Json::as_str).unwrap_or("GET");
        let url = s.get("url").and_then(Json::as_str).unwrap_or("");
        let (pat, (status, body)) = sub_get(&state, method, url, &headers).await;
        state.count_call(&pat);
        if status.as_u16() >= 400 {
            has_errors = true;
        }
        results.push(json!({"statusCode": status.as_u16(), "result": body}));
    }
    let mut r = ok(json!({"hasErrors": has_errors, "results": results}));
    r.extensions_mut().insert(SelfCounted);
    r
}
