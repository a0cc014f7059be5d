//! `[window] aggregates` end to end on files: the chosen aggregates only,
//! in order; stddev, first and last against a two-pass group-by; and a
//! checkpoint of the other window state refused by name.

use std::collections::BTreeMap;

mod common;
use common::*;

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
    let out = rerun_with_aggregates(dir.path(), "[\"count\", \"max\", \"p90\", \"avg\"]");
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
#[test]
fn stddev_first_and_last_against_a_two_pass_group_by() {
    let dir = tempfile::tempdir().unwrap();
    // Out of order by up to 1.5 s, with repeated times: first and last go
    // by event time, ties by arrival.
    let s: Vec<(String, i64, f64)> = samples()
        .into_iter()
        .enumerate()
        .map(|(i, (h, ms, v))| (h, if i % 5 == 0 { ms - ms % 1000 } else { ms }, v))
        .collect();
    let lines: Vec<String> = s
        .iter()
        .map(|(h, ms, v)| {
            serde_json::json!({"host": h, "metric": "cpu", "value": v, "timestamp": rfc3339_at(*ms, 0)})
                .to_string()
        })
        .collect();
    let (_, dead) = run(
        dir.path(),
        "aggregates = [\"count\", \"stddev\", \"first\", \"last\"]\n",
        &lines,
    );
    assert!(dead.is_empty(), "{dead:?}");
    let mut groups: BTreeMap<(String, i64), Vec<(i64, f64)>> = BTreeMap::new();
    for (h, ms, v) in &s {
        groups
            .entry((h.clone(), ms - ms.rem_euclid(10_000)))
            .or_default()
            .push((*ms, *v));
    }
    let text = std::fs::read_to_string(dir.path().join("windows.ndjson")).unwrap();
    assert_eq!(text.lines().count(), groups.len());
    for l in text.lines() {
        let d: serde_json::Value = serde_json::from_str(l).unwrap();
        let start: jiff::Timestamp = d["window_start"].as_str().unwrap().parse().unwrap();
        let g = &groups[&(
            d["host"].as_str().unwrap().to_string(),
            start.as_millisecond(),
        )];
        let n = g.len() as f64;
        let mean = g.iter().map(|x| x.1).sum::<f64>() / n;
        let sd = (g.iter().map(|x| (x.1 - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert_eq!(d["count"].as_u64(), Some(g.len() as u64), "{l}");
        let got = d["stddev"].as_f64().unwrap();
        assert!(
            (got - sd).abs() <= 1e-9 * sd.max(1.0),
            "{l}: stddev {got} vs {sd}"
        );
        let t_min = g.iter().map(|x| x.0).min().unwrap();
        let t_max = g.iter().map(|x| x.0).max().unwrap();
        let first = g.iter().find(|x| x.0 == t_min).unwrap().1;
        let last = g.iter().rev().find(|x| x.0 == t_max).unwrap().1;
        assert_eq!(d["first"].as_f64(), Some(first), "{l}");
        assert_eq!(d["last"].as_f64(), Some(last), "{l}");
        assert_eq!(
            l.matches("\":").count(),
            8,
            "host, metric, bounds and the four chosen: {l}"
        );
    }
}

#[test]
fn a_checkpoint_of_the_other_window_state_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = samples()
        .iter()
        .map(|(h, ms, v)| {
            serde_json::json!({"host": h, "metric": "cpu", "value": v, "timestamp": rfc3339_at(*ms, 0)})
                .to_string()
        })
        .collect();
    let cp = dir.path().join("cp");
    let checkpoint = format!(
        "[checkpoint]\ndir = \"{}\"\ninterval = \"1s\"\n",
        cp.display()
    );
    run(dir.path(), &checkpoint, &lines);
    assert!(
        std::fs::read_dir(&cp).unwrap().count() > 0,
        "the first run leaves a checkpoint"
    );
    // The same job keeping stddev: its window state is stored differently.
    let out = rerun_with_aggregates(dir.path(), "[\"count\", \"stddev\"]");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused, not misread: {err}");
    assert!(
        err.contains("aggregate[stats/exact-sum+moments/sketch-far]")
            && err.contains("cannot be restored"),
        "{err}"
    );
}

/// Values near ±1e300 have squared deviations no f64 holds: a job asking
/// for `stddev` refuses the record that would overflow it (dead-lettered,
/// with the reason), a job asking only for first and last keeps every
/// value, and both keep the exact sum.
#[test]
fn huge_values_are_refused_only_for_the_aggregates_the_job_computes() {
    let dir = tempfile::tempdir().unwrap();
    let ev = |ms: i64, v: f64| {
        serde_json::json!({"host": "h", "metric": "m", "value": v, "timestamp": rfc3339_at(ms, 0)})
            .to_string()
    };
    let lines = [
        ev(1_000, 1e300),
        ev(2_000, -1e300),
        ev(3_000, 1e200),
        ev(30_000, 1.0),
    ];
    let first_window = |dir: &std::path::Path| -> serde_json::Value {
        let text = std::fs::read_to_string(dir.join("windows.ndjson")).unwrap();
        let first = text.lines().next().expect("a window");
        serde_json::from_str(first).unwrap()
    };

    let (_, dead) = run(
        dir.path(),
        "aggregates = [\"first\", \"last\", \"count\", \"sum\", \"min\", \"max\"]\n",
        &lines,
    );
    assert!(dead.is_empty(), "nothing refused without stddev: {dead:?}");
    let w = first_window(dir.path());
    assert_eq!(
        (&w["count"], &w["first"], &w["last"], &w["sum"]),
        (
            &serde_json::json!(3),
            &serde_json::json!(1e300),
            &serde_json::json!(1e200),
            &serde_json::json!(1e200)
        ),
        "{w}"
    );

    let (_, dead) = run(
        dir.path(),
        "aggregates = [\"stddev\", \"count\", \"sum\", \"min\", \"max\"]\n",
        &lines,
    );
    // After 1e300, both others are too far from the mean (1e300).
    assert_eq!(dead.len(), 2, "{dead:?}");
    for (d, v) in dead.iter().zip(["-1e+300", "1e+200"]) {
        assert!(
            d["reason"].as_str().unwrap().contains("standard deviation")
                && d["payload"].as_str().unwrap().contains(v),
            "{d}"
        );
    }
    let w = first_window(dir.path());
    assert_eq!(
        (&w["count"], &w["sum"]),
        (&serde_json::json!(1), &serde_json::json!(1e300)),
        "{w}"
    );
}
