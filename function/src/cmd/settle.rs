//! `k2mc settle`: the way out of a batch whose commit cannot be told (`commit-unknown`): an
//! upload session whose commit was requested and whose status no longer says whether it
//! committed (`EXPIRED` past the Tunnel's 24-hour lifetime, `CRITICAL`). The operator checks the
//! table for the batch's offsets and records the answer in the batch's intent; the next run
//! then confirms the batch (`committed`) or loads it in a new session (`not-committed`). Only
//! destinations in that state are touched (`docs/reliability.md`, "Session status").

use anyhow::{Context, bail};
use k2mc::maxcompute::{PartitionSpec, SessionState};
use k2mc::pipeline::commit::{CommitLog, LogScope, TopicPartition};

use super::RunArgs;

/// What the operator found in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Finding {
    /// The batch's rows are in the table: record the sessions as committed.
    Committed,
    /// They are not: the next run loads the batch in a new session.
    NotCommitted,
}

/// `k2mc settle` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct SettleArgs {
    #[command(flatten)]
    run: RunArgs,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    partition: i32,
    /// The batch's first offset (the error names it).
    #[arg(long)]
    start: i64,
    /// The log scope (the error names it; default: the config's cluster).
    #[arg(long)]
    scope: Option<String>,
    /// The destination partition whose session is in doubt (the error names it; needed when
    /// more than one session of the batch is): each is settled by its own partition's rows.
    #[arg(long)]
    destination: Option<String>,
    /// What the table shows.
    #[arg(long = "as", value_enum)]
    finding: Finding,
}

/// Records the finding in the batch's intent.
pub(crate) async fn run(args: SettleArgs) -> anyhow::Result<()> {
    let config = args.run.load_config()?;
    let conns = k2mc::app::connections(&config).await?;
    let scope = args
        .scope
        .as_deref()
        .map_or_else(|| LogScope::main(&config.kafka.cluster), LogScope::parse);
    let log = CommitLog::new(conns.staging.clone(), scope.clone());
    let tp = TopicPartition::new(args.topic.clone(), args.partition);
    if log.entry(&tp, args.start).await?.is_some() {
        bail!(
            "{tp} batch at {} in {scope} is committed; nothing to settle",
            args.start
        );
    }
    let Some((mut intent, etag)) = log.intent(&tp, args.start).await? else {
        bail!(
            "{tp} has no batch fixed at offset {} in {scope}; give --start as the commit-unknown error names it",
            args.start
        );
    };
    let table = intent
        .table
        .clone()
        .unwrap_or_else(|| config.maxcompute.table.clone());
    // The sessions in doubt by the intent, narrowed to the one destination named.
    let in_doubt: Vec<String> = intent
        .destinations
        .iter()
        .filter(|d| d.upload_id.is_some() && d.commit_requested && !d.settled_committed)
        .map(|d| d.partition.clone())
        .collect();
    if let Some(want) = &args.destination
        && !in_doubt.contains(want)
    {
        bail!(
            "{tp} batch at {}: no session in doubt has destination '{want}' (in doubt: {in_doubt:?})",
            args.start
        );
    }
    if args.destination.is_none() && in_doubt.len() > 1 {
        bail!(
            "{tp} batch at {} has {} sessions in doubt (destinations {in_doubt:?}); one finding cannot settle them all: check each partition and settle it with --destination",
            args.start,
            in_doubt.len()
        );
    }
    let mut settled = 0;
    for dest in &mut intent.destinations {
        let Some(id) = dest.upload_id.clone() else {
            continue;
        };
        if !dest.commit_requested || dest.settled_committed {
            continue;
        }
        if args
            .destination
            .as_ref()
            .is_some_and(|w| *w != dest.partition)
        {
            continue;
        }
        let partition = if dest.partition.is_empty() {
            None
        } else {
            Some(PartitionSpec::parse(&dest.partition)?)
        };
        let session = conns
            .maxcompute
            .reload_upload_session(&table, partition.as_ref(), &id)
            .await
            .with_context(|| format!("reading upload session {id}"))?;
        if session.state() != SessionState::Unknown {
            eprintln!(
                "session {id} (partition '{}') is {}: its status settles it; left as it is",
                dest.partition, session.status
            );
            continue;
        }
        match args.finding {
            Finding::Committed => dest.settled_committed = true,
            Finding::NotCommitted => {
                dest.upload_id = None;
                dest.commit_requested = false;
            }
        }
        eprintln!(
            "session {id} (partition '{}', {}): recorded as {:?}",
            dest.partition, session.status, args.finding
        );
        settled += 1;
    }
    if settled == 0 {
        bail!("no session of this batch is in doubt; nothing changed");
    }
    if log.update_intent(&intent, &etag).await?.is_none() {
        bail!("the batch's intent changed while settling (a run is under way?); run settle again");
    }
    println!(
        "settled {settled} session(s) of {tp} [{}, {}); the next run completes the batch",
        intent.batch.start, intent.batch.end
    );
    Ok(())
}
