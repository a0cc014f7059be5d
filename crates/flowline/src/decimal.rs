//! A JSON number's text read as an `f64` only when the `f64` holds it to
//! every digit written, or the reason it does not.
//!
//! Parsing a decimal into a double rounds it to the nearest double. For a
//! text of up to 15 significant digits in the normal range that rounding
//! never shows: the double, printed back to as many digits, gives the text
//! again. Beyond that it can change the number: `9007199254740993` (2^53 +
//! 1, a counter) reads as `…992`, `1e-400` as `0`, and a sum, a minimum or
//! a maximum would then be written from a number the event never held.
//! The job refuses such a value (the record goes to the dead-letter output
//! with the reason) instead of writing it changed.
//!
//! The rule: a text with `n` significant digits (trailing zeros do not
//! count: `0.1000` is `0.1`) is exact when the double it reads as, rounded
//! to `n` significant digits, is the text again. So `0.1`, a double's
//! shortest text (what JavaScript, Python, Java and serde_json print) and
//! its 17-digit text (`%.17g`) are all exact; `0.30000000000000001`,
//! `3.14159265358979323846` and `12345678901234567890` are not. Checked
//! cheaply: up to 15 digits in the normal range need nothing more; up to
//! 19 digits near 1 are compared in 128-bit integers; only what is left is
//! compared with the double's exact expansion (`format!("{:.780e}")`).

/// A number's text split at its significant digits: the digits are
/// `int ++ frac` without `lead` leading and trailing zeros (`n` of them
/// left, as an integer in `m` when they fit), and `sci` is the power of ten
/// of the first of them.
struct Decimal<'a> {
    int: &'a [u8],
    frac: &'a [u8],
    lead: usize,
    n: usize,
    m: Option<u64>,
    sci: i64,
}

impl<'a> Decimal<'a> {
    /// A JSON number's text (`-`, digits, `.digits`, `e±digits`), or `None`.
    /// One pass over the bytes: it runs for every value read.
    fn parse(text: &'a str) -> Option<Self> {
        let b = text.as_bytes();
        let mut i = usize::from(b.first() == Some(&b'-'));
        let digits = |mut i: usize| {
            let s = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            (&b[s..i], i)
        };
        let (int, end) = digits(i);
        i = end;
        let mut frac: &[u8] = &[];
        if b.get(i) == Some(&b'.') {
            (frac, i) = digits(i + 1);
            if frac.is_empty() {
                return None;
            }
        }
        let exp = match b.get(i) {
            Some(b'e' | b'E') => parse_exp(&text[i + 1..])?,
            Some(_) => return None,
            None => 0,
        };
        if int.is_empty() {
            return None;
        }
        // Leading zeros, then the rest as an integer while it fits.
        let lead = int.iter().chain(frac).take_while(|&&d| d == b'0').count();
        let rest = int.len() + frac.len() - lead;
        let (mut n, mut m) = (rest, None);
        if rest <= 19 {
            let mut acc = 0u64;
            let skip_int = lead.min(int.len());
            for &d in &int[skip_int..] {
                acc = acc * 10 + u64::from(d - b'0');
            }
            for &d in &frac[lead - skip_int..] {
                acc = acc * 10 + u64::from(d - b'0');
            }
            while acc != 0 && acc.is_multiple_of(10) {
                acc /= 10;
                n -= 1;
            }
            m = Some(acc);
        } else {
            n -= frac
                .iter()
                .rev()
                .chain(int.iter().rev())
                .take_while(|&&d| d == b'0')
                .count();
        }
        let sci = if n == 0 {
            0
        } else {
            exp.saturating_add(int.len() as i64 - 1 - lead as i64)
        };
        Some(Self {
            int,
            frac,
            lead,
            n,
            m,
            sci,
        })
    }

    fn same(&self, other: &Decimal<'_>) -> bool {
        if self.n != other.n || self.sci != other.sci {
            return false;
        }
        match (self.m, other.m) {
            (Some(a), Some(b)) => a == b,
            _ => {
                let digits = |d: &Decimal<'_>| {
                    d.int
                        .iter()
                        .chain(d.frac)
                        .skip(d.lead)
                        .take(d.n)
                        .copied()
                        .collect::<Vec<u8>>()
                };
                digits(self) == digits(other)
            }
        }
    }
}

/// An exponent's digits, saturated: beyond ±10^18 a number is 0 or
/// infinite either way.
fn parse_exp(t: &str) -> Option<i64> {
    let (neg, digits) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v = digits.bytes().fold(0i64, |acc, b| {
        acc.saturating_mul(10).saturating_add(i64::from(b - b'0'))
    });
    Some(if neg { -v } else { v })
}

/// [`within_half_unit`] in 128-bit integers, for texts of up to 19
/// digits not far from 1 (what events hold): with the text `m·10^k` and
/// the double `M·2^E`, whether `2·|m·10^k − M·2^E| ≤ 10^k`, both sides
/// scaled by `2^max(0,−E)·10^max(0,−k)` into integers. `None` when a
/// product does not fit.
fn within_half_unit_u128(v: f64, dec: &Decimal<'_>) -> Option<bool> {
    let m = u128::from(dec.m?);
    let k = dec.sci.checked_sub(dec.n as i64 - 1)?;
    let bits = v.to_bits();
    let (be, frac) = ((bits >> 52) & 0x7ff, bits & ((1 << 52) - 1));
    let (big_m, e) = if be == 0 {
        (frac, -1074)
    } else {
        (frac | 1 << 52, be as i64 - 1075)
    };
    let (a, b) = ((-e).max(0), (-k).max(0));
    let unit = pow10(k + b)?.checked_mul(pow2(a)?)?;
    let text = m.checked_mul(unit)?;
    let double = u128::from(big_m)
        .checked_mul(pow2(e + a)?)?
        .checked_mul(pow10(b)?)?;
    Some(text.abs_diff(double).checked_mul(2)? <= unit)
}

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

fn pow2(n: i64) -> Option<u128> {
    (n < 128).then(|| 1u128 << n)
}

fn pow10(n: i64) -> Option<u128> {
    const P: [u128; 39] = {
        let mut p = [1u128; 39];
        let mut i = 1;
        while i < 39 {
            p[i] = p[i - 1] * 10;
            i += 1;
        }
        p
    };
    P.get(usize::try_from(n).ok()?).copied()
}

/// Whether `v` is within half a unit of `dec`'s last digit: `dec` is `v`
/// rounded to its digits, either way on a tie (a double halfway between
/// two texts prints as either, depending on the printer).
fn within_half_unit(v: f64, dec: &Decimal<'_>) -> bool {
    // A double's exact decimal expansion has at most 767 significant
    // digits; Rust prints it exactly.
    let exact = format!("{v:.780e}");
    let Some((m, e)) = exact.split_once('e') else {
        return false;
    };
    let Ok(e) = e.parse::<i64>() else {
        return false;
    };
    let digits: Vec<u8> = m.bytes().filter(u8::is_ascii_digit).collect();
    let (head, rest) = digits.split_at(dec.n.min(digits.len()));
    let (first, tail) = rest.split_first().unwrap_or((&b'0', &[]));
    let zeros = tail.iter().all(|&d| d == b'0');
    let down = head.to_vec();
    let mut up = head.to_vec();
    let mut up_sci = e;
    if up.iter().all(|&d| d == b'9') {
        up = vec![b'1'];
        up_sci += 1;
    } else {
        let i = up.iter().rposition(|&d| d != b'9').unwrap_or(0);
        up[i] += 1;
        up[i + 1..].fill(b'0');
    }
    let is = |ds: &[u8], sci: i64| {
        let t = std::str::from_utf8(ds).unwrap_or("");
        Decimal::parse(t).is_some_and(|mut d| {
            d.sci = d.sci.saturating_add(sci - (t.len() as i64 - 1));
            d.same(dec)
        })
    };
    match (*first, zeros) {
        (b'5', true) => is(&down, e) || is(&up, up_sci),
        (d, _) if d < b'5' => is(&down, e),
        _ => is(&up, up_sci),
    }
}

/// One text per number value, for a number used as a key: `1`, `1.0`,
/// `1e0` and `10e-1` are one number, so one key (`1`), and `1e1` is `10`.
/// Exact, never through a float: the significant digits as written, placed
/// much as JavaScript prints a number (plain from 1e-6 up to an integer
/// written with at most 20 zeros after its digits, else `d.ddde±x`), so two
/// texts give one key only when they are one value.
/// `-0` is `0`. `None` when `text` is not a JSON number.
pub fn canonical(text: &str) -> Option<String> {
    let d = Decimal::parse(text.trim())?;
    if d.n == 0 {
        return Some("0".into());
    }
    let digits: Vec<u8> = d
        .int
        .iter()
        .chain(d.frac)
        .skip(d.lead)
        .take(d.n)
        .copied()
        .collect();
    let digits = std::str::from_utf8(&digits).ok()?;
    let mut out = String::with_capacity(d.n + 8);
    if text.trim_start().starts_with('-') {
        out.push('-');
    }
    let (n, sci) = (d.n as i64, d.sci);
    // An integer is written out unless that takes more than 20 zeros.
    if sci >= 0 && sci + 1 - n <= 20 {
        if n <= sci + 1 {
            out.push_str(digits);
            out.extend(std::iter::repeat_n('0', (sci + 1 - n) as usize));
        } else {
            let (int, frac) = digits.split_at(sci as usize + 1);
            out.push_str(int);
            out.push('.');
            out.push_str(frac);
        }
    } else if (-6..0).contains(&sci) {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-sci - 1) as usize));
        out.push_str(digits);
    } else {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push_str(&sci.to_string());
    }
    Some(out)
}

/// The `f64` that `text` (a JSON number) denotes when it holds every digit
/// written; else why not, as the end of a sentence naming the value ("is
/// …", "has …").
pub fn exact_f64(text: &str) -> Result<f64, String> {
    let Some(dec) = Decimal::parse(text) else {
        return Err("is not a finite number".into());
    };
    // Clinger's fast path: up to 15 digits and a power of ten up to 22 are
    // both doubles, so one multiplication or division rounds once, as the
    // full parse would.
    if let (Some(m), true) = (dec.m, dec.n <= 15) {
        let k = dec.sci - (dec.n as i64 - 1);
        let sign = if text.starts_with('-') { -1.0 } else { 1.0 };
        if (0..=22).contains(&k) {
            return Ok(sign * m as f64 * POW10[k as usize]);
        }
        if (-22..0).contains(&k) {
            return Ok(sign * (m as f64 / POW10[(-k) as usize]));
        }
    }
    let v: f64 = text
        .parse()
        .map_err(|_| "is not a finite number".to_string())?;
    if !v.is_finite() {
        return Err(
            "is too large for a 64-bit float (its limit is ±1.7976931348623157e308)".into(),
        );
    }
    if dec.n == 0 {
        return Ok(v);
    }
    if v == 0.0 {
        return Err(
            "is too small for a 64-bit float (it would be read as 0; the smallest is 5e-324)"
                .into(),
        );
    }
    if dec.n <= 15 && v.abs() >= f64::MIN_POSITIVE {
        return Ok(v);
    }
    let held = match within_half_unit_u128(v.abs(), &dec) {
        Some(held) => held,
        None => within_half_unit(v.abs(), &dec),
    };
    if held {
        return Ok(v);
    }
    let mut buf = ryu::Buffer::new();
    Err(format!(
        "has more significant digits than a 64-bit float holds (it would be read as {}). Fix: send it with at most 15 significant digits (the job aggregates 64-bit floats)",
        buf.format_finite(v)
    ))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_number_has_one_key_text_per_value() {
        for (texts, key) in [
            (&["1", "1.0", "1e0", "10e-1", "0.1e1", "1.000E+0"][..], "1"),
            (&["10", "1e1", "10.00", "100e-1"], "10"),
            (&["0", "-0", "0.0", "0e5", "-0.000"], "0"),
            (&["-2.50", "-25e-1"], "-2.5"),
            (&["0.000001", "1e-6"], "0.000001"),
            (&["1e-7", "0.0000001"], "1e-7"),
            (
                &["123456789012345678901234567890"],
                "123456789012345678901234567890",
            ),
            (&["1234567890123456789012"], "1234567890123456789012"),
            (&["12e21"], "1.2e22"),
            (&["100000000000000000000", "1e20"], "100000000000000000000"),
            (&["1e21"], "1e21"),
            (&["9007199254740993"], "9007199254740993"),
            (&["1.5e400"], "1.5e400"),
            (&["-12.340e-400"], "-1.234e-399"),
        ] {
            for t in texts {
                assert_eq!(canonical(t).as_deref(), Some(key), "{t}");
            }
        }
        // Different values, different keys: nothing is rounded.
        assert_ne!(canonical("9007199254740993"), canonical("9007199254740992"));
        assert_ne!(canonical("0.30000000000000001"), canonical("0.3"));
        for bad in ["", "-", "1.", ".5", "1e", "x", "1x"] {
            assert_eq!(canonical(bad), None, "{bad}");
        }
    }

    /// The definition in integers, without the shortcuts: |text − v| ≤
    /// ½·10^(last digit's power), the text as digits·10^k, the double as
    /// m·2^e, both exact.
    fn reference(text: &str) -> Option<f64> {
        use num_bigint::BigInt;
        let v: f64 = text.parse().ok()?;
        let (mant, exp) = match text.split_once(['e', 'E']) {
            Some((m, e)) => (m, e.parse::<i64>().ok()?),
            None => (text, 0),
        };
        let frac_len = mant.split_once('.').map_or(0, |(_, f)| f.len() as i64);
        let mut digits: String = mant.chars().filter(char::is_ascii_digit).collect();
        let mut k = exp - frac_len;
        if digits.trim_start_matches('0').is_empty() {
            return Some(v);
        }
        while digits.ends_with('0') {
            digits.pop();
            k += 1;
        }
        if !v.is_finite() {
            return None;
        }
        let t: BigInt = digits.parse().ok()?;
        let t = if text.starts_with('-') { -t } else { t };
        // v = m·2^e exactly.
        let bits = v.to_bits();
        let (sign, be, frac) = (
            bits >> 63,
            ((bits >> 52) & 0x7ff) as i64,
            bits & ((1 << 52) - 1),
        );
        let (m, e) = if be == 0 {
            (frac, -1074)
        } else {
            (frac | 1 << 52, be - 1075)
        };
        let m = if sign == 1 {
            -BigInt::from(m)
        } else {
            BigInt::from(m)
        };
        // Scale both by 2^max(0,-e)·10^max(0,-k) into integers, then
        // compare 2·|t·10^k − m·2^e| with 10^k.
        let p2 = |n: i64| BigInt::from(2).pow(n as u32);
        let p10 = |n: i64| BigInt::from(10).pow(n as u32);
        let (s2, s10) = ((-e).max(0), (-k).max(0));
        let left_t = t.clone() * p10(k + s10) * p2(s2);
        let left_v = m * p2(e + s2) * p10(s10);
        let diff = (left_t - left_v).magnitude().clone();
        let unit = (p10(k + s10) * p2(s2)).magnitude().clone();
        (diff * 2u32 <= unit).then_some(v)
    }

    #[test]
    fn values_an_f64_holds_are_read_exactly() {
        for (t, v) in [
            ("0", 0.0),
            ("-0", -0.0),
            ("0.0e-999999999999999999999", 0.0),
            ("1.5", 1.5),
            ("0.1", 0.1),
            ("0.1000000000000000000", 0.1),
            ("0.29999999999999999", 0.3),
            ("0.30000000000000004", 0.1 + 0.2),
            ("9007199254740992", 9007199254740992.0),
            ("100000000000000000000", 1e20),
            ("1.7976931348623157e308", f64::MAX),
            ("2.2250738585072014e-308", f64::MIN_POSITIVE),
            ("5e-324", 5e-324),
            ("1e-320", 1e-320),
            ("-42.123456789012344", -42.123456789012344),
            ("1E+2", 100.0),
        ] {
            assert_eq!(exact_f64(t), Ok(v), "{t}");
        }
    }

    #[test]
    fn values_an_f64_would_change_are_refused_with_what_they_would_become() {
        for (t, part) in [
            ("9007199254740993", "read as 9007199254740992"),
            ("12345678901234567890", "read as 1.2345678901234567e19"),
            ("0.30000000000000001", "read as 0.3"),
            ("3.14159265358979323846", "read as 3.141592653589793"),
            ("1e-400", "read as 0"),
            ("-1e-400", "read as 0"),
            ("1.23456e-320", "read as 1.2347e-320"),
            ("1e400", "too large"),
            ("-1.8e308", "too large"),
        ] {
            let e = exact_f64(t).expect_err(t);
            assert!(e.contains(part), "{t}: {e}");
        }
        assert_eq!(exact_f64("\"1\"").unwrap_err(), "is not a finite number");
    }

    fn decimal_text() -> impl Strategy<Value = String> {
        (
            any::<bool>(),
            "[0-9]{1,22}",
            proptest::option::of("[0-9]{0,22}"),
            proptest::option::of(-340i32..330),
        )
            .prop_map(|(neg, int, frac, exp)| {
                let mut s = String::new();
                if neg {
                    s.push('-');
                }
                s.push_str(&int);
                if let Some(f) = frac {
                    s.push('.');
                    s.push_str(if f.is_empty() { "0" } else { &f });
                }
                if let Some(e) = exp {
                    s.push_str(&format!("e{e}"));
                }
                s
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn agrees_with_the_definition(text in decimal_text()) {
            prop_assert_eq!(exact_f64(&text).ok(), reference(&text), "{}", text);
        }

        #[test]
        fn every_double_s_texts_are_exact(bits in any::<u64>()) {
            let v = f64::from_bits(bits);
            prop_assume!(v.is_finite());
            for t in [
                ryu::Buffer::new().format_finite(v).to_string(),
                format!("{v:e}"),
                format!("{v:.16e}"),
                format!("{v}"),
            ] {
                prop_assert_eq!(exact_f64(&t).map(f64::to_bits), Ok(v.to_bits()), "{}", t);
            }
        }

        #[test]
        fn integers_are_exact_only_when_the_double_is_the_integer(i in any::<i128>()) {
            let got = exact_f64(&i.to_string());
            let f = i as f64;
            // `as` saturates: 2^127 would pass for i128::MAX.
            let held = f as i128 == i && f != 2f64.powi(127);
            prop_assert_eq!(got.is_ok(), held, "{} {:?}", i, got);
        }
    }
}
