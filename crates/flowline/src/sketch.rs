//! DDSketch: a mergeable quantile sketch with a relative-error guarantee.
//!
//! Values are counted in logarithmic buckets `(γ^(i-1), γ^i]` with
//! `γ = (1+α)/(1-α)`; a quantile is answered with the bucket's midpoint
//! `2γ^i/(γ+1)`, which is within a relative error `α` of the true value of
//! that rank. Flowline uses `α = 0.01`: percentiles are within 1 % of an
//! exact value of the same rank (documented bound: ≤ 2 %). Sketches of
//! two windows merge exactly.
//!
//! Every value keeps that bound, however far it is from the others. Each
//! sign keeps a dense run of at most [`MAX_BUCKETS`] buckets (a span of
//! about 17 orders of magnitude) and, for values outside it, a sorted list
//! of their buckets. The collapsing store of the DDSketch paper folds such
//! values into the lowest bucket instead: one `1e300` in a window of
//! values near 50 then made its p50 1.6e282, silently. A window's memory
//! is thus bounded by the f64 range (at most about 75 000 buckets per
//! sign), and stays a dense run of a few hundred buckets for ordinary
//! data.

use serde::{Deserialize, Serialize};

/// Relative accuracy.
pub const ALPHA: f64 = 0.01;
/// Buckets in a store's dense run.
pub const MAX_BUCKETS: usize = 2048;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Store {
    offset: i32,
    /// u32: a window's bucket never holds 4 billion samples, and the state
    /// of 100k keys is half the size (postcard writes both as varints).
    counts: Vec<u32>,
}

impl Store {
    /// Adds `n` samples to bucket `idx`, or returns `false` when the run
    /// cannot reach it within [`MAX_BUCKETS`]. The run only widens, and a
    /// bucket it could not reach stays out of its reach.
    fn add_n(&mut self, idx: i32, n: u32) -> bool {
        // Most samples fall inside the run.
        if let Some(c) = usize::try_from(i64::from(idx) - i64::from(self.offset))
            .ok()
            .and_then(|pos| self.counts.get_mut(pos))
        {
            *c = c.saturating_add(n);
            return true;
        }
        if self.counts.is_empty() {
            self.offset = idx;
            self.counts.push(0);
        }
        let end = i64::from(self.offset) + self.counts.len() as i64;
        let span = i64::from(idx).max(end - 1) - i64::from(idx).min(self.offset.into()) + 1;
        if span > MAX_BUCKETS as i64 {
            return false;
        }
        if idx < self.offset {
            let grow = (self.offset - idx) as usize;
            let mut v = vec![0; grow + self.counts.len()];
            v[grow..].copy_from_slice(&self.counts);
            self.counts = v;
            self.offset = idx;
        }
        let pos = (idx - self.offset) as usize;
        if pos >= self.counts.len() {
            self.counts.resize(pos + 1, 0);
        }
        self.counts[pos] = self.counts[pos].saturating_add(n);
        true
    }

    /// `(index, count)` of every non-empty bucket, the run's and `far`'s
    /// (sorted, none inside the run), lowest index first.
    fn buckets<'a>(&'a self, far: &'a Buckets) -> impl DoubleEndedIterator<Item = (i32, u32)> + 'a {
        let split = far.partition_point(|&(i, _)| i < self.offset);
        let dense = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| (self.offset + i as i32, c));
        far[..split]
            .iter()
            .copied()
            .chain(dense)
            .chain(far[split..].iter().copied())
    }
}

/// `(index, count)` buckets, sorted by index.
type Buckets = [(i32, u32)];

/// The buckets outside the runs, by sign, sorted by index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Far {
    pos: Vec<(i32, u32)>,
    neg: Vec<(i32, u32)>,
}

fn add_far(far: &mut Vec<(i32, u32)>, idx: i32, n: u32) {
    match far.binary_search_by_key(&idx, |&(i, _)| i) {
        Ok(at) => far[at].1 = far[at].1.saturating_add(n),
        Err(at) => far.insert(at, (idx, n)),
    }
}

/// A quantile sketch; see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DDSketch {
    pos: Store,
    neg: Store,
    zero: u64,
    /// Boxed and absent for ordinary data: a sketch sits in every key's
    /// window slot. (The count is the buckets' sum, not stored: the
    /// window's own count is beside it.)
    far: Option<Box<Far>>,
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
        let (pos, neg) = self.far_buckets();
        let sum =
            |s: &Store, far: &Buckets| -> u64 { s.buckets(far).map(|(_, c)| u64::from(c)).sum() };
        self.zero + sum(&self.pos, pos) + sum(&self.neg, neg)
    }

    fn far_buckets(&self) -> (&Buckets, &Buckets) {
        match &self.far {
            Some(f) => (&f.pos, &f.neg),
            None => (&[], &[]),
        }
    }

    /// Adds `n` samples to bucket `idx` of the positive or negative side.
    fn add_n(&mut self, positive: bool, idx: i32, n: u32) {
        let store = if positive {
            &mut self.pos
        } else {
            &mut self.neg
        };
        if !store.add_n(idx, n) {
            let far = self.far.get_or_insert_with(Box::default);
            add_far(if positive { &mut far.pos } else { &mut far.neg }, idx, n);
        }
    }

    /// Adds a value (NaN is ignored).
    pub fn add(&mut self, v: f64) {
        if v.is_nan() {
            return;
        }
        if v == 0.0 {
            self.zero += 1;
        } else {
            let idx = (v.abs().ln() / gamma_ln()).ceil() as i32;
            self.add_n(v > 0.0, idx, 1);
        }
    }

    /// Adds every value of `other`, one bucket at a time (a partial
    /// aggregate combined with another, as a parallel or sliding window
    /// would): the same sketch as adding all the values to one.
    pub fn merge(&mut self, other: &DDSketch) {
        let (pos, neg) = other.far_buckets();
        for (i, c) in other.pos.buckets(pos) {
            self.add_n(true, i, c);
        }
        for (i, c) in other.neg.buckets(neg) {
            self.add_n(false, i, c);
        }
        self.zero += other.zero;
    }

    /// The bucket's midpoint `2γ^i/(γ+1)`, as one `exp`: `powi` gave 0
    /// for the buckets of subnormal values (its `γ^-i` overflows first)
    /// and infinity for those near `f64::MAX`; `exp` goes down through the
    /// subnormals, and a midpoint past `f64::MAX` is that (within 1 %).
    fn value(idx: i32) -> f64 {
        let ln_g = gamma_ln();
        let half_way = (2.0 / (ln_g.exp() + 1.0)).ln();
        (f64::from(idx) * ln_g + half_way).exp().min(f64::MAX)
    }

    /// The value at quantile `q` in `[0, 1]` by the nearest-rank method
    /// (the `⌈q·n⌉`-th smallest value), or `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = nearest_rank(q, count);
        let (far_pos, far_neg) = self.far_buckets();
        let mut seen = 0u64;
        // Negative values, most negative first (highest index first).
        for (i, c) in self.neg.buckets(far_neg).rev() {
            seen += u64::from(c);
            if seen > rank {
                return Some(-Self::value(i));
            }
        }
        seen += self.zero;
        if seen > rank {
            return Some(0.0);
        }
        for (i, c) in self.pos.buckets(far_pos) {
            seen += u64::from(c);
            if seen > rank {
                return Some(Self::value(i));
            }
        }
        None
    }
}

impl DDSketch {
    /// [`quantile`](Self::quantile) at each of `qs`, in one walk of the
    /// buckets (a window document asks for three): `qs` must be in
    /// ascending order.
    pub fn quantiles<const N: usize>(&self, qs: [f64; N]) -> [Option<f64>; N] {
        debug_assert!(qs.windows(2).all(|w| w[0] <= w[1]), "ascending: {qs:?}");
        let mut out = [None; N];
        let count = self.count();
        if count == 0 {
            return out;
        }
        let ranks = qs.map(|q| nearest_rank(q, count));
        let (far_pos, far_neg) = self.far_buckets();
        let (mut seen, mut next) = (0u64, 0usize);
        let mut take = |seen: u64, value: &dyn Fn() -> f64| {
            while next < N && seen > ranks[next] {
                out[next] = Some(value());
                next += 1;
            }
        };
        // As `quantile`: negative values most negative first, then zeros,
        // then positive values.
        for (i, c) in self.neg.buckets(far_neg).rev() {
            seen += u64::from(c);
            take(seen, &|| -Self::value(i));
        }
        seen += self.zero;
        take(seen, &|| 0.0);
        for (i, c) in self.pos.buckets(far_pos) {
            seen += u64::from(c);
            take(seen, &|| Self::value(i));
        }
        out
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

    proptest! {
        /// One walk for several quantiles answers as one walk each.
        #[test]
        fn quantiles_equal_quantile_at_each(
            values in prop::collection::vec(
                prop_oneof![-1e6f64..1e6, Just(0.0), prop::sample::select(vec![1e300, -1e300, 5e-324])],
                0..200,
            ),
            mut qs in prop::array::uniform3(0.0f64..=1.0),
        ) {
            qs.sort_by(f64::total_cmp);
            let mut s = DDSketch::new();
            for v in &values { s.add(*v) }
            prop_assert_eq!(s.quantiles(qs), qs.map(|q| s.quantile(q)));
            prop_assert_eq!(s.quantiles([0.5, 0.95, 0.99]), [0.5, 0.95, 0.99].map(|q| s.quantile(q)));
        }
    }

    proptest! {
        /// Values of any magnitude in one window, against the sorted
        /// values: every quantile within the bound (the collapsing store
        /// gave a p50 of 1.6e282 for values near 50 beside one 1e300).
        #[test]
        fn every_magnitude_keeps_the_bound(
            values in prop::collection::vec(
                (
                    prop::sample::select(vec![
                        5e-324, 1e-320, 2e-308, 1e-300, 1e-9, 1.0, 1e9, 1e300, 1e307,
                        -5e-324, -1e-300, -1.0, -1e300, -1e307,
                    ]),
                    1.0f64..10.0,
                )
                    .prop_map(|(m, f)| m * f),
                1..300,
            ),
            q in 0.0f64..=1.0,
        ) {
            let mut s = DDSketch::new();
            for v in &values { s.add(*v) }
            let got = s.quantile(q).unwrap();
            let want = exact(values.clone(), q);
            // The documented bound: 1 % for the sketch, and for subnormals
            // the rounding to their grid (both within 2 %).
            prop_assert!((got - want).abs() <= 2.0 * ALPHA * want.abs(), "q={q} got={got:e} want={want:e}");
            let (mut a, mut b) = (DDSketch::new(), DDSketch::new());
            for (i, v) in values.iter().enumerate() {
                if i % 2 == 0 { a.add(*v) } else { b.add(*v) }
            }
            a.merge(&b);
            prop_assert_eq!(a.quantile(q), Some(got), "merged");
        }
    }

    #[test]
    fn the_dense_run_stays_bounded_and_far_values_keep_their_bucket() {
        let mut s = DDSketch::new();
        for e in -300..300 {
            s.add(10f64.powi(e / 10));
        }
        assert!(s.pos.counts.len() <= MAX_BUCKETS);
        assert_eq!(s.count(), 600);
        for (q, want) in [(0.0, 1e-30), (0.5, 1.0), (1.0, 1e29)] {
            let got = s.quantile(q).unwrap();
            assert!((got - want).abs() <= want * ALPHA, "q {q}: {got}");
        }
        // The trial's window: values near 50, one 1e300.
        let mut s = DDSketch::new();
        for v in [48.0, 50.0, 52.0, 1e300] {
            s.add(v);
        }
        let p50 = s.quantile(0.5).unwrap();
        assert!((p50 - 50.0).abs() <= 0.5, "{p50}");
        assert_eq!(s.far.as_ref().map(|f| f.pos.len()), Some(1));
    }
}
