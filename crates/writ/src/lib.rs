//! The `writ` command: key management and the quickstart walk-through.
//!
//! `main.rs` only parses arguments and calls [`run`], so every verb can be driven in-process
//! by tests with its output captured.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::{Parser, Subcommand, ValueEnum};
use writ_jose::{Algorithm, SigningKey};

mod behaviour;
mod client;
mod entitlement;
mod quickstart;
mod remote;
mod sidecar;
mod trace;

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
    /// Run the whole story on 127.0.0.1 in a temporary directory: issuer, gateway, demo
    /// MCP tool server and sidecar; an agent's allowed and refused calls, a revocation,
    /// `writ trace` and `writ audit verify`.
    Quickstart {
        /// Leave the services running afterwards (until Ctrl-C) and print how to connect
        /// an MCP client to them.
        #[arg(long)]
        keep: bool,
    },
    /// Create and inspect private key files.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Set up and run the issuer.
    #[command(subcommand)]
    Issuer(IssuerCommand),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Check a policy directory before deploying it.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Humans in a running issuer's inventory.
    #[command(subcommand)]
    Human(remote::HumanCommand),
    /// Agents in a running issuer's inventory.
    #[command(subcommand)]
    Agent(remote::AgentCommand),
    /// Tool providers and their tools in a running issuer's inventory.
    #[command(subcommand)]
    Tool(remote::ToolCommand),
    /// Gateways in a running issuer's inventory.
    #[command(subcommand)]
    Gateway(remote::GatewayCommand),
    /// Entitlements: which tools and data labels a human, or a group, may use.
    #[command(subcommand)]
    Entitlement(entitlement::EntitlementCommand),
    /// Every agent (owner, status, last seen, end of life, tools used, outstanding
    /// mandates) and every tool provider (administrators only).
    Inventory {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: remote::Remote,
    },
    /// Mandates: a human's grant of a task to an agent.
    #[command(subcommand)]
    Mandate(remote::MandateCommand),
    /// Calls held for their agent's owner because they drift from the agent's baseline.
    #[command(subcommand)]
    Approvals(behaviour::ApprovalsCommand),
    /// Revoke an agent, a mandate (and its subtree), a human (and what they granted), a
    /// writ or an issuer key.
    Revoke(remote::RevokeArgs),
    /// Draw the line from a writ, mandate, gateway request or audit index back to the
    /// human, the task and the policies that allowed each step, checking every record's
    /// inclusion proof against a signed checkpoint.
    Trace {
        /// A writ id (`wrt_…`), mandate id (`mnd_…`), gateway request id (the
        /// `writ-request-id` header) or audit-log index.
        id: String,
        /// The log's verifier key, as `writ issuer init` printed it: the checkpoint must be
        /// signed by it (the key the issuer presents is never trusted).
        #[arg(long, env = "WRIT_LOG_KEY")]
        log_key: String,
        /// Print the verified records as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: remote::Remote,
    },
    /// Run beside an agent: hold its key, serve it MCP (or plain HTTP), and earn a writ
    /// from the issuer for every call it makes through the gateway.
    Sidecar(sidecar::SidecarArgs),
    /// Serve the quickstart's demo MCP tool server (`read_file`, `drop_table`), over stdio
    /// or over streamable HTTP at `/mcp`; over HTTP, with `FILES_TOKEN` set, only requests
    /// bearing that token (the gateway's credential) are answered.
    DemoServer {
        /// Speak MCP on standard input and output.
        #[arg(long, conflicts_with = "listen", required_unless_present = "listen")]
        stdio: bool,
        /// The address to serve streamable HTTP on, such as `127.0.0.1:7402`.
        #[arg(long)]
        listen: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Parse and validate every `.cedar` file in a directory against Writ's schema, as the
    /// issuer would load it; print the set's version and policy ids.
    Validate {
        /// The policy directory.
        dir: PathBuf,
    },
    /// Validate a directory, then run its test cases (every `*.tests.json` file in it, or
    /// the files given) and report each one.
    Test {
        /// The policy directory.
        dir: PathBuf,
        /// Case files to run instead of the directory's `*.tests.json`.
        #[arg(long = "cases")]
        cases: Vec<PathBuf>,
    },
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
        /// A directory of `.cedar` policy files, watched and reloaded on change (and on
        /// `SIGHUP`); Writ's defaults when absent.
        #[arg(long)]
        policy_dir: Option<PathBuf>,
        /// Require a server-provided nonce in every DPoP proof (RFC 9449 §8).
        #[arg(long)]
        require_dpop_nonce: bool,
        /// A JSON file listing the OIDC providers whose ID tokens may bind a human's key:
        /// `[{"issuer": "...", "client_id": "...", "jwks_url": "..."}]` (or `jwks_file`).
        #[arg(long)]
        oidc_config: Option<PathBuf>,
        /// A TOML file of behaviour settings: `approval_timeout_seconds`,
        /// `revoke_on_drift`, and a `[detectors]` table (learning period, thresholds,
        /// destructive patterns, `mode` and per-detector `[detectors.modes]`); Writ's
        /// defaults when absent.
        #[arg(long)]
        behaviour_config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Rebuild the log from its leaves and check it against signed checkpoints: offline
    /// from a data directory (`--data` and `--log-key`, issuer stopped), or from a running
    /// issuer (`--issuer`, `--key` of an administrator, `--log-key`). Either way the
    /// checkpoints must be signed by `--log-key`, the key `writ issuer init` printed.
    Verify {
        /// The data directory; when given, the log is verified offline from it. The keys
        /// in it are not trusted: `--log-key` is required.
        #[arg(long)]
        data: Option<PathBuf>,
        /// The issuer's public URL.
        #[arg(long, env = "WRIT_ISSUER")]
        issuer: Option<String>,
        /// An administrator's keystore file (leaves are for administrators).
        #[arg(long, env = "WRIT_KEY")]
        key: Option<PathBuf>,
        /// The log's verifier key, as `writ issuer init` printed it (keep it apart from the
        /// data directory).
        #[arg(long)]
        log_key: Option<String>,
        /// A checkpoint verified before, `SIZE:ROOT` as this command prints it: the log
        /// must be consistent with it.
        #[arg(long)]
        since: Option<String>,
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
    /// Print a DPoP proof (RFC 9449) made with a keystore file's key, for one request made
    /// by hand (`DPoP: <proof>`): to the issuer's token endpoint, or to a gateway route
    /// with the writ it carries. Each proof is single use, and fresh for about a minute.
    Proof {
        /// The keystore file: the agent's key.
        key: PathBuf,
        /// The request's method.
        #[arg(long, default_value = "POST")]
        method: String,
        /// The request's URL, without query or fragment (`htu`).
        #[arg(long)]
        url: String,
        /// The writ the request carries as `Authorization: DPoP <writ>`; the proof then
        /// names its hash (`ath`), as a gateway requires.
        #[arg(long)]
        access_token: Option<String>,
        /// A nonce the server asked for (`DPoP-Nonce`).
        #[arg(long)]
        nonce: Option<String>,
    },
    /// Rotate a running issuer's signing key (administrators only). The old key stays in
    /// the JWKS until every token it signed has expired.
    Rotate {
        #[command(flatten)]
        remote: remote::Remote,
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
        Command::Quickstart { keep } => quickstart_in_temporary_directory(out, keep).map(drop),
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
        Command::Keys(KeysCommand::Proof {
            key,
            method,
            url,
            access_token,
            nonce,
        }) => {
            let key = writ_keystore::load(&key)?;
            let jti = writ_client::random_jti()?;
            let mut claims = writ_token::ProofClaims::new(
                &method,
                &url,
                writ_token::Clock::now(&writ_token::SystemClock),
                jti,
            );
            if let Some(writ) = &access_token {
                claims = claims.with_access_token(writ);
            }
            if let Some(nonce) = &nonce {
                claims = claims.with_nonce(nonce);
            }
            writeln!(out, "{}", claims.sign(&key)?)?;
            Ok(())
        }
        Command::Issuer(command) => runtime()?.block_on(issuer(command, out)),
        Command::Policy(command) => policy(command, out),
        Command::Keys(KeysCommand::Rotate { remote }) => {
            runtime()?.block_on(remote::rotate(remote, out))
        }
        Command::Human(command) => runtime()?.block_on(remote::human(command, out)),
        Command::Agent(command) => runtime()?.block_on(remote::agent(command, out)),
        Command::Tool(command) => runtime()?.block_on(remote::tool(command, out)),
        Command::Gateway(command) => runtime()?.block_on(remote::gateway(command, out)),
        Command::Entitlement(command) => {
            runtime()?.block_on(entitlement::entitlement(command, out))
        }
        Command::Inventory { json, remote } => {
            runtime()?.block_on(remote::inventory(remote, json, out))
        }
        Command::Mandate(command) => runtime()?.block_on(remote::mandate(command, out)),
        Command::Approvals(command) => runtime()?.block_on(behaviour::approvals(command, out)),
        Command::Revoke(args) => runtime()?.block_on(remote::revoke(args, out)),
        Command::Trace {
            id,
            log_key,
            json,
            remote,
        } => runtime()?.block_on(async {
            let trace = trace::fetch(&remote.client()?, &id, &log_key).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&trace.to_json())?)?;
                Ok(())
            } else {
                trace.print(out)
            }
        }),
        Command::Sidecar(args) => runtime()?.block_on(sidecar::run(args, out)),
        Command::DemoServer { stdio: true, .. } => {
            runtime()?.block_on(writ_demo::serve_stdio())?;
            Ok(())
        }
        Command::DemoServer { listen, .. } => runtime()?.block_on(async {
            let listen = listen.unwrap_or_default();
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("listening on `{listen}`"))?;
            writeln!(
                out,
                "demo MCP server on http://{}/mcp",
                listener.local_addr()?
            )?;
            out.flush()?;
            axum::serve(
                listener,
                writ_demo::http_router(std::env::var("FILES_TOKEN").ok()),
            )
            .await?;
            Ok(())
        }),
        Command::Audit(AuditCommand::Verify {
            data: None,
            issuer,
            key,
            log_key,
            since,
        }) => {
            let (Some(issuer), Some(key), Some(log_key)) = (issuer, key, log_key) else {
                anyhow::bail!(
                    "give --data DIR to verify offline, or --issuer, --key and --log-key to verify a running issuer"
                );
            };
            let client = remote::Remote::new(issuer, key).client()?;
            runtime()?.block_on(remote::verify(&client, &log_key, since.as_deref(), out))
        }
        Command::Audit(AuditCommand::Verify {
            data: Some(data),
            log_key,
            since,
            ..
        }) => {
            // The data directory's own log key proves nothing against whoever could change
            // the log: the key must come from elsewhere.
            let log_key = log_key.context(
                "--data needs --log-key, the log verifier key `writ issuer init` printed: a key read from the data directory would vouch for whatever is in it",
            )?;
            let verifier = writ_log::NoteVerifier::parse(&log_key)
                .context("--log-key is not a note verifier key")?;
            let since = since.as_deref().map(remote::parse_since).transpose()?;
            let report =
                runtime()?.block_on(writ_issuer::verify_data_dir(&data, &verifier, since))?;
            if let Some((size, _)) = since {
                writeln!(out, "consistent with the checkpoint at size {size}")?;
            }
            writeln!(
                out,
                "audit log verified: {} signed checkpoints by {}, newest at size {}, of {} leaves",
                report.checkpoints,
                verifier.name(),
                report
                    .latest_checkpoint
                    .map_or("-".to_owned(), |size| size.to_string()),
                report.leaves,
            )?;
            if let (Some(size), Some(root)) = (report.latest_checkpoint, report.latest_root) {
                let last = report.leaves.saturating_sub(1);
                if size == last {
                    writeln!(out, "leaf {size} is not yet covered by a signed checkpoint")?;
                } else if size < last {
                    writeln!(
                        out,
                        "leaves {size} to {last} are not yet covered by a signed checkpoint"
                    )?;
                }
                writeln!(out, "checkpoint: {size}:{}", STANDARD.encode(root))?;
            }
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
            require_dpop_nonce,
            oidc_config,
            behaviour_config,
        } => {
            let behaviour = match behaviour_config {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading `{}`", path.display()))?;
                    toml::from_str(&text).with_context(|| {
                        format!("`{}` is not valid behaviour settings", path.display())
                    })?
                }
                None => writ_issuer::BehaviourConfig::default(),
            };
            let oidc = match oidc_config {
                Some(path) => {
                    let text = std::fs::read(&path)
                        .with_context(|| format!("reading `{}`", path.display()))?;
                    writ_jose::from_slice_strict(&text).with_context(|| {
                        format!("`{}` is not a list of OIDC providers", path.display())
                    })?
                }
                None => Vec::new(),
            };
            let settings = writ_issuer::Settings {
                policy_dir,
                require_dpop_nonce,
                oidc,
                behaviour,
                ..writ_issuer::Settings::default()
            };
            let issuer = writ_issuer::Issuer::open(&data, settings).await?;
            reload_on_hangup(&issuer)?;
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

/// `writ gateway run`: serves until SIGINT or SIGTERM, then records the decisions still
/// queued.
async fn run_gateway(config: &std::path::Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let config = writ_gateway::Config::load(config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on `{}`", config.listen))?;
    let key_file = config.key_file.clone();
    let (key, created) = load_or_create_key(&key_file)?;
    if created {
        writeln!(
            out,
            "created the gateway key {file} (mode 0600); register it once with:\n  writ gateway add NAME --audience {audience} --key-file {file} --issuer ... --key ADMIN_KEY",
            file = key_file.display(),
            audience = config.public_url,
        )?;
    }
    let audience = config.public_url.clone();
    let gateway =
        writ_gateway::Gateway::start(config, key, std::sync::Arc::new(writ_issuer::SystemClock))
            .await?;
    writeln!(
        out,
        "gateway {audience} listening on {}",
        listener.local_addr()?
    )?;
    out.flush()?;
    writ_gateway::serve(listener, gateway, stop_signal()).await?;
    Ok(())
}

/// The key in the keystore file at `path`, or a new Ed25519 key written there when the file
/// does not exist; `true` when it was created.
fn load_or_create_key(path: &std::path::Path) -> anyhow::Result<(SigningKey, bool)> {
    if path.exists() {
        return Ok((writ_keystore::load(path)?, false));
    }
    let key = SigningKey::generate(Algorithm::EdDSA)?;
    writ_keystore::create(path, &key)?;
    Ok((key, true))
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => drop(tokio::signal::ctrl_c().await),
        }
    }
    #[cfg(not(unix))]
    drop(tokio::signal::ctrl_c().await);
}

/// `SIGHUP` reloads the policy directory; the outcome is logged and audited by the reload.
#[cfg(unix)]
fn reload_on_hangup(issuer: &std::sync::Arc<writ_issuer::Issuer>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let weak = std::sync::Arc::downgrade(issuer);
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let Some(issuer) = weak.upgrade() else { break };
            match issuer.reload_policy("signal").await {
                Ok(outcome) => tracing::info!(?outcome, "policy reload on SIGHUP"),
                Err(error) => tracing::error!(%error, "policy reload on SIGHUP refused"),
            }
        }
    });
    Ok(())
}

#[cfg(not(unix))]
fn reload_on_hangup(_issuer: &std::sync::Arc<writ_issuer::Issuer>) -> anyhow::Result<()> {
    Ok(())
}

fn policy(command: PolicyCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    let (dir, case_files) = match command {
        PolicyCommand::Validate { dir } => (dir, None),
        PolicyCommand::Test { dir, cases } => (dir, Some(cases)),
    };
    let engine = writ_issuer::load_policy(Some(&dir))
        .with_context(|| format!("policy directory `{}` is refused", dir.display()))?;
    writeln!(
        out,
        "policy set {}: {} policies valid against the Writ schema",
        engine.version(),
        engine.len()
    )?;
    for id in engine.ids() {
        writeln!(out, "  {id}")?;
    }
    let Some(mut case_files) = case_files else {
        return Ok(());
    };
    if case_files.is_empty() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading `{}`", dir.display()))?
        {
            let path = entry?.path();
            if path.to_string_lossy().ends_with(".tests.json") {
                case_files.push(path);
            }
        }
        case_files.sort();
    }
    anyhow::ensure!(
        !case_files.is_empty(),
        "no test cases: put `*.tests.json` files in `{}` or pass --cases",
        dir.display()
    );
    let (mut passed, mut failed) = (0, 0);
    for file in &case_files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading `{}`", file.display()))?;
        let cases = writ_policy::PolicyCase::parse_all(&text)
            .with_context(|| format!("`{}` is not a list of policy cases", file.display()))?;
        for case in cases {
            match case.run(&engine) {
                Ok(_) => {
                    passed += 1;
                    writeln!(out, "ok    {}", case.name)?;
                }
                Err(failure) => {
                    failed += 1;
                    writeln!(out, "FAIL  {}: {failure}", case.name)?;
                }
            }
        }
    }
    writeln!(out, "{passed} passed, {failed} failed")?;
    anyhow::ensure!(failed == 0, "{failed} policy test case(s) failed");
    Ok(())
}

/// Runs `writ quickstart`, writing its narration to `out`, and returns every decision made.
pub fn quickstart(out: &mut dyn Write) -> anyhow::Result<Summary> {
    quickstart_in_temporary_directory(out, false)
}

/// The quickstart in a new temporary directory, removed only after the runtime, and every
/// service in it, has stopped.
fn quickstart_in_temporary_directory(out: &mut dyn Write, keep: bool) -> anyhow::Result<Summary> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let runtime = runtime()?;
    let summary = runtime.block_on(quickstart::run(out, dir.path(), keep));
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    dir.close().context("removing the temporary directory")?;
    summary
}

/// Writes `text` to `path`, creating it with mode 0600 (mandates name the task and the
/// agent; secrets are secrets).
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .with_context(|| format!("writing `{}`", path.display()))
}

impl Cli {
    /// The log level when `RUST_LOG` is not set: the quickstart's narration goes to the
    /// terminal with the logs, so it shows only warnings; everything else logs `info`.
    pub fn default_log_level(&self) -> &'static str {
        match self.command {
            Command::Quickstart { .. } => "warn",
            _ => "info",
        }
    }
}

fn print_public(out: &mut dyn Write, key: &SigningKey) -> anyhow::Result<()> {
    let jwk = serde_json::to_string(&key.public_key().to_jwk()).context("encoding the JWK")?;
    writeln!(out, "algorithm:  {}", key.algorithm())?;
    writeln!(out, "thumbprint: {}", key.public_key().thumbprint())?;
    writeln!(out, "public jwk: {jwk}")?;
    Ok(())
}
