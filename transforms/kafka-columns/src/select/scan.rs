//! The fast path of [`Selection::read_picked`](super::Selection::read_picked): one pass over the
//! text that finds each string's end sixteen bytes at a time ([`first_stop`], WebAssembly SIMD in
//! the component) and walks the selection tree as `Seed` does, but leaves every decision it is not
//! sure of to serde_json. It answers `None`, and the caller reads the text again with serde_json
//! (whose answer and error then stand), for text that is not JSON, a key with an escape, and
//! nesting deeper than [`MAX_DEPTH`]. Values where a path ends that are not plain strings (a
//! number, a string with escapes, an object) are converted by serde_json from their own slice of
//! the text, so they are what serde_json would have built.
//!
//! Why: serde_json looks for a string's end eight bytes at a time, and in the component that loop
//! was the largest single share of the stage's instructions (a 900-byte note is most of a 1 KB
//! record; `docs/bench/README.md`, "A string's end found sixteen bytes at a time").

use std::borrow::Cow;
use std::ops::Range;

use serde_json::Value as Json;
use wide::u8x16;

use super::{Node, Picked};

/// Containers nested deeper than this are left to serde_json, whose own limit is 128: text the
/// scan accepts is never text serde_json refuses for its depth.
const MAX_DEPTH: usize = 100;

/// The values at the paths of `root` (`paths` of them) in `text`, or `None` where serde_json must
/// read the text instead (see the module's documentation).
pub(super) fn read<'t>(
    root: &Node,
    paths: usize,
    text: &'t str,
) -> Option<Vec<Option<Picked<'t>>>> {
    let mut scan = Scan {
        text,
        bytes: text.as_bytes(),
        at: 0,
    };
    let mut out = vec![None; paths];
    scan.ws();
    scan.node(root, &mut out, 0)?;
    scan.ws();
    (scan.at == scan.bytes.len()).then_some(out)
}

struct Scan<'t> {
    text: &'t str,
    bytes: &'t [u8],
    at: usize,
}

impl<'t> Scan<'t> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// JSON's four whitespace bytes, as serde_json skips them.
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// A value the paths of `node` go into (what `Seed` does): the paths below are cleared first,
    /// so the last of duplicate keys wins.
    fn node(&mut self, node: &Node, out: &mut [Option<Picked<'t>>], depth: usize) -> Option<()> {
        for &id in &node.below {
            out[id] = None;
        }
        match node.tails.as_slice() {
            [] => self.walk(node, out, depth),
            [(id, tail)] if tail.is_empty() => {
                out[*id] = Some(self.leaf(depth)?);
                Some(())
            }
            _ => {
                let start = self.at;
                self.skip(depth)?;
                let value = serde_json::from_str::<Json>(&self.text[start..self.at]).ok()?;
                node.take(value, out);
                Some(())
            }
        }
    }

    /// A value where paths go deeper: an object's keys and an array's indexes are followed; a
    /// scalar has nothing at those paths.
    fn walk(&mut self, node: &Node, out: &mut [Option<Picked<'t>>], depth: usize) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(depth, |scan, key| match child(node, scan.bytes, key) {
                Some(child) => scan.node(child, out, depth + 1),
                None => scan.skip(depth + 1),
            }),
            b'[' => {
                let mut index = 0;
                self.array(depth, |scan| {
                    let found = node.indexes.iter().find(|(i, _)| *i == index);
                    index += 1;
                    match found {
                        Some((_, child)) => scan.node(child, out, depth + 1),
                        None => scan.skip(depth + 1),
                    }
                })
            }
            // serde_json reads a scalar here as a value, not as a skipped field: a number is
            // checked for range and an escape for a valid code point, so both are left to it.
            b'"' => {
                self.at += 1;
                (!self.string_body()?).then_some(())
            }
            b'-' | b'0'..=b'9' => {
                let start = self.at;
                self.number()?;
                serde_json::from_str::<Json>(&self.text[start..self.at])
                    .ok()
                    .map(drop)
            }
            _ => self.skip(depth),
        }
    }

    /// A value where a path ends: a string without escapes is borrowed from the text; anything
    /// else is built by serde_json from its slice.
    fn leaf(&mut self, depth: usize) -> Option<Picked<'t>> {
        let start = self.at;
        if self.peek()? == b'"' {
            self.at += 1;
            let escaped = self.string_body()?;
            let whole: &'t str = self.text;
            let text = &whole[start..self.at];
            return Some(Picked::Text(if escaped {
                Cow::Owned(serde_json::from_str::<String>(text).ok()?)
            } else {
                Cow::Borrowed(&text[1..text.len() - 1])
            }));
        }
        self.skip(depth)?;
        serde_json::from_str::<Json>(&self.text[start..self.at])
            .ok()
            .map(Picked::Value)
    }

    /// Checks one value's syntax and moves past it.
    fn skip(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.at += 1;
                self.string_body().map(drop)
            }
            b'{' => self.object(depth, |scan, _| scan.skip(depth + 1)),
            b'[' => self.array(depth, |scan| scan.skip(depth + 1)),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// An object: `value` reads each member's value (the scan is at it) given where its key is
    /// in the text.
    fn object(
        &mut self,
        depth: usize,
        mut value: impl FnMut(&mut Self, Range<usize>) -> Option<()>,
    ) -> Option<()> {
        self.container(depth, b'}', |scan| {
            let key = scan.key()?;
            scan.ws();
            scan.eat(b':')?;
            scan.ws();
            value(scan, key)
        })
    }

    /// An array: `element` reads each element in turn.
    fn array(&mut self, depth: usize, element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.container(depth, b']', element)
    }

    /// An object or an array from its opening byte to `close`: `each` reads one member or
    /// element; commas between them, none after the last.
    fn container(
        &mut self,
        depth: usize,
        close: u8,
        mut each: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.at += 1;
        self.ws();
        if self.peek()? == close {
            self.at += 1;
            return Some(());
        }
        loop {
            each(self)?;
            self.ws();
            match self.peek()? {
                b',' => {
                    self.at += 1;
                    self.ws();
                }
                b if b == close => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Where an object key without escapes is in the text, quotes left out (a key with an escape
    /// is left to serde_json, which unescapes and checks it).
    fn key(&mut self) -> Option<Range<usize>> {
        self.eat(b'"')?;
        let start = self.at;
        if self.string_body()? {
            return None;
        }
        Some(start..self.at - 1)
    }

    /// Moves past a string's closing quote from just after its opening one; true when the string
    /// has escapes. Checks what serde_json checks of a string it skips: no control characters,
    /// and escapes of its grammar (`\u` with four hex digits, whatever they name).
    fn string_body(&mut self) -> Option<bool> {
        let bytes: &'t [u8] = self.bytes;
        let mut escaped = false;
        loop {
            self.at += first_stop(&bytes[self.at..])?;
            let stop = bytes[self.at];
            self.at += 1;
            match stop {
                b'"' => return Some(escaped),
                b'\\' => escaped = true,
                _ => return None,
            }
            match self.peek()? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                b'u' => {
                    let hex = bytes.get(self.at + 1..self.at + 5)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    self.at += 5;
                }
                _ => return None,
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// JSON's number grammar, as serde_json checks a number it skips (its size is not checked).
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek()? {
            b'0' => {
                self.at += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return None;
                }
            }
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }
}

/// The child of `node` at the key `bytes[key]`. A key of up to sixteen bytes with sixteen bytes
/// of text from its start is matched by one vector compare against each child's zero-padded head,
/// its length's bits of the mask alone counting; others byte for byte. The component's `memcmp`,
/// which `==` calls, cost about 150 instructions a key (`docs/bench/README.md`, "Keys matched
/// in one vector compare").
fn child<'n>(node: &'n Node, bytes: &[u8], key: Range<usize>) -> Option<&'n Node> {
    let len = key.len();
    match bytes[key.start..].first_chunk::<16>() {
        Some(text) if len <= 16 => {
            let (text, wanted) = (u8x16::new(*text), (1u32 << len) - 1);
            let same = |head: &[u8; 16]| text.simd_eq(u8x16::new(*head)).to_bitmask() & wanted;
            let mut keys = node.keys.iter().zip(&node.heads);
            keys.find(|((k, _), head)| k.len() == len && same(head) == wanted)
                .map(|((_, child), _)| child)
        }
        _ => node
            .keys
            .iter()
            .find(|(k, _)| k.as_bytes() == &bytes[key.clone()])
            .map(|(_, child)| child),
    }
}

/// Where in `bytes` the first quote, backslash or control character (below 0x20, which a JSON
/// string may not hold) is: sixteen bytes at a time, three vector compares and one bitmask each
/// (WebAssembly SIMD in the component, SSE2 natively), so that a short string costs one step and
/// a long one a step per sixteen bytes; the last bytes of the text, fewer than sixteen, one at a
/// time. `None` when there is none (an unterminated string).
fn first_stop(bytes: &[u8]) -> Option<usize> {
    let (chunks, tail) = bytes.as_chunks::<16>();
    let (quote, backslash, space) = (u8x16::splat(b'"'), u8x16::splat(b'\\'), u8x16::splat(0x20));
    for (i, chunk) in chunks.iter().enumerate() {
        let v = u8x16::new(*chunk);
        let stops = v.simd_eq(quote) | v.simd_eq(backslash) | v.simd_lt(space);
        let mask = stops.to_bitmask();
        if mask != 0 {
            return Some(i * 16 + mask.trailing_zeros() as usize);
        }
    }
    tail.iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|at| chunks.len() * 16 + at)
}
