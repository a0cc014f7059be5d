//! The checkpoint cycle of the driver: restoring partitions from a
//! checkpoint, taking one (sinks flushed first, then every partition's
//! chain snapshotted with its offset), and moving partitions in a
//! rebalance, which checkpoints before it gives one up and reads the store
//! again when it gets one.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use flowline_checkpoint::{Checkpoint, PartitionSnapshot};
use flowline_connector_api::{PartitionId, SourcePosition};

use super::{ooo_ms, Driver, Part};
use crate::operator::{Cx, NO_TIME};
use crate::RuntimeError;

/// Each sink's state in one checkpoint, by sink name.
pub(super) type SinkStates = BTreeMap<String, Option<Vec<u8>>>;

/// Sinks' states to rewind to, each with the partitions restored from it.
pub(super) type Rewinds = Vec<(SinkStates, Vec<PartitionId>)>;

pub(crate) fn check_graph(cp: &Checkpoint, graph: &str) -> Result<(), RuntimeError> {
    use flowline_checkpoint::graph::{compare, GraphMatch};
    match compare(&cp.graph, graph) {
        GraphMatch::Same => Ok(()),
        GraphMatch::BeforeNotes => {
            tracing::warn!(checkpoint = cp.id, graph = %graph, "the checkpoint was taken by a Flowline that did not record the settings noted as #{{...}} in this job graph (such as [event]), so that they are unchanged cannot be checked: restoring it. Had they changed, windows open at the checkpoint would mix both readings");
            Ok(())
        }
        _ => Err(RuntimeError::state_codec(
            &cp.id.to_string(),
            format!(
                "it was taken from job graph `{}`, this job is `{graph}`",
                cp.graph
            ),
        )),
    }
}

impl Driver {
    /// Builds the chains of these partitions from the restored checkpoint.
    pub(super) fn restore_partitions(&mut self, ids: &[PartitionId]) -> Result<(), RuntimeError> {
        let Some(mut cp) = self.restored.take() else {
            return Ok(());
        };
        let ooo = ooo_ms(&self.cfg);
        let mut result = Ok(());
        for id in ids {
            // Taken out: restored once (a later assignment reads the store
            // again).
            let Some(snap) = cp.partitions.remove(id) else {
                continue;
            };
            let mut part = self.new_part();
            let mut cx = Cx {
                partition: id,
                record: crate::operator::InScope::None,
                watermark: NO_TIME,
                max_ts: NO_TIME,
                out_of_orderness: ooo,
                next_fire: i64::MAX,
                outbox: &mut self.outbox,
                owners: &mut self.owners,
                again: false,
                worker: 0,
                key_group: None,
            };
            if snap.max_ts != NO_TIME {
                cx.observe(snap.max_ts);
            }
            if let Err(e) = part.chain.restore(&mut snap.operators.into_iter(), &mut cx) {
                result = Err(RuntimeError::state_codec(
                    &format!("{} partition {id}", cp.id),
                    e,
                ));
                break;
            }
            part.watermark = cx.watermark;
            part.max_ts = cx.max_ts;
            part.next_fire = cx.next_fire;
            part.next_offset = snap.next_offset;
            self.parts.insert(id.clone(), part);
        }
        self.restored = Some(cp);
        result?;
        if let Some(e) = self.outbox.error.take() {
            return Err(e);
        }
        self.metrics
            .partitions
            .store(self.parts.len() as u64, Relaxed);
        Ok(())
    }

    pub(super) fn position(&self) -> SourcePosition {
        let mut p = SourcePosition::new();
        for (id, part) in &self.parts {
            p = p.with(id.clone(), part.next_offset);
        }
        p
    }

    /// Flushes every sink, then snapshots state and positions together;
    /// the id saved. A sink that cannot complete it for a retryable reason
    /// (its server away longer than its retries), or a store that cannot
    /// take it (`CheckpointError::Unavailable`: a Kafka store's broker
    /// away), skips this checkpoint with a warning: the job goes on and the
    /// next one tries again, as Flink tolerates failed checkpoints.
    pub(super) async fn checkpoint(&mut self, why: &str) -> Result<Option<u64>, RuntimeError> {
        if self.store.is_none() {
            return Ok(None);
        }
        let t0 = Instant::now();
        // The aligned barrier: the workers send what they emitted before it
        // to the sinks, and give their key groups' state as of it.
        let (key_groups, exchange_wm) = match self.workers.as_mut() {
            Some(w) => match w.barrier().await {
                Ok(k) => (k, w.watermark),
                Err(e) => return Err(self.worker_failure(e).await),
            },
            None => (Default::default(), NO_TIME),
        };
        let mut sinks = BTreeMap::new();
        for task in self
            .sinks
            .iter_mut()
            .chain(self.late.iter_mut())
            .chain(self.dlq.iter_mut())
        {
            let state = match task.checkpoint().await {
                Ok(state) => state,
                Err(RuntimeError::Connector { source, name, .. }) if source.is_retryable() => {
                    self.metrics.checkpoints_skipped.fetch_add(1, Relaxed);
                    tracing::warn!(job = %self.cfg.name, sink = %name, why, error = %source, "checkpoint skipped: a sink could not complete it; the next one tries again");
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            sinks.insert(task.name.clone(), state);
        }
        let keeps = self.store.as_ref().is_some_and(|s| s.keeps_partitions());
        let mut partitions = BTreeMap::new();
        for (id, part) in &self.parts {
            // A keyed store holds the newest snapshot of a partition this
            // process does not own; an old copy must not overwrite it.
            if keeps && !part.live {
                continue;
            }
            partitions.insert(id.clone(), snapshot_of(id, part)?);
        }
        for (id, snap) in &self.retired {
            partitions.entry(id.clone()).or_insert_with(|| snap.clone());
        }
        let created_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let cp = Checkpoint::new(
            self.next_checkpoint_id,
            self.graph.clone(),
            created_ms,
            partitions,
            sinks,
        )
        .with_key_groups(key_groups)
        .with_exchange_watermark(exchange_wm);
        let store = self.store.as_mut().expect("checked");
        let size = match tokio::task::block_in_place(|| store.save(&cp)) {
            Ok(size) => size,
            Err(flowline_checkpoint::CheckpointError::Unavailable(e)) => {
                self.metrics.checkpoints_skipped.fetch_add(1, Relaxed);
                tracing::warn!(job = %self.cfg.name, why, error = %e, "checkpoint skipped: its store could not take it; the next one tries again");
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        self.next_checkpoint_id += 1;
        let ms = t0.elapsed().as_millis() as u64;
        self.metrics.checkpoints.fetch_add(1, Relaxed);
        self.metrics.checkpoint_last_ms.store(ms, Relaxed);
        self.metrics.checkpoint_last_bytes.store(size, Relaxed);
        tracing::debug!(job = %self.cfg.name, id = cp.id, why, bytes = size, ms, "checkpoint complete");
        let _ = self.position_tx.send(Some(self.position()));
        let created = cp.created_ms;
        self.metrics
            .record_checkpoint(crate::metrics::CheckpointRecord {
                id: cp.id,
                created_ms: created,
                duration_ms: ms,
                size_bytes: size,
            });
        self.metrics
            .set_status(|s| s.last_checkpoint = Some((cp.id, created)));
        Ok(Some(cp.id))
    }

    /// Partitions revoked in a rebalance: checkpoint first, then drop
    /// their chains (see [`keeps_partitions`](flowline_checkpoint::CheckpointStore::keeps_partitions) for what is
    /// carried).
    pub(super) async fn revoke(&mut self, ids: &[PartitionId]) -> Result<(), RuntimeError> {
        self.checkpoint("revoke").await?;
        let carry = self.store.as_ref().is_some_and(|s| !s.keeps_partitions());
        for id in ids {
            if let Some(w) = self.workers.as_mut() {
                w.awaiting.remove(id);
            }
            if let Some(part) = self.parts.remove(id) {
                // Its state and offset as of the revoke
                // checkpoint, kept in later checkpoints
                // until it comes back (see keeps_partitions).
                if carry {
                    self.retired.insert(id.clone(), snapshot_of(id, &part)?);
                }
            }
            self.owners.release(id);
            if let Some(a) = self.announced.as_mut() {
                a.remove(id);
            }
        }
        Ok(())
    }

    /// Partitions assigned in a rebalance: their state from the store (read
    /// again), and the position the source must seek them to.
    ///
    /// With it, the sinks' states of the checkpoints the restored
    /// partitions were taken in, where the store keeps them per partition
    /// (each distinct map once, with its partitions): the sinks rewind to
    /// them ([`Driver::rewind_sinks`]).
    pub(super) fn assign(
        &mut self,
        ids: &[PartitionId],
    ) -> Result<(SourcePosition, Rewinds), RuntimeError> {
        // Read the store again: with a shared store, another
        // process may have checkpointed these partitions
        // when it gave them up.
        if let Some(s) = self.store.as_mut() {
            let cp = tokio::task::block_in_place(|| s.latest())?;
            if let Some(cp) = &cp {
                check_graph(cp, &self.graph)?;
                self.next_checkpoint_id = self.next_checkpoint_id.max(cp.id + 1);
            }
            self.restored = cp;
        }
        let fresh: Vec<PartitionId> = ids
            .iter()
            .filter(|i| self.parts.get(*i).is_none_or(|p| !p.live))
            .cloned()
            .collect();
        for id in &fresh {
            if self.parts.remove(id).is_some() {
                self.owners.release(id);
            }
        }
        let mut rewinds: Rewinds = Vec::new();
        if let Some(cp) = &self.restored {
            for id in &fresh {
                let at = cp.partition_sinks.get(id);
                let Some(at) = at.filter(|_| cp.partitions.contains_key(id)) else {
                    continue;
                };
                match rewinds.iter_mut().find(|(s, _)| s == at) {
                    Some((_, ids)) => ids.push(id.clone()),
                    None => rewinds.push((at.clone(), vec![id.clone()])),
                }
            }
        }
        self.restore_partitions(&fresh)?;
        for id in &fresh {
            self.retired.remove(id);
        }
        for id in ids {
            if let Some(p) = self.parts.get_mut(id) {
                p.live = true;
            }
        }
        // Every assigned partition with state here, at that state's offset;
        // a partition not named has none (the source starts it at its
        // configured start).
        let mut pos = SourcePosition::new();
        for id in ids {
            if let Some(p) = self.parts.get(id) {
                pos = pos.with(id.clone(), p.next_offset);
            }
        }
        tracing::debug!(job = %self.cfg.name, assigned = ?ids, restored = ?pos.offsets, "assigned partitions: state restored, the source seeks to these offsets");
        Ok((pos, rewinds))
    }

    /// Each sink rewinds to its state in each of these checkpoints
    /// (`Sink::rewind`), before the restored partitions' records reach it:
    /// what an earlier owner of the partitions wrote after its checkpoint
    /// is read back, not written twice.
    pub(super) async fn rewind_sinks(&mut self, rewinds: Rewinds) -> Result<(), RuntimeError> {
        for (states, ids) in rewinds {
            for task in self
                .sinks
                .iter_mut()
                .chain(self.late.iter_mut())
                .chain(self.dlq.iter_mut())
            {
                if let Some(state) = states.get(&task.name).cloned().flatten() {
                    task.rewind(Some(state), ids.clone()).await?;
                }
            }
        }
        Ok(())
    }
}

fn snapshot_of(id: &PartitionId, part: &Part) -> Result<PartitionSnapshot, RuntimeError> {
    let mut operators = Vec::new();
    part.chain
        .snapshot(&mut operators)
        .map_err(|e| RuntimeError::state_codec(&format!("partition {id}"), e))?;
    Ok(PartitionSnapshot::new(
        part.next_offset,
        part.max_ts,
        operators,
    ))
}
