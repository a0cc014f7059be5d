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
    /// What to do with a file that already holds data on a fresh start (no
    /// checkpoint of this job).
    #[serde(default)]
    pub mode: FileMode,
}

impl FileSinkConfig {
    /// Writes `path`, refusing a non-empty file on a fresh start.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            mode: FileMode::default(),
        }
    }

    /// With this mode.
    pub fn mode(mut self, mode: FileMode) -> Self {
        self.mode = mode;
        self
    }
}

/// A fresh start's way with an existing file. With a checkpoint the file is
/// always cut back to the length that checkpoint recorded, which is never
/// shorter than what was there before the job first wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FileMode {
    /// The file must be absent or empty: a job never destroys data it did
    /// not write (default).
    #[default]
    New,
    /// Keep what is there and write after it.
    Append,
    /// Empty the file first.
    Overwrite,
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
    mode: FileMode,
    out: Option<BufWriter<File>>,
    len: u64,
}

impl FileSink {
    /// What `new` checks without the file system (`validate --offline`).
    fn check_settings(config: &FileSinkConfig) -> Result<(), ConnectorError> {
        if config.path.as_os_str().is_empty() {
            return Err(ConnectorError::config(
                "file",
                "the sink file path is empty. Fix: set path to a file, e.g. path = \"out/windows.ndjson\"",
            ));
        }
        Ok(())
    }

    /// A sink writing to `path`. The file is opened by `restore`, before the
    /// first write; the parent directory must exist.
    pub fn new(config: FileSinkConfig) -> Result<Self, ConnectorError> {
        Self::check_settings(&config)?;
        // What `restore` will meet, found now (so `validate` sees it): a
        // name the system refuses (too long, a NUL byte), a directory, no
        // permission.
        match std::fs::metadata(&config.path) {
            Ok(m) if m.is_dir() => {
                return Err(ConnectorError::config(
                    "file",
                    format!(
                        "sink path `{}` is a directory. Fix: name a file in it",
                        config.path.display()
                    ),
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ConnectorError::config(
                    "file",
                    format!(
                        "sink file `{}` cannot be used: {e}. Fix: change its path",
                        config.path.display()
                    ),
                ))
            }
        }
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
            mode: config.mode,
            out: None,
            len: 0,
        })
    }

    /// Where a fresh start (no checkpoint) begins writing, by the mode.
    fn fresh_start_length(&self) -> Result<u64, ConnectorError> {
        let existing = match std::fs::metadata(&self.path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_error("stat", &self.path, e)),
        };
        match self.mode {
            FileMode::Overwrite => Ok(0),
            FileMode::Append => Ok(existing),
            FileMode::New if existing == 0 => Ok(0),
            FileMode::New => Err(ConnectorError::config(
                "file",
                format!(
                    "sink file `{}` already holds {existing} bytes and this job has no checkpoint that wrote them. Fix: move the file away, or set mode = \"append\" (keep it, write after it) or mode = \"overwrite\" (empty it) in its section",
                    self.path.display()
                ),
            )),
        }
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
            let len = self.fresh_start_length()?;
            self.open(len)?;
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
            None => self.fresh_start_length()?,
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
            .with_field(ConfigField::optional(
                "mode",
                "string",
                "new",
                "a fresh start with a non-empty file: new (refuse), append or overwrite",
            ))
    }
    fn build(&self, c: FileSinkConfig) -> Result<FileSink, ConnectorError> {
        FileSink::new(c)
    }
    fn check_config(&self, c: &FileSinkConfig) -> Result<(), ConnectorError> {
        FileSink::check_settings(c)
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
        let mut s = FileSink::new(FileSinkConfig::new(&path)).unwrap();
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
        let mut s = FileSink::new(FileSinkConfig::new(&path)).unwrap();
        s.restore(state).await.unwrap();
        s.write(vec![Record::new("c")]).await.unwrap();
        s.close().await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nbb\nc\n");
    }

    #[test]
    fn missing_directory_is_a_config_error() {
        let err = FileSink::new(FileSinkConfig::new("/no/such/dir/out.ndjson")).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn unusable_paths_are_config_errors_before_any_work() {
        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join("x".repeat(5_000));
        let nul = dir.path().join("nul\0byte");
        for p in [std::path::Path::new(""), dir.path(), &long, &nul] {
            let err = FileSink::new(FileSinkConfig::new(p))
                .unwrap_err()
                .to_string();
            assert!(err.contains("Fix"), "{}: {err}", p.display());
        }
        assert!(FileSink::new(FileSinkConfig::new(dir.path().join("ok.ndjson"))).is_ok());
    }

    async fn fresh(path: &std::path::Path, mode: FileMode) -> Result<FileSink, ConnectorError> {
        let mut s = FileSink::new(FileSinkConfig::new(path).mode(mode))?;
        s.restore(None).await?;
        Ok(s)
    }

    #[tokio::test]
    async fn a_fresh_start_never_destroys_a_file_it_did_not_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("windows.ndjson");
        std::fs::write(&path, "mine\n").unwrap();
        let err = fresh(&path, FileMode::New).await.unwrap_err().to_string();
        assert!(
            err.contains("already holds 5 bytes") && err.contains("mode = \"append\""),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine\n");

        // Append keeps it; a restore cuts back only to what a checkpoint of
        // this sink recorded, never into the data that was there.
        let mut s = fresh(&path, FileMode::Append).await.unwrap();
        s.write(vec![Record::new("a")]).await.unwrap();
        s.flush().await.unwrap();
        let state = s.snapshot().await.unwrap();
        s.write(vec![Record::new("after")]).await.unwrap();
        s.close().await.unwrap();
        let mut s = FileSink::new(FileSinkConfig::new(&path).mode(FileMode::Append)).unwrap();
        s.restore(state).await.unwrap();
        s.close().await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine\na\n");

        let mut s = fresh(&path, FileMode::Overwrite).await.unwrap();
        s.close().await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        // Empty or absent: new is fine.
        fresh(&path, FileMode::New).await.unwrap();
        fresh(&dir.path().join("absent"), FileMode::New)
            .await
            .unwrap();
    }

    #[test]
    fn mode_parses_from_the_job_file_words() {
        let c: FileSinkConfig =
            serde_json::from_value(serde_json::json!({"path": "x", "mode": "append"})).unwrap();
        assert_eq!(c.mode, FileMode::Append);
        let e = serde_json::from_value::<FileSinkConfig>(
            serde_json::json!({"path": "x", "mode": "clobber"}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("new") && e.contains("append") && e.contains("overwrite"),
            "{e}"
        );
    }
}
