//! Which staged batches a new load may claim (`docs/architecture.md`, "Staging and loading"):
//! a table's pending batches are read with their commit-log entries and intents; those loaded,
//! abandoned or claimed elsewhere are settled on the way (L1, L2), and a batch a release before
//! loads opened a session for is loaded on its own (L4). Part of the loader (`loader.rs`).

use futures_util::StreamExt as _;

use super::super::commit::{CommitLog, Intent, LogScope, Pending, TableQueue};
use super::super::load::{self, BatchLoad};
use super::{BUCKET_CONCURRENCY, Loader, cleanup};
use crate::error::PipelineError;

impl Loader<'_> {
    /// The table's staged batches free to claim, with their intents. Batches loaded but not
    /// cleaned up, or claimed by a load fixed without them, are settled on the way (L1, L2);
    /// a batch a release before loads opened a session for is loaded on its own (L4).
    pub(super) async fn candidates(
        &self,
        queue: &TableQueue,
        pending: Vec<Pending>,
    ) -> Result<Vec<(Pending, (Intent, String))>, PipelineError> {
        let checked = futures_util::stream::iter(pending)
            .map(|p| self.candidate(queue, p))
            .buffer_unordered(BUCKET_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        let mut out = Vec::with_capacity(checked.len());
        for c in checked {
            if let Some(c) = c? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// One staged batch's part of [`Loader::candidates`]: `Some` when it is free to claim.
    async fn candidate(
        &self,
        queue: &TableQueue,
        p: Pending,
    ) -> Result<Option<(Pending, (Intent, String))>, PipelineError> {
        let log = CommitLog::new(queue.staging().clone(), LogScope::parse(&p.batch.cluster));
        let tp = p.batch.tp();
        match log.entry(&tp, p.batch.start).await? {
            // Still being staged: its entry comes, or a later run resumes its intent.
            None => return Ok(None),
            Some(e) if !e.staged => {
                queue.remove(&p.batch).await?;
                return Ok(None);
            }
            Some(_) => {}
        }
        let Some((mut intent, mut tag)) = log.intent(&tp, p.batch.start).await? else {
            // Loaded; the cleanup after its load was cut short.
            queue.remove(&p.batch).await?;
            return Ok(None);
        };
        if let Some(id) = intent.load.clone() {
            match queue.load_record(&id).await? {
                Some((r, _)) if r.fixed && !r.batches.contains(&p.batch) => {
                    // Claimed by a load fixed without it: free it (L2).
                    intent.load = None;
                    match log.update_intent(&intent, &tag).await? {
                        Some(t) => tag = t,
                        None => return Ok(None),
                    }
                }
                Some((r, _)) if r.done => {
                    cleanup(queue, &log, &p.batch, &r).await;
                    return Ok(None);
                }
                // In flight in another loader (created after this one listed the loads).
                Some(_) => return Ok(None),
                None => {
                    // Its load is done and its record deleted (records go last).
                    log.delete_intent(&tp, p.batch.start).await;
                    queue.remove(&p.batch).await?;
                    return Ok(None);
                }
            }
        }
        if intent.has_own_session() {
            self.load_alone(queue, &log, &p, intent, tag).await?;
            return Ok(None);
        }
        Ok(Some((p, (intent, tag))))
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
        let (work, _) = load::load(load::LoadTo::of(self, queue), work).await?;
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
}
