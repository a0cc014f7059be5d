//! A static member killed while it revokes partitions in the middle of a
//! rebalance, and started again as itself: every partition ends up with a
//! member. With the cooperative protocol the restarted member got the
//! first round's assignment back with no rebalance, no second round came,
//! and the partitions being moved stayed with no member while the group
//! said Stable (a trial: two of four partitions unread for good). A static
//! member now rebalances eagerly, every partition assigned in one round.
//!
//! Member `a` runs in a child process (this test run again with
//! `FLOWLINE_TEST_MEMBER` set) so that it can be SIGKILLed; `b` runs here.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flowline_connector_api::{Source, SourceEvent, SourcePosition};
use flowline_integration_tests::job::JobProcess;
use flowline_integration_tests::{create_topic, unique, TestServices};
use flowline_kafka::{KafkaSource, KafkaSourceConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};

const TEST: &str = "a_static_member_killed_while_it_revokes_and_started_again_leaves_no_partition_without_a_member";
const ROLE: &str = "FLOWLINE_TEST_MEMBER";

fn source(bootstrap: &str, topic: &str, group: &str, instance: &str) -> KafkaSource {
    let cfg: KafkaSourceConfig = serde_json::from_value(serde_json::json!({
        "bootstrap_servers": bootstrap, "topics": [topic], "group_id": group,
        "group_instance_id": instance, "poll_timeout": "100ms",
        "properties": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}
    }))
    .unwrap();
    KafkaSource::new(cfg).unwrap()
}

/// The child's side: member `a`. It answers assignments, says what it
/// holds, and on a revoke says so and then, as `hang`, never completes it
/// (a process stuck in its revoke's checkpoint, until it is killed).
async fn member(role: &str, bootstrap: &str, topic: &str, group: &str) {
    let mut a = source(bootstrap, topic, group, "a");
    let none = SourcePosition::new();
    loop {
        match a.next().await.unwrap() {
            SourceEvent::Assigned(p) => {
                a.seek(&none).await.unwrap();
                println!("assigned {}", p.len());
            }
            SourceEvent::Revoked(_) if role == "hang" => {
                println!("revoking");
                std::future::pending::<()>().await;
            }
            SourceEvent::Revoked(_) => a.on_checkpoint_complete(&none).await.unwrap(),
            _ => {}
        }
    }
}

/// Member `a` in a child process, and its lines.
fn spawn_member(
    role: &str,
    bootstrap: &str,
    topic: &str,
    group: &str,
) -> (JobProcess, mpsc::Receiver<String>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads", "1"])
        .env(ROLE, format!("{role} {bootstrap} {topic} {group}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map(JobProcess)
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// Waits for the child to print `want`.
fn wait_line(rx: &mpsc::Receiver<String>, want: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            // libtest prints the test's name first, on the same line.
            Ok(l) if l.ends_with(want) => return,
            Ok(_) => {}
            Err(e) => panic!("member a never printed {want:?}: {e}"),
        }
    }
}

/// The partitions each member of the group holds, read from the group's
/// description (the consumer protocol's assignment: version, then each
/// topic's name and partitions).
fn held(bootstrap: &str, group: &str) -> (String, Vec<i32>) {
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let list = c
        .fetch_group_list(Some(group), Duration::from_secs(10))
        .unwrap();
    let mut parts = Vec::new();
    let mut state = String::new();
    for g in list.groups() {
        state = g.state().to_string();
        for m in g.members() {
            let mut r = m.assignment().unwrap_or_default();
            let mut take = |n: usize| {
                let (h, rest) = r.split_at(n.min(r.len()));
                r = rest;
                h.to_vec()
            };
            take(2);
            let topics = i32::from_be_bytes(take(4).try_into().unwrap_or_default());
            for _ in 0..topics {
                let len = i16::from_be_bytes(take(2).try_into().unwrap_or_default());
                take(len.max(0) as usize);
                let n = i32::from_be_bytes(take(4).try_into().unwrap_or_default());
                for _ in 0..n {
                    parts.push(i32::from_be_bytes(take(4).try_into().unwrap_or_default()));
                }
            }
        }
    }
    parts.sort_unstable();
    (state, parts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_killed_while_it_revokes_and_started_again_leaves_no_partition_without_a_member(
) {
    if let Ok(role) = std::env::var(ROLE) {
        let v: Vec<&str> = role.split(' ').collect();
        return member(v[0], v[1], v[2], v[3]).await;
    }
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let k = s.kafka_bootstrap.clone();
    let topic = unique("static");
    create_topic(&k, &topic, 4).await;
    let group = unique("static-g");

    let (mut a, lines) = spawn_member("hang", &k, &topic, &group);
    wait_line(&lines, "assigned 4", Duration::from_secs(60));
    // Member b joins and answers whatever it is given; a is killed the
    // moment its revoke begins.
    let mut b = source(&k, &topic, &group, "b");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let polling = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let none = SourcePosition::new();
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                match tokio::time::timeout(Duration::from_millis(200), b.next()).await {
                    Ok(Ok(SourceEvent::Assigned(_))) => b.seek(&none).await.unwrap(),
                    Ok(Ok(SourceEvent::Revoked(_))) => {
                        b.on_checkpoint_complete(&none).await.unwrap()
                    }
                    Ok(Err(e)) => panic!("member b: {e}"),
                    _ => {}
                }
            }
        })
    };
    wait_line(&lines, "revoking", Duration::from_secs(60));
    a.kill().unwrap();
    a.wait().unwrap();
    let (mut a2, _lines) = spawn_member("ack", &k, &topic, &group);

    let t0 = Instant::now();
    let last = loop {
        let now = held(&k, &group);
        if now.0 == "Stable" && now.1 == [0, 1, 2, 3] {
            break now;
        }
        if t0.elapsed() > Duration::from_secs(45) {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    stop.store(true, std::sync::atomic::Ordering::Release);
    a2.kill().unwrap();
    a2.wait().unwrap();
    polling.await.unwrap();
    assert_eq!(
        last.1,
        [0, 1, 2, 3],
        "partitions held by the members of the group ({}) after a restarted as itself",
        last.0
    );
}
