//! destination-salesforce: the Airbyte destination for Salesforce (data activation), writing
//! through Bulk API 2.0 ingest jobs.
//!
//! The command line, file loading, error reporting and stdout handling live in
//! `airbyte_protocol::cli`; this binary supplies the commands. The major components are:
//!
//! - [`config`]: the config (Airbyte's keys plus ours), raw → validated, errors naming the key;
//! - [`route`]: stream → object and operation (insert, upsert on a key, update, delete);
//! - [`input`]: stdin read block by block, RECORD lines parsed without a JSON map;
//! - [`encode`]: pre-validation against the object's describe and Salesforce CSV cells;
//! - [`batch`]: rows spooled to disk with a sidecar of their origins, closed by bytes / rows /
//!   age, and the content hashes that link result rows back to input rows;
//! - [`jobs`]: per-object lanes running ingest jobs (bounded concurrency), reading results,
//!   retrying once, writing rejects;
//! - [`rejects`]: reject files and the stores that keep them (local directory, S3, memory, none);
//! - [`state`]: states held until every record before them is written or rejected, with
//!   `destinationStats`;
//! - [`write`](mod@write): the `write` loop tying these together;
//! - [`discover`]: the DESTINATION_CATALOG; `check` is below.

mod batch;
mod config;
mod discover;
mod encode;
mod input;
mod jobs;
mod rejects;
mod route;
mod state;
mod write;

use std::process::ExitCode;

use airbyte_protocol::{
    AirbyteConnectionStatus, AirbyteMessage, ConfiguredAirbyteCatalog, ConnectionStatus, Connector,
    ConnectorError, ConnectorSpecification, Input, JsonObject, Output, ResultExt,
};
#[cfg(test)]
pub(crate) use salesforce_client::Secret;
use salesforce_client::{Client, Credentials, ErrorClass};

use crate::config::Config;

/// The connector specification printed by `spec`.
const SPEC: &str = include_str!("../../../schemas/destination-salesforce.spec.json");

/// A Salesforce client for the config.
pub(crate) fn connect(config: &Config) -> Result<Client, ConnectorError> {
    let mut builder = Client::builder()
        .with_is_sandbox(config.is_sandbox)
        .with_api_version(config.api_version.clone())
        .with_credentials(Credentials::refresh_token(
            config.client_id.clone(),
            Some(config.client_secret.clone()),
            config.refresh_token.clone(),
        ));
    if let Some(url) = &config.login_url {
        builder = builder.with_login_url(url.clone());
    }
    builder
        .build()
        .config_error("invalid Salesforce connection settings")
}

/// A Salesforce error classified for the platform: `what` failed, because of `e`.
pub(crate) fn salesforce_error(what: &str, e: salesforce_client::Error) -> ConnectorError {
    let message = format!("{what}: {e}");
    let error = match e.class() {
        ErrorClass::Config => ConnectorError::config(message),
        ErrorClass::Transient | ErrorClass::RateLimited => ConnectorError::transient(message),
        ErrorClass::System => ConnectorError::system(message),
    };
    error.with_source(e)
}

/// The Salesforce destination.
#[derive(Debug)]
struct DestinationSalesforce;

impl Connector for DestinationSalesforce {
    fn spec(&self) -> Result<ConnectorSpecification, ConnectorError> {
        serde_json::from_str(SPEC).map_err(|e| {
            ConnectorError::system("the embedded connector specification is invalid").with_source(e)
        })
    }

    /// Logs in, spends one API call on `/limits`, and writes then deletes a probe in the reject
    /// store. Any problem is a FAILED status saying what to fix.
    async fn check(
        &self,
        _out: &mut Output,
        config: JsonObject,
    ) -> Result<AirbyteConnectionStatus, ConnectorError> {
        let config = Config::try_from(&config)
            .map_err(|e| ConnectorError::config(format!("invalid configuration: {e}")))?;
        let client = connect(&config)?;
        // Whatever goes wrong, `check` answers with a FAILED status saying what to fix.
        let failed = |what: &str, e: salesforce_client::Error| {
            ConnectorError::config(format!("{what}: {e}")).with_source(e)
        };
        let instance = client.authenticate().await.map_err(|e| {
            failed(
                "could not log in to Salesforce (check client_id, client_secret, refresh_token, \
                 is_sandbox / login_url)",
                e,
            )
        })?;
        let limits = client.limits().await.map_err(|e| {
            failed(
                "logged in, but the REST API refused a call (does the user have \"API Enabled\"?)",
                e,
            )
        })?;
        let store = rejects::open(&config.rejects, "check".to_owned()).await;
        store.probe().await.map_err(|e| {
            ConnectorError::config(format!(
                "cannot write rejected records to {}: {e}",
                store.location()
            ))
            .with_source(e)
        })?;
        let quota = limits
            .get("DailyApiRequests")
            .map(|l| format!("; API requests left today: {} of {}", l.remaining, l.max))
            .unwrap_or_default();
        let bulk = limits
            .get("DailyBulkApiBatches")
            .map(|l| format!("; Bulk API batches left: {} of {}", l.remaining, l.max))
            .unwrap_or_default();
        Ok(AirbyteConnectionStatus {
            status: ConnectionStatus::Succeeded,
            message: Some(format!(
                "connected to {}{quota}{bulk}; rejected records go to {}",
                instance.as_str().trim_end_matches('/'),
                store.location()
            )),
            extra: JsonObject::new(),
        })
    }

    async fn discover(&self, out: &mut Output, config: JsonObject) -> Result<(), ConnectorError> {
        let config = Config::try_from(&config)
            .map_err(|e| ConnectorError::config(format!("invalid configuration: {e}")))?;
        let client = connect(&config)?;
        let catalog = discover::discover(&client)
            .await
            .map_err(|e| salesforce_error("could not list the Salesforce objects", e))?;
        tracing::info!(
            operations = catalog.operations.len(),
            api_calls = client.usage().calls_made,
            "discover finished"
        );
        out.write(&AirbyteMessage::destination_catalog(catalog))?;
        Ok(())
    }

    async fn write(
        &self,
        out: &mut Output,
        config: JsonObject,
        catalog: ConfiguredAirbyteCatalog,
        input: Input,
    ) -> Result<(), ConnectorError> {
        write::write(out, config, catalog, input).await
    }
}

fn main() -> ExitCode {
    airbyte_protocol::cli::run(DestinationSalesforce)
}
