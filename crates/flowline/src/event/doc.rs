//! One event as the shape reads it: its object, the nested objects its
//! paths pass (each parsed once), numbers and the entries of an object.

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
    objects: std::cell::RefCell<Vec<(&'p str, Obj<'a>)>>,
}

/// A JSON object's entries in their order, each value left unparsed, keys
/// borrowed from the event (copied only when they hold an escape). Events
/// have few fields: a scan is faster than building a map.
struct Obj<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

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
                while let Some(Key(k)) = m.next_key::<Key<'a>>()? {
                    out.push((k, m.next_value::<&'a RawValue>()?));
                }
                Ok(Obj(out))
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
            root: serde_json::from_str(text)
                .map_err(|e| format!("invalid metric event: not a JSON object ({e})"))?,
            objects: Default::default(),
        })
    }

    /// The value at `path`, or an error naming it.
    pub(super) fn lookup(&self, path: &'p FieldPath) -> Result<&'a RawValue, String> {
        let missing = || format!("invalid metric event: missing field `{}`", path.text);
        let (first, rest) = path.segments.split_first().ok_or_else(missing)?;
        let twice = |key: &str| {
            format!(
                "invalid metric event: the key `{key}` (of `{}`) appears twice in its object; JSON keys must be unique",
                path.text
            )
        };
        let mut cur: &'a RawValue = self
            .root
            .get(first)
            .map_err(|()| twice(first))?
            .ok_or_else(missing)?;
        let mut objects = self.objects.borrow_mut();
        for (seg, prefix) in rest.iter().zip(&path.prefixes) {
            let i = match objects.iter().position(|(p, _)| *p == prefix.as_str()) {
                Some(i) => i,
                None => {
                    let obj: Obj<'a> = serde_json::from_str(cur.get()).map_err(|_| missing())?;
                    objects.push((prefix.as_str(), obj));
                    objects.len() - 1
                }
            };
            cur = objects[i]
                .1
                .get(seg)
                .map_err(|()| twice(seg))?
                .ok_or_else(missing)?;
        }
        Ok(cur)
    }
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
#[allow(clippy::type_complexity)]
pub(super) fn entries<'a, 'p>(
    root: &Doc<'a, 'p>,
    object: &'p FieldPath,
    prefix: Option<&'p FieldPath>,
) -> Result<(Option<String>, Vec<(String, &'a RawValue)>), String> {
    let raw = root.lookup(object)?;
    // In key order; a key twice is refused, as in `lookup`.
    let obj = serde_json::from_str::<Obj<'a>>(raw.get()).map_err(|_| {
        format!(
            "invalid metric event: `{}` = {} is not an object",
            object.text,
            clip(raw.get())
        )
    })?;
    let mut map = BTreeMap::new();
    for (k, v) in obj.0 {
        match map.entry(k.into_owned()) {
            Entry::Vacant(e) => {
                e.insert(v);
            }
            Entry::Occupied(e) => {
                return Err(format!(
                    "invalid metric event: the key `{}` appears twice in `{}`; JSON keys must be unique",
                    e.key(),
                    object.text
                ))
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
