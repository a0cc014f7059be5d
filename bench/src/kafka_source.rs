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
use common::raw;

/// As the `flowline` binary: mimalloc (for the raw loops too).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn connector(bootstrap: &str, topic: &str, n: u64, headers: bool) -> f64 {
    let cfg: flowline_kafka::KafkaSourceConfig = serde_json::from_value(serde_json::json!({
        "bootstrap_servers": bootstrap, "topics": [topic], "group_id": unique("conn"), "bounded": true,
        "headers": headers
    }))
    .unwrap();
    let mut src = flowline_kafka::KafkaSource::new(cfg).unwrap();
    let t0 = Instant::now();
    let mut got = 0u64;
    let mut batches = 0u64;
    loop {
        match src.next().await.unwrap() {
            SourceEvent::Records(b) => {
                got += b.len() as u64;
                batches += 1;
            }
            SourceEvent::End => break,
            _ => {}
        }
    }
    assert_eq!(got, n);
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        println!(
            "    connector: {batches} batches, {:.0} records per batch",
            got as f64 / batches.max(1) as f64
        );
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map(|a| a.parse().expect("EVENTS"))
        .unwrap_or(1_000_000);
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
        .unwrap_or(5);
    let (mut raws, mut owneds, mut conns, mut nohs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let r = raw(&s.kafka_bootstrap, &topic, partitions, n, false).await;
        let o = raw(&s.kafka_bootstrap, &topic, partitions, n, true).await;
        let c = connector(&s.kafka_bootstrap, &topic, n, true).await;
        let h = connector(&s.kafka_bootstrap, &topic, n, false).await;
        println!("  round {round}: raw loop {r:>9.0}/s, raw loop copying records out {o:>9.0}/s, connector {c:>9.0}/s, connector without headers {h:>9.0}/s");
        raws.push(r);
        owneds.push(o);
        conns.push(c);
        nohs.push(h);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Medians: single rounds swing widely with the broker on the same cores.
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (r, o, c, h) = (
        median(&mut raws),
        median(&mut owneds),
        median(&mut conns),
        median(&mut nohs),
    );
    println!("medians of {rounds} rounds:");
    println!("raw rdkafka consumer loop (borrowed payloads):    {r:>9.0} events/s");
    println!("raw rdkafka consumer loop (copies payload + key): {o:>9.0} events/s");
    println!("flowline-kafka source:                            {c:>9.0} events/s");
    println!("flowline-kafka source, headers = false:           {h:>9.0} events/s");
    println!(
        "ratio connector / raw: {:.2} (target >= 0.95); connector / raw copying: {:.2}; without headers / raw: {:.2}",
        c / r,
        c / o,
        h / r
    );
}
