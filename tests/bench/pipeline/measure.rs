//! Measuring one process: wall time, CPU seconds (user + system, its waited-for children
//! included), peak resident memory and minor page faults, all from the kernel's own accounting of
//! that process (`wait4`), so nothing the harness itself does is counted; and the cold start of
//! the function until it first polls the Lambda Runtime API.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use harness::stack::RuntimeApi;

/// What one process cost.
#[derive(Debug, Clone)]
pub struct Measured {
    pub wall_s: f64,
    pub cpu_s: f64,
    pub max_rss_mb: f64,
    /// Page faults served without I/O (`ru_minflt`): each first touch of a fresh page, the
    /// kernel clearing it first, so a count of the memory the process kept asking for anew.
    pub minor_faults: u64,
    pub stdout: String,
}

/// Runs `cmd` to its end with stdout captured and stderr to `log`; fails, naming the log, when it
/// does not succeed.
pub fn run(cmd: &mut Command, log: &Path) -> anyhow::Result<Measured> {
    let err = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(err);
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let mut stdout = child.stdout.take().context("child stdout")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let (status, usage) = wait4(child.id())?;
    let wall_s = start.elapsed().as_secs_f64();
    let stdout = reader
        .join()
        .map_err(|_| anyhow::anyhow!("stdout reader panicked"))??;
    if status != 0 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        bail!(
            "{cmd:?} failed (wait status {status}); the end of {}:\n{}",
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Measured {
        wall_s,
        cpu_s: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        // Linux reports ru_maxrss in KiB.
        max_rss_mb: usage.ru_maxrss as f64 / 1024.0,
        minor_faults: u64::try_from(usage.ru_minflt).unwrap_or(0),
        stdout,
    })
}

/// Waits for process `pid` and returns its wait status and resource usage.
#[allow(unsafe_code)]
fn wait4(pid: u32) -> anyhow::Result<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is plain old data; wait4 writes it and the status, both owned here, and
    // `pid` is a child of this process that nothing else waits for (its `Child` is never waited).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context("wait4");
    }
    Ok((status, usage))
}

/// The cold start of the function: from spawning the `k2mc` binary with a Lambda environment
/// until it first asks the Runtime API for an invocation (its init, transform loading, Kafka and
/// MaxCompute connections included). The process is killed afterwards.
pub fn cold_start(
    k2mc: &Path,
    config: &Path,
    env: &[(&'static str, String)],
    log: &Path,
) -> anyhow::Result<Duration> {
    let api = RuntimeApi::start()?;
    let err = std::fs::File::create(log)?;
    let mut cmd = Command::new(k2mc);
    cmd.env("K2MC_CONFIG", config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
    for (k, v) in env.iter().cloned().chain(api.lambda_env()) {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let polled = api.first_poll(Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    match polled {
        Some(at) => Ok(at.duration_since(start)),
        None => bail!(
            "k2mc did not poll the Runtime API within 30 s; see {}",
            log.display()
        ),
    }
}

/// CPU seconds (user + system) used so far by the processes under each of `roots`, themselves
/// and their descendants, from `/proc`: the local stack's servers, sampled around a run to
/// report what they cost beside the system measured (a server's CPU is not the function's).
pub fn tree_cpu_s(roots: &[u32]) -> f64 {
    let mut parent = std::collections::HashMap::new();
    let mut ticks = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the command name (which may hold spaces) in `)`: state ppid ... utime(14)
        // stime(15), counted from 1 over the whole line.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        parent.insert(pid, num(1) as u32);
        ticks.insert(pid, num(11) + num(12));
    }
    let under = |mut pid: u32| {
        while pid > 1 {
            if roots.contains(&pid) {
                return true;
            }
            pid = parent.get(&pid).copied().unwrap_or(0);
        }
        false
    };
    let total: u64 = ticks
        .iter()
        .filter(|(pid, _)| under(**pid))
        .map(|(_, t)| t)
        .sum();
    total as f64 / clock_ticks()
}

#[allow(unsafe_code)]
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}
