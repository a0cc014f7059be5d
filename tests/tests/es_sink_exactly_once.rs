//! 100k documents land exactly once; writing them all again (a replay after
//! a restart) leaves the count unchanged.

use flowline_connector_api::{Record, Sink};
use flowline_integration_tests::{count, es_sink, unique, TestServices};
use serde_json::json;

fn docs(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let d = json!({"host": format!("host-{}", i % 50), "metric": "cpu_util", "window_start": format!("2026-01-01T{:02}:{:02}:00.000Z", (i / 60) % 24, i % 60), "count": i, "avg": i as f64 / 3.0});
            Record::new(d.to_string()).with_key(format!("doc-{i}"))
        })
        .collect()
}

async fn write_all(index: &str, url: &str, records: Vec<Record>) -> u64 {
    let mut sink = es_sink(json!({"url": url, "index": index, "replicas": 0, "max_actions": 2000}))
        .await
        .unwrap();
    for chunk in records.chunks(5_000) {
        sink.write(chunk.to_vec()).await.unwrap();
    }
    sink.flush().await.unwrap();
    sink.stats()
        .documents
        .load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_documents_land_once_and_a_replay_changes_nothing() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let index = unique("flowline-es-once");
    let n = 100_000;
    assert_eq!(
        write_all(&index, &s.elasticsearch_url, docs(n)).await,
        n as u64
    );
    assert_eq!(count(&es, &index).await, n as u64);
    assert_eq!(
        write_all(&index, &s.elasticsearch_url, docs(n)).await,
        n as u64
    );
    assert_eq!(
        count(&es, &index).await,
        n as u64,
        "the replay doubled documents"
    );
}
