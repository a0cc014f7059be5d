//! Produce and consume with rdkafka against the real broker.

use std::collections::BTreeMap;
use std::time::Duration;

use flowline_integration_tests::{unique, TestServices};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};

#[tokio::test]
async fn keyed_messages_round_trip_in_partition_order() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("roundtrip");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &s.kafka_bootstrap)
        .create()
        .expect("admin client");
    let res = admin
        .create_topics(
            &[NewTopic::new(&topic, 3, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create_topics request");
    assert!(res.iter().all(|r| r.is_ok()), "{res:?}");

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &s.kafka_bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    let n = 300;
    for i in 0..n {
        let key = format!("host-{}", i % 7);
        let payload = format!("{{\"seq\":{i}}}");
        producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("delivery of {i} failed: {e}"));
    }

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &s.kafka_bootstrap)
        .set("group.id", unique("roundtrip-group"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut partition_of: BTreeMap<String, i32> = BTreeMap::new();
    let mut got = 0;
    while got < n {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {got} of {n} messages arrived within 30 s"))
            .expect("consume");
        let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        assert_eq!(
            *partition_of.entry(key.clone()).or_insert(m.partition()),
            m.partition(),
            "key {key} moved partition"
        );
        seen.entry(key)
            .or_default()
            .push(v["seq"].as_u64().unwrap());
        got += 1;
    }
    assert_eq!(seen.len(), 7);
    for (key, seqs) in &seen {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "order of {key} broken: {seqs:?}"
        );
        let k: u64 = key.trim_start_matches("host-").parse().unwrap();
        assert_eq!(seqs, &(0..n).filter(|i| i % 7 == k).collect::<Vec<_>>());
    }
}
