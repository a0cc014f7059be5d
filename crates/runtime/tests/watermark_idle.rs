//! The job watermark is the minimum over partitions that are not idle: a
//! partition silent for longer than the idle timeout stops holding it back.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::*;
use flowline_connector_api::{
    ConnectorError, PartitionId, Record, Source, SourceEvent, SourcePosition,
};
use flowline_connector_testkit::MemorySink;
use flowline_runtime::{JobConfig, StreamEnvironment, Tumbling};

/// Partition `slow` sends one record at t=1000; partition `fast` sends one
/// record per call, 1 s of event time apart, forever.
struct TwoPartitions {
    n: u64,
}

impl Source for TwoPartitions {
    async fn next(&mut self) -> Result<SourceEvent, ConnectorError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let n = self.n;
        self.n += 1;
        let mut batch = vec![rec("f", 1_000 + n as i64 * 1_000, 1).at(PartitionId::new("fast"), n)];
        if n == 0 {
            batch.push(rec("s", 1_000, 1).at(PartitionId::new("slow"), 0));
        }
        Ok(SourceEvent::Records(batch))
    }
    async fn seek(&mut self, _: &SourcePosition) -> Result<(), ConnectorError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_partition_leaves_the_job_watermark() {
    let env =
        StreamEnvironment::new(JobConfig::named("idle").idle_timeout(Duration::from_millis(300)));
    let out = MemorySink::new();
    let sink = env.add_sink("out", Box::new(out.clone()));
    env.source("two", Box::new(TwoPartitions { n: 0 }))
        .try_map("decode", |r: &Record| decode(r))
        .with_timestamps(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key.clone())
        .window(Tumbling::of(Duration::from_secs(1)))
        .aggregate(SumCount)
        .sink_with(sink, line);
    let handle = env.start().unwrap();
    let m = handle.metrics();
    // The slow partition's watermark is 999; once it is idle, the job
    // watermark follows the fast partition past it.
    let mut passed = false;
    for _ in 0..400 {
        if m.watermark.load(Relaxed) > 5_000 {
            passed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    handle.stop();
    let summary = handle.join().await.unwrap();
    assert!(
        passed,
        "job watermark stuck at {} with the slow partition idle",
        m.watermark.load(Relaxed)
    );
    assert!(summary.records_in > 5);
    // The fast partition's windows fired on its own watermark meanwhile.
    assert!(
        out.payloads()
            .iter()
            .any(|l| l.starts_with("f 1000 2000 1 1")),
        "{:?}",
        out.payloads()
    );
}

/// With `with_timestamps` in the pipeline, its times drive the watermark:
/// the source records' own times (for Kafka, when the record was produced)
/// are ignored, so events from long ago are not all late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assigned_timestamps_replace_the_source_record_times() {
    let env = StreamEnvironment::new(JobConfig::named("assigned"));
    let out = MemorySink::new();
    let sink = env.add_sink("out", Box::new(out.clone()));
    // Payload times 1000..5000; record times a year later.
    let batch: Vec<Record> = (0..5)
        .map(|i| {
            let mut r = rec("k", 1_000 + i * 1_000, 1).at(PartitionId::new("0"), i as u64);
            r.timestamp = Some(31_536_000_000 + i * 1_000);
            r
        })
        .collect();
    env.source(
        "mem",
        Box::new(flowline_connector_testkit::MemorySource::new(vec![batch])),
    )
    .try_map("decode", |r: &Record| decode(r))
    .with_timestamps(|e: &Ev| e.ts)
    .key_by(|e: &Ev| e.key.clone())
    .window(Tumbling::of(Duration::from_secs(1)))
    .aggregate(SumCount)
    .sink_with(sink, line);
    let summary = env.execute().await.unwrap();
    assert_eq!(summary.late_records, 0);
    assert_eq!(out.payloads().len(), 5, "{:?}", out.payloads());
}
