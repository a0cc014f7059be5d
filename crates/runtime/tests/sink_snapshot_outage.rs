//! A sink that cannot complete a checkpoint because its server is away
//! longer than its retries (a Kafka dead-letter topic during a broker
//! outage) skips that checkpoint: the job lives on, the next checkpoint
//! completes, and `flowline_checkpoints_skipped_total` counts it. A
//! permanent snapshot error still ends the job.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use flowline_connector_api::{
    ConnectorError, PartitionId, Record, Sink, Source, SourceEvent, SourcePosition,
};
use flowline_runtime::{JobConfig, LocalDirStore, RetryPolicy, StreamEnvironment};

mod common;

/// Batches from the test, until it drops the sender.
struct Fed(tokio::sync::mpsc::Receiver<Vec<Record>>, u64);

impl Source for Fed {
    async fn next(&mut self) -> Result<SourceEvent, ConnectorError> {
        match self.0.recv().await {
            Some(batch) => {
                let p = PartitionId::new("p");
                let out = batch
                    .into_iter()
                    .map(|r| {
                        self.1 += 1;
                        r.at(p.clone(), self.1 - 1)
                    })
                    .collect();
                Ok(SourceEvent::Records(out))
            }
            None => Ok(SourceEvent::End),
        }
    }
    async fn seek(&mut self, _: &SourcePosition) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// Snapshots fail (retryably) while `away` > 0, each call using one up;
/// permanently when `broken`.
#[derive(Clone, Default)]
struct Away {
    away: Arc<AtomicUsize>,
    broken: Arc<AtomicBool>,
}

impl Sink for Away {
    async fn write(&mut self, _: Vec<Record>) -> Result<(), ConnectorError> {
        Ok(())
    }
    async fn flush(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }
    async fn snapshot(&mut self) -> Result<Option<Vec<u8>>, ConnectorError> {
        if self.broken.load(SeqCst) {
            return Err(ConnectorError::permanent("the topic was deleted"));
        }
        if self
            .away
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(ConnectorError::retryable("BrokerTransportFailure"));
        }
        Ok(Some(b"state".to_vec()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_a_sink_cannot_complete_is_skipped_and_the_job_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut retry = RetryPolicy::default();
    retry.max_attempts = 3;
    retry.initial_backoff = Duration::from_millis(1);
    retry.max_backoff = Duration::from_millis(2);
    let env = StreamEnvironment::new(
        JobConfig::named("outage")
            .checkpoint_interval(None)
            .retry(retry),
    );
    env.checkpoint_store(LocalDirStore::new(dir.path()).unwrap());
    let sink = Away::default();
    let out = env.add_sink("dead_letter_topic", Box::new(sink.clone()));
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    env.source("fed", Box::new(Fed(rx, 0))).sink(out);
    let handle = env.start().unwrap();
    tx.send(vec![Record::new("a"), Record::new("b")])
        .await
        .unwrap();

    // The checkpoint every fresh job takes at its start, complete before
    // the server goes away.
    let m = handle.metrics();
    common::wait_until("the start's checkpoint", &handle, || {
        m.checkpoints.load(SeqCst) == 1
    })
    .await;
    // Away for longer than the three attempts: skipped, the job lives.
    sink.away.store(5, SeqCst);
    assert_eq!(handle.checkpoint().await.unwrap(), None);
    assert!(!handle.is_finished());
    assert_eq!(handle.metrics().checkpoints_skipped.load(SeqCst), 1);
    // Away for fewer than the attempts: retried, completed.
    sink.away.store(2, SeqCst);
    tx.send(vec![Record::new("c")]).await.unwrap();
    let id = handle.checkpoint().await.unwrap();
    assert!(id.is_some(), "the checkpoint after the outage completes");
    assert_eq!(handle.metrics().checkpoints_skipped.load(SeqCst), 1);
    assert!(handle
        .metrics()
        .render_prometheus()
        .contains("flowline_checkpoints_skipped_total 1"));

    // A permanent error is not ridden out.
    sink.broken.store(true, SeqCst);
    assert!(handle.checkpoint().await.is_err() || handle.is_finished());
    let err = handle.join().await.unwrap_err().to_string();
    assert!(err.contains("the topic was deleted"), "{err}");
}
