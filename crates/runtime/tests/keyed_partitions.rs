//! Keys and partitions: a record whose key another source partition
//! already holds is a dead letter naming the key and both partitions, and
//! the job goes on; partitioned keys do not interfere.

mod common;

use std::time::Duration;

use common::*;
use flowline_connector_testkit::MemorySink;
use flowline_runtime::{JobConfig, Tumbling};

/// Sums by key in 1 s windows over these partitions, with a dead-letter
/// sink: the summary, the windows and the dead letters.
fn run_with_dead_letters(
    parts: Vec<Vec<flowline_connector_api::Record>>,
    config: JobConfig,
) -> (flowline_runtime::JobSummary, MemorySink, MemorySink) {
    use flowline_connector_testkit::MemorySource;
    use flowline_runtime::{DeadLetterFormat, StreamEnvironment};
    let (out, dlq) = (MemorySink::new(), MemorySink::new());
    let env = StreamEnvironment::new(config);
    let sink = env.add_sink("out", Box::new(out.clone()));
    env.dead_letter_sink("dlq", Box::new(dlq.clone()), DeadLetterFormat::Raw);
    env.source("mem", Box::new(MemorySource::new(parts)))
        .try_map("decode", decode)
        .with_timestamps(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key.clone())
        .window(Tumbling::of(Duration::from_secs(1)))
        .aggregate(SumCount)
        .sink_with(sink, line);
    (run(env), out, dlq)
}

fn setup() -> Setup {
    Setup {
        spec: Tumbling::of(Duration::from_secs(1)),
        ooo: 0,
        lateness: 0,
    }
}

#[test]
fn a_key_on_a_second_partition_is_a_dead_letter_and_the_job_lives_on() {
    // The split record is in the middle of its partition: what comes
    // after it is counted. Before, the job failed here, and again at
    // every restart on the same record.
    let parts = vec![
        vec![rec("a", 10, 1), rec("shared", 20, 1), rec("shared", 40, 1)],
        vec![rec("b", 5, 1), rec("shared", 30, 1), rec("b", 50, 1)],
    ];
    let (summary, out, dlq) =
        run_with_dead_letters(parts, JobConfig::named("split").partitioned_by_key(true));
    assert_eq!(summary.records_in, 6);
    assert_eq!(summary.bad_records, 1, "{summary:?}");
    let (finals, _) = finals(&out.payloads());
    let count = |k: &str| finals.iter().find(|(w, _)| w.0 == k).map(|(_, v)| v.0);
    assert_eq!((count("a"), count("b")), (Some(1), Some(2)));
    // Partitions run on tasks at once: either may claim `shared` first.
    // The other's record of it is the dead letter, counted nowhere.
    let bad = dlq.records();
    assert_eq!(bad.len(), 1);
    let owner = if bad[0].payload == b"shared,30,1" {
        "mem-0"
    } else {
        assert_eq!(bad[0].payload, b"shared,20,1");
        "mem-1"
    };
    let kept = if owner == "mem-0" { 2 } else { 1 };
    assert_eq!(count("shared"), Some(kept), "{finals:?}");
    let reason = String::from_utf8_lossy(bad[0].header("flowline.error.reason").unwrap());
    assert!(
        reason.contains("key \"shared\" was seen on source partition")
            && reason.contains("Fix: partition the input")
            && reason.contains(&format!(
                "The key stays with `{owner}`; this record is not counted"
            )),
        "{reason}"
    );
    // An engine message speaks of keys and partitions, not of one job's
    // data.
    assert!(!reason.contains("host"), "{reason}");
}

/// The state a moved key had on its first partition.
#[derive(Clone, Copy, Debug)]
enum Held {
    /// Its window, with this allowed lateness (ms).
    Window(u64),
    /// A keyed process state, cleared by a timer 500 ms after the event.
    Process,
}

/// `moved` at 100 on mem-0, whose record at 5000 then takes its watermark
/// past the window and its lateness (or the timer), and later on mem-1.
/// With `behind`, mem-1 reads `moved` at 500 as its first record, its
/// watermark behind what mem-0 let go; else it reads 6000 first, and
/// `moved` at 6500 only once the owners' table has been swept past mem-0's
/// state of it (the gate holds mem-1 back). The summary, the outputs and
/// the dead letters.
fn move_after(held: Held, behind: bool) -> (flowline_runtime::JobSummary, Vec<String>, MemorySink) {
    use flowline_connector_testkit::gate::{Gate, Gated};
    use flowline_connector_testkit::MemorySource;
    use flowline_runtime::{DeadLetterFormat, StreamEnvironment};
    let p0 = vec![rec("moved", 100, 1), rec("p0", 5_000, 1)];
    // In batches of one, partitions take turns: mem-0, mem-1, mem-0, …
    let (parts, first, batch) = if behind {
        (
            vec![p0, vec![rec("moved", 500, 1), rec("p1", 9_000, 1)]],
            2,
            2,
        )
    } else {
        let p1 = vec![
            rec("p1", 6_000, 1),
            rec("moved", 6_500, 1),
            rec("p1", 9_000, 1),
        ];
        (vec![p0, p1], 3, 1)
    };
    let gate = Gate::closed_at(first);
    let source = Gated::new(
        MemorySource::new(parts).with_batch_size(batch),
        gate.clone(),
    );
    let (out, dlq) = (MemorySink::new(), MemorySink::new());
    let env = StreamEnvironment::new(JobConfig::named("moved").partitioned_by_key(true));
    let sink = env.add_sink("out", Box::new(out.clone()));
    env.dead_letter_sink("dlq", Box::new(dlq.clone()), DeadLetterFormat::Raw);
    let keyed = env
        .source("mem", Box::new(source))
        .try_map("decode", decode)
        .with_timestamps(|e: &Ev| e.ts)
        .key_by(|e: &Ev| e.key.clone());
    let fired = match held {
        Held::Window(lateness) => {
            keyed
                .window(Tumbling::of(Duration::from_secs(1)))
                .allowed_lateness(Duration::from_millis(lateness))
                .aggregate(SumCount)
                .sink_with(sink, line);
            "moved 0 1000 1 1 false"
        }
        Held::Process => {
            keyed.process(Hold).sink_with(sink, |s: &String| {
                flowline_connector_api::Record::new(s.clone())
            });
            "moved 100"
        }
    };
    let summary = runtime().block_on(async {
        let handle = env.start().unwrap();
        let m = handle.metrics();
        let out_has = |p: &str| out.payloads().iter().any(|o| o == p);
        wait_until("mem-0's output of `moved`", &handle, || out_has(fired)).await;
        let owners = || m.key_owners.load(std::sync::atomic::Ordering::Relaxed);
        // Behind: `moved` (no state left) and `p0` kept, as mem-1 has sent
        // nothing yet and could still take a record of any window. Else
        // `moved` swept, `p0` and `p1` held.
        let what = if behind {
            "the owners counted with `moved` kept"
        } else {
            "a sweep of the owners past `moved`"
        };
        wait_until(what, &handle, || owners() == 2).await;
        gate.open();
        handle.join().await.unwrap()
    });
    (summary, out.payloads(), dlq)
}

/// Holds each event's key until 500 ms after it, then emits `key ts` and
/// lets the key go.
#[derive(Clone)]
struct Hold;
impl flowline_runtime::KeyedProcessFunction for Hold {
    type Key = String;
    type In = Ev;
    type Out = String;
    type State = i64;
    fn process_element(
        &self,
        _: &String,
        e: Ev,
        ctx: &mut flowline_runtime::ProcessContext<'_, i64, String>,
    ) {
        *ctx.state() = e.ts;
        ctx.register_event_time_timer(e.ts + 500);
    }
    fn on_timer(
        &self,
        key: &String,
        _: i64,
        ctx: &mut flowline_runtime::ProcessContext<'_, i64, String>,
    ) {
        let ts = *ctx.state();
        ctx.emit(format!("{key} {ts}"));
        ctx.clear_state();
    }
}

// A topic given more partitions sends a key to another one. Once no state
// of it is left on the first partition, and every partition's watermark is
// past the last time that state could take records, its records on the
// second count: no state of the key is split, and no window of it can be
// written twice. Before, the first partition owned every key it had ever
// seen until it was revoked: the record was a dead letter, and the table
// of owners grew with every key the job saw.

#[test]
fn a_key_may_move_to_another_partition_once_its_window_has_fired() {
    let (summary, out, dlq) = move_after(Held::Window(0), false);
    assert_eq!(summary.records_in, 5);
    assert!(dlq.records().is_empty(), "{:?}", dlq.payloads());
    assert!(
        out.contains(&"moved 6000 7000 1 1 false".to_string()),
        "{out:?}"
    );
}

#[test]
fn a_key_may_move_to_another_partition_once_its_window_is_past_its_lateness() {
    let (_, out, dlq) = move_after(Held::Window(1_000), false);
    assert!(dlq.records().is_empty(), "{:?}", dlq.payloads());
    assert!(
        out.contains(&"moved 6000 7000 1 1 false".to_string()),
        "{out:?}"
    );
}

#[test]
fn a_key_may_move_to_another_partition_once_its_process_state_is_cleared() {
    let (_, out, dlq) = move_after(Held::Process, false);
    assert!(dlq.records().is_empty(), "{:?}", dlq.payloads());
    assert!(out.contains(&"moved 6500".to_string()), "{out:?}");
}

#[test]
fn a_partition_behind_cannot_take_a_key_another_has_fired_the_window_of() {
    // mem-1's watermark is behind the window mem-0 fired: counting its
    // record would fire that window a second time with its part alone,
    // replacing mem-0's under the same id.
    let (_, out, dlq) = move_after(Held::Window(0), true);
    assert_eq!(dlq.payloads(), ["moved,500,1"]);
    let fired: Vec<_> = out
        .iter()
        .filter(|o| o.starts_with("moved 0 1000"))
        .collect();
    assert_eq!(fired, ["moved 0 1000 1 1 false"], "{out:?}");
}

#[test]
fn each_partition_fires_on_its_own_watermark() {
    // Partition 0 runs far ahead; partition 1 stays behind. Windows of
    // partition 0 fire as its own watermark passes them.
    let p0: Vec<_> = (0..50).map(|i| rec("fast", i * 1_000, 1)).collect();
    let p1 = vec![rec("slow", 0, 1)];
    let out = MemorySink::new();
    let summary = run(job(
        vec![p0, p1],
        &setup(),
        &out,
        None,
        JobConfig::named("wm").partitioned_by_key(true),
    ));
    assert_eq!(summary.records_in, 51);
    let (finals, _) = finals(&out.payloads());
    assert_eq!(finals.len(), 51);
    assert!(finals.values().all(|v| *v == (1, 1)));
}

#[test]
fn bad_records_go_to_the_dead_letter_sink_with_their_reason() {
    let (summary, out, dlq) = run_with_dead_letters(
        vec![vec![
            rec("a", 1, 1),
            flowline_connector_api::Record::new("garbage"),
            rec("a", 2, 2),
        ]],
        JobConfig::named("dlq"),
    );
    assert_eq!(summary.bad_records, 1);
    assert_eq!(out.payloads(), vec!["a 0 1000 3 2 false"]);
    let bad = dlq.records();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].payload, b"garbage");
    assert_eq!(
        bad[0].header("flowline.error.reason"),
        Some(&b"expected key,ts,value: garbage"[..])
    );
    assert_eq!(bad[0].header("flowline.error.stage"), Some(&b"decode"[..]));
    assert_eq!(bad[0].header("flowline.source.offset"), Some(&b"1"[..]));
}
