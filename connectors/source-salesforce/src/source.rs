//! The [`Connector`] implementation: `check`, `discover` and `read`.
//!
//! - `check` validates the config, logs in and makes one API call (describe global).
//! - `discover` makes 1 + ⌈N/25⌉ API calls: describe global, then the objects' describes 25 per
//!   `/composite` request; it always adds Airbyte's synthetic `Describe` stream.
//! - `read` never re-runs discovery: a catalog our discover wrote carries each field's
//!   Salesforce type (`x-salesforce-type` annotations), so planning needs no API call; a catalog
//!   without them (e.g. discovered by Airbyte's connector) describes only its configured objects,
//!   25 per `/composite` call. Each stream is planned: the catalog's selected fields (plus `Id`,
//!   the cursor and `IsDeleted`), the API (Bulk API 2.0 `queryAll` by default; REST `queryAll`
//!   for objects Bulk does not serve, for base64 fields, and after Bulk refuses an object), and
//!   for incremental streams the range `[max(start_date, state − lookback_window), min(end_date,
//!   now))`, read in one query ordered by the cursor (only a query Salesforce times out is split
//!   into smaller windows). Before the streams start, batched `/composite` calls fetch the first
//!   REST page of every incremental stream and ask resumed streams whether anything changed
//!   (getUpdated + getDeleted; see `crate::changes`): an unchanged stream costs no query, a small
//!   delta is read through REST, a large one (by the row count the first page announces)
//!   through one Bulk job. Streams run concurrently (at most `num_workers`); each task sends its
//!   messages, in order, through one bounded channel to the writer loop that owns stdout:
//!
//! ```text
//! STREAM_STATUS STARTED → RUNNING (first record) → RECORD… / STATE after every page…
//!   → final STATE → STREAM_STATUS COMPLETE
//! ```
//!
//! With `formula_refresh_schedule` set, an incremental stream that selects formula fields also
//! re-emits every row up to its checkpoint once the schedule has fired since its last refresh,
//! after its normal read and before its `COMPLETE` ([`crate::formula`]).
//!
//! Each STATE carries the tie-safe checkpoint ([`crate::checkpoint`]) and
//! `sourceStats.recordCount`; a stream waiting on a Bulk job repeats its STATE as a heartbeat.
//! A stream stopped by the daily API limit (or our API budget) ends with its last safe STATE and
//! `INCOMPLETE` with a `RATE_LIMITED` reason; the run still exits 0 so the next sync resumes. Any
//! other stream failure ends that stream `INCOMPLETE` with a TRACE error; the other streams go
//! on, and the run then fails with a summary error (non-zero exit). A rotated refresh token is
//! persisted with a CONTROL message as soon as it is seen. The run ends by logging the API calls
//! it made and the org's remaining daily quota.

use std::collections::BTreeSet;
use std::sync::Arc;

use airbyte_protocol::{
    AirbyteCatalog, AirbyteConnectionStatus, AirbyteMessage, ConfiguredAirbyteCatalog,
    ConfiguredAirbyteStream, ConnectionStatus, Connector, ConnectorError, ConnectorSpecification,
    FailureType, InputState, JsonObject, LogLevel, Output, StreamStatus, SyncMode, SystemClock,
};
use chrono::Utc;
use salesforce_client::config::RefreshTokenListener;
use salesforce_client::rest::SObjectDescribe;
use salesforce_client::{ApiError, Budget, Client, Credentials, ErrorClass, Secret};
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::changes::{self, Head};
use crate::config::{Config, ConfigError};
use crate::discovery::{self, DESCRIBE_STREAM, ObjectInfo, describe_stream};
use crate::formula;
use crate::plan::{StreamPlan, plan_object, plan_stream};
use crate::state::{self, full_refresh_state};
use crate::stream::{
    Ctx, HEARTBEAT, Out, Outcome, incomplete_rate_limited, run_stream, stream_error,
};

/// The connector specification printed by `spec`.
const SPEC: &str = include_str!("../../../schemas/source-salesforce.spec.json");

/// Items buffered between the stream tasks and the writer. RECORDs travel in batches of
/// about 128 KiB, so this bounds the data in flight to a few MB whatever the row count.
const CHANNEL_CAPACITY: usize = 16;

/// The Salesforce source.
#[derive(Debug, Default)]
pub struct SourceSalesforce;

fn config_error(err: ConfigError) -> ConnectorError {
    ConnectorError::config(err.to_string())
}

/// Builds the API client for a validated config; rotated refresh tokens go to `rotation`.
pub fn build_client(config: &Config, rotation: &Rotation) -> Result<Client, ConnectorError> {
    let mut builder = Client::builder()
        .with_refresh_token_listener(rotation.listener())
        .with_is_sandbox(config.is_sandbox)
        .with_api_version(config.api_version.to_string())
        .with_credentials(Credentials::refresh_token(
            config.client_id.clone(),
            Some(config.client_secret.clone()),
            config.refresh_token.clone(),
        ))
        .with_budget(Budget::share(f64::from(config.api_budget_percent) / 100.0))
        .with_user_agent(concat!(
            "airbyte-source-salesforce-rs/",
            env!("CARGO_PKG_VERSION")
        ));
    if let Some(url) = &config.login_url {
        builder = builder.with_login_url(url.clone());
    }
    builder.build().map_err(|e| {
        ConnectorError::config(format!("invalid Salesforce settings: {e}")).with_source(e)
    })
}

/// Maps a client error to the protocol, with `what` saying what we were doing.
pub fn client_error(err: salesforce_client::Error, what: &str) -> ConnectorError {
    let message = format!("{what}: {err}");
    let failure = match err.class() {
        ErrorClass::Config => FailureType::ConfigError,
        ErrorClass::Transient | ErrorClass::RateLimited => FailureType::TransientError,
        ErrorClass::System => FailureType::SystemError,
    };
    ConnectorError::new(failure, message).with_source(err)
}

/// Logs the API calls this run made and the org's remaining quota.
fn log_usage(client: &Client) {
    let usage = client.usage();
    match (usage.org_used, usage.org_max) {
        (Some(used), Some(max)) => tracing::info!(
            api_calls = usage.calls_made,
            org_used = used,
            org_max = max,
            "API calls used by this run: {}; org daily quota: {used} of {max} used, {} remaining",
            usage.calls_made,
            max.saturating_sub(used)
        ),
        _ => tracing::info!(
            api_calls = usage.calls_made,
            "API calls used by this run: {} (org quota not reported)",
            usage.calls_made
        ),
    }
}

/// Persists rotated refresh tokens: the client's listener records a new token the moment
/// Salesforce issues it, and [`Rotation::flush`] writes it as a CONTROL message carrying the whole
/// config (the platform replaces the stored config with it). The old token stops working, so the
/// read flushes after every STATE rather than only at the end.
#[derive(Clone)]
pub struct Rotation {
    pending: Arc<std::sync::Mutex<Option<Secret>>>,
    config: Arc<std::sync::Mutex<JsonObject>>,
}

impl std::fmt::Debug for Rotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotation").finish_non_exhaustive()
    }
}

impl Rotation {
    /// Tracks rotations of the token in `config` (the raw `--config` object).
    pub fn new(config: JsonObject) -> Self {
        Self {
            pending: Arc::new(std::sync::Mutex::new(None)),
            config: Arc::new(std::sync::Mutex::new(config)),
        }
    }

    /// The listener to give the client.
    pub fn listener(&self) -> RefreshTokenListener {
        let pending = self.pending.clone();
        Arc::new(move |token: &Secret| {
            if let Ok(mut slot) = pending.lock() {
                *slot = Some(token.clone());
            }
        })
    }

    /// Writes a CONTROL message if the token rotated since the last flush.
    pub fn flush(&self, out: &mut Output) -> Result<(), ConnectorError> {
        let token = match self.pending.lock() {
            Ok(mut slot) => slot.take(),
            Err(_) => None,
        };
        let Some(token) = token else {
            return Ok(());
        };
        let updated = match self.config.lock() {
            Ok(mut config) => {
                config.insert(
                    "refresh_token".to_owned(),
                    Value::String(token.expose().to_owned()),
                );
                config.clone()
            }
            Err(_) => return Ok(()),
        };
        tracing::info!(
            "Salesforce rotated the refresh token; asking the platform to store the new one"
        );
        out.write(&AirbyteMessage::control_config(updated, &SystemClock))?;
        Ok(())
    }
}

impl Connector for SourceSalesforce {
    fn spec(&self) -> Result<ConnectorSpecification, ConnectorError> {
        serde_json::from_str(SPEC).map_err(|e| {
            ConnectorError::system("the embedded connector specification is invalid").with_source(e)
        })
    }

    async fn check(
        &self,
        out: &mut Output,
        raw: JsonObject,
    ) -> Result<AirbyteConnectionStatus, ConnectorError> {
        let config = Config::from_json(&raw).map_err(config_error)?;
        let rotation = Rotation::new(raw);
        let client = build_client(&config, &rotation)?;
        if let Err(err) = client.authenticate().await {
            // Whatever stops the login is for the user to fix in the settings.
            return Err(ConnectorError::config(format!(
                "could not log in to Salesforce: {err}. Check client_id, client_secret and refresh_token, and that is_sandbox / login_url point at the org that issued them"
            ))
            .with_source(err));
        }
        let global = client.describe_global().await;
        log_usage(&client);
        rotation.flush(out)?;
        match global {
            Ok(_) => Ok(AirbyteConnectionStatus {
                status: ConnectionStatus::Succeeded,
                message: None,
                extra: JsonObject::new(),
            }),
            Err(err) if err.class() == ErrorClass::Config => Err(ConnectorError::config(format!(
                "logged in, but the user may not list objects: {err}. Grant the integration user API access (\"API Enabled\") and read access to the objects to replicate"
            ))
            .with_source(err)),
            Err(err) => Err(client_error(err, "listing Salesforce objects failed")),
        }
    }

    async fn discover(&self, out: &mut Output, raw: JsonObject) -> Result<(), ConnectorError> {
        let config = Config::from_json(&raw).map_err(config_error)?;
        let rotation = Rotation::new(raw);
        let client = build_client(&config, &rotation)?;
        let global = client
            .describe_global()
            .await
            .map_err(|e| client_error(e, "listing Salesforce objects (describe global) failed"))?;
        let names = discovery::stream_objects(&global.sobjects, &config);
        let describes = client
            .describe_many(&names)
            .await
            .map_err(|e| client_error(e, "describing Salesforce objects failed"))?;
        let mut streams = Vec::with_capacity(names.len() + 1);
        for (name, describe) in names.iter().zip(describes) {
            match describe {
                Ok(d) => streams.push(ObjectInfo::from_describe(&d).airbyte_stream()),
                Err(e) => {
                    tracing::warn!(object = %name, error = %e, "object could not be described; it is not offered as a stream");
                }
            }
        }
        streams.push(describe_stream());
        tracing::info!(streams = streams.len(), "discovered streams");
        out.write(&AirbyteMessage::catalog(AirbyteCatalog {
            streams,
            extra: JsonObject::new(),
        }))?;
        log_usage(&client);
        rotation.flush(out)?;
        Ok(())
    }

    async fn read(
        &self,
        out: &mut Output,
        raw: JsonObject,
        catalog: ConfiguredAirbyteCatalog,
        input_state: InputState,
    ) -> Result<(), ConnectorError> {
        let config = Config::from_json(&raw).map_err(config_error)?;
        let rotation = Rotation::new(raw);
        let client = build_client(&config, &rotation)?;
        let result = read(out, &config, &client, &rotation, catalog, input_state).await;
        log_usage(&client);
        rotation.flush(out)?;
        result
    }
}

async fn read(
    out: &mut Output,
    config: &Config,
    client: &Client,
    rotation: &Rotation,
    catalog: ConfiguredAirbyteCatalog,
    input_state: InputState,
) -> Result<(), ConnectorError> {
    let now = Utc::now();
    let states = state::stream_states(&input_state);
    let mut seen = BTreeSet::new();
    let mut objects: Vec<&ConfiguredAirbyteStream> = Vec::new();
    let mut describe_configured: Option<&ConfiguredAirbyteStream> = None;
    for s in &catalog.streams {
        if !seen.insert(s.stream.name.clone()) {
            return Err(ConnectorError::config(format!(
                "the catalog lists stream {} twice",
                s.stream.name
            )));
        }
        if s.stream.name == DESCRIBE_STREAM {
            describe_configured = Some(s);
        } else {
            objects.push(s);
        }
    }
    // A catalog our discover wrote carries each field's Salesforce type, so nothing needs
    // describing; other catalogs (or the `Describe` stream) describe only the configured objects,
    // 25 per `/composite` call.
    let known: Vec<Option<ObjectInfo>> = objects
        .iter()
        .map(|s| {
            if describe_configured.is_some() {
                None
            } else if config.formula_refresh_schedule.is_some()
                && s.sync_mode == SyncMode::Incremental
                && !ObjectInfo::formulas_marked(&s.stream.json_schema)
            {
                // A catalog older than formula annotations: only a describe tells which
                // fields are formulas.
                tracing::info!(stream = %s.stream.name, "the catalog does not mark formula fields; describing the object for formula_refresh_schedule");
                None
            } else {
                ObjectInfo::from_catalog(&s.stream.name, &s.stream.json_schema)
            }
        })
        .collect();
    let names: Vec<&str> = objects
        .iter()
        .zip(&known)
        .filter(|(_, k)| k.is_none())
        .map(|(s, _)| s.stream.name.as_str())
        .collect();
    tracing::info!(
        from_catalog = objects.len() - names.len(),
        to_describe = names.len(),
        "planning streams"
    );
    let mut describes = if names.is_empty() {
        Vec::new()
    } else {
        match client.describe_many(&names).await {
            Ok(d) => d,
            Err(err) if err.class() == ErrorClass::RateLimited => {
                // Nothing read yet: every stream ends rate limited, the run succeeds.
                for s in &catalog.streams {
                    let d = s.stream.descriptor();
                    out.write(&AirbyteMessage::stream_status(
                        d.clone(),
                        StreamStatus::Started,
                        &SystemClock,
                    ))?;
                    out.write(&incomplete_rate_limited(d, &SystemClock))?;
                }
                tracing::warn!(error = %err, "the daily API limit (or the API budget) is reached; nothing was read");
                return Ok(());
            }
            Err(err) => return Err(client_error(err, "describing the catalog's objects failed")),
        }
    }
    .into_iter();

    let mut failures: Vec<(String, ConnectorError)> = Vec::new();
    let mut plans = Vec::new();
    let mut describe_records = Vec::new();
    for (configured, known) in objects.iter().zip(known) {
        let name = configured.stream.name.clone();
        let descriptor = configured.stream.descriptor();
        let planned = match known {
            Some(info) => {
                plan_object(configured, info, config, states.get(&name), now).map(|mut plan| {
                    plan.from_catalog = true;
                    plan
                })
            }
            None => match describes.next() {
                Some(Ok(d)) => {
                    let plan = plan_stream(configured, &d, config, states.get(&name), now);
                    if plan.is_ok() {
                        describe_records.push(d);
                    }
                    plan
                }
                Some(Err(api)) => Err(describe_failure(&name, &api)),
                None => Err(ConnectorError::system(format!(
                    "stream {name}: Salesforce returned no describe for the object"
                ))),
            },
        };
        match planned {
            Ok(plan) => plans.push(plan),
            Err(err) => {
                let err = err.with_stream(descriptor.clone());
                out.write(&AirbyteMessage::stream_status(
                    descriptor.clone(),
                    StreamStatus::Started,
                    &SystemClock,
                ))?;
                out.write(&stream_error(&err, &descriptor))?;
                out.write(&AirbyteMessage::stream_status(
                    descriptor,
                    StreamStatus::Incomplete,
                    &SystemClock,
                ))?;
                failures.push((name, err));
            }
        }
    }

    if let Some(configured) = describe_configured {
        write_describe_stream(out, configured, &describe_records)?;
    }

    let ctx = Arc::new(Ctx {
        client: client.clone(),
        preserve_na: config.preserve_na_values,
        step: config.stream_slice_step,
        heartbeat: HEARTBEAT,
    });
    // The batched first pages and change checks run beside the streams: each stream starts
    // as soon as its head is known (see `changes::prepare` for the memory bound).
    let (head_tx, mut head_rx) = mpsc::unbounded_channel::<(usize, Head)>();
    let producer = tokio::spawn(changes::prepare(
        client.clone(),
        Arc::new(plans.clone()),
        now,
        head_tx,
    ));
    // Streams whose formula fields a `formula_refresh_schedule` concerns (none without one).
    let refreshes: std::collections::BTreeMap<String, formula::Decision> = plans
        .iter()
        .filter_map(|p| {
            let decision = formula::decide(
                config.formula_refresh_schedule.as_ref(),
                p,
                states.get(&p.name),
                config.start_date,
                now,
            )?;
            Some((p.name.clone(), decision))
        })
        .collect();
    let refreshes = Arc::new(refreshes);
    let mut waiting: Vec<Option<StreamPlan>> = plans.into_iter().map(Some).collect();
    let mut pending = waiting.len();
    let permits = Arc::new(Semaphore::new(config.num_workers as usize));
    let (tx, mut rx) = mpsc::channel::<Out>(CHANNEL_CAPACITY);
    let mut tx = Some(tx);
    let mut tasks = JoinSet::new();
    let mut spawn = |plan: StreamPlan, head: Head, tx: &mpsc::Sender<Out>| {
        let (ctx, tx, permits) = (ctx.clone(), tx.clone(), permits.clone());
        let refresh = refreshes.get(&plan.name).cloned();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let name = plan.name.clone();
            let outcome = match refresh {
                Some(decision) => formula::run(&ctx, plan, head, &tx, decision).await,
                None => run_stream(&ctx, plan, head, &tx).await,
            };
            (name, outcome)
        });
    };
    if pending == 0 {
        tx = None;
    }
    loop {
        tokio::select! {
            head = head_rx.recv(), if pending > 0 => {
                let Some(sender) = tx.as_ref() else { continue };
                match head {
                    Some((i, head)) => {
                        if let Some(plan) = waiting.get_mut(i).and_then(Option::take) {
                            spawn(plan, head, sender);
                            pending -= 1;
                        }
                    }
                    // The producer ended early: the rest read on their own.
                    None => {
                        for plan in waiting.iter_mut().filter_map(Option::take) {
                            spawn(plan, Head::Read, sender);
                        }
                        pending = 0;
                    }
                }
                if pending == 0 {
                    tx = None;
                }
            }
            message = rx.recv() => {
                match message {
                    None => break,
                    Some(Out::Records { lines, count }) => out.write_record_lines(&lines, count)?,
                    Some(Out::Message(message)) => {
                        out.write(&message)?;
                        if !matches!(message, AirbyteMessage::Record { .. }) {
                            rotation.flush(out)?;
                        }
                    }
                }
            }
        }
    }
    if let Err(join) = producer.await {
        tracing::warn!(error = %join, "the batched change check ended abnormally");
    }
    let mut rate_limited = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((_, Outcome::Complete)) => {}
            Ok((name, Outcome::RateLimited)) => rate_limited.push(name),
            Ok((name, Outcome::Failed(err))) => failures.push((name, err)),
            Err(join) => {
                failures.push((
                    "(unknown)".to_owned(),
                    ConnectorError::system("a stream task crashed (internal error)")
                        .with_source(join),
                ));
            }
        }
    }
    if !rate_limited.is_empty() {
        rate_limited.sort();
        tracing::warn!(
            streams = ?rate_limited,
            "stopped early by the daily API limit or the API budget; progress is saved and the next sync resumes"
        );
        out.write(&AirbyteMessage::log(
            LogLevel::Warn,
            format!(
                "These streams stopped early because the Salesforce daily API limit (or api_budget_percent) was reached; their progress is saved and the next sync resumes them: {}",
                rate_limited.join(", ")
            ),
        ))?;
    }
    if failures.is_empty() {
        return Ok(());
    }
    failures.sort_by(|a, b| a.0.cmp(&b.0));
    let failure_type = if failures
        .iter()
        .all(|(_, e)| e.failure_type() == FailureType::ConfigError)
    {
        FailureType::ConfigError
    } else if failures
        .iter()
        .all(|(_, e)| e.failure_type() == FailureType::TransientError)
    {
        FailureType::TransientError
    } else {
        FailureType::SystemError
    };
    let names: Vec<&str> = failures.iter().map(|(n, _)| n.as_str()).collect();
    let details: Vec<String> = failures
        .iter()
        .map(|(n, e)| format!("{n}: {}", e.message()))
        .collect();
    Err(ConnectorError::new(
        failure_type,
        format!(
            "During the sync, the following streams did not sync successfully: {}",
            names.join(", ")
        ),
    )
    .with_source(std::io::Error::other(details.join("; "))))
}

fn describe_failure(name: &str, api: &ApiError) -> ConnectorError {
    if api.status == 404 || api.error_code == "NOT_FOUND" || api.error_code == "INVALID_TYPE" {
        ConnectorError::config(format!(
            "stream {name}: the Salesforce object does not exist or is not visible to the integration user ({}: {}); refresh the source schema or grant access to the object",
            api.error_code, api.message
        ))
    } else {
        let failure = match api.class() {
            ErrorClass::Config => FailureType::ConfigError,
            ErrorClass::Transient | ErrorClass::RateLimited => FailureType::TransientError,
            ErrorClass::System => FailureType::SystemError,
        };
        ConnectorError::new(
            failure,
            format!("stream {name}: describing the object failed: {api}"),
        )
    }
}

/// Emits the synthetic `Describe` stream from the describes fetched for the catalog.
fn write_describe_stream(
    out: &mut Output,
    configured: &ConfiguredAirbyteStream,
    describes: &[SObjectDescribe],
) -> Result<(), ConnectorError> {
    let descriptor = configured.stream.descriptor();
    out.write(&AirbyteMessage::stream_status(
        descriptor.clone(),
        StreamStatus::Started,
        &SystemClock,
    ))?;
    if !describes.is_empty() {
        out.write(&AirbyteMessage::stream_status(
            descriptor.clone(),
            StreamStatus::Running,
            &SystemClock,
        ))?;
    }
    for d in describes {
        let data = match serde_json::to_value(d) {
            Ok(Value::Object(o)) => o,
            _ => {
                return Err(ConnectorError::system(format!(
                    "the describe of {} could not be serialised",
                    d.name
                )));
            }
        };
        out.write(&AirbyteMessage::record(
            DESCRIBE_STREAM,
            None,
            data,
            &SystemClock,
        ))?;
    }
    out.write(&AirbyteMessage::state_stream(
        descriptor.clone(),
        full_refresh_state(),
        describes.len() as u64,
    ))?;
    out.write(&AirbyteMessage::stream_status(
        descriptor,
        StreamStatus::Complete,
        &SystemClock,
    ))?;
    Ok(())
}
