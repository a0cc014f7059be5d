//! The Kafka source in bounded mode through the metrics job: the same
//! windows as the same events read from a file; a crash and restart
//! continue from the checkpoint exactly; offsets are committed only with
//! checkpoints; start positions.

use std::time::Duration;

use flowline::config::JobPlan;
use flowline_connector_api::{Source, SourceEvent};
use flowline_connector_testkit::gate::{Gate, GatedFactory};
use flowline_integration_tests::{create_topic, metric_events, produce, unique, TestServices};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

fn job(source: &str, out: &std::path::Path, extra: &str) -> JobPlan {
    JobPlan::parse(&format!(
        "{source}\n[sink]\ntype = \"file\"\npath = \"{}\"\n\n[window]\nsize = \"10s\"\nout_of_orderness = \"2s\"\n{extra}",
        out.display()
    ))
    .unwrap()
}

fn kafka_source(bootstrap: &str, topic: &str, group: &str) -> String {
    format!("[source]\ntype = \"kafka\"\nbootstrap_servers = \"{bootstrap}\"\ntopics = [\"{topic}\"]\ngroup_id = \"{group}\"\nbounded = true\ntimestamp_field = \"timestamp\"\n")
}

fn run(plan: &JobPlan) -> flowline_runtime::JobSummary {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        flowline::build::build_job(plan, &flowline::registry())
            .unwrap()
            .execute()
            .await
            .unwrap()
    })
}

fn sorted_lines(p: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

async fn setup(
    n: u64,
) -> (
    &'static TestServices,
    String,
    tempfile::TempDir,
    Vec<(String, String)>,
) {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("metrics");
    create_topic(&s.kafka_bootstrap, &topic, 3).await;
    let events = metric_events(9, n, 7);
    produce(
        &s.kafka_bootstrap,
        &topic,
        events.iter().map(|(h, j)| (h.clone(), j.clone(), None)),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("events.ndjson"),
        events
            .iter()
            .map(|(_, j)| format!("{j}\n"))
            .collect::<String>(),
    )
    .unwrap();
    (s, topic, dir, events)
}

#[test]
fn bounded_kafka_job_equals_the_file_job_and_commits_its_offsets() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (s, topic, dir, _) = rt.block_on(setup(27_000));
    let d = dir.path();
    let file_src = format!(
        "[source]\ntype = \"file\"\npath = \"{}\"\n",
        d.join("events.ndjson").display()
    );
    run(&job(&file_src, &d.join("file.ndjson"), ""));
    let group = unique("g");
    let summary = run(&job(
        &kafka_source(&s.kafka_bootstrap, &topic, &group),
        &d.join("kafka.ndjson"),
        &format!("[checkpoint]\ndir = \"{}\"\n", d.join("chk").display()),
    ));
    assert_eq!(summary.records_in, 27_000);
    let (want, got) = (
        sorted_lines(&d.join("file.ndjson")),
        sorted_lines(&d.join("kafka.ndjson")),
    );
    assert!(want.len() > 2_000);
    assert!(
        got == want,
        "windows differ: {} from Kafka vs {} from the file",
        got.len(),
        want.len()
    );

    // Committed offsets: the end of every partition, after the final checkpoint.
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &s.kafka_bootstrap)
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition(&topic, p);
    }
    let committed = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    let mut total = 0;
    for e in committed.elements() {
        let (_, high) = c
            .fetch_watermarks(&topic, e.partition(), Duration::from_secs(10))
            .unwrap();
        assert_eq!(
            e.offset(),
            Offset::Offset(high),
            "partition {} committed",
            e.partition()
        );
        total += high;
    }
    assert_eq!(total, 27_000);
}

#[test]
fn bounded_kafka_job_restarted_after_a_crash_writes_the_uninterrupted_output() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (s, topic, dir, _) = rt.block_on(setup(60_000));
    drop(rt);
    let d = dir.path();
    run(&job(
        &kafka_source(&s.kafka_bootstrap, &topic, &unique("g")),
        &d.join("want.ndjson"),
        "",
    ));
    let want = sorted_lines(&d.join("want.ndjson"));

    let group = unique("g");
    // Interval checkpoints are off in effect: each crashed run checkpoints
    // once, after exactly `at_checkpoint` records, and is crashed after
    // `at_crash` (a gate holds the rest back, so the points are record
    // counts, whatever the machine's speed).
    let plan = job(
        &kafka_source(&s.kafka_bootstrap, &topic, &group),
        &d.join("got.ndjson"),
        &format!(
            "[checkpoint]\ndir = \"{}\"\ninterval = \"1h\"\n",
            d.join("chk").display()
        ),
    );
    for (at_checkpoint, at_crash) in [(9_000u64, 11_000u64), (20_000, 23_500)] {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let gate = Gate::closed_at(at_checkpoint);
        let mut registry = flowline::registry();
        registry
            .register_source(GatedFactory::new(
                flowline_kafka::KafkaSourceFactory,
                gate.clone(),
            ))
            .unwrap();
        let finished = rt.block_on(async {
            let h = flowline::build::build_job(&plan, &registry)
                .unwrap()
                .start()
                .unwrap();
            let m = h.metrics();
            let records_in = || m.records_in.load(std::sync::atomic::Ordering::SeqCst);
            let wait = |n: u64| {
                let (h, records_in) = (&h, &records_in);
                async move {
                    let t0 = std::time::Instant::now();
                    while records_in() < n {
                        assert!(!h.is_finished(), "the job ended before {n} records");
                        assert!(
                            t0.elapsed() < Duration::from_secs(120),
                            "timed out after 120 s waiting for {n} records; read {}",
                            records_in()
                        );
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            };
            wait(at_checkpoint).await;
            assert!(h.checkpoint().await.unwrap().is_some());
            gate.open_to(at_crash);
            wait(at_crash).await;
            h.is_finished()
        });
        drop(rt);
        assert!(!finished, "the job finished before the crash at {at_crash}");
        assert_eq!(gate.passed(), at_crash);
    }
    let summary = run(&plan);
    assert!(summary.restored_from.is_some());
    assert!(
        summary.records_in < 60_000,
        "the restart re-read everything: {}",
        summary.records_in
    );
    // Partitions interleave differently from run to run; per partition the
    // output is the same, so the sorted documents are equal, none doubled.
    let got = sorted_lines(&d.join("got.ndjson"));
    assert_eq!(
        got.len(),
        want.len(),
        "documents after crashes vs uninterrupted"
    );
    assert!(got == want, "the documents differ after crashes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_positions_earliest_latest_and_timestamp() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("positions");
    create_topic(&s.kafka_bootstrap, &topic, 1).await;
    produce(
        &s.kafka_bootstrap,
        &topic,
        (0..100).map(|i| ("k".to_string(), format!("{i}"), Some(1_000_000 + i * 1_000))),
    )
    .await;
    for (reset, want) in [("earliest", 100), ("latest", 0), ("1050000", 50)] {
        let cfg: flowline_kafka::KafkaSourceConfig = serde_json::from_value(serde_json::json!({
            "bootstrap_servers": s.kafka_bootstrap, "topics": [topic], "group_id": unique("g"), "bounded": true, "auto_offset_reset": reset
        }))
        .unwrap();
        let mut src = flowline_kafka::KafkaSource::new(cfg).unwrap();
        let mut got = Vec::new();
        loop {
            match src.next().await.unwrap() {
                SourceEvent::Records(b) => got.extend(b),
                SourceEvent::End => break,
                _ => {}
            }
        }
        assert_eq!(got.len(), want, "auto_offset_reset = {reset}");
        if reset == "1050000" {
            assert_eq!(got[0].payload, b"50");
            assert_eq!(got[0].timestamp, Some(1_050_000));
        }
    }
}
