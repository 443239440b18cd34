//! State tracking: a STATE is echoed only once every record before it has a fate.
//!
//! Records are numbered in input order (`seq`). Each piece of work that still holds records —
//! an open or running batch, a not-yet-stored file of locally rejected records — is *held* under
//! the `seq` of its first record. A STATE that arrived after `n` records is released when nothing
//! is held below `n`. States are released strictly in input order.
//!
//! Counts: every record belongs to the current *window* of its stream (closed by that stream's
//! next STREAM state) and to the current global window (closed by the next GLOBAL or LEGACY
//! state). When a record's fate is known its window gets one `written` or `rejected`; a released
//! state carries its window's counts as `destinationStats {recordCount, rejectedRecordCount}`
//! (what the platform compares with `sourceStats.recordCount`). The state is otherwise echoed
//! as received: `id`, `sourceStats` and unknown keys intact.

use std::collections::{BTreeMap, HashMap, VecDeque};

use airbyte_protocol::{AirbyteStateMessage, JsonObject, StateType};

use crate::batch::Windows;

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    received: u64,
    written: u64,
    rejected: u64,
}

#[derive(Debug)]
struct Pending {
    state: AirbyteStateMessage,
    envelope: JsonObject,
    barrier: u64,
    window: u32,
}

/// Holds states until the records before them are written or rejected.
#[derive(Debug, Default)]
pub struct StateTracker {
    windows: Vec<Counts>,
    current: HashMap<(String, Option<String>), u32>,
    /// The last stream [`StateTracker::record`] looked up and its window (cleared whenever
    /// `current` loses an entry), so a run of records of one stream needs no lookup.
    last: Option<((String, Option<String>), u32)>,
    global: Option<u32>,
    received: u64,
    held: BTreeMap<u64, u32>,
    queue: VecDeque<Pending>,
    released: u64,
}

fn key(name: &str, namespace: Option<&str>) -> (String, Option<String>) {
    (
        name.to_owned(),
        namespace.filter(|n| !n.is_empty()).map(str::to_owned),
    )
}

impl StateTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    fn new_window(&mut self) -> u32 {
        self.windows.push(Counts::default());
        (self.windows.len() - 1) as u32
    }

    /// Registers the next record of `stream`; returns its `seq` and windows.
    pub fn record(&mut self, name: &str, namespace: Option<&str>) -> (u64, Windows) {
        let ns = namespace.filter(|n| !n.is_empty());
        let cached = match &self.last {
            Some(((n, s), w)) if n == name && s.as_deref() == ns => Some(*w),
            _ => None,
        };
        let stream = match cached {
            Some(w) => w,
            None => {
                let w = match self.current.get(&key(name, namespace)) {
                    Some(&w) => w,
                    None => {
                        let w = self.new_window();
                        self.current.insert(key(name, namespace), w);
                        w
                    }
                };
                self.last = Some((key(name, namespace), w));
                w
            }
        };
        let global = match self.global {
            Some(w) => w,
            None => {
                let w = self.new_window();
                self.global = Some(w);
                w
            }
        };
        self.windows[stream as usize].received += 1;
        self.windows[global as usize].received += 1;
        let seq = self.received;
        self.received += 1;
        (seq, Windows { stream, global })
    }

    /// Records that `written` + `rejected` records of these windows have their fate.
    pub fn settle(&mut self, windows: Windows, written: u64, rejected: u64) {
        for w in [windows.stream, windows.global] {
            if let Some(c) = self.windows.get_mut(w as usize) {
                c.written += written;
                c.rejected += rejected;
            }
        }
    }

    /// Work holding records from `first_seq` on has started.
    pub fn hold(&mut self, first_seq: u64) {
        *self.held.entry(first_seq).or_insert(0) += 1;
    }

    /// Work held under `first_seq` is done (its records are settled).
    pub fn release(&mut self, first_seq: u64) {
        if let Some(n) = self.held.get_mut(&first_seq) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(&first_seq);
            }
        }
    }

    /// A STATE arrived (with its envelope's unknown fields).
    pub fn state(&mut self, state: AirbyteStateMessage, envelope: JsonObject) {
        let stream = match (&state.state_type, &state.stream) {
            (Some(StateType::Stream), Some(s)) | (None, Some(s)) => Some(key(
                &s.stream_descriptor.name,
                s.stream_descriptor.namespace.as_deref(),
            )),
            _ => None,
        };
        // The stream's window closes (its next record opens a new one): forget the cached one.
        self.last = None;
        let window = match stream {
            Some(k) => match self.current.remove(&k) {
                Some(w) => w,
                None => self.new_window(),
            },
            None => match self.global.take() {
                Some(w) => w,
                None => self.new_window(),
            },
        };
        self.queue.push_back(Pending {
            state,
            envelope,
            barrier: self.received,
            window,
        });
    }

    /// States now safe to echo, in input order, with `destinationStats` set.
    pub fn ready(&mut self) -> Vec<(AirbyteStateMessage, JsonObject)> {
        let low = self.held.keys().next().copied().unwrap_or(u64::MAX);
        let mut out = Vec::new();
        while self.queue.front().is_some_and(|p| p.barrier <= low) {
            let Some(mut p) = self.queue.pop_front() else {
                break;
            };
            let c = self.windows[p.window as usize];
            if c.written + c.rejected != c.received {
                tracing::error!(
                    received = c.received,
                    written = c.written,
                    rejected = c.rejected,
                    "state window counts do not add up"
                );
            }
            let mut stats = p.state.destination_stats.take().unwrap_or_default();
            stats.record_count = Some(c.written as f64);
            stats.rejected_record_count = Some(c.rejected as f64);
            p.state.destination_stats = Some(stats);
            self.released += 1;
            out.push((p.state, p.envelope));
        }
        out
    }

    /// States received but not yet released.
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }

    /// Records received so far.
    #[cfg(test)]
    pub fn received(&self) -> u64 {
        self.received
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn state(v: Value) -> AirbyteStateMessage {
        serde_json::from_value(v).unwrap()
    }

    fn stream_state(name: &str, id: i64) -> AirbyteStateMessage {
        state(
            json!({"type": "STREAM", "stream": {"stream_descriptor": {"name": name},
            "stream_state": {"cursor": id}}, "sourceStats": {"recordCount": 2.0}, "id": id}),
        )
    }

    #[test]
    fn a_state_waits_for_every_record_before_it() {
        let mut t = StateTracker::new();
        let (s0, w0) = t.record("a", None);
        let (s1, w1) = t.record("b", None);
        t.hold(s0); // batch of a
        t.hold(s1); // batch of b
        t.state(stream_state("a", 7), JsonObject::new());
        let (_, w2) = t.record("a", None);
        assert_ne!(w2.stream, w0.stream, "a new window after a's state");
        t.state(stream_state("b", 8), JsonObject::new());
        assert!(t.ready().is_empty());
        t.settle(w0, 1, 0);
        t.release(s0);
        assert!(
            t.ready().is_empty(),
            "b's record (before a's state) is still running"
        );
        t.settle(w1, 0, 1);
        t.release(s1);
        let out = t.ready();
        assert_eq!(out.len(), 2, "both states, in order");
        let a = serde_json::to_value(&out[0].0).unwrap();
        assert_eq!(a["id"], 7, "id kept as an integer");
        assert_eq!(a["sourceStats"]["recordCount"], 2.0);
        assert_eq!(
            a["destinationStats"],
            json!({"recordCount": 1.0, "rejectedRecordCount": 0.0})
        );
        let b = serde_json::to_value(&out[1].0).unwrap();
        assert_eq!(
            b["destinationStats"],
            json!({"recordCount": 0.0, "rejectedRecordCount": 1.0})
        );
        assert_eq!(t.waiting(), 0);
    }

    #[test]
    fn states_without_records_pass_at_once_and_global_windows_count_all_streams() {
        let mut t = StateTracker::new();
        t.state(stream_state("empty", 1), JsonObject::new());
        let out = t.ready();
        assert_eq!(out.len(), 1);
        assert_eq!(
            serde_json::to_value(&out[0].0).unwrap()["destinationStats"],
            json!({"recordCount": 0.0, "rejectedRecordCount": 0.0})
        );
        let (_, wa) = t.record("a", None);
        let (_, wb) = t.record("b", Some("ns"));
        t.settle(wa, 1, 0);
        t.settle(wb, 1, 0);
        let global = state(
            json!({"type": "GLOBAL", "global": {"shared_state": {"lsn": 5},
            "stream_states": []}, "global_": null, "id": 3, "extra_key": [1]}),
        );
        let mut envelope = JsonObject::new();
        envelope.insert("note".into(), json!("kept"));
        t.state(global, envelope);
        let out = t.ready();
        let v = serde_json::to_value(&out[0].0).unwrap();
        assert_eq!(v["destinationStats"]["recordCount"], 2.0);
        assert_eq!(v["extra_key"], json!([1]));
        assert_eq!(v["id"], 3);
        assert!(v.get("global_").is_none());
        assert_eq!(out[0].1["note"], "kept");
    }

    #[test]
    fn holds_nest_and_later_work_does_not_block_earlier_states() {
        let mut t = StateTracker::new();
        let (s0, w0) = t.record("a", None);
        t.hold(s0);
        t.hold(s0); // e.g. a batch and a reject file starting at the same record
        t.state(stream_state("a", 1), JsonObject::new());
        let (s1, _) = t.record("a", None);
        t.hold(s1);
        t.settle(w0, 1, 0);
        t.release(s0);
        assert!(t.ready().is_empty());
        t.release(s0);
        assert_eq!(
            t.ready().len(),
            1,
            "the later hold (after the state) does not block it"
        );
        assert_eq!(t.received(), 2);
    }
}
