//! The body of a block the load sends (`docs/architecture.md`, "Joining staged pieces into large
//! blocks"), read from the staging bucket while it is sent: a block of one staged piece is that
//! piece as staged; a joined block is `join.rs`'s head, each piece's body and the tail, the tail
//! computed from the load record's join data alone. The next piece is read while one is sent, so
//! a load holds about two staged pieces in memory whatever `[load] block_bytes` is. A PUT that is
//! retried opens the body again and reads the pieces again; a piece that cannot be read stops the
//! PUT, and the load reads why from [`StagedBody::failure`].

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::{self, BoxStream};

use super::super::commit::StagedBlock;
use super::super::join::{self, JoinError, Piece};
use crate::maxcompute::{BodySource, BodyStream, BodyUnreadable, Compression, slices};
use crate::staging::{Segments, Staging, StagingError};

/// Where a body's pieces are read from: the staging bucket, or memory in the tests.
pub(crate) trait PieceStore:
    Clone + Unpin + Send + Sync + std::fmt::Debug + 'static
{
    /// A staged piece's bytes, in the chunks they were read in; `None` when it is gone.
    fn read(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Segments>, StagingError>> + Send;
    /// The error for a read that ended without an answer (its task panicked or was aborted).
    fn aborted(&self, message: String) -> StagingError;
}

impl PieceStore for Staging {
    async fn read(&self, key: &str) -> Result<Option<Segments>, StagingError> {
        self.get_segments(key).await
    }

    fn aborted(&self, message: String) -> StagingError {
        self.task_failed(message)
    }
}

/// Why a body stopped part way.
#[derive(Debug)]
pub(crate) enum BodyFailure {
    /// A piece is gone from the bucket (the caller tells a lost race from corruption).
    Missing { key: String },
    /// The bucket could not be read.
    Staging(StagingError),
    /// A piece's bytes do not match its join record.
    Join(JoinError),
}

/// A block's body read from the bucket as it is sent.
#[derive(Debug)]
pub(crate) struct StagedBody<S> {
    store: S,
    compression: Compression,
    pieces: Arc<[StagedBlock]>,
    /// The joined block's end; `None` for a block of one piece, sent as staged.
    tail: Option<Bytes>,
    failure: Arc<Mutex<Option<BodyFailure>>>,
}

impl<S: PieceStore> StagedBody<S> {
    /// The body of a block of `pieces` (at least one, all in one compression: the plan joins
    /// no others).
    pub(crate) fn new(store: S, pieces: Vec<StagedBlock>) -> Result<Self, JoinError> {
        let compression = pieces.first().map(|p| p.compression).unwrap_or_default();
        let tail = match pieces.as_slice() {
            [_] => None,
            _ => {
                let mut joins = Vec::with_capacity(pieces.len());
                for p in &pieces {
                    let join = p.join.ok_or_else(|| JoinError {
                        key: p.key.clone(),
                        reason: "a block without join data was planned into a joined block".into(),
                    })?;
                    joins.push((p.rows, join));
                }
                Some(join::tail(joins, compression)?)
            }
        };
        Ok(StagedBody {
            store,
            compression,
            pieces: pieces.into(),
            tail,
            failure: Arc::default(),
        })
    }

    /// The compression the block is sent in.
    pub(crate) fn compression(&self) -> Compression {
        self.compression
    }

    /// Why the last stream stopped, if one did (taken: a second call returns `None`).
    pub(crate) fn failure(&self) -> Option<BodyFailure> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl<S: PieceStore> BodySource for StagedBody<S> {
    fn open(&self) -> BodyStream {
        // Reads run as tasks, so the next piece arrives while this one is sent; `buffered(2)`
        // starts a read when the one before it is taken, keeping at most two in flight.
        let store = self.store.clone();
        let reads: BoxStream<'static, Result<Option<Segments>, StagingError>> = Box::pin(
            stream::iter(self.pieces.to_vec())
                .map(move |p| {
                    let store = store.clone();
                    Read::spawn(store.clone(), async move { store.read(&p.key).await })
                })
                .buffered(2),
        );
        let walk = Walk {
            reads,
            pieces: self.pieces.clone(),
            compression: self.compression,
            tail: self.tail.clone(),
            joined: self.tail.is_some(),
            head: None,
            at: 0,
            done: false,
        };
        let failure = self.failure.clone();
        Box::pin(
            stream::unfold(walk, |mut w| async move {
                let step = w.step().await?;
                Some((step, w))
            })
            .flat_map(move |step| {
                let parts: Vec<Result<Bytes, BodyUnreadable>> = match step {
                    Ok(parts) => slices(parts).map(Ok).collect(),
                    Err(f) => {
                        *failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(f);
                        vec![Err(BodyUnreadable)]
                    }
                };
                stream::iter(parts)
            }),
        )
    }

    fn failed(&self) -> bool {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

/// One pass over a body: the parts of the next piece per step, then the tail.
struct Walk {
    reads: BoxStream<'static, Result<Option<Segments>, StagingError>>,
    pieces: Arc<[StagedBlock]>,
    compression: Compression,
    tail: Option<Bytes>,
    /// Whether the pieces are joined (more than one), not sent as staged.
    joined: bool,
    /// The joined block's head, taken from the first piece.
    head: Option<Bytes>,
    at: usize,
    done: bool,
}

impl Walk {
    async fn step(&mut self) -> Option<Result<Vec<Bytes>, BodyFailure>> {
        if self.done {
            return None;
        }
        let Some(read) = self.reads.next().await else {
            self.done = true;
            return self.tail.take().map(|t| Ok(vec![t]));
        };
        let result = self.piece(read);
        self.at += 1;
        self.done = result.is_err();
        Some(result)
    }

    fn piece(
        &mut self,
        read: Result<Option<Segments>, StagingError>,
    ) -> Result<Vec<Bytes>, BodyFailure> {
        let staged = &self.pieces[self.at];
        let data = read
            .map_err(BodyFailure::Staging)?
            .ok_or_else(|| BodyFailure::Missing {
                key: staged.key.clone(),
            })?;
        // A block of one piece is sent as staged; `new` checked that every piece of a joined
        // block has join data.
        let (true, Some(join)) = (self.joined, staged.join) else {
            return Ok(data.into_parts());
        };
        let piece = Piece {
            key: &staged.key,
            data,
            join,
        };
        let mut parts = Vec::new();
        let head = match &self.head {
            Some(h) => h.clone(),
            None => {
                let h = join::head(&piece, self.compression).map_err(BodyFailure::Join)?;
                parts.push(h.clone());
                self.head = Some(h.clone());
                h
            }
        };
        parts.extend(join::body(&piece, self.compression, &head).map_err(BodyFailure::Join)?);
        Ok(parts)
    }
}

/// A piece read running as a task, aborted when the body is dropped before it is taken (a PUT
/// that failed part way).
struct Read<S: PieceStore> {
    store: S,
    task: tokio::task::JoinHandle<Result<Option<Segments>, StagingError>>,
}

impl<S: PieceStore> Read<S> {
    fn spawn(
        store: S,
        read: impl Future<Output = Result<Option<Segments>, StagingError>> + Send + 'static,
    ) -> Self {
        Read {
            store,
            task: tokio::spawn(read),
        }
    }
}

impl<S: PieceStore> Future for Read<S> {
    type Output = Result<Option<Segments>, StagingError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match Pin::new(&mut this.task).poll(cx) {
            Poll::Ready(Ok(read)) => Poll::Ready(read),
            Poll::Ready(Err(e)) => Poll::Ready(Err(this.store.aborted(e.to_string()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: PieceStore> Drop for Read<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests;
