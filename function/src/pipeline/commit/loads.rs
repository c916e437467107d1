//! What the load protocol stores per table (`docs/architecture.md`, "Staging and loading"):
//! pending pointers (a staged batch of the table, maybe not loaded yet) and load records (a
//! version chain per load: the batches it may take, then the batches it took with their joined
//! blocks and sessions, then done). [`TableQueue`] reads and writes both for one table of one
//! Kafka cluster (`kafka.cluster`): a deployment loads what its own logs staged, never another
//! deployment's that shares the bucket.

use serde::{Deserialize, Serialize};

use super::versions::Chain;
use super::{BatchId, SessionRecord, StagedBlock, parse, to_json};
use crate::error::PipelineError;
use crate::staging::{Conditional, Staging};

/// A staged batch waiting for its load:
/// `pending/<cluster>/<project>/<table>/<scope>/<topic>/<p>/<start>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub batch: BatchId,
    /// Rows staged for the table.
    pub rows: u64,
    /// Uncompressed bytes of the staged blocks.
    pub bytes: u64,
    /// RFC 3339: when the batch was staged (the freshness bound counts from the oldest).
    pub staged_at: String,
}

/// One load of a table: a version chain `loads/<cluster>/<project>/<table>/<id>.json`, then
/// `<id>.v<n>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadRecord {
    pub id: String,
    pub project: String,
    pub table: String,
    pub created_at: String,
    /// Before it is fixed: the batches it may claim. Once fixed: exactly the batches it loads
    /// (those whose intent names this load).
    pub batches: Vec<BatchId>,
    #[serde(default)]
    pub fixed: bool,
    /// Per destination partition, the blocks joined from the batches' staged blocks.
    #[serde(default)]
    pub destinations: Vec<LoadDestination>,
    /// Every session committed (MaxCompute confirmed): what is left is cleanup.
    #[serde(default)]
    pub done: bool,
}

/// The rows of a load bound for one MaxCompute partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadDestination {
    /// Tunnel form `k=v,k2=v2`, empty for an unpartitioned table.
    pub partition: String,
    pub rows: u64,
    pub blocks: Vec<LoadBlock>,
    #[serde(flatten)]
    pub session: SessionRecord,
}

/// A Tunnel block of a load: staged blocks joined in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBlock {
    pub id: u32,
    pub rows: u64,
    pub pieces: Vec<StagedBlock>,
}

impl LoadRecord {
    /// Every staged block the load names.
    pub fn pieces(&self) -> impl Iterator<Item = &StagedBlock> {
        self.destinations
            .iter()
            .flat_map(|d| d.blocks.iter().flat_map(|b| b.pieces.iter()))
    }
}

/// The pending pointers and load records of one table.
#[derive(Debug, Clone)]
pub struct TableQueue {
    staging: Staging,
    /// The `kafka.cluster` whose scopes staged the batches.
    cluster: String,
    project: String,
    table: String,
}

impl TableQueue {
    pub fn new(staging: Staging, cluster: &str, project: &str, table: &str) -> Self {
        TableQueue {
            staging,
            cluster: cluster.to_owned(),
            project: project.to_owned(),
            table: table.to_owned(),
        }
    }

    /// The tables of `project` with batches `cluster` staged or loads in flight.
    pub async fn tables(
        staging: &Staging,
        cluster: &str,
        project: &str,
    ) -> Result<Vec<String>, PipelineError> {
        let mut tables = std::collections::BTreeSet::new();
        for root in ["pending", "loads"] {
            let prefix = format!("{root}/{cluster}/{project}/");
            for key in staging.list_all(&prefix).await? {
                if let Some(table) = key
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.split('/').next())
                {
                    tables.insert(table.to_owned());
                }
            }
        }
        Ok(tables.into_iter().collect())
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn staging(&self) -> &Staging {
        &self.staging
    }

    fn pending_prefix(&self) -> String {
        format!("pending/{}/{}/{}/", self.cluster, self.project, self.table)
    }

    fn pending_key(&self, batch: &BatchId) -> String {
        format!(
            "{}{}/{}/{}/{:020}.json",
            self.pending_prefix(),
            batch.cluster,
            batch.topic,
            batch.partition,
            batch.start
        )
    }

    /// Records that `pending.batch` is staged for this table (create-only; a pointer already
    /// there is the same batch's).
    pub async fn add(&self, pending: &Pending) -> Result<Conditional, PipelineError> {
        let key = self.pending_key(&pending.batch);
        Ok(self.staging.create(&key, to_json(pending)).await?)
    }

    /// The pointers of the table, read (a pointer deleted meanwhile is left out).
    pub async fn pending(&self) -> Result<Vec<Pending>, PipelineError> {
        use futures_util::StreamExt as _;
        let keys = self.staging.list_all(&self.pending_prefix()).await?;
        let read = futures_util::stream::iter(keys)
            .map(|key| async move {
                match self.staging.get(&key).await? {
                    Some(obj) => parse::<Pending>(&key, &obj).map(Some),
                    None => Ok(None),
                }
            })
            .buffered(16)
            .collect::<Vec<Result<Option<Pending>, PipelineError>>>()
            .await;
        let mut out = Vec::with_capacity(read.len());
        for r in read {
            if let Some(p) = r? {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Deletes the pointer of a loaded batch.
    pub async fn remove(&self, batch: &BatchId) -> Result<(), PipelineError> {
        Ok(self.staging.delete(&self.pending_key(batch)).await?)
    }

    /// The version chain of load `id`.
    pub(crate) fn load_chain(&self, id: &str) -> Chain<'_> {
        Chain::new(
            &self.staging,
            format!(
                "loads/{}/{}/{}/{id}",
                self.cluster, self.project, self.table
            ),
        )
    }

    /// The ids of the table's load records.
    pub async fn load_ids(&self) -> Result<Vec<String>, PipelineError> {
        let prefix = format!("loads/{}/{}/{}/", self.cluster, self.project, self.table);
        let mut ids: Vec<String> = self
            .staging
            .list_all(&prefix)
            .await?
            .iter()
            .filter_map(|k| k.strip_prefix(&prefix)?.strip_suffix(".json"))
            .filter(|rest| !rest.contains(".v"))
            .map(str::to_owned)
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Records `record` as the next version after `read`; false when another writer changed
    /// that version first.
    pub async fn record_next(&self, record: &LoadRecord, read: u32) -> Result<bool, PipelineError> {
        Ok(self.load_chain(&record.id).create(read + 1, record).await? == Conditional::Written)
    }

    /// Load `id` as last changed, with its version.
    pub async fn load_record(&self, id: &str) -> Result<Option<(LoadRecord, u32)>, PipelineError> {
        self.load_chain(id).last().await
    }
}
