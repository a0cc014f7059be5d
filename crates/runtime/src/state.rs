//! Keyed state cells and the context a keyed process function runs in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One value per key, as Flink's `ValueState`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueState<T>(Option<T>);

impl<T> Default for ValueState<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<T> ValueState<T> {
    /// The value, if set.
    pub fn value(&self) -> Option<&T> {
        self.0.as_ref()
    }
    /// Sets the value.
    pub fn update(&mut self, v: T) {
        self.0 = Some(v);
    }
    /// Removes the value.
    pub fn clear(&mut self) {
        self.0 = None;
    }
    /// The value, or `v` stored first.
    pub fn get_or_insert(&mut self, v: T) -> &mut T {
        self.0.get_or_insert(v)
    }
}

/// A map per key, as Flink's `MapState`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapState<K: Ord, V>(BTreeMap<K, V>);

impl<K: Ord, V> Default for MapState<K, V> {
    fn default() -> Self {
        Self(BTreeMap::new())
    }
}

impl<K: Ord, V> MapState<K, V> {
    /// The value at `k`.
    pub fn get(&self, k: &K) -> Option<&V> {
        self.0.get(k)
    }
    /// Sets `k`.
    pub fn put(&mut self, k: K, v: V) {
        self.0.insert(k, v);
    }
    /// Removes `k`.
    pub fn remove(&mut self, k: &K) -> Option<V> {
        self.0.remove(k)
    }
    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter()
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a [`KeyedProcessFunction`](crate::KeyedProcessFunction) sees: its
/// key's state, the time, timers, and where to emit.
#[derive(Debug)]
pub struct ProcessContext<'a, S, O> {
    state: &'a mut S,
    timestamp: i64,
    watermark: i64,
    out: Vec<O>,
    timers: Vec<i64>,
    cleared: bool,
}

impl<'a, S, O> ProcessContext<'a, S, O> {
    pub(crate) fn new(state: &'a mut S, timestamp: i64, watermark: i64) -> Self {
        Self {
            state,
            timestamp,
            watermark,
            out: Vec::new(),
            timers: Vec::new(),
            cleared: false,
        }
    }

    pub(crate) fn finish(self) -> (Vec<O>, Vec<i64>, bool) {
        (self.out, self.timers, self.cleared)
    }

    /// This key's state.
    pub fn state(&mut self) -> &mut S {
        self.state
    }
    /// Drops this key's state once the call returns.
    pub fn clear_state(&mut self) {
        self.cleared = true;
    }
    /// The element's event time (the timer's time in `on_timer`).
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }
    /// The partition's watermark.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }
    /// Emits an element downstream, with this call's event time.
    pub fn emit(&mut self, o: O) {
        self.out.push(o);
    }
    /// Calls `on_timer` for this key once the watermark reaches `ts`.
    pub fn register_event_time_timer(&mut self, ts: i64) {
        self.timers.push(ts);
    }
}
