//! The pipeline's errors. Each layer has its own `thiserror` enum with the context it knows
//! (fetch: [`FetchError`], the staging bucket: [`StagingError`], the Kafka connection:
//! [`KafkaError`], encode: [`EncodeError`], MaxCompute: [`MaxComputeError`], transforms:
//! [`TransformError`]); they compose
//! into [`PipelineError`] with `#[from]`, and [`PipelineError::class`] classifies every one in
//! this one place. The Lambda handler and the CLI both report through it; no caller decides
//! anything by an error's text.

use thiserror::Error;

use crate::kafka::KafkaError;
use crate::maxcompute::MaxComputeError;
use crate::pipeline::encode::EncodeError;
use crate::pipeline::fetch::FetchError;
use crate::pipeline::route::RouteError;
use crate::staging::StagingError;
use crate::transform::TransformError;

pub use k2mc_formats::config::ConfigError;

/// Why a batch (or the whole invocation) did not complete.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PipelineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Staging(#[from] StagingError),
    /// An object in the staging bucket (a log entry, an intent, a staged block, a dead-letter
    /// object) that does not read back as what wrote it.
    #[error("staged object {key} is not valid: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    MaxCompute(#[from] MaxComputeError),
    #[error(transparent)]
    Transform(#[from] TransformError),
    #[error(
        "{topic}-{partition} [{start}, {end}): {dead} of {read} records were dead letters, over error_limit {limit}; nothing was committed. Fix the data or the transform, or raise limits.error_limit, then run again (dead letters: {dead_letters_key})"
    )]
    ErrorLimit {
        topic: String,
        partition: i32,
        start: i64,
        end: i64,
        dead: u64,
        read: u64,
        limit: String,
        dead_letters_key: String,
    },
    #[error(
        "{topic}-{partition}: another invocation committed the batch starting at offset {start}; this one stopped without side effects"
    )]
    LostRace {
        topic: String,
        partition: i32,
        start: i64,
    },
    #[error(
        "another invocation finished load {load} while this one was loading it; this one stopped without side effects"
    )]
    LoadRaced { load: String },
    /// A session whose commit was requested and whose status no longer tells whether it
    /// committed: never loaded again blindly.
    #[error(transparent)]
    CommitUnknown(Box<CommitUnknown>),
    /// The same, for a session of a load (many staged batches of one table).
    #[error(transparent)]
    LoadCommitUnknown(Box<LoadCommitUnknown>),
    /// Staged blocks whose bytes do not match their intent cannot be joined.
    #[error(transparent)]
    Join(#[from] crate::pipeline::JoinError),
    #[error(
        "{topic}-{partition}: the batch at offset {start} was fixed for MaxCompute project {fixed}, and the config now names {configured}; run once with the config of {fixed} to finish it, then switch"
    )]
    ProjectChanged {
        topic: String,
        partition: i32,
        start: i64,
        fixed: String,
        configured: String,
    },
    #[error(
        "{topic}-{partition}: the commit log is at offset {next} but {reason}: the topic was deleted and recreated, or kafka.cluster names another cluster than the log was written for. Nothing was loaded. To sync the new topic from its start, give the config a new kafka.cluster name (a log of its own)"
    )]
    SourceChanged {
        topic: String,
        partition: i32,
        next: i64,
        reason: String,
    },
    #[error(
        "{topic}-{partition}: the event's records from offset {next} to {end} were not loaded in this invocation (time, limits.batches_per_invocation, or a racing invocation); they are reported failed so the mapping delivers them again"
    )]
    Unfinished {
        topic: String,
        partition: i32,
        next: i64,
        end: i64,
    },
    #[error("the chain's output does not fit table {table}: {problems}")]
    SchemaMismatch { table: String, problems: String },
    #[error(transparent)]
    Route(#[from] RouteError),
    /// The invocation event cannot be read.
    #[error("event: {reason}")]
    Event { reason: String },
    #[error(
        "{topic}-{partition}: the backfill range starts at {from} (offset {start}), after its end {to} (offset {end}); give --from the earlier point"
    )]
    BackfillRange {
        topic: String,
        partition: i32,
        from: String,
        to: String,
        start: i64,
        end: i64,
    },
    #[error(
        "dead-letter object {key} belongs to no committed batch (a staging attempt that lost its race, crashed or passed the error limit; the attempt that committed settled its records); replay the keys `k2mc dead-letters list` prints"
    )]
    NotReplayable { key: String },
    #[error("topic {topic} is not in kafka.topics of the config; add it or remove the trigger")]
    UnknownTopic { topic: String },
    #[error(
        "{topic}-{partition}: the commit log is at offset {next} but the oldest record Kafka still has is {earliest}; records in between were deleted by retention before they were synced. They cannot be loaded from Kafka any more; reload them from another copy if there is one, then run `k2mc skip-lost --topic {topic} --partition {partition}` to go on from {earliest} (the log records the skip and the count lost)"
    )]
    OffsetsLost {
        topic: String,
        partition: i32,
        next: i64,
        earliest: i64,
    },
}

/// The batch, session and table of a `commit-unknown` stop, and the command that settles it.
#[derive(Debug, Error)]
#[error(
    "{topic}-{partition} [{start}, {end}): upload session {upload_id} of table {table} (partition '{destination}') is {status}, and its commit was requested, so whether its rows landed is unknown; loading them again could duplicate them. Check that partition of the table for offsets {start}..{end} of {topic}-{partition}, then run `k2mc settle --topic {topic} --partition {partition} --start {start} --scope {scope}{flag} --as committed` if the rows are there, or `--as not-committed` if they are not",
    flag = destination_flag(.destination)
)]
pub struct CommitUnknown {
    pub topic: String,
    pub partition: i32,
    pub start: i64,
    pub end: i64,
    pub scope: String,
    pub upload_id: String,
    pub status: String,
    pub table: String,
    pub destination: String,
}

/// The load, session and table of a `commit-unknown` stop of a load, and the command that
/// settles it.
#[derive(Debug, Error)]
#[error(
    "load {load} of table {table}: upload session {upload_id} (partition '{destination}') is {status}, and its commit was requested, so whether its rows landed is unknown; loading them again could duplicate them. It holds the rows of {batches}. Check that partition of the table for those offsets, then run `k2mc settle --load {load} --table {table}{flag} --as committed` if the rows are there, or `--as not-committed` if they are not",
    flag = destination_flag(.destination)
)]
pub struct LoadCommitUnknown {
    pub load: String,
    pub table: String,
    pub upload_id: String,
    pub status: String,
    pub destination: String,
    /// The staged batches of the load, as `scope topic-partition [start, end)` ranges.
    pub batches: String,
}

/// The settle command's `--destination` for a batch's destination partition (none for a table
/// without partitions): each session in doubt is settled by the evidence of its own partition.
fn destination_flag(destination: &str) -> String {
    if destination.is_empty() {
        String::new()
    } else {
        format!(" --destination {destination}")
    }
}

/// What an error means to whoever reports it: a stable name, whether running the same work again
/// may succeed without anyone changing anything, and whether a user must fix something (the
/// config, the data, a transform, a grant) before it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    pub kind: &'static str,
    pub retryable: bool,
    pub user_fixable: bool,
}

impl Class {
    const fn new(kind: &'static str, retryable: bool, user_fixable: bool) -> Self {
        Class {
            kind,
            retryable,
            user_fixable,
        }
    }

    /// The Lambda error type: `Retryable.<kind>` or `NonRetryable.<kind>`.
    pub fn lambda_error_type(&self) -> String {
        let prefix = if self.retryable {
            "Retryable"
        } else {
            "NonRetryable"
        };
        format!("{prefix}.{}", self.kind)
    }
}

impl PipelineError {
    /// The one classification of every error (see [`Class`]).
    pub fn class(&self) -> Class {
        match self {
            PipelineError::Config(_) => Class::new("config", false, true),
            PipelineError::Kafka(e) => match e {
                KafkaError::Tls { .. } | KafkaError::TlsMaterial { .. } => {
                    Class::new("kafka-tls", false, true)
                }
                KafkaError::Sasl { .. } | KafkaError::MskIam { .. } => {
                    Class::new("kafka-sasl", false, true)
                }
                KafkaError::Token(e) => {
                    Class::new("kafka-sasl", e.is_retryable(), !e.is_retryable())
                }
                KafkaError::UnknownTopic { .. } => Class::new("unknown-topic", false, true),
                _ => Class::new("kafka", true, false),
            },
            PipelineError::Fetch(e) => Class::new("fetch", e.is_retryable(), false),
            PipelineError::Staging(_) => Class::new("storage", true, false),
            PipelineError::Corrupt { .. } => Class::new("corrupt", false, false),
            PipelineError::Encode(_) => Class::new("encode", false, false),
            PipelineError::MaxCompute(e) => Class::new("maxcompute", e.is_retryable(), false),
            // Codes of `fatal` record errors from the WIT contract (wit/README.md): a registry
            // that is down and a schema that needs new columns pass with a retry.
            PipelineError::Transform(TransformError::Fatal { code, .. })
                if code == "registry-unavailable" =>
            {
                Class::new("registry", true, false)
            }
            PipelineError::Transform(TransformError::Fatal { code, .. })
                if code == "schema-changed" =>
            {
                Class::new("schema-changed", true, false)
            }
            PipelineError::Transform(TransformError::Worker { .. }) => {
                Class::new("transform-worker", true, false)
            }
            PipelineError::Transform(_) => Class::new("transform", false, true),
            PipelineError::ErrorLimit { .. } => Class::new("error-limit", false, true),
            PipelineError::LostRace { .. } | PipelineError::LoadRaced { .. } => {
                Class::new("lost-race", false, false)
            }
            PipelineError::SchemaMismatch { .. } => Class::new("schema-mismatch", false, true),
            PipelineError::CommitUnknown(_) | PipelineError::LoadCommitUnknown(_) => {
                Class::new("commit-unknown", false, true)
            }
            PipelineError::Join(_) => Class::new("corrupt", false, false),
            PipelineError::ProjectChanged { .. } => Class::new("project-changed", false, true),
            PipelineError::SourceChanged { .. } => Class::new("source-changed", false, true),
            PipelineError::Unfinished { .. } => Class::new("unfinished", true, false),
            PipelineError::Route(_) => Class::new("partition", false, true),
            PipelineError::Event { .. } => Class::new("event", false, true),
            PipelineError::UnknownTopic { .. } => Class::new("unknown-topic", false, true),
            PipelineError::NotReplayable { .. } => Class::new("not-replayable", false, true),
            PipelineError::BackfillRange { .. } => Class::new("backfill-range", false, true),
            PipelineError::OffsetsLost { .. } => Class::new("offsets-lost", false, true),
        }
    }

    /// A short stable name for metrics, logs and responses.
    pub fn kind(&self) -> &'static str {
        self.class().kind
    }
}

impl From<k2mc_formats::event::EventError> for PipelineError {
    fn from(e: k2mc_formats::event::EventError) -> Self {
        PipelineError::Event { reason: e.reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layer_is_classified() {
        let lost = PipelineError::LostRace {
            topic: "t".into(),
            partition: 0,
            start: 1,
        };
        assert_eq!(lost.class(), Class::new("lost-race", false, false));
        let fetch: PipelineError = FetchError::EmptyBelowWatermark {
            tp: k2mc_formats::event::TopicPartition::new("t", 0),
            offset: 5,
            high_watermark: 6,
        }
        .into();
        assert!(fetch.class().retryable);
        assert_eq!(fetch.class().lambda_error_type(), "Retryable.fetch");
        let staging: PipelineError = StagingError::Task {
            bucket: "b".into(),
            message: "m".into(),
        }
        .into();
        assert_eq!(staging.class().lambda_error_type(), "Retryable.storage");
        let sasl: PipelineError = KafkaError::Sasl {
            brokers: "b:9092".into(),
            cause: "x".into(),
        }
        .into();
        assert_eq!(sasl.class(), Class::new("kafka-sasl", false, true));
        let limit = PipelineError::ErrorLimit {
            topic: "t".into(),
            partition: 0,
            start: 0,
            end: 1,
            dead: 1,
            read: 1,
            limit: "0".into(),
            dead_letters_key: "k".into(),
        };
        assert_eq!(
            limit.class().lambda_error_type(),
            "NonRetryable.error-limit"
        );
        assert!(limit.class().user_fixable);
    }
}
