//! `k2mc transforms …`: run a chain on sample records (the quickest way to test a transform you
//! are writing) and precompile components for packaging.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use k2mc::transform::bindings::{Cell, Header, KafkaRecord, RecordBatch};
use k2mc::transform::{Grants, Limits, StageSpec, TransformHost, precompile};
use serde_json::{Value as Json, json};

/// `k2mc transforms run | precompile`.
#[derive(Debug, Subcommand)]
pub(crate) enum TransformsCommand {
    /// Run a chain on records from a JSON lines file and print the rows and dead letters.
    ///
    /// Each line is {"value": <JSON or text>, "key"?: text, "offset"?: n, "timestamp"?: ms,
    /// "headers"?: {name: text}}; binary keys and values (Avro, Protobuf) as "key_base64" and
    /// "value_base64". Stages are given in order: the first is the parser.
    Run {
        /// A stage: PATH.wasm, PATH.wasm={"key": "value", …} with its settings, or
        /// PATH.wasm=@FILE with the settings in a JSON file (repeat --stage).
        #[arg(long = "stage", required = true)]
        stages: Vec<String>,
        /// JSON lines of records.
        #[arg(long)]
        input: PathBuf,
        /// Topic name the records claim to come from.
        #[arg(long, default_value = "sample")]
        topic: String,
        /// JSON lines of the rows the chain must produce (as this command prints them; key order
        /// and spacing do not matter). Differences are printed and the command fails: the way to
        /// check that a port in another language agrees with the original.
        #[arg(long)]
        expect: Option<PathBuf>,
        /// A Confluent-compatible schema registry the first stage is granted (for parsers that
        /// decode Avro, Protobuf or JSON Schema records, e.g. the built-in `registry`).
        #[arg(long)]
        registry: Option<url::Url>,
    },
    /// Write a new transform: a standalone folder with a working row or parser stage in Rust,
    /// JavaScript, Python or C, its build command, the WIT contract, sample input and settings.
    New {
        /// The transform's name (lower-case letters, digits and '-'); also the folder's.
        name: String,
        /// The language.
        #[arg(long, value_enum)]
        lang: super::scaffold::Lang,
        /// The WIT world: a row stage (after the parser) or a parser stage (the first).
        #[arg(long, value_enum, default_value = "row")]
        world: super::scaffold::World,
        /// Where to create the folder.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Precompile components to .cwasm artifacts with manifests, for packaging.
    Precompile {
        #[arg(required = true)]
        wasm: Vec<PathBuf>,
        /// Directory for the artifacts.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs a `k2mc transforms` command.
pub(crate) fn run(command: TransformsCommand) -> anyhow::Result<()> {
    match command {
        TransformsCommand::Run {
            stages,
            input,
            topic,
            expect,
            registry,
        } => run_chain(&stages, &input, &topic, expect.as_deref(), registry),
        TransformsCommand::New {
            name,
            lang,
            world,
            dir,
        } => super::scaffold::new(&name, lang, world, &dir).map(drop),
        TransformsCommand::Precompile { wasm, out } => {
            let host = TransformHost::new()?;
            std::fs::create_dir_all(&out)?;
            for path in wasm {
                let name = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("stage")
                    .to_owned();
                let artifact = precompile(host.engine(), &name, &path, &out)?;
                eprintln!("{} -> {}", path.display(), artifact.display());
            }
            Ok(())
        }
    }
}

/// `PATH.wasm`, `PATH.wasm={"key": "value", …}` (settings as a JSON object) or
/// `PATH.wasm=@FILE` (the JSON object read from FILE).
fn parse_stage(text: &str) -> anyhow::Result<StageSpec> {
    let (path, settings) = match text.split_once(".wasm=") {
        Some((stem, json)) => (format!("{stem}.wasm"), Some(json)),
        None => (text.to_owned(), None),
    };
    let mut config = Vec::new();
    if let Some(json) = settings {
        let json = match json.strip_prefix('@') {
            Some(file) => std::fs::read_to_string(file)
                .with_context(|| format!("reading the settings of {path} from {file}"))?,
            None => json.to_owned(),
        };
        let map: serde_json::Map<String, Json> = serde_json::from_str(&json)
            .with_context(|| format!("stage settings of {path} must be a JSON object"))?;
        for (k, v) in map {
            config.push((k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)));
        }
    }
    let wasm = PathBuf::from(path);
    let name = wasm
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("stage")
        .replace('_', "-");
    Ok(StageSpec {
        name,
        wasm,
        config,
        grants: Grants::default(),
        limits: Limits::default(),
        registry: None,
    })
}

fn read_records(path: &Path) -> anyhow::Result<Vec<KafkaRecord>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut records = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = || format!("{} line {}", path.display(), n + 1);
        let obj: Json = serde_json::from_str(line).with_context(at)?;
        let bytes = |v: Option<&Json>| match v {
            None | Some(Json::Null) => None,
            Some(Json::String(s)) => Some(s.clone().into_bytes()),
            Some(other) => Some(other.to_string().into_bytes()),
        };
        let headers = obj
            .get("headers")
            .and_then(Json::as_object)
            .map(|h| {
                h.iter()
                    .map(|(k, v)| Header {
                        key: k.clone(),
                        value: bytes(Some(v)),
                    })
                    .collect()
            })
            .unwrap_or_default();
        // Binary keys and values (Avro, Protobuf) come base64-encoded.
        let binary = |field: &str| -> anyhow::Result<Option<Option<Vec<u8>>>> {
            use base64::Engine as _;
            match obj.get(field) {
                None => Ok(None),
                Some(Json::Null) => Ok(Some(None)),
                Some(Json::String(s)) => Ok(Some(Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(s)
                        .with_context(|| format!("{}: {field} is not base64", at()))?,
                ))),
                Some(_) => anyhow::bail!("{}: {field} must be a base64 string", at()),
            }
        };
        records.push(KafkaRecord {
            offset: obj.get("offset").and_then(Json::as_i64).unwrap_or(n as i64),
            timestamp_ms: obj.get("timestamp").and_then(Json::as_i64).unwrap_or(0),
            key: binary("key_base64")?.unwrap_or_else(|| bytes(obj.get("key"))),
            value: binary("value_base64")?.unwrap_or_else(|| bytes(obj.get("value"))),
            headers,
        });
    }
    Ok(records)
}

fn run_chain(
    stages: &[String],
    input: &Path,
    topic: &str,
    expect: Option<&Path>,
    registry: Option<url::Url>,
) -> anyhow::Result<()> {
    let host = TransformHost::new()?;
    let mut specs = stages
        .iter()
        .map(|s| parse_stage(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let (Some(url), Some(first)) = (registry, specs.first_mut()) {
        first.grants.registry = true;
        first.registry = Some(k2mc::transform::Registry::new(
            url,
            None,
            std::time::Duration::from_secs(10),
        ));
    }
    let mut chain = host.load_chain(specs, &k2mc::transform::artifact_cache_dir())?;
    // Dead letters, metrics and the stages' own output are labelled by the names the components
    // declare (`mask`), not by their files (`mask_js.wasm`).
    chain.name_stages_as_declared();
    let columns: Vec<String> = chain
        .output_columns()
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let records = read_records(input)?;
    let mut run = chain.start_run();
    let out = run.run(&RecordBatch {
        topic: topic.to_owned(),
        partition: 0,
        records,
    })?;
    let rows: Vec<Json> = out
        .rows
        .iter()
        .map(|row| {
            Json::Object(
                columns
                    .iter()
                    .cloned()
                    .zip(row.cells.iter().map(cell_json))
                    .collect(),
            )
        })
        .collect();
    for row in &rows {
        println!("{row}");
    }
    for dead in &out.dead_letters {
        eprintln!(
            "dead letter: record {} at stage {}: {}: {}",
            dead.source, dead.stage, dead.code, dead.message
        );
    }
    for m in run.metrics() {
        eprintln!(
            "stage {}: {} in, {} rows out, {} filtered, {} errors, {} traps, {:?}",
            m.stage, m.records_in, m.rows_out, m.filtered, m.errors, m.traps, m.time
        );
    }
    match expect {
        Some(path) => compare(&rows, path),
        None => Ok(()),
    }
}

/// Compares the rows with the JSON lines of `path`; prints each difference and fails on any.
fn compare(rows: &[Json], path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --expect {}", path.display()))?;
    let mut expected = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let value: Json = serde_json::from_str(line)
            .with_context(|| format!("--expect {} line {}: not JSON", path.display(), n + 1))?;
        expected.push(value);
    }
    let mut differences = 0;
    for i in 0..rows.len().max(expected.len()) {
        let (want, got) = (expected.get(i), rows.get(i));
        if want != got {
            differences += 1;
            let show = |v: Option<&Json>| v.map_or("(no row)".to_owned(), Json::to_string);
            eprintln!(
                "row {}: expected {}\n        got      {}",
                i + 1,
                show(want),
                show(got)
            );
        }
    }
    anyhow::ensure!(
        differences == 0,
        "{differences} of {} row(s) differ from {}",
        rows.len().max(expected.len()),
        path.display()
    );
    eprintln!("rows match {} ({} rows)", path.display(), rows.len());
    Ok(())
}

fn cell_json(cell: &Cell) -> Json {
    match cell {
        Cell::Null => Json::Null,
        Cell::Boolean(b) => json!(b),
        Cell::Int(n) => json!(n),
        Cell::Double(x) => json!(x),
        Cell::Decimal(s) | Cell::String(s) | Cell::Json(s) => json!(s),
        Cell::Binary(b) => json!(b),
        Cell::Date(d) => json!(d),
        Cell::Datetime(ms) => json!(ms),
        Cell::Timestamp(t) | Cell::IntervalDayTime(t) => json!([t.seconds, t.nanos]),
        Cell::IntervalYearMonth(m) => json!(m),
    }
}
