//! Epoch times read exactly from their digits.

/// Milliseconds since the epoch of a decimal number `text` in a unit
/// `10^-to_ns` seconds below nanoseconds' (9 for seconds, 6 for ms, 3 for
/// µs, 0 for ns), computed exactly on the digits and floored; `None` for
/// text that is not a number, or a time outside the years -9999 to 9999.
pub fn epoch_ms(text: &str, to_ns: i32) -> Option<i64> {
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i32>().ok()?),
        None => (t, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // Digits far below a nanosecond only decide the floor of a negative
    // time: keep 40 and remember whether a dropped one was not zero.
    let (frac, dropped) = if frac.len() > 40 {
        (&frac[..40], frac[40..].bytes().any(|b| b != b'0'))
    } else {
        (frac, false)
    };
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    // value = digits × 10^(exp − len(frac)) units = digits × 10^scale ns.
    let scale = exp
        .checked_sub(i32::try_from(frac.len()).ok()?)?
        .checked_add(to_ns)?;
    // The years -9999..9999 are under 4e20 ns: more digits cannot fit.
    if digits.len() as i64 + i64::from(scale) > 22 {
        return None;
    }
    let m: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let ns: i128 = if scale >= 0 {
        m.checked_mul(10i128.checked_pow(scale as u32)?)?
    } else if -scale > 38 {
        0
    } else {
        m / 10i128.pow((-scale) as u32)
    };
    // Truncation toward zero of a negative value is a ceiling: floor it.
    let exact = !dropped
        && (m == 0 || scale >= 0 || (-scale <= 38 && m % 10i128.pow((-scale) as u32) == 0));
    let ns = if neg { -ns - i128::from(!exact) } else { ns };
    let ms = ns.div_euclid(1_000_000);
    // jiff's range, as for RFC 3339 times.
    const MAX_MS: i128 = 253_402_300_799_999;
    const MIN_MS: i128 = -377_705_116_800_000;
    (MIN_MS..=MAX_MS).contains(&ms).then_some(ms as i64)
}
