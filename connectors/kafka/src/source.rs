//! The Kafka source: a consumer group (rebalances surface as assigned /
//! revoked events) or, with `bounded = true`, every partition of the topics
//! up to the end offsets seen at start.
//!
//! One thread per source polls librdkafka (`source/poller.rs`): it copies records
//! out and applies the position rules (`source/state.rs`) while the runtime works
//! on the previous batch, pauses partitions when the runtime falls behind,
//! and holds a revoke until a checkpoint covers the revoked partitions.
//!
//! Positions come from the runtime's checkpoints, never from auto-commit:
//! the runtime calls `seek` with the checkpointed offsets, and commits to
//! Kafka happen in `on_checkpoint_complete` only, so lag tools show the
//! truth. An assignment waits for the runtime's answer (a `seek`, after it
//! has restored the partitions' state) and then starts fetching each
//! partition at the offset the runtime named.

mod compacted;
mod exclusive;
mod members;
mod message;
mod poller;
mod rebalance;
mod settings;
mod start;
mod state;

use std::sync::Arc;
use std::time::Duration;

use flowline_connector_api::{ConnectorError, PartitionId, Source, SourceEvent, SourcePosition};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};

use crate::config::{duration, KafkaSourceConfig, StartPosition};
use crate::error::{with_retries, Error};
use members::Members;
pub use poller::Ctx;
use poller::{lock, Item, Settings, Shared};
use settings::Checked;
use start::warn_stale;
use state::Part;

/// The source.
pub struct KafkaSource {
    consumer: Arc<BaseConsumer<Ctx>>,
    cfg: KafkaSourceConfig,
    start: StartPosition,
    poll_timeout: Duration,
    rx: mpsc::UnboundedReceiver<Item>,
    /// `None` until the first `next`: a `seek` that restores positions
    /// comes before it, and nothing may be read before that.
    thread: Option<oneshot::Receiver<()>>,
    committed: Option<TopicPartitionList>,
    /// Offsets the runtime asked for, by partition (it may name partitions
    /// before they are assigned here).
    known: std::collections::HashMap<PartitionId, u64>,
    /// Committed offsets of the group for partitions the runtime had no
    /// checkpoint of (bounded mode), to warn when they go unused.
    stale: std::collections::HashMap<PartitionId, i64>,
    /// `auto_offset_reset = "latest"` still names the end offset: no
    /// checkpoint has named a partition and no assignment has been answered
    /// yet (`source/start.rs`).
    latest_open: bool,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("config", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Whether librdkafka's statistics show a broker connection up (its own
/// internal and logical brokers left out).
pub(crate) fn any_broker_up(s: &rdkafka::Statistics) -> bool {
    s.brokers
        .values()
        .any(|b| b.state == "UP" && matches!(b.source.as_str(), "learned" | "configured"))
}

/// `topic/partition`: the partition id the runtime keys state by.
pub fn partition_id(topic: &str, partition: i32) -> PartitionId {
    PartitionId::new(format!("{topic}/{partition}"))
}

/// A topic named in `topics`, from the cluster's metadata; one that is not
/// there (or has no partitions) is a config error with the fix.
fn named_topic<'a>(
    md: &'a rdkafka::metadata::Metadata,
    topic: &str,
    bootstrap: &str,
) -> Result<&'a rdkafka::metadata::MetadataTopic, Error> {
    md.topics()
        .iter()
        .find(|m| m.name() == topic && !m.partitions().is_empty())
        .ok_or_else(|| {
            Error::Config(format!("topic `{topic}` does not exist on {bootstrap}. Fix: create it (kafka-topics.sh --create --topic {topic}), or correct topics"))
        })
}

fn kafka(what: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> Error {
    let what = what.into();
    move |source| Error::Kafka { what, source }
}

impl KafkaSource {
    /// Connects (bounded wait), checks the topics and, when bounded, assigns
    /// every partition; an unbounded source joins its group when it first
    /// runs ([`Source::next`]).
    pub fn new(cfg: KafkaSourceConfig) -> Result<Self, Error> {
        let Checked {
            start,
            poll_timeout,
            connect,
            revoke_timeout,
            cc,
        } = Self::check(&cfg)?;
        let settings = Settings {
            headers: cfg.headers,
            timestamp_field: cfg.timestamp_field.clone(),
            bounded: cfg.bounded,
            max_batch: cfg.max_batch,
            poll_timeout,
            revoke_timeout,
            exclusive: (cfg.exclusive && !cfg.bounded)
                .then(|| (cfg.topics.clone(), cfg.group_id.clone())),
            members: (!cfg.exclusive && !cfg.bounded).then(|| Members {
                group: cfg.group_id.clone(),
                client_id: cc.get("client.id").unwrap_or("rdkafka").to_string(),
                topics: cfg.topics.clone(),
            }),
        };
        let (shared, rx) = Shared::new(settings, cfg.prefetch_batches);
        let consumer: BaseConsumer<Ctx> = cc
            .create_with_context(Ctx(Arc::new(shared)))
            .map_err(kafka("creating the Kafka consumer"))?;
        let md = consumer.fetch_metadata(None, connect).map_err(|e| {
            // Serve the queued error events, so that an authentication
            // failure is told apart from a broker that is not there.
            for _ in 0..5 {
                let _ = consumer.poll(Duration::from_millis(20));
            }
            let auth = consumer.context().0.auth.failure();
            if let Some(reason) = auth {
                return Error::Config(crate::auth::refused(&cfg.bootstrap_servers, &reason));
            }
            Error::Unreachable(format!(
                "cannot reach Kafka at {} within {}: {e}. Fix: check bootstrap_servers, that the broker runs, and the security settings",
                cfg.bootstrap_servers,
                humantime::format_duration(connect)
            ))
        })?;
        let mut src = Self {
            consumer: Arc::new(consumer),
            start,
            poll_timeout,
            rx,
            thread: None,
            committed: None,
            stale: Default::default(),
            known: Default::default(),
            latest_open: true,
            cfg,
        };
        if src.cfg.bounded {
            let mut tpl = TopicPartitionList::new();
            for t in &src.cfg.topics {
                let mt = named_topic(&md, t, &src.cfg.bootstrap_servers)?;
                for p in mt.partitions() {
                    tpl.add_partition(t, p.id());
                }
            }
            let committed = with_retries("reading committed offsets", connect, |t| {
                src.consumer.committed_offsets(tpl.clone(), t)
            })?;
            for e in committed.elements() {
                let (t, p) = (e.topic().to_string(), e.partition());
                let (low, high) = src.watermarks(&t, p, connect)?;
                // The configured start, never the group's committed offset:
                // that belongs to the state of a checkpoint, and the
                // runtime's `seek` names it when that checkpoint exists.
                let next = src.reset_offset(&t, p, low, high, connect)?;
                if let Offset::Offset(o) = e.offset() {
                    src.stale.insert(partition_id(&t, p), o);
                }
                let mut part = Part::new(&t, p, false);
                part.next = next;
                part.expect = next;
                part.stop = Some(high);
                lock(&src.shared().state).add(part);
            }
            src.assign_bounded()?;
        } else {
            // As Flink's KafkaSource: a named topic that is not there is an
            // error at start (and in `validate`), not a job that waits
            // silently. A pattern may match nothing yet.
            if src.cfg.topic_pattern.is_none() {
                for t in &src.cfg.topics {
                    named_topic(&md, t, &src.cfg.bootstrap_servers)?;
                }
            }
        }
        src.warn_compacted(connect);
        Ok(src)
    }

    /// Joins the group (unbounded sources), at the first `next`: a source
    /// that is built and dropped without running (`validate`, a job whose
    /// build failed later) never joins, so it never has a rebalance to
    /// answer while closing, where librdkafka can hang
    /// (confluentinc/librdkafka#4041: `rd_kafka_rebalance_protocol` from the
    /// rebalance callback of a closing consumer).
    fn subscribe(&self) -> Result<(), Error> {
        if self.cfg.bounded {
            return Ok(());
        }
        let topics: Vec<&str> = match &self.cfg.topic_pattern {
            Some(p) => vec![p.as_str()],
            None => self.cfg.topics.iter().map(String::as_str).collect(),
        };
        self.consumer
            .subscribe(&topics)
            .map_err(kafka("subscribing"))
    }

    fn shared(&self) -> &Shared {
        &self.consumer.context().0
    }

    fn assign_bounded(&self) -> Result<(), Error> {
        // As a rebalance does: the poller's topic names are read again.
        self.shared().assignment_changes();
        let mut tpl = TopicPartitionList::new();
        for part in &lock(&self.shared().state).parts {
            tpl.add_partition_offset(&part.topic, part.partition, Offset::Offset(part.next))
                .map_err(kafka("assigning"))?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(kafka("assigning partitions"))
    }

    fn start_thread(&mut self) -> Result<(), Error> {
        let (done_tx, done_rx) = oneshot::channel();
        let consumer = self.consumer.clone();
        std::thread::Builder::new()
            .name("flowline-kafka-poll".into())
            .spawn(move || {
                // A panic would end the thread and leave the source idle
                // for ever, the job neither failing nor reading: it fails
                // the source instead, loudly.
                let sh = consumer.context().0.clone();
                let run = std::panic::AssertUnwindSafe(|| poller::run(consumer));
                if let Err(p) = std::panic::catch_unwind(run) {
                    let what = p
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    sh.send((
                        Err(ConnectorError::permanent(format!(
                            "the Kafka consumer thread stopped on a panic: {what}"
                        ))),
                        false,
                    ));
                }
                drop(done_tx);
            })
            .map_err(|e| Error::Config(format!("cannot start the Kafka consumer thread: {e}")))?;
        self.thread = Some(done_rx);
        Ok(())
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        // The thread ends within a poll timeout; the consumer closes when
        // the last of its two handles goes.
        self.shared().shut_down();
    }
}

impl Source for KafkaSource {
    /// End offset (as last fetched, no request) minus the next offset to
    /// read, per owned partition.
    fn lag(&self) -> Vec<(PartitionId, u64)> {
        let sh = self.shared();
        let ends = lock(&sh.ends);
        let st = lock(&sh.state);
        let mut out: Vec<(PartitionId, u64)> = st
            .parts
            .iter()
            .filter_map(|part| {
                let hi = *ends.get(&(part.topic.clone(), part.partition))?;
                // `expect`: where an assignment started it, before its
                // first record (at the end of the log, none comes).
                let pos = part
                    .reached()
                    .max(part.target.unwrap_or(0))
                    .max(part.expect);
                Some((part.pid.clone(), (hi - pos).max(0) as u64))
            })
            .collect();
        out.sort();
        out
    }

    /// Bounded: every partition of the topics, assigned at start. A group
    /// consumer announces its partitions as they are assigned instead.
    fn partitions(&self) -> Option<Vec<PartitionId>> {
        if !self.cfg.bounded {
            return None;
        }
        let state = lock(&self.shared().state);
        Some(
            state
                .parts
                .iter()
                .map(|p| partition_id(&p.topic, p.partition))
                .collect(),
        )
    }

    /// From librdkafka's statistics (once a second): a broker connection
    /// up. `None` before the first statistics.
    fn connected(&self) -> Option<bool> {
        match self
            .shared()
            .connected
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        }
    }

    /// The next item from the consumer thread, or `Idle` after
    /// `poll_timeout` (so the runtime can hand over checkpoint completions,
    /// which a revoke may be waiting for).
    async fn next(&mut self) -> Result<SourceEvent, ConnectorError> {
        if self.thread.is_none() {
            for (pid, o) in std::mem::take(&mut self.stale) {
                if !self.known.contains_key(&pid) {
                    let start = lock(&self.shared().state)
                        .parts
                        .iter()
                        .find(|p| p.pid == pid)
                        .map_or(-1, |p| p.next);
                    warn_stale(&self.cfg.group_id, &pid, o, start);
                }
            }
            self.subscribe()?;
            self.start_thread()?;
        }
        match tokio::time::timeout(self.poll_timeout, self.rx.recv()).await {
            Err(_) => Ok(SourceEvent::Idle),
            Ok(Some((ev, credit))) => {
                if credit {
                    self.shared().give_credit();
                }
                ev
            }
            // Only after End (bounded), which the runtime does not read past.
            Ok(None) => Ok(SourceEvent::End),
        }
    }

    async fn seek(&mut self, position: &SourcePosition) -> Result<(), ConnectorError> {
        for (pid, o) in &position.offsets {
            self.known.insert(pid.clone(), *o);
        }
        if self.cfg.bounded {
            if !position.offsets.is_empty() && std::mem::take(&mut self.latest_open) {
                self.restart_new_partitions()?;
            }
            {
                let mut st = lock(&self.shared().state);
                let started = self.thread.is_some();
                for part in &mut st.parts {
                    if let Some(o) = self.known.get(&part.pid) {
                        part.next = *o as i64;
                        part.expect = *o as i64;
                        part.consumed = 0;
                        // Records fetched before the new assignment are
                        // skipped, or the partition is seeked back.
                        if started {
                            part.target = Some(*o as i64);
                            part.seeked = false;
                        }
                    }
                }
                st.stop_reached = false;
            }
            self.restart_rewound(self.thread.is_some())?;
            return Ok(self.assign_bounded()?);
        }
        // The runtime answers each `Assigned` event with one seek, in order:
        // this seek answers the oldest unanswered assignment, and only its
        // partitions. (Applied to whatever was awaiting, the answer to an
        // empty assignment once started a newer one at offsets of an older
        // checkpoint than the state restored for it: events counted twice.)
        // A seek that answers no assignment (the restore at start) is only
        // remembered.
        let Some(answering) = self.shared().next_answer() else {
            if !position.offsets.is_empty() {
                self.latest_open = false;
            }
            return Ok(());
        };
        let timeout = duration("connect_timeout", &self.cfg.connect_timeout)?;
        let awaiting = lock(&self.shared().state).to_answer(&answering);
        for (t, p, pid, first_seen) in awaiting {
            // This answer's offset, never one remembered from another: a
            // partition it does not name has no checkpointed state.
            let mut target = position.get(&pid).map(|o| o as i64);
            if target.is_none() {
                // No checkpoint holds this partition's state: start where
                // the configuration says, not at an offset the group
                // committed for state that is gone.
                target = Some(self.configured_start(&t, p, timeout)?);
            }
            let mut st = lock(&self.shared().state);
            // Revoked meanwhile, or the assignment stopped waiting.
            let Some(part) = st.find(&t, p).filter(|part| part.awaiting) else {
                continue;
            };
            part.awaiting = false;
            // The assignment starts fetching here; `first_seen` is only set
            // by a consumer that fetched before the answer.
            part.target = target.or(first_seen);
            tracing::debug!(partition = %pid, target = ?part.target, first_seen = ?first_seen, "assigned partition starts here");
            part.seeked = false;
        }
        if !answering.is_empty() {
            self.latest_open = false;
        }
        // The waiting assignment proceeds with these offsets.
        self.shared().seek_answered();
        Ok(())
    }

    async fn on_checkpoint_complete(
        &mut self,
        position: &SourcePosition,
    ) -> Result<(), ConnectorError> {
        // Owned partitions only (a restored partition owned elsewhere is in
        // the position too), and those whose revoke waits for this.
        let mut tpl = TopicPartitionList::new();
        {
            let st = lock(&self.shared().state);
            let owned = st
                .parts
                .iter()
                .filter(|p| !p.awaiting)
                .map(|p| (&p.pid, p.topic.as_str(), p.partition))
                .chain(st.revoking.iter().map(|(pid, t, p)| (pid, t.as_str(), *p)));
            for (pid, t, p) in owned {
                if let Some(o) = position.get(pid) {
                    tpl.add_partition_offset(t, p, Offset::Offset(o as i64))
                        .map_err(kafka("commit"))?;
                }
            }
        }
        if tpl.count() > 0 {
            self.consumer
                .commit(&tpl, CommitMode::Async)
                .map_err(kafka("committing offsets"))?;
            self.committed = Some(tpl);
        }
        // A revoke waiting for this checkpoint may complete now.
        self.shared()
            .checkpointed(position.offsets.iter().map(|(p, o)| (p.clone(), *o)));
        Ok(())
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        self.shared().shut_down();
        if let Some(done) = self.thread.take() {
            let _ = done.await;
        }
        // The last completed checkpoint's offsets, synchronously: an async
        // commit may still be in flight when the consumer goes.
        if let Some(tpl) = self.committed.take() {
            self.consumer
                .commit(&tpl, CommitMode::Sync)
                .map_err(kafka("committing offsets at close"))?;
        }
        Ok(())
    }
}
