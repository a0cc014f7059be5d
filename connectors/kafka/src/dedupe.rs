//! Each record once across replays, for records that carry a deterministic
//! id in a header (`dedupe_header`; dead letters carry
//! `flowline.dead_letter.id`).
//!
//! A job restored from a checkpoint replays the records read after it, and
//! writes again what it wrote for them. The sink's snapshot holds the
//! topic's end offsets at the checkpoint; on restore it reads the ids
//! written after those offsets (by the run that crashed), and skips a
//! record whose id is among them. Memory: the ids written in one
//! checkpoint interval, dropped at the next checkpoint.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::error::{with_retries, Error};

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

/// The values of `header` in the records of `topic` from `from` up to the
/// current end offsets.
pub(crate) fn ids_since(
    client: &ClientConfig,
    topic: &str,
    from: &Ends,
    header: &str,
    timeout: Duration,
) -> Result<HashSet<Vec<u8>>, Error> {
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
    let mut ids = HashSet::new();
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
            for (_, p, o) in crate::position::positions(&c) {
                if left.get(&p).is_some_and(|&high| o >= high) {
                    left.remove(&p);
                }
            }
            continue;
        };
        let m = m.map_err(kafka("reading back the topic"))?;
        if let Some(v) = m
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == header))
            .and_then(|h| h.value)
        {
            if ids.len() < MAX_EXPECTED {
                ids.insert(v.to_vec());
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
}
