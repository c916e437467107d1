//! The function as a whole: [`App::start`] is the cold start (config, secrets, clients, the
//! transform chain, the table check); [`App::invoke`] reads as plan, then sync each partition
//! with bounded concurrency, then report. The Lambda handler and every CLI command go through
//! here, so `k2mc run` is exactly what a schedule tick does.

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use sha2::Digest as _;
use tracing::Instrument as _;

use crate::config::{Config, ConfigError, SaslMechanism};
use crate::deadletters;
use crate::error::PipelineError;
use crate::kafka::{self, Kafka, KafkaAuth, SaslSecrets};
use crate::maxcompute::{ClientConfig, Credentials, MaxComputeClient, TableInfo};
use crate::metrics;
use crate::pipeline::commit::{CommitLog, LogScope, ModuleVersion, TopicPartition};
use crate::pipeline::encode::Layout;
use crate::pipeline::loader::LoadMode;
use crate::pipeline::plan::{self, OffsetSpec, Work};
use crate::pipeline::route::{RouteError, Router};
use crate::pipeline::{BatchContext, run_batch, sync_partition};
use crate::report::{BatchReport, InvocationReport, PartitionOutcome};
use crate::secrets::{SecretRef, SecretResolver};
use crate::staging::{Staging, sdk_config};
use crate::transform::{Chain, TransformHost};
use crate::trigger::Trigger;

mod evolve;
mod load;

pub use evolve::{check_layout, describe_evolution};

/// A cold-started function.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub kafka: Kafka,
    /// The log batches are committed to: the cluster's main log, or a backfill's.
    pub log: CommitLog,
    pub maxcompute: MaxComputeClient,
    pub chain: Chain,
    pub table: TableInfo,
    layout: Layout,
    modules: Vec<ModuleVersion>,
    /// Emit EMF metric lines on stdout (on in Lambda).
    pub emit_metrics: bool,
    /// When this process last looked for a due load while passing by (a Kafka event's
    /// invocation): such looks are spaced by half `[load] interval` per warm process, because
    /// each lists the table's staged batches, and the loader schedule keeps the time bound.
    passing_check: std::sync::Mutex<Option<Instant>>,
    /// A transform reported a writer schema with fields the table lacks while
    /// `maxcompute.schema_evolution` is `add-columns`: the next invocation needs a new
    /// start (which adds them) before it reads a record.
    stale: std::sync::atomic::AtomicBool,
}

/// Resolved secrets and the clients built from them.
pub struct Connections {
    pub staging: Staging,
    pub maxcompute: MaxComputeClient,
    pub kafka: KafkaAuth,
    /// The schema registry, when `[registry]` is configured.
    pub registry: Option<crate::transform::Registry>,
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
        Some(s) if s.mechanism == SaslMechanism::AwsMskIam => {
            let provider = sdk
                .credentials_provider()
                .ok_or_else(|| kafka::MskIamError::Credentials {
                    reason: "the AWS SDK has no credential provider".into(),
                })
                .map_err(kafka::KafkaError::from)?;
            Some(SaslSecrets::AwsMskIam(
                kafka::MskIamSigner::new(
                    s.region.as_deref(),
                    &config.kafka.bootstrap,
                    sdk.region().map(|r| r.as_ref()),
                    provider,
                )
                .map_err(kafka::KafkaError::from)?,
            ))
        }
        Some(s) => {
            let (Some(username), Some(password)) = (&s.username, &s.password) else {
                return Err(ConfigError::Value {
                    key: "kafka.sasl.password".into(),
                    fix: "plain and scram need kafka.sasl.username and kafka.sasl.password".into(),
                }
                .into());
            };
            Some(SaslSecrets::Password {
                mechanism: s.mechanism,
                username: secrets.resolve("kafka.sasl.username", username).await?,
                password: secrets.resolve("kafka.sasl.password", password).await?,
            })
        }
        None => None,
    };
    let tls = match &config.kafka.tls {
        Some(t) => Some(Arc::new(kafka::client_config(
            &kafka::tls_material(config, t, &mut secrets).await?,
        )?)),
        None => None,
    };
    let registry = match &config.registry {
        Some(r) => Some(crate::transform::Registry::from_config(r, &sdk, &mut secrets).await?),
        None => None,
    };
    Ok(Connections {
        staging: Staging::new(&sdk, &config.staging),
        maxcompute,
        kafka: KafkaAuth { sasl, tls },
        registry,
    })
}

/// Loads the chain (precompiled artifacts when they match, else compiled into the cache);
/// `registry` serves the stages granted `registry`.
pub fn load_chain(
    config: &Config,
    registry: Option<&crate::transform::Registry>,
) -> Result<Chain, PipelineError> {
    let host = TransformHost::new()?;
    Ok(host.load_chain(
        crate::transform::stage_specs(config, registry),
        &crate::transform::artifact_cache_dir(),
    )?)
}

/// The destination-partition router of the config's template, for the table's partition keys
/// and the chain's columns, with `${…}` tokens resolved from `time`.
pub(crate) fn router(
    config: &Config,
    chain: &Chain,
    table: &TableInfo,
    time: chrono::DateTime<chrono::Utc>,
) -> Result<Router, RouteError> {
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

impl App {
    /// Cold start: everything that can fail before a record is read fails here.
    pub async fn start(config: Config) -> Result<App, PipelineError> {
        let t = Instant::now();
        let conns = connections(&config).await?;
        let connected = t.elapsed();
        let chain = load_chain(&config, conns.registry.as_ref())?;
        let loaded = t.elapsed();
        let kafka = Kafka::connect(&config.kafka, &conns.kafka).await?;
        let kafka_done = t.elapsed();
        let (table, layout) = evolve::prepare_table(&config, &chain, &conns.maxcompute).await?;
        let modules = chain
            .modules()
            .into_iter()
            .map(|(name, version, sha256)| ModuleVersion {
                name,
                version,
                sha256,
            })
            .collect();
        // Each phase's share, so a slow start names its cause.
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        tracing::info!(
            elapsed_ms = t.elapsed().as_millis() as u64,
            clients_ms = ms(connected),
            transforms_ms = ms(loaded - connected),
            kafka_ms = ms(kafka_done - loaded),
            table_ms = ms(t.elapsed() - kafka_done),
            "cold start done"
        );
        Ok(App {
            log: CommitLog::new(conns.staging, LogScope::main(&config.kafka.cluster)),
            config,
            kafka,
            maxcompute: conns.maxcompute,
            chain,
            table,
            layout,
            modules,
            emit_metrics: false,
            passing_check: std::sync::Mutex::new(None),
            stale: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The same function committing to another log scope (a backfill's own log).
    pub fn in_scope(mut self, scope: LogScope) -> Self {
        self.log = self.log.with_scope(scope);
        self
    }

    /// Runs a trigger until done or `deadline` (minus the configured reserve): plan, then sync
    /// each partition, then report.
    /// Whether a schema change needs a new start before the next invocation (see `stale`).
    pub fn is_stale(&self) -> bool {
        self.stale.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn invoke(
        &self,
        trigger: &Trigger,
        deadline: Instant,
        invocation: &str,
    ) -> Result<InvocationReport, PipelineError> {
        let span = tracing::info_span!("invocation", invocation, trigger = trigger.kind());
        async {
            if let Trigger::Load { .. } = trigger {
                return Ok(InvocationReport {
                    loads: self.load(LoadMode::Due).await,
                    ..InvocationReport::default()
                });
            }
            let topics = plan::topics_to_list(trigger, &self.config)?;
            let partitions = self.kafka.partitions_of(&topics).await?;
            let plan = plan::plan(trigger, &self.config, &partitions);
            let mut outcomes = self
                .sync_all(plan.work, trigger.time(), deadline, invocation)
                .await;
            for refused in plan.refused {
                tracing::error!(tp = %refused.tp, error = %refused.error, "refusing a partition of the event");
                outcomes.push(PartitionOutcome::failed(
                    refused.tp,
                    refused.next,
                    refused.error,
                ));
            }
            if outcomes
                .iter()
                .any(|o| o.error.as_ref().is_some_and(|e| e.kind() == "schema-changed"))
            {
                self.stale.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            let mut report = InvocationReport::new(outcomes);
            report.loads = match trigger {
                Trigger::Kafka { .. } => self.load(LoadMode::Passing).await,
                _ => self.load(LoadMode::Due).await,
            };
            Ok(report)
        }
        .instrument(span)
        .await
    }

    /// A backfill's work: `[from, to)` of every partition of `topics`, resolved on the brokers.
    pub async fn backfill_work(
        &self,
        topics: &[String],
        from: OffsetSpec,
        to: OffsetSpec,
    ) -> Result<Vec<Work>, PipelineError> {
        let mut out = Vec::new();
        for (topic, partitions) in self.kafka.partitions_of(topics).await? {
            for partition in partitions {
                let tp = TopicPartition::new(topic.clone(), partition);
                let reader = self.kafka.partition(&tp).await?;
                let start = reader.resolve(from).await?;
                let end = reader.resolve(to).await?;
                out.push(plan::backfill(tp, (from, start), (to, end))?);
            }
        }
        Ok(out)
    }

    /// Stages planned work (a backfill's ranges) in the invocation span: every partition's
    /// batches, committed and pending for their table's load. The report has no loads: the
    /// caller runs [`App::load`], which a backfill runs beside its next pass
    /// (`docs/architecture.md`, "Staging and loading").
    pub async fn stage_work(
        &self,
        work: Vec<Work>,
        deadline: Instant,
        invocation: &str,
    ) -> InvocationReport {
        let span = tracing::info_span!("invocation", invocation, trigger = "backfill");
        let outcomes = self
            .sync_all(work, chrono::Utc::now(), deadline, invocation)
            .instrument(span)
            .await;
        InvocationReport::new(outcomes)
    }

    /// Syncs every partition of `work`, `limits.concurrency` at once.
    async fn sync_all(
        &self,
        work: Vec<Work>,
        time: chrono::DateTime<chrono::Utc>,
        deadline: Instant,
        invocation: &str,
    ) -> Vec<PartitionOutcome> {
        let router = match router(&self.config, &self.chain, &self.table, time) {
            Ok(r) => r,
            Err(e) => {
                return work
                    .into_iter()
                    .map(|w| PartitionOutcome::failed(w.tp, None, e.clone().into()))
                    .collect();
            }
        };
        let ctx = &self.context(&self.log, &router, invocation);
        futures_util::stream::iter(work)
            .map(|w| async move {
                let outcome = sync_partition(ctx, &self.kafka, &w, deadline).await;
                if self.emit_metrics {
                    metrics::emit(&outcome);
                }
                outcome
            })
            .buffer_unordered(self.config.limits.concurrency)
            .collect()
            .await
    }

    fn context<'a>(
        &'a self,
        log: &'a CommitLog,
        router: &'a Router,
        invocation: &'a str,
    ) -> BatchContext<'a> {
        BatchContext {
            config: &self.config,
            log,
            maxcompute: &self.maxcompute,
            chain: &self.chain,
            layout: &self.layout,
            router,
            modules: &self.modules,
            invocation,
        }
    }

    /// Loads the records of a dead-letter object again through the current chain, exactly once:
    /// under a log scope of its own (the cluster's replay of a hash of the key), keyed by the
    /// object's first offset. Records that still fail become dead letters of the replay, which
    /// can be replayed in their turn.
    pub async fn replay(
        &self,
        key: &str,
        invocation: &str,
    ) -> Result<Vec<BatchReport>, PipelineError> {
        let span = tracing::info_span!("invocation", invocation, trigger = "replay", key);
        async {
            if !deadletters::is_committed(self.log.staging(), key).await? {
                return Err(PipelineError::NotReplayable {
                    key: key.to_owned(),
                });
            }
            let groups = deadletters::read(self.log.staging(), key).await?;
            let object: String = sha2::Sha256::digest(key.as_bytes())
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect();
            let log = self
                .log
                .with_scope(LogScope::replay(&self.config.kafka.cluster, object));
            let router = router(&self.config, &self.chain, &self.table, chrono::Utc::now())?;
            let ctx = self.context(&log, &router, invocation);
            let mut reports = Vec::new();
            for (tp, records) in groups {
                let start = records.iter().map(|r| r.offset).min().unwrap_or(0);
                let end = records.iter().map(|r| r.offset).max().unwrap_or(0) + 1;
                // Batches chain from the object's first offset until its last is committed: a
                // byte limit may cut the replay into several (the next starts where one ended).
                let mut next = start;
                while next < end {
                    if let Some(entry) = log.entry(&tp, next).await? {
                        tracing::info!(%tp, start = next, "dead letters already replayed");
                        next = entry.intent.batch.end;
                        continue;
                    }
                    let resumable = log.intent(&tp, next).await?;
                    match run_batch(&ctx, None, &tp, (next, end), &records, resumable).await {
                        Ok(r) => {
                            next = r.batch.end;
                            reports.push(r);
                        }
                        // A racing replay committed it: its entry is read on the next turn.
                        Err(e @ PipelineError::LostRace { .. }) => {
                            if log.entry(&tp, next).await?.is_none() {
                                return Err(e);
                            }
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(reports)
        }
        .instrument(span)
        .await
    }
}
