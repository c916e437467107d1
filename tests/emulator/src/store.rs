//! Durable emulator state under `--data`: tables, partitions, committed rows and open upload
//! sessions, all as files, so that a restart (even after SIGKILL) keeps everything committed and
//! every open session.
//!
//! Layout:
//! ```text
//! projects/{p}/tables/{t}/table.json                 schema, partitions
//! projects/{p}/tables/{t}/data/{partition}/{upload}/ committed blocks ({n}.bin) and commit.json
//! uploads/{upload}/session.json                      the session
//! uploads/{upload}/blocks/{n}.bin                    uncommitted blocks (inflated, validated)
//! ```
//! A commit is one `rename` of `uploads/{id}/blocks` into the partition's data directory, so rows
//! become visible atomically and a session is committed exactly when that directory exists.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k2mc::maxcompute::{PartitionSpec, TableSchema};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// A table's metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableMeta {
    pub name: String,
    pub schema: TableSchema,
    pub comment: String,
    pub lifecycle: Option<i64>,
    pub created_ms: i64,
    pub last_modified_ms: i64,
    /// Partitions in creation order, tunnel form (`ds=1,hr=2`).
    pub partitions: Vec<String>,
}

/// An upload session's stored record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadMeta {
    pub id: String,
    pub project: String,
    pub table: String,
    pub partition: Option<String>,
    pub overwrite: bool,
    pub created_ms: i64,
    /// Set by the expire fault knob.
    #[serde(default)]
    pub force_expired: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct CommitRecord {
    rows: u64,
    committed_ms: i64,
}

/// One committed upload's data, in commit order.
#[derive(Debug, Clone)]
pub struct DataSet {
    pub partition: Option<PartitionSpec>,
    pub dir: PathBuf,
    pub rows: u64,
}

/// The file-backed store.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    session_ttl: Duration,
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Store {
    pub fn open(root: &Path, session_ttl: Duration) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join("projects"))?;
        std::fs::create_dir_all(root.join("uploads"))?;
        Ok(Store {
            root: root.to_owned(),
            session_ttl,
        })
    }

    fn table_dir(&self, project: &str, table: &str) -> PathBuf {
        self.root
            .join("projects")
            .join(safe_name(&project.to_lowercase()))
            .join("tables")
            .join(safe_name(&table.to_lowercase()))
    }

    fn partition_dir(&self, project: &str, table: &str, partition: Option<&str>) -> PathBuf {
        let name = partition.map_or_else(|| "_".to_owned(), safe_name);
        self.table_dir(project, table).join("data").join(name)
    }

    fn upload_dir(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(safe_name(id))
    }

    pub fn table(&self, project: &str, table: &str) -> Result<Option<TableMeta>, ApiError> {
        read_json(&self.table_dir(project, table).join("table.json"))
    }

    pub fn require_table(&self, project: &str, table: &str) -> Result<TableMeta, ApiError> {
        self.table(project, table)?
            .ok_or_else(|| ApiError::no_such_table(project, table))
    }

    pub fn put_table(&self, project: &str, meta: &TableMeta) -> Result<(), ApiError> {
        let dir = self.table_dir(project, &meta.name);
        std::fs::create_dir_all(&dir).map_err(ApiError::io)?;
        write_json(&dir.join("table.json"), meta)
    }

    pub fn drop_table(&self, project: &str, table: &str) -> Result<(), ApiError> {
        std::fs::remove_dir_all(self.table_dir(project, table)).map_err(ApiError::io)
    }

    /// Normalizes a spec against the table's partition keys: every key, in key order.
    pub fn check_partition(
        &self,
        meta: &TableMeta,
        spec: &PartitionSpec,
    ) -> Result<PartitionSpec, String> {
        let keys = &meta.schema.partition_keys;
        if spec.pairs().len() != keys.len() {
            return Err(format!(
                "partition spec '{spec}' must name every partition column of {} ({})",
                meta.name,
                keys.iter()
                    .map(|k| k.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let mut pairs = Vec::new();
        for key in keys {
            let value = spec
                .get(&key.name)
                .ok_or_else(|| format!("partition spec '{spec}' lacks column {}", key.name))?;
            pairs.push((key.name.clone(), value.to_owned()));
        }
        Ok(PartitionSpec::new(pairs))
    }

    pub fn create_upload(&self, meta: &UploadMeta) -> Result<(), ApiError> {
        let dir = self.upload_dir(&meta.id);
        std::fs::create_dir_all(dir.join("blocks")).map_err(ApiError::io)?;
        write_json(&dir.join("session.json"), meta)
    }

    pub fn upload(&self, id: &str) -> Result<Option<UploadMeta>, ApiError> {
        read_json(&self.upload_dir(id).join("session.json"))
    }

    pub fn save_upload(&self, meta: &UploadMeta) -> Result<(), ApiError> {
        write_json(&self.upload_dir(&meta.id).join("session.json"), meta)
    }

    fn committed_dir(&self, meta: &UploadMeta) -> PathBuf {
        self.partition_dir(&meta.project, &meta.table, meta.partition.as_deref())
            .join(safe_name(&meta.id))
    }

    /// Whether the session's rows are committed.
    pub fn is_committed(&self, meta: &UploadMeta) -> bool {
        self.committed_dir(meta).join("commit.json").exists()
    }

    /// `NORMAL`, `CLOSED` or `EXPIRED`, derived from the files. Past its lifetime a session is
    /// `EXPIRED` whether or not it committed, as MaxCompute's protocol notes say
    /// (`docs/maxcompute-protocol.md`): the status then no longer tells a committed session
    /// from one that never was.
    pub fn upload_status(&self, meta: &UploadMeta) -> &'static str {
        if meta.force_expired || now_ms() - meta.created_ms > self.session_ttl.as_millis() as i64 {
            "EXPIRED"
        } else if self.is_committed(meta) {
            "CLOSED"
        } else {
            "NORMAL"
        }
    }

    /// Block ids uploaded to a session (committed or not).
    pub fn blocks(&self, meta: &UploadMeta) -> Vec<u32> {
        let dir = if self.is_committed(meta) {
            self.committed_dir(meta)
        } else {
            self.upload_dir(&meta.id).join("blocks")
        };
        block_ids(&dir)
    }

    /// Stores a validated block, replacing any earlier block with the same id.
    pub fn put_block(&self, meta: &UploadMeta, block_id: u32, raw: &[u8]) -> Result<(), ApiError> {
        let dir = self.upload_dir(&meta.id).join("blocks");
        let tmp = dir.join(format!(".{block_id}.{}.tmp", rand::random::<u64>()));
        std::fs::write(&tmp, raw).map_err(ApiError::io)?;
        std::fs::rename(&tmp, dir.join(format!("{block_id}.bin"))).map_err(ApiError::io)
    }

    /// Makes a session's rows visible. `rows` is the total the blocks hold.
    pub fn commit(&self, meta: &UploadMeta, rows: u64) -> Result<(), ApiError> {
        let blocks = self.upload_dir(&meta.id).join("blocks");
        write_json(
            &blocks.join("commit.json"),
            &CommitRecord {
                rows,
                committed_ms: now_ms(),
            },
        )?;
        let target = self.committed_dir(meta);
        let parent = target.parent().unwrap_or(&self.root).to_owned();
        std::fs::create_dir_all(&parent).map_err(ApiError::io)?;
        std::fs::rename(&blocks, &target).map_err(ApiError::io)?;
        if meta.overwrite {
            // Overwrite replaces what the partition held before this commit.
            for entry in std::fs::read_dir(&parent).map_err(ApiError::io)?.flatten() {
                if entry.path() != target {
                    std::fs::remove_dir_all(entry.path()).map_err(ApiError::io)?;
                }
            }
        }
        Ok(())
    }

    /// The uncommitted block files of a session, by block id.
    pub fn pending_blocks(&self, meta: &UploadMeta) -> Vec<(u32, PathBuf)> {
        let dir = self.upload_dir(&meta.id).join("blocks");
        block_ids(&dir)
            .into_iter()
            .map(|id| (id, dir.join(format!("{id}.bin"))))
            .collect()
    }

    /// Committed data sets of a table whose partition passes `keep`, in commit order.
    pub fn data_sets(
        &self,
        project: &str,
        meta: &TableMeta,
        keep: &dyn Fn(Option<&PartitionSpec>) -> bool,
    ) -> Result<Vec<DataSet>, ApiError> {
        let mut sets = Vec::new();
        let partitions: Vec<Option<String>> = if meta.schema.partition_keys.is_empty() {
            vec![None]
        } else {
            meta.partitions.iter().cloned().map(Some).collect()
        };
        for partition in partitions {
            let spec = partition
                .as_deref()
                .map(PartitionSpec::parse)
                .transpose()
                .map_err(|e| ApiError::internal(e.to_string()))?;
            if !keep(spec.as_ref()) {
                continue;
            }
            let dir = self.partition_dir(project, &meta.name, partition.as_deref());
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut found = Vec::new();
            for entry in entries.flatten() {
                let commit: Option<CommitRecord> = read_json(&entry.path().join("commit.json"))?;
                if let Some(c) = commit {
                    found.push((
                        c.committed_ms,
                        entry.file_name(),
                        DataSet {
                            partition: spec.clone(),
                            dir: entry.path(),
                            rows: c.rows,
                        },
                    ));
                }
            }
            found.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
            sets.extend(found.into_iter().map(|(_, _, s)| s));
        }
        Ok(sets)
    }

    /// The block files of a committed data set, by block id.
    pub fn data_files(set: &DataSet) -> Vec<PathBuf> {
        block_ids(&set.dir)
            .into_iter()
            .map(|id| set.dir.join(format!("{id}.bin")))
            .collect()
    }
}

fn block_ids(dir: &Path) -> Vec<u32> {
    let mut ids: Vec<u32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".bin")?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// A file-name-safe encoding of a name or partition spec.
fn safe_name(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, ApiError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ApiError::internal(format!("corrupt {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ApiError::io(e)),
    }
}

/// Writes through a temporary file and a rename, so a crash leaves the old or the new version.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ApiError> {
    let tmp = path.with_extension(format!("tmp{}", rand::random::<u32>()));
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| ApiError::internal(e.to_string()))?;
    std::fs::write(&tmp, bytes).map_err(ApiError::io)?;
    std::fs::rename(&tmp, path).map_err(ApiError::io)
}
