//! Dead letters their sink refuses (a 2 MB record for a topic that takes
//! 1 MB): written again once, cut down with a marker, the reason kept, so a
//! single huge bad record neither ends the job nor disappears unnoticed.
//! A refused letter that carries a timestamp (a Kafka broker refuses one
//! too far from its clock) or has no key (a compacted topic refuses that)
//! is first written again whole, without the timestamp, keyed by its id.

use flowline_connector_api::{Record, Rejected};

use crate::job::DeadLetterFormat;

/// Bytes of the original payload a cut-down dead letter keeps.
pub(crate) const KEPT_PAYLOAD: usize = 16 * 1024;
/// Header (raw format) naming the original payload's length in bytes.
pub(crate) const TRUNCATED: &str = "flowline.payload.truncated";
/// Header (raw format) with the dead-letter sink's reason for refusing it.
pub(crate) const REFUSED: &str = "flowline.dead_letter.refused";

/// Header (raw format) with the timestamp, in ms since the epoch, of a dead
/// letter written again without it.
pub(crate) const RETIMED: &str = "flowline.record.timestamp";

/// A refused dead letter as it is written again. What a broker refuses of
/// a record that is not too large is its timestamp (too far from its
/// clock) or a missing key (a compacted topic): one with a timestamp is
/// written whole without it (the sink's time instead), the original in
/// [`RETIMED`]; one without a key gets its dead-letter id as key. Either
/// way the reason goes in [`REFUSED`]. Anything else is [`shrink`]ed.
pub(crate) fn again(rejected: Rejected, format: DeadLetterFormat) -> Record {
    let r = &rejected.record;
    let id = r.key.is_none().then(|| letter_id(r, format)).flatten();
    if r.timestamp.is_none() && id.is_none() {
        return shrink(rejected, format);
    }
    let mut r = rejected.record;
    if let Some(t) = r.timestamp.take() {
        r = r.with_header(RETIMED, t.to_string());
    }
    if id.is_some() {
        r.key = id;
    }
    r.with_header(REFUSED, rejected.reason.into_bytes())
}

/// The dead-letter id of `r`, from its header or its envelope.
fn letter_id(r: &Record, format: DeadLetterFormat) -> Option<Vec<u8>> {
    match format {
        DeadLetterFormat::Raw => r.header(crate::DEAD_LETTER_ID).map(<[u8]>::to_vec),
        DeadLetterFormat::Envelope => {
            match serde_json::from_slice::<serde_json::Value>(&r.payload)
                .ok()?
                .get("id")?
            {
                serde_json::Value::String(id) => Some(id.clone().into_bytes()),
                _ => None,
            }
        }
    }
}

/// Whether `r` is already a cut-down dead letter.
pub(crate) fn is_shrunk(r: &Record, format: DeadLetterFormat) -> bool {
    match format {
        DeadLetterFormat::Raw => r.header(TRUNCATED).is_some(),
        DeadLetterFormat::Envelope => serde_json::from_slice::<serde_json::Value>(&r.payload)
            .ok()
            .is_some_and(|v| v.get("payload_truncated_from").is_some()),
    }
}

fn cut(s: &[u8], n: usize) -> &[u8] {
    &s[..s.len().min(n)]
}

fn cut_str(s: &str, n: usize) -> &str {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The dead letter `rejected` cut down: the payload to [`KEPT_PAYLOAD`]
/// bytes, the key to 1 KiB, with the original length and the sink's
/// reason; the error headers (or envelope fields) are kept.
pub(crate) fn shrink(rejected: Rejected, format: DeadLetterFormat) -> Record {
    let (mut r, why) = (rejected.record, rejected.reason);
    if let Some(k) = &mut r.key {
        k.truncate(1024);
    }
    match format {
        DeadLetterFormat::Raw => {
            let len = r.payload.len();
            r.payload.truncate(KEPT_PAYLOAD);
            r.with_header(TRUNCATED, len.to_string())
                .with_header(REFUSED, why.into_bytes())
        }
        DeadLetterFormat::Envelope => {
            let len = r.payload.len();
            let v = match serde_json::from_slice::<serde_json::Value>(&r.payload) {
                Ok(serde_json::Value::Object(mut m)) => {
                    if let Some(serde_json::Value::String(p)) = m.get("payload") {
                        let (kept, was) = (cut_str(p, KEPT_PAYLOAD).to_string(), p.len());
                        m.insert("payload_truncated_from".into(), was.into());
                        m.insert("payload".into(), kept.into());
                    }
                    // The exact bytes of a payload that is not UTF-8 go
                    // too: they are the size being cut.
                    m.remove("payload_base64");
                    m.insert("refused".into(), why.into());
                    serde_json::Value::Object(m)
                }
                _ => serde_json::json!({
                    "payload": String::from_utf8_lossy(cut(&r.payload, KEPT_PAYLOAD)),
                    "payload_truncated_from": len,
                    "refused": why,
                }),
            };
            r.payload = v.to_string().into_bytes();
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_down_envelope_drops_the_exact_bytes_it_is_too_large_for() {
        use flowline_connector_api::Rejected;
        let letter = crate::operator::DeadLetter {
            record: Record::new(vec![0xff; 100_000]),
            kind: crate::operator::DeadLetterKind::BadRecord,
            reason: "not UTF-8".into(),
            stage: "decode".into(),
        };
        let env = crate::sinks::encode(&letter, DeadLetterFormat::Envelope);
        assert!(env.payload.len() > 100_000);
        let cut = shrink(Rejected::new(env, "too large"), DeadLetterFormat::Envelope);
        assert!(cut.payload.len() < 20_000, "{}", cut.payload.len());
        let v: serde_json::Value = serde_json::from_slice(&cut.payload).unwrap();
        assert!(v.get("payload_base64").is_none());
        assert_eq!(v["refused"], "too large");
    }

    #[test]
    fn raw_letters_keep_their_reason_and_say_how_long_they_were() {
        let big = Record::new(vec![b'x'; 2 << 20])
            .with_key("k")
            .with_header("flowline.error.reason", "invalid metric event");
        let r = shrink(
            Rejected::new(big, "MessageSizeTooLarge"),
            DeadLetterFormat::Raw,
        );
        assert_eq!(r.payload.len(), KEPT_PAYLOAD);
        assert_eq!(r.header(TRUNCATED), Some(&b"2097152"[..]));
        assert_eq!(r.header(REFUSED), Some(&b"MessageSizeTooLarge"[..]));
        assert_eq!(
            r.header("flowline.error.reason"),
            Some(&b"invalid metric event"[..])
        );
        assert!(is_shrunk(&r, DeadLetterFormat::Raw));
    }

    #[test]
    fn a_letter_with_a_timestamp_is_first_written_again_whole_without_it() {
        let r = Record::new(vec![b'x'; 20_000])
            .with_key("k")
            .with_timestamp(4_102_444_800_000);
        let first = again(
            Rejected::new(r.clone(), "InvalidTimestamp"),
            DeadLetterFormat::Raw,
        );
        assert_eq!(first.timestamp, None);
        assert_eq!(first.payload, r.payload, "the payload whole");
        assert_eq!(first.header(RETIMED), Some(&b"4102444800000"[..]));
        assert_eq!(first.header(REFUSED), Some(&b"InvalidTimestamp"[..]));
        assert!(!is_shrunk(&first, DeadLetterFormat::Raw));
        let cut = again(Rejected::new(first, "too big"), DeadLetterFormat::Raw);
        assert_eq!(cut.payload.len(), KEPT_PAYLOAD);
        assert_eq!(cut.header(TRUNCATED), Some(&b"20000"[..]));
        assert!(is_shrunk(&cut, DeadLetterFormat::Raw));
    }

    #[test]
    fn a_letter_without_a_key_is_written_again_keyed_by_its_id() {
        let raw = Record::new("p").with_header(crate::DEAD_LETTER_ID, "dl-1");
        let again_raw = again(
            Rejected::new(raw.clone(), "InvalidRecord"),
            DeadLetterFormat::Raw,
        );
        assert_eq!(again_raw.key.as_deref(), Some(&b"dl-1"[..]));
        assert_eq!(again_raw.payload, raw.payload);
        assert_eq!(again_raw.header(REFUSED), Some(&b"InvalidRecord"[..]));
        let env = Record::new(r#"{"id":"dl-2","payload":"p"}"#);
        let again_env = again(
            Rejected::new(env.clone(), "InvalidRecord"),
            DeadLetterFormat::Envelope,
        );
        assert_eq!(again_env.key.as_deref(), Some(&b"dl-2"[..]));
        assert_eq!(again_env.payload, env.payload, "the envelope whole");
        // Keyed and without a timestamp, a refusal cuts it down.
        let cut = again(
            Rejected::new(again_env, "still"),
            DeadLetterFormat::Envelope,
        );
        assert!(is_shrunk(&cut, DeadLetterFormat::Envelope));
    }

    #[test]
    fn envelopes_stay_json_and_cut_at_a_character_boundary() {
        let env = serde_json::json!({"kind": "bad_record", "reason": "why", "payload": "é".repeat(20_000)});
        let rec = Record::new(env.to_string());
        assert!(!is_shrunk(&rec, DeadLetterFormat::Envelope));
        let r = shrink(Rejected::new(rec, "too big"), DeadLetterFormat::Envelope);
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(v["reason"], "why");
        assert_eq!(v["refused"], "too big");
        assert_eq!(v["payload_truncated_from"], 40_000);
        assert_eq!(v["payload"].as_str().unwrap().len(), KEPT_PAYLOAD);
        assert!(is_shrunk(&r, DeadLetterFormat::Envelope));
    }
}
