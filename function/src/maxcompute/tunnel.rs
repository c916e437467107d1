//! Tunnel batch upload and download (`docs/maxcompute-protocol.md` §2): upload sessions per (table, partition), blocks
//! PUT with chunked transfer in their compression (`block`), the client-side block-list check before
//! commit, and commits whose ambiguous failures are settled by reloading the session (`CLOSED`
//! means committed). Downloads exist so that tests and the `status` command can read rows back.

use std::sync::Arc;

use reqwest::Method;
use serde::Deserialize;

use super::block::{Block, decode_block};
use super::body::{BodySource, Parts};
use super::client::MaxComputeClient;
use super::error::MaxComputeError;
use super::http::{Call, Payload};
use super::partition::PartitionSpec;
use super::session::SessionState;
use k2mc_formats::tunnel::{Compression, TableSchema, Value};

/// Block ids a session accepts: `0..MAX_BLOCKS`.
pub const MAX_BLOCKS: u32 = 20_000;
const TUNNEL_VERSION: &str = "6";

/// An upload session as the Tunnel last described it.
#[derive(Debug, Clone)]
pub struct UploadSession {
    pub id: String,
    pub table: String,
    pub partition: Option<PartitionSpec>,
    /// Upper-cased: `NORMAL`, `CLOSING`, `CLOSED`, `CANCELED`, `EXPIRED`, `CRITICAL`.
    pub status: String,
    pub schema: TableSchema,
    /// Blocks the server holds, sorted.
    pub blocks: Vec<u32>,
}

impl UploadSession {
    /// True once the session's rows are committed.
    pub fn is_committed(&self) -> bool {
        self.state() == SessionState::Committed
    }

    /// What the status proves.
    pub fn state(&self) -> SessionState {
        SessionState::of(&self.status)
    }
}

/// A download session: a snapshot of a table or partition.
#[derive(Debug, Clone)]
pub struct DownloadSession {
    pub id: String,
    pub table: String,
    pub partition: Option<PartitionSpec>,
    pub record_count: u64,
    pub schema: TableSchema,
}

#[derive(Deserialize)]
struct SessionJson {
    #[serde(rename = "UploadID", alias = "DownloadID", default)]
    id: String,
    #[serde(rename = "Status", default)]
    status: String,
    #[serde(rename = "Schema", default)]
    schema: TableSchema,
    #[serde(rename = "UploadedBlockList", default)]
    blocks: Vec<BlockJson>,
    #[serde(rename = "RecordCount", default)]
    record_count: u64,
}

#[derive(Deserialize)]
struct BlockJson {
    #[serde(rename = "BlockID")]
    id: u32,
}

impl MaxComputeClient {
    /// Opens an upload session for `table` (and `partition`, which must exist).
    pub async fn create_upload_session(
        &self,
        table: &str,
        partition: Option<&PartitionSpec>,
        overwrite: bool,
    ) -> Result<UploadSession, MaxComputeError> {
        let mut call = self
            .tunnel_call("create upload session", Method::POST, table, partition)
            .await?;
        call.params.insert(0, ("uploads".into(), String::new()));
        if overwrite {
            call.params.push(("overwrite".into(), "true".into()));
        }
        let json = self.session_json(&call).await?;
        Ok(upload_session(json, table, partition))
    }

    /// Reloads an upload session by id: its status and the blocks the server holds.
    pub async fn reload_upload_session(
        &self,
        table: &str,
        partition: Option<&PartitionSpec>,
        upload_id: &str,
    ) -> Result<UploadSession, MaxComputeError> {
        let mut call = self
            .tunnel_call("reload upload session", Method::GET, table, partition)
            .await?;
        call.params.push(("uploadid".into(), upload_id.to_owned()));
        let json = self.session_json(&call).await?;
        let mut session = upload_session(json, table, partition);
        if session.id.is_empty() {
            session.id = upload_id.to_owned();
        }
        Ok(session)
    }

    /// PUTs one block; writing the same block id again replaces it.
    pub async fn upload_block(
        &self,
        session: &UploadSession,
        block_id: u32,
        block: &Block,
    ) -> Result<(), MaxComputeError> {
        let body = Arc::new(Parts(block.data.clone()));
        self.upload_body(session, block_id, body, block.compression)
            .await
    }

    /// PUTs one block read from `body` as it is sent (from the start again on a retry); writing
    /// the same block id again replaces it. A failure of the source itself is
    /// [`MaxComputeError::BodyUnreadable`], never retried here.
    pub async fn upload_body(
        &self,
        session: &UploadSession,
        block_id: u32,
        body: Arc<dyn BodySource>,
        compression: Compression,
    ) -> Result<(), MaxComputeError> {
        if block_id >= MAX_BLOCKS {
            return Err(MaxComputeError::BlockId { block_id });
        }
        let mut call = self
            .tunnel_call(
                "upload block",
                Method::PUT,
                &session.table,
                session.partition.as_ref(),
            )
            .await?;
        call.operation = format!("upload block {block_id} of session {}", session.id);
        call.params.push(("uploadid".into(), session.id.clone()));
        call.params.push(("blockid".into(), block_id.to_string()));
        call.payload = Payload::Chunked {
            body,
            content_encoding: compression.content_encoding(),
        };
        self.transport.execute(&call).await.map(|_| ())
    }

    /// Commits a session holding exactly `blocks`. Idempotent: a session already `CLOSED` is
    /// success, and a commit whose answer was lost or failed is settled by reloading the session.
    pub async fn commit_upload(
        &self,
        session: &UploadSession,
        blocks: &[u32],
    ) -> Result<UploadSession, MaxComputeError> {
        let (table, partition) = (&session.table, session.partition.as_ref());
        let current = self
            .reload_upload_session(table, partition, &session.id)
            .await?;
        match current.state() {
            SessionState::Committed => return Ok(current),
            SessionState::Committing => {
                return self
                    .settle_commit(
                        session,
                        MaxComputeError::CommitInProgress {
                            upload_id: session.id.clone(),
                        },
                    )
                    .await;
            }
            _ => {}
        }
        if current.state() != SessionState::Open {
            return Err(MaxComputeError::SessionNotWritable {
                upload_id: session.id.clone(),
                status: current.status,
            });
        }
        let mut expected = blocks.to_vec();
        expected.sort_unstable();
        expected.dedup();
        if current.blocks != expected {
            return Err(MaxComputeError::Protocol {
                operation: format!("commit session {}", session.id),
                reason: format!(
                    "server holds blocks {:?} but the batch wrote {:?}",
                    current.blocks, expected
                ),
            });
        }
        let mut call = self
            .tunnel_call("commit upload session", Method::POST, table, partition)
            .await?;
        call.operation = format!("commit session {}", session.id);
        call.params.push(("uploadid".into(), session.id.clone()));
        let answered = match self.session_json(&call).await {
            Ok(json) => {
                let answer = upload_session(json, table, partition);
                if answer.is_committed() {
                    return Ok(answer);
                }
                // Any other answer (an empty status included) is settled by the session itself.
                MaxComputeError::SessionNotWritable {
                    upload_id: session.id.clone(),
                    status: answer.status,
                }
            }
            Err(err) => {
                // The commit may have happened even though we saw an error: ask the session.
                tracing::warn!(upload_id = %session.id, error = %err, "commit failed; reloading the session to settle it");
                err
            }
        };
        self.settle_commit(session, answered).await
    }

    /// After a commit request whose answer was not `CLOSED`: reloads the session, waiting out a
    /// commit under way (`CLOSING`/`COMMITTING`, the 1 s, 2 s, 4 s … of the SDKs' polling, up to
    /// about a minute). `CLOSED` is success; anything else returns `answered`, or
    /// [`MaxComputeError::CommitInProgress`] when the commit is still under way.
    async fn settle_commit(
        &self,
        session: &UploadSession,
        answered: MaxComputeError,
    ) -> Result<UploadSession, MaxComputeError> {
        let (table, partition) = (&session.table, session.partition.as_ref());
        let mut wait = std::time::Duration::from_millis(250);
        for _ in 0..8 {
            let now = self
                .reload_upload_session(table, partition, &session.id)
                .await?;
            match now.state() {
                SessionState::Committed => return Ok(now),
                SessionState::Committing => {
                    tracing::info!(upload_id = %session.id, status = %now.status, "commit under way; waiting");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(16));
                }
                _ => return Err(answered),
            }
        }
        Err(MaxComputeError::CommitInProgress {
            upload_id: session.id.clone(),
        })
    }

    /// Opens a download session over `table` (and `partition`).
    pub async fn create_download_session(
        &self,
        table: &str,
        partition: Option<&PartitionSpec>,
    ) -> Result<DownloadSession, MaxComputeError> {
        let mut call = self
            .tunnel_call("create download session", Method::POST, table, partition)
            .await?;
        call.params.insert(0, ("downloads".into(), String::new()));
        let mut json = self.session_json(&call).await?;
        while json.status.eq_ignore_ascii_case("INITIATING") {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let mut reload = self
                .tunnel_call("reload download session", Method::GET, table, partition)
                .await?;
            reload.params.push(("downloadid".into(), json.id.clone()));
            json = self.session_json(&reload).await?;
        }
        Ok(DownloadSession {
            id: json.id,
            table: table.to_owned(),
            partition: partition.cloned(),
            record_count: json.record_count,
            schema: json.schema,
        })
    }

    /// Reads rows `[start, start + count)` of a download session.
    pub async fn download_rows(
        &self,
        session: &DownloadSession,
        start: u64,
        count: u64,
    ) -> Result<Vec<Vec<Value>>, MaxComputeError> {
        let mut call = self
            .tunnel_call(
                "download rows",
                Method::GET,
                &session.table,
                session.partition.as_ref(),
            )
            .await?;
        call.params.insert(0, ("data".into(), String::new()));
        call.params.push(("downloadid".into(), session.id.clone()));
        call.params
            .push(("rowrange".into(), format!("({start},{count})")));
        call.headers.push(("Accept-Encoding", "deflate".into()));
        let resp = self.transport.execute(&call).await?;
        let compression = match resp.header("Content-Encoding") {
            Some(enc) if enc.eq_ignore_ascii_case("deflate") => Compression::Deflate,
            _ => Compression::None,
        };
        decode_block(&session.schema.column_types(), &resp.body, compression)
    }

    async fn tunnel_call(
        &self,
        operation: &str,
        method: Method,
        table: &str,
        partition: Option<&PartitionSpec>,
    ) -> Result<Call, MaxComputeError> {
        let mut params = Vec::new();
        if let Some(p) = partition {
            params.push(("partition".into(), p.tunnel_form()));
        }
        Ok(Call {
            operation: operation.to_owned(),
            method,
            base: self.tunnel_base().await?,
            path: self.table_path(table),
            params,
            headers: vec![
                ("x-odps-tunnel-version", TUNNEL_VERSION.into()),
                ("odps-tunnel-date-transform", "v1".into()),
            ],
            payload: Payload::Empty,
        })
    }

    async fn session_json(&self, call: &Call) -> Result<SessionJson, MaxComputeError> {
        let resp = self.transport.execute(call).await?;
        if resp.body.is_empty() {
            return Ok(SessionJson {
                id: String::new(),
                status: String::new(),
                schema: TableSchema::default(),
                blocks: Vec::new(),
                record_count: 0,
            });
        }
        serde_json::from_slice(&resp.body).map_err(|e| MaxComputeError::Protocol {
            operation: call.operation.clone(),
            reason: format!("bad session JSON: {e}"),
        })
    }
}

fn upload_session(
    json: SessionJson,
    table: &str,
    partition: Option<&PartitionSpec>,
) -> UploadSession {
    let mut blocks: Vec<u32> = json.blocks.iter().map(|b| b.id).collect();
    blocks.sort_unstable();
    blocks.dedup();
    UploadSession {
        id: json.id,
        table: table.to_owned(),
        partition: partition.cloned(),
        status: json.status.to_ascii_uppercase(),
        schema: json.schema,
        blocks,
    }
}
