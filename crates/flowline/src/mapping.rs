//! The index mappings of the job's own documents. The Elasticsearch
//! connector knows no document shape; the job knows its documents (its key
//! fields, window bounds, chosen aggregates, the anomaly and status
//! fields), so it hands each Elasticsearch output the mapping of what it
//! writes there, as `[template] fields` with `time_field = "window_start"`,
//! and makes the job's name the template's `owner` (a template another job
//! installed is not replaced). What the job file sets itself wins: a field type it gives, its own
//! `time_field`, a `template.file`, or `template = false`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::aggregates::Aggregates;
use crate::config::{ConnectorSection, JobPlan};
use crate::event::KeyNames;

/// One of the job's document outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// `[sink]`: one document per key and window.
    Windows,
    /// `[anomalies]`: one document per anomaly episode.
    Anomalies,
    /// `[current]`: one document per key, upserted.
    Current,
}

/// The fields of `output`'s documents besides the key fields, with their
/// types.
fn doc_fields(output: Output, aggregates: &Aggregates) -> Vec<(String, &'static str)> {
    let mut f = vec![
        ("window_start".to_string(), "date"),
        ("window_end".to_string(), "date"),
    ];
    let (longs, doubles, others): (&[&str], &[&str], &[(&str, &'static str)]) = match output {
        Output::Windows => {
            for a in aggregates.names() {
                let ty = if a == "count" { "long" } else { "double" };
                f.push((a, ty));
            }
            (&[], &[], &[])
        }
        Output::Anomalies => (
            &["consecutive_windows"],
            &[
                "value",
                "baseline_mean",
                "baseline_std",
                "z_score",
                "threshold",
            ],
            &[
                ("direction", "keyword"),
                ("episode_start", "date"),
                ("explanation", "text"),
            ],
        ),
        Output::Current => (
            &["count", "anomalous_windows"],
            &["avg", "p95", "baseline_mean", "baseline_std", "z_score"],
            &[("status", "keyword")],
        ),
    };
    f.extend(longs.iter().map(|n| (n.to_string(), "long")));
    f.extend(doubles.iter().map(|n| (n.to_string(), "double")));
    f.extend(others.iter().map(|(n, t)| (n.to_string(), *t)));
    f
}

/// Field → type of the documents the job writes to `output`: keys as
/// `keyword`, window bounds as `date`, counts as `long`, other numbers as
/// `double`.
pub fn fields(
    output: Output,
    keys: &KeyNames,
    aggregates: &Aggregates,
) -> BTreeMap<String, &'static str> {
    let mut f: BTreeMap<String, &'static str> = keys
        .names()
        .iter()
        .map(|k| (k.clone(), "keyword"))
        .collect();
    f.extend(doc_fields(output, aggregates));
    f
}

/// Refuses key fields whose names the documents already use (`sum`,
/// `window_start`, an anomaly's `value`…), or that come twice (a key path
/// `metric` with `values`): a document would carry the name twice, and
/// which one a reader keeps is up to the reader.
pub fn check_key_names(plan: &JobPlan) -> Result<(), (String, String)> {
    let keys = plan.window.event.key_names();
    let mut outputs = vec![(Output::Windows, "window documents")];
    if plan.anomalies.is_some() {
        outputs.push((Output::Anomalies, "anomaly documents ([anomalies])"));
    }
    if plan.current.is_some() {
        outputs.push((Output::Current, "current-status documents ([current])"));
    }
    let names = keys.names();
    for (i, k) in names.iter().enumerate() {
        if names[..i].contains(k) {
            return Err((
                "event.key".into(),
                format!("`{k}` is a key field twice (with values or values_from, `metric` joins the key). Fix: remove `{k}` from key"),
            ));
        }
        for (output, what) in &outputs {
            if doc_fields(*output, &plan.window.aggregates)
                .iter()
                .any(|(n, _)| n == k)
            {
                return Err((
                    "event.key".into(),
                    format!("key field `{k}` has the name of a field the {what} carry, so they would hold `{k}` twice. Fix: key by other fields{}", if *output == Output::Windows && k != "window_start" && k != "window_end" { format!(", or leave `{k}` out of [window] aggregates") } else { String::new() }),
                ));
            }
        }
    }
    Ok(())
}

/// Refuses a search-server output of the job whose ids are not the job's
/// (`id_fields`: two windows could share one), or that would keep a
/// document's first version: the job writes a document again under its id with new
/// content (a window updated by a late event within `allowed_lateness`, a
/// bounded run resumed, a replay after a restore; an anomaly episode as it
/// goes on; every current status). `action = "create"` counts an id that
/// exists as written, and a data stream takes only creates, so the index
/// kept the stale version with nothing said (a window counted 1 where a
/// group-by counts 2). `index` (the default) replaces it; `update` merges
/// the whole new document into it.
pub fn check_rewrites(plan: &JobPlan) -> Result<(), (String, String)> {
    let outputs = [
        ("sink", Some(&plan.sink), "window", " and window start"),
        (
            "anomalies",
            plan.anomalies.as_ref(),
            "anomaly episode",
            " and the episode's first window",
        ),
        ("current", plan.current.as_ref(), "current status", ""),
    ];
    for (name, section, what, by) in outputs {
        let Some(s) = section.filter(|s| s.kind == "elasticsearch") else {
            continue;
        };
        let create = s.settings.get("action").and_then(Value::as_str) == Some("create");
        let data_stream = s.settings.get("data_stream") == Some(&json!(true));
        if s.settings.get("id_fields").is_some_and(|v| !v.is_null()) {
            return Err((
                format!("{name}.id_fields"),
                format!("the job gives each {what} document its id (its key fields{by}, escaped so that no two share one); ids from `id_fields` would let two of them share an id, and the second replace the first with nothing said. Fix: remove `id_fields`"),
            ));
        }
        let why = format!("the job writes a {what} again under its id when it changes (a late event within allowed_lateness, a resumed run, a replay after a restore), and the index would keep its first version with nothing said");
        if create {
            return Err((
                format!("{name}.action"),
                format!("\"create\" counts a document whose id exists as written, but {why}. Fix: remove `action` (the default, \"index\", replaces the document)"),
            ));
        }
        if data_stream {
            return Err((
                format!("{name}.data_stream"),
                format!("a data stream only appends (creates), but {why}. Fix: remove `data_stream` and write to indices by time (`index = \"flowline-metrics-%Y.%m.%d\"`)"),
            ));
        }
    }
    Ok(())
}

/// Puts the job's mappings into each Elasticsearch output section of
/// `plan` (see the module docs), so that `validate` and `run` build the
/// same sinks.
pub fn apply(plan: &mut JobPlan) {
    let keys = plan.window.event.key_names();
    let aggregates = plan.window.aggregates.clone();
    let job = plan.job.name.clone();
    let outputs = [
        (Some(&mut plan.sink), Output::Windows),
        (plan.anomalies.as_mut(), Output::Anomalies),
        (plan.current.as_mut(), Output::Current),
    ];
    for (section, output) in outputs {
        if let Some(s) = section {
            supply(s, &fields(output, &keys, &aggregates), &job);
        }
    }
}

fn supply(section: &mut ConnectorSection, fields: &BTreeMap<String, &'static str>, job: &str) {
    if section.kind != "elasticsearch" {
        return;
    }
    let Some(m) = section.settings.as_object_mut() else {
        return;
    };
    // Its template is the job's: another job's is not replaced.
    m.entry("owner").or_insert(json!(job));
    m.entry("time_field").or_insert(json!("window_start"));
    let template = m.entry("template").or_insert(json!(true));
    if *template == json!(true) {
        *template = json!({});
    }
    let Some(t) = template.as_object_mut() else {
        // `false`, or a wrong type the connector reports.
        return;
    };
    if t.contains_key("file") {
        return;
    }
    let given = t.entry("fields").or_insert(json!({}));
    if let Some(given) = given.as_object_mut() {
        for (k, ty) in fields {
            given.entry(k.clone()).or_insert(Value::from(*ty));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<JobPlan, crate::Error> {
        JobPlan::parse(&format!(
            "[source]\ntype = \"file\"\npath = \"e.ndjson\"\n\n[sink]\ntype = \"elasticsearch\"\nurl = \"http://127.0.0.1:9200\"\nindex = \"w\"\n{extra}"
        ))
    }

    fn plan(extra: &str) -> JobPlan {
        parse(extra).unwrap()
    }

    #[test]
    fn an_output_that_keeps_first_versions_is_refused() {
        let err = |extra: &str| parse(extra).err().map(|e| e.to_string());
        let e = err("action = \"create\"").unwrap();
        assert!(
            e.contains("`sink.action`") && e.contains("Fix: remove `action`"),
            "{e}"
        );
        let e = err("data_stream = true").unwrap();
        assert!(
            e.contains("`sink.data_stream`") && e.contains("only appends"),
            "{e}"
        );
        let e = err("\n[current]\ntype = \"elasticsearch\"\nurl = \"http://127.0.0.1:9200\"\nindex = \"c\"\naction = \"create\"").unwrap();
        assert!(
            e.contains("`current.action`") && e.contains("current status"),
            "{e}"
        );
        let e = err("id_fields = [\"host\"]").unwrap();
        assert!(
            e.contains("`sink.id_fields`") && e.contains("share an id"),
            "{e}"
        );
        assert_eq!(err("action = \"update\""), None);
        assert_eq!(err("action = \"index\""), None);
        // Dead letters are written once per record, under ids of their own.
        assert_eq!(err("\n[dead_letter]\ntype = \"elasticsearch\"\nurl = \"http://127.0.0.1:9200\"\nindex = \"d\"\naction = \"create\""), None);
    }

    #[test]
    fn windows_get_their_keys_bounds_and_aggregates() {
        let p = plan("\n[event]\nkey = [\"host.name\"]\nvalues = [\"a.b\", \"c\"]\n\n[window]\nsize = \"10s\"\naggregates = [\"count\", \"p90\"]\n");
        let s = &p.sink.settings;
        assert_eq!(s["time_field"], "window_start");
        assert_eq!(
            s["template"]["fields"],
            json!({"host.name": "keyword", "metric": "keyword", "window_start": "date", "window_end": "date", "count": "long", "p90": "double"})
        );
        // The job's name owns its template.
        assert_eq!(s["owner"], json!(p.job.name));
    }

    #[test]
    fn the_job_file_wins() {
        let p = plan("time_field = \"window_end\"\nowner = \"mine\"\n[sink.template]\nfields = { count = \"integer\", extra = \"ip\" }\n");
        let s = &p.sink.settings;
        assert_eq!(s["time_field"], "window_end");
        assert_eq!(s["template"]["fields"]["count"], "integer");
        assert_eq!(s["owner"], "mine");
        assert_eq!(s["template"]["fields"]["extra"], "ip");
        assert_eq!(s["template"]["fields"]["host"], "keyword");
        for own in ["template = false\n", "[sink.template]\nfile = \"m.json\"\n"] {
            let p = plan(own);
            assert!(p.sink.settings["template"].get("fields").is_none(), "{own}");
        }
    }

    #[test]
    fn key_fields_named_like_document_fields_are_refused() {
        let parse = |extra: &str| {
            JobPlan::parse(&format!(
                "[source]\ntype = \"file\"\npath = \"e\"\n[sink]\ntype = \"file\"\npath = \"o\"\n{extra}"
            ))
        };
        for (extra, want) in [
            (
                "[event]\nkey = [\"sum\"]\n",
                "leave `sum` out of [window] aggregates",
            ),
            ("[event]\nkey = [\"window_start\"]\n", "window documents"),
            (
                "[event]\nkey = [\"host\", \"metric\"]\nvalues = [\"a\", \"b\"]\n",
                "`metric` is a key field twice",
            ),
            (
                "[event]\nkey = [\"status\"]\n[current]\ntype = \"file\"\npath = \"c\"\n",
                "current-status documents",
            ),
        ] {
            let e = parse(extra).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("event.key"), "{extra}: {e}");
        }
        // Not an aggregate this job writes, and no status output: fine.
        parse("[event]\nkey = [\"sum\"]\n[window]\nsize = \"10s\"\naggregates = [\"count\"]\n")
            .unwrap();
        parse("[event]\nkey = [\"status\"]\n").unwrap();
    }

    #[test]
    fn anomaly_and_status_documents_are_mapped() {
        let k = crate::event::EventShape::default().key_names();
        let a = fields(Output::Anomalies, &k, &Aggregates::default());
        assert_eq!(
            (
                a["episode_start"],
                a["z_score"],
                a["explanation"],
                a["host"]
            ),
            ("date", "double", "text", "keyword")
        );
        let c = fields(Output::Current, &k, &Aggregates::default());
        assert_eq!(
            (c["count"], c["status"], c["p95"]),
            ("long", "keyword", "double")
        );
        assert!(!c.contains_key("p50"));
    }
}
