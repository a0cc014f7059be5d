//! Behind the exchange, late letters carry their own source records, once
//! each: records of several events (`try_flat_map`), whose events go to
//! different key groups and workers, some of them late. The late output
//! must hold each record with a late event exactly once (not once per late
//! event: a consumer reading it back would count the record again for
//! each), and the windows must equal a group-by of the events on time (a
//! naive walk of each partition's watermark decides which those are).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use flowline_connector_api::Record;
use flowline_connector_testkit::{MemorySink, MemorySource};
use flowline_runtime::{DeadLetterFormat, JobConfig, StreamEnvironment, Tumbling};
use proptest::prelude::*;

const OOO: i64 = 100;
const WINDOW: i64 = 1_000;

/// Records of 1 to 4 events (`key,ts,value;…`) of `keys` keys on random
/// partitions, their times rising; about one event in five is 2 s behind
/// its partition's clock (late once the clock is past 2.1 s).
fn input(seed: u64, partitions: usize, keys: u64, records: usize) -> Vec<Vec<Vec<Ev>>> {
    let mut rng = Rng(seed);
    let mut parts = vec![Vec::new(); partitions];
    let mut clock = vec![0i64; partitions];
    for _ in 0..records {
        let p = rng.below(partitions as u64) as usize;
        clock[p] += rng.below(40) as i64;
        let events = (0..1 + rng.below(4))
            .map(|_| Ev {
                key: format!("k{}", rng.below(keys)),
                ts: match rng.below(5) {
                    0 => (clock[p] - 2_000).max(0),
                    _ => clock[p],
                },
                value: rng.below(100) as i64,
            })
            .collect();
        parts[p].push(events);
    }
    parts
}

fn payload(events: &[Ev]) -> String {
    let parts: Vec<String> = events
        .iter()
        .map(|e| format!("{},{},{}", e.key, e.ts, e.value))
        .collect();
    parts.join(";")
}

/// The independent computation, event by event in each partition's order:
/// the windows of the events on time, and the payloads of the records
/// with a late event, with how many times each such payload was sent.
fn reference(parts: &[Vec<Vec<Ev>>]) -> (Finals, BTreeMap<String, usize>) {
    let (mut out, mut late) = (Finals::new(), BTreeMap::new());
    for records in parts {
        let (mut max, mut wm) = (i64::MIN, i64::MIN);
        for events in records {
            let mut any_late = false;
            for e in events {
                let start = e.ts.div_euclid(WINDOW) * WINDOW;
                if start + WINDOW - 1 > wm {
                    let acc = out
                        .entry((e.key.clone(), start, start + WINDOW))
                        .or_insert((0, 0));
                    acc.0 += e.value;
                    acc.1 += 1;
                } else {
                    any_late = true;
                }
                if e.ts > max {
                    max = e.ts;
                    wm = wm.max(max - OOO - 1);
                }
            }
            if any_late {
                *late.entry(payload(events)).or_insert(0) += 1;
            }
        }
    }
    (out, late)
}

fn decode_all(r: &Record) -> (Vec<Ev>, Option<String>) {
    let text = String::from_utf8_lossy(&r.payload).into_owned();
    let events = text
        .split(';')
        .map(|e| decode(&Record::new(e.to_string())).expect("test input"))
        .collect();
    (events, None)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn each_record_with_a_late_event_is_in_the_late_output_once(
        seed in any::<u64>(),
        partitions in 1usize..=3,
        workers in 1usize..=3,
        keys in 1u64..=30,
    ) {
        let parts = input(seed, partitions, keys, 1_200);
        let (want, want_late) = reference(&parts);
        prop_assume!(!want_late.is_empty());
        let batches: Vec<Vec<Record>> = parts
            .iter()
            .map(|p| p.iter().map(|evs| Record::new(payload(evs))).collect())
            .collect();
        let (out, late) = (MemorySink::new(), MemorySink::new());
        let config = JobConfig::named("exchange-records")
            .workers(workers)
            .checkpoint_interval(None)
            .out_of_orderness(Duration::from_millis(OOO as u64));
        let env = StreamEnvironment::new(config);
        let sink = env.add_sink("out", Box::new(out.clone()));
        env.late_sink("late", Box::new(late.clone()), DeadLetterFormat::Raw);
        let src = MemorySource::new(batches).with_batch_size(11).with_assignment();
        env.source("mem", Box::new(src))
            .try_flat_map("decode", decode_all)
            .with_timestamps(|e: &Ev| e.ts)
            .key_by(|e: &Ev| e.key.clone())
            .window(Tumbling::of(Duration::from_millis(WINDOW as u64)))
            .aggregate(SumCount)
            .sink_with(sink, line);
        let summary = run(env);
        let what = format!("{partitions} partitions, {workers} workers");
        let mut got_late = BTreeMap::new();
        for r in late.records() {
            *got_late.entry(String::from_utf8_lossy(&r.payload).into_owned()).or_insert(0) += 1;
        }
        prop_assert_eq!(summary.late_records as usize, want_late.values().sum::<usize>(), "{}", &what);
        prop_assert!(got_late == want_late, "{}: late letters and their records differ", &what);
        let (got, _) = finals(&out.payloads());
        prop_assert!(got == want, "{}: windows differ from the group-by", &what);
    }
}
