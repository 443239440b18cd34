//! The payload types of every Airbyte message (protocol 0.18.0), mirroring the wire.
//!
//! Conventions, applied to every struct here:
//! - optional fields are `Option<T>`: omitted on output (never `null`), `null` or absent on input;
//! - unknown fields are kept in `extra` (`#[serde(flatten)]`) and written back, so an object the
//!   platform decorated (a STATE with an integer `id`) survives an echo; `null` unknown fields are
//!   dropped on input;
//! - opaque blobs (`json_schema`, `stream_state`, `config`, `connectionSpecification`) are
//!   [`serde_json::Value`] or [`JsonObject`].
//!
//! Field names follow the wire exactly, including the protocol's camelCase exceptions
//! (`sourceStats`, `connectorConfig`, `documentationUrl`, ...).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::JsonObject;
use crate::serde_util::{extra_fields, lenient_millis, null_as_default};

// ---------------------------------------------------------------------------------------------
// Shared
// ---------------------------------------------------------------------------------------------

/// Identifies a stream: its name and optional namespace.
///
/// Used as a key (it is `Hash + Eq`), so it deliberately keeps no unknown fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct StreamDescriptor {
    /// Stream name.
    pub name: String,
    /// Stream namespace, if the stream has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl StreamDescriptor {
    /// A descriptor for `name` with an optional namespace.
    pub fn new(name: impl Into<String>, namespace: Option<String>) -> Self {
        Self {
            name: name.into(),
            namespace,
        }
    }
}

impl std::fmt::Display for StreamDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// How a source reads a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Read everything every time (the protocol's default).
    #[default]
    FullRefresh,
    /// Read only what changed since the cursor in the state.
    Incremental,
}

/// How a destination writes a stream (also a data-activation operation's mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationSyncMode {
    /// Insert records (the protocol's default).
    #[default]
    Append,
    /// Replace the destination's data.
    Overwrite,
    /// Insert or update by primary key (upsert).
    AppendDedup,
    /// Update existing objects by key.
    Update,
    /// Delete objects by key.
    SoftDelete,
    /// A mode this build does not know. Accepted on input so that a source, which must ignore
    /// `destination_sync_mode`, never fails on a future value; never produced by us.
    #[serde(other)]
    Unknown,
}

// ---------------------------------------------------------------------------------------------
// RECORD
// ---------------------------------------------------------------------------------------------

/// `AirbyteRecordMessage`: one row of one stream.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AirbyteRecordMessage {
    /// The stream the record belongs to.
    pub stream: String,
    /// The stream's namespace, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The record itself (always a JSON object).
    pub data: JsonObject,
    /// When the record was emitted, epoch milliseconds (an integer on the wire).
    #[serde(deserialize_with = "lenient_millis")]
    pub emitted_at: i64,
    /// Changes made to the record in flight (nulled or truncated fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<RecordMeta>,
    /// For file-based streams: where the described file was staged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_reference: Option<FileReference>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

/// `AirbyteRecordMessageMeta`: information about a record added mid-sync.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RecordMeta {
    /// Changes to the record's content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<RecordChange>>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

/// `AirbyteRecordMessageMetaChange`: one field that was changed and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordChange {
    /// The field that changed.
    pub field: String,
    /// What happened to it.
    pub change: ChangeKind,
    /// Why.
    pub reason: ChangeReason,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

/// What happened to a changed field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChangeKind {
    /// The value was replaced by null.
    Nulled,
    /// The value was shortened.
    Truncated,
}

/// Why a field was changed (all eleven reasons of protocol 0.18.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChangeReason {
    /// The whole record was too large for the source.
    SourceRecordSizeLimitation,
    /// The whole record was too large for the destination.
    DestinationRecordSizeLimitation,
    /// The whole record was too large for the platform.
    PlatformRecordSizeLimitation,
    /// One field was too large for the source.
    SourceFieldSizeLimitation,
    /// One field was too large for the destination.
    DestinationFieldSizeLimitation,
    /// One field was too large for the platform.
    PlatformFieldSizeLimitation,
    /// The source could not serialise the field.
    SourceSerializationError,
    /// The destination could not serialise the field.
    DestinationSerializationError,
    /// The platform could not serialise the field.
    PlatformSerializationError,
    /// The source could not retrieve the field.
    SourceRetrievalError,
    /// The destination could not cast the field to its type.
    DestinationTypecastError,
}

/// `AirbyteRecordMessageFileReference`: the file a file-based record describes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FileReference {
    /// Absolute path of the file in the staging area.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging_file_url: Option<String>,
    /// Path of the file relative to the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_file_relative_path: Option<String>,
    /// Size of the file in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size_bytes: Option<i64>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

// ---------------------------------------------------------------------------------------------
// STATE
// ---------------------------------------------------------------------------------------------

/// `AirbyteStateMessage`: a checkpoint.
///
/// Unknown fields are kept, so the integer `id` the platform attaches before forwarding a state to
/// the destination is echoed unchanged. PyAirbyte's pydantic field name `global_` is accepted as
/// an alias of `global` (it may even appear twice, as `null`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "StateWire")]
pub struct AirbyteStateMessage {
    /// `STREAM`, `GLOBAL` or `LEGACY` (absent means LEGACY, which the platform rejects).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub state_type: Option<StateType>,
    /// Per-stream state (`type: STREAM`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<AirbyteStreamState>,
    /// Shared state for all streams (`type: GLOBAL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global: Option<AirbyteGlobalState>,
    /// Deprecated LEGACY state blob.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Counts from the source for the window this state closes.
    #[serde(rename = "sourceStats", skip_serializing_if = "Option::is_none")]
    pub source_stats: Option<AirbyteStateStats>,
    /// Counts from the destination for the window this state closes.
    #[serde(rename = "destinationStats", skip_serializing_if = "Option::is_none")]
    pub destination_stats: Option<AirbyteStateStats>,
    /// Unknown fields (the platform's `id`), written back unchanged.
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// The input shape of [`AirbyteStateMessage`], before `global_` is folded into `global`.
#[derive(Deserialize)]
struct StateWire {
    #[serde(rename = "type", default)]
    state_type: Option<StateType>,
    #[serde(default)]
    stream: Option<AirbyteStreamState>,
    #[serde(default)]
    global: Option<AirbyteGlobalState>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(rename = "sourceStats", default)]
    source_stats: Option<AirbyteStateStats>,
    #[serde(rename = "destinationStats", default)]
    destination_stats: Option<AirbyteStateStats>,
    #[serde(flatten, deserialize_with = "extra_fields")]
    extra: JsonObject,
}

impl TryFrom<StateWire> for AirbyteStateMessage {
    type Error = String;

    fn try_from(mut wire: StateWire) -> Result<Self, String> {
        let mut global = wire.global;
        if global.is_none()
            && let Some(value) = wire.extra.shift_remove("global_")
        {
            global = Some(
                serde_json::from_value(value)
                    .map_err(|e| format!("invalid `global_` state: {e}"))?,
            );
        }
        Ok(Self {
            state_type: wire.state_type,
            stream: wire.stream,
            global,
            data: wire.data,
            source_stats: wire.source_stats,
            destination_stats: wire.destination_stats,
            extra: wire.extra,
        })
    }
}

/// The kind of a state message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StateType {
    /// One shared state for all streams (CDC-style).
    Global,
    /// The state of one stream.
    Stream,
    /// Deprecated whole-connector blob in `data`.
    Legacy,
}

/// `AirbyteStreamState`: the state of one stream.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AirbyteStreamState {
    /// The stream.
    pub stream_descriptor: StreamDescriptor,
    /// The opaque state; absent means "reset this stream".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_state: Option<Value>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

/// `AirbyteGlobalState`: a shared state plus per-stream states.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AirbyteGlobalState {
    /// State shared by all streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_state: Option<Value>,
    /// Per-stream states.
    pub stream_states: Vec<AirbyteStreamState>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

/// `AirbyteStateStats`: record counts of one state window.
///
/// The counts are doubles on the wire and serialise with a decimal point (`3.0`), as the protocol
/// asks.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AirbyteStateStats {
    /// Records in the window.
    #[serde(
        rename = "recordCount",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub record_count: Option<f64>,
    /// Records the destination rejected in the window.
    #[serde(
        rename = "rejectedRecordCount",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub rejected_record_count: Option<f64>,
    /// Unknown fields (e.g. a future `additionalStats`), written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

impl AirbyteStateStats {
    /// Stats with only a record count.
    pub fn records(count: u64) -> Self {
        Self {
            // Counts above 2^53 lose precision; the protocol chose doubles knowingly.
            record_count: Some(count as f64),
            ..Self::default()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// LOG
// ---------------------------------------------------------------------------------------------

/// `AirbyteLogMessage`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AirbyteLogMessage {
    /// Severity.
    pub level: LogLevel,
    /// The text.
    pub message: String,
    /// A stack trace, if the log line reports an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_trace: Option<String>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

/// Log level of a LOG message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LogLevel {
    /// Fatal.
    Fatal,
    /// Error.
    Error,
    /// Warning.
    Warn,
    /// Information.
    #[default]
    Info,
    /// Debug.
    Debug,
    /// Trace.
    Trace,
}

// ---------------------------------------------------------------------------------------------
// SPEC
// ---------------------------------------------------------------------------------------------

/// `ConnectorSpecification`: what `spec` prints.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConnectorSpecification {
    /// Link to the connector's documentation.
    #[serde(
        rename = "documentationUrl",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub documentation_url: Option<String>,
    /// Link to the connector's changelog.
    #[serde(
        rename = "changelogUrl",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub changelog_url: Option<String>,
    /// JSON Schema of the connector's config.
    #[serde(rename = "connectionSpecification")]
    pub connection_specification: Value,
    /// Deprecated: whether the connector supports incremental syncs.
    #[serde(
        rename = "supportsIncremental",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub supports_incremental: Option<bool>,
    /// Destinations: whether normalisation is supported.
    #[serde(
        rename = "supportsNormalization",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub supports_normalization: Option<bool>,
    /// Destinations: whether dbt is supported.
    #[serde(
        rename = "supportsDBT",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub supports_dbt: Option<bool>,
    /// Destinations: the sync modes they support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supported_destination_sync_modes: Option<Vec<DestinationSyncMode>>,
    /// Deprecated OAuth description (superseded by `advanced_auth`).
    #[serde(
        rename = "authSpecification",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub auth_specification: Option<Value>,
    /// OAuth UX description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advanced_auth: Option<AdvancedAuth>,
    /// The protocol version the connector speaks (absent means 0.2.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

/// `advanced_auth`: how the platform runs an OAuth flow for this connector.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AdvancedAuth {
    /// The OAuth flavour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_flow_type: Option<AuthFlowType>,
    /// Path of the config field that selects OAuth (e.g. `["auth_type"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicate_key: Option<Vec<String>>,
    /// Value of that field for which OAuth applies (e.g. `"Client"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicate_value: Option<String>,
    /// The flow's inputs and outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_config_specification: Option<OAuthConfigSpecification>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

/// OAuth flavour of `advanced_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuthFlowType {
    /// OAuth 2.0.
    #[serde(rename = "oauth2.0")]
    OAuth2,
    /// OAuth 1.0.
    #[serde(rename = "oauth1.0")]
    OAuth1,
}

/// `OAuthConfigSpecification`: the JSON Schemas around an OAuth flow.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OAuthConfigSpecification {
    /// Config fields the user enters that the flow needs (with `path_in_connector_config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_user_input_from_connector_config_specification: Option<Value>,
    /// Declarative OAuth: URLs and parameters of the flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_connector_input_specification: Option<OAuthConnectorInputSpecification>,
    /// What the flow returns and where it goes in the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_oauth_output_specification: Option<Value>,
    /// Instance-level secrets the server uses to complete the flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_oauth_server_input_specification: Option<Value>,
    /// The subset of the server inputs merged back into the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_oauth_server_output_specification: Option<Value>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

/// `oauth_connector_input_specification`: a declarative OAuth flow.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OAuthConnectorInputSpecification {
    /// Templated URL that starts the consent flow.
    pub consent_url: String,
    /// Scopes to request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Templated URL that exchanges the code for tokens.
    pub access_token_url: String,
    /// Extra headers for the token exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_headers: Option<JsonObject>,
    /// Extra parameters for the token exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_params: Option<JsonObject>,
    /// Keys to extract from the token response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract_output: Option<Vec<String>>,
    /// Length bounds of the `state` parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<OAuthStateSpecification>,
    /// Name of the client-id parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id_key: Option<String>,
    /// Name of the client-secret parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_key: Option<String>,
    /// Name of the scope parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_key: Option<String>,
    /// Name of the state parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_key: Option<String>,
    /// Name of the authorisation-code parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_code_key: Option<String>,
    /// Name of the redirect-URI parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri_key: Option<String>,
    /// Name of the token-expiry field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expiry_key: Option<String>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

/// Length bounds of the OAuth `state` parameter.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OAuthStateSpecification {
    /// Minimum length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    /// Maximum length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

// ---------------------------------------------------------------------------------------------
// CONNECTION_STATUS
// ---------------------------------------------------------------------------------------------

/// `AirbyteConnectionStatus`: the result of `check`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AirbyteConnectionStatus {
    /// Whether the check passed.
    pub status: ConnectionStatus,
    /// Why it failed (or a note on success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

/// Outcome of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConnectionStatus {
    /// The connector can connect with this config.
    Succeeded,
    /// It cannot.
    Failed,
}

// ---------------------------------------------------------------------------------------------
// CATALOG and configured catalog
// ---------------------------------------------------------------------------------------------

/// `AirbyteCatalog`: what a source's `discover` prints.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AirbyteCatalog {
    /// The streams.
    pub streams: Vec<AirbyteStream>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

/// `AirbyteStream`: one stream a source offers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AirbyteStream {
    /// Stream name.
    pub name: String,
    /// JSON Schema of the stream's records (top-level `type: object`).
    pub json_schema: Value,
    /// Sync modes the stream supports (at least one).
    pub supported_sync_modes: Vec<SyncMode>,
    /// Whether the source picks the cursor field itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_defined_cursor: Option<bool>,
    /// Path of the default cursor field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_cursor_field: Option<Vec<String>>,
    /// Paths of the primary-key fields (e.g. `[["Id"]]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_defined_primary_key: Option<Vec<Vec<String>>>,
    /// Stream namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Whether a full refresh of this stream can resume within a job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_resumable: Option<bool>,
    /// Whether the stream describes files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_file_based: Option<bool>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

impl AirbyteStream {
    /// The stream's descriptor (name and namespace).
    pub fn descriptor(&self) -> StreamDescriptor {
        StreamDescriptor::new(self.name.clone(), self.namespace.clone())
    }
}

/// `ConfiguredAirbyteCatalog`: the `--catalog` file of `read` and `write`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConfiguredAirbyteCatalog {
    /// The selected streams.
    pub streams: Vec<ConfiguredAirbyteStream>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

/// `ConfiguredAirbyteStream`: one selected stream and how to sync it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConfiguredAirbyteStream {
    /// The stream as discovered.
    pub stream: AirbyteStream,
    /// How the source reads it (`null` or absent means `full_refresh`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub sync_mode: SyncMode,
    /// Path of the cursor field (incremental syncs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor_field: Option<Vec<String>>,
    /// How the destination writes it (`null` or absent means `append`). Sources ignore it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub destination_sync_mode: DestinationSyncMode,
    /// Paths of the primary-key fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_key: Option<Vec<Vec<String>>>,
    /// Generation of the stream's data (refreshes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_id: Option<i64>,
    /// Oldest generation to keep; equal to `generation_id` means truncate older data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_generation_id: Option<i64>,
    /// Id of this sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_id: Option<i64>,
    /// For file-based streams: whether to transfer the files too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_files: Option<bool>,
    /// Data activation: the destination object to write to (e.g. `"Contact"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_object_name: Option<String>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

// ---------------------------------------------------------------------------------------------
// TRACE
// ---------------------------------------------------------------------------------------------

/// `AirbyteTraceMessage`: errors, estimates, stream statuses and analytics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AirbyteTraceMessage {
    /// Which of the payloads is set.
    #[serde(rename = "type")]
    pub trace_type: TraceType,
    /// When the trace was emitted, epoch milliseconds (a number on the wire).
    pub emitted_at: f64,
    /// Payload of an `ERROR` trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AirbyteErrorTraceMessage>,
    /// Payload of an `ESTIMATE` trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<AirbyteEstimateTraceMessage>,
    /// Payload of a `STREAM_STATUS` trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_status: Option<AirbyteStreamStatusTraceMessage>,
    /// Payload of an `ANALYTICS` trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analytics: Option<AirbyteAnalyticsTraceMessage>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

/// Kind of a TRACE message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TraceType {
    /// An error.
    Error,
    /// A size estimate.
    Estimate,
    /// A stream status change.
    StreamStatus,
    /// An analytics event.
    Analytics,
    /// A kind this build does not know (accepted on input, never produced).
    #[serde(other)]
    Unknown,
}

/// `AirbyteErrorTraceMessage`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AirbyteErrorTraceMessage {
    /// What the user sees.
    pub message: String,
    /// The technical cause (full error chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_message: Option<String>,
    /// A stack trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_trace: Option<String>,
    /// Who has to act: the user (config), nobody (transient) or us (system).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_type: Option<FailureType>,
    /// The stream the error concerns, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_descriptor: Option<StreamDescriptor>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

/// Classification of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureType {
    /// A bug or an unexpected condition on our side.
    #[default]
    SystemError,
    /// The user must fix the configuration (credentials, permissions, options).
    ConfigError,
    /// Retrying later may succeed.
    TransientError,
}

/// `AirbyteEstimateTraceMessage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AirbyteEstimateTraceMessage {
    /// Stream name.
    pub name: String,
    /// Per-stream or whole-sync estimate.
    #[serde(rename = "type")]
    pub estimate_type: EstimateType,
    /// Stream namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Estimated rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_estimate: Option<i64>,
    /// Estimated bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byte_estimate: Option<i64>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

/// Scope of an estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EstimateType {
    /// For one stream (preferred).
    Stream,
    /// For the whole sync.
    Sync,
}

/// `AirbyteStreamStatusTraceMessage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AirbyteStreamStatusTraceMessage {
    /// The stream.
    pub stream_descriptor: StreamDescriptor,
    /// Its new status.
    pub status: StreamStatus,
    /// Why (e.g. rate limited while RUNNING).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasons: Option<Vec<StreamStatusReason>>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

/// Status of a stream within a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamStatus {
    /// Started, no data yet.
    Started,
    /// Data is flowing.
    Running,
    /// Finished without error.
    Complete,
    /// Stopped by an error or interruption.
    Incomplete,
}

/// `AirbyteStreamStatusReason`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamStatusReason {
    /// Kind of reason.
    #[serde(rename = "type")]
    pub reason_type: StreamStatusReasonType,
    /// Details when rate limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited: Option<RateLimitedReason>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

/// Kind of a stream-status reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamStatusReasonType {
    /// The API's quota is exhausted.
    RateLimited,
    /// A kind this build does not know (accepted on input, never produced).
    #[serde(other)]
    Unknown,
}

/// `AirbyteStreamStatusRateLimitedReason`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RateLimitedReason {
    /// When the quota resets, epoch milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_reset: Option<i64>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

/// `AirbyteAnalyticsTraceMessage`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AirbyteAnalyticsTraceMessage {
    /// Static event name.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Optional payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

// ---------------------------------------------------------------------------------------------
// CONTROL
// ---------------------------------------------------------------------------------------------

/// `AirbyteControlMessage`: asks the platform to persist something (a new config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AirbyteControlMessage {
    /// Kind of control message.
    #[serde(rename = "type")]
    pub control_type: ControlType,
    /// When it was emitted, epoch milliseconds (a number on the wire).
    pub emitted_at: f64,
    /// Payload of a `CONNECTOR_CONFIG` message.
    #[serde(
        rename = "connectorConfig",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub connector_config: Option<AirbyteControlConnectorConfigMessage>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

/// Kind of a CONTROL message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ControlType {
    /// The connector's config changed (e.g. a rotated refresh token).
    ConnectorConfig,
}

/// `AirbyteControlConnectorConfigMessage`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AirbyteControlConnectorConfigMessage {
    /// The complete new config (the platform replaces the stored one with it).
    pub config: JsonObject,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

// ---------------------------------------------------------------------------------------------
// DESTINATION_CATALOG
// ---------------------------------------------------------------------------------------------

/// `DestinationCatalog`: what a data-activation destination's `discover` prints.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DestinationCatalog {
    /// The operations the destination supports.
    pub operations: Vec<DestinationOperation>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}

/// `DestinationOperation`: one (object, mode) pair the destination can write.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DestinationOperation {
    /// The destination object (e.g. `"Contact"`).
    pub object_name: String,
    /// How records are written to it.
    pub sync_mode: DestinationSyncMode,
    /// JSON Schema of the fields the operation accepts.
    pub json_schema: Value,
    /// Keys usable to match existing objects (paths).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matching_keys: Option<Vec<Vec<String>>>,
    /// Unknown fields, written back unchanged.
    #[serde(flatten, deserialize_with = "extra_fields")]
    pub extra: JsonObject,
}
