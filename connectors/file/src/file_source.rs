//! NDJSON file source.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use flowline_connector_api::{
    ConfigField, ConnectorDescriptor, ConnectorError, ConnectorKind, PartitionId, Record, Source,
    SourceEvent, SourceFactory, SourcePosition,
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
}

/// The largest `batch_size`: a batch is held in memory at once.
pub const MAX_BATCH: usize = 1_000_000;

fn default_batch() -> usize {
    1024
}

/// Reads a file line by line; one partition named after the path. Empty
/// lines are skipped (they keep their line number).
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    partition: PartitionId,
    reader: Option<BufReader<File>>,
    line: u64,
    skip_to: u64,
    batch_size: usize,
}

impl FileSource {
    /// Opens the file; fails now when it cannot be read.
    pub fn open(config: FileSourceConfig) -> Result<Self, ConnectorError> {
        if !(1..=MAX_BATCH).contains(&config.batch_size) {
            return Err(ConnectorError::config(
                "file",
                format!(
                    "[source] batch_size = {} is out of range. Fix: use 1 to {MAX_BATCH} lines per batch (default 1024)",
                    config.batch_size
                ),
            ));
        }
        let f = File::open(&config.path).map_err(|e| {
            ConnectorError::config(
                "file",
                format!("cannot open source file `{}`: {e}. Fix: set [source] path to an existing NDJSON file", config.path.display()),
            )
        })?;
        Ok(Self {
            partition: PartitionId::new(config.path.display().to_string()),
            path: config.path,
            reader: Some(BufReader::with_capacity(1 << 16, f)),
            line: 0,
            skip_to: 0,
            batch_size: config.batch_size,
        })
    }

    /// The partition this source reads.
    pub fn partition(&self) -> &PartitionId {
        &self.partition
    }
}

impl Source for FileSource {
    async fn next(&mut self) -> Result<SourceEvent, ConnectorError> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(SourceEvent::End);
        };
        let mut batch = Vec::with_capacity(self.batch_size);
        let mut buf = Vec::with_capacity(256);
        while batch.len() < self.batch_size {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| io_error("read", &self.path, e))?;
            if n == 0 {
                self.reader = None;
                break;
            }
            let line = self.line;
            self.line += 1;
            if line < self.skip_to {
                continue;
            }
            while matches!(buf.last(), Some(b'\n' | b'\r')) {
                buf.pop();
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
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
                self.reader = Some(BufReader::with_capacity(1 << 16, f));
                self.line = 0;
            }
            self.skip_to = next;
        }
        Ok(())
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
    }
    fn build(&self, c: FileSourceConfig) -> Result<FileSource, ConnectorError> {
        FileSource::open(c)
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
    async fn reads_lines_and_resumes_from_a_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.ndjson");
        std::fs::write(&path, "{\"a\":1}\n\n{\"a\":2}\r\n{\"a\":3}").unwrap();
        let cfg = FileSourceConfig {
            path: path.clone(),
            batch_size: 2,
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

    #[test]
    fn missing_file_is_a_config_error_naming_the_path() {
        let err = FileSource::open(FileSourceConfig {
            path: "/nope/x.ndjson".into(),
            batch_size: 1,
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
                path: path.clone(),
                batch_size: n,
            })
            .unwrap_err()
            .to_string();
            assert!(err.contains("batch_size") && err.contains("Fix"), "{err}");
        }
        assert!(FileSource::open(FileSourceConfig {
            path,
            batch_size: MAX_BATCH
        })
        .is_ok());
    }
}
