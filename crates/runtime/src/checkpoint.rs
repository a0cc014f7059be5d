//! Checkpoints: what they hold and where they are kept.
//!
//! A checkpoint holds, per source partition, the offset after the last
//! record processed, the partition's event-time high mark, and the state of
//! every operator of its chain; plus each sink's state. State is kept per
//! partition so that one partition's state can move to another process.
//! A checkpoint is one file, written atomically (temp file, fsync, rename,
//! fsync of the directory): a crash leaves the previous one intact.
//!
//! Every encoded checkpoint carries a CRC-32 of its body. A checkpoint
//! whose bytes changed on disk (a bit flip, a truncated copy) is refused:
//! the directory store then falls back to the newest good one with a
//! warning, and fails naming the files when none is good. A job never runs
//! on state it cannot verify.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flowline_connector_api::PartitionId;
use serde::{Deserialize, Serialize};

use crate::RuntimeError;

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
        let body = postcard::to_stdvec(self).map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(body.len() + 12);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out.extend(body);
        Ok(out)
    }

    /// Decodes what `encode` wrote, refusing it when the checksum does not
    /// match its body.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) {
            if rest.len() < 4 {
                return Err("checkpoint truncated (no checksum)".into());
            }
            let (sum, body) = rest.split_at(4);
            let want = u32::from_le_bytes(sum.try_into().expect("4 bytes"));
            let got = crc32fast::hash(body);
            if got != want {
                return Err(format!(
                    "checkpoint corrupt: checksum {got:08x} of its {} bytes, {want:08x} recorded",
                    body.len()
                ));
            }
            return postcard::from_bytes(body).map_err(|e| e.to_string());
        }
        let body = bytes
            .strip_prefix(MAGIC_V1.as_slice())
            .ok_or("not a Flowline checkpoint (bad header)")?;
        postcard::from_bytes(body).map_err(|e| e.to_string())
    }
}

/// Where checkpoints are kept. The local directory is the default; a Kafka-
/// or object-store-backed one implements the same two methods.
pub trait CheckpointStore: Send + 'static {
    /// Stores a checkpoint atomically: after a crash, either it or the
    /// previous one is the latest.
    fn save(&mut self, checkpoint: &Checkpoint) -> Result<u64, RuntimeError>;
    /// The newest checkpoint, if any.
    fn latest(&mut self) -> Result<Option<Checkpoint>, RuntimeError>;
    /// Whether the store keeps each partition's newest snapshot by itself
    /// (a keyed store shared by the processes of a job). When it does, a
    /// process saves only the partitions it owns; when it does not (one file
    /// per checkpoint), the runtime carries the snapshot of a partition it
    /// gave up into its later checkpoints, so that the partition's state and
    /// offset are still there when it comes back.
    fn keeps_partitions(&self) -> bool {
        false
    }
}

/// Checkpoints as files `chk-<id>.bin` in a directory; keeps the newest few.
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    dir: PathBuf,
    retain: usize,
}

impl LocalDirStore {
    /// A store in `dir` (created if missing), keeping the 3 newest.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, RuntimeError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| io_err("create directory", &dir, e))?;
        Ok(Self { dir, retain: 3 })
    }

    fn files(&self) -> Result<Vec<(u64, PathBuf)>, RuntimeError> {
        let mut v = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(|e| io_err("list", &self.dir, e))? {
            let e = e.map_err(|e| io_err("list", &self.dir, e))?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name
                .strip_prefix("chk-")
                .and_then(|s| s.strip_suffix(".bin"))
                .and_then(|s| s.parse::<u64>().ok())
            {
                v.push((id, e.path()));
            }
        }
        v.sort();
        Ok(v)
    }
}

fn io_err(what: &'static str, path: &Path, source: std::io::Error) -> RuntimeError {
    RuntimeError::Checkpoint {
        what,
        path: path.display().to_string(),
        source,
    }
}

impl CheckpointStore for LocalDirStore {
    fn save(&mut self, cp: &Checkpoint) -> Result<u64, RuntimeError> {
        let bytes = cp
            .encode()
            .map_err(|e| RuntimeError::state_codec("<new checkpoint>", e))?;
        let path = self.dir.join(format!("chk-{:020}.bin", cp.id));
        let tmp = self.dir.join(format!(".chk-{:020}.tmp", cp.id));
        let mut f = fs::File::create(&tmp).map_err(|e| io_err("create", &tmp, e))?;
        f.write_all(&bytes).map_err(|e| io_err("write", &tmp, e))?;
        f.sync_all().map_err(|e| io_err("fsync", &tmp, e))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| io_err("rename", &path, e))?;
        if let Ok(d) = fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        let files = self.files()?;
        if files.len() > self.retain {
            for (_, old) in &files[..files.len() - self.retain] {
                let _ = fs::remove_file(old);
            }
        }
        Ok(bytes.len() as u64)
    }

    /// The newest checkpoint that verifies. A newer one that does not is
    /// skipped with a warning (the job replays from the older one: the
    /// same output, more work); none verifying is an error naming every
    /// file, never an empty start.
    fn latest(&mut self) -> Result<Option<Checkpoint>, RuntimeError> {
        let files = self.files()?;
        let mut refused = Vec::new();
        for (_, path) in files.iter().rev() {
            let bytes = fs::read(path).map_err(|e| io_err("read", path, e))?;
            match Checkpoint::decode(&bytes) {
                Ok(cp) => {
                    if !refused.is_empty() {
                        tracing::warn!(
                            checkpoint = %path.display(),
                            refused = ?refused,
                            "newer checkpoints are corrupt; restoring from an older one"
                        );
                    }
                    return Ok(Some(cp));
                }
                Err(e) => refused.push(format!("{}: {e}", path.display())),
            }
        }
        if refused.is_empty() {
            return Ok(None);
        }
        Err(RuntimeError::CheckpointCorrupt {
            store: self.dir.display().to_string(),
            details: refused.join("; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(id: u64) -> Checkpoint {
        Checkpoint {
            id,
            graph: "g".into(),
            created_ms: 1,
            partitions: [(
                PartitionId::new("p0"),
                PartitionSnapshot {
                    next_offset: id * 10,
                    max_ts: 5,
                    operators: vec![vec![1, 2]],
                },
            )]
            .into(),
            sinks: [("out".to_string(), Some(vec![9]))].into(),
        }
    }

    #[test]
    fn saves_atomically_and_keeps_newest() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = LocalDirStore::new(dir.path()).unwrap();
        assert_eq!(s.latest().unwrap(), None);
        for id in 1..=5 {
            s.save(&cp(id)).unwrap();
        }
        assert_eq!(s.latest().unwrap(), Some(cp(5)));
        assert_eq!(s.files().unwrap().len(), 3);
        // A leftover temp file from a crash mid-write is ignored.
        fs::write(dir.path().join(".chk-00000000000000000006.tmp"), b"half").unwrap();
        assert_eq!(s.latest().unwrap().unwrap().id, 5);
    }

    #[test]
    fn refuses_garbage_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("chk-00000000000000000001.bin"), b"nope").unwrap();
        let err = LocalDirStore::new(dir.path())
            .unwrap()
            .latest()
            .unwrap_err();
        assert!(
            err.to_string().contains("not a Flowline checkpoint"),
            "{err}"
        );
    }

    #[test]
    fn a_flipped_byte_anywhere_is_refused_and_the_previous_checkpoint_used() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = LocalDirStore::new(dir.path()).unwrap();
        s.save(&cp(1)).unwrap();
        s.save(&cp(2)).unwrap();
        let newest = dir.path().join(format!("chk-{:020}.bin", 2));
        let good = fs::read(&newest).unwrap();
        for i in 0..good.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = good.clone();
                bad[i] ^= bit;
                fs::write(&newest, &bad).unwrap();
                assert_eq!(
                    s.latest().unwrap(),
                    Some(cp(1)),
                    "byte {i} xor {bit:#x} was accepted"
                );
            }
        }
        // Every checkpoint corrupt: an error naming them, not an empty start.
        let first = dir.path().join(format!("chk-{:020}.bin", 1));
        let mut bad = fs::read(&first).unwrap();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        fs::write(&first, &bad).unwrap();
        let err = s.latest().unwrap_err().to_string();
        assert!(
            err.contains("verifies") && err.contains("chk-00000000000000000001.bin"),
            "{err}"
        );
    }

    #[test]
    fn format_1_checkpoints_still_restore() {
        let mut v1 = MAGIC_V1.to_vec();
        v1.extend(postcard::to_stdvec(&cp(7)).unwrap());
        assert_eq!(Checkpoint::decode(&v1).unwrap(), cp(7));
    }
}
