//! The signed HTTP transport under every REST and Tunnel call: builds the URL, stamps `Date`
//! and the user agent, signs, sends, parses error bodies and retries as the SDKs do (`docs/maxcompute-protocol.md` §2.7):
//! 308/429 with capped exponential backoff, 408/5xx and connection failures a bounded number of
//! times, other 4xx never.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use url::Url;

use super::body::BodySource;
use super::error::MaxComputeError;
use super::sign::{self, CanonicalRequest, Credentials, SignatureVersion};

/// Default for [`RetryPolicy::max_server_retries`], as pyodps.
pub const DEFAULT_MAX_SERVER_RETRIES: u32 = 7;
/// Default for [`RetryPolicy::max_delay`], as pyodps.
pub const DEFAULT_MAX_RETRY_DELAY: Duration = Duration::from_secs(64);

/// How failed calls are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after 408, 5xx and connection failures.
    pub max_server_retries: u32,
    /// Retries after 308 and 429. The SDKs retry these forever; a function has a deadline.
    pub max_throttle_retries: u32,
    /// First backoff; doubled after each retry.
    pub base_delay: Duration,
    /// Backoff cap.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_server_retries: DEFAULT_MAX_SERVER_RETRIES,
            max_throttle_retries: 30,
            base_delay: Duration::from_millis(250),
            max_delay: DEFAULT_MAX_RETRY_DELAY,
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first): `base_delay` doubled per retry
    /// before it, capped at `max_delay`, then a random part of its second half taken off
    /// (`jitter` in 0..1). The jitter keeps invocations throttled together from retrying
    /// together, and shortens the mean wait by a quarter; the wait never drops below half.
    pub fn delay(&self, retry: u32, jitter: f64) -> Duration {
        let exp = retry.saturating_sub(1).min(16);
        let full = self.base_delay.saturating_mul(1 << exp).min(self.max_delay);
        full.mul_f64(1.0 - jitter.clamp(0.0, 1.0) / 2.0)
    }
}

/// A request body.
#[derive(Debug, Clone)]
pub(crate) enum Payload {
    /// No body, `Content-Length: 0`.
    Empty,
    /// A small body with a signed content type (SQL task XML).
    Fixed {
        data: Bytes,
        content_type: &'static str,
    },
    /// A block streamed with `Transfer-Encoding: chunked`, as both SDKs send blocks: read from
    /// its source again for every attempt.
    Chunked {
        body: Arc<dyn BodySource>,
        content_encoding: Option<&'static str>,
    },
}

/// One call, described well enough to be signed and sent again on retry.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub operation: String,
    pub method: Method,
    pub base: Url,
    /// Decoded path relative to `base`, e.g. `/projects/p/tables/t`.
    pub path: String,
    /// Query parameters in order; an empty value is sent as a bare flag.
    pub params: Vec<(String, String)>,
    /// Extra headers; names starting with `x-odps-` are signed.
    pub headers: Vec<(&'static str, String)>,
    pub payload: Payload,
}

impl Call {
    /// True when the body's own source failed while this call was sent.
    fn body_failed(&self) -> bool {
        matches!(&self.payload, Payload::Chunked { body, .. } if body.failed())
    }
}

/// A successful response.
#[derive(Debug)]
pub(crate) struct Response {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The signing HTTP client shared by the REST and Tunnel clients.
#[derive(Debug)]
pub(crate) struct Transport {
    http: reqwest::Client,
    credentials: Credentials,
    signature: SignatureVersion,
    pub project: String,
    pub retry: RetryPolicy,
    user_agent: String,
}

impl Transport {
    pub(crate) fn new(
        credentials: Credentials,
        signature: SignatureVersion,
        project: String,
        retry: RetryPolicy,
        timeout: Duration,
    ) -> Result<Self, MaxComputeError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|source| MaxComputeError::Transport {
                operation: "build http client".into(),
                source,
            })?;
        Ok(Transport {
            http,
            credentials,
            signature,
            project,
            retry,
            user_agent: format!("k2mc/{}", env!("CARGO_PKG_VERSION")),
        })
    }

    /// Sends `call`, retrying per the policy, and returns the first 2xx response.
    pub(crate) async fn execute(&self, call: &Call) -> Result<Response, MaxComputeError> {
        let started = Instant::now();
        let (mut server_retries, mut throttle_retries) = (0u32, 0u32);
        loop {
            let outcome = match self.send_once(call).await {
                // The body's source failed, not the service or the network: sending again
                // would read the same source again (its owner knows why; `body.rs`).
                Err(MaxComputeError::Transport { .. }) if call.body_failed() => {
                    return Err(MaxComputeError::BodyUnreadable {
                        operation: call.operation.clone(),
                    });
                }
                outcome => outcome,
            };
            let (retry_kind, err) = match outcome {
                Ok(resp) => return Ok(resp),
                Err(err) => match &err {
                    MaxComputeError::Service {
                        status: 308 | 429, ..
                    } => (Some(true), err),
                    MaxComputeError::Service { status, .. } if *status == 408 || *status >= 500 => {
                        (Some(false), err)
                    }
                    MaxComputeError::Transport { .. } => (Some(false), err),
                    _ => (None, err),
                },
            };
            let (used, limit) = match retry_kind {
                None => return Err(err),
                Some(true) => (&mut throttle_retries, self.retry.max_throttle_retries),
                Some(false) => (&mut server_retries, self.retry.max_server_retries),
            };
            if *used >= limit {
                return Err(MaxComputeError::RetriesExhausted {
                    operation: call.operation.clone(),
                    attempts: server_retries + throttle_retries + 1,
                    elapsed: started.elapsed(),
                    last: err.to_string(),
                });
            }
            *used += 1;
            let delay = self
                .retry
                .delay(server_retries + throttle_retries, rand::random::<f64>());
            tracing::warn!(operation = %call.operation, error = %err, ?delay, "MaxCompute call failed, retrying.");
            tokio::time::sleep(delay).await;
        }
    }

    async fn send_once(&self, call: &Call) -> Result<Response, MaxComputeError> {
        let transport_err = |source| MaxComputeError::Transport {
            operation: call.operation.clone(),
            source,
        };
        let now = chrono::Utc::now();
        let date = httpdate::fmt_http_date(now.into());
        let mut canonical = CanonicalRequest {
            method: call.method.as_str().to_owned(),
            date: date.clone(),
            path: call.path.clone(),
            ..CanonicalRequest::default()
        };
        let mut params: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &call.params {
            params.insert(k.clone(), v.clone());
        }
        params.insert("curr_project".into(), self.project.clone());
        canonical.params = params.clone();
        canonical
            .odps_headers
            .insert("x-odps-user-agent".into(), self.user_agent.clone());
        for (k, v) in &call.headers {
            if k.starts_with("x-odps-") {
                canonical.odps_headers.insert((*k).to_owned(), v.clone());
            }
        }
        if let Payload::Fixed { content_type, .. } = &call.payload {
            canonical.content_type = (*content_type).to_owned();
        }
        if let Payload::Chunked { .. } = &call.payload {
            canonical.content_type = "application/octet-stream".into();
        }
        let auth = sign::authorization(
            &self.credentials,
            &self.signature,
            &canonical,
            &now.format("%Y%m%d").to_string(),
        );

        let url = build_url(&call.base, &call.path, &call.params, &self.project);
        let mut req = self
            .http
            .request(call.method.clone(), url)
            .header("Date", &date)
            .header("User-Agent", &self.user_agent)
            .header("x-odps-user-agent", &self.user_agent)
            .header("Authorization", auth);
        if let Some(token) = &self.credentials.sts_token {
            req = req.header("authorization-sts-token", token.expose());
        }
        for (k, v) in &call.headers {
            req = req.header(*k, v);
        }
        req = match &call.payload {
            Payload::Empty => req.header("Content-Length", "0").body(Bytes::new()),
            Payload::Fixed { data, content_type } => {
                req.header("Content-Type", *content_type).body(data.clone())
            }
            Payload::Chunked {
                body,
                content_encoding,
            } => {
                let mut req = req
                    .header("Content-Type", "application/octet-stream")
                    .body(reqwest::Body::wrap_stream(body.open()));
                if let Some(enc) = content_encoding {
                    req = req.header("Content-Encoding", *enc);
                }
                req
            }
        };
        let resp = req.send().await.map_err(transport_err)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(transport_err)?;
        if status.is_success() {
            return Ok(Response { headers, body });
        }
        Err(parse_error(&call.operation, status, &headers, &body))
    }
}

/// Joins the base URL, the encoded path and the query. Bare flags have no `=`.
fn build_url(base: &Url, path: &str, params: &[(String, String)], project: &str) -> Url {
    let mut url = base.clone();
    let segments: Vec<String> = path
        .split('/')
        .map(|s| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string())
        .collect();
    let base_path = base.path().trim_end_matches('/');
    url.set_path(&format!("{base_path}{}", segments.join("/")));
    let mut query: Vec<String> = Vec::new();
    for (k, v) in params
        .iter()
        .chain([&("curr_project".to_owned(), project.to_owned())])
    {
        let k: String = url::form_urlencoded::byte_serialize(k.as_bytes()).collect();
        if v.is_empty() {
            query.push(k);
        } else {
            let v: String = url::form_urlencoded::byte_serialize(v.as_bytes()).collect();
            query.push(format!("{k}={v}"));
        }
    }
    url.set_query(Some(&query.join("&")));
    url
}

const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    request_id: String,
}

/// Parses a REST XML `<Error>` or a Tunnel JSON `{"Code","Message"}` body.
fn parse_error(
    operation: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> MaxComputeError {
    let text = String::from_utf8_lossy(body);
    let parsed: Option<ErrorBody> = serde_json::from_slice(body)
        .ok()
        .or_else(|| quick_xml::de::from_str(&text).ok());
    let header_id = headers
        .get("x-odps-request-id")
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (code, message, request_id) = match parsed {
        Some(e) if !e.code.is_empty() => (
            e.code,
            e.message,
            if e.request_id.is_empty() {
                header_id
            } else {
                e.request_id
            },
        ),
        _ => (
            status
                .canonical_reason()
                .unwrap_or("HttpError")
                .replace(' ', ""),
            text.chars().take(512).collect(),
            header_id,
        ),
    };
    MaxComputeError::Service {
        operation: operation.to_owned(),
        status: status.as_u16(),
        code,
        message,
        request_id,
    }
}

/// Refuses to send credentials over plain HTTP to anything but loopback unless allowed.
pub(crate) fn check_endpoint(
    endpoint: &Url,
    allow_insecure_http: bool,
) -> Result<(), MaxComputeError> {
    let bad = |reason: &str| MaxComputeError::Endpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_owned(),
    };
    match endpoint.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = endpoint
                .host_str()
                .is_some_and(crate::config::is_loopback_host);
            if loopback || allow_insecure_http {
                Ok(())
            } else {
                Err(bad(
                    "plain http would send signed credentials unencrypted; use https or set allow_insecure_http = true",
                ))
            }
        }
        _ => Err(bad("the scheme must be http or https")),
    }
}

#[cfg(test)]
mod tests;
