//! The function as a whole: [`App::start`] is the cold start (config, secrets, clients, the
//! transform chain, the table check), [`App::invoke`] turns a trigger into per-partition work and
//! runs the partitions concurrently with a bound. The Lambda handler and every CLI command go
//! through here, so `k2mc run` is exactly what a schedule tick does.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use serde::Serialize;

use crate::commitlog::{CommitLog, ModuleVersion, TopicPartition};
use crate::config::{Config, StartFrom};
use crate::encode::Layout;
use crate::error::PipelineError;
use crate::kafka::{self, Kafka, KafkaAuth, PartitionReader, SaslSecrets};
use crate::maxcompute::{ClientConfig, Credentials, MaxComputeClient, TableInfo};
use crate::metrics;
use crate::pipeline::{BatchContext, PartitionOutcome, Target, sync_partition};
use crate::route::Router;
use crate::secrets::{SecretRef, SecretResolver};
use crate::staging::{Staging, sdk_config};
use crate::transform::{Chain, Grants, Limits, StageSpec, TransformHost};
use crate::trigger::Trigger;
use sha2::Digest as _;
use tracing::Instrument as _;

/// A cold-started function.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub kafka: Kafka,
    pub log: CommitLog,
    pub maxcompute: MaxComputeClient,
    pub chain: Chain,
    pub table: TableInfo,
    layout: Layout,
    modules: Vec<ModuleVersion>,
    /// Emit EMF metric lines on stdout (on in Lambda).
    pub emit_metrics: bool,
}

/// Where compiled transforms are cached when no precompiled artifact matches: Lambda's /tmp.
pub fn artifact_cache_dir() -> PathBuf {
    std::env::var_os("K2MC_ARTIFACT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("k2mc-cwasm"))
}

/// The chain's stage specs from the config.
pub fn stage_specs(config: &Config) -> Vec<StageSpec> {
    config
        .transforms
        .iter()
        .map(|t| StageSpec {
            name: t.name.clone(),
            wasm: config.resolve_path(&t.wasm),
            config: t
                .settings
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
                .collect(),
            grants: Grants {
                clocks: t.clocks,
                random: t.random,
            },
            limits: Limits {
                memory: t.memory_mb * 1024 * 1024,
                call_deadline: std::time::Duration::from_millis(t.deadline_ms),
            },
        })
        .collect()
}

/// Resolved secrets and the clients built from them.
pub struct Connections {
    pub staging: Staging,
    pub maxcompute: MaxComputeClient,
    pub kafka: KafkaAuth,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections").finish_non_exhaustive()
    }
}

/// Resolves secrets and builds the staging and MaxCompute clients (no network calls yet).
pub async fn connections(config: &Config) -> Result<Connections, PipelineError> {
    let sdk = sdk_config(config.staging.region.as_deref()).await;
    let needs_sm = config
        .secret_refs()
        .iter()
        .any(|(_, r)| matches!(r, SecretRef::SecretsManager { .. }));
    let mc = &config.maxcompute;
    let mut secrets = SecretResolver::new(needs_sm.then_some(&sdk));
    let access_id = secrets
        .resolve("maxcompute.access_id", &mc.access_id)
        .await?;
    let access_key = secrets
        .resolve("maxcompute.access_key", &mc.access_key)
        .await?;
    let mut credentials = Credentials::new(access_id.expose(), access_key.expose());
    if let Some(token) = &mc.sts_token {
        credentials.sts_token = Some(secrets.resolve("maxcompute.sts_token", token).await?);
    }
    let maxcompute = MaxComputeClient::new(ClientConfig::new(
        mc.endpoint.clone(),
        mc.project.clone(),
        credentials,
    ))?;
    let sasl = match &config.kafka.sasl {
        Some(s) => Some(SaslSecrets {
            mechanism: s.mechanism,
            username: secrets.resolve("kafka.sasl.username", &s.username).await?,
            password: secrets.resolve("kafka.sasl.password", &s.password).await?,
        }),
        None => None,
    };
    let tls = match &config.kafka.tls {
        Some(t) => Some(Arc::new(kafka::client_config(
            &kafka::tls_material(config, t, &mut secrets).await?,
        )?)),
        None => None,
    };
    Ok(Connections {
        staging: Staging::new(&sdk, &config.staging),
        maxcompute,
        kafka: KafkaAuth { sasl, tls },
    })
}

/// Loads the chain (precompiled artifacts when they match).
pub fn load_chain(config: &Config) -> Result<Chain, PipelineError> {
    let host = TransformHost::new()?;
    Ok(host.load_chain(stage_specs(config), &artifact_cache_dir())?)
}

/// The destination-partition router of the config's template, for the table's partition keys
/// and the chain's columns, with `${…}` tokens resolved from `time`.
pub fn router(
    config: &Config,
    chain: &Chain,
    table: &TableInfo,
    time: chrono::DateTime<chrono::Utc>,
) -> Result<Router, PipelineError> {
    let names: Vec<String> = chain
        .output_columns()
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let keys: Vec<String> = table
        .schema
        .partition_keys
        .iter()
        .map(|c| c.name.clone())
        .collect();
    Router::new(&config.maxcompute.partition, &keys, &names, time)
}

/// Matches the chain's output against the table; all problems in one error.
pub fn check_layout(
    config: &Config,
    chain: &Chain,
    table: &TableInfo,
) -> Result<Layout, PipelineError> {
    let router = router(config, chain, table, chrono::Utc::now())?;
    Layout::new(chain.output_columns(), &table.schema, &router.columns()).map_err(|problems| {
        PipelineError::SchemaMismatch {
            table: table.name.clone(),
            problems: problems.join("; "),
        }
    })
}

/// Per-partition results of an invocation.
#[derive(Debug, Default)]
pub struct InvocationReport {
    pub partitions: Vec<PartitionOutcome>,
}

impl InvocationReport {
    /// Partitions that stopped on an error, with the first offset to deliver again.
    pub fn failures(&self) -> Vec<(TopicPartition, i64, &PipelineError)> {
        self.partitions
            .iter()
            .filter_map(|p| {
                p.error
                    .as_ref()
                    .map(|e| (p.tp.clone(), p.next.unwrap_or(0), e))
            })
            .collect()
    }

    /// A JSON summary for responses and the CLI.
    pub fn summary(&self) -> serde_json::Value {
        #[derive(Serialize)]
        struct P<'a> {
            topic: &'a str,
            partition: i32,
            batches: usize,
            read: u64,
            loaded: u64,
            filtered: u64,
            dead_lettered: u64,
            next_offset: Option<i64>,
            high_watermark: Option<i64>,
            error: Option<String>,
        }
        let list: Vec<P<'_>> = self
            .partitions
            .iter()
            .map(|p| P {
                topic: &p.tp.topic,
                partition: p.tp.partition,
                batches: p.batches.len(),
                read: p.batches.iter().map(|b| b.counts.read).sum(),
                loaded: p.batches.iter().map(|b| b.counts.loaded).sum(),
                filtered: p.batches.iter().map(|b| b.counts.filtered).sum(),
                dead_lettered: p.batches.iter().map(|b| b.counts.dead_lettered).sum(),
                next_offset: p.next,
                high_watermark: p.high_watermark,
                error: p.error.as_ref().map(ToString::to_string),
            })
            .collect();
        serde_json::json!({ "partitions": list })
    }
}

/// A partition to sync in this invocation.
#[derive(Debug)]
struct Work {
    tp: TopicPartition,
    target: Target,
    origin: Origin,
    delivered: Vec<crate::transform::bindings::KafkaRecord>,
}

/// Where a partition never synced starts.
#[derive(Debug, Clone, Copy)]
pub enum Origin {
    Earliest,
    Latest,
    Offset(i64),
    Time(chrono::DateTime<chrono::Utc>),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Earliest => f.write_str("earliest"),
            Origin::Latest => f.write_str("latest"),
            Origin::Offset(o) => write!(f, "offset:{o}"),
            Origin::Time(t) => write!(f, "time:{}", t.to_rfc3339()),
        }
    }
}

impl App {
    /// Cold start: everything that can fail before a record is read fails here.
    pub async fn start(config: Config) -> Result<App, PipelineError> {
        let t = Instant::now();
        let conns = connections(&config).await?;
        let chain = load_chain(&config)?;
        let kafka = Kafka::connect(&config.kafka, &conns.kafka).await?;
        let table = conns.maxcompute.get_table(&config.maxcompute.table).await?;
        let layout = check_layout(&config, &chain, &table)?;
        let modules = chain
            .modules()
            .into_iter()
            .map(|(name, version, sha256)| ModuleVersion {
                name,
                version,
                sha256,
            })
            .collect();
        tracing::info!(
            elapsed_ms = t.elapsed().as_millis() as u64,
            "cold start done"
        );
        Ok(App {
            log: CommitLog::new(conns.staging, config.kafka.cluster.clone()),
            config,
            kafka,
            maxcompute: conns.maxcompute,
            chain,
            table,
            layout,
            modules,
            emit_metrics: false,
        })
    }

    /// The partitions of every configured topic.
    pub async fn all_partitions(
        &self,
        topics: &[String],
    ) -> Result<Vec<TopicPartition>, PipelineError> {
        let mut out = Vec::new();
        for topic in topics {
            for partition in self.kafka.partitions(topic).await? {
                out.push(TopicPartition {
                    topic: topic.clone(),
                    partition,
                });
            }
        }
        Ok(out)
    }

    fn check_topic(&self, topic: &str) -> Result<(), PipelineError> {
        if self.config.kafka.topics.iter().any(|t| t == topic) {
            Ok(())
        } else {
            Err(PipelineError::UnknownTopic {
                topic: topic.to_owned(),
            })
        }
    }

    /// Runs a trigger until done or `deadline` (minus the configured reserve).
    pub async fn invoke(
        &self,
        trigger: &Trigger,
        deadline: Instant,
        invocation: &str,
    ) -> Result<InvocationReport, PipelineError> {
        let span = tracing::info_span!("invocation", invocation, trigger = trigger.kind());
        self.invoke_in_span(trigger, deadline, invocation)
            .instrument(span)
            .await
    }

    async fn invoke_in_span(
        &self,
        trigger: &Trigger,
        deadline: Instant,
        invocation: &str,
    ) -> Result<InvocationReport, PipelineError> {
        let default_origin = match self.config.kafka.start_from {
            StartFrom::Earliest => Origin::Earliest,
            StartFrom::Latest => Origin::Latest,
        };
        // Partitions of an event the config does not cover fail alone (their item failures tell
        // the event source mapping), so a misrouted topic never holds the others back.
        let mut refused = Vec::new();
        let work = match trigger {
            Trigger::Schedule {
                topics, partitions, ..
            } => {
                let topics = if topics.is_empty() {
                    self.config.kafka.topics.clone()
                } else {
                    topics.clone()
                };
                for t in &topics {
                    self.check_topic(t)?;
                }
                self.all_partitions(&topics)
                    .await?
                    .into_iter()
                    .filter(|tp| partitions.is_empty() || partitions.contains(&tp.partition))
                    .map(|tp| Work {
                        tp,
                        target: Target::HighWatermark,
                        origin: default_origin,
                        delivered: Vec::new(),
                    })
                    .collect()
            }
            Trigger::Kafka { records, .. } => {
                let mut work = Vec::new();
                for (tp, list) in records {
                    if let Err(e) = self.check_topic(&tp.topic) {
                        tracing::error!(topic = %tp.topic, partition = tp.partition, error = %e, "refusing a partition of the event");
                        let mut failed = PartitionOutcome::failed(tp.clone(), e);
                        failed.next = list.first().map(|r| r.offset);
                        refused.push(failed);
                        continue;
                    }
                    let end = list.iter().map(|r| r.offset).max().map_or(0, |m| m + 1);
                    // A partition never synced starts at the first delivered record, as the
                    // event source mapping's own starting position decided.
                    let first = list.iter().map(|r| r.offset).min().unwrap_or(0);
                    work.push(Work {
                        tp: tp.clone(),
                        target: Target::Offset(end),
                        origin: Origin::Offset(first),
                        delivered: list.iter().cloned().map(Into::into).collect(),
                    });
                }
                work
            }
        };
        let mut report = self
            .run_work(work, trigger.time(), deadline, invocation)
            .await;
        report.partitions.extend(refused);
        report.partitions.sort_by(|a, b| a.tp.cmp(&b.tp));
        Ok(report)
    }

    /// A bounded range `[from, to)` of every partition of `topics`, under its own log scope.
    pub async fn backfill_work(
        &self,
        topics: &[String],
        from: Origin,
        to: Origin,
    ) -> Result<Vec<(TopicPartition, i64, i64)>, PipelineError> {
        let mut out = Vec::new();
        for tp in self.all_partitions(topics).await? {
            let reader = self.kafka.partition(&tp).await?;
            let start = resolve(&reader, from).await?;
            let end = resolve(&reader, to).await?;
            if start > end {
                return Err(PipelineError::BackfillRange {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    from: from.to_string(),
                    to: to.to_string(),
                    start,
                    end,
                });
            }
            out.push((tp, start, end));
        }
        Ok(out)
    }

    /// Runs fixed ranges (a backfill) with the given progress callback after each batch.
    pub async fn run_ranges(
        &self,
        ranges: Vec<(TopicPartition, i64, i64)>,
        deadline: Instant,
        invocation: &str,
    ) -> InvocationReport {
        let work = ranges
            .into_iter()
            .map(|(tp, start, end)| Work {
                tp,
                target: Target::Offset(end),
                origin: Origin::Offset(start),
                delivered: Vec::new(),
            })
            .collect();
        let span = tracing::info_span!("invocation", invocation, trigger = "backfill");
        self.run_work(work, chrono::Utc::now(), deadline, invocation)
            .instrument(span)
            .await
    }

    async fn run_work(
        &self,
        work: Vec<Work>,
        time: chrono::DateTime<chrono::Utc>,
        deadline: Instant,
        invocation: &str,
    ) -> InvocationReport {
        let router = match router(&self.config, &self.chain, &self.table, time) {
            Ok(r) => r,
            Err(e) => {
                let message = e.to_string();
                return InvocationReport {
                    partitions: work
                        .into_iter()
                        .map(|w| {
                            PartitionOutcome::failed(
                                w.tp,
                                PipelineError::Partition {
                                    reason: message.clone(),
                                },
                            )
                        })
                        .collect(),
                };
            }
        };
        let ctx = BatchContext {
            config: &self.config,
            log: &self.log,
            maxcompute: &self.maxcompute,
            chain: &self.chain,
            layout: &self.layout,
            router: &router,
            modules: &self.modules,
            invocation,
        };
        let ctx = &ctx;
        let partitions: Vec<PartitionOutcome> = futures_util::stream::iter(work)
            .map(|w| async move {
                // A partition failing before its first batch is redelivered from its origin.
                let failed = |e| {
                    let mut f = PartitionOutcome::failed(w.tp.clone(), e);
                    if let Origin::Offset(o) = w.origin {
                        f.next = Some(o);
                    }
                    f
                };
                let reader = match self.kafka.partition(&w.tp).await {
                    Ok(r) => r,
                    Err(e) => return failed(e),
                };
                let origin = match resolve(&reader, w.origin).await {
                    Ok(o) => o,
                    Err(e) => return failed(e),
                };
                let outcome =
                    sync_partition(ctx, &reader, origin, w.target, &w.delivered, deadline).await;
                if self.emit_metrics {
                    for b in &outcome.batches {
                        let lag = outcome.high_watermark.unwrap_or(b.batch.end) - b.batch.end;
                        let doc = metrics::batch_document(
                            &w.tp.topic,
                            w.tp.partition,
                            &b.counts,
                            lag.max(0),
                            &b.times,
                            chrono::Utc::now().timestamp_millis(),
                        );
                        println!("{doc}");
                    }
                }
                outcome
            })
            .buffer_unordered(self.config.limits.concurrency)
            .collect()
            .await;
        let mut sorted: BTreeMap<TopicPartition, PartitionOutcome> = BTreeMap::new();
        for p in partitions {
            sorted.insert(p.tp.clone(), p);
        }
        InvocationReport {
            partitions: sorted.into_values().collect(),
        }
    }
}

/// Reads a dead-letter object back into Kafka records, grouped by partition.
pub fn parse_dead_letters(
    key: &str,
    data: &[u8],
) -> Result<BTreeMap<TopicPartition, Vec<crate::transform::bindings::KafkaRecord>>, PipelineError> {
    use crate::transform::bindings::{Header, KafkaRecord};
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let bad = |line: usize, why: String| PipelineError::Corrupt {
        key: key.to_owned(),
        reason: format!("line {line}: {why}"),
    };
    let mut out: BTreeMap<TopicPartition, Vec<KafkaRecord>> = BTreeMap::new();
    for (i, line) in data
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
    {
        let v: serde_json::Value =
            serde_json::from_slice(line).map_err(|e| bad(i + 1, e.to_string()))?;
        let bytes = |field: &serde_json::Value| -> Result<Option<Vec<u8>>, PipelineError> {
            match field.as_str() {
                None => Ok(None),
                Some(t) => b64
                    .decode(t)
                    .map(Some)
                    .map_err(|e| bad(i + 1, e.to_string())),
            }
        };
        let tp = TopicPartition {
            topic: v["topic"].as_str().unwrap_or_default().to_owned(),
            partition: v["partition"].as_i64().unwrap_or_default() as i32,
        };
        let mut headers = Vec::new();
        for h in v["headers"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            headers.push(Header {
                key: h["key"].as_str().unwrap_or_default().to_owned(),
                value: bytes(&h["value"])?,
            });
        }
        out.entry(tp).or_default().push(KafkaRecord {
            offset: v["offset"]
                .as_i64()
                .ok_or_else(|| bad(i + 1, "no offset".into()))?,
            timestamp_ms: v["timestamp"].as_i64().unwrap_or_default(),
            key: bytes(&v["key"])?,
            value: bytes(&v["value"])?,
            headers,
        });
    }
    Ok(out)
}

/// What separates a replay's log scope from its cluster: `<cluster>~replay-<id>`.
const REPLAY_SCOPE: &str = "~replay-";

/// Whether the log scope `scope` is `cluster` itself or one of its replays (at any depth).
pub fn is_scope_of(scope: &str, cluster: &str) -> bool {
    scope
        .strip_prefix(cluster)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(REPLAY_SCOPE))
}

impl App {
    /// Loads the records of a dead-letter object again through the current chain, exactly once:
    /// under a log scope of its own (`<cluster>~replay-<hash of the key>`), keyed by the object's
    /// first offset. Records that still fail become dead letters of the replay.
    pub async fn replay(
        &self,
        key: &str,
        invocation: &str,
    ) -> Result<Vec<crate::pipeline::BatchReport>, PipelineError> {
        let span = tracing::info_span!("invocation", invocation, trigger = "replay", key);
        self.replay_in_span(key, invocation).instrument(span).await
    }

    async fn replay_in_span(
        &self,
        key: &str,
        invocation: &str,
    ) -> Result<Vec<crate::pipeline::BatchReport>, PipelineError> {
        let obj = self
            .log
            .staging()
            .get(key)
            .await?
            .ok_or_else(|| PipelineError::Corrupt {
                key: key.to_owned(),
                reason: "no such dead-letter object; list them with k2mc dead-letters list".into(),
            })?;
        let groups = parse_dead_letters(key, &obj.data)?;
        // Each dead-letter object replays in a log of its own, so it loads at most once, and a
        // replay's own dead letters (records still failing) can be replayed in their turn.
        let object_id: String = sha2::Sha256::digest(key.as_bytes())
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        let scope = CommitLog::new(
            self.log.staging().clone(),
            format!("{}{REPLAY_SCOPE}{object_id}", self.config.kafka.cluster),
        );
        let router = router(&self.config, &self.chain, &self.table, chrono::Utc::now())?;
        let mut config = self.config.clone();
        config.kafka.cluster = scope.cluster().to_owned();
        let ctx = BatchContext {
            config: &config,
            log: &scope,
            maxcompute: &self.maxcompute,
            chain: &self.chain,
            layout: &self.layout,
            router: &router,
            modules: &self.modules,
            invocation,
        };
        let mut reports = Vec::new();
        for (tp, records) in groups {
            let start = records.iter().map(|r| r.offset).min().unwrap_or(0);
            let end = records.iter().map(|r| r.offset).max().unwrap_or(0) + 1;
            if scope.entry(&tp, start).await?.is_some() {
                tracing::info!(%tp, start, "dead letters already replayed");
                continue;
            }
            let resumable = scope.intent(&tp, start).await?;
            match crate::pipeline::run_batch(&ctx, None, &tp, (start, end), &records, resumable)
                .await
            {
                Ok(r) => reports.push(r),
                Err(PipelineError::LostRace { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(reports)
    }
}

/// Resolves an origin to an offset on one partition.
pub async fn resolve(reader: &PartitionReader, origin: Origin) -> Result<i64, PipelineError> {
    match origin {
        Origin::Offset(o) => Ok(o),
        Origin::Earliest => reader.earliest().await,
        Origin::Latest => reader.high_watermark().await,
        // No record at or after the time: the range starts (or ends) at the high watermark.
        Origin::Time(t) => match reader.offset_at(t).await? {
            o if o < 0 => reader.high_watermark().await,
            o => Ok(o),
        },
    }
}
