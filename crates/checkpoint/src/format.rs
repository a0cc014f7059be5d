//! What a checkpoint holds, and its bytes: a magic, a CRC-32 of the body,
//! the postcard body. A checkpoint whose bytes changed (a bit flip, a
//! truncated copy) is refused by [`Checkpoint::decode`].

use std::collections::BTreeMap;

use flowline_connector_api::PartitionId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Format 1: magic, postcard body (read for compatibility, no checksum).
const MAGIC_V1: &[u8; 8] = b"FLCKPT01";
/// Format 2: magic, CRC-32 of the body (little endian), postcard body.
const MAGIC: &[u8; 8] = b"FLCKPT02";

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
        }
    }

    /// Encodes for storage, with a checksum of the body.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        encode_framed(MAGIC, self)
    }

    /// Decodes what `encode` wrote, refusing it when the checksum does not
    /// match its body.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        decode_framed(MAGIC, MAGIC_V1, bytes, "checkpoint", "")
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

    #[test]
    fn format_1_checkpoints_still_restore() {
        let mut v1 = MAGIC_V1.to_vec();
        v1.extend(postcard::to_stdvec(&cp(7)).unwrap());
        assert_eq!(Checkpoint::decode(&v1).unwrap(), cp(7));
    }
}
