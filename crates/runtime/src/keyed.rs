//! Keyed operators: event-time windows with an aggregate function (keyed
//! process functions with state and timers are in [`crate::process`]).
//! State lives with the key group, or the source partition, its keys come
//! from.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};

/// Hashing of keyed state: fast, seeded per process (no hash flooding).
pub(crate) type FastState = foldhash::fast::RandomState;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::operator::{next_state, push_state, BoxOp, Cx, Operator, NO_TIME};
use crate::window::{TimeWindow, WindowSpec};

/// What a key must be: hashable, ordered (fired windows emit in key order, so
/// output is the same on every run), printable, and storable in checkpoints.
pub trait Key:
    Hash + Eq + Ord + Clone + Debug + Serialize + DeserializeOwned + Send + 'static
{
}
impl<T: Hash + Eq + Ord + Clone + Debug + Serialize + DeserializeOwned + Send + 'static> Key for T {}

/// Extracts an element's key: [`ByValue`] computes one (`key_by`),
/// [`ByRef`] borrows a field (`key_by_ref`, no allocation per element).
pub trait KeySelector<T, K>: Send + Sync + 'static {
    /// Calls `f` with the key of `el`.
    fn with_key<R>(&self, el: &T, f: impl FnOnce(&K) -> R) -> R;
}

/// A key computed from the element.
#[derive(Debug, Clone, Copy)]
pub struct ByValue<F>(pub F);

impl<T, K, F: Fn(&T) -> K + Send + Sync + 'static> KeySelector<T, K> for ByValue<F> {
    #[inline]
    fn with_key<R>(&self, el: &T, f: impl FnOnce(&K) -> R) -> R {
        f(&(self.0)(el))
    }
}

/// A key borrowed from the element.
#[derive(Debug, Clone, Copy)]
pub struct ByRef<F>(pub F);

impl<T, K, F> KeySelector<T, K> for ByRef<F>
where
    F: for<'a> Fn(&'a T) -> &'a K + Send + Sync + 'static,
{
    #[inline]
    fn with_key<R>(&self, el: &T, f: impl FnOnce(&K) -> R) -> R {
        f((self.0)(el))
    }
}

/// An incremental aggregation, as Flink's `AggregateFunction`: one
/// accumulator per key and window, updated per element.
pub trait AggregateFunction: Clone + Send + Sync + 'static {
    /// What it consumes.
    type In;
    /// The running state, kept in checkpoints.
    type Acc: Serialize + DeserializeOwned + Send + 'static;
    /// What a fired window emits.
    type Out;
    /// A fresh accumulator.
    fn create_accumulator(&self) -> Self::Acc;
    /// Adds one element.
    fn add(&self, acc: &mut Self::Acc, value: &Self::In);
    /// Whether `value` can be added to `acc` (`None`: a window the key has
    /// no accumulator in yet). An `Err` sends the element's record to the
    /// dead-letter output with that reason and adds it to none of its
    /// windows: an aggregate that cannot hold a value exactly (a sum that
    /// would overflow) refuses it loudly instead of writing a wrong result.
    /// Called for every window of the element before any `add`.
    fn check(&self, acc: Option<&Self::Acc>, value: &Self::In) -> Result<(), String> {
        let _ = (acc, value);
        Ok(())
    }
    /// The result for a window.
    fn get_result(&self, acc: &Self::Acc) -> Self::Out;
    /// The result for a window whose accumulator is not needed any more
    /// (fired with no allowed lateness): it can be moved into the result
    /// instead of copied. Must equal [`get_result`](Self::get_result).
    fn final_result(&self, acc: Self::Acc) -> Self::Out {
        self.get_result(&acc)
    }
    /// A name for the accumulator's stored form, put into the job graph
    /// (`None`, the default, adds nothing). Checkpoints record the graph, so
    /// a checkpoint taken with another accumulator is refused by name at
    /// restore instead of being decoded as the wrong layout. Give a new
    /// name whenever `Acc`'s serialized form changes.
    fn state_name(&self) -> Option<&'static str> {
        None
    }
}

/// One fired window's result for one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowResult<K, O> {
    /// The key.
    pub key: K,
    /// The window.
    pub window: TimeWindow,
    /// The aggregate.
    pub value: O,
    /// `true` when a late element (within the allowed lateness) updated an
    /// already fired window of this key, so this result replaces the one
    /// emitted before for the same key and window.
    pub update: bool,
}

/// Window slots as stored in a checkpoint: start, fired, per-key accumulators.
type SlotsState<K, A> = Vec<(i64, bool, Vec<(K, A)>)>;

struct Slot<K, A> {
    fired: bool,
    keys: HashMap<K, A, FastState>,
}

/// A window being fired in chunks: its keys in order, and how many have
/// been emitted. Without allowed lateness the accumulators are moved out of
/// the slot (it is dropped after firing anyway), so firing does not copy
/// the state; with lateness they stay in the slot for updates. The slot
/// counts as not fired until all are out; a snapshot holds what is left.
struct Firing<K, A> {
    start: i64,
    entries: Vec<(K, Option<A>)>,
    next: usize,
}

impl<K: Ord, A> Firing<K, A> {
    fn emitted(&self, start: i64, k: &K) -> bool {
        self.start == start
            && self.entries[..self.next]
                .binary_search_by(|(e, _)| e.cmp(k))
                .is_ok()
    }
}

pub(crate) struct WindowOp<K, A: AggregateFunction, KF> {
    pub(crate) key_fn: Arc<KF>,
    pub(crate) agg: A,
    pub(crate) spec: WindowSpec,
    pub(crate) lateness: i64,
    slots: BTreeMap<i64, Slot<K, A::Acc>>,
    firing: Option<Firing<K, A::Acc>>,
    /// Keys in the last window fired: a new slot starts with room for as
    /// many, so it does not grow through a chain of rehashes (each holds
    /// the old table and the new at once).
    last_keys: usize,
    pub(crate) down: BoxOp<WindowResult<K, A::Out>>,
}

impl<K: Key, A: AggregateFunction, KF> WindowOp<K, A, KF> {
    pub(crate) fn new(
        key_fn: Arc<KF>,
        agg: A,
        spec: WindowSpec,
        lateness: i64,
        down: BoxOp<WindowResult<K, A::Out>>,
    ) -> Self {
        Self {
            key_fn,
            agg,
            spec,
            lateness,
            slots: BTreeMap::new(),
            firing: None,
            last_keys: 0,
            down,
        }
    }

    fn window(&self, start: i64) -> TimeWindow {
        TimeWindow {
            start,
            end: start + self.spec.size(),
        }
    }

    fn declare_next_fire(&self, cx: &mut Cx<'_>) {
        if let Some((&start, _)) = self.slots.iter().find(|(_, s)| !s.fired) {
            cx.want_fire_at(self.window(start).max_timestamp());
        }
        if let Some((&start, _)) = self.slots.iter().next() {
            cx.want_fire_at(
                self.window(start)
                    .max_timestamp()
                    .saturating_add(self.lateness),
            );
        }
    }
}

impl<K, A, KF> Operator<A::In> for WindowOp<K, A, KF>
where
    K: Key,
    A: AggregateFunction,
    A::In: Send,
    A::Out: Send + 'static,
    KF: KeySelector<A::In, K>,
{
    fn element(&mut self, el: A::In, ts: i64, cx: &mut Cx<'_>) {
        if ts == NO_TIME {
            cx.bad_element(
                "window",
                "the record has no event time; set one in the source or with with_timestamps"
                    .into(),
            );
            return;
        }
        let wm = cx.watermark;
        let mut accepted = false;
        let (spec, lateness, size) = (self.spec, self.lateness, self.spec.size());
        let (slots, agg, down, firing) = (&mut self.slots, &self.agg, &mut self.down, &self.firing);
        let last_keys = self.last_keys;
        let mut refused = None;
        // New keyed-state entries reserved for this record (the job's
        // bound), and how many were opened.
        let (mut reserved, mut opened) = (0u64, 0u64);
        // One window (tumbling): checked where it is added, with one
        // lookup. Several (sliding): all checked, and the entries the
        // record would open reserved at once, before any is touched.
        let one = matches!(spec, WindowSpec::Tumbling { .. });
        if !one {
            self.key_fn.with_key(&el, |key| {
                spec.for_each_window(ts, |w| {
                    if refused.is_some() || w.max_timestamp().saturating_add(lateness) <= wm {
                        return;
                    }
                    let acc = slots.get(&w.start).and_then(|s| s.keys.get(key));
                    reserved += u64::from(acc.is_none());
                    if let Err(e) = agg.check(acc, &el) {
                        refused = Some(e);
                    }
                });
            });
            if refused.is_none() {
                if let Err(e) = cx.reserve_state(reserved) {
                    refused = Some(e);
                }
            }
        }
        if let Some(reason) = refused {
            cx.bad_element("window", reason);
            return;
        }
        // Windows of the record already final (past the allowed lateness):
        // how many, and the first and last of their starts.
        let mut missed = (0u32, i64::MAX, i64::MIN);
        self.key_fn.with_key(&el, |key| {
            spec.for_each_window(ts, |w| {
                if w.max_timestamp().saturating_add(lateness) <= wm {
                    missed = (missed.0 + 1, missed.1.min(w.start), missed.2.max(w.start));
                    return;
                }
                let slot = match slots.entry(w.start) {
                    Entry::Occupied(o) => o.into_mut(),
                    Entry::Vacant(v) => {
                        if one {
                            if let Err(e) = agg.check(None, &el) {
                                refused = Some(e);
                                return;
                            }
                            // Its key is new in it: reserved before the
                            // slot is made, so a refusal leaves none.
                            if let Err(e) = cx.reserve_state(1) {
                                refused = Some(e);
                                return;
                            }
                            reserved += 1;
                        }
                        v.insert(Slot {
                            fired: false,
                            keys: HashMap::with_capacity_and_hasher(
                                last_keys,
                                FastState::default(),
                            ),
                        })
                    }
                };
                let (acc, existed) = match slot.keys.get_mut(key) {
                    Some(a) => {
                        if one {
                            if let Err(e) = agg.check(Some(a), &el) {
                                refused = Some(e);
                                return;
                            }
                        }
                        (a, true)
                    }
                    None => {
                        if one {
                            if let Err(e) = agg.check(None, &el) {
                                refused = Some(e);
                                return;
                            }
                            if reserved == opened {
                                if let Err(e) = cx.reserve_state(1) {
                                    refused = Some(e);
                                    return;
                                }
                                reserved += 1;
                            }
                        }
                        opened += 1;
                        if let Err(e) = cx.claim_reserved_key(key) {
                            refused = Some(e);
                            return;
                        }
                        let a = slot
                            .keys
                            .entry(key.clone())
                            .or_insert_with(|| agg.create_accumulator());
                        (a, false)
                    }
                };
                accepted = true;
                if !slot.fired {
                    cx.want_fire_at(w.max_timestamp());
                }
                agg.add(acc, &el);
                // Fired, or being fired and this key already out: an update.
                if slot.fired || firing.as_ref().is_some_and(|f| f.emitted(w.start, key)) {
                    let value = agg.get_result(acc);
                    let r = WindowResult {
                        key: key.clone(),
                        window: TimeWindow {
                            start: w.start,
                            end: w.start + size,
                        },
                        value,
                        // A key first seen after its window fired for the other
                        // keys: its first result, not an update.
                        update: existed,
                    };
                    down.element(r, w.max_timestamp(), cx);
                }
            });
        });
        // Reserved for windows a refusal left unopened (a claim given back
        // is counted in `opened`: claim_reserved_key returned it).
        cx.unreserve_state(reserved.saturating_sub(opened));
        if let Some(reason) = refused {
            cx.bad_element("window", reason);
            return;
        }
        if !accepted && missed.0 == 0 {
            // A slide longer than the size leaves gaps between windows.
            cx.late_record(
                "window",
                format!("event time {ts} falls between windows (they slide further than their size, {size} ms): it counts in no window"),
            );
        } else if !accepted {
            cx.late_record(
                "window",
                format!("event time {ts} is behind the watermark {wm} by more than the allowed lateness ({lateness} ms)"),
            );
        } else if missed.0 > 0 {
            // Sliding: counted in its later windows, not in the earlier
            // ones already final. Said, as the record is missing from
            // those; before, only a record late for all of them was.
            cx.late_record(
                "window",
                format!("event time {ts} is behind the watermark {wm} by more than the allowed lateness ({lateness} ms) for {} of its windows, already final (those starting from {} to {}): it counts only in its later windows", missed.0, missed.1, missed.2),
            );
        }
    }

    fn watermark(&mut self, wm: i64, cx: &mut Cx<'_>) {
        let size = self.spec.size();
        for (&start, slot) in self.slots.iter_mut() {
            let w = TimeWindow {
                start,
                end: start + size,
            };
            if w.max_timestamp() > wm {
                break;
            }
            if slot.fired {
                continue;
            }
            let f = match &mut self.firing {
                Some(f) if f.start == start => f,
                other => {
                    self.last_keys = slot.keys.len();
                    let mut entries: Vec<(K, Option<A::Acc>)> = if self.lateness == 0 {
                        let e: Vec<_> = slot.keys.drain().map(|(k, a)| (k, Some(a))).collect();
                        // Its keys leave the window's state here.
                        cx.release_entries(e.iter().map(|(k, _)| k), w.max_timestamp());
                        e
                    } else {
                        slot.keys.keys().map(|k| (k.clone(), None)).collect()
                    };
                    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                    other.insert(Firing {
                        start,
                        entries,
                        next: 0,
                    })
                }
            };
            while f.next < f.entries.len() {
                if cx.outbox_full() {
                    // Let the driver route what is out; it calls again.
                    cx.fire_again();
                    return;
                }
                let (k, owned) = &mut f.entries[f.next];
                f.next += 1;
                let value = match owned.take() {
                    Some(acc) => self.agg.final_result(acc),
                    None => match slot.keys.get(k) {
                        Some(acc) => self.agg.get_result(acc),
                        None => continue,
                    },
                };
                let r = WindowResult {
                    key: k.clone(),
                    window: w,
                    value,
                    update: false,
                };
                self.down.element(r, w.max_timestamp(), cx);
            }
            slot.fired = true;
            self.firing = None;
        }
        let lateness = self.lateness;
        self.slots.retain(|&start, slot| {
            let keep = (start + size - 1).saturating_add(lateness) > wm;
            if !keep {
                let until = (start + size - 1).saturating_add(lateness);
                cx.release_entries(slot.keys.keys(), until);
            }
            keep
        });
        self.down.watermark(wm, cx);
        self.declare_next_fire(cx);
    }

    fn snapshot(&self, out: &mut Vec<Vec<u8>>) -> Result<(), String> {
        let state: SlotsState<&K, &A::Acc> = self
            .slots
            .iter()
            .map(|(s, slot)| {
                let mut keys: Vec<(&K, &A::Acc)> = slot.keys.iter().collect();
                // Accumulators moved out for a firing still in progress.
                if let Some(f) = self.firing.as_ref().filter(|f| f.start == *s) {
                    keys.extend(
                        f.entries[f.next..]
                            .iter()
                            .filter_map(|(k, a)| a.as_ref().map(|a| (k, a))),
                    );
                }
                (*s, slot.fired, keys)
            })
            .collect();
        push_state(out, &state)?;
        self.down.snapshot(out)
    }

    fn restore(
        &mut self,
        states: &mut std::vec::IntoIter<Vec<u8>>,
        cx: &mut Cx<'_>,
    ) -> Result<(), String> {
        let state: SlotsState<K, A::Acc> = next_state(states, "window state")?;
        self.slots.clear();
        self.firing = None;
        self.last_keys = state.iter().map(|(_, _, k)| k.len()).max().unwrap_or(0);
        for (start, fired, keys) in state {
            // No record in scope: counted against the bound, never refused.
            let _ = cx.reserve_state(keys.len() as u64);
            for (k, _) in &keys {
                // No record in scope: a split fails the job.
                let _ = cx.claim_reserved_key(k);
            }
            self.slots.insert(
                start,
                Slot {
                    fired,
                    keys: keys.into_iter().collect(),
                },
            );
        }
        self.declare_next_fire(cx);
        self.down.restore(states, cx)
    }
}
