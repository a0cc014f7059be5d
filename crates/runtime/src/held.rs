//! The source record in scope of the elements read from it, kept for dead
//! letters and the late output, and how it crosses the exchange.
//!
//! Before the exchange, the operator that read a record keeps it while its
//! elements go down the chain (`Cx::with_record`). An exchange that sends
//! an element of it to a worker does not take the record there and then:
//! it reserves the record a place in that worker's batch ([`Trail::send_to`])
//! and puts the place in the element. When the record's scope ends it
//! moves into the batches that asked for it ([`Trail::deliver`]): by value
//! into one, behind one `Arc` shared by several (an event with series on
//! several workers). A worker's elements borrow it from their batch
//! ([`InScope::Lent`]), and it is dropped with the batch.
//!
//! The record's [`Trail`] also marks which kinds of letters (dead, late)
//! of it were written, so a record reaches each output once however many
//! of its elements are refused or late, on however many workers.
//!
//! Before, each exchanged record moved behind an `Arc` of its own as its
//! first element went out: an allocation per record on the tasks before the
//! exchange, and a free of it on the worker's thread. The in-memory
//! `aggregation` bench ran its exchange modes about a third faster without
//! them (medians of five interleaved pairs of runs, 2026-12-06).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use flowline_connector_api::Record;

use crate::exchange::ExBatch;
use crate::operator::{DeadLetterKind, Outbox};
use crate::RuntimeError;

/// The source record of the elements a chain is handling, if any.
#[derive(Debug, Default)]
pub(crate) enum InScope<'a> {
    /// None: a restore, a timer firing, a chain fed elements directly.
    #[default]
    None,
    /// Owned by the operator that read it (before the exchange), with the
    /// workers' batches that asked for it.
    Held(&'a Record, &'a mut Trail),
    /// Lent by a worker's batch (behind the exchange).
    Lent(&'a Kept),
}

impl InScope<'_> {
    pub(crate) fn get(&self) -> Option<&Record> {
        match self {
            InScope::None => None,
            InScope::Held(r, _) => Some(r),
            InScope::Lent(k) => Some(&k.record),
        }
    }

    /// Whether a letter of `kind` (dead or late) of the record in scope
    /// would be its first; marks it written. A record goes to each output
    /// once, however many of its elements (the series of one event, on one
    /// worker or several) are refused or late: before, an event of three
    /// late values was in the late output three times, and counted three
    /// times. Without a record in scope, every letter is a first.
    pub(crate) fn first_letter(&mut self, kind: DeadLetterKind) -> bool {
        let bit = letter_bit(kind);
        match self {
            InScope::None => true,
            InScope::Held(_, h) => {
                let first = h.lettered & bit == 0;
                h.lettered |= bit;
                first
            }
            InScope::Lent(k) => k.lettered.fetch_or(bit, Ordering::Relaxed) & bit == 0,
        }
    }

    pub(crate) fn is_some(&self) -> bool {
        !matches!(self, InScope::None)
    }

    pub(crate) fn is_none(&self) -> bool {
        matches!(self, InScope::None)
    }
}

fn letter_bit(kind: DeadLetterKind) -> u8 {
    match kind {
        DeadLetterKind::BadRecord => 1,
        DeadLetterKind::Late => 2,
        DeadLetterKind::Rejected => 4,
    }
}

/// A source record's trail while its scope lasts: the workers' batches
/// that will take it when the scope ends, each with the place reserved for
/// it there, and the kinds of letters of it written so far. The record itself stays where its operator holds it
/// until then (one move, into a batch).
#[derive(Debug, Default)]
pub(crate) struct Trail {
    /// The first worker sent an element of it (most records go to one).
    first: Option<Place>,
    /// Any other workers (an event with series on several).
    more: Vec<Place>,
    /// Kinds of letters of it written (`letter_bit`).
    lettered: u8,
}

/// A record in a worker's batch, with the kinds of letters of it written
/// (before the exchange, or by any worker holding it).
#[derive(Debug)]
pub(crate) struct Kept {
    pub(crate) record: Record,
    lettered: AtomicU8,
}

#[cfg(test)]
impl Kept {
    /// A record of which no letter was written.
    pub(crate) fn new(record: Record) -> Self {
        Self {
            record,
            lettered: AtomicU8::new(0),
        }
    }
}

/// A worker and the index of a record in its batch's `records`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    worker: usize,
    index: u32,
}

/// A record as a worker's batch holds it: its own, or shared with other
/// workers' batches.
#[derive(Debug)]
pub(crate) enum Stored {
    /// A place reserved whose record has not come yet (a scope inside
    /// another ended first; a batch is sent only after every scope ended).
    Reserved,
    Owned(Kept),
    Shared(Arc<Kept>),
}

impl Stored {
    pub(crate) fn get(&self) -> Option<&Kept> {
        match self {
            Stored::Reserved => None,
            Stored::Owned(r) => Some(r),
            Stored::Shared(r) => Some(r),
        }
    }
}

impl Trail {
    /// A record whose dead letter was written already (`dead`): read in
    /// part, its good parts going on.
    pub(crate) fn lettered(dead: bool) -> Self {
        Self {
            lettered: if dead {
                letter_bit(DeadLetterKind::BadRecord)
            } else {
                0
            },
            ..Self::default()
        }
    }

    /// The index the record will have in `batch` (worker `worker`'s): the
    /// one reserved by an earlier element sent there, or a new one.
    #[inline]
    pub(crate) fn send_to(&mut self, worker: usize, batch: &mut ExBatch) -> u32 {
        match self.first {
            Some(p) if p.worker == worker => return p.index,
            _ => {}
        }
        if let Some(p) = self.more.iter().find(|p| p.worker == worker) {
            return p.index;
        }
        let place = Place {
            worker,
            index: batch.reserved,
        };
        batch.reserved += 1;
        match self.first {
            None => self.first = Some(place),
            Some(_) => self.more.push(place),
        }
        place.index
    }

    /// Moves `record` into the batches that asked for it; dropped here
    /// when none did.
    #[inline]
    pub(crate) fn deliver(self, record: Record, outbox: &mut Outbox) {
        let Some(first) = self.first else {
            return;
        };
        let kept = Kept {
            record,
            lettered: AtomicU8::new(self.lettered),
        };
        if self.more.is_empty() {
            put(outbox, first, Stored::Owned(kept));
            return;
        }
        let shared = Arc::new(kept);
        for p in std::iter::once(first).chain(self.more) {
            put(outbox, p, Stored::Shared(shared.clone()));
        }
    }
}

#[inline]
fn put(outbox: &mut Outbox, p: Place, s: Stored) {
    let i = p.index as usize;
    match outbox.exchange.get_mut(p.worker).and_then(Option::as_mut) {
        // Scopes end in the order they began: the next place.
        Some(b) if i == b.records.len() => b.records.push(s),
        Some(b) if i < b.reserved as usize => {
            if i > b.records.len() {
                b.records.resize_with(i, || Stored::Reserved);
                b.records.push(s);
            } else {
                b.records[i] = s;
            }
        }
        _ => outbox.fail(RuntimeError::Internal(format!(
            "a source record's place {i} in worker {}'s batch is gone",
            p.worker
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(workers: usize) -> Outbox {
        Outbox {
            exchange: (0..workers)
                .map(|_| {
                    Some(ExBatch {
                        items: Box::new(()),
                        len: 0,
                        records: Vec::new(),
                        reserved: 0,
                    })
                })
                .collect(),
            ..Outbox::default()
        }
    }

    fn send(h: &mut Trail, out: &mut Outbox, w: usize) -> u32 {
        h.send_to(w, out.exchange[w].as_mut().unwrap())
    }

    fn rec(payload: &str) -> Record {
        Record::new(payload.to_string())
    }

    fn payloads(out: &Outbox, w: usize) -> Vec<Option<String>> {
        let b = out.exchange[w].as_ref().unwrap();
        b.records
            .iter()
            .map(|s| {
                s.get()
                    .map(|k| String::from_utf8_lossy(&k.record.payload).into_owned())
            })
            .collect()
    }

    #[test]
    fn a_record_moves_once_into_each_batch_that_asked_for_it() {
        let mut out = outbox(3);
        // One record, three elements on worker 1: one place.
        let mut a = Trail::default();
        assert_eq!(
            [0, 1, 1, 1].map(|w| send(&mut a, &mut out, w)),
            [0, 0, 0, 0]
        );
        // Nobody asked for b: it goes nowhere.
        let b = Trail::default();
        a.deliver(rec("a"), &mut out);
        b.deliver(rec("b"), &mut out);
        let mut c = Trail::default();
        assert_eq!(send(&mut c, &mut out, 1), 1);
        c.deliver(rec("c"), &mut out);
        assert_eq!(payloads(&out, 0), [Some("a".into())]);
        assert_eq!(payloads(&out, 1), [Some("a".into()), Some("c".into())]);
        assert!(payloads(&out, 2).is_empty());
        // Shared by the two batches, not copied.
        let (b0, b1) = (&out.exchange[0], &out.exchange[1]);
        let ptr = |b: &Option<ExBatch>| b.as_ref().unwrap().records[0].get().unwrap() as *const _;
        assert_eq!(ptr(b0), ptr(b1));
        assert!(matches!(b1.as_ref().unwrap().records[1], Stored::Owned(_)));
        assert!(out.error.is_none());
    }

    #[test]
    fn nested_scopes_keep_their_places_whatever_ends_first() {
        let mut out = outbox(1);
        let (mut outer, mut inner) = (Trail::default(), Trail::default());
        assert_eq!(send(&mut outer, &mut out, 0), 0);
        assert_eq!(send(&mut inner, &mut out, 0), 1);
        inner.deliver(rec("inner"), &mut out);
        assert_eq!(payloads(&out, 0), [None, Some("inner".into())]);
        outer.deliver(rec("outer"), &mut out);
        assert_eq!(
            payloads(&out, 0),
            [Some("outer".into()), Some("inner".into())]
        );
    }

    #[test]
    fn a_place_in_a_batch_already_gone_fails_the_job_not_the_process() {
        let mut out = outbox(1);
        let mut h = Trail::default();
        send(&mut h, &mut out, 0);
        out.exchange[0] = None;
        h.deliver(rec("x"), &mut out);
        assert!(matches!(out.error, Some(RuntimeError::Internal(_))));
    }

    #[test]
    fn a_record_is_lettered_once_per_kind_before_and_behind_the_exchange() {
        use DeadLetterKind::{BadRecord, Late};
        let mut out = outbox(2);
        // Read in part: its dead letter was written before the exchange.
        let mut h = Trail::lettered(true);
        let r = rec("a");
        {
            let mut scope = InScope::Held(&r, &mut h);
            assert!(!scope.first_letter(BadRecord));
            assert!(scope.first_letter(Late));
            assert!(!scope.first_letter(Late));
        }
        let mut g = Trail::lettered(false);
        send(&mut g, &mut out, 0);
        send(&mut g, &mut out, 1);
        g.deliver(rec("b"), &mut out);
        // The two workers share the record: one late letter between them,
        // one dead letter.
        let kept = |w: usize| out.exchange[w].as_ref().unwrap().records[0].get().unwrap();
        let mut w0 = InScope::Lent(kept(0));
        let mut w1 = InScope::Lent(kept(1));
        assert!(w1.first_letter(Late));
        assert!(!w0.first_letter(Late));
        assert!(w0.first_letter(BadRecord));
        assert!(!w1.first_letter(BadRecord));
        // A record dead-lettered before the exchange is not again behind it.
        let mut d = Trail::lettered(true);
        send(&mut d, &mut out, 0);
        d.deliver(rec("c"), &mut out);
        let c = out.exchange[0].as_ref().unwrap().records[1].get().unwrap();
        assert!(!InScope::Lent(c).first_letter(BadRecord));
        // Without a record in scope, every letter counts.
        assert!(InScope::None.first_letter(Late) && InScope::None.first_letter(Late));
    }
}
