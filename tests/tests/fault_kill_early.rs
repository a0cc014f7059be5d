//! A job killed before its first interval checkpoint, with file outputs for
//! its windows and dead letters. The files then hold lines that only this
//! job wrote, with no interval checkpoint that recorded them: the restart
//! must not refuse them as another's (it did, at every restart, found by a
//! stranger's trial), and each window and dead letter must be in the files
//! once. A fresh job checkpoints at its start, so the restart restores that
//! checkpoint and cuts the files back to what they held before the job.
//!
//! The four hosts' events all land on one of the topic's two partitions:
//! the other, empty, must not hold the windows back once both are idle
//! (the first run wrote no window, 3 runs in 4, before that was fixed).

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use flowline_integration_tests::job::{
    job_log, kafka_job_head, lines, produce_lines, reference_windows, spawn_job, wait_exit,
    wait_running, window_diff,
};
use flowline_integration_tests::{create_topic, unique, TestServices};
use flowline_metric_generator::GeneratorConfig;

const WINDOW_MS: i64 = 10_000;

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_killed_before_its_first_interval_checkpoint_restarts_and_writes_each_line_once() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("kill-early");
    create_topic(&s.kafka_bootstrap, &topic, 2).await;
    let events = lines(GeneratorConfig {
        hosts: 4,
        seed: 21,
        count: Some(60_000),
        max_out_of_order_ms: 1_000,
        poison_fraction: 0.01,
        ..GeneratorConfig::default()
    });
    let poison = events.iter().filter(|e| e.2).count();
    assert!(poison > 300, "{poison}");
    produce_lines(&s.kafka_bootstrap, &topic, &events).await;

    let dir = tempfile::tempdir().unwrap();
    let (windows, dead) = (
        dir.path().join("windows.ndjson"),
        dir.path().join("dead.ndjson"),
    );
    let config = |name: &str, bounded: bool| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "{head}bounded = {bounded}\n[sink]\ntype = \"file\"\npath = \"{w}\"\n[dead_letter]\ntype = \"file\"\npath = \"{d}\"\n[window]\nsize = \"10s\"\nout_of_orderness = \"2s\"\nidle_timeout = \"2s\"\n[checkpoint]\ndir = \"{cp}\"\ninterval = \"1h\"\n",
                head = kafka_job_head(&topic, &s.kafka_bootstrap),
                w = windows.display(),
                d = dead.display(),
                cp = dir.path().join("cp").display(),
            ),
        )
        .unwrap();
        path
    };
    // Streaming: the run cannot end before its kill. Killed once both files
    // hold lines, an hour before its first interval checkpoint.
    let killed = config("killed.toml", false);
    let mut child = spawn_job(&killed, 0);
    wait_running(
        "output",
        &mut child,
        &killed,
        0,
        Duration::from_secs(120),
        || file_len(&windows) > 0 && file_len(&dead) > 0,
    )
    .await;
    child.kill().unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.signal(), Some(9), "killed: {st}");
    let (w0, d0) = (file_len(&windows), file_len(&dead));

    let last = config("final.toml", true);
    let mut child = spawn_job(&last, 1);
    let st = wait_exit(&mut child, &last, 1, Duration::from_secs(180)).await;
    assert!(st.success(), "the restart ran: {st}\n{}", job_log(&last, 1));

    // Windows: each once, equal to a group-by of the valid events.
    let text = std::fs::read_to_string(&windows).unwrap();
    let mut docs = BTreeMap::new();
    for line in text.lines() {
        let d: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = format!(
            "{}|{}|{}",
            d["host"].as_str().unwrap(),
            d["metric"].as_str().unwrap(),
            d["window_start"].as_str().unwrap()
        );
        assert!(docs.insert(id.clone(), d).is_none(), "{id} twice");
    }
    let reference = reference_windows(
        events.iter().filter(|e| !e.2).map(|e| e.1.as_str()),
        WINDOW_MS,
    );
    let diff = window_diff(&docs, &reference);
    assert!(diff.is_empty(), "{:?}", &diff[..diff.len().min(5)]);

    // Dead letters: each poison record once.
    let letters = std::fs::read_to_string(&dead).unwrap();
    let mut ids = BTreeMap::new();
    for line in letters.lines() {
        let d: serde_json::Value = serde_json::from_str(line).unwrap();
        *ids.entry(d["id"].to_string()).or_insert(0) += 1;
    }
    assert_eq!(ids.len(), poison, "dead letters by id");
    assert!(ids.values().all(|&n| n == 1), "a dead letter twice");
    eprintln!(
        "killed with {w0} bytes of windows and {d0} of dead letters; after the restart {} windows, {poison} dead letters, each once",
        docs.len()
    );
}
