//! Intents in the staging bucket: fixed once, then changed only by create-only writes
//! (`docs/architecture.md`, "The commit log"). An intent is a chain of versions:
//! `intents/<scope>/<topic>/<partition>/<start:020>.json` is version 0, and each change (a
//! session recorded, a commit requested, a settlement) creates the next version
//! `<start:020>.v<n:04>.json`. Of two invocations changing the same version exactly one creates
//! the next, the compare-and-swap that `If-Match` would give, built only from the create-only
//! write that both S3 (`If-None-Match: *`) and OSS (`x-oss-forbid-overwrite`) document; OSS does
//! not document `If-Match` on PutObject, so nothing here relies on it.

use super::versions::Chain;
use super::{CommitLog, Intent, LogScope, TopicPartition, corrupt};
use crate::error::PipelineError;
use crate::fault;
use crate::staging::Conditional;

/// The version chain of the intent of the batch at `start`.
fn chain<'a>(log: &'a CommitLog, tp: &TopicPartition, start: i64) -> Chain<'a> {
    Chain::new(&log.staging, base(&log.scope, tp, start))
}

fn base(scope: &LogScope, tp: &TopicPartition, start: i64) -> String {
    format!("intents/{scope}/{}/{}/{start:020}", tp.topic, tp.partition)
}

/// The version an intent was read at, as the opaque tag callers hand back to change it.
fn tag(version: u32) -> String {
    format!("v{version}")
}

fn version_of(tag: &str) -> Option<u32> {
    tag.strip_prefix('v')?.parse().ok()
}

impl CommitLog {
    /// The intent of the batch starting at `start` as last changed, with the tag of that
    /// version (for [`CommitLog::update_intent`]).
    pub async fn intent(
        &self,
        tp: &TopicPartition,
        start: i64,
    ) -> Result<Option<(Intent, String)>, PipelineError> {
        Ok(chain(self, tp, start)
            .last::<Intent>()
            .await?
            .map(|(intent, v)| (intent, tag(v))))
    }

    /// Creates an intent; `Conflict` means another invocation fixed this batch first.
    pub async fn create_intent(&self, intent: &Intent) -> Result<Conditional, PipelineError> {
        chain(self, &intent.batch.tp(), intent.batch.start)
            .create(0, intent)
            .await
    }

    /// Changes an intent read at version `tag`: creates the next version. Returns its tag, or
    /// `None` when another invocation changed that version first (read theirs).
    pub async fn update_intent(
        &self,
        intent: &Intent,
        tag_read: &str,
    ) -> Result<Option<String>, PipelineError> {
        let chain = chain(self, &intent.batch.tp(), intent.batch.start);
        let read = version_of(tag_read).ok_or_else(|| {
            corrupt(
                &chain.key(0),
                format!("'{tag_read}' is not an intent version"),
            )
        })?;
        Ok(match chain.create(read + 1, intent).await? {
            Conditional::Written => Some(tag(read + 1)),
            Conditional::Conflict => None,
        })
    }

    /// Deletes every version of a batch's intent once it is no longer needed (its entry, or its
    /// load, holds all of it). Best effort: a version left behind is never read without the
    /// first (and a batch whose entry exists never loads again).
    pub async fn delete_intent(&self, tp: &TopicPartition, start: i64) {
        chain(self, tp, start).delete().await;
    }

    /// Deletes what `ours` staged that `theirs` (the intent in force) does not name: an attempt
    /// that lost the race to fix the batch. Best effort: a leftover is never named by an intent
    /// or a log entry, so nothing loads or lists it; the bucket's lifecycle rule removes it.
    /// (When the conflict was the SDK retrying our own create, `theirs` is ours and names all.)
    async fn discard_unnamed(&self, ours: &Intent, theirs: &Intent) {
        let named: std::collections::HashSet<&str> = theirs.staged_keys().collect();
        for key in ours.staged_keys().filter(|k| !named.contains(k)) {
            if let Err(err) = self.staging.delete(key).await {
                tracing::warn!(key, error = %err, "could not delete an unused staged object");
            }
        }
    }

    /// Creates the intent of a new batch, or adopts the one a racing or crashed invocation fixed
    /// first (invariant 3); returns the intent in force with its version tag.
    pub async fn fix(&self, intent: &Intent) -> Result<(Intent, String), PipelineError> {
        let tp = intent.batch.tp();
        let start = intent.batch.start;
        if self.create_intent(intent).await? == Conditional::Written {
            fault::point("after-intent");
            return Ok((intent.clone(), tag(0)));
        }
        let Some((found, tag)) = self.intent(&tp, start).await? else {
            // Intents are deleted once their batch is committed: a racing invocation did.
            if self.entry(&tp, start).await?.is_some() {
                return Err(PipelineError::LostRace {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    start,
                });
            }
            return Err(corrupt(
                &chain(self, &tp, start).key(0),
                "missing right after it was written",
            ));
        };
        tracing::info!(
            theirs_end = found.batch.end,
            ours_end = intent.batch.end,
            "adopting the intent another invocation fixed"
        );
        self.discard_unnamed(intent, &found).await;
        Ok((found, tag))
    }
}
