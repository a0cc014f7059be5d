//! `validate` accepts exactly the job files that `run` accepts: a job file
//! using every section is mutated (seeded) setting by setting, with the
//! values that break programs (0, -1, the integer limits, 1e308, NaN, huge
//! and negative durations, empty and very long strings, wrong types); each
//! mutant goes through `flowline validate` and `flowline run` (a bounded
//! file job, so a valid one finishes). Both must agree, and neither may
//! panic; `validate --offline` too, but for what only the file system can
//! tell.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `(section, key, value as written in TOML)` of the base job file; the
/// paths are filled in per run.
const BASE: &[(&str, &str, &str)] = &[
    ("job", "name", "\"fuzz\""),
    ("job", "channel_capacity", "8"),
    ("job", "instance_id", "\"one\""),
    ("job", "max_state_entries", "100000"),
    ("source", "type", "\"file\""),
    ("source", "path", "\"@DIR@/events.ndjson\""),
    ("source", "batch_size", "64"),
    ("sink", "type", "\"file\""),
    ("sink", "path", "\"@DIR@/windows.ndjson\""),
    ("sink", "mode", "\"overwrite\""),
    ("window", "size", "\"10s\""),
    ("window", "slide", "\"5s\""),
    ("window", "allowed_lateness", "\"1s\""),
    ("window", "out_of_orderness", "\"2s\""),
    ("window", "idle_timeout", "\"30s\""),
    ("window", "max_future", "\"100d\""),
    ("window", "aggregates", "[\"count\", \"avg\", \"p90\"]"),
    ("event", "timestamp", "\"timestamp\""),
    ("event", "timestamp_format", "\"rfc3339\""),
    ("event", "value", "\"value\""),
    ("event", "max_name_bytes", "1024"),
    ("anomaly", "alpha", "0.3"),
    ("anomaly", "threshold", "3.0"),
    ("anomaly", "consecutive", "2"),
    ("anomaly", "warmup", "5"),
    ("anomaly", "relearn_after", "10"),
    ("anomaly", "forget_after", "\"2h\""),
    ("anomalies", "type", "\"file\""),
    ("anomalies", "path", "\"@DIR@/anomalies.ndjson\""),
    ("anomalies", "mode", "\"overwrite\""),
    ("dead_letter", "type", "\"file\""),
    ("dead_letter", "path", "\"@DIR@/dead.ndjson\""),
    ("dead_letter", "mode", "\"overwrite\""),
    ("late", "type", "\"file\""),
    ("late", "path", "\"@DIR@/late.ndjson\""),
    ("late", "mode", "\"overwrite\""),
    ("checkpoint", "dir", "\"@DIR@/cp\""),
    ("checkpoint", "interval", "\"1s\""),
    ("http", "listen", "\"127.0.0.1:0\""),
    ("http", "unhealthy_after", "\"60s\""),
];

/// Values that break programs, for any setting.
const VALUES: &[&str] = &[
    "0",
    "-1",
    "1",
    "65536",
    "65537",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "1e308",
    "-1e308",
    "5e-324",
    "nan",
    "inf",
    "-inf",
    "0.0",
    "0.5",
    "true",
    "\"\"",
    "\"0s\"",
    "\"1ns\"",
    "\"-1s\"",
    "\"99years\"",
    "\"101years\"",
    "\"18446744073709551615s\"",
    "\"1h\"",
    "\"abc\"",
    "\"127.0.0.1:99999\"",
    "\"300.1.1.1:0\"",
    "\"@LONG@\"",
    "\"nul\\u0000byte\"",
    "[]",
    "{}",
];

fn render(dir: &Path, change: Option<(usize, &str)>) -> String {
    let long = "x".repeat(5_000);
    let mut text = String::new();
    let mut section = "";
    for (i, (s, k, v)) in BASE.iter().enumerate() {
        if *s != section {
            text.push_str(&format!("\n[{s}]\n"));
            section = s;
        }
        let v = match change {
            Some((at, new)) if at == i => new,
            _ => v,
        };
        let v = v
            .replace("@DIR@", &dir.display().to_string())
            .replace("@LONG@", &long);
        text.push_str(&format!("{k} = {v}\n"));
    }
    text
}

fn flowline(cmd: &str, job: &Path) -> (Output, Duration) {
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowline"))
        .env("FLOWLINE_LOG", "warn")
        .env("NO_COLOR", "1")
        // Relative paths in a mutant land in its own directory.
        .current_dir(job.parent().unwrap())
        .arg(cmd)
        .arg("--config")
        .arg(job)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A bounded job of 300 events finishes in well under a second; a
    // mutant that hangs is a finding, not a wait.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (child.wait_with_output().unwrap(), t0.elapsed())
}

fn flowline_offline(job: &Path) -> (Output, Duration) {
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_flowline"))
        .env("FLOWLINE_LOG", "warn")
        .env("NO_COLOR", "1")
        .current_dir(job.parent().unwrap())
        .args(["validate", "--offline", "--config"])
        .arg(job)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out, t0.elapsed())
}

fn events() -> String {
    let mut s = String::new();
    for i in 0..300u64 {
        s.push_str(&format!(
            "{{\"host\":\"h{}\",\"metric\":\"cpu\",\"value\":{}.5,\"timestamp\":\"2026-01-01T00:{:02}:{:02}Z\"}}\n",
            i % 3,
            i % 17,
            i / 60,
            i % 60
        ));
    }
    s
}

#[test]
fn validate_and_run_accept_exactly_the_same_job_files() {
    let mut cases: Vec<Option<(usize, &str)>> = vec![None];
    // Every setting with a sample of the values; all of them for the
    // numeric and duration settings.
    for (i, (_, key, value)) in BASE.iter().enumerate() {
        let all = !value.contains('/') && *key != "type";
        for (j, v) in VALUES.iter().enumerate() {
            // A fixed sample of about one in six for the other settings.
            if all || (i * 31 + j * 7) % 6 == 0 {
                cases.push(Some((i, v)));
            }
        }
    }
    let mut disagree = Vec::new();
    let mut offline = Vec::new();
    let mut panics = Vec::new();
    let mut accepted = 0;
    for (n, case) in cases.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("events.ndjson"), events()).unwrap();
        let job = dir.path().join("job.toml");
        std::fs::write(&job, render(dir.path(), *case)).unwrap();
        let (v, _) = flowline("validate", &job);
        let (o, _) = flowline_offline(&job);
        let (r, took) = flowline("run", &job);
        let what = match case {
            None => "the base file".to_string(),
            Some((i, val)) => format!(
                "{}.{} = {}",
                BASE[*i].0,
                BASE[*i].1,
                &val[..val.len().min(40)]
            ),
        };
        for (cmd, out) in [("validate", &v), ("validate --offline", &o), ("run", &r)] {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("panicked") || out.status.code() == Some(101) {
                panics.push(format!("{what}: {cmd} panicked: {err}"));
            }
        }
        if v.status.success() != r.status.success() {
            disagree.push(format!(
                "#{n} {what}: validate {}, run {} after {took:?}: {}{}",
                v.status,
                r.status,
                String::from_utf8_lossy(&v.stderr),
                String::from_utf8_lossy(&r.stderr)
            ));
        }
        // Offline, what a start refuses is refused too, unless it needs a
        // file or an address to tell (a path, a checkpoint directory, a
        // port to bind); and what a start takes is never refused.
        let needs_system =
            case.is_some_and(|(i, _)| matches!(BASE[i].1, "path" | "dir" | "listen"));
        if o.status.success() != r.status.success() && !(o.status.success() && needs_system) {
            offline.push(format!(
                "#{n} {what}: validate --offline {}, run {}: {}{}",
                o.status,
                r.status,
                String::from_utf8_lossy(&o.stderr),
                String::from_utf8_lossy(&r.stderr)
            ));
        }
        if r.status.success() {
            accepted += 1;
        }
        if case.is_none() {
            assert!(
                r.status.success(),
                "the base job file must run:\n{}",
                String::from_utf8_lossy(&r.stderr)
            );
        }
    }
    assert!(
        panics.is_empty(),
        "{} panics:\n{}",
        panics.len(),
        panics.join("\n")
    );
    assert!(
        disagree.is_empty(),
        "{} of {} job files: validate and run disagree:\n{}",
        disagree.len(),
        cases.len(),
        disagree.join("\n")
    );
    assert!(
        offline.is_empty(),
        "{} of {} job files: validate --offline and run disagree:\n{}",
        offline.len(),
        cases.len(),
        offline.join("\n")
    );
    // The mutants are not all accepted, nor all refused.
    assert!(
        accepted > 1 && accepted < cases.len(),
        "{accepted} of {}",
        cases.len()
    );
}
