//! `k2mc settle`: the way out of a session whose commit cannot be told (`commit-unknown`): an
//! upload session whose commit was requested and whose status no longer says whether it
//! committed (`EXPIRED` past the Tunnel's 24-hour lifetime, `CRITICAL`). The operator checks the
//! table for the offsets the error names and records the answer in the load's record (`--load`)
//! or, for a batch a release before loads opened a session for, in the batch's intent; the next
//! run then confirms the rows (`committed`) or loads them in a new session (`not-committed`).
//! Only destinations in that state are touched (`docs/reliability.md`, "Session status").

use anyhow::{Context, bail};
use k2mc::maxcompute::{MaxComputeClient, PartitionSpec, SessionState};
use k2mc::pipeline::commit::{CommitLog, LogScope, SessionRecord, TableQueue, TopicPartition};

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
    /// The load whose session is in doubt (the error names it).
    #[arg(long, conflicts_with_all = ["topic", "partition", "start", "scope"])]
    load: Option<String>,
    /// The load's table (default: the config's).
    #[arg(long, requires = "load")]
    table: Option<String>,
    #[arg(long, required_unless_present = "load")]
    topic: Option<String>,
    #[arg(long, required_unless_present = "load")]
    partition: Option<i32>,
    /// The batch's first offset (the error names it).
    #[arg(long, required_unless_present = "load")]
    start: Option<i64>,
    /// The log scope (the error names it; default: the config's cluster).
    #[arg(long)]
    scope: Option<String>,
    /// The destination partition whose session is in doubt (the error names it; needed when
    /// more than one session is): each is settled by its own partition's rows.
    #[arg(long)]
    destination: Option<String>,
    /// What the table shows.
    #[arg(long = "as", value_enum)]
    finding: Finding,
}

/// Records the finding in the load's record or the batch's intent.
pub(crate) async fn run(args: SettleArgs) -> anyhow::Result<()> {
    let config = args.run.load_config()?;
    let conns = k2mc::app::connections(&config).await?;
    if let Some(id) = &args.load {
        let table = args.table.as_deref().unwrap_or(&config.maxcompute.table);
        let queue = TableQueue::new(
            conns.staging.clone(),
            &config.kafka.cluster,
            &config.maxcompute.project,
            table,
        );
        let Some((mut record, version)) = queue.load_record(id).await? else {
            bail!(
                "table {table} has no load {id} in flight; give --load and --table as the commit-unknown error names them"
            );
        };
        if record.done {
            bail!("load {id} of table {table} is done; nothing to settle");
        }
        let sessions = record
            .destinations
            .iter_mut()
            .map(|d| (d.partition.as_str(), &mut d.session))
            .collect();
        let what = format!("load {id}");
        let settled = settle(&conns.maxcompute, table, sessions, &args, &what).await?;
        if !queue.record_next(&record, version).await? {
            bail!(
                "the load's record changed while settling (a run is under way?); run settle again"
            );
        }
        println!(
            "settled {settled} session(s) of {what} of table {table}; the next run completes the load"
        );
        return Ok(());
    }
    let (Some(topic), Some(partition), Some(start)) = (&args.topic, args.partition, args.start)
    else {
        bail!(
            "give --load, or --topic, --partition and --start, as the commit-unknown error names them"
        );
    };
    let scope = args
        .scope
        .as_deref()
        .map_or_else(|| LogScope::main(&config.kafka.cluster), LogScope::parse);
    let log = CommitLog::new(conns.staging.clone(), scope.clone());
    let tp = TopicPartition::new(topic.clone(), partition);
    if log.entry(&tp, start).await?.is_some_and(|e| !e.staged) {
        bail!("{tp} batch at {start} in {scope} is committed; nothing to settle");
    }
    let Some((mut intent, etag)) = log.intent(&tp, start).await? else {
        bail!(
            "{tp} has no batch fixed at offset {start} in {scope}; give --start as the commit-unknown error names it"
        );
    };
    if let Some(load) = &intent.load {
        bail!(
            "{tp} batch at {start} is loaded by load {load}; settle the load: k2mc settle --load {load} --table <table> …"
        );
    }
    let table = intent
        .table
        .clone()
        .unwrap_or_else(|| config.maxcompute.table.clone());
    let sessions = intent
        .destinations
        .iter_mut()
        .map(|d| (d.partition.as_str(), &mut d.session))
        .collect();
    let what = format!("{tp} batch at {start}");
    let settled = settle(&conns.maxcompute, &table, sessions, &args, &what).await?;
    if log.update_intent(&intent, &etag).await?.is_none() {
        bail!("the batch's intent changed while settling (a run is under way?); run settle again");
    }
    println!(
        "settled {settled} session(s) of {tp} [{}, {}); the next run completes the batch",
        intent.batch.start, intent.batch.end
    );
    Ok(())
}

/// Applies the finding to the sessions in doubt (narrowed to `--destination`); returns how many.
async fn settle(
    mc: &MaxComputeClient,
    table: &str,
    sessions: Vec<(&str, &mut SessionRecord)>,
    args: &SettleArgs,
    what: &str,
) -> anyhow::Result<usize> {
    let in_doubt: Vec<String> = sessions
        .iter()
        .filter(|(_, s)| s.in_doubt())
        .map(|(p, _)| (*p).to_owned())
        .collect();
    if let Some(want) = &args.destination
        && !in_doubt.contains(want)
    {
        bail!("{what}: no session in doubt has destination '{want}' (in doubt: {in_doubt:?})");
    }
    if args.destination.is_none() && in_doubt.len() > 1 {
        bail!(
            "{what} has {} sessions in doubt (destinations {in_doubt:?}); one finding cannot settle them all: check each partition and settle it with --destination",
            in_doubt.len()
        );
    }
    let mut settled = 0;
    for (partition, session) in sessions {
        if !session.in_doubt() || args.destination.as_deref().is_some_and(|w| w != partition) {
            continue;
        }
        let Some(id) = session.upload_id.clone() else {
            continue;
        };
        let spec = if partition.is_empty() {
            None
        } else {
            Some(PartitionSpec::parse(partition)?)
        };
        let status = mc
            .reload_upload_session(table, spec.as_ref(), &id)
            .await
            .with_context(|| format!("reading upload session {id}"))?;
        if status.state() != SessionState::Unknown {
            eprintln!(
                "session {id} (partition '{partition}') is {}: its status settles it; left as it is",
                status.status
            );
            continue;
        }
        match args.finding {
            Finding::Committed => session.settled_committed = true,
            Finding::NotCommitted => {
                session.upload_id = None;
                session.commit_requested = false;
            }
        }
        eprintln!(
            "session {id} (partition '{partition}', {}): recorded as {:?}",
            status.status, args.finding
        );
        settled += 1;
    }
    if settled == 0 {
        bail!("no session of {what} is in doubt; nothing changed");
    }
    Ok(settled)
}
