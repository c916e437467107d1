//! `k2mc status`: per partition, the committed (staged) offset, the offset up to which everything
//! is visible in MaxCompute, the high watermark, the lag, the last commit, what is staged and not
//! loaded yet, the dead letters and the offsets skipped as lost; per table, what waits for a load
//! and how long the oldest has waited. From the commit log, the load queue and the brokers only.
//! `--json` prints one JSON document for scripts and tests.

use k2mc::deadletters;
use k2mc::kafka::Kafka;
use k2mc::pipeline::commit::{CommitLog, LogScope, Pending, TableQueue, TopicPartition};
use serde::Serialize;

use super::RunArgs;

/// The run arguments and the output format.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Print `{"partitions": [...]}` as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// One partition's progress.
#[derive(Debug, Serialize)]
struct PartitionStatus {
    topic: String,
    partition: i32,
    /// The first offset not committed (staged); `null` when the partition was never synced.
    committed: Option<i64>,
    /// Completeness: every offset below it is visible in MaxCompute (the first staged batch
    /// not loaded yet, else `committed`).
    visible: Option<i64>,
    /// Rows staged and not loaded yet, and their uncompressed bytes.
    staged_rows: u64,
    staged_bytes: u64,
    high_watermark: i64,
    /// Records written but not committed (0 for a partition never synced).
    lag: i64,
    /// When the last batch was committed (RFC 3339, UTC).
    last_commit: Option<String>,
    dead_letters: usize,
    /// Offsets deleted by retention before they were synced and skipped with `k2mc skip-lost`.
    lost: u64,
}

/// What waits for a load in one table.
#[derive(Debug, Serialize)]
struct TableStatus {
    table: String,
    staged_batches: usize,
    staged_rows: u64,
    staged_bytes: u64,
    /// How long the oldest staged batch has waited, in seconds.
    oldest_staged_secs: Option<i64>,
    loads_in_flight: usize,
}

/// Prints every partition's status.
pub(crate) async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let config = args.run.load_config()?;
    let conns = k2mc::app::connections(&config).await?;
    let kafka = Kafka::connect(&config.kafka, &conns.kafka).await?;
    let scope = LogScope::main(&config.kafka.cluster);
    let log = CommitLog::new(conns.staging.clone(), scope.clone());
    let project = &config.maxcompute.project;
    let mut tables = Vec::new();
    let mut pending: Vec<Pending> = Vec::new();
    let cluster = &config.kafka.cluster;
    for table in TableQueue::tables(&conns.staging, cluster, project).await? {
        let queue = TableQueue::new(conns.staging.clone(), cluster, project, &table);
        let waiting = queue.pending().await?;
        let now = chrono::Utc::now();
        tables.push(TableStatus {
            staged_batches: waiting.len(),
            staged_rows: waiting.iter().map(|p| p.rows).sum(),
            staged_bytes: waiting.iter().map(|p| p.bytes).sum(),
            oldest_staged_secs: waiting
                .iter()
                .filter_map(|p| chrono::DateTime::parse_from_rfc3339(&p.staged_at).ok())
                .min()
                .map(|t| (now - t.with_timezone(&chrono::Utc)).num_seconds()),
            loads_in_flight: queue.load_ids().await?.len(),
            table,
        });
        pending.extend(waiting);
    }
    let scope_text = scope.to_string();
    let mut rows = Vec::new();
    for topic in &config.kafka.topics {
        for partition in kafka.partitions(topic).await? {
            let tp = TopicPartition::new(topic.clone(), partition);
            let position = log.position(&tp).await?;
            let hwm = kafka.partition(&tp).await?.high_watermark().await?;
            let last_commit = position.last.as_ref().map(|e| {
                chrono::DateTime::parse_from_rfc3339(&e.committed_at).map_or_else(
                    |_| e.committed_at.clone(),
                    |t| {
                        t.with_timezone(&chrono::Utc)
                            .format("%Y-%m-%dT%H:%M:%SZ")
                            .to_string()
                    },
                )
            });
            let staged: Vec<&Pending> = pending
                .iter()
                .filter(|p| p.batch.cluster == scope_text && p.batch.tp() == tp)
                .filter(|p| position.next.is_some_and(|n| p.batch.start < n))
                .collect();
            let visible = staged.iter().map(|p| p.batch.start).min().or(position.next);
            rows.push(PartitionStatus {
                topic: topic.clone(),
                partition,
                committed: position.next,
                visible,
                staged_rows: staged.iter().map(|p| p.rows).sum(),
                staged_bytes: staged.iter().map(|p| p.bytes).sum(),
                high_watermark: hwm,
                lag: hwm - position.next.unwrap_or(hwm),
                last_commit,
                dead_letters: deadletters::count_partition(&conns.staging, &scope, &tp).await?,
                lost: log.lost(&tp).await?,
            });
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "partitions": rows, "tables": tables })
            )?
        );
        return Ok(());
    }
    println!(
        "{:<24} {:>5} {:>12} {:>12} {:>14} {:>10} {:<20} {:>11} {:>12} {:>8}",
        "topic",
        "part",
        "committed",
        "visible",
        "high_watermark",
        "lag",
        "last_commit",
        "staged_rows",
        "dead_letters",
        "lost"
    );
    for r in rows {
        let committed = r.committed.map_or("-".to_owned(), |n| n.to_string());
        let visible = r.visible.map_or("-".to_owned(), |n| n.to_string());
        let last = r.last_commit.as_deref().unwrap_or("-");
        println!(
            "{:<24} {:>5} {committed:>12} {visible:>12} {:>14} {:>10} {last:<20} {:>11} {:>12} {:>8}",
            r.topic, r.partition, r.high_watermark, r.lag, r.staged_rows, r.dead_letters, r.lost
        );
    }
    if !tables.is_empty() {
        println!();
        println!(
            "{:<32} {:>14} {:>12} {:>14} {:>12} {:>6}",
            "table", "staged_batches", "staged_rows", "staged_bytes", "oldest_secs", "loads"
        );
        for t in tables {
            let oldest = t
                .oldest_staged_secs
                .map_or("-".to_owned(), |s| s.to_string());
            println!(
                "{:<32} {:>14} {:>12} {:>14} {oldest:>12} {:>6}",
                t.table, t.staged_batches, t.staged_rows, t.staged_bytes, t.loads_in_flight
            );
        }
    }
    Ok(())
}
