//! Joining staged blocks into one Tunnel block (pure; used by the load stage). Each staged block
//! ends its deflate stream with a sync flush right after its last record, so its body is a run of
//! deflate blocks on a byte boundary that refers to nothing before it. A joined block is the zlib
//! header, the bodies one after another, one fresh final deflate block holding the footer (the
//! counts summed, the CRCs of CRCs combined) and the Adler-32 of all of it combined: no record is
//! decompressed or compressed again (`docs/architecture.md`, "Joining staged pieces into large
//! blocks").

use std::io::Write as _;

use bytes::Bytes;
use flate2::Compression as Level;
use flate2::write::DeflateEncoder;

use super::commit::Join;
use super::encode::ZLIB_HEADER;

/// A staged block's bytes did not match what its intent says of them.
#[derive(Debug, thiserror::Error)]
#[error("staged block {key} cannot be joined: {reason}")]
pub struct JoinError {
    pub key: String,
    pub reason: String,
}

/// One piece of a joined block: a staged block's bytes and its join record.
#[derive(Debug, Clone)]
pub(crate) struct Piece<'a> {
    pub(crate) key: &'a str,
    pub(crate) data: Bytes,
    pub(crate) rows: u64,
    pub(crate) join: Join,
}

/// Joins `pieces` (at least one) into one zlib-compressed Tunnel block.
pub(crate) fn join(pieces: &[Piece<'_>]) -> Result<Vec<u8>, JoinError> {
    let bodies: u64 = pieces.iter().map(|p| p.join.body).sum();
    let mut out = Vec::with_capacity(bodies as usize + 64);
    // CMF 0x78 (deflate, 32 KiB window), FLG 0x01 (fastest level, header checksum ok).
    out.extend_from_slice(&[0x78, 0x01]);
    let mut rows = 0u64;
    let mut checksum: Option<u32> = None;
    let mut adler: Option<u32> = None;
    for piece in pieces {
        let fail = |reason: String| JoinError {
            key: piece.key.to_owned(),
            reason,
        };
        let start = ZLIB_HEADER as usize;
        let end = start
            .checked_add(usize::try_from(piece.join.body).map_err(|e| fail(e.to_string()))?)
            .filter(|&e| e <= piece.data.len())
            .ok_or_else(|| {
                fail(format!(
                    "its body of {} bytes is longer than the block's {} bytes",
                    piece.join.body,
                    piece.data.len()
                ))
            })?;
        let body = &piece.data[start..end];
        // A sync flush ends with an empty stored block: 00 00 FF FF.
        if !body.ends_with(&[0x00, 0x00, 0xff, 0xff]) {
            return Err(fail("its body does not end with a sync flush".into()));
        }
        out.extend_from_slice(body);
        rows += piece.rows;
        checksum = Some(match checksum {
            None => piece.join.checksum,
            Some(c) => crc32c::crc32c_combine(c, piece.join.checksum, 4 * piece.rows as usize),
        });
        adler = Some(match adler {
            None => piece.join.adler32,
            Some(a) => zlib_rs::adler32::adler32_combine(a, piece.join.adler32, piece.join.raw),
        });
    }
    let footer = crate::maxcompute::footer(rows, checksum.unwrap_or(0));
    let mut tail = DeflateEncoder::new(Vec::with_capacity(32), Level::fast());
    let compressed = tail
        .write_all(&footer)
        .and_then(|()| tail.finish())
        .map_err(|e| JoinError {
            key: String::new(),
            reason: e.to_string(),
        })?;
    out.extend_from_slice(&compressed);
    let footer_adler = zlib_rs::adler32::adler32(1, &footer);
    let total = match adler {
        None => footer_adler,
        Some(a) => zlib_rs::adler32::adler32_combine(a, footer_adler, footer.len() as u64),
    };
    out.extend_from_slice(&total.to_be_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;
    use crate::maxcompute::{ColumnType, RecordReader, RecordWriter, Value};

    /// Encodes rows as the encode stage stages a block: body, sync flush, footer.
    fn staged(types: &[ColumnType], rows: &[Vec<Value>]) -> (Bytes, Join) {
        let zlib = flate2::write::ZlibEncoder::new(Vec::new(), Level::fast());
        let mut raw = Vec::new();
        let mut w = RecordWriter::new(types, Vec::new());
        for r in rows {
            w.write(r).unwrap();
        }
        let checksum = w.checksum();
        let mut body = w.finish().unwrap();
        let footer = crate::maxcompute::footer(rows.len() as u64, checksum);
        body.truncate(body.len() - footer.len());
        raw.extend_from_slice(&body);
        let mut zlib = zlib;
        zlib.write_all(&body).unwrap();
        zlib.flush().unwrap();
        let body_len = zlib.get_ref().len() as u64 - ZLIB_HEADER;
        zlib.write_all(&footer).unwrap();
        let data = zlib.finish().unwrap();
        let join = Join {
            body: body_len,
            raw: raw.len() as u64,
            adler32: zlib_rs::adler32::adler32(1, &raw),
            checksum,
        };
        (data.into(), join)
    }

    fn rows(from: i64, n: i64) -> Vec<Vec<Value>> {
        (from..from + n)
            .map(|i| {
                vec![
                    Value::Int(i),
                    Value::String(format!("name {i} ").repeat(20)),
                ]
            })
            .collect()
    }

    #[test]
    fn joined_blocks_decode_to_every_row_in_order_with_a_valid_footer_and_trailer() {
        let types = [ColumnType::Bigint, ColumnType::String];
        let parts = [rows(0, 3), rows(3, 500), rows(503, 1)];
        let staged: Vec<_> = parts.iter().map(|r| staged(&types, r)).collect();
        // Each staged block is a complete block on its own.
        for ((data, _), want) in staged.iter().zip(&parts) {
            let mut raw = Vec::new();
            flate2::read::ZlibDecoder::new(&data[..])
                .read_to_end(&mut raw)
                .unwrap();
            assert_eq!(&RecordReader::new(&types, &raw).read_all().unwrap(), want);
        }
        let pieces: Vec<Piece<'_>> = staged
            .iter()
            .zip(&parts)
            .map(|((data, join), r)| Piece {
                key: "k",
                data: data.clone(),
                rows: r.len() as u64,
                join: *join,
            })
            .collect();
        let joined = join(&pieces).unwrap();
        // The zlib decoder checks the combined Adler-32; the reader checks count and checksum.
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&joined[..])
            .read_to_end(&mut raw)
            .unwrap();
        let all: Vec<Vec<Value>> = parts.concat();
        assert_eq!(RecordReader::new(&types, &raw).read_all().unwrap(), all);
    }

    #[test]
    fn a_body_that_does_not_end_on_a_sync_flush_is_refused() {
        let types = [ColumnType::Bigint, ColumnType::String];
        let (data, mut j) = staged(&types, &rows(0, 2));
        j.body -= 1;
        let err = join(&[Piece {
            key: "staged/x.blk",
            data,
            rows: 2,
            join: j,
        }])
        .unwrap_err();
        assert!(err.to_string().contains("staged/x.blk"), "{err}");
    }
}
