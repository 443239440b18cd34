//! OAuth 2.0 token endpoint `POST /services/oauth2/token` (§1).
//!
//! Grants: `refresh_token` (§1.2), `client_credentials` and the JWT bearer grant
//! (`urn:ietf:params:oauth:grant-type:jwt-bearer`). Form-encoded body; client credentials in the
//! body or as HTTP Basic auth (§1.2); any Host (§1.1). Success bodies follow §1.3, errors are 400
//! `{"error","error_description"}` with `Cache-Control: no-store` (§1.4). Token requests are not
//! API calls and carry no `Sforce-Limit-Info`.

use crate::config::IssuedAt;
use crate::datagen::mix;
use crate::state::{AccessToken, EmulatorState, RefreshToken, lock, now_ms};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use hmac::{KeyInit, Mac};
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::sync::Arc;

fn respond(status: StatusCode, body: Json) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

/// A 400 OAuth error body (§1.4).
fn oauth_error(error: &'static str, description: &'static str) -> Response {
    OAuthError(error, description).into_response()
}

/// An OAuth error (`error`, `error_description`).
#[derive(Debug, Clone, Copy)]
struct OAuthError(&'static str, &'static str);

impl OAuthError {
    fn into_response(self) -> Response {
        respond(
            StatusCode::BAD_REQUEST,
            json!({"error": self.0, "error_description": self.1}),
        )
    }
}

fn token_chars(seed: u64, n: usize) -> String {
    const A: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz._";
    let mut s = String::with_capacity(n);
    let mut h = seed;
    for _ in 0..n {
        h = mix(h);
        s.push(A[(h % A.len() as u64) as usize] as char);
    }
    s
}

/// `POST /services/oauth2/token`.
pub async fn token(
    State(state): State<Arc<EmulatorState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let creds = &state.config.credentials;
    let (mut client_id, mut client_secret) = (
        form.get("client_id").cloned(),
        form.get("client_secret").cloned(),
    );
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic.trim())
        && let Ok(text) = String::from_utf8(decoded)
        && let Some((id, secret)) = text.split_once(':')
    {
        client_id = Some(id.to_string());
        client_secret = Some(secret.to_string());
    }
    let grant = form.get("grant_type").map(String::as_str).unwrap_or("");
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("login.salesforce.com")
        .to_string();
    let (family, refresh_out, scope) = match grant {
        "refresh_token" => {
            if client_id.as_deref() != Some(creds.client_id.as_str()) {
                return oauth_error("invalid_client_id", "client identifier invalid");
            }
            match client_secret.as_deref() {
                Some(s) if s == creds.client_secret.expose() => {}
                None if !creds.require_client_secret => {}
                _ => return oauth_error("invalid_client", "invalid client credentials"),
            }
            let Some(rt) = form.get("refresh_token") else {
                return oauth_error("invalid_grant", "expired access/refresh token");
            };
            match refresh(&state, rt) {
                Ok((family, new_rt)) => (family, new_rt, "api refresh_token id"),
                Err(e) => return e.into_response(),
            }
        }
        "client_credentials" => {
            if client_id.as_deref() != Some(creds.client_id.as_str()) {
                return oauth_error("invalid_client_id", "client identifier invalid");
            }
            if client_secret.as_deref() != Some(creds.client_secret.expose()) {
                return oauth_error("invalid_client", "invalid client credentials");
            }
            (u64::MAX, None, "api")
        }
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            let Some(assertion) = form.get("assertion") else {
                return oauth_error("invalid_grant", "invalid assertion");
            };
            if let Err(e) = check_jwt(&state, assertion) {
                return e.into_response();
            }
            (u64::MAX - 1, None, "api")
        }
        _ => return oauth_error("unsupported_grant_type", "grant type not supported"),
    };
    let now = now_ms();
    let seq = state.next_seq();
    let org = state.org_id();
    let access = format!(
        "{}!AQ{}",
        &org[..15],
        token_chars(state.config.seed ^ seq ^ now as u64, 96)
    );
    lock(&state.tokens).access.insert(
        access.clone(),
        AccessToken {
            issued_ms: now,
            last_used_ms: now,
            family,
        },
    );
    let sw = state.switches();
    let id_host = if sw.identity_url_follows_host {
        let scheme = if host.starts_with("127.")
            || host.starts_with("localhost")
            || host.starts_with("[::1]")
        {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}")
    } else {
        "https://login.salesforce.com".to_string()
    };
    let id_url = format!("{id_host}/id/{org}/{}", state.user_id());
    let issued_at = match sw.oauth_issued_at {
        IssuedAt::Millis => now.to_string(),
        IssuedAt::Seconds => (now / 1000).to_string(),
    };
    let signature = sign(
        state.config.credentials.client_secret.expose(),
        &id_url,
        &issued_at,
    );
    let mut body = json!({
        "access_token": access,
        "signature": signature,
        "scope": scope,
        "instance_url": state.base_url(),
        "id": id_url,
        "token_type": "Bearer",
        "issued_at": issued_at,
    });
    if let Some(rt) = refresh_out {
        body["refresh_token"] = json!(rt);
    }
    if sw.oauth_expires_in {
        body["expires_in"] = json!(state.config.token_lifetime_secs);
    }
    respond(StatusCode::OK, body)
}

/// §1.3 `signature`: base64 HMAC-SHA256 of `id` + `issued_at` keyed by the client secret.
fn sign(secret: &str, id: &str, issued_at: &str) -> String {
    match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(id.as_bytes());
            mac.update(issued_at.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// Refresh-token grant with optional rotation (§1.5): a rotated-out token replayed revokes its
/// whole family (refresh and access tokens).
fn refresh(state: &EmulatorState, rt: &str) -> Result<(u64, Option<String>), OAuthError> {
    let rotation = state.switches().refresh_token_rotation;
    let mut tokens = lock(&state.tokens);
    let Some(info) = tokens.refresh.get(rt).cloned() else {
        return Err(OAuthError("invalid_grant", "expired access/refresh token"));
    };
    if info.revoked {
        return Err(OAuthError("invalid_grant", "expired access/refresh token"));
    }
    if !info.current {
        let fam = info.family;
        for t in tokens.refresh.values_mut().filter(|t| t.family == fam) {
            t.revoked = true;
        }
        tokens.access.retain(|_, a| a.family != fam);
        return Err(OAuthError("invalid_grant", "expired access/refresh token"));
    }
    if !rotation {
        return Ok((info.family, None));
    }
    let new_rt = format!(
        "5Aep861{}",
        token_chars(mix(state.next_seq() ^ state.config.seed), 80)
    );
    if let Some(old) = tokens.refresh.get_mut(rt) {
        old.current = false;
    }
    tokens.refresh.insert(
        new_rt.clone(),
        RefreshToken {
            family: info.family,
            current: true,
            revoked: false,
        },
    );
    Ok((info.family, Some(new_rt)))
}

#[derive(serde::Deserialize)]
struct JwtClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Json>,
    exp: Option<i64>,
}

/// JWT bearer assertion: `iss` = client id, `sub` = user name, `aud` a login host, `exp` in the
/// future; RS256 signature checked when a public key is configured.
fn check_jwt(state: &EmulatorState, assertion: &str) -> Result<(), OAuthError> {
    let creds = &state.config.credentials;
    let claims: JwtClaims = match &creds.jwt_public_key_pem {
        Some(pem) => {
            let key = jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes())
                .map_err(|_| OAuthError("invalid_grant", "invalid assertion"))?;
            let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
            v.validate_aud = false;
            v.validate_exp = false;
            v.required_spec_claims.clear();
            jsonwebtoken::decode::<JwtClaims>(assertion, &key, &v)
                .map_err(|_| OAuthError("invalid_grant", "invalid assertion"))?
                .claims
        }
        None => {
            jsonwebtoken::dangerous::insecure_decode::<JwtClaims>(assertion)
                .map_err(|_| OAuthError("invalid_grant", "invalid assertion"))?
                .claims
        }
    };
    if claims.iss.as_deref() != Some(creds.client_id.as_str()) {
        return Err(OAuthError("invalid_client_id", "client identifier invalid"));
    }
    if claims.sub.as_deref() != Some(creds.username.as_str()) {
        return Err(OAuthError(
            "invalid_grant",
            "user hasn't approved this consumer",
        ));
    }
    let aud_ok = match &claims.aud {
        Some(Json::String(a)) => !a.is_empty(),
        Some(Json::Array(a)) => !a.is_empty(),
        _ => false,
    };
    if !aud_ok {
        return Err(OAuthError("invalid_grant", "audience is invalid"));
    }
    if claims.exp.is_none_or(|e| e * 1000 < now_ms()) {
        return Err(OAuthError("invalid_grant", "expired authorization code"));
    }
    Ok(())
}
