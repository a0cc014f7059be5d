//! `auto_offset_reset = "latest"` on a topic that grows: the partitions the
//! job started with begin at their end, but a partition that appears later
//! begins at its earliest offset. Before, it began at its end offset when
//! the consumer was given it, which can be minutes after it was created:
//! what was written to it in between was skipped, with nothing said.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use flowline_connector_api::{PartitionId, Source, SourceEvent, SourcePosition};
use flowline_integration_tests::{create_topic, produce_messages, unique, Message, TestServices};
use flowline_kafka::{partition_id, KafkaSource, KafkaSourceConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};

fn source(bootstrap: &str, topic: &str, group: &str, bounded: bool) -> KafkaSource {
    let cfg: KafkaSourceConfig = serde_json::from_value(serde_json::json!({
        "bootstrap_servers": bootstrap, "topics": [topic], "group_id": group,
        "bounded": bounded, "auto_offset_reset": "latest", "poll_timeout": "100ms",
        // Looks for new partitions every second (default 5 min).
        "properties": {"topic.metadata.refresh.interval.ms": "1000"}
    }))
    .unwrap();
    KafkaSource::new(cfg).unwrap()
}

/// `n` records to partition `p`, payloads `{tag}-{i}`.
async fn put(bootstrap: &str, topic: &str, p: i32, tag: &str, n: usize) {
    let m = (0..n).map(|i| Message {
        key: Some(format!("k{i}")),
        payload: format!("{tag}-{i}"),
        timestamp: None,
        partition: Some(p),
    });
    produce_messages(bootstrap, topic, m).await;
}

async fn grow(bootstrap: &str, topic: &str, total: usize) {
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let r = admin
        .create_partitions(&[NewPartitions::new(topic, total)], &AdminOptions::new())
        .await
        .unwrap();
    assert!(r.iter().all(|x| x.is_ok()), "{r:?}");
}

/// What a source gave: partitions assigned, payloads read by partition.
#[derive(Debug, Default)]
struct Seen {
    assigned: BTreeSet<PartitionId>,
    read: BTreeMap<PartitionId, Vec<String>>,
}

impl Seen {
    fn count(&self, pid: &PartitionId) -> usize {
        self.read.get(pid).map_or(0, Vec::len)
    }

    fn payloads(&self, pid: &PartitionId) -> Vec<String> {
        self.read.get(pid).cloned().unwrap_or_default()
    }
}

/// Reads `src`, answering each assignment with `seek(pos)` as the runtime
/// does, until `done` holds for what it saw (60 s at most). A bounded source
/// is read to its end.
async fn read_until(
    src: &mut KafkaSource,
    pos: &SourcePosition,
    seen: &mut Seen,
    done: impl Fn(&Seen) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(seen) {
        assert!(Instant::now() < deadline, "timed out; saw {seen:?}");
        match src.next().await.unwrap() {
            SourceEvent::Assigned(p) => {
                seen.assigned.extend(p);
                src.seek(pos).await.unwrap();
            }
            SourceEvent::Records(b) => {
                for r in b {
                    let text = String::from_utf8_lossy(&r.payload).into_owned();
                    seen.read
                        .entry(r.partition.clone().unwrap())
                        .or_default()
                        .push(text);
                }
            }
            SourceEvent::End => return,
            _ => {}
        }
    }
}

fn tagged(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_added_while_the_job_runs_is_read_from_its_start() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let b = &s.kafka_bootstrap;
    let topic = unique("grow");
    create_topic(b, &topic, 1).await;
    put(b, &topic, 0, "before", 5).await;
    let (p0, p1) = (partition_id(&topic, 0), partition_id(&topic, 1));

    let mut src = source(b, &topic, &unique("g"), false);
    let none = SourcePosition::new();
    let mut seen = Seen::default();
    read_until(&mut src, &none, &mut seen, |s| s.assigned.contains(&p0)).await;
    // Latest at the job's start: what was written before it is not read.
    put(b, &topic, 0, "after", 5).await;
    read_until(&mut src, &none, &mut seen, |s| s.count(&p0) == 5).await;
    assert_eq!(seen.payloads(&p0), tagged("after", 5));

    // The topic grows and its new partition is written to before this
    // consumer is given it: the answer to that assignment comes only when
    // the source is read again, after the writes.
    grow(b, &topic, 2).await;
    put(b, &topic, 1, "new", 7).await;
    read_until(&mut src, &none, &mut seen, |s| s.count(&p1) >= 7).await;
    assert_eq!(
        seen.payloads(&p1),
        tagged("new", 7),
        "the new partition from its start"
    );
    assert_eq!(seen.payloads(&p0), tagged("after", 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_the_restored_checkpoint_does_not_hold_is_read_from_its_start() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let b = &s.kafka_bootstrap;
    let topic = unique("grown");
    create_topic(b, &topic, 2).await;
    put(b, &topic, 0, "done", 3).await;
    put(b, &topic, 1, "new", 4).await;
    let (p0, p1) = (partition_id(&topic, 0), partition_id(&topic, 1));
    // The job's checkpoint holds partition 0 at its end: partition 1 was
    // added while the job was down.
    let pos = SourcePosition::new().with(p0.clone(), 3);

    let mut src = source(b, &topic, &unique("g"), false);
    src.seek(&pos).await.unwrap(); // the restore at start
    let mut seen = Seen::default();
    read_until(&mut src, &pos, &mut seen, |s| s.count(&p1) >= 4).await;
    assert_eq!(seen.payloads(&p1), tagged("new", 4));
    put(b, &topic, 0, "more", 2).await;
    read_until(&mut src, &pos, &mut seen, |s| s.count(&p0) >= 2).await;
    assert_eq!(
        seen.payloads(&p0),
        tagged("more", 2),
        "partition 0 from its checkpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_run_again_reads_a_partition_added_since_the_last_from_its_start() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let b = &s.kafka_bootstrap;
    let topic = unique("grow-bounded");
    create_topic(b, &topic, 1).await;
    put(b, &topic, 0, "before", 3).await;
    let (p0, p1) = (partition_id(&topic, 0), partition_id(&topic, 1));
    let group = unique("g");
    let none = SourcePosition::new();

    // The first run starts at the end: it reads nothing.
    let mut first = source(b, &topic, &group, true);
    let mut seen = Seen::default();
    read_until(&mut first, &none, &mut seen, |_| false).await;
    assert!(seen.read.is_empty(), "{seen:?}");
    drop(first);

    grow(b, &topic, 2).await;
    put(b, &topic, 0, "after", 2).await;
    put(b, &topic, 1, "new", 4).await;
    // The next run restores the first one's checkpoint (partition 0 at 3).
    let mut again = source(b, &topic, &group, true);
    again.seek(&none.clone().with(p0.clone(), 3)).await.unwrap();
    let mut seen = Seen::default();
    read_until(&mut again, &none, &mut seen, |_| false).await;
    assert_eq!(seen.payloads(&p0), tagged("after", 2));
    assert_eq!(
        seen.payloads(&p1),
        tagged("new", 4),
        "the new partition from its start"
    );
}
