//! The Lambda handler: when `AWS_LAMBDA_RUNTIME_API` is set, `k2mc` cold-starts the [`App`] once
//! ([`serve`]) and runs every event through [`handle`]: trigger → [`App::invoke`] → response. A
//! Kafka event gets the partial batch response (failed partitions and the offset to redeliver
//! from); a schedule tick that leaves a partition failed returns an error, so Lambda's error
//! metric and alarms see it. Errors reach Lambda as one [`HandlerError`], typed by
//! [`crate::error::Class`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;
use thiserror::Error;

use crate::app::App;
use crate::config::Config;
use crate::error::{Class, PipelineError};
use crate::trigger::{Trigger, batch_item_failures, parse_event};

/// Why an invocation failed, as Lambda and `k2mc invoke` report it.
#[derive(Debug, Error)]
pub enum HandlerError {
    /// The event could not be read, or the invocation failed before any partition ran.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// A schedule tick left partitions failed; `first` is the first of them.
    #[error("{failed} partition(s) failed; first: {tp} at offset {next}: {first}")]
    Partitions {
        failed: usize,
        tp: String,
        next: i64,
        first: PipelineError,
        /// The first failure's class (kept: the error itself is moved out of the report).
        class: Class,
    },
}

impl HandlerError {
    /// The class that decides the Lambda error type.
    pub fn class(&self) -> Class {
        match self {
            HandlerError::Pipeline(e) => e.class(),
            HandlerError::Partitions { class, .. } => *class,
        }
    }
}

impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Self {
        Diagnostic {
            error_type: e.class().lambda_error_type(),
            error_message: e.to_string(),
        }
    }
}

/// Where the config is read from in Lambda: `K2MC_CONFIG`, else `k2mc.toml` in the task root.
pub fn config_path() -> PathBuf {
    std::env::var_os("K2MC_CONFIG")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::path::Path::new(&std::env::var("LAMBDA_TASK_ROOT").unwrap_or_else(|_| ".".into()))
                .join("k2mc.toml")
        })
}

/// Why the Lambda runtime loop could not start or stopped.
#[derive(Debug, Error)]
pub enum ServeError {
    #[error(transparent)]
    Start(#[from] PipelineError),
    #[error("lambda runtime: {0}")]
    Runtime(lambda_runtime::Error),
}

/// Cold-starts from `config` and serves invocations until the runtime stops the process. After
/// an invocation that left the app stale (a schema change that adds columns), the app starts
/// again before the next one, so that no row is read with the old columns.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    let mut app = App::start(config.clone()).await?;
    app.emit_metrics = true;
    let current = Arc::new(std::sync::RwLock::new(Arc::new(app)));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (current, config) = (Arc::clone(&current), config.clone());
        async move {
            let app = Arc::clone(&current.read().unwrap_or_else(|p| p.into_inner()));
            let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
            let left = Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
            let deadline = Instant::now() + left;
            let response = handle(&app, &event.payload, deadline, &event.context.request_id).await;
            if app.is_stale() {
                match App::start(config).await {
                    Ok(mut fresh) => {
                        fresh.emit_metrics = true;
                        tracing::info!("started again after a schema change");
                        *current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
                    }
                    // The next invocation finds the app still stale and tries again.
                    Err(e) => tracing::error!(error = %e, kind = e.kind(), "starting again after a schema change failed"),
                }
            }
            response
        }
    }))
    .await
    .map_err(ServeError::Runtime)
}

/// Handles one event: the response Lambda returns. Shared with `k2mc invoke`.
pub async fn handle(
    app: &App,
    event: &Value,
    deadline: Instant,
    invocation: &str,
) -> Result<Value, HandlerError> {
    let trigger = parse_event(event, chrono::Utc::now()).map_err(PipelineError::from)?;
    let mut report = app.invoke(&trigger, deadline, invocation).await?;
    for f in report.failures() {
        tracing::error!(invocation, topic = %f.tp.topic, partition = f.tp.partition, next = f.next, error = %f.error, kind = f.error.kind(), "partition failed");
    }
    for (table, error) in report.load_failures() {
        tracing::error!(invocation, table, error = %error, kind = error.kind(), "load failed");
    }
    match trigger {
        Trigger::Kafka { .. } => {
            let failed: Vec<_> = report
                .failures()
                .iter()
                .map(|f| (f.tp.clone(), f.next))
                .collect();
            let mut response = batch_item_failures(&failed);
            response["k2mc"] = report.summary();
            Ok(response)
        }
        Trigger::Schedule { .. } | Trigger::Load { .. } => {
            let failed = report.failures().len();
            let Some(first) = report.partitions.iter_mut().find(|p| p.error.is_some()) else {
                // A load that failed fails the tick (its alarm fires; the next tick resumes the
                // load). An event source mapping's batch is not failed for it: its records are
                // staged, and redelivering them would not help.
                if let Some(load) = report.loads.iter_mut().find(|l| l.error.is_some())
                    && let Some(error) = load.error.take()
                {
                    return Err(HandlerError::Pipeline(error));
                }
                return Ok(report.summary());
            };
            let next = first.next.unwrap_or(0);
            let tp = first.tp.to_string();
            let Some(error) = first.error.take() else {
                return Ok(report.summary());
            };
            Err(HandlerError::Partitions {
                failed,
                tp,
                next,
                class: error.class(),
                first: error,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_reach_lambda_typed_by_their_class() {
        let d: Diagnostic = HandlerError::Pipeline(PipelineError::UnknownTopic {
            topic: "clicks".into(),
        })
        .into();
        assert_eq!(d.error_type, "NonRetryable.unknown-topic");
        assert!(d.error_message.contains("clicks"), "{}", d.error_message);
        let first = PipelineError::Staging(crate::staging::StagingError::Task {
            bucket: "b".into(),
            message: "cancelled".into(),
        });
        let d: Diagnostic = HandlerError::Partitions {
            failed: 2,
            tp: "clicks-3".into(),
            next: 40,
            class: first.class(),
            first,
        }
        .into();
        assert_eq!(d.error_type, "Retryable.storage");
        assert!(
            d.error_message.starts_with(
                "2 partition(s) failed; first: clicks-3 at offset 40: staging bucket b"
            ),
            "{}",
            d.error_message
        );
    }
}
