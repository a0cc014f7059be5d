//! The file connectors pass the connector testkit's suites.

use flowline_connector_api::{BoxSink, BoxSource};
use flowline_connector_testkit::sink::{sink_suite, Guarantee};
use flowline_connector_testkit::source::{bounded_source_suite, Expected};
use flowline_file::{FileSink, FileSinkConfig, FileSource, FileSourceConfig};

#[tokio::test]
async fn file_source_passes_the_source_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.ndjson");
    let lines: Vec<String> = (0..57).map(|i| format!("{{\"n\":{i}}}")).collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    let expected = Expected::new().partition(
        &path.display().to_string(),
        lines.iter().map(|l| l.clone().into_bytes()).collect(),
    );
    bounded_source_suite(
        || {
            Ok(Box::new(FileSource::open(FileSourceConfig {
                batch_size: 10,
                ..FileSourceConfig::new(&path)
            })?) as BoxSource)
        },
        &expected,
    )
    .await;
}

#[tokio::test]
async fn file_sink_passes_the_sink_suite_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ndjson");
    let read = || async {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(|l| l.as_bytes().to_vec())
            .collect()
    };
    sink_suite(
        || {
            Ok(Box::new(FileSink::new(
                FileSinkConfig::new(&path).mode(flowline_file::FileMode::Overwrite),
            )?) as BoxSink)
        },
        read,
        Guarantee::ExactlyOnce,
    )
    .await;
}
