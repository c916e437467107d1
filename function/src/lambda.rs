//! The Lambda `bootstrap`: when `AWS_LAMBDA_RUNTIME_API` is set, `k2mc` cold-starts the
//! [`App`] once and serves invocations through `lambda_runtime`. A Kafka event gets the partial
//! batch response (failed partitions and the offset to redeliver from); a schedule tick that
//! leaves a partition failed returns an error, so Lambda's error metric and alarms see it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use k2mc::app::App;
use k2mc::config::Config;
use k2mc::trigger::{Trigger, batch_item_failures, parse_event};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

/// Where the config is read from in Lambda: `K2MC_CONFIG`, else `k2mc.toml` in the task root.
fn config_path() -> std::path::PathBuf {
    std::env::var_os("K2MC_CONFIG")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::path::Path::new(&std::env::var("LAMBDA_TASK_ROOT").unwrap_or_else(|_| ".".into()))
                .join("k2mc.toml")
        })
}

/// Serves invocations until the runtime stops the process.
pub async fn serve() -> anyhow::Result<()> {
    let path = config_path();
    let config = Config::load(&path, std::env::vars())
        .with_context(|| format!("loading {}", path.display()))?;
    let mut app = App::start(config).await?;
    app.emit_metrics = true;
    let app = Arc::new(app);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let app = Arc::clone(&app);
        async move {
            let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
            let left = Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
            let response = handle(
                &app,
                &event.payload,
                Instant::now() + left,
                &event.context.request_id,
            )
            .await;
            response.map_err(|e| lambda_runtime::Error::from(format!("{e:#}")))
        }
    }))
    .await
    .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))
}

/// Handles one event; shared with `k2mc invoke`.
pub async fn handle(
    app: &App,
    event: &Value,
    deadline: Instant,
    invocation: &str,
) -> anyhow::Result<Value> {
    let trigger = parse_event(event, chrono::Utc::now())?;
    let report = app.invoke(&trigger, deadline, invocation).await?;
    let failures = report.failures();
    for (tp, next, err) in &failures {
        tracing::error!(invocation, topic = %tp.topic, partition = tp.partition, next, error = %err, kind = err.kind(), "partition failed");
    }
    match trigger {
        Trigger::Kafka { .. } => {
            let failed: Vec<_> = failures
                .iter()
                .map(|(tp, next, _)| (tp.clone(), *next))
                .collect();
            let mut response = batch_item_failures(&failed);
            response["k2mc"] = report.summary();
            Ok(response)
        }
        Trigger::Schedule { .. } if failures.is_empty() => Ok(report.summary()),
        Trigger::Schedule { .. } => {
            let (tp, next, err) = &failures[0];
            anyhow::bail!(
                "{} partition(s) failed; first: {tp} at offset {next}: {err}",
                failures.len()
            )
        }
    }
}
