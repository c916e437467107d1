//! A run of the chain over one partition range: fresh instances of every stage, batches through
//! them, rows and dead letters out.
//!
//! A trap (deadline, memory cap, panic) never blocks a partition: the instance is discarded and
//! the batch is bisected in fresh instances until the poison record is alone; only it becomes a
//! dead letter with code `trap`.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use super::bindings::{BatchOutput, ErrorKind, RecordBatch, RecordError, Row};
use super::chain::Chain;
use super::error::TransformError;
use super::packed;
use super::stage::{Bound, Live, LoadedStage, deadline_ticks};

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

impl StageMetrics {
    /// Adds the same stage's counters from another run (another worker's).
    pub fn add(&mut self, other: &StageMetrics) {
        self.records_in += other.records_in;
        self.rows_out += other.rows_out;
        self.filtered += other.filtered;
        self.errors += other.errors;
        self.traps += other.traps;
        self.time += other.time;
    }
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

impl<'c> ChainRun<'c> {
    /// No instance yet: each stage is instantiated when a batch first reaches it.
    pub(super) fn new(chain: &'c Chain) -> Self {
        ChainRun {
            chain,
            live: chain.stages.iter().map(|_| None).collect(),
            metrics: chain
                .stages
                .iter()
                .map(|s| StageMetrics {
                    stage: s.spec.name.clone(),
                    ..StageMetrics::default()
                })
                .collect(),
        }
    }

    /// Runs one batch through every stage. Callable from async code: the guest calls run where
    /// WASI's synchronous host calls may block (see [`off_async`]).
    pub fn run(&mut self, batch: &RecordBatch) -> Result<ChainOutput, TransformError> {
        off_async(|| self.run_batch(batch))
    }

    fn run_batch(&mut self, batch: &RecordBatch) -> Result<ChainOutput, TransformError> {
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
            let loaded = &self.chain.stages[stage];
            let width = loaded.width();
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
            let rows = match &self.chain.stages[stage].projection {
                Some(p) => p.widen(&mut items_rows, out.rows),
                None => out.rows,
            };
            items_rows = rows
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
        let Some(Live { store, bound }) = self.live[stage].as_mut() else {
            unreachable!()
        };
        store.data_mut().start_call();
        store.set_epoch_deadline(deadline_ticks(loaded.spec.limits.call_deadline));
        // The whole input goes as it is; only a bisected half is copied (and renumbered, since
        // sources are indices into the batch as the call sees it; `window`).
        let result = match (&*bound, *items) {
            (Bound::Parser(p), Items::Records { batch, start, end }) => p
                .kafka2mc_transform_parser()
                .call_parse(&mut *store, &window(batch, start, end)),
            // A packed parser's rows are read back here (WIT 1.3); bytes that break the layout
            // are the stage's fault, not a trap.
            (Bound::PackedParser(p), Items::Records { batch, start, end }) => match p
                .kafka2mc_transform_packed_parser()
                .call_parse_packed(&mut *store, &window(batch, start, end))
            {
                Ok(out) => Ok(unpacked(loaded, out.cells, out.sources, out.errors)?),
                Err(e) => Err(e),
            },
            // A packed row stage (WIT 1.4) gets the cells it reads packed straight from the rows
            // (no row is copied, a bisected half neither) and answers packed.
            (Bound::PackedRow(b), Items::Rows { rows, start, end }) => {
                let mut cells = Vec::new();
                let read = loaded.projection.as_ref().map(|p| p.read());
                packed::pack(&rows[start..end], read, &mut cells);
                match b
                    .kafka2mc_transform_packed_row_transform()
                    .call_transform_packed(&mut *store, (end - start) as u32, &cells)
                {
                    Ok(out) => Ok(unpacked(loaded, out.cells, out.sources, out.errors)?),
                    Err(e) => Err(e),
                }
            }
            (Bound::Row(_) | Bound::ProjectedRow(_), Items::Rows { rows, start, end }) => {
                let called = if let Some(p) = &loaded.projection {
                    bound.transform(store, &p.narrow(&rows[start..end]))
                } else if start == 0 && end == rows.len() {
                    bound.transform(store, rows)
                } else {
                    let half: Vec<Row> = rows[start..end]
                        .iter()
                        .enumerate()
                        .map(|(i, row)| Row {
                            source: i as u32,
                            cells: row.cells.clone(),
                        })
                        .collect();
                    bound.transform(store, &half)
                };
                match called {
                    Some(result) => result,
                    None => {
                        return Err(contract(
                            &loaded.spec.name,
                            "stage kind does not match its input".into(),
                        ));
                    }
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

/// A stage's packed answer read back into rows; bytes that break the layout break the contract.
fn unpacked(
    loaded: &LoadedStage,
    cells: Vec<u8>,
    sources: Vec<u32>,
    errors: Vec<RecordError>,
) -> Result<BatchOutput, TransformError> {
    let out = packed::Packed {
        cells,
        sources,
        errors,
    };
    packed::unpack(out, loaded.width()).map_err(|reason| contract(&loaded.spec.name, reason))
}

/// Records `start..end` of a batch: the batch itself when that is all of it, a copy of the window
/// when a trap is being isolated.
fn window(batch: &RecordBatch, start: usize, end: usize) -> Cow<'_, RecordBatch> {
    if start == 0 && end == batch.records.len() {
        Cow::Borrowed(batch)
    } else {
        Cow::Owned(RecordBatch {
            topic: batch.topic.clone(),
            partition: batch.partition,
            records: batch.records[start..end].to_vec(),
        })
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

/// Runs `f`, which calls into guests, where wasmtime-wasi's synchronous host calls may block.
/// They (a guest's write to stdout, for one) `block_on` the ambient tokio runtime, which panics
/// on a thread that drives async tasks. On a multi-threaded runtime the calls run in
/// `block_in_place`; on a current-thread runtime, on a scoped thread of their own; outside any
/// runtime, here.
fn off_async<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|s| match s.spawn(f).join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
        Err(_) => f(),
    }
}
