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
    // The source topic must exist (validate and run refuse a missing one).
    let t = flowline_integration_tests::unique("example");
    flowline_integration_tests::create_topic(&s.kafka_bootstrap, &t, 1).await;
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("topics = [\"metrics\"]", &format!("topics = [\"{t}\"]"))
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
    for topic in [t.clone(), format!("{t}-dead-letter"), format!("{t}-late")] {
        flowline_integration_tests::create_topic(&s.kafka_bootstrap, &topic, 1).await;
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker/job.toml");
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("\"metrics-", &format!("\"{t}-"))
        .replace("topics = [\"metrics\"]", &format!("topics = [\"{t}\"]"))
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

/// `flowline validate` checks what a start would meet: a source topic that
/// does not exist, a search server that does not answer, and a checkpoint
/// taken from another job graph are each refused with the setting and the
/// fix; the same file with the real services passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_checks_topics_search_servers_and_checkpoints() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let t = flowline_integration_tests::unique("validate");
    flowline_integration_tests::create_topic(&s.kafka_bootstrap, &t, 1).await;
    let job = |topic: &str, url: &str, size: &str| {
        let p = dir.path().join("job.toml");
        std::fs::write(
            &p,
            format!(
                "[source]\ntype = \"kafka\"\nbootstrap_servers = \"{}\"\ntopics = [\"{topic}\"]\ngroup_id = \"{t}\"\nconnect_timeout = \"5s\"\n\n[sink]\ntype = \"elasticsearch\"\nurl = \"{url}\"\nindex = \"{t}-w\"\nrequest_timeout = \"2s\"\n\n[window]\nsize = \"{size}\"\n\n[checkpoint]\ndir = \"{}\"\ninterval = \"1s\"\n",
                s.kafka_bootstrap,
                dir.path().join("cp").display()
            ),
        )
        .unwrap();
        let out = std::process::Command::new(flowline_integration_tests::job::bin("flowline"))
            .args(["validate", "--config"])
            .arg(&p)
            .env("FLOWLINE_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let es = s.elasticsearch_url.as_str();
    let (ok, text) = job(&t, es, "10s");
    assert!(
        ok && text.contains("restore    none: a fresh start"),
        "{text}"
    );

    let (ok, text) = job(&format!("{t}-nope"), es, "10s");
    assert!(
        !ok && text.contains("does not exist") && text.contains("Fix"),
        "{text}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (ok, text) = job(&t, &format!("http://127.0.0.1:{port}"), "10s");
    assert!(
        !ok && text.contains("[sink] elasticsearch") && text.contains("did not answer"),
        "{text}"
    );

    // A checkpoint of this job (10 s windows), then the same directory
    // under a job with 20 s windows.
    assert!(job(&t, es, "10s").0, "the file the job runs with");
    let cfg = dir.path().join("job.toml");
    let mut child = flowline_integration_tests::job::spawn_job(&cfg, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while flowline_integration_tests::job::checkpoint_ids(&dir.path().join("cp")).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint:\n{}",
            flowline_integration_tests::job::job_log(&cfg, 0)
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "{}",
            flowline_integration_tests::job::job_log(&cfg, 0)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (ok, text) = job(&t, es, "10s");
    assert!(ok && text.contains("restore    checkpoint"), "{text}");
    let (ok, text) = job(&t, es, "20s");
    assert!(
        !ok && text.contains("[checkpoint]") && text.contains("job graph"),
        "{text}"
    );
}
