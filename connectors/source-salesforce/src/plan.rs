//! Planning one stream: which fields, which API, which time range, which SOQL.
//!
//! [`plan_stream`] turns a configured stream, its live describe, the config and the stream's
//! state into a [`StreamPlan`]; [`StreamPlan::soql_window`] writes the query for a window of it,
//! and [`split_window`] cuts a range Salesforce timed out on into smaller ones.

use std::collections::BTreeSet;

use airbyte_protocol::{ConfiguredAirbyteStream, ConnectorError, StreamDescriptor, SyncMode};
use chrono::{DateTime, TimeDelta, Utc};
use salesforce_client::rest::SObjectDescribe;
use serde_json::Value;

use crate::config::{Config, IsoDuration};
use crate::discovery::{FieldKind, ObjectInfo, UNSUPPORTED_BULK_OBJECTS, selected_properties};
use crate::state::{self, Resume};

/// Which API reads a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Bulk API 2.0 query job.
    Bulk,
    /// REST `queryAll`.
    Rest,
}

/// Everything needed to read one stream.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    /// Stream (and object) name.
    pub name: String,
    /// The stream as the catalog names it (namespace included, echoed on every message).
    pub descriptor: StreamDescriptor,
    /// The object's describe, digested.
    pub info: ObjectInfo,
    /// Fields to emit, with their kinds (compound fields included).
    pub emit: Vec<(String, FieldKind)>,
    /// Incremental: the cursor field and `[lower, upper)`; `None` for full refresh.
    pub incremental: Option<Incremental>,
    /// The API and why.
    pub api: Api,
    /// Why this API (logged).
    pub api_reason: String,
    /// Planned from the catalog's annotations rather than a describe made by this run (a field
    /// deleted in Salesforce since discovery is then found only when a query names it).
    pub from_catalog: bool,
}

/// The incremental part of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incremental {
    /// Cursor field.
    pub cursor: String,
    /// Inclusive lower bound.
    pub lower: DateTime<Utc>,
    /// Exclusive upper bound.
    pub upper: DateTime<Utc>,
    /// The checkpoint we may report before any row is read.
    pub initial: DateTime<Utc>,
}

/// Plans one configured stream against its describe.
pub fn plan_stream(
    configured: &ConfiguredAirbyteStream,
    describe: &SObjectDescribe,
    config: &Config,
    state: Option<&Value>,
    now: DateTime<Utc>,
) -> Result<StreamPlan, ConnectorError> {
    plan_object(
        configured,
        ObjectInfo::from_describe(describe),
        config,
        state,
        now,
    )
}

/// Plans one configured stream against what is known of its object (from a describe, or from
/// the annotations of a catalog our discover wrote).
pub fn plan_object(
    configured: &ConfiguredAirbyteStream,
    info: ObjectInfo,
    config: &Config,
    state: Option<&Value>,
    now: DateTime<Utc>,
) -> Result<StreamPlan, ConnectorError> {
    let name = configured.stream.name.clone();
    let wanted = selected_properties(&configured.stream.json_schema);
    if let Some(wanted) = &wanted {
        let missing: Vec<&String> = wanted.iter().filter(|w| info.field(w).is_none()).collect();
        if !missing.is_empty() {
            tracing::warn!(stream = %name, ?missing, "catalog fields no longer exist in Salesforce (or are not visible); they are skipped");
        }
    }
    let mut must: BTreeSet<&str> = BTreeSet::new();
    if let Some(pk) = &info.primary_key {
        must.insert(pk);
    }
    if let Some(c) = &info.cursor {
        must.insert(c);
    }
    if info.field("IsDeleted").is_some() {
        must.insert("IsDeleted");
    }
    let mut emit: Vec<(String, FieldKind)> = info
        .fields
        .iter()
        .filter(|f| {
            must.contains(f.name.as_str()) || wanted.as_ref().is_none_or(|w| w.contains(&f.name))
        })
        .map(|f| (f.name.clone(), f.kind))
        .collect();

    let has_base64 = emit.iter().any(|(_, k)| *k == FieldKind::Base64);
    let (api, api_reason) = if UNSUPPORTED_BULK_OBJECTS.contains(&info.name.as_str()) {
        (
            Api::Rest,
            "Bulk API 2.0 does not support this object".to_owned(),
        )
    } else if has_base64 && !config.force_use_bulk_api {
        (
            Api::Rest,
            "the stream has base64 fields, which Bulk API cannot return".to_owned(),
        )
    } else if has_base64 {
        emit.retain(|(_, k)| *k != FieldKind::Base64);
        (
            Api::Bulk,
            "force_use_bulk_api is set; base64 fields are left out".to_owned(),
        )
    } else {
        (Api::Bulk, "default".to_owned())
    };

    let incremental = match configured.sync_mode {
        SyncMode::FullRefresh => None,
        SyncMode::Incremental => {
            let Some(cursor) = info.cursor.clone() else {
                return Err(ConnectorError::config(format!(
                    "stream {name} cannot be read incrementally (it has no SystemModstamp, LastModifiedDate, CreatedDate or LoginTime, or Salesforce cannot filter it); set its sync mode to full refresh"
                )));
            };
            let upper = config.end_date.map_or(now, |e| e.min(now));
            let (lower, initial) =
                match state.map(|s| state::resume_point(s, &cursor, config.start_date)) {
                    Some(Resume::After(ts)) => {
                        let back = config.lookback_window.sub_from(ts);
                        (back.max(config.start_date), ts)
                    }
                    None | Some(Resume::FromStart) => (config.start_date, config.start_date),
                };
            Some(Incremental {
                cursor,
                lower,
                upper,
                initial,
            })
        }
    };
    Ok(StreamPlan {
        descriptor: configured.stream.descriptor(),
        name,
        info,
        emit,
        incremental,
        api,
        api_reason,
        from_catalog: false,
    })
}

impl StreamPlan {
    /// The same plan against a fresh describe: fields Salesforce no longer has are dropped (with
    /// a WARN), kinds follow the describe.
    pub fn replanned(&self, describe: &SObjectDescribe) -> Self {
        let info = ObjectInfo::from_describe(describe);
        let (kept, gone): (Vec<_>, Vec<_>) = self
            .emit
            .iter()
            .partition(|(name, _)| info.field(name).is_some());
        if !gone.is_empty() {
            let gone: Vec<&str> = gone.iter().map(|(n, _)| n.as_str()).collect();
            tracing::warn!(stream = %self.name, missing = ?gone, "catalog fields no longer exist in Salesforce (or are not visible); they are skipped");
        }
        let emit = kept
            .into_iter()
            .filter_map(|(name, _)| info.field(name).map(|f| (f.name.clone(), f.kind)))
            .collect();
        Self {
            info,
            emit,
            from_catalog: false,
            ..self.clone()
        }
    }

    /// The compound fields to rebuild from Bulk component columns: `(component, compound, kind)`.
    pub fn components(&self) -> Vec<(String, String, FieldKind)> {
        let compounds: BTreeSet<&str> = self
            .emit
            .iter()
            .filter(|(_, k)| k.is_compound())
            .map(|(n, _)| n.as_str())
            .collect();
        self.info
            .fields
            .iter()
            .filter_map(|f| {
                let of = f.compound_of.as_deref()?;
                compounds
                    .contains(of)
                    .then(|| (f.name.clone(), of.to_owned(), f.kind))
            })
            .collect()
    }

    /// The SELECT list for `api`.
    pub fn select_fields(&self, api: Api) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (name, kind) in &self.emit {
            if api == Api::Bulk && kind.is_compound() {
                continue;
            }
            out.push(name.clone());
        }
        if api == Api::Bulk {
            for (component, _, _) in self.components() {
                if !out.contains(&component) {
                    out.push(component);
                }
            }
        }
        out
    }

    /// The SOQL statement for `api` over the whole planned range.
    pub fn soql(&self, api: Api) -> String {
        self.soql_window(api, self.incremental.as_ref().map(|i| (i.lower, i.upper)))
    }

    /// The SOQL statement for `api` over `[lower, upper)` of the cursor (incremental streams).
    pub fn soql_window(&self, api: Api, window: Option<(DateTime<Utc>, DateTime<Utc>)>) -> String {
        let fields = self.select_fields(api);
        let separator = if api == Api::Bulk { ", " } else { "," };
        let mut soql = format!("SELECT {} FROM {}", fields.join(separator), self.info.name);
        // REST orders by the key too, so a wide object's column chunks come back row-aligned.
        let tie = match (api, &self.info.primary_key) {
            (Api::Rest, Some(pk)) => Some(pk.as_str()),
            _ => None,
        };
        if let (Some(inc), Some((lower, upper))) = (&self.incremental, window) {
            soql.push_str(&window_clause(&inc.cursor, lower, upper, tie));
        } else if let (Api::Rest, Some(pk)) = (api, &self.info.primary_key) {
            soql.push_str(&format!(" ORDER BY {pk} ASC"));
        }
        soql
    }
}

impl StreamPlan {
    /// The full-refresh SOQL for `api` over the rows whose `key` sorts after `last` (the rest of
    /// a read whose first REST page, ordered by `key`, is out).
    pub fn soql_after_key(&self, api: Api, key: &str, last: &str) -> String {
        let fields = self.select_fields(api);
        let separator = if api == Api::Bulk { ", " } else { "," };
        format!(
            "SELECT {} FROM {}{}",
            fields.join(separator),
            self.info.name,
            after_key_clause(None, key, last, api == Api::Rest)
        )
    }
}

/// ` WHERE {cursor} >= lower AND {cursor} < upper ORDER BY {cursor} ASC[, {tie} ASC]`: one
/// window of an incremental read (also what a REST re-run appends, see `crate::rerun`).
pub(crate) fn window_clause(
    cursor: &str,
    lower: DateTime<Utc>,
    upper: DateTime<Utc>,
    tie: Option<&str>,
) -> String {
    let tie = tie.map(|key| format!(", {key} ASC")).unwrap_or_default();
    format!(
        " WHERE {cursor} >= {} AND {cursor} < {} ORDER BY {cursor} ASC{tie}",
        salesforce_client::soql::datetime_literal(lower),
        salesforce_client::soql::datetime_literal(upper)
    )
}

/// ` WHERE [{filter} AND ]{key} > 'last'[ ORDER BY {key} ASC]`: the rows after the last key
/// read (full refresh; also what a REST re-run appends, see `crate::rerun`).
pub(crate) fn after_key_clause(
    filter: Option<&str>,
    key: &str,
    last: &str,
    ordered: bool,
) -> String {
    let last = salesforce_client::soql::quote(last);
    let filter = filter.map(|f| format!("{f} AND ")).unwrap_or_default();
    let order = if ordered {
        format!(" ORDER BY {key} ASC")
    } else {
        String::new()
    };
    format!(" WHERE {filter}{key} > {last}{order}")
}

/// The smallest window a timed-out query is split into.
const MIN_WINDOW: TimeDelta = TimeDelta::seconds(1);

/// How many windows the rest of a timed-out range is cut into, at most.
const MAX_SPLIT: i32 = 8;

/// Splits `[from, to)` after a query timeout: into at most `MAX_SPLIT` windows no narrower than
/// one `step`, or into halves when the range is not wider than that; empty when the range cannot
/// shrink below `MIN_WINDOW`.
pub fn split_window(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    step: IsoDuration,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let span = to - from;
    if span < MIN_WINDOW * 2 {
        return Vec::new();
    }
    let piece = (span / MAX_SPLIT).max(step.add_to(from) - from);
    if piece >= span {
        let mid = from + span / 2;
        return vec![(from, mid), (mid, to)];
    }
    let mut out = Vec::new();
    let mut a = from;
    while a < to {
        let b = (a + piece).min(to);
        out.push((a, b));
        a = b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;
    use crate::convert::parse_timestamp;
    use airbyte_protocol::FailureType;
    use chrono::TimeZone;
    use serde_json::json;

    fn ts(s: &str) -> DateTime<Utc> {
        parse_timestamp(s).unwrap()
    }

    fn now() -> DateTime<Utc> {
        ts("2026-11-24T12:00:00Z")
    }

    fn config(extra: Value) -> Config {
        let mut v = json!({"client_id": "c", "client_secret": "s", "refresh_token": "r",
                           "start_date": "2024-01-01"});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        Config::from_raw(RawConfig::from_json(v.as_object().unwrap()).unwrap(), now()).unwrap()
    }

    fn describe(name: &str, fields: &[(&str, &str, Option<&str>)]) -> SObjectDescribe {
        let fields: Vec<Value> = fields
            .iter()
            .map(|(n, t, c)| json!({"name": n, "label": n, "type": t, "compoundFieldName": c}))
            .collect();
        serde_json::from_value(
            json!({"name": name, "label": name, "queryable": true, "fields": fields}),
        )
        .unwrap()
    }

    fn account() -> SObjectDescribe {
        describe(
            "Account",
            &[
                ("Id", "id", None),
                ("IsDeleted", "boolean", None),
                ("Name", "string", None),
                ("BillingCity", "string", Some("BillingAddress")),
                ("BillingPostalCode", "string", Some("BillingAddress")),
                ("BillingAddress", "address", None),
                ("Description", "textarea", None),
                ("SystemModstamp", "datetime", None),
            ],
        )
    }

    fn configured(name: &str, props: Value, mode: &str) -> ConfiguredAirbyteStream {
        serde_json::from_value(json!({
            "stream": {"name": name, "json_schema": {"type": "object", "properties": props},
                       "supported_sync_modes": ["full_refresh", "incremental"]},
            "sync_mode": mode, "destination_sync_mode": "append"
        }))
        .unwrap()
    }

    #[test]
    fn selects_only_catalog_fields_plus_keys() {
        let c = configured(
            "Account",
            json!({"Name": {}, "BillingAddress": {}}),
            "incremental",
        );
        let plan = plan_stream(&c, &account(), &config(json!({})), None, now()).unwrap();
        let emitted: Vec<&str> = plan.emit.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            emitted,
            [
                "Id",
                "IsDeleted",
                "Name",
                "BillingAddress",
                "SystemModstamp"
            ]
        );
        assert_eq!(plan.api, Api::Bulk);
        assert_eq!(
            plan.select_fields(Api::Bulk),
            [
                "Id",
                "IsDeleted",
                "Name",
                "SystemModstamp",
                "BillingCity",
                "BillingPostalCode"
            ]
        );
        assert_eq!(
            plan.select_fields(Api::Rest),
            [
                "Id",
                "IsDeleted",
                "Name",
                "BillingAddress",
                "SystemModstamp"
            ]
        );
        assert_eq!(
            plan.soql(Api::Bulk),
            "SELECT Id, IsDeleted, Name, SystemModstamp, BillingCity, BillingPostalCode FROM Account \
             WHERE SystemModstamp >= 2024-01-01T00:00:00.000Z AND SystemModstamp < 2026-11-24T12:00:00.000Z \
             ORDER BY SystemModstamp ASC"
        );
    }

    #[test]
    fn the_rest_of_a_full_refresh_after_a_key() {
        let c = configured("Account", json!({"Name": {}}), "full_refresh");
        let plan = plan_stream(&c, &account(), &config(json!({})), None, now()).unwrap();
        assert_eq!(
            plan.soql_after_key(Api::Bulk, "Id", "001'X"),
            r"SELECT Id, IsDeleted, Name, SystemModstamp FROM Account WHERE Id > '001\'X'"
        );
        assert_eq!(
            plan.soql_after_key(Api::Rest, "Id", "001A"),
            "SELECT Id,IsDeleted,Name,SystemModstamp FROM Account WHERE Id > '001A' ORDER BY Id ASC"
        );
    }

    #[test]
    fn every_field_when_the_catalog_lists_none() {
        let c = configured("Account", json!({}), "full_refresh");
        let plan = plan_stream(&c, &account(), &config(json!({})), None, now()).unwrap();
        assert_eq!(plan.emit.len(), 8);
        assert_eq!(plan.incremental, None);
        assert_eq!(
            plan.soql(Api::Rest),
            "SELECT Id,IsDeleted,Name,BillingCity,BillingPostalCode,BillingAddress,Description,SystemModstamp FROM Account ORDER BY Id ASC"
        );
    }

    #[test]
    fn api_choice() {
        let with_blob = describe(
            "Document",
            &[
                ("Id", "id", None),
                ("Body", "base64", None),
                ("SystemModstamp", "datetime", None),
            ],
        );
        let c = configured("Document", json!({}), "full_refresh");
        let plan = plan_stream(&c, &with_blob, &config(json!({})), None, now()).unwrap();
        assert_eq!(plan.api, Api::Rest, "base64 fields need REST");
        let forced = plan_stream(
            &c,
            &with_blob,
            &config(json!({"force_use_bulk_api": true})),
            None,
            now(),
        )
        .unwrap();
        assert_eq!(forced.api, Api::Bulk);
        assert!(
            forced.emit.iter().all(|(n, _)| n != "Body"),
            "base64 dropped under Bulk"
        );
        let attachment = describe(
            "Attachment",
            &[("Id", "id", None), ("Name", "string", None)],
        );
        let c = configured("Attachment", json!({}), "full_refresh");
        let plan = plan_stream(
            &c,
            &attachment,
            &config(json!({"force_use_bulk_api": true})),
            None,
            now(),
        )
        .unwrap();
        assert_eq!(
            plan.api,
            Api::Rest,
            "objects Bulk does not support always use REST"
        );
    }

    #[test]
    fn range_from_state_with_lookback_and_end_date() {
        let c = configured("Account", json!({}), "incremental");
        let state = json!({"SystemModstamp": "2025-06-01T00:10:00.000Z"});
        let plan = plan_stream(&c, &account(), &config(json!({})), Some(&state), now()).unwrap();
        let inc = plan.incremental.unwrap();
        assert_eq!(
            inc.lower,
            ts("2025-06-01T00:00:00Z"),
            "ten minutes of lookback"
        );
        assert_eq!(inc.initial, ts("2025-06-01T00:10:00Z"));
        assert_eq!(inc.upper, now());

        let cfg = config(json!({"end_date": "2025-07-01", "lookback_window": "PT1H"}));
        let plan = plan_stream(&c, &account(), &cfg, Some(&state), now()).unwrap();
        let inc = plan.incremental.unwrap();
        assert_eq!(inc.lower, ts("2025-05-31T23:10:00Z"));
        assert_eq!(inc.upper, ts("2025-07-01T00:00:00Z"));

        let cfg = config(json!({"end_date": "2030-01-01"}));
        let plan = plan_stream(&c, &account(), &cfg, None, now()).unwrap();
        let inc = plan.incremental.unwrap();
        assert_eq!(inc.upper, now(), "end_date is capped at now");
        assert_eq!(
            inc.lower,
            Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
        );

        // The lookback never reaches before the start date.
        let early = json!({"SystemModstamp": "2024-01-01T00:05:00.000Z"});
        let plan = plan_stream(&c, &account(), &config(json!({})), Some(&early), now()).unwrap();
        assert_eq!(plan.incremental.unwrap().lower, ts("2024-01-01T00:00:00Z"));
    }

    #[test]
    fn airbyte_date_range_state_resumes_where_it_ended() {
        let c = configured("Account", json!({}), "incremental");
        let state = json!({"state_type": "date-range", "slices": [
            {"start": "2024-01-01T00:00:00.000Z", "end": "2026-11-22T10:35:38.389Z"}]});
        let plan = plan_stream(&c, &account(), &config(json!({})), Some(&state), now()).unwrap();
        let inc = plan.incremental.unwrap();
        assert_eq!(inc.lower, ts("2026-11-22T10:25:38.389Z"));
    }

    #[test]
    fn incremental_without_cursor_is_a_config_error() {
        let d = describe("Setting", &[("Id", "id", None), ("Name", "string", None)]);
        let c = configured("Setting", json!({}), "incremental");
        let err = plan_stream(&c, &d, &config(json!({})), None, now()).unwrap_err();
        assert_eq!(err.failure_type(), FailureType::ConfigError);
        assert!(err.message().contains("full refresh"), "{}", err.message());
    }

    #[test]
    fn timed_out_ranges_split_into_bounded_windows() {
        let step = IsoDuration::parse("P30D").unwrap();
        let (a, b) = (ts("2015-01-01T00:00:00Z"), ts("2026-01-01T00:00:00Z"));
        let pieces = split_window(a, b, step);
        assert_eq!(pieces.len(), 8);
        assert_eq!(pieces.first().unwrap().0, a);
        assert_eq!(pieces.last().unwrap().1, b);
        for w in pieces.windows(2) {
            assert_eq!(w[0].1, w[1].0, "contiguous, no gap, no overlap");
        }
        // Narrow ranges: windows of one step.
        let pieces = split_window(a, ts("2015-03-01T00:00:00Z"), step);
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0], (a, ts("2015-01-31T00:00:00Z")));
        // Within one step: halves, down to one second.
        let pieces = split_window(a, ts("2015-01-11T00:00:00Z"), step);
        assert_eq!(
            pieces,
            vec![
                (a, ts("2015-01-06T00:00:00Z")),
                (ts("2015-01-06T00:00:00Z"), ts("2015-01-11T00:00:00Z"))
            ]
        );
        assert!(split_window(a, a + TimeDelta::milliseconds(1500), step).is_empty());
    }
}
