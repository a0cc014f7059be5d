//! Topics written with any of Kafka's compression codecs. librdkafka
//! builds zstd only when asked, and without it a batch compressed with
//! zstd (Kafka's Java producer, Vector, a broker with
//! `compression.type=zstd`) failed the job at its first record, again at
//! every restart: "Decompression (codec 0x4) … failed: Local: Not
//! implemented". Every codec is built in now, for reading and writing.

use std::time::Duration;

use flowline_integration_tests::job::{assert_file_windows, kafka_job_head, reference_windows};
use flowline_integration_tests::{
    create_topic, earliest_consumer, produce_messages_with, unique, Message, TestServices,
};
use rdkafka::Message as _;

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

fn event(i: usize) -> String {
    format!(
        r#"{{"host":"h{}","metric":"m","value":{i},"timestamp":"2026-01-01T00:{:02}:{:02}Z"}}"#,
        i % 7,
        (i / 60) % 60,
        i % 60
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_written_with_every_codec_is_read_whole_and_written_with_zstd() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let (input, output) = (unique("codecs"), unique("codecs-out"));
    create_topic(&s.kafka_bootstrap, &input, 2).await;
    create_topic(&s.kafka_bootstrap, &output, 1).await;
    let events: Vec<String> = (0..1000).map(event).collect();
    // Each codec writes its own fifth, so the topic holds batches of all.
    for (codec, part) in CODECS.iter().zip(events.chunks(200)) {
        let messages = part.iter().map(|e| Message {
            key: Some(e[9..11].to_string()),
            payload: e.clone(),
            timestamp: None,
            partition: None,
        });
        produce_messages_with(
            &s.kafka_bootstrap,
            &input,
            &[("compression.type", codec), ("linger.ms", "50")],
            messages,
        )
        .await;
    }

    // Two records the job refuses, written with zstd too: their dead
    // letters go to a topic through a producer compressing with zstd.
    produce_messages_with(
        &s.kafka_bootstrap,
        &input,
        &[("compression.type", "zstd")],
        ["not json 1", "not json 2"].map(|p| Message {
            key: None,
            payload: p.to_string(),
            timestamp: None,
            partition: Some(0),
        }),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let config = format!(
        "{head}bounded = true\n[sink]\ntype = \"file\"\npath = \"{}\"\n[window]\nsize = \"10s\"\n[dead_letter]\ntype = \"kafka\"\nbootstrap_servers = \"{b}\"\ntopic = \"{output}\"\n[dead_letter.properties]\n\"compression.type\" = \"zstd\"\n",
        out.display(),
        b = s.kafka_bootstrap,
        head = kafka_job_head(&input, &s.kafka_bootstrap),
    );
    let plan = flowline::config::JobPlan::parse(&config).unwrap();
    let job = flowline::build::build_job(&plan, &flowline::registry()).unwrap();
    let summary = tokio::time::timeout(Duration::from_secs(60), job.execute())
        .await
        .expect("the bounded run ends")
        .expect("the job succeeds on every codec");
    assert_eq!(summary.records_in, 1002, "{summary:?}");
    assert_file_windows(
        &out,
        &reference_windows(events.iter().map(|e| e.as_str()), 10_000),
    );

    let c = earliest_consumer(&s.kafka_bootstrap, &output);
    let mut dead = Vec::new();
    while dead.len() < 2 {
        let m = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .unwrap_or_else(|_| panic!("2 dead letters within 30 s, got {dead:?}"))
            .unwrap();
        dead.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
    }
    dead.sort();
    assert_eq!(dead, ["not json 1", "not json 2"]);
}
