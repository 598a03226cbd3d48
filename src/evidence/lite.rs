//! A compact, read-only JSON value for evidence held in memory.
//!
//! `serde_json::Value` spends a B-tree node per object and a growable
//! buffer per string; across 200,000 held artifacts that is most of a
//! run's memory. `Lite` stores the same tree in boxed slices (no spare
//! capacity), with object keys shared through a small interner, and is
//! parsed straight from the artifact bytes: fields nobody reads are
//! skipped without being built (see [`KeepSeed`]).

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

/// A JSON value; objects keep their keys in document order, without
/// null members (artifact
/// files are written with sorted keys, so that is sorted order).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Lite {
    #[default]
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(Box<str>),
    Array(Box<[Lite]>),
    Object(Box<[(Arc<str>, Lite)]>),
}

static NULL: Lite = Lite::Null;

impl Lite {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Lite> {
        match self {
            Lite::Object(m) => m.iter().find(|(k, _)| &**k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Lite::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Lite]> {
        match self {
            Lite::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Lite::Null)
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Lite::Object(_))
    }

    pub fn is_string(&self) -> bool {
        matches!(self, Lite::String(_))
    }
}

impl std::ops::Index<&str> for Lite {
    type Output = Lite;

    /// Like `serde_json::Value`: a missing member (or a non-object) is null.
    fn index(&self, key: &str) -> &Lite {
        self.get(key).unwrap_or(&NULL)
    }
}

/// Shares object keys (a few dozen distinct names across every artifact)
/// and the classes of held artifacts.
#[derive(Debug, Default)]
pub struct Keys {
    names: HashSet<Arc<str>>,
    classes: HashSet<Arc<crate::evidence::Class>>,
}

impl Keys {
    pub fn intern(&mut self, k: &str) -> Arc<str> {
        if let Some(a) = self.names.get(k) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(k);
        self.names.insert(a.clone());
        a
    }

    pub fn class(&mut self, c: crate::evidence::Class) -> Arc<crate::evidence::Class> {
        if let Some(a) = self.classes.get(&c) {
            return a.clone();
        }
        let a = Arc::new(c);
        self.classes.insert(a.clone());
        a
    }
}

/// Parses a value, keeping at the top level only the members `keep`
/// accepts (`None`: all); rejected members are skipped unbuilt.
pub struct KeepSeed<'k> {
    pub keys: &'k mut Keys,
    pub keep: Option<&'k dyn Fn(&str) -> bool>,
}

impl<'de> DeserializeSeed<'de> for KeepSeed<'_> {
    type Value = Lite;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Lite, D::Error> {
        d.deserialize_any(LiteVisitor {
            keys: self.keys,
            keep: self.keep,
        })
    }
}

struct LiteVisitor<'k> {
    keys: &'k mut Keys,
    keep: Option<&'k dyn Fn(&str) -> bool>,
}

impl<'de> Visitor<'de> for LiteVisitor<'_> {
    type Value = Lite;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Lite, E> {
        Ok(Lite::Null)
    }

    fn visit_none<E>(self) -> Result<Lite, E> {
        Ok(Lite::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Lite, E> {
        Ok(Lite::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Lite, E> {
        Ok(Lite::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Lite, E> {
        Ok(Lite::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Lite, E> {
        Ok(serde_json::Number::from_f64(n).map_or(Lite::Null, Lite::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Lite, E> {
        Ok(Lite::String(s.into()))
    }

    fn visit_string<E>(self, s: String) -> Result<Lite, E> {
        Ok(Lite::String(s.into_boxed_str()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Lite, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element_seed(KeepSeed {
            keys: &mut *self.keys,
            keep: None,
        })? {
            out.push(v);
        }
        Ok(Lite::Array(out.into_boxed_slice()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Lite, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if self.keep.is_some_and(|keep| !keep(&k)) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let v = map.next_value_seed(KeepSeed {
                keys: &mut *self.keys,
                keep: None,
            })?;
            // A null member reads as an absent one (`Index` gives null for
            // both); not storing it saves most of an unsigned signature.
            if !v.is_null() {
                out.push((self.keys.intern(&k), v));
            }
        }
        Ok(Lite::Object(out.into_boxed_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The same value as a `serde_json::Value`.
    fn to_value(v: &Lite) -> Value {
        match v {
            Lite::Null => Value::Null,
            Lite::Bool(b) => Value::Bool(*b),
            Lite::Number(n) => Value::Number(n.clone()),
            Lite::String(s) => Value::String(s.to_string()),
            Lite::Array(a) => Value::Array(a.iter().map(to_value).collect()),
            Lite::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.to_string(), to_value(v)))
                    .collect(),
            ),
        }
    }

    fn parse(text: &str, keep: Option<&dyn Fn(&str) -> bool>) -> Lite {
        let mut keys = Keys::default();
        let mut de = serde_json::Deserializer::from_str(text);
        KeepSeed {
            keys: &mut keys,
            keep,
        }
        .deserialize(&mut de)
        .unwrap()
    }

    #[test]
    fn round_trips_every_json_type() {
        let v = json!({"a": [1, -2, 2.5, "x", null, true], "b": {"c": {"d": "e"}}, "u": 18446744073709551615u64});
        let lite = parse(&v.to_string(), None);
        assert_eq!(to_value(&lite), v);
        assert_eq!(lite["b"]["c"]["d"].as_str(), Some("e"));
        assert!(lite["missing"]["deeper"].is_null());
        assert_eq!(lite["a"].as_array().map(<[Lite]>::len), Some(6));
    }

    #[test]
    fn skips_members_it_does_not_keep_at_the_top_level_only() {
        let keep = |k: &str| k == "signature";
        let lite = parse(
            r#"{"message": {"huge": [1,2,3]}, "signature": {"message": "kept", "status": "verified"}}"#,
            Some(&keep),
        );
        assert!(lite.get("message").is_none());
        assert_eq!(lite["signature"]["message"].as_str(), Some("kept"));
    }

    #[test]
    fn drops_null_members_of_objects_but_not_of_arrays() {
        let lite = parse(
            r#"{"a": null, "b": {"c": null, "d": 1}, "e": [null]}"#,
            None,
        );
        assert!(lite.get("a").is_none());
        assert!(lite["b"].get("c").is_none());
        assert_eq!(lite["b"]["d"], Lite::Number(1.into()));
        assert_eq!(lite["e"].as_array().map(<[Lite]>::len), Some(1));
    }

    #[test]
    fn shares_keys_between_values() {
        let mut keys = Keys::default();
        let mut parse_with = |text: &str| {
            KeepSeed {
                keys: &mut keys,
                keep: None,
            }
            .deserialize(&mut serde_json::Deserializer::from_str(text))
            .unwrap()
        };
        let a = parse_with(r#"{"status": 1}"#);
        let b = parse_with(r#"{"status": 2}"#);
        match (a, b) {
            (Lite::Object(a), Lite::Object(b)) => assert!(Arc::ptr_eq(&a[0].0, &b[0].0)),
            _ => unreachable!("objects parse to objects"),
        }
    }
}
