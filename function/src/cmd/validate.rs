//! `k2mc validate`: every check runs (config, transforms, secrets, bucket, table, chain against
//! table, topics) and every problem is printed with its fix.

use anyhow::bail;
use k2mc::app;
use k2mc::kafka::Kafka;
use k2mc::pipeline::encode::type_text;

use super::RunArgs;

/// `k2mc validate`: every check runs; all problems are printed.
pub(crate) async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut problems = 0;
    let mut check = |name: &str, result: Result<String, String>| match result {
        Ok(detail) => println!("ok    {name}: {detail}"),
        Err(why) => {
            problems += 1;
            println!("FAIL  {name}: {why}");
        }
    };
    let config = match args.load_config() {
        Ok(c) => {
            check("config", Ok(args.config.display().to_string()));
            c
        }
        Err(e) => {
            check("config", Err(format!("{e:#}")));
            bail!("the config does not load; fix it first");
        }
    };
    let conns = app::connections(&config).await;
    let conns = match conns {
        Ok(c) => {
            check("secrets", Ok("resolved".into()));
            Some(c)
        }
        Err(e) => {
            check("secrets", Err(e.to_string()));
            None
        }
    };
    let chain = app::load_chain(&config, conns.as_ref().and_then(|c| c.registry.as_ref()))
        .map_err(|e| e.to_string());
    check(
        "transforms",
        chain
            .as_ref()
            .map(|c| {
                let cols: Vec<String> = c
                    .output_columns()
                    .iter()
                    .map(|c| format!("{}:{}", c.name, type_text(&c.ty)))
                    .collect();
                format!(
                    "{} stage(s); columns {}",
                    c.describe().len(),
                    cols.join(", ")
                )
            })
            .map_err(Clone::clone),
    );
    if let Some(conns) = conns {
        check(
            "staging bucket",
            conns
                .staging
                .check()
                .await
                .map(|()| format!("s3://{}", conns.staging.bucket()))
                .map_err(|e| {
                    format!("{e}; check staging.bucket, staging.endpoint and the AWS credentials")
                }),
        );
        match conns.maxcompute.get_table(&config.maxcompute.table).await {
            Ok(table) => {
                check(
                    "maxcompute table",
                    Ok(format!(
                        "{} ({} columns, partitioned by [{}])",
                        table.name,
                        table.schema.columns.len(),
                        table
                            .schema
                            .partition_keys
                            .iter()
                            .map(|c| c.name.clone())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                );
                if let Ok(chain) = &chain {
                    check(
                        "chain matches table",
                        app::describe_evolution(&config, chain, &table).map_err(|e| e.to_string()),
                    );
                }
            }
            Err(e) => check(
                "maxcompute table",
                Err(format!(
                    "{e}; check maxcompute.endpoint, project, table and the AccessKey"
                )),
            ),
        }
        match Kafka::connect(&config.kafka, &conns.kafka).await {
            Ok(kafka) => {
                for topic in &config.kafka.topics {
                    check(
                        &format!("kafka topic {topic}"),
                        kafka
                            .partitions(topic)
                            .await
                            .map(|p| format!("{} partition(s)", p.len()))
                            .map_err(|e| e.to_string()),
                    );
                }
            }
            Err(e) => check(
                "kafka",
                Err(format!(
                    "{e}; check kafka.bootstrap, kafka.tls and kafka.sasl"
                )),
            ),
        }
    }
    if problems > 0 {
        bail!("{problems} problem(s) found");
    }
    Ok(())
}
