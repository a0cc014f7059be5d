//! Index template, bulk indexing, search and aggregations against the real
//! Elasticsearch-API server, with the `elasticsearch` crate.

use elasticsearch::indices::IndicesPutIndexTemplateParts;
use elasticsearch::{BulkOperation, BulkParts};
use flowline_integration_tests::{count, mapping_properties, search, unique, TestServices};
use serde_json::{json, Value};

#[tokio::test]
async fn template_bulk_search_and_aggregate() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let prefix = unique("flowline-test");
    let index = format!("{prefix}-metrics");

    let r = es
        .indices()
        .put_index_template(IndicesPutIndexTemplateParts::Name(&prefix))
        .body(json!({
            "index_patterns": [format!("{prefix}-*")],
            "template": {
                "settings": {"number_of_shards": 1, "number_of_replicas": 0},
                "mappings": {"properties": {
                    "host": {"type": "keyword"},
                    "window_start": {"type": "date"},
                    "avg": {"type": "double"}
                }}
            }
        }))
        .send()
        .await
        .expect("template request");
    assert!(
        r.status_code().is_success(),
        "template: {}",
        r.text().await.unwrap_or_default()
    );

    let ops: Vec<BulkOperation<Value>> = (0..1000)
        .map(|i| {
            let doc = json!({
                "host": format!("host-{}", i % 4),
                "window_start": format!("2026-01-01T00:{:02}:{:02}.000Z", (i / 60) % 60, i % 60),
                "avg": i as f64,
            });
            BulkOperation::index(doc).id(format!("doc-{i}")).into()
        })
        .collect();
    let r = es
        .bulk(BulkParts::Index(&index))
        .body(ops)
        .send()
        .await
        .expect("bulk request");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"], false, "{body}");
    assert_eq!(count(&es, &index).await, 1000);

    let props = mapping_properties(&es, &index).await;
    assert_eq!(props["window_start"]["type"], "date", "{props}");
    assert_eq!(props["host"]["type"], "keyword");

    let r = search(
        &es,
        &index,
        json!({
            "size": 0,
            "aggs": {
                "hosts": {"terms": {"field": "host"}},
                "per_minute": {"date_histogram": {"field": "window_start", "fixed_interval": "1m"}}
            }
        }),
    )
    .await;
    let hosts = r["aggregations"]["hosts"]["buckets"].as_array().unwrap();
    assert_eq!(hosts.len(), 4);
    assert!(hosts.iter().all(|b| b["doc_count"] == 250), "{hosts:?}");
    let minutes = r["aggregations"]["per_minute"]["buckets"]
        .as_array()
        .unwrap();
    assert_eq!(minutes.len(), 17, "1000 seconds span 17 minutes");
    assert_eq!(minutes[0]["doc_count"], 60);
    assert_eq!(
        minutes
            .iter()
            .map(|b| b["doc_count"].as_u64().unwrap())
            .sum::<u64>(),
        1000
    );

    // Re-indexing the same ids overwrites: the count does not change.
    let again: Vec<BulkOperation<Value>> = (0..10)
        .map(|i| {
            BulkOperation::index(
                json!({"host": "host-0", "window_start": "2026-01-01T00:00:00.000Z", "avg": 0.0}),
            )
            .id(format!("doc-{i}"))
            .into()
        })
        .collect();
    let body: Value = es
        .bulk(BulkParts::Index(&index))
        .body(again)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["errors"], false);
    assert_eq!(count(&es, &index).await, 1000);
}
