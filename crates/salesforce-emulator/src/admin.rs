//! Admin API under `/__emulator/` (no auth, never counted as API calls): call counters, fault
//! injection, switches, token expiry, row mutations and record read-back.

use crate::api::ApiError;
use crate::config::{Faults, Switches};
use crate::engine;
use crate::soql::FieldRef;
use crate::state::{Counters, EmulatorState, lock};
use crate::store::{FieldInput, FieldValues, RowOutcome, WriteOp};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value as Json, json};
use std::sync::Arc;

type St = State<Arc<EmulatorState>>;

fn ok(j: Json) -> Response {
    crate::api::json_response(StatusCode::OK, &j)
}

/// Admin routes (nested under `/__emulator`).
pub fn router() -> Router<Arc<EmulatorState>> {
    Router::new()
        .route("/calls", get(calls))
        .route("/mutations", get(mutations))
        .route("/reset", post(reset))
        .route("/faults", get(get_faults).put(put_faults).post(put_faults))
        .route(
            "/switches",
            get(get_switches).put(put_switches).post(put_switches),
        )
        .route("/tokens/expire", post(expire_tokens))
        .route("/records/{object}", post(insert).patch(update))
        .route("/records/{object}/upsert/{field}", post(upsert))
        .route("/records/{object}/delete", post(delete))
        .route("/records/{object}/hard-delete", post(hard_delete))
        .route("/records/{object}/undelete", post(undelete))
        .route("/records/{object}/{id}", get(read_back))
}

/// `GET /__emulator/calls` → `{"total", "by_endpoint", "daily_used"}`.
async fn calls(State(state): St) -> Response {
    let c = lock(&state.counters).clone();
    ok(json!({"total": c.total, "by_endpoint": c.by_endpoint, "daily_used": c.daily_used}))
}

/// `GET /__emulator/mutations` → the background mutation counters
/// ([`crate::state::MutationStats`]) plus the configured interval and objects.
async fn mutations(State(state): St) -> Response {
    let stats = lock(&state.mutations).clone();
    let mut j = serde_json::to_value(stats).unwrap_or(Json::Null);
    j["interval_ms"] = json!(state.config.mutations.interval_ms);
    j["objects"] = json!(state.mutation_objects());
    ok(j)
}

/// `POST /__emulator/reset`: zeroes the counters (including the daily usage).
async fn reset(State(state): St) -> Response {
    *lock(&state.counters) = Counters::default();
    ok(json!({"ok": true}))
}

async fn get_faults(State(state): St) -> Response {
    ok(serde_json::to_value(lock(&state.faults).clone()).unwrap_or(Json::Null))
}

/// `PUT /__emulator/faults` with a (partial) [`Faults`] object: replaces the faults.
async fn put_faults(State(state): St, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(f) => {
            *lock(&state.faults) = f.clone();
            ok(serde_json::to_value(f).unwrap_or(Json::Null))
        }
        Err(e) => ApiError::new(400, "JSON_PARSER_ERROR", e.to_string()).into_response(),
    }
}

async fn get_switches(State(state): St) -> Response {
    ok(serde_json::to_value(state.switches()).unwrap_or(Json::Null))
}

/// `PUT /__emulator/switches` with a (partial) [`Switches`] object.
async fn put_switches(State(state): St, body: Bytes) -> Response {
    match serde_json::from_slice::<Switches>(&body) {
        Ok(s) => {
            match state.switches.write() {
                Ok(mut w) => *w = s.clone(),
                Err(p) => *p.into_inner() = s.clone(),
            }
            ok(serde_json::to_value(s).unwrap_or(Json::Null))
        }
        Err(e) => ApiError::new(400, "JSON_PARSER_ERROR", e.to_string()).into_response(),
    }
}

/// `POST /__emulator/tokens/expire`: every issued access token becomes invalid (401 on next use).
async fn expire_tokens(State(state): St) -> Response {
    let n = {
        let mut t = lock(&state.tokens);
        let n = t.access.len();
        t.access.clear();
        n
    };
    ok(json!({"expired": n}))
}

fn values(rec: &Json) -> FieldValues {
    rec.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.as_str() != "attributes")
                .map(|(k, v)| {
                    (
                        k.clone(),
                        if v.is_null() {
                            FieldInput::Null
                        } else {
                            FieldInput::Json(v.clone())
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn apply(state: &EmulatorState, object: &str, ops: Vec<WriteOp>) -> Response {
    match state.store.apply(object, &ops, &state.write_options()) {
        Ok(out) => ok(json!({"results": out.iter().map(|o| match o {
            RowOutcome::Ok { id, created } => json!({"id": id, "success": true, "created": created}),
            RowOutcome::Err(e) => json!({"success": false, "error": e.to_string(),
                "errors": [{"statusCode": e.code, "message": e.message, "fields": e.fields}]}),
        }).collect::<Vec<_>>()})),
        Err(e) => ApiError::new(400, "INVALID_TYPE", e.to_string()).into_response(),
    }
}

fn records(body: &[u8]) -> Result<Vec<Json>, ApiError> {
    let j: Json = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(400, "JSON_PARSER_ERROR", e.to_string()))?;
    Ok(j.get("records")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default())
}

fn id_list(body: &[u8]) -> Result<Vec<String>, ApiError> {
    let j: Json = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(400, "JSON_PARSER_ERROR", e.to_string()))?;
    Ok(j.get("ids")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// `POST /__emulator/records/{object}` `{"records":[{field: value}]}`: inserts rows now.
async fn insert(State(state): St, Path(object): Path<String>, body: Bytes) -> Response {
    match records(&body) {
        Ok(recs) => apply(
            &state,
            &object,
            recs.iter().map(|r| WriteOp::Insert(values(r))).collect(),
        ),
        Err(e) => e.into_response(),
    }
}

/// `PATCH /__emulator/records/{object}` `{"records":[{"Id": ..., field: value}]}`: updates rows.
async fn update(State(state): St, Path(object): Path<String>, body: Bytes) -> Response {
    match records(&body) {
        Ok(recs) => apply(
            &state,
            &object,
            recs.iter()
                .map(|r| WriteOp::Update {
                    id: r.get("Id").and_then(Json::as_str).unwrap_or("").to_string(),
                    values: values(r),
                })
                .collect(),
        ),
        Err(e) => e.into_response(),
    }
}

/// `POST /__emulator/records/{object}/upsert/{field}`.
async fn upsert(
    State(state): St,
    Path((object, field)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    match records(&body) {
        Ok(recs) => apply(
            &state,
            &object,
            recs.iter()
                .map(|r| WriteOp::Upsert {
                    key_field: field.clone(),
                    values: values(r),
                })
                .collect(),
        ),
        Err(e) => e.into_response(),
    }
}

/// `POST /__emulator/records/{object}/delete` `{"ids":[...]}`: soft delete.
async fn delete(State(state): St, Path(object): Path<String>, body: Bytes) -> Response {
    match id_list(&body) {
        Ok(ids) => apply(
            &state,
            &object,
            ids.into_iter().map(|id| WriteOp::Delete { id }).collect(),
        ),
        Err(e) => e.into_response(),
    }
}

/// `POST /__emulator/records/{object}/hard-delete` `{"ids":[...]}`: purge.
async fn hard_delete(State(state): St, Path(object): Path<String>, body: Bytes) -> Response {
    match id_list(&body) {
        Ok(ids) => apply(
            &state,
            &object,
            ids.into_iter()
                .map(|id| WriteOp::HardDelete { id })
                .collect(),
        ),
        Err(e) => e.into_response(),
    }
}

/// `POST /__emulator/records/{object}/undelete` `{"ids":[...]}`.
async fn undelete(State(state): St, Path(object): Path<String>, body: Bytes) -> Response {
    match id_list(&body) {
        Ok(ids) => apply(
            &state,
            &object,
            ids.into_iter().map(|id| WriteOp::Undelete { id }).collect(),
        ),
        Err(e) => e.into_response(),
    }
}

/// `GET /__emulator/records/{object}/{id}`: every field of the row as REST JSON (deleted rows
/// included, `IsDeleted` tells), 404 when it does not exist or was purged.
async fn read_back(State(state): St, Path((object, id)): Path<(String, String)>) -> Response {
    let snap = state.snapshot();
    let Some(oi) = snap.schema.index(&object) else {
        return ApiError::not_found().into_response();
    };
    let def = &snap.schema.objects[oi];
    match snap.row_by_id(oi, &id).filter(|r| r.visible(true)) {
        Some(r) => {
            let fields: Vec<FieldRef> = def
                .fields
                .iter()
                .enumerate()
                .map(|(f, fd)| FieldRef {
                    field: f,
                    parent: None,
                    name: fd.name.clone(),
                    written: fd.name.clone(),
                    ty: fd.ty,
                })
                .collect();
            let v = format!("v{}.0", state.config.latest_api_version);
            ok(engine::record_json(
                &r,
                &fields,
                &v,
                engine::Base64Rest::Inline,
            ))
        }
        None => ApiError::not_found().into_response(),
    }
}
