//! `[anomaly] forget_after`: the detector drops the state of a series
//! with no window for that long in event time, so a stream whose keys come
//! and go (hosts retired, pods replaced) does not grow the job's memory and
//! checkpoints for ever. A series that comes back warms up again.

use std::path::Path;
use std::process::Command;

mod common;

/// Host `b` every 5 s for `until` seconds; host `a` too but for the
/// seconds in `silent`. The statuses of `a`'s current documents, in order,
/// from a run forgetting after `forget_after` and reading `batch` records
/// per batch.
fn statuses_of_a(
    dir: &Path,
    forget_after: &str,
    until: u32,
    silent: std::ops::Range<u32>,
    batch: usize,
) -> Vec<(String, String)> {
    let ts = |s: u32| format!("2026-01-01T00:{:02}:{:02}Z", s / 60, s % 60);
    let mut lines = String::new();
    for s in (0..until).step_by(5) {
        let mut event = |host: &str, v: f64| {
            lines +=
                &serde_json::json!({"host": host, "metric": "m", "value": v, "timestamp": ts(s)})
                    .to_string();
            lines.push('\n');
        };
        event("b", 1.0);
        if !silent.contains(&s) {
            event("a", 2.0);
        }
    }
    std::fs::write(dir.join("events.ndjson"), lines).unwrap();
    let anomaly = format!("warmup = 2\nforget_after = \"{forget_after}\"\n");
    common::run_detector(dir, batch, "size = \"10s\"\n", &anomaly)
        .into_iter()
        .filter(|d| d["host"] == "a")
        .map(|d| {
            (
                d["window_start"].as_str().unwrap()[14..19].to_string(),
                d["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_series_silent_for_forget_after_warms_up_again_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let back = |s: &[(String, String)]| s[6..9].to_vec();
    let pair = |t: &str, st: &str| (t.to_string(), st.to_string());
    // Forgotten after 1 to 2 minutes of silence: warming up again.
    let forgot = statuses_of_a(dir.path(), "1m", 600, 60..500, 1);
    assert_eq!(forgot.len(), 16, "{forgot:?}");
    assert_eq!(forgot[5], pair("00:50", "ok"));
    assert_eq!(
        back(&forgot),
        [
            pair("08:20", "warming_up"),
            pair("08:30", "warming_up"),
            pair("08:40", "ok")
        ]
    );
    // Kept for 10 minutes: the same series goes on where it was.
    let kept = statuses_of_a(dir.path(), "10m", 600, 60..500, 1);
    assert_eq!(
        back(&kept),
        [
            pair("08:20", "ok"),
            pair("08:30", "ok"),
            pair("08:40", "ok")
        ]
    );
}

#[test]
fn forget_after_no_longer_than_a_window_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        "[source]\ntype = \"file\"\npath = \"e.ndjson\"\n[sink]\ntype = \"file\"\npath = \"w.ndjson\"\n[window]\nsize = \"10s\"\n[anomaly]\nforget_after = \"10s\"\n",
    )
    .unwrap();
    for cmd in ["validate", "run"] {
        let out = Command::new(env!("CARGO_BIN_EXE_flowline"))
            .args([cmd, "--config"])
            .arg(&job)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cmd}");
        assert!(
            err.contains("`anomaly.forget_after` must be longer than `window.size` (10s)"),
            "{cmd}: {err}"
        );
    }
}

/// Whether a series is forgotten depends on the windows' event times
/// alone, not on how the input was cut into batches. Host `a` is silent
/// from 1:00 to 2:00: with `forget_after = "1m"` its state is due to be
/// forgotten at 2:00 (the end of the minute after its last window's), and
/// its window [2:00, 2:10) ends after that, so the series warms up again.
/// Before, a run whose
/// watermark passed the deadline and the next window's end in one step
/// (one batch of the whole file) gave the window to the old state first,
/// and the timer found the series active, so a replay or a restart could
/// give the same window another status.
#[test]
fn forgetting_does_not_depend_on_the_batches() {
    let dir = tempfile::tempdir().unwrap();
    let pair = |t: &str, st: &str| (t.to_string(), st.to_string());
    let want = [
        pair("02:00", "warming_up"),
        pair("02:10", "warming_up"),
        pair("02:20", "ok"),
    ];
    for batch in [1, 2, 7, 64, 1000] {
        let got = statuses_of_a(dir.path(), "1m", 240, 60..120, batch);
        assert_eq!(got[6..9], want, "batch_size = {batch}: {got:?}");
    }
}
