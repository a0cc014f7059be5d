//! Exactly-once effect through crashes: the job process is killed with
//! SIGKILL ten times and restarted each time; the indexed windows equal a
//! plain group-by of the input and the anomalies those of an uninterrupted
//! run, with one document per window.
//!
//! The consumer group keeps Kafka's default session timeout (45 s): each
//! restarted process must read again well within it, which only static
//! membership (`group.instance.id`) allows; without it every restart waited
//! for the killed member's session to expire.
//!
//! Each kill lands at a point the test observes on the job's status
//! endpoint (a checkpoint of the run's own, then a seeded number of records
//! read), never after a delay alone; the killed runs stream, so none can
//! end before its kill, however fast the machine.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use flowline_integration_tests::job::{
    all_docs, anomaly_ids_in_process, checkpoint_ids, http_addr, job_log, kafka_job_head, lines,
    produce_lines, reference_windows, spawn_job, wait_exit, wait_progress, window_diff,
};
use flowline_integration_tests::{count, create_topic, earliest_consumer, unique, TestServices};
use flowline_metric_generator::GeneratorConfig;

const WINDOW_MS: i64 = 30_000;
const KILLS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_sigkills_leave_the_indexed_results_exact_and_each_restart_reads_at_once() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let topic = unique("kill");
    create_topic(&s.kafka_bootstrap, &topic, 3).await;
    create_topic(&s.kafka_bootstrap, &format!("{topic}-dlq"), 1).await;
    let events = lines(GeneratorConfig {
        hosts: 8,
        seed: 11,
        count: Some(150_000),
        max_out_of_order_ms: 1_500,
        anomaly_rate: 0.0005,
        poison_fraction: 0.005,
        ..GeneratorConfig::default()
    });
    // Seeded cut points: each killed run gets new input of its own, and the
    // final run the rest.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut below = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    let part = events.len() as u64 / (KILLS as u64 + 1);
    let mut cuts = vec![0usize];
    for r in 1..=KILLS as u64 {
        cuts.push((r * part - part / 4 + below(part / 2)) as usize);
    }
    cuts.push(events.len());

    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("cp");
    let file = |name: &str, tail: &str| {
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
[anomalies]
type = "elasticsearch"
url = "{e}"
index = "{topic}-anomalies"
[dead_letter]
type = "kafka"
bootstrap_servers = "{k}"
topic = "{topic}-dlq"
[window]
size = "30s"
out_of_orderness = "2s"
[checkpoint]
dir = "{cp}"
interval = "300ms"
"#,
                head = kafka_job_head(&topic, &s.kafka_bootstrap),
                e = s.elasticsearch_url,
                k = s.kafka_bootstrap,
                cp = cp.display()
            ),
        )
        .unwrap();
        path
    };
    // The killed runs stream (they never end by themselves, so a kill can
    // never come after the end); the final run reads to the end.
    let config = file(
        "killed.toml",
        "bounded = false\n[http]\nlisten = \"127.0.0.1:0\"",
    );
    let final_config = file("final.toml", "bounded = true");

    let mut docs_at_kill = Vec::new();
    for run in 0..KILLS {
        produce_lines(
            &s.kafka_bootstrap,
            &topic,
            &events[cuts[run]..cuts[run + 1]],
        )
        .await;
        let before = checkpoint_ids(&cp).last().copied().unwrap_or(0);
        let mut child = spawn_job(&config, run);
        let addr = http_addr(&mut child, &config, run).await;
        if run > 0 {
            // The restarted member takes its partitions back at once: it
            // reads within a third of the 45 s session timeout that a new
            // member would wait for.
            wait_progress(
                &format!("run {run}: records read after the restart"),
                &addr,
                &mut child,
                &config,
                run,
                Duration::from_secs(15),
                |p| p.records_in > 0,
            )
            .await;
        }
        // The kill point, observed, never a delay: after a checkpoint of
        // this run's own and a seeded number of records read (at most this
        // run's new input, so it is always reached).
        let fresh = (cuts[run + 1] - cuts[run]) as u64;
        let at = 1 + below(fresh);
        let p = wait_progress(
            &format!("run {run}: a checkpoint after {before} and {at} records read"),
            &addr,
            &mut child,
            &config,
            run,
            Duration::from_secs(120),
            |p| p.checkpoint > before && p.records_in >= at,
        )
        .await;
        child.kill().unwrap();
        let st = child.wait().unwrap();
        assert_eq!(
            st.signal(),
            Some(9),
            "run {run} was not running when killed ({st}):\n{}",
            job_log(&config, run)
        );
        println!(
            "run {run}: killed after {} records (at >= {at}), checkpoint {}",
            p.records_in, p.checkpoint
        );
        docs_at_kill.push(count(&es, &format!("{topic}-windows")).await);
    }
    produce_lines(&s.kafka_bootstrap, &topic, &events[cuts[KILLS]..]).await;
    let mut child = spawn_job(&final_config, KILLS);
    let st = wait_exit(&mut child, &final_config, KILLS, Duration::from_secs(300)).await;
    assert!(
        st.success(),
        "final run failed ({st}):\n{}",
        job_log(&final_config, KILLS)
    );
    assert!(
        job_log(&final_config, KILLS).contains("restoring from checkpoint"),
        "the final run restored"
    );

    let reference = reference_windows(
        events.iter().filter(|e| !e.2).map(|e| e.1.as_str()),
        WINDOW_MS,
    );
    let docs = all_docs(&es, &format!("{topic}-windows")).await;
    let diff = window_diff(&docs, &reference);
    let logs: String = (0..=KILLS)
        .map(|n| {
            let l = job_log(if n < KILLS { &config } else { &final_config }, n);
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
    // Every bad record on the dead-letter topic exactly once: the replays
    // after the kills wrote none twice.
    let mut want: std::collections::BTreeMap<&str, usize> = Default::default();
    for e in events.iter().filter(|e| e.2) {
        *want.entry(e.1.as_str()).or_default() += 1;
    }
    let total: usize = want.values().sum();
    let c = earliest_consumer(&s.kafka_bootstrap, &format!("{topic}-dlq"));
    let mut got: std::collections::BTreeMap<String, usize> = Default::default();
    let mut n = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), c.recv()).await {
            Ok(m) => {
                use rdkafka::Message;
                let m = m.unwrap();
                *got.entry(
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                )
                .or_default() += 1;
                n += 1;
            }
            Err(_) if n >= total => break,
            Err(_) => panic!("{n} of {total} dead letters, none more for 5 s"),
        }
    }
    // (The generator repeats some poison lines: compare counts.)
    let doubled = got
        .iter()
        .filter(|(k, c)| want.get(k.as_str()).is_some_and(|w| w < c))
        .count();
    let notes: Vec<String> = (0..=KILLS)
        .flat_map(|n| {
            let l = job_log(if n < KILLS { &config } else { &final_config }, n);
            l.lines()
                .filter(|l| l.contains("not be written again") || l.contains("restoring"))
                .map(|l| format!("run {n}: {l}"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        doubled,
        0,
        "{doubled} dead letters written more than once\n{}",
        notes.join("\n")
    );
    assert_eq!(n, total, "every bad record once");
    for (k, c) in &want {
        assert_eq!(got.get(*k), Some(c), "{k}");
    }
    println!(
        "{total} dead letters, each once; killed at {docs_at_kill:?} window documents; final {} windows (reference {}), {} anomalies: exact",
        docs.len(),
        reference.len(),
        got.len()
    );
}
