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
            if !lag_empty && send(&tx, FromSource::CaughtUp(caught), &task, &mut source).await {
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
                let rejected = FromSource::Event(Err(ConnectorError::BadRecords(rejected)));
                if send(&tx, rejected, &task, &mut source).await {
                    break;
                }
            }
            ev => {
                failures = 0;
                task.recovered();
                ended = matches!(ev, Ok(SourceEvent::End));
                if send(&tx, FromSource::Event(ev), &task, &mut source).await {
                    break;
                }
            }
        }
    }
    if let Err(e) = source.close_dyn().await {
        tracing::warn!(error = %e, "source close failed");
    }
}

/// Sends to the driver, waiting while its channel is full (backpressure).
/// While it waits, the source's connection is still reported each second:
/// the driver may be held by the very outage that state describes (a sink
/// to the same broker retrying its checkpoint), and a source task that only
/// reported between reads left `/health` without "source connection" for
/// as long as the broker was away. Returns whether the driver is gone.
async fn send(
    tx: &mpsc::Sender<FromSource>,
    msg: FromSource,
    task: &crate::component::Component,
    // `&mut`: a shared reference to the source is not `Send`.
    source: &mut BoxSource,
) -> bool {
    let t0 = Instant::now();
    let sent = tx.send(msg);
    tokio::pin!(sent);
    let r = loop {
        tokio::select! {
            r = &mut sent => break r,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                task.connected(source.connected_dyn());
            }
        }
    };
    task.backpressured(t0.elapsed());
    r.is_err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowline_connector_api::Source;

    /// Never connected, nothing to read.
    struct Away;

    impl Source for Away {
        async fn next(&mut self) -> Result<SourceEvent, ConnectorError> {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(SourceEvent::Idle)
        }
        async fn seek(&mut self, _: &SourcePosition) -> Result<(), ConnectorError> {
            Ok(())
        }
        fn connected(&self) -> Option<bool> {
            Some(false)
        }
    }

    /// The driver takes nothing (held by a sink's checkpoint): the source
    /// task waits on a full channel from its first send, and still reports
    /// that the source has no connection.
    #[tokio::test]
    async fn a_source_held_by_backpressure_still_reports_its_connection() {
        let metrics = Arc::new(Metrics::new("away", &[]));
        let (tx, _rx) = mpsc::channel(1);
        let (_pos_tx, pos_rx) = watch::channel(None);
        let (_seek_tx, seek_rx) = mpsc::channel(1);
        let task = tokio::spawn(source_task(
            Box::new(Away),
            tx,
            pos_rx,
            seek_rx,
            crate::RetryPolicy::default(),
            metrics.clone(),
        ));
        let t0 = Instant::now();
        let why = loop {
            let why = metrics.ops().unhealthy(Duration::ZERO);
            if why.iter().any(|w| w.starts_with("source connection")) {
                break why;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "never said: {why:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(why[0].contains("no connection"), "{why:?}");
        task.abort();
    }
}
