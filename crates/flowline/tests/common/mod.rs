//! Shared by the job tests on files: seeded samples, a group-by, and a
//! runner of the `flowline` binary on a job with a given `[event]` section.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// (host, window start ms) → count, sum, min, max.
pub type Windows = BTreeMap<(String, i64), (u64, f64, f64, f64)>;

pub const BASE_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// `(host, ms, value)` of the good events: 3 hosts, 90 s, out of order by
/// up to 1.5 s, values with fractions.
pub fn samples() -> Vec<(String, i64, f64)> {
    let mut v = Vec::new();
    for i in 0..270i64 {
        let host = format!("web-{}", i % 3);
        let ms = BASE_MS + i * 333 - (i * 7919 % 1_500);
        let value = ((i * 37) % 1000) as f64 / 8.0 - 20.0;
        v.push((host, ms, value));
    }
    v
}

/// An RFC 3339 time of `ms` written in the offset `minutes` east of UTC,
/// computed here with jiff's civil arithmetic, not the job's parser.
pub fn rfc3339_at(ms: i64, minutes: i32) -> String {
    let off = jiff::tz::Offset::from_seconds(minutes * 60).unwrap();
    let t = jiff::Timestamp::from_millisecond(ms).unwrap();
    let c = off.to_datetime(t);
    let sign = if minutes < 0 { '-' } else { '+' };
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}{sign}{:02}:{:02}",
        c.date(),
        c.hour(),
        c.minute(),
        c.second(),
        c.subsec_nanosecond() / 1_000_000,
        minutes.abs() / 60,
        minutes.abs() % 60
    )
}

pub fn group_by(samples: &[(String, i64, f64)]) -> Windows {
    let mut m = BTreeMap::new();
    for (h, ms, v) in samples {
        let e = m.entry((h.clone(), ms - ms.rem_euclid(10_000))).or_insert((
            0u64,
            0.0f64,
            f64::MAX,
            f64::MIN,
        ));
        e.0 += 1;
        e.1 += v;
        e.2 = e.2.min(*v);
        e.3 = e.3.max(*v);
    }
    m
}

/// Runs the job on `lines` with this `[event]` section; the window
/// documents by (host, window start) and the dead letters.
pub fn run(dir: &Path, event: &str, lines: &[String]) -> (Windows, Vec<serde_json::Value>) {
    std::fs::write(dir.join("events.ndjson"), lines.join("\n") + "\n").unwrap();
    let d = dir.display();
    let job = format!(
        "[job]\nname = \"shapes\"\n[source]\ntype = \"file\"\npath = \"{d}/events.ndjson\"\n\
         [sink]\ntype = \"file\"\npath = \"{d}/windows.ndjson\"\nmode = \"overwrite\"\n\
         [dead_letter]\ntype = \"file\"\npath = \"{d}/dead.ndjson\"\nmode = \"overwrite\"\n\
         [window]\nsize = \"10s\"\nout_of_orderness = \"2s\"\n{event}"
    );
    run_job_file(dir, &job);
    (read_windows(dir), read_dead(dir))
}

/// The window documents of `dir/windows.ndjson` with a `host` and a `sum`
/// by (host, window start), each once.
pub fn read_windows(dir: &Path) -> Windows {
    let mut windows = BTreeMap::new();
    for l in std::fs::read_to_string(dir.join("windows.ndjson"))
        .unwrap()
        .lines()
    {
        let d: serde_json::Value = serde_json::from_str(l).unwrap();
        if d.get("host").is_none() || d.get("sum").is_none() {
            // Other key names (read by `windows_by`), other aggregates.
            continue;
        }
        let start: jiff::Timestamp = d["window_start"].as_str().unwrap().parse().unwrap();
        let key = (
            d["host"].as_str().unwrap().to_string(),
            start.as_millisecond(),
        );
        let v = (
            d["count"].as_u64().unwrap(),
            d["sum"].as_f64().unwrap(),
            d["min"].as_f64().unwrap(),
            d["max"].as_f64().unwrap(),
        );
        assert!(
            windows.insert(key, v).is_none(),
            "one document per window: {l}"
        );
    }
    windows
}

/// The dead letters of `dir/dead.ndjson`.
pub fn read_dead(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("dead.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Writes `job` to `dir/job.toml` and runs it with `flowline run`, which
/// must succeed; returns its log (warnings and errors).
pub fn run_job_file(dir: &Path, job: &str) -> String {
    std::fs::write(dir.join("job.toml"), job).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flowline"))
        .env("FLOWLINE_LOG", "warn")
        .args(["run", "--config"])
        .arg(dir.join("job.toml"))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    log
}

/// Runs the job file `run` left in `dir` again, with these aggregates.
pub fn rerun_with_aggregates(dir: &Path, aggregates: &str) -> std::process::Output {
    let job = std::fs::read_to_string(dir.join("job.toml"))
        .unwrap()
        .replace(
            "[window]\n",
            &format!("[window]\naggregates = {aggregates}\n"),
        );
    std::fs::write(dir.join("job.toml"), job).unwrap();
    Command::new(env!("CARGO_BIN_EXE_flowline"))
        .env("FLOWLINE_LOG", "warn")
        .args(["run", "--config"])
        .arg(dir.join("job.toml"))
        .output()
        .unwrap()
}

pub fn assert_same(got: &Windows, want: &Windows) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, w) in want {
        let g = got[k];
        assert_eq!((g.0, g.2, g.3), (w.0, w.2, w.3), "{k:?}");
        assert!(
            (g.1 - w.1).abs() <= 1e-9 * w.1.abs().max(1.0),
            "{k:?}: sum {} vs {}",
            g.1,
            w.1
        );
    }
}

/// Runs the detector over `dir/events.ndjson` (written by the caller),
/// reading `batch` records per batch, with these `[window]` and
/// `[anomaly]` lines; returns the current-status documents in the order
/// written (`dir/current.ndjson`; the windows go to `dir/windows.ndjson`).
pub fn run_detector(
    dir: &Path,
    batch: usize,
    window: &str,
    anomaly: &str,
) -> Vec<serde_json::Value> {
    let d = dir.display();
    let job = format!(
        "[source]\ntype = \"file\"\npath = \"{d}/events.ndjson\"\nbatch_size = {batch}\n\
         [sink]\ntype = \"file\"\npath = \"{d}/windows.ndjson\"\nmode = \"overwrite\"\n\
         [current]\ntype = \"file\"\npath = \"{d}/current.ndjson\"\nmode = \"overwrite\"\n\
         [window]\n{window}[anomaly]\n{anomaly}"
    );
    run_job_file(dir, &job);
    read_ndjson(&dir.join("current.ndjson"))
}

/// Every line of an NDJSON file, parsed.
pub fn read_ndjson(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
