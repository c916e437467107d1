//! The commit stage: the commit log and intents in the staging bucket, the single authority on
//! progress (invariants 2–4 in `docs/architecture.md`). Per topic-partition, an `origin` object fixes where syncing began, and
//! entry objects keyed by their start offset chain forward (`[start, end)`, the next entry's key
//! is this one's `end`). Entries and intents are created with create-only writes, so of two racing
//! invocations exactly one fixes a batch and exactly one commits it. A `head` object is only a
//! hint that saves walking the chain.

use serde::{Deserialize, Serialize};

use crate::error::PipelineError;
use crate::fault;
use crate::staging::{Conditional, Object, Staging};

pub use k2mc_formats::event::TopicPartition;
pub use k2mc_formats::scope::{LogScope, ScopeKind};

/// The identity of a batch (invariant 1): everything staged for it derives from this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchId {
    /// The log scope ([`LogScope`] as text; the field keeps its first name in stored intents).
    pub cluster: String,
    pub topic: String,
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

impl BatchId {
    /// The partition the batch belongs to.
    pub fn tp(&self) -> TopicPartition {
        TopicPartition::new(self.topic.clone(), self.partition)
    }

    fn dir(&self) -> String {
        format!(
            "{}/{}/{}/{:020}-{:020}",
            self.cluster, self.topic, self.partition, self.start, self.end
        )
    }

    /// Key of a staged block of the `dest`-th destination partition.
    pub fn block_key(&self, dest: usize, block: u32) -> String {
        format!("staged/{}/p{dest:04}/{block:05}.blk", self.dir())
    }

    /// Key of the batch's dead letters.
    pub fn dead_letters_key(&self) -> String {
        k2mc_formats::dead_letter::object_key(
            &LogScope::parse(&self.cluster),
            &self.tp(),
            self.start,
            self.end,
        )
    }
}

/// Where a partition's log lives.
fn log_dir(scope: &LogScope, tp: &TopicPartition) -> String {
    format!("log/{scope}/{}/{}", tp.topic, tp.partition)
}

fn entry_key(scope: &LogScope, tp: &TopicPartition, start: i64) -> String {
    format!("{}/{start:020}.json", log_dir(scope, tp))
}

fn intent_key(scope: &LogScope, tp: &TopicPartition, start: i64) -> String {
    format!(
        "intents/{scope}/{}/{}/{start:020}.json",
        tp.topic, tp.partition
    )
}

/// Counts that reconcile a batch: `read = loaded + filtered + dead_lettered` (invariant 9).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub read: u64,
    pub loaded: u64,
    pub filtered: u64,
    pub dead_lettered: u64,
    /// Kafka key and value bytes read.
    pub bytes: u64,
}

impl Counts {
    /// True when every record read is accounted for.
    pub fn reconciles(&self) -> bool {
        self.read == self.loaded + self.filtered + self.dead_lettered
    }
}

/// A transform stage as the batch ran it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleVersion {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

/// One staged block of a destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedBlock {
    pub id: u32,
    pub key: String,
    pub rows: u64,
}

/// Rows of a batch bound for one MaxCompute partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// Tunnel form `k=v,k2=v2`, empty for an unpartitioned table.
    pub partition: String,
    pub rows: u64,
    pub blocks: Vec<StagedBlock>,
    /// The Tunnel session that loads these rows, once opened (invariant 3).
    #[serde(default)]
    pub upload_id: Option<String>,
}

/// What a batch is, fixed before MaxCompute sees any of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub batch: BatchId,
    pub counts: Counts,
    pub modules: Vec<ModuleVersion>,
    pub destinations: Vec<Destination>,
    #[serde(default)]
    pub dead_letters_key: Option<String>,
}

/// A committed batch: its intent as finally recorded (the same JSON fields, flattened), and when
/// and by whom it was committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(flatten)]
    pub intent: Intent,
    /// RFC 3339; informational only (never a cut point).
    pub committed_at: String,
    pub invocation: String,
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
        let mut start = match self.staging.get(&head_key).await? {
            Some(obj) => Some(parse::<Head>(&head_key, &obj)?.start),
            None => None,
        };
        if start.is_none() {
            let origin_key = format!("{dir}/origin.json");
            match self.staging.get(&origin_key).await? {
                Some(obj) => start = Some(parse::<OriginRecord>(&origin_key, &obj)?.offset),
                None => return Ok(Position::default()),
            }
        }
        let mut position = Position {
            next: start,
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

    /// The intent of the batch starting at `start`, with its entity tag.
    pub async fn intent(
        &self,
        tp: &TopicPartition,
        start: i64,
    ) -> Result<Option<(Intent, String)>, PipelineError> {
        let key = intent_key(&self.scope, tp, start);
        match self.staging.get(&key).await? {
            Some(obj) => Ok(Some((parse(&key, &obj)?, obj.etag))),
            None => Ok(None),
        }
    }

    /// Creates an intent; `Conflict` means another invocation fixed this batch first.
    pub async fn create_intent(&self, intent: &Intent) -> Result<Conditional, PipelineError> {
        let tp = intent.batch.tp();
        let key = intent_key(&self.scope, &tp, intent.batch.start);
        Ok(self.staging.create(&key, to_json(intent)).await?)
    }

    /// Replaces an intent only if it is unchanged since it was read as `etag`.
    pub async fn update_intent(
        &self,
        intent: &Intent,
        etag: &str,
    ) -> Result<Conditional, PipelineError> {
        let tp = intent.batch.tp();
        let key = intent_key(&self.scope, &tp, intent.batch.start);
        Ok(self.staging.replace(&key, to_json(intent), etag).await?)
    }

    /// Creates the log entry of a batch (invariant 2) and moves the head hint.
    pub async fn commit(&self, entry: &Entry) -> Result<Conditional, PipelineError> {
        let tp = entry.intent.batch.tp();
        let key = entry_key(&self.scope, &tp, entry.intent.batch.start);
        let outcome = self.staging.create(&key, to_json(entry)).await?;
        if outcome == Conditional::Written {
            let head = format!("{}/head.json", log_dir(&self.scope, &tp));
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

    /// Creates the intent of a new batch, or adopts the one a racing or crashed invocation fixed
    /// first (invariant 3); returns the intent in force with its entity tag.
    pub async fn fix(&self, intent: &Intent) -> Result<(Intent, String), PipelineError> {
        let tp = intent.batch.tp();
        let start = intent.batch.start;
        let created = self.create_intent(intent).await?;
        let (found, etag) =
            self.intent(&tp, start)
                .await?
                .ok_or_else(|| PipelineError::Corrupt {
                    key: intent_key(&self.scope, &tp, start),
                    reason: "missing right after it was written".into(),
                })?;
        if created == Conditional::Conflict {
            tracing::info!(
                theirs_end = found.batch.end,
                ours_end = intent.batch.end,
                "adopting the intent another invocation fixed"
            );
        } else {
            fault::point("after-intent");
        }
        Ok((found, etag))
    }
}
