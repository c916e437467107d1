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

/// The Lambda bootstrap: the config from `K2MC_CONFIG` (or the task root), then the handler.
async fn serve() -> anyhow::Result<()> {
    use anyhow::Context as _;
    let path = k2mc::handler::config_path();
    let config = k2mc::config::Config::load(&path, std::env::vars())
        .with_context(|| format!("loading {}", path.display()))?;
    Ok(k2mc::handler::serve(config).await?)
}
