//! The load step's entry point on [`App`] (`docs/architecture.md`, "Staging and loading"):
//! after an invocation has staged, each table of the project whose load is due is loaded by
//! `pipeline/loader.rs`; a Kafka event's invocation passing by looks only now and then.

use std::time::Instant;

use super::App;
use crate::metrics;
use crate::pipeline::commit::TableQueue;
use crate::pipeline::loader::{LoadMode, LoadOutcome, Loader};

impl App {
    /// Loads the staged batches of each table of the project whose load is due (every table
    /// with staged batches when forced), after finishing the loads in flight
    /// (`docs/architecture.md`, "Staging and loading"); see [`LoadMode`].
    pub async fn load(&self, mode: LoadMode) -> Vec<LoadOutcome> {
        if mode == LoadMode::Passing {
            let spacing = self.config.load.interval / 2;
            let Ok(mut last) = self.passing_check.lock() else {
                return Vec::new();
            };
            if last.is_some_and(|t| t.elapsed() < spacing) {
                return Vec::new();
            }
            *last = Some(Instant::now());
        }
        let staging = self.log.staging();
        let project = &self.config.maxcompute.project;
        let cluster = &self.config.kafka.cluster;
        let loader = Loader {
            staging,
            cluster,
            project,
            maxcompute: &self.maxcompute,
            settings: &self.config.load,
            create_partitions: self.config.maxcompute.create_partitions,
        };
        let tables = match TableQueue::tables(staging, cluster, project).await {
            Ok(tables) => tables,
            Err(error) => {
                return vec![LoadOutcome {
                    table: format!("{project}.*"),
                    error: Some(error),
                    ..LoadOutcome::default()
                }];
            }
        };
        let mut out = Vec::with_capacity(tables.len());
        for table in tables {
            let outcome = loader.table(&table, mode).await;
            if self.emit_metrics {
                metrics::emit_load(&outcome);
            }
            out.push(outcome);
        }
        out
    }
}
