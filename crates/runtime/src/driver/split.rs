//! Runs of records split across tasks: with an exchange, the chain before
//! it (decode, map, filter, event time) keeps no state, so a long run of
//! one partition's records is cut into chunks that up to `workers` tasks
//! run at once, each with a chain of its own. The driver then takes the
//! chunks' outputs in the order of the records, as if one chain had run
//! them all.
//!
//! The only thing a chunk cannot know is the watermark its partition
//! reached over the chunks before it: each starts from the partition's
//! watermark before the run. A partition's watermark is a running maximum,
//! so the watermark at any record is the larger of what its chunk saw and
//! the watermark at the end of the chunks before it. The driver sends that
//! as the chunk's *floor* with its elements (`ToWorker::Data`), and the
//! workers judge lateness against `max(element's watermark, floor)`:
//! exactly the watermark one chain would have given it. Dead letters,
//! side outputs and offsets follow the records' order as well.
//!
//! The same makes two batches in flight safe: while one batch's chunks
//! run, the next batch's are started from the partition's watermark as the
//! driver has it, and the floor taken in order makes up for the chunks
//! still running (`Driver::process_split`).

use flowline_connector_api::{PartitionId, Record, SourceEvent};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::parts::ROUND;
use super::Driver;
use crate::operator::{BoxOp, Cx, KeyOwners, Outbox, NO_TIME};
use crate::source::FromSource;
use crate::RuntimeError;

/// No chunk is shorter: below this, the tasks' start and hand-over cost
/// more than they save.
pub(super) const MIN_CHUNK: usize = 256;

/// What a chunk's chain produced, and where its partition's event time
/// stood after it (starting from the partition's before the run).
struct Chunk {
    chain: BoxOp<Record>,
    out: Outbox,
    watermark: i64,
    max_ts: i64,
    last_offset: Option<u64>,
}

/// How a chunk runs: the partition's event time before the run, and the
/// shapes of its outbox.
#[derive(Clone)]
struct Start {
    pid: PartitionId,
    watermark: i64,
    max_ts: i64,
    out_of_orderness: i64,
    source_times: bool,
    sinks: usize,
    workers: usize,
}

fn run_chunk(mut chain: BoxOp<Record>, records: Vec<Record>, s: Start, task: usize) -> Chunk {
    let mut out = Outbox {
        sinks: vec![Vec::new(); s.sinks],
        exchange: (0..s.workers).map(|_| None).collect(),
        ..Outbox::default()
    };
    // Keys spread evenly in expectation; a share past this grows once.
    out.make_room(records.len());
    let mut owners = KeyOwners::default();
    let mut cx = Cx {
        partition: &s.pid,
        record: crate::operator::InScope::None,
        watermark: s.watermark,
        max_ts: s.max_ts,
        out_of_orderness: s.out_of_orderness,
        next_fire: i64::MAX,
        outbox: &mut out,
        owners: &mut owners,
        again: false,
        worker: task,
        key_group: None,
    };
    let mut last_offset = None;
    for rec in records {
        let (offset, ts) = (rec.offset, rec.timestamp);
        chain.element(rec, ts.unwrap_or(NO_TIME), &mut cx);
        if let Some(t) = ts.filter(|_| s.source_times) {
            cx.observe(t);
        }
        last_offset = Some(offset);
    }
    let (watermark, max_ts) = (cx.watermark, cx.max_ts);
    Chunk {
        chain,
        out,
        watermark,
        max_ts,
        last_offset,
    }
}

/// Cuts `records` into `k` chunks of nearly equal length, in order.
fn cut(mut records: Vec<Record>, k: usize) -> Vec<Vec<Record>> {
    let n = records.len();
    let mut chunks = Vec::with_capacity(k);
    for i in (1..k).rev() {
        chunks.push(records.split_off(n * i / k));
    }
    chunks.push(records);
    chunks.reverse();
    chunks
}

/// Splits a batch into its runs of one partition, in order.
pub(super) fn runs(mut batch: Vec<Record>) -> Vec<(Option<PartitionId>, Vec<Record>)> {
    // Where each run after the first starts.
    let later: Vec<usize> = (1..batch.len())
        .filter(|&i| batch[i].partition != batch[i - 1].partition)
        .collect();
    // The later runs are split off the end; the first keeps the batch's
    // own buffer (`split_off(0)` would leave a new, empty buffer of the
    // batch's whole capacity behind, an allocation per batch for nothing).
    let mut runs: Vec<Vec<Record>> = later.iter().rev().map(|&s| batch.split_off(s)).collect();
    runs.push(batch);
    runs.into_iter()
        .rev()
        .map(|run| (run.first().and_then(|r| r.partition.clone()), run))
        .collect()
}

/// A run's chunks, started and not yet taken.
struct Flight {
    pid: PartitionId,
    chunks: Vec<Launched>,
}

enum Launched {
    /// Run on the driver's task (a run too short to split).
    Done(Box<Chunk>),
    Running(JoinHandle<Chunk>),
}

impl Driver {
    /// `process` for a job whose chain before the exchange is stateless:
    /// each run of a partition in chunks on up to `split` tasks.
    ///
    /// While a batch's chunks run, the batch waiting behind it in `rx` is
    /// taken and its chunks started, and only then are the first batch's
    /// outputs taken and routed: the tasks do not sit idle while the driver
    /// routes (a batch at a time, they did, and 2 workers kept 1.6–1.7 of 2
    /// cores busy). Outputs are still taken in the records' order, each
    /// chunk's floor from the chunks before it, so nothing else changes.
    /// Up to [`ROUND`] records per call; a message of another kind taken
    /// from behind the batches is returned, to be handled next, in order.
    pub(super) async fn process_split(
        &mut self,
        first: Vec<Record>,
        rx: &mut mpsc::Receiver<FromSource>,
    ) -> Result<Option<FromSource>, RuntimeError> {
        let mut taken = first.len();
        self.count_in(&first);
        let mut flying = self.launch(first);
        let mut next = None;
        while taken < ROUND {
            match rx.try_recv() {
                Ok(FromSource::Event(Ok(SourceEvent::Records(b)))) => {
                    taken += b.len();
                    self.count_in(&b);
                    let more = self.launch(b);
                    // On an error the job ends; chunks still running finish
                    // their few records and are dropped.
                    self.land(flying).await?;
                    flying = more;
                }
                Ok(other) => {
                    next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        self.land(flying).await?;
        Ok(next)
    }

    /// Starts a batch's runs: each cut in chunks, on tasks when longer than
    /// a chunk.
    fn launch(&mut self, batch: Vec<Record>) -> Vec<Flight> {
        let default_pid = PartitionId::new("0");
        let now = std::time::Instant::now();
        let mut flights = Vec::new();
        for (pid, run) in runs(batch) {
            let pid = pid.unwrap_or_else(|| default_pid.clone());
            self.ensure_part(&pid);
            let part = self.parts.get_mut(&pid).expect("ensured above");
            part.last_seen = now;
            part.live = true;
            part.caught_up = false;
            part.seen_at = self.input_clock;
            // The partition's event time before the run as far as the
            // driver has taken it; the chunks of an earlier batch still
            // running may move it, which the floor makes up for.
            let start = Start {
                pid: pid.clone(),
                watermark: part.watermark,
                max_ts: part.max_ts,
                out_of_orderness: super::ooo_ms(&self.cfg),
                source_times: self.source_times,
                sinks: self.sinks.len(),
                workers: self.outbox.exchange.len(),
            };
            let k = (run.len() / MIN_CHUNK).clamp(1, self.split);
            let mut chunks = Vec::with_capacity(k);
            if k == 1 {
                let chain = self.spare.pop().unwrap_or_else(|| (self.factory)());
                chunks.push(Launched::Done(Box::new(run_chunk(chain, run, start, 0))));
            } else {
                // Every chunk on a task of its own (none on the driver's):
                // the runtime's newest task waits for the spawning one to
                // yield, so the others are free to run on other threads.
                for (i, records) in cut(run, k).into_iter().enumerate() {
                    let chain = self.spare.pop().unwrap_or_else(|| (self.factory)());
                    let s = start.clone();
                    chunks.push(Launched::Running(tokio::spawn(async move {
                        run_chunk(chain, records, s, i)
                    })));
                }
            }
            flights.push(Flight { pid, chunks });
        }
        flights
    }

    /// Takes a batch's chunks in order, as one chain running them all would
    /// have produced them, and routes what they emitted.
    async fn land(&mut self, flights: Vec<Flight>) -> Result<(), RuntimeError> {
        for Flight { pid, chunks } in flights {
            for launched in chunks {
                let c = match launched {
                    Launched::Done(c) => *c,
                    Launched::Running(t) => t.await.map_err(|e| {
                        RuntimeError::Internal(format!("a chunk of partition {pid}: {e}"))
                    })?,
                };
                let part = self.parts.get_mut(&pid).expect("ensured at launch");
                // The partition's watermark before this chunk's records,
                // as one chain running them all would have had it.
                let floor = part.watermark;
                part.watermark = part.watermark.max(c.watermark);
                part.max_ts = part.max_ts.max(c.max_ts);
                if let Some(o) = c.last_offset {
                    part.next_offset = o + 1;
                }
                let mut out = c.out;
                std::mem::swap(&mut self.outbox, &mut out);
                let routed = self.route_above(floor).await;
                std::mem::swap(&mut self.outbox, &mut out);
                // Two batches' chains are out at a time.
                if self.spare.len() < 2 * self.split {
                    self.spare.push(c.chain);
                }
                routed?;
            }
        }
        self.route().await?;
        self.advance_exchange().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(p: &str, offset: u64) -> Record {
        let mut r = Record::new(b"x".to_vec());
        r.partition = Some(PartitionId::new(p));
        r.offset = offset;
        r
    }

    #[test]
    fn a_batch_of_one_partition_is_its_own_run_without_a_new_buffer() {
        let batch: Vec<Record> = (0..100).map(|o| rec("a", o)).collect();
        let buffer = batch.as_ptr();
        let rs = runs(batch);
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0].1.len(), 100);
        assert_eq!(
            rs[0].1.as_ptr(),
            buffer,
            "the run reuses the batch's buffer"
        );
    }

    #[test]
    fn runs_and_chunks_keep_every_record_in_order() {
        let batch: Vec<Record> = [("a", 0), ("a", 1), ("b", 0), ("a", 2), ("a", 3), ("a", 4)]
            .iter()
            .map(|(p, o)| rec(p, *o))
            .collect();
        let rs = runs(batch);
        let shape: Vec<(String, Vec<u64>)> = rs
            .iter()
            .map(|(p, r)| {
                (
                    p.as_ref().unwrap().to_string(),
                    r.iter().map(|r| r.offset).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                ("a".into(), vec![0, 1]),
                ("b".into(), vec![0]),
                ("a".into(), vec![2, 3, 4]),
            ]
        );
        for n in [1usize, 2, 7, 1000] {
            for k in 1..=4 {
                let recs: Vec<Record> = (0..n as u64).map(|o| rec("a", o)).collect();
                let cs = cut(recs, k);
                assert_eq!(cs.len(), k);
                let flat: Vec<u64> = cs.iter().flatten().map(|r| r.offset).collect();
                assert_eq!(flat, (0..n as u64).collect::<Vec<_>>(), "n {n} k {k}");
            }
        }
    }
}
