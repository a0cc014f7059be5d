//! Checkpoints lost or damaged, against real Kafka and the real search
//! server: the results still equal a plain group-by of the input.
//!
//! - Checkpoints deleted, consumer group kept: the group's committed
//!   offsets belong to the lost state, so the job starts from the
//!   configured position (with a warning), not from those offsets with
//!   empty state (which wrote a fraction of the windows, silently).

use std::time::Duration;

use flowline_integration_tests::job::{
    all_docs, job_log, kafka_job_head, lines, produce_lines, reference_windows, spawn_job,
    strip_ansi, wait_exit, window_diff,
};
use flowline_integration_tests::{create_topic, unique, TestServices};
use flowline_metric_generator::GeneratorConfig;

const WINDOW_MS: i64 = 10_000;

fn job_file(topic: &str, index: &str, cp: &std::path::Path, s: &TestServices) -> String {
    format!(
        "{head}bounded = true\n[sink]\ntype = \"elasticsearch\"\nurl = \"{e}\"\nindex = \"{index}\"\nreplicas = 0\n[window]\nsize = \"10s\"\nout_of_orderness = \"2s\"\n[checkpoint]\ndir = \"{cp}\"\ninterval = \"1s\"\n",
        head = kafka_job_head(topic, &s.kafka_bootstrap),
        e = s.elasticsearch_url,
        cp = cp.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_checkpoints_with_the_group_kept_start_from_the_configured_position() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let topic = unique("fault-cp-deleted");
    create_topic(&s.kafka_bootstrap, &topic, 2).await;
    let events = lines(GeneratorConfig {
        hosts: 6,
        seed: 11,
        count: Some(6_000),
        max_out_of_order_ms: 1_500,
        ..GeneratorConfig::default()
    });
    produce_lines(&s.kafka_bootstrap, &topic, &events).await;
    let reference = reference_windows(events.iter().map(|e| e.1.as_str()), WINDOW_MS);

    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("cp");
    for (run, index) in [
        (0, format!("{topic}-first")),
        (1, format!("{topic}-second")),
    ] {
        if run == 1 {
            // The checkpoints are gone; the group and its commits are not.
            std::fs::remove_dir_all(&cp).unwrap();
        }
        let config = dir.path().join("job.toml");
        std::fs::write(&config, job_file(&topic, &index, &cp, s)).unwrap();
        let mut child = spawn_job(&config, run);
        let st = wait_exit(&mut child, &config, run, Duration::from_secs(180)).await;
        assert!(st.success(), "run {run} failed:\n{}", job_log(&config, run));
        let docs = all_docs(&es, &index).await;
        let diff = window_diff(&docs, &reference);
        assert!(
            diff.is_empty(),
            "run {run}: {} of {} windows differ, first: {:?}",
            diff.len(),
            reference.len(),
            &diff[..diff.len().min(3)]
        );
        if run == 1 {
            let log = strip_ansi(&job_log(&config, run));
            assert!(
                log.contains("committed offset is ignored"),
                "the fresh start is announced:\n{log}"
            );
        }
    }
}
