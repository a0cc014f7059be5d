//! Sink tasks: each sink runs in its own task behind a bounded channel, with
//! bounded retries of retryable errors and rejected records dead-lettered.

use std::sync::Arc;

use flowline_connector_api::{BoxSink, ConnectorError, Record};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::job::{DeadLetterFormat, RetryPolicy};
use crate::metrics::Metrics;
use crate::operator::{DeadLetter, DeadLetterKind};
use crate::RuntimeError;

pub(crate) enum SinkMsg {
    Write(Vec<Record>),
    /// Flush, then snapshot; answers with the snapshot.
    Checkpoint(oneshot::Sender<Result<Option<Vec<u8>>, RuntimeError>>),
    Close(oneshot::Sender<Result<(), RuntimeError>>),
    /// `Sink::rewind` with this state and these partitions, before the
    /// records it is about.
    Rewind(
        Option<Vec<u8>>,
        Vec<flowline_connector_api::PartitionId>,
        oneshot::Sender<Result<(), RuntimeError>>,
    ),
}

/// Where a sink sends the records it rejects.
#[derive(Clone)]
pub(crate) struct Rejects {
    pub(crate) tx: Option<mpsc::Sender<SinkMsg>>,
    pub(crate) format: DeadLetterFormat,
}

pub(crate) struct SinkTask {
    pub(crate) name: String,
    pub(crate) tx: mpsc::Sender<SinkMsg>,
    pub(crate) join: JoinHandle<Result<(), RuntimeError>>,
}

pub(crate) struct SinkSpec {
    pub(crate) name: String,
    pub(crate) stage: &'static str,
    /// Index in the metrics' sink list, if counted there.
    pub(crate) metric_idx: Option<usize>,
    pub(crate) capacity: usize,
    pub(crate) retry: RetryPolicy,
    /// Set for the dead-letter sink: records it refuses are written again
    /// once, cut down (see `shrink`), in this format.
    pub(crate) shrink: Option<DeadLetterFormat>,
    /// Its busy time and failures, for the operations view.
    pub(crate) task: Arc<crate::component::Component>,
}

impl SinkTask {
    pub(crate) fn spawn(
        spec: SinkSpec,
        sink: BoxSink,
        rejects: Rejects,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(spec.capacity);
        let name = spec.name.clone();
        let join = tokio::spawn(run(spec, sink, rx, rejects, metrics));
        Self { name, tx, join }
    }

    /// Sends, or returns the error the task ended with.
    pub(crate) async fn send(&mut self, msg: SinkMsg) -> Result<(), RuntimeError> {
        if self.tx.send(msg).await.is_ok() {
            return Ok(());
        }
        Err(self.failure().await)
    }

    pub(crate) async fn failure(&mut self) -> RuntimeError {
        match (&mut self.join).await {
            Ok(Err(e)) => e,
            Ok(Ok(())) => RuntimeError::Internal(format!("sink `{}` stopped early", self.name)),
            Err(e) => RuntimeError::Internal(format!("sink `{}` task: {e}", self.name)),
        }
    }

    pub(crate) async fn checkpoint(&mut self) -> Result<Option<Vec<u8>>, RuntimeError> {
        let (tx, rx) = oneshot::channel();
        self.send(SinkMsg::Checkpoint(tx)).await?;
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(self.failure().await),
        }
    }

    pub(crate) async fn rewind(
        &mut self,
        state: Option<Vec<u8>>,
        partitions: Vec<flowline_connector_api::PartitionId>,
    ) -> Result<(), RuntimeError> {
        let (tx, rx) = oneshot::channel();
        self.send(SinkMsg::Rewind(state, partitions, tx)).await?;
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(self.failure().await),
        }
    }

    pub(crate) async fn close(mut self) -> Result<(), RuntimeError> {
        let (tx, rx) = oneshot::channel();
        self.send(SinkMsg::Close(tx)).await?;
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(self.failure().await),
        }
    }
}

async fn with_retries<T, F>(
    spec: &SinkSpec,
    metrics: &Metrics,
    what: &str,
    sink: &mut BoxSink,
    mut op: F,
) -> Result<T, ConnectorError>
where
    F: for<'a> FnMut(
        &'a mut BoxSink,
    ) -> flowline_connector_api::BoxFuture<'a, Result<T, ConnectorError>>,
{
    let mut backoff = spec.retry.backoff(0x9E37_79B9_7F4A_7C15);
    let mut attempt = 0;
    let task = &spec.task;
    let t0 = std::time::Instant::now();
    task.call_started();
    let r = loop {
        match op(sink).await {
            Err(e) if e.is_retryable() && attempt + 1 < spec.retry.max_attempts => {
                task.failing(&e.to_string());
                let wait = backoff.delay(attempt);
                attempt += 1;
                metrics
                    .sink_retries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(sink = %spec.name, attempt, wait_ms = wait.as_millis() as u64, error = %e, "{what} failed, retrying");
                tokio::time::sleep(wait).await;
            }
            r => break r,
        }
    };
    task.call_ended();
    task.busy(t0.elapsed());
    if !matches!(&r, Err(e) if e.is_retryable()) {
        task.recovered();
    }
    r
}

fn fail(spec: &SinkSpec, source: ConnectorError) -> RuntimeError {
    RuntimeError::Connector {
        stage: spec.stage,
        name: spec.name.clone(),
        source: Box::new(source),
    }
}

async fn run(
    spec: SinkSpec,
    mut sink: BoxSink,
    mut rx: mpsc::Receiver<SinkMsg>,
    rejects: Rejects,
    metrics: Arc<Metrics>,
) -> Result<(), RuntimeError> {
    if let Some(read) = sink.counters_dyn() {
        metrics.set_sink_counters(&spec.name, read);
    }
    while let Some(msg) = rx.recv().await {
        match msg {
            SinkMsg::Write(batch) => {
                metrics.ops().tapped(&spec.name, &batch);
                let n = batch.len() as u64;
                let res = with_retries(&spec, &metrics, "write", &mut sink, |s| {
                    s.write_dyn(batch.clone())
                })
                .await;
                match res {
                    Ok(()) => {
                        if let Some(i) = spec.metric_idx {
                            metrics.sink_out(i, n)
                        }
                    }
                    Err(ConnectorError::BadRecords(rejected)) if spec.shrink.is_some() => {
                        if let Err(e) = resend_shrunk(&spec, &mut sink, rejected, &metrics).await {
                            return Err(fail(&spec, e));
                        }
                    }
                    Err(ConnectorError::BadRecords(rejected)) => {
                        if let Some(i) = spec.metric_idx {
                            metrics.sink_out(i, n.saturating_sub(rejected.len() as u64))
                        }
                        let letters = rejected_letters(&spec.name, rejected);
                        dead_letter(&spec.name, letters, &rejects, &metrics).await;
                    }
                    Err(e) => return Err(fail(&spec, e)),
                }
            }
            SinkMsg::Checkpoint(reply) => {
                let r = async {
                    flush_dead_lettering(&spec, &mut sink, &rejects, &metrics).await?;
                    with_retries(&spec, &metrics, "snapshot", &mut sink, |s| s.snapshot_dyn()).await
                }
                .await;
                // A server away longer than the retries fails this
                // checkpoint only (the driver skips it); the sink lives on.
                let fatal = matches!(&r, Err(e) if !e.is_retryable());
                let _ = reply.send(r.map_err(|e| fail(&spec, e)));
                if fatal {
                    return Ok(());
                }
            }
            SinkMsg::Rewind(state, partitions, reply) => {
                let r = with_retries(&spec, &metrics, "rewind", &mut sink, |s| {
                    s.rewind_dyn(state.clone(), partitions.clone())
                })
                .await;
                let failed = r.is_err();
                let _ = reply.send(r.map_err(|e| fail(&spec, e)));
                if failed {
                    return Ok(());
                }
            }
            SinkMsg::Close(reply) => {
                let r = async {
                    flush_dead_lettering(&spec, &mut sink, &rejects, &metrics).await?;
                    sink.close_dyn().await
                }
                .await
                .map_err(|e| fail(&spec, e));
                let _ = reply.send(r);
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Records a sink rejected, as dead letters of that sink.
fn rejected_letters(
    sink: &str,
    rejected: Vec<flowline_connector_api::Rejected>,
) -> Vec<DeadLetter> {
    rejected
        .into_iter()
        .map(|r| DeadLetter {
            record: r.record,
            kind: DeadLetterKind::Rejected,
            reason: r.reason,
            stage: sink.to_string(),
        })
        .collect()
}

/// Flushes with retries; records the sink rejects while flushing go to the
/// dead-letter sink (flushed after this one), then the flush is complete.
async fn flush_dead_lettering(
    spec: &SinkSpec,
    sink: &mut BoxSink,
    rejects: &Rejects,
    metrics: &Metrics,
) -> Result<(), ConnectorError> {
    let t0 = std::time::Instant::now();
    loop {
        let r = with_retries(spec, metrics, "flush", sink, |s| s.flush_dyn()).await;
        metrics.observe_flush(&spec.name, t0.elapsed());
        match r {
            Err(ConnectorError::BadRecords(rejected)) if spec.shrink.is_some() => {
                resend_shrunk(spec, sink, rejected, metrics).await?;
            }
            Err(ConnectorError::BadRecords(rejected)) => {
                let letters = rejected_letters(&spec.name, rejected);
                dead_letter(&spec.name, letters, rejects, metrics).await;
            }
            other => return other,
        }
    }
}

/// Dead letters the dead-letter sink refused, written again: a letter with
/// a timestamp or without a key first whole, without the timestamp and
/// keyed by its id; otherwise, or refused again, cut down with a marker
/// (the payload to 16 KiB, the reason kept). One refused once cut down is
/// logged as lost (there is nowhere left to put it).
async fn resend_shrunk(
    spec: &SinkSpec,
    sink: &mut BoxSink,
    rejected: Vec<flowline_connector_api::Rejected>,
    metrics: &Metrics,
) -> Result<(), ConnectorError> {
    let format = spec.shrink.unwrap_or(DeadLetterFormat::Raw);
    let mut lost: Vec<String> = Vec::new();
    let mut refused = rejected;
    // Each round rewrites what was refused (`shrink::again`: without the
    // timestamp, keyed by the id, then cut down); one refused once cut down
    // is lost. So at most three rounds.
    loop {
        let (gone, fresh): (Vec<_>, Vec<_>) = refused
            .into_iter()
            .partition(|r| crate::shrink::is_shrunk(&r.record, format));
        lost.extend(gone.into_iter().map(|r| r.reason));
        if fresh.is_empty() {
            break;
        }
        tracing::warn!(sink = %spec.name, count = fresh.len(), reason = %fresh[0].reason, "the dead-letter sink refused records; writing them again whole without their timestamp (header flowline.record.timestamp) and keyed by their id, or cut to 16 KiB (header flowline.payload.truncated)");
        let again: Vec<Record> = fresh
            .into_iter()
            .map(|r| crate::shrink::again(r, format))
            .collect();
        match with_retries(spec, metrics, "write", sink, |s| s.write_dyn(again.clone())).await {
            Ok(()) => break,
            Err(ConnectorError::BadRecords(r)) => refused = r,
            Err(e) => return Err(e),
        }
    }
    if let Some(first) = lost.first() {
        metrics
            .dead_letters_lost
            .fetch_add(lost.len() as u64, std::sync::atomic::Ordering::Relaxed);
        tracing::error!(sink = %spec.name, count = lost.len(), reason = %first, "the dead-letter sink refused records even cut down: they are lost (counted in flowline_dead_letters_lost_total)");
    }
    Ok(())
}

/// Sends an outbox's dead letters and late records to their sinks (the
/// driver's and every worker's route).
pub(crate) async fn route_letters(
    outbox: &mut crate::operator::Outbox,
    rejects: &Rejects,
    late_to: &Rejects,
    metrics: &Metrics,
) {
    let dead = std::mem::take(&mut outbox.dead);
    dead_letter("job", dead, rejects, metrics).await;
    let late = std::mem::take(&mut outbox.late);
    if !late.is_empty() {
        let n = late.len() as u64;
        metrics
            .late_records
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        metrics.ops().dead_letters_sent(&late);
        match &late_to.tx {
            Some(tx) => {
                let batch = late.iter().map(|l| encode(l, late_to.format)).collect();
                let _ = tx.send(SinkMsg::Write(batch)).await;
            }
            None => metrics.late_warning.note(n, &late[0].reason),
        }
    }
}

/// Late events with no late sink count in no window and are written
/// nowhere: a warning says so, with how many, at most once a minute per
/// job (the first at once), so the loss is in the logs and not only in
/// `flowline_late_records_total`.
#[derive(Debug, Default)]
pub(crate) struct LateWarning {
    /// Late events not yet in a warning.
    since: std::sync::atomic::AtomicU64,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl LateWarning {
    fn note(&self, n: u64, reason: &str) {
        use std::sync::atomic::Ordering::Relaxed;
        let since = self.since.fetch_add(n, Relaxed) + n;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(60)) {
            return;
        }
        *last = Some(std::time::Instant::now());
        self.since.fetch_sub(since, Relaxed);
        tracing::warn!(count = since, last_reason = %reason, "late events and no late sink configured: counted in no window and written nowhere (flowline_late_records_total counts them). Fix: add a [late] output to keep them, or raise allowed_lateness / out_of_orderness to count them");
    }
}

/// Encodes dead letters and hands them to the dead-letter sink; without one,
/// logs them (they are already counted).
pub(crate) async fn dead_letter(
    stage: &str,
    letters: Vec<DeadLetter>,
    to: &Rejects,
    metrics: &Metrics,
) {
    if letters.is_empty() {
        return;
    }
    let n = letters.len() as u64;
    metrics
        .bad_records
        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    metrics.ops().dead_letters_sent(&letters);
    match &to.tx {
        Some(tx) => {
            let batch = letters.iter().map(|l| encode(l, to.format)).collect();
            if tx.send(SinkMsg::Write(batch)).await.is_ok() {
                metrics
                    .dead_lettered
                    .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            } else {
                tracing::error!(
                    stage,
                    count = n,
                    "dead-letter sink has stopped; records counted as bad but not written"
                );
            }
        }
        None => {
            let first = &letters[0];
            tracing::warn!(stage, count = n, kind = first.kind.as_str(), reason = %first.reason, "bad records and no dead-letter sink configured: counted in flowline_bad_records_total, not written");
        }
    }
}

/// Header (raw format; `id` in the envelope) holding a dead letter's
/// deterministic id: the same bad record gives the same id in every replay,
/// so a sink can write it once (the Kafka sink's `dedupe_header`).
pub const DEAD_LETTER_ID: &str = "flowline.dead_letter.id";

/// SHA-256 (first 16 bytes, hex) of what identifies a dead letter: kind,
/// stage, source partition and offset, key and payload.
fn letter_id(l: &DeadLetter, partition: &str) -> String {
    use sha2::Digest;
    let r = &l.record;
    let mut h = sha2::Sha256::new();
    for part in [
        l.kind.as_str().as_bytes(),
        l.stage.as_bytes(),
        partition.as_bytes(),
        r.offset.to_string().as_bytes(),
        r.key.as_deref().unwrap_or_default(),
        &r.payload,
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A dead letter as a record, in the chosen format.
pub fn encode(l: &DeadLetter, format: DeadLetterFormat) -> Record {
    let r = &l.record;
    let partition = r
        .partition
        .as_ref()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    match format {
        DeadLetterFormat::Raw => {
            let mut out = Record::new(r.payload.clone())
                .with_header(DEAD_LETTER_ID, letter_id(l, &partition))
                .with_header("flowline.error.kind", l.kind.as_str())
                .with_header("flowline.error.reason", l.reason.as_bytes())
                .with_header("flowline.error.stage", l.stage.as_bytes())
                .with_header("flowline.source.partition", partition.as_bytes())
                .with_header("flowline.source.offset", r.offset.to_string());
            out.key = r.key.clone();
            out.timestamp = r.timestamp;
            out
        }
        DeadLetterFormat::Envelope => {
            let mut v = serde_json::json!({
                "id": letter_id(l, &partition),
                "kind": l.kind.as_str(),
                "reason": l.reason,
                "stage": l.stage,
                "partition": partition,
                "offset": r.offset,
                "key": r.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
                "payload": String::from_utf8_lossy(&r.payload),
            });
            // JSON text holds only UTF-8: bytes that are not keep their
            // exact form beside the readable one, so nothing is lost.
            for (field, bytes) in [
                ("key_base64", r.key.as_deref()),
                ("payload_base64", Some(&r.payload[..])),
            ] {
                if let Some(b) = bytes.filter(|b| std::str::from_utf8(b).is_err()) {
                    use base64::Engine;
                    v[field] = base64::engine::general_purpose::STANDARD.encode(b).into();
                }
            }
            Record::new(v.to_string())
        }
    }
}

/// Turns an element into the record a sink writes.
pub trait IntoRecord {
    /// The record.
    fn to_record(&self) -> Record;
}

impl IntoRecord for Record {
    fn to_record(&self) -> Record {
        self.clone()
    }
}

impl IntoRecord for String {
    fn to_record(&self) -> Record {
        Record::new(self.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowline_connector_api::PartitionId;

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let p = RetryPolicy::default();
        let mut b = p.backoff(42);
        let waits: Vec<std::time::Duration> = (0..12).map(|a| b.delay(a)).collect();
        assert!(waits.iter().all(|w| *w <= p.max_backoff));
        assert!(waits[0] <= p.initial_backoff);
        assert!(waits.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn dead_letter_formats_carry_the_reason_and_position() {
        let l = DeadLetter {
            record: Record::new("{bad")
                .with_key("k")
                .at(PartitionId::new("metrics-2"), 17),
            kind: DeadLetterKind::BadRecord,
            reason: "EOF while parsing".into(),
            stage: "decode".into(),
        };
        let raw = encode(&l, DeadLetterFormat::Raw);
        assert_eq!(raw.payload, b"{bad");
        assert_eq!(
            raw.header("flowline.error.reason"),
            Some(&b"EOF while parsing"[..])
        );
        assert_eq!(
            raw.header("flowline.source.partition"),
            Some(&b"metrics-2"[..])
        );
        assert_eq!(raw.header("flowline.source.offset"), Some(&b"17"[..]));
        let env = encode(&l, DeadLetterFormat::Envelope);
        let v: serde_json::Value = serde_json::from_slice(&env.payload).unwrap();
        assert_eq!(v["payload"], "{bad");
        assert_eq!(v["kind"], "bad_record");
        assert_eq!(v["offset"], 17);
        assert!(v.get("payload_base64").is_none() && v.get("key_base64").is_none());
    }

    #[test]
    fn an_envelope_keeps_bytes_that_are_not_utf8_exactly() {
        use base64::Engine;
        let l = DeadLetter {
            record: Record::new(&b"\xff\xfe{}"[..])
                .with_key(&b"k\xc3"[..])
                .at(PartitionId::new("f"), 2),
            kind: DeadLetterKind::BadRecord,
            reason: "the payload is not UTF-8".into(),
            stage: "decode".into(),
        };
        let env = encode(&l, DeadLetterFormat::Envelope);
        let v: serde_json::Value = serde_json::from_slice(&env.payload).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let back = |f: &str| b64.decode(v[f].as_str().unwrap()).unwrap();
        assert_eq!(back("payload_base64"), b"\xff\xfe{}");
        assert_eq!(back("key_base64"), b"k\xc3");
        // The readable forms stay, with U+FFFD where a byte was not text.
        assert_eq!(v["payload"], "\u{fffd}\u{fffd}{}");
    }
}
