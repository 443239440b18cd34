//! Retry policy as data, jittered backoff, and the classification of failed attempts.
//!
//! Three separate pieces:
//! - [`BackoffConfig`] + [`Backoff`]: how long to wait before attempt n (decorrelated jitter,
//!   with an injectable random source so tests are deterministic);
//! - [`RetryConfig`]: how many attempts and how much total time a request may use;
//! - [`classify_status`] / [`classify_transport`]: *whether* a failed attempt is worth retrying,
//!   and why. The request loop in [`crate::client`] combines them.

use std::time::Duration;

use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};

use crate::error::ApiError;

/// Exponential backoff with jitter.
///
/// Attempt n waits a random time in `[e/2, e]` where `e = min(max, init * base^n)` ("equal
/// jitter"): delays grow geometrically up to the cap, and concurrent clients spread out instead
/// of retrying in lockstep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    /// Base of the first delay. Default 100 ms.
    pub init: Duration,
    /// Upper bound of any delay. Default 15 s.
    pub max: Duration,
    /// Growth factor per attempt. Default 2.
    pub base: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            init: Duration::from_millis(100),
            max: Duration::from_secs(15),
            base: 2.0,
        }
    }
}

/// The state of one backoff sequence.
pub struct Backoff {
    init_secs: f64,
    max_secs: f64,
    base: f64,
    attempt: i32,
    rng: Box<dyn RngCore + Send + Sync>,
}

impl std::fmt::Debug for Backoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backoff")
            .field("init_secs", &self.init_secs)
            .field("max_secs", &self.max_secs)
            .field("base", &self.base)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl Backoff {
    /// A backoff seeded from the thread's random generator.
    pub fn new(config: &BackoffConfig) -> Self {
        Self::with_rng(config, Box::new(StdRng::from_rng(&mut rand::rng())))
    }

    /// A backoff drawing its jitter from `rng` (use a seeded generator in tests).
    pub fn with_rng(config: &BackoffConfig, rng: Box<dyn RngCore + Send + Sync>) -> Self {
        let init_secs = config.init.as_secs_f64();
        Self {
            init_secs,
            max_secs: config.max.as_secs_f64().max(init_secs),
            base: if config.base.is_finite() {
                config.base.max(1.0)
            } else {
                2.0
            },
            attempt: 0,
            rng,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = (self.init_secs * self.base.powi(self.attempt)).min(self.max_secs);
        self.attempt = self.attempt.saturating_add(1).min(1_000);
        let secs = if ceiling > 0.0 {
            self.rng.random_range(ceiling / 2.0..=ceiling)
        } else {
            0.0
        };
        Duration::from_secs_f64(secs)
    }
}

/// How often and for how long a request is retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryConfig {
    /// Delays between attempts.
    pub backoff: BackoffConfig,
    /// Retries after the first attempt. Default 5.
    pub max_retries: usize,
    /// No retry starts after this much time since the first attempt. Default 3 minutes.
    pub retry_timeout: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            backoff: BackoffConfig::default(),
            max_retries: 5,
            retry_timeout: Duration::from_secs(180),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Give up and return the error.
    No,
    /// Wait and try again; the reason is logged.
    After(&'static str),
    /// Drop the cached access token, get a new one and try again (at most once per request).
    RefreshToken,
}

/// Classifies an error status and its parsed body.
pub fn classify_status(error: &ApiError) -> Retry {
    match error.status {
        401 if error.is_refreshable_session_error() => Retry::RefreshToken,
        401 => Retry::No,
        429 => Retry::After("HTTP 429 Too Many Requests"),
        420 => Retry::After("HTTP 420 (Salesforce Edge routing)"),
        s if s >= 500 => Retry::After("server error"),
        _ if error.error_code == "UNABLE_TO_LOCK_ROW" => Retry::After("UNABLE_TO_LOCK_ROW"),
        _ if error.is_concurrent_limit() => {
            Retry::After("concurrent-request REQUEST_LIMIT_EXCEEDED")
        }
        _ => Retry::No,
    }
}

/// Classifies a transport error. Timeouts and failures after the request was sent are retried
/// only for idempotent requests (a POST that timed out may have created a job).
pub fn classify_transport(error: &reqwest::Error, idempotent: bool) -> Retry {
    if error.is_connect() {
        Retry::After("connection error")
    } else if error.is_timeout() {
        if idempotent {
            Retry::After("timeout")
        } else {
            Retry::No
        }
    } else if idempotent && (error.is_request() || error.is_body() || error.is_decode()) {
        Retry::After("transport error")
    } else {
        Retry::No
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str, message: &str) -> ApiError {
        ApiError {
            status,
            error_code: code.into(),
            message: message.into(),
            fields: vec![],
        }
    }

    #[test]
    fn backoff_is_deterministic_with_seeded_rng_and_bounded() {
        let cfg = BackoffConfig {
            init: Duration::from_millis(500),
            max: Duration::from_secs(30),
            base: 2.0,
        };
        let run = |seed| {
            let mut b = Backoff::with_rng(&cfg, Box::new(StdRng::seed_from_u64(seed)));
            (0..12).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7), "same seed, same delays");
        assert_ne!(a, run(8), "jitter depends on the rng");
        for (n, d) in a.iter().enumerate() {
            let ceiling = (0.5 * 2f64.powi(n as i32)).min(30.0);
            let s = d.as_secs_f64();
            assert!(
                s >= ceiling / 2.0 - 1e-9 && s <= ceiling + 1e-9,
                "attempt {n}: {d:?}"
            );
        }
        assert!(
            a[11] >= Duration::from_secs(15),
            "reaches the cap region: {a:?}"
        );
    }

    #[test]
    fn backoff_with_degenerate_config() {
        let cfg = BackoffConfig {
            init: Duration::from_millis(10),
            max: Duration::from_millis(10),
            base: 2.0,
        };
        let mut b = Backoff::new(&cfg);
        for _ in 0..5 {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(5) && d <= Duration::from_millis(10),
                "{d:?}"
            );
        }
    }

    #[test]
    fn status_classification() {
        assert_eq!(
            classify_status(&api(
                401,
                "INVALID_SESSION_ID",
                "Session expired or invalid"
            )),
            Retry::RefreshToken
        );
        assert_eq!(
            classify_status(&api(
                401,
                "INVALID_SESSION_ID",
                "This session is not valid for use with the REST API"
            )),
            Retry::No
        );
        assert!(matches!(
            classify_status(&api(503, "UNKNOWN", "")),
            Retry::After(_)
        ));
        assert!(matches!(
            classify_status(&api(429, "UNKNOWN", "")),
            Retry::After(_)
        ));
        assert!(matches!(
            classify_status(&api(400, "UNABLE_TO_LOCK_ROW", "")),
            Retry::After(_)
        ));
        assert!(matches!(
            classify_status(&api(
                403,
                "REQUEST_LIMIT_EXCEEDED",
                "ConcurrentPerOrgLongTxn Limit exceeded."
            )),
            Retry::After(_)
        ));
        assert_eq!(
            classify_status(&api(
                403,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded."
            )),
            Retry::No
        );
        assert_eq!(classify_status(&api(400, "MALFORMED_QUERY", "")), Retry::No);
        assert_eq!(classify_status(&api(404, "NOT_FOUND", "")), Retry::No);
    }
}
