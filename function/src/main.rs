//! `k2mc`: the Lambda `bootstrap` and the local CLI. Only argument parsing and wiring live here;
//! everything the commands do is in the library.

mod cli;
mod lambda;
mod sync;
mod transforms;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let in_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if in_lambda { "info" } else { "warn" })
    });
    if in_lambda {
        // JSON lines with the invocation, topic, partition and range fields of the open spans.
        tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
        return match lambda::serve().await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let args = cli::Args::parse();
    match cli::run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
