//! Checks of the docker-compose demo that run without a Docker engine: the
//! compose file's references, the Dockerfile's build against CI's, the
//! Kibana saved objects against the index template the Elasticsearch sink
//! installs, and the job files compose mounts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(p: &str) -> String {
    std::fs::read_to_string(root().join(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn compose() -> serde_yaml::Value {
    let mut v: serde_yaml::Value =
        serde_yaml::from_str(&read("docker-compose.yml")).expect("docker-compose.yml parses");
    v.apply_merge().expect("merge keys (<<) resolve");
    v
}

#[test]
fn compose_references_resolve() {
    let c = compose();
    let services = c["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    let volumes: BTreeSet<&str> = c["volumes"]
        .as_mapping()
        .map(|m| m.keys().filter_map(|k| k.as_str()).collect())
        .unwrap_or_default();
    for want in [
        "kafka",
        "kafka-init",
        "elasticsearch",
        "kibana",
        "kibana-setup",
        "metric-generator",
        "flowline",
        "wordcount",
    ] {
        assert!(names.contains(want), "service {want} missing");
    }
    for (name, s) in services {
        let name = name.as_str().unwrap();
        assert!(
            s["image"].is_string() || s["build"].is_mapping(),
            "{name}: no image or build"
        );
        if let Some(b) = s["build"].as_mapping() {
            let ctx = b.get("context").and_then(|v| v.as_str()).unwrap_or(".");
            assert!(root().join(ctx).is_dir(), "{name}: build context {ctx}");
            let df = b
                .get("dockerfile")
                .and_then(|v| v.as_str())
                .unwrap_or("Dockerfile");
            assert!(
                root().join(ctx).join(df).is_file(),
                "{name}: dockerfile {df}"
            );
        }
        if let Some(deps) = s["depends_on"].as_mapping() {
            for (dep, cond) in deps {
                let dep = dep.as_str().unwrap();
                assert!(names.contains(dep), "{name} depends on unknown {dep}");
                let cond = cond["condition"].as_str().unwrap_or("service_started");
                assert!(
                    [
                        "service_started",
                        "service_healthy",
                        "service_completed_successfully"
                    ]
                    .contains(&cond),
                    "{name}: condition {cond}"
                );
                if cond == "service_healthy" {
                    assert!(
                        services[dep]["healthcheck"].is_mapping(),
                        "{name} waits for {dep} to be healthy, which has no healthcheck"
                    );
                }
                if cond == "service_completed_successfully" {
                    assert_eq!(
                        services[dep]["restart"].as_str(),
                        Some("no"),
                        "{dep} is one-shot"
                    );
                }
                // A profiled service may only be waited for by services of the same profile.
                if !services[dep]["profiles"].is_null() {
                    assert_eq!(
                        services[dep]["profiles"], s["profiles"],
                        "{name} depends on {dep} of another profile"
                    );
                }
            }
        }
        for v in s["volumes"].as_sequence().into_iter().flatten() {
            let v = v.as_str().expect("short volume syntax");
            let src = v.split(':').next().unwrap();
            if src.starts_with("./") || src.starts_with('/') {
                assert!(
                    root().join(src).exists(),
                    "{name}: mounted {src} is not in the repository"
                );
            } else {
                assert!(volumes.contains(src), "{name}: volume {src} not declared");
            }
        }
    }
    // Services that must stay up have a healthcheck or are one-shot.
    for s in ["kafka", "elasticsearch", "kibana", "flowline"] {
        assert!(
            services[s]["healthcheck"].is_mapping(),
            "{s} has no healthcheck"
        );
    }
    assert_eq!(services["wordcount"]["profiles"][0].as_str(), Some("tools"));
}

/// The images' shells are dash (bookworm-slim) or have no bash features:
/// a healthcheck must not use `/dev/tcp`; the Flowline services ask their
/// own endpoint with `flowline health`, to the port their job file listens
/// on. Kafka's data goes where its volume is mounted.
#[test]
fn healthchecks_can_pass_and_kafka_data_lands_on_its_volume() {
    let c = compose();
    for (name, s) in c["services"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        let test = &s["healthcheck"]["test"];
        let words: Vec<&str> = test
            .as_sequence()
            .map(|t| t.iter().filter_map(|w| w.as_str()).collect())
            .unwrap_or_default();
        assert!(
            !words.iter().any(|w| w.contains("/dev/tcp")),
            "{name}: /dev/tcp is a bash feature; the image's sh is dash"
        );
        let command: Vec<&str> = s["command"]
            .as_sequence()
            .map(|t| t.iter().filter_map(|w| w.as_str()).collect())
            .unwrap_or_default();
        if command.starts_with(&["flowline", "run"]) {
            assert_eq!(
                &words[..3],
                &["CMD", "flowline", "health"],
                "{name}: healthcheck"
            );
            let url = words[words.iter().position(|w| *w == "--url").unwrap() + 1];
            let job = s["volumes"]
                .as_sequence()
                .unwrap()
                .iter()
                .filter_map(|v| v.as_str())
                .find(|v| v.contains("/etc/flowline/job.toml"))
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .trim_start_matches("./");
            let text = flowline::config::expand_env(&read(job), |_| Some("x".into())).unwrap();
            let plan = flowline::config::JobPlan::parse(&text).unwrap();
            let port = plan
                .http_listen
                .expect("[http] listen")
                .rsplit(':')
                .next()
                .unwrap()
                .to_string();
            assert!(
                url.contains(&format!(":{port}/health")),
                "{name}: {url} vs {port}"
            );
        }
    }
    let kafka = &c["services"]["kafka"];
    let mount = kafka["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .find(|v| v.starts_with("kafka-data:"))
        .expect("kafka-data volume")
        .split(':')
        .nth(1)
        .unwrap();
    assert_eq!(kafka["environment"]["KAFKA_LOG_DIRS"].as_str(), Some(mount));
}

#[test]
fn dockerfile_builds_what_ci_builds() {
    let df = read("docker/Dockerfile");
    let ws: toml::Table = read("Cargo.toml").parse().unwrap();
    // Every workspace member's manifest is in the dependency-caching layer
    // (cargo needs them all to load the workspace).
    for m in ws["workspace"]["members"].as_array().unwrap() {
        let m = m.as_str().unwrap();
        assert!(
            df.contains(&format!("COPY {m}/Cargo.toml {m}/")),
            "Dockerfile misses {m}/Cargo.toml"
        );
    }
    assert!(df.contains("COPY Cargo.toml Cargo.lock"));
    // Same features as CI: CI builds the workspace's default features.
    let builds: Vec<&str> = df.lines().filter(|l| l.contains("cargo build")).collect();
    assert!(builds.len() >= 2);
    for b in &builds {
        assert!(b.contains("--release") && b.contains("--locked"), "{b}");
        assert!(
            !b.contains("--features")
                && !b.contains("--no-default-features")
                && !b.contains("--all-features"),
            "{b}"
        );
    }
    let ci = read(".ci/run") + &read("scripts/test");
    assert!(
        !ci.contains("--features") && !ci.contains("--no-default-features"),
        "CI builds default features"
    );
    // The binaries compose runs are copied into the image.
    for bin in ["flowline", "metric-generator", "word_count"] {
        assert!(
            df.contains(&format!("/{bin} ")) || df.contains(&format!("/{bin}\n")),
            "image lacks {bin}"
        );
        assert!(read("docker-compose.yml").contains(bin));
    }
    // The builder's Rust is at least the workspace's rust-version, and the
    // runtime image runs as a non-root user.
    let from = df
        .lines()
        .find(|l| l.starts_with("FROM rust:"))
        .expect("FROM rust:");
    let v = from["FROM rust:".len()..].split('-').next().unwrap();
    let minor = |s: &str| s.split('.').nth(1).unwrap().parse::<u32>().unwrap();
    let want = ws["workspace"]["package"]["rust-version"].as_str().unwrap();
    assert!(
        minor(v) >= minor(want),
        "builder Rust {v} < rust-version {want}"
    );
    let last_user = df.lines().rfind(|l| l.starts_with("USER ")).expect("USER");
    assert_ne!(last_user.trim(), "USER root");
    assert!(root().join(".dockerignore").is_file());
}

/// The generator's metrics and their units (`flowline-metric-generator`).
const METRIC_UNITS: &[(&str, &str)] = &[
    ("cpu_util", "%"),
    ("mem_used_pct", "%"),
    ("disk_io_ops", "ops/s"),
    ("net_rx_bytes", "bytes/s"),
    ("http_latency_ms", "ms"),
];

/// The field types of the templates the compose job's Elasticsearch
/// outputs install (windows, anomalies, current), as the job supplies them.
fn template_fields() -> BTreeMap<String, String> {
    let plan = flowline::config::JobPlan::parse(&read("docker/job.toml")).expect("docker/job.toml");
    let mut out = BTreeMap::new();
    for (name, section) in plan.sink_sections() {
        if section.kind != "elasticsearch" || name == "dead_letter" || name == "late" {
            continue;
        }
        let c: flowline_elasticsearch::EsSinkConfig =
            serde_json::from_value(section.settings.clone()).unwrap();
        let m = c.check().unwrap().mappings.expect("a template");
        flatten(&m["properties"], "", &mut out);
    }
    out
}

fn flatten(props: &Value, prefix: &str, out: &mut BTreeMap<String, String>) {
    for (k, v) in props.as_object().unwrap() {
        let name = format!("{prefix}{k}");
        match v["type"].as_str() {
            Some(t) => {
                out.insert(name, t.to_string());
            }
            None => flatten(&v["properties"], &format!("{name}."), out),
        }
    }
}

fn saved_objects() -> Vec<Value> {
    read("kibana/flowline.ndjson")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect()
}

#[test]
fn kibana_objects_use_fields_the_template_maps() {
    let fields = template_fields();
    let objs = saved_objects();
    let ids: BTreeSet<(String, String)> = objs
        .iter()
        .map(|o| {
            (
                o["type"].as_str().unwrap().to_string(),
                o["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let numeric = |f: &str| matches!(fields.get(f).map(String::as_str), Some("long" | "double"));
    let check = |f: &str, want: &dyn Fn(&str) -> bool, ctx: &str| {
        assert!(
            want(f),
            "{ctx}: field `{f}` is {:?} in the template",
            fields.get(f)
        );
    };
    for o in &objs {
        let (ty, id) = (o["type"].as_str().unwrap(), o["id"].as_str().unwrap());
        assert!(
            o["attributes"].is_object() && o["references"].is_array(),
            "{id}: Kibana 8 import shape"
        );
        for r in o["references"].as_array().unwrap() {
            let key = (
                r["type"].as_str().unwrap().to_string(),
                r["id"].as_str().unwrap().to_string(),
            );
            assert!(ids.contains(&key), "{id} references missing {key:?}");
        }
        let a = &o["attributes"];
        match ty {
            "index-pattern" => check(
                a["timeFieldName"].as_str().unwrap(),
                &|f| fields.get(f).map(String::as_str) == Some("date"),
                id,
            ),
            "visualization" => {
                let vs: Value = serde_json::from_str(a["visState"].as_str().unwrap()).unwrap();
                for agg in vs["aggs"].as_array().unwrap() {
                    let f = agg["params"]["field"].as_str().unwrap();
                    match agg["type"].as_str().unwrap() {
                        "date_histogram" => check(
                            f,
                            &|f| fields.get(f).map(String::as_str) == Some("date"),
                            id,
                        ),
                        "terms" => check(
                            f,
                            &|f| fields.get(f).map(String::as_str) == Some("keyword"),
                            id,
                        ),
                        "avg" | "sum" | "min" | "max" => check(f, &numeric, id),
                        other => panic!("{id}: aggregation {other} not checked"),
                    }
                }
                let ss: Value = serde_json::from_str(
                    a["kibanaSavedObjectMeta"]["searchSourceJSON"]
                        .as_str()
                        .unwrap(),
                )
                .unwrap();
                let query = ss["query"]["query"].as_str().unwrap_or_default();
                if !query.is_empty() {
                    let f = query.split(':').next().unwrap().trim();
                    check(f, &|f| fields.contains_key(f), id);
                }
                // A statistic of the metric values is over one metric (their
                // units differ), with the unit in the title; a host split
                // says how many hosts it shows and which.
                let title = a["title"].as_str().unwrap();
                for agg in vs["aggs"].as_array().unwrap() {
                    let f = agg["params"]["field"].as_str().unwrap_or_default();
                    if agg["schema"] == "metric" && f != "count" {
                        let m = METRIC_UNITS
                            .iter()
                            .find(|(m, _)| query == format!("metric : \"{m}\""))
                            .unwrap_or_else(|| {
                                panic!("{id}: {f} over several metrics ({query:?})")
                            });
                        assert!(
                            title.starts_with(&format!("{} ({})", m.0, m.1)),
                            "{id}: {title}"
                        );
                    }
                    if agg["type"] == "terms" {
                        let size = agg["params"]["size"].as_u64().unwrap();
                        assert_eq!(agg["params"]["orderBy"], "1", "{id}: top hosts by value");
                        assert!(
                            title.contains(&format!("top {size} hosts by value"))
                                || title.contains(&format!("({size} hosts)")),
                            "{id}: {title}"
                        );
                    }
                }
            }
            "search" => {
                for c in a["columns"].as_array().unwrap() {
                    check(c.as_str().unwrap(), &|f| fields.contains_key(f), id);
                }
                for s in a["sort"].as_array().unwrap() {
                    check(s[0].as_str().unwrap(), &|f| fields.contains_key(f), id);
                }
            }
            "dashboard" => {
                let panels: Value =
                    serde_json::from_str(a["panelsJSON"].as_str().unwrap()).unwrap();
                let refs: BTreeSet<&str> = o["references"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["name"].as_str().unwrap())
                    .collect();
                for p in panels.as_array().unwrap() {
                    assert!(
                        refs.contains(p["panelRefName"].as_str().unwrap()),
                        "{id}: panel without reference"
                    );
                }
                assert_eq!(panels.as_array().unwrap().len(), 14);
            }
            other => panic!("unexpected saved object type {other}"),
        }
    }
    // Every metric the generator emits has its own average and p95 panel.
    for (m, ..) in flowline_metric_generator::METRICS {
        for stat in ["avg", "p95"] {
            let id = format!("flowline-{stat}-{}", m.replace('_', "-"));
            assert!(
                ids.contains(&("visualization".to_string(), id.clone())),
                "no panel {id}"
            );
        }
    }
    // The data views cover what the compose job writes.
    let job: toml::Table = read("docker/job.toml").parse().unwrap();
    let titles: BTreeSet<String> = objs
        .iter()
        .filter(|o| o["type"] == "index-pattern")
        .map(|o| o["attributes"]["title"].as_str().unwrap().to_string())
        .collect();
    for section in ["sink", "anomalies", "current"] {
        let index = job[section]["index"].as_str().unwrap();
        let pattern = match index.find('%') {
            Some(i) => format!("{}*", &index[..i]),
            None => index.to_string(),
        };
        assert!(
            titles.contains(&pattern),
            "no data view for [{section}] index {index}"
        );
    }
}

#[test]
fn kibana_objects_are_generated_from_the_script() {
    // The committed NDJSON is what kibana/generate.py writes.
    let before = read("kibana/flowline.ndjson");
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("generate.py");
    std::fs::copy(root().join("kibana/generate.py"), &script).unwrap();
    let st = std::process::Command::new("python3")
        .arg(&script)
        .status()
        .expect("python3");
    assert!(st.success());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("flowline.ndjson")).unwrap(),
        before,
        "run kibana/generate.py and commit"
    );
}

#[test]
fn compose_job_files_parse() {
    for f in ["docker/job.toml", "docker/job-secure.toml"] {
        let text = flowline::config::expand_env(&read(f), |k| {
            (k == "ELASTIC_PASSWORD").then(|| "pw".into())
        })
        .unwrap();
        let plan = flowline::config::JobPlan::parse(&text).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(
            plan.anomalies.is_some() && plan.current.is_some() && plan.dead_letter.is_some(),
            "{f}"
        );
        assert_eq!(plan.source.settings["bootstrap_servers"], "kafka:9092");
    }
}
