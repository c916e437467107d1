//! The transform stage on worker threads: a batch's chunks go round-robin to `workers` threads,
//! each running its own [`ChainRun`] (its own instances of every stage), and come back in the
//! order they were submitted. The stage step (`pipeline/stage.rs`) fetches and encodes on its
//! task while the workers transform, so one partition uses every core the function has
//! (`docs/architecture.md`, "Using every core").
//!
//! Results are the same as one run's: a chunk is transformed whole by one instance set, trap
//! isolation stays per chunk, and a stage sees its chunks in order within each worker. Stages
//! must not keep state across chunks anyway (`wit/README.md`: an instance may be replaced at any
//! call).

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::bindings::RecordBatch;
use super::chain::Chain;
use super::error::TransformError;
use super::run::{ChainOutput, StageMetrics};

/// A chunk transformed by a worker.
#[derive(Debug)]
pub struct Transformed {
    /// The records, handed back for accounting.
    pub chunk: RecordBatch,
    pub output: ChainOutput,
    /// The worker's time on it.
    pub time: Duration,
}

struct Done {
    seq: u64,
    result: Result<Transformed, TransformError>,
}

struct Worker {
    jobs: mpsc::Sender<(u64, RecordBatch)>,
    handle: JoinHandle<Vec<StageMetrics>>,
}

/// Worker threads transforming one batch's chunks.
pub struct ParallelRun {
    workers: Vec<Worker>,
    done: tokio::sync::mpsc::UnboundedReceiver<Done>,
    /// Results that arrived before an earlier chunk's.
    early: BTreeMap<u64, Result<Transformed, TransformError>>,
    submitted: u64,
    returned: u64,
}

impl std::fmt::Debug for ParallelRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParallelRun")
            .field("workers", &self.workers.len())
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

impl ParallelRun {
    /// Starts `workers` threads (at least one), each with fresh instances of every stage.
    pub(super) fn new(chain: &Chain, workers: usize) -> Result<Self, TransformError> {
        let (tx, done) = tokio::sync::mpsc::unbounded_channel();
        // Guest log lines keep the batch's span (topic, partition, range) on the workers.
        let span = tracing::Span::current();
        let workers = (0..workers.max(1))
            .map(|i| {
                let (jobs, rx) = mpsc::channel::<(u64, RecordBatch)>();
                let chain = chain.clone();
                let tx = tx.clone();
                let span = span.clone();
                let handle = std::thread::Builder::new()
                    .name(format!("k2mc-transform-{i}"))
                    .spawn(move || {
                        let mut run = chain.start_run();
                        for (seq, chunk) in rx {
                            let _entered = span.enter();
                            let t = Instant::now();
                            // A panic in the host's code must reach the batch as an error, not
                            // leave it waiting for a chunk that never comes back.
                            let result =
                                std::panic::catch_unwind(AssertUnwindSafe(|| run.run(&chunk)));
                            let (result, panicked) = match result {
                                Ok(r) => (r, false),
                                Err(_) => (Err(panicked(i)), true),
                            };
                            let result = result.map(|output| Transformed {
                                chunk,
                                output,
                                time: t.elapsed(),
                            });
                            if tx.send(Done { seq, result }).is_err() || panicked {
                                break;
                            }
                        }
                        run.metrics().to_vec()
                    })
                    .map_err(|e| TransformError::Worker {
                        reason: e.to_string(),
                    })?;
                Ok(Worker { jobs, handle })
            })
            .collect::<Result<Vec<_>, TransformError>>()?;
        Ok(ParallelRun {
            workers,
            done,
            early: BTreeMap::new(),
            submitted: 0,
            returned: 0,
        })
    }

    /// How many worker threads transform.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Chunks submitted and not yet returned by [`ParallelRun::next`].
    pub fn in_flight(&self) -> usize {
        (self.submitted - self.returned) as usize
    }

    /// Hands a chunk to the next worker (round-robin); returns at once.
    pub fn submit(&mut self, chunk: RecordBatch) -> Result<(), TransformError> {
        let worker = &self.workers[(self.submitted % self.workers.len() as u64) as usize];
        worker
            .jobs
            .send((self.submitted, chunk))
            .map_err(|_| stopped())?;
        self.submitted += 1;
        Ok(())
    }

    /// The next chunk in submission order, once transformed; `None` when none is in flight.
    pub async fn next(&mut self) -> Option<Result<Transformed, TransformError>> {
        if self.in_flight() == 0 {
            return None;
        }
        loop {
            if let Some(result) = self.early.remove(&self.returned) {
                self.returned += 1;
                return Some(result);
            }
            match self.done.recv().await {
                Some(done) => {
                    self.early.insert(done.seq, done.result);
                }
                None => {
                    self.returned += 1;
                    return Some(Err(stopped()));
                }
            }
        }
    }

    /// Stops the workers and returns their per-stage counters, summed.
    pub fn finish(self) -> Vec<StageMetrics> {
        let mut total: Vec<StageMetrics> = Vec::new();
        for worker in self.workers {
            drop(worker.jobs);
            let Ok(metrics) = worker.handle.join() else {
                continue;
            };
            if total.is_empty() {
                total = metrics;
                continue;
            }
            for (t, m) in total.iter_mut().zip(&metrics) {
                t.add(m);
            }
        }
        total
    }
}

fn panicked(worker: usize) -> TransformError {
    TransformError::Worker {
        reason: format!("transform worker thread {worker} panicked"),
    }
}

/// A worker is gone: it panicked (that error was returned first).
fn stopped() -> TransformError {
    TransformError::Worker {
        reason: "a transform worker thread stopped".into(),
    }
}
