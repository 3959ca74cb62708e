//! Verbs that act on a running issuer through its `/v1` API: inventory, key rotation and
//! remote audit verification. Each authenticates with a registered key (`--key`), by DPoP.

use std::io::{Read as _, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use writ_client::IssuerClient;

use crate::client::public_jwk;

/// Where the issuer is and which key to call it with.
#[derive(Debug, Clone, Args)]
pub(crate) struct Remote {
    /// The issuer's public URL.
    #[arg(long, env = "WRIT_ISSUER")]
    issuer: String,
    /// The keystore file of the key to authenticate with (an administrator's, for most verbs).
    #[arg(long, env = "WRIT_KEY")]
    key: PathBuf,
}

impl Remote {
    pub(crate) fn new(issuer: String, key: PathBuf) -> Remote {
        Remote { issuer, key }
    }

    pub(crate) fn client(&self) -> anyhow::Result<IssuerClient> {
        let key = writ_keystore::load(&self.key)
            .with_context(|| format!("loading the caller key `{}`", self.key.display()))?;
        Ok(IssuerClient::new(&self.issuer, key)?)
    }

    /// `GET path`, printing the answer.
    async fn show(&self, path: &str, out: &mut dyn Write) -> anyhow::Result<()> {
        print(out, &self.client()?.get(path).await?)
    }

    /// `POST path` with `body`, printing the answer.
    async fn send(
        &self,
        path: &str,
        body: Option<&Value>,
        out: &mut dyn Write,
    ) -> anyhow::Result<()> {
        print(out, &self.client()?.post(path, body).await?)
    }
}

/// The public key to register.
#[derive(Debug, Clone, Args)]
pub(crate) struct PublicKeyArg {
    /// A keystore file whose public half is registered.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// The public JWK, as JSON.
    #[arg(long)]
    jwk: Option<String>,
}

impl PublicKeyArg {
    fn jwk(&self) -> anyhow::Result<Value> {
        public_jwk(self.key_file.as_deref(), self.jwk.as_deref())
    }

    fn optional_jwk(&self) -> anyhow::Result<Option<Value>> {
        if self.key_file.is_none() && self.jwk.is_none() {
            return Ok(None);
        }
        self.jwk().map(Some)
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum HumanCommand {
    /// Register a human (administrators only).
    Add {
        /// The human's id.
        id: String,
        /// A display name; the id when absent.
        #[arg(long)]
        display_name: Option<String>,
        /// Make them an administrator.
        #[arg(long)]
        admin: bool,
        /// The key they authenticate with (optional).
        #[command(flatten)]
        key: PublicKeyArg,
        /// Their identity provider's issuer, so they can bind a key with an ID token.
        #[arg(long, requires = "oidc_subject")]
        oidc_issuer: Option<String>,
        /// Their subject at that identity provider.
        #[arg(long, requires = "oidc_issuer")]
        oidc_subject: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Bind the key in `--key` to yourself with an OIDC ID token whose `nonce` is that key's
    /// thumbprint (`writ keys show` prints it).
    Bind {
        /// A file holding the ID token, or `-` for standard input (not an argument, so it
        /// stays out of process lists and shell history).
        #[arg(long)]
        id_token_file: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
    /// List every human (administrators only).
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Set the groups a human belongs to with `--set` (administrators only), or show them.
    /// Entitlements given to `group:NAME` apply to every member.
    Groups {
        /// The human's id.
        id: String,
        /// Every group, comma-separated (replacing the ones before; `--set ''` for none).
        #[arg(long, value_delimiter = ',')]
        set: Option<Vec<String>>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Offboard a human (administrators only): revoke them and every mandate they granted,
    /// and suspend the agents they own until `writ agent transfer`.
    Offboard {
        /// The human's id.
        id: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AgentCommand {
    /// Register an agent owned by the caller (or by `--owner`, for administrators).
    Add {
        /// The agent's name.
        name: String,
        /// The tools it may be granted: `server/tool`, or `server/*` for the server as a whole.
        #[arg(long, value_delimiter = ',', required = true)]
        tools: Vec<String>,
        /// The owning human, when an administrator registers for someone else.
        #[arg(long)]
        owner: Option<String>,
        /// Days until the agent expires.
        #[arg(long)]
        lifetime_days: Option<u64>,
        #[command(flatten)]
        key: PublicKeyArg,
        #[command(flatten)]
        remote: Remote,
    },
    /// List the caller's agents (every agent, for administrators).
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Extend an agent's lifetime (its owner or an administrator).
    Renew {
        /// The agent's name.
        name: String,
        /// Days from now; the issuer's default lifetime when absent.
        #[arg(long)]
        days: Option<u64>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Retire an agent: revoke its key and every mandate it holds (its owner or an
    /// administrator).
    Retire {
        /// The agent's name.
        name: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show what an agent normally does: the behavioural baseline the detectors compare
    /// its calls with, its learning period, and each detector's mode (its owner and
    /// administrators).
    Baseline {
        /// The agent's name.
        name: String,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Give an agent a new owner (administrators only); an agent suspended because its
    /// owner was offboarded becomes active again.
    Transfer {
        /// The agent's name.
        name: String,
        /// The new owner's human id.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ProviderKind {
    /// An MCP server.
    Mcp,
    /// An HTTP API.
    Http,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ToolCommand {
    /// Register (or replace) a tool provider and its tools (administrators only).
    Add {
        /// The provider's name, as grants and routes refer to it.
        provider: String,
        /// What it is.
        #[arg(long, value_enum)]
        kind: ProviderKind,
        /// Where it is served.
        #[arg(long)]
        url: Option<String>,
        /// A tool: `name`, or `name=label,label` with its data labels. Repeat for each.
        #[arg(long = "tool", required = true)]
        tools: Vec<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List the providers and their tools.
    List {
        #[command(flatten)]
        remote: Remote,
    },
}

/// A gateway whose status changes, and why.
#[derive(Debug, Args)]
pub(crate) struct GatewayStatusArgs {
    /// The gateway's name.
    name: String,
    /// Why, for the audit log.
    #[arg(long, default_value = "changed from the command line")]
    reason: String,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Subcommand)]
pub(crate) enum GatewayCommand {
    /// Register a gateway and the resource URL it serves (administrators only).
    Add {
        /// The gateway's name.
        name: String,
        /// The resource (audience) it serves: writs for it name this URL.
        #[arg(long)]
        audience: String,
        #[command(flatten)]
        key: PublicKeyArg,
        #[command(flatten)]
        remote: Remote,
    },
    /// List the gateways, with their status (administrators only).
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Refuse every call a gateway makes until it is enabled again (administrators only).
    Disable(GatewayStatusArgs),
    /// Accept a disabled gateway's calls again (administrators only; not once revoked).
    Enable(GatewayStatusArgs),
    /// Refuse a gateway for good and revoke its key in the feed (administrators only).
    Revoke(GatewayStatusArgs),
    /// Run a gateway from its configuration file (TOML; see `writ_gateway::config`). On
    /// first start it creates its key and prints the command that registers it.
    Run {
        /// The configuration file.
        #[arg(long)]
        config: std::path::PathBuf,
    },
}

fn print(out: &mut dyn Write, value: &Value) -> anyhow::Result<()> {
    writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

pub(crate) async fn human(command: HumanCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        HumanCommand::Add {
            id,
            display_name,
            admin,
            key,
            oidc_issuer,
            oidc_subject,
            remote,
        } => {
            let oidc = oidc_issuer
                .zip(oidc_subject)
                .map(|(issuer, subject)| json!({"issuer": issuer, "subject": subject}));
            // Absent options go as `null`, which the issuer reads as not given.
            let body = json!({
                "id": id, "admin": admin, "display_name": display_name, "jwk": key.optional_jwk()?,
                "oidc": oidc,
            });
            remote.send("/v1/humans", Some(&body), out).await
        }
        HumanCommand::List { remote } => remote.show("/v1/humans", out).await,
        HumanCommand::Groups { id, set, remote } => {
            crate::entitlement::groups(&id, set, &remote, out).await
        }
        HumanCommand::Offboard { id, reason, remote } => {
            let body = json!({"reason": reason});
            remote
                .send(&format!("/v1/humans/{id}/offboard"), Some(&body), out)
                .await
        }
        HumanCommand::Bind {
            id_token_file,
            remote,
        } => {
            let id_token = if id_token_file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin().take(64 * 1024))
                    .context("reading the ID token from standard input")?
            } else {
                std::fs::read_to_string(&id_token_file)
                    .with_context(|| format!("reading `{}`", id_token_file.display()))?
            };
            let body = json!({"id_token": id_token.trim()});
            print(
                out,
                &remote
                    .client()?
                    .post("/v1/humans/bind", Some(&body))
                    .await?,
            )
        }
    }
}

pub(crate) async fn agent(command: AgentCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        AgentCommand::Add {
            name,
            tools,
            owner,
            lifetime_days,
            key,
            remote,
        } => {
            let body = json!({
                "name": name, "jwk": key.jwk()?, "tools": tools,
                "owner": owner, "lifetime_days": lifetime_days,
            });
            remote.send("/v1/agents", Some(&body), out).await
        }
        AgentCommand::List { remote } => remote.show("/v1/agents", out).await,
        AgentCommand::Renew { name, days, remote } => {
            let body = json!({"days": days});
            remote
                .send(&format!("/v1/agents/{name}/renew"), Some(&body), out)
                .await
        }
        AgentCommand::Retire {
            name,
            reason,
            remote,
        } => {
            let body = json!({"reason": reason});
            remote
                .send(&format!("/v1/agents/{name}/retire"), Some(&body), out)
                .await
        }
        AgentCommand::Baseline { name, json, remote } => {
            crate::behaviour::baseline(&name, json, &remote, out).await
        }
        AgentCommand::Transfer { name, to, remote } => {
            let body = json!({"owner": to});
            remote
                .send(&format!("/v1/agents/{name}/transfer"), Some(&body), out)
                .await
        }
    }
}

pub(crate) async fn tool(command: ToolCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        ToolCommand::Add {
            provider,
            kind,
            url,
            tools,
            remote,
        } => {
            let tools: Vec<Value> = tools
                .iter()
                .map(|tool| match tool.split_once('=') {
                    Some((name, labels)) => json!({
                        "name": name,
                        "labels": labels.split(',').filter(|l| !l.is_empty()).collect::<Vec<_>>(),
                    }),
                    None => json!({"name": tool}),
                })
                .collect();
            let kind = match kind {
                ProviderKind::Mcp => "mcp",
                ProviderKind::Http => "http",
            };
            let body = json!({"name": provider, "kind": kind, "tools": tools, "url": url});
            remote.send("/v1/providers", Some(&body), out).await
        }
        ToolCommand::List { remote } => remote.show("/v1/providers", out).await,
    }
}

pub(crate) async fn gateway(command: GatewayCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        GatewayCommand::Add {
            name,
            audience,
            key,
            remote,
        } => {
            let body = json!({"name": name, "jwk": key.jwk()?, "audience": audience});
            remote.send("/v1/gateways", Some(&body), out).await
        }
        GatewayCommand::List { remote } => remote.show("/v1/gateways", out).await,
        GatewayCommand::Disable(args) => gateway_status(args, "disable", out).await,
        GatewayCommand::Enable(args) => gateway_status(args, "enable", out).await,
        GatewayCommand::Revoke(args) => gateway_status(args, "revoke", out).await,
        GatewayCommand::Run { config } => crate::run_gateway(&config, out).await,
    }
}

async fn gateway_status(
    args: GatewayStatusArgs,
    action: &str,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let path = format!("/v1/gateways/{}/{action}", args.name);
    let body = json!({"reason": args.reason});
    args.remote.send(&path, Some(&body), out).await
}

#[derive(Debug, Subcommand)]
pub(crate) enum MandateCommand {
    /// Grant one of your agents a mandate for a task (as the human in `--key`).
    Grant {
        /// The agent's name.
        agent: String,
        /// The task, in words; the issuer keeps it (or only its SHA-256 digest, by its
        /// configuration) and every writ carries the digest.
        #[arg(long)]
        task: String,
        /// A short summary shown in refusals and traces.
        #[arg(long)]
        summary: Option<String>,
        /// One grant as an RFC 9396 authorization detail in JSON, such as
        /// `{"type":"mcp_tool_call","server":"files","tool":"read_file","arguments":"any"}`.
        /// Repeat for each.
        #[arg(long = "grant", required_unless_present = "grants_file")]
        grants: Vec<String>,
        /// A file holding a JSON array of grants, instead of `--grant`.
        #[arg(long, conflicts_with = "grants")]
        grants_file: Option<PathBuf>,
        /// Seconds until it expires (the issuer's default when absent).
        #[arg(long)]
        ttl_seconds: Option<u64>,
        /// How many times it may be delegated further.
        #[arg(long)]
        max_depth: Option<u8>,
        /// Write the mandate to this file (for the sidecar's `--mandate-file`) instead of
        /// printing it.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Delegate part of a mandate to another agent, as the agent holding it (`--key` is
    /// that agent's key): the child's grants may only narrow the parent's, and it expires no
    /// later. For the sub-agents an agent starts. The receiving agent belongs to the human
    /// who granted the root mandate, unless both humans consented (`writ mandate consent`).
    Delegate {
        /// The receiving agent's name or key thumbprint.
        to: String,
        /// The file holding the parent mandate.
        #[arg(long)]
        mandate_file: PathBuf,
        /// One grant of the child mandate (RFC 9396 detail, JSON); repeat for each.
        #[arg(long = "grant", required_unless_present = "grants_file")]
        grants: Vec<String>,
        /// A file holding a JSON array of grants, instead of `--grant`.
        #[arg(long, conflicts_with = "grants")]
        grants_file: Option<PathBuf>,
        /// Seconds until the child expires; with its parent when absent.
        #[arg(long)]
        expires_in: Option<u64>,
        /// Where to write the child mandate.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show a mandate: its grants, chain position, task digest and revocation.
    Show {
        /// The mandate id.
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Consent to mandates of one human being delegated to another human's agent (as the
    /// human in `--key`). Such a delegation needs both: the agent's owner consents that it
    /// may receive, and the human whose mandates they are that they may be handed to it.
    Consent {
        /// The receiving agent, by name or key thumbprint.
        agent: String,
        /// The human whose mandates may reach it.
        #[arg(long)]
        from: String,
        /// Only this mandate of theirs, and what is delegated from it.
        #[arg(long)]
        mandate: Option<String>,
        /// Seconds the consent lasts (30 days when absent; at most a year).
        #[arg(long)]
        expires_in: Option<u64>,
        #[command(flatten)]
        remote: Remote,
    },
    /// The delegation consents you are party to (as the agent's owner, or as the human
    /// whose mandates they concern), newest first, each `active`, `withdrawn`, `expired`
    /// or `lapsed` (the agent changed owner since).
    Consents {
        #[command(flatten)]
        remote: Remote,
    },
    /// Withdraw a consent you gave (`cns_…`): no delegation is made under it any more, and
    /// the mandates delegated under it are revoked with their subtrees.
    WithdrawConsent {
        /// The consent's id.
        id: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

pub(crate) async fn mandate(command: MandateCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        MandateCommand::Grant {
            agent,
            task,
            summary,
            grants,
            grants_file,
            ttl_seconds,
            max_depth,
            out: file,
            remote,
        } => {
            let grants = grants_from(&grants, grants_file.as_deref())?;
            let body = json!({
                "agent": agent, "task": task, "summary": summary, "grants": grants,
                "ttl_seconds": ttl_seconds, "max_depth": max_depth,
            });
            let mut granted = remote.client()?.post("/v1/mandates", Some(&body)).await?;
            if let Some(file) = file
                && let Some(Value::String(mandate)) = granted
                    .as_object_mut()
                    .and_then(|members| members.remove("mandate"))
            {
                crate::write_private(&file, &format!("{mandate}\n"))?;
                writeln!(out, "wrote the mandate to {}", file.display())?;
            }
            print(out, &granted)
        }
        MandateCommand::Delegate {
            to,
            mandate_file,
            grants,
            grants_file,
            expires_in,
            out: file,
            remote,
        } => {
            let grants = grants_from(&grants, grants_file.as_deref())?;
            let parent = std::fs::read_to_string(&mandate_file)
                .with_context(|| format!("reading `{}`", mandate_file.display()))?;
            let mut answer = remote
                .client()?
                .delegate("/token", &parent, &to, &grants, expires_in)
                .await?;
            let child = answer
                .as_object_mut()
                .and_then(|members| members.remove("access_token"))
                .and_then(|token| token.as_str().map(str::to_owned))
                .context("the issuer's answer has no mandate")?;
            crate::write_private(&file, &format!("{child}\n"))?;
            writeln!(
                out,
                "wrote the child mandate for `{to}` to {}",
                file.display()
            )?;
            print(out, &answer)
        }
        MandateCommand::Show { id, remote } => {
            remote.show(&format!("/v1/mandates/{id}"), out).await
        }
        MandateCommand::Consent {
            agent,
            from,
            mandate,
            expires_in,
            remote,
        } => {
            let body =
                json!({"agent": agent, "from": from, "mandate": mandate, "expires_in": expires_in});
            remote
                .send("/v1/delegation-consents", Some(&body), out)
                .await
        }
        MandateCommand::Consents { remote } => remote.show("/v1/delegation-consents", out).await,
        MandateCommand::WithdrawConsent { id, reason, remote } => {
            let body = json!({"reason": reason});
            remote
                .send(
                    &format!("/v1/delegation-consents/{id}/withdraw"),
                    Some(&body),
                    out,
                )
                .await
        }
    }
}

/// `writ inventory`: every agent and tool provider, as tables for people or JSON.
pub(crate) async fn inventory(
    remote: Remote,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let inventory = remote.client()?.get("/v1/inventory").await?;
    if json {
        return print(out, &inventory);
    }
    let list = |value: &Value| -> String {
        value
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .filter(|text| !text.is_empty())
            .unwrap_or_else(|| "-".to_owned())
    };
    let date = |value: &Value| {
        value.as_u64().map_or_else(
            || "never".to_owned(),
            |seconds| {
                httpdate::fmt_http_date(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds),
                )
            },
        )
    };
    writeln!(
        out,
        "{:<16} {:<10} {:<22} {:<29} {:<29} {:<28} MANDATES",
        "AGENT", "OWNER", "STATUS", "LAST SEEN", "EXPIRES", "TOOLS USED"
    )?;
    for agent in field(&inventory, "agents").as_array().into_iter().flatten() {
        let text = |name: &str| agent[name].as_str().unwrap_or("-").to_owned();
        let status = match field(agent, "status_reason").as_str() {
            Some(reason) => format!("{} ({reason})", text("status")),
            None => text("status"),
        };
        writeln!(
            out,
            "{:<16} {:<10} {:<22} {:<29} {:<29} {:<28} {}",
            text("name"),
            text("owner"),
            status,
            date(field(agent, "last_seen")),
            date(field(agent, "expires_at")),
            list(field(agent, "tools_used")),
            field(agent, "outstanding_mandates")
                .as_array()
                .map_or(0, Vec::len),
        )?;
    }
    writeln!(out, "\n{:<16} {:<6} TOOLS", "PROVIDER", "KIND")?;
    for provider in field(&inventory, "providers")
        .as_array()
        .into_iter()
        .flatten()
    {
        let tools: Vec<String> = field(provider, "tools")
            .as_array()
            .into_iter()
            .flatten()
            .map(|tool| match list(field(tool, "labels")).as_str() {
                "-" => field(tool, "name").as_str().unwrap_or("?").to_owned(),
                labels => format!("{}[{labels}]", field(tool, "name").as_str().unwrap_or("?")),
            })
            .collect();
        writeln!(
            out,
            "{:<16} {:<6} {}",
            field(provider, "name").as_str().unwrap_or("?"),
            field(provider, "kind").as_str().unwrap_or("?"),
            tools.join(" ")
        )?;
    }
    let discovered = field(&inventory, "discovered")
        .as_array()
        .into_iter()
        .flatten();
    let mut discovered = discovered.peekable();
    if discovered.peek().is_some() {
        writeln!(
            out,
            "\n{:<16} {:<40} NOT IN THE INVENTORY",
            "SERVER", "OFFERS"
        )?;
        for server in discovered {
            writeln!(
                out,
                "{:<16} {:<40} {}",
                field(server, "server").as_str().unwrap_or("?"),
                list(field(server, "tools")),
                list(field(server, "unregistered")),
            )?;
        }
    }
    let strangers = field(&inventory, "turned_away")
        .as_array()
        .into_iter()
        .flatten();
    let mut strangers = strangers.peekable();
    if strangers.peek().is_some() {
        writeln!(
            out,
            "\n{:<44} {:<9} {:<29} {:<24} ROUTES",
            "TURNED AWAY (unregistered key)", "REQUESTS", "LAST SEEN", "LAST REASON"
        )?;
        for stranger in strangers {
            writeln!(
                out,
                "{:<44} {:<9} {:<29} {:<24} {}",
                field(stranger, "jkt").as_str().unwrap_or("?"),
                field(stranger, "requests"),
                date(field(stranger, "last_seen")),
                field(stranger, "last_reason").as_str().unwrap_or("?"),
                list(field(stranger, "routes")),
            )?;
        }
    }
    Ok(())
}

/// A member of a JSON object, or `null`.
fn field<'a>(value: &'a Value, name: &str) -> &'a Value {
    value.get(name).unwrap_or(&Value::Null)
}

/// Grants from `--grant` arguments or a file of them, as a JSON array.
fn grants_from(grants: &[String], file: Option<&std::path::Path>) -> anyhow::Result<Value> {
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading `{}`", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("`{}` is not a JSON array of grants", path.display()))
        }
        None => grants
            .iter()
            .map(|grant| {
                serde_json::from_str(grant)
                    .with_context(|| format!("--grant `{grant}` is not JSON"))
            })
            .collect::<anyhow::Result<_>>()
            .map(Value::Array),
    }
}

/// What `writ revoke` revokes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum RevocationKind {
    /// An agent, by its name or key thumbprint: every writ and mandate it holds stops.
    Agent,
    /// A mandate and every mandate delegated from it.
    Mandate,
    /// A human and every mandate they granted.
    Human,
    /// One writ, by its id.
    Writ,
    /// An issuer signing key, by its `kid`: every mandate it signed stops.
    Key,
}

/// `writ revoke KIND SUBJECT`: takes effect at the issuer at once and at every gateway
/// within a round trip of its revocation feed. By default the answer waits until every
/// live gateway has acknowledged the revocation, and fails naming the gateways that had
/// not when `--timeout` runs out (the revocation is committed either way).
#[derive(Debug, Args)]
pub(crate) struct RevokeArgs {
    /// What to revoke.
    #[arg(value_enum)]
    kind: RevocationKind,
    /// Which one: an agent's name or thumbprint, a mandate id, human id, writ id or `kid`.
    /// The issuer refuses a subject that names nothing (`unknown_subject`) and answers
    /// with everything it revoked.
    subject: String,
    /// Why, for the audit log.
    #[arg(long, default_value = "revoked from the command line")]
    reason: String,
    /// Answer once the revocation is committed, without waiting for the gateways.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for every live gateway to acknowledge it, in seconds (1 to 50,
    /// within the client's own 60-second limit on a request).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=50))]
    timeout: u64,
    #[command(flatten)]
    remote: Remote,
}

pub(crate) async fn revoke(args: RevokeArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let kind = match args.kind {
        RevocationKind::Agent => "agent",
        RevocationKind::Mandate => "mandate",
        RevocationKind::Human => "human",
        RevocationKind::Writ => "writ",
        RevocationKind::Key => "key",
    };
    let body = json!({"kind": kind, "subject": args.subject, "reason": args.reason});
    if args.no_wait {
        return args.remote.send("/v1/revocations", Some(&body), out).await;
    }
    let path = format!("/v1/revocations?wait={}", args.timeout);
    let answer = args.remote.client()?.post(&path, Some(&body)).await?;
    print(out, &answer)?;
    let enforcement = answer.get("enforcement");
    let field = |name: &str| enforcement.and_then(|enforcement| enforcement.get(name));
    if field("status").and_then(Value::as_str) != Some("enforced") {
        let lagging: Vec<&str> = field("lagging")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        anyhow::bail!(
            "the revocation is committed (log index {}), but these gateways had not applied it after {} s: {}",
            answer.get("log_index").unwrap_or(&Value::Null),
            args.timeout,
            if lagging.is_empty() {
                "unknown".to_owned()
            } else {
                lagging.join(", ")
            }
        );
    }
    Ok(())
}

pub(crate) async fn rotate(remote: Remote, out: &mut dyn Write) -> anyhow::Result<()> {
    remote.send("/v1/keys/rotate", None, out).await
}

/// `--since SIZE:ROOT`, the root in base64, as `writ audit verify` prints a checkpoint.
pub(crate) fn parse_since(since: &str) -> anyhow::Result<(u64, writ_log::Hash)> {
    let (size, root) = since
        .split_once(':')
        .context("--since is SIZE:ROOT, the root in base64")?;
    let size: u64 = size.parse().context("--since size is not a number")?;
    Ok((size, hash(&json!(root))?))
}

pub(crate) fn hash(text: &Value) -> anyhow::Result<writ_log::Hash> {
    let bytes = STANDARD
        .decode(text.as_str().context("a hash is not a string")?)
        .context("a hash is not base64")?;
    writ_log::Hash::try_from(bytes).map_err(|_| anyhow::anyhow!("a hash is not 32 bytes"))
}

/// The checkpoint in `note`, once its signature verifies with `log_key` (the verifier key
/// `writ issuer init` printed) and it names that key's log as its origin.
pub(crate) fn signed_checkpoint(note: &str, log_key: &str) -> anyhow::Result<writ_log::Checkpoint> {
    let verifier =
        writ_log::NoteVerifier::parse(log_key).context("--log-key is not a note verifier key")?;
    let text = writ_log::verify_note(note, std::slice::from_ref(&verifier))
        .context("the checkpoint is not signed by the log key")?;
    let checkpoint = writ_log::Checkpoint::parse(text).context("the checkpoint does not parse")?;
    anyhow::ensure!(
        checkpoint.origin == verifier.name(),
        "the checkpoint is of log `{}`, not of `{}`, whose key was given",
        checkpoint.origin,
        verifier.name()
    );
    Ok(checkpoint)
}

/// Verifies a running issuer's log: the newest checkpoint must be signed by `log_key` (the
/// verifier key `writ issuer init` printed, not one the issuer hands out), and every leaf,
/// fetched and rehashed here, must rebuild the checkpoint's root. With `--since SIZE:ROOT`
/// (a checkpoint verified earlier), the rebuilt log must also have that root at that size:
/// it only grew since.
pub(crate) async fn verify(
    client: &IssuerClient,
    log_key: &str,
    since: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let body = client.get("/v1/audit/checkpoint").await?;
    let note = body
        .get("note")
        .and_then(Value::as_str)
        .context("the checkpoint response has no note")?;
    let checkpoint = signed_checkpoint(note, log_key)?;
    let mut tree = writ_log::MemoryTree::new();
    for index in 0..checkpoint.size {
        let leaf = client
            .get(&format!(
                "/v1/audit/leaves/{index}?size={}",
                checkpoint.size
            ))
            .await?;
        let data = STANDARD
            .decode(
                leaf.get("data")
                    .and_then(Value::as_str)
                    .context("a leaf has no data")?,
            )
            .context("leaf data is not base64")?;
        tree.push(writ_log::leaf_hash(&data));
    }
    let root = tree.root(checkpoint.size)?;
    anyhow::ensure!(
        root == checkpoint.root,
        "the leaves the issuer serves do not rebuild its signed root at size {}: the log was changed",
        checkpoint.size
    );
    if let Some(since) = since {
        let (size, old_root) = parse_since(since)?;
        // Every leaf is already rebuilt here, so the earlier root is checked directly
        // rather than through a proof the issuer would supply.
        anyhow::ensure!(
            size <= checkpoint.size,
            "the log went backwards: it has {} leaves, fewer than the {size} of the earlier checkpoint",
            checkpoint.size
        );
        anyhow::ensure!(
            tree.root(size)? == old_root,
            "the log is not an extension of the earlier checkpoint: history was rewritten"
        );
        writeln!(out, "consistent with the checkpoint at size {size}")?;
    }
    writeln!(
        out,
        "audit log verified: {} leaves rebuild the checkpoint signed by {}",
        checkpoint.size, checkpoint.origin
    )?;
    writeln!(
        out,
        "checkpoint: {}:{}",
        checkpoint.size,
        STANDARD.encode(checkpoint.root)
    )?;
    Ok(())
}
