//! The function's configuration: one TOML file, then environment overrides, then secret
//! references resolved (`secrets`). Read once at cold start; every stage takes its settings from
//! here. Unknown keys are errors, so a typo never silently falls back to a default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::secret::SecretRef;
use crate::tunnel::Compression;

mod error;
mod load;
mod registry;

pub use error::ConfigError;
pub use load::LoadConfig;
pub use registry::{RegistryConfig, RegistryKind};

/// Environment variables starting with this override config keys: `K2MC__KAFKA__TOPICS='["a"]'`
/// sets `kafka.topics`. Values are read as TOML values, and as plain strings if they are not.
pub const ENV_PREFIX: &str = "K2MC__";

/// Default memory cap per transform instance (`[[transforms]] memory_mb`).
pub const DEFAULT_MEMORY_LIMIT: usize = 128 * 1024 * 1024;
/// Default wall-time budget per transform call (`[[transforms]] deadline_ms`).
pub const DEFAULT_CALL_DEADLINE: Duration = Duration::from_secs(2);

/// The most blocks of one session a load sends at once (`load.parallel_blocks`): each holds
/// about two staged pieces in memory.
pub const MAX_PARALLEL_BLOCKS: usize = 16;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub maxcompute: MaxComputeConfig,
    pub staging: StagingConfig,
    #[serde(default)]
    pub transforms: Vec<StageConfig>,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub load: LoadConfig,
    /// The schema registry parser stages granted `registry` read from.
    #[serde(default)]
    pub registry: Option<RegistryConfig>,
    /// Where the config file lives; relative paths in it are resolved against this directory.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// Where the records come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port` of one or more brokers.
    pub bootstrap: Vec<String>,
    /// A stable name of the cluster: part of every batch identity and staging key.
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// Topics a schedule tick syncs (every partition of each).
    pub topics: Vec<String>,
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Upper bound of one fetch response.
    #[serde(default = "default_fetch_max_bytes")]
    pub fetch_max_bytes: i32,
    /// How long the broker may hold a fetch waiting for data.
    #[serde(default = "default_fetch_max_wait_ms")]
    pub fetch_max_wait_ms: i32,
    /// Where a partition with no commit log yet starts.
    #[serde(default)]
    pub start_from: StartFrom,
    #[serde(default)]
    pub sasl: Option<SaslConfig>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// The first offset of a partition the function has never synced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    #[default]
    Earliest,
    Latest,
}

/// SASL authentication: PLAIN and SCRAM with a username and password, or Amazon MSK's IAM
/// access control with the function's own AWS credentials (Kerberos/GSSAPI is not available).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    pub mechanism: SaslMechanism,
    /// PLAIN and SCRAM only.
    #[serde(default)]
    pub username: Option<SecretRef>,
    /// PLAIN and SCRAM only.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// `aws-msk-iam` only: the cluster's AWS region (default: from the broker host name,
    /// `b-1.<cluster>.<id>.c2.kafka.<region>.amazonaws.com`, else the AWS SDK's region).
    #[serde(default)]
    pub region: Option<String>,
}

/// The SASL mechanism, named as Kafka names it (`SCRAM-SHA-512`) or in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "plain", alias = "PLAIN")]
    Plain,
    #[serde(rename = "scram-sha-256", alias = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "scram-sha-512", alias = "SCRAM-SHA-512")]
    ScramSha512,
    /// Amazon MSK IAM access control: SASL OAUTHBEARER carrying a SigV4-signed
    /// `kafka-cluster:Connect` request made from the function's AWS credentials.
    #[serde(rename = "aws-msk-iam", alias = "AWS_MSK_IAM")]
    AwsMskIam,
}

/// TLS to the brokers. The CA to trust comes from `ca_file` or `ca` (a secret reference holding
/// PEM, e.g. the event source mapping's `SERVER_ROOT_CA_CERTIFICATE` secret `#certificate`);
/// with neither, the bundled Mozilla roots. `client_certificate` and `client_key` (PEM, by secret
/// reference: the mapping's `CLIENT_CERTIFICATE_TLS_AUTH` secret `#certificate` and
/// `#privateKey`) authenticate k2mc to brokers that require mutual TLS.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub ca: Option<SecretRef>,
    #[serde(default)]
    pub client_certificate: Option<SecretRef>,
    #[serde(default)]
    pub client_key: Option<SecretRef>,
}

/// Where the rows go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxComputeConfig {
    /// REST endpoint including `/api`.
    pub endpoint: url::Url,
    pub project: String,
    pub table: String,
    pub access_id: SecretRef,
    pub access_key: SecretRef,
    #[serde(default)]
    pub sts_token: Option<SecretRef>,
    /// Destination partition: `ds={event_time:%Y%m%d}` (from a row column) or `ds=${yyyymmdd}`
    /// (from the trigger time, DataWorks style). Empty for a table without partitions.
    #[serde(default)]
    pub partition: String,
    /// Create missing destination partitions before loading.
    #[serde(default = "yes")]
    pub create_partitions: bool,
    /// What a column the transforms emit and the table lacks becomes (default: `ignore` when
    /// the parser is granted `registry`, else `strict`).
    #[serde(default)]
    pub schema_evolution: Option<SchemaEvolution>,
}

/// How the function treats output columns the table does not have (a new schema version's
/// fields, docs/transforms.md "Schema evolution").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchemaEvolution {
    /// An error at start naming the columns (the default without a registry parser).
    Strict,
    /// Not loaded; logged once per start and once per new schema id.
    Ignore,
    /// `ALTER TABLE … ADD COLUMNS` before any row that needs them is loaded.
    AddColumns,
}

/// The bucket that holds staged blocks, intents, dead letters and the commit log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagingConfig {
    pub bucket: String,
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// An S3-compatible endpoint (OSS, a local server); empty for AWS S3.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// How create-only writes are expressed.
    #[serde(default)]
    pub provider: StorageProvider,
    /// Whether the bodies of the objects written are signed; see [`StagingConfig::signs_payload`].
    #[serde(default)]
    pub payload_signing: PayloadSigning,
}

/// `[staging] payload_signing`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadSigning {
    /// Unsigned where the signature adds nothing; see [`StagingConfig::signs_payload`].
    #[default]
    Auto,
    /// Every body signed (a SHA-256 over every byte written).
    Always,
}

impl StagingConfig {
    /// Whether a PUT's body is covered by its SigV4 signature: a SHA-256 over every staged byte,
    /// a few per cent of the function's CPU (docs/bench/README.md, "The bucket's payload
    /// signature"). Over TLS the channel already protects the body against tampering, and the
    /// SDK sends a CRC-32 of it that S3 checks against corruption, so `auto` leaves it unsigned
    /// (`UNSIGNED-PAYLOAD`, as AWS's own SDKs send over HTTPS); likewise on loopback, where no
    /// network lies between. Over plain HTTP to another host the signature is the body's only
    /// protection and stays, and OSS's S3 API requires the body's hash on PUT, so OSS signs.
    pub fn signs_payload(&self) -> bool {
        if self.payload_signing == PayloadSigning::Always || self.provider == StorageProvider::Oss {
            return true;
        }
        let Some(endpoint) = &self.endpoint else {
            // AWS S3's own endpoints: HTTPS.
            return false;
        };
        match url::Url::parse(endpoint) {
            Ok(url) if url.scheme() == "https" => false,
            Ok(url) => !url.host_str().is_some_and(is_loopback_host),
            Err(_) => true,
        }
    }
}

/// The object store dialect of conditional writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageProvider {
    /// `If-None-Match: *`.
    #[default]
    S3,
    /// `x-oss-forbid-overwrite: true`.
    Oss,
}

/// One transform stage; the first is the parser.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    pub name: String,
    /// The component; a precompiled `<wasm>.cwasm` beside it is used when it matches.
    pub wasm: PathBuf,
    /// Settings passed to the stage's `configure`, as strings.
    #[serde(default)]
    pub settings: toml::Table,
    /// Grant the wall clock (otherwise frozen at the epoch).
    #[serde(default)]
    pub clocks: bool,
    /// Grant real randomness (otherwise a fixed sequence).
    #[serde(default)]
    pub random: bool,
    /// Grant schemas from `[registry]` (WIT interface `registry`; parser stages only).
    #[serde(default)]
    pub registry: bool,
    #[serde(default = "default_memory_mb")]
    pub memory_mb: usize,
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
}

/// Bounds of one batch and of the invocation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most records in one batch (one commit-log entry).
    #[serde(default = "default_batch_records")]
    pub batch_records: u64,
    /// Most Kafka bytes (keys and values) in one batch.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: u64,
    /// Uncompressed size at which a Tunnel block is closed and staged.
    #[serde(default = "default_block_bytes")]
    pub block_bytes: usize,
    /// Records handed to the transform chain per call.
    #[serde(default = "default_transform_records")]
    pub transform_records: usize,
    /// Key, value and header bytes after which a call into the transform chain closes, whatever
    /// its record count: each component's linear memory grows to the largest call it sees.
    #[serde(default = "default_transform_bytes")]
    pub transform_bytes: usize,
    /// Threads transforming a batch's chunks while it is fetched and encoded; 0 (the default)
    /// means one per CPU the function has.
    #[serde(default)]
    pub transform_workers: usize,
    /// How staged blocks are compressed: `lz4` (the least CPU per record), `deflate` (the
    /// fewest bytes) or `auto` (the default; [`Config::compression`] says which it picks).
    #[serde(default)]
    pub compression: CompressionSetting,
    /// Partitions synced at the same time.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// No new batch starts when less than this is left of the invocation.
    #[serde(default = "default_reserve_ms")]
    pub time_reserve_ms: u64,
    /// Batches per partition in one invocation (a schedule tick catches up in several).
    #[serde(default = "default_batches")]
    pub batches_per_invocation: u32,
    /// Dead letters a batch may have and still commit: a count (`"100"`) or a ratio (`"1%"`).
    #[serde(default = "default_error_limit")]
    pub error_limit: ErrorLimit,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            batch_records: default_batch_records(),
            batch_bytes: default_batch_bytes(),
            block_bytes: default_block_bytes(),
            transform_records: default_transform_records(),
            transform_bytes: default_transform_bytes(),
            transform_workers: 0,
            compression: CompressionSetting::Auto,
            concurrency: default_concurrency(),
            time_reserve_ms: default_reserve_ms(),
            batches_per_invocation: default_batches(),
            error_limit: default_error_limit(),
        }
    }
}

/// `[limits] compression`: a compression for staged blocks, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionSetting {
    /// LZ4 where the bytes to MaxCompute cost nothing (an endpoint on Alibaba Cloud's internal
    /// network, or this machine), deflate where they leave the function's cloud and are billed
    /// per GB (docs/bench/README.md, "LZ4 frames").
    #[default]
    Auto,
    Lz4,
    Deflate,
}

impl LimitsConfig {
    pub fn time_reserve(&self) -> Duration {
        Duration::from_millis(self.time_reserve_ms)
    }

    /// Transform worker threads per batch: `transform_workers`, or one per available CPU.
    pub fn workers(&self) -> usize {
        match self.transform_workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
}

/// DataWorks' errorLimit: a batch with more dead letters than this commits nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ErrorLimit {
    Count(u64),
    /// A fraction of the batch's records (0.0..=1.0).
    Ratio(f64),
}

impl ErrorLimit {
    /// True when `dead` dead letters out of `read` records exceed the limit.
    pub fn exceeded(&self, dead: u64, read: u64) -> bool {
        match *self {
            ErrorLimit::Count(n) => dead > n,
            ErrorLimit::Ratio(r) => read > 0 && (dead as f64) > r * read as f64,
        }
    }
}

impl std::fmt::Display for ErrorLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorLimit::Count(n) => write!(f, "{n}"),
            ErrorLimit::Ratio(r) => write!(f, "{}%", r * 100.0),
        }
    }
}

impl<'de> Deserialize<'de> for ErrorLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        let bad = |t: &str| {
            serde::de::Error::custom(format!(
                "error_limit must be a count like \"100\" or a ratio like \"0.5%\", not {t:?}"
            ))
        };
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ErrorLimit::Count(n)),
            Raw::Text(t) => {
                let t = t.trim();
                if let Some(p) = t.strip_suffix('%') {
                    let v: f64 = p.trim().parse().map_err(|_| bad(t))?;
                    if !(0.0..=100.0).contains(&v) {
                        return Err(bad(t));
                    }
                    Ok(ErrorLimit::Ratio(v / 100.0))
                } else {
                    t.parse().map(ErrorLimit::Count).map_err(|_| bad(t))
                }
            }
        }
    }
}

fn yes() -> bool {
    true
}
fn default_cluster() -> String {
    "default".into()
}
fn default_client_id() -> String {
    "k2mc".into()
}
fn default_fetch_max_bytes() -> i32 {
    4 * 1024 * 1024
}
fn default_fetch_max_wait_ms() -> i32 {
    10
}
fn default_prefix() -> String {
    "k2mc".into()
}
fn default_memory_mb() -> usize {
    DEFAULT_MEMORY_LIMIT / (1024 * 1024)
}
fn default_deadline_ms() -> u64 {
    DEFAULT_CALL_DEADLINE.as_millis() as u64
}
fn default_batch_records() -> u64 {
    500_000
}
fn default_batch_bytes() -> u64 {
    256 * 1024 * 1024
}
fn default_block_bytes() -> usize {
    8 * 1024 * 1024
}
fn default_transform_records() -> usize {
    1000
}
fn default_transform_bytes() -> usize {
    1024 * 1024
}
fn default_concurrency() -> usize {
    4
}
fn default_reserve_ms() -> u64 {
    20_000
}
fn default_batches() -> u32 {
    16
}
fn default_error_limit() -> ErrorLimit {
    ErrorLimit::Count(0)
}

/// The smallest valid config: the keys without defaults and one transform. Tests of every crate
/// start from it and change what they need.
pub const MINIMAL_EXAMPLE: &str = r#"
[kafka]
bootstrap = ["127.0.0.1:9092"]
topics = ["vehicles"]

[maxcompute]
endpoint = "http://127.0.0.1:8080/api"
project = "p"
table = "t"
access_id = "env:ID"
access_key = "env:KEY"

[staging]
bucket = "b"

[[transforms]]
name = "parse"
wasm = "kafka_columns.wasm"
settings = { columns = "id:bigint" }
"#;

impl Config {
    /// The compression staged blocks are written in: `limits.compression`, or for `auto`, LZ4
    /// when the MaxCompute endpoint is on Alibaba Cloud's internal network (`*.aliyun-inc.com`,
    /// a VPC or classic-network endpoint) or this machine, deflate otherwise: LZ4 costs a fifth
    /// of deflate's CPU and writes 1.5 to 2 times the bytes, which a public endpoint bills.
    pub fn compression(&self) -> Compression {
        match self.limits.compression {
            CompressionSetting::Lz4 => Compression::Lz4,
            CompressionSetting::Deflate => Compression::Deflate,
            CompressionSetting::Auto => {
                let host = self.maxcompute.endpoint.host_str().unwrap_or_default();
                if is_loopback_host(host) || host.ends_with(".aliyun-inc.com") {
                    Compression::Lz4
                } else {
                    Compression::Deflate
                }
            }
        }
    }

    /// Reads `path`, applies `K2MC__…` overrides from `env`, and checks the result.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text, env).map_err(|e| e.in_file(path))?;
        config.base_dir = path
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(config)
    }

    /// Parses TOML text with overrides (no file system access).
    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    path: None,
                    message: e.to_string(),
                })?;
        for (name, value) in env {
            if let Some(key) = name.strip_prefix(ENV_PREFIX) {
                apply_override(&mut table, key, &value)?;
            }
        }
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    path: None,
                    message: e.to_string(),
                })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, fix: &str| {
            Err(ConfigError::Value {
                key: key.to_owned(),
                fix: fix.to_owned(),
            })
        };
        if self.kafka.bootstrap.is_empty() {
            return fail(
                "kafka.bootstrap",
                "list at least one broker as \"host:port\"",
            );
        }
        if self.kafka.topics.is_empty() {
            return fail("kafka.topics", "list the topics to sync");
        }
        if self.transforms.is_empty() {
            return fail(
                "transforms",
                "add at least one [[transforms]] stage (the parser, e.g. kafka-columns)",
            );
        }
        if let Some((key, fix)) = self.registry.as_ref().and_then(RegistryConfig::problem) {
            return fail(key, fix);
        }
        if let Some(t) = self.transforms.iter().skip(1).find(|t| t.registry) {
            return fail(
                "transforms.registry",
                &format!(
                    "only the first (parser) stage may be granted registry; remove it from '{}'",
                    t.name
                ),
            );
        }
        if self.registry.is_none()
            && let Some(t) = self.transforms.iter().find(|t| t.registry)
        {
            return fail(
                "registry.url",
                &format!(
                    "stage '{}' is granted registry: add a [registry] section with the registry's url",
                    t.name
                ),
            );
        }
        if self.limits.batch_records == 0 || self.limits.batch_bytes == 0 {
            return fail("limits.batch_records", "use a positive number");
        }
        if self.limits.block_bytes < 64 * 1024 {
            return fail("limits.block_bytes", "use at least 65536");
        }
        if self.load.block_bytes < self.limits.block_bytes as u64 {
            return fail(
                "load.block_bytes",
                "use at least limits.block_bytes (a load joins staged blocks, it never splits one)",
            );
        }
        if !(1..=MAX_PARALLEL_BLOCKS).contains(&self.load.parallel_blocks) {
            return fail(
                "load.parallel_blocks",
                &format!("use 1 to {MAX_PARALLEL_BLOCKS} (blocks of one session sent at once)"),
            );
        }
        if self.limits.concurrency == 0 {
            return fail("limits.concurrency", "use a positive number");
        }
        if self.limits.transform_records == 0 {
            return fail("limits.transform_records", "use a positive number");
        }
        if self.limits.transform_bytes == 0 {
            return fail(
                "limits.transform_bytes",
                "use a positive number (a call still takes one record larger than it)",
            );
        }
        if self.kafka.cluster.contains('/') || self.kafka.cluster.is_empty() {
            return fail("kafka.cluster", "use a non-empty name without '/'");
        }
        // PLAIN sends the password as it is: only over TLS, or to a broker on this machine.
        let plain = self
            .kafka
            .sasl
            .as_ref()
            .is_some_and(|s| s.mechanism == SaslMechanism::Plain);
        if plain && self.kafka.tls.is_none() && !self.kafka.bootstrap.iter().all(|b| is_loopback(b))
        {
            return fail(
                "kafka.sasl.mechanism",
                "plain would send the password unencrypted to a remote broker; add [kafka.tls] (tls = {} trusts the public CAs) or use scram-sha-512",
            );
        }
        if let Some(s) = &self.kafka.sasl {
            let iam = s.mechanism == SaslMechanism::AwsMskIam;
            if iam && (s.username.is_some() || s.password.is_some()) {
                return fail(
                    "kafka.sasl.username",
                    "aws-msk-iam signs in with the function's AWS credentials (its role); remove kafka.sasl.username and .password",
                );
            }
            if !iam && (s.username.is_none() || s.password.is_none()) {
                return fail(
                    "kafka.sasl.password",
                    "plain and scram need kafka.sasl.username and kafka.sasl.password (secret references)",
                );
            }
            if !iam && s.region.is_some() {
                return fail(
                    "kafka.sasl.region",
                    "region is for aws-msk-iam only; remove it",
                );
            }
            // The token is a bearer credential for 15 minutes: never in the clear off this host.
            if iam
                && self.kafka.tls.is_none()
                && !self.kafka.bootstrap.iter().all(|b| is_loopback(b))
            {
                return fail(
                    "kafka.sasl.mechanism",
                    "aws-msk-iam needs TLS (MSK serves IAM on port 9098 over TLS); add [kafka.tls] (tls = {} trusts the public CAs)",
                );
            }
        }
        if let Some(tls) = &self.kafka.tls {
            if tls.ca.is_some() && tls.ca_file.is_some() {
                return fail(
                    "kafka.tls.ca",
                    "set either kafka.tls.ca (a secret reference) or kafka.tls.ca_file, not both",
                );
            }
            if tls.client_certificate.is_some() != tls.client_key.is_some() {
                return fail(
                    "kafka.tls.client_certificate",
                    "mutual TLS needs both kafka.tls.client_certificate and kafka.tls.client_key",
                );
            }
        }
        Ok(())
    }

    /// `maxcompute.schema_evolution`, or its default: `ignore` when the parser is granted the
    /// schema registry (its tables follow a subject), `strict` otherwise.
    pub fn schema_evolution(&self) -> SchemaEvolution {
        self.maxcompute.schema_evolution.unwrap_or_else(|| {
            if self.transforms.first().is_some_and(|t| t.registry) {
                SchemaEvolution::Ignore
            } else {
                SchemaEvolution::Strict
            }
        })
    }

    /// Every secret reference in the config with its key, in the order they are resolved.
    pub fn secret_refs(&self) -> Vec<(&'static str, &SecretRef)> {
        let mc = &self.maxcompute;
        let mut refs = vec![
            ("maxcompute.access_id", &mc.access_id),
            ("maxcompute.access_key", &mc.access_key),
        ];
        refs.extend(mc.sts_token.as_ref().map(|r| ("maxcompute.sts_token", r)));
        if let Some(s) = &self.kafka.sasl {
            refs.extend(s.username.as_ref().map(|r| ("kafka.sasl.username", r)));
            refs.extend(s.password.as_ref().map(|r| ("kafka.sasl.password", r)));
        }
        if let Some(t) = &self.kafka.tls {
            refs.extend(t.ca.as_ref().map(|r| ("kafka.tls.ca", r)));
            refs.extend(
                t.client_certificate
                    .as_ref()
                    .map(|r| ("kafka.tls.client_certificate", r)),
            );
            refs.extend(t.client_key.as_ref().map(|r| ("kafka.tls.client_key", r)));
        }
        if let Some(r) = &self.registry {
            refs.extend(r.username.as_ref().map(|r| ("registry.username", r)));
            refs.extend(r.password.as_ref().map(|r| ("registry.password", r)));
        }
        refs
    }

    /// A path from the config, relative to the config file's directory.
    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        }
    }
}

/// Whether a `host:port` broker address is this machine.
fn is_loopback(address: &str) -> bool {
    is_loopback_host(address.rsplit_once(':').map_or(address, |(h, _)| h))
}

/// Whether a host name or address (IPv6 with or without brackets) is this machine: where
/// credentials may travel unencrypted (Kafka SASL PLAIN, MaxCompute over http).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Sets `a__b__c` in `table` to `raw` (a TOML value, or a string when it does not parse as one).
fn apply_override(table: &mut toml::Table, key: &str, raw: &str) -> Result<(), ConfigError> {
    let parts: Vec<String> = key.split("__").map(str::to_ascii_lowercase).collect();
    let dotted = parts.join(".");
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let (last, parents) = parts.split_last().ok_or_else(|| ConfigError::Value {
        key: format!("{ENV_PREFIX}{key}"),
        fix: "name a key, e.g. K2MC__KAFKA__TOPICS".into(),
    })?;
    let mut cursor = table;
    for part in parents {
        let entry = cursor
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cursor = entry.as_table_mut().ok_or_else(|| ConfigError::Value {
            key: dotted.clone(),
            fix: format!("{part} is not a table; override a key inside a table"),
        })?;
    }
    cursor.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests;
