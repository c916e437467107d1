//! `k2mc invoke`: the Lambda handler on an event file, in-process.

use std::path::PathBuf;

use anyhow::Context;
use k2mc::app::App;

use super::{RunArgs, invocation_id};

/// `--event` and the run arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct InvokeArgs {
    #[command(flatten)]
    run: RunArgs,
    /// A Lambda event: a schedule (EventBridge) event or a Kafka event source mapping payload.
    #[arg(long)]
    event: PathBuf,
}

/// Runs the handler on the event and prints its response.
pub(crate) async fn run(args: InvokeArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.event)
        .with_context(|| format!("reading event {}", args.event.display()))?;
    let event: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", args.event.display()))?;
    let app = App::start(args.run.load_config()?).await?;
    let response =
        k2mc::handler::handle(&app, &event, args.run.deadline(), &invocation_id()).await?;
    println!("{}", serde_json::to_string_pretty(&response)?);
    Ok(())
}
