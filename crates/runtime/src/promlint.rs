//! Prometheus' naming and exposition rules, applied to a whole exposition:
//! what `promtool check metrics` (promlint) and an OpenMetrics parser would
//! find. Public, so that the job's integration tests lint a live `/metrics`.

/// Prometheus' naming and exposition rules (promtool's `check metrics`,
/// promlint), as a test can apply them to a whole exposition: every family
/// has HELP and TYPE; names are snake case; counters' samples end in
/// `_total` and nothing else does; no abbreviated or non-base units;
/// histograms have `+Inf`, `_sum` and `_count`; no series twice; every
/// value a number; the text ends in `# EOF`. Returns the problems found.
pub fn lint(text: &str) -> Vec<String> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut problems = Vec::new();
    let mut kinds: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeSet<String> = BTreeSet::new();
    let mut series: BTreeSet<String> = BTreeSet::new();
    let mut hist_parts: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    const ABBREVIATED: &[&str] = &[
        "ms", "us", "ns", "sec", "secs", "min", "mins", "hr", "hrs", "b", "kb", "mb", "gb", "kib",
        "mib",
    ];
    const NON_BASE: &[&str] = &[
        "milliseconds",
        "microseconds",
        "nanoseconds",
        "minutes",
        "hours",
        "days",
        "kilobytes",
        "megabytes",
        "gigabytes",
        "percent",
    ];
    if !text.ends_with("# EOF\n") {
        problems.push("the exposition does not end in `# EOF`".into());
    }
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helps.insert(rest.split(' ').next().unwrap_or("").to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (name, kind) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
            if !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                problems.push(format!("{name}: not snake case"));
            }
            for part in name.split('_') {
                if ABBREVIATED.contains(&part) {
                    problems.push(format!("{name}: abbreviated unit `{part}`"));
                }
                if NON_BASE.contains(&part) {
                    problems.push(format!("{name}: non-base unit `{part}`"));
                }
            }
            if kind != "counter" && name.ends_with("_total") {
                problems.push(format!("{name}: a {kind} ending in _total"));
            }
            kinds.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = match line.rsplit_once(' ') {
            Some(kv) => kv,
            None => {
                problems.push(format!("unreadable sample `{line}`"));
                continue;
            }
        };
        if value.parse::<f64>().map(|v| v.is_nan()).unwrap_or(true) {
            problems.push(format!("`{line}`: the value is not a number"));
        }
        if !series.insert(key.to_string()) {
            problems.push(format!("`{key}` twice"));
        }
        let name = key.split('{').next().unwrap_or(key);
        let family = kinds
            .keys()
            .filter(|f| name.starts_with(f.as_str()))
            .max_by_key(|f| f.len())
            .cloned();
        let Some(family) = family else {
            problems.push(format!("{name}: a sample without TYPE"));
            continue;
        };
        match kinds[&family].as_str() {
            "counter"
                if name != format!("{family}_total") && name != format!("{family}_created") =>
            {
                problems.push(format!("{name}: a counter sample not named {family}_total"))
            }
            "histogram" => {
                let part = &name[family.len()..];
                if !["_bucket", "_sum", "_count", "_created"].contains(&part) {
                    problems.push(format!("{name}: not a histogram sample of {family}"));
                }
                if part == "_bucket" && key.contains("le=\"+Inf\"") {
                    hist_parts.entry(family.clone()).or_default().insert("+Inf");
                }
                hist_parts
                    .entry(family.clone())
                    .or_default()
                    .insert(match part {
                        "_sum" => "_sum",
                        "_count" => "_count",
                        _ => "_bucket",
                    });
            }
            "gauge" if name != family => problems.push(format!("{name}: not the gauge {family}")),
            _ => {}
        }
    }
    for (name, kind) in &kinds {
        if !helps.contains(name) {
            problems.push(format!("{name}: no HELP"));
        }
        if kind == "histogram" {
            if let Some(parts) = hist_parts.get(name) {
                for p in ["+Inf", "_sum", "_count"] {
                    if !parts.contains(p) {
                        problems.push(format!("{name}: histogram without {p}"));
                    }
                }
            }
        }
    }
    problems
}
