//! The stage step: fetch → transform → encode → stage for a new batch, chunk by chunk, and the
//! intent that names what it staged (not yet written). Every staged block is in the bucket before
//! the intent is returned (invariant 3 in `docs/architecture.md`); memory stays at one chunk and
//! the blocks in flight (invariant 8). [`Accounting`] owns the counts and the dead letters, so
//! every record read is loaded, filtered or dead-lettered exactly once (invariant 9).

use std::time::Instant;

use super::commit::{BatchId, Counts, Intent, ModuleVersion, RecordMark};
use super::encode::{Encoder, Rejected};
use super::fetch::{ChunkBound, PartitionReader, RangeReader};
use super::{BatchContext, plan};
use crate::error::PipelineError;
use crate::fault;
use crate::metrics::StageTimes;
use crate::staging::Uploads;
use crate::transform::bindings::{KafkaRecord, RecordBatch};
use crate::transform::{ChainOutput, Transformed};
use k2mc_formats::dead_letter::{DeadHeader, DeadLetter, ModuleRef};

/// Staged-block puts in flight at once while the next chunks are fetched, transformed and
/// encoded: two keep the network busy without holding more than two closed blocks in memory.
const STAGING_UPLOADS: usize = 2;

/// What became of each record of a batch: the counts, and the dead letters as JSON lines.
#[derive(Debug)]
pub(crate) struct Accounting<'m> {
    pub(crate) counts: Counts,
    dead_letters: Vec<u8>,
    modules: &'m [ModuleVersion],
}

impl<'m> Accounting<'m> {
    /// Nothing read yet; dead letters name `modules`.
    pub(crate) fn new(modules: &'m [ModuleVersion]) -> Self {
        Accounting {
            counts: Counts::default(),
            dead_letters: Vec::new(),
            modules,
        }
    }

    /// Settles every record of `chunk`: a dead letter if the chain or the encoder refused it
    /// (the chain's reason first), loaded if it left a row, filtered otherwise.
    pub(crate) fn settle(
        &mut self,
        chunk: &RecordBatch,
        output: &ChainOutput,
        rejected: &[Rejected],
    ) {
        let n = chunk.records.len();
        let mut dead = vec![false; n];
        let refusals = output
            .dead_letters
            .iter()
            .map(|d| {
                (
                    d.source,
                    d.stage.as_str(),
                    d.code.as_str(),
                    d.message.as_str(),
                )
            })
            .chain(
                rejected
                    .iter()
                    .map(|r| (r.source, "encode", r.code.as_str(), r.message.as_str())),
            );
        for (source, stage, code, message) in refusals {
            let i = source as usize;
            if let Some(record) = chunk.records.get(i)
                && !dead[i]
            {
                dead[i] = true;
                self.dead_letter(chunk, record, stage, code, message);
            }
        }
        let mut with_rows = vec![false; n];
        for row in &output.rows {
            if let Some(flag) = with_rows.get_mut(row.source as usize) {
                *flag = true;
            }
        }
        self.counts.read += n as u64;
        for i in 0..n {
            if dead[i] {
                self.counts.dead_lettered += 1;
            } else if with_rows[i] {
                self.counts.loaded += 1;
            } else {
                self.counts.filtered += 1;
            }
        }
    }

    fn dead_letter(
        &mut self,
        chunk: &RecordBatch,
        record: &KafkaRecord,
        stage: &str,
        code: &str,
        message: &str,
    ) {
        DeadLetter {
            topic: chunk.topic.clone(),
            partition: chunk.partition,
            offset: record.offset,
            timestamp: record.timestamp_ms,
            key: record.key.clone(),
            value: record.value.clone(),
            headers: record
                .headers
                .iter()
                .map(|h| DeadHeader {
                    key: h.key.clone(),
                    value: h.value.clone(),
                })
                .collect(),
            stage: stage.to_owned(),
            code: code.to_owned(),
            message: message.to_owned(),
            modules: self
                .modules
                .iter()
                .map(|m| ModuleRef {
                    name: m.name.clone(),
                    sha256: m.sha256.clone(),
                })
                .collect(),
        }
        .write_line(&mut self.dead_letters);
    }

    /// The dead letters as one object's bytes; `None` when there are none.
    pub(crate) fn into_dead_letters(self) -> Option<Vec<u8>> {
        (!self.dead_letters.is_empty()).then_some(self.dead_letters)
    }
}

/// A record's rows load all together or not at all (`docs/reliability.md`, "One record, rows
/// and a dead letter"): the rows of a record the chain refused are dropped, and each record's
/// rows are made contiguous (a stable sort by source), so the encoder accepts or rejects them
/// whole.
fn whole_records(output: &mut ChainOutput) {
    if !output.dead_letters.is_empty() {
        let dead: std::collections::HashSet<u32> =
            output.dead_letters.iter().map(|d| d.source).collect();
        output.rows.retain(|r| !dead.contains(&r.source));
    }
    if !output.rows.is_sorted_by_key(|r| r.source) {
        output.rows.sort_by_key(|r| r.source);
    }
}

/// fetch → transform → encode → stage for a new batch; returns its intent (not yet written).
/// Without a `reader` only `delivered` records are read (dead-letter replay).
pub(crate) async fn stage_batch(
    ctx: &BatchContext<'_>,
    reader: Option<&PartitionReader>,
    mut batch: BatchId,
    delivered: &[KafkaRecord],
    times: &mut StageTimes,
) -> Result<Intent, PipelineError> {
    let limits = &ctx.config.limits;
    // Staged keys name the planned range and this attempt: nothing another attempt stages can
    // replace the bytes this attempt's intent names (invariant 5).
    let planned = batch.clone();
    let attempt = format!("{:016x}", rand::random::<u64>());
    let mut range = RangeReader::new(reader, batch.start, batch.end, delivered);
    let mut pool = ctx.chain.start_parallel(limits.workers())?;
    // Chunks in flight: each worker has one to transform and one waiting, while this task
    // fetches, encodes and stages (docs/architecture.md, "Using every core").
    let ahead = 2 * pool.workers();
    let bound = ChunkBound {
        records: limits.transform_records,
        bytes: limits.transform_bytes,
    };
    let mut encoder = Encoder::new(
        ctx.layout,
        ctx.router,
        limits.block_bytes,
        ctx.config.compression(),
    );
    let mut accounting = Accounting::new(ctx.modules);
    let mut uploads = Uploads::new(ctx.log.staging(), STAGING_UPLOADS);
    let mut bytes = 0;
    let mut last_record = None;
    let mut fetching = true;
    loop {
        while fetching && pool.in_flight() < ahead {
            let t = Instant::now();
            let Some(mut records) = range.next_chunk(bound).await? else {
                fetching = false;
                break;
            };
            let cut = plan::byte_cut(&records, &mut bytes, limits.batch_bytes);
            if let Some(n) = cut {
                records.truncate(n);
                batch.end = records.last().map_or(batch.end, |r| r.offset + 1);
                fetching = false;
            }
            if let Some(r) = records.last() {
                last_record = Some(RecordMark::of(r));
            }
            times.fetch += t.elapsed();
            fault::point("after-fetch");
            pool.submit(RecordBatch {
                topic: batch.topic.clone(),
                partition: batch.partition,
                records,
            })?;
        }
        let Some(done) = pool.next().await else {
            break;
        };
        let Transformed {
            chunk,
            mut output,
            time,
        } = done?;
        whole_records(&mut output);
        times.transform += time;

        let t = Instant::now();
        let (closed, rejected) = encoder.add(&mut output.rows)?;
        times.encode += t.elapsed();
        accounting.settle(&chunk, &output, &rejected);

        let t = Instant::now();
        for block in closed {
            let key = planned.block_key(&attempt, block.dest, block.id);
            uploads.put(key.clone(), block.data.clone()).await?;
            encoder.staged(&block, key);
        }
        times.stage += t.elapsed();
    }
    let t = Instant::now();
    for block in encoder.finish()? {
        let key = planned.block_key(&attempt, block.dest, block.id);
        uploads.put(key.clone(), block.data.clone()).await?;
        encoder.staged(&block, key);
    }
    // Every block is in the bucket before the intent that names them is written (invariant 3).
    uploads.finish().await?;
    let counts = Counts {
        bytes,
        ..accounting.counts
    };
    let dead_letters_key = match accounting.into_dead_letters() {
        None => None,
        Some(lines) => {
            let key = planned.dead_letters_key(&attempt);
            ctx.log.staging().put(&key, lines.into()).await?;
            Some(key)
        }
    };
    times.stage += t.elapsed();
    tracing::debug!(?counts, "staged");
    for m in pool.finish() {
        // Per-stage counters of the batch: at info level when a stage refused or trapped, so an
        // operator sees which stage produces the dead letters.
        if m.errors + m.traps > 0 {
            tracing::info!(stage = %m.stage, records_in = m.records_in, rows_out = m.rows_out, filtered = m.filtered, errors = m.errors, traps = m.traps, ms = m.time.as_millis() as u64, "stage refused records");
        } else {
            tracing::debug!(stage = %m.stage, records_in = m.records_in, rows_out = m.rows_out, filtered = m.filtered, ms = m.time.as_millis() as u64, "stage");
        }
    }
    if limits
        .error_limit
        .exceeded(counts.dead_lettered, counts.read)
    {
        return Err(PipelineError::ErrorLimit {
            topic: batch.topic.clone(),
            partition: batch.partition,
            start: batch.start,
            end: batch.end,
            dead: counts.dead_lettered,
            read: counts.read,
            limit: limits.error_limit.to_string(),
            dead_letters_key: ctx
                .log
                .staging()
                .key(dead_letters_key.as_deref().unwrap_or("-")),
        });
    }
    debug_assert!(counts.reconciles());
    fault::point("after-stage");
    Ok(Intent {
        batch,
        counts,
        modules: ctx.modules.to_vec(),
        destinations: encoder.destinations(),
        dead_letters_key,
        project: Some(ctx.config.maxcompute.project.clone()),
        table: Some(ctx.config.maxcompute.table.clone()),
        // Only a batch read from the broker marks it (a replay reads a dead-letter object).
        last_record: reader.and(last_record),
        load: None,
    })
}
