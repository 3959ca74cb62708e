//! `writ quickstart`: the whole story on 127.0.0.1, in a temporary directory.
//!
//! It runs the real services in one process, each on its own loopback port: the issuer on
//! an embedded store, the demo MCP tool server, a gateway in front of it, and a sidecar
//! that holds the agent's key. An administrator entitles alice to the tool and its data,
//! and her agent is refused anything beyond them. Then it plays the agent, an MCP client that talks to the
//! sidecar and knows nothing of Writ: it lists its tools, makes an allowed call, is refused
//! a call outside its data scope and a tool outside its mandate, shows what a stolen writ
//! is worth, and is stopped by a revocation. `writ trace` draws the first call back to
//! the human, the task and the policy, and `writ audit verify` rebuilds the log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use writ_client::{ClientError, IssuerClient};
use writ_jose::{Algorithm, SigningKey};
use writ_token::{Clock as _, ProofClaims, SystemClock};

/// The task alice hands the agent.
const TASK: &str = "Summarize the Q3 reports in /data/reports for the board meeting";
const SUMMARY: &str = "Summarize the Q3 reports for the board";
/// The credential only the gateway holds, for the demo tool server.
const UPSTREAM_SECRET_FILE: &str = "files.token";

/// How one step of the story ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The call went through.
    Allowed,
    /// The call was refused with this stable reason code.
    Denied(String),
}

/// Every decision the story made, in order, and the record kinds the trace walked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `(step, outcome)` pairs.
    pub decisions: Vec<(&'static str, Outcome)>,
    /// The kinds of the records `writ trace` proved, in log order.
    pub traced: Vec<String>,
    /// How long after the revocation was acknowledged the next call was refused.
    pub revoked_within: Duration,
}

/// The services, running.
struct Deployment {
    dir: PathBuf,
    issuer_url: String,
    gateway_url: String,
    sidecar_url: String,
    log_key: String,
    admin: IssuerClient,
    alice: IssuerClient,
    /// The agent key's file: the sidecar loaded it, and only the sidecar uses it.
    agent_key: PathBuf,
    mandate_file: PathBuf,
    stop_gateway: tokio::sync::oneshot::Sender<()>,
    gateway_task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Runs the story with its files in `dir`, which the caller removes once the runtime (and
/// every service task in it) has stopped.
pub(crate) async fn run(out: &mut dyn Write, dir: &Path, keep: bool) -> anyhow::Result<Summary> {
    let mut decisions = Vec::new();
    writeln!(
        out,
        "Writ quickstart: an agent that holds no credential earns one writ per call.\n"
    )?;
    let (deployment, mandate_id) = deploy(out, dir).await?;
    let agent = Agent::new(&deployment.sidecar_url);

    step(
        out,
        5,
        "The agent connects: an MCP client that knows nothing of Writ",
    )?;
    let init = agent
        .send(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "quickstart-agent", "version": "1"}}}),
        )
        .await?;
    let server = init
        .answer
        .pointer("/result/serverInfo/name")
        .and_then(Value::as_str)
        .context("the sidecar's answer to initialize names no server")?;
    say(
        out,
        &format!("initialize   → connected to `{server}` through the sidecar"),
    )?;
    decisions.push(("initialize", outcome(&init.answer)));
    agent
        .notify(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await?;
    let list = agent
        .send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .await?;
    let tools: Vec<&str> = list
        .answer
        .pointer("/result/tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|tool| tool.get("name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    say(
        out,
        &format!(
            "tools/list   → {} (the server also has drop_table; the gateway hides what the mandate does not grant)",
            tools.join(", ")
        ),
    )?;
    decisions.push(("tools/list", outcome(&list.answer)));

    step(out, 6, "An allowed call: read /data/reports/q3.md")?;
    let first = agent
        .call(3, "read_file", json!({"path": "/data/reports/q3.md"}))
        .await?;
    say(
        out,
        "the sidecar asks the issuer for a writ for exactly this call (token exchange + DPoP),",
    )?;
    say(
        out,
        "then calls the gateway with it; the gateway checks writ, proof, revocation and",
    )?;
    say(
        out,
        "the real call, adds the credential only it holds, and forwards",
    )?;
    say(
        out,
        &format!("ALLOW  {}", one_line(&tool_text(&first.answer))),
    )?;
    decisions.push(("read_file /data/reports/q3.md", outcome(&first.answer)));
    let first_request = first
        .request_id
        .context("the first call came back without a gateway request id")?;

    step(out, 7, "Outside the mandate: another folder, another tool")?;
    let scope = agent
        .call(4, "read_file", json!({"path": "/data/hr/salaries.csv"}))
        .await?;
    say(out, &format!("DENY   {}", tool_text(&scope.answer)))?;
    decisions.push(("read_file /data/hr/salaries.csv", outcome(&scope.answer)));
    let drop = agent
        .call(5, "drop_table", json!({"table": "customers"}))
        .await?;
    say(out, &format!("DENY   {}", tool_text(&drop.answer)))?;
    decisions.push(("drop_table customers", outcome(&drop.answer)));
    say(
        out,
        "The model reads these as tool errors and can explain them to the user.",
    )?;

    step(out, 8, "What a stolen writ is worth")?;
    say(
        out,
        "An eavesdropper copies a request, writ and proof, off the wire (the agent never sees either).",
    )?;
    let stolen = steal_a_writ(&deployment, out).await?;
    decisions.extend(stolen);

    step(out, 9, "alice revokes the mandate")?;
    say(out, &format!("$ writ revoke mandate {mandate_id}"))?;
    deployment
        .alice
        .post(
            "/v1/revocations",
            Some(&json!({"kind": "mandate", "subject": mandate_id, "reason": "task done"})),
        )
        .await?;
    let revoked_at = Instant::now();
    let after = agent
        .call(6, "read_file", json!({"path": "/data/reports/q2.md"}))
        .await?;
    let revoked_within = revoked_at.elapsed();
    say(out, &format!("DENY   {}", tool_text(&after.answer)))?;
    say(
        out,
        &format!(
            "       refused {} ms after the revocation was acknowledged",
            revoked_within.as_millis()
        ),
    )?;
    decisions.push(("read_file after the revocation", outcome(&after.answer)));

    step(
        out,
        10,
        "writ trace: the first call, back to the human, the task and the policy",
    )?;
    say(
        out,
        &format!("$ writ trace {first_request} --log-key <log verifier key>"),
    )?;
    let trace = trace_when_recorded(&deployment, &first_request).await?;
    trace.print(&mut Indented::new(out))?;
    let traced = trace.kinds();

    step(
        out,
        11,
        "writ audit verify: every leaf, rehashed, rebuilds the signed root",
    )?;
    say(out, "$ writ audit verify --log-key <log verifier key>")?;
    crate::remote::verify(
        &deployment.admin,
        &deployment.log_key,
        None,
        &mut Indented::new(out),
    )
    .await?;

    let allowed = decisions
        .iter()
        .filter(|(_, outcome)| *outcome == Outcome::Allowed)
        .count();
    writeln!(
        out,
        "\nDone: {allowed} allowed, {} denied, each denial with its reason; the agent never held a key, a writ or the tool's credential.",
        decisions.len() - allowed
    )?;
    if keep {
        keep_running(&deployment, out).await?;
    }
    stop(deployment).await;
    Ok(Summary {
        decisions,
        traced,
        revoked_within,
    })
}

/// Steps 1 to 4: the services and the inventory. Returns the deployment and the mandate id.
async fn deploy(out: &mut dyn Write, dir: &Path) -> anyhow::Result<(Deployment, String)> {
    let path = |name: &str| dir.join(name);

    step(out, 1, "The issuer, on an embedded store")?;
    let (issuer_listener, issuer_url) = listen().await?;
    let data = path("issuer-data");
    let admin_key = path("admin.key");
    let done = writ_issuer::init(&data, &issuer_url, "admin", &admin_key).await?;
    let issuer = writ_issuer::Issuer::open(&data, writ_issuer::Settings::default()).await?;
    tokio::spawn(writ_issuer::serve(issuer_listener, issuer));
    say(
        out,
        &format!(
            "$ writ issuer init --data {} --url {issuer_url} --admin-key admin.key",
            data.display()
        ),
    )?;
    say(
        out,
        &format!(
            "issuer      {issuer_url}  (signing key {}; SQLite in {})",
            done.identity.active_kid,
            data.display()
        ),
    )?;
    say(out, &format!("log key     {}", done.log_verifier_key))?;

    step(out, 2, "The tool and the gateway in front of it")?;
    let (tool_listener, tool_url) = listen().await?;
    // The tool answers only requests bearing the credential that only the gateway reads.
    let token = upstream_secret()?;
    let secret = path(UPSTREAM_SECRET_FILE);
    crate::write_private(&secret, &format!("{token}\n"))?;
    let tool = writ_demo::http_router(Some(token));
    tokio::spawn(async move { axum::serve(tool_listener, tool).await });
    let (gateway_listener, gateway_url) = listen().await?;
    // Paths as TOML strings: JSON's string escapes are TOML's.
    let toml = |path: &Path| serde_json::to_string(&path.to_string_lossy()).unwrap_or_default();
    let config = writ_gateway::Config::parse(&format!(
        r#"listen = "127.0.0.1:0"
public_url = "{gateway_url}"
issuer = "{issuer_url}"
key_file = {key}
spool_dir = {spool}

[[routes]]
name = "files"
path = "/mcp/files"
kind = "mcp"
upstream = "{tool_url}/mcp"
credential = {{ type = "bearer", file = {secret} }}
"#,
        key = toml(&path("gateway.key")),
        spool = toml(&path("spool")),
        secret = toml(&secret),
    ))?;
    let (gateway_key, _) = crate::load_or_create_key(&path("gateway.key"))?;
    let admin = IssuerClient::new(&issuer_url, writ_keystore::load(&admin_key)?)?;
    let (alice_key, _) = crate::load_or_create_key(&path("alice.key"))?;
    admin
        .post(
            "/v1/humans",
            Some(&json!({"id": "alice", "jwk": jwk(&alice_key)?})),
        )
        .await?;
    let tools: Vec<Value> = writ_demo::TOOLS
        .iter()
        .map(|(name, labels)| json!({"name": name, "labels": labels}))
        .collect();
    admin
        .post(
            "/v1/providers",
            Some(&json!({"name": writ_demo::SERVER, "kind": "mcp", "tools": tools})),
        )
        .await?;
    admin
        .post(
            "/v1/gateways",
            Some(&json!({"name": "gw", "jwk": jwk(&gateway_key)?, "audience": gateway_url})),
        )
        .await?;
    // What alice may use at all: `read_file` and its `internal` data, and the server's other
    // requests (`initialize`, `tools/list`). Not `drop_table`.
    admin
        .post(
            "/v1/entitlements",
            Some(&json!({"subject": "alice", "tools": ["files/read_file", "files/*"], "labels": ["internal"]})),
        )
        .await?;
    let gateway = writ_gateway::Gateway::start(config, gateway_key, Arc::new(SystemClock)).await?;
    let (stop_gateway, stopped) = tokio::sync::oneshot::channel::<()>();
    let gateway_task = tokio::spawn(writ_gateway::serve(
        gateway_listener,
        Arc::clone(&gateway),
        async {
            drop(stopped.await);
        },
    ));
    wait_ready(&gateway).await?;
    say(out, "$ writ human add alice --key-file alice.key")?;
    say(
        out,
        "$ writ tool add files --kind mcp --tool read_file=internal --tool drop_table",
    )?;
    say(
        out,
        &format!("$ writ gateway add gw --audience {gateway_url} --key-file gateway.key"),
    )?;
    say(
        out,
        "$ writ entitlement grant --subject alice --tools 'files/read_file,files/*' --labels internal",
    )?;
    say(
        out,
        &format!("tool        demo MCP server at {tool_url}/mcp: read_file, drop_table"),
    )?;
    say(
        out,
        "entitled    alice may use files/read_file (data labelled internal) and files/*, not drop_table",
    )?;
    say(
        out,
        &format!(
            "gateway     {gateway_url}/mcp/files → the tool, with a credential only the gateway holds"
        ),
    )?;

    step(out, 3, "alice, the owner, registers her agent")?;
    let agent_key = path("agent.key");
    let (agent, _) = crate::load_or_create_key(&agent_key)?;
    let alice = IssuerClient::new(&issuer_url, alice_key)?;
    // Asking for more than she is entitled to is refused, and changes nothing.
    let greedy = alice
        .post(
            "/v1/agents",
            Some(&json!({"name": "report-bot", "jwk": jwk(&agent)?, "tools": ["files/read_file", "files/drop_table"]})),
        )
        .await;
    let refusal = match greedy {
        Err(ClientError::Refused { reason, .. }) => reason.unwrap_or_default(),
        Err(other) => return Err(other.into()),
        Ok(_) => anyhow::bail!("the issuer registered an agent beyond alice's entitlements"),
    };
    alice
        .post(
            "/v1/agents",
            Some(&json!({"name": "report-bot", "jwk": jwk(&agent)?, "tools": ["files/read_file", "files/*"]})),
        )
        .await?;
    say(
        out,
        &format!(
            "$ writ agent add report-bot --tools files/read_file,files/drop_table …  → refused [{refusal}]"
        ),
    )?;
    say(
        out,
        "$ writ agent add report-bot --tools 'files/read_file,files/*' --key-file agent.key",
    )?;
    say(
        out,
        &format!(
            "agent       report-bot, owned by alice, key {} (Ed25519, mode 0600)",
            agent.public_key().thumbprint()
        ),
    )?;
    say(
        out,
        "            expires in 90 days unless renewed; its private key stays with the sidecar",
    )?;

    step(
        out,
        4,
        "alice grants report-bot a mandate for a task; a sidecar holds it with the agent key",
    )?;
    let granted = alice.post("/v1/mandates", Some(&mandate_request())).await?;
    let mandate = granted
        .get("mandate")
        .and_then(Value::as_str)
        .context("the grant returned no mandate")?;
    let mandate_id = granted
        .get("id")
        .and_then(Value::as_str)
        .context("the grant returned no mandate id")?
        .to_owned();
    let mandate_file = path("mandate.jwt");
    crate::write_private(&mandate_file, mandate)?;
    say(
        out,
        "$ writ mandate grant report-bot --task '…' --grant '{\"type\":\"mcp_tool_call\",…}' --out mandate.jwt",
    )?;
    say(out, &format!("task        “{TASK}”"))?;
    say(
        out,
        "grants      files/read_file with `path` matching /data/reports/*; initialize and tools/list",
    )?;
    say(
        out,
        &format!(
            "mandate     {mandate_id}: 15 minutes, bound to report-bot's key, good only at the issuer"
        ),
    )?;

    let sidecar = writ_sidecar::Sidecar::connect(
        &format!("{gateway_url}/mcp/files"),
        agent,
        writ_sidecar::MandateSource::File(mandate_file.clone()),
    )
    .await?;
    let (sidecar_listener, sidecar_url) = listen().await?;
    tokio::spawn(async move {
        axum::serve(
            sidecar_listener,
            writ_sidecar::mcp_router(Arc::new(sidecar)),
        )
        .await
    });
    say(
        out,
        &format!(
            "$ writ sidecar --gateway {gateway_url}/mcp/files --key agent.key --mandate-file mandate.jwt --listen 127.0.0.1:0"
        ),
    )?;
    say(
        out,
        &format!("sidecar     MCP at {sidecar_url}/mcp, holding the agent key and the mandate"),
    )?;

    Ok((
        Deployment {
            dir: dir.to_owned(),
            issuer_url,
            gateway_url,
            sidecar_url,
            log_key: done.log_verifier_key,
            admin,
            alice,
            agent_key,
            mandate_file,
            stop_gateway,
            gateway_task,
        },
        mandate_id,
    ))
}

fn mandate_request() -> Value {
    json!({
        "agent": "report-bot",
        "task": TASK,
        "summary": SUMMARY,
        "grants": [
            {"type": "mcp_tool_call", "server": "files", "tool": "read_file",
             "arguments": {"object": {"required": {"path": {"glob": "/data/reports/*"}}}},
             "datatypes": ["internal"]},
            {"type": "mcp_request", "server": "files",
             "methods": ["initialize", "notifications/initialized", "tools/list"]}
        ]
    })
}

/// Step 8: the quickstart plays an attacker who copied a writ and its request off the wire
/// (which the agent itself never sees: the sidecar keeps them).
async fn steal_a_writ(
    deployment: &Deployment,
    out: &mut dyn Write,
) -> anyhow::Result<Vec<(&'static str, Outcome)>> {
    let agent = IssuerClient::new(
        &deployment.issuer_url,
        writ_keystore::load(&deployment.agent_key)?,
    )?;
    let route = format!("{}/mcp/files", deployment.gateway_url);
    let mandate = std::fs::read_to_string(&deployment.mandate_file)?;
    let detail = json!([{"type": "mcp_tool_call", "server": "files", "tool": "read_file",
        "arguments": {"exact": {"path": "/data/reports/q3.md"}}, "datatypes": ["internal"]}]);
    let answer = agent
        .writ("/token", &mandate, &route, &detail.to_string())
        .await?;
    let writ = answer
        .get("access_token")
        .and_then(Value::as_str)
        .context("the issuer's answer has no writ")?;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "read_file", "arguments": {"path": "/data/reports/q3.md"}}})
    .to_string();
    let proof = |key: &SigningKey| -> anyhow::Result<String> {
        let jti = writ_client::random_jti()?;
        Ok(ProofClaims::new("POST", &route, SystemClock.now(), jti)
            .with_access_token(writ)
            .sign(key)?)
    };
    let http = reqwest::Client::new();
    let send = |proof: String| {
        http.post(&route)
            .header("authorization", format!("DPoP {writ}"))
            .header("dpop", proof)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .body(body.clone())
            .send()
    };
    let mut decisions = Vec::new();
    let captured = proof(agent.key())?;
    let original = gateway_outcome(send(captured.clone()).await?).await;
    say(
        out,
        &format!(
            "the agent's own request            → {}",
            describe(&original)
        ),
    )?;
    decisions.push(("the agent's own request", original));
    let replayed = gateway_outcome(send(captured).await?).await;
    say(
        out,
        &format!(
            "replay the captured request        → {}",
            describe(&replayed)
        ),
    )?;
    decisions.push(("replay the captured request", replayed));
    let attacker = SigningKey::generate(Algorithm::EdDSA)?;
    let mismatched = gateway_outcome(send(proof(&attacker)?).await?).await;
    say(
        out,
        &format!(
            "present the writ with its own key  → {}",
            describe(&mismatched)
        ),
    )?;
    decisions.push(("present the writ with the attacker's key", mismatched));
    say(
        out,
        "The writ is bound to the agent's key, good for one call, and dies in 30 seconds.",
    )?;
    Ok(decisions)
}

/// The gateway's answer as an outcome: allowed, or its reason code.
async fn gateway_outcome(response: reqwest::Response) -> Outcome {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    match body.pointer("/error/data/reason").and_then(Value::as_str) {
        Some(reason) => Outcome::Denied(reason.to_owned()),
        None if status.is_success() => Outcome::Allowed,
        None => Outcome::Denied(format!("status_{}", status.as_u16())),
    }
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Allowed => "ALLOW".to_owned(),
        Outcome::Denied(reason) => format!("DENY {reason}"),
    }
}

/// The trace of `request`, once the gateway's decision and the end of its answer have
/// reached the audit log (the gateway reports them in batches every few milliseconds).
async fn trace_when_recorded(
    deployment: &Deployment,
    request: &str,
) -> anyhow::Result<crate::trace::Verified> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match crate::trace::fetch(&deployment.admin, request, &deployment.log_key).await {
            Ok(trace)
                if Instant::now() < deadline
                    && !trace.kinds().iter().any(|kind| kind == "gateway_response") =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error)
                if Instant::now() < deadline
                    && matches!(
                        error.downcast_ref::<ClientError>(),
                        Some(ClientError::Refused { reason: Some(reason), .. }) if reason == "nothing_to_trace"
                    ) =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            result => return result,
        }
    }
}

/// `--keep`: a fresh mandate, how to connect an MCP client, and the services until Ctrl-C.
async fn keep_running(deployment: &Deployment, out: &mut dyn Write) -> anyhow::Result<()> {
    let granted = deployment
        .alice
        .post("/v1/mandates", Some(&mandate_request()))
        .await?;
    let mandate = granted
        .get("mandate")
        .and_then(Value::as_str)
        .context("the grant returned no mandate")?;
    crate::write_private(&deployment.mandate_file, mandate)?;
    let writ = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("writ"));
    let config = json!({"mcpServers": {"writ-files": {
        "command": writ,
        "args": ["sidecar", "--stdio",
                 "--gateway", format!("{}/mcp/files", deployment.gateway_url),
                 "--key", deployment.agent_key,
                 "--mandate-file", deployment.mandate_file]
    }}});
    writeln!(
        out,
        "\nThe services keep running (Ctrl-C stops them and removes {}).",
        deployment.dir.display()
    )?;
    writeln!(
        out,
        "alice granted a fresh mandate ({}, 15 minutes) into {}.",
        granted.get("id").and_then(Value::as_str).unwrap_or("?"),
        deployment.mandate_file.display()
    )?;
    writeln!(
        out,
        "Connect an MCP client over streamable HTTP: {}/mcp",
        deployment.sidecar_url
    )?;
    writeln!(
        out,
        "or start a sidecar over stdio from a desktop client's MCP configuration:\n{}",
        serde_json::to_string_pretty(&config)?
    )?;
    writeln!(
        out,
        "Inspect it with: export WRIT_ISSUER={} WRIT_KEY={}",
        deployment.issuer_url,
        deployment.dir.join("admin.key").display()
    )?;
    writeln!(
        out,
        "  writ agent list; writ trace <writ-request-id> --log-key {}",
        deployment.log_key
    )?;
    out.flush()?;
    crate::stop_signal().await;
    Ok(())
}

/// Stops the gateway gracefully, so every decision it made is recorded before the
/// temporary directory goes.
async fn stop(deployment: Deployment) {
    // The gateway may have stopped already; there is nothing more to do then.
    deployment.stop_gateway.send(()).ok();
    drop(tokio::time::timeout(Duration::from_secs(5), deployment.gateway_task).await);
}

/// The agent: an MCP client speaking streamable HTTP to the sidecar.
struct Agent {
    http: reqwest::Client,
    url: String,
}

/// One answer from the sidecar, and the gateway's id for the request behind it.
struct Answer {
    answer: Value,
    request_id: Option<String>,
}

impl Agent {
    fn new(sidecar: &str) -> Agent {
        Agent {
            http: reqwest::Client::new(),
            url: format!("{sidecar}/mcp"),
        }
    }

    async fn post(&self, message: &Value) -> anyhow::Result<reqwest::Response> {
        self.http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .json(message)
            .send()
            .await
            .context("calling the sidecar")
    }

    async fn send(&self, message: Value) -> anyhow::Result<Answer> {
        let response = self.post(&message).await?;
        let request_id = response
            .headers()
            .get(writ_sidecar::REQUEST_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let answer = response
            .json()
            .await
            .context("the sidecar's answer is not JSON")?;
        Ok(Answer { answer, request_id })
    }

    async fn notify(&self, message: Value) -> anyhow::Result<()> {
        let status = self.post(&message).await?.status();
        anyhow::ensure!(
            status.is_success(),
            "the sidecar refused a notification: {status}"
        );
        Ok(())
    }

    async fn call(&self, id: u64, tool: &str, arguments: Value) -> anyhow::Result<Answer> {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}}))
            .await
    }
}

/// An MCP answer as an outcome: a JSON-RPC error or a tool error carries Writ's reason.
fn outcome(answer: &Value) -> Outcome {
    let reason = answer
        .pointer("/result/_meta/writ/reason")
        .or_else(|| answer.pointer("/error/data/reason"))
        .and_then(Value::as_str);
    match reason {
        Some(reason) => Outcome::Denied(reason.to_owned()),
        None if answer.get("result").is_some() => Outcome::Allowed,
        None => Outcome::Denied("error".to_owned()),
    }
}

fn tool_text(answer: &Value) -> String {
    answer
        .pointer("/result/content/0/text")
        .or_else(|| answer.pointer("/error/message"))
        .and_then(Value::as_str)
        .unwrap_or("(no text)")
        .to_owned()
}

/// A tool's text on one line.
fn one_line(text: &str) -> String {
    text.lines().collect::<Vec<_>>().join(" / ")
}

async fn listen() -> anyhow::Result<(tokio::net::TcpListener, String)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("listening on 127.0.0.1")?;
    let url = format!("http://{}", listener.local_addr()?);
    Ok((listener, url))
}

async fn wait_ready(gateway: &writ_gateway::Gateway) -> anyhow::Result<()> {
    for _ in 0..200 {
        if gateway.ready() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("the gateway did not get the issuer's keys and revocation feed within 5 s")
}

fn jwk(key: &SigningKey) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(key.public_key().to_jwk())?)
}

/// A random credential for the demo tool server, which only the gateway reads.
fn upstream_secret() -> anyhow::Result<String> {
    Ok(format!("upstream-secret-{}", writ_client::random_jti()?))
}

/// Writes through to another writer, indenting every line as [`say`] does.
struct Indented<'a> {
    out: &'a mut dyn Write,
    at_line_start: bool,
}

impl<'a> Indented<'a> {
    fn new(out: &'a mut dyn Write) -> Self {
        Indented {
            out,
            at_line_start: true,
        }
    }
}

impl Write for Indented<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        for line in bytes.split_inclusive(|&byte| byte == b'\n') {
            if self.at_line_start {
                self.out.write_all(b"   ")?;
            }
            self.out.write_all(line)?;
            self.at_line_start = line.ends_with(b"\n");
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

fn step(out: &mut dyn Write, number: u32, title: &str) -> std::io::Result<()> {
    writeln!(out, "\n{number}. {title}")
}

fn say(out: &mut dyn Write, line: &str) -> std::io::Result<()> {
    writeln!(out, "   {line}")
}
