//! DDSketch: a mergeable quantile sketch with a relative-error guarantee.
//!
//! Values are counted in logarithmic buckets `(γ^(i-1), γ^i]` with
//! `γ = (1+α)/(1-α)`; a quantile is answered with the bucket's midpoint
//! `2γ^i/(γ+1)`, which is within a relative error `α` of the true value of
//! that rank. Flowline uses `α = 0.01`: percentiles are within 1 % of an
//! exact value of the same rank (documented bound: ≤ 2 %). Sketches of
//! two windows merge exactly. Memory is bounded: at most [`MAX_BUCKETS`]
//! buckets per sign; past that, the lowest buckets are collapsed (only the
//! accuracy of the lowest quantiles degrades).

use serde::{Deserialize, Serialize};

/// Relative accuracy.
pub const ALPHA: f64 = 0.01;
/// Bucket bound per sign.
pub const MAX_BUCKETS: usize = 2048;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Store {
    offset: i32,
    /// u32: a window's bucket never holds 4 billion samples, and the state
    /// of 100k keys is half the size (postcard writes both as varints, so
    /// checkpoints are unchanged).
    counts: Vec<u32>,
}

impl Store {
    fn add(&mut self, idx: i32) {
        self.add_n(idx, 1);
    }

    /// Adds `n` samples to bucket `idx` at once.
    fn add_n(&mut self, idx: i32, n: u32) {
        if self.counts.is_empty() {
            self.offset = idx;
            self.counts.push(0);
        }
        if idx < self.offset {
            let grow = (self.offset - idx) as usize;
            if self.counts.len() + grow > MAX_BUCKETS {
                // Collapse: count it in the lowest bucket we keep.
                self.counts[0] = self.counts[0].saturating_add(n);
                return;
            }
            let mut v = vec![0; grow];
            v.extend_from_slice(&self.counts);
            self.counts = v;
            self.offset = idx;
        }
        let pos = (idx - self.offset) as usize;
        if pos >= self.counts.len() {
            self.counts.resize(pos + 1, 0);
            if self.counts.len() > MAX_BUCKETS {
                let excess = self.counts.len() - MAX_BUCKETS;
                let low: u64 = self.counts[..=excess].iter().map(|&c| u64::from(c)).sum();
                self.counts.drain(..excess);
                self.counts[0] = u32::try_from(low).unwrap_or(u32::MAX);
                self.offset += excess as i32;
            }
        }
        let pos = (idx - self.offset) as usize;
        self.counts[pos] = self.counts[pos].saturating_add(n);
    }
}

/// A quantile sketch; see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DDSketch {
    pos: Store,
    neg: Store,
    zero: u64,
    count: u64,
}

fn gamma_ln() -> f64 {
    ((1.0 + ALPHA) / (1.0 - ALPHA)).ln()
}

impl DDSketch {
    /// An empty sketch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Values added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds a value (NaN is ignored).
    pub fn add(&mut self, v: f64) {
        if v.is_nan() {
            return;
        }
        self.count += 1;
        if v == 0.0 {
            self.zero += 1;
        } else {
            let idx = (v.abs().ln() / gamma_ln()).ceil() as i32;
            if v > 0.0 {
                self.pos.add(idx)
            } else {
                self.neg.add(idx)
            }
        }
    }

    /// Adds every value of `other`, one bucket at a time (a partial
    /// aggregate combined with another, as a parallel or sliding window
    /// would): the same sketch as adding all the values to one.
    pub fn merge(&mut self, other: &DDSketch) {
        for (store, theirs) in [(&mut self.pos, &other.pos), (&mut self.neg, &other.neg)] {
            for (i, &c) in theirs.counts.iter().enumerate() {
                if c > 0 {
                    store.add_n(theirs.offset + i as i32, c);
                }
            }
        }
        self.zero += other.zero;
        self.count += other.count;
    }

    fn value(idx: i32) -> f64 {
        let g = gamma_ln().exp();
        2.0 * g.powi(idx) / (g + 1.0)
    }

    /// The value at quantile `q` in `[0, 1]` by the nearest-rank method
    /// (the `⌈q·n⌉`-th smallest value), or `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = nearest_rank(q, self.count);
        let mut seen = 0u64;
        // Negative values, most negative first (highest index first).
        for (i, &c) in self.neg.counts.iter().enumerate().rev() {
            seen += u64::from(c);
            if seen > rank {
                return Some(-Self::value(self.neg.offset + i as i32));
            }
        }
        seen += self.zero;
        if seen > rank {
            return Some(0.0);
        }
        for (i, &c) in self.pos.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen > rank {
                return Some(Self::value(self.pos.offset + i as i32));
            }
        }
        None
    }
}

/// 0-based index of the nearest-rank `q` quantile of `n` values.
pub fn nearest_rank(q: f64, n: u64) -> u64 {
    ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).clamp(1, n) - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exact(mut v: Vec<f64>, q: f64) -> f64 {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[nearest_rank(q, v.len() as u64) as usize]
    }

    proptest! {
        #[test]
        fn quantiles_within_relative_error(values in prop::collection::vec(0.001f64..1e7, 1..400), q in 0.0f64..=1.0) {
            let mut s = DDSketch::new();
            for v in &values { s.add(*v) }
            let got = s.quantile(q).unwrap();
            let want = exact(values, q);
            prop_assert!((got - want).abs() <= ALPHA * want * 1.0001, "q={q} got={got} want={want}");
        }

        #[test]
        fn merge_equals_adding_all(a in prop::collection::vec(-1e4f64..1e4, 0..100), b in prop::collection::vec(-1e4f64..1e4, 0..100)) {
            let mut sa = DDSketch::new();
            let mut sb = DDSketch::new();
            let mut all = DDSketch::new();
            for v in &a { sa.add(*v); all.add(*v) }
            for v in &b { sb.add(*v); all.add(*v) }
            sa.merge(&sb);
            for q in [0.0, 0.5, 0.95, 0.99, 1.0] {
                prop_assert_eq!(sa.quantile(q), all.quantile(q));
            }
        }
    }

    #[test]
    fn bounded_buckets() {
        let mut s = DDSketch::new();
        for e in -300..300 {
            s.add(10f64.powi(e / 10));
        }
        assert!(s.pos.counts.len() <= MAX_BUCKETS);
        assert_eq!(s.count(), 600);
        let top = s.quantile(1.0).unwrap();
        assert!((top - 1e29).abs() <= 1e29 * ALPHA);
    }
}
