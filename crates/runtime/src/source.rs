//! The source task: reads the source into a bounded channel, retries its
//! retryable errors with backoff, seeks on request (restore, assignment),
//! tells the source when a checkpoint completed, and reports its lag.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flowline_connector_api::{BoxSource, ConnectorError, PartitionId, SourceEvent, SourcePosition};
use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;

/// What the source task hands the driver, in the order it happened.
pub(crate) enum FromSource {
    /// What the source returned.
    Event(Result<SourceEvent, ConnectorError>),
    /// These partitions had nothing more to read (lag 0) after every record
    /// sent before this; the source reports lag.
    CaughtUp(Vec<PartitionId>),
}

impl FromSource {
    /// The event, or the caught-up partitions as the error.
    pub(crate) fn event(self) -> Result<Result<SourceEvent, ConnectorError>, Vec<PartitionId>> {
        match self {
            FromSource::Event(e) => Ok(e),
            FromSource::CaughtUp(p) => Err(p),
        }
    }
}

/// Reads the source into a bounded channel; seeks and commits on request.
pub(crate) async fn source_task(
    mut source: BoxSource,
    tx: mpsc::Sender<FromSource>,
    mut pos_rx: watch::Receiver<Option<SourcePosition>>,
    mut seek_rx: mpsc::Receiver<SourcePosition>,
    retry: crate::RetryPolicy,
    metrics: Arc<Metrics>,
) {
    let mut backoff = retry.backoff(0x2545_F491_4F6C_DD1D);
    let mut lag_at = Instant::now();
    let mut failures = 0;
    let mut ended = false;
    let task = metrics.ops().task("source");
    let send = |ev| {
        let tx = &tx;
        let task = &task;
        async move {
            let t0 = Instant::now();
            let r = tx.send(FromSource::Event(ev)).await;
            task.backpressured(t0.elapsed());
            r
        }
    };
    loop {
        if pos_rx.has_changed().unwrap_or(false) {
            let pos = pos_rx.borrow_and_update().clone();
            if let Some(pos) = pos {
                if let Err(e) = source.on_checkpoint_complete_dyn(&pos).await {
                    tracing::warn!(error = %e, "source could not record the completed checkpoint");
                }
            }
        }
        while let Ok(pos) = seek_rx.try_recv() {
            if let Err(e) = source.seek_dyn(&pos).await {
                let _ = tx.send(FromSource::Event(Err(e))).await;
                return;
            }
        }
        if ended {
            tokio::select! {
                biased;
                // `changed` marks the value seen: re-flag it so the top of
                // the loop hands it to the source.
                r = pos_rx.changed() => if r.is_err() { break } else { pos_rx.mark_changed(); continue },
                _ = tx.closed() => break,
            }
        }
        if lag_at.elapsed() >= Duration::from_secs(1) {
            lag_at = Instant::now();
            let lag = source.lag_dyn();
            let lag_empty = lag.is_empty();
            let caught: Vec<PartitionId> = lag
                .iter()
                .filter(|(_, n)| *n == 0)
                .map(|(p, _)| p.clone())
                .collect();
            metrics.set_lag(lag.into_iter().map(|(p, n)| (p.to_string(), n)).collect());
            // A source that reports lag says when partitions are caught up;
            // one that does not leaves idleness to the driver's clock.
            if !lag_empty && tx.send(FromSource::CaughtUp(caught)).await.is_err() {
                break;
            }
            task.connected(source.connected_dyn());
        }
        let ev = source.next_dyn().await;
        match ev {
            Err(e) if e.is_retryable() && failures + 1 < retry.max_attempts => {
                task.failing(&e.to_string());
                let wait = backoff.delay(failures);
                failures += 1;
                tracing::warn!(error = %e, attempt = failures, wait_ms = wait.as_millis() as u64, "source read failed, retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            Err(ConnectorError::BadRecords(rejected)) => {
                failures = 0;
                task.recovered();
                tracing::warn!(count = rejected.len(), "source rejected records");
                // Records the source could not read: the driver
                // dead-letters them with the source's reason.
                if send(Err(ConnectorError::BadRecords(rejected)))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            ev => {
                failures = 0;
                task.recovered();
                ended = matches!(ev, Ok(SourceEvent::End));
                if send(ev).await.is_err() {
                    break;
                }
            }
        }
    }
    if let Err(e) = source.close_dyn().await {
        tracing::warn!(error = %e, "source close failed");
    }
}
