//! Backpressure: when the runtime stops taking batches, the source pauses
//! its partitions and keeps polling, so a stall longer than
//! `max.poll.interval.ms` neither costs the group membership (no rebalance)
//! nor loses or repeats a record.

use std::time::{Duration, Instant};

use flowline_connector_api::{Source, SourceEvent, SourcePosition};
use flowline_integration_tests::{create_topic, produce, unique, TestServices};
use flowline_kafka::{KafkaSource, KafkaSourceConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_longer_than_max_poll_interval_keeps_the_partitions_and_every_record() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("backpressure");
    create_topic(&s.kafka_bootstrap, &topic, 2).await;
    let n = 5_000u64;
    produce(
        &s.kafka_bootstrap,
        &topic,
        (0..n).map(|i| (format!("key-{}", i % 7), format!("{i}"), None)),
    )
    .await;
    // Small batches and two in flight: the stall below exhausts them at once.
    // The broker's minimum session timeout is 6 s; max.poll.interval.ms must
    // not be below it.
    let cfg: KafkaSourceConfig = serde_json::from_value(serde_json::json!({
        "bootstrap_servers": s.kafka_bootstrap, "topics": [topic], "group_id": unique("bp"),
        "poll_timeout": "100ms", "max_batch": 100, "prefetch_batches": 2,
        "properties": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500",
                       "max.poll.interval.ms": "7000"}
    }))
    .unwrap();
    let mut src = KafkaSource::new(cfg).unwrap();
    let mut got: Vec<(String, u64)> = Vec::new();
    let mut assignments = 0;
    let mut revokes = 0;
    let mut stalled = false;
    let deadline = Instant::now() + Duration::from_secs(90);
    while (got.len() as u64) < n {
        assert!(
            Instant::now() < deadline,
            "timed out with {} records",
            got.len()
        );
        match src.next().await.unwrap() {
            SourceEvent::Assigned(p) if !p.is_empty() => {
                assignments += 1;
                src.seek(&SourcePosition::new()).await.unwrap();
            }
            SourceEvent::Revoked(p) if !p.is_empty() => revokes += 1,
            SourceEvent::Records(b) => {
                got.extend(
                    b.iter()
                        .map(|r| (r.partition.clone().unwrap().to_string(), r.offset)),
                );
                if !stalled {
                    // The runtime is busy for longer than max.poll.interval.ms.
                    stalled = true;
                    tokio::time::sleep(Duration::from_secs(9)).await;
                }
            }
            _ => {}
        }
    }
    assert!(stalled);
    assert_eq!(
        (assignments, revokes),
        (1, 0),
        "the stall cost the group membership"
    );
    // Every record once, in offset order per partition.
    let mut by_part: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for (p, o) in &got {
        by_part.entry(p.clone()).or_default().push(*o);
    }
    let mut total = 0;
    for (p, offs) in &by_part {
        assert_eq!(
            *offs,
            (0..offs.len() as u64).collect::<Vec<_>>(),
            "partition {p}"
        );
        total += offs.len() as u64;
    }
    assert_eq!(total, n);
    src.close().await.unwrap();
}
