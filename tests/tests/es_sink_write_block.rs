//! An index that takes no writes for a while (`index.blocks.write`, as a
//! shrink, a clone or an operator sets it): the sink holds its documents
//! back and sends them again until the block is lifted, then every one
//! lands once. None is dead-lettered: the documents were never wrong.
//! Before, the server's 403 for each was taken as a refusal of the
//! document, and every window written during the block went to the
//! dead-letter output (or, without one, nowhere).

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use elasticsearch::indices::IndicesPutSettingsParts;
use elasticsearch::Elasticsearch;
use flowline_connector_api::Sink;
use flowline_integration_tests::{
    count, es_sink, poll, unique, window_docs, write_all, TestServices,
};
use serde_json::json;

async fn block_writes(es: &Elasticsearch, index: &str, on: bool) {
    es.indices()
        .put_settings(IndicesPutSettingsParts::Index(&[index]))
        .body(json!({"index.blocks.write": on}))
        .send()
        .await
        .unwrap()
        .error_for_status_code()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_blocked_index_holds_the_documents_back_until_the_block_is_lifted() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let index = unique("flowline-es-blocked");
    let mut sink = es_sink(json!({"url": s.elasticsearch_url, "index": index, "replicas": 0, "max_actions": 100, "initial_backoff": "20ms", "max_backoff": "100ms"})).await.unwrap();
    sink.write(window_docs(0, 300)).await.unwrap();
    sink.flush().await.unwrap();
    block_writes(&es, &index, true).await;
    let stats = sink.stats();
    let writer = tokio::spawn(async move {
        let refused = write_all(&mut sink, window_docs(300, 1_000)).await;
        (sink, refused)
    });
    let retried = poll(Duration::from_secs(60), || async {
        (stats.retries.load(Relaxed) >= 10).then_some(())
    })
    .await;
    assert!(
        retried.is_some(),
        "the sink retried while the index was blocked"
    );
    assert!(
        !writer.is_finished(),
        "write/flush wait while the index takes no writes (backpressure)"
    );
    assert_eq!(stats.rejected.load(Relaxed), 0, "no document refused");
    block_writes(&es, &index, false).await;
    let (sink, refused) = tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .expect("the documents land within 60 s of the block's lifting")
        .unwrap();
    assert!(
        refused.is_empty(),
        "dead-lettered: {:?}",
        refused.first().map(|r| &r.reason)
    );
    assert_eq!(count(&es, &index).await, 1_000);
    assert_eq!(sink.stats().documents.load(Relaxed), 1_000);
    assert_eq!(sink.stats().rejected.load(Relaxed), 0);
}
