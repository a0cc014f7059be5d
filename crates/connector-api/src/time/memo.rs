//! A memo for [`parse_rfc3339_ms`](super::parse_rfc3339_ms): event times
//! of one second differ only in their fraction, and parsing the date, time
//! and offset again for each was about 4 % of a job's CPU.
//!
//! The memo holds, per thread, the last few texts *without* their fraction
//! (`2026-12-05T10:00:01Z` for `2026-12-05T10:00:01.250Z`) with what jiff
//! made of them. A time whose text around the fraction is held is that
//! second plus its fraction, floored to the millisecond: the same as jiff
//! on the whole text, since a second's instant is a whole number of
//! milliseconds and a fraction only adds to it. Anything else (no memo
//! entry, a text of another shape, a leap second, an error) goes to jiff,
//! so errors keep jiff's words. A property test holds it to jiff.

use std::cell::RefCell;

/// Entries kept per thread: out-of-order events interleave a few seconds.
const ENTRIES: usize = 4;

/// `YYYY-MM-DDTHH:MM:SS`: what comes before a fraction.
const PREFIX: usize = 19;

#[derive(Default)]
struct Memo {
    /// The text without its fraction, and its milliseconds.
    entries: [(String, i64); ENTRIES],
    next: usize,
}

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::new(Memo::default());
}

/// `s` cut around its fraction: `(prefix, fraction digits, tail)`, when
/// it starts with a date and a time to the second (not a leap second), the
/// seconds carry no fraction or one of 1 to 9 digits, and nothing reading
/// as another fraction follows.
fn cut(s: &str) -> Option<(&str, &[u8], &str)> {
    let b = s.as_bytes();
    if b.len() <= PREFIX {
        return None;
    }
    let shape = b"0000-00-00T00:00:00";
    let fits = b[..PREFIX].iter().zip(shape).all(|(&c, &p)| match p {
        b'0' => c.is_ascii_digit(),
        b'T' => matches!(c, b'T' | b't'),
        _ => c == p,
    });
    if !fits || &b[17..19] == b"60" {
        return None;
    }
    let (start, digits) = if matches!(b[PREFIX], b'.' | b',') {
        let n = b[PREFIX + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if !(1..=9).contains(&n) {
            return None;
        }
        (PREFIX + 1, n)
    } else {
        (PREFIX, 0)
    };
    let end = start + digits;
    // After the seconds, jiff would read a tail starting so as a fraction
    // or more seconds (`…:00.0,00Z` is refused whole, `…:00,00Z` parses).
    if b.get(end)
        .is_some_and(|c| c.is_ascii_digit() || matches!(c, b'.' | b','))
    {
        return None;
    }
    // The cuts are at ASCII bytes, so on char boundaries.
    Some((&s[..PREFIX], &b[start..end], &s[end..]))
}

/// The fraction's whole milliseconds (`"25"` is 250, `"9999"` is 999).
fn fraction_ms(digits: &[u8]) -> i64 {
    let mut ms = 0;
    for i in 0..3 {
        ms = ms * 10 + digits.get(i).map_or(0, |d| i64::from(d - b'0'));
    }
    ms
}

/// The milliseconds of `s` through the memo, or `None` for jiff to read
/// it whole.
pub(super) fn lookup(s: &str) -> Option<i64> {
    let (prefix, digits, tail) = cut(s)?;
    let frac = fraction_ms(digits);
    MEMO.with(|m| {
        let mut m = m.borrow_mut();
        let held = m.entries.iter().find(|(k, _)| {
            k.len() == PREFIX + tail.len() && k.starts_with(prefix) && k.ends_with(tail)
        });
        if let Some((_, base)) = held {
            return Some(base + frac);
        }
        let key = format!("{prefix}{tail}");
        let base = super::parse_whole(&key).ok()?;
        let i = m.next;
        m.entries[i] = (key, base);
        m.next = (i + 1) % ENTRIES;
        Some(base + frac)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_around_the_fraction_only_where_it_is_one() {
        assert_eq!(
            cut("2026-12-05T10:00:01.25Z"),
            Some(("2026-12-05T10:00:01", &b"25"[..], "Z"))
        );
        assert_eq!(
            cut("2026-12-05t10:00:01,123456789+05:30"),
            Some(("2026-12-05t10:00:01", &b"123456789"[..], "+05:30"))
        );
        // No fraction: the whole text is the key.
        assert_eq!(
            cut("2026-12-05T10:00:01Z"),
            Some(("2026-12-05T10:00:01", &b""[..], "Z"))
        );
        for s in [
            "2026-12-05T10:00:01.Z",
            "2026-12-05T10:00:011Z",
            "2026-12-05T23:59:60.5Z",
            "2026-12-05 10:00:01.5Z",
            "+02026-12-05T10:00:01.5Z",
            "2026-12-05T10:00:01.1234567890Z",
            "2026-1x-05T10:00:01.5Z",
            "1970-01-01T00:00:00.0,00Z",
            "1970-01-01T00:00:00.0.5Z",
        ] {
            assert_eq!(cut(s), None, "{s}");
        }
    }

    #[test]
    fn fractions_are_floored_to_the_millisecond() {
        assert_eq!(fraction_ms(b"5"), 500);
        assert_eq!(fraction_ms(b"25"), 250);
        assert_eq!(fraction_ms(b"9999"), 999);
        assert_eq!(fraction_ms(b"000000001"), 0);
    }
}
