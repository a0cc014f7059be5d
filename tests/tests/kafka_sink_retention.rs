//! The Kafka sink and a topic's time retention: a record whose timestamp is
//! already past the topic's `retention.ms` would be taken and then deleted
//! by the broker at its next retention check (so a replay of last month
//! into a topic that keeps 7 days lost its windows minutes after writing
//! them, silently). It is refused with the reason instead, and only it.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flowline_connector_api::{ConnectorError, Record, Sink, SinkFactory};
use flowline_integration_tests::{create_topic_with, earliest_consumer, unique, TestServices};
use rdkafka::Message;

const DAY: i64 = 86_400_000;
const WEEK: &str = "604800000";

async fn sink_to(
    configs: &[(&str, &str)],
) -> (&'static TestServices, String, flowline_kafka::KafkaSink) {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("retention");
    create_topic_with(&s.kafka_bootstrap, &topic, 1, configs).await;
    let cfg = serde_json::json!({"bootstrap_servers": s.kafka_bootstrap, "topic": topic});
    let sink = flowline_kafka::KafkaSinkFactory
        .build(flowline_connector_api::parse_config("kafka", cfg).unwrap())
        .unwrap();
    (s, topic, sink)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The payloads of the first `n` records of `topic`.
async fn payloads(bootstrap: &str, topic: &str, n: usize) -> BTreeSet<String> {
    let c = earliest_consumer(bootstrap, topic);
    let mut seen = BTreeSet::new();
    while seen.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .unwrap_or_else(|_| panic!("{n} records within 30 s, got {seen:?}"))
            .unwrap();
        seen.insert(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_past_the_topics_retention_is_refused_and_only_it() {
    let (s, topic, mut sink) = sink_to(&[("retention.ms", WEEK)]).await;
    let now = now_ms();
    let old = Record::new("old")
        .with_key("k")
        .with_timestamp(now - 8 * DAY);
    let batch = vec![
        Record::new("recent").with_timestamp(now - 6 * DAY),
        old.clone(),
        Record::new("stamped by the broker"),
    ];
    match sink.write(batch).await {
        Err(ConnectorError::BadRecords(rejected)) => {
            assert_eq!(rejected.len(), 1, "{rejected:?}");
            assert_eq!(rejected[0].record, old, "it comes back whole");
            let reason = &rejected[0].reason;
            assert!(
                reason.contains(&format!("`{topic}`'s retention.ms ({WEEK} = 7days)")),
                "{reason}"
            );
            assert!(
                reason.contains("Fix: raise the topic's retention.ms"),
                "{reason}"
            );
        }
        other => panic!("expected the old record back, got {other:?}"),
    }
    sink.flush().await.unwrap();
    let got = payloads(&s.kafka_bootstrap, &topic, 2).await;
    assert_eq!(
        got,
        ["recent", "stamped by the broker"].map(String::from).into()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_that_stamps_records_itself_keeps_them_for_ever_or_only_compacts_takes_any_timestamp(
) {
    // A compacted topic deletes nothing by time, whatever its retention.ms
    // (every topic has one): a backfill's windows were refused there.
    for configs in [
        [
            ("retention.ms", WEEK),
            ("message.timestamp.type", "LogAppendTime"),
        ],
        [
            ("retention.ms", "-1"),
            ("message.timestamp.type", "CreateTime"),
        ],
        [("retention.ms", WEEK), ("cleanup.policy", "compact")],
    ] {
        let (s, topic, mut sink) = sink_to(&configs).await;
        let old = Record::new("2026-01-01")
            .with_key("k")
            .with_timestamp(1_767_225_600_000);
        sink.write(vec![old]).await.unwrap();
        sink.flush().await.unwrap();
        assert_eq!(
            payloads(&s.kafka_bootstrap, &topic, 1).await.len(),
            1,
            "{configs:?}"
        );
    }
}
