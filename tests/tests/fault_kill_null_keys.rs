//! Two topics that are not keyed by the job's key, read by one source:
//! every message has a null key and goes to the next topic and partition in
//! turn (round robin), so each host's events are spread over all partitions
//! of both. The job routes them through the
//! hash exchange (no `keyed_by`): through two SIGKILLs, each restart with
//! another worker count, the indexed windows equal a plain group-by of the
//! events, one document per window.
//!
//! The same topics with `keyed_by = ["host"]` declared count nothing: each
//! record, having no message key, is a dead letter with the reason and the
//! fix (a process reading one partition of it could not see a key split).

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use flowline_integration_tests::job::{
    all_docs, checkpoint_ids, http_addr, job_log, kafka_job_head, lines, reference_windows,
    spawn_job, wait_exit, wait_progress, window_diff,
};
use flowline_integration_tests::{
    count, create_topic, produce_messages, unique, Message, TestServices,
};
use flowline_metric_generator::GeneratorConfig;

const WINDOW_MS: i64 = 30_000;
const PARTITIONS: i32 = 3;

/// Produces the events with null keys, to each topic and partition in
/// turn.
async fn produce_round_robin(
    bootstrap: &str,
    topics: [&str; 2],
    events: &[(String, String, bool)],
) {
    for (t, topic) in topics.iter().enumerate() {
        let messages =
            events
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 2 == t)
                .map(|(i, (_, line, _))| Message {
                    key: None,
                    payload: line.clone(),
                    timestamp: None,
                    partition: Some((i / 2) as i32 % PARTITIONS),
                });
        produce_messages(bootstrap, topic, messages).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_keyed_topics_through_two_sigkills_equal_a_group_by() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let topic = unique("nullkeys");
    let other = format!("{topic}-b");
    let topics = [topic.as_str(), other.as_str()];
    for t in topics {
        create_topic(&s.kafka_bootstrap, t, PARTITIONS).await;
    }
    let events = lines(GeneratorConfig {
        hosts: 8,
        seed: 23,
        count: Some(60_000),
        max_out_of_order_ms: 1_500,
        poison_fraction: 0.002,
        ..GeneratorConfig::default()
    });
    let cuts = [0, 20_000, 40_000, events.len()];

    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("cp");
    let file = |name: &str, workers: usize, tail: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                r#"{head}{tail}
[sink]
type = "elasticsearch"
url = "{e}"
index = "{topic}-windows"
max_actions = 500
[window]
size = "30s"
out_of_orderness = "2s"
[checkpoint]
dir = "{cp}"
interval = "300ms"
"#,
                head = kafka_job_head(&topic, &s.kafka_bootstrap)
                    .replacen("[job]\n", &format!("[job]\nworkers = {workers}\n"), 1)
                    .replacen(
                        &format!("topics = [\"{topic}\"]"),
                        &format!("topics = [\"{topic}\", \"{other}\"]"),
                        1
                    ),
                e = s.elasticsearch_url,
                cp = cp.display()
            ),
        )
        .unwrap();
        path
    };
    let streaming = "bounded = false\n[http]\nlisten = \"127.0.0.1:0\"";
    // Each run another worker count: the key groups move between workers
    // at every restore.
    let runs = [
        file("killed-3.toml", 3, streaming),
        file("killed-1.toml", 1, streaming),
    ];
    for (run, config) in runs.iter().enumerate() {
        produce_round_robin(
            &s.kafka_bootstrap,
            topics,
            &events[cuts[run]..cuts[run + 1]],
        )
        .await;
        let before = checkpoint_ids(&cp).last().copied().unwrap_or(0);
        let mut child = spawn_job(config, run);
        let addr = http_addr(&mut child, config, run).await;
        // Killed after a checkpoint of its own and half of its new input.
        let at = (cuts[run + 1] - cuts[run]) as u64 / 2;
        wait_progress(
            &format!("run {run}: a checkpoint after {before} and {at} records read"),
            &addr,
            &mut child,
            config,
            run,
            Duration::from_secs(120),
            |p| p.checkpoint > before && p.records_in >= at,
        )
        .await;
        child.kill().unwrap();
        let st = child.wait().unwrap();
        assert_eq!(st.signal(), Some(9), "run {run}:\n{}", job_log(config, run));
    }
    produce_round_robin(&s.kafka_bootstrap, topics, &events[cuts[2]..]).await;
    let last = file("final.toml", 2, "bounded = true");
    let mut child = spawn_job(&last, 2);
    let st = wait_exit(&mut child, &last, 2, Duration::from_secs(300)).await;
    assert!(st.success(), "final run ({st}):\n{}", job_log(&last, 2));
    let log = job_log(&last, 2);
    assert!(log.contains("key groups restored"), "{log}");

    // The independent computation: a group-by of the good events.
    let reference = reference_windows(
        events.iter().filter(|e| !e.2).map(|e| e.1.as_str()),
        WINDOW_MS,
    );
    let docs = all_docs(&es, &format!("{topic}-windows")).await;
    let diff = window_diff(&docs, &reference);
    assert!(
        diff.is_empty(),
        "{} of {} windows differ, first: {:?}\n{log}",
        diff.len(),
        reference.len(),
        &diff[..diff.len().min(5)]
    );
    assert_eq!(
        count(&es, &format!("{topic}-windows")).await,
        reference.len() as u64,
        "one document per window"
    );

    // Declared keyed by host, the same topics are refused loudly.
    let keyed = file(
        "keyed.toml",
        2,
        "bounded = true\nkeyed_by = [\"host\"]\ngroup_id = \"keyed\"",
    );
    let text = std::fs::read_to_string(&keyed).unwrap();
    // Its own checkpoints, group and index: a fresh start over the topic;
    // no workers (a keyed job refuses them).
    let cp_keyed = dir.path().join("cp-keyed");
    let text = text
        .replacen("workers = 2\n", "", 1)
        .replace(&cp.display().to_string(), &cp_keyed.display().to_string())
        .replacen(&format!("group_id = \"{topic}\"\n"), "", 1)
        .replace("-windows\"", "-keyed\"");
    let dead = dir.path().join("keyed-dead.ndjson");
    let text = format!(
        "{text}[dead_letter]\ntype = \"file\"\npath = \"{}\"\n",
        dead.display()
    );
    std::fs::write(&keyed, text).unwrap();
    let mut child = spawn_job(&keyed, 3);
    let st = wait_exit(&mut child, &keyed, 3, Duration::from_secs(120)).await;
    let log = job_log(&keyed, 3);
    assert!(st.success(), "{st}\n{log}");
    // Every record has a null key: none is counted (with one partition per
    // process no process could see a key split), each is a dead letter
    // with the reason, once.
    let letters: Vec<serde_json::Value> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), events.len(), "{log}");
    assert!(
        letters
            .iter()
            .all(|l| l["reason"] == flowline::job::NO_MESSAGE_KEY && l["key"].is_null()),
        "{:?}",
        letters.first()
    );
    let ids: std::collections::BTreeSet<String> =
        letters.iter().map(|l| l["id"].to_string()).collect();
    assert_eq!(ids.len(), letters.len(), "each record once");
    assert_eq!(count(&es, &format!("{topic}-keyed")).await, 0);
}
