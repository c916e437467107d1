//! Runs parsed SQL against the store and renders the task result the way MaxCompute does: CSV
//! with a header for queries, plain lines for `SHOW PARTITIONS`, `ODPS-xxxxxxx:[l,c] …` text on
//! failure.

use std::collections::HashMap;

use k2mc::maxcompute::{PartitionSpec, RecordReader, TableSchema, Value};

use crate::error::ApiError;
use crate::sql::{self, Projection, Statement, TableName};
use crate::store::{Store, TableMeta, now_ms};

const SEMANTIC_ERROR: &str = "ODPS-0130071";
const NO_SUCH_TABLE: &str = "ODPS-0130131";

/// Runs one statement in `project` with the task's `settings`; `Err` is the failure text.
pub fn execute(
    store: &Store,
    project: &str,
    query: &str,
    settings: &HashMap<String, String>,
) -> Result<String, String> {
    let stmt = sql::parse(query).map_err(|e| e.to_result_text())?;
    run(store, project, stmt, settings).map_err(|e| match e {
        Failure::Sql(text) => text,
        Failure::Api(api) => format!("ODPS-0010000:System internal error - {}", api.message),
    })
}

enum Failure {
    Sql(String),
    Api(ApiError),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

fn semantic(message: String) -> Failure {
    Failure::Sql(format!(
        "{SEMANTIC_ERROR}:[1,1] Semantic analysis exception - {message}"
    ))
}

fn resolve<'a>(project: &'a str, name: &'a TableName) -> (&'a str, &'a str) {
    (
        name.project.as_deref().unwrap_or(project),
        name.table.as_str(),
    )
}

fn require(store: &Store, project: &str, table: &str) -> Result<TableMeta, Failure> {
    store.table(project, table)?.ok_or_else(|| {
        Failure::Sql(format!(
            "{NO_SUCH_TABLE}:[1,1] Table not found - table {project}.{table} cannot be resolved"
        ))
    })
}

fn run(
    store: &Store,
    project: &str,
    stmt: Statement,
    settings: &HashMap<String, String>,
) -> Result<String, Failure> {
    match stmt {
        Statement::CreateTable {
            name,
            if_not_exists,
            columns,
            partition_keys,
            comment,
            lifecycle,
        } => {
            let (p, t) = resolve(project, &name);
            if store.table(p, t)?.is_some() {
                return if if_not_exists {
                    Ok(String::new())
                } else {
                    Err(semantic(format!("Table or view already exists - {p}.{t}")))
                };
            }
            let now = now_ms();
            let meta = TableMeta {
                name: t.to_owned(),
                schema: TableSchema {
                    columns,
                    partition_keys,
                },
                comment,
                lifecycle,
                created_ms: now,
                last_modified_ms: now,
                partitions: Vec::new(),
            };
            store.put_table(p, &meta)?;
            Ok(String::new())
        }
        Statement::DropTable { name, if_exists } => {
            let (p, t) = resolve(project, &name);
            if store.table(p, t)?.is_none() {
                return if if_exists {
                    Ok(String::new())
                } else {
                    Err(require(store, p, t)
                        .err()
                        .unwrap_or_else(|| semantic(String::new())))
                };
            }
            store.drop_table(p, t)?;
            Ok(String::new())
        }
        Statement::AddPartitions {
            name,
            if_not_exists,
            partitions,
        } => {
            let (p, t) = resolve(project, &name);
            let mut meta = require(store, p, t)?;
            if meta.schema.partition_keys.is_empty() {
                return Err(semantic(format!("table {p}.{t} is not partitioned")));
            }
            for spec in partitions {
                let spec = store.check_partition(&meta, &spec).map_err(semantic)?;
                let form = spec.tunnel_form();
                if meta.partitions.contains(&form) {
                    if !if_not_exists {
                        return Err(semantic(format!(
                            "Partition already exists - {}",
                            spec.quoted_form()
                        )));
                    }
                } else {
                    meta.partitions.push(form);
                }
            }
            meta.last_modified_ms = now_ms();
            store.put_table(p, &meta)?;
            Ok(String::new())
        }
        Statement::AddColumns {
            name,
            if_not_exists,
            columns,
        } => {
            let (p, t) = resolve(project, &name);
            let mut meta = require(store, p, t)?;
            for mut column in columns {
                let taken = meta
                    .schema
                    .columns
                    .iter()
                    .chain(&meta.schema.partition_keys)
                    .any(|c| c.name.eq_ignore_ascii_case(&column.name));
                if taken {
                    if if_not_exists {
                        continue;
                    }
                    return Err(semantic(format!(
                        "Column {} already exists in {p}.{t}",
                        column.name
                    )));
                }
                // MaxCompute adds columns as nullable: existing rows read NULL in them.
                column.nullable = true;
                meta.schema.columns.push(column);
            }
            meta.last_modified_ms = now_ms();
            store.put_table(p, &meta)?;
            Ok(String::new())
        }
        Statement::ShowPartitions { name } => {
            let (p, t) = resolve(project, &name);
            let meta = require(store, p, t)?;
            let mut out = String::new();
            for form in &meta.partitions {
                if let Ok(spec) = PartitionSpec::parse(form) {
                    out.push_str(&spec.path_form());
                    out.push('\n');
                }
            }
            Ok(out)
        }
        Statement::Select {
            name,
            projection,
            filter,
            limit,
        } => {
            let (p, t) = resolve(project, &name);
            let meta = require(store, p, t)?;
            select(store, p, &meta, &projection, &filter, limit, settings)
        }
    }
}

fn select(
    store: &Store,
    project: &str,
    meta: &TableMeta,
    projection: &Projection,
    filter: &[(String, String)],
    limit: Option<u64>,
    settings: &HashMap<String, String>,
) -> Result<String, Failure> {
    let keys = &meta.schema.partition_keys;
    for (col, _) in filter {
        if !keys.iter().any(|k| k.name.eq_ignore_ascii_case(col)) {
            return Err(semantic(format!(
                "the emulator filters on partition columns only, and {col} is not one"
            )));
        }
    }
    let full_scan_allowed = settings
        .get("odps.sql.allow.fullscan")
        .is_some_and(|v| v == "true");
    if !keys.is_empty()
        && filter.is_empty()
        && !full_scan_allowed
        && !matches!(projection, Projection::CountStar)
    {
        return Err(semantic(format!(
            "{project}.{}: full scan with all partitions, please specify partition predicates.",
            meta.name
        )));
    }
    let keep = |spec: Option<&PartitionSpec>| {
        filter
            .iter()
            .all(|(col, want)| spec.and_then(|s| s.get(col)) == Some(want.as_str()))
    };
    let sets = store.data_sets(project, meta, &keep)?;
    if let Projection::CountStar = projection {
        let total: u64 = sets.iter().map(|s| s.rows).sum();
        return Ok(format!("\"_c0\"\n{total}\n"));
    }
    let names: Vec<String> = match projection {
        Projection::Columns(cols) => cols.clone(),
        _ => meta
            .schema
            .columns
            .iter()
            .chain(keys)
            .map(|c| c.name.clone())
            .collect(),
    };
    let mut picks = Vec::new();
    for name in &names {
        if let Some(i) = meta.schema.column_index(name) {
            picks.push(Pick::Data(i));
        } else if keys.iter().any(|k| k.name.eq_ignore_ascii_case(name)) {
            picks.push(Pick::Partition(name.clone()));
        } else {
            return Err(semantic(format!("column {name} cannot be resolved")));
        }
    }
    let types = meta.schema.column_types();
    let mut out = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Always)
        .from_writer(Vec::new());
    let csv_err = |e: csv::Error| Failure::Api(ApiError::internal(e.to_string()));
    out.write_record(&names).map_err(csv_err)?;
    let mut emitted = 0u64;
    'sets: for set in &sets {
        for file in Store::data_files(set) {
            let bytes = std::fs::read(&file).map_err(ApiError::io)?;
            let rows = RecordReader::new(&types, &bytes)
                .read_all()
                .map_err(|e| ApiError::internal(e.to_string()))?;
            for row in rows {
                if limit.is_some_and(|l| emitted >= l) {
                    break 'sets;
                }
                let cells = picks.iter().map(|pick| match pick {
                    Pick::Data(i) => render(&row[*i]),
                    Pick::Partition(k) => set
                        .partition
                        .as_ref()
                        .and_then(|s| s.get(k))
                        .unwrap_or_default()
                        .to_owned(),
                });
                out.write_record(cells).map_err(csv_err)?;
                emitted += 1;
            }
        }
    }
    let bytes = out
        .into_inner()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

enum Pick {
    Data(usize),
    Partition(String),
}

/// Renders a cell for CSV output: scalars as text, NULL as `\N`, the rest as canonical JSON.
fn render(value: &Value) -> String {
    match value {
        Value::Null => "\\N".to_owned(),
        Value::String(s) | Value::Decimal(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Double(d) => d.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Datetime(ms) => chrono::DateTime::from_timestamp_millis(*ms).map_or_else(
            || ms.to_string(),
            |d| d.format("%Y-%m-%d %H:%M:%S").to_string(),
        ),
        other => other.to_canonical_json().to_string(),
    }
}
