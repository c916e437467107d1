//! The commit stage: the commit log and intents in the staging bucket, the single authority on
//! progress (invariants 2–4 in `docs/architecture.md`). Per topic-partition, an `origin` object fixes where syncing began, and
//! entry objects keyed by their start offset chain forward (`[start, end)`, the next entry's key
//! is this one's `end`). Entries and intents are created with create-only writes, so of two racing
//! invocations exactly one fixes a batch and exactly one commits it. A `head` object is only a
//! hint that saves walking the chain.

use serde::{Deserialize, Serialize};

use crate::error::PipelineError;
use crate::staging::{Conditional, Object, Staging};

mod intent;
mod intents;
mod loads;
mod versions;

pub use intent::{
    BatchId, Counts, Destination, Entry, Intent, Join, ModuleVersion, RecordMark, SessionRecord,
    StagedBlock,
};
pub use k2mc_formats::event::TopicPartition;
pub use k2mc_formats::scope::{LogScope, ScopeKind};
pub use loads::{LoadBlock, LoadDestination, LoadRecord, Pending, TableQueue};

/// Where a partition's log lives.
fn log_dir(scope: &LogScope, tp: &TopicPartition) -> String {
    format!("log/{scope}/{}/{}", tp.topic, tp.partition)
}

fn entry_key(scope: &LogScope, tp: &TopicPartition, start: i64) -> String {
    format!("{}/{start:020}.json", log_dir(scope, tp))
}

/// The marker of a skip of lost offsets starting at `start` (`k2mc status` lists them).
fn skip_key(scope: &LogScope, tp: &TopicPartition, start: i64) -> String {
    format!("{}/skipped-{start:020}.json", log_dir(scope, tp))
}

/// The partitions a topic had when its syncing began in a scope (`started.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Started {
    partitions: Vec<i32>,
}

/// Where syncing of a partition began (`origin.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct OriginRecord {
    offset: i64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Head {
    start: i64,
}

/// A partition's progress as the log says.
#[derive(Debug, Clone, Default)]
pub struct Position {
    /// The first offset not yet committed; `None` when the partition was never synced.
    pub next: Option<i64>,
    pub last: Option<Entry>,
}

fn corrupt(key: &str, err: impl std::fmt::Display) -> PipelineError {
    PipelineError::Corrupt {
        key: key.to_owned(),
        reason: err.to_string(),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(key: &str, obj: &Object) -> Result<T, PipelineError> {
    serde_json::from_slice(&obj.data).map_err(|e| corrupt(key, e))
}

fn to_json<T: Serialize>(value: &T) -> bytes::Bytes {
    // Serializing these plain structs cannot fail; fall back to an empty object regardless.
    serde_json::to_vec_pretty(value)
        .unwrap_or_else(|_| b"{}".to_vec())
        .into()
}

/// Reads and writes the logs and intents of one log scope.
#[derive(Debug, Clone)]
pub struct CommitLog {
    staging: Staging,
    scope: LogScope,
}

impl CommitLog {
    /// The log of `scope` in the staging bucket.
    pub fn new(staging: Staging, scope: LogScope) -> Self {
        CommitLog { staging, scope }
    }

    /// The same bucket, another scope.
    pub fn with_scope(&self, scope: LogScope) -> Self {
        CommitLog::new(self.staging.clone(), scope)
    }

    /// The staging bucket the log lives in.
    pub fn staging(&self) -> &Staging {
        &self.staging
    }

    /// Follows the chain from the head hint (or the origin) to its end.
    pub async fn position(&self, tp: &TopicPartition) -> Result<Position, PipelineError> {
        let dir = log_dir(&self.scope, tp);
        let head_key = format!("{dir}/head.json");
        let head = match self.staging.get(&head_key).await? {
            Some(obj) => Some(parse::<Head>(&head_key, &obj)?.start),
            None => None,
        };
        let origin_key = format!("{dir}/origin.json");
        let origin = match self.staging.get(&origin_key).await? {
            Some(obj) => Some(parse::<OriginRecord>(&origin_key, &obj)?.offset),
            None => None,
        };
        // A missing object is never read as "the chain ends here" when the log says otherwise:
        // restarting from the origin (or from `start_from`) would load committed batches again
        // (docs/reliability.md, "State the protocol needs").
        let start = match (head, origin) {
            (None, None) => return Ok(Position::default()),
            (Some(_), None) => {
                return Err(corrupt(
                    &origin_key,
                    "the log has entries but no origin; something deleted log objects (a lifecycle rule on log/?)",
                ));
            }
            (Some(h), Some(_)) => h,
            (None, Some(o)) => o,
        };
        let mut position = Position {
            next: Some(start),
            last: None,
        };
        while let Some(at) = position.next {
            let key = entry_key(&self.scope, tp, at);
            match self.staging.get(&key).await? {
                Some(obj) => {
                    let entry: Entry = parse(&key, &obj)?;
                    if entry.intent.batch.end <= entry.intent.batch.start {
                        return Err(corrupt(&key, "entry does not advance"));
                    }
                    position.next = Some(entry.intent.batch.end);
                    position.last = Some(entry);
                }
                None if head.is_some() && position.last.is_none() => {
                    return Err(corrupt(
                        &key,
                        "the head hint names this entry but it is missing; something deleted log objects (a lifecycle rule on log/?)",
                    ));
                }
                None => break,
            }
        }
        Ok(position)
    }

    /// The entry of the batch starting at `start`, if committed.
    pub async fn entry(
        &self,
        tp: &TopicPartition,
        start: i64,
    ) -> Result<Option<Entry>, PipelineError> {
        let key = entry_key(&self.scope, tp, start);
        match self.staging.get(&key).await? {
            Some(obj) => Ok(Some(parse(&key, &obj)?)),
            None => Ok(None),
        }
    }

    /// The scope this log is kept under.
    pub fn scope(&self) -> &LogScope {
        &self.scope
    }

    /// Fixes where a never-synced partition starts; returns the origin in force (ours or a
    /// racing invocation's).
    pub async fn ensure_origin(
        &self,
        tp: &TopicPartition,
        offset: i64,
    ) -> Result<i64, PipelineError> {
        let key = format!("{}/origin.json", log_dir(&self.scope, tp));
        match self
            .staging
            .create(&key, to_json(&OriginRecord { offset }))
            .await?
        {
            Conditional::Written => Ok(offset),
            Conditional::Conflict => match self.staging.get(&key).await? {
                Some(obj) => Ok(parse::<OriginRecord>(&key, &obj)?.offset),
                None => Err(corrupt(&key, "origin vanished after a conflicting create")),
            },
        }
    }

    /// The partitions `topic` had when its syncing began in this scope: fixed (create-only) the
    /// first time one of its partitions needs an origin, as the partitions that have an origin
    /// already (a log kept by an earlier release) or else all of `current`. A partition not in
    /// it was added later, so everything it holds was written after syncing began
    /// (`docs/reliability.md`, "Partitions added later").
    pub async fn partitions_at_start(
        &self,
        topic: &str,
        current: &[i32],
    ) -> Result<Vec<i32>, PipelineError> {
        let key = format!("log/{}/{topic}/started.json", self.scope);
        if let Some(obj) = self.staging.get(&key).await? {
            return Ok(parse::<Started>(&key, &obj)?.partitions);
        }
        let mut partitions = Vec::new();
        for &p in current {
            let tp = TopicPartition::new(topic, p);
            let origin = format!("{}/origin.json", log_dir(&self.scope, &tp));
            if self.staging.get(&origin).await?.is_some() {
                partitions.push(p);
            }
        }
        if partitions.is_empty() {
            partitions = current.to_vec();
        }
        let started = Started { partitions };
        match self.staging.create(&key, to_json(&started)).await? {
            Conditional::Written => Ok(started.partitions),
            Conditional::Conflict => match self.staging.get(&key).await? {
                Some(obj) => Ok(parse::<Started>(&key, &obj)?.partitions),
                None => Err(corrupt(&key, "vanished after a conflicting create")),
            },
        }
    }

    /// Creates the log entry of a batch (invariant 2) and moves the head hint.
    pub async fn commit(&self, entry: &Entry) -> Result<Conditional, PipelineError> {
        let tp = entry.intent.batch.tp();
        let key = entry_key(&self.scope, &tp, entry.intent.batch.start);
        let outcome = self.staging.create(&key, to_json(entry)).await?;
        if outcome == Conditional::Written {
            let head = format!("{}/head.json", log_dir(&self.scope, &tp));
            // A loaded batch's intent has served its purpose: the entry holds all of it.
            // Deleting it keeps `intents/` to the batches in flight, so no lifecycle rule has to
            // expire intents (one that expired an uncommitted batch's intent would let it load
            // twice). An invocation still holding the old view is stopped by the entry (`load`).
            // A staged batch's intent stays until its load is done (L1).
            if !entry.staged {
                self.delete_intent(&tp, entry.intent.batch.start).await;
            }
            // Advisory: a lost update only makes the next reader walk one more entry.
            if let Err(err) = self
                .staging
                .put(
                    &head,
                    to_json(&Head {
                        start: entry.intent.batch.start,
                    }),
                )
                .await
            {
                tracing::warn!(error = %err, "could not move the commit log head hint");
            }
        }
        Ok(outcome)
    }

    /// Records on purpose that retention deleted `[start, end)` before it was synced
    /// (`k2mc skip-lost`, `docs/reliability.md`, "Offsets lost to retention"): a marker that
    /// `k2mc status` counts, then an entry at `start` that loads nothing and counts the offsets
    /// lost, so the chain stays gapless and says where it skipped. Create-only like every entry:
    /// `Conflict` means a batch at `start` was committed meanwhile (the marker is withdrawn).
    pub async fn skip_lost(
        &self,
        tp: &TopicPartition,
        start: i64,
        end: i64,
        invocation: &str,
    ) -> Result<Conditional, PipelineError> {
        let entry = Entry {
            intent: Intent {
                batch: BatchId {
                    cluster: self.scope.to_string(),
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    start,
                    end,
                },
                counts: Counts {
                    lost: u64::try_from(end - start).unwrap_or(0),
                    ..Counts::default()
                },
                modules: Vec::new(),
                destinations: Vec::new(),
                dead_letters_key: None,
                project: None,
                table: None,
                last_record: None,
                load: None,
            },
            committed_at: chrono::Utc::now().to_rfc3339(),
            invocation: invocation.to_owned(),
            staged: false,
        };
        let marker = skip_key(&self.scope, tp, start);
        if self.staging.create(&marker, to_json(&entry)).await? == Conditional::Conflict {
            return Ok(Conditional::Conflict);
        }
        let outcome = self.commit(&entry).await?;
        if outcome == Conditional::Conflict {
            self.staging.delete(&marker).await?;
        }
        Ok(outcome)
    }

    /// The offsets skipped as lost in `tp`'s log, over all its skips.
    pub async fn lost(&self, tp: &TopicPartition) -> Result<u64, PipelineError> {
        let prefix = format!("{}/skipped-", log_dir(&self.scope, tp));
        let mut lost = 0;
        for key in self.staging.list_all(&prefix).await? {
            if let Some(obj) = self.staging.get(&key).await? {
                lost += parse::<Entry>(&key, &obj)?.intent.counts.lost;
            }
        }
        Ok(lost)
    }
}
