//! # flowline-file
//!
//! Connectors without an external service, for the demo, tests and local
//! runs:
//!
//! - [`FileSource`] (`type = "file"`): NDJSON lines, bounded, resumable from a
//!   checkpointed position (the offset of a record is its line number);
//! - [`FileSink`] (`type = "file"`): one payload per line; `flush` fsyncs; on
//!   restore it truncates to its checkpointed length, so a restarted job
//!   never duplicates a line;
//! - [`StdoutSink`] (`type = "stdout"`);
//! - [`IterSource`], records from an iterator (the demo's generator),
//!   built in code.
//!
//! The in-memory test doubles (`MemorySource`, `MemorySink`) live in
//! `flowline-connector-testkit`.

#![warn(missing_docs)]

mod file_sink;
mod file_source;
mod iter_source;

pub use file_sink::{
    FileMode, FileSink, FileSinkConfig, FileSinkFactory, StdoutSink, StdoutSinkFactory,
};
pub use file_source::{FileSource, FileSourceConfig, FileSourceFactory};
pub use iter_source::IterSource;

use flowline_connector_api::{ConnectorError, Registry};

/// Registers this crate's connectors.
pub fn register(r: &mut Registry) -> Result<(), ConnectorError> {
    r.register_source(FileSourceFactory)?
        .register_sink(FileSinkFactory)?
        .register_sink(StdoutSinkFactory)?;
    Ok(())
}

pub(crate) fn io_error(what: &str, path: &std::path::Path, e: std::io::Error) -> ConnectorError {
    let msg = format!("{what} {}: {e}", path.display());
    match e.kind() {
        std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock => {
            ConnectorError::retryable(msg)
        }
        _ => ConnectorError::permanent(msg),
    }
    .with_source(e)
}
