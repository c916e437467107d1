//! An MSK IAM listener in front of tansu, which has no SASL OAUTHBEARER of its own. Like an MSK
//! broker's IAM listener it answers SaslHandshake and SaslAuthenticate itself: the OAUTHBEARER
//! token must be a SigV4 query-signed `kafka-cluster:Connect` request to
//! `kafka.<region>.amazonaws.com` from credentials it knows, signed within its lifetime; the
//! signature is checked by signing the same request again. ApiVersions is forwarded (the client
//! learns the broker's versions, SASL included), any other request before a login closes the
//! connection, and after a login bytes are copied to and from the broker. Tansu advertises the
//! front's port, so every connection a client makes goes through it.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Kafka API keys the front answers or lets through before a login.
const SASL_HANDSHAKE: i16 = 17;
const API_VERSIONS: i16 = 18;
const SASL_AUTHENTICATE: i16 = 36;
/// Kafka error codes.
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// An AWS identity the front accepts.
#[derive(Debug, Clone)]
pub struct Known {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

/// What the front saw: logins accepted, and why it refused the others.
#[derive(Debug, Clone, Default)]
pub struct IamStats {
    accepted: Arc<Mutex<u64>>,
    refusals: Arc<Mutex<Vec<String>>>,
}

impl IamStats {
    pub fn accepted(&self) -> u64 {
        self.accepted.lock().map(|n| *n).unwrap_or(0)
    }
    pub fn refusals(&self) -> Vec<String> {
        self.refusals.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// The front's settings: the region its tokens must name, the identities it knows, and how far
/// its clock is ahead of the real one (to present a fresh token late).
#[derive(Debug, Clone)]
pub struct IamFront {
    pub region: String,
    pub known: Vec<Known>,
    pub clock_ahead: Duration,
}

async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = stream.read_i32().await?;
    let mut buf = vec![0; usize::try_from(len).unwrap_or(0)];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame(stream: &mut TcpStream, payload: &[u8]) -> std::io::Result<()> {
    stream
        .write_all(&(payload.len() as i32).to_be_bytes())
        .await?;
    stream.write_all(payload).await
}

/// A cursor over a request.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> anyhow::Result<&[u8]> {
        if self.0.len() < n {
            bail!("short request");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn i16(&mut self) -> anyhow::Result<i16> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into()?))
    }
    fn i32(&mut self) -> anyhow::Result<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into()?))
    }
    fn uvarint(&mut self) -> anyhow::Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        bail!("varint too long")
    }
    /// A string with an i16 length (-1: null).
    fn string(&mut self) -> anyhow::Result<Vec<u8>> {
        let n = self.i16()?;
        Ok(if n < 0 {
            Vec::new()
        } else {
            self.take(n as usize)?.to_vec()
        })
    }
    fn skip_tags(&mut self) -> anyhow::Result<()> {
        for _ in 0..self.uvarint()? {
            self.uvarint()?;
            let n = self.uvarint()? as usize;
            self.take(n)?;
        }
        Ok(())
    }
}

fn uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The SaslAuthenticate response for `version` (flexible from 2).
fn authenticate_response(correlation: i32, version: i16, error: Option<&str>) -> Vec<u8> {
    let mut out = correlation.to_be_bytes().to_vec();
    let code = if error.is_some() {
        SASL_AUTHENTICATION_FAILED
    } else {
        0
    };
    if version >= 2 {
        out.push(0); // response header tags
        out.extend(code.to_be_bytes());
        match error {
            Some(m) => {
                uvarint(&mut out, m.len() as u64 + 1);
                out.extend(m.as_bytes());
            }
            None => out.push(0),
        }
        out.push(1); // empty auth bytes
        out.extend(0i64.to_be_bytes());
        out.push(0);
    } else {
        out.extend(code.to_be_bytes());
        match error {
            Some(m) => {
                out.extend((m.len() as i16).to_be_bytes());
                out.extend(m.as_bytes());
            }
            None => out.extend((-1i16).to_be_bytes()),
        }
        out.extend(0i32.to_be_bytes());
        if version >= 1 {
            out.extend(0i64.to_be_bytes());
        }
    }
    out
}

impl IamFront {
    /// Checks an OAUTHBEARER client message: `Ok` when its token would open an MSK IAM session.
    pub fn verify(&self, message: &[u8]) -> anyhow::Result<()> {
        let text = std::str::from_utf8(message).context("the message is not UTF-8")?;
        let token = text
            .split('\x01')
            .find_map(|p| p.strip_prefix("auth=Bearer "))
            .context("no bearer token in the OAUTHBEARER message")?;
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .context("the token is not URL-safe base64")?;
        let url = reqwest::Url::parse(std::str::from_utf8(&url)?).context("the token is no URL")?;
        let host = format!("kafka.{}.amazonaws.com", self.region);
        if url.scheme() != "https" || url.host_str() != Some(&host) || url.path() != "/" {
            bail!("the token signs {url}, not https://{host}/");
        }
        let q = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        if q("Action").as_deref() != Some("kafka-cluster:Connect")
            || q("X-Amz-Algorithm").as_deref() != Some("AWS4-HMAC-SHA256")
            || q("X-Amz-SignedHeaders").as_deref() != Some("host")
        {
            bail!("the token is not a SigV4 kafka-cluster:Connect request");
        }
        let credential = q("X-Amz-Credential").context("no X-Amz-Credential")?;
        let parts: Vec<&str> = credential.split('/').collect();
        if parts.len() != 5 || parts[2] != self.region || parts[3] != "kafka-cluster" {
            bail!(
                "the credential scope {credential} is not kafka-cluster in {}",
                self.region
            );
        }
        let known = self
            .known
            .iter()
            .find(|k| k.access_key == parts[0])
            .with_context(|| format!("unknown access key {}", parts[0]))?;
        if q("X-Amz-Security-Token") != known.session_token {
            bail!("the session token does not match");
        }
        let date = q("X-Amz-Date").context("no X-Amz-Date")?;
        let signed = chrono::NaiveDateTime::parse_from_str(&date, "%Y%m%dT%H%M%SZ")
            .context("bad X-Amz-Date")?
            .and_utc();
        let expires: u64 = q("X-Amz-Expires").context("no X-Amz-Expires")?.parse()?;
        if expires > 900 {
            bail!("X-Amz-Expires {expires} is over 900 seconds");
        }
        let now = chrono::DateTime::<chrono::Utc>::from(SystemTime::now() + self.clock_ahead);
        if now > signed + chrono::Duration::seconds(expires as i64) {
            bail!(
                "the token expired at {}",
                signed + chrono::Duration::seconds(expires as i64)
            );
        }
        if now + chrono::Duration::minutes(5) < signed {
            bail!("the token is signed in the future ({date})");
        }
        // Sign the same request again with the known secret; the signatures must agree.
        let creds = Credentials::new(
            &known.access_key,
            &known.secret_key,
            known.session_token.clone(),
            None,
            "iam-front",
        );
        let identity = creds.into();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(expires));
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("kafka-cluster")
            .time(SystemTime::from(signed))
            .settings(settings)
            .build()?
            .into();
        let request = SignableRequest::new(
            "GET",
            format!("https://{host}/?Action=kafka-cluster%3AConnect"),
            std::iter::empty(),
            SignableBody::Bytes(&[]),
        )?;
        let (_, expected) = sign(request, &params)?.into_parts();
        if q("X-Amz-Signature").as_deref() != Some(expected.as_str()) {
            bail!("the signature does not match");
        }
        Ok(())
    }

    /// Serves `front` on `listener`, forwarding to the broker on `upstream_port`, on its own
    /// thread until the process exits. The settings are read at each login, so a test can
    /// change them between runs.
    pub fn start(
        front: Arc<Mutex<IamFront>>,
        listener: TcpListener,
        upstream_port: u16,
    ) -> anyhow::Result<IamStats> {
        listener.set_nonblocking(true)?;
        let stats = IamStats::default();
        let counts = stats.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("iam-front".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    while let Ok((socket, _)) = listener.accept().await {
                        let (front, counts) = (front.clone(), counts.clone());
                        tokio::spawn(async move {
                            if let Err(why) = serve(&front, socket, upstream_port, &counts).await
                                && let Ok(mut r) = counts.refusals.lock()
                            {
                                r.push(format!("{why:#}"));
                            }
                        });
                    }
                });
            })
            .context("starting the IAM front's thread")?;
        Ok(stats)
    }
}

/// One connection: the login, then the broker. `Err` names why it was refused.
async fn serve(
    front: &Mutex<IamFront>,
    mut client: TcpStream,
    upstream_port: u16,
    stats: &IamStats,
) -> anyhow::Result<()> {
    {
        let mut broker = TcpStream::connect(("127.0.0.1", upstream_port)).await?;
        loop {
            let Ok(frame) = read_frame(&mut client).await else {
                return Ok(()); // the client hung up
            };
            let mut r = Reader(&frame);
            let (key, version, correlation) = (r.i16()?, r.i16()?, r.i32()?);
            match key {
                API_VERSIONS => {
                    write_frame(&mut broker, &frame).await?;
                    let answer = read_frame(&mut broker).await?;
                    write_frame(&mut client, &answer).await?;
                }
                SASL_HANDSHAKE => {
                    r.string()?; // client id
                    let mechanism = r.string()?;
                    let ok = mechanism == b"OAUTHBEARER";
                    let mut out = correlation.to_be_bytes().to_vec();
                    out.extend(if ok { 0 } else { UNSUPPORTED_SASL_MECHANISM }.to_be_bytes());
                    out.extend(1i32.to_be_bytes());
                    out.extend(11i16.to_be_bytes());
                    out.extend(b"OAUTHBEARER");
                    write_frame(&mut client, &out).await?;
                    if !ok {
                        bail!("mechanism {}", String::from_utf8_lossy(&mechanism));
                    }
                }
                SASL_AUTHENTICATE => {
                    r.string()?; // client id
                    let message = if version >= 2 {
                        r.skip_tags()?;
                        let n = r.uvarint()?.saturating_sub(1) as usize;
                        r.take(n)?.to_vec()
                    } else {
                        let n = r.i32()?.max(0) as usize;
                        r.take(n)?.to_vec()
                    };
                    let settings = front
                        .lock()
                        .map(|f| f.clone())
                        .map_err(|_| anyhow::anyhow!("poisoned"))?;
                    match settings.verify(&message) {
                        Ok(()) => {
                            write_frame(
                                &mut client,
                                &authenticate_response(correlation, version, None),
                            )
                            .await?;
                            if let Ok(mut n) = stats.accepted.lock() {
                                *n += 1;
                            }
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
                            return Ok(());
                        }
                        Err(why) => {
                            let text = format!("MSK IAM: {why:#}");
                            let answer = authenticate_response(correlation, version, Some(&text));
                            write_frame(&mut client, &answer).await?;
                            return Err(why);
                        }
                    }
                }
                other => bail!("api key {other} before a login"),
            }
        }
    }
}
