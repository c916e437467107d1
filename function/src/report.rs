//! What an invocation did, per partition and per batch: the pipeline fills it in, the handler and
//! the CLI report it (a JSON summary, the partitions that failed with their offset to redeliver
//! from), and the metrics are emitted from it.

use serde::Serialize;

use crate::error::PipelineError;
use crate::metrics::StageTimes;
use crate::pipeline::LoadOutcome;
use crate::pipeline::commit::{BatchId, Counts, TopicPartition};

/// What one committed (or resumed) batch did.
#[derive(Debug, Clone)]
pub struct BatchReport {
    pub batch: BatchId,
    pub counts: Counts,
    pub times: StageTimes,
    /// True when the batch was fixed by an earlier (crashed or concurrent) invocation.
    pub resumed: bool,
}

/// How a partition's sync ended.
#[derive(Debug)]
pub struct PartitionOutcome {
    pub tp: TopicPartition,
    pub batches: Vec<BatchReport>,
    /// The first offset not committed when this invocation stopped.
    pub next: Option<i64>,
    pub high_watermark: Option<i64>,
    /// Why the partition stopped early, if it did.
    pub error: Option<PipelineError>,
}

impl PartitionOutcome {
    /// A partition not started yet.
    pub fn new(tp: TopicPartition) -> Self {
        PartitionOutcome {
            tp,
            batches: Vec::new(),
            next: None,
            high_watermark: None,
            error: None,
        }
    }

    /// A partition that stopped before its first batch, to be delivered again from `next`.
    pub fn failed(tp: TopicPartition, next: Option<i64>, error: PipelineError) -> Self {
        PartitionOutcome {
            next,
            error: Some(error),
            ..PartitionOutcome::new(tp)
        }
    }
}

/// A partition that stopped on an error.
#[derive(Debug)]
pub struct Failure<'a> {
    pub tp: &'a TopicPartition,
    /// The first offset to deliver again (0 when the partition never had a position).
    pub next: i64,
    pub error: &'a PipelineError,
}

/// Per-partition results of an invocation, in topic-partition order, and the loads it ran.
#[derive(Debug, Default)]
pub struct InvocationReport {
    pub partitions: Vec<PartitionOutcome>,
    /// Per table: what loading its staged batches did (`docs/architecture.md`, "Staging and
    /// loading").
    pub loads: Vec<LoadOutcome>,
}

#[derive(Serialize)]
struct LoadSummary<'a> {
    table: &'a str,
    loads: u32,
    batches: u64,
    rows: u64,
    sessions: u32,
    blocks: u32,
    waiting: u64,
    /// Seconds the oldest batch left waiting has waited.
    oldest_waiting_secs: Option<f64>,
    /// Seconds the oldest batch a new load made visible had waited since it was staged.
    oldest_loaded_secs: Option<f64>,
    /// Seconds the new load took (its part of `oldest_loaded_secs`).
    load_secs: Option<f64>,
    error: Option<String>,
}

#[derive(Serialize)]
struct PartitionSummary<'a> {
    topic: &'a str,
    partition: i32,
    batches: usize,
    read: u64,
    loaded: u64,
    filtered: u64,
    dead_lettered: u64,
    next_offset: Option<i64>,
    high_watermark: Option<i64>,
    error: Option<String>,
}

impl InvocationReport {
    /// A report of `partitions`, sorted by topic-partition.
    pub fn new(mut partitions: Vec<PartitionOutcome>) -> Self {
        partitions.sort_by(|a, b| a.tp.cmp(&b.tp));
        InvocationReport {
            partitions,
            loads: Vec::new(),
        }
    }

    /// Partitions that stopped on an error.
    pub fn failures(&self) -> Vec<Failure<'_>> {
        self.partitions
            .iter()
            .filter_map(|p| {
                p.error.as_ref().map(|error| Failure {
                    tp: &p.tp,
                    next: p.next.unwrap_or(0),
                    error,
                })
            })
            .collect()
    }

    /// Loads that stopped on an error, with their table.
    pub fn load_failures(&self) -> Vec<(&str, &PipelineError)> {
        self.loads
            .iter()
            .filter_map(|l| l.error.as_ref().map(|e| (l.table.as_str(), e)))
            .collect()
    }

    /// A JSON summary for responses and the CLI.
    pub fn summary(&self) -> serde_json::Value {
        let sum = |p: &PartitionOutcome, f: fn(&Counts) -> u64| -> u64 {
            p.batches.iter().map(|b| f(&b.counts)).sum()
        };
        let list: Vec<PartitionSummary<'_>> = self
            .partitions
            .iter()
            .map(|p| PartitionSummary {
                topic: &p.tp.topic,
                partition: p.tp.partition,
                batches: p.batches.len(),
                read: sum(p, |c| c.read),
                loaded: sum(p, |c| c.loaded),
                filtered: sum(p, |c| c.filtered),
                dead_lettered: sum(p, |c| c.dead_lettered),
                next_offset: p.next,
                high_watermark: p.high_watermark,
                error: p.error.as_ref().map(ToString::to_string),
            })
            .collect();
        let loads: Vec<LoadSummary<'_>> = self
            .loads
            .iter()
            .map(|l| LoadSummary {
                table: &l.table,
                loads: l.loads,
                batches: l.batches,
                rows: l.rows,
                sessions: l.sessions,
                blocks: l.blocks,
                waiting: l.waiting,
                oldest_waiting_secs: l.oldest_waiting.map(|d| d.as_secs_f64()),
                oldest_loaded_secs: l.oldest_loaded.map(|d| d.as_secs_f64()),
                load_secs: l.load_time.map(|d| d.as_secs_f64()),
                error: l.error.as_ref().map(ToString::to_string),
            })
            .collect();
        serde_json::json!({ "partitions": list, "loads": loads })
    }
}
