//! An index that takes no writes for a while, whatever the document: a
//! write block (`index.blocks.write`, as a shrink, a clone or an operator
//! sets it; the server answers 403), a closed index (closed to change a
//! static setting; 400 `index_closed_exception`), a default pipeline that
//! is missing (400 "pipeline with id [..] does not exist"). The sink holds
//! its documents back and sends them again until the index is mended, then
//! every one lands once. None is dead-lettered: the documents were never
//! wrong. Before, each refusal was taken as the document's, and every
//! window written meanwhile went to the dead-letter output (or, without
//! one, nowhere).

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use elasticsearch::http::Method;
use elasticsearch::Elasticsearch;
use flowline_connector_api::Sink;
use flowline_integration_tests::{
    count, es_call, es_sink, poll, unique, window_docs, write_all, TestServices,
};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug)]
enum Outage {
    WriteBlock,
    Closed,
    MissingPipeline,
}

async fn call(es: &Elasticsearch, method: Method, path: &str, body: Option<Value>) {
    let (status, answer) = es_call(es, method, path, body).await;
    assert!((200..300).contains(&status), "{path}: {status} {answer}");
}

/// Starts (`on`) or mends the outage of `index`.
async fn outage(es: &Elasticsearch, index: &str, what: Outage, on: bool) {
    let settings = format!("/{index}/_settings");
    match (what, on) {
        (Outage::WriteBlock, _) => {
            let body = json!({"index.blocks.write": on});
            call(es, Method::Put, &settings, Some(body)).await
        }
        (Outage::Closed, true) => call(es, Method::Post, &format!("/{index}/_close"), None).await,
        (Outage::Closed, false) => call(es, Method::Post, &format!("/{index}/_open"), None).await,
        // Named before it exists: the index takes nothing until it does.
        (Outage::MissingPipeline, true) => {
            let body = json!({"index.default_pipeline": format!("{index}-pipeline")});
            call(es, Method::Put, &settings, Some(body)).await
        }
        (Outage::MissingPipeline, false) => {
            let path = format!("/_ingest/pipeline/{index}-pipeline");
            let body = json!({"description": "passes documents on", "processors": []});
            call(es, Method::Put, &path, Some(body)).await
        }
    }
}

async fn rides_out(what: Outage) {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let index = unique("flowline-es-outage");
    let mut sink = es_sink(json!({"url": s.elasticsearch_url, "index": index, "replicas": 0, "max_actions": 100, "initial_backoff": "20ms", "max_backoff": "100ms"})).await.unwrap();
    sink.write(window_docs(0, 300)).await.unwrap();
    sink.flush().await.unwrap();
    outage(&es, &index, what, true).await;
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
        "{what:?}: the sink retried while the index took no writes"
    );
    assert!(
        !writer.is_finished(),
        "{what:?}: write/flush wait while the index takes no writes (backpressure)"
    );
    assert_eq!(
        stats.rejected.load(Relaxed),
        0,
        "{what:?}: no document refused"
    );
    outage(&es, &index, what, false).await;
    let (sink, refused) = tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .expect("the documents land within 60 s of the index's mending")
        .unwrap();
    assert!(
        refused.is_empty(),
        "{what:?}: dead-lettered: {:?}",
        refused.first().map(|r| &r.reason)
    );
    assert_eq!(count(&es, &index).await, 1_000, "{what:?}");
    assert_eq!(sink.stats().documents.load(Relaxed), 1_000, "{what:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_blocked_index_holds_the_documents_back_until_the_block_is_lifted() {
    rides_out(Outage::WriteBlock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_index_holds_the_documents_back_until_it_is_opened() {
    rides_out(Outage::Closed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_default_pipeline_holds_the_documents_back_until_it_is_created() {
    rides_out(Outage::MissingPipeline).await;
}
