//! `k2mc status`: per partition, the committed offset, the high watermark, the lag, the last
//! commit, the dead letters and the offsets skipped as lost, from the commit log and the brokers only. `--json` prints one
//! JSON document for scripts and tests.

use k2mc::deadletters;
use k2mc::kafka::Kafka;
use k2mc::pipeline::commit::{CommitLog, LogScope, TopicPartition};
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
    /// The first offset not committed; `null` when the partition was never synced.
    committed: Option<i64>,
    high_watermark: i64,
    /// Records written but not committed (0 for a partition never synced).
    lag: i64,
    /// When the last batch was committed (RFC 3339, UTC).
    last_commit: Option<String>,
    dead_letters: usize,
    /// Offsets deleted by retention before they were synced and skipped with `k2mc skip-lost`.
    lost: u64,
}

/// Prints every partition's status.
pub(crate) async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let config = args.run.load_config()?;
    let conns = k2mc::app::connections(&config).await?;
    let kafka = Kafka::connect(&config.kafka, &conns.kafka).await?;
    let scope = LogScope::main(&config.kafka.cluster);
    let log = CommitLog::new(conns.staging.clone(), scope.clone());
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
            rows.push(PartitionStatus {
                topic: topic.clone(),
                partition,
                committed: position.next,
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
            serde_json::to_string_pretty(&serde_json::json!({ "partitions": rows }))?
        );
        return Ok(());
    }
    println!(
        "{:<24} {:>5} {:>12} {:>14} {:>10} {:<20} {:>12} {:>8}",
        "topic",
        "part",
        "committed",
        "high_watermark",
        "lag",
        "last_commit",
        "dead_letters",
        "lost"
    );
    for r in rows {
        let committed = r.committed.map_or("-".to_owned(), |n| n.to_string());
        let last = r.last_commit.as_deref().unwrap_or("-");
        println!(
            "{:<24} {:>5} {committed:>12} {:>14} {:>10} {last:<20} {:>12} {:>8}",
            r.topic, r.partition, r.high_watermark, r.lag, r.dead_letters, r.lost
        );
    }
    Ok(())
}
