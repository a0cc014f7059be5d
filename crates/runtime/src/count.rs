//! Element counts of the chain's stages, cheap on the record path: a count
//! is sharded by the thread that adds to it, so the driver, the workers
//! and the decode tasks each add to a cache line of their own, and a thread
//! that holds a shard of its own adds with a plain load and store instead
//! of an atomic read-modify-write.

use std::sync::atomic::{
    AtomicU32, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::sync::Arc;

/// Shards of a [`Count`]: one per thread up to this many.
const COUNT_SHARDS: usize = 8;

#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard(AtomicU64);

/// A count of elements, sharded by the thread that counts: each thread adds
/// to its own cache line, so the driver, the workers and the decode tasks
/// do not contend on a stage's count. (Sharded by task before, the driver,
/// worker 0 and the first decode chunk all added to shard 0 from their own
/// threads: an e2e job spent 3 % of its CPU passing that line around.)
#[derive(Debug, Clone, Default)]
pub(crate) struct Count(Arc<[Shard; COUNT_SHARDS]>);

/// The shard every thread counts on while all the others are held.
const SHARED: usize = COUNT_SHARDS - 1;

/// Which of the shards below [`SHARED`] a living thread holds (bit `i` for
/// shard `i`).
static HELD: AtomicU32 = AtomicU32::new(0);

/// Takes the lowest shard below [`SHARED`] that no thread holds, or
/// [`SHARED`] when every one is held. Acquire pairs with [`give_back`]'s
/// release: the new holder sees its last holder's counts, so its plain
/// load and store lose none.
fn take(held: &AtomicU32) -> usize {
    let own = (1u32 << SHARED) - 1;
    let mut cur = held.load(Relaxed);
    loop {
        let free = !cur & own;
        if free == 0 {
            return SHARED;
        }
        let i = free.trailing_zeros();
        match held.compare_exchange_weak(cur, cur | 1 << i, Acquire, Relaxed) {
            Ok(_) => return i as usize,
            Err(now) => cur = now,
        }
    }
}

/// Frees shard `i` for the next thread to count (nothing for [`SHARED`]).
fn give_back(held: &AtomicU32, i: usize) {
    if i < SHARED {
        held.fetch_and(!(1u32 << i), Release);
    }
}

/// A thread's shard, given back when the thread ends: a short-lived thread
/// does not keep a shard from the threads that count after it.
struct Holder(usize);

impl Drop for Holder {
    fn drop(&mut self) {
        give_back(&HELD, self.0);
    }
}

thread_local! {
    static HOLDER: Holder = Holder(take(&HELD));
}

/// This thread's shard: its own while it lives, while fewer than
/// [`SHARED`] other counting threads live; else the shared one, with an
/// atomic add.
fn shard() -> usize {
    // A thread whose locals are being destroyed counts on the shared one.
    HOLDER.try_with(|h| h.0).unwrap_or(SHARED)
}

impl Count {
    #[inline]
    pub(crate) fn add1(&self) {
        let i = shard();
        let s = &self.0[i].0;
        if i < SHARED {
            // This thread is the shard's only writer: no read-modify-write
            // (an atomic add costs more than the rest of a stage's hand-off).
            s.store(s.load(Relaxed) + 1, Relaxed);
        } else {
            s.fetch_add(1, Relaxed);
        }
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Barrier, Mutex, MutexGuard, PoisonError};

    /// One of these tests at a time: the one with many threads holds every
    /// shard while it runs.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    fn one_at_a_time() -> MutexGuard<'static, ()> {
        ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `n` threads, all alive until each has taken its shard, each adding
    /// `per` to `count`; their shards.
    fn count_on(count: &Count, n: usize, per: u64) -> Vec<usize> {
        let (start, taken) = (Arc::new(Barrier::new(n)), Arc::new(Barrier::new(n)));
        let threads: Vec<_> = (0..n)
            .map(|_| {
                let (c, start, taken) = (count.clone(), start.clone(), taken.clone());
                std::thread::spawn(move || {
                    start.wait();
                    c.add1();
                    // All at once from here, so that several threads write
                    // the shared shard at the same time.
                    taken.wait();
                    for _ in 1..per {
                        c.add1();
                    }
                    shard()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    }

    #[test]
    fn threads_past_the_own_shards_share_one_and_lose_no_count() {
        let _one = one_at_a_time();
        let count = Count::default();
        let n = 3 * COUNT_SHARDS;
        let shards = count_on(&count, n, 200_000);
        // Exact: a plain store on the shared shard loses counts.
        assert_eq!(count.get(), n as u64 * 200_000);
        assert!(shards.iter().filter(|&&s| s == SHARED).count() >= n - SHARED);
    }

    #[test]
    fn threads_count_on_shards_of_their_own_and_the_total_is_exact() {
        let _one = one_at_a_time();
        let count = Count::default();
        let shards = count_on(&count, 4, 10_000);
        assert_eq!(count.get(), 40_000);
        // Other tests' threads may hold shards too; of this test's, no two
        // share an own shard, and each own shard holds its thread's count.
        let own: Vec<usize> = shards.iter().copied().filter(|&s| s < SHARED).collect();
        let distinct: std::collections::BTreeSet<_> = own.iter().collect();
        assert_eq!(
            distinct.len(),
            own.len(),
            "threads shared a shard: {shards:?}"
        );
        for s in own {
            assert_eq!(count.0[s].0.load(Relaxed), 10_000, "shard {s}");
        }
    }

    #[test]
    fn shards_are_taken_lowest_first_and_given_back() {
        let held = AtomicU32::new(0);
        let taken: Vec<usize> = (0..COUNT_SHARDS + 2).map(|_| take(&held)).collect();
        let mut want: Vec<usize> = (0..SHARED).collect();
        want.extend([SHARED; 3]);
        assert_eq!(taken, want);
        give_back(&held, 3);
        give_back(&held, SHARED);
        assert_eq!(take(&held), 3);
        assert_eq!(take(&held), SHARED);
    }

    #[test]
    fn a_thread_that_ended_gives_its_shard_back() {
        let _one = one_at_a_time();
        let count = Count::default();
        // One thread after another, twice as many as there are shards:
        // each finds its forerunner's shard free again, unless other
        // threads hold every own shard at that moment (for all of the last
        // COUNT_SHARDS, seven other threads would have to be counting
        // throughout; the other tests here with many threads wait for this
        // one). Without the give-back, all but the first few threads ever
        // to count get the shared one.
        let shards: Vec<usize> = (0..2 * COUNT_SHARDS)
            .map(|_| {
                let c = count.clone();
                std::thread::spawn(move || {
                    c.add1();
                    shard()
                })
                .join()
                .unwrap()
            })
            .collect();
        assert_eq!(count.get(), 2 * COUNT_SHARDS as u64);
        assert!(
            shards[COUNT_SHARDS..].iter().any(|&s| s < SHARED),
            "ended threads kept their shards: {shards:?}"
        );
    }
}
