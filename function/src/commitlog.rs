//! The commit log and intents in the staging bucket: the single authority on progress
//! (architecture §3). Per topic-partition, an `origin` object fixes where syncing began, and
//! entry objects keyed by their start offset chain forward (`[start, end)`, the next entry's key
//! is this one's `end`). Entries and intents are created with create-only writes, so of two racing
//! invocations exactly one fixes a batch and exactly one commits it. A `head` object is only a
//! hint that saves walking the chain.

use serde::{Deserialize, Serialize};

use crate::error::PipelineError;
use crate::staging::{Conditional, Object, Staging};

pub use k2mc_formats::event::TopicPartition;

/// The identity of a batch (invariant 1): everything staged for it derives from this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchId {
    pub cluster: String,
    pub topic: String,
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

impl BatchId {
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
        format!("dead-letters/{}.jsonl", self.dir())
    }
}

/// Where a partition's log lives.
fn log_dir(cluster: &str, tp: &TopicPartition) -> String {
    format!("log/{cluster}/{}/{}", tp.topic, tp.partition)
}

fn entry_key(cluster: &str, tp: &TopicPartition, start: i64) -> String {
    format!("{}/{start:020}.json", log_dir(cluster, tp))
}

fn intent_key(cluster: &str, tp: &TopicPartition, start: i64) -> String {
    format!(
        "intents/{cluster}/{}/{}/{start:020}.json",
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

/// Where syncing of a partition began.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Origin {
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

/// Reads and writes one cluster's logs and intents.
#[derive(Debug, Clone)]
pub struct CommitLog {
    staging: Staging,
    cluster: String,
}

impl CommitLog {
    pub fn new(staging: Staging, cluster: impl Into<String>) -> Self {
        CommitLog {
            staging,
            cluster: cluster.into(),
        }
    }

    pub fn staging(&self) -> &Staging {
        &self.staging
    }

    /// Follows the chain from the head hint (or the origin) to its end.
    pub async fn position(&self, tp: &TopicPartition) -> Result<Position, PipelineError> {
        let dir = log_dir(&self.cluster, tp);
        let head_key = format!("{dir}/head.json");
        let mut start = match self.staging.get(&head_key).await? {
            Some(obj) => Some(parse::<Head>(&head_key, &obj)?.start),
            None => None,
        };
        if start.is_none() {
            let origin_key = format!("{dir}/origin.json");
            match self.staging.get(&origin_key).await? {
                Some(obj) => start = Some(parse::<Origin>(&origin_key, &obj)?.offset),
                None => return Ok(Position::default()),
            }
        }
        let mut position = Position {
            next: start,
            last: None,
        };
        while let Some(at) = position.next {
            let key = entry_key(&self.cluster, tp, at);
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
        let key = entry_key(&self.cluster, tp, start);
        match self.staging.get(&key).await? {
            Some(obj) => Ok(Some(parse(&key, &obj)?)),
            None => Ok(None),
        }
    }

    /// The cluster name (log scope) this log is kept under.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Fixes where a never-synced partition starts; returns the origin in force (ours or a
    /// racing invocation's).
    pub async fn ensure_origin(
        &self,
        tp: &TopicPartition,
        offset: i64,
    ) -> Result<i64, PipelineError> {
        let key = format!("{}/origin.json", log_dir(&self.cluster, tp));
        match self
            .staging
            .create(&key, to_json(&Origin { offset }))
            .await?
        {
            Conditional::Written => Ok(offset),
            Conditional::Conflict => match self.staging.get(&key).await? {
                Some(obj) => Ok(parse::<Origin>(&key, &obj)?.offset),
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
        let key = intent_key(&self.cluster, tp, start);
        match self.staging.get(&key).await? {
            Some(obj) => Ok(Some((parse(&key, &obj)?, obj.etag))),
            None => Ok(None),
        }
    }

    /// Creates an intent; `Conflict` means another invocation fixed this batch first.
    pub async fn create_intent(&self, intent: &Intent) -> Result<Conditional, PipelineError> {
        let tp = TopicPartition {
            topic: intent.batch.topic.clone(),
            partition: intent.batch.partition,
        };
        let key = intent_key(&self.cluster, &tp, intent.batch.start);
        self.staging.create(&key, to_json(intent)).await
    }

    /// Replaces an intent only if it is unchanged since it was read as `etag`.
    pub async fn update_intent(
        &self,
        intent: &Intent,
        etag: &str,
    ) -> Result<Conditional, PipelineError> {
        let tp = TopicPartition {
            topic: intent.batch.topic.clone(),
            partition: intent.batch.partition,
        };
        let key = intent_key(&self.cluster, &tp, intent.batch.start);
        self.staging.replace(&key, to_json(intent), etag).await
    }

    /// Creates the log entry of a batch (invariant 2) and moves the head hint.
    pub async fn commit(&self, entry: &Entry) -> Result<Conditional, PipelineError> {
        let tp = TopicPartition {
            topic: entry.intent.batch.topic.clone(),
            partition: entry.intent.batch.partition,
        };
        let key = entry_key(&self.cluster, &tp, entry.intent.batch.start);
        let outcome = self.staging.create(&key, to_json(entry)).await?;
        if outcome == Conditional::Written {
            let head = format!("{}/head.json", log_dir(&self.cluster, &tp));
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

    /// Committed entries of a partition, oldest first, from its origin (for status and replay).
    pub async fn entries(
        &self,
        tp: &TopicPartition,
        limit: usize,
    ) -> Result<Vec<Entry>, PipelineError> {
        let dir = log_dir(&self.cluster, tp);
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let keys = self
                .staging
                .list(&format!("{dir}/0"), after.as_deref(), 1000)
                .await?;
            let Some(last) = keys.last().cloned() else {
                break;
            };
            for key in keys {
                if let Some(obj) = self.staging.get(&key).await? {
                    out.push(parse(&key, &obj)?);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            after = Some(last);
        }
        Ok(out)
    }
}
