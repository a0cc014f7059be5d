//! An aggregate's `check` refuses a value: the record goes to the
//! dead-letter sink with the reason, once, and into none of its windows
//! (with sliding windows too, where it would belong to several; with
//! tumbling ones for a key already in its window, a key new to it, and a
//! window not opened yet).

mod common;

use std::time::Duration;

use common::*;
use flowline_connector_api::Record;
use flowline_connector_testkit::{MemorySink, MemorySource};
use flowline_runtime::*;

/// A sum that refuses to overflow i64.
#[derive(Debug, Clone, Copy)]
struct CheckedSum;

impl AggregateFunction for CheckedSum {
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
    fn check(&self, acc: Option<&(i64, u64)>, e: &Ev) -> Result<(), String> {
        match acc.map(|a| a.0.checked_add(e.value)) {
            Some(None) => Err(format!("{} would overflow the sum", e.value)),
            None if e.value == i64::MIN => Err(format!("{} cannot start a sum", e.value)),
            _ => Ok(()),
        }
    }
    fn get_result(&self, acc: &(i64, u64)) -> (i64, u64) {
        *acc
    }
}

/// Runs `input` through decode, key, `window` and [`CheckedSum`]: the
/// summary, the window lines sorted, and the dead letters.
fn refuse(input: Vec<Record>, window: WindowSpec) -> (JobSummary, Vec<String>, Vec<Record>) {
    let out = MemorySink::new();
    let dlq = MemorySink::new();
    let env = StreamEnvironment::new(JobConfig::named("refuse"));
    let sink = env.add_sink("out", Box::new(out.clone()));
    env.dead_letter_sink("dlq", Box::new(dlq.clone()), DeadLetterFormat::Raw);
    env.source("mem", Box::new(MemorySource::new(vec![input])))
        .try_map("decode", decode)
        .with_timestamps(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key.clone())
        .window(window)
        .aggregate(CheckedSum)
        .sink_with(sink, line);
    let summary = run(env);
    let mut lines = out.payloads();
    lines.sort();
    (summary, lines, dlq.records())
}

#[test]
fn a_refused_value_is_dead_lettered_once_and_counted_in_no_window() {
    let big = i64::MAX - 10;
    // Sliding windows of 2 s every 1 s: ts 1500 belongs to [0,2000) and
    // [1000,3000). Only [0,2000) holds `big` already, so adding 20 there
    // would overflow; the record must go to neither window.
    let input = vec![rec("a", 500, big), rec("a", 1_500, 20), rec("a", 1_600, 1)];
    let (summary, lines, bad) = refuse(
        input,
        Sliding::of(Duration::from_secs(2), Duration::from_secs(1)),
    );
    assert_eq!(summary.bad_records, 1);
    assert_eq!(
        lines,
        vec![
            format!("a -1000 1000 {big} 1 false"),
            format!("a 0 2000 {} 2 false", big + 1),
            "a 1000 3000 1 1 false".to_string(),
        ]
    );
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].payload, b"a,1500,20");
    assert_eq!(
        bad[0].header("flowline.error.reason"),
        Some(&b"20 would overflow the sum"[..])
    );
    assert_eq!(bad[0].header("flowline.error.stage"), Some(&b"window"[..]));
}

#[test]
fn a_refused_value_in_a_tumbling_window_touches_nothing() {
    let big = i64::MAX - 10;
    let input = vec![
        rec("a", 100, big),
        // The key's sum would overflow.
        rec("a", 200, 20),
        // A key new to an open window.
        rec("b", 300, i64::MIN),
        // A window not opened yet.
        rec("c", 1_500, i64::MIN),
        rec("a", 2_500, 1),
    ];
    let (summary, lines, dlq) = refuse(input, Tumbling::of(Duration::from_secs(1)));
    assert_eq!(summary.bad_records, 3);
    assert_eq!(
        lines,
        vec![
            format!("a 0 1000 {big} 1 false"),
            "a 2000 3000 1 1 false".to_string(),
        ]
    );
    let mut reasons: Vec<(Vec<u8>, Vec<u8>)> = dlq
        .iter()
        .map(|r| {
            let why = r.header("flowline.error.reason").unwrap_or_default();
            (r.payload.clone(), why.to_vec())
        })
        .collect();
    reasons.sort();
    let min = i64::MIN;
    assert_eq!(
        reasons,
        vec![
            (b"a,200,20".to_vec(), b"20 would overflow the sum".to_vec()),
            (
                format!("b,300,{min}").into_bytes(),
                format!("{min} cannot start a sum").into_bytes()
            ),
            (
                format!("c,1500,{min}").into_bytes(),
                format!("{min} cannot start a sum").into_bytes()
            ),
        ]
    );
}
