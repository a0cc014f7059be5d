//! What the source reads from its config before it contacts a broker:
//! the checks `new` and `validate --offline` share (`KafkaSource::check`),
//! and the consumer's defaults.

use std::time::Duration;

use super::KafkaSource;
use crate::config::{client_config, count, duration, KafkaSourceConfig, StartPosition};
use crate::error::Error;

/// Why a static member (`group_instance_id`) may not use the cooperative
/// protocol. A cooperative rebalance that moves partitions runs twice: the
/// first takes them from their owner, which revokes them (here, after a
/// checkpoint), and only the owner's rejoin after its revoke starts the
/// second, which gives them to their new owner. When the owner dies in
/// between and restarts as the same static member, the coordinator gives
/// it its assignment of the first round without a rebalance, and nothing
/// starts the second: the moved partitions stay with no member, unread,
/// while the group says it is stable (seen in a trial: two processes, one
/// killed during its revoke; two of four partitions unread for good). The
/// eager protocol assigns every partition in one round.
const COOPERATIVE_STATIC: &str = "[source.properties] \"partition.assignment.strategy\" = \"cooperative-sticky\" with static membership (group_instance_id, or [job] instance_id): a member that dies during a cooperative rebalance and restarts as itself leaves the partitions that rebalance was moving with no member, unread for good while the group looks stable. Fix: remove the property (the default, range, is eager), or run without static membership";

/// What [`KafkaSource::check`] read from the config.
pub(crate) struct Checked {
    pub(super) start: StartPosition,
    pub(super) poll_timeout: Duration,
    pub(super) connect: Duration,
    pub(super) revoke_timeout: Duration,
    pub(crate) cc: rdkafka::ClientConfig,
}

impl KafkaSource {
    /// Every check of `new` that needs no broker (`validate --offline` runs
    /// it too): the settings read, and librdkafka's consumer config built.
    pub(crate) fn check(cfg: &KafkaSourceConfig) -> Result<Checked, Error> {
        let start = cfg.start_position()?;
        let poll_timeout = duration("poll_timeout", &cfg.poll_timeout)?;
        let connect = duration("connect_timeout", &cfg.connect_timeout)?;
        let mut cc = client_config(
            &cfg.bootstrap_servers,
            &cfg.security,
            &BTreeMapDefaults::source(),
        )?;
        // librdkafka resets to this when an offset is out of the log's
        // range: records deleted before they were read, or a log created
        // again. Reading goes on from the log start, whatever
        // `auto_offset_reset` says: that names where a partition without
        // state starts (`start.rs`), which is always an offset of ours.
        // "latest" here skipped every record left in the log, silently.
        cc.set("group.id", &cfg.group_id)
            .set("auto.offset.reset", "earliest");
        if let Some(id) = cfg.group_instance_id.as_deref().filter(|_| !cfg.bounded) {
            if id.is_empty() || id.len() > 249 {
                return Err(Error::Config(format!(
                    "group_instance_id `{id}` must have 1 to 249 characters"
                )));
            }
            cc.set("group.instance.id", id);
            // Eager: see `COOPERATIVE_STATIC`. `range` gives partition i of
            // each topic to one member. An exclusive source keeps the
            // cooperative protocol: holding part of its topics fails it,
            // so a rebalance left half done is never silent there.
            if !cfg.exclusive {
                cc.set("partition.assignment.strategy", "range");
            }
        }
        for (k, v) in &cfg.properties {
            cc.set(k, v);
        }
        if cc.get("group.instance.id").is_some()
            && !cfg.exclusive
            && cc
                .get("partition.assignment.strategy")
                .is_some_and(|s| s.contains("cooperative"))
        {
            return Err(Error::Config(COOPERATIVE_STATIC.into()));
        }
        let revoke_timeout = duration("revoke_timeout", &cfg.revoke_timeout)?;
        // Both bound the memory held: max_batch × prefetch_batches records.
        count("max_batch", cfg.max_batch, 1..=1_000_000)?;
        count("prefetch_batches", cfg.prefetch_batches, 1..=1_024)?;
        if cfg.bounded && cfg.topics.is_empty() {
            return Err(Error::Config(
                "bounded = true needs topics = [...] (not topic_pattern)".into(),
            ));
        }
        crate::checked::native(&cc, "consumer")?;
        Ok(Checked {
            start,
            poll_timeout,
            connect,
            revoke_timeout,
            cc,
        })
    }
}

/// Defaults this connector sets (overridable through `properties`).
struct BTreeMapDefaults;

impl BTreeMapDefaults {
    fn source() -> std::collections::BTreeMap<String, String> {
        [
            // Every process of a job has this id, so a member of the group
            // under another is another application (`source/members.rs`).
            ("client.id", "flowline"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            // A static member takes `range` instead (`COOPERATIVE_STATIC`).
            ("partition.assignment.strategy", "cooperative-sticky"),
            // How long a member that stopped without leaving (a crash) holds
            // its partitions: a dynamic member restarted waits this long
            // for them (librdkafka's default is 45 s).
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "2000"),
            ("statistics.interval.ms", "1000"),
            // Bounded prefetch: when the runtime applies backpressure the
            // consumer stops fetching after this much.
            ("queued.max.messages.kbytes", "16384"),
            // librdkafka waits this long to fetch again after finding that
            // queue full (default 1 s): a fast reader then sits idle with
            // an empty queue. 10 ms tripled the drain rate (bench/).
            ("fetch.queue.backoff.ms", "10"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}
