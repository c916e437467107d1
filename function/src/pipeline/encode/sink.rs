//! A block's compressor inside the encode stage: the record writer writes into a [`Sink`], which
//! compresses in the batch's codec and counts the uncompressed bytes (when a block is full) and
//! the header's (where its joinable body starts, `docs/architecture.md`, "Joining staged pieces
//! into large blocks").

use std::io::Write;

use flate2::Compression as Level;
use flate2::write::ZlibEncoder;

use super::{EncodeError, ZLIB_HEADER, wire};
use crate::maxcompute::{Compression, lz4_frame};

/// A block's compressed bytes so far, in the batch's compression.
pub(super) enum Codec {
    /// With the Adler-32 of what went in (what a joined block's zlib trailer is combined from).
    Deflate(ZlibEncoder<Vec<u8>>, u32),
    Lz4(lz4::Encoder<Vec<u8>>),
}

/// Compresses a block's record stream and counts the bytes written through it (the
/// uncompressed size of an open block).
pub(super) struct Sink {
    codec: Codec,
    pub(super) raw: u64,
    /// Bytes of the stream's header (zlib's, or the LZ4 frame's) before the body.
    pub(super) header: u64,
}

impl Sink {
    /// A sink for a block closed at `block_bytes` uncompressed bytes.
    pub(super) fn new(compression: Compression, block_bytes: usize) -> Result<Sink, EncodeError> {
        // Room for the whole block from the start: growing the buffer by doubling copied every
        // block's compressed bytes again and held the old and the new buffer at once (50 MB of
        // peak RSS at 10 KB records; the CPU it saved was within the spread, `docs/bench/
        // README.md`, "The encode's block buffer sized once"). Pages the block never writes are
        // never touched, so the reservation costs no memory.
        let out = || Vec::with_capacity(compressed_bound(block_bytes));
        let codec = match compression {
            Compression::Deflate => Codec::Deflate(ZlibEncoder::new(out(), Level::fast()), 1),
            Compression::Lz4 => Codec::Lz4(lz4_frame(out()).map_err(wire)?),
            Compression::None => return Err(wire("staged blocks are compressed")),
        };
        let mut sink = Sink {
            codec,
            raw: 0,
            header: 0,
        };
        sink.header = match &sink.codec {
            Codec::Deflate(..) => ZLIB_HEADER,
            Codec::Lz4(_) => sink.compressed().len() as u64,
        };
        Ok(sink)
    }

    /// The compressed bytes so far (the zlib header is written with the first data).
    pub(super) fn compressed(&self) -> &[u8] {
        match &self.codec {
            Codec::Deflate(z, _) => z.get_ref(),
            Codec::Lz4(l) => l.writer(),
        }
    }

    pub(super) fn adler32(&self) -> u32 {
        match &self.codec {
            Codec::Deflate(_, adler) => *adler,
            Codec::Lz4(_) => 0,
        }
    }

    pub(super) fn finish(self) -> std::io::Result<Vec<u8>> {
        match self.codec {
            Codec::Deflate(z, _) => z.finish(),
            Codec::Lz4(l) => {
                let (out, end) = l.finish();
                end.map(|()| out)
            }
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = match &mut self.codec {
            Codec::Deflate(z, adler) => {
                let n = z.write(buf)?;
                *adler = zlib_rs::adler32::adler32(*adler, &buf[..n]);
                n
            }
            Codec::Lz4(l) => l.write(buf)?,
        };
        self.raw += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.codec {
            Codec::Deflate(z, _) => z.flush(),
            Codec::Lz4(l) => l.flush(),
        }
    }
}

/// At least the compressed size of a block of `block_bytes` uncompressed bytes that does not
/// compress: LZ4 adds 4 bytes per 64 KiB block, stored deflate blocks 5 per 64 KiB, plus the
/// headers, the footer and the record that passes the size.
fn compressed_bound(block_bytes: usize) -> usize {
    block_bytes
        .saturating_add(block_bytes / 8192)
        .saturating_add(64 * 1024)
}
