//! The `writ` command. Parsing and dispatch live in the library; see `writ --help`.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // Structured logs to standard error, `info` and up unless `RUST_LOG` says otherwise.
    // Nothing Writ logs carries a key or a token.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = writ::Cli::parse();
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
