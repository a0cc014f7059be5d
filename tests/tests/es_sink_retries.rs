//! 429s and a server that goes down: everything lands exactly once, the
//! retries are counted, and a server down at start gives a clear error
//! after bounded retries.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::{Duration, Instant};

use flowline_connector_api::Sink;
use flowline_integration_tests::{count, es_sink, poll, proxy, unique, window_docs, TestServices};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_requests_and_items_are_retried_until_every_document_lands_once() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let p = proxy::start(&s.elasticsearch_url).await;
    p.faults.reject_every_nth_bulk.store(3, SeqCst);
    p.faults.item_429_every_nth_bulk.store(2, SeqCst);
    let index = unique("flowline-es-429");
    let mut sink = es_sink(json!({"url": p.url, "index": index, "replicas": 0, "max_actions": 100, "initial_backoff": "5ms", "max_backoff": "50ms", "max_attempts": 20})).await.unwrap();
    for chunk in window_docs(0, 5_000).chunks(500) {
        sink.write(chunk.to_vec()).await.unwrap();
    }
    sink.flush().await.unwrap();
    assert_eq!(count(&es, &index).await, 5_000);
    let stats = sink.stats();
    assert!(
        p.faults.injected.load(SeqCst) > 10,
        "the proxy injected faults"
    );
    assert!(
        stats.retries.load(Relaxed) >= p.faults.injected.load(SeqCst),
        "every injected fault was retried and counted"
    );
    assert_eq!(stats.documents.load(Relaxed), 5_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_at_start_fails_clearly_after_bounded_retries() {
    let t0 = Instant::now();
    let err = es_sink(json!({"url": "http://127.0.0.1:1", "index": "x", "max_attempts": 3, "initial_backoff": "10ms"})).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("after 3 attempts") && msg.contains("Fix: start the server"),
        "{msg}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_mid_run_holds_back_then_loses_nothing() {
    // No max_attempts nor max_retry_duration: by default the sink retries
    // without limit (the 100 ms backoff cap makes the outage hundreds of
    // attempts, far past the old limit of 8).
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let p = proxy::start(&s.elasticsearch_url).await;
    let index = unique("flowline-es-down");
    let mut sink = es_sink(json!({"url": p.url, "index": index, "replicas": 0, "max_actions": 100, "max_in_flight": 1, "initial_backoff": "20ms", "max_backoff": "100ms"})).await.unwrap();
    sink.write(window_docs(0, 1_000)).await.unwrap();
    sink.flush().await.unwrap();
    p.faults.down.store(true, SeqCst);
    let stats = sink.stats();
    let writer = tokio::spawn(async move {
        sink.write(window_docs(1_000, 3_000)).await.unwrap();
        sink.flush().await.unwrap();
        sink
    });
    let retried = poll(Duration::from_secs(60), || async {
        (stats.retries.load(Relaxed) >= 30).then_some(())
    })
    .await;
    assert!(
        retried.is_some(),
        "the sink retried while the server was down"
    );
    assert!(
        !writer.is_finished(),
        "write/flush must wait while the server is down (backpressure)"
    );
    p.faults.down.store(false, SeqCst);
    let sink = tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .expect("recovered within 60 s")
        .unwrap();
    assert_eq!(count(&es, &index).await, 3_000);
    assert_eq!(sink.stats().documents.load(Relaxed), 3_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_retry_duration_bounds_the_retries_of_a_request() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let p = proxy::start(&s.elasticsearch_url).await;
    let index = unique("flowline-es-giveup");
    let mut sink = es_sink(json!({"url": p.url, "index": index, "replicas": 0, "initial_backoff": "10ms", "max_backoff": "50ms", "max_retry_duration": "1s"})).await.unwrap();
    p.faults.down.store(true, SeqCst);
    let t0 = Instant::now();
    sink.write(window_docs(0, 10)).await.unwrap();
    let err = sink.flush().await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("max_retry_duration") && msg.contains("503"),
        "{msg}"
    );
    assert!(t0.elapsed() >= Duration::from_secs(1), "{:?}", t0.elapsed());
}
