//! Keys and partitions: a key seen on two source partitions fails the job
//! with a message naming the key and both partitions; partitioned keys do
//! not interfere.

mod common;

use std::time::Duration;

use common::*;
use flowline_connector_testkit::MemorySink;
use flowline_runtime::{JobConfig, RuntimeError, Tumbling};

fn setup() -> Setup {
    Setup {
        spec: Tumbling::of(Duration::from_secs(1)),
        ooo: 0,
        lateness: 0,
    }
}

#[test]
fn a_key_on_two_partitions_fails_the_job_with_a_clear_error() {
    let parts = vec![
        vec![rec("a", 10, 1), rec("shared", 20, 1)],
        vec![rec("shared", 30, 1)],
    ];
    let env = job(
        parts,
        &setup(),
        &MemorySink::new(),
        None,
        JobConfig::named("split").partitioned_by_key(true),
    );
    let err = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(env.execute())
        .unwrap_err();
    match &err {
        RuntimeError::KeySplit { key, first, second } => {
            assert_eq!(key, "\"shared\"");
            // Partitions run on tasks at once: either may claim it first.
            let mut both = [first.as_str(), second.as_str()];
            both.sort();
            assert_eq!(both, ["mem-0", "mem-1"]);
        }
        other => panic!("expected KeySplit, got {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("Fix: partition the input"), "{text}");
    // An engine message speaks of keys and partitions, not of one job's
    // data.
    assert!(!text.contains("host"), "{text}");
}

#[test]
fn each_partition_fires_on_its_own_watermark() {
    // Partition 0 runs far ahead; partition 1 stays behind. Windows of
    // partition 0 fire as its own watermark passes them.
    let p0: Vec<_> = (0..50).map(|i| rec("fast", i * 1_000, 1)).collect();
    let p1 = vec![rec("slow", 0, 1)];
    let out = MemorySink::new();
    let summary = run(job(
        vec![p0, p1],
        &setup(),
        &out,
        None,
        JobConfig::named("wm").partitioned_by_key(true),
    ));
    assert_eq!(summary.records_in, 51);
    let (finals, _) = finals(&out.payloads());
    assert_eq!(finals.len(), 51);
    assert!(finals.values().all(|v| *v == (1, 1)));
}

#[test]
fn bad_records_go_to_the_dead_letter_sink_with_their_reason() {
    use flowline_connector_testkit::MemorySource;
    use flowline_runtime::{DeadLetterFormat, StreamEnvironment};
    let out = MemorySink::new();
    let dlq = MemorySink::new();
    let env = StreamEnvironment::new(JobConfig::named("dlq"));
    let sink = env.add_sink("out", Box::new(out.clone()));
    env.dead_letter_sink("dlq", Box::new(dlq.clone()), DeadLetterFormat::Raw);
    env.source(
        "mem",
        Box::new(MemorySource::new(vec![vec![
            rec("a", 1, 1),
            flowline_connector_api::Record::new("garbage"),
            rec("a", 2, 2),
        ]])),
    )
    .try_map("decode", decode)
    .with_timestamps(|e: &Ev| e.ts)
    .key_by(|e: &Ev| e.key.clone())
    .window(Tumbling::of(Duration::from_secs(1)))
    .aggregate(SumCount)
    .sink_with(sink, line);
    let summary = run(env);
    assert_eq!(summary.bad_records, 1);
    assert_eq!(out.payloads(), vec!["a 0 1000 3 2 false"]);
    let bad = dlq.records();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].payload, b"garbage");
    assert_eq!(
        bad[0].header("flowline.error.reason"),
        Some(&b"expected key,ts,value: garbage"[..])
    );
    assert_eq!(bad[0].header("flowline.error.stage"), Some(&b"decode"[..]));
    assert_eq!(bad[0].header("flowline.source.offset"), Some(&b"1"[..]));
}
