//! What an operator watches of a running job, beside the counters of
//! `metrics.rs`: the chain's stages and the elements each took in, each
//! task's busy and backpressured time, since when the source or a sink has
//! been failing, the dead-letter tally with the last few letters, and taps
//! that sample the records passing a stage.
//!
//! Everything here is cheap on the record path: a stage count is a plain
//! add to the counting thread's own cache line (`count.rs`), task times are
//! added once per batch, and a tap costs one relaxed load per batch while
//! nobody listens.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use flowline_connector_api::Record;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::component::Component;
pub(crate) use crate::count::Count;
use crate::operator::DeadLetter;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Dead letters kept for [`Ops::dead_letters`].
pub const DEAD_LETTER_HISTORY: usize = 20;
/// Distinct (stage, kind, reason) tallies kept; more are counted under the
/// reason `(other reasons)`.
const MAX_TALLIES: usize = 100;
/// A reason is kept up to this many bytes.
const MAX_REASON: usize = 500;

/// One stage of the operator chain, as the DataStream API declared it.
#[derive(Debug, Clone)]
pub(crate) struct StageDef {
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    /// For a sink stage, the sink's index.
    pub(crate) sink: Option<usize>,
    pub(crate) count: Count,
}

/// A stage of the operator chain and the elements it took in.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StageStatus {
    /// Its name (`try_map(decode)`, `window(..)`, `sink(windows)`).
    pub name: String,
    /// What it is: `try_map`, `map`, `filter`, `flat_map`, `timestamps`,
    /// `window_aggregate`, `process`, `side_sink`, `sink`.
    pub kind: &'static str,
    /// The sink a sink stage hands its records to.
    pub sink: Option<String>,
    /// Elements it took in, since the process started.
    pub records_in: u64,
}

/// One task's times, as [`Ops::tasks`] reads them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TaskStatus {
    /// `source`, `chain` (every stage of the operator chain), or a sink's name.
    pub name: String,
    /// Seconds spent working (the chain: processing; a sink: writing and
    /// flushing, retries included). `None` for the source, whose reads
    /// include waiting for data.
    pub busy_seconds: Option<f64>,
    /// Seconds spent waiting for the next task to take a batch (its
    /// channel full). `None` for sinks, which hand nothing on.
    pub backpressured_seconds: Option<f64>,
}

/// One dead letter, as [`Ops::dead_letters`] keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DeadLetterRecord {
    /// When it was sent, ms since the epoch.
    pub at_ms: i64,
    /// The stage that refused it.
    pub stage: String,
    /// `bad_record`, `late` or `rejected`.
    pub kind: &'static str,
    /// Why (cut at 500 bytes).
    pub reason: String,
    /// Its source partition.
    pub partition: Option<String>,
    /// Its offset in that partition.
    pub offset: Option<u64>,
}

/// Dead letters counted by stage, kind and reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DeadLetterTally {
    /// The stage.
    pub stage: String,
    /// `bad_record`, `late` or `rejected`.
    pub kind: &'static str,
    /// The reason with its numbers written `#`, so that one cause is one
    /// line (`… at line # column #`).
    pub reason: String,
    /// How many.
    pub count: u64,
}

/// A record seen by a tap.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Tapped {
    /// The stage it passed.
    pub stage: String,
    /// Its partition and offset, when it has them.
    pub partition: Option<String>,
    /// Offset in the partition.
    pub offset: Option<u64>,
    /// Its event time, ms.
    pub timestamp: Option<i64>,
    /// Its key (lossy UTF-8).
    pub key: Option<String>,
    /// Its payload (lossy UTF-8).
    pub payload: String,
}

/// Why a tap could not be opened.
#[derive(Debug, Clone, PartialEq)]
pub struct NoSuchStage {
    /// The stage asked for.
    pub stage: String,
    /// The stages that can be tapped.
    pub known: Vec<String>,
}

impl std::fmt::Display for NoSuchStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no stage `{}` to tap. Fix: one of {}",
            self.stage,
            self.known.join(", ")
        )
    }
}

#[derive(Debug, Default)]
struct Tally {
    counts: BTreeMap<(String, &'static str, String), u64>,
    last: VecDeque<DeadLetterRecord>,
}

/// The operations view of one job; [`crate::Metrics::ops`].
#[derive(Debug, Default)]
pub struct Ops {
    stages: Mutex<Vec<StageDef>>,
    sink_names: Mutex<Vec<String>>,
    /// `source`, `chain` and each sink, by name.
    tasks: Mutex<BTreeMap<String, Arc<Component>>>,
    tally: Mutex<Tally>,
    tap_count: AtomicUsize,
    taps: Mutex<Vec<(String, mpsc::Sender<Tapped>)>>,
}

impl Ops {
    pub(crate) fn set_stages(&self, stages: Vec<StageDef>, sink_names: Vec<String>) {
        *lock(&self.stages) = stages;
        *lock(&self.sink_names) = sink_names;
    }

    /// The operator chain's stages, source side first.
    pub fn stages(&self) -> Vec<StageStatus> {
        let names = lock(&self.sink_names).clone();
        lock(&self.stages)
            .iter()
            .map(|s| {
                let sink = s.sink.and_then(|i| names.get(i).cloned());
                StageStatus {
                    name: match &sink {
                        Some(n) => format!("{}({n})", s.name),
                        None => s.name.clone(),
                    },
                    kind: s.kind,
                    sink,
                    records_in: s.count.get(),
                }
            })
            .collect()
    }

    /// The task called `name` (`source`, `chain`, a sink's name),
    /// registered on first use.
    pub(crate) fn task(&self, name: &str) -> Arc<Component> {
        lock(&self.tasks)
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Every task's busy and backpressured time.
    pub fn tasks(&self) -> Vec<TaskStatus> {
        lock(&self.tasks)
            .iter()
            .map(|(name, t)| {
                let secs = |a: &AtomicU64| a.load(Relaxed) as f64 / 1e9;
                let source = name == "source";
                let chain = name == "chain";
                TaskStatus {
                    name: name.clone(),
                    busy_seconds: (!source).then(|| secs(&t.busy_ns)),
                    backpressured_seconds: (source || chain).then(|| secs(&t.backpressured_ns)),
                }
            })
            .collect()
    }

    /// What has been wrong for longer than `limit`: a task failing
    /// (retrying), a disconnected source, or a sink call (a write or flush,
    /// which a sink may retry inside) running that long. Empty: healthy.
    pub fn unhealthy(&self, limit: Duration) -> Vec<String> {
        let mut out = Vec::new();
        let long = |since: &Instant| (since.elapsed() > limit).then(|| since.elapsed().as_secs());
        for (name, t) in lock(&self.tasks).iter() {
            let what = match name.as_str() {
                "source" | "chain" => name.clone(),
                sink => format!("sink {sink}"),
            };
            if let Some((since, why)) = lock(&t.failing).as_ref() {
                if let Some(s) = long(since) {
                    out.push(format!("{what} failing for {s} s: {why}"));
                }
            }
            if let Some(s) = lock(&t.disconnected).as_ref().and_then(long) {
                out.push(format!(
                    "source connection: the source has reported no connection to its server for {s} s"
                ));
            }
            if let Some(s) = lock(&t.call_since).as_ref().and_then(long) {
                out.push(format!(
                    "{what}: a write or flush has not completed for {s} s (the server is away or too slow)"
                ));
            }
        }
        out
    }

    /// Counts dead letters and keeps the last [`DEAD_LETTER_HISTORY`].
    pub(crate) fn dead_letters_sent(&self, letters: &[DeadLetter]) {
        if letters.is_empty() {
            return;
        }
        let at_ms = now_ms();
        let mut t = lock(&self.tally);
        for l in letters {
            let kind = l.kind.as_str();
            let class = reason_class(&l.reason);
            let full = t.counts.len() >= MAX_TALLIES;
            let key = (l.stage.clone(), kind, class);
            match t.counts.get_mut(&key) {
                Some(n) => *n += 1,
                None if full => {
                    *t.counts
                        .entry((l.stage.clone(), kind, "(other reasons)".into()))
                        .or_default() += 1
                }
                None => {
                    t.counts.insert(key, 1);
                }
            }
        }
        for l in letters.iter().rev().take(DEAD_LETTER_HISTORY).rev() {
            if t.last.len() == DEAD_LETTER_HISTORY {
                t.last.pop_front();
            }
            t.last.push_back(DeadLetterRecord {
                at_ms,
                stage: l.stage.clone(),
                kind: l.kind.as_str(),
                reason: cut(&l.reason, MAX_REASON).to_string(),
                partition: l.record.partition.as_ref().map(|p| p.to_string()),
                offset: l.record.partition.as_ref().map(|_| l.record.offset),
            });
        }
    }

    /// The dead letters counted by stage, kind and reason, most first, and
    /// the last [`DEAD_LETTER_HISTORY`], newest first.
    pub fn dead_letters(&self) -> (Vec<DeadLetterTally>, Vec<DeadLetterRecord>) {
        let t = lock(&self.tally);
        let mut counts: Vec<DeadLetterTally> = t
            .counts
            .iter()
            .map(|((stage, kind, reason), n)| DeadLetterTally {
                stage: stage.clone(),
                kind,
                reason: reason.clone(),
                count: *n,
            })
            .collect();
        counts.sort_by_key(|c| std::cmp::Reverse(c.count));
        (counts, t.last.iter().rev().cloned().collect())
    }

    /// The stages a tap can watch: `source`, then the sinks, the dead-letter
    /// and late sinks by name.
    pub fn tappable(&self) -> Vec<String> {
        let mut v = vec!["source".to_string()];
        v.extend(
            lock(&self.tasks)
                .keys()
                .filter(|k| *k != "source" && *k != "chain")
                .cloned(),
        );
        v
    }

    /// Samples the records passing `stage` into a channel of `capacity`:
    /// when the reader is slower, records are skipped (never waited for).
    /// The tap closes when the receiver is dropped.
    pub fn tap(&self, stage: &str, capacity: usize) -> Result<mpsc::Receiver<Tapped>, NoSuchStage> {
        let known = self.tappable();
        if !known.iter().any(|k| k == stage) {
            return Err(NoSuchStage {
                stage: stage.to_string(),
                known,
            });
        }
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let mut taps = lock(&self.taps);
        taps.retain(|(_, t)| !t.is_closed());
        taps.push((stage.to_string(), tx));
        self.tap_count.store(taps.len(), Relaxed);
        Ok(rx)
    }

    /// Hands the records passing `stage` to its taps, if any listen.
    #[inline]
    pub(crate) fn tapped(&self, stage: &str, records: &[Record]) {
        if self.tap_count.load(Relaxed) != 0 {
            self.tapped_slow(stage, records.iter())
        }
    }

    #[cold]
    fn tapped_slow<'a>(&self, stage: &str, records: impl Iterator<Item = &'a Record>) {
        let mut taps = lock(&self.taps);
        taps.retain(|(_, t)| !t.is_closed());
        self.tap_count.store(taps.len(), Relaxed);
        let listening: Vec<&mpsc::Sender<Tapped>> = taps
            .iter()
            .filter(|(s, _)| s == stage)
            .map(|(_, t)| t)
            .collect();
        if listening.is_empty() {
            return;
        }
        for r in records {
            if listening.iter().all(|t| t.capacity() == 0) {
                return;
            }
            let t = Tapped {
                stage: stage.to_string(),
                partition: r.partition.as_ref().map(|p| p.to_string()),
                offset: r.partition.as_ref().map(|_| r.offset),
                timestamp: r.timestamp,
                key: r
                    .key
                    .as_ref()
                    .map(|k| String::from_utf8_lossy(k).into_owned()),
                payload: String::from_utf8_lossy(&r.payload).into_owned(),
            };
            for tx in &listening {
                let _ = tx.try_send(t.clone());
            }
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `s` cut at a character boundary at most `max` bytes in.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}

/// A reason with each run of digits written `#`, cut at 160 bytes: the
/// same cause at another line, column or value counts as one.
fn reason_class(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len().min(160));
    let mut in_digits = false;
    for c in cut(reason, 160).chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::DeadLetterKind;
    use flowline_connector_api::PartitionId;

    fn letter(reason: &str, offset: u64) -> DeadLetter {
        let mut record = Record::new("x");
        record.partition = Some(PartitionId::new("t/0"));
        record.offset = offset;
        DeadLetter {
            record,
            kind: DeadLetterKind::BadRecord,
            reason: reason.into(),
            stage: "decode".into(),
        }
    }

    #[test]
    fn dead_letters_are_tallied_by_reason_class_and_the_last_twenty_kept() {
        let ops = Ops::default();
        let letters: Vec<DeadLetter> = (0..25)
            .map(|i| {
                letter(
                    &format!("invalid metric event: EOF at line 1 column {i}"),
                    i,
                )
            })
            .chain([letter("value NaN is not a finite number", 99)])
            .collect();
        ops.dead_letters_sent(&letters);
        let (counts, last) = ops.dead_letters();
        assert_eq!(counts.len(), 2, "{counts:?}");
        assert_eq!(counts[0].count, 25);
        assert_eq!(
            counts[0].reason,
            "invalid metric event: EOF at line # column #"
        );
        assert_eq!(counts[1].count, 1);
        assert_eq!(last.len(), DEAD_LETTER_HISTORY);
        assert_eq!(last[0].offset, Some(99));
        assert_eq!(last[0].partition.as_deref(), Some("t/0"));
        assert_eq!(last[19].offset, Some(6));
    }

    #[test]
    fn tallies_are_bounded_and_long_reasons_cut() {
        let ops = Ops::default();
        let letters: Vec<DeadLetter> = (0..150)
            .map(|i| {
                letter(
                    &format!(
                        "reason {}{}",
                        "é".repeat(300),
                        char::from(b'a' + (i % 26) as u8)
                            .to_string()
                            .repeat(i / 26 + 1)
                    ),
                    i as u64,
                )
            })
            .collect();
        ops.dead_letters_sent(&letters);
        let (counts, last) = ops.dead_letters();
        assert!(counts.len() <= MAX_TALLIES + 1, "{}", counts.len());
        assert_eq!(counts.iter().map(|c| c.count).sum::<u64>(), 150);
        assert!(last.iter().all(|l| l.reason.len() <= MAX_REASON));
    }

    #[test]
    fn a_failure_is_unhealthy_only_past_the_limit_and_until_recovered() {
        let ops = Ops::default();
        let sink = ops.task("windows");
        sink.failing("connection refused");
        sink.failing("a later reason");
        assert!(ops.unhealthy(Duration::from_secs(60)).is_empty());
        let why = ops.unhealthy(Duration::ZERO);
        assert_eq!(why.len(), 1);
        assert!(
            why[0].starts_with("sink windows failing for 0 s: connection refused"),
            "{why:?}"
        );
        sink.recovered();
        assert!(ops.unhealthy(Duration::ZERO).is_empty());
        sink.call_started();
        assert!(ops.unhealthy(Duration::ZERO)[0].starts_with("sink windows: a write or flush"));
        sink.call_ended();
        assert!(ops.unhealthy(Duration::ZERO).is_empty());
        let source = ops.task("source");
        source.connected(Some(false));
        assert!(ops.unhealthy(Duration::ZERO)[0].starts_with("source connection: "));
        source.connected(None);
        assert!(ops.unhealthy(Duration::ZERO).is_empty());
    }

    #[tokio::test]
    async fn a_tap_samples_its_stage_only_and_never_waits() {
        let ops = Ops::default();
        ops.task("out");
        assert!(ops
            .tap("nope", 4)
            .unwrap_err()
            .to_string()
            .contains("one of source, out"));
        let mut rx = ops.tap("out", 2).unwrap();
        let recs: Vec<Record> = (0..5).map(|i| Record::new(format!("r{i}"))).collect();
        ops.tapped("source", &recs);
        ops.tapped("out", &recs);
        assert_eq!(rx.recv().await.unwrap().payload, "r0");
        assert_eq!(rx.recv().await.unwrap().payload, "r1");
        assert!(
            rx.try_recv().is_err(),
            "the tap skips what its reader cannot take"
        );
        drop(rx);
        ops.tapped("out", &recs);
        assert_eq!(ops.tap_count.load(Relaxed), 0);
    }
}
