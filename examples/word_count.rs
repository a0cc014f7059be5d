//! The classic first example: file → split into words → key_by → count →
//! stdout.
//!
//! ```sh
//! cargo run -p flowline --example word_count -- README.md
//! ```
//!
//! Each word's count lives in keyed state (`ValueState`); a timer at the end
//! of time fires when the bounded input ends, emitting one `word<TAB>count`
//! line per word, in word order.

use flowline_connector_api::{Record, Sink};
use flowline_file::{FileSource, FileSourceConfig, StdoutSink};
use flowline_runtime::{
    JobConfig, KeyedProcessFunction, ProcessContext, StreamEnvironment, ValueState,
};

/// Counts words; emits the final count of each when the input ends.
#[derive(Clone, Copy, Debug)]
struct CountWords;

impl KeyedProcessFunction for CountWords {
    type Key = String;
    type In = String;
    type Out = (String, u64);
    type State = ValueState<u64>;

    fn process_element(
        &self,
        _word: &String,
        _value: String,
        ctx: &mut ProcessContext<'_, ValueState<u64>, (String, u64)>,
    ) {
        let first = ctx.state().value().is_none();
        *ctx.state().get_or_insert(0) += 1;
        if first {
            ctx.register_event_time_timer(i64::MAX - 1);
        }
    }

    fn on_timer(
        &self,
        word: &String,
        _ts: i64,
        ctx: &mut ProcessContext<'_, ValueState<u64>, (String, u64)>,
    ) {
        let n = ctx.state().value().copied().unwrap_or(0);
        ctx.emit((word.clone(), n));
        ctx.clear_state();
    }
}

/// Splits a line into lower-case words.
fn words(line: &str) -> Vec<String> {
    line.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Builds and runs the job from `path` into `sink`.
async fn word_count(path: &str, sink: impl Sink) -> Result<(), Box<dyn std::error::Error>> {
    let env = StreamEnvironment::new(JobConfig::named("word-count"));
    let out = env.add_sink("stdout", Box::new(sink));
    let source = FileSource::open(FileSourceConfig::new(path))?;
    env.source("file", Box::new(source))
        .try_map("utf8", |r: &Record| String::from_utf8(r.payload.clone()))
        .flat_map(|line: String| words(&line))
        .key_by(|w: &String| w.clone())
        .process(CountWords)
        .map(|(w, n)| format!("{w}\t{n}"))
        .sink(out);
    env.execute().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: word_count FILE")?;
    word_count(&path, StdoutSink).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowline_connector_testkit::MemorySink;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counts_every_word_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        std::fs::write(
            &path,
            "The quick brown fox\njumps over the lazy dog.\n\nThe END, the end!\n",
        )
        .unwrap();
        let out = MemorySink::new();
        word_count(path.to_str().unwrap(), out.clone())
            .await
            .unwrap();
        let mut got = out.payloads();
        got.sort();
        assert_eq!(
            got,
            [
                "brown\t1", "dog\t1", "end\t2", "fox\t1", "jumps\t1", "lazy\t1", "over\t1",
                "quick\t1", "the\t4"
            ]
        );
    }
}
