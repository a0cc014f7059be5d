//! A partition given up in a rebalance and assigned back later resumes with
//! the state and offset of one checkpoint, even when checkpoints were taken
//! while it was away (a broker outage past the session timeout does this:
//! the group revokes everything, then assigns it back). Before, the
//! checkpoints taken meanwhile no longer held the partition, so it came back
//! with empty state at the group's committed offset, and its open window was
//! undercounted.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use flowline_connector_api::{
    ConnectorError, PartitionId, Record, Source, SourceEvent, SourcePosition,
};
use flowline_connector_testkit::MemorySink;
use flowline_runtime::*;

enum Step {
    Event(SourceEvent),
    /// Idle until the test opens the gate.
    Wait,
}

/// Plays a script; records every position `seek` is given.
struct Scripted {
    steps: VecDeque<Step>,
    gate: Arc<tokio::sync::Notify>,
    seeks: Arc<Mutex<Vec<SourcePosition>>>,
    waiting: Arc<std::sync::atomic::AtomicBool>,
}

impl Source for Scripted {
    async fn next(&mut self) -> Result<SourceEvent, ConnectorError> {
        match self.steps.pop_front() {
            None => Ok(SourceEvent::End),
            Some(Step::Event(e)) => Ok(e),
            Some(Step::Wait) => {
                self.waiting
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                self.gate.notified().await;
                Ok(SourceEvent::Idle)
            }
        }
    }
    async fn seek(&mut self, position: &SourcePosition) -> Result<(), ConnectorError> {
        self.seeks.lock().unwrap().push(position.clone());
        Ok(())
    }
}

fn at(p: &PartitionId, offset: u64, ts: i64) -> Record {
    rec("a", ts, 1).at(p.clone(), offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_assigned_back_resumes_with_its_state_and_offset() {
    let p = PartitionId::new("t/0");
    let dir = tempfile::tempdir().unwrap();
    let steps = vec![
        Step::Event(SourceEvent::Assigned(vec![p.clone()])),
        Step::Event(SourceEvent::Records(
            (0..5).map(|i| at(&p, i, 100 + i as i64)).collect(),
        )),
        Step::Event(SourceEvent::Revoked(vec![p.clone()])),
        Step::Wait,
        Step::Event(SourceEvent::Assigned(vec![p.clone()])),
        Step::Event(SourceEvent::Records(
            (5..8).map(|i| at(&p, i, 100 + i as i64)).collect(),
        )),
    ];
    let gate = Arc::new(tokio::sync::Notify::new());
    let seeks = Arc::new(Mutex::new(Vec::new()));
    let waiting = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let source = Scripted {
        steps: steps.into(),
        gate: gate.clone(),
        seeks: seeks.clone(),
        waiting: waiting.clone(),
    };
    let out = MemorySink::new();
    let env = job_over(
        Box::new(source),
        &Setup {
            spec: Tumbling::of(Duration::from_secs(10)),
            ooo: 0,
            lateness: 0,
        },
        &out,
        None,
        JobConfig::named("rebalance").checkpoint_interval(None),
    );
    env.checkpoint_store(LocalDirStore::new(dir.path()).unwrap());
    let handle = env.start().unwrap();
    while !waiting.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A checkpoint while the partition is away.
    handle.checkpoint().await.unwrap();
    gate.notify_one();
    handle.join().await.unwrap();

    let seeks = seeks.lock().unwrap().clone();
    assert_eq!(seeks.len(), 2, "{seeks:?}");
    assert_eq!(seeks[1].get(&p), Some(5), "assigned back at its offset");
    // One window with every record: none lost with the state.
    assert_eq!(out.payloads(), vec!["a 0 10000 8 8 false"]);
}
