//! Version chains in the staging bucket: an object changed only by create-only writes
//! (`docs/architecture.md`, "The commit log"). `<base>.json` is version 0 and each change creates
//! the next version `<base>.v<n:04>.json`; readers take the last. Of two writers changing the
//! same version exactly one creates the next: the compare-and-swap `If-Match` would give, built
//! only from the create-only write both S3 (`If-None-Match: *`) and OSS
//! (`x-oss-forbid-overwrite`) document. Intents and load records are chains.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{parse, to_json};
use crate::error::PipelineError;
use crate::staging::{Conditional, Staging};

/// One chain, named by its base key (without `.json`).
#[derive(Debug, Clone)]
pub(crate) struct Chain<'a> {
    staging: &'a Staging,
    base: String,
}

impl<'a> Chain<'a> {
    pub(crate) fn new(staging: &'a Staging, base: String) -> Self {
        Chain { staging, base }
    }

    /// The key of `version` (0: the object as first written).
    pub(crate) fn key(&self, version: u32) -> String {
        if version == 0 {
            format!("{}.json", self.base)
        } else {
            format!("{}.v{version:04}.json", self.base)
        }
    }

    /// The last version and its number; `None` when the chain does not exist.
    pub(crate) async fn last<T: DeserializeOwned>(
        &self,
    ) -> Result<Option<(T, u32)>, PipelineError> {
        let mut found = None;
        let mut version = 0;
        loop {
            let key = self.key(version);
            match self.staging.get(&key).await? {
                Some(obj) => found = Some((parse(&key, &obj)?, version)),
                None => return Ok(found),
            }
            version += 1;
        }
    }

    /// Creates `version` (0 creates the chain); `Conflict` when another writer created it first.
    pub(crate) async fn create<T: Serialize>(
        &self,
        version: u32,
        value: &T,
    ) -> Result<Conditional, PipelineError> {
        Ok(self
            .staging
            .create(&self.key(version), to_json(value))
            .await?)
    }

    /// Deletes every version, the first one first so that no new reader finds the chain. The
    /// versions are found by reading forward from the first (a read per version and one past the
    /// last, instead of a list: listing costs more than reading and grows with the prefix). Best
    /// effort: a version left behind (created after the walk) is never read without the first.
    pub(crate) async fn delete(&self) {
        let mut last = 0;
        loop {
            match self.staging.get(&self.key(last + 1)).await {
                Ok(Some(_)) => last += 1,
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(key = %self.key(last + 1), error = %err, "could not read a chain's version");
                    break;
                }
            }
        }
        for version in 0..=last {
            let key = self.key(version);
            if let Err(err) = self.staging.delete(&key).await {
                tracing::warn!(key = %key, error = %err, "could not delete a chain version");
            }
        }
    }
}
