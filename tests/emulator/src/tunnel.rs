//! The batch Tunnel on `/projects/{p}/tables/{t}` (`docs/maxcompute-protocol.md` §2): upload sessions, block PUTs (chunked,
//! optionally zlib `deflate` or an LZ4 frame (`x-lz4-frame`), every CRC verified before the block is kept), commits that make
//! rows visible atomically, and download sessions for pyodps `read_table` (`tunnel/download.rs`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use k2mc::maxcompute::{
    ColumnType, Compression, MAX_BLOCKS, PartitionSpec, RecordReader, Value, decompress,
};

use crate::error::ApiError;
use crate::quota;
use crate::store::{TableMeta, UploadMeta, now_ms};
use crate::{AppState, lock, path_segments, query_params};

mod download;
pub use download::Download;

/// MaxCompute's default largest STRING/BINARY cell.
const MAX_FIELD_SIZE: usize = 8 * 1024 * 1024;

pub async fn handle(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = query_params(uri);
    let parts = path_segments(uri.path());
    let (project, table) = match parts
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["projects", p, "tables", t] => ((*p).to_owned(), (*t).to_owned()),
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "InvalidURI",
                format!("the tunnel does not serve {}", uri.path()),
            ));
        }
    };
    let has = |k: &str| params.contains_key(k);
    match *method {
        Method::POST if has("uploads") => create_upload(state, &project, &table, &params).await,
        Method::GET if has("uploadid") => {
            let meta = upload(state, &params)?;
            // The status knobs act on status reads only; writes see the session as it is.
            let status = state.store.upload_status(&meta);
            let mut faults = lock(&state.faults);
            let reported = if status == "CLOSED"
                && faults.take(|f| &mut f.closing_reads, |f| &mut f.closing_reads)
            {
                "CLOSING"
            } else if !state.store.is_committed(&meta)
                && faults.take(|f| &mut f.critical_reads, |f| &mut f.critical_reads)
            {
                "CRITICAL"
            } else {
                status
            };
            drop(faults);
            Ok(session_json_as(state, &meta, reported)?)
        }
        Method::PUT if has("uploadid") && has("blockid") => {
            put_block(state, &params, headers, &body).await
        }
        Method::POST if has("uploadid") => commit(state, &params).await,
        Method::POST if has("downloads") => download::create(state, &project, &table, &params),
        Method::GET if has("downloadid") && has("data") => download::read(state, &params),
        Method::GET if has("downloadid") => download::session(state, &params),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            format!("unsupported tunnel call {method} {uri}"),
        )),
    }
}

fn table_and_partition(
    state: &AppState,
    project: &str,
    table: &str,
    params: &HashMap<String, String>,
    create: bool,
) -> Result<(TableMeta, Option<PartitionSpec>), ApiError> {
    let mut meta = state.store.require_table(project, table)?;
    let partitioned = !meta.schema.partition_keys.is_empty();
    let spec = match params.get("partition").filter(|s| !s.is_empty()) {
        None if partitioned => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidPartitionSpec",
                format!("table {table} is partitioned; a partition spec is required"),
            ));
        }
        None => None,
        Some(_) if !partitioned => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidPartitionSpec",
                format!("table {table} is not partitioned"),
            ));
        }
        Some(text) => {
            let spec = PartitionSpec::parse(text).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidPartitionSpec",
                    e.to_string(),
                )
            })?;
            let spec = state
                .store
                .check_partition(&meta, &spec)
                .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "InvalidPartitionSpec", m))?;
            if !meta.partitions.contains(&spec.tunnel_form()) {
                if !create {
                    return Err(ApiError::new(
                        StatusCode::NOT_FOUND,
                        "NoSuchPartition",
                        format!("The specified partition does not exist: {spec}"),
                    ));
                }
                meta.partitions.push(spec.tunnel_form());
                meta.last_modified_ms = now_ms();
                state.store.put_table(project, &meta)?;
            }
            Some(spec)
        }
    };
    Ok((meta, spec))
}

async fn create_upload(
    state: &AppState,
    project: &str,
    table: &str,
    params: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let _guard = state.meta_lock.lock().await;
    let create = params
        .get("create_partition")
        .is_some_and(|v| v.is_empty() || v == "true");
    let (meta, spec) = table_and_partition(state, project, table, params, create)?;
    lock(&state.quotas).take(
        &format!("{project}.{}", meta.name),
        quota::Kind::Session,
        Instant::now(),
    )?;
    let upload = UploadMeta {
        id: format!(
            "{}{:016x}",
            chrono::Utc::now().format("%Y%m%d%H%M%S"),
            rand::random::<u64>()
        ),
        project: project.to_owned(),
        table: meta.name.clone(),
        partition: spec.map(|s| s.tunnel_form()),
        overwrite: params.get("overwrite").is_some_and(|v| v == "true"),
        created_ms: now_ms(),
        force_expired: false,
    };
    state.store.create_upload(&upload)?;
    tracing::info!(upload_id = %upload.id, table = %upload.table, partition = ?upload.partition, "Upload session created.");
    let mut resp = session_json(state, &upload)?;
    *resp.status_mut() = StatusCode::CREATED;
    Ok(resp)
}

fn upload(state: &AppState, params: &HashMap<String, String>) -> Result<UploadMeta, ApiError> {
    let id = params
        .get("uploadid")
        .map(String::as_str)
        .unwrap_or_default();
    state.store.upload(id)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NoSuchUpload",
            format!("upload session {id} does not exist"),
        )
    })
}

fn session_json(state: &AppState, meta: &UploadMeta) -> Result<Response, ApiError> {
    session_json_as(state, meta, state.store.upload_status(meta))
}

/// The session's JSON with `status` reported.
fn session_json_as(
    state: &AppState,
    meta: &UploadMeta,
    status: &str,
) -> Result<Response, ApiError> {
    let table = state.store.require_table(&meta.project, &meta.table)?;
    let blocks: Vec<serde_json::Value> = state
        .store
        .blocks(meta)
        .into_iter()
        .map(|b| serde_json::json!({"BlockID": b}))
        .collect();
    let body = serde_json::json!({
        "UploadID": meta.id,
        "Status": status,
        "Owner": "ALIYUN$emulator",
        "Initiated": httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(meta.created_ms.max(0) as u64)),
        "Schema": table.schema,
        "UploadedBlockList": blocks,
        "MaxFieldSize": MAX_FIELD_SIZE,
        "QuotaName": "",
    });
    Ok(([("Content-Type", "application/json")], body.to_string()).into_response())
}

fn require_normal(state: &AppState, meta: &UploadMeta) -> Result<(), ApiError> {
    match state.store.upload_status(meta) {
        "NORMAL" => Ok(()),
        "CLOSED" => Err(ApiError::new(
            StatusCode::CONFLICT,
            "CloseUploadSessionStatusConflict",
            format!("upload session {} is already committed (CLOSED)", meta.id),
        )),
        status => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "StatusConflict",
            format!("upload session {} is {status}", meta.id),
        )),
    }
}

async fn put_block(
    state: &AppState,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let meta = upload(state, params)?;
    let block_id: u32 = params["blockid"]
        .parse()
        .ok()
        .filter(|b| *b < MAX_BLOCKS)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidBlockId",
                format!(
                    "block id '{}' is outside 0..{MAX_BLOCKS}",
                    params["blockid"]
                ),
            )
        })?;
    require_normal(state, &meta)?;
    lock(&state.quotas).take(&quota_key(&meta), quota::Kind::Block, Instant::now())?;
    if lock(&state.faults).take(|f| &mut f.fail_blocks, |f| &mut f.fail_blocks) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "block dropped by the emulator's fault knob",
        ));
    }
    let encoding = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok());
    let Some(compression) = Compression::from_content_encoding(encoding) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            format!(
                "the emulator does not support Content-Encoding '{}'; use deflate, x-lz4-frame or none",
                encoding.unwrap_or_default()
            ),
        ));
    };
    let raw = decompress(body, compression)
        .map_err(|e| ApiError::invalid(format!("block {block_id}: bad {compression} body: {e}")))?;
    let table = state.store.require_table(&meta.project, &meta.table)?;
    let rows = RecordReader::new(&table.schema.column_types(), &raw)
        .read_all()
        .map_err(|e| ApiError::invalid(format!("block {block_id}: {e}")))?;
    check_field_sizes(&rows).map_err(|m| ApiError::invalid(format!("block {block_id}: {m}")))?;
    state.store.put_block(&meta, block_id, &raw)?;
    if let Some(dir) = &state.keep_bodies {
        let path = dir.join(format!("{}.{block_id}.{compression}", meta.id));
        std::fs::write(&path, body).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("keeping block {block_id} at {}: {e}", path.display()),
            )
        })?;
    }
    Ok(StatusCode::OK.into_response())
}

fn check_field_sizes(rows: &[Vec<Value>]) -> Result<(), String> {
    fn size(v: &Value) -> usize {
        match v {
            Value::String(s) | Value::Decimal(s) => s.len(),
            Value::Binary(b) => b.len(),
            Value::Array(items) | Value::Struct(items) => items.iter().map(size).sum(),
            Value::Map(entries) => entries.iter().map(|(k, v)| size(k) + size(v)).sum(),
            _ => 8,
        }
    }
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            if size(cell) > MAX_FIELD_SIZE {
                return Err(format!(
                    "row {r} column {c} is {} bytes, over the field size limit of {MAX_FIELD_SIZE}",
                    size(cell)
                ));
            }
        }
    }
    Ok(())
}

/// The table a session draws its quotas from.
fn quota_key(meta: &UploadMeta) -> String {
    format!("{}.{}", meta.project, meta.table)
}

/// A committing slot of a table's quota, given back when the commit ends however it ends.
struct Committing<'a> {
    state: &'a AppState,
    table: String,
}

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        lock(&self.state.quotas).end_commit(&self.table);
    }
}

async fn commit(state: &AppState, params: &HashMap<String, String>) -> Result<Response, ApiError> {
    let meta = upload(state, params)?;
    require_normal(state, &meta)?;
    let table = quota_key(&meta);
    let commit_ms = {
        let mut quotas = lock(&state.quotas);
        quotas.take(&table, quota::Kind::Commit, Instant::now())?;
        quotas.begin_commit(&table)?;
        quotas.args().commit_ms
    };
    let _slot = Committing { state, table };
    if commit_ms > 0 {
        tokio::time::sleep(Duration::from_millis(commit_ms)).await;
    }
    let _guard = state.meta_lock.lock().await;
    let meta = upload(state, params)?;
    require_normal(state, &meta)?;
    if lock(&state.faults).take(|f| &mut f.fail_commits, |f| &mut f.fail_commits) {
        return Err(ApiError::internal(
            "commit failed by the emulator's fault knob".into(),
        ));
    }
    let table = state.store.require_table(&meta.project, &meta.table)?;
    let types = table.schema.column_types();
    let mut rows = 0u64;
    let mut sizes = Vec::new();
    for (_, file) in state.store.pending_blocks(&meta) {
        let bytes = std::fs::read(&file).map_err(ApiError::io)?;
        rows += count_rows(&types, &bytes)?;
        sizes.push(bytes.len() as u64);
    }
    state.store.commit(&meta, rows)?;
    lock(&state.quotas).committed(&quota_key(&meta), sizes);
    tracing::info!(upload_id = %meta.id, rows, "Upload session committed.");
    if lock(&state.faults).take(|f| &mut f.ambiguous_commits, |f| &mut f.ambiguous_commits) {
        return Err(ApiError::internal(
            "committed, but the emulator's fault knob lost the answer".into(),
        ));
    }
    session_json(state, &meta)
}

fn count_rows(types: &[ColumnType], bytes: &[u8]) -> Result<u64, ApiError> {
    let mut reader = RecordReader::new(types, bytes);
    let mut n = 0;
    while reader
        .next_row()
        .map_err(|e| ApiError::internal(e.to_string()))?
        .is_some()
    {
        n += 1;
    }
    Ok(n)
}
