//! The Confluent-compatible backend (Confluent Schema Registry, Redpanda, Karapace, Apicurio's
//! `ccompat` API): `GET /schemas/ids/{id}` and `GET /subjects/{s}/versions/{v}`, with the
//! schemas a schema references fetched transitively.

use serde::Deserialize;

use super::{MAX_REFERENCE_DEPTH, not_found, unavailable};
use crate::maxcompute::Secret;
use crate::transform::bindings::{
    RegistryError, RegistryErrorKind, Schema, SchemaFormat, SchemaReference,
};

/// The registry at `base`, with basic authentication when `auth` is set.
pub(crate) struct Confluent {
    pub(crate) base: url::Url,
    pub(crate) auth: Option<(String, Secret)>,
}

/// A subject version or an id lookup as the registry answers it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Answer {
    schema: String,
    #[serde(default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
    #[serde(default)]
    pub(super) id: Option<u32>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    version: Option<i32>,
}

#[derive(Debug, Deserialize)]
struct Reference {
    name: String,
    subject: String,
    version: i32,
}

/// What a Confluent registry says on an error: `{"error_code": 40403, "message": "..."}`.
#[derive(Debug, Deserialize)]
struct Refusal {
    #[serde(default)]
    message: String,
}

impl Confluent {
    pub(super) async fn get(
        &self,
        client: &reqwest::Client,
        path: &str,
    ) -> Result<Answer, RegistryError> {
        let (base, auth) = (&self.base, &self.auth);
        let url = base
            .join(path)
            .map_err(|e| unavailable(format!("{base}{path} is not a URL: {e}")))?;
        let mut request = client
            .get(url.clone())
            .header("accept", "application/vnd.schemaregistry.v1+json");
        if let Some((user, password)) = auth {
            request = request.basic_auth(user, Some(password.expose()));
        }
        let response = request
            .send()
            .await
            .map_err(|e| unavailable(format!("schema registry {url} did not answer: {e}")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| unavailable(format!("schema registry {url}: reading the answer: {e}")))?;
        if status == reqwest::StatusCode::NOT_FOUND {
            let why = serde_json::from_slice::<Refusal>(&body)
                .map(|r| r.message)
                .unwrap_or_default();
            return Err(not_found(format!(
                "schema registry {url}: not found ({why})"
            )));
        }
        if !status.is_success() {
            let fix = if matches!(status.as_u16(), 401 | 403) {
                "; check registry.username and registry.password"
            } else {
                ""
            };
            return Err(unavailable(format!(
                "schema registry {url} answered {status}: {}{fix}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            )));
        }
        serde_json::from_slice(&body).map_err(|e| {
            unavailable(format!(
                "schema registry {url} answered something that is not a schema: {e}"
            ))
        })
    }

    /// The WIT schema for `answer`, with its references fetched transitively.
    pub(super) async fn schema(
        &self,
        client: &reqwest::Client,
        id: String,
        answer: Answer,
    ) -> Result<Schema, RegistryError> {
        let mut references = Vec::new();
        self.references(client, &answer.references, &mut references, 0)
            .await?;
        Ok(Schema {
            id,
            format: format(answer.schema_type.as_deref())?,
            text: answer.schema,
            references,
            subject: answer.subject,
            version: answer.version,
        })
    }

    /// Appends `refs` and what they refer to, each after its own references, once each.
    async fn references(
        &self,
        client: &reqwest::Client,
        refs: &[Reference],
        out: &mut Vec<SchemaReference>,
        depth: usize,
    ) -> Result<(), RegistryError> {
        if depth > MAX_REFERENCE_DEPTH {
            return Err(unavailable(format!(
                "schema references nest deeper than {MAX_REFERENCE_DEPTH} (a cycle?)"
            )));
        }
        for r in refs {
            if out
                .iter()
                .any(|o| o.subject == r.subject && o.version == r.version)
            {
                continue;
            }
            let path = format!("subjects/{}/versions/{}", encode(&r.subject), r.version);
            let answer = self.get(client, &path).await?;
            Box::pin(self.references(client, &answer.references, out, depth + 1)).await?;
            out.push(SchemaReference {
                name: r.name.clone(),
                subject: r.subject.clone(),
                version: r.version,
                format: format(answer.schema_type.as_deref())?,
                text: answer.schema,
            });
        }
        Ok(())
    }
}

/// Confluent's `schemaType`: absent for Avro.
pub(super) fn format(schema_type: Option<&str>) -> Result<SchemaFormat, RegistryError> {
    match schema_type.map(str::to_ascii_uppercase).as_deref() {
        None | Some("AVRO") => Ok(SchemaFormat::Avro),
        Some("PROTOBUF") => Ok(SchemaFormat::Protobuf),
        Some("JSON") => Ok(SchemaFormat::JsonSchema),
        Some(other) => Err(RegistryError {
            kind: RegistryErrorKind::NotFound,
            message: format!("schema type {other} is not Avro, Protobuf or JSON Schema"),
        }),
    }
}

pub(super) fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_types_map_to_formats() {
        assert_eq!(format(None).ok(), Some(SchemaFormat::Avro));
        assert_eq!(format(Some("PROTOBUF")).ok(), Some(SchemaFormat::Protobuf));
        assert_eq!(format(Some("JSON")).ok(), Some(SchemaFormat::JsonSchema));
        assert!(format(Some("XML")).is_err());
    }
}
