//! `k2mc skip-lost`: the way out of `offsets-lost`, when retention deleted records before they
//! were synced. It records the skip in the commit log on purpose and visibly: an entry over the
//! lost offsets that loads nothing and counts them, and a marker `k2mc status` adds up
//! (`docs/reliability.md`, "Offsets lost to retention"). Nothing else ever moves the log past
//! records it did not load.

use anyhow::bail;
use k2mc::kafka::Kafka;
use k2mc::pipeline::commit::{CommitLog, LogScope, TopicPartition};
use k2mc::staging::Conditional;

use super::{RunArgs, invocation_id};

/// `k2mc skip-lost` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct SkipLostArgs {
    #[command(flatten)]
    run: RunArgs,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    partition: i32,
    /// The log scope (default: the config's cluster, the main log).
    #[arg(long)]
    scope: Option<String>,
}

/// Skips `[next, earliest)` of one partition when, and only when, Kafka no longer has it.
pub(crate) async fn run(args: SkipLostArgs) -> anyhow::Result<()> {
    let config = args.run.load_config()?;
    let conns = k2mc::app::connections(&config).await?;
    let scope = args
        .scope
        .as_deref()
        .map_or_else(|| LogScope::main(&config.kafka.cluster), LogScope::parse);
    let log = CommitLog::new(conns.staging.clone(), scope.clone());
    let tp = TopicPartition::new(args.topic.clone(), args.partition);
    let Some(next) = log.position(&tp).await?.next else {
        bail!("{tp} was never synced in {scope}; there is nothing to skip");
    };
    let kafka = Kafka::connect(&config.kafka, &conns.kafka).await?;
    let earliest = kafka.partition(&tp).await?.earliest().await?;
    if next >= earliest {
        bail!(
            "{tp}: the log is at offset {next} and Kafka still has every record from {earliest}; nothing is lost, so nothing is skipped"
        );
    }
    if log.intent(&tp, next).await?.is_some() {
        bail!(
            "{tp}: the batch at offset {next} was staged before retention deleted its records; run `k2mc run` to load it instead of skipping"
        );
    }
    if log.skip_lost(&tp, next, earliest, &invocation_id()).await? == Conditional::Conflict {
        bail!(
            "{tp}: a batch at offset {next} was committed while skipping (a run is under way?); run skip-lost again if `k2mc status` still reports offsets lost"
        );
    }
    println!(
        "{tp}: skipped offsets [{next}, {earliest}) in {scope}: {} records deleted by retention before they were synced; the log goes on from {earliest}",
        earliest - next
    );
    Ok(())
}
