//! The REST API under `/api` (`docs/maxcompute-protocol.md` §3 and §6): SQL instances (run synchronously at submit),
//! table and partition metadata, Tunnel discovery, and the calls pyodps makes on the way
//! (`logview/host`, `tenants`, `logs`).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use k2mc::maxcompute::PartitionSpec;
use quick_xml::escape::escape;
use serde::Deserialize;

use crate::error::ApiError;
use crate::store::{TableMeta, now_ms};
use crate::{AppState, exec, lock, path_segments, query_params};

/// A finished SQL instance.
#[derive(Debug, Clone)]
pub struct Instance {
    pub task_name: String,
    pub source: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// The result text, or the `ODPS-…` failure text.
    pub outcome: Result<String, String>,
}

#[derive(Deserialize)]
struct InstanceBody {
    #[serde(rename = "Job")]
    job: JobBody,
}

#[derive(Deserialize)]
struct JobBody {
    #[serde(rename = "Tasks")]
    tasks: TasksBody,
}

#[derive(Deserialize)]
struct TasksBody {
    #[serde(rename = "SQL")]
    sql: Option<SqlBody>,
}

#[derive(Deserialize)]
struct SqlBody {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Config", default)]
    config: ConfigBody,
    #[serde(rename = "Query")]
    query: String,
}

#[derive(Deserialize, Default)]
struct ConfigBody {
    #[serde(rename = "Property", default)]
    property: Vec<PropertyBody>,
}

#[derive(Deserialize)]
struct PropertyBody {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Value", default)]
    value: String,
}

pub async fn handle(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    _headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = query_params(uri);
    let path = uri.path().trim_start_matches("/api").trim_matches('/');
    let parts = path_segments(path);
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    match (method, parts.as_slice()) {
        (&Method::GET, ["logview", "host"]) => Ok("http://127.0.0.1/logview".into_response()),
        (&Method::PUT, ["projects", _, "logs"]) => Ok(StatusCode::OK.into_response()),
        (&Method::GET, ["projects", p]) => Ok(xml(format!(
            "<Project><Name>{}</Name><Owner>ALIYUN$emulator</Owner><State>AVAILABLE</State><Comment/><Properties/></Project>",
            escape(*p)
        ))),
        (&Method::GET, ["projects", _, "tunnel"]) if params.contains_key("service") => {
            Ok(state.addr.to_string().into_response())
        }
        (&Method::POST, ["projects", p, "instances"]) => submit(state, p, &body).await,
        (&Method::GET, ["projects", p, "instances", id]) => instance(state, p, id, &params),
        (&Method::GET, ["projects", p, "tables", t]) => table(state, p, t, &params),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NoSuchObject",
            format!("the emulator does not serve {method} /api/{path}"),
        )),
    }
}

fn xml(body: String) -> Response {
    (
        [("Content-Type", "application/xml")],
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}"),
    )
        .into_response()
}

async fn submit(state: &AppState, project: &str, body: &[u8]) -> Result<Response, ApiError> {
    let text = String::from_utf8_lossy(body).into_owned();
    let parsed: InstanceBody = quick_xml::de::from_str(&text)
        .map_err(|e| ApiError::invalid(format!("bad instance XML: {e}")))?;
    let task = parsed
        .job
        .tasks
        .sql
        .ok_or_else(|| ApiError::invalid("the emulator runs SQL tasks only"))?;
    let mut settings = HashMap::new();
    for prop in &task.config.property {
        if prop.name != "settings" {
            continue;
        }
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&prop.value) {
            for (k, v) in map {
                settings.insert(k, v.as_str().map_or_else(|| v.to_string(), str::to_owned));
            }
        }
    }
    let start_ms = now_ms();
    let outcome = {
        let _guard = state.meta_lock.lock().await;
        exec::execute(&state.store, project, &task.query, &settings)
    };
    if let Err(text) = &outcome {
        tracing::info!(query = %task.query, error = %text, "SQL failed.");
    }
    let id = format!(
        "{}{:08x}",
        chrono::Utc::now().format("%Y%m%d%H%M%S%3f"),
        rand::random::<u32>()
    );
    let instance = Instance {
        task_name: task.name,
        source: text,
        start_ms,
        end_ms: now_ms(),
        outcome,
    };
    lock(&state.instances).insert(id.clone(), instance);
    let location = format!(
        "http://{}/api/projects/{project}/instances/{id}",
        state.addr
    );
    Ok((StatusCode::CREATED, [("Location", location)], "").into_response())
}

fn rfc1123(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    httpdate::fmt_http_date(t)
}

fn instance(
    state: &AppState,
    project: &str,
    id: &str,
    params: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let inst = lock(&state.instances).get(id).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NoSuchObject",
            format!("instance {project}/{id} does not exist"),
        )
    })?;
    let name = escape(&inst.task_name).into_owned();
    let (task_status, text) = match &inst.outcome {
        Ok(t) => ("Success", t.as_str()),
        Err(t) => ("Failed", t.as_str()),
    };
    let body = if params.contains_key("taskstatus") {
        format!(
            "<Instance><Status>Terminated</Status><Tasks><Task Type=\"SQL\"><Name>{name}</Name><StartTime>{}</StartTime><EndTime>{}</EndTime><Status>{task_status}</Status></Task></Tasks></Instance>",
            rfc1123(inst.start_ms),
            rfc1123(inst.end_ms)
        )
    } else if params.contains_key("result") {
        format!(
            "<Instance><Tasks><Task Type=\"SQL\"><Name>{name}</Name><Result Transform=\"\" Format=\"csv\"><![CDATA[{}]]></Result></Task></Tasks></Instance>",
            text.replace("]]>", "]]]]><![CDATA[>")
        )
    } else if params.contains_key("source") {
        // `?source` answers the submitted `<Job>` element.
        let job = match (inst.source.find("<Job>"), inst.source.rfind("</Job>")) {
            (Some(a), Some(b)) => &inst.source[a..b + "</Job>".len()],
            _ => inst.source.as_str(),
        };
        return Ok(xml(job.to_owned()));
    } else {
        "<Instance><Status>Terminated</Status></Instance>".to_owned()
    };
    let mut resp = xml(body);
    for (k, v) in [
        ("x-odps-owner", "ALIYUN$emulator".to_owned()),
        ("x-odps-start-time", rfc1123(inst.start_ms)),
        ("x-odps-end-time", rfc1123(inst.end_ms)),
    ] {
        if let Ok(v) = v.parse() {
            resp.headers_mut().insert(k, v);
        }
    }
    Ok(resp)
}

fn table(
    state: &AppState,
    project: &str,
    table: &str,
    params: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let meta = state.store.require_table(project, table)?;
    if params.contains_key("partitions") {
        return Ok(list_partitions(&meta));
    }
    if let Some(spec) = params.get("partition") {
        return partition(state, &meta, spec);
    }
    Ok(xml(table_xml(project, &meta)))
}

fn partition(state: &AppState, meta: &TableMeta, spec: &str) -> Result<Response, ApiError> {
    let missing = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NoSuchObject",
            format!("partition {spec} of table {} does not exist", meta.name),
        )
    };
    let spec = PartitionSpec::parse(spec).map_err(|e| ApiError::invalid(e.to_string()))?;
    let spec = state
        .store
        .check_partition(meta, &spec)
        .map_err(|_| missing())?;
    if !meta.partitions.contains(&spec.tunnel_form()) {
        return Err(missing());
    }
    let secs = meta.last_modified_ms / 1000;
    let json = serde_json::json!({"createTime": secs, "lastDDLTime": secs, "lastModifiedTime": secs, "partitionSize": 0});
    Ok(xml(format!(
        "<Partition><Schema format=\"json\"><![CDATA[{json}]]></Schema></Partition>"
    )))
}

/// `?partitions`: every partition in one page (an empty `Marker` ends the listing).
fn list_partitions(meta: &TableMeta) -> Response {
    let mut body = String::from("<Partitions><Marker></Marker><MaxItems>10000</MaxItems>");
    for form in &meta.partitions {
        let Ok(spec) = PartitionSpec::parse(form) else {
            continue;
        };
        body.push_str("<Partition>");
        for (k, v) in spec.pairs() {
            body.push_str(&format!(
                "<Column Name=\"{}\" Value=\"{}\"/>",
                escape(k),
                escape(v)
            ));
        }
        body.push_str("</Partition>");
    }
    body.push_str("</Partitions>");
    xml(body)
}

/// The `<Table>` document with its JSON schema, as pyodps reads it.
fn table_xml(project: &str, meta: &TableMeta) -> String {
    let column = |c: &k2mc::maxcompute::Column| serde_json::json!({"name": c.name, "type": c.ty.to_string(), "comment": c.comment, "isNullable": c.nullable, "label": ""});
    let secs = meta.created_ms / 1000;
    let schema = serde_json::json!({
        "tableName": meta.name,
        "owner": "ALIYUN$emulator",
        "projectName": project,
        "comment": meta.comment,
        "createTime": secs,
        "lastDDLTime": meta.last_modified_ms / 1000,
        "lastModifiedTime": meta.last_modified_ms / 1000,
        "lifecycle": meta.lifecycle.unwrap_or(-1),
        "isVirtualView": false,
        "isExternal": false,
        "size": 0,
        "columns": meta.schema.columns.iter().map(column).collect::<Vec<_>>(),
        "partitionKeys": meta.schema.partition_keys.iter().map(column).collect::<Vec<_>>(),
        "Reserved": "{}",
    });
    format!(
        "<Table><Name>{}</Name><TableId>{}</TableId><Schema format=\"json\"><![CDATA[{schema}]]></Schema><Owner>ALIYUN$emulator</Owner><CreationTime>{}</CreationTime><LastModifiedTime>{}</LastModifiedTime><Type>MANAGED_TABLE</Type></Table>",
        escape(&meta.name),
        meta.created_ms,
        rfc1123(meta.created_ms),
        rfc1123(meta.last_modified_ms)
    )
}
