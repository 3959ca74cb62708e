//! `writ sidecar`: runs beside an agent, holding its key.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use writ_sidecar::{MandateSource, Sidecar};

/// Where the sidecar serves and what it calls.
#[derive(Debug, Args)]
pub(crate) struct SidecarArgs {
    /// The gateway route to call, such as `http://127.0.0.1:7401/mcp/files`.
    #[arg(long, env = "WRIT_GATEWAY")]
    gateway: String,
    /// The agent's keystore file (mode 0600). When it does not exist, a new Ed25519 key is
    /// created in it and its public JWK printed, for the owner to register the agent with.
    #[arg(long, env = "WRIT_AGENT_KEY")]
    key: PathBuf,
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
    let (key, created) = crate::load_or_create_key(&args.key)?;
    if created {
        eprintln!(
            "created the agent key {} (mode 0600); its owner registers it with:\n  writ agent add NAME --tools SERVER/TOOL --jwk '{}'",
            args.key.display(),
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
