//! # flowline-runtime
//!
//! A Flink-like DataStream API over the connector API:
//! [`StreamEnvironment`] → `source` → `try_map` / `map` / `filter` /
//! `flat_map` → `key_by` → `window(..).aggregate(..)` or `process(..)` →
//! `sink` → [`StreamEnvironment::execute`].
//!
//! ```
//! use flowline_connector_api::{Record, Sink, Source};
//! use flowline_runtime::*;
//! use std::time::Duration;
//! # use flowline_connector_api::*;
//! # struct Mem(Vec<Record>, usize);
//! # impl Source for Mem {
//! #   async fn next(&mut self) -> Result<SourceEvent, ConnectorError> {
//! #     if self.1 >= self.0.len() { return Ok(SourceEvent::End) }
//! #     let b = self.0[self.1..].to_vec(); self.1 = self.0.len(); Ok(SourceEvent::Records(b)) }
//! #   async fn seek(&mut self, _: &SourcePosition) -> Result<(), ConnectorError> { Ok(()) } }
//! # #[derive(Clone, Default)] struct Out(std::sync::Arc<std::sync::Mutex<Vec<String>>>);
//! # impl Sink for Out {
//! #   async fn write(&mut self, b: Vec<Record>) -> Result<(), ConnectorError> {
//! #     self.0.lock().unwrap().extend(b.into_iter().map(|r| String::from_utf8(r.payload).unwrap())); Ok(()) }
//! #   async fn flush(&mut self) -> Result<(), ConnectorError> { Ok(()) } }
//!
//! /// Counts elements per key and window.
//! #[derive(Clone)]
//! struct Count;
//! impl AggregateFunction for Count {
//!     type In = (String, i64);
//!     type Acc = u64;
//!     type Out = u64;
//!     fn create_accumulator(&self) -> u64 { 0 }
//!     fn add(&self, acc: &mut u64, _: &(String, i64)) { *acc += 1 }
//!     fn get_result(&self, acc: &u64) -> u64 { *acc }
//! }
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), RuntimeError> {
//! let input: Vec<Record> = [("a", 1_000), ("b", 2_000), ("a", 9_000), ("a", 12_000)]
//!     .iter()
//!     .map(|(k, ts)| Record::new(format!("{k} {ts}")))
//!     .collect();
//! let out = Out::default();
//!
//! let env = StreamEnvironment::new(JobConfig::named("example"));
//! let sink = env.add_sink("out", Box::new(out.clone()));
//! env.source("mem", Box::new(Mem(input, 0)))
//!     .try_map("decode", |r: &Record| {
//!         let s = std::str::from_utf8(&r.payload).map_err(|e| e.to_string())?;
//!         let (k, ts) = s.split_once(' ').ok_or("expected `key ts`")?;
//!         Ok::<_, String>((k.to_string(), ts.parse::<i64>().map_err(|e| e.to_string())?))
//!     })
//!     .with_timestamps(|(_, ts)| *ts)
//!     .key_by(|(k, _)| k.clone())
//!     .window(Tumbling::of(Duration::from_secs(10)))
//!     .aggregate(Count)
//!     .map(|w| format!("{} [{}, {}) {}", w.key, w.window.start, w.window.end, w.value))
//!     .sink(sink);
//! let summary = env.execute().await?;
//! assert_eq!(summary.records_in, 4);
//! // Keys run on the workers that own their key groups: sort to compare.
//! let mut got = out.0.lock().unwrap().clone();
//! got.sort();
//! assert_eq!(got, ["a [0, 10000) 2", "a [10000, 20000) 1", "b [0, 10000) 1"]);
//! # Ok(()) }
//! ```
//!
//! ## The life of a record
//!
//! One record, from the source to a sink, through the files that handle it:
//!
//! 1. **Read.** The source task (`source.rs`, `source_task`) calls
//!    `Source::next` and sends each batch down a bounded channel; retryable
//!    read errors are retried with backoff there, and records a source
//!    refuses go on with their reason.
//! 2. **Routed to its partition.** The driver (`driver/mod.rs`,
//!    `Driver::process`) looks up the chain of the record's source
//!    partition, creating it on first sight, and hands it the record; the
//!    partition's offset advances.
//! 3. **Decoded and transformed.** The chain is the job's operators in
//!    order (`operator.rs`): `try_map` decodes (`TryMapOp`; an `Err` becomes
//!    a dead letter through `Cx::bad_record`), `map` / `filter` /
//!    `flat_map` transform, `with_timestamps` gives the event time
//!    (`TimestampOp`), which moves the partition's watermark
//!    (`Cx::observe`).
//! 4. **Keyed and windowed.** `key_by(..).window(..).aggregate(..)` is
//!    `WindowOp` (`keyed.rs`): `WindowOp::element` claims the key for the
//!    partition (`Cx::claim_key`), adds the value to its window's
//!    accumulator, and sends an event behind the allowed lateness to the
//!    late output; `process(..)` is `ProcessOp` with keyed state and timers.
//! 5. **Fired.** When the partition's watermark passes a window's end,
//!    `Driver::fire` calls `WindowOp::watermark`, which emits a
//!    `WindowResult` per key and window, in chunks of at most
//!    `FIRE_CHUNK` so that a huge firing stays bounded.
//! 6. **Written.** `SinkOp` turns each result into a `Record` for its sink;
//!    `Driver::route` sends the outbox to the sink tasks (`sinks.rs`,
//!    `SinkTask`), which write, flush and retry (`with_retries`); records a
//!    sink refuses come back as dead letters (`dead_letter`, `encode`).
//! 7. **Checkpointed.** `Driver::checkpoint` (`driver/checkpointing.rs`)
//!    flushes every sink and takes its snapshot, then each partition's
//!    chain state and offset (`snapshot_of`), and saves one checkpoint
//!    through the `CheckpointStore` (`flowline-checkpoint`); on restart
//!    `Driver::restore_partitions` rebuilds the chains and the source seeks
//!    to the saved offsets, so the record is neither lost nor counted twice.
//!
//! ## Time
//!
//! Event time comes from the record (`Record::timestamp`) or from
//! `with_timestamps`. Each source partition has its own watermark: the
//! highest event time seen in it, minus the configured out-of-orderness,
//! minus 1 ms (Flink's rule), advanced per record. Windows are epoch-aligned,
//! start inclusive, end exclusive, and fire when their partition's watermark
//! reaches `end - 1`. Allowed lateness keeps a fired window for that much
//! longer: a late event inside it updates and re-emits the window
//! (`WindowResult::update`); a later one goes to the late side output and is
//! counted. At the end of a bounded input every open window fires.
//!
//! The job's watermark (metrics, status) is the minimum over the partitions
//! that received a record within the idle timeout; an idle partition never
//! holds it back.
//!
//! ## Keys, the exchange and workers
//!
//! By default the first `key_by` is a **hash exchange** (`exchange.rs`), as
//! Flink's `keyBy`: the operators before it run per source partition (when
//! they keep no state, as decode, map, filter and event time, a long run of
//! a partition's records is cut in chunks that several tasks run at once,
//! taken back in order: `driver/split.rs`), then each element goes to the
//! worker that owns its key's *key
//! group* (128 of them; a stable hash of the key), and the keyed operators
//! and all after them run there, one chain per key group, without locks
//! (`worker.rs`). `JobConfig::workers` sets how many (default: the cores).
//! Any input gives correct results: null-keyed or round-robin topics, keys
//! spread over partitions.
//!
//! The workers' watermark is the minimum over the source partitions read,
//! idle ones left out (when all are idle, the minimum of all); partitions
//! assigned but not yet read hold it back until the idle timeout. A checkpoint is an aligned barrier: the driver
//! stops reading, sends a barrier after the last element to every worker
//! (its only input, so the barrier is aligned by construction), and each
//! answers with its key groups' state once what it emitted is on its way to
//! the sinks; the checkpoint holds the source positions and every group's
//! state at that barrier. A restore with another worker count hands each
//! worker the groups of its range, restored in parallel.
//!
//! What an exchange gives up: when a partition stays idle past the idle
//! timeout and then sends old events, they may be late for the other
//! partitions' watermark; and after a restore, whether a late event counts
//! (within the allowed lateness it updates a window) can differ from the
//! uninterrupted run, as in Flink. Final results are those of a group-by of
//! the events that are not late.
//!
//! One process per job: key groups are not shared between processes (a
//! Kafka repartition topic would be needed); a scale-out checkpoint store
//! refuses state by key group, and the `flowline` CLI makes such a job's
//! Kafka source exclusive (it stops when another member of its group holds
//! part of the topic).
//!
//! **Partitioned by key** (`JobConfig::partitioned_by_key`): an input
//! already partitioned by the key or a prefix of it (the metric generator
//! keys Kafka messages by host; the job keys by host and metric) skips the
//! exchange. Keyed state, windows and timers then live with the source
//! partition their keys arrive on and fire on that partition's watermark, so
//! replaying a partition from its checkpoint reproduces exactly the same
//! output whatever the other partitions do, and partitions can move between
//! processes. The runtime checks the declaration: a record whose key
//! another partition holds state of (a window, a keyed process state) is a
//! dead letter whose reason is
//! [`RuntimeError::KeySplit`]'s, naming the key and both partitions, and the
//! job goes on (failing it would fail it again at every restart on the same
//! record); only state restored split fails the job. Which partition keeps
//! such a key is the one that brought it first, so for that key alone a
//! replay may keep the other. It never silently splits a key's state
//! within a process; processes do not compare keys, so a false
//! declaration over processes reading one partition each goes unseen.
//!
//! ## Checkpoints
//!
//! When a job starts afresh (before its first record), at the configured
//! interval, on partition revoke, on shutdown and at the end of input, the
//! driver pauses, flushes every sink (and takes their
//! snapshots), then snapshots keyed state, window contents, timers and
//! source positions together into one [`Checkpoint`] written atomically
//! through a [`CheckpointStore`] ([`LocalDirStore`] by default). On start the
//! newest checkpoint is restored and the source seeks to its positions. At
//! the end of a bounded input the checkpoint comes before the windows still
//! open fire (as if time ran out): it holds them open, with the watermark
//! the events made, so a later run over more of the input counts its events
//! in them and fires them again complete, the sinks cutting back or
//! overwriting the early firing. The start's checkpoint makes a crash before the first interval a restore as
//! well: the sinks go back to what they held before the job wrote anything
//! (a file's length, a topic's end offsets), instead of the next start
//! finding the job's own output and taking it for another's.
//!
//! ## Backpressure
//!
//! Every channel between the source task, the driver and the sink tasks is
//! bounded (`JobConfig::channel_capacity` batches); a slow sink stops the
//! driver, which stops reading the source. Nothing buffers without bound.

#![warn(missing_docs)]

mod budget;
mod component;
mod count;
mod driver;
mod error;
mod exchange;
mod handle;
mod held;
mod job;
mod keyed;
mod metrics;
mod observe;
mod operator;
mod owners;
mod process;
mod prometheus;
mod promlint;
mod shrink;
mod sinks;
mod source;
mod state;
mod stream;
mod window;
mod worker;

pub use error::RuntimeError;
pub use flowline_checkpoint::{
    Checkpoint, CheckpointError, CheckpointStore, LocalDirStore, PartitionSnapshot,
};
pub use handle::{EndReason, JobHandle, JobSummary, Stopper};
pub use job::{DeadLetterFormat, JobConfig, RetryPolicy};
pub use keyed::{AggregateFunction, ByRef, ByValue, Key, KeySelector, WindowResult};
pub use metrics::{CheckpointRecord, JobStatus, Metrics, PartitionStatus, CHECKPOINT_HISTORY};
pub use observe::{
    DeadLetterRecord, DeadLetterTally, NoSuchStage, Ops, StageStatus, Tapped, TaskStatus,
    DEAD_LETTER_HISTORY,
};
pub use operator::{DeadLetter, DeadLetterKind};
pub use process::KeyedProcessFunction;
pub use promlint::lint as lint_prometheus;
pub use sinks::{IntoRecord, DEAD_LETTER_ID};
pub use state::{MapState, ProcessContext, ValueState};
pub use stream::{DataStream, KeyedStream, SinkHandle, StreamEnvironment, WindowedStream};
pub use window::{Sliding, TimeWindow, Tumbling, WindowSpec};
