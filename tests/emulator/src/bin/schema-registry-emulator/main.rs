//! `schema-registry-emulator`: the subset of the Confluent Schema Registry REST API that
//! `confluent-kafka`'s serializers and k2mc's host use (register, look up, schemas by id and by
//! subject version, references, config), in memory on one loopback port. The integration tests
//! produce records with the real serializers against it; `tests/it/registry.rs` checks it against
//! confluent-kafka's `SchemaRegistryClient`.
//!
//! It also answers the AWS Glue Schema Registry operations the `aws-glue-schema-registry`
//! serializer and k2mc's host use (`glue`), on the same port, for SigV4-signed requests.
//!
//! It prints its bound address as the first line on stdout, so a harness can start it on port 0.

mod glue;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use clap::Parser;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tokio::io::AsyncBufReadExt as _;

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "A local Confluent-compatible schema registry for tests"
)]
struct Args {
    /// Address to listen on; port 0 picks a free port. Keep it on loopback.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Require HTTP basic authentication as `user:password`.
    #[arg(long)]
    basic_auth: Option<String>,
    /// Exit when stdin closes (the harness holds the other end).
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

/// One registered schema; its id is its index + 1.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    schema_type: String,
    schema: String,
    references: Vec<Reference>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
struct Reference {
    name: String,
    subject: String,
    version: i64,
}

#[derive(Debug, Default)]
struct Registry {
    schemas: Vec<Stored>,
    /// Subject → the schema id of each version (version n at index n - 1).
    subjects: BTreeMap<String, Vec<usize>>,
    compatibility: BTreeMap<String, String>,
    glue: glue::Glue,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    schema: String,
    #[serde(default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
}

type Shared = Arc<(Mutex<Registry>, Option<String>)>;

/// A Confluent error answer: `{"error_code": 40403, "message": "..."}`.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: u32,
    message: String,
}

fn error(status: StatusCode, code: u32, message: String) -> Refusal {
    Refusal {
        status,
        code,
        message,
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.status,
            [("content-type", "application/vnd.schemaregistry.v1+json")],
            json!({"error_code": self.code, "message": self.message}).to_string(),
        )
            .into_response()
    }
}

fn ok(body: Json) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/vnd.schemaregistry.v1+json")],
        body.to_string(),
    )
        .into_response()
}

impl Stored {
    /// Same schema: same type and references, and the same text or (for Avro and JSON Schema)
    /// the same JSON.
    fn same(&self, other: &Stored) -> bool {
        if self.schema_type != other.schema_type || self.references != other.references {
            return false;
        }
        if self.schema == other.schema {
            return true;
        }
        let parse = |s: &str| serde_json::from_str::<Json>(s).ok();
        self.schema_type != "PROTOBUF"
            && parse(&self.schema).is_some()
            && parse(&self.schema) == parse(&other.schema)
    }

    fn body(&self) -> serde_json::Map<String, Json> {
        let mut m = serde_json::Map::new();
        m.insert("schema".into(), json!(self.schema));
        if self.schema_type != "AVRO" {
            m.insert("schemaType".into(), json!(self.schema_type));
        }
        if !self.references.is_empty() {
            m.insert("references".into(), json!(self.references));
        }
        m
    }
}

impl Registry {
    fn version_body(&self, subject: &str, version: usize) -> Json {
        let id = self.subjects[subject][version - 1];
        let mut m = self.schemas[id - 1].body();
        m.insert("subject".into(), json!(subject));
        m.insert("version".into(), json!(version));
        m.insert("id".into(), json!(id));
        Json::Object(m)
    }

    /// The version `v` names (`latest`, `-1` or a number), if it exists.
    fn version(&self, subject: &str, v: &str) -> Result<usize, Refusal> {
        let versions = self.subjects.get(subject).ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                40401,
                format!("Subject '{subject}' not found."),
            )
        })?;
        let n = match v {
            "latest" | "-1" => versions.len(),
            v => v.parse().unwrap_or(0),
        };
        if n == 0 || n > versions.len() {
            return Err(error(
                StatusCode::NOT_FOUND,
                40402,
                format!("Version {v} not found."),
            ));
        }
        Ok(n)
    }

    fn register(&mut self, subject: &str, new: Stored) -> Result<Json, Refusal> {
        if new.schema_type != "PROTOBUF" && serde_json::from_str::<Json>(&new.schema).is_err() {
            return Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                42201,
                "Invalid schema: not JSON".into(),
            ));
        }
        for r in &new.references {
            self.version(&r.subject, &r.version.to_string())?;
        }
        if let Some(versions) = self.subjects.get(subject)
            && let Some(pos) = versions
                .iter()
                .position(|id| self.schemas[id - 1].same(&new))
        {
            let id = versions[pos];
            return Ok(json!({"id": id, "subject": subject, "version": pos + 1}));
        }
        let id = match self.schemas.iter().position(|s| s.same(&new)) {
            Some(i) => i + 1,
            None => {
                self.schemas.push(new);
                self.schemas.len()
            }
        };
        let versions = self.subjects.entry(subject.to_owned()).or_default();
        versions.push(id);
        Ok(json!({"id": id, "subject": subject, "version": versions.len()}))
    }
}

fn stored(body: &[u8]) -> Result<Stored, Refusal> {
    let r: Request = serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            format!("Invalid request: {e}"),
        )
    })?;
    Ok(Stored {
        schema_type: r
            .schema_type
            .map_or_else(|| "AVRO".to_owned(), |t| t.to_ascii_uppercase()),
        schema: r.schema,
        references: r.references,
    })
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(expected) = &shared.1 {
        use base64::Engine as _;
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
        if given.as_deref() != Some(expected.as_bytes()) {
            return error(StatusCode::UNAUTHORIZED, 40101, "Unauthorized".into()).into_response();
        }
    }
    let segments: Vec<String> = uri
        .path()
        .trim_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let mut reg = shared
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if method == Method::POST
        && let Some(operation) = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.strip_prefix("AWSGlue."))
    {
        // Glue requests are SigV4-signed for the glue service (the signature itself is not
        // checked: any credentials are accepted).
        let signed = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| {
                a.starts_with("AWS4-HMAC-SHA256 ") && a.contains("/glue/aws4_request")
            });
        if !signed {
            return glue::unsigned();
        }
        return reg.glue.call(operation, &body);
    }
    let result: Result<Json, Refusal> = match (&method, segs.as_slice()) {
        (&Method::GET, ["schemas", "types"]) => Ok(json!(["AVRO", "PROTOBUF", "JSON"])),
        (&Method::GET, ["schemas", "ids", id, rest @ ..]) => {
            let id: usize = id.parse().unwrap_or(0);
            match reg.schemas.get(id.wrapping_sub(1)) {
                None => Err(error(
                    StatusCode::NOT_FOUND,
                    40403,
                    format!("Schema {id} not found"),
                )),
                Some(s) => match rest {
                    [] => Ok(Json::Object(s.body())),
                    ["schema"] => return (StatusCode::OK, s.schema.clone()).into_response(),
                    ["subjects" | "versions"] => {
                        let pairs: Vec<(String, usize)> = reg
                            .subjects
                            .iter()
                            .flat_map(|(subject, ids)| {
                                ids.iter()
                                    .enumerate()
                                    .filter(|(_, i)| **i == id)
                                    .map(|(v, _)| (subject.clone(), v + 1))
                            })
                            .collect();
                        Ok(if rest == ["subjects"] {
                            json!(pairs.iter().map(|p| &p.0).collect::<Vec<_>>())
                        } else {
                            json!(
                                pairs
                                    .iter()
                                    .map(|(s, v)| json!({"subject": s, "version": v}))
                                    .collect::<Vec<_>>()
                            )
                        })
                    }
                    _ => Err(error(StatusCode::NOT_FOUND, 404, "no such path".into())),
                },
            }
        }
        (&Method::GET, ["subjects"]) => Ok(json!(reg.subjects.keys().collect::<Vec<_>>())),
        (&Method::GET, ["subjects", subject, "versions"]) => reg
            .version(subject, "latest")
            .map(|n| json!((1..=n).collect::<Vec<_>>())),
        (&Method::GET, ["subjects", subject, "versions", v]) => reg
            .version(subject, v)
            .map(|n| reg.version_body(subject, n)),
        (&Method::GET, ["subjects", subject, "versions", v, "schema"]) => {
            match reg.version(subject, v) {
                Ok(n) => {
                    let id = reg.subjects[*subject][n - 1];
                    return (StatusCode::OK, reg.schemas[id - 1].schema.clone()).into_response();
                }
                Err(e) => Err(e),
            }
        }
        (&Method::POST, ["subjects", subject, "versions"]) => {
            stored(&body).and_then(|s| reg.register(subject, s))
        }
        (&Method::POST, ["subjects", subject]) => stored(&body).and_then(|s| {
            let versions = reg.subjects.get(*subject).ok_or_else(|| {
                error(
                    StatusCode::NOT_FOUND,
                    40401,
                    format!("Subject '{subject}' not found."),
                )
            })?;
            match versions.iter().position(|id| reg.schemas[id - 1].same(&s)) {
                Some(pos) => Ok(reg.version_body(subject, pos + 1)),
                None => Err(error(
                    StatusCode::NOT_FOUND,
                    40403,
                    "Schema not found".into(),
                )),
            }
        }),
        (&Method::DELETE, ["subjects", subject]) => match reg.subjects.remove(*subject) {
            Some(ids) => Ok(json!((1..=ids.len()).collect::<Vec<_>>())),
            None => Err(error(
                StatusCode::NOT_FOUND,
                40401,
                format!("Subject '{subject}' not found."),
            )),
        },
        (&Method::GET, ["config", rest @ ..]) => {
            let level = rest
                .first()
                .and_then(|s| reg.compatibility.get(*s))
                .cloned()
                .unwrap_or_else(|| "BACKWARD".into());
            Ok(json!({"compatibilityLevel": level}))
        }
        (&Method::PUT, ["config", rest @ ..]) => {
            let level = serde_json::from_slice::<Json>(&body)
                .ok()
                .and_then(|j| {
                    j.get("compatibility")
                        .and_then(Json::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| "BACKWARD".into());
            reg.compatibility.insert(
                rest.first().copied().unwrap_or("").to_owned(),
                level.clone(),
            );
            Ok(json!({"compatibility": level}))
        }
        (&Method::POST, ["compatibility", "subjects", ..]) => Ok(json!({"is_compatible": true})),
        (&Method::GET, ["mode", ..]) => Ok(json!({"mode": "READWRITE"})),
        _ => Err(error(
            StatusCode::NOT_FOUND,
            404,
            format!("{method} {} is not served by this stand-in", uri.path()),
        )),
    };
    match result {
        Ok(body) => ok(body),
        Err(refusal) => refusal.into_response(),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let shared: Shared = Arc::new((Mutex::new(Registry::default()), args.basic_auth.clone()));
    let app = axum::Router::new().fallback(handle).with_state(shared);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("{}", listener.local_addr()?);
    if args.exit_on_stdin_eof {
        tokio::spawn(async {
            let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(_)) = lines.next_line().await {}
            std::process::exit(0);
        });
    }
    axum::serve(listener, app).await?;
    Ok(())
}
