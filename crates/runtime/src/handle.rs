//! A running job as its caller sees it: [`JobHandle`] (metrics, stop,
//! checkpoint on request, join), [`Stopper`], [`JobSummary`], and `start`,
//! which spawns the driver.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::driver::Driver;
use crate::job::Graph;
use crate::metrics::Metrics;
use crate::RuntimeError;

/// Why a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The bounded input ended; every window fired.
    InputEnded,
    /// [`JobHandle::stop`] (or SIGTERM / Ctrl-C in the CLI).
    Stopped,
}

/// What a finished job did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobSummary {
    /// Why it ended.
    pub reason: EndReason,
    /// Records read.
    pub records_in: u64,
    /// Records written, per sink.
    pub records_out: Vec<(String, u64)>,
    /// Records down the bad-record path.
    pub bad_records: u64,
    /// Events beyond the allowed lateness.
    pub late_records: u64,
    /// Checkpoints completed.
    pub checkpoints: u64,
    /// The checkpoint the job restored from, if any.
    pub restored_from: Option<u64>,
}

/// A running job.
#[derive(Debug)]
pub struct JobHandle {
    metrics: Arc<Metrics>,
    stop: Stopper,
    checkpoints: mpsc::Sender<CheckpointRequest>,
    join: JoinHandle<Result<JobSummary, RuntimeError>>,
}

/// Stops a job from anywhere (a signal handler, another task).
#[derive(Debug, Clone)]
pub struct Stopper(Arc<watch::Sender<bool>>);

impl Stopper {
    /// See [`JobHandle::stop`].
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

impl JobHandle {
    /// The job's live metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Asks the job to stop: it checkpoints (when it has a store), closes its
    /// sinks and ends with [`EndReason::Stopped`].
    pub fn stop(&self) {
        self.stop.stop()
    }

    /// A cloneable handle that stops the job.
    pub fn stopper(&self) -> Stopper {
        self.stop.clone()
    }

    /// Takes a checkpoint now, between two batches, and waits until it is
    /// durable: its id, or `None` when the job has no checkpoint store.
    /// Interval checkpoints go on as configured; tests and operators use
    /// this to checkpoint at a point they choose.
    pub async fn checkpoint(&self) -> Result<Option<u64>, RuntimeError> {
        let (tx, rx) = oneshot::channel();
        let ended =
            || RuntimeError::Internal("the job ended before the requested checkpoint".into());
        self.checkpoints.send(tx).await.map_err(|_| ended())?;
        rx.await.map_err(|_| ended())
    }

    /// Whether the job has ended.
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Waits for the job to end.
    pub async fn join(self) -> Result<JobSummary, RuntimeError> {
        match self.join.await {
            Ok(r) => r,
            Err(e) => Err(RuntimeError::Internal(format!("job task: {e}"))),
        }
    }
}

pub(crate) fn start(mut g: Graph) -> Result<JobHandle, RuntimeError> {
    if let Some(e) = g.errors.first() {
        return Err(RuntimeError::InvalidJob(e.clone()));
    }
    let (source_name, source) = g
        .source
        .take()
        .ok_or_else(|| RuntimeError::InvalidJob("the job has no source".into()))?;
    let (factory, graph) = g.pipeline.take().ok_or_else(|| {
        RuntimeError::InvalidJob(
            "the job's stream never reaches a sink: end it with .sink(..)".into(),
        )
    })?;
    let sink_names: Vec<String> = g.sinks.iter().map(|(n, _)| n.clone()).collect();
    let metrics = Arc::new(Metrics::new(&source_name, &sink_names));
    metrics
        .ops()
        .set_stages(std::mem::take(&mut g.stages), sink_names.clone());
    let (stop, stop_rx) = watch::channel(false);
    let (checkpoints, requests) = mpsc::channel(4);
    let m = metrics.clone();
    let join = tokio::spawn(async move {
        let driver = Driver::new(g, source_name, factory, graph, m).await?;
        driver.run(source, stop_rx, requests).await
    });
    Ok(JobHandle {
        metrics,
        stop: Stopper(Arc::new(stop)),
        checkpoints,
        join,
    })
}

/// A checkpoint asked for through [`JobHandle::checkpoint`]: the reply is its
/// id, or `None` without a store.
pub(crate) type CheckpointRequest = oneshot::Sender<Option<u64>>;
