//! The load step (`docs/architecture.md`, "Staging and loading"): staged batches of a table
//! become visible in MaxCompute. [`Loader::run`] finishes the loads in flight, then looks at the
//! table's staged batches and, when a load is due, claims them into a new load: one session per
//! destination partition, the staged blocks joined into large blocks, exactly once even when
//! loaders race or crash (invariants L1–L4). Which batches a load may claim is in
//! `loader/candidates.rs`; the sessions themselves are `load.rs`'s.

use std::time::Duration;

use futures_util::StreamExt as _;

use super::commit::{BatchId, CommitLog, Intent, LoadRecord, LogScope, Pending, TableQueue};
use super::load;
use crate::error::PipelineError;
use crate::fault;
use crate::maxcompute::MaxComputeClient;
use crate::staging::{Conditional, Staging};
use k2mc_formats::config::LoadConfig;

mod blocks;
mod body;
mod candidates;

use blocks::TableLoad;
pub(crate) use blocks::plan_blocks;
pub(crate) use body::{BodyFailure, StagedBody};

/// Most batches one load takes: bounds the claims a load makes before its first session, and
/// the record's size. What is left waits for the next load.
pub(crate) const MAX_BATCHES_PER_LOAD: usize = 2000;

/// Requests to the bucket in flight at once while reading or claiming many batches.
const BUCKET_CONCURRENCY: usize = 16;

/// What loading one table did.
#[derive(Debug, Default)]
pub struct LoadOutcome {
    pub table: String,
    /// Loads finished (new or resumed).
    pub loads: u32,
    pub batches: u64,
    pub rows: u64,
    pub sessions: u32,
    pub blocks: u32,
    /// Staged batches left waiting for a later load (not due, or over one load's size).
    pub waiting: u64,
    /// How long the oldest of them has waited since it was staged.
    pub oldest_waiting: Option<Duration>,
    /// How long the oldest batch a new load took had waited since it was staged, when the load
    /// was done: the freshness the load achieved (`docs/architecture.md`, "Staging and loading").
    pub oldest_loaded: Option<Duration>,
    /// How long the new load took, from its record to done: the part of `oldest_loaded` that is
    /// the load's own work rather than waiting for it.
    pub load_time: Option<Duration>,
    /// How long this table's loader ran in all: loads in flight finished, the decision and the
    /// new load (what `k2mc backfill --stats` reports as the load stage).
    pub time: Duration,
    pub error: Option<PipelineError>,
}

/// When a loader loads, and which loads in flight it finishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Every staged batch now (`k2mc load`); every load in flight is finished.
    Forced,
    /// The tables whose load is due (the loader schedule, `k2mc run`); every load in flight is
    /// finished, so a crashed load resumes at the next tick.
    Due,
    /// A Kafka event's invocation passing by: the tables whose load is due, but a load in flight
    /// younger than [`IN_FLIGHT_LEASE`] is left to the loader that started it (joining it would
    /// upload its blocks twice against the table's block quota).
    Passing,
}

/// How long a load in flight is left to the loader that created it by invocations passing by.
pub(crate) const IN_FLIGHT_LEASE: Duration = Duration::from_secs(120);

/// Loads the staged batches of a project's tables.
#[derive(Debug)]
pub(crate) struct Loader<'a> {
    pub(crate) staging: &'a Staging,
    /// The `kafka.cluster` whose staged batches it loads.
    pub(crate) cluster: &'a str,
    pub(crate) project: &'a str,
    pub(crate) maxcompute: &'a MaxComputeClient,
    pub(crate) settings: &'a LoadConfig,
    pub(crate) create_partitions: bool,
}

impl Loader<'_> {
    /// Loads `table` if its load is due (always when `force`), after finishing its loads in
    /// flight.
    pub(crate) async fn table(&self, table: &str, mode: LoadMode) -> LoadOutcome {
        let span = tracing::info_span!("load", table);
        let mut outcome = LoadOutcome {
            table: table.to_owned(),
            ..LoadOutcome::default()
        };
        let queue = TableQueue::new(self.staging.clone(), self.cluster, self.project, table);
        let started = std::time::Instant::now();
        let result = tracing::Instrument::instrument(
            self.load_table(&queue, mode, &mut outcome),
            span.clone(),
        )
        .await;
        outcome.time = started.elapsed();
        match result {
            Ok(()) => {}
            // Another loader finished the load first: nothing to report.
            Err(e @ PipelineError::LoadRaced { .. }) => {
                span.in_scope(|| tracing::info!(reason = %e, "load finished elsewhere"));
            }
            Err(e) => {
                span.in_scope(|| tracing::error!(error = %e, kind = e.kind(), "load stopped"));
                outcome.error = Some(e);
            }
        }
        outcome
    }

    async fn load_table(
        &self,
        queue: &TableQueue,
        mode: LoadMode,
        outcome: &mut LoadOutcome,
    ) -> Result<(), PipelineError> {
        let force = mode == LoadMode::Forced;
        for id in queue.load_ids().await? {
            if mode == LoadMode::Passing && young(&id) {
                continue;
            }
            self.finish(queue, &id, outcome).await?;
        }
        let pending = queue.pending().await?;
        if pending.is_empty() {
            return Ok(());
        }
        // Whether a load is due is decided on the pointers alone (one read each): an invocation
        // that finds nothing due reads no entries or intents.
        let now = chrono::Utc::now();
        let age = |p: &Pending| {
            chrono::DateTime::parse_from_rfc3339(&p.staged_at)
                .ok()
                .and_then(|t| (now - t.with_timezone(&chrono::Utc)).to_std().ok())
                .unwrap_or(Duration::ZERO)
        };
        let oldest = pending.iter().map(age).max().unwrap_or(Duration::ZERO);
        let bytes: u64 = pending.iter().map(|p| p.bytes).sum();
        let rows: u64 = pending.iter().map(|p| p.rows).sum();
        if !force && !self.settings.due(oldest, bytes, rows) {
            tracing::info!(
                batches = pending.len(),
                bytes,
                rows,
                oldest_s = oldest.as_secs(),
                "staged batches not due for a load yet"
            );
            outcome.waiting = pending.len() as u64;
            outcome.oldest_waiting = Some(oldest);
            return Ok(());
        }
        let mut candidates = self.candidates(queue, pending).await?;
        if candidates.is_empty() {
            return Ok(());
        }
        candidates.sort_by(|a, b| a.0.staged_at.cmp(&b.0.staged_at));
        let oldest = candidates.first().map_or(Duration::ZERO, |(p, _)| age(p));
        if candidates.len() > MAX_BATCHES_PER_LOAD {
            outcome.waiting = (candidates.len() - MAX_BATCHES_PER_LOAD) as u64;
            outcome.oldest_waiting = candidates
                .get(MAX_BATCHES_PER_LOAD)
                .and_then(|(p, _)| chrono::DateTime::parse_from_rfc3339(&p.staged_at).ok())
                .and_then(|t| (now - t.with_timezone(&chrono::Utc)).to_std().ok());
            candidates.truncate(MAX_BATCHES_PER_LOAD);
        }
        let id = new_load_id();
        let record = LoadRecord {
            id: id.clone(),
            project: queue.project().to_owned(),
            table: queue.table().to_owned(),
            created_at: now.to_rfc3339(),
            batches: candidates.iter().map(|(p, _)| p.batch.clone()).collect(),
            fixed: false,
            destinations: Vec::new(),
            done: false,
        };
        if queue.load_chain(&id).create(0, &record).await? == Conditional::Conflict {
            return Err(PipelineError::Corrupt {
                key: queue.load_chain(&id).key(0),
                reason: "a new load's id is taken".into(),
            });
        }
        fault::point("after-load-created");
        let claims = futures_util::stream::iter(candidates)
            .map(|(p, (intent, tag))| {
                let id = id.clone();
                async move { claim(queue, &p.batch, intent, tag, &id).await }
            })
            .buffer_unordered(BUCKET_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        for c in claims {
            c?;
        }
        fault::point("after-claim");
        self.finish(queue, &id, outcome).await?;
        let took = (chrono::Utc::now() - now).to_std().unwrap_or_default();
        outcome.oldest_loaded = Some(oldest + took);
        outcome.load_time = Some(took);
        Ok(())
    }

    /// Fixes load `id` if it is not, runs its sessions, marks it done and cleans up.
    async fn finish(
        &self,
        queue: &TableQueue,
        id: &str,
        outcome: &mut LoadOutcome,
    ) -> Result<(), PipelineError> {
        let chain = queue.load_chain(id);
        let Some((mut record, mut version)) = queue.load_record(id).await? else {
            return Ok(());
        };
        if !record.fixed {
            let mut fixed = record.clone();
            let (batches, intents) = claimed(queue, &record).await?;
            fixed.batches = batches;
            fixed.destinations = plan_blocks(&intents, self.settings.block_bytes);
            fixed.fixed = true;
            match chain.create(version + 1, &fixed).await? {
                Conditional::Written => (record, version) = (fixed, version + 1),
                Conditional::Conflict => match queue.load_record(id).await? {
                    Some(theirs) => (record, version) = theirs,
                    None => return Ok(()),
                },
            }
            fault::point("after-load-fixed");
        }
        if !record.done {
            let work = TableLoad {
                queue,
                record,
                version,
            };
            let (work, report) = load::load(load::LoadTo::of(self, queue), work).await?;
            (record, version) = (work.record, work.version);
            outcome.sessions += report.sessions_opened;
            outcome.blocks += report.blocks_uploaded;
            if !record.done {
                record.done = true;
                if chain.create(version + 1, &record).await? == Conditional::Conflict {
                    // Another loader moved it on: done, or a settlement; go round again.
                    return Box::pin(self.finish(queue, id, outcome)).await;
                }
            }
            fault::point("after-load-done");
            outcome.loads += 1;
            outcome.batches += record.batches.len() as u64;
            outcome.rows += record.destinations.iter().map(|d| d.rows).sum::<u64>();
            tracing::info!(load = id, batches = record.batches.len(), "load committed");
        }
        for batch in &record.batches {
            let log = CommitLog::new(queue.staging().clone(), LogScope::parse(&batch.cluster));
            cleanup(queue, &log, batch, &record).await;
        }
        chain.delete().await;
        Ok(())
    }
}

/// Claims a staged batch for load `id`: the next version of its intent names the load (L2).
/// Losing the race leaves the batch to the winner.
async fn claim(
    queue: &TableQueue,
    batch: &BatchId,
    mut intent: Intent,
    tag: String,
    id: &str,
) -> Result<(), PipelineError> {
    let log = CommitLog::new(queue.staging().clone(), LogScope::parse(&batch.cluster));
    intent.load = Some(id.to_owned());
    if log.update_intent(&intent, &tag).await?.is_none() {
        tracing::info!(?batch, "another loader claimed the batch first");
    }
    Ok(())
}

/// The batches of an unfixed load whose intents name it, with those intents, in its order.
async fn claimed(
    queue: &TableQueue,
    record: &LoadRecord,
) -> Result<(Vec<BatchId>, Vec<Intent>), PipelineError> {
    let read = futures_util::stream::iter(record.batches.iter())
        .map(|b| async move {
            let log = CommitLog::new(queue.staging().clone(), LogScope::parse(&b.cluster));
            log.intent(&b.tp(), b.start).await
        })
        .buffered(BUCKET_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let mut batches = Vec::new();
    let mut intents = Vec::new();
    for (b, found) in record.batches.iter().zip(read) {
        if let Some((intent, _)) = found?
            && intent.load.as_deref() == Some(record.id.as_str())
        {
            batches.push(b.clone());
            intents.push(intent);
        }
    }
    Ok((batches, intents))
}

/// Deletes what a loaded batch leaves: its intent (first: L1), its staged blocks, its pointer.
/// Best effort: a leftover pointer whose intent is gone is removed by the next loader.
async fn cleanup(queue: &TableQueue, log: &CommitLog, batch: &BatchId, record: &LoadRecord) {
    log.delete_intent(&batch.tp(), batch.start).await;
    let prefix = format!(
        "staged/{}/{}/{}/{:020}-{:020}/",
        batch.cluster, batch.topic, batch.partition, batch.start, batch.end
    );
    for piece in record.pieces().filter(|p| p.key.starts_with(&prefix)) {
        let _ = queue.staging().delete(&piece.key).await;
    }
    if let Err(err) = queue.remove(batch).await {
        tracing::warn!(error = %err, ?batch, "could not delete a loaded batch's pointer");
    }
}

/// Whether load `id` was created less than [`IN_FLIGHT_LEASE`] ago (its id starts with the time).
fn young(id: &str) -> bool {
    id.get(..15)
        .and_then(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y%m%dT%H%M%S").ok())
        .and_then(|t| (chrono::Utc::now().naive_utc() - t).to_std().ok())
        .is_none_or(|age| age < IN_FLIGHT_LEASE)
}

/// A new load's id: when it was made, then random (sorts by time, never collides in practice;
/// a collision is refused by the create-only write).
fn new_load_id() -> String {
    format!(
        "{}-{:016x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S"),
        rand::random::<u64>()
    )
}

#[cfg(test)]
mod tests;
