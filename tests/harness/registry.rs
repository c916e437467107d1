//! The schema registry stand-in (`schema-registry-emulator`, in `tests/emulator`) and the
//! Confluent serializers that write records against it (`tests/registry/serialize.py`, run in
//! `.local/registry-venv`).

use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command};

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
        let mut command = Command::new(&bin);
        command
            .args(["--listen", "127.0.0.1:0", "--exit-on-stdin-eof"])
            .args(extra);
        let (child, stdin, addr) = crate::spawn_announcing(&mut command, &bin)?;
        Ok(SchemaRegistry {
            url: format!("http://{addr}"),
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
