//! The load stage: one Tunnel upload session per (batch, destination partition), recorded in the
//! intent before any block is sent (invariant 3). A retry resumes the recorded session: a
//! `CLOSED` session is already committed, a `NORMAL` one gets its blocks again (a re-PUT replaces a
//! block) and is committed; only an expired or cancelled uncommitted session is replaced.
//! Blocks are read back from the staging bucket one ahead of the upload, so memory stays at two
//! blocks.

use crate::error::PipelineError;
use crate::fault;
use crate::maxcompute::{Block, Compression, MaxComputeClient, PartitionSpec, UploadSession};
use crate::pipeline::commit::{CommitLog, Intent};
use crate::staging::Conditional;

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
        // Resume the recorded session if it can still commit.
        let mut session: Option<UploadSession> = None;
        if let Some(id) = intent.destinations[d].upload_id.clone() {
            let s = client
                .reload_upload_session(table, partition.as_ref(), &id)
                .await?;
            if s.is_committed() {
                tracing::info!(upload_id = %id, partition = %intent.destinations[d].partition, "session already committed");
                report.sessions_resumed += 1;
                continue;
            }
            if s.status == "NORMAL" {
                report.sessions_resumed += 1;
                session = Some(s);
            } else {
                tracing::warn!(upload_id = %id, status = %s.status, "recorded session cannot commit; opening a new one");
            }
        }
        let session = match session {
            Some(s) => s,
            None => {
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
                match log.update_intent(&intent, &etag).await? {
                    Conditional::Written => {}
                    Conditional::Conflict => {
                        // Another invocation recorded a session first: ours is never used (it
                        // expires uncommitted). Continue with theirs.
                        let (theirs, their_etag) = log
                            .intent(&tp, intent.batch.start)
                            .await?
                            .ok_or_else(|| PipelineError::Corrupt {
                                key: format!("intent of {tp} at {}", intent.batch.start),
                                reason: "vanished during an update".into(),
                            })?;
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
                let (fresh, fresh_etag) =
                    log.intent(&tp, intent.batch.start).await?.ok_or_else(|| {
                        PipelineError::Corrupt {
                            key: format!("intent of {tp} at {}", intent.batch.start),
                            reason: "vanished after an update".into(),
                        }
                    })?;
                intent = fresh;
                etag = fresh_etag;
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
        client.commit_upload(&session, &ids).await?;
        tracing::info!(upload_id = %session.id, partition = %dest.partition, rows = dest.rows, "session committed");
        fault::point("after-maxcompute-commit");
    }
    Ok((intent, report))
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
