//! The benchmark's results: every run kept, medians per system and data set, the ratios the
//! issue's targets are stated in, the targets met or not, as JSON and as a Markdown table.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use crate::data::DataSet;
use crate::measure::Measured;

const STAGES: [&str; 6] = ["fetch", "transform", "encode", "stage", "load", "commit"];

/// One measured run of one system.
#[derive(Debug, Clone)]
pub struct Run {
    pub system: &'static str,
    pub records: u64,
    pub bytes: u64,
    pub m: Measured,
    pub stage_seconds: BTreeMap<String, f64>,
    /// CPU seconds each of the stack's servers (tansu, s3s-fs, the emulator) spent during the
    /// run, by server name.
    pub stack_cpu: BTreeMap<&'static str, f64>,
}

/// The stack's servers, in the order the tables show them.
const SERVERS: [&str; 3] = ["tansu", "s3s-fs", "emulator"];

impl Run {
    /// CPU seconds the stack's servers spent during the run, together.
    fn stack_cpu_s(&self) -> f64 {
        self.stack_cpu.values().sum()
    }

    /// CPU microseconds of the system's own process per record.
    fn cpu_us_per_record(&self) -> f64 {
        self.m.cpu_s * 1e6 / self.records.max(1) as f64
    }

    /// A run whose stdout is `{"records": N, "bytes": B}`.
    pub fn from_json(system: &'static str, m: &Measured) -> anyhow::Result<Run> {
        let v: Value = serde_json::from_str(m.stdout.trim())
            .with_context(|| format!("{system} printed {:?}", m.stdout))?;
        Ok(Run {
            system,
            records: v["records"].as_u64().context("records")?,
            bytes: v["bytes"].as_u64().context("bytes")?,
            m: m.clone(),
            stage_seconds: BTreeMap::new(),
            stack_cpu: BTreeMap::new(),
        })
    }

    /// A k2mc run with its `--stats` file.
    pub fn from_stats(system: &'static str, m: &Measured, stats: &Value) -> anyhow::Result<Run> {
        Ok(Run {
            system,
            records: stats["records"].as_u64().context("records")?,
            bytes: stats["bytes"].as_u64().context("bytes")?,
            m: m.clone(),
            stage_seconds: STAGES
                .iter()
                .map(|s| {
                    (
                        (*s).to_owned(),
                        stats["stage_seconds"][s].as_f64().unwrap_or(0.0),
                    )
                })
                .collect(),
            stack_cpu: BTreeMap::new(),
        })
    }
}

/// Everything measured in one benchmark run.
#[derive(Debug)]
pub struct Report {
    reps: usize,
    sets: Vec<(DataSet, Vec<Run>)>,
    memory: Option<(u64, Measured)>,
    /// Per data set, the uncompressed size of every block k2mc's loads committed, per run.
    blocks: Vec<(String, Vec<u64>)>,
    cold: Vec<Duration>,
}

/// The lowest and the highest of `xs`.
fn spread(xs: impl Iterator<Item = f64>) -> [f64; 2] {
    xs.fold([f64::INFINITY, f64::NEG_INFINITY], |[lo, hi], x| {
        [lo.min(x), hi.max(x)]
    })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

impl Report {
    pub fn new(reps: usize) -> Report {
        Report {
            reps,
            sets: Vec::new(),
            memory: None,
            blocks: Vec::new(),
            cold: Vec::new(),
        }
    }

    pub fn add(&mut self, set: &DataSet, run: Run) {
        match self.sets.iter_mut().find(|(s, _)| s.name == set.name) {
            Some((_, runs)) => runs.push(run),
            None => self.sets.push((set.clone(), vec![run])),
        }
    }

    /// The blocks one k2mc run committed (uncompressed bytes each, as the emulator stored them).
    pub fn blocks(&mut self, set: &DataSet, sizes: Vec<u64>) {
        self.blocks.push((set.name.clone(), sizes));
    }

    /// The k2mc backfill over a shorter range, for the memory comparison.
    pub fn memory(&mut self, records: u64, m: &Measured) {
        self.memory = Some((records, m.clone()));
    }

    pub fn cold_start(&mut self, d: Duration) {
        self.cold.push(d);
    }

    /// The result document: medians, ratios and targets.
    pub fn finish(&self) -> anyhow::Result<Value> {
        let mut datasets = Vec::new();
        let mut targets = Vec::new();
        let mut full_rss = None;
        for (set, runs) in &self.sets {
            let mut systems = serde_json::Map::new();
            for system in [
                "rskafka read",
                "k2mc",
                "k2mc before",
                "python peer",
                "strong python peer",
            ] {
                let mine: Vec<&Run> = runs.iter().filter(|r| r.system == system).collect();
                if mine.is_empty() {
                    continue;
                }
                let med = |f: &dyn Fn(&Run) -> f64| median(mine.iter().map(|r| f(r)).collect());
                let mut entry = json!({
                    "records_per_s": med(&|r| r.records as f64 / r.m.wall_s),
                    "mb_per_s": med(&|r| r.bytes as f64 / 1e6 / r.m.wall_s),
                    "wall_s": med(&|r| r.m.wall_s),
                    "cpu_s": med(&|r| r.m.cpu_s),
                    "cpu_us_per_record": med(&Run::cpu_us_per_record),
                    // The spread over the runs: on this machine kind a lever's effect is only told
                    // apart from noise when the two builds' ranges separate.
                    "cpu_us_per_record_range": spread(mine.iter().map(|r| r.cpu_us_per_record())),
                    "stack_cpu_s": med(&|r| r.stack_cpu_s()),
                    "stack_cpu_s_by_server": SERVERS
                        .iter()
                        .map(|s| ((*s).to_owned(), json!(med(&|r| r.stack_cpu.get(s).copied().unwrap_or(0.0)))))
                        .collect::<serde_json::Map<String, Value>>(),
                    "max_rss_mb": med(&|r| r.m.max_rss_mb),
                    "minor_faults": med(&|r| r.m.minor_faults as f64),
                    "runs": mine.iter().map(|r| json!({
                        "records": r.records, "bytes": r.bytes, "wall_s": r.m.wall_s,
                        "cpu_s": r.m.cpu_s, "max_rss_mb": r.m.max_rss_mb, "minor_faults": r.m.minor_faults, "stack_cpu_s": r.stack_cpu_s(),
                        "stack_cpu_s_by_server": r.stack_cpu,
                        "stage_seconds": r.stage_seconds,
                    })).collect::<Vec<_>>(),
                });
                if system.starts_with("k2mc") {
                    let stages: serde_json::Map<String, Value> = STAGES
                        .iter()
                        .map(|s| ((*s).to_owned(), json!(med(&|r| r.stage_seconds[*s]))))
                        .collect();
                    entry["stage_seconds"] = Value::Object(stages);
                    if set.name == "1kb" && system == "k2mc" {
                        full_rss = Some((set.records, med(&|r| r.m.max_rss_mb)));
                    }
                }
                systems.insert(system.to_owned(), entry);
            }
            let rate = |s: &str| systems.get(s).and_then(|e| e["records_per_s"].as_f64());
            let ratio = |a: &str, b: &str| rate(a).zip(rate(b)).map(|(a, b)| a / b);
            // Records per CPU-second of the system's own process (the stack's servers not counted).
            let per_cpu = |s: &str| {
                systems.get(s).and_then(|e| {
                    let cpu = e["cpu_s"].as_f64()?;
                    (cpu > 0.0).then(|| set.records as f64 / cpu)
                })
            };
            let cpu_ratio = |a: &str, b: &str| per_cpu(a).zip(per_cpu(b)).map(|(a, b)| a / b);
            let vs_read = ratio("k2mc", "rskafka read");
            let vs_peer = ratio("k2mc", "python peer");
            let vs_strong = ratio("k2mc", "strong python peer");
            let cpu_vs_strong = cpu_ratio("k2mc", "strong python peer");
            let cpu_vs_peer = cpu_ratio("k2mc", "python peer");
            let cpu_vs_before = cpu_ratio("k2mc", "k2mc before");
            let vs_before = ratio("k2mc", "k2mc before");
            let cpu_us = systems
                .get("k2mc")
                .and_then(|e| e["cpu_s"].as_f64())
                .map(|cpu| cpu * 1e6 / set.records as f64);
            for (what, goal, measured, at_least) in [
                ("k2mc / raw read", ">= 0.6", vs_read, 0.6),
                ("k2mc / python peer", ">= 20", vs_peer, 20.0),
                (
                    "k2mc / strong python peer, records/s",
                    ">= 3",
                    vs_strong,
                    3.0,
                ),
                (
                    "k2mc / strong python peer, records per CPU-second",
                    ">= 4",
                    cpu_vs_strong,
                    4.0,
                ),
                (
                    "k2mc / python peer, records per CPU-second",
                    ">= 20",
                    cpu_vs_peer,
                    20.0,
                ),
                (
                    "k2mc / k2mc before, records per CPU-second",
                    ">= 5",
                    cpu_vs_before,
                    5.0,
                ),
            ] {
                if measured.is_none() && what.contains("before") {
                    continue;
                }
                targets.push(target(
                    &format!("{}: {what}", set.name),
                    goal,
                    measured,
                    |x| x >= at_least,
                ));
            }
            // MaxCompute's batch Tunnel takes 500 blocks per table per 5 minutes: with blocks of
            // the size this run wrote, a table takes at most 500 / 300 blocks a second.
            let sizes: Vec<u64> = self
                .blocks
                .iter()
                .filter(|(name, _)| *name == set.name)
                .flat_map(|(_, b)| b.iter().copied())
                .collect();
            let runs = self
                .blocks
                .iter()
                .filter(|(name, _)| *name == set.name)
                .count();
            let quota = (!sizes.is_empty()).then(|| {
                let mean = sizes.iter().sum::<u64>() as f64 / sizes.len() as f64;
                json!({
                    "blocks_per_run": sizes.len() as f64 / runs.max(1) as f64,
                    "mean_block_mb": mean / 1e6,
                    "table_ceiling_mb_per_s": 500.0 / 300.0 * mean / 1e6,
                    "ceiling_at_64_mib_mb_per_s": 500.0 / 300.0 * 64.0 * 1024.0 * 1024.0 / 1e6,
                })
            });
            datasets.push(json!({
                "name": set.name, "record_bytes": set.record_bytes, "records": set.records,
                "systems": systems,
                "tunnel_quota": quota,
                "ratios": {"k2mc / rskafka read": vs_read, "k2mc / python peer": vs_peer,
                    "k2mc / strong python peer": vs_strong,
                    "k2mc / strong python peer, records per CPU-second": cpu_vs_strong,
                    "k2mc / python peer, records per CPU-second": cpu_vs_peer,
                    "k2mc / k2mc before": vs_before,
                    "k2mc / k2mc before, records per CPU-second": cpu_vs_before},
                "k2mc_cpu_us_per_record": cpu_us,
            }));
        }
        let memory = match (&self.memory, full_rss) {
            (Some((small, m)), Some((full, rss))) => {
                targets.push(target(
                    "1kb: k2mc peak RSS (MB)",
                    "<= 256",
                    Some(rss),
                    |x| x <= 256.0,
                ));
                let growth = rss / m.max_rss_mb;
                targets.push(target(
                    &format!("k2mc peak RSS, {full} / {small} records"),
                    "<= 1.10",
                    Some(growth),
                    |x| x <= 1.10,
                ));
                json!({"small_records": small, "small_max_rss_mb": m.max_rss_mb,
                       "full_records": full, "full_max_rss_mb": rss, "ratio": growth})
            }
            _ => Value::Null,
        };
        let cold_ms: Vec<f64> = self.cold.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        let cold_median = median(cold_ms.clone());
        // The bound (three precompiled transforms, to the first Runtime API poll).
        targets.push(target(
            "cold start to first poll (ms)",
            "<= 20",
            Some(cold_median),
            |x| x <= 20.0,
        ));
        Ok(json!({
            "machine": machine(),
            "reps": self.reps,
            "datasets": datasets,
            "memory": memory,
            "cold_start_ms": {"median": cold_median, "runs": cold_ms},
            "targets": targets,
        }))
    }
}

fn target(name: &str, goal: &str, measured: Option<f64>, met: impl Fn(f64) -> bool) -> Value {
    json!({"name": name, "target": goal, "measured": measured, "met": measured.map(met)})
}

/// The machine and the versions the numbers were measured with.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{cores} cores ({cpu}); {rustc}; tansu 0.6.0 (memory storage), s3s-fs 0.14.1, kafka-python 3.0.12, confluent-kafka 2.16.1 (librdkafka 2.16.0), orjson 3.13.0, pyodps 0.13.2; {}",
        chrono::Utc::now().format("%Y-%m-%d")
    )
}

/// Ends a table's header row (its two text columns already written) with `columns`, right-aligned.
fn numeric_columns(out: &mut String, columns: &[&str]) {
    for c in columns {
        out.push_str(&format!(" {c} |"));
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---:|".repeat(columns.len()));
    out.push('\n');
}

/// The Markdown tables of a result document.
pub fn markdown(result: &Value) -> String {
    let mut out = format!(
        "Measured on {}, medians of {} runs.\n\n",
        result["machine"].as_str().unwrap_or(""),
        result["reps"]
    );
    out.push_str("| data set | system | records/s | MB/s | wall s | CPU s | CPU µs/record (runs' range) | stack CPU s | peak RSS MB | page faults k |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let empty = Vec::new();
    for d in result["datasets"].as_array().unwrap_or(&empty) {
        for (system, e) in d["systems"].as_object().into_iter().flatten() {
            out.push_str(&format!(
                "| {} × {} | {system} | {:.0} | {:.1} | {:.2} | {:.2} | {:.1} ({:.1}–{:.1}) | {:.2} | {:.0} | {:.1} |\n",
                d["name"].as_str().unwrap_or(""),
                d["records"],
                e["records_per_s"].as_f64().unwrap_or(0.0),
                e["mb_per_s"].as_f64().unwrap_or(0.0),
                e["wall_s"].as_f64().unwrap_or(0.0),
                e["cpu_s"].as_f64().unwrap_or(0.0),
                e["cpu_us_per_record"].as_f64().unwrap_or(0.0),
                e["cpu_us_per_record_range"][0].as_f64().unwrap_or(0.0),
                e["cpu_us_per_record_range"][1].as_f64().unwrap_or(0.0),
                e["stack_cpu_s"].as_f64().unwrap_or(0.0),
                e["max_rss_mb"].as_f64().unwrap_or(0.0),
                e["minor_faults"].as_f64().unwrap_or(0.0) / 1e3,
            ));
        }
    }
    out.push_str(
        "\nThe stack's CPU per server (seconds, medians; what the local Kafka, bucket and MaxCompute \
         stand-ins spent while each system ran, not counted in its own CPU):\n\n| data set | system |",
    );
    numeric_columns(&mut out, &SERVERS);
    for d in result["datasets"].as_array().unwrap_or(&empty) {
        for (system, e) in d["systems"].as_object().into_iter().flatten() {
            out.push_str(&format!(
                "| {} | {system} |",
                d["name"].as_str().unwrap_or("")
            ));
            for s in SERVERS {
                let cpu = e["stack_cpu_s_by_server"][s].as_f64().unwrap_or(0.0);
                out.push_str(&format!(" {cpu:.2} |"));
            }
            out.push('\n');
        }
    }
    out.push_str(
        "\nk2mc time per stage (seconds, median run; summed over batches; transform is summed over \
         its worker threads, which run beside fetch and encode; load includes the table loads after \
         the batches):\n\n| data set | build |",
    );
    numeric_columns(&mut out, &STAGES);
    for d in result["datasets"].as_array().unwrap_or(&empty) {
        for build in ["k2mc", "k2mc before"] {
            let stages = &d["systems"][build]["stage_seconds"];
            if stages.is_null() {
                continue;
            }
            out.push_str(&format!(
                "| {} | {build} |",
                d["name"].as_str().unwrap_or("")
            ));
            for s in STAGES {
                out.push_str(&format!(" {:.2} |", stages[s].as_f64().unwrap_or(0.0)));
            }
            out.push('\n');
        }
    }
    out.push_str(
        "\nPer-table ceiling at the batch Tunnel's 500 blocks per 5 minutes (uncompressed MB/s a table can take with the \
         blocks k2mc's loads wrote in this run; a data set smaller than `load.block_bytes` writes one short block, so \
         its ceiling says little; the last column is the ceiling with full 64 MiB blocks):\n\n\
         | data set | blocks per run | mean block MB | table ceiling MB/s | k2mc MB/s (Kafka bytes) | at 64 MiB blocks |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for d in result["datasets"].as_array().unwrap_or(&empty) {
        let q = &d["tunnel_quota"];
        if q.is_null() {
            continue;
        }
        out.push_str(&format!(
            "| {} | {:.1} | {:.2} | {:.1} | {:.1} | {:.0} |\n",
            d["name"].as_str().unwrap_or(""),
            q["blocks_per_run"].as_f64().unwrap_or(0.0),
            q["mean_block_mb"].as_f64().unwrap_or(0.0),
            q["table_ceiling_mb_per_s"].as_f64().unwrap_or(0.0),
            d["systems"]["k2mc"]["mb_per_s"].as_f64().unwrap_or(0.0),
            q["ceiling_at_64_mib_mb_per_s"].as_f64().unwrap_or(0.0),
        ));
    }
    out.push_str("\n| target | goal | measured | met |\n|---|---|---:|---|\n");
    for t in result["targets"].as_array().unwrap_or(&empty) {
        let measured = t["measured"]
            .as_f64()
            .map_or("n/a".into(), |m| format!("{m:.2}"));
        let met = match t["met"].as_bool() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "n/a",
        };
        out.push_str(&format!(
            "| {} | {} | {measured} | {met} |\n",
            t["name"].as_str().unwrap_or(""),
            t["target"].as_str().unwrap_or("")
        ));
    }
    out
}
