//! Kafka in, Kafka out, through a SIGKILL: the job writes its windows and
//! dead letters to Kafka topics and is killed after it wrote many of them
//! with no checkpoint since its start (the one a fresh job takes). The restart replays the input from
//! that checkpoint and computes the same windows again; the topic must hold
//! each window once, equal to a plain group-by of the events, and each
//! dead letter once. (A Kafka window topic held every window written before
//! the kill twice: only the dead letters were kept from being written
//! again.)

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use flowline_integration_tests::job::{
    assert_same_windows, job_log, kafka_job_head, lines, produce_lines, reference_windows,
    spawn_job, wait_exit, wait_running, window_docs,
};
use flowline_integration_tests::{create_topic, unique, TestServices};
use flowline_metric_generator::GeneratorConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

const WINDOW_MS: i64 = 10_000;

/// Every record of `topic` (partition, key, payload), read to its end
/// offsets.
fn read_topic(bootstrap: &str, topic: &str) -> Vec<(i32, String, String)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let t = Duration::from_secs(10);
    let md = c.fetch_metadata(Some(topic), t).unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in md.topics()[0].partitions() {
        let (lo, hi) = c.fetch_watermarks(topic, p.id(), t).unwrap();
        if hi > lo {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .unwrap();
            ends.insert(p.id(), hi);
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return out;
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() {
        assert!(Instant::now() < deadline, "reading {topic} to its end");
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.unwrap();
        let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
        out.push((m.partition(), text(m.key()), text(m.payload())));
        if ends
            .get(&m.partition())
            .is_some_and(|&hi| m.offset() + 1 >= hi)
        {
            ends.remove(&m.partition());
        }
    }
    out
}

/// The end offsets' sum: how many records `topic` holds.
fn held(bootstrap: &str, topic: &str) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let t = Duration::from_secs(10);
    let md = c.fetch_metadata(Some(topic), t).unwrap();
    md.topics()[0]
        .partitions()
        .iter()
        .map(|p| c.fetch_watermarks(topic, p.id(), t).unwrap().1)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_and_dead_letters_on_kafka_are_written_once_through_a_sigkill() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("kill-kafka-out");
    let (out, dlq) = (format!("{topic}-windows"), format!("{topic}-dlq"));
    create_topic(&s.kafka_bootstrap, &topic, 2).await;
    create_topic(&s.kafka_bootstrap, &out, 2).await;
    create_topic(&s.kafka_bootstrap, &dlq, 1).await;
    let events = lines(GeneratorConfig {
        hosts: 4,
        seed: 31,
        count: Some(40_000),
        max_out_of_order_ms: 1_000,
        poison_fraction: 0.005,
        ..GeneratorConfig::default()
    });
    let poison = events.iter().filter(|e| e.2).count();
    assert!(poison > 100, "{poison}");
    let reference = reference_windows(
        events.iter().filter(|e| !e.2).map(|e| e.1.as_str()),
        WINDOW_MS,
    );
    let cut = events.len() / 2;
    produce_lines(&s.kafka_bootstrap, &topic, &events[..cut]).await;

    let dir = tempfile::tempdir().unwrap();
    let config = |name: &str, bounded: bool| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "{head}bounded = {bounded}\n[sink]\ntype = \"kafka\"\nbootstrap_servers = \"{b}\"\ntopic = \"{out}\"\n[dead_letter]\ntype = \"kafka\"\nbootstrap_servers = \"{b}\"\ntopic = \"{dlq}\"\n[window]\nsize = \"10s\"\nout_of_orderness = \"2s\"\nidle_timeout = \"2s\"\n[checkpoint]\ndir = \"{cp}\"\ninterval = \"1h\"\n",
                head = kafka_job_head(&topic, &s.kafka_bootstrap),
                b = s.kafka_bootstrap,
                cp = dir.path().join("cp").display(),
            ),
        )
        .unwrap();
        path
    };

    // Given the first half of the events, killed once it has written a
    // quarter of the windows: all after the checkpoint it took at its
    // start, the only one. The restart gets the rest too.
    let first = config("killed.toml", false);
    let mut child = spawn_job(&first, 0);
    let quarter = reference.len() as i64 / 4;
    wait_running(
        "a quarter of the windows written",
        &mut child,
        &first,
        0,
        Duration::from_secs(120),
        || held(&s.kafka_bootstrap, &out) >= quarter,
    )
    .await;
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    let before = held(&s.kafka_bootstrap, &out);
    produce_lines(&s.kafka_bootstrap, &topic, &events[cut..]).await;

    let last = config("final.toml", true);
    let mut child = spawn_job(&last, 1);
    let st = wait_exit(&mut child, &last, 1, Duration::from_secs(180)).await;
    let log = job_log(&last, 1);
    assert!(st.success(), "final run ({st}):\n{log}");

    let records = read_topic(&s.kafka_bootstrap, &out);
    let (docs, twice) = window_docs(records.iter().map(|r| r.2.as_str()));
    if docs.len() != reference.len() {
        // Once (CI, 2026-12-05) a whole partition's windows were missing:
        // the broker's 7-day retention had deleted them (their timestamps
        // are of 2026-01). The Kafka sink now refuses such records, and the
        // test broker keeps everything; say whether the topic or the read
        // lost them if it happens again.
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &s.kafka_bootstrap)
            .create()
            .unwrap();
        for p in 0..2 {
            let marks = c.fetch_watermarks(&out, p, Duration::from_secs(10));
            let read = records.iter().filter(|r| r.0 == p).count();
            eprintln!("{out}/{p}: watermarks {marks:?}, {read} records read");
        }
        eprintln!("final run's log:\n{log}");
    }
    assert!(
        twice.is_empty(),
        "{} windows written more than once ({before} written before the kill), first {:?}\n{log}",
        twice.len(),
        &twice[..twice.len().min(3)]
    );
    assert_same_windows(&docs, &reference);
    let letters = read_topic(&s.kafka_bootstrap, &dlq);
    assert_eq!(letters.len(), poison, "each dead letter once");
}
