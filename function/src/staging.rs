//! The staging bucket (S3, or OSS through its S3 API): the stage step writes blocks here, the load
//! step reads them back, and the commit log, intents and dead letters live here too. Conditional
//! writes are the whole concurrency story, and only create-only ones (`If-None-Match: *`, or
//! `x-oss-forbid-overwrite` on OSS): log entries, intents and each version of an intent.

use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::{AggregatedBytes, ByteStream};
use bytes::Bytes;
use tracing::Instrument as _;

use crate::config::{StagingConfig, StorageProvider};

mod segments;
pub use segments::Segments;

/// A handle on the staging bucket under the configured prefix.
#[derive(Debug, Clone)]
pub struct Staging {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    provider: StorageProvider,
    /// Whether object bodies are covered by the request signature (`staging.payload_signing`).
    sign_payload: bool,
}

/// An object read back, with the entity tag a conditional update needs.
#[derive(Debug, Clone)]
pub struct Object {
    pub data: Bytes,
    pub etag: String,
}

/// Why a request to the staging bucket failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StagingError {
    /// The request failed (network, throttling, permissions, a missing bucket).
    #[error("staging bucket {bucket}: {operation} {key}: {message}")]
    Request {
        bucket: String,
        operation: &'static str,
        key: String,
        message: String,
    },
    /// An object's body was cut off while it was read (an object replaced meanwhile); `get`
    /// reads it again a few times before giving up.
    #[error("staging bucket {bucket}: read body of {key}: {message}")]
    Body {
        bucket: String,
        key: String,
        message: String,
    },
    /// A background request ended without an answer (it panicked or was cancelled).
    #[error("staging bucket {bucket}: a staging task ended abnormally: {message}")]
    Task { bucket: String, message: String },
}

/// The IAM actions these calls need: `get` (GetObject), `put`/`create`/`replace` (PutObject, with
/// or without a condition), `delete` (DeleteObject), `list` (ListBucket). The deployment template
/// grants exactly these, on the prefix only; a test compares the two.
pub const S3_ACTIONS: &[&str] = &[
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:ListBucket",
];

/// The outcome of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conditional {
    Written,
    /// The precondition failed: someone else created or changed the object first.
    Conflict,
}

/// The AWS SDK configuration with an HTTPS client on rustls/ring (the one TLS stack we build).
pub async fn sdk_config(region: Option<&str>) -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    loader.load().await
}

impl Staging {
    /// A client for the configured bucket; `sdk` carries credentials and region.
    pub fn new(sdk: &aws_config::SdkConfig, config: &StagingConfig) -> Self {
        let mut builder = aws_sdk_s3::config::Builder::from(sdk);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint).force_path_style(true);
        }
        if let Some(region) = &config.region {
            builder = builder.region(aws_sdk_s3::config::Region::new(region.clone()));
        }
        Staging {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            bucket: config.bucket.clone(),
            prefix: config.prefix.trim_matches('/').to_owned(),
            provider: config.provider,
            sign_payload: config.signs_payload(),
        }
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The full key of `relative` under the prefix.
    pub fn key(&self, relative: &str) -> String {
        if self.prefix.is_empty() {
            relative.to_owned()
        } else {
            format!("{}/{relative}", self.prefix)
        }
    }

    fn fail<E: std::error::Error + 'static>(
        &self,
        operation: &'static str,
        key: &str,
        err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StagingError {
        StagingError::Request {
            bucket: self.bucket.clone(),
            operation,
            key: key.to_owned(),
            message: DisplayErrorContext(err).to_string(),
        }
    }

    /// Writes (or overwrites) an object.
    pub async fn put(&self, relative: &str, data: Bytes) -> Result<(), StagingError> {
        let key = self.key(relative);
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .body(ByteStream::from(data))
            .customize();
        let request = if self.sign_payload {
            request
        } else {
            request.disable_payload_signing()
        };
        request
            .send()
            .await
            .map_err(|e| self.fail("put", &key, &e))?;
        Ok(())
    }

    /// Deletes an object (a missing one is not an error).
    pub async fn delete(&self, relative: &str) -> Result<(), StagingError> {
        let key = self.key(relative);
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| self.fail("delete", &key, &e))?;
        Ok(())
    }

    /// Creates an object only if no object has the key.
    pub async fn create(&self, relative: &str, data: Bytes) -> Result<Conditional, StagingError> {
        let key = self.key(relative);
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .body(ByteStream::from(data));
        if self.provider == StorageProvider::S3 {
            request = request.if_none_match("*");
        }
        let request = request.customize();
        let result = match self.provider {
            StorageProvider::S3 if self.sign_payload => request.send().await,
            StorageProvider::S3 => request.disable_payload_signing().send().await,
            StorageProvider::Oss => {
                request
                    .mutate_request(|req| {
                        req.headers_mut().insert("x-oss-forbid-overwrite", "true");
                    })
                    .send()
                    .await
            }
        };
        match result {
            Ok(_) => Ok(Conditional::Written),
            Err(e) if is_conflict(&e) => Ok(Conditional::Conflict),
            Err(e) => Err(self.fail("create", &key, &e)),
        }
    }

    /// The error for a request of this bucket's that ran as a task and ended without an answer
    /// (it panicked or was aborted).
    pub(crate) fn task_failed(&self, message: String) -> StagingError {
        StagingError::Task {
            bucket: self.bucket.clone(),
            message,
        }
    }

    /// Reads an object; `None` when there is none. A body cut off mid-read (an object being
    /// replaced concurrently) is read again.
    pub async fn get(&self, relative: &str) -> Result<Option<Object>, StagingError> {
        Ok(self.read(relative).await?.map(|(body, etag)| Object {
            data: body.into_bytes(),
            etag,
        }))
    }

    /// Reads an object's bytes in the chunks they arrived in (a staged piece the load sends in
    /// ranges: no copy into one buffer); `None` when there is none. Read again as `get` is.
    pub async fn get_segments(&self, relative: &str) -> Result<Option<Segments>, StagingError> {
        Ok(self
            .read(relative)
            .await?
            .map(|(body, _)| Segments::new(body.into_segments())))
    }

    async fn read(
        &self,
        relative: &str,
    ) -> Result<Option<(AggregatedBytes, String)>, StagingError> {
        let mut attempt = 0;
        loop {
            match self.read_once(relative).await {
                Err(StagingError::Body { .. }) if attempt < 4 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    async fn read_once(
        &self,
        relative: &str,
    ) -> Result<Option<(AggregatedBytes, String)>, StagingError> {
        let key = self.key(relative);
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => {
                return Ok(None);
            }
            Err(e) => return Err(self.fail("get", &key, &e)),
        };
        let etag = out.e_tag().unwrap_or_default().to_owned();
        let body = out.body.collect().await.map_err(|e| StagingError::Body {
            bucket: self.bucket.clone(),
            key: key.clone(),
            message: e.to_string(),
        })?;
        Ok(Some((body, etag)))
    }

    /// Keys (relative to the prefix) under `relative_prefix`, in key order, after `start_after`.
    pub async fn list(
        &self,
        relative_prefix: &str,
        start_after: Option<&str>,
        max: i32,
    ) -> Result<Vec<String>, StagingError> {
        let prefix = self.key(relative_prefix);
        let mut request = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .max_keys(max);
        if let Some(after) = start_after {
            request = request.start_after(self.key(after));
        }
        let out = request
            .send()
            .await
            .map_err(|e| self.fail("list", &prefix, &e))?;
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        Ok(out
            .contents()
            .iter()
            .filter_map(|o| o.key())
            .map(|k| k[strip.min(k.len())..].to_owned())
            .collect())
    }

    /// Every key (relative to the prefix) under `relative_prefix`, in key order, page by page.
    pub async fn list_all(&self, relative_prefix: &str) -> Result<Vec<String>, StagingError> {
        let mut all: Vec<String> = Vec::new();
        loop {
            let page = self
                .list(relative_prefix, all.last().map(String::as_str), 1000)
                .await?;
            if page.is_empty() {
                return Ok(all);
            }
            all.extend(page);
        }
    }

    /// Checks that the bucket answers (for `k2mc validate`).
    pub async fn check(&self) -> Result<(), StagingError> {
        self.list("", None, 1).await.map(|_| ())
    }
}

/// 412 Precondition Failed, or 409 when a conditional write raced another.
fn is_conflict<E>(err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> bool {
    let status = err.raw_response().map(|r| r.status().as_u16());
    if matches!(status, Some(412) | Some(409)) {
        return true;
    }
    // OSS answers 409 FileAlreadyExists to a forbidden overwrite.
    false
}

/// Puts running in the background, at most `limit` at once, so that staging a closed block
/// overlaps fetching, transforming and encoding the next ones (the puts wait on the network and
/// the store, the rest on the CPU). [`Uploads::finish`] waits for every one: nothing that names
/// the blocks (the intent) may be written before it returns. Dropped early (an error), the puts
/// still in flight are aborted; their keys derive from the batch, so a retry overwrites them.
#[derive(Debug)]
pub struct Uploads {
    staging: Staging,
    tasks: tokio::task::JoinSet<Result<(), StagingError>>,
    limit: usize,
}

impl Uploads {
    /// Puts through `staging`, `limit` at once (at least one).
    pub fn new(staging: &Staging, limit: usize) -> Self {
        Uploads {
            staging: staging.clone(),
            tasks: tokio::task::JoinSet::new(),
            limit: limit.max(1),
        }
    }

    /// Starts writing `relative`; first waits for a free slot, returning the error of any put
    /// that failed meanwhile.
    pub async fn put(&mut self, relative: String, data: Bytes) -> Result<(), StagingError> {
        while self.tasks.len() >= self.limit {
            self.join_one().await?;
        }
        let staging = self.staging.clone();
        self.tasks.spawn(
            async move { staging.put(&relative, data).await }.instrument(tracing::Span::current()),
        );
        Ok(())
    }

    /// Waits for every put started; the first error wins.
    pub async fn finish(mut self) -> Result<(), StagingError> {
        while !self.tasks.is_empty() {
            self.join_one().await?;
        }
        Ok(())
    }

    async fn join_one(&mut self) -> Result<(), StagingError> {
        match self.tasks.join_next().await {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => Err(StagingError::Task {
                bucket: self.staging.bucket.clone(),
                message: e.to_string(),
            }),
        }
    }
}
