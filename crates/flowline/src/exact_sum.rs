//! [`ExactSum`]: a sum of f64 values kept without rounding error, read as
//! the correctly rounded f64 of the exact sum (Shewchuk's partials, the
//! algorithm of Python's `math.fsum`).
//!
//! Why: behind the hash exchange a window's values arrive in an order that
//! depends on how the source partitions interleave, which differs between a
//! run and its replay. A plain `sum += v` would then give sums that differ
//! in their last bits from run to run. The exact sum does not depend on the
//! order: the same values give the same bits, always, and they are the
//! correctly rounded total, not one of many roundings.

use serde::{Deserialize, Serialize};

/// Non-overlapping partials whose exact total is the sum of every value
/// added; usually one or two, kept inline (no allocation per window).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExactSum {
    partials: smallvec::SmallVec<[f64; 2]>,
}

impl ExactSum {
    /// Adds a finite value (the caller refuses values whose sum would not
    /// be finite).
    pub fn add(&mut self, mut x: f64) {
        let mut i = 0;
        for j in 0..self.partials.len() {
            let mut y = self.partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                self.partials[i] = lo;
                i += 1;
            }
            x = hi;
        }
        self.partials.truncate(i);
        self.partials.push(x);
    }

    /// Whether adding `v` keeps every partial and the rounded total finite:
    /// what the caller checks before [`add`](Self::add). Exact near the
    /// edge of the f64 range (it tries the addition on a copy there), where
    /// the rounded sum plus `v` may say otherwise.
    pub fn can_add(&self, v: f64) -> bool {
        if !v.is_finite() {
            return false;
        }
        // Far from the edge nothing can overflow: the partials' magnitudes
        // add up to less than f64::MAX.
        let bound: f64 = self.partials.iter().map(|p| p.abs()).sum::<f64>() + v.abs();
        if bound < f64::MAX / 4.0 {
            return true;
        }
        let mut t = self.clone();
        t.add(v);
        t.partials.iter().all(|p| p.is_finite()) && t.value().is_finite()
    }

    /// The exact sum, correctly rounded to an f64 (0 for none).
    pub fn value(&self) -> f64 {
        let p = &self.partials;
        let Some(&top) = p.last() else {
            return 0.0;
        };
        let (mut hi, mut lo) = (top, 0.0);
        let mut n = p.len() - 1;
        while n > 0 {
            let x = hi;
            let y = p[n - 1];
            n -= 1;
            hi = x + y;
            lo = y - (hi - x);
            if lo != 0.0 {
                break;
            }
        }
        // Half-way cases: round as the partials below say.
        if n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            if y == x - hi {
                hi = x;
            }
        }
        hi
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The independent computation: values that are multiples of 2^-20
    /// summed exactly as integers, then rounded once.
    fn exact_by_integers(xs: &[i64]) -> f64 {
        let total: i128 = xs.iter().map(|&x| x as i128).sum();
        total as f64 / (1u64 << 20) as f64
    }

    proptest! {
        #[test]
        fn equals_the_exactly_rounded_sum_in_any_order(
            mut xs in proptest::collection::vec(-(1i64 << 52)..(1i64 << 52), 0..300),
            seed in any::<u64>(),
        ) {
            let want = exact_by_integers(&xs);
            let mut s = ExactSum::default();
            for &x in &xs {
                s.add(x as f64 / (1u64 << 20) as f64);
            }
            prop_assert_eq!(s.value().to_bits(), want.to_bits());
            // Another order, the same bits.
            let mut r = seed | 1;
            for i in (1..xs.len()).rev() {
                r ^= r << 13; r ^= r >> 7; r ^= r << 17;
                xs.swap(i, (r % (i as u64 + 1)) as usize);
            }
            let mut t = ExactSum::default();
            for &x in &xs {
                t.add(x as f64 / (1u64 << 20) as f64);
            }
            prop_assert_eq!(t.value().to_bits(), want.to_bits());
        }
    }

    proptest! {
        /// At the edge of the f64 range: values k·2^971 (|k| < 2^53, so
        /// each is a double and |total| < 2^53·2^971 is exactly when the
        /// total is finite), accepted one by one as `can_add` says, against
        /// integer arithmetic. Every refusal is one the exact total needs.
        #[test]
        fn can_add_refuses_exactly_the_values_whose_total_overflows(
            ks in proptest::collection::vec(-(1i64 << 53) + 1..(1i64 << 53), 1..40),
            small in proptest::collection::vec(-1e300f64..1e300, 0..5),
        ) {
            let scale = 2f64.powi(971);
            let mut s = ExactSum::default();
            let mut total: i128 = 0;
            for &k in &ks {
                let fits = (total + k as i128).abs() < 1i128 << 53;
                prop_assert_eq!(s.can_add(k as f64 * scale), fits, "total {} + {}", total, k);
                if fits {
                    s.add(k as f64 * scale);
                    total += k as i128;
                }
            }
            prop_assert_eq!(s.value(), total as f64 * scale);
            // Far below the edge: always accepted.
            let mut t = ExactSum::default();
            for &x in &small {
                prop_assert!(t.can_add(x));
                t.add(x);
            }
        }
    }

    #[test]
    fn can_add_refuses_what_is_not_finite_and_the_edge_itself() {
        let mut s = ExactSum::default();
        assert!(!s.can_add(f64::NAN) && !s.can_add(f64::INFINITY));
        s.add(f64::MAX);
        assert!(!s.can_add(f64::MAX));
        assert!(s.can_add(-f64::MAX));
        // Half an ulp above MAX rounds to infinity (ties to even).
        let half_ulp = 2f64.powi(970);
        assert!(!s.can_add(half_ulp));
        assert!(s.can_add(half_ulp / 2.0));
        // MAX - a quarter ulp (read as MAX): half an ulp more is MAX + a
        // quarter ulp exactly, which rounds to MAX. The rounded sum plus the
        // value would have said infinity.
        s.add(-half_ulp / 2.0);
        assert_eq!(s.value(), f64::MAX);
        assert!((s.value() + half_ulp).is_infinite());
        assert!(s.can_add(half_ulp));
        s.add(half_ulp);
        assert_eq!(s.value(), f64::MAX);
    }

    #[test]
    fn a_naive_sum_is_not_exact_and_this_one_is() {
        let xs = [0.1, 0.2, 0.3, -0.6, 1e16, 1.0, -1e16];
        let naive: f64 = xs.iter().sum();
        let mut s = ExactSum::default();
        xs.iter().for_each(|&x| s.add(x));
        // The exact sum of these doubles is 1 + 2^-55 (the doubles nearest
        // 0.1, 0.2, 0.3 and 0.6 leave that remainder), which rounds to 1.
        assert_eq!(s.value(), 1.0);
        assert_ne!(naive, 1.0, "the naive sum loses the 1 in 1e16");
    }
}
