//! The detector's arithmetic, free of the metric's scale.
//!
//! A z-score does not change when every value is multiplied by one factor
//! (a metric in seconds or nanoseconds, bytes or gigabytes), and neither
//! should a verdict. Two things made verdicts depend on it:
//!
//! - An absolute floor under the spread (`1e-9`): for a series whose values
//!   and spread sit below it (an error ratio of `1e-7 ± 1e-10`, a latency
//!   in seconds of a few nanoseconds), every shift had a z near 0.
//! - Squares: the variance of averages beyond about `1e154` overflowed to
//!   infinity, after which every z was 0 (status `ok` for ever) and the
//!   documents carried `null` for the spread. One `f64::MAX` sentinel in a
//!   series' warm-up did that to the series.
//!
//! So the state keeps the spread as a standard deviation, and each step
//! runs on the window's average, the mean and the spread multiplied by one
//! power of two that brings the largest of them near 1: exact, and no
//! square can overflow or vanish. The only floor is relative: the spread
//! a z is taken against is at least 0.1 % of the larger of `|mean|` and
//! `|x|`, so a series constant at 0 that moves to 5 (or to 5e-300) has
//! `z = 1000`, and `|z|` never exceeds 2000.

/// The spread a z is taken against, relative to the values compared.
pub const FLOOR: f64 = 1e-3;

/// `x × 2^e`, exact for any `e` that keeps the result in range (in two
/// factors, each a normal double).
fn ldexp(x: f64, e: i32) -> f64 {
    let h = e / 2;
    x * pow2(h) * pow2(e - h)
}

/// `2^e` for `e` in -1022..=1023.
fn pow2(e: i32) -> f64 {
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// `e` with `m = f × 2^e`, `1 ≤ f < 2`, for a finite `m > 0`.
fn exponent(m: f64) -> i32 {
    let biased = ((m.to_bits() >> 52) & 0x7ff) as i32;
    if biased == 0 {
        exponent(m * pow2(64)) - 64
    } else {
        biased - 1023
    }
}

/// `x`, `mean` and `std` times `2^-k`, and `k`, so that the largest is in
/// `[1, 2)` (all three as they are when they are all 0).
fn scaled(x: f64, mean: f64, std: f64) -> (i32, f64, f64, f64) {
    let m = x.abs().max(mean.abs()).max(std);
    if m == 0.0 {
        return (0, x, mean, std);
    }
    let k = exponent(m);
    (k, ldexp(x, -k), ldexp(mean, -k), ldexp(std, -k))
}

/// The z of `x` against a baseline `mean` and `std`, and the spread it was
/// taken against (`std`, or the floor when that is larger).
pub fn z(x: f64, mean: f64, std: f64) -> (f64, f64) {
    let (k, x, mean, std) = scaled(x, mean, std);
    let used = std.max(FLOOR * x.abs().max(mean.abs()));
    let z = if used == 0.0 { 0.0 } else { (x - mean) / used };
    (z, ldexp(used, k))
}

/// Mean and spread after the `n`th window of the warm-up (`n` ≥ 1), whose
/// average is `x`: the plain running mean and standard deviation
/// (`var_n = (n-1)/n × (var + d²/n)`). `None` when the spread would exceed
/// the largest double (averages near it of both signs).
pub fn warm(mean: f64, std: f64, x: f64, n: f64) -> Option<(f64, f64)> {
    let (k, x, mean, std) = scaled(x, mean, std);
    let d = x - mean;
    let m = mean + d / n;
    let s = ((n - 1.0) / n).sqrt() * std.hypot(d / n.sqrt());
    finite(ldexp(m, k), ldexp(s, k))
}

/// Mean and spread after window average `x`, weighted `alpha`: West's
/// incremental EWMA (`var' = (1-α) × (var + α d²)`). `None` as for
/// [`warm`].
pub fn ewma(mean: f64, std: f64, x: f64, alpha: f64) -> Option<(f64, f64)> {
    let (k, x, mean, std) = scaled(x, mean, std);
    let d = x - mean;
    let m = mean + alpha * d;
    let s = (1.0 - alpha).sqrt() * std.hypot(alpha.sqrt() * d);
    finite(ldexp(m, k), ldexp(s, k))
}

fn finite(m: f64, s: f64) -> Option<(f64, f64)> {
    (m.is_finite() && s.is_finite()).then_some((m, s))
}

/// The spread's place in a checkpoint. Checkpoints before this held the
/// variance there (never negative); now it holds the standard deviation
/// negated (sign bit set, `-0.0` for none), so a restore of either reads
/// it right and the checkpoint's shape is unchanged.
pub mod spread_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::trivially_copy_pass_by_ref)] // serde's signature
    pub fn serialize<S: Serializer>(std: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(-*std)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let v = f64::deserialize(d)?;
        Ok(if v.is_sign_negative() { -v } else { v.sqrt() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The textbook formulas on values near 1, where nothing overflows.
    fn naive_ewma(mean: f64, var: f64, x: f64, a: f64) -> (f64, f64) {
        let d = x - mean;
        (mean + a * d, (1.0 - a) * (var + d * a * d))
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * a.abs().max(b.abs()) || a == b
    }

    #[test]
    fn scaling_is_exact_over_the_whole_range() {
        for m in [5e-324, 1e-310, 2.2e-308, 1e-300, 1.0, 3.0, 1e300, f64::MAX] {
            let k = exponent(m);
            let f = ldexp(m, -k);
            assert!((1.0..2.0).contains(&f), "{m}: {f}");
            assert_eq!(ldexp(f, k), m, "{m}");
        }
    }

    #[test]
    fn a_constant_zero_series_that_moves_has_z_1000_in_any_unit() {
        for x in [5.0, 5e-300, 5e300, -1e-320] {
            let (z, used) = z(x, 0.0, 0.0);
            assert_eq!(z, 1000.0f64.copysign(x), "{x}");
            assert_eq!(used, FLOOR * x.abs());
        }
        assert_eq!(z(0.0, 0.0, 0.0), (0.0, 0.0));
    }

    #[test]
    fn a_sentinel_beside_normal_values_keeps_everything_finite() {
        let (m, s) = warm(50.0, 1.0, f64::MAX, 2.0).unwrap();
        assert!(m.is_finite() && s.is_finite() && s > 1e307);
        let (z, used) = z(50.0, m, s);
        assert!(z.is_finite() && z < 0.0 && used == s);
        // Averages at both ends of the range: a spread of the largest
        // double is kept, one past it is refused, not made infinite.
        let (m, s) = warm(-f64::MAX, 0.0, f64::MAX, 2.0).unwrap();
        assert!(m == 0.0 && close(s, f64::MAX), "{m} {s}");
        assert_eq!(ewma(-f64::MAX, f64::MAX, f64::MAX, 0.5), None);
    }

    /// 40 windows of a series at `scale`: a wiggle of ±1 % for 30, then
    /// ten times higher; with a sentinel (`f64::MAX`) average at window
    /// `sentinel`. The confirmed episodes' first windows.
    fn episodes(scale: f64, sentinel: Option<i32>) -> Vec<i64> {
        use crate::anomaly::{AnomalySettings, Detector, DetectorState};
        let d = Detector(AnomalySettings::default());
        let mut s = DetectorState::default();
        let mut found = Vec::new();
        for i in 0..40 {
            let mut x = scale * (1.0 + f64::from(i % 3) * 0.01);
            if i >= 30 {
                x *= 10.0;
            }
            if sentinel == Some(i) {
                x = f64::MAX;
            }
            let v = d.assess(&mut s, x, i64::from(i) * 10_000);
            assert!(v.z_score.is_finite() && v.baseline_std.is_finite(), "{v:?}");
            found.extend(v.confirmed.map(|e| e.start_ms));
        }
        found
    }

    #[test]
    fn the_same_shift_is_found_in_any_unit_and_after_a_sentinel() {
        // Before: found at scale 1 only; at 1e200 the spread overflowed
        // (every z 0), at 1e-12 the 1e-9 floor hid the shift. A sentinel
        // after the warm-up is one anomalous window, not learned; in the
        // warm-up it is learned (the spread forgets it by 5 % a window),
        // and no number is infinite or `null` (checked in `episodes`)
        // where before the spread stayed infinite for ever.
        for scale in [1.0, 1e200, 1e-12, 1e-300, 3e307 / 10.0] {
            assert_eq!(episodes(scale, None), [300_000], "scale {scale}");
        }
        assert_eq!(episodes(1.0, Some(15)), [300_000]);
        assert_eq!(episodes(1e200, Some(15)), [300_000]);
        assert!(episodes(1.0, Some(3)).is_empty());
    }

    #[test]
    fn checkpoints_hold_the_spread_and_older_ones_restore() {
        use crate::anomaly::DetectorState;
        let d = crate::anomaly::Detector(crate::anomaly::AnomalySettings::default());
        let mut s = DetectorState::default();
        for (i, x) in [1e200, 3e200, 2e200].into_iter().enumerate() {
            d.assess(&mut s, x, i as i64);
        }
        let bytes = postcard::to_stdvec(&s).unwrap();
        assert_eq!(postcard::from_bytes::<DetectorState>(&bytes).unwrap(), s);
        // The same shape with a variance in the spread's place, as a
        // checkpoint of the version before wrote it.
        #[derive(serde::Serialize)]
        struct Before(f64, f64, u32, u32, i64, Option<i64>);
        let old = postcard::to_stdvec(&Before(50.0, 4.0, 12, 0, 0, Some(7))).unwrap();
        let restored: DetectorState = postcard::from_bytes(&old).unwrap();
        let (z, used) = z(56.0, 50.0, 2.0);
        let v = d.assess(&mut restored.clone(), 56.0, 8);
        assert_eq!(
            (v.baseline_mean, v.baseline_std, v.z_score),
            (50.0, used, z)
        );
        assert_eq!(z, 3.0);
    }

    proptest! {
        /// The same verdicts and baselines at any scale: values times
        /// `2^e` give the same z, and mean and spread times `2^e`.
        #[test]
        fn verdicts_do_not_depend_on_the_unit(
            xs in prop::collection::vec(
                (1e-3f64..1e3, any::<bool>()).prop_map(|(v, neg)| if neg { -v } else { v }),
                2..30,
            ),
            e in -900i32..900,
            a in 0.01f64..1.0,
        ) {
            let f = |v: f64| ldexp(v, e);
            let (mut m, mut s) = (xs[0], 0.0);
            let (mut ms, mut ss) = (f(xs[0]), 0.0);
            for (i, &x) in xs.iter().enumerate().skip(1) {
                let (z1, _) = z(x, m, s);
                let (z2, _) = z(f(x), ms, ss);
                prop_assert!(close(z1, z2), "{z1} {z2}");
                (m, s) = if i < 10 { warm(m, s, x, (i + 1) as f64) } else { ewma(m, s, x, a) }.unwrap();
                (ms, ss) = if i < 10 { warm(ms, ss, f(x), (i + 1) as f64) } else { ewma(ms, ss, f(x), a) }.unwrap();
                prop_assert!(close(f(m), ms) && close(f(s), ss), "{m} {s} / {ms} {ss}");
            }
        }

        /// Against the textbook formulas where they do not overflow.
        #[test]
        fn equals_the_textbook_formulas_near_1(
            mean in -10f64..10.0, var in 0f64..10.0, x in -10f64..10.0,
            a in 0.01f64..1.0, n in 1u32..50,
        ) {
            let (m, s) = ewma(mean, var.sqrt(), x, a).unwrap();
            let (nm, nv) = naive_ewma(mean, var, x, a);
            prop_assert!(close(m, nm) || (m - nm).abs() < 1e-12);
            prop_assert!((s * s - nv).abs() <= 1e-9 * nv.max(1.0));
            let n = f64::from(n);
            let (m, s) = warm(mean, var.sqrt(), x, n).unwrap();
            let d = x - mean;
            let nm = mean + d / n;
            let nv = (var * (n - 1.0) + d * (x - nm)) / n;
            prop_assert!((m - nm).abs() <= 1e-12 * nm.abs().max(1.0));
            prop_assert!((s * s - nv).abs() <= 1e-9 * nv.max(1.0));
        }
    }
}
