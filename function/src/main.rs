//! `k2mc`: the Lambda `bootstrap` and the local CLI. When `AWS_LAMBDA_RUNTIME_API` is set it
//! serves invocations through [`k2mc::handler`]; otherwise it runs one command of [`cmd`]. Only
//! logging set-up and dispatch live here.

mod cmd;

use clap::Parser;

/// mimalloc instead of the C library's allocator: the pipeline allocates per record and per cell
/// on several threads, where glibc's malloc and (in the static musl `bootstrap`) musl's cost
/// measurably more CPU (docs/bench/README.md, "mimalloc as the process allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    no_huge_pages();
    let in_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // A transform's own output (target `guest`) is shown on the command line too.
        tracing_subscriber::EnvFilter::new(if in_lambda { "info" } else { "warn,guest=info" })
    });
    let result = if in_lambda {
        // JSON lines with the invocation, topic, partition and range fields of the open spans.
        tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
        serve().await
    } else {
        // Colours only on a terminal: logs piped to a file or another program stay plain text.
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .init();
        cmd::run(cmd::Args::parse()).await
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Turns transparent huge pages off for this process, unless `K2MC_HUGE_PAGES=1` (then mimalloc
/// does what it says). mimalloc asks the kernel for huge pages on the memory it maps, and a fresh
/// or purged buffer touched then faults in a whole 2 MiB page, cleared first: 12-16 %
/// of the function's CPU in the profiles at 10 KB and 1 KB records; without them 1.18-1.27x the
/// records per CPU-second at 10 KB and less peak memory, the same CPU at 1 KB (docs/bench/README.md,
/// "Transparent huge pages off"). The flag holds for memory already mapped, so setting it here,
/// after mimalloc's start, is enough.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("K2MC_HUGE_PAGES").is_none_or(|v| v != "1") {
        // A kernel without the call (before Linux 3.15) keeps huge pages: slower, not wrong.
        let _ = rustix::thread::disable_transparent_huge_pages(true);
    }
}

/// The Lambda bootstrap: the config from `K2MC_CONFIG` (or the task root), then the handler.
async fn serve() -> anyhow::Result<()> {
    use anyhow::Context as _;
    let path = k2mc::handler::config_path();
    let config = k2mc::config::Config::load(&path, std::env::vars())
        .with_context(|| format!("loading {}", path.display()))?;
    Ok(k2mc::handler::serve(config).await?)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The flag is set for the process (the kernel reports it back), which is what keeps a
    /// memory region mimalloc marked for huge pages on small ones.
    #[test]
    fn huge_pages_are_off_after_start_up() {
        if std::env::var_os("K2MC_HUGE_PAGES").is_some_and(|v| v == "1") {
            panic!("K2MC_HUGE_PAGES=1 is set in the test's environment; unset it to run this test");
        }
        super::no_huge_pages();
        assert!(rustix::thread::transparent_huge_pages_are_disabled().unwrap());
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(
            status
                .lines()
                .any(|l| l.split_whitespace().eq(["THP_enabled:", "0"])),
            "/proc/self/status: {status}"
        );
    }
}
