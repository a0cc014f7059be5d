//! What a job is made of before it runs: its settings ([`JobConfig`], with
//! the sink [`RetryPolicy`] and the [`DeadLetterFormat`]) and the graph the
//! DataStream API assembles (`Graph`: the source, the operator chain as a
//! factory building one chain per partition, the sinks, the checkpoint
//! store).

use std::sync::Arc;
use std::time::Duration;

use flowline_checkpoint::CheckpointStore;
use flowline_connector_api::{Backoff, BoxSink, BoxSource, Record};

use crate::operator::BoxOp;

/// How dead letters are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadLetterFormat {
    /// The original key and payload, with the reason in headers
    /// (`flowline.error.kind`, `flowline.error.reason`, `flowline.error.stage`,
    /// `flowline.source.partition`, `flowline.source.offset`). For Kafka.
    Raw,
    /// One JSON object per record: `{"kind","reason","stage","partition",
    /// "offset","key","payload"}` (payload as a string, lossy UTF-8). For files.
    Envelope,
}

/// Retries of a sink's retryable errors: bounded attempts, exponential
/// backoff with full jitter.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First backoff.
    pub initial_backoff: Duration,
    /// Backoff cap.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// Its waits, with the jitter seeded by `seed` (the same waits on every
    /// run).
    pub(crate) fn backoff(&self, seed: u64) -> Backoff {
        Backoff::seeded(self.initial_backoff, self.max_backoff, seed)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Job settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobConfig {
    /// The job's name (logs, metrics, checkpoint files).
    pub name: String,
    /// Bounded out-of-orderness of event time, per partition.
    pub out_of_orderness: Duration,
    /// A partition with no record for this long is left out of the job's
    /// watermark.
    pub idle_timeout: Duration,
    /// Checkpoint every this often; `None`: only on shutdown and revoke, and
    /// only when a store is set.
    pub checkpoint_interval: Option<Duration>,
    /// Capacity, in batches, of every channel between stages.
    pub channel_capacity: usize,
    /// Retries of retryable sink errors.
    pub retry: RetryPolicy,
    /// Tasks running the keyed operators behind the exchange (at least 1;
    /// default: the number of cores), and the most tasks a run of records
    /// is split across before it when the operators there keep no state.
    /// Without an exchange: the most source partitions running at once.
    pub workers: usize,
    /// The source is partitioned by the job's key or a prefix of it: no
    /// exchange, keyed state lives with the source partition its keys
    /// arrive on, and a record of a key another partition holds is a dead
    /// letter (`KeySplit`'s reason). Default `false`: the hash exchange, correct for any
    /// input. Without the exchange, the source partitions run on up to
    /// `workers` tasks at once, each partition on one task at a time.
    pub partitioned_by_key: bool,
    /// The most window entries the job holds at once, one per key and
    /// open window, each with its accumulator; and, counted apart, the
    /// most keyed process states (`None`, the default: no bound). A record
    /// that would open window entries past it is a dead letter with the
    /// reason, counted nowhere, rather than memory growing until the
    /// process is killed (and again in the replay after it). A key new to
    /// a full process gets no state
    /// ([`KeyedProcessFunction::without_state`](crate::KeyedProcessFunction::without_state)).
    pub max_state_entries: Option<u64>,
}

impl Default for JobConfig {
    fn default() -> Self {
        Self {
            name: "flowline".into(),
            out_of_orderness: Duration::ZERO,
            idle_timeout: Duration::from_secs(30),
            checkpoint_interval: None,
            channel_capacity: 8,
            retry: RetryPolicy::default(),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            partitioned_by_key: false,
            max_state_entries: None,
        }
    }
}

impl JobConfig {
    /// Default settings with a name.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
    /// Sets the bounded out-of-orderness.
    pub fn out_of_orderness(mut self, d: Duration) -> Self {
        self.out_of_orderness = d;
        self
    }
    /// Sets the idle timeout.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }
    /// Sets the checkpoint interval.
    pub fn checkpoint_interval(mut self, d: Option<Duration>) -> Self {
        self.checkpoint_interval = d;
        self
    }
    /// Sets the channel capacity (at least 1).
    pub fn channel_capacity(mut self, n: usize) -> Self {
        self.channel_capacity = n.max(1);
        self
    }
    /// Sets the sink retry policy.
    pub fn retry(mut self, r: RetryPolicy) -> Self {
        self.retry = r;
        self
    }
    /// Sets the number of workers behind the exchange (at least 1). One
    /// worker runs on the driver's task: the job's operators then take one
    /// core; with more, each worker is a task of its own, and a chain
    /// before the exchange that keeps no state (the decode) is split across
    /// as many tasks.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }
    /// Declares the source partitioned by the job's key (or a prefix of
    /// it): no exchange; see [`JobConfig::partitioned_by_key`].
    pub fn partitioned_by_key(mut self, yes: bool) -> Self {
        self.partitioned_by_key = yes;
        self
    }
    /// Bounds the job's keyed state; see [`JobConfig::max_state_entries`].
    pub fn max_state_entries(mut self, limit: Option<u64>) -> Self {
        self.max_state_entries = limit;
        self
    }
}

pub(crate) type ChainFactory = Arc<dyn Fn() -> BoxOp<Record> + Send + Sync>;

/// The head of a chain, its input type erased (see `operator::Build`).
pub(crate) type Head = Box<dyn std::any::Any + Send>;

/// Makes the key groups of one worker (behind an exchange).
pub(crate) type GroupsFactory = Arc<dyn Fn() -> Box<dyn crate::exchange::Groups> + Send + Sync>;

pub(crate) struct Graph {
    pub(crate) config: JobConfig,
    pub(crate) source: Option<(String, BoxSource)>,
    pub(crate) sinks: Vec<(String, BoxSink)>,
    pub(crate) dead_letter: Option<(String, BoxSink, DeadLetterFormat)>,
    pub(crate) late: Option<(String, BoxSink, DeadLetterFormat)>,
    pub(crate) pipeline: Option<(ChainFactory, String)>,
    pub(crate) store: Option<Box<dyn CheckpointStore>>,
    pub(crate) errors: Vec<String>,
    /// `with_timestamps` is in the pipeline: its times, not the source
    /// records', drive the watermark.
    pub(crate) assigns_timestamps: bool,
    /// The pipeline's stages, for the operations view.
    pub(crate) stages: Vec<crate::observe::StageDef>,
    /// With an exchange: the keyed part of the pipeline, run per key group
    /// on the workers (`pipeline` is then the part before the exchange).
    pub(crate) keyed: Option<GroupsFactory>,
    /// With an exchange: the part before it keeps no state, so a run of
    /// records may be split across tasks.
    pub(crate) stateless_pre: bool,
}

impl Graph {
    /// A job with nothing in it yet.
    pub(crate) fn new(config: JobConfig) -> Self {
        Graph {
            config,
            source: None,
            sinks: Vec::new(),
            dead_letter: None,
            late: None,
            pipeline: None,
            store: None,
            errors: Vec::new(),
            assigns_timestamps: false,
            stages: Vec::new(),
            keyed: None,
            stateless_pre: false,
        }
    }
}
