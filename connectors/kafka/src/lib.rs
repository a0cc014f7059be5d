//! # flowline-kafka
//!
//! Kafka source and sink for Flowline's connector API 2.x (the lag hook since 1.1), with `rdkafka`.
//!
//! ```toml
//! [source]
//! type = "kafka"
//! bootstrap_servers = "127.0.0.1:9092"
//! topics = ["metrics"]
//! group_id = "flowline-metrics"
//! auto_offset_reset = "earliest"   # or "latest", or a time
//! bounded = false
//!
//! [source.properties]              # librdkafka properties, passed through (not those it owns: properties.rs)
//! "fetch.max.bytes" = "52428800"
//! ```
//!
//! - **Positions from checkpoints.** `enable.auto.commit` is off. The
//!   runtime seeks the source to its checkpointed offsets; offsets are
//!   committed to the group only when a checkpoint completes, so lag tools
//!   show the truth.
//! - **Rebalances** surface as `Revoked` and `Assigned`. A revoke completes
//!   only after a completed checkpoint covers every record delivered from
//!   the revoked partitions, so the next owner finds their state. An
//!   assignment waits for the runtime's answer (it restores the partitions'
//!   state and seeks), then starts each partition at the offset named: no
//!   record is processed against the wrong state. Both waits are bounded by
//!   `revoke_timeout` (30 s). Assignment is cooperative-sticky, and eager
//!   (`range`) for a static member (`group_instance_id`): a static member
//!   that died during a cooperative rebalance and came back as itself left
//!   the partitions being moved with no member, unread for good
//!   (`COOPERATIVE_STATIC` in `source.rs`).
//!   With `exclusive = true` the consumer must hold every partition of its
//!   topics or none: a rebalance that leaves it part of them fails the
//!   source (after a revoke's checkpoint; before any record of an
//!   assignment), for a job whose state cannot move with its partitions.
//! - **Start** of a partition without checkpointed state:
//!   `auto_offset_reset`. `latest` holds for the partitions of the job's
//!   first start only; one that appears later starts at its earliest offset,
//!   so records written to it before it was found are not skipped
//!   (`source/start.rs`).
//! - **Bounded** (`bounded = true`): every partition of `topics`, from the
//!   committed offset (or `auto_offset_reset`) to the end offset seen at
//!   start, then the input ends and every window fires. A restart continues
//!   from its checkpoint, with the windows left open there (a run again
//!   over more of the topic completes them).
//! - **Transactions**: records are read `read_committed` (librdkafka's
//!   default), so an aborted transaction's records never count. Offsets are
//!   not dense: a transaction's marker, or an aborted record, holds an
//!   offset no message stands for. Where "read to the end" matters (a
//!   bounded partition, the lag, the sink's read-back of its topic, the
//!   checkpoint store) librdkafka's position decides, which passes them.
//!   A gap whose start the broker's log has since passed was deleted before
//!   it was read (retention, `DeleteRecords`): it comes back as one bad
//!   record naming the offsets, so the loss is never silent.
//! - **Event time** from a payload field (`timestamp_field`: ms, or RFC 3339
//!   with any offset; an unreadable one refuses the record with the reason)
//!   or the Kafka timestamp.
//! - **One consumer thread** per source polls librdkafka and copies records
//!   out while the runtime works on the previous batch.
//! - **Backpressure by pausing**: at most `prefetch_batches` (4) batches of
//!   `max_batch` (1024) wait for the runtime. When none is taken for
//!   `poll_timeout`, the thread pauses the partitions and keeps polling, so
//!   rebalances are served and a stall longer than `max.poll.interval.ms`
//!   does not cost the group membership; they resume when the runtime
//!   catches up.
//! - **Sink**: idempotent producer (`enable.idempotence`, `acks=all`),
//!   key from a payload field or the record key, headers written as Kafka
//!   headers (so it serves as the dead-letter topic), `flush` returns when
//!   every record is delivered. After a restore, `dedupe_header` (an id
//!   header) or `dedupe = "content"` (key and payload) skips what the run
//!   before wrote after the checkpoint, as often as it wrote it.
//! - **Security**: `security_protocol` (`plaintext`, `ssl`,
//!   `sasl_plaintext`, `sasl_ssl`), `sasl_mechanism` (PLAIN, SCRAM-SHA-256,
//!   SCRAM-SHA-512), `sasl_username`, `sasl_password`, `ssl_ca_location`,
//!   `ssl_certificate_location`, `ssl_key_location`. Secrets are never logged.
//! - **Unreachable broker**: a clear error after `connect_timeout` (10 s).

#![warn(missing_docs)]

mod admin;
mod auth;
mod checked;
pub mod checkpoint_store;
mod config;
mod dedupe;
mod error;
mod position;
mod properties;
pub mod sink;
pub mod source;

pub use checkpoint_store::{KafkaCheckpointStore, KafkaStoreConfig};
pub use config::{KafkaSinkConfig, KafkaSourceConfig, Security};
pub use error::{is_retryable, Error};
pub use sink::KafkaSink;
pub use source::{partition_id, KafkaSource};

use flowline_connector_api::{
    ConfigField, ConnectorDescriptor, ConnectorError, ConnectorKind, Registry, SinkFactory,
    SourceFactory,
};

/// Builds [`KafkaSource`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct KafkaSourceFactory;

impl SourceFactory for KafkaSourceFactory {
    type Config = KafkaSourceConfig;
    type Source = KafkaSource;
    fn descriptor(&self) -> ConnectorDescriptor {
        ConnectorDescriptor::new("kafka", env!("CARGO_PKG_VERSION"), ConnectorKind::Source)
            .with_description(
                "Reads Kafka topics as a consumer group, or bounded to the end offsets at start",
            )
            .with_field(ConfigField::required(
                "bootstrap_servers",
                "string",
                "host:port,...",
            ))
            .with_field(ConfigField::required(
                "topics",
                "[string]",
                "topics (or topic_pattern)",
            ))
            .with_field(ConfigField::required(
                "group_id",
                "string",
                "consumer group",
            ))
            .with_field(ConfigField::optional(
                "auto_offset_reset",
                "string",
                "earliest",
                "earliest | latest | a time",
            ))
            .with_field(ConfigField::optional(
                "bounded",
                "bool",
                "false",
                "stop at the end offsets seen at start",
            ))
    }
    fn build(&self, c: KafkaSourceConfig) -> Result<KafkaSource, ConnectorError> {
        Ok(KafkaSource::new(c)?)
    }
    fn check_config(&self, c: &KafkaSourceConfig) -> Result<(), ConnectorError> {
        KafkaSource::check(c)?;
        Ok(())
    }
}

/// Builds [`KafkaSink`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct KafkaSinkFactory;

impl SinkFactory for KafkaSinkFactory {
    type Config = KafkaSinkConfig;
    type Sink = KafkaSink;
    fn descriptor(&self) -> ConnectorDescriptor {
        ConnectorDescriptor::new("kafka", env!("CARGO_PKG_VERSION"), ConnectorKind::Sink)
            .with_description(
                "Writes to a Kafka topic with an idempotent producer (also a dead-letter topic)",
            )
            .with_field(ConfigField::required(
                "bootstrap_servers",
                "string",
                "host:port,...",
            ))
            .with_field(ConfigField::required("topic", "string", "the topic"))
            .with_field(ConfigField::optional(
                "key_field",
                "string",
                "record key",
                "JSON payload field used as message key; a payload without it is a bad record",
            ))
            .with_field(ConfigField::optional(
                "max_retry_duration",
                "duration",
                "no limit",
                "give up delivering a record this long after it was produced",
            ))
            .with_field(ConfigField::optional(
                "dedupe_header",
                "string",
                "none (dead-letter topics: flowline.dead_letter.id)",
                "header with a deterministic id: a replay after a restore writes each record once",
            ))
            .with_field(ConfigField::optional(
                "dedupe",
                "string",
                "none (a job's windows, anomalies, late events: content)",
                "content: a replay after a restore writes a record with the same key and payload as the run before once",
            ))
    }
    fn build(&self, c: KafkaSinkConfig) -> Result<KafkaSink, ConnectorError> {
        Ok(KafkaSink::new(c)?)
    }
    fn check_config(&self, c: &KafkaSinkConfig) -> Result<(), ConnectorError> {
        KafkaSink::check(c)?;
        Ok(())
    }
}

/// Registers this crate's connectors.
pub fn register(r: &mut Registry) -> Result<(), ConnectorError> {
    r.register_source(KafkaSourceFactory)?
        .register_sink(KafkaSinkFactory)?;
    Ok(())
}
