//! The hash exchange against a plain group-by: random keys on random
//! partitions (no key follows the partitioning), 1–4 workers, and crashes
//! restored with another worker count. Every event is within the
//! out-of-orderness of its partition, so none is late and the output must
//! be exactly one result per key and window, equal to the group-by.

mod common;

use std::time::Duration;

use common::*;
use flowline_connector_api::Record;
use flowline_connector_testkit::gate::{Gate, Gated};
use flowline_connector_testkit::{MemorySink, MemorySource};
use flowline_runtime::{JobConfig, LocalDirStore, RuntimeError, StreamEnvironment};
use flowline_runtime::{Tumbling, WindowResult};
use proptest::prelude::*;

const OOO: i64 = 300;
const WINDOW: u64 = 1_000;

fn setup() -> Setup {
    Setup {
        spec: Tumbling::of(Duration::from_millis(WINDOW)),
        ooo: OOO,
        lateness: 0,
    }
}

/// `events` events of `keys` keys, each on a random one of `partitions`,
/// each partition's times disordered by less than the out-of-orderness.
fn input(seed: u64, partitions: usize, keys: u64, events: usize) -> Vec<Vec<Ev>> {
    let mut rng = Rng(seed);
    let mut parts = vec![Vec::new(); partitions];
    let mut clock = vec![0i64; partitions];
    for _ in 0..events {
        let p = rng.below(partitions as u64) as usize;
        clock[p] += rng.below(60) as i64;
        parts[p].push(Ev {
            key: format!("k{}", rng.below(keys)),
            ts: (clock[p] - rng.below(OOO as u64) as i64).max(0),
            value: rng.below(1_000) as i64 - 500,
        });
    }
    parts
}

/// The independent computation: (sum, count) per key and window.
fn group_by(parts: &[Vec<Ev>]) -> Finals {
    let mut out = Finals::new();
    for e in parts.iter().flatten() {
        let start = e.ts.div_euclid(WINDOW as i64) * WINDOW as i64;
        let acc = out
            .entry((e.key.clone(), start, start + WINDOW as i64))
            .or_insert((0, 0));
        acc.0 += e.value;
        acc.1 += 1;
    }
    out
}

fn source(parts: &[Vec<Ev>]) -> MemorySource {
    MemorySource::new(records(parts))
        .with_batch_size(7)
        .with_assignment()
}

fn config(workers: usize) -> JobConfig {
    JobConfig::named("exchange")
        .workers(workers)
        .checkpoint_interval(None)
}

/// Each output line once per (key, window), none an update, equal to the
/// group-by.
fn check(lines: &[String], want: &Finals, what: &str) -> Result<(), TestCaseError> {
    let (got, firsts) = finals(lines);
    prop_assert_eq!(
        lines.len(),
        want.len(),
        "{}: one line per key and window",
        what
    );
    prop_assert!(
        firsts.values().all(|&n| n == 1),
        "{}: a window emitted twice",
        what
    );
    prop_assert!(&got == want, "{}: results differ from the group-by", what);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_partitioning_any_workers_equals_a_group_by(
        seed in any::<u64>(),
        partitions in 1usize..=4,
        workers in 1usize..=4,
        keys in 1u64..=40,
    ) {
        let parts = input(seed, partitions, keys, 1_500);
        let out = MemorySink::new();
        let env = job_over(Box::new(source(&parts)), &setup(), &out, None, config(workers));
        let summary = run(env);
        prop_assert_eq!(summary.records_in, 1_500);
        prop_assert_eq!(summary.late_records, 0);
        check(&out.payloads(), &group_by(&parts), &format!("{partitions} partitions, {workers} workers"))?;
    }
}

/// `events` events of `keys` keys on random ones of `partitions`, about one
/// in eight behind its partition's time by up to 5× the out-of-orderness:
/// late by the partition's watermark, or not, depending on every event
/// before it in its partition.
fn input_with_late(seed: u64, partitions: usize, keys: u64, events: usize) -> Vec<Vec<Ev>> {
    let mut rng = Rng(seed);
    let mut parts = vec![Vec::new(); partitions];
    let mut clock = vec![0i64; partitions];
    for _ in 0..events {
        let p = rng.below(partitions as u64) as usize;
        clock[p] += rng.below(40) as i64;
        let back = if rng.below(8) == 0 { 5 * OOO } else { OOO };
        parts[p].push(Ev {
            key: format!("k{}", rng.below(keys)),
            ts: (clock[p] - rng.below(back as u64) as i64).max(0),
            value: rng.below(1_000) as i64 - 500,
        });
    }
    parts
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Batches of hundreds to thousands of records: runs long enough to be
    /// split across tasks (`driver::split`). Which events are late must be
    /// what one chain per partition decides (the naive reference walks
    /// each partition in order), whatever chunk an event falls in.
    #[test]
    fn runs_split_across_tasks_judge_lateness_as_one_chain(
        seed in any::<u64>(),
        partitions in 1usize..=3,
        workers in 2usize..=4,
        batch in 512usize..=3_000,
        lateness in prop::sample::select(vec![0i64, 200]),
    ) {
        let parts = input_with_late(seed, partitions, 25, 4_000);
        let s = Setup { spec: Tumbling::of(Duration::from_millis(WINDOW)), ooo: OOO, lateness };
        let (want, want_late) = reference(&parts, &s);
        prop_assume!(want_late > 0);
        let out = MemorySink::new();
        let late = MemorySink::new();
        let src = MemorySource::new(records(&parts)).with_batch_size(batch).with_assignment();
        let env = job_over(Box::new(src), &s, &out, Some(&late), config(workers));
        let summary = run(env);
        let what = format!("{partitions} partitions, {workers} workers, batches of {batch}");
        let (got, _) = finals(&out.payloads());
        prop_assert_eq!(summary.late_records as usize, want_late, "{}: late events", &what);
        prop_assert_eq!(late.records().len(), want_late, "{}: late output", &what);
        prop_assert!(got == want, "{}: results differ from the reference", what);
    }
}

/// Three crashes, each run with another worker count than the one before,
/// then a run to the end with yet another: the output (the memory sink
/// truncates to its checkpoint on restore) equals the group-by.
fn crash_with_other_worker_counts(seed: u64) {
    const EVENTS: usize = 6_000;
    let parts = input(seed, 4, 30, EVENTS);
    let want = group_by(&parts);
    let dir = tempfile::tempdir().unwrap();
    let out = MemorySink::new();
    let mut rng = Rng(seed ^ 0xC0FFEE);
    let counts = [1, 3, 2, 4];
    let shift = rng.below(4) as usize;
    for crash in 0..3 {
        let workers = counts[(crash + shift) % 4];
        let at_checkpoint = 1 + rng.below(EVENTS as u64 / 6);
        let at_crash = at_checkpoint + 1 + rng.below(EVENTS as u64 / 12);
        let gate = Gate::closed_at(at_checkpoint);
        let src = Gated::new(source(&parts), gate.clone());
        let env = job_over(Box::new(src), &setup(), &out, None, config(workers));
        env.checkpoint_store(LocalDirStore::new(dir.path()).unwrap());
        let rt = runtime();
        rt.block_on(async {
            let handle = env.start().unwrap();
            let m = handle.metrics();
            let read = || m.records_in.load(std::sync::atomic::Ordering::SeqCst);
            let what = format!("seed {seed}, crash {crash}, {workers} workers");
            wait_until(&what, &handle, || read() >= at_checkpoint).await;
            assert!(handle.checkpoint().await.unwrap().is_some());
            gate.open_to(at_crash);
            wait_until(&what, &handle, || read() >= at_crash).await;
        });
        drop(rt); // the crash
    }
    let workers = counts[(3 + shift) % 4];
    let env = job_over(
        Box::new(source(&parts)),
        &setup(),
        &out,
        None,
        config(workers),
    );
    env.checkpoint_store(LocalDirStore::new(dir.path()).unwrap());
    let summary = run(env);
    // The first run's start checkpoint, then one per crashed run.
    assert_eq!(summary.restored_from, Some(4), "seed {seed}");
    let what = format!("seed {seed}, final run with {workers} workers");
    check(&out.payloads(), &want, &what).unwrap();
}

#[test]
fn crashes_restored_with_other_worker_counts_equal_a_group_by() {
    for seed in 1..=6 {
        crash_with_other_worker_counts(seed);
    }
}

#[test]
fn a_second_key_by_on_another_key_fails_the_job_naming_it() {
    let parts = vec![(0..50)
        .map(|i| Ev {
            key: format!("k{i}"),
            ts: i * 10,
            value: 1,
        })
        .collect::<Vec<_>>()];
    let out = MemorySink::new();
    let env = StreamEnvironment::new(config(2));
    let sink = env.add_sink("out", Box::new(out.clone()));
    env.source("mem", Box::new(source(&parts)))
        .try_map("decode", decode)
        .with_timestamps(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key.clone())
        .window(Tumbling::of(Duration::from_millis(100)))
        .aggregate(SumCount)
        .key_by(|_: &WindowResult<String, (i64, u64)>| "one key".to_string())
        .process(Pass)
        .sink_with(sink, |s: &String| Record::new(s.clone()));
    let err = runtime().block_on(env.execute()).unwrap_err();
    assert!(matches!(err, RuntimeError::KeyGroup { .. }), "{err}");
    assert!(err.to_string().contains("\"one key\""), "{err}");
}

#[derive(Clone)]
struct Pass;
impl flowline_runtime::KeyedProcessFunction for Pass {
    type Key = String;
    type In = WindowResult<String, (i64, u64)>;
    type Out = String;
    type State = ();
    fn process_element(
        &self,
        key: &String,
        _: Self::In,
        ctx: &mut flowline_runtime::ProcessContext<'_, (), String>,
    ) {
        ctx.emit(key.clone());
    }
}

#[test]
fn a_checkpoint_of_the_other_mode_is_refused_by_name() {
    let parts = input(7, 2, 5, 200);
    let dir = tempfile::tempdir().unwrap();
    let out = MemorySink::new();
    let keyed = config(2).partitioned_by_key(true);
    let parts_by_key: Vec<Vec<Ev>> = vec![parts.concat()];
    let env = job_over(Box::new(source(&parts_by_key)), &setup(), &out, None, keyed);
    env.checkpoint_store(LocalDirStore::new(dir.path()).unwrap());
    run(env);
    let env = job_over(Box::new(source(&parts)), &setup(), &out, None, config(2));
    env.checkpoint_store(LocalDirStore::new(dir.path()).unwrap());
    let err = runtime().block_on(env.execute()).unwrap_err().to_string();
    assert!(err.contains("exchange(128)"), "{err}");
}

/// Returns `Idle` for its first calls (a consumer joining its group), then
/// reads `inner`.
struct Joining<S> {
    inner: S,
    idle_calls: usize,
}

impl<S: flowline_connector_api::Source> flowline_connector_api::Source for Joining<S> {
    async fn next(
        &mut self,
    ) -> Result<flowline_connector_api::SourceEvent, flowline_connector_api::ConnectorError> {
        if self.idle_calls > 0 {
            self.idle_calls -= 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            return Ok(flowline_connector_api::SourceEvent::Idle);
        }
        self.inner.next().await
    }
    async fn seek(
        &mut self,
        p: &flowline_connector_api::SourcePosition,
    ) -> Result<(), flowline_connector_api::ConnectorError> {
        self.inner.seek(p).await
    }
}

/// Two runs over partitions A and B. The first reads A's first 40 records
/// and is stopped with windows open; when it `knew_b` (B assigned, empty)
/// its windows waited for B; when it did not, they fired on A alone. The
/// second restores, is assigned A and B only after 30 idle polls (a group
/// join), and reads the rest. Returns the output lines, the late count and
/// the events of both.
fn restored_then_assigned(knew_b: bool) -> (Vec<String>, u64, Vec<Ev>, Vec<Ev>) {
    let ev = |key: &str, ts: i64| Ev {
        key: key.into(),
        ts,
        value: ts / 100,
    };
    let a: Vec<Ev> = (0..80)
        .map(|i| ev(&format!("k{}", i % 5), i * 100))
        .collect();
    let b: Vec<Ev> = (0..60)
        .map(|i| ev(&format!("k{}", i % 7), i * 100))
        .collect();
    let first = 40;
    let dir = tempfile::tempdir().unwrap();
    let out = MemorySink::new();
    let run1 = if knew_b {
        MemorySource::new(records(&[a.clone(), Vec::new()])).with_assignment()
    } else {
        MemorySource::new(records(std::slice::from_ref(&a)))
    };
    let gate = Gate::closed_at(first);
    let env = job_over(
        Box::new(Gated::new(run1, gate)),
        &setup(),
        &out,
        None,
        config(2),
    );
    env.checkpoint_store(LocalDirStore::new(dir.path()).unwrap());
    runtime().block_on(async {
        let h = env.start().unwrap();
        let m = h.metrics();
        let read = || m.records_in.load(std::sync::atomic::Ordering::SeqCst);
        wait_until("the first run's records", &h, || read() >= first).await;
        h.stop();
        h.join().await.unwrap();
    });
    let src = Joining {
        inner: MemorySource::new(records(&[a.clone(), b.clone()]))
            .with_batch_size(7)
            .with_assignment(),
        idle_calls: 30,
    };
    let env = job_over(Box::new(src), &setup(), &out, None, config(2));
    env.checkpoint_store(LocalDirStore::new(dir.path()).unwrap());
    let summary = run(env);
    // 1 is the first run's start checkpoint, 2 the one it was asked for.
    assert_eq!(summary.restored_from, Some(2));
    (out.payloads(), summary.late_records, a, b)
}

/// The first run was assigned B: the restored job must not fire on A alone
/// before its assignment brings B back (B's events would all be late).
#[test]
fn a_restored_job_waits_for_its_assignment_before_firing() {
    let (lines, late, a, b) = restored_then_assigned(true);
    assert_eq!(late, 0, "B's events were judged late");
    check(&lines, &group_by(&[a, b]), "restored, then assigned").unwrap();
}

/// The first run never knew B, and fired A's windows up to its watermark
/// (3 599: A's 40th event at 3 900, less 300 ms and 1). After the restore
/// B's events behind it are late, counted once, and never restart a fired
/// window: the output is the group-by of A and B's events from 3 000 on.
#[test]
fn a_partition_new_after_a_restore_is_late_behind_the_fired_windows() {
    let (lines, late, a, b) = restored_then_assigned(false);
    let (behind, rest): (Vec<Ev>, Vec<Ev>) = b.into_iter().partition(|e| e.ts < 3_000);
    assert_eq!(late, behind.len() as u64);
    check(
        &lines,
        &group_by(&[a, rest]),
        "a partition new after the restore",
    )
    .unwrap();
}
