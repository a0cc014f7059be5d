//! How far a consumer has read. Offsets are not dense: each transaction
//! ends in a marker, and under `read_committed` (librdkafka's default) an
//! aborted transaction's records are never delivered. So "a message at
//! end − 1 came" is no test of having read to the end: a reader waiting
//! for it waits for ever when the last offset is a marker (a topic written
//! by Kafka Streams, Flink's exactly-once sink, any transactional
//! producer). librdkafka's position passes such offsets (it is the offset
//! after the last message consumed, delivered or not), so the readers ask
//! for it when a poll finds nothing.

use std::collections::BTreeMap;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::Offset;

/// The position of each assigned partition that has one (topic,
/// partition, offset); none when librdkafka cannot say.
pub(crate) fn positions<C: ConsumerContext>(c: &BaseConsumer<C>) -> Vec<(String, i32, i64)> {
    let Ok(list) = c.position() else {
        return Vec::new();
    };
    list.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.topic().to_string(), e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// Drops from `ends` (end offset per partition of one topic being read to
/// its end) each partition the consumer's position has reached: for a
/// reader after a poll that found nothing, when the last offsets hold no
/// message.
pub(crate) fn forget_reached<C: ConsumerContext>(
    c: &BaseConsumer<C>,
    ends: &mut BTreeMap<i32, i64>,
) {
    for (_, p, o) in positions(c) {
        if ends.get(&p).is_some_and(|&end| o >= end) {
            ends.remove(&p);
        }
    }
}
