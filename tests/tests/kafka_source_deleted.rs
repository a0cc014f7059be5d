//! Records deleted by the broker before the job read them (the job stopped
//! longer than the topic's retention, or `DeleteRecords`). The checkpoint
//! names an offset the log no longer holds; librdkafka skips to the log
//! start with no more than a log line, and the job's results silently
//! lacked those records. The loss is now loud: one dead letter naming the
//! offsets and the count, an error in the log, and the job goes on with
//! the records that are left, exactly. Both when a bounded run goes on
//! from its checkpoint and when a group member is assigned the partition
//! at its checkpointed offset.

use std::time::Duration;

use flowline_integration_tests::checkpointed::{bounded_file_job, stream_until};
use flowline_integration_tests::job::{assert_file_windows, reference_windows, run_to_end};
use flowline_integration_tests::{create_topic, produce, unique, TestServices};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn event(i: usize) -> String {
    format!(
        r#"{{"host":"h","metric":"m","value":{i},"timestamp":"2026-01-01T00:{:02}:{:02}Z"}}"#,
        i / 60,
        i % 60
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_deleted_before_they_were_read_are_one_loud_dead_letter() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("deleted");
    create_topic(&s.kafka_bootstrap, &topic, 1).await;
    let events: Vec<String> = (0..600).map(event).collect();
    let put = |range: std::ops::Range<usize>| {
        produce(
            &s.kafka_bootstrap,
            &topic,
            events[range]
                .iter()
                .map(|e| ("h".to_string(), e.clone(), None)),
        )
    };
    put(0..100).await;

    let dir = tempfile::tempdir().unwrap();
    let (config, out, dead) = bounded_file_job(&topic, &s.kafka_bootstrap, dir.path());
    let run = || run_to_end(&config, Duration::from_secs(60), "the run ends");
    let first = run().await;
    assert_eq!(first.records_in, 100);

    // While the job is stopped: 400 more, then the broker deletes
    // everything before offset 300 (as retention would).
    put(100..500).await;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &s.kafka_bootstrap)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(300))
        .unwrap();
    admin
        .delete_records(&tpl, &AdminOptions::new())
        .await
        .expect("DeleteRecords");

    let second = run().await;
    // The 200 records left, and the loss's dead letter.
    assert_eq!(second.records_in, 201, "{second:?}");
    assert_eq!(
        second.bad_records, 1,
        "one dead letter for the loss: {second:?}"
    );
    assert_eq!(second.late_records, 0, "{second:?}");
    let letters = std::fs::read_to_string(&dead).unwrap();
    let letter: serde_json::Value = serde_json::from_str(letters.trim()).unwrap();
    let reason = letter["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!(
            "offsets 100 to 299 of {topic}/0 (200 records) were deleted"
        )),
        "{letter}"
    );

    // The windows: those of the records that are left, exactly.
    let left: Vec<&str> = events[..100]
        .iter()
        .chain(&events[300..500])
        .map(String::as_str)
        .collect();
    assert_file_windows(&out, &reference_windows(left, 10_000));

    // The same as a consumer group member (the partition assigned at its
    // checkpointed offset, 500): 500..549 deleted while it was stopped.
    put(500..600).await;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(550))
        .unwrap();
    admin
        .delete_records(&tpl, &AdminOptions::new())
        .await
        .expect("DeleteRecords");
    // `latest` names where a first start begins, never where reading
    // goes on after records are gone.
    let log = stream_until(
        &config.replace(
            "bounded = true",
            "auto_offset_reset = \"latest\"\nbounded = true",
        ),
        dir.path(),
        "the 50 records left and the loss read",
        |p| p.records_in >= 51,
    )
    .await;
    let letters = std::fs::read_to_string(&dead).unwrap();
    assert_eq!(letters.lines().count(), 2, "{letters}\n{log}");
    assert!(
        letters.contains(&format!(
            "offsets 500 to 549 of {topic}/0 (50 records) were deleted"
        )),
        "{letters}\n{log}"
    );
    assert!(
        log.contains("records deleted before they were read"),
        "{log}"
    );
}
