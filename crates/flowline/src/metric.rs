//! Metric events decoded: the default shape (the generator's JSON) and
//! other shapes (`[event]`), into a [`Metric`] keyed by host and metric
//! name, or the reason it cannot be read (the record then goes to the
//! dead-letter output).
//!
//! Names are [`Name`]s (`CompactString`): a name of up to 24 bytes is held
//! inline, so decoding an event allocates nothing for its key, and the
//! window operator frees nothing when the key is already in its window.

use std::borrow::Cow;

use flowline_connector_api::time::{format_rfc3339_ms, parse_rfc3339_ms};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::event::{number, EventShape};
use crate::horizon::Horizon;

/// A host or metric name. Names of up to 24 bytes (host and metric names
/// mostly are) are held inline, so a decoded event allocates nothing for
/// its key; a longer one is on the heap as a `String` would be. It hashes,
/// compares and serializes as the `str` it holds, so key groups, ids and
/// checkpoints are the same as with `String`.
pub type Name = compact_str::CompactString;

/// A series: its group (host) name and metric name.
pub type SeriesKey = (Name, Name);

/// `[event] max_name_bytes` by default: far above a DNS name (253 bytes)
/// or a metric name, and far below the 32 766 bytes a search server takes
/// in a keyword.
pub const DEFAULT_MAX_NAME_BYTES: usize = 1_024;

/// The most `[event] max_name_bytes` may be.
pub const MAX_NAME_BYTES: usize = 1 << 20;

/// Why `m`'s key is refused: its group or metric name is longer than `max`
/// bytes. Every open window and detector series keeps its key, so names
/// without a bound would let memory outgrow `[job] max_state_entries`.
pub fn long_name(m: &Metric, max: usize) -> Option<String> {
    let (group, metric) = (&m.key.0, &m.key.1);
    let (what, len) = if group.len() > max {
        ("group (host)", group.len())
    } else if metric.len() > max {
        ("metric", metric.len())
    } else {
        return None;
    };
    Some(format!(
        "invalid metric event: the {what} name is {len} bytes long, past [event] max_name_bytes = {max} (each open window keeps its key, and a search server refuses a keyword of more than 32766 bytes). Fix: key by a shorter field, or raise max_name_bytes"
    ))
}

/// A decoded metric event.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// The key: host name and metric name.
    pub key: SeriesKey,
    /// Sample value.
    pub value: f64,
    /// Event time, ms since the epoch.
    pub ts: i64,
}

#[derive(Deserialize)]
struct RawMetric<'a> {
    #[serde(borrow)]
    host: Cow<'a, str>,
    #[serde(borrow)]
    metric: Cow<'a, str>,
    #[serde(borrow)]
    value: &'a RawValue,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
}

/// Decodes one event (the generator's JSON; other fields are ignored). The
/// error names what is wrong; the record goes to the dead-letter sink.
pub fn decode(payload: &[u8]) -> Result<Metric, String> {
    decode_until(payload, &Horizon::fixed(i64::MAX))
}

/// [`decode`], refusing an event time past the `horizon`: one event from a
/// clock years ahead would otherwise move the watermark past every later
/// event and make them all late.
pub fn decode_until(payload: &[u8], horizon: &Horizon) -> Result<Metric, String> {
    // Checked whole, once: faster than serde_json's check of each string
    // it borrows (about 10 per event), and JSON text is UTF-8 throughout.
    let text = std::str::from_utf8(payload)
        .map_err(|e| format!("invalid metric event: the payload is not UTF-8 ({e})"))?;
    let raw: RawMetric<'_> = serde_json::from_str(text).map_err(|e| refused(text, e))?;
    let value = number("value", raw.value)?;
    let ts = parse_rfc3339_ms(&raw.timestamp)?;
    if let Err(latest) = horizon.admit(ts) {
        return Err(future(&raw.timestamp, latest));
    }
    Ok(Metric {
        ts,
        key: (Name::from(raw.host), Name::from(raw.metric)),
        value,
    })
}

/// The reason for a record with no event in it, whatever the shape.
pub(crate) const EMPTY: &str = "invalid metric event: the record is empty (a Kafka tombstone, whose value is null, or a payload of blanks), so it holds no event. Fix: nothing, if the producer meant it; a metrics topic should carry one JSON event per record";

/// The reason for an event serde refused: the field that is not a string,
/// named with its value (serde's own words name neither), or serde's.
fn refused(text: &str, e: serde_json::Error) -> String {
    if text.trim().is_empty() {
        return EMPTY.into();
    }
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_str(text) {
        for field in ["host", "metric", "timestamp"] {
            match o.get(field) {
                None | Some(serde_json::Value::String(_)) => {}
                Some(v) => {
                    let v = v.to_string();
                    let hint = if field == "timestamp" {
                        crate::event::epoch_hint(&v)
                    } else {
                        ""
                    };
                    return format!(
                        "invalid metric event: `{field}` = {} is not a string{hint}",
                        crate::event::clip(&v)
                    );
                }
            }
        }
    }
    format!("invalid metric event: {e}")
}

fn future(written: &str, latest: i64) -> String {
    format!(
        "event time `{written}` is more than [window] max_future ahead of the wall clock ({}). Fix: correct the producer's clock, or raise max_future",
        format_rfc3339_ms(latest)
    )
}

/// [`decode_until`] for events of another shape (`[event]`), each giving
/// one or more series: the metrics read, and the reason (naming its path)
/// when some part could not be read; the paths are resolved once in
/// `shape`.
pub fn decode_shaped(
    shape: &EventShape,
    payload: &[u8],
    horizon: &Horizon,
) -> (Vec<Metric>, Option<String>) {
    let (fields, bad) = shape.read_all(payload);
    if let Some(f) = fields.first() {
        if let Err(latest) = horizon.admit(f.ts) {
            return (
                Vec::new(),
                Some(future(&f.ts_text, latest) + &shape.future_hint()),
            );
        }
    }
    let metrics = fields
        .into_iter()
        .map(|f| Metric {
            ts: f.ts,
            key: (Name::from(f.group), Name::from(f.metric)),
            value: f.value,
        })
        .collect();
    (metrics, bad)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn decodes_generator_events_and_names_what_is_wrong() {
        let m = decode(br#"{"host":"h1","metric":"cpu_util","value":1.5,"timestamp":"2026-01-01T00:00:01.500Z","region":"x","tags":{}}"#).unwrap();
        assert_eq!(
            m,
            Metric {
                key: ("h1".into(), "cpu_util".into()),
                value: 1.5,
                ts: 1_767_225_601_500
            }
        );
        for (value, why) in [
            ("\"high\"", "`value` = \"high\" is not a finite number"),
            ("null", "`value` = null is not a finite number"),
            ("1e400", "`value` = 1e400 is too large for a 64-bit float"),
            ("1e-400", "`value` = 1e-400 is too small for a 64-bit float (it would be read as 0"),
            (
                "9007199254740993",
                "`value` = 9007199254740993 has more significant digits than a 64-bit float holds (it would be read as 9007199254740992.0)",
            ),
        ] {
            let p = format!(
                r#"{{"host":"h1","metric":"m","value":{value},"timestamp":"2026-01-01T00:00:00Z"}}"#
            );
            let e = decode(p.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{value}: {e}");
        }
        // A key twice is refused here as in every shape.
        assert!(decode(
            br#"{"host":"a","host":"b","metric":"m","value":1,"timestamp":"2026-01-01T00:00:00Z"}"#
        )
        .unwrap_err()
        .contains("duplicate field `host`"));
        assert_eq!(
            decode(br#"{"host":"h","metric":"m","value":9007199254740992,"timestamp":"2026-01-01T00:00:00Z"}"#)
                .unwrap()
                .value,
            9007199254740992.0
        );
        assert!(decode(br#"{"host":"h1","value":1}"#)
            .unwrap_err()
            .contains("missing field `metric`"));
        assert!(
            decode(br#"{"host":"h1","metric":"m","value":1,"timestamp":"soon"}"#)
                .unwrap_err()
                .contains("soon")
        );
        assert!(decode(b"{").unwrap_err().contains("EOF"));
        // A tombstone (null value, read as no bytes) or blanks: said so,
        // in every shape, where serde said "EOF while parsing a value".
        let ecs = crate::event::EventShape::from_section(
            &toml::from_str("timestamp = \"@timestamp\"\nvalue = \"v\"").unwrap(),
        )
        .unwrap();
        for empty in [&b""[..], b" \r\n"] {
            assert_eq!(decode(empty).unwrap_err(), EMPTY);
            let (ok, bad) = decode_shaped(&ecs, empty, &Horizon::fixed(i64::MAX));
            assert!(ok.is_empty() && bad.as_deref() == Some(EMPTY), "{bad:?}");
        }
    }

    #[test]
    fn a_field_that_is_not_a_string_is_named_with_its_value() {
        for (event, why) in [
            (
                r#"{"host":"h","metric":"m","value":1,"timestamp":1767225600000}"#,
                "invalid metric event: `timestamp` = 1767225600000 is not a string. Fix: for times since the epoch, set [event] timestamp_format to their unit",
            ),
            (
                r#"{"host":"h","metric":"m","value":1,"timestamp":-1.5}"#,
                "`timestamp` = -1.5 is not a string. Fix: for times since the epoch",
            ),
            (
                r#"{"host":null,"metric":"m","value":1,"timestamp":"2026-01-01T00:00:00Z"}"#,
                "invalid metric event: `host` = null is not a string",
            ),
            (
                r#"{"host":"h","metric":{"name":"cpu"},"value":1,"timestamp":"2026-01-01T00:00:00Z"}"#,
                r#"`metric` = {"name":"cpu"} is not a string"#,
            ),
            (
                r#"{"host":"h","metric":"m","value":1,"timestamp":true}"#,
                "`timestamp` = true is not a string",
            ),
        ] {
            let e = decode(event.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{event}: {e}");
        }
        let e = decode(br#"{"host":"h","metric":"m","value":1,"timestamp":true}"#).unwrap_err();
        assert!(!e.contains("Fix"), "{e}");
    }

    #[test]
    fn events_beyond_max_future_are_refused_with_the_reason() {
        let e = br#"{"host":"h","metric":"m","value":1,"timestamp":"9999-01-01T00:00:00Z"}"#;
        let err = decode_until(e, &Horizon::wall_clock(Duration::from_secs(3_600))).unwrap_err();
        assert!(
            err.contains("9999-01-01T00:00:00Z") && err.contains("max_future"),
            "{err}"
        );
        assert!(decode_until(e, &Horizon::fixed(i64::MAX)).is_ok());
        let past =
            br#"{"host":"h","metric":"m","value":1,"timestamp":"1970-01-01T00:00:00.001+00:00"}"#;
        let now = crate::horizon::now_ms();
        assert_eq!(decode_until(past, &Horizon::fixed(now)).unwrap().ts, 1);
    }

    #[test]
    fn payloads_not_utf8_are_refused_wherever_the_bytes_are() {
        let good = br#"{"host":"h1","metric":"m","value":1,"timestamp":"2026-01-01T00:00:00Z","region":"eu","tags":{"rack":"r1"}}"#;
        assert!(decode(good).is_ok());
        // A byte that is not UTF-8 in the key, in a field the job ignores,
        // and in an ignored object's value.
        for (at, bad) in [("h1", 0xff_u8), ("eu", 0xc3), ("r1", 0x80)] {
            let i = good.windows(2).position(|w| w == at.as_bytes()).unwrap();
            let mut p = good.to_vec();
            p[i + 1] = bad;
            let err = decode(&p).unwrap_err();
            assert!(err.contains("not UTF-8"), "{at}: {err}");
        }
    }

    #[test]
    fn names_are_kept_exactly_whatever_their_length_and_script() {
        let long = "h".repeat(600);
        for host in [
            "h",
            "hôte-ü-東京",
            "exactly-twenty-four-byte",
            long.as_str(),
        ] {
            let p = serde_json::json!({"host": host, "metric": "mé", "value": 2,
                "timestamp": "2026-01-01T00:00:00Z"});
            let m = decode(p.to_string().as_bytes()).unwrap();
            assert_eq!((m.key.0.as_str(), m.key.1.as_str()), (host, "mé"));
        }
        let escaped =
            br#"{"host":"a\u00e9\"b","metric":"m","value":2,"timestamp":"2026-01-01T00:00:00Z"}"#;
        assert_eq!(decode(escaped).unwrap().key.0, "a\u{e9}\"b");
    }

    /// Key groups, checkpoints and document ids depend on how a key hashes,
    /// orders and serializes: a [`SeriesKey`] must do all three exactly as
    /// the `(String, String)` it replaced.
    #[test]
    fn a_series_key_hashes_orders_and_serializes_as_two_strings() {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let long = "x".repeat(600);
        let names = [
            "",
            "h",
            "host-0007",
            "exactly-twenty-four-byte",
            "hôte-東京",
            &long,
        ];
        let hasher = BuildHasherDefault::<DefaultHasher>::default();
        for a in names {
            for b in names {
                let (k, s): (SeriesKey, _) = ((a.into(), b.into()), (a.to_string(), b.to_string()));
                assert_eq!(hasher.hash_one(&k), hasher.hash_one(&s));
                assert_eq!(
                    postcard::to_allocvec(&k).unwrap(),
                    postcard::to_allocvec(&s).unwrap()
                );
                assert_eq!(
                    serde_json::to_string(&k).unwrap(),
                    serde_json::to_string(&s).unwrap()
                );
                let back: SeriesKey =
                    postcard::from_bytes(&postcard::to_allocvec(&s).unwrap()).unwrap();
                assert_eq!(back, k);
                for c in names {
                    let other: SeriesKey = (c.into(), a.into());
                    assert_eq!(k.cmp(&other), s.cmp(&(c.to_string(), a.to_string())));
                }
            }
        }
    }

    #[test]
    fn a_name_is_refused_past_the_bound_and_taken_at_it() {
        let m = |group: &str, metric: &str| Metric {
            key: (group.into(), metric.into()),
            value: 1.0,
            ts: 0,
        };
        assert_eq!(long_name(&m(&"h".repeat(8), &"c".repeat(8)), 8), None);
        let e = long_name(&m("h", &"c".repeat(9)), 8).unwrap();
        assert!(
            e.contains("the metric name is 9 bytes long, past [event] max_name_bytes = 8"),
            "{e}"
        );
        let e = long_name(&m(&"h".repeat(9), "c"), 8).unwrap();
        assert!(e.contains("the group (host) name is 9 bytes long"), "{e}");
        // Bytes, not characters: "é" is two.
        assert!(long_name(&m(&"é".repeat(5), "c"), 8).is_some());
    }
}
