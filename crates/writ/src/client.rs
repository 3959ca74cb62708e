//! Keys given on the command line.

use anyhow::{Context as _, bail};
use serde_json::Value;

/// Reads a public JWK to register: from a keystore file (its public half) or JSON text.
pub(crate) fn public_jwk(
    key_file: Option<&std::path::Path>,
    jwk: Option<&str>,
) -> anyhow::Result<Value> {
    match (key_file, jwk) {
        (Some(path), None) => {
            let key = writ_keystore::load(path)?;
            Ok(serde_json::to_value(key.public_key().to_jwk())?)
        }
        (None, Some(text)) => {
            // Checked here, so a private JWK pasted by mistake never leaves this machine.
            let jwk: writ_jose::Jwk =
                writ_jose::from_slice_strict(text.as_bytes()).context("--jwk is not a JWK")?;
            let key = jwk
                .to_public_key()
                .context("--jwk is not a usable public key")?;
            Ok(serde_json::to_value(key.to_jwk())?)
        }
        (None, None) => bail!("give the key: --key-file PATH (a keystore file) or --jwk JSON"),
        (Some(_), Some(_)) => bail!("give either --key-file or --jwk, not both"),
    }
}
