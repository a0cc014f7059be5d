//! One Kafka message as a record: its payload, key and headers copied out
//! of the consumer's buffer, and its event time.

use flowline_connector_api::Record;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;

/// Copies a message out (it borrows the consumer), with the reason it
/// cannot be delivered whole, if any.
///
/// rust-rdkafka unwraps each header name as UTF-8: a name that is not (a
/// producer other than Java can write one) panics while the headers are
/// read. The panic is caught here and the record refused with the reason,
/// without its headers; uncaught, it ended the consumer thread and left
/// the source idle for ever.
pub(super) fn record(m: &BorrowedMessage<'_>, headers: bool) -> (Record, Option<String>) {
    let mut r = Record::new(m.payload().unwrap_or_default());
    r.key = m.key().map(<[u8]>::to_vec);
    // librdkafka parses (and allocates) headers on request: skipped when
    // the job does not want them.
    let Some(h) = headers.then(|| m.headers()).flatten() else {
        return (r, None);
    };
    let copy = || {
        h.iter()
            .map(|h| {
                (
                    h.key.to_string(),
                    h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                )
            })
            .collect()
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(copy)) {
        Ok(all) => {
            r.headers = all;
            (r, None)
        }
        Err(_) => {
            tracing::warn!(partition = m.partition(), offset = m.offset(), "a Kafka header name is not UTF-8; the record is dead-lettered without its headers (the panic message above is the Kafka client's)");
            (
                r,
                Some("a Kafka header name is not UTF-8, which the Kafka client cannot read: the record is refused, its payload and key kept, its headers left out".into()),
            )
        }
    }
}

/// The record's event time: the Kafka timestamp, or with `timestamp_field`
/// that field of the JSON payload (ms since the epoch, or RFC 3339 with any
/// offset). A payload whose field cannot be read is refused with the reason
/// (it is dead-lettered), never given a guessed time.
pub(super) fn event_time(
    field: Option<&str>,
    payload: &[u8],
    kafka_ts: Option<i64>,
) -> Result<Option<i64>, String> {
    let Some(f) = field else { return Ok(kafka_ts) };
    let v: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|e| format!("timestamp_field `{f}`: the payload is not JSON ({e})"))?;
    match &v[f] {
        serde_json::Value::Number(n) => n.as_i64().map(Some).ok_or_else(|| {
            format!("timestamp_field `{f}` = {n} is not whole milliseconds since the epoch")
        }),
        serde_json::Value::String(s) => flowline_connector_api::time::parse_rfc3339_ms(s)
            .map(Some)
            .map_err(|e| format!("timestamp_field `{f}`: {e}")),
        serde_json::Value::Null => Err(format!(
            "timestamp_field `{f}`: the payload has no such field"
        )),
        other => Err(format!(
            "timestamp_field `{f}` = {other} is neither ms since the epoch nor an RFC 3339 time"
        )),
    }
}

/// The topic name of the last message read, by the address of its
/// librdkafka topic handle: `Message::topic` measures the name and checks
/// its UTF-8 for every message, a sixth of this thread's time.
///
/// An address names one topic while its handle lives, and a handle lives
/// while a partition of its topic is assigned (the partition holds it).
/// A handle freed and its address taken by another topic's needs the
/// assignment to change for that topic's messages to come, so the cache is
/// emptied by every rebalance and every assignment of a bounded source
/// (`Shared::assignments`).
#[derive(Debug, Default)]
pub(super) struct TopicNames {
    handle: usize,
    epoch: u64,
    name: String,
}

impl TopicNames {
    /// The topic of `m`; `epoch` is `Shared::assignments` now.
    pub(super) fn of(&mut self, m: &BorrowedMessage<'_>, epoch: u64) -> &str {
        let handle = m.topic_ptr() as usize;
        if self.name.is_empty() || handle != self.handle || epoch != self.epoch {
            m.topic().clone_into(&mut self.name);
            (self.handle, self.epoch) = (handle, epoch);
        }
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_time_comes_from_the_field_when_configured() {
        let p = br#"{"ts": 1700000000123, "t": "2023-11-14T22:13:20.5Z"}"#;
        assert_eq!(event_time(None, p, Some(5)), Ok(Some(5)));
        assert_eq!(
            event_time(Some("ts"), p, Some(5)),
            Ok(Some(1_700_000_000_123))
        );
        assert_eq!(
            event_time(Some("t"), p, Some(5)),
            Ok(Some(1_700_000_000_500))
        );
    }

    #[test]
    fn event_times_with_an_offset_are_exact_and_unreadable_ones_refused() {
        // 2023-11-14T22:13:20.5Z written in +05:30: the same instant.
        let p = br#"{"t": "2023-11-15T03:43:20.5+05:30", "bad": "2023-11-14 22:13", "f": 1.5, "o": {}}"#;
        assert_eq!(
            event_time(Some("t"), p, Some(5)),
            Ok(Some(1_700_000_000_500))
        );
        for (field, want) in [
            ("missing", "no such field"),
            ("bad", "not an RFC 3339 time"),
            ("f", "not whole milliseconds"),
            ("o", "neither ms since the epoch"),
        ] {
            let e = event_time(Some(field), p, Some(5)).unwrap_err();
            assert!(e.contains(field) && e.contains(want), "{field}: {e}");
        }
        assert!(event_time(Some("t"), b"not json", Some(5))
            .unwrap_err()
            .contains("not JSON"));
    }
}
