//! Dead letters in the staging bucket, after the pipeline wrote them: the listing and counts that
//! `k2mc status` and `k2mc dead-letters list` show, and reading an object back into Kafka
//! records for `k2mc dead-letters replay`. The line format and key layout are
//! `k2mc_formats::dead_letter`'s.

use std::collections::BTreeMap;

use k2mc_formats::dead_letter::{self, DeadLetter};
use k2mc_formats::scope::LogScope;

use crate::error::PipelineError;
use crate::pipeline::commit::{CommitLog, TopicPartition};
use crate::staging::{Staging, StagingError};
use crate::transform::bindings::{Header, KafkaRecord};

/// A dead-letter object as the listing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    /// Whether a committed batch names it. Only these are counted and replayed: an object no
    /// log entry names was written by a staging attempt that did not commit (it lost the race
    /// to fix its batch, crashed before its intent, or passed the error limit), and the records
    /// in it were loaded or dead-lettered by the attempt that did (`docs/reliability.md`).
    pub committed: bool,
}

/// Every dead-letter object of `cluster` (its main log, its backfills and its replays) in key
/// order, each checked against the log entry of its batch. Other clusters sharing the bucket
/// and prefix are left out.
pub async fn list(staging: &Staging, cluster: &str) -> Result<Vec<Listed>, PipelineError> {
    let all = staging
        .list_all(&format!("{}{cluster}", dead_letter::PREFIX))
        .await?;
    let mut out = Vec::new();
    for key in all {
        if dead_letter::scope_of_key(&key).is_some_and(|s| s.cluster() == cluster) {
            let committed = is_committed(staging, &key).await?;
            out.push(Listed { key, committed });
        }
    }
    Ok(out)
}

/// Whether the log entry of the batch `key` belongs to names it as its dead letters.
pub async fn is_committed(staging: &Staging, key: &str) -> Result<bool, PipelineError> {
    let Some(parts) = dead_letter::parse_key(key) else {
        return Ok(false);
    };
    let log = CommitLog::new(staging.clone(), parts.scope);
    Ok(log
        .entry(&parts.tp, parts.start)
        .await?
        .is_some_and(|e| e.intent.dead_letters_key.as_deref() == Some(key)))
}

/// How many dead letters the object `key` holds (0 when it is gone).
pub async fn count(staging: &Staging, key: &str) -> Result<usize, StagingError> {
    Ok(staging
        .get(key)
        .await?
        .map_or(0, |o| dead_letter::count_lines(&o.data)))
}

/// How many dead letters `tp` has in `scope`, over the objects its committed batches name.
pub async fn count_partition(
    staging: &Staging,
    scope: &LogScope,
    tp: &TopicPartition,
) -> Result<usize, PipelineError> {
    let mut n = 0;
    for key in staging
        .list_all(&dead_letter::partition_prefix(scope, tp))
        .await?
    {
        if is_committed(staging, &key).await? {
            n += count(staging, &key).await?;
        }
    }
    Ok(n)
}

/// The records of the dead-letter object `key`, grouped by partition, as they were read from
/// Kafka.
pub async fn read(
    staging: &Staging,
    key: &str,
) -> Result<BTreeMap<TopicPartition, Vec<KafkaRecord>>, PipelineError> {
    let corrupt = |reason: String| PipelineError::Corrupt {
        key: key.to_owned(),
        reason,
    };
    let obj = staging.get(key).await?.ok_or_else(|| {
        corrupt("no such dead-letter object; list them with k2mc dead-letters list".into())
    })?;
    let letters = dead_letter::parse_lines(&obj.data).map_err(|e| corrupt(e.to_string()))?;
    let mut out: BTreeMap<TopicPartition, Vec<KafkaRecord>> = BTreeMap::new();
    for letter in letters {
        out.entry(letter.tp()).or_default().push(letter.into());
    }
    Ok(out)
}

/// The one conversion of a dead letter back into the record it was.
impl From<DeadLetter> for KafkaRecord {
    fn from(d: DeadLetter) -> Self {
        KafkaRecord {
            offset: d.offset,
            timestamp_ms: d.timestamp,
            key: d.key,
            value: d.value,
            headers: d
                .headers
                .into_iter()
                .map(|h| Header {
                    key: h.key,
                    value: h.value,
                })
                .collect(),
        }
    }
}
