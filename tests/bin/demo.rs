//! The README's "run the main job" command, after `infra/local/setup`: starts the local stack
//! (tansu, s3s-fs, the MaxCompute emulator), produces the sample vehicle events to Kafka, runs
//! one schedule tick through the real `k2mc` binary, and prints what pyodps reads from
//! MaxCompute and `k2mc status`. Everything it starts stops when it exits.

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::Context;
use harness::stack::{Stack, k2mc_env, write_config};
use harness::{Emulator, repo_root, transform_wasm, workspace_bin};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;

const COLUMNS: &str = r#"[{"name": "vehicle_id", "type": "string", "nullable": false},
 {"name": "brand", "type": "string"}, {"name": "average_speed", "type": "double"},
 {"name": "total_miles", "type": "bigint"}, {"name": "event_time", "type": "datetime"},
 {"name": "owner_phone", "type": "string"}]"#;

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let emulator = Emulator::start(&dir.path().join("maxcompute"))?;
    let stack = Stack::start(dir.path())?;
    println!(
        "== local stack: kafka {} · s3 {} · maxcompute {}",
        stack.bootstrap(),
        stack.s3_endpoint(),
        emulator.endpoint()
    );
    let rt = tokio::runtime::Runtime::new()?;
    let sample = std::fs::read_to_string(repo_root().join("infra/local/sample/vehicle.jsonl"))?;
    let lines: Vec<String> = sample
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let mc = harness::client(&emulator)?;
    rt.block_on(async {
        mc.run_sql("CREATE TABLE IF NOT EXISTS vehicle (vehicle_id string, brand string, average_speed double, total_miles bigint, event_time datetime, owner_phone string) PARTITIONED BY (ds string)", &[]).await?;
        let client = ClientBuilder::new(vec![stack.bootstrap()]).build().await?;
        client.controller_client()?.create_topic("vehicles", 2, 1, 5_000).await?;
        for (p, chunk) in lines.chunks(lines.len().div_ceil(2)).enumerate() {
            let pc = client.partition_client("vehicles", p as i32, UnknownTopicHandling::Retry).await?;
            let records = chunk
                .iter()
                .map(|l| Record { key: None, value: Some(l.clone().into_bytes()), headers: BTreeMap::new(), timestamp: chrono::Utc::now() })
                .collect();
            pc.produce(records, Compression::NoCompression).await?;
        }
        anyhow::Ok(())
    })?;
    println!(
        "== produced {} sample vehicle events to topic vehicles (2 partitions)",
        lines.len()
    );
    let transforms = format!(
        "[[transforms]]\nname = \"kafka-columns\"\nwasm = {:?}\nsettings = {{ columns = '''{}''' }}\n\n[[transforms]]\nname = \"mask\"\nwasm = {:?}\nsettings = {{ \"column.owner_phone\" = \"phone\" }}\n",
        transform_wasm("kafka-columns")?.display().to_string(),
        COLUMNS.replace('\n', " "),
        transform_wasm("mask")?.display().to_string(),
    );
    let config = dir.path().join("k2mc.toml");
    write_config(
        &config,
        &stack,
        &emulator.endpoint(),
        "local",
        &["vehicles"],
        "vehicle",
        "ds={event_time:%Y%m%d}",
        &transforms,
        "",
    )?;
    println!(
        "== config {}:\n{}",
        config.display(),
        std::fs::read_to_string(&config)?
    );
    let k2mc = |args: &[&str]| -> anyhow::Result<()> {
        let mut cmd = Command::new(workspace_bin("k2mc")?);
        cmd.args(args).arg("--config").arg(&config);
        for (k, v) in k2mc_env() {
            cmd.env(k, v);
        }
        let status = cmd.status()?;
        anyhow::ensure!(status.success(), "k2mc {} failed", args.join(" "));
        Ok(())
    };
    println!("== k2mc run (one schedule tick)");
    k2mc(&["run"])?;
    println!("== rows pyodps 0.13.2 reads from MaxCompute (vehicle, every partition)");
    print!(
        "{}",
        emulator
            .pyodps(&["dump", "vehicle", "--all-partitions"])
            .context("pyodps dump")?
    );
    println!("== k2mc status");
    k2mc(&["status"])?;
    Ok(())
}
