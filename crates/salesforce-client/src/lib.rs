//! Salesforce API client: OAuth, REST, Bulk API 2.0, retries and usage tracking.
//!
//! This crate knows Salesforce, not Airbyte. The major components are:
//!
//! - [`config`]: [`ClientBuilder`] (login host from `is_sandbox` or an explicit My Domain /
//!   emulator URL, API version, timeouts, retry policy, budget) and [`Credentials`].
//! - [`auth`]: OAuth grants (refresh token and client credentials through the `oauth2` crate,
//!   JWT bearer signed with RS256), the double-checked token cache, rotated refresh tokens, and
//!   typed [`AuthError`]s.
//! - [`client`]: the [`Client`] and its single request loop (budget, bearer token, timeouts,
//!   `Sforce-Limit-Info`, refresh once on 401, retries).
//! - [`retry`]: [`RetryConfig`] / [`BackoffConfig`] as data, jittered [`Backoff`] with an
//!   injectable RNG, and the classification of failed attempts.
//! - [`error`]: the crate [`Error`], Salesforce's [`ApiError`] bodies and [`ErrorClass`].
//! - [`usage`]: the shared [`UsageTracker`], `/limits` types and the [`Budget`] hook.
//! - [`secret`]: [`Secret`], a string that never prints itself.
//! - [`rest`]: versions, `/limits`, describe global, describe (single, and 25 per `/composite`
//!   call), getUpdated / getDeleted, and query / queryAll as async streams of pages or records.
//! - [`soql`]: literal quoting, datetime literals, and splitting SELECT lists so query URIs stay
//!   under Salesforce's length limit.
//! - [`bulk`]: Bulk API 2.0 job info, states, CSV options and polling shared by
//!   [`bulk_query`] (create, wait, stream result pages as `csv::ByteRecord`s, abort, delete) and
//!   [`bulk_ingest`] (create, stream a CSV upload from a file, close, wait, stream results).
//! - `csv_stream` (private): the incremental CSV parser over a streamed HTTP body.
//!
//! Nothing here collects a result set in memory: REST queries are async streams of pages and
//! Bulk results are read page by page as CSV records.
//!
//! ```no_run
//! use futures::TryStreamExt;
//! use salesforce_client::{Budget, Client, Credentials, QueryOptions};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder()
//!     .with_is_sandbox(false)
//!     .with_credentials(Credentials::refresh_token("client-id", Some("secret"), "refresh-token"))
//!     .with_budget(Budget::share(0.8))
//!     .build()?;
//! let accounts = client.query_records::<serde_json::Value>(
//!     "SELECT Id, Name FROM Account",
//!     QueryOptions::query_all(),
//! );
//! futures::pin_mut!(accounts);
//! while let Some(account) = accounts.try_next().await? {
//!     println!("{}", account["Id"]);
//! }
//! println!("API calls used: {}", client.usage().calls_made);
//! # Ok(()) }
//! ```
//!
//! Errors carry an [`ErrorClass`] (config / transient / rate-limited / system) for mapping to a
//! caller's failure types; [`Error::is_daily_limit`] tells the org's daily quota apart from the
//! concurrent-request limit (retried here) and from the caller's own [`Budget`].

pub mod auth;
pub mod bulk;
pub mod bulk_ingest;
pub mod bulk_query;
pub mod client;
pub mod config;
mod csv_stream;
pub mod error;
pub mod rest;
pub mod retry;
pub mod secret;
pub mod soql;
pub mod usage;

#[cfg(test)]
mod mock_server;

pub use auth::AuthError;
pub use bulk::{ColumnDelimiter, JobInfo, JobState, LineEnding, PollConfig};
pub use bulk_ingest::{CsvResults, IngestJobRequest, IngestOperation, IngestResultKind};
pub use bulk_query::{QueryJobRequest, QueryOperation, QueryResults};
pub use client::Client;
pub use config::{ApiVersion, ClientBuilder, ConfigError, Credentials};
pub use error::{ApiError, BulkJobError, Error, ErrorClass, Result};
pub use rest::{CompositeGet, QueryOptions, QueryPage};
pub use retry::{Backoff, BackoffConfig, RetryConfig};
pub use secret::Secret;
pub use usage::{ApiUsage, Budget, Limits, UsageTracker};
