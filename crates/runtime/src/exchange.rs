//! The hash exchange: keyed state by key group, not by source partition.
//!
//! A job whose input is not partitioned by its key (null-keyed or
//! round-robin topics, another key) is split at `key_by` in two: the
//! operators before it run per source partition on the driver, and end in
//! an [`ExchangeOp`] that sends each element to the worker owning its key's
//! key group; the keyed operators and everything after them run on the
//! workers, one chain per key group ([`KeyGroups`]).
//!
//! There are [`KEY_GROUPS`] key groups, as Flink's maximum parallelism: a
//! key's group is a hash of the key that never changes
//! ([`StableHasher`]), and a group's state moves whole between workers, so
//! a job restored with another worker count gives each worker the groups in
//! its range ([`worker_of`]).

use std::any::Any;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use flowline_connector_api::PartitionId;

use crate::held::{InScope, Stored};
use crate::keyed::KeySelector;
use crate::operator::{BoxOp, Cx, KeyOwners, Operator, Outbox, NO_TIME};

/// Key groups of a job with an exchange. Part of the job graph: state
/// checkpointed by key group is restored only into the same count.
pub(crate) const KEY_GROUPS: u16 = 128;

/// A 64-bit hash that depends on the key's bytes only: the same in every
/// process, build and version (a key's group decides where its checkpointed
/// state is). Word-at-a-time multiply-rotate, murmur3's finalizer.
#[derive(Debug)]
pub(crate) struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        Self(0x243F_6A88_85A3_08D3)
    }
}

const M: u64 = 0x9E37_79B9_7F4A_7C15;

impl StableHasher {
    fn mix(&mut self, w: u64) {
        self.0 = (self.0 ^ w).wrapping_mul(M).rotate_left(29);
    }
}

/// The 1 to 7 bytes of `rest` as a little-endian word, read without a
/// copy of variable length (a `memcpy` call per key part otherwise).
fn tail(rest: &[u8]) -> u64 {
    let n = rest.len();
    if n >= 4 {
        let lo = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let hi = u32::from_le_bytes([rest[n - 4], rest[n - 3], rest[n - 2], rest[n - 1]]);
        // The two reads overlap when n < 8: the shared bytes are equal.
        u64::from(lo) | (u64::from(hi) << (8 * (n - 4)))
    } else {
        u64::from(rest[0])
            | (u64::from(rest[n / 2]) << (8 * (n / 2)))
            | (u64::from(rest[n - 1]) << (8 * (n - 1)))
    }
}

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.mix(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            self.mix(tail(rest) ^ ((rest.len() as u64) << 59));
        }
    }
    /// `write(&[b])`, as one word (`str` hashes end with one).
    fn write_u8(&mut self, b: u8) {
        self.mix(u64::from(b) ^ (1 << 59));
    }
    /// Lengths are hashed as 64 bits on every platform.
    fn write_usize(&mut self, n: usize) {
        self.write(&(n as u64).to_le_bytes())
    }
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h ^= h >> 33;
        h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        h ^ (h >> 33)
    }
}

/// The key group of `key`.
pub(crate) fn key_group<K: Hash + ?Sized>(key: &K) -> u16 {
    let mut h = StableHasher::default();
    key.hash(&mut h);
    (h.finish() % u64::from(KEY_GROUPS)) as u16
}

/// The worker of `workers` that owns key group `kg`: contiguous ranges, as
/// Flink assigns key groups to subtasks.
pub(crate) fn worker_of(kg: u16, workers: usize) -> usize {
    usize::from(kg) * workers / usize::from(KEY_GROUPS)
}

/// One element on its way through the exchange, with where its source
/// record is in the batch (the keyed operators dead-letter it: late, no
/// event time, refused).
pub(crate) struct Item<T> {
    pub(crate) kg: u16,
    pub(crate) el: T,
    pub(crate) ts: i64,
    /// Its source partition's watermark when it was sent.
    pub(crate) wm: i64,
    /// Its source record's index in the batch's `records`.
    pub(crate) rec: Option<u32>,
}

/// The last operator before the exchange: puts each element in the batch of
/// the worker owning its key group (`Outbox::exchange`); the driver sends
/// the batches after each source batch.
pub(crate) struct ExchangeOp<KF, K> {
    pub(crate) key_fn: Arc<KF>,
    pub(crate) _k: std::marker::PhantomData<fn() -> K>,
}

impl<T, K, KF> Operator<T> for ExchangeOp<KF, K>
where
    T: Send + 'static,
    K: Hash + 'static,
    KF: KeySelector<T, K>,
{
    fn element(&mut self, el: T, ts: i64, cx: &mut Cx<'_>) {
        let kg = self.key_fn.with_key(&el, |k| key_group(k));
        let workers = cx.outbox.exchange.len();
        let w = worker_of(kg, workers);
        let room = cx.outbox.exchange_room;
        let batch = cx.outbox.exchange[w].get_or_insert_with(|| ExBatch {
            items: Box::new(Vec::<Item<T>>::with_capacity(room)),
            len: 0,
            records: Vec::with_capacity(room),
            reserved: 0,
        });
        let rec = match &mut cx.record {
            InScope::Held(_, h) => Some(h.send_to(w, batch)),
            InScope::Lent(_) | InScope::None => None,
        };
        batch.len += 1;
        batch
            .items
            .downcast_mut::<Vec<Item<T>>>()
            .expect("one element type per exchange")
            .push(Item {
                kg,
                el,
                ts,
                wm: cx.watermark,
                rec,
            });
        cx.outbox.exchanged += 1;
    }
    fn watermark(&mut self, _wm: i64, _cx: &mut Cx<'_>) {}
    fn snapshot(&self, _out: &mut Vec<Vec<u8>>) -> Result<(), String> {
        Ok(())
    }
    fn restore(
        &mut self,
        _states: &mut std::vec::IntoIter<Vec<u8>>,
        _cx: &mut Cx<'_>,
    ) -> Result<(), String> {
        Ok(())
    }
}

/// A batch for one worker: a `Vec<Item<T>>` of the exchange's element
/// type, its length (what the driver counts against the worker's budget of
/// elements in flight, `driver::workers`), and the source records its
/// elements were read from (`held`).
#[derive(Debug)]
pub(crate) struct ExBatch {
    pub(crate) items: Box<dyn Any + Send>,
    pub(crate) len: usize,
    pub(crate) records: Vec<Stored>,
    /// Places in `records` given out ([`crate::held::Trail::send_to`]).
    pub(crate) reserved: u32,
}

/// A worker's key groups, whatever the element type: what the worker task
/// calls.
pub(crate) trait Groups: Send {
    /// Takes a group (empty) into this worker.
    fn add(&mut self, kg: u16);
    /// Restores a group from its checkpointed operator states.
    fn restore(
        &mut self,
        kg: u16,
        states: Vec<Vec<u8>>,
        cx: &mut GroupCx<'_>,
    ) -> Result<(), String>;
    /// Hands a batch's elements to their groups' chains; `floor` is a
    /// lower bound of their partition watermarks (see `ToWorker::Data`).
    fn data(&mut self, batch: ExBatch, floor: i64, cx: &mut GroupCx<'_>);
    /// Fires the chain of the first group due at `wm`, if any: `true` when
    /// it did (call again after routing the outbox), `false` when none is.
    fn fire_one(&mut self, wm: i64, cx: &mut GroupCx<'_>) -> bool;
    /// Every group's operator states.
    fn snapshot(&self) -> Result<BTreeMap<u16, Vec<Vec<u8>>>, String>;
}

/// What a group's chain runs in, lent by the worker.
pub(crate) struct GroupCx<'a> {
    pub(crate) watermark: i64,
    pub(crate) worker: usize,
    pub(crate) outbox: &'a mut Outbox,
    pub(crate) owners: &'a mut KeyOwners,
    pub(crate) partition: &'a PartitionId,
}

struct Group<T> {
    chain: BoxOp<T>,
    next_fire: i64,
    /// The watermark it was last fired with.
    fired: i64,
    /// Its last firing stopped at a full outbox: fire again.
    again: bool,
}

impl<T> Group<T> {
    fn new(chain: BoxOp<T>, next_fire: i64) -> Self {
        Self {
            chain,
            next_fire,
            fired: NO_TIME,
            again: false,
        }
    }
    /// Due at `wm`: something wants it, once per watermark (the end of the
    /// input, `i64::MAX`, fires every group once), or a firing to finish.
    fn due(&self, wm: i64) -> bool {
        self.again || (self.next_fire <= wm && self.fired < wm)
    }
}

/// The key groups of one worker, each with its own chain of the keyed
/// operators (so that a group's state snapshots and moves alone).
pub(crate) struct KeyGroups<T> {
    pub(crate) factory: Arc<dyn Fn() -> BoxOp<T> + Send + Sync>,
    /// Indexed by key group, `None` where another worker owns it: a look-up
    /// per element without a search, and iteration in key-group order.
    groups: Vec<Option<Group<T>>>,
}

impl<T> KeyGroups<T> {
    pub(crate) fn new(factory: Arc<dyn Fn() -> BoxOp<T> + Send + Sync>) -> Self {
        Self {
            factory,
            groups: std::iter::repeat_with(|| None)
                .take(usize::from(KEY_GROUPS))
                .collect(),
        }
    }

    /// The groups this worker owns, in key-group order.
    fn owned(&mut self) -> impl Iterator<Item = (u16, &mut Group<T>)> {
        (0..KEY_GROUPS)
            .zip(&mut self.groups)
            .filter_map(|(kg, g)| Some((kg, g.as_mut()?)))
    }
}

fn cx_for<'a>(g: &'a mut GroupCx<'_>, kg: u16, next_fire: i64) -> Cx<'a> {
    Cx {
        partition: g.partition,
        record: InScope::None,
        watermark: g.watermark,
        max_ts: NO_TIME,
        out_of_orderness: 0,
        next_fire,
        outbox: &mut *g.outbox,
        owners: &mut *g.owners,
        again: false,
        worker: g.worker,
        key_group: Some(kg),
    }
}

impl<T: Send + 'static> Groups for KeyGroups<T> {
    fn add(&mut self, kg: u16) {
        let chain = (self.factory)();
        // Owned groups come from `worker_of` over 0..KEY_GROUPS.
        if let Some(slot) = self.groups.get_mut(usize::from(kg)) {
            slot.get_or_insert(Group::new(chain, i64::MAX));
        }
    }

    fn restore(
        &mut self,
        kg: u16,
        states: Vec<Vec<u8>>,
        g: &mut GroupCx<'_>,
    ) -> Result<(), String> {
        let mut chain = (self.factory)();
        let mut cx = cx_for(g, kg, i64::MAX);
        chain.restore(&mut states.into_iter(), &mut cx)?;
        let next_fire = cx.next_fire;
        let slot = self
            .groups
            .get_mut(usize::from(kg))
            .ok_or_else(|| format!("key group {kg} is not below {KEY_GROUPS}"))?;
        *slot = Some(Group::new(chain, next_fire));
        Ok(())
    }

    fn data(&mut self, batch: ExBatch, floor: i64, g: &mut GroupCx<'_>) {
        let ExBatch { items, records, .. } = batch;
        let items = *items
            .downcast::<Vec<Item<T>>>()
            .expect("one element type per exchange");
        for it in items {
            let Some(group) = self
                .groups
                .get_mut(usize::from(it.kg))
                .and_then(Option::as_mut)
            else {
                g.outbox.fail(crate::RuntimeError::Internal(format!(
                    "key group {} reached worker {} that does not own it",
                    it.kg, g.worker
                )));
                return;
            };
            let mut cx = cx_for(g, it.kg, group.next_fire);
            // Lateness is judged against the element's own partition's
            // watermark, as without an exchange: which events count is the
            // same in every run and replay, whatever the timing of the
            // workers' watermark (never below it: a window fired here takes
            // no event behind it).
            cx.watermark = cx.watermark.max(it.wm).max(floor);
            match it.rec {
                Some(i) => {
                    let Some(r) = records.get(i as usize).and_then(Stored::get) else {
                        cx.outbox.fail(crate::RuntimeError::Internal(format!(
                            "an element's source record (place {i}) is missing from its batch"
                        )));
                        return;
                    };
                    // Lent for this element's call alone: the context is
                    // the element's own, so nothing is scoped around it.
                    cx.record = InScope::Lent(r);
                    group.chain.element(it.el, it.ts, &mut cx)
                }
                None => group.chain.element(it.el, it.ts, &mut cx),
            }
            group.next_fire = cx.next_fire;
        }
    }

    fn fire_one(&mut self, wm: i64, g: &mut GroupCx<'_>) -> bool {
        let Some((kg, group)) = self.owned().find(|(_, gr)| gr.due(wm)) else {
            return false;
        };
        let mut cx = cx_for(g, kg, i64::MAX);
        cx.watermark = wm;
        group.chain.watermark(wm, &mut cx);
        group.fired = wm;
        group.again = cx.again;
        group.next_fire = cx.next_fire;
        true
    }

    fn snapshot(&self) -> Result<BTreeMap<u16, Vec<Vec<u8>>>, String> {
        let mut out = BTreeMap::new();
        let owned = (0..KEY_GROUPS).zip(&self.groups);
        for (kg, g) in owned.filter_map(|(kg, g)| Some((kg, g.as_ref()?))) {
            let mut states = Vec::new();
            g.chain
                .snapshot(&mut states)
                .map_err(|e| format!("key group {kg}: {e}"))?;
            out.insert(kg, states);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_groups_are_stable_and_spread() {
        // Fixed values: a change of the hash would move checkpointed state
        // to the wrong groups, so it must fail here first.
        assert_eq!(key_group("host-1"), key_group(&"host-1".to_string()));
        let got: Vec<u16> = ["a", "host-1", "host-2", ""]
            .iter()
            .map(key_group)
            .collect();
        assert_eq!(got, vec![116, 108, 27, 55]);
        let mut seen = [0u32; KEY_GROUPS as usize];
        for i in 0..12_800 {
            seen[usize::from(key_group(&format!("host-{i}")))] += 1;
        }
        assert!(seen.iter().all(|&n| (50..=150).contains(&n)), "{seen:?}");
    }

    /// The hash as first written: a zero-padded copy of the tail.
    fn reference(bytes: &[u8]) -> u64 {
        let mut h = 0x243F_6A88_85A3_08D3u64;
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            let mut w = u64::from_le_bytes(w);
            if c.len() < 8 {
                w ^= (c.len() as u64) << 59;
            }
            h = (h ^ w).wrapping_mul(M).rotate_left(29);
        }
        h
    }

    proptest::proptest! {
        #[test]
        fn the_hash_equals_the_reference(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40), b: u8) {
            let mut h = StableHasher::default();
            h.write(&bytes);
            proptest::prop_assert_eq!(h.0, reference(&bytes));
            let mut h = StableHasher::default();
            h.write_u8(b);
            proptest::prop_assert_eq!(h.0, reference(&[b]));
        }
    }

    #[test]
    fn workers_own_contiguous_ranges_covering_every_group() {
        for workers in 1..=7 {
            let owners: Vec<usize> = (0..KEY_GROUPS).map(|g| worker_of(g, workers)).collect();
            assert!(owners.windows(2).all(|w| w[0] <= w[1]));
            assert_eq!(owners[0], 0);
            assert_eq!(*owners.last().unwrap(), workers - 1);
        }
    }
}
