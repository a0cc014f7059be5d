//! The push-based operator chain that runs inside one source partition, and
//! the stateless operators.
//!
//! A job's operators are composed, at build time, into one chain per source
//! partition: `Operator<Record>` at the head, each operator owning the next.
//! Elements travel with their event time; watermarks are pushed down the
//! chain only when one passes the earliest pending window end or timer.

use std::fmt::Debug;
use std::sync::Arc;

use flowline_connector_api::{PartitionId, Record};

pub(crate) use crate::held::InScope;
use crate::held::Trail;
pub(crate) use crate::owners::KeyOwners;

/// The next operator state of a restore, decoded; `what` names it in the
/// errors.
pub(crate) fn next_state<T: serde::de::DeserializeOwned>(
    states: &mut std::vec::IntoIter<Vec<u8>>,
    what: &str,
) -> Result<T, String> {
    let bytes = states.next().ok_or_else(|| format!("missing {what}"))?;
    postcard::from_bytes(&bytes).map_err(|e| format!("{what}: {e}"))
}
/// Appends an operator's state, encoded, to a snapshot (read back by
/// [`next_state`]).
pub(crate) fn push_state<T: serde::Serialize>(
    out: &mut Vec<Vec<u8>>,
    state: &T,
) -> Result<(), String> {
    out.push(postcard::to_stdvec(state).map_err(|e| e.to_string())?);
    Ok(())
}
use crate::RuntimeError;

/// Event time meaning "no event time known".
pub const NO_TIME: i64 = i64::MIN;

/// Why a record went down the bad-record path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadLetterKind {
    /// It could not be decoded or was invalid.
    BadRecord,
    /// It arrived after its windows' allowed lateness.
    Late,
    /// A sink rejected it.
    Rejected,
}

impl DeadLetterKind {
    /// `bad_record`, `late`, `rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::BadRecord => "bad_record",
            DeadLetterKind::Late => "late",
            DeadLetterKind::Rejected => "rejected",
        }
    }
}

/// A record on its way to the dead-letter or late sink.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The original record.
    pub record: Record,
    /// Why.
    pub kind: DeadLetterKind,
    /// The reason, naming what was wrong.
    pub reason: String,
    /// Which stage sent it (`decode`, `window`, a sink's name).
    pub stage: String,
}

/// What a partition's chain produced while handling one batch.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Output records per sink index.
    pub(crate) sinks: Vec<Vec<Record>>,
    /// Records in `sinks` (reset when routed).
    pub(crate) pending: usize,
    pub(crate) dead: Vec<DeadLetter>,
    pub(crate) late: Vec<DeadLetter>,
    pub(crate) error: Option<RuntimeError>,
    /// With an exchange: per worker, the elements for it (a
    /// `Vec<exchange::Item<T>>`).
    pub(crate) exchange: Vec<Option<crate::exchange::ExBatch>>,
    /// Elements in `exchange` (reset when sent).
    pub(crate) exchanged: usize,
    /// Room a new batch for a worker starts with: a chunk's share of its
    /// records, so its `Vec` does not grow by doubling (0: grows).
    pub(crate) exchange_room: usize,
}

impl Outbox {
    /// Sizes the workers' batches a source batch of `records` starts
    /// (an even share each): a batch growing by doubling through its
    /// 1024 elements copied them twice over (2.5 % of a 1-worker job).
    pub(crate) fn make_room(&mut self, records: usize) {
        self.exchange_room = records.div_ceil(self.exchange.len().max(1));
    }

    /// Fails the chain's job with `e`, unless an earlier error did.
    pub(crate) fn fail(&mut self, e: RuntimeError) {
        self.error.get_or_insert(e);
    }
}

/// The context a chain runs in: the partition, its watermark, and the outbox.
pub struct Cx<'a> {
    pub(crate) partition: &'a PartitionId,
    /// The source record being processed (for dead letters), if any.
    pub(crate) record: InScope<'a>,
    pub(crate) watermark: i64,
    pub(crate) max_ts: i64,
    pub(crate) out_of_orderness: i64,
    /// Earliest event time at which some operator wants a watermark.
    pub(crate) next_fire: i64,
    pub(crate) outbox: &'a mut Outbox,
    pub(crate) owners: &'a mut KeyOwners,
    /// Set by an operator that stopped firing early (the outbox is full):
    /// the driver routes the outbox, then calls `watermark` again.
    pub(crate) again: bool,
    /// The task running the chain: 0 for the driver, the worker's index
    /// behind an exchange (per-stage counts are sharded by it).
    pub(crate) worker: usize,
    /// Behind an exchange: the key group whose chain this is. A key of
    /// another group (a second `key_by` on another key) fails the job.
    pub(crate) key_group: Option<u16>,
}

/// Records a watermark call may put in the outbox before it stops and
/// lets the driver route them: firing 100k windows at once does not hold
/// 100k outputs in memory.
pub(crate) const FIRE_CHUNK: usize = 4096;

impl Debug for Cx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cx")
            .field("partition", self.partition)
            .field("watermark", &self.watermark)
            .finish()
    }
}

impl Cx<'_> {
    /// Feeds an event time into the partition's watermark:
    /// `max event time - out_of_orderness - 1` (Flink's bounded
    /// out-of-orderness rule).
    pub(crate) fn observe(&mut self, ts: i64) {
        if ts > self.max_ts {
            self.max_ts = ts;
            let wm = ts.saturating_sub(self.out_of_orderness).saturating_sub(1);
            if wm > self.watermark {
                self.watermark = wm;
            }
        }
    }

    pub(crate) fn want_fire_at(&mut self, t: i64) {
        if t < self.next_fire {
            self.next_fire = t;
        }
    }

    pub(crate) fn emit_to_sink(&mut self, sink: usize, r: Record) {
        self.outbox.sinks[sink].push(r);
        self.outbox.pending += 1;
    }

    /// Whether a firing operator should stop and let the outbox be routed.
    pub(crate) fn outbox_full(&self) -> bool {
        self.outbox.pending >= FIRE_CHUNK
    }

    /// Asks to be called again with the same watermark after routing.
    pub(crate) fn fire_again(&mut self) {
        self.again = true;
    }

    /// The letter of the record in scope, once per record and kind
    /// (`InScope::first_letter`): `None` when it was written already;
    /// an empty record when none is in scope (counted all the same).
    fn letter(&mut self, kind: DeadLetterKind, stage: &str, reason: String) -> Option<DeadLetter> {
        if !self.record.first_letter(kind) {
            return None;
        }
        let record = self
            .record
            .get()
            .map_or_else(|| Record::new(Vec::new()), Record::clone);
        Some(DeadLetter {
            record,
            kind,
            reason,
            stage: stage.to_string(),
        })
    }

    /// Runs `f` with `rec` as the current source record, so that operators
    /// further down can dead-letter it; then moves it into the workers'
    /// batches that elements of it went to (`held`).
    #[inline]
    pub(crate) fn with_record<R>(&mut self, rec: Record, f: impl FnOnce(&mut Cx<'_>) -> R) -> R {
        self.with_record_lettered(rec, false, f)
    }

    /// `with_record` for a record whose dead letter was written already
    /// (`dead`): its elements dead-letter it no more.
    #[inline]
    pub(crate) fn with_record_lettered<R>(
        &mut self,
        rec: Record,
        dead: bool,
        f: impl FnOnce(&mut Cx<'_>) -> R,
    ) -> R {
        let mut held = Trail::lettered(dead);
        let r = self.scoped(InScope::Held(&rec, &mut held), f);
        held.deliver(rec, self.outbox);
        r
    }

    #[inline]
    fn scoped<R>(&mut self, record: InScope<'_>, f: impl FnOnce(&mut Cx<'_>) -> R) -> R {
        let mut inner = Cx {
            partition: self.partition,
            record,
            watermark: self.watermark,
            max_ts: self.max_ts,
            out_of_orderness: self.out_of_orderness,
            next_fire: self.next_fire,
            outbox: &mut *self.outbox,
            owners: &mut *self.owners,
            again: self.again,
            worker: self.worker,
            key_group: self.key_group,
        };
        let r = f(&mut inner);
        self.again = inner.again;
        let (wm, max, nf) = (inner.watermark, inner.max_ts, inner.next_fire);
        self.watermark = wm;
        self.max_ts = max;
        self.next_fire = nf;
        r
    }

    /// Sends `rec` down the bad-record path.
    pub(crate) fn bad_record(&mut self, rec: &Record, stage: &str, reason: String) {
        self.outbox.dead.push(DeadLetter {
            record: rec.clone(),
            kind: DeadLetterKind::BadRecord,
            reason,
            stage: stage.to_string(),
        });
    }

    /// Sends the current source record down the bad-record path, once
    /// per record (an empty record when the chain has none in scope; it is
    /// counted all the same).
    pub(crate) fn bad_element(&mut self, stage: &str, reason: String) {
        if let Some(l) = self.letter(DeadLetterKind::BadRecord, stage, reason) {
            self.outbox.dead.push(l);
        }
    }

    /// Sends the current source record to the late side output, once per
    /// record (an empty record when the chain has none in scope; it is
    /// counted all the same).
    pub(crate) fn late_record(&mut self, stage: &str, reason: String) {
        if let Some(l) = self.letter(DeadLetterKind::Late, stage, reason) {
            self.outbox.late.push(l);
        }
    }
}

/// One operator of a partition's chain, owning the rest of the chain.
pub(crate) trait Operator<I>: Send {
    /// One element with its event time.
    fn element(&mut self, el: I, ts: i64, cx: &mut Cx<'_>);
    /// The watermark passed `cx.next_fire`, or the input ended (`i64::MAX`).
    /// Fire what is due, pass it on, and re-declare `want_fire_at`.
    fn watermark(&mut self, wm: i64, cx: &mut Cx<'_>);
    /// Appends this operator's state and the rest of the chain's, in order.
    fn snapshot(&self, out: &mut Vec<Vec<u8>>) -> Result<(), String>;
    /// Restores from states in the order `snapshot` wrote them.
    fn restore(
        &mut self,
        states: &mut std::vec::IntoIter<Vec<u8>>,
        cx: &mut Cx<'_>,
    ) -> Result<(), String>;
}

pub(crate) type BoxOp<T> = Box<dyn Operator<T>>;

/// Builds the head of a chain given the operator that consumes `T`: a
/// `BoxOp<Record>` for a source partition's chain, a `BoxOp<E>` for a key
/// group's chain behind an exchange of `E` elements (type-erased, taken
/// back once per chain built).
pub(crate) type Build<T> = Arc<dyn Fn(BoxOp<T>) -> crate::job::Head + Send + Sync>;

macro_rules! stateless_passthrough {
    () => {
        fn watermark(&mut self, wm: i64, cx: &mut Cx<'_>) {
            self.down.watermark(wm, cx)
        }
        fn snapshot(&self, out: &mut Vec<Vec<u8>>) -> Result<(), String> {
            self.down.snapshot(out)
        }
        fn restore(
            &mut self,
            states: &mut std::vec::IntoIter<Vec<u8>>,
            cx: &mut Cx<'_>,
        ) -> Result<(), String> {
            self.down.restore(states, cx)
        }
    };
}

/// Counts the elements going into the operator it wraps (per-stage
/// `records_in`; the driver is the only writer).
pub(crate) struct Counted<T> {
    pub(crate) count: crate::observe::Count,
    pub(crate) down: BoxOp<T>,
}

impl<T> Operator<T> for Counted<T> {
    #[inline]
    fn element(&mut self, el: T, ts: i64, cx: &mut Cx<'_>) {
        self.count.add1();
        self.down.element(el, ts, cx)
    }
    stateless_passthrough!();
}

pub(crate) struct MapOp<F, O> {
    pub(crate) f: Arc<F>,
    pub(crate) down: BoxOp<O>,
}

impl<I, O: 'static, F: Fn(I) -> O + Send + Sync> Operator<I> for MapOp<F, O> {
    fn element(&mut self, el: I, ts: i64, cx: &mut Cx<'_>) {
        self.down.element((self.f)(el), ts, cx)
    }
    stateless_passthrough!();
}

pub(crate) struct FilterOp<F, T> {
    pub(crate) f: Arc<F>,
    pub(crate) down: BoxOp<T>,
}

impl<T: 'static, F: Fn(&T) -> bool + Send + Sync> Operator<T> for FilterOp<F, T> {
    fn element(&mut self, el: T, ts: i64, cx: &mut Cx<'_>) {
        if (self.f)(&el) {
            self.down.element(el, ts, cx)
        }
    }
    stateless_passthrough!();
}

pub(crate) struct FlatMapOp<F, O> {
    pub(crate) f: Arc<F>,
    pub(crate) down: BoxOp<O>,
}

impl<I, O: 'static, It: IntoIterator<Item = O>, F: Fn(I) -> It + Send + Sync> Operator<I>
    for FlatMapOp<F, O>
{
    fn element(&mut self, el: I, ts: i64, cx: &mut Cx<'_>) {
        for o in (self.f)(el) {
            self.down.element(o, ts, cx)
        }
    }
    stateless_passthrough!();
}

/// `try_map` on source records: an `Err` sends the record down the
/// bad-record path; an `Ok` goes on with the record in scope, so that later
/// operators can dead-letter it too (late events).
pub(crate) struct TryMapOp<F, O> {
    pub(crate) f: Arc<F>,
    pub(crate) stage: Arc<str>,
    pub(crate) down: BoxOp<O>,
}

impl<O: 'static, E: std::fmt::Display, F: Fn(&Record) -> Result<O, E> + Send + Sync>
    Operator<Record> for TryMapOp<F, O>
{
    fn element(&mut self, el: Record, ts: i64, cx: &mut Cx<'_>) {
        match (self.f)(&el) {
            Ok(o) => {
                let down = &mut self.down;
                cx.with_record(el, |cx| down.element(o, ts, cx))
            }
            Err(e) => cx.bad_record(&el, &self.stage, e.to_string()),
        }
    }
    stateless_passthrough!();
}

/// `try_flat_map` on source records: every element of the output goes on
/// with the record in scope; a reason next to them sends the record down
/// the bad-record path once (a record read in part keeps its good parts).
pub(crate) struct TryFlatMapOp<F, O> {
    pub(crate) f: Arc<F>,
    pub(crate) stage: Arc<str>,
    pub(crate) down: BoxOp<O>,
}

impl<O: 'static, E: std::fmt::Display, F: Fn(&Record) -> (Vec<O>, Option<E>) + Send + Sync>
    Operator<Record> for TryFlatMapOp<F, O>
{
    fn element(&mut self, el: Record, ts: i64, cx: &mut Cx<'_>) {
        let (outs, err) = (self.f)(&el);
        let dead = err.is_some();
        if let Some(e) = err {
            cx.bad_record(&el, &self.stage, e.to_string());
        }
        let down = &mut self.down;
        cx.with_record_lettered(el, dead, |cx| {
            for o in outs {
                down.element(o, ts, cx)
            }
        })
    }
    stateless_passthrough!();
}

/// Event time from the element; feeds the partition's watermark.
pub(crate) struct TimestampOp<F, T> {
    pub(crate) f: Arc<F>,
    pub(crate) down: BoxOp<T>,
}

impl<T: 'static, F: Fn(&T) -> i64 + Send + Sync> Operator<T> for TimestampOp<F, T> {
    fn element(&mut self, el: T, _ts: i64, cx: &mut Cx<'_>) {
        let ts = (self.f)(&el);
        self.down.element(el, ts, cx);
        cx.observe(ts);
    }
    stateless_passthrough!();
}

/// Encodes elements and hands them to a sink; optionally passes them on.
pub(crate) struct SinkOp<F, T> {
    pub(crate) encode: Arc<F>,
    pub(crate) sink: usize,
    pub(crate) down: Option<BoxOp<T>>,
}

impl<T: Clone + 'static, F: Fn(&T) -> Option<Record> + Send + Sync> Operator<T> for SinkOp<F, T> {
    fn element(&mut self, el: T, ts: i64, cx: &mut Cx<'_>) {
        if let Some(r) = (self.encode)(&el) {
            cx.emit_to_sink(self.sink, r);
        }
        if let Some(d) = &mut self.down {
            d.element(el, ts, cx)
        }
    }
    fn watermark(&mut self, wm: i64, cx: &mut Cx<'_>) {
        if let Some(d) = &mut self.down {
            d.watermark(wm, cx)
        }
    }
    fn snapshot(&self, out: &mut Vec<Vec<u8>>) -> Result<(), String> {
        match &self.down {
            Some(d) => d.snapshot(out),
            None => Ok(()),
        }
    }
    fn restore(
        &mut self,
        s: &mut std::vec::IntoIter<Vec<u8>>,
        cx: &mut Cx<'_>,
    ) -> Result<(), String> {
        match &mut self.down {
            Some(d) => d.restore(s, cx),
            None => Ok(()),
        }
    }
}
