//! The `writ` command: key management and the quickstart walk-through.
//!
//! `main.rs` only parses arguments and calls [`run`], so every verb can be driven in-process
//! by tests with its output captured.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use writ_jose::{Algorithm, SigningKey};

mod quickstart;

pub use quickstart::{Outcome, Summary};

/// Writ: every agent action earns a fresh, key-bound, seconds-long attestation.
#[derive(Debug, Parser)]
#[command(name = "writ", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Walk through the whole protocol in-process: keys, mandate, writ, DPoP, denials.
    Quickstart,
    /// Create and inspect private key files.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Set up and run the issuer.
    #[command(subcommand)]
    Issuer(IssuerCommand),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
enum IssuerCommand {
    /// Create a data directory: issuer and log keys, the database, and the first
    /// administrator with a new key.
    Init {
        /// The data directory (created; must not already hold an issuer).
        #[arg(long)]
        data: PathBuf,
        /// The issuer's public URL, the `iss` of every token.
        #[arg(long)]
        url: String,
        /// The first administrator's human id.
        #[arg(long, default_value = "admin")]
        admin: String,
        /// Where to write the administrator's private key (mode 0600).
        #[arg(long)]
        admin_key: PathBuf,
    },
    /// Serve the issuer.
    Run {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:7400")]
        listen: String,
        /// A directory of `.cedar` policy files; Writ's defaults when absent.
        #[arg(long)]
        policy_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Rebuild the log from its leaves and check every signed checkpoint against it.
    Verify {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Generate a key into a new keystore file (mode 0600) and print its public JWK.
    Generate {
        /// Where to write the key; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
        /// The signature algorithm.
        #[arg(long, value_enum, default_value_t = KeyAlgorithm::Eddsa)]
        alg: KeyAlgorithm,
    },
    /// Print the public JWK and RFC 7638 thumbprint of a keystore file.
    Show {
        /// The keystore file.
        path: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KeyAlgorithm {
    /// Ed25519 (EdDSA), the default.
    Eddsa,
    /// P-256 (ES256), for hardware-backed keys.
    Es256,
}

impl From<KeyAlgorithm> for Algorithm {
    fn from(algorithm: KeyAlgorithm) -> Self {
        match algorithm {
            KeyAlgorithm::Eddsa => Algorithm::EdDSA,
            KeyAlgorithm::Es256 => Algorithm::ES256,
        }
    }
}

/// Runs a parsed command, writing what it reports to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    match cli.command {
        Command::Quickstart => quickstart(out).map(drop),
        Command::Keys(KeysCommand::Generate { out: path, alg }) => {
            let key = SigningKey::generate(alg.into())?;
            writ_keystore::create(&path, &key)?;
            writeln!(out, "wrote {} (mode 0600)", path.display())?;
            print_public(out, &key)
        }
        Command::Keys(KeysCommand::Show { path }) => {
            let key = writ_keystore::load(&path)?;
            print_public(out, &key)
        }
        Command::Issuer(command) => runtime()?.block_on(issuer(command, out)),
        Command::Audit(AuditCommand::Verify { data }) => {
            let report = runtime()?.block_on(writ_issuer::verify_data_dir(&data))?;
            writeln!(
                out,
                "audit log verified: {} leaves, {} signed checkpoints, newest at size {}",
                report.leaves,
                report.checkpoints,
                report
                    .latest_checkpoint
                    .map_or("-".to_owned(), |size| size.to_string())
            )?;
            Ok(())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn issuer(command: IssuerCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        IssuerCommand::Init {
            data,
            url,
            admin,
            admin_key,
        } => {
            let done = writ_issuer::init(&data, &url, &admin, &admin_key).await?;
            writeln!(
                out,
                "initialized issuer {} in {}",
                done.identity.issuer,
                data.display()
            )?;
            writeln!(out, "signing key:  kid {}", done.identity.active_kid)?;
            writeln!(
                out,
                "admin:        {} (key in {}, mode 0600)",
                done.admin,
                done.admin_key.display()
            )?;
            writeln!(out, "log verifier: {}", done.log_verifier_key)?;
            Ok(())
        }
        IssuerCommand::Run {
            data,
            listen,
            policy_dir,
        } => {
            let settings = writ_issuer::Settings {
                policy_dir,
                ..writ_issuer::Settings::default()
            };
            let issuer = writ_issuer::Issuer::open(&data, settings).await?;
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("listening on `{listen}`"))?;
            writeln!(
                out,
                "issuer {} listening on {}",
                issuer.id(),
                listener.local_addr()?
            )?;
            out.flush()?;
            writ_issuer::serve(listener, issuer).await?;
            Ok(())
        }
    }
}

/// Runs `writ quickstart`, writing its narration to `out`, and returns every decision made.
pub fn quickstart(out: &mut dyn Write) -> anyhow::Result<Summary> {
    quickstart::run(out)
}

fn print_public(out: &mut dyn Write, key: &SigningKey) -> anyhow::Result<()> {
    let jwk = serde_json::to_string(&key.public_key().to_jwk()).context("encoding the JWK")?;
    writeln!(out, "algorithm:  {}", key.algorithm())?;
    writeln!(out, "thumbprint: {}", key.public_key().thumbprint())?;
    writeln!(out, "public jwk: {jwk}")?;
    Ok(())
}
