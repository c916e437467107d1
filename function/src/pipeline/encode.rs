//! The encode stage (pure, invariant 7 in `docs/architecture.md`): the chain's rows become Tunnel
//! record blocks against the table's schema. Each cell is checked and converted ([`layout`]); a
//! record whose row does not fit becomes a dead letter and the others go on. Rows are routed to
//! their destination partition and written into one open block per destination; a block is
//! closed and handed back for staging when it reaches the configured size, and at most
//! [`MAX_OPEN_BLOCKS`] are open at once (the least recently written closes first), so memory is
//! bounded by blocks, not by the range or by how many partitions its rows scatter over.

mod layout;
mod sink;

use std::collections::HashMap;

use bytes::Bytes;
use thiserror::Error;

use crate::maxcompute::{Compression, RecordWriter, Value};
use crate::pipeline::commit::{Destination, Join, SessionRecord, StagedBlock};
use crate::pipeline::route::{DayMemo, Router};
use crate::transform::bindings::Row;

pub use layout::{Layout, MAX_FIELD_BYTES, RowError, convert_cell, type_text};
use sink::Sink;

/// Writing a block failed: the record writer or the compressor refused (writing into memory,
/// so a bug rather than bad data; the batch fails and nothing is staged under its intent).
#[derive(Debug, Error)]
#[error("encoding a Tunnel block: {reason}")]
pub struct EncodeError {
    reason: String,
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

/// Where a converted row goes: a destination already in the batch, or a new one.
enum Target {
    Known(usize),
    New(String),
}

/// Encodes the rows of one batch.
pub(crate) struct Encoder<'s> {
    layout: &'s Layout,
    router: &'s Router,
    block_bytes: usize,
    compression: Compression,
    dests: Vec<Dest<'s>>,
    index: HashMap<String, usize>,
    /// The destination written last, looked at before `index`.
    last: Option<usize>,
    /// The partition spec of the row being routed (one buffer for every row).
    route: String,
    days: DayMemo,
    /// The rows of the record being converted, with their destinations (kept for its capacity).
    converted: Vec<(Target, Vec<Value>)>,
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
            last: None,
            route: String::new(),
            days: DayMemo::default(),
            converted: Vec::new(),
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
            let mut converted = std::mem::take(&mut self.converted);
            converted.clear();
            let mut failure = None;
            for row in &mut rows[i..j] {
                // Routed first: converting moves the cells' text out.
                let dest = self
                    .router
                    .route_into(&row.cells, &mut self.route, &mut self.days);
                match (self.layout.convert(&mut row.cells), dest) {
                    (Ok(values), Ok(())) => converted.push((self.target(), values)),
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
                    for (dest, values) in converted.drain(..) {
                        self.write(dest, &values, &mut closed)?;
                    }
                }
            }
            self.converted = converted;
            i = j;
        }
        Ok((closed, rejected))
    }

    /// The destination of the row just routed into `self.route`: the last row's (most rows of a
    /// batch go where the one before went), else the index's, else a new one named by the spec.
    fn target(&self) -> Target {
        if let Some(d) = self.last
            && self.dests[d].partition == self.route
        {
            return Target::Known(d);
        }
        match self.index.get(self.route.as_str()) {
            Some(&d) => Target::Known(d),
            None => Target::New(self.route.clone()),
        }
    }

    /// Writes one row into its destination's open block (opening one, after closing the least
    /// recently written if [`MAX_OPEN_BLOCKS`] are open); blocks it closes go to `closed`.
    fn write(
        &mut self,
        target: Target,
        values: &[Value],
        closed: &mut Vec<ClosedBlock>,
    ) -> Result<(), EncodeError> {
        let d = match target {
            Target::Known(d) => d,
            Target::New(partition) => match self.index.get(&partition) {
                // An earlier row of the same record opened it.
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
            },
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
        self.last = Some(d);
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
