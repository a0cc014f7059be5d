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
