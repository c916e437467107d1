//! A block body as the Tunnel upload sends it: a source that produces the body from its first
//! byte each time a PUT is attempted (`docs/architecture.md`, "Joining staged pieces into large
//! blocks"). A block encoded in memory is its parts ([`Parts`]); a block joined from staged pieces
//! is read from the bucket while it is sent (the load stage's source), so a 64 MiB block never
//! sits in memory whole.

use std::fmt::Debug;

use bytes::Bytes;
use futures_util::stream::BoxStream;

/// The size of the slices a body is handed to the HTTP client in.
pub(crate) const SEND_SLICE: usize = 64 * 1024;

/// A body stream stopped: the source could not produce the rest of the body. What went wrong is
/// kept by the source (its owner reads it after the failed upload); the HTTP layer only learns
/// that the failure was the body's, so it does not retry the PUT.
#[derive(Debug, thiserror::Error)]
#[error("the block body could not be read")]
pub struct BodyUnreadable;

/// The body as a stream of parts.
pub type BodyStream = BoxStream<'static, Result<Bytes, BodyUnreadable>>;

/// Produces a block body, again from the start for every attempt of its PUT.
pub trait BodySource: Send + Sync + Debug {
    /// The body from its first byte.
    fn open(&self) -> BodyStream;
    /// True once a stream from [`open`](Self::open) ended with [`BodyUnreadable`].
    fn failed(&self) -> bool;
}

/// A body already in memory, in parts sent one after another.
#[derive(Debug, Clone)]
pub struct Parts(pub Vec<Bytes>);

impl BodySource for Parts {
    fn open(&self) -> BodyStream {
        Box::pin(futures_util::stream::iter(slices(self.0.clone()).map(Ok)))
    }

    fn failed(&self) -> bool {
        false
    }
}

/// `parts` in slices of at most [`SEND_SLICE`] bytes (sharing their buffers).
pub(crate) fn slices(parts: impl IntoIterator<Item = Bytes>) -> impl Iterator<Item = Bytes> {
    parts.into_iter().flat_map(|part| {
        (0..part.len())
            .step_by(SEND_SLICE)
            .map(move |at| part.slice(at..(at + SEND_SLICE).min(part.len())))
    })
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt as _;

    use super::*;

    #[tokio::test]
    async fn parts_are_sent_whole_in_slices_of_at_most_64_kib() {
        let big = Bytes::from(vec![7u8; SEND_SLICE * 2 + 5]);
        let parts = Parts(vec![Bytes::from_static(b"head"), big.clone(), Bytes::new()]);
        for _ in 0..2 {
            let sent: Vec<Bytes> = parts.open().map(|p| p.unwrap()).collect().await;
            assert!(sent.iter().all(|s| !s.is_empty() && s.len() <= SEND_SLICE));
            assert_eq!(sent.concat(), [&b"head"[..], &big[..]].concat());
        }
        assert!(!parts.failed());
    }
}
