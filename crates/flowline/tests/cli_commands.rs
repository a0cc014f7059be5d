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
    assert!(rows.iter().all(|r| r[3] == "2.3"), "{text}");
    assert!(
        text.contains("implements connector API 2.3; it runs connectors built for 2.0 up to 2.3"),
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

#[test]
fn validate_offline_contacts_nothing_but_still_reads_every_setting() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.toml");
    let write = |source_extra: &str, sink_type: &str| {
        std::fs::write(
            &job,
            format!(
                "[source]\ntype = \"kafka\"\nbootstrap_servers = \"127.0.0.1:1\"\ntopics = [\"t\"]\ngroup_id = \"g\"\nconnect_timeout = \"1s\"\n{source_extra}\n[sink]\ntype = \"{sink_type}\"\nurl = \"http://127.0.0.1:1\"\nindex = \"w\"\n"
            ),
        )
        .unwrap();
    };
    let validate = |offline: bool| {
        let mut c = flowline();
        c.args(["validate", "--config"]).arg(&job);
        if offline {
            c.arg("--offline");
        }
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    write("", "elasticsearch");
    // Nothing listens on port 1: online validation fails, offline passes.
    let (ok, text) = validate(false);
    assert!(!ok && text.contains("cannot reach Kafka"), "{text}");
    let (ok, text) = validate(true);
    assert!(ok && text.contains("offline"), "{text}");
    // A misspelt setting and an unknown connector are caught offline too.
    write("bootstrap_server = \"x\"\n", "elasticsearch");
    let (ok, text) = validate(true);
    assert!(!ok && text.contains("bootstrap_server"), "{text}");
    write("", "elastic");
    let (ok, text) = validate(true);
    assert!(
        !ok && text.contains("elastic") && text.contains("[sink]"),
        "{text}"
    );
}

/// Kafka properties that would undo a guarantee (duplicates on the output
/// topic, aborted transactions counted, offsets ahead of checkpoints) fail
/// `validate --offline`, `validate` and `run` alike, at once: `run` does not
/// take them for an unreachable broker to wait for.
#[test]
fn kafka_properties_that_undo_a_guarantee_fail_validate_and_run_alike() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.toml");
    let ok_part = "[source]\ntype = \"kafka\"\nbootstrap_servers = \"127.0.0.1:1\"\ntopics = [\"t\"]\ngroup_id = \"g\"\nconnect_timeout = \"1s\"\n";
    let sink = "[sink]\ntype = \"kafka\"\nbootstrap_servers = \"127.0.0.1:1\"\ntopic = \"w\"\n";
    let with_config = |args: &[&str]| {
        flowline()
            .args(args)
            .arg("--config")
            .arg(&job)
            .output()
            .unwrap()
    };
    for (props, name) in [
        (
            format!("{ok_part}{sink}[sink.properties]\n\"enable.idempotence\" = \"false\"\n"),
            "[sink.properties] \"enable.idempotence\"",
        ),
        (
            format!(
                "{ok_part}[source.properties]\n\"isolation.level\" = \"read_uncommitted\"\n{sink}"
            ),
            "[source.properties] \"isolation.level\"",
        ),
    ] {
        std::fs::write(&job, &props).unwrap();
        for args in [
            &["validate", "--offline"][..],
            &["validate"][..],
            &["run"][..],
        ] {
            let started = std::time::Instant::now();
            let out = with_config(args);
            let text = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success() && text.contains(name) && text.contains("Fix:"),
                "{args:?}: {text}"
            );
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "{args:?} waited"
            );
        }
    }
    // The same file with the property at the value the connector sets
    // passes offline.
    std::fs::write(
        &job,
        format!("{ok_part}{sink}[sink.properties]\n\"enable.idempotence\" = \"true\"\n"),
    )
    .unwrap();
    let out = with_config(&["validate", "--offline"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every setting a start refuses without asking a server is refused by
/// `validate --offline` too, with the same setting named: durations,
/// ranges, contradicting settings, librdkafka properties librdkafka does
/// not take. Each file is otherwise valid (it passes offline without the
/// defect), and nothing listens on its servers' port.
#[test]
fn what_a_start_refuses_for_the_config_alone_validate_offline_refuses_too() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.toml");
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, "").unwrap();
    let kafka = "[source]\ntype = \"kafka\"\nbootstrap_servers = \"127.0.0.1:1\"\ntopics = [\"t\"]\ngroup_id = \"g\"\nconnect_timeout = \"1s\"\n";
    let file = format!("[source]\ntype = \"file\"\npath = {input:?}\n");
    let es = "[sink]\ntype = \"elasticsearch\"\nurl = \"http://127.0.0.1:1\"\nindex = \"w\"\n";
    let ksink = "[sink]\ntype = \"kafka\"\nbootstrap_servers = \"127.0.0.1:1\"\ntopic = \"w\"\nconnect_timeout = \"1s\"\n";
    let cases: [(String, &str, &str); 8] = [
        (
            format!("{kafka}{es}"),
            "poll_timeout = \"abc\"\n",
            "poll_timeout",
        ),
        (format!("{kafka}{es}"), "max_batch = 0\n", "max_batch"),
        (
            format!("{kafka}{es}"),
            "[source.properties]\n\"fetch.wait.max.msx\" = \"10\"\n",
            "fetch.wait.max.msx",
        ),
        (
            format!("{file}{ksink}"),
            "linger_ms = 1000000\n",
            "linger_ms",
        ),
        (
            format!("{file}{ksink}"),
            "linger_ms = 5\n[sink.properties]\n\"linger.ms\" = \"7\"\n",
            "linger.ms",
        ),
        (
            format!("{file}{ksink}"),
            "[sink.properties]\n\"batch.num.messages\" = \"many\"\n",
            "batch.num.messages",
        ),
        (
            format!("{file}{es}").replace("http://", "http://b:c@"),
            "username = \"a\"\n",
            "credentials",
        ),
        (format!("{ksink}{file}"), "batch_size = 0\n", "batch_size"),
    ];
    let run = |args: &[&str]| {
        let out = flowline()
            .args(args)
            .arg("--config")
            .arg(&job)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), text)
    };
    for (base, defect, name) in cases {
        std::fs::write(&job, &base).unwrap();
        let (ok, text) = run(&["validate", "--offline"]);
        assert!(ok, "without the defect: {text}\n{base}");
        // The defect goes at the end of the file's last section.
        std::fs::write(&job, format!("{base}{defect}")).unwrap();
        for args in [
            &["validate", "--offline"][..],
            &["validate"][..],
            &["run"][..],
        ] {
            let started = std::time::Instant::now();
            let (ok, text) = run(args);
            assert!(
                !ok && text.contains(name),
                "{args:?} with {defect:?}: {text}"
            );
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "{args:?} waited"
            );
        }
    }
}
