//! The `k2mc` command line: one file per subcommand. The sync commands go through the same
//! [`k2mc::app::App`] and [`k2mc::handler`] the Lambda bootstrap uses, so `k2mc run` is exactly
//! what a schedule tick does.

mod backfill;
mod dead_letters;
mod invoke;
mod load;
mod maxcompute;
mod run;
mod scaffold;
mod schema;
mod settle;
mod skip_lost;
mod status;
mod transforms;
mod validate;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Parser, Subcommand};
use k2mc::config::Config;
use k2mc::report::InvocationReport;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "k2mc",
    version,
    about = "Exactly-once Kafka to MaxCompute sync"
)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One schedule tick, exactly as the Lambda handler runs it: every partition of the
    /// configured topics, from the commit log to the high watermark.
    Run(RunArgs),
    /// Load a bounded offset or time range [from, to) of the configured topics.
    Backfill(backfill::BackfillArgs),
    /// Run the handler on a Lambda event JSON file (schedule, MSK or self-managed Kafka).
    Invoke(invoke::InvokeArgs),
    /// Load the staged batches of every table now (a schedule tick loads them when due).
    Load(load::LoadArgs),
    /// Per partition: committed and visible offsets, high watermark, lag, last commit, what is
    /// staged and not loaded, dead letters; per table, what waits for a load.
    Status(status::StatusArgs),
    /// Check the config, transforms, table and connectivity; name every problem and its fix.
    Validate(RunArgs),
    /// Record whether a batch whose commit cannot be told (error `commit-unknown`) landed.
    Settle(settle::SettleArgs),
    /// Skip offsets retention deleted before they were synced (error `offsets-lost`), on
    /// purpose and visibly: recorded in the log with the count lost.
    #[command(name = "skip-lost")]
    SkipLost(skip_lost::SkipLostArgs),
    /// Dead letters in the staging bucket.
    #[command(name = "dead-letters", subcommand)]
    DeadLetters(dead_letters::DeadLettersCommand),
    /// Work with a MaxCompute project directly (SQL, schemas, Tunnel upload and download).
    #[command(name = "maxcompute")]
    MaxCompute(Box<maxcompute::McArgs>),
    /// Try and package transform components.
    #[command(subcommand)]
    Transforms(transforms::TransformsCommand),
    /// Table definitions from the chain's output (for a registry subject: from its schema).
    #[command(subcommand)]
    Schema(schema::SchemaCommand),
}

/// Runs a parsed command line.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Run(a) => run::run(a).await,
        Command::Backfill(a) => backfill::run(a).await,
        Command::Invoke(a) => invoke::run(a).await,
        Command::Load(a) => load::run(a).await,
        Command::Status(a) => status::run(a).await,
        Command::Validate(a) => validate::run(a).await,
        Command::Settle(a) => settle::run(a).await,
        Command::SkipLost(a) => skip_lost::run(a).await,
        Command::DeadLetters(c) => dead_letters::run(c).await,
        Command::MaxCompute(mc) => maxcompute::run(*mc).await,
        Command::Transforms(t) => transforms::run(t),
        Command::Schema(s) => schema::run(s).await,
    }
}

/// `--config` and how long the command may run.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The TOML config file (environment variables K2MC__SECTION__KEY override keys).
    #[arg(long, env = "K2MC_CONFIG")]
    config: PathBuf,
    /// Stop starting new batches after this many seconds (a Lambda's timeout plays this role).
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
}

impl RunArgs {
    fn load_config(&self) -> anyhow::Result<Config> {
        Ok(Config::load(&self.config, std::env::vars())?)
    }

    fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs(self.timeout_secs)
    }
}

/// A name for a command-line invocation in logs and log entries.
fn invocation_id() -> String {
    format!(
        "cli-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    )
}

/// Prints the report's summary; fails naming every partition that stopped.
fn print_report(report: &InvocationReport) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&report.summary())?);
    let failures = report.failures();
    for f in &failures {
        eprintln!("error: {} stopped at offset {}: {}", f.tp, f.next, f.error);
    }
    let loads = report.load_failures();
    for (table, error) in &loads {
        eprintln!("error: loading table {table}: {error}");
    }
    if !failures.is_empty() {
        bail!("{} partition(s) did not finish", failures.len());
    }
    if !loads.is_empty() {
        bail!("{} table(s) did not load", loads.len());
    }
    Ok(())
}
