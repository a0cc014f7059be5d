//! The Kafka source: a consumer group (rebalances surface as assigned /
//! revoked events) or, with `bounded = true`, every partition of the topics
//! up to the end offsets seen at start.
//!
//! Positions come from the runtime's checkpoints, never from auto-commit:
//! the runtime calls `seek` with the checkpointed offsets, and commits to
//! Kafka happen in `on_checkpoint_complete` only, so lag tools show the
//! truth. A newly assigned partition is paused, and its records held back,
//! until the runtime has answered the assignment with a `seek`.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use flowline_connector_api::{
    ConnectorError, PartitionId, Record, Source, SourceEvent, SourcePosition,
};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use crate::config::{client_config, duration, KafkaSourceConfig, StartPosition};
use crate::error::{is_retryable, Error};

type Tp = (String, i32);

/// Rebalance callbacks record what happened; the source turns it into events.
#[derive(Debug, Default)]
pub struct Ctx {
    events: Mutex<Vec<(bool, Vec<Tp>)>>,
    /// Set with every event, so the per-message check is one load.
    any: std::sync::atomic::AtomicBool,
    /// End offsets per partition from librdkafka's statistics (once a
    /// second), for the lag metric.
    ends: Mutex<HashMap<Tp, i64>>,
}

fn tps(l: &TopicPartitionList) -> Vec<Tp> {
    l.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl ClientContext for Ctx {
    fn stats(&self, s: rdkafka::Statistics) {
        let mut ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        for (t, topic) in s.topics {
            for (p, part) in topic.partitions {
                if p >= 0 && part.hi_offset >= 0 {
                    ends.insert((t.clone(), p), part.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Revoke(l) = r {
            self.events
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((false, tps(l)));
            self.any.store(true, std::sync::atomic::Ordering::Release);
        }
    }

    fn post_rebalance(&self, c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Assign(l) = r {
            // Held back until the runtime answers with a seek.
            if let Err(e) = c.pause(l) {
                tracing::warn!(error = %e, "pausing newly assigned partitions failed");
            }
            self.events
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((true, tps(l)));
            self.any.store(true, std::sync::atomic::Ordering::Release);
        }
    }
}

struct Part {
    pid: PartitionId,
    awaiting: bool,
    first_seen: Option<i64>,
    target: Option<i64>,
    seeked: bool,
    next: i64,
    stop: Option<i64>,
}

/// The source.
pub struct KafkaSource {
    consumer: StreamConsumer<Ctx>,
    cfg: KafkaSourceConfig,
    start: StartPosition,
    poll_timeout: Duration,
    parts: HashMap<Tp, Part, foldhash::fast::RandomState>,
    pending: VecDeque<SourceEvent>,
    known: HashMap<PartitionId, u64>,
    committed: Option<TopicPartitionList>,
    topic_buf: String,
    stop_reached: bool,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("config", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// `topic/partition`: the partition id the runtime keys state by.
pub fn partition_id(topic: &str, partition: i32) -> PartitionId {
    PartitionId::new(format!("{topic}/{partition}"))
}

fn kafka(what: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> Error {
    let what = what.into();
    move |source| Error::Kafka { what, source }
}

impl KafkaSource {
    /// Connects (bounded wait), checks the topics, and subscribes or, when
    /// bounded, assigns every partition.
    pub fn new(cfg: KafkaSourceConfig) -> Result<Self, Error> {
        let start = cfg.start_position()?;
        let poll_timeout = duration("poll_timeout", &cfg.poll_timeout)?;
        let connect = duration("connect_timeout", &cfg.connect_timeout)?;
        let mut cc = client_config(
            &cfg.bootstrap_servers,
            &cfg.security,
            &BTreeMapDefaults::source(),
        )?;
        cc.set("group.id", &cfg.group_id).set(
            "auto.offset.reset",
            if start == StartPosition::Latest {
                "latest"
            } else {
                "earliest"
            },
        );
        for (k, v) in &cfg.properties {
            cc.set(k, v);
        }
        let consumer: StreamConsumer<Ctx> = cc
            .create_with_context(Ctx::default())
            .map_err(kafka("creating the Kafka consumer"))?;
        let md = consumer.fetch_metadata(None, connect).map_err(|e| {
            Error::Config(format!(
                "cannot reach Kafka at {} within {}: {e}. Fix: check bootstrap_servers, that the broker runs, and the security settings",
                cfg.bootstrap_servers,
                humantime::format_duration(connect)
            ))
        })?;
        let mut src = Self {
            consumer,
            start,
            poll_timeout,
            parts: HashMap::default(),
            pending: VecDeque::new(),
            known: HashMap::new(),
            committed: None,
            topic_buf: String::new(),
            stop_reached: false,
            cfg,
        };
        if src.cfg.bounded {
            if src.cfg.topics.is_empty() {
                return Err(Error::Config(
                    "bounded = true needs topics = [...] (not topic_pattern)".into(),
                ));
            }
            let mut tpl = TopicPartitionList::new();
            for t in &src.cfg.topics {
                let Some(mt) = md.topics().iter().find(|m| m.name() == t) else {
                    return Err(Error::Config(format!(
                        "topic `{t}` does not exist on {}",
                        src.cfg.bootstrap_servers
                    )));
                };
                if mt.partitions().is_empty() {
                    return Err(Error::Config(format!(
                        "topic `{t}` does not exist on {} (no partitions)",
                        src.cfg.bootstrap_servers
                    )));
                }
                for p in mt.partitions() {
                    tpl.add_partition(t, p.id());
                }
            }
            let committed = src
                .consumer
                .committed_offsets(tpl.clone(), connect)
                .map_err(kafka("reading committed offsets"))?;
            for e in committed.elements() {
                let (t, p) = (e.topic().to_string(), e.partition());
                let (low, high) = src
                    .consumer
                    .fetch_watermarks(&t, p, connect)
                    .map_err(kafka(format!("reading the end offsets of {t}/{p}")))?;
                let next = match e.offset() {
                    Offset::Offset(o) => o,
                    _ => src.reset_offset(&t, p, low, high, connect)?,
                };
                src.parts.insert(
                    (t.clone(), p),
                    Part {
                        pid: partition_id(&t, p),
                        awaiting: false,
                        first_seen: None,
                        target: None,
                        seeked: false,
                        next,
                        stop: Some(high),
                    },
                );
            }
            src.assign_bounded()?;
        } else {
            let topics: Vec<&str> = match &src.cfg.topic_pattern {
                Some(p) => vec![p.as_str()],
                None => src.cfg.topics.iter().map(String::as_str).collect(),
            };
            src.consumer
                .subscribe(&topics)
                .map_err(kafka("subscribing"))?;
        }
        Ok(src)
    }

    fn reset_offset(
        &self,
        t: &str,
        p: i32,
        low: i64,
        high: i64,
        timeout: Duration,
    ) -> Result<i64, Error> {
        Ok(match self.start {
            StartPosition::Earliest => low,
            StartPosition::Latest => high,
            StartPosition::Timestamp(ms) => {
                let mut q = TopicPartitionList::new();
                q.add_partition_offset(t, p, Offset::Offset(ms))
                    .map_err(kafka("offsets for time"))?;
                let r = self
                    .consumer
                    .offsets_for_times(q, timeout)
                    .map_err(kafka(format!("offset for time {ms} in {t}/{p}")))?;
                match r.elements().first().map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => high,
                }
            }
        })
    }

    fn assign_bounded(&mut self) -> Result<(), Error> {
        let mut tpl = TopicPartitionList::new();
        for ((t, p), part) in &self.parts {
            tpl.add_partition_offset(t, *p, Offset::Offset(part.next))
                .map_err(kafka("assigning"))?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(kafka("assigning partitions"))
    }

    fn take_rebalance_events(&mut self) {
        if !self.has_rebalance_events() {
            return;
        }
        self.consumer
            .context()
            .any
            .store(false, std::sync::atomic::Ordering::Release);
        let evs = std::mem::take(
            &mut *self
                .consumer
                .context()
                .events
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for (assigned, list) in evs {
            let pids: Vec<PartitionId> = list.iter().map(|(t, p)| partition_id(t, *p)).collect();
            if assigned {
                for (t, p) in list {
                    let pid = partition_id(&t, p);
                    self.parts.insert(
                        (t, p),
                        Part {
                            pid,
                            awaiting: true,
                            first_seen: None,
                            target: None,
                            seeked: false,
                            next: 0,
                            stop: None,
                        },
                    );
                }
                tracing::info!(partitions = ?pids, "partitions assigned");
                self.pending.push_back(SourceEvent::Assigned(pids));
            } else {
                for tp in &list {
                    self.parts.remove(tp);
                }
                tracing::info!(partitions = ?pids, "partitions revoked");
                self.pending.push_back(SourceEvent::Revoked(pids));
            }
        }
    }

    fn has_rebalance_events(&self) -> bool {
        self.consumer
            .context()
            .any
            .load(std::sync::atomic::Ordering::Acquire)
    }

    fn bounded_done(&self) -> bool {
        self.cfg.bounded
            && self
                .parts
                .values()
                .all(|p| p.stop.is_some_and(|s| p.next >= s))
    }

    fn event_time(&self, payload: &[u8], kafka_ts: Option<i64>) -> Option<i64> {
        if let Some(f) = &self.cfg.timestamp_field {
            let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
            return match &v[f] {
                serde_json::Value::Number(n) => n.as_i64(),
                serde_json::Value::String(s) => {
                    humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_millis() as i64)
                }
                _ => None,
            };
        }
        kafka_ts
    }

    /// Copies what is needed out of a message (it borrows the consumer).
    fn read(
        m: &BorrowedMessage<'_>,
        buf: &mut String,
        headers: bool,
    ) -> (Tp, i64, Option<i64>, Record) {
        let mut r = Record::new(m.payload().unwrap_or_default());
        r.key = m.key().map(<[u8]>::to_vec);
        // librdkafka parses (and allocates) headers on request: skipped
        // when the job does not want them.
        if let Some(h) = headers.then(|| m.headers()).flatten() {
            for h in h.iter() {
                r.headers.push((
                    h.key.to_string(),
                    h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                ));
            }
        }
        let mut topic = std::mem::take(buf);
        if topic != m.topic() {
            topic.clear();
            topic.push_str(m.topic());
        }
        (
            (topic, m.partition()),
            m.offset(),
            m.timestamp().to_millis(),
            r,
        )
    }

    /// Applies the position rules to one message; returns it as a record
    /// when it is to be delivered.
    fn accept(&mut self, tp: Tp, off: i64, kafka_ts: Option<i64>, r: Record) -> Option<Record> {
        let out = self.accept_at(&tp, off, kafka_ts, r);
        self.topic_buf = tp.0;
        out
    }

    fn accept_at(
        &mut self,
        tp: &Tp,
        off: i64,
        kafka_ts: Option<i64>,
        mut r: Record,
    ) -> Option<Record> {
        if self.has_rebalance_events() && !self.parts.contains_key(tp) {
            // A partition assigned during this poll: pick up the event.
            self.take_rebalance_events();
        }
        let part = self.parts.get_mut(tp)?;
        if part.awaiting {
            part.first_seen = Some(part.first_seen.map_or(off, |f| f.min(off)));
            return None;
        }
        if let Some(t) = part.target {
            if off < t {
                return None;
            }
            if off > t {
                if !part.seeked {
                    part.seeked = true;
                    if let Err(e) =
                        self.consumer
                            .seek(&tp.0, tp.1, Offset::Offset(t), Duration::from_secs(5))
                    {
                        tracing::warn!(partition = %part.pid, offset = t, error = %e, "seek failed");
                    }
                }
                return None;
            }
            part.target = None;
        }
        if part.stop.is_some_and(|s| off >= s) {
            part.next = part.next.max(off);
            self.stop_reached = true;
            return None;
        }
        part.next = off + 1;
        if part.stop.is_some_and(|s| part.next >= s) {
            self.stop_reached = true;
        }
        let pid = part.pid.clone();
        r.timestamp = self.event_time(&r.payload, kafka_ts);
        Some(r.at(pid, off as u64))
    }
}

/// Defaults this connector sets (overridable through `properties`).
struct BTreeMapDefaults;

impl BTreeMapDefaults {
    fn source() -> std::collections::BTreeMap<String, String> {
        [
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("statistics.interval.ms", "1000"),
            // Bounded prefetch: when the runtime applies backpressure the
            // consumer stops fetching after this much.
            ("queued.max.messages.kbytes", "16384"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

impl Source for KafkaSource {
    /// End offset (as last fetched, no request) minus the next offset to
    /// read, per owned partition.
    fn lag(&self) -> Vec<(PartitionId, u64)> {
        let ends = self
            .consumer
            .context()
            .ends
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(PartitionId, u64)> = self
            .parts
            .iter()
            .filter_map(|((t, p), part)| {
                let hi = *ends.get(&(t.clone(), *p))?;
                let pos = part.next.max(part.target.unwrap_or(0));
                Some((part.pid.clone(), (hi - pos).max(0) as u64))
            })
            .collect();
        out.sort();
        out
    }

    async fn next(&mut self) -> Result<SourceEvent, ConnectorError> {
        self.take_rebalance_events();
        if let Some(ev) = self.pending.pop_front() {
            return Ok(ev);
        }
        if self.bounded_done() {
            return Ok(SourceEvent::End);
        }
        let mut batch = Vec::new();
        loop {
            // The first record may wait up to poll_timeout; the rest of the
            // batch takes only what is ready (one poll, no timer).
            let polled = if batch.is_empty() {
                tokio::time::timeout(self.poll_timeout, self.consumer.recv())
                    .await
                    .ok()
            } else {
                let mut fut = std::pin::pin!(self.consumer.recv());
                match fut
                    .as_mut()
                    .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
                {
                    std::task::Poll::Ready(r) => Some(r),
                    std::task::Poll::Pending => None,
                }
            };
            match polled {
                None => break,
                Some(Err(e)) => {
                    if !batch.is_empty() {
                        break;
                    }
                    let retry = is_retryable(&e);
                    let err = Error::Kafka {
                        what: "consuming".into(),
                        source: e,
                    };
                    return Err(if retry {
                        ConnectorError::retryable(err.to_string())
                    } else {
                        err.into()
                    });
                }
                Some(Ok(m)) => {
                    let (tp, off, ts, r) = Self::read(&m, &mut self.topic_buf, self.cfg.headers);
                    drop(m);
                    if let Some(r) = self.accept(tp, off, ts, r) {
                        batch.push(r);
                    }
                }
            }
            if self.has_rebalance_events()
                || batch.len() >= self.cfg.max_batch
                || (self.stop_reached && self.bounded_done())
            {
                break;
            }
        }
        self.take_rebalance_events();
        if !batch.is_empty() {
            return Ok(SourceEvent::Records(batch));
        }
        if let Some(ev) = self.pending.pop_front() {
            return Ok(ev);
        }
        Ok(if self.bounded_done() {
            SourceEvent::End
        } else {
            SourceEvent::Idle
        })
    }

    async fn seek(&mut self, position: &SourcePosition) -> Result<(), ConnectorError> {
        for (pid, o) in &position.offsets {
            self.known.insert(pid.clone(), *o);
        }
        if self.cfg.bounded {
            for part in self.parts.values_mut() {
                if let Some(o) = self.known.get(&part.pid) {
                    part.next = *o as i64;
                }
            }
            return Ok(self.assign_bounded()?);
        }
        let mut resume = TopicPartitionList::new();
        let timeout = duration("connect_timeout", &self.cfg.connect_timeout)?;
        let awaiting: Vec<Tp> = self
            .parts
            .iter()
            .filter(|(_, p)| p.awaiting)
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in awaiting {
            let pid = self.parts[&tp].pid.clone();
            let mut target = self
                .known
                .get(&pid)
                .map(|o| *o as i64)
                .or(self.parts[&tp].first_seen);
            if target.is_none() {
                if let StartPosition::Timestamp(_) = self.start {
                    let mut q = TopicPartitionList::new();
                    q.add_partition(&tp.0, tp.1);
                    let committed = self
                        .consumer
                        .committed_offsets(q, timeout)
                        .map_err(kafka("reading committed offsets"))?;
                    if !matches!(
                        committed.elements().first().map(|e| e.offset()),
                        Some(Offset::Offset(_))
                    ) {
                        let (low, high) = self
                            .consumer
                            .fetch_watermarks(&tp.0, tp.1, timeout)
                            .map_err(kafka("reading watermarks"))?;
                        target = Some(self.reset_offset(&tp.0, tp.1, low, high, timeout)?);
                    }
                }
            }
            let part = self.parts.get_mut(&tp).expect("listed");
            part.awaiting = false;
            part.target = target;
            part.seeked = false;
            resume.add_partition(&tp.0, tp.1);
        }
        if resume.count() > 0 {
            self.consumer
                .resume(&resume)
                .map_err(kafka("resuming partitions"))?;
        }
        Ok(())
    }

    async fn on_checkpoint_complete(
        &mut self,
        position: &SourcePosition,
    ) -> Result<(), ConnectorError> {
        let mut tpl = TopicPartitionList::new();
        for ((t, p), part) in &self.parts {
            if let Some(o) = position.get(&part.pid) {
                tpl.add_partition_offset(t, *p, Offset::Offset(o as i64))
                    .map_err(kafka("commit"))?;
            }
        }
        if tpl.count() > 0 {
            self.consumer
                .commit(&tpl, CommitMode::Async)
                .map_err(kafka("committing offsets"))?;
            self.committed = Some(tpl);
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
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
