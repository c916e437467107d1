//! Secrets in the config: a [`SecretRef`] says where a value comes from (`env:NAME`,
//! `secretsmanager:ID#field` or a literal), a [`Secret`] holds a resolved value and never prints.
//! The function resolves references once at cold start (`k2mc::secrets`).

use std::fmt;

use serde::Deserialize;

/// A secret string whose `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    SecretsManager {
        id: String,
        field: Option<String>,
    },
    /// Written in the config itself; fine for the local stack, not for a deployment.
    Literal(Secret),
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(SecretRef::parse(&text))
    }
}

impl SecretRef {
    /// Reads the reference syntax; anything without a known scheme is a literal.
    pub fn parse(text: &str) -> SecretRef {
        if let Some(name) = text.strip_prefix("env:") {
            SecretRef::Env(name.to_owned())
        } else if let Some(rest) = text.strip_prefix("secretsmanager:") {
            match rest.rsplit_once('#') {
                Some((id, field)) => SecretRef::SecretsManager {
                    id: id.to_owned(),
                    field: Some(field.to_owned()),
                },
                None => SecretRef::SecretsManager {
                    id: rest.to_owned(),
                    field: None,
                },
            }
        } else {
            SecretRef::Literal(Secret::new(text))
        }
    }
}
