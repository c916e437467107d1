//! A run of the chain over one partition range: fresh instances of every stage, batches through
//! them, rows and dead letters out.
//!
//! A trap (deadline, memory cap, panic) never blocks a partition: the instance is discarded and
//! the batch is bisected in fresh instances until the poison record is alone; only it becomes a
//! dead letter with code `trap`. One call of one stage, its input lowered and its answer lifted
//! as the stage's world says, is in `run/call.rs`.

use std::time::{Duration, Instant};

use super::bindings::{BatchOutput, ErrorKind, RecordBatch, RecordError, Row};
use super::chain::Chain;
use super::error::TransformError;
use super::stage::Live;

mod call;

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
    /// The records of the last call to a packed-records parser (WIT 1.5), kept for its capacity:
    /// a batch of a megabyte or more allocated afresh each call is fresh pages each call.
    packed_records: Vec<u8>,
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
            packed_records: Vec::new(),
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
