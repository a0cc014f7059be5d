//! The index template: installed once, date fields searchable with a
//! `date_histogram`, and the flowline job writing windows through the sink.

use flowline_connector_api::{Record, Sink};
use flowline_elasticsearch::{detect::Server, template};
use flowline_integration_tests::{
    count, es_sink, es_sink_refused, mapping_properties, search, unique, TestServices,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_types_dates_and_is_installed_once() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let prefix = unique("flowline-es-tpl");
    let index = format!("{prefix}-%Y.%m.%d");
    let settings = json!({"url": s.elasticsearch_url, "index": index, "replicas": 0,
        "time_field": "window_start",
        "template": {"fields": {"host.name": "keyword", "avg": "double", "count": "long"}}});
    let mut sink = es_sink(settings.clone()).await.unwrap();
    let server = sink.server().cloned().expect("detected");
    let recs: Vec<Record> = (0..120)
        .map(|i| Record::new(json!({"host": {"name": "h1"}, "metric": "cpu_util", "count": i, "window_start": format!("2026-03-0{}T00:{:02}:00.000Z", 1 + i / 60, i % 60), "avg": i}).to_string()).with_key(format!("k{i}")))
        .collect();
    sink.write(recs).await.unwrap();
    sink.flush().await.unwrap();
    let day1 = format!("{prefix}-2026.03.01");
    let day2 = format!("{prefix}-2026.03.02");
    assert_eq!(
        count(&es, &day1).await,
        60,
        "documents routed by their date"
    );
    assert_eq!(count(&es, &day2).await, 60);

    let props = mapping_properties(&es, &day1).await;
    assert_eq!(props["window_start"]["type"], "date", "{props}");
    assert_eq!(props["host"]["properties"]["name"]["type"], "keyword");
    // Given as double, though the first documents' values are integers.
    assert_eq!(props["avg"]["type"], "double");
    assert_eq!(props["count"]["type"], "long");
    // Not named in the config: strings as keyword (the dynamic template).
    assert_eq!(props["metric"]["type"], "keyword");

    let r = search(&es, &format!("{prefix}-*"), json!({"size": 0, "aggs": {"per_day": {"date_histogram": {"field": "window_start", "calendar_interval": "1d"}}}})).await;
    let buckets = r["aggregations"]["per_day"]["buckets"].as_array().unwrap();
    assert_eq!(
        buckets
            .iter()
            .map(|b| b["doc_count"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [60, 60]
    );

    // Starting again finds the same template and does not rewrite it.
    let pattern = format!("{prefix}-*");
    let c: flowline_elasticsearch::EsSinkConfig = serde_json::from_value(settings).unwrap();
    let mappings = c.check().unwrap().mappings.unwrap();
    let body = template::body(
        &pattern,
        &mappings,
        None,
        Some(0),
        Server::composable_templates(&server),
    );
    assert!(
        !template::ensure(&es, &server, &prefix, &body)
            .await
            .unwrap(),
        "same template rewritten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_job_writes_its_windows_through_the_sink() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let dir = std::env::temp_dir().join(unique("flowline-job"));
    std::fs::create_dir_all(&dir).unwrap();
    let events = dir.join("events.ndjson");
    let gen =
        flowline_metric_generator::Generator::new(flowline_metric_generator::GeneratorConfig {
            hosts: 4,
            count: Some(4_000),
            ..Default::default()
        });
    std::fs::write(&events, gen.map(|e| e.to_json() + "\n").collect::<String>()).unwrap();
    let index = unique("flowline-es-job");
    let job = format!(
        "[source]\ntype = \"file\"\npath = \"{}\"\n\n[sink]\ntype = \"elasticsearch\"\nurl = \"{}\"\nindex = \"{index}\"\nreplicas = 0\n\n[window]\nsize = \"10s\"\n",
        events.display(),
        s.elasticsearch_url
    );
    let plan = flowline::config::JobPlan::parse(&job).unwrap();
    let registry = flowline::registry();
    for _ in 0..2 {
        let summary = flowline::build::build_job(&plan, &registry)
            .unwrap()
            .execute()
            .await
            .unwrap();
        assert_eq!(summary.records_in, 4_000);
    }
    // 4 hosts × 5 metrics, 200 one-second ticks = 20 windows of 10 s each.
    assert_eq!(
        count(&es, &index).await,
        4 * 5 * 20,
        "one document per key and window, even after a second run"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_of_that_name_made_by_someone_else_is_left_as_it_is() {
    use elasticsearch::indices::{IndicesGetIndexTemplateParts, IndicesPutIndexTemplateParts};
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let prefix = unique("flowline-es-theirs");
    let theirs = json!({"index_patterns": [format!("{prefix}-*")], "priority": 50, "version": 7,
        "template": {"mappings": {"properties": {"avg": {"type": "keyword"}}}}});
    es.indices()
        .put_index_template(IndicesPutIndexTemplateParts::Name(&prefix))
        .body(theirs)
        .send()
        .await
        .unwrap()
        .error_for_status_code()
        .unwrap();
    let settings = json!({"url": s.elasticsearch_url, "index": format!("{prefix}-%Y.%m.%d"),
        "replicas": 0, "time_field": "window_start", "template": {"fields": {"avg": "double"}}});
    // `flowline validate` refuses it as the start does.
    let e = es_sink_refused(settings).await;
    assert!(
        e.contains(&format!("index template `{prefix}` exists"))
            && e.contains("not installed by Flowline"),
        "{e}"
    );
    assert!(e.contains("Fix: set template_name"), "{e}");
    let got: serde_json::Value = es
        .indices()
        .get_index_template(IndicesGetIndexTemplateParts::Name(&prefix))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let t = &got["index_templates"][0]["index_template"];
    assert_eq!(t["version"], 7, "{got}");
    assert_eq!(
        t["template"]["mappings"]["properties"]["avg"]["type"], "keyword",
        "{got}"
    );
}
