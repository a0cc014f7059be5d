//! Firing a window of many keys happens in chunks (the outbox is routed
//! between them, so memory stays bounded): the output is the same as one
//! firing would give — every key once per window, in key order — also with
//! allowed lateness and late updates, and at the end of input.

mod common;

use std::time::Duration;

use common::*;
use flowline_connector_api::Record;
use flowline_connector_testkit::MemorySink;
use flowline_runtime::{JobConfig, Tumbling};

#[test]
fn a_window_of_20k_keys_fires_every_key_once_in_order() {
    // Two windows of 20k keys, then an event that moves the watermark past
    // both, then late events inside the allowed lateness (updates).
    let keys = 20_000;
    let mut recs: Vec<Record> = Vec::new();
    for k in 0..keys {
        recs.push(rec(&format!("k{k:05}"), 1_000, 1));
    }
    // The first of these fires window 0..10 s with all 20k keys.
    for k in 0..keys {
        recs.push(rec(&format!("k{k:05}"), 11_000, 2));
    }
    recs.push(rec("zz", 30_000, 0));
    recs.push(rec("k00007", 15_000, 5)); // window 10..20 already fired: update
    let s = Setup {
        spec: Tumbling::of(Duration::from_secs(10)),
        ooo: 0,
        lateness: 20_000,
    };
    let out = MemorySink::new();
    let summary = run(job(
        vec![recs.clone()],
        &s,
        &out,
        None,
        JobConfig::named("chunks").partitioned_by_key(true),
    ));
    assert_eq!(summary.records_in, recs.len() as u64);
    let lines = out.payloads();
    let first: Vec<&String> = lines.iter().filter(|l| l.contains(" 0 10000 ")).collect();
    let second: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(" 10000 20000 "))
        .collect();
    assert_eq!(first.len(), keys, "window 0..10 s: each key once");
    let last_first = lines.iter().rposition(|l| l.contains(" 0 10000 ")).unwrap();
    let first_second = lines
        .iter()
        .position(|l| l.contains(" 10000 20000 "))
        .unwrap();
    assert!(
        last_first < first_second,
        "window 0..10 s is fully out before window 10..20 s fires"
    );
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(first, sorted, "in key order");
    // 20k first results, one update for k00007.
    assert_eq!(second.len(), keys + 1);
    assert!(
        second.contains(&&"k00007 10000 20000 7 2 true".to_string()),
        "the late event updated its window"
    );
    // The end of input fires the last window.
    assert!(lines
        .iter()
        .any(|l| l.starts_with("zz 30000 40000 0 1 false")));
    let (finals, _) = finals(&lines);
    let reference = reference(&[recs.iter().map(|r| decode(r).unwrap()).collect()], &s).0;
    assert_eq!(finals, reference);
}
