//! The AWS Glue Schema Registry backend: `GetSchemaVersion` (Glue's JSON 1.1 protocol), signed
//! with SigV4 (`aws-sigv4`) from the function's AWS credentials (`aws-config`'s provider chain).
//! One operation only, so the Glue SDK crate (minutes of build on this project's machine) is
//! not compiled in; the request and the answer's fields follow the Glue API reference.

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::{not_found, unavailable};
use crate::transform::bindings::{RegistryError, Schema, SchemaFormat};

/// Where and as whom Glue is asked.
#[derive(Debug, Clone)]
pub(crate) struct Glue {
    pub(crate) endpoint: url::Url,
    pub(crate) region: String,
    pub(crate) registry_name: String,
    pub(crate) credentials: SharedCredentialsProvider,
}

/// `GetSchemaVersion`'s answer (the fields k2mc reads).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    schema_version_id: String,
    schema_definition: String,
    data_format: String,
    #[serde(default)]
    version_number: Option<i32>,
    #[serde(default)]
    schema_arn: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

/// A Glue error: `{"__type": "EntityNotFoundException", "Message": "..."}`.
#[derive(Debug, Deserialize)]
struct Refusal {
    #[serde(rename = "__type", default)]
    kind: String,
    #[serde(rename = "Message", alias = "message", default)]
    message: String,
}

impl Glue {
    /// The schema version `version_id` (a UUID).
    pub(crate) async fn by_version_id(
        &self,
        client: &reqwest::Client,
        version_id: &str,
    ) -> Result<Schema, RegistryError> {
        self.get(client, json!({"SchemaVersionId": version_id}), None)
            .await
    }

    /// A version of schema `name` in the configured registry (`None`: the latest).
    pub(crate) async fn by_name(
        &self,
        client: &reqwest::Client,
        name: &str,
        version: Option<i32>,
    ) -> Result<Schema, RegistryError> {
        let number = match version {
            Some(v) => json!({"VersionNumber": v}),
            None => json!({"LatestVersion": true}),
        };
        let body = json!({"SchemaId": {"RegistryName": self.registry_name, "SchemaName": name},
            "SchemaVersionNumber": number});
        self.get(client, body, Some(name)).await
    }

    async fn get(
        &self,
        client: &reqwest::Client,
        body: Json,
        name: Option<&str>,
    ) -> Result<Schema, RegistryError> {
        let body = body.to_string();
        let target = "AWSGlue.GetSchemaVersion";
        let credentials = self.credentials.provide_credentials().await.map_err(|e| {
            unavailable(format!(
                "AWS credentials for the Glue schema registry: {}",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            ))
        })?;
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("glue")
            .time(std::time::SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| unavailable(format!("signing a Glue request: {e}")))?
            .into();
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target),
        ];
        let signable = SignableRequest::new(
            "POST",
            self.endpoint.as_str(),
            headers.iter().copied(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| unavailable(format!("signing a Glue request: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| unavailable(format!("signing a Glue request: {e}")))?
            .into_parts();
        let mut request = client.post(self.endpoint.clone()).body(body.clone());
        for (k, v) in headers {
            request = request.header(k, v);
        }
        let (signed, _) = instructions.into_parts();
        for header in signed {
            request = request.header(header.name(), header.value());
        }
        let url = &self.endpoint;
        let response = request
            .send()
            .await
            .map_err(|e| unavailable(format!("Glue schema registry {url} did not answer: {e}")))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| {
            unavailable(format!(
                "Glue schema registry {url}: reading the answer: {e}"
            ))
        })?;
        if !status.is_success() {
            let refusal: Refusal = serde_json::from_str(&text).unwrap_or(Refusal {
                kind: String::new(),
                message: text.chars().take(300).collect(),
            });
            let what = name.map_or_else(|| body.clone(), |n| format!("schema {n}"));
            let message = format!(
                "Glue schema registry {} ({}): {what}: {} {}",
                self.registry_name, self.region, refusal.kind, refusal.message
            );
            return Err(if refusal.kind.ends_with("EntityNotFoundException") {
                not_found(message)
            } else {
                unavailable(message)
            });
        }
        let answer: Answer = serde_json::from_str(&text).map_err(|e| {
            unavailable(format!(
                "Glue answered something that is not a schema version: {e}"
            ))
        })?;
        if answer.status.as_deref().is_some_and(|s| s != "AVAILABLE") {
            return Err(not_found(format!(
                "Glue schema version {} is {}, not AVAILABLE",
                answer.schema_version_id,
                answer.status.unwrap_or_default()
            )));
        }
        let format = match answer.data_format.as_str() {
            "AVRO" => SchemaFormat::Avro,
            "PROTOBUF" => SchemaFormat::Protobuf,
            "JSON" => SchemaFormat::JsonSchema,
            other => {
                return Err(not_found(format!(
                    "Glue schema version {} has data format {other}, not AVRO, PROTOBUF or JSON",
                    answer.schema_version_id
                )));
            }
        };
        let subject = answer
            .schema_arn
            .as_deref()
            .and_then(|arn| arn.rsplit('/').next())
            .map(str::to_owned)
            .or_else(|| name.map(str::to_owned));
        Ok(Schema {
            id: answer.schema_version_id,
            format,
            text: answer.schema_definition,
            references: Vec::new(),
            subject,
            version: answer.version_number,
        })
    }
}
