//! Guest stdout and stderr: captured, bounded and forwarded to the host's logs under the stage's
//! name (tracing target `guest`), never able to block or fail the guest or the host. A debug
//! `print()` in a transform is a log line, not a crash (`docs/architecture.md`, "Transforms").
//!
//! Bounds: a line is cut at [`MAX_LINE`] bytes, and each stream of an instance forwards at most
//! [`MAX_FORWARDED`] bytes; the rest is counted and reported once when the instance ends. Writes
//! always succeed at once: a guest whose output is dropped keeps running (Rust's `println!`
//! panics on a failed write, so refusing a write would turn a log line into a dead letter).

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The longest line forwarded; the rest of a longer line is dropped.
pub(crate) const MAX_LINE: usize = 4 * 1024;
/// The most bytes one stream of one instance forwards.
pub(crate) const MAX_FORWARDED: usize = 64 * 1024;
/// What a guest may write in one call (the permit WASI streams hand out).
const PERMIT: usize = 64 * 1024;

/// One guest stream (`stdout` or `stderr`) of one stage instance.
#[derive(Debug, Clone)]
pub(crate) struct GuestOutput {
    captured: Arc<Mutex<Captured>>,
}

#[derive(Debug)]
struct Captured {
    stage: String,
    stream: &'static str,
    line: Vec<u8>,
    forwarded: usize,
    dropped: usize,
}

impl GuestOutput {
    /// The `stream` (`stdout` or `stderr`) of an instance of `stage`.
    pub(crate) fn new(stage: &str, stream: &'static str) -> Self {
        GuestOutput {
            captured: Arc::new(Mutex::new(Captured {
                stage: stage.to_owned(),
                stream,
                line: Vec::new(),
                forwarded: 0,
                dropped: 0,
            })),
        }
    }

    fn take(&self, bytes: &[u8]) {
        self.captured
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(bytes);
    }
}

impl Captured {
    fn take(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (part, rest, end) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &bytes[bytes.len()..], false),
            };
            let room = MAX_LINE.saturating_sub(self.line.len());
            self.line.extend_from_slice(&part[..part.len().min(room)]);
            self.dropped += part.len().saturating_sub(room);
            if end {
                self.emit();
            }
            bytes = rest;
        }
    }

    fn emit(&mut self) {
        let line = std::mem::take(&mut self.line);
        if self.forwarded + line.len() > MAX_FORWARDED {
            self.dropped += line.len();
            return;
        }
        self.forwarded += line.len();
        let text = String::from_utf8_lossy(&line);
        tracing::info!(target: "guest", stage = %self.stage, stream = self.stream, "{}", text.trim_end_matches('\r'));
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
        if self.dropped > 0 {
            tracing::warn!(target: "guest", stage = %self.stage, stream = self.stream, dropped_bytes = self.dropped, limit = MAX_FORWARDED, "the stage wrote more than is forwarded; the rest was dropped");
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.take(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(PERMIT)
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.take(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured(out: &GuestOutput) -> (usize, usize, usize) {
        let c = out.captured.lock().unwrap_or_else(PoisonError::into_inner);
        (c.line.len(), c.forwarded, c.dropped)
    }

    #[test]
    fn lines_are_forwarded_and_output_is_bounded() {
        let out = GuestOutput::new("mask", "stdout");
        out.take(b"one\ntw");
        assert_eq!(captured(&out), (2, 3, 0));
        out.take(b"o\n");
        assert_eq!(captured(&out), (0, 6, 0));
        // A line over MAX_LINE keeps its first MAX_LINE bytes.
        out.take(&vec![b'x'; MAX_LINE + 10]);
        out.take(b"\n");
        assert_eq!(captured(&out), (0, 6 + MAX_LINE, 10));
        // Past MAX_FORWARDED, whole lines are dropped and counted.
        for _ in 0..(MAX_FORWARDED / MAX_LINE + 2) {
            out.take(&vec![b'y'; MAX_LINE]);
            out.take(b"\n");
        }
        let (_, forwarded, dropped) = captured(&out);
        assert!(forwarded <= MAX_FORWARDED, "{forwarded}");
        assert!(forwarded > MAX_FORWARDED - MAX_LINE, "{forwarded}");
        assert!(dropped >= 10 + MAX_LINE, "{dropped}");
    }

    #[test]
    fn writes_never_fail_or_wait() {
        let mut out = GuestOutput::new("parse", "stderr");
        for _ in 0..1000 {
            assert_eq!(out.check_write().ok(), Some(PERMIT));
            assert!(out.write(Bytes::from_static(&[b'z'; 1024])).is_ok());
            assert!(out.flush().is_ok());
        }
    }
}
