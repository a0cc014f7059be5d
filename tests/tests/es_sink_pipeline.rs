//! An ingest pipeline that refuses one document with a 5xx (a `fail`
//! processor answers 500 `fail_processor_exception`, as if the server were
//! at fault): that document is dead-lettered with the pipeline's reason and
//! the others land. Before, the sink sent it again for ever, and the job
//! stood still on one document.
//!
//! Runs against OpenSearch, whose test node loads the ingest processors
//! (`scripts/services.d`); the Elasticsearch test node has none (Elastic
//! does not publish its `ingest-common` module to Maven Central), so there
//! the test only checks that the server says so and stops.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use elasticsearch::http::Method;
use flowline_connector_api::Record;
use flowline_integration_tests::{
    count, es_call, es_sink, unique, write_all, SearchServer, TestServices,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_an_ingest_pipeline_fails_with_500_is_dead_lettered_not_retried() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let name = unique("flowline-poison");
    // A document with a `poison` field that is not a number fails the
    // pipeline; the others pass it untouched.
    let (status, answer) = es_call(
        &es,
        Method::Put,
        &format!("/_ingest/pipeline/{name}"),
        Some(json!({"processors": [{"convert": {"field": "poison", "type": "integer", "ignore_missing": true,
            "on_failure": [{"fail": {"message": "poisoned document"}}]}}]})),
    )
    .await;
    if s.search_server == SearchServer::Elasticsearch {
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer.to_string().contains("No processor type exists"),
            "{answer}"
        );
        eprintln!("the Elasticsearch test node has no ingest processors: checked on OpenSearch");
        return;
    }
    assert_eq!(status, 200, "{answer}");
    let index = unique("flowline-es-pipeline");
    let (status, answer) = es_call(
        &es,
        Method::Put,
        &format!("/{index}"),
        Some(json!({"settings": {"index.default_pipeline": name, "number_of_replicas": 0}})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let mut sink = es_sink(json!({"url": s.elasticsearch_url, "index": index, "replicas": 0, "initial_backoff": "10ms", "max_backoff": "50ms"})).await.unwrap();
    let batch: Vec<Record> = (0..20)
        .map(|i| {
            let doc = if i == 7 {
                json!({"host": "h", "count": i, "poison": "x"})
            } else {
                json!({"host": "h", "count": i})
            };
            Record::new(doc.to_string()).with_key(format!("d{i}"))
        })
        .collect();
    let stats = sink.stats();
    let written = tokio::time::timeout(Duration::from_secs(60), write_all(&mut sink, batch)).await;
    let rejected = written.unwrap_or_else(|_| {
        panic!(
            "the sink is still sending the refused document ({} retries)",
            stats.retries.load(Relaxed)
        )
    });
    assert_eq!(count(&es, &index).await, 19, "the other documents landed");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].record.key.as_deref(), Some(&b"d7"[..]));
    assert!(
        rejected[0]
            .reason
            .starts_with("500 fail_processor_exception: poisoned document"),
        "{}",
        rejected[0].reason
    );
    assert_eq!(stats.retries.load(Relaxed), 0, "nothing was sent twice");
}
