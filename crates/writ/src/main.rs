//! The `writ` command. Parsing and dispatch live in the library; see `writ --help`.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = writ::Cli::parse();
    // Structured logs to standard error, at the command's default level unless `RUST_LOG`
    // says otherwise. Nothing Writ logs carries a key or a token.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cli.default_log_level())),
        )
        .with_writer(std::io::stderr)
        .init();
    // Not `stdout().lock()`: `writ demo-server --stdio` writes MCP to standard output from
    // another thread.
    match writ::run(cli, &mut std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
