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
mod tests {
    use super::*;
    use crate::path::{get, parse};

    /// `read` agrees with parsing the whole value and following each path.
    fn agrees(paths: &[&str], text: &str) {
        let steps: Vec<Vec<Step>> = paths.iter().map(|p| parse(p).unwrap()).collect();
        let refs: Vec<&[Step]> = steps.iter().map(Vec::as_slice).collect();
        let selection = Selection::new(&refs);
        same_as_serde(&selection, text);
        let whole = serde_json::from_str::<Json>(text);
        match (selection.read(text), whole) {
            (Ok(got), Ok(value)) => {
                let want: Vec<Option<Json>> =
                    steps.iter().map(|s| get(&value, s).cloned()).collect();
                assert_eq!(got, want, "paths {paths:?} in {text}");
                assert_eq!(
                    selection.get(&value),
                    want,
                    "get: paths {paths:?} in {text}"
                );
            }
            (Err(_), Err(_)) => {}
            (got, want) => panic!("paths {paths:?} in {text}: read {got:?}, whole {want:?}"),
        }
    }

    /// The fast scan answers what serde_json alone answers: the same values, and an error
    /// exactly where serde_json gives one.
    fn same_as_serde(selection: &Selection, text: &str) {
        match (
            selection.read_picked(text),
            selection.read_picked_serde(text),
        ) {
            (Ok(fast), Ok(serde)) => assert_eq!(fast, serde, "{text}"),
            (Err(fast), Err(serde)) => assert_eq!(fast.to_string(), serde.to_string(), "{text}"),
            (fast, serde) => panic!("{text}: scan {fast:?}, serde_json {serde:?}"),
        }
    }

    #[test]
    fn the_fast_scan_agrees_with_serde_json_where_strings_numbers_and_nesting_are_hard() {
        let long = "word ".repeat(40);
        let nested = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        let nested_object = |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
        let texts = [
            // A string's end past several 16-byte chunks, with a control character or an
            // escape in each place a chunk can put it.
            format!(r#"{{"a": "{long}", "b": 1}}"#),
            format!("{{\"a\": \"{long}\u{1}{long}\"}}"),
            format!("{{\"a\": \"{long}\t\"}}"),
            format!("{{\"skip\": \"{long}\n{long}\", \"a\": 1}}"),
            format!(r#"{{"a": "{long}\"{long}\\", "b": "\u00e9\/\b"}}"#),
            format!(r#"{{"skip": "{long}\u12", "a": 1}}"#),
            format!(r#"{{"skip": "{long}\uzzzz", "a": 1}}"#),
            format!(r#"{{"a": "{long}\ud800"}}"#),
            format!(r#"{{"a": "{long}\ud83d\ude00"}}"#),
            format!(r#"{{"a": "{long}"#),
            // Keys with escapes and control characters.
            r#"{"\u0061": 1, "b": 2}"#.to_owned(),
            "{\"a\u{1f}\": 1, \"b\": 2}".to_owned(),
            r#"{"skip": {"k\"ey": 1}, "a": 2}"#.to_owned(),
            // Numbers: every kind at a path's end and skipped, and the grammar's edges.
            r#"{"a": -0, "b": 0.5e-3, "c": 18446744073709551616, "d": -9223372036854775809}"#
                .to_owned(),
            r#"{"a": 1E+2, "b": -1.0, "c": 12345678901234567890, "skip": 1e300}"#.to_owned(),
            r#"{"a": [1e999], "b": {"x": 1e999}}"#.to_owned(),
            r#"{"a": 01}"#.to_owned(),
            r#"{"a": -}"#.to_owned(),
            r#"{"a": 1.}"#.to_owned(),
            r#"{"a": 1e}"#.to_owned(),
            r#"{"a": .5}"#.to_owned(),
            r#"{"a": 1.5.5}"#.to_owned(),
            r#"{"a": +1}"#.to_owned(),
            // Literals, whitespace, separators.
            "\r\n\t {\"a\" \n:\t[ true , false,null ] , \"b\":{ } , \"c\" : [ ] }\n ".to_owned(),
            r#"{"a": nul}"#.to_owned(),
            r#"{"a": 1 "b": 2}"#.to_owned(),
            r#"{"a" 1}"#.to_owned(),
            r#"{"a": [1 2]}"#.to_owned(),
            r#"{"a": 1}}"#.to_owned(),
            "{\"a\": 1}\u{a0}".to_owned(),
            // Nesting around the scan's depth limit and serde_json's.
            format!(r#"{{"a": {}}}"#, nested(98)),
            format!(r#"{{"a": {}}}"#, nested(99)),
            format!(r#"{{"skip": {}, "a": 1}}"#, nested(100)),
            format!(r#"{{"a": {}}}"#, nested(126)),
            format!(r#"{{"a": {}}}"#, nested(127)),
            format!(r#"{{"a": {}}}"#, nested_object(99)),
            nested_object(127),
        ];
        let plain = Selection::new(&[&[Step::Key("a".into())]]);
        for text in [0, 4, 8, 13, 14, 23].map(|i| &texts[i]) {
            assert!(
                scan::read(&plain.root, plain.paths, text).is_some(),
                "the scan reads {text} itself"
            );
        }
        for text in &texts {
            for paths in [
                &["a", "b", "c", "d"][..],
                &["a[0]", "a[1]", "b.x", "c[0]"],
                &["a.a.a", "a", "skip"],
            ] {
                agrees(paths, text);
            }
        }
        // Deeper than serde_json's limit of 128: refused where a path goes that deep, read
        // where the deep part is a field no path reads (serde_json skips it without recursion),
        // by the scan as by serde_json.
        let deep = format!(r#"{{"skip": {}, "a": 1}}"#, nested_object(130));
        for paths in [&["a"][..], &["skip.a.a"]] {
            let steps: Vec<Vec<Step>> = paths.iter().map(|p| parse(p).unwrap()).collect();
            let refs: Vec<&[Step]> = steps.iter().map(Vec::as_slice).collect();
            same_as_serde(&Selection::new(&refs), &deep);
        }
    }

    /// The scan finds a string's end sixteen bytes at a time from the string's start, and the
    /// text's last bytes one at a time: a stop (the closing quote, an escape, a control character)
    /// at every place of a step and of the tail, beside the bytes that are not stops (0x20, DEL,
    /// UTF-8 above 0x7f, which a signed compare would take for control characters).
    #[test]
    fn the_fast_scan_finds_a_string_end_at_every_place_of_a_vector_step() {
        let stops = ["\"", "\\n", "\\u00e9", "\\\"", "\u{1}", "\u{1f}", "\t"];
        let others = [" ", "\u{7f}", "é", "中", "😀", "~"];
        let paths: &[&[Step]] = &[&[Step::Key("a".into())], &[Step::Key("b".into())]];
        let selection = Selection::new(paths);
        let root = Selection::new(&[&[Step::Index(0)]]);
        for before in 0..40 {
            let lead = "x".repeat(before);
            for piece in stops.iter().chain(&others) {
                let value_forms = [
                    format!(r#"{{"a": "{lead}{piece}yz", "b": 1}}"#),
                    format!(r#"{{"b": 1, "a": "{lead}{piece}"}}"#),
                    format!(r#"{{"skip": "{lead}{piece}", "a": 2}}"#),
                ];
                for text in &value_forms {
                    same_as_serde(&selection, text);
                    // Text it may read it reads itself, not by handing it to serde_json: a
                    // stop found a byte off would hand it over and still agree.
                    if serde_json::from_str::<Json>(text).is_ok() {
                        assert!(
                            scan::read(&selection.root, selection.paths, text).is_some(),
                            "the scan reads {text} itself"
                        );
                    }
                }
                // A key with an escape is left to serde_json by design.
                same_as_serde(&selection, &format!(r#"{{"{lead}{piece}": 1, "a": 2}}"#));
                // The string is the whole text: its end is in the tail unless it is long.
                same_as_serde(&root, &format!(r#""{lead}{piece}""#));
                same_as_serde(&root, &format!(r#"["{lead}{piece}"]"#));
            }
        }
    }

    /// Keys of up to sixteen bytes are matched by one vector compare of the text from the key's
    /// start (what follows the key in the text must not count), longer ones and keys in the
    /// text's last sixteen bytes byte for byte: keys around sixteen bytes, sharing a prefix,
    /// differing only in their last byte or only in length, multi-byte, empty, and last in the
    /// text.
    #[test]
    fn keys_are_matched_whole_around_sixteen_bytes_and_at_the_text_end() {
        let p16 = "abcdefghijklmnop";
        let paths = ["", "a", &p16[..15], p16, &format!("{p16}q"), "é中", "k.x"];
        let quoted = paths.map(|p| format!("[{}]", serde_json::to_string(p).unwrap()));
        let quoted: Vec<&str> = quoted.iter().map(String::as_str).collect();
        let near = [
            "",
            "a",
            "ab",
            "b",
            &p16[..14],
            &p16[..15],
            &format!("{}X", &p16[..15]),
            p16,
            &format!("{}X", &p16[..16]),
            &format!("{p16}q"),
            &format!("{p16}qr"),
            "é中",
            "é",
            "é中x",
        ];
        for (i, key) in near.iter().enumerate() {
            for text in [
                format!(r#"{{"{key}": {i}, "pad": "................"}}"#),
                format!(r#"{{"pad": 0, "{key}": "v{i}"}}"#),
                format!(r#"{{"k": {{"{key}": {i}, "x": 1}}, "{key}":[{i}]}}"#),
                format!(r#"{{"{key}":{i}}}"#),
            ] {
                agrees(&quoted, &text);
                let selection = Selection::new(
                    &quoted
                        .iter()
                        .map(|p| parse(p).unwrap())
                        .collect::<Vec<_>>()
                        .iter()
                        .map(Vec::as_slice)
                        .collect::<Vec<_>>(),
                );
                assert!(
                    scan::read(&selection.root, selection.paths, &text).is_some(),
                    "the scan reads {text} itself"
                );
            }
        }
    }

    #[test]
    fn reads_what_the_whole_value_would_give() {
        let text = r#"{"a": {"a1": "hello", "n": [1, {"x": 2}]}, "b": "world", "c": ["x", "y"],
            "d": [{"AA": "this"}, {"AA": "that"}], "a.b": "dots", "note": "long text \u00e9\n",
            "esc\"aped": 7}"#;
        for paths in [
            &[
                "a.a1",
                "b",
                "c[1]",
                "d[0].AA",
                "a.b",
                "a\\.b",
                "[\"a.b\"]",
                "c[5]",
            ][..],
            &["a", "a.a1", "a.n[1].x"],
            &["a.n[1].x", "a"],
            &["a.n[1]", "a.n[1].x", "a.n[0]", "a.n[0].y"],
            &[
                "[\"esc\\\"aped\"]",
                "note",
                "b.x",
                "c.x",
                "d[1].AA",
                "d[2].AA",
            ],
            &["b", "b"],
        ] {
            agrees(paths, text);
        }
    }

    #[test]
    fn a_string_at_a_path_s_end_is_borrowed_unless_it_has_escapes() {
        let key = |k: &str| vec![Step::Key(k.into())];
        let steps = [key("a"), key("b"), key("c"), key("d"), key("e")];
        let refs: Vec<&[Step]> = steps.iter().map(Vec::as_slice).collect();
        let text =
            r#"{"a": "plain", "b": "esc\"aped \u00e9", "c": 1.5, "d": null, "e": {"x": ["y"]}}"#;
        let picked = Selection::new(&refs).read_picked(text).unwrap();
        assert!(matches!(
            &picked[0],
            Some(Picked::Text(Cow::Borrowed("plain")))
        ));
        assert!(
            matches!(&picked[1], Some(Picked::Text(Cow::Owned(s))) if s == "esc\"aped é"),
            "{:?}",
            picked[1]
        );
        assert_eq!(picked[2], Some(Picked::Value(1.5.into())));
        assert_eq!(picked[3], Some(Picked::Value(Json::Null)));
        assert_eq!(
            picked[4],
            Some(Picked::Value(serde_json::json!({"x": ["y"]})))
        );
    }

    #[test]
    fn the_last_of_duplicate_keys_wins_as_in_a_parsed_value() {
        agrees(
            &["a.x", "a.y", "b"],
            r#"{"a": {"x": 1}, "b": 1, "a": {"y": 2}, "b": 2}"#,
        );
        agrees(&["a", "a.x"], r#"{"a": {"x": 1}, "a": [3]}"#);
    }

    #[test]
    fn scalars_and_arrays_where_objects_were_wanted_find_nothing() {
        for text in [
            "7",
            "\"s\"",
            "null",
            "true",
            "[1, 2]",
            "[{\"a\": 1}]",
            "{\"a\": 3.5}",
        ] {
            agrees(&["a", "a.b", "[0]", "[0].a", "[1]"], text);
        }
    }

    #[test]
    fn a_field_no_column_reads_is_checked_for_syntax_only() {
        let selection = Selection::new(&[&[Step::Key("a".into())]]);
        for skipped in ["1e999", "\"\\ud800\""] {
            let text = format!("{{\"skip\": {skipped}, \"a\": 1}}");
            assert!(serde_json::from_str::<Json>(&text).is_err(), "{text}");
            assert_eq!(
                selection.read(&text).unwrap(),
                vec![Some(1.into())],
                "{text}"
            );
            let read = format!("{{\"a\": {skipped}}}");
            assert!(selection.read(&read).is_err(), "{read}");
        }
    }

    #[test]
    fn bad_json_anywhere_is_an_error() {
        for text in [
            "",
            "{",
            "{\"a\": 1,}",
            "{\"skip\": [1, 2,], \"a\": 1}",
            "{\"skip\": tru, \"a\": 1}",
            "{\"a\": 1} x",
            "{\"skip\": \"\\q\"}",
            "{\"skip\": 01}",
        ] {
            agrees(&["a"], text);
            assert!(
                Selection::new(&[&[Step::Key("a".into())]])
                    .read(text)
                    .is_err(),
                "{text}"
            );
        }
    }
}
