//! `flowline validate`: everything a start would meet, without running.
//! Online, the job is built (connectors too), `[http] listen` is bound and
//! released, the checkpoint it would restore is read, and each sink checks
//! its server; `--offline` reads the job file and checks each connector's
//! section as a start does before it builds anything (`check_sections`).

use std::path::Path;

use flowline_connector_api::Registry;

use super::out;
use crate::config::{redact, JobPlan, StoreChoice};
use crate::Error;

/// `validate --offline`: no server contacted, nothing built.
pub(super) fn offline(config: &Path, registry: &Registry) -> Result<(), Error> {
    let plan = JobPlan::load(config)?;
    crate::build::check_sections(&plan, registry)?;
    out!(
        "{} is valid as far as can be told offline (no server contacted, no connector built).",
        config.display()
    );
    Ok(())
}

/// `validate`: builds the job and asks every server, then prints the
/// resolved settings with secrets redacted.
pub(super) async fn online(config: &Path, registry: &Registry) -> Result<(), Error> {
    let plan = JobPlan::load(config)?;
    let env = crate::build::build_job(&plan, registry)?;
    if let Some(addr) = &plan.http_listen {
        crate::http::check_listen(addr).await?;
    }
    let restore = env.check_restore().map_err(Error::Restore)?;
    // Each sink's own check (servers answer, credentials, version), on a
    // copy built for it and dropped.
    for (name, c) in plan.sink_sections() {
        let section = || format!("[{name}] {} sink", c.kind);
        let mut sink = registry
            .build_sink(&c.kind, c.settings.clone())
            .map_err(|source| Error::Connector {
                section: section(),
                source,
            })?;
        sink.check_dyn().await.map_err(|source| Error::Connector {
            section: section(),
            source,
        })?;
    }
    out!("{} is valid.", config.display());
    out!("job        {}", plan.job.name);
    out!(
        "source     {} {}",
        plan.source.kind,
        redact(&plan.source.settings)
    );
    out!(
        "sink       {} {}",
        plan.sink.kind,
        redact(&plan.sink.settings)
    );
    if let Some(d) = &plan.dead_letter {
        out!("dead_letter {} {}", d.kind, redact(&d.settings));
    }
    if let Some(l) = &plan.late {
        out!("late       {} {}", l.kind, redact(&l.settings));
    }
    out!(
        "window     {:?}, allowed lateness {:?}, out-of-orderness {:?}",
        plan.window.spec,
        plan.window.allowed_lateness,
        plan.out_of_orderness
    );
    out!("event      {}", plan.window.event);
    if let Some(a) = &plan.anomalies {
        out!("anomalies  {} {}", a.kind, redact(&a.settings));
    }
    if let Some(c) = &plan.current {
        out!("current    {} {}", c.kind, redact(&c.settings));
    }
    if plan.anomalies.is_some() || plan.current.is_some() {
        out!("anomaly    {:?}", plan.anomaly);
        if !plan.window.allowed_lateness.is_zero() {
            out!(
                "verdicts   once a window is final: {:?} (its allowed lateness) after its end",
                plan.window.allowed_lateness
            );
        }
    }
    match &plan.checkpoint {
        Some((StoreChoice::Dir(dir), iv)) => {
            out!("checkpoint dir {} every {iv:?}", dir.display())
        }
        Some((StoreChoice::Kafka(k), iv)) => out!(
            "checkpoint kafka topic {} at {} every {iv:?}",
            k.topic,
            k.bootstrap_servers
        ),
        None => out!("checkpoint off"),
    }
    match restore {
        Some(id) => out!("restore    checkpoint {id}, taken from this job graph"),
        None if plan.checkpoint.is_some() => out!("restore    none: a fresh start"),
        None => {}
    }
    Ok(())
}
