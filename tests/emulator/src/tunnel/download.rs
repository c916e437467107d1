//! The batch Tunnel's download sessions (`docs/maxcompute-protocol.md` §2): what pyodps
//! `read_table` and the tests use to read back what loads committed.

use std::collections::HashMap;
use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use k2mc::maxcompute::{ColumnType, PartitionSpec, RecordReader, RecordWriter, TableSchema, Value};

use super::table_and_partition;
use crate::error::ApiError;
use crate::store::Store;
use crate::{AppState, lock};

/// A download session: the committed files it reads, fixed when it opened.
#[derive(Debug, Clone)]
pub struct Download {
    files: Vec<PathBuf>,
    count: u64,
    schema: TableSchema,
}

/// A download session's state, as pyodps reads it before the data.
pub(super) fn session(
    state: &AppState,
    params: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let (id, dl) = find(state, params)?;
    Ok(json(id, &dl))
}

/// The session `downloadid` names (a copy: the lock is not held while its files are read).
fn find<'p>(
    state: &AppState,
    params: &'p HashMap<String, String>,
) -> Result<(&'p str, Download), ApiError> {
    let id = params["downloadid"].as_str();
    let dl = lock(&state.downloads)
        .get(id)
        .cloned()
        .ok_or_else(|| no_such_download(id))?;
    Ok((id, dl))
}

fn no_such_download(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NoSuchDownload",
        format!("download session {id} does not exist"),
    )
}

/// Opens a download session over the table's (or one partition's) committed files.
pub(super) fn create(
    state: &AppState,
    project: &str,
    table: &str,
    params: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let (meta, spec) = table_and_partition(state, project, table, params, false)?;
    let keep = |p: Option<&PartitionSpec>| spec.is_none() || p == spec.as_ref();
    let sets = state.store.data_sets(project, &meta, &keep)?;
    let download = Download {
        files: sets.iter().flat_map(Store::data_files).collect(),
        count: sets.iter().map(|s| s.rows).sum(),
        schema: TableSchema {
            columns: meta.schema.columns.clone(),
            partition_keys: meta.schema.partition_keys.clone(),
        },
    };
    let id = format!(
        "{}{:016x}",
        chrono::Utc::now().format("%Y%m%d%H%M%S"),
        rand::random::<u64>()
    );
    let resp = json(&id, &download);
    lock(&state.downloads).insert(id, download);
    Ok((StatusCode::CREATED, resp).into_response())
}

fn json(id: &str, dl: &Download) -> Response {
    let body = serde_json::json!({"DownloadID": id, "Status": "NORMAL", "RecordCount": dl.count, "Schema": dl.schema, "QuotaName": ""});
    ([("Content-Type", "application/json")], body.to_string()).into_response()
}

/// The rows of `rowrange`, in the `columns` asked for, as one record stream.
pub(super) fn read(
    state: &AppState,
    params: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let (_, dl) = find(state, params)?;
    let range = params.get("rowrange").map(String::as_str).unwrap_or("");
    let (start, count) = range
        .trim_matches(|c| c == '(' || c == ')')
        .split_once(',')
        .and_then(|(s, c)| Some((s.trim().parse::<u64>().ok()?, c.trim().parse::<u64>().ok()?)))
        .filter(|(s, c)| s + c <= dl.count)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidRowRange",
                format!("row range '{range}' is not within 0..{}", dl.count),
            )
        })?;
    let all_types = dl.schema.column_types();
    let picks: Vec<usize> = match params.get("columns").filter(|c| !c.is_empty()) {
        None => (0..all_types.len()).collect(),
        Some(cols) => cols
            .split(',')
            .map(|c| {
                dl.schema
                    .column_index(c.trim())
                    .ok_or_else(|| ApiError::invalid(format!("no column '{c}'")))
            })
            .collect::<Result<_, _>>()?,
    };
    let out_types: Vec<ColumnType> = picks.iter().map(|&i| all_types[i].clone()).collect();
    let mut writer = RecordWriter::new(&out_types, Vec::new());
    let (mut seen, end) = (0u64, start + count);
    'files: for file in &dl.files {
        let bytes = std::fs::read(file).map_err(ApiError::io)?;
        let mut reader = RecordReader::new(&all_types, &bytes);
        while let Some(row) = reader
            .next_row()
            .map_err(|e| ApiError::internal(e.to_string()))?
        {
            if seen >= end {
                break 'files;
            }
            if seen >= start {
                let projected: Vec<Value> = picks.iter().map(|&i| row[i].clone()).collect();
                writer
                    .write(&projected)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
            }
            seen += 1;
        }
    }
    let body = writer
        .finish()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(([("Content-Type", "application/octet-stream")], body).into_response())
}
