//! The job graph text a checkpoint carries, and notes in it.
//!
//! A checkpoint restores only into the job graph it was taken from: the
//! text names every operator and whatever gives its state a meaning (a
//! window's size, an accumulator's stored form). A *note* adds a setting
//! that changes what state means without adding an operator (a job's
//! reading of its events, say): `#{text}`, with `}` and `\` escaped.
//!
//! Checkpoints taken before a note was added have the graph without it.
//! [`compare`] accepts them ([`GraphMatch::BeforeNotes`]): the operators are
//! the same, and what the note records cannot be checked for them; the
//! caller says so in a warning.

/// Opens a note in a graph's text.
const OPEN: &str = "#{";

/// `text` as a note in a graph's text.
pub fn note(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 3);
    s.push_str(OPEN);
    for c in text.chars() {
        if c == '}' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('}');
    s
}

/// The graph's text with its notes left out.
pub fn without_notes(graph: &str) -> String {
    let mut out = String::with_capacity(graph.len());
    let mut rest = graph;
    while let Some(i) = rest.find(OPEN) {
        out.push_str(&rest[..i]);
        let mut chars = rest[i + OPEN.len()..].char_indices();
        let mut end = rest.len() - i - OPEN.len();
        while let Some((j, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '}' => {
                    end = j + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &rest[i + OPEN.len() + end..];
    }
    out.push_str(rest);
    out
}

/// How a checkpoint's graph stands to a job's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GraphMatch {
    /// The same graph.
    Same,
    /// The job's graph with its notes left out: taken before the notes
    /// were recorded, so what they say cannot be checked.
    BeforeNotes,
    /// Another graph.
    Different,
}

/// Compares a stored graph (a checkpoint's) with a job's.
pub fn compare(stored: &str, job: &str) -> GraphMatch {
    if stored == job {
        GraphMatch::Same
    } else if !stored.contains(OPEN) && job.contains(OPEN) && without_notes(job) == stored {
        GraphMatch::BeforeNotes
    } else {
        GraphMatch::Different
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_graph_before_its_notes_is_told_apart_from_another_graph() {
        let old = "source(k)>try_flat_map(decode)>key_by>window(10s)";
        let job = format!(
            "source(k)>try_flat_map(decode){}>key_by>window(10s)",
            note("time `ts`")
        );
        assert_eq!(compare(&job, &job), GraphMatch::Same);
        assert_eq!(compare(old, &job), GraphMatch::BeforeNotes);
        let other = format!(
            "source(k)>try_flat_map(decode){}>key_by>window(10s)",
            note("time `t`")
        );
        assert_eq!(compare(&other, &job), GraphMatch::Different);
        assert_eq!(
            compare(old, &job.replace("10s", "20s")),
            GraphMatch::Different
        );
        // Without notes on either side, nothing is "before notes".
        assert_eq!(
            compare(old, &old.replace("10s", "20s")),
            GraphMatch::Different
        );
        // A job without the note never takes a checkpoint with it.
        assert_eq!(compare(&job, old), GraphMatch::Different);
    }

    proptest! {
        /// Whatever a note's text holds (braces, backslashes, the opener),
        /// the graph around it comes back whole, and two texts give two
        /// notes.
        #[test]
        fn notes_of_any_text_come_out_whole(
            a in "[a-z>()}#\\\\]{0,12}",
            t in "[a-z{}#\\\\`]{0,12}",
            u in "[a-z{}#\\\\`]{0,12}",
            b in "[a-z>()]{0,12}",
        ) {
            let graph = format!("{a}{}{b}", note(&t));
            prop_assert_eq!(without_notes(&graph), format!("{a}{b}"));
            prop_assert_eq!(note(&t) == note(&u), t == u);
        }
    }
}
