//! Joining staged blocks into one Tunnel block (pure; used by the load stage), without
//! decompressing or compressing any record again (`docs/architecture.md`, "Joining staged pieces
//! into large blocks"). A staged block's body (its compressed records, after the stream's header)
//! refers to nothing before it and ends on a boundary of the compressed stream, so bodies can be
//! put one after another; only the footer (the counts summed, the CRCs of CRCs combined) is new.
//! - deflate: the body ends with a sync flush. A joined block is the zlib header, the bodies, one
//!   fresh final deflate block holding the footer and the Adler-32 of all of it combined.
//! - LZ4: the frame's blocks are independent and the frame carries no checksum or content size,
//!   so a joined block is one frame: the header, the bodies' blocks, the footer as one stored
//!   block and the end mark.

use std::io::Write as _;

use bytes::Bytes;
use flate2::Compression as Level;
use flate2::write::DeflateEncoder;

use super::commit::Join;
use super::encode::ZLIB_HEADER;
use crate::maxcompute::Compression;
use crate::staging::Segments;

/// A staged block's bytes did not match what its intent says of them.
#[derive(Debug, thiserror::Error)]
#[error("staged block {key} cannot be joined: {reason}")]
pub struct JoinError {
    pub key: String,
    pub reason: String,
}

/// One piece of a joined block: a staged block's bytes (in the chunks the bucket sent them in)
/// and its join record.
#[derive(Debug, Clone)]
pub(crate) struct Piece<'a> {
    pub(crate) key: &'a str,
    pub(crate) data: Segments,
    pub(crate) join: Join,
}

impl Piece<'_> {
    fn fail(&self, reason: impl Into<String>) -> JoinError {
        JoinError {
            key: self.key.to_owned(),
            reason: reason.into(),
        }
    }

    /// The end of the body: `join.body` bytes after a header of `header` bytes.
    fn body_end(&self, header: usize) -> Result<usize, JoinError> {
        usize::try_from(self.join.body)
            .ok()
            .and_then(|b| header.checked_add(b))
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| {
                self.fail(format!(
                    "its body of {} bytes is longer than the block's {} bytes",
                    self.join.body,
                    self.data.len()
                ))
            })
    }
}

/// Joins `pieces` (at least one, all staged in `compression`, holding `rows` rows each) into one
/// Tunnel block in memory:
/// [`head`], every [`body`], [`tail`] — what the load's body source sends part by part
/// (`pipeline/loader/body.rs`).
#[cfg(test)]
pub(crate) fn join(
    pieces: &[Piece<'_>],
    rows: &[u64],
    compression: Compression,
) -> Result<Vec<Bytes>, JoinError> {
    let Some(first) = pieces.first() else {
        return Ok(Vec::new());
    };
    let head = head(first, compression)?;
    let mut out = vec![head.clone()];
    for piece in pieces {
        out.extend(body(piece, compression, &head)?);
    }
    let joins = pieces.iter().zip(rows).map(|(p, &n)| (n, p.join));
    out.push(tail(joins, compression)?);
    Ok(out)
}

/// The start of a joined block: the zlib header (deflate) or the first piece's LZ4 frame header,
/// which every other piece must share.
pub(crate) fn head(first: &Piece<'_>, compression: Compression) -> Result<Bytes, JoinError> {
    match compression {
        // CMF 0x78 (deflate, 32 KiB window), FLG 0x01 (fastest level, header checksum ok).
        Compression::Deflate => Ok(Bytes::from_static(&[0x78, 0x01])),
        Compression::Lz4 => first
            .data
            .array_at::<LZ4_HEADER>(0)
            .filter(|h| h[..4] == LZ4_MAGIC && h[4] == LZ4_FLG)
            .map(|h| Bytes::copy_from_slice(&h))
            .ok_or_else(|| {
                first.fail("it is not an LZ4 frame of independent blocks without checksums")
            }),
        Compression::None => Err(first.fail("uncompressed blocks are never staged")),
    }
}

/// A piece's part of a joined block: its body (slices of its chunks, no copy), checked to end
/// where the compressed stream can be cut and, for LZ4, to sit in a frame with the header `head`.
pub(crate) fn body(
    piece: &Piece<'_>,
    compression: Compression,
    head: &[u8],
) -> Result<Vec<Bytes>, JoinError> {
    let data = &piece.data;
    let (start, end) = match compression {
        Compression::Deflate => {
            let (start, end) = (ZLIB_HEADER as usize, piece.body_end(ZLIB_HEADER as usize)?);
            // A sync flush ends with an empty stored block: 00 00 FF FF.
            let flushed =
                end >= start + 4 && data.array_at::<4>(end - 4) == Some([0x00, 0x00, 0xff, 0xff]);
            if !flushed {
                return Err(piece.fail("its body does not end with a sync flush"));
            }
            (start, end)
        }
        Compression::Lz4 => {
            if data.array_at::<LZ4_HEADER>(0).as_ref().map(|h| &h[..]) != Some(head) {
                return Err(piece.fail("its LZ4 frame header differs from the first piece's"));
            }
            let end = piece.body_end(LZ4_HEADER)?;
            // Walk the block sizes: the body must be whole blocks, without the end mark.
            let mut at = LZ4_HEADER;
            while at < end {
                let size = data
                    .array_at::<4>(at)
                    .filter(|_| at + 4 <= end)
                    .map(u32::from_le_bytes)
                    .filter(|&s| s != 0)
                    .ok_or_else(|| piece.fail("its body does not end on an LZ4 block"))?;
                at += 4 + (size & !LZ4_STORED) as usize;
            }
            if at != end {
                return Err(piece.fail("its body does not end on an LZ4 block"));
            }
            (LZ4_HEADER, end)
        }
        Compression::None => return Err(piece.fail("uncompressed blocks are never staged")),
    };
    data.slice(start..end)
        .ok_or_else(|| piece.fail("its body is out of its bytes"))
}

/// The end of a joined block, from the pieces' rows and join records alone (no bytes): the
/// footer (the counts summed, the CRCs of CRCs combined), for deflate as one fresh final block
/// followed by the Adler-32 of everything combined, for LZ4 as one stored block and the end mark.
pub(crate) fn tail(
    pieces: impl IntoIterator<Item = (u64, Join)>,
    compression: Compression,
) -> Result<Bytes, JoinError> {
    let (mut rows, mut checksum, mut adler) = (0u64, None, None);
    for (n, join) in pieces {
        checksum = Some(match checksum {
            None => join.checksum,
            Some(c) => crc32c::crc32c_combine(c, join.checksum, 4 * n as usize),
        });
        adler = Some(match adler {
            None => join.adler32,
            Some(a) => zlib_rs::adler32::adler32_combine(a, join.adler32, join.raw),
        });
        rows += n;
    }
    let footer = crate::maxcompute::footer(rows, checksum.unwrap_or(0));
    match compression {
        Compression::Deflate => {
            let mut encoder = DeflateEncoder::new(Vec::with_capacity(32), Level::fast());
            let mut tail = encoder
                .write_all(&footer)
                .and_then(|()| encoder.finish())
                .map_err(|e| JoinError {
                    key: String::new(),
                    reason: e.to_string(),
                })?;
            let footer_adler = zlib_rs::adler32::adler32(1, &footer);
            let total = match adler {
                None => footer_adler,
                Some(a) => zlib_rs::adler32::adler32_combine(a, footer_adler, footer.len() as u64),
            };
            tail.extend_from_slice(&total.to_be_bytes());
            Ok(tail.into())
        }
        Compression::Lz4 => {
            let mut tail = Vec::with_capacity(footer.len() + 8);
            tail.extend_from_slice(&(footer.len() as u32 | LZ4_STORED).to_le_bytes());
            tail.extend_from_slice(&footer);
            tail.extend_from_slice(&0u32.to_le_bytes());
            Ok(tail.into())
        }
        Compression::None => Err(JoinError {
            key: String::new(),
            reason: "uncompressed blocks are never staged".into(),
        }),
    }
}

/// The LZ4 frame magic number as it is on the wire (0x184D2204, little-endian).
const LZ4_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];
/// Magic, FLG, BD and the header checksum: a frame header without content size or dictionary.
const LZ4_HEADER: usize = 7;
/// FLG: version 01, independent blocks; no block checksum, content size, content checksum or
/// dictionary (LZ4 frame format, section "FLG byte"). The bits that must be exactly so.
const LZ4_FLG: u8 = 0x60;
/// A block's size word: the high bit set means its bytes are stored uncompressed.
const LZ4_STORED: u32 = 0x8000_0000;

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::maxcompute::{ColumnType, RecordReader, RecordWriter, Value, decompress, lz4_frame};

    /// Encodes rows as the encode stage stages a block: header, body, flush, footer.
    pub(crate) fn staged(
        types: &[ColumnType],
        rows: &[Vec<Value>],
        compression: Compression,
    ) -> (Bytes, Join) {
        let mut plain = RecordWriter::new(types, Vec::new());
        for r in rows {
            plain.write(r).unwrap();
        }
        let checksum = plain.checksum();
        plain.flush_body().unwrap();
        let raw = plain.get_ref().len() as u64;
        let finish = |mut w: RecordWriter<'_, Vec<u8>>| {
            w.flush_body().unwrap();
            w.finish().unwrap()
        };
        let body = finish(plain);
        let (records, footer) = body.split_at(raw as usize);
        let (data, body_len) = match compression {
            Compression::Deflate => {
                let mut z = flate2::write::ZlibEncoder::new(Vec::new(), Level::fast());
                z.write_all(records).unwrap();
                z.flush().unwrap();
                let body = z.get_ref().len() as u64 - ZLIB_HEADER;
                z.write_all(footer).unwrap();
                (z.finish().unwrap(), body)
            }
            Compression::Lz4 => {
                let mut l = lz4_frame(Vec::new()).unwrap();
                let header = l.writer().len() as u64;
                l.write_all(records).unwrap();
                l.flush().unwrap();
                let body = l.writer().len() as u64 - header;
                l.write_all(footer).unwrap();
                let (data, end) = l.finish();
                end.unwrap();
                (data, body)
            }
            Compression::None => unreachable!(),
        };
        let join = Join {
            body: body_len,
            raw,
            adler32: zlib_rs::adler32::adler32(1, records),
            checksum,
        };
        (data.into(), join)
    }

    pub(crate) fn rows(from: i64, n: i64) -> Vec<Vec<Value>> {
        (from..from + n)
            .map(|i| {
                vec![
                    Value::Int(i),
                    Value::String(format!("name {i} ").repeat(20)),
                ]
            })
            .collect()
    }

    fn pieces<'a>(staged: &'a [(Bytes, Join)], parts: &[Vec<Vec<Value>>]) -> Vec<Piece<'a>> {
        assert_eq!(staged.len(), parts.len());
        staged
            .iter()
            .map(|(data, join)| Piece {
                key: "k",
                data: data.clone().into(),
                join: *join,
            })
            .collect()
    }

    fn counts(parts: &[Vec<Vec<Value>>]) -> Vec<u64> {
        parts.iter().map(|p| p.len() as u64).collect()
    }

    #[test]
    fn joined_blocks_decode_to_every_row_in_order_with_a_valid_footer_and_trailer() {
        let types = [ColumnType::Bigint, ColumnType::String];
        // 500 rows of ~250 bytes: the middle piece spans several 64 KiB LZ4 blocks.
        let parts = [rows(0, 3), rows(3, 500), rows(503, 1)];
        for compression in [Compression::Deflate, Compression::Lz4] {
            let staged: Vec<_> = parts
                .iter()
                .map(|r| staged(&types, r, compression))
                .collect();
            // Each staged block is a complete block on its own.
            for ((data, _), want) in staged.iter().zip(&parts) {
                let raw = decompress(data, compression).unwrap();
                assert_eq!(&RecordReader::new(&types, &raw).read_all().unwrap(), want);
            }
            let joined = join(&pieces(&staged, &parts), &counts(&parts), compression)
                .unwrap()
                .concat();
            // The decoder checks the frame (and zlib's combined Adler-32); the reader checks
            // count and checksum.
            let raw = decompress(&joined, compression).unwrap();
            let all: Vec<Vec<Value>> = parts.concat();
            assert_eq!(
                RecordReader::new(&types, &raw).read_all().unwrap(),
                all,
                "{compression}"
            );
        }
    }

    #[test]
    fn a_piece_in_chunks_of_any_size_gives_the_body_of_the_piece_in_one() {
        let types = [ColumnType::Bigint, ColumnType::String];
        // ~125 KB: an LZ4 body of several blocks, whose size words fall across small chunks.
        let rows = rows(0, 500);
        for compression in [Compression::Deflate, Compression::Lz4] {
            let (data, join) = staged(&types, &rows, compression);
            let whole = Piece {
                key: "k",
                data: data.clone().into(),
                join,
            };
            let head = head(&whole, compression).unwrap();
            let want = body(&whole, compression, &head).unwrap().concat();
            let header = match compression {
                Compression::Deflate => ZLIB_HEADER as usize,
                _ => LZ4_HEADER,
            };
            assert_eq!(want, data[header..header + join.body as usize]);
            for chunk in [1, 2, 3, 5, 7, 4096, 65_537] {
                let cuts = (0..data.len()).step_by(chunk);
                let piece = Piece {
                    data: Segments::new(
                        cuts.map(|at| data.slice(at..(at + chunk).min(data.len()))),
                    ),
                    ..whole.clone()
                };
                assert_eq!(super::head(&piece, compression).unwrap(), head);
                let got = body(&piece, compression, &head).unwrap();
                assert_eq!(got.concat(), want, "{compression}, chunks of {chunk}");
            }
        }
    }

    #[test]
    fn a_body_that_does_not_end_where_its_stream_can_be_cut_is_refused() {
        let types = [ColumnType::Bigint, ColumnType::String];
        for compression in [Compression::Deflate, Compression::Lz4] {
            let (data, mut j) = staged(&types, &rows(0, 2), compression);
            j.body -= 1;
            let err = join(
                &[Piece {
                    key: "staged/x.blk",
                    data: data.into(),
                    join: j,
                }],
                &[2],
                compression,
            )
            .unwrap_err();
            assert!(err.to_string().contains("staged/x.blk"), "{err}");
        }
    }

    #[test]
    fn lz4_frames_with_checksums_or_other_headers_are_refused() {
        let types = [ColumnType::Bigint, ColumnType::String];
        let parts = [rows(0, 2), rows(2, 2)];
        let mut staged: Vec<_> = parts
            .iter()
            .map(|r| staged(&types, r, Compression::Lz4))
            .collect();
        // A content checksum (FLG bit 2) cannot be carried over into a joined frame.
        let mut bytes = staged[1].0.to_vec();
        bytes[4] |= 0x04;
        staged[1].0 = bytes.into();
        let err = join(&pieces(&staged, &parts), &counts(&parts), Compression::Lz4).unwrap_err();
        assert!(err.to_string().contains("header differs"), "{err}");
        staged.swap(0, 1);
        let err = join(&pieces(&staged, &parts), &counts(&parts), Compression::Lz4).unwrap_err();
        assert!(err.to_string().contains("not an LZ4 frame"), "{err}");
    }
}
