//! `[job] max_state_entries` in `flowline run`: a cardinality explosion (a
//! host name new with every event, as a pod name in a crash loop writes)
//! meets the bound; the records past it go to the dead-letter output once,
//! with the reason, and the windows equal a group-by of every other record.
//! The job finishes instead of growing its memory until it is killed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

mod common;
use common::{group_by, read_dead, read_windows, rfc3339_at, Windows, BASE_MS};

/// 10 hosts every second for a minute, and a host never seen before every
/// 500 ms: 30 keys in each 10 s window.
fn samples() -> Vec<(String, i64, f64)> {
    let mut v = Vec::new();
    for s in 0..60i64 {
        for h in 0..10 {
            v.push((
                format!("web-{h}"),
                BASE_MS + s * 1_000 + h,
                (s * 10 + h) as f64 / 4.0,
            ));
        }
        for half in 0..2 {
            let n = s * 2 + half;
            v.push((format!("pod-{n}"), BASE_MS + n * 500 + 11, n as f64));
        }
    }
    v
}

fn line((host, ms, value): &(String, i64, f64)) -> String {
    serde_json::json!({"host": host, "metric": "cpu", "value": value, "timestamp": rfc3339_at(*ms, 0)})
        .to_string()
}

/// Runs the job with this `[job]` section and `extra` sections (`@DIR@`
/// for the directory): the windows, the dead letters and the log.
fn run(dir: &Path, job: &str, extra: &str) -> (Windows, Vec<serde_json::Value>, String) {
    let lines: Vec<String> = samples().iter().map(line).collect();
    std::fs::write(dir.join("events.ndjson"), lines.join("\n") + "\n").unwrap();
    let d = dir.display();
    let file = format!(
        "[job]\nname = \"bound\"\n{job}\n[source]\ntype = \"file\"\npath = \"{d}/events.ndjson\"\nbatch_size = 7\n\
         [sink]\ntype = \"file\"\npath = \"{d}/windows.ndjson\"\nmode = \"overwrite\"\n\
         [dead_letter]\ntype = \"file\"\npath = \"{d}/dead.ndjson\"\nmode = \"overwrite\"\n\
         [window]\nsize = \"10s\"\nout_of_orderness = \"1s\"\n{}",
        extra.replace("@DIR@", &d.to_string())
    );
    let log = common::run_job_file(dir, &file);
    (read_windows(dir), read_dead(dir), log)
}

#[test]
fn records_past_the_bound_are_dead_letters_and_the_rest_equal_a_group_by() {
    let dir = tempfile::tempdir().unwrap();
    // One worker: the keys of a window are then bounded too (with two, one
    // may give back the entries of a window it fired while the other still
    // takes records of it; the bound is on the entries held at once).
    let (windows, dead, log) = run(dir.path(), "max_state_entries = 20\nworkers = 1", "");
    let all = samples();
    let mut refused = BTreeSet::new();
    for d in &dead {
        let reason = d["reason"].as_str().unwrap();
        assert!(
            reason.contains("the job's keyed state is full")
                && reason.contains("max_state_entries = 20")
                && reason.contains("Fix:"),
            "{reason}"
        );
        let payload = d["payload"].as_str().unwrap().to_string();
        assert!(
            refused.insert(payload.clone()),
            "dead-lettered twice: {payload}"
        );
    }
    assert!(!refused.is_empty(), "the bound never bit");
    let kept: Vec<_> = all
        .iter()
        .filter(|s| !refused.contains(&line(s)))
        .cloned()
        .collect();
    assert_eq!(
        kept.len() + refused.len(),
        all.len(),
        "a dead letter of no input"
    );
    assert_eq!(windows, group_by(&kept));
    let mut per_window: BTreeMap<i64, usize> = BTreeMap::new();
    for (_, start) in windows.keys() {
        *per_window.entry(*start).or_default() += 1;
    }
    assert_eq!(per_window.len(), 6, "{per_window:?}");
    assert!(per_window.values().all(|&n| n <= 20), "{per_window:?}");
    assert!(log.contains("keyed state is full"), "{log}");

    // Two workers: exact all the same.
    let (windows, dead, _) = run(dir.path(), "max_state_entries = 20\nworkers = 2", "");
    assert!(!dead.is_empty());
    let refused: BTreeSet<String> = dead
        .iter()
        .map(|d| d["payload"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(refused.len(), dead.len(), "a record dead-lettered twice");
    let kept: Vec<_> = all
        .iter()
        .filter(|s| !refused.contains(&line(s)))
        .cloned()
        .collect();
    assert_eq!(windows, group_by(&kept));

    // The default bound is far above this job: nothing refused.
    let (windows, dead, _) = run(dir.path(), "", "");
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!(windows, group_by(&all));
}

/// With the anomaly detector: at most the bound of series get its state
/// (the steady hosts, and the first new ones); a window of a series
/// without state is written all the same, with no current-status document.
#[test]
fn the_detector_keeps_the_bound_of_series_and_every_window_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let current =
        "[current]\ntype = \"file\"\npath = \"@DIR@/current.ndjson\"\nmode = \"overwrite\"\n";
    let (windows, dead, log) = run(dir.path(), "max_state_entries = 20\nworkers = 1", current);
    let refused: BTreeSet<String> = dead
        .iter()
        .map(|d| d["payload"].as_str().unwrap().to_string())
        .collect();
    let kept: Vec<_> = samples()
        .into_iter()
        .filter(|s| !refused.contains(&line(s)))
        .collect();
    assert_eq!(windows, group_by(&kept));
    let mut docs: BTreeMap<String, usize> = BTreeMap::new();
    for l in std::fs::read_to_string(dir.path().join("current.ndjson"))
        .unwrap()
        .lines()
    {
        let d: serde_json::Value = serde_json::from_str(l).unwrap();
        let start: jiff::Timestamp = d["window_start"].as_str().unwrap().parse().unwrap();
        // The end of the input fires every timer: the detector forgets
        // its series key group by key group while the last window fires,
        // so new series of that window may take their room.
        if start.as_millisecond() < BASE_MS + 50_000 {
            let host = d["host"].as_str().unwrap().to_string();
            *docs.entry(host).or_default() += 1;
        }
    }
    assert_eq!(docs.len(), 20, "{docs:?}");
    for h in 0..10 {
        assert_eq!(docs.get(&format!("web-{h}")), Some(&5), "{docs:?}");
    }
    // Series with windows but no state: new pods after the first window.
    let series: BTreeSet<&String> = windows.keys().map(|(h, _)| h).collect();
    assert!(series.len() > 20, "{series:?}");
    assert!(log.contains("keyed process state is full"), "{log}");
}

/// A key name longer than `[event] max_name_bytes` is a dead letter (each
/// open window keeps its key, so the entries bound alone would not bound
/// memory); raised, the same event is counted. On the fast path and with
/// an `[event]` shape.
#[test]
fn a_name_longer_than_max_name_bytes_is_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let long = "h".repeat(2_000);
    let all = vec![
        ("web-1".to_string(), BASE_MS + 1_000, 1.0),
        (long, BASE_MS + 2_000, 2.0),
        ("web-1".to_string(), BASE_MS + 3_000, 4.0),
    ];
    let lines: Vec<String> = all.iter().map(line).collect();
    let short = [all[0].clone(), all[2].clone()];
    for shape in ["", "[event]\nvalues = [\"value\"]\nkey = [\"host\"]\n"] {
        let (windows, dead) = common::run(dir.path(), shape, &lines);
        assert_eq!(windows, group_by(&short), "{shape}");
        assert_eq!(dead.len(), 1, "{shape}");
        let reason = dead[0]["reason"].as_str().unwrap();
        assert!(
            reason.contains(
                "group (host) name is 2000 bytes long, past [event] max_name_bytes = 1024"
            ) && reason.contains("Fix:"),
            "{reason}"
        );
        let raised = if shape.is_empty() {
            "[event]\nmax_name_bytes = 4096\n".to_string()
        } else {
            format!("{shape}max_name_bytes = 4096\n")
        };
        let (windows, dead) = common::run(dir.path(), &raised, &lines);
        assert!(dead.is_empty(), "{dead:?}");
        assert_eq!(windows, group_by(&all), "{raised}");
    }
}
