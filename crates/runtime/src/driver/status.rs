//! What the driver shows of itself: the job's watermark and partitions in
//! the status, and `Metrics::running` while its loop runs.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::Driver;
use crate::metrics::Metrics;
use crate::operator::NO_TIME;

impl Driver {
    pub(super) fn update_job_watermark(&self) {
        let idle = self.cfg.idle_timeout;
        let wm = self
            .parts
            .values()
            .filter(|p| p.last_seen.elapsed() < idle)
            .map(|p| p.watermark)
            .min();
        if let Some(wm) = wm {
            self.metrics.watermark.store(wm, Relaxed);
        }
        let mut parts: Vec<crate::metrics::PartitionStatus> = self
            .parts
            .iter()
            .map(|(id, p)| crate::metrics::PartitionStatus {
                id: id.to_string(),
                watermark: (p.watermark != NO_TIME).then_some(p.watermark),
                next_offset: p.next_offset,
                idle: p.last_seen.elapsed() >= idle,
                active: p.live,
            })
            .collect();
        parts.sort_by(|a, b| a.id.cmp(&b.id));
        let (job, graph) = (&self.cfg.name, &self.graph);
        self.metrics.set_status(|s| {
            s.job.clone_from(job);
            s.graph.clone_from(graph);
            s.partitions = parts;
        });
    }

    /// Drops the key owners no partition can need any more
    /// ([`KeyOwners::sweep`](crate::owners::KeyOwners::sweep)): the
    /// minimum is over every partition read here, idle ones included (a
    /// partition whose watermark stands still could still take a record of
    /// an old window when it reads again), and none is dropped while one
    /// has no watermark yet, while a partition the source announced has not
    /// sent a record, or when the source never says which partitions it
    /// reads (one could start later with old records). At most every 100
    /// ms: a sweep reads the whole table.
    pub(super) fn sweep_owners(&mut self) {
        // The gauge of keyed state, with or without the table.
        self.metrics
            .state_entries
            .store(self.owners.state_entries(), Relaxed);
        self.metrics
            .process_states
            .store(self.owners.process_states(), Relaxed);
        if !self.cfg.partitioned_by_key
            || self.swept.elapsed() < std::time::Duration::from_millis(100)
        {
            return;
        }
        self.swept = std::time::Instant::now();
        let all_read = self
            .announced
            .as_ref()
            .is_some_and(|a| a.iter().all(|id| self.parts.contains_key(id)));
        let wm = self
            .parts
            .values()
            .filter(|p| p.live)
            .map(|p| p.watermark)
            .min()
            .filter(|&w| w != NO_TIME && all_read);
        let left = match wm {
            Some(wm) => self.owners.sweep(wm),
            None => self.owners.len(),
        };
        self.metrics.key_owners.store(left as u64, Relaxed);
    }
}

/// `Metrics::running` while the driver runs its loop, cleared however the
/// run ends (an error returns early).
pub(super) struct Running(Arc<Metrics>);

impl Running {
    pub(super) fn set(m: Arc<Metrics>) -> Self {
        m.running.store(true, std::sync::atomic::Ordering::Relaxed);
        m.restoring
            .store(false, std::sync::atomic::Ordering::Relaxed);
        Self(m)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0
            .running
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.0
            .ended
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
