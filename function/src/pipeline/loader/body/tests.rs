use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::maxcompute::{ColumnType, RecordReader, Value, decompress};
use crate::pipeline::commit::Join;
use crate::pipeline::join::tests::{rows, staged};

/// Staged pieces in memory, counting the reads started. A read answers in chunks of an odd size,
/// as an HTTP body arrives, so frame headers and block size words fall across chunks.
#[derive(Debug, Clone, Default)]
struct Memory {
    objects: Arc<Mutex<HashMap<String, Bytes>>>,
    reads: Arc<AtomicUsize>,
}

impl PieceStore for Memory {
    async fn read(&self, key: &str) -> Result<Option<Segments>, StagingError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let data = self.objects.lock().unwrap().get(key).cloned();
        Ok(data.map(|d| {
            let cuts = (0..d.len()).step_by(CHUNK);
            Segments::new(cuts.map(|at| d.slice(at..(at + CHUNK).min(d.len()))))
        }))
    }

    fn aborted(&self, message: String) -> StagingError {
        StagingError::Task {
            bucket: "memory".into(),
            message,
        }
    }
}

/// The chunk size `Memory` answers in.
const CHUNK: usize = 1021;

const TYPES: [ColumnType; 2] = [ColumnType::Bigint, ColumnType::String];

/// `parts` staged in `compression` under keys `p0`, `p1`, …, and the body of their block.
fn body_of(
    parts: &[Vec<Vec<Value>>],
    compression: Compression,
) -> (Memory, StagedBody<Memory>, Vec<(Bytes, Join)>) {
    let store = Memory::default();
    let mut pieces = Vec::new();
    let mut staged_all = Vec::new();
    for (i, r) in parts.iter().enumerate() {
        let (data, join) = staged(&TYPES, r, compression);
        let key = format!("p{i}");
        store
            .objects
            .lock()
            .unwrap()
            .insert(key.clone(), data.clone());
        pieces.push(StagedBlock {
            id: i as u32,
            key,
            rows: r.len() as u64,
            compression,
            join: Some(join),
        });
        staged_all.push((data, join));
    }
    let body = StagedBody::new(store.clone(), pieces).unwrap();
    (store, body, staged_all)
}

async fn sent(body: &StagedBody<Memory>) -> Vec<Result<Bytes, BodyUnreadable>> {
    body.open().collect().await
}

#[tokio::test]
async fn a_joined_body_streams_the_joined_block_and_again_from_the_start_on_every_open() {
    // 500 rows of ~250 bytes: the middle piece spans several 64 KiB slices and LZ4 blocks.
    let parts = [rows(0, 3), rows(3, 500), rows(503, 1)];
    for compression in [Compression::Deflate, Compression::Lz4] {
        let (store, body, staged_all) = body_of(&parts, compression);
        let pieces: Vec<Piece<'_>> = staged_all
            .iter()
            .map(|(data, join)| Piece {
                key: "k",
                data: data.clone().into(),
                join: *join,
            })
            .collect();
        let counts: Vec<u64> = parts.iter().map(|p| p.len() as u64).collect();
        let whole = join::join(&pieces, &counts, compression).unwrap().concat();
        for attempt in 1..=2 {
            let parts_sent: Vec<Bytes> =
                sent(&body).await.into_iter().map(Result::unwrap).collect();
            assert!(
                parts_sent
                    .iter()
                    .all(|p| p.len() <= crate::maxcompute::SEND_SLICE)
            );
            let bytes = parts_sent.concat();
            assert_eq!(bytes, whole, "{compression}, attempt {attempt}");
            let raw = decompress(&bytes, compression).unwrap();
            assert_eq!(
                RecordReader::new(&TYPES, &raw).read_all().unwrap(),
                parts.concat(),
                "{compression}"
            );
        }
        assert_eq!(store.reads.load(Ordering::SeqCst), 2 * parts.len());
        assert!(!body.failed());
    }
}

#[tokio::test]
async fn a_block_of_one_piece_is_sent_as_staged() {
    let (_, body, staged_all) = body_of(&[rows(0, 40)], Compression::Lz4);
    let bytes: Vec<Bytes> = sent(&body).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(bytes.concat(), staged_all[0].0);
}

#[tokio::test]
async fn the_next_piece_is_read_while_one_is_sent_and_no_further() {
    let parts: Vec<_> = (0..6).map(|i| rows(i * 10, 10)).collect();
    let (store, body, _) = body_of(&parts, Compression::Lz4);
    let mut stream = body.open();
    // The head and the first piece's body.
    stream.next().await.unwrap().unwrap();
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert_eq!(store.reads.load(Ordering::SeqCst), 2, "one piece ahead");
    drop(stream);
}

#[tokio::test]
async fn a_piece_gone_mid_block_stops_the_body_and_names_its_key() {
    let parts: Vec<_> = (0..4).map(|i| rows(i * 10, 10)).collect();
    for compression in [Compression::Deflate, Compression::Lz4] {
        let (store, body, _) = body_of(&parts, compression);
        store.objects.lock().unwrap().remove("p2");
        let out = sent(&body).await;
        assert!(out[..out.len() - 1].iter().all(Result::is_ok));
        assert!(out.last().unwrap().is_err(), "the stream ends in an error");
        assert!(body.failed());
        match body.failure() {
            Some(BodyFailure::Missing { key }) => assert_eq!(key, "p2"),
            other => panic!("{other:?}"),
        }
        assert!(body.failure().is_none(), "taken once");
    }
}

#[tokio::test]
async fn a_piece_that_does_not_match_its_join_record_stops_the_body() {
    let parts = [rows(0, 5), rows(5, 5)];
    let (_, mut body, _) = body_of(&parts, Compression::Deflate);
    let mut pieces = body.pieces.to_vec();
    if let Some(j) = pieces[1].join.as_mut() {
        j.body -= 1;
    }
    body.pieces = pieces.into();
    let out = sent(&body).await;
    assert!(out.last().unwrap().is_err());
    match body.failure() {
        Some(BodyFailure::Join(e)) => assert_eq!(e.key, "p1", "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_joined_block_of_a_piece_without_join_data_is_refused_before_anything_is_sent() {
    let piece = |key: &str, join| StagedBlock {
        id: 0,
        key: key.into(),
        rows: 1,
        compression: Compression::Lz4,
        join,
    };
    let join = Join {
        body: 1,
        raw: 1,
        adler32: 0,
        checksum: 0,
    };
    let err = StagedBody::new(
        Memory::default(),
        vec![piece("a", Some(join)), piece("b", None)],
    )
    .map(|_| ())
    .unwrap_err();
    assert_eq!(err.key, "b");
}
