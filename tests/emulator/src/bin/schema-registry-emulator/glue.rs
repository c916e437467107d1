//! The AWS Glue Schema Registry operations the `aws-glue-schema-registry` serializer and k2mc's
//! host (through the AWS SDK) call: the JSON 1.1 protocol, `POST /` with
//! `X-Amz-Target: AWSGlue.<operation>`. Signatures are not checked.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

/// One Glue schema: its format and its versions (version n at index n - 1).
#[derive(Debug, Clone)]
struct GlueSchema {
    format: String,
    versions: Vec<(String, String)>,
}

/// Schemas by (registry, schema name); version ids are UUIDs.
#[derive(Debug, Default)]
pub struct Glue {
    schemas: BTreeMap<(String, String), GlueSchema>,
    next: u64,
}

fn answer(status: StatusCode, body: Json) -> Response {
    (
        status,
        [("content-type", "application/x-amz-json-1.1")],
        body.to_string(),
    )
        .into_response()
}

fn refuse(kind: &str, message: &str) -> Response {
    answer(
        StatusCode::BAD_REQUEST,
        json!({"__type": kind, "Message": message}),
    )
}

/// The answer to a request without a SigV4 signature for Glue.
pub fn unsigned() -> Response {
    refuse(
        "MissingAuthenticationTokenException",
        "Missing Authentication Token (a SigV4 signature for service glue)",
    )
}

fn arn(registry: &str, name: &str) -> String {
    format!("arn:aws:glue:us-east-1:123456789012:schema/{registry}/{name}")
}

fn text(v: &Json, key: &str) -> String {
    v.get(key)
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_owned()
}

impl Glue {
    fn new_id(&mut self) -> String {
        self.next += 1;
        format!("7d1f2a30-0000-4000-8000-{:012x}", self.next)
    }

    fn key(v: &Json, field: &str) -> (String, String) {
        let id = v.get(field).cloned().unwrap_or(Json::Null);
        let registry = match text(&id, "RegistryName") {
            r if r.is_empty() => "default-registry".to_owned(),
            r => r,
        };
        (registry, text(&id, "SchemaName"))
    }

    fn version(&self, id: &str) -> Option<(&(String, String), &GlueSchema, usize)> {
        self.schemas.iter().find_map(|(k, s)| {
            s.versions
                .iter()
                .position(|(v, _)| v == id)
                .map(|i| (k, s, i + 1))
        })
    }

    fn version_body(key: &(String, String), s: &GlueSchema, n: usize) -> Json {
        let (id, definition) = &s.versions[n - 1];
        json!({"SchemaVersionId": id, "SchemaDefinition": definition, "DataFormat": s.format,
            "SchemaArn": arn(&key.0, &key.1), "VersionNumber": n, "Status": "AVAILABLE",
            "CreatedTime": "2026-12-01T00:00:00.000Z"})
    }

    /// Answers one operation.
    pub fn call(&mut self, operation: &str, body: &[u8]) -> Response {
        let v: Json = serde_json::from_slice(body).unwrap_or(Json::Null);
        match operation {
            "CreateSchema" => {
                let key = (
                    match text(&v["RegistryId"], "RegistryName") {
                        r if r.is_empty() => "default-registry".to_owned(),
                        r => r,
                    },
                    text(&v, "SchemaName"),
                );
                if self.schemas.contains_key(&key) {
                    return refuse("AlreadyExistsException", "Schema already exists.");
                }
                let id = self.new_id();
                let format = text(&v, "DataFormat");
                self.schemas.insert(
                    key.clone(),
                    GlueSchema {
                        format: format.clone(),
                        versions: vec![(id.clone(), text(&v, "SchemaDefinition"))],
                    },
                );
                answer(
                    StatusCode::OK,
                    json!({"RegistryName": key.0, "SchemaName": key.1, "SchemaArn": arn(&key.0, &key.1),
                        "DataFormat": format, "Compatibility": text(&v, "Compatibility"),
                        "SchemaCheckpoint": 1, "LatestSchemaVersion": 1, "NextSchemaVersion": 2,
                        "SchemaStatus": "AVAILABLE", "SchemaVersionId": id,
                        "SchemaVersionStatus": "AVAILABLE"}),
                )
            }
            "GetSchemaByDefinition" => {
                let key = Self::key(&v, "SchemaId");
                let Some(s) = self.schemas.get(&key) else {
                    return refuse("EntityNotFoundException", "Schema is not found.");
                };
                let definition = text(&v, "SchemaDefinition");
                match s.versions.iter().find(|(_, d)| *d == definition) {
                    Some((id, _)) => answer(
                        StatusCode::OK,
                        json!({"SchemaVersionId": id, "SchemaArn": arn(&key.0, &key.1),
                            "DataFormat": s.format, "Status": "AVAILABLE",
                            "CreatedTime": "2026-12-01T00:00:00.000Z"}),
                    ),
                    None => refuse("EntityNotFoundException", "Schema version is not found."),
                }
            }
            "RegisterSchemaVersion" => {
                let key = Self::key(&v, "SchemaId");
                let definition = text(&v, "SchemaDefinition");
                let id = self.new_id();
                let Some(s) = self.schemas.get_mut(&key) else {
                    return refuse("EntityNotFoundException", "Schema is not found.");
                };
                let n = match s.versions.iter().position(|(_, d)| *d == definition) {
                    Some(i) => i + 1,
                    None => {
                        s.versions.push((id, definition));
                        s.versions.len()
                    }
                };
                answer(
                    StatusCode::OK,
                    json!({"SchemaVersionId": s.versions[n - 1].0, "VersionNumber": n, "Status": "AVAILABLE"}),
                )
            }
            "GetSchemaVersion" => {
                if let Some(id) = v.get("SchemaVersionId").and_then(Json::as_str) {
                    return match self.version(id) {
                        Some((key, s, n)) => answer(StatusCode::OK, Self::version_body(key, s, n)),
                        None => refuse("EntityNotFoundException", "Schema version is not found."),
                    };
                }
                let key = Self::key(&v, "SchemaId");
                let Some(s) = self.schemas.get(&key) else {
                    return refuse("EntityNotFoundException", "Schema is not found.");
                };
                let wanted = &v["SchemaVersionNumber"];
                let n = if wanted["LatestVersion"].as_bool() == Some(true) {
                    s.versions.len()
                } else {
                    wanted["VersionNumber"].as_u64().unwrap_or(0) as usize
                };
                if n == 0 || n > s.versions.len() {
                    return refuse("EntityNotFoundException", "Schema version is not found.");
                }
                answer(StatusCode::OK, Self::version_body(&key, s, n))
            }
            "PutSchemaVersionMetadata" => answer(StatusCode::OK, json!({})),
            other => refuse(
                "InvalidInputException",
                &format!("{other} is not served by this stand-in"),
            ),
        }
    }
}
