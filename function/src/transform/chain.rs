//! The transform stage of the pipeline: a chain of one parser component and any number of row
//! components. [`TransformHost`] is built once at cold start (one `Engine`, an epoch ticker);
//! [`Chain`] holds the loaded, configured stages; a [`ChainRun`] (in `run.rs`) per partition
//! range holds fresh instances and runs batches through them.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::artifact::{self, Origin};
use super::bindings::Column;
use super::bindings::packed_parser::PackedParserStagePre;
use super::bindings::packed_records_parser::PackedRecordsParserStagePre;
use super::bindings::packed_row::PackedRowStagePre;
use super::bindings::parser::{ParserStage, ParserStagePre};
use super::bindings::projected_row::ProjectedRowStagePre;
use super::bindings::registry_parser::kafka2mc::transform::registry as registry_interface;
use super::bindings::row::{RowStage, RowStagePre};
use super::error::TransformError;
use super::pool::ParallelRun;
use super::run::ChainRun;
use super::sandbox::StageState;
use super::stage::{LoadedStage, Pre, StageSpec};

/// How often the epoch advances; deadlines are whole ticks.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(10);

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
        registry_interface::add_to_linker::<StageState, HasSelf<StageState>>(
            &mut parser_linker,
            |s| s,
        )
        .map_err(|e| link_error("registry", &e))?;
        RowStage::add_to_linker::<StageState, HasSelf<StageState>>(&mut row_linker, |s| s)
            .map_err(|e| link_error("host", &e))?;

        let mut stages = Vec::with_capacity(specs.len());
        let mut columns: Vec<Column> = Vec::new();
        for (i, spec) in specs.into_iter().enumerate() {
            let (component, origin, sha256) =
                artifact::load(&self.engine, &spec.name, &spec.wasm, cache_dir)?;
            check_registry_grant(&self.engine, &component, &spec)?;
            let pre = if i == 0 {
                let pre = parser_linker
                    .instantiate_pre(&component)
                    .map_err(|e| link_error(&spec.name, &e))?;
                if exports(&self.engine, &component, "packed-records-parser") {
                    Pre::PackedRecordsParser(
                        PackedRecordsParserStagePre::new(pre)
                            .map_err(|e| not_world(&spec, "packed-records-parser-stage", &e))?,
                    )
                } else if exports(&self.engine, &component, "packed-parser") {
                    Pre::PackedParser(
                        PackedParserStagePre::new(pre)
                            .map_err(|e| not_world(&spec, "packed-parser-stage", &e))?,
                    )
                } else {
                    Pre::Parser(
                        ParserStagePre::new(pre)
                            .map_err(|e| not_world(&spec, "parser-stage", &e))?,
                    )
                }
            } else {
                let pre = row_linker
                    .instantiate_pre(&component)
                    .map_err(|e| link_error(&spec.name, &e))?;
                if exports(&self.engine, &component, "packed-row-transform") {
                    Pre::PackedRow(
                        PackedRowStagePre::new(pre)
                            .map_err(|e| not_world(&spec, "packed-row-stage", &e))?,
                    )
                } else if exports(&self.engine, &component, "projection") {
                    Pre::ProjectedRow(
                        ProjectedRowStagePre::new(pre)
                            .map_err(|e| not_world(&spec, "projected-row-stage", &e))?,
                    )
                } else {
                    Pre::Row(RowStagePre::new(pre).map_err(|e| not_world(&spec, "row-stage", &e))?)
                }
            };
            let mut stage = LoadedStage::new(spec, pre, columns, origin, sha256);
            // Configure once now, so that bad configuration fails at load time.
            columns = stage.configure(&self.engine)?;
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

/// A component that imports the registry needs the grant and a `[registry]`: said at load time,
/// by name, rather than as a failed lookup on the first record.
fn check_registry_grant(
    engine: &Engine,
    component: &wasmtime::component::Component,
    spec: &StageSpec,
) -> Result<(), TransformError> {
    let imports_registry = component
        .component_type()
        .imports(engine)
        .any(|(name, _)| name.starts_with("kafka2mc:transform/registry@"));
    if !imports_registry {
        return Ok(());
    }
    let fix = if !spec.grants.registry {
        "set registry = true on its [[transforms]] entry"
    } else if spec.registry.is_none() {
        "add a [registry] section with the schema registry's url"
    } else {
        return Ok(());
    };
    Err(TransformError::Configure {
        stage: spec.name.clone(),
        message: format!(
            "{} reads schemas from the schema registry; {fix}",
            spec.wasm.display()
        ),
    })
}

/// Whether a component exports an optional interface of the contract: `projection` (a row stage
/// that declares the columns it reads, WIT 1.2), `packed-parser` (a parser that returns its rows
/// packed, WIT 1.3), `packed-records-parser` (one that also takes its records packed, WIT 1.5)
/// or `packed-row-transform` (a row stage that takes and returns them packed, WIT 1.4).
fn exports(engine: &Engine, component: &wasmtime::component::Component, interface: &str) -> bool {
    let prefix = format!("kafka2mc:transform/{interface}@");
    component
        .component_type()
        .exports(engine)
        .any(|(name, _)| name.starts_with(&prefix))
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

/// A loaded chain: shared by every range an invocation runs. Cloning it is cheap (the engine and
/// the compiled components are shared): each transform worker thread runs its own clone.
#[derive(Clone)]
pub struct Chain {
    pub(super) engine: Engine,
    _ticker: Arc<Ticker>,
    pub(super) stages: Vec<LoadedStage>,
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
            .map(|s| (s.spec.name.clone(), s.version(), s.origin()))
            .collect()
    }

    /// Each stage's name, declared version and component SHA-256: the transform versions a
    /// commit-log entry records.
    pub fn modules(&self) -> Vec<(String, String, String)> {
        self.stages
            .iter()
            .map(|s| (s.spec.name.clone(), s.version(), s.sha256().to_owned()))
            .collect()
    }

    /// Names each stage by what its component declares at configure time (`StageInfo.name`)
    /// rather than its configured name; a name declared twice gets `#2`, `#3`… For `k2mc
    /// transforms run`, whose stages have no configured names, only files.
    pub fn name_stages_as_declared(&mut self) {
        let mut seen: Vec<String> = Vec::new();
        for stage in &mut self.stages {
            let Some(declared) = stage.info.as_ref().map(|i| i.name.clone()) else {
                continue;
            };
            let n = seen.iter().filter(|s| **s == declared).count();
            seen.push(declared.clone());
            stage.spec.name = if n == 0 {
                declared
            } else {
                format!("{declared}#{}", n + 1)
            };
        }
    }

    /// Runs the parser through `parse` even when it also exports `packed-parser` (WIT 1.3). Both
    /// must give the same rows: this is how a test of a packed parser compares the two. Returns
    /// whether the parser was a packed one.
    pub fn without_packed_rows(&mut self) -> bool {
        self.stages
            .first_mut()
            .is_some_and(LoadedStage::link_unpacked)
    }

    /// Gives the parser its records as a `list<kafka-record>` (`parse-packed`, WIT 1.3) even when
    /// it also exports `packed-records-parser` (WIT 1.5). Both must give the same rows: this is
    /// how a test compares the two. Returns whether the parser took its records packed.
    pub fn without_packed_records(&mut self) -> bool {
        self.stages
            .first_mut()
            .is_some_and(LoadedStage::link_listed_records)
    }

    /// Runs every row stage through `transform` even when it also exports `packed-row-transform`
    /// (WIT 1.4), as [`Chain::without_packed_rows`] does for the parser. Returns how many were
    /// packed row stages.
    pub fn without_packed_row_stages(&mut self) -> usize {
        self.stages
            .iter_mut()
            .skip(1)
            .map(LoadedStage::link_unpacked)
            .filter(|&unpacked| unpacked)
            .count()
    }

    /// Fresh instances for one partition range.
    pub fn start_run(&self) -> ChainRun<'_> {
        ChainRun::new(self)
    }

    /// Fresh instances on `workers` threads, for a batch's chunks in parallel.
    pub fn start_parallel(&self, workers: usize) -> Result<ParallelRun, TransformError> {
        ParallelRun::new(self, workers)
    }
}
