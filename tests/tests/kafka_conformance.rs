//! The Kafka source and sink pass the connector testkit's suites against
//! the real broker: the bounded source (every record, each partition in
//! order, restore from a checkpointed position) and the sink (readable
//! after flush; nothing missing after a crash and a replay: at least once,
//! as a Kafka producer without transactions promises).

use std::time::Duration;

use flowline_connector_api::{parse_config, BoxSink, BoxSource, SinkFactory, SourceFactory};
use flowline_connector_testkit::sink::{sink_suite, Guarantee};
use flowline_connector_testkit::source::{bounded_source_suite, Expected};
use flowline_integration_tests::{create_topic, unique, TestServices};
use flowline_kafka::partition_id;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_source_passes_the_bounded_source_suite() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("suite-src");
    create_topic(&s.kafka_bootstrap, &topic, 3).await;
    let p: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &s.kafka_bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let mut expected = Expected::new();
    for part in 0..3 {
        let payloads: Vec<Vec<u8>> = (0..(40 + part * 25))
            .map(|i| format!("p{part}-{i}").into_bytes())
            .collect();
        for b in &payloads {
            p.send(
                FutureRecord::<(), _>::to(&topic).partition(part).payload(b),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        }
        expected = expected.partition(&partition_id(&topic, part).to_string(), payloads);
    }
    let settings = serde_json::json!({
        "bootstrap_servers": s.kafka_bootstrap, "topics": [topic],
        "group_id": unique("suite"), "bounded": true, "poll_timeout": "200ms"
    });
    let make = || {
        let c = parse_config("kafka", settings.clone())?;
        Ok(Box::new(flowline_kafka::KafkaSourceFactory.build(c)?) as BoxSource)
    };
    bounded_source_suite(make, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sink_passes_the_sink_suite_at_least_once() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("suite-sink");
    create_topic(&s.kafka_bootstrap, &topic, 2).await;
    let settings = serde_json::json!({"bootstrap_servers": s.kafka_bootstrap, "topic": topic});
    let make = || {
        let c = parse_config("kafka", settings.clone())?;
        Ok(Box::new(flowline_kafka::KafkaSinkFactory.build(c)?) as BoxSink)
    };
    // Read back: every message of the topic, from the start to the end
    // offsets at the time of reading.
    let bootstrap = s.kafka_bootstrap.clone();
    let read = || {
        let (bootstrap, topic) = (bootstrap.clone(), topic.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let c: BaseConsumer = rdkafka::ClientConfig::new()
                    .set("bootstrap.servers", &bootstrap)
                    .set("group.id", unique("read"))
                    .set("enable.auto.commit", "false")
                    .create()
                    .unwrap();
                let mut tpl = TopicPartitionList::new();
                let mut ends = Vec::new();
                for p in 0..2 {
                    let (_, hi) = c
                        .fetch_watermarks(&topic, p, Duration::from_secs(10))
                        .unwrap();
                    ends.push(hi);
                    tpl.add_partition_offset(&topic, p, Offset::Beginning)
                        .unwrap();
                }
                c.assign(&tpl).unwrap();
                let mut want: i64 = ends.iter().sum();
                let mut out = Vec::new();
                while want > 0 {
                    let m = c
                        .poll(Duration::from_secs(10))
                        .expect("a message before the end offsets")
                        .unwrap();
                    out.push(m.payload().unwrap_or_default().to_vec());
                    want -= 1;
                }
                out
            })
            .await
            .unwrap()
        }
    };
    sink_suite(make, read, Guarantee::AtLeastOnce).await;
}

/// Kafka headers are copied into records by default, and skipped with
/// `headers = false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_source_copies_headers_unless_told_not_to() {
    use flowline_connector_api::SourceEvent;
    use rdkafka::message::{Header, OwnedHeaders};
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("suite-headers");
    create_topic(&s.kafka_bootstrap, &topic, 1).await;
    let p: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &s.kafka_bootstrap)
        .create()
        .unwrap();
    p.send(
        FutureRecord::<(), _>::to(&topic)
            .payload("x")
            .headers(OwnedHeaders::new().insert(Header {
                key: "trace",
                value: Some("abc"),
            })),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    for headers in [true, false] {
        let c = parse_config(
            "kafka",
            serde_json::json!({"bootstrap_servers": s.kafka_bootstrap, "topics": [topic],
                "group_id": unique("h"), "bounded": true, "headers": headers}),
        )
        .unwrap();
        let mut src = flowline_kafka::KafkaSourceFactory.build(c).unwrap();
        let mut got = Vec::new();
        loop {
            match flowline_connector_api::Source::next(&mut src)
                .await
                .unwrap()
            {
                SourceEvent::Records(b) => got.extend(b),
                SourceEvent::End => break,
                _ => {}
            }
        }
        assert_eq!(got.len(), 1);
        let want: Vec<(String, Vec<u8>)> = if headers {
            vec![("trace".into(), b"abc".to_vec())]
        } else {
            vec![]
        };
        assert_eq!(got[0].headers, want, "headers = {headers}");
    }
}
