//! Checkpoints lost or damaged, against real Kafka and the real search
//! server: the results still equal a plain group-by of the input.
//!
//! - Checkpoints deleted, consumer group kept: the group's committed
//!   offsets belong to the lost state, so the job starts from the
//!   configured position (with a warning), not from those offsets with
//!   empty state (which wrote a fraction of the windows, silently).
//! - A byte flipped in the newest checkpoint before each of eight restarts
//!   (seeded positions): every restart falls back to an older good
//!   checkpoint with a warning, never runs on the corrupt state.

use std::time::Duration;

use flowline_integration_tests::job::{
    all_docs, checkpoint_ids, http_addr, job_log, kafka_job_head, lines, produce_lines,
    reference_windows, sigterm, spawn_job, strip_ansi, wait_exit, wait_progress, window_diff,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_flipped_in_the_newest_checkpoint_falls_back_to_an_older_good_one() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let topic = unique("fault-cp-flip");
    create_topic(&s.kafka_bootstrap, &topic, 2).await;
    let events = lines(GeneratorConfig {
        hosts: 6,
        seed: 12,
        count: Some(16_000),
        max_out_of_order_ms: 1_500,
        ..GeneratorConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("cp");
    let index = format!("{topic}-windows");
    let streaming = dir.path().join("streaming.toml");
    std::fs::write(
        &streaming,
        job_file(&topic, &index, &cp, s).replace(
            "bounded = true",
            "bounded = false\n[http]\nlisten = \"127.0.0.1:0\"",
        ),
    )
    .unwrap();
    // [http] must not end up inside [source]: move it to the end.
    let text = std::fs::read_to_string(&streaming).unwrap();
    let text = text.replace("[http]\nlisten = \"127.0.0.1:0\"\n", "")
        + "[http]\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(&streaming, text).unwrap();
    let final_run = dir.path().join("final.toml");
    std::fs::write(&final_run, job_file(&topic, &index, &cp, s)).unwrap();

    const RESTARTS: usize = 8;
    let part = events.len() / RESTARTS;
    let mut seed = 0x5EED_u64;
    for run in 0..RESTARTS {
        let end = if run + 1 == RESTARTS {
            events.len()
        } else {
            (run + 1) * part
        };
        produce_lines(&s.kafka_bootstrap, &topic, &events[run * part..end]).await;
        let mut child = spawn_job(&streaming, run);
        let addr = http_addr(&mut child, &streaming, run).await;
        wait_progress(
            &format!("run {run}: its part read and checkpointed"),
            &addr,
            &mut child,
            &streaming,
            run,
            Duration::from_secs(120),
            |p| p.records_in >= 1 && p.checkpoint > 0,
        )
        .await;
        sigterm(&mut child, &streaming, run, Duration::from_secs(120)).await;
        if run > 0 {
            let log = strip_ansi(&job_log(&streaming, run));
            assert!(
                log.contains("restoring from an older one"),
                "run {run} fell back from the corrupt checkpoint:\n{log}"
            );
        }
        // Flip one byte of the newest checkpoint at a seeded position.
        let newest = *checkpoint_ids(&cp).last().expect("a checkpoint");
        let path = std::fs::read_dir(&cp)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("chk-")?.strip_suffix(".bin")?.parse().ok())
                    == Some(newest)
            })
            .expect("the newest checkpoint file");
        let mut bytes = std::fs::read(&path).unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let at = (seed % bytes.len() as u64) as usize;
        bytes[at] ^= 1 << (seed % 8);
        std::fs::write(&path, bytes).unwrap();
    }
    let mut child = spawn_job(&final_run, RESTARTS);
    let st = wait_exit(&mut child, &final_run, RESTARTS, Duration::from_secs(180)).await;
    assert!(
        st.success(),
        "final: {st}\n{}",
        job_log(&final_run, RESTARTS)
    );
    assert!(strip_ansi(&job_log(&final_run, RESTARTS)).contains("restoring from an older one"));
    let reference = reference_windows(events.iter().map(|e| e.1.as_str()), WINDOW_MS);
    let docs = all_docs(&es, &index).await;
    let diff = window_diff(&docs, &reference);
    assert!(
        diff.is_empty(),
        "{} of {} windows differ, first: {:?}",
        diff.len(),
        reference.len(),
        &diff[..diff.len().min(3)]
    );
}
