//! The tie-safe checkpoint rule.
//!
//! Rows arrive ordered by their cursor (`ORDER BY SystemModstamp`). After any prefix of them has
//! been emitted, the *safe cursor* is the largest value `c` such that every row with cursor ≤ `c`
//! has been emitted. Because the rows are ordered, that is the largest emitted value strictly
//! below the last emitted one: rows equal to the last value may continue on the next page (a run
//! of equal values crossing a page boundary holds the checkpoint back). When the query is
//! exhausted, every row is out and the last value itself is safe.
//!
//! If rows ever arrive out of order the tracker stops advancing (the ordering promise is broken,
//! so no mid-query claim can be trusted) until the query is exhausted.

/// Tracks the safe cursor of one ordered query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointTracker<T> {
    /// The last value seen.
    last: Option<T>,
    /// The largest value seen strictly below `last`.
    below_last: Option<T>,
    /// The largest value seen.
    max: Option<T>,
    /// Frozen safe value once the order was violated.
    frozen: Option<Option<T>>,
}

impl<T> Default for CheckpointTracker<T> {
    fn default() -> Self {
        Self {
            last: None,
            below_last: None,
            max: None,
            frozen: None,
        }
    }
}

impl<T: Ord + Clone> CheckpointTracker<T> {
    /// A tracker that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that a row with cursor `value` was emitted. Returns `false` if it broke the
    /// ascending order (the tracker then stops advancing).
    pub fn observe(&mut self, value: &T) -> bool {
        if self.max.as_ref().is_none_or(|m| value > m) {
            self.max = Some(value.clone());
        }
        match &self.last {
            Some(last) if value < last => {
                if self.frozen.is_none() {
                    self.frozen = Some(self.below_last.clone());
                }
                false
            }
            Some(last) if value == last => true,
            _ => {
                self.below_last = self.last.take();
                self.last = Some(value.clone());
                true
            }
        }
    }

    /// The safe cursor mid-query: every row with cursor ≤ it has been emitted. `None` when no
    /// value is safe yet.
    pub fn safe(&self) -> Option<&T> {
        match &self.frozen {
            Some(frozen) => frozen.as_ref(),
            None => self.below_last.as_ref(),
        }
    }

    /// The safe cursor once the query is exhausted: the largest value seen.
    pub fn finished(&self) -> Option<&T> {
        self.max.as_ref()
    }

    /// Whether the ascending order was ever broken.
    pub fn order_broken(&self) -> bool {
        self.frozen.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn equal_run_across_pages_holds_back() {
        let mut t = CheckpointTracker::new();
        assert_eq!(t.safe(), None);
        for v in [1, 2, 2] {
            t.observe(&v);
        }
        // Page boundary here: more 2s may follow.
        assert_eq!(t.safe(), Some(&1));
        for v in [2, 2] {
            t.observe(&v);
        }
        assert_eq!(t.safe(), Some(&1), "still inside the run of 2s");
        t.observe(&3);
        assert_eq!(t.safe(), Some(&2));
        assert_eq!(t.finished(), Some(&3));
    }

    #[test]
    fn single_value_is_never_safe_mid_query() {
        let mut t = CheckpointTracker::new();
        for _ in 0..5 {
            t.observe(&7);
        }
        assert_eq!(t.safe(), None);
        assert_eq!(t.finished(), Some(&7));
        assert_eq!(CheckpointTracker::<i32>::new().finished(), None);
    }

    #[test]
    fn out_of_order_freezes() {
        let mut t = CheckpointTracker::new();
        for v in [1, 2, 3] {
            assert!(t.observe(&v));
        }
        assert!(!t.observe(&0));
        assert!(t.order_broken());
        assert_eq!(t.safe(), Some(&2));
        t.observe(&10);
        t.observe(&11);
        assert_eq!(t.safe(), Some(&2), "no advance after a broken order");
        assert_eq!(t.finished(), Some(&11));
    }

    proptest! {
        /// After every page, the safe value is exactly the largest `c` among the data such
        /// that every row with cursor <= c has been emitted.
        #[test]
        fn safe_is_the_largest_fully_emitted_value(
            mut values in proptest::collection::vec(0u8..20, 0..60),
            cuts in proptest::collection::vec(1usize..8, 1..20),
        ) {
            values.sort_unstable();
            let mut t = CheckpointTracker::new();
            let mut emitted = 0usize;
            let mut cuts = cuts.into_iter().cycle();
            while emitted < values.len() {
                let page = cuts.next().unwrap_or(1).min(values.len() - emitted);
                for v in &values[emitted..emitted + page] {
                    prop_assert!(t.observe(v));
                }
                emitted += page;
                let done = &values[..emitted];
                let rest = &values[emitted..];
                // Oracle: the largest emitted value all of whose rows are emitted.
                let oracle = done
                    .iter()
                    .copied()
                    .filter(|c| rest.iter().all(|r| r > c))
                    .max();
                // Mid-query the tracker cannot know whether the last value continues, so it
                // must equal the oracle computed as if more rows equal to the last may follow.
                let last = *done.last().unwrap();
                let pessimistic = done.iter().copied().filter(|c| *c < last).max();
                prop_assert_eq!(t.safe().copied(), pessimistic);
                if let Some(s) = t.safe() {
                    // Soundness: every row <= safe is emitted.
                    prop_assert!(rest.iter().all(|r| r > s));
                    prop_assert!(oracle.is_some_and(|o| o >= *s));
                }
                if rest.first().is_some_and(|r| *r > last) {
                    // The page boundary fell between distinct values: only the last value is
                    // unknown to the tracker, so it is at most one step behind the oracle.
                    prop_assert_eq!(oracle, Some(last));
                }
            }
            prop_assert_eq!(t.finished().copied(), values.last().copied());
        }
    }
}
