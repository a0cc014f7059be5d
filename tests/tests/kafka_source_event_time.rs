//! The Kafka source's `timestamp_field` against a real broker: RFC 3339
//! times with an offset and epoch milliseconds give exact event times; a
//! record whose field is missing or unreadable comes back from `next` as a
//! refused record with a reason naming the field (the runtime dead-letters
//! it), never with a guessed time.

use flowline_connector_api::{ConnectorError, SourceEvent};
use flowline_integration_tests::{create_topic, produce, unique, TestServices};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_exact_and_unreadable_times_are_refused_with_the_reason() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("event-time");
    create_topic(&s.kafka_bootstrap, &topic, 1).await;
    let payloads = [
        r#"{"t":1767225601250}"#,
        r#"{"t":"2026-01-01T05:30:02.500+05:30"}"#,
        r#"{"other":1}"#,
        r#"{"t":"2026-01-01 00:00:03"}"#,
        r#"{"t":"2026-01-01T00:00:04Z"}"#,
    ];
    produce(
        &s.kafka_bootstrap,
        &topic,
        payloads
            .iter()
            .map(|p| ("k".to_string(), p.to_string(), None)),
    )
    .await;
    let mut source = flowline::registry()
        .build_source(
            "kafka",
            serde_json::json!({
                "bootstrap_servers": s.kafka_bootstrap,
                "topics": [topic],
                "group_id": unique("g"),
                "bounded": true,
                "timestamp_field": "t",
            }),
        )
        .unwrap();
    let (mut times, mut refused) = (Vec::new(), Vec::new());
    let t0 = std::time::Instant::now();
    loop {
        assert!(t0.elapsed().as_secs() < 60, "no end after 60 s");
        match source.next_dyn().await {
            Ok(SourceEvent::Records(b)) => times.extend(b.iter().map(|r| (r.offset, r.timestamp))),
            Ok(SourceEvent::End) => break,
            Ok(_) => {}
            Err(ConnectorError::BadRecords(r)) => {
                refused.extend(r.into_iter().map(|r| (r.record.offset, r.reason)))
            }
            Err(e) => panic!("{e}"),
        }
    }
    let base = 1_767_225_600_000;
    assert_eq!(
        times,
        [
            (0, Some(base + 1_250)),
            (1, Some(base + 2_500)),
            (4, Some(base + 4_000))
        ]
    );
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[0].0, 2);
    assert!(
        refused[0].1.contains("`t`") && refused[0].1.contains("no such field"),
        "{}",
        refused[0].1
    );
    assert_eq!(refused[1].0, 3);
    assert!(
        refused[1].1.contains("`t`") && refused[1].1.contains("RFC 3339"),
        "{}",
        refused[1].1
    );
}
