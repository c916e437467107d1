//! The rest of the local stack: tansu (Kafka), s3s-fs (S3) and a Lambda Runtime API stand-in,
//! plus a config file for `k2mc` pointing at all of them. tansu and s3s-fs are not ours, so they
//! run under a shell guard that kills them when the harness's pipe to it closes (the harness
//! exited or crashed); owned handles also kill them on drop.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// tansu version the stack runs (installed by infra/local/setup).
pub const TANSU_VERSION: &str = "0.6.0";
/// s3s-fs version the stack runs.
pub const S3S_FS_VERSION: &str = "0.14.1";
/// S3 credentials of the local s3s-fs.
pub const S3_ACCESS_KEY: &str = "k2mc-s3-local";
pub const S3_SECRET_KEY: &str = "k2mc-s3-secret-81c2";

/// A tool installed by `cargo install` into ~/.cargo/bin (or on PATH). Fails loudly.
pub fn cargo_tool(name: &str) -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_default();
    let candidate = home.join("bin").join(name);
    if candidate.exists() {
        return Ok(candidate);
    }
    bail!(
        "{name} is not installed at {}: run infra/local/setup (it installs tansu {TANSU_VERSION} and s3s-fs {S3S_FS_VERSION})",
        candidate.display()
    )
}

/// A free loopback port (bound and released; the tiny race is acceptable for tests).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_for_port(port: u16, within: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < within {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listened on 127.0.0.1:{port} within {within:?}")
}

/// A foreign server under a guard shell: the shell starts it, waits for its stdin to close, then
/// kills it.
#[derive(Debug)]
pub struct Guarded {
    child: Child,
    stdin: Option<ChildStdin>,
    pub port: u16,
}

impl Guarded {
    /// The guard shell's process id (the server is its child).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn spawn(
        program: &Path,
        args: &[String],
        port: u16,
        log: &Path,
        cwd: Option<&Path>,
    ) -> anyhow::Result<Guarded> {
        let script = r#"prog="$1"; shift; "$prog" "$@" & pid=$!; trap 'kill -9 $pid 2>/dev/null' EXIT INT TERM; read _; exit 0"#;
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut command = Command::new("sh");
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let mut child = command
            .arg("-c")
            .arg(script)
            .arg("guard")
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let stdin = child.stdin.take();
        if let Err(e) = wait_for_port(port, Duration::from_secs(30)) {
            let _ = child.kill();
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            bail!("{} did not start: {e}\n{tail}", program.display());
        }
        Ok(Guarded { child, stdin, port })
    }

    /// Stops the server (and waits for the guard).
    pub fn stop(&mut self) {
        self.stdin.take();
        let _ = self.child.wait();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A tansu broker on memory storage.
pub fn start_tansu(dir: &Path) -> anyhow::Result<Guarded> {
    start_tansu_advertising(dir, None)
}

/// A tansu broker on memory storage that tells clients to connect to `advertised` (a front's
/// port) instead of its own.
pub fn start_tansu_advertising(dir: &Path, advertised: Option<u16>) -> anyhow::Result<Guarded> {
    let bin = cargo_tool("tansu")?;
    let port = free_port()?;
    let url = format!("tcp://127.0.0.1:{port}");
    let args = vec![
        "broker".to_owned(),
        "--listener-url".into(),
        url,
        "--advertised-listener-url".into(),
        format!("tcp://127.0.0.1:{}", advertised.unwrap_or(port)),
        "--storage-engine".into(),
        "memory://tansu/".into(),
    ];
    Guarded::spawn(&bin, &args, port, &dir.join("tansu.log"), None)
}

/// A tansu broker on sqlite storage (`dir/tansu.db`) listening on `port`: stopped and started
/// again on the same port and directory, it still has every record (the broker-restart test).
pub fn start_tansu_durable(dir: &Path, port: u16) -> anyhow::Result<Guarded> {
    start_tansu_sqlite(dir, port, "sqlite://tansu.db")
}

/// [`start_tansu_durable`] that applies retention: tansu's maintenance deletes records older
/// than their topic's `retention.ms` (topics created by [`create_topic_with_retention`]) at
/// start and then every second.
pub fn start_tansu_retaining(dir: &Path, port: u16) -> anyhow::Result<Guarded> {
    start_tansu_sqlite(dir, port, "sqlite://tansu.db?maintenance_interval=1s")
}

/// Creates `topic` with one partition and `cleanup.policy=delete`, `retention.ms=retention_ms`
/// through tansu's own CLI (rskafka creates topics without configs).
pub fn create_topic_with_retention(
    port: u16,
    topic: &str,
    retention_ms: u64,
) -> anyhow::Result<()> {
    let bin = cargo_tool("tansu")?;
    let out = std::process::Command::new(bin)
        .args([
            "topic",
            "create",
            "--broker",
            &format!("tcp://127.0.0.1:{port}"),
            topic,
        ])
        .args(["--partitions", "1", "--config", "cleanup.policy=delete"])
        .args(["--config", &format!("retention.ms={retention_ms}")])
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "tansu topic create {topic} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Adds partition `partition` to `topic` in the sqlite storage of a stopped
/// [`start_tansu_durable`] broker in `dir`, as Kafka's CreatePartitions would (tansu 0.6
/// implements no CreatePartitions; rskafka sends none): the topic's partition count, the
/// partition and its watermark, the rows tansu itself writes when it creates a topic.
pub fn add_partition_stopped(dir: &Path, topic: &str, partition: i32) -> anyhow::Result<()> {
    let script = r#"
import sqlite3, sys
db, topic, p = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = sqlite3.connect(db)
(tid,) = c.execute("select id from topic where name = ?", (topic,)).fetchone()
c.execute("update topic set partitions = ? where id = ?", (p + 1, tid))
c.execute("insert into topition (topic, partition) values (?, ?)", (tid, p))
(tp,) = c.execute("select id from topition where topic = ? and partition = ?", (tid, p)).fetchone()
c.execute("insert into watermark (topition) values (?)", (tp,))
c.commit()
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir.join("tansu.db"))
        .arg(topic)
        .arg(partition.to_string())
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "adding partition {partition} to {topic}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn start_tansu_sqlite(dir: &Path, port: u16, storage: &str) -> anyhow::Result<Guarded> {
    let bin = cargo_tool("tansu")?;
    let url = format!("tcp://127.0.0.1:{port}");
    // tansu resolves a sqlite URL against its working directory.
    let args = vec![
        "broker".to_owned(),
        "--listener-url".into(),
        url.clone(),
        "--advertised-listener-url".into(),
        url,
        "--storage-engine".into(),
        storage.into(),
    ];
    Guarded::spawn(&bin, &args, port, &dir.join("tansu.log"), Some(dir))
}

/// An s3s-fs server over `root` with a `bucket` directory created.
pub fn start_s3(root: &Path, bucket: &str) -> anyhow::Result<Guarded> {
    let bin = cargo_tool("s3s-fs")?;
    let data = root.join("s3");
    std::fs::create_dir_all(data.join(bucket))?;
    let port = free_port()?;
    let args = vec![
        "--host".to_owned(),
        "127.0.0.1".into(),
        "--port".into(),
        port.to_string(),
        "--access-key".into(),
        S3_ACCESS_KEY.into(),
        "--secret-key".into(),
        S3_SECRET_KEY.into(),
        data.display().to_string(),
    ];
    Guarded::spawn(&bin, &args, port, &root.join("s3s-fs.log"), None)
}

/// Environment for processes that talk to the local S3 (the AWS SDK reads these).
pub fn s3_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY.to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ]
}

/// The whole local stack: Kafka, S3 and the MaxCompute emulator.
#[derive(Debug)]
pub struct Stack {
    pub dir: PathBuf,
    pub kafka: Guarded,
    pub s3: Guarded,
    /// Port of the front that linearizes each object's requests (see `s3front`).
    pub s3_front: u16,
    pub bucket: String,
}

impl Stack {
    /// Starts tansu and s3s-fs under `dir` (the emulator is shared, see `shared_emulator`).
    pub fn start(dir: &Path) -> anyhow::Result<Stack> {
        let bucket = "k2mc-staging".to_owned();
        let s3 = start_s3(dir, &bucket)?;
        let s3_front = crate::s3front::start(s3.port)?;
        Ok(Stack {
            dir: dir.to_owned(),
            kafka: start_tansu(dir)?,
            s3,
            s3_front,
            bucket,
        })
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.kafka.port)
    }

    pub fn s3_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_front)
    }
}

/// A staging client on the stack's bucket under `prefix` (what `k2mc` sees with that prefix).
pub async fn staging_client(stack: &Stack, prefix: &str) -> k2mc::staging::Staging {
    use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};
    let sdk = k2mc::staging::sdk_config(Some("us-east-1"))
        .await
        .into_builder()
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            S3_ACCESS_KEY,
            S3_SECRET_KEY,
            None,
            None,
            "local-stack",
        )))
        .build();
    k2mc::staging::Staging::new(
        &sdk,
        &k2mc::config::StagingConfig {
            bucket: stack.bucket.clone(),
            prefix: prefix.to_owned(),
            endpoint: Some(stack.s3_endpoint()),
            region: Some("us-east-1".into()),
            provider: k2mc::config::StorageProvider::S3,
            payload_signing: k2mc::config::PayloadSigning::Auto,
        },
    )
}

/// The stack shared by every test of one process.
pub fn shared_stack() -> anyhow::Result<&'static Stack> {
    static SHARED: OnceLock<(tempfile::TempDir, Stack)> = OnceLock::new();
    if let Some((_, s)) = SHARED.get() {
        return Ok(s);
    }
    let dir = tempfile::tempdir()?;
    let stack = Stack::start(dir.path())?;
    Ok(&SHARED.get_or_init(|| (dir, stack)).1)
}

/// Writes a k2mc config for the stack; `extra` is appended TOML.
#[allow(clippy::too_many_arguments)]
pub fn write_config(
    path: &Path,
    stack: &Stack,
    emulator_endpoint: &str,
    cluster: &str,
    topics: &[&str],
    table: &str,
    partition: &str,
    transforms: &str,
    extra: &str,
) -> anyhow::Result<()> {
    let topics: Vec<String> = topics.iter().map(|t| format!("{t:?}")).collect();
    let text = format!(
        r#"[kafka]
bootstrap = ["{bootstrap}"]
cluster = "{cluster}"
topics = [{topics}]

[maxcompute]
endpoint = "{emulator_endpoint}"
project = "{project}"
table = "{table}"
access_id = "{access_id}"
access_key = "env:K2MC_TEST_MC_KEY"
partition = "{partition}"

[staging]
bucket = "{bucket}"
endpoint = "{s3}"
region = "us-east-1"

{transforms}
{extra}
"#,
        bootstrap = stack.bootstrap(),
        topics = topics.join(", "),
        project = crate::PROJECT,
        access_id = crate::ACCESS_ID,
        bucket = stack.bucket,
        s3 = stack.s3_endpoint(),
    );
    std::fs::write(path, text)?;
    Ok(())
}

/// Environment a `k2mc` process needs for a config from [`write_config`].
pub fn k2mc_env() -> Vec<(&'static str, String)> {
    let mut env = s3_env();
    env.push(("K2MC_TEST_MC_KEY", crate::ACCESS_KEY.to_owned()));
    env.push((
        "K2MC_ARTIFACT_CACHE",
        crate::artifact_cache().display().to_string(),
    ));
    env
}

#[derive(Debug, Default)]
struct RuntimeState {
    queue: VecDeque<(String, serde_json::Value)>,
    results: HashMap<String, Result<serde_json::Value, String>>,
    init_error: Option<String>,
    polls: u64,
    first_poll: Option<Instant>,
}

/// A Lambda Runtime API stand-in: queue events, the function polls them, results come back.
#[derive(Debug, Clone)]
pub struct RuntimeApi {
    pub addr: String,
    state: Arc<(Mutex<RuntimeState>, Condvar)>,
}

impl RuntimeApi {
    /// Serves on a free loopback port from a background thread.
    pub fn start() -> anyhow::Result<RuntimeApi> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        let state: Arc<(Mutex<RuntimeState>, Condvar)> = Arc::default();
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    let _ = serve_one(stream, &shared);
                });
            }
        });
        Ok(RuntimeApi { addr, state })
    }

    /// How many times the function asked for the next invocation.
    pub fn polls(&self) -> u64 {
        self.state.0.lock().map(|s| s.polls).unwrap_or(0)
    }

    /// The environment a function process needs to serve this API as Lambda's runtime would.
    pub fn lambda_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_LAMBDA_RUNTIME_API", self.addr.clone()),
            ("AWS_LAMBDA_FUNCTION_NAME", "k2mc".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512".into()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/k2mc".into()),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "local".into()),
        ]
    }

    /// Waits until the function first asks for an invocation and returns when it did; `None`
    /// when it has not within `within`.
    pub fn first_poll(&self, within: Duration) -> Option<Instant> {
        let (lock, cv) = &*self.state;
        let s = lock.lock().ok()?;
        let (s, _) = cv
            .wait_timeout_while(s, within, |s| s.first_poll.is_none())
            .ok()?;
        s.first_poll
    }

    /// Delivers `event` and waits for the function's answer.
    pub fn invoke(
        &self,
        event: serde_json::Value,
        within: Duration,
    ) -> anyhow::Result<Result<serde_json::Value, String>> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = format!(
            "req-{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        s.queue.push_back((id.clone(), event));
        cv.notify_all();
        let start = Instant::now();
        loop {
            if let Some(r) = s.results.remove(&id) {
                return Ok(r);
            }
            if let Some(e) = &s.init_error {
                bail!("the function failed to initialise: {e}");
            }
            let left = within
                .checked_sub(start.elapsed())
                .context("the function did not answer in time")?;
            s = cv
                .wait_timeout(s, left)
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .0;
        }
    }
}

fn serve_one(
    stream: std::net::TcpStream,
    state: &(Mutex<RuntimeState>, Condvar),
) -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader, Read};
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (lock, cv) = state;
        if method == "GET" && path.ends_with("/runtime/invocation/next") {
            let mut s = lock.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            s.polls += 1;
            s.first_poll.get_or_insert_with(Instant::now);
            cv.notify_all();
            let (id, event) = loop {
                if let Some(item) = s.queue.pop_front() {
                    break item;
                }
                s = cv.wait(s).map_err(|_| anyhow::anyhow!("poisoned"))?;
            };
            drop(s);
            let payload = event.to_string();
            let deadline = chrono::Utc::now().timestamp_millis() + 300_000;
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: {id}\r\nLambda-Runtime-Deadline-Ms: {deadline}\r\nLambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:000000000000:function:k2mc\r\nLambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000\r\nContent-Length: {}\r\n\r\n{payload}",
                payload.len()
            )?;
        } else if method == "POST" && (path.ends_with("/response") || path.ends_with("/error")) {
            let segments: Vec<&str> = path.split('/').collect();
            let text = String::from_utf8_lossy(&body).into_owned();
            let mut s = lock.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            if path.contains("/init/error") {
                s.init_error = Some(text);
            } else if let Some(id) = segments.iter().rev().nth(1) {
                let result = if path.ends_with("/response") {
                    Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
                } else {
                    Err(text)
                };
                s.results.insert((*id).to_owned(), result);
            }
            cv.notify_all();
            drop(s);
            write!(out, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")?;
        } else {
            write!(out, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
        }
        out.flush()?;
    }
}
