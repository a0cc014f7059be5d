//! `/metrics`: the job's counters, gauges and histograms in the OpenMetrics
//! text format, encoded by `prometheus-client`, named by Prometheus'
//! conventions (base units: `_seconds`, `_bytes`; counters end in
//! `_total`, which the encoder appends).
//!
//! The counters live in atomics the record path updates (`metrics.rs`,
//! `observe.rs`); a scrape reads them into an owned [`Snapshot`] that a
//! throwaway registry encodes. The two histograms (checkpoint and sink
//! flush durations) are `prometheus-client` histograms, observed where the
//! work ends.

use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::metrics::{own_name_ok, Metrics};

type Labels = Vec<(String, String)>;
/// A sink counter family: its help and samples, by name.
type OwnFamilies<'a> = std::collections::BTreeMap<&'a str, (&'a str, Vec<(Labels, u64)>)>;

fn duration_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The histograms of one job.
#[derive(Debug, Clone)]
pub(crate) struct Histograms {
    pub(crate) checkpoint: Histogram,
    pub(crate) flush: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Default for Histograms {
    fn default() -> Self {
        Self {
            checkpoint: duration_histogram(),
            flush: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
        }
    }
}

#[derive(Debug)]
enum Samples {
    Counter(Vec<(Labels, u64)>),
    Seconds(Vec<(Labels, f64)>),
    Gauge(Vec<(Labels, f64)>),
    Count(Vec<(Labels, i64)>),
}

/// Every family's samples, read at one scrape.
#[derive(Debug)]
struct Snapshot {
    families: Vec<(String, String, Samples)>,
    hist: Histograms,
}

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Writes one family's samples, each made by `metric`; a single sample
/// without labels is written without `{}`.
fn write<T: Copy, M: EncodeMetric>(
    mut m: MetricEncoder<'_>,
    samples: &[(Labels, T)],
    metric: impl Fn(T) -> M,
) -> Result<(), std::fmt::Error> {
    if let [(labels, x)] = samples {
        if labels.is_empty() {
            return metric(*x).encode(m);
        }
    }
    for (labels, x) in samples {
        metric(*x).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for (name, help, samples) in &self.families {
            let kind = match samples {
                Samples::Counter(_) | Samples::Seconds(_) => MetricType::Counter,
                Samples::Gauge(_) | Samples::Count(_) => MetricType::Gauge,
            };
            let m = enc.encode_descriptor(name, help, None, kind)?;
            match samples {
                Samples::Counter(v) => write(m, v, ConstCounter::new)?,
                Samples::Seconds(v) => write(m, v, ConstCounter::new)?,
                Samples::Gauge(v) => write(m, v, ConstGauge::new)?,
                Samples::Count(v) => write(m, v, ConstGauge::new)?,
            }
        }
        let h = &self.hist;
        h.checkpoint.encode(enc.encode_descriptor(
            "flowline_checkpoint_duration_seconds",
            "Time from the start of a checkpoint to durable in the store.",
            None,
            Histogram::TYPE,
        )?)?;
        h.flush.encode(enc.encode_descriptor(
            "flowline_sink_flush_duration_seconds",
            "Duration of each sink flush (Elasticsearch: the bulk requests in flight), retries included.",
            None,
            Histogram::TYPE,
        )?)?;
        Ok(())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Metrics {
    fn snapshot(&self) -> Snapshot {
        let mut f: Vec<(String, String, Samples)> = Vec::new();
        let mut add = |name: &str, help: &str, s: Samples| f.push((name.into(), help.into(), s));
        let one = |v: &std::sync::atomic::AtomicU64| {
            Samples::Counter(vec![(Vec::new(), v.load(Relaxed))])
        };
        add(
            "flowline_records_in",
            "Records read, per component.",
            Samples::Counter(vec![(
                l(&[("component", self.source_name())]),
                self.records_in.load(Relaxed),
            )]),
        );
        add(
            "flowline_records_out",
            "Records written, per component.",
            Samples::Counter(
                self.records_out()
                    .into_iter()
                    .map(|(n, v)| (l(&[("component", &n)]), v))
                    .collect(),
            ),
        );
        add(
            "flowline_bad_records",
            "Records sent down the bad-record path.",
            one(&self.bad_records),
        );
        add(
            "flowline_late_records",
            "Events beyond the allowed lateness.",
            one(&self.late_records),
        );
        add(
            "flowline_dead_lettered",
            "Records written to the dead-letter sink.",
            one(&self.dead_lettered),
        );
        add(
            "flowline_dead_letters_lost",
            "Dead letters the dead-letter sink refused even cut down to 16 KiB.",
            one(&self.dead_letters_lost),
        );
        add(
            "flowline_checkpoints",
            "Completed checkpoints.",
            one(&self.checkpoints),
        );
        add(
            "flowline_checkpoints_skipped",
            "Checkpoints skipped because a sink or the checkpoint store could not complete them in time.",
            one(&self.checkpoints_skipped),
        );
        // The runtime's retries of failed sink calls; each sink's own
        // retries (inside a call) by sink.
        add(
            "flowline_sink_call_retries",
            "Sink calls the runtime retried after a retryable error.",
            one(&self.sink_retries),
        );
        let own = self.sink_counters();
        let retries = own
            .iter()
            .filter(|(_, k)| k.name == "retries_total")
            .map(|(sink, k)| (l(&[("sink", sink)]), k.value))
            .collect();
        add(
            "flowline_sink_retries",
            "Retries a sink made of its own requests, by sink.",
            Samples::Counter(retries),
        );
        let mut families: OwnFamilies<'_> = Default::default();
        for (sink, k) in &own {
            if k.name != "retries_total" && own_name_ok(k.name) {
                families
                    .entry(k.name)
                    .or_insert((k.help, Vec::new()))
                    .1
                    .push((l(&[("sink", sink)]), k.value));
            }
        }
        for (name, (help, samples)) in families {
            let base = name.strip_suffix("_total").unwrap_or(name);
            add(
                &format!("flowline_sink_{base}"),
                help,
                Samples::Counter(samples),
            );
        }
        let ops = self.ops();
        add(
            "flowline_operator_records_in",
            "Elements each stage of the operator chain took in.",
            Samples::Counter(
                ops.stages()
                    .into_iter()
                    .enumerate()
                    .map(|(i, s)| {
                        (
                            l(&[
                                ("index", &i.to_string()),
                                ("operator", &s.name),
                                ("kind", s.kind),
                            ]),
                            s.records_in,
                        )
                    })
                    .collect(),
            ),
        );
        let tasks = ops.tasks();
        add(
            "flowline_task_busy_seconds",
            "Time each task spent working (the chain: processing; a sink: writing and flushing).",
            Samples::Seconds(
                tasks
                    .iter()
                    .filter_map(|t| Some((l(&[("task", &t.name)]), t.busy_seconds?)))
                    .collect(),
            ),
        );
        add(
            "flowline_task_backpressured_seconds",
            "Time each task waited for the next one to take a batch.",
            Samples::Seconds(
                tasks
                    .iter()
                    .filter_map(|t| Some((l(&[("task", &t.name)]), t.backpressured_seconds?)))
                    .collect(),
            ),
        );
        add(
            "flowline_checkpoint_size_bytes",
            "Size of the last checkpoint.",
            Samples::Count(vec![(
                Vec::new(),
                self.checkpoint_last_bytes.load(Relaxed) as i64,
            )]),
        );
        add(
            "flowline_key_owners",
            "Keys whose source partition is remembered to catch a key split (keyed_by), at the last sweep.",
            Samples::Gauge(vec![(Vec::new(), self.key_owners.load(Relaxed) as f64)]),
        );
        add(
            "flowline_state_entries",
            "Window entries the job holds (one per key and open window); records that would open more than [job] max_state_entries are dead letters.",
            Samples::Gauge(vec![(Vec::new(), self.state_entries.load(Relaxed) as f64)]),
        );
        add(
            "flowline_process_states",
            "Keyed process states the job holds (the anomaly detector's series); a key new past [job] max_state_entries gets none.",
            Samples::Gauge(vec![(Vec::new(), self.process_states.load(Relaxed) as f64)]),
        );
        let now = now_ms();
        let wm = self.watermark.load(Relaxed);
        // No watermark before the first event: the series is absent rather
        // than -9223372036854775808.
        if wm != i64::MIN {
            add(
                "flowline_watermark_timestamp_seconds",
                "The job watermark (min over non-idle partitions), seconds since the epoch.",
                Samples::Gauge(vec![(Vec::new(), wm as f64 / 1000.0)]),
            );
            add(
                "flowline_watermark_lag_seconds",
                "Wall-clock time minus the job watermark.",
                Samples::Gauge(vec![(Vec::new(), now.saturating_sub(wm) as f64 / 1000.0)]),
            );
        }
        if let Some((_, at)) = self.status().last_checkpoint {
            add(
                "flowline_checkpoint_age_seconds",
                "Time since the last completed checkpoint.",
                Samples::Gauge(vec![(Vec::new(), now.saturating_sub(at) as f64 / 1000.0)]),
            );
        }
        add(
            "flowline_consumer_lag",
            "Records not yet read, per source partition.",
            Samples::Count(
                self.consumer_lag()
                    .into_iter()
                    .map(|(p, v)| {
                        (
                            l(&[("component", self.source_name()), ("partition", &p)]),
                            v as i64,
                        )
                    })
                    .collect(),
            ),
        );
        Snapshot {
            families: f,
            hist: self.hist.clone(),
        }
    }

    /// The OpenMetrics text exposition (`application/openmetrics-text`),
    /// ending in `# EOF`.
    pub fn render_prometheus(&self) -> String {
        let mut reg = Registry::default();
        reg.register_collector(Box::new(self.snapshot()));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &reg).is_err() {
            out = "# the metrics could not be encoded\n# EOF\n".into();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::CheckpointRecord;
    use crate::promlint::lint;
    use crate::CHECKPOINT_HISTORY;
    use flowline_connector_api::Counter;
    use std::sync::Arc;

    #[test]
    fn sink_counters_are_exported_by_sink_and_bad_names_are_left_out() {
        let m = Metrics::new("kafka", &["windows".to_string(), "dead".to_string()]);
        m.set_sink_counters(
            "windows",
            Arc::new(|| {
                vec![
                    Counter::new("retries_total", "Retries.", 3),
                    Counter::new("documents_total", "Documents written.", 42),
                    Counter::new("Bad Name", "Not a Prometheus name.", 1),
                ]
            }),
        );
        m.set_sink_counters(
            "dead",
            Arc::new(|| vec![Counter::new("documents_total", "Documents written.", 5)]),
        );
        let text = m.render_prometheus();
        assert!(
            text.contains("flowline_sink_retries_total{sink=\"windows\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE flowline_sink_documents counter\n"),
            "{text}"
        );
        assert!(
            text.contains("flowline_sink_documents_total{sink=\"windows\"} 42\n"),
            "{text}"
        );
        assert!(
            text.contains("flowline_sink_documents_total{sink=\"dead\"} 5\n"),
            "{text}"
        );
        assert_eq!(text.matches("# TYPE flowline_sink_documents ").count(), 1);
        assert_eq!(text.matches("# TYPE flowline_sink_retries ").count(), 1);
        assert!(!text.contains("Bad Name"), "{text}");
    }

    #[test]
    fn the_checkpoint_history_keeps_the_last_fifty() {
        let m = Metrics::new("src", &[]);
        for id in 1..=60 {
            m.record_checkpoint(CheckpointRecord {
                id,
                created_ms: id as i64,
                duration_ms: 1,
                size_bytes: 10,
            });
        }
        let h = m.checkpoint_history();
        assert_eq!(h.len(), CHECKPOINT_HISTORY);
        assert_eq!((h[0].id, h[49].id), (11, 60));
    }

    #[test]
    fn no_watermark_is_exported_before_the_first_event() {
        let m = Metrics::new("src", &["out".to_string()]);
        let text = m.render_prometheus();
        assert!(!text.contains("flowline_watermark"), "{text}");
        assert!(!text.contains("-9223372036854775808"), "{text}");
        m.watermark.store(1_767_225_600_500, Relaxed);
        let text = m.render_prometheus();
        assert!(
            text.contains("flowline_watermark_timestamp_seconds 1767225600.5\n"),
            "{text}"
        );
        assert!(text.contains("flowline_watermark_lag_seconds "), "{text}");
    }

    #[test]
    fn the_exposition_keeps_prometheus_naming_rules() {
        let m = Metrics::new("kafka", &["windows".to_string()]);
        m.set_sink_counters(
            "windows",
            Arc::new(|| {
                vec![
                    Counter::new("retries_total", "Retries.", 3),
                    Counter::new("bulk_requests_total", "Bulk requests.", 4),
                ]
            }),
        );
        m.ops().set_stages(Vec::new(), vec!["windows".into()]);
        m.ops()
            .task("chain")
            .busy(std::time::Duration::from_millis(1500));
        m.ops().task("windows");
        m.watermark.store(1_767_225_600_000, Relaxed);
        m.record_checkpoint(CheckpointRecord {
            id: 1,
            created_ms: 1,
            duration_ms: 20,
            size_bytes: 10,
        });
        m.observe_flush("windows", std::time::Duration::from_millis(7));
        m.set_lag(vec![("m/0".into(), 5)]);
        let text = m.render_prometheus();
        assert_eq!(lint(&text), Vec::<String>::new(), "{text}");
        for want in [
            "flowline_checkpoint_duration_seconds_count 1\n",
            "flowline_checkpoint_duration_seconds_bucket{le=\"0.032\"} 1\n",
            "flowline_sink_flush_duration_seconds_count{sink=\"windows\"} 1\n",
            "flowline_task_busy_seconds_total{task=\"chain\"} 1.5\n",
            "flowline_sink_bulk_requests_total{sink=\"windows\"} 4\n",
            "flowline_consumer_lag{component=\"kafka\",partition=\"m/0\"} 5\n",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
        assert!(!text.contains("_ms"), "{text}");
    }

    #[test]
    fn the_lint_finds_what_promtool_would() {
        let bad = "# HELP x_duration_ms A.\n# TYPE x_duration_ms gauge\nx_duration_ms 1\n# TYPE y counter\ny 2\n# HELP z_total Z.\n# TYPE z_total gauge\nz_total NaN\n";
        let p = lint(bad);
        for want in [
            "no `# EOF`",
            "abbreviated unit `ms`",
            "y: no HELP",
            "y: a counter sample not named y_total",
            "z_total: a gauge ending in _total",
            "not a number",
        ] {
            assert!(
                p.iter()
                    .any(|x| x.contains(want.trim_start_matches("no `# EOF`")))
                    || want == "no `# EOF`",
                "{want}: {p:?}"
            );
        }
        assert!(
            p.iter().any(|x| x.contains("does not end in `# EOF`")),
            "{p:?}"
        );
    }
}
