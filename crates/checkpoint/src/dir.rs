//! [`LocalDirStore`]: checkpoints as files in a directory, each written
//! atomically (temp file, fsync, rename, fsync of the directory), so a
//! crash leaves the previous one intact; the newest few are kept.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Checkpoint, CheckpointError, CheckpointStore};

/// Checkpoints as files `chk-<id>.bin` in a directory; keeps the newest few.
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    dir: PathBuf,
    retain: usize,
}

impl LocalDirStore {
    /// A store in `dir` (created if missing), keeping the 3 newest.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, CheckpointError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| io_err("create directory", &dir, e))?;
        Ok(Self { dir, retain: 3 })
    }

    fn files(&self) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
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

fn io_err(what: &'static str, path: &Path, source: std::io::Error) -> CheckpointError {
    CheckpointError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

impl CheckpointStore for LocalDirStore {
    fn save(&mut self, cp: &Checkpoint) -> Result<u64, CheckpointError> {
        let bytes = cp
            .encode()
            .map_err(|e| CheckpointError::incompatible("<new checkpoint>", e))?;
        let path = self.dir.join(format!("chk-{:020}.bin", cp.id));
        let tmp = self.dir.join(format!(".chk-{:020}.tmp", cp.id));
        let written = (|| {
            let mut f = fs::File::create(&tmp).map_err(|e| io_err("create", &tmp, e))?;
            f.write_all(&bytes).map_err(|e| io_err("write", &tmp, e))?;
            f.sync_all().map_err(|e| io_err("fsync", &tmp, e))?;
            drop(f);
            fs::rename(&tmp, &path).map_err(|e| io_err("rename", &path, e))
        })();
        if written.is_err() {
            // A part written to a full disk would hold the space the next
            // attempt (or anything else on that disk) needs.
            let _ = fs::remove_file(&tmp);
        }
        written?;
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
    fn latest(&mut self) -> Result<Option<Checkpoint>, CheckpointError> {
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
        Err(CheckpointError::Corrupt {
            store: self.dir.display().to_string(),
            details: refused.join("; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::cp;

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
    fn a_failed_write_leaves_no_part_behind() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = LocalDirStore::new(dir.path()).unwrap();
        s.save(&cp(1)).unwrap();
        // The rename fails: a directory holds the checkpoint's name.
        fs::create_dir(dir.path().join(format!("chk-{:020}.bin", 2))).unwrap();
        let e = s.save(&cp(2)).unwrap_err();
        assert!(e.to_string().contains("rename"), "{e}");
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
        fs::remove_dir(dir.path().join(format!("chk-{:020}.bin", 2))).unwrap();
        assert_eq!(s.latest().unwrap(), Some(cp(1)));
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
}
