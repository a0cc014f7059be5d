//! The sink tells the servers apart by their `GET /`: Elasticsearch 8 as
//! Elasticsearch 8, OpenSearch 2 as OpenSearch 2 (scripts/test runs this
//! against both), each with composable templates; and the body it reads
//! has what detection needs on both.

use flowline_elasticsearch::detect::Distribution;
use flowline_integration_tests::{es_sink, unique, SearchServer, TestServices};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_is_detected_by_name_and_major_version() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let sink = es_sink(
        json!({"url": s.elasticsearch_url, "index": unique("flowline-detect"), "template": false}),
    )
    .await
    .unwrap();
    let server = sink.server().expect("detected at start");
    let want = match s.search_server {
        SearchServer::Elasticsearch => (Distribution::Elasticsearch, 8),
        SearchServer::OpenSearch => (Distribution::OpenSearch, 2),
    };
    assert_eq!((server.distribution, server.major), want, "{server}");
    assert!(server.composable_templates());

    let r = reqwest::get(format!("{}/", s.elasticsearch_url))
        .await
        .unwrap();
    let product = r
        .headers()
        .get("x-elastic-product")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = r.json().await.unwrap();
    match s.search_server {
        SearchServer::Elasticsearch => {
            assert_eq!(body["tagline"], "You Know, for Search", "{body}");
            assert_eq!(product.as_deref(), Some("Elasticsearch"));
            assert!(body["version"]["number"]
                .as_str()
                .unwrap()
                .starts_with("8.15."));
        }
        SearchServer::OpenSearch => {
            // No product header, its own tagline: the sink goes by
            // `version.distribution`, which only OpenSearch sends.
            assert_eq!(product, None);
            assert!(body["version"].get("distribution").is_some(), "{body}");
            assert_eq!(body["version"]["distribution"], "opensearch");
        }
    }
}
