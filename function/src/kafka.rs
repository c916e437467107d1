//! The fetch stage: reads exactly `[start, end)` of a partition with rskafka, chunk by chunk, so
//! memory is bounded by the fetch size and not by the range. Records an event source mapping
//! already delivered are used as they are; only the gaps are fetched. TLS material is in
//! [`tls`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rskafka::BackoffConfig;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};

use crate::commitlog::TopicPartition;
use crate::config::{KafkaConfig, SaslMechanism};
use crate::error::PipelineError;
use crate::maxcompute::Secret;
use crate::transform::bindings::{Header, KafkaRecord};

mod tls;
pub use tls::{Pem, TlsMaterial, client_config, tls_material};

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

/// Resolved SASL credentials.
#[derive(Debug, Clone)]
pub struct SaslSecrets {
    pub mechanism: SaslMechanism,
    pub username: Secret,
    pub password: Secret,
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
    pub async fn connect(config: &KafkaConfig, auth: &KafkaAuth) -> Result<Kafka, PipelineError> {
        let brokers = config.bootstrap.join(",");
        let client = match Kafka::builder(config, auth, Duration::ZERO).build().await {
            Ok(client) => client,
            Err(first) => {
                let text = first.to_string();
                let cause = text.rsplit("Source: ").next().unwrap_or(&text);
                if auth.tls.is_some()
                    && let Some(fix) = tls::handshake_refusal(&text)
                {
                    return Err(PipelineError::KafkaTls {
                        reason: format!("the TLS handshake with {brokers} failed ({cause}); {fix}"),
                    });
                }
                // rskafka reports every SASL failure (an unknown mechanism, wrong credentials)
                // as a failed handshake; no retry cures either.
                if auth.sasl.is_some() && text.contains("Sasl handshake failed") {
                    return Err(PipelineError::KafkaSasl {
                        reason: format!(
                            "the brokers at {brokers} refused the login ({cause}); check kafka.sasl.mechanism against what the brokers offer, and kafka.sasl.username and .password"
                        ),
                    });
                }
                Kafka::builder(config, auth, Duration::from_secs(60))
                    .build()
                    .await
                    .map_err(|source| PipelineError::KafkaConnect {
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
        if let Some(s) = &auth.sasl {
            let creds = Credentials::new(
                s.username.expose().to_owned(),
                s.password.expose().to_owned(),
            );
            builder = builder.sasl_config(match s.mechanism {
                SaslMechanism::Plain => SaslConfig::Plain(creds),
                SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(creds),
                SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(creds),
            });
        }
        builder
    }

    /// The partition numbers of `topic`.
    pub async fn partitions(&self, topic: &str) -> Result<Vec<i32>, PipelineError> {
        let topics = self
            .client
            .list_topics()
            .await
            .map_err(|source| PipelineError::Kafka {
                operation: "list topics",
                topic: topic.to_owned(),
                partition: -1,
                source: Box::new(source),
            })?;
        let found = topics
            .into_iter()
            .find(|t| t.name == topic)
            .ok_or_else(|| PipelineError::UnknownTopic {
                topic: format!("{topic} (not on the brokers)"),
            })?;
        let mut parts: Vec<i32> = found.partitions.into_iter().collect();
        parts.sort_unstable();
        Ok(parts)
    }

    /// A client for one partition (follows leadership changes).
    pub async fn partition(&self, tp: &TopicPartition) -> Result<PartitionReader, PipelineError> {
        let client = self
            .client
            .partition_client(tp.topic.clone(), tp.partition, UnknownTopicHandling::Error)
            .await
            .map_err(|source| PipelineError::Kafka {
                operation: "connect to partition leader",
                topic: tp.topic.clone(),
                partition: tp.partition,
                source: Box::new(source),
            })?;
        Ok(PartitionReader {
            client,
            tp: tp.clone(),
            max_bytes: self.fetch_max_bytes,
            max_wait_ms: self.fetch_max_wait_ms,
        })
    }
}

/// Reads one partition.
pub struct PartitionReader {
    client: PartitionClient,
    tp: TopicPartition,
    max_bytes: i32,
    max_wait_ms: i32,
}

impl std::fmt::Debug for PartitionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionReader")
            .field("tp", &self.tp)
            .finish_non_exhaustive()
    }
}

impl PartitionReader {
    fn err(&self, operation: &'static str, source: rskafka::client::error::Error) -> PipelineError {
        PipelineError::Kafka {
            operation,
            topic: self.tp.topic.clone(),
            partition: self.tp.partition,
            source: Box::new(source),
        }
    }

    /// The partition this reader reads.
    pub fn tp(&self) -> &TopicPartition {
        &self.tp
    }

    /// The earliest offset still kept.
    pub async fn earliest(&self) -> Result<i64, PipelineError> {
        self.client
            .get_offset(OffsetAt::Earliest)
            .await
            .map_err(|e| self.err("list earliest offset", e))
    }

    /// The first offset at or after `time`.
    pub async fn offset_at(
        &self,
        time: chrono::DateTime<chrono::Utc>,
    ) -> Result<i64, PipelineError> {
        self.client
            .get_offset(OffsetAt::Timestamp(time))
            .await
            .map_err(|e| self.err("list offset by time", e))
    }

    /// Records at or after `offset` (one fetch's worth, offsets strictly increasing), and the
    /// high watermark. The watermark of a fetch is used rather than ListOffsets(latest), which
    /// some brokers answer wrongly.
    ///
    /// Kafka answers a fetch that starts inside a record batch with the whole batch (rskafka drops
    /// the records before `offset`), so an answer starts at `offset` unless offsets are missing
    /// (compaction, transaction markers). An answer that starts later, or is empty below the
    /// watermark, is checked rather than trusted: some brokers (tansu 0.6) skip the batch holding
    /// `offset`, or answer with nothing. The check steps back (1, 2, 4 … offsets, not below the
    /// earliest) until an answer starts at or before `offset`, walking forward by whole answers
    /// (each ends where the next batch begins). Records are never skipped on an unchecked answer.
    pub async fn fetch(&self, offset: i64) -> Result<(Vec<KafkaRecord>, i64), PipelineError> {
        let (records, hwm) = self.fetch_once(offset).await?;
        if offset >= hwm || records.first().is_some_and(|r| r.offset == offset) {
            return Ok((records, hwm));
        }
        let earliest = self.earliest().await?;
        let mut back = 1i64;
        let mut from = offset;
        while from > earliest {
            from = offset.saturating_sub(back).max(earliest);
            back = back.saturating_mul(2);
            let (mut found, _) = self.fetch_once(from).await?;
            if found.first().is_none_or(|r| r.offset > offset) {
                continue;
            }
            while let Some(last) = found.last().map(|r| r.offset) {
                if last >= offset {
                    break;
                }
                found = self.fetch_once(last + 1).await?.0;
            }
            found.retain(|r| r.offset >= offset);
            if found.first().map(|r| r.offset) != records.first().map(|r| r.offset) {
                tracing::warn!(
                    offset,
                    from,
                    answered = ?records.first().map(|r| r.offset),
                    checked = ?found.first().map(|r| r.offset),
                    "the broker's answer skipped records; read them from the start of their batch"
                );
            }
            return Ok((found, hwm));
        }
        // At the earliest offset: the missing offsets hold no records.
        Ok((records, hwm))
    }

    async fn fetch_once(&self, offset: i64) -> Result<(Vec<KafkaRecord>, i64), PipelineError> {
        let (records, hwm) = self
            .client
            .fetch_records(offset, 1..self.max_bytes, self.max_wait_ms)
            .await
            .map_err(|e| {
                if matches!(
                    e,
                    rskafka::client::error::Error::ServerError {
                        protocol_error: rskafka::client::error::ProtocolError::OffsetOutOfRange,
                        ..
                    }
                ) {
                    self.err("fetch (offset out of range)", e)
                } else {
                    self.err("fetch", e)
                }
            })?;
        // Offsets strictly increase: a record repeated in an answer (tansu 0.6 repeats the last
        // batch) is dropped.
        let mut last = offset - 1;
        let out = records
            .into_iter()
            .filter(|r| {
                let keep = r.offset > last;
                last = last.max(r.offset);
                keep
            })
            .map(|r| KafkaRecord {
                offset: r.offset,
                timestamp_ms: r.record.timestamp.timestamp_millis(),
                key: r.record.key,
                value: r.record.value,
                headers: r
                    .record
                    .headers
                    .into_iter()
                    .map(|(key, value)| Header {
                        key,
                        value: Some(value),
                    })
                    .collect(),
            })
            .collect();
        Ok((out, hwm))
    }

    /// The high watermark (next offset to be written).
    pub async fn high_watermark(&self) -> Result<i64, PipelineError> {
        let earliest = self.earliest().await?;
        self.watermark_at(earliest).await
    }

    /// The high watermark as a minimal fetch at `offset` reports it (at most one batch is sent).
    pub async fn watermark_at(&self, offset: i64) -> Result<i64, PipelineError> {
        let (_, hwm) = self
            .client
            .fetch_records(offset, 1..2, 0)
            .await
            .map_err(|e| self.err("fetch the high watermark", e))?;
        Ok(hwm)
    }
}

/// Streams `[start, end)` in chunks: delivered records first where they cover the range, the
/// broker for the rest.
pub struct RangeReader<'r> {
    /// `None` reads only the delivered records (dead-letter replay): gaps are skipped.
    reader: Option<&'r PartitionReader>,
    next: i64,
    end: i64,
    delivered: VecDeque<KafkaRecord>,
    /// What the last fetch returned beyond the chunk it served (at most one fetch, a few MiB):
    /// fetching again from the middle of a broker's record batch would throw the rest away and
    /// make the broker send the same batch again (and tansu answers such a fetch wrongly).
    fetched: VecDeque<KafkaRecord>,
}

impl std::fmt::Debug for RangeReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeReader")
            .field("next", &self.next)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl<'r> RangeReader<'r> {
    /// `delivered` are records an event already carried (any offsets; filtered to the range).
    pub fn new(
        reader: Option<&'r PartitionReader>,
        start: i64,
        end: i64,
        delivered: &[KafkaRecord],
    ) -> Self {
        RangeReader {
            reader,
            next: start,
            end,
            delivered: delivered
                .iter()
                .filter(|r| r.offset >= start && r.offset < end)
                .cloned()
                .collect(),
            fetched: VecDeque::new(),
        }
    }

    /// The next records of the range, up to about `max` of them; `None` at the end.
    pub async fn next_chunk(
        &mut self,
        max: usize,
    ) -> Result<Option<Vec<KafkaRecord>>, PipelineError> {
        if self.next >= self.end {
            return Ok(None);
        }
        // Delivered records starting exactly here: take the contiguous run.
        if self
            .delivered
            .front()
            .is_some_and(|r| r.offset == self.next)
        {
            let mut out = Vec::new();
            while out.len() < max {
                match self.delivered.front() {
                    // Only the contiguous run: offsets missing from a payload are fetched.
                    Some(r) if r.offset == self.next => {
                        let r = self
                            .delivered
                            .pop_front()
                            .ok_or_else(|| PipelineError::Event {
                                reason: "delivered records changed while reading".into(),
                            })?;
                        self.next = r.offset + 1;
                        out.push(r);
                    }
                    _ => break,
                }
            }
            return Ok(Some(out));
        }
        // A gap: fetch up to the next delivered record (or the end).
        let stop = self.delivered.front().map_or(self.end, |r| r.offset);
        let Some(reader) = self.reader else {
            self.next = stop;
            return Ok(Some(Vec::new()));
        };
        if self.fetched.is_empty() {
            let (records, hwm) = reader.fetch(self.next).await?;
            let beyond = records.iter().any(|r| r.offset >= stop);
            let next = self.next;
            self.fetched.extend(
                records
                    .into_iter()
                    .filter(|r| r.offset >= next && r.offset < stop),
            );
            if self.fetched.is_empty() {
                // Offsets with no record (compaction, transaction markers): skip to what exists.
                if beyond {
                    self.next = stop;
                    return Ok(Some(Vec::new()));
                }
                // Never skip offsets on an empty answer: they may hold records not readable yet.
                return Err(PipelineError::Event {
                    reason: if hwm > self.next {
                        format!(
                            "{}: a fetch at offset {} returned no records although the high watermark is {hwm}; refusing to skip them",
                            reader.tp, self.next
                        )
                    } else {
                        format!(
                            "{}: offset {} is beyond the high watermark {hwm}",
                            reader.tp, self.next
                        )
                    },
                });
            }
        }
        let n = self.fetched.len().min(max.max(1));
        let out: Vec<KafkaRecord> = self.fetched.drain(..n).collect();
        if let Some(last) = out.last() {
            self.next = last.offset + 1;
        }
        if self.delivered.front().is_some_and(|r| r.offset < self.next) {
            let next = self.next;
            self.delivered.retain(|r| r.offset >= next);
        }
        Ok(Some(out))
    }
}
