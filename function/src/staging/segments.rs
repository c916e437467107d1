//! A staged piece's bytes as the bucket's answer delivered them: the HTTP body's chunks, kept
//! apart. The load reads each staged piece whole before sending it, and what it sends is ranges of
//! the piece (`pipeline/join.rs`), so keeping the chunks and slicing them saves joining them into
//! one new buffer: a copy of every staged byte and the fresh pages it is written into
//! (docs/bench/README.md, "A staged piece kept in the chunks it arrived in").

use std::ops::Range;

use bytes::Bytes;

/// Bytes in one or more chunks, read by offset as one sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Segments {
    /// The non-empty chunks, in order.
    parts: Vec<Bytes>,
    /// Where each chunk starts in the sequence.
    starts: Vec<usize>,
    len: usize,
}

impl Segments {
    /// The sequence of `parts` one after another.
    pub fn new(parts: impl IntoIterator<Item = Bytes>) -> Self {
        let mut out = Segments::default();
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            out.starts.push(out.len);
            out.len += part.len();
            out.parts.push(part);
        }
        out
    }

    /// Bytes in all.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes of `range` as slices of the chunks (no copy), or `None` when it goes past the
    /// end.
    pub fn slice(&self, range: Range<usize>) -> Option<Vec<Bytes>> {
        if range.start > range.end || range.end > self.len {
            return None;
        }
        let mut out = Vec::new();
        let mut at = range.start;
        let mut i = self.part_at(at);
        while at < range.end {
            let (part, start) = (&self.parts[i], self.starts[i]);
            let end = range.end.min(start + part.len());
            out.push(part.slice(at - start..end - start));
            at = end;
            i += 1;
        }
        Some(out)
    }

    /// The `N` bytes at `at`, copied, or `None` when they go past the end.
    pub fn array_at<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        if at.checked_add(N)? > self.len {
            return None;
        }
        let mut out = [0u8; N];
        let (mut filled, mut i) = (0, self.part_at(at));
        while filled < N {
            let part = &self.parts[i];
            let from = at + filled - self.starts[i];
            let n = (N - filled).min(part.len() - from);
            out[filled..filled + n].copy_from_slice(&part[from..from + n]);
            filled += n;
            i += 1;
        }
        Some(out)
    }

    /// The chunks.
    pub fn into_parts(self) -> Vec<Bytes> {
        self.parts
    }

    /// The index of the chunk holding byte `at` (the number of chunks when `at` is the end).
    fn part_at(&self, at: usize) -> usize {
        self.starts.partition_point(|&s| s <= at).saturating_sub(1)
    }
}

impl From<Bytes> for Segments {
    fn from(bytes: Bytes) -> Self {
        Segments::new([bytes])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `data` cut at `cuts`.
    fn cut(data: &[u8], cuts: &[usize]) -> Segments {
        let mut parts = Vec::new();
        let mut from = 0;
        for &c in cuts.iter().chain([&data.len()]) {
            parts.push(Bytes::copy_from_slice(&data[from..c]));
            from = c;
        }
        Segments::new(parts)
    }

    #[test]
    fn every_range_reads_as_the_same_range_of_the_joined_bytes() {
        let data: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        for cuts in [&[][..], &[1], &[0, 0, 5, 5, 6], &[100, 101, 299], &[300]] {
            let s = cut(&data, cuts);
            assert_eq!(s.len(), data.len());
            for start in (0..=300).step_by(7).chain([299, 300]) {
                for end in (start..=300).step_by(11).chain([300]) {
                    let got = s.slice(start..end).unwrap().concat();
                    assert_eq!(got, &data[start..end], "{cuts:?} {start}..{end}");
                }
            }
            assert_eq!(s.array_at::<4>(98), Some([98, 99, 100, 101]), "{cuts:?}");
            assert_eq!(s.array_at::<4>(296), Some([40, 41, 42, 43]), "{cuts:?}");
            assert_eq!(s.array_at::<4>(297), None);
            assert_eq!(s.slice(0..301), None);
            assert_eq!(s.clone().into_parts().concat(), data);
        }
    }

    #[test]
    fn slices_share_the_chunks_and_skip_empty_ones() {
        let s = cut(b"abcdef", &[0, 2, 2, 4]);
        assert_eq!(s.clone().into_parts().len(), 3);
        let parts = s.slice(1..5).unwrap();
        assert_eq!(parts, vec![&b"b"[..], b"cd", b"e"]);
        assert!(Segments::new(Vec::new()).is_empty());
        assert_eq!(Segments::default().slice(0..0), Some(Vec::new()));
    }
}
