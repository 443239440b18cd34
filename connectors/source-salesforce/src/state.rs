//! Per-stream state: what we write, and every form we accept (ours and Airbyte's).
//!
//! **What we write** (per-stream `STREAM` states): `{"<cursor field>": "<timestamp>"}`, e.g.
//! `{"SystemModstamp": "2024-01-02T03:04:05.000Z"}`, meaning "every row whose cursor is at or
//! before this value, up to the end of the range read, has been emitted". This is also the legacy
//! form Airbyte's connector migrates on read, so a connection can move back to it without a
//! reset. Full-refresh streams write Airbyte's `{"__ab_no_cursor_state_message": true}`.
//! With `formula_refresh_schedule` set, a stream that selects formula fields also keeps
//! `"formula_refreshed_at": "<RFC 3339>"` ([`REFRESHED_KEY`], see `crate::formula`) next to the
//! cursor; Airbyte's connector looks only at the cursor key, so it still reads the state.
//!
//! **What we read**, from `STREAM` states, a `GLOBAL` state's `stream_states`, a `LEGACY`
//! state's `data` or a pre-list state object (stream name → state):
//! - ours / Airbyte's legacy `{"<cursor field>": "<timestamp>"}`;
//! - Airbyte's concurrent form `{"state_type": "date-range", "slices": [{"start", "end", ...}]}`:
//!   the resume point is the end of the first contiguous run of slices (later holes are read
//!   again rather than skipped), or nothing if the configured start date lies before it;
//! - `{"__ab_no_cursor_state_message": true}` and `{}`: no resume point.
//!
//! An unrecognisable state is never an error that loses data: the stream is read from the start
//! date and a WARN says why.

use std::collections::BTreeMap;

use airbyte_protocol::{AirbyteStateMessage, InputState, StateType};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use crate::convert::{format_timestamp, parse_timestamp};
use crate::discovery::CURSOR_CANDIDATES;

/// The key Airbyte's full-refresh streams write.
pub const NO_CURSOR_KEY: &str = "__ab_no_cursor_state_message";

/// The key holding when a stream's formula fields were last refreshed (`crate::formula`).
pub const REFRESHED_KEY: &str = "formula_refreshed_at";

/// When the stream's formula fields were last refreshed, if its state says so (a key that is
/// not a timestamp counts as absent, with a WARN).
pub fn refreshed_at(state: &Value) -> Option<DateTime<Utc>> {
    let value = state.get(REFRESHED_KEY)?;
    let parsed = value.as_str().and_then(parse_timestamp);
    if parsed.is_none() {
        tracing::warn!(%value, "the state's {REFRESHED_KEY} is not a timestamp; ignoring it");
    }
    parsed
}

/// Records in a state object when the stream's formula fields were last refreshed.
pub fn set_refreshed_at(state: &mut Value, at: DateTime<Utc>) {
    if let Value::Object(object) = state {
        object.insert(
            REFRESHED_KEY.to_owned(),
            Value::String(format_timestamp(at)),
        );
    }
}

/// The state of every stream in the input, by stream name (namespaces are not used by this
/// source). Later entries for the same stream win.
pub fn stream_states(input: &InputState) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    match input {
        InputState::Legacy(object) => add_legacy(&mut out, object),
        InputState::Messages(messages) => {
            for message in messages {
                add_message(&mut out, message);
            }
        }
    }
    out
}

fn add_legacy(out: &mut BTreeMap<String, Value>, object: &serde_json::Map<String, Value>) {
    for (name, state) in object {
        if state.is_object() {
            out.insert(name.clone(), state.clone());
        }
    }
}

fn add_message(out: &mut BTreeMap<String, Value>, message: &AirbyteStateMessage) {
    let mut streams = Vec::new();
    if let Some(stream) = &message.stream {
        streams.push(stream);
    }
    if let Some(global) = &message.global {
        streams.extend(global.stream_states.iter());
    }
    for s in streams {
        if let Some(state) = &s.stream_state {
            out.insert(s.stream_descriptor.name.clone(), state.clone());
        }
    }
    let legacy = matches!(message.state_type, Some(StateType::Legacy) | None);
    if legacy && let Some(Value::Object(data)) = &message.data {
        add_legacy(out, data);
    }
}

/// Where an incremental stream resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// No usable state: read from the configured start date.
    FromStart,
    /// Everything before this instant was read (the lookback is applied by the caller).
    After(DateTime<Utc>),
}

/// Interprets a stream's state for `cursor_field`, against the configured `start_date`.
pub fn resume_point(state: &Value, cursor_field: &str, start_date: DateTime<Utc>) -> Resume {
    let Some(object) = state.as_object() else {
        tracing::warn!("stream state is not an object; reading from the start date");
        return Resume::FromStart;
    };
    if object.get("state_type").and_then(Value::as_str) == Some("date-range")
        || object.contains_key("slices")
    {
        return date_range_resume(object.get("slices"), start_date);
    }
    let value = object
        .get(cursor_field)
        .or_else(|| CURSOR_CANDIDATES.iter().find_map(|c| object.get(*c)));
    match value {
        Some(Value::String(text)) => match parse_timestamp(text) {
            Some(ts) => Resume::After(ts),
            None => {
                tracing::warn!(value = %text, "stream state cursor is not a timestamp; reading from the start date");
                Resume::FromStart
            }
        },
        Some(other) => {
            tracing::warn!(value = %other, "stream state cursor is not a string; reading from the start date");
            Resume::FromStart
        }
        None => {
            if !object.is_empty() && !object.contains_key(NO_CURSOR_KEY) {
                tracing::warn!(
                    cursor_field,
                    "stream state has no value for the cursor field; reading from the start date"
                );
            }
            Resume::FromStart
        }
    }
}

fn date_range_resume(slices: Option<&Value>, start_date: DateTime<Utc>) -> Resume {
    let mut ranges: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for slice in slices.and_then(Value::as_array).into_iter().flatten() {
        let get = |k: &str| {
            slice
                .get(k)
                .and_then(Value::as_str)
                .and_then(parse_timestamp)
        };
        match (get("start"), get("end")) {
            (Some(start), Some(end)) if start <= end => ranges.push((start, end)),
            _ => {
                tracing::warn!(%slice, "ignoring an unreadable date-range slice in the stream state");
            }
        }
    }
    ranges.sort();
    let Some(&(first_start, mut end)) = ranges.first() else {
        return Resume::FromStart;
    };
    if start_date < first_start {
        // The configured start is earlier than what the state covers: read it all again.
        return Resume::FromStart;
    }
    // Airbyte merges slices that touch within a millisecond.
    for &(s, e) in &ranges[1..] {
        if s <= end + TimeDelta::milliseconds(1) {
            end = end.max(e);
        } else {
            break;
        }
    }
    Resume::After(end)
}

/// The state we write for an incremental stream.
pub fn cursor_state(cursor_field: &str, value: DateTime<Utc>) -> Value {
    json!({ cursor_field: format_timestamp(value) })
}

/// The state we write for a full-refresh stream.
pub fn full_refresh_state() -> Value {
    json!({ NO_CURSOR_KEY: true })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ts(s: &str) -> DateTime<Utc> {
        parse_timestamp(s).unwrap()
    }

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
    }

    fn parse_input(v: Value) -> InputState {
        match v {
            Value::Object(o) => InputState::Legacy(o),
            Value::Array(items) => InputState::Messages(
                items
                    .into_iter()
                    .map(|i| serde_json::from_value(i).unwrap())
                    .collect(),
            ),
            _ => InputState::default(),
        }
    }

    #[test]
    fn our_form_round_trips() {
        let state = cursor_state("SystemModstamp", ts("2024-01-02T03:04:05.006Z"));
        assert_eq!(state, json!({"SystemModstamp": "2024-01-02T03:04:05.006Z"}));
        assert_eq!(
            resume_point(&state, "SystemModstamp", start()),
            Resume::After(ts("2024-01-02T03:04:05.006Z"))
        );
    }

    #[test]
    fn the_formula_refresh_key_sits_beside_the_cursor() {
        let mut state = cursor_state("SystemModstamp", ts("2024-01-02T03:04:05.006Z"));
        assert_eq!(refreshed_at(&state), None);
        set_refreshed_at(&mut state, ts("2026-11-24T03:00:00.5Z"));
        assert_eq!(
            state,
            json!({"SystemModstamp": "2024-01-02T03:04:05.006Z",
                   "formula_refreshed_at": "2026-11-24T03:00:00.500Z"})
        );
        assert_eq!(refreshed_at(&state), Some(ts("2026-11-24T03:00:00.5Z")));
        // The cursor reads as before, by us and (cursor key only) by Airbyte.
        assert_eq!(
            resume_point(&state, "SystemModstamp", start()),
            Resume::After(ts("2024-01-02T03:04:05.006Z"))
        );
        // Airbyte's forms have no key; a garbled key is ignored.
        let date_range = json!({"state_type": "date-range", "slices": []});
        assert_eq!(refreshed_at(&date_range), None);
        assert_eq!(refreshed_at(&json!({"formula_refreshed_at": 5})), None);
        assert_eq!(refreshed_at(&json!({"formula_refreshed_at": "soon"})), None);
    }

    #[test]
    fn airbyte_legacy_form_with_salesforce_timestamps() {
        let state = json!({"LastModifiedDate": "2024-01-02T03:04:05.000+0000"});
        assert_eq!(
            resume_point(&state, "LastModifiedDate", start()),
            Resume::After(ts("2024-01-02T03:04:05Z"))
        );
        // A state written under another candidate cursor still counts.
        assert_eq!(
            resume_point(&state, "SystemModstamp", start()),
            Resume::After(ts("2024-01-02T03:04:05Z"))
        );
    }

    #[test]
    fn airbyte_date_range_form() {
        let state = json!({"state_type": "date-range", "slices": [
            {"start": "2025-01-01T00:00:00.000Z", "end": "2026-11-22T10:35:38.389Z",
             "most_recent_cursor_value": "2025-03-01T00:00:00.000Z"}
        ]});
        assert_eq!(
            resume_point(&state, "SystemModstamp", start()),
            Resume::After(ts("2026-11-22T10:35:38.389Z"))
        );
    }

    #[test]
    fn date_range_with_a_hole_resumes_before_the_hole() {
        let state = json!({"state_type": "date-range", "slices": [
            {"start": "2025-03-01T00:00:00.000Z", "end": "2025-04-01T00:00:00.000Z"},
            {"start": "2025-01-01T00:00:00.000Z", "end": "2025-01-31T00:00:00.000Z"},
            {"start": "2025-01-31T00:00:00.001Z", "end": "2025-02-01T00:00:00.000Z"}
        ]});
        assert_eq!(
            resume_point(&state, "SystemModstamp", start()),
            Resume::After(ts("2025-02-01T00:00:00Z")),
            "touching slices merge; the hole from February to March is read again"
        );
    }

    #[test]
    fn date_range_starting_after_the_start_date_reads_everything() {
        let state = json!({"state_type": "date-range", "slices": [
            {"start": "2025-06-01T00:00:00.000Z", "end": "2025-07-01T00:00:00.000Z"}
        ]});
        assert_eq!(
            resume_point(&state, "SystemModstamp", start()),
            Resume::FromStart
        );
        let empty = json!({"state_type": "date-range", "slices": []});
        assert_eq!(
            resume_point(&empty, "SystemModstamp", start()),
            Resume::FromStart
        );
    }

    #[test]
    fn no_cursor_and_garbage() {
        for state in [
            full_refresh_state(),
            json!({}),
            json!({"SystemModstamp": 12}),
            json!({"SystemModstamp": "not a date"}),
            json!("text"),
            json!({"something": "else"}),
        ] {
            assert_eq!(
                resume_point(&state, "SystemModstamp", start()),
                Resume::FromStart,
                "{state}"
            );
        }
    }

    #[test]
    fn states_from_stream_global_and_legacy_messages() {
        let input = parse_input(json!([
            {"type": "STREAM", "stream": {"stream_descriptor": {"name": "Account", "namespace": null},
              "stream_state": {"SystemModstamp": "2024-01-01T00:00:00.000Z"}},
             "sourceStats": {"recordCount": 3.0}, "id": 7},
            {"type": "GLOBAL", "global": {"shared_state": {}, "stream_states": [
              {"stream_descriptor": {"name": "Lead"}, "stream_state": {"state_type": "date-range", "slices": []}}
            ]}},
            {"type": "LEGACY", "data": {"Contact": {"SystemModstamp": "2023-01-01T00:00:00.000Z"}}},
            {"type": "STREAM", "stream": {"stream_descriptor": {"name": "Task"}}}
        ]));
        let states = stream_states(&input);
        assert_eq!(states.len(), 3);
        assert_eq!(
            states["Account"],
            json!({"SystemModstamp": "2024-01-01T00:00:00.000Z"})
        );
        assert_eq!(states["Lead"]["state_type"], "date-range");
        assert_eq!(
            states["Contact"]["SystemModstamp"],
            "2023-01-01T00:00:00.000Z"
        );
        assert!(
            !states.contains_key("Task"),
            "a null stream_state means reset"
        );
    }

    #[test]
    fn pre_list_legacy_object() {
        let input = parse_input(
            json!({"Account": {"SystemModstamp": "2024-01-01T00:00:00.000Z"}, "junk": 3}),
        );
        let states = stream_states(&input);
        assert_eq!(states.len(), 1);
        assert_eq!(
            resume_point(&states["Account"], "SystemModstamp", start()),
            Resume::After(ts("2024-01-01T00:00:00Z"))
        );
        assert!(stream_states(&InputState::default()).is_empty());
    }
}
