//! A mutual-TLS front for tansu, which has no TLS listener of its own: it terminates TLS with a
//! server certificate for 127.0.0.1, requires a client certificate signed by its CA, and copies
//! bytes to and from the broker. Tansu advertises the front's port, so every connection a Kafka
//! client makes (bootstrap and partition leaders alike) goes through it. The certificates are
//! made per run with rcgen: a CA, the server's, a client's, and a stranger's from another CA.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate and its private key, PEM encoded.
#[derive(Debug, Clone)]
pub struct Identity {
    pub certificate: String,
    pub key: String,
}

/// The certificates of one run.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA that signed the server's and the client's certificates.
    pub ca: String,
    pub server: Identity,
    /// A client the front accepts; its certificate field is the chain (client, then CA), as an
    /// event source mapping's CLIENT_CERTIFICATE_TLS_AUTH secret holds it.
    pub client: Identity,
    /// A client certificate from a CA the front does not trust.
    pub stranger: Identity,
}

fn new_ca(name: &str) -> anyhow::Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    purpose: ExtendedKeyUsagePurpose,
    chain: bool,
) -> anyhow::Result<Identity> {
    let key = KeyPair::generate()?;
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
    params
        .distinguished_name
        .push(DnType::CommonName, names.first().copied().unwrap_or("k2mc"));
    params.extended_key_usages = vec![purpose];
    let cert = params.signed_by(&key, issuer)?;
    let mut certificate = cert.pem();
    if chain {
        certificate.push_str(&issuer.pem());
    }
    Ok(Identity {
        certificate,
        key: key.serialize_pem(),
    })
}

impl Pki {
    /// Fresh certificates: the server's is for `127.0.0.1`.
    pub fn generate() -> anyhow::Result<Pki> {
        let ca = new_ca("k2mc test CA")?;
        let other = new_ca("another CA")?;
        Ok(Pki {
            ca: ca.pem(),
            server: leaf(
                &ca,
                &["127.0.0.1"],
                ExtendedKeyUsagePurpose::ServerAuth,
                false,
            )?,
            client: leaf(
                &ca,
                &["k2mc-client"],
                ExtendedKeyUsagePurpose::ClientAuth,
                true,
            )?,
            stranger: leaf(
                &other,
                &["stranger"],
                ExtendedKeyUsagePurpose::ClientAuth,
                true,
            )?,
        })
    }

    /// A rustls client config that trusts the CA and presents the client's certificate.
    pub fn client_config(&self) -> anyhow::Result<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.ca.as_bytes())?)?;
        let chain = CertificateDer::pem_slice_iter(self.client.certificate.as_bytes())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(
            chain,
            PrivateKeyDer::from_pem_slice(self.client.key.as_bytes())?,
        )?)
    }

    fn server_config(&self) -> anyhow::Result<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.ca.as_bytes())?)?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()?;
        Ok(rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(
                    self.server.certificate.as_bytes(),
                )?],
                PrivateKeyDer::from_pem_slice(self.server.key.as_bytes())?,
            )?)
    }
}

/// The running front: how many handshakes it refused, for tests to check the refusal was TLS's.
#[derive(Debug, Clone, Default)]
pub struct FrontStats {
    refused: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
}

impl FrontStats {
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits up to `within` for the refusal count to pass `before`. The front counts a refusal
    /// only after it has sent the alert, so the client can see the alert, exit, and be checked
    /// before the front's task gets to count it (seen once in CI on a busy machine).
    pub fn refused_since(&self, before: u64, within: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        loop {
            if self.refused() > before {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// Serves the front on `listener`, forwarding to the broker on `upstream_port`. It lives on its
/// own thread until the process exits.
pub fn start(listener: TcpListener, upstream_port: u16, pki: &Pki) -> anyhow::Result<FrontStats> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(pki.server_config()?));
    listener.set_nonblocking(true)?;
    let stats = FrontStats::default();
    let counts = stats.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("tls-front".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                while let Ok((socket, _)) = listener.accept().await {
                    let acceptor = acceptor.clone();
                    let counts = counts.clone();
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(socket).await else {
                            counts.refused.fetch_add(1, Ordering::SeqCst);
                            return;
                        };
                        counts.accepted.fetch_add(1, Ordering::SeqCst);
                        if let Ok(mut broker) =
                            tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)).await
                        {
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
                        }
                    });
                }
            });
        })
        .context("starting the TLS front's thread")?;
    Ok(stats)
}
