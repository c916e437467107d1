//! The checked fetch and the range reader against a scripted broker: record batches with holes,
//! control batches, and the quirks the module doc lists, switched on one at a time.

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

#[tokio::test]
async fn a_chunk_closes_at_its_byte_bound_and_one_record_over_it_travels_alone() {
    // Fetched values are `f<offset>`: two bytes below 10, three from 10.
    let reader = FakeBroker::even(14, 20).reader();
    let mut range = RangeReader::new(Some(&reader), 0, 14, &[]);
    let bound = ChunkBound {
        records: 100,
        bytes: 6,
    };
    assert_eq!(
        read_chunks(&mut range, bound).await.expect("range"),
        [
            vec![0, 1, 2],
            vec![3, 4, 5],
            vec![6, 7, 8],
            vec![9, 10, 11],
            vec![12, 13]
        ]
    );
    // Delivered records: the header bytes count too, and a record larger than the bound is a
    // chunk of its own (never an empty one, which would stall the batch).
    let mut wide = record(0, &"w".repeat(50));
    wide.headers.push(Header {
        key: "trace".into(),
        value: Some(b"abc".to_vec()),
    });
    let mut headed = record(2, "d");
    headed.headers.push(Header {
        key: "key".into(),
        value: None,
    });
    let delivered = [wide, record(1, "d"), headed, record(3, "d"), record(4, "d")];
    let mut range = RangeReader::new(Some(&reader), 0, 5, &delivered);
    assert_eq!(
        read_chunks(&mut range, bound).await.expect("range"),
        [vec![0], vec![1, 2], vec![3, 4]]
    );
    // The record count still bounds a chunk of small records.
    let mut range = RangeReader::new(Some(&reader), 0, 14, &[]);
    let bound = ChunkBound {
        records: 4,
        bytes: 1 << 20,
    };
    let sizes: Vec<usize> = read_chunks(&mut range, bound)
        .await
        .expect("range")
        .iter()
        .map(Vec::len)
        .collect();
    assert_eq!(sizes, [4, 4, 4, 2]);
}

fn offsets(records: &[KafkaRecord]) -> Vec<i64> {
    records.iter().map(|r| r.offset).collect()
}

#[tokio::test]
async fn an_answer_that_skips_the_batch_holding_the_offset_is_read_from_the_batch_start() {
    let mut broker = FakeBroker::even(15, 5);
    broker.quirks.skip_holding_batch = true;
    let reader = broker.reader();
    let (records, hwm) = reader.fetch(7).await.expect("fetch");
    assert_eq!(hwm, 15);
    assert_eq!(offsets(&records)[..3], [7, 8, 9]);
    // And a whole range read under the quirk yields every offset once.
    let mut range = RangeReader::new(Some(&reader), 3, 15, &[]);
    assert_eq!(
        read_all(&mut range, 2).await.expect("range"),
        (3..15).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn an_empty_answer_below_the_watermark_is_checked_from_earlier_offsets() {
    let mut broker = FakeBroker::even(10, 5);
    broker.quirks.empty_at.insert(7);
    let reader = broker.reader();
    let (records, _) = reader.fetch(7).await.expect("fetch");
    assert_eq!(offsets(&records), [7, 8, 9]);
    // Stepped back one offset (to 6), not further.
    assert_eq!(reader.client.fetched_at(), [7, 6]);
}

#[tokio::test]
async fn an_answer_empty_from_every_earlier_offset_is_an_error_not_a_skip() {
    let mut broker = FakeBroker::even(10, 5);
    broker.quirks.empty_at = (0..10).collect();
    let reader = broker.reader();
    let mut range = RangeReader::new(Some(&reader), 4, 10, &[]);
    let err = read_all(&mut range, 100).await.expect_err("must refuse");
    assert!(
        matches!(
            err,
            FetchError::EmptyBelowWatermark {
                offset: 4,
                high_watermark: 10,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn repeated_batches_are_dropped() {
    let mut broker = FakeBroker::even(20, 3);
    broker.quirks.repeat_last = true;
    let reader = broker.reader();
    let (records, _) = reader.fetch(0).await.expect("fetch");
    let got = offsets(&records);
    assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
    let mut range = RangeReader::new(Some(&reader), 0, 20, &[]);
    assert_eq!(
        read_all(&mut range, 4).await.expect("range"),
        (0..20).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_compaction_gap_is_skipped_and_nothing_else() {
    let broker = FakeBroker::of(vec![
        Batch {
            base: 0,
            last: 9,
            records: vec![0, 1, 2, 6, 7, 8, 9],
        },
        Batch {
            base: 10,
            last: 12,
            records: vec![10, 12],
        },
    ]);
    let reader = broker.reader();
    let mut range = RangeReader::new(Some(&reader), 0, 13, &[]);
    assert_eq!(
        read_all(&mut range, 2).await.expect("range"),
        [0, 1, 2, 6, 7, 8, 9, 10, 12]
    );
    // Starting inside the gap: the answer starts later, is checked, and the gap is skipped.
    let mut range = RangeReader::new(Some(&reader), 3, 13, &[]);
    assert_eq!(
        read_all(&mut range, 100).await.expect("range"),
        [6, 7, 8, 9, 10, 12]
    );
}

fn with_marker(after: Option<Batch>) -> FakeBroker {
    let mut batches = vec![
        Batch {
            base: 0,
            last: 4,
            records: (0..5).collect(),
        },
        // A transaction's commit marker: an offset with no record.
        Batch {
            base: 5,
            last: 5,
            records: Vec::new(),
        },
    ];
    batches.extend(after);
    FakeBroker::of(batches)
}

#[tokio::test]
async fn a_trailing_transaction_marker_is_skipped_once_the_transaction_is_decided() {
    // The marker is the last offset below the high watermark: the answer there is empty. Below
    // the last stable offset only markers can be empty under read_committed, so the range ends
    // at the watermark (it used to fail until a record followed the marker: audit item 7).
    let broker = with_marker(None);
    let reader = broker.reader();
    let mut range = RangeReader::new(Some(&reader), 0, 6, &[]);
    assert_eq!(
        read_all(&mut range, 100).await.expect("range"),
        [0, 1, 2, 3, 4]
    );
    // A record after the marker: the marker is skipped on the way.
    let reader = with_marker(Some(Batch {
        base: 6,
        last: 6,
        records: vec![6],
    }))
    .reader();
    let mut range = RangeReader::new(Some(&reader), 0, 7, &[]);
    assert_eq!(
        read_all(&mut range, 100).await.expect("range"),
        [0, 1, 2, 3, 4, 6]
    );
}

#[tokio::test]
async fn records_of_a_transaction_still_open_are_never_skipped() {
    // Offsets 6..9 belong to a transaction not yet decided: the last stable offset is 6 and a
    // read_committed fetch returns nothing there. The range waits (retryably) for them.
    let mut broker = with_marker(Some(Batch {
        base: 6,
        last: 8,
        records: vec![6, 7, 8],
    }));
    broker.quirks.open_from = Some(6);
    let reader = broker.reader();
    let mut range = RangeReader::new(Some(&reader), 0, 9, &[]);
    let err = read_all(&mut range, 100).await.expect_err("refused");
    assert!(
        matches!(err, FetchError::EmptyBelowWatermark { offset: 6, .. }),
        "{err}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn delivered_records_are_used_and_only_their_holes_are_fetched() {
    let reader = FakeBroker::even(8, 8).reader();
    let delivered: Vec<KafkaRecord> = [0, 1, 2, 5, 6, 9]
        .into_iter()
        .map(|o| record(o, "d"))
        .collect();
    let mut range = RangeReader::new(Some(&reader), 0, 8, &delivered);
    let mut got = Vec::new();
    while let Some(chunk) = range.next_chunk(records(100)).await.expect("chunk") {
        got.extend(
            chunk
                .into_iter()
                .map(|r| String::from_utf8(r.value.unwrap_or_default()).unwrap_or_default()),
        );
    }
    assert_eq!(got, ["d0", "d1", "d2", "f3", "f4", "d5", "d6", "f7"]);
    assert_eq!(reader.client.fetched_at(), [3, 7]);
}

#[tokio::test]
async fn without_a_broker_only_delivered_records_are_read() {
    let delivered: Vec<KafkaRecord> = [3, 4, 8].into_iter().map(|o| record(o, "d")).collect();
    let mut range = RangeReader::<FakeBroker>::new(None, 3, 9, &delivered);
    assert_eq!(read_all(&mut range, 100).await.expect("range"), [3, 4, 8]);
}

#[tokio::test]
async fn delivered_records_in_any_order_are_all_read_once() {
    // A dead-letter object lists transform refusals before encoder rejects, so its offsets are
    // not in order (audit F1); an object may also repeat a record. Every offset is read once.
    let delivered: Vec<KafkaRecord> = [7, 3, 5, 3].into_iter().map(|o| record(o, "d")).collect();
    let mut range = RangeReader::<FakeBroker>::new(None, 3, 8, &delivered);
    assert_eq!(read_all(&mut range, 100).await.expect("range"), [3, 5, 7]);
    let reader = FakeBroker::even(8, 8).reader();
    let mut range = RangeReader::new(Some(&reader), 0, 8, &delivered);
    assert_eq!(
        read_all(&mut range, 100).await.expect("range"),
        [0, 1, 2, 3, 4, 5, 6, 7]
    );
}

#[tokio::test]
async fn a_range_past_the_watermark_is_an_error() {
    let reader = FakeBroker::even(5, 5).reader();
    let mut range = RangeReader::new(Some(&reader), 0, 7, &[]);
    let err = read_all(&mut range, 100).await.expect_err("past the end");
    assert!(
        matches!(
            err,
            FetchError::BeyondWatermark {
                offset: 5,
                high_watermark: 5,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn the_high_watermark_comes_from_a_minimal_fetch() {
    let reader = FakeBroker::even(12, 4).reader();
    assert_eq!(reader.high_watermark().await.expect("hwm"), 12);
    let calls = reader
        .client
        .fetches
        .lock()
        .map(|f| f.clone())
        .unwrap_or_default();
    assert_eq!(calls, [(0, 2)]);
}
