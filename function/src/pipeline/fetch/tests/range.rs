//! The range reader: chunks bounded in records and bytes, records delivered by a trigger used in
//! place of fetches, and a range past the high watermark.

use super::*;

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
