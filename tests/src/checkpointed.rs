//! A bounded Kafka job with file outputs and a checkpoint directory, for
//! tests that stop it, change the topic, and run it again: bounded in this
//! process, or as a streaming job process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::job::{http_addr, job_log, kafka_job_head, sigterm, spawn_job, wait_progress, Progress};

/// The job file reading `topic` to its end offsets, with windows of 10 s
/// to `out.ndjson`, dead letters to `dead.ndjson` and checkpoints in `cp`,
/// all in `dir`; returns it with the two output paths.
pub fn bounded_file_job(topic: &str, bootstrap: &str, dir: &Path) -> (String, PathBuf, PathBuf) {
    let (out, dead) = (dir.join("out.ndjson"), dir.join("dead.ndjson"));
    let config = format!(
        "{head}bounded = true\n[sink]\ntype = \"file\"\npath = \"{}\"\n[dead_letter]\ntype = \"file\"\npath = \"{}\"\n[window]\nsize = \"10s\"\n[checkpoint]\ndir = \"{}\"\ninterval = \"1h\"\n",
        out.display(),
        dead.display(),
        dir.join("cp").display(),
        head = kafka_job_head(topic, bootstrap),
    );
    (config, out, dead)
}

/// Runs the bounded job file `toml` as a streaming job process (`bounded =
/// false`, an HTTP port; its file in `dir`) until `ok` holds of its
/// progress, stops it with SIGTERM, and returns its log.
pub async fn stream_until(
    toml: &str,
    dir: &Path,
    what: &str,
    ok: impl Fn(Progress) -> bool,
) -> String {
    let config = dir.join("streaming.toml");
    let text = toml.replace(
        "bounded = true\n",
        "bounded = false\n[http]\nlisten = \"127.0.0.1:0\"\n",
    );
    std::fs::write(&config, text).unwrap();
    let mut child = spawn_job(&config, 0);
    let addr = http_addr(&mut child, &config, 0).await;
    let within = Duration::from_secs(60);
    wait_progress(what, &addr, &mut child, &config, 0, within, ok).await;
    sigterm(&mut child, &config, 0, Duration::from_secs(30)).await;
    job_log(&config, 0)
}
