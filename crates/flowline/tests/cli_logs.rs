//! What the CLI writes where: the log level from `RUST_LOG` with
//! `FLOWLINE_LOG` over it, no colour codes when standard error is not a
//! terminal, `--log-format json` with one object per line, a closed
//! standard output ending a command quietly, and TOML errors that give the
//! line and column.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn flowline() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_flowline"));
    c.env_remove("FLOWLINE_LOG")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR");
    c
}

/// A small bounded file job in `dir`.
fn job(dir: &Path) -> PathBuf {
    let mut events = String::new();
    for i in 0..50 {
        events.push_str(&format!(
            "{{\"host\":\"h{}\",\"metric\":\"cpu\",\"value\":{i},\"timestamp\":\"2026-01-01T00:00:{:02}Z\"}}\n",
            i % 2,
            i % 60
        ));
    }
    events.push_str("not json\n");
    std::fs::write(dir.join("events.ndjson"), events).unwrap();
    let p = dir.join("job.toml");
    std::fs::write(
        &p,
        format!(
            "[source]\ntype = \"file\"\npath = \"{0}/events.ndjson\"\n\n[sink]\ntype = \"file\"\npath = \"{0}/windows.ndjson\"\nmode = \"overwrite\"\n",
            dir.display()
        ),
    )
    .unwrap();
    p
}

fn run(envs: &[(&str, &str)], args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path());
    let mut c = flowline();
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c
        .args(args)
        .arg("run")
        .arg("--config")
        .arg(&job)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn rust_log_sets_the_level_and_flowline_log_overrides_it() {
    assert!(
        stderr(&run(&[], &[])).contains("job started"),
        "info is the default"
    );
    let quiet = stderr(&run(&[("RUST_LOG", "warn")], &[]));
    assert!(
        !quiet.contains("job started"),
        "RUST_LOG=warn ignored:\n{quiet}"
    );
    let loud = stderr(&run(&[("RUST_LOG", "warn"), ("FLOWLINE_LOG", "info")], &[]));
    assert!(
        loud.contains("job started"),
        "FLOWLINE_LOG did not win:\n{loud}"
    );
    let typo = stderr(&run(&[("FLOWLINE_LOG", "flowline=loud")], &[]));
    assert!(
        typo.contains("does not parse") && typo.contains("job started"),
        "a bad filter must be reported, and info used:\n{typo}"
    );
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let e = stderr(&run(&[], &[]));
    assert!(e.contains("INFO"), "{e}");
    assert!(!e.contains('\u{1b}'), "escape codes in a piped log:\n{e:?}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let e = stderr(&run(&[], &["--log-format", "json"]));
    let mut started = false;
    for line in e.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not a JSON line ({err}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        started |= v["fields"]["message"] == "job started" && v["fields"]["job"].is_string();
    }
    assert!(started, "no `job started` object with its fields:\n{e}");
}

#[test]
fn a_closed_standard_output_ends_the_demo_quietly() {
    let dir = tempfile::tempdir().unwrap();
    // Unbounded and paced: it only ends because its reader goes away.
    let mut child = flowline()
        .args(["demo", "--rate", "2000", "--out"])
        .arg(dir.path().join("out"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("flowline demo:"), "{first}");
    // `| head -1`: the reader is gone; the next summary line (each second)
    // meets the closed pipe.
    let out = child.wait_with_output().unwrap();
    let e = stderr(&out);
    assert!(out.status.success(), "{:?}\n{e}", out.status);
    assert!(!e.contains("panicked") && !e.contains("error:"), "{e}");
}

#[test]
fn toml_errors_give_line_column_and_the_line_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("job.toml");
    std::fs::write(
        &p,
        "[source]\ntype = \"kafka\"\nsasl_password = 12345 6\n\n[sink]\ntype = \"file\"\npath = \"w\"\n",
    )
    .unwrap();
    for cmd in ["validate", "run"] {
        let out = flowline()
            .arg(cmd)
            .arg("--config")
            .arg(&p)
            .output()
            .unwrap();
        let e = stderr(&out);
        assert!(!out.status.success());
        assert!(e.contains("line 3, column"), "{cmd}: {e}");
        assert!(e.contains("3 | sasl_password = ***"), "{cmd}: {e}");
        assert!(!e.contains("12345") && !e.contains("at byte"), "{cmd}: {e}");
    }
}

#[test]
fn late_events_with_no_late_output_are_a_warning_not_only_a_count() {
    // Counted in no window and written nowhere: before, only the summary's
    // `late=` and a metric said so.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("events.ndjson"),
        "{\"host\":\"h\",\"metric\":\"m\",\"value\":1,\"timestamp\":\"2026-01-01T00:00:21Z\"}\n\
         {\"host\":\"h\",\"metric\":\"m\",\"value\":2,\"timestamp\":\"2026-01-01T00:00:01Z\"}\n",
    )
    .unwrap();
    let job = d.join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[source]\ntype = \"file\"\npath = \"{0}/events.ndjson\"\nbatch_size = 1\n\n[sink]\ntype = \"file\"\npath = \"{0}/windows.ndjson\"\n\n[window]\nsize = \"10s\"\n",
            d.display()
        ),
    )
    .unwrap();
    let out = flowline()
        .args(["run", "--config"])
        .arg(&job)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("late events and no late sink configured")
            && err.contains("count=1")
            && err.contains("Fix: add a [late] output"),
        "{err}"
    );
}
