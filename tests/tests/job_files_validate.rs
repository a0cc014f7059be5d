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

/// The job files docker-compose mounts build against the real services, with
/// the compose host names swapped for the test services' (what `flowline
/// validate` does inside the container).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_job_file_builds() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    // The compose file's one-shot service creates the topics; here, under
    // fresh names.
    let t = flowline_integration_tests::unique("compose");
    for suffix in ["dead-letter", "late"] {
        flowline_integration_tests::create_topic(&s.kafka_bootstrap, &format!("{t}-{suffix}"), 1)
            .await;
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker/job.toml");
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("\"metrics-", &format!("\"{t}-"))
        .replace("kafka:9092", &s.kafka_bootstrap)
        .replace("http://elasticsearch:9200", &s.elasticsearch_url)
        .replace(
            "/var/lib/flowline/checkpoints",
            &dir.path().join("cp").display().to_string(),
        );
    let plan = flowline::config::JobPlan::parse(&text).unwrap();
    assert!(plan.anomalies.is_some() && plan.current.is_some());
    flowline::build::build_job(&plan, &flowline::registry()).unwrap();
}
