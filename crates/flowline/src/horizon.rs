//! The latest event time a job accepts: the wall clock plus `[window]
//! max_future`. One event from a clock years ahead would otherwise move the
//! watermark past every later event and make them all late.
//!
//! Reading the clock for every record cost about 3 % of the job's CPU, so a
//! [`Horizon`] keeps the bound it read last and reads the clock again only
//! for an event past it. That is exact, not a coarser clock: an event
//! within a bound that held when it was read is within the bound now, as
//! the wall clock only moves on; an event past the kept bound is judged
//! against a fresh reading, as before. (A wall clock stepped back keeps the
//! older, larger bound until it passes it again: the same events a job
//! started a moment earlier would have taken.)

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::Duration;

/// The latest event time accepted, in ms since the epoch.
#[derive(Debug)]
pub struct Horizon {
    /// `max_future` in ms; `None` for a fixed bound.
    ahead: Option<i64>,
    /// The bound read last (or the fixed one).
    latest: AtomicI64,
}

impl Horizon {
    /// A fixed bound (`i64::MAX`: none).
    pub fn fixed(latest: i64) -> Self {
        Self {
            ahead: None,
            latest: AtomicI64::new(latest),
        }
    }

    /// The wall clock plus `ahead`.
    pub fn wall_clock(ahead: Duration) -> Self {
        Self {
            ahead: Some(i64::try_from(ahead.as_millis()).unwrap_or(i64::MAX)),
            latest: AtomicI64::new(i64::MIN),
        }
    }

    /// `Ok` when `ts` is at or before the bound; otherwise the bound, read
    /// now, for the error.
    pub fn admit(&self, ts: i64) -> Result<(), i64> {
        let kept = self.latest.load(Relaxed);
        if ts <= kept {
            return Ok(());
        }
        let Some(ahead) = self.ahead else {
            return Err(kept);
        };
        let now = now_ms().saturating_add(ahead);
        let latest = self.latest.fetch_max(now, Relaxed).max(now);
        if ts <= latest {
            Ok(())
        } else {
            Err(latest)
        }
    }
}

/// The wall clock in ms since the epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_bound_takes_what_is_at_or_before_it() {
        let h = Horizon::fixed(10);
        assert_eq!(h.admit(10), Ok(()));
        assert_eq!(h.admit(i64::MIN), Ok(()));
        assert_eq!(h.admit(11), Err(10));
        assert_eq!(Horizon::fixed(i64::MAX).admit(i64::MAX), Ok(()));
    }

    #[test]
    fn the_wall_clock_bound_refuses_what_is_too_far_ahead() {
        let h = Horizon::wall_clock(Duration::from_secs(3_600));
        let t0 = now_ms();
        assert_eq!(h.admit(t0), Ok(()));
        let too_far = t0 + 2 * 3_600_000;
        let latest = h.admit(too_far).unwrap_err();
        assert!((t0 + 3_600_000..too_far).contains(&latest), "{latest}");
        // Within the hour ahead, even after a refusal.
        assert_eq!(h.admit(t0 + 3_500_000), Ok(()));
    }

    #[test]
    fn an_event_past_the_kept_bound_is_judged_on_a_fresh_reading() {
        // A bound read a minute ago: an event 30 s ahead of it is within
        // the bound as it stands now, and must not be refused.
        let h = Horizon::wall_clock(Duration::ZERO);
        h.latest.store(now_ms() - 60_000, Relaxed);
        assert_eq!(h.admit(now_ms() - 30_000), Ok(()));
        assert!(h.latest.load(Relaxed) >= now_ms() - 1_000);
    }

    #[test]
    fn the_clock_is_read_only_for_events_past_the_kept_bound() {
        // A kept bound far ahead of the clock is not read again for
        // events within it (a fresh reading would refuse this one).
        let h = Horizon::wall_clock(Duration::ZERO);
        let far = now_ms() + 86_400_000;
        h.latest.store(far, Relaxed);
        assert_eq!(h.admit(far), Ok(()));
        assert_eq!(h.latest.load(Relaxed), far);
    }
}
