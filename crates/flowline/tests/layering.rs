//! The layering rule of the README ("Layout"), checked on the manifests:
//! every dependency on a Flowline crate, in every table (normal, dev,
//! build, per target), points to a lower layer. A workspace member in no
//! layer fails too, so a new crate has to be placed.

use std::path::{Path, PathBuf};

/// Each package's layer, lowest first.
const LAYERS: &[(&str, u8)] = &[
    ("flowline-connector-api", 0),
    ("flowline-checkpoint", 1),
    ("flowline-connector-testkit", 1),
    ("flowline-runtime", 2),
    ("flowline-file", 2),
    ("flowline-elasticsearch", 2),
    ("flowline-kafka", 2),
    ("flowline-metric-generator", 2),
    ("flowline-example-webhook", 2),
    ("flowline", 3),
    ("flowline-integration-tests", 4),
    ("flowline-bench", 5),
];

fn layer(package: &str) -> Option<u8> {
    LAYERS.iter().find(|(p, _)| *p == package).map(|(_, l)| *l)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The Flowline crates a manifest depends on, with the table they are in.
fn flowline_deps(manifest: &toml::Table) -> Vec<(String, String)> {
    let mut tables: Vec<(String, &toml::Table)> = Vec::new();
    for t in ["dependencies", "dev-dependencies", "build-dependencies"] {
        if let Some(d) = manifest.get(t).and_then(|v| v.as_table()) {
            tables.push((t.to_string(), d));
        }
    }
    if let Some(targets) = manifest.get("target").and_then(|v| v.as_table()) {
        for (cfg, t) in targets {
            for kind in ["dependencies", "dev-dependencies", "build-dependencies"] {
                if let Some(d) = t.get(kind).and_then(|v| v.as_table()) {
                    tables.push((format!("target.{cfg}.{kind}"), d));
                }
            }
        }
    }
    let mut out = Vec::new();
    for (table, deps) in tables {
        for (name, spec) in deps {
            // A renamed dependency names its package.
            let package = spec.get("package").and_then(|p| p.as_str()).unwrap_or(name);
            if package == "flowline" || package.starts_with("flowline-") {
                out.push((table.clone(), package.to_string()));
            }
        }
    }
    out
}

#[test]
fn every_dependency_points_down() {
    let workspace = read(&root().join("Cargo.toml"));
    let members = workspace["workspace"]["members"].as_array().unwrap();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for m in members {
        let manifest = read(&root().join(m.as_str().unwrap()).join("Cargo.toml"));
        let name = manifest["package"]["name"].as_str().unwrap().to_string();
        let Some(own) = layer(&name) else {
            wrong.push(format!(
                "{name} is in no layer: place it in LAYERS and the README"
            ));
            continue;
        };
        for (table, dep) in flowline_deps(&manifest) {
            match layer(&dep) {
                Some(l) if l < own => {}
                Some(l) => wrong.push(format!(
                    "{name} (layer {own}) [{table}] depends on {dep} (layer {l})"
                )),
                None => wrong.push(format!("{name} [{table}] depends on {dep}, in no layer")),
            }
        }
        checked += 1;
    }
    assert!(
        wrong.is_empty(),
        "arrows that do not point down:\n{}",
        wrong.join("\n")
    );
    assert_eq!(checked, LAYERS.len(), "every layer's crate is a member");
}

/// The check itself catches an upward arrow (a connector's test importing
/// the runtime) and a renamed one.
#[test]
fn an_upward_arrow_is_seen() {
    let m: toml::Table = r#"
        [package]
        name = "flowline-kafka"
        [dev-dependencies]
        rt = { package = "flowline-runtime", path = "../../crates/runtime" }
        [target.'cfg(unix)'.dependencies]
        flowline-file = { path = "../file" }
    "#
    .parse()
    .unwrap();
    let deps = flowline_deps(&m);
    assert_eq!(
        deps,
        [
            (
                "dev-dependencies".to_string(),
                "flowline-runtime".to_string()
            ),
            (
                "target.cfg(unix).dependencies".to_string(),
                "flowline-file".to_string()
            ),
        ]
    );
    assert!(deps
        .iter()
        .all(|(_, d)| layer(d) >= layer("flowline-kafka")));
}
