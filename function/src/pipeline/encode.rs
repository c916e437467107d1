//! The encode stage (pure, invariant 7 in `docs/architecture.md`): the chain's rows become Tunnel
//! record blocks against the table's schema. Each cell is checked and converted ([`layout`]); a
//! record whose row does not fit becomes a dead letter and the others go on. Rows are routed to
//! their destination partition and written into one open block per destination; a block is
//! closed and handed back for staging when it reaches the configured size, and at most
//! [`MAX_OPEN_BLOCKS`] are open at once (the least recently written closes first), so memory is
//! bounded by blocks, not by the range or by how many partitions its rows scatter over.

mod layout;

use std::collections::HashMap;
use std::io::Write;

use bytes::Bytes;
use flate2::Compression as Level;
use flate2::write::ZlibEncoder;
use thiserror::Error;

use crate::maxcompute::{Compression, RecordWriter, Value, lz4_frame};
use crate::pipeline::commit::{Destination, Join, SessionRecord, StagedBlock};
use crate::pipeline::route::Router;
use crate::transform::bindings::Row;

pub use layout::{Layout, MAX_FIELD_BYTES, RowError, convert_cell, type_text};

/// Writing a block failed: the record writer or the compressor refused (writing into memory,
/// so a bug rather than bad data; the batch fails and nothing is staged under its intent).
#[derive(Debug, Error)]
#[error("encoding a Tunnel block: {reason}")]
pub struct EncodeError {
    reason: String,
}

/// A block's compressed bytes so far, in the batch's compression.
enum Codec {
    /// With the Adler-32 of what went in (what a joined block's zlib trailer is combined from).
    Deflate(ZlibEncoder<Vec<u8>>, u32),
    Lz4(lz4::Encoder<Vec<u8>>),
}

/// Compresses a block's record stream and counts the bytes written through it (the
/// uncompressed size of an open block).
struct Sink {
    codec: Codec,
    raw: u64,
    /// Bytes of the stream's header (zlib's, or the LZ4 frame's) before the body.
    header: u64,
}

impl Sink {
    /// A sink for a block closed at `block_bytes` uncompressed bytes.
    fn new(compression: Compression, block_bytes: usize) -> Result<Sink, EncodeError> {
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
    fn compressed(&self) -> &[u8] {
        match &self.codec {
            Codec::Deflate(z, _) => z.get_ref(),
            Codec::Lz4(l) => l.writer(),
        }
    }

    fn adler32(&self) -> u32 {
        match &self.codec {
            Codec::Deflate(_, adler) => *adler,
            Codec::Lz4(_) => 0,
        }
    }

    fn finish(self) -> std::io::Result<Vec<u8>> {
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

type BlockWriter<'s> = RecordWriter<'s, Sink>;

/// How many blocks may be open (compressing) at once. Each holds a compressor's state (deflate's
/// about 256 KiB) and its compressed bytes so far; rows scattered over many destination partitions (an
/// event-time template over old, out-of-order records) would otherwise open one per partition
/// with no bound, and fail the same way on every retry (invariant 8).
pub(crate) const MAX_OPEN_BLOCKS: usize = 16;

struct Open<'s> {
    writer: BlockWriter<'s>,
    /// When a row was last written (a counter), to close the least recently written first.
    used: u64,
}

struct Dest<'s> {
    partition: String,
    open: Option<Open<'s>>,
    next_block: u32,
    rows: u64,
    blocks: Vec<StagedBlock>,
}

/// A finished block, ready for the stage step.
#[derive(Debug, Clone)]
pub(crate) struct ClosedBlock {
    /// Index of the destination in the batch.
    pub dest: usize,
    pub id: u32,
    pub rows: u64,
    pub compression: Compression,
    /// Where its body ends and what it sums to, for joining.
    pub join: Join,
    pub data: Bytes,
}

/// Bytes of the zlib header before a block's deflate stream (RFC 1950, no dictionary).
pub(crate) const ZLIB_HEADER: u64 = 2;

/// A record the encode stage could not load.
#[derive(Debug, Clone)]
pub(crate) struct Rejected {
    /// Index of the record in the chunk.
    pub source: u32,
    pub code: String,
    pub message: String,
}

/// Encodes the rows of one batch.
pub(crate) struct Encoder<'s> {
    layout: &'s Layout,
    router: &'s Router,
    block_bytes: usize,
    compression: Compression,
    dests: Vec<Dest<'s>>,
    index: HashMap<String, usize>,
    /// Rows written so far (the clock of [`Open::used`]).
    written: u64,
    open: usize,
}

impl std::fmt::Debug for Encoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("destinations", &self.index.len())
            .finish_non_exhaustive()
    }
}

fn wire(err: impl std::fmt::Display) -> EncodeError {
    EncodeError {
        reason: err.to_string(),
    }
}

impl<'s> Encoder<'s> {
    pub(crate) fn new(
        layout: &'s Layout,
        router: &'s Router,
        block_bytes: usize,
        compression: Compression,
    ) -> Self {
        Encoder {
            layout,
            router,
            block_bytes,
            compression,
            dests: Vec::new(),
            index: HashMap::new(),
            written: 0,
            open: 0,
        }
    }

    /// Encodes rows (grouped by `source`, in order); returns the blocks that filled up and the
    /// records that did not fit. A record with any bad row is rejected whole.
    /// The rows' text and bytes move into the blocks (their cells are left NULL).
    pub(crate) fn add(
        &mut self,
        rows: &mut [Row],
    ) -> Result<(Vec<ClosedBlock>, Vec<Rejected>), EncodeError> {
        let mut closed = Vec::new();
        let mut rejected = Vec::new();
        let mut i = 0;
        while i < rows.len() {
            let source = rows[i].source;
            let mut j = i;
            while j < rows.len() && rows[j].source == source {
                j += 1;
            }
            let mut converted = Vec::with_capacity(j - i);
            let mut failure = None;
            for row in &mut rows[i..j] {
                // Routed first: converting moves the cells' text out.
                let dest = self.router.route(&row.cells);
                match (self.layout.convert(&mut row.cells), dest) {
                    (Ok(values), Ok(dest)) => converted.push((dest, values)),
                    (Err(e), _) | (_, Err(e)) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            match failure {
                Some(e) => rejected.push(Rejected {
                    source,
                    code: e.code.to_owned(),
                    message: e.message,
                }),
                None => {
                    for (dest, values) in converted {
                        self.write(dest, &values, &mut closed)?;
                    }
                }
            }
            i = j;
        }
        Ok((closed, rejected))
    }

    /// Writes one row into its destination's open block (opening one, after closing the least
    /// recently written if [`MAX_OPEN_BLOCKS`] are open); blocks it closes go to `closed`.
    fn write(
        &mut self,
        partition: String,
        values: &[Value],
        closed: &mut Vec<ClosedBlock>,
    ) -> Result<(), EncodeError> {
        let d = match self.index.get(&partition) {
            Some(&d) => d,
            None => {
                self.dests.push(Dest {
                    partition: partition.clone(),
                    open: None,
                    next_block: 0,
                    rows: 0,
                    blocks: Vec::new(),
                });
                self.index.insert(partition, self.dests.len() - 1);
                self.dests.len() - 1
            }
        };
        if self.dests[d].open.is_none() && self.open >= MAX_OPEN_BLOCKS {
            let oldest = self
                .dests
                .iter()
                .enumerate()
                .filter_map(|(i, dest)| dest.open.as_ref().map(|o| (o.used, i)))
                .min()
                .map(|(_, i)| i);
            if let Some(oldest) = oldest {
                closed.push(self.close(oldest)?);
            }
        }
        let types = &self.layout.types;
        self.written += 1;
        let used = self.written;
        let dest = &mut self.dests[d];
        let opened = dest.open.is_none();
        if opened {
            dest.open = Some(Open {
                writer: RecordWriter::new(types, Sink::new(self.compression, self.block_bytes)?),
                used,
            });
        }
        let Some(open) = dest.open.as_mut() else {
            return Err(wire("no open block"));
        };
        open.used = used;
        open.writer.write(values).map_err(wire)?;
        dest.rows += 1;
        let full = open.writer.get_ref().raw as usize >= self.block_bytes;
        self.open += usize::from(opened);
        if full {
            closed.push(self.close(d)?);
        }
        Ok(())
    }

    fn close(&mut self, d: usize) -> Result<ClosedBlock, EncodeError> {
        let dest = &mut self.dests[d];
        let open = dest.open.take().ok_or_else(|| wire("no open block"))?;
        self.open -= 1;
        let rows = open.writer.count();
        let mut writer = open.writer;
        // The body ends with a sync flush, so a load can join it with other blocks' bodies
        // (docs/architecture.md, "Joining staged pieces into large blocks").
        writer.flush_body().map_err(wire)?;
        let sink = writer.get_ref();
        let join = Join {
            body: (sink.compressed().len() as u64).saturating_sub(sink.header),
            raw: sink.raw,
            adler32: sink.adler32(),
            checksum: writer.checksum(),
        };
        let data = writer.finish().map_err(wire)?.finish().map_err(wire)?;
        let id = dest.next_block;
        dest.next_block += 1;
        Ok(ClosedBlock {
            dest: d,
            id,
            rows,
            compression: self.compression,
            join,
            data: data.into(),
        })
    }

    /// Closes the open blocks; returns them and the destinations (blocks filled in by the caller
    /// through [`Encoder::staged`] as they are staged).
    pub(crate) fn finish(&mut self) -> Result<Vec<ClosedBlock>, EncodeError> {
        let mut out = Vec::new();
        for d in 0..self.dests.len() {
            if self.dests[d].open.is_some() {
                out.push(self.close(d)?);
            }
        }
        Ok(out)
    }

    /// Records that a block was staged under `key`.
    pub(crate) fn staged(&mut self, block: &ClosedBlock, key: String) {
        self.dests[block.dest].blocks.push(StagedBlock {
            id: block.id,
            key,
            rows: block.rows,
            compression: block.compression,
            join: Some(block.join),
        });
    }

    /// The destinations with their staged blocks.
    pub(crate) fn destinations(&self) -> Vec<Destination> {
        self.dests
            .iter()
            .map(|d| Destination {
                partition: d.partition.clone(),
                rows: d.rows,
                blocks: d.blocks.clone(),
                session: SessionRecord::default(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
