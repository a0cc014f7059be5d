//! `flowline run` end to end on files: the window documents equal a
//! reference computed independently from the generator's events; bad config
//! fails before any work; a killed job restarted from its checkpoint writes
//! exactly what an uninterrupted run writes; SIGTERM checkpoints and exits 0.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flowline_metric_generator::{parse_rfc3339_ms, Generator, GeneratorConfig, MetricEvent};

/// Runs `flowline ARGS JOB`, asserting it succeeds.
/// The lines of a file's bytes, sorted.
fn sorted_lines(b: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = b.split_inclusive(|c| *c == b'\n').collect();
    v.sort_unstable();
    v
}

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
    let mut c = Command::new(env!("CARGO_BIN_EXE_flowline"));
    c.env("FLOWLINE_LOG", "warn");
    c
}

fn events(n: u64) -> Vec<MetricEvent> {
    Generator::new(GeneratorConfig {
        hosts: 7,
        count: Some(n),
        max_out_of_order_ms: 2_000,
        ..GeneratorConfig::default()
    })
    .collect()
}

fn write_events(dir: &Path, evs: &[MetricEvent]) -> PathBuf {
    let p = dir.join("events.ndjson");
    let mut text: String = evs.iter().map(|e| e.to_json() + "\n").collect();
    text.push_str("{\"host\":\"broken\n");
    std::fs::write(&p, text).unwrap();
    p
}

fn job_file(dir: &Path, extra: &str) -> PathBuf {
    let p = dir.join("job.toml");
    std::fs::write(
        &p,
        format!(
            "[source]\ntype = \"file\"\npath = \"{}\"\n\n[sink]\ntype = \"file\"\npath = \"{}\"\n\n[window]\nsize = \"10s\"\nallowed_lateness = \"0s\"\nout_of_orderness = \"3s\"\n{extra}",
            dir.join("events.ndjson").display(),
            dir.join("windows.ndjson").display()
        ),
    )
    .unwrap();
    p
}

fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1]
}

#[test]
fn windows_equal_an_independent_reference() {
    let dir = tempfile::tempdir().unwrap();
    let evs = events(20_000);
    write_events(dir.path(), &evs);
    let dlq = dir.path().join("dlq.ndjson");
    let job = job_file(
        dir.path(),
        &format!(
            "\n[dead_letter]\ntype = \"file\"\npath = \"{}\"\n",
            dlq.display()
        ),
    );
    run_ok(&["run", "--config"], &job);

    let mut want: BTreeMap<(String, String, i64), Vec<f64>> = BTreeMap::new();
    for e in &evs {
        let ts = parse_rfc3339_ms(&e.timestamp).unwrap();
        want.entry((e.host.clone(), e.metric.clone(), ts - ts.rem_euclid(10_000)))
            .or_default()
            .push(e.value);
    }
    let text = std::fs::read_to_string(dir.path().join("windows.ndjson")).unwrap();
    let docs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), want.len(), "one document per key and window");
    for d in &docs {
        let start = parse_rfc3339_ms(d["window_start"].as_str().unwrap()).unwrap();
        let key = (
            d["host"].as_str().unwrap().to_string(),
            d["metric"].as_str().unwrap().to_string(),
            start,
        );
        let mut vals = want
            .get(&key)
            .unwrap_or_else(|| panic!("unexpected window {key:?}"))
            .clone();
        vals.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let close = |a: f64, b: f64, rel: f64| (a - b).abs() <= rel * b.abs() + 1e-6;
        assert_eq!(d["count"].as_u64().unwrap() as usize, vals.len(), "{key:?}");
        assert!(
            close(d["sum"].as_f64().unwrap(), vals.iter().sum(), 1e-9),
            "{key:?}"
        );
        assert_eq!(d["min"].as_f64().unwrap(), vals[0]);
        assert_eq!(d["max"].as_f64().unwrap(), *vals.last().unwrap());
        assert_eq!(
            parse_rfc3339_ms(d["window_end"].as_str().unwrap()).unwrap(),
            start + 10_000
        );
        for (f, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
            let exact = nearest_rank(&vals, q);
            assert!(
                close(d[f].as_f64().unwrap(), exact, 0.02),
                "{key:?} {f}: {} vs exact {exact}",
                d[f]
            );
        }
    }
    let bad: Vec<serde_json::Value> = std::fs::read_to_string(&dlq)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["payload"], "{\"host\":\"broken");
    assert!(
        bad[0]["reason"]
            .as_str()
            .unwrap()
            .contains("invalid metric event"),
        "{}",
        bad[0]
    );
}

/// Times and values from other producers: offsets, lower case, 1970, a
/// year-9999 clock, a time without an offset or seconds, an offset of a
/// day, a zone that disagrees with its offset, NaN, an out-of-range number.
/// The expected windows are written out by hand (an independent group-by
/// of the UTC times), and every bad record is dead-lettered once with its
/// reason while the job goes on.
#[test]
fn world_times_and_values_are_exact_or_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let ev = |h: &str, v: &str, t: &str| {
        format!(r#"{{"host":"{h}","metric":"m","value":{v},"timestamp":"{t}"}}"#)
    };
    let lines = [
        ev("b", "1", "1970-01-01T00:00:00.500Z"),
        ev("a", "1.5", "2026-01-01T05:30:01.250+05:30"),
        ev("a", "2.5", "2026-01-01T00:00:02Z"),
        ev("a", "0.0004", "2025-12-31t19:00:05.999999-05:00"),
        ev("a", "4", "9999-01-01T00:00:00Z"),
        ev("a", "3", "2026-01-01T00:00:03"),
        ev("a", "NaN", "2026-01-01T00:00:04Z"),
        ev("a", "1e999", "2026-01-01T00:00:04Z"),
        ev("a", "7", "2026-01-01T02:05:00+02:00"),
        // Java's ZonedDateTime text, zone and offset agreeing.
        ev("a", "8", "2026-01-01T01:05:01+01:00[Europe/Paris]"),
        ev("a", "9", "2026-01-01T00:00Z"),
        ev("a", "10", "2026-01-02T01:00:01+25:00"),
        ev("a", "11", "2026-01-01T00:00:01+00:00[Europe/Paris]"),
    ];
    std::fs::write(dir.path().join("events.ndjson"), lines.join("\n") + "\n").unwrap();
    let dlq = dir.path().join("dlq.ndjson");
    let job = job_file(
        dir.path(),
        &format!(
            "\n[dead_letter]\ntype = \"file\"\npath = \"{}\"\n",
            dlq.display()
        ),
    );
    run_ok(&["run", "--config"], &job);
    let text = std::fs::read_to_string(dir.path().join("windows.ndjson")).unwrap();
    let got: BTreeMap<String, serde_json::Value> = text
        .lines()
        .map(|l| {
            let d: serde_json::Value = serde_json::from_str(l).unwrap();
            let id = format!(
                "{}|{}",
                d["host"].as_str().unwrap(),
                d["window_start"].as_str().unwrap()
            );
            (id, d)
        })
        .collect();
    let keys: Vec<&str> = got.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "a|2026-01-01T00:00:00.000Z",
            "a|2026-01-01T00:05:00.000Z",
            "b|1970-01-01T00:00:00.000Z"
        ]
    );
    let w = &got["a|2026-01-01T00:00:00.000Z"];
    assert_eq!(w["count"], 3);
    assert_eq!(w["sum"].as_f64().unwrap(), 1.5 + 2.5 + 0.0004);
    assert_eq!(w["avg"].as_f64().unwrap(), (1.5 + 2.5 + 0.0004) / 3.0);
    assert_eq!(
        (w["min"].as_f64(), w["max"].as_f64()),
        (Some(0.0004), Some(2.5))
    );
    for p in ["p50", "p95", "p99"] {
        let v = w[p].as_f64().unwrap();
        assert!((0.0004..=2.5).contains(&v), "{p} {v} outside [min, max]");
    }
    assert_eq!(got["a|2026-01-01T00:05:00.000Z"]["sum"], 7.0 + 8.0);
    assert_eq!(
        got["b|1970-01-01T00:00:00.000Z"]["window_end"],
        "1970-01-01T00:00:10.000Z"
    );

    let bad: Vec<serde_json::Value> = std::fs::read_to_string(&dlq)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let reasons: Vec<(String, String)> = bad
        .iter()
        .map(|b| {
            (
                b["payload"].as_str().unwrap().to_string(),
                b["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(bad.len(), 7, "{reasons:#?}");
    let reason_of = |needle: &str| {
        reasons
            .iter()
            .find(|(p, _)| p.contains(needle))
            .unwrap_or_else(|| panic!("no dead letter for {needle}: {reasons:#?}"))
            .1
            .clone()
    };
    assert!(reason_of("9999-01-01").contains("max_future"));
    assert!(reason_of("00:00:03\"").contains("offset"));
    assert!(reason_of("NaN").contains("invalid metric event"));
    assert!(reason_of("1e999").contains("invalid metric event"));
    assert!(reason_of("T00:00Z\"").contains("no seconds"));
    assert!(reason_of("+25:00").contains("less than 24 hours"));
    assert!(reason_of("+00:00[Europe/Paris]").contains("two instants"));
}

/// A file the job did not write survives: a fresh run refuses it (exit 1,
/// a message naming the file and the choices), and mode = "append" keeps
/// it and writes after it.
#[test]
fn an_existing_output_file_is_never_truncated_without_being_asked() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path(), &events(2_000));
    let out = dir.path().join("windows.ndjson");
    std::fs::write(&out, "a line someone else wrote\n").unwrap();
    let job = job_file(dir.path(), "");
    let o = flowline()
        .args(["run", "--config"])
        .arg(&job)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("windows.ndjson") && err.contains("mode = \"append\""),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "a line someone else wrote\n"
    );

    let text = std::fs::read_to_string(&job).unwrap().replace(
        "windows.ndjson\"\n",
        "windows.ndjson\"\nmode = \"append\"\n",
    );
    std::fs::write(&job, text).unwrap();
    run_ok(&["run", "--config"], &job);
    let got = std::fs::read_to_string(&out).unwrap();
    assert!(
        got.starts_with("a line someone else wrote\n{\"host\""),
        "{}",
        &got[..200.min(got.len())]
    );
}

#[test]
fn bad_config_fails_before_any_work_naming_the_field_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path(), &events(10));
    let job = job_file(dir.path(), "");
    let text = std::fs::read_to_string(&job).unwrap();
    for (bad, expect) in [
        (
            text.replace("size = \"10s\"", "size = \"ten seconds\""),
            vec!["window.size", "Fix"],
        ),
        (
            text.replace("[window]", "[window]\nwindow_size = \"1s\""),
            vec!["unknown field `window_size`"],
        ),
        (
            text.replacen("type = \"file\"", "type = \"kafak\"", 1),
            vec![
                "unknown source connector `kafak`",
                "known source connectors: file",
            ],
        ),
        (
            text.replace("events.ndjson", "missing.ndjson"),
            vec!["missing.ndjson", "Fix"],
        ),
    ] {
        std::fs::write(&job, &bad).unwrap();
        let out = flowline()
            .args(["run", "--config"])
            .arg(&job)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted: {bad}");
        for e in expect {
            assert!(err.contains(e), "stderr lacks `{e}`: {err}");
        }
        assert!(
            !dir.path().join("windows.ndjson").exists(),
            "work was done before the config error"
        );
    }
}

/// Polls `cond` every 5 ms; fails naming `what` when the job exits first
/// or after 60 s.
fn wait_until(what: &str, child: &mut Child, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended while waiting for {what}"
        );
        assert!(
            Instant::now() < deadline,
            "timed out after 60 s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn checkpoint_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("chk-"))
                .count()
        })
        .unwrap_or(0)
}

/// Opens the write end of the FIFO at `path` (which blocks until the job
/// opens it for reading), failing after 60 s.
fn open_writer(path: &Path, child: &mut Child) -> std::fs::File {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::OpenOptions::new().write(true).open(p));
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(f) = rx.recv_timeout(Duration::from_millis(20)) {
            return f.expect("open the FIFO for writing");
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended before opening its input"
        );
        assert!(
            Instant::now() < deadline,
            "the job did not open its input within 60 s"
        );
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Signal {
    Kill,
    Term,
}

/// The crashed run reads its events from a FIFO the test writes: it can
/// never reach the end of its input before the signal, and the signal comes
/// at a seeded line count after a checkpoint, whatever the machine's speed.
/// The restart reads the same events from a plain file at the same path.
fn recovery(signal: Signal, seed: u64) {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let input = write_events(dir.path(), &events(150_000));
    let text = std::fs::read(&input).unwrap();
    let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
    // Reference: an uninterrupted run.
    let job = job_file(dir.path(), "");
    assert!(flowline()
        .args(["run", "--config"])
        .arg(&job)
        .status()
        .unwrap()
        .success());
    let want = std::fs::read(dir.path().join("windows.ndjson")).unwrap();
    std::fs::remove_file(dir.path().join("windows.ndjson")).unwrap();

    let chk = dir.path().join("checkpoints");
    let job = job_file(
        dir.path(),
        &format!(
            "\n[checkpoint]\ndir = \"{}\"\ninterval = \"20ms\"\n",
            chk.display()
        ),
    );
    std::fs::remove_file(&input).unwrap();
    assert!(Command::new("mkfifo")
        .arg(&input)
        .status()
        .unwrap()
        .success());
    let log = dir.path().join("run.log");
    let mut child = flowline()
        .env("FLOWLINE_LOG", "warn,flowline_runtime=debug")
        .args(["run", "--config"])
        .arg(&job)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut writer = open_writer(&input, &mut child);
    // Seeded line counts: the first part before a checkpoint, then more.
    let first = 20_000 + (seed * 7_919) as usize % 40_000;
    let more = 1 + (seed * 104_729) as usize % 30_000;
    writer.write_all(&lines[..first].concat()).unwrap();
    wait_until("a checkpoint", &mut child, || checkpoint_count(&chk) > 0);
    writer
        .write_all(&lines[first..first + more].concat())
        .unwrap();
    let name = if signal == Signal::Kill {
        "-KILL"
    } else {
        "-TERM"
    };
    assert!(Command::new("kill")
        .arg(name)
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success());
    if signal == Signal::Term {
        // The job stops reading once its shutdown checkpoint is taken; only
        // then does its input end (an end before it would fire every window).
        wait_until("the shutdown checkpoint", &mut child, || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .any(|l| l.contains("checkpoint complete") && l.contains("shutdown"))
        });
    }
    drop(writer);
    let status = child.wait().unwrap();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    if signal == Signal::Kill {
        assert!(!status.success(), "killed job reported success");
    } else {
        assert!(
            status.success(),
            "SIGTERM: checkpoint then exit 0, got {status}:\n{log_text}"
        );
    }
    let partial = std::fs::metadata(dir.path().join("windows.ndjson"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(
        (partial as usize) < want.len(),
        "the stopped run wrote every window: it read past its input"
    );
    std::fs::remove_file(&input).unwrap();
    std::fs::write(&input, &text).unwrap();
    run_ok(&["run", "--config"], &job);
    let got = std::fs::read(dir.path().join("windows.ndjson")).unwrap();
    // Workers write windows of different keys in no set order: compare the
    // documents, each once.
    assert!(
        sorted_lines(&got) == sorted_lines(&want),
        "after restart the output differs: {} bytes vs {} uninterrupted",
        got.len(),
        want.len()
    );
}

#[test]
fn sigkill_then_restart_writes_exactly_the_uninterrupted_output() {
    recovery(Signal::Kill, 3);
}

#[test]
fn sigterm_checkpoints_exits_zero_and_the_restart_completes_exactly() {
    recovery(Signal::Term, 8);
}
