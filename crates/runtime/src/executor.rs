//! The executor: one driver task runs every partition's operator chain; the
//! source and each sink run in tasks of their own behind bounded channels.
//!
//! Records of a partition are processed in order, and each partition's
//! watermark advances per record, so replaying a partition from its
//! checkpoint produces the same output whatever the batch boundaries and
//! whatever the other partitions do.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowline_connector_api::{
    BoxSource, ConnectorError, PartitionId, Record, SourceEvent, SourcePosition,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::operator::{BoxOp, Cx, KeyOwners, Outbox, NO_TIME};
use crate::sinks::{dead_letter, Rejects, SinkMsg, SinkSpec, SinkTask};
use crate::stream::{ChainFactory, Graph, JobConfig};
use crate::RuntimeError;
use flowline_checkpoint::{Checkpoint, CheckpointStore, PartitionSnapshot};

/// Why a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The bounded input ended; every window fired.
    InputEnded,
    /// [`JobHandle::stop`] (or SIGTERM / Ctrl-C in the CLI).
    Stopped,
}

/// What a finished job did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobSummary {
    /// Why it ended.
    pub reason: EndReason,
    /// Records read.
    pub records_in: u64,
    /// Records written, per sink.
    pub records_out: Vec<(String, u64)>,
    /// Records down the bad-record path.
    pub bad_records: u64,
    /// Events beyond the allowed lateness.
    pub late_records: u64,
    /// Checkpoints completed.
    pub checkpoints: u64,
    /// The checkpoint the job restored from, if any.
    pub restored_from: Option<u64>,
}

/// A running job.
#[derive(Debug)]
pub struct JobHandle {
    metrics: Arc<Metrics>,
    stop: Stopper,
    checkpoints: mpsc::Sender<CheckpointRequest>,
    join: JoinHandle<Result<JobSummary, RuntimeError>>,
}

/// Stops a job from anywhere (a signal handler, another task).
#[derive(Debug, Clone)]
pub struct Stopper(Arc<watch::Sender<bool>>);

impl Stopper {
    /// See [`JobHandle::stop`].
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

impl JobHandle {
    /// The job's live metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Asks the job to stop: it checkpoints (when it has a store), closes its
    /// sinks and ends with [`EndReason::Stopped`].
    pub fn stop(&self) {
        self.stop.stop()
    }

    /// A cloneable handle that stops the job.
    pub fn stopper(&self) -> Stopper {
        self.stop.clone()
    }

    /// Takes a checkpoint now, between two batches, and waits until it is
    /// durable: its id, or `None` when the job has no checkpoint store.
    /// Interval checkpoints go on as configured; tests and operators use
    /// this to checkpoint at a point they choose.
    pub async fn checkpoint(&self) -> Result<Option<u64>, RuntimeError> {
        let (tx, rx) = oneshot::channel();
        let ended =
            || RuntimeError::Internal("the job ended before the requested checkpoint".into());
        self.checkpoints.send(tx).await.map_err(|_| ended())?;
        rx.await.map_err(|_| ended())
    }

    /// Whether the job has ended.
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Waits for the job to end.
    pub async fn join(self) -> Result<JobSummary, RuntimeError> {
        match self.join.await {
            Ok(r) => r,
            Err(e) => Err(RuntimeError::Internal(format!("job task: {e}"))),
        }
    }
}

pub(crate) fn start(mut g: Graph) -> Result<JobHandle, RuntimeError> {
    if let Some(e) = g.errors.first() {
        return Err(RuntimeError::InvalidJob(e.clone()));
    }
    let (source_name, source) = g
        .source
        .take()
        .ok_or_else(|| RuntimeError::InvalidJob("the job has no source".into()))?;
    let (factory, graph) = g.pipeline.take().ok_or_else(|| {
        RuntimeError::InvalidJob(
            "the job's stream never reaches a sink: end it with .sink(..)".into(),
        )
    })?;
    let sink_names: Vec<String> = g.sinks.iter().map(|(n, _)| n.clone()).collect();
    let metrics = Arc::new(Metrics::new(&source_name, &sink_names));
    let (stop, stop_rx) = watch::channel(false);
    let (checkpoints, requests) = mpsc::channel(4);
    let m = metrics.clone();
    let join = tokio::spawn(async move {
        let driver = Driver::new(g, source_name, factory, graph, m).await?;
        driver.run(source, stop_rx, requests).await
    });
    Ok(JobHandle {
        metrics,
        stop: Stopper(Arc::new(stop)),
        checkpoints,
        join,
    })
}

/// A checkpoint asked for through [`JobHandle::checkpoint`]: the reply is its
/// id, or `None` without a store.
type CheckpointRequest = oneshot::Sender<Option<u64>>;

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
}

struct Driver {
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
}

pub(crate) fn check_graph(cp: &Checkpoint, graph: &str) -> Result<(), RuntimeError> {
    if cp.graph != graph {
        return Err(RuntimeError::state_codec(
            &format!("checkpoint {}", cp.id),
            format!(
                "it was taken from job graph `{}`, this job is `{graph}`",
                cp.graph
            ),
        ));
    }
    Ok(())
}

fn ooo_ms(cfg: &JobConfig) -> i64 {
    cfg.out_of_orderness.as_millis() as i64
}

impl Driver {
    async fn new(
        mut g: Graph,
        source_name: String,
        factory: ChainFactory,
        graph: String,
        metrics: Arc<Metrics>,
    ) -> Result<Self, RuntimeError> {
        let cfg = g.config.clone();
        let restored = match &mut g.store {
            Some(s) => s.latest()?,
            None => None,
        };
        if let Some(cp) = &restored {
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
            owners: KeyOwners::default(),
            metrics,
            restored: None,
            retired: BTreeMap::new(),
            source_times: !g.assigns_timestamps,
            position_tx: watch::channel(None).0,
        };
        if let Some(cp) = &restored {
            let ids: Vec<PartitionId> = cp.partitions.keys().cloned().collect();
            d.restored = restored;
            d.restore_partitions(&ids)?;
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
        }
    }

    /// Builds the chains of these partitions from the restored checkpoint.
    fn restore_partitions(&mut self, ids: &[PartitionId]) -> Result<(), RuntimeError> {
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
                record: None,
                watermark: NO_TIME,
                max_ts: NO_TIME,
                out_of_orderness: ooo,
                next_fire: i64::MAX,
                outbox: &mut self.outbox,
                owners: &mut self.owners,
                again: false,
            };
            if snap.max_ts != NO_TIME {
                cx.observe(snap.max_ts);
            }
            if let Err(e) = part.chain.restore(&mut snap.operators.into_iter(), &mut cx) {
                result = Err(RuntimeError::state_codec(
                    &format!("checkpoint {} partition {id}", cp.id),
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

    fn position(&self) -> SourcePosition {
        let mut p = SourcePosition::new();
        for (id, part) in &self.parts {
            p = p.with(id.clone(), part.next_offset);
        }
        p
    }

    async fn run(
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

        let mut stop_open = true;
        let reason = loop {
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
                    self.update_job_watermark();
                    if let Some(iv) = self.cfg.checkpoint_interval {
                        if last_checkpoint.elapsed() >= iv {
                            self.checkpoint("interval").await?;
                            last_checkpoint = Instant::now();
                        }
                    }
                }
                ev = ev_rx.recv() => match ev {
                    Some(Ok(SourceEvent::Records(batch))) => self.process(batch).await?,
                    Some(Ok(SourceEvent::End)) => {
                        self.end_of_input().await?;
                        break EndReason::InputEnded;
                    }
                    Some(Ok(SourceEvent::Revoked(ids))) => {
                        self.checkpoint("revoke").await?;
                        let carry = self.store.as_ref().is_some_and(|s| !s.keeps_partitions());
                        for id in &ids {
                            if let Some(part) = self.parts.remove(id) {
                                // Its state and offset as of the revoke
                                // checkpoint, kept in later checkpoints
                                // until it comes back (see keeps_partitions).
                                if carry {
                                    self.retired.insert(id.clone(), snapshot_of(id, &part)?);
                                }
                            }
                            self.owners.release(id);
                        }
                    }
                    Some(Ok(SourceEvent::Assigned(ids))) => {
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
                        self.restore_partitions(&fresh)?;
                        for id in &fresh {
                            self.retired.remove(id);
                        }
                        for id in &ids {
                            if let Some(p) = self.parts.get_mut(id) {
                                p.live = true;
                            }
                        }
                        let mut pos = SourcePosition::new();
                        for id in &fresh {
                            if let Some(p) = self.parts.get(id) {
                                pos = pos.with(id.clone(), p.next_offset);
                            }
                        }
                        // Always answer an assignment with a seek, empty when
                        // nothing was checkpointed: the source holds back the
                        // new partitions' records until it has it.
                        let _ = seek_tx.send(pos).await;
                    }
                    Some(Ok(SourceEvent::Idle)) => {}
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(self.source_err(e)),
                    None => return Err(RuntimeError::Internal("source task ended".into())),
                },
            }
        };
        self.checkpoint(if reason == EndReason::Stopped {
            "shutdown"
        } else {
            "end of input"
        })
        .await?;
        drop(ev_rx);
        let _ = src_task.await;
        let Driver {
            sinks,
            dlq,
            late,
            metrics,
            ..
        } = self;
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

    async fn process(&mut self, batch: Vec<Record>) -> Result<(), RuntimeError> {
        self.metrics
            .records_in
            .fetch_add(batch.len() as u64, Relaxed);
        let ooo = ooo_ms(&self.cfg);
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
            if !self.parts.contains_key(&pid) {
                let p = self.new_part();
                self.parts.insert(pid.clone(), p);
                self.metrics
                    .partitions
                    .store(self.parts.len() as u64, Relaxed);
            }
            let part = self.parts.get_mut(&pid).expect("inserted above");
            part.last_seen = now;
            part.live = true;
            let mut cx = Cx {
                partition: &pid,
                record: None,
                watermark: part.watermark,
                max_ts: part.max_ts,
                out_of_orderness: ooo,
                next_fire: part.next_fire,
                outbox: &mut self.outbox,
                owners: &mut self.owners,
                again: false,
            };
            let source_times = self.source_times;
            let same = |r: &Record| match &r.partition {
                Some(p) => *p == pid,
                None => pid == default_pid,
            };
            let mut fire_more = false;
            while let Some(rec) = records.next_if(|r| same(r)) {
                let (offset, ts) = (rec.offset, rec.timestamp);
                part.chain.element(rec, ts.unwrap_or(NO_TIME), &mut cx);
                if let Some(t) = ts.filter(|_| source_times) {
                    cx.observe(t);
                }
                if cx.watermark >= cx.next_fire {
                    cx.next_fire = i64::MAX;
                    let wm = cx.watermark;
                    part.chain.watermark(wm, &mut cx);
                }
                part.next_offset = offset + 1;
                if cx.again {
                    fire_more = true;
                    break;
                }
            }
            part.watermark = cx.watermark;
            part.max_ts = cx.max_ts;
            part.next_fire = cx.next_fire;
            if fire_more {
                // A firing stopped at a full outbox: route, then go on
                // firing before the next record of this partition.
                let wm = part.watermark;
                self.route().await?;
                self.fire(&pid, wm).await?;
            }
        }
        self.route().await
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
                record: None,
                watermark: wm,
                max_ts: part.max_ts,
                out_of_orderness: ooo,
                next_fire: i64::MAX,
                outbox: &mut self.outbox,
                owners: &mut self.owners,
                again: false,
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

    /// Sends what the chains produced to the sinks (waiting when they are
    /// full: backpressure) and the bad and late records to theirs.
    async fn route(&mut self) -> Result<(), RuntimeError> {
        if let Some(e) = self.outbox.error.take() {
            return Err(e);
        }
        self.outbox.pending = 0;
        for (i, task) in self.sinks.iter_mut().enumerate() {
            if !self.outbox.sinks[i].is_empty() {
                let batch = std::mem::take(&mut self.outbox.sinks[i]);
                task.send(SinkMsg::Write(batch)).await?;
            }
        }
        let dead = std::mem::take(&mut self.outbox.dead);
        dead_letter("job", dead, &self.rejects, &self.metrics).await;
        let late = std::mem::take(&mut self.outbox.late);
        if !late.is_empty() {
            let n = late.len() as u64;
            self.metrics.late_records.fetch_add(n, Relaxed);
            if let Some(tx) = &self.late_to.tx {
                let batch = late
                    .iter()
                    .map(|l| crate::sinks::encode(l, self.late_to.format))
                    .collect();
                let _ = tx.send(SinkMsg::Write(batch)).await;
            }
        }
        Ok(())
    }

    async fn end_of_input(&mut self) -> Result<(), RuntimeError> {
        let mut ids: Vec<PartitionId> = self.parts.keys().cloned().collect();
        ids.sort();
        for id in ids {
            self.fire(&id, i64::MAX).await?;
        }
        self.update_job_watermark();
        Ok(())
    }

    fn update_job_watermark(&self) {
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

    /// Flushes every sink, then snapshots state and positions together;
    /// the id saved. A sink that cannot complete it for a retryable reason
    /// (its server away longer than its retries) skips this checkpoint with
    /// a warning: the job goes on and the next one tries again, as Flink
    /// tolerates failed checkpoints.
    async fn checkpoint(&mut self, why: &str) -> Result<Option<u64>, RuntimeError> {
        if self.store.is_none() {
            return Ok(None);
        }
        let t0 = Instant::now();
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
        );
        let store = self.store.as_mut().expect("checked");
        let size = tokio::task::block_in_place(|| store.save(&cp))?;
        self.next_checkpoint_id += 1;
        let ms = t0.elapsed().as_millis() as u64;
        self.metrics.checkpoints.fetch_add(1, Relaxed);
        self.metrics.checkpoint_last_ms.store(ms, Relaxed);
        self.metrics.checkpoint_last_bytes.store(size, Relaxed);
        tracing::debug!(job = %self.cfg.name, id = cp.id, why, bytes = size, ms, "checkpoint complete");
        let _ = self.position_tx.send(Some(self.position()));
        let created = cp.created_ms;
        self.metrics
            .set_status(|s| s.last_checkpoint = Some((cp.id, created)));
        Ok(Some(cp.id))
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

/// Reads the source into a bounded channel; seeks and commits on request.
async fn source_task(
    mut source: BoxSource,
    tx: mpsc::Sender<Result<SourceEvent, ConnectorError>>,
    mut pos_rx: watch::Receiver<Option<SourcePosition>>,
    mut seek_rx: mpsc::Receiver<SourcePosition>,
    retry: crate::RetryPolicy,
    metrics: Arc<Metrics>,
) {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut lag_at = Instant::now();
    let mut failures = 0;
    let mut ended = false;
    loop {
        if pos_rx.has_changed().unwrap_or(false) {
            let pos = pos_rx.borrow_and_update().clone();
            if let Some(pos) = pos {
                if let Err(e) = source.on_checkpoint_complete_dyn(&pos).await {
                    tracing::warn!(error = %e, "source could not record the completed checkpoint");
                }
            }
        }
        while let Ok(pos) = seek_rx.try_recv() {
            if let Err(e) = source.seek_dyn(&pos).await {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
        if ended {
            tokio::select! {
                biased;
                // `changed` marks the value seen: re-flag it so the top of
                // the loop hands it to the source.
                r = pos_rx.changed() => if r.is_err() { break } else { pos_rx.mark_changed(); continue },
                _ = tx.closed() => break,
            }
        }
        if lag_at.elapsed() >= Duration::from_secs(1) {
            lag_at = Instant::now();
            let lag = source.lag_dyn();
            metrics.set_lag(lag.into_iter().map(|(p, n)| (p.to_string(), n)).collect());
        }
        let ev = source.next_dyn().await;
        match ev {
            Err(e) if e.is_retryable() && failures + 1 < retry.max_attempts => {
                let wait = crate::sinks::backoff(&retry, failures, &mut seed);
                failures += 1;
                tracing::warn!(error = %e, attempt = failures, wait_ms = wait.as_millis() as u64, "source read failed, retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            Err(ConnectorError::BadRecords(rejected)) => {
                failures = 0;
                let letters = rejected.into_iter().map(|r| r.record).collect::<Vec<_>>();
                tracing::warn!(count = letters.len(), "source rejected records");
                // Undecodable at the source: hand them on as records with no
                // event time; the decode stage dead-letters them.
                if tx.send(Ok(SourceEvent::Records(letters))).await.is_err() {
                    break;
                }
            }
            ev => {
                failures = 0;
                ended = matches!(ev, Ok(SourceEvent::End));
                if tx.send(ev).await.is_err() {
                    break;
                }
            }
        }
    }
    if let Err(e) = source.close_dyn().await {
        tracing::warn!(error = %e, "source close failed");
    }
}
