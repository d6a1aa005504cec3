//! The entityOS usage log: one JSON object per line, fields found by the
//! configured dotted paths (docs/LOG-FORMATS.md). Only the mapped fields are
//! materialised; everything else is skipped by the JSON scanner without
//! allocation.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::bad::{Bad, BadReason, bad};
use crate::error::OptionsError;
use crate::options::FieldMap;
use crate::record::{Raw, parse_addr, parse_status};
use crate::stamp;

// Slots in `FieldMap::paths` order.
const SLOTS: usize = 9;
const TIME: usize = 0;
const STATUS: usize = 5;
const SOURCE_IP: usize = 6;

#[derive(Debug, Clone, Copy)]
enum Slot {
    Leaf(usize),
    Node(usize),
}

/// A mapped key with its signature: length, first and last byte, which
/// rule out the keys a line has but the map does not before any string
/// comparison.
#[derive(Debug)]
struct Child {
    sig: (usize, u8, u8),
    key: String,
    slot: Slot,
}

fn sig(key: &str) -> (usize, u8, u8) {
    let b = key.as_bytes();
    (
        b.len(),
        b.first().copied().unwrap_or(0),
        b.last().copied().unwrap_or(0),
    )
}

#[derive(Debug, Default)]
struct Node {
    children: Vec<Child>,
}

impl Node {
    fn find(&self, key: &str) -> Option<Slot> {
        let s = sig(key);
        self.children
            .iter()
            .find(|c| c.sig == s && c.key == key)
            .map(|c| c.slot)
    }

    fn push(&mut self, key: &str, slot: Slot) {
        self.children.push(Child {
            sig: sig(key),
            key: key.to_owned(),
            slot,
        });
    }
}

/// The mapped paths as a tree of object keys.
#[derive(Debug)]
pub(crate) struct PathTree {
    nodes: Vec<Node>,
    names: [&'static str; SLOTS],
    paths: Vec<String>,
}

impl PathTree {
    pub(crate) fn new(map: &FieldMap) -> Result<PathTree, OptionsError> {
        let mut tree = PathTree {
            nodes: vec![Node::default()],
            names: [""; SLOTS],
            paths: Vec::with_capacity(SLOTS),
        };
        for (slot, (name, path)) in map.paths().into_iter().enumerate() {
            tree.names[slot] = name;
            tree.paths.push(path.to_owned());
            if path.is_empty() {
                continue;
            }
            let err = |reason| OptionsError::FieldPath {
                field: name,
                path: path.to_owned(),
                reason,
            };
            let keys: Vec<&str> = path.split('.').collect();
            if keys.iter().any(|k| k.is_empty()) {
                return Err(err("empty key in dotted path"));
            }
            let mut node = 0;
            for (i, key) in keys.iter().enumerate() {
                let last = i + 1 == keys.len();
                let found = tree.nodes[node].find(key);
                match (found, last) {
                    (None, true) => tree.nodes[node].push(key, Slot::Leaf(slot)),
                    (None, false) => {
                        tree.nodes.push(Node::default());
                        let child = tree.nodes.len() - 1;
                        tree.nodes[node].push(key, Slot::Node(child));
                        node = child;
                    }
                    (Some(Slot::Node(child)), false) => node = child,
                    (Some(Slot::Leaf(_)), _) | (Some(Slot::Node(_)), true) => {
                        return Err(err("collides with another mapped field"));
                    }
                }
            }
        }
        Ok(tree)
    }
}

impl PathTree {
    /// A tree mapping nothing (only used if validation was skipped).
    pub(crate) fn empty() -> PathTree {
        PathTree {
            nodes: vec![Node::default()],
            names: [""; SLOTS],
            paths: vec![String::new(); SLOTS],
        }
    }
}

/// A JSON value at a mapped path.
#[derive(Debug)]
enum Val<'a> {
    Str(Cow<'a, str>),
    Num(f64),
    List(Vec<Cow<'a, str>>),
    Null,
    Other,
}

struct ValVisitor;

impl<'de> Visitor<'de> for ValVisitor {
    type Value = Val<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Owned(v)))
    }
    #[allow(clippy::cast_precision_loss)]
    fn visit_u64<E>(self, v: u64) -> Result<Val<'de>, E> {
        Ok(Val::Num(v as f64))
    }
    #[allow(clippy::cast_precision_loss)]
    fn visit_i64<E>(self, v: i64) -> Result<Val<'de>, E> {
        Ok(Val::Num(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Val<'de>, E> {
        Ok(Val::Num(v))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Val<'de>, E> {
        Ok(Val::Other)
    }
    fn visit_unit<E>(self) -> Result<Val<'de>, E> {
        Ok(Val::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val<'de>, A::Error> {
        let mut items = Vec::new();
        let mut strings = true;
        while let Some(Value(v)) = seq.next_element::<Value<'de>>()? {
            match v {
                Val::Str(s) if strings => items.push(s),
                _ => strings = false,
            }
        }
        Ok(if strings {
            Val::List(items)
        } else {
            Val::Other
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Val<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Val::Other)
    }
}

/// Keys: borrowed when the JSON key has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KV;
        impl<'de> Visitor<'de> for KV {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KV)
    }
}

struct Value<'de>(Val<'de>);

impl<'de> serde::Deserialize<'de> for Value<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValVisitor).map(Value)
    }
}

/// Walks one object level, filling the slots of mapped leaves.
struct ObjSeed<'t, 'o, 'de> {
    tree: &'t PathTree,
    node: usize,
    out: &'o mut [Option<Val<'de>>; SLOTS],
}

impl<'de> DeserializeSeed<'de> for ObjSeed<'_, '_, 'de> {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ObjSeed<'_, '_, 'de> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let node = &self.tree.nodes[self.node];
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match node.find(&key) {
                Some(Slot::Leaf(i)) => {
                    let Value(v) = map.next_value::<Value<'de>>()?;
                    if let Some(slot) = self.out.get_mut(i) {
                        *slot = Some(v);
                    }
                }
                Some(Slot::Node(n)) => {
                    map.next_value_seed(ObjSeed {
                        tree: self.tree,
                        node: n,
                        out: &mut *self.out,
                    })?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(true)
    }
    // A mapped prefix whose value is not an object: nothing below it.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

fn text<'a>(v: Option<Val<'a>>) -> Option<Cow<'a, str>> {
    match v {
        Some(Val::Str(s)) => Some(s),
        #[allow(clippy::cast_possible_truncation)]
        Some(Val::Num(n)) if n.fract() == 0.0 && n.abs() < 1e15 => {
            Some(Cow::Owned(format!("{}", n as i64)))
        }
        _ => None,
    }
}

/// Parse one usage-log line.
/// The line is text already (checked once by the caller), so serde_json
/// reads it without checking each string again.
pub(crate) fn parse<'a>(tree: &PathTree, line: &'a str) -> Result<Raw<'a>, Bad> {
    let mut out: [Option<Val<'a>>; SLOTS] = Default::default();
    let mut de = serde_json::Deserializer::from_str(line);
    let parsed = ObjSeed {
        tree,
        node: 0,
        out: &mut out,
    }
    .deserialize(&mut de)
    .and_then(|is_object| de.end().map(|()| is_object));
    match parsed {
        Ok(true) => {}
        Ok(false) => return Err(Bad::new(BadReason::InvalidJson, "not a JSON object")),
        Err(e) => return Err(Bad::new(BadReason::InvalidJson, e.to_string())),
    }
    let [
        time,
        space,
        user,
        method,
        path,
        status,
        source_ip,
        xff,
        host,
    ] = out;
    let missing = |slot: usize| {
        Bad::new(
            BadReason::MissingField,
            format!(
                "field `{}` (path `{}`) is absent",
                tree.names[slot], tree.paths[slot]
            ),
        )
    };
    let time = match time {
        Some(Val::Str(s)) => match stamp::rfc3339(&s) {
            Some(t) => t,
            None => return bad(BadReason::BadTime, "timestamp", &s),
        },
        Some(Val::Num(n)) => match stamp::epoch(n) {
            Some(t) => t,
            None => return bad(BadReason::BadTime, "timestamp", &n.to_string()),
        },
        _ => return Err(missing(TIME)),
    };
    let peer = match text(source_ip) {
        Some(s) => match parse_addr(&s, false) {
            Some(a) => a,
            None => return bad(BadReason::BadAddress, "source_ip", &s),
        },
        None => return Err(missing(SOURCE_IP)),
    };
    let status = match status {
        // A JSON number: no text round trip.
        #[allow(clippy::cast_possible_truncation)]
        Some(Val::Num(n)) if n.fract() == 0.0 && n.abs() < 1e15 => match n as i64 {
            code @ 100..=599 => u16::try_from(code).ok(),
            code => return bad(BadReason::BadStatus, "status", &code.to_string()),
        },
        other => match text(other) {
            Some(s) => parse_status(&s)?,
            None => return Err(missing(STATUS)),
        },
    };
    let xff = match xff {
        Some(Val::List(items)) => Some(Cow::Owned(items.join(","))),
        other => text(other),
    };
    let user = text(user).filter(|u| !u.is_empty() && u != "-");
    Ok(Raw {
        time: Some(time),
        space: text(space),
        host: text(host),
        peer: Some(peer),
        xff,
        user,
        method: text(method),
        path: text(path).map(|p| match memchr::memchr(b'?', p.as_bytes()) {
            None => p,
            Some(q) => match p {
                Cow::Borrowed(b) => Cow::Borrowed(b.get(..q).unwrap_or(b)),
                Cow::Owned(mut o) => {
                    o.truncate(q);
                    Cow::Owned(o)
                }
            },
        }),
        status,
        waf_action: None,
        conn_trace_id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> PathTree {
        PathTree::new(&FieldMap::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn flat_line() {
        let line = r#"{"timestamp":"2026-11-02T09:14:03.123Z","space":"acme","user":"alice@acme.example","method":"POST","path":"/rpc/x?y=1","status":200,"source_ip":"10.0.3.17","x_forwarded_for":"203.0.113.9, 10.0.1.5","extra":{"a":[1,2,{"b":null}]}}"#;
        let raw = parse(&tree(), line).unwrap_or_else(|b| panic!("{b:?}"));
        assert_eq!(raw.space.as_deref(), Some("acme"));
        assert_eq!(raw.user.as_deref(), Some("alice@acme.example"));
        assert_eq!(raw.status, Some(200));
        assert_eq!(raw.path.as_deref(), Some("/rpc/x"));
        assert_eq!(raw.xff.as_deref(), Some("203.0.113.9, 10.0.1.5"));
    }

    #[test]
    fn nested_paths_and_numeric_strings() {
        let map = FieldMap {
            time: "ts".into(),
            space: "ctx.space.id".into(),
            user: "ctx.user".into(),
            source_ip: "req.peer".into(),
            x_forwarded_for: "req.headers.x-forwarded-for".into(),
            status: "res.code".into(),
            ..FieldMap::default()
        };
        let tree = PathTree::new(&map).unwrap_or_else(|e| panic!("{e}"));
        let line = r#"{"ts":1793610843123,"ctx":{"space":{"id":"globex"},"user":"bob"},"req":{"peer":"[2001:db8::7]:443","headers":{"x-forwarded-for":["198.51.100.4","10.0.0.1"]}},"res":{"code":"302"}}"#;
        let raw = parse(&tree, line).unwrap_or_else(|b| panic!("{b:?}"));
        assert_eq!(raw.space.as_deref(), Some("globex"));
        assert_eq!(raw.status, Some(302));
        assert_eq!(raw.xff.as_deref(), Some("198.51.100.4,10.0.0.1"));
        assert_eq!(raw.time.map(|t| t.secs), Some(1_793_610_843));
    }

    #[test]
    fn colliding_paths_are_refused() {
        let map = FieldMap {
            user: "ctx".into(),
            space: "ctx.space".into(),
            ..FieldMap::default()
        };
        assert!(PathTree::new(&map).is_err());
        let map = FieldMap {
            user: "a..b".into(),
            ..FieldMap::default()
        };
        assert!(PathTree::new(&map).is_err());
    }

    #[test]
    fn reasons() {
        let t = tree();
        let reason = |l: &str| parse(&t, l).map(|_| ()).map_err(|b| b.reason);
        assert_eq!(reason("[1,2]"), Err(BadReason::InvalidJson));
        assert_eq!(reason("{\"timestamp\":"), Err(BadReason::InvalidJson));
        assert_eq!(
            reason("{\"space\":\"a\",\"status\":200,\"source_ip\":\"1.2.3.4\"}"),
            Err(BadReason::MissingField)
        );
        assert_eq!(
            reason("{\"timestamp\":\"x\",\"status\":200,\"source_ip\":\"1.2.3.4\"}"),
            Err(BadReason::BadTime)
        );
        assert_eq!(
            reason("{\"timestamp\":1,\"status\":200,\"source_ip\":\"nope\"}"),
            Err(BadReason::BadAddress)
        );
        assert_eq!(
            reason("{\"timestamp\":1,\"status\":2000,\"source_ip\":\"1.2.3.4\"}"),
            Err(BadReason::BadStatus)
        );
        // Invalid UTF-8 never reaches this parser: the scan checks each
        // line once (scan.rs, `invalid_utf8_forwarded_for_garbage_and_missing_fields_are_named`).
    }
}
