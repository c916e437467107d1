//! `bench-pipeline`: k2mc against the raw read limit and against the pipeline a user would write
//! instead, in one run, on the same topic range of the same local stack (tansu, s3s-fs, the
//! MaxCompute emulator):
//!
//! 1. the raw read: the range read with rskafka alone (fetch size and wait as k2mc's);
//! 2. k2mc: `k2mc backfill` with `kafka-columns` + `mask` into the emulator;
//! 3. the Python peer (`tests/bench/peer.py`): kafka-python, `json`, `hashlib`, pyodps's Tunnel
//!    writer into the same emulator;
//! 4. the strong Python peer (`tests/bench/peer_strong.py`): confluent-kafka (librdkafka),
//!    orjson, `datetime.fromisoformat`, `hashlib`, pyodps's Tunnel writer.
//!
//! Each is a separate process measured by the kernel (wall, CPU, peak RSS), several repetitions,
//! medians and ratios; k2mc's time per stage comes from its `--stats`. Then the memory check
//! (the same backfill over half of the range) and the cold start to the first Runtime API poll
//! with three precompiled transforms. Writes `result.json`, `result.md` and `chart.png`.
//!
//! `cargo run --release -p k2mc-it --bin bench-pipeline -- [--records-1k N] [--records-10k N]
//! [--reps R] [--cold-starts C] [--out DIR]`

mod data;
mod measure;
mod report;
mod runs;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, ensure};
use clap::Parser;
use data::DataSet;
use harness::stack::{Stack, k2mc_env};
use harness::{Emulator, python, repo_root, workspace_bin};
use report::{Report, Run};
use runs::{backfill, check_rows, cold_start_config, committed_blocks, k2mc_config, same_rows};

#[derive(Debug, Parser)]
struct Args {
    /// Records of the 1 KB data set.
    #[arg(long, default_value_t = 1_000_000)]
    records_1k: u64,
    /// Records of the 10 KB data set.
    #[arg(long, default_value_t = 100_000)]
    records_10k: u64,
    /// Repetitions of each measurement (medians are reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Cold starts measured.
    #[arg(long, default_value_t = 10)]
    cold_starts: usize,
    /// A build from before the change being measured, run beside k2mc as "k2mc before" (A/B in
    /// one command): a directory holding its `k2mc` binary and its `kafka_columns.wasm` and
    /// `mask.wasm`.
    #[arg(long)]
    before: Option<PathBuf>,
    /// Where result.json, result.md, chart.png and the logs go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Internal: read a range with rskafka alone (the raw read, run as its own process).
    #[arg(long, hide = true, num_args = 3, value_names = ["BOOTSTRAP", "TOPIC", "COUNT"])]
    read_range: Option<Vec<String>>,
}

/// The programs a user would write instead: (system, script in tests/bench, table prefix).
const PEERS: [(&str, &str, &str); 2] = [
    ("python peer", "peer.py", "peer"),
    ("strong python peer", "peer_strong.py", "strong"),
];

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Runtime::new()?;
    if let Some(r) = &args.read_range {
        let (records, bytes) = rt.block_on(data::read_range(&r[0], &r[1], r[2].parse()?))?;
        println!(
            "{}",
            serde_json::json!({"records": records, "bytes": bytes})
        );
        return Ok(());
    }
    ensure!(args.reps >= 1, "--reps must be at least 1");
    let out = repo_root().join(&args.out);
    std::fs::create_dir_all(out.join("logs"))?;
    let dir = tempfile::tempdir()?;
    let k2mc = workspace_bin("k2mc")?;
    // The raw-read baseline runs this program in its `--read-range` mode. The build above may
    // have replaced this very executable (a source edit since it was built), so the path comes
    // from the build, not from `current_exe`, which then names a deleted file.
    let raw_reader = workspace_bin("bench-pipeline")?;
    let emulator = Emulator::start(&dir.path().join("maxcompute"))?;
    let stack = Stack::start(dir.path())?;
    let mc = harness::client(&emulator)?;
    // The stack's own processes, whose CPU is reported beside each run's (not counted in it).
    let servers = [
        ("tansu", stack.kafka.pid()),
        ("s3s-fs", stack.s3.pid()),
        ("emulator", emulator.pid()),
    ];
    let sql = |q: String| rt.block_on(mc.run_sql(&q, &[])).with_context(|| q.clone());
    let mut report = Report::new(args.reps);

    let sets = [
        DataSet {
            name: "1kb".into(),
            record_bytes: 1024,
            records: args.records_1k,
        },
        DataSet {
            name: "10kb".into(),
            record_bytes: 10_240,
            records: args.records_10k,
        },
    ];
    for set in &sets {
        eprintln!(
            "bench: producing {} records of {} bytes",
            set.records, set.record_bytes
        );
        rt.block_on(data::produce(&stack.bootstrap(), set))?;
        let ours = format!("k2mc_{}", set.name);
        let peers: Vec<(&str, &str, String)> = PEERS
            .iter()
            .map(|(system, script, prefix)| (*system, *script, format!("{prefix}_{}", set.name)))
            .collect();
        // The k2mc builds measured: this one, and the one from before the change (`--before`).
        let mut builds = vec![(
            "k2mc",
            k2mc.clone(),
            k2mc_config(&stack, &emulator, dir.path(), set, &ours, None)?,
            ours.clone(),
        )];
        if let Some(before) = &args.before {
            let table = format!("before_{}", set.name);
            let config = k2mc_config(&stack, &emulator, dir.path(), set, &table, Some(before))?;
            builds.push(("k2mc before", before.join("k2mc"), config, table));
        }
        let config = builds[0].2.clone();
        let mut seen = 0;
        for rep in 0..args.reps {
            let tables = builds.iter().map(|b| &b.3);
            for table in tables.chain(peers.iter().map(|p| &p.2)) {
                sql(format!("DROP TABLE IF EXISTS {table}"))?;
                sql(format!("CREATE TABLE {table} {}", data::DDL_COLUMNS))?;
            }
            let log = |what: &str| {
                out.join("logs")
                    .join(format!("{}-{what}-{rep}.log", set.name))
            };
            eprintln!(
                "bench: {} rep {}/{}: rskafka read",
                set.name,
                rep + 1,
                args.reps
            );
            let raw = with_stack_cpu(&servers, || {
                let m = measure::run(
                    Command::new(&raw_reader).args([
                        "--read-range",
                        &stack.bootstrap(),
                        &set.topic(),
                        &set.records.to_string(),
                    ]),
                    &log("read"),
                )?;
                Run::from_json("rskafka read", &m)
            })?;
            report.add(set, raw);

            for (system, bin, config, table) in &builds {
                eprintln!(
                    "bench: {} rep {}/{}: {system} backfill",
                    set.name,
                    rep + 1,
                    args.reps
                );
                let name = system.replace(' ', "-");
                let stats = out
                    .join("logs")
                    .join(format!("{}-{name}-{rep}.json", set.name));
                let run = with_stack_cpu(&servers, || {
                    let m = backfill(
                        bin,
                        config,
                        set.records,
                        &format!("{name}-rep{rep}"),
                        &stats,
                        &log(&name),
                    )?;
                    let stats = std::fs::read_to_string(&stats)?;
                    Run::from_stats(system, &m, &serde_json::from_str(&stats)?)
                })?;
                report.add(set, run);
                check_rows(&sql, table, set.records)?;
                if *system == "k2mc" {
                    report.blocks(set, committed_blocks(&emulator, table, &mut seen)?);
                } else if rep == 0 {
                    same_rows(&sql, &ours, table)?;
                }
            }

            for (system, script, peer) in &peers {
                eprintln!(
                    "bench: {} rep {}/{}: {system}",
                    set.name,
                    rep + 1,
                    args.reps
                );
                let run = with_stack_cpu(&servers, || {
                    let m = measure::run(
                        Command::new(python()?)
                            .arg(repo_root().join("tests/bench").join(script))
                            .args(["--bootstrap", &stack.bootstrap(), "--topic", &set.topic()])
                            .args(["--count", &set.records.to_string()])
                            .args([
                                "--endpoint",
                                &emulator.endpoint(),
                                "--project",
                                harness::PROJECT,
                            ])
                            .args([
                                "--access-id",
                                harness::ACCESS_ID,
                                "--access-key",
                                harness::ACCESS_KEY,
                            ])
                            .args(["--table", peer, "--partition", data::PARTITION])
                            .env("TZ", "UTC"),
                        &log(&script.replace(".py", "")),
                    )?;
                    Run::from_json(system, &m)
                })?;
                report.add(set, run);
                check_rows(&sql, peer, set.records)?;
                if rep == 0 {
                    same_rows(&sql, &ours, peer)?;
                }
            }
        }
        if set.name == "1kb" {
            // Memory must not grow with the range: the same backfill over half of it. At the
            // default size both runs take several passes (256 MB each), so both load a pass
            // beside the next one: a one-pass run, whose load runs alone, would measure the
            // overlap instead of growth with the range.
            let small = (set.records / 2).max(1);
            eprintln!("bench: memory check, k2mc backfill of {small} records");
            sql(format!("DROP TABLE IF EXISTS {ours}"))?;
            sql(format!("CREATE TABLE {ours} {}", data::DDL_COLUMNS))?;
            let stats = out.join("logs/1kb-k2mc-small.json");
            let m = backfill(
                &k2mc,
                &config,
                small,
                "small",
                &stats,
                &out.join("logs/1kb-k2mc-small.log"),
            )?;
            report.memory(small, &m);
        }
    }

    eprintln!("bench: cold start x{}", args.cold_starts);
    // The 1 KB data set's topic and table (left in place by its last run).
    let cold = cold_start_config(
        &k2mc,
        &stack,
        &emulator,
        dir.path(),
        (&sets[0].topic(), &format!("k2mc_{}", sets[0].name)),
    )?;
    for i in 0..args.cold_starts {
        let cache = tempfile::tempdir()?;
        let mut env = k2mc_env();
        env.retain(|(k, _)| *k != "K2MC_ARTIFACT_CACHE");
        env.push(("K2MC_ARTIFACT_CACHE", cache.path().display().to_string()));
        let d = measure::cold_start(&k2mc, &cold, &env, &out.join(format!("logs/cold-{i}.log")))?;
        report.cold_start(d);
    }

    let result = report.finish()?;
    let json_path = out.join("result.json");
    std::fs::write(&json_path, format!("{result:#}\n"))?;
    let markdown = report::markdown(&result);
    std::fs::write(out.join("result.md"), &markdown)?;
    let status = Command::new(python()?)
        .arg(repo_root().join("tests/bench/chart.py"))
        .arg(&json_path)
        .arg(out.join("chart.png"))
        .status()?;
    ensure!(status.success(), "tests/bench/chart.py failed");
    println!("{markdown}");
    eprintln!(
        "bench: wrote {}/result.json, result.md, chart.png",
        out.display()
    );
    Ok(())
}

/// Runs one measured system and adds the CPU each of the stack's `servers` spent meanwhile.
fn with_stack_cpu(
    servers: &[(&'static str, u32)],
    run: impl FnOnce() -> anyhow::Result<Run>,
) -> anyhow::Result<Run> {
    let cpu = || {
        servers
            .iter()
            .map(|&(name, pid)| (name, measure::tree_cpu_s(&[pid])))
            .collect::<Vec<_>>()
    };
    let before = cpu();
    let mut r = run()?;
    for ((name, after), (_, before)) in cpu().into_iter().zip(before) {
        r.stack_cpu.insert(name, after - before);
    }
    Ok(r)
}
