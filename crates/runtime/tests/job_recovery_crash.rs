//! Crash and restore: a bounded job is dropped at seeded record counts
//! without a graceful shutdown (its whole async runtime is dropped, as a
//! killed process would be), restarted from its checkpoints, and run to the
//! end. The output equals an uninterrupted run's, with no duplicates.
//!
//! Every crash point is a record count, not a moment: a gated source holds
//! the input back, so the job checkpoints after exactly K records and is
//! dropped after exactly K + D, on a fast machine as on a slow one.

mod common;

use std::time::Duration;

use common::*;
use flowline_connector_api::Record;
use flowline_connector_testkit::gate::{Gate, Gated};
use flowline_connector_testkit::{MemorySink, MemorySource};
use flowline_runtime::{JobConfig, LocalDirStore, Tumbling};

const PARTITIONS: usize = 4;
const EVENTS: usize = 6_000;

fn input(seed: u64) -> Vec<Vec<Record>> {
    let mut rng = Rng(seed);
    let mut parts = vec![Vec::new(); PARTITIONS];
    let mut clock = [0i64; PARTITIONS];
    for _ in 0..EVENTS {
        let k = rng.below(24) as usize;
        let p = k % PARTITIONS;
        clock[p] += rng.below(40) as i64;
        let ts = (clock[p] - rng.below(300) as i64).max(0);
        parts[p].push(rec(&format!("k{k}"), ts, rng.below(100) as i64));
    }
    parts
}

fn setup() -> Setup {
    Setup {
        spec: Tumbling::of(Duration::from_millis(1_000)),
        ooo: 200,
        lateness: 300,
    }
}

/// No interval checkpoints: each run checkpoints once, at a record count
/// the test chooses.
fn config() -> JobConfig {
    JobConfig::named("recovery")
        .checkpoint_interval(None)
        .partitioned_by_key(true)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn crash_and_recover(seed: u64, corrupt_newest: bool) {
    let parts = input(seed);
    let reference = MemorySink::new();
    run(job(
        parts.clone(),
        &setup(),
        &reference,
        None,
        JobConfig::named("reference").partitioned_by_key(true),
    ));
    let want = sorted(reference.payloads());
    assert!(want.len() > 100, "the input produces windows");

    let dir = tempfile::tempdir().unwrap();
    let out = MemorySink::new();
    let mut rng = Rng(seed ^ 0xC0FFEE);
    let mut read = 0;
    for crash in 0..3 {
        // Seeded crash points by record count: this run checkpoints after
        // `at_checkpoint` records and is crashed after `at_crash`, whatever
        // the machine's speed (the gate holds the rest of the input back).
        let at_checkpoint = 1 + rng.below(EVENTS as u64 / 6);
        let at_crash = at_checkpoint + 1 + rng.below(EVENTS as u64 / 12);
        let gate = Gate::closed_at(at_checkpoint);
        let source = Gated::new(
            MemorySource::new(parts.clone()).with_batch_size(7),
            gate.clone(),
        );
        let env = job_over(Box::new(source), &setup(), &out, None, config());
        env.checkpoint_store(LocalDirStore::new(dir.path()).unwrap());
        let rt = runtime();
        let finished = rt.block_on(async {
            let handle = env.start().unwrap();
            let m = handle.metrics();
            let records_in = || m.records_in.load(std::sync::atomic::Ordering::SeqCst);
            wait_until(
                &format!("{at_checkpoint} records in (seed {seed}, crash {crash})"),
                &handle,
                || records_in() >= at_checkpoint,
            )
            .await;
            let id = handle.checkpoint().await.unwrap();
            assert!(id.is_some(), "the job has a checkpoint store");
            gate.open_to(at_crash);
            wait_until(
                &format!("{at_crash} records in (seed {seed}, crash {crash})"),
                &handle,
                || records_in() >= at_crash,
            )
            .await;
            handle.is_finished()
        });
        drop(rt); // the crash: every task dropped where it stands
        assert!(!finished, "seed {seed}: the job ended before crash {crash}");
        assert_eq!(
            gate.passed(),
            at_crash,
            "seed {seed}: crash {crash} at its record"
        );
        read += at_checkpoint;
    }
    assert!(
        read < EVENTS as u64,
        "seed {seed}: the crashes came before the end of the input"
    );
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    files.sort();
    // The store keeps the newest 3: one per crashed run (the first run's
    // start checkpoint, 1, is the oldest and gone).
    let ids: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 3, "seed {seed}: {ids:?}");
    if corrupt_newest {
        // One flipped byte in the newest checkpoint: the restore must skip
        // it for the previous one (and replay more), never run on it.
        let newest = files.last().unwrap();
        let mut b = std::fs::read(newest).unwrap();
        let at = 12 + Rng(seed).below(b.len() as u64 - 12) as usize;
        b[at] ^= 0x04;
        std::fs::write(newest, b).unwrap();
    }
    let env = job(parts, &setup(), &out, None, config());
    env.checkpoint_store(LocalDirStore::new(dir.path()).unwrap());
    let summary = run(env);
    if corrupt_newest {
        assert_eq!(
            summary.restored_from,
            Some(3),
            "seed {seed}: the restore skipped the corrupt checkpoint 4"
        );
    }
    assert!(
        summary.restored_from.is_some(),
        "seed {seed}: the final run restored from a checkpoint"
    );
    let got = sorted(out.payloads());
    let missing: Vec<&String> = want.iter().filter(|w| !got.contains(w)).take(5).collect();
    let extra: Vec<&String> = got.iter().filter(|g| !want.contains(g)).take(5).collect();
    assert_eq!(
        got.len(),
        want.len(),
        "seed {seed}: window count differs; missing {missing:?}, extra {extra:?}"
    );
    assert!(got == want, "seed {seed}: output differs from the uninterrupted run; missing {missing:?}, extra {extra:?}");
}

#[test]
fn output_after_three_crashes_equals_an_uninterrupted_run() {
    for seed in 1..=5 {
        crash_and_recover(seed, false);
    }
}

#[test]
fn a_corrupt_newest_checkpoint_falls_back_to_the_previous_and_stays_exact() {
    for seed in 6..=8 {
        crash_and_recover(seed, true);
    }
}
