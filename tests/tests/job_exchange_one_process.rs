//! A job that keys through the exchange keeps its state by key group in one
//! process, so a second process joining its consumer group must not read
//! part of the topic: each would aggregate part of every key's events and
//! write its partial windows under the same ids (a trial found exactly
//! that: 2 processes, 2352 windows, most of them with a fraction of their
//! count, no error anywhere).
//!
//! Here a second process (its own instance id and checkpoint directory, as
//! on another host) joins the group of a running exchange job over a
//! null-keyed topic. The first stops with an error naming the fix, before
//! reading any partition of the new assignment; every window indexed up to
//! then equals a group-by of the events. Once the first process's session
//! has expired, the second holds every partition and the windows equal the
//! group-by.

use std::time::Duration;

use flowline_integration_tests::job::{
    all_docs, http_addr, job_log, kafka_job_head, lines, reference_windows, sigterm, spawn_job,
    wait_docs, wait_exit, wait_progress, window_diff,
};
use flowline_integration_tests::{create_topic, produce_messages, unique, Message, TestServices};
use flowline_metric_generator::{format_rfc3339_ms, GeneratorConfig};

const WINDOW_MS: i64 = 30_000;
const PARTITIONS: i32 = 4;

fn round_robin(events: &[(String, String, bool)]) -> Vec<Message> {
    events
        .iter()
        .enumerate()
        .map(|(i, (_, line, _))| Message {
            key: None,
            payload: line.clone(),
            timestamp: None,
            partition: Some(i as i32 % PARTITIONS),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_in_the_group_stops_the_first_loudly_and_nothing_partial_is_written() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let topic = unique("oneprocess");
    create_topic(&s.kafka_bootstrap, &topic, PARTITIONS).await;
    let events = lines(GeneratorConfig {
        hosts: 8,
        seed: 31,
        count: Some(40_000),
        max_out_of_order_ms: 1_500,
        ..GeneratorConfig::default()
    });
    let last_ts = GeneratorConfig::default().start_ms + (40_000 / 40) * 1_000;
    let half = events.len() / 2;
    produce_messages(&s.kafka_bootstrap, &topic, round_robin(&events[..half])).await;

    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                r#"{head}poll_timeout = "100ms"
[source.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[sink]
type = "elasticsearch"
url = "{e}"
index = "{topic}-windows"
[window]
size = "30s"
out_of_orderness = "2s"
[checkpoint]
dir = "{cp}"
interval = "500ms"
[http]
listen = "127.0.0.1:0"
"#,
                // As on two hosts: each its own member id and checkpoints.
                head = kafka_job_head(&topic, &s.kafka_bootstrap).replacen(
                    "[source]",
                    &format!("instance_id = \"{name}\"\n[source]"),
                    1
                ),
                e = s.elasticsearch_url,
                cp = dir.path().join(format!("cp-{name}")).display(),
            ),
        )
        .unwrap();
        path
    };
    let (cfg_a, cfg_b) = (write("a"), write("b"));

    let mut a = spawn_job(&cfg_a, 0);
    let addr_a = http_addr(&mut a, &cfg_a, 0).await;
    wait_progress(
        "A to read the first half and checkpoint",
        &addr_a,
        &mut a,
        &cfg_a,
        0,
        Duration::from_secs(90),
        |p| p.records_in >= half as u64 && p.checkpoint > 0,
    )
    .await;
    let mut b = spawn_job(&cfg_b, 0);
    let st = wait_exit(&mut a, &cfg_a, 0, Duration::from_secs(60)).await;
    let log_a = job_log(&cfg_a, 0);
    assert!(!st.success(), "A went on sharing its topic:\n{log_a}");
    assert!(
        log_a.contains("another member of consumer group")
            && log_a.contains("keyed_by")
            && log_a.contains("workers"),
        "A's error names the cause and the fix:\n{log_a}"
    );

    // The independent computation: a group-by of every event.
    let reference = reference_windows(events.iter().map(|e| e.1.as_str()), WINDOW_MS);
    let docs = all_docs(&es, &format!("{topic}-windows")).await;
    assert!(!docs.is_empty(), "A wrote no window:\n{log_a}");
    let partial: Vec<String> = window_diff(&docs, &reference)
        .into_iter()
        .filter(|d| !d.starts_with("missing "))
        .collect();
    assert!(
        partial.is_empty(),
        "windows written before the error differ from the group-by: {:?}\n{log_a}",
        &partial[..partial.len().min(5)]
    );

    // The second half, and one event per host an hour later so that every
    // window before it fires (their own windows never do).
    produce_messages(&s.kafka_bootstrap, &topic, round_robin(&events[half..])).await;
    let flush: Vec<Message> = (0..PARTITIONS)
        .flat_map(|p| {
            (0..8).map(move |h| Message {
                key: None,
                payload: format!(
                    r#"{{"host":"host-{h:04}","metric":"cpu_util","value":0,"timestamp":"{}"}}"#,
                    format_rfc3339_ms(last_ts + 3_600_000)
                ),
                timestamp: None,
                partition: Some(p),
            })
        })
        .collect();
    produce_messages(&s.kafka_bootstrap, &topic, flush).await;
    let index = format!("{topic}-windows");
    let docs = wait_docs(
        &es,
        &index,
        reference.len(),
        &mut b,
        &cfg_b,
        0,
        Duration::from_secs(120),
    )
    .await;
    let diff = window_diff(&docs, &reference);
    assert!(
        diff.is_empty(),
        "{} of {} windows differ, first: {:?}\nB:\n{}",
        diff.len(),
        reference.len(),
        &diff[..diff.len().min(5)],
        job_log(&cfg_b, 0)
    );
    sigterm(&mut b, &cfg_b, 0, Duration::from_secs(60)).await;
    println!(
        "A stopped on B's join; {} windows exact, by B alone",
        docs.len()
    );
}
