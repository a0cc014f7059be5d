//! An index that existed before the sink's template keeps its own mapping.
//! One made by dynamic mapping from a first document whose `avg` was `5`
//! maps `avg` as `long`: the server then takes `5.7` and indexes 5, so
//! every aggregation is wrong while `_source` looks right, and nothing
//! fails. The sink reads the existing indices' mappings at start and
//! refuses documents for such an index with the reason; other indices are
//! written as usual.

use elasticsearch::params::Refresh;
use elasticsearch::IndexParts;
use flowline_connector_api::{ConnectorError, Record, Rejected, Sink};
use flowline_integration_tests::{
    count, es_sink, mapping_properties, search, unique, TestServices,
};
use serde_json::json;

fn window(day: u32, avg: f64) -> Record {
    let doc =
        json!({"host": "h1", "window_start": format!("2026-03-0{day}T00:00:00.000Z"), "avg": avg});
    Record::new(doc.to_string()).with_key(format!("h1|{day}"))
}

fn rejected(r: Result<(), ConnectorError>) -> Vec<Rejected> {
    match r {
        Ok(()) => Vec::new(),
        Err(ConnectorError::BadRecords(v)) => v,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_for_an_index_whose_mapping_would_truncate_them_are_refused() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let prefix = unique("flowline-es-existing");
    let (day1, day2) = (
        format!("{prefix}-2026.03.01"),
        format!("{prefix}-2026.03.02"),
    );
    // Made before the sink by another writer: `avg` maps as long.
    es.index(IndexParts::IndexId(&day1, "other"))
        .body(json!({"host": "h0", "window_start": "2026-03-01T00:00:00.000Z", "avg": 5}))
        .refresh(Refresh::True)
        .send()
        .await
        .unwrap()
        .error_for_status_code()
        .unwrap();
    assert_eq!(mapping_properties(&es, &day1).await["avg"]["type"], "long");

    let mut sink = es_sink(
        json!({"url": s.elasticsearch_url, "index": format!("{prefix}-%Y.%m.%d"),
        "replicas": 0, "time_field": "window_start",
        "template": {"fields": {"host": "keyword", "avg": "double"}}}),
    )
    .await
    .unwrap();
    let mut refused = rejected(sink.write(vec![window(1, 5.7), window(2, 5.7)]).await);
    refused.extend(rejected(sink.flush().await));
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].record, window(1, 5.7), "it comes back whole");
    let reason = &refused[0].reason;
    assert!(reason.contains(&format!("index `{day1}`")), "{reason}");
    assert!(
        reason.contains("`avg` is long there, not double (a fraction is truncated)"),
        "{reason}"
    );
    assert!(reason.contains("Fix: reindex"), "{reason}");

    // The other writer's document stays; the new index holds the exact value.
    assert_eq!(count(&es, &day1).await, 1);
    assert_eq!(count(&es, &day2).await, 1);
    let r = search(
        &es,
        &day2,
        json!({"size": 0, "aggs": {"sum": {"sum": {"field": "avg"}}}}),
    )
    .await;
    assert_eq!(r["aggregations"]["sum"]["value"], 5.7, "{r}");
}
