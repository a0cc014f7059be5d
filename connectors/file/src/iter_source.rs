//! [`IterSource`]: records from an iterator (the demo's generator).

use flowline_connector_api::{
    ConnectorError, PartitionId, Record, Source, SourceEvent, SourcePosition,
};

/// Records from an iterator (a generator), one partition `gen-0`; bounded
/// when the iterator ends. Seeking forward skips; a deterministic generator
/// restarted from its seed can therefore resume from a checkpoint.
pub struct IterSource {
    it: Box<dyn Iterator<Item = Record> + Send>,
    partition: PartitionId,
    next: u64,
    batch_size: usize,
}

impl std::fmt::Debug for IterSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IterSource")
            .field("next", &self.next)
            .finish()
    }
}

impl IterSource {
    /// A source over `it`.
    pub fn new(it: impl Iterator<Item = Record> + Send + 'static) -> Self {
        Self {
            it: Box::new(it),
            partition: PartitionId::new("gen-0"),
            next: 0,
            batch_size: 512,
        }
    }

    /// Sets the batch size.
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }
}

impl Source for IterSource {
    async fn next(&mut self) -> Result<SourceEvent, ConnectorError> {
        let mut batch = Vec::with_capacity(self.batch_size);
        for r in self.it.by_ref().take(self.batch_size) {
            batch.push(r.at(self.partition.clone(), self.next));
            self.next += 1;
        }
        if batch.is_empty() {
            return Ok(SourceEvent::End);
        }
        Ok(SourceEvent::Records(batch))
    }

    async fn seek(&mut self, position: &SourcePosition) -> Result<(), ConnectorError> {
        if let Some(o) = position.get(&self.partition) {
            if o < self.next {
                return Err(ConnectorError::permanent(format!(
                    "iterator source cannot seek back from {} to {o}: restart it from its seed",
                    self.next
                )));
            }
            for _ in self.it.by_ref().take((o - self.next) as usize) {}
            self.next = o;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn iter_source_seeks_forward_only() {
        let mut s = IterSource::new((0..10).map(|i| Record::new(i.to_string())));
        s.seek(&SourcePosition::new().with(PartitionId::new("gen-0"), 7))
            .await
            .unwrap();
        let SourceEvent::Records(b) = s.next().await.unwrap() else {
            panic!()
        };
        assert_eq!(
            b.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![7, 8, 9]
        );
        assert!(s
            .seek(&SourcePosition::new().with(PartitionId::new("gen-0"), 1))
            .await
            .is_err());
    }
}
