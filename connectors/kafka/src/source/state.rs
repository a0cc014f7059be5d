//! The position rules, shared by the consumer thread and the `Source`
//! methods: which partitions this source owns, where each stands, and
//! whether a polled message is to be delivered.

use flowline_connector_api::{PartitionId, Record, Rejected};

/// One owned partition.
#[derive(Debug)]
pub(crate) struct Part {
    pub topic: String,
    pub partition: i32,
    pub pid: PartitionId,
    /// Assigned, and the runtime has not answered with a `seek` yet: its
    /// records are held back (the partition is paused).
    pub awaiting: bool,
    /// The lowest offset seen while awaiting (the group's committed position).
    pub first_seen: Option<i64>,
    /// Deliver from this offset: earlier ones are skipped, a later one makes
    /// the consumer seek back once.
    pub target: Option<i64>,
    pub seeked: bool,
    /// The offset after the last delivered record (0: none delivered yet,
    /// in a consumer group).
    pub next: i64,
    /// Bounded: the end offset seen at start.
    pub stop: Option<i64>,
    /// librdkafka's position when last asked (0: not asked): past `next`
    /// when the offsets after the last record hold none (a transaction's
    /// marker). Not a delivered position, so never a revoke's need.
    pub consumed: i64,
    /// The offset the next message should have (-1: not known): a message
    /// past it leaves a gap, checked against the broker's log start.
    pub expect: i64,
    /// `pid` was given to a delivered record since it was made: the next
    /// batch gets a new one ([`State::fresh_ids`]).
    pub delivered: bool,
}

impl Part {
    pub fn new(topic: &str, partition: i32, awaiting: bool) -> Self {
        Self {
            topic: topic.to_string(),
            partition,
            pid: super::partition_id(topic, partition),
            awaiting,
            first_seen: None,
            target: None,
            seeked: false,
            next: 0,
            stop: None,
            consumed: 0,
            expect: -1,
            delivered: false,
        }
    }

    /// How far this consumer has read: the next record's offset, or past
    /// markers after the last one.
    pub fn reached(&self) -> i64 {
        self.next.max(self.consumed)
    }

    fn is(&self, topic: &str, partition: i32) -> bool {
        self.partition == partition && self.topic == topic
    }
}

/// What the consumer thread does with a polled message.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    Deliver,
    Skip,
    /// Skip, and seek the partition back to this offset.
    SeekTo(i64),
}

/// Owned partitions, and the batch being filled.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Few entries; records come in runs of one partition, so the last hit
    /// is tried first.
    pub parts: Vec<Part>,
    last: usize,
    /// Records accepted and not yet handed to the runtime.
    pub batch: Vec<Record>,
    /// Records read with the batch whose event time cannot be read.
    pub rejected: Vec<Rejected>,
    /// Bounded: some partition reached its end offset.
    pub stop_reached: bool,
    /// Revoked, with the revoke waiting for a checkpoint: their offsets are
    /// still committed.
    pub revoking: Vec<(PartitionId, String, i32)>,
    /// Offsets skipped between two messages, not yet checked (see `Gap`).
    pub gaps: Vec<Gap>,
}

/// Offsets `from..to` of a partition that no message stood for. Most are
/// a transaction's marker or compacted records. When the broker's log now
/// starts past `from`, they were deleted (retention, `DeleteRecords`)
/// before this consumer read them, and librdkafka skipped to the log start
/// with no more than a log line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Gap {
    pub pid: PartitionId,
    pub topic: String,
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

/// Gaps kept unchecked at most; a deletion is the first gap after a start.
const MAX_GAPS: usize = 256;

/// The bad record that makes a log gone backwards loud: `pid`'s log ends
/// before `expected`, the offset this job was to read next (its
/// checkpoint's, or the one after the last record it read), and reading
/// goes on at `resumed`. Kafka offsets never go back within one log, so
/// the topic was deleted and created again, or the broker cut the log back
/// (an unclean leader election). Before, a bounded run read nothing of the
/// new log and ended as if done, and a streaming one counted it with no
/// more than a librdkafka log line. It stands at `expected` (its id is the
/// partition and that offset, the same in every replay of one checkpoint).
pub(crate) fn rewound(pid: &PartitionId, expected: i64, resumed: i64) -> Rejected {
    tracing::error!(partition = %pid, expected, resumed, "the partition's log ends before the offset this job was to read next: the topic was recreated, or the broker cut its log back");
    let reason = format!(
        "the log of {pid} ends before offset {expected}, where this job was to read next (its checkpoint, or the record after the last it read): the topic was deleted and created again, or the broker cut the log back (an unclean leader election). Reading goes on from offset {resumed} of the log there now, as new records; the windows already written keep what the job read before. Fix: nothing, if the topic was created again on purpose; otherwise check the brokers (unclean.leader.election.enable), as records read before may now be counted again"
    );
    let mut r = Record::new(Vec::new());
    r.partition = Some(pid.clone());
    r.offset = expected.max(0) as u64;
    Rejected::new(r, reason)
}

impl State {
    /// Gives each partition that delivered records a new [`PartitionId`]
    /// (the same name) for the records of the next batch (one allocation
    /// per partition and batch, only for those read from). Every record
    /// holds its partition's id, an `Arc`: cloned here for each record and
    /// dropped wherever the runtime drops the record (the driver, a
    /// worker). Shared by all batches, its count was a cache line passed
    /// between this thread and the workers' for every record, 3 % of an
    /// e2e job's CPU; a batch's own id is cloned here while earlier
    /// batches' ids are dropped there.
    pub fn fresh_ids(&mut self) {
        for p in self.parts.iter_mut().filter(|p| p.delivered) {
            p.pid = PartitionId::new(p.pid.as_str());
            p.delivered = false;
        }
    }

    /// The partitions a seek answering the assignment of `answering`
    /// starts: those of that assignment still awaiting, never those of a
    /// newer one (their answer comes after).
    pub fn to_answer(
        &self,
        answering: &[PartitionId],
    ) -> Vec<(String, i32, PartitionId, Option<i64>)> {
        self.parts
            .iter()
            .filter(|p| p.awaiting && answering.contains(&p.pid))
            .map(|p| (p.topic.clone(), p.partition, p.pid.clone(), p.first_seen))
            .collect()
    }

    pub fn find(&mut self, topic: &str, partition: i32) -> Option<&mut Part> {
        if !self
            .parts
            .get(self.last)
            .is_some_and(|p| p.is(topic, partition))
        {
            self.last = self.parts.iter().position(|p| p.is(topic, partition))?;
        }
        self.parts.get_mut(self.last)
    }

    pub fn add(&mut self, part: Part) {
        self.remove(&part.topic.clone(), part.partition);
        self.parts.push(part);
    }

    pub fn remove(&mut self, topic: &str, partition: i32) -> Option<Part> {
        let i = self.parts.iter().position(|p| p.is(topic, partition))?;
        self.last = 0;
        Some(self.parts.swap_remove(i))
    }

    /// Applies the position rules to the message at `off`; on `Deliver` the
    /// partition's position has moved past it.
    pub fn verdict(
        &mut self,
        topic: &str,
        partition: i32,
        off: i64,
    ) -> (Verdict, Option<PartitionId>) {
        let Some(part) = self.find(topic, partition) else {
            // Not owned (any more): a late message of a revoked partition.
            return (Verdict::Skip, None);
        };
        if part.awaiting {
            part.first_seen = Some(part.first_seen.map_or(off, |f| f.min(off)));
            return (Verdict::Skip, None);
        }
        if let Some(t) = part.target {
            if off != t && !part.seeked {
                part.seeked = true;
                return (Verdict::SeekTo(t), Some(part.pid.clone()));
            }
            // At the target, or off it after the seek: librdkafka drops
            // what it fetched before a seek. A later offset means that none
            // between holds a record (a transaction marker, an aborted or
            // compacted record; skipping it stalled the partition). An
            // earlier one means the target was past the log's end and
            // librdkafka went back to its start: the rewind below says so.
            // (Records before the target were skipped until it came, and a
            // log created again, shorter than the target, was skipped for
            // ever.)
            part.target = None;
            part.expect = t;
        }
        if part.stop.is_some_and(|s| off >= s) {
            part.next = part.next.max(off);
            self.stop_reached = true;
            return (Verdict::Skip, None);
        }
        part.next = off + 1;
        // Behind the expected offset with no target: librdkafka found that
        // offset past the log's end and reset to `auto.offset.reset`.
        let rewind =
            (part.expect >= 0 && off < part.expect).then(|| rewound(&part.pid, part.expect, off));
        let gap = (part.expect >= 0 && off > part.expect).then(|| Gap {
            pid: part.pid.clone(),
            topic: part.topic.clone(),
            partition: part.partition,
            from: part.expect,
            to: off,
        });
        part.expect = off + 1;
        let (ended, pid) = (part.stop.is_some_and(|s| part.next >= s), part.pid.clone());
        part.delivered = true;
        self.stop_reached |= ended;
        self.rejected.extend(rewind);
        if let Some(g) = gap.filter(|_| self.gaps.len() < MAX_GAPS) {
            self.gaps.push(g);
        }
        (Verdict::Deliver, Some(pid))
    }

    /// A seek that failed: the next later offset seeks again.
    pub fn seek_failed(&mut self, topic: &str, partition: i32) {
        if let Some(part) = self.find(topic, partition) {
            part.seeked = false;
        }
    }

    /// Moves a delivering partition's `reached` up to librdkafka's position (the offset
    /// after the last message it consumed), which passes offsets that hold
    /// no record for this consumer: transaction markers, and aborted
    /// records under `read_committed`. Called after a poll that found
    /// nothing, so every message before that position went through
    /// `verdict`. Without it a bounded partition whose last offset is a
    /// commit marker never reached its end, and its lag stayed at 1.
    pub fn caught_up(&mut self, topic: &str, partition: i32, position: i64) {
        if let Some(part) = self.find(topic, partition) {
            if !part.awaiting && part.target.is_none() {
                part.consumed = part.consumed.max(position);
            }
        }
    }

    /// Checks the gaps against each partition's log start offset (`lows`;
    /// a partition it does not name stays unchecked). A gap the log now
    /// starts past was deleted before it was read: it comes back as a bad
    /// record naming the offsets, with no payload (there is none left), so
    /// the loss is counted and in the dead-letter output, once (its id is
    /// the partition and first offset). The others were not records.
    pub fn check_gaps(&mut self, low: impl Fn(&str, i32) -> Option<i64>) {
        let mut kept = Vec::new();
        for g in std::mem::take(&mut self.gaps) {
            match low(&g.topic, g.partition) {
                None => kept.push(g),
                Some(lo) if lo > g.from => {
                    let to = lo.min(g.to);
                    let reason = format!(
                        "offsets {} to {} of {} ({} records) were deleted by the broker (retention, or DeleteRecords) before this job read them: they are in no result. Fix: keep a topic's records longer than the job may be stopped or behind (retention.ms)",
                        g.from,
                        to - 1,
                        g.pid,
                        to - g.from
                    );
                    tracing::error!(partition = %g.pid, from = g.from, to = to - 1, records = to - g.from, "records deleted before they were read");
                    let mut r = Record::new(Vec::new());
                    r.partition = Some(g.pid);
                    r.offset = g.from as u64;
                    self.rejected.push(Rejected::new(r, reason));
                }
                Some(_) => {}
            }
        }
        self.gaps = kept;
    }

    /// Bounded: every partition has reached its end offset.
    pub fn bounded_done(&self) -> bool {
        self.parts
            .iter()
            .all(|p| p.stop.is_some_and(|s| p.reached() >= s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(part: Part) -> State {
        let mut s = State::default();
        s.add(part);
        s
    }

    #[test]
    fn an_answer_starts_only_the_partitions_of_its_own_assignment() {
        // The runtime answered an empty assignment after a newer one made
        // t/0 and t/1 wait: that answer must not start them (it did, at
        // offsets of an older checkpoint than their restored state).
        let mut s = State::default();
        s.add(Part::new("t", 0, true));
        s.add(Part::new("t", 1, true));
        assert!(s.to_answer(&[]).is_empty());
        let pids = [PartitionId::new("t/1"), PartitionId::new("t/0")];
        let started: Vec<PartitionId> = s.to_answer(&pids).into_iter().map(|a| a.2).collect();
        assert_eq!(started, [PartitionId::new("t/0"), PartitionId::new("t/1")]);
        s.find("t", 0).unwrap().awaiting = false;
        assert_eq!(s.to_answer(&pids).len(), 1);
    }

    #[test]
    fn each_batch_gets_its_own_partition_id_of_the_same_name() {
        let mut s = state(Part::new("t", 0, false));
        s.add(Part::new("t", 1, false));
        let idle = s.find("t", 1).unwrap().pid.as_str().as_ptr();
        let (v, first) = s.verdict("t", 0, 0);
        assert_eq!(v, Verdict::Deliver);
        let (_, again) = s.verdict("t", 0, 1);
        let (first, again) = (first.unwrap(), again.unwrap());
        assert_eq!(
            first.as_str().as_ptr(),
            again.as_str().as_ptr(),
            "one batch, one id"
        );
        s.fresh_ids();
        let (v, next) = s.verdict("t", 0, 2);
        assert_eq!(v, Verdict::Deliver);
        let next = next.unwrap();
        assert_eq!(next, first);
        assert_ne!(
            next.as_str().as_ptr(),
            first.as_str().as_ptr(),
            "a new batch, a new id"
        );
        // A partition nothing was read from keeps its id: no allocation
        // per partition and batch for a source of many quiet partitions.
        assert_eq!(s.find("t", 1).unwrap().pid.as_str().as_ptr(), idle);
    }

    #[test]
    fn awaiting_partitions_hold_records_back_and_remember_the_first_offset() {
        let mut s = state(Part::new("t", 0, true));
        assert_eq!(s.verdict("t", 0, 7).0, Verdict::Skip);
        assert_eq!(s.verdict("t", 0, 5).0, Verdict::Skip);
        assert_eq!(s.parts[0].first_seen, Some(5));
        assert_eq!(s.parts[0].next, 0);
    }

    #[test]
    fn a_target_seeks_once_from_an_offset_off_it_and_delivers_from_it() {
        for first in [9, 12] {
            let mut p = Part::new("t", 1, false);
            p.target = Some(10);
            let mut s = state(p);
            assert_eq!(s.verdict("t", 1, first).0, Verdict::SeekTo(10));
            assert_eq!(s.verdict("t", 1, 10).0, Verdict::Deliver);
            assert_eq!(s.verdict("t", 1, 11).0, Verdict::Deliver);
            assert_eq!(s.parts[0].next, 12);
            assert!(s.rejected.is_empty() && s.gaps.is_empty());
        }
    }

    #[test]
    fn a_target_past_the_logs_end_is_a_rewind_after_the_seek() {
        // The seek's offset is gone (a topic created again): librdkafka
        // goes back to the log start, and that log is read, loudly.
        let mut p = Part::new("t", 1, false);
        p.target = Some(600);
        let mut s = state(p);
        assert_eq!(s.verdict("t", 1, 3).0, Verdict::SeekTo(600));
        assert_eq!(s.verdict("t", 1, 0).0, Verdict::Deliver);
        assert_eq!(s.verdict("t", 1, 1).0, Verdict::Deliver);
        assert_eq!(s.rejected.len(), 1);
        assert!(s.rejected[0]
            .reason
            .contains("ends before offset 600, where this job was to read next"));
    }

    #[test]
    fn after_the_seek_a_later_offset_is_delivered_as_the_target_holds_no_record() {
        // Offset 10 is a commit marker: after the seek to it, 11 comes first.
        let mut p = Part::new("t", 1, false);
        p.target = Some(10);
        let mut s = state(p);
        assert_eq!(s.verdict("t", 1, 11).0, Verdict::SeekTo(10));
        assert_eq!(s.verdict("t", 1, 11).0, Verdict::Deliver);
        assert_eq!(s.verdict("t", 1, 12).0, Verdict::Deliver);
        assert_eq!(s.parts[0].next, 13);
    }

    #[test]
    fn a_failed_seek_is_tried_again() {
        let mut p = Part::new("t", 1, false);
        p.target = Some(10);
        let mut s = state(p);
        assert_eq!(s.verdict("t", 1, 12).0, Verdict::SeekTo(10));
        s.seek_failed("t", 1);
        assert_eq!(s.verdict("t", 1, 13).0, Verdict::SeekTo(10));
    }

    #[test]
    fn the_position_past_markers_ends_a_bounded_partition_only_when_delivering() {
        // Records at 0..=2, a commit marker at 3: librdkafka's position
        // reaches 4, the end offset, though no record 3 comes.
        let mut a = Part::new("t", 0, false);
        a.stop = Some(4);
        let mut s = state(a);
        for off in 0..3 {
            assert_eq!(s.verdict("t", 0, off).0, Verdict::Deliver);
        }
        assert!(!s.bounded_done());
        s.caught_up("t", 0, 4);
        assert!(s.bounded_done());
        // Not while awaiting a seek's answer or a target, nor backwards.
        let mut b = Part::new("t", 1, true);
        b.stop = Some(4);
        s.add(b);
        s.caught_up("t", 1, 4);
        assert_eq!(s.find("t", 1).unwrap().reached(), 0);
        let b = s.find("t", 1).unwrap();
        b.awaiting = false;
        b.target = Some(2);
        s.caught_up("t", 1, 4);
        assert_eq!(s.find("t", 1).unwrap().reached(), 0);
        s.caught_up("t", 0, 1);
        let a = s.find("t", 0).unwrap();
        assert_eq!(a.reached(), 4);
        // What a revoke waits for stays the delivered position.
        assert_eq!(a.next, 3);
    }

    #[test]
    fn bounded_partitions_stop_at_their_end_offset() {
        let mut a = Part::new("t", 0, false);
        a.stop = Some(2);
        let mut b = Part::new("t", 1, false);
        b.stop = Some(0);
        let mut s = state(a);
        s.add(b);
        assert!(!s.bounded_done());
        assert_eq!(s.verdict("t", 0, 0).0, Verdict::Deliver);
        assert!(!s.stop_reached);
        assert_eq!(s.verdict("t", 0, 1).0, Verdict::Deliver);
        assert!(s.stop_reached);
        assert_eq!(s.verdict("t", 0, 2).0, Verdict::Skip);
        assert!(s.bounded_done());
    }

    #[test]
    fn a_gap_the_log_now_starts_past_is_one_bad_record_naming_the_offsets() {
        let mut a = Part::new("t", 0, false);
        a.expect = 100;
        let mut s = state(a);
        s.add(Part::new("t", 1, false));
        // Partition 0 resumes at 300: 100..299 are gone. Partition 1 has no
        // expectation yet (a fresh group start), so no gap.
        assert_eq!(s.verdict("t", 0, 300).0, Verdict::Deliver);
        assert_eq!(s.verdict("t", 1, 7).0, Verdict::Deliver);
        // A marker at 301: a gap of one, not a deletion.
        assert_eq!(s.verdict("t", 0, 302).0, Verdict::Deliver);
        assert_eq!(s.gaps.len(), 2);
        // Not known yet: kept.
        s.check_gaps(|_, _| None);
        assert_eq!(s.gaps.len(), 2);
        s.check_gaps(|_, _| Some(300));
        assert!(s.gaps.is_empty());
        assert_eq!(s.rejected.len(), 1, "the marker's gap is no loss");
        let r = &s.rejected[0];
        assert_eq!(r.record.offset, 100);
        assert!(r.record.payload.is_empty());
        assert!(
            r.reason
                .contains("offsets 100 to 299 of t/0 (200 records) were deleted")
                && r.reason.contains("Fix"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn a_log_start_inside_a_gap_counts_only_what_it_deleted() {
        let mut a = Part::new("t", 0, false);
        a.expect = 10;
        let mut s = state(a);
        assert_eq!(s.verdict("t", 0, 20).0, Verdict::Deliver);
        s.check_gaps(|_, _| Some(15));
        assert!(s.rejected[0]
            .reason
            .contains("offsets 10 to 14 of t/0 (5 records)"));
    }

    #[test]
    fn a_log_behind_the_expected_offset_is_one_bad_record_and_is_read_as_new() {
        // Checkpointed at 600; the topic was created again and librdkafka
        // reset to its start.
        let mut a = Part::new("t", 0, false);
        a.expect = 600;
        let mut s = state(a);
        assert_eq!(s.verdict("t", 0, 0).0, Verdict::Deliver);
        assert_eq!(s.verdict("t", 0, 1).0, Verdict::Deliver);
        assert_eq!(s.rejected.len(), 1, "one letter, not one per record");
        let r = &s.rejected[0];
        assert_eq!((r.record.offset, r.record.payload.len()), (600, 0));
        assert!(
            r.reason.contains("the log of t/0 ends before offset 600")
                && r.reason.contains("goes on from offset 0")
                && r.reason.contains("Fix"),
            "{}",
            r.reason
        );
        assert!(s.gaps.is_empty());
        assert_eq!(s.parts[0].next, 2);
    }

    #[test]
    fn messages_of_partitions_not_owned_are_skipped() {
        let mut s = state(Part::new("t", 0, false));
        assert_eq!(s.verdict("u", 0, 0), (Verdict::Skip, None));
        assert!(s.remove("t", 0).is_some());
        assert_eq!(s.verdict("t", 0, 0), (Verdict::Skip, None));
    }
}
