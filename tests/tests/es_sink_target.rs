//! What the server would make of the sink's index names, checked at start
//! and by `validate` before anything is written: a data stream (it only
//! appends, so it refused every window, each a dead letter, and could
//! never take an updated or replayed one under its id), and a template
//! outranking the sink's, which would map the job's fields its own way
//! (an `avg` as `long` stored truncated) with nothing said, and an alias
//! (after a rollover, a replayed window lands beside its first write).

use elasticsearch::indices::IndicesPutIndexTemplateParts;
use elasticsearch::Elasticsearch;
use flowline_connector_api::{Record, Sink};
use flowline_integration_tests::{count, es_sink, es_sink_refused, unique, TestServices};
use serde_json::{json, Value};

async fn put_template(es: &Elasticsearch, name: &str, body: Value) {
    es.indices()
        .put_index_template(IndicesPutIndexTemplateParts::Name(name))
        .body(body)
        .send()
        .await
        .unwrap()
        .error_for_status_code()
        .unwrap();
}

fn window() -> Record {
    Record::new(
        json!({"host": "h", "avg": 5.7, "window_start": "2026-01-01T00:00:00.000Z"}).to_string(),
    )
    .with_key("h|2026-01-01T00:00:00.000Z")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_a_data_stream_template_would_take_is_refused_before_any_write() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let prefix = unique("flowline-ds");
    put_template(
        &es,
        &format!("{prefix}-streams"),
        json!({"index_patterns": [format!("{prefix}-*")], "priority": 500, "data_stream": {},
            "template": {"mappings": {"properties": {"@timestamp": {"type": "date"}}}}}),
    )
    .await;
    let index = format!("{prefix}-metrics");
    // Whether the sink brings its template or not.
    for template in [json!({"fields": {"avg": "double"}}), json!(false)] {
        let e = es_sink_refused(json!({"url": s.elasticsearch_url, "index": index,
            "time_field": "window_start", "template": template}))
        .await;
        assert!(
            e.contains(&format!(
                "index `{index}` would be a data stream, made by index template `{prefix}-streams` (priority 500)"
            )) && e.contains("Fix: an index name that no data-stream template matches"),
            "{e}"
        );
    }
    assert_eq!(count(&es, &index).await, 0, "nothing written");

    // A data stream that exists already is refused too, even once the
    // template that made it is gone.
    es.index(elasticsearch::IndexParts::Index(&index))
        .body(json!({"@timestamp": "2026-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap()
        .error_for_status_code()
        .unwrap();
    es.indices()
        .delete_index_template(
            elasticsearch::indices::IndicesDeleteIndexTemplateParts::Name(&format!(
                "{prefix}-streams"
            )),
        )
        .send()
        .await
        .unwrap();
    let e = es_sink_refused(
        json!({"url": s.elasticsearch_url, "index": format!("{prefix}-%Y.%m"),
        "time_field": "window_start", "template": false}),
    )
    .await;
    assert!(
        e.contains(&format!("`{index}` on "))
            && e.contains(&format!(
                "is a data stream matching the sink's index pattern `{prefix}-*`"
            )),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_outranking_the_sinks_is_refused_unless_the_sink_brings_none() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let prefix = unique("flowline-outranked");
    put_template(
        &es,
        &format!("{prefix}-theirs"),
        json!({"index_patterns": [format!("{prefix}-*")], "priority": 300,
            "template": {"mappings": {"properties": {"avg": {"type": "long"}}}}}),
    )
    .await;
    let index = format!("{prefix}-%Y.%m.%d");
    let e = es_sink_refused(json!({"url": s.elasticsearch_url, "index": index,
        "time_field": "window_start", "template": {"fields": {"avg": "double"}}}))
    .await;
    assert!(
        e.contains(&format!(
            "index template `{prefix}-theirs` (priority 300) matches the sink's index `{prefix}-"
        )) && e.contains(&format!(
            "outranks Flowline's template `{prefix}` (priority 200)"
        )),
        "{e}"
    );
    assert!(e.contains("Fix: set template = false"), "{e}");
    assert_eq!(
        count(&es, &format!("{prefix}-*")).await,
        0,
        "nothing written"
    );

    // template = false: their template is the one meant, and it is used.
    let mut sink = es_sink(json!({"url": s.elasticsearch_url, "index": index, "template": false, "time_field": "window_start"}))
        .await
        .expect("the start succeeds");
    sink.write(vec![window()]).await.unwrap();
    sink.flush().await.unwrap();
    assert_eq!(count(&es, &format!("{prefix}-2026.01.01")).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_under_a_name_the_sink_writes_is_refused_a_read_alias_is_not() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let prefix = unique("flowline-alias");
    // A rollover alias: writes through it go to its write index, which
    // a rollover changes, so a window replayed after one is counted twice.
    let alias = format!("{prefix}-metrics");
    es.indices()
        .create(elasticsearch::indices::IndicesCreateParts::Index(&format!(
            "{prefix}-000001"
        )))
        .body(json!({"aliases": {alias.clone(): {"is_write_index": true}}}))
        .send()
        .await
        .unwrap()
        .error_for_status_code()
        .unwrap();
    let e = es_sink_refused(json!({"url": s.elasticsearch_url, "index": alias,
        "time_field": "window_start", "template": {"fields": {"avg": "double"}}}))
    .await;
    assert!(
        e.contains(&format!("`{alias}` on "))
            && e.contains(&format!(
                "is an alias (of {prefix}-000001), and a name the sink writes"
            ))
            && e.contains("Fix: write to concrete indices"),
        "{e}"
    );
    assert_eq!(count(&es, &alias).await, 0, "nothing written");

    // Dated indices under the same prefix: the alias is not a name the
    // sink writes (it only reads them), so the sink starts and writes.
    let mut sink = es_sink(
        json!({"url": s.elasticsearch_url, "index": format!("{prefix}-%Y.%m.%d"),
        "time_field": "window_start", "template": {"fields": {"avg": "double"}}}),
    )
    .await
    .expect("the start succeeds");
    sink.write(vec![window()]).await.unwrap();
    sink.flush().await.unwrap();
    assert_eq!(count(&es, &format!("{prefix}-2026.01.01")).await, 1);
}

/// Puts `action.auto_create_index` (persistent; `null` removes it).
async fn put_auto_create(es: &Elasticsearch, value: Value) {
    es.cluster()
        .put_settings()
        .body(json!({"persistent": {"action.auto_create_index": value}}))
        .send()
        .await
        .unwrap()
        .error_for_status_code()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_the_server_will_not_create_is_refused_one_that_exists_is_not() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let prefix = unique("flowline-nocreate");
    // Refused for this test's indices only; every other name stays
    // allowed, so the tests running beside it are not touched. The value
    // set before is put back after.
    let before: Value = es
        .cluster()
        .get_settings()
        .flat_settings(true)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let before = before["persistent"]["action.auto_create_index"].clone();
    put_auto_create(&es, json!(format!("-{prefix}-*,+*"))).await;
    let dated = format!("{prefix}-%Y.%m.%d");
    let refused = es_sink_refused(json!({"url": s.elasticsearch_url, "index": dated,
        "time_field": "window_start", "template": {"fields": {"avg": "double"}}}))
    .await;
    let fixed = format!("{prefix}-fixed");
    let refused_fixed = es_sink_refused(json!({"url": s.elasticsearch_url, "index": fixed,
        "template": {"fields": {"avg": "double"}}}))
    .await;
    // A fixed name created beforehand needs no creation.
    es.indices()
        .create(elasticsearch::indices::IndicesCreateParts::Index(&fixed))
        .send()
        .await
        .unwrap()
        .error_for_status_code()
        .unwrap();
    let started = es_sink(json!({"url": s.elasticsearch_url, "index": fixed,
        "template": {"fields": {"avg": "double"}}}))
    .await;
    put_auto_create(&es, before).await;
    assert!(
        refused.contains(&format!("does not create index `{prefix}-"))
            && refused.contains(&format!(
                "(action.auto_create_index = \"-{prefix}-*,+*\"), so every window would come back a dead letter"
            ))
            && refused.contains(&format!("Fix: allow the sink's indices first in action.auto_create_index (like \"+{prefix}-*,-{prefix}-*,+*\")"))
            && !refused.contains("create the index"),
        "{refused}"
    );
    assert!(
        refused_fixed.contains(&format!("does not create index `{fixed}`"))
            && refused_fixed.contains(&format!(
                "or create the index `{fixed}` before the job starts"
            )),
        "{refused_fixed}"
    );
    let mut sink = started.expect("an index that exists starts");
    sink.write(vec![window()]).await.unwrap();
    sink.flush().await.unwrap();
    assert_eq!(count(&es, &fixed).await, 1);
}
