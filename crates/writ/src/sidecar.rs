//! `writ sidecar`: runs beside an agent, holding its key.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use writ_jose::{Algorithm, SigningKey};
use writ_sidecar::{MandateSource, Sidecar};
use zeroize::Zeroizing;

/// Where the sidecar serves and what it calls.
#[derive(Debug, Args)]
pub(crate) struct SidecarArgs {
    /// The gateway route to call, such as `http://127.0.0.1:7401/mcp/files`.
    #[arg(long, env = "WRIT_GATEWAY")]
    gateway: String,
    /// The agent's keystore file (mode 0600). When it does not exist, a new Ed25519 key is
    /// created in it and its public JWK printed, for the owner to register the agent with.
    #[arg(
        long,
        env = "WRIT_AGENT_KEY",
        required_unless_present = "pkcs11_module",
        conflicts_with = "pkcs11_module"
    )]
    key: Option<PathBuf>,
    /// Keep the agent key on a PKCS#11 token instead: the module's path, such as
    /// `/usr/lib/softhsm/libsofthsm2.so`. The key is generated on the token, sensitive and
    /// non-extractable, when it is not there yet. The PIN comes from `--pkcs11-pin-file` or
    /// `WRIT_PKCS11_PIN`.
    #[arg(long, env = "WRIT_PKCS11_MODULE", requires = "pkcs11_token")]
    pkcs11_module: Option<PathBuf>,
    /// The token's label.
    #[arg(long, env = "WRIT_PKCS11_TOKEN")]
    pkcs11_token: Option<String>,
    /// The key's label on the token.
    #[arg(long, env = "WRIT_PKCS11_KEY", default_value = "writ-agent")]
    pkcs11_key: String,
    /// Generate a missing key as P-256 (ES256) rather than Ed25519, for tokens without EdDSA.
    #[arg(long)]
    pkcs11_es256: bool,
    /// A file holding the token's user PIN (instead of `WRIT_PKCS11_PIN`).
    #[arg(long)]
    pkcs11_pin_file: Option<PathBuf>,
    /// A file holding the mandate, read again for every call.
    #[arg(long, env = "WRIT_MANDATE_FILE", conflicts_with = "mandate")]
    mandate_file: Option<PathBuf>,
    /// The mandate itself. Prefer `--mandate-file` or the environment variable: command
    /// lines show in process lists.
    #[arg(long, env = "WRIT_MANDATE", hide_env_values = true)]
    mandate: Option<String>,
    /// Serve MCP on standard input and output, the way desktop MCP clients start servers.
    #[arg(long, conflicts_with = "listen", required_unless_present = "listen")]
    stdio: bool,
    /// Serve on this loopback address: MCP (streamable HTTP) at `/mcp`, or, with
    /// `--forward`, every path.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Forward plain HTTP requests to an HTTP route instead of serving MCP.
    #[arg(long, requires = "listen")]
    forward: bool,
}

pub(crate) async fn run(args: SidecarArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    // Standard output may be the MCP channel: everything else goes to standard error.
    let (key, created) = agent_key(&args)?;
    if let Some(created) = created {
        eprintln!(
            "created the agent key {created}; its owner registers it with:\n  writ agent add NAME --tools SERVER/TOOL --jwk '{}'",
            serde_json::to_string(&key.public_key().to_jwk())?,
        );
    }
    let mandate = match (args.mandate_file, args.mandate) {
        (Some(path), _) => MandateSource::File(path),
        (None, Some(token)) => MandateSource::Token(token),
        (None, None) => anyhow::bail!(
            "no mandate: give --mandate-file FILE (or WRIT_MANDATE_FILE) or WRIT_MANDATE, holding a mandate a human granted to agent {}",
            key.public_key().thumbprint()
        ),
    };
    let sidecar = Arc::new(Sidecar::connect(&args.gateway, key, mandate).await?);
    let Some(listen) = args.listen else {
        tracing::info!(route = sidecar.route(), "sidecar serving MCP on stdio");
        writ_sidecar::serve_stdio(sidecar).await?;
        return Ok(());
    };
    anyhow::ensure!(
        listen.ip().is_loopback(),
        "--listen {listen}: the sidecar serves only this machine; use a loopback address such as 127.0.0.1"
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on `{listen}`"))?;
    let local = listener.local_addr()?;
    let router = if args.forward {
        writeln!(
            out,
            "sidecar for {} forwarding HTTP on http://{local}/",
            sidecar.route()
        )?;
        writ_sidecar::http_router(sidecar)
    } else {
        writeln!(
            out,
            "sidecar for {} serving MCP on http://{local}/mcp",
            sidecar.route()
        )?;
        writ_sidecar::mcp_router(sidecar)
    };
    out.flush()?;
    axum::serve(listener, router)
        .with_graceful_shutdown(crate::stop_signal())
        .await?;
    Ok(())
}

/// The agent's key, from its keystore file or its token, and a description of it when it
/// was created just now.
fn agent_key(args: &SidecarArgs) -> anyhow::Result<(SigningKey, Option<String>)> {
    let (Some(module), Some(token)) = (&args.pkcs11_module, &args.pkcs11_token) else {
        let path = args
            .key
            .as_ref()
            .context("give --key FILE or --pkcs11-module and --pkcs11-token")?;
        let (key, created) = crate::load_or_create_key(path)?;
        return Ok((
            key,
            created.then(|| format!("{} (mode 0600)", path.display())),
        ));
    };
    let pin = match &args.pkcs11_pin_file {
        Some(path) => {
            let mut pin = writ_keystore::read_secret(path).context("reading the PIN file")?;
            let end = pin.trim_end_matches(['\r', '\n']).len();
            pin.truncate(end);
            pin
        }
        None => Zeroizing::new(
            std::env::var("WRIT_PKCS11_PIN")
                .context("the token's PIN: give --pkcs11-pin-file FILE or set WRIT_PKCS11_PIN")?,
        ),
    };
    let token = writ_keystore::pkcs11::Token {
        module: module.clone(),
        label: token.clone(),
        pin,
    };
    let algorithm = if args.pkcs11_es256 {
        Algorithm::ES256
    } else {
        Algorithm::EdDSA
    };
    let (key, created) =
        writ_keystore::pkcs11::open_or_generate(&token, &args.pkcs11_key, algorithm)?;
    anyhow::ensure!(
        !args.pkcs11_es256 || key.algorithm() == algorithm,
        "--pkcs11-es256: the key `{}` on token `{}` exists already, and is {}",
        args.pkcs11_key,
        token.label,
        key_algorithm_name(key.algorithm())
    );
    Ok((
        key,
        created.then(|| {
            format!(
                "`{}` on token `{}` ({}, generated there, non-extractable)",
                args.pkcs11_key,
                token.label,
                key_algorithm_name(algorithm)
            )
        }),
    ))
}

fn key_algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::EdDSA => "Ed25519",
        Algorithm::ES256 => "P-256",
    }
}
