//! Deterministic document ids: the key fields and the window (or episode)
//! joined by `|`, so that a replay overwrites the same document.
//!
//! A key value may itself hold `|` (a metric path `api|v1`, a host
//! `a|b`): joined as they are, `("a|b", "c")` and `("a", "b|c")` would get
//! one id, and the search server would keep one window and silently drop
//! the other. Each part therefore escapes `\` as `\\` and `|` as `\|`
//! before the join, which makes the id injective (a reader splits at the
//! `|`s not escaped) while an id of parts without either character is
//! exactly what it always was: documents written before keep their ids.

/// The parts joined by `|`, each with `\` and `|` escaped.
pub fn doc_id(parts: &[&str]) -> String {
    let mut id = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            id.push('|');
        }
        if p.contains(['\\', '|']) {
            for c in p.chars() {
                if matches!(c, '\\' | '|') {
                    id.push('\\');
                }
                id.push(c);
            }
        } else {
            id.push_str(p);
        }
    }
    id
}

/// A window document's id: key and window start.
pub fn window_id(host: &str, metric: &str, window_start: &str) -> String {
    doc_id(&[host, metric, window_start])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reader's side: splits at the unescaped `|`s and unescapes.
    fn parts(id: &str) -> Vec<String> {
        let mut out = vec![String::new()];
        let mut chars = id.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out
                    .last_mut()
                    .unwrap()
                    .push(chars.next().expect("escaped char")),
                '|' => out.push(String::new()),
                c => out.last_mut().unwrap().push(c),
            }
        }
        out
    }

    #[test]
    fn keys_holding_the_separator_get_ids_of_their_own() {
        let t = "2026-01-01T00:00:00.000Z";
        // The old join gave all three "a|b|c|<t>".
        let ids = [
            window_id("a|b", "c", t),
            window_id("a", "b|c", t),
            window_id("a", "b", &format!("c|{t}")),
        ];
        assert_eq!(ids[0], format!("a\\|b|c|{t}"));
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[1], ids[2]);
        // A trailing backslash cannot swallow the separator.
        assert_ne!(window_id("a\\", "b", t), window_id("a", "\\b", t));
    }

    #[test]
    fn plain_keys_keep_the_ids_documents_were_written_with() {
        assert_eq!(
            window_id("web-1", "cpu.total", "1970-01-01T00:00:00.000Z"),
            "web-1|cpu.total|1970-01-01T00:00:00.000Z"
        );
        assert_eq!(doc_id(&["h", "m"]), "h|m");
    }

    proptest! {
        /// Against the tuples themselves: two ids are equal exactly when
        /// the parts are, and the parts read back from the id.
        #[test]
        fn ids_are_injective(
            a in proptest::collection::vec("[ab|\\\\é]{0,4}", 3),
            b in proptest::collection::vec("[ab|\\\\é]{0,4}", 3),
        ) {
            let ra: Vec<&str> = a.iter().map(String::as_str).collect();
            let rb: Vec<&str> = b.iter().map(String::as_str).collect();
            let (ia, ib) = (doc_id(&ra), doc_id(&rb));
            prop_assert_eq!(ia == ib, a == b, "{:?} {:?} -> {} {}", a, b, ia, ib);
            prop_assert_eq!(parts(&ia), a);
        }
    }
}
