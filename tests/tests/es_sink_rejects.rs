//! A batch with mapping conflicts lands everything else and hands back the
//! bad documents with the server's error type and reason.

use flowline_connector_api::{ConnectorError, Record, Rejected, Sink};
use flowline_integration_tests::{count, es_sink, unique, write_all, TestServices};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_conflicts_are_rejected_with_reasons_and_the_rest_lands() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let index = unique("flowline-es-rejects");
    let mut sink = es_sink(
        json!({"url": s.elasticsearch_url, "index": index, "replicas": 0,
        "time_field": "window_start", "template": {"fields": {"count": "long"}}}),
    )
    .await
    .unwrap();
    let mut batch = Vec::new();
    for i in 0..20 {
        // The config maps `count` as long and `window_start` (time_field) as date.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_over_512_bytes_and_pretty_printed_documents_land() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let index = unique("flowline-es-longid");
    let mut sink = es_sink(json!({"url": s.elasticsearch_url, "index": index, "replicas": 0}))
        .await
        .unwrap();
    let host = "h".repeat(600);
    let mut batch: Vec<Record> = (0..3)
        .map(|i| {
            Record::new(json!({"host": host, "n": i}).to_string())
                .with_key(format!("{host}|cpu|{i}"))
        })
        .collect();
    batch.push(Record::new("{\n  \"host\": \"pretty\",\n  \"n\": 9\n}").with_key("pretty"));
    let rejected = write_all(&mut sink, batch.clone()).await;
    assert!(
        rejected.is_empty(),
        "{:?}",
        rejected.first().map(|r| &r.reason)
    );
    assert_eq!(count(&es, &index).await, 4);
    // A replay overwrites the same documents: the ids are deterministic.
    assert!(write_all(&mut sink, batch).await.is_empty());
    assert_eq!(count(&es, &index).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_refused_whole_is_split_until_the_one_bad_document_is_found() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let index = unique("flowline-es-split");
    // The test bed's server takes bodies up to 8 MB (http.max_content_length);
    // one 9 MB document makes it refuse the whole request with 413.
    let mut sink = es_sink(
        json!({"url": s.elasticsearch_url, "index": index, "replicas": 0,
        "max_bytes": 64 * 1024 * 1024, "max_actions": 1000}),
    )
    .await
    .unwrap();
    let mut batch: Vec<Record> = (0..20)
        .map(|i| Record::new(json!({"n": i}).to_string()).with_key(format!("d{i}")))
        .collect();
    batch.insert(
        13,
        Record::new(json!({"n": "big", "blob": "x".repeat(9 << 20)}).to_string()).with_key("big"),
    );
    let rejected = write_all(&mut sink, batch).await;
    assert_eq!(count(&es, &index).await, 20, "every other document landed");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].record.key.as_deref(), Some(&b"big"[..]));
    assert!(
        rejected[0].reason.contains("HTTP 413"),
        "{}",
        rejected[0].reason
    );
}
