//! Documents/s through the Elasticsearch sink next to a raw `_bulk` loader
//! at its best batch size and concurrency, against the same server, in the
//! same process; and the sink's peak memory with the server stalled.
//!
//! ```sh
//! scripts/services up && eval "$(scripts/services env)"
//! cargo run --release -p flowline-bench --bin es_sink -- [DOCS]
//! ```

use std::sync::atomic::{AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowline_connector_api::{Record, Sink};
use flowline_integration_tests::{count, es_sink, proxy, unique, TestServices};
use serde_json::json;

fn docs(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let d = json!({"host": format!("host-{:04}", i % 2000), "metric": "cpu_util", "window_start": format!("2026-01-01T{:02}:{:02}:{:02}.000Z", (i / 3600) % 24, (i / 60) % 60, i % 60), "window_end": "2026-01-01T00:00:10.000Z", "count": 10, "sum": 412.5, "min": 30.1, "max": 52.9, "avg": 41.25, "p50": 40.9, "p95": 51.2, "p99": 52.7});
            Record::new(d.to_string()).with_key(format!("host-{:04}|cpu_util|{i}", i % 2000))
        })
        .collect()
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn raw(url: &str, index: &str, records: &[Record], batch: usize, conc: usize) -> f64 {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let bodies: Vec<Vec<u8>> = records
        .chunks(batch)
        .map(|c| {
            let mut b = Vec::new();
            for r in c {
                let id = String::from_utf8_lossy(r.key.as_ref().unwrap()).into_owned();
                b.extend_from_slice(
                    json!({"index": {"_index": index, "_id": id}})
                        .to_string()
                        .as_bytes(),
                );
                b.push(b'\n');
                b.extend_from_slice(&r.payload);
                b.push(b'\n');
            }
            b
        })
        .collect();
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (http, bodies, next, url) =
            (http.clone(), bodies.clone(), next.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, SeqCst) as usize;
                let Some(b) = bodies.get(i) else { return };
                let r = http
                    .post(format!("{url}/_bulk"))
                    .header("content-type", "application/x-ndjson")
                    .body(b.clone())
                    .send()
                    .await
                    .unwrap();
                let v: serde_json::Value = r.json().await.unwrap();
                assert_eq!(v["errors"], false, "raw loader: {v}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    records.len() as f64 / t0.elapsed().as_secs_f64()
}

async fn through_sink(
    url: &str,
    index: &str,
    records: &[Record],
    batch: usize,
    conc: usize,
) -> f64 {
    let mut sink = es_sink(json!({"url": url, "index": index, "replicas": 0, "max_actions": batch, "max_bytes": 64 << 20, "max_in_flight": conc})).await.unwrap();
    let t0 = Instant::now();
    for c in records.chunks(1024) {
        sink.write(c.to_vec()).await.unwrap();
    }
    sink.flush().await.unwrap();
    records.len() as f64 / t0.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("DOCS"))
        .unwrap_or(200_000);
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let url = &s.elasticsearch_url;
    let es = s.elasticsearch().unwrap();
    let records = docs(n);
    // Same template for both, so both write the same mapping.
    let warm = unique("bench-es-warm");
    through_sink(url, &warm, &records[..n.min(20_000)], 1000, 2).await;

    println!("es_sink: {n} window documents of ~330 bytes, server {url}");
    let sample = &records[..n.min(50_000)];
    let mut best = (0.0, 0, 0);
    for batch in [500, 1000, 2000, 5000] {
        for conc in [1, 2, 4] {
            let rate = raw(url, &unique("bench-es-raw"), sample, batch, conc).await;
            println!(
                "  raw _bulk loader, batch {batch:>4}, concurrency {conc}: {rate:>9.0} docs/s"
            );
            if rate > best.0 {
                best = (rate, batch, conc);
            }
        }
    }
    let (_, batch, conc) = best;
    let raw_index = unique("bench-es-raw");
    let raw_rate = raw(url, &raw_index, &records, batch, conc).await;
    let sink_index = unique("bench-es-sink");
    let sink_rate = through_sink(url, &sink_index, &records, batch, conc).await;
    let default_index = unique("bench-es-sink-default");
    let default_rate = through_sink(url, &default_index, &records, 1000, 2).await;
    assert_eq!(count(&es, &sink_index).await, n as u64);
    assert_eq!(count(&es, &raw_index).await, n as u64);
    println!("raw _bulk loader (best: batch {batch}, concurrency {conc}): {raw_rate:>9.0} docs/s");
    println!("sink, same batch and concurrency:                 {sink_rate:>9.0} docs/s");
    println!("sink, defaults (1000 actions, 2 in flight):         {default_rate:>9.0} docs/s");
    println!(
        "ratio sink / raw: {:.2} (target >= 0.90); defaults / raw: {:.2}",
        sink_rate / raw_rate,
        default_rate / raw_rate
    );

    // Peak memory with the server stalled: the proxy answers 503 to everything.
    let p = proxy::start(url).await;
    let mut sink = es_sink(json!({"url": p.url, "index": unique("bench-es-stall"), "replicas": 0, "max_attempts": 100000, "initial_backoff": "50ms", "max_backoff": "200ms"})).await.unwrap();
    p.faults.down.store(true, SeqCst);
    let all = docs(300_000);
    let before = rss_kb();
    let accepted = Arc::new(AtomicU64::new(0));
    let a = accepted.clone();
    let writer = tokio::spawn(async move {
        for c in all.chunks(1000) {
            sink.write(c.to_vec()).await.unwrap();
            a.fetch_add(c.len() as u64, Relaxed);
        }
        sink.flush().await.unwrap();
    });
    let mut last = u64::MAX;
    let mut peak = before;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak = peak.max(rss_kb());
        let now = accepted.load(Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    println!(
        "server stalled: the sink accepted {last} of 300000 documents, then held back; RSS {:.1} MB before, {:.1} MB at peak (+{:.1} MB; bound 2 x 5 MB x 3 = 30 MB of documents)",
        before as f64 / 1024.0,
        peak as f64 / 1024.0,
        (peak - before) as f64 / 1024.0
    );
    p.faults.down.store(false, SeqCst);
    writer.await.unwrap();
}
