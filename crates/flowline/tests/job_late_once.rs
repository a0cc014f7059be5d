//! A late event of several values (`[event] values`) is in the late output
//! once, not once per value: its series go to different key groups (and,
//! with two workers, different workers), and each found it late. Before,
//! an event of three values was written there three times, with one id,
//! and a consumer reading the late output back counted it three times.

use std::collections::BTreeMap;

mod common;
use common::{rfc3339_at, BASE_MS};

const METRICS: [&str; 3] = ["cpu", "mem", "disk"];

/// 8 hosts every second for a minute; every 7th second each host also
/// sends an event 20 s old, which the window of 10 s has fired past.
fn lines() -> (Vec<String>, Vec<String>) {
    let (mut all, mut late) = (Vec::new(), Vec::new());
    for s in 0..60i64 {
        for h in 0..8 {
            let ev = |ms: i64, v: i64| {
                serde_json::json!({"@timestamp": rfc3339_at(ms, 60), "host": format!("web-{h}"),
                    "cpu": v, "mem": v * 2, "disk": v * 3})
                .to_string()
            };
            all.push(ev(BASE_MS + s * 1_000 + h, s * 10 + h));
            if s % 7 == 6 && s >= 20 {
                let old = ev(BASE_MS + (s - 20) * 1_000 + 500 + h, -1);
                all.push(old.clone());
                late.push(old);
            }
        }
    }
    (all, late)
}

#[test]
fn a_late_event_of_three_values_is_in_the_late_output_once() {
    let (all, late) = lines();
    for workers in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::write(dir.path().join("events.ndjson"), all.join("\n") + "\n").unwrap();
        let job = format!(
            "[job]\nname = \"late-once\"\nworkers = {workers}\n\
             [source]\ntype = \"file\"\npath = \"{d}/events.ndjson\"\nbatch_size = 5\n\
             [sink]\ntype = \"file\"\npath = \"{d}/windows.ndjson\"\n\
             [late]\ntype = \"file\"\npath = \"{d}/late.ndjson\"\n\
             [window]\nsize = \"10s\"\nout_of_orderness = \"1s\"\n\
             [event]\ntimestamp = \"@timestamp\"\nvalues = [\"cpu\", \"mem\", \"disk\"]\nkey = [\"host\"]\n"
        );
        common::run_job_file(dir.path(), &job);
        let text = std::fs::read_to_string(dir.path().join("late.ndjson")).unwrap();
        let mut got: BTreeMap<String, usize> = BTreeMap::new();
        for l in text.lines() {
            let d: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(d["kind"], "late", "{l}");
            *got.entry(d["payload"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        let want: BTreeMap<String, usize> = late.iter().map(|l| (l.clone(), 1)).collect();
        assert_eq!(got, want, "{workers} workers: each late event once");
        // The windows count every value of the events on time, once.
        let mut windows = 0;
        for l in std::fs::read_to_string(dir.path().join("windows.ndjson"))
            .unwrap()
            .lines()
        {
            let d: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(METRICS.contains(&d["metric"].as_str().unwrap()), "{l}");
            assert_eq!(d["count"], 10, "{l}");
            assert!(
                d["min"].as_f64().unwrap() >= 0.0,
                "a late value counted: {l}"
            );
            windows += 1;
        }
        assert_eq!(windows, 8 * 3 * 6, "{workers} workers");
    }
}
