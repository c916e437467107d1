//! SQL instances and table metadata over the REST API (`docs/maxcompute-protocol.md` §3): submit an SQLTask, poll it,
//! read its CSV result or its `ODPS-xxxxxxx` error; read a table's schema; check and create
//! partitions. The load stage uses these to validate the destination and add partitions before a
//! Tunnel session opens.

use std::time::Duration;

use quick_xml::escape::escape;
use reqwest::Method;
use serde::Deserialize;

use super::client::MaxComputeClient;
use super::error::MaxComputeError;
use super::http::Payload;
use super::partition::PartitionSpec;
use k2mc_formats::tunnel::TableSchema;

/// The longest wait between two instance polls.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// A finished SQL instance and its result text (CSV with a header line for queries).
#[derive(Debug, Clone)]
pub struct SqlResult {
    pub instance: String,
    pub text: String,
}

impl SqlResult {
    /// The result parsed as CSV: the header and the data rows.
    pub fn rows(&self) -> Result<(Vec<String>, Vec<Vec<String>>), MaxComputeError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(self.text.as_bytes());
        let bad = |e: csv::Error| MaxComputeError::Protocol {
            operation: format!("read result of instance {}", self.instance),
            reason: e.to_string(),
        };
        let header = reader
            .headers()
            .map_err(bad)?
            .iter()
            .map(str::to_owned)
            .collect();
        let mut rows = Vec::new();
        for record in reader.records() {
            rows.push(record.map_err(bad)?.iter().map(str::to_owned).collect());
        }
        Ok((header, rows))
    }
}

/// A table's metadata.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub name: String,
    pub schema: TableSchema,
}

#[derive(Deserialize)]
struct InstanceXml {
    #[serde(rename = "Status", default)]
    status: String,
    #[serde(rename = "Tasks", default)]
    tasks: TasksXml,
}

#[derive(Deserialize, Default)]
struct TasksXml {
    #[serde(rename = "Task", default)]
    task: Vec<TaskXml>,
}

#[derive(Deserialize)]
struct TaskXml {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Status", default)]
    status: String,
    #[serde(rename = "Result", default)]
    result: Option<ResultXml>,
}

#[derive(Deserialize)]
struct ResultXml {
    #[serde(rename = "@Transform", default)]
    transform: String,
    #[serde(rename = "$text", default)]
    text: String,
}

#[derive(Deserialize)]
struct TableXml {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Schema")]
    schema: SchemaXml,
}

#[derive(Deserialize)]
struct SchemaXml {
    #[serde(rename = "$text", default)]
    json: String,
}

impl MaxComputeClient {
    /// Runs one SQL statement to completion. `hints` become the task's `settings`
    /// (the equivalent of `set k=v;`).
    pub async fn run_sql(
        &self,
        sql: &str,
        hints: &[(&str, &str)],
    ) -> Result<SqlResult, MaxComputeError> {
        let instance = self.submit_sql(sql, hints).await?;
        self.wait_for_instance(&instance).await
    }

    /// Submits an SQLTask and returns the instance id.
    pub async fn submit_sql(
        &self,
        sql: &str,
        hints: &[(&str, &str)],
    ) -> Result<String, MaxComputeError> {
        let mut query = sql.trim().to_owned();
        if !query.ends_with(';') {
            query.push(';');
        }
        let settings: serde_json::Map<String, serde_json::Value> = hints
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String((*v).to_owned())))
            .collect();
        let settings = serde_json::Value::Object(settings).to_string();
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Instance><Job><Priority>9</Priority><Tasks><SQL>\
             <Name>AnonymousSQLTask</Name><Config><Property><Name>settings</Name><Value>{}</Value></Property></Config>\
             <Query>{}</Query></SQL></Tasks><DAG><RunMode>Sequence</RunMode></DAG></Job></Instance>",
            escape(&settings),
            cdata(&query)
        );
        let mut call = self.rest_call(
            "submit SQL",
            Method::POST,
            format!("/projects/{}/instances", self.project()),
        );
        call.payload = Payload::Fixed {
            data: body.into(),
            content_type: "application/xml",
        };
        let resp = self.transport.execute(&call).await?;
        resp.header("Location")
            .and_then(|l| l.trim_end_matches('/').rsplit('/').next())
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| MaxComputeError::Protocol {
                operation: call.operation,
                reason: "no Location header naming the instance".into(),
            })
    }

    /// Polls an instance until it terminates and returns its result, or its ODPS error.
    pub async fn wait_for_instance(&self, instance: &str) -> Result<SqlResult, MaxComputeError> {
        let path = format!("/projects/{}/instances/{instance}", self.project());
        let mut delay = Duration::from_millis(50);
        loop {
            let call = self.rest_call("poll SQL instance", Method::GET, path.clone());
            let status: InstanceXml = self.get_xml(&call).await?;
            if status.status == "Terminated" {
                break;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_POLL_INTERVAL);
        }
        let mut call = self.rest_call("read SQL task status", Method::GET, path.clone());
        call.params.push(("taskstatus".into(), String::new()));
        let tasks: InstanceXml = self.get_xml(&call).await?;
        let mut call = self.rest_call("read SQL result", Method::GET, path);
        call.params.push(("result".into(), String::new()));
        let results: InstanceXml = self.get_xml(&call).await?;
        let text = results
            .tasks
            .task
            .into_iter()
            .next()
            .and_then(|t| t.result)
            .map(decode_result)
            .transpose()?
            .unwrap_or_default();
        let failed = tasks
            .tasks
            .task
            .iter()
            .find(|t| t.status != "Success")
            .map(|t| (t.name.clone(), t.status.clone()));
        if let Some((task, status)) = failed {
            let (code, message) = split_odps_error(&text);
            return Err(MaxComputeError::Sql {
                operation: format!("SQL task {task} ended {status}"),
                instance: instance.to_owned(),
                code,
                message,
            });
        }
        Ok(SqlResult {
            instance: instance.to_owned(),
            text,
        })
    }

    /// A table's schema; fails with code `NoSuchObject` when it does not exist.
    pub async fn get_table(&self, table: &str) -> Result<TableInfo, MaxComputeError> {
        let call = self.rest_call("read table metadata", Method::GET, self.table_path(table));
        let xml: TableXml = self.get_xml(&call).await?;
        let schema =
            serde_json::from_str(&xml.schema.json).map_err(|e| MaxComputeError::Protocol {
                operation: call.operation,
                reason: format!("table schema JSON: {e}"),
            })?;
        Ok(TableInfo {
            name: xml.name,
            schema,
        })
    }

    /// Whether a partition exists (`GET …/tables/t?partition=ds='…'`; 404 means no).
    pub async fn partition_exists(
        &self,
        table: &str,
        spec: &PartitionSpec,
    ) -> Result<bool, MaxComputeError> {
        let mut call = self.rest_call("check partition", Method::GET, self.table_path(table));
        call.params.push(("partition".into(), spec.quoted_form()));
        match self.transport.execute(&call).await {
            Ok(_) => Ok(true),
            Err(MaxComputeError::Service { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `ALTER TABLE … ADD IF NOT EXISTS PARTITION (…)`, the only way either SDK creates one.
    pub async fn create_partition_if_not_exists(
        &self,
        table: &str,
        spec: &PartitionSpec,
    ) -> Result<(), MaxComputeError> {
        let sql = format!(
            "ALTER TABLE {}.`{table}` ADD IF NOT EXISTS PARTITION ({})",
            self.project(),
            spec.quoted_form()
        );
        self.run_sql(&sql, &[]).await.map(|_| ())
    }

    async fn get_xml<T: serde::de::DeserializeOwned>(
        &self,
        call: &super::http::Call,
    ) -> Result<T, MaxComputeError> {
        let resp = self.transport.execute(call).await?;
        let text = String::from_utf8_lossy(&resp.body);
        quick_xml::de::from_str(&text).map_err(|e| MaxComputeError::Protocol {
            operation: call.operation.clone(),
            reason: format!("bad XML: {e}"),
        })
    }
}

fn decode_result(result: ResultXml) -> Result<String, MaxComputeError> {
    if result.transform.eq_ignore_ascii_case("base64") {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(result.text.trim())
            .map_err(|e| MaxComputeError::Protocol {
                operation: "read SQL result".into(),
                reason: format!("bad base64 result: {e}"),
            })?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    } else {
        Ok(result.text)
    }
}

/// Splits `ODPS-0130161:[1,1] Parse exception …` into the code and the rest.
pub fn split_odps_error(text: &str) -> (String, String) {
    let text = text.trim();
    match text.split_once(':') {
        Some((code, rest)) if code.starts_with("ODPS-") => {
            (code.to_owned(), rest.trim().to_owned())
        }
        _ => ("SQLFailed".to_owned(), text.to_owned()),
    }
}

/// Wraps text in CDATA, splitting any `]]>` it contains.
fn cdata(text: &str) -> String {
    format!("<![CDATA[{}]]>", text.replace("]]>", "]]]]><![CDATA[>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_odps_codes() {
        assert_eq!(
            split_odps_error("ODPS-0130161:[1,1] Parse exception - invalid token"),
            (
                "ODPS-0130161".into(),
                "[1,1] Parse exception - invalid token".into()
            )
        );
        assert_eq!(split_odps_error("boom").0, "SQLFailed");
    }

    #[test]
    fn parses_task_results() {
        let xml = r#"<Instance><Tasks><Task Type="SQL"><Name>AnonymousSQLTask</Name><Result Transform="" Format="csv"><![CDATA["_c0"
3
]]></Result></Task></Tasks></Instance>"#;
        let parsed: InstanceXml = quick_xml::de::from_str(xml).unwrap();
        let text = decode_result(
            parsed
                .tasks
                .task
                .into_iter()
                .next()
                .unwrap()
                .result
                .unwrap(),
        )
        .unwrap();
        let result = SqlResult {
            instance: "i".into(),
            text,
        };
        let (header, rows) = result.rows().unwrap();
        assert_eq!(header, vec!["_c0"]);
        assert_eq!(rows, vec![vec!["3"]]);
    }
}
