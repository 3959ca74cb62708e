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
