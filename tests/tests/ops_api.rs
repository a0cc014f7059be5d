//! The operations API of a `flowline run` job reading real Kafka: every
//! `/api/v1` answer is valid against the OpenAPI document the job serves
//! (JSON Schema, `additionalProperties: false`), and its figures match the
//! input: records read, dead letters by reason (against the poisoned lines
//! the test produced), partitions, checkpoints, windows. `/metrics` keeps
//! Prometheus' naming rules. `flowline top` shows the operators and
//! partitions; `flowline tap` prints records passing the source that the
//! test produced after it started.

use std::process::{Command, Stdio};
use std::time::Duration;

use flowline_integration_tests::job::{
    bin, get_json, get_text, http_addr, job_log, kafka_job_head, lines, produce_lines, spawn_job,
};
use flowline_integration_tests::{create_topic, poll, unique, TestServices};
use flowline_metric_generator::GeneratorConfig;
use serde_json::Value;

fn validate(doc: &Value, schema_name: &str, answer: &Value) {
    let schema = &doc["components"]["schemas"][schema_name];
    assert!(schema.is_object(), "no schema {schema_name}");
    let v = jsonschema::validator_for(schema).unwrap_or_else(|e| panic!("{schema_name}: {e}"));
    let errors: Vec<String> = v
        .iter_errors(answer)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{schema_name}: {errors:?}\n{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_matches_the_openapi_document_and_the_input() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("ops");
    create_topic(&s.kafka_bootstrap, &topic, 2).await;
    let events = lines(GeneratorConfig {
        hosts: 6,
        seed: 5,
        count: Some(6_000),
        poison_fraction: 0.01,
        ..GeneratorConfig::default()
    });
    let poisoned = events.iter().filter(|(_, _, p)| *p).count() as u64;
    assert!(poisoned > 10, "the input has poisoned lines: {poisoned}");
    produce_lines(&s.kafka_bootstrap, &topic, &events).await;

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("job.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}[sink]\ntype = \"file\"\npath = \"{out}\"\n[dead_letter]\ntype = \"file\"\npath = \"{dead}\"\n[window]\nsize = \"10s\"\n[checkpoint]\ndir = \"{cp}\"\ninterval = \"1s\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            kafka_job_head(&topic, &s.kafka_bootstrap),
            out = dir.path().join("windows.ndjson").display(),
            dead = dir.path().join("dead.ndjson").display(),
            cp = dir.path().join("cp").display(),
        ),
    )
    .unwrap();
    let mut child = spawn_job(&cfg, 0);
    let addr = http_addr(&mut child, &cfg, 0).await;
    let total = events.len() as u64;
    let read = poll(Duration::from_secs(60), || async {
        let j = get_json(&addr, "/api/v1/job").await?;
        (j["records_in"].as_u64() == Some(total)).then_some(j)
    })
    .await;
    assert!(
        read.is_some(),
        "not all {total} records read:\n{}",
        job_log(&cfg, 0)
    );
    // A checkpoint after everything was read, and two rate samples.
    let cps = poll(Duration::from_secs(30), || async {
        let c = get_json(&addr, "/api/v1/checkpoints").await?;
        let list = c["checkpoints"].as_array()?;
        (list.len() >= 2).then_some(c)
    })
    .await
    .expect("checkpoints are listed");

    let doc = get_json(&addr, "/api/v1/openapi.json")
        .await
        .expect("openapi.json");
    for (path, schema) in [
        ("/api/v1/job", "Job"),
        ("/api/v1/graph", "Graph"),
        ("/api/v1/partitions", "Partitions"),
        ("/api/v1/checkpoints", "Checkpoints"),
        ("/api/v1/dead-letters", "DeadLetters"),
        ("/api/v1/windows", "Windows"),
        ("/api/v1/windows?key=host-0001&metric=cpu_util", "Windows"),
        ("/api/v1/keys?prefix=host-000&limit=5", "Keys"),
    ] {
        let answer = get_json(&addr, path)
            .await
            .unwrap_or_else(|| panic!("{path}"));
        validate(&doc, schema, &answer);
    }
    // Every route in the document answers, and the document lists them all.
    assert_eq!(
        doc["paths"].as_object().unwrap().len(),
        flowline::api::ROUTES.len() + 1
    );

    // The figures against the input.
    let job = get_json(&addr, "/api/v1/job").await.unwrap();
    assert_eq!(job["state"], "running", "{job}");
    assert_eq!(job["health"]["healthy"], true, "{job}");
    assert_eq!(job["config"]["source"]["type"], "kafka");
    let graph = get_json(&addr, "/api/v1/graph").await.unwrap();
    let node = |name: &str| {
        graph["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("no node {name}: {graph}"))
            .clone()
    };
    assert_eq!(node("kafka")["records_in"], total, "{graph}");
    assert_eq!(node("try_map(decode)")["records_in"], total, "{graph}");
    let decoded = node("timestamps")["records_in"].as_u64().unwrap();
    assert_eq!(
        decoded,
        total - poisoned,
        "every poisoned line, and only those, refused by decode"
    );
    assert_eq!(node("try_map(decode)")["records_out"], decoded, "{graph}");
    assert_eq!(node("kafka")["records_out"], total, "{graph}");
    let dead = get_json(&addr, "/api/v1/dead-letters").await.unwrap();
    let counted: u64 = dead["counts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["stage"] == "decode")
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, poisoned, "{dead}");
    assert_eq!(dead["bad_records"], poisoned, "{dead}");
    let last = dead["last"].as_array().unwrap();
    assert_eq!(last.len(), 20, "{dead}");
    assert!(
        last.iter()
            .all(|l| l["partition"].as_str().unwrap().starts_with(&topic) && l["offset"].is_u64()),
        "{dead}"
    );
    let parts = get_json(&addr, "/api/v1/partitions").await.unwrap();
    let parts = parts["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{parts:?}");
    let offsets: u64 = parts
        .iter()
        .map(|p| p["next_offset"].as_u64().unwrap())
        .sum();
    assert_eq!(offsets, total);
    assert!(
        cps["store"]["store"]
            .as_str()
            .unwrap()
            .starts_with("directory "),
        "{cps}"
    );
    let windows = get_json(&addr, "/api/v1/windows?key=host-0001&metric=cpu_util")
        .await
        .unwrap();
    let series = windows["series"]["points"].as_array().unwrap();
    assert!(!series.is_empty(), "{windows}");
    assert!(series
        .iter()
        .all(|p| p["key"] == "host-0001" && p["metric"] == "cpu_util"));

    let metrics = get_text(&addr, "/metrics").await.unwrap();
    assert_eq!(
        flowline_runtime::lint_prometheus(&metrics),
        Vec::<String>::new(),
        "{metrics}"
    );
    assert!(
        metrics.contains("flowline_checkpoint_duration_seconds_count "),
        "{metrics}"
    );
    assert_eq!(get_text(&addr, "/health").await.as_deref(), Some("ok\n"));

    // `flowline top`: two screens.
    let url = format!("http://{addr}");
    let top = Command::new(bin("flowline"))
        .args([
            "top",
            "--url",
            &url,
            "--iterations",
            "2",
            "--interval",
            "200ms",
        ])
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&top.stdout);
    assert!(
        top.status.success(),
        "{screen}{}",
        String::from_utf8_lossy(&top.stderr)
    );
    for want in [
        "running",
        "try_map(decode)",
        "window_aggregate",
        "PARTITION",
        &format!("{topic}/0"),
        "CHECKPOINTS",
    ] {
        assert_eq!(
            screen.matches(want).count(),
            2,
            "{want} in each screen:\n{screen}"
        );
    }

    // `flowline tap` on the source: records produced after it started.
    let tap = Command::new(bin("flowline"))
        .args(["tap", "--url", &url, "--stage", "source", "--limit", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let more: Vec<(String, String, bool)> = (0..50)
        .map(|i| {
            let line = format!(r#"{{"host":"tap-{i}","metric":"m","value":{i},"timestamp":"2026-01-01T00:00:00Z"}}"#);
            ("tap".to_string(), line, false)
        })
        .collect();
    // The tap may ask a moment after it started: produce until it ends.
    let tapped = tokio::task::spawn_blocking(move || tap.wait_with_output());
    let produced = async {
        for _ in 0..40 {
            produce_lines(&s.kafka_bootstrap, &topic, &more).await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let out = tokio::select! {
        out = tapped => out.unwrap().unwrap(),
        _ = produced => panic!("flowline tap printed no 3 records in 10 s"),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "{text}");
    for r in &rows {
        assert_eq!(r["stage"], "source");
        assert!(
            r["payload"].as_str().unwrap().contains("\"host\":\"tap-"),
            "{r}"
        );
        assert!(r["partition"].as_str().unwrap().starts_with(&topic), "{r}");
    }
    let bad = Command::new(bin("flowline"))
        .args(["tap", "--url", &url, "--stage", "nope"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{e}");
    assert!(
        e.contains("no stage `nope`") && e.contains("source, "),
        "{e}"
    );

    child.kill().ok();
    let _ = child.wait();
}
