//! Retry policy: exponential backoff with full jitter; without a limit by
//! default (a streaming job rides out an outage of its server), bounded by
//! attempts or by time when configured. Warnings are rate-limited.

use std::sync::Mutex;

use flowline_connector_api::Backoff;
use std::time::{Duration, Instant};

/// When to stop retrying, and how long to wait in between.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Attempts in all (first included); `None`: no limit.
    pub max_attempts: Option<u32>,
    /// Time since the first failure after which to give up; `None`: no limit.
    pub max_duration: Option<Duration>,
    /// First backoff.
    pub initial: Duration,
    /// Cap.
    pub max: Duration,
}

/// Rate-limits a warning that repeats while a server is down: the first
/// one at once, then at most one per period (shared by the requests in
/// flight).
#[derive(Debug)]
pub struct Every {
    period: Duration,
    last: Mutex<Option<Instant>>,
}

impl Every {
    /// At most once per `period`.
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            last: Mutex::new(None),
        }
    }

    /// Whether to warn now (and if so, the next one waits a period).
    pub fn due(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match *last {
            Some(t) if t.elapsed() < self.period => false,
            _ => {
                *last = Some(Instant::now());
                true
            }
        }
    }

    /// Forgets the last warning (the server answered again), so that the
    /// next outage is reported at once.
    pub fn reset(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Policy {
    /// Whether to give up after `attempts` attempts, the first failure
    /// `elapsed` ago.
    pub fn gives_up(&self, attempts: u32, elapsed: Duration) -> bool {
        self.max_attempts.is_some_and(|m| attempts >= m)
            || self.max_duration.is_some_and(|d| elapsed >= d)
    }

    /// The waits between attempts: exponential with full jitter, from
    /// `initial`, capped at `max`.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.initial, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = Policy {
            max_attempts: Some(5),
            max_duration: None,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let mut b = p.backoff();
        for a in 0..30 {
            let cap = Duration::from_millis(100)
                .saturating_mul(1 << a.min(20))
                .min(Duration::from_secs(1));
            assert!(b.delay(a) <= cap);
        }
    }

    #[test]
    fn no_limit_by_default_and_either_limit_when_set() {
        let mut p = Policy {
            max_attempts: None,
            max_duration: None,
            initial: Duration::from_millis(1),
            max: Duration::from_millis(1),
        };
        assert!(!p.gives_up(u32::MAX, Duration::from_secs(86_400 * 365)));
        p.max_attempts = Some(3);
        assert!(!p.gives_up(2, Duration::ZERO) && p.gives_up(3, Duration::ZERO));
        p.max_attempts = None;
        p.max_duration = Some(Duration::from_secs(60));
        assert!(!p.gives_up(1000, Duration::from_secs(59)));
        assert!(p.gives_up(1, Duration::from_secs(60)));
    }

    #[test]
    fn warnings_are_rate_limited() {
        let e = Every::new(Duration::from_secs(60));
        assert!(e.due());
        assert!(!e.due());
        e.reset();
        assert!(e.due());
    }
}
