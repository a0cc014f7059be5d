//! NDJSON file sink and stdout sink.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;

use flowline_connector_api::{
    ConfigField, ConnectorDescriptor, ConnectorError, ConnectorKind, Record, Sink, SinkFactory,
};
use serde::Deserialize;

use crate::io_error;

/// `[sink] type = "file"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The output file; created, or truncated to the checkpointed length.
    pub path: PathBuf,
}

/// Writes each record's payload as one line.
///
/// Exactly once across restarts: its checkpoint state is the file's length
/// after a flush; on restore it truncates the file to that length (to zero on
/// a fresh start), so lines written after the last checkpoint and written
/// again by the replay appear once.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    len: u64,
}

impl FileSink {
    /// A sink writing to `path`. The file is opened by `restore`, before the
    /// first write; the parent directory must exist.
    pub fn new(config: FileSinkConfig) -> Result<Self, ConnectorError> {
        let parent = config.path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(p) = parent {
            if !p.is_dir() {
                return Err(ConnectorError::config(
                    "file",
                    format!("the directory of sink file `{}` does not exist. Fix: create it or change [sink] path", config.path.display()),
                ));
            }
        }
        Ok(Self {
            path: config.path,
            out: None,
            len: 0,
        })
    }

    fn open(&mut self, len: u64) -> Result<(), ConnectorError> {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| io_error("open", &self.path, e))?;
        let actual = f
            .metadata()
            .map_err(|e| io_error("stat", &self.path, e))?
            .len();
        if actual < len {
            return Err(ConnectorError::permanent(format!(
                "sink file `{}` is {actual} bytes, shorter than the {len} bytes its checkpoint recorded: it was changed outside the job. Fix: restore the file or remove the checkpoint directory",
                self.path.display()
            )));
        }
        f.set_len(len)
            .map_err(|e| io_error("truncate", &self.path, e))?;
        f.seek(SeekFrom::Start(len))
            .map_err(|e| io_error("seek", &self.path, e))?;
        self.out = Some(BufWriter::with_capacity(1 << 16, f));
        self.len = len;
        Ok(())
    }
}

impl Sink for FileSink {
    async fn write(&mut self, batch: Vec<Record>) -> Result<(), ConnectorError> {
        if self.out.is_none() {
            self.open(0)?;
        }
        let out = self.out.as_mut().expect("opened above");
        for r in &batch {
            out.write_all(&r.payload)
                .map_err(|e| io_error("write", &self.path, e))?;
            out.write_all(b"\n")
                .map_err(|e| io_error("write", &self.path, e))?;
            self.len += r.payload.len() as u64 + 1;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        if let Some(out) = self.out.as_mut() {
            out.flush().map_err(|e| io_error("flush", &self.path, e))?;
            out.get_ref()
                .sync_data()
                .map_err(|e| io_error("fsync", &self.path, e))?;
        }
        Ok(())
    }

    async fn snapshot(&mut self) -> Result<Option<Vec<u8>>, ConnectorError> {
        Ok(Some(self.len.to_le_bytes().to_vec()))
    }

    async fn restore(&mut self, state: Option<Vec<u8>>) -> Result<(), ConnectorError> {
        let len = match state {
            None => 0,
            Some(b) => u64::from_le_bytes(b.as_slice().try_into().map_err(|_| {
                ConnectorError::permanent(
                    "file sink checkpoint state is not 8 bytes: written by another sink type",
                )
            })?),
        };
        self.open(len)
    }
}

/// Builds [`FileSink`]s.
#[derive(Debug, Clone, Copy)]
pub struct FileSinkFactory;

impl SinkFactory for FileSinkFactory {
    type Config = FileSinkConfig;
    type Sink = FileSink;
    fn descriptor(&self) -> ConnectorDescriptor {
        ConnectorDescriptor::new("file", env!("CARGO_PKG_VERSION"), ConnectorKind::Sink)
            .with_description("Writes one record payload per line; exactly once across restarts")
            .with_field(ConfigField::required("path", "path", "the output file"))
    }
    fn build(&self, c: FileSinkConfig) -> Result<FileSink, ConnectorError> {
        FileSink::new(c)
    }
}

/// Writes each payload as a line on standard output.
#[derive(Debug, Default)]
pub struct StdoutSink;

impl Sink for StdoutSink {
    async fn write(&mut self, batch: Vec<Record>) -> Result<(), ConnectorError> {
        let mut out = std::io::stdout().lock();
        for r in &batch {
            out.write_all(&r.payload)
                .and_then(|_| out.write_all(b"\n"))
                .map_err(|e| ConnectorError::permanent(format!("write to stdout: {e}")))?;
        }
        Ok(())
    }
    async fn flush(&mut self) -> Result<(), ConnectorError> {
        std::io::stdout()
            .flush()
            .map_err(|e| ConnectorError::permanent(format!("flush stdout: {e}")))
    }
}

/// `[sink] type = "stdout"`: no settings.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {}

/// Builds [`StdoutSink`]s.
#[derive(Debug, Clone, Copy)]
pub struct StdoutSinkFactory;

impl SinkFactory for StdoutSinkFactory {
    type Config = StdoutConfig;
    type Sink = StdoutSink;
    fn descriptor(&self) -> ConnectorDescriptor {
        ConnectorDescriptor::new("stdout", env!("CARGO_PKG_VERSION"), ConnectorKind::Sink)
            .with_description("Writes one record payload per line to standard output")
    }
    fn build(&self, _: StdoutConfig) -> Result<StdoutSink, ConnectorError> {
        Ok(StdoutSink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn truncates_to_checkpointed_length_on_restore() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let mut s = FileSink::new(FileSinkConfig { path: path.clone() }).unwrap();
        s.restore(None).await.unwrap();
        s.write(vec![Record::new("a"), Record::new("bb")])
            .await
            .unwrap();
        s.flush().await.unwrap();
        let state = s.snapshot().await.unwrap();
        s.write(vec![Record::new("after-checkpoint")])
            .await
            .unwrap();
        s.flush().await.unwrap();
        drop(s);
        let mut s = FileSink::new(FileSinkConfig { path: path.clone() }).unwrap();
        s.restore(state).await.unwrap();
        s.write(vec![Record::new("c")]).await.unwrap();
        s.close().await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nbb\nc\n");
    }

    #[test]
    fn missing_directory_is_a_config_error() {
        let err = FileSink::new(FileSinkConfig {
            path: "/no/such/dir/out.ndjson".into(),
        })
        .unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
