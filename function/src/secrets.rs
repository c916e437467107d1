//! Secret references in the config, resolved once at cold start: `env:NAME` reads an environment
//! variable, `secretsmanager:ID` (or `secretsmanager:ID#field` for a JSON secret) reads AWS
//! Secrets Manager. A literal value is accepted for local runs. Resolved values are
//! [`Secret`]s, which never print.

use std::collections::HashMap;

use crate::error::ConfigError;
use crate::maxcompute::Secret;

pub use k2mc_formats::secret::SecretRef;

/// Resolves references, fetching each Secrets Manager secret once.
#[derive(Debug, Default)]
pub struct SecretResolver {
    client: Option<aws_sdk_secretsmanager::Client>,
    fetched: HashMap<String, String>,
}

impl SecretResolver {
    /// `sdk` is needed only when a reference names Secrets Manager.
    pub fn new(sdk: Option<&aws_config::SdkConfig>) -> Self {
        SecretResolver {
            client: sdk.map(aws_sdk_secretsmanager::Client::new),
            fetched: HashMap::new(),
        }
    }

    /// The value behind `reference`; `key` is the config key, for the error message.
    pub async fn resolve(
        &mut self,
        key: &str,
        reference: &SecretRef,
    ) -> Result<Secret, ConfigError> {
        match reference {
            SecretRef::Literal(s) => Ok(s.clone()),
            SecretRef::Env(name) => std::env::var(name).map(Secret::new).map_err(|_| {
                ConfigError::Secret {
                    key: key.to_owned(),
                    reason: format!(
                        "environment variable {name} is not set; export it or change the reference"
                    ),
                }
            }),
            SecretRef::SecretsManager { id, field } => {
                let text = self.fetch(key, id).await?;
                match field {
                    None => Ok(Secret::new(text)),
                    Some(field) => {
                        let json: serde_json::Value =
                            serde_json::from_str(&text).map_err(|_| ConfigError::Secret {
                                key: key.to_owned(),
                                reason: format!("secret {id} is not a JSON object, so #{field} cannot be read; drop the #field"),
                            })?;
                        json.get(field)
                            .and_then(|v| v.as_str())
                            .map(Secret::new)
                            .ok_or_else(|| ConfigError::Secret {
                                key: key.to_owned(),
                                reason: format!("secret {id} has no string field {field:?}"),
                            })
                    }
                }
            }
        }
    }

    async fn fetch(&mut self, key: &str, id: &str) -> Result<String, ConfigError> {
        if let Some(v) = self.fetched.get(id) {
            return Ok(v.clone());
        }
        let client = self.client.as_ref().ok_or_else(|| ConfigError::Secret {
            key: key.to_owned(),
            reason: "Secrets Manager is not available here; use env:NAME locally".into(),
        })?;
        let out = client
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| ConfigError::Secret {
                key: key.to_owned(),
                reason: format!(
                    "reading secret {id} failed: {}; check the ARN and secretsmanager:GetSecretValue",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                ),
            })?;
        let value = out.secret_string().unwrap_or_default().to_owned();
        self.fetched.insert(id.to_owned(), value.clone());
        Ok(value)
    }
}
