//! `[source.properties]` and `[sink.properties]`: librdkafka properties
//! passed through as they are, except those that would undo what this
//! connector promises. Those are refused when the section is read (so
//! `flowline validate --offline` and `run` refuse the same files), naming
//! the property, what it would break and the setting to use instead.
//!
//! Before, any property went through and won over the connector's own
//! settings: `"enable.idempotence" = "false"` (a common tutorial speed-up)
//! let a retried batch land twice or behind a later one, so a window was
//! on its topic twice or its older version came last, and
//! `"isolation.level" = "read_uncommitted"` counted records of aborted
//! transactions in the windows, with nothing said. Flink's Kafka connector
//! overrides the same consumer properties; here they fail the start, since
//! a setting silently ignored is a setting the user believes holds.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// What a property may hold: `None` refuses it whatever its value.
type Allowed = Option<&'static [&'static str]>;

/// Consumer properties the source owns: (name, the values that change
/// nothing, why, fix).
const SOURCE: &[(&str, Allowed, &str, &str)] = &[
    (
        "group.id",
        None,
        "the source's group is its `group_id` setting",
        "set group_id = \"...\" in the section instead",
    ),
    (
        "group.instance.id",
        None,
        "static membership comes from `group_instance_id` (the flowline CLI derives it from the job name and [job] instance_id)",
        "remove it; set [job] instance_id (or group_instance_id) instead",
    ),
    (
        "auto.offset.reset",
        None,
        "where a partition without checkpointed state starts is the source's `auto_offset_reset` setting, which also decides new partitions and restarts",
        "set auto_offset_reset = \"earliest\", \"latest\" or a time instead",
    ),
    (
        "enable.auto.commit",
        Some(&["false", "f", "0"]),
        "offsets are committed when a checkpoint completes; committed as they are read, the group's offsets would run ahead of what the job has made durable (lag tools would show records as done that are not, and a start without the checkpoint would skip them)",
        "remove it",
    ),
    (
        "enable.auto.offset.store",
        Some(&["false", "f", "0"]),
        "offsets are stored when a checkpoint completes; stored as they are read, the group's offsets would run ahead of what the job has made durable",
        "remove it",
    ),
    (
        "isolation.level",
        Some(&["read_committed"]),
        "records of aborted and still-open transactions would be counted in windows, though their producer never committed them",
        "remove it (read_committed is the default)",
    ),
];

/// Why and fix for `acks` and its alias `request.required.acks`.
const ACKS: (&str, &str) = (
    "a record acknowledged by fewer than all in-sync replicas is lost when its leader fails over, and the sink would count it as written",
    "remove it (acks = all)",
);

/// Why and fix for `message.timeout.ms` and its alias `delivery.timeout.ms`.
const TIMEOUT: (&str, &str) = (
    "how long a record is retried is the sink's `max_retry_duration` setting (default: without limit, so an outage is ridden out)",
    "set max_retry_duration = \"10m\" instead, or remove it",
);

/// Producer properties the sink owns.
const SINK: &[(&str, Allowed, &str, &str)] = &[
    (
        "enable.idempotence",
        Some(&["true", "t", "1"]),
        "without it a batch the producer retries can be written twice, or after a later one: a window twice on the topic, or its older version last",
        "remove it",
    ),
    (
        "acks",
        Some(&["all", "-1"]),
        ACKS.0,
        ACKS.1,
    ),
    (
        "request.required.acks",
        Some(&["all", "-1"]),
        ACKS.0,
        ACKS.1,
    ),
    (
        "message.timeout.ms",
        None,
        TIMEOUT.0,
        TIMEOUT.1,
    ),
    (
        "delivery.timeout.ms",
        None,
        TIMEOUT.0,
        TIMEOUT.1,
    ),
    (
        "transactional.id",
        None,
        "the sink does not run Kafka transactions: it writes each record once with an idempotent producer and, after a restore, skips what the run before wrote (dedupe)",
        "remove it",
    ),
];

/// Checks `props` against `owned`, naming the first refused property.
fn check(
    section: &str,
    owned: &[(&str, Allowed, &str, &str)],
    props: &BTreeMap<String, String>,
) -> Result<(), String> {
    for (name, allowed, why, fix) in owned {
        let Some(v) = props.get(*name) else { continue };
        let v = v.trim().to_ascii_lowercase();
        if allowed.is_some_and(|ok| ok.contains(&v.as_str())) {
            continue;
        }
        return Err(format!(
            "[{section}.properties] \"{name}\" is not passed to librdkafka: {why}. Fix: {fix}"
        ));
    }
    Ok(())
}

/// Deserializes a source's `properties`, refusing the ones it owns.
pub(crate) fn source<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let props = BTreeMap::<String, String>::deserialize(d)?;
    check("source", SOURCE, &props).map_err(serde::de::Error::custom)?;
    Ok(props)
}

/// Deserializes a sink's `properties`, refusing the ones it owns.
pub(crate) fn sink<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let props = BTreeMap::<String, String>::deserialize(d)?;
    check("sink", SINK, &props).map_err(serde::de::Error::custom)?;
    Ok(props)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn properties_that_undo_a_guarantee_are_refused_by_name_with_the_fix() {
        for (name, value, says) in [
            ("group.id", "other", "group_id"),
            ("auto.offset.reset", "earliest", "auto_offset_reset"),
            ("enable.auto.commit", "true", "committed when a checkpoint"),
            (
                "enable.auto.offset.store",
                "True",
                "stored when a checkpoint",
            ),
            ("isolation.level", "read_uncommitted", "aborted"),
            ("group.instance.id", "x", "instance_id"),
        ] {
            let e = check("source", SOURCE, &props(&[(name, value)])).unwrap_err();
            assert!(
                e.contains(&format!("\"{name}\"")) && e.contains(says) && e.contains("Fix:"),
                "{e}"
            );
        }
        for (name, value, says) in [
            ("enable.idempotence", "false", "twice"),
            ("acks", "1", "fails over"),
            ("request.required.acks", "0", "fails over"),
            ("message.timeout.ms", "30000", "max_retry_duration"),
            ("delivery.timeout.ms", "30000", "max_retry_duration"),
            ("transactional.id", "t", "transactions"),
        ] {
            let e = check("sink", SINK, &props(&[(name, value)])).unwrap_err();
            assert!(
                e.contains(&format!("[sink.properties] \"{name}\"")) && e.contains(says),
                "{e}"
            );
        }
    }

    #[test]
    fn the_values_the_connector_sets_and_every_other_property_pass() {
        let source = props(&[
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "0"),
            ("isolation.level", "read_committed"),
            ("fetch.max.bytes", "52428800"),
            ("client.id", "billing"),
        ]);
        assert_eq!(check("source", SOURCE, &source), Ok(()));
        let sink = props(&[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("request.required.acks", "-1"),
            ("compression.type", "zstd"),
            ("linger.ms", "20"),
        ]);
        assert_eq!(check("sink", SINK, &sink), Ok(()));
        // A consumer's property is the sink's own business, and the reverse.
        assert_eq!(check("sink", SINK, &props(&[("group.id", "g")])), Ok(()));
    }
}
