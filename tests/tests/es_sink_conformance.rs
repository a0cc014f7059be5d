//! The Elasticsearch sink passes the connector testkit's sink suite against
//! the real server: exactly once through a restart (idempotent ids).

use flowline_connector_api::{BoxSink, SinkFactory};
use flowline_connector_testkit::sink::{sink_suite, Guarantee};
use flowline_integration_tests::{count, search, unique, TestServices};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_sink_passes_the_sink_suite_exactly_once() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let index = unique("flowline-es-suite");
    let settings = json!({"url": s.elasticsearch_url, "index": index, "replicas": 0});
    let make = || {
        let c = flowline_connector_api::parse_config("elasticsearch", settings.clone())?;
        Ok(Box::new(flowline_elasticsearch::ElasticsearchSinkFactory.build(c)?) as BoxSink)
    };
    let read = || async {
        count(&es, &index).await;
        let r = search(
            &es,
            &index,
            json!({"size": 1000, "query": {"match_all": {}}}),
        )
        .await;
        r["hits"]["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["_source"].to_string().into_bytes())
            .collect()
    };
    sink_suite(make, read, Guarantee::ExactlyOnce).await;
}
