//! Keyed process functions (Flink's `KeyedProcessFunction`): per-key
//! state and event-time timers, checkpointed with the key group or source
//! partition that holds the key.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::keyed::{FastState, Key, KeySelector};
use crate::operator::{next_state, push_state, BoxOp, Cx, Operator};
use crate::state::ProcessContext;

/// Per-key logic with state and event-time timers, as Flink's
/// `KeyedProcessFunction`. `State` is your own struct of
/// [`ValueState`](crate::ValueState) / [`MapState`](crate::MapState) fields.
pub trait KeyedProcessFunction: Clone + Send + Sync + 'static {
    /// The key type.
    type Key: Key;
    /// What it consumes.
    type In;
    /// What it emits.
    type Out: Send + 'static;
    /// Per-key state, kept in checkpoints. `Default` is the state of a key
    /// never seen.
    type State: Default + Serialize + DeserializeOwned + Send + 'static;

    /// One element of `key`.
    fn process_element(
        &self,
        key: &Self::Key,
        value: Self::In,
        ctx: &mut ProcessContext<'_, Self::State, Self::Out>,
    );

    /// An element of a key that has no state while the job's keyed
    /// process states are at their bound (`JobConfig::max_state_entries`):
    /// no state is made for it. What it returns is emitted; `None` (the
    /// default) refuses the element: a dead letter with the reason (of
    /// its source record when one is in scope).
    fn without_state(&self, key: &Self::Key, value: Self::In) -> Option<Self::Out> {
        let _ = (key, value);
        None
    }

    /// A timer registered for `key` fired. Default: nothing.
    fn on_timer(
        &self,
        key: &Self::Key,
        timestamp: i64,
        ctx: &mut ProcessContext<'_, Self::State, Self::Out>,
    ) {
        let _ = (key, timestamp, ctx);
    }
}

#[derive(Serialize, Deserialize)]
struct ProcessState<K, S> {
    states: Vec<(K, S)>,
    timers: Vec<(i64, K)>,
}

pub(crate) struct ProcessOp<P: KeyedProcessFunction, KF> {
    pub(crate) key_fn: Arc<KF>,
    pub(crate) f: P,
    pub(crate) states: HashMap<P::Key, P::State, FastState>,
    pub(crate) timers: BTreeSet<(i64, P::Key)>,
    pub(crate) down: BoxOp<P::Out>,
}

impl<P: KeyedProcessFunction, KF> ProcessOp<P, KF> {
    /// Runs `call` on `key`'s state, made when new: counted against the
    /// job's bound, or already reserved (`reserved`, only for a key with
    /// no state).
    fn run(
        &mut self,
        key: P::Key,
        ts: i64,
        cx: &mut Cx<'_>,
        reserved: bool,
        call: impl FnOnce(&P, &P::Key, &mut ProcessContext<'_, P::State, P::Out>),
    ) {
        if !self.states.contains_key(&key) {
            if !reserved {
                cx.count_process_states(1);
            }
            if let Err(reason) = cx.claim_key(&key) {
                cx.uncount_process_state();
                cx.bad_element("process", reason);
                return;
            }
        }
        let state = self.states.entry(key.clone()).or_default();
        let mut pc = ProcessContext::new(state, ts, cx.watermark);
        call(&self.f, &key, &mut pc);
        let (out, timers, cleared) = pc.finish();
        if cleared && self.states.remove(&key).is_some() {
            // It took elements up to the watermark now.
            let until = cx.watermark;
            cx.release_process_key(&key, until);
        }
        for t in timers {
            cx.want_fire_at(t);
            self.timers.insert((t, key.clone()));
        }
        for o in out {
            self.down.element(o, ts, cx);
        }
    }
}

impl<P, KF> Operator<P::In> for ProcessOp<P, KF>
where
    P: KeyedProcessFunction,
    P::In: Send,
    KF: KeySelector<P::In, P::Key>,
{
    fn element(&mut self, el: P::In, ts: i64, cx: &mut Cx<'_>) {
        let key = self.key_fn.with_key(&el, |k| k.clone());
        let new = !self.states.contains_key(&key);
        if new {
            if let Err(reason) = cx.reserve_process_state() {
                match self.f.without_state(&key, el) {
                    Some(out) => self.down.element(out, ts, cx),
                    None => cx.bad_element("process", reason),
                }
                return;
            }
        }
        self.run(key, ts, cx, new, |f, k, pc| f.process_element(k, el, pc));
    }

    fn watermark(&mut self, wm: i64, cx: &mut Cx<'_>) {
        while let Some((t, _)) = self.timers.first() {
            if *t > wm {
                break;
            }
            let (t, key) = self.timers.pop_first().expect("checked non-empty");
            self.run(key, t, cx, false, |f, k, pc| f.on_timer(k, t, pc));
        }
        self.down.watermark(wm, cx);
        if let Some((t, _)) = self.timers.first() {
            cx.want_fire_at(*t);
        }
    }

    fn snapshot(&self, out: &mut Vec<Vec<u8>>) -> Result<(), String> {
        let mut states: Vec<(&P::Key, &P::State)> = self.states.iter().collect();
        states.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let timers: Vec<&(i64, P::Key)> = self.timers.iter().collect();
        push_state(out, &(states, timers))?;
        self.down.snapshot(out)
    }

    fn restore(
        &mut self,
        states: &mut std::vec::IntoIter<Vec<u8>>,
        cx: &mut Cx<'_>,
    ) -> Result<(), String> {
        let s: ProcessState<P::Key, P::State> = next_state(states, "keyed process state")?;
        // Counted against the bound, never refused: they exist.
        cx.count_process_states(s.states.len() as u64);
        for (k, _) in &s.states {
            // No record in scope: a split fails the job.
            let _ = cx.claim_key(k);
        }
        self.states = s.states.into_iter().collect();
        self.timers = s.timers.into_iter().collect();
        if let Some((t, _)) = self.timers.first() {
            cx.want_fire_at(*t);
        }
        self.down.restore(states, cx)
    }
}
