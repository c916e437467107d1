//! `k2mc maxcompute sql | describe | upload | read`: a MaxCompute project (or the local
//! emulator) through the same client the load stage uses.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use k2mc::maxcompute::{
    ClientConfig, ColumnType, Compression, Credentials, MaxComputeClient, PartitionSpec, Secret,
    UploadSession, Value, display_json, encode_block, value_from_json,
};

/// `k2mc maxcompute`: where the project is and how to sign in.
#[derive(Debug, clap::Args)]
pub(crate) struct McArgs {
    /// REST endpoint including /api, e.g. https://service.cn-hangzhou.maxcompute.aliyun.com/api
    #[arg(long, env = "MAXCOMPUTE_ENDPOINT")]
    endpoint: url::Url,
    /// MaxCompute project.
    #[arg(long, env = "MAXCOMPUTE_PROJECT")]
    project: String,
    /// AccessKey id.
    #[arg(long, env = "MAXCOMPUTE_ACCESS_ID")]
    access_id: String,
    /// AccessKey secret; prefer the environment variable so it stays out of shell history.
    #[arg(long, env = "MAXCOMPUTE_ACCESS_KEY", hide_env_values = true)]
    access_key: String,
    /// STS security token for temporary credentials.
    #[arg(long, env = "MAXCOMPUTE_STS_TOKEN", hide_env_values = true)]
    sts_token: Option<String>,
    /// Fixed Tunnel endpoint (otherwise discovered from the project).
    #[arg(long, env = "MAXCOMPUTE_TUNNEL_ENDPOINT")]
    tunnel_endpoint: Option<url::Url>,
    #[command(subcommand)]
    command: McCommand,
}

/// What to do in the project.
#[derive(Debug, Subcommand)]
enum McCommand {
    /// Run one SQL statement and print its result.
    Sql {
        statement: String,
        /// SQL settings as key=value (like `set key=value;`).
        #[arg(long = "hint", value_parser = parse_hint)]
        hints: Vec<(String, String)>,
    },
    /// Print a table's columns and partition keys.
    Describe { table: String },
    /// Upload JSON lines (one object per row, keyed by column name) in one Tunnel session.
    Upload {
        table: String,
        /// Partition spec, e.g. ds=20240101,hr=00.
        #[arg(long)]
        partition: Option<String>,
        /// Create the partition first if it does not exist.
        #[arg(long)]
        create_partition: bool,
        /// JSON lines file; `-` reads standard input.
        #[arg(long)]
        jsonl: PathBuf,
        /// Rows per Tunnel block.
        #[arg(long, default_value_t = 10_000)]
        block_rows: usize,
    },
    /// Print rows as JSON lines, read through a Tunnel download session.
    Read {
        table: String,
        #[arg(long)]
        partition: Option<String>,
        /// Most rows to print.
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
}

fn parse_hint(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("hint '{text}' must be key=value"))
}

/// Runs `k2mc maxcompute …`.
pub(crate) async fn run(args: McArgs) -> anyhow::Result<()> {
    let mut credentials = Credentials::new(args.access_id, args.access_key);
    credentials.sts_token = args.sts_token.map(Secret::new);
    let mut config = ClientConfig::new(args.endpoint, args.project, credentials);
    config.tunnel_endpoint = args.tunnel_endpoint;
    let client = MaxComputeClient::new(config)?;
    match args.command {
        McCommand::Sql { statement, hints } => {
            let hints: Vec<(&str, &str)> = hints
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let result = client.run_sql(&statement, &hints).await?;
            print!("{}", result.text);
        }
        McCommand::Describe { table } => {
            let info = client.get_table(&table).await?;
            println!("{}", serde_json::to_string_pretty(&info.schema)?);
        }
        McCommand::Upload {
            table,
            partition,
            create_partition,
            jsonl,
            block_rows,
        } => {
            upload(
                &client,
                &table,
                partition.as_deref(),
                create_partition,
                &jsonl,
                block_rows,
            )
            .await?;
        }
        McCommand::Read {
            table,
            partition,
            limit,
        } => {
            let spec = partition.as_deref().map(PartitionSpec::parse).transpose()?;
            let session = client
                .create_download_session(&table, spec.as_ref())
                .await?;
            let count = session.record_count.min(limit);
            let rows = client.download_rows(&session, 0, count).await?;
            for row in rows {
                let object: serde_json::Map<String, serde_json::Value> = session
                    .schema
                    .columns
                    .iter()
                    .zip(&row)
                    .map(|(c, v)| (c.name.clone(), display_json(&c.ty, v)))
                    .collect();
                println!("{}", serde_json::Value::Object(object));
            }
            eprintln!("{count} of {} rows", session.record_count);
        }
    }
    Ok(())
}

async fn upload(
    client: &MaxComputeClient,
    table: &str,
    partition: Option<&str>,
    create_partition: bool,
    jsonl: &std::path::Path,
    block_rows: usize,
) -> anyhow::Result<()> {
    let spec = partition.map(PartitionSpec::parse).transpose()?;
    if let (Some(spec), true) = (&spec, create_partition) {
        client.create_partition_if_not_exists(table, spec).await?;
    }
    let reader: Box<dyn BufRead> = if jsonl.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(jsonl).with_context(|| format!("opening {}", jsonl.display()))?,
        ))
    };
    let session = client
        .create_upload_session(table, spec.as_ref(), false)
        .await?;
    let columns = session.schema.columns.clone();
    let types = session.schema.column_types();
    let (mut rows, mut blocks, mut total) = (Vec::new(), Vec::new(), 0usize);
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let object: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{} line {}: not JSON", jsonl.display(), n + 1))?;
        let Some(object) = object.as_object() else {
            bail!(
                "{} line {}: expected a JSON object keyed by column name",
                jsonl.display(),
                n + 1
            );
        };
        if let Some(unknown) = object
            .keys()
            .find(|k| !columns.iter().any(|c| c.name.eq_ignore_ascii_case(k)))
        {
            bail!(
                "{} line {}: table {table} has no column '{unknown}'",
                jsonl.display(),
                n + 1
            );
        }
        let row = columns
            .iter()
            .map(|c| {
                let cell = object
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(&c.name))
                    .map(|(_, v)| v);
                value_from_json(&c.ty, cell.unwrap_or(&serde_json::Value::Null)).map_err(|e| {
                    anyhow::anyhow!("{} line {} column {}: {e}", jsonl.display(), n + 1, c.name)
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        rows.push(row);
        if rows.len() >= block_rows.max(1) {
            total += flush_block(client, &session, &types, &mut rows, &mut blocks).await?;
        }
    }
    if !rows.is_empty() || blocks.is_empty() {
        total += flush_block(client, &session, &types, &mut rows, &mut blocks).await?;
    }
    client.commit_upload(&session, &blocks).await?;
    eprintln!(
        "uploaded {total} rows in {} blocks to {table}{}",
        blocks.len(),
        partition.map(|p| format!(" ({p})")).unwrap_or_default()
    );
    Ok(())
}

/// Uploads `rows` as the next block of `session` and empties it; returns the rows sent.
async fn flush_block(
    client: &MaxComputeClient,
    session: &UploadSession,
    types: &[ColumnType],
    rows: &mut Vec<Vec<Value>>,
    blocks: &mut Vec<u32>,
) -> anyhow::Result<usize> {
    let id = blocks.len() as u32;
    let block = encode_block(types, rows, Compression::Deflate)?;
    client.upload_block(session, id, &block).await?;
    blocks.push(id);
    let sent = rows.len();
    rows.clear();
    Ok(sent)
}
