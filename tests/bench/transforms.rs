//! `bench-transforms`: what the WebAssembly sandbox costs. Runs `kafka-columns` + `mask` inside
//! wasmtime at batch sizes 1, 100 and 1000 and the same logic compiled natively, on the same
//! ~230-byte JSON records, several repetitions each, and reports medians and the ratio (and, beside
//! it, the chain with `mask`'s rows listed instead of packed); then the cold start of loading three
//! precompiled transforms (engine included).
//!
//! `cargo run --release -p k2mc-it --bin bench-transforms -- [--records N] [--reps R]
//! [--note-bytes B] [--out FILE]`: `--note-bytes` makes each record's free-text note B letters
//! long (records of about B + 200 bytes), to weigh what a record's size costs the crossing.

use std::borrow::Cow;
use std::time::Instant;

use anyhow::Context;
use harness::{stage_spec, transform_wasm};
use k2mc::transform::bindings::{KafkaRecord, RecordBatch};
use k2mc::transform::{TransformHost, precompile};
use kafka_columns::columns::{Kind, Out, Source, coerce_picked, parse_source};
use kafka_columns::path::Step;
use kafka_columns::select::{Picked, Selection};
use mask::rules::{Plan, Rule};
use serde_json::json;

/// The allocator the `k2mc` binary ships with (function/src/main.rs): the host's side of the
/// crossing (lifting rows, building cells) and the native baseline allocate per cell, so measuring
/// them on the C library's allocator would measure an allocator k2mc does not run on.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const COLUMNS: &str = r#"[
  {"name":"vehicle_id","type":"string","source":"vehicle.id"},
  {"name":"average_speed","type":"double"},
  {"name":"total_miles","type":"bigint"},
  {"name":"event_time","type":"datetime","source":"ts"},
  {"name":"owner_phone","type":"string","source":"owner.phone"},
  {"name":"owner_email","type":"string","source":"owner.email"},
  {"name":"brand","type":"string"},
  {"name":"kafka_offset","type":"bigint","source":"__offset__"}
]"#;

fn records(n: usize, note: &str) -> Vec<KafkaRecord> {
    let brands = ["BYD", "NIO", "Geely", "Roewe", "Li Auto"];
    (0..n)
        .map(|i| {
            let value = json!({
                "vehicle": {"id": format!("LSV{i:014}")},
                "average_speed": 40.0 + (i % 60) as f64 + 0.25,
                "total_miles": (i * 37) % 300_000,
                "ts": format!("2024-01-01 {:02}:{:02}:{:02}", (i / 3600) % 24, (i / 60) % 60, i % 60),
                "owner": {"phone": format!("138{:08}", i % 100_000_000), "email": format!("user{i}@example.com")},
                "brand": brands[i % brands.len()],
                "note": note,
            });
            KafkaRecord {
                offset: i as i64,
                timestamp_ms: 1_704_067_200_000 + i as i64,
                key: Some(format!("LSV{i}").into_bytes()),
                value: Some(value.to_string().into_bytes()),
                headers: Vec::new(),
            }
        })
        .collect()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// The same extraction and masking as the two components, as plain native code.
struct Native {
    specs: Vec<(Kind, Source)>,
    /// The paths the columns read, parsed in one pass as the component does (`select`).
    selection: Selection,
    plan: Plan,
}

impl Native {
    fn new() -> anyhow::Result<Self> {
        let list: Vec<serde_json::Value> = serde_json::from_str(COLUMNS)?;
        let mut specs = Vec::new();
        let mut names = Vec::new();
        for c in &list {
            let name = c["name"].as_str().unwrap_or_default();
            let kind = match c["type"].as_str().unwrap_or_default() {
                "double" => Kind::Double,
                "bigint" => Kind::Int {
                    min: i64::MIN,
                    max: i64::MAX,
                },
                "datetime" => Kind::Datetime,
                _ => Kind::Text { max_chars: None },
            };
            let source = parse_source(c.get("source").and_then(|s| s.as_str()).unwrap_or(name))
                .map_err(anyhow::Error::msg)?;
            specs.push((kind, source));
            names.push((name.to_owned(), true));
        }
        let config = vec![
            ("column.owner_phone".to_owned(), "phone".to_owned()),
            ("column.owner_email".to_owned(), "email".to_owned()),
        ];
        let plan = Plan::new(&config, &names).map_err(anyhow::Error::msg)?;
        let paths: Vec<&[Step]> = specs
            .iter()
            .filter_map(|(_, s)| match s {
                Source::Path(steps) => Some(steps.as_slice()),
                _ => None,
            })
            .collect();
        let selection = Selection::new(&paths);
        Ok(Native {
            specs,
            selection,
            plan,
        })
    }

    fn run(&self, records: &[KafkaRecord]) -> usize {
        let mut cells = 0;
        for r in records {
            let Some(mut picked) = r
                .value
                .as_ref()
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|text| self.selection.read_picked(text).ok())
            else {
                continue;
            };
            let mut row: Vec<Out<'_>> = Vec::with_capacity(self.specs.len());
            let mut slot = 0;
            for (kind, source) in &self.specs {
                let value = match source {
                    Source::Path(_) => {
                        slot += 1;
                        picked[slot - 1]
                            .take()
                            .unwrap_or(Picked::Value(serde_json::Value::Null))
                    }
                    Source::Offset => Picked::Value(json!(r.offset)),
                    _ => Picked::Value(serde_json::Value::Null),
                };
                row.push(coerce_picked(kind, value).unwrap_or(Out::Null));
            }
            for (cell, rule) in row.iter_mut().zip(&self.plan.rules) {
                if let (Some(rule @ (Rule::Phone | Rule::Email)), Out::Text(s)) = (rule, &*cell) {
                    *cell = Out::Text(Cow::Owned(self.plan.apply(*rule, s)));
                }
            }
            cells += std::hint::black_box(row).len();
        }
        cells
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut n, mut reps, mut out) = (20_000usize, 5usize, None);
    let mut note = "routine telemetry".to_owned();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--records" => n = args.next().context("--records N")?.parse()?,
            "--reps" => reps = args.next().context("--reps R")?.parse()?,
            "--out" => out = Some(args.next().context("--out FILE")?),
            "--note-bytes" => {
                let bytes: usize = args.next().context("--note-bytes B")?.parse()?;
                note = "abcdefghijklmnopqrstuvwxyz"
                    .chars()
                    .cycle()
                    .take(bytes)
                    .collect();
            }
            other => anyhow::bail!(
                "unknown argument {other}; use --records N --reps R --note-bytes B --out FILE"
            ),
        }
    }
    let data = records(n, &note);
    let avg_bytes = data
        .iter()
        .map(|r| r.value.as_ref().map_or(0, Vec::len))
        .sum::<usize>()
        / n.max(1);
    let dir = tempfile::tempdir()?;
    let mut wasm = Vec::new();
    let host = TransformHost::new()?;
    for name in ["kafka-columns", "mask", "filter"] {
        let copy = dir.path().join(format!("{}.wasm", name.replace('-', "_")));
        std::fs::copy(transform_wasm(name)?, &copy)?;
        precompile(host.engine(), name, &copy, dir.path())?;
        wasm.push(copy);
    }
    let cache = dir.path().join("cache");
    let specs = || {
        vec![
            stage_spec("kafka-columns", &wasm[0], &[("columns", COLUMNS)]),
            stage_spec(
                "mask",
                &wasm[1],
                &[
                    ("column.owner_phone", "phone"),
                    ("column.owner_email", "email"),
                ],
            ),
        ]
    };
    let chain = host.load_chain(specs(), &cache)?;
    // The same chain with `mask` called through `transform` (listed rows, WIT 1.2) instead of
    // `transform-packed` (WIT 1.4), timed beside it: the crossing's share, A/B in one run.
    let mut listed = host.load_chain(specs(), &cache)?;
    anyhow::ensure!(
        listed.without_packed_row_stages() == 1,
        "mask is not a packed row stage"
    );

    let native = Native::new()?;
    let native_us = median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                native.run(&data);
                t.elapsed().as_secs_f64() * 1e6 / n as f64
            })
            .collect(),
    );
    let mut rows = Vec::new();
    for batch_size in [1usize, 100, 1000] {
        // The batches are built before the clock starts, as the native side reads `data` in
        // place: copying the records is not the sandbox's cost.
        let batches: Vec<RecordBatch> = data
            .chunks(batch_size)
            .map(|chunk| RecordBatch {
                topic: "bench".into(),
                partition: 0,
                records: chunk.to_vec(),
            })
            .collect();
        let time = |chain: &k2mc::transform::Chain| -> anyhow::Result<f64> {
            let mut run = chain.start_run();
            let t = Instant::now();
            for batch in &batches {
                std::hint::black_box(run.run(batch)?);
            }
            Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
        };
        // Alternated, so that both see the same machine.
        let (mut packed, mut as_list) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            packed.push(time(&chain)?);
            as_list.push(time(&listed)?);
        }
        let per_record = median(packed);
        rows.push((
            batch_size,
            per_record,
            per_record / native_us,
            median(as_list),
        ));
    }

    let cold: Vec<f64> = (0..reps.max(10))
        .map(|_| -> anyhow::Result<f64> {
            let t = Instant::now();
            let host = TransformHost::new()?;
            let chain = host.load_chain(
                vec![
                    stage_spec("kafka-columns", &wasm[0], &[("columns", COLUMNS)]),
                    stage_spec("mask", &wasm[1], &[("column.owner_phone", "phone")]),
                    stage_spec("filter", &wasm[2], &[("predicate", "average_speed <= 90")]),
                ],
                &cache,
            )?;
            let elapsed = t.elapsed();
            anyhow::ensure!(
                chain
                    .describe()
                    .iter()
                    .all(|d| d.2 == k2mc::transform::Origin::Precompiled),
                "artifacts were not precompiled"
            );
            Ok(elapsed.as_secs_f64() * 1e3)
        })
        .collect::<anyhow::Result<_>>()?;
    let cold_ms = median(cold);

    println!("kafka-columns + mask, {n} records of ~{avg_bytes} B JSON, median of {reps} runs");
    println!(
        "| batch | wasm µs/record | native µs/record | wasm / native | wasm, mask's rows listed µs/record |"
    );
    println!("|---|---|---|---|---|");
    for (b, us, ratio, listed) in &rows {
        println!("| {b} | {us:.3} | {native_us:.3} | {ratio:.2}× | {listed:.3} |");
    }
    println!(
        "cold start (engine + three precompiled transforms loaded and configured): median {cold_ms:.2} ms"
    );
    if let Some(path) = out {
        let report = json!({
            "records": n, "reps": reps, "avg_value_bytes": avg_bytes, "native_us_per_record": native_us,
            "wasm": rows.iter().map(|(b, us, r, l)| json!({"batch": b, "us_per_record": us, "ratio_to_native": r, "mask_listed_us_per_record": l})).collect::<Vec<_>>(),
            "cold_start_ms": cold_ms,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}
