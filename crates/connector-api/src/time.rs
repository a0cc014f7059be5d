//! Times and durations as connectors and jobs read them: event times in
//! RFC 3339 to the milliseconds of [`Record::timestamp`](crate::Record) and
//! back, and duration settings (`"10s"`, `"500ms"`). One implementation for
//! every crate, on kept libraries: jiff reads every offset, fraction length
//! and case that RFC 3339 allows, exactly, and keeps times before 1970
//! negative instead of clipping them; humantime reads durations. Since API
//! 2.0.

use std::ops::RangeInclusive;
use std::time::Duration;

use jiff::Timestamp;

mod memo;
mod written;

/// Milliseconds since the Unix epoch of an RFC 3339 time with any offset
/// (`Z`, `z`, `+05:30`, `-08:00`), any fraction length and either case of
/// `T`. Fractions below a millisecond are floored, so a time belongs to the
/// window that holds it (`…:09.9995Z` is 9 999 ms, never 10 000). A time
/// without an offset is refused: guessing its zone would shift it silently.
pub fn parse_rfc3339_ms(s: &str) -> Result<i64, String> {
    memo::lookup(s).map_or_else(|| parse_whole(s), Ok)
}

/// [`parse_rfc3339_ms`] by jiff alone, and the leap second rule: jiff reads
/// a second of `60` as `59` at any minute, so `00:00:60Z` (a clock that
/// wrote the next minute's first second so) landed a minute early, in
/// another window. Only a real leap second, `23:59:60` UTC, is taken, as
/// the second before it (as Java's `Instant.parse` does: Unix time has no
/// place for it); any other second 60 is refused.
fn parse_whole(s: &str) -> Result<i64, String> {
    // jiff reads up to 9 fraction digits; more cannot move the floor to
    // the millisecond, so they are cut, not refused.
    let cut = nine_digit_fraction(s);
    let text = cut.as_deref().unwrap_or(s);
    let t: Timestamp = text
        .parse()
        .map_err(|e| {
            format!(
                "timestamp `{s}` is not an RFC 3339 time with a UTC offset within the years -9999 to 9999: {e}"
            )
        })?;
    written::check(text, t).map_err(|e| e.replace(text, s))?;
    if second_60(s) && t.as_second().rem_euclid(86_400) != 86_399 {
        return Err(format!(
            "timestamp `{s}` has second 60, which only a leap second at 23:59:60 UTC may have (jiff would read it as second 59 of the same minute). Fix: write the next minute's first second as :00"
        ));
    }
    Ok(floor_ms(t))
}

/// The time of day in `s` (after the `T`, `t` or space that ends its
/// date) and the length of its `HH:MM:SS` or `HHMMSS`.
fn time_of_day(s: &str) -> Option<(&[u8], usize)> {
    let b = s.as_bytes();
    let i = b
        .iter()
        .skip(6)
        .position(|c| matches!(c, b'T' | b't' | b' '))?;
    let time = &b[i + 7..];
    Some((time, if time.get(2) == Some(&b':') { 8 } else { 6 }))
}

/// Whether the time of day in `s` is written with second 60, as
/// `HH:MM:60` or `HHMM60`.
fn second_60(s: &str) -> bool {
    time_of_day(s).is_some_and(|(time, len)| time.get(len - 2..len) == Some(b"60".as_slice()))
}

/// `s` with its fraction of seconds cut to 9 digits, when it has more.
fn nine_digit_fraction(s: &str) -> Option<String> {
    let (time, len) = time_of_day(s)?;
    if !matches!(time.get(len), Some(b'.' | b',')) {
        return None;
    }
    let digits = time[len + 1..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if digits <= 9 {
        return None;
    }
    // The fraction's first digit, as an index into `s`.
    let at = s.len() - time.len() + len + 1;
    Some(format!("{}{}", &s[..at + 9], &s[at + digits..]))
}

fn floor_ms(t: Timestamp) -> i64 {
    t.as_nanosecond().div_euclid(1_000_000) as i64
}

/// `2026-11-25T10:00:01.000Z` for a time in ms since the epoch, or `None`
/// outside the years -9999 to 9999.
pub fn try_format_rfc3339_ms(ms: i64) -> Option<String> {
    let t = Timestamp::from_millisecond(ms).ok()?;
    if ms < YEAR_0 {
        // Negative years: strftime's `%Y` (`-001`), as always.
        return Some(t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
    }
    // jiff's RFC 3339 printer: the same text for the years 0 to 9999, at
    // a fraction of strftime's cost (window documents carry two per window).
    let mut s = String::with_capacity(24);
    PRINTER
        .print_timestamp(&t, &mut s)
        .expect("a String takes any text");
    Some(s)
}

/// `0000-01-01T00:00:00Z` in ms since the epoch.
const YEAR_0: i64 = -62_167_219_200_000;

static PRINTER: jiff::fmt::temporal::DateTimePrinter =
    jiff::fmt::temporal::DateTimePrinter::new().precision(Some(3));

/// [`try_format_rfc3339_ms`], or the plain millisecond number for a time
/// outside the years -9999 to 9999 (never a panic, never a clipped time).
pub fn format_rfc3339_ms(ms: i64) -> String {
    try_format_rfc3339_ms(ms).unwrap_or_else(|| ms.to_string())
}

/// A duration setting (`"10s"`, `"500ms"`, `"1m"`, `"2h 30m"`) within
/// `range`. The error names the field, the value, what is wrong and the fix,
/// for the caller to wrap in its own error type.
pub fn parse_duration(
    field: &str,
    value: &str,
    range: RangeInclusive<Duration>,
) -> Result<Duration, String> {
    let d = humantime::parse_duration(value).map_err(|e| {
        format!("`{field}` = \"{value}\" is not a duration ({e}). Fix: write it like \"10s\", \"500ms\" or \"1m\"")
    })?;
    if !range.contains(&d) {
        let (lo, hi) = (range.start(), range.end());
        return Err(format!(
            "`{field}` = \"{value}\" is outside {} to {}. Fix: a duration in that range, like \"10s\"",
            humantime::format_duration(*lo),
            humantime::format_duration(*hi)
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn offsets_fractions_and_case() {
        let base = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        for (s, want) in [
            ("2026-01-01T00:00:01.250+05:30", base + 1_250 - 19_800_000),
            ("2026-01-01T02:05:00+02:00", base + 300_000),
            ("2026-01-01t00:00:01.25z", base + 1_250),
            ("2026-01-01T00:00:01.123456789Z", base + 1_123),
            ("2026-01-01T00:00:01Z", base + 1_000),
            ("2025-12-31T19:00:00-05:00", base),
            ("1969-12-31T23:59:59.9995Z", -1),
            ("1970-01-01T00:00:00Z", 0),
        ] {
            assert_eq!(parse_rfc3339_ms(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn no_offset_or_no_time_is_refused_with_the_value() {
        for s in [
            "2026-01-01T00:00:01",
            "yesterday",
            "",
            "2026-13-01T00:00:00Z",
        ] {
            let e = parse_rfc3339_ms(s).unwrap_err();
            assert!(e.contains(&format!("`{s}`")), "{e}");
        }
    }

    #[test]
    fn only_a_leap_second_may_have_second_60() {
        let base = 1_767_225_600_000; // 2026-01-01T00:00:00Z
                                      // A real leap second (as UTC, or in another offset) is the second
                                      // before it, with its fraction.
        for (s, want) in [
            ("2016-12-31T23:59:60Z", 1_483_228_799_000),
            ("2016-12-31T23:59:60.250Z", 1_483_228_799_250),
            ("2017-01-01T00:59:60+01:00", 1_483_228_799_000),
            ("2016-12-31 23:59:60z", 1_483_228_799_000),
        ] {
            assert_eq!(parse_rfc3339_ms(s), Ok(want), "{s}");
        }
        for s in [
            "2026-01-01T00:00:60Z",
            "2026-01-01T00:00:60.5Z",
            "2025-12-31T23:59:60+01:00",
            "2026-01-01t12:34:60-05:30",
            "20260101T000060Z",
        ] {
            let e = parse_rfc3339_ms(s).unwrap_err();
            assert!(e.contains(&format!("`{s}` has second 60")), "{e}");
        }
        // 60 elsewhere is not a second.
        assert_eq!(parse_rfc3339_ms("2026-01-01T00:00:06Z"), Ok(base + 6_000));
        assert!(!second_60("2026-01-01T00:60:00Z"));
        assert!(!second_60("60"));
        assert!(!second_60("+002026-01-01T00:00:59Z"));
        assert!(second_60("+002026-01-01T00:00:60Z"));
    }

    #[test]
    fn fractions_of_any_length_are_floored() {
        let base = 1_767_225_600_000; // 2026-01-01T00:00:00Z
                                      // jiff reads 9 digits; more are floored like the others.
        for (s, want) in [
            ("2026-01-01T00:00:05.123456789123Z", base + 5_123),
            ("2026-01-01T00:00:05,99999999999999999+00:00", base + 5_999),
            ("2025-12-31T23:59:59.9999999999999-00:00", base - 1),
            ("20260101T000005.0000000001Z", base + 5_000),
        ] {
            assert_eq!(parse_rfc3339_ms(s), Ok(want), "{s}");
        }
        assert!(parse_rfc3339_ms("2026-01-01T00:00:05.1234567891x").is_err());
    }

    #[test]
    fn durations_within_their_range() {
        let r = Duration::from_millis(1)..=Duration::from_secs(86_400);
        assert_eq!(
            parse_duration("t", "1m 30s", r.clone()),
            Ok(Duration::from_secs(90))
        );
        assert_eq!(
            parse_duration("t", "1ms", r.clone()),
            Ok(Duration::from_millis(1))
        );
        let e = parse_duration("timeout", "soon", r.clone()).unwrap_err();
        assert!(
            e.contains("`timeout` = \"soon\" is not a duration") && e.contains("Fix"),
            "{e}"
        );
        let e = parse_duration("timeout", "2d", r.clone()).unwrap_err();
        assert!(e.contains("outside 1ms to 1day"), "{e}");
        assert!(parse_duration("timeout", "0s", r).is_err());
    }

    #[test]
    fn formats_utc_with_milliseconds_and_never_clips() {
        assert_eq!(format_rfc3339_ms(1_000), "1970-01-01T00:00:01.000Z");
        assert_eq!(format_rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            format_rfc3339_ms(1_767_225_601_250),
            "2026-01-01T00:00:01.250Z"
        );
        assert_eq!(format_rfc3339_ms(i64::MAX), i64::MAX.to_string());
        assert_eq!(format_rfc3339_ms(YEAR_0), "0000-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_ms(YEAR_0 - 1), "-001-12-31T23:59:59.999Z");
        // Near jiff's last instant (its range leaves room for any offset).
        assert_eq!(
            format_rfc3339_ms(253_402_207_199_999),
            "9999-12-30T21:59:59.999Z"
        );
    }

    /// A time from `secs`, `offset_min`, a fraction of `digits` digits of
    /// `nanos` after `sep`, and `t` between date and time.
    fn written(
        secs: i64,
        nanos: u32,
        digits: usize,
        sep: char,
        offset_min: i32,
        t: char,
    ) -> String {
        let utc = Timestamp::new(secs, 0).unwrap();
        let off = jiff::tz::Offset::from_seconds(offset_min * 60).unwrap();
        let c = off.to_datetime(utc);
        let frac = if digits == 0 {
            String::new()
        } else {
            format!("{sep}{}", &format!("{nanos:09}")[..digits])
        };
        let zone = if offset_min == 0 && nanos.is_multiple_of(2) {
            "Z".to_string()
        } else {
            let sign = if offset_min < 0 { '-' } else { '+' };
            format!(
                "{sign}{:02}:{:02}",
                offset_min.abs() / 60,
                offset_min.abs() % 60
            )
        };
        let (h, m, s) = (c.hour(), c.minute(), c.second());
        format!("{}{t}{h:02}:{m:02}:{s:02}{frac}{zone}", c.date())
    }

    proptest! {
        /// The memo against jiff on the whole text, over runs of times
        /// sharing a few seconds (so the memo holds them), with random
        /// fractions, separators and offsets, and some texts damaged at a
        /// random byte: the same milliseconds, or the same error.
        #[test]
        fn the_memo_gives_what_jiff_gives(
            seconds in proptest::collection::vec(-62_000_000_000i64..253_402_000_000, 1..4),
            times in proptest::collection::vec(
                (0usize..4, 0u32..1_000_000_000, 0usize..=10, any::<bool>(), -1439i32..=1439, any::<bool>(), proptest::option::weighted(0.2, (any::<usize>(), any::<u8>()))),
                1..40,
            ),
        ) {
            for (i, nanos, digits, comma, offset_min, lower, damage) in times {
                let secs = seconds[i % seconds.len()];
                let offset_min = if nanos.is_multiple_of(3) { 0 } else { offset_min };
                let mut s = written(secs, nanos, digits.min(9), if comma { ',' } else { '.' }, offset_min, if lower { 't' } else { 'T' });
                if digits == 10 {
                    s.insert(20, '7');
                }
                if let Some((at, byte)) = damage {
                    let mut b = s.into_bytes();
                    let at = at % b.len();
                    b[at] = byte % 128;
                    s = String::from_utf8(b).unwrap();
                }
                prop_assert_eq!(parse_rfc3339_ms(&s), parse_whole(&s), "{}", s);
            }
        }

        /// The fast printer against strftime, over the whole range.
        #[test]
        fn formats_as_strftime_does(
            ms in Timestamp::MIN.as_millisecond() + 1000..=253_402_207_199_999i64
        ) {
            let t = Timestamp::from_millisecond(ms).unwrap();
            let want = t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            prop_assert_eq!(format_rfc3339_ms(ms), want);
        }

        /// Against jiff's civil-time arithmetic, independently of the
        /// parser: a civil time written with a random offset and fraction
        /// parses to that civil time minus the offset.
        #[test]
        fn any_offset_and_fraction(
            secs in -2_000_000_000i64..4_000_000_000,
            nanos in 0u32..1_000_000_000,
            digits in 1usize..=9,
            offset_min in -1439i32..=1439,
            lower in any::<bool>(),
        ) {
            let frac = format!("{nanos:09}")[..digits].to_string();
            let kept: u32 = frac.parse::<u32>().unwrap() * 10u32.pow((9 - digits) as u32);
            let utc = Timestamp::new(secs, kept as i32).unwrap();
            let off = jiff::tz::Offset::from_seconds(offset_min * 60).unwrap();
            let civil = off.to_datetime(utc);
            let sign = if offset_min < 0 { '-' } else { '+' };
            let (h, m) = (offset_min.abs() / 60, offset_min.abs() % 60);
            let t = if lower { 't' } else { 'T' };
            let s = format!(
                "{}{t}{:02}:{:02}:{:02}.{frac}{sign}{h:02}:{m:02}",
                civil.date(),
                civil.hour(),
                civil.minute(),
                civil.second(),
            );
            let want = (secs as i128 * 1_000_000_000 + kept as i128).div_euclid(1_000_000) as i64;
            prop_assert_eq!(parse_rfc3339_ms(&s), Ok(want), "{}", s);
            prop_assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(want)), Ok(want));
        }
    }
}
