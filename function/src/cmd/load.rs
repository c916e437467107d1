//! `k2mc load`: loads the staged batches of the project's tables now, whatever `[load]` says
//! (`docs/architecture.md`, "Staging and loading"), after finishing any load in flight. What a
//! schedule tick does when a load is due, by hand: after a backfill, before a check of the
//! table, or to see a quiet topic's last records at once.

use anyhow::bail;
use k2mc::app::App;
use k2mc::pipeline::LoadMode;

use super::RunArgs;

/// `k2mc load` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct LoadArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Load only what is due by `[load]` (as an invocation does), not everything staged.
    #[arg(long)]
    due: bool,
}

/// Runs the loads and prints what each table's did.
pub(crate) async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let app = App::start(args.run.load_config()?).await?;
    let outcomes = app
        .load(if args.due {
            LoadMode::Due
        } else {
            LoadMode::Forced
        })
        .await;
    let report = k2mc::report::InvocationReport {
        loads: outcomes,
        ..Default::default()
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&report.summary()["loads"])?
    );
    let failures = report.load_failures();
    if !failures.is_empty() {
        for (table, error) in &failures {
            eprintln!("error: loading table {table}: {error}");
        }
        bail!("{} table(s) did not load", failures.len());
    }
    Ok(())
}
