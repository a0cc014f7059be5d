//! A topic written by a transactional producer (Kafka Streams, Flink's
//! exactly-once sink and many services write this way) has offsets without
//! a record: each transaction ends in a commit or abort marker, and the
//! records of an aborted transaction are not read (`read_committed`, the
//! default). A bounded job over such a topic waited for ever for the
//! marker's offset, the end offset it saw at start; it now ends, with the
//! windows of the committed records only, and a second run from its
//! checkpoint ends at once without reading anything again. The same wait
//! made a restore fail when a dead-letter topic (read back from the
//! checkpoint's end offsets so that no dead letter is written twice) last
//! held another producer's transaction.

use std::time::Duration;

use flowline_integration_tests::job::{
    assert_file_windows, kafka_job_head, reference_windows, run_to_end,
};
use flowline_integration_tests::{create_topic, unique, TestServices};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const T: Duration = Duration::from_secs(30);

fn event(i: usize) -> String {
    // In time order within each partition (i increases), so none is late.
    format!(
        r#"{{"host":"h{}","metric":"m","value":{},"timestamp":"2026-01-01T00:00:{:02}.{:03}Z"}}"#,
        i % 5,
        i as f64 * 0.25 - 20.0,
        i / 10,
        (i % 10) * 100
    )
}

/// Writes six transactions of 40 events over both partitions, every other
/// one aborted (after its records reached the log), then one aborted
/// transaction on partition 1 alone: partition 0 ends in a commit marker,
/// partition 1 in aborted records and an abort marker. Returns the
/// committed events.
fn produce_transactions(bootstrap: &str, topic: &str) -> Vec<String> {
    let producer = transactional(bootstrap);
    let mut committed = Vec::new();
    let mut i = 0;
    for txn in 0..7 {
        producer.begin_transaction().expect("begin");
        let (n, parts): (usize, &[i32]) = if txn == 6 { (10, &[1]) } else { (40, &[0, 1]) };
        let commit = txn % 2 == 0 && txn != 6;
        for k in 0..n {
            let payload = event(i);
            let p = parts[k % parts.len()];
            producer
                .send(
                    BaseRecord::<(), _>::to(topic)
                        .partition(p)
                        .payload(&payload),
                )
                .expect("send");
            if commit {
                committed.push(payload);
            }
            i += 1;
        }
        producer.flush(T).expect("flush");
        if commit {
            producer.commit_transaction(T).expect("commit");
        } else {
            producer.abort_transaction(T).expect("abort");
        }
    }
    committed
}

fn transactional(bootstrap: &str) -> BaseProducer {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", unique("tx"))
        .create()
        .expect("producer");
    producer.init_transactions(T).expect("init_transactions");
    producer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_job_over_transactions_ends_with_the_committed_records_only() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let topic = unique("txn");
    create_topic(&s.kafka_bootstrap, &topic, 2).await;
    let committed = produce_transactions(&s.kafka_bootstrap, &topic);
    assert_eq!(committed.len(), 120);

    let dir = tempfile::tempdir().unwrap();
    let (out, dead, cp) = (
        dir.path().join("out.ndjson"),
        dir.path().join("dead.ndjson"),
        dir.path().join("cp"),
    );
    let config = format!(
        "{head}bounded = true\n[sink]\ntype = \"file\"\npath = \"{}\"\n[dead_letter]\ntype = \"file\"\npath = \"{}\"\n[window]\nsize = \"10s\"\n[checkpoint]\ndir = \"{}\"\ninterval = \"1h\"\n",
        out.display(),
        dead.display(),
        cp.display(),
        head = kafka_job_head(&topic, &s.kafka_bootstrap),
    );
    let run = || {
        run_to_end(
            &config,
            Duration::from_secs(60),
            "the bounded job ends instead of waiting for a marker's offset",
        )
    };

    let first = run().await;
    assert_eq!(first.records_in, 120, "{first:?}");
    assert_eq!(first.bad_records, 0, "{first:?}");
    let want = reference_windows(committed.iter().map(String::as_str), 10_000);
    // The windows of the committed records, nothing aborted.
    assert_file_windows(&out, &want);

    // From its checkpoint (taken at the end), a second run stands at the
    // markers and ends without reading a record again.
    let second = run().await;
    assert!(second.restored_from.is_some(), "{second:?}");
    assert_eq!(second.records_in, 0, "{second:?}");
    assert_file_windows(&out, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_reads_back_a_dead_letter_topic_that_ends_in_another_producers_transaction() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let dlq = unique("dlq-txn");
    create_topic(&s.kafka_bootstrap, &dlq, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.ndjson");
    std::fs::write(&events, format!("{}\n{{\"host\":\n", event(1))).unwrap();
    let config = format!(
        "[source]\ntype = \"file\"\npath = \"{}\"\n[sink]\ntype = \"file\"\npath = \"{}\"\n[dead_letter]\ntype = \"kafka\"\nbootstrap_servers = \"{}\"\ntopic = \"{dlq}\"\nconnect_timeout = \"5s\"\n[checkpoint]\ndir = \"{}\"\ninterval = \"1h\"\n",
        events.display(),
        dir.path().join("out.ndjson").display(),
        s.kafka_bootstrap,
        dir.path().join("cp").display(),
    );
    // The read-back gives up after 6 × connect_timeout: 30 s.
    let run = || {
        run_to_end(
            &config,
            Duration::from_secs(25),
            "the restore reads the dead-letter topic to its end and goes on",
        )
    };
    let first = run().await;
    assert_eq!(first.bad_records, 1, "{first:?}");

    // Another service writes to the shared topic in a transaction: its
    // commit marker is the topic's last offset.
    let other = transactional(&s.kafka_bootstrap);
    other.begin_transaction().unwrap();
    other
        .send(BaseRecord::<(), _>::to(&dlq).payload("another service's letter"))
        .unwrap();
    other.commit_transaction(T).unwrap();

    let second = run().await;
    assert!(second.restored_from.is_some(), "{second:?}");
    assert_eq!(second.records_in, 0, "{second:?}");
}
