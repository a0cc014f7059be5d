//! JSON parsers on the metrics decode (#15's question): serde_json, which
//! the job uses, against simd-json and sonic-rs, each decoding the
//! generator's event shape into the same borrowed fields the job reads.
//! simd-json parses in place, so its figure includes copying each payload
//! into a reused buffer (a `Record` is borrowed by the decode). Prints
//! events/s and the ratio to serde_json, per round.
//!
//! ```sh
//! cargo run --release -p flowline-bench --bin json_parsers -- [EVENTS] [ROUNDS]
//! ```

use serde::Deserialize;
use std::borrow::Cow;
use std::hint::black_box;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The fields the job's decode reads.
#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    host: Cow<'a, str>,
    #[serde(borrow)]
    metric: Cow<'a, str>,
    value: f64,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
}

/// Events in the generator's shape (with its extra fields, ignored).
fn lines(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"host":"host-{:04}","metric":"{}","value":{}.{:03},"timestamp":"2026-01-01T00:{:02}:{:02}.{:03}Z","region":"eu-west-1","tags":{{"rack":"r{}","env":"prod"}}}}"#,
                i % 2000,
                ["cpu_util", "mem_used_pct", "disk_io_ops", "net_rx_bytes", "http_latency_ms"][i % 5],
                i % 997,
                i % 1000,
                (i / 60000) % 60,
                (i / 1000) % 60,
                i % 1000,
                i % 40
            )
            .into_bytes()
        })
        .collect()
}

/// Events per second of `decode` over `data`, each event's fields used
/// (so none is optimised away); `decode` gets a reusable buffer.
fn per_second(
    data: &[Vec<u8>],
    decode: impl for<'a> Fn(&'a [u8], &'a mut Vec<u8>) -> Raw<'a>,
) -> f64 {
    let t = Instant::now();
    let mut s = 0.0;
    let mut buf = Vec::with_capacity(512);
    for l in data {
        let r = decode(l, &mut buf);
        s += r.value + r.host.len() as f64 + r.metric.len() as f64 + r.timestamp.len() as f64;
    }
    black_box(s);
    data.len() as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let data = lines(n);
    for round in 0..rounds {
        let a = per_second(&data, |l, _| serde_json::from_slice(l).unwrap());
        // simd-json parses in place: each payload is copied first.
        let b = per_second(&data, |l, buf| {
            buf.clear();
            buf.extend_from_slice(l);
            simd_json::serde::from_slice(buf).unwrap()
        });
        let c = per_second(&data, |l, _| sonic_rs::from_slice(l).unwrap());
        println!("round {round}: serde_json {:.2} M/s, simd-json {:.2} M/s ({:.2}x), sonic-rs {:.2} M/s ({:.2}x)", a / 1e6, b / 1e6, b / a, c / 1e6, c / a);
    }
}
