//! The producer's delivery reports, counted instead of awaited one by one.
//!
//! rust-rdkafka's `FutureProducer` gives every message a oneshot channel
//! (an allocation, a boxed sender as the opaque, a future to poll). The sink
//! only needs three things from the reports: how many messages are still in
//! flight, the records the broker refused (too large for the topic, a
//! timestamp outside what it takes, a record it cannot validate such as
//! one without a key for a compacted topic; they go to the dead-letter
//! output whole), and the first other failure (final: librdkafka has retried it
//! until `message.timeout.ms`). So the producer's context
//! keeps exactly that, and `settle` waits on a counter.
//!
//! Each message carries its record as an `Arc` opaque: the sink borrows the
//! payload for the send while librdkafka holds the other reference, and a
//! refused record comes back with every field it had.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use flowline_connector_api::{Record, Rejected};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::ClientContext;
use tokio::sync::Notify;

use crate::auth::AuthWatch;

/// The producer's context: the authentication watch and the delivery
/// counts.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    pub(crate) auth: AuthWatch,
    in_flight: AtomicUsize,
    /// A waiter wants a wake-up once `in_flight` is below this (0: none).
    wake_below: AtomicUsize,
    notify: Notify,
    rejected: Mutex<Vec<Rejected>>,
    failed: Mutex<Option<String>>,
}

impl Deliveries {
    /// A message is about to be handed to the producer.
    pub(crate) fn sending(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    /// One message is done: delivered, refused, or never accepted.
    pub(crate) fn done(&self) {
        let left = self.in_flight.fetch_sub(1, Ordering::SeqCst) - 1;
        if left < self.wake_below.load(Ordering::SeqCst) {
            self.notify.notify_one();
        }
    }

    /// Messages handed to the producer and not reported yet.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Waits until at most `keep` messages are in flight or a delivery has
    /// failed; `on_wait` runs each time `every` passes without progress.
    pub(crate) async fn wait_until(
        &self,
        keep: usize,
        every: std::time::Duration,
        mut on_wait: impl FnMut(usize),
    ) {
        self.wake_below.store(keep + 1, Ordering::SeqCst);
        // `done` decrements, then reads `wake_below`; this stores, then
        // reads the count (all SeqCst): either the count read here is
        // already lower, or `done` sees the store and leaves a permit.
        while self.in_flight() > keep && !self.has_failed() {
            if tokio::time::timeout(every, self.notify.notified())
                .await
                .is_err()
            {
                on_wait(self.in_flight());
            }
        }
        self.wake_below.store(0, Ordering::SeqCst);
    }

    /// Takes the records refused so far.
    pub(crate) fn take_rejected(&self) -> Vec<Rejected> {
        std::mem::take(&mut *self.rejected.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn has_failed(&self) -> bool {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Takes the first failure other than a refused record, if any.
    pub(crate) fn take_failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// What a delivery report means for the sink.
    fn report(&self, error: Option<&KafkaError>, record: Arc<Record>) {
        match error {
            None => {}
            Some(KafkaError::MessageProduction(
                code @ (RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidTimestamp
                | RDKafkaErrorCode::InvalidRecord),
            )) => {
                let record = Arc::unwrap_or_clone(record);
                let reason = refusal(*code, &record);
                self.rejected
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Rejected::new(record, reason));
            }
            Some(e) => {
                let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
                failed.get_or_insert_with(|| e.to_string());
            }
        }
        self.done();
    }
}

/// Why the broker refused a record of its own (`code` is one of the
/// refusals that concern one record, not the connection).
fn refusal(code: RDKafkaErrorCode, r: &Record) -> String {
    match (code, r.timestamp) {
        (RDKafkaErrorCode::InvalidTimestamp, Some(t)) => format!(
            "InvalidTimestamp: the topic refuses the record's timestamp {t} ({}); a broker takes times from message.timestamp.before.max.ms before its clock to message.timestamp.after.max.ms after it (Kafka 4: 1 hour ahead by default)",
            flowline_connector_api::time::format_rfc3339_ms(t)
        ),
        (RDKafkaErrorCode::InvalidTimestamp, None) => {
            "InvalidTimestamp: the topic refuses the record's timestamp".into()
        }
        (RDKafkaErrorCode::InvalidRecord, _) if r.key.is_none() => {
            "InvalidRecord: the broker failed to validate the record, which has no key (a compacted topic takes only records with one)".into()
        }
        (RDKafkaErrorCode::InvalidRecord, _) => {
            "InvalidRecord: the broker failed to validate the record".into()
        }
        _ => "MessageSizeTooLarge: the record is larger than the topic's max.message.bytes".into(),
    }
}

impl ClientContext for Deliveries {
    fn error(&self, error: KafkaError, reason: &str) {
        self.auth.error(error, reason);
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Arc<Record>;

    fn delivery(&self, result: &DeliveryResult<'_>, record: Arc<Record>) {
        self.report(result.as_ref().err().map(|(e, _)| e), record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reports_sort_into_delivered_refused_and_failed() {
        let d = Deliveries::default();
        for _ in 0..3 {
            d.sending();
        }
        let big = Record::new(vec![7u8; 10]).with_key("k");
        d.report(None, Arc::new(Record::new("a")));
        d.report(
            Some(&KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageSizeTooLarge,
            )),
            Arc::new(big.clone()),
        );
        assert_eq!(d.in_flight(), 1);
        assert_eq!(d.take_failure(), None);
        d.report(
            Some(&KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut,
            )),
            Arc::new(Record::new("c")),
        );
        assert_eq!(d.in_flight(), 0);
        let rejected = d.take_rejected();
        assert_eq!(rejected.len(), 1);
        assert_eq!(
            rejected[0].record, big,
            "the refused record comes back whole"
        );
        assert!(d.take_rejected().is_empty(), "taken once");
        assert!(d.take_failure().unwrap().contains("timed out"));
        d.sending();
        let future = Record::new("f").with_timestamp(4_102_444_800_000);
        d.report(
            Some(&KafkaError::MessageProduction(
                RDKafkaErrorCode::InvalidTimestamp,
            )),
            Arc::new(future.clone()),
        );
        let rejected = d.take_rejected();
        assert_eq!(
            rejected[0].record, future,
            "a refused timestamp is one bad record"
        );
        assert!(
            rejected[0].reason.contains("2100-01-01T00:00:00.000Z"),
            "{}",
            rejected[0].reason
        );
        assert_eq!(d.take_failure(), None, "not a failure of the sink");
        d.sending();
        d.report(
            Some(&KafkaError::MessageProduction(
                RDKafkaErrorCode::InvalidRecord,
            )),
            Arc::new(Record::new("keyless")),
        );
        let rejected = d.take_rejected();
        assert!(
            rejected[0].reason.contains("no key"),
            "{}",
            rejected[0].reason
        );
        assert_eq!(d.take_failure(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_wakes_when_enough_deliveries_are_done() {
        let d = Arc::new(Deliveries::default());
        for _ in 0..100 {
            d.sending();
        }
        let reporter = {
            let d = d.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    d.report(None, Arc::new(Record::new(format!("{i}"))));
                }
            })
        };
        let mut warned = 0;
        tokio::time::timeout(
            Duration::from_secs(30),
            d.wait_until(0, Duration::from_secs(60), |_| warned += 1),
        )
        .await
        .expect("woken, not stuck");
        assert_eq!(d.in_flight(), 0);
        assert_eq!(warned, 0);
        reporter.join().unwrap();
    }

    #[tokio::test]
    async fn a_failure_ends_the_wait_and_a_stall_warns() {
        let d = Deliveries::default();
        d.sending();
        d.sending();
        let mut warned = Vec::new();
        let wait = d.wait_until(0, Duration::from_millis(20), |n| warned.push(n));
        assert!(
            tokio::time::timeout(Duration::from_millis(100), wait)
                .await
                .is_err(),
            "nothing reported: still waiting"
        );
        assert!(
            warned.len() >= 2 && warned.iter().all(|n| *n == 2),
            "{warned:?}"
        );
        d.report(
            Some(&KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut,
            )),
            Arc::new(Record::new("x")),
        );
        tokio::time::timeout(
            Duration::from_secs(10),
            d.wait_until(0, Duration::from_secs(60), |_| {}),
        )
        .await
        .expect("a failure ends the wait with one still in flight");
        assert_eq!(d.in_flight(), 1);
    }
}
