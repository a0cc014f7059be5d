//! In-memory test doubles: a source replaying fixed records and a sink
//! keeping what it is given, for tests of runtimes and jobs.

use std::sync::{Arc, Mutex};

use flowline_connector_api::{
    ConnectorError, PartitionId, Record, Sink, Source, SourceEvent, SourcePosition,
};

/// Replays fixed records, one or more partitions, bounded. Records are
/// moved out, not copied. Seekable forward (a restarted job builds a new
/// source over the same records and seeks to its checkpoint): the offset of
/// a record is its index in its partition.
#[derive(Debug)]
pub struct MemorySource {
    partitions: Vec<(PartitionId, std::vec::IntoIter<Record>, u64)>,
    batch_size: usize,
    turn: usize,
    /// Announce the partitions (`SourceEvent::Assigned`) before the first
    /// records, as a Kafka consumer does.
    announce: bool,
    /// Announced, not yet answered with a seek: no records until it is (as
    /// the Kafka source holds back newly assigned partitions).
    awaiting_seek: bool,
    /// Announces its partitions instead of naming them up front.
    group: bool,
}

impl MemorySource {
    /// Partitions `mem-0`, `mem-1`, … holding these payload records (their
    /// partition and offset are set here).
    pub fn new(partitions: Vec<Vec<Record>>) -> Self {
        let partitions = partitions
            .into_iter()
            .enumerate()
            .map(|(i, recs)| {
                let id = PartitionId::new(format!("mem-{i}"));
                let recs: Vec<Record> = recs
                    .into_iter()
                    .enumerate()
                    .map(|(o, r)| r.at(id.clone(), o as u64))
                    .collect();
                (id, recs.into_iter(), 0)
            })
            .collect();
        Self {
            partitions,
            batch_size: 512,
            turn: 0,
            announce: false,
            awaiting_seek: false,
            group: false,
        }
    }

    /// Announces all partitions (`SourceEvent::Assigned`) before the first
    /// records, as a Kafka consumer does on its first assignment.
    pub fn with_assignment(mut self) -> Self {
        self.announce = true;
        self.group = true;
        self
    }

    /// Sets the batch size (partitions take turns per batch).
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }
}

impl Source for MemorySource {
    /// Named up front, unless announced as a group consumer does
    /// (`with_assignment`).
    fn partitions(&self) -> Option<Vec<PartitionId>> {
        if self.group {
            return None;
        }
        Some(self.partitions.iter().map(|p| p.0.clone()).collect())
    }

    async fn next(&mut self) -> Result<SourceEvent, ConnectorError> {
        if std::mem::take(&mut self.announce) {
            self.awaiting_seek = true;
            let ids = self.partitions.iter().map(|p| p.0.clone()).collect();
            return Ok(SourceEvent::Assigned(ids));
        }
        if self.awaiting_seek {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            return Ok(SourceEvent::Idle);
        }
        let n = self.partitions.len();
        for i in 0..n {
            let idx = (self.turn + i) % n;
            let (_, recs, pos) = &mut self.partitions[idx];
            let batch: Vec<Record> = recs.by_ref().take(self.batch_size).collect();
            if !batch.is_empty() {
                *pos += batch.len() as u64;
                self.turn = idx + 1;
                return Ok(SourceEvent::Records(batch));
            }
        }
        Ok(SourceEvent::End)
    }

    async fn seek(&mut self, position: &SourcePosition) -> Result<(), ConnectorError> {
        self.awaiting_seek = false;
        for (id, recs, pos) in &mut self.partitions {
            if let Some(o) = position.get(id) {
                if o < *pos {
                    return Err(ConnectorError::permanent(format!(
                        "memory source partition {id} cannot seek back from {pos} to {o}: build a new source"
                    )));
                }
                let skip = (o - *pos) as usize;
                if skip > 0 {
                    recs.nth(skip - 1);
                }
                *pos = o;
            }
        }
        Ok(())
    }
}

/// Keeps what it is given; shares its contents through clones. Exactly once
/// across restores: it truncates to its checkpointed length.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    records: Arc<Mutex<Vec<Record>>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of what it holds.
    pub fn records(&self) -> Vec<Record> {
        self.lock().clone()
    }

    /// The payloads as strings (lossy UTF-8).
    pub fn payloads(&self) -> Vec<String> {
        self.lock()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Record>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Sink for MemorySink {
    async fn write(&mut self, batch: Vec<Record>) -> Result<(), ConnectorError> {
        self.lock().extend(batch);
        Ok(())
    }
    async fn flush(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }
    async fn snapshot(&mut self) -> Result<Option<Vec<u8>>, ConnectorError> {
        Ok(Some((self.lock().len() as u64).to_le_bytes().to_vec()))
    }
    async fn restore(&mut self, state: Option<Vec<u8>>) -> Result<(), ConnectorError> {
        let len = state
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0);
        self.lock().truncate(len as usize);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_source_round_robins_and_seeks() {
        let mut s = MemorySource::new(vec![
            vec![Record::new("a0"), Record::new("a1")],
            vec![Record::new("b0")],
        ])
        .with_batch_size(1);
        s.seek(&SourcePosition::new().with(PartitionId::new("mem-0"), 1))
            .await
            .unwrap();
        let mut got = Vec::new();
        while let SourceEvent::Records(b) = s.next().await.unwrap() {
            got.extend(
                b.into_iter()
                    .map(|r| (r.partition.unwrap().to_string(), r.offset)),
            );
        }
        assert_eq!(got, vec![("mem-0".into(), 1), ("mem-1".into(), 0)]);
    }
}
