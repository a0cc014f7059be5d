//! A job with an exchange and one worker runs that worker on the driver's
//! task: one worker is one core, as `workers = 1` says, with no element
//! crossing threads. Its time is the chain's, counted once: on a runtime of
//! one thread the chain cannot have been busy longer than the job ran.

mod common;

use std::time::{Duration, Instant};

use common::*;
use flowline_connector_api::Record;
use flowline_connector_testkit::{MemorySink, MemorySource};
use flowline_runtime::{JobConfig, StreamEnvironment, Tumbling};

#[test]
fn one_worker_runs_on_the_driver_task_and_its_time_counts_once() {
    let records: Vec<Record> = (0..300_000i64)
        .map(|i| Record::new(format!("k{},{},{}", i % 50, i, i % 7)))
        .collect();
    let out = MemorySink::new();
    let config = JobConfig::named("one-worker")
        .workers(1)
        .checkpoint_interval(None)
        .out_of_orderness(Duration::from_millis(10));
    let env = StreamEnvironment::new(config);
    let sink = env.add_sink("out", Box::new(out.clone()));
    env.source("mem", Box::new(MemorySource::new(vec![records])))
        .try_map("decode", decode)
        .with_timestamps(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key.clone())
        .window(Tumbling::of(Duration::from_millis(1_000)))
        .aggregate(SumCount)
        .sink_with(sink, line);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let t0 = Instant::now();
    let handle = rt.block_on(async { env.start() }).expect("starts");
    let metrics = handle.metrics();
    let summary = rt.block_on(handle.join()).expect("job runs");
    let wall = t0.elapsed().as_secs_f64();
    assert_eq!(summary.records_in, 300_000);
    // 300 windows of 50 keys, each once.
    assert_eq!(out.records().len(), 300 * 50);
    let tasks = metrics.ops().tasks();
    let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
    assert!(
        !names.contains(&"worker 0"),
        "one worker runs on the driver's task, not its own: {names:?}"
    );
    let chain = tasks.iter().find(|t| t.name == "chain").expect("chain");
    let busy = chain.busy_seconds.expect("the chain's busy time");
    assert!(
        busy > 0.0 && busy <= wall * 1.05 + 0.02,
        "the chain busy {busy:.3} s in a {wall:.3} s run on one thread: time counted twice"
    );
    // The worker running is not the chain waiting on it.
    let waited = chain.backpressured_seconds.expect("the chain's waits");
    // (About an eighth of the busy time, the sink's turns on the one
    // thread; counted as waiting, the worker's running made it over half.)
    assert!(
        waited < busy / 3.0,
        "the chain waited {waited:.3} s, busy {busy:.3} s: the worker's running counted as waiting"
    );
}
