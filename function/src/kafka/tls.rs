//! TLS for the fetch stage's broker connections: the roots to trust and the client certificate
//! of mutual TLS, resolved once at cold start (from a file or from secrets) into the one rustls
//! config every broker connection shares. Errors name the config key the material came from.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::KafkaError;
use crate::config::{Config, TlsConfig};
use crate::error::{ConfigError, PipelineError};
use crate::maxcompute::Secret;
use crate::secrets::SecretResolver;

/// PEM text from the config, with the key it came from (for error messages).
#[derive(Debug, Clone)]
pub struct Pem {
    pub key: String,
    pub text: Secret,
}

/// The resolved material of `[kafka.tls]`.
#[derive(Debug, Clone, Default)]
pub struct TlsMaterial {
    /// The CA certificates to trust; `None` trusts the bundled Mozilla roots.
    pub ca: Option<Pem>,
    /// The client certificate chain and its key, for brokers that require mutual TLS.
    pub client: Option<(Pem, Pem)>,
}

fn fail(key: &str, reason: impl std::fmt::Display) -> PipelineError {
    KafkaError::TlsMaterial {
        reason: format!("{key}: {reason}"),
    }
    .into()
}

/// The certificates of a PEM text; at least one.
fn certificates(pem: &Pem) -> Result<Vec<CertificateDer<'static>>, PipelineError> {
    let certs = CertificateDer::pem_slice_iter(pem.text.expose().as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(&pem.key, format!("not valid PEM ({e})")))?;
    if certs.is_empty() {
        return Err(fail(
            &pem.key,
            "no certificate found; expected one or more -----BEGIN CERTIFICATE----- blocks",
        ));
    }
    Ok(certs)
}

/// The private key of a PEM text (PKCS#8, PKCS#1 or SEC1), refusing encrypted keys by name: the
/// event source mapping accepts a `privateKeyPassword`, k2mc does not.
fn private_key(pem: &Pem) -> Result<PrivateKeyDer<'static>, PipelineError> {
    let text = pem.text.expose();
    if text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(fail(
            &pem.key,
            "the private key is encrypted; store it unencrypted (PKCS#8 PEM, e.g. `openssl pkcs8 -topk8 -nocrypt`) in the secret, which Secrets Manager encrypts at rest",
        ));
    }
    PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| {
        fail(
            &pem.key,
            format!("no private key found ({e}); expected a -----BEGIN PRIVATE KEY----- block"),
        )
    })
}

/// The PEM texts `[kafka.tls]` names: the CA from its file (relative to the config) or its
/// secret, and the client certificate and key from theirs.
pub async fn tls_material(
    config: &Config,
    tls: &TlsConfig,
    secrets: &mut SecretResolver,
) -> Result<TlsMaterial, PipelineError> {
    let ca = match (&tls.ca, &tls.ca_file) {
        (Some(r), _) => Some(Pem {
            key: "kafka.tls.ca".into(),
            text: secrets.resolve("kafka.tls.ca", r).await?,
        }),
        (None, Some(path)) => {
            let path = config.resolve_path(path);
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Value {
                key: "kafka.tls.ca_file".into(),
                fix: format!(
                    "cannot read {} ({e}); name a PEM file relative to the config",
                    path.display()
                ),
            })?;
            Some(Pem {
                key: format!("kafka.tls.ca_file {}", path.display()),
                text: Secret::new(text),
            })
        }
        (None, None) => None,
    };
    let client = match (&tls.client_certificate, &tls.client_key) {
        (Some(cert), Some(key)) => Some((
            Pem {
                key: "kafka.tls.client_certificate".into(),
                text: secrets
                    .resolve("kafka.tls.client_certificate", cert)
                    .await?,
            },
            Pem {
                key: "kafka.tls.client_key".into(),
                text: secrets.resolve("kafka.tls.client_key", key).await?,
            },
        )),
        _ => None,
    };
    Ok(TlsMaterial { ca, client })
}

/// The rustls config for the brokers.
pub fn client_config(material: &TlsMaterial) -> Result<rustls::ClientConfig, PipelineError> {
    let mut roots = rustls::RootCertStore::empty();
    match &material.ca {
        Some(pem) => {
            for cert in certificates(pem)? {
                roots
                    .add(cert)
                    .map_err(|e| fail(&pem.key, format!("not a usable CA certificate ({e})")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail("kafka.tls", e))?
        .with_root_certificates(roots);
    match &material.client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(|e| {
                fail(
                    &key.key,
                    format!("does not fit {} ({e}); check that the key belongs to the first certificate", cert.key),
                )
            }),
    }
}

/// The fix for a connection error that is a TLS handshake refusal, which no retry can cure:
/// `None` for anything else (a broker that is down or restarting is retried). rskafka wraps the
/// rustls error in a poisoned-connection error that does not expose its source, so the rustls
/// error is recognised by its text (the integration test `kafka_tls` pins these).
pub(crate) fn handshake_refusal(error: &str) -> Option<&'static str> {
    if error.contains("received fatal alert: CertificateRequired") {
        Some(
            "the brokers require a client certificate; set kafka.tls.client_certificate and kafka.tls.client_key",
        )
    } else if error.contains("received fatal alert") {
        Some(
            "the brokers refused the TLS session or the client certificate; check that kafka.tls.client_certificate is signed by a CA the brokers trust and has not expired",
        )
    } else if error.contains("invalid peer certificate: UnknownIssuer") {
        Some(
            "the brokers' certificate is not signed by a trusted CA; set kafka.tls.ca (or kafka.tls.ca_file) to their CA",
        )
    } else if error.contains("invalid peer certificate") {
        Some(
            "the brokers' certificate is not valid for the address in kafka.bootstrap or has expired",
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(key: &str, text: &str) -> Pem {
        Pem {
            key: key.into(),
            text: Secret::new(text),
        }
    }

    #[test]
    fn an_encrypted_key_is_refused_by_name() {
        let key = pem(
            "kafka.tls.client_key",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        let e = private_key(&key).unwrap_err().to_string();
        assert!(e.contains("kafka.tls.client_key"), "{e}");
        assert!(e.contains("encrypted"), "{e}");
    }

    #[test]
    fn material_without_pem_blocks_names_its_key() {
        let e = client_config(&TlsMaterial {
            ca: Some(pem("kafka.tls.ca", "not a certificate")),
            client: None,
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("kafka.tls.ca: no certificate found"), "{e}");
        let e = private_key(&pem("kafka.tls.client_key", ""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("kafka.tls.client_key: no private key found"),
            "{e}"
        );
    }

    #[test]
    fn no_ca_trusts_the_bundled_roots() {
        assert!(client_config(&TlsMaterial::default()).is_ok());
    }
}
