//! Errors of the Tunnel formats: a column type that is not MaxCompute DDL, a record stream that
//! cannot be written or read. The MaxCompute client wraps both in its own error.

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
