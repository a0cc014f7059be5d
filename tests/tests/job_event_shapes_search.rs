//! `[event]` against the real services: three shapes seen in the world
//! (Telegraf's JSON, Metricbeat/ECS, flat epoch milliseconds) produced to
//! Kafka, aggregated by `flowline run` (bounded), written to the search
//! server. Each index holds exactly the windows a plain group-by of the
//! values written here gives (count, min and max equal; the sum to the last
//! bits), and the index template the job supplied maps the key fields as
//! keyword and the window bounds as date, read back from the server.

use std::collections::BTreeMap;
use std::time::Duration;

use flowline_integration_tests::job::{all_docs, job_log, kafka_job_head, spawn_job, wait_exit};
use flowline_integration_tests::{create_topic, mapping_properties, produce, unique, TestServices};
use serde_json::{json, Value};

const BASE_S: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const WINDOW_MS: i64 = 10_000;

/// (key field values in key order, window start ms) → count, sum, min, max.
type Groups = BTreeMap<(Vec<String>, i64), (u64, f64, f64, f64)>;

fn add(g: &mut Groups, key: Vec<String>, ms: i64, v: f64) {
    let e = g.entry((key, ms - ms.rem_euclid(WINDOW_MS))).or_insert((
        0,
        0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ));
    e.0 += 1;
    e.1 += v;
    e.2 = e.2.min(v);
    e.3 = e.3.max(v);
}

/// A value with a fraction, different for every `i` and `j`.
fn value(i: i64, j: i64) -> f64 {
    ((i * 7919 + j * 104_729) % 10_000) as f64 / 100.0 + 0.125
}

/// Produces `events` to a new one-partition topic, runs the job with this
/// `[event]` section into a new index, and returns the documents and the
/// mapping of the index template the job installed (read from the server:
/// the index's own mapping would say little, since the server's dynamic
/// mapping guesses much of it).
async fn run(s: &TestServices, name: &str, event: &str, events: &[String]) -> (Vec<Value>, Value) {
    let topic = unique(name);
    create_topic(&s.kafka_bootstrap, &topic, 1).await;
    produce(
        &s.kafka_bootstrap,
        &topic,
        events.iter().map(|e| ("k".to_string(), e.clone(), None)),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("job.toml");
    let index = format!("{topic}-windows");
    std::fs::write(
        &config,
        format!(
            "{head}bounded = true\n[sink]\ntype = \"elasticsearch\"\nurl = \"{e}\"\nindex = \"{index}\"\nreplicas = 0\n\
             [window]\nsize = \"10s\"\nout_of_orderness = \"5s\"\n{event}",
            head = kafka_job_head(&topic, &s.kafka_bootstrap),
            e = s.elasticsearch_url,
        ),
    )
    .unwrap();
    let mut child = spawn_job(&config, 0);
    let status = wait_exit(&mut child, &config, 0, Duration::from_secs(180)).await;
    assert!(
        status.success(),
        "job failed ({status}):\n{}",
        job_log(&config, 0)
    );
    let log = job_log(&config, 0);
    assert!(!log.contains("dead"), "nothing is dead-lettered:\n{log}");
    let es = s.elasticsearch().unwrap();
    let docs = all_docs(&es, &index).await.into_values().collect();
    let t: Value = reqwest::get(format!("{}/_index_template/{index}", s.elasticsearch_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let props =
        t["index_templates"][0]["index_template"]["template"]["mappings"]["properties"].clone();
    assert!(props.is_object(), "the job installed a template: {t}");
    // The index was created from it: every field the template maps has
    // the same type in the index.
    same_types(&props, &mapping_properties(&es, &index).await);
    (docs, props)
}

fn same_types(template: &Value, index: &Value) {
    for (k, t) in template.as_object().unwrap() {
        match t.get("properties") {
            Some(inner) => same_types(inner, &index[k]["properties"]),
            None => assert_eq!(index[k]["type"], t["type"], "{k}: index {index}"),
        }
    }
}

/// The documents as groups, by the key fields `names` (dotted, as the
/// documents carry them).
fn groups_of(docs: &[Value], names: &[&str]) -> Groups {
    let mut g = Groups::new();
    for d in docs {
        let key = names
            .iter()
            .map(|n| {
                d[*n]
                    .as_str()
                    .unwrap_or_else(|| panic!("`{n}` in {d}"))
                    .to_string()
            })
            .collect();
        let ms =
            flowline_connector_api::time::parse_rfc3339_ms(d["window_start"].as_str().unwrap())
                .unwrap();
        let f = |k: &str| d[k].as_f64().unwrap_or_else(|| panic!("`{k}` in {d}"));
        let prev = g.insert(
            (key, ms),
            (d["count"].as_u64().unwrap(), f("sum"), f("min"), f("max")),
        );
        assert!(prev.is_none(), "one document per key and window: {d}");
    }
    g
}

fn assert_same(got: &Groups, want: &Groups) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the same keys and windows"
    );
    for (k, w) in want {
        let g = got[k];
        assert_eq!((g.0, g.2, g.3), (w.0, w.2, w.3), "{k:?}: count, min, max");
        assert!(
            (g.1 - w.1).abs() <= 1e-9 * w.1.abs().max(1.0),
            "{k:?}: sum {} vs {}",
            g.1,
            w.1
        );
    }
}

/// `props` at a dotted path (objects nest their fields under `properties`).
fn mapped<'a>(props: &'a Value, path: &str) -> &'a Value {
    let mut at = props;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        at = &at[*p];
        if i + 1 < parts.len() {
            at = &at["properties"];
        }
    }
    &at["type"]
}

fn assert_template(props: &Value, keys: &[&str]) {
    for k in keys {
        assert_eq!(mapped(props, k), "keyword", "{k}: {props}");
    }
    for d in ["window_start", "window_end"] {
        assert_eq!(mapped(props, d), "date", "{d}: {props}");
    }
    assert_eq!(mapped(props, "count"), "long", "{props}");
    for n in ["sum", "min", "max", "avg", "p95"] {
        assert_eq!(mapped(props, n), "double", "{n}: {props}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegraf_json_epoch_seconds_and_fields() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let (mut events, mut want) = (Vec::new(), Groups::new());
    for i in 0..240i64 {
        let (host, cpu) = (format!("web-{}", i % 3), format!("cpu{}", i % 2));
        let t = BASE_S + i / 4;
        let (idle, user) = (value(i, 1), value(i, 2));
        events.push(
            json!({"fields": {"usage_idle": idle, "usage_user": user}, "name": "cpu",
                   "tags": {"cpu": cpu, "host": host}, "timestamp": t})
            .to_string(),
        );
        for (m, v) in [("cpu.usage_idle", idle), ("cpu.usage_user", user)] {
            add(
                &mut want,
                vec![host.clone(), cpu.clone(), m.into()],
                t * 1000,
                v,
            );
        }
    }
    let (docs, props) = run(
        s,
        "shape-telegraf",
        "[event]\ntimestamp_format = \"epoch_s\"\nkey = [\"tags.host\", \"tags.cpu\"]\nvalues_from = \"fields\"\nmetric_prefix = \"name\"\n",
        &events,
    )
    .await;
    assert_same(
        &groups_of(&docs, &["tags.host", "tags.cpu", "metric"]),
        &want,
    );
    assert_template(&props, &["tags.host", "tags.cpu", "metric"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metricbeat_ecs_offsets_and_several_values() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let (mut events, mut want) = (Vec::new(), Groups::new());
    for i in 0..240i64 {
        let host = format!("web-{}", i % 4);
        let ms = (BASE_S - 3600) * 1000 + i * 250;
        // Written at +01:00: 2026-01-01T00:00:00.000+01:00 is 23:00 UTC.
        let local = jiff::Timestamp::from_millisecond(ms + 3_600_000).unwrap();
        let ts = format!("{}+01:00", local.strftime("%Y-%m-%dT%H:%M:%S%.3f"));
        let (cpu, mem) = (value(i, 3) / 100.0, value(i, 4) / 100.0);
        events.push(
            json!({"@timestamp": ts, "host": {"name": host},
                   "system": {"cpu": {"total": {"pct": cpu}}, "memory": {"used": {"pct": mem}}}})
            .to_string(),
        );
        for (m, v) in [
            ("system.cpu.total.pct", cpu),
            ("system.memory.used.pct", mem),
        ] {
            add(&mut want, vec![host.clone(), m.into()], ms, v);
        }
    }
    let (docs, props) = run(
        s,
        "shape-ecs",
        "[event]\ntimestamp = \"@timestamp\"\nkey = [\"host.name\"]\nvalues = [\"system.cpu.total.pct\", \"system.memory.used.pct\"]\n",
        &events,
    )
    .await;
    assert_same(&groups_of(&docs, &["host.name", "metric"]), &want);
    assert_template(&props, &["host.name", "metric"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flat_epoch_milliseconds_with_a_custom_key() {
    let s = TestServices::get().await.unwrap_or_else(|e| panic!("{e}"));
    let (mut events, mut want) = (Vec::new(), Groups::new());
    for i in 0..300i64 {
        let (device, sensor) = (format!("d-{}", i % 5), ["temp", "hum"][(i % 2) as usize]);
        let ms = BASE_S * 1000 + i * 137;
        let v = value(i, 5) - 40.0;
        events.push(
            json!({"device": device, "sensor": sensor, "reading": v, "ts_ms": ms}).to_string(),
        );
        add(&mut want, vec![device, sensor.into()], ms, v);
    }
    let (docs, props) = run(
        s,
        "shape-flat",
        "[event]\ntimestamp = \"ts_ms\"\ntimestamp_format = \"epoch_ms\"\nkey = [\"device\", \"sensor\"]\nvalue = \"reading\"\n",
        &events,
    )
    .await;
    assert_same(&groups_of(&docs, &["device", "sensor"]), &want);
    assert_template(&props, &["device", "sensor"]);
    assert!(
        props.get("host").is_none() && props.get("metric").is_none(),
        "no field of another job's shape: {props}"
    );
}
