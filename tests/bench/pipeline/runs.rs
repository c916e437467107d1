//! k2mc's side of the benchmark: its configs (the bench chain, the cold-start chain with
//! precompiled transforms), a measured `k2mc backfill`, and the checks that a run loaded every
//! record and the same rows as the peers.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, ensure};
use harness::stack::{Stack, k2mc_env, write_config};
use harness::{Emulator, transform_wasm};

use crate::data::{self, DataSet};
use crate::measure::{self, Measured};

/// The uncompressed sizes of the blocks of the sessions committed to `table` since the first
/// `seen` (the emulator keeps every committed session's block sizes); moves `seen` on.
pub fn committed_blocks(
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

/// k2mc's config for a data set (with the components in `before` when given): the stack's broker, S3 (s3s-fs itself: one process writes, so
/// the test front that linearizes racing writers is not needed) and the emulator.
pub fn k2mc_config(
    stack: &Stack,
    emulator: &Emulator,
    dir: &Path,
    set: &DataSet,
    table: &str,
    before: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{table}.toml"));
    // The build before the change being measured brings its own components (`--before`).
    let wasm = |name: &str| match before {
        Some(dir) => Ok(dir.join(format!("{}.wasm", name.replace('-', "_")))),
        None => transform_wasm(name),
    };
    let transforms = data::transforms_toml(
        &wasm("kafka-columns")?.display().to_string(),
        &wasm("mask")?.display().to_string(),
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
pub fn backfill(
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
pub fn check_rows(
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
pub fn same_rows(
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
pub fn cold_start_config(
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
