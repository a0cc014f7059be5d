//! Property tests: the runtime's window output equals a naive reference
//! aggregation on random out-of-order streams, for tumbling and sliding
//! windows, with and without allowed lateness. A record late for some of
//! its sliding windows (they were final) counts in the others and is in
//! the late output once.

mod common;

use std::time::Duration;

use common::*;
use flowline_connector_testkit::MemorySink;
use flowline_runtime::{JobConfig, Sliding, Tumbling};
use proptest::prelude::*;

fn events() -> impl Strategy<Value = Vec<Vec<Ev>>> {
    // Up to 3 partitions; keys are partitioned (key k lives in partition k % n).
    (1usize..=3).prop_flat_map(|n| {
        prop::collection::vec((0u8..6, 0i64..60_000, -50i64..50, 0i64..4_000), 0..150).prop_map(
            move |raw| {
                let mut parts = vec![Vec::new(); n];
                let mut clock = vec![0i64; n];
                for (k, step, value, back) in raw {
                    let p = k as usize % n;
                    clock[p] += step / 40; // mostly advancing time ...
                    let ts = (clock[p] - back).max(0); // ... with out-of-order events
                    parts[p].push(Ev {
                        key: format!("k{k}"),
                        ts,
                        value,
                    });
                }
                parts
            },
        )
    })
}

fn check(parts: Vec<Vec<Ev>>, setup: Setup) -> Result<(), TestCaseError> {
    let records = parts
        .iter()
        .map(|p| p.iter().map(|e| rec(&e.key, e.ts, e.value)).collect())
        .collect();
    let out = MemorySink::new();
    let late = MemorySink::new();
    let summary = run(job(
        records,
        &setup,
        &out,
        Some(&late),
        JobConfig::named("prop").partitioned_by_key(true),
    ));
    let (want, want_late) = reference(&parts, &setup);
    let (got, firsts) = finals(&out.payloads());
    prop_assert_eq!(&got, &want);
    prop_assert!(
        firsts.values().all(|&n| n == 1),
        "a window fired twice: {:?}",
        firsts
    );
    prop_assert_eq!(firsts.len(), want.len());
    prop_assert_eq!(summary.late_records as usize, want_late);
    prop_assert_eq!(late.records().len(), want_late);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn tumbling_matches_reference(parts in events(), ooo in 0i64..3_000, size in 500u64..5_000) {
        check(parts, Setup { spec: Tumbling::of(Duration::from_millis(size)), ooo, lateness: 0 })?;
    }

    #[test]
    fn tumbling_with_lateness_matches_reference(parts in events(), ooo in 0i64..1_000, lateness in 1i64..3_000) {
        check(parts, Setup { spec: Tumbling::of(Duration::from_millis(1_000)), ooo, lateness })?;
    }

    #[test]
    fn sliding_matches_reference(parts in events(), ooo in 0i64..2_000, size in 1_000u64..4_000, slide in 300u64..1_500) {
        check(parts, Setup { spec: Sliding::of(Duration::from_millis(size), Duration::from_millis(slide)), ooo, lateness: 0 })?;
    }

    #[test]
    fn sliding_with_lateness_matches_reference(parts in events(), ooo in 0i64..1_000, lateness in 1i64..2_000, slide in 300u64..1_500) {
        check(parts, Setup { spec: Sliding::of(Duration::from_millis(2_000), Duration::from_millis(slide)), ooo, lateness })?;
    }
}
