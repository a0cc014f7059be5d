//! Records a source refuses (`ConnectorError::BadRecords` from `next`) go
//! to the dead-letter output once, with the source's reason and stage
//! `source`; the job goes on, and the checkpointed offset moves past them.

use flowline_connector_api::{
    ConnectorError, PartitionId, Record, Rejected, Source, SourceEvent, SourcePosition,
};
use flowline_connector_testkit::MemorySink;
use flowline_runtime::{
    CheckpointStore, DeadLetterFormat, JobConfig, LocalDirStore, StreamEnvironment,
};

/// One partition: `ok0`, then a record it cannot read (refused with a
/// reason), then `ok2`, then the end.
struct Refusing {
    step: u64,
}

impl Source for Refusing {
    async fn next(&mut self) -> Result<SourceEvent, ConnectorError> {
        let p = PartitionId::new("p0");
        let step = self.step;
        self.step += 1;
        match step {
            0 => Ok(SourceEvent::Records(vec![Record::new("ok0").at(p, 0)])),
            1 => Err(ConnectorError::BadRecords(vec![Rejected::new(
                Record::new(vec![0xff, 0xfe]).at(p, 1),
                "payload is not UTF-8 at byte 0",
            )])),
            2 => Ok(SourceEvent::Records(vec![Record::new("ok2").at(p, 2)])),
            _ => Ok(SourceEvent::End),
        }
    }

    async fn seek(&mut self, _: &SourcePosition) -> Result<(), ConnectorError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_at_the_source_are_dead_lettered_once_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = MemorySink::new();
    let dlq = MemorySink::new();
    let env = StreamEnvironment::new(JobConfig::named("source-rejects"));
    env.checkpoint_store(LocalDirStore::new(dir.path()).unwrap());
    let sink = env.add_sink("out", Box::new(out.clone()));
    env.dead_letter_sink("dlq", Box::new(dlq.clone()), DeadLetterFormat::Raw);
    env.source("refusing", Box::new(Refusing { step: 0 }))
        .try_map("decode", |r: &Record| String::from_utf8(r.payload.clone()))
        .map(Record::new)
        .sink(sink);
    let summary = env.execute().await.unwrap();

    assert_eq!(out.payloads(), ["ok0", "ok2"]);
    let dead = dlq.records();
    assert_eq!(dead.len(), 1, "dead-lettered once");
    assert_eq!(dead[0].payload, [0xff, 0xfe]);
    assert_eq!(
        dead[0].header("flowline.error.reason"),
        Some(&b"payload is not UTF-8 at byte 0"[..]),
        "the source's reason, not a decode error"
    );
    assert_eq!(dead[0].header("flowline.error.stage"), Some(&b"source"[..]));
    assert_eq!(dead[0].header("flowline.source.offset"), Some(&b"1"[..]));
    assert_eq!(summary.bad_records, 1);
    assert_eq!(summary.records_in, 3);

    let cp = LocalDirStore::new(dir.path())
        .unwrap()
        .latest()
        .unwrap()
        .expect("a final checkpoint");
    assert_eq!(cp.partitions[&PartitionId::new("p0")].next_offset, 3);
}
