//! `flowline new connector NAME`: a new connector crate that builds, passes
//! the conformance suites of `flowline-connector-testkit`, and shows where
//! the real work goes. The templates follow the connector guide
//! (docs/connectors.md): a config with `deny_unknown_fields`, the typed
//! trait, a factory with a descriptor, and the suite as an integration test.

use std::path::{Path, PathBuf};

use crate::Error;

mod templates;
use templates::*;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A source.
    Source,
    /// A sink.
    Sink,
}

/// Options of `flowline new connector`.
#[derive(Debug, Clone)]
pub struct NewConnector {
    /// Connector type name, as written in job files (`type = "NAME"`).
    pub name: String,
    /// Source or sink.
    pub kind: Kind,
    /// Directory to create (must not exist, or be empty).
    pub path: PathBuf,
    /// A Flowline checkout to depend on by path; `None`: the source tree
    /// this binary was built from ([`built_from`]).
    pub flowline: Option<PathBuf>,
}

fn bad(field: &str, message: String) -> Error {
    Error::Config {
        field: field.into(),
        message,
    }
}

/// Checks the name: lower-case letters, digits and `-`, starting with a
/// letter.
pub fn check_name(name: &str) -> Result<(), Error> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(bad(
            "NAME",
            format!("`{name}` is not a connector name. Fix: lower-case letters, digits and `-`, starting with a letter, e.g. `webhook`"),
        ))
    }
}

/// `webhook-out` → `WebhookOut`.
fn camel(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The Flowline source tree this binary was built from.
const BUILT_FROM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The source tree this binary was built from, while it is still there:
/// the default `--flowline` (the crates are not on a registry).
pub fn built_from() -> Option<PathBuf> {
    let p = std::fs::canonicalize(BUILT_FROM).ok()?;
    p.join("crates/connector-api/Cargo.toml")
        .is_file()
        .then_some(p)
}

/// The Flowline checkout to depend on: `--flowline`, else [`built_from`].
fn checkout(o: &NewConnector) -> Result<PathBuf, Error> {
    let Some(p) = o.flowline.clone().or_else(built_from) else {
        return Err(bad(
            "--flowline",
            format!(
                "the Flowline crates are not on a registry, and the source tree this binary was built from ({BUILT_FROM}) is gone. Fix: pass --flowline PATH, the path of a Flowline checkout"
            ),
        ));
    };
    let p = std::fs::canonicalize(&p).map_err(|e| {
        bad(
            "--flowline",
            format!(
                "`{}`: {e}. Fix: the path of a Flowline checkout",
                p.display()
            ),
        )
    })?;
    if !p.join("crates/connector-api/Cargo.toml").is_file() {
        return Err(bad(
            "--flowline",
            format!("`{}` is not a Flowline checkout (no crates/connector-api). Fix: the path of a Flowline checkout", p.display()),
        ));
    }
    Ok(p)
}

/// The path as a TOML string.
fn quoted(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

/// The files, relative to the crate directory.
pub fn render(o: &NewConnector) -> Result<Vec<(PathBuf, String)>, Error> {
    check_name(&o.name)?;
    let ty = camel(&o.name);
    let snake = o.name.replace('-', "_");
    let checkout = checkout(o)?;
    let kind = match o.kind {
        Kind::Source => "source",
        Kind::Sink => "sink",
    };
    // The source's events carry an RFC 3339 time.
    let extra_deps = match o.kind {
        Kind::Source => "jiff = \"0.2\"\n",
        Kind::Sink => "",
    };
    let fill = |t: &str| {
        t.replace("__NAME__", &o.name)
            .replace("__TYPE__", &ty)
            .replace("__CRATE__", &format!("flowline_{snake}"))
            .replace("__KIND__", kind)
            .replace("__EXTRA_DEPS__", extra_deps)
            .replace("__API__", &quoted(&checkout.join("crates/connector-api")))
            .replace("__KIT__", &quoted(&checkout.join("crates/testkit")))
            .replace("__FLOWLINE__", &quoted(&checkout.join("crates/flowline")))
            .replace(
                "__API_VERSION__",
                &flowline_connector_api::API_VERSION.to_string(),
            )
    };
    let (lib, test, job) = match o.kind {
        Kind::Source => (SOURCE_LIB, SOURCE_TEST, SOURCE_JOB),
        Kind::Sink => (SINK_LIB, SINK_TEST, SINK_JOB),
    };
    let mut files = vec![
        (PathBuf::from("Cargo.toml"), fill(CARGO)),
        (PathBuf::from("src/lib.rs"), fill(lib)),
        (PathBuf::from("src/main.rs"), fill(MAIN)),
        (PathBuf::from("tests/conformance.rs"), fill(test)),
        (PathBuf::from("job.toml"), fill(job)),
        (PathBuf::from("README.md"), fill(README)),
        (PathBuf::from(".gitignore"), "/target\n/out\n".to_string()),
    ];
    if o.kind == Kind::Sink {
        files.push((PathBuf::from("events.ndjson"), sample_events()));
    }
    // Flowline's lock file: the custom binary builds with the versions
    // Flowline was tested with (cargo drops what this crate does not use).
    if let Ok(lock) = std::fs::read_to_string(checkout.join("Cargo.lock")) {
        files.push((PathBuf::from("Cargo.lock"), lock));
    }
    Ok(files)
}

/// The sink's job reads these: three hosts, one metric, a sample a second
/// for a minute.
fn sample_events() -> String {
    let mut s = String::new();
    for second in 0..60 {
        for host in 0..3 {
            s.push_str(&format!(
                "{{\"host\":\"host-{host}\",\"metric\":\"cpu_util\",\"value\":{},\"timestamp\":\"2026-01-01T00:00:{second:02}Z\"}}\n",
                10 * host + second % 7
            ));
        }
    }
    s
}

/// Writes the crate; refuses a non-empty directory.
pub fn generate(o: &NewConnector) -> Result<Vec<PathBuf>, Error> {
    let files = render(o)?;
    if o.path.exists()
        && std::fs::read_dir(&o.path)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(bad(
            "--path",
            format!(
                "`{}` exists and is not empty. Fix: choose a new directory",
                o.path.display()
            ),
        ));
    }
    let mut written = Vec::new();
    for (rel, text) in files {
        let p = o.path.join(&rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)
                .map_err(|e| bad("--path", format!("cannot create `{}`: {e}", d.display())))?;
        }
        std::fs::write(&p, text)
            .map_err(|e| bad("--path", format!("cannot write `{}`: {e}", p.display())))?;
        written.push(p);
    }
    // Best effort: lay the code out as rustfmt would for this name.
    let rs: Vec<&PathBuf> = written
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    let _ = std::process::Command::new("rustfmt")
        .args(["--edition", "2021"])
        .args(&rs)
        .stderr(std::process::Stdio::null())
        .status();
    Ok(written)
}

/// Default directory: `./flowline-NAME`.
pub fn default_path(name: &str) -> PathBuf {
    Path::new(".").join(format!("flowline-{name}"))
}
