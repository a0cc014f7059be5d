//! [`Backoff`]: how long to wait before trying a retryable operation again.
//! Since API 2.0.

use std::time::Duration;

/// Exponential backoff with full jitter: before retry `n` (0-based), a
/// uniform wait in `[0, min(max, initial × 2ⁿ)]`, so that many clients that
/// failed together do not retry together. The jitter comes from a seeded
/// xorshift generator: [`Backoff::seeded`] gives the same waits on every
/// run (tests), [`Backoff::new`] seeds from the clock.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    state: u64,
}

impl Backoff {
    /// Waits from `initial`, doubling, capped at `max`; jitter seeded from
    /// the clock.
    pub fn new(initial: Duration, max: Duration) -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Self::seeded(initial, max, t)
    }

    /// As [`Backoff::new`], with the jitter seeded by `seed`.
    pub fn seeded(initial: Duration, max: Duration, seed: u64) -> Self {
        Self {
            initial,
            max,
            state: seed | 1,
        }
    }

    /// The longest wait before retry `attempt`: `min(max, initial × 2ⁿ)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.initial
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max)
    }

    /// The wait before retry `attempt`: uniform in `[0, ceiling(attempt)]`.
    pub fn delay(&mut self, attempt: u32) -> Duration {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let unit = (self.state >> 11) as f64 / (1u64 << 53) as f64;
        self.ceiling(attempt).mul_f64(unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_is_capped_and_jittered() {
        let mut b = Backoff::seeded(Duration::from_millis(100), Duration::from_secs(10), 7);
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(40), Duration::from_secs(10));
        let waits: Vec<Duration> = (0..50).map(|_| b.delay(10)).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(10)));
        let distinct: std::collections::BTreeSet<_> = waits.iter().collect();
        assert!(distinct.len() > 40, "jittered: {distinct:?}");
        let mut again = Backoff::seeded(Duration::from_millis(100), Duration::from_secs(10), 7);
        assert_eq!(
            waits,
            (0..50).map(|_| again.delay(10)).collect::<Vec<_>>(),
            "seeded"
        );
    }
}
