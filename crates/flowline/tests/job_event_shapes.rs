//! `[event]` end to end on files: events of other shapes (ECS-style nested
//! fields and `@timestamp` with offsets; flat epoch milliseconds; decimal
//! epoch seconds) aggregate to exactly what a plain group-by of the values
//! the test wrote gives; events that cannot be read go to the dead-letter
//! file once, with a reason naming the path.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// (host, window start ms) → count, sum, min, max.
type Windows = BTreeMap<(String, i64), (u64, f64, f64, f64)>;

const BASE_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// `(host, ms, value)` of the good events: 3 hosts, 90 s, out of order by
/// up to 1.5 s, values with fractions.
fn samples() -> Vec<(String, i64, f64)> {
    let mut v = Vec::new();
    for i in 0..270i64 {
        let host = format!("web-{}", i % 3);
        let ms = BASE_MS + i * 333 - (i * 7919 % 1_500);
        let value = ((i * 37) % 1000) as f64 / 8.0 - 20.0;
        v.push((host, ms, value));
    }
    v
}

/// An RFC 3339 time of `ms` written in the offset `minutes` east of UTC,
/// computed here with jiff's civil arithmetic, not the job's parser.
fn rfc3339_at(ms: i64, minutes: i32) -> String {
    let off = jiff::tz::Offset::from_seconds(minutes * 60).unwrap();
    let t = jiff::Timestamp::from_millisecond(ms).unwrap();
    let c = off.to_datetime(t);
    let sign = if minutes < 0 { '-' } else { '+' };
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}{sign}{:02}:{:02}",
        c.date(),
        c.hour(),
        c.minute(),
        c.second(),
        c.subsec_nanosecond() / 1_000_000,
        minutes.abs() / 60,
        minutes.abs() % 60
    )
}

fn group_by(samples: &[(String, i64, f64)]) -> Windows {
    let mut m = BTreeMap::new();
    for (h, ms, v) in samples {
        let e = m.entry((h.clone(), ms - ms.rem_euclid(10_000))).or_insert((
            0u64,
            0.0f64,
            f64::MAX,
            f64::MIN,
        ));
        e.0 += 1;
        e.1 += v;
        e.2 = e.2.min(*v);
        e.3 = e.3.max(*v);
    }
    m
}

/// Runs the job on `lines` with this `[event]` section; the window
/// documents by (host, window start) and the dead letters.
fn run(dir: &Path, event: &str, lines: &[String]) -> (Windows, Vec<serde_json::Value>) {
    std::fs::write(dir.join("events.ndjson"), lines.join("\n") + "\n").unwrap();
    let d = dir.display();
    let job = format!(
        "[job]\nname = \"shapes\"\n[source]\ntype = \"file\"\npath = \"{d}/events.ndjson\"\n\
         [sink]\ntype = \"file\"\npath = \"{d}/windows.ndjson\"\nmode = \"overwrite\"\n\
         [dead_letter]\ntype = \"file\"\npath = \"{d}/dead.ndjson\"\nmode = \"overwrite\"\n\
         [window]\nsize = \"10s\"\nout_of_orderness = \"2s\"\n{event}"
    );
    std::fs::write(dir.join("job.toml"), job).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flowline"))
        .env("FLOWLINE_LOG", "warn")
        .args(["run", "--config"])
        .arg(dir.join("job.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut windows = BTreeMap::new();
    for l in std::fs::read_to_string(dir.join("windows.ndjson"))
        .unwrap()
        .lines()
    {
        let d: serde_json::Value = serde_json::from_str(l).unwrap();
        if d.get("host").is_none() {
            // Other key names: read by `windows_by`.
            continue;
        }
        let start: jiff::Timestamp = d["window_start"].as_str().unwrap().parse().unwrap();
        let key = (
            d["host"].as_str().unwrap().to_string(),
            start.as_millisecond(),
        );
        let v = (
            d["count"].as_u64().unwrap(),
            d["sum"].as_f64().unwrap(),
            d["min"].as_f64().unwrap(),
            d["max"].as_f64().unwrap(),
        );
        assert!(
            windows.insert(key, v).is_none(),
            "one document per window: {l}"
        );
    }
    let dead = std::fs::read_to_string(dir.join("dead.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (windows, dead)
}

fn assert_same(got: &Windows, want: &Windows) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, w) in want {
        let g = got[k];
        assert_eq!((g.0, g.2, g.3), (w.0, w.2, w.3), "{k:?}");
        assert!(
            (g.1 - w.1).abs() <= 1e-9 * w.1.abs().max(1.0),
            "{k:?}: sum {} vs {}",
            g.1,
            w.1
        );
    }
}

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

#[test]
fn chosen_aggregates_only_in_the_given_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = samples();
    let lines: Vec<String> = s
        .iter()
        .map(|(h, ms, v)| {
            serde_json::json!({"host": h, "metric": "cpu", "value": v,
                "timestamp": rfc3339_at(*ms, 0)})
            .to_string()
        })
        .collect();
    let (got, dead) = run(
        dir.path(),
        "[event]\n# the default shape, written out\ntimestamp = \"timestamp\"\n",
        &lines,
    );
    assert!(dead.is_empty());
    assert_same(&got, &group_by(&s));

    // Again with four aggregates: each document has exactly these fields.
    let job = std::fs::read_to_string(dir.path().join("job.toml"))
        .unwrap()
        .replace(
            "[window]\n",
            "[window]\naggregates = [\"count\", \"max\", \"p90\", \"avg\"]\n",
        );
    std::fs::write(dir.path().join("job.toml"), job).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flowline"))
        .env("FLOWLINE_LOG", "warn")
        .args(["run", "--config"])
        .arg(dir.path().join("job.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.path().join("windows.ndjson")).unwrap();
    let want = group_by(&s);
    let mut values: BTreeMap<(String, i64), Vec<f64>> = BTreeMap::new();
    for (h, ms, v) in &s {
        values
            .entry((h.clone(), ms - ms.rem_euclid(10_000)))
            .or_default()
            .push(*v);
    }
    assert_eq!(text.lines().count(), want.len());
    for l in text.lines() {
        let keys: Vec<&str> = l
            .trim_matches(|c| c == '{' || c == '}')
            .split(',')
            .map(|kv| kv.split(':').next().unwrap().trim_matches('"'))
            .collect();
        assert_eq!(
            keys,
            [
                "host",
                "metric",
                "window_start",
                "window_end",
                "count",
                "max",
                "p90",
                "avg"
            ],
            "{l}"
        );
        let d: serde_json::Value = serde_json::from_str(l).unwrap();
        let start: jiff::Timestamp = d["window_start"].as_str().unwrap().parse().unwrap();
        let k = (
            d["host"].as_str().unwrap().to_string(),
            start.as_millisecond(),
        );
        let (count, sum, _, max) = want[&k];
        assert_eq!(d["count"].as_u64(), Some(count));
        assert_eq!(d["max"].as_f64(), Some(max));
        assert!(
            (d["avg"].as_f64().unwrap() - sum / count as f64).abs() <= 1e-12 * max.abs().max(1.0)
        );
        // Nearest rank ⌈0.9·n⌉ of the sorted values, within the sketch's
        // 2 % (of its magnitude) and within [min, max].
        let mut v = values[&k].clone();
        v.sort_by(f64::total_cmp);
        let exact = v[((0.9 * v.len() as f64).ceil() as usize).max(1) - 1];
        let p90 = d["p90"].as_f64().unwrap();
        assert!(
            (p90 - exact).abs() <= 0.02 * exact.abs() + 1e-9,
            "{k:?}: p90 {p90} vs {exact}"
        );
    }
}

/// The window documents of a run, by (key field values, window start).
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
