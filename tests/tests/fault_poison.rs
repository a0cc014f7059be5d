//! The world's data, not the generator's: a catalogue of valid events in
//! unusual shapes (UTC offsets, lower-case `t`/`z`, fractions of any length,
//! 1970, huge and tiny values, integers, a 600-character host, key values
//! holding the ids' `|`, duplicates, null keys) and of poison records (not
//! JSON, wrong types, missing fields, NaN, 1e999, a 2 MB record, non-UTF-8,
//! an empty payload, no UTC offset, year 9999, a sum that would overflow)
//! through real Kafka, the job and the real search server.
//!
//! The expected windows come from a plain group-by over the instants and
//! values the test itself encoded (never from the job's parser); every
//! poison record must be on the dead-letter topic exactly once, with a
//! reason naming the problem.

use std::collections::BTreeMap;
use std::time::Duration;

use flowline_integration_tests::job::{all_docs, job_log, spawn_job, wait_exit, RefWindow};
use flowline_integration_tests::{
    create_topic, create_topic_with, earliest_consumer, unique, TestServices,
};
use flowline_metric_generator::{format_rfc3339_ms, Rng};
use rdkafka::message::Headers;
use rdkafka::Message;

const WINDOW_MS: i64 = 10_000;
/// 2026-01-01T00:00:00Z.
const BASE: i64 = 1_767_225_600_000;

/// One input record: its key and payload, and what the job must make of it.
struct Input {
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    expect: Expect,
}

enum Expect {
    /// A valid event: host, metric, instant (ms) and value.
    Event(String, String, i64, f64),
    /// A dead letter whose reason contains this.
    Dead(&'static str),
}

/// `ms` written with a UTC offset of `minutes` (the same instant).
fn with_offset(ms: i64, minutes: i64) -> String {
    let local = format_rfc3339_ms(ms + minutes * 60_000);
    let sign = if minutes < 0 { '-' } else { '+' };
    let m = minutes.abs();
    format!(
        "{}{sign}{:02}:{:02}",
        local.trim_end_matches('Z'),
        m / 60,
        m % 60
    )
}

fn event(host: &str, metric: &str, ts: &str, value: &str) -> Vec<u8> {
    format!(r#"{{"host":"{host}","metric":"{metric}","value":{value},"timestamp":"{ts}"}}"#)
        .into_bytes()
}

fn catalogue() -> Vec<Input> {
    let mut rng = Rng::new(0xF00D);
    let mut v = Vec::new();
    let long_host = format!("host-{}", "x".repeat(595));
    // The first record of the partition: the watermark is still at the
    // start, so an event of 1970 is on time.
    v.push(Input {
        key: None,
        payload: Some(event("h1970", "cpu", "1970-01-01T00:00:00.001Z", "1.5")),
        expect: Expect::Event("h1970".into(), "cpu".into(), 1, 1.5),
    });
    for i in 0..3_000i64 {
        let ts = BASE + i * 37;
        let host = match i % 7 {
            6 => long_host.clone(),
            k => format!("h{k}"),
        };
        let metric = ["cpu", "mem", "disk"][(i % 3) as usize];
        let (text, value) = match i % 11 {
            0 => ("1e300".to_string(), 1e300),
            1 => ("1e-300".to_string(), 1e-300),
            2 => ("5e-324".to_string(), 5e-324),
            3 => ("42".to_string(), 42.0),
            4 => ("-0.0004".to_string(), -0.0004),
            5 => {
                // 17 digits, the double's own: read exactly.
                let text = "123456789.12345679";
                (
                    text.to_string(),
                    text.parse::<f64>().expect("a float literal"),
                )
            }
            _ => {
                let x = (rng.f64() - 0.3) * 1000.0;
                (format!("{x:?}"), x)
            }
        };
        let stamp = match i % 6 {
            0 => format_rfc3339_ms(ts),
            1 => with_offset(ts, 330),
            2 => with_offset(ts, -480),
            3 => format_rfc3339_ms(ts).replace('T', "t").replace('Z', "z"),
            // A fraction of nine digits, the same millisecond.
            4 => format_rfc3339_ms(ts).replace('Z', "999999Z"),
            _ => with_offset(ts, 0).replace(".", ",").replace(',', "."),
        };
        // Key values holding the ids' separator: two keys that a plain
        // `host|metric|start` id would give one document.
        if i % 500 == 1 {
            for (h, m) in [("a|b", "c"), ("a", "b|c")] {
                v.push(Input {
                    key: None,
                    payload: Some(event(h, m, &stamp, &text)),
                    expect: Expect::Event(h.into(), m.into(), ts, value),
                });
            }
        }
        let expect = Expect::Event(host.clone(), metric.into(), ts, value);
        let payload = event(&host, metric, &stamp, &text);
        // Some duplicates (each counts: the input has it twice) and null keys.
        if i % 97 == 0 {
            v.push(Input {
                key: None,
                payload: Some(payload.clone()),
                expect: Expect::Event(host.clone(), metric.into(), ts, value),
            });
        }
        v.push(Input {
            key: (i % 5 != 0).then(|| host.clone().into_bytes()),
            payload: Some(payload),
            expect,
        });
        // The poison, spread through the stream.
        let t = format_rfc3339_ms(ts);
        let poison: Option<(Option<Vec<u8>>, &'static str)> = match i {
            100 => Some((Some(b"not json at all".to_vec()), "invalid metric event")),
            200 => Some((
                Some(event("h0", "cpu", &t, "\"high\"")),
                "is not a finite number",
            )),
            300 => Some((
                Some(
                    format!(r#"{{"host":42,"metric":"cpu","value":1,"timestamp":"{t}"}}"#)
                        .into_bytes(),
                ),
                "`host` = 42 is not a string",
            )),
            400 => Some((
                Some(br#"{"host":"h0","metric":"cpu","value":1}"#.to_vec()),
                "missing field `timestamp`",
            )),
            500 => Some((Some(event("h0", "cpu", &t, "NaN")), "invalid metric event")),
            600 => Some((
                Some(event("h0", "cpu", &t, "1e999")),
                "invalid metric event",
            )),
            700 => Some((Some(vec![b'{', 0xff, 0xfe, b'}']), "invalid metric event")),
            800 => Some((Some(Vec::new()), "invalid metric event")),
            900 => Some((None, "invalid metric event")),
            1000 => Some((
                Some(event("h0", "cpu", "2026-01-01T00:00:37", "1")),
                "offset",
            )),
            1100 => Some((
                Some(event("h0", "cpu", "9999-01-01T00:00:00Z", "1")),
                "max_future",
            )),
            1150 => Some((
                Some(event("h0", "cpu", "9999-12-31T23:59:59Z", "1")),
                "within the years",
            )),
            1200 => {
                let mut big = event("h0", "cpu", &t, "1");
                big.extend(std::iter::repeat_n(b' ', 2 << 20));
                big.extend_from_slice(b"x");
                Some((Some(big), "invalid metric event"))
            }
            // Numbers a double would change: a counter past 2^53, a value
            // that would read as 0, a decimal with more digits than a double.
            1300 => Some((
                Some(event("h0", "cpu", &t, "9007199254740993")),
                "would be read as 9007199254740992.0",
            )),
            1400 => Some((Some(event("h0", "cpu", &t, "1e-400")), "would be read as 0")),
            1500 => Some((
                Some(event("h0", "cpu", &t, "123456789.123456789")),
                "would be read as 123456789.12345679",
            )),
            _ => None,
        };
        if let Some((payload, reason)) = poison {
            v.push(Input {
                key: Some(b"poison".to_vec()),
                payload,
                expect: Expect::Dead(reason),
            });
        }
    }
    // A sum that would overflow: 1.5e308 twice in one key and window; the
    // second is refused, the first counts.
    let ts = BASE + 2_999 * 37;
    for (i, dead) in [(0, false), (1, true)] {
        let _ = i;
        v.push(Input {
            key: None,
            payload: Some(event("hbig", "cpu", &format_rfc3339_ms(ts), "1.5e308")),
            expect: if dead {
                Expect::Dead("overflow")
            } else {
                Expect::Event("hbig".into(), "cpu".into(), ts, 1.5e308)
            },
        });
    }
    v
}

/// Host, metric and window start: what a window document is of.
type WindowKey = (String, String, String);

/// The plain group-by: per host, metric and 10 s window.
fn reference(inputs: &[Input]) -> BTreeMap<WindowKey, RefWindow> {
    let mut acc: BTreeMap<WindowKey, (u64, f64, f64, f64)> = BTreeMap::new();
    for e in inputs {
        let Expect::Event(host, metric, ts, value) = &e.expect else {
            continue;
        };
        let start = ts - ts.rem_euclid(WINDOW_MS);
        let a = acc
            .entry((host.clone(), metric.clone(), format_rfc3339_ms(start)))
            .or_insert((0, 0.0, f64::INFINITY, f64::NEG_INFINITY));
        a.0 += 1;
        a.1 += value;
        a.2 = a.2.min(*value);
        a.3 = a.3.max(*value);
    }
    acc.into_iter()
        .map(|(k, (count, sum, min, max))| {
            (
                k,
                RefWindow {
                    count,
                    sum,
                    min,
                    max,
                },
            )
        })
        .collect()
}

/// Each window's values, sorted: the nearest-rank percentiles.
fn samples(inputs: &[Input]) -> BTreeMap<WindowKey, Vec<f64>> {
    let mut acc: BTreeMap<WindowKey, Vec<f64>> = BTreeMap::new();
    for e in inputs {
        if let Expect::Event(host, metric, ts, value) = &e.expect {
            let start = ts - ts.rem_euclid(WINDOW_MS);
            acc.entry((host.clone(), metric.clone(), format_rfc3339_ms(start)))
                .or_default()
                .push(*value);
        }
    }
    for v in acc.values_mut() {
        v.sort_by(f64::total_cmp);
    }
    acc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poison_catalogue_is_dead_lettered_once_and_every_window_is_exact() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let topic = unique("fault-poison");
    let dlq = format!("{topic}-dlq");
    create_topic_with(
        &s.kafka_bootstrap,
        &topic,
        1,
        &[("max.message.bytes", "4194304")],
    )
    .await;
    create_topic(&s.kafka_bootstrap, &dlq, 1).await;
    let inputs = catalogue();
    {
        use rdkafka::producer::{FutureProducer, FutureRecord};
        let p: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &s.kafka_bootstrap)
            .set("enable.idempotence", "true")
            .set("message.max.bytes", "4194304")
            .create()
            .unwrap();
        let mut pending = Vec::new();
        for i in &inputs {
            let mut r: FutureRecord<'_, Vec<u8>, Vec<u8>> = FutureRecord::to(&topic);
            if let Some(k) = &i.key {
                r = r.key(k);
            }
            if let Some(b) = &i.payload {
                r = r.payload(b);
            }
            pending.push(p.send_result(r).map_err(|(e, _)| e).unwrap());
        }
        for f in pending {
            f.await.unwrap().map_err(|(e, _)| e).unwrap();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("job.toml");
    std::fs::write(
        &config,
        format!(
            r#"[job]
name = "{topic}"
[source]
type = "kafka"
bootstrap_servers = "{k}"
topics = ["{topic}"]
group_id = "{topic}"
bounded = true
[sink]
type = "elasticsearch"
url = "{e}"
index = "{topic}-windows"
replicas = 0
[dead_letter]
type = "kafka"
bootstrap_servers = "{k}"
topic = "{dlq}"
[window]
size = "10s"
out_of_orderness = "2s"
"#,
            k = s.kafka_bootstrap,
            e = s.elasticsearch_url
        ),
    )
    .unwrap();
    let mut child = spawn_job(&config, 0);
    let st = wait_exit(&mut child, &config, 0, Duration::from_secs(180)).await;
    assert!(st.success(), "job: {st}\n{}", job_log(&config, 0));

    // Windows, keyed by their fields (a long host's id is hashed).
    let docs = all_docs(&es, &format!("{topic}-windows")).await;
    let field = |d: &serde_json::Value, f: &str| d[f].as_str().unwrap().to_string();
    let by_fields: BTreeMap<WindowKey, &serde_json::Value> = docs
        .values()
        .map(|d| {
            let k = (
                field(d, "host"),
                field(d, "metric"),
                field(d, "window_start"),
            );
            (k, d)
        })
        .collect();
    assert_eq!(by_fields.len(), docs.len(), "two documents of one window");
    let want = reference(&inputs);
    let values = samples(&inputs);
    // Keys shown cut short (a host of 600 characters).
    let short = |k: &WindowKey| format!("{k:?}").chars().take(100).collect::<String>();
    let mut diff = Vec::new();
    for (k, r) in &want {
        match by_fields.get(k) {
            None => diff.push(format!("missing {}", short(k))),
            Some(d) => {
                let got = RefWindow {
                    count: d["count"].as_u64().unwrap_or(0),
                    sum: d["sum"].as_f64().unwrap_or(f64::NAN),
                    min: d["min"].as_f64().unwrap_or(f64::NAN),
                    max: d["max"].as_f64().unwrap_or(f64::NAN),
                };
                if got != *r {
                    diff.push(format!("{}: got {got:?}, want {r:?}", short(k)));
                }
                for f in ["sum", "avg", "p50", "p95", "p99"] {
                    if !d[f].is_number() {
                        diff.push(format!("{}: {f} is {}", short(k), d[f]));
                    }
                }
                // Within the documented 2 % of the value of that rank,
                // however far apart the window's values are (1e300 beside
                // 42, subnormals).
                let sorted = &values[k];
                for q in [50u64, 95, 99] {
                    let rank = (q * sorted.len() as u64).div_ceil(100).max(1) as usize - 1;
                    let (exact, got) = (sorted[rank], d[format!("p{q}")].as_f64());
                    if got.is_none_or(|g| (g - exact).abs() > 0.02 * exact.abs()) {
                        diff.push(format!("{}: p{q} {got:?}, exact {exact:e}", short(k)));
                    }
                }
            }
        }
    }
    for k in by_fields.keys() {
        if !want.contains_key(k) {
            diff.push(format!("unexpected {}", short(k)));
        }
    }
    assert!(
        diff.is_empty(),
        "{} of {} windows differ: {:?}\n{}",
        diff.len(),
        want.len(),
        &diff[..diff.len().min(5)],
        job_log(&config, 0)
    );

    // Dead letters: each poison record once, with its reason.
    let poison: Vec<(&[u8], &str)> = inputs
        .iter()
        .filter_map(|i| match i.expect {
            Expect::Dead(r) => Some((i.payload.as_deref().unwrap_or_default(), r)),
            _ => None,
        })
        .collect();
    let c = earliest_consumer(&s.kafka_bootstrap, &dlq);
    let mut letters: Vec<(Vec<u8>, BTreeMap<String, String>)> = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), c.recv()).await {
            Ok(m) => {
                let m = m.unwrap();
                let h = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                letters.push((m.payload().unwrap_or_default().to_vec(), h));
            }
            Err(_) if letters.len() >= poison.len() => break,
            Err(_) => panic!(
                "{} of {} dead letters, none more for 5 s",
                letters.len(),
                poison.len()
            ),
        }
    }
    assert_eq!(letters.len(), poison.len(), "each poison record once");
    // (An empty and a null payload both arrive empty: two letters.)
    let copies = |x: &[u8]| poison.iter().filter(|(p, _)| *p == x).count();
    for (payload, reason) in &poison {
        let found: Vec<_> = letters
            .iter()
            .filter(|(p, h)| {
                if payload.len() > 1 << 20 {
                    h.get("flowline.payload.truncated") == Some(&payload.len().to_string())
                        && payload.starts_with(p)
                } else {
                    p.as_slice() == *payload
                }
            })
            .collect();
        assert_eq!(
            found.len(),
            copies(payload),
            "{:?}",
            String::from_utf8_lossy(&payload[..payload.len().min(80)])
        );
        let got = &found[0].1["flowline.error.reason"];
        assert!(
            got.contains(reason),
            "reason for {:?}: {got}",
            String::from_utf8_lossy(&payload[..payload.len().min(80)])
        );
    }
}
