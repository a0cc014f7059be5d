//! The driver: one task runs every partition's operator chain. It takes
//! batches from the source task ([`crate::source`]), hands each record to
//! its partition's chain (`process`), fires timers and windows as the
//! partition's watermark advances (`fire`), and routes what the chains emit
//! to the sink tasks, the dead-letter and the late sinks (`route`), all
//! behind bounded channels. The checkpoint cycle is in [`checkpointing`].
//!
//! Records of a partition are processed in order, and each partition's
//! watermark advances per record, so replaying a partition from its
//! checkpoint produces the same output whatever the batch boundaries and
//! whatever the other partitions do.

mod checkpointing;
mod events;
mod parts;
mod route;
mod split;
mod status;
mod workers;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowline_checkpoint::{Checkpoint, CheckpointStore, PartitionSnapshot};
use flowline_connector_api::{BoxSource, ConnectorError, PartitionId, Record, SourcePosition};
use tokio::sync::{mpsc, watch};

use crate::handle::{CheckpointRequest, EndReason, JobSummary};
use crate::job::{ChainFactory, Graph, JobConfig};
use crate::metrics::Metrics;
use crate::operator::{BoxOp, Cx, KeyOwners, Outbox, NO_TIME};
use crate::sinks::{Rejects, SinkSpec, SinkTask};
use crate::source::source_task;
use crate::RuntimeError;

pub(crate) use checkpointing::check_graph;

struct Part {
    chain: BoxOp<Record>,
    next_offset: u64,
    max_ts: i64,
    watermark: i64,
    next_fire: i64,
    last_seen: Instant,
    /// Assigned to this process, or has had records here. A partition
    /// restored at start that is neither may belong to another process: on
    /// assignment its state is read from the store again.
    live: bool,
    /// The source said it had nothing more to read of it (lag 0, or nothing
    /// to read at all) after its last record here: with no record for the
    /// idle timeout, it is idle. A partition whose records wait behind
    /// backpressure is never idle.
    caught_up: bool,
    /// The driver's input clock at its last record (see `input_clock`).
    seen_at: Duration,
}

pub(crate) struct Driver {
    cfg: JobConfig,
    source_name: String,
    factory: ChainFactory,
    graph: String,
    store: Option<Box<dyn CheckpointStore>>,
    sinks: Vec<SinkTask>,
    dlq: Option<SinkTask>,
    late: Option<SinkTask>,
    rejects: Rejects,
    late_to: Rejects,
    parts: HashMap<PartitionId, Part>,
    owners: KeyOwners,
    /// When `owners` was last swept (see `sweep_owners`).
    swept: Instant,
    /// The partitions the source announced (named up front or assigned),
    /// while it holds them; `None` when it never announced any.
    announced: Option<std::collections::HashSet<PartitionId>>,
    outbox: Outbox,
    metrics: Arc<Metrics>,
    next_checkpoint_id: u64,
    restored: Option<Checkpoint>,
    /// Snapshots of partitions given up in a rebalance, carried into later
    /// checkpoints of a store that does not keep partitions by itself.
    retired: BTreeMap<PartitionId, PartitionSnapshot>,
    /// Source record times feed the watermark (no `with_timestamps`).
    source_times: bool,
    position_tx: watch::Sender<Option<SourcePosition>>,
    /// The chain's busy and backpressured time.
    times: Arc<crate::component::Component>,
    /// Backpressured time within the batch being processed.
    waited: Duration,
    /// With an exchange: the workers running the keyed operators.
    workers: Option<workers::Workers>,
    /// Time the driver has spent waiting for the source: a partition's idle
    /// time is measured on it, so that time held by backpressure, or
    /// processing, never makes a partition look idle.
    input_clock: Duration,
    /// The source reports its lag: a partition is idle only once it said
    /// the partition was caught up. Without lag, the input clock alone.
    lag_known: bool,
    /// With an exchange after stateless operators: runs of records are
    /// split across up to this many tasks (`split`); 0 or 1: not split.
    split: usize,
    /// Chains the split runs used, kept for the next.
    spare: Vec<BoxOp<Record>>,
    /// Without an exchange, with more than one worker: records read and
    /// not yet run, and the partitions running on tasks (`parts`).
    pending: parts::Pending,
}

fn ooo_ms(cfg: &JobConfig) -> i64 {
    cfg.out_of_orderness.as_millis() as i64
}

impl Driver {
    pub(crate) async fn new(
        mut g: Graph,
        source_name: String,
        factory: ChainFactory,
        graph: String,
        metrics: Arc<Metrics>,
    ) -> Result<Self, RuntimeError> {
        let cfg = g.config.clone();
        let split = if g.keyed.is_some() && g.stateless_pre {
            cfg.workers
        } else {
            0
        };
        let restored = match &mut g.store {
            Some(s) => s.latest()?,
            None => None,
        };
        if let Some(cp) = &restored {
            metrics.restoring.store(true, Relaxed);
            check_graph(cp, &graph)?;
            tracing::info!(job = %cfg.name, checkpoint = cp.id, partitions = cp.partitions.len(), "restoring from checkpoint");
        }
        let state_of = |name: &str| {
            restored
                .as_ref()
                .and_then(|cp| cp.sinks.get(name).cloned().flatten())
        };
        let spec = |name: &str, stage, idx| SinkSpec {
            name: name.to_string(),
            stage,
            metric_idx: idx,
            capacity: cfg.channel_capacity,
            retry: cfg.retry,
            shrink: None,
            task: metrics.ops().task(name),
        };
        let restore =
            |stage: &'static str, name: String, e: ConnectorError| RuntimeError::Connector {
                stage,
                name,
                source: Box::new(e),
            };

        let no_rejects = Rejects {
            tx: None,
            format: crate::DeadLetterFormat::Envelope,
        };
        let (dlq, rejects) = match g.dead_letter.take() {
            Some((name, mut sink, format)) => {
                sink.restore_dyn(state_of(&name))
                    .await
                    .map_err(|e| restore("dead-letter sink", name.clone(), e))?;
                let t = SinkTask::spawn(
                    SinkSpec {
                        shrink: Some(format),
                        ..spec(&name, "dead-letter sink", None)
                    },
                    sink,
                    no_rejects.clone(),
                    metrics.clone(),
                );
                let r = Rejects {
                    tx: Some(t.tx.clone()),
                    format,
                };
                (Some(t), r)
            }
            None => (None, no_rejects.clone()),
        };
        let (late, late_to) = match g.late.take() {
            Some((name, mut sink, format)) => {
                sink.restore_dyn(state_of(&name))
                    .await
                    .map_err(|e| restore("late sink", name.clone(), e))?;
                let t = SinkTask::spawn(
                    spec(&name, "late sink", None),
                    sink,
                    rejects.clone(),
                    metrics.clone(),
                );
                let r = Rejects {
                    tx: Some(t.tx.clone()),
                    format,
                };
                (Some(t), r)
            }
            None => (None, no_rejects),
        };
        let mut sinks = Vec::new();
        for (i, (name, mut sink)) in std::mem::take(&mut g.sinks).into_iter().enumerate() {
            sink.restore_dyn(state_of(&name))
                .await
                .map_err(|e| restore("sink", name.clone(), e))?;
            sinks.push(SinkTask::spawn(
                spec(&name, "sink", Some(i)),
                sink,
                rejects.clone(),
                metrics.clone(),
            ));
        }
        let mut d = Driver {
            next_checkpoint_id: restored.as_ref().map(|c| c.id + 1).unwrap_or(1),
            cfg,
            source_name,
            factory,
            graph,
            store: g.store.take(),
            outbox: Outbox {
                sinks: vec![Vec::new(); sinks.len()],
                ..Outbox::default()
            },
            sinks,
            dlq,
            late,
            rejects,
            late_to,
            parts: HashMap::new(),
            owners: KeyOwners::bounded(g.config.max_state_entries),
            swept: Instant::now(),
            announced: None,
            restored: None,
            retired: BTreeMap::new(),
            source_times: !g.assigns_timestamps,
            position_tx: watch::channel(None).0,
            times: metrics.ops().task("chain"),
            waited: Duration::ZERO,
            workers: None,
            input_clock: Duration::ZERO,
            lag_known: false,
            split,
            spare: Vec::new(),
            pending: parts::Pending::default(),
            metrics,
        };
        let mut restored = restored;
        let key_groups = restored
            .as_mut()
            .map(|cp| std::mem::take(&mut cp.key_groups))
            .unwrap_or_default();
        let exchange_wm = restored
            .as_ref()
            .map_or(NO_TIME, |cp| cp.exchange_watermark);
        if let Some(cp) = &restored {
            let ids: Vec<PartitionId> = cp.partitions.keys().cloned().collect();
            d.restored = restored;
            d.restore_partitions(&ids)?;
        }
        match g.keyed.take() {
            Some(f) => d.start_workers(&f, key_groups, exchange_wm).await?,
            None if !key_groups.is_empty() => {
                return Err(RuntimeError::state_codec(
                    "checkpoint",
                    "it holds state by key group (an exchange); this job has none",
                ))
            }
            None => {}
        }
        Ok(d)
    }

    fn new_part(&self) -> Part {
        Part {
            chain: (self.factory)(),
            next_offset: 0,
            max_ts: NO_TIME,
            watermark: NO_TIME,
            next_fire: i64::MAX,
            last_seen: Instant::now(),
            live: false,
            caught_up: false,
            seen_at: self.input_clock,
        }
    }

    pub(crate) async fn run(
        mut self,
        mut source: BoxSource,
        mut stop: watch::Receiver<bool>,
        mut requests: mpsc::Receiver<CheckpointRequest>,
    ) -> Result<JobSummary, RuntimeError> {
        let restored_from = self.restored.as_ref().map(|c| c.id);
        if self.restored.is_some() {
            let pos = self.position();
            source
                .seek_dyn(&pos)
                .await
                .map_err(|e| self.source_err(e))?;
        }
        if let Some(ids) = source.partitions_dyn() {
            self.await_partitions(&ids);
        }
        // A job starting afresh checkpoints before its first record. A crash
        // before the first interval's checkpoint then restores this one,
        // which holds what the sinks had before the job wrote anything (a
        // file's length, a topic's end offsets), instead of starting afresh
        // once more and finding its own output there: a dead-letter file
        // refused as another's at every restart, dead letters on a topic
        // twice.
        if self.restored.is_none() {
            self.checkpoint("start").await?;
        }
        let (ev_tx, mut ev_rx) = mpsc::channel(self.cfg.channel_capacity);
        let (seek_tx, seek_rx) = mpsc::channel(self.cfg.channel_capacity);
        let pos_rx = self.position_tx.subscribe();
        let src_task = tokio::spawn(source_task(
            source,
            ev_tx,
            pos_rx,
            seek_rx,
            self.cfg.retry,
            self.metrics.clone(),
        ));
        let tick_every = (self.cfg.idle_timeout / 2)
            .min(self.cfg.checkpoint_interval.unwrap_or(Duration::MAX))
            .clamp(Duration::from_millis(1), Duration::from_secs(1));
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_checkpoint = Instant::now();
        let _running = status::Running::set(self.metrics.clone());

        let mut stop_open = true;
        let reason = 'run: loop {
            // Time spent here waiting for the source (not processing, not
            // held by backpressure) runs the partitions' idle clocks.
            let t_wait = Instant::now();
            tokio::select! {
                biased;
                r = stop.changed(), if stop_open => {
                    match r {
                        Ok(()) if *stop.borrow() => break EndReason::Stopped,
                        Ok(()) => {}
                        Err(_) => stop_open = false,
                    }
                }
                Some(reply) = requests.recv() => {
                    let id = self.checkpoint("requested").await?;
                    last_checkpoint = Instant::now();
                    let _ = reply.send(id);
                }
                _ = tick.tick() => {
                    self.input_clock += t_wait.elapsed();
                    self.update_job_watermark();
                    self.sweep_owners();
                    self.advance_exchange().await?;
                    if let Some(iv) = self.cfg.checkpoint_interval {
                        if last_checkpoint.elapsed() >= iv {
                            self.checkpoint("interval").await?;
                            last_checkpoint = Instant::now();
                        }
                    }
                }
                ev = ev_rx.recv() => {
                    self.input_clock += t_wait.elapsed();
                    let Some(mut ev) = ev else {
                        return Err(RuntimeError::Internal("source task ended".into()));
                    };
                    loop {
                        match self.on_event(ev, &mut ev_rx, &seek_tx).await? {
                            events::Next::Wait => break,
                            events::Next::End(r) => break 'run r,
                            events::Next::Then(then) => ev = then,
                        }
                    }
                }
            }
        };
        self.checkpoint(if reason == EndReason::Stopped {
            "shutdown"
        } else {
            "end of input"
        })
        .await?;
        if reason == EndReason::InputEnded {
            self.end_of_input().await?;
        }
        drop(ev_rx);
        let _ = src_task.await;
        let Driver {
            sinks,
            dlq,
            late,
            metrics,
            workers,
            ..
        } = self;
        if let Some(w) = workers {
            w.close().await?;
        }
        for s in sinks {
            s.close().await?;
        }
        for s in [late, dlq].into_iter().flatten() {
            s.close().await?;
        }
        Ok(JobSummary {
            reason,
            records_in: metrics.records_in.load(Relaxed),
            records_out: metrics.records_out(),
            bad_records: metrics.bad_records.load(Relaxed),
            late_records: metrics.late_records.load(Relaxed),
            checkpoints: metrics.checkpoints.load(Relaxed),
            restored_from,
        })
    }

    fn source_err(&self, e: ConnectorError) -> RuntimeError {
        RuntimeError::Connector {
            stage: "source",
            name: self.source_name.clone(),
            source: Box::new(e),
        }
    }

    /// Creates the chain of a partition seen for the first time.
    fn ensure_part(&mut self, pid: &PartitionId) {
        if !self.parts.contains_key(pid) {
            if let Some(w) = self.workers.as_mut() {
                w.first_records_of(pid);
            }
            let p = self.new_part();
            self.parts.insert(pid.clone(), p);
            self.metrics
                .partitions
                .store(self.parts.len() as u64, Relaxed);
        }
    }

    /// A batch the source sent: counted, tapped, and the end of a pause of
    /// the whole input.
    fn count_in(&mut self, batch: &[Record]) {
        if let Some(w) = self.workers.as_mut() {
            w.known = true;
        }
        self.resume_if_all_idle();
        self.metrics
            .records_in
            .fetch_add(batch.len() as u64, Relaxed);
        self.metrics.ops().tapped("source", batch);
    }

    async fn process(&mut self, batch: Vec<Record>) -> Result<(), RuntimeError> {
        self.count_in(&batch);
        self.outbox.make_room(batch.len());
        let env = self.env();
        let default_pid = PartitionId::new("0");
        let now = Instant::now();
        let mut records = batch.into_iter().peekable();
        // Records come in runs of one partition: look the partition up once
        // per run, not per record.
        while let Some(first) = records.peek() {
            let pid = first
                .partition
                .clone()
                .unwrap_or_else(|| default_pid.clone());
            self.touch(&pid, now);
            let part = self.parts.get_mut(&pid).expect("touched above");
            let same = |r: &Record| match &r.partition {
                Some(p) => *p == pid,
                None => pid == default_pid,
            };
            let (outbox, owners) = (&mut self.outbox, &mut self.owners);
            if parts::run_records(part, &pid, &mut records, same, env, outbox, owners, 0) {
                // A firing stopped at a full outbox: route, then go on
                // firing before the next record of this partition.
                let wm = part.watermark;
                self.route().await?;
                self.fire(&pid, wm).await?;
            }
        }
        self.route().await?;
        self.advance_exchange().await
    }

    /// Calls the partition's chain with watermark `wm` until it has emitted
    /// everything due, routing the outbox after every call (operators stop
    /// at [`FIRE_CHUNK`](crate::operator::FIRE_CHUNK) records).
    async fn fire(&mut self, id: &PartitionId, wm: i64) -> Result<(), RuntimeError> {
        let ooo = ooo_ms(&self.cfg);
        loop {
            let part = self.parts.get_mut(id).expect("a known partition");
            let mut cx = Cx {
                partition: id,
                record: crate::operator::InScope::None,
                watermark: wm,
                max_ts: part.max_ts,
                out_of_orderness: ooo,
                next_fire: i64::MAX,
                outbox: &mut self.outbox,
                owners: &mut self.owners,
                again: false,
                worker: 0,
                key_group: None,
            };
            part.chain.watermark(wm, &mut cx);
            let again = cx.again;
            part.next_fire = cx.next_fire;
            self.route().await?;
            if !again {
                return Ok(());
            }
        }
    }

    /// Fires every window still open, as if time ran out: after the
    /// checkpoint taken at the end of input, never before it. That
    /// checkpoint holds the open windows and the watermark the events made,
    /// so a later run over the same input (a bounded job run again as more
    /// arrives) goes on from there: its events count in those windows, which
    /// fire again complete (the sinks cut back or overwrite what this firing
    /// wrote). Checkpointed after the firing, the watermark at the end of
    /// time made every later event late: 100 of 100 on a second run.
    async fn end_of_input(&mut self) -> Result<(), RuntimeError> {
        let mut ids: Vec<PartitionId> = self.parts.keys().cloned().collect();
        ids.sort();
        for id in ids {
            self.fire(&id, i64::MAX).await?;
        }
        if let Some(w) = self.workers.as_mut() {
            let r = match w.watermark(i64::MAX).await {
                Ok(()) => w.sync().await,
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                return Err(self.worker_failure(e).await);
            }
        }
        self.update_job_watermark();
        Ok(())
    }
}
