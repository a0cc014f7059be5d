//! What RFC 3339 asks of a time's text that jiff, reading the wider
//! Temporal grammar (ISO 8601 with RFC 9557 annotations), lets through,
//! where letting it through would put an event in a window it may not
//! belong to, with nothing said:
//!
//! - **No seconds** (`10:00Z`, `10Z`): the event is somewhere in that minute
//!   or hour. Taking the minute's start puts all of them in its first window.
//! - **An offset of 24 hours or more** (`+25:00`): RFC 3339 allows hours 00
//!   to 23, so the text is damaged, and jiff reads it as an instant a day
//!   away from any real clock.
//! - **A time zone annotation that disagrees with the offset**
//!   (`10:00:01+00:00[Europe/Paris]` in December, when Paris is `+01:00`):
//!   one of the two is wrong and nothing tells which. An annotation that
//!   agrees, or follows `Z` or `-00:00` (no local offset known, RFC 9557
//!   §4.3), is taken. A zone this machine's time zone database does not
//!   know is taken by the offset, unless marked critical (`[!…]`), which
//!   RFC 9557 forbids ignoring.
//!
//! Forms that are not RFC 3339 but say one instant exactly are taken:
//! the basic format (`20260101T000005Z`), offsets without minutes or with
//! seconds (`+05`, `+05:30:15`), a space for the `T`.

use jiff::fmt::temporal::{Pieces, PiecesOffset};
use jiff::Timestamp;

/// `Err` with the reason and the fix when `s` (the text jiff read as `t`)
/// says less than one instant to the second, or two instants.
pub(super) fn check(s: &str, t: Timestamp) -> Result<(), String> {
    if !has_seconds(s) {
        return Err(format!(
            "timestamp `{s}` has no seconds, so its event could be anywhere in that minute or hour and its window is not known. Fix: write the time to the second at least, as `2026-01-01T10:00:00Z`"
        ));
    }
    // jiff read `s` whole, so its pieces parse too.
    let Ok(pieces) = Pieces::parse(s) else {
        return Ok(());
    };
    let written = match pieces.offset() {
        Some(PiecesOffset::Numeric(n)) if !(n.is_negative() && n.offset().seconds() == 0) => {
            Some(n.offset())
        }
        _ => None,
    };
    if let Some(off) = written {
        if off.seconds().abs() >= 86_400 {
            return Err(format!(
                "timestamp `{s}` has the offset {off}, and an offset must be less than 24 hours (RFC 3339 allows hours 00 to 23). Fix: the writer's real UTC offset, as `+05:30`, or `Z`"
            ));
        }
    }
    let Some(zone) = pieces.time_zone_annotation() else {
        return Ok(());
    };
    match zone.to_time_zone() {
        Ok(tz) => match written {
            Some(off) if tz.to_offset(t) != off => {
                let name = tz.iana_name().map_or_else(|| format!("`[{}]`", tz.to_offset(t)), str::to_string);
                Err(format!(
                    "timestamp `{s}` has the offset {off}, but its time zone {name} has the offset {} at that time, so it names two instants. Fix: write the offset the zone has then, or drop the `[…]` annotation",
                    tz.to_offset(t)
                ))
            }
            _ => Ok(()),
        },
        Err(e) if zone.is_critical() => Err(format!(
            "timestamp `{s}` marks its time zone annotation critical (`[!…]`), and this machine cannot check it against the offset ({e}). Fix: drop the `!` or the annotation, or install the time zone database (tzdata)"
        )),
        Err(_) => Ok(()),
    }
}

/// Whether the time of day in `s` is written to the second: `HH:MM:SS` or
/// `HHMMSS`.
fn has_seconds(s: &str) -> bool {
    let Some((time, len)) = super::time_of_day(s) else {
        return true;
    };
    let digits = |r: std::ops::Range<usize>| {
        time.get(r)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    if len == 8 {
        time.get(5) == Some(&b':') && digits(6..8)
    } else {
        digits(0..6)
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_rfc3339_ms;

    #[test]
    fn a_time_without_seconds_is_refused() {
        for s in [
            "2026-12-05T10:00Z",
            "2026-12-05T10Z",
            "2026-12-05T10:00+01:00",
            "20261205T1000Z",
            "2026-12-05 10:00z",
        ] {
            let e = parse_rfc3339_ms(s).unwrap_err();
            assert!(e.contains(&format!("`{s}` has no seconds")), "{s}: {e}");
        }
        assert_eq!(parse_rfc3339_ms("20261205T100001Z"), Ok(1_796_464_801_000));
    }

    #[test]
    fn an_offset_of_a_day_or_more_is_refused() {
        for s in [
            "2026-12-05T10:00:01+25:00",
            "2026-12-05T10:00:01-24:00",
            "2026-12-05T10:00:01.5+24:00",
        ] {
            let e = parse_rfc3339_ms(s).unwrap_err();
            assert!(e.contains("must be less than 24 hours"), "{s}: {e}");
        }
        // 23:59 is the largest RFC 3339 offset; with seconds, jiff's own.
        let at = 1_796_464_801_000;
        assert_eq!(parse_rfc3339_ms("2026-12-06T09:59:01+23:59"), Ok(at));
        assert_eq!(parse_rfc3339_ms("2026-12-05T15:30:16+05:30:15"), Ok(at));
        assert_eq!(parse_rfc3339_ms("2026-12-05T15:00:01+05"), Ok(at));
    }

    #[test]
    fn a_zone_that_disagrees_with_the_offset_is_refused() {
        let at = 1_796_464_801_000; // 2026-12-05T10:00:01Z
        for s in [
            "2026-12-05T11:00:01+01:00[Europe/Paris]",
            "2026-12-05T11:00:01.000+01:00[!Europe/Paris]",
            "2026-12-05T10:00:01Z[Europe/Paris]",
            "2026-12-05T10:00:01-00:00[Europe/Paris]",
            "2026-12-05T11:00:01+01:00[+01:00]",
            "2026-12-05T11:00:01+01:00[Europe/Paris][u-ca=iso8601]",
            "2026-12-05T11:00:01+01:00[u-ca=iso8601]",
            // Unknown and elective: the offset says the instant.
            "2026-12-05T11:00:01+01:00[Mars/Olympus]",
        ] {
            assert_eq!(parse_rfc3339_ms(s), Ok(at), "{s}");
        }
        for s in [
            "2026-12-05T10:00:01+00:00[Europe/Paris]",
            "2026-12-05T10:00:01.250+00:00[Europe/Paris]",
            "2026-12-05T11:00:01+01:00[America/New_York]",
            "2026-12-05T11:00:01+01:00[+02:00]",
        ] {
            let e = parse_rfc3339_ms(s).unwrap_err();
            assert!(e.contains("names two instants"), "{s}: {e}");
        }
        let e = parse_rfc3339_ms("2026-12-05T11:00:01+01:00[!Mars/Olympus]").unwrap_err();
        assert!(e.contains("critical"), "{e}");
    }
}
