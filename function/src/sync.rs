//! `k2mc run | backfill | invoke | status | validate | dead-letters`: the sync function from a
//! terminal. Each command goes through the same `App` the Lambda handler uses.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Subcommand;
use k2mc::app::{self, App, Origin};
use k2mc::commitlog::{CommitLog, TopicPartition};
use k2mc::config::Config;
use k2mc::kafka::Kafka;
use k2mc::trigger::Trigger;

/// `--config` and how long the command may run.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The TOML config file (environment variables K2MC__SECTION__KEY override keys).
    #[arg(long, env = "K2MC_CONFIG")]
    config: PathBuf,
    /// Stop starting new batches after this many seconds (a Lambda's timeout plays this role).
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
}

#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Start of the range (inclusive): earliest, latest, offset:N or time:RFC3339.
    #[arg(long)]
    from: String,
    /// End of the range (exclusive): earliest, latest, offset:N or time:RFC3339.
    #[arg(long)]
    to: String,
    /// Topics to backfill (default: every configured topic).
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// Names the backfill's own commit log, so that running the same backfill again resumes it
    /// and never loads a record twice (default: derived from --from and --to).
    #[arg(long)]
    name: Option<String>,
    /// Also write what this run did as JSON to this file: records, bytes, seconds and the time
    /// spent in each stage (fetch, transform, encode, stage, load, commit) over every batch.
    #[arg(long)]
    stats: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct InvokeArgs {
    #[command(flatten)]
    run: RunArgs,
    /// A Lambda event: a schedule (EventBridge) event or a Kafka event source mapping payload.
    #[arg(long)]
    event: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// List dead-letter objects with their record counts.
    List(RunArgs),
    /// Load dead letters again through the current transforms (exactly once per object).
    Replay {
        #[command(flatten)]
        run: RunArgs,
        /// A dead-letter object key as `list` prints it (repeatable; default: all of them).
        #[arg(long = "key")]
        keys: Vec<String>,
    },
}

fn load_config(args: &RunArgs) -> anyhow::Result<Config> {
    Ok(Config::load(&args.config, std::env::vars())?)
}

fn deadline(args: &RunArgs) -> Instant {
    Instant::now() + Duration::from_secs(args.timeout_secs)
}

fn print_report(report: &app::InvocationReport) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&report.summary())?);
    let failures = report.failures();
    if !failures.is_empty() {
        for (tp, next, err) in &failures {
            eprintln!("error: {tp} stopped at offset {next}: {err}");
        }
        bail!("{} partition(s) did not finish", failures.len());
    }
    Ok(())
}

/// `k2mc run`: one schedule tick.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let app = App::start(load_config(&args)?).await?;
    let trigger = Trigger::Schedule {
        time: chrono::Utc::now(),
        topics: Vec::new(),
        partitions: Vec::new(),
    };
    let report = app
        .invoke(&trigger, deadline(&args), &invocation_id())
        .await?;
    print_report(&report)
}

fn invocation_id() -> String {
    format!(
        "cli-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    )
}

fn parse_origin(text: &str) -> anyhow::Result<Origin> {
    Ok(match text {
        "earliest" => Origin::Earliest,
        "latest" => Origin::Latest,
        t if t.starts_with("offset:") => Origin::Offset(
            t["offset:".len()..]
                .parse()
                .with_context(|| format!("{t}: offset:N needs a number"))?,
        ),
        t if t.starts_with("time:") => Origin::Time(
            chrono::DateTime::parse_from_rfc3339(&t["time:".len()..])
                .with_context(|| {
                    format!("{t}: time: needs an RFC 3339 time like 2024-05-01T00:00:00Z")
                })?
                .with_timezone(&chrono::Utc),
        ),
        t => bail!("{t:?} is not earliest, latest, offset:N or time:RFC3339"),
    })
}

/// `k2mc backfill`: a bounded range under its own log scope, with a progress bar.
pub async fn backfill(args: BackfillArgs) -> anyhow::Result<()> {
    let (from, to) = (parse_origin(&args.from)?, parse_origin(&args.to)?);
    let mut config = load_config(&args.run)?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{}_{}", args.from, args.to))
        .replace(['/', ':'], "_");
    config.kafka.cluster = format!("{}~backfill-{name}", config.kafka.cluster);
    config.limits.batches_per_invocation = 1;
    let topics = if args.topics.is_empty() {
        config.kafka.topics.clone()
    } else {
        args.topics.clone()
    };
    let app = App::start(config).await?;
    let ranges = app.backfill_work(&topics, from, to).await?;
    let total: i64 = ranges.iter().map(|(_, s, e)| e - s).sum();
    let bar = indicatif::ProgressBar::new(total.max(0) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} offsets {msg} {per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let deadline = deadline(&args.run);
    let invocation = invocation_id();
    let started = Instant::now();
    let (mut records, mut bytes, mut loaded) = (0u64, 0u64, 0u64);
    let mut times = k2mc::metrics::StageTimes::default();
    let mut last;
    loop {
        last = app.run_ranges(ranges.clone(), deadline, &invocation).await;
        let mut progressed = false;
        for p in &last.partitions {
            for b in &p.batches {
                records += b.counts.read;
                bytes += b.counts.bytes;
                loaded += b.counts.loaded;
                times.add(&b.times);
                progressed = true;
            }
        }
        let done: i64 = last
            .partitions
            .iter()
            .zip(&ranges)
            .map(|(p, (_, s, e))| (p.next.unwrap_or(*s).min(*e) - s).max(0))
            .sum();
        bar.set_position(done as u64);
        bar.set_message(format!("{records} records, {:.1} MB", bytes as f64 / 1e6));
        if !progressed || !last.failures().is_empty() || Instant::now() >= deadline {
            break;
        }
    }
    bar.finish();
    eprintln!("backfill {name}: {records} records, {bytes} bytes loaded in this run");
    if let Some(path) = &args.stats {
        let stages: serde_json::Map<String, serde_json::Value> = times
            .named()
            .iter()
            .map(|(stage, d)| ((*stage).to_owned(), serde_json::json!(d.as_secs_f64())))
            .collect();
        let stats = serde_json::json!({
            "name": name,
            "records": records,
            "bytes": bytes,
            "rows": loaded,
            "seconds": started.elapsed().as_secs_f64(),
            "stage_seconds": stages,
        });
        std::fs::write(path, format!("{stats:#}\n"))
            .with_context(|| format!("writing --stats {}", path.display()))?;
    }
    print_report(&last)
}

/// `k2mc invoke`: the handler on an event file.
pub async fn invoke(args: InvokeArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.event)
        .with_context(|| format!("reading event {}", args.event.display()))?;
    let event: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", args.event.display()))?;
    let app = App::start(load_config(&args.run)?).await?;
    let response =
        crate::lambda::handle(&app, &event, deadline(&args.run), &invocation_id()).await?;
    println!("{}", serde_json::to_string_pretty(&response)?);
    Ok(())
}

/// `k2mc status`: reads the log and the brokers only.
pub async fn status(args: RunArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    let conns = app::connections(&config).await?;
    let kafka = Kafka::connect(&config.kafka, &conns.kafka).await?;
    let log = CommitLog::new(conns.staging.clone(), config.kafka.cluster.clone());
    println!(
        "{:<24} {:>5} {:>12} {:>14} {:>10} {:<20} {:>12}",
        "topic", "part", "committed", "high_watermark", "lag", "last_commit", "dead_letters"
    );
    for topic in &config.kafka.topics {
        for partition in kafka.partitions(topic).await? {
            let tp = TopicPartition {
                topic: topic.clone(),
                partition,
            };
            let position = log.position(&tp).await?;
            let hwm = kafka.partition(&tp).await?.high_watermark().await?;
            let dead = dead_letter_count(&conns.staging, &config.kafka.cluster, &tp).await?;
            let committed = position.next.map_or("-".to_owned(), |n| n.to_string());
            let lag = hwm - position.next.unwrap_or(hwm);
            let last = position.last.as_ref().map_or("-".to_owned(), |e| {
                chrono::DateTime::parse_from_rfc3339(&e.committed_at).map_or_else(
                    |_| e.committed_at.clone(),
                    |t| {
                        t.with_timezone(&chrono::Utc)
                            .format("%Y-%m-%dT%H:%M:%SZ")
                            .to_string()
                    },
                )
            });
            println!(
                "{topic:<24} {partition:>5} {committed:>12} {hwm:>14} {lag:>10} {last:<20} {dead:>12}"
            );
        }
    }
    Ok(())
}

async fn dead_letter_count(
    staging: &k2mc::staging::Staging,
    cluster: &str,
    tp: &TopicPartition,
) -> anyhow::Result<usize> {
    let mut n = 0;
    for key in staging
        .list(
            &format!("dead-letters/{cluster}/{}/{}/", tp.topic, tp.partition),
            None,
            1000,
        )
        .await?
    {
        if let Some(obj) = staging.get(&key).await? {
            n += obj
                .data
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count();
        }
    }
    Ok(n)
}

/// `k2mc validate`: every check runs; all problems are printed.
pub async fn validate(args: RunArgs) -> anyhow::Result<()> {
    let mut problems = 0;
    let mut check = |name: &str, result: Result<String, String>| match result {
        Ok(detail) => println!("ok    {name}: {detail}"),
        Err(why) => {
            problems += 1;
            println!("FAIL  {name}: {why}");
        }
    };
    let config = match load_config(&args) {
        Ok(c) => {
            check("config", Ok(args.config.display().to_string()));
            c
        }
        Err(e) => {
            check("config", Err(format!("{e:#}")));
            bail!("the config does not load; fix it first");
        }
    };
    let chain = app::load_chain(&config).map_err(|e| e.to_string());
    check(
        "transforms",
        chain
            .as_ref()
            .map(|c| {
                let cols: Vec<String> = c
                    .output_columns()
                    .iter()
                    .map(|c| format!("{}:{}", c.name, k2mc::encode::type_text(&c.ty)))
                    .collect();
                format!(
                    "{} stage(s); columns {}",
                    c.describe().len(),
                    cols.join(", ")
                )
            })
            .map_err(Clone::clone),
    );
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
                        app::check_layout(&config, chain, &table)
                            .map(|_| "every column fits".to_owned())
                            .map_err(|e| e.to_string()),
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

/// Every dead-letter object of `cluster` and of its replays (`<cluster>~replay-…`), in key order,
/// page by page; other clusters may share the bucket and prefix and are left out.
async fn dead_letter_keys(
    staging: &k2mc::staging::Staging,
    cluster: &str,
) -> anyhow::Result<Vec<String>> {
    let prefix = format!("dead-letters/{cluster}");
    let mut all: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = staging.list(&prefix, after.as_deref(), 1000).await?;
        let Some(last) = page.last().cloned() else {
            return Ok(all);
        };
        all.extend(page.into_iter().filter(|k| {
            k.strip_prefix("dead-letters/")
                .and_then(|rest| rest.split('/').next())
                .is_some_and(|scope| app::is_scope_of(scope, cluster))
        }));
        after = Some(last);
    }
}

/// `k2mc dead-letters list | replay`.
pub async fn dead_letters(command: DeadLettersCommand) -> anyhow::Result<()> {
    match command {
        DeadLettersCommand::List(args) => {
            let config = load_config(&args)?;
            let conns = app::connections(&config).await?;
            for key in dead_letter_keys(&conns.staging, &config.kafka.cluster).await? {
                let n = conns.staging.get(&key).await?.map_or(0, |o| {
                    o.data
                        .split(|&b| b == b'\n')
                        .filter(|l| !l.is_empty())
                        .count()
                });
                println!("{key}\t{n}");
            }
            Ok(())
        }
        DeadLettersCommand::Replay { run, keys } => {
            let config = load_config(&run)?;
            let app = App::start(config).await?;
            let keys = if keys.is_empty() {
                dead_letter_keys(app.log.staging(), &app.config.kafka.cluster).await?
            } else {
                keys
            };
            let invocation = invocation_id();
            for key in keys {
                let reports = app.replay(&key, &invocation).await?;
                for r in reports {
                    println!(
                        "{key}: read {} loaded {} filtered {} still dead {}",
                        r.counts.read, r.counts.loaded, r.counts.filtered, r.counts.dead_lettered
                    );
                }
            }
            Ok(())
        }
    }
}
