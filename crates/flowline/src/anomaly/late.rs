//! The detector under allowed lateness: it judges each window once it is
//! final, not on its first firing.
//!
//! With `allowed_lateness`, a window fires once the watermark passes its
//! end, then again for each late event within the lateness. Which of those
//! events its first firing holds depends on where the batches were cut and
//! on how the partitions' reads interleave, so a detector that judged the
//! first firing could give the same window another verdict after a
//! restart. [`FinalDetector`] keeps each fired window's newest result, per
//! key, until the watermark passes the window's end plus the allowed
//! lateness (when the window operator drops the window, and any later
//! event for it is late), and judges it then, with [`Detector::judge`]'s
//! rules. The window's contents are then those of every run and replay:
//! each event is taken or refused as late by its own partition's
//! watermark.
//!
//! The price is time: current-status and anomaly documents come the
//! allowed lateness after the window's end. Window documents do not wait:
//! the job writes them from the window results, before this step.

use flowline_runtime::{KeyedProcessFunction, ProcessContext, WindowResult};
use serde::{Deserialize, Serialize};

use super::{Assessed, Detector, DetectorState};
use crate::job::SeriesKey;
use crate::stats::Stats;

/// Per-key state of [`FinalDetector`] (kept in checkpoints).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FinalState {
    detector: DetectorState,
    /// Fired windows not final yet, the newest result of each, by start.
    pending: Vec<WindowResult<SeriesKey, Stats>>,
}

/// The [`Detector`] judging windows when they are final: `lateness_ms`
/// after their end.
#[derive(Debug, Clone, Copy)]
pub struct FinalDetector {
    /// The detector.
    pub detector: Detector,
    /// The windows' allowed lateness, ms.
    pub lateness_ms: i64,
}

impl FinalDetector {
    /// When `w` is final: no event can change it once the watermark is
    /// there (the window operator's own rule).
    fn final_at(&self, w: &WindowResult<SeriesKey, Stats>) -> i64 {
        w.window.max_timestamp().saturating_add(self.lateness_ms)
    }
}

impl KeyedProcessFunction for FinalDetector {
    type Key = SeriesKey;
    type In = WindowResult<SeriesKey, Stats>;
    type Out = Assessed;
    type State = FinalState;

    /// Keeps the window's newest result until it is final.
    fn process_element(
        &self,
        _key: &Self::Key,
        window: Self::In,
        ctx: &mut ProcessContext<'_, FinalState, Assessed>,
    ) {
        let t = self.final_at(&window);
        let pending = &mut ctx.state().pending;
        match pending.binary_search_by_key(&window.window.start, |w| w.window.start) {
            Ok(i) => pending[i] = window,
            Err(i) => {
                pending.insert(i, window);
                ctx.register_event_time_timer(t);
            }
        }
    }

    /// A series new while the job holds `max_state_entries` series: no
    /// verdict, as [`Detector`].
    fn without_state(&self, _key: &Self::Key, window: Self::In) -> Option<Assessed> {
        Some(Assessed::unjudged(window))
    }

    /// Judges the windows final by `t`, in the order of their starts, then
    /// forgets the series if it is due to be and holds no window: the
    /// allowed lateness after [`Detector`]'s forget time, when no window
    /// that still finds the series as it was can come.
    fn on_timer(
        &self,
        _key: &Self::Key,
        t: i64,
        ctx: &mut ProcessContext<'_, FinalState, Assessed>,
    ) {
        let s = ctx.state();
        let due = s
            .pending
            .iter()
            .take_while(|w| self.final_at(w) <= t)
            .count();
        let judged: Vec<_> = s.pending.drain(..due).collect();
        for window in judged {
            let (verdict, timer) = self.detector.judge(&mut ctx.state().detector, &window);
            if let Some(t) = timer {
                ctx.register_event_time_timer(t.saturating_add(self.lateness_ms));
            }
            if verdict.is_some() {
                ctx.emit(Assessed { window, verdict });
            }
        }
        // Forgotten the allowed lateness after its forget time: a window
        // ending by that time finds the series as it was (`judge`), and
        // such a window may fire until then.
        let s = ctx.state();
        let by = t.saturating_sub(self.lateness_ms);
        if s.pending.is_empty() && self.detector.forgotten_by(&s.detector, by) {
            ctx.clear_state();
        }
    }
}
