//! The metrics aggregation job: decode metric events, key by host and
//! metric, aggregate event-time windows, write one document per key and
//! window.

use std::time::Duration;

use flowline_connector_api::time::format_rfc3339_ms;
use flowline_connector_api::Record;
use flowline_runtime::{AggregateFunction, DataStream, SinkHandle, WindowResult, WindowSpec};
use serde::{Deserialize, Serialize};

use crate::aggregates::Aggregates;
use crate::anomaly::{AnomalyDoc, AnomalySettings, Assessed, CurrentDoc, Detector, FinalDetector};
use crate::event::{EventShape, KeyNames};
pub use crate::horizon::Horizon;
use crate::metric::long_name;
pub use crate::metric::{decode, decode_shaped, decode_until, Metric, Name, SeriesKey};
use crate::stats::{Moments, Stats};

/// count / sum / min / max / avg / p50 / p95 / p99 per key and window.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricStats;

impl AggregateFunction for MetricStats {
    type In = Metric;
    /// Inline in the window's hash table, not boxed as [`MetricMoments`]'s:
    /// every record reads its key's accumulator right after the key, and a
    /// box made that a second cache miss (1 worker / hand-written loop 0.76
    /// and 0.74 boxed, 0.82 and 0.81 inline, in interleaved runs), while
    /// the peak RSS with 100 000 keys moved within the runs' noise (142-143
    /// MB boxed, 143-146 MB inline). A box is stored as what it holds:
    /// checkpoints of either read the same.
    type Acc = Stats;
    type Out = Stats;
    fn create_accumulator(&self) -> Stats {
        Stats::default()
    }
    fn add(&self, acc: &mut Stats, m: &Metric) {
        acc.add(m.value)
    }
    fn check(&self, acc: Option<&Stats>, m: &Metric) -> Result<(), String> {
        check_sum(acc, m)
    }
    fn get_result(&self, acc: &Stats) -> Stats {
        acc.clone()
    }
    fn final_result(&self, acc: Stats) -> Stats {
        acc
    }
    /// The stats with their exact sum and a sketch keeping far values'
    /// buckets: a checkpoint of an older form (a plain running sum, a
    /// collapsing sketch) is refused by name, never misread.
    fn state_name(&self) -> Option<&'static str> {
        Some("stats/exact-sum/sketch-far")
    }
}

/// Refuses a value the window's exact sum cannot take.
fn check_sum(acc: Option<&Stats>, m: &Metric) -> Result<(), String> {
    match acc {
        Some(s) if !s.exact.can_add(m.value) => Err(format!(
            "value {:?} would overflow the window's sum ({:?}): an f64 cannot hold it, so the record is refused rather than written as an infinite or null sum",
            m.value, s.sum
        )),
        _ => Ok(()),
    }
}

/// [`MetricStats`] and the [`Moments`] (for `stddev`, `first`, `last`),
/// stored beside the stats under a name of its own: a checkpoint of the
/// other accumulator is refused by name, never misread.
///
/// Without `stddev` only first and last are kept: a value whose squared
/// deviation an f64 cannot hold (beyond about ±1e154) is then no reason to
/// refuse the record. The two kinds have names of their own, so a job that
/// starts asking for `stddev` never reads a mean that was not kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricMoments {
    /// Whether the job asks for `stddev` (the running mean and squared
    /// deviations are kept).
    pub stddev: bool,
}

impl AggregateFunction for MetricMoments {
    type In = Metric;
    /// Boxed: the window keeps one per key in a hash table, whose empty
    /// buckets and growth copies then cost a pointer each instead of a
    /// whole accumulator (100 000 keys: about 20 MB less at the peak). A
    /// box is stored as what it holds, so checkpoints keep their form.
    type Acc = Box<(Stats, Moments)>;
    type Out = Stats;
    fn create_accumulator(&self) -> Self::Acc {
        Default::default()
    }
    fn add(&self, acc: &mut Self::Acc, m: &Metric) {
        acc.0.add(m.value);
        if self.stddev {
            acc.1.add(m.value, m.ts);
        } else {
            acc.1.add_first_last(m.value, m.ts);
        }
    }
    fn check(&self, acc: Option<&Self::Acc>, m: &Metric) -> Result<(), String> {
        check_sum(acc.map(|a| &a.0), m)?;
        match acc {
            Some(a) if self.stddev && !a.1.can_add(m.value) => Err(format!(
                "value {:?} would overflow the window's standard deviation (mean {:?}): an f64 cannot hold its squared deviation, so the record is refused rather than written as an infinite stddev",
                m.value, a.1.mean
            )),
            _ => Ok(()),
        }
    }
    fn get_result(&self, acc: &Self::Acc) -> Stats {
        Stats {
            moments: Some(Box::new(acc.1.clone())),
            ..acc.0.clone()
        }
    }
    fn final_result(&self, acc: Self::Acc) -> Stats {
        let (stats, moments) = *acc;
        Stats {
            moments: Some(Box::new(moments)),
            ..stats
        }
    }
    fn state_name(&self) -> Option<&'static str> {
        Some(if self.stddev {
            "stats/exact-sum+moments/sketch-far"
        } else {
            "stats/exact-sum+first-last/sketch-far"
        })
    }
}

/// The window output document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowDoc {
    /// Host.
    pub host: Name,
    /// Metric.
    pub metric: Name,
    /// RFC 3339, inclusive.
    pub window_start: String,
    /// RFC 3339, exclusive.
    pub window_end: String,
    /// Samples.
    pub count: u64,
    /// Sum.
    pub sum: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
    /// Mean.
    pub avg: f64,
    /// Median: the nearest-rank value (rank ⌈0.5·count⌉ of the sorted
    /// samples) as the sketch estimates it, within 2 % relative error and
    /// always within [min, max].
    pub p50: f64,
    /// 95th percentile (sketch).
    pub p95: f64,
    /// 99th percentile (sketch).
    pub p99: f64,
}

impl WindowDoc {
    /// The document of one fired window.
    pub fn from_result(r: &WindowResult<SeriesKey, Stats>) -> Self {
        let s = &r.value;
        let q = |p| s.quantile(p);
        WindowDoc {
            host: r.key.0.clone(),
            metric: r.key.1.clone(),
            window_start: format_rfc3339_ms(r.window.start),
            window_end: format_rfc3339_ms(r.window.end),
            count: s.count,
            sum: s.sum,
            min: s.min,
            max: s.max,
            avg: s.avg(),
            p50: q(0.5),
            p95: q(0.95),
            p99: q(0.99),
        }
    }

    /// The deterministic document id: host, metric and window start, so
    /// that a replay overwrites the same document.
    pub fn id(&self) -> String {
        window_id(&self.host, &self.metric, &self.window_start)
    }

    /// As a record: key = id, payload = JSON, timestamp = window start.
    pub fn to_record(&self, start_ms: i64) -> Record {
        Record::new(serde_json::to_vec(self).expect("WindowDoc serializes"))
            .with_key(self.id())
            .with_timestamp(start_ms)
    }
}

pub use crate::ids::window_id;

/// Window settings of the job.
#[derive(Debug, Clone)]
pub struct WindowSettings {
    /// Tumbling or sliding windows.
    pub spec: WindowSpec,
    /// Allowed lateness.
    pub allowed_lateness: Duration,
    /// Events more than this ahead of the wall clock are bad records.
    pub max_future: Duration,
    /// Where each event's time and value are (`[event]`).
    pub event: EventShape,
    /// What each window document carries (`[window] aggregates`).
    pub aggregates: Aggregates,
    /// `[source] keyed_by` over Kafka: the topic is declared partitioned by
    /// the key, so a record without a message key (spread over partitions
    /// by the producer) is a bad record: counted, its key's state could be
    /// split between processes that each read one partition, unseen.
    pub message_key_required: bool,
    /// `[event] max_name_bytes`: an event whose group or metric name is
    /// longer is a bad record.
    pub max_name_bytes: usize,
}

impl WindowSettings {
    /// Tumbling or sliding `spec`, no lateness, `max_future` one hour.
    pub fn new(spec: WindowSpec) -> Self {
        Self {
            spec,
            allowed_lateness: Duration::ZERO,
            max_future: Duration::from_secs(3_600),
            event: EventShape::default(),
            aggregates: Aggregates::default(),
            message_key_required: false,
            max_name_bytes: crate::metric::DEFAULT_MAX_NAME_BYTES,
        }
    }
}

/// Why a record is refused under [`WindowSettings::message_key_required`].
pub const NO_MESSAGE_KEY: &str = "the record has no message key, and [source] keyed_by declares the topic partitioned by the job's key: a producer spreads such records over partitions, so counting it could split its key's windows between processes unseen. Fix: key every message by the keyed_by fields, or remove keyed_by (the exchange is exact for any partitioning) and replay these dead letters";

/// Where the job's outputs go: the window sink always; the anomaly and
/// current-status sinks when configured (the detector runs only then).
#[derive(Debug, Clone)]
pub struct Outputs {
    /// Window documents.
    pub windows: SinkHandle,
    /// Confirmed anomalies.
    pub anomalies: Option<SinkHandle>,
    /// Current status per key (upserts).
    pub current: Option<SinkHandle>,
    /// Where the newest results and anomalies are kept for the API.
    pub results: Option<std::sync::Arc<crate::results::Results>>,
}

/// Wires the metrics job: decode → event time → key (host, metric) →
/// windows → [`MetricStats`] → [`WindowDoc`] records → the window sink; and,
/// when an anomaly or current-status output is configured, the window
/// results → [`Detector`] keyed by the same key → those outputs.
pub fn metrics_pipeline(
    source: DataStream<Record>,
    w: WindowSettings,
    detector: AnomalySettings,
    out: Outputs,
) {
    let horizon = std::sync::Arc::new(Horizon::wall_clock(w.max_future));
    let keyless = move |r: &Record| w.message_key_required && r.key.is_none();
    let max_name = w.max_name_bytes;
    let decoded = if w.event.is_default() {
        // The generator's shape, on the fast path.
        source.try_map("decode", move |r: &Record| {
            if keyless(r) {
                return Err(NO_MESSAGE_KEY.to_string());
            }
            let m = decode_until(&r.payload, &horizon)?;
            match long_name(&m, max_name) {
                None => Ok(m),
                Some(reason) => Err(reason),
            }
        })
    } else {
        let shape = w.event.clone();
        source
            .try_flat_map("decode", move |r: &Record| {
                if keyless(r) {
                    return (Vec::new(), Some(NO_MESSAGE_KEY.to_string()));
                }
                let (mut metrics, mut bad) = decode_shaped(&shape, &r.payload, &horizon);
                // Series with a name too long are left out, the others kept
                // (the record is a dead letter once, as for a value unread).
                if let Some(reason) = metrics.iter().find_map(|m| long_name(m, max_name)) {
                    metrics.retain(|m| long_name(m, max_name).is_none());
                    bad = Some(match bad {
                        Some(b) => format!("{b}; {reason}"),
                        None => reason,
                    });
                }
                (metrics, bad)
            })
            // The state behind it depends on the shape: windows open at a
            // checkpoint hold events read by it.
            .note(&format!("event {}", w.event))
    };
    let windowed = decoded
        .with_timestamps(|m: &Metric| m.ts)
        .key_by_ref(|m: &Metric| &m.key)
        .window(w.spec)
        .allowed_lateness(w.allowed_lateness);
    let windows = if w.aggregates.needs_moments() {
        windowed.aggregate(MetricMoments {
            stddev: w.aggregates.needs_stddev(),
        })
    } else {
        windowed.aggregate(MetricStats)
    };
    let keys = w.event.key_names();
    let results = out.results.clone();
    if out.anomalies.is_none() && out.current.is_none() {
        let aggregates = w.aggregates.clone();
        windows.sink_with(out.windows, move |r| {
            if let Some(k) = &results {
                k.window(r);
            }
            aggregates.record(r, &keys)
        });
        return;
    }
    // Documents are rendered at the sink side, from the numbers.
    let current = out.current.map(|c| (c, current_record(keys.clone())));
    let anomalies = out
        .anomalies
        .map(|a| (a, anomaly_record(keys.clone(), results.clone())));
    // The runtime's own rule (`WindowedStream::allowed_lateness`).
    let lateness_ms = w.allowed_lateness.as_millis() as i64;
    if lateness_ms > 0 {
        // Judged when final (`FinalDetector`): window documents are
        // written as the windows fire, verdicts the lateness later.
        let aggregates = w.aggregates.clone();
        let judged = windows
            .side_sink(out.windows, move |r| {
                if let Some(k) = &results {
                    k.window(r);
                }
                aggregates.record(r, &keys)
            })
            .key_by_ref(|r: &WindowResult<SeriesKey, Stats>| &r.key)
            .process(FinalDetector {
                detector: Detector(detector),
                lateness_ms,
            });
        match (current, anomalies) {
            (Some((c, ce)), Some((a, ae))) => judged.side_sink_some(c, ce).sink_some(a, ae),
            (Some((c, ce)), None) => judged.sink_some(c, ce),
            (None, Some((a, ae))) => judged.sink_some(a, ae),
            (None, None) => unreachable!("returned above without a detector output"),
        }
        return;
    }
    let mut assessed = windows
        .key_by_ref(|r: &WindowResult<SeriesKey, Stats>| &r.key)
        .process(Detector(detector));
    if let Some((c, e)) = current {
        assessed = assessed.side_sink_some(c, e);
    }
    if let Some((a, e)) = anomalies {
        assessed = assessed.side_sink_some(a, e);
    }
    let aggregates = w.aggregates.clone();
    assessed.sink_with(out.windows, move |a: &Assessed| {
        if let Some(k) = &results {
            k.window(&a.window);
        }
        aggregates.record(&a.window, &keys)
    });
}

/// The current-status document of a judged window, rendered at the sink
/// side from the numbers.
fn current_record(keys: KeyNames) -> impl Fn(&Assessed) -> Option<Record> + Send + Sync {
    move |a: &Assessed| {
        a.verdict.as_ref().map(|v| {
            let d = CurrentDoc::of(&a.window, v);
            keyed_record(&d, d.id(), &keys)
        })
    }
}

/// The anomaly document of a window that confirmed an episode (kept for
/// the API too).
fn anomaly_record(
    keys: KeyNames,
    results: Option<std::sync::Arc<crate::results::Results>>,
) -> impl Fn(&Assessed) -> Option<Record> + Send + Sync {
    move |a: &Assessed| {
        a.verdict
            .as_ref()
            .and_then(|v| AnomalyDoc::of(&a.window, v))
            .map(|d| {
                if let Some(k) = &results {
                    k.anomaly(&d);
                }
                keyed_record(&d, d.id(), &keys)
            })
    }
}

/// A document with `host` and `metric` for the key, as a record keyed by
/// `id`, its key fields under the job's key names.
fn keyed_record(doc: &impl Serialize, id: String, keys: &KeyNames) -> Record {
    let payload = if keys.is_default() {
        serde_json::to_vec(doc)
    } else {
        let mut v = serde_json::to_value(doc).expect("documents serialize");
        if let Some(m) = v.as_object_mut() {
            keys.rename(m);
        }
        serde_json::to_vec(&v)
    }
    .expect("documents serialize");
    Record::new(payload).with_key(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checkpoints written while the accumulator was boxed restore into
    /// the inline one, and the other way: the same bytes, under the same
    /// state name.
    #[test]
    fn inline_stats_read_checkpoints_of_boxed_ones() {
        let mut s = Stats::default();
        for v in [1.5, -2.0, 1e300, 7.0] {
            s.add(v);
        }
        let boxed = postcard::to_stdvec(&Box::new(s.clone())).unwrap();
        assert_eq!(postcard::to_stdvec(&s).unwrap(), boxed);
        let read: <MetricStats as AggregateFunction>::Acc = postcard::from_bytes(&boxed).unwrap();
        assert_eq!(read, s);
        assert_eq!(MetricStats.state_name(), Some("stats/exact-sum/sketch-far"));
    }

    #[test]
    fn stats_track_min_max_and_percentiles() {
        let mut s = Stats::default();
        for v in 1..=100 {
            s.add(v as f64);
        }
        let r = WindowResult {
            key: ("h".into(), "m".into()),
            window: flowline_runtime::TimeWindow {
                start: 0,
                end: 10_000,
            },
            value: s,
            update: false,
        };
        let d = WindowDoc::from_result(&r);
        assert_eq!(
            (d.count, d.min, d.max, d.sum, d.avg),
            (100, 1.0, 100.0, 5050.0, 50.5)
        );
        assert!((d.p50 - 50.0).abs() <= 1.0, "{}", d.p50);
        assert!((d.p99 - 99.0).abs() <= 2.0, "{}", d.p99);
        assert_eq!(d.id(), "h|m|1970-01-01T00:00:00.000Z");
        assert_eq!(d.window_end, "1970-01-01T00:00:10.000Z");
    }

    #[test]
    fn a_result_moved_out_equals_the_one_copied() {
        let m = |value, ts| Metric {
            key: ("h".into(), "m".into()),
            value,
            ts,
        };
        let (stats, moments) = (MetricStats, MetricMoments { stddev: true });
        let (mut a, mut b) = (stats.create_accumulator(), moments.create_accumulator());
        for (i, v) in [3.5, -1.0, 1e300, 7.25].into_iter().enumerate() {
            stats.add(&mut a, &m(v, i as i64));
            moments.add(&mut b, &m(v, i as i64));
        }
        assert_eq!(stats.get_result(&a), stats.final_result(a.clone()));
        assert_eq!(moments.get_result(&b), moments.final_result(b.clone()));
        assert!(moments.final_result(b).moments.is_some());
    }

    fn doc_of(values: &[f64]) -> WindowDoc {
        let mut s = Stats::default();
        for v in values {
            s.add(*v);
        }
        WindowDoc::from_result(&WindowResult {
            key: ("h".into(), "m".into()),
            window: flowline_runtime::TimeWindow { start: 0, end: 1 },
            value: s,
            update: false,
        })
    }

    #[test]
    fn aggregates_keep_full_precision() {
        let d = doc_of(&[0.0004]);
        assert_eq!((d.sum, d.avg), (0.0004, 0.0004));
        let d = doc_of(&[1.0, 2.0, 0.0004]);
        assert_eq!(d.sum, 1.0 + 2.0 + 0.0004);
        assert_eq!(d.avg, (1.0 + 2.0 + 0.0004) / 3.0);
        // Shortest round-trip form in the JSON: what is written parses back
        // to the same f64.
        let back: WindowDoc = serde_json::from_slice(&d.to_record(0).payload).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn a_sum_that_would_overflow_is_refused_not_written_as_infinity() {
        let m = |v| Metric {
            key: ("h".into(), "m".into()),
            value: v,
            ts: 0,
        };
        let mut s = Box::<Stats>::default();
        assert!(MetricStats.check(None, &m(1e308)).is_ok());
        s.add(1e308);
        let err = MetricStats.check(Some(&s), &m(1e308)).unwrap_err();
        assert!(err.contains("overflow") && err.contains("1e308"), "{err}");
        assert!(MetricStats.check(Some(&s), &m(-1e308)).is_ok());
        assert!(MetricStats.check(Some(&s), &m(7.9e307)).is_ok());
    }

    #[test]
    fn percentiles_of_tiny_and_huge_values_keep_their_relative_error() {
        for v in [1e-12, 3e-300, 5e-324, 1.5e308] {
            let d = doc_of(&[v, v, v]);
            assert_eq!((d.p50, d.min, d.max), (v, v, v));
        }
        let d = doc_of(&[1e-12, 2e-12, 3e-12, 4e-12]);
        assert!((d.p50 - 2e-12).abs() <= 2e-12 * 0.02, "{}", d.p50);
    }

    #[test]
    fn percentiles_stay_within_min_and_max() {
        let d = doc_of(&[1.0; 10]);
        assert_eq!((d.p50, d.p95, d.p99), (1.0, 1.0, 1.0));
        let d = doc_of(&[100.0, 142.786]);
        for p in [d.p50, d.p95, d.p99] {
            assert!((100.0..=142.786).contains(&p), "{p}");
        }
        let d = doc_of(&[-5.5, -0.25, 3.0]);
        for p in [d.p50, d.p95, d.p99] {
            assert!((-5.5..=3.0).contains(&p), "{p}");
        }
    }
}
