//! Tests of the job file's parsing and checks.

use super::*;

const SHORT: &str = r#"
[source]
type = "file"
path = "events.ndjson"

[sink]
type = "file"
path = "windows.ndjson"

[window]
size = "10s"
allowed_lateness = "0s"
out_of_orderness = "3s"
"#;

#[test]
fn the_short_job_file_parses_with_defaults() {
    let p = JobPlan::parse(SHORT).unwrap();
    assert_eq!(p.source.kind, "file");
    assert_eq!(
        p.source.settings,
        serde_json::json!({"path": "events.ndjson"})
    );
    assert_eq!(p.out_of_orderness, Duration::from_secs(3));
    assert_eq!(p.window.spec, Tumbling::of(Duration::from_secs(10)));
    assert!(p.checkpoint.is_none() && p.dead_letter.is_none());
    assert_eq!(p.job.name, "flowline-metrics");
}

#[test]
fn bad_config_names_the_field_and_the_fix() {
    let e = JobPlan::parse(&SHORT.replace("size = \"10s\"", "size = \"10 parsecs\""))
        .unwrap_err()
        .to_string();
    assert!(e.contains("window.size") && e.contains("Fix"), "{e}");
    let e = JobPlan::parse(&SHORT.replace("[window]", "[window]\nsizee = \"1s\""))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `sizee`"), "{e}");
    let e = JobPlan::parse(&SHORT.replace("type = \"file\"\npath = \"events", "path = \"events"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("source.type") && e.contains("is missing"), "{e}");
    let e = JobPlan::parse("[sink]\ntype = \"file\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing field `source`"), "{e}");
    for (extra, field) in [
        (
            "[job]\nchannel_capacity = 9223372036854775807\n",
            "job.channel_capacity",
        ),
        ("[job]\nchannel_capacity = 0\n", "job.channel_capacity"),
    ] {
        let e = JobPlan::parse(&format!("{extra}{SHORT}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(field) && e.contains("Fix"), "{e}");
    }
    let e = JobPlan::parse(&SHORT.replace("size = \"10s\"", "size = \"1000000000000d\""))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("window.size") && e.contains("outside 0s to 100years"),
        "{e}"
    );
    let e = JobPlan::parse(&format!("{SHORT}\n[anomaly]\nconsecutive = 0\n"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("anomaly.consecutive") && e.contains("Fix"),
        "{e}"
    );
}

#[test]
fn window_lengths_are_whole_milliseconds_and_bounded_per_event() {
    let w = |size: &str, slide: &str| {
        let text = SHORT.replace(
            "size = \"10s\"",
            &format!("size = \"{size}\"\nslide = \"{slide}\""),
        );
        JobPlan::parse(&text).map(|p| p.window.spec)
    };
    assert!(w("10s", "5s").is_ok());
    assert!(
        w("10s", "1ms").is_ok(),
        "10 000 windows per event is the limit"
    );
    for (size, slide, field) in [
        ("1ns", "1ms", "window.size"),
        ("1500us", "1ms", "window.size"),
        ("10s", "999us", "window.slide"),
        ("10001ms", "1ms", "window.slide"),
        ("99years", "5s", "window.slide"),
    ] {
        let e = w(size, slide).unwrap_err().to_string();
        assert!(
            e.contains(field) && e.contains("Fix"),
            "{size}/{slide}: {e}"
        );
    }
}

#[test]
fn checkpoint_store_is_a_dir_or_kafka() {
    let p = JobPlan::parse(&format!("{SHORT}\n[checkpoint]\ndir = \"c\"\n")).unwrap();
    assert!(matches!(p.checkpoint, Some((StoreChoice::Dir(_), _))));
    // The scale-out store needs the input keyed (see parallel.rs).
    let keyed = SHORT.replace("[sink]", "keyed_by = [\"host\"]\n[sink]");
    assert!(keyed.contains("keyed_by"));
    let p = JobPlan::parse(&format!(
        "{keyed}\n[checkpoint]\ninterval = \"2s\"\n[checkpoint.kafka]\nbootstrap_servers = \"k:9092\"\n"
    ))
    .unwrap();
    match p.checkpoint {
        Some((StoreChoice::Kafka(k), iv)) => {
            assert_eq!(k.topic, "flowline-checkpoints");
            assert_eq!(iv, Duration::from_secs(2));
        }
        other => panic!("{other:?}"),
    }
    let e = JobPlan::parse(&format!("{SHORT}\n[checkpoint]\ninterval = \"2s\"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("names no store") && e.contains("Fix"), "{e}");
    let e = JobPlan::parse(&format!(
        "{SHORT}\n[checkpoint]\n[checkpoint.kafka]\ntopic = \"t\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("bootstrap_servers"), "{e}");
}

#[test]
fn max_state_entries_defaults_to_a_million_and_refuses_zero() {
    assert_eq!(
        JobPlan::parse(SHORT).unwrap().max_state_entries,
        DEFAULT_MAX_STATE_ENTRIES
    );
    let set = |v: &str| JobPlan::parse(&format!("[job]\nmax_state_entries = {v}\n{SHORT}"));
    assert_eq!(set("5000").unwrap().max_state_entries, 5000);
    let e = set("0").unwrap_err().to_string();
    assert!(
        e.contains("job.max_state_entries") && e.contains("Fix: remove it (default 1000000)"),
        "{e}"
    );
    let e = set("-1").unwrap_err().to_string();
    assert!(e.contains("max_state_entries"), "{e}");
}

#[test]
fn max_name_bytes_defaults_to_a_kilobyte_and_is_bounded() {
    assert_eq!(JobPlan::parse(SHORT).unwrap().window.max_name_bytes, 1024);
    let set = |v: &str| JobPlan::parse(&format!("{SHORT}\n[event]\nmax_name_bytes = {v}\n"));
    assert_eq!(set("4096").unwrap().window.max_name_bytes, 4096);
    // Only this in [event]: still the fast path's shape.
    assert!(set("4096").unwrap().window.event.is_default());
    for bad in ["0", "1048577"] {
        let e = set(bad).unwrap_err().to_string();
        assert!(
            e.contains("event.max_name_bytes") && e.contains("Fix: remove it (default 1024)"),
            "{e}"
        );
    }
}
