//! `[registry]`: the schema registry that parser stages granted `registry = true` read schemas
//! from (`wit/transform.wit`, interface `registry`). The host fetches the schemas; stages never
//! reach the network (docs/transforms.md).

use serde::Deserialize;

use crate::secret::SecretRef;

/// A Confluent-compatible schema registry (Confluent Schema Registry, Redpanda, Karapace,
/// Apicurio's `ccompat` API).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// The registry's base URL, e.g. `https://psrc-123.us-east-2.aws.confluent.cloud`.
    pub url: url::Url,
    /// HTTP basic authentication (Confluent Cloud: the API key), a secret reference.
    #[serde(default)]
    pub username: Option<SecretRef>,
    /// HTTP basic authentication (Confluent Cloud: the API secret), a secret reference.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// How long one registry request may take.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    10_000
}

impl RegistryConfig {
    /// The problem with this section, as `(key, fix)`, if any.
    pub(super) fn problem(&self) -> Option<(&'static str, &'static str)> {
        if !matches!(self.url.scheme(), "http" | "https") {
            return Some(("registry.url", "use an http:// or https:// URL"));
        }
        if self.username.is_some() != self.password.is_some() {
            return Some((
                "registry.password",
                "set both registry.username and registry.password (basic authentication) or neither",
            ));
        }
        if self.url.scheme() == "http"
            && self.password.is_some()
            && !self.url.host_str().is_some_and(super::is_loopback_host)
        {
            return Some((
                "registry.url",
                "use https:// when sending a password (plain http is accepted only on this machine)",
            ));
        }
        None
    }
}
