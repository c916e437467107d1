//! The fetch stage: reads exactly `[start, end)` of a partition, chunk by chunk, so memory is
//! bounded by the fetch size and not by the range (invariant 8, `docs/architecture.md`).
//!
//! Two layers. [`CheckedFetch`] is one partition's reads with the broker workarounds in one place
//! (below); [`RangeReader`] streams a batch's range out of the records an event delivered and
//! checked fetches for the gaps. Both are written against the private [`FetchClient`] seam, which
//! the real rskafka [`PartitionClient`] implements here and a scripted fake implements in the
//! tests, so every workaround is exercised without a broker.
//!
//! # Why the workarounds exist, and what they cost on a real broker
//!
//! `docs/architecture.md` ("Fetch and the broker workarounds") has the long form. In short:
//! - **Step back to the batch start.** Kafka answers a fetch that starts inside a record batch with
//!   the whole batch (rskafka drops the records before the offset asked for), so an answer starts
//!   at the offset asked for unless offsets are missing (compaction, transaction markers). An
//!   answer that starts later, or is empty below the high watermark, is checked: tansu 0.6 skips
//!   the batch holding the offset, or answers with nothing. The check fetches again from 1, 2, 4 …
//!   offsets back (never below the earliest) until an answer starts at or before the offset. On a
//!   real broker this costs extra fetches only where offsets are really missing.
//! - **Drop repeated records.** tansu 0.6 repeats the last batch of an answer; offsets must
//!   strictly increase, so a record at or below the last one kept is dropped. Free on Kafka.
//! - **A one-byte fetch for the high watermark.** tansu 0.6 answers ListOffsets(latest) with the
//!   last batch's base offset + 1; a fetch's high watermark is right. On Kafka it costs one fetch
//!   of at most one batch instead of a ListOffsets request.
//! - **Never skip offsets on an empty answer** below the high watermark unless they are below the
//!   last stable offset (then only transaction markers sit there, which rskafka drops): at or
//!   past it they may hold records of a transaction still open. The batch fails and is retried
//!   rather than losing them. Costs one ListOffsets only where an answer is empty.

mod range;
#[cfg(test)]
mod tests;

use std::future::Future;

use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient};
use rskafka::record::RecordAndOffset;
use thiserror::Error;

use super::plan::OffsetSpec;
use crate::transform::bindings::KafkaRecord;
use crate::transform::headers_from_pairs;
use k2mc_formats::event::TopicPartition;

pub use range::{ChunkBound, RangeReader};

/// Why reading a partition failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The broker (or the connection to it) failed a request.
    #[error("kafka {operation} on {tp}: {source}")]
    Kafka {
        operation: &'static str,
        tp: TopicPartition,
        #[source]
        source: Box<KafkaError>,
    },
    /// A fetch below the high watermark returned nothing, even from earlier offsets.
    #[error(
        "{tp}: a fetch at offset {offset} returned no records although the high watermark is {high_watermark}; refusing to skip them"
    )]
    EmptyBelowWatermark {
        tp: TopicPartition,
        offset: i64,
        high_watermark: i64,
    },
    /// The range asked for goes past what the partition holds.
    #[error("{tp}: offset {offset} is beyond the high watermark {high_watermark}")]
    BeyondWatermark {
        tp: TopicPartition,
        offset: i64,
        high_watermark: i64,
    },
}

impl FetchError {
    /// True when the same read may succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            FetchError::Kafka { .. } | FetchError::EmptyBelowWatermark { .. }
        )
    }
}

/// The narrow seam under fetch: the three partition requests the pipeline makes. rskafka's
/// [`PartitionClient`] is the real one; the tests script a fake broker with its quirks.
pub trait FetchClient: Send + Sync {
    /// Records at or after `offset` (up to about `max_bytes`), and the high watermark.
    fn fetch_records(
        &self,
        offset: i64,
        max_bytes: i32,
        max_wait_ms: i32,
    ) -> impl Future<Output = Result<(Vec<KafkaRecord>, i64), KafkaError>> + Send;

    /// The earliest offset, or the first at or after a time (`-1`: none).
    fn get_offset(&self, at: OffsetAt) -> impl Future<Output = Result<i64, KafkaError>> + Send;
}

impl FetchClient for PartitionClient {
    async fn fetch_records(
        &self,
        offset: i64,
        max_bytes: i32,
        max_wait_ms: i32,
    ) -> Result<(Vec<KafkaRecord>, i64), KafkaError> {
        let (records, hwm) =
            PartitionClient::fetch_records(self, offset, 1..max_bytes, max_wait_ms).await?;
        Ok((records.into_iter().map(KafkaRecord::from).collect(), hwm))
    }

    async fn get_offset(&self, at: OffsetAt) -> Result<i64, KafkaError> {
        PartitionClient::get_offset(self, at).await
    }
}

/// The one conversion of a fetched record into the transform contract's record.
impl From<RecordAndOffset> for KafkaRecord {
    fn from(r: RecordAndOffset) -> Self {
        KafkaRecord {
            offset: r.offset,
            timestamp_ms: r.record.timestamp.timestamp_millis(),
            key: r.record.key,
            value: r.record.value,
            headers: headers_from_pairs(r.record.headers),
        }
    }
}

/// One partition's reads, checked against the broker quirks the module doc lists.
#[derive(Debug)]
pub struct CheckedFetch<C> {
    client: C,
    tp: TopicPartition,
    max_bytes: i32,
    max_wait_ms: i32,
}

/// The partition reader the pipeline uses: checked fetches over rskafka.
pub type PartitionReader = CheckedFetch<PartitionClient>;

impl<C: FetchClient> CheckedFetch<C> {
    /// Reads of `tp` through `client`, each fetch up to `max_bytes` and `max_wait_ms`.
    pub fn new(client: C, tp: TopicPartition, max_bytes: i32, max_wait_ms: i32) -> Self {
        CheckedFetch {
            client,
            tp,
            max_bytes,
            max_wait_ms,
        }
    }

    fn err(&self, operation: &'static str, source: KafkaError) -> FetchError {
        FetchError::Kafka {
            operation,
            tp: self.tp.clone(),
            source: Box::new(source),
        }
    }

    /// The partition this reader reads.
    pub fn tp(&self) -> &TopicPartition {
        &self.tp
    }

    /// The earliest offset still kept.
    pub async fn earliest(&self) -> Result<i64, FetchError> {
        self.client
            .get_offset(OffsetAt::Earliest)
            .await
            .map_err(|e| self.err("list earliest offset", e))
    }

    /// The last stable offset: below it every transaction is decided. rskafka lists offsets
    /// read_committed, for which Kafka answers "latest" with the last stable offset. (tansu 0.6
    /// answers with the last batch's base offset + 1; it has no transactions, and its fetches
    /// never leave the case this is asked in, see [`RangeReader`].)
    pub async fn last_stable_offset(&self) -> Result<i64, FetchError> {
        self.client
            .get_offset(OffsetAt::Latest)
            .await
            .map_err(|e| self.err("list the last stable offset", e))
    }

    /// The first offset at or after `time`; negative when no record is that late.
    pub async fn offset_at(&self, time: chrono::DateTime<chrono::Utc>) -> Result<i64, FetchError> {
        self.client
            .get_offset(OffsetAt::Timestamp(time))
            .await
            .map_err(|e| self.err("list offset by time", e))
    }

    /// The offset `spec` names on this partition.
    pub async fn resolve(&self, spec: OffsetSpec) -> Result<i64, FetchError> {
        match spec {
            OffsetSpec::Offset(o) => Ok(o),
            OffsetSpec::Earliest => self.earliest().await,
            OffsetSpec::Latest => self.high_watermark().await,
            // No record at or after the time: the range starts (or ends) at the high watermark.
            OffsetSpec::Time(t) => match self.offset_at(t).await? {
                o if o < 0 => self.high_watermark().await,
                o => Ok(o),
            },
        }
    }

    /// Records at or after `offset` (one fetch's worth, offsets strictly increasing), and the
    /// high watermark. An answer that does not start at `offset` is checked by stepping back (the
    /// module doc says why); records are never skipped on an unchecked answer.
    pub async fn fetch(&self, offset: i64) -> Result<(Vec<KafkaRecord>, i64), FetchError> {
        let (records, hwm, _) = self.fetch_checked(offset).await?;
        Ok((records, hwm))
    }

    /// [`CheckedFetch::fetch`], also saying whether an empty answer was confirmed: the broker
    /// answered with a readable record below `offset` and with nothing from the offset after
    /// it, so nothing readable sits between it and the high watermark (a broker that answers
    /// every fetch with nothing confirms nothing).
    async fn fetch_checked(
        &self,
        offset: i64,
    ) -> Result<(Vec<KafkaRecord>, i64, bool), FetchError> {
        let (records, hwm) = self.fetch_once(offset).await?;
        if offset >= hwm || records.first().is_some_and(|r| r.offset == offset) {
            return Ok((records, hwm, false));
        }
        let earliest = self.earliest().await?;
        let mut back = 1i64;
        let mut from = offset;
        while from > earliest {
            from = offset.saturating_sub(back).max(earliest);
            back = back.saturating_mul(2);
            let (mut found, _) = self.fetch_once(from).await?;
            if found.first().is_none_or(|r| r.offset > offset) {
                continue;
            }
            while let Some(last) = found.last().map(|r| r.offset) {
                if last >= offset {
                    break;
                }
                found = self.fetch_once(last + 1).await?.0;
            }
            found.retain(|r| r.offset >= offset);
            let confirmed_empty = found.is_empty();
            if found.first().map(|r| r.offset) != records.first().map(|r| r.offset) {
                tracing::warn!(
                    offset,
                    from,
                    answered = ?records.first().map(|r| r.offset),
                    checked = ?found.first().map(|r| r.offset),
                    "the broker's answer skipped records; read them from the start of their batch"
                );
            }
            return Ok((found, hwm, confirmed_empty));
        }
        // At the earliest offset: the missing offsets hold no records.
        Ok((records, hwm, false))
    }

    async fn fetch_once(&self, offset: i64) -> Result<(Vec<KafkaRecord>, i64), FetchError> {
        let (records, hwm) = self
            .client
            .fetch_records(offset, self.max_bytes, self.max_wait_ms)
            .await
            .map_err(|e| {
                let out_of_range = matches!(
                    e,
                    KafkaError::ServerError {
                        protocol_error: ProtocolError::OffsetOutOfRange,
                        ..
                    }
                );
                self.err(
                    if out_of_range {
                        "fetch (offset out of range)"
                    } else {
                        "fetch"
                    },
                    e,
                )
            })?;
        // Offsets strictly increase: a record repeated in an answer is dropped.
        let mut last = offset - 1;
        let out = records
            .into_iter()
            .filter(|r| {
                let keep = r.offset > last;
                last = last.max(r.offset);
                keep
            })
            .collect();
        Ok((out, hwm))
    }

    /// The high watermark (the next offset to be written).
    pub async fn high_watermark(&self) -> Result<i64, FetchError> {
        let earliest = self.earliest().await?;
        self.watermark_at(earliest).await
    }

    /// The record at `offset` (a checked fetch: one on Kafka, which answers from the batch
    /// holding it); `None` when the partition no longer holds it (retention, compaction).
    pub async fn record_at(&self, offset: i64) -> Result<Option<KafkaRecord>, FetchError> {
        let (records, _) = self.fetch(offset).await?;
        Ok(records.into_iter().find(|r| r.offset == offset))
    }

    /// The high watermark as a minimal fetch at `offset` reports it (at most one batch is sent).
    pub async fn watermark_at(&self, offset: i64) -> Result<i64, FetchError> {
        let (_, hwm) = self
            .client
            .fetch_records(offset, 2, 0)
            .await
            .map_err(|e| self.err("fetch the high watermark", e))?;
        Ok(hwm)
    }
}
