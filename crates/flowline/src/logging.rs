//! Logs on standard error: human text by default, one JSON object per line
//! with `--log-format json` (for log shippers). The level comes from
//! `FLOWLINE_LOG`, else `RUST_LOG`, else `info`, in `tracing`'s
//! `EnvFilter` syntax (`warn,flowline_runtime=debug`). Colour only when
//! standard error is a terminal and `NO_COLOR` is unset or empty, so a log
//! redirected to a file holds no escape codes.

use std::io::IsTerminal;

/// How log lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`).
    Json,
}

/// The filter directives: `FLOWLINE_LOG` overrides `RUST_LOG`; neither (or
/// an empty value) means `info`.
pub fn directives(flowline_log: Option<&str>, rust_log: Option<&str>) -> String {
    [flowline_log, rust_log]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|v| !v.is_empty())
        .unwrap_or("info")
        .to_string()
}

/// Whether to colour: a terminal, and no `NO_COLOR` (any non-empty value
/// turns colour off, as no-color.org says).
pub fn colour(is_terminal: bool, no_color: Option<&str>) -> bool {
    is_terminal && no_color.is_none_or(str::is_empty)
}

/// Installs the subscriber. A filter that does not parse is reported and
/// `info` used, so a typo in the level never hides every log.
pub fn init(format: LogFormat) {
    let var = |k: &str| std::env::var(k).ok();
    let wanted = directives(var("FLOWLINE_LOG").as_deref(), var("RUST_LOG").as_deref());
    let (filter, bad) = match tracing_subscriber::EnvFilter::try_new(&wanted) {
        Ok(f) => (f, None),
        Err(e) => (tracing_subscriber::EnvFilter::new("info"), Some(e)),
    };
    let ansi = colour(std::io::stderr().is_terminal(), var("NO_COLOR").as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
    if let Some(e) = bad {
        tracing::warn!(filter = %wanted, error = %e, "the log filter (FLOWLINE_LOG or RUST_LOG) does not parse; logging at info. Fix: e.g. FLOWLINE_LOG=warn or FLOWLINE_LOG=info,flowline_runtime=debug");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flowline_log_overrides_rust_log_and_info_is_the_default() {
        assert_eq!(directives(None, None), "info");
        assert_eq!(directives(None, Some("warn")), "warn");
        assert_eq!(directives(Some("debug"), Some("warn")), "debug");
        assert_eq!(directives(Some(""), Some("warn")), "warn");
        assert_eq!(directives(Some(" "), Some("")), "info");
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("")));
        assert!(!colour(true, Some("1")));
        assert!(!colour(false, None));
    }
}
