//! Source drain rate of a pre-filled topic through the Kafka connector, next
//! to a raw rdkafka consumer loop in the same process; prints both and the
//! ratio.
//!
//! ```sh
//! scripts/services up && eval "$(scripts/services env)"
//! cargo run --release -p flowline-bench --bin kafka_source -- [EVENTS] [PARTITIONS]
//! ```

use std::time::{Duration, Instant};

use flowline_connector_api::{Source, SourceEvent};
use flowline_integration_tests::{create_topic, metric_events, produce, unique, TestServices};

mod common;
use common::{raw, Drain};

/// As the `flowline` binary: mimalloc (for the raw loops too).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn connector(bootstrap: &str, topic: &str, n: u64, headers: bool) -> Drain {
    let cfg: flowline_kafka::KafkaSourceConfig = serde_json::from_value(serde_json::json!({
        "bootstrap_servers": bootstrap, "topics": [topic], "group_id": unique("conn"), "bounded": true,
        "headers": headers
    }))
    .unwrap();
    let mut src = flowline_kafka::KafkaSource::new(cfg).unwrap();
    let t0 = Instant::now();
    let mut first = None;
    let mut got = 0u64;
    let mut batches = 0u64;
    loop {
        match src.next().await.unwrap() {
            SourceEvent::Records(b) => {
                first.get_or_insert_with(|| t0.elapsed());
                got += b.len() as u64;
                batches += 1;
                drop(b);
            }
            SourceEvent::End => break,
            _ => {}
        }
    }
    let total = t0.elapsed();
    assert_eq!(got, n);
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        println!(
            "    connector: {batches} batches, {:.0} records per batch",
            got as f64 / batches.max(1) as f64
        );
    }
    Drain {
        n,
        first: first.unwrap_or_default(),
        total,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map(|a| a.parse().expect("EVENTS"))
        .unwrap_or(5_000_000);
    let partitions: i32 = args
        .next()
        .map(|a| a.parse().expect("PARTITIONS"))
        .unwrap_or(4);
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("bench-drain");
    create_topic(&s.kafka_bootstrap, &topic, partitions).await;
    let t0 = Instant::now();
    produce(
        &s.kafka_bootstrap,
        &topic,
        metric_events(2_000, n, 1)
            .into_iter()
            .map(|(h, j)| (h, j, None)),
    )
    .await;
    println!("kafka_source: {n} metric events (~180 bytes) in {partitions} partitions, pre-filled in {:.1}s", t0.elapsed().as_secs_f64());
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let names = [
        "raw rdkafka consumer loop (borrowed payloads)",
        "raw rdkafka consumer loop (copies payload + key)",
        "flowline-kafka source",
        "flowline-kafka source, headers = false",
    ];
    let mut runs: [Vec<Drain>; 4] = Default::default();
    for round in 1..=rounds {
        // BENCH_ONLY=2 (a comma list of variant numbers, 0-3) runs only
        // those, for profiling one of them.
        let run = |i: usize| {
            std::env::var("BENCH_ONLY")
                .map(|o| o.split(',').any(|x| x.trim() == i.to_string()))
                .unwrap_or(true)
        };
        let skipped = Drain {
            n: 2,
            first: Duration::ZERO,
            total: Duration::from_secs(1),
        };
        let b = &s.kafka_bootstrap;
        let d = [
            if run(0) {
                raw(b, &topic, partitions, n, false).await
            } else {
                skipped
            },
            if run(1) {
                raw(b, &topic, partitions, n, true).await
            } else {
                skipped
            },
            if run(2) {
                connector(b, &topic, n, true).await
            } else {
                skipped
            },
            if run(3) {
                connector(b, &topic, n, false).await
            } else {
                skipped
            },
        ];
        print!("  round {round}:");
        for (i, d) in d.iter().enumerate() {
            print!(" {:>9.0}/s", d.steady_rate());
            runs[i].push(*d);
        }
        println!();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Medians: single rounds swing widely with the broker on the same cores.
    let median = |v: &[Drain], f: fn(&Drain) -> f64| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        x.sort_by(|a, b| a.partial_cmp(b).unwrap());
        x[x.len() / 2]
    };
    println!("medians of {rounds} rounds (drain rate from the first record to the last; start-up: time to the first record; overall: start-up included):");
    let mut steady = [0.0; 4];
    for (i, name) in names.iter().enumerate() {
        steady[i] = median(&runs[i], Drain::steady_rate);
        println!(
            "{name:<50} {:>9.0} events/s   start-up {:>5.0} ms   overall {:>9.0} events/s",
            steady[i],
            median(&runs[i], |d| d.first.as_secs_f64() * 1e3),
            median(&runs[i], Drain::rate),
        );
    }
    println!(
        "ratio connector / raw: {:.2} (target >= 0.95); connector / raw copying: {:.2}; without headers / raw: {:.2}",
        steady[2] / steady[0],
        steady[2] / steady[1],
        steady[3] / steady[0]
    );
}
