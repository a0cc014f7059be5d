//! Where the driver sends what it has: what the chains emitted to the
//! sinks and the workers, dead letters and late records to theirs, and the
//! records the source itself refused to the dead-letter output.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use flowline_connector_api::Rejected;

use super::Driver;
use crate::operator::{DeadLetter, DeadLetterKind, NO_TIME};
use crate::sinks::{dead_letter, route_letters, SinkMsg};
use crate::RuntimeError;

impl Driver {
    /// Records the source refused (it could not read them): each goes to
    /// the dead-letter output once, with the source's reason and stage
    /// `source`, and its partition's offset moves past it, as for a record
    /// a decode refused.
    pub(super) async fn source_rejected(&mut self, rejected: Vec<Rejected>) {
        self.metrics
            .records_in
            .fetch_add(rejected.len() as u64, Relaxed);
        let mut letters = Vec::with_capacity(rejected.len());
        for r in rejected {
            if let Some(pid) = r.record.partition.clone() {
                self.ensure_part(&pid);
                let part = self.parts.get_mut(&pid).expect("ensured above");
                part.live = true;
                part.next_offset = part.next_offset.max(r.record.offset + 1);
            }
            letters.push(DeadLetter {
                record: r.record,
                kind: DeadLetterKind::BadRecord,
                reason: r.reason,
                stage: "source".into(),
            });
        }
        dead_letter("source", letters, &self.rejects, &self.metrics).await;
    }

    /// Sends what the chains produced to the sinks (waiting when they are
    /// full: backpressure) and the bad and late records to theirs.
    pub(super) async fn route(&mut self) -> Result<(), RuntimeError> {
        self.route_above(NO_TIME).await
    }

    /// `route`, telling the workers that the elements exchanged come from
    /// records of one partition whose watermark was at least `floor`.
    pub(super) async fn route_above(&mut self, floor: i64) -> Result<(), RuntimeError> {
        if let Some(e) = self.outbox.error.take() {
            return Err(e);
        }
        self.outbox.pending = 0;
        for (i, task) in self.sinks.iter_mut().enumerate() {
            if !self.outbox.sinks[i].is_empty() {
                let batch = std::mem::take(&mut self.outbox.sinks[i]);
                let t0 = Instant::now();
                task.send(SinkMsg::Write(batch)).await?;
                let waited = t0.elapsed();
                self.waited += waited;
                self.times.backpressured(waited);
            }
        }
        route_letters(
            &mut self.outbox,
            &self.rejects,
            &self.late_to,
            &self.metrics,
        )
        .await;
        if self.outbox.exchanged > 0 {
            self.outbox.exchanged = 0;
            if let Some(w) = self.workers.as_mut() {
                let (t0, ran) = (Instant::now(), w.local_time());
                let r = w.send_batches(&mut self.outbox.exchange, floor).await;
                // A local worker's running is not the driver waiting; the
                // worker counts its own time.
                let waited = t0.elapsed().saturating_sub(w.local_time() - ran);
                self.waited += waited;
                self.times.backpressured(waited);
                if let Err(e) = r {
                    return Err(self.worker_failure(e).await);
                }
            }
        }
        Ok(())
    }
}
