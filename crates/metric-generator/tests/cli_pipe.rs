//! `metric-generator | head -1`: the reader goes away after one line and
//! the generator ends quietly, exit 0, without an error or a panic.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn a_closed_standard_output_ends_the_generator_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_metric-generator"))
        .args([
            "--count",
            "100000000",
            "--rate",
            "0",
            "--start",
            "2026-01-01T00:00:00Z",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert!(v["host"].is_string(), "{first}");
    let out = child.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{e}", out.status);
    assert!(!e.contains("error") && !e.contains("panicked"), "{e}");
}
