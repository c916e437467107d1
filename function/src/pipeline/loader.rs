//! The load step (`docs/architecture.md`, "Staging and loading"): staged batches of a table
//! become visible in MaxCompute. [`Loader::run`] finishes the loads in flight, then looks at the
//! table's staged batches and, when a load is due, claims them into a new load: one session per
//! destination partition, the staged blocks joined into large blocks, exactly once even when
//! loaders race or crash (invariants L1–L4). The sessions themselves are `load.rs`'s.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;

use super::commit::{
    BatchId, CommitLog, Intent, LoadBlock, LoadDestination, LoadRecord, LogScope, Pending,
    SessionRecord, TableQueue,
};
use super::join::{Piece, join};
use super::load::{self, BatchLoad, Loading};
use crate::error::{LoadCommitUnknown, PipelineError};
use crate::fault;
use crate::maxcompute::{Block, Compression, MaxComputeClient};
use crate::staging::{Conditional, Staging};
use k2mc_formats::config::LoadConfig;

/// Most batches one load takes: bounds the claims a load makes before its first session, and
/// the record's size. What is left waits for the next load.
pub(crate) const MAX_BATCHES_PER_LOAD: usize = 2000;

/// Requests to the bucket in flight at once while reading or claiming many batches.
const BUCKET_CONCURRENCY: usize = 16;

/// Staged blocks read at once while a joined block is put together.
const PIECE_READS: usize = 8;

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
    pub error: Option<PipelineError>,
}

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
    pub(crate) async fn table(&self, table: &str, force: bool) -> LoadOutcome {
        let span = tracing::info_span!("load", table);
        let mut outcome = LoadOutcome {
            table: table.to_owned(),
            ..LoadOutcome::default()
        };
        let queue = TableQueue::new(self.staging.clone(), self.cluster, self.project, table);
        let result = tracing::Instrument::instrument(
            self.load_table(&queue, force, &mut outcome),
            span.clone(),
        )
        .await;
        if let Err(e) = result {
            span.in_scope(|| tracing::error!(error = %e, kind = e.kind(), "load stopped"));
            outcome.error = Some(e);
        }
        outcome
    }

    async fn load_table(
        &self,
        queue: &TableQueue,
        force: bool,
        outcome: &mut LoadOutcome,
    ) -> Result<(), PipelineError> {
        for id in queue.load_ids().await? {
            self.finish(queue, &id, outcome).await?;
        }
        let candidates = self.candidates(queue).await?;
        if candidates.is_empty() {
            return Ok(());
        }
        let now = chrono::Utc::now();
        let oldest = candidates
            .iter()
            .filter_map(|(p, _)| chrono::DateTime::parse_from_rfc3339(&p.staged_at).ok())
            .min()
            .map_or(Duration::ZERO, |t| {
                (now - t.with_timezone(&chrono::Utc))
                    .to_std()
                    .unwrap_or(Duration::ZERO)
            });
        let bytes: u64 = candidates.iter().map(|(p, _)| p.bytes).sum();
        let rows: u64 = candidates.iter().map(|(p, _)| p.rows).sum();
        if !force && !self.settings.due(oldest, bytes, rows) {
            tracing::info!(
                batches = candidates.len(),
                bytes,
                rows,
                oldest_s = oldest.as_secs(),
                "staged batches not due for a load yet"
            );
            outcome.waiting = candidates.len() as u64;
            outcome.oldest_waiting = Some(oldest);
            return Ok(());
        }
        let mut candidates = candidates;
        candidates.sort_by(|a, b| a.0.staged_at.cmp(&b.0.staged_at));
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
        self.finish(queue, &id, outcome).await
    }

    /// The table's staged batches free to claim, with their intents. Batches loaded but not
    /// cleaned up, or claimed by a load fixed without them, are settled on the way (L1, L2);
    /// a batch a release before loads opened a session for is loaded on its own (L4).
    async fn candidates(
        &self,
        queue: &TableQueue,
    ) -> Result<Vec<(Pending, (Intent, String))>, PipelineError> {
        let mut out = Vec::new();
        for p in queue.pending().await? {
            let log = CommitLog::new(queue.staging().clone(), LogScope::parse(&p.batch.cluster));
            let tp = p.batch.tp();
            match log.entry(&tp, p.batch.start).await? {
                // Still being staged: its entry comes, or a later run resumes its intent.
                None => continue,
                Some(e) if !e.staged => {
                    queue.remove(&p.batch).await?;
                    continue;
                }
                Some(_) => {}
            }
            let Some((mut intent, mut tag)) = log.intent(&tp, p.batch.start).await? else {
                // Loaded; the cleanup after its load was cut short.
                queue.remove(&p.batch).await?;
                continue;
            };
            if let Some(id) = intent.load.clone() {
                match queue.load_record(&id).await? {
                    Some((r, _)) if r.fixed && !r.batches.contains(&p.batch) => {
                        // Claimed by a load fixed without it: free it (L2).
                        intent.load = None;
                        match log.update_intent(&intent, &tag).await? {
                            Some(t) => tag = t,
                            None => continue,
                        }
                    }
                    Some((r, _)) if r.done => {
                        cleanup(queue, &log, &p.batch, &r).await;
                        continue;
                    }
                    // In flight in another loader (created after this one listed the loads).
                    Some(_) => continue,
                    None => {
                        // Its load is done and its record deleted (records go last).
                        log.delete_intent(&tp, p.batch.start).await;
                        queue.remove(&p.batch).await?;
                        continue;
                    }
                }
            }
            if intent.has_own_session() {
                self.load_alone(queue, &log, &p, intent, tag).await?;
                continue;
            }
            out.push((p, (intent, tag)));
        }
        Ok(out)
    }

    /// Finishes a batch whose intent records a session of its own (L4): its sessions, then the
    /// same cleanup a load does.
    async fn load_alone(
        &self,
        queue: &TableQueue,
        log: &CommitLog,
        pending: &Pending,
        intent: Intent,
        tag: String,
    ) -> Result<(), PipelineError> {
        tracing::info!(batch = ?pending.batch, "loading a batch with a session of its own");
        let work = BatchLoad { log, intent, tag };
        let (work, _) =
            load::load(self.maxcompute, queue.table(), self.create_partitions, work).await?;
        let tp = pending.batch.tp();
        log.delete_intent(&tp, pending.batch.start).await;
        for key in work
            .intent
            .staged_keys()
            .filter(|k| k.starts_with("staged/"))
        {
            let _ = queue.staging().delete(key).await;
        }
        queue.remove(&pending.batch).await
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
            let (work, report) =
                load::load(self.maxcompute, queue.table(), self.create_partitions, work).await?;
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

/// Per destination partition (in first-seen order), the staged blocks of `intents` joined into
/// blocks of about `block_bytes` uncompressed bytes; a block staged without join data goes alone.
pub(crate) fn plan_blocks(intents: &[Intent], block_bytes: u64) -> Vec<LoadDestination> {
    let mut out: Vec<LoadDestination> = Vec::new();
    let mut raw: Vec<u64> = Vec::new();
    for intent in intents {
        for dest in &intent.destinations {
            let d = match out.iter().position(|o| o.partition == dest.partition) {
                Some(d) => d,
                None => {
                    out.push(LoadDestination {
                        partition: dest.partition.clone(),
                        rows: 0,
                        blocks: Vec::new(),
                        session: SessionRecord::default(),
                    });
                    raw.push(0);
                    out.len() - 1
                }
            };
            let o = &mut out[d];
            o.rows += dest.rows;
            for piece in &dest.blocks {
                let size = piece.join.map(|j| j.raw);
                let fits = match (size, o.blocks.last()) {
                    (Some(s), Some(last)) => {
                        last.pieces.iter().all(|p| p.join.is_some()) && raw[d] + s <= block_bytes
                    }
                    _ => false,
                };
                if fits && let Some(last) = o.blocks.last_mut() {
                    last.rows += piece.rows;
                    last.pieces.push(piece.clone());
                    raw[d] += size.unwrap_or(0);
                } else {
                    let id = o.blocks.len() as u32;
                    o.blocks.push(LoadBlock {
                        id,
                        rows: piece.rows,
                        pieces: vec![piece.clone()],
                    });
                    raw[d] = size.unwrap_or(u64::MAX / 2);
                }
            }
        }
    }
    out
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

/// A new load's id: when it was made, then random (sorts by time, never collides in practice;
/// a collision is refused by the create-only write).
fn new_load_id() -> String {
    format!(
        "{}-{:016x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S"),
        rand::random::<u64>()
    )
}

/// A load as the session logic sees it.
#[derive(Debug)]
struct TableLoad<'a> {
    queue: &'a TableQueue,
    record: LoadRecord,
    version: u32,
}

impl Loading for TableLoad<'_> {
    fn destinations(&self) -> usize {
        self.record.destinations.len()
    }

    fn partition(&self, d: usize) -> &str {
        &self.record.destinations[d].partition
    }

    fn session(&self, d: usize) -> &SessionRecord {
        &self.record.destinations[d].session
    }

    fn session_mut(&mut self, d: usize) -> &mut SessionRecord {
        &mut self.record.destinations[d].session
    }

    fn block_ids(&self, d: usize) -> Vec<u32> {
        self.record.destinations[d]
            .blocks
            .iter()
            .map(|b| b.id)
            .collect()
    }

    async fn block(&self, d: usize, i: usize) -> Result<Block, PipelineError> {
        let block = &self.record.destinations[d].blocks[i];
        let staging = self.queue.staging();
        let mut datas: Vec<Bytes> = Vec::with_capacity(block.pieces.len());
        for chunk in block.pieces.chunks(PIECE_READS) {
            let mut reads = Vec::with_capacity(chunk.len());
            for p in chunk {
                reads.push(load::staged_block(staging, &p.key));
            }
            for data in futures_util::future::join_all(reads).await {
                datas.push(data?);
            }
        }
        let data = match (block.pieces.as_slice(), datas.as_slice()) {
            ([_], [only]) => only.clone(),
            _ => {
                let mut pieces = Vec::with_capacity(datas.len());
                for (p, data) in block.pieces.iter().zip(datas) {
                    let Some(join) = p.join else {
                        return Err(PipelineError::Corrupt {
                            key: p.key.clone(),
                            reason: "a block without join data was planned into a joined block"
                                .into(),
                        });
                    };
                    pieces.push(Piece {
                        key: &p.key,
                        data,
                        rows: p.rows,
                        join,
                    });
                }
                Bytes::from(join(&pieces)?)
            }
        };
        Ok(Block {
            data,
            compression: Compression::Deflate,
            rows: block.rows,
        })
    }

    async fn record(&mut self) -> Result<Option<Self>, PipelineError> {
        let chain = self.queue.load_chain(&self.record.id);
        if chain.create(self.version + 1, &self.record).await? == Conditional::Written {
            self.version += 1;
            return Ok(None);
        }
        match self.queue.load_record(&self.record.id).await? {
            Some((theirs, _)) if theirs.done => Err(PipelineError::LoadRaced {
                load: self.record.id.clone(),
            }),
            Some((record, version)) => Ok(Some(TableLoad {
                queue: self.queue,
                record,
                version,
            })),
            None => Err(PipelineError::LoadRaced {
                load: self.record.id.clone(),
            }),
        }
    }

    async fn check_open(&self) -> Result<(), PipelineError> {
        // Recording a session is a compare-and-swap on the version read: a stale view cannot
        // record one, and a session it opened is never used (it expires uncommitted).
        Ok(())
    }

    fn unknown(&self, d: usize, upload_id: String, status: String, table: &str) -> PipelineError {
        let batches = self
            .record
            .batches
            .iter()
            .map(|b| {
                format!(
                    "{} {}-{} [{}, {})",
                    b.cluster, b.topic, b.partition, b.start, b.end
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        PipelineError::LoadCommitUnknown(Box::new(LoadCommitUnknown {
            load: self.record.id.clone(),
            table: table.to_owned(),
            upload_id,
            status,
            destination: self.record.destinations[d].partition.clone(),
            batches,
        }))
    }
}

#[cfg(test)]
mod tests;
