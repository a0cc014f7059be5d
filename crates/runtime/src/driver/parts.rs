//! Partitions in parallel. Without an exchange (the source partitioned by
//! the job's key, or no keyed operator at all), every source partition has
//! a chain of its own that shares nothing with the others' but the table
//! of key owners ([`KeyOwners`], locked per key new to a window or state).
//! So the driver spreads a batch's partitions over up to `workers` tasks,
//! each running its partitions' records in order through their chains,
//! and routes what each task emitted once all are done. A partition's
//! records see exactly what one task running them all would give them:
//! its own watermark, its own state, the same outputs in the same order.
//! Only the order between partitions' outputs differs, which nothing
//! promises.
//!
//! A round ends with all chains back in the driver, so checkpoints,
//! rebalances and timers stay as on one task. A firing that stops at a
//! full outbox stops its partition's run: the driver routes, fires on, and
//! runs the rest of that partition's records itself.

use std::collections::VecDeque;
use std::iter::Peekable;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use flowline_connector_api::{PartitionId, Record, SourceEvent};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Driver, Part};
use crate::operator::{Cx, KeyOwners, Outbox, NO_TIME};
use crate::source::FromSource;
use crate::RuntimeError;

/// The most records read ahead and not yet on a task.
const GATHER: usize = 16 * 1024;

/// The most records taken from the source before every chain is back in
/// the driver (to serve ticks, checkpoints and stop requests).
pub(super) const ROUND: usize = 64 * 1024;

/// What a chain runs with besides its partition.
#[derive(Clone, Copy)]
pub(super) struct Env {
    pub(super) out_of_orderness: i64,
    pub(super) source_times: bool,
}

/// Runs the records of partition `pid` that `records` yields next (while
/// `same` holds) through its chain, in order, advancing its watermark per
/// record and firing what comes due. Returns `true` when a firing stopped
/// at a full outbox: route, fire on, then go on with what `records` has
/// left.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_records<I: Iterator<Item = Record>>(
    part: &mut Part,
    pid: &PartitionId,
    records: &mut Peekable<I>,
    same: impl Fn(&Record) -> bool,
    env: Env,
    outbox: &mut Outbox,
    owners: &mut KeyOwners,
    task: usize,
) -> bool {
    let mut cx = Cx {
        partition: pid,
        record: crate::operator::InScope::None,
        watermark: part.watermark,
        max_ts: part.max_ts,
        out_of_orderness: env.out_of_orderness,
        next_fire: part.next_fire,
        outbox,
        owners,
        again: false,
        worker: task,
        key_group: None,
    };
    let mut fire_more = false;
    while let Some(rec) = records.next_if(|r| same(r)) {
        let (offset, ts) = (rec.offset, rec.timestamp);
        part.chain.element(rec, ts.unwrap_or(NO_TIME), &mut cx);
        if let Some(t) = ts.filter(|_| env.source_times) {
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
    fire_more
}

/// A partition's run on a task: its chain and records, in; its chain and
/// the records a firing stopped before, out, with what it emitted.
struct Share {
    pid: PartitionId,
    part: Part,
    records: Vec<Record>,
    fire_more: bool,
    out: Outbox,
}

fn run_share(mut s: Share, env: Env, mut owners: KeyOwners, task: usize) -> Share {
    let mut it = std::mem::take(&mut s.records).into_iter().peekable();
    s.fire_more = run_records(
        &mut s.part,
        &s.pid,
        &mut it,
        |_| true,
        env,
        &mut s.out,
        &mut owners,
        task,
    );
    s.records = it.collect();
    s
}

/// Records read and not yet run, by partition, and the runs on tasks.
#[derive(Default)]
pub(super) struct Pending {
    queued: Vec<(PartitionId, Vec<Record>)>,
    records: usize,
    /// Oldest first.
    running: VecDeque<(PartitionId, JoinHandle<Share>)>,
}

impl Pending {
    fn push(&mut self, batch: Vec<Record>) {
        let default = PartitionId::new("0");
        self.records += batch.len();
        for (pid, run) in super::split::runs(batch) {
            let pid = pid.unwrap_or_else(|| default.clone());
            match self.queued.iter_mut().find(|(p, _)| *p == pid) {
                Some((_, v)) => v.extend(run),
                None => self.queued.push((pid, run)),
            }
        }
    }

    fn busy(&self, pid: &PartitionId) -> bool {
        self.running.iter().any(|(p, _)| p == pid)
    }
}

impl Driver {
    /// Partitions run on tasks of their own: no exchange, more than one
    /// worker, and more than one partition seen. A lone partition runs on
    /// the driver's task as without workers: tasks would give it nothing
    /// but a read-ahead and allocations freed on other threads (its peak
    /// RSS was 10-20 MB higher). Either way every chain is back in the
    /// driver after a batch, so the two alternate freely.
    pub(super) fn parallel_parts(&self) -> bool {
        self.workers.is_none() && self.cfg.workers > 1 && self.parts.len() > 1
    }

    /// A partition has records: create its chain if new, and restart its
    /// idle clocks.
    pub(super) fn touch(&mut self, pid: &PartitionId, now: Instant) {
        self.ensure_part(pid);
        let part = self.parts.get_mut(pid).expect("ensured above");
        part.last_seen = now;
        part.live = true;
        part.caught_up = false;
        part.seen_at = self.input_clock;
    }

    pub(super) fn env(&self) -> Env {
        Env {
            out_of_orderness: super::ooo_ms(&self.cfg),
            source_times: self.source_times,
        }
    }

    /// Runs `records`, all of partition `pid`, on the driver's task.
    async fn run_here(
        &mut self,
        pid: PartitionId,
        records: Vec<Record>,
    ) -> Result<(), RuntimeError> {
        let env = self.env();
        self.outbox.make_room(records.len());
        let mut it = records.into_iter().peekable();
        while it.peek().is_some() {
            self.touch(&pid, Instant::now());
            let part = self.parts.get_mut(&pid).expect("touched above");
            let (outbox, owners) = (&mut self.outbox, &mut self.owners);
            if run_records(part, &pid, &mut it, |_| true, env, outbox, owners, 0) {
                let wm = part.watermark;
                self.route().await?;
                self.fire(&pid, wm).await?;
            }
        }
        Ok(())
    }

    /// `process` with partitions on up to `workers` tasks: takes `first`
    /// and the batches waiting behind it in `rx` (up to [`ROUND`] records),
    /// each partition's records on a task as soon as the partition is not
    /// running and a task is free, and returns once every record taken has
    /// run and what it emitted was routed: the chains are all back then.
    /// Returns the first message of another kind taken from `rx`.
    pub(super) async fn process_parts(
        &mut self,
        first: Vec<Record>,
        rx: &mut mpsc::Receiver<FromSource>,
    ) -> Result<Option<FromSource>, RuntimeError> {
        let mut pending = std::mem::take(&mut self.pending);
        let r = self.stream(first, rx, &mut pending).await;
        // On an error the job ends: the chains on tasks are not needed back.
        for (_, t) in pending.running.drain(..) {
            t.abort();
        }
        pending.queued.clear();
        pending.records = 0;
        self.pending = pending;
        self.metrics
            .partitions
            .store(self.parts.len() as u64, Relaxed);
        r
    }

    async fn stream(
        &mut self,
        first: Vec<Record>,
        rx: &mut mpsc::Receiver<FromSource>,
        p: &mut Pending,
    ) -> Result<Option<FromSource>, RuntimeError> {
        let mut taken = 0;
        let mut batch = Some(first);
        let mut next = None;
        loop {
            if let Some(b) = batch.take() {
                self.metrics.records_in.fetch_add(b.len() as u64, Relaxed);
                self.metrics.ops().tapped("source", &b);
                taken += b.len();
                p.push(b);
            }
            while p.running.front().is_some_and(|(_, t)| t.is_finished()) {
                self.reap(p).await?;
            }
            self.dispatch(p);
            if taken >= ROUND || next.is_some() {
                break;
            }
            if p.records >= GATHER {
                self.reap(p).await?;
                continue;
            }
            match rx.try_recv() {
                Ok(FromSource::Event(Ok(SourceEvent::Records(b)))) => batch = Some(b),
                Ok(other) => next = Some(other),
                Err(_) if p.running.is_empty() => break,
                Err(_) => self.reap(p).await?,
            }
        }
        while !p.running.is_empty() || !p.queued.is_empty() {
            if !p.running.is_empty() {
                self.reap(p).await?;
            }
            self.dispatch(p);
        }
        self.route().await?;
        Ok(next)
    }

    /// Starts a task for each queued partition not running, while fewer
    /// than `workers` run.
    fn dispatch(&mut self, p: &mut Pending) {
        let env = self.env();
        let sinks = self.sinks.len();
        let now = Instant::now();
        let mut i = 0;
        while i < p.queued.len() && p.running.len() < self.cfg.workers {
            if p.busy(&p.queued[i].0) {
                i += 1;
                continue;
            }
            let (pid, records) = p.queued.remove(i);
            p.records -= records.len();
            self.touch(&pid, now);
            let part = self.parts.remove(&pid).expect("touched above");
            let share = Share {
                pid: pid.clone(),
                part,
                records,
                fire_more: false,
                out: Outbox {
                    sinks: vec![Vec::new(); sinks],
                    ..Outbox::default()
                },
            };
            let owners = self.owners.clone();
            let task = p.running.len();
            // On a task of its own (not the driver's): the runtime's newest
            // task waits for the spawning one to yield, so the others are
            // free to run on other threads.
            let h = tokio::spawn(async move { run_share(share, env, owners, task) });
            p.running.push_back((pid, h));
        }
    }

    /// Waits for the oldest running task, takes its partition's chain back
    /// and routes what it emitted. A firing it stopped at a full outbox
    /// goes on here, and the records after it run before the partition's
    /// queued ones.
    async fn reap(&mut self, p: &mut Pending) -> Result<(), RuntimeError> {
        let Some((pid, h)) = p.running.pop_front() else {
            return Ok(());
        };
        let s = h.await.map_err(|e| {
            RuntimeError::Internal(format!("the task running partition {pid} failed: {e}"))
        })?;
        let wm = s.part.watermark;
        self.parts.insert(s.pid, s.part);
        let mut out = s.out;
        std::mem::swap(&mut self.outbox, &mut out);
        let routed = self.route().await;
        std::mem::swap(&mut self.outbox, &mut out);
        routed?;
        if s.fire_more {
            self.fire(&pid, wm).await?;
            let mut records = s.records;
            if let Some(i) = p.queued.iter().position(|(q, _)| *q == pid) {
                let (_, after) = p.queued.remove(i);
                p.records -= after.len();
                records.extend(after);
            }
            self.run_here(pid, records).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(p: Option<&str>, offset: u64) -> Record {
        let mut r = Record::new(b"x".to_vec());
        r.partition = p.map(PartitionId::new);
        r.offset = offset;
        r
    }

    #[test]
    fn queued_keeps_each_partitions_order() {
        let mut p = Pending::default();
        p.push(vec![
            rec(Some("a"), 0),
            rec(Some("b"), 0),
            rec(Some("a"), 1),
        ]);
        p.push(vec![rec(None, 7), rec(Some("b"), 1), rec(Some("0"), 8)]);
        let got: Vec<(String, Vec<u64>)> = p
            .queued
            .iter()
            .map(|(p, r)| (p.to_string(), r.iter().map(|r| r.offset).collect()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a".into(), vec![0, 1]),
                ("b".into(), vec![0, 1]),
                ("0".into(), vec![7, 8]),
            ]
        );
        assert_eq!(p.records, 6);
    }
}
