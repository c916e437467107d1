//! The schema registry stand-in (`schema-registry-emulator`, in `tests/emulator`) and the
//! Confluent serializers that write records against it (`tests/registry/serialize.py`, run in
//! `.local/registry-venv`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};

use anyhow::{Context, bail};

/// A running stand-in; killed on drop (and when the harness exits: its stdin closes).
#[derive(Debug)]
pub struct SchemaRegistry {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    child: Child,
    _stdin: ChildStdin,
}

impl SchemaRegistry {
    /// Starts a stand-in on a free loopback port; `extra` are more flags (`--basic-auth u:p`).
    pub fn start(extra: &[&str]) -> anyhow::Result<SchemaRegistry> {
        let bin = crate::workspace_bin("schema-registry-emulator")?;
        let mut child = Command::new(&bin)
            .args(["--listen", "127.0.0.1:0", "--exit-on-stdin-eof"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdin = child.stdin.take().context("registry stdin")?;
        let stdout = child.stdout.take().context("registry stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if line.trim().is_empty() {
            let _ = child.kill();
            bail!("the schema registry stand-in exited before printing its address");
        }
        Ok(SchemaRegistry {
            url: format!("http://{}", line.trim()),
            child,
            _stdin: stdin,
        })
    }
}

impl Drop for SchemaRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python of the venv with confluent-kafka's serializers; fails loudly when it is missing.
pub fn serializer_python() -> anyhow::Result<PathBuf> {
    let python = crate::repo_root().join(".local/registry-venv/bin/python");
    if !python.exists() {
        bail!(
            "{} is missing: run infra/local/setup (it installs confluent-kafka's serializers from tests/registry/requirements.txt)",
            python.display()
        );
    }
    Ok(python)
}

/// Runs `tests/registry/<script>` with `args` in the serializers' venv; its stdout.
pub fn run_serializer(script: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(serializer_python()?)
        .arg(crate::repo_root().join("tests/registry").join(script))
        .args(args)
        .env("TZ", "UTC")
        .output()
        .with_context(|| format!("running tests/registry/{script}"))?;
    if !out.status.success() {
        bail!(
            "tests/registry/{script} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
