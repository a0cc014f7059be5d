//! `JobConfig::max_state_entries` for keyed process states: a key new to
//! a full operator gets no state; its function's `without_state` answers
//! for it (by default a dead letter with the reason), and a cleared state
//! makes room again.

mod common;

use std::time::Duration;

use common::*;
use flowline_connector_api::Record;
use flowline_connector_testkit::{MemorySink, MemorySource};
use flowline_runtime::*;

/// Counts each key's elements and emits `key count`; a value of 0 clears
/// the key's state.
#[derive(Clone)]
struct Counter {
    /// Answer for a key without state instead of refusing it.
    stateless: bool,
}

impl KeyedProcessFunction for Counter {
    type Key = String;
    type In = Ev;
    type Out = String;
    type State = u64;

    fn process_element(&self, key: &String, e: Ev, ctx: &mut ProcessContext<'_, u64, String>) {
        *ctx.state() += 1;
        let n = *ctx.state();
        ctx.emit(format!("{key} {n}"));
        if e.value == 0 {
            ctx.clear_state();
        }
    }

    fn without_state(&self, key: &String, _e: Ev) -> Option<String> {
        self.stateless.then(|| format!("{key} -"))
    }
}

fn counted(
    input: Vec<Record>,
    f: Counter,
    workers: usize,
) -> (JobSummary, Vec<String>, Vec<Record>) {
    let (out, dlq) = (MemorySink::new(), MemorySink::new());
    // 0 workers: no exchange (`partitioned_by_key`).
    let cfg = JobConfig::named("process-bound")
        .workers(workers.max(1))
        .partitioned_by_key(workers == 0)
        .max_state_entries(Some(2))
        .out_of_orderness(Duration::from_secs(1));
    let env = StreamEnvironment::new(cfg);
    let sink = env.add_sink("out", Box::new(out.clone()));
    env.dead_letter_sink("dlq", Box::new(dlq.clone()), DeadLetterFormat::Raw);
    env.source(
        "mem",
        Box::new(MemorySource::new(vec![input]).with_batch_size(1)),
    )
    .try_map("decode", decode)
    .with_timestamps(|e: &Ev| e.ts)
    .key_by(|e: &Ev| e.key.clone())
    .process(f)
    .sink_with(sink, |s: &String| Record::new(s.clone()));
    let summary = run(env);
    (summary, out.payloads(), dlq.records())
}

fn input() -> Vec<Record> {
    vec![
        rec("a", 1, 1),
        rec("b", 2, 1),
        // Two keys hold state: c gets none.
        rec("c", 3, 1),
        rec("a", 4, 1),
        // b's state is cleared after this one: room for c.
        rec("b", 5, 0),
        rec("c", 6, 1),
        // Full again.
        rec("d", 7, 1),
    ]
}

#[test]
fn a_key_new_to_a_full_process_is_a_dead_letter_by_default() {
    // Behind the exchange, and without it.
    for workers in [1, 0] {
        let (summary, lines, dlq) = counted(input(), Counter { stateless: false }, workers);
        let mut lines = lines;
        lines.sort();
        assert_eq!(
            lines,
            ["a 1", "a 2", "b 1", "b 2", "c 1"],
            "{workers} workers"
        );
        let refused: Vec<&[u8]> = dlq.iter().map(|r| &r.payload[..]).collect();
        assert_eq!(refused, [&b"c,3,1"[..], b"d,7,1"], "{workers} workers");
        assert_eq!(summary.bad_records, 2);
        let why = String::from_utf8_lossy(dlq[0].header("flowline.error.reason").unwrap());
        assert!(
            why.contains("keyed process state is full")
                && why.contains("2 keys hold state (max_state_entries)")
                && why.contains("Fix:"),
            "{why}"
        );
        assert_eq!(dlq[0].header("flowline.error.stage"), Some(&b"process"[..]));
    }
}

#[test]
fn a_function_may_answer_for_a_key_without_state() {
    let (summary, mut lines, dlq) = counted(input(), Counter { stateless: true }, 1);
    lines.sort();
    assert_eq!(lines, ["a 1", "a 2", "b 1", "b 2", "c -", "c 1", "d -"]);
    assert!(dlq.is_empty());
    assert_eq!(summary.bad_records, 0);
}
