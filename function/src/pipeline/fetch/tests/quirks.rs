//! The checked fetch under each broker quirk, and transaction markers and compaction gaps: every
//! offset read once, nothing skipped that holds a record.

use super::*;

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
