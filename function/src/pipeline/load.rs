//! The load stage: one Tunnel upload session per (batch, destination partition), recorded in the
//! intent before any block is sent (invariant 3). A retry resumes the recorded session: a
//! `CLOSED` session is already committed, a `NORMAL` one gets its blocks again (a re-PUT replaces a
//! block) and is committed; only an expired or cancelled uncommitted session is replaced.
//! Blocks are read back from the staging bucket one ahead of the upload, so memory stays at two
//! blocks.

use crate::error::{CommitUnknown, PipelineError};
use crate::fault;
use crate::maxcompute::{
    Block, Compression, MaxComputeClient, MaxComputeError, PartitionSpec, SessionState,
    UploadSession,
};
use crate::pipeline::commit::{CommitLog, Intent};

/// What loading a batch did.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoadReport {
    pub(crate) sessions_opened: u32,
    pub(crate) sessions_resumed: u32,
    pub(crate) blocks_uploaded: u32,
    pub(crate) partitions_created: u32,
}

fn spec(partition: &str) -> Result<Option<PartitionSpec>, PipelineError> {
    if partition.is_empty() {
        Ok(None)
    } else {
        Ok(Some(
            PartitionSpec::parse(partition).map_err(crate::maxcompute::MaxComputeError::from)?,
        ))
    }
}

/// Loads every destination of `intent` (re-read with `etag`) and leaves it committed in
/// MaxCompute. Returns the intent as finally recorded.
pub(crate) async fn load(
    client: &MaxComputeClient,
    log: &CommitLog,
    table: &str,
    create_partitions: bool,
    mut intent: Intent,
    mut etag: String,
) -> Result<(Intent, LoadReport), PipelineError> {
    let mut report = LoadReport::default();
    let tp = intent.batch.tp();
    for d in 0..intent.destinations.len() {
        let partition = spec(&intent.destinations[d].partition)?;
        // Resume the recorded session if it can still commit (docs/reliability.md, "Session
        // status": only a status that proves the session holds no rows lets a new one open).
        let mut session: Option<UploadSession> = None;
        if let Some(id) = intent.destinations[d].upload_id.clone() {
            let dest = &intent.destinations[d];
            if dest.settled_committed {
                tracing::info!(upload_id = %id, partition = %dest.partition, "session settled as committed by hand");
                report.sessions_resumed += 1;
                continue;
            }
            let s = client
                .reload_upload_session(table, partition.as_ref(), &id)
                .await?;
            match s.state() {
                SessionState::Committed => {
                    tracing::info!(upload_id = %id, partition = %dest.partition, "session already committed");
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
                SessionState::Unknown if !dest.commit_requested => {
                    // No commit was ever requested for it, so it holds no rows.
                    tracing::warn!(upload_id = %id, status = %s.status, "recorded session can no longer commit and never was asked to; opening a new one");
                }
                SessionState::Unknown => {
                    return Err(PipelineError::CommitUnknown(Box::new(CommitUnknown {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        start: intent.batch.start,
                        end: intent.batch.end,
                        scope: intent.batch.cluster.clone(),
                        upload_id: id,
                        status: s.status,
                        table: table.to_owned(),
                        destination: dest.partition.clone(),
                    })));
                }
            }
        }
        let session = match session {
            Some(s) => s,
            None => {
                // A batch whose entry exists is committed, whatever this invocation's view of
                // its intent: never open a session for it (a zombie that planned from a stale
                // position, or an intent read before another invocation committed).
                if log.entry(&tp, intent.batch.start).await?.is_some() {
                    return Err(PipelineError::LostRace {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        start: intent.batch.start,
                    });
                }
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
                intent.destinations[d].upload_id = Some(s.id.clone());
                intent.destinations[d].commit_requested = false;
                match record(log, &mut intent, &mut etag).await? {
                    None => {}
                    Some((theirs, their_etag)) => {
                        // Another invocation recorded a session first: ours is never used (it
                        // expires uncommitted). Continue with theirs.
                        tracing::info!(abandoned = %s.id, "a racing invocation recorded its session first");
                        return Box::pin(load(
                            client,
                            log,
                            table,
                            create_partitions,
                            theirs,
                            their_etag,
                        ))
                        .await
                        .map(|(i, mut r)| {
                            r.sessions_opened += report.sessions_opened;
                            (i, r)
                        });
                    }
                }
                fault::point("after-session-open");
                s
            }
        };
        let dest = &intent.destinations[d];
        let mut ids = Vec::with_capacity(dest.blocks.len());
        // Each block is read back from the bucket while the one before it uploads.
        let mut next = match dest.blocks.first() {
            Some(first) => Some(staged_block(log, &first.key).await?),
            None => None,
        };
        for (i, block) in dest.blocks.iter().enumerate() {
            let Some(data) = next.take() else { break };
            let block_data = Block {
                data,
                compression: Compression::Deflate,
                rows: block.rows,
            };
            let ahead = async {
                match dest.blocks.get(i + 1) {
                    Some(b) => staged_block(log, &b.key).await.map(Some),
                    None => Ok(None),
                }
            };
            let (uploaded, read_ahead) =
                tokio::join!(client.upload_block(&session, block.id, &block_data), ahead);
            if let Err(err) = uploaded {
                // A racing invocation may have committed this recorded session meanwhile.
                let now = client
                    .reload_upload_session(table, partition.as_ref(), &session.id)
                    .await?;
                if now.is_committed() {
                    tracing::info!(upload_id = %session.id, "session committed by another invocation");
                    break;
                }
                return Err(err.into());
            }
            next = read_ahead?;
            report.blocks_uploaded += 1;
            ids.push(block.id);
            fault::point("after-block");
        }
        if !intent.destinations[d].commit_requested {
            // Recorded before the first commit request: from here on an unknown status cannot
            // be taken for "never committed".
            intent.destinations[d].commit_requested = true;
            if let Some((theirs, their_etag)) = record(log, &mut intent, &mut etag).await? {
                tracing::info!("a racing invocation changed the intent; resuming from it");
                return Box::pin(load(
                    client,
                    log,
                    table,
                    create_partitions,
                    theirs,
                    their_etag,
                ))
                .await;
            }
        }
        fault::point("before-maxcompute-commit");
        client.commit_upload(&session, &ids).await?;
        let dest = &intent.destinations[d];
        tracing::info!(upload_id = %session.id, partition = %dest.partition, rows = dest.rows, "session committed");
        fault::point("after-maxcompute-commit");
    }
    Ok((intent, report))
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

/// Records `intent` as the next version of the one read at `etag` (create-only, so of two
/// invocations exactly one records its change). `None`: ours is in force and `etag` is its
/// version now; otherwise another invocation changed the intent first, and this is theirs, as
/// stored (the sessions and flags loaded from are always the stored ones).
async fn record(
    log: &CommitLog,
    intent: &mut Intent,
    etag: &mut String,
) -> Result<Option<(Intent, String)>, PipelineError> {
    if let Some(tag) = log.update_intent(intent, etag).await? {
        *etag = tag;
        return Ok(None);
    }
    let tp = intent.batch.tp();
    match log.intent(&tp, intent.batch.start).await? {
        Some(theirs) => Ok(Some(theirs)),
        // Intents are deleted once their batch is committed.
        None if log.entry(&tp, intent.batch.start).await?.is_some() => {
            Err(PipelineError::LostRace {
                topic: tp.topic.clone(),
                partition: tp.partition,
                start: intent.batch.start,
            })
        }
        None => Err(PipelineError::Corrupt {
            key: format!("intent of {tp} at {}", intent.batch.start),
            reason: "vanished during an update, and its batch is not committed".into(),
        }),
    }
}

/// A staged block's bytes; missing is corruption (the bucket lost what an intent names).
async fn staged_block(log: &CommitLog, key: &str) -> Result<bytes::Bytes, PipelineError> {
    let obj = log
        .staging()
        .get(key)
        .await?
        .ok_or_else(|| PipelineError::Corrupt {
            key: key.to_owned(),
            reason: "a staged block of an intent is missing; the staging bucket lifecycle rule may be too short".into(),
        })?;
    Ok(obj.data)
}
