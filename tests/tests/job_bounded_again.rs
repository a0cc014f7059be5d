//! A bounded job run again as more events arrive (a nightly batch over a
//! topic, each run going on from the checkpoint of the one before). Each
//! run fires the windows still open at its end; the next run's events must
//! still count in them. The end-of-input checkpoint used to be taken after
//! that firing, with the watermark at the end of time, so every event of
//! every later run was late: 100 of 100 in a trial, and their windows were
//! never written. Three runs over a topic cut mid-window must give the
//! windows of a plain group-by of all the events, each once, nothing late.

use std::time::Duration;

use flowline::config::JobPlan;
use flowline_integration_tests::job::{
    assert_file_windows, kafka_job_head, lines, produce_lines, reference_windows,
};
use flowline_integration_tests::{create_topic, unique, TestServices};
use flowline_metric_generator::GeneratorConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_bounded_runs_over_a_growing_topic_equal_one_group_by() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("bounded-again");
    create_topic(&s.kafka_bootstrap, &topic, 2).await;
    let events = lines(GeneratorConfig {
        hosts: 3,
        seed: 41,
        count: Some(9_000),
        max_out_of_order_ms: 1_000,
        ..GeneratorConfig::default()
    });
    let reference = reference_windows(events.iter().map(|e| e.1.as_str()), 10_000);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("windows.ndjson");
    let config = format!(
        "{head}bounded = true\n[sink]\ntype = \"file\"\npath = \"{}\"\n[window]\nsize = \"10s\"\nout_of_orderness = \"2s\"\n[checkpoint]\ndir = \"{}\"\ninterval = \"1h\"\n",
        out.display(),
        dir.path().join("cp").display(),
        head = kafka_job_head(&topic, &s.kafka_bootstrap),
    );
    // Cuts that are no multiple of a window's events: each run ends inside
    // open windows.
    let cuts = [0, 2_917, 6_101, events.len()];
    for run in 0..3 {
        produce_lines(
            &s.kafka_bootstrap,
            &topic,
            &events[cuts[run]..cuts[run + 1]],
        )
        .await;
        let plan = JobPlan::parse(&config).unwrap();
        let job = flowline::build::build_job(&plan, &flowline::registry()).unwrap();
        let summary = tokio::time::timeout(Duration::from_secs(120), job.execute())
            .await
            .expect("the bounded run ends")
            .expect("the run succeeds");
        assert_eq!(
            summary.records_in,
            (cuts[run + 1] - cuts[run]) as u64,
            "run {run}: {summary:?}"
        );
        assert_eq!(summary.late_records, 0, "run {run}: {summary:?}");
    }

    assert_file_windows(&out, &reference);
}
