//! The Kafka checkpoint store keeps one entry per job and partition in a
//! compacted topic. A topic of that name that was there already and
//! deletes by time (`cleanup.policy = delete`, the broker's default) would
//! drop the entry of a partition whose state has not changed for
//! `retention.ms`, and its next owner would start it afresh: the store
//! refuses such a topic at start, naming the fix, as it refuses one that
//! is not compacted (it would grow with every checkpoint).

use flowline_integration_tests::{create_topic_with, unique, TestServices};
use flowline_kafka::{KafkaCheckpointStore, KafkaStoreConfig};

fn connect(bootstrap: &str, topic: &str) -> Result<KafkaCheckpointStore, String> {
    let cfg: KafkaStoreConfig =
        serde_json::from_value(serde_json::json!({"bootstrap_servers": bootstrap, "topic": topic}))
            .unwrap();
    KafkaCheckpointStore::connect("job", &cfg).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_topic_that_deletes_by_time_is_refused() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let b = &s.kafka_bootstrap;
    for (configs, keeps) in [
        (vec![], false),
        (
            vec![("cleanup.policy", "delete"), ("retention.ms", "-1")],
            false,
        ),
        (
            vec![
                ("cleanup.policy", "compact,delete"),
                ("retention.ms", "604800000"),
            ],
            false,
        ),
        (vec![("cleanup.policy", "compact")], true),
        (
            vec![("cleanup.policy", "compact,delete"), ("retention.ms", "-1")],
            true,
        ),
    ] {
        let topic = unique("checkpoints");
        create_topic_with(b, &topic, 1, &configs).await;
        match (connect(b, &topic), keeps) {
            (Ok(_), true) => {}
            (Err(e), false) => {
                assert!(e.contains(&format!("topic `{topic}`")), "{e}");
                assert!(e.contains("cleanup.policy=compact"), "{e}");
            }
            (r, _) => panic!("{configs:?}: {:?}", r.map(|_| ())),
        }
    }
    // A topic it creates itself is compacted.
    connect(b, &unique("checkpoints-new")).unwrap();
}
