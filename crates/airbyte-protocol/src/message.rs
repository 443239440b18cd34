//! The `AirbyteMessage` envelope: `{"type": "RECORD", "record": {...}}` and friends.
//!
//! [`AirbyteMessage`] is an enum tagged by the wire's `type` field; each variant holds the payload
//! found under its key (`record`, `state`, `log`, `spec`, `connectionStatus`, `catalog`, `trace`,
//! `control`, `destination_catalog`) and the envelope's unknown non-null fields. A message whose
//! `type` this build does not know parses as [`AirbyteMessage::Other`] instead of failing.
//!
//! Serde is implemented by hand for the envelope: parsing goes through a flat struct with every
//! payload key, so a record's data is deserialised in one pass (no intermediate buffering) and the
//! `null` payload keys PyAirbyte sends for the other types are ignored.

use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::JsonObject;
use crate::clock::Clock;
use crate::serde_util::extra_fields;
use crate::types::*;

/// One line of the Airbyte protocol.
///
/// Payloads are boxed so that the enum stays small whatever the variant (a SPEC is far larger
/// than a RECORD); `Box` derefs, so `record.stream` reads as usual.
#[derive(Debug, Clone, PartialEq)]
pub enum AirbyteMessage {
    /// `RECORD`: one row.
    Record {
        /// The payload (`record`).
        record: Box<AirbyteRecordMessage>,
        /// Unknown envelope fields, written back unchanged.
        extra: JsonObject,
    },
    /// `STATE`: a checkpoint.
    State {
        /// The payload (`state`).
        state: Box<AirbyteStateMessage>,
        /// Unknown envelope fields, written back unchanged.
        extra: JsonObject,
    },
    /// `LOG`: a log line for the platform.
    Log {
        /// The payload (`log`).
        log: Box<AirbyteLogMessage>,
        /// Unknown envelope fields, written back unchanged.
        extra: JsonObject,
    },
    /// `SPEC`: the connector specification.
    Spec {
        /// The payload (`spec`).
        spec: Box<ConnectorSpecification>,
        /// Unknown envelope fields, written back unchanged.
        extra: JsonObject,
    },
    /// `CONNECTION_STATUS`: the result of `check`.
    ConnectionStatus {
        /// The payload (`connectionStatus`).
        connection_status: Box<AirbyteConnectionStatus>,
        /// Unknown envelope fields, written back unchanged.
        extra: JsonObject,
    },
    /// `CATALOG`: a source's discovered streams.
    Catalog {
        /// The payload (`catalog`).
        catalog: Box<AirbyteCatalog>,
        /// Unknown envelope fields, written back unchanged.
        extra: JsonObject,
    },
    /// `TRACE`: error, estimate, stream status or analytics.
    Trace {
        /// The payload (`trace`).
        trace: Box<AirbyteTraceMessage>,
        /// Unknown envelope fields, written back unchanged.
        extra: JsonObject,
    },
    /// `CONTROL`: a request to persist a new config.
    Control {
        /// The payload (`control`).
        control: Box<AirbyteControlMessage>,
        /// Unknown envelope fields, written back unchanged.
        extra: JsonObject,
    },
    /// `DESTINATION_CATALOG`: a data-activation destination's operations.
    DestinationCatalog {
        /// The payload (`destination_catalog`).
        destination_catalog: Box<DestinationCatalog>,
        /// Unknown envelope fields, written back unchanged.
        extra: JsonObject,
    },
    /// A message type this build does not know; kept whole so it can be passed on or ignored.
    Other {
        /// The wire `type`.
        message_type: String,
        /// Every other non-null field of the message.
        fields: JsonObject,
    },
}

/// Wire names of the message types, in protocol order.
pub const MESSAGE_TYPES: [&str; 9] = [
    "RECORD",
    "STATE",
    "LOG",
    "SPEC",
    "CONNECTION_STATUS",
    "CATALOG",
    "TRACE",
    "CONTROL",
    "DESTINATION_CATALOG",
];

impl AirbyteMessage {
    /// The wire `type` of this message.
    pub fn message_type(&self) -> &str {
        match self {
            Self::Record { .. } => "RECORD",
            Self::State { .. } => "STATE",
            Self::Log { .. } => "LOG",
            Self::Spec { .. } => "SPEC",
            Self::ConnectionStatus { .. } => "CONNECTION_STATUS",
            Self::Catalog { .. } => "CATALOG",
            Self::Trace { .. } => "TRACE",
            Self::Control { .. } => "CONTROL",
            Self::DestinationCatalog { .. } => "DESTINATION_CATALOG",
            Self::Other { message_type, .. } => message_type,
        }
    }

    /// The envelope's unknown fields (for [`AirbyteMessage::Other`]: all fields but `type`).
    pub fn extra(&self) -> &JsonObject {
        match self {
            Self::Record { extra, .. }
            | Self::State { extra, .. }
            | Self::Log { extra, .. }
            | Self::Spec { extra, .. }
            | Self::ConnectionStatus { extra, .. }
            | Self::Catalog { extra, .. }
            | Self::Trace { extra, .. }
            | Self::Control { extra, .. }
            | Self::DestinationCatalog { extra, .. } => extra,
            Self::Other { fields, .. } => fields,
        }
    }
}

/// Writes `{"type": ty, key: payload, ...extra}`.
fn serialize_envelope<S, P>(
    serializer: S,
    message_type: &str,
    key: &str,
    payload: &P,
    extra: &JsonObject,
) -> Result<S::Ok, S::Error>
where
    S: Serializer,
    P: Serialize,
{
    let mut map = serializer.serialize_map(Some(2 + extra.len()))?;
    map.serialize_entry("type", message_type)?;
    map.serialize_entry(key, payload)?;
    for (k, v) in extra {
        if k != "type" && k != key {
            map.serialize_entry(k, v)?;
        }
    }
    map.end()
}

impl Serialize for AirbyteMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Record { record, extra } => {
                serialize_envelope(s, "RECORD", "record", record, extra)
            }
            Self::State { state, extra } => serialize_envelope(s, "STATE", "state", state, extra),
            Self::Log { log, extra } => serialize_envelope(s, "LOG", "log", log, extra),
            Self::Spec { spec, extra } => serialize_envelope(s, "SPEC", "spec", spec, extra),
            Self::ConnectionStatus {
                connection_status,
                extra,
            } => serialize_envelope(
                s,
                "CONNECTION_STATUS",
                "connectionStatus",
                connection_status,
                extra,
            ),
            Self::Catalog { catalog, extra } => {
                serialize_envelope(s, "CATALOG", "catalog", catalog, extra)
            }
            Self::Trace { trace, extra } => serialize_envelope(s, "TRACE", "trace", trace, extra),
            Self::Control { control, extra } => {
                serialize_envelope(s, "CONTROL", "control", control, extra)
            }
            Self::DestinationCatalog {
                destination_catalog,
                extra,
            } => serialize_envelope(
                s,
                "DESTINATION_CATALOG",
                "destination_catalog",
                destination_catalog,
                extra,
            ),
            Self::Other {
                message_type,
                fields,
            } => {
                let mut map = s.serialize_map(Some(1 + fields.len()))?;
                map.serialize_entry("type", message_type)?;
                for (k, v) in fields {
                    if k != "type" {
                        map.serialize_entry(k, v)?;
                    }
                }
                map.end()
            }
        }
    }
}

/// The input shape of the envelope: every payload key, each optional (and `null` tolerated).
#[derive(Deserialize)]
struct Wire {
    #[serde(rename = "type")]
    message_type: String,
    #[serde(default)]
    record: Option<Box<AirbyteRecordMessage>>,
    #[serde(default)]
    state: Option<Box<AirbyteStateMessage>>,
    #[serde(default)]
    log: Option<Box<AirbyteLogMessage>>,
    #[serde(default)]
    spec: Option<Box<ConnectorSpecification>>,
    #[serde(rename = "connectionStatus", default)]
    connection_status: Option<Box<AirbyteConnectionStatus>>,
    #[serde(default)]
    catalog: Option<Box<AirbyteCatalog>>,
    #[serde(default)]
    trace: Option<Box<AirbyteTraceMessage>>,
    #[serde(default)]
    control: Option<Box<AirbyteControlMessage>>,
    #[serde(default)]
    destination_catalog: Option<Box<DestinationCatalog>>,
    #[serde(flatten, deserialize_with = "extra_fields")]
    extra: JsonObject,
}

/// Moves a payload that does not belong to the message's type into the unknown fields, so that
/// nothing the producer sent is lost.
fn stash<T: Serialize>(
    extra: &mut JsonObject,
    key: &str,
    payload: Option<T>,
) -> Result<(), serde_json::Error> {
    if let Some(payload) = payload {
        extra.insert(key.to_owned(), serde_json::to_value(payload)?);
    }
    Ok(())
}

impl Wire {
    /// Stashes every payload still present into `extra` and returns it.
    fn into_extra(self) -> Result<JsonObject, serde_json::Error> {
        let mut extra = self.extra;
        stash(&mut extra, "record", self.record)?;
        stash(&mut extra, "state", self.state)?;
        stash(&mut extra, "log", self.log)?;
        stash(&mut extra, "spec", self.spec)?;
        stash(&mut extra, "connectionStatus", self.connection_status)?;
        stash(&mut extra, "catalog", self.catalog)?;
        stash(&mut extra, "trace", self.trace)?;
        stash(&mut extra, "control", self.control)?;
        stash(&mut extra, "destination_catalog", self.destination_catalog)?;
        Ok(extra)
    }
}

impl<'de> Deserialize<'de> for AirbyteMessage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut wire = Wire::deserialize(deserializer)?;
        fn missing<E: serde::de::Error>(message_type: &str, key: &str) -> E {
            E::custom(format_args!(
                "a {message_type} message needs a `{key}` object"
            ))
        }
        let message_type = std::mem::take(&mut wire.message_type);
        macro_rules! known {
            ($variant:ident, $field:ident, $key:literal) => {{
                let $field = wire
                    .$field
                    .take()
                    .ok_or_else(|| missing::<D::Error>(&message_type, $key))?;
                let extra = wire.into_extra().map_err(D::Error::custom)?;
                Ok(Self::$variant { $field, extra })
            }};
        }
        match message_type.as_str() {
            "RECORD" => known!(Record, record, "record"),
            "STATE" => known!(State, state, "state"),
            "LOG" => known!(Log, log, "log"),
            "SPEC" => known!(Spec, spec, "spec"),
            "CONNECTION_STATUS" => known!(ConnectionStatus, connection_status, "connectionStatus"),
            "CATALOG" => known!(Catalog, catalog, "catalog"),
            "TRACE" => known!(Trace, trace, "trace"),
            "CONTROL" => known!(Control, control, "control"),
            "DESTINATION_CATALOG" => {
                known!(
                    DestinationCatalog,
                    destination_catalog,
                    "destination_catalog"
                )
            }
            _ => {
                let fields = wire.into_extra().map_err(D::Error::custom)?;
                Ok(Self::Other {
                    message_type,
                    fields,
                })
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Constructors
// ---------------------------------------------------------------------------------------------

macro_rules! from_payload {
    ($($payload:ty => $variant:ident { $field:ident }),* $(,)?) => {$(
        impl From<$payload> for AirbyteMessage {
            fn from($field: $payload) -> Self {
                Self::$variant { $field: Box::new($field), extra: JsonObject::new() }
            }
        }
    )*};
}

from_payload! {
    AirbyteRecordMessage => Record { record },
    AirbyteStateMessage => State { state },
    AirbyteLogMessage => Log { log },
    ConnectorSpecification => Spec { spec },
    AirbyteConnectionStatus => ConnectionStatus { connection_status },
    AirbyteCatalog => Catalog { catalog },
    AirbyteTraceMessage => Trace { trace },
    AirbyteControlMessage => Control { control },
    DestinationCatalog => DestinationCatalog { destination_catalog },
}

/// Epoch milliseconds as the `number` the TRACE and CONTROL schemas ask for.
fn millis_f64(clock: &dyn Clock) -> f64 {
    // Exact for any date before the year 287 396 (2^53 ms).
    clock.now_millis() as f64
}

fn trace(trace_type: TraceType, clock: &dyn Clock) -> AirbyteTraceMessage {
    AirbyteTraceMessage {
        trace_type,
        emitted_at: millis_f64(clock),
        error: None,
        estimate: None,
        stream_status: None,
        analytics: None,
        extra: JsonObject::new(),
    }
}

impl AirbyteMessage {
    /// A RECORD of `stream` stamped with the clock's time.
    pub fn record(
        stream: impl Into<String>,
        namespace: Option<String>,
        data: JsonObject,
        clock: &dyn Clock,
    ) -> Self {
        AirbyteRecordMessage {
            stream: stream.into(),
            namespace,
            data,
            emitted_at: clock.now_millis(),
            meta: None,
            file_reference: None,
            extra: JsonObject::new(),
        }
        .into()
    }

    /// A per-stream STATE carrying `sourceStats.recordCount` = the records of this stream emitted
    /// since its previous state.
    pub fn state_stream(
        stream: StreamDescriptor,
        stream_state: Value,
        source_record_count: u64,
    ) -> Self {
        AirbyteStateMessage {
            state_type: Some(StateType::Stream),
            stream: Some(AirbyteStreamState {
                stream_descriptor: stream,
                stream_state: Some(stream_state),
                extra: JsonObject::new(),
            }),
            source_stats: Some(AirbyteStateStats::records(source_record_count)),
            ..AirbyteStateMessage::default()
        }
        .into()
    }

    /// A GLOBAL STATE with a shared state and per-stream states.
    pub fn state_global(
        shared_state: Option<Value>,
        stream_states: Vec<AirbyteStreamState>,
        source_record_count: u64,
    ) -> Self {
        AirbyteStateMessage {
            state_type: Some(StateType::Global),
            global: Some(AirbyteGlobalState {
                shared_state,
                stream_states,
                extra: JsonObject::new(),
            }),
            source_stats: Some(AirbyteStateStats::records(source_record_count)),
            ..AirbyteStateMessage::default()
        }
        .into()
    }

    /// A LOG line.
    pub fn log(level: LogLevel, message: impl Into<String>) -> Self {
        AirbyteLogMessage {
            level,
            message: message.into(),
            stack_trace: None,
            extra: JsonObject::new(),
        }
        .into()
    }

    /// A TRACE error: `message` is for the user, `internal_message` the technical detail.
    pub fn trace_error(
        failure_type: FailureType,
        message: impl Into<String>,
        internal_message: Option<String>,
        stream: Option<StreamDescriptor>,
        clock: &dyn Clock,
    ) -> Self {
        AirbyteTraceMessage {
            error: Some(AirbyteErrorTraceMessage {
                message: message.into(),
                internal_message,
                stack_trace: None,
                failure_type: Some(failure_type),
                stream_descriptor: stream,
                extra: JsonObject::new(),
            }),
            ..trace(TraceType::Error, clock)
        }
        .into()
    }

    /// A TRACE stream status.
    pub fn stream_status(
        stream: StreamDescriptor,
        status: StreamStatus,
        clock: &dyn Clock,
    ) -> Self {
        AirbyteTraceMessage {
            stream_status: Some(AirbyteStreamStatusTraceMessage {
                stream_descriptor: stream,
                status,
                reasons: None,
                extra: JsonObject::new(),
            }),
            ..trace(TraceType::StreamStatus, clock)
        }
        .into()
    }

    /// A `RUNNING` stream status with a `RATE_LIMITED` reason (quota reset in epoch ms, if known).
    pub fn stream_rate_limited(
        stream: StreamDescriptor,
        quota_reset: Option<i64>,
        clock: &dyn Clock,
    ) -> Self {
        AirbyteTraceMessage {
            stream_status: Some(AirbyteStreamStatusTraceMessage {
                stream_descriptor: stream,
                status: StreamStatus::Running,
                reasons: Some(vec![StreamStatusReason {
                    reason_type: StreamStatusReasonType::RateLimited,
                    rate_limited: Some(RateLimitedReason {
                        quota_reset,
                        extra: JsonObject::new(),
                    }),
                    extra: JsonObject::new(),
                }]),
                extra: JsonObject::new(),
            }),
            ..trace(TraceType::StreamStatus, clock)
        }
        .into()
    }

    /// A per-stream TRACE estimate.
    pub fn estimate(
        stream: StreamDescriptor,
        row_estimate: Option<i64>,
        byte_estimate: Option<i64>,
        clock: &dyn Clock,
    ) -> Self {
        AirbyteTraceMessage {
            estimate: Some(AirbyteEstimateTraceMessage {
                name: stream.name,
                estimate_type: EstimateType::Stream,
                namespace: stream.namespace,
                row_estimate,
                byte_estimate,
                extra: JsonObject::new(),
            }),
            ..trace(TraceType::Estimate, clock)
        }
        .into()
    }

    /// A TRACE analytics event.
    pub fn analytics(
        event_type: impl Into<String>,
        value: Option<String>,
        clock: &dyn Clock,
    ) -> Self {
        AirbyteTraceMessage {
            analytics: Some(AirbyteAnalyticsTraceMessage {
                event_type: event_type.into(),
                value,
                extra: JsonObject::new(),
            }),
            ..trace(TraceType::Analytics, clock)
        }
        .into()
    }

    /// A CONTROL message asking the platform to store `config` as the connector's complete new
    /// configuration (e.g. after a refresh-token rotation).
    pub fn control_config(config: JsonObject, clock: &dyn Clock) -> Self {
        AirbyteControlMessage {
            control_type: ControlType::ConnectorConfig,
            emitted_at: millis_f64(clock),
            connector_config: Some(AirbyteControlConnectorConfigMessage {
                config,
                extra: JsonObject::new(),
            }),
            extra: JsonObject::new(),
        }
        .into()
    }

    /// A CONNECTION_STATUS.
    pub fn connection_status(status: ConnectionStatus, message: Option<String>) -> Self {
        AirbyteConnectionStatus {
            status,
            message,
            extra: JsonObject::new(),
        }
        .into()
    }

    /// A SPEC.
    pub fn spec(spec: ConnectorSpecification) -> Self {
        spec.into()
    }

    /// A CATALOG.
    pub fn catalog(catalog: AirbyteCatalog) -> Self {
        catalog.into()
    }

    /// A DESTINATION_CATALOG.
    pub fn destination_catalog(catalog: DestinationCatalog) -> Self {
        catalog.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use serde_json::json;

    /// One fully populated example of every message type, as it appears on the wire.
    fn examples() -> Vec<Value> {
        vec![
            json!({"type": "RECORD", "record": {
                "stream": "Account", "namespace": "sf", "data": {"Id": "001", "n": 1.5, "o": {"a": [1]}},
                "emitted_at": 1_700_000_000_123_i64,
                "meta": {"changes": [
                    {"field": "Description", "change": "TRUNCATED", "reason": "SOURCE_FIELD_SIZE_LIMITATION"},
                    {"field": "Body", "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}
                ]},
                "file_reference": {"staging_file_url": "/s/f", "source_file_relative_path": "f",
                                   "file_size_bytes": 12}
            }}),
            json!({"type": "STATE", "state": {
                "type": "STREAM",
                "stream": {"stream_descriptor": {"name": "Account", "namespace": "sf"},
                           "stream_state": {"SystemModstamp": "2024-01-01T00:00:00.000Z"}},
                "sourceStats": {"recordCount": 3.0},
                "destinationStats": {"recordCount": 2.0, "rejectedRecordCount": 1.0}
            }}),
            json!({"type": "STATE", "state": {
                "type": "GLOBAL",
                "global": {"shared_state": {"lsn": 5}, "stream_states": [
                    {"stream_descriptor": {"name": "A"}, "stream_state": {"c": 1}},
                    {"stream_descriptor": {"name": "B"}}
                ]},
                "sourceStats": {"recordCount": 10.0}
            }}),
            json!({"type": "STATE", "state": {"type": "LEGACY", "data": {"A": {"c": 1}}}}),
            json!({"type": "LOG", "log": {"level": "WARN", "message": "slow", "stack_trace": "at x"}}),
            json!({"type": "SPEC", "spec": {
                "documentationUrl": "https://docs.example/s", "changelogUrl": "https://docs.example/c",
                "connectionSpecification": {"type": "object", "required": ["client_id"],
                    "properties": {"client_id": {"type": "string"},
                                   "client_secret": {"type": "string", "airbyte_secret": true}}},
                "supportsIncremental": true, "supportsNormalization": false, "supportsDBT": false,
                "supported_destination_sync_modes": ["append", "overwrite", "append_dedup", "update", "soft_delete"],
                "authSpecification": {"auth_type": "oauth2.0"},
                "advanced_auth": {
                    "auth_flow_type": "oauth2.0", "predicate_key": ["auth_type"], "predicate_value": "Client",
                    "oauth_config_specification": {
                        "oauth_user_input_from_connector_config_specification": {"type": "object",
                            "properties": {"is_sandbox": {"type": "boolean", "path_in_connector_config": ["is_sandbox"]}}},
                        "oauth_connector_input_specification": {
                            "consent_url": "https://{{subdomain}}.salesforce.com/services/oauth2/authorize?{{client_id_param}}",
                            "scope": "api refresh_token",
                            "access_token_url": "https://login.salesforce.com/services/oauth2/token",
                            "access_token_headers": {"Content-Type": "application/x-www-form-urlencoded"},
                            "access_token_params": {"grant_type": "authorization_code"},
                            "extract_output": ["refresh_token"],
                            "state": {"min": 7, "max": 27},
                            "client_id_key": "client_id", "client_secret_key": "client_secret",
                            "scope_key": "scope", "state_key": "state", "auth_code_key": "code",
                            "redirect_uri_key": "redirect_uri", "token_expiry_key": "expires_in",
                            "access_token_pkce": {"code_challenge_method": "S256"}
                        },
                        "complete_oauth_output_specification": {"type": "object", "properties":
                            {"refresh_token": {"type": "string", "path_in_connector_config": ["refresh_token"]}}},
                        "complete_oauth_server_input_specification": {"type": "object", "properties":
                            {"client_id": {"type": "string"}}},
                        "complete_oauth_server_output_specification": {"type": "object", "properties":
                            {"client_id": {"type": "string", "path_in_connector_config": ["client_id"]}}}
                    }
                },
                "protocol_version": "0.2.0"
            }}),
            json!({"type": "CONNECTION_STATUS", "connectionStatus": {"status": "FAILED", "message": "bad token"}}),
            json!({"type": "CATALOG", "catalog": {"streams": [{
                "name": "Account", "json_schema": {"type": "object", "properties": {"Id": {"type": "string"}}},
                "supported_sync_modes": ["full_refresh", "incremental"], "source_defined_cursor": true,
                "default_cursor_field": ["SystemModstamp"], "source_defined_primary_key": [["Id"]],
                "namespace": "sf", "is_resumable": true, "is_file_based": false
            }]}}),
            json!({"type": "TRACE", "trace": {"type": "ERROR", "emitted_at": 1_700_000_000_123.0,
                "error": {"message": "Login failed", "internal_message": "invalid_grant", "stack_trace": "x",
                          "failure_type": "config_error", "stream_descriptor": {"name": "Account"}}}}),
            json!({"type": "TRACE", "trace": {"type": "ESTIMATE", "emitted_at": 1.5,
                "estimate": {"name": "Account", "type": "STREAM", "namespace": "sf",
                             "row_estimate": 100, "byte_estimate": 2048}}}),
            json!({"type": "TRACE", "trace": {"type": "STREAM_STATUS", "emitted_at": 2.0,
                "stream_status": {"stream_descriptor": {"name": "Account", "namespace": "sf"}, "status": "RUNNING",
                                  "reasons": [{"type": "RATE_LIMITED", "rate_limited": {"quota_reset": 1_700_000_100_000_i64}}]}}}),
            json!({"type": "TRACE", "trace": {"type": "ANALYTICS", "emitted_at": 3.0,
                "analytics": {"type": "bulk-api-used", "value": "2"}}}),
            json!({"type": "CONTROL", "control": {"type": "CONNECTOR_CONFIG", "emitted_at": 4.0,
                "connectorConfig": {"config": {"client_id": "x", "refresh_token": "new"}}}}),
            json!({"type": "DESTINATION_CATALOG", "destination_catalog": {"operations": [
                {"object_name": "Contact", "sync_mode": "append_dedup", "json_schema": {"type": "object"},
                 "matching_keys": [["Email__c"]]},
                {"object_name": "Contact", "sync_mode": "soft_delete", "json_schema": {"type": "object"}}
            ]}}),
        ]
    }

    fn round_trip(input: &Value) -> Value {
        let message: AirbyteMessage = serde_json::from_value(input.clone()).unwrap();
        serde_json::to_value(&message).unwrap()
    }

    #[test]
    fn every_message_type_round_trips() {
        let mut seen = std::collections::BTreeSet::new();
        for example in examples() {
            let message: AirbyteMessage = serde_json::from_str(&example.to_string()).unwrap();
            assert!(
                !matches!(message, AirbyteMessage::Other { .. }),
                "{example}"
            );
            seen.insert(message.message_type().to_owned());
            assert_eq!(serde_json::to_value(&message).unwrap(), example);
            // And through text, which is what the codec sees.
            let text = serde_json::to_string(&message).unwrap();
            let again: AirbyteMessage = serde_json::from_str(&text).unwrap();
            assert_eq!(again, message);
        }
        let all: std::collections::BTreeSet<String> =
            MESSAGE_TYPES.iter().map(|t| (*t).to_owned()).collect();
        assert_eq!(seen, all);
    }

    #[test]
    fn every_change_reason_round_trips() {
        let reasons = [
            "SOURCE_RECORD_SIZE_LIMITATION",
            "DESTINATION_RECORD_SIZE_LIMITATION",
            "PLATFORM_RECORD_SIZE_LIMITATION",
            "SOURCE_FIELD_SIZE_LIMITATION",
            "DESTINATION_FIELD_SIZE_LIMITATION",
            "PLATFORM_FIELD_SIZE_LIMITATION",
            "SOURCE_SERIALIZATION_ERROR",
            "DESTINATION_SERIALIZATION_ERROR",
            "PLATFORM_SERIALIZATION_ERROR",
            "SOURCE_RETRIEVAL_ERROR",
            "DESTINATION_TYPECAST_ERROR",
        ];
        for reason in reasons {
            let v = json!({"field": "f", "change": "NULLED", "reason": reason});
            let change: RecordChange = serde_json::from_value(v.clone()).unwrap();
            assert_eq!(serde_json::to_value(change).unwrap(), v);
        }
    }

    #[test]
    fn state_id_and_unknown_fields_survive_an_echo() {
        let input = r#"{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":{"name":"Account"},"stream_state":{"c":"2024"}},"sourceStats":{"recordCount":5.0},"id":7,"foo":{"x":1}}}"#;
        let message: AirbyteMessage = serde_json::from_str(input).unwrap();
        let AirbyteMessage::State { state, .. } = &message else {
            panic!("not a state: {message:?}");
        };
        assert_eq!(state.extra.get("id"), Some(&json!(7)));
        let output = serde_json::to_string(&message).unwrap();
        assert!(output.contains(r#""id":7"#), "{output}");
        assert!(!output.contains("7.0"), "{output}");
        let input_value: Value = serde_json::from_str(input).unwrap();
        let output_value: Value = serde_json::from_str(&output).unwrap();
        assert_eq!(output_value, input_value);
    }

    #[test]
    fn destination_adds_stats_to_an_echoed_state() {
        let input = r#"{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":{"name":"A"}},"sourceStats":{"recordCount":3.0},"id":12}}"#;
        let mut message: AirbyteMessage = serde_json::from_str(input).unwrap();
        if let AirbyteMessage::State { state, .. } = &mut message {
            state.destination_stats = Some(AirbyteStateStats {
                record_count: Some(2.0),
                rejected_record_count: Some(1.0),
                extra: JsonObject::new(),
            });
        }
        let output = serde_json::to_string(&message).unwrap();
        assert!(
            output.contains(r#""destinationStats":{"recordCount":2.0,"rejectedRecordCount":1.0}"#),
            "{output}"
        );
        assert!(output.contains(r#""id":12"#), "{output}");
    }

    #[test]
    fn pyairbyte_nulls_are_accepted_and_never_printed() {
        // What PyAirbyte pipes into a destination: every envelope key present, unused ones null,
        // and `global_` twice inside the state.
        let lines = [
            r#"{"type":"RECORD","log":null,"spec":null,"connectionStatus":null,"catalog":null,"record":{"namespace":null,"stream":"A","data":{"x":null},"emitted_at":1700000000,"meta":null,"file_reference":null},"state":null,"trace":null,"control":null,"destination_catalog":null}"#,
            r#"{"type":"STATE","record":null,"state":{"type":"STREAM","stream":{"stream_descriptor":{"name":"A","namespace":null},"stream_state":{"c":1}},"global_":null,"data":null,"sourceStats":{"recordCount":1.0,"rejectedRecordCount":null},"destinationStats":null,"global_":null},"log":null}"#,
            r#"{"type":"TRACE","trace":{"type":"STREAM_STATUS","emitted_at":1.0,"error":null,"estimate":null,"stream_status":{"stream_descriptor":{"name":"A","namespace":null},"status":"COMPLETE","reasons":null},"analytics":null},"record":null}"#,
            r#"{"type":"LOG","log":{"level":"INFO","message":"m","stack_trace":null},"trace":null}"#,
            r#"{"type":"CATALOG","catalog":{"streams":[{"name":"A","json_schema":{},"supported_sync_modes":["full_refresh"],"source_defined_cursor":null,"default_cursor_field":null,"source_defined_primary_key":null,"namespace":null,"is_resumable":null,"is_file_based":null}]}}"#,
        ];
        for line in lines {
            let message: AirbyteMessage = serde_json::from_str(line).unwrap();
            let output = serde_json::to_string(&message).unwrap();
            // The only null allowed on output is inside record data (opaque content).
            let without_data = output.replace(r#"{"x":null}"#, "{}");
            assert!(!without_data.contains("null"), "{output}");
            assert!(!output.contains("global_"), "{output}");
        }
    }

    #[test]
    fn pyairbyte_global_underscore_is_read_as_global() {
        let input = r#"{"type":"GLOBAL","global_":{"shared_state":{"lsn":1},"stream_states":[]},"global_":null}"#;
        // Duplicate keys: the last wins, and it is null, so nothing is read.
        let state: AirbyteStateMessage = serde_json::from_str(input).unwrap();
        assert!(state.global.is_none());
        let input = r#"{"type":"GLOBAL","global":null,"global_":{"shared_state":{"lsn":1},"stream_states":[]}}"#;
        let state: AirbyteStateMessage = serde_json::from_str(input).unwrap();
        assert_eq!(state.global.unwrap().shared_state, Some(json!({"lsn": 1})));
        assert!(state.extra.is_empty());
    }

    #[test]
    fn unknown_type_is_kept_as_other() {
        let input = json!({"type": "HEARTBEAT", "heartbeat": {"at": 1}, "n": 2});
        let message: AirbyteMessage = serde_json::from_value(input.clone()).unwrap();
        assert_eq!(message.message_type(), "HEARTBEAT");
        assert!(matches!(message, AirbyteMessage::Other { .. }));
        assert_eq!(serde_json::to_value(&message).unwrap(), input);
    }

    #[test]
    fn envelope_and_payload_unknown_fields_are_kept() {
        let input = json!({"type": "RECORD", "x_envelope": [1, 2],
            "record": {"stream": "A", "data": {}, "emitted_at": 5, "x_record": "y"}});
        assert_eq!(round_trip(&input), input);
        // A payload that does not belong to the type is not lost either.
        let input = json!({"type": "LOG", "log": {"level": "INFO", "message": "m"},
            "trace": {"type": "ANALYTICS", "emitted_at": 1.0, "analytics": {"type": "t"}}});
        assert_eq!(round_trip(&input), input);
    }

    #[test]
    fn missing_type_or_payload_is_an_error() {
        let err = serde_json::from_str::<AirbyteMessage>(r#"{"log":null,"n":1}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `type`"), "{err}");
        let err =
            serde_json::from_str::<AirbyteMessage>(r#"{"type":"STATE","state":null}"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("a STATE message needs a `state` object"),
            "{err}"
        );
        let err = serde_json::from_str::<AirbyteMessage>(
            r#"{"type":"RECORD","record":{"stream":"A","data":[],"emitted_at":1}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("expected a map"), "{err}");
    }

    #[test]
    fn record_emitted_at_is_an_integer_trace_emitted_at_a_number() {
        let clock = FixedClock(1_700_000_000_123);
        let record = AirbyteMessage::record("A", None, JsonObject::new(), &clock);
        assert_eq!(
            serde_json::to_string(&record).unwrap(),
            r#"{"type":"RECORD","record":{"stream":"A","data":{},"emitted_at":1700000000123}}"#
        );
        let status = AirbyteMessage::stream_status(
            StreamDescriptor::new("A", None),
            StreamStatus::Started,
            &clock,
        );
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            r#"{"type":"TRACE","trace":{"type":"STREAM_STATUS","emitted_at":1700000000123.0,"stream_status":{"stream_descriptor":{"name":"A"},"status":"STARTED"}}}"#
        );
        // A float emitted_at on input (PyAirbyte cache replay) is tolerated.
        let lenient: AirbyteMessage = serde_json::from_str(
            r#"{"type":"RECORD","record":{"stream":"A","data":{},"emitted_at":1700000000.5}}"#,
        )
        .unwrap();
        let AirbyteMessage::Record { record, .. } = lenient else {
            panic!()
        };
        assert_eq!(record.emitted_at, 1_700_000_000);
    }

    #[test]
    fn stats_are_doubles_on_the_wire() {
        let state = AirbyteMessage::state_stream(
            StreamDescriptor::new("A", Some("ns".into())),
            json!({"c": 1}),
            3,
        );
        assert_eq!(
            serde_json::to_string(&state).unwrap(),
            r#"{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":{"name":"A","namespace":"ns"},"stream_state":{"c":1}},"sourceStats":{"recordCount":3.0}}}"#
        );
        let parsed: AirbyteStateStats =
            serde_json::from_str(r#"{"recordCount":3,"rejectedRecordCount":0}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&parsed).unwrap(),
            r#"{"recordCount":3.0,"rejectedRecordCount":0.0}"#
        );
    }

    #[test]
    fn constructors_build_the_documented_shapes() {
        let clock = FixedClock(10);
        let a = StreamDescriptor::new("A", None);
        let cases = [
            (
                AirbyteMessage::log(LogLevel::Error, "boom"),
                json!({"type": "LOG", "log": {"level": "ERROR", "message": "boom"}}),
            ),
            (
                AirbyteMessage::trace_error(
                    FailureType::TransientError,
                    "try later",
                    Some("503".into()),
                    Some(a.clone()),
                    &clock,
                ),
                json!({"type": "TRACE", "trace": {"type": "ERROR", "emitted_at": 10.0, "error": {
                    "message": "try later", "internal_message": "503",
                    "failure_type": "transient_error", "stream_descriptor": {"name": "A"}}}}),
            ),
            (
                AirbyteMessage::stream_rate_limited(a.clone(), Some(99), &clock),
                json!({"type": "TRACE", "trace": {"type": "STREAM_STATUS", "emitted_at": 10.0,
                    "stream_status": {"stream_descriptor": {"name": "A"}, "status": "RUNNING",
                        "reasons": [{"type": "RATE_LIMITED", "rate_limited": {"quota_reset": 99}}]}}}),
            ),
            (
                AirbyteMessage::estimate(a.clone(), Some(5), None, &clock),
                json!({"type": "TRACE", "trace": {"type": "ESTIMATE", "emitted_at": 10.0,
                    "estimate": {"name": "A", "type": "STREAM", "row_estimate": 5}}}),
            ),
            (
                AirbyteMessage::analytics("bulk", None, &clock),
                json!({"type": "TRACE", "trace": {"type": "ANALYTICS", "emitted_at": 10.0,
                    "analytics": {"type": "bulk"}}}),
            ),
            (
                AirbyteMessage::control_config(
                    json!({"refresh_token": "t"}).as_object().unwrap().clone(),
                    &clock,
                ),
                json!({"type": "CONTROL", "control": {"type": "CONNECTOR_CONFIG", "emitted_at": 10.0,
                    "connectorConfig": {"config": {"refresh_token": "t"}}}}),
            ),
            (
                AirbyteMessage::connection_status(ConnectionStatus::Succeeded, None),
                json!({"type": "CONNECTION_STATUS", "connectionStatus": {"status": "SUCCEEDED"}}),
            ),
            (
                AirbyteMessage::state_global(None, vec![], 0),
                json!({"type": "STATE", "state": {"type": "GLOBAL", "global": {"stream_states": []},
                    "sourceStats": {"recordCount": 0.0}}}),
            ),
        ];
        for (message, expected) in cases {
            assert_eq!(serde_json::to_value(&message).unwrap(), expected);
            assert_eq!(round_trip(&expected), expected);
        }
    }

    #[test]
    fn unknown_enum_values_on_input_do_not_fail_the_message() {
        let input = json!({"type": "TRACE", "trace": {"type": "FUTURE_KIND", "emitted_at": 1.0}});
        let message: AirbyteMessage = serde_json::from_value(input).unwrap();
        let AirbyteMessage::Trace { trace, .. } = message else {
            panic!()
        };
        assert_eq!(trace.trace_type, TraceType::Unknown);
        let stream: ConfiguredAirbyteStream = serde_json::from_value(json!({
            "stream": {"name": "A", "json_schema": {}, "supported_sync_modes": ["incremental"]},
            "sync_mode": "incremental", "destination_sync_mode": "overwrite_dedup"
        }))
        .unwrap();
        assert_eq!(stream.destination_sync_mode, DestinationSyncMode::Unknown);
    }
}
