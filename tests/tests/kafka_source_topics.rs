//! One source reading several topics at once: every record keeps its own
//! topic, partition and offset, whether the topics are named (`topics`,
//! bounded, assigned by the source) or matched (`topic_pattern`, subscribed
//! in a group). The consumer thread keeps the topic name of the last
//! message by its librdkafka handle instead of reading it per message; a
//! record put under the wrong topic here would be skipped as not owned, or
//! counted in the other topic's partition. And a topic created while the
//! job runs that matches its `topic_pattern` is read from its start, even
//! with `auto_offset_reset = "latest"` (as a partition added later is).
//! A compacted topic is read with a warning: the broker keeps only the
//! newest record of each key, so windows may count fewer than were written.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flowline_connector_api::{PartitionId, Source, SourceEvent, SourcePosition};
use flowline_integration_tests::{create_topic, produce_messages, unique, Message, TestServices};
use flowline_kafka::{partition_id, KafkaSource, KafkaSourceConfig};

const PER_PARTITION: usize = 3_000;
const PARTITIONS: i32 = 2;

/// Two topics of two partitions, each partition with payloads
/// `{topic}|{partition}|{i}`, written in turns so that fetches interleave.
async fn two_topics(bootstrap: &str, prefix: &str) -> Vec<String> {
    let topics: Vec<String> = (0..2).map(|i| format!("{prefix}-{i}")).collect();
    for t in &topics {
        create_topic(bootstrap, t, PARTITIONS).await;
    }
    for chunk in 0..3 {
        for t in &topics {
            let from = chunk * PER_PARTITION / 3;
            let to = (chunk + 1) * PER_PARTITION / 3;
            let m = (0..PARTITIONS).flat_map(|p| {
                (from..to).map(move |i| Message {
                    key: None,
                    payload: format!("{t}|{p}|{i}"),
                    timestamp: None,
                    partition: Some(p),
                })
            });
            produce_messages(bootstrap, t, m.collect::<Vec<_>>()).await;
        }
    }
    topics
}

/// Reads `src` until every partition of `topics` has `PER_PARTITION`
/// records (or a bounded source ends), answering assignments as the runtime
/// does: (offset, payload) per partition id.
async fn read_all(
    src: &mut KafkaSource,
    topics: &[String],
) -> BTreeMap<PartitionId, Vec<(u64, String)>> {
    let mut read: BTreeMap<PartitionId, Vec<(u64, String)>> = BTreeMap::new();
    let total = topics.len() * PARTITIONS as usize * PER_PARTITION;
    let deadline = Instant::now() + Duration::from_secs(90);
    while read.values().map(Vec::len).sum::<usize>() < total {
        assert!(
            Instant::now() < deadline,
            "timed out; read {:?}",
            counts(&read)
        );
        match src.next().await.unwrap() {
            SourceEvent::Assigned(_) => src.seek(&SourcePosition::new()).await.unwrap(),
            SourceEvent::Records(batch) => {
                for r in batch {
                    let payload = String::from_utf8(r.payload).unwrap();
                    read.entry(r.partition.unwrap())
                        .or_default()
                        .push((r.offset, payload));
                }
            }
            SourceEvent::End => break,
            _ => {}
        }
    }
    read
}

fn counts(read: &BTreeMap<PartitionId, Vec<(u64, String)>>) -> BTreeMap<&PartitionId, usize> {
    read.iter().map(|(p, v)| (p, v.len())).collect()
}

/// Each partition of each topic holds exactly its own payloads, at their
/// offsets, in order, once.
fn assert_each_in_its_place(read: &BTreeMap<PartitionId, Vec<(u64, String)>>, topics: &[String]) {
    let mut want = BTreeMap::new();
    for t in topics {
        for p in 0..PARTITIONS {
            let records: Vec<(u64, String)> = (0..PER_PARTITION)
                .map(|i| (i as u64, format!("{t}|{p}|{i}")))
                .collect();
            want.insert(partition_id(t, p), records);
        }
    }
    assert_eq!(counts(read), counts(&want));
    for (pid, records) in &want {
        let got = &read[pid];
        if let Some(i) = (0..records.len()).find(|&i| got[i] != records[i]) {
            panic!("{pid}: record {i} is {:?}, want {:?}", got[i], records[i]);
        }
    }
}

/// Each record's payload under its partition id.
fn keep(read: &mut BTreeMap<PartitionId, Vec<String>>, batch: Vec<flowline_connector_api::Record>) {
    for r in batch {
        let text = String::from_utf8(r.payload).unwrap();
        read.entry(r.partition.unwrap()).or_default().push(text);
    }
}

fn source(config: serde_json::Value) -> KafkaSource {
    let cfg: KafkaSourceConfig = serde_json::from_value(config).unwrap();
    KafkaSource::new(cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_named_topics_read_bounded_keep_each_record_in_its_topic_and_partition() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topics = two_topics(&s.kafka_bootstrap, &unique("named")).await;
    let mut src = source(serde_json::json!({
        "bootstrap_servers": s.kafka_bootstrap, "topics": topics,
        "group_id": unique("g"), "bounded": true, "poll_timeout": "100ms",
        // Small fetches: the topics' messages alternate within batches.
        "properties": {"max.partition.fetch.bytes": "5000"}
    }));
    src.seek(&SourcePosition::new()).await.unwrap();
    let read = read_all(&mut src, &topics).await;
    assert_each_in_its_place(&read, &topics);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_matched_by_a_pattern_keep_each_record_in_its_topic_and_partition() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let prefix = unique("matched");
    let topics = two_topics(&s.kafka_bootstrap, &prefix).await;
    let mut src = source(serde_json::json!({
        "bootstrap_servers": s.kafka_bootstrap, "topic_pattern": format!("^{prefix}-.*"),
        "group_id": unique("g"), "poll_timeout": "100ms",
        "properties": {"max.partition.fetch.bytes": "5000"}
    }));
    let read = read_all(&mut src, &topics).await;
    assert_each_in_its_place(&read, &topics);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_while_the_job_runs_that_matches_the_pattern_is_read_from_its_start() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let b = &s.kafka_bootstrap;
    let prefix = unique("later");
    let (first, second) = (format!("{prefix}-a"), format!("{prefix}-b"));
    create_topic(b, &first, 1).await;
    let put = |topic: String, tag: &'static str, n: usize| async move {
        let m = (0..n).map(|i| Message {
            key: None,
            payload: format!("{tag}-{i}"),
            timestamp: None,
            partition: Some(0),
        });
        produce_messages(b, &topic, m.collect::<Vec<_>>()).await;
    };
    put(first.clone(), "before", 3).await;
    let mut src = source(serde_json::json!({
        "bootstrap_servers": b, "topic_pattern": format!("^{prefix}-.*"),
        "group_id": unique("g"), "poll_timeout": "100ms",
        // The job starts at the end of what is there; new topics are looked
        // for every second (librdkafka's default: 5 min).
        "auto_offset_reset": "latest",
        "properties": {"topic.metadata.refresh.interval.ms": "1000"}
    }));
    let mut read: BTreeMap<PartitionId, Vec<String>> = BTreeMap::new();
    let (a, later) = (partition_id(&first, 0), partition_id(&second, 0));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut written = false;
    while read.get(&later).map_or(0, Vec::len) < 4 {
        assert!(Instant::now() < deadline, "timed out; read {read:?}");
        match src.next().await.unwrap() {
            SourceEvent::Assigned(p) => {
                src.seek(&SourcePosition::new()).await.unwrap();
                if p.contains(&a) && !written {
                    // Created and written before this consumer is given it.
                    put(first.clone(), "after", 2).await;
                    create_topic(b, &second, 1).await;
                    put(second.clone(), "new", 4).await;
                    written = true;
                }
            }
            SourceEvent::Records(batch) => keep(&mut read, batch),
            _ => {}
        }
    }
    assert_eq!(
        read[&later],
        ["new-0", "new-1", "new-2", "new-3"],
        "from its start"
    );
    // The first topic from the end it had when the job started.
    let deadline = Instant::now() + Duration::from_secs(30);
    while read.get(&a).map_or(0, Vec::len) < 2 {
        assert!(Instant::now() < deadline, "timed out; read {read:?}");
        if let SourceEvent::Records(batch) = src.next().await.unwrap() {
            keep(&mut read, batch);
        }
    }
    assert_eq!(read[&a], ["after-0", "after-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_is_named_in_a_warning_and_a_deleting_one_is_not() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let validate = |topic: &str| {
        let p = dir.path().join("job.toml");
        std::fs::write(
            &p,
            format!(
                "[source]\ntype = \"kafka\"\nbootstrap_servers = \"{}\"\ntopics = [\"{topic}\"]\ngroup_id = \"{topic}\"\n[sink]\ntype = \"file\"\npath = \"{}\"\n[window]\nsize = \"10s\"\n",
                s.kafka_bootstrap,
                dir.path().join("out.ndjson").display()
            ),
        )
        .unwrap();
        let out = std::process::Command::new(flowline_integration_tests::job::bin("flowline"))
            .args(["validate", "--config"])
            .arg(&p)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let compacted = unique("compacted");
    flowline_integration_tests::create_topic_with(
        &s.kafka_bootstrap,
        &compacted,
        1,
        &[("cleanup.policy", "compact,delete")],
    )
    .await;
    let log = validate(&compacted);
    assert!(
        log.contains("the topic is compacted") && log.contains(&compacted),
        "{log}"
    );
    assert!(!log.contains("consumer property"), "{log}");
    let deleting = unique("deleting");
    create_topic(&s.kafka_bootstrap, &deleting, 1).await;
    let log = validate(&deleting);
    assert!(!log.contains("compacted"), "{log}");
}
