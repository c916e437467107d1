//! Errors of the transform host, classified in one place.

use std::path::PathBuf;

use thiserror::Error;

/// A transform chain that cannot be loaded, configured or run.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TransformError {
    #[error("transform '{stage}': cannot read {path}: {source}")]
    Read {
        stage: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("transform '{stage}': {path} is not a usable component for this host: {reason}")]
    Compile {
        stage: String,
        path: PathBuf,
        reason: String,
    },
    #[error("transform '{stage}': {reason}")]
    Link { stage: String, reason: String },
    #[error("transform '{stage}' rejected its configuration: {message}")]
    Configure { stage: String, message: String },
    #[error("transform '{stage}' declares columns that do not fit: {reason}")]
    Columns { stage: String, reason: String },
    #[error("transform '{stage}' failed the batch: {code}: {message}")]
    Fatal {
        stage: String,
        code: String,
        message: String,
    },
    #[error("transform '{stage}' broke the contract: {reason}")]
    Contract { stage: String, reason: String },
    #[error("transform '{stage}' trapped while configuring: {reason}")]
    Trap { stage: String, reason: String },
    /// A transform worker thread could not start or stopped (the host's fault, not a stage's).
    #[error("transform workers: {reason}")]
    Worker { reason: String },
}
