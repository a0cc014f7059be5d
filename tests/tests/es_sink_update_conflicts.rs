//! `action = "update"` merges each document into the one under its id. Two
//! writers updating one document race: the server reads it, the other
//! writer's update lands, and its write then fails with a version conflict
//! (409). That update was not applied, so the sink sends it again. Before,
//! every 409 counted as stored (right only for a `create` whose id
//! exists), and such an update was gone with nothing said.

use flowline_connector_api::{Record, Sink};
use flowline_integration_tests::{es_sink, unique, TestServices};
use serde_json::json;

const ROUNDS: usize = 150;

async fn writer(url: String, index: String, field: &'static str) {
    // One document per request, sent at once: the two writers' requests
    // interleave on the server.
    let mut sink = es_sink(json!({
        "url": url, "index": index, "replicas": 0, "action": "update",
        "max_actions": 1, "max_in_flight": 1, "template": false,
    }))
    .await
    .unwrap();
    for i in 0..ROUNDS {
        let doc = json!({ format!("{field}{i}"): i });
        sink.write(vec![Record::new(doc.to_string()).with_key("shared")])
            .await
            .unwrap();
    }
    sink.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_loses_a_race_is_sent_again() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let index = unique("flowline-es-update-race");
    let url = s.elasticsearch_url.clone();
    let a = tokio::spawn(writer(url.clone(), index.clone(), "a"));
    let b = tokio::spawn(writer(url.clone(), index.clone(), "b"));
    a.await.unwrap();
    b.await.unwrap();
    let doc: serde_json::Value = reqwest::get(format!("{url}/{index}/_doc/shared"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fields = doc["_source"].as_object().expect("the document exists");
    let missing: Vec<String> = ["a", "b"]
        .iter()
        .flat_map(|w| (0..ROUNDS).map(move |i| format!("{w}{i}")))
        .filter(|f| !fields.contains_key(f))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} updates lost: {missing:?}",
        missing.len(),
        2 * ROUNDS
    );
}
