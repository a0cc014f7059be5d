//! The job file (`flowline run --config job.toml`): parsed and checked
//! before any work, with errors that name the field and the fix.

use std::path::{Path, PathBuf};
use std::time::Duration;

use flowline_runtime::{Sliding, Tumbling};
use serde::Deserialize;

use crate::aggregates::Aggregates;
use crate::anomaly::AnomalySettings;
use crate::event::{EventSection, EventShape};
use crate::job::WindowSettings;
use crate::Error;
use flowline_kafka::KafkaStoreConfig;

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    /// `[job]`
    #[serde(default)]
    pub job: JobSection,
    /// `[source]`: `type` and the connector's settings.
    pub source: toml::Table,
    /// `[sink]`: the window output.
    pub sink: toml::Table,
    /// `[window]`
    #[serde(default)]
    pub window: WindowSection,
    /// `[event]`: where each event's time and value are (the generator's
    /// shape without it).
    pub event: Option<EventSection>,
    /// `[checkpoint]`; checkpoints are off without it.
    pub checkpoint: Option<CheckpointSection>,
    /// `[dead_letter]`: where bad records go, with their reason.
    pub dead_letter: Option<toml::Table>,
    /// `[late]`: where events beyond the allowed lateness go.
    pub late: Option<toml::Table>,
    /// `[http]`: the operations endpoint.
    pub http: Option<crate::http::HttpSection>,
    /// `[anomaly]`: detector settings.
    pub anomaly: Option<AnomalySection>,
    /// `[anomalies]`: where confirmed anomalies go (off when absent).
    pub anomalies: Option<toml::Table>,
    /// `[current]`: where the current status per key is upserted (off when
    /// absent).
    pub current: Option<toml::Table>,
}

/// `[anomaly]`: the detector's settings (see [`AnomalySettings`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalySection {
    /// Weight of the newest window in the baseline.
    pub alpha: Option<f64>,
    /// |z| at or above which a window is anomalous.
    pub threshold: Option<f64>,
    /// Anomalous windows in a row before an anomaly is reported.
    pub consecutive: Option<u32>,
    /// Windows seen before any verdict.
    pub warmup: Option<u32>,
    /// Anomalous windows in a row after which the level is the new baseline.
    pub relearn_after: Option<u32>,
    /// Event time without a window after which a key's state is dropped.
    pub forget_after: Option<String>,
}

/// `[job]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSection {
    /// The job's name.
    #[serde(default = "default_name")]
    pub name: String,
    /// Capacity, in batches, of the channels between stages.
    #[serde(default = "default_capacity")]
    pub channel_capacity: usize,
    /// This running instance among those of the job (default: none). When
    /// set, a Kafka source in a consumer group joins with the static member
    /// id `<name>-<instance_id>`, so that a restarted process takes its
    /// partitions back at once, and uses the eager protocol (see
    /// `member.rs`); every running instance needs its own.
    pub instance_id: Option<String>,
    /// Tasks running the keyed stages behind the exchange (default: the
    /// number of cores).
    pub workers: Option<usize>,
    /// The most window entries the job holds at once (one per key and
    /// open window), and series the anomaly detector keeps (default
    /// [`DEFAULT_MAX_STATE_ENTRIES`]). A record past it is a dead letter.
    pub max_state_entries: Option<u64>,
}

/// `[job] max_state_entries` by default: a thousand times the demo's keys;
/// a few hundred MB of state with one value per key, more with many.
pub const DEFAULT_MAX_STATE_ENTRIES: u64 = 1_000_000;

impl Default for JobSection {
    fn default() -> Self {
        Self {
            name: default_name(),
            channel_capacity: default_capacity(),
            instance_id: None,
            workers: None,
            max_state_entries: None,
        }
    }
}

fn default_name() -> String {
    "flowline-metrics".into()
}
fn default_capacity() -> usize {
    8
}

/// `[window]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSection {
    /// Window length.
    #[serde(default = "d10s")]
    pub size: String,
    /// Slide; sliding windows when set.
    pub slide: Option<String>,
    /// How late an event may be and still update its window.
    #[serde(default = "d0s")]
    pub allowed_lateness: String,
    /// Bounded out-of-orderness of event time.
    #[serde(default = "d0s")]
    pub out_of_orderness: String,
    /// A partition without records this long leaves the job watermark.
    #[serde(default = "d30s")]
    pub idle_timeout: String,
    /// Events more than this ahead of the wall clock are bad records.
    #[serde(default = "d1h")]
    pub max_future: String,
    /// The aggregates each window document carries, in order (default:
    /// count, sum, min, max, avg, p50, p95, p99).
    pub aggregates: Option<Vec<String>>,
}

impl Default for WindowSection {
    fn default() -> Self {
        Self {
            size: d10s(),
            slide: None,
            allowed_lateness: d0s(),
            out_of_orderness: d0s(),
            idle_timeout: d30s(),
            max_future: d1h(),
            aggregates: None,
        }
    }
}

fn d1h() -> String {
    "1h".into()
}

fn d10s() -> String {
    "10s".into()
}
fn d0s() -> String {
    "0s".into()
}
fn d30s() -> String {
    "30s".into()
}

/// `[checkpoint]`: a local directory (`dir`, one process) or a compacted
/// Kafka topic (`[checkpoint.kafka]`, shared by the processes of a
/// scaled-out job).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSection {
    /// Directory of checkpoint files.
    pub dir: Option<PathBuf>,
    /// Kafka-backed store settings.
    pub kafka: Option<toml::Table>,
    /// Interval; default 10s.
    pub interval: Option<String>,
}

/// Where checkpoints are kept.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    /// Files in a directory.
    Dir(PathBuf),
    /// A compacted Kafka topic.
    Kafka(Box<KafkaStoreConfig>),
}

/// A connector section split into its type and its settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorSection {
    /// `type`.
    pub kind: String,
    /// Everything else, as JSON for the connector's factory.
    pub settings: serde_json::Value,
}

/// A checked job file.
#[derive(Debug, Clone)]
pub struct JobPlan {
    /// `[job]`.
    pub job: JobSection,
    /// Source.
    pub source: ConnectorSection,
    /// Window output sink.
    pub sink: ConnectorSection,
    /// Windows.
    pub window: WindowSettings,
    /// Bounded out-of-orderness.
    pub out_of_orderness: Duration,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// Checkpoint store and interval.
    pub checkpoint: Option<(StoreChoice, Duration)>,
    /// Dead-letter sink.
    pub dead_letter: Option<ConnectorSection>,
    /// Late sink.
    pub late: Option<ConnectorSection>,
    /// Operations endpoint address.
    pub http_listen: Option<String>,
    /// `/health` answers 503 once a sink or the source fails this long.
    pub http_unhealthy_after: Duration,
    /// Detector settings.
    pub anomaly: AnomalySettings,
    /// Anomaly output sink.
    pub anomalies: Option<ConnectorSection>,
    /// Current-status output sink.
    pub current: Option<ConnectorSection>,
    /// Workers behind the exchange.
    pub workers: usize,
    /// `[source] keyed_by`: the key fields the input is partitioned by (no
    /// exchange); `None`: the exchange.
    pub keyed_by: Option<Vec<String>>,
    /// `[job] max_state_entries`.
    pub max_state_entries: u64,
}

/// `[event] max_name_bytes`: 1 to [`crate::metric::MAX_NAME_BYTES`].
fn max_name_bytes(event: Option<&crate::event::EventSection>) -> Result<usize, Error> {
    use crate::metric::{DEFAULT_MAX_NAME_BYTES, MAX_NAME_BYTES};
    match event.and_then(|e| e.max_name_bytes) {
        None => Ok(DEFAULT_MAX_NAME_BYTES),
        Some(n) if (1..=MAX_NAME_BYTES).contains(&n) => Ok(n),
        Some(n) => Err(Error::Config {
            field: "event.max_name_bytes".into(),
            message: format!(
                "{n} is outside 1 to {MAX_NAME_BYTES}. Fix: remove it (default {DEFAULT_MAX_NAME_BYTES}) or choose a value in that range"
            ),
        }),
    }
}

/// `[job] max_state_entries`: at least 1.
fn max_state_entries(job: &JobSection) -> Result<u64, Error> {
    match job.max_state_entries {
        None => Ok(DEFAULT_MAX_STATE_ENTRIES),
        Some(0) => Err(Error::Config {
            field: "job.max_state_entries".into(),
            message: format!(
                "must be at least 1: it bounds the keyed state (one entry per key and open window). Fix: remove it (default {DEFAULT_MAX_STATE_ENTRIES}) or set the most entries this machine's memory holds"
            ),
        }),
        Some(n) => Ok(n),
    }
}

/// The longest duration any setting takes: 100 years (of 365.25 days).
/// Beyond it event-time arithmetic in milliseconds could overflow; no real
/// window, lateness or interval comes near it.
const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

fn duration(field: &str, v: &str) -> Result<Duration, Error> {
    flowline_connector_api::time::parse_duration(field, v, Duration::ZERO..=MAX_DURATION).map_err(
        |message| Error::Config {
            field: field.into(),
            message,
        },
    )
}

/// Batches per channel between stages: at least 1, at most this.
const MAX_CHANNEL_CAPACITY: usize = 65_536;

/// Sliding windows per event (size / slide): each is state to update.
const MAX_WINDOWS_PER_EVENT: u128 = 10_000;

/// A window length: at least 1 ms and whole milliseconds (windows are
/// aligned on epoch milliseconds; `1500us` is refused, not rounded).
fn window_ms(field: &str, v: &str, fix: &str) -> Result<Duration, Error> {
    let d = duration(field, v)?;
    if d < Duration::from_millis(1) || d.subsec_nanos() % 1_000_000 != 0 {
        return Err(Error::Config {
            field: field.into(),
            message: format!(
                "{v} is not a whole number of milliseconds of at least 1ms. Fix: {fix}"
            ),
        });
    }
    Ok(d)
}

fn section(name: &str, t: &toml::Table) -> Result<ConnectorSection, Error> {
    let mut t = t.clone();
    let kind = match t.remove("type") {
        Some(toml::Value::String(s)) => s,
        Some(other) => {
            return Err(Error::Config {
                field: format!("{name}.type"),
                message: format!("must be a string, found {other}. Fix: type = \"file\" (see `flowline connectors`)"),
            })
        }
        None => {
            return Err(Error::Config {
                field: format!("{name}.type"),
                message: "is missing. Fix: add type = \"...\" with a connector name from `flowline connectors`".into(),
            })
        }
    };
    let settings = serde_json::to_value(&t).map_err(|e| Error::Config {
        field: name.into(),
        message: e.to_string(),
    })?;
    Ok(ConnectorSection { kind, settings })
}

fn store_choice(c: &CheckpointSection) -> Result<StoreChoice, Error> {
    match (&c.dir, &c.kafka) {
        (Some(d), None) => Ok(StoreChoice::Dir(d.clone())),
        (None, Some(k)) => {
            let cfg: KafkaStoreConfig = k.clone().try_into().map_err(|e: toml::de::Error| Error::Config {
                field: "checkpoint.kafka".into(),
                message: format!("{}. Fix: bootstrap_servers = \"127.0.0.1:9092\" and optionally topic, replication_factor, timeout, security settings, properties", e.message()),
            })?;
            if cfg.bootstrap_servers.trim().is_empty() {
                return Err(Error::Config {
                    field: "checkpoint.kafka.bootstrap_servers".into(),
                    message: "is empty. Fix: bootstrap_servers = \"127.0.0.1:9092\"".into(),
                });
            }
            duration("checkpoint.kafka.timeout", &cfg.timeout)?;
            Ok(StoreChoice::Kafka(Box::new(cfg)))
        }
        (Some(_), Some(_)) => Err(Error::Config {
            field: "checkpoint".into(),
            message: "has both `dir` and `[checkpoint.kafka]`. Fix: keep one: dir for one process, kafka for processes that share a group".into(),
        }),
        (None, None) => Err(Error::Config {
            field: "checkpoint".into(),
            message: "names no store. Fix: dir = \"checkpoints\", or a [checkpoint.kafka] table with bootstrap_servers".into(),
        }),
    }
}

impl JobPlan {
    /// Parses and checks a job file's text. Relative paths stay relative to
    /// the working directory.
    pub fn parse(text: &str) -> Result<Self, Error> {
        Self::parse_written(text, text)
    }

    /// Parses `text`, the job file as `written` with its variables expanded;
    /// errors quote the written line, so no expanded secret is shown.
    fn parse_written(text: &str, written: &str) -> Result<Self, Error> {
        let f: JobFile = toml::from_str(text).map_err(|e| Error::Config {
            field: "job file".into(),
            message: e.message().trim_end().to_string()
                + &e.span()
                    .map(|s| crate::redact::locate(text, written, s.start))
                    .unwrap_or_default(),
        })?;
        if !(1..=MAX_CHANNEL_CAPACITY).contains(&f.job.channel_capacity) {
            return Err(Error::Config {
                field: "job.channel_capacity".into(),
                message: format!(
                    "{} is outside 1 to {MAX_CHANNEL_CAPACITY}. Fix: remove it (default {}) or choose a value in that range",
                    f.job.channel_capacity,
                    default_capacity()
                ),
            });
        }
        let size = window_ms("window.size", &f.window.size, "size = \"10s\"")?;
        let spec = match &f.window.slide {
            None => Tumbling::of(size),
            Some(s) => {
                let slide = window_ms(
                    "window.slide",
                    s,
                    "remove it for tumbling windows, or slide = \"5s\"",
                )?;
                let per_event = size.as_millis().div_ceil(slide.as_millis());
                if per_event > MAX_WINDOWS_PER_EVENT {
                    return Err(Error::Config {
                        field: "window.slide".into(),
                        message: format!("{s} puts every event into {per_event} windows of {}; at most {MAX_WINDOWS_PER_EVENT} are kept per event. Fix: a longer slide, or a shorter size", f.window.size),
                    });
                }
                Sliding::of(size, slide)
            }
        };
        let checkpoint = match &f.checkpoint {
            None => None,
            Some(c) => Some((
                store_choice(c)?,
                duration(
                    "checkpoint.interval",
                    c.interval.as_deref().unwrap_or("10s"),
                )?,
            )),
        };
        let mut anomaly = AnomalySettings::default();
        if let Some(a) = &f.anomaly {
            anomaly.alpha = a.alpha.unwrap_or(anomaly.alpha);
            anomaly.threshold = a.threshold.unwrap_or(anomaly.threshold);
            anomaly.consecutive = a.consecutive.unwrap_or(anomaly.consecutive);
            anomaly.warmup = a.warmup.unwrap_or(anomaly.warmup);
            anomaly.relearn_after = a.relearn_after.unwrap_or(anomaly.relearn_after);
            if let Some(f) = &a.forget_after {
                anomaly.forget_after_ms = duration("anomaly.forget_after", f)?.as_millis() as i64;
            }
        }
        if anomaly.forget_after_ms <= size.as_millis() as i64 {
            return Err(Error::Config {
                field: "anomaly.forget_after".into(),
                message: format!(
                    "`anomaly.forget_after` must be longer than `window.size` ({}), or every key would be forgotten between its windows. Fix: forget_after = \"7d\"",
                    f.window.size
                ),
            });
        }
        anomaly
            .check()
            .map_err(|(field, message)| Error::Config { field, message })?;
        let mut source = section("source", &f.source)?;
        let keyed_by = crate::parallel::take_keyed_by(&mut source)?;
        let message_key_required = crate::parallel::source_rules(&mut source, keyed_by.is_some())?;
        crate::member::static_member(&f.job, &mut source);
        crate::member::client_id(&f.job, &mut source);
        let mut plan = JobPlan {
            anomaly,
            anomalies: f
                .anomalies
                .as_ref()
                .map(|t| section("anomalies", t))
                .transpose()?,
            current: f
                .current
                .as_ref()
                .map(|t| section("current", t))
                .transpose()?,
            source,
            sink: section("sink", &f.sink)?,
            window: WindowSettings {
                spec,
                allowed_lateness: duration("window.allowed_lateness", &f.window.allowed_lateness)?,
                max_future: duration("window.max_future", &f.window.max_future)?,
                aggregates: match &f.window.aggregates {
                    Some(names) => Aggregates::parse(names).map_err(|message| Error::Config {
                        field: "window.aggregates".into(),
                        message,
                    })?,
                    None => Aggregates::default(),
                },
                event: match &f.event {
                    Some(e) => EventShape::from_section(e)
                        .map_err(|(field, message)| Error::Config { field, message })?,
                    None => EventShape::default(),
                },
                message_key_required,
                max_name_bytes: max_name_bytes(f.event.as_ref())?,
            },
            out_of_orderness: duration("window.out_of_orderness", &f.window.out_of_orderness)?,
            idle_timeout: duration("window.idle_timeout", &f.window.idle_timeout)?,
            checkpoint,
            dead_letter: f
                .dead_letter
                .as_ref()
                .map(|t| section("dead_letter", t))
                .transpose()?,
            late: f.late.as_ref().map(|t| section("late", t)).transpose()?,
            http_listen: f.http.as_ref().map(|h| h.listen.clone()),
            http_unhealthy_after: crate::http::unhealthy_after(f.http.as_ref())?,
            workers: crate::parallel::workers(&f.job)?,
            keyed_by,
            max_state_entries: max_state_entries(&f.job)?,
            job: f.job,
        };
        crate::mapping::check_key_names(&plan)
            .map_err(|(field, message)| Error::Config { field, message })?;
        crate::parallel::check(&plan)?;
        crate::mapping::check_rewrites(&plan)
            .map_err(|(field, message)| Error::Config { field, message })?;
        crate::mapping::apply(&mut plan);
        Ok(plan)
    }

    /// Every sink section with its name: `sink`, then the optional
    /// `dead_letter`, `late`, `anomalies` and `current`.
    pub fn sink_sections(&self) -> Vec<(&'static str, &ConnectorSection)> {
        [
            ("sink", Some(&self.sink)),
            ("dead_letter", self.dead_letter.as_ref()),
            ("late", self.late.as_ref()),
            ("anomalies", self.anomalies.as_ref()),
            ("current", self.current.as_ref()),
        ]
        .into_iter()
        .filter_map(|(n, c)| c.map(|c| (n, c)))
        .collect()
    }

    /// Reads a job file, replaces `${NAME}` with environment variables
    /// (so secrets need not be written in it), and parses it.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            field: "--config".into(),
            message: format!("cannot read `{}`: {e}", path.display()),
        })?;
        Self::parse_written(&expand_env(&text, |k| std::env::var(k).ok())?, &text)
    }
}

pub use crate::expand::expand_env;
pub use crate::redact::redact;

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
