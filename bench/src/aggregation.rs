//! Events/s of the metrics aggregation in memory (10k keys, 10 s tumbling
//! windows, JSON decode included), next to a hand-written loop in the same
//! binary that only decodes and updates a HashMap. Prints both and the ratio.
//!
//! ```sh
//! cargo run --release -p flowline-bench --bin aggregation -- [EVENTS] [ROUNDS]
//! ```

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use flowline::anomaly::AnomalySettings;
use flowline::job::{decode, metrics_pipeline, Outputs, WindowSettings};
use flowline::stats::Stats;
use flowline_connector_api::Record;
use flowline_connector_testkit::MemorySource;
use flowline_metric_generator::{Generator, GeneratorConfig};
use flowline_runtime::{JobConfig, StreamEnvironment, Tumbling};

mod common;
use common::Discard;

fn input(events: u64) -> Vec<Record> {
    let g = Generator::new(GeneratorConfig {
        hosts: 2_000, // × 5 metrics = 10k keys
        count: Some(events),
        max_out_of_order_ms: 2_000,
        ..GeneratorConfig::default()
    });
    g.map(|e| Record::new(e.to_json())).collect()
}

fn runtime_run(rt: &tokio::runtime::Runtime, records: &[Record]) -> (Duration, u64) {
    let env =
        StreamEnvironment::new(JobConfig::named("bench").out_of_orderness(Duration::from_secs(3)));
    let out = Discard::default();
    let sink = env.add_sink("discard", Box::new(out.clone()));
    let source = MemorySource::new(vec![records.to_vec()]).with_batch_size(1024);
    let w = WindowSettings::new(Tumbling::of(Duration::from_secs(10)));
    metrics_pipeline(
        env.source("mem", Box::new(source)),
        w,
        AnomalySettings::default(),
        Outputs {
            windows: sink,
            anomalies: None,
            current: None,
            results: None,
        },
    );
    let t0 = Instant::now();
    let summary = rt.block_on(env.execute()).expect("bench job");
    let el = t0.elapsed();
    assert_eq!(summary.records_in, records.len() as u64);
    (el, out.0.load(Ordering::Relaxed))
}

fn hand_loop(records: &[Record]) -> (Duration, u64) {
    let t0 = Instant::now();
    let mut windows: HashMap<(String, String, i64), Stats> = HashMap::new();
    for r in records {
        let m = decode(&r.payload).expect("valid event");
        let start = m.ts - m.ts.rem_euclid(10_000);
        windows
            .entry((m.key.0, m.key.1, start))
            .or_default()
            .add(m.value);
    }
    let n = windows.len() as u64;
    black_box(&windows);
    (t0.elapsed(), n)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let events: u64 = args
        .next()
        .map(|a| a.parse().expect("EVENTS"))
        .unwrap_or(1_000_000);
    let rounds: usize = args.next().map(|a| a.parse().expect("ROUNDS")).unwrap_or(3);
    let records = input(events);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("aggregation: {events} events, 10k keys, 10 s tumbling windows, JSON decode included; {rounds} rounds, best of each");
    let (mut best_rt, mut best_hand) = (Duration::MAX, Duration::MAX);
    let (mut windows_rt, mut windows_hand) = (0, 0);
    for round in 1..=rounds {
        let (h, nh) = if std::env::var_os("BENCH_RUNTIME_ONLY").is_some() {
            (Duration::from_secs(1), 0)
        } else {
            hand_loop(&records)
        };
        let (r, nr) = runtime_run(&rt, &records);
        println!(
            "  round {round}: runtime {:>10.0} events/s ({nr} windows), hand-written loop {:>10.0} events/s ({nh} windows)",
            events as f64 / r.as_secs_f64(),
            events as f64 / h.as_secs_f64()
        );
        best_rt = best_rt.min(r);
        best_hand = best_hand.min(h);
        windows_rt = nr;
        windows_hand = nh;
    }
    if std::env::var_os("BENCH_RUNTIME_ONLY").is_none() {
        assert_eq!(windows_rt, windows_hand, "both count the same windows");
    }
    let rt_rate = events as f64 / best_rt.as_secs_f64();
    let hand_rate = events as f64 / best_hand.as_secs_f64();
    println!("runtime:           {rt_rate:>10.0} events/s");
    println!("hand-written loop: {hand_rate:>10.0} events/s");
    println!(
        "ratio runtime / hand-written: {:.2} (target >= 0.80)",
        rt_rate / hand_rate
    );
}
