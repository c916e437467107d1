//! `k2mc dead-letters list | replay`: the dead letters of the config's cluster (its main log, its
//! backfills and its replays) that committed batches name, and loading them again through the
//! current transforms, exactly once per object.

use clap::Subcommand;
use k2mc::app::App;
use k2mc::deadletters;

use super::{RunArgs, invocation_id};

/// `list` or `replay`.
#[derive(Debug, Subcommand)]
pub(crate) enum DeadLettersCommand {
    /// List the dead-letter objects of committed batches with their record counts.
    List {
        #[command(flatten)]
        run: RunArgs,
        /// Print `{"objects": [{"key": …, "dead_letters": n}, …]}` instead of key<TAB>count lines.
        #[arg(long)]
        json: bool,
    },
    /// Load dead letters again through the current transforms (exactly once per object).
    Replay {
        #[command(flatten)]
        run: RunArgs,
        /// A dead-letter object key as `list` prints it (repeatable; default: all of them).
        #[arg(long = "key")]
        keys: Vec<String>,
    },
}

/// Runs a `k2mc dead-letters` command.
pub(crate) async fn run(command: DeadLettersCommand) -> anyhow::Result<()> {
    match command {
        DeadLettersCommand::List { run, json } => {
            let config = run.load_config()?;
            let conns = k2mc::app::connections(&config).await?;
            let mut objects = Vec::new();
            let listed = deadletters::list(&conns.staging, &config.kafka.cluster).await?;
            let uncommitted = listed.iter().filter(|l| !l.committed).count();
            for key in listed.into_iter().filter(|l| l.committed).map(|l| l.key) {
                let n = deadletters::count(&conns.staging, &key).await?;
                if json {
                    objects.push(serde_json::json!({ "key": key, "dead_letters": n }));
                } else {
                    println!("{key}\t{n}");
                }
            }
            if json {
                let doc = serde_json::json!({ "objects": objects });
                println!("{}", serde_json::to_string_pretty(&doc)?);
            }
            if uncommitted > 0 {
                eprintln!(
                    "({uncommitted} more from staging attempts that did not commit; their records were settled by the attempts that did, and replay ignores them)"
                );
            }
            Ok(())
        }
        DeadLettersCommand::Replay { run, keys } => {
            let app = App::start(run.load_config()?).await?;
            let keys = if keys.is_empty() {
                deadletters::list(app.log.staging(), &app.config.kafka.cluster)
                    .await?
                    .into_iter()
                    .filter(|l| l.committed)
                    .map(|l| l.key)
                    .collect()
            } else {
                keys
            };
            let invocation = invocation_id();
            for key in keys {
                for r in app.replay(&key, &invocation).await? {
                    println!(
                        "{key}: read {} loaded {} filtered {} still dead {}",
                        r.counts.read, r.counts.loaded, r.counts.filtered, r.counts.dead_lettered
                    );
                }
            }
            // The replayed batches are staged; they load as any invocation's do, when due.
            for outcome in app.load(k2mc::pipeline::LoadMode::Due).await {
                if let Some(error) = outcome.error {
                    anyhow::bail!("loading table {}: {error}", outcome.table);
                }
            }
            Ok(())
        }
    }
}
