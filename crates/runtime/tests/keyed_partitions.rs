//! Keys and partitions: a record whose key another source partition
//! already holds is a dead letter naming the key and both partitions, and
//! the job goes on; partitioned keys do not interfere.

mod common;

use std::time::Duration;

use common::*;
use flowline_connector_testkit::MemorySink;
use flowline_runtime::{JobConfig, Tumbling};

/// Sums by key in 1 s windows over these partitions, with a dead-letter
/// sink: the summary, the windows and the dead letters.
fn run_with_dead_letters(
    parts: Vec<Vec<flowline_connector_api::Record>>,
    config: JobConfig,
) -> (flowline_runtime::JobSummary, MemorySink, MemorySink) {
    use flowline_connector_testkit::MemorySource;
    use flowline_runtime::{DeadLetterFormat, StreamEnvironment};
    let (out, dlq) = (MemorySink::new(), MemorySink::new());
    let env = StreamEnvironment::new(config);
    let sink = env.add_sink("out", Box::new(out.clone()));
    env.dead_letter_sink("dlq", Box::new(dlq.clone()), DeadLetterFormat::Raw);
    env.source("mem", Box::new(MemorySource::new(parts)))
        .try_map("decode", decode)
        .with_timestamps(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key.clone())
        .window(Tumbling::of(Duration::from_secs(1)))
        .aggregate(SumCount)
        .sink_with(sink, line);
    (run(env), out, dlq)
}

fn setup() -> Setup {
    Setup {
        spec: Tumbling::of(Duration::from_secs(1)),
        ooo: 0,
        lateness: 0,
    }
}

#[test]
fn a_key_on_a_second_partition_is_a_dead_letter_and_the_job_lives_on() {
    // The split record is in the middle of its partition: what comes
    // after it is counted. Before, the job failed here, and again at
    // every restart on the same record.
    let parts = vec![
        vec![rec("a", 10, 1), rec("shared", 20, 1), rec("shared", 40, 1)],
        vec![rec("b", 5, 1), rec("shared", 30, 1), rec("b", 50, 1)],
    ];
    let (summary, out, dlq) =
        run_with_dead_letters(parts, JobConfig::named("split").partitioned_by_key(true));
    assert_eq!(summary.records_in, 6);
    assert_eq!(summary.bad_records, 1, "{summary:?}");
    let (finals, _) = finals(&out.payloads());
    let count = |k: &str| finals.iter().find(|(w, _)| w.0 == k).map(|(_, v)| v.0);
    assert_eq!((count("a"), count("b")), (Some(1), Some(2)));
    // Partitions run on tasks at once: either may claim `shared` first.
    // The other's record of it is the dead letter, counted nowhere.
    let bad = dlq.records();
    assert_eq!(bad.len(), 1);
    let owner = if bad[0].payload == b"shared,30,1" {
        "mem-0"
    } else {
        assert_eq!(bad[0].payload, b"shared,20,1");
        "mem-1"
    };
    let kept = if owner == "mem-0" { 2 } else { 1 };
    assert_eq!(count("shared"), Some(kept), "{finals:?}");
    let reason = String::from_utf8_lossy(bad[0].header("flowline.error.reason").unwrap());
    assert!(
        reason.contains("key \"shared\" was seen on source partition")
            && reason.contains("Fix: partition the input")
            && reason.contains(&format!(
                "The key stays with `{owner}`; this record is not counted"
            )),
        "{reason}"
    );
    // An engine message speaks of keys and partitions, not of one job's
    // data.
    assert!(!reason.contains("host"), "{reason}");
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
    let (summary, out, dlq) = run_with_dead_letters(
        vec![vec![
            rec("a", 1, 1),
            flowline_connector_api::Record::new("garbage"),
            rec("a", 2, 2),
        ]],
        JobConfig::named("dlq"),
    );
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
