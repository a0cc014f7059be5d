//! Retry policy: bounded attempts, exponential backoff with full jitter.

use std::time::Duration;

/// Bounded retries.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Attempts in all.
    pub max_attempts: u32,
    /// First backoff.
    pub initial: Duration,
    /// Cap.
    pub max: Duration,
}

/// A jitter source (xorshift; no need for a cryptographic one).
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeded from the clock and a counter.
    pub fn new() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Self(t | 1)
    }

    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Self::new()
    }
}

impl Policy {
    /// The wait before attempt `attempt + 1` (0-based `attempt`): uniform in
    /// `[0, min(max, initial × 2^attempt)]`.
    pub fn backoff(&self, attempt: u32, j: &mut Jitter) -> Duration {
        let cap = self
            .initial
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max);
        cap.mul_f64(j.unit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = Policy {
            max_attempts: 5,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let mut j = Jitter::new();
        for a in 0..30 {
            let cap = Duration::from_millis(100)
                .saturating_mul(1 << a.min(20))
                .min(Duration::from_secs(1));
            assert!(p.backoff(a, &mut j) <= cap);
        }
    }
}
