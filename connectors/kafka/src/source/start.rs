//! Where a partition starts reading: without checkpointed state, and when
//! its checkpointed offset is past the end of the log there now
//! (`restart_rewound`).
//!
//! `auto_offset_reset = "latest"` means "what is written from the job's
//! start on". It names the end offset only for the partitions of that first
//! start: the partitions of the source's first non-empty assignment when no
//! checkpoint named any partition. A partition that has no state later (the
//! topic grew, a `topic_pattern` matched a new topic, a checkpoint does not
//! hold it) starts at its earliest offset. Taking its end offset instead
//! would silently skip what was written to it before this consumer was
//! given it, which can be minutes after it was created (librdkafka looks
//! for new partitions every `topic.metadata.refresh.interval.ms`, 5 min by
//! default). Flink's KafkaSource does the same for partitions it discovers
//! (FLIP-288), as Druid's Kafka indexing does (apache/druid#7776).
//!
//! An offset the group committed is never the start: it was committed with
//! a checkpoint that no longer exists (deleted, or another job's), and
//! resuming there with empty state would silently drop everything before
//! it from the results.

use std::time::Duration;

use flowline_connector_api::PartitionId;
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use super::{kafka, lock, partition_id, KafkaSource};
use crate::config::{duration, StartPosition};
use crate::error::{with_retries, Error};

impl KafkaSource {
    /// The offset `auto_offset_reset` names for partition `t`/`p`, whose
    /// offsets run from `low` to `high`.
    pub(super) fn reset_offset(
        &self,
        t: &str,
        p: i32,
        low: i64,
        high: i64,
        timeout: Duration,
    ) -> Result<i64, Error> {
        Ok(match self.start {
            StartPosition::Earliest => low,
            StartPosition::Latest if self.latest_open => high,
            StartPosition::Latest => {
                tracing::info!(
                    partition = %partition_id(t, p),
                    start = low,
                    end = high,
                    "this partition has no checkpointed state and was not one the job started with (the topic grew, a topic_pattern matched a new topic, or the checkpoint does not hold it): reading it from its earliest offset, so nothing written to it before it was assigned here is skipped. auto_offset_reset = \"latest\" applies to the job's first start only"
                );
                low
            }
            StartPosition::Timestamp(ms) => {
                let mut q = TopicPartitionList::new();
                q.add_partition_offset(t, p, Offset::Offset(ms))
                    .map_err(kafka("offsets for time"))?;
                let r = self
                    .consumer
                    .offsets_for_times(q, timeout)
                    .map_err(kafka(format!("offset for time {ms} in {t}/{p}")))?;
                match r.elements().first().map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => high,
                }
            }
        })
    }

    /// Where a partition of a group assignment without checkpointed state
    /// starts: [`reset_offset`](Self::reset_offset), with a warning when
    /// the group has an offset committed for it.
    pub(super) fn configured_start(
        &self,
        t: &str,
        p: i32,
        timeout: Duration,
    ) -> Result<i64, Error> {
        let mut q = TopicPartitionList::new();
        q.add_partition(t, p);
        let committed = with_retries("reading committed offsets", timeout, |d| {
            self.consumer.committed_offsets(q.clone(), d)
        })?;
        let (low, high) = self.watermarks(t, p, timeout)?;
        let start = self.reset_offset(t, p, low, high, timeout)?;
        if let Some(Offset::Offset(o)) = committed.elements().first().map(|e| e.offset()) {
            warn_stale(&self.cfg.group_id, &partition_id(t, p), o, start);
        }
        Ok(start)
    }

    /// Bounded: a checkpointed offset past a partition's end offset (seen
    /// at start) names a log that is gone, as Kafka offsets never go back
    /// within one log. The partition is read from the log start there now,
    /// as librdkafka does for a streaming source (`auto.offset.reset`), and
    /// the rewind is a bad record ([`rewound`](super::state::rewound)).
    /// Before, the run took the partition for read to its end and read
    /// nothing of it.
    pub(super) fn restart_rewound(&self, started: bool) -> Result<(), Error> {
        let past: Vec<(String, i32, PartitionId, i64)> = lock(&self.shared().state)
            .parts
            .iter()
            .filter(|p| p.stop.is_some_and(|s| p.next > s))
            .map(|p| (p.topic.clone(), p.partition, p.pid.clone(), p.next))
            .collect();
        if past.is_empty() {
            return Ok(());
        }
        let timeout = duration("connect_timeout", &self.cfg.connect_timeout)?;
        for (t, p, pid, expected) in past {
            let (low, _) = self.watermarks(&t, p, timeout)?;
            let mut st = lock(&self.shared().state);
            let Some(part) = st.find(&t, p) else { continue };
            part.next = low;
            part.expect = low;
            part.consumed = 0;
            if started {
                part.target = Some(low);
                part.seeked = false;
            }
            st.rejected.push(super::state::rewound(&pid, expected, low));
        }
        Ok(())
    }

    /// The partition's low and high watermarks, asked again on a passing
    /// failure until `timeout`.
    pub(super) fn watermarks(
        &self,
        t: &str,
        p: i32,
        timeout: Duration,
    ) -> Result<(i64, i64), Error> {
        with_retries(
            &format!("reading the watermarks of {t}/{p}"),
            timeout,
            |d| self.consumer.fetch_watermarks(t, p, d),
        )
    }
}

impl KafkaSource {
    /// Bounded, restored from a checkpoint that names partitions: a
    /// partition it does not name started at `latest` in `new`, and starts
    /// where [`reset_offset`](Self::reset_offset) says now.
    pub(super) fn restart_new_partitions(&mut self) -> Result<(), Error> {
        if self.start != StartPosition::Latest {
            return Ok(());
        }
        let timeout = duration("connect_timeout", &self.cfg.connect_timeout)?;
        let new: Vec<(String, i32)> = lock(&self.shared().state)
            .parts
            .iter()
            .filter(|part| !self.known.contains_key(&part.pid))
            .map(|part| (part.topic.clone(), part.partition))
            .collect();
        for (t, p) in new {
            let (low, high) = self.watermarks(&t, p, timeout)?;
            let next = self.reset_offset(&t, p, low, high, timeout)?;
            if let Some(part) = lock(&self.shared().state).find(&t, p) {
                part.next = next;
                part.expect = next;
            }
        }
        Ok(())
    }
}

pub(super) fn warn_stale(group: &str, pid: &PartitionId, committed: i64, start: i64) {
    tracing::warn!(
        group_id = group,
        partition = %pid,
        committed,
        start,
        "no checkpoint holds this partition's state, so the group's committed offset is ignored and reading starts at auto_offset_reset: resuming at the committed offset with empty state would leave everything before it out of the results. Fix: restore the checkpoints, or use a new group_id to make the fresh start explicit"
    );
}
