//! One stage of a transform chain (`chain.rs` loads them in order): what the user configured
//! ([`StageSpec`]), the component linked against its world ([`Pre`]: parser, packed parser (WIT
//! 1.3), packed-records parser (WIT 1.5), row, projected row (WIT 1.2) or packed row (WIT 1.4)),
//! and a live instance of it
//! ([`Live`], [`Bound`]) that `run.rs` calls. A stage is configured once at load time, so bad
//! configuration or a broken projection fails before any record is read.

use std::path::PathBuf;
use std::time::Duration;

use wasmtime::{Engine, Store};

use super::artifact::Origin;
use super::bindings::packed_parser::{PackedParserStage, PackedParserStagePre};
use super::bindings::packed_records_parser::{
    PackedRecordsParserStage, PackedRecordsParserStagePre,
};
use super::bindings::packed_row::{PackedRowStage, PackedRowStagePre};
use super::bindings::parser::{ParserStage, ParserStagePre};
use super::bindings::projected_row::{ProjectedRowStage, ProjectedRowStagePre};
use super::bindings::row::{RowStage, RowStagePre};
use super::bindings::{BatchOutput, Column, Row, StageInfo};
use super::chain::EPOCH_TICK;
use super::error::TransformError;
use super::projection::Projection;
use super::registry::Registry;
use super::sandbox::{Grants, Limits, StageState};

/// One stage of a chain as configured by the user.
#[derive(Debug, Clone)]
pub struct StageSpec {
    pub name: String,
    pub wasm: PathBuf,
    pub config: Vec<(String, String)>,
    pub grants: Grants,
    pub limits: Limits,
    /// The registry a stage granted `registry` reads schemas from.
    pub registry: Option<Registry>,
}

/// A component linked against its world, ready to instantiate.
#[derive(Clone)]
pub(super) enum Pre {
    Parser(ParserStagePre<StageState>),
    PackedParser(PackedParserStagePre<StageState>),
    PackedRecordsParser(PackedRecordsParserStagePre<StageState>),
    Row(RowStagePre<StageState>),
    ProjectedRow(ProjectedRowStagePre<StageState>),
    PackedRow(PackedRowStagePre<StageState>),
}

/// An instance's exports, by the world it was built for.
pub(super) enum Bound {
    Parser(ParserStage),
    PackedParser(PackedParserStage),
    PackedRecordsParser(PackedRecordsParserStage),
    Row(RowStage),
    ProjectedRow(ProjectedRowStage),
    PackedRow(PackedRowStage),
}

impl Bound {
    /// A row stage's `row-transform.transform`, whichever row world it was built for; `None`
    /// for a parser.
    pub(super) fn transform(
        &self,
        store: &mut Store<StageState>,
        rows: &[Row],
    ) -> Option<wasmtime::Result<BatchOutput>> {
        match self {
            Bound::Parser(_) | Bound::PackedParser(_) | Bound::PackedRecordsParser(_) => None,
            Bound::Row(b) => Some(
                b.kafka2mc_transform_row_transform()
                    .call_transform(store, rows),
            ),
            Bound::ProjectedRow(b) => Some(
                b.kafka2mc_transform_row_transform()
                    .call_transform(store, rows),
            ),
            Bound::PackedRow(b) => Some(
                b.kafka2mc_transform_row_transform()
                    .call_transform(store, rows),
            ),
        }
    }

    fn configure_row(
        &self,
        store: &mut Store<StageState>,
        config: &[(String, String)],
        input: &[Column],
    ) -> wasmtime::Result<Result<StageInfo, String>> {
        match self {
            Bound::Parser(_) | Bound::PackedParser(_) | Bound::PackedRecordsParser(_) => {
                Err(wasmtime::Error::msg("a parser stage bound as a row stage"))
            }
            Bound::Row(b) => b
                .kafka2mc_transform_row_transform()
                .call_configure(store, config, input),
            Bound::ProjectedRow(b) => b
                .kafka2mc_transform_row_transform()
                .call_configure(store, config, input),
            Bound::PackedRow(b) => b
                .kafka2mc_transform_row_transform()
                .call_configure(store, config, input),
        }
    }
}

/// A stage loaded and linked, configured once at load time; each run instantiates it afresh.
#[derive(Clone)]
pub(super) struct LoadedStage {
    pub(super) spec: StageSpec,
    pre: Pre,
    input: Vec<Column>,
    pub(super) info: Option<StageInfo>,
    /// The columns a row stage reads, when it declares them (WIT 1.2).
    pub(super) projection: Option<Projection>,
    origin: Origin,
    sha256: String,
}

/// A live instance of a stage.
pub(super) struct Live {
    pub(super) store: Store<StageState>,
    pub(super) bound: Bound,
}

impl LoadedStage {
    pub(super) fn new(
        spec: StageSpec,
        pre: Pre,
        input: Vec<Column>,
        origin: Origin,
        sha256: String,
    ) -> Self {
        LoadedStage {
            spec,
            pre,
            input,
            info: None,
            projection: None,
            origin,
            sha256,
        }
    }

    /// Instantiates and configures the stage once, asks a projected row stage which columns it
    /// reads, and keeps what it declared; returns its output columns (the next stage's input).
    pub(super) fn configure(&mut self, engine: &Engine) -> Result<Vec<Column>, TransformError> {
        let (mut live, info) = self.instantiate(engine)?;
        self.projection = self.projection(&mut live, &info)?;
        let output = info.output.clone();
        self.info = Some(info);
        Ok(output)
    }

    /// Links a packed parser (WIT 1.3 or 1.5) as a plain one, so that runs call `parse`, and a
    /// packed row stage (WIT 1.4) as a projected one, so that runs call `transform`; other stages
    /// stay as they are. Whether it could be is returned.
    pub(super) fn link_unpacked(&mut self) -> bool {
        let unpacked = match &self.pre {
            Pre::PackedParser(pre) => {
                ParserStagePre::new(pre.instance_pre().clone()).map(Pre::Parser)
            }
            Pre::PackedRecordsParser(pre) => {
                ParserStagePre::new(pre.instance_pre().clone()).map(Pre::Parser)
            }
            Pre::PackedRow(pre) => {
                ProjectedRowStagePre::new(pre.instance_pre().clone()).map(Pre::ProjectedRow)
            }
            _ => return false,
        };
        match unpacked {
            Ok(plain) => {
                self.pre = plain;
                true
            }
            Err(_) => false,
        }
    }

    /// Links a parser that takes its records packed (WIT 1.5) as a packed parser of 1.3, so that
    /// runs call `parse-packed` with a `list<kafka-record>`. Whether it could be is returned.
    pub(super) fn link_listed_records(&mut self) -> bool {
        let Pre::PackedRecordsParser(pre) = &self.pre else {
            return false;
        };
        match PackedParserStagePre::new(pre.instance_pre().clone()) {
            Ok(listed) => {
                self.pre = Pre::PackedParser(listed);
                true
            }
            Err(_) => false,
        }
    }

    /// The cells of each row the stage answers with: a stage that declares the columns it reads
    /// returns only the cells it writes (WIT 1.2), any other one every output column.
    pub(super) fn width(&self) -> usize {
        match &self.projection {
            Some(p) => p.width(),
            None => self.info.as_ref().map_or(0, |i| i.output.len()),
        }
    }

    /// Whether the component was precompiled.
    pub(super) fn origin(&self) -> Origin {
        self.origin
    }

    /// The component's SHA-256.
    pub(super) fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The version the component declares (empty before it was configured).
    pub(super) fn version(&self) -> String {
        self.info
            .as_ref()
            .map(|i| i.version.clone())
            .unwrap_or_default()
    }

    pub(super) fn instantiate(&self, engine: &Engine) -> Result<(Live, StageInfo), TransformError> {
        let spec = &self.spec;
        let mut store = Store::new(
            engine,
            StageState::new(&spec.name, spec.grants, spec.limits, spec.registry.clone()),
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
            Pre::PackedParser(pre) => {
                let b = pre.instantiate(&mut store).map_err(trap)?;
                let info = b
                    .kafka2mc_transform_parser()
                    .call_configure(&mut store, &spec.config)
                    .map_err(trap)?;
                (Bound::PackedParser(b), info)
            }
            Pre::PackedRecordsParser(pre) => {
                let b = pre.instantiate(&mut store).map_err(trap)?;
                let info = b
                    .kafka2mc_transform_parser()
                    .call_configure(&mut store, &spec.config)
                    .map_err(trap)?;
                (Bound::PackedRecordsParser(b), info)
            }
            Pre::Row(pre) => {
                let b = Bound::Row(pre.instantiate(&mut store).map_err(trap)?);
                let info = b
                    .configure_row(&mut store, &spec.config, &self.input)
                    .map_err(trap)?;
                (b, info)
            }
            Pre::ProjectedRow(pre) => {
                let b = Bound::ProjectedRow(pre.instantiate(&mut store).map_err(trap)?);
                let info = b
                    .configure_row(&mut store, &spec.config, &self.input)
                    .map_err(trap)?;
                (b, info)
            }
            Pre::PackedRow(pre) => {
                let b = Bound::PackedRow(pre.instantiate(&mut store).map_err(trap)?);
                let info = b
                    .configure_row(&mut store, &spec.config, &self.input)
                    .map_err(trap)?;
                (b, info)
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

impl LoadedStage {
    /// Asks a stage that declares the columns it reads which they are, and checks the answer
    /// against its columns (once, at load time).
    fn projection(
        &self,
        live: &mut Live,
        info: &StageInfo,
    ) -> Result<Option<Projection>, TransformError> {
        let read = match &live.bound {
            Bound::ProjectedRow(b) => b
                .kafka2mc_transform_projection()
                .call_columns_read(&mut live.store),
            Bound::PackedRow(b) => b
                .kafka2mc_transform_projection()
                .call_columns_read(&mut live.store),
            _ => return Ok(None),
        };
        let read = read.map_err(|e| TransformError::Trap {
            stage: self.spec.name.clone(),
            reason: format!("{e:#}"),
        })?;
        Projection::new(&read, &self.input, &info.output)
            .map(Some)
            .map_err(|reason| TransformError::Columns {
                stage: self.spec.name.clone(),
                reason,
            })
    }
}

/// A call deadline in epoch ticks (at least one).
pub(super) fn deadline_ticks(deadline: Duration) -> u64 {
    (deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}
