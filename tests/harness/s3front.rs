//! A front for s3s-fs that makes each object's requests linearizable, as S3 and OSS are.
//!
//! s3s-fs 0.14.1 checks `If-None-Match: *` and `If-Match` and then writes, with nothing between
//! the check and the rename, and it renames the data before it records the new ETag. Eight
//! concurrent create-only PUTs of one key all succeed about half the time (measured: 26 of 48 in
//! six rounds), and a GET racing a PUT can see the new body with the old ETag. The commit protocol
//! relies on S3's guarantee that of two conditional writes exactly one wins, so the stack puts this
//! front between `k2mc` and s3s-fs: requests on one object key take turns, and a request whose
//! client dies (a crash test's SIGKILL) still runs to its end upstream, since s3s-fs cancelled
//! midway keeps the new body under the old checksum. Nothing else changes: the bytes, headers
//! and signatures pass through untouched, and s3s-fs still does all of S3.
//!
//! It is also the reliability tests' fault proxy: [`FrontHandle::set`] arms faults on object
//! requests (an error status without forwarding, latency, a connection dropped with or without the
//! request having reached s3s-fs, a PUT body with one byte flipped on its way), and
//! [`FrontHandle::fired`] counts what fired.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// Hop-by-hop headers, and `Expect`, which the front has already answered.
const HOP_BY_HOP: [header::HeaderName; 5] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::EXPECT,
    header::UPGRADE,
    header::TE,
];

/// Faults armed on object requests (bucket-level requests are never touched). Counters count
/// down as they fire.
#[derive(Debug, Clone, Default)]
pub struct S3Faults {
    /// Answer the next N object requests with `fail_status` without forwarding them.
    pub fail: u32,
    /// 500 (`InternalError`) or 503 (`SlowDown`); 500 when unset.
    pub fail_status: u16,
    /// Delay every object request by this long before forwarding it.
    pub latency: Duration,
    /// Drop the connection of the next N object PUTs without answering.
    pub drop_puts: u32,
    /// Whether a dropped PUT reaches s3s-fs first (the write happened, the client cannot know).
    pub drop_after_write: bool,
    /// Flip one byte of the body of the next N object PUTs and forward them: corruption in
    /// transit, which the bucket must refuse (by the payload signature or the body's checksum).
    pub corrupt_puts: u32,
}

/// What the front saw and injected since it started.
#[derive(Debug, Clone, Copy, Default)]
pub struct S3Fired {
    pub requests: u64,
    pub failed: u64,
    pub dropped: u64,
    pub corrupted: u64,
}

/// A running front: its port and its fault knobs.
#[derive(Debug, Clone)]
pub struct FrontHandle {
    pub port: u16,
    faults: Arc<Mutex<(S3Faults, S3Fired)>>,
}

impl FrontHandle {
    /// Arms `faults` (replacing what was armed).
    pub fn set(&self, faults: S3Faults) {
        if let Ok(mut f) = self.faults.lock() {
            f.0 = faults;
        }
    }

    /// Counts since start.
    pub fn fired(&self) -> S3Fired {
        self.faults.lock().map(|f| f.1).unwrap_or_default()
    }
}

/// What the front does with one request.
enum Fate {
    Forward,
    Fail(StatusCode),
    Drop { forward: bool },
    Corrupt,
}

#[derive(Clone)]
struct Front {
    upstream: String,
    http: reqwest::Client,
    keys: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    faults: Arc<Mutex<(S3Faults, S3Fired)>>,
}

impl Front {
    /// Decides a request's fate from the armed faults, and its delay.
    fn fate(&self, method: &Method, path: &str) -> (Fate, Duration) {
        let is_object = path
            .trim_start_matches('/')
            .split_once('/')
            .is_some_and(|(_, key)| !key.is_empty());
        let Ok(mut guard) = self.faults.lock() else {
            return (Fate::Forward, Duration::ZERO);
        };
        let (armed, fired) = &mut *guard;
        fired.requests += 1;
        if !is_object {
            return (Fate::Forward, Duration::ZERO);
        }
        let fate = if armed.fail > 0 {
            armed.fail -= 1;
            fired.failed += 1;
            Fate::Fail(
                StatusCode::from_u16(armed.fail_status)
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            )
        } else if armed.drop_puts > 0 && method == Method::PUT {
            armed.drop_puts -= 1;
            fired.dropped += 1;
            Fate::Drop {
                forward: armed.drop_after_write,
            }
        } else if armed.corrupt_puts > 0 && method == Method::PUT {
            armed.corrupt_puts -= 1;
            fired.corrupted += 1;
            Fate::Corrupt
        } else {
            Fate::Forward
        };
        (fate, armed.latency)
    }

    /// The turn lock of an object key (`/bucket/key…`); bucket-level requests take none.
    fn lock_of(&self, path: &str) -> Option<Arc<tokio::sync::Mutex<()>>> {
        let object = path.trim_start_matches('/').split_once('/')?.1;
        if object.is_empty() {
            return None;
        }
        let mut keys = self.keys.lock().ok()?;
        Some(Arc::clone(keys.entry(path.to_owned()).or_default()))
    }

    async fn forward(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response, String> {
        let lock = self.lock_of(uri.path());
        let _turn = match &lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.upstream))
            .body(body);
        for (name, value) in &headers {
            if !HOP_BY_HOP.contains(name) {
                // Host is kept as the client signed it.
                request = request.header(name, value);
            }
        }
        let answer = request.send().await.map_err(|e| e.to_string())?;
        let status = answer.status();
        let mut out_headers = HeaderMap::new();
        for (name, value) in answer.headers() {
            if !HOP_BY_HOP.contains(name) && name != header::CONTENT_LENGTH {
                out_headers.append(name, value.clone());
            }
        }
        let body = answer.bytes().await.map_err(|e| e.to_string())?;
        Ok((status, out_headers, body).into_response())
    }
}

/// An S3 error answer the SDK classifies as retryable.
fn s3_error(status: StatusCode) -> Response {
    let code = if status == StatusCode::SERVICE_UNAVAILABLE {
        "SlowDown"
    } else {
        "InternalError"
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected by the test front</Message></Error>"
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

/// Serves the front on a free loopback port, forwarding to `upstream_port`; returns its port.
/// It lives on its own thread until the process exits (it holds no state worth cleaning up).
pub fn start(upstream_port: u16) -> anyhow::Result<u16> {
    Ok(start_with_faults(upstream_port)?.port)
}

/// [`start`], keeping the handle on its fault knobs (nothing armed at first).
pub fn start_with_faults(upstream_port: u16) -> anyhow::Result<FrontHandle> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    listener.set_nonblocking(true)?;
    let front = Front {
        upstream: format!("http://127.0.0.1:{upstream_port}"),
        http: reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("building the S3 front's client")?,
        keys: Arc::default(),
        faults: Arc::default(),
    };
    let handle = FrontHandle {
        port,
        faults: Arc::clone(&front.faults),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("s3-front".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let app = axum::Router::new()
                    .fallback(
                        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                            let front = front.clone();
                            let (fate, delay) = front.fate(&method, uri.path());
                            async move {
                                if !delay.is_zero() {
                                    tokio::time::sleep(delay).await;
                                }
                                let forward = match fate {
                                    Fate::Fail(status) => return s3_error(status),
                                    Fate::Drop { forward } => forward,
                                    Fate::Forward | Fate::Corrupt => true,
                                };
                                let body = if matches!(fate, Fate::Corrupt) && !body.is_empty() {
                                    let mut flipped = body.to_vec();
                                    let middle = flipped.len() / 2;
                                    flipped[middle] ^= 0x20;
                                    Bytes::from(flipped)
                                } else {
                                    body
                                };
                                // Its own task: a client killed mid-request must not cancel the
                                // request upstream halfway (s3s-fs would keep the new body under
                                // the old checksum); on S3 a request happens whole or not at all.
                                let answer = if forward {
                                    let task = tokio::spawn(async move {
                                        front.forward(method, uri, headers, body).await
                                    });
                                    match task.await {
                                        Ok(Ok(r)) => r,
                                        Ok(Err(e)) => (StatusCode::BAD_GATEWAY, e).into_response(),
                                        Err(e) => {
                                            (StatusCode::BAD_GATEWAY, e.to_string()).into_response()
                                        }
                                    }
                                } else {
                                    StatusCode::OK.into_response()
                                };
                                if matches!(fate, Fate::Drop { .. }) {
                                    // Unwinding ends this connection's task: the socket closes
                                    // with no answer, which is what a dropped connection looks
                                    // like to the client (no panic hook runs, so nothing prints).
                                    std::panic::resume_unwind(Box::new(
                                        "injected: connection dropped",
                                    ));
                                }
                                answer
                            }
                        },
                    )
                    // Staged blocks are up to `block_bytes` (8 MiB by default): no body limit.
                    .layer(axum::extract::DefaultBodyLimit::disable());
                let _ = axum::serve(listener, app).await;
            });
        })?;
    Ok(handle)
}
