//! One integration test's slice of the local stack: a topic, a MaxCompute table and a `k2mc`
//! config, with helpers to produce vehicle events, run the real binary and check with pyodps that
//! every record landed exactly once and that the commit log chains.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use harness::stack::{k2mc_env, shared_stack, write_config};
use harness::{Emulator, shared_emulator, transform_wasm, workspace_bin};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;

pub const COLUMNS: &str = r#"[
  {"name": "vehicle_id", "type": "string", "source": "vehicle.id", "nullable": false},
  {"name": "average_speed", "type": "double"},
  {"name": "total_miles", "type": "bigint"},
  {"name": "event_time", "type": "datetime", "source": "ts"},
  {"name": "owner_phone", "type": "string", "source": "owner.phone"},
  {"name": "kafka_offset", "type": "bigint", "source": "__offset__"}
]"#;

/// One test's topic, table and config on the shared stack (or on a broker and an emulator of
/// its own, for the fault tests).
pub struct Case<'e> {
    pub topic: String,
    pub table: String,
    pub config: PathBuf,
    emulator: &'e Emulator,
    bootstrap: String,
    _dir: tempfile::TempDir,
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn transforms_toml() -> String {
    let parser = transform_wasm("kafka-columns").unwrap();
    let mask = transform_wasm("mask").unwrap();
    format!(
        "[[transforms]]\nname = \"kafka-columns\"\nwasm = {parser:?}\nsettings = {{ columns = '''{cols}''', value-type = \"STRING\" }}\n\n[[transforms]]\nname = \"mask\"\nwasm = {mask:?}\nsettings = {{ \"column.owner_phone\" = \"phone\" }}\n",
        parser = parser.display().to_string(),
        mask = mask.display().to_string(),
        cols = COLUMNS.replace('\n', " "),
    )
}

/// Produces vehicle events `ids` (JSON for [`COLUMNS`]) to `partition` of `topic`; `day` picks
/// the event date.
/// The key and value of vehicle event `i` on `day` (JSON for [`COLUMNS`]).
pub fn vehicle(i: u32, day: u32) -> (Vec<u8>, Vec<u8>) {
    (
        format!("V{i}").into_bytes(),
        format!(
            r#"{{"vehicle":{{"id":"V{i}"}},"average_speed":{}.5,"total_miles":{},"ts":"2024-01-{day:02} 08:00:{:02}","owner":{{"phone":"1380013{:04}"}}}}"#,
            i % 120, i * 10, i % 60, i % 10000
        )
        .into_bytes(),
    )
}

/// One record of a Kafka event source mapping payload: vehicle `id` (day 1) at `offset` of
/// `partition`, key and value base64 as the mapping delivers them.
pub fn esm_record(topic: &str, partition: i32, offset: i64, id: u32) -> serde_json::Value {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (key, value) = vehicle(id, 1);
    serde_json::json!({"topic": topic, "partition": partition, "offset": offset, "timestamp": 0,
        "timestampType": "CREATE_TIME", "key": b64.encode(key), "value": b64.encode(value), "headers": []})
}

/// Kafka records of vehicle events `ids` on `day`, as [`vehicle`] makes them.
pub fn vehicle_records(ids: impl Iterator<Item = u32>, day: u32) -> Vec<Record> {
    ids.map(|i| {
        let (key, value) = vehicle(i, day);
        Record {
            key: Some(key),
            value: Some(value),
            headers: BTreeMap::new(),
            timestamp: chrono::Utc::now(),
        }
    })
    .collect()
}

pub async fn produce_vehicles(
    client: &rskafka::client::Client,
    topic: &str,
    partition: i32,
    ids: std::ops::Range<u32>,
    day: u32,
) {
    let pc = client
        .partition_client(topic, partition, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let records = vehicle_records(ids, day);
    // Record batches of four, so that batches and fetches start inside them (tansu 0.6
    // answers such a fetch with nothing; the reader steps back, see kafka.rs).
    for chunk in records.chunks(4) {
        pc.produce(chunk.to_vec(), Compression::NoCompression)
            .await
            .unwrap();
    }
}

/// Every row pyodps reads from every partition of `table`: (partition, vehicle_id (empty when
/// null), kafka_offset, phone), by offset.
pub fn landed_rows(emulator: &Emulator, table: &str) -> Vec<(String, String, i64, String)> {
    let out = emulator
        .pyodps(&["dump", table, "--all-partitions"])
        .unwrap();
    let mut rows: Vec<(String, String, i64, String)> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let row = &v["row"];
            (
                v["partition"].as_str().unwrap().to_owned(),
                row[0].as_str().unwrap_or_default().to_owned(),
                row[5].as_i64().unwrap(),
                row[4].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    rows.sort_by_key(|r| (r.2, r.1.clone()));
    rows
}

/// Creates the vehicle table `table` ([`COLUMNS`], partitioned by `ds`) on `emulator`.
pub async fn create_vehicle_table(emulator: &Emulator, table: &str) {
    let mc = harness::client(emulator).unwrap();
    mc.run_sql(
        &format!("CREATE TABLE IF NOT EXISTS {table} (vehicle_id string, average_speed double, total_miles bigint, event_time datetime, owner_phone string, kafka_offset bigint) PARTITIONED BY (ds string)"),
        &[],
    )
    .await
    .unwrap();
}

/// Runs a `k2mc` CLI command with `config` and the stack's environment plus `env`; returns
/// (success, stdout, stderr).
pub fn run_k2mc(
    config: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let mut cmd = Command::new(workspace_bin("k2mc").unwrap());
    cmd.args(args).arg("--config").arg(config);
    for (k, v) in k2mc_env() {
        cmd.env(k, v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Case<'static> {
    pub fn new(name: &str, partitions: i32, extra: &str) -> Case<'static> {
        Case::with_partition(name, partitions, extra, "ds={event_time:%Y%m%d}")
    }

    /// A case whose destination partition template is `partition`.
    pub fn with_partition(
        name: &str,
        partitions: i32,
        extra: &str,
        partition: &str,
    ) -> Case<'static> {
        let stack = shared_stack().unwrap();
        Case::on(
            name,
            partitions,
            extra,
            partition,
            shared_emulator().unwrap(),
            &stack.bootstrap(),
        )
    }
}

impl<'e> Case<'e> {
    /// A case on `emulator` and the broker at `bootstrap` (the staging bucket is the shared
    /// stack's; a config override can point it at another S3 front). `partitions` 0: the topic
    /// exists already.
    pub fn on(
        name: &str,
        partitions: i32,
        extra: &str,
        partition: &str,
        emulator: &'e Emulator,
        bootstrap: &str,
    ) -> Case<'e> {
        let stack = shared_stack().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let case = Case {
            topic: format!("t_{name}"),
            table: format!("vehicle_{name}"),
            config: dir.path().join("k2mc.toml"),
            emulator,
            bootstrap: bootstrap.to_owned(),
            _dir: dir,
        };
        write_config(
            &case.config,
            stack,
            &emulator.endpoint(),
            name,
            &[&case.topic],
            &case.table,
            partition,
            &transforms_toml(),
            extra,
        )
        .unwrap();
        if case.bootstrap != stack.bootstrap() {
            let text = std::fs::read_to_string(&case.config).unwrap();
            let text = text.replacen(&stack.bootstrap(), &case.bootstrap, 1);
            std::fs::write(&case.config, text).unwrap();
        }
        let table = case.table.clone();
        rt().block_on(create_vehicle_table(emulator, &table));
        if partitions > 0 {
            case.create_topic(partitions);
        }
        case
    }

    /// Produces vehicle events `ids` to `partition`; `day` picks the event date.
    pub fn produce(&self, partition: i32, ids: std::ops::Range<u32>, day: u32) {
        let topic = self.topic.clone();
        let bootstrap = self.bootstrap.clone();
        rt().block_on(async move {
            let client = ClientBuilder::new(vec![bootstrap]).build().await.unwrap();
            produce_vehicles(&client, &topic, partition, ids, day).await;
        });
    }

    /// Produces raw values without keys (for poison records).
    pub fn produce_raw(&self, partition: i32, values: &[&str]) {
        let records = values
            .iter()
            .map(|v| Record {
                key: None,
                value: Some(v.as_bytes().to_vec()),
                headers: BTreeMap::new(),
                timestamp: chrono::Utc::now(),
            })
            .collect();
        self.produce_records(partition, records);
    }

    /// Produces `records` as they are, in one batch.
    pub fn produce_records(&self, partition: i32, records: Vec<Record>) {
        let topic = self.topic.clone();
        let bootstrap = self.bootstrap.clone();
        rt().block_on(async move {
            let client = ClientBuilder::new(vec![bootstrap]).build().await.unwrap();
            let pc = client
                .partition_client(topic, partition, UnknownTopicHandling::Retry)
                .await
                .unwrap();
            pc.produce(records, Compression::NoCompression)
                .await
                .unwrap();
        });
    }

    /// Runs a `k2mc` CLI command with the case's config; returns (success, stdout, stderr).
    pub fn k2mc(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
        self.k2mc_with(&self.config, args, env)
    }

    /// Runs a `k2mc` CLI command with the config at `config` (another version of the case's).
    pub fn k2mc_with(
        &self,
        config: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (bool, String, String) {
        run_k2mc(config, args, env)
    }

    /// `dead-letters list --json`: (key, count) of every object listed.
    pub fn dead_letter_objects(&self) -> Vec<(String, u64)> {
        let (ok, out, stderr) = self.k2mc(&["dead-letters", "list", "--json"], &[]);
        assert!(ok, "{stderr}");
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        doc["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o["key"].as_str().unwrap().to_owned(),
                    o["dead_letters"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// Creates the case's topic (again, on a new broker) with `partitions` partitions.
    pub fn create_topic(&self, partitions: i32) {
        let (topic, bootstrap) = (self.topic.clone(), self.bootstrap.clone());
        rt().block_on(async move {
            let client = ClientBuilder::new(vec![bootstrap]).build().await.unwrap();
            client
                .controller_client()
                .unwrap()
                .create_topic(&topic, partitions, 1, 5_000)
                .await
                .unwrap();
        });
    }

    /// Every row pyodps reads from every partition: (partition, vehicle_id, kafka_offset, phone).
    pub fn landed(&self) -> Vec<(String, String, i64, String)> {
        landed_rows(self.emulator, &self.table)
    }

    /// Asserts every one of `ids` landed exactly once.
    pub fn assert_exactly_once(&self, expected: usize) {
        let rows = self.landed();
        let mut seen = BTreeMap::new();
        for r in &rows {
            *seen.entry(r.1.clone()).or_insert(0) += 1;
        }
        let dupes: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(dupes.is_empty(), "duplicates: {dupes:?}");
        assert_eq!(rows.len(), expected, "rows landed");
    }
}

impl Case<'_> {
    /// The commit log of `partition` as stored: entries chain from the origin without gaps or
    /// overlaps (strictly increasing), each reconciles, and the last ends at the high watermark.
    /// Returns the entries' ranges.
    pub fn assert_log_chains(&self, partition: i32) -> Vec<(i64, i64)> {
        let stack = shared_stack().unwrap();
        let cluster = self.topic.trim_start_matches("t_");
        let dir = stack
            .dir
            .join("s3")
            .join(&stack.bucket)
            .join("k2mc/log")
            .join(cluster)
            .join(&self.topic)
            .join(partition.to_string());
        let origin: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("origin.json")).unwrap()).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('0') && n.ends_with(".json"))
            .collect();
        names.sort();
        let mut next = origin["offset"].as_i64().unwrap();
        let mut ranges = Vec::new();
        for name in &names {
            let entry: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap();
            let (start, end) = (
                entry["batch"]["start"].as_i64().unwrap(),
                entry["batch"]["end"].as_i64().unwrap(),
            );
            assert_eq!(start, next, "{name}: the log has a gap or an overlap");
            assert!(end > start, "{name}: an entry that does not advance");
            let c = &entry["counts"];
            assert_eq!(
                c["read"].as_u64().unwrap(),
                c["loaded"].as_u64().unwrap()
                    + c["filtered"].as_u64().unwrap()
                    + c["dead_lettered"].as_u64().unwrap(),
                "{name}: counts do not reconcile"
            );
            ranges.push((start, end));
            next = end;
        }
        // status agrees: committed = high watermark, lag 0.
        let row = self.status_of(partition);
        assert_eq!(
            (
                row["committed"].as_i64(),
                row["high_watermark"].as_i64(),
                row["lag"].as_i64()
            ),
            (Some(next), Some(next), Some(0)),
            "status: {row}"
        );
        ranges
    }

    /// `k2mc status --json`'s partitions of the case's topic, in partition order.
    pub fn status(&self, env: &[(&str, &str)]) -> Option<Vec<serde_json::Value>> {
        let (ok, out, _) = self.k2mc(&["status", "--json"], env);
        let doc: serde_json::Value = serde_json::from_str(&out).ok()?;
        let rows: Vec<serde_json::Value> = doc["partitions"]
            .as_array()?
            .iter()
            .filter(|p| p["topic"] == self.topic.as_str())
            .cloned()
            .collect();
        ok.then_some(rows)
    }

    /// One partition's row of `k2mc status --json`.
    pub fn status_of(&self, partition: i32) -> serde_json::Value {
        self.status(&[])
            .and_then(|rows| rows.into_iter().find(|p| p["partition"] == partition))
            .unwrap_or_else(|| {
                panic!(
                    "k2mc status --json has no row for {}-{partition}",
                    self.topic
                )
            })
    }
}

/// A `k2mc` process serving a Lambda Runtime API stand-in as Lambda's runtime would (one warm
/// execution environment; several on one API are the function's concurrency), its output in
/// `lambda-<n>.out` and `.err` beside the config; killed when dropped.
pub struct LambdaProcess(std::process::Child);

impl LambdaProcess {
    pub fn spawn(config: &std::path::Path, api: &harness::stack::RuntimeApi, n: usize) -> Self {
        let dir = config.parent().unwrap();
        let mut cmd = Command::new(workspace_bin("k2mc").unwrap());
        cmd.env("K2MC_CONFIG", config)
            .stdout(std::fs::File::create(dir.join(format!("lambda-{n}.out"))).unwrap())
            .stderr(std::fs::File::create(dir.join(format!("lambda-{n}.err"))).unwrap());
        for (k, v) in k2mc_env().into_iter().chain(api.lambda_env()) {
            cmd.env(k, v);
        }
        LambdaProcess(cmd.spawn().unwrap())
    }
}

impl Drop for LambdaProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
