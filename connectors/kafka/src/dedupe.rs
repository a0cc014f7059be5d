//! Each record once across replays. A job restored from a checkpoint
//! replays the records read after it, and writes again what it wrote for
//! them. The sink's snapshot holds the topic's end offsets at the
//! checkpoint; on restore it reads what was written after those offsets
//! (by the run that crashed) and skips a record of the replay that is
//! among them, as often as it was written there. What makes two records
//! the same:
//!
//! - `dedupe_header`: the value of a header holding a deterministic id
//!   (dead letters carry `flowline.dead_letter.id`);
//! - `dedupe = "content"`: the message key and payload (SHA-256). A job's
//!   windows are computed again from the same events in a replay, byte for
//!   byte; a window that comes out otherwise (an update with a late event
//!   more) is written, as it is news.
//!
//! Memory: the ids written in one checkpoint interval (16 bytes each for
//! content), dropped as the replay writes them again.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::error::{with_retries, Error};

/// The header naming the source partition of a dead letter or a late
/// event (the runtime's raw format).
const SOURCE_PARTITION: &str = "flowline.source.partition";

/// End offset per partition.
pub(crate) type Ends = BTreeMap<i32, i64>;

/// Most ids a replay may still expect; past this the oldest are forgotten
/// (with a warning): memory stays bounded if a replay never repeats some.
pub(crate) const MAX_EXPECTED: usize = 100_000;

/// The sink's checkpoint state.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct State {
    /// The topic's end offsets at the checkpoint.
    pub(crate) ends: Ends,
    /// Ids written by an earlier run that the replay has not written yet.
    #[serde(default)]
    pub(crate) expected: Vec<String>,
}

/// What makes two records the same.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Dedupe {
    /// The value of this header.
    Header(String),
    /// The message key and payload.
    Content,
}

impl Dedupe {
    /// From `dedupe` and `dedupe_header`; `None`: no dedupe.
    pub(crate) fn new(mode: Option<&str>, header: Option<String>) -> Result<Option<Self>, Error> {
        match (mode, header) {
            (None | Some("header"), Some(h)) => Ok(Some(Self::Header(h))),
            (Some("content"), None) => Ok(Some(Self::Content)),
            (None | Some("none"), None) => Ok(None),
            (Some("header"), None) => Err(Error::Config(
                "`dedupe` = \"header\" needs `dedupe_header`. Fix: name the header holding each record's id".into(),
            )),
            (Some(m @ ("content" | "none")), Some(h)) => Err(Error::Config(format!(
                "`dedupe` = \"{m}\" and `dedupe_header` = \"{h}\" are both set. Fix: keep one"
            ))),
            (Some(other), _) => Err(Error::Config(format!(
                "`dedupe` = \"{other}\" is not a dedupe mode. Fix: \"content\" (the message key and payload), \"header\" (with dedupe_header) or \"none\""
            ))),
        }
    }

    /// The id of a message with this key, payload and header lookup.
    pub(crate) fn id<'h>(
        &self,
        key: Option<&[u8]>,
        payload: &[u8],
        header: impl FnOnce(&str) -> Option<&'h [u8]>,
    ) -> Option<Vec<u8>> {
        match self {
            Self::Header(h) => header(h).map(<[u8]>::to_vec),
            Self::Content => Some(content_id(key, payload)),
        }
    }
}

/// SHA-256 of the key (or its absence) and the payload, first 16 bytes.
fn content_id(key: Option<&[u8]>, payload: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    match key {
        None => h.update([0u8]),
        Some(k) => {
            h.update([1u8]);
            h.update((k.len() as u64).to_le_bytes());
            h.update(k);
        }
    }
    h.update(payload);
    h.finalize()[..16].to_vec()
}

/// Ids written by the run before, each with how often: a replay skips a
/// record as often as that run wrote it, no more.
#[derive(Debug, Default)]
pub(crate) struct Written {
    ids: HashMap<Vec<u8>, u32>,
    len: usize,
}

impl Written {
    pub(crate) fn insert(&mut self, id: Vec<u8>) {
        *self.ids.entry(id).or_default() += 1;
        self.len += 1;
    }

    /// Whether `id` was written (and now once less).
    pub(crate) fn take(&mut self, id: &[u8]) -> bool {
        let Some(n) = self.ids.get_mut(id) else {
            return false;
        };
        *n -= 1;
        if *n == 0 {
            self.ids.remove(id);
        }
        self.len -= 1;
        true
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds `other`'s ids, each as often as the more of the two counts (a
    /// record read back twice is still one record written).
    pub(crate) fn merge(&mut self, other: Written) {
        for (id, n) in other.ids {
            let have = self.ids.entry(id).or_default();
            if n > *have {
                self.len += (n - *have) as usize;
                *have = n;
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// For the state: each id as often as it is still expected.
    pub(crate) fn expected(&self) -> Vec<String> {
        self.ids
            .iter()
            .flat_map(|(id, n)| std::iter::repeat_n(hex(id), *n as usize))
            .collect()
    }
}

pub(crate) fn hex(v: &[u8]) -> String {
    v.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn kafka(what: &str) -> impl Fn(rdkafka::error::KafkaError) -> Error + '_ {
    move |source| Error::Kafka {
        what: what.to_string(),
        source,
    }
}

/// The topic's end offsets (after a flush: past every record written).
pub(crate) fn ends(
    p: &ThreadedProducer<crate::sink::Deliveries>,
    topic: &str,
    timeout: Duration,
) -> Result<Ends, Error> {
    let md = p
        .client()
        .fetch_metadata(Some(topic), timeout)
        .map_err(kafka("reading the topic's partitions"))?;
    let mut out = Ends::new();
    for t in md.topics() {
        for part in t.partitions() {
            let (_, high) = with_retries("reading end offsets", timeout, |d| {
                p.client().fetch_watermarks(topic, part.id(), d)
            })?;
            out.insert(part.id(), high);
        }
    }
    Ok(out)
}

/// The ids of the records of `topic` from `from` up to the current end
/// offsets; with `only`, of those whose `flowline.source.partition` header
/// names one of these source partitions (a dead letter's or a late
/// event's), the others left out.
pub(crate) fn ids_since(
    client: &ClientConfig,
    topic: &str,
    from: &Ends,
    dedupe: &Dedupe,
    only: Option<&std::collections::BTreeSet<String>>,
    timeout: Duration,
) -> Result<Written, Error> {
    let c: BaseConsumer = client
        .clone()
        .set("group.id", "flowline-dedupe-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(kafka("creating the dedupe reader"))?;
    let mut tpl = TopicPartitionList::new();
    let mut left = BTreeMap::new();
    for (&p, &start) in from {
        let (_, high) = with_retries("reading end offsets", timeout, |d| {
            c.fetch_watermarks(topic, p, d)
        })?;
        if high > start {
            tpl.add_partition_offset(topic, p, Offset::Offset(start))
                .map_err(kafka("assigning"))?;
            left.insert(p, high);
        }
    }
    let mut ids = Written::default();
    if left.is_empty() {
        return Ok(ids);
    }
    c.assign(&tpl).map_err(kafka("assigning"))?;
    let deadline = Instant::now() + timeout * 6;
    while !left.is_empty() {
        if Instant::now() >= deadline {
            return Err(Error::Config(format!(
                "reading back what was written to `{topic}` after the checkpoint took longer than {:?}",
                timeout * 6
            )));
        }
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            // Past a last offset that holds no record (a transaction's
            // marker), which no message stands for.
            crate::position::forget_reached(&c, &mut left);
            continue;
        };
        let m = m.map_err(kafka("reading back the topic"))?;
        let headers = m.headers();
        let of_source = |want: &std::collections::BTreeSet<String>| {
            headers
                .and_then(|h| h.iter().find(|h| h.key == SOURCE_PARTITION))
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .is_some_and(|p| want.contains(p))
        };
        if only.is_some_and(|want| !of_source(want)) {
            if left
                .get(&m.partition())
                .is_some_and(|&high| m.offset() + 1 >= high)
            {
                left.remove(&m.partition());
            }
            continue;
        }
        let id = dedupe.id(m.key(), m.payload().unwrap_or_default(), |name| {
            headers
                .and_then(|h| h.iter().find(|h| h.key == name))
                .and_then(|h| h.value)
        });
        if let Some(v) = id {
            if ids.len() < MAX_EXPECTED {
                ids.insert(v);
            } else {
                tracing::warn!(topic, max = MAX_EXPECTED, "more records after the checkpoint than the dedupe keeps; those past it may be written again");
            }
        }
        if left
            .get(&m.partition())
            .is_some_and(|&high| m.offset() + 1 >= high)
        {
            left.remove(&m.partition());
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_the_state() {
        let id = vec![0u8, 15, 16, 255];
        assert_eq!(unhex(&hex(&id)), Some(id));
        assert_eq!(unhex("zz"), None);
        let s: State = serde_json::from_str(r#"{"ends":{"0":5}}"#).unwrap();
        assert_eq!(s.ends[&0], 5);
        assert!(s.expected.is_empty());
    }

    #[test]
    fn a_replay_skips_each_id_as_often_as_it_was_written() {
        let mut w = Written::default();
        for id in [b"a", b"a", b"b"] {
            w.insert(id.to_vec());
        }
        let mut e = w.expected();
        e.sort();
        assert_eq!(e, ["61", "61", "62"]);
        assert!(w.take(b"a") && w.take(b"a"));
        assert!(!w.take(b"a"), "written twice, skipped twice, then written");
        assert!(w.take(b"b") && w.is_empty());
    }

    #[test]
    fn content_ids_tell_keys_payloads_and_no_key_apart() {
        let d = Dedupe::Content;
        let id = |k: Option<&[u8]>, p: &[u8]| d.id(k, p, |_| None).unwrap();
        assert_eq!(id(Some(b"k"), b"v"), id(Some(b"k"), b"v"));
        assert_ne!(id(Some(b"k"), b"v"), id(Some(b"k"), b"w"));
        assert_ne!(id(Some(b"k"), b"v"), id(None, b"v"));
        assert_ne!(id(Some(b""), b"v"), id(None, b"v"));
        assert_ne!(id(Some(b"kv"), b""), id(Some(b"k"), b"v"));
    }

    /// What two read-backs both found (a restore and a rewind over the
    /// same records) is skipped as often as it was written, not twice as
    /// often; what only one found is added.
    #[test]
    fn a_merge_keeps_the_larger_count_of_each_id() {
        let mut w = Written::default();
        w.insert(b"a".to_vec());
        let mut other = Written::default();
        other.insert(b"a".to_vec());
        other.insert(b"b".to_vec());
        other.insert(b"b".to_vec());
        w.merge(other);
        assert_eq!(w.len(), 3);
        assert!(w.take(b"a") && !w.take(b"a"));
        assert!(w.take(b"b") && w.take(b"b") && !w.take(b"b"));
        assert!(w.is_empty());
    }

    #[test]
    fn modes_are_checked() {
        assert_eq!(Dedupe::new(None, None).unwrap(), None);
        assert_eq!(
            Dedupe::new(Some("content"), None).unwrap(),
            Some(Dedupe::Content)
        );
        assert_eq!(
            Dedupe::new(None, Some("h".into())).unwrap(),
            Some(Dedupe::Header("h".into()))
        );
        for (m, h, says) in [
            ("content", Some("h"), "both set"),
            ("header", None, "needs `dedupe_header`"),
            ("contents", None, "not a dedupe mode"),
        ] {
            let e = Dedupe::new(Some(m), h.map(String::from))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says) && e.contains("Fix"), "{e}");
        }
    }
}
