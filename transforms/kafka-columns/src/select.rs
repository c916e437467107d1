//! Reads only the parts of a JSON value that a stage's column paths name, in one pass over the
//! text: a record's other fields (a long free-text note, a nested blob nobody asked for) are
//! checked for syntax and skipped, never built into `serde_json::Value`s. The result is what
//! `path::get` returns on the fully parsed value, path for path (the unit tests and the
//! `json_select` fuzz target hold the two to that), including the last of duplicate keys winning.
//! Text that is not JSON is refused as before, with one difference: a field no column reads is
//! checked for syntax only, so a number beyond `f64` (`1e999`), a lone UTF-16 surrogate escape
//! (`"\ud800"`) or nesting deeper than serde_json's limit of 128 in it no longer makes the record
//! a dead letter (in a field a column reads, it still does). The caller checks the bytes are
//! UTF-8 first (`read` takes `&str`).
//!
//! A fast scan (`scan`) reads the text first and hands it to serde_json whenever it is not sure;
//! serde_json's reading here is the reference it is held to, answer for answer and error for
//! error ([`Selection::read_picked_serde`]).
//!
//! Why: parsing the whole value cost most of this stage's time on records with a few wanted
//! fields among many (docs/bench/README.md, "Where the CPU goes"). A string where a path ends is
//! borrowed from the text when it has no escapes ([`Picked`]), so the stage copies it once, into
//! its answer, instead of into a `String` first (docs/bench/README.md, "Strings borrowed from the
//! record in `kafka-columns`").

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize as _;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;

use crate::path::Step;

mod scan;

/// The paths a stage reads, as a tree of the keys and indexes they go through.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    root: Node,
    paths: usize,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// Paths that end here, with the steps they still take inside this node's value when a
    /// shorter path ends here too (then the whole value is built and they are looked up in it).
    ends: Vec<usize>,
    /// Every path at or below this node: cleared when a duplicate key enters it again.
    below: Vec<usize>,
    keys: Vec<(String, Node)>,
    /// Each key's first sixteen bytes, zero-padded: the fast scan matches a key of up to sixteen
    /// bytes with one vector compare (`scan::child`).
    heads: Vec<[u8; 16]>,
    indexes: Vec<(usize, Node)>,
    /// Set when some path ends at or above a descendant: see `ends`.
    tails: Vec<(usize, Vec<Step>)>,
}

impl Selection {
    /// The tree of `paths`; `read` answers in the same order.
    pub fn new(paths: &[&[Step]]) -> Self {
        let mut root = Node::default();
        for (id, steps) in paths.iter().enumerate() {
            let mut node = &mut root;
            node.below.push(id);
            for step in *steps {
                node = match step {
                    Step::Key(k) => child(&mut node.keys, k.clone(), |(n, _)| n == k),
                    Step::Index(i) => child(&mut node.indexes, *i, |(n, _)| n == i),
                };
                node.below.push(id);
            }
            node.ends.push(id);
        }
        root.settle(paths, 0);
        Selection {
            root,
            paths: paths.len(),
        }
    }

    /// Parses `text` and returns the value at each path (`None` where a step is missing), or
    /// serde_json's error for text that is not one JSON value.
    pub fn read(&self, text: &str) -> Result<Vec<Option<Json>>, serde_json::Error> {
        let picked = self.read_picked(text)?;
        Ok(picked
            .into_iter()
            .map(|p| p.map(Picked::into_json))
            .collect())
    }

    /// [`Selection::read`] with a string at a path's end borrowed from `text` where it has no
    /// escapes (copied where it has): the stage writes it into its answer without building a
    /// `String` first. Read by the fast scan (`scan`), or by serde_json where the scan leaves the
    /// text to it ([`Selection::read_picked_serde`]).
    pub fn read_picked<'t>(
        &self,
        text: &'t str,
    ) -> Result<Vec<Option<Picked<'t>>>, serde_json::Error> {
        match scan::read(&self.root, self.paths, text) {
            Some(out) => Ok(out),
            None => self.read_picked_serde(text),
        }
    }

    /// [`Selection::read_picked`] through serde_json alone: what the fast scan falls back to, and
    /// the reference the tests and the `json_select` fuzz target hold it to.
    pub fn read_picked_serde<'t>(
        &self,
        text: &'t str,
    ) -> Result<Vec<Option<Picked<'t>>>, serde_json::Error> {
        let mut out = vec![None; self.paths];
        let mut de = serde_json::Deserializer::from_str(text);
        Seed {
            node: &self.root,
            out: &mut out,
        }
        .deserialize(&mut de)?;
        de.end()?;
        Ok(out)
    }

    /// The value at each path of an already parsed value (a key or value decoded from another
    /// serializer's bytes).
    pub fn get(&self, value: &Json) -> Vec<Option<Json>> {
        let mut out = vec![None; self.paths];
        self.root.resolve(value, &mut out);
        out
    }
}

/// The value at a path as [`Selection::read_picked`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Picked<'t> {
    /// A JSON string, unescaped.
    Text(Cow<'t, str>),
    /// Any other value, built whole.
    Value(Json),
}

impl Picked<'_> {
    /// The value as `serde_json` would have built it.
    pub fn into_json(self) -> Json {
        match self {
            Picked::Text(s) => Json::String(s.into_owned()),
            Picked::Value(v) => v,
        }
    }
}

fn child<K>(list: &mut Vec<(K, Node)>, key: K, same: impl Fn(&(K, Node)) -> bool) -> &mut Node {
    let at = match list.iter().position(same) {
        Some(at) => at,
        None => {
            list.push((key, Node::default()));
            list.len() - 1
        }
    };
    &mut list[at].1
}

/// A key's first sixteen bytes, the rest zero.
fn head(key: &str) -> [u8; 16] {
    let mut head = [0; 16];
    let n = key.len().min(16);
    head[..n].copy_from_slice(&key.as_bytes()[..n]);
    head
}

impl Node {
    /// Where a path ends at a node that has children, the node's whole value is built; the
    /// paths below it become tails looked up in that value.
    fn settle(&mut self, paths: &[&[Step]], depth: usize) {
        if !self.ends.is_empty() {
            self.tails = self
                .below
                .iter()
                .map(|&id| (id, paths[id][depth..].to_vec()))
                .collect();
            self.keys.clear();
            self.indexes.clear();
            return;
        }
        self.heads = self.keys.iter().map(|(key, _)| head(key)).collect();
        let keys = self.keys.iter_mut().map(|(_, node)| node);
        for node in keys.chain(self.indexes.iter_mut().map(|(_, node)| node)) {
            node.settle(paths, depth + 1);
        }
    }

    fn resolve(&self, value: &Json, out: &mut [Option<Json>]) {
        if !self.tails.is_empty() {
            for (id, tail) in &self.tails {
                out[*id] = crate::path::get(value, tail).cloned();
            }
            return;
        }
        for (key, node) in &self.keys {
            if let Some(v) = value.get(key.as_str()) {
                node.resolve(v, out);
            }
        }
        for (index, node) in &self.indexes {
            if let Some(v) = value.get(*index) {
                node.resolve(v, out);
            }
        }
    }

    /// Stores a value built whole at this node, where paths also go on inside it.
    fn take(&self, value: Json, out: &mut [Option<Picked<'_>>]) {
        for (id, tail) in &self.tails {
            out[*id] = crate::path::get(&value, tail).cloned().map(Picked::Value);
        }
    }
}

/// Reads one value for `node`: read as a leaf where one path ends and goes no further, built
/// whole where a path ends and others go on inside it, walked where paths go deeper, skipped
/// everywhere else.
struct Seed<'a, 'de> {
    node: &'a Node,
    out: &'a mut [Option<Picked<'de>>],
}

impl<'de> DeserializeSeed<'de> for Seed<'_, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        for &id in &self.node.below {
            self.out[id] = None;
        }
        match self.node.tails.as_slice() {
            [] => de.deserialize_any(self),
            [(id, tail)] if tail.is_empty() => {
                self.out[*id] = Some(de.deserialize_any(Leaf)?);
                Ok(())
            }
            _ => {
                let value = Json::deserialize(de)?;
                self.node.take(value, self.out);
                Ok(())
            }
        }
    }
}

/// A value where a path ends: a string as it is in the text when it can be borrowed, anything
/// else built as `serde_json::Value`'s own visitor builds it.
struct Leaf;

impl<'de> Visitor<'de> for Leaf {
    type Value = Picked<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Picked<'de>, E> {
        Ok(Picked::Text(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Picked<'de>, E> {
        Ok(Picked::Text(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Picked<'de>, E> {
        Ok(Picked::Text(Cow::Owned(s)))
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Picked<'de>, E> {
        Ok(Picked::Value(Json::Bool(b)))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Picked<'de>, E> {
        Ok(Picked::Value(Json::from(n)))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Picked<'de>, E> {
        Ok(Picked::Value(Json::from(n)))
    }
    // As `Value`'s visitor: a float that is not finite becomes null.
    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Picked<'de>, E> {
        Ok(Picked::Value(Json::from(x)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Picked<'de>, E> {
        Ok(Picked::Value(Json::Null))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Picked<'de>, A::Error> {
        Json::deserialize(MapAccessDeserializer::new(map)).map(Picked::Value)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Picked<'de>, A::Error> {
        Json::deserialize(SeqAccessDeserializer::new(seq)).map(Picked::Value)
    }
}

impl<'de> Visitor<'de> for Seed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(at) = map.next_key_seed(KeySeed(&self.node.keys))? {
            match at {
                Some(at) => map.next_value_seed(Seed {
                    node: &self.node.keys[at].1,
                    out: self.out,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            let found = match self.node.indexes.iter().position(|(i, _)| *i == index) {
                Some(at) => seq
                    .next_element_seed(Seed {
                        node: &self.node.indexes[at].1,
                        out: self.out,
                    })?
                    .is_some(),
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !found {
                return Ok(());
            }
            index += 1;
        }
    }

    // A scalar where a path wanted an object or an array: the path finds nothing.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Reads an object key without allocating it and answers which child it names, if any.
struct KeySeed<'a>(&'a [(String, Node)]);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<Option<usize>, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|(k, _)| k == key))
    }
}

#[cfg(test)]
mod tests;
