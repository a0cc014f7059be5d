//! The example job files in the repository build against the real services
//! (what `flowline validate` does), with their addresses swapped for the
//! test services'.

use flowline_integration_tests::TestServices;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_to_elasticsearch_example_builds() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/kafka-to-elasticsearch.toml"
    );
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("127.0.0.1:9092", &s.kafka_bootstrap)
        .replace("http://127.0.0.1:9200", &s.elasticsearch_url);
    let plan = flowline::config::JobPlan::parse(&text).unwrap();
    assert_eq!(
        (plan.source.kind.as_str(), plan.sink.kind.as_str()),
        ("kafka", "elasticsearch")
    );
    assert!(plan.checkpoint.is_some() && plan.dead_letter.is_some() && plan.late.is_some());
    flowline::build::build_job(&plan, &flowline::registry()).unwrap();
}
