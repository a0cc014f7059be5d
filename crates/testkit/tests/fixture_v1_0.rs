//! A connector written against API 1.0 that implements only the required
//! methods (`Source::next` / `seek`, `Sink::write` / `flush`). It must keep
//! compiling and passing the conformance suites as later minor versions add
//! hooks with default bodies (docs/api-evolution.md).

use std::sync::{Arc, Mutex};

use flowline_connector_api::{
    BoxSink, BoxSource, ConnectorError, PartitionId, Record, Sink, Source, SourceEvent,
    SourcePosition,
};
use flowline_connector_testkit::sink::{sink_suite, Guarantee};
use flowline_connector_testkit::source::{bounded_source_suite, Expected};

/// Two partitions of 25 numbers.
struct Numbers {
    next: [u64; 2],
}

impl Source for Numbers {
    async fn next(&mut self) -> Result<SourceEvent, ConnectorError> {
        for p in 0..2 {
            if self.next[p] < 25 {
                let o = self.next[p];
                self.next[p] += 1;
                let r = Record::new(format!("{p}:{o}")).at(PartitionId::new(format!("n{p}")), o);
                return Ok(SourceEvent::Records(vec![r]));
            }
        }
        Ok(SourceEvent::End)
    }

    async fn seek(&mut self, position: &SourcePosition) -> Result<(), ConnectorError> {
        for p in 0..2 {
            if let Some(o) = position.get(&PartitionId::new(format!("n{p}"))) {
                self.next[p] = o;
            }
        }
        Ok(())
    }
}

/// Keeps records by key: replays overwrite (idempotent), so exactly once
/// without snapshot / restore.
#[derive(Clone, Default)]
struct ByKey(Arc<Mutex<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>>);

impl Sink for ByKey {
    async fn write(&mut self, batch: Vec<Record>) -> Result<(), ConnectorError> {
        let mut m = self.0.lock().unwrap();
        for r in batch {
            let key = r
                .key
                .clone()
                .ok_or_else(|| ConnectorError::bad_record(r.clone(), "no key"))?;
            m.insert(key, r.payload);
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_connector_with_only_the_required_methods_passes_the_suites() {
    let expected = Expected::new()
        .partition(
            "n0",
            (0..25).map(|o| format!("0:{o}").into_bytes()).collect(),
        )
        .partition(
            "n1",
            (0..25).map(|o| format!("1:{o}").into_bytes()).collect(),
        );
    bounded_source_suite(
        || Ok(Box::new(Numbers { next: [0, 0] }) as BoxSource),
        &expected,
    )
    .await;

    let store = ByKey::default();
    let read = || async { store.0.lock().unwrap().values().cloned().collect() };
    sink_suite(
        || Ok(Box::new(store.clone()) as BoxSink),
        read,
        Guarantee::ExactlyOnce,
    )
    .await;
}
