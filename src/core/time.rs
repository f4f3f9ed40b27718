//! Wall-clock time as Unix milliseconds, and a clock that tests can move.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

/// A UTC instant truncated to whole milliseconds since the Unix epoch.
///
/// Both stores keep times in this unit, and the wire shows them as
/// `YYYY-MM-DDTHH:MM:SS.sssZ`, the only form the Better Auth client turns back into a `Date`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub i64);

impl Millis {
    /// Formats the instant with exactly three fractional digits, as JavaScript's `toISOString`.
    pub fn to_wire(self) -> String {
        let at = DateTime::<Utc>::from_timestamp_millis(self.0).unwrap_or_default();
        at.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Seconds from `self` until `later`, rounded up to a whole second and never negative.
    pub fn seconds_until(self, later: Millis) -> u64 {
        u64::try_from((later.0 - self.0 + 999).div_euclid(1000)).unwrap_or(0)
    }
}

impl From<i64> for Millis {
    fn from(millis: i64) -> Self {
        Millis(millis)
    }
}

impl std::ops::Add<Duration> for Millis {
    type Output = Millis;

    fn add(self, rhs: Duration) -> Millis {
        Millis(self.0.saturating_add(duration_millis(rhs)))
    }
}

impl std::ops::Sub<Duration> for Millis {
    type Output = Millis;

    fn sub(self, rhs: Duration) -> Millis {
        Millis(self.0.saturating_sub(duration_millis(rhs)))
    }
}

fn duration_millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The source of the current time: the system clock, or a manual clock that moves only on request.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// `None` reads the system clock; `Some` holds the manual clock's current instant.
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// A clock that reads the system time.
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock that starts at `start` and moves only through [`Clock::advance`].
    pub fn manual(start: Millis) -> Self {
        Self { manual: Some(Arc::new(AtomicI64::new(start.0))) }
    }

    /// The current instant.
    pub fn now(&self) -> Millis {
        match &self.manual {
            Some(instant) => Millis(instant.load(Ordering::SeqCst)),
            None => Millis(Utc::now().timestamp_millis()),
        }
    }

    /// Moves a manual clock forward; a system clock ignores the call.
    pub fn advance(&self, by: Duration) {
        if let Some(instant) = &self.manual {
            instant.fetch_add(duration_millis(by), Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_has_three_fractional_digits() {
        assert_eq!(Millis(0).to_wire(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Millis(1_796_411_025_975).to_wire(), "2026-12-04T19:03:45.975Z");
    }

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = Clock::manual(Millis(1_000));
        assert_eq!(clock.now(), Millis(1_000));

        clock.advance(Duration::from_secs(2));

        assert_eq!(clock.now(), Millis(3_000));
    }

    #[test]
    fn seconds_until_never_goes_negative() {
        assert_eq!(Millis(5_000).seconds_until(Millis(1_000)), 0);
        assert_eq!(Millis(1_000).seconds_until(Millis(5_999)), 5);
        assert_eq!(Millis(1_000).seconds_until(Millis(5_000)), 4);
    }
}
