//! Which source partition holds state of each key, for jobs without an
//! exchange (`partitioned_by_key`): a key whose state two partitions would
//! hold is a split the declared partitioning promised could not happen
//! ([`RuntimeError::KeySplit`]).
//!
//! The table counts, per key hash, the pieces of state its owner holds
//! (one per window a key is in, one per keyed process state). A keyed
//! operator claims a key when it creates state for it and releases it when
//! that state is gone (a fired window after its allowed lateness, a
//! cleared process state), saying up to which event time that state could
//! have taken records. A key none of whose state is left stays owned until
//! every partition's watermark has passed that time ([`KeyOwners::sweep`]):
//! until then a partition behind could still take a record of a window the
//! owner has fired, and would write that window again with only its own
//! part. Then the entry goes. So the table is as large as the live keyed
//! state plus what the partitions' skew in event time holds, not as every
//! key the job has ever seen: before, a job whose keys churn (container
//! ids, request paths) grew it by about 50 bytes per key until its
//! partitions were revoked.
//!
//! A key whose state is all gone and past on every partition may start
//! again on another (a topic given more partitions moves keys; each window
//! of it is still computed whole in one partition).

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use flowline_connector_api::PartitionId;

use crate::budget::{Kind, StateBudget};
use crate::operator::Cx;
use crate::RuntimeError;

type Table = HashMap<u64, Owner, foldhash::fast::RandomState>;

/// The partition holding state of a key, how many pieces (and of them,
/// window entries counted against the job's bound), and the latest event
/// time a released piece could have taken records up to.
#[derive(Debug)]
struct Owner {
    partition: PartitionId,
    pieces: u32,
    entries: u32,
    until: i64,
}

/// Key hash → the partition holding state of it, and how many pieces.
/// Clones share one table: partitions run on several tasks at once
/// (`driver::parts`) claim keys in it under a lock, taken only for a key
/// new to a window or a state (and once per window or state let go), so a
/// key arriving on two partitions is caught whichever task sees it first.
/// The same claims and releases count the job's keyed-state entries
/// against its bound ([`StateBudget`]), shared by every clone and by the
/// workers' tables ([`KeyOwners::sharing_budget`]).
#[derive(Debug, Default, Clone)]
pub(crate) struct KeyOwners {
    owners: Arc<Mutex<Table>>,
    budget: Arc<StateBudget>,
    process: Arc<StateBudget>,
}

impl KeyOwners {
    /// An empty table, keyed state bounded to `limit` entries (`None`: no
    /// bound).
    pub(crate) fn bounded(limit: Option<u64>) -> Self {
        Self {
            owners: Arc::default(),
            budget: Arc::new(StateBudget::new(Kind::Windows, limit)),
            process: Arc::new(StateBudget::new(Kind::Process, limit)),
        }
    }

    /// A table of its own counting against the same bound (a worker's,
    /// behind the exchange).
    pub(crate) fn sharing_budget(&self) -> Self {
        Self {
            owners: Arc::default(),
            budget: self.budget.clone(),
            process: self.process.clone(),
        }
    }

    /// Live window entries of the job.
    pub(crate) fn state_entries(&self) -> u64 {
        self.budget.used()
    }

    /// Live keyed process states of the job.
    pub(crate) fn process_states(&self) -> u64 {
        self.process.used()
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A task that panicked holding the lock left the table whole
        // (inserts and removals do not unwind half-way).
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets go of every key of a partition (revoked, or restored afresh):
    /// its chain, and the state entries it held, are gone.
    pub(crate) fn release(&mut self, p: &PartitionId) {
        let (mut entries, mut states) = (0u64, 0u64);
        self.table().retain(|_, o| {
            let other = o.partition != *p;
            if !other {
                entries += u64::from(o.entries);
                states += u64::from(o.pieces.saturating_sub(o.entries));
            }
            other
        });
        self.budget.give(entries);
        self.process.give(states);
    }

    /// Drops the keys with no state left whose last state could take
    /// records only up to an event time every partition's watermark has
    /// passed (`watermark`, their minimum).
    /// Returns how many keys are left.
    pub(crate) fn sweep(&self, watermark: i64) -> usize {
        let mut t = self.table();
        t.retain(|_, o| o.pieces > 0 || o.until > watermark);
        t.len()
    }

    /// Keys with an owner.
    pub(crate) fn len(&self) -> usize {
        self.table().len()
    }
}

/// Hashes a key with a fixed-key hasher (the same in every process).
pub(crate) fn key_hash<K: Hash>(k: &K) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x5EED_F10E).hash_one(k)
}

impl Cx<'_> {
    /// Records that `key` has one more piece of state in this partition.
    /// When another partition owns it, the record being processed is
    /// refused: `Err` with the reason, for the caller to dead-letter it and
    /// leave its state alone (the input is not partitioned as `keyed_by`
    /// said, and failing the job would fail it again at every restart on
    /// the same record). Without a record in scope (a restore, a timer) the
    /// job fails, as the state of one key is split already.
    pub(crate) fn claim_key<K: Hash + Debug>(&mut self, key: &K) -> Result<(), String> {
        self.claim(key, false)
    }

    /// Reserves `n` new window entries for the record in scope, or says
    /// why not (the job's bound, [`StateBudget`]). Without a record in
    /// scope (a restore) they are counted and never refused.
    pub(crate) fn reserve_state(&mut self, n: u64) -> Result<(), String> {
        if self.record.is_none() {
            self.owners.budget.take(n);
            return Ok(());
        }
        self.owners.budget.reserve(n)
    }

    /// `n` reserved entries were not used after all.
    pub(crate) fn unreserve_state(&mut self, n: u64) {
        self.owners.budget.give(n);
    }

    /// Reserves a keyed process state for a key new to its operator, or
    /// says why not (the job's bound). Refused with or without a record in
    /// scope: the function handles the element without state.
    pub(crate) fn reserve_process_state(&mut self) -> Result<(), String> {
        self.owners.process.reserve(1)
    }

    /// Counts `n` keyed process states that exist already (restored) or
    /// must (a timer's), never refused.
    pub(crate) fn count_process_states(&mut self, n: u64) {
        self.owners.process.take(n);
    }

    /// A keyed process state reserved or counted was not made after all.
    pub(crate) fn uncount_process_state(&mut self) {
        self.owners.process.give(1);
    }

    /// A keyed process state of `key` is gone (see `release`); it goes
    /// back to the job's bound.
    pub(crate) fn release_process_key<K: Hash>(&mut self, key: &K, until: i64) {
        self.release([key], until, false);
        self.owners.process.give(1);
    }

    /// [`Cx::claim_key`] for a window entry reserved with
    /// [`Cx::reserve_state`]: given back when the claim is refused.
    pub(crate) fn claim_reserved_key<K: Hash + Debug>(&mut self, key: &K) -> Result<(), String> {
        self.claim(key, true)
            .inspect_err(|_| self.owners.budget.give(1))
    }

    fn claim<K: Hash + Debug>(&mut self, key: &K, entry: bool) -> Result<(), String> {
        if let Some(g) = self.key_group {
            let own = crate::exchange::key_group(key);
            if own != g {
                self.outbox.fail(RuntimeError::KeyGroup {
                    key: format!("{key:?}"),
                    group: own,
                    arrived: g,
                });
            }
            return Ok(());
        }
        let h = key_hash(key);
        let entry = u32::from(entry);
        let mut table = self.owners.table();
        match table.get_mut(&h) {
            Some(o) if o.partition == *self.partition => {
                o.pieces += 1;
                o.entries += entry;
            }
            Some(Owner { partition: p, .. }) => {
                let split = RuntimeError::KeySplit {
                    key: format!("{key:?}"),
                    first: p.clone(),
                    second: self.partition.clone(),
                };
                if self.record.is_some() {
                    return Err(format!(
                        "{split}. The key stays with `{p}`; this record is not counted"
                    ));
                }
                self.outbox.fail(split);
            }
            None => {
                table.insert(
                    h,
                    Owner {
                        partition: self.partition.clone(),
                        pieces: 1,
                        entries: entry,
                        until: i64::MIN,
                    },
                );
            }
        }
        Ok(())
    }

    /// One piece of state of each of these window entries is gone (see
    /// `release`); they go back to the job's bound.
    pub(crate) fn release_entries<'k, K: Hash + 'k>(
        &mut self,
        keys: impl IntoIterator<Item = &'k K>,
        until: i64,
    ) {
        let n = self.release(keys, until, true);
        self.owners.budget.give(n);
    }

    /// One piece of state of each of these keys is gone from this
    /// partition (one lock for them all); it could have taken records up
    /// to event time `until` (a window's last time plus the allowed
    /// lateness). A key another partition owns was never counted here (its
    /// claim failed), so it is left alone. `entries`: the pieces are window
    /// entries. Returns how many keys were given.
    fn release<'k, K: Hash + 'k>(
        &mut self,
        keys: impl IntoIterator<Item = &'k K>,
        until: i64,
        entries: bool,
    ) -> u64 {
        if self.key_group.is_some() {
            return keys.into_iter().count() as u64;
        }
        let mut keys = keys.into_iter().peekable();
        if keys.peek().is_none() {
            return 0;
        }
        let mut n = 0u64;
        let mut table = self.owners.table();
        for k in keys {
            n += 1;
            let h = key_hash(k);
            if let Some(o) = table.get_mut(&h) {
                if o.partition == *self.partition {
                    o.pieces = o.pieces.saturating_sub(1);
                    if entries {
                        o.entries = o.entries.saturating_sub(1);
                    }
                    o.until = o.until.max(until);
                }
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::held::Kept;
    use crate::operator::{InScope, Outbox};
    use flowline_connector_api::Record;

    fn cx<'a>(
        owners: &'a mut KeyOwners,
        outbox: &'a mut Outbox,
        p: &'a PartitionId,
        record: Option<&'a Kept>,
    ) -> Cx<'a> {
        Cx {
            partition: p,
            record: record.map_or(InScope::None, InScope::Lent),
            watermark: 0,
            max_ts: 0,
            out_of_orderness: 0,
            next_fire: i64::MAX,
            outbox,
            owners,
            again: false,
            worker: 0,
            key_group: None,
        }
    }

    fn claim(
        owners: &mut KeyOwners,
        outbox: &mut Outbox,
        partition: &str,
        record: Option<&Kept>,
    ) -> Result<(), String> {
        let p = PartitionId::new(partition);
        cx(owners, outbox, &p, record).claim_key(&"k")
    }

    #[test]
    fn a_key_another_partition_holds_refuses_the_record_or_fails_without_one() {
        let (mut owners, mut outbox) = (KeyOwners::default(), Outbox::default());
        let rec = Kept::new(Record::new("k,1"));
        assert_eq!(claim(&mut owners, &mut outbox, "p0", Some(&rec)), Ok(()));
        assert_eq!(claim(&mut owners, &mut outbox, "p0", None), Ok(()));
        // A record of it on another partition: refused, the job goes on.
        let e = claim(&mut owners, &mut outbox, "p1", Some(&rec)).unwrap_err();
        assert!(
            e.contains("seen on source partition `p0` and then on `p1`")
                && e.contains("The key stays with `p0`"),
            "{e}"
        );
        assert!(outbox.error.is_none());
        // Restored state of it on another partition: already split.
        assert_eq!(claim(&mut owners, &mut outbox, "p1", None), Ok(()));
        assert!(matches!(outbox.error, Some(RuntimeError::KeySplit { .. })));
        // Once the owner's partition is released, another may take it.
        owners.release(&PartitionId::new("p0"));
        let mut fresh = Outbox::default();
        assert_eq!(claim(&mut owners, &mut fresh, "p1", Some(&rec)), Ok(()));
    }

    #[test]
    fn a_released_partition_gives_back_the_state_entries_it_held() {
        let (mut owners, mut outbox) = (KeyOwners::bounded(Some(10)), Outbox::default());
        let (p0, p1) = (PartitionId::new("p0"), PartitionId::new("p1"));
        for (p, k) in [(&p0, "a"), (&p0, "a"), (&p0, "b"), (&p1, "c")] {
            let mut c = cx(&mut owners, &mut outbox, p, None);
            c.reserve_state(1).unwrap();
            c.claim_reserved_key(&k).unwrap();
        }
        // A process state: no window entry.
        cx(&mut owners, &mut outbox, &p0, None)
            .claim_key(&"d")
            .unwrap();
        let worker = owners.sharing_budget();
        assert_eq!((owners.state_entries(), worker.state_entries()), (4, 4));
        // One window of `a` closed, then p0 revoked with the rest.
        cx(&mut owners, &mut outbox, &p0, None).release_entries([&"a"], 0);
        assert_eq!(owners.state_entries(), 3);
        owners.release(&p0);
        assert_eq!(worker.state_entries(), 1);
    }

    #[test]
    fn a_key_is_owned_while_any_piece_of_its_state_is_held() {
        let (mut owners, mut outbox) = (KeyOwners::default(), Outbox::default());
        let (p0, p1) = (PartitionId::new("p0"), PartitionId::new("p1"));
        let rec = Kept::new(Record::new("k,1"));
        // Two windows of `k` and a state of `j` on p0.
        for _ in 0..2 {
            cx(&mut owners, &mut outbox, &p0, None)
                .claim_key(&"k")
                .unwrap();
        }
        cx(&mut owners, &mut outbox, &p0, None)
            .claim_key(&"j")
            .unwrap();
        assert_eq!(owners.len(), 2);
        // p1 letting go of keys it never held changes nothing.
        cx(&mut owners, &mut outbox, &p1, None).release_process_key(&"k", 5_000);
        cx(&mut owners, &mut outbox, &p1, None).release_process_key(&"j", 5_000);
        owners.sweep(i64::MAX);
        assert_eq!(owners.len(), 2);
        // One window of `k` gone (it took records up to 1999): p0 still
        // holds the other.
        cx(&mut owners, &mut outbox, &p0, None).release_process_key(&"k", 1_999);
        owners.sweep(i64::MAX);
        let held = cx(&mut owners, &mut outbox, &p1, Some(&rec)).claim_key(&"k");
        assert!(held.is_err(), "{held:?}");
        // Both gone, the last taking records up to 2999: owned until every
        // partition's watermark is there, as one behind could still take a
        // record of it.
        cx(&mut owners, &mut outbox, &p0, None).release_process_key(&"k", 2_999);
        owners.sweep(2_998);
        let held = cx(&mut owners, &mut outbox, &p1, Some(&rec)).claim_key(&"k");
        assert!(held.is_err(), "{held:?}");
        // p0 may take it again meanwhile.
        cx(&mut owners, &mut outbox, &p0, None)
            .claim_key(&"k")
            .unwrap();
        cx(&mut owners, &mut outbox, &p0, None).release_process_key(&"k", 2_999);
        owners.sweep(2_999);
        assert_eq!(owners.len(), 1);
        cx(&mut owners, &mut outbox, &p1, Some(&rec))
            .claim_key(&"k")
            .unwrap();
        cx(&mut owners, &mut outbox, &p0, None).release_process_key(&"j", 0);
        owners.sweep(0);
        assert_eq!(owners.len(), 1);
        assert!(outbox.error.is_none());
    }
}
