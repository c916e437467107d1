//! The load step's entry point on [`App`] (`docs/architecture.md`, "Staging and loading"):
//! after an invocation has staged, each table of the project whose load is due is loaded by
//! `pipeline/loader.rs`; a Kafka event's invocation passing by looks only now and then.

use std::time::Instant;

use super::App;
use crate::metrics;
use crate::pipeline::commit::TableQueue;
use crate::pipeline::loader::{LoadMode, LoadOutcome, Loader};
use k2mc_formats::config::LoadConfig;

impl App {
    /// Loads the staged batches of each table of the project whose load is due (every table
    /// with staged batches when forced), after finishing the loads in flight
    /// (`docs/architecture.md`, "Staging and loading"); see [`LoadMode`].
    pub async fn load(&self, mode: LoadMode) -> Vec<LoadOutcome> {
        self.load_with(mode, &self.config.load).await
    }

    /// [`App::load`] beside staging that holds memory of its own (a backfill's next pass): one
    /// block of a session at a time, whatever `load.parallel_blocks` says. Each block in flight
    /// holds about two staged pieces (`pipeline/loader/body.rs`); beside a pass of 10 KB records,
    /// two blocks at once took the benchmark's peak RSS over 256 MB (`docs/bench/README.md`, "A
    /// backfill's loads beside its next pass's staging").
    pub async fn load_beside_staging(&self, mode: LoadMode) -> Vec<LoadOutcome> {
        let settings = LoadConfig {
            parallel_blocks: 1,
            ..self.config.load.clone()
        };
        self.load_with(mode, &settings).await
    }

    async fn load_with(&self, mode: LoadMode, settings: &LoadConfig) -> Vec<LoadOutcome> {
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
            settings,
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
