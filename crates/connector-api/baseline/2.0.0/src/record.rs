//! Records and source positions.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Names one partition of a source: a Kafka `topic-3`, a file path, `mem-0`.
///
/// Cheap to clone (a shared string). Stable across restarts: checkpoints are
/// keyed by it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionId(Arc<str>);

impl PartitionId {
    /// Builds a partition id from its name.
    pub fn new(name: impl AsRef<str>) -> Self {
        Self(Arc::from(name.as_ref()))
    }

    /// The partition's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for PartitionId {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

/// One message: what a source reads and what a sink writes.
///
/// `timestamp` is the event time in milliseconds since the Unix epoch, when
/// the source knows it. `partition` and `offset` say where a source read it;
/// a record built for a sink leaves them at their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Record {
    /// Message key (Kafka key, document id for a search sink), if any.
    pub key: Option<Vec<u8>>,
    /// The payload bytes.
    pub payload: Vec<u8>,
    /// Event time, ms since the Unix epoch.
    pub timestamp: Option<i64>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The partition a source read this record from.
    pub partition: Option<PartitionId>,
    /// The record's offset in its partition.
    pub offset: u64,
}

impl Record {
    /// A record holding only a payload.
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        Self {
            payload: payload.into(),
            ..Self::default()
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the event time (ms since the Unix epoch).
    pub fn with_timestamp(mut self, ts_ms: i64) -> Self {
        self.timestamp = Some(ts_ms);
        self
    }

    /// Appends a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the source position: the partition and the offset in it.
    pub fn at(mut self, partition: PartitionId, offset: u64) -> Self {
        self.partition = Some(partition);
        self.offset = offset;
        self
    }

    /// The value of the first header with this name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Where a source is: for each partition, the offset of the next record to
/// read. A checkpoint stores one; `Source::seek` takes one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SourcePosition {
    /// Next offset to read, per partition.
    pub offsets: BTreeMap<PartitionId, u64>,
}

impl SourcePosition {
    /// An empty position (every partition from its start).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets one partition's next offset.
    pub fn with(mut self, partition: PartitionId, next_offset: u64) -> Self {
        self.offsets.insert(partition, next_offset);
        self
    }

    /// The next offset of one partition, if known.
    pub fn get(&self, partition: &PartitionId) -> Option<u64> {
        self.offsets.get(partition).copied()
    }
}
