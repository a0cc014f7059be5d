//! The detector in the job against a naive one written here from the
//! README's rules: random series with gaps (some longer than
//! `forget_after`), values from 1e-3 to 1e300 of both signs, random
//! settings, the input cut into random batches and spread over 1 to 3
//! partitions read by 1 to 3 workers (through the exchange), with or
//! without allowed lateness (events then arrive out of order, up to the
//! lateness behind, so windows fire before they hold all their events and
//! are updated). Every key's last current-status document and every
//! anomaly must be the reference's, which judges whole windows.
//!
//! The reference keeps the spread as a standard deviation updated through
//! `hypot` (the textbook way to take sqrt(a² + b²) without squares, which
//! overflow at 1e300) and forgets a series at the end of the
//! `forget_after` period after the one its last window started in, for a
//! window ending after that: what happens in event time, whatever the
//! batches.

use std::collections::BTreeMap;
use std::time::Duration;

use flowline::anomaly::{AnomalyDoc, AnomalySettings, CurrentDoc};
use flowline::job::{metrics_pipeline, Outputs, WindowSettings};
use flowline_connector_api::time::parse_rfc3339_ms;
use flowline_connector_api::Record;
use flowline_connector_testkit::MemorySink;
use flowline_connector_testkit::MemorySource;
use flowline_runtime::{JobConfig, StreamEnvironment, Tumbling};
use proptest::prelude::*;

const W: i64 = 10_000;
const BASE: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// What the reference expects of one key's last window.
#[derive(Debug, Clone, PartialEq)]
struct Current {
    start: i64,
    mean: f64,
    std: f64,
    z: f64,
    status: &'static str,
    streak: u32,
}

/// (host, window index) → the window's values.
type Series = BTreeMap<(String, i64), Vec<f64>>;

/// Anomalies by (host, episode start): (confirming window start, z).
type Anomalies = BTreeMap<(String, i64), (i64, f64)>;

/// The reference's verdicts: each host's last current status, and the
/// anomalies.
fn reference(windows: &Series, c: &AnomalySettings) -> (BTreeMap<String, Current>, Anomalies) {
    let (mut current, mut anomalies) = (BTreeMap::new(), BTreeMap::new());
    let mut host = None;
    let (mut mean, mut std, mut seen, mut streak, mut episode, mut last) =
        (0.0f64, 0.0f64, 0u32, 0u32, 0i64, None::<i64>);
    for ((h, i), vals) in windows {
        if host != Some(h) {
            host = Some(h);
            last = None;
        }
        let start = BASE + i * W;
        let x = fsum(vals) / vals.len() as f64;
        let f = c.forget_after_ms;
        if last.is_some_and(|l| (l.div_euclid(f) + 2) * f < start + W - 1) {
            last = None;
        }
        if last.is_none() {
            (mean, std, seen, streak) = (0.0, 0.0, 0, 0);
        }
        last = Some(start);
        let used = std.max(1e-3 * x.abs().max(mean.abs()));
        let z = if seen == 0 || used == 0.0 {
            0.0
        } else {
            (x - mean) / used
        };
        let before = (mean, used);
        let warming = seen < c.warmup;
        let status;
        if !warming && z.abs() >= c.threshold {
            if streak == 0 {
                episode = start;
            }
            streak += 1;
            if streak == c.consecutive {
                anomalies.insert((h.clone(), episode), (start, z));
            }
            status = if streak >= c.consecutive {
                "anomalous"
            } else {
                "suspect"
            };
            if streak >= c.relearn_after {
                (mean, streak) = (x, 0);
            }
        } else {
            streak = 0;
            status = if warming { "warming_up" } else { "ok" };
            let d = x - mean;
            if warming {
                let n = f64::from(seen) + 1.0;
                mean += d / n;
                std = ((n - 1.0) / n).sqrt() * std.hypot(d / n.sqrt());
            } else {
                let a = c.alpha;
                mean += a * d;
                std = (1.0 - a).sqrt() * std.hypot(a.sqrt() * d);
            }
            seen += 1;
        }
        current.insert(
            h.clone(),
            Current {
                start,
                mean: before.0,
                std: before.1,
                z,
                status,
                streak,
            },
        );
    }
    (current, anomalies)
}

/// The exact sum rounded once (Shewchuk's partials, as Python's
/// `math.fsum`): the job's sums are exact, and a plain `+` loses 50 in
/// `1e299 + 50 - 1e299`.
fn fsum(xs: &[f64]) -> f64 {
    let mut partials: Vec<f64> = Vec::new();
    for &x in xs {
        let mut x = x;
        let mut kept = 0;
        for i in 0..partials.len() {
            let mut y = partials[i];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                partials[kept] = lo;
                kept += 1;
            }
            x = hi;
        }
        partials.truncate(kept);
        partials.push(x);
    }
    // From the top: the sum of the partials, rounded once, half-way cases
    // settled by the sign of what lies below.
    let mut n = partials.len();
    let mut hi = 0.0;
    if n > 0 {
        n -= 1;
        hi = partials[n];
        let mut lo = 0.0;
        while n > 0 {
            let x = hi;
            n -= 1;
            let y = partials[n];
            hi = x + y;
            let yr = hi - x;
            lo = y - yr;
            if lo != 0.0 {
                break;
            }
        }
        if n > 0 && ((lo < 0.0 && partials[n - 1] < 0.0) || (lo > 0.0 && partials[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            if y == x - hi {
                hi = x;
            }
        }
    }
    hi
}

/// Equal, or within 1e-12 of the larger (`hypot` may round its last bit
/// differently from one library to another).
fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
}

fn settings() -> impl Strategy<Value = AnomalySettings> {
    (
        prop::sample::select(vec![0.1, 0.3, 1.0]),
        prop::sample::select(vec![1.0, 2.0, 4.0]),
        1u32..4,
        prop::sample::select(vec![0u32, 1, 3, 12]),
        0u32..4,
        prop::sample::select(vec![15_000i64, 30_000, 45_000, 600_000]),
    )
        .prop_map(
            |(alpha, threshold, consecutive, warmup, more, forget)| AnomalySettings {
                alpha,
                threshold,
                consecutive,
                warmup,
                relearn_after: consecutive + more,
                forget_after_ms: forget,
            },
        )
}

/// A window's values: around 50, or at a scale from 1e-3 to 1e300.
fn values() -> impl Strategy<Value = Vec<f64>> {
    let v = prop_oneof![
        8 => 40.0f64..60.0,
        1 => (-3i32..300, any::<bool>()).prop_map(|(e, neg)| {
            let v = 10f64.powi(e) * 1.5;
            if neg { -v } else { v }
        }),
    ];
    prop::collection::vec(v, 1..4)
}

/// Per host, the windows it has (indices in 0..80, gaps of any length).
fn series() -> impl Strategy<Value = Series> {
    prop::collection::vec(
        (0usize..3, 0i64..80, values()).prop_map(|(h, i, v)| ((format!("h{h}"), i), v)),
        20..150,
    )
    .prop_map(|v| v.into_iter().collect())
}

/// How the job reads its input.
#[derive(Debug, Clone, Copy)]
struct Reading {
    batch: usize,
    partitions: usize,
    workers: usize,
    /// The windows' allowed lateness, ms; each event arrives up to this
    /// much less 1 ms after its time (none refused as late).
    lateness: i64,
    /// Picks the events' delays.
    seed: u64,
}

fn readings() -> impl Strategy<Value = Reading> {
    (
        prop::sample::select(vec![1usize, 3, 17, 1000]),
        1usize..4,
        1usize..4,
        prop::sample::select(vec![0i64, 4_000, 25_000]),
        any::<u64>(),
    )
        .prop_map(|(batch, partitions, workers, lateness, seed)| Reading {
            batch,
            partitions,
            workers,
            lateness,
            seed,
        })
}

/// SplitMix64: the `i`th delay of a reading, below `lateness`.
fn delay(how: &Reading, i: u64) -> i64 {
    if how.lateness == 0 {
        return 0;
    }
    let mut z = how
        .seed
        .wrapping_add((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) % how.lateness as u64) as i64
}

fn run(windows: &Series, c: AnomalySettings, how: Reading) -> (Vec<CurrentDoc>, Vec<AnomalyDoc>) {
    // Spread over each window's first 9 s, in the order they arrive: each
    // up to the allowed lateness (less 1 ms) after its time, so that a
    // window's first firing may miss some, which come as updates.
    let mut events = Vec::new();
    for ((h, i), vals) in windows {
        for (j, v) in vals.iter().enumerate() {
            let ts = BASE + i * W + j as i64 * 3_000;
            let arrives = ts + delay(&how, events.len() as u64);
            events.push((arrives, ts, h.clone(), *v));
        }
    }
    events.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
    // In turn over the partitions: none behind its partition's watermark
    // by more than the allowed lateness.
    let mut parts = vec![Vec::new(); how.partitions];
    for (i, (_, ts, h, v)) in events.iter().enumerate() {
        let t = flowline_connector_api::time::format_rfc3339_ms(*ts);
        parts[i % how.partitions].push(Record::new(
            serde_json::json!({"host": h, "metric": "m", "value": v, "timestamp": t}).to_string(),
        ));
    }
    let env = StreamEnvironment::new(
        JobConfig::named("reference")
            .out_of_orderness(Duration::ZERO)
            .workers(how.workers),
    );
    let (cur, an) = (MemorySink::new(), MemorySink::new());
    let windows_out = env.add_sink("windows", Box::new(MemorySink::new()));
    let c_out = env.add_sink("current", Box::new(cur.clone()));
    let a_out = env.add_sink("anomalies", Box::new(an.clone()));
    metrics_pipeline(
        env.source(
            "events",
            Box::new(MemorySource::new(parts).with_batch_size(how.batch)),
        ),
        WindowSettings {
            allowed_lateness: Duration::from_millis(how.lateness as u64),
            ..WindowSettings::new(Tumbling::of(Duration::from_millis(W as u64)))
        },
        c,
        Outputs {
            windows: windows_out,
            anomalies: Some(a_out),
            current: Some(c_out),
            results: None,
        },
    );
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(env.execute())
        .unwrap();
    (
        cur.payloads()
            .iter()
            .map(|p| serde_json::from_str(p).unwrap())
            .collect(),
        an.payloads()
            .iter()
            .map(|p| serde_json::from_str(p).unwrap())
            .collect(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_jobs_verdicts_are_the_reference_detectors(
        windows in series(),
        c in settings(),
        how in readings(),
    ) {
        let (want_current, want_anomalies) = reference(&windows, &c);
        let (current, anomalies) = run(&windows, c, how);
        let ms = |s: &str| parse_rfc3339_ms(s).unwrap();
        let mut last = BTreeMap::new();
        for d in current {
            last.insert(d.host.to_string(), d);
        }
        prop_assert_eq!(last.len(), want_current.len());
        for (h, w) in &want_current {
            let d = &last[h];
            let got = (ms(&d.window_start), d.status.as_str(), d.anomalous_windows);
            prop_assert_eq!(got, (w.start, w.status, w.streak), "{}: {:?} / {:?}", h, d, w);
            prop_assert!(
                close(d.baseline_mean, w.mean) && close(d.baseline_std, w.std) && close(d.z_score, w.z),
                "{}: {:?} / {:?}", h, d, w
            );
        }
        let got: Anomalies = anomalies
            .iter()
            .map(|a| ((a.host.to_string(), ms(&a.episode_start)), (ms(&a.window_start), a.z_score)))
            .collect();
        prop_assert_eq!(got.len(), anomalies.len(), "an episode reported twice");
        prop_assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want_anomalies.keys().collect::<Vec<_>>()
        );
        for (k, (start, z)) in &want_anomalies {
            prop_assert!(got[k].0 == *start && close(got[k].1, *z), "{:?}: {:?} / {:?}", k, got[k], (start, z));
        }
    }
}
