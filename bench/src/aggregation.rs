//! Events/s of the metrics aggregation in memory (10k keys, 10 s tumbling
//! windows, JSON decode included), next to a hand-written loop in the same
//! binary that only decodes and updates a HashMap, and the runtime's modes
//! next to each other:
//!
//! - the exchange with 1 worker vs the hand-written loop (and vs the same
//!   loop writing each window's document as the job does, the work the
//!   plain loop leaves out);
//! - the exchange with 2 workers vs 1;
//! - 4 partitions, events spread round robin (the exchange, 2 workers) vs
//!   partitioned by host (`partitioned_by_key`, no exchange);
//! - partitioned by host, no exchange: 1 worker (every partition on the
//!   driver's task) vs the hand-written loop, and 2 workers (partitions on
//!   tasks of their own) vs 1.
//!
//! Each run also prints the CPU it used, in cores (CPU seconds over wall
//! seconds): on a 2-core machine, 1 worker already runs the driver and the
//! worker side by side, so the worker ratio is bounded by the cores left.
//! The scaling with cores is printed next to it: the exchange with 1 worker
//! on a runtime of one thread (one core), and with 2 workers on two.
//!
//! ```sh
//! cargo run --release -p flowline-bench --bin aggregation -- [EVENTS] [ROUNDS]
//! ```

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use flowline::anomaly::AnomalySettings;
use flowline::job::{decode, metrics_pipeline, Name, Outputs, WindowSettings};
use flowline::stats::Stats;
use flowline_connector_api::Record;
use flowline_connector_testkit::MemorySource;
use flowline_metric_generator::{Generator, GeneratorConfig};
use flowline_runtime::{JobConfig, StreamEnvironment, TimeWindow, Tumbling, WindowResult};

mod common;
use common::{cpu_seconds, Discard};

/// As the `flowline` binary: mimalloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn input(events: u64) -> Vec<Record> {
    let g = Generator::new(GeneratorConfig {
        hosts: 2_000, // × 5 metrics = 10k keys
        count: Some(events),
        max_out_of_order_ms: 2_000,
        ..GeneratorConfig::default()
    });
    g.map(|e| Record::new(e.to_json())).collect()
}

/// How a run reads its input and where its state lives.
#[derive(Clone, Copy)]
enum Mode {
    /// One partition, the exchange with this many workers.
    Exchange(usize),
    /// Four partitions, events in turn; the exchange with 2 workers.
    RoundRobin,
    /// Four partitions by host; no exchange, partitions on up to this
    /// many tasks.
    ByHost(usize),
}

fn partitions(records: &[Record], mode: Mode) -> Vec<Vec<Record>> {
    match mode {
        Mode::Exchange(_) => vec![records.to_vec()],
        Mode::RoundRobin => {
            let mut p = vec![Vec::new(); 4];
            for (i, r) in records.iter().enumerate() {
                p[i % 4].push(r.clone());
            }
            p
        }
        Mode::ByHost(_) => {
            let mut p = vec![Vec::new(); 4];
            for r in records {
                let host = decode(&r.payload).expect("valid event").key.0;
                let h = host
                    .bytes()
                    .fold(0usize, |a, b| a.wrapping_mul(31) + b as usize);
                p[h % 4].push(r.clone());
            }
            p
        }
    }
}

fn runtime_run(
    rt: &tokio::runtime::Runtime,
    parts: Vec<Vec<Record>>,
    mode: Mode,
) -> (Duration, f64, u64) {
    let n: usize = parts.iter().map(Vec::len).sum();
    let cfg = JobConfig::named("bench").out_of_orderness(Duration::from_secs(3));
    let cfg = match mode {
        Mode::Exchange(w) => cfg.workers(w),
        Mode::RoundRobin => cfg.workers(2),
        Mode::ByHost(w) => cfg.partitioned_by_key(true).workers(w),
    };
    let env = StreamEnvironment::new(cfg);
    let out = Discard::default();
    let sink = env.add_sink("discard", Box::new(out.clone()));
    let source = MemorySource::new(parts).with_batch_size(1024);
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
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let summary = rt.block_on(env.execute()).expect("bench job");
    let (el, cpu) = (t0.elapsed(), cpu_seconds() - c0);
    assert_eq!(summary.records_in, n as u64);
    assert_eq!(summary.late_records, 0);
    (el, cpu, out.0.load(Ordering::Relaxed))
}

/// The hand-written loop; with `render`, it also writes each window's
/// document as the job does (`render::window_record`), which the job's
/// windows sink gets and the plain loop leaves out.
fn hand_loop(records: &[Record], render: bool) -> (Duration, u64) {
    let t0 = Instant::now();
    let mut windows: HashMap<(Name, Name, i64), Stats> = HashMap::new();
    for r in records {
        let m = decode(&r.payload).expect("valid event");
        let start = m.ts - m.ts.rem_euclid(10_000);
        windows
            .entry((m.key.0, m.key.1, start))
            .or_default()
            .add(m.value);
    }
    let n = windows.len() as u64;
    if render {
        for ((host, metric, start), stats) in windows {
            let r = WindowResult {
                key: (host, metric),
                window: TimeWindow {
                    start,
                    end: start + 10_000,
                },
                value: stats,
                update: false,
            };
            black_box(flowline::render::window_record(&r));
        }
    } else {
        black_box(&windows);
    }
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
    println!("aggregation: {events} events, 10k keys, 10 s tumbling windows, JSON decode included; {rounds} interleaved rounds, best of each");
    // One runtime thread: the whole job on one core.
    let rt1 = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let modes = [
        ("exchange, 1 worker", Mode::Exchange(1)),
        ("exchange, 2 workers", Mode::Exchange(2)),
        ("4 partitions round robin, exchange", Mode::RoundRobin),
        ("4 partitions by host, no exchange", Mode::ByHost(2)),
        ("exchange, 1 worker, 1 runtime thread", Mode::Exchange(1)),
        ("by host, no exchange, 1 worker", Mode::ByHost(1)),
    ];
    let inputs: Vec<Vec<Vec<Record>>> = modes
        .iter()
        .map(|(_, m)| partitions(&records, *m))
        .collect();
    // BENCH_ONLY=0,2: only those modes (to profile one).
    let only: Option<Vec<usize>> = std::env::var("BENCH_ONLY").ok().map(|v| {
        v.split(',')
            .map(|i| i.parse().expect("BENCH_ONLY"))
            .collect()
    });
    let mut best = [Duration::MAX; 6];
    let mut cores = [0.0f64; 6];
    let mut best_hand = Duration::MAX;
    let mut best_render = Duration::MAX;
    let rate = |d: Duration| events as f64 / d.as_secs_f64();
    for round in 1..=rounds {
        let (h, nh) = hand_loop(&records, false);
        best_hand = best_hand.min(h);
        let (hr, _) = hand_loop(&records, true);
        best_render = best_render.min(hr);
        print!(
            "  round {round}: hand-written {:>9.0}/s, rendering {:>9.0}/s",
            rate(h),
            rate(hr)
        );
        for (i, (name, mode)) in modes.iter().enumerate() {
            if !only.as_ref().is_none_or(|o| o.contains(&i)) {
                continue;
            }
            let runtime = if i == 4 { &rt1 } else { &rt };
            let (d, cpu, n) = runtime_run(runtime, inputs[i].clone(), *mode);
            assert_eq!(n, nh, "{name}: the same windows as the hand-written loop");
            if d < best[i] {
                best[i] = d;
                cores[i] = cpu / d.as_secs_f64();
            }
            print!(", {name} {:>9.0}/s", rate(d));
        }
        println!();
    }
    println!(
        "hand-written loop:                   {:>10.0} events/s",
        rate(best_hand)
    );
    println!(
        "hand-written, rendering documents:   {:>10.0} events/s",
        rate(best_render)
    );
    for (i, (name, _)) in modes.iter().enumerate() {
        println!(
            "{name:<37}{:>10.0} events/s, {:.2} cores",
            rate(best[i]),
            cores[i]
        );
    }
    println!(
        "ratio exchange 1 worker / hand-written:   {:.2} (target >= 0.90)",
        rate(best[0]) / rate(best_hand)
    );
    println!(
        "  the same / the loop writing each window's document as the job does: {:.2}",
        rate(best[0]) / rate(best_render)
    );
    println!(
        "ratio exchange 2 workers / 1 worker:      {:.2} (target >= 1.60)",
        rate(best[1]) / rate(best[0])
    );
    println!(
        "ratio round robin (exchange) / by host:   {:.2} (target >= 0.80)",
        rate(best[2]) / rate(best[3])
    );
    println!(
        "scaling, 2 workers on 2 threads / 1 worker on 1 thread: {:.2}",
        rate(best[1]) / rate(best[4])
    );
    println!(
        "ratio by host 1 worker / hand-written:    {:.2} (target >= 0.90)",
        rate(best[5]) / rate(best_hand)
    );
    println!(
        "ratio by host 2 workers / 1 worker:       {:.2} (target >= 1.60)",
        rate(best[3]) / rate(best[5])
    );
}
