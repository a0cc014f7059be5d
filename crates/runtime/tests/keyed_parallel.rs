//! Partitions on tasks of their own (no exchange, `partitioned_by_key`,
//! more than one worker) against the naive per-partition reference: each
//! key on one partition, events late by their own partition's watermark,
//! 1–4 workers, batches of any size, firings larger than an outbox chunk,
//! and crashes restored with another worker count.

mod common;

use std::time::Duration;

use common::*;
use flowline_connector_testkit::gate::{Gate, Gated};
use flowline_connector_testkit::{MemorySink, MemorySource};
use flowline_runtime::{JobConfig, LocalDirStore, Tumbling};
use proptest::prelude::*;

const OOO: i64 = 300;
const WINDOW: u64 = 1_000;

/// `events` events of `keys` keys, key `k` always on partition
/// `k % partitions`; about one in eight behind its partition's time by up
/// to 5× the out-of-orderness (late or not by that partition's watermark).
fn input(seed: u64, partitions: usize, keys: u64, events: usize) -> Vec<Vec<Ev>> {
    let mut rng = Rng(seed);
    let mut parts = vec![Vec::new(); partitions];
    let mut clock = vec![0i64; partitions];
    for _ in 0..events {
        let k = rng.below(keys);
        let p = (k % partitions as u64) as usize;
        clock[p] += rng.below(40) as i64;
        let back = if rng.below(8) == 0 { 5 * OOO } else { OOO };
        parts[p].push(Ev {
            key: format!("k{k}"),
            ts: (clock[p] - rng.below(back as u64) as i64).max(0),
            value: rng.below(1_000) as i64 - 500,
        });
    }
    parts
}

fn config(workers: usize) -> JobConfig {
    JobConfig::named("keyed-parallel")
        .partitioned_by_key(true)
        .workers(workers)
        .checkpoint_interval(None)
}

fn setup(lateness: i64) -> Setup {
    Setup {
        spec: Tumbling::of(Duration::from_millis(WINDOW)),
        ooo: OOO,
        lateness,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_workers_any_batches_equal_the_per_partition_reference(
        seed in any::<u64>(),
        partitions in 1usize..=4,
        workers in 1usize..=4,
        batch in prop::sample::select(vec![1usize, 7, 300, 2_000, 9_000]),
        keys in 1u64..=40,
        lateness in prop::sample::select(vec![0i64, 200]),
    ) {
        let parts = input(seed, partitions, keys, 4_000);
        let s = setup(lateness);
        let (want, want_late) = reference(&parts, &s);
        let out = MemorySink::new();
        let late = MemorySink::new();
        let src = MemorySource::new(records(&parts)).with_batch_size(batch).with_assignment();
        let summary = run(job_over(Box::new(src), &s, &out, Some(&late), config(workers)));
        let what = format!("{partitions} partitions, {workers} workers, batches of {batch}");
        let (got, firsts) = finals(&out.payloads());
        prop_assert_eq!(summary.records_in, 4_000);
        prop_assert_eq!(summary.late_records as usize, want_late, "{}: late events", &what);
        prop_assert_eq!(late.records().len(), want_late, "{}: late output", &what);
        prop_assert!(firsts.values().all(|&n| n == 1), "{}: a window fired twice", &what);
        prop_assert!(got == want, "{}: results differ from the reference", what);
    }
}

#[test]
fn firings_larger_than_an_outbox_chunk_on_several_partitions_at_once() {
    // 3 partitions of 6 000 keys each: every window fires in chunks, on
    // tasks running at once; each key once per window, exactly.
    let mut parts = vec![Vec::new(); 3];
    for t in [100, 1_100, 2_100, 5_000] {
        for k in 0..18_000u64 {
            parts[(k % 3) as usize].push(Ev {
                key: format!("k{k}"),
                ts: t,
                value: k as i64,
            });
        }
    }
    let s = setup(0);
    let (want, _) = reference(&parts, &s);
    let out = MemorySink::new();
    let src = MemorySource::new(records(&parts)).with_batch_size(1_024);
    let summary = run(job_over(Box::new(src), &s, &out, None, config(3)));
    assert_eq!(summary.records_in, 72_000);
    let (got, firsts) = finals(&out.payloads());
    assert_eq!(
        out.payloads().len(),
        want.len(),
        "one line per key and window"
    );
    assert!(firsts.values().all(|&n| n == 1));
    assert!(got == want, "results differ from the reference");
}

/// Three crashes, each run with another worker count, then a run to the
/// end: the output (the memory sink truncates to its checkpoint on
/// restore) equals the reference.
#[test]
fn crashes_restored_with_other_worker_counts_equal_the_reference() {
    for seed in [1u64, 2, 3] {
        const EVENTS: usize = 8_000;
        let parts = input(seed, 4, 30, EVENTS);
        let s = setup(0);
        let (want, want_late) = reference(&parts, &s);
        let dir = tempfile::tempdir().unwrap();
        let out = MemorySink::new();
        let late = MemorySink::new();
        let mut rng = Rng(seed ^ 0xC0FFEE);
        let source = || {
            MemorySource::new(records(&parts))
                .with_batch_size(500)
                .with_assignment()
        };
        let counts = [1, 3, 2, 4];
        for (crash, workers) in counts.iter().take(3).enumerate() {
            let at_checkpoint = 1 + rng.below(EVENTS as u64 / 6);
            let at_crash = at_checkpoint + 1 + rng.below(EVENTS as u64 / 12);
            let gate = Gate::closed_at(at_checkpoint);
            let src = Gated::new(source(), gate.clone());
            let env = job_over(Box::new(src), &s, &out, Some(&late), config(*workers));
            env.checkpoint_store(LocalDirStore::new(dir.path()).unwrap());
            runtime().block_on(async {
                let handle = env.start().unwrap();
                let m = handle.metrics();
                let read = || m.records_in.load(std::sync::atomic::Ordering::SeqCst);
                let what = format!("seed {seed}, crash {crash}, {workers} workers");
                wait_until(&what, &handle, || read() >= at_checkpoint).await;
                assert!(handle.checkpoint().await.unwrap().is_some());
                gate.open_to(at_crash);
                wait_until(&what, &handle, || read() >= at_crash).await;
            });
        }
        let env = job_over(Box::new(source()), &s, &out, Some(&late), config(counts[3]));
        env.checkpoint_store(LocalDirStore::new(dir.path()).unwrap());
        let summary = run(env);
        assert_eq!(summary.restored_from, Some(4), "seed {seed}");
        let (got, firsts) = finals(&out.payloads());
        assert!(
            firsts.values().all(|&n| n == 1),
            "seed {seed}: a window twice"
        );
        assert!(
            got == want,
            "seed {seed}: results differ from the reference"
        );
        assert_eq!(late.records().len(), want_late, "seed {seed}: late output");
    }
}
