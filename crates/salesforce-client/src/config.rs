//! Client configuration: login host, API version, credentials, timeouts and retry policy.
//!
//! [`ClientBuilder`] collects settings with `with_*` setters; [`ClientBuilder::build`] validates
//! them all and returns a [`Client`](crate::Client) or a [`ConfigError`] naming what to fix.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::retry::RetryConfig;
use crate::secret::Secret;
use crate::usage::Budget;

/// Production login host.
pub const PRODUCTION_LOGIN_URL: &str = "https://login.salesforce.com";
/// Sandbox login host.
pub const SANDBOX_LOGIN_URL: &str = "https://test.salesforce.com";
/// Default REST API version.
pub const DEFAULT_API_VERSION: ApiVersion = ApiVersion {
    major: 62,
    minor: 0,
};

/// An invalid setting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A URL setting does not parse or has a query/fragment.
    #[error("{field}: {value:?} is not a valid base URL: {reason}")]
    InvalidUrl {
        /// The setting.
        field: &'static str,
        /// The value given.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// Plain `http://` for a host that is not loopback.
    #[error(
        "{field}: {value:?} uses plain http; only https is allowed except for loopback hosts (127.0.0.1, ::1, localhost)"
    )]
    InsecureUrl {
        /// The setting.
        field: &'static str,
        /// The value given.
        value: String,
    },
    /// The API version is not of the form `62.0` / `v62.0`.
    #[error("api_version: {value:?} is not a Salesforce API version such as \"62.0\"")]
    InvalidApiVersion {
        /// The value given.
        value: String,
    },
    /// No credentials were given.
    #[error(
        "no credentials: set a refresh token, client credentials, a JWT bearer key or an access token"
    )]
    MissingCredentials,
    /// A required setting is empty.
    #[error("{field} must not be empty")]
    Empty {
        /// The setting.
        field: &'static str,
    },
    /// The JWT private key is not a PEM RSA key.
    #[error("private_key: not a PEM-encoded RSA private key ({reason})")]
    InvalidPrivateKey {
        /// Parser message (never the key).
        reason: String,
    },
    /// A numeric setting is out of range.
    #[error("{field}: {value} is out of range ({expected})")]
    OutOfRange {
        /// The setting.
        field: &'static str,
        /// The value given.
        value: String,
        /// The accepted range.
        expected: &'static str,
    },
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// A Salesforce API version such as `62.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    major: u16,
    minor: u16,
}

impl ApiVersion {
    /// The version for a major number (`ApiVersion::new(62)` is `62.0`).
    pub const fn new(major: u16) -> Self {
        Self { major, minor: 0 }
    }

    /// The major number.
    pub fn major(&self) -> u16 {
        self.major
    }

    /// The path segment, e.g. `v62.0`.
    pub fn path_segment(&self) -> String {
        format!("v{}.{}", self.major, self.minor)
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl FromStr for ApiVersion {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ConfigError::InvalidApiVersion {
            value: s.to_owned(),
        };
        let t = s.trim();
        let t = t.strip_prefix(['v', 'V']).unwrap_or(t);
        let (major, minor) = t.split_once('.').unwrap_or((t, "0"));
        let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(major) || !all_digits(minor) {
            return Err(err());
        }
        let major: u16 = major.parse().map_err(|_| err())?;
        let minor: u16 = minor.parse().map_err(|_| err())?;
        if major == 0 {
            return Err(err());
        }
        Ok(Self { major, minor })
    }
}

/// How the client authenticates.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Credentials {
    /// OAuth refresh-token grant (what Airbyte configs hold).
    RefreshToken {
        /// Connected-app consumer key.
        client_id: String,
        /// Consumer secret (optional when the app does not require it).
        client_secret: Option<Secret>,
        /// The refresh token.
        refresh_token: Secret,
    },
    /// OAuth client-credentials grant (needs a My Domain login URL).
    ClientCredentials {
        /// Consumer key.
        client_id: String,
        /// Consumer secret.
        client_secret: Secret,
    },
    /// OAuth JWT bearer grant, signed RS256 with the connected app's certificate key.
    JwtBearer {
        /// Consumer key (the JWT `iss`).
        client_id: String,
        /// Salesforce username to act as (the JWT `sub`).
        username: String,
        /// PEM-encoded RSA private key.
        private_key_pem: Secret,
    },
    /// A pre-issued access token and its instance URL; nothing to refresh (a 401 is final).
    AccessToken {
        /// The token.
        access_token: Secret,
        /// Base URL of the org, e.g. `https://acme.my.salesforce.com`.
        instance_url: String,
    },
}

impl Credentials {
    /// Refresh-token credentials.
    pub fn refresh_token(
        client_id: impl Into<String>,
        client_secret: Option<impl Into<Secret>>,
        refresh_token: impl Into<Secret>,
    ) -> Self {
        Self::RefreshToken {
            client_id: client_id.into(),
            client_secret: client_secret.map(Into::into),
            refresh_token: refresh_token.into(),
        }
    }
}

/// Called with the new refresh token when Salesforce rotates it; the caller must persist it
/// because the old one stops working.
pub type RefreshTokenListener = Arc<dyn Fn(&Secret) + Send + Sync>;

/// Checks a base URL: parses, requires https (or http for loopback hosts), rejects query and
/// fragment, and drops a trailing slash.
pub fn validate_base_url(field: &'static str, value: &str) -> Result<Url, ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidUrl {
        field,
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(value.trim()).map_err(|e| invalid(&e.to_string()))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not have a query or fragment"));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(ConfigError::InsecureUrl {
                field,
                value: value.to_owned(),
            });
        }
        other => return Err(invalid(&format!("unsupported scheme {other:?}"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("has no host"));
    }
    let mut url = url;
    let trimmed = url.path().trim_end_matches('/').to_owned();
    url.set_path(&trimmed);
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Builder for [`Client`](crate::Client).
#[derive(Clone)]
pub struct ClientBuilder {
    pub(crate) is_sandbox: bool,
    pub(crate) login_url: Option<String>,
    pub(crate) api_version: Option<String>,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) stream_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) retry: RetryConfig,
    pub(crate) budget: Option<Budget>,
    pub(crate) on_refresh_token: Option<RefreshTokenListener>,
    pub(crate) user_agent: String,
    pub(crate) jitter_seed: Option<u64>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("is_sandbox", &self.is_sandbox)
            .field("login_url", &self.login_url)
            .field("api_version", &self.api_version)
            .field("credentials", &self.credentials)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("stream_timeout", &self.stream_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("retry", &self.retry)
            .field("budget", &self.budget)
            .field("jitter_seed", &self.jitter_seed)
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientBuilder {
    /// A builder with the defaults: production login host, API v62.0, connect timeout 10 s,
    /// request timeout 120 s, streamed-body timeout 1 h with 120 s idle read timeout, and
    /// [`RetryConfig::default`].
    pub fn new() -> Self {
        Self {
            is_sandbox: false,
            login_url: None,
            api_version: None,
            credentials: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            stream_timeout: Duration::from_secs(3600),
            read_timeout: Duration::from_secs(120),
            retry: RetryConfig::default(),
            budget: None,
            on_refresh_token: None,
            user_agent: concat!("salesforce-client-rs/", env!("CARGO_PKG_VERSION")).to_owned(),
            jitter_seed: None,
        }
    }

    /// Log in through `test.salesforce.com` instead of `login.salesforce.com`. Ignored when a
    /// login URL is set.
    pub fn with_is_sandbox(mut self, is_sandbox: bool) -> Self {
        self.is_sandbox = is_sandbox;
        self
    }

    /// Log in through this host: a My Domain (`https://acme.my.salesforce.com`), or a local
    /// emulator (`http://127.0.0.1:8111`; plain http only for loopback hosts).
    pub fn with_login_url(mut self, url: impl Into<String>) -> Self {
        self.login_url = Some(url.into());
        self
    }

    /// API version, e.g. `"62.0"` or `"v62.0"` (default 62.0).
    pub fn with_api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = Some(version.into());
        self
    }

    /// How to authenticate.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// TCP/TLS connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Timeout of one ordinary request (send + whole response).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Timeout of one streamed request (Bulk result pages, uploads); their bodies may be large.
    pub fn with_stream_timeout(mut self, timeout: Duration) -> Self {
        self.stream_timeout = timeout;
        self
    }

    /// Longest silence allowed while reading any response body.
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Retry policy.
    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// Stop sending counted calls once the org has used this share of its daily allocation.
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Called whenever Salesforce returns a new (rotated) refresh token.
    pub fn with_refresh_token_listener(mut self, listener: RefreshTokenListener) -> Self {
        self.on_refresh_token = Some(listener);
        self
    }

    /// Seed the backoff jitter so retry delays are reproducible (tests); by default each
    /// request's jitter comes from the thread's random generator.
    pub fn with_jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// `User-Agent` header.
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// The login URL this configuration resolves to.
    pub fn resolved_login_url(&self) -> Result<Url, ConfigError> {
        match &self.login_url {
            Some(u) if !u.trim().is_empty() => validate_base_url("login_url", u),
            _ if self.is_sandbox => validate_base_url("login_url", SANDBOX_LOGIN_URL),
            _ => validate_base_url("login_url", PRODUCTION_LOGIN_URL),
        }
    }

    /// The API version this configuration resolves to.
    pub fn resolved_api_version(&self) -> Result<ApiVersion, ConfigError> {
        match &self.api_version {
            Some(v) if !v.trim().is_empty() => v.parse(),
            _ => Ok(DEFAULT_API_VERSION),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_parsing() {
        assert_eq!("62.0".parse::<ApiVersion>().unwrap(), ApiVersion::new(62));
        assert_eq!("v58.0".parse::<ApiVersion>().unwrap(), ApiVersion::new(58));
        assert_eq!("60".parse::<ApiVersion>().unwrap().to_string(), "60.0");
        assert_eq!(ApiVersion::new(62).path_segment(), "v62.0");
        for bad in ["", "abc", "62.x", "-1.0", "0.0", "62.0.1", "v"] {
            assert!(bad.parse::<ApiVersion>().is_err(), "{bad}");
        }
    }

    #[test]
    fn login_url_resolution() {
        let b = ClientBuilder::new();
        assert_eq!(
            b.resolved_login_url().unwrap().as_str(),
            "https://login.salesforce.com/"
        );
        let b = ClientBuilder::new().with_is_sandbox(true);
        assert_eq!(
            b.resolved_login_url().unwrap().host_str(),
            Some("test.salesforce.com")
        );
        let b = ClientBuilder::new()
            .with_is_sandbox(true)
            .with_login_url("https://acme.my.salesforce.com/");
        assert_eq!(
            b.resolved_login_url().unwrap().host_str(),
            Some("acme.my.salesforce.com")
        );
    }

    #[test]
    fn plain_http_only_for_loopback() {
        for ok in [
            "http://127.0.0.1:8111",
            "http://localhost:1",
            "http://[::1]:80",
            "https://x.my.salesforce.com",
        ] {
            assert!(validate_base_url("login_url", ok).is_ok(), "{ok}");
        }
        assert!(matches!(
            validate_base_url("login_url", "http://acme.my.salesforce.com"),
            Err(ConfigError::InsecureUrl { .. })
        ));
        assert!(matches!(
            validate_base_url("login_url", "http://10.0.0.1"),
            Err(ConfigError::InsecureUrl { .. })
        ));
        assert!(matches!(
            validate_base_url("login_url", "ftp://x"),
            Err(ConfigError::InvalidUrl { .. })
        ));
        assert!(matches!(
            validate_base_url("login_url", "https://x/?a=b"),
            Err(ConfigError::InvalidUrl { .. })
        ));
        let e = validate_base_url("login_url", "not a url").unwrap_err();
        assert!(e.to_string().starts_with("login_url:"), "{e}");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let b = ClientBuilder::new().with_credentials(Credentials::refresh_token(
            "id",
            Some("the-secret"),
            "the-refresh-token",
        ));
        let s = format!("{b:?}");
        assert!(
            !s.contains("the-secret") && !s.contains("the-refresh-token"),
            "{s}"
        );
    }
}
