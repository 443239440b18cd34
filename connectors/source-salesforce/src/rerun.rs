//! Re-running a REST query whose locator Salesforce lost.
//!
//! Salesforce serves a query locator (`nextRecordsUrl`) once ("use a given queryLocator value
//! only one time") and answers a used, expired or evicted one with `INVALID_QUERY_LOCATOR`;
//! its remedy is to run the query again. A page whose body broke off mid-transfer is lost the
//! same way. [`RestPosition`] follows the rows a REST query emitted and writes the statement
//! that reads exactly the rest, from the query's own order:
//!
//! - ordered by the key (full refresh): the rows whose key sorts after the last one emitted;
//! - ordered by the cursor, then the key (incremental): the rows from the last cursor value
//!   emitted on, up to the window's end; rows at that value already emitted (their keys are
//!   kept) are skipped when the re-run sends them again;
//! - in no order usable as a position (no key): no re-run; the stream fails rather than emit
//!   rows twice or lose some.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::convert::parse_timestamp;
use crate::plan::{after_key_clause, window_clause};

/// How many times in a row a query may be re-run without a row coming back in between.
pub(crate) const MAX_RERUNS: u32 = 5;

/// The order of a REST query, as far as re-running it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Order {
    /// `[WHERE {filter}] ORDER BY {key} ASC`.
    Key { filter: Option<String> },
    /// `WHERE {cursor} >= .. AND {cursor} < upper ORDER BY {cursor} ASC, {key} ASC`.
    Cursor {
        cursor: String,
        upper: DateTime<Utc>,
    },
    /// No usable order.
    Unordered,
}

/// Where a REST query stands: the rows it emitted, as far as needed to read exactly the rest.
#[derive(Debug, Clone)]
pub(crate) struct RestPosition {
    /// `SELECT ... FROM Object`: the statement before its WHERE / ORDER BY.
    head: String,
    /// The statement as first run (run again as it is while no row is out).
    original: String,
    key: String,
    order: Order,
    /// No row emitted yet.
    fresh: bool,
    /// The order promise was broken (a row without key or cursor, or out of order): no re-run.
    broken: bool,
    last_key: String,
    last_cursor: Option<DateTime<Utc>>,
    /// Keys emitted at `last_cursor`.
    at_last: HashSet<String>,
    /// Re-runs since a row last came back.
    reruns: u32,
}

/// Why a query cannot be re-run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RerunError {
    /// The query has no order to resume from.
    #[error("the query is not ordered by a key, so where it stopped cannot be told")]
    Unordered,
    /// A row broke the order the statement promised.
    #[error("rows came without their key or cursor, or out of order")]
    Broken,
    /// Re-runs keep losing their locator before a row comes back.
    #[error("the query was run again {MAX_RERUNS} times in a row without receiving a row")]
    Exhausted,
}

impl RestPosition {
    /// A full-refresh statement `soql` on `object` ordered by `key`, its rows restricted by
    /// `filter` when there is one (a filter is ANDed into the re-run).
    pub(crate) fn by_key(soql: &str, object: &str, key: &str, filter: Option<&str>) -> Self {
        Self::new(
            soql,
            object,
            key,
            Order::Key {
                filter: filter.map(str::to_owned),
            },
        )
    }

    /// An incremental statement `soql` on `object` over a window ending at `upper`, ordered by
    /// `cursor` then `key`.
    pub(crate) fn by_cursor(
        soql: &str,
        object: &str,
        cursor: &str,
        key: &str,
        upper: DateTime<Utc>,
    ) -> Self {
        Self::new(
            soql,
            object,
            key,
            Order::Cursor {
                cursor: cursor.to_owned(),
                upper,
            },
        )
    }

    /// A statement in no usable order: it cannot be re-run.
    pub(crate) fn unordered(soql: &str, object: &str) -> Self {
        Self::new(soql, object, "Id", Order::Unordered)
    }

    fn new(soql: &str, object: &str, key: &str, order: Order) -> Self {
        let from = format!(" FROM {object}");
        let head = match soql.find(&from) {
            Some(i) => soql[..i + from.len()].to_owned(),
            None => soql.to_owned(),
        };
        Self {
            head,
            original: soql.to_owned(),
            key: key.to_owned(),
            order,
            fresh: true,
            broken: false,
            last_key: String::new(),
            last_cursor: None,
            at_last: HashSet::new(),
            reruns: 0,
        }
    }

    /// Whether a row of a re-run was emitted already (at the tie value the re-run starts from).
    pub(crate) fn emitted(&self, cursor: Option<&str>, key: Option<&str>) -> bool {
        match (
            &self.order,
            self.last_cursor,
            cursor.and_then(parse_timestamp),
            key,
        ) {
            (Order::Cursor { .. }, Some(last), Some(value), Some(key)) => {
                value == last && self.at_last.contains(key)
            }
            _ => false,
        }
    }

    /// [`RestPosition::emitted`] for a record parsed into a map.
    pub(crate) fn emitted_record(&self, record: &Map<String, Value>) -> bool {
        self.emitted(self.cursor_of(record), self.key_of(record))
    }

    /// [`RestPosition::observe`] for a record parsed into a map.
    pub(crate) fn observe_record(&mut self, record: &Map<String, Value>) {
        let cursor = self.cursor_of(record).map(str::to_owned);
        let key = self.key_of(record).map(str::to_owned);
        self.observe(cursor.as_deref(), key.as_deref());
    }

    fn cursor_of<'r>(&self, record: &'r Map<String, Value>) -> Option<&'r str> {
        match &self.order {
            Order::Cursor { cursor, .. } => record.get(cursor).and_then(Value::as_str),
            _ => None,
        }
    }

    fn key_of<'r>(&self, record: &'r Map<String, Value>) -> Option<&'r str> {
        record.get(&self.key).and_then(Value::as_str)
    }

    /// Notes a row as emitted.
    pub(crate) fn observe(&mut self, cursor: Option<&str>, key: Option<&str>) {
        self.fresh = false;
        self.reruns = 0;
        let Some(key) = key else {
            self.broken = true;
            return;
        };
        match &self.order {
            Order::Key { .. } => {
                self.last_key.clear();
                self.last_key.push_str(key);
            }
            Order::Cursor { .. } => match (cursor.and_then(parse_timestamp), self.last_cursor) {
                (None, _) => self.broken = true,
                (Some(value), Some(last)) if value < last => self.broken = true,
                (Some(value), Some(last)) if value == last => {
                    self.at_last.insert(key.to_owned());
                }
                (Some(value), _) => {
                    self.last_cursor = Some(value);
                    self.at_last.clear();
                    self.at_last.insert(key.to_owned());
                }
            },
            Order::Unordered => {}
        }
    }

    /// The statement reading every row not emitted yet (and, incremental, the emitted rows at
    /// the last cursor value, for [`RestPosition::emitted`] to skip). Counts as a re-run.
    pub(crate) fn rerun(&mut self) -> Result<String, RerunError> {
        if self.reruns >= MAX_RERUNS {
            return Err(RerunError::Exhausted);
        }
        if self.order == Order::Unordered {
            return Err(RerunError::Unordered);
        }
        if self.broken {
            return Err(RerunError::Broken);
        }
        self.reruns += 1;
        if self.fresh {
            return Ok(self.original.clone());
        }
        let tail = match &self.order {
            Order::Key { filter } => {
                after_key_clause(filter.as_deref(), &self.key, &self.last_key, true)
            }
            Order::Cursor { cursor, upper } => {
                let Some(from) = self.last_cursor else {
                    return Err(RerunError::Broken);
                };
                window_clause(cursor, from, *upper, Some(&self.key))
            }
            Order::Unordered => return Err(RerunError::Unordered),
        };
        Ok(format!("{}{tail}", self.head))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> DateTime<Utc> {
        parse_timestamp(s).unwrap()
    }

    #[test]
    fn a_full_refresh_reruns_after_the_last_key() {
        let soql = "SELECT Id,Name FROM Account ORDER BY Id ASC";
        let mut p = RestPosition::by_key(soql, "Account", "Id", None);
        assert_eq!(
            p.rerun().unwrap(),
            soql,
            "nothing out yet: the same statement"
        );
        p.observe(None, Some("001A"));
        p.observe(None, Some("001B"));
        assert!(!p.emitted(None, Some("001B")), "the re-run starts after it");
        assert_eq!(
            p.rerun().unwrap(),
            "SELECT Id,Name FROM Account WHERE Id > '001B' ORDER BY Id ASC"
        );
        let mut links = RestPosition::by_key(
            "SELECT Id FROM ContentDocumentLink WHERE ContentDocumentId IN ('069A') ORDER BY Id ASC",
            "ContentDocumentLink",
            "Id",
            Some("ContentDocumentId IN ('069A')"),
        );
        links.observe(None, Some("06AX"));
        assert_eq!(
            links.rerun().unwrap(),
            "SELECT Id FROM ContentDocumentLink WHERE ContentDocumentId IN ('069A') AND Id > '06AX' ORDER BY Id ASC"
        );
    }

    #[test]
    fn an_incremental_query_reruns_from_the_tie_and_skips_what_is_out() {
        let soql = "SELECT Id,SystemModstamp FROM Contact WHERE SystemModstamp >= 2024-01-01T00:00:00.000Z AND SystemModstamp < 2024-02-01T00:00:00.000Z ORDER BY SystemModstamp ASC, Id ASC";
        let upper = ts("2024-02-01T00:00:00.000Z");
        let mut p = RestPosition::by_cursor(soql, "Contact", "SystemModstamp", "Id", upper);
        p.observe(Some("2024-01-05T00:00:00.000+0000"), Some("003A"));
        p.observe(Some("2024-01-07T10:00:00.250+0000"), Some("003B"));
        p.observe(Some("2024-01-07T10:00:00.250+0000"), Some("003C"));
        assert_eq!(
            p.rerun().unwrap(),
            "SELECT Id,SystemModstamp FROM Contact WHERE SystemModstamp >= 2024-01-07T10:00:00.250Z AND SystemModstamp < 2024-02-01T00:00:00.000Z ORDER BY SystemModstamp ASC, Id ASC"
        );
        let at = Some("2024-01-07T10:00:00.250Z");
        assert!(p.emitted(at, Some("003B")) && p.emitted(at, Some("003C")));
        assert!(!p.emitted(at, Some("003D")), "a row at the tie not out yet");
        assert!(!p.emitted(Some("2024-01-08T00:00:00.000Z"), Some("003B")));
        // A new value ends the tie.
        p.observe(Some("2024-01-08T00:00:00.000Z"), Some("003E"));
        assert!(!p.emitted(at, Some("003B")));
    }

    #[test]
    fn reruns_stop_where_no_position_is_known() {
        let mut p = RestPosition::unordered("SELECT Id FROM Foo", "Foo");
        assert_eq!(p.rerun(), Err(RerunError::Unordered));
        let upper = ts("2024-02-01T00:00:00Z");
        let mut p =
            RestPosition::by_cursor("SELECT Id FROM Foo", "Foo", "SystemModstamp", "Id", upper);
        p.observe(Some("2024-01-02T00:00:00Z"), Some("a"));
        p.observe(Some("2024-01-01T00:00:00Z"), Some("b"));
        assert_eq!(p.rerun(), Err(RerunError::Broken), "out of order");
        let mut p = RestPosition::by_key("SELECT Id FROM Foo", "Foo", "Id", None);
        for _ in 0..MAX_RERUNS {
            p.rerun().unwrap();
        }
        assert_eq!(p.rerun(), Err(RerunError::Exhausted));
        p.observe(None, Some("a"));
        assert!(p.rerun().is_ok(), "a row came back: the count starts again");
    }
}
