//! The consumer-group source: rebalances surface as revoked / assigned
//! events, and records of a newly assigned partition are held back until
//! the runtime has answered with a seek (here: to a checkpointed offset); a
//! revoke completes only after a checkpoint covers the revoked partitions.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use flowline_connector_api::{PartitionId, Source, SourceEvent, SourcePosition};
use flowline_integration_tests::{create_topic, produce, unique, TestServices};
use flowline_kafka::{partition_id, KafkaSource, KafkaSourceConfig};

fn source(bootstrap: &str, topic: &str, group: &str) -> KafkaSource {
    let cfg: KafkaSourceConfig = serde_json::from_value(serde_json::json!({
        "bootstrap_servers": bootstrap, "topics": [topic], "group_id": group,
        "poll_timeout": "100ms", "properties": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}
    }))
    .unwrap();
    KafkaSource::new(cfg).unwrap()
}

/// Polls `src` until `pred` holds for what it saw, answering every
/// assignment with `seek(pos)`, and every revoke, after `ack_delay`, with a
/// completed checkpoint at `ack` (what the runtime does: it checkpoints the
/// revoked partitions' state).
async fn drive(
    src: &mut KafkaSource,
    pos: &SourcePosition,
    ack: &SourcePosition,
    ack_delay: Duration,
    seen: &mut Seen,
    until: impl Fn(&Seen) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !until(seen) {
        assert!(Instant::now() < deadline, "timed out; saw {seen:?}");
        match src.next().await.unwrap() {
            SourceEvent::Assigned(p) => {
                if !p.is_empty() {
                    seen.assigned_at.get_or_insert_with(Instant::now);
                }
                seen.assigned.extend(p);
                src.seek(pos).await.unwrap();
            }
            SourceEvent::Revoked(p) => {
                seen.revoked.extend(p);
                tokio::time::sleep(ack_delay).await;
                seen.acked_at = Some(Instant::now());
                src.on_checkpoint_complete(ack).await.unwrap();
            }
            SourceEvent::Records(b) => {
                for r in b {
                    seen.records.push((r.partition.clone().unwrap(), r.offset));
                }
            }
            _ => {}
        }
    }
}

#[derive(Debug, Default)]
struct Seen {
    assigned: BTreeSet<PartitionId>,
    assigned_at: Option<Instant>,
    acked_at: Option<Instant>,
    revoked: BTreeSet<PartitionId>,
    records: Vec<(PartitionId, u64)>,
}

/// How long the old owner takes to checkpoint revoked partitions.
const ACK_DELAY: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_hands_partitions_over_and_new_owner_starts_at_the_checkpoint() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("group");
    create_topic(&s.kafka_bootstrap, &topic, 4).await;
    produce(
        &s.kafka_bootstrap,
        &topic,
        (0..200).map(|i| (format!("key-{i}"), format!("{i}"), None)),
    )
    .await;
    let group = unique("g");
    let mut a = source(&s.kafka_bootstrap, &topic, &group);
    let mut seen_a = Seen::default();
    let none = SourcePosition::new();
    drive(&mut a, &none, &none, Duration::ZERO, &mut seen_a, |s| {
        s.assigned.len() == 4 && s.records.len() == 200
    })
    .await;

    let end = |p: &PartitionId| seen_a.records.iter().filter(|(q, _)| q == p).count() as u64;
    let ends: std::collections::BTreeMap<PartitionId, u64> = (0..4)
        .map(|p| partition_id(&topic, p))
        .map(|p| (p.clone(), end(&p)))
        .collect();
    assert!(ends.values().all(|e| *e > 20), "{ends:?}");
    // A "checkpoint" at offset 20 of every partition, then a second member joins.
    let mut pos = SourcePosition::new();
    for p in 0..4 {
        pos = pos.with(partition_id(&topic, p), 20);
    }
    // What `a` checkpoints when it gives partitions up: everything it read.
    let mut read = SourcePosition::new();
    for (p, e) in &ends {
        read = read.with(p.clone(), *e);
    }
    let mut b = source(&s.kafka_bootstrap, &topic, &group);
    let mut seen_b = Seen::default();
    // `a` keeps polling until `b` is done: a cooperative rebalance takes two
    // rounds, and the second needs every member to poll.
    let b_done = std::sync::atomic::AtomicBool::new(false);
    tokio::join!(
        drive(&mut a, &pos, &read, ACK_DELAY, &mut seen_a, |s| {
            !s.revoked.is_empty() && b_done.load(std::sync::atomic::Ordering::SeqCst)
        }),
        async {
            drive(&mut b, &pos, &none, Duration::ZERO, &mut seen_b, |s| {
                !s.assigned.is_empty()
                    && s.records.len() as u64
                        >= s.assigned.iter().map(|p| ends[p] - 20).sum::<u64>()
            })
            .await;
            b_done.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    );
    // Cooperative-sticky: what b got, a gave up; a keeps the rest.
    assert!(
        seen_b.assigned.is_subset(&seen_a.revoked) || seen_b.assigned == seen_a.revoked,
        "a revoked {:?}, b assigned {:?}",
        seen_a.revoked,
        seen_b.assigned
    );
    assert!(seen_b.assigned.len() < 4);
    // The revoke completed only once `a` had checkpointed: `b` got the
    // partitions after that, although `a` took ACK_DELAY to do it.
    let (acked, assigned) = (seen_a.acked_at.unwrap(), seen_b.assigned_at.unwrap());
    assert!(
        assigned >= acked,
        "b was assigned {:?} before a checkpointed the revoked partitions",
        acked - assigned
    );
    // b starts every partition it got at the checkpointed offset 20, in order.
    for p in &seen_b.assigned {
        let offs: Vec<u64> = seen_b
            .records
            .iter()
            .filter(|(q, _)| q == p)
            .map(|(_, o)| *o)
            .collect();
        assert_eq!(offs, (20..ends[p]).collect::<Vec<_>>(), "partition {p}");
    }
}

/// Members of `group` as the broker lists them.
fn members(bootstrap: &str, group: &str) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    c.fetch_group_list(Some(group), Duration::from_secs(10))
        .unwrap()
        .groups()
        .iter()
        .map(|g| g.members().len())
        .sum()
}

/// A source built but never run (`validate`, a job whose build failed
/// later) joins no group, so dropping it has no rebalance to answer while
/// closing, where librdkafka can hang (a CI run hung in this drop); once it
/// runs, it joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_never_ran_joins_no_group_and_drops_at_once() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("never-ran");
    create_topic(&s.kafka_bootstrap, &topic, 2).await;
    let group = unique("never-ran-group");
    let src = source(&s.kafka_bootstrap, &topic, &group);
    // Given the time a join takes, no member appears.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        assert_eq!(
            members(&s.kafka_bootstrap, &group),
            0,
            "joined before running"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let t0 = Instant::now();
    tokio::task::spawn_blocking(move || drop(src))
        .await
        .unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "drop took {:?}",
        t0.elapsed()
    );

    // Running, it joins.
    let mut src = source(&s.kafka_bootstrap, &topic, &group);
    let mut seen = Seen::default();
    let pos = SourcePosition::default();
    drive(&mut src, &pos, &pos, Duration::ZERO, &mut seen, |s| {
        !s.assigned.is_empty()
    })
    .await;
    assert_eq!(members(&s.kafka_bootstrap, &group), 1);
}

/// One step of a source as the runtime drives it (every assignment
/// answered, every revoke checkpointed); its error, if it failed.
async fn step(src: &mut KafkaSource) -> Option<flowline_connector_api::ConnectorError> {
    let next = tokio::time::timeout(Duration::from_millis(100), src.next()).await;
    match next {
        Ok(Ok(SourceEvent::Assigned(_))) => src.seek(&SourcePosition::default()).await.unwrap(),
        Ok(Ok(SourceEvent::Revoked(_))) => src
            .on_checkpoint_complete(&SourcePosition::default())
            .await
            .unwrap(),
        Ok(Ok(_)) | Err(_) => {}
        Ok(Err(e)) => return Some(e),
    }
    None
}

/// A consumer of another application in the group takes partitions whose
/// records then never reach the job, whose windows miss them with nothing
/// said: the source stops, naming that member. Two members of the job
/// itself (one client.id) share the group without a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_another_application_in_the_group_stops_the_source() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("foreign-member");
    create_topic(&s.kafka_bootstrap, &topic, 4).await;
    let group = unique("foreign-member-group");
    let mut ours = [
        source(&s.kafka_bootstrap, &topic, &group),
        source(&s.kafka_bootstrap, &topic, &group),
    ];
    // Past the check after their rebalance (3 s), with both members in.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(8) || members(&s.kafka_bootstrap, &group) < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the two never joined"
        );
        for src in &mut ours {
            if let Some(e) = step(src).await {
                panic!("a member of the job itself was refused: {e}");
            }
        }
    }
    // Another application's consumer (librdkafka's default client.id), with
    // an assignor the source's group protocol accepts (a Java consumer's
    // default list has it; one without it is refused by the broker).
    let stop = Arc::new(AtomicBool::new(false));
    let theirs = {
        let (b, t, g, stop) = (
            s.kafka_bootstrap.clone(),
            topic.clone(),
            group.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            let c: BaseConsumer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &b)
                .set("group.id", &g)
                .set("session.timeout.ms", "6000")
                .set("heartbeat.interval.ms", "500")
                .set("partition.assignment.strategy", "cooperative-sticky")
                .create()
                .unwrap();
            c.subscribe(&[&t]).unwrap();
            while !stop.load(Ordering::Acquire) {
                let _ = c.poll(Duration::from_millis(100));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let err = 'found: loop {
        assert!(Instant::now() < deadline, "no refusal in 60 s");
        for src in &mut ours {
            if let Some(e) = step(src).await {
                break 'found e;
            }
        }
    };
    stop.store(true, Ordering::Release);
    theirs.join().unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "consumer group `{group}` has a member that is not this job's (client.id `rdkafka`"
        )) && msg.contains(&format!("{topic}/"))
            && msg.contains("Fix: give this job a group_id of its own"),
        "{msg}"
    );
    assert!(
        matches!(
            err,
            flowline_connector_api::ConnectorError::Permanent { .. }
        ),
        "{err:?}"
    );
}
