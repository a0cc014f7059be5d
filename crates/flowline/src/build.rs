//! Builds a runnable job from a checked job file.

use flowline_connector_api::Registry;
use flowline_runtime::{DeadLetterFormat, JobConfig, LocalDirStore, StreamEnvironment};

use crate::config::{ConnectorSection, JobPlan, StoreChoice};
use crate::job::{metrics_pipeline, Outputs};
use crate::Error;
use flowline_kafka::KafkaCheckpointStore;

/// A Kafka output as the job writes it: a replay after a restore writes
/// what the run before already wrote after the checkpoint once. Dead
/// letters by their id header; windows, anomalies, statuses and late
/// events by their key and payload, which a replay computes again byte for
/// byte. Unless the section says otherwise (`dedupe`, `dedupe_header`).
fn replayed_once(s: &ConnectorSection, name: &str) -> ConnectorSection {
    let mut s = s.clone();
    if let (true, Some(m)) = (s.kind == "kafka", s.settings.as_object_mut()) {
        if !m.contains_key("dedupe") && !m.contains_key("dedupe_header") {
            if name == "dead_letter" {
                m.insert(
                    "dedupe_header".into(),
                    flowline_runtime::DEAD_LETTER_ID.into(),
                );
            } else {
                m.insert("dedupe".into(), "content".into());
            }
        }
    }
    s
}

fn format_for(kind: &str) -> DeadLetterFormat {
    match kind {
        "file" | "stdout" => DeadLetterFormat::Envelope,
        _ => DeadLetterFormat::Raw,
    }
}

/// The source's settings as built. The metrics job reads each event's time
/// from the event itself (`decode`), so a Kafka source's `timestamp_field`
/// would only make the source parse every payload a second time for a
/// time the job ignores: it is left out, with a warning.
fn source_settings(section: &ConnectorSection) -> serde_json::Value {
    let mut settings = section.settings.clone();
    if section.kind == "kafka" {
        if let Some(field) = settings
            .as_object_mut()
            .and_then(|m| m.remove("timestamp_field"))
        {
            tracing::warn!(timestamp_field = %field, "[source] timestamp_field is not used: the metrics job reads each event's time from the event's own `timestamp`, so the source is not asked to parse payloads for it. Fix: remove timestamp_field from [source]");
        }
    }
    settings
}

/// Every connector section read and checked as its connector's config,
/// contacting nothing (`SourceFactory::check_config`), with the settings
/// `build_job` gives it. `build_job` runs it before any connector is built
/// (a build may wait for its server): a bad setting in the last section
/// fails at once, not after the source connected or while `run` waits for
/// an unreachable broker. `validate --offline` is this check.
pub fn check_sections(plan: &JobPlan, registry: &Registry) -> Result<(), Error> {
    let conn = |name: &str| {
        let section = format!("[{name}]");
        move |source| Error::Connector { section, source }
    };
    registry
        .parse_source(&plan.source.kind, source_settings(&plan.source))
        .map_err(conn("source"))?;
    for (name, c) in plan.sink_sections() {
        registry
            .parse_sink(&c.kind, replayed_once(c, name).settings)
            .map_err(conn(name))?;
    }
    Ok(())
}

/// Builds every connector (failing before any work on a bad setting), wires
/// the metrics pipeline and returns the environment, ready to start.
pub fn build_job(plan: &JobPlan, registry: &Registry) -> Result<StreamEnvironment, Error> {
    build_job_watched(plan, registry, None)
}

/// [`build_job`], keeping the newest results and anomalies in `results`
/// (for `/api/v1/windows`).
pub fn build_job_watched(
    plan: &JobPlan,
    registry: &Registry,
    results: Option<std::sync::Arc<crate::results::Results>>,
) -> Result<StreamEnvironment, Error> {
    fn conn(name: &'static str) -> impl Fn(flowline_connector_api::ConnectorError) -> Error {
        move |source| Error::Connector {
            section: name.to_string(),
            source,
        }
    }
    let cfg = JobConfig::named(&plan.job.name)
        .out_of_orderness(plan.out_of_orderness)
        .idle_timeout(plan.idle_timeout)
        .checkpoint_interval(plan.checkpoint.as_ref().map(|c| c.1))
        .channel_capacity(plan.job.channel_capacity)
        .workers(plan.workers)
        .partitioned_by_key(plan.keyed_by.is_some())
        .max_state_entries(Some(plan.max_state_entries));
    let env = StreamEnvironment::new(cfg);
    check_sections(plan, registry)?;
    let source = registry
        .build_source(&plan.source.kind, source_settings(&plan.source))
        .map_err(conn("source"))?;
    let sink = registry
        .build_sink(&plan.sink.kind, replayed_once(&plan.sink, "sink").settings)
        .map_err(conn("sink"))?;
    let build_side = |s: &ConnectorSection, name: &'static str| {
        registry
            .build_sink(&s.kind, replayed_once(s, name).settings)
            .map_err(conn(name))
    };
    if let Some(d) = &plan.dead_letter {
        env.dead_letter_sink(
            "dead_letter",
            build_side(d, "dead_letter")?,
            format_for(&d.kind),
        );
    }
    if let Some(l) = &plan.late {
        env.late_sink("late", build_side(l, "late")?, format_for(&l.kind));
    }
    if let Some((store, _)) = &plan.checkpoint {
        match store {
            StoreChoice::Dir(dir) => env.checkpoint_store(LocalDirStore::new(dir)?),
            StoreChoice::Kafka(k) => {
                env.checkpoint_store(KafkaCheckpointStore::connect(&plan.job.name, k)?)
            }
        }
    } else if plan.source.kind == "kafka" {
        tracing::warn!(
            "no [checkpoint] section: Kafka offsets are committed only with checkpoints, so this job commits none \
             and a restart reads again from auto_offset_reset; add [checkpoint] dir = \"...\" for exact restarts"
        );
    }
    let anomalies = match &plan.anomalies {
        Some(s) => Some(env.add_sink("anomalies", build_side(s, "anomalies")?)),
        None => None,
    };
    let current = match &plan.current {
        Some(s) => Some(env.add_sink("current", build_side(s, "current")?)),
        None => None,
    };
    let out = Outputs {
        windows: env.add_sink("windows", sink),
        anomalies,
        current,
        results,
    };
    metrics_pipeline(
        env.source(&plan.source.kind, source),
        plan.window.clone(),
        plan.anomaly,
        out,
    );
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kafka_source_is_not_asked_to_parse_times_the_job_ignores() {
        let section = |kind: &str| ConnectorSection {
            kind: kind.into(),
            settings: serde_json::json!({"topics": ["m"], "timestamp_field": "timestamp"}),
        };
        assert_eq!(
            source_settings(&section("kafka")),
            serde_json::json!({"topics": ["m"]})
        );
        // Another connector's setting of that name is its own business.
        assert_eq!(
            source_settings(&section("other")),
            section("other").settings
        );
    }
}
