//! Element counts of the chain's stages, cheap on the record path: a count
//! is sharded by the thread that adds to it, so the driver, the workers
//! and the decode tasks each add to a cache line of their own, and the
//! first few threads own theirs outright, so their add is a plain load and
//! store instead of an atomic read-modify-write.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
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

/// The shard every thread past the first [`SHARED`] counts on.
const SHARED: usize = COUNT_SHARDS - 1;

/// This thread's shard. The first [`SHARED`] threads to count each take
/// one of their own for good (a thread that ends leaves its shard unused):
/// its only writer, so a count there is a plain load and store. Later
/// threads share the last one, with an atomic add.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    }
    SHARD.with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT.fetch_add(1, Relaxed).min(SHARED));
        }
        s.get()
    })
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

    #[test]
    fn threads_past_the_own_shards_share_one_and_lose_no_count() {
        let count = Count::default();
        let n = 3 * COUNT_SHARDS;
        // All counting at once, so that the shared shard is written by
        // several threads at the same time (a plain store there loses
        // counts).
        let start = Arc::new(std::sync::Barrier::new(n));
        let threads: Vec<_> = (0..n)
            .map(|_| {
                let (c, start) = (count.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..200_000 {
                        c.add1();
                    }
                    shard()
                })
            })
            .collect();
        let shards: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(count.get(), n as u64 * 200_000);
        assert!(shards.iter().filter(|&&s| s == SHARED).count() > COUNT_SHARDS);
    }

    #[test]
    fn threads_count_on_shards_of_their_own_and_the_total_is_exact() {
        let count = Count::default();
        let shards: Vec<usize> = (0..4)
            .map(|_| {
                let c = count.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        c.add1();
                    }
                    shard()
                })
            })
            .map(|t| t.join().unwrap())
            .collect();
        assert_eq!(count.get(), 40_000);
        let used: std::collections::BTreeSet<_> = shards.iter().collect();
        assert_eq!(used.len(), 4, "threads shared a shard: {shards:?}");
        let per: Vec<u64> = count.0.iter().map(|s| s.0.load(Relaxed)).collect();
        assert_eq!(per.iter().filter(|&&n| n == 10_000).count(), 4, "{per:?}");
    }
}
