//! A Kafka record whose header name is not UTF-8 (a producer other than
//! Java can write one; here kcat does) is one bad record, dead-lettered
//! with the reason and its payload, and the job goes on. The Rust client
//! panics reading such a name: uncaught, that ended the consumer thread and
//! left the job idle for ever, neither failing nor reading.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use flowline::config::JobPlan;
use flowline_integration_tests::{create_topic, unique, TestServices};

/// Produces `payload` to `topic` with kcat, with the raw header `header`
/// (`name=value` bytes) when given.
fn kcat(bootstrap: &str, topic: &str, payload: &str, header: Option<&[u8]>) {
    let mut cmd = std::process::Command::new("kcat");
    cmd.args(["-b", bootstrap, "-P", "-t", topic]);
    if let Some(h) = header {
        cmd.arg("-H").arg(std::ffi::OsStr::from_bytes(h));
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("kcat: {e}. Fix: scripts/install-deps --for-tests"));
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{payload}").unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success(), "kcat failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_name_that_is_not_utf8_is_one_dead_letter_and_the_job_goes_on() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("bad-header");
    create_topic(&s.kafka_bootstrap, &topic, 1).await;
    let event = |v: u32, sec: u32| {
        format!(r#"{{"host":"h","metric":"m","value":{v},"timestamp":"2026-01-01T00:00:0{sec}Z"}}"#)
    };
    kcat(&s.kafka_bootstrap, &topic, &event(1, 1), None);
    kcat(
        &s.kafka_bootstrap,
        &topic,
        &event(2, 2),
        Some(b"\xff\xfetrace=abc"),
    );
    kcat(&s.kafka_bootstrap, &topic, &event(4, 3), Some(b"trace=def"));
    let dir = tempfile::tempdir().unwrap();
    let (out, dead) = (
        dir.path().join("out.ndjson"),
        dir.path().join("dead.ndjson"),
    );
    let plan = JobPlan::parse(&format!(
        "[source]\ntype = \"kafka\"\nbootstrap_servers = \"{}\"\ntopics = [\"{topic}\"]\ngroup_id = \"{}\"\nbounded = true\n[sink]\ntype = \"file\"\npath = \"{}\"\n[dead_letter]\ntype = \"file\"\npath = \"{}\"\n",
        s.kafka_bootstrap,
        unique("g"),
        out.display(),
        dead.display()
    ))
    .unwrap();
    let job = flowline::build::build_job(&plan, &flowline::registry()).unwrap();
    let summary = tokio::time::timeout(Duration::from_secs(120), job.execute())
        .await
        .expect("the job ends instead of idling")
        .expect("the job lives on");
    assert_eq!(summary.bad_records, 1);
    let dead = std::fs::read_to_string(&dead).unwrap();
    assert_eq!(dead.lines().count(), 1, "{dead}");
    assert!(dead.contains("header name is not UTF-8"), "{dead}");
    assert!(dead.contains(r#"\"value\":2"#), "the payload kept: {dead}");
    // The window holds the two other events, headers and all.
    let out = std::fs::read_to_string(&out).unwrap();
    let doc: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(doc["count"], 2, "{out}");
    assert_eq!(doc["sum"], 5.0, "{out}");
}
