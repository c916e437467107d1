//! `k2mc schema ddl`: the MaxCompute `CREATE TABLE` for what the chain emits, so that a table
//! for a registry subject (or any chain) is written from its schema rather than by hand.

use anyhow::Context;
use clap::Subcommand;
use k2mc::app;
use k2mc::pipeline::encode::type_text;

use super::RunArgs;

/// `k2mc schema …`.
#[derive(Debug, Subcommand)]
pub(crate) enum SchemaCommand {
    /// Print the CREATE TABLE statement for the chain's output columns and the partition keys
    /// of `maxcompute.partition` (with `[registry]`, the parser reads the subject's schema).
    Ddl {
        #[command(flatten)]
        run: RunArgs,
        /// Use this subject instead of the parser's `subject` setting.
        #[arg(long)]
        subject: Option<String>,
        /// The table name (default: `maxcompute.table`).
        #[arg(long)]
        table: Option<String>,
    },
}

/// Runs a `k2mc schema` command.
pub(crate) async fn run(command: SchemaCommand) -> anyhow::Result<()> {
    let SchemaCommand::Ddl {
        run,
        subject,
        table,
    } = command;
    let mut config = run.load_config()?;
    if let (Some(subject), Some(parser)) = (subject, config.transforms.first_mut()) {
        parser
            .settings
            .insert("subject".into(), toml::Value::String(subject));
    }
    let registry = match &config.registry {
        Some(_) => app::connections(&config).await?.registry,
        None => None,
    };
    let chain = app::load_chain(&config, registry.as_ref()).context("loading the transforms")?;
    let table = table.unwrap_or_else(|| config.maxcompute.table.clone());
    print!(
        "{}",
        ddl(
            &table,
            chain
                .output_columns()
                .iter()
                .map(|c| (c.name.as_str(), type_text(&c.ty), c.nullable)),
            &partition_keys(&config.maxcompute.partition),
        )
    );
    Ok(())
}

/// The keys of a partition template, `ds={event_time:%Y%m%d},hh=${hh24}` → `[ds, hh]`.
fn partition_keys(template: &str) -> Vec<String> {
    template
        .split(',')
        .filter_map(|part| part.split_once('=').map(|(k, _)| k.trim().to_owned()))
        .filter(|k| !k.is_empty())
        .collect()
}

/// `CREATE TABLE IF NOT EXISTS` with NOT NULL where the chain says a column is never NULL.
fn ddl<'a>(
    table: &str,
    columns: impl Iterator<Item = (&'a str, String, bool)>,
    partition_keys: &[String],
) -> String {
    let columns: Vec<String> = columns
        .map(|(name, ty, nullable)| {
            format!("  `{name}` {ty}{}", if nullable { "" } else { " NOT NULL" })
        })
        .collect();
    let mut out = format!(
        "CREATE TABLE IF NOT EXISTS `{table}` (\n{}\n)",
        columns.join(",\n")
    );
    if !partition_keys.is_empty() {
        let keys: Vec<String> = partition_keys
            .iter()
            .map(|k| format!("`{k}` STRING"))
            .collect();
        out.push_str(&format!("\nPARTITIONED BY ({})", keys.join(", ")));
    }
    out.push_str(";\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_names_columns_types_nullability_and_partitions() {
        let text = ddl(
            "orders",
            [
                ("id", "bigint".to_owned(), false),
                ("tags", "array<string>".to_owned(), true),
            ]
            .into_iter(),
            &partition_keys("ds={ts:%Y%m%d}, hh=${hh24}"),
        );
        assert_eq!(
            text,
            "CREATE TABLE IF NOT EXISTS `orders` (\n  `id` bigint NOT NULL,\n  `tags` array<string>\n)\nPARTITIONED BY (`ds` STRING, `hh` STRING);\n"
        );
        assert!(!ddl("t", std::iter::empty(), &partition_keys("")).contains("PARTITIONED"));
    }
}
