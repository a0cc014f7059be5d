//! Shared pieces of the runtime's tests: a `key,ts,value` record format, a
//! sum/count aggregate, and a naive reference of window semantics.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use flowline_connector_api::Record;
use flowline_connector_testkit::{MemorySink, MemorySource};
use flowline_runtime::*;

pub type Key = String;

/// (key, window start, window end).
pub type WinKey = (Key, i64, i64);
/// Final (sum, count) per window.
pub type Finals = BTreeMap<WinKey, (i64, u64)>;

#[derive(Debug, Clone)]
pub struct Ev {
    pub key: Key,
    pub ts: i64,
    pub value: i64,
}

pub fn rec(key: &str, ts: i64, value: i64) -> Record {
    Record::new(format!("{key},{ts},{value}"))
}

pub fn decode(r: &Record) -> Result<Ev, String> {
    let s = std::str::from_utf8(&r.payload).map_err(|e| e.to_string())?;
    let mut it = s.split(',');
    let (Some(k), Some(t), Some(v)) = (it.next(), it.next(), it.next()) else {
        return Err(format!("expected key,ts,value: {s}"));
    };
    Ok(Ev {
        key: k.to_string(),
        ts: t.parse().map_err(|_| format!("bad ts in {s}"))?,
        value: v.parse().map_err(|_| format!("bad value in {s}"))?,
    })
}

#[derive(Debug, Clone, Copy)]
pub struct SumCount;

impl AggregateFunction for SumCount {
    type In = Ev;
    type Acc = (i64, u64);
    type Out = (i64, u64);
    fn create_accumulator(&self) -> (i64, u64) {
        (0, 0)
    }
    fn add(&self, acc: &mut (i64, u64), e: &Ev) {
        acc.0 += e.value;
        acc.1 += 1;
    }
    fn get_result(&self, acc: &(i64, u64)) -> (i64, u64) {
        *acc
    }
}

/// One output line: `key start end sum count update`.
pub fn line(r: &WindowResult<Key, (i64, u64)>) -> Record {
    Record::new(format!(
        "{} {} {} {} {} {}",
        r.key, r.window.start, r.window.end, r.value.0, r.value.1, r.update
    ))
}

pub struct Setup {
    pub spec: WindowSpec,
    pub ooo: i64,
    pub lateness: i64,
}

/// Builds the standard test job over `partitions`.
pub fn job(
    partitions: Vec<Vec<Record>>,
    s: &Setup,
    out: &MemorySink,
    late: Option<&MemorySink>,
    config: JobConfig,
) -> StreamEnvironment {
    let source = MemorySource::new(partitions).with_batch_size(7);
    job_over(Box::new(source), s, out, late, config)
}

/// [`job`] over any source.
pub fn job_over(
    source: flowline_connector_api::BoxSource,
    s: &Setup,
    out: &MemorySink,
    late: Option<&MemorySink>,
    config: JobConfig,
) -> StreamEnvironment {
    let env = StreamEnvironment::new(config.out_of_orderness(Duration::from_millis(s.ooo as u64)));
    let sink = env.add_sink("out", Box::new(out.clone()));
    if let Some(l) = late {
        env.late_sink("late", Box::new(l.clone()), DeadLetterFormat::Raw);
    }
    env.source("mem", source)
        .try_map("decode", decode)
        .with_timestamps(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key.clone())
        .window(s.spec)
        .allowed_lateness(Duration::from_millis(s.lateness as u64))
        .aggregate(SumCount)
        .sink_with(sink, line);
    env
}

/// The naive reference: per partition, walk the events in order with the
/// watermark rule (max ts − ooo − 1); an event is late when every window it
/// belongs to has `end − 1 + lateness <= watermark`. Returns the final
/// (sum, count) per (key, start, end), and the number of late events.
pub fn reference(partitions: &[Vec<Ev>], s: &Setup) -> (Finals, usize) {
    let mut out = BTreeMap::new();
    let mut late = 0;
    for events in partitions {
        let mut max = i64::MIN;
        let mut wm = i64::MIN;
        for e in events {
            // Late: missing from a window of its own, which was final, or
            // in none (between windows that slide further than their size).
            let mut missed = s.spec.windows(e.ts).is_empty();
            for w in s.spec.windows(e.ts) {
                if w.end - 1 + s.lateness > wm {
                    let acc = out.entry((e.key.clone(), w.start, w.end)).or_insert((0, 0));
                    acc.0 += e.value;
                    acc.1 += 1;
                } else {
                    missed = true;
                }
            }
            if missed {
                late += 1;
            }
            if e.ts > max {
                max = e.ts;
                wm = wm.max(max - s.ooo - 1);
            }
        }
    }
    (out, late)
}

/// The last emission per (key, start, end) of a run's output lines, and how
/// many first (non-update) emissions each had.
pub fn finals(lines: &[String]) -> (Finals, BTreeMap<WinKey, usize>) {
    let mut last = BTreeMap::new();
    let mut firsts = BTreeMap::new();
    for l in lines {
        let f: Vec<&str> = l.split(' ').collect();
        let k = (
            f[0].to_string(),
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
        );
        last.insert(k.clone(), (f[3].parse().unwrap(), f[4].parse().unwrap()));
        if f[5] == "false" {
            *firsts.entry(k).or_insert(0) += 1;
        }
    }
    (last, firsts)
}

pub fn run(env: StreamEnvironment) -> JobSummary {
    runtime().block_on(env.execute()).expect("job runs")
}

/// Polls `cond` until it holds; fails naming `what` when the job ends first
/// or after 60 s.
pub async fn wait_until(what: &str, handle: &flowline_runtime::JobHandle, cond: impl Fn() -> bool) {
    let t0 = std::time::Instant::now();
    while !cond() {
        assert!(
            !handle.is_finished(),
            "the job ended while waiting for {what}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "timed out after 60 s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A runtime of two worker threads.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// SplitMix64: seeded test inputs.
pub struct Rng(pub u64);
impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n.max(1)
    }
}

/// Each partition's events as records.
pub fn records(parts: &[Vec<Ev>]) -> Vec<Vec<Record>> {
    parts
        .iter()
        .map(|p| p.iter().map(|e| rec(&e.key, e.ts, e.value)).collect())
        .collect()
}
