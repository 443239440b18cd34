//! API usage tracking: `Sforce-Limit-Info` headers, the `/limits` resource, and a budget hook.
//!
//! Every response that carries `Sforce-Limit-Info: api-usage=USED/MAX[; ...]` updates the shared
//! [`UsageTracker`], which also counts the calls this client made. A [`Budget`] set on the client
//! stops new counted calls once the org's usage reaches a chosen share of its daily allocation,
//! so a sync can leave quota for other integrations.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

/// A parsed `Sforce-Limit-Info` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitInfo {
    /// Calls used in the org's rolling 24 h window.
    pub used: u64,
    /// The org's daily allocation.
    pub max: u64,
    /// `per-app-api-usage` used/max, when present.
    pub per_app: Option<(u64, u64)>,
}

impl LimitInfo {
    /// Parses `api-usage=25/5000`, tolerating extra `;`-separated segments
    /// (`per-app-api-usage=...(appName=...)`, `api-bursts=...`) in any order.
    pub fn parse(header: &str) -> Option<Self> {
        let mut api = None;
        let mut per_app = None;
        for segment in header.split(';') {
            let segment = segment.trim();
            let Some((key, value)) = segment.split_once('=') else {
                continue;
            };
            let value = value.split('(').next().unwrap_or(value).trim();
            let parsed = value.split_once('/').and_then(|(u, m)| {
                Some((u.trim().parse::<u64>().ok()?, m.trim().parse::<u64>().ok()?))
            });
            match key.trim() {
                "api-usage" => api = parsed,
                "per-app-api-usage" => per_app = parsed,
                _ => {}
            }
        }
        let (used, max) = api?;
        Some(Self { used, max, per_app })
    }
}

/// A snapshot of API usage as seen by one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApiUsage {
    /// Org-wide calls used (from the last `Sforce-Limit-Info`), if any response carried one.
    pub org_used: Option<u64>,
    /// Org-wide daily allocation, if known.
    pub org_max: Option<u64>,
    /// Calls this client sent that count toward the API limit (token and version-list calls
    /// are free and not counted; a `/composite` request counts once).
    pub calls_made: u64,
}

impl ApiUsage {
    /// Share of the daily allocation used, in `[0, 1]`, if known.
    pub fn used_share(&self) -> Option<f64> {
        match (self.org_used, self.org_max) {
            (Some(u), Some(m)) if m > 0 => Some(u as f64 / m as f64),
            _ => None,
        }
    }
}

const UNKNOWN: u64 = u64::MAX;

/// Shared, lock-free API usage counters.
#[derive(Debug)]
pub struct UsageTracker {
    used: AtomicU64,
    max: AtomicU64,
    calls: AtomicU64,
}

impl Default for UsageTracker {
    fn default() -> Self {
        Self {
            used: AtomicU64::new(UNKNOWN),
            max: AtomicU64::new(UNKNOWN),
            calls: AtomicU64::new(0),
        }
    }
}

impl UsageTracker {
    /// Records one counted call.
    pub fn record_call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the org usage from a `Sforce-Limit-Info` header value. Unparsable values are ignored.
    pub fn record_header(&self, value: &str) {
        if let Some(info) = LimitInfo::parse(value) {
            self.record_limit_info(info);
        }
    }

    /// Records org usage. Responses can arrive out of order, so `used` only grows unless the
    /// allocation itself changed (a new window is not visible in the header).
    pub fn record_limit_info(&self, info: LimitInfo) {
        let old_max = self.max.swap(info.max, Ordering::Relaxed);
        if old_max != info.max {
            self.used.store(info.used, Ordering::Relaxed);
            return;
        }
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                (cur == UNKNOWN || info.used > cur).then_some(info.used)
            });
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> ApiUsage {
        let known = |v: u64| (v != UNKNOWN).then_some(v);
        ApiUsage {
            org_used: known(self.used.load(Ordering::Relaxed)),
            org_max: known(self.max.load(Ordering::Relaxed)),
            calls_made: self.calls.load(Ordering::Relaxed),
        }
    }
}

/// Stop sending counted calls once the org has used this share of its daily API allocation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    max_share: f64,
}

impl Budget {
    /// A budget stopping at `max_share` (e.g. `0.8` for 80 %). Values are clamped to `[0, 1]`.
    pub fn share(max_share: f64) -> Self {
        Self {
            max_share: if max_share.is_nan() {
                1.0
            } else {
                max_share.clamp(0.0, 1.0)
            },
        }
    }

    /// The stop point as a share of the daily allocation.
    pub fn max_share(&self) -> f64 {
        self.max_share
    }

    /// Whether another call is allowed given `usage`. Unknown usage allows the call (the first
    /// response tells us where we stand).
    pub fn allows(&self, usage: &ApiUsage) -> bool {
        match (usage.org_used, usage.org_max) {
            (Some(used), Some(max)) if max > 0 => (used as f64) < self.max_share * max as f64,
            (Some(_), Some(_)) => false,
            _ => true,
        }
    }
}

/// One entry of the `/limits` resource.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Limit {
    /// The allocation.
    #[serde(rename = "Max")]
    pub max: i64,
    /// What is left.
    #[serde(rename = "Remaining")]
    pub remaining: i64,
    /// Per-connected-app sub-limits (e.g. under `DailyApiRequests`), keyed by app name.
    #[serde(flatten)]
    pub per_app: BTreeMap<String, serde_json::Value>,
}

/// The `/limits` resource: limit name → [`Limit`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Limits(pub BTreeMap<String, Limit>);

impl Limits {
    /// One limit by name, e.g. `DailyApiRequests`.
    pub fn get(&self, name: &str) -> Option<&Limit> {
        self.0.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_extended_headers() {
        assert_eq!(
            LimitInfo::parse("api-usage=25/5000"),
            Some(LimitInfo {
                used: 25,
                max: 5000,
                per_app: None
            })
        );
        assert_eq!(
            LimitInfo::parse("api-usage=18/5000; per-app-api-usage=17/250(appName=sample-app)"),
            Some(LimitInfo {
                used: 18,
                max: 5000,
                per_app: Some((17, 250))
            })
        );
        assert_eq!(
            LimitInfo::parse("api-bursts=1/10; api-usage=7/100").map(|i| i.used),
            Some(7)
        );
        assert_eq!(LimitInfo::parse("garbage"), None);
        assert_eq!(LimitInfo::parse("api-usage=x/100"), None);
    }

    #[test]
    fn tracker_keeps_the_highest_usage_and_counts_calls() {
        let t = UsageTracker::default();
        assert_eq!(t.snapshot(), ApiUsage::default());
        t.record_header("api-usage=10/100");
        t.record_header("api-usage=8/100");
        t.record_call();
        t.record_call();
        let s = t.snapshot();
        assert_eq!(s.org_used, Some(10));
        assert_eq!(s.org_max, Some(100));
        assert_eq!(s.calls_made, 2);
        assert_eq!(s.used_share(), Some(0.1));
        t.record_header("api-usage=3/200");
        assert_eq!(t.snapshot().org_used, Some(3));
    }

    #[test]
    fn budget_stops_at_share() {
        let b = Budget::share(0.5);
        let at = |used| ApiUsage {
            org_used: Some(used),
            org_max: Some(100),
            calls_made: 0,
        };
        assert!(b.allows(&ApiUsage::default()));
        assert!(b.allows(&at(49)));
        assert!(!b.allows(&at(50)));
        assert_eq!(Budget::share(7.0).max_share(), 1.0);
    }

    #[test]
    fn limits_deserialize_with_per_app_entries() {
        let l: Limits = serde_json::from_str(
            r#"{"DailyApiRequests":{"Max":100000,"Remaining":99120,"My Sync App":{"Max":0,"Remaining":0}},
                "DataStorageMB":{"Max":5,"Remaining":4}}"#,
        )
        .unwrap();
        let d = l.get("DailyApiRequests").unwrap();
        assert_eq!((d.max, d.remaining), (100000, 99120));
        assert!(d.per_app.contains_key("My Sync App"));
        assert_eq!(l.get("DataStorageMB").unwrap().remaining, 4);
    }
}
