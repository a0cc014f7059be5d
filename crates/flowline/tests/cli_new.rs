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
