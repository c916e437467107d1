//! The registry parser end to end: records written by confluent-kafka's `AvroSerializer`
//! against the schema registry stand-in, the table created from `k2mc schema ddl`, `k2mc run`,
//! and pyodps reading back every mapped type; schema evolution (a field added, a field with a
//! default removed, an incompatible change) in one range; the stand-in against Confluent's
//! client.

use std::collections::BTreeMap;
use std::process::Command;

use harness::registry::{SchemaRegistry, run_serializer};
use harness::stack::{shared_stack, write_config};
use harness::{shared_emulator, transform_wasm};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use serde_json::Value as Json;

use crate::case::{rt, run_k2mc};

/// One serialized record and what pyodps must read back.
struct Serialized {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    expect: Option<Json>,
    dead: Option<String>,
}

fn serialize(registry: &SchemaRegistry, topic: &str, scenario: &str) -> Vec<Serialized> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let out = run_serializer(
        "serialize.py",
        &[
            "--registry",
            &registry.url,
            "--topic",
            topic,
            "--scenario",
            scenario,
        ],
    )
    .unwrap();
    out.lines()
        .map(|l| {
            let v: Json = serde_json::from_str(l).unwrap();
            let bytes = |k: &str| v[k].as_str().map(|s| b64.decode(s).unwrap());
            Serialized {
                key: bytes("key"),
                value: bytes("value"),
                expect: Some(v["expect"].clone()).filter(|e| !e.is_null()),
                dead: v["dead"].as_str().map(str::to_owned),
            }
        })
        .collect()
}

fn produce(topic: &str, records: &[Serialized]) {
    let bootstrap = shared_stack().unwrap().bootstrap();
    let records: Vec<Record> = records
        .iter()
        .map(|r| Record {
            key: r.key.clone(),
            value: r.value.clone(),
            headers: BTreeMap::new(),
            timestamp: chrono::Utc::now(),
        })
        .collect();
    let topic = topic.to_owned();
    rt().block_on(async move {
        let client = ClientBuilder::new(vec![bootstrap]).build().await.unwrap();
        // The second phase of a test produces to the topic the first created.
        let _ = client
            .controller_client()
            .unwrap()
            .create_topic(&topic, 1, 1, 5_000)
            .await;
        let pc = client
            .partition_client(topic, 0, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        pc.produce(records, Compression::NoCompression)
            .await
            .unwrap();
    });
}

/// Writes a config for `topic` → `table` with the registry stage (`settings` is a TOML inline
/// table's body) granted the registry at `url`.
fn config(
    dir: &std::path::Path,
    topic: &str,
    table: &str,
    settings: &str,
    url: &str,
) -> std::path::PathBuf {
    config_with(dir, topic, table, settings, &format!("url = \"{url}\"\n"))
}

/// [`config`] with the `[registry]` section's body given.
fn config_with(
    dir: &std::path::Path,
    topic: &str,
    table: &str,
    settings: &str,
    registry: &str,
) -> std::path::PathBuf {
    let wasm = transform_wasm("registry").unwrap();
    let path = dir.join("k2mc.toml");
    write_config(
        &path,
        shared_stack().unwrap(),
        &shared_emulator().unwrap().endpoint(),
        topic,
        &[topic],
        table,
        "",
        &format!(
            "[[transforms]]\nname = \"registry\"\nwasm = {:?}\nregistry = true\nsettings = {{ {settings} }}\n",
            wasm.display().to_string()
        ),
        &format!("[registry]\n{registry}\n[limits]\nerror_limit = 5\n"),
    )
    .unwrap();
    path
}

fn k2mc(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    run_k2mc(config, args, &[])
}

/// Creates the table from `k2mc schema ddl`; returns the DDL.
fn create_table_from_ddl(config: &std::path::Path) -> String {
    let (ok, ddl, stderr) = k2mc(config, &["schema", "ddl"]);
    assert!(ok, "schema ddl failed: {stderr}");
    let mc = harness::client(shared_emulator().unwrap()).unwrap();
    rt().block_on(mc.run_sql(&ddl, &[])).unwrap();
    ddl
}

/// Rows pyodps reads from `table`, sorted by their first cell of `sort_by`.
fn landed(table: &str, sort_by: usize) -> Vec<Json> {
    let out = shared_emulator().unwrap().pyodps(&["dump", table]).unwrap();
    let mut rows: Vec<Json> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    rows.sort_by_key(|r| r[sort_by].to_string());
    rows
}

/// One scenario's setup: a registry stand-in, the records the serializers wrote (produced to
/// `topic`), a config with the registry stage (`settings`; `[registry]` is the stand-in's URL
/// unless `registry` gives the section's body) and the table made from `k2mc schema ddl`.
struct Scenario {
    _registry: SchemaRegistry,
    records: Vec<Serialized>,
    config: std::path::PathBuf,
    ddl: String,
    _dir: tempfile::TempDir,
}

fn scenario(
    name: &str,
    topic: &str,
    table: &str,
    settings: &str,
    registry: Option<&str>,
) -> Scenario {
    let stand_in = SchemaRegistry::start(&[]).unwrap();
    let records = serialize(&stand_in, topic, name);
    produce(topic, &records);
    let dir = tempfile::tempdir().unwrap();
    let body = registry.map_or_else(|| format!("url = \"{}\"\n", stand_in.url), str::to_owned);
    let config = config_with(
        dir.path(),
        topic,
        table,
        settings,
        &body.replace("{url}", &stand_in.url),
    );
    let ddl = create_table_from_ddl(&config);
    Scenario {
        _registry: stand_in,
        records,
        config,
        ddl,
        _dir: dir,
    }
}

#[test]
fn avro_records_from_confluent_serializers_land_with_every_mapped_type() {
    let (topic, table) = ("t_registry_types", "registry_types");
    let case = scenario(
        "types",
        topic,
        table,
        &format!("subject = \"{topic}-value\""),
        None,
    );
    let (records, config, ddl) = (&case.records, &case.config, &case.ddl);
    for column in [
        "`id` bigint NOT NULL",
        "`ratio` float NOT NULL",
        "`digest` binary NOT NULL",
        "`price` decimal(10,2) NOT NULL",
        "`big` decimal(20,4) NOT NULL",
        "`day` date NOT NULL",
        "`tod_ms` string NOT NULL",
        "`ts_us` timestamp NOT NULL",
        "`lts_ms` timestamp_ntz NOT NULL",
        "`uid` string NOT NULL",
        "`attrs` map<string,bigint> NOT NULL",
        "`address` struct<city:string,zip:string> NOT NULL",
        "`note` string,",
        "`either` json,",
        "`items` array<struct<sku:string,qty:int,at:timestamp>> NOT NULL",
        "`ts_ns` timestamp NOT NULL",
        "`lts_ns` timestamp_ntz NOT NULL",
        "`dur` struct<months:bigint,days:bigint,millis:bigint> NOT NULL",
        "`huge` string NOT NULL",
    ] {
        assert!(ddl.contains(column), "{column} missing from\n{ddl}");
    }
    let (ok, out, stderr) = k2mc(config, &["validate"]);
    assert!(ok, "validate failed: {out}{stderr}");

    let (ok, out, stderr) = k2mc(config, &["run"]);
    assert!(ok, "run failed: {out}{stderr}");
    let rows = landed(table, 0);
    let expected: Vec<Json> = records.iter().filter_map(|r| r.expect.clone()).collect();
    assert_eq!(rows.len(), expected.len(), "{rows:?}");
    for (row, want) in rows.iter().zip(&expected) {
        let (row, want) = (row.as_array().unwrap(), want.as_array().unwrap());
        assert_eq!(row.len(), want.len());
        for (i, (got, want)) in row.iter().zip(want).enumerate() {
            // pyodps returns a map in its own order: compare entries as sets.
            let sorted = |v: &Json| {
                let mut v = v.as_array().cloned().unwrap_or_default();
                v.sort_by_key(|e| e.to_string());
                v
            };
            if i == 20 {
                assert_eq!(sorted(got), sorted(want), "column {i}");
            } else {
                assert_eq!(
                    got, want,
                    "column {i}: pyodps read {got}, the serializer wrote {want}"
                );
            }
        }
    }
}

#[test]
fn schema_evolution_in_one_range_resolves_onto_the_table_and_dead_letters_incompatible_records() {
    let (topic, table) = ("t_registry_evolution", "registry_evolution");
    // The table is version 1 of the subject; later versions are read as version 1.
    let case = scenario(
        "evolution",
        topic,
        table,
        &format!(
            r#"subject = "{topic}-value", version = "1", key-subject = "{topic}-key", columns = '[{{"name":"k","source":"__key__"}},{{"name":"id"}},{{"name":"name"}},{{"name":"score"}},{{"name":"region"}}]'"#
        ),
        None,
    );
    let (records, config) = (&case.records, &case.config);
    let (ok, out, stderr) = k2mc(config, &["run"]);
    assert!(ok, "run failed: {out}{stderr}");
    let rows = landed(table, 1);
    let expected: Vec<Json> = records.iter().filter_map(|r| r.expect.clone()).collect();
    assert_eq!(rows, expected, "pyodps read {rows:#?}");

    // The incompatible record is a dead letter naming both schemas; nothing else is.
    let (ok, out, stderr) = k2mc(config, &["dead-letters", "list", "--json"]);
    assert!(ok, "{stderr}");
    let doc: Json = serde_json::from_str(&out).unwrap();
    let total: u64 = doc["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["dead_letters"].as_u64().unwrap())
        .sum();
    let dead = records.iter().filter(|r| r.dead.is_some()).count() as u64;
    assert_eq!(total, dead, "{out}");
    let keys: Vec<String> = doc["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap().to_owned())
        .collect();
    let text = rt().block_on(async {
        let staging = harness::stack::staging_client(shared_stack().unwrap(), "k2mc").await;
        let mut text = String::new();
        for key in &keys {
            let obj = staging.get(key).await.unwrap().unwrap();
            text.push_str(&String::from_utf8_lossy(&obj.data));
        }
        text
    });
    assert!(
        text.contains("incompatible-schema")
            && text.contains("writer schema")
            && text.contains("(id 1)"),
        "{text}"
    );
}

#[test]
fn the_stand_in_answers_confluents_client() {
    let registry = SchemaRegistry::start(&["--basic-auth", "user:pass"]).unwrap();
    let script = r#"
import sys
from confluent_kafka.schema_registry import SchemaRegistryClient, Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError
c = SchemaRegistryClient({"url": sys.argv[1], "basic.auth.user.info": "user:pass"})
a = '{"type":"record","name":"A","fields":[{"name":"x","type":"long"}]}'
b = '{"type":"record","name":"B","fields":[{"name":"a","type":"A"}]}'
ia = c.register_schema("a-value", Schema(a, "AVRO"))
assert c.register_schema("a-value", Schema(a, "AVRO")) == ia, "registering again gives the same id"
from confluent_kafka.schema_registry import SchemaReference
ib = c.register_schema("b-value", Schema(b, "AVRO", [SchemaReference("A", "a-value", 1)]))
got = c.get_schema(ib)
assert got.references[0].subject == "a-value", got.references
latest = c.get_latest_version("b-value")
assert latest.schema_id == ib and latest.version == 1
assert c.lookup_schema("a-value", Schema(a, "AVRO")).version == 1
assert sorted(c.get_subjects()) == ["a-value", "b-value"]
p = c.register_schema("p-value", Schema('syntax = "proto3"; message M { int64 x = 1; }', "PROTOBUF"))
assert c.get_schema(p).schema_type == "PROTOBUF"
try:
    c.get_schema(999)
    raise SystemExit("an unknown id must be an error")
except SchemaRegistryError as e:
    assert e.http_status_code == 404 and e.error_code == 40403, e
bad = SchemaRegistryClient({"url": sys.argv[1], "basic.auth.user.info": "user:wrong"})
try:
    bad.get_subjects()
    raise SystemExit("wrong credentials must be refused")
except SchemaRegistryError as e:
    assert e.http_status_code == 401, e
print("ok")
"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.py");
    std::fs::write(&path, script).unwrap();
    let out = Command::new(harness::registry::serializer_python().unwrap())
        .arg(&path)
        .arg(&registry.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The stage through the host, in process: a record naming an id the registry does not have is
/// a dead letter; once the registry is down, a record naming an id not yet fetched fails the
/// batch (nothing is skipped); a stage that imports the registry without the grant fails at
/// load, naming the fix.
#[test]
fn unknown_ids_dead_letter_and_a_registry_that_is_down_fails_the_batch() {
    use k2mc::transform::bindings::{KafkaRecord, RecordBatch};
    use k2mc::transform::{Registry, TransformError, TransformHost};
    let registry = SchemaRegistry::start(&[]).unwrap();
    let topic = "t_registry_down";
    let records = serialize(&registry, topic, "evolution");
    let wasm = transform_wasm("registry").unwrap();
    let host = TransformHost::new().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let subject = format!("{topic}-value");
    let mut spec = harness::stage_spec(
        "registry",
        &wasm,
        &[("subject", &subject), ("version", "1")],
    );

    let refused = host
        .load_chain(vec![spec.clone()], cache.path())
        .unwrap_err();
    assert!(
        matches!(&refused, TransformError::Configure { message, .. } if message.contains("registry = true")),
        "{refused}"
    );

    spec.grants.registry = true;
    spec.registry = Some(Registry::new(
        registry.url.parse().unwrap(),
        None,
        std::time::Duration::from_secs(2),
    ));
    let chain = host.load_chain(vec![spec], cache.path()).unwrap();
    let record = |offset: i64, value: Vec<u8>| KafkaRecord {
        offset,
        timestamp_ms: 0,
        key: None,
        value: Some(value),
        headers: Vec::new(),
    };
    let mut unknown = records[0].value.clone().unwrap();
    unknown[1..5].copy_from_slice(&999u32.to_be_bytes());
    // A schema the registry holds but that is not Avro (valid JSON, no name or fields).
    let malformed_id = rt().block_on(async {
        let body = serde_json::json!({"schema": r#"{"type":"record"}"#}).to_string();
        let text = reqwest::Client::new()
            .post(format!("{}/subjects/broken-value/versions", registry.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let answer: Json = serde_json::from_str(&text).unwrap();
        answer["id"].as_u64().unwrap() as u32
    });
    let mut malformed = records[0].value.clone().unwrap();
    malformed[1..5].copy_from_slice(&malformed_id.to_be_bytes());
    let out = chain
        .start_run()
        .run(&RecordBatch {
            topic: topic.into(),
            partition: 0,
            records: vec![
                record(0, records[0].value.clone().unwrap()),
                record(1, unknown),
                record(2, b"{\"not\": \"framed\"}".to_vec()),
                record(3, malformed),
            ],
        })
        .unwrap();
    assert_eq!(out.rows.len(), 1);
    let codes: Vec<&str> = out.dead_letters.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(
        codes,
        ["unknown-schema", "bad-framing", "bad-schema"],
        "{:?}",
        out.dead_letters
    );
    assert!(
        out.dead_letters[0].message.contains("999"),
        "{:?}",
        out.dead_letters
    );

    drop(registry);
    // Version 2's id (3: ids 1 and 2 are the value's v1 and the key) was never fetched.
    let failed = chain.start_run().run(&RecordBatch {
        topic: topic.into(),
        partition: 0,
        records: vec![record(3, records[2].value.clone().unwrap())],
    });
    assert!(
        matches!(&failed, Err(TransformError::Fatal { code, .. }) if code == "registry-unavailable"),
        "{failed:?}"
    );
}

/// Runs a scenario end to end: serialize, produce, table from `schema ddl`, `k2mc run`, and
/// pyodps reads exactly the expected rows (sorted by `sort_by`); returns the dead letters'
/// count.
fn lands_as_serialized(
    scenario: &str,
    topic: &str,
    table: &str,
    settings: &str,
    sort_by: usize,
) -> u64 {
    let case = self::scenario(scenario, topic, table, settings, None);
    let (records, config) = (&case.records, &case.config);
    let (ok, out, stderr) = k2mc(config, &["run"]);
    assert!(ok, "run failed: {out}{stderr}");
    let mut rows = landed(table, sort_by);
    let mut expected: Vec<Json> = records.iter().filter_map(|r| r.expect.clone()).collect();
    expected.sort_by_key(|r| r[sort_by].to_string());
    // pyodps returns maps in its own order: compare their entries sorted.
    for row in rows.iter_mut().chain(expected.iter_mut()) {
        for cell in row.as_array_mut().unwrap() {
            if let Some(entries) = cell.as_array_mut()
                && entries.iter().all(|e| {
                    e.as_array()
                        .is_some_and(|p| p.len() == 2 && p[0].is_string())
                })
            {
                entries.sort_by_key(|e| e.to_string());
            }
        }
    }
    assert_eq!(rows, expected, "pyodps read {rows:#?}");
    let (ok, out, stderr) = k2mc(config, &["dead-letters", "list", "--json"]);
    assert!(ok, "{stderr}");
    let doc: Json = serde_json::from_str(&out).unwrap();
    doc["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["dead_letters"].as_u64().unwrap())
        .sum()
}

#[test]
fn protobuf_records_from_confluents_serializer_land_typed() {
    // The reader is the .proto text a person registered; the writers are the base64
    // descriptors ProtobufSerializer registers (v1, v2 with a field more, v3 with `id` a string).
    let topic = "t_registry_protobuf";
    let dead = lands_as_serialized(
        "protobuf",
        topic,
        "registry_protobuf",
        &format!("subject = \"{topic}-reader\""),
        0,
    );
    assert_eq!(dead, 1, "the record whose id became a string");
}

#[test]
fn json_schema_records_from_confluents_serializer_land_typed() {
    let topic = "t_registry_json";
    let dead = lands_as_serialized(
        "json",
        topic,
        "registry_json",
        &format!("subject = \"{topic}-value\", version = \"1\""),
        0,
    );
    assert_eq!(dead, 1, "the unvalidated record whose address is an array");
}

const ADD_COLUMNS: (&str, &str) = ("K2MC__MAXCOMPUTE__SCHEMA_EVOLUTION", "add-columns");

/// The table's columns as the emulator has them now.
fn table_columns(table: &str) -> Vec<String> {
    let mc = harness::client(shared_emulator().unwrap()).unwrap();
    let info = rt().block_on(mc.get_table(table)).unwrap();
    info.schema.columns.iter().map(|c| c.name.clone()).collect()
}

/// v1, v2 (a new optional field) and v3 (a field with a default removed) records on one topic,
/// the table made from v1; returns the registry, the records and the config of the unpinned
/// stage (it reads the latest version with the older versions' fields).
fn added_field_case(
    topic: &str,
    table: &str,
) -> (SchemaRegistry, Vec<Serialized>, tempfile::TempDir) {
    let registry = SchemaRegistry::start(&[]).unwrap();
    let mut records = serialize(&registry, topic, "added-v1");
    records.extend(serialize(&registry, topic, "added-v2"));
    records.extend(serialize(&registry, topic, "added-v3"));
    produce(topic, &records);
    let dir = tempfile::tempdir().unwrap();
    let pinned = config(
        dir.path(),
        topic,
        table,
        &format!("subject = \"{topic}-value\", version = \"1\""),
        &registry.url,
    );
    create_table_from_ddl(&pinned);
    config(
        dir.path(),
        topic,
        table,
        &format!("subject = \"{topic}-value\""),
        &registry.url,
    );
    (registry, records, dir)
}

#[test]
fn a_new_field_is_ignored_by_default_and_the_start_says_so() {
    let (topic, table) = ("t_registry_ignore", "registry_ignore");
    let (_registry, records, dir) = added_field_case(topic, table);
    let config = dir.path().join("k2mc.toml");
    let (ok, out, stderr) = k2mc(&config, &["validate"]);
    assert!(ok && out.contains("coupon not loaded"), "{out}{stderr}");
    let (ok, out, stderr) = k2mc(&config, &["run"]);
    assert!(ok, "run failed: {out}{stderr}");
    assert!(
        stderr.contains("not loaded") && stderr.contains("coupon"),
        "{stderr}"
    );
    let rows = landed(table, 0);
    let expected: Vec<Json> = records
        .iter()
        .map(|r| Json::Array(r.expect.as_ref().unwrap().as_array().unwrap()[..2].to_vec()))
        .collect();
    assert_eq!(rows, expected);
    assert_eq!(table_columns(table), ["id", "name"]);
}

#[test]
fn add_columns_adds_each_new_field_once_when_starts_race_and_loads_every_row() {
    let (topic, table) = ("t_registry_add", "registry_add");
    let (_registry, records, dir) = added_field_case(topic, table);
    let config = dir.path().join("k2mc.toml");
    let (ok, out, stderr) = run_k2mc(&config, &["validate"], &[ADD_COLUMNS]);
    assert!(
        ok && out.contains("once the start adds coupon"),
        "{out}{stderr}"
    );
    // Two functions start at once against the same table: each tries to add the column.
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let config = config.clone();
            std::thread::spawn(move || run_k2mc(&config, &["run"], &[ADD_COLUMNS]))
        })
        .collect();
    for run in runs {
        let (_, out, stderr) = run.join().unwrap();
        assert!(!stderr.contains("already exists"), "{out}{stderr}");
    }
    let (ok, out, stderr) = run_k2mc(&config, &["run"], &[ADD_COLUMNS]);
    assert!(ok, "run failed: {out}{stderr}");
    assert_eq!(table_columns(table), ["id", "name", "coupon"]);
    let expected: Vec<Json> = records.iter().filter_map(|r| r.expect.clone()).collect();
    assert_eq!(landed(table, 0), expected);
}

/// A warm function (Lambda Runtime API stand-in, event source mapping payloads) meets a writer
/// schema with a new field after it started: the batch fails with `schema-changed` before any of
/// its rows is staged, the function starts again (adding the column), and the redelivered batch
/// loads with the new field.
#[test]
fn a_warm_function_meeting_a_new_field_restarts_adds_the_column_and_loads_it() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (topic, table) = ("t_registry_warm", "registry_warm");
    let registry = SchemaRegistry::start(&[]).unwrap();
    let first = serialize(&registry, topic, "added-v1");
    produce(topic, &first);
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        topic,
        table,
        &format!("subject = \"{topic}-value\""),
        &registry.url,
    );
    create_table_from_ddl(&config);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "partition = \"\"",
        "partition = \"\"\nschema_evolution = \"add-columns\"",
    );
    std::fs::write(&config, text).unwrap();
    let api = harness::stack::RuntimeApi::start().unwrap();
    let _function = crate::case::LambdaProcess::spawn(&config, &api, 0);
    let payload = |records: &[Serialized], from: i64| {
        let list: Vec<Json> = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                serde_json::json!({"topic": topic, "partition": 0, "offset": from + i as i64,
                    "timestamp": 0, "timestampType": "CREATE_TIME",
                    "value": b64.encode(r.value.as_ref().unwrap()), "headers": []})
            })
            .collect();
        serde_json::json!({"eventSource": "aws:kafka", "eventSourceArn": "arn:aws:kafka:x", "bootstrapServers": "b:9092", "records": {format!("{topic}-0"): list}})
    };
    let within = std::time::Duration::from_secs(120);
    let failures = |r: &Json| r["batchItemFailures"].as_array().map_or(0, Vec::len);
    let r = api.invoke(payload(&first, 0), within).unwrap().unwrap();
    assert_eq!(failures(&r), 0, "{r}");

    let second = serialize(&registry, topic, "added-v2");
    produce(topic, &second);
    let r = api.invoke(payload(&second, 2), within).unwrap().unwrap();
    assert_eq!(
        failures(&r),
        1,
        "the batch with the new field fails first: {r}"
    );
    assert!(r.to_string().contains("schema-changed"), "{r}");
    let r = api.invoke(payload(&second, 2), within).unwrap().unwrap();
    assert_eq!(failures(&r), 0, "redelivered after the restart: {r}");
    let (ok, out, stderr) = k2mc(&config, &["load"]);
    assert!(ok, "{out}{stderr}");
    assert_eq!(table_columns(table), ["id", "name", "coupon"]);
    let expected: Vec<Json> = first
        .iter()
        .chain(&second)
        .filter_map(|r| r.expect.clone())
        .collect();
    assert_eq!(landed(table, 0), expected);
}

/// Records written by the `aws-glue-schema-registry` package (AWS Glue framing: header byte 3,
/// a compression byte, the schema version UUID; one payload zlib-compressed by the package's
/// codec) load through the host's Glue backend (GetSchemaVersion signed with SigV4), read as
/// the schema's version 1; the version-2 field is not loaded.
#[test]
fn glue_framed_records_from_the_aws_serializer_land_typed() {
    let (topic, table) = ("t_registry_glue", "registry_glue");
    let case = scenario(
        "glue",
        topic,
        table,
        &format!("subject = \"{topic}-value\", version = \"1\""),
        Some(
            "kind = \"glue\"\nurl = \"{url}\"\nregistry_name = \"k2mc\"\nregion = \"us-east-1\"\n",
        ),
    );
    let (records, config, ddl) = (&case.records, &case.config, &case.ddl);
    assert!(ddl.contains("`id` bigint NOT NULL"), "{ddl}");
    let (ok, out, stderr) = k2mc(config, &["run"]);
    assert!(ok, "run failed: {out}{stderr}");
    let expected: Vec<Json> = records.iter().filter_map(|r| r.expect.clone()).collect();
    assert_eq!(landed(table, 0), expected);
}

/// `mask` and `filter` chain after the registry parser as after `kafka-columns`.
#[test]
fn mask_and_filter_chain_after_the_registry_parser() {
    use k2mc::transform::bindings::{Cell, KafkaRecord, RecordBatch};
    use k2mc::transform::{Registry, TransformHost};
    let registry = SchemaRegistry::start(&[]).unwrap();
    let topic = "t_registry_chain";
    let records = serialize(&registry, topic, "added-v1");
    let host = TransformHost::new().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let subject = format!("{topic}-value");
    let mut parser = harness::stage_spec(
        "registry",
        &transform_wasm("registry").unwrap(),
        &[("subject", &subject)],
    );
    parser.grants.registry = true;
    parser.registry = Some(Registry::new(
        registry.url.parse().unwrap(),
        None,
        std::time::Duration::from_secs(5),
    ));
    let mask = harness::stage_spec(
        "mask",
        &transform_wasm("mask").unwrap(),
        &[("column.name", "null")],
    );
    let filter = harness::stage_spec(
        "filter",
        &transform_wasm("filter").unwrap(),
        &[("predicate", "id >= 1")],
    );
    let chain = host
        .load_chain(vec![parser, mask, filter], cache.path())
        .unwrap();
    let out = chain
        .start_run()
        .run(&RecordBatch {
            topic: topic.into(),
            partition: 0,
            records: records
                .iter()
                .enumerate()
                .map(|(i, r)| KafkaRecord {
                    offset: i as i64,
                    timestamp_ms: 0,
                    key: None,
                    value: r.value.clone(),
                    headers: Vec::new(),
                })
                .collect(),
        })
        .unwrap();
    let rows: Vec<(u32, Vec<Cell>)> = out.rows.into_iter().map(|r| (r.source, r.cells)).collect();
    assert_eq!(
        rows,
        [(1, vec![Cell::Int(1), Cell::Null])],
        "record 0 filtered (id 0), record 1 masked"
    );
}
