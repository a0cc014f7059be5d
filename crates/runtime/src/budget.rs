//! The job's bound on keyed state (`JobConfig::max_state_entries`): one
//! count shared by every partition and worker of the process.
//!
//! An entry is a key in one open window (its accumulator): the state
//! that grows with the keys of the input. Windows count entries where they
//! already tell the key owners ([`crate::owners`]) that a piece of state
//! is created or gone, so the count is the live state, not every key
//! seen. Keyed process states (the anomaly detector's) have a budget of
//! their own with the same limit: a key new to a full one gets no state,
//! and its function says what to do with the element instead
//! (`KeyedProcessFunction::without_state`; by default a dead letter). A window about to open new entries for a record reserves them
//! first, all of the record's windows at once; when that would pass the
//! limit, the record is a dead letter with the reason, counted nowhere,
//! and the job goes on. Without the bound a cardinality explosion (a host
//! name that changes with every event) grows memory until the process is
//! killed, and the replay after the restart grows it again: a crash loop.
//!
//! State restored from a checkpoint is counted but never refused: it
//! exists already. So the count may stand above the limit after a restore
//! with a lower one; new entries wait until it is below.
//!
//! Which record is refused follows arrival order: behind the exchange with
//! several source partitions, a replay may refuse another one.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The least time between two warnings of one budget: windows give back
/// their entries key group by key group, so a budget under pressure fills
/// again many times a second.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Keys in open windows.
    Windows,
    /// Keyed process states.
    Process,
}

/// Live keyed-state entries of the job against their limit.
#[derive(Debug)]
pub(crate) struct StateBudget {
    kind: Kind,
    limit: u64,
    used: AtomicU64,
    /// Refusals not yet in a warning.
    refused: AtomicU64,
    /// When the last warning was due, in ms since `born` (0: never).
    warned: AtomicU64,
    born: Instant,
}

impl Default for StateBudget {
    fn default() -> Self {
        Self::new(Kind::Windows, None)
    }
}

impl StateBudget {
    /// A budget of `limit` entries (`None`: no limit).
    pub(crate) fn new(kind: Kind, limit: Option<u64>) -> Self {
        Self {
            kind,
            limit: limit.unwrap_or(u64::MAX),
            used: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            warned: AtomicU64::new(0),
            born: Instant::now(),
        }
    }

    /// Live entries.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Relaxed)
    }

    /// Counts `n` entries that exist already or may not be refused.
    pub(crate) fn take(&self, n: u64) {
        if n > 0 {
            self.used.fetch_add(n, Relaxed);
        }
    }

    /// Reserves `n` new entries, or says why not: the limit would be
    /// passed.
    pub(crate) fn reserve(&self, n: u64) -> Result<(), String> {
        if n == 0 {
            return Ok(());
        }
        let limit = self.limit;
        match self.used.fetch_update(Relaxed, Relaxed, |u| {
            u.checked_add(n).filter(|&t| t <= limit)
        }) {
            Ok(_) => Ok(()),
            Err(used) => {
                let warn = self.warning_due(Instant::now());
                // The same words for every record refused alike (the
                // count held is in the log and the gauge): reasons are
                // tallied by their text.
                Err(match self.kind {
                    Kind::Windows => {
                        if let Some(refused) = warn {
                            tracing::warn!(limit, used, refused, "keyed state is full: records that would open new windows of a key go to the dead-letter output until windows close");
                        }
                        format!("the job's keyed state is full: this record would open {n} more entries (one per key and open window) past max_state_entries = {limit}. It is not counted. Fix: find what makes new keys (a host or metric name that changes with every event), or raise [job] max_state_entries")
                    }
                    Kind::Process => {
                        if let Some(refused) = warn {
                            tracing::warn!(limit, used, refused, "keyed process state is full: keys new to a keyed process get no state until states are cleared");
                        }
                        format!("the job's keyed process state is full: {limit} keys hold state (max_state_entries), and this key has none. Fix: find what makes new keys (a host or metric name that changes with every event), or raise [job] max_state_entries, or let states go sooner ([anomaly] forget_after)")
                    }
                })
            }
        }
    }

    /// Counts a refusal at `now`: the refusals since the last warning when
    /// one is due (the first, then at most one per [`WARN_EVERY`]).
    fn warning_due(&self, now: Instant) -> Option<u64> {
        self.refused.fetch_add(1, Relaxed);
        // 1 ms past `born` at least: 0 stands for never.
        let at = (now.saturating_duration_since(self.born).as_millis() as u64).max(1);
        let last = self.warned.load(Relaxed);
        let due = last == 0 || at.saturating_sub(last) >= WARN_EVERY.as_millis() as u64;
        (due && self
            .warned
            .compare_exchange(last, at, Relaxed, Relaxed)
            .is_ok())
        .then(|| self.refused.swap(0, Relaxed))
    }

    /// `n` entries are gone.
    pub(crate) fn give(&self, n: u64) {
        if n > 0 {
            let _ = self
                .used
                .fetch_update(Relaxed, Relaxed, |u| Some(u.saturating_sub(n)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_up_to_the_limit_all_or_nothing() {
        let b = StateBudget::new(Kind::Windows, Some(5));
        b.reserve(3).unwrap();
        // Two more fit; three would pass the limit, so none is taken.
        let e = b.reserve(3).unwrap_err();
        assert!(
            e.contains("past max_state_entries = 5.") && e.contains("open 3 more"),
            "{e}"
        );
        assert_eq!(b.used(), 3);
        b.reserve(2).unwrap();
        assert!(b.reserve(1).is_err());
        b.give(1);
        b.reserve(1).unwrap();
        assert_eq!(b.used(), 5);
    }

    #[test]
    fn restored_entries_count_but_are_never_refused() {
        let b = StateBudget::new(Kind::Windows, Some(2));
        b.take(4);
        assert!(b.reserve(1).is_err());
        b.give(3);
        assert_eq!(b.used(), 1);
        b.reserve(1).unwrap();
        // No limit: everything fits.
        let u = StateBudget::new(Kind::Windows, None);
        u.take(u64::MAX - 1);
        u.reserve(1).unwrap();
        assert!(u.reserve(1).is_err(), "the count itself cannot overflow");
    }

    #[test]
    fn a_budget_under_pressure_warns_once_per_period_with_the_count() {
        let b = StateBudget::new(Kind::Windows, Some(1));
        let t0 = b.born;
        assert_eq!(b.warning_due(t0), Some(1));
        // Refusals within the period are counted into the next warning.
        for ms in [1, 500, 9_999] {
            assert_eq!(b.warning_due(t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(b.warning_due(t0 + Duration::from_millis(10_001)), Some(4));
        assert_eq!(b.warning_due(t0 + Duration::from_millis(10_002)), None);
    }
}
