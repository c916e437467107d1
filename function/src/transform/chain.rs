//! The transform stage of the pipeline: a chain of one parser component and any number of row
//! components. [`TransformHost`] is built once at cold start (one `Engine`, an epoch ticker);
//! [`Chain`] holds the loaded, configured stages; a [`ChainRun`] per partition range holds fresh
//! instances and runs batches through them.
//!
//! A trap (deadline, memory cap, panic) never blocks a partition: the instance is discarded and
//! the batch is bisected in fresh instances until the poison record is alone; only it becomes a
//! dead letter with code `trap`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, Store};

use super::artifact::{self, Origin};
use super::bindings::parser::{ParserStage, ParserStagePre};
use super::bindings::row::{RowStage, RowStagePre};
use super::bindings::{BatchOutput, Column, ErrorKind, RecordBatch, RecordError, Row, StageInfo};
use super::error::TransformError;
use super::sandbox::{Grants, Limits, StageState};

/// How often the epoch advances; deadlines are whole ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// One stage of a chain as configured by the user.
#[derive(Debug, Clone)]
pub struct StageSpec {
    pub name: String,
    pub wasm: PathBuf,
    pub config: Vec<(String, String)>,
    pub grants: Grants,
    pub limits: Limits,
}

/// The process-wide wasmtime engine and its epoch ticker.
#[derive(Debug)]
pub struct TransformHost {
    engine: Engine,
    ticker: Arc<Ticker>,
}

/// Stops the epoch ticker when the last holder (the host or a chain) is dropped: without ticks,
/// no deadline would ever fire.
#[derive(Debug)]
struct Ticker(Arc<AtomicBool>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl TransformHost {
    /// Builds the engine: component model, epoch interruption, no fuel.
    pub fn new() -> Result<Self, TransformError> {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| TransformError::Link {
            stage: "engine".into(),
            reason: e.to_string(),
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ticker_engine, ticker_stop) = (engine.clone(), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .map_err(|e| TransformError::Link {
                stage: "engine".into(),
                reason: format!("epoch ticker: {e}"),
            })?;
        Ok(TransformHost {
            engine,
            ticker: Arc::new(Ticker(stop)),
        })
    }

    /// The engine, for precompiling artifacts.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads, links and configures every stage; fails before any record is read if a component
    /// is missing, does not fit its world, or rejects its configuration.
    pub fn load_chain(
        &self,
        specs: Vec<StageSpec>,
        cache_dir: &Path,
    ) -> Result<Chain, TransformError> {
        let mut parser_linker = Linker::<StageState>::new(&self.engine);
        let mut row_linker = Linker::<StageState>::new(&self.engine);
        for linker in [&mut parser_linker, &mut row_linker] {
            wasmtime_wasi::p2::add_to_linker_sync(linker).map_err(|e| link_error("wasi", &e))?;
        }
        ParserStage::add_to_linker::<StageState, HasSelf<StageState>>(&mut parser_linker, |s| s)
            .map_err(|e| link_error("host", &e))?;
        RowStage::add_to_linker::<StageState, HasSelf<StageState>>(&mut row_linker, |s| s)
            .map_err(|e| link_error("host", &e))?;

        let mut stages = Vec::with_capacity(specs.len());
        let mut columns: Vec<Column> = Vec::new();
        for (i, spec) in specs.into_iter().enumerate() {
            let (component, origin, sha256) =
                artifact::load(&self.engine, &spec.name, &spec.wasm, cache_dir)?;
            let pre = if i == 0 {
                let pre = parser_linker
                    .instantiate_pre(&component)
                    .map_err(|e| link_error(&spec.name, &e))?;
                Pre::Parser(
                    ParserStagePre::new(pre).map_err(|e| not_world(&spec, "parser-stage", &e))?,
                )
            } else {
                let pre = row_linker
                    .instantiate_pre(&component)
                    .map_err(|e| link_error(&spec.name, &e))?;
                Pre::Row(RowStagePre::new(pre).map_err(|e| not_world(&spec, "row-stage", &e))?)
            };
            let mut stage = LoadedStage {
                spec,
                pre,
                input: columns.clone(),
                info: None,
                origin,
                sha256,
            };
            // Configure once now, so that bad configuration fails at load time.
            let live = stage.instantiate(&self.engine)?;
            columns = live.1.output.clone();
            stage.info = Some(live.1);
            stages.push(stage);
        }
        if stages.is_empty() {
            return Err(TransformError::Configure {
                stage: "chain".into(),
                message: "a chain needs at least one (parser) stage".into(),
            });
        }
        Ok(Chain {
            engine: self.engine.clone(),
            _ticker: Arc::clone(&self.ticker),
            stages,
        })
    }
}

fn link_error(stage: &str, e: &wasmtime::Error) -> TransformError {
    TransformError::Link {
        stage: stage.to_owned(),
        reason: format!("{e:#}"),
    }
}

fn not_world(spec: &StageSpec, world: &str, e: &wasmtime::Error) -> TransformError {
    TransformError::Link {
        stage: spec.name.clone(),
        reason: format!(
            "{} does not export the {world} world of kafka2mc:transform@1: {e:#}",
            spec.wasm.display()
        ),
    }
}

enum Pre {
    Parser(ParserStagePre<StageState>),
    Row(RowStagePre<StageState>),
}

enum Bound {
    Parser(ParserStage),
    Row(RowStage),
}

struct LoadedStage {
    spec: StageSpec,
    pre: Pre,
    input: Vec<Column>,
    info: Option<StageInfo>,
    origin: Origin,
    sha256: String,
}

/// A live instance of a stage.
struct Live {
    store: Store<StageState>,
    bound: Bound,
}

impl LoadedStage {
    /// The version the component declares (empty before it was configured).
    fn version(&self) -> String {
        self.info
            .as_ref()
            .map(|i| i.version.clone())
            .unwrap_or_default()
    }

    fn instantiate(&self, engine: &Engine) -> Result<(Live, StageInfo), TransformError> {
        let spec = &self.spec;
        let mut store = Store::new(
            engine,
            StageState::new(&spec.name, spec.grants, spec.limits),
        );
        store.limiter(|s| s.limiter());
        store.set_epoch_deadline(deadline_ticks(spec.limits.call_deadline));
        let trap = |e: wasmtime::Error| TransformError::Trap {
            stage: spec.name.clone(),
            reason: format!("{e:#}"),
        };
        let (bound, info) = match &self.pre {
            Pre::Parser(pre) => {
                let b = pre.instantiate(&mut store).map_err(trap)?;
                let info = b
                    .kafka2mc_transform_parser()
                    .call_configure(&mut store, &spec.config)
                    .map_err(trap)?;
                (Bound::Parser(b), info)
            }
            Pre::Row(pre) => {
                let b = pre.instantiate(&mut store).map_err(trap)?;
                let info = b
                    .kafka2mc_transform_row_transform()
                    .call_configure(&mut store, &spec.config, &self.input)
                    .map_err(trap)?;
                (Bound::Row(b), info)
            }
        };
        let info = info.map_err(|message| TransformError::Configure {
            stage: spec.name.clone(),
            message,
        })?;
        if info.output.is_empty() {
            return Err(TransformError::Columns {
                stage: spec.name.clone(),
                reason: "it declares no output columns".into(),
            });
        }
        Ok((Live { store, bound }, info))
    }
}

fn deadline_ticks(deadline: Duration) -> u64 {
    (deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

/// A loaded chain: shared by every range an invocation runs.
pub struct Chain {
    engine: Engine,
    _ticker: Arc<Ticker>,
    stages: Vec<LoadedStage>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field(
                "stages",
                &self.stages.iter().map(|s| &s.spec.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Chain {
    /// The columns the last stage emits: what the MaxCompute table must accept.
    pub fn output_columns(&self) -> &[Column] {
        self.stages
            .last()
            .and_then(|s| s.info.as_ref())
            .map_or(&[], |i| i.output.as_slice())
    }

    /// Each stage's name, version and whether its artifact was precompiled.
    pub fn describe(&self) -> Vec<(String, String, Origin)> {
        self.stages
            .iter()
            .map(|s| (s.spec.name.clone(), s.version(), s.origin))
            .collect()
    }

    /// Each stage's name, declared version and component SHA-256: the transform versions a
    /// commit-log entry records.
    pub fn modules(&self) -> Vec<(String, String, String)> {
        self.stages
            .iter()
            .map(|s| (s.spec.name.clone(), s.version(), s.sha256.clone()))
            .collect()
    }

    /// Fresh instances for one partition range.
    pub fn start_run(&self) -> ChainRun<'_> {
        ChainRun {
            chain: self,
            live: self.stages.iter().map(|_| None).collect(),
            metrics: self
                .stages
                .iter()
                .map(|s| StageMetrics {
                    stage: s.spec.name.clone(),
                    ..StageMetrics::default()
                })
                .collect(),
        }
    }
}

/// Counters of one stage over a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageMetrics {
    pub stage: String,
    pub records_in: u64,
    pub rows_out: u64,
    pub filtered: u64,
    pub errors: u64,
    pub traps: u64,
    pub time: Duration,
}

/// A record that did not make it through the chain, with the stage that said why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Index of the record in the batch.
    pub source: u32,
    pub stage: String,
    pub code: String,
    pub message: String,
}

/// What a batch became.
#[derive(Debug, Default)]
pub struct ChainOutput {
    /// Rows in the chain's output columns; `source` is the record's index in the batch.
    pub rows: Vec<Row>,
    pub dead_letters: Vec<DeadLetter>,
}

/// Instances of every stage for one partition range.
pub struct ChainRun<'c> {
    chain: &'c Chain,
    live: Vec<Option<Live>>,
    metrics: Vec<StageMetrics>,
}

impl std::fmt::Debug for ChainRun<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainRun")
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

/// Items a stage takes: Kafka records (first stage) or rows, as a window of the stage's input.
#[derive(Clone, Copy)]
enum Items<'a> {
    Records {
        batch: &'a RecordBatch,
        start: usize,
        end: usize,
    },
    /// Rows whose `source` equals their position in the full slice.
    Rows {
        rows: &'a [Row],
        start: usize,
        end: usize,
    },
}

impl Items<'_> {
    fn len(&self) -> usize {
        match self {
            Items::Records { start, end, .. } | Items::Rows { start, end, .. } => end - start,
        }
    }

    fn split(&self, mid: usize) -> (Self, Self) {
        match *self {
            Items::Records { batch, start, end } => (
                Items::Records {
                    batch,
                    start,
                    end: start + mid,
                },
                Items::Records {
                    batch,
                    start: start + mid,
                    end,
                },
            ),
            Items::Rows { rows, start, end } => (
                Items::Rows {
                    rows,
                    start,
                    end: start + mid,
                },
                Items::Rows {
                    rows,
                    start: start + mid,
                    end,
                },
            ),
        }
    }
}

impl ChainRun<'_> {
    /// Runs one batch through every stage.
    pub fn run(&mut self, batch: &RecordBatch) -> Result<ChainOutput, TransformError> {
        let mut dead_letters = Vec::new();
        let mut items_rows: Vec<Row> = Vec::new();
        // origin[i] = index in `batch.records` of the record behind the i-th row entering a stage.
        let mut origin: Vec<u32> = (0..batch.records.len() as u32).collect();
        for stage in 0..self.chain.stages.len() {
            let items = if stage == 0 {
                Items::Records {
                    batch,
                    start: 0,
                    end: batch.records.len(),
                }
            } else {
                Items::Rows {
                    rows: &items_rows,
                    start: 0,
                    end: items_rows.len(),
                }
            };
            let n = items.len();
            let started = Instant::now();
            let mut out = BatchOutput {
                rows: Vec::new(),
                errors: Vec::new(),
            };
            self.isolate(stage, items, 0, &mut out)?;
            let name = &self.chain.stages[stage].spec.name;
            let width = self.chain.stages[stage]
                .info
                .as_ref()
                .map_or(0, |i| i.output.len());
            let mut produced = vec![false; n];
            for row in &out.rows {
                let Some(seen) = produced.get_mut(row.source as usize) else {
                    return Err(contract(
                        name,
                        format!("row source {} is outside a batch of {n}", row.source),
                    ));
                };
                *seen = true;
                if row.cells.len() != width {
                    return Err(contract(
                        name,
                        format!(
                            "a row has {} cells but the stage declared {width} columns",
                            row.cells.len()
                        ),
                    ));
                }
            }
            let m = &mut self.metrics[stage];
            m.records_in += n as u64;
            m.rows_out += out.rows.len() as u64;
            m.errors += out.errors.len() as u64;
            for error in out.errors {
                if error.kind == ErrorKind::Fatal {
                    return Err(TransformError::Fatal {
                        stage: name.clone(),
                        code: error.code,
                        message: error.message,
                    });
                }
                let Some(seen) = produced.get_mut(error.source as usize) else {
                    return Err(contract(
                        name,
                        format!("error source {} is outside a batch of {n}", error.source),
                    ));
                };
                *seen = true;
                dead_letters.push(DeadLetter {
                    source: origin[error.source as usize],
                    stage: name.clone(),
                    code: error.code,
                    message: error.message,
                });
            }
            m.filtered += produced.iter().filter(|p| !**p).count() as u64;
            m.time += started.elapsed();
            let next_origin: Vec<u32> =
                out.rows.iter().map(|r| origin[r.source as usize]).collect();
            items_rows = out
                .rows
                .into_iter()
                .enumerate()
                .map(|(i, r)| Row {
                    source: i as u32,
                    cells: r.cells,
                })
                .collect();
            origin = next_origin;
        }
        for (row, source) in items_rows.iter_mut().zip(&origin) {
            row.source = *source;
        }
        Ok(ChainOutput {
            rows: items_rows,
            dead_letters,
        })
    }

    /// Per-stage counters so far.
    pub fn metrics(&self) -> &[StageMetrics] {
        &self.metrics
    }

    /// Calls `stage` on `items`; on a trap, bisects in fresh instances until the poison item is
    /// alone and reports it as an `invalid-input` error with code `trap`.
    fn isolate(
        &mut self,
        stage: usize,
        items: Items<'_>,
        offset: u32,
        out: &mut BatchOutput,
    ) -> Result<(), TransformError> {
        if items.len() == 0 {
            return Ok(());
        }
        match self.call(stage, &items)? {
            Ok(mut part) => {
                for row in &mut part.rows {
                    row.source += offset;
                }
                for error in &mut part.errors {
                    error.source += offset;
                }
                out.rows.append(&mut part.rows);
                out.errors.append(&mut part.errors);
                Ok(())
            }
            Err(reason) => {
                self.metrics[stage].traps += 1;
                self.live[stage] = None;
                tracing::warn!(stage = %self.chain.stages[stage].spec.name, items = items.len(), %reason, "Transform trapped; isolating the record that caused it.");
                if items.len() == 1 {
                    out.errors.push(RecordError {
                        source: offset,
                        kind: ErrorKind::InvalidInput,
                        code: "trap".into(),
                        message: reason,
                    });
                    return Ok(());
                }
                let mid = items.len() / 2;
                let (left, right) = items.split(mid);
                self.isolate(stage, left, offset, out)?;
                self.isolate(stage, right, offset + mid as u32, out)
            }
        }
    }

    /// One call; the inner `Err` is a trap's description.
    fn call(
        &mut self,
        stage: usize,
        items: &Items<'_>,
    ) -> Result<Result<BatchOutput, String>, TransformError> {
        let loaded = &self.chain.stages[stage];
        if self.live[stage].is_none() {
            self.live[stage] = Some(loaded.instantiate(&self.chain.engine)?.0);
        }
        let Some(live) = self.live[stage].as_mut() else {
            unreachable!()
        };
        live.store.data_mut().start_call();
        live.store
            .set_epoch_deadline(deadline_ticks(loaded.spec.limits.call_deadline));
        // The whole input goes as it is; only a bisected half is copied (and renumbered, since
        // sources are indices into the batch as the call sees it).
        let result = match (&live.bound, *items) {
            (Bound::Parser(p), Items::Records { batch, start, end }) => {
                if start == 0 && end == batch.records.len() {
                    p.kafka2mc_transform_parser()
                        .call_parse(&mut live.store, batch)
                } else {
                    let half = RecordBatch {
                        topic: batch.topic.clone(),
                        partition: batch.partition,
                        records: batch.records[start..end].to_vec(),
                    };
                    p.kafka2mc_transform_parser()
                        .call_parse(&mut live.store, &half)
                }
            }
            (Bound::Row(r), Items::Rows { rows, start, end }) => {
                if start == 0 && end == rows.len() {
                    r.kafka2mc_transform_row_transform()
                        .call_transform(&mut live.store, rows)
                } else {
                    let half: Vec<Row> = rows[start..end]
                        .iter()
                        .enumerate()
                        .map(|(i, row)| Row {
                            source: i as u32,
                            cells: row.cells.clone(),
                        })
                        .collect();
                    r.kafka2mc_transform_row_transform()
                        .call_transform(&mut live.store, &half)
                }
            }
            _ => {
                return Err(contract(
                    &loaded.spec.name,
                    "stage kind does not match its input".into(),
                ));
            }
        };
        Ok(result.map_err(|e| describe_trap(&e, loaded.spec.limits.call_deadline)))
    }
}

fn describe_trap(e: &wasmtime::Error, deadline: Duration) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => format!("deadline of {deadline:?} per call exceeded"),
        Some(trap) => format!("{trap}: {}", e.root_cause()),
        None => format!("{}", e.root_cause()),
    }
}

fn contract(stage: &str, reason: String) -> TransformError {
    TransformError::Contract {
        stage: stage.to_owned(),
        reason,
    }
}
