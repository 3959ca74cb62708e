//! A whole Writ deployment on 127.0.0.1 for integration tests: an issuer, a gateway, the
//! demo MCP server (built with rmcp) and a plain HTTP API, each on its own port, with an
//! agent that obtains writs and calls. Failures panic: this crate only serves tests.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs,
    reason = "test support"
)]

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use writ_client::IssuerClient;
use writ_gateway::{Config, Gateway};
use writ_issuer::{Clock, Issuer, Settings, SystemClock};
use writ_jose::{Algorithm, SigningKey};
use writ_token::{ProofClaims, UnixTime};

/// The secret the gateway injects on the MCP route; agents must never see it.
pub const MCP_SECRET: &str = "s3cret-files-token-7f1c";
/// The `user:password` the gateway sends to the HTTP API.
pub const HTTP_SECRET: &str = "crm-user:crm-pass-91b2";

/// The system's time shifted by an offset the test sets: it runs on like a real clock (the
/// gateway's and the agent's proofs use the system's time), and a test moves it to make
/// tokens expire or come from the future.
#[derive(Debug, Default)]
pub struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now(&self) -> UnixTime {
        let now = SystemClock.now().as_secs();
        UnixTime::from_secs(now.saturating_add_signed(self.0.load(Ordering::SeqCst)))
    }
}

impl TestClock {
    /// Moves the clock by `seconds`, forward or back.
    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }

    /// How far the clock is from the system's, in seconds.
    pub fn offset(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

// ---- the deployment --------------------------------------------------------------------

pub struct World {
    pub dir: tempfile::TempDir,
    pub clock: Arc<TestClock>,
    pub issuer: Arc<Issuer>,
    pub issuer_url: String,
    /// While set, the issuer answers every request with 503, as if it were down.
    pub issuer_down: Arc<AtomicBool>,
    /// The paths of the requests refused while the issuer was down, in order.
    pub issuer_refused: Arc<Mutex<Vec<String>>>,
    /// While set, the issuer takes decision reports and does not answer them until it is
    /// cleared, as if it had been stopped (SIGSTOP) and continued.
    pub audit_hung: Arc<AtomicBool>,
    pub gateway: Arc<Gateway>,
    pub gateway_url: String,
    /// The plain HTTP API's base URL (its routes live under `/v2`).
    pub api_url: String,
    pub admin: IssuerClient,
    /// The audit log's verifier key, as `writ issuer init` printed it.
    pub log_key: String,
    pub alice: IssuerClient,
    pub agent: SigningKey,
    pub agent_jkt: String,
    /// Headers each upstream received, in order.
    pub upstream_headers: Arc<Mutex<Vec<HeaderMap>>>,
    pub http: reqwest::Client,
    jti: AtomicU64,
    /// The gateway's configuration and the seed of its key, to start it again.
    gateway_config: Config,
    gateway_seed: [u8; 32],
    /// The gateway that answers at `gateway_url`: [`World::restart_gateway`] replaces it.
    serving: Arc<std::sync::RwLock<Arc<Gateway>>>,
}

pub struct Options {
    pub max_feed_staleness_secs: u64,
    pub max_body_bytes: usize,
    /// When set, the `files` route runs this command as a stdio MCP server (which gets
    /// [`MCP_SECRET`] as `FILES_TOKEN`) instead of calling the demo server over HTTP.
    pub files_command: Option<Vec<String>>,
    /// The issuer's behaviour settings.
    pub behaviour: writ_issuer::BehaviourConfig,
    /// More lines for the gateway's `[limits]` table.
    pub gateway_limits: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_feed_staleness_secs: 3,
            max_body_bytes: 64 * 1024,
            files_command: None,
            behaviour: writ_issuer::BehaviourConfig::default(),
            gateway_limits: String::new(),
        }
    }
}

async fn listen() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

async fn record_headers(
    axum::extract::State(seen): axum::extract::State<Arc<Mutex<Vec<HeaderMap>>>>,
    request: Request,
    next: Next,
) -> Response {
    seen.lock().unwrap().push(request.headers().clone());
    next.run(request).await
}

/// Whether the issuer is down, the paths it refused meanwhile, and whether it hangs on
/// decision reports.
type Outage = (Arc<AtomicBool>, Arc<Mutex<Vec<String>>>, Arc<AtomicBool>);

async fn outage(
    axum::extract::State((down, refused, audit_hung)): axum::extract::State<Outage>,
    request: Request,
    next: Next,
) -> Response {
    // A stopped issuer: the report is taken and answered only once the issuer goes on.
    while audit_hung.load(Ordering::SeqCst) && request.uri().path() == "/v1/audit/decisions" {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    if down.load(Ordering::SeqCst) {
        refused
            .lock()
            .unwrap()
            .push(request.uri().path().to_owned());
        return (StatusCode::SERVICE_UNAVAILABLE, "down for the test").into_response();
    }
    next.run(request).await
}

impl World {
    pub async fn new() -> World {
        World::with(Options::default()).await
    }

    pub async fn with(options: Options) -> World {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(TestClock::default());

        // The issuer.
        let (issuer_listener, issuer_url) = listen().await;
        let data = dir.path().join("data");
        let admin_key = dir.path().join("admin.key");
        let log_key = writ_issuer::init(&data, &issuer_url, "root", &admin_key)
            .await
            .unwrap()
            .log_verifier_key;
        let settings = Settings {
            checkpoint_interval: Duration::from_millis(100),
            behaviour: options.behaviour.clone(),
            ..Settings::default()
        };
        let issuer = Issuer::open_with_clock(&data, settings, Arc::clone(&clock) as Arc<dyn Clock>)
            .await
            .unwrap();
        let issuer_down = Arc::new(AtomicBool::new(false));
        let issuer_refused = Arc::new(Mutex::new(Vec::new()));
        let audit_hung = Arc::new(AtomicBool::new(false));
        let router =
            writ_issuer::router(Arc::clone(&issuer)).layer(axum::middleware::from_fn_with_state(
                (
                    Arc::clone(&issuer_down),
                    Arc::clone(&issuer_refused),
                    Arc::clone(&audit_hung),
                ),
                outage,
            ));
        tokio::spawn(async move { axum::serve(issuer_listener, router).await });

        // The upstreams: an rmcp MCP server and a plain HTTP API.
        let upstream_headers = Arc::new(Mutex::new(Vec::new()));
        let (mcp_listener, mcp_url) = listen().await;
        let mcp = writ_demo::http_router(Some(MCP_SECRET.to_owned())).layer(
            axum::middleware::from_fn_with_state(Arc::clone(&upstream_headers), record_headers),
        );
        tokio::spawn(async move { axum::serve(mcp_listener, mcp).await });
        let (api_listener, api_url) = listen().await;
        let api = axum::Router::new()
            .route(
                "/v2/customers/{id}",
                axum::routing::get(
                    |axum::extract::Path(id): axum::extract::Path<String>| async move {
                        axum::Json(json!({"id": id, "name": "ACME"}))
                    },
                ),
            )
            .route(
                "/v2/stream",
                axum::routing::get(|| async {
                    (
                        [("content-type", "text/event-stream")],
                        "data: one\n\ndata: two\n\n",
                    )
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(&upstream_headers),
                record_headers,
            ));
        tokio::spawn(async move { axum::serve(api_listener, api).await });

        // Inventory.
        let admin = IssuerClient::new(&issuer_url, writ_keystore::load(&admin_key).unwrap())
            .unwrap()
            .with_clock(Arc::clone(&clock) as Arc<dyn Clock>);
        let alice_key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let agent = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let gateway_seed = writ_jose::random_bytes::<32>().unwrap();
        let gateway_key = SigningKey::ed25519_from_seed(&gateway_seed).unwrap();
        let jwk = |key: &SigningKey| serde_json::to_value(key.public_key().to_jwk()).unwrap();
        let (gateway_listener, gateway_url) = listen().await;
        admin
            .post(
                "/v1/humans",
                Some(&json!({"id": "alice", "jwk": jwk(&alice_key)})),
            )
            .await
            .unwrap();
        admin
            .post(
                "/v1/providers",
                Some(&json!({"name": "files", "kind": "mcp", "tools":
                    writ_demo::TOOLS.iter().map(|(name, labels)| json!({"name": name, "labels": labels})).collect::<Vec<_>>()
                })),
            )
            .await
            .unwrap();
        admin
            .post(
                "/v1/providers",
                Some(&json!({"name": "crm", "kind": "http", "tools": []})),
            )
            .await
            .unwrap();
        admin
            .post(
                "/v1/gateways",
                Some(&json!({"name": "gw", "jwk": jwk(&gateway_key), "audience": gateway_url})),
            )
            .await
            .unwrap();
        // An administrator entitles alice to what her agents use; members get nothing else.
        admin
            .post(
                "/v1/entitlements",
                Some(&json!({"subject": "alice", "labels": ["internal"],
                    "tools": ["files/read_file", "files/drop_table", "files/*", "crm/*"]})),
            )
            .await
            .unwrap();
        let alice = IssuerClient::new(&issuer_url, alice_key)
            .unwrap()
            .with_clock(Arc::clone(&clock) as Arc<dyn Clock>);
        alice
            .post(
                "/v1/agents",
                Some(&json!({
                    "name": "report-bot", "jwk": jwk(&agent),
                    "tools": ["files/read_file", "files/drop_table", "files/*", "crm/*"]
                })),
            )
            .await
            .unwrap();

        // The gateway.
        let config = Config::parse(&format!(
            r#"
listen = "127.0.0.1:0"
public_url = "{gateway_url}"
issuer = "{issuer_url}"
key_file = "{key}"
spool_dir = "{spool}"

[limits]
max_feed_staleness_secs = {staleness}
max_body_bytes = {body}
jwks_refetch_interval_secs = 1
behaviour_limits_ttl_secs = 0
{limits}

{files_route}

[[routes]]
name = "crm"
path = "/api/crm"
kind = "http"
upstream = "{api_url}/v2"
credential = {{ type = "basic", file = "{http_secret}" }}
"#,
            key = dir.path().join("gateway.key").display(),
            spool = dir.path().join("spool").display(),
            staleness = options.max_feed_staleness_secs,
            body = options.max_body_bytes,
            files_route = files_route(&dir, &options, &mcp_url),
            limits = options.gateway_limits,
            http_secret = secret_file(&dir, "crm.secret", HTTP_SECRET).display(),
        ))
        .unwrap();
        let gateway_config = config.clone();
        let gateway = Gateway::start(config, gateway_key, Arc::clone(&clock) as Arc<dyn Clock>)
            .await
            .unwrap();
        // Each request goes to the gateway serving now, so a restarted one answers at the
        // same address, as a restarted process would.
        let serving = Arc::new(std::sync::RwLock::new(Arc::clone(&gateway)));
        let front = Arc::clone(&serving);
        let app = axum::Router::new().fallback(move |request: Request| {
            let gateway = Arc::clone(&front.read().unwrap());
            async move {
                tower::ServiceExt::oneshot(writ_gateway::router(gateway), request)
                    .await
                    .into_response()
            }
        });
        tokio::spawn(async move { axum::serve(gateway_listener, app).await });

        let world = World {
            agent_jkt: agent.public_key().thumbprint().as_str().to_owned(),
            dir,
            clock,
            issuer,
            issuer_url,
            issuer_down,
            issuer_refused,
            audit_hung,
            gateway,
            gateway_url,
            api_url,
            admin,
            log_key,
            alice,
            agent,
            upstream_headers,
            http: reqwest::Client::new(),
            jti: AtomicU64::new(0),
            gateway_config,
            gateway_seed,
            serving,
        };
        world.wait_ready().await;
        world
    }

    /// Starts the gateway again, as after a restart: the same configuration (public URL,
    /// spool directory) and key, on a fresh listener. Returns it, ready, and the URL it
    /// listens at; requests name the first gateway's URL, which is its public one.
    pub async fn start_gateway(&self) -> (Arc<Gateway>, String) {
        let (gateway, url) = self.start_gateway_unready().await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !gateway.ready() {
            assert!(
                std::time::Instant::now() < deadline,
                "the restarted gateway never became ready"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        (gateway, url)
    }

    /// Restarts the gateway at its address (`gateway_url`): the running one stops recording
    /// (its queued decisions are spooled), and a new one with the same configuration, key
    /// and spool directory answers from the moment it is ready. Returns the new one.
    pub async fn restart_gateway(&self) -> Arc<Gateway> {
        let old = Arc::clone(&self.serving.read().unwrap());
        old.shutdown().await;
        let (new, _) = self.start_gateway().await;
        *self.serving.write().unwrap() = Arc::clone(&new);
        new
    }

    /// [`World::start_gateway`], without waiting for it to be ready.
    pub async fn start_gateway_unready(&self) -> (Arc<Gateway>, String) {
        let key = SigningKey::ed25519_from_seed(&self.gateway_seed).unwrap();
        let gateway = Gateway::start(
            self.gateway_config.clone(),
            key,
            Arc::clone(&self.clock) as Arc<dyn Clock>,
        )
        .await
        .unwrap();
        let (listener, url) = listen().await;
        let served = Arc::clone(&gateway);
        tokio::spawn(
            async move { writ_gateway::serve(listener, served, std::future::pending()).await },
        );
        (gateway, url)
    }

    /// Waits until the gateway has the issuer's keys and a fresh feed.
    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            if self.gateway.ready() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the gateway never became ready");
    }

    /// Alice grants report-bot a mandate: read files under /data/reports, list and initialize on
    /// `files`, read customers on `crm` (with an optional `fields` query). Returns (mandate
    /// JWT, mandate id).
    pub async fn grant(&self) -> (String, String) {
        let body = self
            .alice
            .post(
                "/v1/mandates",
                Some(&json!({
                    "agent": "report-bot",
                    "task": "Summarize the Q3 reports in /data",
                    "grants": [
                        {"type": "mcp_tool_call", "server": "files", "tool": "read_file",
                         "arguments": {"object": {"required": {"path": {"glob": "/data/reports/*"}}}},
                         "datatypes": ["internal"]},
                        {"type": "mcp_request", "server": "files",
                         "methods": ["initialize", "notifications/initialized", "tools/list"]},
                        {"type": "http_request", "server": "crm", "methods": ["GET"],
                         "path": "/customers/*",
                         "query": {"object": {"optional": {"fields": {"glob": "*"}}}}},
                        {"type": "http_request", "server": "crm", "methods": ["GET"],
                         "path": "/stream"}
                    ]
                })),
            )
            .await
            .unwrap();
        (
            body["mandate"].as_str().unwrap().to_owned(),
            body["id"].as_str().unwrap().to_owned(),
        )
    }

    fn jti(&self) -> String {
        format!("agent-proof-{}", self.jti.fetch_add(1, Ordering::SeqCst))
    }

    /// The agent's token exchange for one call on `route_path`.
    pub async fn writ(&self, mandate: &str, route_path: &str, detail: Value) -> String {
        let (status, body) = self.try_writ(mandate, route_path, detail).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn try_writ(
        &self,
        mandate: &str,
        route_path: &str,
        detail: Value,
    ) -> (StatusCode, Value) {
        let resource = format!("{}{route_path}", self.gateway_url);
        self.try_writ_for(mandate, &resource, detail).await
    }

    /// The agent's token exchange for one call on `resource`, a route of any gateway.
    pub async fn try_writ_for(
        &self,
        mandate: &str,
        resource: &str,
        detail: Value,
    ) -> (StatusCode, Value) {
        self.try_writ_as(&self.agent, mandate, resource, detail)
            .await
    }

    /// The token exchange for one call on `resource`, proven with `key`.
    pub async fn try_writ_as(
        &self,
        key: &SigningKey,
        mandate: &str,
        resource: &str,
        detail: Value,
    ) -> (StatusCode, Value) {
        self.exchange(
            key,
            &[
                ("subject_token", mandate.to_owned()),
                ("resource", resource.to_owned()),
                ("authorization_details", json!([detail]).to_string()),
            ],
        )
        .await
    }

    /// Delegation: the holder of `mandate`, proving `key`, asks for a child mandate for the
    /// agent named `delegate` with `grants`, expiring in `expires_in` seconds (with the
    /// parent when `None`).
    pub async fn delegate_as(
        &self,
        key: &SigningKey,
        mandate: &str,
        delegate: &str,
        grants: Value,
        expires_in: Option<u64>,
    ) -> (StatusCode, Value) {
        let mut form = vec![
            ("subject_token", mandate.to_owned()),
            (
                "requested_token_type",
                "urn:writ:params:oauth:token-type:mandate".to_owned(),
            ),
            ("delegate", delegate.to_owned()),
            ("authorization_details", grants.to_string()),
        ];
        form.extend(expires_in.map(|seconds| ("expires_in", seconds.to_string())));
        self.exchange(key, &form).await
    }

    /// A token exchange at the issuer with a mandate as subject token, proven with `key`.
    async fn exchange(
        &self,
        key: &SigningKey,
        parameters: &[(&str, String)],
    ) -> (StatusCode, Value) {
        let url = format!("{}/token", self.issuer_url);
        let proof = ProofClaims::new("POST", &url, self.clock.now(), self.jti())
            .sign(key)
            .unwrap();
        let mut form = vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange".to_owned(),
            ),
            (
                "subject_token_type",
                "urn:writ:params:oauth:token-type:mandate".to_owned(),
            ),
        ];
        form.extend(parameters.iter().cloned());
        let response = self
            .http
            .post(&url)
            .header("dpop", proof)
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The administrator registers another human with a new key; their client.
    pub async fn add_human(&self, id: &str) -> IssuerClient {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let jwk = serde_json::to_value(key.public_key().to_jwk()).unwrap();
        self.admin
            .post("/v1/humans", Some(&json!({"id": id, "jwk": jwk})))
            .await
            .unwrap();
        IssuerClient::new(&self.issuer_url, key)
            .unwrap()
            .with_clock(Arc::clone(&self.clock) as Arc<dyn Clock>)
    }

    /// The administrator entitles `subject` (a human id or `group:NAME`) to `tools` and
    /// `labels`; the entitlement's id.
    pub async fn entitle(&self, subject: &str, tools: &[&str], labels: &[&str]) -> String {
        let created = self
            .admin
            .post(
                "/v1/entitlements",
                Some(&json!({"subject": subject, "tools": tools, "labels": labels})),
            )
            .await
            .unwrap();
        created["id"].as_str().unwrap().to_owned()
    }

    /// alice registers another agent of hers, with a new key, for the `files` tools.
    pub async fn add_agent(&self, name: &str) -> SigningKey {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        self.alice
            .post(
                "/v1/agents",
                Some(&json!({
                    "name": name,
                    "jwk": serde_json::to_value(key.public_key().to_jwk()).unwrap(),
                    "tools": ["files/read_file", "files/drop_table", "files/*"]
                })),
            )
            .await
            .unwrap();
        key
    }

    /// A proof for `method` on `url` bound to `writ`, made now.
    pub fn proof(&self, method: &str, url: &str, writ: &str) -> String {
        ProofClaims::new(method, url, self.clock.now(), self.jti())
            .with_access_token(writ)
            .sign(&self.agent)
            .unwrap()
    }

    /// Sends a request to the gateway with the given writ and proof.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        writ: Option<&str>,
        proof: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, HeaderMap, String) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.gateway_url))
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18");
        if let Some(writ) = writ {
            request = request.header("authorization", format!("DPoP {writ}"));
        }
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap())
    }

    /// A body to the `files` route with `writ` and the given proof.
    pub async fn post_mcp(
        &self,
        writ: &str,
        proof: &str,
        body: Vec<u8>,
    ) -> (StatusCode, HeaderMap, String) {
        self.send(
            reqwest::Method::POST,
            "/mcp/files",
            Some(writ),
            Some(proof),
            Some(body),
        )
        .await
    }

    /// One MCP JSON-RPC message to the `files` route with `writ` and a fresh proof.
    pub async fn mcp(&self, writ: &str, message: Value) -> (StatusCode, HeaderMap, String) {
        let url = format!("{}/mcp/files", self.gateway_url);
        let proof = self.proof("POST", &url, writ);
        self.post_mcp(writ, &proof, message.to_string().into_bytes())
            .await
    }

    /// A writ for `read_file` of `path`, then the call itself.
    pub async fn read_file(&self, mandate: &str, path: &str) -> (StatusCode, HeaderMap, String) {
        let writ = self
            .writ(mandate, "/mcp/files", read_file_detail(path))
            .await;
        self.mcp(&writ, tools_call("read_file", json!({"path": path})))
            .await
    }

    /// A writ for `message`'s JSON-RPC method (not a tool call), then the message itself.
    pub async fn mcp_method(
        &self,
        mandate: &str,
        message: Value,
    ) -> (StatusCode, HeaderMap, String) {
        let method = message["method"].as_str().unwrap().to_owned();
        let writ = self
            .writ(mandate, "/mcp/files", mcp_request_detail(&method))
            .await;
        self.mcp(&writ, message).await
    }

    /// Revokes `subject` of `kind` as administrator.
    pub async fn revoke(&self, kind: &str, subject: &str) {
        self.admin
            .post(
                "/v1/revocations",
                Some(&json!({"kind": kind, "subject": subject, "reason": "test"})),
            )
            .await
            .unwrap();
    }
}

fn files_route(dir: &tempfile::TempDir, options: &Options, mcp_url: &str) -> String {
    let secret = secret_file(dir, "files.secret", MCP_SECRET);
    let upstream = match &options.files_command {
        Some(command) => format!(
            "command = {}\ncredential = {{ type = \"env\", variable = \"FILES_TOKEN\", file = \"{}\" }}",
            serde_json::to_string(command).unwrap(),
            secret.display()
        ),
        None => format!(
            "upstream = \"{mcp_url}/mcp\"\ncredential = {{ type = \"bearer\", file = \"{}\" }}",
            secret.display()
        ),
    };
    format!("[[routes]]\nname = \"files\"\npath = \"/mcp/files\"\nkind = \"mcp\"\n{upstream}")
}

fn secret_file(dir: &tempfile::TempDir, name: &str, secret: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path
}

pub fn read_file_detail(path: &str) -> Value {
    json!({"type": "mcp_tool_call", "server": "files", "tool": "read_file",
           "arguments": {"object": {"required": {"path": {"exact": path}}}},
           "datatypes": ["internal"]})
}

pub fn mcp_request_detail(method: &str) -> Value {
    json!({"type": "mcp_request", "server": "files", "methods": [method]})
}

/// The tool names in a `tools/list` answer.
pub fn tool_names(body: &str) -> Vec<String> {
    let answer: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {body}"))
        .iter()
        .map(|tool| tool["name"].as_str().unwrap().to_owned())
        .collect()
}

pub fn tools_call(tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
           "params": {"name": tool, "arguments": arguments}})
}

/// The reason code of a denial, from a JSON body or a JSON-RPC error.
/// Sends `GET {target}` to `base` (`http://host:port`) byte for byte over a plain socket,
/// with `headers`, as an attacker would: HTTP client libraries resolve `..` and `%2E%2E`
/// themselves. Returns the status and the reason code of the answer (`""` when it has none).
pub async fn raw_get(base: &str, target: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let authority = base.trim_start_matches("http://");
    let mut request =
        format!("GET {target} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    // A chunked body: the JSON sits between the chunk sizes.
    let reason = body
        .find('{')
        .zip(body.rfind('}'))
        .and_then(|(start, end)| body.get(start..=end))
        .and_then(|json| serde_json::from_str::<Value>(json).ok())
        .and_then(|value| {
            value
                .get("reason")
                .or_else(|| value.pointer("/error/data/reason"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (status, reason)
}

pub fn reason(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    value
        .get("reason")
        .or_else(|| value.pointer("/error/data/reason"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no reason in {body}"))
        .to_owned()
}
