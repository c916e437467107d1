//! The MaxCompute client the load stage holds: configuration, the REST root and the lazily
//! discovered Tunnel endpoint. SQL and metadata calls live in `sql`, Tunnel sessions in `tunnel`.

use std::time::Duration;

use url::Url;

use super::error::MaxComputeError;
use super::http::{self, Call, Payload, RetryPolicy, Transport};
use super::sign::{Credentials, SignatureVersion};

/// Default per-request timeout; blocks are bounded, so a minute is ample.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Everything needed to talk to one MaxCompute project.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The REST endpoint including `/api`, e.g. `https://service.cn-hangzhou.maxcompute.aliyun.com/api`.
    pub endpoint: Url,
    pub project: String,
    pub credentials: Credentials,
    /// A fixed Tunnel endpoint; discovered through `GET /projects/{p}/tunnel?service` when unset.
    pub tunnel_endpoint: Option<Url>,
    /// Signature scheme; picked from the endpoint host as pyodps does when unset.
    pub signature: Option<SignatureVersion>,
    /// Permit plain http to a non-loopback host (credentials would travel unencrypted).
    pub allow_insecure_http: bool,
    pub retry: RetryPolicy,
    pub timeout: Duration,
}

impl ClientConfig {
    /// A config with default retry, timeout and signature settings.
    pub fn new(endpoint: Url, project: impl Into<String>, credentials: Credentials) -> Self {
        ClientConfig {
            endpoint,
            project: project.into(),
            credentials,
            tunnel_endpoint: None,
            signature: None,
            allow_insecure_http: false,
            retry: RetryPolicy::default(),
            timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// A client for one project's REST API and Tunnel.
#[derive(Debug)]
pub struct MaxComputeClient {
    pub(crate) transport: Transport,
    pub(crate) endpoint: Url,
    allow_insecure_http: bool,
    tunnel: tokio::sync::OnceCell<Url>,
}

impl MaxComputeClient {
    /// Builds a client; fails if the endpoint would send credentials over plain http off loopback.
    pub fn new(config: ClientConfig) -> Result<Self, MaxComputeError> {
        http::check_endpoint(&config.endpoint, config.allow_insecure_http)?;
        let signature = config.signature.unwrap_or_else(|| {
            SignatureVersion::for_host(config.endpoint.host_str().unwrap_or_default())
        });
        let tunnel = tokio::sync::OnceCell::new();
        if let Some(t) = config.tunnel_endpoint {
            http::check_endpoint(&t, config.allow_insecure_http)?;
            // A fresh cell cannot already be set.
            let _ = tunnel.set(t);
        }
        Ok(MaxComputeClient {
            transport: Transport::new(
                config.credentials,
                signature,
                config.project,
                config.retry,
                config.timeout,
            )?,
            endpoint: config.endpoint,
            allow_insecure_http: config.allow_insecure_http,
            tunnel,
        })
    }

    /// The project this client works in.
    pub fn project(&self) -> &str {
        &self.transport.project
    }

    /// `/projects/{p}/tables/{t}` for the current project.
    pub(crate) fn table_path(&self, table: &str) -> String {
        format!("/projects/{}/tables/{table}", self.transport.project)
    }

    /// A call against the REST root.
    pub(crate) fn rest_call(&self, operation: &str, method: reqwest::Method, path: String) -> Call {
        Call {
            operation: operation.to_owned(),
            method,
            base: self.endpoint.clone(),
            path,
            params: Vec::new(),
            headers: Vec::new(),
            payload: Payload::Empty,
        }
    }

    /// The Tunnel root, discovered once per client (`docs/maxcompute-protocol.md` §2.1).
    pub(crate) async fn tunnel_base(&self) -> Result<Url, MaxComputeError> {
        self.tunnel
            .get_or_try_init(|| async {
                let mut call = self.rest_call(
                    "discover tunnel endpoint",
                    reqwest::Method::GET,
                    format!("/projects/{}/tunnel", self.transport.project),
                );
                call.params.push(("service".into(), String::new()));
                let resp = self.transport.execute(&call).await?;
                let host = String::from_utf8_lossy(&resp.body).trim().to_owned();
                let url =
                    Url::parse(&format!("{}://{host}", self.endpoint.scheme())).map_err(|e| {
                        MaxComputeError::Protocol {
                            operation: call.operation.clone(),
                            reason: format!("tunnel endpoint '{host}' is not a host: {e}"),
                        }
                    })?;
                http::check_endpoint(&url, self.allow_insecure_http)?;
                Ok(url)
            })
            .await
            .cloned()
    }
}
