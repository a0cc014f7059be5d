//! No input panics the decode: random bytes, and events of every shape
//! damaged at random places (quotes, digits, dots, offsets, braces,
//! multi-byte characters). Each gives metrics or a reason, never a panic
//! (a panic here is a crash loop on one record in a running job).

use flowline::event::{EventSection, EventShape};
use flowline::horizon::Horizon;
use flowline::metric::{decode_shaped, decode_until};
use proptest::prelude::*;

/// Valid events of the shapes below, to damage.
const EVENTS: [&str; 4] = [
    r#"{"host":"h1","metric":"cpu","value":1.5,"timestamp":"2026-01-01T00:00:01.500+05:30"}"#,
    r#"{"@timestamp":"2026-01-01T00:00:01Z","host.name":"a","system":{"cpu":{"pct":0.4}}}"#,
    r#"{"fields":{"usage_idle":97.9,"usage_user":1.4},"name":"cpu","tags":{"host":"web-1"},"timestamp":1767225600}"#,
    r#"{"host":"h1","metric":"load","t":"1767225601250.5","reading":3.5e-3}"#,
];

fn shapes() -> Vec<EventShape> {
    let s = |toml_text: &str| {
        let section: EventSection = toml::from_str(toml_text).unwrap();
        EventShape::from_section(&section).unwrap()
    };
    vec![
        EventShape::from_section(&EventSection::default()).unwrap(),
        s(r#"timestamp = "@timestamp"
value = "system.cpu.pct"
key = ["host.name"]"#),
        s(r#"timestamp_format = "epoch_s"
values_from = "fields"
metric_prefix = "name"
key = ["tags.host"]"#),
        s(r#"timestamp = "t"
timestamp_format = "epoch_ms"
value = "reading""#),
    ]
}

/// Bytes that matter to JSON, numbers and times, and some that are not
/// ASCII.
fn damage() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"\"".to_vec()),
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"[".to_vec()),
        Just(b".".to_vec()),
        Just(b"e999".to_vec()),
        Just(b"-".to_vec()),
        Just(b"+25:00".to_vec()),
        Just(b":60".to_vec()),
        Just(b"\\u".to_vec()),
        Just(b"\\ud800".to_vec()),
        Just("é".as_bytes().to_vec()),
        Just(b"\xff".to_vec()),
        Just(b"[Europe/Paris]".to_vec()),
        Just(b"0000000000000000000000000".to_vec()),
        Just(b"".to_vec()),
        any::<u8>().prop_map(|b| vec![b]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn damaged_events_give_metrics_or_a_reason(
        which in 0..EVENTS.len(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..3, damage()), 1..4),
    ) {
        let mut e = EVENTS[which].as_bytes().to_vec();
        for (at, cut, with) in edits {
            let i = at.index(e.len() + 1);
            let end = (i + cut).min(e.len());
            e.splice(i..end, with);
        }
        let h = Horizon::fixed(i64::MAX);
        let _ = decode_until(&e, &h);
        for s in shapes() {
            let (ok, bad) = decode_shaped(&s, &e, &h);
            prop_assert!(!ok.is_empty() || bad.is_some(), "{}", String::from_utf8_lossy(&e));
        }
    }

    /// Texts of a time's characters in any order, and damaged times: a
    /// time or a reason, never a panic (the parser indexes into the text
    /// around its `T`, fraction and offset).
    #[test]
    fn any_time_text_gives_a_time_or_a_reason(
        s in prop_oneof![
            "[0-9TtZz:+.,\\-\\[\\]!/ =a-z]{0,40}",
            "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9:]{2,9}[.,]?[0-9]{0,14}([Zz]|[+-][0-9:]{0,9})(\\[[!a-zA-Z/_+:0-9=-]{0,20}\\])?",
        ],
    ) {
        let _ = flowline_connector_api::time::parse_rfc3339_ms(&s);
    }

    #[test]
    fn random_bytes_give_a_reason(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let h = Horizon::fixed(i64::MAX);
        let object = bytes.first() == Some(&b'{');
        prop_assert!(decode_until(&bytes, &h).is_err() || object);
        for s in shapes() {
            let (ok, bad) = decode_shaped(&s, &bytes, &h);
            prop_assert!(!ok.is_empty() || bad.is_some());
        }
    }
}
