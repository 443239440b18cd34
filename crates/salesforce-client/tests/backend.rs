//! Test backends: the local emulator, or a real org from environment variables.

use std::collections::BTreeMap;
use std::time::Duration;

use salesforce_client::{BackoffConfig, Client, ClientBuilder, Credentials, RetryConfig};

/// Rows generated for `Account` in the emulator: enough for several REST pages at 200.
pub const EMULATOR_ACCOUNTS: u64 = 450;

/// A client plus, for the emulator, its handle (admin API, call counters).
pub struct Backend {
    pub client: Client,
    pub emulator: Option<salesforce_emulator::Handle>,
}

impl Backend {
    /// A fresh emulator with default credentials and `EMULATOR_ACCOUNTS` accounts.
    pub async fn emulator() -> Self {
        Self::emulator_with(|_| {}, |b| b).await
    }

    /// A fresh emulator with a tweaked config and client builder.
    pub async fn emulator_with(
        tweak: impl FnOnce(&mut salesforce_emulator::Config),
        builder: impl FnOnce(ClientBuilder) -> ClientBuilder,
    ) -> Self {
        let mut config = salesforce_emulator::Config {
            rows: BTreeMap::from([("Account".to_owned(), EMULATOR_ACCOUNTS)]),
            ..Default::default()
        };
        tweak(&mut config);
        let handle = salesforce_emulator::spawn(config)
            .await
            .expect("emulator starts");
        let b = ClientBuilder::new()
            .with_login_url(handle.base_url.clone())
            .with_credentials(Credentials::refresh_token(
                "emulator-client-id",
                Some("emulator-client-secret"),
                "emulator-refresh-token",
            ))
            .with_retry(fast_retry());
        let client = builder(b).build().expect("client config is valid");
        Self {
            client,
            emulator: Some(handle),
        }
    }

    /// A real org when `SALESFORCE_CLIENT_ID` and `SALESFORCE_REFRESH_TOKEN` are set
    /// (optional: `SALESFORCE_CLIENT_SECRET`, `SALESFORCE_LOGIN_URL`, `SALESFORCE_IS_SANDBOX`,
    /// `SALESFORCE_API_VERSION`).
    pub fn real_org() -> Option<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let client_id = var("SALESFORCE_CLIENT_ID")?;
        let refresh_token = var("SALESFORCE_REFRESH_TOKEN")?;
        let mut b = ClientBuilder::new().with_credentials(Credentials::refresh_token(
            client_id,
            var("SALESFORCE_CLIENT_SECRET"),
            refresh_token,
        ));
        if let Some(url) = var("SALESFORCE_LOGIN_URL") {
            b = b.with_login_url(url);
        }
        if let Some(v) = var("SALESFORCE_API_VERSION") {
            b = b.with_api_version(v);
        }
        b = b.with_is_sandbox(var("SALESFORCE_IS_SANDBOX").is_some_and(|v| v == "true"));
        Some(Self {
            client: b.build().expect("SALESFORCE_* settings are valid"),
            emulator: None,
        })
    }

    /// The emulator handle (panics on a real org: only emulator tests call this).
    pub fn emu(&self) -> &salesforce_emulator::Handle {
        self.emulator.as_ref().expect("emulator backend")
    }

    /// Total API calls the emulator counted.
    pub async fn emulator_calls(&self) -> Option<u64> {
        let h = self.emulator.as_ref()?;
        let v: serde_json::Value = reqwest::get(format!("{}/__emulator/calls", h.base_url))
            .await
            .expect("admin API reachable")
            .json()
            .await
            .expect("calls JSON");
        v["total"].as_u64()
    }

    /// Replaces the emulator's faults.
    pub async fn set_faults(&self, faults: serde_json::Value) {
        let h = self.emu();
        let resp = reqwest::Client::new()
            .put(format!("{}/__emulator/faults", h.base_url))
            .json(&faults)
            .send()
            .await
            .expect("admin API reachable");
        assert!(
            resp.status().is_success(),
            "setting faults: {}",
            resp.status()
        );
    }
}

/// Retries fast enough for tests.
pub fn fast_retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init: Duration::from_millis(5),
            max: Duration::from_millis(50),
            base: 2.0,
        },
        max_retries: 4,
        retry_timeout: Duration::from_secs(30),
    }
}

/// Polling fast enough for tests.
pub fn fast_poll() -> salesforce_client::PollConfig {
    salesforce_client::PollConfig {
        backoff: BackoffConfig {
            init: Duration::from_millis(20),
            max: Duration::from_millis(500),
            base: 2.0,
        },
        timeout: Duration::from_secs(120),
    }
}
