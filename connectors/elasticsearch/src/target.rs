//! What the server makes of the sink's index names, checked at start and
//! by `validate`, before any document is written.
//!
//! - **Data streams.** A composable template with `data_stream` turns an
//!   index name it matches into a data stream, and a data stream only
//!   appends: it refuses every write that is not `create`, so each window
//!   came back as a bad record, and even with `create` an updated window
//!   (allowed lateness) or a replayed one (same id, after a rollover)
//!   could not replace the document written before. An existing data
//!   stream matching the pattern, or a template that would make one, fails
//!   the start.
//! - **A template that outranks the sink's.** The server applies the one
//!   matching composable template of highest priority. One above the
//!   sink's (200) means the fields the job writes are mapped by someone
//!   else's template (an `avg` as `long` is stored truncated), with
//!   nothing said; with a template of its own to install, the sink refuses
//!   to start.
//!
//! - **Aliases.** A write through an alias goes to its write index, which
//!   a rollover changes: a window replayed or updated under its id after a
//!   rollover lands in the new index beside the document written before,
//!   and is counted twice. An alias under a name the sink writes fails the
//!   start; an alias under another name (one that reads the sink's
//!   indices) is left alone.
//!
//! Servers without composable templates, and a user without the right to
//! read templates (401/403), skip the checks with a warning.

use elasticsearch::http::Method;
use elasticsearch::Elasticsearch;
use serde_json::Value;

use crate::{request, Error};

/// The priority of the sink's own template (see `template::body`).
pub const PRIORITY: i64 = 200;

/// A composable index template, as far as choosing one goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// Its name.
    pub name: String,
    /// Its `index_patterns` (`*` is the only wildcard).
    pub patterns: Vec<String>,
    /// Its `priority` (0 when it has none).
    pub priority: i64,
    /// Whether it makes data streams.
    pub data_stream: bool,
    /// `allow_auto_create: true` (ES 8): its indices are created on a
    /// write whatever `action.auto_create_index` says.
    pub allow_auto_create: bool,
}

/// The composable templates on the server; `None` when they cannot be read
/// (the reason is logged).
pub async fn templates(client: &Elasticsearch) -> Result<Option<Vec<Template>>, Error> {
    let v = request::get_if_allowed(client, "/_index_template", &[], "cannot read the index templates: whether another template or a data stream takes the sink's indices is not checked. Fix: grant manage_index_templates (or read it) to the sink's user").await?;
    Ok(v.as_ref().map(parse))
}

/// [`templates`] from a `GET /_index_template` response.
pub fn parse(v: &Value) -> Vec<Template> {
    v["index_templates"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let it = &t["index_template"];
            let patterns = match &it["index_patterns"] {
                Value::String(s) => vec![s.clone()],
                v => v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .collect(),
            };
            Template {
                name: t["name"].as_str().unwrap_or_default().to_string(),
                patterns,
                priority: it["priority"].as_i64().unwrap_or(0),
                data_stream: it.get("data_stream").is_some_and(|d| !d.is_null()),
                allow_auto_create: it["allow_auto_create"].as_bool() == Some(true),
            }
        })
        .collect()
}

/// Whether `name` matches the index pattern `pattern` (`*`: any text).
pub fn matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &name[first.len()..];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// The template the server would apply to a new index `name`: the
/// matching one of highest priority.
pub fn winner<'a>(templates: &'a [Template], name: &str) -> Option<&'a Template> {
    templates
        .iter()
        .filter(|t| t.patterns.iter().any(|p| matches(p, name)))
        .max_by_key(|t| t.priority)
}

/// Refuses an index `name` that a data-stream template would take, or
/// (when the sink installs `ours`) that another template outranking it
/// would map.
pub fn check(templates: &[Template], name: &str, ours: Option<&str>) -> Result<(), Error> {
    let mut all = templates.to_vec();
    if let Some(ours) = ours {
        // As the sink will install it: `validate` checks before it is
        // there, and the start before it is updated to a changed index.
        all.retain(|t| t.name != ours);
        all.push(Template {
            name: ours.to_string(),
            patterns: vec![name.to_string()],
            priority: PRIORITY,
            data_stream: false,
            allow_auto_create: false,
        });
    }
    let Some(w) = winner(&all, name) else {
        return Ok(());
    };
    if w.data_stream {
        return Err(Error::Config(format!(
            "index `{name}` would be a data stream, made by index template `{}` (priority {}): a data stream only appends, so it refuses the sink's writes, and a window updated or replayed under its id could not replace the document written before. Fix: an index name that no data-stream template matches (like \"flowline-metrics-%Y.%m.%d\"), or a template of higher priority without data_stream",
            w.name, w.priority
        )));
    }
    match ours {
        Some(ours) if w.name != ours => Err(Error::Config(format!(
            "index template `{}` (priority {}) matches the sink's index `{name}` and outranks Flowline's template `{ours}` (priority {PRIORITY}), so new indices would be mapped by it, not by the fields the job writes (a number mapped as long is stored truncated, with nothing said). Fix: set template = false to use that template on purpose, lower its priority below {PRIORITY}, or write to an index name it does not match",
            w.name, w.priority
        ))),
        _ => Ok(()),
    }
}

/// What exists under an index pattern, from `_resolve/index`.
#[derive(Debug, Default)]
pub struct Resolved {
    /// The data streams.
    pub data_streams: Vec<String>,
    /// The aliases, each with its indices.
    pub aliases: Vec<(String, Vec<String>)>,
}

/// The data streams and aliases that exist under `pattern`, read by
/// `_resolve/index` (a server without it, or a user without the right,
/// reads none).
pub async fn resolve(client: &Elasticsearch, pattern: &str) -> Result<Resolved, Error> {
    let path = format!("/_resolve/index/{pattern}");
    let query = [("expand_wildcards", "all")];
    let resp = request::send(client, Method::Get, &path, &query, None).await?;
    if !resp.status_code().is_success() {
        tracing::debug!(
            path,
            status = resp.status_code().as_u16(),
            "cannot resolve the sink's index pattern; existing data streams and aliases are not checked"
        );
        return Ok(Resolved::default());
    }
    let v = request::json(resp, &path).await?;
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| {
                d.as_str()
                    .or_else(|| d["name"].as_str())
                    .map(str::to_string)
            })
            .collect()
    };
    Ok(Resolved {
        data_streams: names(&v["data_streams"]),
        aliases: v["aliases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| Some((a["name"].as_str()?.to_string(), names(&a["indices"]))))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(name: &str, pattern: &str, priority: i64, data_stream: bool) -> Template {
        Template {
            name: name.into(),
            patterns: vec![pattern.into()],
            priority,
            data_stream,
            allow_auto_create: false,
        }
    }

    #[test]
    fn patterns_match_as_the_server_matches_them() {
        for (p, n, want) in [
            ("flowline-*", "flowline-metrics-2026.01.01", true),
            ("flowline-*", "flowline-", true),
            ("*", "anything", true),
            ("metrics-*-*", "metrics-flowline-default", true),
            ("metrics-*-*", "metrics-flowline", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "ac", false),
            ("a*a", "a", false),
            ("exact", "exact", true),
            ("exact", "exact-1", false),
        ] {
            assert_eq!(matches(p, n), want, "{p} {n}");
        }
    }

    #[test]
    fn the_highest_priority_template_decides() {
        let all = [
            t("flowline-metrics", "flowline-metrics-*", 200, false),
            t("logs", "*", 100, true),
        ];
        assert!(check(
            &all,
            "flowline-metrics-2026.01.01",
            Some("flowline-metrics")
        )
        .is_ok());
        // Without ours (template = false), the data-stream one wins.
        let e = check(&all[1..], "flowline-metrics-2026.01.01", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("would be a data stream, made by index template `logs` (priority 100)"),
            "{e}"
        );
        // Ours installed for another index (the index changed since): it
        // counts as it will be, so a lower template is not named.
        let moved = [
            t("flowline-metrics", "old-*", 200, false),
            t("lower", "flowline-*", 150, false),
        ];
        assert!(check(&moved, "flowline-metrics-x", Some("flowline-metrics")).is_ok());
        // Before ours is installed (validate), it counts as if it were.
        assert!(check(
            &all[1..],
            "flowline-metrics-2026.01.01",
            Some("flowline-metrics")
        )
        .is_ok());
        let over = [
            t("flowline-metrics", "flowline-metrics-*", 200, false),
            t("theirs", "flowline-*", 300, false),
        ];
        let e = check(&over, "flowline-metrics-x", Some("flowline-metrics"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("index template `theirs` (priority 300) matches the sink's index `flowline-metrics-x` and outranks"),
            "{e}"
        );
        // With template = false, theirs is the one meant.
        assert!(check(&over, "flowline-metrics-x", None).is_ok());
        let ds = [t("ds", "flowline-*", 500, true)];
        assert!(check(&ds, "flowline-metrics-x", Some("flowline-metrics"))
            .unwrap_err()
            .to_string()
            .contains("data stream"));
    }

    #[test]
    fn templates_are_read_from_the_listing() {
        let v = json!({"index_templates": [
            {"name": "a", "index_template": {"index_patterns": ["a-*", "b-*"], "priority": 7, "data_stream": {}}},
            {"name": "b", "index_template": {"index_patterns": "c-*"}},
            {"name": "c", "index_template": {"index_patterns": "d-*", "allow_auto_create": true}}
        ]});
        assert_eq!(
            parse(&v),
            [
                Template {
                    name: "a".into(),
                    patterns: vec!["a-*".into(), "b-*".into()],
                    priority: 7,
                    data_stream: true,
                    allow_auto_create: false
                },
                t("b", "c-*", 0, false),
                Template {
                    allow_auto_create: true,
                    ..t("c", "d-*", 0, false)
                }
            ]
        );
    }
}
