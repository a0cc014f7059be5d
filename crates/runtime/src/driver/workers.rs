//! The driver's side of the exchange: starting the workers with the key
//! groups of their ranges (restored in parallel, each worker its own),
//! sending them element batches and the watermark, and the aligned
//! barrier of a checkpoint. A job's only worker runs on the driver's task:
//! the same messages in the same order, handed to it as calls.
//!
//! The exchange's watermark is the minimum over the source partitions this
//! process reads, idle ones left out: partitions with records, and those
//! named or assigned that have not sent one yet (so that the first
//! partition read does not fire windows the others still feed). A
//! partition is idle when it has sent no record for the idle timeout of the
//! driver's *input clock* (time spent waiting for the source: time held by
//! backpressure or spent processing does not count), and, for a source that
//! reports its lag, once the source said after its last record that it had
//! nothing more to read of it (lag 0, or `SourceEvent::Idle`): records
//! waiting at the broker never count as idleness. When every partition was
//! idle, the first record back gives all a fresh idle timeout.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowline_connector_api::PartitionId;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;

use super::Driver;
use crate::exchange::{worker_of, ExBatch, KEY_GROUPS};
use crate::job::GroupsFactory;
use crate::operator::NO_TIME;
use crate::worker::{GroupStates, ToWorker, Worker, WorkerSpec};
use crate::RuntimeError;

/// Elements in flight to one worker (sent, not yet processed), per slot of
/// the channel capacity: the driver waits (backpressure) before sending
/// more. Batches vary in length (a split run sends thousands at once), so
/// the channel's count of messages alone does not bound the memory.
const ITEMS_PER_SLOT: usize = 1024;

pub(crate) struct Workers {
    txs: Vec<mpsc::Sender<ToWorker>>,
    /// Per worker, its budget of elements in flight.
    budgets: Vec<Arc<Semaphore>>,
    /// The budget's size: a batch longer than it takes all of it.
    budget: usize,
    joins: Vec<JoinHandle<Result<(), RuntimeError>>>,
    /// A job's only worker, run on the driver's task (no channel, no task):
    /// `txs` and `joins` are then empty.
    local: Option<Box<Worker>>,
    /// Time the local worker has run, in all: the driver's own busy and
    /// backpressured time leave it out (the worker counts it).
    local_time: Duration,
    /// The last watermark sent.
    pub(super) watermark: i64,
    /// The source has named or been assigned its partitions, or sent
    /// records: until then partitions restored from a checkpoint are not
    /// all there is, and the watermark does not move.
    pub(super) known: bool,
    /// Partitions assigned that have not sent a record yet: since when (on
    /// the driver's input clock), and whether the source has since said it
    /// has nothing to read of them.
    pub(super) awaiting: HashMap<PartitionId, (Duration, bool)>,
}

impl Workers {
    /// Starts `specs.len()` workers; each restores the groups of its range
    /// from `restore`. Returns once all have.
    pub(super) async fn start(
        specs: Vec<WorkerSpec>,
        factory: &GroupsFactory,
        mut restore: GroupStates,
        capacity: usize,
    ) -> Result<Self, RuntimeError> {
        let n = specs.len();
        let mut txs = Vec::with_capacity(n);
        let mut joins = Vec::with_capacity(n);
        let mut readies = Vec::with_capacity(n);
        let mut local = None;
        let mut mine = Vec::with_capacity(n);
        for spec in specs {
            let owned: Vec<u16> = (0..KEY_GROUPS)
                .filter(|&g| worker_of(g, n) == spec.index)
                .collect();
            let states: GroupStates = owned
                .iter()
                .filter_map(|g| restore.remove(g).map(|s| (*g, s)))
                .collect();
            mine.push((spec, owned, states));
        }
        if let Some(&kg) = restore.keys().next() {
            return Err(RuntimeError::state_codec(
                &format!("key group {kg}"),
                format!("the checkpoint has key group {kg}; this job has {KEY_GROUPS}"),
            ));
        }
        for (spec, owned, states) in mine {
            if n == 1 {
                let w = crate::worker::new(spec, factory(), owned, states)?;
                local = Some(Box::new(w));
                continue;
            }
            let (tx, rx) = mpsc::channel(capacity);
            let (ready_tx, ready_rx) = oneshot::channel();
            joins.push(tokio::spawn(crate::worker::run(
                spec,
                factory(),
                owned,
                states,
                ready_tx,
                rx,
            )));
            txs.push(tx);
            readies.push(ready_rx);
        }
        for r in readies {
            match r.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(RuntimeError::Internal("a worker failed to start".into())),
            }
        }
        Ok(Self::with(txs, joins, local, capacity))
    }

    fn with(
        txs: Vec<mpsc::Sender<ToWorker>>,
        joins: Vec<JoinHandle<Result<(), RuntimeError>>>,
        local: Option<Box<Worker>>,
        capacity: usize,
    ) -> Self {
        let budget = capacity.max(1) * ITEMS_PER_SLOT;
        let n = txs.len() + usize::from(local.is_some());
        Self {
            budgets: (0..n).map(|_| Arc::new(Semaphore::new(budget))).collect(),
            budget,
            txs,
            joins,
            local,
            local_time: Duration::ZERO,
            watermark: NO_TIME,
            known: false,
            awaiting: HashMap::new(),
        }
    }

    pub(super) fn count(&self) -> usize {
        self.budgets.len()
    }

    /// How long the local worker has run, in all (zero without one).
    pub(super) fn local_time(&self) -> Duration {
        self.local_time
    }

    /// A partition's first records: it no longer holds the watermark back.
    /// One nobody announced, arriving after the watermark moved, may bring
    /// events the workers already count as late: said loudly, once.
    pub(super) fn first_records_of(&mut self, pid: &PartitionId) {
        if self.awaiting.remove(pid).is_none() && self.watermark != NO_TIME {
            tracing::warn!(partition = %pid, watermark = self.watermark, "a source partition nobody announced sent its first records after the exchange's watermark moved: its events older than the watermark are late. Fix: the source should name its partitions (Source::partitions) or announce them (SourceEvent::Assigned)");
        }
    }

    async fn send(&mut self, w: usize, msg: ToWorker) -> Result<(), RuntimeError> {
        if let Some(local) = self.local.as_mut() {
            let t0 = Instant::now();
            let r = local.handle(msg).await;
            self.local_time += t0.elapsed();
            return r;
        }
        if self.txs[w].send(msg).await.is_ok() {
            return Ok(());
        }
        Err(self.failure(w).await)
    }

    /// Why worker `w` stopped.
    async fn failure(&mut self, w: usize) -> RuntimeError {
        match (&mut self.joins[w]).await {
            Ok(Err(e)) => e,
            Ok(Ok(())) => RuntimeError::Internal(format!("worker {w} stopped early")),
            Err(e) => RuntimeError::Internal(format!("worker {w}: {e}")),
        }
    }

    /// Sends each worker its batch, if any, with the floor under its
    /// partition watermarks (see `ToWorker::Data`).
    pub(super) async fn send_batches(
        &mut self,
        batches: &mut [Option<ExBatch>],
        floor: i64,
    ) -> Result<(), RuntimeError> {
        for (w, b) in batches.iter_mut().enumerate() {
            if let Some(b) = b.take() {
                // Never closed; a worker that stopped dropped its queue,
                // giving its budget back, and the send below says why.
                let n = b.len.clamp(1, self.budget) as u32;
                let Ok(held) = self.budgets[w].clone().acquire_many_owned(n).await else {
                    return Err(RuntimeError::Internal("a worker's budget closed".into()));
                };
                self.send(w, ToWorker::Data(b, floor, held)).await?;
            }
        }
        Ok(())
    }

    /// Sends a watermark higher than the last one to every worker.
    pub(super) async fn watermark(&mut self, wm: i64) -> Result<(), RuntimeError> {
        if wm <= self.watermark {
            return Ok(());
        }
        self.watermark = wm;
        for w in 0..self.count() {
            self.send(w, ToWorker::Watermark(wm)).await?;
        }
        Ok(())
    }

    /// The aligned barrier: every worker sends what it emitted, then
    /// answers with its key groups' state.
    pub(super) async fn barrier(&mut self) -> Result<GroupStates, RuntimeError> {
        let mut replies = Vec::with_capacity(self.count());
        for w in 0..self.count() {
            let (tx, rx) = oneshot::channel();
            self.send(w, ToWorker::Barrier(tx)).await?;
            replies.push(rx);
        }
        let mut all = GroupStates::new();
        for (w, rx) in replies.into_iter().enumerate() {
            match rx.await {
                Ok(r) => all.extend(r?),
                Err(_) => return Err(self.failure(w).await),
            }
        }
        Ok(all)
    }

    /// Waits until every worker has sent what it emitted.
    pub(super) async fn sync(&mut self) -> Result<(), RuntimeError> {
        let mut replies = Vec::with_capacity(self.count());
        for w in 0..self.count() {
            let (tx, rx) = oneshot::channel();
            self.send(w, ToWorker::Sync(tx)).await?;
            replies.push(rx);
        }
        for (w, rx) in replies.into_iter().enumerate() {
            if rx.await.is_err() {
                return Err(self.failure(w).await);
            }
        }
        Ok(())
    }

    /// Closes the workers' inputs and waits for them.
    pub(super) async fn close(mut self) -> Result<(), RuntimeError> {
        self.txs.clear();
        for j in self.joins {
            match j.await {
                Ok(r) => r?,
                Err(e) => return Err(RuntimeError::Internal(format!("worker: {e}"))),
            }
        }
        Ok(())
    }
}

impl Driver {
    /// Starts the workers of a job with an exchange, restoring their key
    /// groups from the checkpoint the driver restored.
    pub(super) async fn start_workers(
        &mut self,
        factory: &GroupsFactory,
        restore: GroupStates,
        restored_watermark: i64,
    ) -> Result<(), RuntimeError> {
        let n = self.cfg.workers.max(1);
        let specs = (0..n)
            .map(|index| WorkerSpec {
                index,
                sinks: self
                    .sinks
                    .iter()
                    .map(|t| (t.name.clone(), t.tx.clone()))
                    .collect(),
                rejects: self.rejects.clone(),
                late_to: self.late_to.clone(),
                metrics: self.metrics.clone(),
                // The only worker runs on the driver's task, and counts there.
                times: if n == 1 {
                    self.times.clone()
                } else {
                    self.metrics.ops().task(&format!("worker {index}"))
                },
                owners: self.owners.sharing_budget(),
            })
            .collect();
        let t0 = Instant::now();
        let groups = restore.len();
        let mut w = Workers::start(specs, factory, restore, self.cfg.channel_capacity).await?;
        // Where the restored state's windows had fired up to: an event
        // behind it is late, never the start of a fired window again.
        w.watermark(restored_watermark).await?;
        if groups > 0 {
            tracing::info!(job = %self.cfg.name, workers = n, key_groups = groups, ms = t0.elapsed().as_millis() as u64, "key groups restored");
        }
        self.outbox.exchange = (0..w.count()).map(|_| None).collect();
        self.workers = Some(w);
        Ok(())
    }

    /// How long a local worker has run on the driver's task, in all.
    pub(super) fn local_time(&self) -> Duration {
        self.workers
            .as_ref()
            .map_or(Duration::ZERO, Workers::local_time)
    }

    /// The error to report for a failed worker: the sink's own error when a
    /// sink task stopped (the worker only saw its channel close).
    pub(super) async fn worker_failure(&mut self, e: RuntimeError) -> RuntimeError {
        for t in self.sinks.iter_mut() {
            if t.tx.is_closed() {
                return t.failure().await;
            }
        }
        e
    }

    fn idleness(&self) -> Idleness {
        Idleness {
            clock: self.input_clock,
            timeout: self.cfg.idle_timeout,
            lag_unknown: !self.lag_known,
        }
    }

    /// Sends the exchange's watermark to the workers when it advanced.
    pub(super) async fn advance_exchange(&mut self) -> Result<(), RuntimeError> {
        let rule = self.idleness();
        let Some(w) = self.workers.as_mut() else {
            return Ok(());
        };
        if !w.known {
            return Ok(());
        }
        w.awaiting
            .retain(|_, (since, caught_up)| !rule.idle(*caught_up, *since));
        if !w.awaiting.is_empty() {
            return Ok(());
        }
        let parts = self
            .parts
            .values()
            .map(|p| (p.caught_up, p.seen_at, p.watermark));
        let Some(wm) = exchange_watermark(parts, rule) else {
            return Ok(());
        };
        if let Err(e) = w.watermark(wm).await {
            return Err(self.worker_failure(e).await);
        }
        Ok(())
    }

    /// Partitions assigned to this process: those without a record yet
    /// hold the exchange's watermark back (until the idle timeout).
    pub(super) fn await_partitions(&mut self, ids: &[PartitionId]) {
        self.announced
            .get_or_insert_default()
            .extend(ids.iter().cloned());
        let Some(w) = self.workers.as_mut() else {
            return;
        };
        w.known = true;
        for id in ids {
            if !self.parts.contains_key(id) {
                w.awaiting.insert(id.clone(), (self.input_clock, false));
            }
        }
    }

    /// Records after every partition went idle (the whole input paused for
    /// the idle timeout): each partition gets a fresh idle timeout to send
    /// its own, so that the first one back does not fire windows the
    /// others still feed.
    pub(super) fn resume_if_all_idle(&mut self) {
        let rule = self.idleness();
        let Some(w) = self.workers.as_mut() else {
            return;
        };
        let clock = rule.clock;
        let all_idle = w.awaiting.values().all(|&(since, c)| rule.idle(c, since))
            && self
                .parts
                .values()
                .all(|p| rule.idle(p.caught_up, p.seen_at));
        if !all_idle || (self.parts.is_empty() && w.awaiting.is_empty()) {
            return;
        }
        for p in self.parts.values_mut() {
            p.seen_at = clock;
            p.caught_up = false;
        }
        for (since, c) in w.awaiting.values_mut() {
            *since = clock;
            *c = false;
        }
    }

    /// The source has nothing more to read of these partitions (`None`:
    /// of any) after every record it sent before saying so.
    pub(super) fn caught_up(&mut self, ids: Option<&[PartitionId]>) {
        let hit = |id: &PartitionId| ids.is_none_or(|ids| ids.contains(id));
        for (id, p) in self.parts.iter_mut() {
            if hit(id) {
                p.caught_up = true;
            }
        }
        if let Some(w) = self.workers.as_mut() {
            for (id, (_, caught_up)) in w.awaiting.iter_mut() {
                if hit(id) {
                    *caught_up = true;
                }
            }
        }
    }
}

/// The workers' watermark from the partitions read, `(caught up, seen at,
/// watermark)` each, once no assigned partition is still awaited: the
/// least over those not idle; with every one idle, the least of all, which
/// fires no window any of them still feeds. (Holding still then kept a
/// partition that never sent a record, idle as long as the others, holding
/// every window back until new input came: a streaming job over a topic
/// with an empty partition wrote no window at all, 3 runs in 4.)
fn exchange_watermark(
    parts: impl Iterator<Item = (bool, Duration, i64)> + Clone,
    rule: Idleness,
) -> Option<i64> {
    let live = parts
        .clone()
        .filter(|&(caught_up, seen_at, _)| !rule.idle(caught_up, seen_at))
        .map(|p| p.2)
        .min();
    live.or_else(|| parts.map(|p| p.2).min())
}

/// When a partition (read, or assigned and awaited) is idle: the source
/// said it is caught up (or reports no lag at all), and the driver has
/// waited the idle timeout for input since its last record (or its
/// assignment).
#[derive(Clone, Copy)]
struct Idleness {
    /// The driver's input clock: time spent waiting for the source.
    clock: Duration,
    timeout: Duration,
    lag_unknown: bool,
}

impl Idleness {
    fn idle(&self, caught_up: bool, since: Duration) -> bool {
        (caught_up || self.lag_unknown) && self.clock - since >= self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state a stranger's trial stalled in: the empty partition's wait
    /// over, the one with every record idle for two minutes.
    #[test]
    fn every_partition_idle_leaves_the_least_watermark() {
        let s = Duration::from_secs;
        let rule = Idleness {
            clock: s(117),
            timeout: s(30),
            lag_unknown: false,
        };
        let one = [(true, Duration::from_millis(222), 3_599)];
        assert_eq!(exchange_watermark(one.into_iter(), rule), Some(3_599));
        // Some not idle: the least of those.
        let two = [(true, s(1), 1_000), (false, s(100), 5_000)];
        assert_eq!(exchange_watermark(two.into_iter(), rule), Some(5_000));
        // All idle: the least of all, never past a partition's own.
        let two = [(true, s(1), 1_000), (true, s(2), 5_000)];
        assert_eq!(exchange_watermark(two.into_iter(), rule), Some(1_000));
        assert_eq!(exchange_watermark([].into_iter(), rule), None);
    }

    fn batch(len: usize) -> Option<ExBatch> {
        Some(ExBatch {
            items: Box::new(vec![0u8; len]),
            len,
            records: Vec::new(),
            reserved: 0,
        })
    }

    /// A worker's elements in flight are bounded in elements, not in
    /// messages: a send waits until the worker has processed enough, and a
    /// batch longer than the budget takes all of it (never waits forever).
    #[tokio::test]
    async fn the_driver_waits_for_the_workers_budget_of_elements() {
        let (tx, mut rx) = mpsc::channel(100);
        let mut w = Workers {
            txs: vec![tx],
            joins: vec![tokio::spawn(async { Ok(()) })],
            local: None,
            local_time: Duration::ZERO,
            budgets: vec![Arc::new(Semaphore::new(100))],
            budget: 100,
            watermark: NO_TIME,
            known: false,
            awaiting: HashMap::new(),
        };
        w.send_batches(&mut [batch(60)], NO_TIME).await.unwrap();
        // 60 + 50 > 100: waits, though the channel has room.
        let mut more = [batch(50)];
        {
            let send = w.send_batches(&mut more, NO_TIME);
            tokio::pin!(send);
            // A zero timeout polls the send once: it is not ready.
            let once = tokio::time::timeout(Duration::ZERO, send.as_mut()).await;
            assert!(once.is_err(), "the send did not wait for the budget");
            // The worker processes the first batch: its 60 come back.
            let Some(ToWorker::Data(_, _, held)) = rx.recv().await else {
                panic!("a batch")
            };
            assert_eq!(held.num_permits(), 60);
            drop(held);
            send.await.unwrap();
        }
        let Some(ToWorker::Data(b, _, held)) = rx.recv().await else {
            panic!("a batch")
        };
        assert_eq!((b.len, held.num_permits()), (50, 50));
        drop(held);
        // Longer than the whole budget: takes all of it.
        w.send_batches(&mut [batch(250)], NO_TIME).await.unwrap();
        let Some(ToWorker::Data(b, _, held)) = rx.recv().await else {
            panic!("a batch")
        };
        assert_eq!((b.len, held.num_permits()), (250, 100));
    }
}
