//! Access tokens: OAuth grants, the token cache, and typed OAuth errors.
//!
//! - Refresh-token and client-credentials grants go through the `oauth2` crate over a small
//!   adapter on our reqwest client (so there is one reqwest in the build); the JWT bearer grant
//!   signs an RS256 assertion with `jsonwebtoken` and posts it directly.
//! - [`Authenticator`] caches one token behind a read/write lock with double-checked locking, so
//!   any number of concurrent requests that find the cache empty cause one grant. Salesforce
//!   tokens carry no expiry: a 401 invalidates the cached token and the next request refreshes.
//! - A rotated refresh token replaces the old one in memory and is handed to the caller's
//!   listener, who must persist it.
//! - Token-endpoint errors (`{"error","error_description"}`) become [`AuthError::Rejected`], a
//!   configuration error whose message says what to do.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, ExtraTokenFields, RefreshToken,
    RequestTokenError, StandardRevocableToken, StandardTokenResponse, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;
use tracing::{debug, info};
use url::Url;

use crate::config::{ConfigError, Credentials, RefreshTokenListener, validate_base_url};
use crate::error::ErrorClass;
use crate::retry::{Backoff, RetryConfig};
use crate::secret::Secret;

/// Path of the OAuth token endpoint on a login host.
pub const TOKEN_PATH: &str = "/services/oauth2/token";

/// A cached access token.
#[derive(Debug)]
pub struct Token {
    /// The bearer token.
    pub access_token: Secret,
    /// Base URL for REST and Bulk calls.
    pub instance_url: Url,
    /// When we obtained it.
    pub obtained_at: Instant,
}

/// Failure to get an access token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The token endpoint refused the grant (HTTP 400/401 with an OAuth error code).
    #[error("Salesforce rejected the {grant} grant ({error}: {description}); {hint}")]
    Rejected {
        /// Which grant (`refresh_token`, `client_credentials`, `jwt_bearer`).
        grant: &'static str,
        /// OAuth `error`, e.g. `invalid_grant`.
        error: String,
        /// OAuth `error_description`.
        description: String,
        /// What the user should do.
        hint: &'static str,
    },
    /// The token endpoint kept failing with server errors.
    #[error(
        "the Salesforce token endpoint {url} answered HTTP {status} after {attempts} attempt(s)"
    )]
    Unavailable {
        /// Token endpoint.
        url: String,
        /// Last status.
        status: u16,
        /// Attempts made.
        attempts: usize,
    },
    /// The token endpoint could not be reached.
    #[error(
        "could not reach the Salesforce token endpoint {url} after {attempts} attempt(s): {source}"
    )]
    Transport {
        /// Token endpoint.
        url: String,
        /// Attempts made.
        attempts: usize,
        /// Transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The token endpoint answered something that is not a token response.
    #[error("unexpected answer from the Salesforce token endpoint {url}: {detail}")]
    InvalidResponse {
        /// Token endpoint.
        url: String,
        /// What was wrong (never the body's tokens).
        detail: String,
    },
    /// The `instance_url` in the token response is not acceptable.
    #[error("the token response's instance_url is not acceptable: {0}")]
    InstanceUrl(#[source] ConfigError),
    /// The JWT assertion could not be signed.
    #[error("could not sign the JWT bearer assertion: {reason}")]
    Jwt {
        /// Signing error (never the key).
        reason: String,
    },
    /// A pre-issued access token was rejected and there is nothing to refresh it with.
    #[error(
        "the configured access token was rejected (HTTP 401) and cannot be refreshed; supply a new access token or use refresh-token credentials"
    )]
    NotRefreshable,
}

impl AuthError {
    /// Error class: rejected grants, bad instance URLs and signing problems are configuration
    /// errors; server and network failures are transient.
    pub fn class(&self) -> ErrorClass {
        match self {
            AuthError::Rejected { error, .. } if error == "rate_limit_exceeded" => {
                ErrorClass::Transient
            }
            AuthError::Rejected { .. }
            | AuthError::InstanceUrl(_)
            | AuthError::Jwt { .. }
            | AuthError::NotRefreshable => ErrorClass::Config,
            AuthError::Unavailable { .. } | AuthError::Transport { .. } => ErrorClass::Transient,
            AuthError::InvalidResponse { .. } => ErrorClass::System,
        }
    }
}

fn hint_for(error: &str) -> &'static str {
    match error {
        "invalid_grant" => {
            "the credential is expired, revoked, rotated out or issued for another org: re-authenticate to obtain a new refresh token, and check that is_sandbox / login_url point at the org that issued it"
        }
        "invalid_client_id" => {
            "the client_id is unknown to this login host: check client_id, and that is_sandbox / login_url (My Domain) match the org"
        }
        "invalid_client" => "the client_secret does not match the client_id: check client_secret",
        "unsupported_grant_type" => {
            "this grant is not enabled for the connected app (client credentials and JWT bearer need a My Domain login_url and the flow enabled on the app)"
        }
        "invalid_app_access" | "inactive_user" | "inactive_org" => {
            "the user or org may not use this connected app: ask a Salesforce admin to approve the user for the app"
        }
        _ => "check the connected app settings and the credentials",
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
struct SalesforceTokenFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instance_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issued_at: Option<String>,
}

impl ExtraTokenFields for SalesforceTokenFields {}

type SalesforceTokenResponse = StandardTokenResponse<SalesforceTokenFields, BasicTokenType>;

type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    SalesforceTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// What one grant attempt produced.
struct Granted {
    access_token: String,
    instance_url: Option<String>,
    refresh_token: Option<String>,
}

/// Why one grant attempt failed.
enum AttemptError {
    Status(u16),
    Transport(reqwest::Error),
    Fatal(AuthError),
}

/// The adapter's error: a transport failure, or a status we treat as retryable (so the oauth2
/// crate does not try to parse an HTML error page as an OAuth error).
#[derive(Debug, thiserror::Error)]
enum AdapterError {
    #[error("transport error: {0}")]
    Transport(#[source] reqwest::Error),
    #[error("HTTP {0}")]
    RetryableStatus(u16),
}

/// The JWT bearer claims.
#[derive(Serialize)]
struct JwtClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
}

/// Gets and caches access tokens.
pub struct Authenticator {
    credentials: Credentials,
    /// The current refresh token (replaced on rotation).
    refresh_token: Mutex<Option<Secret>>,
    token_url: Url,
    jwt_audience: String,
    http: reqwest::Client,
    request_timeout: Duration,
    retry: RetryConfig,
    cache: RwLock<Option<Arc<Token>>>,
    listener: Option<RefreshTokenListener>,
    grants: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("credentials", &self.credentials)
            .field("token_url", &self.token_url.as_str())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Sets up token handling. `login_url` is the validated login host.
    pub(crate) fn new(
        credentials: Credentials,
        login_url: &Url,
        is_sandbox: bool,
        http: reqwest::Client,
        request_timeout: Duration,
        retry: RetryConfig,
        listener: Option<RefreshTokenListener>,
    ) -> Result<Self, ConfigError> {
        let mut token_url = login_url.clone();
        token_url.set_path(TOKEN_PATH);
        let mut initial = None;
        match &credentials {
            Credentials::RefreshToken {
                client_id,
                refresh_token,
                ..
            } => {
                non_empty("client_id", client_id)?;
                non_empty("refresh_token", refresh_token.expose())?;
                initial = Some(refresh_token.clone());
            }
            Credentials::ClientCredentials {
                client_id,
                client_secret,
            } => {
                non_empty("client_id", client_id)?;
                non_empty("client_secret", client_secret.expose())?;
            }
            Credentials::JwtBearer {
                client_id,
                username,
                private_key_pem,
            } => {
                non_empty("client_id", client_id)?;
                non_empty("username", username)?;
                jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.expose().as_bytes())
                    .map_err(|e| ConfigError::InvalidPrivateKey {
                        reason: e.to_string(),
                    })?;
            }
            Credentials::AccessToken {
                access_token,
                instance_url,
            } => {
                non_empty("access_token", access_token.expose())?;
                validate_base_url("instance_url", instance_url)?;
            }
        }
        let jwt_audience = jwt_audience(login_url, is_sandbox);
        let cache = match &credentials {
            Credentials::AccessToken {
                access_token,
                instance_url,
            } => Some(Arc::new(Token {
                access_token: access_token.clone(),
                instance_url: validate_base_url("instance_url", instance_url)?,
                obtained_at: Instant::now(),
            })),
            _ => None,
        };
        Ok(Self {
            credentials,
            refresh_token: Mutex::new(initial),
            token_url,
            jwt_audience,
            http,
            request_timeout,
            retry,
            cache: RwLock::new(cache),
            listener,
            grants: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The current access token, obtaining one if none is cached. Concurrent callers that find
    /// the cache empty wait for a single grant.
    pub async fn token(&self) -> Result<Arc<Token>, AuthError> {
        if let Some(t) = self.cache.read().await.as_ref() {
            return Ok(Arc::clone(t));
        }
        let mut slot = self.cache.write().await;
        if let Some(t) = slot.as_ref() {
            return Ok(Arc::clone(t));
        }
        let token = Arc::new(self.fetch().await?);
        *slot = Some(Arc::clone(&token));
        Ok(token)
    }

    /// Drops `stale` from the cache, unless another request already replaced it. Returns an
    /// error for credentials that cannot be refreshed.
    pub async fn invalidate(&self, stale: &Arc<Token>) -> Result<(), AuthError> {
        if matches!(self.credentials, Credentials::AccessToken { .. }) {
            return Err(AuthError::NotRefreshable);
        }
        let mut slot = self.cache.write().await;
        if slot.as_ref().is_some_and(|cur| Arc::ptr_eq(cur, stale)) {
            debug!("access token rejected; dropping it from the cache");
            *slot = None;
        }
        Ok(())
    }

    /// The refresh token in use (the latest rotated one), if the credentials have one.
    pub fn current_refresh_token(&self) -> Option<Secret> {
        self.refresh_token
            .lock()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// How many successful grants this authenticator made.
    pub fn grants(&self) -> u64 {
        self.grants.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn grant_name(&self) -> &'static str {
        match self.credentials {
            Credentials::RefreshToken { .. } => "refresh_token",
            Credentials::ClientCredentials { .. } => "client_credentials",
            Credentials::JwtBearer { .. } => "jwt_bearer",
            Credentials::AccessToken { .. } => "access_token",
        }
    }

    async fn fetch(&self) -> Result<Token, AuthError> {
        let started = Instant::now();
        let mut backoff = Backoff::new(&self.retry.backoff);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let failure = match self.attempt().await {
                Ok(granted) => return self.accept(granted),
                Err(AttemptError::Fatal(e)) => return Err(e),
                Err(f) => f,
            };
            let give_up =
                attempts > self.retry.max_retries || started.elapsed() >= self.retry.retry_timeout;
            if give_up {
                return Err(match failure {
                    AttemptError::Status(status) => AuthError::Unavailable {
                        url: self.token_url.to_string(),
                        status,
                        attempts,
                    },
                    AttemptError::Transport(source) => AuthError::Transport {
                        url: self.token_url.to_string(),
                        attempts,
                        source,
                    },
                    AttemptError::Fatal(e) => e,
                });
            }
            let delay = backoff.next_delay();
            info!(
                attempt = attempts,
                max = self.retry.max_retries + 1,
                ?delay,
                "token request failed, retrying: attempt {attempts} of {}",
                self.retry.max_retries + 1
            );
            tokio::time::sleep(delay).await;
        }
    }

    fn accept(&self, granted: Granted) -> Result<Token, AuthError> {
        let instance_url = granted
            .instance_url
            .ok_or_else(|| AuthError::InvalidResponse {
                url: self.token_url.to_string(),
                detail: "no instance_url in the token response".to_owned(),
            })?;
        let instance_url =
            validate_base_url("instance_url", &instance_url).map_err(AuthError::InstanceUrl)?;
        if let Some(new) = granted.refresh_token {
            let rotated = {
                let mut cur = self.refresh_token.lock().unwrap_or_else(|p| p.into_inner());
                if cur.as_ref().is_some_and(|c| c.expose() != new) {
                    let new = Secret::new(new);
                    *cur = Some(new.clone());
                    Some(new)
                } else {
                    None
                }
            };
            // The lock is released before the listener runs, so it may call back into the client.
            if let Some(new) = rotated {
                info!("Salesforce rotated the refresh token; handing the new one to the caller");
                if let Some(listener) = &self.listener {
                    listener(&new);
                }
            }
        }
        self.grants
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        debug!(instance_url = %instance_url, "obtained a Salesforce access token");
        Ok(Token {
            access_token: Secret::new(granted.access_token),
            instance_url,
            obtained_at: Instant::now(),
        })
    }

    async fn attempt(&self) -> Result<Granted, AttemptError> {
        match &self.credentials {
            Credentials::RefreshToken {
                client_id,
                client_secret,
                ..
            } => {
                let refresh = self.current_refresh_token().unwrap_or_default();
                let client = self.oauth_client(client_id, client_secret.as_ref());
                let refresh = RefreshToken::new(refresh.expose().to_owned());
                let adapter = self.adapter();
                let res = client
                    .exchange_refresh_token(&refresh)
                    .request_async(&adapter)
                    .await;
                self.oauth_outcome(res)
            }
            Credentials::ClientCredentials {
                client_id,
                client_secret,
            } => {
                let client = self.oauth_client(client_id, Some(client_secret));
                let adapter = self.adapter();
                let res = client
                    .exchange_client_credentials()
                    .request_async(&adapter)
                    .await;
                self.oauth_outcome(res)
            }
            Credentials::JwtBearer {
                client_id,
                username,
                private_key_pem,
            } => self.jwt_grant(client_id, username, private_key_pem).await,
            Credentials::AccessToken { .. } => Err(AttemptError::Fatal(AuthError::NotRefreshable)),
        }
    }

    fn oauth_client(&self, client_id: &str, client_secret: Option<&Secret>) -> OAuthClient {
        let client = oauth2::Client::new(ClientId::new(client_id.to_owned()))
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(TokenUrl::from_url(self.token_url.clone()));
        match client_secret {
            Some(s) => client.set_client_secret(ClientSecret::new(s.expose().to_owned())),
            None => client,
        }
    }

    /// The HTTP adapter that lets the oauth2 crate use our reqwest client.
    fn adapter(
        &self,
    ) -> impl Fn(
        oauth2::HttpRequest,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<oauth2::HttpResponse, AdapterError>> + Send>,
    > + use<> {
        let http = self.http.clone();
        let timeout = self.request_timeout;
        move |request: oauth2::HttpRequest| {
            let http = http.clone();
            Box::pin(async move {
                let mut req =
                    reqwest::Request::try_from(request).map_err(AdapterError::Transport)?;
                *req.timeout_mut() = Some(timeout);
                let resp = http.execute(req).await.map_err(AdapterError::Transport)?;
                let status = resp.status();
                if status.is_server_error() || status.as_u16() == 429 {
                    return Err(AdapterError::RetryableStatus(status.as_u16()));
                }
                let mut builder = http::Response::builder().status(status);
                for (k, v) in resp.headers() {
                    builder = builder.header(k, v);
                }
                let body = resp.bytes().await.map_err(AdapterError::Transport)?;
                builder
                    .body(body.to_vec())
                    .map_err(|_| AdapterError::RetryableStatus(status.as_u16()))
            })
        }
    }

    fn oauth_outcome(
        &self,
        res: Result<SalesforceTokenResponse, RequestTokenError<AdapterError, BasicErrorResponse>>,
    ) -> Result<Granted, AttemptError> {
        match res {
            Ok(tr) => Ok(Granted {
                access_token: tr.access_token().secret().clone(),
                instance_url: tr.extra_fields().instance_url.clone(),
                refresh_token: tr.refresh_token().map(|r| r.secret().clone()),
            }),
            Err(RequestTokenError::ServerResponse(e)) => {
                let error = e.error().as_ref().to_owned();
                Err(AttemptError::Fatal(AuthError::Rejected {
                    grant: self.grant_name(),
                    hint: hint_for(&error),
                    error,
                    description: e.error_description().cloned().unwrap_or_default(),
                }))
            }
            Err(RequestTokenError::Request(AdapterError::Transport(e))) => {
                if e.is_connect() {
                    Err(AttemptError::Transport(e))
                } else {
                    Err(AttemptError::Fatal(AuthError::Transport {
                        url: self.token_url.to_string(),
                        attempts: 1,
                        source: e,
                    }))
                }
            }
            Err(RequestTokenError::Request(AdapterError::RetryableStatus(s))) => {
                Err(AttemptError::Status(s))
            }
            Err(RequestTokenError::Parse(e, _body)) => {
                Err(AttemptError::Fatal(AuthError::InvalidResponse {
                    url: self.token_url.to_string(),
                    detail: format!("not a token response: {e}"),
                }))
            }
            Err(RequestTokenError::Other(detail)) => {
                Err(AttemptError::Fatal(AuthError::InvalidResponse {
                    url: self.token_url.to_string(),
                    detail,
                }))
            }
        }
    }

    async fn jwt_grant(
        &self,
        client_id: &str,
        username: &str,
        private_key_pem: &Secret,
    ) -> Result<Granted, AttemptError> {
        let fatal = AttemptError::Fatal;
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.expose().as_bytes())
            .map_err(|e| {
                fatal(AuthError::Jwt {
                    reason: e.to_string(),
                })
            })?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let claims = JwtClaims {
            iss: client_id,
            sub: username,
            aud: &self.jwt_audience,
            exp: now + 180,
        };
        let assertion = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &key,
        )
        .map_err(|e| {
            fatal(AuthError::Jwt {
                reason: e.to_string(),
            })
        })?;
        let resp = self
            .http
            .post(self.token_url.clone())
            .timeout(self.request_timeout)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Err(AttemptError::Transport(e)),
            Err(e) => {
                return Err(fatal(AuthError::Transport {
                    url: self.token_url.to_string(),
                    attempts: 1,
                    source: e,
                }));
            }
        };
        let status = resp.status().as_u16();
        if status >= 500 || status == 429 {
            return Err(AttemptError::Status(status));
        }
        let body = resp.bytes().await.map_err(AttemptError::Transport)?;
        #[derive(Deserialize)]
        struct Raw {
            access_token: Option<String>,
            instance_url: Option<String>,
            error: Option<String>,
            error_description: Option<String>,
        }
        let raw: Raw = serde_json::from_slice(&body).map_err(|e| {
            fatal(AuthError::InvalidResponse {
                url: self.token_url.to_string(),
                detail: format!("HTTP {status}, body is not JSON: {e}"),
            })
        })?;
        match (raw.access_token, raw.error) {
            (Some(access_token), None) if status == 200 => Ok(Granted {
                access_token,
                instance_url: raw.instance_url,
                refresh_token: None,
            }),
            (_, Some(error)) => Err(fatal(AuthError::Rejected {
                grant: "jwt_bearer",
                hint: hint_for(&error),
                error,
                description: raw.error_description.unwrap_or_default(),
            })),
            _ => Err(fatal(AuthError::InvalidResponse {
                url: self.token_url.to_string(),
                detail: format!("HTTP {status} without access_token or error"),
            })),
        }
    }
}

fn non_empty(field: &'static str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        Err(ConfigError::Empty { field })
    } else {
        Ok(())
    }
}

/// The JWT `aud`: Salesforce wants the authorization server's URL, which is
/// `https://test.salesforce.com` for sandboxes and `https://login.salesforce.com` for production
/// (also when logging in through a My Domain host); other hosts (Experience Cloud sites, local
/// emulators) are their own audience.
fn jwt_audience(login_url: &Url, is_sandbox: bool) -> String {
    let host = login_url
        .host_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if is_sandbox || host.ends_with(".sandbox.my.salesforce.com") || host == "test.salesforce.com" {
        crate::config::SANDBOX_LOGIN_URL.to_owned()
    } else if host == "salesforce.com" || host.ends_with(".salesforce.com") {
        crate::config::PRODUCTION_LOGIN_URL.to_owned()
    } else {
        login_url.origin().ascii_serialization()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_audience_rules() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            jwt_audience(&u("https://login.salesforce.com"), false),
            "https://login.salesforce.com"
        );
        assert_eq!(
            jwt_audience(&u("https://acme.my.salesforce.com"), false),
            "https://login.salesforce.com"
        );
        assert_eq!(
            jwt_audience(&u("https://acme--uat.sandbox.my.salesforce.com"), false),
            "https://test.salesforce.com"
        );
        assert_eq!(
            jwt_audience(&u("https://login.salesforce.com"), true),
            "https://test.salesforce.com"
        );
        assert_eq!(
            jwt_audience(&u("http://127.0.0.1:8111"), false),
            "http://127.0.0.1:8111"
        );
    }

    use crate::mock_server::{MockServer, Scripted};
    use serde_json::json;
    use std::sync::Mutex as StdMutex;

    const TEST_KEY: &str = include_str!("testdata/jwt_test_key.pem");
    const TEST_PUB: &str = include_str!("testdata/jwt_test_key.pub.pem");

    fn form_value(form: &[(String, String)], key: &str) -> Option<String> {
        form.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    #[tokio::test]
    async fn refresh_grant_sends_the_documented_form() {
        let mock = MockServer::start().await;
        let client = mock.client();
        let instance = client.authenticate().await.unwrap();
        assert_eq!(instance.as_str().trim_end_matches('/'), mock.base_url);
        let reqs = mock.token_requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].method, "POST");
        let form = reqs[0].form();
        assert_eq!(
            form_value(&form, "grant_type").as_deref(),
            Some("refresh_token")
        );
        assert_eq!(
            form_value(&form, "refresh_token").as_deref(),
            Some("rtoken")
        );
        assert_eq!(form_value(&form, "client_id").as_deref(), Some("cid"));
        assert_eq!(
            form_value(&form, "client_secret").as_deref(),
            Some("csecret")
        );
    }

    #[tokio::test]
    async fn rotated_refresh_token_is_used_and_handed_to_the_caller() {
        let mock = MockServer::start().await;
        let base = mock.base_url.clone();
        mock.push_token(Scripted::json(
            200,
            json!({"access_token":"a1","instance_url":base,"token_type":"Bearer","refresh_token":"rtoken-2"}),
        ));
        let seen: Arc<StdMutex<Vec<String>>> = Arc::default();
        let sink = Arc::clone(&seen);
        let cell: Arc<std::sync::OnceLock<crate::Client>> = Arc::default();
        let cell2 = Arc::clone(&cell);
        let client = mock
            .builder()
            .with_refresh_token_listener(Arc::new(move |s: &Secret| {
                // The listener may call back into the client without deadlocking.
                let current = cell2.get().and_then(|c| c.current_refresh_token());
                assert_eq!(current.as_ref().map(Secret::expose), Some(s.expose()));
                sink.lock().unwrap().push(s.expose().to_owned())
            }))
            .build()
            .unwrap();
        cell.set(client.clone()).unwrap();
        mock.push(Scripted::json(
            401,
            json!([{"errorCode":"INVALID_SESSION_ID","message":"Session expired or invalid"}]),
        ));
        mock.push(Scripted::json(200, json!({})));
        let _: crate::Limits = client.limits().await.unwrap();
        assert_eq!(*seen.lock().unwrap(), vec!["rtoken-2".to_owned()]);
        assert_eq!(client.current_refresh_token().unwrap().expose(), "rtoken-2");
        let reqs = mock.token_requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(
            form_value(&reqs[1].form(), "refresh_token").as_deref(),
            Some("rtoken-2")
        );
    }

    #[tokio::test]
    async fn oauth_errors_are_typed_config_errors() {
        for (code, needle) in [
            ("invalid_grant", "re-authenticate"),
            ("invalid_client_id", "client_id"),
            ("invalid_client", "client_secret"),
        ] {
            let mock = MockServer::start().await;
            mock.push_token(Scripted::json(
                400,
                json!({"error": code, "error_description": "nope"}),
            ));
            let err = mock.client().authenticate().await.unwrap_err();
            assert_eq!(err.class(), ErrorClass::Config, "{err}");
            let crate::Error::Auth(AuthError::Rejected { error, .. }) = &err else {
                panic!("{err:?}")
            };
            assert_eq!(error, code);
            assert!(err.to_string().contains(needle), "{err}");
            assert_eq!(mock.token_requests().len(), 1, "rejections are not retried");
        }
    }

    #[tokio::test]
    async fn token_endpoint_server_errors_are_retried() {
        let mock = MockServer::start().await;
        mock.push_token(Scripted::new(503, "<html>down</html>"));
        mock.push_token(Scripted::new(500, ""));
        mock.client().authenticate().await.unwrap();
        assert_eq!(mock.token_requests().len(), 3);

        let mock = MockServer::start().await;
        for _ in 0..10 {
            mock.push_token(Scripted::new(503, ""));
        }
        let err = mock.client().authenticate().await.unwrap_err();
        assert!(
            matches!(
                err,
                crate::Error::Auth(AuthError::Unavailable {
                    status: 503,
                    attempts: 4,
                    ..
                })
            ),
            "{err}"
        );
        assert_eq!(err.class(), ErrorClass::Transient);
    }

    #[tokio::test]
    async fn insecure_or_missing_instance_url_is_refused() {
        let mock = MockServer::start().await;
        mock.push_token(Scripted::json(
            200,
            json!({"access_token":"a","instance_url":"http://evil.example.com","token_type":"Bearer"}),
        ));
        let err = mock.client().authenticate().await.unwrap_err();
        assert!(
            matches!(err, crate::Error::Auth(AuthError::InstanceUrl(_))),
            "{err}"
        );
        mock.push_token(Scripted::json(
            200,
            json!({"access_token":"a","token_type":"Bearer"}),
        ));
        let err = mock.client().authenticate().await.unwrap_err();
        assert!(
            matches!(err, crate::Error::Auth(AuthError::InvalidResponse { .. })),
            "{err}"
        );
        assert_eq!(err.class(), ErrorClass::System);
    }

    #[tokio::test]
    async fn client_credentials_grant() {
        let mock = MockServer::start().await;
        let client = mock
            .builder()
            .with_credentials(Credentials::ClientCredentials {
                client_id: "cid".into(),
                client_secret: Secret::new("csecret"),
            })
            .build()
            .unwrap();
        client.authenticate().await.unwrap();
        let form = mock.token_requests()[0].form();
        assert_eq!(
            form_value(&form, "grant_type").as_deref(),
            Some("client_credentials")
        );
        assert_eq!(form_value(&form, "client_id").as_deref(), Some("cid"));
        assert_eq!(
            form_value(&form, "client_secret").as_deref(),
            Some("csecret")
        );
    }

    #[tokio::test]
    async fn jwt_bearer_grant_posts_a_signed_rs256_assertion() {
        let mock = MockServer::start().await;
        let client = mock
            .builder()
            .with_credentials(Credentials::JwtBearer {
                client_id: "cid".into(),
                username: "user@example.com".into(),
                private_key_pem: Secret::new(TEST_KEY),
            })
            .build()
            .unwrap();
        client.authenticate().await.unwrap();
        let form = mock.token_requests()[0].form();
        assert_eq!(
            form_value(&form, "grant_type").as_deref(),
            Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        );
        let assertion = form_value(&form, "assertion").unwrap();
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(TEST_PUB.as_bytes()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&[mock.base_url.as_str()]);
        let data =
            jsonwebtoken::decode::<serde_json::Value>(&assertion, &key, &validation).unwrap();
        assert_eq!(data.claims["iss"], "cid");
        assert_eq!(data.claims["sub"], "user@example.com");

        mock.push_token(Scripted::json(
            400,
            json!({"error":"invalid_grant","error_description":"user hasn't approved this consumer"}),
        ));
        let fresh = mock
            .builder()
            .with_credentials(Credentials::JwtBearer {
                client_id: "cid".into(),
                username: "user@example.com".into(),
                private_key_pem: Secret::new(TEST_KEY),
            })
            .build()
            .unwrap();
        let err = fresh.authenticate().await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Config);
    }

    #[test]
    fn bad_private_key_and_empty_fields_fail_at_build() {
        let err = crate::ClientBuilder::new()
            .with_credentials(Credentials::JwtBearer {
                client_id: "cid".into(),
                username: "u".into(),
                private_key_pem: Secret::new("not a key"),
            })
            .build()
            .unwrap_err();
        assert!(
            matches!(err, ConfigError::InvalidPrivateKey { .. }),
            "{err}"
        );
        assert!(!err.to_string().contains("not a key"));
        let err = crate::ClientBuilder::new()
            .with_credentials(Credentials::refresh_token("", None::<Secret>, "r"))
            .build()
            .unwrap_err();
        assert!(
            matches!(err, ConfigError::Empty { field: "client_id" }),
            "{err}"
        );
        let err = crate::ClientBuilder::new().build().unwrap_err();
        assert!(matches!(err, ConfigError::MissingCredentials));
    }

    #[tokio::test]
    async fn access_token_credentials_are_not_refreshable() {
        let mock = MockServer::start().await;
        let client = mock
            .builder()
            .with_credentials(Credentials::AccessToken {
                access_token: Secret::new("static"),
                instance_url: mock.base_url.clone(),
            })
            .build()
            .unwrap();
        mock.push(Scripted::json(
            401,
            json!([{"errorCode":"INVALID_SESSION_ID","message":"Session expired or invalid"}]),
        ));
        let err = client.limits().await.unwrap_err();
        assert!(
            matches!(err, crate::Error::Auth(AuthError::NotRefreshable)),
            "{err}"
        );
        assert!(mock.token_requests().is_empty());
        assert_eq!(
            mock.requests()[0].header("authorization"),
            Some("Bearer static")
        );
    }

    #[test]
    fn rejected_messages_say_what_to_do() {
        let e = AuthError::Rejected {
            grant: "refresh_token",
            error: "invalid_grant".into(),
            description: "expired access/refresh token".into(),
            hint: hint_for("invalid_grant"),
        };
        assert_eq!(e.class(), ErrorClass::Config);
        let msg = e.to_string();
        assert!(
            msg.contains("invalid_grant") && msg.contains("re-authenticate"),
            "{msg}"
        );
    }
}
