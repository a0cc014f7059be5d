//! Decoding speed of the metrics job's events (#16), in one binary, each
//! next to the same baseline: the decode of the generator's shape as it was
//! before `[event]` existed (kept here verbatim), so "before" and "after"
//! run on the same machine in the same process.
//!
//! - before: the pre-`[event]` decode (serde into borrowed fields);
//! - after, default shape: `flowline::job::decode_until`, what a job
//!   without `[event]` runs;
//! - after, `[event]` path with the same values in the Metricbeat/ECS shape
//!   (`@timestamp` with an offset, `host.name`, a nested value);
//! - after, `[event]` with two values per event (ECS, `values = [...]`).
//!
//! ```sh
//! cargo run --release -p flowline-bench --bin decode -- [EVENTS] [ROUNDS]
//! ```

use std::borrow::Cow;
use std::hint::black_box;
use std::time::{Duration, Instant};

use flowline::event::EventShape;
use flowline::job::{decode_shaped, decode_until, Horizon};
use flowline_connector_api::time::parse_rfc3339_ms;
use flowline_metric_generator::{Generator, GeneratorConfig};
use serde::Deserialize;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The decode before `[event]` (commit 82aee1a), verbatim but for names.
#[derive(Deserialize)]
struct RawBefore<'a> {
    #[serde(borrow)]
    host: Cow<'a, str>,
    #[serde(borrow)]
    metric: Cow<'a, str>,
    value: f64,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
}

fn decode_before(payload: &[u8]) -> Result<((String, String), f64, i64), String> {
    let raw: RawBefore<'_> =
        serde_json::from_slice(payload).map_err(|e| format!("invalid metric event: {e}"))?;
    if !raw.value.is_finite() {
        return Err(format!("value {} is not a finite number", raw.value));
    }
    let ts = parse_rfc3339_ms(&raw.timestamp)?;
    Ok((
        (raw.host.into_owned(), raw.metric.into_owned()),
        raw.value,
        ts,
    ))
}

fn shape(event: &str) -> EventShape {
    let job = format!(
        "[source]\ntype = \"file\"\npath = \"x\"\n[sink]\ntype = \"stdout\"\n[event]\n{event}"
    );
    flowline::config::JobPlan::parse(&job)
        .expect("bench job file")
        .window
        .event
}

fn time(name: &str, base: Option<Duration>, mut f: impl FnMut() -> u64, n: usize) -> Duration {
    let t0 = Instant::now();
    let got = f();
    let el = t0.elapsed();
    assert_eq!(got as usize, n, "{name}: every event decoded");
    let rate = n as f64 / el.as_secs_f64();
    match base {
        Some(b) => println!(
            "{name:<44} {rate:>12.0} events/s  {:.2}× before",
            b.as_secs_f64() / el.as_secs_f64()
        ),
        None => println!("{name:<44} {rate:>12.0} events/s"),
    }
    el
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events: u64 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let lines: Vec<String> = Generator::new(GeneratorConfig {
        hosts: 2_000,
        count: Some(events),
        ..GeneratorConfig::default()
    })
    .map(|e| e.to_json())
    .collect();
    // The same values in the ECS shape, times at +01:00.
    let ecs: Vec<String> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let ms = parse_rfc3339_ms(v["timestamp"].as_str().unwrap()).unwrap();
            let local = jiff::Timestamp::from_millisecond(ms + 3_600_000).unwrap();
            serde_json::json!({
                "@timestamp": format!("{}+01:00", local.strftime("%Y-%m-%dT%H:%M:%S%.3f")),
                "host": {"name": v["host"]},
                "metric": v["metric"],
                "system": {"v": {"pct": v["value"]}, "w": {"pct": v["value"]}},
            })
            .to_string()
        })
        .collect();
    let one = shape(
        "timestamp = \"@timestamp\"\nkey = [\"host.name\", \"metric\"]\nvalue = \"system.v.pct\"\n",
    );
    let two = shape("timestamp = \"@timestamp\"\nkey = [\"host.name\"]\nvalues = [\"system.v.pct\", \"system.w.pct\"]\n");
    let n = lines.len();
    let none = Horizon::fixed(i64::MAX);
    println!("{n} events, {rounds} rounds, interleaved; the last round printed last");
    for round in 0..rounds {
        println!("round {}", round + 1);
        let base = time(
            "before [event] (pre-#16 decode)",
            None,
            || {
                lines
                    .iter()
                    .filter(|l| black_box(decode_before(l.as_bytes())).is_ok())
                    .count() as u64
            },
            n,
        );
        time(
            "after, default shape (decode_until)",
            Some(base),
            || {
                lines
                    .iter()
                    .filter(|l| black_box(decode_until(l.as_bytes(), &none)).is_ok())
                    .count() as u64
            },
            n,
        );
        time(
            "after, [event] ECS shape, one value",
            Some(base),
            || {
                ecs.iter()
                    .filter(|l| {
                        black_box(decode_shaped(&one, l.as_bytes(), &none))
                            .1
                            .is_none()
                    })
                    .count() as u64
            },
            n,
        );
        time(
            "after, [event] ECS shape, two values",
            Some(base),
            || {
                ecs.iter()
                    .filter(|l| black_box(decode_shaped(&two, l.as_bytes(), &none)).0.len() == 2)
                    .count() as u64
            },
            n,
        );
    }
}
