//! Schema evolution at cold start, between loading the chain and reading a record: output
//! columns the table lacks are an error (`strict`), not loaded (`ignore`), or added with
//! `ALTER TABLE … ADD COLUMNS` before any row that needs them is staged (`add-columns`);
//! `maxcompute.schema_evolution` decides (docs/transforms.md, "Schema evolution"). Adding is
//! idempotent, so functions starting at the same time add each column once.

use crate::config::{Config, SchemaEvolution};
use crate::error::PipelineError;
use crate::maxcompute::{MaxComputeClient, TableInfo};
use crate::pipeline::encode::{Layout, type_text};
use crate::transform::Chain;
use crate::transform::bindings::Column;

/// The chain's output columns that `table` lacks and the partition template does not read.
pub(crate) fn missing_columns<'c>(
    config: &Config,
    chain: &'c Chain,
    table: &TableInfo,
) -> Result<Vec<&'c Column>, PipelineError> {
    let routed = super::router(config, chain, table, chrono::Utc::now())?.columns();
    Ok(chain
        .output_columns()
        .iter()
        .filter(|c| {
            !table
                .schema
                .columns
                .iter()
                .any(|t| t.name.eq_ignore_ascii_case(&c.name))
                && !routed.iter().any(|r| r.eq_ignore_ascii_case(&c.name))
        })
        .collect())
}

/// The table as the function will load it, and the layout of the chain's rows in it: after
/// adding missing columns when the mode says so.
pub(crate) async fn prepare_table(
    config: &Config,
    chain: &Chain,
    mc: &MaxComputeClient,
) -> Result<(TableInfo, Layout), PipelineError> {
    let name = &config.maxcompute.table;
    let mut table = mc.get_table(name).await?;
    let missing = missing_columns(config, chain, &table)?;
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|c| c.name.as_str()).collect();
        match config.schema_evolution() {
            SchemaEvolution::Strict => {}
            SchemaEvolution::Ignore => tracing::warn!(
                table = %name,
                columns = %names.join(", "),
                "the transforms emit columns the table does not have; they are not loaded (maxcompute.schema_evolution = \"ignore\"; \"add-columns\" adds them)"
            ),
            SchemaEvolution::AddColumns => {
                let sql = add_columns_sql(name, &missing);
                let added = mc.run_sql(&sql, &[]).await;
                table = mc.get_table(name).await?;
                let still = missing_columns(config, chain, &table)?;
                match added {
                    Ok(_) => {}
                    // Another function may have added them first (a racing start).
                    Err(_) if still.is_empty() => {}
                    Err(e) => return Err(e.into()),
                }
                tracing::info!(table = %name, columns = %names.join(", "), "added columns for the transforms' new fields");
            }
        }
    }
    let layout = check_layout(config, chain, &table)?;
    Ok((table, layout))
}

/// What a start would do with the table, for `k2mc validate`: every column fits, columns are
/// ignored or would be added; or the mismatch.
pub fn describe_evolution(
    config: &Config,
    chain: &Chain,
    table: &TableInfo,
) -> Result<String, PipelineError> {
    let missing = missing_columns(config, chain, table)?;
    let names: Vec<&str> = missing.iter().map(|c| c.name.as_str()).collect();
    match config.schema_evolution() {
        SchemaEvolution::AddColumns if !missing.is_empty() => {
            // Check the rest as it will be once the columns exist.
            let mut grown = table.clone();
            for c in &missing {
                let ty = crate::maxcompute::ColumnType::parse(&type_text(&c.ty)).map_err(|e| {
                    PipelineError::SchemaMismatch {
                        table: table.name.clone(),
                        problems: format!("column {}: {e}", c.name),
                    }
                })?;
                grown
                    .schema
                    .columns
                    .push(crate::maxcompute::Column::new(&c.name, ty));
            }
            check_layout(config, chain, &grown)?;
            Ok(format!(
                "every column fits once the start adds {} (maxcompute.schema_evolution = \"add-columns\")",
                names.join(", ")
            ))
        }
        mode => {
            check_layout(config, chain, table)?;
            Ok(if missing.is_empty() || mode != SchemaEvolution::Ignore {
                "every column fits".to_owned()
            } else {
                format!(
                    "every column fits; {} not loaded (the table lacks them; maxcompute.schema_evolution = \"ignore\")",
                    names.join(", ")
                )
            })
        }
    }
}

/// Matches the chain's output against the table (columns it lacks are problems unless
/// `maxcompute.schema_evolution` is `ignore`); all problems in one error.
pub fn check_layout(
    config: &Config,
    chain: &Chain,
    table: &TableInfo,
) -> Result<Layout, PipelineError> {
    let router = super::router(config, chain, table, chrono::Utc::now())?;
    let ignore_extra = config.schema_evolution() == crate::config::SchemaEvolution::Ignore;
    Layout::new(
        chain.output_columns(),
        &table.schema,
        &router.columns(),
        ignore_extra,
    )
    .map_err(|problems| PipelineError::SchemaMismatch {
        table: table.name.clone(),
        problems: problems.join("; "),
    })
}

/// `ALTER TABLE t ADD COLUMNS IF NOT EXISTS (…)`: every added column is nullable (existing
/// rows read NULL in it).
fn add_columns_sql(table: &str, columns: &[&Column]) -> String {
    let cols: Vec<String> = columns
        .iter()
        .map(|c| format!("`{}` {}", c.name, type_text(&c.ty)))
        .collect();
    format!(
        "ALTER TABLE {table} ADD COLUMNS IF NOT EXISTS ({});",
        cols.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::bindings::ColumnType;

    #[test]
    fn added_columns_are_typed_and_quoted() {
        let c = Column {
            name: "coupon".into(),
            ty: ColumnType::Complex("array<string>".into()),
            nullable: false,
        };
        assert_eq!(
            add_columns_sql("orders", &[&c]),
            "ALTER TABLE orders ADD COLUMNS IF NOT EXISTS (`coupon` array<string>);"
        );
    }
}
