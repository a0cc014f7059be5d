//! Records a sink rejects (at write or at flush) go to the dead-letter sink
//! with the sink's reason; the job goes on and everything else is written.

use std::sync::{Arc, Mutex};

use flowline_connector_api::{ConnectorError, Record, Rejected, Sink};
use flowline_connector_testkit::{MemorySink, MemorySource};
use flowline_runtime::{DeadLetterFormat, JobConfig, StreamEnvironment};

/// Buffers writes; at flush, rejects payloads starting with `bad`.
#[derive(Clone, Default)]
struct Picky {
    buffered: Vec<Record>,
    stored: Arc<Mutex<Vec<String>>>,
}

impl Sink for Picky {
    async fn write(&mut self, batch: Vec<Record>) -> Result<(), ConnectorError> {
        self.buffered.extend(batch);
        Ok(())
    }
    async fn flush(&mut self) -> Result<(), ConnectorError> {
        let mut rejected = Vec::new();
        for r in self.buffered.drain(..) {
            let p = String::from_utf8(r.payload.clone()).unwrap();
            if p.starts_with("bad") {
                rejected.push(Rejected::new(
                    r,
                    format!("400 mapper_parsing_exception: {p}"),
                ));
            } else {
                self.stored.lock().unwrap().push(p);
            }
        }
        if rejected.is_empty() {
            Ok(())
        } else {
            Err(ConnectorError::BadRecords(rejected))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_at_flush_are_dead_lettered_and_the_job_completes() {
    let input: Vec<Record> = ["ok1", "bad1", "ok2", "bad2", "ok3"]
        .iter()
        .map(|s| Record::new(*s))
        .collect();
    let picky = Picky::default();
    let dlq = MemorySink::new();
    let env = StreamEnvironment::new(JobConfig::named("rejects"));
    let out = env.add_sink("picky", Box::new(picky.clone()));
    env.dead_letter_sink("dlq", Box::new(dlq.clone()), DeadLetterFormat::Raw);
    env.source("mem", Box::new(MemorySource::new(vec![input])))
        .sink(out);
    let summary = env.execute().await.unwrap();
    assert_eq!(*picky.stored.lock().unwrap(), ["ok1", "ok2", "ok3"]);
    let dead = dlq.records();
    assert_eq!(
        dead.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
        [b"bad1".to_vec(), b"bad2".to_vec()]
    );
    assert_eq!(
        dead[0].header("flowline.error.kind"),
        Some(&b"rejected"[..])
    );
    assert_eq!(dead[0].header("flowline.error.stage"), Some(&b"picky"[..]));
    assert_eq!(
        dead[0].header("flowline.error.reason"),
        Some(&b"400 mapper_parsing_exception: bad1"[..])
    );
    assert_eq!(summary.bad_records, 2);
}
