//! `k2mc run`: one schedule tick of every configured topic, as the Lambda handler runs it.

use k2mc::app::App;
use k2mc::trigger::Trigger;

use super::{RunArgs, invocation_id, print_report};

/// Runs one schedule tick and prints what it did.
pub(crate) async fn run(args: RunArgs) -> anyhow::Result<()> {
    let app = App::start(args.load_config()?).await?;
    let trigger = Trigger::Schedule {
        time: chrono::Utc::now(),
        topics: Vec::new(),
        partitions: Vec::new(),
    };
    let report = app
        .invoke(&trigger, args.deadline(), &invocation_id())
        .await?;
    print_report(&report)
}
