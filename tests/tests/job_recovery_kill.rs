//! Exactly-once effect through crashes: the job process is killed with
//! SIGKILL at random moments three times and restarted each time; the
//! indexed windows and anomalies then equal those of an uninterrupted run,
//! with one document per window.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use flowline_integration_tests::job::{
    all_docs, anomaly_ids_in_process, checkpoint_ids, job_log, kafka_job_head, lines,
    produce_lines, reference_windows, spawn_job, wait_exit, window_diff,
};
use flowline_integration_tests::{count, create_topic, unique, TestServices};
use flowline_metric_generator::GeneratorConfig;

const WINDOW_MS: i64 = 30_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sigkills_leave_the_indexed_results_exact() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let topic = unique("kill");
    create_topic(&s.kafka_bootstrap, &topic, 3).await;
    let events = lines(GeneratorConfig {
        hosts: 8,
        seed: 11,
        count: Some(150_000),
        max_out_of_order_ms: 1_500,
        anomaly_rate: 0.0005,
        ..GeneratorConfig::default()
    });
    produce_lines(&s.kafka_bootstrap, &topic, &events).await;
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("cp");
    let config = dir.path().join("job.toml");
    std::fs::write(
        &config,
        format!(
            r#"{head}bounded = true
[sink]
type = "elasticsearch"
url = "{e}"
index = "{topic}-windows"
max_actions = 500
[anomalies]
type = "elasticsearch"
url = "{e}"
index = "{topic}-anomalies"
[window]
size = "30s"
out_of_orderness = "2s"
[checkpoint]
dir = "{cp}"
interval = "300ms"
"#,
            head = kafka_job_head(&topic, &s.kafka_bootstrap),
            e = s.elasticsearch_url,
            cp = cp.display()
        ),
    )
    .unwrap();

    // A seeded stream of extra delays, so the kills land at varied moments.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next_delay = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        Duration::from_millis(seed % 400)
    };
    let mut docs_at_kill = Vec::new();
    for run in 0..3 {
        let before = checkpoint_ids(&cp).last().copied().unwrap_or(0);
        let mut child = spawn_job(&config, run);
        // Kill once this run has completed a checkpoint of its own, plus a
        // random delay: mid-batch, mid-flush or mid-checkpoint.
        let t0 = Instant::now();
        while checkpoint_ids(&cp).last().copied().unwrap_or(0) <= before {
            assert!(
                child.try_wait().unwrap().is_none(),
                "run {run} ended before its first checkpoint:\n{}",
                job_log(&config, run)
            );
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "no checkpoint in run {run}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(next_delay()).await;
        child.kill().unwrap();
        let st = child.wait().unwrap();
        assert_eq!(
            st.signal(),
            Some(9),
            "run {run} was not running when killed ({st}):\n{}",
            job_log(&config, run)
        );
        docs_at_kill.push(count(&es, &format!("{topic}-windows")).await);
    }
    let mut child = spawn_job(&config, 3);
    let st = wait_exit(&mut child, &config, 3, Duration::from_secs(300)).await;
    assert!(
        st.success(),
        "final run failed ({st}):\n{}",
        job_log(&config, 3)
    );
    assert!(
        job_log(&config, 3).contains("restoring from checkpoint"),
        "the final run restored"
    );

    let reference = reference_windows(events.iter().map(|e| e.1.as_str()), WINDOW_MS);
    let docs = all_docs(&es, &format!("{topic}-windows")).await;
    let diff = window_diff(&docs, &reference);
    let logs: String = (0..4)
        .map(|n| {
            let l = job_log(&config, n);
            let tail: Vec<&str> = l.lines().rev().take(15).collect();
            format!(
                "--- run {n} ---\n{}\n",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect();
    assert!(
        diff.is_empty(),
        "{} differences, first: {:?}\n{logs}",
        diff.len(),
        &diff[..diff.len().min(5)]
    );
    assert_eq!(
        count(&es, &format!("{topic}-windows")).await,
        reference.len() as u64
    );
    let anomalies = all_docs(&es, &format!("{topic}-anomalies")).await;
    let got: std::collections::BTreeSet<String> = anomalies.keys().cloned().collect();
    assert_eq!(got, anomaly_ids_in_process(&events, WINDOW_MS));
    println!(
        "killed at {docs_at_kill:?} window documents; final {} windows (reference {}), {} anomalies: exact",
        docs.len(),
        reference.len(),
        got.len()
    );
}
