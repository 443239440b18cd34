//! Joining the rows of a wide object read through REST in several column chunks.
//!
//! A REST query travels in the URL, so an object with hundreds of selected fields is read as
//! several queries with the same WHERE and ORDER BY, each selecting the key (`Id`) and a share of
//! the fields. Their rows come back in the same order, so [`Merger`] walks them in lockstep and
//! joins each row's parts by key, holding only a bounded look-ahead in memory.
//!
//! Rows can differ between the queries when data changes while they run (a row updated out of
//! the window, a row that became visible late, a hard delete). Such a row is never emitted half:
//! its key goes to [`Merger::leftovers`] so the caller can fetch it again by key, and whatever
//! no longer matches then is gone from the range for good (it will be read where it moved to).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;

use serde_json::{Map, Value};

/// One REST record.
pub type Record = Map<String, Value>;

/// A stream of records of one column chunk, in query order.
pub trait ChunkSource {
    /// The source's error.
    type Error;
    /// The next record, or `None` when the query is exhausted.
    fn next_record(&mut self) -> impl Future<Output = Result<Option<Record>, Self::Error>> + Send;
}

/// How far a chunk is read ahead looking for a row, and how many unmatched rows it holds.
pub const DEFAULT_LOOKAHEAD: usize = 2_000;

struct Chunk<S> {
    source: S,
    /// Rows read ahead that no primary row has claimed yet, by key, with their arrival order.
    orphans: HashMap<String, Record>,
    order: VecDeque<String>,
}

/// Joins the chunks' rows by key; the first chunk leads.
pub struct Merger<S> {
    chunks: Vec<Chunk<S>>,
    key: String,
    lookahead: usize,
    leftovers: BTreeSet<String>,
}

impl<S> std::fmt::Debug for Merger<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Merger")
            .field("chunks", &self.chunks.len())
            .field("key", &self.key)
            .field("leftovers", &self.leftovers.len())
            .finish()
    }
}

fn key_of(record: &Record, key: &str) -> Option<String> {
    record.get(key).and_then(Value::as_str).map(str::to_owned)
}

impl<S: ChunkSource + Send> Merger<S> {
    /// A merger over `sources` (the first leads) joining on `key`.
    pub fn new(sources: Vec<S>, key: impl Into<String>, lookahead: usize) -> Self {
        Self {
            chunks: sources
                .into_iter()
                .map(|source| Chunk {
                    source,
                    orphans: HashMap::new(),
                    order: VecDeque::new(),
                })
                .collect(),
            key: key.into(),
            lookahead: lookahead.max(1),
            leftovers: BTreeSet::new(),
        }
    }

    /// The next complete row, or `None` when the leading chunk is exhausted.
    pub async fn next(&mut self) -> Result<Option<Record>, S::Error> {
        'rows: loop {
            let Some(first) = self.chunks.first_mut() else {
                return Ok(None);
            };
            let Some(mut row) = first.source.next_record().await? else {
                return Ok(None);
            };
            let Some(id) = key_of(&row, &self.key) else {
                tracing::warn!(key = %self.key, "a row without its key cannot be joined; skipped");
                continue;
            };
            for i in 1..self.chunks.len() {
                match self.find(i, &id).await? {
                    Some(part) => {
                        for (k, v) in part {
                            row.entry(k).or_insert(v);
                        }
                    }
                    None => {
                        self.leftovers.insert(id);
                        continue 'rows;
                    }
                }
            }
            return Ok(Some(row));
        }
    }

    /// Finds the row `id` in chunk `i`: among its orphans, else reading ahead.
    async fn find(&mut self, i: usize, id: &str) -> Result<Option<Record>, S::Error> {
        let lookahead = self.lookahead;
        let key = self.key.clone();
        let Some(chunk) = self.chunks.get_mut(i) else {
            return Ok(None);
        };
        if let Some(part) = chunk.orphans.remove(id) {
            chunk.order.retain(|k| k != id);
            return Ok(Some(part));
        }
        for _ in 0..lookahead {
            let Some(part) = chunk.source.next_record().await? else {
                return Ok(None);
            };
            match key_of(&part, &key) {
                Some(k) if k == id => return Ok(Some(part)),
                Some(k) => {
                    chunk.order.push_back(k.clone());
                    chunk.orphans.insert(k, part);
                    if chunk.order.len() > lookahead
                        && let Some(old) = chunk.order.pop_front()
                    {
                        chunk.orphans.remove(&old);
                        self.leftovers.insert(old);
                    }
                }
                None => {}
            }
        }
        Ok(None)
    }

    /// Whether some row already had to be set aside for fetching again.
    pub fn has_leftovers(&self) -> bool {
        !self.leftovers.is_empty()
    }

    /// Keys of rows that could not be joined: rows a chunk lacked, and rows only later chunks
    /// had. Fetch them again by key.
    pub fn leftovers(mut self) -> BTreeSet<String> {
        for chunk in &mut self.chunks {
            self.leftovers.extend(chunk.orphans.drain().map(|(k, _)| k));
        }
        self.leftovers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Mem(VecDeque<Record>);

    impl ChunkSource for Mem {
        type Error = std::convert::Infallible;
        async fn next_record(&mut self) -> Result<Option<Record>, Self::Error> {
            Ok(self.0.pop_front())
        }
    }

    fn chunk(rows: &[(&str, &str, i64)]) -> Mem {
        Mem(rows
            .iter()
            .map(|(id, field, v)| {
                let mut r = Record::new();
                r.insert("Id".into(), json!(id));
                r.insert((*field).into(), json!(v));
                r
            })
            .collect())
    }

    async fn drain(mut m: Merger<Mem>) -> (Vec<Value>, BTreeSet<String>) {
        let mut out = Vec::new();
        while let Some(r) = m.next().await.unwrap() {
            out.push(Value::Object(r));
        }
        (out, m.leftovers())
    }

    fn run<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn aligned_chunks_join_row_by_row() {
        let a = chunk(&[("1", "a", 10), ("2", "a", 20)]);
        let b = chunk(&[("1", "b", 11), ("2", "b", 21)]);
        let c = chunk(&[("1", "c", 12), ("2", "c", 22)]);
        let (rows, left) = run(drain(Merger::new(vec![a, b, c], "Id", 10)));
        assert_eq!(
            rows,
            vec![
                json!({"Id": "1", "a": 10, "b": 11, "c": 12}),
                json!({"Id": "2", "a": 20, "b": 21, "c": 22})
            ]
        );
        assert!(left.is_empty());
    }

    #[test]
    fn a_row_missing_from_a_later_chunk_is_left_over_not_emitted_half() {
        // Row 2 changed (left the window) between the first and the second query.
        let a = chunk(&[("1", "a", 10), ("2", "a", 20), ("3", "a", 30)]);
        let b = chunk(&[("1", "b", 11), ("3", "b", 31)]);
        let (rows, left) = run(drain(Merger::new(vec![a, b], "Id", 10)));
        assert_eq!(
            rows,
            vec![
                json!({"Id": "1", "a": 10, "b": 11}),
                json!({"Id": "3", "a": 30, "b": 31})
            ]
        );
        assert_eq!(left, BTreeSet::from(["2".to_owned()]));
    }

    #[test]
    fn a_row_only_a_later_chunk_has_is_left_over() {
        // Row 9 became visible after the first query ran.
        let a = chunk(&[("1", "a", 10), ("3", "a", 30)]);
        let b = chunk(&[("1", "b", 11), ("9", "b", 91), ("3", "b", 31)]);
        let (rows, left) = run(drain(Merger::new(vec![a, b], "Id", 10)));
        assert_eq!(rows.len(), 2);
        assert_eq!(left, BTreeSet::from(["9".to_owned()]));
    }

    #[test]
    fn look_ahead_is_bounded() {
        let a = chunk(&[("1", "a", 1), ("2", "a", 2)]);
        let b = chunk(&[
            ("x", "b", 0),
            ("y", "b", 0),
            ("z", "b", 0),
            ("1", "b", 1),
            ("2", "b", 2),
        ]);
        let (rows, left) = run(drain(Merger::new(vec![a, b], "Id", 2)));
        // Row 1 is beyond the look-ahead of 2; it is fetched again later, never lost.
        assert!(left.contains("1"), "{left:?}");
        let emitted: usize = rows.len();
        assert_eq!(
            emitted
                + left
                    .iter()
                    .filter(|k| ["1", "2"].contains(&k.as_str()))
                    .count(),
            2
        );
    }
}
