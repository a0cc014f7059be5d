//! `flowline new connector`: the generated crates build, pass the
//! conformance suites of the testkit, and are formatted and lint-clean;
//! bad names and occupied directories are refused before anything is
//! written.

use std::path::{Path, PathBuf};
use std::process::Command;

fn flowline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flowline"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cargo(dir: &Path, args: &[&str]) -> std::process::Output {
    // A target directory shared by the generated crates of every run.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
        .join("scaffold");
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo")
}

#[test]
fn generated_source_and_sink_pass_the_suites() {
    let dir = tempfile::tempdir().unwrap();
    for (name, kind) in [("ticker", "source"), ("web-hook", "sink")] {
        let path = dir.path().join(name);
        let mut cmd = flowline();
        cmd.args(["new", "connector", name, "--kind", kind, "--path"])
            .arg(&path);
        // The source without --flowline: the default is the source tree
        // this binary was built from.
        if kind == "sink" {
            cmd.arg("--flowline").arg(repo());
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("tests/conformance.rs") && text.contains("cargo test"),
            "{text}"
        );
        let manifest = std::fs::read_to_string(path.join("Cargo.toml")).unwrap();
        let api = repo().canonicalize().unwrap().join("crates/connector-api");
        assert!(
            manifest.contains(&format!("path = \"{}\"", api.display())),
            "{manifest}"
        );
        if kind == "source" {
            assert!(
                text.contains("the one this binary was built from"),
                "{text}"
            );
        }
        for args in [
            &["test", "--offline", "-q"][..],
            &[
                "clippy",
                "--offline",
                "-q",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ][..],
            &["fmt", "--check"][..],
        ] {
            let o = cargo(&path, args);
            assert!(
                o.status.success(),
                "cargo {args:?} in the generated {kind}:\n{}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let lib = std::fs::read_to_string(path.join("src/lib.rs")).unwrap();
        assert!(lib.contains("TODO"), "the places to fill in are marked");
    }
}

#[test]
fn bad_names_and_occupied_directories_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = flowline()
        .args(["new", "connector", "Web_Hook", "--path"])
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`Web_Hook` is not a connector name") && err.contains("Fix"),
        "{err}"
    );
    assert!(!dir.path().join("x").exists(), "nothing written");

    std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
    let out = flowline()
        .args(["new", "connector", "ok", "--path"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(),
        "mine"
    );
}

/// `flowline new connector NAME --kind KIND` in `dir`: the crate's path
/// and what the command printed.
fn scaffold(dir: &Path, name: &str, kind: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = flowline()
        .args(["new", "connector", name, "--kind", kind, "--path"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    (path, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A generated crate's own `flowline` binary (feature `runner`), built
/// with warnings counted: stderr of the build.
fn build_runner(path: &Path) -> PathBuf {
    let o = cargo(path, &["build", "--offline", "--features", "runner"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "cargo build --features runner:\n{err}");
    assert!(
        !err.contains("warning"),
        "the generated binary builds without warnings:\n{err}"
    );
    let name = path.file_name().unwrap().to_str().unwrap();
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
        .join("scaffold/debug")
        .join(format!("flowline-{name}"))
}

fn run_in(dir: &Path, bin: &Path, args: &[&str]) -> (bool, String, String) {
    let o = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The whole path of a connector author: scaffold a source, build the
/// custom binary the scaffold writes (`flowline::cli::main_with` with the
/// connector registered), and run the job file it writes. The windows are
/// checked against a plain group-by of the events the source is meant to
/// emit (host `ticker-P`, value = offset, one a second from 2026-01-01).
#[test]
fn scaffolded_source_runs_a_job_in_its_own_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (path, next) = scaffold(dir.path(), "ticker", "source");
    assert!(
        next.contains("cargo run --features runner -- run --config job.toml"),
        "{next}"
    );
    let bin = build_runner(&path);

    let (ok, text, err) = run_in(&path, &bin, &["connectors"]);
    assert!(ok, "{err}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("ticker ") && l.contains("source")),
        "{text}"
    );
    assert!(
        text.contains("kafka") && text.contains("elasticsearch"),
        "built-ins kept: {text}"
    );
    let (_, text, _) = run_in(&path, &bin, &["--help"]);
    assert!(text.contains("Usage: flowline-ticker"), "{text}");
    let (ok, text, err) = run_in(&path, &bin, &["validate", "--config", "job.toml"]);
    assert!(ok && text.contains("is valid"), "{text}\n{err}");
    let (ok, _, err) = run_in(&path, &bin, &["run", "--config", "job.toml"]);
    assert!(ok && err.contains("records_in=1200"), "{err}");

    // The independent computation: (host, window start in s) → count, sum,
    // min, max of the events partitions = 2, count = 600 describe.
    let start = 1_767_225_600_i64;
    let mut want = std::collections::BTreeMap::<(String, i64), (u64, f64, f64, f64)>::new();
    for p in 0..2 {
        for o in 0..600_i64 {
            let t = start + o;
            let e = want
                .entry((format!("ticker-{p}"), t - t.rem_euclid(10)))
                .or_insert((0, 0.0, f64::MAX, f64::MIN));
            e.0 += 1;
            e.1 += o as f64;
            e.2 = e.2.min(o as f64);
            e.3 = e.3.max(o as f64);
        }
    }
    let text = std::fs::read_to_string(path.join("windows.ndjson")).unwrap();
    let mut got = std::collections::BTreeMap::new();
    for line in text.lines() {
        let d: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(d["metric"], "ticks", "{line}");
        let ws: jiff::Timestamp = d["window_start"].as_str().unwrap().parse().unwrap();
        let we: jiff::Timestamp = d["window_end"].as_str().unwrap().parse().unwrap();
        assert_eq!(we.as_second() - ws.as_second(), 10, "{line}");
        let key = (d["host"].as_str().unwrap().to_string(), ws.as_second());
        let v = (
            d["count"].as_u64().unwrap(),
            d["sum"].as_f64().unwrap(),
            d["min"].as_f64().unwrap(),
            d["max"].as_f64().unwrap(),
        );
        assert!(
            got.insert(key, v).is_none(),
            "one document per window: {line}"
        );
    }
    assert_eq!(got, want);
    let dead = std::fs::read_to_string(path.join("dead-letter.ndjson")).unwrap();
    assert!(dead.is_empty(), "{dead}");
}

/// A scaffolded sink's binary runs its job file too: the sample events
/// through the windows into the new sink, nothing dead-lettered.
#[test]
fn scaffolded_sink_runs_a_job_in_its_own_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = scaffold(dir.path(), "drain", "sink");
    let bin = build_runner(&path);
    let (ok, _, err) = run_in(&path, &bin, &["run", "--config", "job.toml"]);
    // 3 hosts × 60 s of samples, all read, none refused.
    assert!(
        ok && err.contains("records_in=180") && err.contains("bad=0"),
        "{err}"
    );
    let dead = std::fs::read_to_string(path.join("dead-letter.ndjson")).unwrap();
    assert!(dead.is_empty(), "{dead}");
}
