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
//! (the same backfill over a tenth of the range) and the cold start to the first Runtime API poll
//! with three precompiled transforms. Writes `result.json`, `result.md` and `chart.png`.
//!
//! `cargo run --release -p k2mc-it --bin bench-pipeline -- [--records-1k N] [--records-10k N]
//! [--reps R] [--cold-starts C] [--out DIR]`

mod data;
mod measure;
mod report;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, ensure};
use clap::Parser;
use data::DataSet;
use harness::stack::{Stack, k2mc_env, write_config};
use harness::{Emulator, python, repo_root, transform_wasm, workspace_bin};
use measure::Measured;
use report::{Report, Run};

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
    let emulator = Emulator::start(&dir.path().join("maxcompute"))?;
    let stack = Stack::start(dir.path())?;
    let mc = harness::client(&emulator)?;
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
        let config = k2mc_config(&stack, &emulator, dir.path(), set, &ours)?;
        let mut seen = 0;
        for rep in 0..args.reps {
            for table in std::iter::once(&ours).chain(peers.iter().map(|p| &p.2)) {
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
            let raw = measure::run(
                Command::new(std::env::current_exe()?).args([
                    "--read-range",
                    &stack.bootstrap(),
                    &set.topic(),
                    &set.records.to_string(),
                ]),
                &log("read"),
            )?;
            report.add(set, Run::from_json("rskafka read", &raw)?);

            eprintln!(
                "bench: {} rep {}/{}: k2mc backfill",
                set.name,
                rep + 1,
                args.reps
            );
            let stats = out
                .join("logs")
                .join(format!("{}-k2mc-{rep}.json", set.name));
            let m = backfill(
                &k2mc,
                &config,
                set.records,
                &format!("rep{rep}"),
                &stats,
                &log("k2mc"),
            )?;
            let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats)?)?;
            report.add(set, Run::from_stats("k2mc", &m, &stats)?);
            check_rows(&sql, &ours, set.records)?;
            report.blocks(set, committed_blocks(&emulator, &ours, &mut seen)?);

            for (system, script, peer) in &peers {
                eprintln!(
                    "bench: {} rep {}/{}: {system}",
                    set.name,
                    rep + 1,
                    args.reps
                );
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
                report.add(set, Run::from_json(system, &m)?);
                check_rows(&sql, peer, set.records)?;
                if rep == 0 {
                    same_rows(&sql, &ours, peer)?;
                }
            }
        }
        if set.name == "1kb" {
            // Memory must not grow with the range: the same backfill over a tenth of it.
            let small = (set.records / 10).max(1);
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

/// The uncompressed sizes of the blocks of the sessions committed to `table` since the first
/// `seen` (the emulator keeps every committed session's block sizes); moves `seen` on.
fn committed_blocks(
    emulator: &Emulator,
    table: &str,
    seen: &mut usize,
) -> anyhow::Result<Vec<u64>> {
    let quotas = emulator.quotas()?;
    let sessions = quotas["committed_blocks"][format!("{}.{table}", harness::PROJECT)]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let sizes = sessions
        .iter()
        .skip(*seen)
        .flat_map(|s| s.as_array().cloned().unwrap_or_default())
        .filter_map(|b| b.as_u64())
        .collect();
    *seen = sessions.len();
    Ok(sizes)
}

/// k2mc's config for a data set: the stack's broker, S3 (s3s-fs itself: one process writes, so
/// the test front that linearizes racing writers is not needed) and the emulator.
fn k2mc_config(
    stack: &Stack,
    emulator: &Emulator,
    dir: &Path,
    set: &DataSet,
    table: &str,
) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{}.toml", set.name));
    let transforms = data::transforms_toml(
        &transform_wasm("kafka-columns")?.display().to_string(),
        &transform_wasm("mask")?.display().to_string(),
    );
    bench_config(&path, stack, emulator, &set.topic(), table, &transforms)?;
    let text = std::fs::read_to_string(&path)?.replace(
        &stack.s3_endpoint(),
        &format!("http://127.0.0.1:{}", stack.s3.port),
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

/// A k2mc config for the stack, reading `topic` into `table` partitioned by the event day.
fn bench_config(
    path: &Path,
    stack: &Stack,
    emulator: &Emulator,
    topic: &str,
    table: &str,
    transforms: &str,
) -> anyhow::Result<()> {
    write_config(
        path,
        stack,
        &emulator.endpoint(),
        "bench",
        &[topic],
        table,
        "ds={event_time:%Y%m%d}",
        transforms,
        "",
    )
}

/// `k2mc backfill` of offsets `0..records` under its own name, measured.
fn backfill(
    k2mc: &Path,
    config: &Path,
    records: u64,
    name: &str,
    stats: &Path,
    log: &Path,
) -> anyhow::Result<Measured> {
    let mut cmd = Command::new(k2mc);
    cmd.args(["backfill", "--from", "offset:0"])
        .arg(format!("--to=offset:{records}"))
        .args(["--name", name])
        .arg("--config")
        .arg(config)
        .arg("--stats")
        .arg(stats);
    for (k, v) in k2mc_env() {
        cmd.env(k, v);
    }
    measure::run(&mut cmd, log)
}

/// Fails unless the table holds exactly `expected` rows.
fn check_rows(
    sql: &impl Fn(String) -> anyhow::Result<k2mc::maxcompute::SqlResult>,
    table: &str,
    expected: u64,
) -> anyhow::Result<()> {
    let result = sql(format!("SELECT count(*) FROM {table}"))?;
    let (_, rows) = result.rows()?;
    let count: u64 = rows
        .first()
        .and_then(|r| r.first())
        .context("count(*) returned no row")?
        .parse()?;
    ensure!(
        count == expected,
        "{table} holds {count} rows, expected {expected}"
    );
    Ok(())
}

/// Fails unless both pipelines wrote the same first rows (same work, row for row).
fn same_rows(
    sql: &impl Fn(String) -> anyhow::Result<k2mc::maxcompute::SqlResult>,
    ours: &str,
    peer: &str,
) -> anyhow::Result<()> {
    let first = |t: &str| -> anyhow::Result<Vec<Vec<String>>> {
        Ok(sql(format!(
            "SELECT * FROM {t} WHERE {} LIMIT 3",
            data::PARTITION.replace('=', "='") + "'"
        ))?
        .rows()?
        .1)
    };
    let (a, b) = (first(ours)?, first(peer)?);
    ensure!(a == b, "{ours} and {peer} differ:\n{a:?}\n{b:?}");
    Ok(())
}

/// A config with three precompiled transforms (`kafka-columns`, `mask`, `filter`), the `.cwasm`
/// beside each `.wasm` as the package ships them, reading `topic` into `table`, for the cold start.
fn cold_start_config(
    k2mc: &Path,
    stack: &Stack,
    emulator: &Emulator,
    dir: &Path,
    (topic, table): (&str, &str),
) -> anyhow::Result<PathBuf> {
    let shipped = dir.join("cold/transforms");
    std::fs::create_dir_all(&shipped)?;
    let mut wasms = Vec::new();
    for name in ["kafka-columns", "filter", "mask"] {
        let src = transform_wasm(name)?;
        let dst = shipped.join(src.file_name().context("wasm file name")?);
        std::fs::copy(&src, &dst)?;
        wasms.push(dst);
    }
    let status = Command::new(k2mc)
        .args(["transforms", "precompile"])
        .args(&wasms)
        .arg("--out")
        .arg(&shipped)
        .status()?;
    ensure!(status.success(), "k2mc transforms precompile failed");
    let mut transforms = data::transforms_toml(
        &wasms[0].display().to_string(),
        &wasms[2].display().to_string(),
    );
    transforms.push_str(&format!(
        "\n[[transforms]]\nname = \"filter\"\nwasm = {:?}\nsettings = {{ predicate = \"amount >= 0\" }}\n",
        wasms[1].display().to_string()
    ));
    let path = dir.join("cold.toml");
    bench_config(&path, stack, emulator, topic, table, &transforms)?;
    Ok(path)
}
