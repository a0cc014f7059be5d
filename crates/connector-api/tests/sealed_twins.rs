//! cargo-semver-checks treats a public trait with a blanket implementation
//! (`impl<S: Source> DynSource for S`) as if no one else could implement
//! it, so it does not flag a required method added to it; API 1.1 did that
//! to the then unsealed `DynSource`. This test closes the gap: every trait
//! of the crate that has a blanket implementation must be sealed (a
//! `crate::sealed::…` supertrait), so that such an addition really breaks no
//! one. Traits outsiders implement (`Source`, `Sink`, the factories) have
//! no blanket implementation and are checked by cargo-semver-checks
//! (`trait_method_added`; `scripts/semver-check` proves it catches one).

use std::path::Path;

/// `(trait, file)` for each `impl<T: Bound> Trait for T`.
fn blanket_impls(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in src.lines() {
        let l = line.trim();
        let Some(rest) = l.strip_prefix("impl<") else {
            continue;
        };
        let Some((params, tail)) = rest.split_once('>') else {
            continue;
        };
        let Some(param) = params.split(':').next().map(str::trim) else {
            continue;
        };
        let Some((tr, ty)) = tail.trim().split_once(" for ") else {
            continue;
        };
        let ty = ty.trim_end_matches('{').trim();
        if ty == param {
            out.push(tr.trim().to_string());
        }
    }
    out
}

#[test]
fn every_trait_with_a_blanket_impl_is_sealed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("sealed.rs") {
            sources.push((p.clone(), std::fs::read_to_string(&p).unwrap()));
        }
    }
    let all: String = sources.iter().map(|(_, s)| s.as_str()).collect();
    let mut found = Vec::new();
    for (path, src) in &sources {
        for tr in blanket_impls(src) {
            let decl = all
                .lines()
                .find(|l| {
                    l.starts_with(&format!("pub trait {tr}:"))
                        || l.starts_with(&format!("pub trait {tr} "))
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{tr} (blanket impl in {}) is not declared here",
                        path.display()
                    )
                });
            assert!(
                decl.contains("crate::sealed::"),
                "{tr} has a blanket implementation in {} but is not sealed: `{decl}`. Fix: add a crate::sealed supertrait, or a required method added to it later would pass cargo-semver-checks unseen",
                path.display()
            );
            found.push(tr);
        }
    }
    found.sort();
    assert_eq!(
        found,
        ["DynSink", "DynSinkFactory", "DynSource", "DynSourceFactory"],
        "the object-safe twins"
    );
}

#[test]
fn the_scan_sees_an_unsealed_blanket_impl() {
    let src = "pub trait Twin: Send {}\nimpl<S: Source> Twin for S {\n}\nimpl Other for X {}\n";
    assert_eq!(blanket_impls(src), ["Twin"]);
}
