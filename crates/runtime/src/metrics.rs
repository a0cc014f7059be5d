//! The job's counters, rendered in Prometheus' text format with stable names.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde::Serialize;

/// One source partition, as `/api/status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PartitionStatus {
    /// The partition.
    pub id: String,
    /// Its watermark, ms (`null` before any event time).
    pub watermark: Option<i64>,
    /// The offset of the next record to read.
    pub next_offset: u64,
    /// Whether it is left out of the job watermark for being idle.
    pub idle: bool,
    /// Assigned to this process or read here. `false`: state restored at
    /// start for a partition another process may own.
    pub active: bool,
}

/// What the job is doing, for `/api/status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct JobStatus {
    /// The job's name.
    pub job: String,
    /// The operator chain, source to sink.
    pub graph: String,
    /// Partitions owned, by id.
    pub partitions: Vec<PartitionStatus>,
    /// The last completed checkpoint: id and time (ms).
    pub last_checkpoint: Option<(u64, i64)>,
}

/// One completed checkpoint, as `/api/v1/checkpoints` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CheckpointRecord {
    /// Its id.
    pub id: u64,
    /// When it was taken, ms since the epoch.
    pub created_ms: i64,
    /// From the start of the snapshot to durable in the store, ms.
    pub duration_ms: u64,
    /// Bytes stored.
    pub size_bytes: u64,
}

/// Checkpoints kept for [`Metrics::checkpoint_history`].
pub const CHECKPOINT_HISTORY: usize = 50;

/// Counters and gauges of one job. Cheap to update (relaxed atomics).
#[derive(Debug)]
pub struct Metrics {
    source: String,
    /// Records read from the source.
    pub records_in: AtomicU64,
    sinks: Vec<(String, AtomicU64)>,
    /// Records that went down the bad-record path.
    pub bad_records: AtomicU64,
    /// Events beyond the allowed lateness.
    pub late_records: AtomicU64,
    /// Records written to the dead-letter sink.
    pub dead_lettered: AtomicU64,
    /// Retries of retryable sink errors.
    pub sink_retries: AtomicU64,
    /// Dead letters the dead-letter sink refused even cut down.
    pub dead_letters_lost: AtomicU64,
    /// Completed checkpoints.
    pub checkpoints: AtomicU64,
    /// Checkpoints skipped because a sink could not complete them (its
    /// server away longer than its retries).
    pub checkpoints_skipped: AtomicU64,
    /// Duration of the last checkpoint, ms.
    pub checkpoint_last_ms: AtomicU64,
    /// Size of the last checkpoint, bytes.
    pub checkpoint_last_bytes: AtomicU64,
    /// The job's watermark (min over non-idle partitions), ms; `i64::MIN` before any.
    pub watermark: AtomicI64,
    /// Partitions the job holds.
    pub partitions: AtomicU64,
    /// Set once the job has restored its state and its source is reading;
    /// cleared when it ends (`/ready`).
    pub running: std::sync::atomic::AtomicBool,
    /// Set when the job's run has ended (finished, stopped or failed).
    pub ended: std::sync::atomic::AtomicBool,
    status: Mutex<JobStatus>,
    history: Mutex<std::collections::VecDeque<CheckpointRecord>>,
    lag: Mutex<Vec<(String, u64)>>,
    flush_ms: Mutex<Vec<(String, u64)>>,
    /// Each sink's own counters (`Sink::counters`), by sink name.
    sink_counters: Mutex<Readers>,
}

/// The sinks' counter readers, by sink name.
#[derive(Default)]
struct Readers(std::collections::BTreeMap<String, flowline_connector_api::CounterReader>);

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Metrics {
    pub(crate) fn new(source: &str, sinks: &[String]) -> Self {
        Self {
            source: source.to_string(),
            records_in: AtomicU64::new(0),
            sinks: sinks
                .iter()
                .map(|s| (s.clone(), AtomicU64::new(0)))
                .collect(),
            bad_records: AtomicU64::new(0),
            late_records: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            sink_retries: AtomicU64::new(0),
            dead_letters_lost: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            checkpoints_skipped: AtomicU64::new(0),
            checkpoint_last_ms: AtomicU64::new(0),
            checkpoint_last_bytes: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            partitions: AtomicU64::new(0),
            running: std::sync::atomic::AtomicBool::new(false),
            ended: std::sync::atomic::AtomicBool::new(false),
            status: Mutex::new(JobStatus::default()),
            history: Mutex::new(std::collections::VecDeque::with_capacity(
                CHECKPOINT_HISTORY,
            )),
            lag: Mutex::new(Vec::new()),
            flush_ms: Mutex::new(Vec::new()),
            sink_counters: Mutex::new(Readers::default()),
        }
    }

    pub(crate) fn set_sink_counters(&self, sink: &str, r: flowline_connector_api::CounterReader) {
        self.sink_counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .insert(sink.to_string(), r);
    }

    /// Each sink's own counters, as `(sink, counter)`.
    pub fn sink_counters(&self) -> Vec<(String, flowline_connector_api::Counter)> {
        self.sink_counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .iter()
            .flat_map(|(s, read)| read().into_iter().map(move |c| (s.clone(), c)))
            .collect()
    }

    /// Records not yet read per source partition, as the source reports it.
    pub fn consumer_lag(&self) -> Vec<(String, u64)> {
        self.lag.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_lag(&self, lag: Vec<(String, u64)>) {
        *self.lag.lock().unwrap_or_else(|e| e.into_inner()) = lag;
    }

    /// Duration of each sink's last flush (for Elasticsearch: the bulk
    /// requests still in flight), ms.
    pub fn flush_durations(&self) -> Vec<(String, u64)> {
        self.flush_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_flush_ms(&self, sink: &str, ms: u64) {
        let mut v = self.flush_ms.lock().unwrap_or_else(|e| e.into_inner());
        match v.iter_mut().find(|(n, _)| n == sink) {
            Some(e) => e.1 = ms,
            None => v.push((sink.to_string(), ms)),
        }
    }

    /// The job's status, as last updated (every tick and checkpoint).
    pub fn status(&self) -> JobStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The last [`CHECKPOINT_HISTORY`] completed checkpoints, oldest first.
    pub fn checkpoint_history(&self) -> Vec<CheckpointRecord> {
        let h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        h.iter().cloned().collect()
    }

    pub(crate) fn record_checkpoint(&self, r: CheckpointRecord) {
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if h.len() == CHECKPOINT_HISTORY {
            h.pop_front();
        }
        h.push_back(r);
    }

    pub(crate) fn set_status(&self, f: impl FnOnce(&mut JobStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn sink_out(&self, idx: usize, n: u64) {
        if let Some((_, c)) = self.sinks.get(idx) {
            c.fetch_add(n, Relaxed);
        }
    }

    /// Records written per sink name.
    pub fn records_out(&self) -> Vec<(String, u64)> {
        self.sinks
            .iter()
            .map(|(n, c)| (n.clone(), c.load(Relaxed)))
            .collect()
    }

    /// Prometheus text exposition.
    pub fn render_prometheus(&self) -> String {
        let mut s = String::new();
        let own = self.sink_counters();
        let c = |s: &mut String, name: &str, help: &str, kind: &str| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        c(
            &mut s,
            "flowline_records_in_total",
            "Records read, per component.",
            "counter",
        );
        let _ = writeln!(
            s,
            "flowline_records_in_total{{component=\"{}\"}} {}",
            self.source,
            self.records_in.load(Relaxed)
        );
        c(
            &mut s,
            "flowline_records_out_total",
            "Records written, per component.",
            "counter",
        );
        for (n, v) in self.records_out() {
            let _ = writeln!(s, "flowline_records_out_total{{component=\"{n}\"}} {v}");
        }
        for (name, help, v) in [
            (
                "flowline_bad_records_total",
                "Records sent down the bad-record path.",
                &self.bad_records,
            ),
            (
                "flowline_late_records_total",
                "Events beyond the allowed lateness.",
                &self.late_records,
            ),
            (
                "flowline_dead_lettered_total",
                "Records written to the dead-letter sink.",
                &self.dead_lettered,
            ),
            (
                "flowline_sink_retries_total",
                "Retries of retryable sink errors.",
                &self.sink_retries,
            ),
            (
                "flowline_dead_letters_lost_total",
                "Dead letters the dead-letter sink refused even cut down to 16 KiB.",
                &self.dead_letters_lost,
            ),
            (
                "flowline_checkpoints_total",
                "Completed checkpoints.",
                &self.checkpoints,
            ),
            (
                "flowline_checkpoints_skipped_total",
                "Checkpoints skipped because a sink could not complete them in time.",
                &self.checkpoints_skipped,
            ),
        ] {
            c(&mut s, name, help, "counter");
            let _ = writeln!(s, "{name} {}", v.load(Relaxed));
            // A sink's own retries belong to the same family, by sink.
            if name == "flowline_sink_retries_total" {
                for (sink, k) in &own {
                    if k.name == "retries_total" {
                        let _ = writeln!(s, "{name}{{sink=\"{sink}\"}} {}", k.value);
                    }
                }
            }
        }
        let mut families: std::collections::BTreeMap<
            &str,
            Vec<(&str, &flowline_connector_api::Counter)>,
        > = Default::default();
        for (sink, k) in &own {
            if k.name != "retries_total" && own_name_ok(k.name) {
                families.entry(k.name).or_default().push((sink, k));
            }
        }
        for (name, samples) in families {
            let full = format!("flowline_sink_{name}");
            c(&mut s, &full, samples[0].1.help, "counter");
            for (sink, k) in samples {
                let _ = writeln!(s, "{full}{{sink=\"{sink}\"}} {}", k.value);
            }
        }
        c(
            &mut s,
            "flowline_checkpoint_duration_ms",
            "Duration of the last checkpoint.",
            "gauge",
        );
        let _ = writeln!(
            s,
            "flowline_checkpoint_duration_ms {}",
            self.checkpoint_last_ms.load(Relaxed)
        );
        c(
            &mut s,
            "flowline_checkpoint_size_bytes",
            "Size of the last checkpoint.",
            "gauge",
        );
        let _ = writeln!(
            s,
            "flowline_checkpoint_size_bytes {}",
            self.checkpoint_last_bytes.load(Relaxed)
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let wm = self.watermark.load(Relaxed);
        // No watermark before the first event: the series is absent rather
        // than -9223372036854775808.
        if wm != i64::MIN {
            c(
                &mut s,
                "flowline_watermark_ms",
                "The job watermark: min over non-idle partitions.",
                "gauge",
            );
            let _ = writeln!(s, "flowline_watermark_ms {wm}");
            c(
                &mut s,
                "flowline_watermark_lag_ms",
                "Wall-clock time minus the job watermark.",
                "gauge",
            );
            let _ = writeln!(s, "flowline_watermark_lag_ms {}", now.saturating_sub(wm));
        }
        if let Some((_, at)) = self.status().last_checkpoint {
            c(
                &mut s,
                "flowline_checkpoint_age_seconds",
                "Time since the last completed checkpoint.",
                "gauge",
            );
            let _ = writeln!(
                s,
                "flowline_checkpoint_age_seconds {:.3}",
                now.saturating_sub(at) as f64 / 1000.0
            );
        }
        c(
            &mut s,
            "flowline_consumer_lag",
            "Records not yet read, per source partition.",
            "gauge",
        );
        for (p, v) in self.consumer_lag() {
            let _ = writeln!(
                s,
                "flowline_consumer_lag{{component=\"{}\",partition=\"{p}\"}} {v}",
                self.source
            );
        }
        c(
            &mut s,
            "flowline_sink_flush_duration_ms",
            "Duration of each sink's last flush (Elasticsearch: bulk requests in flight).",
            "gauge",
        );
        for (n, v) in self.flush_durations() {
            let _ = writeln!(
                s,
                "flowline_sink_flush_duration_ms{{component=\"{n}\"}} {v}"
            );
        }
        s
    }
}

/// Whether a connector's counter name can follow `flowline_sink_`: a
/// Prometheus name (`[a-z0-9_]`, snake case) that is not one of the
/// runtime's own sink families. Others are left out of `/metrics` rather
/// than breaking the whole exposition for the scraper.
fn own_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !matches!(name, "retries_total" | "flush_duration_ms")
}

#[cfg(test)]
mod tests {
    use super::*;
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
            text.contains("# TYPE flowline_sink_documents_total counter\n"),
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
        assert_eq!(
            text.matches("# TYPE flowline_sink_documents_total").count(),
            1
        );
        assert_eq!(
            text.matches("# TYPE flowline_sink_retries_total").count(),
            1
        );
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
        m.watermark.store(1_767_225_600_000, Relaxed);
        let text = m.render_prometheus();
        assert!(
            text.contains("flowline_watermark_ms 1767225600000\n"),
            "{text}"
        );
        assert!(text.contains("flowline_watermark_lag_ms "), "{text}");
    }
}
