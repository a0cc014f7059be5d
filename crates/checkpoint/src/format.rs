//! What a checkpoint holds, and its bytes: a magic, a CRC-32 of the body,
//! the postcard body. A checkpoint whose bytes changed (a bit flip, a
//! truncated copy) is refused by [`Checkpoint::decode`].

use std::collections::BTreeMap;

use flowline_connector_api::PartitionId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Format 1: magic, postcard body (read for compatibility, no checksum).
const MAGIC_V1: &[u8; 8] = b"FLCKPT01";
/// Format 2: magic, CRC-32 of the body (little endian), postcard body
/// (read for compatibility: a checkpoint without key groups).
const MAGIC_V2: &[u8; 8] = b"FLCKPT02";
/// Format 3: as format 2, the body with key groups. Several bits away from
/// the older magics, so that no single flipped bit turns a format 3 file
/// into a readable older one.
const MAGIC: &[u8; 8] = b"FLCKP3KG";

/// One partition's part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PartitionSnapshot {
    /// The offset of the next record to read.
    pub next_offset: u64,
    /// The highest event time seen (the watermark derives from it).
    pub max_ts: i64,
    /// Each operator's state, in chain order.
    pub operators: Vec<Vec<u8>>,
}

/// A consistent snapshot of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Checkpoint {
    /// Increases by one per checkpoint of a job.
    pub id: u64,
    /// The job graph it was taken from; a different graph refuses it.
    pub graph: String,
    /// When it was taken, ms since the epoch.
    pub created_ms: i64,
    /// Per source partition.
    pub partitions: BTreeMap<PartitionId, PartitionSnapshot>,
    /// Per sink name, what its `snapshot` returned.
    pub sinks: BTreeMap<String, Option<Vec<u8>>>,
    /// Keyed state behind an exchange, per key group: each operator's state
    /// in chain order. Empty for a job whose state lives with its source
    /// partitions.
    pub key_groups: BTreeMap<u16, Vec<Vec<u8>>>,
    /// The watermark the keyed operators behind the exchange had reached
    /// (`i64::MIN` for none): windows up to it have fired, so after a
    /// restore an event behind it is late, never the start of a window
    /// again.
    pub exchange_watermark: i64,
    /// Per partition, the sinks' states of the checkpoint its snapshot was
    /// taken in, where a store keeps partitions of several checkpoints (the
    /// Kafka store, whose processes checkpoint each their own); empty
    /// otherwise. The runtime hands them to the sinks when a partition
    /// moves here from another process (`Sink::rewind`). Not encoded: a
    /// store that keeps them keeps them its own way.
    #[serde(skip)]
    pub partition_sinks: BTreeMap<PartitionId, BTreeMap<String, Option<Vec<u8>>>>,
}

/// Format 1 and 2 bodies: a checkpoint without key groups.
#[derive(Deserialize)]
struct CheckpointV2 {
    id: u64,
    graph: String,
    created_ms: i64,
    partitions: BTreeMap<PartitionId, PartitionSnapshot>,
    sinks: BTreeMap<String, Option<Vec<u8>>>,
}

impl From<CheckpointV2> for Checkpoint {
    fn from(c: CheckpointV2) -> Self {
        Checkpoint::new(c.id, c.graph, c.created_ms, c.partitions, c.sinks)
    }
}

impl PartitionSnapshot {
    /// A snapshot (for checkpoint stores that rebuild checkpoints).
    pub fn new(next_offset: u64, max_ts: i64, operators: Vec<Vec<u8>>) -> Self {
        Self {
            next_offset,
            max_ts,
            operators,
        }
    }
}

impl Checkpoint {
    /// A checkpoint (for checkpoint stores that rebuild checkpoints).
    pub fn new(
        id: u64,
        graph: String,
        created_ms: i64,
        partitions: BTreeMap<PartitionId, PartitionSnapshot>,
        sinks: BTreeMap<String, Option<Vec<u8>>>,
    ) -> Self {
        Self {
            id,
            graph,
            created_ms,
            partitions,
            sinks,
            key_groups: BTreeMap::new(),
            exchange_watermark: i64::MIN,
            partition_sinks: BTreeMap::new(),
        }
    }

    /// With the watermark the keyed operators behind the exchange reached.
    pub fn with_exchange_watermark(mut self, watermark: i64) -> Self {
        self.exchange_watermark = watermark;
        self
    }

    /// With the keyed state of these key groups.
    pub fn with_key_groups(mut self, key_groups: BTreeMap<u16, Vec<Vec<u8>>>) -> Self {
        self.key_groups = key_groups;
        self
    }

    /// Encodes for storage, with a checksum of the body.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        encode_framed(MAGIC, self)
    }

    /// Decodes what `encode` wrote, refusing it when the checksum does not
    /// match its body.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.starts_with(MAGIC) {
            return decode_framed(MAGIC, MAGIC_V1, bytes, "checkpoint", "");
        }
        decode_framed::<CheckpointV2>(MAGIC_V2, MAGIC_V1, bytes, "checkpoint", "").map(Into::into)
    }
}

/// `magic`, the CRC-32 of the body (little endian), the postcard body: the
/// framing of every stored checkpoint, whatever the store.
pub fn encode_framed<T: Serialize>(magic: &[u8; 8], value: &T) -> Result<Vec<u8>, String> {
    let body = postcard::to_stdvec(value).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(body.len() + 12);
    out.extend_from_slice(magic);
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend(body);
    Ok(out)
}

/// Decodes [`encode_framed`]'s bytes (or the older `magic_v1` framing,
/// without a checksum), refusing a body whose checksum does not match. The
/// errors name `what` (`checkpoint`, `checkpoint entry`); `fix` is appended
/// to the checksum error.
pub fn decode_framed<T: DeserializeOwned>(
    magic: &[u8; 8],
    magic_v1: &[u8; 8],
    bytes: &[u8],
    what: &str,
    fix: &str,
) -> Result<T, String> {
    if let Some(rest) = bytes.strip_prefix(magic.as_slice()) {
        if rest.len() < 4 {
            return Err(format!("{what} truncated (no checksum)"));
        }
        let (sum, body) = rest.split_at(4);
        let want = u32::from_le_bytes(sum.try_into().expect("4 bytes"));
        let got = crc32fast::hash(body);
        if got != want {
            return Err(format!(
                "{what} corrupt: checksum {got:08x} of its {} bytes, {want:08x} recorded{fix}",
                body.len()
            ));
        }
        return postcard::from_bytes(body).map_err(|e| e.to_string());
    }
    let body = bytes
        .strip_prefix(magic_v1.as_slice())
        .ok_or_else(|| format!("not a Flowline {what} (bad header)"))?;
    postcard::from_bytes(body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::cp;

    /// The body of formats 1 and 2 (no key groups).
    fn v2_body(c: &Checkpoint) -> Vec<u8> {
        postcard::to_stdvec(&(&c.id, &c.graph, &c.created_ms, &c.partitions, &c.sinks)).unwrap()
    }

    #[test]
    fn format_1_checkpoints_still_restore() {
        let mut v1 = MAGIC_V1.to_vec();
        v1.extend(v2_body(&cp(7)));
        assert_eq!(Checkpoint::decode(&v1).unwrap(), cp(7));
    }

    #[test]
    fn format_2_checkpoints_still_restore() {
        let body = v2_body(&cp(8));
        let mut v2 = MAGIC_V2.to_vec();
        v2.extend(crc32fast::hash(&body).to_le_bytes());
        v2.extend(body);
        assert_eq!(Checkpoint::decode(&v2).unwrap(), cp(8));
    }

    #[test]
    fn key_groups_round_trip() {
        let c = cp(9)
            .with_key_groups([(3u16, vec![vec![1, 2]]), (127, vec![])].into())
            .with_exchange_watermark(12_345);
        let back = Checkpoint::decode(&c.encode().unwrap()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.key_groups.len(), 2);
    }
}
