//! The load stage's sessions: one Tunnel upload session per destination partition of what is
//! loaded, recorded before any block is sent (invariant 3 in `docs/architecture.md`). What is
//! loaded is a [`Loading`]: a load record (many staged batches of one table, `loader.rs`), or the
//! intent of a batch that a release before loads had already opened a session for
//! ([`BatchLoad`], L4). A retry resumes the recorded session: a `CLOSED` session is already
//! committed, a `NORMAL` one gets its blocks again (a re-PUT replaces a block) and is committed;
//! only a session whose status proves it holds no rows is replaced. A block is read from the
//! bucket while it is sent (`loader/body.rs`), so memory stays at about two staged pieces.

use std::future::Future;
use std::sync::Arc;

use futures_util::StreamExt as _;

use crate::error::{CommitUnknown, PipelineError};
use crate::fault;
use crate::maxcompute::{
    MaxComputeClient, MaxComputeError, PartitionSpec, SessionState, UploadSession,
};
use crate::pipeline::commit::{CommitLog, Intent, SessionRecord, TableQueue};
use crate::pipeline::loader::{BodyFailure, Loader, StagedBody};
use crate::staging::Staging;

/// What loading did.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoadReport {
    pub(crate) sessions_opened: u32,
    pub(crate) sessions_resumed: u32,
    pub(crate) blocks_uploaded: u32,
    pub(crate) partitions_created: u32,
}

/// What the session logic loads: destinations, each with its recorded session and its blocks,
/// kept in a version chain (an intent or a load record).
pub(crate) trait Loading: Sized + Send + Sync {
    /// How many destination partitions.
    fn destinations(&self) -> usize;
    /// Destination `d` in Tunnel form (empty for an unpartitioned table).
    fn partition(&self, d: usize) -> &str;
    fn session(&self, d: usize) -> &SessionRecord;
    fn session_mut(&mut self, d: usize) -> &mut SessionRecord;
    /// The Tunnel block ids of destination `d`, in upload order.
    fn block_ids(&self, d: usize) -> Vec<u32>;
    /// Block `i` of destination `d`: its body, read from the bucket as it is sent.
    fn body(&self, d: usize, i: usize) -> Result<StagedBody<Staging>, PipelineError>;
    /// The error for a staged block of this work that is gone from the bucket.
    fn missing(&self, key: String) -> impl Future<Output = PipelineError> + Send;
    /// Records the change made to the sessions as the next version. `None`: ours is in force;
    /// otherwise another invocation changed it first, and this is theirs as stored.
    fn record(&mut self) -> impl Future<Output = Result<Option<Self>, PipelineError>> + Send;
    /// Fails when no session may be opened any more (what it loads is committed already).
    fn check_open(&self) -> impl Future<Output = Result<(), PipelineError>> + Send;
    /// The `commit-unknown` stop for destination `d`'s session.
    fn unknown(&self, d: usize, upload_id: String, status: String, table: &str) -> PipelineError;
}

fn spec(partition: &str) -> Result<Option<PartitionSpec>, PipelineError> {
    if partition.is_empty() {
        Ok(None)
    } else {
        Ok(Some(
            PartitionSpec::parse(partition).map_err(MaxComputeError::from)?,
        ))
    }
}

/// Where a load goes and how it sends.
#[derive(Clone, Copy)]
pub(crate) struct LoadTo<'a> {
    pub(crate) client: &'a MaxComputeClient,
    pub(crate) table: &'a str,
    /// Create a destination partition that does not exist yet.
    pub(crate) create_partitions: bool,
    /// `load.parallel_blocks`: blocks of one session sent at once.
    pub(crate) parallel_blocks: usize,
}

impl<'a> LoadTo<'a> {
    /// Where the load of `queue`'s table goes, with `loader`'s settings.
    pub(crate) fn of(loader: &'a Loader<'_>, queue: &'a TableQueue) -> Self {
        LoadTo {
            client: loader.maxcompute,
            table: queue.table(),
            create_partitions: loader.create_partitions,
            parallel_blocks: loader.settings.parallel_blocks,
        }
    }
}

/// Loads every destination of `work` into `to.table` and leaves it committed in MaxCompute.
/// Returns the work as finally recorded.
pub(crate) async fn load<L: Loading>(
    to: LoadTo<'_>,
    mut work: L,
) -> Result<(L, LoadReport), PipelineError> {
    let LoadTo {
        client,
        table,
        create_partitions,
        parallel_blocks,
    } = to;
    let mut report = LoadReport::default();
    for d in 0..work.destinations() {
        let partition = spec(work.partition(d))?;
        // Resume the recorded session if it can still commit (docs/reliability.md, "Session
        // status": only a status that proves the session holds no rows lets a new one open).
        let mut session: Option<UploadSession> = None;
        if let Some(id) = work.session(d).upload_id.clone() {
            let recorded = work.session(d);
            if recorded.settled_committed {
                tracing::info!(upload_id = %id, partition = %work.partition(d), "session settled as committed by hand");
                report.sessions_resumed += 1;
                continue;
            }
            let s = client
                .reload_upload_session(table, partition.as_ref(), &id)
                .await?;
            match s.state() {
                SessionState::Committed => {
                    tracing::info!(upload_id = %id, partition = %work.partition(d), "session already committed");
                    report.sessions_resumed += 1;
                    continue;
                }
                SessionState::Open => {
                    report.sessions_resumed += 1;
                    session = Some(s);
                }
                SessionState::Committing => {
                    // Committed or about to be: a second session would load the rows twice.
                    return Err(MaxComputeError::CommitInProgress { upload_id: id }.into());
                }
                SessionState::Canceled => {
                    tracing::warn!(upload_id = %id, status = %s.status, "recorded session was cancelled; opening a new one");
                }
                SessionState::Unknown if !recorded.commit_requested => {
                    // No commit was ever requested for it, so it holds no rows.
                    tracing::warn!(upload_id = %id, status = %s.status, "recorded session can no longer commit and never was asked to; opening a new one");
                }
                SessionState::Unknown => return Err(work.unknown(d, id, s.status, table)),
            }
        }
        let session = match session {
            Some(s) => s,
            None => {
                work.check_open().await?;
                if create_partitions
                    && let Some(p) = &partition
                    && !client.partition_exists(table, p).await?
                {
                    client.create_partition_if_not_exists(table, p).await?;
                    report.partitions_created += 1;
                }
                let s = client
                    .create_upload_session(table, partition.as_ref(), false)
                    .await?;
                report.sessions_opened += 1;
                let recorded = work.session_mut(d);
                recorded.upload_id = Some(s.id.clone());
                recorded.commit_requested = false;
                if let Some(theirs) = work.record().await? {
                    // Another invocation recorded a session first: ours is never used (it
                    // expires uncommitted). Continue with theirs.
                    tracing::info!(abandoned = %s.id, "a racing invocation recorded its session first");
                    let opened = report.sessions_opened;
                    return Box::pin(load(to, theirs)).await.map(|(w, mut r)| {
                        r.sessions_opened += opened;
                        (w, r)
                    });
                }
                fault::point("after-session-open");
                s
            }
        };
        let sent = send_blocks(client, &session, &work, d, parallel_blocks).await?;
        report.blocks_uploaded += sent.len() as u32;
        if !work.session(d).commit_requested {
            // Recorded before the first commit request: from here on an unknown status cannot
            // be taken for "never committed".
            work.session_mut(d).commit_requested = true;
            if let Some(theirs) = work.record().await? {
                tracing::info!("a racing invocation changed the record; resuming from it");
                return Box::pin(load(to, theirs)).await;
            }
        }
        fault::point("before-maxcompute-commit");
        client.commit_upload(&session, &sent).await?;
        tracing::info!(upload_id = %session.id, partition = %work.partition(d), blocks = sent.len(), "session committed");
        fault::point("after-maxcompute-commit");
    }
    Ok((work, report))
}

/// Sends every block of destination `d` into `session`, up to `parallel` at once (the Tunnel
/// writes one block at about 10 MB/s: `docs/maxcompute-protocol.md` §5), and returns their ids
/// in block order; when a block failed because a racing invocation committed the session
/// meanwhile, the ids sent before it (the commit then finds the session committed). A block
/// failing for its body (a staged piece gone or unreadable) fails as what it is; the blocks
/// still in flight are dropped with it (the session commits only once every block went whole,
/// and a block sent again replaces what the Tunnel kept of it).
async fn send_blocks<L: Loading>(
    client: &MaxComputeClient,
    session: &UploadSession,
    work: &L,
    d: usize,
    parallel: usize,
) -> Result<Vec<u32>, PipelineError> {
    let ids = work.block_ids(d);
    let mut uploads = futures_util::stream::iter(ids.iter().enumerate())
        .map(|(i, &id)| async move {
            // The body reads its staged pieces only once it is sent.
            let body = Arc::new(work.body(d, i)?);
            let compression = body.compression();
            let uploaded = client
                .upload_body(session, id, body.clone(), compression)
                .await;
            Ok::<_, PipelineError>((id, body, uploaded))
        })
        .buffered(parallel.max(1));
    let mut sent = Vec::with_capacity(ids.len());
    while let Some(next) = uploads.next().await {
        let (id, body, uploaded) = next?;
        if let Err(err) = uploaded {
            // The body's own failure, not the Tunnel's (`loader/body.rs`).
            match body.failure() {
                Some(BodyFailure::Missing { key }) => return Err(work.missing(key).await),
                Some(BodyFailure::Staging(e)) => return Err(e.into()),
                Some(BodyFailure::Join(e)) => return Err(e.into()),
                None => {}
            }
            let now = client
                .reload_upload_session(&session.table, session.partition.as_ref(), &session.id)
                .await?;
            if now.is_committed() {
                tracing::info!(upload_id = %session.id, "session committed by another invocation");
                return Ok(sent);
            }
            return Err(err.into());
        }
        sent.push(id);
        fault::point("after-block");
    }
    Ok(sent)
}

/// The table `intent` loads into: the one its blocks were encoded for (a rolling deploy may
/// have changed the config's since it was fixed). Another project cannot be reached with this
/// config's client: an error that says how to finish the batch.
pub(crate) fn target_table(
    intent: &Intent,
    mc: &k2mc_formats::config::MaxComputeConfig,
) -> Result<String, PipelineError> {
    if let Some(project) = intent.project.as_deref().filter(|p| *p != mc.project) {
        return Err(PipelineError::ProjectChanged {
            topic: intent.batch.topic.clone(),
            partition: intent.batch.partition,
            start: intent.batch.start,
            fixed: project.to_owned(),
            configured: mc.project.clone(),
        });
    }
    let table = intent.table.clone().unwrap_or_else(|| mc.table.clone());
    if table != mc.table {
        tracing::warn!(%table, configured = %mc.table, "resuming a batch fixed for another table; it loads there");
    }
    Ok(table)
}

/// A batch loaded on its own, in the sessions its intent records (an intent a release before
/// loads opened a session for; `docs/architecture.md`, "Staging and loading", L4).
#[derive(Debug)]
pub(crate) struct BatchLoad<'a> {
    pub(crate) log: &'a CommitLog,
    pub(crate) intent: Intent,
    /// The version the intent was read at.
    pub(crate) tag: String,
}

impl Loading for BatchLoad<'_> {
    fn destinations(&self) -> usize {
        self.intent.destinations.len()
    }

    fn partition(&self, d: usize) -> &str {
        &self.intent.destinations[d].partition
    }

    fn session(&self, d: usize) -> &SessionRecord {
        &self.intent.destinations[d].session
    }

    fn session_mut(&mut self, d: usize) -> &mut SessionRecord {
        &mut self.intent.destinations[d].session
    }

    fn block_ids(&self, d: usize) -> Vec<u32> {
        self.intent.destinations[d]
            .blocks
            .iter()
            .map(|b| b.id)
            .collect()
    }

    fn body(&self, d: usize, i: usize) -> Result<StagedBody<Staging>, PipelineError> {
        let staged = self.intent.destinations[d].blocks[i].clone();
        Ok(StagedBody::new(self.log.staging().clone(), vec![staged])?)
    }

    async fn missing(&self, key: String) -> PipelineError {
        // Corruption: the bucket lost what an intent names.
        PipelineError::Corrupt {
            key,
            reason: "a staged block of an intent is missing; a lifecycle rule on staged/ may be shorter than the longest a batch waits for its load".into(),
        }
    }

    async fn record(&mut self) -> Result<Option<Self>, PipelineError> {
        if let Some(tag) = self.log.update_intent(&self.intent, &self.tag).await? {
            self.tag = tag;
            return Ok(None);
        }
        let batch = &self.intent.batch;
        let tp = batch.tp();
        match self.log.intent(&tp, batch.start).await? {
            Some((intent, tag)) => Ok(Some(BatchLoad {
                log: self.log,
                intent,
                tag,
            })),
            // Intents are deleted once their batch is committed.
            None if self.log.entry(&tp, batch.start).await?.is_some() => {
                Err(PipelineError::LostRace {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    start: batch.start,
                })
            }
            None => Err(PipelineError::Corrupt {
                key: format!("intent of {tp} at {}", batch.start),
                reason: "vanished during an update, and its batch is not committed".into(),
            }),
        }
    }

    async fn check_open(&self) -> Result<(), PipelineError> {
        // A batch whose entry exists is committed, whatever this invocation's view of its
        // intent: never open a session for it (a zombie that planned from a stale position, or
        // an intent read before another invocation committed).
        let batch = &self.intent.batch;
        if self.log.entry(&batch.tp(), batch.start).await?.is_some() {
            return Err(PipelineError::LostRace {
                topic: batch.topic.clone(),
                partition: batch.partition,
                start: batch.start,
            });
        }
        Ok(())
    }

    fn unknown(&self, d: usize, upload_id: String, status: String, table: &str) -> PipelineError {
        let batch = &self.intent.batch;
        PipelineError::CommitUnknown(Box::new(CommitUnknown {
            topic: batch.topic.clone(),
            partition: batch.partition,
            start: batch.start,
            end: batch.end,
            scope: batch.cluster.clone(),
            upload_id,
            status,
            table: table.to_owned(),
            destination: self.intent.destinations[d].partition.clone(),
        }))
    }
}
