//! Packed records (WIT 1.5, interface `packed-records-parser`): for a parser that exports
//! `parse-records-packed`, the chain run (`run.rs`) packs the batch's Kafka records into one byte
//! list here instead of lowering a `list<kafka-record>`. The layout is in wit/README.md ("1.5:
//! packed records").
//!
//! Why: lowering a `list<kafka-record>` calls into the guest to allocate each record's key, value
//! and header list (three calls a record, whatever their size), and the guest frees them again
//! after the call; packed, a batch is one allocation. But packing is a copy of every byte beside
//! the one lowering makes, which costs more than the calls it saves once records are large, so
//! only windows of small records are packed ([`worth_packing`]; docs/bench/README.md, "Records
//! packed into the parser").

use super::bindings::KafkaRecord;

/// Where a length would be: `none` of an `option<list<u8>>`.
const NONE: u32 = u32::MAX;

/// The most packed bytes a window's records may take on average for it to be packed: measured
/// with `bench-transforms --note-bytes`, packing took 4-12 % off the chain's time for records of
/// 0.2 to 2 KB, and added 8 % at 4 KB in calls of a thousand records and 12-26 % at 10 KB.
pub(crate) const PACK_AT_MOST: usize = 2048;

/// Whether `records` are small enough on average to be worth packing ([`PACK_AT_MOST`]); larger
/// ones go as a `list<kafka-record>` to the same parser's `parse-packed`.
pub(crate) fn worth_packing(records: &[KafkaRecord]) -> bool {
    let bytes: usize = records.iter().map(packed_len).sum();
    bytes <= records.len().saturating_mul(PACK_AT_MOST)
}

/// Appends `records` to `out`, record after record. `out` is not reserved first: the caller keeps
/// it across calls for its capacity, and sizing the records again would be a second pass over
/// them beside [`worth_packing`]'s.
pub(crate) fn pack(records: &[KafkaRecord], out: &mut Vec<u8>) {
    for record in records {
        out.extend_from_slice(&record.offset.to_le_bytes());
        out.extend_from_slice(&record.timestamp_ms.to_le_bytes());
        bytes(out, record.key.as_deref());
        bytes(out, record.value.as_deref());
        out.extend_from_slice(&len(record.headers.len()).to_le_bytes());
        for header in &record.headers {
            bytes(out, Some(header.key.as_bytes()));
            bytes(out, header.value.as_deref());
        }
    }
}

/// A 4-byte length. A record, a key or a header count of 4 GiB or more is never in a batch: the
/// fetch caps a batch's bytes far below that.
fn len(n: usize) -> u32 {
    n as u32
}

fn bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            out.extend_from_slice(&len(b.len()).to_le_bytes());
            out.extend_from_slice(b);
        }
        None => out.extend_from_slice(&NONE.to_le_bytes()),
    }
}

/// The bytes one record takes.
fn packed_len(record: &KafkaRecord) -> usize {
    let sized = |b: Option<&[u8]>| 4 + b.map_or(0, <[u8]>::len);
    let headers: usize = record
        .headers
        .iter()
        .map(|h| sized(Some(h.key.as_bytes())) + sized(h.value.as_deref()))
        .sum();
    16 + sized(record.key.as_deref()) + sized(record.value.as_deref()) + 4 + headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::bindings::Header;

    #[test]
    fn records_are_packed_as_the_layout_says() {
        let records = vec![
            KafkaRecord {
                offset: -2,
                timestamp_ms: 1_704_067_200_123,
                key: None,
                value: Some(b"{}".to_vec()),
                headers: vec![
                    Header {
                        key: "北".into(),
                        value: None,
                    },
                    Header {
                        key: String::new(),
                        value: Some(vec![0, 255]),
                    },
                ],
            },
            KafkaRecord {
                offset: 7,
                timestamp_ms: 0,
                key: Some(Vec::new()),
                value: None,
                headers: Vec::new(),
            },
        ];
        let mut by_hand: Vec<u8> = Vec::new();
        by_hand.extend((-2i64).to_le_bytes());
        by_hand.extend(1_704_067_200_123i64.to_le_bytes());
        by_hand.extend([0xff; 4]);
        by_hand.extend([2, 0, 0, 0, b'{', b'}']);
        by_hand.extend([2, 0, 0, 0]);
        by_hand.extend([3, 0, 0, 0, 0xe5, 0x8c, 0x97]);
        by_hand.extend([0xff; 4]);
        by_hand.extend([0, 0, 0, 0]);
        by_hand.extend([2, 0, 0, 0, 0, 255]);
        by_hand.extend(7i64.to_le_bytes());
        by_hand.extend(0i64.to_le_bytes());
        by_hand.extend([0, 0, 0, 0]);
        by_hand.extend([0xff; 4]);
        by_hand.extend([0, 0, 0, 0]);
        // Appended after what the buffer already holds; `packed_len`, which `worth_packing` sums,
        // counts exactly the bytes written.
        let mut out = vec![9];
        pack(&records, &mut out);
        assert_eq!(out[0], 9);
        assert_eq!(&out[1..], by_hand.as_slice());
        assert_eq!(records.iter().map(packed_len).sum::<usize>(), by_hand.len());
    }

    #[test]
    fn only_windows_of_small_records_are_worth_packing() {
        // A record's packed bytes: 28 for its fields' sizes and no headers, and its value.
        let record = |value_bytes: usize| KafkaRecord {
            offset: 0,
            timestamp_ms: 0,
            key: None,
            value: Some(vec![b'x'; value_bytes]),
            headers: Vec::new(),
        };
        let at_most = PACK_AT_MOST - 28;
        assert!(worth_packing(&[record(at_most), record(at_most)]));
        assert!(!worth_packing(&[record(at_most), record(at_most + 1)]));
        // The average decides: one large record among small ones is packed with them.
        assert!(worth_packing(&[record(3 * at_most), record(0), record(0)]));
        assert!(!worth_packing(&[record(10 << 20)]));
        assert!(worth_packing(&[]));
    }
}
