//! A Tunnel block as the encode stage makes it and the load stage sends it
//! (`docs/maxcompute-protocol.md` §2.4–2.5): the record stream, compressed as
//! `[limits] compression` says (zlib `deflate` or one LZ4 frame), and read back the same way by
//! the tests, the emulator and `k2mc maxcompute`.

use std::borrow::Cow;
use std::io::Read;

use bytes::Bytes;
use flate2::Compression as Level;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;

use super::error::MaxComputeError;
use k2mc_formats::tunnel::{ColumnType, Compression, RecordReader, RecordWriter, Value, WireError};

/// An encoded block, ready to stage or upload.
#[derive(Debug, Clone)]
pub struct Block {
    /// The body in parts sent one after another: a block joined from staged pieces is their
    /// bodies as read, never copied into one buffer (`docs/architecture.md`, "Joining staged
    /// pieces into large blocks").
    pub data: Vec<Bytes>,
    pub compression: Compression,
    pub rows: u64,
}

impl Block {
    /// Bytes of the body.
    pub fn len(&self) -> usize {
        self.data.iter().map(Bytes::len).sum()
    }

    /// True for an empty body.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The body in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        self.data.concat()
    }
}

/// The LZ4 frame settings every block k2mc writes uses (`docs/architecture.md`, "Joining
/// staged pieces into large blocks"): 64 KiB blocks compressed independently of each other, no
/// checksums in the frame (the record stream carries CRCs) and no content size, so staged
/// blocks' bodies can be put one after another in a single frame.
pub fn lz4_frame<W: std::io::Write>(out: W) -> std::io::Result<lz4::Encoder<W>> {
    lz4::EncoderBuilder::new()
        .block_size(lz4::BlockSize::Max64KB)
        .block_mode(lz4::BlockMode::Independent)
        .block_checksum(lz4::liblz4::BlockChecksum::NoBlockChecksum)
        .checksum(lz4::ContentChecksum::NoChecksum)
        .build(out)
}

/// Encodes rows into one block (the pure part of the encode stage).
pub fn encode_block(
    schema: &[ColumnType],
    rows: &[Vec<Value>],
    compression: Compression,
) -> Result<Block, MaxComputeError> {
    fn all<W: std::io::Write>(
        schema: &[ColumnType],
        rows: &[Vec<Value>],
        out: W,
    ) -> Result<W, WireError> {
        let mut w = RecordWriter::new(schema, out);
        for row in rows {
            w.write(row)?;
        }
        w.finish()
    }
    let data = match compression {
        Compression::None => all(schema, rows, Vec::new())?,
        Compression::Deflate => all(schema, rows, ZlibEncoder::new(Vec::new(), Level::fast()))?
            .finish()
            .map_err(WireError::Io)?,
        Compression::Lz4 => {
            let (out, end) =
                all(schema, rows, lz4_frame(Vec::new()).map_err(WireError::Io)?)?.finish();
            end.map_err(WireError::Io)?;
            out
        }
    };
    Ok(Block {
        data: vec![data.into()],
        compression,
        rows: rows.len() as u64,
    })
}

/// The record stream inside a block body as it came over the wire.
pub fn decompress(data: &[u8], compression: Compression) -> Result<Cow<'_, [u8]>, WireError> {
    let mut out = Vec::new();
    match compression {
        Compression::None => return Ok(Cow::Borrowed(data)),
        Compression::Deflate => ZlibDecoder::new(data).read_to_end(&mut out)?,
        Compression::Lz4 => lz4::Decoder::new(data)?.read_to_end(&mut out)?,
    };
    Ok(Cow::Owned(out))
}

/// Decodes a block body as it came over the wire.
pub fn decode_block(
    schema: &[ColumnType],
    data: &[u8],
    compression: Compression,
) -> Result<Vec<Vec<Value>>, MaxComputeError> {
    let raw = decompress(data, compression)?;
    Ok(RecordReader::new(schema, &raw).read_all()?)
}
