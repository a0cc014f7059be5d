//! The job's counters and gauges (rendered by `prometheus.rs`).

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
    /// Checkpoints skipped because a sink or the checkpoint store could not
    /// complete them (its server away longer than its retries or timeout).
    pub checkpoints_skipped: AtomicU64,
    /// Duration of the last checkpoint, ms.
    pub checkpoint_last_ms: AtomicU64,
    /// Size of the last checkpoint, bytes.
    pub checkpoint_last_bytes: AtomicU64,
    /// The job's watermark (min over non-idle partitions), ms; `i64::MIN` before any.
    pub watermark: AtomicI64,
    /// Partitions the job holds.
    pub partitions: AtomicU64,
    /// Keys whose source partition is remembered to catch a key split
    /// (`partitioned_by_key`), at the last sweep of that table.
    pub key_owners: AtomicU64,
    /// Window entries the job holds (one per key and open window; the
    /// bound `JobConfig::max_state_entries` counts them), as of the
    /// driver's last turn.
    pub state_entries: AtomicU64,
    /// Keyed process states the job holds (bounded by the same
    /// `max_state_entries`), as of the driver's last turn.
    pub process_states: AtomicU64,
    /// When late events with no late sink were last logged.
    pub(crate) late_warning: crate::sinks::LateWarning,
    /// Set once the job has restored its state and its source is reading;
    /// cleared when it ends (`/ready`).
    pub running: std::sync::atomic::AtomicBool,
    /// Set when the job's run has ended (finished, stopped or failed).
    pub ended: std::sync::atomic::AtomicBool,
    status: Mutex<JobStatus>,
    history: Mutex<std::collections::VecDeque<CheckpointRecord>>,
    lag: Mutex<Vec<(String, u64)>>,
    pub(crate) hist: crate::prometheus::Histograms,
    /// Each sink's own counters (`Sink::counters`), by sink name.
    sink_counters: Mutex<Readers>,
    /// Set while the job restores its state from a checkpoint.
    pub restoring: std::sync::atomic::AtomicBool,
    ops: crate::observe::Ops,
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
            key_owners: AtomicU64::new(0),
            state_entries: AtomicU64::new(0),
            process_states: AtomicU64::new(0),
            late_warning: Default::default(),
            running: std::sync::atomic::AtomicBool::new(false),
            ended: std::sync::atomic::AtomicBool::new(false),
            status: Mutex::new(JobStatus::default()),
            history: Mutex::new(std::collections::VecDeque::with_capacity(
                CHECKPOINT_HISTORY,
            )),
            lag: Mutex::new(Vec::new()),
            hist: crate::prometheus::Histograms::default(),
            sink_counters: Mutex::new(Readers::default()),
            restoring: std::sync::atomic::AtomicBool::new(false),
            ops: crate::observe::Ops::default(),
        }
    }

    /// The source's name.
    pub fn source_name(&self) -> &str {
        &self.source
    }

    /// The operations view: stages, task times, failures, dead letters, taps.
    pub fn ops(&self) -> &crate::observe::Ops {
        &self.ops
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

    pub(crate) fn observe_flush(&self, sink: &str, d: std::time::Duration) {
        self.hist
            .flush
            .get_or_create(&vec![("sink".to_string(), sink.to_string())])
            .observe(d.as_secs_f64());
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
        self.hist.checkpoint.observe(r.duration_ms as f64 / 1000.0);
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
}

/// Whether a connector's counter name can follow `flowline_sink_`: a
/// Prometheus name (`[a-z0-9_]`, snake case) that is not one of the
/// runtime's own sink families. Others are left out of `/metrics` rather
/// than breaking the whole exposition for the scraper.
pub(crate) fn own_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !matches!(
            name.strip_suffix("_total").unwrap_or(name),
            "retries" | "call_retries" | "flush_duration_seconds"
        )
}
