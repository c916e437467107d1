//! The plan stage (pure, invariant 7 in `docs/architecture.md`): which partitions an invocation
//! syncs and from where to where, and how each batch is cut. Ranges are cut by offsets only,
//! never by the clock, so a retry plans the same range; the bytes limit cuts at a record the
//! data decides. The broker answers the questions plan asks (an offset for a time, the high
//! watermark) through [`crate::pipeline::fetch::CheckedFetch::resolve`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::config::{Config, StartFrom};
use crate::error::PipelineError;
use crate::transform::bindings::KafkaRecord;
use k2mc_formats::event::{TopicPartition, Trigger};

/// A point in a partition: where a never-synced partition starts, or a backfill's `--from` and
/// `--to`. Written `earliest`, `latest`, `offset:N` or `time:RFC3339`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    Offset(i64),
    Time(chrono::DateTime<chrono::Utc>),
}

impl fmt::Display for OffsetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OffsetSpec::Earliest => f.write_str("earliest"),
            OffsetSpec::Latest => f.write_str("latest"),
            OffsetSpec::Offset(o) => write!(f, "offset:{o}"),
            OffsetSpec::Time(t) => write!(f, "time:{}", t.to_rfc3339()),
        }
    }
}

impl FromStr for OffsetSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(n) = text.strip_prefix("offset:") {
            return n
                .parse()
                .map(OffsetSpec::Offset)
                .map_err(|_| format!("{text}: offset:N needs a whole number"));
        }
        if let Some(t) = text.strip_prefix("time:") {
            return chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| OffsetSpec::Time(t.with_timezone(&chrono::Utc)))
                .map_err(|_| {
                    format!("{text}: time: needs an RFC 3339 time like 2024-05-01T00:00:00Z")
                });
        }
        match text {
            "earliest" => Ok(OffsetSpec::Earliest),
            "latest" => Ok(OffsetSpec::Latest),
            _ => Err(format!(
                "{text:?} is not earliest, latest, offset:N or time:RFC3339"
            )),
        }
    }
}

/// Where a partition's range ends for this invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The high watermark at plan time (schedule tick).
    HighWatermark,
    /// A fixed end (a backfill's `--to`); what one invocation leaves is the next one's.
    Offset(i64),
    /// The last delivered offset + 1 of an event batch: what the invocation leaves is reported
    /// failed, so the event source delivers it again.
    Delivered(i64),
}

/// A partition to sync in this invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Work {
    pub tp: TopicPartition,
    /// Where the partition starts if its log has no origin yet.
    pub start: OffsetSpec,
    pub target: Target,
    /// Records the event already carried (used as they are; only the gaps are fetched).
    pub delivered: Vec<KafkaRecord>,
}

/// A partition of the trigger that is not synced, with the offset to deliver it again from.
#[derive(Debug)]
pub struct Refused {
    pub tp: TopicPartition,
    pub next: Option<i64>,
    pub error: PipelineError,
}

/// What an invocation will do.
#[derive(Debug, Default)]
pub struct Plan {
    pub work: Vec<Work>,
    pub refused: Vec<Refused>,
}

fn check_topic(config: &Config, topic: &str) -> Result<(), PipelineError> {
    if config.kafka.topics.iter().any(|t| t == topic) {
        Ok(())
    } else {
        Err(PipelineError::UnknownTopic {
            topic: topic.to_owned(),
        })
    }
}

/// The topics whose partitions the broker must list for `trigger` (none for an event batch,
/// which names its partitions). A schedule naming a topic the config does not cover fails whole.
pub fn topics_to_list(trigger: &Trigger, config: &Config) -> Result<Vec<String>, PipelineError> {
    match trigger {
        Trigger::Kafka { .. } | Trigger::Load { .. } => Ok(Vec::new()),
        Trigger::Schedule { topics, .. } if topics.is_empty() => Ok(config.kafka.topics.clone()),
        Trigger::Schedule { topics, .. } => {
            for t in topics {
                check_topic(config, t)?;
            }
            Ok(topics.clone())
        }
    }
}

/// Trigger → work. A schedule tick syncs every listed partition (or those it names) to the high
/// watermark, starting a never-synced one at `kafka.start_from`. An event batch syncs each of its
/// partitions to its last delivered offset + 1, starting a never-synced one at the first delivered
/// record (the event source mapping's starting position decided it); a partition of a topic the
/// config does not cover is refused alone, so a misrouted topic never holds the others back.
pub fn plan(trigger: &Trigger, config: &Config, partitions: &BTreeMap<String, Vec<i32>>) -> Plan {
    let mut plan = Plan::default();
    match trigger {
        Trigger::Schedule {
            partitions: only, ..
        } => {
            let start = match config.kafka.start_from {
                StartFrom::Earliest => OffsetSpec::Earliest,
                StartFrom::Latest => OffsetSpec::Latest,
            };
            for (topic, list) in partitions {
                for &partition in list {
                    if only.is_empty() || only.contains(&partition) {
                        plan.work.push(Work {
                            tp: TopicPartition::new(topic.clone(), partition),
                            start,
                            target: Target::HighWatermark,
                            delivered: Vec::new(),
                        });
                    }
                }
            }
        }
        Trigger::Load { .. } => {}
        Trigger::Kafka { records, .. } => {
            for (tp, list) in records {
                let first = list.iter().map(|r| r.offset).min();
                if let Err(error) = check_topic(config, &tp.topic) {
                    plan.refused.push(Refused {
                        tp: tp.clone(),
                        next: first,
                        error,
                    });
                    continue;
                }
                let end = list.iter().map(|r| r.offset).max().map_or(0, |m| m + 1);
                // A partition's first event fixes its origin as `start_from` says: `earliest`
                // loads what came before the first delivered record too (fetched), whichever
                // trigger reaches the partition first; `latest` starts at the first delivered.
                let start = match config.kafka.start_from {
                    StartFrom::Earliest => OffsetSpec::Earliest,
                    StartFrom::Latest => OffsetSpec::Offset(first.unwrap_or(0)),
                };
                plan.work.push(Work {
                    tp: tp.clone(),
                    start,
                    target: Target::Delivered(end),
                    delivered: list.iter().cloned().map(Into::into).collect(),
                });
            }
        }
    }
    plan
}

/// A backfill's work on one partition: `[start, end)` resolved from `--from` and `--to`.
pub fn backfill(
    tp: TopicPartition,
    (from, start): (OffsetSpec, i64),
    (to, end): (OffsetSpec, i64),
) -> Result<Work, PipelineError> {
    if start > end {
        return Err(PipelineError::BackfillRange {
            topic: tp.topic,
            partition: tp.partition,
            from: from.to_string(),
            to: to.to_string(),
            start,
            end,
        });
    }
    Ok(Work {
        tp,
        start: OffsetSpec::Offset(start),
        target: Target::Offset(end),
        delivered: Vec::new(),
    })
}

/// Fails when retention deleted records the log has not synced yet: they are lost, and saying
/// so beats syncing on as if nothing happened.
pub fn check_retained(tp: &TopicPartition, next: i64, earliest: i64) -> Result<(), PipelineError> {
    if next < earliest {
        return Err(PipelineError::OffsetsLost {
            topic: tp.topic.clone(),
            partition: tp.partition,
            next,
            earliest,
        });
    }
    Ok(())
}

/// The next batch `[start, end)`: at most `max_records` offsets from `next`, never past `end`.
pub fn batch_range(next: i64, end: i64, max_records: u64) -> (i64, i64) {
    let max = i64::try_from(max_records).unwrap_or(i64::MAX);
    (next, end.min(next.saturating_add(max)).max(next))
}

/// The bytes cut: adds each record's key and value bytes to `bytes` and returns how many records
/// of `records` the batch keeps, `Some(n)` when it reaches `limit` at the `n`-th (the batch ends
/// after it), `None` when all fit.
pub fn byte_cut(records: &[KafkaRecord], bytes: &mut u64, limit: u64) -> Option<usize> {
    for (i, r) in records.iter().enumerate() {
        *bytes +=
            (r.key.as_ref().map_or(0, Vec::len) + r.value.as_ref().map_or(0, Vec::len)) as u64;
        if *bytes >= limit {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests;
