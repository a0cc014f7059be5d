//! `metric-generator --output kafka://...`: what is produced is what a plain
//! consumer reads back, the same events as `--output file:`, keyed by host
//! (one host's events in one partition).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use flowline_integration_tests::{earliest_consumer, unique, TestServices};
use rdkafka::Message;

/// The generator binary, built next to this test (`cargo nextest run
/// --workspace` builds every binary).
fn generator() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let bin = dir.join("metric-generator");
    assert!(
        bin.is_file(),
        "{} is missing. Fix: cargo build -p flowline-metric-generator (scripts/test does)",
        bin.display()
    );
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generator_to_kafka_round_trips_keyed_by_host() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("generated");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    let args = [
        "--hosts",
        "8",
        "--count",
        "5000",
        "--rate",
        "0",
        "--seed",
        "9",
        "--start",
        "2026-01-01T00:00:00Z",
        "--max-out-of-order-ms",
        "500",
    ];
    let out = Command::new(generator())
        .args(args)
        .arg("--output")
        .arg(format!("kafka://{}/{topic}", s.kafka_bootstrap))
        .args(["--partitions", "3"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("created topic") && stderr.contains("delivered 5000 of 5000 events"),
        "{stderr}"
    );
    let st = Command::new(generator())
        .args(args)
        .arg("--output")
        .arg(format!("file:{}", file.display()))
        .status()
        .unwrap();
    assert!(st.success());
    let want: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();

    let c = earliest_consumer(&s.kafka_bootstrap, &topic);
    let mut got = Vec::new();
    let mut partitions: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    while got.len() < want.len() {
        let m = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .expect("all events within 30 s")
            .unwrap();
        let payload = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(
            m.key(),
            Some(v["host"].as_str().unwrap().as_bytes()),
            "keyed by host"
        );
        partitions
            .entry(v["host"].as_str().unwrap().to_string())
            .or_default()
            .insert(m.partition());
        got.push(payload);
    }
    assert!(
        partitions.values().all(|p| p.len() == 1),
        "a host spread over partitions: {partitions:?}"
    );
    assert!(
        partitions.values().flatten().collect::<BTreeSet<_>>().len() > 1,
        "all hosts in one partition"
    );
    let (mut a, mut b) = (got.clone(), want.clone());
    a.sort();
    b.sort();
    assert!(a == b, "Kafka and file outputs differ");
}
