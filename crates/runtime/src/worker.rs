//! A worker behind the exchange: one task owning a range of key groups
//! (their chains, state, windows and timers, without locks). It takes, in
//! order, from one bounded channel fed by the driver: element batches, the
//! watermark, and checkpoint barriers. A job's only worker runs on the
//! driver's task instead, which hands it the same messages in the same
//! order as calls (`Worker::handle`): one worker is one core, as a job
//! without an exchange with one worker, and no element crosses threads.
//! The driver is its only input, so a barrier arrives after every element
//! sent before it: the snapshot it answers with is aligned with the source
//! positions the driver records (Chandy–Lamport with a single input
//! channel per worker).
//!
//! What the chains emit goes straight to the sink tasks, the dead-letter and
//! the late sinks; a barrier is answered only after all of it was sent, so
//! the sinks' checkpoint that follows covers it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowline_connector_api::PartitionId;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};

use crate::component::Component;
use crate::exchange::{ExBatch, GroupCx, Groups};
use crate::metrics::Metrics;
use crate::operator::{KeyOwners, Outbox, NO_TIME};
use crate::sinks::{route_letters, Rejects, SinkMsg};
use crate::RuntimeError;

/// Key groups' operator states, as a checkpoint holds them.
pub(crate) type GroupStates = BTreeMap<u16, Vec<Vec<u8>>>;

pub(crate) enum ToWorker {
    /// Elements of the worker's key groups (`Vec<exchange::Item<T>>`), and
    /// a floor under their partition watermarks (`NO_TIME`: none): the
    /// watermark their partition had reached before the chunk of records
    /// they came from, when a run was split across tasks (`driver::split`);
    /// and the elements' share of the worker's budget, given back once they
    /// are processed and what they emitted was routed.
    Data(ExBatch, i64, OwnedSemaphorePermit),
    /// The exchange's watermark: the minimum over the source partitions
    /// that are not idle.
    Watermark(i64),
    /// Send everything emitted so far, then answer with every group's state.
    Barrier(oneshot::Sender<Result<GroupStates, RuntimeError>>),
    /// Send everything emitted so far, then answer.
    Sync(oneshot::Sender<()>),
}

/// What a worker writes to and reports through.
pub(crate) struct WorkerSpec {
    pub(crate) index: usize,
    pub(crate) sinks: Vec<(String, mpsc::Sender<SinkMsg>)>,
    pub(crate) rejects: Rejects,
    pub(crate) late_to: Rejects,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) times: Arc<Component>,
    /// The worker's key table, counting against the job's state bound.
    pub(crate) owners: KeyOwners,
}

pub(crate) struct Worker {
    spec: WorkerSpec,
    groups: Box<dyn Groups>,
    outbox: Outbox,
    owners: KeyOwners,
    partition: PartitionId,
    watermark: i64,
    waited: Duration,
}

/// A group's context from the worker's disjoint fields.
macro_rules! gcx {
    ($w:expr) => {
        GroupCx {
            watermark: $w.watermark,
            worker: $w.spec.index,
            outbox: &mut $w.outbox,
            owners: &mut $w.owners,
            partition: &$w.partition,
        }
    };
}

/// A worker's state, before it serves: restores its key groups
/// (`restore`; `owned` lists every group it owns, restored or not).
pub(crate) fn new(
    spec: WorkerSpec,
    groups: Box<dyn Groups>,
    owned: Vec<u16>,
    restore: GroupStates,
) -> Result<Worker, RuntimeError> {
    let owners = spec.owners.clone();
    let mut w = Worker {
        outbox: Outbox {
            sinks: vec![Vec::new(); spec.sinks.len()],
            ..Outbox::default()
        },
        partition: PartitionId::new(format!("worker {}", spec.index)),
        spec,
        groups,
        owners,
        watermark: NO_TIME,
        waited: Duration::ZERO,
    };
    w.restore(owned, restore)?;
    Ok(w)
}

/// Runs a worker on a task of its own: restores its key groups (as
/// `new`), answers `ready` with how that went, then serves `rx` until the
/// driver closes it.
pub(crate) async fn run(
    spec: WorkerSpec,
    groups: Box<dyn Groups>,
    owned: Vec<u16>,
    restore: GroupStates,
    ready: oneshot::Sender<Result<(), RuntimeError>>,
    mut rx: mpsc::Receiver<ToWorker>,
) -> Result<(), RuntimeError> {
    let mut w = match new(spec, groups, owned, restore) {
        Ok(w) => {
            let _ = ready.send(Ok(()));
            w
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return Ok(());
        }
    };
    while let Some(msg) = rx.recv().await {
        w.handle(msg).await?;
    }
    Ok(())
}

impl Worker {
    /// Serves one message of the driver, on the worker's task or, for a
    /// job's only worker, on the driver's own.
    pub(crate) async fn handle(&mut self, msg: ToWorker) -> Result<(), RuntimeError> {
        let t0 = Instant::now();
        self.waited = Duration::ZERO;
        match msg {
            ToWorker::Data(batch, floor, budget) => {
                self.groups.data(batch, floor, &mut gcx!(self));
                self.route().await?;
                drop(budget);
            }
            ToWorker::Watermark(wm) if wm > self.watermark => {
                self.watermark = wm;
                loop {
                    let fired = self.groups.fire_one(wm, &mut gcx!(self));
                    self.route().await?;
                    if !fired {
                        break;
                    }
                }
            }
            ToWorker::Watermark(_) => {}
            ToWorker::Barrier(reply) => {
                self.route().await?;
                let snap = self.groups.snapshot().map_err(|e| {
                    RuntimeError::state_codec(&format!("worker {}", self.spec.index), e)
                });
                let _ = reply.send(snap);
            }
            ToWorker::Sync(reply) => {
                self.route().await?;
                let _ = reply.send(());
            }
        }
        self.spec
            .times
            .busy(t0.elapsed().saturating_sub(self.waited));
        Ok(())
    }

    fn restore(&mut self, owned: Vec<u16>, mut restore: GroupStates) -> Result<(), RuntimeError> {
        for kg in owned {
            match restore.remove(&kg) {
                Some(states) => {
                    let mut cx = gcx!(self);
                    self.groups
                        .restore(kg, states, &mut cx)
                        .map_err(|e| RuntimeError::state_codec(&format!("key group {kg}"), e))?;
                }
                None => self.groups.add(kg),
            }
        }
        match self.outbox.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Sends what the chains emitted to the sinks (waiting when they are
    /// full: backpressure), the dead letters and late records to theirs.
    async fn route(&mut self) -> Result<(), RuntimeError> {
        if let Some(e) = self.outbox.error.take() {
            return Err(e);
        }
        self.outbox.pending = 0;
        for (i, (name, tx)) in self.spec.sinks.iter().enumerate() {
            if !self.outbox.sinks[i].is_empty() {
                let batch = std::mem::take(&mut self.outbox.sinks[i]);
                let t0 = Instant::now();
                if tx.send(SinkMsg::Write(batch)).await.is_err() {
                    return Err(RuntimeError::Internal(format!("sink `{name}` stopped")));
                }
                let waited = t0.elapsed();
                self.waited += waited;
                self.spec.times.backpressured(waited);
            }
        }
        route_letters(
            &mut self.outbox,
            &self.spec.rejects,
            &self.spec.late_to,
            &self.spec.metrics,
        )
        .await;
        Ok(())
    }
}
