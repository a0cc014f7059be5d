//! The metrics job end to end, as a process: seeded events (with poison
//! records) → Kafka → `flowline run` (bounded) → the search server. The
//! window documents equal a reference computed here from the events; every
//! poison record is on the dead-letter topic with its reason; the current
//! status holds each key's last window; the anomalies equal those of the
//! same pipeline run in-process.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use flowline_integration_tests::job::{
    all_docs, anomaly_ids_in_process, job_log, kafka_job_head, lines, produce_lines,
    reference_windows, spawn_job, wait_exit, window_diff,
};
use flowline_integration_tests::{create_topic, earliest_consumer, unique, TestServices};
use flowline_metric_generator::GeneratorConfig;
use rdkafka::message::Headers;
use rdkafka::Message;

const WINDOW_MS: i64 = 30_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_anomalies_current_status_and_dead_letters_are_exact() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let topic = unique("metrics");
    let dlq = format!("{topic}-dlq");
    create_topic(&s.kafka_bootstrap, &topic, 3).await;
    create_topic(&s.kafka_bootstrap, &dlq, 1).await;
    let events = lines(GeneratorConfig {
        hosts: 8,
        seed: 7,
        count: Some(60_000),
        max_out_of_order_ms: 1_500,
        anomaly_rate: 0.0005,
        poison_fraction: 0.01,
        ..GeneratorConfig::default()
    });
    let poisoned: BTreeSet<&str> = events
        .iter()
        .filter(|e| e.2)
        .map(|e| e.1.as_str())
        .collect();
    let poison_count = events.iter().filter(|e| e.2).count();
    assert!(poison_count > 100);
    produce_lines(&s.kafka_bootstrap, &topic, &events).await;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("job.toml");
    std::fs::write(
        &config,
        format!(
            r#"{head}bounded = true
[sink]
type = "elasticsearch"
url = "{e}"
index = "{topic}-windows-%Y.%m"
[anomalies]
type = "elasticsearch"
url = "{e}"
index = "{topic}-anomalies"
time_field = "window_start"
[current]
type = "elasticsearch"
url = "{e}"
index = "{topic}-current"
[dead_letter]
type = "kafka"
bootstrap_servers = "{k}"
topic = "{dlq}"
[window]
size = "30s"
out_of_orderness = "2s"
[checkpoint]
dir = "{cp}"
interval = "1s"
"#,
            head = kafka_job_head(&topic, &s.kafka_bootstrap),
            k = s.kafka_bootstrap,
            e = s.elasticsearch_url,
            cp = dir.path().join("cp").display()
        ),
    )
    .unwrap();
    let t0 = Instant::now();
    let mut child = spawn_job(&config, 0);
    let status = wait_exit(&mut child, &config, 0, Duration::from_secs(240)).await;
    assert!(
        status.success(),
        "job failed ({status}):\n{}",
        job_log(&config, 0)
    );
    println!(
        "bounded job over {} events took {:?}",
        events.len(),
        t0.elapsed()
    );

    // Windows: equal to the reference, no duplicates, nothing more.
    let reference = reference_windows(
        events.iter().filter(|e| !e.2).map(|e| e.1.as_str()),
        WINDOW_MS,
    );
    let docs = all_docs(&es, &format!("{topic}-windows-*")).await;
    let diff = window_diff(&docs, &reference);
    assert!(
        diff.is_empty(),
        "{} differences, first: {:?}\njob log:\n{}",
        diff.len(),
        &diff[..diff.len().min(5)],
        job_log(&config, 0)
    );

    // Current status: one per key, at the key's last window.
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for id in reference.keys() {
        let mut it = id.rsplitn(2, '|');
        let (start, key) = (it.next().unwrap(), it.next().unwrap());
        let e = last.entry(key.to_string()).or_default();
        if start > e.as_str() {
            *e = start.to_string();
        }
    }
    let current = all_docs(&es, &format!("{topic}-current")).await;
    assert_eq!(current.len(), last.len());
    for (key, start) in &last {
        let d = &current[key];
        assert_eq!(
            d["window_start"].as_str(),
            Some(start.as_str()),
            "{key}: {d}"
        );
        assert!(
            ["ok", "warming_up", "suspect", "anomalous"].contains(&d["status"].as_str().unwrap())
        );
    }

    // Anomalies: the same as the pipeline gives in-process.
    let expected = anomaly_ids_in_process(&events, WINDOW_MS);
    let anomalies = all_docs(&es, &format!("{topic}-anomalies")).await;
    let got: BTreeSet<String> = anomalies.keys().cloned().collect();
    assert!(!expected.is_empty(), "the seeded run has anomalies");
    assert_eq!(got, expected);
    assert!(anomalies.values().all(|d| d["explanation"]
        .as_str()
        .is_some_and(|x| x.contains("standard deviations"))));

    // Dead letters: every poison record, with its reason and position.
    let c = earliest_consumer(&s.kafka_bootstrap, &dlq);
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < poison_count {
        assert!(
            Instant::now() < deadline,
            "{} of {poison_count} dead letters",
            seen.len()
        );
        let m = tokio::time::timeout(Duration::from_secs(5), c.recv()).await;
        let Ok(m) = m else { continue };
        let m = m.unwrap();
        let h: BTreeMap<String, String> = m
            .headers()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h.key.to_string(),
                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                )
            })
            .collect();
        assert!(
            h["flowline.error.reason"].contains("invalid metric event"),
            "{h:?}"
        );
        assert!(h["flowline.source.partition"].starts_with(&topic), "{h:?}");
        assert!(h.contains_key("flowline.source.offset"), "{h:?}");
        let payload = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
        assert!(
            poisoned.contains(payload.as_str()),
            "not a poison record: {payload}"
        );
        assert!(
            seen.insert((
                h["flowline.source.partition"].clone(),
                h["flowline.source.offset"].clone()
            )),
            "dead letter twice"
        );
    }
    println!(
        "{} windows, {} keys, {} anomalies, {} dead letters: all exact",
        docs.len(),
        current.len(),
        got.len(),
        seen.len()
    );
}
