//! Where `emitted_at` comes from: the system clock in production, a fixed one in tests.

use std::time::{SystemTime, UNIX_EPOCH};

/// A source of "now" in epoch milliseconds.
pub trait Clock {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            // A clock set before 1970: report the epoch rather than a negative time.
            Err(_) => 0,
        }
    }
}

/// A clock that always returns the same instant (for tests and reproducible output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedClock(pub i64);

impl Clock for FixedClock {
    fn now_millis(&self) -> i64 {
        self.0
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now_millis(&self) -> i64 {
        (**self).now_millis()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_is_in_milliseconds() {
        let now = SystemClock.now_millis();
        // After 2020-01-01 and before 2100-01-01, in ms.
        assert!(now > 1_577_836_800_000 && now < 4_102_444_800_000, "{now}");
    }

    #[test]
    fn fixed_clock_is_fixed() {
        assert_eq!(FixedClock(42).now_millis(), 42);
        let by_ref: &dyn Clock = &FixedClock(7);
        assert_eq!(by_ref.now_millis(), 7);
    }
}
