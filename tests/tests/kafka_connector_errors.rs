//! Dead letters on a Kafka topic carry the documented headers; SASL/SCRAM
//! works and a wrong password is a clear error, not a hang; an unreachable
//! broker is a clear error within a bounded time. A record the topic
//! refuses (too large, a time out of its range) comes back whole, and only
//! that one; a refused window time is a dead letter, not a crash loop.

use std::time::{Duration, Instant};

use flowline::config::JobPlan;
use flowline_connector_api::{
    parse_config, ConnectorError, PartitionId, Record, Sink, SinkFactory,
};
use flowline_integration_tests::{
    create_topic, create_topic_with, earliest_consumer, unique, TestServices,
};
use rdkafka::message::Headers;
use rdkafka::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_land_on_the_dead_letter_topic_with_headers() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let dlq = unique("dlq");
    create_topic(&s.kafka_bootstrap, &dlq, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.ndjson");
    std::fs::write(
        &events,
        "{\"host\":\"h\",\"metric\":\"m\",\"value\":1,\"timestamp\":\"2026-01-01T00:00:00Z\"}\n{\"host\":\"h\",\"metric\":\n{\"host\":\"h\",\"metric\":\"m\",\"value\":\"x\",\"timestamp\":\"2026-01-01T00:00:01Z\"}\n",
    )
    .unwrap();
    let summary = run_to_dead_letter_topic(&events, s, &dlq).await;
    assert_eq!(summary.bad_records, 2);

    let c = earliest_consumer(&s.kafka_bootstrap, &dlq);
    let mut got = Vec::new();
    while got.len() < 2 {
        let m = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .expect("dead letters within 30 s")
            .unwrap();
        let headers: std::collections::BTreeMap<String, String> = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        got.push((
            String::from_utf8_lossy(m.payload().unwrap()).into_owned(),
            headers,
        ));
    }
    assert_eq!(got[0].0, "{\"host\":\"h\",\"metric\":");
    assert_eq!(got[0].1["flowline.error.kind"], "bad_record");
    assert_eq!(got[0].1["flowline.error.stage"], "decode");
    assert_eq!(got[0].1["flowline.source.offset"], "1");
    assert!(got[0].1["flowline.source.partition"].ends_with("events.ndjson"));
    assert!(
        got[0].1["flowline.error.reason"].contains("invalid metric event"),
        "{:?}",
        got[0].1
    );
    assert!(
        got[1].1["flowline.error.reason"].contains("`value` = \"x\" is not a finite number"),
        "{:?}",
        got[1].1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_too_large_for_their_topic_arrive_cut_down_with_a_marker() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let dlq = unique("dlq-big");
    create_topic(&s.kafka_bootstrap, &dlq, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.ndjson");
    // 30 records of 2 MB that are not metric events (the producer takes
    // 1 MB), between good ones.
    let good =
        "{\"host\":\"h\",\"metric\":\"m\",\"value\":1,\"timestamp\":\"2026-01-01T00:00:00Z\"}\n";
    let mut text = String::new();
    for i in 0..30 {
        text.push_str(good);
        text.push_str(&format!("{i:02}"));
        text.push_str(&"x".repeat(2 << 20));
        text.push('\n');
    }
    std::fs::write(&events, text).unwrap();
    let summary = run_to_dead_letter_topic(&events, s, &dlq).await;
    assert_eq!(summary.bad_records, 30);
    let c = earliest_consumer(&s.kafka_bootstrap, &dlq);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 30 {
        let m = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .expect("30 dead letters within 30 s")
            .unwrap();
        let header = |k: &str| header(&m, k);
        let payload = m.payload().unwrap();
        assert_eq!(payload.len(), 16 * 1024);
        assert_eq!(
            header("flowline.payload.truncated").as_deref(),
            Some("2097154")
        );
        assert!(header("flowline.dead_letter.refused")
            .unwrap()
            .contains("MessageSizeTooLarge"));
        assert!(header("flowline.error.reason")
            .unwrap()
            .contains("invalid metric event"));
        assert!(
            seen.insert(String::from_utf8_lossy(&payload[..2]).into_owned()),
            "each once"
        );
    }
}

fn sasl_source(
    bootstrap: &str,
    user: &str,
    password: &str,
    topic: &str,
) -> Result<flowline_kafka::KafkaSource, String> {
    let cfg: flowline_kafka::KafkaSourceConfig = serde_json::from_value(serde_json::json!({
        "bootstrap_servers": bootstrap, "topics": [topic], "group_id": unique("g"), "bounded": true,
        "security_protocol": "sasl_plaintext", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": user, "sasl_password": password, "connect_timeout": "5s"
    }))
    .unwrap();
    flowline_kafka::KafkaSource::new(cfg).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_scram_connects_and_a_wrong_password_fails_clearly() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let (bootstrap, user, password) = s
        .kafka_sasl
        .clone()
        .expect("this test needs the SASL/SCRAM listener of scripts/services (FLOWLINE_KAFKA_SASL_BOOTSTRAP); Docker's Kafka has none. Fix: run scripts/test");
    let topic = unique("sasl");
    create_topic(&s.kafka_bootstrap, &topic, 1).await;
    assert!(sasl_source(&bootstrap, &user, &password, &topic).is_ok());
    let t0 = Instant::now();
    let err = sasl_source(&bootstrap, &user, "wrong-password", &topic).unwrap_err();
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t0.elapsed()
    );
    assert!(
        err.contains("authentication failed") && err.contains("sasl_password"),
        "{err}"
    );
    assert!(
        !err.contains("wrong-password"),
        "the password leaked into the error: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_with_a_wrong_sasl_password_says_authentication_failed() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let (bootstrap, user, password) = s
        .kafka_sasl
        .clone()
        .expect("this test needs the SASL/SCRAM listener of scripts/services (FLOWLINE_KAFKA_SASL_BOOTSTRAP); Docker's Kafka has none. Fix: run scripts/test");
    let topic = unique("sasl-sink");
    create_topic(&s.kafka_bootstrap, &topic, 1).await;
    let sink = |password: &str| {
        let cfg: flowline_kafka::KafkaSinkConfig = serde_json::from_value(serde_json::json!({
            "bootstrap_servers": bootstrap, "topic": topic,
            "security_protocol": "sasl_plaintext", "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": user, "sasl_password": password, "connect_timeout": "5s"
        }))
        .unwrap();
        flowline_kafka::KafkaSink::new(cfg).map_err(|e| e.to_string())
    };
    assert!(sink(&password).is_ok());
    let err = sink("wrong-password").unwrap_err();
    assert!(
        err.contains("authentication failed") && err.contains("sasl_password"),
        "{err}"
    );
    assert!(
        !err.contains("wrong-password"),
        "the password leaked: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_is_a_clear_error_within_a_bounded_time() {
    let cfg: flowline_kafka::KafkaSourceConfig = serde_json::from_value(serde_json::json!({
        "bootstrap_servers": "127.0.0.1:1", "topics": ["t"], "group_id": "g", "connect_timeout": "2s"
    }))
    .unwrap();
    let t0 = Instant::now();
    let err = flowline_kafka::KafkaSource::new(cfg)
        .unwrap_err()
        .to_string();
    assert!(
        t0.elapsed() < Duration::from_secs(6),
        "took {:?}",
        t0.elapsed()
    );
    assert!(
        err.contains("cannot reach Kafka at 127.0.0.1:1 within 2s") && err.contains("Fix"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_topic_refuses_as_too_large_comes_back_whole_and_only_it() {
    let (s, topic, mut sink) =
        sink_to_a_2000_byte_topic(1, serde_json::json!({"linger_ms": 50})).await;
    let big = Record::new(noise(5000, 1))
        .with_key("big")
        .with_timestamp(1_767_225_600_000)
        .with_header("trace", "t-1")
        .at(PartitionId::new("in-3"), 42);
    // Small records on both sides of the big one, in the same write, so
    // they may share its batch.
    let small = |i: usize| Record::new(format!("small-{i}")).with_key(format!("k{i}"));
    let mut batch: Vec<Record> = (0..40).map(small).collect();
    batch.push(big.clone());
    batch.extend((40..80).map(small));
    sink.write(batch)
        .await
        .expect("all accepted by the producer");
    match sink.flush().await {
        Err(ConnectorError::BadRecords(rejected)) => {
            assert_eq!(
                rejected.len(),
                1,
                "only the big record: {:?}",
                rejected.iter().map(|r| &r.reason).collect::<Vec<_>>()
            );
            assert_eq!(rejected[0].record, big, "it comes back whole");
            assert!(
                rejected[0].reason.contains("MessageSizeTooLarge"),
                "{}",
                rejected[0].reason
            );
        }
        other => panic!("expected the big record back, got {other:?}"),
    }
    let c = earliest_consumer(&s.kafka_bootstrap, &topic);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 80 {
        let m = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .unwrap_or_else(|_| panic!("80 small records within 30 s, got {}", seen.len()))
            .unwrap();
        let p = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
        assert!(p.starts_with("small-"), "{p}");
        assert!(seen.insert(p), "each once");
    }
}

/// A Kafka sink to a new topic whose broker refuses a record batch over
/// 2000 bytes; the producer (1 MB) sends such a batch, so the refusal comes
/// in the delivery report. `settings` adds to the sink's.
async fn sink_to_a_2000_byte_topic(
    partitions: i32,
    mut settings: serde_json::Value,
) -> (&'static TestServices, String, flowline_kafka::KafkaSink) {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("small-topic");
    create_topic_with(
        &s.kafka_bootstrap,
        &topic,
        partitions,
        &[("max.message.bytes", "2000")],
    )
    .await;
    settings["bootstrap_servers"] = s.kafka_bootstrap.clone().into();
    settings["topic"] = topic.clone().into();
    let sink = flowline_kafka::KafkaSinkFactory
        .build(parse_config("kafka", settings).unwrap())
        .unwrap();
    (s, topic, sink)
}

/// Runs the metrics job on the file `events` (windows to a file beside
/// it), its dead letters to the Kafka topic `dlq`.
async fn run_to_dead_letter_topic(
    events: &std::path::Path,
    s: &TestServices,
    dlq: &str,
) -> flowline_runtime::JobSummary {
    run_job(&format!(
        "[source]\ntype = \"file\"\npath = \"{}\"\n[sink]\ntype = \"file\"\npath = \"{}\"\n[dead_letter]\ntype = \"kafka\"\nbootstrap_servers = \"{}\"\ntopic = \"{dlq}\"\n",
        events.display(),
        events.with_extension("out.ndjson").display(),
        s.kafka_bootstrap
    ))
    .await
}

/// Runs the metrics job on a file of the `events` (with `max_future` a
/// day), its windows to the Kafka topic `out`, its dead letters to `dlq`.
async fn run_to_topics(
    events: &str,
    s: &TestServices,
    out: &str,
    dlq: &str,
) -> flowline_runtime::JobSummary {
    let dir = tempfile::tempdir().unwrap();
    let events_path = dir.path().join("events.ndjson");
    std::fs::write(&events_path, events).unwrap();
    let events = events_path;
    run_job(&format!(
        "[source]\ntype = \"file\"\npath = \"{}\"\n[window]\nmax_future = \"1d\"\n[sink]\ntype = \"kafka\"\nbootstrap_servers = \"{b}\"\ntopic = \"{out}\"\n[dead_letter]\ntype = \"kafka\"\nbootstrap_servers = \"{b}\"\ntopic = \"{dlq}\"\n",
        events.display(),
        b = s.kafka_bootstrap,
    ))
    .await
}

/// The first message of `topic` (30 s at most).
fn first_message(
    bootstrap: &str,
    topic: &str,
) -> impl std::future::Future<Output = rdkafka::message::OwnedMessage> {
    let c = earliest_consumer(bootstrap, topic);
    async move {
        tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .expect("a message within 30 s")
            .unwrap()
            .detach()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Runs the job `toml` to its end; it must not fail.
async fn run_job(toml: &str) -> flowline_runtime::JobSummary {
    let plan = JobPlan::parse(toml).unwrap();
    flowline::build::build_job(&plan, &flowline::registry())
        .unwrap()
        .execute()
        .await
        .expect("the job lives on")
}

/// The value of header `k` of `m`, as text.
fn header(m: &impl Message, k: &str) -> Option<String> {
    m.headers()
        .and_then(|h| h.iter().find(|h| h.key == k))
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// `n` bytes that do not compress (the sink compresses batches).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (x >> 56) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_record_is_too_large_for_the_topic_each_comes_back_once() {
    let (_, _, mut sink) = sink_to_a_2000_byte_topic(2, serde_json::json!({})).await;
    let n = 3000;
    let batch: Vec<Record> = (0..n)
        .map(|i| Record::new(noise(3000, i)).with_key(format!("k{i}")))
        .collect();
    sink.write(batch.clone())
        .await
        .expect("all accepted by the producer");
    let Err(ConnectorError::BadRecords(rejected)) = sink.flush().await else {
        panic!("every record comes back")
    };
    let mut back: Vec<Record> = rejected.into_iter().map(|r| r.record).collect();
    back.sort_by(|a, b| a.key.cmp(&b.key));
    let mut want = batch;
    want.sort_by(|a, b| a.key.cmp(&b.key));
    assert!(
        back == want,
        "each record once, unchanged: {} of {n} back",
        back.len()
    );
    sink.flush().await.expect("nothing left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_whose_time_the_broker_refuses_is_a_dead_letter_not_a_crash_loop() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let (out, dlq) = (unique("out-times"), unique("dlq-times"));
    create_topic(&s.kafka_bootstrap, &out, 1).await;
    create_topic(&s.kafka_bootstrap, &dlq, 1).await;
    // max_future lets an event 3 hours ahead in; its window starts about
    // then, and Kafka 4 refuses a record more than 1 hour ahead of its
    // clock. So does the dead-letter topic, for the same time.
    let now = now_ms();
    let ahead = flowline_connector_api::time::format_rfc3339_ms(now + 3 * 3_600_000);
    let summary = run_to_topics(
        &format!(
        "{{\"host\":\"h\",\"metric\":\"m\",\"value\":1,\"timestamp\":\"2026-01-01T00:00:00Z\"}}\n\
         {{\"host\":\"h\",\"metric\":\"m\",\"value\":2,\"timestamp\":\"{ahead}\"}}\n"
    ),
        s,
        &out,
        &dlq,
    )
    .await;
    assert_eq!(summary.bad_records, 1, "the refused window");
    let m = first_message(&s.kafka_bootstrap, &out).await;
    assert!(String::from_utf8_lossy(m.payload().unwrap()).contains("2026-01-01T00:00:00"));
    let m = first_message(&s.kafka_bootstrap, &dlq).await;
    let header = |k: &str| header(&m, k);
    let payload = String::from_utf8_lossy(m.payload().unwrap()).into_owned();
    assert!(payload.contains("\"sum\":2"), "the window whole: {payload}");
    let reason = header("flowline.error.reason").unwrap();
    assert!(reason.contains("InvalidTimestamp"), "{reason}");
    let kept: i64 = header("flowline.record.timestamp")
        .unwrap()
        .parse()
        .unwrap();
    assert!(kept > now + 2 * 3_600_000, "the window's time kept: {kept}");
    assert!(header("flowline.dead_letter.refused")
        .unwrap()
        .contains("InvalidTimestamp"));
    assert_eq!(header("flowline.payload.truncated"), None, "not cut down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_dead_letters_reach_a_compacted_topic_keyed_by_their_id() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    // A compacted topic refuses a record without a key (InvalidRecord),
    // and the dead letters of a file source have none.
    let dlq = unique("dlq-compact");
    create_topic_with(
        &s.kafka_bootstrap,
        &dlq,
        1,
        &[("cleanup.policy", "compact")],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.ndjson");
    std::fs::write(&events, "not json\n{\"host\":\"h\"}\n").unwrap();
    let summary = run_to_dead_letter_topic(&events, s, &dlq).await;
    assert_eq!(summary.bad_records, 2);
    let c = earliest_consumer(&s.kafka_bootstrap, &dlq);
    let mut got = std::collections::BTreeMap::new();
    while got.len() < 2 {
        let m = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .expect("2 dead letters within 30 s")
            .unwrap();
        assert_eq!(
            m.key().map(<[u8]>::to_vec),
            header(&m, "flowline.dead_letter.id").map(String::into_bytes),
            "keyed by its id"
        );
        assert!(header(&m, "flowline.dead_letter.refused")
            .unwrap()
            .contains("no key"));
        got.insert(
            String::from_utf8_lossy(m.payload().unwrap()).into_owned(),
            header(&m, "flowline.payload.truncated"),
        );
    }
    let whole: Vec<_> = got.iter().map(|(p, t)| (p.as_str(), t.is_none())).collect();
    assert_eq!(
        whole,
        [("not json", true), ("{\"host\":\"h\"}", true)],
        "whole, not cut down"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_past_its_topics_retention_is_a_dead_letter_kept_with_its_time() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let (out, dlq) = (unique("out-retention"), unique("dlq-retention"));
    // Both keep 7 days by record time; the old window's time is months back.
    let week = [("retention.ms", "604800000")];
    create_topic_with(&s.kafka_bootstrap, &out, 1, &week).await;
    create_topic_with(&s.kafka_bootstrap, &dlq, 1, &week).await;
    let now = now_ms();
    let fresh = flowline_connector_api::time::format_rfc3339_ms(now - 60_000);
    let summary = run_to_topics(
        &format!(
        "{{\"host\":\"h\",\"metric\":\"old\",\"value\":1,\"timestamp\":\"2026-01-01T00:00:00Z\"}}\n\
         {{\"host\":\"h\",\"metric\":\"new\",\"value\":2,\"timestamp\":\"{fresh}\"}}\n"
    ),
        s,
        &out,
        &dlq,
    )
    .await;
    assert_eq!(summary.bad_records, 1, "the old window");
    let m = first_message(&s.kafka_bootstrap, &out).await;
    let payload = String::from_utf8_lossy(m.payload().unwrap()).into_owned();
    assert!(
        payload.contains("\"metric\":\"new\""),
        "only the new window: {payload}"
    );
    let m = first_message(&s.kafka_bootstrap, &dlq).await;
    let payload = String::from_utf8_lossy(m.payload().unwrap()).into_owned();
    assert!(payload.contains("\"metric\":\"old\""), "{payload}");
    let reason = header(&m, "flowline.error.reason").unwrap();
    assert!(reason.contains("retention.ms"), "{reason}");
    // Its own topic refused it for the same reason: written again stamped
    // by the broker, its time kept in a header.
    assert_eq!(
        header(&m, "flowline.record.timestamp").as_deref(),
        Some("1767225600000")
    );
    assert!(
        m.timestamp().to_millis().unwrap() >= now,
        "{:?}",
        m.timestamp()
    );
}
