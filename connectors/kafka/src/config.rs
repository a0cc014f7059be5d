//! Source and sink settings, with Kafka Connect's names where they exist,
//! and the librdkafka client configuration they become.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rdkafka::ClientConfig;
use serde::Deserialize;

use crate::Error;

/// `security_protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// No TLS, no SASL.
    #[default]
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

/// Connection and security settings shared by source and sink.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Security {
    /// `plaintext`, `ssl`, `sasl_plaintext`, `sasl_ssl`.
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
    /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`.
    pub sasl_mechanism: Option<String>,
    /// SASL user.
    pub sasl_username: Option<String>,
    /// SASL password (never logged).
    pub sasl_password: Option<String>,
    /// CA certificate (PEM).
    pub ssl_ca_location: Option<PathBuf>,
    /// Client certificate (PEM).
    pub ssl_certificate_location: Option<PathBuf>,
    /// Client key (PEM).
    pub ssl_key_location: Option<PathBuf>,
    /// Client key password (never logged).
    pub ssl_key_password: Option<String>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("security_protocol", &self.security_protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field("sasl_password", &self.sasl_password.as_ref().map(|_| "***"))
            .field("ssl_ca_location", &self.ssl_ca_location)
            .finish_non_exhaustive()
    }
}

/// Where a consumer group with no committed offset starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    /// The oldest record.
    Earliest,
    /// Only records produced from now on.
    Latest,
    /// The first record at or after this time (ms since the epoch).
    Timestamp(i64),
}

fn start_position(s: &str) -> Result<StartPosition, Error> {
    match s {
        "earliest" => Ok(StartPosition::Earliest),
        "latest" => Ok(StartPosition::Latest),
        t => {
            let ms = t
                .parse::<i64>()
                .ok()
                .or_else(|| flowline_connector_api::time::parse_rfc3339_ms(t).ok());
            ms.map(StartPosition::Timestamp).ok_or_else(|| {
                Error::Config(format!(
                    "auto_offset_reset = \"{t}\" is not earliest, latest, a time (RFC 3339) or ms since the epoch. Fix: auto_offset_reset = \"earliest\""
                ))
            })
        }
    }
}

/// `[source] type = "kafka"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// `host:port,...`.
    pub bootstrap_servers: String,
    /// Topics to read.
    #[serde(default)]
    pub topics: Vec<String>,
    /// A regex of topics (`^metrics-.*`), instead of `topics`.
    pub topic_pattern: Option<String>,
    /// Consumer group.
    pub group_id: String,
    /// Static group membership (`group.instance.id`): a process restarted
    /// with the same id within the session timeout takes its partitions
    /// back at once, without a rebalance. Unique per running instance; the
    /// `flowline` CLI derives one from the job name and `[job] instance_id`.
    pub group_instance_id: Option<String>,
    /// `earliest`, `latest`, or a time: where a partition without
    /// checkpointed state starts. `latest` holds for the partitions of the
    /// job's first start; a later one starts at its earliest offset.
    #[serde(default = "d_earliest")]
    pub auto_offset_reset: String,
    /// Read up to the end offsets seen at start, then end the input.
    #[serde(default)]
    pub bounded: bool,
    /// This consumer must hold every partition of its topics (or none): a
    /// rebalance that gives some to another member of the group fails the
    /// source, for a job whose state cannot move with its partitions (see
    /// `source/exclusive.rs`). Default false.
    #[serde(default)]
    pub exclusive: bool,
    /// Event time from this payload field (ms since the epoch, or RFC 3339
    /// with any offset, read exactly); default: the Kafka record timestamp.
    /// A record whose field is missing or unreadable is refused with the
    /// reason (dead-lettered), never given a guessed time.
    pub timestamp_field: Option<String>,
    /// Copy Kafka headers into records (default). `false` skips them, which
    /// reads about 10 % faster; dead-letter replays need them.
    #[serde(default = "d_true")]
    pub headers: bool,
    /// Records per batch handed to the runtime.
    #[serde(default = "d_batch")]
    pub max_batch: usize,
    /// How long `next` waits for records before reporting idle.
    #[serde(default = "d_poll")]
    pub poll_timeout: String,
    /// How long to wait for the broker at start before failing.
    #[serde(default = "d_connect")]
    pub connect_timeout: String,
    /// Batches read ahead of the runtime. When they are all waiting, the
    /// partitions are paused until the runtime takes one (backpressure).
    #[serde(default = "d_prefetch")]
    pub prefetch_batches: usize,
    /// How long a revoke waits for a checkpoint that covers the revoked
    /// partitions before giving them up anyway (keep it under
    /// `max.poll.interval.ms`).
    #[serde(default = "d_revoke")]
    pub revoke_timeout: String,
    /// Security.
    #[serde(flatten)]
    pub security: Security,
    /// Any librdkafka property, passed through, except those the source
    /// owns (`properties.rs`).
    #[serde(default, deserialize_with = "crate::properties::source")]
    pub properties: BTreeMap<String, String>,
}

fn d_prefetch() -> usize {
    4
}
fn d_revoke() -> String {
    "30s".into()
}
fn d_true() -> bool {
    true
}
fn d_earliest() -> String {
    "earliest".into()
}
fn d_batch() -> usize {
    1024
}
fn d_poll() -> String {
    "200ms".into()
}
fn d_connect() -> String {
    "10s".into()
}

/// `[sink] type = "kafka"` (also a dead-letter destination).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// `host:port,...`.
    pub bootstrap_servers: String,
    /// The topic.
    pub topic: String,
    /// Take the message key from this payload field; default: the record key.
    /// A record whose payload is not a JSON object with the field is a bad
    /// record (a `null` field is no key).
    pub key_field: Option<String>,
    /// `linger.ms` (default 5). Set here or in `properties`, not both.
    pub linger_ms: Option<u32>,
    /// `batch.size` in bytes (default 1 MiB). Here or in `properties`.
    pub batch_size: Option<u32>,
    /// `none`, `gzip`, `snappy`, `lz4` (default), `zstd`: librdkafka's
    /// `compression.type`. Here or in `properties`.
    pub compression: Option<String>,
    /// How long to wait for the broker at start before failing.
    #[serde(default = "d_connect")]
    pub connect_timeout: String,
    /// Give up delivering a record this long after it was produced
    /// (librdkafka's `message.timeout.ms`). Default: no limit, so a broker
    /// outage is ridden out (with backpressure once the producer's queue is
    /// full).
    pub max_retry_duration: Option<String>,
    /// A header holding a deterministic id per record: after a restore, a
    /// record whose id the run before wrote after the checkpoint is not
    /// written again (so replays never double it). A dead-letter topic
    /// uses `flowline.dead_letter.id` by default.
    pub dedupe_header: Option<String>,
    /// `"content"`: after a restore, a record with the same message key
    /// and payload as one the run before wrote after the checkpoint is not
    /// written again (as often as it was written). `"none"` turns off the
    /// job's default (a job's windows, anomalies and late events on Kafka
    /// use `"content"`).
    pub dedupe: Option<String>,
    /// Security.
    #[serde(flatten)]
    pub security: Security,
    /// Any librdkafka property, passed through, except those the sink
    /// owns (`properties.rs`).
    #[serde(default, deserialize_with = "crate::properties::sink")]
    pub properties: BTreeMap<String, String>,
}

impl KafkaSinkConfig {
    /// The librdkafka settings the sink has fields for, each with its
    /// value: the field's, or the one `properties` gives under any of its
    /// names (librdkafka reads `queue.buffering.max.ms` as `linger.ms` and
    /// `compression.codec` as `compression.type`), or the default. A
    /// setting given twice with two values is refused: which one the
    /// producer would use depended on the order librdkafka was told them,
    /// and the field lost to the property with nothing said.
    pub fn producer_settings(&self) -> Result<[(&'static str, String); 3], String> {
        let one =
            |field: &str,
             value: Option<String>,
             names: &[&'static str],
             default: &str|
             -> Result<String, String> {
                let mut given: Vec<(String, &String)> = value
                    .as_ref()
                    .map(|v| (format!("`{field}` = {v:?}"), v))
                    .into_iter()
                    .collect();
                for n in names {
                    if let Some(v) = self.properties.get(*n) {
                        given.push((format!("properties \"{n}\" = {v:?}"), v));
                    }
                }
                match given.split_first() {
                    None => Ok(default.to_string()),
                    Some(((_, v), rest)) if rest.iter().all(|(_, w)| w == v) => Ok(v.to_string()),
                    Some(_) => {
                        Err(format!(
                    "{} set one producer setting with different values. Fix: keep one of them",
                    given.iter().map(|(g, _)| g.as_str()).collect::<Vec<_>>().join(" and ")
                ))
                    }
                }
            };
        Ok([
            (
                "linger.ms",
                one(
                    "linger_ms",
                    self.linger_ms.map(|v| v.to_string()),
                    &["linger.ms", "queue.buffering.max.ms"],
                    "5",
                )?,
            ),
            (
                "batch.size",
                one(
                    "batch_size",
                    self.batch_size.map(|v| v.to_string()),
                    &["batch.size"],
                    "1048576",
                )?,
            ),
            (
                "compression.type",
                one(
                    "compression",
                    self.compression.clone(),
                    &["compression.type", "compression.codec"],
                    "lz4",
                )?,
            ),
        ])
    }
}

/// The longest duration setting: librdkafka counts timeouts in `i32`
/// milliseconds, and no wait of the connector is meant to last a day.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(86_400);

/// A duration setting, 1 ms to [`MAX_DURATION`].
pub fn duration(field: &str, v: &str) -> Result<std::time::Duration, Error> {
    flowline_connector_api::time::parse_duration(
        field,
        v,
        std::time::Duration::from_millis(1)..=MAX_DURATION,
    )
    .map_err(Error::Config)
}

/// A count setting within `range`.
pub fn count(
    field: &str,
    v: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, Error> {
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(Error::Config(format!(
            "`{field}` = {v} is outside {} to {}. Fix: remove it for the default, or choose a value in that range",
            range.start(),
            range.end()
        )))
    }
}

/// The librdkafka configuration of the connection and security settings.
pub fn client_config(
    bootstrap: &str,
    s: &Security,
    props: &BTreeMap<String, String>,
) -> Result<ClientConfig, Error> {
    if bootstrap.trim().is_empty() {
        return Err(Error::Config(
            "bootstrap_servers is empty. Fix: bootstrap_servers = \"127.0.0.1:9092\"".into(),
        ));
    }
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    let proto = match s.security_protocol {
        SecurityProtocol::Plaintext => "plaintext",
        SecurityProtocol::Ssl => "ssl",
        SecurityProtocol::SaslPlaintext => "sasl_plaintext",
        SecurityProtocol::SaslSsl => "sasl_ssl",
    };
    c.set("security.protocol", proto);
    let sasl = matches!(
        s.security_protocol,
        SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
    );
    if sasl {
        let mech = s
            .sasl_mechanism
            .clone()
            .unwrap_or_else(|| "SCRAM-SHA-512".into());
        if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&mech.as_str()) {
            return Err(Error::Config(format!("sasl_mechanism `{mech}` is not supported. Fix: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")));
        }
        let (Some(u), Some(p)) = (&s.sasl_username, &s.sasl_password) else {
            return Err(Error::Config(format!(
                "security_protocol = \"{proto}\" needs sasl_username and sasl_password"
            )));
        };
        c.set("sasl.mechanism", mech)
            .set("sasl.username", u)
            .set("sasl.password", p);
    } else if s.sasl_username.is_some() || s.sasl_password.is_some() {
        return Err(Error::Config("sasl_username / sasl_password are set but security_protocol is not sasl_plaintext or sasl_ssl. Fix: security_protocol = \"sasl_ssl\"".into()));
    }
    for (key, v) in [
        ("ssl.ca.location", &s.ssl_ca_location),
        ("ssl.certificate.location", &s.ssl_certificate_location),
        ("ssl.key.location", &s.ssl_key_location),
    ] {
        if let Some(p) = v {
            if !p.is_file() {
                return Err(Error::Config(format!(
                    "{key}: `{}` does not exist",
                    p.display()
                )));
            }
            c.set(key, p.display().to_string());
        }
    }
    if let Some(p) = &s.ssl_key_password {
        c.set("ssl.key.password", p);
    }
    for (k, v) in props {
        c.set(k, v);
    }
    Ok(c)
}

impl KafkaSourceConfig {
    /// Checks the settings.
    pub fn start_position(&self) -> Result<StartPosition, Error> {
        if self.topics.is_empty() == self.topic_pattern.is_none() {
            return Err(Error::Config(
                "set either topics = [\"...\"] or topic_pattern = \"^...\"".into(),
            ));
        }
        if self.group_id.is_empty() {
            return Err(Error::Config(
                "group_id is empty. Fix: group_id = \"flowline-metrics\"".into(),
            ));
        }
        start_position(&self.auto_offset_reset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(extra: serde_json::Value) -> Result<KafkaSourceConfig, String> {
        let mut v = serde_json::json!({"bootstrap_servers": "127.0.0.1:9092", "topics": ["metrics"], "group_id": "g"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    fn producer(extra: serde_json::Value) -> Result<Vec<(&'static str, String)>, String> {
        let mut v = serde_json::json!({"bootstrap_servers": "127.0.0.1:9092", "topic": "t"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let c: KafkaSinkConfig = serde_json::from_value(v).map_err(|e| e.to_string())?;
        c.producer_settings().map(Vec::from)
    }

    #[test]
    fn a_producer_setting_is_given_once_or_with_one_value() {
        let s = |l: &str, b: &str, c: &str| {
            vec![
                ("linger.ms", l.to_string()),
                ("batch.size", b.to_string()),
                ("compression.type", c.to_string()),
            ]
        };
        assert_eq!(
            producer(serde_json::json!({})),
            Ok(s("5", "1048576", "lz4"))
        );
        assert_eq!(
            producer(serde_json::json!({"linger_ms": 50, "compression": "zstd"})),
            Ok(s("50", "1048576", "zstd"))
        );
        // In properties, under either of librdkafka's names.
        assert_eq!(
            producer(
                serde_json::json!({"properties": {"queue.buffering.max.ms": "20", "compression.codec": "gzip", "batch.size": "4096"}})
            ),
            Ok(s("20", "4096", "gzip"))
        );
        // Twice with one value: taken.
        assert_eq!(
            producer(serde_json::json!({"linger_ms": 20, "properties": {"linger.ms": "20"}})),
            Ok(s("20", "1048576", "lz4"))
        );
        // Twice with two values: before, the property won in silence.
        for (extra, named) in [
            (
                serde_json::json!({"linger_ms": 5, "properties": {"linger.ms": "100"}}),
                r#"`linger_ms` = "5" and properties "linger.ms" = "100""#,
            ),
            (
                serde_json::json!({"properties": {"linger.ms": "1", "queue.buffering.max.ms": "2"}}),
                r#"properties "linger.ms" = "1" and properties "queue.buffering.max.ms" = "2""#,
            ),
            (
                serde_json::json!({"compression": "lz4", "properties": {"compression.type": "zstd"}}),
                r#"`compression` = "lz4" and properties "compression.type" = "zstd""#,
            ),
        ] {
            let e = producer(extra).unwrap_err();
            assert!(e.contains(named) && e.contains("Fix: keep one"), "{e}");
        }
    }

    #[test]
    fn durations_and_counts_out_of_range_are_config_errors() {
        assert_eq!(
            duration("t", "10s").unwrap(),
            std::time::Duration::from_secs(10)
        );
        for v in [
            "0s",
            "1ns",
            "999us",
            "25h",
            "101years",
            "18446744073709551615s",
            "-1s",
        ] {
            let e = duration("connect_timeout", v).unwrap_err().to_string();
            assert!(
                e.contains("connect_timeout") && e.contains("Fix"),
                "{v}: {e}"
            );
        }
        assert_eq!(count("max_batch", 1, 1..=10).unwrap(), 1);
        for v in [0, 11, usize::MAX] {
            let e = count("max_batch", v, 1..=10).unwrap_err().to_string();
            assert!(e.contains("max_batch") && e.contains("Fix"), "{v}: {e}");
        }
    }

    #[test]
    fn start_positions() {
        assert_eq!(
            src(serde_json::json!({}))
                .unwrap()
                .start_position()
                .unwrap(),
            StartPosition::Earliest
        );
        assert_eq!(
            src(serde_json::json!({"auto_offset_reset": "latest"}))
                .unwrap()
                .start_position()
                .unwrap(),
            StartPosition::Latest
        );
        assert_eq!(
            src(serde_json::json!({"auto_offset_reset": "2026-01-01T00:00:00Z"}))
                .unwrap()
                .start_position()
                .unwrap(),
            StartPosition::Timestamp(1_767_225_600_000)
        );
        assert!(src(serde_json::json!({"auto_offset_reset": "yesterday"}))
            .unwrap()
            .start_position()
            .unwrap_err()
            .to_string()
            .contains("Fix"));
    }

    #[test]
    fn security_settings_are_checked_and_secrets_hidden() {
        let c = src(serde_json::json!({"security_protocol": "sasl_plaintext", "sasl_mechanism": "SCRAM-SHA-256", "sasl_username": "u", "sasl_password": "hunter2"})).unwrap();
        assert!(client_config(&c.bootstrap_servers, &c.security, &c.properties).is_ok());
        assert!(!format!("{c:?}").contains("hunter2"));
        let c = src(serde_json::json!({"security_protocol": "sasl_plaintext"})).unwrap();
        assert!(
            client_config(&c.bootstrap_servers, &c.security, &c.properties)
                .unwrap_err()
                .to_string()
                .contains("sasl_username")
        );
        let c = src(serde_json::json!({"sasl_username": "u"})).unwrap();
        assert!(client_config(&c.bootstrap_servers, &c.security, &c.properties).is_err());
        assert!(src(serde_json::json!({"topic": "x"}))
            .unwrap_err()
            .contains("unknown field `topic`"));
        let both = src(serde_json::json!({"topic_pattern": "^m"})).unwrap();
        assert!(both.start_position().is_err());
    }

    /// Static membership and the cooperative protocol together can leave
    /// partitions with no member (`COOPERATIVE_STATIC`); either alone is
    /// taken, and the default protocol is eager.
    #[test]
    fn a_static_member_with_the_cooperative_protocol_is_refused() {
        use crate::source::KafkaSource;
        let coop = serde_json::json!({"partition.assignment.strategy": "cooperative-sticky"});
        let c = src(serde_json::json!({"group_instance_id": "a", "properties": coop})).unwrap();
        let e = KafkaSource::check(&c).err().unwrap().to_string();
        assert!(
            e.contains("cooperative-sticky") && e.contains("Fix:"),
            "{e}"
        );
        assert!(KafkaSource::check(&src(serde_json::json!({"properties": coop})).unwrap()).is_ok());
        let assignor = |c: serde_json::Value| {
            let checked = KafkaSource::check(&src(c).unwrap()).ok().unwrap();
            checked
                .cc
                .get("partition.assignment.strategy")
                .map(str::to_string)
        };
        assert_eq!(
            assignor(serde_json::json!({"group_instance_id": "a"})).as_deref(),
            Some("range")
        );
        assert_eq!(
            assignor(serde_json::json!({})).as_deref(),
            Some("cooperative-sticky")
        );
        // An exclusive source fails when it holds part of its topics: it
        // stays cooperative, static or not.
        let exclusive = serde_json::json!({"group_instance_id": "a", "exclusive": true});
        assert_eq!(assignor(exclusive).as_deref(), Some("cooperative-sticky"));
    }
}
