//! `k2mc backfill`: a bounded range `[from, to)` of the configured topics under its own log scope,
//! with a progress bar; running the same backfill again resumes it.

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Instant;

use anyhow::Context;
use k2mc::app::App;
use k2mc::metrics::StageTimes;
use k2mc::pipeline::commit::{LogScope, ScopeKind, TopicPartition};
use k2mc::pipeline::plan::{OffsetSpec, Target};
use k2mc::pipeline::{LoadMode, LoadOutcome};
use k2mc::report::InvocationReport;
use tracing::Instrument as _;

use super::{RunArgs, invocation_id, print_report};

/// The range, its name and where to write the statistics.
#[derive(Debug, clap::Args)]
pub(crate) struct BackfillArgs {
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
    /// spent in each stage (fetch, transform, encode, stage, load, commit) summed over every
    /// batch; load also counts the table loads that ran after each pass's batches.
    #[arg(long)]
    stats: Option<PathBuf>,
}

/// What the run did over all its invocations.
#[derive(Debug, Default)]
struct Totals {
    records: u64,
    bytes: u64,
    rows: u64,
    times: StageTimes,
}

impl Totals {
    /// Adds a pass's batches and its table loads; false when it committed no batch.
    fn add(&mut self, report: &InvocationReport) -> bool {
        let mut progressed = false;
        for b in report.partitions.iter().flat_map(|p| &p.batches) {
            self.records += b.counts.read;
            self.bytes += b.counts.bytes;
            self.rows += b.counts.loaded;
            self.times.add(&b.times);
            progressed = true;
        }
        self.add_loads(&report.loads);
        progressed
    }

    /// Adds table loads' time to the load stage. A batch's own load time is only its pending
    /// record; the sessions and blocks run in the table loads (`docs/architecture.md`,
    /// "Staging and loading"), so the load stage is both.
    fn add_loads(&mut self, loads: &[LoadOutcome]) {
        for l in loads {
            self.times.load += l.time;
        }
    }
}

/// Runs the backfill one batch per partition per pass, until done, stuck or out of time.
pub(crate) async fn run(args: BackfillArgs) -> anyhow::Result<()> {
    let from: OffsetSpec = args.from.parse().map_err(anyhow::Error::msg)?;
    let to: OffsetSpec = args.to.parse().map_err(anyhow::Error::msg)?;
    let mut config = args.run.load_config()?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{}_{}", args.from, args.to));
    let scope = LogScope::backfill(&config.kafka.cluster, &name);
    // One batch per partition per pass, so the progress bar moves.
    config.limits.batches_per_invocation = 1;
    let topics = if args.topics.is_empty() {
        config.kafka.topics.clone()
    } else {
        args.topics.clone()
    };
    let app = App::start(config).await?.in_scope(scope.clone());
    let work = app.backfill_work(&topics, from, to).await?;
    let ranges: Vec<Range> = work
        .iter()
        .map(|w| match (w.start, w.target) {
            (OffsetSpec::Offset(s), Target::Offset(e)) => (w.tp.clone(), s, e),
            _ => (w.tp.clone(), 0, 0),
        })
        .collect();
    let total: i64 = ranges.iter().map(|(_, s, e)| e - s).sum();
    let bar = indicatif::ProgressBar::new(total.max(0) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} offsets {msg} {per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let deadline = args.run.deadline();
    let invocation = invocation_id();
    let started = Instant::now();
    let mut totals = Totals::default();
    // Each pass's table loads run beside the next pass's staging: the Tunnel takes a block at
    // about 10 MB/s (`docs/maxcompute-protocol.md` §5), so a load waited for before staging on
    // would leave the function idle for most of it. Loads still run one after another, each
    // taking what the passes before it staged (`docs/architecture.md`, "Staging and loading");
    // beside a pass, a load sends one block at a time to stay under the memory bound.
    let mut loading: Option<Loading<'_>> = None;
    let mut last = loop {
        let stage = app.stage_work(work.clone(), deadline, &invocation);
        let report = match loading.take() {
            Some(previous) => {
                let (mut report, loads) = tokio::join!(stage, previous);
                report.loads = loads;
                report
            }
            None => stage.await,
        };
        let progressed = totals.add(&report);
        let done = done(&ranges, &report);
        bar.set_position(done as u64);
        bar.set_message(format!(
            "{} records, {:.1} MB",
            totals.records,
            totals.bytes as f64 / 1e6
        ));
        // A finished range stops here: another pass would only read the log and the broker to
        // find nothing left.
        if done >= total
            || !progressed
            || !report.failures().is_empty()
            || Instant::now() >= deadline
        {
            break report;
        }
        loading = Some(Box::pin(load(&app, &invocation)));
    };
    // The last pass's load, alone: what the backfill staged is visible once this returns.
    let loads = load(&app, &invocation).await;
    totals.add_loads(&loads);
    last.loads.extend(loads);
    bar.finish();
    let name = match scope.kind() {
        ScopeKind::Backfill { name } => name.clone(),
        _ => name,
    };
    eprintln!(
        "backfill {name}: {} records, {} bytes loaded in this run",
        totals.records, totals.bytes
    );
    if let Some(path) = &args.stats {
        write_stats(path, &name, &totals, started)?;
    }
    print_report(&last)
}

/// A pass's table loads, polled beside the next pass's staging.
type Loading<'a> = Pin<Box<dyn Future<Output = Vec<LoadOutcome>> + 'a>>;

/// The table loads of what the passes so far staged, in an invocation span of their own.
async fn load(app: &App, invocation: &str) -> Vec<LoadOutcome> {
    let span = tracing::info_span!("invocation", invocation, trigger = "backfill");
    app.load(LoadMode::Due).instrument(span).await
}

/// A partition's range: `[start, end)`.
type Range = (TopicPartition, i64, i64);

/// Offsets of `ranges` done after a pass. Outcomes are matched by partition, not by position: a
/// report lists partitions sorted, the work lists them in the order of `--topic` or the config.
fn done(ranges: &[Range], report: &InvocationReport) -> i64 {
    ranges
        .iter()
        .map(|(tp, s, e)| {
            let next = report
                .partitions
                .iter()
                .find(|p| &p.tp == tp)
                .and_then(|p| p.next)
                .unwrap_or(*s);
            (next.min(*e) - s).max(0)
        })
        .sum()
}

fn write_stats(
    path: &std::path::Path,
    name: &str,
    totals: &Totals,
    started: Instant,
) -> anyhow::Result<()> {
    let stages: serde_json::Map<String, serde_json::Value> = totals
        .times
        .named()
        .iter()
        .map(|(stage, d)| ((*stage).to_owned(), serde_json::json!(d.as_secs_f64())))
        .collect();
    let stats = serde_json::json!({
        "name": name,
        "records": totals.records,
        "bytes": totals.bytes,
        "rows": totals.rows,
        "seconds": started.elapsed().as_secs_f64(),
        "stage_seconds": stages,
    });
    std::fs::write(path, format!("{stats:#}\n"))
        .with_context(|| format!("writing --stats {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use k2mc::pipeline::commit::{BatchId, Counts};
    use k2mc::report::{BatchReport, PartitionOutcome};

    fn outcome(partition: i32, next: Option<i64>) -> PartitionOutcome {
        let mut o = PartitionOutcome::new(TopicPartition::new("t", partition));
        o.next = next;
        o
    }

    #[test]
    fn the_load_stage_counts_the_table_loads_after_the_batches() {
        let batch = BatchReport {
            batch: BatchId {
                cluster: "c".into(),
                topic: "t".into(),
                partition: 0,
                start: 0,
                end: 10,
            },
            counts: Counts::default(),
            times: StageTimes {
                load: Duration::from_millis(5),
                ..StageTimes::default()
            },
            resumed: false,
        };
        let mut partition = outcome(0, Some(10));
        partition.batches.push(batch);
        let mut report = InvocationReport::new(vec![partition]);
        report.loads.push(LoadOutcome {
            time: Duration::from_millis(700),
            ..LoadOutcome::default()
        });
        let mut totals = Totals::default();
        assert!(totals.add(&report));
        assert_eq!(totals.times.load, Duration::from_millis(705));
        // A pass that only loaded (nothing left to stage) adds its load but is no progress.
        let mut report = InvocationReport::new(vec![outcome(0, Some(10))]);
        report.loads.push(LoadOutcome {
            time: Duration::from_millis(300),
            ..LoadOutcome::default()
        });
        assert!(!totals.add(&report));
        assert_eq!(totals.times.load, Duration::from_millis(1005));
    }

    #[test]
    fn progress_matches_outcomes_by_partition_not_by_position() {
        let tp = |p| TopicPartition::new("t", p);
        // The work in another order than the report's (topics "b", "a" in the config).
        let ranges = vec![(tp(1), 50, 60), (tp(0), 0, 100)];
        // Partition 1 done; partition 0 half done.
        let report = InvocationReport::new(vec![outcome(1, Some(60)), outcome(0, Some(50))]);
        assert_eq!(done(&ranges, &report), 60);
        // Both done: the whole range, so the backfill stops without another pass.
        let report = InvocationReport::new(vec![outcome(1, Some(60)), outcome(0, Some(100))]);
        assert_eq!(done(&ranges, &report), 110);
        // A partition that failed before its first batch counts nothing.
        let report = InvocationReport::new(vec![outcome(0, None)]);
        assert_eq!(done(&ranges, &report), 0);
    }
}
