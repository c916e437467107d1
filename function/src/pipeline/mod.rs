//! The pipeline: one partition's batches, each top to bottom through plan → fetch → transform →
//! encode → stage → intent → load → commit. [`run_batch`] is the whole of one batch, one call per
//! stage; [`sync_partition`] is one partition of the plan: its reader and origin, then batches
//! until the partition is caught up, the trigger's range is done, or the invocation's time runs
//! short. The invariants they keep are numbered in
//! `docs/architecture.md`.
//!
//! | stage | module |
//! |---|---|
//! | plan (pure) | [`plan`] |
//! | fetch | [`fetch`] (checked fetches, the range reader) |
//! | transform | [`crate::transform`] (the wasm chain) |
//! | encode (pure) | [`encode`], with [`route`] for destination partitions |
//! | stage | [`stage`] (blocks, dead letters, the intent's content) |
//! | load | [`load`] (Tunnel sessions) |
//! | commit | [`commit`] (intents and the commit log) |

pub mod commit;
pub mod encode;
pub mod fetch;
mod join;
mod load;
pub(crate) mod loader;
pub mod plan;
pub(crate) mod route;

pub use join::JoinError;
pub use loader::{LoadMode, LoadOutcome};
mod stage;

use std::time::Instant;

use tracing::Instrument as _;

use crate::config::Config;
use crate::error::PipelineError;
use crate::fault;
use crate::kafka::Kafka;
use crate::maxcompute::MaxComputeClient;
use crate::metrics::StageTimes;
use crate::report::{BatchReport, PartitionOutcome};
use crate::staging::Conditional;
use crate::transform::Chain;
use crate::transform::bindings::KafkaRecord;
use commit::{BatchId, CommitLog, Entry, Intent, ModuleVersion, RecordMark, TopicPartition};
use encode::Layout;
use fetch::PartitionReader;
use plan::{Target, Work};
use route::Router;

/// Everything a batch needs, built once per invocation.
#[derive(Debug)]
pub(crate) struct BatchContext<'a> {
    pub(crate) config: &'a Config,
    /// The log (and so the log scope) batches are committed to.
    pub(crate) log: &'a CommitLog,
    pub(crate) maxcompute: &'a MaxComputeClient,
    pub(crate) chain: &'a Chain,
    pub(crate) layout: &'a Layout,
    pub(crate) router: &'a Router,
    pub(crate) modules: &'a [ModuleVersion],
    pub(crate) invocation: &'a str,
}

/// Syncs one partition of the plan: its reader, its origin (used only if its log has none
/// yet), then batches until caught up with the work's target, out of batches, or out of time.
pub(crate) async fn sync_partition(
    ctx: &BatchContext<'_>,
    kafka: &Kafka,
    work: &Work,
    deadline: Instant,
) -> PartitionOutcome {
    let tp = &work.tp;
    let span = tracing::info_span!("partition", topic = %tp.topic, partition = tp.partition);
    let mut outcome = PartitionOutcome::new(tp.clone());
    let result: Result<(), PipelineError> = async {
        let reader = kafka.partition(tp).await?;
        let position = ctx.log.position(tp).await?;
        let mut next = match position.next {
            Some(n) => n,
            None => {
                let spec = first_origin(ctx, kafka, work).await?;
                ctx.log
                    .ensure_origin(tp, reader.resolve(spec).await?)
                    .await?
            }
        };
        outcome.next = Some(next);
        let (end, hwm) = match work.target {
            Target::Offset(end) | Target::Delivered(end) => (end, None),
            Target::HighWatermark => {
                let earliest = reader.earliest().await?;
                // A batch staged before retention deleted its records still loads from its
                // staged blocks; only records not yet read are lost.
                if next < earliest && ctx.log.intent(tp, next).await?.is_none() {
                    plan::check_retained(tp, next, earliest)?;
                }
                let hwm = reader.watermark_at(earliest).await?;
                (hwm, Some(hwm))
            }
        };
        check_source(&reader, tp, next, end, hwm, &position).await?;
        outcome.high_watermark = Some(end);
        let limits = &ctx.config.limits;
        for _ in 0..limits.batches_per_invocation {
            // A batch already fixed by an intent is resumed whatever the target says.
            let resumable = ctx.log.intent(tp, next).await?;
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
            let result = if resumable.is_none() && ctx.log.entry(tp, next).await?.is_some() {
                // Committed (and its intent deleted) since this invocation read the log: stop
                // before staging it again for nothing.
                Err(PipelineError::LostRace {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    start: next,
                })
            } else {
                run_batch(ctx, Some(&reader), tp, planned, &work.delivered, resumable).await
            };
            match result {
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
                    next = ctx.log.position(tp).await?.next.unwrap_or(next);
                    outcome.next = Some(next);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        // An event's records not all loaded (time ran short, the batch cap, a racing invocation
        // that stopped this one) fail from `next`: the mapping delivers them again, instead of
        // leaving them to a trigger that may never come on a quiet partition.
        if let Target::Delivered(_) = work.target
            && next < end
        {
            return Err(PipelineError::Unfinished {
                topic: tp.topic.clone(),
                partition: tp.partition,
                next,
                end,
            });
        }
        Ok(())
    }
    .instrument(span.clone())
    .await;
    if let Err(e) = result {
        span.in_scope(|| tracing::error!(error = %e, kind = e.kind(), "partition stopped"));
        // A partition failing before its first batch is redelivered from where its work starts.
        if outcome.next.is_none()
            && let plan::OffsetSpec::Offset(o) = work.start
        {
            outcome.next = Some(o);
        }
        outcome.error = Some(e);
    }
    outcome
}

/// Where a never-synced partition starts: where the work says (`start_from`), except that under
/// `start_from = "latest"` a partition added to the topic after its syncing began starts at its
/// earliest offset: all it holds was written after syncing began, and `latest` would skip what
/// was written to it before its first invocation (`docs/reliability.md`, "Partitions added
/// later").
async fn first_origin(
    ctx: &BatchContext<'_>,
    kafka: &Kafka,
    work: &Work,
) -> Result<plan::OffsetSpec, PipelineError> {
    if *ctx.log.scope().kind() != commit::ScopeKind::Main
        || ctx.config.kafka.start_from != crate::config::StartFrom::Latest
    {
        return Ok(work.start);
    }
    let current = kafka.partitions(&work.tp.topic).await?;
    let at_start = ctx
        .log
        .partitions_at_start(&work.tp.topic, &current)
        .await?;
    if at_start.contains(&work.tp.partition) {
        Ok(work.start)
    } else {
        tracing::info!(
            partition = work.tp.partition,
            "a partition added after syncing began: starting at its earliest offset"
        );
        Ok(plan::OffsetSpec::Earliest)
    }
}

/// Stops when the partition is not the one the log was written from (a topic deleted and
/// recreated, `kafka.cluster` pointed at another cluster): its offsets end below the log's next
/// offset, or the last record the log committed is now another record. Loading on would skip
/// or drop what the new partition holds (`docs/reliability.md`, "The source changes").
async fn check_source(
    reader: &PartitionReader,
    tp: &TopicPartition,
    next: i64,
    end: i64,
    hwm: Option<i64>,
    position: &commit::Position,
) -> Result<(), PipelineError> {
    let changed = |reason: String| PipelineError::SourceChanged {
        topic: tp.topic.clone(),
        partition: tp.partition,
        next,
        reason,
    };
    // Does the partition still reach the log's offset? A schedule knows its high watermark; an
    // event whose records are all below the log (a redelivery) asks.
    let hwm = match hwm {
        Some(h) => Some(h),
        None if end <= next => Some(reader.high_watermark().await?),
        None => None,
    };
    if let Some(hwm) = hwm.filter(|&h| h < next) {
        return Err(changed(format!("the partition ends at offset {hwm}")));
    }
    let Some(mark) = position.last.as_ref().and_then(|e| e.intent.last_record) else {
        return Ok(());
    };
    if let Some(record) = reader.record_at(mark.offset).await?
        && RecordMark::of(&record) != mark
    {
        return Err(changed(format!(
            "the record at offset {} is not the one the log committed",
            mark.offset
        )));
    }
    Ok(())
}

/// One batch: fixes `[start, end)` (or resumes the intent found), moves it into MaxCompute and
/// commits it to the log. Without a `reader` only `delivered` records are read (replay).
pub(crate) async fn run_batch(
    ctx: &BatchContext<'_>,
    reader: Option<&PartitionReader>,
    tp: &TopicPartition,
    (start, end): (i64, i64),
    delivered: &[KafkaRecord],
    resumable: Option<(Intent, String)>,
) -> Result<BatchReport, PipelineError> {
    // `end` is the batch's fixed end, known once its intent is (a byte limit or an adopted intent
    // may end it before the planned end).
    let span = tracing::info_span!(
        "batch",
        start,
        planned_end = end,
        end = tracing::field::Empty,
        resumed = resumable.is_some()
    );
    async move {
        let mut times = StageTimes::default();
        let resumed = resumable.is_some();
        let (intent, etag) = match resumable {
            Some(found) => found,
            None => {
                let batch = BatchId {
                    cluster: ctx.log.scope().to_string(),
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    start,
                    end,
                };
                let intent = stage::stage_batch(ctx, reader, batch, delivered, &mut times).await?;
                ctx.log.fix(&intent).await?
            }
        };
        tracing::Span::current().record("end", intent.batch.end);

        let t = Instant::now();
        let mc = &ctx.config.maxcompute;
        let table = load::target_table(&intent, mc)?;
        let (intent, staged) = if intent.has_own_session() {
            // A release before loads opened a session for this batch: it finishes on its own,
            // in that session (docs/architecture.md, "Staging and loading", L4).
            let work = load::BatchLoad {
                log: ctx.log,
                intent,
                tag: etag,
            };
            let to = load::LoadTo {
                client: ctx.maxcompute,
                table: &table,
                create_partitions: mc.create_partitions,
                parallel_blocks: ctx.config.load.parallel_blocks,
            };
            let (work, report) = load::load(to, work).await?;
            tracing::debug!(?report, "loaded on its own");
            (work.intent, false)
        } else {
            pend(ctx, &intent, &table).await?;
            (intent, true)
        };
        times.load = t.elapsed();

        let t = Instant::now();
        let entry = commit(ctx, intent, staged).await?;
        times.commit = t.elapsed();
        Ok(BatchReport {
            batch: entry.intent.batch,
            counts: entry.intent.counts,
            times,
            resumed,
        })
    }
    .instrument(span)
    .await
}

/// Records the staged batch as pending for `table` (before its entry: L1), so a loader finds it.
async fn pend(ctx: &BatchContext<'_>, intent: &Intent, table: &str) -> Result<(), PipelineError> {
    let project = intent
        .project
        .as_deref()
        .unwrap_or(&ctx.config.maxcompute.project);
    let blocks = intent.destinations.iter().flat_map(|d| d.blocks.iter());
    let pending = commit::Pending {
        batch: intent.batch.clone(),
        rows: intent.destinations.iter().map(|d| d.rows).sum(),
        bytes: blocks.map(|b| b.join.map_or(0, |j| j.raw)).sum(),
        staged_at: chrono::Utc::now().to_rfc3339(),
    };
    let cluster = ctx.log.scope().cluster();
    commit::TableQueue::new(ctx.log.staging().clone(), cluster, project, table)
        .add(&pending)
        .await?;
    fault::point("after-pending");
    Ok(())
}

/// Creates the batch's log entry: `staged` (its load comes later, L1), or loaded (invariant 4:
/// only after MaxCompute confirmed its own sessions).
async fn commit(
    ctx: &BatchContext<'_>,
    intent: Intent,
    staged: bool,
) -> Result<Entry, PipelineError> {
    let entry = Entry {
        intent,
        committed_at: chrono::Utc::now().to_rfc3339(),
        invocation: ctx.invocation.to_owned(),
        staged,
    };
    if ctx.log.commit(&entry).await? == Conditional::Conflict {
        let batch = &entry.intent.batch;
        return Err(PipelineError::LostRace {
            topic: batch.topic.clone(),
            partition: batch.partition,
            start: batch.start,
        });
    }
    fault::point("after-log-entry");
    let c = &entry.intent.counts;
    tracing::info!(
        read = c.read,
        loaded = c.loaded,
        filtered = c.filtered,
        dead_lettered = c.dead_lettered,
        staged = entry.staged,
        "batch committed"
    );
    Ok(entry)
}
