//! `[event]` end to end on files: events of other shapes (ECS-style nested
//! fields and `@timestamp` with offsets; flat epoch milliseconds; decimal
//! epoch seconds) aggregate to exactly what a plain group-by of the values
//! the test wrote gives; events that cannot be read go to the dead-letter
//! file once, with a reason naming the path.

use std::collections::BTreeMap;
use std::path::Path;

mod common;
use common::*;

#[test]
fn ecs_style_nested_fields_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let s = samples();
    let offsets = [60, -330, 0, 345, -720];
    let mut lines: Vec<String> = s
        .iter()
        .enumerate()
        .map(|(i, (h, ms, v))| {
            serde_json::json!({
                "@timestamp": rfc3339_at(*ms, offsets[i % offsets.len()]),
                "host": h, "metric": "cpu",
                "system": {"cpu": {"total": {"pct": v}}},
                "agent": {"type": "metricbeat"}
            })
            .to_string()
        })
        .collect();
    // Unreadable ones, each dead-lettered once naming the path.
    lines.push(r#"{"@timestamp":"2026-01-01T00:00:05","host":"web-0","metric":"cpu","system":{"cpu":{"total":{"pct":1}}}}"#.into());
    lines.push(r#"{"@timestamp":"2026-01-01T00:00:05Z","host":"web-0","metric":"cpu","system":{"cpu":{"total":{"pct":"n/a"}}}}"#.into());
    lines.push(r#"{"@timestamp":"2026-01-01T00:00:05Z","host":"web-0","metric":"cpu","system":{"cpu":{}}}"#.into());
    let (got, dead) = run(
        dir.path(),
        "[event]\ntimestamp = \"@timestamp\"\nvalue = \"system.cpu.total.pct\"\n",
        &lines,
    );
    assert_same(&got, &group_by(&s));
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[0].contains("`@timestamp`") && reasons[0].contains("offset"),
        "{}",
        reasons[0]
    );
    assert!(
        reasons[1].contains("`system.cpu.total.pct` = \"n/a\""),
        "{}",
        reasons[1]
    );
    assert!(
        reasons[2].contains("missing field `system.cpu.total.pct`"),
        "{}",
        reasons[2]
    );
}

#[test]
fn flat_epoch_milliseconds_and_decimal_seconds() {
    let s = samples();
    for (format, time) in [
        (
            "epoch_ms",
            Box::new(|ms: i64| ms.to_string()) as Box<dyn Fn(i64) -> String>,
        ),
        (
            "epoch_s",
            Box::new(|ms: i64| format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let lines: Vec<String> = s
            .iter()
            .map(|(h, ms, v)| {
                format!(
                    r#"{{"host":"{h}","metric":"load","t":{},"reading":{v}}}"#,
                    time(*ms)
                )
            })
            .collect();
        let (got, dead) = run(
            dir.path(),
            &format!("[event]\ntimestamp = \"t\"\ntimestamp_format = \"{format}\"\nvalue = \"reading\"\n"),
            &lines,
        );
        assert_same(&got, &group_by(&s));
        assert!(dead.is_empty(), "{format}: {dead:?}");
    }
}
fn windows_by(dir: &Path, names: &[&str]) -> BTreeMap<(Vec<String>, i64), (u64, f64)> {
    let mut m = BTreeMap::new();
    for l in std::fs::read_to_string(dir.join("windows.ndjson"))
        .unwrap()
        .lines()
    {
        let d: serde_json::Value = serde_json::from_str(l).unwrap();
        let obj = d.as_object().unwrap();
        for n in names {
            assert!(obj.contains_key(*n), "{n} missing: {l}");
        }
        assert!(!obj.contains_key("host") || names.contains(&"host"), "{l}");
        assert!(
            !obj.contains_key("metric") || names.contains(&"metric"),
            "{l}"
        );
        let start: jiff::Timestamp = d["window_start"].as_str().unwrap().parse().unwrap();
        let key = names
            .iter()
            .map(|n| d[*n].as_str().unwrap().to_string())
            .collect();
        let v = (d["count"].as_u64().unwrap(), d["sum"].as_f64().unwrap());
        assert!(m.insert((key, start.as_millisecond()), v).is_none(), "{l}");
    }
    m
}

#[test]
fn key_fields_from_paths_under_their_dotted_names() {
    let s = samples();
    // One key path, nested (ECS `host.name`), no metric.
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = s
        .iter()
        .map(|(h, ms, v)| {
            serde_json::json!({"@timestamp": rfc3339_at(*ms, 120), "host": {"name": h},
                "system": {"load": {"1": v}}})
            .to_string()
        })
        .collect();
    let current = dir.path().join("current.ndjson");
    run(
        dir.path(),
        &format!(
            "[event]\ntimestamp = \"@timestamp\"\nvalue = \"system.load.1\"\nkey = [\"host.name\"]\n\
             [current]\ntype = \"file\"\npath = \"{}\"\nmode = \"overwrite\"\n",
            current.display()
        ),
        &lines,
    );
    // The current-status documents name the key the same way.
    let text = std::fs::read_to_string(&current).unwrap();
    assert!(!text.is_empty());
    for l in text.lines() {
        let d: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(d["host.name"].as_str().unwrap().starts_with("web-"), "{l}");
        assert!(d.get("host").is_none() && d.get("metric").is_none(), "{l}");
    }
    let got = windows_by(dir.path(), &["host.name"]);
    let want: BTreeMap<(Vec<String>, i64), (u64, f64)> = group_by(&s)
        .into_iter()
        .map(|((h, t), (c, sum, _, _))| ((vec![h], t), (c, sum)))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, w) in &want {
        assert_eq!(got[k].0, w.0, "{k:?}");
        assert!((got[k].1 - w.1).abs() <= 1e-9 * w.1.abs().max(1.0), "{k:?}");
    }

    // Three key paths (one a number): a site, a rack and a sensor kind.
    let dir = tempfile::tempdir().unwrap();
    let key_of = |i: usize| {
        (
            format!("site-{}", i % 2),
            (i % 3) as i64,
            ["temp", "hum"][i / 2 % 2],
        )
    };
    let lines: Vec<String> = s
        .iter()
        .enumerate()
        .map(|(i, (_, ms, v))| {
            let (site, rack, kind) = key_of(i);
            serde_json::json!({"ts": ms, "loc": {"site": site, "rack": rack}, "kind": kind, "v": v})
                .to_string()
        })
        .collect();
    run(
        dir.path(),
        "[event]\ntimestamp = \"ts\"\ntimestamp_format = \"epoch_ms\"\nvalue = \"v\"\nkey = [\"loc.site\", \"loc.rack\", \"kind\"]\n",
        &lines,
    );
    let got = windows_by(dir.path(), &["loc.site", "loc.rack", "kind"]);
    let mut want: BTreeMap<(Vec<String>, i64), (u64, f64)> = BTreeMap::new();
    for (i, (_, ms, v)) in s.iter().enumerate() {
        let (site, rack, kind) = key_of(i);
        let e = want
            .entry((
                vec![site, rack.to_string(), kind.to_string()],
                ms - ms.rem_euclid(10_000),
            ))
            .or_default();
        e.0 += 1;
        e.1 += v;
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, w) in &want {
        assert_eq!(got[k].0, w.0, "{k:?}");
        assert!((got[k].1 - w.1).abs() <= 1e-9 * w.1.abs().max(1.0), "{k:?}");
    }
}

/// Adds `v` to the (key, window) cell of a group-by.
fn add(m: &mut BTreeMap<(Vec<String>, i64), (u64, f64)>, key: Vec<String>, ms: i64, v: f64) {
    let e = m.entry((key, ms - ms.rem_euclid(10_000))).or_default();
    e.0 += 1;
    e.1 += v;
}

fn assert_sums(
    got: &BTreeMap<(Vec<String>, i64), (u64, f64)>,
    want: &BTreeMap<(Vec<String>, i64), (u64, f64)>,
) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, w) in want {
        assert_eq!(got[k].0, w.0, "{k:?}");
        assert!(
            (got[k].1 - w.1).abs() <= 1e-9 * w.1.abs().max(1.0),
            "{k:?}: {} vs {}",
            got[k].1,
            w.1
        );
    }
}

#[test]
fn telegraf_json_every_numeric_field_a_series() {
    let dir = tempfile::tempdir().unwrap();
    let s = samples();
    let mut want = BTreeMap::new();
    let lines: Vec<String> = s
        .iter()
        .enumerate()
        .map(|(i, (h, ms, v))| {
            // Whole seconds, as Telegraf writes them.
            let sec = ms.div_euclid(1000);
            let cpu = format!("cpu{}", i % 2);
            let (idle, user) = (100.0 - v.abs(), v.abs() / 2.0);
            for (f, x) in [("usage_idle", idle), ("usage_user", user)] {
                add(
                    &mut want,
                    vec![h.clone(), cpu.clone(), format!("cpu.{f}")],
                    sec * 1000,
                    x,
                );
            }
            serde_json::json!({"fields": {"usage_idle": idle, "usage_user": user, "state": "ok"},
                "name": "cpu", "tags": {"cpu": cpu, "host": h}, "timestamp": sec})
            .to_string()
        })
        .collect();
    let (_, dead) = run(
        dir.path(),
        "[event]\ntimestamp_format = \"epoch_s\"\nvalues_from = \"fields\"\nmetric_prefix = \"name\"\nkey = [\"tags.host\", \"tags.cpu\"]\n",
        &lines,
    );
    assert!(dead.is_empty(), "{dead:?}");
    assert_sums(
        &windows_by(dir.path(), &["tags.host", "tags.cpu", "metric"]),
        &want,
    );
}

#[test]
fn ecs_several_values_the_bad_one_dead_lettered_once_the_others_kept() {
    let dir = tempfile::tempdir().unwrap();
    let s = samples();
    let mut want = BTreeMap::new();
    let lines: Vec<String> = s
        .iter()
        .enumerate()
        .map(|(i, (h, ms, v))| {
            add(
                &mut want,
                vec![h.clone(), "system.cpu.total.pct".into()],
                *ms,
                *v,
            );
            // Every 10th event's memory value is not a number.
            let mem = if i % 10 == 0 {
                serde_json::json!("n/a")
            } else {
                add(
                    &mut want,
                    vec![h.clone(), "system.memory.used.pct".into()],
                    *ms,
                    v / 4.0,
                );
                serde_json::json!(v / 4.0)
            };
            serde_json::json!({"@timestamp": rfc3339_at(*ms, 60), "host": {"name": h},
                "system": {"cpu": {"total": {"pct": v}}, "memory": {"used": {"pct": mem}}}})
            .to_string()
        })
        .collect();
    let (_, dead) = run(
        dir.path(),
        "[event]\ntimestamp = \"@timestamp\"\nvalues = [\"system.cpu.total.pct\", \"system.memory.used.pct\"]\nkey = [\"host.name\"]\n",
        &lines,
    );
    assert_sums(&windows_by(dir.path(), &["host.name", "metric"]), &want);
    assert_eq!(dead.len(), 27, "each partly bad event once");
    for d in &dead {
        assert_eq!(
            d["reason"].as_str().unwrap(),
            "invalid metric event: `system.memory.used.pct` = \"n/a\" is not a finite number"
        );
    }
}

/// How a job reads its events is part of its job graph: the windows open
/// at a checkpoint hold values read one way, so a job reading them another
/// way refuses that checkpoint, naming both graphs, rather than mixing the
/// two readings in one window. A checkpoint from before the graph recorded
/// `[event]` (as earlier releases wrote it) still restores, with a warning.
#[test]
fn a_checkpoint_taken_with_another_event_shape_is_refused_by_name() {
    use flowline_checkpoint::CheckpointStore;
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = samples()
        .iter()
        .map(|(h, ms, v)| {
            serde_json::json!({"@timestamp": rfc3339_at(*ms, 0), "host": h, "metric": "cpu",
                "value": v, "doubled": v * 2.0})
            .to_string()
        })
        .collect();
    let cp = dir.path().join("cp");
    let shape = |value: &str| {
        format!(
            "[event]\ntimestamp = \"@timestamp\"\nvalue = \"{value}\"\n[checkpoint]\ndir = \"{}\"\ninterval = \"1s\"\n",
            cp.display()
        )
    };
    let (got, _) = run(dir.path(), &shape("value"), &lines);
    assert_same(&got, &group_by(&samples()));
    let rerun = |value: &str| {
        let job = std::fs::read_to_string(dir.path().join("job.toml"))
            .unwrap()
            .replace(&shape("value"), &shape(value));
        std::fs::write(dir.path().join("job.toml"), &job).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowline"))
            .env("FLOWLINE_LOG", "warn")
            .args(["run", "--config"])
            .arg(dir.path().join("job.toml"))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = rerun("doubled");
    assert!(!ok, "refused, not mixed: {err}");
    assert!(
        err.contains("cannot be restored")
            && err.contains("value `value`")
            && err.contains("value `doubled`"),
        "{err}"
    );

    // The checkpoint as a release before the note wrote it.
    let mut store = flowline_checkpoint::LocalDirStore::new(&cp).unwrap();
    let mut old = store.latest().unwrap().unwrap();
    old.graph = flowline_checkpoint::graph::without_notes(&old.graph);
    assert!(!old.graph.contains("event"), "{}", old.graph);
    old.id += 1;
    store.save(&old).unwrap();
    let (ok, err) = rerun("value");
    assert!(ok && err.contains("did not record"), "{err}");
}
