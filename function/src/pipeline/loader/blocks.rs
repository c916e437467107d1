//! What a load writes (`docs/architecture.md`, "Staging and loading"): the plan that joins a
//! table's staged blocks into Tunnel blocks of at least `[load] block_bytes`, and the load as
//! `load.rs`'s session logic sees it — its destinations, its blocks' bodies (read back from the
//! bucket as they are sent and joined without recompressing, `body.rs`), and its record written
//! as the next version.

use super::super::commit::{
    Intent, LoadBlock, LoadDestination, LoadRecord, SessionRecord, TableQueue,
};
use super::super::load::Loading;
use super::body::StagedBody;
use crate::error::{LoadCommitUnknown, PipelineError};
use crate::staging::{Conditional, Staging};

/// Per destination partition (in first-seen order), the staged blocks of `intents` joined into
/// blocks of at least `block_bytes` uncompressed bytes: a block closes once it reaches the size,
/// so every block but a destination's last is at least that large and at most one staged block
/// (`[limits] block_bytes`) larger. MaxCompute recommends blocks over 64 MB
/// (`docs/architecture.md`, "Tunnel quotas"); a block staged without join data goes alone.
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
                // The open block takes the piece while it is still under the size and every
                // piece in it can be joined with it: joinable, in the same compression (a config
                // change or a rolling deploy stages batches in another).
                let fits = match (size, o.blocks.last()) {
                    (Some(_), Some(last)) => {
                        last.pieces
                            .iter()
                            .all(|p| p.join.is_some() && p.compression == piece.compression)
                            && raw[d] < block_bytes
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
                    raw[d] = size.unwrap_or(u64::MAX);
                }
            }
        }
    }
    out
}

/// A load as the session logic sees it.
#[derive(Debug)]
pub(super) struct TableLoad<'a> {
    pub(super) queue: &'a TableQueue,
    pub(super) record: LoadRecord,
    pub(super) version: u32,
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

    fn body(&self, d: usize, i: usize) -> Result<StagedBody<Staging>, PipelineError> {
        let block = &self.record.destinations[d].blocks[i];
        let staging = self.queue.staging().clone();
        Ok(StagedBody::new(staging, block.pieces.clone())?)
    }

    async fn missing(&self, key: String) -> PipelineError {
        // Another loader finished the load and cleaned up while this one was still reading (a
        // lost race, nothing to report), or something deleted staged objects (corrupt).
        match self.queue.load_record(&self.record.id).await {
            Ok(Some((theirs, _))) if !theirs.done => PipelineError::Corrupt {
                key,
                reason: "a staged block of a load in flight is missing; a lifecycle rule on staged/ may be shorter than the longest a batch waits for its load".into(),
            },
            Ok(_) => PipelineError::LoadRaced {
                load: self.record.id.clone(),
            },
            Err(e) => e,
        }
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
