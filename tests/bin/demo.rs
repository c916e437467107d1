//! The README's "run the main job" command, after `infra/local/setup`: starts the local stack
//! (tansu, s3s-fs, the MaxCompute emulator, a schema registry stand-in), produces the sample
//! vehicle and click events and an Avro topic (written by confluent-kafka's `AvroSerializer`)
//! to Kafka, runs one schedule tick per sample through the real `k2mc` binary, and prints what
//! pyodps reads from MaxCompute and `k2mc status`. Everything it starts stops when it exits.

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::Context;
use harness::stack::{Stack, k2mc_env, write_config};
use harness::{Emulator, repo_root, transform_wasm, workspace_bin};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;

const VEHICLE_COLUMNS: &str = r#"[{"name": "vehicle_id", "type": "string", "nullable": false},
 {"name": "brand", "type": "string"}, {"name": "average_speed", "type": "double"},
 {"name": "total_miles", "type": "bigint"}, {"name": "event_time", "type": "datetime"},
 {"name": "owner_phone", "type": "string"}]"#;

const CLICK_COLUMNS: &str = r#"[{"name": "user_hash", "type": "string", "source": "user.id", "nullable": false},
 {"name": "session_id", "type": "string", "source": "session"}, {"name": "url", "type": "string"},
 {"name": "referrer", "type": "string"}, {"name": "device", "type": "string"},
 {"name": "click_time", "type": "datetime", "source": "ts"},
 {"name": "kafka_offset", "type": "bigint", "source": "__offset__"}]"#;

/// One sample stream: a topic, a table and the transform chain that fills it.
struct Sample {
    file: &'static str,
    topic: &'static str,
    table: &'static str,
    ddl: &'static str,
    partition: &'static str,
    transforms: String,
    extra: &'static str,
}

/// A `[[transforms]]` entry of the config.
fn stage(name: &str, settings: &str) -> anyhow::Result<String> {
    let wasm = transform_wasm(name)?.display().to_string();
    Ok(format!(
        "[[transforms]]\nname = \"{name}\"\nwasm = {wasm:?}\nsettings = {{ {settings} }}\n\n"
    ))
}

fn samples() -> anyhow::Result<Vec<Sample>> {
    let columns = |json: &str| format!("columns = '''{}'''", json.replace('\n', " "));
    Ok(vec![
        Sample {
            file: "vehicle.jsonl",
            topic: "vehicles",
            table: "vehicle",
            ddl: "CREATE TABLE IF NOT EXISTS vehicle (vehicle_id string, brand string, average_speed double, total_miles bigint, event_time datetime, owner_phone string) PARTITIONED BY (ds string)",
            partition: "ds={event_time:%Y%m%d}",
            // The DataWorks seed's filter, then the phone mask (keep the first 3 and last 4).
            transforms: [
                stage("kafka-columns", &columns(VEHICLE_COLUMNS))?,
                stage(
                    "filter",
                    r#"predicate = "average_speed <= 90 && total_miles <= 200000""#,
                )?,
                stage("mask", r#""column.owner_phone" = "phone""#)?,
            ]
            .concat(),
            extra: "",
        },
        Sample {
            file: "click.jsonl",
            topic: "clicks",
            table: "click",
            ddl: "CREATE TABLE IF NOT EXISTS click (user_hash string, session_id string, url string, referrer string, device string, click_time datetime, kafka_offset bigint) PARTITIONED BY (ds string, hh string)",
            partition: "ds={click_time:%Y%m%d},hh={click_time:%H}",
            // User ids become a keyed hash (stable, so joins still work); a click whose time does
            // not parse is a dead letter, tolerated up to the error limit.
            transforms: [
                stage("kafka-columns", &columns(CLICK_COLUMNS))?,
                stage(
                    "mask",
                    r#""column.user_hash" = "hmac-sha256", "hmac-key" = "local-demo-key""#,
                )?,
            ]
            .concat(),
            extra: "[limits]\nerror_limit = 1\n",
        },
    ])
}

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
    let mc = harness::client(&emulator)?;
    for sample in samples()? {
        run_sample(&rt, &mc, &stack, &emulator, dir.path(), &sample)
            .with_context(|| format!("the {} sample", sample.topic))?;
    }
    run_avro_sample(&rt, &mc, &stack, &emulator, dir.path()).context("the Avro sample")
}

/// An Avro topic into its own table: records written by confluent-kafka's `AvroSerializer`
/// against the registry stand-in, the table created from `k2mc schema ddl`, one tick.
fn run_avro_sample(
    rt: &tokio::runtime::Runtime,
    mc: &k2mc::maxcompute::MaxComputeClient,
    stack: &Stack,
    emulator: &Emulator,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    use base64::Engine as _;
    let (topic, table) = ("orders_avro", "orders_avro");
    let registry = harness::registry::SchemaRegistry::start(&[])?;
    let lines = harness::registry::run_serializer(
        "serialize.py",
        &[
            "--registry",
            &registry.url,
            "--topic",
            topic,
            "--scenario",
            "types",
        ],
    )?;
    let values: Vec<Vec<u8>> = lines
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)?;
            Ok(base64::engine::general_purpose::STANDARD
                .decode(v["value"].as_str().context("a value")?)?)
        })
        .collect::<anyhow::Result<_>>()?;
    rt.block_on(async {
        let client = ClientBuilder::new(vec![stack.bootstrap()]).build().await?;
        client
            .controller_client()?
            .create_topic(topic, 1, 1, 5_000)
            .await?;
        let pc = client
            .partition_client(topic, 0, UnknownTopicHandling::Retry)
            .await?;
        let records = values
            .into_iter()
            .map(|v| Record {
                key: None,
                value: Some(v),
                headers: BTreeMap::new(),
                timestamp: chrono::Utc::now(),
            })
            .collect();
        pc.produce(records, Compression::NoCompression).await?;
        anyhow::Ok(())
    })?;
    println!(
        "\n== produced {} Avro records (confluent-kafka AvroSerializer, schema registry {}) to topic {topic}",
        lines.lines().count(),
        registry.url
    );
    let config = dir.join(format!("{topic}.toml"));
    let wasm = transform_wasm("registry")?.display().to_string();
    write_config(
        &config,
        stack,
        &emulator.endpoint(),
        "local",
        &[topic],
        table,
        "",
        &format!(
            "[[transforms]]\nname = \"registry\"\nwasm = {wasm:?}\nregistry = true\nsettings = {{ subject = \"{topic}-value\" }}\n"
        ),
        &format!("[registry]\nurl = \"{}\"\n", registry.url),
    )?;
    let ddl = k2mc(&config, &["schema", "ddl"])?;
    println!("== k2mc schema ddl (from subject {topic}-value):\n{ddl}");
    rt.block_on(mc.run_sql(&ddl, &[]))?;
    println!("== k2mc run (one schedule tick)");
    print!("{}", k2mc(&config, &["run"])?);
    println!("== rows pyodps 0.13.2 reads from MaxCompute ({table})");
    print!(
        "{}",
        emulator.pyodps(&["dump", table]).context("pyodps dump")?
    );
    Ok(())
}

/// Runs `k2mc ARGS --config CONFIG` with the stack's environment; its stdout (its logs go to
/// the terminal). Fails naming the command.
fn k2mc(config: &std::path::Path, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new(workspace_bin("k2mc")?);
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .stderr(std::process::Stdio::inherit());
    for (k, v) in k2mc_env() {
        cmd.env(k, v);
    }
    let out = cmd.output()?;
    anyhow::ensure!(out.status.success(), "k2mc {} failed", args.join(" "));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Produces a sample to its topic, runs one tick, prints the rows, the status and dead letters.
fn run_sample(
    rt: &tokio::runtime::Runtime,
    mc: &k2mc::maxcompute::MaxComputeClient,
    stack: &Stack,
    emulator: &Emulator,
    dir: &std::path::Path,
    sample: &Sample,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(repo_root().join("infra/local/sample").join(sample.file))?;
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    rt.block_on(async {
        mc.run_sql(sample.ddl, &[]).await?;
        let client = ClientBuilder::new(vec![stack.bootstrap()]).build().await?;
        client
            .controller_client()?
            .create_topic(sample.topic, 2, 1, 5_000)
            .await?;
        for (p, chunk) in lines.chunks(lines.len().div_ceil(2)).enumerate() {
            let pc = client
                .partition_client(sample.topic, p as i32, UnknownTopicHandling::Retry)
                .await?;
            let records = chunk
                .iter()
                .map(|l| Record {
                    key: None,
                    value: Some(l.clone().into_bytes()),
                    headers: BTreeMap::new(),
                    timestamp: chrono::Utc::now(),
                })
                .collect();
            pc.produce(records, Compression::NoCompression).await?;
        }
        anyhow::Ok(())
    })?;
    println!(
        "\n== produced {} events of infra/local/sample/{} to topic {} (2 partitions)",
        lines.len(),
        sample.file,
        sample.topic
    );
    let config = dir.join(format!("{}.toml", sample.topic));
    write_config(
        &config,
        stack,
        &emulator.endpoint(),
        "local",
        &[sample.topic],
        sample.table,
        sample.partition,
        &sample.transforms,
        sample.extra,
    )?;
    println!(
        "== config {}:\n{}",
        config.display(),
        std::fs::read_to_string(&config)?
    );
    println!("== k2mc run (one schedule tick)");
    print!("{}", k2mc(&config, &["run"])?);
    println!(
        "== rows pyodps 0.13.2 reads from MaxCompute ({}, every partition)",
        sample.table
    );
    print!(
        "{}",
        emulator
            .pyodps(&["dump", sample.table, "--all-partitions"])
            .context("pyodps dump")?
    );
    println!("== k2mc status");
    print!("{}", k2mc(&config, &["status"])?);
    println!("== k2mc dead-letters list");
    print!("{}", k2mc(&config, &["dead-letters", "list"])?);
    Ok(())
}
