//! The host side of the WIT `registry` interface: schemas from the configured schema registry
//! (`[registry]`: a Confluent-compatible REST API, or the AWS Glue Schema Registry in `glue`),
//! fetched by the host and handed to parser stages granted `registry`, so that a stage decodes
//! Avro, Protobuf or JSON Schema records without network access (transforms/README.md,
//! "registry").
//!
//! Guest calls are synchronous and may arrive on any thread (inside `block_in_place`, a scoped
//! thread, or the cold start's configure), so a miss is fetched on a short-lived thread with a
//! runtime of its own. Schemas by id never change and are kept for the life of the process;
//! a subject's latest version is kept for [`LATEST_TTL`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::bindings::{RegistryError, RegistryErrorKind, Schema, SchemaId};
use crate::maxcompute::Secret;

/// How long a subject's latest version is reused before it is asked again.
const LATEST_TTL: Duration = Duration::from_secs(60);
/// Deepest chain of references followed (a cycle is an error, not a hang).
pub(crate) const MAX_REFERENCE_DEPTH: usize = 32;

/// A schema registry client shared by every instance of a chain.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

mod confluent;
mod glue;

use confluent::{Confluent, encode};
pub(crate) use glue::Glue;

/// Which registry API answers.
enum Backend {
    Confluent(Confluent),
    Glue(Glue),
}

struct Inner {
    backend: Backend,
    timeout: Duration,
    /// By id: `c:<id>` (Confluent) or `g:<uuid>` (Glue).
    by_id: Mutex<HashMap<String, Schema>>,
    by_subject: Mutex<HashMap<SubjectVersion, (Instant, Schema)>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

/// A subject and a version (`None`: the latest).
type SubjectVersion = (String, Option<i32>);

impl Registry {
    /// A client of the registry at `base`; `auth` is basic authentication.
    pub fn new(mut base: url::Url, auth: Option<(String, Secret)>, timeout: Duration) -> Self {
        // `join` replaces the last segment of a base without a trailing slash.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Self::with(Backend::Confluent(Confluent { base, auth }), timeout)
    }

    /// The registry `[registry]` describes: secrets resolved, for Glue the AWS SDK's
    /// credentials and region.
    pub(crate) async fn from_config(
        r: &crate::config::RegistryConfig,
        sdk: &aws_config::SdkConfig,
        secrets: &mut crate::secrets::SecretResolver,
    ) -> Result<Self, crate::error::ConfigError> {
        use crate::config::RegistryKind;
        use crate::error::ConfigError;
        let timeout = Duration::from_millis(r.timeout_ms);
        let missing = |key: &str, fix: &str| ConfigError::Value {
            key: key.into(),
            fix: fix.into(),
        };
        match r.kind {
            RegistryKind::Confluent => {
                let url = r
                    .url
                    .clone()
                    .ok_or_else(|| missing("registry.url", "set the schema registry's URL"))?;
                let auth = match (&r.username, &r.password) {
                    (Some(user), Some(password)) => Some((
                        secrets
                            .resolve("registry.username", user)
                            .await?
                            .expose()
                            .to_owned(),
                        secrets.resolve("registry.password", password).await?,
                    )),
                    _ => None,
                };
                Ok(Self::new(url, auth, timeout))
            }
            RegistryKind::Glue => {
                let region = r
                    .region
                    .clone()
                    .or_else(|| sdk.region().map(|x| x.to_string()))
                    .ok_or_else(|| {
                        missing("registry.region", "name the Glue registry's AWS region")
                    })?;
                let endpoint = match &r.url {
                    Some(u) => u.clone(),
                    None => url::Url::parse(&format!("https://glue.{region}.amazonaws.com/"))
                        .map_err(|_| missing("registry.region", "use an AWS region name"))?,
                };
                let credentials = sdk.credentials_provider().ok_or_else(|| {
                    missing(
                        "registry.kind",
                        "the AWS SDK found no credentials for the Glue schema registry",
                    )
                })?;
                Ok(Self::glue(
                    Glue {
                        endpoint,
                        region,
                        registry_name: r.registry_name.clone(),
                        credentials,
                    },
                    timeout,
                ))
            }
        }
    }

    /// A client of the AWS Glue Schema Registry.
    pub(crate) fn glue(glue: Glue, timeout: Duration) -> Self {
        Self::with(Backend::Glue(glue), timeout)
    }

    fn with(backend: Backend, timeout: Duration) -> Self {
        Registry {
            inner: Arc::new(Inner {
                backend,
                timeout,
                by_id: Mutex::new(HashMap::new()),
                by_subject: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The registry's URL, for messages.
    pub fn url(&self) -> &str {
        match &self.inner.backend {
            Backend::Confluent(c) => c.base.as_str(),
            Backend::Glue(g) => g.endpoint.as_str(),
        }
    }

    /// The schema a record's framing names.
    pub(crate) fn by_id(&self, id: &SchemaId) -> Result<Schema, RegistryError> {
        let key = match (id, &self.inner.backend) {
            (SchemaId::Confluent(id), Backend::Confluent(_)) => format!("c:{id}"),
            (SchemaId::Glue(uuid), Backend::Glue(_)) => format!("g:{uuid}"),
            (SchemaId::Confluent(id), Backend::Glue(_)) => {
                return Err(unavailable(format!(
                    "record names Confluent schema id {id} (magic byte 0), but [registry] is an AWS Glue registry; set registry.kind = \"confluent\" and its url"
                )));
            }
            (SchemaId::Glue(uuid), Backend::Confluent(_)) => {
                return Err(unavailable(format!(
                    "record names AWS Glue schema version {uuid} (header byte 3), but [registry] is a Confluent-compatible registry ({}); set registry.kind = \"glue\"",
                    self.url()
                )));
            }
        };
        if let Some(s) = lock(&self.inner.by_id).get(&key) {
            return Ok(s.clone());
        }
        let inner = Arc::clone(&self.inner);
        let id = id.clone();
        let schema = off_thread(move || async move {
            let client = inner.client()?;
            match (&inner.backend, id) {
                (Backend::Glue(g), SchemaId::Glue(uuid)) => g.by_version_id(&client, &uuid).await,
                (Backend::Confluent(c), SchemaId::Confluent(id)) => {
                    let answer = c.get(&client, &format!("schemas/ids/{id}")).await?;
                    c.schema(&client, id.to_string(), answer).await
                }
                (Backend::Glue(_), SchemaId::Confluent(id)) => {
                    Err(unavailable(format!("no Confluent registry for id {id}")))
                }
                (_, SchemaId::Glue(uuid)) => {
                    Err(unavailable(format!("no Glue registry for {uuid}")))
                }
            }
        })?;
        lock(&self.inner.by_id).insert(key, schema.clone());
        Ok(schema)
    }

    /// A version of `subject` (`None`: the latest).
    pub(crate) fn by_subject(
        &self,
        subject: &str,
        version: Option<i32>,
    ) -> Result<Schema, RegistryError> {
        let key = (subject.to_owned(), version);
        if let Some((at, s)) = lock(&self.inner.by_subject).get(&key)
            && (version.is_some() || at.elapsed() < LATEST_TTL)
        {
            return Ok(s.clone());
        }
        let inner = Arc::clone(&self.inner);
        let path = format!(
            "subjects/{}/versions/{}",
            encode(subject),
            version.map_or_else(|| "latest".to_owned(), |v| v.to_string())
        );
        let name = subject.to_owned();
        let schema = off_thread(move || async move {
            let client = inner.client()?;
            match &inner.backend {
                Backend::Glue(g) => g.by_name(&client, &name, version).await,
                Backend::Confluent(c) => {
                    let answer = c.get(&client, &path).await?;
                    let id = answer.id.map(|i| i.to_string()).unwrap_or_default();
                    c.schema(&client, id, answer).await
                }
            }
        })?;
        lock(&self.inner.by_subject).insert(key, (Instant::now(), schema.clone()));
        Ok(schema)
    }
}

impl Inner {
    fn client(&self) -> Result<reqwest::Client, RegistryError> {
        reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .map_err(|e| unavailable(format!("cannot build an HTTP client: {e}")))
    }
}

fn not_found(message: String) -> RegistryError {
    RegistryError {
        kind: RegistryErrorKind::NotFound,
        message,
    }
}

fn unavailable(message: String) -> RegistryError {
    RegistryError {
        kind: RegistryErrorKind::Unavailable,
        message,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the cache leaves a usable map; recover it rather than propagate.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `work` to completion on a thread of its own with a current-thread runtime: guest calls
/// are synchronous and may already be inside a runtime, where blocking on one would panic.
fn off_thread<F, Fut, T>(work: F) -> Result<T, RegistryError>
where
    F: FnOnce() -> Fut + Send,
    Fut: std::future::Future<Output = Result<T, RegistryError>>,
    T: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| unavailable(format!("cannot start a runtime: {e}")))?
                .block_on(work())
        })
        .join()
        .unwrap_or_else(|_| Err(unavailable("the registry lookup panicked".into())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glue_ids_are_refused_with_the_reason() {
        let r = Registry::new(
            url::Url::parse("http://127.0.0.1:1/").expect("url"),
            None,
            Duration::from_secs(1),
        );
        let e = r
            .by_id(&SchemaId::Glue(
                "b7b4a7f0-0000-0000-0000-000000000000".into(),
            ))
            .expect_err("glue");
        assert_eq!(e.kind, RegistryErrorKind::Unavailable);
        assert!(
            e.message.contains("registry.kind = \"glue\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn an_unreachable_registry_is_unavailable_not_missing() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let r = Registry::new(
            url::Url::parse(&format!("http://127.0.0.1:{port}/")).expect("url"),
            None,
            Duration::from_secs(2),
        );
        let e = r.by_id(&SchemaId::Confluent(1)).expect_err("refused");
        assert_eq!(e.kind, RegistryErrorKind::Unavailable, "{}", e.message);
    }
}
