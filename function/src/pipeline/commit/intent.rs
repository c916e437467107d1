//! What the commit log stores: a batch's identity, the intent that fixes it (its counts,
//! destinations, staged blocks, Tunnel sessions and the record it ended on) and the entry that
//! commits it (`docs/architecture.md`, "The commit log"). [`super::CommitLog`] reads and writes
//! them; the field names are the stored JSON's, so older intents and entries still read.

use serde::{Deserialize, Serialize};

use super::{LogScope, TopicPartition};
use crate::maxcompute::Compression;

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

    /// Key of a staged block of the `dest`-th destination partition, written by staging
    /// `attempt`. Every attempt stages under keys of its own: two invocations staging the same
    /// range never overwrite each other's bytes, so the blocks an intent names are exactly the
    /// bytes the attempt that wrote the intent staged (invariant 5).
    pub fn block_key(&self, attempt: &str, dest: usize, block: u32) -> String {
        format!("staged/{}/{attempt}/p{dest:04}/{block:05}.blk", self.dir())
    }

    /// Key of the dead letters staging `attempt` wrote for the batch.
    pub fn dead_letters_key(&self, attempt: &str) -> String {
        k2mc_formats::dead_letter::object_key(
            &LogScope::parse(&self.cluster),
            &self.tp(),
            self.start,
            self.end,
            attempt,
        )
    }
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
    /// Offsets retention deleted before they were read, skipped on purpose by `k2mc skip-lost`
    /// (only such an entry has any; they are not `read`, so the batch still reconciles).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lost: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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
    /// How the block is compressed (absent: deflate, all that earlier releases staged).
    #[serde(default, skip_serializing_if = "Compression::is_deflate")]
    pub compression: Compression,
    /// How to join its body with others into a larger block (absent in blocks staged by
    /// earlier releases, which load as blocks of their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<Join>,
}

/// A staged block's body, the part a load joins (`docs/architecture.md`, "Joining staged
/// pieces into large blocks"): the compressed stream after its header (zlib's 2 bytes, or the
/// LZ4 frame's) up to the end of its last record (a deflate sync flush, or an LZ4 block's end),
/// and what the records in it sum to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    /// Compressed bytes of the body.
    pub body: u64,
    /// Uncompressed bytes of the body (the records, without the footer).
    pub raw: u64,
    /// Adler-32 of the uncompressed body (deflate only; 0 for LZ4).
    pub adler32: u32,
    /// CRC-32C of the body's record CRCs.
    pub checksum: u32,
}

/// Rows of a batch bound for one MaxCompute partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// Tunnel form `k=v,k2=v2`, empty for an unpartitioned table.
    pub partition: String,
    pub rows: u64,
    pub blocks: Vec<StagedBlock>,
    /// The Tunnel session that loads these rows, when a release before loads loaded the batch
    /// on its own (invariant 3; `docs/architecture.md`, "Staging and loading", L4).
    #[serde(flatten)]
    pub session: SessionRecord,
}

/// A Tunnel session as the commit protocol records it, in an intent or a load record
/// (invariant 3): recorded before any block is sent, "commit requested" before its commit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The session, once opened.
    #[serde(default)]
    pub upload_id: Option<String>,
    /// Set (in a new version) before the session's commit is first requested. A session whose
    /// status no longer tells whether it committed (`EXPIRED` past its lifetime, `CRITICAL`)
    /// holds no rows when this is unset; when set, only evidence settles it (`k2mc settle`).
    #[serde(default)]
    pub commit_requested: bool,
    /// Set by `k2mc settle --as committed`: an operator checked the table and found the rows.
    #[serde(default)]
    pub settled_committed: bool,
}

impl SessionRecord {
    /// A session whose commit was requested and whose outcome no status can tell any more is
    /// settled only by an operator (`k2mc settle`).
    pub fn in_doubt(&self) -> bool {
        self.upload_id.is_some() && self.commit_requested && !self.settled_committed
    }
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
    /// The MaxCompute project and table the blocks were encoded for; a resumed intent loads
    /// there whatever the config says now (absent in intents of earlier releases).
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub table: Option<String>,
    /// The last record the batch read from Kafka: the next invocation checks the partition
    /// still holds it, so a recreated topic or another cluster is noticed, not loaded from.
    #[serde(default)]
    pub last_record: Option<RecordMark>,
    /// The load that claimed the staged batch (`docs/architecture.md`, "Staging and loading").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<String>,
}

/// A record's identity in the log: its offset and a checksum of its key and value (the
/// timestamp is not used: rskafka and the Lambda event report it differently under
/// LogAppendTime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordMark {
    pub offset: i64,
    pub crc32c: u32,
}

impl RecordMark {
    /// The mark of `record`.
    pub fn of(record: &crate::transform::bindings::KafkaRecord) -> Self {
        let mut crc = 0u32;
        for part in [&record.key, &record.value] {
            // A length (or -1 for none) before each part: (None, "ab") and ("a", "b") differ.
            let len = part.as_ref().map_or(-1i64, |b| b.len() as i64);
            crc = crc32c::crc32c_append(crc, &len.to_le_bytes());
            if let Some(bytes) = part {
                crc = crc32c::crc32c_append(crc, bytes);
            }
        }
        RecordMark {
            offset: record.offset,
            crc32c: crc,
        }
    }
}

impl Intent {
    /// Every object this intent names in the staging bucket: its blocks and its dead letters.
    pub fn staged_keys(&self) -> impl Iterator<Item = &str> {
        self.destinations
            .iter()
            .flat_map(|d| d.blocks.iter().map(|b| b.key.as_str()))
            .chain(self.dead_letters_key.as_deref())
    }
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
    /// The batch is staged: its Kafka progress is durable and its rows become visible when the
    /// load that claims it commits. Absent (false) in entries loaded per batch.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub staged: bool,
}

impl Intent {
    /// True when a Tunnel session of the batch's own was ever recorded: loaded per batch, as
    /// releases before loads did, never by a load.
    pub fn has_own_session(&self) -> bool {
        self.destinations
            .iter()
            .any(|d| d.session.upload_id.is_some())
    }
}
