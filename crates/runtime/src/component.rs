//! The state one task of a job keeps for the operations view
//! ([`crate::observe`]): its busy and backpressured time, and since when it
//! has been failing, disconnected or inside one call.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One task of the job (the source, the chain, a sink): its busy and
/// backpressured time, and since when it has been failing, disconnected
/// or inside one call. Each task holds its own and updates it without a
/// shared lock; [`Ops`] reads them all.
#[derive(Debug, Default)]
pub(crate) struct Component {
    pub(crate) busy_ns: AtomicU64,
    pub(crate) backpressured_ns: AtomicU64,
    /// Since when it has been failing (retrying), and why.
    pub(crate) failing: Mutex<Option<(Instant, String)>>,
    /// The source: since when it has reported no connection.
    pub(crate) disconnected: Mutex<Option<Instant>>,
    /// A sink: since when its current write or flush call has run.
    pub(crate) call_since: Mutex<Option<Instant>>,
}

impl Component {
    pub(crate) fn busy(&self, d: Duration) {
        self.busy_ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }
    pub(crate) fn backpressured(&self, d: Duration) {
        self.backpressured_ns
            .fetch_add(d.as_nanos() as u64, Relaxed);
    }
    /// It failed for a reason it retries (the first reason is kept).
    pub(crate) fn failing(&self, why: &str) {
        let mut f = lock(&self.failing);
        if f.is_none() {
            *f = Some((Instant::now(), why.to_string()));
        }
    }
    /// It works again.
    pub(crate) fn recovered(&self) {
        let mut f = lock(&self.failing);
        if f.is_some() {
            *f = None;
        }
    }
    /// What the source says of its connection (`None`: it does not know).
    pub(crate) fn connected(&self, c: Option<bool>) {
        let mut d = lock(&self.disconnected);
        match c {
            Some(false) => {
                d.get_or_insert_with(Instant::now);
            }
            _ => *d = None,
        }
    }
    pub(crate) fn call_started(&self) {
        *lock(&self.call_since) = Some(Instant::now());
    }
    pub(crate) fn call_ended(&self) {
        *lock(&self.call_since) = None;
    }
}
