//! A checkpoint store in a compacted Kafka topic, for jobs that scale out:
//! several `flowline run` processes with one `group_id` share a topic's
//! partitions, and a partition's state moves with it through this store.
//!
//! Layout: one message per job and source partition (key
//! `<job>/partition/<id>`) holding that partition's snapshot, and one per
//! job for the sink states (key `<job>/sinks`). Compaction keeps the newest
//! of each key. `latest` reads the topic to its end and merges the newest
//! entry of every partition of the job into one checkpoint.
//!
//! A process writes only the partitions whose snapshot changed since it was
//! read or written: a partition restored at start that another process owns
//! is never written back over that process's newer entry. Writes are
//! acknowledged by all in-sync replicas (`acks=all`, idempotent producer)
//! before `save` returns, so a checkpoint taken on revoke is readable by the
//! process the partition moves to.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{client_config, Security};
use flowline_checkpoint::graph::{compare, GraphMatch};
use flowline_checkpoint::{
    decode_framed, encode_framed, Checkpoint, CheckpointError, CheckpointStore, PartitionSnapshot,
};
use flowline_connector_api::PartitionId;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

/// Format 1: magic, postcard body (read for compatibility).
const MAGIC_V1: &[u8; 8] = b"FLKSTO01";
/// Format 2: magic, CRC-32 of the body (little endian), postcard body. An
/// entry whose checksum does not match fails the restore, naming its key:
/// a compacted topic keeps no older entry to fall back to.
const MAGIC: &[u8; 8] = b"FLKSTO02";
/// The largest entry (one partition's state), also the topic's
/// `max.message.bytes`.
pub const MAX_ENTRY_BYTES: usize = 64 * 1024 * 1024;

/// `[checkpoint.kafka]`.
#[derive(Clone, Deserialize)]
pub struct KafkaStoreConfig {
    /// Brokers.
    pub bootstrap_servers: String,
    /// The compacted topic (created with one partition when missing).
    #[serde(default = "d_topic")]
    pub topic: String,
    /// Replication factor when the store creates the topic.
    #[serde(default = "d_rf")]
    pub replication_factor: i32,
    /// How long a save or a read may take before it fails.
    #[serde(default = "d_timeout")]
    pub timeout: String,
    /// Security, as for the Kafka source.
    #[serde(flatten)]
    pub security: Security,
    /// Any librdkafka property, passed through.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStoreConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("topic", &self.topic)
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

fn d_topic() -> String {
    "flowline-checkpoints".into()
}
fn d_rf() -> i32 {
    1
}
fn d_timeout() -> String {
    "30s".into()
}

#[derive(Serialize, Deserialize)]
enum Body {
    /// Written before partitions kept the sinks' states with them: read
    /// as a partition whose sinks' states are not known.
    Partition(PartitionSnapshot),
    Sinks(BTreeMap<String, Option<Vec<u8>>>),
    /// A partition's snapshot and the sinks' states of the checkpoint it
    /// was taken in: the process the partition moves to after this one
    /// died reads back what the sinks wrote after them (`Sink::rewind`).
    /// The job-wide `Sinks` entry holds the newest checkpoint's only, of
    /// whichever process took it last.
    PartitionAt(PartitionSnapshot, BTreeMap<String, Option<Vec<u8>>>),
}

#[derive(Serialize, Deserialize)]
struct Entry {
    id: u64,
    graph: String,
    created_ms: i64,
    body: Body,
}

impl Entry {
    fn encode(&self) -> Result<Vec<u8>, String> {
        encode_framed(MAGIC, self)
    }
    fn decode(b: &[u8]) -> Result<Self, String> {
        decode_framed(
            MAGIC,
            MAGIC_V1,
            b,
            "checkpoint entry",
            ". Fix: restore the checkpoint topic, or start the job with a new [job] name",
        )
    }
}

#[derive(Default)]
struct DeliveryCtx {
    /// Each failed delivery, and whether it passes when the broker is back.
    errors: Mutex<Vec<(String, bool)>>,
}

impl ClientContext for DeliveryCtx {}

impl ProducerContext for DeliveryCtx {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = r {
            self.errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((e.to_string(), crate::error::is_retryable(e)));
        }
    }
}

/// The store.
pub struct KafkaCheckpointStore {
    job: String,
    topic: String,
    timeout: Duration,
    producer: BaseProducer<DeliveryCtx>,
    consumer_config: rdkafka::ClientConfig,
    /// What this process last read or wrote per partition.
    known: HashMap<PartitionId, PartitionSnapshot>,
}

impl std::fmt::Debug for KafkaCheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaCheckpointStore")
            .field("job", &self.job)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

fn err(what: &str, topic: &str, e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Store(format!(
        "Kafka checkpoint store, topic `{topic}`: {what}: {e}"
    ))
}

/// [`err`] for a failure that passes when the broker is back (a timeout,
/// a full queue, a retryable delivery error): the checkpoint is skipped.
fn unavailable(what: &str, topic: &str, e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Unavailable(format!(
        "Kafka checkpoint store, topic `{topic}`: {what}: {e}"
    ))
}

/// A store topic that was there already must keep each key's newest entry
/// for ever: compacted, and not also deleted by time. A topic that deletes
/// by `retention.ms` drops the entry of a partition whose state has not
/// changed for that long, and its next owner would start it afresh; one
/// that is not compacted grows with every checkpoint.
fn check_existing(
    client: &rdkafka::ClientConfig,
    topic: &str,
    timeout: Duration,
) -> Result<(), CheckpointError> {
    let c = match crate::admin::topic_configs(client, topic, timeout) {
        Ok(c) => c,
        Err(error) => {
            tracing::warn!(topic, %error, "cannot read the checkpoint store topic's cleanup.policy; it must be compact. Fix: allow DescribeConfigs on the topic");
            return Ok(());
        }
    };
    let p = crate::admin::cleanup_policy(&c);
    if p.compacts && !p.deletes {
        return Ok(());
    }
    let (policy, retention) = (p.text, p.retention);
    Err(err(
        "the topic exists and does not keep checkpoints as the store needs",
        topic,
        format!(
            "cleanup.policy = {policy}, retention.ms = {retention}: the store needs a compacted topic that keeps each key's newest entry for ever. Deleting by time drops the state of a partition that has not changed for retention.ms (its next owner would start it afresh); without compaction the topic grows with every checkpoint. Fix: kafka-configs.sh --alter --entity-type topics --entity-name {topic} --add-config cleanup.policy=compact, or name another topic"
        ),
    ))
}

impl KafkaCheckpointStore {
    /// Connects, and creates the compacted topic when it is missing. Fails
    /// with the broker's error when Kafka cannot be reached in `timeout`.
    pub fn connect(job: &str, cfg: &KafkaStoreConfig) -> Result<Self, CheckpointError> {
        let topic = cfg.topic.clone();
        let timeout = crate::config::duration("timeout", &cfg.timeout)
            .map_err(|e| err("timeout", &topic, e))?;
        let base = client_config(&cfg.bootstrap_servers, &cfg.security, &cfg.properties)
            .map_err(|e| err("settings", &topic, e))?;
        let admin: AdminClient<DefaultClientContext> = base
            .create()
            .map_err(|e| err("creating the admin client", &topic, e))?;
        let max = MAX_ENTRY_BYTES.to_string();
        let nt = NewTopic::new(&topic, 1, TopicReplication::Fixed(cfg.replication_factor))
            .set("cleanup.policy", "compact")
            .set("max.message.bytes", &max);
        let opts = AdminOptions::new().operation_timeout(Some(timeout));
        let res = crate::admin::block_on(admin.create_topics([&nt], &opts))
            .map_err(|e| err("creating the topic (is Kafka reachable?)", &topic, e))?;
        for r in res {
            match r {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    check_existing(&base, &topic, timeout)?
                }
                Err((_, code)) => return Err(err("creating the topic", &topic, code)),
            }
        }
        let mut pc = base.clone();
        pc.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("message.max.bytes", &max)
            .set("linger.ms", "0");
        let producer = pc
            .create_with_context(DeliveryCtx::default())
            .map_err(|e| err("creating the producer", &topic, e))?;
        let mut cc = base;
        cc.set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("group.id", format!("flowline-checkpoint-reader-{job}"))
            .set("fetch.max.bytes", (MAX_ENTRY_BYTES * 2).to_string())
            .set(
                "receive.message.max.bytes",
                (MAX_ENTRY_BYTES * 2 + 1024).to_string(),
            );
        Ok(Self {
            job: job.to_string(),
            topic,
            timeout,
            producer,
            consumer_config: cc,
            known: HashMap::new(),
        })
    }

    fn prefix(&self) -> String {
        format!("{}/", self.job)
    }

    fn send(&self, key: &str, value: &[u8]) -> Result<(), CheckpointError> {
        if value.len() > MAX_ENTRY_BYTES {
            return Err(err(
                "entry too large",
                &self.topic,
                format!(
                    "`{key}` is {} bytes, the limit is {MAX_ENTRY_BYTES}. Fix: more source partitions, or a local checkpoint dir",
                    value.len()
                ),
            ));
        }
        let deadline = Instant::now() + self.timeout;
        let mut rec = BaseRecord::to(&self.topic).key(key).payload(value);
        loop {
            match self.producer.send(rec) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if Instant::now() < deadline =>
                {
                    rec = r;
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) if crate::error::is_retryable(&e) => {
                    return Err(unavailable("producing", &self.topic, e))
                }
                Err((e, _)) => return Err(err("producing", &self.topic, e)),
            }
        }
    }

    fn read_all(&self) -> Result<BTreeMap<String, Entry>, CheckpointError> {
        let t = &self.topic;
        let consumer: BaseConsumer = self
            .consumer_config
            .create()
            .map_err(|e| err("creating the reader", t, e))?;
        let md = consumer
            .fetch_metadata(Some(t), self.timeout)
            .map_err(|e| err("reading metadata", t, e))?;
        let parts: Vec<i32> = md
            .topics()
            .iter()
            .flat_map(|tm| tm.partitions().iter().map(|p| p.id()))
            .collect();
        let mut tpl = TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        for p in parts {
            let (lo, hi) = consumer
                .fetch_watermarks(t, p, self.timeout)
                .map_err(|e| err("reading end offsets", t, e))?;
            if hi > lo {
                ends.insert(p, hi);
                tpl.add_partition_offset(t, p, Offset::Beginning)
                    .map_err(|e| err("assigning", t, e))?;
            }
        }
        let mut out = BTreeMap::new();
        if ends.is_empty() {
            return Ok(out);
        }
        consumer.assign(&tpl).map_err(|e| err("assigning", t, e))?;
        let prefix = self.prefix();
        let deadline = Instant::now() + self.timeout;
        while !ends.is_empty() {
            if Instant::now() > deadline {
                return Err(err(
                    "reading",
                    t,
                    format!("not at the end after {:?}", self.timeout),
                ));
            }
            let Some(m) = consumer.poll(Duration::from_millis(200)) else {
                // Past a last offset without a record (see `position`).
                crate::position::forget_reached(&consumer, &mut ends);
                continue;
            };
            let m = m.map_err(|e| err("reading", t, e))?;
            if ends
                .get(&m.partition())
                .is_some_and(|&hi| m.offset() + 1 >= hi)
            {
                ends.remove(&m.partition());
            }
            let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                continue;
            };
            let Some(rest) = key.strip_prefix(&prefix) else {
                continue;
            };
            match m.payload() {
                None => {
                    out.remove(rest);
                }
                Some(v) => {
                    let e = Entry::decode(v).map_err(|e| err(&format!("entry `{key}`"), t, e))?;
                    out.insert(rest.to_string(), e);
                }
            }
        }
        Ok(out)
    }
}

impl CheckpointStore for KafkaCheckpointStore {
    fn save(&mut self, cp: &Checkpoint) -> Result<u64, CheckpointError> {
        if !cp.key_groups.is_empty() {
            // State by key group belongs to one process; this store shares
            // state by source partition between the processes of a group.
            return Err(err(
                "save",
                &self.topic,
                "a checkpoint with keyed state behind an exchange cannot be kept here. Fix: declare `[source] keyed_by` (the topic is keyed by the job's key), or keep checkpoints in a local directory",
            ));
        }
        let mut bytes = 0u64;
        let mut written = Vec::new();
        for (id, snap) in &cp.partitions {
            if self.known.get(id) == Some(snap) {
                continue;
            }
            let e = Entry {
                id: cp.id,
                graph: cp.graph.clone(),
                created_ms: cp.created_ms,
                body: Body::PartitionAt(snap.clone(), cp.sinks.clone()),
            };
            let v = e.encode().map_err(|e| err("encoding", &self.topic, e))?;
            bytes += v.len() as u64;
            self.send(&format!("{}partition/{id}", self.prefix()), &v)?;
            written.push(id.clone());
        }
        if cp.sinks.values().any(Option::is_some) {
            let e = Entry {
                id: cp.id,
                graph: cp.graph.clone(),
                created_ms: cp.created_ms,
                body: Body::Sinks(cp.sinks.clone()),
            };
            let v = e.encode().map_err(|e| err("encoding", &self.topic, e))?;
            bytes += v.len() as u64;
            self.send(&format!("{}sinks", self.prefix()), &v)?;
        }
        self.producer
            .flush(self.timeout)
            .map_err(|e| unavailable("flushing", &self.topic, e))?;
        let errors = std::mem::take(
            &mut *self
                .producer
                .context()
                .errors
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        if let Some((e, retryable)) = errors.first() {
            return Err(if *retryable {
                unavailable("delivering", &self.topic, e)
            } else {
                err("delivering", &self.topic, e)
            });
        }
        for id in written {
            self.known.insert(id.clone(), cp.partitions[&id].clone());
        }
        Ok(bytes)
    }

    fn keeps_partitions(&self) -> bool {
        true
    }

    fn latest(&mut self) -> Result<Option<Checkpoint>, CheckpointError> {
        let entries = self.read_all()?;
        let Some(newest) = entries.values().max_by_key(|e| e.id) else {
            return Ok(None);
        };
        let (id, graph, created) = (newest.id, newest.graph.clone(), newest.created_ms);
        let mut partitions = BTreeMap::new();
        let mut sinks = BTreeMap::new();
        let mut partition_sinks = BTreeMap::new();
        for (key, e) in entries {
            // An entry left from before the graph had notes is of the same
            // job (the runtime warns about such a checkpoint as a whole).
            if compare(&e.graph, &graph) == GraphMatch::Different {
                return Err(CheckpointError::Incompatible {
                    path: format!("{} entry {}{key}", self.topic, self.prefix()),
                    reason: format!(
                        "entries of two job graphs: `{}` and `{graph}`; a changed job needs a new job name",
                        e.graph
                    ),
                });
            }
            let (s, at) = match e.body {
                Body::Partition(s) => (s, None),
                Body::PartitionAt(s, at) => (s, Some(at)),
                Body::Sinks(s) => {
                    sinks = s;
                    continue;
                }
            };
            let pid = PartitionId::new(key.trim_start_matches("partition/"));
            self.known.insert(pid.clone(), s.clone());
            if let Some(at) = at {
                partition_sinks.insert(pid.clone(), at);
            }
            partitions.insert(pid, s);
        }
        let mut cp = Checkpoint::new(id, graph, created, partitions, sinks);
        cp.partition_sinks = partition_sinks;
        Ok(Some(cp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_with_a_flipped_byte_are_refused() {
        let e = Entry {
            id: 3,
            graph: "g".into(),
            created_ms: 1,
            body: Body::Sinks([("out".to_string(), Some(vec![1, 2, 3]))].into()),
        };
        let good = e.encode().unwrap();
        assert!(Entry::decode(&good).is_ok());
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            assert!(
                Entry::decode(&bad).is_err(),
                "byte {i} flipped was accepted"
            );
        }
    }
}
