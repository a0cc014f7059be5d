//! The last write of a document is the one that stays: a window re-emitted
//! by a late event (allowed lateness) is written again under its id, and
//! the sink sends bulk requests concurrently. Here a large request holds
//! every document's first version and a small one, right behind it, the
//! second version of a few: the small one would land first and be
//! overwritten by the large one. A soak trial found one such window (count
//! 6 indexed, 7 in the group-by) among 116 311.

use flowline_connector_api::{Record, Sink};
use flowline_integration_tests::job::all_docs;
use flowline_integration_tests::{es_sink, unique, TestServices};
use serde_json::json;

const DOCS: usize = 4_000;
const ROUNDS: usize = 4;
const UPDATED: usize = 20;

fn doc(i: usize, version: usize) -> Record {
    // Padding makes the large request slow to index next to the small one.
    let d = json!({"n": i, "version": version, "pad": "x".repeat(600)});
    Record::new(d.to_string()).with_key(format!("doc-{i}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_written_twice_keeps_its_last_version_with_requests_in_flight() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let index = unique("flowline-es-order");
    // One request per `DOCS` documents, two in flight.
    let mut sink = es_sink(json!({
        "url": s.elasticsearch_url, "index": index, "replicas": 0,
        "max_actions": DOCS, "max_bytes": 64_000_000, "max_in_flight": 2,
    }))
    .await
    .unwrap();
    let mut last = vec![0usize; DOCS];
    for round in 0..ROUNDS {
        let v = round * 2 + 1;
        // Fills the buffer to max_actions: sent at once, in flight.
        sink.write((0..DOCS).map(|i| doc(i, v)).collect())
            .await
            .unwrap();
        // A few documents again, in their own request.
        let few: Vec<usize> = (0..UPDATED)
            .map(|k| (k * 197 + round * 31) % DOCS)
            .collect();
        sink.write(few.iter().map(|&i| doc(i, v + 1)).collect())
            .await
            .unwrap();
        sink.flush().await.unwrap();
        last.fill(v);
        for &i in &few {
            last[i] = v + 1;
        }
    }
    let got = all_docs(&es, &index).await;
    assert_eq!(got.len(), DOCS);
    let stale: Vec<String> = (0..DOCS)
        .filter_map(|i| {
            let have = got[&format!("doc-{i}")]["version"].as_u64().unwrap() as usize;
            (have != last[i]).then(|| format!("doc-{i}: version {have}, last written {}", last[i]))
        })
        .collect();
    assert!(
        stale.is_empty(),
        "{} documents kept an older write: {:?}",
        stale.len(),
        &stale[..stale.len().min(5)]
    );
}
