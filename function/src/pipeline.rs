//! One batch of one partition, top to bottom: plan → fetch → transform → encode → stage → intent
//! → load → commit. [`run_batch`] is the whole pipeline in one function, one call per stage; the
//! invariants of architecture §3 are kept here. [`sync_partition`] runs batches until the
//! partition is caught up, the trigger's range is done, or the invocation's time runs short.

use std::time::Instant;

use tracing::Instrument as _;

use base64::Engine as _;
use serde_json::json;

use crate::commitlog::{BatchId, CommitLog, Counts, Entry, Intent, ModuleVersion, TopicPartition};
use crate::config::Config;
use crate::encode::{Encoder, Layout};
use crate::error::PipelineError;
use crate::fault;
use crate::kafka::{PartitionReader, RangeReader};
use crate::load::load;
use crate::maxcompute::MaxComputeClient;
use crate::metrics::StageTimes;
use crate::plan;
use crate::route::Router;
use crate::staging::{Conditional, Uploads};
use crate::transform::Chain;
use crate::transform::bindings::{KafkaRecord, RecordBatch};

/// Everything a batch needs, built once per invocation.
#[derive(Debug)]
pub struct BatchContext<'a> {
    pub config: &'a Config,
    pub log: &'a CommitLog,
    pub maxcompute: &'a MaxComputeClient,
    pub chain: &'a Chain,
    pub layout: &'a Layout,
    pub router: &'a Router,
    pub modules: &'a [ModuleVersion],
    pub invocation: &'a str,
}

/// What one committed (or resumed) batch did.
#[derive(Debug, Clone)]
pub struct BatchReport {
    pub batch: BatchId,
    pub counts: Counts,
    pub times: StageTimes,
    /// True when the batch was fixed by an earlier (crashed or concurrent) invocation.
    pub resumed: bool,
}

/// How a partition's sync ended.
#[derive(Debug)]
pub struct PartitionOutcome {
    pub tp: TopicPartition,
    pub batches: Vec<BatchReport>,
    /// The first offset not committed when this invocation stopped.
    pub next: Option<i64>,
    pub high_watermark: Option<i64>,
    /// Why the partition stopped early, if it did.
    pub error: Option<PipelineError>,
}

impl PartitionOutcome {
    /// A partition that stopped before its first batch.
    pub fn failed(tp: TopicPartition, error: PipelineError) -> Self {
        PartitionOutcome {
            tp,
            batches: Vec::new(),
            next: None,
            high_watermark: None,
            error: Some(error),
        }
    }
}

/// Where a partition's range ends for this invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The high watermark at plan time (schedule tick).
    HighWatermark,
    /// A fixed end (event batch: last delivered offset + 1; backfill: `--to`).
    Offset(i64),
}

/// Syncs one partition: batches until caught up with `target`, out of batches, or out of time.
pub async fn sync_partition(
    ctx: &BatchContext<'_>,
    reader: &PartitionReader,
    origin: i64,
    target: Target,
    delivered: &[KafkaRecord],
    deadline: Instant,
) -> PartitionOutcome {
    let tp = reader.tp().clone();
    let span = tracing::info_span!("partition", topic = %tp.topic, partition = tp.partition);
    let mut outcome = PartitionOutcome {
        tp: tp.clone(),
        batches: Vec::new(),
        next: None,
        high_watermark: None,
        error: None,
    };
    let result: Result<(), PipelineError> = async {
        let position = ctx.log.position(&tp).await?;
        let mut next = match position.next {
            Some(n) => n,
            None => ctx.log.ensure_origin(&tp, origin).await?,
        };
        outcome.next = Some(next);
        let end = match target {
            Target::Offset(end) => end,
            Target::HighWatermark => {
                let earliest = reader.earliest().await?;
                if next < earliest {
                    return Err(PipelineError::OffsetsLost {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        next,
                        earliest,
                    });
                }
                reader.watermark_at(next.max(earliest)).await?
            }
        };
        outcome.high_watermark = Some(end);
        let limits = &ctx.config.limits;
        for _ in 0..limits.batches_per_invocation {
            // A batch already fixed by an intent is resumed whatever the target says.
            let resumable = ctx.log.intent(&tp, next).await?;
            if next >= end && resumable.is_none() {
                break;
            }
            if deadline.saturating_duration_since(Instant::now()) < limits.time_reserve() {
                tracing::info!(
                    next,
                    end,
                    "stopping: too little time left for another batch"
                );
                break;
            }
            let planned = plan::batch_range(next, end, limits.batch_records);
            match run_batch(ctx, Some(reader), &tp, planned, delivered, resumable).await {
                Ok(report) => {
                    next = report.batch.end;
                    outcome.next = Some(next);
                    outcome.batches.push(report);
                }
                Err(PipelineError::LostRace { .. }) => {
                    tracing::info!(
                        next,
                        "another invocation committed this batch; stopping cleanly"
                    );
                    outcome.next = ctx.log.position(&tp).await?.next;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    .instrument(span.clone())
    .await;
    if let Err(e) = result {
        span.in_scope(|| tracing::error!(error = %e, kind = e.kind(), "partition stopped"));
        outcome.error = Some(e);
    }
    outcome
}

/// One batch: fixes `[start, end)` (or resumes the intent found), moves it into MaxCompute and
/// commits it to the log. Without a `reader` only `delivered` records are read (replay).
pub async fn run_batch(
    ctx: &BatchContext<'_>,
    reader: Option<&PartitionReader>,
    tp: &TopicPartition,
    planned: (i64, i64),
    delivered: &[KafkaRecord],
    resumable: Option<(Intent, String)>,
) -> Result<BatchReport, PipelineError> {
    // `end` is the batch's fixed end, known once its intent is (a byte limit or an adopted intent
    // may end it before the planned end).
    let span = tracing::info_span!(
        "batch",
        start = planned.0,
        planned_end = planned.1,
        end = tracing::field::Empty,
        resumed = resumable.is_some()
    );
    run_batch_in_span(ctx, reader, tp, planned, delivered, resumable)
        .instrument(span)
        .await
}

async fn run_batch_in_span(
    ctx: &BatchContext<'_>,
    reader: Option<&PartitionReader>,
    tp: &TopicPartition,
    (start, end): (i64, i64),
    delivered: &[KafkaRecord],
    resumable: Option<(Intent, String)>,
) -> Result<BatchReport, PipelineError> {
    let mut times = StageTimes::default();
    let (intent, etag, resumed) = match resumable {
        Some((intent, etag)) => (intent, etag, true),
        None => {
            let batch = BatchId {
                cluster: ctx.config.kafka.cluster.clone(),
                topic: tp.topic.clone(),
                partition: tp.partition,
                start,
                end,
            };
            let intent = stage_batch(ctx, reader, batch, delivered, &mut times).await?;
            let (intent, etag) = fix_intent(ctx, tp, intent).await?;
            (intent, etag, false)
        }
    };
    tracing::Span::current().record("end", intent.batch.end);
    tracing::debug!(resumed, "batch fixed");

    let t = Instant::now();
    let (intent, report) = load(
        ctx.maxcompute,
        ctx.log,
        &ctx.config.maxcompute.table,
        ctx.config.maxcompute.create_partitions,
        intent,
        etag,
    )
    .await?;
    times.load = t.elapsed();
    tracing::debug!(?report, "loaded");

    let t = Instant::now();
    let entry = Entry {
        intent,
        committed_at: chrono::Utc::now().to_rfc3339(),
        invocation: ctx.invocation.to_owned(),
    };
    match ctx.log.commit(&entry).await? {
        Conditional::Written => {}
        Conditional::Conflict => {
            return Err(PipelineError::LostRace {
                topic: tp.topic.clone(),
                partition: tp.partition,
                start: entry.intent.batch.start,
            });
        }
    }
    times.commit = t.elapsed();
    fault::point("after-log-entry");
    tracing::info!(
        read = entry.intent.counts.read,
        loaded = entry.intent.counts.loaded,
        filtered = entry.intent.counts.filtered,
        dead_lettered = entry.intent.counts.dead_lettered,
        "batch committed"
    );
    Ok(BatchReport {
        batch: entry.intent.batch,
        counts: entry.intent.counts,
        times,
        resumed,
    })
}

/// Staged-block puts in flight at once while the next chunks are fetched, transformed and
/// encoded: two keep the network busy without holding more than two closed blocks in memory.
const STAGING_UPLOADS: usize = 2;

/// fetch → transform → encode → stage for a new batch; returns its intent (not yet written).
async fn stage_batch(
    ctx: &BatchContext<'_>,
    reader: Option<&PartitionReader>,
    mut batch: BatchId,
    delivered: &[KafkaRecord],
    times: &mut StageTimes,
) -> Result<Intent, PipelineError> {
    let limits = &ctx.config.limits;
    // Staged keys name the planned range: a retry plans the same range and cuts it the same way.
    let planned = batch.clone();
    let mut range = RangeReader::new(reader, batch.start, batch.end, delivered);
    let mut run = ctx.chain.start_run();
    let mut encoder = Encoder::new(ctx.layout, ctx.router, limits.block_bytes);
    let mut counts = Counts::default();
    let mut dead_letters: Vec<u8> = Vec::new();
    let mut staged_any = false;
    let mut uploads = Uploads::new(ctx.log.staging(), STAGING_UPLOADS);
    loop {
        let t = Instant::now();
        let Some(mut records) = range.next_chunk(limits.transform_records).await? else {
            break;
        };
        // The bytes limit cuts at a record boundary the data decides, so a retry cuts the same.
        let mut cut = None;
        for (i, r) in records.iter().enumerate() {
            counts.bytes +=
                (r.key.as_ref().map_or(0, Vec::len) + r.value.as_ref().map_or(0, Vec::len)) as u64;
            if counts.bytes >= limits.batch_bytes {
                cut = Some(i + 1);
                break;
            }
        }
        if let Some(n) = cut {
            records.truncate(n);
            batch.end = records.last().map_or(batch.end, |r| r.offset + 1);
        }
        counts.read += records.len() as u64;
        times.fetch += t.elapsed();
        fault::point("after-fetch");

        let t = Instant::now();
        let chunk = RecordBatch {
            topic: batch.topic.clone(),
            partition: batch.partition,
            records,
        };
        let output = run.run(&chunk)?;
        times.transform += t.elapsed();

        let t = Instant::now();
        let (closed, rejected) = encoder.add(&output.rows)?;
        times.encode += t.elapsed();

        let mut with_rows = vec![false; chunk.records.len()];
        for row in &output.rows {
            if let Some(flag) = with_rows.get_mut(row.source as usize) {
                *flag = true;
            }
        }
        let mut dead = vec![false; chunk.records.len()];
        for d in &output.dead_letters {
            write_dead_letter(
                &mut dead_letters,
                &chunk,
                d.source,
                &d.stage,
                &d.code,
                &d.message,
                ctx.modules,
            );
            dead[d.source as usize] = true;
        }
        for r in &rejected {
            if !dead[r.source as usize] {
                write_dead_letter(
                    &mut dead_letters,
                    &chunk,
                    r.source,
                    "encode",
                    &r.code,
                    &r.message,
                    ctx.modules,
                );
                dead[r.source as usize] = true;
            }
        }
        for i in 0..chunk.records.len() {
            if dead[i] {
                counts.dead_lettered += 1;
            } else if with_rows[i] {
                counts.loaded += 1;
            } else {
                counts.filtered += 1;
            }
        }

        let t = Instant::now();
        for block in closed {
            let key = planned.block_key(block.dest, block.id);
            uploads.put(key.clone(), block.data.clone()).await?;
            encoder.staged(&block, key);
            staged_any = true;
        }
        times.stage += t.elapsed();
        if cut.is_some() {
            break;
        }
    }
    let t = Instant::now();
    for block in encoder.finish()? {
        let key = planned.block_key(block.dest, block.id);
        uploads.put(key.clone(), block.data.clone()).await?;
        encoder.staged(&block, key);
        staged_any = true;
    }
    // Every block is in the bucket before the intent that names them is written (invariant 3).
    uploads.finish().await?;
    let dead_letters_key = if dead_letters.is_empty() {
        None
    } else {
        let key = planned.dead_letters_key();
        ctx.log.staging().put(&key, dead_letters.into()).await?;
        Some(key)
    };
    times.stage += t.elapsed();
    tracing::debug!(staged_any, ?counts, "staged");
    if ctx
        .config
        .limits
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
            limit: ctx.config.limits.error_limit.to_string(),
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
    })
}

/// Creates the intent, or adopts the one a racing or crashed invocation fixed first.
async fn fix_intent(
    ctx: &BatchContext<'_>,
    tp: &TopicPartition,
    intent: Intent,
) -> Result<(Intent, String), PipelineError> {
    let start = intent.batch.start;
    let created = ctx.log.create_intent(&intent).await?;
    let (found, etag) = ctx
        .log
        .intent(tp, start)
        .await?
        .ok_or_else(|| PipelineError::Corrupt {
            key: format!("intent of {tp} at {start}"),
            reason: "missing right after it was written".into(),
        })?;
    if created == Conditional::Conflict {
        tracing::info!(
            theirs_end = found.batch.end,
            ours_end = intent.batch.end,
            "adopting the intent another invocation fixed"
        );
    } else {
        fault::point("after-intent");
    }
    Ok((found, etag))
}

/// One dead letter as a JSON line (architecture §4).
fn write_dead_letter(
    out: &mut Vec<u8>,
    chunk: &RecordBatch,
    source: u32,
    stage: &str,
    code: &str,
    message: &str,
    modules: &[ModuleVersion],
) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some(r) = chunk.records.get(source as usize) else {
        return;
    };
    let line = json!({
        "topic": chunk.topic,
        "partition": chunk.partition,
        "offset": r.offset,
        "timestamp": r.timestamp_ms,
        "key": r.key.as_ref().map(|k| b64.encode(k)),
        "value": r.value.as_ref().map(|v| b64.encode(v)),
        "headers": r.headers.iter().map(|h| json!({"key": h.key, "value": h.value.as_ref().map(|v| b64.encode(v))})).collect::<Vec<_>>(),
        "stage": stage,
        "code": code,
        "message": message,
        "modules": modules.iter().map(|m| json!({"name": m.name, "sha256": m.sha256})).collect::<Vec<_>>(),
    });
    if serde_json::to_writer(&mut *out, &line).is_ok() {
        out.push(b'\n');
    }
}
