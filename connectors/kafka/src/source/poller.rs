//! The consumer thread: it alone polls librdkafka, turns messages into
//! records by the position rules, and hands batches to the `Source` side
//! through a channel bounded by credits.
//!
//! - **Backpressure by pausing**: a batch needs a credit, and `next` gives
//!   one back per batch it takes. With none free for `poll_timeout`, the
//!   thread pauses its partitions (librdkafka stops fetching) and keeps
//!   polling, so rebalances are served and `max.poll.interval.ms` never
//!   expires; it resumes them when a credit is back.
//! - **Revoke hand-over**: the rebalance callback runs on this thread. On a
//!   revoke it hands on the records accepted so far and the `Revoked`
//!   event, then waits (up to `revoke_timeout`) until a completed
//!   checkpoint covers every record delivered from those partitions. Only
//!   then does the revoke complete, so the next owner finds their state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use flowline_connector_api::{ConnectorError, PartitionId, Rejected, SourceEvent};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;

use super::message::{event_time, record, TopicNames};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::state::{State, Verdict};
use crate::error::{is_retryable, Error};

/// An item for `next`: an event, and whether it holds a credit.
pub(crate) type Item = (Result<SourceEvent, ConnectorError>, bool);

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the thread, the callbacks and the `Source` methods share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub state: Mutex<State>,
    credits: Mutex<usize>,
    credit_cv: Condvar,
    /// Per partition, the position of the last completed checkpoint.
    acks: Mutex<HashMap<PartitionId, u64>>,
    ack_cv: Condvar,
    /// Signalled by `seek`, which an assignment waits for.
    seek_cv: Condvar,
    /// Partitions of each `Assigned` sent and not yet answered, oldest first.
    pub(super) answers: Mutex<std::collections::VecDeque<Vec<PartitionId>>>,
    /// End offsets from librdkafka's statistics (once a second), for lag.
    pub ends: Mutex<HashMap<(String, i32), i64>>,
    /// From the same statistics: 0 not known yet, 1 some broker connection
    /// is up, 2 none is.
    pub connected: std::sync::atomic::AtomicU8,
    pub stop: AtomicBool,
    /// Bumped by every rebalance callback and bounded assignment: what a
    /// [`TopicNames`] cache was filled under (see there).
    pub(super) assignments: std::sync::atomic::AtomicU64,
    /// When the group's members are read next (`members.rs`).
    pub(super) members_at: Mutex<Option<Instant>>,
    /// The last authentication failure librdkafka reported (its own words;
    /// they never hold the password).
    pub auth: crate::auth::AuthWatch,
    tx: mpsc::UnboundedSender<Item>,
    pub settings: Settings,
}

/// What the thread needs from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub headers: bool,
    pub timestamp_field: Option<String>,
    pub bounded: bool,
    pub max_batch: usize,
    pub poll_timeout: Duration,
    pub revoke_timeout: Duration,
    /// `exclusive = true`: the configured topics and the group.
    pub exclusive: Option<(Vec<String>, String)>,
    /// Not exclusive, in a group: who this job's members are.
    pub members: Option<super::members::Members>,
}

impl Shared {
    pub fn new(settings: Settings, credits: usize) -> (Self, mpsc::UnboundedReceiver<Item>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Self {
            state: Mutex::default(),
            credits: Mutex::new(credits.max(1)),
            credit_cv: Condvar::new(),
            acks: Mutex::default(),
            ack_cv: Condvar::new(),
            seek_cv: Condvar::new(),
            answers: Mutex::default(),
            ends: Mutex::default(),
            connected: std::sync::atomic::AtomicU8::new(0),
            stop: AtomicBool::new(false),
            assignments: std::sync::atomic::AtomicU64::new(0),
            members_at: Mutex::new(None),
            auth: crate::auth::AuthWatch::default(),
            tx,
            settings,
        };
        (shared, rx)
    }

    /// Takes a credit, waiting up to `wait`.
    fn take_credit(&self, wait: Duration) -> bool {
        let mut c = lock(&self.credits);
        if *c == 0 {
            c = self
                .credit_cv
                .wait_timeout_while(c, wait, |c| *c == 0 && !self.stop.load(Ordering::Acquire))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if *c == 0 {
            return false;
        }
        *c -= 1;
        true
    }

    /// The assignment changes (a rebalance, a bounded assignment): topic
    /// names are read from librdkafka again (`message::TopicNames`).
    pub(super) fn assignment_changes(&self) {
        self.assignments.fetch_add(1, Ordering::AcqRel);
    }

    pub fn give_credit(&self) {
        *lock(&self.credits) += 1;
        self.credit_cv.notify_one();
    }

    pub fn shut_down(&self) {
        self.stop.store(true, Ordering::Release);
        self.credit_cv.notify_all();
        self.ack_cv.notify_all();
        self.seek_cv.notify_all();
    }

    pub(super) fn send(&self, item: Item) {
        // The receiver is gone only when the source is dropped.
        let _ = self.tx.send(item);
    }

    /// A completed checkpoint: wakes a revoke waiting for it.
    pub fn checkpointed(&self, offsets: impl Iterator<Item = (PartitionId, u64)>) {
        let mut acks = lock(&self.acks);
        for (pid, o) in offsets {
            let a = acks.entry(pid).or_insert(o);
            *a = (*a).max(o);
        }
        self.ack_cv.notify_all();
    }

    /// Hands on the records accepted so far, without a credit (a revoke
    /// or an assignment must not wait behind a full channel).
    pub(super) fn flush_uncredited(&self) {
        let (batch, rejected) = {
            let mut st = lock(&self.state);
            (
                std::mem::take(&mut st.batch),
                std::mem::take(&mut st.rejected),
            )
        };
        if !batch.is_empty() {
            self.send((Ok(SourceEvent::Records(batch)), false));
        }
        self.send_rejected(rejected);
    }

    /// Records refused at the source, after the batch they were read with
    /// (so their offsets are passed after the batch's).
    fn send_rejected(&self, rejected: Vec<Rejected>) {
        if !rejected.is_empty() {
            self.send((Err(ConnectorError::BadRecords(rejected)), false));
        }
    }

    /// Waits (up to `revoke_timeout`) until `seek` has answered for these
    /// partitions; returns the state, locked.
    pub(super) fn wait_for_seek(&self, list: &[(String, i32)]) -> MutexGuard<'_, State> {
        let st = lock(&self.state);
        let (st, timeout) = self
            .seek_cv
            .wait_timeout_while(st, self.settings.revoke_timeout, |st| {
                !self.stop.load(Ordering::Acquire)
                    && list
                        .iter()
                        .any(|(t, p)| st.find(t, *p).is_some_and(|part| part.awaiting))
            })
            .unwrap_or_else(|e| e.into_inner());
        if timeout.timed_out() {
            tracing::warn!(timeout = ?self.settings.revoke_timeout,
                "the runtime has not answered the assignment in time; the partitions' records are held back until it names their checkpointed offsets");
        }
        st
    }

    /// Takes the partitions of the oldest assignment not yet answered.
    pub fn next_answer(&self) -> Option<Vec<PartitionId>> {
        lock(&self.answers).pop_front()
    }

    /// `seek` has answered an assignment.
    pub fn seek_answered(&self) {
        self.seek_cv.notify_all();
    }

    pub(super) fn wait_for_checkpoint(&self, need: &[(PartitionId, u64)]) {
        let deadline = Instant::now() + self.settings.revoke_timeout;
        let mut acks = lock(&self.acks);
        while !covers(&acks, need) {
            let now = Instant::now();
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            if now >= deadline {
                tracing::warn!(partitions = ?need, timeout = ?self.settings.revoke_timeout,
                    "no checkpoint covered the revoked partitions in time; giving them up (the next owner replays from the last checkpoint)");
                return;
            }
            acks = self
                .ack_cv
                .wait_timeout(acks, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

fn covers(acks: &HashMap<PartitionId, u64>, need: &[(PartitionId, u64)]) -> bool {
    need.iter()
        .all(|(pid, n)| acks.get(pid).is_some_and(|a| a >= n))
}

/// The consumer's context: statistics and rebalance callbacks.
#[derive(Debug)]
pub struct Ctx(pub(crate) Arc<Shared>);

pub(super) fn tps(l: &TopicPartitionList) -> Vec<(String, i32)> {
    l.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl ClientContext for Ctx {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.0.auth.note(&error, reason);
        tracing::warn!(%error, reason, "librdkafka error");
    }

    fn stats(&self, s: rdkafka::Statistics) {
        self.0.connected.store(
            if super::any_broker_up(&s) { 1 } else { 2 },
            Ordering::Relaxed,
        );
        let mut lows = HashMap::new();
        {
            let mut ends = lock(&self.0.ends);
            for (t, topic) in s.topics {
                for (p, part) in topic.partitions {
                    if p >= 0 && part.hi_offset >= 0 {
                        ends.insert((t.clone(), p), part.hi_offset);
                    }
                    if p >= 0 && part.lo_offset >= 0 {
                        lows.insert((t.clone(), p), part.lo_offset);
                    }
                }
            }
        }
        let mut st = lock(&self.0.state);
        if !st.gaps.is_empty() {
            st.check_gaps(|t, p| lows.get(&(t.to_string(), p)).copied());
        }
    }
}

/// The thread's body; returns when the source shuts down or a bounded
/// input is complete.
pub(crate) fn run(consumer: Arc<BaseConsumer<Ctx>>) {
    let sh = consumer.context().0.clone();
    let timeout = sh.settings.poll_timeout;
    let mut paused: Option<TopicPartitionList> = None;
    let mut names = TopicNames::default();
    while !sh.stop.load(Ordering::Acquire) {
        if let Some(msg) = super::members::check(&consumer, &sh) {
            tracing::error!(reason = %msg, "another application shares the consumer group");
            sh.send((Err(ConnectorError::permanent(msg)), false));
            sh.shut_down();
            return;
        }
        if !sh.take_credit(timeout) {
            if paused.is_none() {
                paused = pause_live(&consumer, &sh);
            }
            // Serve callbacks; a message polled now was fetched before the
            // pause and is kept (the queue behind it is bounded).
            if let Some(r) = consumer.poll(timeout.min(Duration::from_millis(100))) {
                accept(&consumer, &sh, &mut names, r);
            }
            continue;
        }
        if let Some(l) = paused.take() {
            resume_owned(&consumer, &sh, l);
        }
        let mut error = None;
        let mut n = 0;
        while n < sh.settings.max_batch {
            let Some(r) = consumer.poll(if n == 0 { timeout } else { Duration::ZERO }) else {
                if n == 0 {
                    catch_up(&consumer, &sh);
                }
                break;
            };
            match r {
                Err(e) => {
                    error = Some(e);
                    break;
                }
                Ok(m) => {
                    n += 1;
                    if accept(&consumer, &sh, &mut names, Ok(m)) && sh.settings.bounded {
                        break;
                    }
                }
            }
        }
        if sh.settings.bounded && lock(&sh.state).bounded_done() {
            // The statistics may not come again before the end.
            check_gaps_now(&consumer, &sh);
        }
        let (batch, rejected, done) = {
            let mut st = lock(&sh.state);
            let done = sh.settings.bounded && st.bounded_done();
            // The next batch starts with room for as many as this one, so
            // it does not grow by doubling (a copy and page faults each time).
            let room = st.batch.len();
            if room > 0 {
                st.fresh_ids();
            }
            (
                std::mem::replace(&mut st.batch, Vec::with_capacity(room)),
                std::mem::take(&mut st.rejected),
                done,
            )
        };
        let mut credit = true;
        if !batch.is_empty() {
            sh.send((Ok(SourceEvent::Records(batch)), credit));
            credit = false;
        }
        sh.send_rejected(rejected);
        if let Some(e) = error {
            if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::FencedInstanceId) {
                let msg = format!(
                    "another consumer joined the group with this process's group_instance_id ({e}). Fix: give every running instance of the job its own `[job] instance_id` (or group_instance_id)"
                );
                sh.send((Err(ConnectorError::permanent(msg)), credit));
                return;
            }
            let retry = is_retryable(&e);
            let err = Error::Kafka {
                what: "consuming".into(),
                source: e,
            };
            let err = if retry {
                ConnectorError::retryable(err.to_string())
            } else {
                err.into()
            };
            sh.send((Err(err), credit));
            credit = false;
        }
        if credit {
            sh.give_credit();
        }
        if done {
            sh.send((Ok(SourceEvent::End), false));
            return;
        }
    }
}

/// Copies one message and reads its event time, then applies the position
/// rules and, when it is delivered, puts it in the batch: one lock per
/// message, held only for the rules and the push. Returns whether a
/// bounded partition has reached its end.
fn accept(
    consumer: &BaseConsumer<Ctx>,
    sh: &Shared,
    names: &mut TopicNames,
    r: Result<BorrowedMessage<'_>, rdkafka::error::KafkaError>,
) -> bool {
    let Ok(m) = r else { return false };
    let (topic, p, off) = (
        names.of(&m, sh.assignments.load(Ordering::Acquire)),
        m.partition(),
        m.offset(),
    );
    // Copied and its time read before the lock: the runtime's side waits
    // on it. (A message skipped after a seek is copied for nothing; rare.)
    let (mut r, unread) = record(&m, sh.settings.headers);
    let time = match unread {
        Some(reason) => Err(reason),
        None => event_time(
            sh.settings.timestamp_field.as_deref(),
            &r.payload,
            m.timestamp().to_millis(),
        ),
    };
    let mut st = lock(&sh.state);
    let (verdict, pid) = st.verdict(topic, p, off);
    match verdict {
        Verdict::Skip => {}
        Verdict::SeekTo(t) => {
            drop(st);
            if let Err(e) = consumer.seek(topic, p, Offset::Offset(t), Duration::from_secs(5)) {
                tracing::warn!(partition = ?pid, offset = t, error = %e, "seek failed; the next message seeks again");
                lock(&sh.state).seek_failed(topic, p);
            }
            return false;
        }
        Verdict::Deliver => {
            r.partition = pid;
            r.offset = off as u64;
            match time {
                Ok(t) => {
                    r.timestamp = t;
                    st.batch.push(r);
                }
                Err(reason) => st.rejected.push(Rejected::new(r, reason)),
            }
        }
    }
    st.stop_reached
}

/// After a poll that found nothing: each partition's position moves up to
/// librdkafka's, past offsets without a record (transaction markers,
/// aborted records), so a bounded partition ending in a marker ends.
fn catch_up(consumer: &BaseConsumer<Ctx>, sh: &Shared) {
    let positions = crate::position::positions(consumer);
    {
        let mut st = lock(&sh.state);
        for (t, p, o) in positions {
            st.caught_up(&t, p, o);
        }
    }
    check_gaps_now(consumer, sh);
}

/// Checks the gaps read so far against the log start offsets the broker
/// gives now (one request per partition with a gap).
fn check_gaps_now(consumer: &BaseConsumer<Ctx>, sh: &Shared) {
    let parts: std::collections::BTreeSet<(String, i32)> = lock(&sh.state)
        .gaps
        .iter()
        .map(|g| (g.topic.clone(), g.partition))
        .collect();
    if parts.is_empty() {
        return;
    }
    let mut lows = HashMap::new();
    for (t, p) in parts {
        match consumer.fetch_watermarks(&t, p, Duration::from_secs(5)) {
            Ok((lo, _)) => {
                lows.insert((t, p), lo);
            }
            Err(e) => {
                tracing::debug!(topic = %t, partition = p, error = %e, "reading the log start offset failed; the statistics will tell");
            }
        }
    }
    lock(&sh.state).check_gaps(|t, p| lows.get(&(t.to_string(), p)).copied());
}

/// Pauses the partitions that are fetching (not those awaiting a seek).
fn pause_live(consumer: &BaseConsumer<Ctx>, sh: &Shared) -> Option<TopicPartitionList> {
    let mut l = TopicPartitionList::new();
    for p in lock(&sh.state).parts.iter().filter(|p| !p.awaiting) {
        l.add_partition(&p.topic, p.partition);
    }
    if l.count() == 0 {
        return None;
    }
    match consumer.pause(&l) {
        Ok(()) => {
            tracing::debug!(
                partitions = l.count(),
                "downstream is full: partitions paused"
            );
            Some(l)
        }
        Err(e) => {
            tracing::warn!(error = %e, "pausing partitions for backpressure failed");
            None
        }
    }
}

/// Resumes what `pause_live` paused, except partitions no longer owned.
fn resume_owned(consumer: &BaseConsumer<Ctx>, sh: &Shared, paused: TopicPartitionList) {
    let mut l = TopicPartitionList::new();
    {
        let mut st = lock(&sh.state);
        for e in paused.elements() {
            if st
                .find(e.topic(), e.partition())
                .is_some_and(|p| !p.awaiting)
            {
                l.add_partition(e.topic(), e.partition());
            }
        }
    }
    if l.count() > 0 {
        if let Err(e) = consumer.resume(&l) {
            tracing::warn!(error = %e, "resuming partitions after backpressure failed");
        } else {
            tracing::debug!(
                partitions = l.count(),
                "downstream has room: partitions resumed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            headers: true,
            timestamp_field: None,
            bounded: false,
            max_batch: 10,
            poll_timeout: Duration::from_millis(10),
            revoke_timeout: Duration::from_millis(50),
            exclusive: None,
            members: None,
        }
    }

    #[test]
    fn credits_bound_what_is_in_flight() {
        let (sh, _rx) = Shared::new(settings(), 2);
        assert!(sh.take_credit(Duration::ZERO));
        assert!(sh.take_credit(Duration::ZERO));
        assert!(!sh.take_credit(Duration::from_millis(5)));
        sh.give_credit();
        assert!(sh.take_credit(Duration::ZERO));
    }

    #[test]
    fn a_revoke_waits_for_a_checkpoint_covering_what_was_delivered() {
        let mut long = settings();
        long.revoke_timeout = Duration::from_secs(60);
        let (sh, _rx) = Shared::new(long, 1);
        let sh = Arc::new(sh);
        let pid = PartitionId::new("t/0");
        let need = vec![(pid.clone(), 10)];
        // A checkpoint short of the delivered records does not cover them.
        sh.checkpointed([(pid.clone(), 9)].into_iter());
        assert!(!covers(&lock(&sh.acks), &need));
        let waiter = {
            let (sh, need) = (sh.clone(), need.clone());
            std::thread::spawn(move || {
                let t0 = Instant::now();
                sh.wait_for_checkpoint(&need);
                t0.elapsed()
            })
        };
        sh.checkpointed([(pid.clone(), 10)].into_iter());
        assert!(covers(&lock(&sh.acks), &need));
        let waited = waiter.join().unwrap();
        assert!(
            waited < Duration::from_secs(60),
            "released by the checkpoint: {waited:?}"
        );
    }

    #[test]
    fn a_revoke_gives_up_after_the_timeout() {
        let (sh, _rx) = Shared::new(settings(), 1);
        let t0 = Instant::now();
        sh.wait_for_checkpoint(&[(PartitionId::new("t/1"), 1)]);
        assert!(t0.elapsed() >= Duration::from_millis(50));
    }
}
