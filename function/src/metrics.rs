//! Metrics in CloudWatch Embedded Metric Format: one JSON line per batch on stdout, which the
//! Lambda runtime ships to CloudWatch Logs, where they become metrics in the `k2mc` namespace:
//! totals over everything (what the deployment's alarms watch) and by topic and by partition.
//! The same counts are in the commit-log entry.

use std::time::Duration;

use serde_json::json;

use crate::pipeline::LoadOutcome;
use crate::pipeline::commit::Counts;
use crate::report::PartitionOutcome;

/// The namespace metrics are published under.
pub const NAMESPACE: &str = "k2mc";

/// Time spent in each stage of one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimes {
    pub fetch: Duration,
    pub transform: Duration,
    pub encode: Duration,
    pub stage: Duration,
    pub load: Duration,
    pub commit: Duration,
}

impl StageTimes {
    /// The stages by name, in pipeline order.
    pub fn named(&self) -> [(&'static str, Duration); 6] {
        [
            ("fetch", self.fetch),
            ("transform", self.transform),
            ("encode", self.encode),
            ("stage", self.stage),
            ("load", self.load),
            ("commit", self.commit),
        ]
    }

    /// Adds another batch's times.
    pub fn add(&mut self, other: &StageTimes) {
        self.fetch += other.fetch;
        self.transform += other.transform;
        self.encode += other.encode;
        self.stage += other.stage;
        self.load += other.load;
        self.commit += other.commit;
    }
}

/// Prints the EMF document of every batch of `outcome` on stdout, where the Lambda runtime
/// ships it to CloudWatch Logs.
pub fn emit(outcome: &PartitionOutcome) {
    for b in &outcome.batches {
        let lag = outcome.high_watermark.unwrap_or(b.batch.end) - b.batch.end;
        let doc = batch_document(
            &outcome.tp.topic,
            outcome.tp.partition,
            &b.counts,
            lag.max(0),
            &b.times,
            chrono::Utc::now().timestamp_millis(),
        );
        println!("{doc}");
    }
}

/// Prints the EMF document of one table's load on stdout: what it loaded and how long the
/// oldest staged batch left waiting has waited (`Freshness`, what the template's freshness
/// alarm watches; 0 when nothing waits).
pub fn emit_load(outcome: &LoadOutcome) {
    println!(
        "{}",
        load_document(outcome, chrono::Utc::now().timestamp_millis())
    );
}

/// The EMF document of one table's load.
pub fn load_document(outcome: &LoadOutcome, timestamp_ms: i64) -> serde_json::Value {
    json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[], ["Table"]],
                "Metrics": [
                    {"Name": "LoadedBatches", "Unit": "Count"},
                    {"Name": "LoadedRows", "Unit": "Count"},
                    {"Name": "LoadBlocks", "Unit": "Count"},
                    {"Name": "StagedWaiting", "Unit": "Count"},
                    {"Name": "FreshnessSeconds", "Unit": "Seconds"},
                    {"Name": "LoadErrors", "Unit": "Count"},
                ],
            }],
        },
        "Table": outcome.table,
        "LoadedBatches": outcome.batches,
        "LoadedRows": outcome.rows,
        "LoadBlocks": outcome.blocks,
        "StagedWaiting": outcome.waiting,
        "FreshnessSeconds": outcome.oldest_waiting.map_or(0.0, |d| d.as_secs_f64()),
        "LoadErrors": u32::from(outcome.error.is_some()),
    })
}

/// The EMF document of one batch.
pub fn batch_document(
    topic: &str,
    partition: i32,
    counts: &Counts,
    lag: i64,
    times: &StageTimes,
    timestamp_ms: i64,
) -> serde_json::Value {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut metrics = vec![
        json!({"Name": "Read", "Unit": "Count"}),
        json!({"Name": "Loaded", "Unit": "Count"}),
        json!({"Name": "Filtered", "Unit": "Count"}),
        json!({"Name": "DeadLettered", "Unit": "Count"}),
        json!({"Name": "Bytes", "Unit": "Bytes"}),
        json!({"Name": "Lag", "Unit": "Count"}),
    ];
    let mut doc = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[], ["Topic"], ["Topic", "Partition"]],
                "Metrics": [],
            }],
        },
        "Topic": topic,
        "Partition": partition.to_string(),
        "Read": counts.read,
        "Loaded": counts.loaded,
        "Filtered": counts.filtered,
        "DeadLettered": counts.dead_lettered,
        "Bytes": counts.bytes,
        "Lag": lag,
    });
    for (name, d) in times.named() {
        let key = format!("{}Ms", capitalize(name));
        metrics.push(json!({"Name": key, "Unit": "Milliseconds"}));
        doc[key] = json!(ms(d));
    }
    doc["_aws"]["CloudWatchMetrics"][0]["Metrics"] = json!(metrics);
    doc
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_names_every_metric_it_sets() {
        let counts = Counts {
            read: 10,
            loaded: 7,
            filtered: 2,
            dead_lettered: 1,
            bytes: 900,
            lost: 0,
        };
        let doc = batch_document("t", 3, &counts, 5, &StageTimes::default(), 0);
        let declared = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap();
        assert_eq!(declared.len(), 12);
        for m in declared {
            let name = m["Name"].as_str().unwrap();
            assert!(doc.get(name).is_some(), "{name} declared but not set");
        }
        assert_eq!(doc["Partition"], "3");
        assert_eq!(doc["Loaded"], 7);
    }
}
