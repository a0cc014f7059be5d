//! The in-memory test doubles pass the suites they help test others with.

use flowline_connector_api::{BoxSink, BoxSource, Record};
use flowline_connector_testkit::sink::{sink_suite, Guarantee};
use flowline_connector_testkit::source::{bounded_source_suite, Expected};
use flowline_connector_testkit::{MemorySink, MemorySource};

#[tokio::test]
async fn memory_source_passes_the_source_suite() {
    let parts: Vec<Vec<Record>> = (0..3)
        .map(|p| (0..20).map(|i| Record::new(format!("{p}-{i}"))).collect())
        .collect();
    let mut expected = Expected::new();
    for (p, recs) in parts.iter().enumerate() {
        expected = expected.partition(
            &format!("mem-{p}"),
            recs.iter().map(|r| r.payload.clone()).collect(),
        );
    }
    bounded_source_suite(
        || Ok(Box::new(MemorySource::new(parts.clone()).with_batch_size(3)) as BoxSource),
        &expected,
    )
    .await;
}

#[tokio::test]
async fn memory_sink_passes_the_sink_suite_exactly_once() {
    let shared = MemorySink::new();
    let read = || async { shared.records().into_iter().map(|r| r.payload).collect() };
    sink_suite(
        || Ok(Box::new(shared.clone()) as BoxSink),
        read,
        Guarantee::ExactlyOnce,
    )
    .await;
}
