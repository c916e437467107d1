//! Errors of the MaxCompute client, classified in one place: [`MaxComputeError::is_retryable`]
//! decides what the load stage may try again, mirroring the SDKs' retry rules (`docs/maxcompute-protocol.md` §2.7).

use std::time::Duration;

use thiserror::Error;

use k2mc_formats::tunnel::{SchemaError, WireError};

/// A failed call to MaxCompute's REST API or Tunnel.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MaxComputeError {
    #[error(
        "{operation}: MaxCompute answered {status} {code}: {message} (request id {request_id})"
    )]
    Service {
        operation: String,
        status: u16,
        code: String,
        message: String,
        request_id: String,
    },
    #[error("{operation}: SQL failed with {code}: {message} (instance {instance})")]
    Sql {
        operation: String,
        instance: String,
        code: String,
        message: String,
    },
    #[error("{operation}: could not reach MaxCompute: {source}")]
    Transport {
        operation: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{operation}: gave up after {attempts} attempts over {elapsed:?}; last error: {last}")]
    RetriesExhausted {
        operation: String,
        attempts: u32,
        elapsed: Duration,
        last: String,
    },
    /// A block body's source failed while the block was sent; its owner holds the reason.
    #[error("{operation}: the block body could not be read")]
    BodyUnreadable { operation: String },
    #[error("{operation}: unexpected response: {reason}")]
    Protocol { operation: String, reason: String },
    #[error("endpoint '{endpoint}' is not usable: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("upload session {upload_id} is {status}; it can no longer take blocks or commit")]
    SessionNotWritable { upload_id: String, status: String },
    /// The server is still committing the session (`CLOSING`/`COMMITTING`) after the wait.
    #[error(
        "upload session {upload_id} is still committing; the next run settles it (never with a second session)"
    )]
    CommitInProgress { upload_id: String },
    #[error("block id {block_id} is outside 0..20000")]
    BlockId { block_id: u32 },
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Wire(#[from] WireError),
}

impl MaxComputeError {
    /// True when the same call may succeed if made again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            MaxComputeError::Service { status, .. } => {
                matches!(status, 308 | 408 | 429) || *status >= 500
            }
            MaxComputeError::Transport { .. }
            | MaxComputeError::RetriesExhausted { .. }
            | MaxComputeError::CommitInProgress { .. } => true,
            _ => false,
        }
    }

    /// The MaxCompute error code (`NoSuchTable`, `ODPS-0130131`, …) when the service sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            MaxComputeError::Service { code, .. } | MaxComputeError::Sql { code, .. } => Some(code),
            _ => None,
        }
    }
}
