//! The Kafka connection: cold start connects to the brokers (SASL, TLS material from [`tls`]),
//! lists partitions and hands the fetch stage one client per partition
//! ([`crate::pipeline::fetch`] reads through it). Refusals that no retry cures (a TLS handshake,
//! a SASL login) fail at once and name the setting to fix; a broker that is down is retried.

use std::sync::Arc;
use std::time::Duration;

use rskafka::BackoffConfig;
use rskafka::client::partition::UnknownTopicHandling;
use rskafka::client::{Client, ClientBuilder, Credentials, OauthBearerCredentials, SaslConfig};
use thiserror::Error;

use crate::config::{KafkaConfig, SaslMechanism};
use crate::maxcompute::Secret;
use crate::pipeline::fetch::{CheckedFetch, PartitionReader};
use k2mc_formats::event::TopicPartition;

pub mod msk_iam;
mod tls;
pub use msk_iam::{MskIamError, MskIamSigner};
pub use tls::{Pem, TlsMaterial, client_config, tls_material};

/// Why the brokers could not be reached or asked.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// Connecting failed for a minute of retries (brokers down, unreachable, wrong address).
    #[error("kafka: cannot connect to {brokers}: {source}")]
    Connect {
        brokers: String,
        #[source]
        source: Box<rskafka::client::error::Error>,
    },
    /// The TLS handshake was refused; `fix` names the setting.
    #[error("kafka tls: the TLS handshake with {brokers} failed ({cause}); {fix}")]
    Tls {
        brokers: String,
        cause: String,
        fix: &'static str,
    },
    /// `[kafka.tls]` material that cannot be used (named by its config key).
    #[error("kafka tls: {reason}")]
    TlsMaterial { reason: String },
    /// The brokers refused the SASL login.
    #[error(
        "kafka sasl: the brokers at {brokers} refused the login ({cause}); check kafka.sasl.mechanism against what the brokers offer, and kafka.sasl.username and .password"
    )]
    Sasl { brokers: String, cause: String },
    /// The brokers refused the MSK IAM login.
    #[error(
        "kafka aws-msk-iam: the brokers at {brokers} refused the login ({cause}); check that the function's role allows kafka-cluster:Connect on the cluster (and DescribeTopic, ReadData on the topics), that kafka.sasl.region ({region}) is the cluster's, and that the brokers are the cluster's IAM listener (port 9098)"
    )]
    MskIam {
        brokers: String,
        region: String,
        cause: String,
    },
    /// A metadata request failed after the connection was made.
    #[error("kafka {operation} on {topic}: {source}")]
    Request {
        operation: &'static str,
        topic: String,
        #[source]
        source: Box<rskafka::client::error::Error>,
    },
    /// No MSK IAM token could be made.
    #[error(transparent)]
    Token(#[from] MskIamError),
    /// A configured topic the brokers do not have.
    #[error(
        "topic {topic} (not on the brokers) is not in kafka.topics of the config; add it or remove the trigger"
    )]
    UnknownTopic { topic: String },
}

/// A connection failure no retry cures, recognised from rskafka's error. rskafka 0.6 folds the
/// per-broker connection errors into a `MultiError` that exposes no source (and wraps rustls
/// errors in a poisoned-connection error), so the text is the only evidence it gives; the
/// integration tests `kafka_tls` and `secrets` pin each case.
fn refusal(
    brokers: &str,
    auth: &KafkaAuth,
    error: &rskafka::client::error::Error,
) -> Option<KafkaError> {
    let text = error.to_string();
    let cause = text.rsplit("Source: ").next().unwrap_or(&text).to_owned();
    if auth.tls.is_some()
        && let Some(fix) = tls::handshake_refusal(&text)
    {
        return Some(KafkaError::Tls {
            brokers: brokers.to_owned(),
            cause,
            fix,
        });
    }
    // rskafka reports every SASL failure (an unknown mechanism, wrong credentials) as a failed
    // handshake.
    if text.contains("Sasl handshake failed") {
        return match &auth.sasl {
            Some(SaslSecrets::AwsMskIam(signer)) => Some(KafkaError::MskIam {
                brokers: brokers.to_owned(),
                region: signer.region().to_owned(),
                cause,
            }),
            Some(SaslSecrets::Password { .. }) => Some(KafkaError::Sasl {
                brokers: brokers.to_owned(),
                cause,
            }),
            None => None,
        };
    }
    None
}

/// A connected Kafka cluster.
pub struct Kafka {
    client: Client,
    fetch_max_bytes: i32,
    fetch_max_wait_ms: i32,
}

impl std::fmt::Debug for Kafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kafka").finish_non_exhaustive()
    }
}

/// The resolved SASL login.
#[derive(Debug, Clone)]
pub enum SaslSecrets {
    /// PLAIN or SCRAM with a username and password.
    Password {
        mechanism: SaslMechanism,
        username: Secret,
        password: Secret,
    },
    /// MSK IAM: a token signed from the function's AWS credentials at every login.
    AwsMskIam(MskIamSigner),
}

/// How to reach the brokers, resolved at cold start: SASL credentials and the TLS config
/// (`None`: plaintext).
#[derive(Debug, Clone, Default)]
pub struct KafkaAuth {
    pub sasl: Option<SaslSecrets>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Kafka {
    /// Connects to the bootstrap brokers. A first attempt is made without retries, so that a
    /// TLS refusal (a missing or untrusted certificate) or a refused SASL login fails at once
    /// with its fix; anything else (a broker that is down or restarting) is retried for up to a
    /// minute.
    pub async fn connect(config: &KafkaConfig, auth: &KafkaAuth) -> Result<Kafka, KafkaError> {
        let brokers = config.bootstrap.join(",");
        let client = match Kafka::builder(config, auth, Duration::ZERO).build().await {
            Ok(client) => client,
            Err(first) => {
                if let Some(refused) = refusal(&brokers, auth, &first) {
                    return Err(refused);
                }
                Kafka::builder(config, auth, Duration::from_secs(60))
                    .build()
                    .await
                    .map_err(|source| KafkaError::Connect {
                        brokers,
                        source: Box::new(source),
                    })?
            }
        };
        Ok(Kafka {
            client,
            fetch_max_bytes: config.fetch_max_bytes,
            fetch_max_wait_ms: config.fetch_max_wait_ms,
        })
    }

    /// A client builder whose retries stop after `deadline`.
    fn builder(config: &KafkaConfig, auth: &KafkaAuth, deadline: Duration) -> ClientBuilder {
        let mut builder = ClientBuilder::new(config.bootstrap.clone())
            .client_id(config.client_id.clone())
            .backoff_config(BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
                deadline: Some(deadline),
            });
        if let Some(tls) = &auth.tls {
            builder = builder.tls_config(Arc::clone(tls));
        }
        match &auth.sasl {
            Some(SaslSecrets::Password {
                mechanism,
                username,
                password,
            }) => {
                let creds =
                    Credentials::new(username.expose().to_owned(), password.expose().to_owned());
                builder = builder.sasl_config(match mechanism {
                    SaslMechanism::Plain => SaslConfig::Plain(creds),
                    SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(creds),
                    // The config never pairs a password with IAM (checked on load).
                    SaslMechanism::ScramSha512 | SaslMechanism::AwsMskIam => {
                        SaslConfig::ScramSha512(creds)
                    }
                });
            }
            Some(SaslSecrets::AwsMskIam(signer)) => {
                // rskafka calls this at every SASL login: each connection signs afresh.
                let signer = signer.clone();
                let callback: rskafka::client::OauthCallback = Arc::new(move || {
                    let signer = signer.clone();
                    Box::pin(async move {
                        signer
                            .token()
                            .await
                            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                    })
                });
                builder = builder.sasl_config(SaslConfig::Oauthbearer(OauthBearerCredentials {
                    callback,
                    authz_id: None,
                    bearer_kvs: Vec::new(),
                }));
            }
            None => {}
        }
        builder
    }

    /// The partition numbers of `topic`.
    pub async fn partitions(&self, topic: &str) -> Result<Vec<i32>, KafkaError> {
        let topics = self
            .client
            .list_topics()
            .await
            .map_err(|source| KafkaError::Request {
                operation: "list topics",
                topic: topic.to_owned(),
                source: Box::new(source),
            })?;
        let found = topics
            .into_iter()
            .find(|t| t.name == topic)
            .ok_or_else(|| KafkaError::UnknownTopic {
                topic: topic.to_owned(),
            })?;
        let mut parts: Vec<i32> = found.partitions.into_iter().collect();
        parts.sort_unstable();
        Ok(parts)
    }

    /// A client for one partition (follows leadership changes).
    pub async fn partition(&self, tp: &TopicPartition) -> Result<PartitionReader, KafkaError> {
        let client = self
            .client
            .partition_client(tp.topic.clone(), tp.partition, UnknownTopicHandling::Error)
            .await
            .map_err(|source| KafkaError::Request {
                operation: "connect to partition leader",
                topic: tp.to_string(),
                source: Box::new(source),
            })?;
        Ok(CheckedFetch::new(
            client,
            tp.clone(),
            self.fetch_max_bytes,
            self.fetch_max_wait_ms,
        ))
    }

    /// The partitions of every topic in `topics`, by topic.
    pub async fn partitions_of(
        &self,
        topics: &[String],
    ) -> Result<std::collections::BTreeMap<String, Vec<i32>>, KafkaError> {
        let mut out = std::collections::BTreeMap::new();
        for topic in topics {
            out.insert(topic.clone(), self.partitions(topic).await?);
        }
        Ok(out)
    }
}
