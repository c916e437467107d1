//! The checked fetch and the range reader against a scripted broker: record batches with holes,
//! control batches, and the quirks the module doc lists, switched on one at a time. The broker
//! and the helpers are here; `quirks` holds the checked fetch's tests, `range` the range
//! reader's (chunk bounds, delivered records, the watermark).

mod quirks;
mod range;

use std::collections::BTreeSet;
use std::sync::Mutex;

use rskafka::client::error::Error as KafkaError;
use rskafka::client::partition::OffsetAt;

use super::{CheckedFetch, ChunkBound, FetchClient, FetchError, RangeReader};
use crate::transform::bindings::{Header, KafkaRecord};
use k2mc_formats::event::TopicPartition;

/// One record batch: offsets `base..=last`, of which `records` hold a record (none: a control
/// batch such as a transaction marker; fewer: compacted away).
struct Batch {
    base: i64,
    last: i64,
    records: Vec<i64>,
}

#[derive(Default)]
struct Quirks {
    /// Answer a fetch that starts inside a batch from the next batch (tansu 0.6).
    skip_holding_batch: bool,
    /// Answer fetches at these offsets with nothing.
    empty_at: BTreeSet<i64>,
    /// Repeat the last batch of every answer (tansu 0.6).
    repeat_last: bool,
    /// A transaction still open from this offset: fetches (read_committed) return nothing at
    /// or past it, and it is the last stable offset. `None`: every transaction is decided.
    open_from: Option<i64>,
}

/// A partition as a broker serves it. `max_bytes` counts records: an answer holds whole batches
/// until it reaches that many, and always at least one batch (as Kafka does).
struct FakeBroker {
    batches: Vec<Batch>,
    quirks: Quirks,
    fetches: Mutex<Vec<(i64, i32)>>,
}

fn record(offset: i64, tag: &str) -> KafkaRecord {
    KafkaRecord {
        offset,
        timestamp_ms: offset * 1000,
        key: None,
        value: Some(format!("{tag}{offset}").into_bytes()),
        headers: Vec::new(),
    }
}

impl FakeBroker {
    /// Batches of `size` offsets each, every offset a record, up to `end`.
    fn even(end: i64, size: i64) -> Self {
        let batches = (0..end)
            .step_by(size as usize)
            .map(|base| Batch {
                base,
                last: (base + size - 1).min(end - 1),
                records: (base..(base + size).min(end)).collect(),
            })
            .collect();
        FakeBroker::of(batches)
    }

    fn of(batches: Vec<Batch>) -> Self {
        FakeBroker {
            batches,
            quirks: Quirks::default(),
            fetches: Mutex::new(Vec::new()),
        }
    }

    fn hwm(&self) -> i64 {
        self.batches.last().map_or(0, |b| b.last + 1)
    }

    fn fetched_at(&self) -> Vec<i64> {
        self.fetches
            .lock()
            .map(|f| f.iter().map(|(o, _)| *o).collect())
            .unwrap_or_default()
    }

    fn reader(self) -> CheckedFetch<FakeBroker> {
        CheckedFetch::new(self, TopicPartition::new("t", 0), 4, 10)
    }
}

impl FetchClient for FakeBroker {
    async fn fetch_records(
        &self,
        offset: i64,
        max_bytes: i32,
        _max_wait_ms: i32,
    ) -> Result<(Vec<KafkaRecord>, i64), KafkaError> {
        if let Ok(mut f) = self.fetches.lock() {
            f.push((offset, max_bytes));
        }
        if self.quirks.empty_at.contains(&offset) {
            return Ok((Vec::new(), self.hwm()));
        }
        let mut first = self.batches.iter().position(|b| b.last >= offset);
        if self.quirks.skip_holding_batch
            && let Some(i) = first
            && self.batches[i].base < offset
        {
            first = Some(i + 1);
        }
        let mut out = Vec::new();
        let mut last_batch: Vec<KafkaRecord> = Vec::new();
        for batch in self
            .batches
            .iter()
            .skip(first.unwrap_or(self.batches.len()))
        {
            if !out.is_empty() && out.len() >= max_bytes as usize {
                break;
            }
            // The client drops the records of the first batch below the offset asked for.
            last_batch = batch
                .records
                .iter()
                .filter(|&&o| o >= offset)
                .map(|&o| record(o, "f"))
                .collect();
            out.extend(last_batch.iter().cloned());
        }
        if self.quirks.repeat_last {
            out.extend(last_batch);
        }
        if let Some(open) = self.quirks.open_from {
            out.retain(|r| r.offset < open);
        }
        Ok((out, self.hwm()))
    }

    async fn get_offset(&self, at: OffsetAt) -> Result<i64, KafkaError> {
        Ok(match at {
            OffsetAt::Earliest => self.batches.first().map_or(0, |b| b.base),
            // Listed read_committed: the last stable offset.
            OffsetAt::Latest => self.quirks.open_from.unwrap_or_else(|| self.hwm()),
            OffsetAt::Timestamp(t) => self
                .batches
                .iter()
                .flat_map(|b| b.records.iter().copied())
                .find(|o| o * 1000 >= t.timestamp_millis())
                .unwrap_or(-1),
        })
    }
}

/// A bound of `records` records a chunk and no byte bound to speak of.
fn records(records: usize) -> ChunkBound {
    ChunkBound {
        records,
        bytes: usize::MAX,
    }
}

/// Every offset a range reader yields, chunk by chunk, `max` records a chunk.
async fn read_all(
    range: &mut RangeReader<'_, FakeBroker>,
    max: usize,
) -> Result<Vec<i64>, FetchError> {
    Ok(read_chunks(range, records(max)).await?.concat())
}

/// The offsets of every chunk a range reader yields under `bound`.
async fn read_chunks(
    range: &mut RangeReader<'_, FakeBroker>,
    bound: ChunkBound,
) -> Result<Vec<Vec<i64>>, FetchError> {
    let mut out = Vec::new();
    while let Some(chunk) = range.next_chunk(bound).await? {
        out.push(offsets(&chunk));
    }
    Ok(out)
}

fn offsets(records: &[KafkaRecord]) -> Vec<i64> {
    records.iter().map(|r| r.offset).collect()
}
