//! A batch with mapping conflicts lands everything else and hands back the
//! bad documents with the server's error type and reason.

use flowline_connector_api::{ConnectorError, Record, Rejected, Sink};
use flowline_integration_tests::{count, es_sink, unique, TestServices};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_conflicts_are_rejected_with_reasons_and_the_rest_lands() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let index = unique("flowline-es-rejects");
    let mut sink = es_sink(json!({"url": s.elasticsearch_url, "index": index, "replicas": 0}))
        .await
        .unwrap();
    let mut batch = Vec::new();
    for i in 0..20 {
        // The template maps `count` as long and `window_start` as date.
        let doc = match i % 5 {
            1 => json!({"host": "h", "window_start": "2026-01-01T00:00:00Z", "count": "many"}),
            3 => json!({"host": "h", "window_start": "not a date", "count": i}),
            _ => json!({"host": "h", "window_start": "2026-01-01T00:00:00Z", "count": i}),
        };
        batch.push(Record::new(doc.to_string()).with_key(format!("d{i}")));
    }
    batch.push(Record::new("{not json").with_key("broken"));
    let mut rejected: Vec<Rejected> = Vec::new();
    for r in [sink.write(batch).await, sink.flush().await] {
        match r {
            Ok(()) => {}
            Err(ConnectorError::BadRecords(v)) => rejected.extend(v),
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(count(&es, &index).await, 12, "the valid documents landed");
    let mut keys: Vec<String> = rejected
        .iter()
        .map(|r| String::from_utf8(r.record.key.clone().unwrap()).unwrap())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["broken", "d1", "d11", "d13", "d16", "d18", "d3", "d6", "d8"]
    );
    for r in &rejected {
        assert!(
            r.reason.contains("mapper_parsing_exception")
                || r.reason.contains("document_parsing_exception")
                || r.reason.contains("parse"),
            "reason names the server's error: {}",
            r.reason
        );
        assert!(r.reason.starts_with("400 "), "{}", r.reason);
    }
}
