//! `[window] allowed_lateness` with the detector: a window is judged once
//! it is final (its end plus the allowed lateness), with every event within
//! the lateness in it, so its verdict is the same however the input was cut
//! into batches. Before, the detector judged a window's first firing,
//! which held the late events read before it and not the others.

use std::path::Path;

mod common;

/// Window `k` (10 s) of host `a`: 1 at its second 1, then, once the next
/// window's first event has fired it, its late event (within the 20 s of
/// lateness) at its second 5.
fn late_value(k: u32) -> f64 {
    if k.is_multiple_of(2) {
        100.0
    } else {
        3.0
    }
}

/// The current-status documents (window start, avg, count, status), and
/// the last version of each window document (start, avg, count), of a run
/// reading `batch` records per batch.
type Run = (Vec<(String, f64, u64, String)>, Vec<(String, f64, u64)>);

fn run(dir: &Path, batch: usize) -> Run {
    let ts = |s: u32| format!("2026-01-01T00:{:02}:{:02}Z", s / 60, s % 60);
    let event = |s: u32, v: f64| {
        serde_json::json!({"host": "a", "metric": "m", "value": v, "timestamp": ts(s)}).to_string()
            + "\n"
    };
    let mut lines = event(1, 1.0);
    for k in 0..8 {
        lines += &event(10 * (k + 1) + 1, 1.0);
        lines += &event(10 * k + 5, late_value(k));
    }
    std::fs::write(dir.join("events.ndjson"), lines).unwrap();
    let window = "size = \"10s\"\nout_of_orderness = \"0s\"\nallowed_lateness = \"20s\"\n";
    let current = common::run_detector(dir, batch, window, "warmup = 2\nthreshold = 1.0\n");
    let start = |d: &serde_json::Value| d["window_start"].as_str().unwrap()[14..19].to_string();
    let current = current
        .iter()
        .map(|d| {
            let status = d["status"].as_str().unwrap().to_string();
            (
                start(d),
                d["avg"].as_f64().unwrap(),
                d["count"].as_u64().unwrap(),
                status,
            )
        })
        .collect();
    let mut windows = std::collections::BTreeMap::new();
    for d in common::read_ndjson(&dir.join("windows.ndjson")) {
        windows.insert(
            start(&d),
            (d["avg"].as_f64().unwrap(), d["count"].as_u64().unwrap()),
        );
    }
    let windows = windows.into_iter().map(|(s, (a, c))| (s, a, c)).collect();
    (current, windows)
}

#[test]
fn with_allowed_lateness_a_window_is_judged_whole_whatever_the_batches() {
    let dir = tempfile::tempdir().unwrap();
    // The group-by: each window holds 1 and its late value.
    let whole: Vec<(String, f64, u64)> = (0..8)
        .map(|k| {
            let s = 10 * k;
            let at = format!("{:02}:{:02}", s / 60, s % 60);
            (at, (1.0 + late_value(k)) / 2.0, 2)
        })
        .chain([("01:20".to_string(), 1.0, 1)])
        .collect();
    let (first, _) = run(dir.path(), 1);
    for batch in [1, 2, 5, 1000] {
        let (current, windows) = run(dir.path(), batch);
        assert_eq!(windows, whole, "batch_size {batch}: the window documents");
        let judged: Vec<_> = current
            .iter()
            .map(|(s, a, c, _)| (s.clone(), *a, *c))
            .collect();
        assert_eq!(
            judged, whole,
            "batch_size {batch}: what the detector judged"
        );
        assert_eq!(current, first, "batch_size {batch}: the verdicts");
    }
    let statuses: Vec<&str> = first.iter().map(|c| c.3.as_str()).collect();
    assert_eq!(statuses[..2], ["warming_up", "warming_up"], "{first:?}");
    assert!(
        statuses[2..].contains(&"suspect") || statuses[2..].contains(&"anomalous"),
        "{first:?}"
    );
}
