//! The config's one error type: every variant names the file or the key, and the fix.

use std::path::PathBuf;

use thiserror::Error;

/// A configuration that cannot run. Every variant names the key and the fix.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config{}: {message}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Invalid {
        path: Option<PathBuf>,
        message: String,
    },
    #[error("config key {key}: {fix}")]
    Value { key: String, fix: String },
    #[error("config key {key}: {reason}")]
    Secret { key: String, reason: String },
}

impl ConfigError {
    /// Names the file in a parse error.
    pub fn in_file(self, file: &std::path::Path) -> Self {
        match self {
            ConfigError::Invalid { message, .. } => ConfigError::Invalid {
                path: Some(file.to_owned()),
                message,
            },
            other => other,
        }
    }
}
