//! The local-stack harness shared by the integration tests, the demo and the benchmarks: builds
//! and starts the real servers on loopback ports chosen at run time, and runs the pinned pyodps
//! venv as the independent referee.
//!
//! Every process it starts dies with the harness: the emulator is started with
//! `--exit-on-stdin-eof` and its stdin is a pipe that closes when the harness exits; owned
//! handles also kill their process on drop.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, bail};

pub mod iamfront;
pub mod registry;
pub mod s3front;
pub mod stack;
pub mod tlsfront;

/// AccessKey id the local stack signs with.
pub const ACCESS_ID: &str = "k2mc-local-id";
/// AccessKey secret the local stack signs with. A known value, so leak scans can look for it.
pub const ACCESS_KEY: &str = "k2mc-local-secret-3f9a";
/// The MaxCompute project the local stack uses.
pub const PROJECT: &str = "k2mc_local";

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default()
}

/// The pinned Python venv's interpreter (created by `infra/local/setup`). Fails loudly when it is
/// missing: the pyodps checks are never skipped.
pub fn python() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("K2MC_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".local/venv/bin/python"));
    if !path.exists() {
        bail!(
            "no Python venv at {}: run infra/local/setup (it installs pyodps 0.13.2 from tests/pyodps/requirements.txt)",
            path.display()
        );
    }
    Ok(path)
}

/// Returns the path of a workspace binary in the same profile as the running test, building the
/// workspace first (once per process). The build is `cargo build --workspace --all-targets`,
/// which resolves features exactly as `cargo test --workspace` does, so it never rebuilds what
/// the test run just built. In the release profile (the benchmark) only the binaries are built:
/// tests are never built there, and building them would only add time.
pub fn workspace_bin(bin: &str) -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let profile_dir = BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            // target/<profile>/deps/<test> or target/<profile>/<bin>
            let profile_dir = exe
                .ancestors()
                .find(|p| {
                    p.file_name()
                        .is_some_and(|n| n == "debug" || n == "release")
                })
                .ok_or("cannot find the cargo profile directory above the running executable")?
                .to_owned();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--quiet", "--workspace"])
                .current_dir(repo_root());
            clean_cargo_env(&mut cmd);
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.args(["--release", "--bins"]);
            } else {
                cmd.arg("--all-targets");
            }
            let status = cmd
                .status()
                .map_err(|e| format!("running cargo build: {e}"))?;
            if !status.success() {
                return Err("cargo build --workspace --all-targets failed".to_owned());
            }
            Ok(profile_dir)
        })
        .clone()
        .map_err(anyhow::Error::msg)?;
    let path = profile_dir.join(bin);
    if !path.exists() {
        bail!(
            "{} does not exist after building the workspace",
            path.display()
        );
    }
    Ok(path)
}

/// Builds the transform components (`transforms/`, a separate workspace for wasm32-wasip2) once
/// per process and returns the path of `<name>.wasm`.
pub fn transform_wasm(name: &str) -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT
        .get_or_init(|| {
            let root = repo_root().join("transforms");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--quiet", "--release", "--target-dir", "target"]).current_dir(&root);
            clean_cargo_env(&mut cmd);
            let status = cmd.status().map_err(|e| format!("running cargo build in transforms/: {e}"))?;
            if !status.success() {
                return Err("building transforms/ failed (is the wasm32-wasip2 target installed? run infra/local/setup)".to_owned());
            }
            Ok(root.join("target/wasm32-wasip2/release"))
        })
        .clone()
        .map_err(anyhow::Error::msg)?;
    let path = dir.join(format!("{}.wasm", name.replace('-', "_")));
    if !path.exists() {
        bail!("{} was not built", path.display());
    }
    Ok(path)
}

/// A chain stage with default grants and limits.
pub fn stage_spec(name: &str, wasm: &Path, config: &[(&str, &str)]) -> k2mc::transform::StageSpec {
    k2mc::transform::StageSpec {
        name: name.to_owned(),
        wasm: wasm.to_owned(),
        config: config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        grants: k2mc::transform::Grants::default(),
        limits: k2mc::transform::Limits::default(),
        registry: None,
    }
}

/// Builds (when its sources are newer) and returns a transform written in another language:
/// `mask-js` (componentize-js) or `mask-py` (componentize-py).
pub fn foreign_wasm(name: &str) -> anyhow::Result<PathBuf> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = repo_root().join("transforms");
    let out = root
        .join("target")
        .join(format!("{}.wasm", name.replace('-', "_")));
    let (dir, sources, mut cmd) = match name {
        "mask-js" => {
            let mut cmd = Command::new("node");
            cmd.arg("build.mjs").arg(&out);
            (
                root.join("mask-js"),
                vec!["mask.js", "build.mjs", "package-lock.json"],
                cmd,
            )
        }
        "mask-py" => {
            let venv = python()?.parent().map(Path::to_owned).unwrap_or_default();
            let mut cmd = Command::new(venv.join("componentize-py"));
            cmd.args([
                "-d",
                "../../wit",
                "-w",
                "row-stage",
                "componentize",
                "app",
                "-o",
            ])
            .arg(&out);
            (root.join("mask-py"), vec!["app.py"], cmd)
        }
        other => bail!("no foreign transform '{other}'"),
    };
    let built = std::fs::metadata(&out).and_then(|m| m.modified()).ok();
    let newest = sources
        .iter()
        .map(|s| dir.join(s))
        .chain([repo_root().join("wit/transform.wit")])
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max();
    if built.is_none() || newest > built {
        std::fs::create_dir_all(root.join("target"))?;
        let output = cmd
            .current_dir(&dir)
            .output()
            .with_context(|| format!("building {name}"))?;
        if !output.status.success() {
            bail!(
                "building {name} failed (run infra/local/setup): {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    Ok(out)
}

/// A compiled-artifact cache shared by test runs, so that the JavaScript and Python components
/// (seconds of JIT each) compile once per change.
pub fn artifact_cache() -> PathBuf {
    repo_root().join("transforms/target/cwasm-cache")
}

/// Removes the per-crate variables `cargo test` gives a test process; passed on to an inner
/// cargo they would make it rebuild everything.
pub fn clean_cargo_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_TARGET_DIR" {
            cmd.env_remove(key);
        }
    }
}

/// A running `maxcompute-emulator`, killed on drop.
#[derive(Debug)]
pub struct Emulator {
    pub addr: String,
    pub data: PathBuf,
    child: Child,
    _stdin: ChildStdin,
}

/// Spawns one of our servers that print their bound address as the first line on stdout and
/// exit when stdin closes: the child, the stdin pipe to hold, and the address.
pub fn spawn_announcing(
    command: &mut Command,
    bin: &Path,
) -> anyhow::Result<(Child, ChildStdin, String)> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdin = child.stdin.take().context("stdin of the server")?;
    let stdout = child.stdout.take().context("stdout of the server")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr = line.trim().to_owned();
    if addr.is_empty() {
        let _ = child.kill();
        bail!("{} exited before printing its address", bin.display());
    }
    Ok((child, stdin, addr))
}

impl Emulator {
    /// The emulator's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts an emulator over `data` on a free loopback port.
    pub fn start(data: &Path) -> anyhow::Result<Self> {
        Self::start_with(data, &[])
    }

    /// Starts an emulator with extra flags.
    pub fn start_with(data: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let bin = workspace_bin("maxcompute-emulator")?;
        let mut command = Command::new(&bin);
        command
            .args([
                "--listen",
                "127.0.0.1:0",
                "--access-id",
                ACCESS_ID,
                "--access-key",
                ACCESS_KEY,
                "--exit-on-stdin-eof",
                "--data",
            ])
            .arg(data)
            .args(extra);
        let (child, stdin, addr) = spawn_announcing(&mut command, &bin)?;
        Ok(Emulator {
            addr,
            data: data.to_owned(),
            child,
            _stdin: stdin,
        })
    }

    /// The REST endpoint, `http://127.0.0.1:PORT/api`.
    pub fn endpoint(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(mut self) -> anyhow::Result<PathBuf> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(self.data.clone())
    }

    /// Arms fault knobs (JSON object, see the emulator's `faults` module).
    pub fn set_faults(&self, faults: &serde_json::Value) -> anyhow::Result<()> {
        let body = faults.to_string();
        let resp = http_request(&self.addr, "POST", "/_emulator/faults", &body)?;
        if !resp.starts_with("HTTP/1.1 204") {
            bail!("setting faults failed: {resp}");
        }
        Ok(())
    }

    /// Expires one upload session now (committed or not), as its lifetime passing would.
    pub fn expire_upload(&self, upload_id: &str) -> anyhow::Result<()> {
        let path = format!("/_emulator/uploads/{upload_id}/expire");
        let resp = http_request(&self.addr, "POST", &path, "")?;
        if !resp.starts_with("HTTP/1.1 204") {
            bail!("expiring {upload_id} failed: {resp}");
        }
        Ok(())
    }

    /// Expires every upload session the emulator holds, as a day-long outage would (each
    /// session's `session.json` under the data directory names its id).
    pub fn expire_all_uploads(&self) -> anyhow::Result<usize> {
        let mut n = 0;
        for entry in std::fs::read_dir(self.data.join("uploads"))? {
            let file = entry?.path().join("session.json");
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            let meta: serde_json::Value = serde_json::from_slice(&bytes)?;
            if let Some(id) = meta["id"].as_str() {
                self.expire_upload(id)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// The fault knobs and how often each fired.
    pub fn faults(&self) -> anyhow::Result<serde_json::Value> {
        let resp = http_request(&self.addr, "GET", "/_emulator/faults", "")?;
        let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default();
        Ok(serde_json::from_str(body)?)
    }

    /// The most Tunnel block PUTs the emulator has answered at once since it started: whether
    /// a load sent a session's blocks one at a time.
    pub fn blocks_in_flight_max(&self) -> anyhow::Result<u64> {
        Ok(self.faults()?["blocks_in_flight_max"]
            .as_u64()
            .unwrap_or_default())
    }

    /// What the Tunnel quotas accepted and refused (`GET /_emulator/quotas`).
    pub fn quotas(&self) -> anyhow::Result<serde_json::Value> {
        let resp = http_request(&self.addr, "GET", "/_emulator/quotas", "")?;
        let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default();
        Ok(serde_json::from_str(body)?)
    }

    /// Runs the pyodps referee script against this emulator.
    pub fn pyodps(&self, args: &[&str]) -> anyhow::Result<String> {
        pyodps(Some(self), args)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 exchange for the unauthenticated admin endpoint.
fn http_request(addr: &str, method: &str, path: &str, body: &str) -> anyhow::Result<String> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr)?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    stream.read_to_string(&mut out)?;
    Ok(out)
}

/// Runs `tests/pyodps/conformance.py` with `TZ=UTC`; with an emulator, against it.
pub fn pyodps(emulator: Option<&Emulator>, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new(python()?);
    cmd.arg(repo_root().join("tests/pyodps/conformance.py"))
        .env("TZ", "UTC");
    if let Some(e) = emulator {
        cmd.args([
            "--endpoint",
            &e.endpoint(),
            "--project",
            PROJECT,
            "--access-id",
            ACCESS_ID,
            "--access-key",
            ACCESS_KEY,
        ]);
    }
    let out = cmd.args(args).output().context("running pyodps")?;
    if !out.status.success() {
        bail!(
            "pyodps {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The emulator shared by all tests of one process, started on first use. Tests that share it
/// use their own table names.
pub fn shared_emulator() -> anyhow::Result<&'static Emulator> {
    static SHARED: OnceLock<(tempfile::TempDir, Emulator)> = OnceLock::new();
    if let Some((_, e)) = SHARED.get() {
        return Ok(e);
    }
    let dir = tempfile::tempdir()?;
    let emulator = Emulator::start(dir.path())?;
    // Another thread may have won the race; its emulator is kept and ours is dropped (killed).
    Ok(&SHARED.get_or_init(|| (dir, emulator)).1)
}

/// A client of the given emulator with fast retries, for tests.
pub fn client(emulator: &Emulator) -> anyhow::Result<k2mc::maxcompute::MaxComputeClient> {
    Ok(k2mc::maxcompute::MaxComputeClient::new(client_config(
        emulator, ACCESS_KEY,
    )?)?)
}

/// The client configuration [`client`] uses, signing with `key` (a wrong key tests signature
/// checks).
pub fn client_config(
    emulator: &Emulator,
    key: &str,
) -> anyhow::Result<k2mc::maxcompute::ClientConfig> {
    use k2mc::maxcompute::{ClientConfig, Credentials, RetryPolicy};
    let mut config = ClientConfig::new(
        emulator.endpoint().parse()?,
        PROJECT,
        Credentials::new(ACCESS_ID, key),
    );
    config.retry = RetryPolicy {
        base_delay: std::time::Duration::from_millis(5),
        max_delay: std::time::Duration::from_millis(50),
        ..RetryPolicy::default()
    };
    Ok(config)
}
