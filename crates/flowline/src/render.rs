//! The default window document, written straight from a fired window's
//! numbers: the same bytes as [`WindowDoc::from_result`] then
//! [`WindowDoc::to_record`], without the intermediate document.
//!
//! A job writes one document per key and window, so this is on the hot
//! path: a fired window's keys share its start and end, and their RFC 3339
//! text is formatted once per window and thread instead of twice per
//! document; the three percentiles come from one walk of the sketch; the
//! JSON is written into a buffer sized for it, borrowing the names.
//!
//! [`WindowDoc::from_result`]: crate::job::WindowDoc::from_result
//! [`WindowDoc::to_record`]: crate::job::WindowDoc::to_record

use std::cell::RefCell;

use flowline_connector_api::time::format_rfc3339_ms;
use flowline_connector_api::Record;
use flowline_runtime::WindowResult;
use serde::Serialize;

use crate::ids::window_id;
use crate::metric::SeriesKey;
use crate::stats::Stats;

/// [`crate::job::WindowDoc`], borrowed: same fields, same order, same
/// names, so the same JSON.
#[derive(Serialize)]
struct DocRef<'a> {
    host: &'a str,
    metric: &'a str,
    window_start: &'a str,
    window_end: &'a str,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    avg: f64,
    p50: f64,
    p95: f64,
    p99: f64,
}

/// The last window bounds formatted on this thread.
#[derive(Default)]
struct Times {
    start: (i64, String),
    end: (i64, String),
}

impl Times {
    fn set(slot: &mut (i64, String), ms: i64) {
        if slot.1.is_empty() || slot.0 != ms {
            *slot = (ms, format_rfc3339_ms(ms));
        }
    }
}

thread_local! {
    static TIMES: RefCell<Times> = RefCell::default();
}

/// A JSON document of about this many bytes beside its names.
const DOC_BYTES: usize = 320;

/// The window document of `r` as a record: key = the document id,
/// timestamp = the window start.
pub fn window_record(r: &WindowResult<SeriesKey, Stats>) -> Record {
    let s = &r.value;
    let (host, metric) = (r.key.0.as_str(), r.key.1.as_str());
    let [p50, p95, p99] = s.quantiles([0.5, 0.95, 0.99]);
    TIMES.with_borrow_mut(|t| {
        Times::set(&mut t.start, r.window.start);
        Times::set(&mut t.end, r.window.end);
        let doc = DocRef {
            host,
            metric,
            window_start: &t.start.1,
            window_end: &t.end.1,
            count: s.count,
            sum: s.sum,
            min: s.min,
            max: s.max,
            avg: s.avg(),
            p50,
            p95,
            p99,
        };
        let mut json = Vec::with_capacity(DOC_BYTES + host.len() + metric.len());
        serde_json::to_writer(&mut json, &doc).expect("a window document serializes");
        Record::new(json)
            .with_key(window_id(host, metric, &t.start.1))
            .with_timestamp(r.window.start)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::WindowDoc;
    use crate::metric::Name;
    use flowline_runtime::TimeWindow;
    use proptest::prelude::*;

    fn result(
        host: &str,
        metric: &str,
        start: i64,
        values: &[f64],
    ) -> WindowResult<SeriesKey, Stats> {
        let mut value = Stats::default();
        for v in values {
            value.add(*v);
        }
        WindowResult {
            key: (Name::from(host), Name::from(metric)),
            window: TimeWindow {
                start,
                end: start.saturating_add(10_000),
            },
            value,
            update: false,
        }
    }

    fn reference(r: &WindowResult<SeriesKey, Stats>) -> Record {
        WindowDoc::from_result(r).to_record(r.window.start)
    }

    proptest! {
        /// The same record as the document it stands for, for any names
        /// (quotes, backslashes, `|`, any Unicode), values and times
        /// (before the year 0 and past 9999 too), windows in any order
        /// on one thread.
        #[test]
        fn the_record_equals_the_documents(
            windows in prop::collection::vec(
                (
                    ".{0,12}",
                    prop::sample::select(vec!["cpu", "a|b", "q\"\\", "é"]),
                    prop_oneof![
                        0i64..3,
                        Just(-62_167_219_200_001i64),
                        Just(253_402_300_800_000i64),
                        -100_000_000_000_000i64..100_000_000_000_000,
                    ],
                    prop::collection::vec(
                        prop_oneof![-1e9f64..1e9, Just(0.0), Just(1e300), Just(-5e-324)],
                        1..30,
                    ),
                ),
                1..8,
            ),
        ) {
            for (host, metric, start, values) in &windows {
                let r = result(host, metric, start * 10_000, values);
                prop_assert_eq!(window_record(&r), reference(&r));
            }
        }
    }

    #[test]
    fn keys_of_one_window_and_windows_in_turn_get_their_own_times() {
        let a = result("h1", "cpu", 1_700_000_000_000, &[1.0, 2.0]);
        let b = result("h2", "cpu", 1_700_000_000_000, &[3.0]);
        let c = result("h1", "cpu", 1_700_000_010_000, &[4.0]);
        for r in [&a, &b, &c, &a, &c] {
            assert_eq!(window_record(r), reference(r));
        }
        let json = String::from_utf8(window_record(&c).payload).unwrap();
        assert!(
            json.contains(r#""window_start":"2023-11-14T22:13:30.000Z","window_end":"2023-11-14T22:13:40.000Z""#),
            "{json}"
        );
    }
}
