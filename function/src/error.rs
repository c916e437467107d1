//! The pipeline's errors, classified in one place: what the invocation reports, whether a retry
//! can help, and which partition an error belongs to. Stage modules return these; only the
//! binary turns them into exit codes or Lambda error responses.

use thiserror::Error;

use crate::maxcompute::MaxComputeError;
use crate::transform::TransformError;

pub use k2mc_formats::config::ConfigError;

/// Why a batch (or the whole invocation) did not complete.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PipelineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("kafka {operation} on {topic}-{partition}: {source}")]
    Kafka {
        operation: &'static str,
        topic: String,
        partition: i32,
        #[source]
        source: Box<rskafka::client::error::Error>,
    },
    #[error("kafka: cannot connect to {brokers}: {source}")]
    KafkaConnect {
        brokers: String,
        #[source]
        source: Box<rskafka::client::error::Error>,
    },
    #[error("kafka tls: {reason}")]
    KafkaTls { reason: String },
    #[error("kafka sasl: {reason}")]
    KafkaSasl { reason: String },
    #[error("staging bucket {bucket}: {operation} {key}: {message}")]
    Storage {
        bucket: String,
        operation: &'static str,
        key: String,
        message: String,
    },
    #[error("staged object {key} is not valid: {reason}")]
    Corrupt { key: String, reason: String },
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
    #[error("the chain's output does not fit table {table}: {problems}")]
    SchemaMismatch { table: String, problems: String },
    #[error("destination partition: {reason}")]
    Partition { reason: String },
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
    #[error("topic {topic} is not in kafka.topics of the config; add it or remove the trigger")]
    UnknownTopic { topic: String },
    #[error(
        "{topic}-{partition}: the commit log is at offset {next} but the oldest record Kafka still has is {earliest}; records in between were deleted by retention before they were synced"
    )]
    OffsetsLost {
        topic: String,
        partition: i32,
        next: i64,
        earliest: i64,
    },
}

impl PipelineError {
    /// True when running the same batch again may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            PipelineError::Kafka { .. }
            | PipelineError::KafkaConnect { .. }
            | PipelineError::Storage { .. } => true,
            PipelineError::MaxCompute(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// A short stable name for metrics and responses.
    pub fn kind(&self) -> &'static str {
        match self {
            PipelineError::Config(_) => "config",
            PipelineError::Kafka { .. } | PipelineError::KafkaConnect { .. } => "kafka",
            PipelineError::KafkaTls { .. } => "kafka-tls",
            PipelineError::KafkaSasl { .. } => "kafka-sasl",
            PipelineError::Storage { .. } => "storage",
            PipelineError::Corrupt { .. } => "corrupt",
            PipelineError::MaxCompute(_) => "maxcompute",
            PipelineError::Transform(_) => "transform",
            PipelineError::ErrorLimit { .. } => "error-limit",
            PipelineError::LostRace { .. } => "lost-race",
            PipelineError::SchemaMismatch { .. } => "schema-mismatch",
            PipelineError::Partition { .. } => "partition",
            PipelineError::Event { .. } => "event",
            PipelineError::UnknownTopic { .. } => "unknown-topic",
            PipelineError::BackfillRange { .. } => "backfill-range",
            PipelineError::OffsetsLost { .. } => "offsets-lost",
        }
    }
}
