//! `flowline connectors`, `validate` and `demo`.

use std::process::Command;

/// Runs `flowline ARGS JOB`, asserting it succeeds.
fn run_ok(args: &[&str], job: &std::path::Path) -> std::process::Output {
    let out = flowline().args(args).arg(job).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn flowline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flowline"))
}

#[test]
fn connectors_lists_kinds_versions_and_the_api_range() {
    let out = flowline().arg("connectors").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    let names: Vec<(&str, &str)> = rows.iter().map(|r| (r[0], r[1])).collect();
    assert_eq!(
        names,
        [
            ("file", "source"),
            ("kafka", "source"),
            ("elasticsearch", "sink"),
            ("file", "sink"),
            ("kafka", "sink"),
            ("stdout", "sink")
        ]
    );
    assert!(rows.iter().all(|r| r[3] == "1.3"), "{text}");
    assert!(
        text.contains("implements connector API 1.3; it runs connectors built for 1.0 up to 1.3"),
        "{text}"
    );
}

#[test]
fn validate_accepts_a_good_file_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("e.ndjson"), "").unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(&job, format!("[source]\ntype = \"file\"\npath = \"{0}/e.ndjson\"\n[sink]\ntype = \"file\"\npath = \"{0}/w.ndjson\"\n", dir.path().display())).unwrap();
    let out = run_ok(&["validate", "--config"], &job);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("is valid") && text.contains("checkpoint off"),
        "{text}"
    );
    assert!(!dir.path().join("w.ndjson").exists());
}

#[test]
fn demo_with_events_finishes_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let out = flowline()
        .args(["demo", "--events", "20000", "--hosts", "5", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("done: 20000 events in"), "{stdout}");
    let windows = std::fs::read_to_string(dir.path().join("windows.ndjson")).unwrap();
    // 5 hosts × 5 metrics, 800 ticks of 1 s → 80+ windows per key.
    assert!(
        windows.lines().count() >= 25 * 80,
        "{}",
        windows.lines().count()
    );
}
