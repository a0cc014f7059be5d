use proptest::prelude::*;

use super::*;

fn shape(ts: &str, format: TimeFormat, value: &str) -> EventShape {
    EventShape::from_section(&EventSection {
        timestamp: ts.into(),
        timestamp_format: format,
        value: Some(value.into()),
        ..EventSection::default()
    })
    .unwrap()
}

#[test]
fn nested_paths_and_other_names() {
    let s = shape("@timestamp", TimeFormat::Rfc3339, "system.cpu.total.pct");
    let f = s
        .read(br#"{"@timestamp":"2026-01-01T00:00:01.250+01:00","host":"web-1","metric":"cpu","system":{"cpu":{"total":{"pct":0.42}}}}"#)
        .unwrap();
    assert_eq!(
        (f.group.as_str(), f.metric.as_str(), f.value, f.ts),
        ("web-1", "cpu", 0.42, 1_767_222_001_250)
    );
    assert!(!s.is_default());
    assert!(EventShape::default().is_default());
}

#[test]
fn epoch_times_in_every_unit_integer_or_decimal_number_or_string() {
    let base = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    for (format, t, want) in [
        (TimeFormat::EpochS, "1767225600", base),
        (TimeFormat::EpochS, "1767225600.1239", base + 123),
        (TimeFormat::EpochS, "\"1767225600.5\"", base + 500),
        (TimeFormat::EpochS, "1.7672256001E9", base + 100),
        (TimeFormat::EpochMs, "1767225600123", base + 123),
        (TimeFormat::EpochMs, "1767225600123.9", base + 123),
        (TimeFormat::EpochUs, "1767225600123456", base + 123),
        (TimeFormat::EpochNs, "1767225600123456789", base + 123),
        (TimeFormat::EpochS, "-0.0005", -1),
        (TimeFormat::EpochMs, "-1.5", -2),
        (TimeFormat::EpochMs, "0", 0),
    ] {
        let s = shape("t", format, "v");
        let payload = format!(r#"{{"host":"h","metric":"m","v":1,"t":{t}}}"#);
        assert_eq!(
            s.read(payload.as_bytes()).map(|f| f.ts),
            Ok(want),
            "{format:?} {t}"
        );
    }
}

#[test]
fn what_cannot_be_read_is_refused_naming_the_path() {
    let s = shape("meta.time", TimeFormat::EpochMs, "m.v");
    for (payload, want) in [
        (
            r#"{"host":"h","metric":"m","m":{"v":1}}"#,
            "missing field `meta.time`",
        ),
        (
            r#"{"host":"h","metric":"m","m":{"v":"high"},"meta":{"time":1}}"#,
            "`m.v` = \"high\" is not a finite number",
        ),
        (
            r#"{"host":"h","metric":"m","m":{"v":1e999},"meta":{"time":1}}"#,
            "`m.v` = 1e999 is too large for a 64-bit float",
        ),
        (
            r#"{"host":"h","metric":"m","m":{"v":9007199254740993},"meta":{"time":1}}"#,
            "`m.v` = 9007199254740993 has more significant digits than a 64-bit float holds (it would be read as 9007199254740992.0)",
        ),
        (
            r#"{"host":"h","metric":"m","m":{"v":1e-400},"meta":{"time":1}}"#,
            "`m.v` = 1e-400 is too small for a 64-bit float (it would be read as 0",
        ),
        (
            r#"{"host":"h","metric":"m","m":5,"meta":{"time":1}}"#,
            "missing field `m.v`",
        ),
        (
            r#"{"host":"h","metric":"m","m":{"v":1},"meta":{"time":"soon"}}"#,
            "`meta.time` = \"soon\" is not a time in milliseconds",
        ),
        (
            r#"{"host":"h","metric":"m","m":{"v":1},"meta":{"time":1e300}}"#,
            "`meta.time` = 1e300 is not a time",
        ),
        (
            r#"{"metric":"m","m":{"v":1},"meta":{"time":1}}"#,
            "missing field `host`",
        ),
        (r#"[1,2]"#, "not a JSON object"),
    ] {
        let e = s.read(payload.as_bytes()).unwrap_err();
        assert!(e.contains(want), "{payload}: {e}");
    }
    // Not UTF-8, in a field the shape reads or in one it ignores.
    for p in [
        &b"{\"host\":\"h\xff\",\"metric\":\"m\",\"m\":{\"v\":1},\"meta\":{\"time\":1}}"[..],
        b"{\"host\":\"h\",\"x\":\"\xc3\",\"metric\":\"m\",\"m\":{\"v\":1},\"meta\":{\"time\":1}}",
    ] {
        let e = s.read(p).unwrap_err();
        assert!(e.contains("not UTF-8"), "{e}");
    }
    let e = shape("t", TimeFormat::Rfc3339, "v")
        .read(br#"{"host":"h","metric":"m","v":1,"t":"2026-01-01T00:00:00"}"#)
        .unwrap_err();
    assert!(e.contains("`t`") && e.contains("offset"), "{e}");
    assert!(!e.contains("epoch"), "{e}");
    // An epoch time where RFC 3339 is read: the fix names the setting.
    for t in ["1767225600", "\"1767225600123\"", "1767225600.5"] {
        let e = shape("t", TimeFormat::Rfc3339, "v")
            .read(format!(r#"{{"host":"h","metric":"m","v":1,"t":{t}}}"#).as_bytes())
            .unwrap_err();
        assert!(
            e.contains("Fix: for times since the epoch, set [event] timestamp_format"),
            "{e}"
        );
    }
}

#[test]
fn bad_paths_are_config_errors() {
    for p in ["", "a..b", ".a", "a."] {
        let e = EventShape::from_section(&EventSection {
            timestamp: p.into(),
            value: Some("v".into()),
            ..EventSection::default()
        })
        .unwrap_err();
        assert_eq!(e.0, "event.timestamp");
        assert!(e.1.contains("Fix"), "{}", e.1);
    }
}

proptest! {
    /// Against an independent construction: a time as an integer number of
    /// thousandths of a nanosecond, written in a unit as an exact decimal
    /// (with extra zeros, an exponent, a sign), reads back as the floor of
    /// its milliseconds, below-nanosecond digits included.
    #[test]
    fn epoch_decimals_read_exactly(
        ms in -300_000_000_000_000i128..250_000_000_000_000,
        sub in prop_oneof![Just(0i128), Just(999_999i128), 0i128..1_000_000],
        tail in prop_oneof![Just(0i128), 0i128..1000],
        unit in 0usize..4,
        extra_zeros in 0usize..4,
        shift in -3i32..4,
    ) {
        let k = [9u32, 6, 3, 0][unit];
        // Whole milliseconds often, where a floor is easiest to get wrong.
        let ns = ms * 1_000_000 + sub;
        // Thousandths of a nanosecond.
        let v = ns.abs() * 1000 + tail;
        let neg = ns < 0;
        let div = 10i128.pow(k + 3);
        let int = v / div;
        let frac = format!("{:0width$}", v % div, width = (k + 3) as usize);
        let mut digits = format!("{int}{frac}{}", "0".repeat(extra_zeros));
        let frac_len = frac.len() + extra_zeros;
        // The decimal point `frac_len` digits from the right; with an
        // exponent `shift`, `shift` more digits to the left.
        let point = digits.len() as i32 - frac_len as i32 - shift;
        let text = if point <= 0 {
            format!("0.{}{digits}e{shift}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            digits.push_str(&"0".repeat(point as usize - digits.len()));
            format!("{digits}e{shift}")
        } else {
            format!("{}.{}e{shift}", &digits[..point as usize], &digits[point as usize..])
        };
        let text = if neg { format!("-{text}") } else { text };
        let signed = if neg { -v } else { v };
        prop_assert_eq!(
            epoch_ms(&text, k as i32),
            Some(signed.div_euclid(1_000_000_000) as i64),
            "{}",
            text
        );
    }
}

fn keyed_by(key: &[&str]) -> EventShape {
    EventShape::from_section(&EventSection {
        timestamp: "t".into(),
        timestamp_format: TimeFormat::EpochMs,
        value: Some("v".into()),
        key: Some(key.iter().map(|k| k.to_string()).collect()),
        ..EventSection::default()
    })
    .unwrap()
}

#[test]
fn key_paths_map_onto_the_two_part_key_and_back() {
    let s = keyed_by(&["a.b", "n", "k"]);
    let f = s
        .read(br#"{"t":0,"v":1,"a":{"b":"x|y"},"n":7,"k":"cpu"}"#)
        .unwrap();
    assert_eq!(
        (f.group.as_str(), f.metric.as_str()),
        (r#"["x|y","7"]"#, "cpu")
    );
    assert_eq!(
        s.key_names().fields(&f.group, &f.metric),
        [
            ("a.b".into(), "x|y".into()),
            ("n".into(), "7".into()),
            ("k".into(), "cpu".into())
        ]
    );
    for (payload, want) in [
        (r#"{"t":0,"v":1,"n":7,"k":"cpu"}"#, "missing field `a.b`"),
        (
            r#"{"t":0,"v":1,"a":{"b":null},"n":7,"k":"cpu"}"#,
            "key `a.b` = null is not a string",
        ),
        (
            r#"{"t":0,"v":1,"a":{"b":"x"},"n":{},"k":"cpu"}"#,
            "key `n` = {} is not a string",
        ),
    ] {
        let e = s.read(payload.as_bytes()).unwrap_err();
        assert!(e.contains(want), "{payload}: {e}");
    }
    for (key, want) in [
        (vec![], "has 0 paths"),
        (vec!["a".into(), "a".into()], "twice"),
    ] {
        let e = EventShape::from_section(&EventSection {
            timestamp: "t".into(),
            timestamp_format: TimeFormat::EpochMs,
            value: Some("v".into()),
            key: Some(key),
            ..EventSection::default()
        })
        .unwrap_err();
        assert!(e.0 == "event.key" && e.1.contains(want), "{e:?}");
    }
}

#[test]
fn a_number_key_is_one_key_whatever_its_text() {
    let s = keyed_by(&["n"]);
    let group = |n: &str| {
        s.read(format!(r#"{{"t":0,"v":1,"n":{n}}}"#).as_bytes())
            .unwrap()
            .group
    };
    // One number, one series (before, `1.0` and `1e0` were series of
    // their own beside `1`, and a group-by by value counts them as one).
    for n in ["1", "1.0", "1e0", "10e-1", r#""1""#] {
        assert_eq!(group(n), "1", "{n}");
    }
    assert_eq!(group("1e1"), "10");
    assert_eq!(group("-0.0"), "0");
    // A string is its text: "1.0" is not the number 1.
    assert_eq!(group(r#""1.0""#), "1.0");
    assert_ne!(group("9007199254740993"), group("9007199254740992"));
}

fn section(toml_text: &str) -> Result<EventShape, (String, String)> {
    let s: EventSection = toml::from_str(toml_text).unwrap();
    EventShape::from_section(&s)
}

#[test]
fn several_values_each_a_series_the_bad_ones_refused_the_good_kept() {
    let s = section(
        r#"values = ["cpu.pct", "mem.pct", "disk.pct"]
key = ["host.name"]
timestamp = "@timestamp""#,
    )
    .unwrap();
    let (f, bad) = s.read_all(
        br#"{"@timestamp":"2026-01-01T00:00:00Z","host":{"name":"a"},"cpu":{"pct":0.5},"mem":{"pct":"x"},"disk":{"pct":0.25}}"#,
    );
    let got: Vec<(&str, &str, f64)> = f
        .iter()
        .map(|f| (f.group.as_str(), f.metric.as_str(), f.value))
        .collect();
    assert_eq!(got, [("a", "cpu.pct", 0.5), ("a", "disk.pct", 0.25)]);
    assert_eq!(
        bad.unwrap(),
        "invalid metric event: `mem.pct` = \"x\" is not a finite number"
    );
    assert_eq!(
        s.key_names().fields("a", "cpu.pct"),
        [
            ("host.name".into(), "a".into()),
            ("metric".into(), "cpu.pct".into())
        ]
    );
    // A bad time refuses the whole event, once.
    let (f, bad) = s.read_all(br#"{"@timestamp":"soon","host":{"name":"a"},"cpu":{"pct":0.5}}"#);
    assert!(f.is_empty() && bad.unwrap().contains("`@timestamp`"));
}

#[test]
fn values_from_an_object_with_a_prefix() {
    let s = section(
        r#"values_from = "fields"
metric_prefix = "name"
key = ["tags.host", "tags.cpu"]
timestamp_format = "epoch_s""#,
    )
    .unwrap();
    let (f, bad) = s.read_all(
        br#"{"fields":{"usage_idle":97.9,"usage_user":1.4,"state":"up"},"name":"cpu","tags":{"cpu":"cpu-total","host":"web-1"},"timestamp":1767225600}"#,
    );
    assert_eq!(
        bad, None,
        "a string entry is not a series, and not an error"
    );
    let got: Vec<(&str, &str, f64, i64)> = f
        .iter()
        .map(|f| (f.group.as_str(), f.metric.as_str(), f.value, f.ts))
        .collect();
    assert_eq!(
        got,
        [
            (
                r#"["web-1","cpu-total"]"#,
                "cpu.usage_idle",
                97.9,
                1_767_225_600_000
            ),
            (
                r#"["web-1","cpu-total"]"#,
                "cpu.usage_user",
                1.4,
                1_767_225_600_000
            )
        ]
    );
    assert_eq!(
        s.key_names().fields(&f[0].group, &f[0].metric),
        [
            ("tags.host".into(), "web-1".into()),
            ("tags.cpu".into(), "cpu-total".into()),
            ("metric".into(), "cpu.usage_idle".into())
        ]
    );
    let (f, bad) = s.read_all(
        br#"{"fields":{"s":"x"},"name":"cpu","tags":{"cpu":"c","host":"h"},"timestamp":1}"#,
    );
    assert!(f.is_empty() && bad.unwrap().contains("`fields` holds no numeric entry"));
    let (_, bad) =
        s.read_all(br#"{"fields":5,"name":"cpu","tags":{"cpu":"c","host":"h"},"timestamp":1}"#);
    assert!(bad.unwrap().contains("`fields` = 5 is not an object"));
}

#[test]
fn values_from_reads_entries_however_they_are_spelled() {
    let s = section(
        r#"values_from = "fields"
key = ["host"]
timestamp_format = "epoch_s""#,
    )
    .unwrap();
    let read = |body: &str| {
        let payload = format!(r#"{{"host":"a","timestamp":1,{body}}}"#);
        let (f, bad) = s.read_all(payload.as_bytes());
        let got: Vec<(String, f64)> = f.into_iter().map(|f| (f.metric, f.value)).collect();
        (got, bad)
    };
    let both = vec![("cpu".to_string(), 1.0), ("mem".to_string(), 2.0)];
    // Before, the dotted entry beside the object was left out in silence,
    // and one without the object was "missing field `fields`".
    assert_eq!(
        read(r#""fields.cpu":1,"fields":{"mem":2}"#),
        (both.clone(), None)
    );
    assert_eq!(
        read(r#""fields.cpu":1,"fields.mem":2"#),
        (both.clone(), None)
    );
    assert_eq!(
        read(r#""fields":{"cpu":1,"mem":2},"fields.cpu":1"#),
        (both, None)
    );
    let (f, bad) = read(r#""fields":{"cpu":3,"mem":2},"fields.cpu":1"#);
    assert!(f.is_empty(), "{f:?}");
    let bad = bad.unwrap();
    assert!(
        bad.contains("the entry `cpu` of `fields` is in the event twice with different values (`fields.cpu` = 1, `fields` → `cpu` = 3)"),
        "{bad}"
    );
    let (_, bad) = read(r#""fields":5,"fields.cpu":1"#);
    assert!(bad.unwrap().contains("`fields` = 5 is not an object"));
    let (_, bad) = read(r#""other":1"#);
    assert!(bad.unwrap().contains("missing field `fields`"));
}

#[test]
fn value_modes_are_alternatives() {
    for (text, field, want) in [
        (
            "value = \"v\"\nvalues = [\"a\"]",
            "event.value",
            "exactly one",
        ),
        (
            "values = [\"a\"]\nvalues_from = \"f\"",
            "event.value",
            "exactly one",
        ),
        (
            "metric_prefix = \"n\"",
            "event.metric_prefix",
            "values_from",
        ),
        ("values = []", "event.values", "1 to 64"),
        ("values = [\"a\", \"a\"]", "event.values", "twice"),
    ] {
        let e = section(text).unwrap_err();
        assert!(e.0 == field && e.1.contains(want), "{text}: {e:?}");
    }
}

#[test]
fn escaped_keys_are_found_and_are_the_same_key_as_unescaped() {
    let s = shape("t", TimeFormat::EpochMs, "a.v");
    // `\u0076` is `v`; `h\u006fst` is `host`: keys with escapes are copied.
    let f = s
        .read(br#"{"t":1,"h\u006fst":"h","metric":"m","a":{"\u0076":2}}"#)
        .unwrap();
    assert_eq!((f.group.as_str(), f.value), ("h", 2.0));
    // `v` and `\u0076` are one key twice: refused, not the last taken.
    let e = s
        .read(br#"{"t":1,"host":"h","metric":"m","a":{"v":1,"\u0076":2}}"#)
        .unwrap_err();
    assert!(e.contains("`v` (of `a.v`) appears twice"), "{e}");
}

#[test]
fn a_path_is_one_field_however_it_is_spelled() {
    let s = keyed_shape();
    let t = r#""@timestamp":"2026-01-01T00:00:00Z""#;
    for body in [
        r#""host":{"name":"a"},"system":{"cpu":{"pct":1}}"#,
        r#""host.name":"a","system.cpu.pct":1"#,
        r#""host":{"name":"a"},"system.cpu":{"pct":1}"#,
        r#""host":{"name":"a"},"system":{"cpu.pct":1}"#,
        // Both spellings with one value: one field.
        r#""host.name":"a","host":{"name":"a"},"system":{"cpu":{"pct":1}}"#,
    ] {
        let payload = format!("{{{t},{body}}}");
        let f = s
            .read(payload.as_bytes())
            .unwrap_or_else(|e| panic!("{payload}: {e}"));
        assert_eq!((f.group.as_str(), f.value), ("a", 1.0), "{payload}");
    }
    // Two values: which one is meant cannot be known (before, the nested
    // one was taken and the dotted one dropped).
    for (body, names) in [
        (
            r#""host.name":"b","host":{"name":"c"},"system":{"cpu":{"pct":1}}"#,
            r#"`host` → `name` = "c", `host.name` = "b""#,
        ),
        (
            r#""host":{"name":"a"},"system":{"cpu":{"pct":16}},"system.cpu":{"pct":32}"#,
            "`system` → `cpu` → `pct` = 16, `system.cpu` → `pct` = 32",
        ),
    ] {
        let payload = format!("{{{t},{body}}}");
        let e = s.read(payload.as_bytes()).unwrap_err();
        assert!(
            e.contains("is in the event 2 times with different values") && e.contains(names),
            "{payload}: {e}"
        );
    }
}

fn keyed_shape() -> EventShape {
    section(
        r#"timestamp = "@timestamp"
value = "system.cpu.pct"
key = ["host.name"]"#,
    )
    .unwrap()
}

#[test]
fn a_key_twice_is_refused_not_guessed() {
    let s = shape("@timestamp", TimeFormat::Rfc3339, "system.cpu.pct");
    for (payload, key) in [
        // The group's key twice, at the top.
        (
            r#"{"@timestamp":"2026-01-01T00:00:00Z","host":"a","host":"b","metric":"m","system":{"cpu":{"pct":1}}}"#,
            "`host` (of `host`)",
        ),
        // The value's key twice, nested.
        (
            r#"{"@timestamp":"2026-01-01T00:00:00Z","host":"a","metric":"m","system":{"cpu":{"pct":1,"pct":2}}}"#,
            "`pct` (of `system.cpu.pct`)",
        ),
        // An object on the path twice.
        (
            r#"{"@timestamp":"2026-01-01T00:00:00Z","host":"a","metric":"m","system":{"cpu":{"pct":1}},"system":{"cpu":{"pct":2}}}"#,
            "`system` (of `system.cpu.pct`)",
        ),
    ] {
        let e = s.read(payload.as_bytes()).unwrap_err();
        assert!(
            e.contains(key) && e.contains("appears twice"),
            "{payload}: {e}"
        );
    }
    // A key twice that the shape does not read is no matter.
    let f = s
        .read(br#"{"@timestamp":"2026-01-01T00:00:00Z","x":1,"x":2,"host":"a","metric":"m","system":{"cpu":{"pct":1}}}"#)
        .unwrap();
    assert_eq!(f.value, 1.0);
    let s = section(
        r#"values_from = "fields"
key = ["host"]
timestamp_format = "epoch_s""#,
    )
    .unwrap();
    let (f, bad) = s.read_all(br#"{"host":"a","timestamp":1,"fields":{"cpu":1,"mem":2,"cpu":3}}"#);
    assert!(f.is_empty(), "{f:?}");
    assert_eq!(
        bad.unwrap(),
        "invalid metric event: the key `cpu` appears twice in `fields`; JSON keys must be unique"
    );
}

#[test]
fn an_epoch_unit_that_does_not_fit_the_times_is_named() {
    use crate::horizon::Horizon;
    use crate::metric::decode_shaped;
    let horizon = Horizon::wall_clock(std::time::Duration::from_secs(3_600));
    // A finer unit read as seconds: past the year 9999 or past max_future,
    // refused with the fix.
    let s = shape("t", TimeFormat::EpochS, "v");
    for (t, why) in [
        ("1767225600000", "within the years"),
        ("176722560000", "max_future"),
    ] {
        let e = format!(r#"{{"host":"h","metric":"m","v":1,"t":{t}}}"#);
        let (m, bad) = decode_shaped(&s, e.as_bytes(), &horizon);
        assert!(m.is_empty());
        let bad = bad.unwrap();
        assert!(
            bad.contains(why)
                && bad.contains("`t` is read as seconds since the epoch: if the producer writes a finer unit, set [event] timestamp_format to it"),
            "{bad}"
        );
    }
    // Seconds read as milliseconds: 1970, a warning (once), not a refusal.
    let s = shape("t", TimeFormat::EpochMs, "v");
    assert!(s.too_fine(1_767_225_600));
    assert!(!s.too_fine(1_767_225_600_000));
    assert!(!s.too_fine(-1));
    assert!(!shape("t", TimeFormat::EpochS, "v").too_fine(5_000));
    let (m, bad) = decode_shaped(
        &s,
        br#"{"host":"h","metric":"m","v":1,"t":1767225600}"#,
        &horizon,
    );
    assert_eq!((m.len(), bad), (1, None));
    assert_eq!(m[0].ts, 1_767_225_600);
    // RFC 3339 and nanoseconds have no finer unit to name.
    assert_eq!(shape("t", TimeFormat::EpochNs, "v").future_hint(), "");
    assert_eq!(shape("t", TimeFormat::Rfc3339, "v").future_hint(), "");
}
