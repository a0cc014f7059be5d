//! NDJSON file source.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use flowline_connector_api::{
    ConfigField, ConnectorDescriptor, ConnectorError, ConnectorKind, PartitionId, Record, Rejected,
    Source, SourceEvent, SourceFactory, SourcePosition,
};
use serde::Deserialize;

use crate::io_error;

/// `[source] type = "file"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// The NDJSON file.
    pub path: PathBuf,
    /// Lines per batch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// The longest line read as a record, in bytes; a longer one is a bad
    /// record holding its first 1024 bytes.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: usize,
}

impl FileSourceConfig {
    /// The defaults for the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            batch_size: default_batch(),
            max_line_bytes: default_max_line(),
        }
    }
}

/// The largest `batch_size`: a batch is held in memory at once.
pub const MAX_BATCH: usize = 1_000_000;

/// The largest `max_line_bytes`.
pub const MAX_LINE: usize = 1 << 30;

/// What a dead letter keeps of a line longer than `max_line_bytes`.
pub const KEPT_OF_LONG_LINE: usize = 1024;

/// A batch ends once its lines hold this many bytes, whatever
/// `batch_size` says, so a batch of long lines stays small.
const BATCH_BYTES: usize = 8 << 20;

fn default_batch() -> usize {
    1024
}

fn default_max_line() -> usize {
    16 << 20
}

/// Reads a file line by line; one partition named after the path. Empty
/// lines are skipped (they keep their line number). A line is read up to
/// `max_line_bytes`: a longer one (a file with no newlines, a dump pasted
/// into one line) would otherwise be held whole, and a job that runs out
/// of memory on it does so again at every restart. It becomes a bad
/// record with its first bytes, its line number and the reason, and the
/// rest of it is skipped unread into memory.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    partition: PartitionId,
    reader: Option<BufReader<File>>,
    line: u64,
    skip_to: u64,
    batch_size: usize,
    max_line: usize,
    /// A long line found after some records of a batch: handed on by the
    /// next call, after them.
    long: Option<Rejected>,
}

impl FileSource {
    /// What `open` checks without the file system (`validate --offline`).
    fn check_settings(config: &FileSourceConfig) -> Result<(), ConnectorError> {
        in_range(
            "batch_size",
            config.batch_size,
            MAX_BATCH,
            "lines per batch (default 1024)",
        )?;
        in_range(
            "max_line_bytes",
            config.max_line_bytes,
            MAX_LINE,
            "(default 16777216)",
        )
    }

    /// Opens the file; fails now when it cannot be read.
    pub fn open(config: FileSourceConfig) -> Result<Self, ConnectorError> {
        Self::check_settings(&config)?;
        let f = File::open(&config.path).map_err(|e| {
            ConnectorError::config(
                "file",
                format!("cannot open source file `{}`: {e}. Fix: set [source] path to an existing NDJSON file", config.path.display()),
            )
        })?;
        let reader = past_bom(f, &config.path)?;
        Ok(Self {
            partition: PartitionId::new(config.path.display().to_string()),
            path: config.path,
            reader: Some(reader),
            line: 0,
            skip_to: 0,
            batch_size: config.batch_size,
            max_line: config.max_line_bytes,
            long: None,
        })
    }

    /// The partition this source reads.
    pub fn partition(&self) -> &PartitionId {
        &self.partition
    }

    /// The file ended before the line its checkpoint names: it is not the
    /// file the checkpoint read (replaced, or cut back), and would
    /// otherwise be taken for read to its end, its lines never read. It is
    /// read again from its first line, as new records, and this bad record
    /// (no payload, at the checkpointed line) says so.
    fn read_again(&mut self) -> Result<Rejected, ConnectorError> {
        let (lines, expected) = (self.line, self.skip_to);
        let f = File::open(&self.path).map_err(|e| io_error("reopen", &self.path, e))?;
        self.reader = Some(past_bom(f, &self.path)?);
        self.line = 0;
        self.skip_to = 0;
        Ok(Rejected::new(
            Record::new(Vec::new()).at(self.partition.clone(), expected),
            format!(
                "`{}` has {lines} lines, fewer than the {expected} its checkpoint read: the file was replaced or cut back. It is read again from its first line, as new records; the windows already written keep what the job read before. Fix: nothing, if the file was replaced on purpose; to give a bounded job more records, append them to its file",
                self.path.display()
            ),
        ))
    }
}

impl Source for FileSource {
    async fn next(&mut self) -> Result<SourceEvent, ConnectorError> {
        if let Some(long) = self.long.take() {
            return Err(ConnectorError::BadRecords(vec![long]));
        }
        let Some(reader) = self.reader.as_mut() else {
            return Ok(SourceEvent::End);
        };
        let mut batch = Vec::with_capacity(self.batch_size.min(4096));
        let mut bytes = 0;
        let mut buf = Vec::with_capacity(256);
        while batch.len() < self.batch_size && bytes < BATCH_BYTES {
            buf.clear();
            // One byte past the limit tells a line of exactly the limit
            // (and its newline) from a longer one.
            let n = std::io::Read::take(&mut *reader, self.max_line as u64 + 2)
                .read_until(b'\n', &mut buf)
                .map_err(|e| io_error("read", &self.path, e))?;
            if n == 0 {
                if self.line < self.skip_to {
                    return Err(ConnectorError::BadRecords(vec![self.read_again()?]));
                }
                self.reader = None;
                break;
            }
            let line = self.line;
            self.line += 1;
            let ended = buf.last() == Some(&b'\n');
            while matches!(buf.last(), Some(b'\n' | b'\r')) {
                buf.pop();
            }
            if buf.len() > self.max_line {
                if !ended {
                    skip_line(reader).map_err(|e| io_error("read", &self.path, e))?;
                }
                if line < self.skip_to {
                    continue;
                }
                buf.truncate(KEPT_OF_LONG_LINE);
                let r = Record::new(buf.as_slice()).at(self.partition.clone(), line);
                let long = Rejected::new(
                    r,
                    format!(
                        "line {} of `{}` is longer than [source] max_line_bytes ({} bytes); its first {KEPT_OF_LONG_LINE} bytes are kept here. Fix: raise max_line_bytes (up to {MAX_LINE}), or split the line",
                        line + 1,
                        self.path.display(),
                        self.max_line
                    ),
                );
                if batch.is_empty() {
                    return Err(ConnectorError::BadRecords(vec![long]));
                }
                self.long = Some(long);
                break;
            }
            if line < self.skip_to || buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            bytes += buf.len();
            batch.push(Record::new(buf.as_slice()).at(self.partition.clone(), line));
        }
        if batch.is_empty() {
            return Ok(SourceEvent::End);
        }
        Ok(SourceEvent::Records(batch))
    }

    async fn seek(&mut self, position: &SourcePosition) -> Result<(), ConnectorError> {
        if let Some(next) = position.get(&self.partition) {
            if next < self.line {
                let f = File::open(&self.path).map_err(|e| io_error("reopen", &self.path, e))?;
                self.reader = Some(past_bom(f, &self.path)?);
                self.line = 0;
            }
            self.skip_to = next;
        }
        Ok(())
    }
}

/// Refuses a `[source] field` outside 1 to `max`, naming the range and
/// `what` it counts.
fn in_range(field: &str, value: usize, max: usize, what: &str) -> Result<(), ConnectorError> {
    if (1..=max).contains(&value) {
        return Ok(());
    }
    Err(ConnectorError::config(
        "file",
        format!("[source] {field} = {value} is out of range. Fix: use 1 to {max} {what}"),
    ))
}

/// The UTF-8 byte order mark some editors and tools write at the start of
/// a text file (Notepad, PowerShell's `Out-File -Encoding utf8`).
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A reader of `f` past a UTF-8 byte order mark at its start (RFC 8259
/// lets a parser ignore one; kept, it would make the first line a bad
/// record). A UTF-16 or UTF-32 mark is refused: each line would be a bad
/// record, so the file is named with the fix instead.
fn past_bom(f: File, path: &std::path::Path) -> Result<BufReader<File>, ConnectorError> {
    let mut reader = BufReader::with_capacity(1 << 16, f);
    let head = reader.fill_buf().map_err(|e| io_error("read", path, e))?;
    if head.starts_with(UTF8_BOM) {
        reader.consume(UTF8_BOM.len());
    } else if head.starts_with(b"\xFF\xFE")
        || head.starts_with(b"\xFE\xFF")
        || head.starts_with(b"\0\0\xFE\xFF")
    {
        return Err(ConnectorError::config(
            "file",
            format!(
                "source file `{}` is UTF-16 or UTF-32 (it starts with that byte order mark); NDJSON is read as UTF-8. Fix: convert it, e.g. `iconv -f UTF-16 -t UTF-8`, or in PowerShell write it with `-Encoding utf8`",
                path.display()
            ),
        ));
    }
    Ok(reader)
}

/// Reads on to the end of the line (its newline included) without keeping
/// what it reads.
fn skip_line(reader: &mut BufReader<File>) -> std::io::Result<()> {
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(());
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = chunk.len();
                reader.consume(n);
            }
        }
    }
}

/// Builds [`FileSource`]s.
#[derive(Debug, Clone, Copy)]
pub struct FileSourceFactory;

impl SourceFactory for FileSourceFactory {
    type Config = FileSourceConfig;
    type Source = FileSource;
    fn descriptor(&self) -> ConnectorDescriptor {
        ConnectorDescriptor::new("file", env!("CARGO_PKG_VERSION"), ConnectorKind::Source)
            .with_description("Reads an NDJSON file, one record per line (bounded)")
            .with_field(ConfigField::required("path", "path", "the NDJSON file"))
            .with_field(ConfigField::optional(
                "batch_size",
                "integer",
                "1024",
                "lines per batch",
            ))
            .with_field(ConfigField::optional(
                "max_line_bytes",
                "integer",
                "16777216",
                "the longest line read as a record; a longer one is a bad record",
            ))
    }
    fn build(&self, c: FileSourceConfig) -> Result<FileSource, ConnectorError> {
        FileSource::open(c)
    }
    fn check_config(&self, c: &FileSourceConfig) -> Result<(), ConnectorError> {
        FileSource::check_settings(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn drain(s: &mut FileSource) -> Vec<(u64, String)> {
        let mut v = Vec::new();
        loop {
            match s.next().await.unwrap() {
                SourceEvent::Records(b) => v.extend(
                    b.into_iter()
                        .map(|r| (r.offset, String::from_utf8(r.payload).unwrap())),
                ),
                SourceEvent::End => return v,
                _ => {}
            }
        }
    }

    #[tokio::test]
    async fn a_file_shorter_than_its_checkpoint_is_one_bad_record_and_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.ndjson");
        std::fs::write(&path, "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n").unwrap();
        let mut s = FileSource::open(FileSourceConfig::new(&path)).unwrap();
        let p = s.partition().clone();
        s.seek(&SourcePosition::new().with(p, 600)).await.unwrap();
        let Err(ConnectorError::BadRecords(b)) = s.next().await else {
            panic!("a bad record first")
        };
        assert_eq!((b.len(), b[0].record.offset), (1, 600));
        assert!(
            b[0].reason
                .contains("has 3 lines, fewer than the 600 its checkpoint read")
                && b[0].reason.contains("Fix"),
            "{}",
            b[0].reason
        );
        let got = drain(&mut s).await;
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [0, 1, 2]);
        // At its length, the file is read to its end with nothing to say.
        let mut s = FileSource::open(FileSourceConfig::new(&path)).unwrap();
        let p = s.partition().clone();
        s.seek(&SourcePosition::new().with(p, 3)).await.unwrap();
        assert!(matches!(s.next().await, Ok(SourceEvent::End)));
    }

    #[tokio::test]
    async fn reads_lines_and_resumes_from_a_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.ndjson");
        std::fs::write(&path, "{\"a\":1}\n\n{\"a\":2}\r\n{\"a\":3}").unwrap();
        let cfg = FileSourceConfig {
            batch_size: 2,
            ..FileSourceConfig::new(&path)
        };
        let mut s = FileSource::open(cfg.clone()).unwrap();
        let all = drain(&mut s).await;
        assert_eq!(
            all,
            vec![
                (0, "{\"a\":1}".into()),
                (2, "{\"a\":2}".into()),
                (3, "{\"a\":3}".into())
            ]
        );
        let mut s = FileSource::open(cfg).unwrap();
        let p = s.partition().clone();
        s.seek(&SourcePosition::new().with(p, 3)).await.unwrap();
        assert_eq!(drain(&mut s).await, vec![(3, "{\"a\":3}".into())]);
    }

    /// Each event of a source: `Ok((offset, payload))` for a record,
    /// `Err((offset, kept bytes, reason))` for a bad one.
    async fn events(s: &mut FileSource) -> Vec<Result<(u64, String), (u64, usize, String)>> {
        let mut v = Vec::new();
        loop {
            match s.next().await {
                Ok(SourceEvent::Records(b)) => v.extend(
                    b.into_iter()
                        .map(|r| Ok((r.offset, String::from_utf8(r.payload).unwrap()))),
                ),
                Ok(SourceEvent::End) => return v,
                Ok(_) => {}
                Err(ConnectorError::BadRecords(bad)) => v.extend(
                    bad.into_iter()
                        .map(|b| Err((b.record.offset, b.record.payload.len(), b.reason))),
                ),
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[tokio::test]
    async fn a_line_longer_than_max_line_bytes_is_a_bad_record_and_the_rest_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.ndjson");
        let long = "x".repeat(5_000);
        // Exactly the limit (with CRLF), one past it, far past it with no
        // newline at the end of the file.
        let limit = "y".repeat(2_000);
        std::fs::write(
            &path,
            format!("a\n{limit}\r\n{}\nb\n{long}\nc\n{long}", "z".repeat(2_001)),
        )
        .unwrap();
        let cfg = FileSourceConfig {
            batch_size: 3,
            max_line_bytes: 2_000,
            ..FileSourceConfig::new(&path)
        };
        let mut s = FileSource::open(cfg.clone()).unwrap();
        let got = events(&mut s).await;
        let ok = |o: u64, p: &str| Ok((o, p.to_string()));
        assert_eq!(got[..2], [ok(0, "a"), ok(1, &limit)]);
        let bad: Vec<(u64, usize)> = got
            .iter()
            .filter_map(|e| e.as_ref().err().map(|(o, n, _)| (*o, *n)))
            .collect();
        assert_eq!(bad, [(2, 1024), (4, 1024), (6, 1024)]);
        let reason = &got.iter().find_map(|e| e.as_ref().err()).unwrap().2;
        assert!(
            reason.contains("line 3 of `")
                && reason.contains("longer than [source] max_line_bytes (2000 bytes)")
                && reason.contains("Fix: raise max_line_bytes"),
            "{reason}"
        );
        let records: Vec<_> = got.iter().filter_map(|e| e.as_ref().ok()).collect();
        assert_eq!(
            records,
            [
                &(0, "a".into()),
                &(1, limit.clone()),
                &(3, "b".into()),
                &(5, "c".into())
            ]
        );
        // In order of their lines: a bad record after the records before it.
        let offsets: Vec<u64> = got
            .iter()
            .map(|e| match e {
                Ok((o, _)) | Err((o, _, _)) => *o,
            })
            .collect();
        assert_eq!(offsets, [0, 1, 2, 3, 4, 5, 6]);
        // Resumed past a long line, it is not refused again.
        let mut s = FileSource::open(cfg).unwrap();
        let p = s.partition().clone();
        s.seek(&SourcePosition::new().with(p, 5)).await.unwrap();
        let got = events(&mut s).await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], ok(5, "c"));
    }

    #[tokio::test]
    async fn a_utf8_byte_order_mark_is_skipped_and_a_utf16_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.ndjson");
        std::fs::write(&path, b"\xEF\xBB\xBF{\"a\":1}\r\n{\"a\":2}\r\n").unwrap();
        let cfg = FileSourceConfig::new(&path);
        let mut s = FileSource::open(cfg.clone()).unwrap();
        let want = vec![(0, "{\"a\":1}".into()), (1, "{\"a\":2}".into())];
        assert_eq!(drain(&mut s).await, want);
        // A seek back reopens the file past the mark too.
        let p = s.partition().clone();
        s.seek(&SourcePosition::new().with(p, 0)).await.unwrap();
        assert_eq!(drain(&mut s).await, want);
        // A mark only at the start: one inside a later line stays.
        std::fs::write(&path, b"{}\n\xEF\xBB\xBF{}\n").unwrap();
        let mut s = FileSource::open(cfg.clone()).unwrap();
        assert_eq!(drain(&mut s).await[1], (1, "\u{feff}{}".into()));
        for head in [&b"\xFF\xFE{\0}\0"[..], b"\xFE\xFF\0{\0}"] {
            std::fs::write(&path, head).unwrap();
            let err = FileSource::open(cfg.clone()).unwrap_err().to_string();
            assert!(
                err.contains("in.ndjson") && err.contains("UTF-16") && err.contains("Fix"),
                "{err}"
            );
        }
        // An empty file is read as empty.
        std::fs::write(&path, b"").unwrap();
        let mut s = FileSource::open(cfg).unwrap();
        assert!(drain(&mut s).await.is_empty());
    }

    #[test]
    fn max_line_bytes_out_of_range_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.ndjson");
        std::fs::write(&path, "{}\n").unwrap();
        for n in [0, MAX_LINE + 1] {
            let err = FileSource::open(FileSourceConfig {
                max_line_bytes: n,
                ..FileSourceConfig::new(&path)
            })
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("max_line_bytes") && err.contains("Fix"),
                "{err}"
            );
        }
    }

    #[test]
    fn missing_file_is_a_config_error_naming_the_path() {
        let err = FileSource::open(FileSourceConfig {
            batch_size: 1,
            ..FileSourceConfig::new("/nope/x.ndjson")
        })
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/nope/x.ndjson") && msg.contains("Fix"),
            "{msg}"
        );
    }

    #[test]
    fn batch_size_out_of_range_is_a_config_error_not_an_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.ndjson");
        std::fs::write(&path, "{}\n").unwrap();
        for n in [0, MAX_BATCH + 1, usize::MAX] {
            let err = FileSource::open(FileSourceConfig {
                batch_size: n,
                ..FileSourceConfig::new(&path)
            })
            .unwrap_err()
            .to_string();
            assert!(err.contains("batch_size") && err.contains("Fix"), "{err}");
        }
        assert!(FileSource::open(FileSourceConfig {
            batch_size: MAX_BATCH,
            ..FileSourceConfig::new(path)
        })
        .is_ok());
    }
}
