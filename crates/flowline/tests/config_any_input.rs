//! No job file panics `flowline`: job files assembled from every section's
//! settings with values in and out of range (negative, zero, huge, NaN,
//! infinite, the wrong type, empty, malformed durations and paths) are
//! either a job or an error, at parse and at build (file connectors, so
//! nothing is contacted). A panic here is a crash at start, where the
//! promise is an error naming the setting and the fix.

use proptest::prelude::*;

/// Values of every kind a setting can be given.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"10s\"".to_string()),
        Just("\"0s\"".to_string()),
        Just("\"-1s\"".to_string()),
        Just("\"1ns\"".to_string()),
        Just("\"1.5s\"".to_string()),
        Just("\"18446744073709551615s\"".to_string()),
        Just("\"9999999999d\"".to_string()),
        Just("\"\"".to_string()),
        Just("\"abc\"".to_string()),
        Just("\"a..b\"".to_string()),
        Just("\".\"".to_string()),
        Just("\"epoch_ms\"".to_string()),
        Just("\"epoch_x\"".to_string()),
        Just("\"host.name\"".to_string()),
        Just(format!("\"{}\"", "x".repeat(2_000))),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("1".to_string()),
        Just("4294967296".to_string()),
        Just("9223372036854775807".to_string()),
        Just("1e300".to_string()),
        Just("nan".to_string()),
        Just("inf".to_string()),
        Just("-inf".to_string()),
        Just("0.5".to_string()),
        Just("999.0".to_string()),
        Just("true".to_string()),
        Just("[]".to_string()),
        Just("[\"host\", \"host\"]".to_string()),
        Just("[\"a\", \"\"]".to_string()),
        Just("{}".to_string()),
    ]
}

const SECTIONS: [(&str, &[&str]); 5] = [
    (
        "window",
        &[
            "size",
            "slide",
            "allowed_lateness",
            "out_of_orderness",
            "max_future",
            "idle_timeout",
        ],
    ),
    (
        "event",
        &[
            "timestamp",
            "timestamp_format",
            "value",
            "values",
            "values_from",
            "metric_prefix",
            "key",
            "max_name_bytes",
        ],
    ),
    (
        "anomaly",
        &[
            "alpha",
            "threshold",
            "consecutive",
            "warmup",
            "relearn_after",
            "forget_after",
        ],
    ),
    ("job", &["workers", "max_state_entries", "name"]),
    ("checkpoint", &["interval", "retain"]),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_job_file_is_a_job_or_an_error(
        picks in prop::collection::vec((0..SECTIONS.len(), any::<prop::sample::Index>(), value()), 0..8),
    ) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.ndjson"), "").unwrap();
        let mut sections: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for (s, key, v) in picks {
            let (name, keys) = SECTIONS[s];
            let k = keys[key.index(keys.len())];
            let lines = sections.entry(name).or_default();
            if !lines.iter().any(|l| l.starts_with(&format!("{k} ="))) {
                lines.push(format!("{k} = {v}"));
            }
        }
        let mut text = format!(
            "[source]\ntype = \"file\"\npath = \"{}\"\n[sink]\ntype = \"file\"\npath = \"{}\"\n",
            dir.path().join("in.ndjson").display(),
            dir.path().join("out.ndjson").display()
        );
        if sections.contains_key("anomaly") {
            text += &format!(
                "[anomalies]\ntype = \"file\"\npath = \"{}\"\n",
                dir.path().join("a.ndjson").display()
            );
        }
        for (name, lines) in &sections {
            text += &format!("[{name}]\n");
            if *name == "checkpoint" {
                text += &format!("dir = \"{}\"\n", dir.path().join("cp").display());
            }
            for l in lines {
                text += l;
                text.push('\n');
            }
        }
        if let Ok(plan) = flowline::config::JobPlan::parse(&text) {
            let _ = flowline::build::build_job(&plan, &flowline::registry());
        }
    }
}
