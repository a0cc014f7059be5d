//! A warning at start for each named source topic that the broker
//! compacts (`cleanup.policy` with `compact`). Compaction keeps only the
//! newest record of each key, so records the job has not read yet, or
//! reads again after a restore, can be gone with no gap in the offsets to
//! tell (the gap check of `state.rs` sees only a log start that moved),
//! and windows then count fewer than were written, differently from one
//! run to the next. A warning, not a refusal: the topic is the producer's
//! choice, and a job that keeps up with it loses nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use super::KafkaSource;

/// Prefixes of the librdkafka properties that say how to connect, which
/// the admin client asking for the topics' configs takes too (given a
/// consumer property, it logs a warning for it).
const CONNECTION: &[&str] = &[
    "security.",
    "ssl.",
    "sasl.",
    "socket.",
    "broker.",
    "client.",
    "enable.ssl",
];

impl KafkaSource {
    /// Warns about each named topic the broker compacts. A topic whose
    /// configs cannot be read (no `DescribeConfigs` permission, no answer
    /// within `timeout`, at most 5 s) ends the check.
    pub(super) fn warn_compacted(&self, timeout: Duration) {
        let connection: BTreeMap<String, String> = self
            .cfg
            .properties
            .iter()
            .filter(|(k, _)| CONNECTION.iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let Ok(client) = crate::config::client_config(
            &self.cfg.bootstrap_servers,
            &self.cfg.security,
            &connection,
        ) else {
            return;
        };
        let timeout = timeout.min(Duration::from_secs(5));
        for t in &self.cfg.topics {
            match crate::admin::topic_configs(&client, t, timeout) {
                Ok(c) => {
                    let policy = crate::admin::cleanup_policy(&c);
                    if policy.compacts {
                        tracing::warn!(topic = %t, cleanup_policy = policy.text, "the topic is compacted: the broker keeps only the newest record of each key, so records not read yet (or read again after a restore) can be gone with no gap to tell, and windows count fewer than were written. Fix: read a topic with cleanup.policy=delete");
                    }
                }
                Err(error) => {
                    tracing::debug!(topic = %t, %error, "cannot read the topic's cleanup.policy");
                    return;
                }
            }
        }
    }
}
