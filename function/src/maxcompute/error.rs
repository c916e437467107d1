//! Errors of the MaxCompute client, classified in one place: [`MaxComputeError::is_retryable`]
//! decides what the load stage may try again, mirroring the SDKs' retry rules (brief §2.7).

use std::time::Duration;

use thiserror::Error;

/// A type text that is not MaxCompute DDL.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaError {
    #[error("bad column type '{text}' at byte {position}: {reason}")]
    BadType {
        text: String,
        position: usize,
        reason: String,
    },
    #[error("bad partition spec '{text}': {reason}")]
    BadPartitionSpec { text: String, reason: String },
}

/// A record stream that cannot be written or read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("row has {found} cells but the table has {expected} columns")]
    RowWidth { expected: usize, found: usize },
    #[error("column {}: a {found} value cannot be written to a {expected} column", fmt_column(.column))]
    TypeMismatch {
        column: Option<usize>,
        expected: String,
        found: &'static str,
    },
    #[error("column {}: value '{value}' does not fit {ty}", fmt_column(.column))]
    OutOfRange {
        column: Option<usize>,
        ty: String,
        value: String,
    },
    #[error("record stream truncated at byte {offset}")]
    Truncated { offset: usize },
    #[error("malformed record stream at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: String },
    #[error("{what} checksum mismatch at byte {offset}")]
    Checksum { what: &'static str, offset: usize },
    #[error("record stream i/o failed: {0}")]
    Io(#[from] std::io::Error),
}

fn fmt_column(column: &Option<usize>) -> String {
    column.map_or_else(|| "?".to_owned(), |c| c.to_string())
}

impl WireError {
    /// Attaches the column index to a cell-level error.
    pub(crate) fn in_column(self, index: usize) -> Self {
        match self {
            WireError::TypeMismatch {
                column: None,
                expected,
                found,
            } => WireError::TypeMismatch {
                column: Some(index),
                expected,
                found,
            },
            WireError::OutOfRange {
                column: None,
                ty,
                value,
            } => WireError::OutOfRange {
                column: Some(index),
                ty,
                value,
            },
            other => other,
        }
    }
}

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
    #[error("{operation}: unexpected response: {reason}")]
    Protocol { operation: String, reason: String },
    #[error("endpoint '{endpoint}' is not usable: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("upload session {upload_id} is {status}; it can no longer take blocks or commit")]
    SessionNotWritable { upload_id: String, status: String },
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
            MaxComputeError::Transport { .. } | MaxComputeError::RetriesExhausted { .. } => true,
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
