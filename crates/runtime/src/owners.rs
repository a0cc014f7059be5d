//! Which source partition holds state of each key, for jobs without an
//! exchange (`partitioned_by_key`): a key whose state two partitions would
//! hold is a split the declared partitioning promised could not happen
//! ([`RuntimeError::KeySplit`]).
//!
//! The table counts, per key hash, the pieces of state its owner holds
//! (one per window a key is in, one per keyed process state). A keyed
//! operator claims a key when it creates state for it and releases it when
//! that state is gone (a fired window after its allowed lateness, a
//! cleared process state); at a count of 0 the entry goes. So the table is
//! as large as the live keyed state, not as every key the job has ever
//! seen: before, a job whose keys churn (container ids, request paths) grew
//! it by about 50 bytes per key until its partitions were revoked.
//!
//! What counts as a split is therefore what a restore would see: state of
//! one key in two partitions at once. A key whose state on one partition is
//! all gone may start again on another (a topic given more partitions moves
//! keys; the job's windows of it stay whole, each in one partition).

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use flowline_connector_api::PartitionId;

use crate::operator::Cx;
use crate::RuntimeError;

type Table = HashMap<u64, (PartitionId, u32), foldhash::fast::RandomState>;

/// Key hash → the partition holding state of it, and how many pieces.
/// Clones share one table: partitions run on several tasks at once
/// (`driver::parts`) claim keys in it under a lock, taken only for a key
/// new to a window or a state (and once per window or state let go), so a
/// key arriving on two partitions is caught whichever task sees it first.
#[derive(Debug, Default, Clone)]
pub(crate) struct KeyOwners {
    owners: Arc<Mutex<Table>>,
}

impl KeyOwners {
    fn table(&self) -> MutexGuard<'_, Table> {
        // A task that panicked holding the lock left the table whole
        // (inserts and removals do not unwind half-way).
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets go of every key of a partition (revoked, or restored afresh).
    pub(crate) fn release(&mut self, p: &PartitionId) {
        self.table().retain(|_, (v, _)| v != p);
    }

    /// Keys with an owner.
    #[cfg(test)]
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
        if let Some(g) = self.key_group {
            let own = crate::exchange::key_group(key);
            if own != g && self.outbox.error.is_none() {
                self.outbox.error = Some(RuntimeError::KeyGroup {
                    key: format!("{key:?}"),
                    group: own,
                    arrived: g,
                });
            }
            return Ok(());
        }
        let h = key_hash(key);
        let mut table = self.owners.table();
        match table.get_mut(&h) {
            Some((p, n)) if p == self.partition => *n += 1,
            Some((p, _)) => {
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
                if self.outbox.error.is_none() {
                    self.outbox.error = Some(split);
                }
            }
            None => {
                table.insert(h, (self.partition.clone(), 1));
            }
        }
        Ok(())
    }

    /// One piece of state of each of these keys is gone from this
    /// partition (one lock for them all). A key another partition owns was
    /// never counted here (its claim failed), so it is left alone.
    pub(crate) fn release_keys<'k, K: Hash + 'k>(&mut self, keys: impl IntoIterator<Item = &'k K>) {
        if self.key_group.is_some() {
            return;
        }
        let mut keys = keys.into_iter().peekable();
        if keys.peek().is_none() {
            return;
        }
        let mut table = self.owners.table();
        for k in keys {
            let h = key_hash(k);
            if let Some((p, n)) = table.get_mut(&h) {
                if p == self.partition {
                    *n -= 1;
                    if *n == 0 {
                        table.remove(&h);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::{Held, Outbox};
    use flowline_connector_api::Record;

    fn cx<'a>(
        owners: &'a mut KeyOwners,
        outbox: &'a mut Outbox,
        p: &'a PartitionId,
        record: Option<&'a mut Held>,
    ) -> Cx<'a> {
        Cx {
            partition: p,
            record,
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
        record: Option<&mut Held>,
    ) -> Result<(), String> {
        let p = PartitionId::new(partition);
        cx(owners, outbox, &p, record).claim_key(&"k")
    }

    #[test]
    fn a_key_another_partition_holds_refuses_the_record_or_fails_without_one() {
        let (mut owners, mut outbox) = (KeyOwners::default(), Outbox::default());
        let mut rec = Held::Owned(Record::new("k,1"));
        assert_eq!(
            claim(&mut owners, &mut outbox, "p0", Some(&mut rec)),
            Ok(())
        );
        assert_eq!(claim(&mut owners, &mut outbox, "p0", None), Ok(()));
        // A record of it on another partition: refused, the job goes on.
        let e = claim(&mut owners, &mut outbox, "p1", Some(&mut rec)).unwrap_err();
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
        assert_eq!(claim(&mut owners, &mut fresh, "p1", Some(&mut rec)), Ok(()));
    }

    #[test]
    fn a_key_is_owned_while_any_piece_of_its_state_is_held() {
        let (mut owners, mut outbox) = (KeyOwners::default(), Outbox::default());
        let (p0, p1) = (PartitionId::new("p0"), PartitionId::new("p1"));
        let mut rec = Held::Owned(Record::new("k,1"));
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
        cx(&mut owners, &mut outbox, &p1, None).release_keys([&"k", &"j"]);
        // One window of `k` gone: p0 still holds the other.
        cx(&mut owners, &mut outbox, &p0, None).release_keys([&"k"]);
        let held = cx(&mut owners, &mut outbox, &p1, Some(&mut rec)).claim_key(&"k");
        assert!(held.is_err(), "{held:?}");
        // Both gone: the entry goes, and another partition may take `k`.
        cx(&mut owners, &mut outbox, &p0, None).release_keys([&"k"]);
        assert_eq!(owners.len(), 1);
        cx(&mut owners, &mut outbox, &p1, Some(&mut rec))
            .claim_key(&"k")
            .unwrap();
        cx(&mut owners, &mut outbox, &p0, None).release_keys([&"j"]);
        assert_eq!(owners.len(), 1);
        assert!(outbox.error.is_none());
    }
}
