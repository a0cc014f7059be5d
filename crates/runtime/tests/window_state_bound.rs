//! `JobConfig::max_state_entries`: a record that would open keyed-state
//! entries past the bound is a dead letter with the reason, in none of its
//! windows, and the job goes on; entries come back when their windows
//! close. Checked against a plain group-by of the records not refused.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use flowline_connector_api::Record;
use flowline_connector_testkit::{MemorySink, MemorySource};
use flowline_runtime::*;

const FULL: &str = "the job's keyed state is full";

/// Runs `partitions` (batches of `batch` records) through decode, key,
/// `window` and a sum with the bound `limit`, on `workers` workers (0: no
/// exchange, `partitioned_by_key`): the summary, the output lines and the
/// dead letters.
fn bounded(
    partitions: Vec<Vec<Record>>,
    batch: usize,
    window: WindowSpec,
    limit: u64,
    workers: usize,
) -> (JobSummary, Vec<String>, Vec<Record>) {
    let (out, dlq) = (MemorySink::new(), MemorySink::new());
    let cfg = JobConfig::named("bound")
        .workers(workers.max(1))
        .partitioned_by_key(workers == 0);
    let source = MemorySource::new(partitions).with_batch_size(batch);
    let env = pipeline(cfg, limit, Box::new(source), window, &out, &dlq);
    let summary = run(env);
    (summary, out.payloads(), dlq.records())
}

/// The job: decode, key, `window`, a sum, with the bound `limit` and a
/// raw dead-letter sink.
fn pipeline(
    cfg: JobConfig,
    limit: u64,
    source: flowline_connector_api::BoxSource,
    window: WindowSpec,
    out: &MemorySink,
    dlq: &MemorySink,
) -> StreamEnvironment {
    let cfg = cfg
        .max_state_entries(Some(limit))
        .out_of_orderness(Duration::from_millis(500));
    let env = StreamEnvironment::new(cfg);
    let sink = env.add_sink("out", Box::new(out.clone()));
    env.dead_letter_sink("dlq", Box::new(dlq.clone()), DeadLetterFormat::Raw);
    env.source("mem", source)
        .try_map("decode", decode)
        .with_timestamps(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key.clone())
        .window(window)
        .aggregate(SumCount)
        .sink_with(sink, line);
    env
}

fn reason(r: &Record) -> String {
    String::from_utf8_lossy(r.header("flowline.error.reason").unwrap_or_default()).into_owned()
}

#[test]
fn keys_past_the_bound_are_dead_letters_until_their_window_closes() {
    let input = vec![
        rec("a", 100, 1),
        rec("b", 200, 2),
        rec("c", 300, 3),
        // A fourth key in the open window: refused.
        rec("d", 400, 4),
        // A key the window holds: counted.
        rec("a", 450, 5),
        // A window not opened yet, while [0,1000) still holds three.
        rec("z", 2_500, 6),
        // [0,1000) has fired (watermark 1999 after z): room again.
        rec("y", 2_600, 7),
        rec("d", 2_700, 8),
        rec("x", 2_800, 9),
        // The third entry of [2000,3000) was taken by y, d: x fits, w not.
        rec("w", 2_900, 10),
    ];
    // Behind the exchange, and without it.
    for workers in [1, 0] {
        let (summary, lines, dlq) = bounded(
            vec![input.clone()],
            1,
            Tumbling::of(Duration::from_secs(1)),
            3,
            workers,
        );
        let mut lines = lines;
        lines.sort();
        assert_eq!(
            lines,
            vec![
                "a 0 1000 6 2 false",
                "b 0 1000 2 1 false",
                "c 0 1000 3 1 false",
                "d 2000 3000 8 1 false",
                "x 2000 3000 9 1 false",
                "y 2000 3000 7 1 false",
            ]
        );
        let refused: Vec<&[u8]> = dlq.iter().map(|r| &r.payload[..]).collect();
        assert_eq!(refused, vec![&b"d,400,4"[..], b"z,2500,6", b"w,2900,10"]);
        assert_eq!(summary.bad_records, 3);
        for r in &dlq {
            let why = reason(r);
            assert!(
                why.contains(FULL) && why.contains("max_state_entries = 3") && why.contains("Fix:"),
                "{why}"
            );
            assert_eq!(r.header("flowline.error.stage"), Some(&b"window"[..]));
        }
    }
}

#[test]
fn a_record_of_several_windows_is_taken_whole_or_refused_whole() {
    // Sliding windows of 2 s every 1 s: each record belongs to two.
    let input = vec![
        // Opens [-1000,1000) and [0,2000): 2 of 3.
        rec("a", 500, 1),
        // Would open two more with room for one: in neither.
        rec("b", 600, 2),
        // Opens only [1000,3000) (a is in [0,2000) already): 3 of 3.
        rec("a", 1_500, 3),
    ];
    for workers in [1, 0] {
        let (summary, mut lines, dlq) = bounded(
            vec![input.clone()],
            1,
            Sliding::of(Duration::from_secs(2), Duration::from_secs(1)),
            3,
            workers,
        );
        lines.sort();
        assert_eq!(
            lines,
            vec![
                "a -1000 1000 1 1 false",
                "a 0 2000 4 2 false",
                "a 1000 3000 3 1 false",
            ]
        );
        assert_eq!(summary.bad_records, 1);
        assert_eq!(dlq.len(), 1);
        assert_eq!(dlq[0].payload, b"b,600,2");
        assert!(
            reason(&dlq[0]).contains("would open 2 more"),
            "{}",
            reason(&dlq[0])
        );
    }
}

/// Random keys on random partitions behind the exchange, 2 workers, more
/// keys per window than the bound: every record is in its windows or
/// refused once, the windows equal a group-by of the records not refused,
/// and windows keep taking keys to the end (entries come back as windows
/// close).
#[test]
fn behind_the_exchange_the_windows_equal_a_group_by_of_what_was_not_refused() {
    let limit = 25u64;
    for seed in 1..=4u64 {
        let mut rng = Rng(seed);
        let mut partitions = vec![Vec::new(); 3];
        let mut all = BTreeMap::new();
        for i in 0..3_000i64 {
            // 100 ms apart, up to 300 ms out of order: 10 per window per
            // partition, 30 keys.
            let ts = i * 100 / 3 + rng.below(300) as i64;
            let key = format!("k{}", rng.below(30));
            let r = rec(&key, ts, i);
            all.insert(i, (key, ts));
            partitions[rng.below(3) as usize].push(r);
        }
        let (summary, lines, dlq) = bounded(
            partitions,
            5,
            Tumbling::of(Duration::from_secs(1)),
            limit,
            2,
        );
        assert_eq!(summary.late_records, 0, "seed {seed}");
        let mut refused = BTreeSet::new();
        for r in &dlq {
            assert!(reason(r).contains(FULL), "seed {seed}: {}", reason(r));
            let e = decode(r).unwrap();
            assert!(
                refused.insert(e.value),
                "seed {seed}: {} refused twice",
                e.value
            );
        }
        assert!(!refused.is_empty(), "seed {seed}: the bound never bit");
        assert_eq!(summary.bad_records, refused.len() as u64, "seed {seed}");
        let mut expected: Finals = BTreeMap::new();
        for (i, (key, ts)) in &all {
            if refused.contains(i) {
                continue;
            }
            let start = ts - ts.rem_euclid(1_000);
            let acc = expected
                .entry((key.clone(), start, start + 1_000))
                .or_insert((0, 0));
            acc.0 += i;
            acc.1 += 1;
        }
        let (got, firsts) = finals(&lines);
        assert_eq!(got, expected, "seed {seed}");
        assert!(
            firsts.values().all(|&n| n == 1),
            "seed {seed}: a window twice"
        );
        let mut per_window: BTreeMap<i64, u64> = BTreeMap::new();
        for (_, start, _) in got.keys() {
            *per_window.entry(*start).or_default() += 1;
        }
        let windows: BTreeSet<i64> = all
            .values()
            .map(|(_, ts)| ts - ts.rem_euclid(1_000))
            .collect();
        let windows: Vec<i64> = windows.into_iter().collect();
        // No window bound on keys per window here: a worker that fired a
        // window gives its entries back while the other may still take
        // keys of that window (the bound is on live entries, at once).
        // Entries come back as windows close: keys keep being taken to
        // the end (which of them depends on how the partitions interleave,
        // so one window may be refused whole while others hold its room).
        for run in windows.chunks(5) {
            let n: u64 = run.iter().filter_map(|w| per_window.get(w)).sum();
            assert!(n > 0, "seed {seed}: windows {run:?} took no key");
        }
    }
}

/// Entries restored from a checkpoint count against the bound: a job
/// checkpointed with three keys in an open window and crashed, then
/// restored, refuses the same records as one that never stopped.
#[test]
fn restored_entries_count_against_the_bound() {
    use flowline_connector_testkit::gate::{Gate, Gated};
    let input = vec![
        rec("a", 100, 1),
        rec("b", 200, 2),
        rec("c", 300, 3),
        rec("d", 400, 4),
        rec("e", 500, 5),
        rec("z", 2_500, 6),
        rec("y", 2_600, 7),
    ];
    let build = |source, out: &MemorySink, dlq: &MemorySink, workers| {
        let cfg = JobConfig::named("bound-restore")
            .workers(workers)
            .checkpoint_interval(None);
        let one_second = Tumbling::of(Duration::from_secs(1));
        pipeline(cfg, 3, source, one_second, out, dlq)
    };
    let dir = tempfile::tempdir().unwrap();
    let (out, dlq) = (MemorySink::new(), MemorySink::new());
    // Three records in, a checkpoint, then the crash: a, b, c are state.
    let gate = Gate::closed_at(3);
    let source = Gated::new(
        MemorySource::new(vec![input.clone()]).with_batch_size(1),
        gate.clone(),
    );
    let env = build(Box::new(source), &out, &dlq, 2);
    env.checkpoint_store(LocalDirStore::new(dir.path()).unwrap());
    let rt = runtime();
    rt.block_on(async {
        let handle = env.start().unwrap();
        let m = handle.metrics();
        // The gauge shows the three entries (flowline_state_entries).
        wait_until("3 window entries", &handle, || {
            m.state_entries.load(std::sync::atomic::Ordering::SeqCst) == 3
        })
        .await;
        assert!(handle.checkpoint().await.unwrap().is_some());
    });
    drop(rt);
    // Restored with one worker: d and e still find the window full.
    let source = MemorySource::new(vec![input]).with_batch_size(1);
    let env = build(Box::new(source), &out, &dlq, 1);
    env.checkpoint_store(LocalDirStore::new(dir.path()).unwrap());
    let summary = run(env);
    assert!(summary.restored_from.is_some());
    let refused: Vec<Vec<u8>> = dlq.records().into_iter().map(|r| r.payload).collect();
    assert_eq!(
        refused,
        vec![
            b"d,400,4".to_vec(),
            b"e,500,5".to_vec(),
            b"z,2500,6".to_vec()
        ]
    );
    let mut lines = out.payloads();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            "a 0 1000 1 1 false",
            "b 0 1000 2 1 false",
            "c 0 1000 3 1 false",
            "y 2000 3000 7 1 false",
        ]
    );
}
