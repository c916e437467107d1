//! A batch's range as a stream of chunks: the records an event already delivered where they
//! cover the range, checked fetches for the gaps, nothing outside `[start, end)`.

use std::collections::VecDeque;

use super::{CheckedFetch, FetchClient, FetchError};
use crate::transform::bindings::KafkaRecord;

/// How much one chunk (one call into the transform chain) may hold: it closes at `records`
/// records or after the record that brings its key, value and header bytes to `bytes`, whichever
/// comes first, and always holds at least one record. The byte bound keeps wide records from
/// growing every component's linear memory (which never shrinks) to `records` times their size
/// (docs/bench/README.md, "Transform calls bounded in bytes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkBound {
    /// Most records in a chunk.
    pub records: usize,
    /// Bytes after which a chunk closes.
    pub bytes: usize,
}

impl ChunkBound {
    /// Whether a chunk of `len` records and `bytes` bytes is full (never an empty one).
    fn full(&self, len: usize, bytes: usize) -> bool {
        len > 0 && (len >= self.records || bytes >= self.bytes)
    }
}

/// The bytes of a record a chunk's byte bound counts: key, value and every header.
pub(crate) fn record_bytes(r: &KafkaRecord) -> usize {
    let headers: usize = r
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len))
        .sum();
    r.key.as_ref().map_or(0, Vec::len) + r.value.as_ref().map_or(0, Vec::len) + headers
}

/// Streams `[start, end)` in chunks: delivered records first where they cover the range, the
/// broker for the rest.
pub struct RangeReader<'r, C> {
    /// `None` reads only the delivered records (dead-letter replay): gaps are skipped.
    reader: Option<&'r CheckedFetch<C>>,
    next: i64,
    end: i64,
    delivered: VecDeque<KafkaRecord>,
    /// What the last fetch returned beyond the chunk it served (at most one fetch, a few MiB):
    /// fetching again from the middle of a broker's record batch would throw the rest away and
    /// make the broker send the same batch again (and tansu answers such a fetch wrongly).
    fetched: VecDeque<KafkaRecord>,
}

impl<C> std::fmt::Debug for RangeReader<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeReader")
            .field("next", &self.next)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl<'r, C: FetchClient> RangeReader<'r, C> {
    /// `delivered` are records an event already carried (any offsets, in any order, repeats
    /// allowed; filtered to the range).
    pub fn new(
        reader: Option<&'r CheckedFetch<C>>,
        start: i64,
        end: i64,
        delivered: &[KafkaRecord],
    ) -> Self {
        let mut delivered: Vec<KafkaRecord> = delivered
            .iter()
            .filter(|r| r.offset >= start && r.offset < end)
            .cloned()
            .collect();
        // The reader walks offsets upwards and skips to the next delivered one: an out-of-order
        // list (a dead-letter object: transform refusals before encoder rejects) would skip
        // records behind a higher offset (docs/reliability.md, replay).
        delivered.sort_by_key(|r| r.offset);
        delivered.dedup_by_key(|r| r.offset);
        RangeReader {
            reader,
            next: start,
            end,
            delivered: delivered.into(),
            fetched: VecDeque::new(),
        }
    }

    /// The next records of the range, as many as `bound` allows; `None` at the end.
    pub async fn next_chunk(
        &mut self,
        bound: ChunkBound,
    ) -> Result<Option<Vec<KafkaRecord>>, FetchError> {
        if self.next >= self.end {
            return Ok(None);
        }
        // Delivered records starting exactly here: take the contiguous run (offsets missing from
        // a payload are fetched).
        if self
            .delivered
            .front()
            .is_some_and(|r| r.offset == self.next)
        {
            let mut out = Vec::new();
            let mut bytes = 0;
            while !bound.full(out.len(), bytes) {
                match self.delivered.pop_front() {
                    Some(r) if r.offset == self.next => {
                        self.next = r.offset + 1;
                        bytes += record_bytes(&r);
                        out.push(r);
                    }
                    Some(r) => {
                        self.delivered.push_front(r);
                        break;
                    }
                    None => break,
                }
            }
            return Ok(Some(out));
        }
        // A gap: fetch up to the next delivered record (or the end).
        let stop = self.delivered.front().map_or(self.end, |r| r.offset);
        let Some(reader) = self.reader else {
            self.next = stop;
            return Ok(Some(Vec::new()));
        };
        if self.fetched.is_empty() {
            let (records, hwm, confirmed_empty) = reader.fetch_checked(self.next).await?;
            let beyond = records.iter().any(|r| r.offset >= stop);
            let next = self.next;
            self.fetched.extend(
                records
                    .into_iter()
                    .filter(|r| r.offset >= next && r.offset < stop),
            );
            if self.fetched.is_empty() {
                // Offsets with no record (compaction, transaction markers): skip to what exists.
                if beyond {
                    self.next = stop;
                    return Ok(Some(Vec::new()));
                }
                // An empty answer below the high watermark, confirmed from the record before it:
                // offsets below the last stable offset are decided, and a read_committed fetch
                // that returns none of them found only control batches there (transaction
                // markers, which rskafka drops): skip them. Offsets at or past it may hold
                // records of a transaction still open: never skip those (docs/architecture.md,
                // "Fetch and the broker workarounds").
                let offset = self.next;
                if hwm > offset && confirmed_empty {
                    let stable = reader.last_stable_offset().await?;
                    if stable > offset {
                        self.next = stable.min(stop);
                        return Ok(Some(Vec::new()));
                    }
                }
                let tp = reader.tp().clone();
                return Err(if hwm > offset {
                    FetchError::EmptyBelowWatermark {
                        tp,
                        offset,
                        high_watermark: hwm,
                    }
                } else {
                    FetchError::BeyondWatermark {
                        tp,
                        offset,
                        high_watermark: hwm,
                    }
                });
            }
        }
        let mut n = 0;
        let mut bytes = 0;
        while n < self.fetched.len() && !bound.full(n, bytes) {
            bytes += record_bytes(&self.fetched[n]);
            n += 1;
        }
        let out: Vec<KafkaRecord> = self.fetched.drain(..n).collect();
        if let Some(last) = out.last() {
            self.next = last.offset + 1;
        }
        if self.delivered.front().is_some_and(|r| r.offset < self.next) {
            let next = self.next;
            self.delivered.retain(|r| r.offset >= next);
        }
        Ok(Some(out))
    }
}
