//! The transform host with real components: the kafka-columns → mask chain, and hostile modules
//! that loop, allocate, trap and probe the sandbox.

use std::time::{Duration, Instant};

use harness::transform_wasm;
use k2mc::transform::bindings::{Cell, ColumnType, Header, KafkaRecord, RecordBatch};
use k2mc::transform::{
    Grants, Limits, Origin, StageSpec, TransformError, TransformHost, precompile,
};

fn spec(name: &str, wasm: &str, config: &[(&str, &str)]) -> StageSpec {
    harness::stage_spec(name, &transform_wasm(wasm).unwrap(), config)
}

fn record(offset: i64, value: &str) -> KafkaRecord {
    KafkaRecord {
        offset,
        timestamp_ms: 1_704_067_200_000 + offset,
        key: Some(format!("k{offset}").into_bytes()),
        value: Some(value.as_bytes().to_vec()),
        headers: vec![Header {
            key: "h".into(),
            value: None,
        }],
    }
}

fn batch(records: Vec<KafkaRecord>) -> RecordBatch {
    RecordBatch {
        topic: "vehicles".into(),
        partition: 3,
        records,
    }
}

const VEHICLE_COLUMNS: &str = r#"[
  {"name": "vehicle_id", "type": "string", "source": "vehicle.id", "nullable": false},
  {"name": "average_speed", "type": "double"},
  {"name": "total_miles", "type": "bigint"},
  {"name": "event_time", "type": "datetime", "source": "ts"},
  {"name": "owner_phone", "type": "string", "source": "owner.phone"},
  {"name": "dotted", "type": "varchar(8)", "source": "a\\.b"},
  {"name": "kafka_offset", "type": "bigint", "source": "__offset__"},
  {"name": "src", "type": "string", "source": "'fleet-a'"}
]"#;

/// The parser stage of the vehicle example.
fn vehicle_parser() -> StageSpec {
    spec(
        "kafka-columns",
        "kafka-columns",
        &[("columns", VEHICLE_COLUMNS), ("value-type", "STRING")],
    )
}

#[test]
fn kafka_columns_then_mask_golden() -> anyhow::Result<()> {
    let host = TransformHost::new()?;
    let cache = tempfile::tempdir()?;
    let chain = host.load_chain(
        vec![
            vehicle_parser(),
            spec(
                "mask",
                "mask",
                &[("column.owner_phone", "phone"), ("column.src", "drop")],
            ),
        ],
        cache.path(),
    )?;
    let names: Vec<&str> = chain
        .output_columns()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "vehicle_id",
            "average_speed",
            "total_miles",
            "event_time",
            "owner_phone",
            "dotted",
            "kafka_offset"
        ]
    );
    assert_eq!(chain.output_columns()[3].ty, ColumnType::Datetime);

    let good = r#"{"vehicle":{"id":"V1"},"average_speed":62.5,"total_miles":"12000","ts":"2024-01-01 08:00:00","owner":{"phone":"13800138000"},"a.b":"x"}"#;
    let mut run = chain.start_run();
    let out = run.run(&batch(vec![
        record(10, good),
        record(11, "not json"),
        record(12, r#"{"vehicle":{"id":"V3"},"total_miles":"many"}"#),
        record(13, r#"{"average_speed":1}"#),
    ]))?;
    assert_eq!(out.rows.len(), 1);
    assert_eq!(out.rows[0].source, 0);
    assert_eq!(
        out.rows[0].cells,
        vec![
            Cell::String("V1".into()),
            Cell::Double(62.5),
            Cell::Int(12000),
            Cell::Datetime(1_704_096_000_000),
            Cell::String("138****8000".into()),
            Cell::String("x".into()),
            Cell::Int(10),
        ]
    );
    let codes: Vec<(u32, &str)> = out
        .dead_letters
        .iter()
        .map(|d| (d.source, d.code.as_str()))
        .collect();
    assert_eq!(
        codes,
        [(1, "bad-json"), (2, "type-mismatch"), (3, "null-value")]
    );
    assert!(
        out.dead_letters[1].message.contains("total_miles")
            && out.dead_letters[1].message.contains("many")
    );
    let m = &run.metrics()[0];
    assert_eq!((m.records_in, m.rows_out, m.errors, m.traps), (4, 1, 3, 0));
    Ok(())
}

#[test]
fn bad_configuration_fails_at_load_naming_the_key() {
    let host = TransformHost::new().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let err = host
        .load_chain(
            vec![spec(
                "kafka-columns",
                "kafka-columns",
                &[("columns", r#"[{"name":"a","type":"bigin"}]"#)],
            )],
            cache.path(),
        )
        .unwrap_err();
    assert!(matches!(err, TransformError::Configure { .. }), "{err}");
    assert!(err.to_string().contains("bigin"), "{err}");
    let err = host
        .load_chain(
            vec![
                spec("kafka-columns", "kafka-columns", &[]),
                spec("mask", "mask", &[("column.nope", "phone")]),
            ],
            cache.path(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("column.nope"), "{err}");
    // A row stage where the parser belongs does not fit the world.
    let err = host
        .load_chain(vec![spec("mask", "mask", &[])], cache.path())
        .unwrap_err();
    assert!(matches!(err, TransformError::Link { .. }), "{err}");
}

fn hostile_chain(
    host: &TransformHost,
    mode: &str,
    value: &str,
    limits: Limits,
) -> anyhow::Result<k2mc::transform::Chain> {
    let cache = tempfile::tempdir()?;
    let mut hostile = spec("hostile", "hostile", &[("mode", mode), ("value", value)]);
    hostile.limits = limits;
    let parser = spec(
        "kafka-columns",
        "kafka-columns",
        &[(
            "columns",
            r#"[{"name":"v","type":"string","source":"__value__"}]"#,
        )],
    );
    Ok(host.load_chain(vec![parser, hostile], cache.path())?)
}

#[test]
fn an_infinite_loop_is_interrupted_within_the_deadline() -> anyhow::Result<()> {
    let host = TransformHost::new()?;
    let limits = Limits {
        call_deadline: Duration::from_millis(100),
        ..Limits::default()
    };
    let chain = hostile_chain(&host, "loop", "", limits)?;
    // The chain keeps the epoch ticker alive on its own.
    drop(host);
    let mut run = chain.start_run();
    let started = Instant::now();
    let out = run.run(&batch(vec![record(0, "a")]))?;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out.dead_letters.len(), 1);
    assert_eq!(out.dead_letters[0].code, "trap");
    assert!(
        out.dead_letters[0].message.contains("deadline"),
        "{}",
        out.dead_letters[0].message
    );
    Ok(())
}

#[test]
fn a_memory_bomb_traps_at_the_cap() -> anyhow::Result<()> {
    let host = TransformHost::new()?;
    let limits = Limits {
        memory: 32 << 20,
        ..Limits::default()
    };
    let chain = hostile_chain(&host, "alloc", "", limits)?;
    let out = chain.start_run().run(&batch(vec![record(0, "a")]))?;
    assert_eq!(out.dead_letters.len(), 1);
    assert_eq!(out.dead_letters[0].code, "trap");
    Ok(())
}

#[test]
fn a_trap_on_record_k_dead_letters_only_record_k() -> anyhow::Result<()> {
    let host = TransformHost::new()?;
    let chain = hostile_chain(&host, "trap-on", "poison", Limits::default())?;
    let mut run = chain.start_run();
    let records: Vec<KafkaRecord> = (0..16)
        .map(|i| record(i, if i == 11 { "poison" } else { "fine" }))
        .collect();
    let out = run.run(&batch(records))?;
    assert_eq!(out.rows.len(), 15);
    assert!(out.rows.iter().all(|r| r.source != 11));
    assert_eq!(out.dead_letters.len(), 1);
    assert_eq!(
        (
            out.dead_letters[0].source,
            out.dead_letters[0].stage.as_str()
        ),
        (11, "hostile")
    );
    assert!(
        out.dead_letters[0].message.contains("unreachable")
            || out.dead_letters[0].message.contains("trap"),
        "{}",
        out.dead_letters[0].message
    );
    // log2(16) halvings: the bisection costs at most a handful of extra calls.
    assert!(run.metrics()[1].traps <= 5, "{:?}", run.metrics()[1]);
    // The run goes on with a fresh instance.
    let again = run.run(&batch(vec![record(20, "fine")]))?;
    assert_eq!(again.rows.len(), 1);
    Ok(())
}

#[test]
fn the_sandbox_grants_nothing_by_default() -> anyhow::Result<()> {
    let host = TransformHost::new()?;
    let chain = hostile_chain(&host, "probe", "", Limits::default())?;
    let probe = |chain: &k2mc::transform::Chain| -> anyhow::Result<String> {
        let out = chain.start_run().run(&batch(vec![record(0, "a")]))?;
        match &out.rows[0].cells[0] {
            Cell::String(s) => Ok(s.clone()),
            other => anyhow::bail!("unexpected cell {other:?}"),
        }
    };
    let first = probe(&chain)?;
    assert!(first.contains("file:denied"), "{first}");
    assert!(first.contains("env:none"), "{first}");
    assert!(first.contains("net:denied"), "{first}");
    assert!(first.contains("clock:0 "), "{first}");
    assert!(first.contains("args:0"), "{first}");
    assert_eq!(
        probe(&chain)?,
        first,
        "randomness must be a fixed sequence unless granted"
    );

    let cache = tempfile::tempdir()?;
    let mut granted = spec("hostile", "hostile", &[("mode", "probe")]);
    granted.grants = Grants {
        clocks: true,
        random: true,
        registry: false,
    };
    let parser = spec(
        "kafka-columns",
        "kafka-columns",
        &[(
            "columns",
            r#"[{"name":"v","type":"string","source":"__value__"}]"#,
        )],
    );
    let chain = host.load_chain(vec![parser, granted], cache.path())?;
    let with_grants = probe(&chain)?;
    assert!(!with_grants.contains("clock:0 "), "{with_grants}");
    assert!(
        with_grants.contains("file:denied") && with_grants.contains("net:denied"),
        "{with_grants}"
    );
    Ok(())
}

#[test]
fn precompiled_artifacts_load_and_stale_ones_recompile() -> anyhow::Result<()> {
    let host = TransformHost::new()?;
    let dir = tempfile::tempdir()?;
    let wasm = dir.path().join("mask.wasm");
    std::fs::copy(transform_wasm("mask")?, &wasm)?;
    let parser = |cache: &std::path::Path| -> anyhow::Result<Vec<(String, String, Origin)>> {
        let mut mask = spec("mask", "mask", &[]);
        mask.wasm = wasm.clone();
        Ok(host
            .load_chain(
                vec![spec("kafka-columns", "kafka-columns", &[]), mask],
                cache,
            )?
            .describe())
    };
    precompile(host.engine(), "mask", &wasm, dir.path())?;
    let cache = dir.path().join("cache");
    assert_eq!(parser(&cache)?[1].2, Origin::Precompiled);

    // A manifest from another wasmtime version is stale: compiled again, then served from cache.
    let manifest = dir.path().join("mask.cwasm.json");
    let text = std::fs::read_to_string(&manifest)?.replace("48.0.8", "47.0.0");
    std::fs::write(&manifest, text)?;
    assert_eq!(parser(&cache)?[1].2, Origin::Compiled);
    assert_eq!(parser(&cache)?[1].2, Origin::Cached);
    Ok(())
}

/// The three built-in stages in one chain, on the seeds' vehicle example.
#[test]
fn three_stage_chain_golden() -> anyhow::Result<()> {
    let host = TransformHost::new()?;
    let cache = tempfile::tempdir()?;
    let chain = host.load_chain(
        vec![
            vehicle_parser(),
            spec(
                "mask",
                "mask",
                &[
                    ("column.owner_phone", "hmac-sha256"),
                    ("hmac-key", "k2mc-test-key"),
                ],
            ),
            spec(
                "filter",
                "filter",
                &[("predicate", "average_speed <= 90 && total_miles <= 200000")],
            ),
        ],
        cache.path(),
    )?;
    let event = |id: &str, speed: f64, miles: i64| {
        format!(
            r#"{{"vehicle":{{"id":"{id}"}},"average_speed":{speed},"total_miles":{miles},"ts":"2024-01-01T08:00:00Z","owner":{{"phone":"13800138000"}}}}"#
        )
    };
    let records = vec![
        record(0, &event("V1", 62.5, 12_000)),
        record(1, &event("V2", 95.0, 58_000)),
        record(2, &event("V3", 88.2, 210_000)),
        record(3, &event("V4", 45.0, 3_100)),
    ];
    let mut run = chain.start_run();
    let out = run.run(&batch(records))?;
    let kept: Vec<(u32, Cell)> = out
        .rows
        .iter()
        .map(|r| (r.source, r.cells[0].clone()))
        .collect();
    assert_eq!(
        kept,
        [
            (0, Cell::String("V1".into())),
            (3, Cell::String("V4".into()))
        ]
    );
    // HMAC-SHA-256("13800138000", key "k2mc-test-key") as Python's hmac module computes it.
    assert_eq!(
        out.rows[0].cells[4],
        Cell::String("fa42b8b8fe8af9756db5e2625fffcb4ee6ccf5d0dd571103fb62f787f38e3b58".into())
    );
    let m = run.metrics();
    assert_eq!((m[2].records_in, m[2].rows_out, m[2].filtered), (4, 2, 2));
    assert!(out.dead_letters.is_empty());
    Ok(())
}

#[test]
fn a_bad_predicate_fails_at_configure_with_its_position() {
    let host = TransformHost::new().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let err = host
        .load_chain(
            vec![
                spec(
                    "kafka-columns",
                    "kafka-columns",
                    &[("columns", VEHICLE_COLUMNS)],
                ),
                spec(
                    "filter",
                    "filter",
                    &[("predicate", "average_speed <= && total_miles")],
                ),
            ],
            cache.path(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("position 18"), "{err}");
}

/// The same `mask` written in Rust, JavaScript and Python gives identical rows on the shared
/// golden input (`transforms/golden/mask-input.jsonl`), digests included. The Rust one declares
/// the columns it reads (WIT 1.2 `projection`: it gets only those cells, the host passes the
/// others through and drops `note`); the other two get whole rows.
#[test]
fn mask_in_rust_javascript_and_python_agree() -> anyhow::Result<()> {
    let host = TransformHost::new()?;
    let cache = harness::artifact_cache();
    let input =
        std::fs::read_to_string(harness::repo_root().join("transforms/golden/mask-input.jsonl"))?;
    let records: Vec<KafkaRecord> = input
        .lines()
        .enumerate()
        .map(|(i, l)| record(i as i64, l))
        .collect();
    let parser = || {
        spec(
            "kafka-columns",
            "kafka-columns",
            &[(
                "columns",
                r#"[{"name":"phone","type":"string"},{"name":"mail","type":"string"},{"name":"id","type":"varchar(32)"},{"name":"note","type":"string"}]"#,
            )],
        )
    };
    let run_with = |wasm: std::path::PathBuf,
                    config: &[(&str, &str)]|
     -> anyhow::Result<Vec<k2mc::transform::bindings::Row>> {
        let mut mask = spec("mask", "mask", config);
        mask.wasm = wasm;
        let chain = host.load_chain(vec![parser(), mask], &cache)?;
        let out = chain.start_run().run(&batch(records.clone()))?;
        anyhow::ensure!(
            out.dead_letters.is_empty(),
            "dead letters: {:?}",
            out.dead_letters
        );
        Ok(out.rows)
    };
    let masks = [
        ("column.phone", "phone"),
        ("column.mail", "email"),
        ("column.id", "id-number"),
        ("column.note", "drop"),
    ];
    let rust = run_with(transform_wasm("mask")?, &masks)?;
    let js = run_with(harness::foreign_wasm("mask-js")?, &masks)?;
    let py = run_with(harness::foreign_wasm("mask-py")?, &masks)?;
    assert_eq!(rust.len(), 5);
    assert_eq!(
        rust[0].cells,
        [
            Cell::String("138****8000".into()),
            Cell::String("a****@example.com".into()),
            Cell::String("110101********7777".into())
        ]
    );
    assert_eq!(rust[2].cells[1], Cell::String("ü@例え.jp".into()));
    assert_eq!(js, rust, "JavaScript differs from Rust");
    assert_eq!(py, rust, "Python differs from Rust");

    let digests = [
        ("column.phone", "sha256"),
        ("column.mail", "hmac-sha256"),
        ("hmac-key", "k2mc-test-key"),
    ];
    let rust = run_with(transform_wasm("mask")?, &digests)?;
    let py = run_with(harness::foreign_wasm("mask-py")?, &digests)?;
    assert_eq!(py, rust, "Python digests differ from Rust");
    let js = run_with(harness::foreign_wasm("mask-js")?, &digests)?;
    assert_eq!(js, rust, "JavaScript digests differ from Rust");
    Ok(())
}

/// WIT 1.1 to 1.5 are compatible changes: a component built against `kafka2mc:transform@1.0.0` (the
/// `filter` of the release before 1.1, kept as `transforms/golden/filter-wit-1.0.0.wasm`) still
/// links and runs on this host.
#[test]
fn a_component_built_against_wit_1_0_runs_on_a_later_1_x_host() -> anyhow::Result<()> {
    let host = TransformHost::new()?;
    let cache = tempfile::tempdir()?;
    let old = harness::repo_root().join("transforms/golden/filter-wit-1.0.0.wasm");
    let chain = host.load_chain(
        vec![
            vehicle_parser(),
            harness::stage_spec("filter", &old, &[("predicate", "total_miles < 100")]),
        ],
        cache.path(),
    )?;
    let event = |miles: i64| {
        format!(
            r#"{{"vehicle":{{"id":"V"}},"average_speed":1.0,"total_miles":{miles},"ts":"2024-01-01T08:00:00Z","owner":{{"phone":"13800138000"}}}}"#
        )
    };
    let out = chain
        .start_run()
        .run(&batch(vec![record(0, &event(50)), record(1, &event(500))]))?;
    let kept: Vec<u32> = out.rows.iter().map(|r| r.source).collect();
    assert_eq!(kept, [0]);
    Ok(())
}

/// Chunks transformed on several worker threads come back in submission order with the same
/// rows, dead letters and trap isolation as one run gives, and the workers' counters add up.
#[test]
fn worker_threads_give_the_same_output_in_order() -> anyhow::Result<()> {
    let host = TransformHost::new()?;
    let chain = hostile_chain(&host, "trap-on", "poison", Limits::default())?;
    let chunks: Vec<RecordBatch> = (0..9)
        .map(|c| {
            batch(
                (0..20)
                    .map(|i| {
                        let offset = c * 20 + i;
                        let value = match offset % 13 {
                            0 => "poison",
                            5 => "not json",
                            _ => "fine",
                        };
                        record(offset, value)
                    })
                    .collect(),
            )
        })
        .collect();
    let mut one = chain.start_run();
    let expected: Vec<_> = chunks
        .iter()
        .map(|c| one.run(c))
        .collect::<Result<_, _>>()?;
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let mut pool = chain.start_parallel(3)?;
    assert_eq!(pool.workers(), 3);
    let mut got = Vec::new();
    rt.block_on(async {
        for c in &chunks {
            pool.submit(c.clone())?;
            if pool.in_flight() == 4 {
                got.push(pool.next().await.expect("in flight")?);
            }
        }
        while let Some(done) = pool.next().await {
            got.push(done?);
        }
        Ok::<_, TransformError>(())
    })?;
    assert_eq!(got.len(), chunks.len());
    for ((done, chunk), want) in got.iter().zip(&chunks).zip(&expected) {
        assert_eq!(done.chunk.records[0].offset, chunk.records[0].offset);
        assert_eq!(done.output.rows, want.rows);
        assert_eq!(done.output.dead_letters, want.dead_letters);
    }
    let traps: u64 = pool.finish().iter().map(|m| m.traps).sum();
    let expected_traps: u64 = one.metrics().iter().map(|m| m.traps).sum();
    assert_eq!(traps, expected_traps);
    assert!(traps > 0);
    Ok(())
}
