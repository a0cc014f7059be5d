//! Scale-out: two `flowline run` processes in one consumer group share a
//! 4-partition topic, with their checkpoints in a compacted Kafka topic. A
//! second process joins mid-run (partitions and their state move to it),
//! then the first is killed with SIGKILL (its partitions move back, state
//! restored from the shared store). The indexed windows are exact.

use std::process::Child;
use std::time::{Duration, Instant};

use flowline_integration_tests::job::{
    get_json, get_text, http_addr, job_log, kafka_job_head, lines, reference_windows, sigterm,
    spawn_job, wait_docs, window_diff,
};
use flowline_integration_tests::{create_topic, produce, unique, TestServices};
use flowline_metric_generator::{format_rfc3339_ms, GeneratorConfig};

const WINDOW_MS: i64 = 30_000;

/// Active partitions and the last checkpoint id of a process, from
/// `/api/status`.
async fn status(addr: &str) -> Option<(usize, u64)> {
    let v = get_json(addr, "/api/status").await?;
    let active = v["partitions"]
        .as_array()?
        .iter()
        .filter(|p| p["active"] == true)
        .count();
    let cp = v["last_checkpoint"][0].as_u64().unwrap_or(0);
    Some((active, cp))
}

async fn wait_for(
    what: &str,
    port: &str,
    child: &mut Child,
    config: &std::path::Path,
    n: usize,
    ok: impl Fn(usize, u64) -> bool,
) {
    let t0 = Instant::now();
    loop {
        if let Some((a, c)) = status(port).await {
            if ok(a, c) {
                return;
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "process {n} exited while waiting for {what}:\n{}",
            job_log(config, n)
        );
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "timed out waiting for {what}; status {:?}\n{}",
            status(port).await,
            job_log(config, n)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_partitions_and_survive_one_being_killed() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let es = s.elasticsearch().unwrap();
    let topic = unique("scale");
    create_topic(&s.kafka_bootstrap, &topic, 4).await;
    let events = lines(GeneratorConfig {
        hosts: 8,
        seed: 5,
        count: Some(80_000),
        max_out_of_order_ms: 1_500,
        ..GeneratorConfig::default()
    });
    let last_ts = GeneratorConfig::default().start_ms + (80_000 / 40) * 1_000;
    // One event per host an hour after the rest: it moves every partition's
    // watermark past the last real window (its own window never fires).
    let flush: Vec<(String, String, Option<i64>)> = (0..8)
        .map(|h| {
            let host = format!("host-{h:04}");
            let line = format!(
                r#"{{"host":"{host}","metric":"cpu_util","value":0,"timestamp":"{}"}}"#,
                format_rfc3339_ms(last_ts + 3_600_000)
            );
            (host, line, None)
        })
        .collect();
    let as_records = |sl: &[(String, String, bool)]| {
        sl.iter()
            .map(|(h, l, _)| (h.clone(), l.clone(), None))
            .collect::<Vec<_>>()
    };
    let (p1, rest) = events.split_at(events.len() / 3);
    let (p2, p3) = rest.split_at(rest.len() / 2);
    produce(&s.kafka_bootstrap, &topic, as_records(p1)).await;

    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                r#"{head}poll_timeout = "100ms"
keyed_by = ["host"]
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
interval = "500ms"
[checkpoint.kafka]
bootstrap_servers = "{k}"
topic = "{topic}-checkpoints"
[http]
listen = "127.0.0.1:0"
"#,
                // Two instances on one host: each its own static member id.
                head = kafka_job_head(&topic, &s.kafka_bootstrap).replacen(
                    "[source]",
                    &format!("instance_id = \"{name}\"\n[source]"),
                    1
                ),
                k = s.kafka_bootstrap,
                e = s.elasticsearch_url,
            ),
        )
        .unwrap();
        path
    };
    let (cfg_a, cfg_b) = (write("a.toml"), write("b.toml"));

    let mut a = spawn_job(&cfg_a, 0);
    let port_a = &http_addr(&mut a, &cfg_a, 0).await;
    wait_for(
        "A to own 4 partitions and checkpoint",
        port_a,
        &mut a,
        &cfg_a,
        0,
        |n, c| n == 4 && c > 0,
    )
    .await;
    let mut b = spawn_job(&cfg_b, 0);
    let port_b = &http_addr(&mut b, &cfg_b, 0).await;
    wait_for("B to take partitions", port_b, &mut b, &cfg_b, 0, |n, c| {
        n > 0 && c > 0
    })
    .await;
    wait_for(
        "A to give partitions up",
        port_a,
        &mut a,
        &cfg_a,
        0,
        |n, _| n < 4,
    )
    .await;
    produce(&s.kafka_bootstrap, &topic, as_records(p2)).await;
    let (_, cp_b) = status(port_b).await.unwrap();
    wait_for(
        "B to checkpoint after the second batch",
        port_b,
        &mut b,
        &cfg_b,
        0,
        |_, c| c > cp_b + 1,
    )
    .await;

    a.kill().unwrap();
    a.wait().unwrap();
    produce(&s.kafka_bootstrap, &topic, as_records(p3)).await;
    produce(&s.kafka_bootstrap, &topic, flush).await;
    wait_for(
        "B to own all 4 partitions",
        port_b,
        &mut b,
        &cfg_b,
        0,
        |n, _| n == 4,
    )
    .await;

    let reference = reference_windows(events.iter().map(|e| e.1.as_str()), WINDOW_MS);
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
        "{} differences, first: {:?}\nA:\n{}\nB:\n{}",
        diff.len(),
        &diff[..diff.len().min(5)],
        job_log(&cfg_a, 0),
        job_log(&cfg_b, 0)
    );
    // Everything read: the lag metric shows 0 for each of the 4 partitions.
    let lag_lines = |m: &str| {
        m.lines()
            .filter(|l| l.starts_with("flowline_consumer_lag{"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let t0 = Instant::now();
    loop {
        let m = get_text(port_b, "/metrics").await.unwrap_or_default();
        let l = lag_lines(&m);
        if l.len() == 4 && l.iter().all(|x| x.ends_with(" 0")) {
            assert!(
                l.iter()
                    .all(|x| x.contains(&format!("partition=\"{topic}/"))),
                "{l:?}"
            );
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "lag metric: {l:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sigterm(&mut b, &cfg_b, 0, Duration::from_secs(60)).await;
    println!("{} windows exact across a join and a SIGKILL", docs.len());
}
