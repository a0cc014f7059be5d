//! A topic deleted and created again while the job was stopped (a purge,
//! a test cluster reset, a topic created again by a deploy script). The
//! checkpoint names an offset past the end of the new log, as Kafka
//! offsets start again at 0. A bounded run took the partition for read to
//! its end and ended having read nothing of the new log; a streaming run
//! counted the new log with no more than a librdkafka log line. Now both
//! read the new log from its start, as new records, and the rewind is one
//! loud dead letter naming the partition and both offsets.
//!
//! (A new log that has grown past the checkpointed offset cannot be told
//! from the old one here: rust-rdkafka does not give topic ids.)

use std::time::Duration;

use flowline_integration_tests::checkpointed::{bounded_file_job, stream_until};
use flowline_integration_tests::job::{assert_file_windows, reference_windows, run_to_end};
use flowline_integration_tests::{create_topic, produce, recreate_topic, unique, TestServices};

/// Event `i` of hour `h`: one a second, so every 10 s window holds 10.
fn event(h: usize, i: usize) -> String {
    format!(
        r#"{{"host":"h","metric":"m","value":{i},"timestamp":"2026-01-01T{h:02}:{:02}:{:02}Z"}}"#,
        i / 60,
        i % 60
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_again_is_read_from_its_start_with_one_loud_dead_letter() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("recreated");
    create_topic(&s.kafka_bootstrap, &topic, 1).await;
    let put = |events: &[String]| {
        produce(
            &s.kafka_bootstrap,
            &topic,
            events
                .iter()
                .map(|e| ("h".to_string(), e.clone(), None))
                .collect::<Vec<_>>(),
        )
    };
    let old: Vec<String> = (0..300).map(|i| event(0, i)).collect();
    put(&old).await;

    let dir = tempfile::tempdir().unwrap();
    let (config, out, dead) = bounded_file_job(&topic, &s.kafka_bootstrap, dir.path());
    let run = || run_to_end(&config, Duration::from_secs(60), "the run ends");
    assert_eq!(run().await.records_in, 300);

    // While the job is stopped, the topic is created again with 200 new
    // records: offsets 0..199, before the checkpointed 300.
    recreate_topic(&s.kafka_bootstrap, &topic, 1).await;
    let new: Vec<String> = (0..200).map(|i| event(1, i)).collect();
    put(&new).await;

    let second = run().await;
    assert_eq!(
        (second.records_in, second.bad_records),
        (201, 1),
        "the 200 new records and the rewind's dead letter: {second:?}"
    );
    let letters = std::fs::read_to_string(&dead).unwrap();
    let letter: serde_json::Value = serde_json::from_str(letters.trim()).unwrap();
    let reason = letter["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("the log of {topic}/0 ends before offset 300"))
            && reason.contains("goes on from offset 0"),
        "{letter}"
    );
    // Every window: the old log's from the first run, the new log's now.
    let all: Vec<&str> = old.iter().chain(&new).map(String::as_str).collect();
    assert_file_windows(&out, &reference_windows(all, 10_000));

    // A streaming run after the topic is created again once more
    // (checkpointed at 200): librdkafka resets to the log start itself.
    recreate_topic(&s.kafka_bootstrap, &topic, 1).await;
    put(&(0..100).map(|i| event(2, i)).collect::<Vec<_>>()).await;
    // `latest` names where a first start begins, never where reading
    // goes on after records are gone.
    let log = stream_until(
        &config.replace(
            "bounded = true",
            "auto_offset_reset = \"latest\"\nbounded = true",
        ),
        dir.path(),
        "the 100 new records and the rewind read",
        |p| p.records_in >= 101,
    )
    .await;
    let letters = std::fs::read_to_string(&dead).unwrap();
    assert_eq!(letters.lines().count(), 2, "{letters}\n{log}");
    assert!(
        letters.contains(&format!("the log of {topic}/0 ends before offset 200")),
        "{letters}\n{log}"
    );
    assert!(
        log.contains("the partition's log ends before the offset this job was to read next"),
        "{log}"
    );
}
