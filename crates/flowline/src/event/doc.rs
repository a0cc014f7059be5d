//! One event as the shape reads it: its object, the nested objects its
//! paths pass (each parsed once), numbers and the entries of an object.
//!
//! A path `host.name` names the same field however the event spells it,
//! as Elasticsearch reads documents: nested (`{"host":{"name":…}}`),
//! dotted (`{"host.name":…}`, as ECS loggers and OpenTelemetry attributes
//! write it), or both ways part by part (`{"system.cpu":{"pct":…}}`).
//! Before, only the nested spelling was read: a dotted field was missing,
//! and an event with both spellings of one field was read by the nested
//! one, the other value dropped with nothing said. Now an event that holds
//! a field in two spellings with two values is a bad record naming both.

use std::borrow::Cow;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::FieldPath;
use crate::decimal::exact_f64;

/// One event's object, and the nested objects its paths went through,
/// each parsed once however many paths pass it, by the path prefix that
/// leads to it (borrowed from the shape: nothing is copied per event).
pub(super) struct Doc<'a, 'p> {
    root: Obj<'a>,
    /// Nested objects by the address of their text in the event.
    objects: std::cell::RefCell<Vec<(usize, Obj<'a>)>>,
    shape: std::marker::PhantomData<&'p ()>,
}

/// The keys that led to a value (on the stack for paths of up to 8 parts).
type Trail<'t> = smallvec::SmallVec<[&'t str; 8]>;

/// An object of the event: its root, or a nested one by index.
#[derive(Clone, Copy)]
enum At {
    Root,
    Nested(usize),
}

/// A JSON object's entries in their order, each value left unparsed, keys
/// borrowed from the event (copied only when they hold an escape). Events
/// have few fields: a scan is faster than building a map.
struct Obj<'a>(Vec<(Cow<'a, str>, &'a RawValue)>, Dotted);

/// Whether an object has a key with a `.` in it: only then can a part of
/// a path other than the next segment alone be one of its keys.
#[derive(Clone, Copy, PartialEq)]
struct Dotted(bool);

impl<'a> Obj<'a> {
    /// The value of `key`, or `Err` when the object has the key twice:
    /// which one the producer meant cannot be known (parsers disagree, and
    /// Elasticsearch refuses such a document), so the job does not guess.
    fn get(&self, key: &str) -> Result<Option<&'a RawValue>, ()> {
        let mut found = None;
        for (k, v) in &self.0 {
            if k == key {
                if found.is_some() {
                    return Err(());
                }
                found = Some(*v);
            }
        }
        Ok(found)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Obj<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Obj<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Obj<'a>, M::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(8));
                let mut dotted = false;
                while let Some(Key(k)) = m.next_key::<Key<'a>>()? {
                    dotted |= k.contains('.');
                    out.push((k, m.next_value::<&'a RawValue>()?));
                }
                Ok(Obj(out, Dotted(dotted)))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A key, borrowed when it has no escape.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Key<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

impl<'a, 'p> Doc<'a, 'p> {
    pub(super) fn parse(payload: &'a [u8]) -> Result<Self, String> {
        // Checked whole, once, as in the default shape's decode: cheaper
        // than serde_json's check of each string and raw value it borrows.
        let text = std::str::from_utf8(payload)
            .map_err(|e| format!("invalid metric event: the payload is not UTF-8 ({e})"))?;
        Ok(Self {
            root: serde_json::from_str(text).map_err(|e| {
                if text.trim().is_empty() {
                    crate::metric::EMPTY.to_string()
                } else {
                    format!("invalid metric event: not a JSON object ({e})")
                }
            })?,
            objects: Default::default(),
            shape: std::marker::PhantomData,
        })
    }

    /// The value at `path`, or an error naming it: missing, a key twice in
    /// one object, or the field in two spellings with two values.
    pub(super) fn lookup(&self, path: &'p FieldPath) -> Result<&'a RawValue, String> {
        let missing = || format!("invalid metric event: missing field `{}`", path.text);
        if let Some(direct) = self.nested_only(path) {
            return direct.map_err(|e| e.unwrap_or_else(missing));
        }
        let mut found: Option<&'a RawValue> = None;
        let mut differ = false;
        self.walk(At::Root, path, 0, 0, &mut Trail::new(), &mut |_, v| {
            match found {
                None => found = Some(v),
                Some(f) if f.get().trim() == v.get().trim() => {}
                Some(_) => differ = true,
            }
            !differ
        })?;
        if differ {
            let mut all = Vec::new();
            self.walk(At::Root, path, 0, 0, &mut Trail::new(), &mut |trail, v| {
                all.push(format!("`{}` = {}", trail.join("` → `"), clip(v.get())));
                true
            })?;
            return Err(format!(
                "invalid metric event: the field `{}` is in the event {} times with different values ({}): which one is meant cannot be known. Fix: write each field once, nested or dotted",
                path.text,
                all.len(),
                all.join(", ")
            ));
        }
        found.ok_or_else(missing)
    }

    /// The common case, at the cost of the nested lookup alone: `path`
    /// read segment by segment through objects none of which has a dotted
    /// key, so no other spelling can exist (`Err(None)`: missing). `None`
    /// at the first object with a dotted key, for [`Self::walk`].
    fn nested_only(&self, path: &'p FieldPath) -> Option<Result<&'a RawValue, Option<String>>> {
        let mut at = At::Root;
        let last = path.segments.len() - 1;
        for (j, seg) in path.segments.iter().enumerate() {
            let (v, dotted) = match self.get(at, seg) {
                Ok(got) => got,
                Err(()) => return Some(Err(Some(twice(seg, path)))),
            };
            if dotted == Dotted(true) {
                return None;
            }
            let Some(v) = v else {
                return Some(Err(None));
            };
            if j == last {
                return Some(Ok(v));
            }
            match self.object(v) {
                Some(inner) => at = inner,
                None => return Some(Err(None)),
            }
        }
        Some(Err(None))
    }

    /// Calls `hit` with each spelling of `path` from segment `from` (at
    /// byte `start` of its text) in the object `at`, and the keys that led
    /// there, until `hit` says stop.
    fn walk<'t>(
        &self,
        at: At,
        path: &'p FieldPath,
        from: usize,
        start: usize,
        trail: &mut Trail<'t>,
        hit: &mut dyn FnMut(&[&'t str], &'a RawValue) -> bool,
    ) -> Result<bool, String>
    where
        'p: 't,
    {
        for (key, next, end, last) in parts(path, from, start) {
            let (v, dotted) = self.get(at, key).map_err(|()| twice(key, path))?;
            if let Some(v) = v {
                trail.push(key);
                let go_on = if last {
                    hit(trail, v)
                } else if let Some(inner) = self.object(v) {
                    self.walk(inner, path, next, end + 1, trail, hit)?
                } else {
                    true
                };
                trail.pop();
                if !go_on {
                    return Ok(false);
                }
            }
            if dotted == Dotted(false) {
                break;
            }
        }
        Ok(true)
    }

    /// Every entry of the object `path` names from segment `from` (at byte
    /// `start` of its text) in the object `at`: the entries of each object
    /// the path is spelled to, and keys that spell the path and an entry
    /// dotted. With `spell`, each with the keys that led to it joined by
    /// ` → ` (for the message when two differ; empty otherwise).
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn gather(
        &self,
        at: At,
        path: &'p FieldPath,
        from: usize,
        start: usize,
        spell: bool,
        trail: &mut Trail<'p>,
        out: &mut Vec<(String, String, &'a RawValue)>,
    ) -> Result<(), String> {
        let spelled = |trail: &Trail<'p>, k: &str| {
            if !spell {
                return String::new();
            }
            let mut t: Vec<&str> = trail.to_vec();
            t.push(k);
            t.join("` → `")
        };
        let dotted = self.with(at, |o| o.1);
        if dotted == Dotted(true) {
            let rest = &path.text[start..];
            for (k, v) in self.with(at, |o| o.0.clone()) {
                if let Some(name) = k.strip_prefix(rest).and_then(|n| n.strip_prefix('.')) {
                    out.push((name.to_string(), spelled(trail, &k), v));
                }
            }
        }
        for (key, next, end, last) in parts(path, from, start) {
            let (v, _) = self.get(at, key).map_err(|()| twice(key, path))?;
            match v.map(|v| (v, self.object(v))) {
                Some((v, None)) if last => {
                    return Err(format!(
                        "invalid metric event: `{}` = {} is not an object",
                        path.text,
                        clip(v.get())
                    ))
                }
                Some((_, Some(inner))) => {
                    trail.push(key);
                    if last {
                        let mut seen = std::collections::HashSet::new();
                        for (k, v) in self.with(inner, |o| o.0.clone()) {
                            if !seen.insert(k.clone()) {
                                return Err(format!(
                                    "invalid metric event: the key `{k}` appears twice in `{}`; JSON keys must be unique",
                                    path.text
                                ));
                            }
                            out.push((k.to_string(), spelled(trail, &k), v));
                        }
                    } else {
                        self.gather(inner, path, next, end + 1, spell, trail, out)?;
                    }
                    trail.pop();
                }
                _ => {}
            }
            if dotted == Dotted(false) {
                break;
            }
        }
        Ok(())
    }

    /// `f` of the object `at`.
    fn with<R>(&self, at: At, f: impl FnOnce(&Obj<'a>) -> R) -> R {
        match at {
            At::Root => f(&self.root),
            At::Nested(i) => f(&self.objects.borrow()[i].1),
        }
    }

    /// The value of `key` in the object `at`, and whether that object has
    /// dotted keys; `Err` for a key twice.
    fn get(&self, at: At, key: &str) -> Result<(Option<&'a RawValue>, Dotted), ()> {
        self.with(at, |o| Ok((o.get(key)?, o.1)))
    }

    /// `v` as a nested object, parsed once per event; `None` when it is
    /// not an object.
    fn object(&self, v: &'a RawValue) -> Option<At> {
        let addr = v.get().as_ptr() as usize;
        let mut objects = self.objects.borrow_mut();
        if let Some(i) = objects.iter().position(|(a, _)| *a == addr) {
            return Some(At::Nested(i));
        }
        let obj: Obj<'a> = serde_json::from_str(v.get()).ok()?;
        objects.push((addr, obj));
        Some(At::Nested(objects.len() - 1))
    }
}

/// The keys a spelling of `path` from segment `from` (at byte `start` of
/// its text) can take in one object, shortest first (`system`,
/// `system.cpu`, `system.cpu.pct`), each with the segment after it, the
/// byte where it ends, and whether it reaches the path's end.
fn parts(
    path: &FieldPath,
    from: usize,
    start: usize,
) -> impl Iterator<Item = (&str, usize, usize, bool)> {
    let last = path.segments.len();
    let mut end = start;
    (from..last).map(move |j| {
        end += path.segments[j].len() + usize::from(j > from);
        (&path.text[start..end], j + 1, end, j + 1 == last)
    })
}

fn twice(key: &str, path: &FieldPath) -> String {
    format!(
        "invalid metric event: the key `{key}` (of `{}`) appears twice in its object; JSON keys must be unique",
        path.text
    )
}

/// A finite number the `f64` holds exactly (see [`crate::decimal`]), or an
/// error naming the field (its path in the event): for every shape, the
/// default one too.
pub(crate) fn number(field: &str, raw: &RawValue) -> Result<f64, String> {
    exact_f64(raw.get()).map_err(|why| {
        format!(
            "invalid metric event: `{field}` = {} {why}",
            clip(raw.get())
        )
    })
}

/// The entries of the `values_from` object, and the metric prefix.
///
/// The object's entries however they are spelled, as for a path: those of
/// the object `fields` (nested or dotted on the way), and keys that spell
/// an entry dotted (`{"fields.cpu": 1}` is the entry `cpu` of `fields`).
/// Before, dotted entries beside the object were left out with nothing
/// said. An entry in two spellings with two values is refused, naming
/// both; a key twice in one object is refused as in [`Doc::lookup`].
#[allow(clippy::type_complexity)]
pub(super) fn entries<'a, 'p>(
    root: &Doc<'a, 'p>,
    object: &'p FieldPath,
    prefix: Option<&'p FieldPath>,
) -> Result<(Option<String>, Vec<(String, &'a RawValue)>), String> {
    let gather = |spell: bool| {
        let mut found = Vec::new();
        root.gather(At::Root, object, 0, 0, spell, &mut Trail::new(), &mut found)
            .map(|()| found)
    };
    let found = gather(false)?;
    if found.is_empty() {
        // No spelling holds an entry: missing (or an empty object).
        root.lookup(object)?;
    }
    // In key order; the spellings are written out only for the message.
    let mut map: BTreeMap<String, &'a RawValue> = BTreeMap::new();
    for (name, _, v) in found {
        match map.entry(name) {
            Entry::Vacant(e) => {
                e.insert(v);
            }
            Entry::Occupied(e) if e.get().get().trim() == v.get().trim() => {}
            Entry::Occupied(e) => {
                let both: Vec<String> = gather(true)?
                    .into_iter()
                    .filter(|(n, _, _)| n == e.key())
                    .map(|(_, spelled, v)| format!("`{spelled}` = {}", clip(v.get())))
                    .collect();
                return Err(format!(
                    "invalid metric event: the entry `{}` of `{}` is in the event twice with different values ({}): which one is meant cannot be known. Fix: write each field once, nested or dotted",
                    e.key(),
                    object.text,
                    both.join(", ")
                ));
            }
        }
    }
    let map: Vec<(String, &'a RawValue)> = map.into_iter().collect();
    let prefix = match prefix {
        None => None,
        Some(p) => {
            let raw = root.lookup(p)?;
            Some(serde_json::from_str::<String>(raw.get()).map_err(|_| {
                format!(
                    "invalid metric event: `{}` = {} is not a string",
                    p.text,
                    clip(raw.get())
                )
            })?)
        }
    };
    Ok((prefix, map))
}

/// The text of a JSON number (not a string, bool, null, object or array).
pub(super) fn number_text(raw: &str) -> Option<&str> {
    let t = raw.trim();
    t.starts_with(|c: char| c == '-' || c.is_ascii_digit())
        .then_some(t)
}

/// At most 80 characters of a value, for messages.
pub(crate) fn clip(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
