//! The sink suite.

use std::future::Future;

use flowline_connector_api::{BoxSink, ConnectorError, ErrorKind, Record};

/// What a sink promises across a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Guarantee {
    /// Nothing missing; records written after the last checkpoint may appear
    /// twice.
    AtLeastOnce,
    /// Nothing missing and nothing doubled (idempotent ids, or truncation to
    /// the checkpointed state).
    ExactlyOnce,
}

fn batch(from: usize, to: usize) -> Vec<Record> {
    (from..to)
        .map(|i| Record::new(format!("{{\"n\":{i}}}")).with_key(format!("k{i}")))
        .collect()
}

/// Checks a sink, given how to build it and how to read back what the
/// external system holds (payloads, any order):
/// - everything written is readable once `flush` returns;
/// - after a failure (the sink dropped without closing, past its last
///   checkpoint), a new sink restored from that checkpoint and given the
///   replayed records leaves nothing missing, and with
///   [`Guarantee::ExactlyOnce`] nothing doubled.
pub async fn sink_suite<M, R, Fut>(make: M, read_back: R, guarantee: Guarantee)
where
    M: Fn() -> Result<BoxSink, ConnectorError>,
    R: Fn() -> Fut,
    Fut: Future<Output = Vec<Vec<u8>>>,
{
    let sorted = |mut v: Vec<Vec<u8>>| {
        v.sort();
        v
    };
    let payloads = |b: &[Record]| b.iter().map(|r| r.payload.clone()).collect::<Vec<_>>();
    let mut sink = make().expect("build the sink");
    sink.restore_dyn(None)
        .await
        .expect("restore on a fresh start");
    let first = batch(0, 100);
    sink.write_dyn(first.clone()).await.expect("write");
    sink.flush_dyn().await.expect("flush");
    assert_eq!(
        sorted(read_back().await),
        sorted(payloads(&first)),
        "rule: after flush, everything written is readable"
    );
    let state = sink.snapshot_dyn().await.expect("snapshot after flush");
    // Past the checkpoint: written (maybe flushed), then a crash.
    sink.write_dyn(batch(100, 150)).await.expect("write");
    let _ = sink.flush_dyn().await;
    drop(sink);
    // Restart from the checkpoint; the runtime replays records 100..150.
    let mut sink = make().expect("build the sink again");
    sink.restore_dyn(state)
        .await
        .expect("restore from the checkpoint");
    sink.write_dyn(batch(100, 150))
        .await
        .expect("write the replay");
    sink.close_dyn().await.expect("close");
    let got = sorted(read_back().await);
    let want = sorted(payloads(&batch(0, 150)));
    for w in &want {
        assert!(
            got.contains(w),
            "rule: nothing missing after a restart: {}",
            String::from_utf8_lossy(w)
        );
    }
    if guarantee == Guarantee::ExactlyOnce {
        assert_eq!(
            got, want,
            "rule: exactly once, nothing doubled after a restart"
        );
    }
}

/// Checks that a provoked failure is classified as the author says.
pub fn assert_classified(err: &ConnectorError, kind: ErrorKind) {
    assert_eq!(err.kind(), kind, "rule: `{err}` is classified {kind:?}");
}
