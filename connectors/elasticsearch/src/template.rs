//! The index template: the fields the config names, typed as it says (a
//! job supplies its keys as `keyword`, window bounds as `date`, aggregates
//! as `double`), so Kibana needs no scripted fields. Created at start, or updated
//! when the installed one differs (compared by the `version` it carries, a
//! hash of the body).

use std::hash::{Hash, Hasher};

use elasticsearch::http::Method;
use elasticsearch::Elasticsearch;
use serde_json::{json, Map, Value};

use crate::config::{FieldType, TemplateSpec};
use crate::detect::Server;
use crate::{request, Error};

/// The mappings for `spec`: its `file` as it is, or its `fields` (dotted
/// paths become object fields) with `time_field` as a date. Strings the
/// fields do not name map to `keyword`, numbers to `double` (never a 32-bit
/// `float` that would round them). The connector knows no document shape:
/// every field comes from the config.
pub fn mappings_of(spec: &TemplateSpec, time_field: Option<&str>) -> Result<Value, Error> {
    if let Some(path) = &spec.file {
        if !spec.fields.is_empty() {
            return Err(Error::Config(
                "[template] has both `file` and `fields`. Fix: put the fields in the file, or drop `file`".into(),
            ));
        }
        return from_file(path);
    }
    let mut fields: Vec<(&str, FieldType)> =
        spec.fields.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    if let Some(t) = time_field {
        match spec.fields.get(t) {
            None => fields.push((t, FieldType::Date)),
            Some(FieldType::Date | FieldType::DateNanos) => {}
            Some(other) => {
                return Err(Error::Config(format!(
                    "time_field `{t}` is mapped as {} in [template] fields. Fix: map it as date",
                    other.as_str()
                )))
            }
        }
    }
    let mut props = Map::new();
    for (name, ty) in fields {
        insert(&mut props, name, ty)?;
    }
    Ok(json!({
        "dynamic_templates": [
            {"strings_as_keywords": {"match_mapping_type": "string", "mapping": {"type": "keyword", "ignore_above": 1024}}},
            {"numbers_as_doubles": {"match_mapping_type": "double", "mapping": {"type": "double"}}}
        ],
        "properties": props
    }))
}

/// Puts `name` (dotted: a field inside objects) into `props`.
fn insert(props: &mut Map<String, Value>, name: &str, ty: FieldType) -> Result<(), Error> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(Error::Config(format!(
            "[template] field `{name}` has an empty part. Fix: a dotted path like \"host.name\""
        )));
    }
    let clash = || {
        Error::Config(format!(
            "[template] field `{name}` clashes with another field: one name cannot be both a value and an object of fields. Fix: rename one of them"
        ))
    };
    let mut at = props;
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            if at.contains_key(*part) {
                return Err(clash());
            }
            let mut m = json!({"type": ty.as_str()});
            if matches!(ty, FieldType::Date) {
                m["format"] = json!("strict_date_optional_time||epoch_millis");
            }
            at.insert(part.to_string(), m);
            return Ok(());
        }
        let obj = at
            .entry(part.to_string())
            .or_insert_with(|| json!({"properties": {}}));
        at = obj
            .get_mut("properties")
            .and_then(Value::as_object_mut)
            .ok_or_else(clash)?;
    }
    Ok(())
}

/// The mappings in a JSON file: the object itself, or its `mappings`
/// (or `template.mappings`, a whole composable template).
fn from_file(path: &std::path::Path) -> Result<Value, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Config(format!(
            "[template] file `{}` cannot be read: {e}. Fix: point it at a JSON mappings file",
            path.display()
        ))
    })?;
    let v: Value = serde_json::from_str(&text).map_err(|e| {
        Error::Config(format!(
            "[template] file `{}` is not JSON: {e}",
            path.display()
        ))
    })?;
    let m = v
        .get("mappings")
        .or_else(|| v.pointer("/template/mappings"))
        .unwrap_or(&v);
    if !m.is_object() {
        return Err(Error::Config(format!(
            "[template] file `{}` holds no mappings object. Fix: {{\"properties\": {{…}}}}",
            path.display()
        )));
    }
    Ok(m.clone())
}

fn version_of(v: &Value) -> i64 {
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    v.to_string().hash(&mut h);
    (h.finish() & 0x7fff_ffff) as i64
}

/// The template body for `server`: composable or legacy; `owner` goes
/// into its `_meta` beside `managed_by`.
pub fn body(
    pattern: &str,
    mappings: &Value,
    shards: Option<u32>,
    replicas: Option<u32>,
    composable: bool,
    owner: Option<&str>,
) -> Value {
    let mut meta = json!({"managed_by": "flowline"});
    if let Some(o) = owner {
        meta["owner"] = json!(o);
    }
    let mut settings = serde_json::Map::new();
    if let Some(s) = shards {
        settings.insert("number_of_shards".into(), json!(s));
    }
    if let Some(r) = replicas {
        settings.insert("number_of_replicas".into(), json!(r));
    }
    let mut b = if composable {
        json!({
            "index_patterns": [pattern],
            "priority": crate::target::PRIORITY,
            "template": {"settings": settings, "mappings": mappings},
            "_meta": meta
        })
    } else {
        // A legacy template has no `_meta` of its own: the mark goes into
        // its mappings.
        let mut mappings = mappings.clone();
        if let Some(m) = mappings.as_object_mut() {
            let into = m.entry("_meta").or_insert_with(|| json!({}));
            if let (Some(into), Some(meta)) = (into.as_object_mut(), meta.as_object()) {
                into.extend(meta.clone());
            }
        }
        json!({
            "index_patterns": [pattern],
            "order": 200,
            "settings": settings,
            "mappings": mappings
        })
    };
    let v = version_of(&b);
    b["version"] = json!(v);
    b
}

fn path_of(server: &Server, name: &str) -> String {
    if server.composable_templates() {
        format!("/_index_template/{name}")
    } else {
        format!("/_template/{name}")
    }
}

/// The version of the template `name` that Flowline installed, `None` when
/// there is none. A template of that name that Flowline did not install
/// (no `_meta.managed_by = "flowline"`), or that another `owner` installed,
/// is an error: it is not the job's to replace. A Flowline template without
/// an owner (written before owners were) is taken over. Reads only
/// (`flowline validate` asks it too).
pub async fn installed(
    client: &Elasticsearch,
    server: &Server,
    name: &str,
    owner: Option<&str>,
) -> Result<Option<i64>, Error> {
    let path = path_of(server, name);
    let resp = request::send(client, Method::Get, &path, &[], None).await?;
    if !resp.status_code().is_success() {
        return Ok(None);
    }
    let v = request::json(resp, &path).await?;
    let t = if server.composable_templates() {
        &v["index_templates"][0]["index_template"]
    } else {
        &v[name]
    };
    let meta = if server.composable_templates() {
        &t["_meta"]
    } else {
        // A legacy template has no `_meta` of its own: see `body`.
        &t["mappings"]["_meta"]
    };
    if meta["managed_by"] != "flowline" {
        return Err(Error::Config(format!(
            "index template `{name}` exists on {server} and was not installed by Flowline (no _meta.managed_by = \"flowline\"), so it is not replaced. Fix: set template_name to another name, set template = false to keep yours, or delete it"
        )));
    }
    if let (Some(ours), Some(theirs)) = (owner, meta["owner"].as_str()) {
        if ours != theirs {
            return Err(Error::Config(format!(
                "index template `{name}` on {server} belongs to `{theirs}`, and this output's owner is `{ours}`: two jobs writing the same indices overwrite each other's documents under the same ids (a window of one replaces the other's), so it is not replaced. Fix: give this job an index of its own; or, if this is `{theirs}` renamed, set owner = \"{theirs}\" in this output's section"
            )));
        }
    }
    Ok(t["version"].as_i64())
}

/// Installs the template unless the same version is there already
/// ([`installed`], which refuses to replace someone else's). Returns
/// whether it wrote one.
pub async fn ensure(
    client: &Elasticsearch,
    server: &Server,
    name: &str,
    body: &Value,
) -> Result<bool, Error> {
    let owner = body["_meta"]["owner"]
        .as_str()
        .or(body["mappings"]["_meta"]["owner"].as_str());
    if installed(client, server, name, owner).await? == body["version"].as_i64() {
        return Ok(false);
    }
    let path = path_of(server, name);
    let resp = request::send(client, Method::Put, &path, &[], Some(body)).await?;
    if !resp.status_code().is_success() {
        return Err(request::status_error(format!("PUT {path}"), resp).await);
    }
    tracing::info!(template = name, %server, "index template installed");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(fields: &[(&str, FieldType)]) -> TemplateSpec {
        TemplateSpec {
            fields: fields.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            file: None,
        }
    }

    fn window_mappings() -> Value {
        let s = spec(&[
            ("host.name", FieldType::Keyword),
            ("metric", FieldType::Keyword),
            ("window_end", FieldType::Date),
            ("count", FieldType::Long),
            ("avg", FieldType::Double),
        ]);
        mappings_of(&s, Some("window_start")).unwrap()
    }

    #[test]
    fn composable_template_body() {
        insta::assert_json_snapshot!(body(
            "flowline-metrics-*",
            &window_mappings(),
            Some(1),
            Some(0),
            true,
            None
        ));
    }

    #[test]
    fn legacy_template_body() {
        let b = body(
            "flowline-metrics-*",
            &window_mappings(),
            None,
            None,
            false,
            Some("j"),
        );
        assert_eq!(b["mappings"]["properties"]["window_start"]["type"], "date");
        assert_eq!(
            b["mappings"]["_meta"],
            json!({"managed_by": "flowline", "owner": "j"})
        );
        let c = body(
            "flowline-metrics-*",
            &window_mappings(),
            None,
            None,
            true,
            Some("j"),
        );
        assert_eq!(c["_meta"], json!({"managed_by": "flowline", "owner": "j"}));
        assert!(b.get("template").is_none() && b["order"] == 200);
    }

    #[test]
    fn a_bare_template_maps_only_the_time_field() {
        let m = mappings_of(&TemplateSpec::default(), Some("ts")).unwrap();
        let props = m["properties"].as_object().unwrap();
        assert_eq!(props.keys().collect::<Vec<_>>(), ["ts"]);
        let m = mappings_of(&TemplateSpec::default(), None).unwrap();
        assert!(m["properties"].as_object().unwrap().is_empty());
        assert_eq!(
            m["dynamic_templates"][1]["numbers_as_doubles"]["mapping"]["type"],
            "double"
        );
    }

    #[test]
    fn dotted_fields_become_objects_and_clashes_are_refused() {
        let m = window_mappings();
        assert_eq!(
            m["properties"]["host"]["properties"]["name"]["type"],
            "keyword"
        );
        for clash in [
            &[
                ("host", FieldType::Keyword),
                ("host.name", FieldType::Keyword),
            ][..],
            &[("a.b.c", FieldType::Long), ("a.b", FieldType::Long)][..],
        ] {
            let e = mappings_of(&spec(clash), None).unwrap_err().to_string();
            assert!(e.contains("clashes"), "{e}");
        }
        let e = mappings_of(&spec(&[("a..b", FieldType::Long)]), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty part"), "{e}");
        let e = mappings_of(&spec(&[("ts", FieldType::Keyword)]), Some("ts"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("map it as date"), "{e}");
    }

    #[test]
    fn a_file_is_used_as_it_is() {
        let dir = std::env::temp_dir().join(format!("flowline-tpl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("m.json");
        std::fs::write(
            &f,
            r#"{"template":{"mappings":{"properties":{"x":{"type":"ip"}}}}}"#,
        )
        .unwrap();
        let s = TemplateSpec {
            fields: Default::default(),
            file: Some(f.clone()),
        };
        assert_eq!(
            mappings_of(&s, Some("ts")).unwrap(),
            json!({"properties": {"x": {"type": "ip"}}})
        );
        std::fs::write(&f, "[1]").unwrap();
        assert!(mappings_of(&s, None)
            .unwrap_err()
            .to_string()
            .contains("no mappings object"));
        let both = TemplateSpec {
            fields: spec(&[("a", FieldType::Long)]).fields,
            file: Some(f),
        };
        assert!(mappings_of(&both, None)
            .unwrap_err()
            .to_string()
            .contains("both"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn version_changes_with_the_body() {
        let m = window_mappings();
        let a = body("a-*", &m, None, None, true, None);
        let b = body("b-*", &m, None, None, true, None);
        assert_ne!(a["version"], b["version"]);
        assert_eq!(
            a["version"],
            body("a-*", &m, None, None, true, None)["version"]
        );
    }
}
