//! `maxcompute-emulator`: a local MaxCompute that serves the REST API (`/api/...`) and the batch
//! Tunnel (`/projects/...`) on one loopback port, verifies request signatures, keeps its state in
//! files under `--data`, and has fault knobs for reliability tests. pyodps 0.13.2 is its referee:
//! the conformance tests drive it with pyodps, not only with our own client. It enforces the
//! batch Tunnel's per-table quotas (`quota.rs`), on a compressible clock.
//!
//! It prints its bound address as the first line on stdout, so a harness can start it on port 0.

mod auth;
mod error;
mod exec;
mod faults;
mod quota;
mod rest;
mod sql;
mod store;
mod tunnel;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use clap::Parser;
use k2mc::maxcompute::Credentials;
use tokio::io::AsyncBufReadExt as _;

use crate::error::{Api, ApiError};
use crate::faults::{FaultState, Faults};
use crate::store::Store;

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "A local MaxCompute REST + Tunnel emulator for development and tests"
)]
struct Args {
    /// Address to listen on; port 0 picks a free port. Keep it on loopback.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Directory holding tables, committed rows and upload sessions; survives restarts.
    #[arg(long)]
    data: PathBuf,
    /// The AccessKey id requests must be signed with.
    #[arg(long, env = "MAXCOMPUTE_EMULATOR_ACCESS_ID")]
    access_id: String,
    /// The AccessKey secret requests must be signed with.
    #[arg(long, env = "MAXCOMPUTE_EMULATOR_ACCESS_KEY", hide_env_values = true)]
    access_key: String,
    /// Seconds before an uncommitted upload session expires (MaxCompute: 24 h).
    #[arg(long, default_value_t = 86_400)]
    session_ttl_secs: u64,
    /// Initial latency added to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Exit when standard input closes, so a test harness's emulator dies with the harness.
    #[arg(long)]
    exit_on_stdin_eof: bool,
    /// Also write every block body as received (still compressed) to this directory, as
    /// `<upload id>.<block id>.<compression>`, for tests that hand them to other readers.
    #[arg(long)]
    keep_bodies: Option<PathBuf>,
    #[command(flatten)]
    quotas: quota::QuotaArgs,
}

/// Shared server state.
#[derive(Debug)]
pub struct AppState {
    pub store: Store,
    pub credentials: Credentials,
    pub addr: SocketAddr,
    pub faults: Mutex<FaultState>,
    /// Serializes metadata changes (table, partition, session status) across requests.
    pub meta_lock: tokio::sync::Mutex<()>,
    pub instances: Mutex<HashMap<String, rest::Instance>>,
    pub downloads: Mutex<HashMap<String, tunnel::Download>>,
    /// The per-table Tunnel quotas (`quota.rs`).
    pub quotas: Mutex<quota::Quotas>,
    /// `--keep-bodies`.
    pub keep_bodies: Option<PathBuf>,
    /// Tunnel block PUTs being answered now, and the most at once (`GET /_emulator/faults`,
    /// `blocks_in_flight_max`): a test reads whether a load sent a session's blocks at once.
    pub blocks_in_flight: Mutex<(usize, usize)>,
}

/// A block PUT counted in [`AppState::blocks_in_flight`] until it is dropped.
struct InFlight<'a>(&'a Mutex<(usize, usize)>);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a Mutex<(usize, usize)>) -> Self {
        let mut g = lock(gauge);
        g.0 += 1;
        g.1 = g.1.max(g.0);
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        lock(self.0).0 -= 1;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to listen on {}: the emulator is for loopback only",
            args.listen
        );
    }
    let store = Store::open(&args.data, Duration::from_secs(args.session_ttl_secs))?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(AppState {
        store,
        credentials: Credentials::new(args.access_id, args.access_key),
        addr,
        faults: Mutex::new(FaultState {
            armed: Faults {
                latency_ms: args.latency_ms,
                ..Faults::default()
            },
            ..FaultState::default()
        }),
        meta_lock: tokio::sync::Mutex::new(()),
        instances: Mutex::new(HashMap::new()),
        downloads: Mutex::new(HashMap::new()),
        quotas: Mutex::new(quota::Quotas::new(args.quotas)),
        keep_bodies: args.keep_bodies,
        blocks_in_flight: Mutex::new((0, 0)),
    });
    println!("{addr}");
    // Tunnel blocks are streamed bodies of any size (axum's default 2 MB limit answered a
    // pipeline's 8 MB block with 413, which MaxCompute never does).
    let app = axum::Router::new()
        .fallback(dispatch)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state);
    let server = axum::serve(listener, app);
    if args.exit_on_stdin_eof {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        tokio::select! {
            r = server => r?,
            _ = async { while let Ok(Some(_)) = lines.next_line().await {} } => {}
        }
    } else {
        server.await?;
    }
    Ok(())
}

/// Routes every request: admin, REST (`/api`) or Tunnel, after faults and signature checks.
async fn dispatch(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    if let Some(rest) = path.strip_prefix("/_emulator/") {
        return admin(&state, &method, rest, &body).unwrap_or_else(IntoResponse::into_response);
    }
    let api = if path.starts_with("/api/") || path == "/api" {
        Api::Rest
    } else {
        Api::Tunnel
    };
    // The Tunnel's only PUT is a block's.
    let _block = (api == Api::Tunnel && method == Method::PUT)
        .then(|| InFlight::enter(&state.blocks_in_flight));
    let latency = lock(&state.faults).armed.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let prefix = if api == Api::Rest { "/api" } else { "" };
    if let Err(mut e) = auth::verify(&state.credentials, &method, &uri, &headers, prefix) {
        if api == Api::Tunnel && e.code == "SignatureNotMatch" {
            e.code = "SignatureDoesNotMatch".into();
        }
        return e.for_api(api).into_response();
    }
    let result = match api {
        Api::Rest => rest::handle(&state, &method, &uri, &headers, body).await,
        Api::Tunnel => {
            if lock(&state.faults).take(|f| &mut f.throttle, |f| &mut f.throttle) {
                Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "SlowDown",
                    "too many requests; throttled by the emulator's fault knob",
                ))
            } else {
                tunnel::handle(&state, &method, &uri, &headers, body).await
            }
        }
    };
    result.unwrap_or_else(|e| {
        if e.status.is_server_error() {
            tracing::warn!(%method, %uri, code = %e.code, message = %e.message, "Request failed.");
        }
        e.for_api(api).into_response()
    })
}

fn admin(state: &AppState, method: &Method, path: &str, body: &[u8]) -> Result<Response, ApiError> {
    let parts: Vec<&str> = path.split('/').collect();
    match (method, parts.as_slice()) {
        (&Method::GET, ["faults"]) => {
            let f = lock(&state.faults);
            let max = lock(&state.blocks_in_flight).1;
            let body = serde_json::json!({"armed": f.armed, "fired": f.fired, "blocks_in_flight_max": max})
                .to_string();
            Ok(([("Content-Type", "application/json")], body).into_response())
        }
        (&Method::POST, ["faults"]) => {
            let armed: Faults = serde_json::from_slice(body)
                .map_err(|e| ApiError::invalid(format!("bad faults JSON: {e}")))?;
            lock(&state.faults).armed = armed;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (&Method::GET, ["quotas"]) => {
            let body = serde_json::to_string(&lock(&state.quotas).counts())
                .map_err(|e| ApiError::internal(e.to_string()))?;
            Ok(([("Content-Type", "application/json")], body).into_response())
        }
        (&Method::POST, ["uploads", id, "expire"]) => {
            let mut meta = state.store.upload(id)?.ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "NoSuchUpload",
                    format!("no upload session {id}"),
                )
            })?;
            meta.force_expired = true;
            state.store.save_upload(&meta)?;
            lock(&state.faults).fired.expired_sessions += 1;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NoSuchObject",
            format!("no admin endpoint {method} /_emulator/{path}"),
        )),
    }
}

/// Locks a std mutex, recovering the data if a panicking thread poisoned it.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Parses a request's query into a map of decoded parameters (bare flags map to "").
pub fn query_params(uri: &Uri) -> HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// The percent-decoded segments of a request path, without leading and trailing slashes.
pub fn path_segments(path: &str) -> Vec<String> {
    path.trim_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}
