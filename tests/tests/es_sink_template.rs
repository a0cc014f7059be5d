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
        None,
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
    use elasticsearch::indices::IndicesPutIndexTemplateParts;
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
    let t = index_template(&es, &prefix).await;
    assert_eq!(t["version"], 7, "{t}");
    assert_eq!(
        t["template"]["mappings"]["properties"]["avg"]["type"], "keyword",
        "{t}"
    );
}

/// The composable index template `name` as the server has it.
async fn index_template(es: &elasticsearch::Elasticsearch, name: &str) -> serde_json::Value {
    let got: serde_json::Value = es
        .indices()
        .get_index_template(elasticsearch::indices::IndicesGetIndexTemplateParts::Name(
            name,
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    got["index_templates"][0]["index_template"].clone()
}

/// Two jobs writing the same indices overwrite each other's documents
/// under the same ids: a Flowline template owned by another job is not
/// replaced, and the second job does not start. A template from before
/// owners is taken over; the owner itself starts as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_another_job_owns_is_not_replaced() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let prefix = unique("flowline-es-owner");
    let settings = |owner: Option<&str>| {
        let mut v = json!({"url": s.elasticsearch_url, "index": format!("{prefix}-%Y.%m.%d"),
            "replicas": 0, "time_field": "window_start", "template": {"fields": {"avg": "double"}}});
        if let Some(o) = owner {
            v["owner"] = json!(o);
        }
        v
    };
    // Before owners: no owner in the template; job a takes it over.
    es_sink(settings(None))
        .await
        .expect("installs without an owner");
    es_sink(settings(Some("a"))).await.expect("a takes over");
    let t = index_template(&es, &prefix).await;
    assert_eq!(t["_meta"]["owner"], "a", "{t}");
    let e = es_sink_refused(settings(Some("b"))).await;
    assert!(
        e.contains(&format!("index template `{prefix}` on "))
            && e.contains("belongs to `a`, and this output's owner is `b`: two jobs writing the same indices overwrite each other's documents")
            && e.contains("set owner = \"a\""),
        "{e}"
    );
    let mut a = es_sink(settings(Some("a"))).await.expect("a starts again");
    a.write(vec![Record::new(
        json!({"host": "h", "avg": 5.5, "window_start": "2026-01-01T00:00:00.000Z"}).to_string(),
    )
    .with_key("h|0")])
        .await
        .unwrap();
    a.flush().await.unwrap();
    assert_eq!(count(&es, &format!("{prefix}-2026.01.01")).await, 1);
}
