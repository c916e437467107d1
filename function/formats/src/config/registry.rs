//! `[registry]`: the schema registry that parser stages granted `registry = true` read schemas
//! from (`wit/transform.wit`, interface `registry`). The host fetches the schemas; stages never
//! reach the network (docs/transforms.md).

use serde::Deserialize;

use crate::secret::SecretRef;

/// A schema registry: Confluent-compatible (Confluent Schema Registry, Redpanda, Karapace,
/// Apicurio's `ccompat` API) or the AWS Glue Schema Registry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    #[serde(default)]
    pub kind: RegistryKind,
    /// Confluent: the registry's base URL, e.g. `https://psrc-123.us-east-2.aws.confluent.cloud`.
    /// Glue: an endpoint override (a VPC endpoint, a local stand-in); default the region's.
    #[serde(default)]
    pub url: Option<url::Url>,
    /// Glue: the registry's name.
    #[serde(default = "default_registry_name")]
    pub registry_name: String,
    /// Glue: the registry's region (default: the AWS SDK's).
    #[serde(default)]
    pub region: Option<String>,
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

/// Which registry API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegistryKind {
    /// The Confluent Schema Registry REST API (records framed with magic byte 0).
    #[default]
    Confluent,
    /// The AWS Glue Schema Registry, through the AWS SDK with the function's credentials
    /// (records framed with header version byte 3).
    Glue,
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_registry_name() -> String {
    "default-registry".into()
}

impl RegistryConfig {
    /// The problem with this section, as `(key, fix)`, if any.
    pub(super) fn problem(&self) -> Option<(&'static str, &'static str)> {
        let Some(url) = &self.url else {
            return (self.kind == RegistryKind::Confluent)
                .then_some(("registry.url", "set the schema registry's URL"));
        };
        if self.kind == RegistryKind::Glue && self.password.is_some() {
            return Some((
                "registry.password",
                "a Glue registry uses the function's AWS credentials; remove username and password",
            ));
        }
        if !matches!(url.scheme(), "http" | "https") {
            return Some(("registry.url", "use an http:// or https:// URL"));
        }
        if self.username.is_some() != self.password.is_some() {
            return Some((
                "registry.password",
                "set both registry.username and registry.password (basic authentication) or neither",
            ));
        }
        if url.scheme() == "http"
            && self.password.is_some()
            && !url.host_str().is_some_and(super::is_loopback_host)
        {
            return Some((
                "registry.url",
                "use https:// when sending a password (plain http is accepted only on this machine)",
            ));
        }
        None
    }
}
