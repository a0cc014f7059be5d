//! Dead letters once across processes. Two `flowline run` processes share
//! a topic (keyed by host, checkpoints in a Kafka topic, dead letters to a
//! Kafka topic). The first dead-letters records after its last checkpoint
//! and is SIGKILLed; the second takes its partitions and replays them from
//! that checkpoint. Before, it wrote those dead letters again (a trial:
//! 130 of 2 964 twice): a sink read back what was written after the
//! checkpoint it restored at start only. Now each partition's entry in the
//! store keeps the sinks' states of its checkpoint, and the sink reads back
//! what the partitions' previous owner wrote after them (`Sink::rewind`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flowline_integration_tests::job::{
    get_json, get_text, http_addr, job_log, kafka_job_head, lines, sigterm, spawn_job,
    wait_progress,
};
use flowline_integration_tests::{create_topic, produce, unique, TestServices};
use flowline_metric_generator::GeneratorConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};

/// Every dead letter's id in `topic` (one partition), with how often.
fn dead_letter_ids(bootstrap: &str, topic: &str) -> BTreeMap<String, usize> {
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("dlq-reader"))
        .create()
        .unwrap();
    let (_, high) = c
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut ids = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut read = 0;
    while read < high {
        assert!(Instant::now() < deadline, "read {read} of {high}");
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.unwrap();
        read = m.offset() + 1;
        let id = m
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "flowline.dead_letter.id"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        *ids.entry(id).or_insert(0) += 1;
    }
    ids
}

/// Active partitions of a process, from `/api/status`.
async fn active(addr: &str) -> usize {
    get_json(addr, "/api/status")
        .await
        .and_then(|v| {
            v["partitions"]
                .as_array()
                .map(|a| a.iter().filter(|p| p["active"] == true).count())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_written_once_when_its_partition_moves_after_a_crash() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let k = &s.kafka_bootstrap;
    let topic = unique("rewind");
    create_topic(k, &topic, 4).await;
    let (windows, dlq) = (format!("{topic}-windows"), format!("{topic}-dlq"));
    create_topic(k, &windows, 1).await;
    create_topic(k, &dlq, 1).await;
    let events = lines(GeneratorConfig {
        hosts: 8,
        seed: 13,
        count: Some(8_000),
        poison_fraction: 0.02,
        ..GeneratorConfig::default()
    });
    let bad = events.iter().filter(|e| e.2).count();
    assert!(bad > 40, "{bad} bad records");
    let records = |sl: &[(String, String, bool)]| {
        sl.iter()
            .map(|(h, l, _)| (h.clone(), l.clone(), None))
            .collect::<Vec<_>>()
    };
    let (first, second) = events.split_at(events.len() / 2);
    produce(k, &topic, records(first)).await;

    let dir = tempfile::tempdir().unwrap();
    // A checkpoints only when it gives partitions up (an hour apart
    // otherwise), so that what it dead-letters after the join is after
    // its last checkpoint when it is killed.
    let write = |name: &str, interval: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                r#"{head}poll_timeout = "100ms"
keyed_by = ["host"]
[source.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[sink]
type = "kafka"
bootstrap_servers = "{k}"
topic = "{windows}"
[dead_letter]
type = "kafka"
bootstrap_servers = "{k}"
topic = "{dlq}"
[window]
size = "30s"
out_of_orderness = "2s"
[checkpoint]
interval = "{interval}"
[checkpoint.kafka]
bootstrap_servers = "{k}"
topic = "{topic}-checkpoints"
[http]
listen = "127.0.0.1:0"
"#,
                head = kafka_job_head(&topic, k),
            ),
        )
        .unwrap();
        path
    };
    let (cfg_a, cfg_b) = (write("a.toml", "1h"), write("b.toml", "500ms"));
    let mut a = spawn_job(&cfg_a, 0);
    let addr_a = http_addr(&mut a, &cfg_a, 0).await;
    let half = first.len() as u64;
    wait_progress(
        "A to read the first half",
        &addr_a,
        &mut a,
        &cfg_a,
        0,
        Duration::from_secs(90),
        |p| p.records_in >= half,
    )
    .await;
    let mut b = spawn_job(&cfg_b, 0);
    let addr_b = http_addr(&mut b, &cfg_b, 0).await;
    let t0 = Instant::now();
    while active(&addr_b).await == 0 || active(&addr_a).await == 4 {
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "B never took partitions:\n{}\n{}",
            job_log(&cfg_a, 0),
            job_log(&cfg_b, 0)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    produce(k, &topic, records(second)).await;
    // Both halves read, and every bad record dead-lettered once, before A
    // goes: A's dead letters of the second half follow its last checkpoint.
    let t0 = Instant::now();
    loop {
        let ids = dead_letter_ids(k, &dlq);
        if ids.len() == bad {
            assert!(ids.values().all(|n| *n == 1), "before the kill: {ids:?}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "{} of {bad} dead letters:\n{}",
            ids.len(),
            job_log(&cfg_a, 0)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    a.kill().unwrap();
    a.wait().unwrap();
    // B takes A's partitions once A's session is over, and replays them to
    // their end.
    let t0 = Instant::now();
    loop {
        let m = get_text(&addr_b, "/metrics").await.unwrap_or_default();
        let lags: Vec<&str> = m
            .lines()
            .filter(|l| l.starts_with("flowline_consumer_lag{"))
            .collect();
        if lags.len() == 4 && lags.iter().all(|l| l.ends_with(" 0")) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "B never caught up on 4 partitions: {lags:?}\n{}",
            job_log(&cfg_b, 0)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Its dead letters written (the sink flushes at each checkpoint).
    let status = get_json(&addr_b, "/api/status").await.unwrap();
    let cp = status["last_checkpoint"][0].as_u64().unwrap_or(0);
    wait_progress(
        "B to checkpoint",
        &addr_b,
        &mut b,
        &cfg_b,
        0,
        Duration::from_secs(30),
        |p| p.checkpoint > cp + 1,
    )
    .await;
    let ids = dead_letter_ids(k, &dlq);
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty() && ids.len() == bad,
        "{} dead letters, {} of them more than once ({bad} bad records):\n{}",
        ids.len(),
        twice.len(),
        job_log(&cfg_b, 0)
    );
    sigterm(&mut b, &cfg_b, 0, Duration::from_secs(60)).await;
}
